//! Magnum's API rules for a ClusterTemplate and a Cluster (inventory §7) that need no live OpenStack, plus
//! the checks Hearth adds so that a cluster that renders also comes up: label values of the right type,
//! CIDRs that do not overlap, proxies that are URLs, and settings nodes can use. Every broken rule is
//! reported, each with the field, the value and the reason.

use crate::cidr::{self, NetworkLabel};
use crate::inputs::Inputs;
use crate::labels as label_names;
use crate::model::{Cluster, ClusterTemplate, Labels};
use crate::settings::{Loaded, Settings};
use hearth_fragments::config::fields::parse_bool;
use hearth_fragments::config::{
    CgroupDriver, FlannelBackend, IngressController, NetworkDriver, RuntimeChoice, StorageDriverChoice,
};
use hearth_fragments::kube::version::minor_of_tag;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

/// The cluster distributions Hearth renders user-data for.
pub const DISTROS: &[&str] = &["fedora-atomic", "fedora-coreos", "debian", "ubuntu"];
/// Magnum's COE names; Hearth renders only Kubernetes.
const MAGNUM_COES: &[&str] = &["kubernetes", "swarm", "mesos", "dcos", "swarm-mode"];
const AFFINITY_POLICIES: &[&str] = &["affinity", "anti-affinity", "soft-affinity", "soft-anti-affinity"];
/// Labels a secret may hide in: never echoed in an error.
const SECRET_LABELS: &[&str] = &["grafana_admin_passwd"];

/// One broken rule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// `cluster_template.docker_volume_size`, `cluster.labels.kube_tag`, `settings.agent.sha256`.
    pub field: String,
    pub value: String,
    pub reason: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} = {}: {}", self.field, hearth_fragments::config::shown_value(&self.value), self.reason)
    }
}

/// Every rule the inputs break; empty when they may be rendered.
#[derive(Debug, Default)]
pub struct Report {
    pub errors: Vec<FieldError>,
}

impl Report {
    fn fail(&mut self, field: impl Into<String>, value: impl fmt::Display, reason: impl Into<String>) {
        let field = field.into();
        let value = value.to_string();
        // An empty secret is shown empty: "not set" is what the operator must see, and it reveals nothing.
        let secret = SECRET_LABELS.iter().any(|s| field.ends_with(s)) || field.ends_with("password");
        let shown =
            if secret && !value.is_empty() { hearth_fragments::config::secret::MASK.to_string() } else { value };
        self.errors.push(FieldError { field, value: shown, reason: reason.into() });
    }

