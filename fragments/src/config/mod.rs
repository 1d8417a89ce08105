//! The node config contract: the one description of what a node must become.
//!
//! Two ways in, one type out: the native versioned file (`/etc/hearth/node.json`, see [`native`]) and
//! Magnum's `/etc/sysconfig/heat-params` (see [`heat_params`]). Defaults live in the `Default` impls below
//! and nowhere else. Every value a step of the catalogue reads has a field here; [`fields`] lists which
//! heat-params key feeds which field.

pub mod choices;
pub mod error;
pub mod fields;
pub mod heat_params;
pub mod native;
pub mod secret;
mod validate;
pub mod words;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

pub use choices::{
    CgroupDriver, FlannelBackend, IngressController, NetworkDriver, RuntimeChoice, SelinuxMode, StorageDriverChoice,
};
pub use error::{shown_value, ConfigError, ConfigErrors};
pub use secret::Secret;
/// The rules every config must keep, whichever format it came in: for a renderer to check the config it
/// writes before a node refuses it.
pub use validate::validate;

/// The native format's only version so far.
pub const VERSION: u32 = 1;

/// The cloud's metadata service, which must never be reached through a proxy.
const METADATA_SERVICE: &str = "169.254.169.254";

/// A node's role in the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Master,
    Minion,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Role::Master => "master",
            Role::Minion => "minion",
        })
    }
}

impl FromStr for Role {
    type Err = String;

    /// Accepts Hearth's names and the names later Magnum releases write into `NODEGROUP_ROLE`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "master" | "control-plane" | "controlplane" => Ok(Role::Master),
            "minion" | "worker" | "node" => Ok(Role::Minion),
            other => Err(format!("unknown role {other:?}: expected master or minion")),
        }
    }
}

/// An optional address that may also be given as an empty string: the server's user-data receives
/// addresses from Heat, which substitutes the attribute of a resource that was not created (no floating
/// IP, no load balancer) as `""`.
fn optional_ip<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<IpAddr>, D::Error> {
    match Option::<String>::deserialize(d)?.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// A list of addresses, as a JSON list or one comma-separated string (`""` is the empty list).
fn address_list<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<IpAddr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Addresses {
        List(Vec<IpAddr>),
        Text(String),
    }
    match Addresses::deserialize(d)? {
        Addresses::List(list) => Ok(list),
        Addresses::Text(text) => text
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| s.parse().map_err(|_| serde::de::Error::custom(format!("{s:?} is not an IP address"))))
            .collect(),
    }
}

/// An optional index given as a number or, as Heat substitutes a ResourceGroup's `%index%` into
/// user-data, as a string.
fn optional_index<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Index {
        Number(u32),
        Text(String),
    }
    match Option::<Index>::deserialize(d)? {
        None => Ok(None),
        Some(Index::Number(n)) => Ok(Some(n)),
        Some(Index::Text(t)) if t.trim().is_empty() => Ok(None),
        Some(Index::Text(t)) => t.trim().parse().map(Some).map_err(serde::de::Error::custom),
    }
}

/// A config that loaded, and what the loader wants the operator to know (e.g. heat-params keys Hearth
/// does not know, kept as they were).
#[derive(Debug)]
pub struct Loaded {
    pub config: NodeConfig,
    pub warnings: Vec<String>,
}

/// Everything one node needs. Serialised by the server, read by the agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// Format version; must be [`VERSION`].
    pub version: u32,
    /// The node's role.
    pub role: Role,
    #[serde(default)]
    pub cluster: Cluster,
    #[serde(default)]
    pub node: Node,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub openstack: OpenStack,
    #[serde(default)]
    pub kubernetes: Kubernetes,
    #[serde(default)]
    pub etcd: Etcd,
    #[serde(default)]
    pub runtime: Runtime,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub registry: Registry,
    #[serde(default)]
    pub proxy: Proxy,
    #[serde(default)]
    pub addons: Addons,
    #[serde(default)]
    pub signal: Signal,
    #[serde(default)]
    pub agent: Agent,
    /// heat-params keys Hearth does not know (later Magnum releases add many). Kept verbatim so that
    /// nothing is lost and the heat-params Hearth writes back still carries them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub magnum_extra: BTreeMap<String, String>,
}

