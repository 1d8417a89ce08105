//! Rules that hold whichever way a config came in. Each error names the native field and, where one
//! exists, the heat-params key, so operators of either format recognise it.

use super::error::ConfigError;
use super::NodeConfig;

fn err(key: &str, value: impl ToString, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_string(), value: value.to_string(), reason: reason.into(), line: None }
}

fn url(errors: &mut Vec<ConfigError>, key: &str, value: &str) {
    if value.is_empty() {
        return;
    }
    let rest = value.strip_prefix("https://").or_else(|| value.strip_prefix("http://"));
    match rest {
        Some(rest) if !rest.is_empty() && !rest.starts_with('/') && !value.contains(char::is_whitespace) => {}
        _ => errors.push(err(key, value, "not an http:// or https:// URL with a host")),
    }
}

/// Every rule broken by `c`.
pub fn validate(c: &NodeConfig) -> Vec<ConfigError> {
    let mut e = Vec::new();
    let prefix = &c.runtime.container_infra_prefix;
    if !prefix.is_empty() && !prefix.ends_with('/') {
        e.push(err("runtime.container_infra_prefix (CONTAINER_INFRA_PREFIX)", prefix, "must end with /"));
    }
    url(&mut e, "openstack.auth_url (AUTH_URL)", &c.openstack.auth_url);
    url(&mut e, "openstack.magnum_url (MAGNUM_URL)", &c.openstack.magnum_url);
    url(&mut e, "etcd.discovery_url (ETCD_DISCOVERY_URL)", &c.etcd.discovery_url);
    url(&mut e, "signal.endpoint (WAIT_CURL)", &c.signal.endpoint);
    url(&mut e, "kubernetes.kubelet_url (KUBELET_URL)", &c.kubernetes.kubelet_url);
    let sha = &c.kubernetes.kubelet_sha256;
    if !sha.is_empty() && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit())) {
        e.push(err("kubernetes.kubelet_sha256 (KUBELET_SHA256)", sha, "a SHA-256: 64 hexadecimal digits"));
    }
    for (key, value) in [
        ("proxy.http_proxy (HTTP_PROXY)", &c.proxy.http_proxy),
        ("proxy.https_proxy (HTTPS_PROXY)", &c.proxy.https_proxy),
    ] {
        let shown = super::secret::mask_url_credentials(value);
        let mut found = Vec::new();
        url(&mut found, key, value);
        e.extend(found.into_iter().map(|mut x| {
            x.value = shown.clone();
            x
        }));
    }
    if !c.signal.endpoint.is_empty() && c.signal.token.is_empty() {
        e.push(err("signal.token", "", "an endpoint is set but no token to send with it"));
    }
    if c.signal.deadline_secs == 0 {
        e.push(err("signal.deadline_secs", 0, "must be at least 1 second"));
    }
    if c.openstack.api_deadline_secs == 0 {
        e.push(err("openstack.api_deadline_secs", 0, "must be at least 1 second"));
    }
    if c.agent.health_deadline_secs == 0 {
        e.push(err("agent.health_deadline_secs", 0, "must be at least 1 second"));
    }
    if c.agent.device_wait_secs == 0 {
        e.push(err("agent.device_wait_secs", 0, "must be at least 1 second"));
    }
    for mirror in &c.runtime.registry_mirrors {
        url(&mut e, "runtime.registry_mirrors", mirror);
        if mirror.is_empty() {
            e.push(err("runtime.registry_mirrors", "", "an empty mirror URL"));
        }
    }
    if c.api.port == 0 {
        e.push(err("api.port (KUBE_API_PORT)", 0, "must be a port between 1 and 65535"));
    }

    let net = &c.network;
    if net.pods_cidr.contains(&net.services_cidr.network()) || net.services_cidr.contains(&net.pods_cidr.network()) {
        e.push(err(
            "network.services_cidr (PORTAL_NETWORK_CIDR)",
            net.services_cidr,
            format!("overlaps the pod network {}", net.pods_cidr),
        ));
    }
    if !net.services_cidr.contains(&c.kubernetes.dns_service_ip) {
        e.push(err(
            "kubernetes.dns_service_ip (DNS_SERVICE_IP)",
            c.kubernetes.dns_service_ip,
            format!("not inside the service network {}", net.services_cidr),
        ));
    }
    if net.flannel_subnet_len < net.flannel_cidr.prefix_len() || net.flannel_subnet_len > 30 {
        e.push(err(
            "network.flannel_subnet_len (FLANNEL_NETWORK_SUBNETLEN)",
            net.flannel_subnet_len,
            format!("must be between the flannel network's prefix /{} and 30", net.flannel_cidr.prefix_len()),
        ));
    }
    let ca = &c.openstack.ca_pem;
    if !ca.is_empty() && !ca.contains("-----BEGIN CERTIFICATE-----") {
        e.push(err("openstack.ca_pem", ca.chars().take(40).collect::<String>(), "not a PEM certificate"));
    }
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    #[test]
    fn defaults_are_valid_and_each_rule_names_its_field() {
        assert_eq!(validate(&NodeConfig::new(Role::Master)), vec![]);
        let mut c = NodeConfig::new(Role::Minion);
        c.runtime.container_infra_prefix = "registry.example/magnum".into();
        c.network.services_cidr = "10.100.0.0/24".parse().unwrap();
        c.proxy.http_proxy = "proxy:3128".into();
        c.kubernetes.kubelet_url = "dl.k8s.io/kubelet".into();
        c.kubernetes.kubelet_sha256 = "abc".into();
        let keys: Vec<String> = validate(&c).into_iter().map(|e| e.key).collect();
        assert!(keys.iter().any(|k| k.contains("CONTAINER_INFRA_PREFIX")), "{keys:?}");
        assert!(keys.iter().any(|k| k.contains("PORTAL_NETWORK_CIDR")), "{keys:?}");
        assert!(keys.iter().any(|k| k.contains("DNS_SERVICE_IP")), "{keys:?}");
        assert!(keys.iter().any(|k| k.contains("HTTP_PROXY")), "{keys:?}");
        assert!(keys.iter().any(|k| k.contains("KUBELET_URL")), "{keys:?}");
        assert!(keys.iter().any(|k| k.contains("KUBELET_SHA256")), "{keys:?}");
    }
}
