//! The end-to-end tier: a cluster rendered by hearth-server, created by the real standalone Heat, and
//! every server Heat asked for booted as a real Debian node that runs hearth-agent and signals back.
//!
//! ```text
//!  this machine (127.0.0.1)                 hub namespace (10.0.0.1/16)         node namespaces
//!  ────────────────────────                 ───────────────────────────         ───────────────
//!  Heat 27 (its own, per cluster)     <──   forward 10.0.0.1:<heat port>   <──  cloud-init bootstrap,
//!  Keystone 30 (shared)               <──   forward 10.0.0.1:<keystone>    <──  hearth-agent on each node
//!  hearth-server serve (certificates, <──   forward 10.0.0.1:<serve port>       at the address Heat's
//!    the agent binary download)                                                 Neutron stand-in gave it
//!  Nova/Neutron stand-in (shared,     <──   forward 10.0.0.1:<compute>     <──  the cloud-controller-
//!    in Keystone's catalog)                                                     manager on masters
//!  the cluster's image registry       <──   forward 10.0.0.1:<registry>    <──  containerd on each node
//! ```
//!
//! [`Cluster::create`] renders the cluster with settings that name the hub's gateway (the address nodes
//! reach the test's services at, like a cloud's API endpoints), registers it with an in-process
//! `hearth-server serve` that also serves the agent binary, and creates the stack in a Heat whose
//! wait-condition endpoints name the gateway too. [`Cluster::boot`] takes each stand-in server's
//! user-data exactly as Heat handed it over and boots it with [`Node::boot`] at the server's fixed
//! address; cloud-init runs the bootstrap, which downloads and checks the agent and starts its unit.
//! [`Cluster::wait`] follows the stack until it settles.
//!
//! Every node pulls what Hearth asks for from the cluster's registry ([`Registry`], set as
//! `container_infra_prefix` and `insecure_registry`): the control plane and kube-proxy as upstream's
//! images of [`kubernetes::CLUSTER_RELEASE`] (or the spec's release), built from their Go modules
//! ([`crate::kubernetes`], [`crate::images`]), run by the units the agent writes; pause, flannel, CoreDNS
//! and the cloud-controller-manager through the kubelet. The kubelet itself is the release's program,
//! which each agent downloads and checks from a dl.k8s.io stand-in ([`Downloads`], set as the
//! `kubelet_url` label) as it would from upstream or a mirror. What stands in (each reported by
//! [`Cluster::summary`]):
//! - **etcd** runs for real from Debian's etcd-server package, started by the agent's own
//!   `etcd.service` with the image's drop-in ([`ETCD_DROP_IN`]) replacing only how the program is started
//!   (the binary instead of `ctr run <etcd image>`), as an image that carries etcd would.
//! - **the kernel a VM would have**: the image's drop-ins ([`image_drop_ins`]) show the kubelet the
//!   kernel tunables it insists on and containerd a writable `/proc/sys/net`, without changing this
//!   machine's.

use crate::cloud_init;
use crate::compute::{self, Compute};
use crate::downloads::{self, Downloads};
use crate::heat::{self, Heat, HeatOptions, ServerInfo, StackId};
use crate::images;
use crate::keystone::{Keystone, Tenancy, User};
use crate::kubernetes;
use crate::load_balancer::LoadBalancer;
use crate::node::network::{STANDIN_GATEWAY, STANDIN_PREFIX_LEN};
use crate::node::{Network, Node, NodeOptions, TreeFile};
use crate::oci::Built;
use crate::registry::Registry;
use anyhow::{bail, Context as _, Result};
use hearth_fragments::config::{native, NodeConfig, Role};
use hearth_fragments::kube::Component;
use hearth_server::bundle::{self, Bundle};
use hearth_server::model::{self, Cluster as MagnumCluster, ClusterTemplate};
use hearth_server::serve::cluster::{ClusterRecord, ClusterUuid, StateDir};
use hearth_server::serve::{self, settings::SettingsFile};
use hearth_server::settings::Loaded;
use hearth_server::user_data::{NODE_CONFIG, NODE_VALUES};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The agent's records on a node.
pub const STATUS: &str = "/var/lib/hearth/status.json";
pub const EVENTS: &str = "/var/lib/hearth/events.jsonl";
pub const DONE: &str = "/var/lib/hearth/done";
/// The agent as the bootstrap installs it.
pub const AGENT: &str = "/usr/local/bin/hearth-agent";

/// The image's drop-in for the agent's `etcd.service`: Debian's etcd binary instead of the etcd image.
pub const ETCD_DROP_IN_PATH: &str = "/usr/lib/systemd/system/etcd.service.d/50-hearth-tests-image.conf";
pub const ETCD_DROP_IN: &str = "\
# hearth-tests image: etcd comes with this image (Debian's etcd-server package) instead of from a registry,
# which no node here can reach. The agent's /etc/systemd/system/etcd.service stays as written; only how
# the program starts is replaced: the binary, with the agent's etcd.conf as its environment.
[Service]
ExecStartPre=
ExecStart=
ExecStart=/usr/bin/etcd
ExecStop=
EnvironmentFile=/etc/etcd/etcd.conf
";

/// Where a node sees the Kubernetes programs of its cluster's release ([`Spec::release`]): the test runs
/// the release's kubectl there.
pub const KUBERNETES_DIR: &str = "/opt/hearth-tests/kubernetes";

/// The control plane's units and what they run.
pub const CONTROL_PLANE: [Component; 3] = [Component::ApiServer, Component::ControllerManager, Component::Scheduler];

/// The image's drop-ins: the kubelet's and containerd's, each running a script first
/// ([`KUBELET_HOST_PATH`], [`NET_SYSCTLS_PATH`]) that shows the program what a VM's kernel would. The
/// agent's units stay as written.
pub fn image_drop_ins() -> Vec<TreeFile> {
    let drop_in = |unit: &str, before: &str| TreeFile {
        path: format!("/usr/lib/systemd/system/{unit}.d/50-hearth-tests-image.conf"),
        contents: format!("[Service]\nExecStartPre={before}\n").into_bytes(),
        mode: 0o644,
    };
    vec![
        drop_in("kubelet.service", KUBELET_HOST_PATH),
        TreeFile { path: KUBELET_HOST_PATH.into(), contents: KUBELET_HOST.as_bytes().to_vec(), mode: 0o755 },
        drop_in("containerd.service", NET_SYSCTLS_PATH),
        TreeFile { path: NET_SYSCTLS_PATH.into(), contents: NET_SYSCTLS.as_bytes().to_vec(), mode: 0o755 },
    ]
}