/// Cluster-wide identity and switches.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Cluster {
    /// Magnum's cluster UUID (`CLUSTER_UUID`): names the cluster in certificate requests and the cloud provider.
    pub uuid: String,
    /// TLS off (`TLS_DISABLED`): plain HTTP between components, no certificates.
    pub tls_disabled: bool,
    /// The requesting user's name (`USERNAME`); Magnum writes it, no step reads it.
    pub username: String,
    /// Magnum's placeholder password (`PASSWORD`); written, never read.
    pub password: Secret,
    /// Container volume driver (`VOLUME_DRIVER`, e.g. `cinder`); written, never read by node steps.
    pub volume_driver: String,
    /// Unused health delay kept for compatibility (`SYSTEM_PODS_INITIAL_DELAY`, seconds).
    pub system_pods_initial_delay: u32,
    /// Unused health timeout kept for compatibility (`SYSTEM_PODS_TIMEOUT`, minutes).
    pub system_pods_timeout: u32,
}

impl Default for Cluster {
    fn default() -> Self {
        Cluster {
            uuid: String::new(),
            tls_disabled: false,
            username: String::new(),
            password: Secret::default(),
            volume_driver: String::new(),
            system_pods_initial_delay: 30,
            system_pods_timeout: 5,
        }
    }
}

/// This node.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Node {
    /// Fixed (private) IP of the node's port (`KUBE_NODE_IP`); when absent steps read the host's address.
    #[serde(deserialize_with = "optional_ip")]
    pub ip: Option<IpAddr>,
    /// Floating IP (`KUBE_NODE_PUBLIC_IP`), when the cluster gives nodes floating IPs.
    #[serde(deserialize_with = "optional_ip")]
    pub public_ip: Option<IpAddr>,
    /// Nova instance name (`INSTANCE_NAME`, later releases); else the short hostname.
    pub instance_name: String,
    /// CPU architecture (`ARCH`, later releases), e.g. `x86_64`.
    pub arch: String,
    /// Index of this master in the master group: 0 applies the cluster add-ons, others leave them.
    /// Absent (Stein's heat-params never carry `MASTER_INDEX`): every master applies them, converging on
    /// the same objects, so a cluster from Magnum's own parameters still gets its network and DNS.
    #[serde(deserialize_with = "optional_index")]
    pub master_index: Option<u32>,
}

/// How to reach the Kubernetes API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Api {
    /// API server port (`KUBE_API_PORT`).
    pub port: u16,
    /// Public API address: LB or master floating IP (`KUBE_API_PUBLIC_ADDRESS`, masters).
    #[serde(deserialize_with = "optional_ip")]
    pub public_address: Option<IpAddr>,
    /// Private API address: LB VIP or master fixed IP (`KUBE_API_PRIVATE_ADDRESS`, masters).
    #[serde(deserialize_with = "optional_ip")]
    pub private_address: Option<IpAddr>,
    /// Address minions use for the API: LB VIP or master-0 (`KUBE_MASTER_IP`, minions).
    #[serde(deserialize_with = "optional_ip")]
    pub master_ip: Option<IpAddr>,
}

impl Default for Api {
    fn default() -> Self {
        Api { port: 6443, public_address: None, private_address: None, master_ip: None }
    }
}

/// OpenStack endpoints and the cluster's trustee.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenStack {
    /// Keystone v3 URL (`AUTH_URL`), e.g. `https://keystone.example:5000/v3`.
    pub auth_url: String,
    /// Magnum API URL ending in `/v1` (`MAGNUM_URL`), or hearth-server's certificate endpoint.
    pub magnum_url: String,
    /// Region (`REGION_NAME`).
    pub region: String,
    /// Verify TLS certificates of OpenStack endpoints (`VERIFY_CA`).
    pub verify_ca: bool,
    /// The OpenStack CA (PEM) to trust; rendered into Magnum's part-001, native config only.
    pub ca_pem: String,
    /// Where the node already holds the OpenStack CA when `ca_pem` is empty: Magnum put the CA into its
    /// part-001 by template substitution, never into heat-params, and that script wrote it to
    /// `/etc/pki/ca-trust/source/anchors/openstack-ca.pem`, which the heat-params reader names here. The
    /// install-ca step checks it is in the trust store, or says in the signal's data that none was found.
    /// Omitted from the document when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub ca_file: String,
    /// What the agent found at `ca_file` when it loaded the config (not part of the document), so that
    /// its own requests trust that CA from the first one on.
    #[serde(skip)]
    pub ca_found_pem: String,
    /// Trustee user id (`TRUSTEE_USER_ID`).
    pub trustee_user_id: String,
    /// Trustee user name (`TRUSTEE_USERNAME`; Stein never wrote it for minions).
    pub trustee_username: String,
    /// Trustee domain id (`TRUSTEE_DOMAIN_ID`).
    pub trustee_domain_id: String,
    /// Trustee password (`TRUSTEE_PASSWORD`).
    pub trustee_password: Secret,
    /// Trust id (`TRUST_ID`); empty when the operator did not enable cluster user trusts.
    pub trust_id: Secret,
    /// Project id (`PROJECT_ID`).
    pub project_id: String,
    /// Octavia available (`OCTAVIA_ENABLED`): the cloud provider creates Octavia load balancers.
    pub octavia_enabled: bool,
    /// Cluster subnet id (`CLUSTER_SUBNET`) for cloud-provider load balancers.
    pub cluster_subnet: String,
    /// External network id (`EXTERNAL_NETWORK_ID`) for load balancer floating IPs.
    pub external_network_id: String,
    /// Give up retrying a Keystone or Magnum call (connection errors, 5xx, 429) after this many seconds.
    /// Native config only; Magnum's scripts never retried.
    pub api_deadline_secs: u64,
}

