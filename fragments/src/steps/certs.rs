//! master part-008 / minion part-006 certs: the node's TLS identities, signed by the cluster CA through
//! Magnum's certificate API (or hearth-server's), and on masters the service-account key pair.
//!
//! | node | file (under `/etc/kubernetes/certs`) | subject | SANs | extended usages |
//! |---|---|---|---|---|
//! | master | `server` (+ copy in `/etc/etcd/certs`) | `CN=kubernetes` | node IP, node public IP, API public/private addresses, etcd LB VIP, 127.0.0.1 (and ::1 on IPv6 nodes), the service IP, `kubernetes`, `kubernetes.default`, `kubernetes.default.svc`, `kubernetes.default.svc.<cluster domain>`, node name | serverAuth, clientAuth |
//! | both | `kubelet` | `CN=system:node:<node name>, O=system:nodes` | node IP, node name | clientAuth, serverAuth |
//! | both | `proxy` | `CN=system:kube-proxy, O=system:node-proxier` | — | clientAuth |
//! | master | `controller-manager` | `CN=system:kube-controller-manager` | — | clientAuth |
//! | master | `scheduler` | `CN=system:kube-scheduler` | — | clientAuth |
//! | master | `agent` | `CN=hearth-agent` (the agent's own API steps) | — | clientAuth |
//! | master | `front-proxy-client` | `CN=front-proxy-client` (the API server towards aggregated APIs) | — | clientAuth |
//!
//! Magnum's masters had `server` and `kubelet` only, and every master client of the API used `server`
//! with an insecure port or a superuser rule; here each has the identity Kubernetes' default RBAC policy
//! authorises for exactly its job (see [`crate::pki::identities`]).
//!
//! plus `ca.crt` (both directories on masters) and, on masters, `service_account.key` (the public key, as
//! kube-apiserver's `--service-account-key-file` wants it) and `service_account_private.key`.
//!
//! Departures from Magnum's make-cert (DESIGN §6): the SANs use the cluster domain instead of a
//! hard-coded `cluster.local`; the service IP is the first address of the service CIDR, IPv4 or IPv6
//! (Magnum added 1 to the last octet of the text); keys are ECDSA P-256 unless `kubernetes.key_algorithm`
//! says RSA, and an EC key's certificate asks for `digitalSignature` only (RFC 5480; RSA keys also get
//! `keyEncipherment`, as Magnum's did); the token is trust-scoped when a trust id exists; one token per
//! run instead of one per certificate, the CA fetched once; every call retried with backoff; an error
//! names the certificate and the signer's message instead of a Python KeyError. Subjects carry only CN
//! and O: Magnum's `OU=OpenStack/Magnum, C=US, ST=TX, L=Austin` described no operator, and Kubernetes reads
//! the user from CN and groups from O only. No `.csr` or `.conf` files are left behind: the request is
//! rebuilt from the config whenever one is needed.
//!
//! Idempotent: a certificate is kept when it is for the key next to it (of the configured algorithm),
//! has the expected subject, SANs and usages, is signed by the cluster's current CA and is not in its
//! renewal window (the last 30 days, or the last third of a shorter life). Otherwise a new key and
//! request replace it. The CA is fetched on every run (one Keystone token and one GET, never a signing
//! request on a converged node): the CA is what every kept certificate is checked against, and a cluster
//! whose CA was rotated or rebuilt must not keep certificates from the old one.
//!
//! A dry run (`plan`) sends nothing: it checks the certificates against the CA already on disk and lists
//! the token, CA and signing requests a real run would send, with the files each would write.
//!
//! Ownership: the host interface writes root-owned files. Keys are `0600` and certificates `0644`, so
//! components running as root read everything; a component that runs as another user (Debian's etcd runs
//! as `etcd`) is given access by its own step, never by widening the key here. Magnum instead made the
//! directory `kube:kube_etcd 0550` and the keys `0440`.

use crate::config::{NodeConfig, Role};
use crate::host::FileSpec;
use crate::openstack::keystone::{Credentials, Session};
use crate::openstack::magnum::Magnum;
use crate::paths::{ETCD_CERTS, KUBE_CERTS};
use crate::pki::{self, identities, CertSpec, Certificate, ExtendedUsage, NodeKey, San, Subject};
use crate::step::{Context, Done, CHECKED_HOSTNAME};
use anyhow::{bail, Context as _, Result};
use ipnet::IpNet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

