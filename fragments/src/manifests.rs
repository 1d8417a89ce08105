//! The Kubernetes manifests the cluster steps apply: YAML files under `fragments/manifests/`, compiled in,
//! each saying where it comes from in Magnum.
//!
//! `${NAME}` placeholders stand for values from the config. They are filled after the YAML is parsed, in
//! keys and string values only, so no value can change a manifest's structure; a placeholder without a
//! value is an error, never left in. Images are `<container_infra_prefix><name>:<tag>`, or Magnum's
//! registry for that image when no prefix is configured.

use crate::config::NodeConfig;
use crate::kube::prefixed_image as image;
use crate::kube::KubeVersion;
use anyhow::{bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde::Deserialize as _;
use serde_json::{Map, Value};

pub const APISERVER_KUBELET_RBAC: &str = include_str!("../manifests/apiserver-kubelet-rbac.yaml");
pub const COREDNS: &str = include_str!("../manifests/coredns.yaml");
pub const FLANNEL: &str = include_str!("../manifests/flannel.yaml");
pub const CALICO: &str = include_str!("../manifests/calico.yaml");
pub const CLOUD_CONTROLLER_MANAGER: &str = include_str!("../manifests/openstack-cloud-controller-manager.yaml");

/// Stein's cluster-proportional-autoscaler, which sizes CoreDNS.
const AUTOSCALER_TAG: &str = "1.1.2";

/// The objects of `template` with its placeholders filled from `vars`.
pub fn render(template: &str, vars: &[(&str, String)]) -> Result<Vec<Value>> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(template).enumerate() {
        let value = Value::deserialize(document).with_context(|| format!("manifest document #{}", index + 1))?;
        if !value.is_null() {
            objects.push(fill(value, vars).with_context(|| format!("manifest document #{}", index + 1))?);
        }
    }
    Ok(objects)
}

fn fill(value: Value, vars: &[(&str, String)]) -> Result<Value> {
    Ok(match value {
        Value::String(text) => Value::String(substitute(&text, vars)?),
        Value::Array(items) => Value::Array(items.into_iter().map(|v| fill(v, vars)).collect::<Result<_>>()?),
        Value::Object(map) => {
            let mut filled = Map::new();
            for (key, value) in map {
                filled.insert(substitute(&key, vars)?, fill(value, vars)?);
            }
            Value::Object(filled)
        }
        other => other,
    })
}