impl Default for OpenStack {
    fn default() -> Self {
        OpenStack {
            auth_url: String::new(),
            magnum_url: String::new(),
            region: String::new(),
            verify_ca: true,
            ca_pem: String::new(),
            ca_file: String::new(),
            ca_found_pem: String::new(),
            trustee_user_id: String::new(),
            trustee_username: String::new(),
            trustee_domain_id: String::new(),
            trustee_password: Secret::default(),
            trust_id: Secret::default(),
            project_id: String::new(),
            octavia_enabled: false,
            cluster_subnet: String::new(),
            external_network_id: String::new(),
            api_deadline_secs: 300,
        }
    }
}

/// Kubernetes components.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Kubernetes {
    /// Image tag of the Kubernetes components (`KUBE_TAG`), e.g. `v1.11.6`.
    pub tag: String,
    /// Reported Kubernetes version (`KUBE_VERSION`).
    pub version: String,
    /// Allow privileged containers (`KUBE_ALLOW_PRIV`).
    pub allow_privileged: bool,
    /// cgroup driver of kubelet and the runtime (`CGROUP_DRIVER`): `cgroupfs` or `systemd`.
    pub cgroup_driver: CgroupDriver,
    /// Admission plugins (`ADMISSION_CONTROL_LIST`, comma separated).
    pub admission_control_list: String,
    /// Cluster DNS service IP (`DNS_SERVICE_IP`).
    pub dns_service_ip: IpAddr,
    /// Cluster DNS domain (`DNS_CLUSTER_DOMAIN`).
    pub dns_cluster_domain: String,
    /// Run the external OpenStack cloud provider (`CLOUD_PROVIDER_ENABLED`).
    pub cloud_provider_enabled: bool,
    /// Image tag of the OpenStack cloud controller manager (`CLOUD_PROVIDER_TAG`).
    pub cloud_provider_tag: String,
    /// Keystone authentication webhook (`KEYSTONE_AUTH_ENABLED`).
    pub keystone_auth_enabled: bool,
    /// Image tag of k8s-keystone-auth (`K8S_KEYSTONE_AUTH_TAG`).
    pub keystone_auth_tag: String,
    /// Let controller-manager sign Kubernetes CSRs with the cluster CA (`CERT_MANAGER_API`).
    pub cert_manager_api: bool,
    /// The cluster CA private key (`CA_KEY`), only when `cert_manager_api`.
    pub ca_key: Secret,
    /// Service-account public key, PEM (`KUBE_SERVICE_ACCOUNT_KEY`).
    pub service_account_key: String,
    /// Service-account private key, PEM (`KUBE_SERVICE_ACCOUNT_PRIVATE_KEY`).
    pub service_account_private_key: Secret,
    /// Where the kubelet program is fetched from (`KUBELET_URL`, Hearth's) on OS families that run
    /// upstream's images, which include no kubelet: empty is dl.k8s.io's release of `tag` for the node's
    /// architecture, and a kubelet of `tag` already at `/usr/bin/kubelet` is used instead.
    pub kubelet_url: String,
    /// The kubelet's SHA-256 (`KUBELET_SHA256`, 64 hexadecimal digits): empty takes it from `<url>.sha256`,
    /// as dl.k8s.io and its mirrors publish it.
    pub kubelet_sha256: String,
    /// Extra kubelet arguments (`KUBELET_OPTIONS`).
    pub kubelet_options: String,
    /// Extra kube-apiserver arguments (`KUBEAPI_OPTIONS`).
    pub kubeapi_options: String,
    /// Extra kube-controller-manager arguments (`KUBECONTROLLER_OPTIONS`).
    pub kubecontroller_options: String,
    /// Extra kube-proxy arguments (`KUBEPROXY_OPTIONS`).
    pub kubeproxy_options: String,
    /// Extra kube-scheduler arguments (`KUBESCHEDULER_OPTIONS`).
    pub kubescheduler_options: String,
    /// Algorithm of the keys the certs step generates for this node's certificates: `ecdsa-p256`
    /// (default), `rsa-2048` or `rsa-4096` (what Magnum's scripts used). Native config only.
    pub key_algorithm: KeyAlgorithm,
    /// The pod sandbox image, whole (`registry/pause:tag`); empty is `<runtime.container_infra_prefix or
    /// registry.k8s.io/>pause:<the release's tag>`. The heat-params reader sets Magnum's
    /// `<CONTAINER_INFRA_PREFIX or gcr.io/google_containers/>pause:3.0`, the image a mirror made for Magnum
    /// holds. Omitted from the document when empty.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub pause_image: String,
    /// Masters also register with Magnum's taints, `CriticalAddonsOnly=True:NoSchedule` and
    /// `dedicated=master:NoSchedule`, besides the release's `node-role.kubernetes.io` ones: workloads and
    /// add-ons written for a Magnum cluster tolerate those. The heat-params reader sets it. Omitted from
    /// the document when false.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub magnum_master_taints: bool,
}