const CA_FILE: &str = "ca.crt";
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o755;

/// One certificate this node holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Wanted {
    /// File stem: `<name>.key`, `<name>.crt`.
    pub name: &'static str,
    pub spec: CertSpec,
    /// Directories holding a copy of key and certificate; the first is where it is checked.
    pub dirs: &'static [&'static str],
}

/// The certificates of a node, as the table in the module documentation says.
pub fn wanted(config: &NodeConfig, node_name: &str) -> Result<Vec<Wanted>> {
    let node_ip = config
        .node
        .ip
        .context("node.ip (KUBE_NODE_IP) is not set: the node's certificates are issued for its address")?;
    let kubelet = Wanted {
        name: "kubelet",
        spec: CertSpec {
            subject: Subject {
                common_name: format!("system:node:{node_name}"),
                organization: Some("system:nodes".into()),
            },
            sans: dedup(vec![San::Ip(node_ip), San::Dns(node_name.to_string())]),
            extended_usages: vec![ExtendedUsage::ClientAuth, ExtendedUsage::ServerAuth],
        },
        dirs: &[KUBE_CERTS],
    };
    let proxy = Wanted {
        name: "proxy",
        spec: CertSpec {
            subject: Subject {
                common_name: identities::KUBE_PROXY.into(),
                organization: Some(identities::KUBE_PROXY_GROUP.into()),
            },
            sans: Vec::new(),
            extended_usages: vec![ExtendedUsage::ClientAuth],
        },
        dirs: &[KUBE_CERTS],
    };
    Ok(match config.role {
        Role::Master => {
            let mut certs = vec![
                Wanted {
                    name: "server",
                    spec: CertSpec {
                        subject: Subject { common_name: identities::API_SERVER.into(), organization: None },
                        sans: server_sans(config, node_ip, node_name)?,
                        extended_usages: vec![ExtendedUsage::ServerAuth, ExtendedUsage::ClientAuth],
                    },
                    // etcd serves with the API server's certificate and the API server is its client with it.
                    dirs: &[KUBE_CERTS, ETCD_CERTS],
                },
                kubelet,
                proxy,
            ];
            // The master's clients of the API, each its own user (see `identities`).
            certs.extend(identities::MASTER_CLIENTS.iter().map(|&(name, common_name)| Wanted {
                name,
                spec: CertSpec {
                    subject: Subject { common_name: common_name.into(), organization: None },
                    sans: Vec::new(),
                    extended_usages: vec![ExtendedUsage::ClientAuth],
                },
                dirs: &[KUBE_CERTS],
            }));
            certs
        }
        Role::Minion => vec![kubelet, proxy],
    })
}

/// Magnum's SAN list, in its order, with the cluster domain and the computed service IP.
fn server_sans(config: &NodeConfig, node_ip: IpAddr, node_name: &str) -> Result<Vec<San>> {
    let service_ip = first_host(&config.network.services_cidr).with_context(|| {
        format!(
            "network.services_cidr (PORTAL_NETWORK_CIDR) {} has no address for the API service",
            config.network.services_cidr
        )
    })?;
    let mut sans: Vec<San> = [
        Some(node_ip),
        config.node.public_ip,
        config.api.public_address,
        config.api.private_address,
        config.etcd.lb_vip,
        Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        node_ip.is_ipv6().then_some(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        Some(service_ip),
    ]
    .into_iter()
    .flatten()
    .map(San::Ip)
    .collect();
    let domain = config.kubernetes.dns_cluster_domain.trim_matches('.');
    for name in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        sans.push(San::Dns(name.into()));
    }
    sans.push(San::Dns(format!("kubernetes.default.svc.{domain}")));
    sans.push(San::Dns(node_name.to_string()));
    Ok(dedup(sans))
}

/// The first address after the network's own: what Kubernetes gives the `kubernetes` service.
pub fn first_host(net: &IpNet) -> Option<IpAddr> {
    let ip = match net {
        IpNet::V4(v4) => IpAddr::V4(Ipv4Addr::from(u32::from(v4.network()).checked_add(1)?)),
        IpNet::V6(v6) => IpAddr::V6(Ipv6Addr::from(u128::from(v6.network()).checked_add(1)?)),
    };
    net.contains(&ip).then_some(ip)
}

