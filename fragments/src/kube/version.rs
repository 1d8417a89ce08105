//! Which flags each Kubernetes minor release has: the one place that knows that `--cadvisor-port` is gone
//! from 1.12 or that 1.24 dropped the dockershim.
//!
//! Two halves that check each other:
//! - predicates on [`KubeVersion`] that the argument builders ([`super::args`]) ask before emitting a
//!   flag, each with the upstream change that decided it;
//! - [`REMOVED`], the flags upstream removed and the first minor without them. Every generated command
//!   line and every operator-supplied option (`kubelet_options`, `kubeapi_options`, …) is checked against
//!   it ([`check_args`]): a removed flag makes the component exit at start, so the step fails with the
//!   flag and the release named instead.
//!
//! Minors older than [`OLDEST_MINOR`] are refused. Minors newer than [`NEWEST_MINOR`] are treated as the
//! newest known one: flags only disappear after a deprecation period, so a release the table does not
//! know yet is far likelier to accept the newest known command line than any older one.

use crate::config::NodeConfig;
use anyhow::{bail, Result};
use std::fmt;

/// Magnum Stein's default (`v1.11.6`); older releases lack `--enable-admission-plugins` and the flags the
/// Node authorizer needs.
pub const OLDEST_MINOR: u32 = 11;
/// The newest minor this table has been checked against: the test tier starts every component of 1.34
/// and 1.37, built from their Go modules, with the command lines Hearth writes (`tests/tests/kube_flags.rs`).
pub const NEWEST_MINOR: u32 = 37;

/// A Kubernetes 1.x release, by its minor number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KubeVersion {
    minor: u32,
}

impl fmt::Display for KubeVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1.{}", self.minor)
    }
}

/// The minor of a Kubernetes 1.x tag such as `v1.24.17`, `1.24`, `v1.11.6-1` or `v1.27.3-rancher1`.
pub fn minor_of_tag(tag: &str) -> Option<u32> {
    match crate::version::parse(tag)? {
        (1, minor, _) => u32::try_from(minor).ok(),
        _ => None,
    }
}

impl KubeVersion {
    /// A release by minor; panics below [`OLDEST_MINOR`] (tests and tables only: configs go through
    /// [`KubeVersion::of`]).
    pub fn new(minor: u32) -> KubeVersion {
        assert!(minor >= OLDEST_MINOR, "Kubernetes 1.{minor} is older than the table");
        KubeVersion { minor }
    }

    /// The release the node runs: from `kubernetes.tag` (the image tag, what actually runs), else
    /// `kubernetes.version`.
    pub fn of(config: &NodeConfig) -> Result<KubeVersion> {
        let k8s = &config.kubernetes;
        let Some(minor) = minor_of_tag(&k8s.tag).or_else(|| minor_of_tag(&k8s.version)) else {
            bail!("kubernetes.tag (KUBE_TAG) {:?} does not name a Kubernetes 1.x release (e.g. v1.24.17)", k8s.tag);
        };
        if minor < OLDEST_MINOR {
            bail!(
                "kubernetes.tag (KUBE_TAG) {:?} is Kubernetes 1.{minor}; Hearth configures 1.{OLDEST_MINOR} and newer",
                k8s.tag
            );
        }
        Ok(KubeVersion { minor })
    }

    pub fn minor(self) -> u32 {
        self.minor
    }

    /// The row of the table that applies: releases newer than the table read as the newest known.
    fn row(self) -> u32 {
        self.minor.min(NEWEST_MINOR)
    }

    fn before(self, minor: u32) -> bool {
        self.row() < minor
    }

    /// kubelet `--cadvisor-port`: deprecated in 1.10, removed in 1.12 (kubernetes#65707, CHANGELOG-1.12).
    /// Magnum passed `--cadvisor-port=0` to close the unauthenticated cAdvisor port.
    pub fn kubelet_has_cadvisor_port(self) -> bool {
        self.before(12)
    }

    /// kubelet `--allow-privileged`: removed in 1.15 (kubernetes#77820, CHANGELOG-1.15 "ACTION REQUIRED").
    /// kube-apiserver keeps its own `--allow-privileged`.
    pub fn kubelet_has_allow_privileged(self) -> bool {
        self.before(15)
    }

    /// The dockershim and its flags (`--network-plugin`, `--cni-conf-dir`, `--cni-bin-dir`,
    /// `--docker-endpoint`, …): removed in 1.24 (kubernetes#97252, CHANGELOG-1.24). From 1.24 the
    /// kubelet only talks CRI, and CNI is the runtime's business.
    pub fn has_dockershim(self) -> bool {
        self.before(24)
    }