/// A node key algorithm, as written in the native config.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 signatures: small keys, fast handshakes, generated in microseconds.
    #[default]
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    #[serde(rename = "rsa-2048")]
    Rsa2048,
    /// Magnum's `openssl genrsa 4096`; generating one takes seconds of CPU on a small VM.
    #[serde(rename = "rsa-4096")]
    Rsa4096,
}

impl KeyAlgorithm {
    pub const ALL: [KeyAlgorithm; 3] = [KeyAlgorithm::EcdsaP256, KeyAlgorithm::Rsa2048, KeyAlgorithm::Rsa4096];

    /// The name used in the native config.
    pub fn name(self) -> &'static str {
        match self {
            KeyAlgorithm::EcdsaP256 => "ecdsa-p256",
            KeyAlgorithm::Rsa2048 => "rsa-2048",
            KeyAlgorithm::Rsa4096 => "rsa-4096",
        }
    }

    /// The RSA modulus size, for RSA algorithms.
    pub fn rsa_bits(self) -> Option<usize> {
        match self {
            KeyAlgorithm::EcdsaP256 => None,
            KeyAlgorithm::Rsa2048 => Some(2048),
            KeyAlgorithm::Rsa4096 => Some(4096),
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KeyAlgorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        KeyAlgorithm::ALL.into_iter().find(|a| a.name() == s.trim()).ok_or_else(|| {
            let names: Vec<&str> = KeyAlgorithm::ALL.iter().map(|a| a.name()).collect();
            format!("unknown key algorithm {s:?}: expected one of {}", names.join(", "))
        })
    }
}

impl Default for Kubernetes {
    fn default() -> Self {
        Kubernetes {
            tag: "v1.11.6".into(),
            version: "v1.11.6".into(),
            allow_privileged: true,
            cgroup_driver: CgroupDriver::Cgroupfs,
            admission_control_list: "NamespaceLifecycle,LimitRanger,ServiceAccount,DefaultStorageClass,\
DefaultTolerationSeconds,MutatingAdmissionWebhook,ValidatingAdmissionWebhook,ResourceQuota"
                .into(),
            dns_service_ip: IpAddr::from([10, 254, 0, 10]),
            dns_cluster_domain: "cluster.local".into(),
            cloud_provider_enabled: true,
            cloud_provider_tag: "v0.2.0".into(),
            keystone_auth_enabled: true,
            keystone_auth_tag: "1.13.0".into(),
            cert_manager_api: false,
            ca_key: Secret::default(),
            service_account_key: String::new(),
            service_account_private_key: Secret::default(),
            kubelet_url: String::new(),
            kubelet_sha256: String::new(),
            kubelet_options: String::new(),
            kubeapi_options: String::new(),
            kubecontroller_options: String::new(),
            kubeproxy_options: String::new(),
            kubescheduler_options: String::new(),
            key_algorithm: KeyAlgorithm::default(),
            pause_image: String::new(),
            magnum_master_taints: false,
        }
    }
}

/// A Cinder volume for a data directory.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Volume {
    /// Cinder volume id; the device is found by its first 20 characters under `/dev/disk/by-id`.
    pub id: String,
    /// Size in GB; 0 means no volume (use the root filesystem).
    pub size: u32,
}