/// Run before containerd: the node's network sysctls (the CNI plugins enable `ip_forward`, kube-proxy
/// sets `route_localnet` and conntrack's) belong to its own network namespace, writable on a VM; nspawn
/// shows all of `/proc/sys` read-only, so `/proc/sys/net` alone is made writable again.
/// Where a master holds the test's administrator kubeconfig (made by `hearth-server cluster config`).
pub const ADMIN_KUBECONFIG: &str = "/root/hearth-e2e-admin.kubeconfig";

pub const NET_SYSCTLS_PATH: &str = "/usr/local/libexec/hearth-tests/net-sysctls";
pub const NET_SYSCTLS: &str = r#"#!/bin/sh
# hearth-tests image: /proc/sys/net writable, as the node's own network namespace's is on a VM (see
# hearth_tests::e2e::NET_SYSCTLS). The rest of /proc/sys stays read-only.
set -eu
if [ ! -w /proc/sys/net/ipv4/ip_forward ]; then
    mount --bind /proc/sys/net /proc/sys/net
    mount -o remount,bind,rw /proc/sys/net
fi
"#;

/// Run before the kubelet: the node's `/proc/sys` is read-only, because its kernel and vm entries are
/// this machine's own (a kubelet would set `kernel.panic_on_oops=1` for the whole machine), and a kubelet
/// that cannot set the values it wants refuses to start. So the node shows the kubelet those values,
/// each file bound over its entry; nothing of this machine's changes.
pub const KUBELET_HOST_PATH: &str = "/usr/local/libexec/hearth-tests/kubelet-host";
pub const KUBELET_HOST: &str = r#"#!/bin/sh
# hearth-tests image: the kernel tunables the kubelet insists on, shown to it without changing this
# machine's (see hearth_tests::e2e::KUBELET_HOST).
set -eu
dir=/run/hearth-tests/sysctl
mkdir -p "$dir"
for setting in kernel/panic=10 kernel/panic_on_oops=1 vm/overcommit_memory=1 vm/panic_on_oom=0     kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000; do
    key=${setting%%=*} value=${setting#*=}
    [ "$(cat "/proc/sys/$key")" = "$value" ] && continue
    file="$dir/$(echo "$key" | tr / .)"
    echo "$value" >"$file"
    mount --bind "$file" "/proc/sys/$key"
done
"#;

/// The image of the tests' own pods, in every cluster's registry.
pub const SMOKE_IMAGE_NAME: &str = "hearth-tests/busybox";
pub const SMOKE_IMAGE_TAG: &str = "1";

/// An image of the clusters' registry.
struct Served {
    name: String,
    tag: String,
    image: Built,
    /// The Kubernetes release it belongs to: only that release's clusters get it.
    release: Option<&'static str>,
}

impl Served {
    fn new(name: &str, tag: &str, image: Built, release: Option<&'static str>) -> Served {
        Served { name: name.into(), tag: tag.into(), image, release }
    }
}

/// The images the clusters' registry serves, built once per test process: the pause image under the tags
/// Hearth's releases ask for, the add-ons', the cloud provider's, and every release's components but the
/// kubelet.
fn registry_images() -> Result<&'static [Served]> {
    static IMAGES: std::sync::OnceLock<std::result::Result<Vec<Served>, String>> = std::sync::OnceLock::new();
    let built = IMAGES.get_or_init(|| {
        (|| -> Result<Vec<Served>> {
            let programs = kubernetes::addons()?;
            let pause = images::pause()?;
            let mut all: Vec<Served> =
                ["3.10.1", "3.10.2"].iter().map(|tag| Served::new("pause", tag, pause.clone(), None)).collect();
            all.push(Served::new("flannel", kubernetes::FLANNEL_VERSION, images::flannel(&programs.dir)?, None));
            all.push(Served::new("flannel-cni", kubernetes::CNI_VERSION, images::flannel_cni(&programs.dir)?, None));
            all.push(Served::new(SMOKE_IMAGE_NAME, SMOKE_IMAGE_TAG, images::busybox_image()?, None));
            all.push(Served::new("coredns", kubernetes::coredns_tag(), images::coredns(&programs.dir)?, None));
            let manager = images::cloud_controller_manager(&kubernetes::cloud_provider()?.dir)?;
            let manager_tag = kubernetes::CLOUD_PROVIDER_VERSION;
            all.push(Served::new("openstack-cloud-controller-manager", manager_tag, manager, None));
            // Every release's control plane and kube-proxy, as upstream names and tags them.
            for &release in kubernetes::RELEASES {
                let programs = kubernetes::release(release)?;
                for component in [CONTROL_PLANE.as_slice(), &[Component::Proxy]].concat() {
                    let binary = component.binary();
                    let image = images::kube_component(&programs.dir, binary)?;
                    all.push(Served::new(binary, release, image, Some(release)));
                }
            }
            Ok(all)
        })()
        .map_err(|e| format!("{e:#}"))
    });
    built.as_deref().map_err(|e| anyhow::anyhow!("building the registry's images: {e}"))
}

/// The units of the cluster's components a node may have, in start order.
const COMPONENT_UNITS: &[&str] = &[
    "containerd.service",
    "etcd.service",
    "kube-apiserver.service",
    "kube-controller-manager.service",
    "kube-scheduler.service",
    "kubelet.service",
    "kube-proxy.service",
];

/// The ones a minion has.
const MINION_UNITS: &[&str] = &["containerd.service", "kubelet.service", "kube-proxy.service"];

/// The bundled example a cluster starts from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Example {
    /// `examples/cluster-template.yaml` + `cluster.yaml`: Debian, one master, floating IPs.
    Debian,
    /// `examples/cluster-template-ha.yaml` + `cluster-ha.yaml`: Octavia load balancers for the API and
    /// etcd, with a floating IP on the API's.
    Ha,
}