    /// kubelet `--container-runtime=remote`: needed before 1.24 to leave the dockershim, deprecated in
    /// 1.24 (remote is the only runtime), removed in 1.27 (kubernetes#114017, CHANGELOG-1.27).
    pub fn kubelet_needs_container_runtime_remote(self) -> bool {
        self.before(24)
    }

    /// kube-apiserver's insecure port: on by default (127.0.0.1:8080) before 1.20; from 1.20
    /// `--insecure-port` may only be 0 (kubernetes#95856, CHANGELOG-1.20 "Urgent upgrade notes"); the
    /// flags are gone in 1.24 (kubernetes#106859). A cluster with TLS disabled needs the insecure port.
    pub fn apiserver_has_insecure_port(self) -> bool {
        self.before(20)
    }

    /// kube-apiserver `--kubelet-https`: deprecated in 1.19 (kubernetes#91630), removed in 1.22
    /// (kubernetes#101178). Emitted, as Magnum did, only while it was not deprecated.
    pub fn apiserver_takes_kubelet_https(self) -> bool {
        self.before(19)
    }

    /// `--service-account-issuer` and `--service-account-signing-key-file` are required from 1.20, when
    /// TokenRequest went GA (kubernetes#95896, CHANGELOG-1.20).
    pub fn apiserver_needs_service_account_issuer(self) -> bool {
        !self.before(20)
    }

    /// Magnum's `--runtime-config=api/all=true` turned on every API group, alpha ones included, which on
    /// the 1.11–1.15 releases Magnum shipped enabled nothing harmful. From 1.16 (which removed the
    /// deprecated `extensions/v1beta1` workloads, kubernetes#70672) "all" includes alpha groups whose
    /// feature gates are off; Hearth keeps upstream's defaults there.
    pub fn apiserver_enables_all_apis(self) -> bool {
        self.before(16)
    }

    /// The in-tree OpenStack cloud provider and its Cinder volume plugin were removed in 1.26
    /// (kubernetes#67782, CHANGELOG-1.26), so `--external-cloud-volume-plugin=openstack` (and the
    /// `--cloud-config` it read) name nothing afterwards; the external provider and Cinder CSI do the work.
    pub fn controller_manager_has_openstack_volume_plugin(self) -> bool {
        self.before(26)
    }

    /// From 1.16 the kubelet refuses `--node-labels` in the `kubernetes.io` / `k8s.io` namespaces other
    /// than a short allow-list (kubernetes#68267, KEP "node-restriction", CHANGELOG-1.16), and
    /// `node-role.kubernetes.io/*` is not on it: the role label must then be set through the API.
    pub fn kubelet_may_set_role_labels(self) -> bool {
        self.before(16)
    }

    /// The taint that keeps ordinary pods off control-plane nodes: `node-role.kubernetes.io/master` until
    /// 1.24, which added `node-role.kubernetes.io/control-plane` beside it; 1.25 dropped the old one
    /// (kubeadm, KEP-2067 "rename the kubeadm master label and taint").
    pub fn control_plane_taints(self) -> &'static [&'static str] {
        match self.row() {
            ..24 => &["node-role.kubernetes.io/master=:NoSchedule"],
            24 => &["node-role.kubernetes.io/master=:NoSchedule", "node-role.kubernetes.io/control-plane=:NoSchedule"],
            _ => &["node-role.kubernetes.io/control-plane=:NoSchedule"],
        }
    }

    /// kubelet `--pod-infra-container-image`: from 1.24 the runtime's own setting (containerd's
    /// `sandbox_image`) decides which image sandboxes run and the flag only kept image GC away from it;
    /// removed in 1.35, when the kubelet learnt the sandbox image from the CRI (1.34's kubelet: "will be
    /// removed in 1.35. Image garbage collector will get sandbox image information from CRI").
    pub fn kubelet_has_pod_infra_container_image(self) -> bool {
        self.before(35)
    }

    /// From 1.35 the kubelet refuses to start on a cgroup v1 host unless its configuration file says
    /// `failCgroupV1: false` (KEP-5573, CHANGELOG-1.35); there is no flag for it.
    pub fn kubelet_fails_on_cgroup_v1(self) -> bool {
        !self.before(35)
    }

    /// Server-side apply (`application/apply-patch+yaml`), beta and on by default from 1.16: the API
    /// steps apply with it, and create or merge-patch before.
    pub fn apiserver_has_server_side_apply(self) -> bool {
        !self.before(16)
    }

    /// The node label of the architecture: `kubernetes.io/arch` from 1.14, only the beta one before.
    pub fn node_arch_label(self) -> &'static str {
        if self.before(14) {
            "beta.kubernetes.io/arch"
        } else {
            "kubernetes.io/arch"
        }
    }

    /// The pause (pod sandbox) image tag each release's kubeadm uses (`constants.PauseVersion`, read from
    /// each release's `cmd/kubeadm/app/constants`).
    /// From 1.24 the runtime's own setting (containerd `sandbox_image`) decides which image sandboxes
    /// run; the kubelet flag only keeps image GC away from it (deprecated in 1.27, kubernetes#114342).
    pub fn pause_tag(self) -> &'static str {
        match self.row() {
            ..18 => "3.1",
            18..=20 => "3.2",
            21 => "3.4.1",
            22 => "3.5",
            23 => "3.6",
            24 => "3.7",
            25 => "3.8",
            26..=30 => "3.9",
            31..=33 => "3.10",
            34 | 35 => "3.10.1",
            _ => "3.10.2",
        }
    }
}