/// etcd on masters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Etcd {
    /// etcd image tag (`ETCD_TAG`).
    pub tag: String,
    /// Discovery URL (`ETCD_DISCOVERY_URL`); empty means a static initial cluster of the masters.
    pub discovery_url: String,
    /// etcd load balancer VIP (`ETCD_LB_VIP`), added to the server certificate.
    #[serde(deserialize_with = "optional_ip")]
    pub lb_vip: Option<IpAddr>,
    /// Address minions use for etcd (`ETCD_SERVER_IP`; defaults to the API master address).
    #[serde(deserialize_with = "optional_ip")]
    pub server_ip: Option<IpAddr>,
    /// Data volume (`ETCD_VOLUME`, `ETCD_VOLUME_SIZE`).
    pub volume: Volume,
    /// Fixed IPs of every master, this one included, for a static initial cluster when there is no
    /// discovery URL (native config only; the server fills it). Empty: this master alone. Also read as
    /// one comma-separated string, which is how Heat substitutes a list into user-data.
    #[serde(deserialize_with = "address_list")]
    pub members: Vec<IpAddr>,
}

impl Default for Etcd {
    fn default() -> Self {
        Etcd {
            tag: "v3.2.7".into(),
            discovery_url: String::new(),
            lb_vip: None,
            server_ip: None,
            volume: Volume::default(),
            members: Vec::new(),
        }
    }
}

/// The container runtime and its storage.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Runtime {
    /// `docker` or `containerd` (`CONTAINER_RUNTIME`, later releases); empty chooses by Kubernetes version.
    pub kind: RuntimeChoice,
    /// Storage driver (`DOCKER_STORAGE_DRIVER`): `overlay2`, `overlay` or `devicemapper`.
    pub storage_driver: StorageDriverChoice,
    /// Data volume (`DOCKER_VOLUME`, `DOCKER_VOLUME_SIZE`).
    pub volume: Volume,
    /// Magnum's `ENABLE_CINDER` (never substituted in Stein, so usually absent).
    pub enable_cinder: Option<bool>,
    /// Registry to trust without TLS (`INSECURE_REGISTRY_URL`).
    pub insecure_registry_url: String,
    /// Prefix of every image (`CONTAINER_INFRA_PREFIX`), ending in `/`; empty uses upstream registries.
    pub container_infra_prefix: String,
    /// heat-container-agent tag (`HEAT_CONTAINER_AGENT_TAG`); Hearth replaces that agent, kept for tools.
    pub heat_container_agent_tag: String,
    /// Mirrors of Docker Hub (`https://mirror.example:5000`) the runtime pulls through before Docker Hub
    /// itself: docker's `registry-mirrors`, containerd's `docker.io` hosts. Native config only; omitted
    /// from the document when empty.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub registry_mirrors: Vec<String>,
}

/// Pod networking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Network {
    /// `flannel` or `calico` (`NETWORK_DRIVER`).
    pub driver: NetworkDriver,
    /// Pod CIDR (`PODS_NETWORK_CIDR`).
    pub pods_cidr: IpNet,
    /// Service ("portal") CIDR (`PORTAL_NETWORK_CIDR`).
    pub services_cidr: IpNet,
    /// Flannel network CIDR (`FLANNEL_NETWORK_CIDR`).
    pub flannel_cidr: IpNet,
    /// Per-node subnet prefix length (`FLANNEL_NETWORK_SUBNETLEN`).
    pub flannel_subnet_len: u8,
    /// Flannel backend (`FLANNEL_BACKEND`): `udp`, `vxlan` or `host-gw`.
    pub flannel_backend: FlannelBackend,
    /// flannel image tag (`FLANNEL_TAG`).
    pub flannel_tag: String,
    /// flannel-cni image tag (`FLANNEL_CNI_TAG`).
    pub flannel_cni_tag: String,
    /// calico/node tag (`CALICO_TAG`).
    pub calico_tag: String,
    /// calico/cni tag (`CALICO_CNI_TAG`).
    pub calico_cni_tag: String,
    /// calico/kube-controllers tag (`CALICO_KUBE_CONTROLLERS_TAG`).
    pub calico_kube_controllers_tag: String,
    /// Calico IPv4 pool (`CALICO_IPV4POOL`).
    pub calico_ipv4pool: IpNet,
}

impl Default for Network {
    fn default() -> Self {
        let net = |s: &str| s.parse::<IpNet>().expect("default CIDR literal");
        Network {
            driver: NetworkDriver::Flannel,
            pods_cidr: net("10.100.0.0/16"),
            services_cidr: net("10.254.0.0/16"),
            flannel_cidr: net("10.100.0.0/16"),
            flannel_subnet_len: 24,
            flannel_backend: FlannelBackend::Vxlan,
            flannel_tag: "v0.10.0-amd64".into(),
            flannel_cni_tag: "v0.3.0".into(),
            calico_tag: "v2.6.7".into(),
            calico_cni_tag: "v1.11.2".into(),
            calico_kube_controllers_tag: "v1.0.3".into(),
            calico_ipv4pool: net("192.168.0.0/16"),
        }
    }
}