/// What to create.
#[derive(Clone, Debug)]
pub struct Spec {
    /// A short label for the scenario (stack name suffix, summary).
    pub label: String,
    pub example: Example,
    pub masters: i64,
    pub minions: i64,
    /// The SHA-256 the settings announce for the agent; `None`: the served binary's own.
    pub agent_sha256: Option<String>,
    /// The Kubernetes release (`kube_tag`) whose real programs the nodes run, one of
    /// [`kubernetes::RELEASES`].
    pub release: &'static str,
    /// Changes to the example's template (after the tier's own).
    pub edit_template: fn(&mut ClusterTemplate),
}

impl Spec {
    pub fn new(label: &str, example: Example, masters: i64, minions: i64) -> Spec {
        Spec {
            label: label.into(),
            example,
            masters,
            minions,
            agent_sha256: None,
            release: kubernetes::CLUSTER_RELEASE,
            edit_template: |_| {},
        }
    }
}

/// The hearth-agent binary nodes download: `HEARTH_AGENT_BINARY` (what `.ci/run` builds with
/// `.ci/build-static`), else the workspace's debug build (built by `cargo test --workspace`; it links
/// this machine's glibc, which the Debian 12 node image has too).
pub fn agent_binary() -> Result<PathBuf> {
    if let Some(path) = std::env::var_os("HEARTH_AGENT_BINARY") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            bail!("HEARTH_AGENT_BINARY={} is not a file", path.display());
        }
        return Ok(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"));
    let debug = target.join("debug/hearth-agent");
    if debug.is_file() {
        return Ok(debug);
    }
    bail!(
        "no hearth-agent binary for the nodes: set HEARTH_AGENT_BINARY (e.g. after .ci/build-static) or \
         build {} with `cargo build -p hearth-agent`",
        debug.display()
    )
}

/// `sha256sum` of a file.
pub fn sha256_of(path: &Path) -> Result<String> {
    let out = std::process::Command::new("sha256sum").arg(path).output().context("running sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum {} failed: {}", path.display(), String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8(out.stdout)?;
    Ok(text.split_whitespace().next().context("sha256sum printed nothing")?.to_string())
}

/// The operator's kubeconfig for this cluster, as `hearth-server cluster config` makes it, for a master
/// to use against its own API server.
fn admin_kubeconfig(state: &Path, uuid: &str, port: u16) -> Result<TreeFile> {
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("admin.kubeconfig");
    let request = hearth_server::kubeconfig::Request {
        user: "hearth-e2e".into(),
        groups: vec!["system:masters".into()],
        validity: time::Duration::hours(4),
        server: format!("https://127.0.0.1:{port}"),
    };
    hearth_server::kubeconfig::write(state, uuid, &request, &out)
        .context("the administrator's kubeconfig (hearth-server cluster config)")?;
    Ok(TreeFile { path: ADMIN_KUBECONFIG.into(), contents: std::fs::read(&out)?, mode: 0o600 })
}

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// One server of the stack, before and after it is booted.
#[derive(Debug)]
pub struct ClusterNode {
    pub server: ServerInfo,
    pub config: NodeConfig,
    pub node: Option<Node>,
    /// When [`Cluster::boot`] started it.
    pub booted_at: Option<Instant>,
    /// When the test first saw its agent finished (done marker, or a failed status).
    pub finished_after: Option<Duration>,
    /// When the test first saw its Node object in the API (its kubelet registered), since boot.
    pub registered_after: Option<Duration>,
    /// When the test first saw its Node Ready, since boot.
    pub ready_after: Option<Duration>,
    /// Its Node object as last seen ([`Cluster::wait_registered`]).
    pub kube_node: Option<Value>,
}

impl ClusterNode {
    pub fn name(&self) -> &str {
        &self.server.name
    }

    pub fn role(&self) -> Role {
        self.config.role
    }

    pub fn address(&self) -> Ipv4Addr {
        match self.config.node.ip {
            Some(std::net::IpAddr::V4(ip)) => ip,
            other => panic!("{}: node.ip {other:?} is not an IPv4 address", self.server.name),
        }
    }

    /// The booted node (panics before [`Cluster::boot`]).
    pub fn node(&self) -> &Node {
        self.node.as_ref().unwrap_or_else(|| panic!("{} is not booted", self.server.name))
    }

    pub fn node_mut(&mut self) -> &mut Node {
        let name = self.server.name.clone();
        self.node.as_mut().unwrap_or_else(|| panic!("{name} is not booted"))
    }

    /// The agent's `status.json` on the node, if it has written one.
    pub fn status(&self) -> Option<Value> {
        let node = self.node.as_ref()?;
        node.read(STATUS).ok().and_then(|text| serde_json::from_str(&text).ok())
    }

    /// The agent's events (every run), in order.
    pub fn events(&self) -> Vec<Value> {
        let Some(node) = self.node.as_ref() else { return Vec::new() };
        node.read(EVENTS).unwrap_or_default().lines().filter_map(|line| serde_json::from_str(line).ok()).collect()
    }

    /// Whether a step of that name has finished in the agent's current run.
    pub fn step_finished(&self, step: &str) -> bool {
        self.status()
            .and_then(|s| s["steps"].as_array().cloned())
            .is_some_and(|steps| steps.iter().any(|s| s["name"] == step))
    }

    /// The state of each component unit of the node's role that exists on it (the image's etcd package
    /// unit on a minion is not the minion's).
    pub fn units(&self) -> Vec<UnitState> {
        let Some(node) = self.node.as_ref() else { return Vec::new() };
        let mut units = Vec::new();
        let ours = if self.role() == Role::Master { COMPONENT_UNITS } else { MINION_UNITS };
        for unit in ours {
            let out = node.run(&["systemctl", "show", "--property=LoadState,ActiveState,SubState,NRestarts", unit]);
            let Ok(out) = out else { continue };
            let text = String::from_utf8_lossy(&out.stdout);
            let field = |key: &str| {
                text.lines().find_map(|l| l.strip_prefix(&format!("{key}="))).unwrap_or_default().to_string()
            };
            if field("LoadState") != "loaded" {
                continue;
            }
            units.push(UnitState {
                unit: unit.to_string(),
                state: format!("{}/{}", field("ActiveState"), field("SubState")),
                restarts: field("NRestarts").parse().unwrap_or(0),
            });
        }
        units
    }

    /// `kubectl ARGS` on the node as the cluster's administrator, with the kubeconfig
    /// `hearth-server cluster config` wrote for the test ([`ADMIN_KUBECONFIG`], masters only: no identity
    /// on a node may do all this); its stdout, or an error with its stderr.
    pub fn kubectl(&self, args: &[&str]) -> Result<String> {
        let kubectl = format!("{KUBERNETES_DIR}/kubectl");
        let kubeconfig = format!("--kubeconfig={ADMIN_KUBECONFIG}");
        let mut argv = vec![kubectl.as_str(), kubeconfig.as_str(), "--request-timeout=20s"];
        argv.extend(args);
        self.node().run_ok(&argv)
    }

    /// One line about the master's real control plane: the API server's version and readiness, and
    /// which of the three components run.
    pub fn control_plane_summary(&self) -> String {
        let version = self
            .kubectl(&["version", "-o", "json"])
            .ok()
            .and_then(|text| serde_json::from_str::<Value>(&text).ok())
            .and_then(|v| v["serverVersion"]["gitVersion"].as_str().map(str::to_string))
            .unwrap_or_else(|| "no answer".into());
        let ready = self.kubectl(&["get", "--raw", "/readyz"]).unwrap_or_else(|e| format!("{e:#}"));
        let running: Vec<String> = self
            .units()
            .into_iter()
            .filter(|u| CONTROL_PLANE.iter().any(|c| u.unit == format!("{}.service", c.binary())))
            .map(|u| format!("{} {}", u.unit.trim_end_matches(".service"), u.state))
            .collect();
        let ready: String = ready.trim().chars().take(60).collect();
        format!("kube-apiserver {version}, /readyz {ready}; {}", running.join(", "))
    }

    /// One line about the node's Node object: when its kubelet registered, its version, Ready and why,
    /// and its taints.
    pub fn kube_node_summary(&self) -> Option<String> {
        let item = self.kube_node.as_ref()?;
        let version = item["status"]["nodeInfo"]["kubeletVersion"].as_str().unwrap_or("?");
        let conditions = item["status"]["conditions"].as_array().cloned().unwrap_or_default();
        let ready = conditions.iter().find(|c| c["type"] == "Ready").cloned().unwrap_or_default();
        let why: String = ready["message"].as_str().unwrap_or("").chars().take(90).collect();
        let taints: Vec<String> = item["spec"]["taints"]
            .as_array()
            .map(|ts| {
                ts.iter()
                    .map(|t| format!("{}:{}", t["key"].as_str().unwrap_or(""), t["effect"].as_str().unwrap_or("")))
                    .collect()
            })
            .unwrap_or_default();
        let secs = |d: Option<Duration>| d.map(|d| format!("{:.1} s", d.as_secs_f64())).unwrap_or("-".into());
        Some(format!(
            "Node registered {} and Ready {} after boot, kubelet {version}, Ready={} ({why}), taints [{}]",
            secs(self.registered_after),
            secs(self.ready_after),
            ready["status"].as_str().unwrap_or("?"),
            taints.join(", ")
        ))
    }

    /// The last lines a unit logged (why an image-based unit does not run).
    pub fn unit_log(&self, unit: &str, lines: usize) -> String {
        let Some(node) = self.node.as_ref() else { return String::new() };
        node.journal_with(&["-u", unit, "-n", &lines.to_string(), "-o", "cat"]).unwrap_or_default()
    }
}

/// Whether a Node object's Ready condition is True.
pub fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .is_some_and(|conditions| conditions.iter().any(|c| c["type"] == "Ready" && c["status"] == "True"))
}