fn substitute(text: &str, vars: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else { bail!("unterminated placeholder in {text:?}") };
        let name = &after[..end];
        let Some((_, value)) = vars.iter().find(|(n, _)| *n == name) else {
            bail!("placeholder ${{{name}}} has no value");
        };
        out.push_str(value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// flannel's network configuration in Magnum's words: the same JSON goes into etcd (network-config) and
/// into the `kube-flannel-cfg` ConfigMap (addons).
pub fn flannel_network_config(config: &NodeConfig) -> String {
    let net = &config.network;
    // The backend is validated to one of udp, vxlan, host-gw; the CIDR and length are typed.
    format!(
        "{{\"Network\": \"{}\", \"Subnetlen\": {}, \"Backend\": {{\"Type\": \"{}\"}}}}",
        net.flannel_cidr, net.flannel_subnet_len, net.flannel_backend
    )
}

/// The ClusterRole and binding that let the API server reach the kubelets.
pub fn apiserver_kubelet_rbac() -> Result<Vec<Value>> {
    render(APISERVER_KUBELET_RBAC, &[])
}

/// The OpenStack cloud-controller-manager on the masters, reading the kube-os-config step's cloud config.
pub fn cloud_controller_manager(config: &NodeConfig) -> Result<Vec<Value>> {
    let tag = &config.kubernetes.cloud_provider_tag;
    let name = match config.cluster.uuid.as_str() {
        "" => "kubernetes",
        uuid => uuid,
    };
    let vars = [
        ("OCCM_IMAGE", image(config, "docker.io/k8scloudprovider/", "openstack-cloud-controller-manager", tag)),
        ("CLOUD_CONFIG", crate::paths::CLOUD_CONFIG.to_string()),
        ("CLUSTER_NAME", name.to_string()),
    ];
    render(CLOUD_CONTROLLER_MANAGER, &vars)
}

/// CoreDNS serving the cluster domain at the DNS service IP.
pub fn coredns(config: &NodeConfig) -> Result<Vec<Value>> {
    let k8s = &config.kubernetes;
    let domain = k8s.dns_cluster_domain.trim_end_matches('.');
    // The domain is written into the Corefile's text, where anything else could add directives.
    let label = |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !domain.split('.').all(label) {
        bail!("kubernetes.dns_cluster_domain (DNS_CLUSTER_DOMAIN) {domain:?} is not a DNS domain");
    }
    let vars = [
        ("DNS_CLUSTER_DOMAIN", domain.to_string()),
        ("SERVICES_CIDR", config.network.services_cidr.to_string()),
        ("PODS_CIDR", config.network.pods_cidr.to_string()),
        ("DNS_SERVICE_IP", k8s.dns_service_ip.to_string()),
        ("COREDNS_IMAGE", image(config, "docker.io/coredns/", "coredns", &config.addons.coredns_tag)),
        (
            "AUTOSCALER_IMAGE",
            image(config, "docker.io/googlecontainer/", "cluster-proportional-autoscaler-amd64", AUTOSCALER_TAG),
        ),
    ];
    render(COREDNS, &vars)
}

/// flannel's DaemonSet and its configuration.
pub fn flannel(config: &NodeConfig) -> Result<Vec<Value>> {
    let net = &config.network;
    // A release the table cannot read gets the current label.
    let arch_label = KubeVersion::of(config).map_or("kubernetes.io/arch", KubeVersion::node_arch_label);
    let vars = [
        ("FLANNEL_NET_CONF", flannel_network_config(config)),
        ("ARCH_LABEL", arch_label.to_string()),
        ("FLANNEL_IMAGE", image(config, "quay.io/coreos/", "flannel", &net.flannel_tag)),
        ("FLANNEL_CNI_IMAGE", image(config, "quay.io/coreos/", "flannel-cni", &net.flannel_cni_tag)),
    ];
    render(FLANNEL, &vars)
}

/// The etcd client identity calico's pods use, as PEM.
#[derive(Clone, PartialEq, Eq)]
pub struct EtcdTls {
    pub ca: String,
    pub cert: String,
    pub key: crate::config::Secret,
}

impl std::fmt::Debug for EtcdTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EtcdTls").finish_non_exhaustive()
    }
}

