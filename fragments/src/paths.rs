//! The node paths that more than one part of Hearth names: the steps, the components, the clients, the
//! agent and the server's user-data all take them from here, so a path is spelled once. A path only one
//! step knows stays a constant at the top of that step, beside the doc that says what it holds.

/// The node's config as the agent reads it: written by the user-data, kept by the node-config step.
pub const NODE_CONFIG: &str = "/etc/hearth/node.json";
/// The same config as Magnum's `KEY="value"` lines, for scripts written against Magnum.
pub const HEAT_PARAMS: &str = "/etc/sysconfig/heat-params";
/// Where the agent lives on a node (the user-data downloads it there, the agent-service step keeps it).
pub const AGENT: &str = "/usr/local/bin/hearth-agent";
/// The proxy step's environment file, which the units that go through the proxy read.
pub const PROXY_ENV_FILE: &str = "/etc/hearth/proxy.env";

/// Where Magnum's own part-001 (atomic-install-openstack-ca.sh) left the OpenStack CA on a Magnum node.
pub const MAGNUM_OPENSTACK_CA: &str = "/etc/pki/ca-trust/source/anchors/openstack-ca.pem";

/// The Kubernetes components' configuration directory.
pub const KUBERNETES_DIR: &str = "/etc/kubernetes";
/// Certificates and keys of the Kubernetes components, as the certs step writes them.
pub const KUBE_CERTS: &str = "/etc/kubernetes/certs";
/// The OpenStack cloud provider's configuration (kube-os-config step).
pub const CLOUD_CONFIG: &str = "/etc/kubernetes/cloud-config";
/// The kubelet's volume plugins (Magnum's path, which it also created).
pub const KUBELET_VOLUME_PLUGINS: &str = "/var/lib/kubelet/volumeplugins";

/// etcd's configuration directory, its environment file and its certificates.
pub const ETCD_DIR: &str = "/etc/etcd";
pub const ETCD_CONF: &str = "/etc/etcd/etcd.conf";
pub const ETCD_CERTS: &str = "/etc/etcd/certs";

/// The CNI plugins and their configuration, shared by the runtime, the kubelet and the network add-on.
pub const CNI_DIR: &str = "/opt/cni";
pub const CNI_BIN_DIR: &str = "/opt/cni/bin";
pub const CNI_CONF_DIR: &str = "/etc/cni/net.d";
/// Registry settings (mirrors, insecure hosts) in containerd's `config_path` layout.
pub const CONTAINERD_HOSTS_DIR: &str = "/etc/containerd/certs.d";

/// The host's kernel modules, which kube-proxy reads.
pub const KERNEL_MODULES: &str = "/lib/modules";
/// Where Hearth writes its systemd units, the administrator's unit directory.
pub const SYSTEMD_UNITS: &str = "/etc/systemd/system";
/// The kernel's host name, read where no `hostname` program is run.
pub const KERNEL_HOSTNAME: &str = "/proc/sys/kernel/hostname";