/// A component unit on a node, as systemd reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitState {
    pub unit: String,
    /// `ActiveState/SubState`, e.g. `active/running`, `activating/auto-restart`.
    pub state: String,
    pub restarts: u64,
}

impl UnitState {
    pub fn is_running(&self) -> bool {
        self.state == "active/running"
    }
}

/// How a stack ended.
#[derive(Clone, Debug)]
pub struct Outcome {
    pub status: String,
    pub reason: String,
    /// From the stack-create call to the test seeing the final status.
    pub after: Duration,
}

/// A rendered, created cluster and its nodes.
#[derive(Debug)]
pub struct Cluster {
    pub spec: Spec,
    pub heat: Heat,
    pub network: Arc<Network>,
    pub keystone: &'static Keystone,
    pub serve: serve::Running,
    pub serve_state: tempfile::TempDir,
    pub uuid: String,
    pub bundle: Bundle,
    pub stack: StackId,
    pub created_at: Instant,
    pub nodes: Vec<ClusterNode>,
    /// Where nodes reach serve and Keystone (the hub's side of their forwards).
    pub serve_at: SocketAddr,
    pub keystone_at: SocketAddr,
    /// The cluster's project, and the owner's trust to its trustee (Magnum's conductor made both).
    pub project_id: String,
    pub trust_id: String,
    pub agent_binary: PathBuf,
    /// The Kubernetes programs the nodes run.
    pub kubernetes: kubernetes::Programs,
    /// What answers at the API's load-balancer address (clusters behind Octavia).
    pub load_balancers: Vec<LoadBalancer>,
    /// The cluster's image registry (`container_infra_prefix`), and where nodes reach it.
    pub registry: Registry,
    pub registry_at: SocketAddr,
    /// The dl.k8s.io stand-in the nodes fetch the kubelet from (`kubelet_url`).
    pub downloads: Downloads,
    pub outcome: Option<Outcome>,
    /// Keeps the settings file and its keys while the cluster lives.
    _settings_dir: tempfile::TempDir,
}

