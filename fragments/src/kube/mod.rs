//! Kubernetes facts shared by the kube-master and kube-minion steps: which release runs ([`version`]),
//! the command line of each component ([`args`]), kubeconfigs ([`kubeconfig`]), the images and the
//! container runtime the kubelet talks to, and where every file lives.

pub mod args;
pub mod components;
pub mod kubeconfig;
pub mod kubelet_program;
pub mod version;

use crate::config::{NodeConfig, RuntimeChoice};
use crate::facts::OsFamily;
use anyhow::{bail, Result};
pub use version::{Component, KubeVersion};

/// Kubelet's kubeconfig, under Magnum's name (operators' scripts know it).
pub const KUBELET_KUBECONFIG: &str = "/etc/kubernetes/kubelet-config.yaml";
/// The kubelet's `KubeletConfiguration`, for what has no flag (from 1.35, `failCgroupV1`). Not to be
/// confused with [`KUBELET_KUBECONFIG`], which Magnum named `kubelet-config.yaml`.
pub const KUBELET_CONFIGURATION: &str = "/etc/kubernetes/kubelet-configuration.yaml";
/// kube-proxy's kubeconfig on masters (Magnum's name).
pub const PROXY_KUBECONFIG_MASTER: &str = "/etc/kubernetes/proxy-kubeconfig.yaml";
/// kube-proxy's kubeconfig on minions (Magnum's name).
pub const PROXY_KUBECONFIG_MINION: &str = "/etc/kubernetes/proxy-config.yaml";
/// Magnum's controller-manager and scheduler used the apiserver's insecure port, which is gone from
/// 1.24 (and closed by Hearth before): they get kubeconfigs.
pub const CONTROLLER_MANAGER_KUBECONFIG: &str = "/etc/kubernetes/controller-manager-kubeconfig.yaml";
pub const SCHEDULER_KUBECONFIG: &str = "/etc/kubernetes/scheduler-kubeconfig.yaml";
/// The static ABAC rule that gives the masters' own identity (`CN=kubernetes`) the API.
pub const AUTHORIZATION_POLICY: &str = "/etc/kubernetes/authorization-policy.jsonl";
/// Magnum's kubeconfig for the k8s-keystone-auth webhook.
pub const KEYSTONE_WEBHOOK_CONFIG: &str = "/etc/kubernetes/keystone_webhook_config.yaml";
/// Static pods.
pub const MANIFESTS: &str = "/etc/kubernetes/manifests";
/// The cluster CA's key, for controller-manager to sign Kubernetes CSRs (`cert_manager_api`).
pub const CA_KEY: &str = "/etc/kubernetes/certs/ca.key";
pub const CONTAINERD_ENDPOINT: &str = "unix:///run/containerd/containerd.sock";

/// Magnum's registry for its component images when `container_infra_prefix` is empty.
pub const DEFAULT_PREFIX: &str = "docker.io/openstackmagnum/";
/// Upstream's registry, for its component images and the pause image when no prefix is set (Magnum's
/// `gcr.io/google_containers/` is frozen; registry.k8s.io serves every tag).
pub const UPSTREAM_PREFIX: &str = "registry.k8s.io/";

/// Magnum's pause image when no prefix is set, `gcr.io/google_containers/pause:3.0` (its kubelets'
/// `--pod-infra-container-image`): what a mirror made for Magnum holds, so the heat-params path asks for it.
pub const MAGNUM_PAUSE_PREFIX: &str = "gcr.io/google_containers/";
pub const MAGNUM_PAUSE_TAG: &str = "3.0";
/// Magnum's master taints, which workloads written for a Magnum cluster tolerate.
pub const MAGNUM_MASTER_TAINTS: &[&str] = &["CriticalAddonsOnly=True:NoSchedule", "dedicated=master:NoSchedule"];

/// A file under the certificate directory.
pub fn cert(name: &str) -> String {
    format!("{}/{name}", crate::paths::KUBE_CERTS)
}

/// `<prefix><name>:<tag>`, the prefix being the config's `container_infra_prefix` or `default_prefix`:
/// how every image a node pulls is named.
pub fn prefixed_image(config: &NodeConfig, default_prefix: &str, name: &str, tag: &str) -> String {
    let prefix = match config.runtime.container_infra_prefix.as_str() {
        "" => default_prefix,
        configured => configured,
    };
    format!("{prefix}{name}:{tag}")
}