/// Calico on etcd: `tls` is the client identity for etcd, `None` when TLS is disabled.
pub fn calico(config: &NodeConfig, tls: Option<&EtcdTls>) -> Result<Vec<Value>> {
    let net = &config.network;
    // The pods on every node reach etcd at the load balancer, else at this master, as Magnum's did.
    let server = config
        .etcd
        .lb_vip
        .or(config.node.ip)
        .context("node.ip (KUBE_NODE_IP) is not set: calico's pods reach etcd on it")?;
    let host = if server.is_ipv6() { format!("[{server}]") } else { server.to_string() };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let file = |name: &str| if tls.is_some() { format!("/calico-secrets/{name}") } else { String::new() };
    let encoded = |pem: Option<&str>| BASE64.encode(pem.unwrap_or_default());
    let vars = [
        ("ETCD_ENDPOINTS", format!("{scheme}://{host}:{}", crate::etcd_client::CLIENT_PORT)),
        ("ETCD_CA_FILE", file("etcd-ca")),
        ("ETCD_CERT_FILE", file("etcd-cert")),
        ("ETCD_KEY_FILE", file("etcd-key")),
        ("ETCD_CA_BASE64", encoded(tls.map(|t| t.ca.as_str()))),
        ("ETCD_CERT_BASE64", encoded(tls.map(|t| t.cert.as_str()))),
        ("ETCD_KEY_BASE64", encoded(tls.map(|t| t.key.expose()))),
        ("CALICO_IPV4POOL", net.calico_ipv4pool.to_string()),
        ("CALICO_NODE_IMAGE", image(config, "quay.io/calico/", "node", &net.calico_tag)),
        ("CALICO_CNI_IMAGE", image(config, "quay.io/calico/", "cni", &net.calico_cni_tag)),
        (
            "CALICO_KUBE_CONTROLLERS_IMAGE",
            image(config, "quay.io/calico/", "kube-controllers", &net.calico_kube_controllers_tag),
        ),
    ];
    render(CALICO, &vars)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Role, Secret};
    use crate::kube_api::ObjectRef;
    use serde_json::json;

    fn names(objects: &[Value]) -> Vec<String> {
        objects.iter().map(|o| ObjectRef::of(o).unwrap().to_string()).collect()
    }

    #[test]
    fn placeholders_fill_keys_and_strings_without_touching_structure() {
        let template = "a: ${X}\n${K}: [\"${X}-${X}\", 3]\n---\n---\nb: '${Y}'\n";
        let vars = [("X", "x: [injected]\n".to_string()), ("K", "key".to_string()), ("Y", "\"quoted\"".to_string())];
        let objects = render(template, &vars).unwrap();
        assert_eq!(
            objects,
            [
                json!({"a": "x: [injected]\n", "key": ["x: [injected]\n-x: [injected]\n", 3]}),
                json!({"b": "\"quoted\""})
            ]
        );
        let err = format!("{:#}", render("a: ${MISSING}\n", &vars).unwrap_err());
        assert!(err.contains("${MISSING} has no value"), "{err}");
        assert!(render("a: ${X\n", &vars).is_err());
    }

    fn master() -> NodeConfig {
        let mut c = NodeConfig::new(Role::Master);
        c.node.ip = Some("10.0.0.4".parse().unwrap());
        c
    }

    #[test]
    fn every_manifest_renders_into_objects_hearth_can_apply() {
        let tls = EtcdTls { ca: "CA".into(), cert: "CERT".into(), key: Secret::new("KEY") };
        let rendered = [
            apiserver_kubelet_rbac().unwrap(),
            coredns(&master()).unwrap(),
            flannel(&master()).unwrap(),
            calico(&master(), Some(&tls)).unwrap(),
            calico(&master(), None).unwrap(),
            cloud_controller_manager(&master()).unwrap(),
        ];
        for objects in &rendered {
            let text = serde_json::to_string(objects).unwrap();
            assert!(!text.contains("${"), "{text}");
            names(objects);
        }
        assert_eq!(
            names(&rendered[0]),
            ["ClusterRole system:kube-apiserver-to-kubelet", "ClusterRoleBinding system:kube-apiserver"]
        );
        assert_eq!(names(&rendered[1]).len(), 10);
        assert!(names(&rendered[2]).contains(&"DaemonSet kube-system/kube-flannel-ds-amd64".to_string()));
        assert!(names(&rendered[3]).contains(&"Secret kube-system/calico-etcd-secrets".to_string()));
        assert!(names(&rendered[5]).contains(&"DaemonSet kube-system/openstack-cloud-controller-manager".to_string()));
    }

    #[test]
    fn coredns_serves_the_configured_domain_and_service_ip_from_the_prefix() {
        let mut c = master();
        c.kubernetes.dns_cluster_domain = "k8s.example.".into();
        c.kubernetes.dns_service_ip = "10.254.0.53".parse().unwrap();
        c.runtime.container_infra_prefix = "registry.example:5000/magnum/".into();
        let objects = coredns(&c).unwrap();
        let find = |kind: &str, name: &str| {
            objects.iter().find(|o| o["kind"] == kind && o["metadata"]["name"] == name).unwrap().clone()
        };
        let corefile = find("ConfigMap", "coredns")["data"]["Corefile"].as_str().unwrap().to_string();
        assert!(corefile.contains("kubernetes k8s.example 10.254.0.0/16 10.100.0.0/16 {"), "{corefile}");
        assert_eq!(find("Service", "kube-dns")["spec"]["clusterIP"], "10.254.0.53");
        let pod = &find("Deployment", "coredns")["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["image"], "registry.example:5000/magnum/coredns:1.3.1");
        let autoscaler = &find("Deployment", "kube-dns-autoscaler")["spec"]["template"]["spec"];
        assert_eq!(
            autoscaler["containers"][0]["image"],
            "registry.example:5000/magnum/cluster-proportional-autoscaler-amd64:1.1.2"
        );
        c.kubernetes.dns_cluster_domain = "evil\n  }\n  forward . 1.2.3.4".into();
        assert!(coredns(&c).unwrap_err().to_string().contains("not a DNS domain"));
    }

    #[test]
    fn flannel_carries_magnums_network_config_and_images() {
        let mut c = master();
        c.network.flannel_backend = crate::config::FlannelBackend::HostGw;
        c.network.flannel_subnet_len = 26;
        assert_eq!(
            flannel_network_config(&c),
            r#"{"Network": "10.100.0.0/16", "Subnetlen": 26, "Backend": {"Type": "host-gw"}}"#
        );
        let objects = flannel(&c).unwrap();
        let config = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
        assert_eq!(config["data"]["net-conf.json"], flannel_network_config(&c));
        let daemonset = objects.iter().find(|o| o["kind"] == "DaemonSet").unwrap();
        let pod = &daemonset["spec"]["template"]["spec"];
        assert_eq!(pod["containers"][0]["image"], "quay.io/coreos/flannel:v0.10.0-amd64");
        assert_eq!(pod["initContainers"][0]["image"], "quay.io/coreos/flannel-cni:v0.3.0");
        assert_eq!(pod["nodeSelector"], json!({"beta.kubernetes.io/arch": "amd64"}), "1.11 has only the beta label");
        c.kubernetes.tag = "v1.24.17".into();
        let pod = flannel(&c).unwrap().into_iter().find(|o| o["kind"] == "DaemonSet").unwrap();
        assert_eq!(pod["spec"]["template"]["spec"]["nodeSelector"], json!({"kubernetes.io/arch": "amd64"}));
    }

    #[test]
    fn calico_reaches_etcd_with_the_certificates_or_without_tls() {
        let tls = EtcdTls { ca: "CA".into(), cert: "CERT".into(), key: Secret::new("KEY") };
        let mut c = master();
        c.etcd.lb_vip = Some("10.0.0.100".parse().unwrap());
        let objects = calico(&c, Some(&tls)).unwrap();
        let by_kind = |kind: &str| objects.iter().find(|o| o["kind"] == kind).unwrap();
        assert_eq!(by_kind("ConfigMap")["data"]["etcd_endpoints"], "https://10.0.0.100:2379");
        assert_eq!(by_kind("ConfigMap")["data"]["etcd_key"], "/calico-secrets/etcd-key");
        assert_eq!(by_kind("Secret")["data"], json!({"etcd-ca": "Q0E=", "etcd-cert": "Q0VSVA==", "etcd-key": "S0VZ"}));
        let env = &by_kind("DaemonSet")["spec"]["template"]["spec"]["containers"][0]["env"];
        assert!(env.as_array().unwrap().contains(&json!({"name": "CALICO_IPV4POOL_CIDR", "value": "192.168.0.0/16"})));

        c.etcd.lb_vip = None;
        let plain = calico(&c, None).unwrap();
        let config = plain.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
        assert_eq!(config["data"]["etcd_endpoints"], "http://10.0.0.4:2379");
        assert_eq!(config["data"]["etcd_ca"], "");
        assert!(format!("{tls:?}").find("KEY").is_none());
    }
}