impl Cluster {
    /// Renders `spec`, starts its services and creates the stack; returns once Heat has made every server
    /// (with its user-data) and waits for the nodes.
    pub fn create(spec: Spec) -> Result<Cluster> {
        // serve runs in this process: its decisions go to the test's stderr, as a real serve's go to its.
        hearth_fragments::log::init();
        let kubernetes = kubernetes::release(spec.release)?;
        let heat = Heat::start_with(HeatOptions { public_host: Some(STANDIN_GATEWAY) })?;
        let keystone = Keystone::shared()?;
        let network = Network::with_segment(STANDIN_GATEWAY, STANDIN_PREFIX_LEN)?;
        forward_catalog_port(&network, heat.port(), "Heat's catalog")?;
        let keystone_at = network.forward(SocketAddr::from(([127, 0, 0, 1], keystone.port())))?;
        // Nova and Neutron for the cloud-controller-manager, at the port Keystone's catalog names.
        let compute = Compute::shared()?;
        forward_catalog_port(&network, compute.port(), "Keystone's catalog (Nova, Neutron)")?;
        // The cloud's image mirror, as an air-gapped cloud has one: every image Hearth's nodes pull.
        let registry = Registry::start()?;
        for served in registry_images()?.iter().filter(|s| s.release.is_none_or(|r| r == spec.release)) {
            registry.push(&served.name, &served.tag, &served.image)?;
        }
        let registry_at = network.forward(SocketAddr::from(([127, 0, 0, 1], registry.port)))?;
        // The release's kubelet where upstream publishes it, for the agents to fetch.
        let kubelet_path = downloads::kubelet_path(spec.release, "amd64");
        let downloads = Downloads::start(&[(kubelet_path.clone(), kubernetes.dir.join("kubelet"))])?;
        let kubelet_url = format!("http://{}{kubelet_path}", network.forward(downloads.addr())?);

        // Magnum's conductor: a trustee user per cluster and the owner's trust to it.
        let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid")?.trim().to_string();
        let Tenancy { service, service_project, owner, project, owner_token, trustee_domain } =
            keystone.magnum_tenancy()?;
        let trustee: User = keystone.create_user(&format!("{uuid}_trustee"), "Tr'u$tee\"pass", &trustee_domain)?;
        let trust = keystone.create_trust(&owner_token, &owner.id, &trustee.id, &project, &["member"], true)?;

        // hearth-server serve: certificates for the cluster, validated against Keystone, and the agent.
        let agent_binary = agent_binary()?;
        let serve_state = tempfile::Builder::new().prefix("hearth-e2e-serve-").tempdir()?;
        let serve_file: SettingsFile = serde_json::from_value(json!({
            // On this machine's loopback, any free port; nodes reach it through the hub's forward.
            "listen": "127.0.0.1:0",
            "state_dir": serve_state.path(),
            "agent_file": agent_binary,
            "keystone": {
                "url": keystone.url(),
                "service_user": {"name": service.name, "password": service.password, "project": service_project},
            },
        }))?;
        let serve = serve::Server::bind(&serve_file.resolve(None)?)?.spawn();
        let serve_at = network.forward(serve.local_addr())?;

        // The operator's settings, every endpoint where nodes reach it.
        let settings_dir = tempfile::Builder::new().prefix("hearth-e2e-settings-").tempdir()?;
        let sha256 = match &spec.agent_sha256 {
            Some(wrong) => wrong.clone(),
            None => sha256_of(&agent_binary)?,
        };
        let settings_path = settings_dir.path().join("settings.yaml");
        let settings_text = serde_json::to_string_pretty(&json!({
            "auth_url": format!("http://{keystone_at}/v3"),
            "magnum_url": format!("http://{serve_at}/v1"),
            "region": "RegionOne",
            "verify_ca": true,
            "openstack_ca_file": examples().join("openstack-ca.pem"),
            "username": owner.name,
            "trustee": {
                "domain_id": trustee_domain,
                "user_id": trustee.id,
                "username": trustee.name,
                "password": trustee.password,
                "trust_id": trust,
            },
            "cluster_user_trust": true,
            "octavia_enabled": true,
            "agent": {"url": format!("http://{serve_at}{}", serve::AGENT_PATH), "sha256": sha256},
            "create_timeout": 15,
            "service_account_public_key_file": examples().join("service-account.pub"),
            "service_account_private_key_file": examples().join("service-account.key"),
        }))?;
        std::fs::write(&settings_path, settings_text)?;
        let settings = Loaded::load(&settings_path)?;

        let (mut template, mut cluster) = load_example(spec.example, spec.release, registry_at)?;
        template.labels.insert("kubelet_url".into(), kubelet_url);
        (spec.edit_template)(&mut template);
        cluster.uuid = Some(uuid.clone());
        cluster.master_count = Some(spec.masters);
        cluster.node_count = Some(spec.minions);
        let bundle = bundle::render(&template, &cluster, &settings).map_err(|e| anyhow::anyhow!("render: {e:?}"))?;
        StateDir::new(serve_state.path()).register(&ClusterRecord {
            cluster_uuid: uuid.clone(),
            trustee_user_id: trustee.id.clone(),
            name: cluster.name.clone(),
        })?;

        let mut body = heat::with_standins(bundle.stack_create_body())?;
        body["stack_name"] = json!(format!("{}-{}", bundle.stack_name, spec.label));
        let created_at = Instant::now();
        let stack = heat.create_stack(&body).map_err(|e| anyhow::anyhow!("{e}\n{}", heat.log_tail(4000)))?;
        let servers = wait_for_servers(&heat, &stack, (spec.masters + spec.minions) as usize)?;
        let mut nodes = Vec::new();
        for server in servers {
            let config = node_config_of(&server)?;
            nodes.push(ClusterNode {
                server,
                config,
                node: None,
                booted_at: None,
                finished_after: None,
                registered_after: None,
                ready_after: None,
                kube_node: None,
            });
        }
        nodes.sort_by(|a, b| {
            (a.role() != Role::Master, a.name().to_string()).cmp(&(b.role() != Role::Master, b.name().to_string()))
        });
        let mut addresses: Vec<Ipv4Addr> = nodes.iter().map(ClusterNode::address).collect();
        addresses.sort();
        addresses.dedup();
        if addresses.len() != nodes.len() {
            bail!("the Neutron stand-in gave two servers the same fixed address (1 in 10,000 per pair); run again");
        }
        compute.add(nodes.iter().map(|n| {
            compute::Server {
                id: n.server.id.clone(),
                name: n.name().to_string(),
                project_id: project.clone(),
                address: n.address(),
                flavor: match n.role() {
                    Role::Master => template.master_flavor_id.clone(),
                    Role::Minion => template.flavor_id.clone(),
                }
                .unwrap_or_else(|| "m1.small".into()),
            }
        }));
        Ok(Cluster {
            spec,
            heat,
            network,
            keystone,
            serve,
            serve_state,
            uuid,
            bundle,
            stack,
            created_at,
            nodes,
            serve_at,
            keystone_at,
            project_id: project,
            trust_id: trust,
            agent_binary,
            kubernetes,
            load_balancers: Vec::new(),
            registry,
            registry_at,
            downloads,
            outcome: None,
            _settings_dir: settings_dir,
        })
    }

