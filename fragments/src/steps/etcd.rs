//! master part-004 etcd: `/etc/etcd/etcd.conf` and `etcd.service` (inventory §3.10).
//!
//! The configuration is a file of `ETCD_*` variables, which etcd reads from its environment: the unit
//! passes it as an environment file (podman, docker, ctr) and Magnum's atomic image reads it itself. It is
//! written whole, values unquoted (an environment file, systemd and a shell all read those the same), and
//! a value no such reader would take intact is refused instead of written.
//!
//! Departures from Magnum, each deliberate:
//! - Without a discovery URL the masters form a static cluster: `ETCD_INITIAL_CLUSTER` lists every
//!   master of `etcd.members` (native config; the server fills it), or this master alone. Magnum always
//!   used the public discovery service.
//! - Clients are told only the TLS address (`ETCD_ADVERTISE_CLIENT_URLS`); Magnum also advertised
//!   `http://127.0.0.1:2379`, which sends other nodes' clients to their own loopback. The plain loopback
//!   listener stays, for the local apiserver (`--etcd-servers=http://127.0.0.1:2379`).
//! - No `ETCD_CA_FILE` / `ETCD_PEER_CA_FILE`: etcd 3.4 removed those flags (etcd CHANGELOG-3.4); the
//!   `*_TRUSTED_CA_FILE` ones it kept say the same.
//! - The discovery proxy is only set when the proxy step's NO_PROXY (the operator's list plus the
//!   cluster's own addresses) does not exempt the discovery host, with the proxy of the URL's scheme.
//! - The v2 API is switched on where etcd 3.4 and 3.5 switch it off (etcd CHANGELOG-3.4: `--enable-v2`
//!   defaults to false) when the network is flannel, whose releases before 0.13 read their network
//!   config from the v2 keyspace.

use crate::component::{self, Component, Mount};
use crate::config::{NetworkDriver, NodeConfig};
use crate::host::FileSpec;
use crate::kube::{self, KubeVersion, RuntimeKind};
use crate::paths::{ETCD_CERTS, ETCD_CONF, ETCD_DIR};
use crate::step::{Context, Done};
use anyhow::{bail, Context as _, Result};
use ipnet::IpNet;
use std::net::IpAddr;
use std::path::Path;

pub const DATA_DIR: &str = "/var/lib/etcd";
/// etcd wants its data directory private (it warns from 3.4 when it is not).
const DATA_DIR_MODE: u32 = 0o700;
pub const CLIENT_PORT: u16 = 2379;
pub const PEER_PORT: u16 = 2380;

/// What the step needs of the config: an environment file it can write (members listing this master,
/// values without characters the file cannot carry) and a runtime for the release.
pub(super) fn check(config: &NodeConfig) -> Result<()> {
    render(config)?;
    RuntimeKind::of(config, KubeVersion::of(config)?).map(drop)
}

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let config = ctx.config;
    check(config)?;
    if config.etcd.volume.size > 0 {
        data_volume(ctx)?;
    }
    let conf = render(config)?;
    let has_credentials = conf.lines().any(|l| l.starts_with("ETCD_DISCOVERY_PROXY=") && l.contains('@'));
    ctx.host.ensure_dir(Path::new(ETCD_DIR), 0o755)?;
    ctx.host.ensure_dir(Path::new(DATA_DIR), DATA_DIR_MODE)?;
    let version = KubeVersion::of(config)?;
    let runtime = component::for_node(ctx.facts.os, RuntimeKind::of(config, version)?);
    let etcd = Component {
        name: "etcd".into(),
        description: "etcd, the cluster's key-value store".into(),
        image: Some(kube::image(config, "etcd", &config.etcd.tag)),
        args: Vec::new(),
        args_from: None,
        env_file: Some(ETCD_CONF.into()),
        mounts: vec![Mount::same(ETCD_DIR, false).relabel(), Mount::same(DATA_DIR, true).relabel()],
        privileged: false,
        host_network: true,
        host_pid: false,
        after: Vec::new(),
        system_container_settings: Vec::new(),
        // Magnum's etcd image runs as root (Magnum left etcd's keys root-only).
        system_container_user_files: Vec::new(),
        files: vec![FileSpec::new(ETCD_CONF, conf, if has_credentials { 0o600 } else { 0o644 })],
    };
    component::apply(ctx, runtime, &[etcd])?;
    Ok(Done::Applied)
}