fn dedup(sans: Vec<San>) -> Vec<San> {
    let mut seen = Vec::with_capacity(sans.len());
    for san in sans {
        if !seen.contains(&san) {
            seen.push(san);
        }
    }
    seen
}

/// Every config field the step cannot do without, named all at once.
fn check_inputs(config: &NodeConfig) -> Result<()> {
    let os = &config.openstack;
    let missing: Vec<&str> = [
        (os.auth_url.is_empty(), "openstack.auth_url (AUTH_URL)"),
        (os.magnum_url.is_empty(), "openstack.magnum_url (MAGNUM_URL)"),
        (config.cluster.uuid.is_empty(), "cluster.uuid (CLUSTER_UUID)"),
        (os.trustee_user_id.is_empty(), "openstack.trustee_user_id (TRUSTEE_USER_ID)"),
        (os.trustee_password.is_empty(), "openstack.trustee_password (TRUSTEE_PASSWORD)"),
    ]
    .into_iter()
    .filter_map(|(absent, field)| absent.then_some(field))
    .collect();
    if !missing.is_empty() {
        bail!("the certificates cannot be requested without {}", missing.join(", "));
    }
    let uuid = &config.cluster.uuid;
    if !uuid.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        bail!("cluster.uuid (CLUSTER_UUID) {uuid:?} is not a cluster UUID");
    }
    Ok(())
}

/// What the step needs of the config: the certificate API, the cluster, the trustee, names and addresses
/// a certificate can carry and, on masters, the service-account key pair.
pub(super) fn check(config: &NodeConfig) -> Result<()> {
    if config.cluster.tls_disabled {
        return Ok(());
    }
    check_inputs(config)?;
    wanted(config, &config.node_name(CHECKED_HOSTNAME))?;
    if config.role == Role::Master {
        service_account_pair(config)?;
    }
    Ok(())
}

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let config = ctx.config;
    if config.cluster.tls_disabled {
        return Ok(Done::Skipped("TLS is disabled for this cluster (cluster.tls_disabled)".into()));
    }
    check(config)?;
    let node_name = config.node_name(&ctx.facts.hostname);
    let certs = wanted(config, &node_name)?;
    // Checked before anything is asked of the signer, like every other input.
    let service_account = match config.role {
        Role::Master => Some(service_account_pair(config)?),
        Role::Minion => None,
    };
    let dirs: &[&str] = match config.role {
        Role::Master => &[KUBE_CERTS, ETCD_CERTS],
        Role::Minion => &[KUBE_CERTS],
    };
    for dir in dirs {
        ctx.host.ensure_dir(Path::new(dir), DIR_MODE)?;
    }

    let os = &config.openstack;
    let session = Session::new(
        ctx.host,
        Credentials {
            auth_url: os.auth_url.clone(),
            user_id: os.trustee_user_id.clone(),
            domain_id: os.trustee_domain_id.clone(),
            password: os.trustee_password.clone(),
            trust_id: os.trust_id.clone(),
        },
    );
    let magnum = Magnum::new(ctx.host, &session, &os.magnum_url, &config.cluster.uuid);
    let ca = cluster_ca(ctx, &magnum, dirs)?;
    for cert in &certs {
        ensure(ctx, &magnum, ca.as_ref(), cert)?;
    }
    if let Some((public, private)) = service_account {
        let dir = Path::new(KUBE_CERTS);
        ctx.host.write_file(&FileSpec::new(dir.join("service_account.key"), public, KEY_MODE))?;
        ctx.host.write_file(&FileSpec::new(dir.join("service_account_private.key"), private, KEY_MODE))?;
    }
    Ok(Done::Applied)
}

/// The cluster CA from the signer, written to every directory; on a dry run, the CA already on disk (if
/// any), which is what the plan checks the certificates against.
fn cluster_ca(ctx: &Context, magnum: &Magnum, dirs: &[&str]) -> Result<Option<Certificate>> {
    let uuid = &ctx.config.cluster.uuid;
    let files: Vec<PathBuf> = dirs.iter().map(|dir| Path::new(dir).join(CA_FILE)).collect();
    let what = format!("fetching the CA of cluster {uuid} -> {}", paths_list(&files));
    let fetched = magnum.ca(&what).with_context(|| format!("fetching the CA of cluster {uuid}"))?;
    let Some(pem) = fetched else {
        let local = ctx.host.read_to_string(&files[0])?;
        return Ok(local.and_then(|pem| Certificate::from_pem(&pem).ok()));
    };
    let ca = Certificate::from_pem(&pem).with_context(|| format!("the CA Magnum returned for cluster {uuid}"))?;
    for file in &files {
        ctx.host.write_file(&FileSpec::new(file, ca.to_pem(), CERT_MODE))?;
    }
    Ok(Some(ca))
}

