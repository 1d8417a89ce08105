//! The command line of each Kubernetes component, chosen for the release that runs (inventory §3.11–§3.12
//! minus its quirks; every version decision is a predicate of [`KubeVersion`] with its upstream source).
//!
//! Departures from Magnum, each deliberate:
//! - No insecure port with TLS on (Magnum kept an unauthenticated admin port on 127.0.0.1:8080 for the
//!   local components, which 1.20 closed anyway): controller-manager, scheduler and kube-proxy use
//!   kubeconfigs with certificates.
//! - No superuser. Each client of the API on a master has its own identity ([`crate::pki::identities`]):
//!   the controller-manager, the scheduler and kube-proxy the users Kubernetes' default RBAC policy
//!   authorises; the agent's API steps `hearth-agent`, authorised by static ABAC rules for exactly the
//!   kinds and namespaces they apply ([`super::AUTHORIZATION_POLICY`]; RBAC cannot grant the first RBAC
//!   write to anyone outside `system:masters`); the API server's own certificate (`CN=kubernetes`), which
//!   it presents to the kubelets, only the kubelet API through RBAC. Magnum's ABAC-free masters used the
//!   insecure port; Hearth's earlier rule gave `kubernetes` everything. Nodes never get `system:masters`.
//! - The master's kubelet uses its own `system:node:<name>` certificate (Magnum gave it the apiserver's),
//!   so the Node authorizer and NodeRestriction apply to it as to every kubelet.
//! - `--cloud-provider=external` whenever the cloud config has credentials, on every node (Magnum: only
//!   with a trust id on masters, always on minions); never on kube-apiserver, which upstream's external
//!   provider guide leaves without one.
//! - Operator options (`kubelet_options`, …) are appended last, so they win, and every option of them is
//!   checked against the removed-flag table; `kubeproxy_options` and `kubescheduler_options` are used
//!   (Magnum wrote them and read neither).
//! - The kubelet is told its node's fixed address (`--node-ip`). Without a cloud provider it reports it as
//!   the Node's InternalIP, which kube-apiserver reaches the kubelet at (`logs`, `exec`); with the external
//!   provider the kubelet reports no address and the cloud-controller-manager picks the one the kubelet
//!   announces (`alpha.kubernetes.io/provided-node-ip`). Magnum left it to the default route or to Nova's
//!   first address, which on a node with more than one network need not be the cluster's.
//! - Role labels and taints follow the release (see [`KubeVersion::control_plane_taints`],
//!   [`KubeVersion::kubelet_may_set_role_labels`]); Magnum's `CriticalAddonsOnly`/`dedicated=master`
//!   taints come first when `kubernetes.magnum_master_taints` says so (the heat-params path), so workloads
//!   written for Magnum still fit, and the `node-role.kubernetes.io` ones add-ons tolerate are added.
//! - Kept from Magnum on both roles and with TLS off too: the kubelet serves on the node's address
//!   (`--address`), refuses anonymous callers and asks the API server about every request (webhook
//!   authentication and authorisation).

use super::version::{check_admission_plugins, check_args, Component, KubeVersion};
use super::{cert, external_cloud_provider, RuntimeKind};
use crate::config::{NodeConfig, Role};
use anyhow::{bail, Context as _, Result};

/// What every command line is built from.
#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub config: &'a NodeConfig,
    pub version: KubeVersion,
    /// The node's name in Kubernetes.
    pub node_name: String,
    pub runtime: RuntimeKind,
}