    /// Boots every server as a node: its user-data as Heat handed it over, its fixed address, its name.
    /// First, where minions reach the API at an address no master has (Octavia's VIP), a real load
    /// balancer there ([`LoadBalancer`]) to every master's API server.
    pub fn boot(&mut self) -> Result<()> {
        let masters: Vec<Ipv4Addr> =
            self.nodes.iter().filter(|n| n.role() == Role::Master).map(ClusterNode::address).collect();
        let mut vips: Vec<(Ipv4Addr, u16)> = self
            .nodes
            .iter()
            .filter(|n| n.role() == Role::Minion)
            .filter_map(|n| match n.config.api.master_ip {
                Some(std::net::IpAddr::V4(ip)) if !masters.contains(&ip) => Some((ip, n.config.api.port)),
                _ => None,
            })
            .collect();
        vips.sort_unstable();
        vips.dedup();
        for (vip, port) in vips {
            let members: Vec<SocketAddr> = masters.iter().map(|&m| SocketAddr::from((m, port))).collect();
            self.load_balancers.push(LoadBalancer::start(&self.network, vip, port, &members)?);
        }
        for member in &mut self.nodes {
            let admin = match member.role() {
                Role::Master => vec![admin_kubeconfig(self.serve_state.path(), &self.uuid, member.config.api.port)?],
                Role::Minion => Vec::new(),
            };
            let options = NodeOptions {
                files: [TreeFile {
                    path: ETCD_DROP_IN_PATH.into(),
                    contents: ETCD_DROP_IN.as_bytes().to_vec(),
                    mode: 0o644,
                }]
                .into_iter()
                .chain(image_drop_ins())
                .chain([TreeFile {
                    // The node's resolver, as a cloud's DHCP hands one out: the hub's gateway, where
                    // nothing answers, so names outside the cluster fail at once and no query leaves the
                    // test's namespaces. CoreDNS's `forward . /etc/resolv.conf` needs one to start.
                    path: "/etc/resolv.conf".into(),
                    contents: format!("nameserver {}\n", self.network.gateway()).into_bytes(),
                    mode: 0o644,
                }])
                .chain(admin)
                .collect(),
                containers: true,
                read_only: vec![(self.kubernetes.dir.clone(), KUBERNETES_DIR.into())],
                ..NodeOptions::new(&member.server.name).on(&self.network).at(member.address())
            };
            member.booted_at = Some(Instant::now());
            member.node = Some(
                Node::boot(&member.server.user_data, options)
                    .with_context(|| format!("booting {}", member.server.name))?,
            );
        }
        Ok(())
    }