/// The Swift-backed local registry on minions.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Registry {
    /// Run the registry (`REGISTRY_ENABLED`).
    pub enabled: bool,
    /// Host port (`REGISTRY_PORT`).
    pub port: u16,
    /// Swift region (`SWIFT_REGION`).
    pub swift_region: String,
    /// Swift container (`REGISTRY_CONTAINER`).
    pub container: String,
    /// Skip TLS verification towards Swift (`REGISTRY_INSECURE`).
    pub insecure: bool,
    /// Swift chunk size in bytes (`REGISTRY_CHUNKSIZE`).
    pub chunksize: u64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            enabled: false,
            port: 5000,
            swift_region: String::new(),
            container: "container".into(),
            insecure: true,
            chunksize: 5_242_880,
        }
    }
}

impl OpenStack {
    /// The CA the agent's own requests trust besides the system's: `ca_pem`, else the one found at
    /// `ca_file`.
    pub fn trusted_ca_pem(&self) -> &str {
        if self.ca_pem.trim().is_empty() {
            &self.ca_found_pem
        } else {
            &self.ca_pem
        }
    }

    /// Reads the CA at `ca_file` under `root` into `ca_found_pem` when `ca_pem` is empty (a file that
    /// holds no certificate is left to the install-ca step to report).
    pub fn find_ca(&mut self, root: &std::path::Path) {
        let file = self.ca_file.trim();
        if !self.ca_pem.trim().is_empty() || file.is_empty() {
            return;
        }
        if let Ok(text) = std::fs::read_to_string(root.join(file.trim_start_matches('/'))) {
            if text.contains("-----BEGIN CERTIFICATE-----") {
                self.ca_found_pem = text;
            }
        }
    }
}

/// Proxy settings for the runtime, kubelet, etcd, login shells and the agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Proxy {
    /// `HTTP_PROXY`.
    pub http_proxy: String,
    /// `HTTPS_PROXY`.
    pub https_proxy: String,
    /// `NO_PROXY` as given; the proxy step extends it with the cluster's own addresses.
    pub no_proxy: String,
}

impl Proxy {
    pub fn is_set(&self) -> bool {
        !self.http_proxy.is_empty() || !self.https_proxy.is_empty()
    }
}

/// Cluster add-ons (run by master-0) and their image tags.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Addons {
    /// `KUBE_DASHBOARD_ENABLED`.
    pub kube_dashboard_enabled: bool,
    /// `KUBE_DASHBOARD_VERSION`.
    pub kube_dashboard_version: String,
    /// `INFLUX_GRAFANA_DASHBOARD_ENABLED`.
    pub influx_grafana_dashboard_enabled: bool,
    /// Legacy Prometheus/Grafana (`PROMETHEUS_MONITORING`).
    pub prometheus_monitoring: bool,
    /// `PROMETHEUS_TAG`.
    pub prometheus_tag: String,
    /// `GRAFANA_TAG`.
    pub grafana_tag: String,
    /// prometheus-operator (`MONITORING_ENABLED`).
    pub monitoring_enabled: bool,
    /// `INGRESS_CONTROLLER`: empty, `traefik` or `octavia`.
    pub ingress_controller: IngressController,
    /// `INGRESS_CONTROLLER_ROLE`.
    pub ingress_controller_role: String,
    /// `OCTAVIA_INGRESS_CONTROLLER_TAG`.
    pub octavia_ingress_controller_tag: String,
    /// `TILLER_ENABLED`.
    pub tiller_enabled: bool,
    /// `TILLER_TAG`.
    pub tiller_tag: String,
    /// `TILLER_NAMESPACE`.
    pub tiller_namespace: String,
    /// `NODE_PROBLEM_DETECTOR_TAG`.
    pub node_problem_detector_tag: String,
    /// `COREDNS_TAG`, the CoreDNS image tag: Stein's manifest hard-coded `1.3.0`, later releases took the
    /// `coredns_tag` label (default `1.3.1`) and wrote it to heat-params.
    pub coredns_tag: String,
}