impl<'a> Inputs<'a> {
    pub fn new(config: &'a NodeConfig, node_name: String) -> Result<Inputs<'a>> {
        let version = KubeVersion::of(config)?;
        super::check_supported(config, version)?;
        let runtime = RuntimeKind::of(config, version)?;
        Ok(Inputs { config, version, node_name, runtime })
    }

    fn tls(&self) -> bool {
        !self.config.cluster.tls_disabled
    }
}

fn flag(name: &str, value: impl std::fmt::Display) -> String {
    format!("--{name}={value}")
}

/// Checks a finished command line: no removed flag (naming the config field when an operator option
/// brought it in), no argument a sysconfig file or unit could not carry.
fn finish(
    component: Component,
    inputs: &Inputs,
    mut args: Vec<String>,
    field: &str,
    options: &str,
) -> Result<Vec<String>> {
    check_args(component, inputs.version, &args)
        .with_context(|| format!("the command line Hearth builds for {}", component.binary()))?;
    let own = args.len();
    // Split as a shell splits an unquoted variable, which is how Magnum's scripts passed them.
    args.extend(options.split_whitespace().map(String::from));
    check_args(component, inputs.version, &args[own..]).with_context(|| format!("kubernetes.{field}"))?;
    let unquotable = |arg: &&String| arg.chars().any(|c| c.is_control() || c == '"' || c == '\\' || c == '`');
    let why = "holds a quote, backslash, backtick or control character, which the sysconfig file cannot carry";
    if let Some(bad) = args[own..].iter().find(unquotable) {
        bail!("kubernetes.{field}: {} argument {bad:?} {why}", component.binary());
    }
    if let Some(bad) = args[..own].iter().find(unquotable) {
        bail!("{} argument {bad:?} {why}", component.binary());
    }
    Ok(args)
}

/// kube-apiserver (masters).
pub fn apiserver(inputs: &Inputs) -> Result<Vec<String>> {
    let c = inputs.config;
    let v = inputs.version;
    let mut args = Vec::new();
    if inputs.tls() {
        args.push(flag("bind-address", "0.0.0.0"));
        args.push(flag("secure-port", c.api.port));
        if v.apiserver_has_insecure_port() {
            // Before 1.20 the apiserver opened 127.0.0.1:8080 without authentication unless told not to.
            args.push(flag("insecure-port", 0));
        }
    } else {
        args.push(flag("insecure-bind-address", "0.0.0.0"));
        args.push(flag("insecure-port", c.api.port));
    }
    args.push(flag("etcd-servers", "http://127.0.0.1:2379"));
    args.push(flag("service-cluster-ip-range", c.network.services_cidr));
    let listed: Vec<&str> =
        c.kubernetes.admission_control_list.split(',').map(str::trim).filter(|p| !p.is_empty()).collect();
    if inputs.tls() {
        let mut plugins = vec!["NodeRestriction"];
        plugins.extend(listed.iter().copied().filter(|p| *p != "NodeRestriction"));
        check_admission_plugins(v, &plugins).context("kubernetes.admission_control_list (ADMISSION_CONTROL_LIST)")?;
        args.push(flag("enable-admission-plugins", plugins.join(",")));
    }
    if v.apiserver_enables_all_apis() {
        args.push(flag("runtime-config", "api/all=true"));
    }
    args.push(flag("kubelet-preferred-address-types", "InternalIP,Hostname,ExternalIP"));
    args.push(flag("allow-privileged", c.kubernetes.allow_privileged));
    if inputs.tls() {
        let webhook = c.kubernetes.keystone_auth_enabled;
        let modes = if webhook { "Node,ABAC,Webhook,RBAC" } else { "Node,ABAC,RBAC" };
        args.push(flag("authorization-mode", modes));
        args.push(flag("authorization-policy-file", super::AUTHORIZATION_POLICY));
        args.push(flag("tls-cert-file", cert("server.crt")));
        args.push(flag("tls-private-key-file", cert("server.key")));
        args.push(flag("client-ca-file", cert("ca.crt")));
        args.push(flag("service-account-key-file", cert("service_account.key")));
        if v.apiserver_needs_service_account_issuer() {
            args.push(flag("service-account-signing-key-file", cert("service_account_private.key")));
            let domain = c.kubernetes.dns_cluster_domain.trim_matches('.');
            args.push(flag("service-account-issuer", format!("https://kubernetes.default.svc.{domain}")));
        }
        args.push(flag("kubelet-certificate-authority", cert("ca.crt")));
        args.push(flag("kubelet-client-certificate", cert("server.crt")));
        args.push(flag("kubelet-client-key", cert("server.key")));
        if v.apiserver_takes_kubelet_https() {
            args.push(flag("kubelet-https", true));
        }
        args.push(flag("proxy-client-cert-file", cert("front-proxy-client.crt")));
        args.push(flag("proxy-client-key-file", cert("front-proxy-client.key")));
        // Only the proxy identity may assert another user in request headers (Magnum also allowed `kube`
        // and `kubernetes`, so the API server's own certificate could act as anyone).
        args.push(flag("requestheader-allowed-names", crate::pki::identities::FRONT_PROXY));
        args.push(flag("requestheader-client-ca-file", cert("ca.crt")));
        args.push(flag("requestheader-extra-headers-prefix", "X-Remote-Extra-"));
        args.push(flag("requestheader-group-headers", "X-Remote-Group"));
        args.push(flag("requestheader-username-headers", "X-Remote-User"));
        if webhook {
            args.push(flag("authentication-token-webhook-config-file", super::KEYSTONE_WEBHOOK_CONFIG));
            args.push(flag("authorization-webhook-config-file", super::KEYSTONE_WEBHOOK_CONFIG));
        }
    }
    finish(Component::ApiServer, inputs, args, "kubeapi_options (KUBEAPI_OPTIONS)", &c.kubernetes.kubeapi_options)
}

/// kube-controller-manager (masters).
pub fn controller_manager(inputs: &Inputs) -> Result<Vec<String>> {
    let c = inputs.config;
    let v = inputs.version;
    let mut args = vec![flag("kubeconfig", super::CONTROLLER_MANAGER_KUBECONFIG), flag("leader-elect", true)];
    if !c.cluster.uuid.is_empty() {
        args.push(flag("cluster-name", &c.cluster.uuid));
    }
    args.push(flag("allocate-node-cidrs", true));
    args.push(flag("cluster-cidr", c.network.pods_cidr));
    args.push(flag("service-cluster-ip-range", c.network.services_cidr));
    if inputs.tls() {
        args.push(flag("service-account-private-key-file", cert("service_account_private.key")));
        args.push(flag("root-ca-file", cert("ca.crt")));
        // Each controller acts with its own service account's role instead of the shared identity's.
        args.push(flag("use-service-account-credentials", true));
    }
    if external_cloud_provider(c) {
        args.push(flag("cloud-provider", "external"));
        if v.controller_manager_has_openstack_volume_plugin() {
            args.push(flag("external-cloud-volume-plugin", "openstack"));
            args.push(flag("cloud-config", crate::paths::CLOUD_CONFIG));
        }
    }
    if c.kubernetes.cert_manager_api {
        args.push(flag("cluster-signing-cert-file", cert("ca.crt")));
        args.push(flag("cluster-signing-key-file", super::CA_KEY));
    }
    finish(
        Component::ControllerManager,
        inputs,
        args,
        "kubecontroller_options (KUBECONTROLLER_OPTIONS)",
        &c.kubernetes.kubecontroller_options,
    )
}

/// kube-scheduler (masters).
pub fn scheduler(inputs: &Inputs) -> Result<Vec<String>> {
    let c = inputs.config;
    let args = vec![flag("kubeconfig", super::SCHEDULER_KUBECONFIG), flag("leader-elect", true)];
    finish(
        Component::Scheduler,
        inputs,
        args,
        "kubescheduler_options (KUBESCHEDULER_OPTIONS)",
        &c.kubernetes.kubescheduler_options,
    )
}

/// The labels the kubelet registers its node with.
pub fn node_labels(inputs: &Inputs) -> Vec<String> {
    let role = match inputs.config.role {
        Role::Master => "master",
        Role::Minion => "worker",
    };
    // Later Magnum releases' label, outside the namespaces the kubelet restricts.
    let mut labels = vec![format!("magnum.openstack.org/role={role}")];
    if inputs.config.role == Role::Master && inputs.version.kubelet_may_set_role_labels() {
        labels.push("node-role.kubernetes.io/master=".into());
    }
    labels
}

/// The taints a master registers with: the release's `node-role.kubernetes.io` ones, after Magnum's when
/// `kubernetes.magnum_master_taints` (the heat-params path) asks for them.
pub fn master_taints(config: &NodeConfig, version: KubeVersion) -> Vec<&'static str> {
    let mut taints = Vec::new();
    if config.kubernetes.magnum_master_taints {
        taints.extend_from_slice(super::MAGNUM_MASTER_TAINTS);
    }
    taints.extend_from_slice(version.control_plane_taints());
    taints
}