    pub fn is_ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// Checks a template and a cluster; `settings` adds the rules for rendering (endpoints, trustee, agent).
pub fn validate(template: &ClusterTemplate, cluster: &Cluster, settings: Option<&Loaded>) -> Report {
    match settings {
        Some(settings) => for_render(&Inputs::resolve(template, cluster, settings)),
        // The rules that read settings (network drivers, Octavia) still apply, against the defaults.
        None => definition_rules(&Inputs::resolve(template, cluster, &Loaded::defaults())),
    }
}

/// Every rule a render needs: those of the template, the cluster and its labels, then the settings'.
pub fn for_render(inputs: &Inputs) -> Report {
    let mut report = definition_rules(inputs);
    settings_rules(&mut report, inputs.settings, inputs.template);
    report
}

fn definition_rules(inputs: &Inputs) -> Report {
    let mut report = Report::default();
    template_rules(&mut report, inputs.template, &inputs.settings.settings);
    cluster_rules(&mut report, inputs);
    let label_field = if inputs.cluster.labels.is_some() { "cluster.labels" } else { "cluster_template.labels" };
    unknown_labels(&mut report, label_field, inputs);
    label_rules(&mut report, label_field, &inputs.labels, inputs.template, inputs.settings);
    network_rules(&mut report, label_field, inputs);
    report
}

fn template_rules(r: &mut Report, t: &ClusterTemplate, s: &crate::settings::Settings) {
    let f = |name: &str| format!("cluster_template.{name}");
    let texts = [
        ("name", &t.name),
        ("image_id", &t.image_id),
        ("cluster_distro", &t.cluster_distro),
        ("keypair_id", &t.keypair_id),
        ("flavor_id", &t.flavor_id),
        ("master_flavor_id", &t.master_flavor_id),
        ("dns_nameserver", &t.dns_nameserver),
        ("external_network_id", &t.external_network_id),
        ("fixed_network", &t.fixed_network),
        ("fixed_subnet", &t.fixed_subnet),
        ("network_driver", &t.network_driver),
        ("volume_driver", &t.volume_driver),
        ("docker_storage_driver", &t.docker_storage_driver),
        ("http_proxy", &t.http_proxy),
        ("https_proxy", &t.https_proxy),
        ("no_proxy", &t.no_proxy),
        ("insecure_registry", &t.insecure_registry),
    ];
    for (name, value) in texts {
        if let Some(v) = value {
            length(r, &f(name), v);
        }
    }
    if let Some(driver) = t.docker_storage_driver.as_deref().filter(|d| d.parse::<StorageDriverChoice>().is_err()) {
        r.fail(
            f("docker_storage_driver"),
            driver,
            format!("must be one of {}", StorageDriverChoice::WORDS[1..].join(", ")),
        );
    }
    match t.coe.as_deref() {
        None => r.fail(f("coe"), "", "mandatory: kubernetes"),
        Some("kubernetes") => {}
        Some(other) if MAGNUM_COES.contains(&other) => {
            r.fail(f("coe"), other, "Hearth renders only kubernetes clusters");
        }
        Some(other) => r.fail(f("coe"), other, format!("not a COE: expected one of {}", MAGNUM_COES.join(", "))),
    }
    if t.image_id.is_none() {
        r.fail(f("image_id"), "", "mandatory: the Glance image of every node");
    }
    match t.cluster_distro.as_deref() {
        None => r.fail(f("cluster_distro"), "", format!("mandatory (the image's os_distro): {}", DISTROS.join(", "))),
        Some(d) if DISTROS.contains(&d) => {}
        Some(d) => r.fail(f("cluster_distro"), d, format!("no driver for it: expected {}", DISTROS.join(", "))),
    }
    match t.server_type.as_deref().unwrap_or("vm") {
        "vm" => {}
        "bm" => r.fail(f("server_type"), "bm", "no driver for bare metal: Hearth renders virtual machines (vm)"),
        other => r.fail(f("server_type"), other, "expected vm or bm"),
    }
    let driver = network_driver(t, s);
    if !NetworkDriver::WORDS.contains(&driver) {
        r.fail(f("network_driver"), driver, "kubernetes supports flannel or calico");
    } else if !s.kubernetes_allowed_network_drivers.iter().any(|a| a == "all" || a == driver) {
        r.fail(
            f("network_driver"),
            driver,
            format!("not allowed by the settings: {}", s.kubernetes_allowed_network_drivers.join(", ")),
        );
    }
    if let Some(v) = t.volume_driver.as_deref() {
        if v != "cinder" {
            r.fail(f("volume_driver"), v, "kubernetes supports only cinder");
        }
    }
    if let Some(size) = t.docker_volume_size {
        if size < 1 {
            r.fail(f("docker_volume_size"), size, "must be at least 1 (GB)");
        }
    }
    if let Some(dns) = t.dns_nameserver.as_deref() {
        if dns.parse::<Ipv4Addr>().is_err() {
            r.fail(f("dns_nameserver"), dns, "not an IPv4 address");
        }
    }
    if let Some(port) = t.apiserver_port {
        if !(1024..=65535).contains(&port) {
            r.fail(f("apiserver_port"), port, "must be between 1024 and 65535");
        }
    }
    for (name, value) in [("http_proxy", &t.http_proxy), ("https_proxy", &t.https_proxy)] {
        if let Some(url) = value.as_deref().filter(|u| !u.is_empty()) {
            if let Err(reason) = check_url(url) {
                r.fail(f(name), url, reason);
            }
        }
    }
    if let Some(no_proxy) = t.no_proxy.as_deref() {
        if no_proxy.chars().any(char::is_whitespace) {
            r.fail(f("no_proxy"), no_proxy, "a comma-separated list without blanks");
        }
    }
}

fn cluster_rules(r: &mut Report, inputs: &Inputs) {
    let (t, c) = (inputs.template, inputs.cluster);
    let f = |name: &str| format!("cluster.{name}");
    if let Some(name) = c.name.as_deref() {
        let first_ok = name.chars().next().is_some_and(|ch| ch.is_ascii_alphabetic());
        let rest_ok = name.chars().all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'));
        if name.is_empty() || name.chars().count() > 242 {
            r.fail(f("name"), name, "must be 1 to 242 characters");
        } else if !first_ok || !rest_ok {
            r.fail(f("name"), name, "must match ^[a-zA-Z][a-zA-Z0-9_.-]*$");
        }
    }
    if let (Some(wanted), Some(have)) = (c.cluster_template_id.as_deref(), t.name.as_deref()) {
        // Magnum's API takes either; its exports name the template by UUID.
        if wanted != have && Some(wanted) != t.uuid.as_deref() {
            r.fail(f("cluster_template_id"), wanted, format!("the template file is named {have:?}"));
        }
    }
    match c.uuid.as_deref() {
        None => r.fail(f("uuid"), "", "mandatory: it names the cluster to the certificate API and in the stack name"),
        Some(uuid) if !is_uuid(uuid) => {
            r.fail(f("uuid"), uuid, "not a UUID such as 5d12f6fd-a196-4bf0-ae4c-1f639a523a52");
        }
        Some(_) => {}
    }
    for (name, value) in [("node_count", c.node_count), ("master_count", c.master_count)] {
        if let Some(n) = value.filter(|n| *n < 1) {
            r.fail(f(name), n, "must be at least 1");
        }
    }
    if let Some(n) = c.master_count.filter(|n| *n > 1) {
        if !inputs.effective.master_lb_enabled {
            let whose = if c.master_lb_enabled.is_some() { "the cluster's" } else { "the template's" };
            r.fail(f("master_count"), n, format!("must be 1 when {whose} master_lb_enabled is false"));
        }
    }
    network_fields(r, inputs);
    if let Some(size) = c.docker_volume_size.filter(|s| *s < 0) {
        r.fail(f("docker_volume_size"), size, "must be at least 1 (GB), or 0 for the template's");
    }
    if t.docker_storage_driver.as_deref() == Some(StorageDriverChoice::Devicemapper.word()) {
        let size = inputs.effective.docker_volume_size;
        if size.is_none_or(|s| s < 3) {
            let shown = size.map(|s| s.to_string()).unwrap_or_default();
            r.fail(f("docker_volume_size"), shown, "expecting minimum value 3GB for devicemapper storage driver");
        }
    }
    if let Some(t) = c.create_timeout.filter(|t| *t < 0) {
        r.fail(f("create_timeout"), t, "must be 0 (the default) or more minutes");
    }
    if let Some(url) = c.discovery_url.as_deref().filter(|u| !u.is_empty()) {
        if let Err(reason) = check_url(url) {
            r.fail(f("discovery_url"), url, reason);
        }
    }
}

/// The network the nodes join, after the cluster's own `fixed_network`/`fixed_subnet` went over the
/// template's (later Magnum). The two name one network, so a pair is never made of one from each side.
fn network_fields(r: &mut Report, inputs: &Inputs) {
    let (t, c, e) = (inputs.template, inputs.cluster, &inputs.effective);
    for (name, value) in [("fixed_network", &c.fixed_network), ("fixed_subnet", &c.fixed_subnet)] {
        if let Some(v) = value {
            length(r, &format!("cluster.{name}"), v);
        }
    }
    let side = |own: &Option<String>| if own.is_some() { "cluster" } else { "cluster_template" };
    match (&e.fixed_network, &e.fixed_subnet) {
        (Some(_), None) => r.fail(
            format!("{}.fixed_subnet", side(&c.fixed_network)),
            "",
            "mandatory with fixed_network: the node ports and load balancers need the subnet",
        ),
        (None, Some(subnet)) if c.fixed_subnet.is_some() => r.fail(
            "cluster.fixed_subnet",
            subnet,
            "needs fixed_network (on the cluster or its template): without one Hearth creates the cluster's \
             own network, which this subnet cannot be part of",
        ),
        _ => {}
    }
    if let (Some(network), None, Some(subnet)) = (&c.fixed_network, &c.fixed_subnet, &t.fixed_subnet) {
        if t.fixed_network.as_ref() != Some(network) {
            r.fail(
                "cluster.fixed_subnet",
                "",
                format!(
                    "mandatory with cluster.fixed_network {network:?}: the template's fixed_subnet {subnet:?} \
                     belongs to the template's network"
                ),
            );
        }
    }
}

const BOOLEAN_LABELS: &[&str] = &[
    "prometheus_monitoring",
    "kube_dashboard_enabled",
    "influx_grafana_dashboard_enabled",
    "cert_manager_api",
    "cloud_provider_enabled",
    "keystone_auth_enabled",
    "monitoring_enabled",
    "tiller_enabled",
    "master_lb_floating_ip_enabled",
];
/// Labels that must be whole numbers, with their range.
const NUMBER_LABELS: &[(&str, u64, u64)] = &[
    ("flannel_network_subnetlen", 1, 128),
    ("system_pods_initial_delay", 0, 86_400),
    ("system_pods_timeout", 0, 1_440),
    ("etcd_volume_size", 0, 16_384),
];
/// Labels that are one of a few words: the node's own word lists.
const ENUM_LABELS: &[(&str, &[&str])] = &[
    ("flannel_backend", FlannelBackend::WORDS),
    ("cgroup_driver", CgroupDriver::WORDS),
    ("ingress_controller", IngressController::WORDS),
    ("container_runtime", RuntimeChoice::WORDS),
];

/// Every label name must be one Hearth reads or one the operator lets through: a typo refused, not ignored.
fn unknown_labels(r: &mut Report, field: &str, inputs: &Inputs) {
    let settings = &inputs.settings.settings;
    let unknown = |name: &String| !label_names::is_known(name) && !settings.pass_through_labels.contains(name);
    for (name, value) in inputs.effective.labels.iter().filter(|(name, _)| unknown(name)) {
        r.fail(format!("{field}.{name}"), value, label_names::unknown(name));
    }
    for (name, value) in settings.labels.iter().filter(|(name, _)| unknown(name)) {
        r.fail(format!("settings.labels.{name}"), value, label_names::unknown(name));
    }
}

fn label_rules(r: &mut Report, field: &str, labels: &Labels, t: &ClusterTemplate, s: &Loaded) {
    let f = |name: &str| format!("{field}.{name}");
    for name in BOOLEAN_LABELS {
        if let Some(v) = labels.get(*name) {
            if parse_bool(v).is_err() {
                r.fail(f(name), v, "not a boolean: true or false");
            }
        }
    }
    for (name, min, max) in NUMBER_LABELS {
        if let Some(v) = labels.get(*name) {
            match v.trim().parse::<u64>() {
                Ok(n) if (*min..=*max).contains(&n) => {}
                _ => r.fail(f(name), v, format!("not a whole number from {min} to {max}")),
            }
        }
    }
    for name in NetworkLabel::ALL.map(NetworkLabel::name) {
        if let Some(v) = labels.get(name) {
            if let Err(reason) = cidr::parse(v) {
                r.fail(f(name), v, reason);
            }
        }
    }
    for (name, allowed) in ENUM_LABELS {
        if let Some(v) = labels.get(*name) {
            // The node compares these words exactly, as Magnum's scripts did; only the ingress
            // controller is lowered first (Magnum's `tr '[:upper:]' '[:lower:]'`, params.rs too).
            let word = if *name == "ingress_controller" { v.to_ascii_lowercase() } else { v.clone() };
            if !allowed.contains(&word.as_str()) {
                r.fail(
                    f(name),
                    v,
                    format!(
                        "expected one of: {}",
                        allowed.iter().filter(|a| !a.is_empty()).cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
            }
        }
    }
    if let Some(prefix) = labels.get("container_infra_prefix") {
        if !prefix.is_empty() && !prefix.ends_with('/') {
            r.fail(f("container_infra_prefix"), prefix, "must end with / (e.g. registry.example:5000/magnum/)");
        }
    }
    for (name, tag) in labels.iter().filter(|(name, _)| name.ends_with("_tag")) {
        if !is_image_tag(tag) {
            r.fail(
                f(name),
                tag,
                "not an image tag: 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'",
            );
        }
    }
    if let Some(tag) = labels.get("kube_tag") {
        if minor_of_tag(tag).is_none() || !is_release_tag(tag) {
            r.fail(
                f("kube_tag"),
                tag,
                "not a Kubernetes release tag such as v1.24.17 (the images and dl.k8s.io name releases so)",
            );
        }
    }
    if labels.get("ingress_controller").and_then(|v| v.to_ascii_lowercase().parse().ok())
        == Some(IngressController::Octavia)
        && !s.settings.octavia_enabled
    {
        r.fail(f("ingress_controller"), "octavia", "the cloud has no Octavia (settings.octavia_enabled is false)");
    }
    if labels.get("cert_manager_api").is_some_and(|v| parse_bool(v).unwrap_or(false)) {
        r.fail(
            f("cert_manager_api"),
            &labels["cert_manager_api"],
            "not supported: it hands the cluster CA's private key to the masters, and Hearth keeps it in the server",
        );
    }
    let cloud_provider = labels.get("cloud_provider_enabled").map(|v| v.to_ascii_lowercase());
    if t.volume_driver.as_deref() == Some("cinder") && cloud_provider.as_deref() == Some("false") {
        r.fail(
            f("cloud_provider_enabled"),
            "false",
            "\"cinder\" volume driver needs \"cloud_provider_enabled\" label to be true or unset",
        );
    }
}

/// The CIDRs a cluster uses must not overlap, or pods, services and nodes would shadow each other.
/// The template's network driver, or the settings' default: the one the nodes get.
fn network_driver<'a>(t: &'a ClusterTemplate, s: &'a Settings) -> &'a str {
    t.network_driver.as_deref().unwrap_or(&s.kubernetes_default_network_driver)
}

fn network_rules(r: &mut Report, field: &str, inputs: &Inputs) {
    let (labels, t, s) = (&inputs.labels, inputs.template, &inputs.settings.settings);
    let net = |label: NetworkLabel| (label.name(), label.net(labels));
    let driver = network_driver(t, s).parse::<NetworkDriver>().ok();
    let pods = net(if driver == Some(NetworkDriver::Calico) {
        NetworkLabel::CalicoPool
    } else {
        NetworkLabel::FlannelNetwork
    });
    let services = net(NetworkLabel::Services);
    let mut nets = vec![pods, services];
    if inputs.effective.fixed_network.is_none() {
        nets.push(net(NetworkLabel::FixedNetwork));
    }
    for (i, (a_name, a)) in nets.iter().enumerate() {
        for (b_name, b) in &nets[i + 1..] {
            if let (Some(a), Some(b)) = (a, b) {
                if a.contains(&b.network()) || b.contains(&a.network()) {
                    r.fail(format!("{field}.{b_name}"), b, format!("overlaps {a_name} {a}"));
                }
            }
        }
    }
    if let (Some(len), Some(pods)) = (labels.get("flannel_network_subnetlen"), NetworkLabel::FlannelNetwork.net(labels))
    {
        if driver == Some(NetworkDriver::Flannel) && len.parse::<u8>().is_ok_and(|l| l <= pods.prefix_len()) {
            r.fail(
                format!("{field}.flannel_network_subnetlen"),
                len,
                format!("must be longer than the flannel network's /{}", pods.prefix_len()),
            );
        }
    }
}

fn settings_rules(r: &mut Report, loaded: &Loaded, t: &ClusterTemplate) {
    let s = &loaded.settings;
    for (name, url) in [("auth_url", &s.auth_url), ("magnum_url", &s.magnum_url)] {
        if url.is_empty() {
            r.fail(format!("settings.{name}"), "", "mandatory: nodes need it for certificates and the cloud provider");
        } else if let Err(reason) = check_url(url) {
            r.fail(format!("settings.{name}"), url, reason);
        }
    }
    let agent = &s.agent;
    match (agent.url.is_empty(), agent.path.is_empty()) {
        (true, true) => {
            r.fail("settings.agent", "", "give url + sha256 (downloaded by the node) or path (on the image)");
        }
        (false, false) => r.fail("settings.agent.path", &agent.path, "give either url + sha256 or path, not both"),
        (false, true) => {
            if let Err(reason) = check_url(&agent.url) {
                r.fail("settings.agent.url", &agent.url, reason);
            }
            if agent.sha256.len() != 64 || !agent.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                r.fail("settings.agent.sha256", &agent.sha256, "the agent's SHA-256: 64 hexadecimal digits");
            }
        }
        (true, false) => {
            if !agent.path.starts_with('/') {
                r.fail("settings.agent.path", &agent.path, "an absolute path on the image");
            }
        }
    }
    if !t.tls_disabled {
        for (name, value) in
            [("trustee.user_id", &s.trustee.user_id), ("trustee.password", &s.trustee.password.expose().to_string())]
        {
            if value.is_empty() {
                r.fail(
                    format!("settings.{name}"),
                    "",
                    "mandatory with TLS: nodes sign their certificates as the trustee",
                );
            }
        }
    }
    if !AFFINITY_POLICIES.contains(&s.nodes_affinity_policy.as_str()) {
        r.fail(
            "settings.nodes_affinity_policy",
            &s.nodes_affinity_policy,
            format!("expected one of {}", AFFINITY_POLICIES.join(", ")),
        );
    }
    if s.create_timeout == 0 {
        r.fail("settings.create_timeout", 0, "must be at least 1 minute");
    }
    let pem = loaded.openstack_ca.trim();
    if !pem.is_empty() && !pem.starts_with("-----BEGIN CERTIFICATE-----") {
        r.fail("settings.openstack_ca_file", display_path(&s.openstack_ca_file), "not a PEM certificate");
    }
    let sa = [
        (
            "service_account_public_key_file",
            &s.service_account_public_key_file,
            loaded.service_account_public_key.as_str(),
        ),
        (
            "service_account_private_key_file",
            &s.service_account_private_key_file,
            loaded.service_account_private_key.expose(),
        ),
    ];
    for (name, path, pem) in sa {
        if path.is_none() {
            r.fail(format!("settings.{name}"), "", "mandatory: the cluster's service-account key pair (PEM)");
        } else if !pem.trim_start().starts_with("-----BEGIN ") {
            r.fail(format!("settings.{name}"), display_path(path), "not a PEM key");
        }
    }
}

fn display_path(path: &Option<std::path::PathBuf>) -> String {
    path.as_ref().map(|p| p.display().to_string()).unwrap_or_default()
}

/// Magnum's string fields hold 1 to 255 characters.
fn length(r: &mut Report, field: &str, value: &str) {
    let n = value.chars().count();
    if n == 0 || n > 255 {
        r.fail(field, value, "must be 1 to 255 characters");
    }
}

/// `http(s)://host[:port][/path]` with a host, in RFC 3986's characters only (so a URL never needs quoting
/// in JSON, a header or a shell word).
pub fn check_url(url: &str) -> Result<(), String> {
    let rest =
        url.strip_prefix("http://").or_else(|| url.strip_prefix("https://")).ok_or("not an http:// or https:// URL")?;
    if let Some(bad) = url.chars().find(|c| !(c.is_ascii_alphanumeric() || "-._~:/?#[]@!$&'()*+,;=%".contains(*c))) {
        return Err(format!("{bad:?} is not allowed in a URL (percent-encode it)"));
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = authority.rsplit('@').next().unwrap_or("");
    if host.is_empty() || host.starts_with(':') {
        return Err("no host".into());
    }
    Ok(())
}

pub fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups.iter().all(|g| g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// An OCI image tag: `[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}`.
fn is_image_tag(tag: &str) -> bool {
    let mut chars = tag.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        && tag.len() <= 128
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// A release as Kubernetes tags it: `v` and three numbers, then maybe a build suffix (`v1.27.3-rancher1`).
fn is_release_tag(tag: &str) -> bool {
    let Some(rest) = tag.strip_prefix('v') else { return false };
    let version = rest.split(['-', '+']).next().unwrap_or_default();
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3 && parts.iter().all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Whether an address is a valid IPv4 or IPv6 address (for the mapping's own checks).
pub fn is_ip(text: &str) -> bool {
    text.parse::<IpAddr>().is_ok()
}

#[cfg(test)]
mod tests {
    use super::{is_image_tag, is_release_tag};

    #[test]
    fn release_tags_are_v_and_three_numbers() {
        for good in ["v1.24.17", "v1.11.6", "v1.27.3-rancher1", "v1.30.0+k3s1"] {
            assert!(is_release_tag(good), "{good}");
        }
        for bad in ["1.24.17", "v1.24", "v1.24.x", "v1..1", "latest", ""] {
            assert!(!is_release_tag(bad), "{bad}");
        }
    }

    #[test]
    fn image_tags_follow_the_oci_grammar() {
        assert!(is_image_tag("v0.10.0-amd64") && is_image_tag("_x") && is_image_tag(&"a".repeat(128)));
        for bad in ["", "-x", ".x", "a b", "a:b", "a/b", &"a".repeat(129)] {
            assert!(!is_image_tag(bad), "{bad:?}");
        }
    }
}