impl Default for Addons {
    fn default() -> Self {
        Addons {
            kube_dashboard_enabled: true,
            kube_dashboard_version: "v1.8.3".into(),
            influx_grafana_dashboard_enabled: false,
            prometheus_monitoring: false,
            prometheus_tag: "v1.8.2".into(),
            grafana_tag: "5.1.5".into(),
            monitoring_enabled: false,
            ingress_controller: IngressController::None,
            ingress_controller_role: "ingress".into(),
            octavia_ingress_controller_tag: "1.13.2-alpha".into(),
            tiller_enabled: false,
            tiller_tag: "v2.12.3".into(),
            tiller_namespace: "magnum-tiller".into(),
            node_problem_detector_tag: "v0.6.2".into(),
            coredns_tag: "1.3.1".into(),
        }
    }
}

/// The Heat wait condition this node reports to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Signal {
    /// Wait-condition handle endpoint (from `WAIT_CURL` for heat-params); empty: nothing to signal.
    pub endpoint: String,
    /// The handle's token, sent as `X-Auth-Token`.
    pub token: Secret,
    /// Give up retrying the signal after this many seconds.
    pub deadline_secs: u64,
}

impl Default for Signal {
    fn default() -> Self {
        Signal { endpoint: String::new(), token: Secret::default(), deadline_secs: 600 }
    }
}

/// How the agent itself behaves on this node (native config only).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Agent {
    /// SELinux mode to set and persist: `permissive` (Magnum's choice), `enforcing` or `disabled`.
    pub selinux_mode: SelinuxMode,
    /// How long a master step that needs etcd or the API server (network-config, apiserver-kubelet-rbac,
    /// health, addons) waits for it to be healthy, in seconds; on expiry the step fails with the last
    /// probe's answer. Magnum's scripts waited without a bound.
    pub health_deadline_secs: u64,
    /// How long to wait for an attached Cinder volume to appear under `/dev/disk/by-id` before failing
    /// (Magnum: 60 tries of half a second). Omitted from the document when it is the default.
    #[serde(skip_serializing_if = "is_default_device_wait")]
    pub device_wait_secs: u64,
}

const DEFAULT_DEVICE_WAIT_SECS: u64 = 60;

fn is_default_device_wait(secs: &u64) -> bool {
    *secs == DEFAULT_DEVICE_WAIT_SECS
}

impl Default for Agent {
    fn default() -> Self {
        Agent {
            selinux_mode: SelinuxMode::Permissive,
            health_deadline_secs: 600,
            device_wait_secs: DEFAULT_DEVICE_WAIT_SECS,
        }
    }
}

impl NodeConfig {
    /// A config with every default, for `role`.
    pub fn new(role: Role) -> Self {
        NodeConfig {
            version: VERSION,
            role,
            cluster: Cluster::default(),
            node: Node::default(),
            api: Api::default(),
            openstack: OpenStack::default(),
            kubernetes: Kubernetes::default(),
            etcd: Etcd::default(),
            runtime: Runtime::default(),
            network: Network::default(),
            registry: Registry::default(),
            proxy: Proxy::default(),
            addons: Addons::default(),
            signal: Signal::default(),
            agent: Agent::default(),
            magnum_extra: BTreeMap::new(),
        }
    }

    /// The same config with every secret replaced by a mask and proxy credentials hidden: the only form
    /// in which a config is ever printed or logged.
    pub fn masked(&self) -> NodeConfig {
        let mut c = self.clone();
        for secret in c.secrets_mut() {
            *secret = secret.masked();
        }
        for url in [&mut c.proxy.http_proxy, &mut c.proxy.https_proxy] {
            *url = secret::mask_url_credentials(url);
        }
        c
    }

    /// Every secret in the config. A new `Secret` field must be added here; the test below checks
    /// that a config whose secrets are all set prints none of them.
    fn secrets_mut(&mut self) -> [&mut Secret; 6] {
        [
            &mut self.cluster.password,
            &mut self.openstack.trustee_password,
            &mut self.openstack.trust_id,
            &mut self.kubernetes.ca_key,
            &mut self.kubernetes.service_account_private_key,
            &mut self.signal.token,
        ]
    }

    /// Every secret value, for scrubbing text (command output, error chains) before it is reported.
    /// `text` with every secret of this config replaced by the mask: error chains and command output can
    /// echo a password back, and they end up in logs, status files and Heat.
    pub fn scrub(&self, text: &str) -> String {
        self.secret_values().iter().fold(text.to_string(), |acc, secret| acc.replace(secret.as_str(), secret::MASK))
    }

    pub fn secret_values(&self) -> Vec<String> {
        let mut c = self.clone();
        c.secrets_mut().into_iter().map(|s| s.expose().to_string()).filter(|s| s.len() >= 4).collect()
    }

