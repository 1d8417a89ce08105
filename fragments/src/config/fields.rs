//! The one table that ties Magnum's heat-params keys to [`NodeConfig`] fields.
//!
//! The heat-params loader reads through it, the node-config step writes a Magnum-compatible heat-params
//! through it, and `validate` masks through it: a key added here works in all three.

use super::choices::Choice;
use super::secret::Secret;
use super::{NodeConfig, Role, Signal};
use ipnet::IpNet;
use std::net::IpAddr;

/// A typed place in the config that one heat-params key fills.
#[derive(Debug)]
pub enum Slot<'a> {
    Text(&'a mut String),
    /// One of a few words ([`super::choices`]).
    Choice(&'a mut dyn Choice),
    Secret(&'a mut Secret),
    /// A boolean written as Heat renders booleans: `True` / `False`.
    Bool(&'a mut bool),
    /// A boolean Magnum passes as a lower-case string (`kube_allow_priv`).
    LowerBool(&'a mut bool),
    OptBool(&'a mut Option<bool>),
    U8(&'a mut u8),
    U16(&'a mut u16),
    U32(&'a mut u32),
    U64(&'a mut u64),
    Ip(&'a mut IpAddr),
    OptIp(&'a mut Option<IpAddr>),
    Net(&'a mut IpNet),
    Role(&'a mut Role),
    /// Heat's `curl_cli` of a wait-condition handle, split into endpoint and token.
    WaitCurl(&'a mut Signal),
}

/// Words Magnum and Heat use for booleans (Heat accepts these case-insensitively).
pub fn parse_bool(raw: &str) -> Result<bool, String> {
    match raw.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "y" | "on" | "t" => Ok(true),
        "false" | "0" | "no" | "n" | "off" | "f" => Ok(false),
        _ => Err("not a boolean: expected True/False, true/false, 1/0 or yes/no".into()),
    }
}

fn parse_number<T: std::str::FromStr>(raw: &str) -> Result<T, String> {
    raw.trim().parse().map_err(|_| format!("not a whole number in range for {}", std::any::type_name::<T>()))
}

fn parse_ip(raw: &str) -> Result<IpAddr, String> {
    raw.trim().parse().map_err(|_| "not an IPv4 or IPv6 address".into())
}

/// A network in CIDR form. Host bits are refused rather than masked, so that the network a value names is
/// the one it reads as.
pub fn parse_net(raw: &str) -> Result<IpNet, String> {
    let net: IpNet = raw.trim().parse().map_err(|_| "not a CIDR such as 10.254.0.0/16".to_string())?;
    if net.trunc() != net {
        return Err(format!("host bits set: the network is {}", net.trunc()));
    }
    Ok(net)
}

/// Heat's `curl_cli`: `curl [--insecure ]-i -X POST -H 'X-Auth-Token: T' -H ... ENDPOINT`.
fn parse_wait_curl(raw: &str) -> Result<(String, String), String> {
    let token = raw
        .split('\'')
        .find_map(|part| {
            let (name, value) = part.split_once(':')?;
            name.trim().eq_ignore_ascii_case("X-Auth-Token").then(|| value.trim().to_string())
        })
        .ok_or("no 'X-Auth-Token: ...' header in the curl command")?;
    let endpoint = raw
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '\'' || c == '"'))
        .rfind(|w| w.starts_with("http://") || w.starts_with("https://"))
        .ok_or("no http(s) endpoint in the curl command")?;
    Ok((endpoint.to_string(), token))
}

fn render_wait_curl(signal: &Signal, token: &str) -> String {
    if signal.endpoint.is_empty() {
        return String::new();
    }
    format!(
        "curl -i -X POST -H 'X-Auth-Token: {token}' -H 'Content-Type: application/json' \
         -H 'Accept: application/json' {}",
        signal.endpoint
    )
}

impl Slot<'_> {
    /// Stores a raw heat-params value. An empty value means "not given": options become `None`, text
    /// becomes empty, everything else keeps its default.
    pub fn set(&mut self, raw: &str) -> Result<(), String> {
        if raw.is_empty() {
            match self {
                Slot::Text(v) => v.clear(),
                // A choice whose word for "not given" is empty takes it; the others keep their default.
                Slot::Choice(v) => {
                    let _ = v.set_word("");
                }
                Slot::Secret(v) => **v = Secret::default(),
                Slot::OptBool(v) => **v = None,
                Slot::OptIp(v) => **v = None,
                Slot::WaitCurl(s) => {
                    s.endpoint.clear();
                    s.token = Secret::default();
                }
                _ => {}
            }
            return Ok(());
        }
        match self {
            Slot::Text(v) => **v = raw.to_string(),
            Slot::Choice(v) => v.set_word(raw)?,
            Slot::Secret(v) => **v = Secret::new(raw),
            Slot::Bool(v) | Slot::LowerBool(v) => **v = parse_bool(raw)?,
            Slot::OptBool(v) => **v = Some(parse_bool(raw)?),
            Slot::U8(v) => **v = parse_number(raw)?,
            Slot::U16(v) => **v = parse_number(raw)?,
            Slot::U32(v) => **v = parse_number(raw)?,
            Slot::U64(v) => **v = parse_number(raw)?,
            Slot::Ip(v) => **v = parse_ip(raw)?,
            Slot::OptIp(v) => **v = Some(parse_ip(raw)?),
            Slot::Net(v) => **v = parse_net(raw)?,
            Slot::Role(v) => **v = raw.parse()?,
            Slot::WaitCurl(s) => {
                let (endpoint, token) = parse_wait_curl(raw)?;
                s.endpoint = endpoint;
                s.token = Secret::new(token);
            }
        }
        Ok(())
    }

    /// The value as Magnum would have written it.
    pub fn render(&self) -> String {
        match self {
            Slot::Text(v) => (*v).clone(),
            Slot::Choice(v) => v.word().to_string(),
            Slot::Secret(v) => v.expose().to_string(),
            Slot::Bool(v) => if **v { "True" } else { "False" }.into(),
            Slot::LowerBool(v) => v.to_string(),
            Slot::OptBool(v) => v.map(|b| if b { "True" } else { "False" }.to_string()).unwrap_or_default(),
            Slot::U8(v) => v.to_string(),
            Slot::U16(v) => v.to_string(),
            Slot::U32(v) => v.to_string(),
            Slot::U64(v) => v.to_string(),
            Slot::Ip(v) => v.to_string(),
            Slot::OptIp(v) => v.map(|ip| ip.to_string()).unwrap_or_default(),
            Slot::Net(v) => v.to_string(),
            Slot::Role(v) => v.to_string(),
            Slot::WaitCurl(s) => render_wait_curl(s, s.token.expose()),
        }
    }

    /// Whether the value must be masked when shown.
    pub fn is_secret(&self) -> bool {
        matches!(self, Slot::Secret(_) | Slot::WaitCurl(_))
    }
}

/// Keys Magnum Stein writes into a master's heat-params, in its order (84).
pub const STEIN_MASTER_KEYS: &[&str] = &[
    "PROMETHEUS_MONITORING",
    "KUBE_API_PUBLIC_ADDRESS",
    "KUBE_API_PRIVATE_ADDRESS",
    "KUBE_API_PORT",
    "KUBE_NODE_PUBLIC_IP",
    "KUBE_NODE_IP",
    "KUBE_ALLOW_PRIV",
    "ENABLE_CINDER",
    "ETCD_VOLUME",
    "ETCD_VOLUME_SIZE",
    "DOCKER_VOLUME",
    "DOCKER_VOLUME_SIZE",
    "DOCKER_STORAGE_DRIVER",
    "CGROUP_DRIVER",
    "NETWORK_DRIVER",
    "FLANNEL_NETWORK_CIDR",
    "FLANNEL_NETWORK_SUBNETLEN",
    "FLANNEL_BACKEND",
    "PODS_NETWORK_CIDR",
    "PORTAL_NETWORK_CIDR",
    "ADMISSION_CONTROL_LIST",
    "ETCD_DISCOVERY_URL",
    "USERNAME",
    "PASSWORD",
    "CLUSTER_SUBNET",
    "TLS_DISABLED",
    "KUBE_DASHBOARD_ENABLED",
    "INFLUX_GRAFANA_DASHBOARD_ENABLED",
    "VERIFY_CA",
    "CLUSTER_UUID",
    "MAGNUM_URL",
    "MONITORING_ENABLED",
    "VOLUME_DRIVER",
    "REGION_NAME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "KUBE_TAG",
    "CLOUD_PROVIDER_TAG",
    "CLOUD_PROVIDER_ENABLED",
    "ETCD_TAG",
    "FLANNEL_TAG",
    "FLANNEL_CNI_TAG",
    "KUBE_VERSION",
    "KUBE_DASHBOARD_VERSION",
    "TRUSTEE_USER_ID",
    "TRUSTEE_PASSWORD",
    "TRUST_ID",
    "AUTH_URL",
    "INSECURE_REGISTRY_URL",
    "CONTAINER_INFRA_PREFIX",
    "SYSTEM_PODS_INITIAL_DELAY",
    "SYSTEM_PODS_TIMEOUT",
    "ETCD_LB_VIP",
    "DNS_SERVICE_IP",
    "DNS_CLUSTER_DOMAIN",
    "CERT_MANAGER_API",
    "CA_KEY",
    "CALICO_TAG",
    "CALICO_CNI_TAG",
    "CALICO_KUBE_CONTROLLERS_TAG",
    "CALICO_IPV4POOL",
    "INGRESS_CONTROLLER",
    "INGRESS_CONTROLLER_ROLE",
    "OCTAVIA_INGRESS_CONTROLLER_TAG",
    "KUBELET_OPTIONS",
    "KUBECONTROLLER_OPTIONS",
    "KUBEAPI_OPTIONS",
    "KUBEPROXY_OPTIONS",
    "KUBESCHEDULER_OPTIONS",
    "OCTAVIA_ENABLED",
    "KUBE_SERVICE_ACCOUNT_KEY",
    "KUBE_SERVICE_ACCOUNT_PRIVATE_KEY",
    "PROMETHEUS_TAG",
    "GRAFANA_TAG",
    "HEAT_CONTAINER_AGENT_TAG",
    "KEYSTONE_AUTH_ENABLED",
    "K8S_KEYSTONE_AUTH_TAG",
    "PROJECT_ID",
    "EXTERNAL_NETWORK_ID",
    "TILLER_ENABLED",
    "TILLER_TAG",
    "TILLER_NAMESPACE",
    "NODE_PROBLEM_DETECTOR_TAG",
];

/// Keys Magnum Stein writes into a minion's heat-params, in its order (48).
pub const STEIN_MINION_KEYS: &[&str] = &[
    "PROMETHEUS_MONITORING",
    "KUBE_ALLOW_PRIV",
    "KUBE_MASTER_IP",
    "KUBE_API_PORT",
    "KUBE_NODE_PUBLIC_IP",
    "KUBE_NODE_IP",
    "ETCD_SERVER_IP",
    "ENABLE_CINDER",
    "DOCKER_VOLUME",
    "DOCKER_VOLUME_SIZE",
    "DOCKER_STORAGE_DRIVER",
    "CGROUP_DRIVER",
    "NETWORK_DRIVER",
    "REGISTRY_ENABLED",
    "REGISTRY_PORT",
    "SWIFT_REGION",
    "REGISTRY_CONTAINER",
    "REGISTRY_INSECURE",
    "REGISTRY_CHUNKSIZE",
    "TLS_DISABLED",
    "VERIFY_CA",
    "CLUSTER_UUID",
    "MAGNUM_URL",
    "AUTH_URL",
    "USERNAME",
    "PASSWORD",
    "VOLUME_DRIVER",
    "REGION_NAME",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "WAIT_CURL",
    "KUBE_TAG",
    "FLANNEL_NETWORK_CIDR",
    "PODS_NETWORK_CIDR",
    "KUBE_VERSION",
    "TRUSTEE_USER_ID",
    "TRUSTEE_PASSWORD",
    "TRUST_ID",
    "CLOUD_PROVIDER_ENABLED",
    "INSECURE_REGISTRY_URL",
    "CONTAINER_INFRA_PREFIX",
    "DNS_SERVICE_IP",
    "DNS_CLUSTER_DOMAIN",
    "KUBELET_OPTIONS",
    "KUBEPROXY_OPTIONS",
    "OCTAVIA_ENABLED",
    "HEAT_CONTAINER_AGENT_TAG",
];

/// Every heat-params key Hearth understands, with the slot it fills: the Stein master keys, the
/// minion-only keys, and keys of later releases (`NODEGROUP_ROLE`, `INSTANCE_NAME`, `ARCH`,
/// `CONTAINER_RUNTIME`, `COREDNS_TAG`), the ones Stein scripts read but never wrote, and Hearth's own
/// (`KUBELET_URL`, `KUBELET_SHA256`).
pub fn slots(c: &mut NodeConfig) -> Vec<(&'static str, Slot<'_>)> {
    use Slot::*;
    vec![
        ("PROMETHEUS_MONITORING", Bool(&mut c.addons.prometheus_monitoring)),
        ("KUBE_API_PUBLIC_ADDRESS", OptIp(&mut c.api.public_address)),
        ("KUBE_API_PRIVATE_ADDRESS", OptIp(&mut c.api.private_address)),
        ("KUBE_API_PORT", U16(&mut c.api.port)),
        ("KUBE_NODE_PUBLIC_IP", OptIp(&mut c.node.public_ip)),
        ("KUBE_NODE_IP", OptIp(&mut c.node.ip)),
        ("KUBE_ALLOW_PRIV", LowerBool(&mut c.kubernetes.allow_privileged)),
        ("ENABLE_CINDER", OptBool(&mut c.runtime.enable_cinder)),
        ("ETCD_VOLUME", Text(&mut c.etcd.volume.id)),
        ("ETCD_VOLUME_SIZE", U32(&mut c.etcd.volume.size)),
        ("DOCKER_VOLUME", Text(&mut c.runtime.volume.id)),
        ("DOCKER_VOLUME_SIZE", U32(&mut c.runtime.volume.size)),
        ("DOCKER_STORAGE_DRIVER", Choice(&mut c.runtime.storage_driver)),
        ("CGROUP_DRIVER", Choice(&mut c.kubernetes.cgroup_driver)),
        ("NETWORK_DRIVER", Choice(&mut c.network.driver)),
        ("FLANNEL_NETWORK_CIDR", Net(&mut c.network.flannel_cidr)),
        ("FLANNEL_NETWORK_SUBNETLEN", U8(&mut c.network.flannel_subnet_len)),
        ("FLANNEL_BACKEND", Choice(&mut c.network.flannel_backend)),
        ("PODS_NETWORK_CIDR", Net(&mut c.network.pods_cidr)),
        ("PORTAL_NETWORK_CIDR", Net(&mut c.network.services_cidr)),
        ("ADMISSION_CONTROL_LIST", Text(&mut c.kubernetes.admission_control_list)),
        ("ETCD_DISCOVERY_URL", Text(&mut c.etcd.discovery_url)),
        ("USERNAME", Text(&mut c.cluster.username)),
        ("PASSWORD", Secret(&mut c.cluster.password)),
        ("CLUSTER_SUBNET", Text(&mut c.openstack.cluster_subnet)),
        ("TLS_DISABLED", Bool(&mut c.cluster.tls_disabled)),
        ("KUBE_DASHBOARD_ENABLED", Bool(&mut c.addons.kube_dashboard_enabled)),
        ("INFLUX_GRAFANA_DASHBOARD_ENABLED", Bool(&mut c.addons.influx_grafana_dashboard_enabled)),
        ("VERIFY_CA", Bool(&mut c.openstack.verify_ca)),
        ("CLUSTER_UUID", Text(&mut c.cluster.uuid)),
        ("MAGNUM_URL", Text(&mut c.openstack.magnum_url)),
        ("MONITORING_ENABLED", Bool(&mut c.addons.monitoring_enabled)),
        ("VOLUME_DRIVER", Text(&mut c.cluster.volume_driver)),
        ("REGION_NAME", Text(&mut c.openstack.region)),
        ("HTTP_PROXY", Text(&mut c.proxy.http_proxy)),
        ("HTTPS_PROXY", Text(&mut c.proxy.https_proxy)),
        ("NO_PROXY", Text(&mut c.proxy.no_proxy)),
        ("KUBE_TAG", Text(&mut c.kubernetes.tag)),
        ("CLOUD_PROVIDER_TAG", Text(&mut c.kubernetes.cloud_provider_tag)),
        ("CLOUD_PROVIDER_ENABLED", Bool(&mut c.kubernetes.cloud_provider_enabled)),
        ("ETCD_TAG", Text(&mut c.etcd.tag)),
        ("FLANNEL_TAG", Text(&mut c.network.flannel_tag)),
        ("FLANNEL_CNI_TAG", Text(&mut c.network.flannel_cni_tag)),
        ("KUBE_VERSION", Text(&mut c.kubernetes.version)),
        ("KUBE_DASHBOARD_VERSION", Text(&mut c.addons.kube_dashboard_version)),
        ("TRUSTEE_USER_ID", Text(&mut c.openstack.trustee_user_id)),
        ("TRUSTEE_PASSWORD", Secret(&mut c.openstack.trustee_password)),
        ("TRUST_ID", Secret(&mut c.openstack.trust_id)),
        ("AUTH_URL", Text(&mut c.openstack.auth_url)),
        ("INSECURE_REGISTRY_URL", Text(&mut c.runtime.insecure_registry_url)),
        ("CONTAINER_INFRA_PREFIX", Text(&mut c.runtime.container_infra_prefix)),
        ("SYSTEM_PODS_INITIAL_DELAY", U32(&mut c.cluster.system_pods_initial_delay)),
        ("SYSTEM_PODS_TIMEOUT", U32(&mut c.cluster.system_pods_timeout)),
        ("ETCD_LB_VIP", OptIp(&mut c.etcd.lb_vip)),
        ("DNS_SERVICE_IP", Ip(&mut c.kubernetes.dns_service_ip)),
        ("DNS_CLUSTER_DOMAIN", Text(&mut c.kubernetes.dns_cluster_domain)),
        ("CERT_MANAGER_API", Bool(&mut c.kubernetes.cert_manager_api)),
        ("CA_KEY", Secret(&mut c.kubernetes.ca_key)),
        ("CALICO_TAG", Text(&mut c.network.calico_tag)),
        ("CALICO_CNI_TAG", Text(&mut c.network.calico_cni_tag)),
        ("CALICO_KUBE_CONTROLLERS_TAG", Text(&mut c.network.calico_kube_controllers_tag)),
        ("CALICO_IPV4POOL", Net(&mut c.network.calico_ipv4pool)),
        ("INGRESS_CONTROLLER", Choice(&mut c.addons.ingress_controller)),
        ("INGRESS_CONTROLLER_ROLE", Text(&mut c.addons.ingress_controller_role)),
        ("OCTAVIA_INGRESS_CONTROLLER_TAG", Text(&mut c.addons.octavia_ingress_controller_tag)),
        ("KUBELET_OPTIONS", Text(&mut c.kubernetes.kubelet_options)),
        ("KUBECONTROLLER_OPTIONS", Text(&mut c.kubernetes.kubecontroller_options)),
        ("KUBEAPI_OPTIONS", Text(&mut c.kubernetes.kubeapi_options)),
        ("KUBEPROXY_OPTIONS", Text(&mut c.kubernetes.kubeproxy_options)),
        ("KUBESCHEDULER_OPTIONS", Text(&mut c.kubernetes.kubescheduler_options)),
        ("OCTAVIA_ENABLED", Bool(&mut c.openstack.octavia_enabled)),
        ("KUBE_SERVICE_ACCOUNT_KEY", Text(&mut c.kubernetes.service_account_key)),
        ("KUBE_SERVICE_ACCOUNT_PRIVATE_KEY", Secret(&mut c.kubernetes.service_account_private_key)),
        ("PROMETHEUS_TAG", Text(&mut c.addons.prometheus_tag)),
        ("GRAFANA_TAG", Text(&mut c.addons.grafana_tag)),
        ("HEAT_CONTAINER_AGENT_TAG", Text(&mut c.runtime.heat_container_agent_tag)),
        ("KEYSTONE_AUTH_ENABLED", Bool(&mut c.kubernetes.keystone_auth_enabled)),
        ("K8S_KEYSTONE_AUTH_TAG", Text(&mut c.kubernetes.keystone_auth_tag)),
        ("PROJECT_ID", Text(&mut c.openstack.project_id)),
        ("EXTERNAL_NETWORK_ID", Text(&mut c.openstack.external_network_id)),
        ("TILLER_ENABLED", Bool(&mut c.addons.tiller_enabled)),
        ("TILLER_TAG", Text(&mut c.addons.tiller_tag)),
        ("TILLER_NAMESPACE", Text(&mut c.addons.tiller_namespace)),
        ("NODE_PROBLEM_DETECTOR_TAG", Text(&mut c.addons.node_problem_detector_tag)),
        // Minion-only in Stein.
        ("KUBE_MASTER_IP", OptIp(&mut c.api.master_ip)),
        ("ETCD_SERVER_IP", OptIp(&mut c.etcd.server_ip)),
        ("REGISTRY_ENABLED", Bool(&mut c.registry.enabled)),
        ("REGISTRY_PORT", U16(&mut c.registry.port)),
        ("SWIFT_REGION", Text(&mut c.registry.swift_region)),
        ("REGISTRY_CONTAINER", Text(&mut c.registry.container)),
        ("REGISTRY_INSECURE", Bool(&mut c.registry.insecure)),
        ("REGISTRY_CHUNKSIZE", U64(&mut c.registry.chunksize)),
        ("WAIT_CURL", WaitCurl(&mut c.signal)),
        // Read by Stein scripts but never written (inventory A2, A9): Hearth carries them to every node.
        ("TRUSTEE_USERNAME", Text(&mut c.openstack.trustee_username)),
        ("TRUSTEE_DOMAIN_ID", Text(&mut c.openstack.trustee_domain_id)),
        // Later Magnum releases.
        ("NODEGROUP_ROLE", Role(&mut c.role)),
        ("INSTANCE_NAME", Text(&mut c.node.instance_name)),
        ("ARCH", Text(&mut c.node.arch)),
        ("CONTAINER_RUNTIME", Choice(&mut c.runtime.kind)),
        ("COREDNS_TAG", Text(&mut c.addons.coredns_tag)),
        // Hearth's own: where a node without a kubelet gets one.
        ("KUBELET_URL", Text(&mut c.kubernetes.kubelet_url)),
        ("KUBELET_SHA256", Text(&mut c.kubernetes.kubelet_sha256)),
    ]
}

/// Whether `key` holds a secret (for masking values of keys that failed to load).
pub fn is_secret_key(key: &str) -> bool {
    let mut scratch = NodeConfig::new(super::Role::Minion);
    slots(&mut scratch).into_iter().any(|(k, slot)| k == key && slot.is_secret())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_stein_key_has_a_slot_and_no_key_is_listed_twice() {
        let mut c = NodeConfig::new(super::super::Role::Master);
        let keys: Vec<&str> = slots(&mut c).into_iter().map(|(k, _)| k).collect();
        let unique: HashSet<&str> = keys.iter().copied().collect();
        assert_eq!(unique.len(), keys.len(), "duplicate key in the table");
        assert_eq!(STEIN_MASTER_KEYS.len(), 84);
        assert_eq!(STEIN_MINION_KEYS.len(), 48);
        for key in STEIN_MASTER_KEYS.iter().chain(STEIN_MINION_KEYS) {
            assert!(unique.contains(key), "{key} has no slot");
        }
    }

    #[test]
    fn wait_curl_splits_into_endpoint_and_token_and_back() {
        let raw = "curl --insecure -i -X POST -H 'X-Auth-Token: gAAAAB-tok_en' -H 'Content-Type: application/json' \
                   -H 'Accept: application/json' http://127.0.0.1:8004/v1/p/stacks/s/i/resources/h/signal";
        let (endpoint, token) = parse_wait_curl(raw).unwrap();
        assert_eq!(endpoint, "http://127.0.0.1:8004/v1/p/stacks/s/i/resources/h/signal");
        assert_eq!(token, "gAAAAB-tok_en");
        let mut signal = Signal::default();
        Slot::WaitCurl(&mut signal).set(raw).unwrap();
        let again = Slot::WaitCurl(&mut signal).render();
        assert_eq!(parse_wait_curl(&again).unwrap(), (endpoint, token));
        assert!(parse_wait_curl("curl http://x/").unwrap_err().contains("X-Auth-Token"));
    }

    #[test]
    fn cidrs_with_host_bits_are_refused() {
        assert!(parse_net("10.254.0.1/16").unwrap_err().contains("10.254.0.0/16"));
        assert!(parse_net("fd00::/64").is_ok());
    }
}