/// Keeps `cert` if it is still right, else asks for a new one.
fn ensure(ctx: &Context, magnum: &Magnum, ca: Option<&Certificate>, cert: &Wanted) -> Result<()> {
    let algorithm = ctx.config.kubernetes.key_algorithm;
    let (key_path, crt_path) = paths(cert.dirs[0], cert.name);
    // Bytes that are not text simply fail to parse below, and are replaced.
    let on_disk = |path: &Path| -> Result<Option<String>> {
        Ok(ctx.host.read(path)?.map(|bytes| String::from_utf8_lossy(&bytes).into_owned()))
    };
    let existing = (on_disk(&key_path)?, on_disk(&crt_path)?);
    let reason = match (existing, ca) {
        ((Some(key_pem), Some(crt_pem)), Some(ca)) => {
            match (NodeKey::from_pem(&key_pem), Certificate::from_pem(&crt_pem)) {
                (Ok(key), Ok(crt)) => match crt.mismatch(&key, &cert.spec, algorithm, ca, SystemTime::now()) {
                    None => return write(ctx, cert, &key_pem, &crt),
                    Some(reason) => reason,
                },
                (Err(e), _) => format!("the key on disk is unusable: {e:#}"),
                (_, Err(e)) => format!("the certificate on disk is unusable: {e:#}"),
            }
        }
        ((None, _), _) | ((_, None), _) => "there is none yet".to_string(),
        (_, None) => "no cluster CA is on disk to check it against".to_string(),
    };

    let key = NodeKey::generate(algorithm)?;
    let request = key.request(&cert.spec).context("building the certificate request")?;
    let files: Vec<PathBuf> = cert.dirs.iter().flat_map(|dir| <[PathBuf; 2]>::from(paths(dir, cert.name))).collect();
    let what = format!(
        "signing {} certificate ({}; SANs: {}) because {reason} -> {}",
        cert.name,
        cert.spec.subject,
        if cert.spec.sans.is_empty() { "none".into() } else { list(&cert.spec.sans) },
        paths_list(&files)
    );
    let Some(pem) = magnum.sign(&request, &what).with_context(|| format!("signing {} certificate", cert.name))? else {
        // A dry run: the request and the files it would write are in the journal.
        return Ok(());
    };
    let issued = Certificate::from_pem(&pem).context("the certificate Magnum returned")?;
    if let Some(ca) = ca {
        // Accept only the identity the next run would keep: a signer that drops a SAN would otherwise make
        // every run ask again. One already in its renewal window is still used until the next run renews it.
        if let Some(problem) = issued.identity_mismatch(&key, &cert.spec, algorithm, ca) {
            bail!("Magnum signed a {} certificate Hearth cannot use: {problem}", cert.name);
        }
    }
    write(ctx, cert, &key.to_pem(), &issued)
}

/// Key then certificate in every directory of `cert`. A crash between the two leaves a key that does not
/// match the certificate, which the next run replaces.
fn write(ctx: &Context, cert: &Wanted, key_pem: &str, crt: &Certificate) -> Result<()> {
    for dir in cert.dirs {
        let (key_path, crt_path) = paths(dir, cert.name);
        ctx.host.write_file(&FileSpec::new(key_path, key_pem, KEY_MODE))?;
        ctx.host.write_file(&FileSpec::new(crt_path, crt.to_pem(), CERT_MODE))?;
    }
    Ok(())
}

fn paths(dir: &str, name: &str) -> (PathBuf, PathBuf) {
    let dir = Path::new(dir);
    (dir.join(format!("{name}.key")), dir.join(format!("{name}.crt")))
}

fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(", ")
}