/// `<prefix or docker.io/openstackmagnum/><name>:<tag>`, Magnum's image names.
pub fn image(config: &NodeConfig, name: &str, tag: &str) -> String {
    prefixed_image(config, DEFAULT_PREFIX, name, tag)
}

/// Where a node's Kubernetes components come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Images {
    /// Magnum's `kubernetes-<component>` images, whose entrypoint (`launch.sh`) reads the sysconfig
    /// files. Magnum published them for its own releases only; fedora-atomic keeps them (the drop-in).
    Magnum,
    /// What upstream publishes for every release: `<prefix or registry.k8s.io/><binary>:<tag>`, its
    /// program (`/usr/local/bin/<binary>`) run as the container's command with the sysconfig file's
    /// variable as its arguments.
    Upstream,
}

impl Images {
    pub fn for_os(os: OsFamily) -> Images {
        match os {
            OsFamily::FedoraAtomic => Images::Magnum,
            OsFamily::FedoraCoreos | OsFamily::Debian => Images::Upstream,
        }
    }
}

/// A Kubernetes component's image at `kubernetes.tag`: Magnum's `kubernetes-apiserver`, … or upstream's
/// `kube-apiserver`, …
pub fn kube_image(config: &NodeConfig, component: Component, images: Images) -> String {
    match images {
        Images::Magnum => {
            let name = match component {
                Component::ApiServer => "kubernetes-apiserver",
                Component::ControllerManager => "kubernetes-controller-manager",
                Component::Scheduler => "kubernetes-scheduler",
                Component::Kubelet => "kubernetes-kubelet",
                Component::Proxy => "kubernetes-proxy",
            };
            image(config, name, &config.kubernetes.tag)
        }
        Images::Upstream => prefixed_image(config, UPSTREAM_PREFIX, component.binary(), &config.kubernetes.tag),
    }
}

/// Where upstream's image of `component` has its program.
pub fn upstream_program(component: Component) -> String {
    format!("/usr/local/bin/{}", component.binary())
}

/// The pod sandbox image: `kubernetes.pause_image`, else `<prefix or registry.k8s.io/>pause:<the release's
/// tag>`. The runtime's own
/// sandbox setting (containerd's `sandbox_image`) must name the same image.
pub fn pause_image(config: &NodeConfig, version: KubeVersion) -> String {
    match config.kubernetes.pause_image.trim() {
        "" => prefixed_image(config, UPSTREAM_PREFIX, "pause", version.pause_tag()),
        configured => configured.to_string(),
    }
}

/// The container runtime the node's kubelet talks to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RuntimeKind {
    Docker,
    Containerd,
}

impl RuntimeKind {
    /// `runtime.kind`; empty chooses containerd from 1.24 (no dockershim) and docker before, as Magnum
    /// did. Later Magnum releases' `host-docker` means docker where the kubelet still has a dockershim.
    pub fn of(config: &NodeConfig, version: KubeVersion) -> Result<RuntimeKind> {
        Ok(match config.runtime.kind {
            RuntimeChoice::Containerd => RuntimeKind::Containerd,
            RuntimeChoice::Docker if !version.has_dockershim() => bail!(
                "runtime.kind (CONTAINER_RUNTIME) is docker, but the kubelet of Kubernetes {version} has no \
                 dockershim (removed in 1.24): use containerd"
            ),
            RuntimeChoice::Docker => RuntimeKind::Docker,
            RuntimeChoice::ByRelease | RuntimeChoice::HostDocker if version.has_dockershim() => RuntimeKind::Docker,
            RuntimeChoice::ByRelease | RuntimeChoice::HostDocker => RuntimeKind::Containerd,
        })
    }

    /// [`RuntimeKind::of`] for the node's own Kubernetes version.
    pub fn for_node(config: &NodeConfig) -> Result<RuntimeKind> {
        RuntimeKind::of(config, KubeVersion::of(config)?)
    }