    /// Follows the stack until it is CREATE_COMPLETE or CREATE_FAILED (or `timeout`), noting when each
    /// agent finished.
    /// `observe` is called on every poll, e.g. to act on a node at the right moment.
    pub fn wait(&mut self, timeout: Duration, mut observe: impl FnMut(&mut Cluster)) -> Result<Outcome> {
        let deadline = Instant::now() + timeout;
        loop {
            self.note_finished();
            observe(self);
            let stack = self.heat.stack(&self.stack).map_err(|e| anyhow::anyhow!("{e}"))?;
            if !stack.status.ends_with("_IN_PROGRESS") {
                let outcome =
                    Outcome { status: stack.status, reason: stack.status_reason, after: self.created_at.elapsed() };
                // The agents of other nodes may still be finishing; give the summary their ends.
                let settle = Instant::now() + Duration::from_secs(5);
                while Instant::now() < settle && self.nodes.iter().any(|n| n.finished_after.is_none()) {
                    self.note_finished();
                    std::thread::sleep(Duration::from_millis(100));
                }
                self.outcome = Some(outcome.clone());
                return Ok(outcome);
            }
            if Instant::now() > deadline {
                bail!(
                    "stack {} still {} after {:.0} s ({})\n{}",
                    self.stack,
                    stack.status,
                    timeout.as_secs_f64(),
                    stack.status_reason,
                    self.diagnostics()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn note_finished(&mut self) {
        for member in &mut self.nodes {
            let (Some(node), Some(booted)) = (member.node.as_ref(), member.booted_at) else { continue };
            if member.finished_after.is_some() {
                continue;
            }
            let failed = member.status().is_some_and(|s| s["state"] == "failed");
            if failed || node.exists(DONE) {
                member.finished_after = Some(booted.elapsed());
            }
        }
    }

    /// Follows master 0's API until every node's kubelet has registered its Node (or `timeout`), noting
    /// when each did; the error names the nodes missing and the last answer.
    pub fn wait_registered(&mut self, timeout: Duration) -> Result<()> {
        self.wait_nodes(timeout, "registered", |_| true)
    }

    /// Follows master 0's API until every Node is Ready (or `timeout`), noting when each was.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        self.wait_nodes(timeout, "Ready", is_ready)
    }

    fn wait_nodes(&mut self, timeout: Duration, what: &str, wanted: impl Fn(&Value) -> bool) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let master = self.nodes.iter().position(|n| n.role() == Role::Master).context("no master")?;
        loop {
            let answer = self.nodes[master].kubectl(&["get", "nodes", "-o", "json"]);
            let items = answer
                .as_ref()
                .ok()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .and_then(|list| list["items"].as_array().cloned())
                .unwrap_or_default();
            for member in &mut self.nodes {
                let name = member.config.node_name(member.name());
                if let Some(item) = items.iter().find(|i| i["metadata"]["name"] == name.as_str()) {
                    let since_boot = member.booted_at.map(|b| b.elapsed());
                    member.registered_after = member.registered_after.or(since_boot);
                    if is_ready(item) {
                        member.ready_after = member.ready_after.or(since_boot);
                    }
                    member.kube_node = Some(item.clone());
                }
            }
            let missing: Vec<&str> = self
                .nodes
                .iter()
                .filter(|n| !n.kube_node.as_ref().is_some_and(&wanted))
                .map(ClusterNode::name)
                .collect();
            if missing.is_empty() {
                return Ok(());
            }
            if Instant::now() > deadline {
                let last = match &answer {
                    Ok(_) => format!("{} Node(s) listed", items.len()),
                    Err(e) => format!("{e:#}"),
                };
                let logs: String = missing
                    .iter()
                    .filter_map(|name| self.nodes.iter().find(|n| n.name() == *name))
                    .map(|n| {
                        format!(
                            "--- {}: {}\nkubelet:\n{}\n",
                            n.name(),
                            n.kube_node_summary().unwrap_or_default(),
                            n.unit_log("kubelet.service", 15)
                        )
                    })
                    .collect();
                bail!("{missing:?} not {what} within {timeout:?} ({last})\n{logs}");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The image reference of the tests' own pods, in this cluster's registry.
    pub fn smoke_image(&self) -> String {
        format!("{}/{SMOKE_IMAGE_NAME}:{SMOKE_IMAGE_TAG}", self.registry_at)
    }

    /// Denies the node `name` its certificates in serve's state, as `hearth-server node deny` does.
    pub fn deny(&self, name: &str, reason: &str) -> Result<()> {
        let uuid = ClusterUuid::parse(&self.uuid)?;
        serve::deny::deny(&StateDir::new(self.serve_state.path()), &uuid, name, Some(reason))?;
        Ok(())
    }

    pub fn member(&self, name_suffix: &str) -> &ClusterNode {
        self.nodes
            .iter()
            .find(|n| n.name().ends_with(name_suffix))
            .unwrap_or_else(|| panic!("no node named *{name_suffix}"))
    }

    pub fn member_mut(&mut self, name_suffix: &str) -> &mut ClusterNode {
        self.nodes
            .iter_mut()
            .find(|n| n.name().ends_with(name_suffix))
            .unwrap_or_else(|| panic!("no node named *{name_suffix}"))
    }

    /// The wait condition data Heat holds for each node: `{node name: summary}` merged over the
    /// stack's wait conditions.
    pub fn wait_condition_data(&self) -> Result<serde_json::Map<String, Value>> {
        let mut merged = serde_json::Map::new();
        let resources = self.heat.resources(&self.stack).map_err(|e| anyhow::anyhow!("{e}"))?;
        for resource in resources.iter().filter(|r| r.resource_type == "OS::Heat::WaitCondition") {
            let attributes = self.heat.attributes(resource).map_err(|e| anyhow::anyhow!("{e}"))?;
            let data = match &attributes.get("data") {
                Some(Value::String(text)) => serde_json::from_str(text).unwrap_or(Value::Null),
                Some(other) => (*other).clone(),
                None => Value::Null,
            };
            if let Value::Object(map) = data {
                merged.extend(map);
            }
        }
        Ok(merged)
    }

    /// What to print when something went wrong: each node's agent status, console tail and Heat's log.
    pub fn diagnostics(&self) -> String {
        let mut text = String::new();
        for member in &self.nodes {
            let _ = writeln!(text, "--- {} ({})", member.name(), member.address());
            if let Some(status) = member.status() {
                let _ = writeln!(text, "status: {} failure: {}", status["state"], status["failure"]);
            }
            if let Some(node) = &member.node {
                let console = node.console();
                let tail: String = console.chars().rev().take(3000).collect::<Vec<_>>().into_iter().rev().collect();
                let _ = writeln!(text, "console tail:\n{tail}");
            }
        }
        let _ = writeln!(text, "--- Heat log tail:\n{}", self.heat.log_tail(3000));
        text
    }

    /// The summary rows of this cluster: per node (role, steps, agent time, result, signal, what did not
    /// run here) and the stack's time to its final status.
    pub fn summary(&self) -> String {
        let mut text = String::new();
        let outcome = self.outcome.as_ref();
        let _ = writeln!(
            text,
            "stack {} ({} master(s) + {} minion(s), {:?}): {} after {:.1} s{}",
            self.spec.label,
            self.spec.masters,
            self.spec.minions,
            self.spec.example,
            outcome.map(|o| o.status.as_str()).unwrap_or("not settled"),
            outcome.map(|o| o.after.as_secs_f64()).unwrap_or_default(),
            outcome
                .filter(|o| !o.reason.is_empty() && o.status != "CREATE_COMPLETE")
                .map(|o| format!(" — {}", o.reason))
                .unwrap_or_default()
        );
        let _ = writeln!(
            text,
            "  {:<42} {:<6} {:>5} {:>5} {:>8} {:>9}  {:<9} not running here (unit: state, restarts)",
            "node", "role", "boots", "steps", "agent", "boot→done", "result"
        );
        for member in &self.nodes {
            let status = member.status().unwrap_or(Value::Null);
            let steps = status["steps"].as_array().map(Vec::len).unwrap_or(0);
            let agent =
                status["duration_ms"].as_u64().map(|ms| format!("{:.1}s", ms as f64 / 1000.0)).unwrap_or("-".into());
            let done = member.finished_after.map(|d| format!("{:.1}s", d.as_secs_f64())).unwrap_or("-".into());
            let result = status["state"].as_str().unwrap_or("no status").to_string();
            // Which units wait for what this machine cannot give them; only meaningful once the agent
            // has started them all.
            let stopped: Vec<UnitState> = if result == "succeeded" {
                member.units().into_iter().filter(|u| !u.is_running()).collect()
            } else {
                Vec::new()
            };
            let not_running: Vec<String> = stopped
                .iter()
                .map(|u| format!("{}: {}, {} restarts", u.unit.trim_end_matches(".service"), u.state, u.restarts))
                .collect();
            let boots = member.node.as_ref().map(Node::boots).unwrap_or(0);
            let _ = writeln!(
                text,
                "  {:<42} {:<6} {:>5} {:>5} {:>8} {:>9}  {:<9} {}",
                member.name(),
                member.role().to_string(),
                boots,
                steps,
                agent,
                done,
                result,
                if not_running.is_empty() { "-".to_string() } else { not_running.join("; ") }
            );
            // Why, in the unit's own words (the same for every image-based unit of a node).
            if let Some(first) = stopped.first() {
                let log = member.unit_log(&first.unit, 30);
                let why = log
                    .lines()
                    .rev()
                    .find(|l| l.contains("ctr:"))
                    .or_else(|| log.lines().rev().find(|l| !l.trim().is_empty()))
                    .unwrap_or("");
                let why: String = why.chars().take(150).collect();
                let _ = writeln!(text, "  {:<42} {}: {why}", "", first.unit);
            }
            if member.role() == Role::Master && member.node.is_some() {
                let _ = writeln!(text, "  {:<42} {}", "", member.control_plane_summary());
            }
            if let Some(line) = member.kube_node_summary() {
                let _ = writeln!(text, "  {:<42} {line}", "");
            }
        }
        let fetched = self.downloads.requests();
        let kubelets = fetched.iter().filter(|p| p.ends_with("/kubelet")).count();
        let digests = fetched.iter().filter(|p| p.ends_with("/kubelet.sha256")).count();
        let _ = writeln!(text, "  kubelet program fetched {kubelets} time(s), its SHA-256 {digests} time(s)");
        text
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Nodes first (they hold the network), then the stack's Heat goes with the struct.
        for member in &mut self.nodes {
            member.node = None;
        }
    }
}

/// Forwards this machine's loopback `port` into `network` at the same port, which a service catalog
/// names at the hub's gateway (`catalog` says whose, for the error).
fn forward_catalog_port(network: &Network, port: u16, catalog: &str) -> Result<()> {
    let at = network.forward(SocketAddr::from(([127, 0, 0, 1], port)))?;
    if at.port() != port {
        bail!("{catalog} names port {port} but the hub could only forward {at}");
    }
    Ok(())
}

fn load_example(example: Example, release: &str, registry: SocketAddr) -> Result<(ClusterTemplate, MagnumCluster)> {
    let (template, cluster) = match example {
        Example::Debian => ("cluster-template.yaml", "cluster.yaml"),
        Example::Ha => ("cluster-template-ha.yaml", "cluster-ha.yaml"),
    };
    let mut template: ClusterTemplate = model::load(&examples().join(template))?;
    let cluster: MagnumCluster = model::load(&examples().join(cluster))?;
    // What this machine cannot give a node, changed here and reported in the closing notes: no block
    // device for Cinder volumes (docker's and etcd's), no proxy to go through. etcd's tag names the
    // release of the etcd binary the image carries (Debian 12's 3.4), so the agent writes the settings
    // of that release.
    template.docker_volume_size = None;
    template.http_proxy = None;
    template.https_proxy = None;
    template.no_proxy = None;
    template.labels.remove("etcd_volume_size");
    template.labels.insert("etcd_tag".into(), "v3.4.23".into());
    // The release whose real programs the nodes run.
    template.labels.insert("kube_tag".into(), release.into());
    // nf_conntrack_max is this machine's, read-only in a node's namespace: kube-proxy leaves it alone
    // (what kind does in a container).
    template.labels.insert("kubeproxy_options".into(), "--conntrack-max-per-core=0".into());
    // Images from the cluster's registry, as Magnum's labels point an air-gapped cloud at its mirror, and
    // the pod network's releases that the registry holds.
    template.labels.insert("container_infra_prefix".into(), format!("{registry}/"));
    template.insecure_registry = Some(registry.to_string());
    template.labels.insert("flannel_tag".into(), kubernetes::FLANNEL_VERSION.into());
    template.labels.insert("flannel_cni_tag".into(), kubernetes::CNI_VERSION.into());
    template.labels.insert("coredns_tag".into(), kubernetes::coredns_tag().into());
    template.labels.insert("cloud_provider_tag".into(), kubernetes::CLOUD_PROVIDER_VERSION.into());
    Ok((template, cluster))
}

/// Polls until Heat has made `count` servers with user-data (the stack then waits for their signals).
fn wait_for_servers(heat: &Heat, stack: &StackId, count: usize) -> Result<Vec<ServerInfo>> {
    let deadline = Instant::now() + Duration::from_secs(240);
    loop {
        let servers = heat.servers(stack).map_err(|e| anyhow::anyhow!("{e}"))?;
        if servers.len() == count && servers.iter().all(|s| !s.user_data.is_empty() && !s.id.is_empty()) {
            return Ok(servers);
        }
        let state = heat.stack(stack).map_err(|e| anyhow::anyhow!("{e}"))?;
        if state.status != "CREATE_IN_PROGRESS" || Instant::now() > deadline {
            bail!(
                "stack {stack}: {} {} with {} of {count} servers\n{}",
                state.status,
                state.status_reason,
                servers.len(),
                heat.log_tail(4000)
            );
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The node config in a server's user-data, as the real cloud-init writes it.
pub fn node_config_of(server: &ServerInfo) -> Result<NodeConfig> {
    let parts = cloud_init::parts(server.user_data.as_bytes())?;
    let part = parts.first().with_context(|| format!("{}: the user-data has no part", server.name))?;
    let root = tempfile::tempdir()?;
    cloud_init::write_files_into(part.text()?, root.path())?;
    let read = |file: &str| {
        std::fs::read_to_string(root.path().join(file.trim_start_matches('/')))
            .with_context(|| format!("{}: no {file} in its user-data", server.name))
    };
    let text = native::with_values(&read(NODE_CONFIG)?, &read(NODE_VALUES)?, NODE_VALUES)
        .map_err(|e| anyhow::anyhow!("{}: {e}", server.name))?;
    native::parse(&text, &server.name, None).map_err(|e| anyhow::anyhow!("{}: {e}", server.name))
}
