//! From a template, a cluster and the settings to what Heat and the nodes need: a pure function.
//!
//! First [`magnum`] computes the parameters Magnum's Stein driver would have sent to Heat (inventory §6:
//! attribute mappings, then the extra parameters on top), minus what needs a live cloud. Then Hearth splits
//! them: what Heat itself needs (servers, networks, volumes, load balancers) stays a Heat parameter of
//! `cluster.yaml` ([`heat`]); everything a node reads goes into the node config of its role ([`node`]),
//! which the user-data carries whole. Magnum sent ~100 parameters through three templates into a shell
//! file; Hearth sends one typed document per role.
//!
//! Each takes the [`Inputs`] a render resolved once; `magnum_parameters`, `heat_parameters`,
//! `node_config` and `parts` resolve them for a caller that wants one piece alone.
//!
//! Departures from Magnum (DESIGN §6), each deliberate:
//! - `apiserver_port` of the template is honoured (Magnum ignored it for this driver).
//! - `dns_service_ip` is the tenth address of the service CIDR (Magnum kept 10.254.0.10 whatever the CIDR).
//! - the discovery URL is never fetched from discovery.etcd.io at render time: without one, masters form a
//!   static etcd cluster (the agent's etcd step).
//! - a missing `docker_storage_driver` means overlay2 (Magnum's template default was devicemapper, which
//!   current docker and containerd no longer have).
//! - the stack name's random suffix is derived from the cluster UUID, so a re-render gives the same name.
//! - the external network is passed as given (name or id): Heat resolves names itself.
//! - the etcd volume follows the *effective* labels (Magnum read the template's labels for the environment
//!   but the cluster's for the size, inventory §5.6).

use crate::cidr::NetworkLabel;
use crate::inputs::Inputs;
use crate::model::{Cluster, ClusterTemplate, Effective};
use crate::settings::Loaded;
use hearth_fragments::config::fields::{parse_bool, slots, STEIN_MASTER_KEYS, STEIN_MINION_KEYS};
use hearth_fragments::config::{NetworkDriver, NodeConfig, Role, StorageDriverChoice};
use ipnet::IpNet;
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// [`magnum`] for inputs not yet resolved, for a caller that wants this piece alone.
pub fn magnum_parameters(t: &ClusterTemplate, c: &Cluster, s: &Loaded) -> BTreeMap<String, Value> {
    magnum(&Inputs::resolve(t, c, s))
}