    /// The operator's NO_PROXY plus everything inside the cluster: loopback, the metadata service, this node,
    /// the API and etcd addresses, the pod and service networks and the cluster's DNS names.
    pub fn no_proxy(&self) -> String {
        let mut entries: Vec<String> =
            self.proxy.no_proxy.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect();
        let ips = [
            self.node.ip,
            self.node.public_ip,
            self.api.private_address,
            self.api.public_address,
            self.api.master_ip,
            self.etcd.lb_vip,
            self.etcd.server_ip,
        ];
        let own = ["localhost".to_string(), "127.0.0.1".to_string(), METADATA_SERVICE.to_string()]
            .into_iter()
            .chain(ips.into_iter().flatten().map(|ip| ip.to_string()))
            .chain(
                [self.network.pods_cidr, self.network.services_cidr, self.network.flannel_cidr].map(|n| n.to_string()),
            )
            .chain([".svc".to_string(), format!(".{}", self.kubernetes.dns_cluster_domain)]);
        for entry in own {
            if !entries.contains(&entry) {
                entries.push(entry);
            }
        }
        entries.join(",")
    }

    /// The node's name as Kubernetes sees it: the instance name, else the short hostname given.
    pub fn node_name(&self, hostname: &str) -> String {
        let name = if self.node.instance_name.is_empty() { hostname } else { &self.node.instance_name };
        name.split('.').next().unwrap_or(name).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masked_config_prints_no_secret() {
        let mut c = NodeConfig::new(Role::Master);
        for (i, s) in c.secrets_mut().into_iter().enumerate() {
            *s = Secret::new(format!("very-secret-{i}"));
        }
        c.proxy.http_proxy = "http://u:proxypass@proxy:3128".into();
        let shown = serde_json::to_string(&c.masked()).unwrap();
        assert!(!shown.contains("very-secret"), "{shown}");
        assert!(!shown.contains("proxypass"), "{shown}");
        assert_eq!(c.secret_values().len(), 6);
    }

    #[test]
    fn key_algorithms_by_their_native_names() {
        for algorithm in KeyAlgorithm::ALL {
            let json = serde_json::to_string(&algorithm).unwrap();
            assert_eq!(json, format!("\"{}\"", algorithm.name()));
            assert_eq!(serde_json::from_str::<KeyAlgorithm>(&json).unwrap(), algorithm);
            assert_eq!(algorithm.name().parse::<KeyAlgorithm>().unwrap(), algorithm);
        }
        assert_eq!(NodeConfig::new(Role::Minion).kubernetes.key_algorithm, KeyAlgorithm::EcdsaP256);
        let err = serde_json::from_str::<KeyAlgorithm>("\"rsa-1024\"").unwrap_err().to_string();
        assert!(err.contains("rsa-1024") && err.contains("ecdsa-p256"), "{err}");
        assert!("rsa4096".parse::<KeyAlgorithm>().unwrap_err().contains("ecdsa-p256, rsa-2048, rsa-4096"));
    }

    #[test]
    fn the_ca_magnum_left_on_the_node_is_trusted_unless_the_config_has_one() {
        let root = tempfile::tempdir().unwrap();
        let mut os = OpenStack { ca_file: "/etc/pki/anchor.pem".into(), ..OpenStack::default() };
        os.find_ca(root.path());
        assert_eq!(os.trusted_ca_pem(), "", "no file, nothing trusted");
        std::fs::create_dir_all(root.path().join("etc/pki")).unwrap();
        std::fs::write(root.path().join("etc/pki/anchor.pem"), "not a certificate").unwrap();
        os.find_ca(root.path());
        assert_eq!(os.trusted_ca_pem(), "");
        let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
        std::fs::write(root.path().join("etc/pki/anchor.pem"), pem).unwrap();
        os.find_ca(root.path());
        assert_eq!(os.trusted_ca_pem(), pem);
        assert!(!serde_json::to_string(&os).unwrap().contains("MIIB"), "found, not part of the document");
        os.ca_pem = "-----BEGIN CERTIFICATE-----\nCONFIGURED\n-----END CERTIFICATE-----".into();
        assert!(os.trusted_ca_pem().contains("CONFIGURED"));
    }

    #[test]
    fn roles_parse_from_hearth_and_magnum_names() {
        assert_eq!("master".parse::<Role>().unwrap(), Role::Master);
        assert_eq!("control-plane".parse::<Role>().unwrap(), Role::Master);
        assert_eq!("worker".parse::<Role>().unwrap(), Role::Minion);
        assert!("boss".parse::<Role>().is_err());
    }
}