/// etcd's data on its own Cinder volume (Heat attaches it at /dev/vdc), as Magnum's configure-etcd did.
fn data_volume(ctx: &Context) -> Result<()> {
    crate::volume::prepare(ctx, &ctx.config.etcd.volume.id, DATA_DIR, DATA_DIR_MODE, "etcd data")
}

/// `scheme://ip:port`, with IPv6 addresses in brackets.
fn url(scheme: &str, ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{port}"),
    }
}

/// The whole `/etc/etcd/etcd.conf`.
pub fn render(config: &NodeConfig) -> Result<String> {
    let ip = config.node.ip.context("node.ip (KUBE_NODE_IP) is not set: etcd listens on the node's address")?;
    let tls = !config.cluster.tls_disabled;
    let scheme = if tls { "https" } else { "http" };
    let mut vars: Vec<(&str, String)> = vec![
        ("ETCD_NAME", ip.to_string()),
        ("ETCD_DATA_DIR", format!("{DATA_DIR}/default.etcd")),
        ("ETCD_LISTEN_CLIENT_URLS", format!("{},http://127.0.0.1:{CLIENT_PORT}", url(scheme, ip, CLIENT_PORT))),
        ("ETCD_LISTEN_PEER_URLS", url(scheme, ip, PEER_PORT)),
        ("ETCD_ADVERTISE_CLIENT_URLS", url(scheme, ip, CLIENT_PORT)),
        ("ETCD_INITIAL_ADVERTISE_PEER_URLS", url(scheme, ip, PEER_PORT)),
    ];
    let discovery = &config.etcd.discovery_url;
    if discovery.is_empty() {
        let members = if config.etcd.members.is_empty() { vec![ip] } else { config.etcd.members.clone() };
        if !members.contains(&ip) {
            bail!("etcd.members {members:?} does not list this master's node.ip {ip}");
        }
        let cluster: Vec<String> = members.iter().map(|m| format!("{m}={}", url(scheme, *m, PEER_PORT))).collect();
        vars.push(("ETCD_INITIAL_CLUSTER", cluster.join(",")));
        vars.push(("ETCD_INITIAL_CLUSTER_STATE", "new".into()));
        let token = if config.cluster.uuid.is_empty() { "hearth" } else { &config.cluster.uuid };
        vars.push(("ETCD_INITIAL_CLUSTER_TOKEN", token.into()));
    } else {
        vars.push(("ETCD_DISCOVERY", discovery.clone()));
        if let Some(proxy) = discovery_proxy(config)? {
            vars.push(("ETCD_DISCOVERY_PROXY", proxy));
        }
    }
    if tls {
        for (name, value) in [
            ("ETCD_TRUSTED_CA_FILE", "ca.crt"),
            ("ETCD_CERT_FILE", "server.crt"),
            ("ETCD_KEY_FILE", "server.key"),
            ("ETCD_CLIENT_CERT_AUTH", ""),
            ("ETCD_PEER_TRUSTED_CA_FILE", "ca.crt"),
            ("ETCD_PEER_CERT_FILE", "server.crt"),
            ("ETCD_PEER_KEY_FILE", "server.key"),
            ("ETCD_PEER_CLIENT_CERT_AUTH", ""),
        ] {
            let value = if value.is_empty() { "true".to_string() } else { format!("{ETCD_CERTS}/{value}") };
            vars.push((name, value));
        }
    }
    if config.network.driver == NetworkDriver::Flannel
        && matches!(crate::version::parse(&config.etcd.tag), Some((3, 4 | 5, _)))
    {
        vars.push(("ETCD_ENABLE_V2", "true".into()));
    }

    let mut out = String::from(
        "# Written by hearth-agent (etcd step). etcd reads these variables from its environment; the values\n\
         # are unquoted so that systemd, container runtimes and shells all read them the same.\n",
    );
    for (name, value) in vars {
        if let Some(bad) = value.chars().find(|c| !is_plain(*c)) {
            let shown = if name == "ETCD_DISCOVERY_PROXY" { "(the proxy URL)".to_string() } else { value };
            bail!("{name} {shown:?} holds {bad:?}, which an environment file cannot carry unquoted");
        }
        out.push_str(&format!("{name}={value}\n"));
    }
    Ok(out)
}