    pub fn name(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker",
            RuntimeKind::Containerd => "containerd",
        }
    }

    /// The systemd unit of the runtime (shared contract).
    pub fn unit(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "docker.service",
            RuntimeKind::Containerd => "containerd.service",
        }
    }

    /// Where it keeps images and containers: the mount point of its Cinder volume.
    pub fn data_dir(self) -> &'static str {
        match self {
            RuntimeKind::Docker => "/var/lib/docker",
            RuntimeKind::Containerd => "/var/lib/containerd",
        }
    }
}

/// Whether the components run with the external OpenStack cloud provider: enabled, and the trustee
/// credentials that the kube-os-config step writes into the cloud config exist. (Magnum wired the
/// provider on masters only with a trust id, but on minions whenever it was enabled: inventory A3.)
pub fn external_cloud_provider(config: &NodeConfig) -> bool {
    let os = &config.openstack;
    config.kubernetes.cloud_provider_enabled
        && !os.auth_url.is_empty()
        && !os.trustee_user_id.is_empty()
        && !os.trustee_password.is_empty()
}

/// Refuses what no component of `version` can do: a cluster without TLS needs the apiserver's insecure
/// port, which 1.20 closed.
pub fn check_supported(config: &NodeConfig, version: KubeVersion) -> Result<()> {
    if config.cluster.tls_disabled && !version.apiserver_has_insecure_port() {
        bail!(
            "cluster.tls_disabled (TLS_DISABLED) needs kube-apiserver's insecure port, which Kubernetes {version} \
             no longer has (only 0 from 1.20, removed in 1.24)"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    #[test]
    fn runtime_by_version_unless_configured() {
        let mut c = NodeConfig::new(Role::Minion);
        let (old, new) = (KubeVersion::new(23), KubeVersion::new(24));
        assert_eq!(RuntimeKind::of(&c, old).unwrap(), RuntimeKind::Docker);
        assert_eq!(RuntimeKind::of(&c, new).unwrap(), RuntimeKind::Containerd);
        c.runtime.kind = RuntimeChoice::HostDocker;
        assert_eq!(RuntimeKind::of(&c, new).unwrap(), RuntimeKind::Containerd);
        c.runtime.kind = RuntimeChoice::Containerd;
        assert_eq!(RuntimeKind::of(&c, old).unwrap(), RuntimeKind::Containerd);
        c.runtime.kind = RuntimeChoice::Docker;
        assert!(RuntimeKind::of(&c, new).unwrap_err().to_string().contains("no dockershim"));
    }

    #[test]
    fn images_follow_the_prefix() {
        let mut c = NodeConfig::new(Role::Master);
        c.kubernetes.tag = "v1.24.17".into();
        let v = KubeVersion::of(&c).unwrap();
        let magnum = |c: &NodeConfig, component| kube_image(c, component, Images::Magnum);
        let upstream = |c: &NodeConfig, component| kube_image(c, component, Images::Upstream);
        assert_eq!(magnum(&c, Component::ApiServer), "docker.io/openstackmagnum/kubernetes-apiserver:v1.24.17");
        assert_eq!(upstream(&c, Component::ApiServer), "registry.k8s.io/kube-apiserver:v1.24.17");
        assert_eq!(pause_image(&c, v), "registry.k8s.io/pause:3.7");
        c.runtime.container_infra_prefix = "registry.example:5000/magnum/".into();
        assert_eq!(magnum(&c, Component::Proxy), "registry.example:5000/magnum/kubernetes-proxy:v1.24.17");
        assert_eq!(upstream(&c, Component::Proxy), "registry.example:5000/magnum/kube-proxy:v1.24.17");
        assert_eq!(upstream_program(Component::Scheduler), "/usr/local/bin/kube-scheduler");
        assert_eq!(pause_image(&c, v), "registry.example:5000/magnum/pause:3.7");
    }

    #[test]
    fn tls_off_only_where_the_insecure_port_exists() {
        let mut c = NodeConfig::new(Role::Master);
        c.cluster.tls_disabled = true;
        assert!(check_supported(&c, KubeVersion::new(19)).is_ok());
        assert!(check_supported(&c, KubeVersion::new(20)).unwrap_err().to_string().contains("TLS_DISABLED"));
    }
}