/// The parameters Magnum's Stein driver would have sent (inventory §6), with `Null` for "sent as None".
pub fn magnum(inputs: &Inputs) -> BTreeMap<String, Value> {
    let (t, c, s, e, labels) = (inputs.template, inputs.cluster, inputs.settings, &inputs.effective, &inputs.labels);
    let settings = &s.settings;
    let mut p: BTreeMap<String, Value> = BTreeMap::new();
    let mut put = |key: &str, value: Value| {
        p.insert(key.to_string(), value);
    };
    let text = |v: &Option<String>| v.clone().map(Value::String);

    // §6.1 attribute mappings: only values that are not None.
    let attributes = [
        ("ssh_key_name", text(&e.keypair)),
        ("server_image", text(&t.image_id)),
        ("dns_nameserver", text(&t.dns_nameserver)),
        ("http_proxy", text(&t.http_proxy)),
        ("https_proxy", text(&t.https_proxy)),
        ("no_proxy", text(&t.no_proxy)),
        ("number_of_masters", Some(json!(e.master_count))),
        ("master_flavor", text(&e.master_flavor_id)),
        ("minion_flavor", text(&e.flavor_id)),
        ("number_of_minions", Some(json!(e.node_count))),
        ("fixed_network", text(&e.fixed_network)),
        ("fixed_subnet", text(&e.fixed_subnet)),
        (
            "network_driver",
            Some(Value::String(t.network_driver.clone().unwrap_or(settings.kubernetes_default_network_driver.clone()))),
        ),
        ("volume_driver", text(&t.volume_driver)),
        ("tls_disabled", Some(json!(t.tls_disabled))),
        ("registry_enabled", Some(json!(t.registry_enabled))),
        ("cluster_uuid", text(&c.uuid)),
        ("insecure_registry_url", text(&t.insecure_registry)),
        ("kube_version", labels.get("kube_tag").cloned().map(Value::String)),
        ("docker_volume_size", e.docker_volume_size.map(|v| json!(v))),
        ("docker_storage_driver", text(&t.docker_storage_driver)),
    ];
    for (key, value) in attributes {
        if let Some(value) = value {
            put(key, value);
        }
    }

    // §6.2 extra parameters, on top.
    put("trustee_domain_id", json!(settings.trustee.domain_id));
    put("trustee_user_id", json!(settings.trustee.user_id));
    put("trustee_username", json!(settings.trustee.username));
    put("trustee_password", json!(settings.trustee.password.expose()));
    put("verify_ca", json!(settings.verify_ca));
    put("openstack_ca", json!(s.openstack_ca));
    put("trust_id", json!(if settings.cluster_user_trust { settings.trustee.trust_id.expose() } else { "" }));
    put("auth_url", json!(settings.auth_url.trim_end_matches('/')));
    put("discovery_url", json!(c.discovery_url.clone().unwrap_or_default()));
    put("magnum_url", json!(settings.magnum_url));
    if t.tls_disabled {
        put("loadbalancing_protocol", json!("HTTP"));
        put("kubernetes_port", json!(8080));
    } else if let Some(port) = t.apiserver_port {
        put("kubernetes_port", json!(port));
    }
    put("octavia_enabled", json!(settings.octavia_enabled));
    put("external_network", json!(t.external_network_id.clone().unwrap_or_else(|| "public".into())));
    for name in crate::labels::ALWAYS {
        put(name, labels.get(*name).map_or(Value::Null, |v| json!(v)));
    }
    put("ingress_controller", json!(labels.get("ingress_controller").map(|v| v.to_lowercase()).unwrap_or_default()));
    if let Some(range) = labels.get("service_cluster_ip_range").filter(|v| !v.is_empty()) {
        put("portal_network_cidr", json!(range));
    }
    if t.registry_enabled {
        put("swift_region", json!(settings.swift_region));
        put("registry_container", json!(settings.registry_container));
    }
    put("username", json!(settings.username));
    put("region_name", json!(settings.region));
    put(
        "docker_volume_type",
        json!(labels.get("docker_volume_type").cloned().unwrap_or(settings.default_docker_volume_type.clone())),
    );
    put("nodes_affinity_policy", json!(settings.nodes_affinity_policy));
    let driver = p["network_driver"].as_str().and_then(|d| d.parse::<NetworkDriver>().ok());
    let mut put = |key: &str, value: Value| {
        p.insert(key.to_string(), value);
    };
    match driver {
        Some(NetworkDriver::Flannel) => {
            put("pods_network_cidr", json!(NetworkLabel::FlannelNetwork.text(labels)));
        }
        Some(NetworkDriver::Calico) => {
            put("pods_network_cidr", json!(NetworkLabel::CalicoPool.text(labels)));
        }
        None => {}
    }
    for name in crate::labels::TRUTHY {
        if let Some(v) = labels.get(*name).filter(|v| !v.is_empty()) {
            put(name, json!(v));
        }
    }
    put("kube_service_account_key", json!(s.service_account_public_key));
    put("kube_service_account_private_key", json!(s.service_account_private_key.expose()));
    put("project_id", json!(c.project_id.clone().unwrap_or_default()));
    p
}

/// Which optional parts of `cluster.yaml` a cluster uses (Magnum chose environment files, inventory §5.6;
/// Hearth passes booleans that the templates' `conditions` read).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Parts {
    pub private_network: bool,
    pub etcd_volume: bool,
    pub docker_volume: bool,
    pub master_lb: bool,
    pub floating_ip: bool,
    pub lb_floating_ip: bool,
}

impl Parts {
    pub fn of(inputs: &Inputs) -> Parts {
        let (e, labels) = (&inputs.effective, &inputs.labels);
        let etcd_size = labels.get("etcd_volume_size").and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let lb_fip = labels
            .get("master_lb_floating_ip_enabled")
            .and_then(|v| parse_bool(v).ok())
            .unwrap_or(e.floating_ip_enabled);
        Parts {
            private_network: e.fixed_network.as_deref().is_none_or(str::is_empty),
            etcd_volume: etcd_size >= 1,
            docker_volume: e.docker_volume_size.is_some_and(|s| s > 0),
            master_lb: e.master_lb_enabled,
            floating_ip: e.floating_ip_enabled,
            lb_floating_ip: e.master_lb_enabled && lb_fip,
        }
    }
}