/// A Kubernetes component, as far as its flags go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Component {
    ApiServer,
    ControllerManager,
    Scheduler,
    Kubelet,
    Proxy,
}

impl Component {
    pub const ALL: [Component; 5] = [
        Component::ApiServer,
        Component::ControllerManager,
        Component::Scheduler,
        Component::Kubelet,
        Component::Proxy,
    ];

    pub fn binary(self) -> &'static str {
        match self {
            Component::ApiServer => "kube-apiserver",
            Component::ControllerManager => "kube-controller-manager",
            Component::Scheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
            Component::Proxy => "kube-proxy",
        }
    }
}

/// A flag upstream removed.
#[derive(Clone, Copy, Debug)]
pub struct Removal {
    /// `None`: every component (klog's flags).
    pub component: Option<Component>,
    pub flag: &'static str,
    /// The first minor without it.
    pub minor: u32,
    /// The upstream change and release notes that removed it.
    pub source: &'static str,
}

const fn removed(component: Component, flag: &'static str, minor: u32, source: &'static str) -> Removal {
    Removal { component: Some(component), flag, minor, source }
}

const fn removed_everywhere(flag: &'static str, minor: u32, source: &'static str) -> Removal {
    Removal { component: None, flag, minor, source }
}

const DOCKERSHIM: &str = "kubernetes#97252, CHANGELOG-1.24: dockershim and its flags removed";
const KLOG: &str = "kubernetes#112120, CHANGELOG-1.26: klog's deprecated flags removed (KEP-2845)";

/// Flags removed upstream, with the first minor without them.
pub const REMOVED: &[Removal] = &[
    removed(Component::Kubelet, "--require-kubeconfig", 10, "kubernetes#58367, CHANGELOG-1.10"),
    removed(Component::Kubelet, "--cadvisor-port", 12, "kubernetes#65707, CHANGELOG-1.12"),
    removed(Component::Kubelet, "--allow-privileged", 15, "kubernetes#77820, CHANGELOG-1.15"),
    removed(Component::Kubelet, "--network-plugin", 24, DOCKERSHIM),
    removed(Component::Kubelet, "--network-plugin-mtu", 24, DOCKERSHIM),
    removed(Component::Kubelet, "--cni-conf-dir", 24, DOCKERSHIM),
    removed(Component::Kubelet, "--cni-bin-dir", 24, DOCKERSHIM),
    removed(Component::Kubelet, "--cni-cache-dir", 24, DOCKERSHIM),
    removed(Component::Kubelet, "--docker-endpoint", 24, DOCKERSHIM),
    removed(Component::Kubelet, "--image-pull-progress-deadline", 24, DOCKERSHIM),
    removed(Component::Kubelet, "--experimental-dockershim-root-directory", 24, DOCKERSHIM),
    removed(Component::Kubelet, "--container-runtime", 27, "kubernetes#114017, CHANGELOG-1.27"),
    removed(Component::Kubelet, "--pod-infra-container-image", 35, "CHANGELOG-1.35: the kubelet asks the CRI"),
    removed(Component::ApiServer, "--kubelet-https", 22, "kubernetes#101178, CHANGELOG-1.22"),
    removed(Component::ApiServer, "--insecure-bind-address", 24, "kubernetes#106859, CHANGELOG-1.24"),
    removed(Component::ApiServer, "--insecure-port", 24, "kubernetes#106859, CHANGELOG-1.24"),
    removed_everywhere("--logtostderr", 26, KLOG),
    removed_everywhere("--alsologtostderr", 26, KLOG),
    removed_everywhere("--log-dir", 26, KLOG),
    removed_everywhere("--log-file", 26, KLOG),
];

/// Admission plugins upstream removed: naming one makes kube-apiserver exit.
pub const REMOVED_ADMISSION_PLUGINS: &[(&str, u32, &str)] = &[
    ("Initializers", 14, "kubernetes#72972, CHANGELOG-1.14"),
    ("PodSecurityPolicy", 25, "kubernetes#109798, CHANGELOG-1.25"),
    ("SecurityContextDeny", 30, "kubernetes#122612, CHANGELOG-1.30"),
];