fn paths_list(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// The cluster's service-account key pair as files: `service_account.key` holds the public key
/// (kube-apiserver's `--service-account-key-file`, Magnum's naming), `service_account_private.key` the
/// private one (controller-manager's `--service-account-private-key-file`). Both `0600`, like every `.key`.
fn service_account_pair(config: &NodeConfig) -> Result<(String, String)> {
    let k8s = &config.kubernetes;
    let public = k8s.service_account_key.trim();
    let private = k8s.service_account_private_key.expose().trim();
    let fields = "kubernetes.service_account_key and kubernetes.service_account_private_key \
                  (KUBE_SERVICE_ACCOUNT_KEY, KUBE_SERVICE_ACCOUNT_PRIVATE_KEY)";
    if public.is_empty() || private.is_empty() {
        bail!("{fields} must both be set on a master: every master signs and checks service-account tokens with them");
    }
    pki::check_key_pair(public, private).with_context(|| format!("{fields} do not make a key pair"))?;
    Ok((format!("{public}\n"), format!("{private}\n")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn the_service_ip_is_the_first_host_of_the_cidr_for_both_families() {
        assert_eq!(first_host(&net("10.254.0.0/16")), Some("10.254.0.1".parse().unwrap()));
        assert_eq!(first_host(&net("10.96.0.0/12")), Some("10.96.0.1".parse().unwrap()));
        assert_eq!(first_host(&net("fd00:10:96::/112")), Some("fd00:10:96::1".parse().unwrap()));
        assert_eq!(first_host(&net("10.0.0.7/32")), None);
        assert_eq!(first_host(&net("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128")), None);
    }

    fn master() -> NodeConfig {
        let mut c = NodeConfig::new(Role::Master);
        c.node.ip = Some("10.0.0.4".parse().unwrap());
        c.node.public_ip = Some("172.24.4.10".parse().unwrap());
        c.api.public_address = Some("172.24.4.10".parse().unwrap());
        c.api.private_address = Some("10.0.0.100".parse().unwrap());
        c.etcd.lb_vip = Some("10.0.0.101".parse().unwrap());
        c.kubernetes.dns_cluster_domain = "k8s.example".into();
        c
    }

    #[test]
    fn master_sans_follow_magnums_order_with_the_fixes() {
        let certs = wanted(&master(), "m-0").unwrap();
        let server = &certs[0];
        assert_eq!(server.name, "server");
        let shown: Vec<String> = server.spec.sans.iter().map(San::to_string).collect();
        assert_eq!(
            shown,
            [
                "IP:10.0.0.4",
                "IP:172.24.4.10",
                "IP:10.0.0.100",
                "IP:10.0.0.101",
                "IP:127.0.0.1",
                "IP:10.254.0.1",
                "DNS:kubernetes",
                "DNS:kubernetes.default",
                "DNS:kubernetes.default.svc",
                "DNS:kubernetes.default.svc.k8s.example",
                "DNS:m-0",
            ]
        );
        assert_eq!(server.dirs, [KUBE_CERTS, ETCD_CERTS]);
        assert_eq!(certs[1].spec.subject.to_string(), "CN=system:node:m-0, O=system:nodes");
        assert_eq!(certs[1].spec.sans, [San::Ip("10.0.0.4".parse().unwrap()), San::Dns("m-0".into())]);
    }

    #[test]
    fn ipv6_nodes_and_service_networks() {
        let mut c = master();
        c.node.ip = Some("fd00::4".parse().unwrap());
        c.node.public_ip = None;
        c.api.public_address = None;
        c.api.private_address = None;
        c.etcd.lb_vip = None;
        c.network.services_cidr = net("fd00:10:96::/112");
        let shown: Vec<String> = wanted(&c, "m-0").unwrap()[0].spec.sans.iter().map(San::to_string).collect();
        assert_eq!(&shown[..4], ["IP:fd00::4", "IP:127.0.0.1", "IP:::1", "IP:fd00:10:96::1"]);
    }

    #[test]
    fn missing_inputs_are_named_together() {
        let mut c = NodeConfig::new(Role::Minion);
        c.openstack.auth_url = "http://127.0.0.1:5000/v3".into();
        let err = check_inputs(&c).unwrap_err().to_string();
        for field in ["MAGNUM_URL", "CLUSTER_UUID", "TRUSTEE_USER_ID", "TRUSTEE_PASSWORD"] {
            assert!(err.contains(field), "{err}");
        }
        assert!(!err.contains("AUTH_URL"), "{err}");
        assert!(wanted(&c, "n").unwrap_err().to_string().contains("node.ip (KUBE_NODE_IP)"));
    }
}