fn is_plain(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._:/,=@%+-[]~".contains(c)
}

/// The proxy etcd reaches the discovery service through, unless NO_PROXY exempts its host.
fn discovery_proxy(config: &NodeConfig) -> Result<Option<String>> {
    let url = &config.etcd.discovery_url;
    let (scheme, rest) = url.split_once("://").context("etcd.discovery_url (ETCD_DISCOVERY_URL) has no scheme")?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host_port.split(':').next().unwrap_or(host_port),
    };
    if bypassed(host, &config.no_proxy()) {
        return Ok(None);
    }
    let proxy = &config.proxy;
    let chosen = match scheme {
        "https" if !proxy.https_proxy.is_empty() => &proxy.https_proxy,
        _ if !proxy.http_proxy.is_empty() => &proxy.http_proxy,
        _ => &proxy.https_proxy,
    };
    Ok((!chosen.is_empty()).then(|| chosen.clone()))
}

/// Whether NO_PROXY exempts `host`, as Python's `requests.utils.proxy_bypass` (Magnum's check) and curl
/// read it: `*`; the host itself; a domain suffix (`example.com` or `.example.com` covers
/// `etcd.example.com`); a CIDR holding an IP host.
pub fn bypassed(host: &str, no_proxy: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let ip: Option<IpAddr> = host.parse().ok();
    no_proxy.split(',').map(|e| e.trim().to_ascii_lowercase()).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" || entry == host {
            return true;
        }
        if let (Some(ip), Ok(net)) = (ip, entry.parse::<IpNet>()) {
            return net.contains(&ip);
        }
        let suffix = entry.trim_start_matches('.');
        ip.is_none() && host.ends_with(&format!(".{suffix}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn master() -> NodeConfig {
        let mut c = NodeConfig::new(Role::Master);
        c.node.ip = Some("10.0.0.4".parse().unwrap());
        c.cluster.uuid = "5d12f6fd".into();
        c
    }

    fn var<'a>(conf: &'a str, name: &str) -> Option<&'a str> {
        conf.lines().find_map(|l| l.strip_prefix(&format!("{name}=")))
    }

    #[test]
    fn a_static_cluster_of_the_masters_without_discovery() {
        let mut c = master();
        c.etcd.members = vec!["10.0.0.4".parse().unwrap(), "10.0.0.5".parse().unwrap()];
        let conf = render(&c).unwrap();
        assert_eq!(
            var(&conf, "ETCD_INITIAL_CLUSTER"),
            Some("10.0.0.4=https://10.0.0.4:2380,10.0.0.5=https://10.0.0.5:2380")
        );
        assert_eq!(var(&conf, "ETCD_LISTEN_CLIENT_URLS"), Some("https://10.0.0.4:2379,http://127.0.0.1:2379"));
        assert_eq!(var(&conf, "ETCD_ADVERTISE_CLIENT_URLS"), Some("https://10.0.0.4:2379"));
        assert_eq!(var(&conf, "ETCD_PEER_CLIENT_CERT_AUTH"), Some("true"));
        assert_eq!(var(&conf, "ETCD_INITIAL_CLUSTER_TOKEN"), Some("5d12f6fd"));
        assert!(var(&conf, "ETCD_DISCOVERY").is_none() && var(&conf, "ETCD_CA_FILE").is_none());
        c.etcd.members = vec!["10.0.0.5".parse().unwrap()];
        assert!(render(&c).unwrap_err().to_string().contains("does not list this master"));
    }

    #[test]
    fn ipv6_urls_are_bracketed_and_tls_off_is_plain_http() {
        let mut c = master();
        c.node.ip = Some("fd00::4".parse().unwrap());
        c.cluster.tls_disabled = true;
        let conf = render(&c).unwrap();
        assert_eq!(var(&conf, "ETCD_LISTEN_PEER_URLS"), Some("http://[fd00::4]:2380"));
        assert!(var(&conf, "ETCD_CERT_FILE").is_none());
    }

    #[test]
    fn discovery_goes_through_the_proxy_unless_no_proxy_exempts_it() {
        let mut c = master();
        c.etcd.discovery_url = "https://discovery.etcd.io/0123abcd".into();
        c.proxy.http_proxy = "http://proxy:3128".into();
        c.proxy.https_proxy = "http://secure-proxy:3129".into();
        let conf = render(&c).unwrap();
        assert_eq!(var(&conf, "ETCD_DISCOVERY"), Some("https://discovery.etcd.io/0123abcd"));
        assert_eq!(var(&conf, "ETCD_DISCOVERY_PROXY"), Some("http://secure-proxy:3129"));
        assert!(var(&conf, "ETCD_INITIAL_CLUSTER").is_none());
        c.proxy.no_proxy = ".etcd.io".into();
        assert!(var(&render(&c).unwrap(), "ETCD_DISCOVERY_PROXY").is_none());
        c.proxy.no_proxy = String::new();
        c.etcd.discovery_url = "http://10.0.0.9:8087/abc".into();
        c.proxy.no_proxy = "10.0.0.0/24".into();
        assert!(var(&render(&c).unwrap(), "ETCD_DISCOVERY_PROXY").is_none());
    }

    #[test]
    fn no_proxy_matching() {
        assert!(bypassed("discovery.etcd.io", "localhost,etcd.io"));
        assert!(bypassed("discovery.etcd.io", ".etcd.io"));
        assert!(!bypassed("notetcd.io", "etcd.io"));
        assert!(bypassed("10.1.2.3", "10.0.0.0/8"));
        assert!(bypassed("anything", "*"));
        assert!(!bypassed("discovery.etcd.io", ""));
    }

    #[test]
    fn values_an_environment_file_cannot_carry_are_refused() {
        let mut c = master();
        c.etcd.discovery_url = "https://discovery.example/abc?x=1&y=2".into();
        assert!(render(&c).unwrap_err().to_string().contains("ETCD_DISCOVERY"));
        c.etcd.discovery_url = "https://discovery.example/abc".into();
        c.proxy.https_proxy = "http://user:pa$$@proxy:3128".into();
        let err = render(&c).unwrap_err().to_string();
        assert!(err.contains("ETCD_DISCOVERY_PROXY") && !err.contains("pa$$"), "{err}");
    }

    #[test]
    fn the_v2_api_for_flannel_where_etcd_turned_it_off() {
        let mut c = master();
        c.etcd.tag = "v3.4.13".into();
        assert_eq!(var(&render(&c).unwrap(), "ETCD_ENABLE_V2"), Some("true"));
        c.etcd.tag = "v3.2.7".into();
        assert!(var(&render(&c).unwrap(), "ETCD_ENABLE_V2").is_none(), "on by default before 3.4");
        c.etcd.tag = "v3.4.13".into();
        c.network.driver = NetworkDriver::Calico;
        assert!(var(&render(&c).unwrap(), "ETCD_ENABLE_V2").is_none());
    }
}