/// [`Parts::of`] for inputs not yet resolved, for a caller that wants this piece alone.
pub fn parts(t: &ClusterTemplate, c: &Cluster, s: &Loaded) -> Parts {
    Parts::of(&Inputs::resolve(t, c, s))
}

/// [`heat`] for inputs not yet resolved, for a caller that wants this piece alone.
pub fn heat_parameters(
    t: &ClusterTemplate,
    c: &Cluster,
    s: &Loaded,
    magnum: &BTreeMap<String, Value>,
) -> Map<String, Value> {
    heat(&Inputs::resolve(t, c, s), magnum)
}

/// The parameters of Hearth's `cluster.yaml`, except the two user-data texts the caller adds.
pub fn heat(inputs: &Inputs, magnum: &BTreeMap<String, Value>) -> Map<String, Value> {
    let (e, labels) = (&inputs.effective, &inputs.labels);
    let parts = Parts::of(inputs);
    let text = |key: &str| magnum.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
    let mut p = Map::new();
    p.insert("ssh_key_name".into(), json!(text("ssh_key_name")));
    p.insert("server_image".into(), json!(text("server_image")));
    p.insert("master_flavor".into(), json!(e.master_flavor_id.clone().unwrap_or_else(|| "m1.small".into())));
    p.insert("minion_flavor".into(), json!(e.flavor_id.clone().unwrap_or_else(|| "m1.small".into())));
    p.insert("number_of_masters".into(), json!(e.master_count));
    p.insert("number_of_minions".into(), json!(e.node_count));
    p.insert("external_network".into(), json!(text("external_network")));
    p.insert("fixed_network".into(), json!(text("fixed_network")));
    p.insert("fixed_subnet".into(), json!(text("fixed_subnet")));
    p.insert("fixed_network_cidr".into(), json!(NetworkLabel::FixedNetwork.text(labels)));
    p.insert("dns_nameserver".into(), json!(text("dns_nameserver")));
    p.insert("availability_zone".into(), json!(text("availability_zone")));
    p.insert("nodes_affinity_policy".into(), json!(text("nodes_affinity_policy")));
    p.insert("master_lb_enabled".into(), json!(parts.master_lb));
    p.insert("master_lb_floating_ip_enabled".into(), json!(parts.lb_floating_ip));
    p.insert("floating_ip_enabled".into(), json!(parts.floating_ip));
    p.insert(
        "loadbalancing_protocol".into(),
        json!(magnum.get("loadbalancing_protocol").and_then(Value::as_str).unwrap_or("TCP")),
    );
    p.insert("kubernetes_port".into(), json!(kubernetes_port(magnum)));
    let etcd_size: u64 = labels.get("etcd_volume_size").and_then(|v| v.parse().ok()).unwrap_or(0);
    p.insert("etcd_volume_size".into(), json!(etcd_size));
    p.insert("docker_volume_size".into(), json!(e.docker_volume_size.unwrap_or(0).max(0)));
    p.insert("docker_volume_type".into(), json!(text("docker_volume_type")));
    p.insert("pods_network_cidr".into(), json!(text("pods_network_cidr")));
    p.insert("wait_condition_timeout".into(), json!(u64::from(e.create_timeout) * 60));
    p
}

fn kubernetes_port(magnum: &BTreeMap<String, Value>) -> u64 {
    magnum.get("kubernetes_port").and_then(Value::as_u64).unwrap_or(6443)
}

/// Magnum parameter names whose heat-params key is not simply the upper-cased name.
const RENAMED: &[(&str, &str)] = &[
    ("kubernetes_port", "KUBE_API_PORT"),
    ("discovery_url", "ETCD_DISCOVERY_URL"),
    ("external_network", "EXTERNAL_NETWORK_ID"),
    ("docker_storage_driver", "DOCKER_STORAGE_DRIVER"),
];