/// The kubelet, on both roles.
pub fn kubelet(inputs: &Inputs) -> Result<Vec<String>> {
    let c = inputs.config;
    let v = inputs.version;
    let node_ip = c.node.ip.context("node.ip (KUBE_NODE_IP) is not set: the kubelet serves on the node's address")?;
    let mut args = vec![flag("kubeconfig", super::KUBELET_KUBECONFIG)];
    if v.kubelet_fails_on_cgroup_v1() {
        args.push(flag("config", super::KUBELET_CONFIGURATION));
    }
    args.extend([
        flag("hostname-override", &inputs.node_name),
        // Every kubelet serves on its node's fixed address, as Magnum's kubelet args said on both roles.
        flag("address", node_ip),
        flag("node-ip", node_ip),
        flag("port", 10250),
        flag("read-only-port", 0),
        flag("pod-manifest-path", super::MANIFESTS),
        flag("cluster-dns", c.kubernetes.dns_service_ip),
        flag("cluster-domain", &c.kubernetes.dns_cluster_domain),
        flag("volume-plugin-dir", crate::paths::KUBELET_VOLUME_PLUGINS),
        flag("cgroup-driver", c.kubernetes.cgroup_driver),
    ]);
    if v.kubelet_has_pod_infra_container_image() {
        args.push(flag("pod-infra-container-image", super::pause_image(c, v)));
    }
    // With TLS off too, as Magnum: the kubelet API (exec, logs) answers no anonymous caller, and every
    // request is authorised by the API server.
    args.push(flag("anonymous-auth", false));
    args.push(flag("authorization-mode", "Webhook"));
    args.push(flag("authentication-token-webhook", true));
    if inputs.tls() {
        args.push(flag("client-ca-file", cert("ca.crt")));
        args.push(flag("tls-cert-file", cert("kubelet.crt")));
        args.push(flag("tls-private-key-file", cert("kubelet.key")));
    }
    if v.kubelet_has_cadvisor_port() {
        args.push(flag("cadvisor-port", 0));
    }
    if v.kubelet_has_allow_privileged() {
        args.push(flag("allow-privileged", c.kubernetes.allow_privileged));
    }
    match inputs.runtime {
        RuntimeKind::Docker => {
            // Only reachable before 1.24 (RuntimeKind::of refuses docker later).
            args.push(flag("network-plugin", "cni"));
            args.push(flag("cni-conf-dir", crate::paths::CNI_CONF_DIR));
            args.push(flag("cni-bin-dir", crate::paths::CNI_BIN_DIR));
        }
        RuntimeKind::Containerd => {
            if v.kubelet_needs_container_runtime_remote() {
                args.push(flag("container-runtime", "remote"));
            }
            args.push(flag("container-runtime-endpoint", super::CONTAINERD_ENDPOINT));
        }
    }
    if external_cloud_provider(c) {
        args.push(flag("cloud-provider", "external"));
    }
    if c.role == Role::Master {
        args.push(flag("register-with-taints", master_taints(c, v).join(",")));
    }
    args.push(flag("node-labels", node_labels(inputs).join(",")));
    finish(Component::Kubelet, inputs, args, "kubelet_options (KUBELET_OPTIONS)", &c.kubernetes.kubelet_options)
}