/// The flag name of an argument: `--cluster_dns=x` → `--cluster-dns` (Kubernetes reads `_` as `-`).
pub fn flag_name(arg: &str) -> String {
    arg.split('=').next().unwrap_or(arg).replace('_', "-")
}

/// The removals that apply to `component` at `version`.
pub fn removed_in(component: Component, version: KubeVersion) -> impl Iterator<Item = &'static Removal> {
    REMOVED.iter().filter(move |r| r.component.is_none_or(|c| c == component) && version.row() >= r.minor)
}

/// Fails naming the first argument of `component` that `version` no longer has.
pub fn check_args(component: Component, version: KubeVersion, args: &[String]) -> Result<()> {
    for arg in args.iter().filter(|a| a.starts_with("--")) {
        let name = flag_name(arg);
        if let Some(r) = removed_in(component, version).find(|r| r.flag == name) {
            bail!(
                "{} of Kubernetes {version} has no {name} (removed in 1.{}: {})",
                component.binary(),
                r.minor,
                r.source
            );
        }
    }
    Ok(())
}

/// Fails naming the first admission plugin of `plugins` that `version` no longer has.
pub fn check_admission_plugins(version: KubeVersion, plugins: &[&str]) -> Result<()> {
    for plugin in plugins {
        if let Some((_, minor, source)) =
            REMOVED_ADMISSION_PLUGINS.iter().find(|(name, minor, _)| name == plugin && version.row() >= *minor)
        {
            bail!("admission plugin {plugin} does not exist in Kubernetes {version} (removed in 1.{minor}: {source})");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    #[test]
    fn minors_from_tags() {
        assert_eq!(minor_of_tag("v1.24.17"), Some(24));
        assert_eq!(minor_of_tag("1.11"), Some(11));
        assert_eq!(minor_of_tag("v1.27.3-rancher1"), Some(27));
        assert_eq!(minor_of_tag("v2.0.0"), None);
        assert_eq!(minor_of_tag("latest"), None);
    }

    #[test]
    fn the_config_names_the_release_or_the_step_says_why_not() {
        let mut c = NodeConfig::new(Role::Minion);
        assert_eq!(KubeVersion::of(&c).unwrap().minor(), 11, "Magnum's default tag");
        c.kubernetes.tag = "latest".into();
        c.kubernetes.version = "v1.31.0".into();
        assert_eq!(KubeVersion::of(&c).unwrap().minor(), 31, "the version when the tag names none");
        c.kubernetes.version = String::new();
        assert!(KubeVersion::of(&c).unwrap_err().to_string().contains("\"latest\""));
        c.kubernetes.tag = "v1.9.3".into();
        assert!(KubeVersion::of(&c).unwrap_err().to_string().contains("1.11 and newer"));
    }

    #[test]
    fn removed_flags_are_refused_with_their_release() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let v24 = KubeVersion::new(24);
        assert!(check_args(Component::Kubelet, KubeVersion::new(23), &args(&["--network-plugin=cni"])).is_ok());
        let err = check_args(Component::Kubelet, v24, &args(&["--v=2", "--network_plugin=cni"])).unwrap_err();
        assert!(err.to_string().contains("--network-plugin (removed in 1.24"), "{err}");
        // klog's flags are gone from every component.
        assert!(check_args(Component::Scheduler, KubeVersion::new(26), &args(&["--logtostderr=true"])).is_err());
        assert!(check_args(Component::Scheduler, KubeVersion::new(25), &args(&["--logtostderr=true"])).is_ok());
        // A flag of one component is not refused for another.
        assert!(check_args(Component::ApiServer, v24, &args(&["--allow-privileged=true"])).is_ok());
        assert!(check_admission_plugins(KubeVersion::new(24), &["PodSecurityPolicy"]).is_ok());
        let err = check_admission_plugins(KubeVersion::new(25), &["NodeRestriction", "PodSecurityPolicy"]).unwrap_err();
        assert!(err.to_string().contains("PodSecurityPolicy") && err.to_string().contains("1.25"), "{err}");
    }

    #[test]
    fn releases_newer_than_the_table_read_as_the_newest_row() {
        let future = KubeVersion::new(NEWEST_MINOR + 5);
        assert_eq!(future.pause_tag(), KubeVersion::new(NEWEST_MINOR).pause_tag());
        assert_eq!(future.control_plane_taints(), ["node-role.kubernetes.io/control-plane=:NoSchedule"]);
        assert!(!future.has_dockershim());
        assert_eq!(future.to_string(), format!("1.{}", NEWEST_MINOR + 5));
    }
}