/// Magnum parameters that never reach a node: Heat alone uses them, or Hearth has no use for them.
pub const HEAT_ONLY: &[(&str, &str)] = &[
    ("ssh_key_name", "Heat: the servers' Nova keypair"),
    ("server_image", "Heat: the servers' image"),
    ("master_flavor", "Heat: the masters' flavor"),
    ("minion_flavor", "Heat: the minions' flavor"),
    ("number_of_masters", "Heat: size of the master group"),
    ("number_of_minions", "Heat: size of the minion group"),
    ("fixed_network", "Heat: the network of the node ports"),
    ("fixed_subnet", "Heat: the subnet of the ports; nodes get it as openstack.cluster_subnet from Heat"),
    ("dns_nameserver", "Heat: the created subnet's resolver"),
    ("nodes_affinity_policy", "Heat: the server groups' policy"),
    ("availability_zone", "Heat: the servers' availability zone"),
    ("loadbalancing_protocol", "Heat: the API load balancer's protocol"),
    ("docker_volume_type", "Heat: the Cinder type of docker volumes"),
    ("openstack_ca", "node config openstack.ca_pem"),
    ("grafana_admin_passwd", "dropped: the legacy Prometheus/Grafana add-on is not rendered by Hearth"),
];

/// Keys every node gets beyond what Stein wrote for its role: the trustee's name and domain (read by
/// Stein's scripts but never written, inventory A2/A9), the runtime of later releases, what the
/// cloud-provider config names, and where the kubelet comes from.
const EVERY_NODE: &[&str] = &[
    "TRUSTEE_USERNAME",
    "TRUSTEE_DOMAIN_ID",
    "CONTAINER_RUNTIME",
    "PROJECT_ID",
    "EXTERNAL_NETWORK_ID",
    "KUBELET_URL",
    "KUBELET_SHA256",
];

/// Keys of later Magnum releases that only masters read: the CoreDNS tag (the add-ons step is a master's).
const LATER_MASTER_KEYS: &[&str] = &["COREDNS_TAG"];

/// Whether a node of `role` receives a heat-params key. Minions never receive the service-account private
/// key, the cluster CA key or the control plane's options, as in Magnum.
fn reaches(role: Role, key: &str) -> bool {
    let own = if role == Role::Master { STEIN_MASTER_KEYS } else { STEIN_MINION_KEYS };
    own.contains(&key) || EVERY_NODE.contains(&key) || (role == Role::Master && LATER_MASTER_KEYS.contains(&key))
}

/// [`node`] for inputs not yet resolved, for a caller that wants this piece alone.
pub fn node_config(
    role: Role,
    t: &ClusterTemplate,
    c: &Cluster,
    s: &Loaded,
    magnum: &BTreeMap<String, Value>,
) -> Result<NodeConfig, Vec<String>> {
    node(role, &Inputs::resolve(t, c, s), magnum)
}

/// The node config of `role` for this cluster, without the per-node values Heat fills in at create time
/// (see [`crate::user_data`]).
pub fn node(role: Role, inputs: &Inputs, magnum: &BTreeMap<String, Value>) -> Result<NodeConfig, Vec<String>> {
    let (t, s, labels) = (inputs.template, inputs.settings, &inputs.labels);
    let mut config = NodeConfig::new(role);
    let mut errors = Vec::new();
    {
        let mut table: BTreeMap<&'static str, _> = slots(&mut config).into_iter().collect();
        let mut set = |key: String, raw: &str| {
            if !reaches(role, &key) {
                return;
            }
            if let Some(slot) = table.get_mut(key.as_str()) {
                if let Err(reason) = slot.set(raw) {
                    errors.push(format!("{key} = {raw:?}: {reason}"));
                }
            }
        };
        for (name, value) in magnum {
            if HEAT_ONLY.iter().any(|(n, _)| n == name) {
                continue;
            }
            let raw = match value {
                Value::Null => continue,
                Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let key =
                RENAMED.iter().find(|(n, _)| n == name).map_or_else(|| name.to_uppercase(), |(_, k)| k.to_string());
            set(key, &raw);
        }
        for name in crate::labels::HEARTH {
            if let Some(v) = labels.get(*name) {
                set(name.to_uppercase(), v);
            }
        }
    }
    config.openstack.ca_pem = s.openstack_ca.clone();
    if magnum.get("kube_version").is_none() {
        config.kubernetes.version = config.kubernetes.tag.clone();
    }
    if t.docker_storage_driver.is_none() {
        config.runtime.storage_driver = StorageDriverChoice::Overlay2;
    }
    if !labels.contains_key("dns_service_ip") {
        match tenth_address(&config.network.services_cidr) {
            Some(ip) => config.kubernetes.dns_service_ip = ip,
            None => errors
                .push(format!("service CIDR {} has no tenth address for cluster DNS", config.network.services_cidr)),
        }
    }
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(errors)
    }
}