/// kube-proxy, on both roles.
pub fn proxy(inputs: &Inputs) -> Result<Vec<String>> {
    let c = inputs.config;
    let kubeconfig = match c.role {
        Role::Master => super::PROXY_KUBECONFIG_MASTER,
        Role::Minion => super::PROXY_KUBECONFIG_MINION,
    };
    let args = vec![
        flag("kubeconfig", kubeconfig),
        flag("cluster-cidr", c.network.pods_cidr),
        flag("hostname-override", &inputs.node_name),
    ];
    finish(Component::Proxy, inputs, args, "kubeproxy_options (KUBEPROXY_OPTIONS)", &c.kubernetes.kubeproxy_options)
}

/// The command line of `component` for this node.
pub fn for_component(component: Component, inputs: &Inputs) -> Result<Vec<String>> {
    match component {
        Component::ApiServer => apiserver(inputs),
        Component::ControllerManager => controller_manager(inputs),
        Component::Scheduler => scheduler(inputs),
        Component::Kubelet => kubelet(inputs),
        Component::Proxy => proxy(inputs),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kube::version::{flag_name, removed_in, REMOVED};

    /// A master or minion of the bundled examples' shape at `tag`.
    fn config(role: Role, tag: &str) -> NodeConfig {
        let mut c = NodeConfig::new(role);
        c.kubernetes.tag = tag.into();
        c.kubernetes.version = tag.into();
        c.node.ip = Some("10.0.0.4".parse().unwrap());
        c.api.master_ip = Some("10.0.0.4".parse().unwrap());
        c.cluster.uuid = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52".into();
        c.openstack.auth_url = "http://127.0.0.1:5000/v3".into();
        c.openstack.trustee_user_id = "trustee".into();
        c.openstack.trustee_password = crate::config::Secret::new("pw");
        c.kubernetes.cert_manager_api = true;
        c
    }

    fn all_args(role: Role, tag: &str) -> Vec<(Component, Vec<String>)> {
        let c = config(role, tag);
        let inputs = Inputs::new(&c, "k8s-0".into()).unwrap();
        let components: &[Component] = match role {
            Role::Master => &Component::ALL,
            Role::Minion => &[Component::Kubelet, Component::Proxy],
        };
        components.iter().map(|&k| (k, for_component(k, &inputs).unwrap())).collect()
    }

    fn has(args: &[String], name: &str) -> bool {
        args.iter().any(|a| flag_name(a) == name)
    }

    fn value<'a>(args: &'a [String], name: &str) -> Option<&'a str> {
        args.iter().find(|a| flag_name(a) == name).and_then(|a| a.split_once('=').map(|(_, v)| v))
    }

    /// The version-table test of the brief: for 1.11, 1.24 and the newest minor, no generated command line
    /// of any component holds a flag removed by then (the table in `version.rs` is the independent
    /// list), and the replacements are there.
    #[test]
    fn no_removed_flag_at_1_11_1_24_and_the_newest_minor() {
        let newest = format!("v1.{}.0", crate::kube::version::NEWEST_MINOR);
        for tag in ["v1.11.6", "v1.24.17", newest.as_str()] {
            let version = KubeVersion::new(crate::kube::version::minor_of_tag(tag).unwrap());
            for role in [Role::Master, Role::Minion] {
                for (component, args) in all_args(role, tag) {
                    for removal in removed_in(component, version) {
                        assert!(
                            !has(&args, removal.flag),
                            "{tag} {role} {}: {} was removed in 1.{}",
                            component.binary(),
                            removal.flag,
                            removal.minor
                        );
                    }
                }
            }
        }
        // The removed-flag table covers what the builders used to emit, so the loop above can fail.
        for flag in ["--cadvisor-port", "--allow-privileged", "--network-plugin", "--kubelet-https", "--insecure-port"]
        {
            assert!(REMOVED.iter().any(|r| r.flag == flag), "{flag} missing from the table");
        }
    }

    #[test]
    fn kubernetes_1_11_gets_magnums_flags_that_still_existed() {
        let master = all_args(Role::Master, "v1.11.6");
        let kubelet = &master.iter().find(|(k, _)| *k == Component::Kubelet).unwrap().1;
        assert_eq!(value(kubelet, "--cadvisor-port"), Some("0"));
        assert_eq!(value(kubelet, "--allow-privileged"), Some("true"));
        assert_eq!(value(kubelet, "--network-plugin"), Some("cni"), "docker and its dockershim before 1.24");
        assert_eq!(value(kubelet, "--register-with-taints"), Some("node-role.kubernetes.io/master=:NoSchedule"));
        assert_eq!(
            value(kubelet, "--node-labels"),
            Some("magnum.openstack.org/role=master,node-role.kubernetes.io/master=")
        );
        let api = &master.iter().find(|(k, _)| *k == Component::ApiServer).unwrap().1;
        assert!(value(api, "--enable-admission-plugins").unwrap().starts_with("NodeRestriction,NamespaceLifecycle"));
        assert!(!has(api, "--admission-control"), "replaced by --enable-admission-plugins from 1.10");
        assert_eq!(value(api, "--insecure-port"), Some("0"), "the default insecure port is closed");
        assert_eq!(value(api, "--kubelet-https"), Some("true"));
        assert_eq!(value(api, "--runtime-config"), Some("api/all=true"));
        assert!(!has(api, "--service-account-issuer"));
        let cm = &master.iter().find(|(k, _)| *k == Component::ControllerManager).unwrap().1;
        assert_eq!(value(cm, "--external-cloud-volume-plugin"), Some("openstack"));
        assert_eq!(value(cm, "--cluster-signing-key-file"), Some("/etc/kubernetes/certs/ca.key"));
    }

    #[test]
    fn kubernetes_1_24_gets_the_replacements() {
        let master = all_args(Role::Master, "v1.24.17");
        let kubelet = &master.iter().find(|(k, _)| *k == Component::Kubelet).unwrap().1;
        assert_eq!(value(kubelet, "--container-runtime-endpoint"), Some("unix:///run/containerd/containerd.sock"));
        assert!(!has(kubelet, "--container-runtime"), "remote is the only runtime from 1.24");
        assert_eq!(value(kubelet, "--pod-infra-container-image"), Some("registry.k8s.io/pause:3.7"));
        assert_eq!(
            value(kubelet, "--register-with-taints"),
            Some("node-role.kubernetes.io/master=:NoSchedule,node-role.kubernetes.io/control-plane=:NoSchedule")
        );
        assert_eq!(value(kubelet, "--node-labels"), Some("magnum.openstack.org/role=master"));
        let api = &master.iter().find(|(k, _)| *k == Component::ApiServer).unwrap().1;
        assert_eq!(value(api, "--service-account-issuer"), Some("https://kubernetes.default.svc.cluster.local"));
        assert!(has(api, "--service-account-signing-key-file"));
        assert!(!has(api, "--runtime-config"));
        assert_eq!(value(api, "--authorization-mode"), Some("Node,ABAC,Webhook,RBAC"));
        assert_eq!(value(api, "--requestheader-allowed-names"), Some("front-proxy-client"));
        assert_eq!(value(api, "--proxy-client-cert-file"), Some("/etc/kubernetes/certs/front-proxy-client.crt"));
        assert_eq!(value(api, "--kubelet-client-certificate"), Some("/etc/kubernetes/certs/server.crt"));
        let cm = &master.iter().find(|(k, _)| *k == Component::ControllerManager).unwrap().1;
        assert_eq!(value(cm, "--cloud-provider"), Some("external"));
        assert!(has(cm, "--external-cloud-volume-plugin"), "the in-tree Cinder plugin lasted until 1.26");
    }

    #[test]
    fn the_newest_minor_drops_what_went_away_since() {
        let newest = format!("v1.{}.2", crate::kube::version::NEWEST_MINOR);
        let minion = all_args(Role::Minion, &newest);
        let kubelet = &minion[0].1;
        assert!(!has(kubelet, "--register-with-taints"), "minions carry no taint");
        assert_eq!(value(kubelet, "--node-labels"), Some("magnum.openstack.org/role=worker"));
        assert_eq!(value(kubelet, "--address"), Some("10.0.0.4"), "the node's address, as Magnum");
        assert_eq!(value(kubelet, "--node-ip"), Some("10.0.0.4"), "the address kube-apiserver reaches it at");
        assert!(!has(kubelet, "--pod-infra-container-image"), "gone in 1.35: containerd's sandbox_image decides");
        assert_eq!(value(kubelet, "--config"), Some("/etc/kubernetes/kubelet-configuration.yaml"));
        let v34 = all_args(Role::Minion, "v1.34.4");
        assert_eq!(value(&v34[0].1, "--pod-infra-container-image"), Some("registry.k8s.io/pause:3.10.1"));
        assert!(!has(&v34[0].1, "--config"), "1.34 starts on cgroup v1 without a configuration file");
        let master = all_args(Role::Master, &newest);
        let kubelet = &master.iter().find(|(k, _)| *k == Component::Kubelet).unwrap().1;
        assert_eq!(value(kubelet, "--register-with-taints"), Some("node-role.kubernetes.io/control-plane=:NoSchedule"));
        let cm = &master.iter().find(|(k, _)| *k == Component::ControllerManager).unwrap().1;
        assert!(!has(cm, "--external-cloud-volume-plugin") && !has(cm, "--cloud-config"));
    }

    #[test]
    fn operator_options_come_last_and_removed_ones_are_named() {
        let mut c = config(Role::Minion, "v1.24.17");
        c.kubernetes.kubelet_options = "--max-pods=50  --v=2".into();
        let inputs = Inputs::new(&c, "n".into()).unwrap();
        let args = kubelet(&inputs).unwrap();
        assert_eq!(&args[args.len() - 2..], ["--max-pods=50", "--v=2"]);
        c.kubernetes.kubelet_options = "--cadvisor-port=0".into();
        let inputs = Inputs::new(&c, "n".into()).unwrap();
        let err = format!("{:#}", kubelet(&inputs).unwrap_err());
        assert!(err.contains("kubernetes.kubelet_options (KUBELET_OPTIONS)") && err.contains("1.12"), "{err}");
        c.kubernetes.kubelet_options = "--node-labels=a=\"b\"".into();
        let inputs = Inputs::new(&c, "n".into()).unwrap();
        assert!(kubelet(&inputs).unwrap_err().to_string().contains("quote"));
    }

    #[test]
    fn tls_disabled_uses_the_insecure_port_before_1_20() {
        let mut c = config(Role::Master, "v1.15.12");
        c.cluster.tls_disabled = true;
        c.api.port = 8080;
        let inputs = Inputs::new(&c, "m".into()).unwrap();
        let api = apiserver(&inputs).unwrap();
        assert_eq!(value(&api, "--insecure-port"), Some("8080"));
        assert!(!has(&api, "--tls-cert-file") && !has(&api, "--authorization-mode"));
        let kubelet = kubelet(&inputs).unwrap();
        assert!(!has(&kubelet, "--tls-cert-file"));
        assert_eq!(value(&kubelet, "--anonymous-auth"), Some("false"), "no exec for anonymous callers");
        assert_eq!(value(&kubelet, "--authorization-mode"), Some("Webhook"));
        c.kubernetes.tag = "v1.20.1".into();
        assert!(Inputs::new(&c, "m".into()).is_err());
    }

    #[test]
    fn a_removed_admission_plugin_in_the_list_is_refused() {
        let mut c = config(Role::Master, "v1.25.0");
        c.kubernetes.admission_control_list = "NamespaceLifecycle,PodSecurityPolicy".into();
        let inputs = Inputs::new(&c, "m".into()).unwrap();
        let err = format!("{:#}", apiserver(&inputs).unwrap_err());
        assert!(err.contains("ADMISSION_CONTROL_LIST") && err.contains("PodSecurityPolicy"), "{err}");
    }
}