/// The tenth address of a CIDR (10.254.0.0/16 → 10.254.0.10), Kubernetes' conventional DNS service IP.
fn tenth_address(net: &IpNet) -> Option<IpAddr> {
    let ip = match net.network() {
        IpAddr::V4(base) => IpAddr::from(u32::from(base).checked_add(10)?.to_be_bytes()),
        IpAddr::V6(base) => IpAddr::from(u128::from(base).checked_add(10)?.to_be_bytes()),
    };
    net.contains(&ip).then_some(ip)
}

/// Magnum's stack name rule (inventory §6.3): the first 30 characters of the cluster name, `_` and `.`
/// turned into `-`, anything else outside `[A-Za-z0-9-]` dropped, then `-` and a 12-character suffix, all
/// lower case. Magnum's suffix was random; Hearth's is the base32 of the UUID's first 60 bits, so that a
/// cluster keeps its name across renders and two clusters do not share one.
pub fn stack_name(cluster_name: &str, uuid: &str) -> String {
    let prefix: String = cluster_name
        .chars()
        .take(30)
        .map(|ch| if ch == '_' || ch == '.' { '-' } else { ch })
        .filter(|ch| ch.is_ascii_alphanumeric() || *ch == '-')
        .collect();
    let hex: String = uuid.chars().filter(char::is_ascii_hexdigit).take(15).collect();
    let bits = u64::from_str_radix(&hex, 16).unwrap_or(0);
    const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
    let suffix: String = (0..12).rev().map(|i| ALPHABET[((bits >> (i * 5)) & 31) as usize] as char).collect();
    format!("{prefix}-{suffix}").to_lowercase()
}

/// Magnum's timeout rule: the cluster's `create_timeout` if positive, else the settings' (60 by default).
pub fn timeout_mins(c: &Cluster, s: &Loaded) -> u32 {
    Effective::of(&ClusterTemplate::default(), c, s.settings.create_timeout).create_timeout
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stack_names_follow_magnums_rule_with_a_stable_suffix() {
        let name = stack_name("expected_stack.name!", "5d12f6fd-a196-4bf0-ae4c-1f639a523a52");
        assert!(name.starts_with("expected-stack-name-"), "{name}");
        assert_eq!(name.len(), "expected-stack-name-".len() + 12);
        assert!(name[20..].chars().all(|c| c.is_ascii_lowercase() || ('2'..='7').contains(&c)));
        assert_eq!(name, stack_name("expected_stack.name!", "5d12f6fd-a196-4bf0-ae4c-1f639a523a52"));
        assert_ne!(name, stack_name("expected_stack.name!", "6d12f6fd-a196-4bf0-ae4c-1f639a523a52"));
        let long = stack_name(&"A".repeat(40), "5d12f6fd-a196-4bf0-ae4c-1f639a523a52");
        assert!(long.starts_with(&format!("{}-", "a".repeat(30))));
    }

    #[test]
    fn timeouts_follow_magnums_rule() {
        let s = Loaded::defaults();
        for (given, want) in [(None, 60), (Some(0), 60), (Some(15), 15)] {
            let c = Cluster { create_timeout: given, ..Default::default() };
            assert_eq!(timeout_mins(&c, &s), want, "{given:?}");
        }
    }

    #[test]
    fn the_dns_service_ip_follows_the_service_cidr() {
        assert_eq!(tenth_address(&"10.254.0.0/16".parse().unwrap()), Some("10.254.0.10".parse().unwrap()));
        assert_eq!(tenth_address(&"172.30.0.0/24".parse().unwrap()), Some("172.30.0.10".parse().unwrap()));
        assert_eq!(tenth_address(&"fd00:10::/108".parse().unwrap()), Some("fd00:10::a".parse().unwrap()));
    }
}
