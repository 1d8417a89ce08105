//! A booted Debian node for the end-to-end tier: systemd as PID 1 and cloud-init 22.4 consuming a NoCloud
//! seed, in a network namespace of its own wired to the test's services by a veth pair.
//!
//! [`Node::boot`] takes the user-data as a cloud would hand it over and:
//! 1. lays the node's root over the cached "cloud" tree ([`CLOUD`]: debootstrap bookworm minbase with
//!    systemd, dbus, cloud-init, curl, ca-certificates, iproute2, procps, and the programs the
//!    end-to-end tier runs for real: containerd, runc, etcd; built once, see
//!    [`crate::debian_tree`]) as an overlay mount: the cached tree is the read-only lower layer, so a node
//!    costs no copy and no disk until it writes (a plain copy is the fallback where overlayfs is refused);
//! 2. writes what a cloud's hypervisor would provide: the NoCloud seed
//!    (`/var/lib/cloud/seed/nocloud/{meta-data,user-data}` with the instance-id and hostname; the
//!    user-data 0600, it carries tokens), a machine-id of its own, `/etc/hostname` and `/etc/hosts`;
//! 3. creates its network namespace and attaches it to a [`Network`] (its own, or one shared with other
//!    nodes): `eth0` with the next free address of the network's segment (10.213.0.0/24 unless the
//!    network was made with another one), or the address the caller chose ([`NodeOptions::at`]: the one
//!    Heat reported for the node's server), and a default route through the hub at the network's
//!    gateway, where [`Network::forward`] exposes loopback services of the test;
//! 4. starts `systemd-nspawn --boot --register=no --keep-unit --network-namespace-path=…` with the
//!    console (what `openstack console log show` would show) captured to a file.
//!
//! The node is then driven from outside, with no registration with machined (systemd is not PID 1 on
//! the test machine): commands run through `nsenter --target <its PID 1> --all` ([`Node::run`]), files
//! are read through `/proc/<its PID 1>/root` with symlinks resolved inside the node's root, the journal
//! is read with the test machine's `journalctl --root` ([`Node::journal`]). [`Node::poweroff`] and
//! [`Node::reboot`] go through the node's own systemd (`systemd-nspawn` exits 0 on poweroff and 133 on
//! reboot, and is started again for a reboot, as `systemd-nspawn@.service` would). Dropping the node
//! kills its PID 1 (which ends every process in its PID namespace), deletes its namespace (and with it
//! the veth pair) and removes its tree.
//!
//! Network rule: a node reaches only the hub and, through forwards, the loopback services the test
//! chose; it never has a route to anything else. The other way round, [`Node::listen`] gives the test a
//! socket inside the node's own namespace (e.g. its `127.0.0.1:6443`), where an in-process stand-in
//! answers for a program the image cannot run.
//!
//! Needs root, `systemd-nspawn` (systemd-container), `nsenter` (util-linux), `ip` (iproute2), `journalctl`
//! (systemd) and, while the tree is not cached, `debootstrap` and `systemctl` (systemd); `.ci/run` installs
//! them all.

pub mod cgroups;
pub mod network;

pub use network::{Netns, Network, GATEWAY, STANDIN_GATEWAY, STANDIN_PREFIX_LEN};

use crate::debian_tree::{self, Variant};
use crate::mounts::{self, MountGuard};
use crate::nspawn::{self, Booted};
use anyhow::{bail, Context, Result};
use cgroups::NodeCgroups;
use hearth_fragments::host::write_state_file;
use rustix::fs::{Mode, OFlags, ResolveFlags};
use std::fs::File;
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Packages of the cloud tree, on top of debootstrap's minbase.
pub const CLOUD_INCLUDE: &[&str] = &[
    // systemd as PID 1; dbus for hostnamed, which cloud-init's set_hostname goes through.
    "systemd-sysv",
    "dbus",
    // cloud-init 22.4.2 from bookworm. python3-cryptography (cloud-init → python3-oauthlib) depends on a
    // virtual package that only python3-cffi-backend provides, and debootstrap does not resolve virtual
    // packages: name the provider.
    "cloud-init",
    "python3-cffi-backend",
    // What the user-data stub fetches and checks the agent with (sha256sum is in coreutils).
    "curl",
    "ca-certificates",
    // `ip` and `ps`/`pgrep`, for the agent's host facts and for tests looking inside.
    "iproute2",
    "procps",
    // The node's container runtime (containerd 1.6, with `ctr`, and runc 1.1), which the agent's services
    // step enables and starts.
    "containerd",
    "runc",
    // Debian's etcd 3.4 (`/usr/bin/etcd`): the end-to-end tier points the agent's image-based etcd unit at
    // this binary through a drop-in, so a master's etcd runs for real.
    "etcd-server",
    // What kube-proxy, which the end-to-end tier runs for real, programs Services with: iptables (nft
    // backend) and conntrack (it clears UDP entries of removed endpoints).
    "iptables",
    "conntrack",
];

/// The bootable tree every node is made from.
pub const CLOUD: Variant = Variant { label: "cloud", include: CLOUD_INCLUDE, revision: 2, prepare: prepare_cloud_tree };

/// Units that Debian's packages enable on install but that the agent writes or enables and starts itself
/// (its etcd and services steps): the image must not start them at boot. In the built tree etcd-server
/// enables `etcd.service` (a link in `multi-user.target.wants/` and its alias `etcd2.service`) and
/// containerd enables `containerd.service` (a link in `multi-user.target.wants/`).
const UNITS_THE_AGENT_STARTS: &[&str] = &["etcd.service", "containerd.service"];

/// The image's own cloud-init configuration, as a cloud image builder would ship it.
const CLOUD_CFG_PATH: &str = "etc/cloud/cloud.cfg.d/90_hearth_nspawn.cfg";
const CLOUD_CFG: &str = "\
# hearth-tests: a Debian node booted by systemd-nspawn from a NoCloud seed.
# Only the seed: no probing for other clouds' metadata services.
datasource_list: [NoCloud, None]
# eth0 is configured from outside before boot, as a hypervisor's network would be; cloud-init's
# fallback (DHCP on the first NIC) would only remove that address.
network: {config: disabled}
# Debian's default (en_US.UTF-8) needs the locales package and locale-gen; C.UTF-8 is built into libc.
locale: C.UTF-8
# No SSH server in this image (the agent replaces SSH access): no host keys to generate.
ssh_genkeytypes: []
";
/// debootstrap copies the build machine's resolv.conf; a node must carry no address of this machine.
const RESOLV_CONF: &str = "# hearth-tests: no name service; nodes reach the test's services by address.\n";

/// Where cloud-init's NoCloud datasource looks for its seed.
pub const SEED_DIR: &str = "/var/lib/cloud/seed/nocloud";
/// Written by cloud-init at the end of its final stage, in this boot's `/run` (a link to
/// `/var/lib/cloud/data/result.json`, which outlives the boot).
pub const CLOUD_INIT_RESULT: &str = "/run/cloud-init/result.json";

/// Bound on a command run by [`Node::run`] unless the caller gives one.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(50);

/// Numbers the nodes of this process, for unique machine names.
static NEXT_NODE: AtomicU32 = AtomicU32::new(0);

/// The cached cloud tree (its `/`), built first if needed. Never write into it.
pub fn cloud_tree() -> Result<PathBuf> {
    debian_tree::variant_tree(&CLOUD)
}

/// Turns a fresh debootstrap tree into the cloud image every node starts from.
fn prepare_cloud_tree(root: &Path) -> Result<()> {
    write_in(root, CLOUD_CFG_PATH, CLOUD_CFG.as_bytes(), 0o644)?;
    write_in(root, "etc/resolv.conf", RESOLV_CONF.as_bytes(), 0o644)?;
    // debootstrap leaves the build machine's name; each node writes its own.
    write_in(root, "etc/hostname", b"localhost\n", 0o644)?;
    write_in(root, "etc/hosts", b"127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n", 0o644)?;
    // No identity in the image: every node writes a machine-id of its own, and D-Bus uses the same one
    // (what Debian's cloud images do), instead of the one the build happened to generate.
    write_in(root, "etc/machine-id", b"", 0o444)?;
    let dbus_id = root.join("var/lib/dbus/machine-id");
    if std::fs::symlink_metadata(&dbus_id).is_ok() {
        std::fs::remove_file(&dbus_id).with_context(|| format!("removing {}", dbus_id.display()))?;
    }
    std::os::unix::fs::symlink("/etc/machine-id", &dbus_id)
        .with_context(|| format!("linking {} to /etc/machine-id", dbus_id.display()))?;
    disable_units_the_agent_starts(root)?;
    // apt's package indexes (≈ 50 MB): a node has no route to a mirror.
    let lists = root.join("var/lib/apt/lists");
    for item in std::fs::read_dir(&lists).with_context(|| format!("listing {}", lists.display()))? {
        let path = item?.path();
        if path.is_file() {
            std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
        }
    }
    Ok(())
}

/// Undoes what the packages' postinst enabled (`deb-systemd-helper enable`) for the units the agent
/// starts itself, with the test machine's own `systemctl --root` (which removes exactly the links that
/// enabling made, aliases too), and checks the result.
fn disable_units_the_agent_starts(root: &Path) -> Result<()> {
    if debian_tree::find_program("systemctl").is_none() {
        bail!("systemctl is missing: apt-get install systemd (.ci/run installs it)");
    }
    for unit in UNITS_THE_AGENT_STARTS {
        match is_enabled(root, unit)?.as_str() {
            "enabled" => {
                let out = Command::new("systemctl")
                    .arg(format!("--root={}", root.display()))
                    .args(["disable", unit])
                    .output()
                    .context("running systemctl")?;
                if !out.status.success() {
                    bail!(
                        "systemctl --root={} disable {unit} failed ({}): {}",
                        root.display(),
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    );
                }
                let state = is_enabled(root, unit)?;
                if state != "disabled" {
                    bail!("{unit} is {state:?} in the cloud tree after systemctl disable, not \"disabled\"");
                }
            }
            "disabled" => {}
            other => bail!("{unit} is {other:?} in the cloud tree: expected its package to install it enabled"),
        }
    }
    Ok(())
}

/// `systemctl --root=ROOT is-enabled UNIT`'s answer (it exits non-zero for anything but enabled).
fn is_enabled(root: &Path, unit: &str) -> Result<String> {
    let out = Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["is-enabled", unit])
        .output()
        .context("running systemctl")?;
    let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if state.is_empty() {
        bail!(
            "systemctl --root={} is-enabled {unit} said nothing ({}): {}",
            root.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(state)
}

/// Writes `relative` under `root` atomically with `mode`.
fn write_in(root: &Path, relative: &str, contents: &[u8], mode: u32) -> Result<()> {
    write_state_file(&root.join(relative.trim_start_matches('/')), contents, mode)
}

/// A file placed in the node's tree before it boots.
#[derive(Debug, Clone)]
pub struct TreeFile {
    /// Absolute path inside the node.
    pub path: String,
    pub contents: Vec<u8>,
    pub mode: u32,
}

/// How a node is booted.
#[derive(Debug, Clone)]
pub struct NodeOptions {
    /// The node's hostname (a DNS label): `local-hostname` in the seed's meta-data, `/etc/hostname`.
    pub hostname: String,
    /// The seed's `instance-id`; by default one unique to this node.
    pub instance_id: Option<String>,
    /// The network to attach to; by default a new one of the node's own ([`Node::network`]).
    pub network: Option<Arc<Network>>,
    /// The node's address on that network (inside its segment); by default the next free one.
    pub address: Option<Ipv4Addr>,
    /// Lines appended to the node's `/etc/hosts`.
    pub extra_hosts: String,
    /// Files written into the tree before boot.
    pub files: Vec<TreeFile>,
    /// Directories of this machine the node sees read-only: `(this machine's path, the node's path)`.
    /// For what is too big to copy into every tree (the Kubernetes programs of `crate::kubernetes`).
    pub read_only: Vec<(PathBuf, String)>,
    /// Whether the node runs containers (containerd's tasks, the kubelet's pods): it then gets cgroup
    /// subtrees of its own ([`cgroups`]), every capability, the keyring and bpf system calls runc uses,
    /// `/dev/kmsg` (the kubelet's OOM watcher), and `/var/lib/containerd` on this machine's file system
    /// (an overlayfs snapshot cannot have its upper directory on the overlayfs that is the node's tree;
    /// a Cinder volume is mounted there on a cloud). `/proc/sys` stays read-only: its kernel and vm
    /// entries are this machine's own.
    pub containers: bool,
}

impl NodeOptions {
    pub fn new(hostname: &str) -> NodeOptions {
        NodeOptions {
            hostname: hostname.to_string(),
            instance_id: None,
            network: None,
            address: None,
            extra_hosts: String::new(),
            files: Vec::new(),
            read_only: Vec::new(),
            containers: false,
        }
    }

    /// Attaches the node to `network` (shared with other nodes) instead of a network of its own.
    pub fn on(mut self, network: &Arc<Network>) -> NodeOptions {
        self.network = Some(Arc::clone(network));
        self
    }

    /// Attaches the node at `address` (e.g. the address Heat reported for its server; see
    /// [`Network::attach_at`] for what is refused).
    pub fn at(mut self, address: Ipv4Addr) -> NodeOptions {
        self.address = Some(address);
        self
    }
}

/// What cloud-init's `result.json` says about the final stage.
#[derive(Debug, Clone)]
pub struct CloudInitResult {
    /// e.g. `DataSourceNoCloud [seed=/var/lib/cloud/seed/nocloud][dsmode=net]`
    pub datasource: String,
    /// Every module failure of every stage (`(module, exception)` strings); empty when all went well.
    pub errors: Vec<String>,
    /// From starting systemd-nspawn to the result being there.
    pub after: Duration,
}

/// A booted node; see the module documentation.
#[derive(Debug)]
pub struct Node {
    hostname: String,
    machine: String,
    address: Ipv4Addr,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    console: PathBuf,
    /// The overlay mount that is the node's tree (the cached tree read-only below, the node's writes in
    /// `upper/`); `None` when the tree is a copy.
    overlay: Option<MountGuard>,
    netns: Option<Netns>,
    network: Arc<Network>,
    /// systemd-nspawn and the node's PID 1, while it runs.
    booted: Option<Booted>,
    /// systemd-nspawn's arguments of every boot beyond the usual: [`NodeOptions::read_only`], and those of
    /// a node that runs containers.
    nspawn_args: Vec<String>,
    /// The node's cgroup subtrees when it runs containers.
    cgroups: Option<NodeCgroups>,
    /// How long making the tree took (overlay or copy, seed and files).
    prepared_in: Duration,
    boots: u32,
}

impl Node {
    /// Boots a node whose cloud-init gets `user_data` from its NoCloud seed. Returns once systemd is the
    /// node's PID 1; wait for what the test needs with [`Node::wait_for`] or
    /// [`Node::wait_for_cloud_init`].
    pub fn boot(user_data: &str, options: NodeOptions) -> Result<Node> {
        preflight()?;
        check_label("hostname", &options.hostname)?;
        let machine = format!("hearth-{}-{}", std::process::id(), NEXT_NODE.fetch_add(1, Ordering::Relaxed));
        let instance_id = options.instance_id.clone().unwrap_or_else(|| format!("iid-{machine}"));
        if instance_id.is_empty() || !instance_id.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            bail!("instance-id {instance_id:?}: only letters, digits, '-', '_' and '.' are used here");
        }
        let mut nspawn_args = Vec::new();
        for (source, target) in &options.read_only {
            let source_text = source.display().to_string();
            if !target.starts_with('/') || source_text.contains(':') || target.contains(':') || !source.is_dir() {
                bail!("{source_text} → {target}: a read-only view needs an existing directory, an absolute node path and no ':'");
            }
            nspawn_args.push(format!("--bind-ro={source_text}:{target}"));
        }
        let cached = cloud_tree().context("preparing the cached cloud tree")?;

        let preparing = Instant::now();
        let dir =
            tempfile::Builder::new().prefix("hearth-node-").tempdir().context("creating a temporary directory")?;
        let root = dir.path().join("root");
        let overlay = lay_tree(&cached, dir.path(), &root)?;
        let network = match &options.network {
            Some(network) => Arc::clone(network),
            None => Network::new()?,
        };
        let netns = Netns::create()?;
        let address = match options.address {
            Some(address) => network.attach_at(&netns, address)?,
            None => network.attach(&netns)?,
        };
        let mut node = Node {
            hostname: options.hostname.clone(),
            machine,
            address,
            console: dir.path().join("console.log"),
            dir: Some(dir),
            root,
            overlay,
            netns: Some(netns),
            network,
            booted: None,
            nspawn_args,
            cgroups: None,
            prepared_in: Duration::ZERO,
            boots: 0,
        };
        node.write_identity(user_data, &instance_id, &options)?;
        if options.containers {
            node.prepare_containers()?;
        }
        node.prepared_in = preparing.elapsed();
        node.start()?;
        Ok(node)
    }

    /// The seed, the node's names and identity, and the caller's files.
    fn write_identity(&self, user_data: &str, instance_id: &str, options: &NodeOptions) -> Result<()> {
        // JSON is YAML: no quoting question for cloud-init's YAML reader, whatever the values hold.
        let meta_data = serde_json::json!({"instance-id": instance_id, "local-hostname": options.hostname});
        write_in(&self.root, &format!("{SEED_DIR}/meta-data"), format!("{meta_data}\n").as_bytes(), 0o644)?;
        write_in(&self.root, &format!("{SEED_DIR}/user-data"), user_data.as_bytes(), 0o600)?;
        write_in(&self.root, "etc/hostname", format!("{}\n", self.hostname).as_bytes(), 0o644)?;
        let hosts = format!(
            "127.0.0.1 localhost\n::1 localhost ip6-localhost ip6-loopback\n{} {}\n{} hearth-gateway\n{}",
            self.address,
            self.hostname,
            self.network.gateway(),
            options.extra_hosts
        );
        write_in(&self.root, "etc/hosts", hosts.as_bytes(), 0o644)?;
        write_in(&self.root, "etc/machine-id", format!("{}\n", new_machine_id()?).as_bytes(), 0o444)?;
        for file in &options.files {
            if !file.path.starts_with('/') || file.path.split('/').any(|part| part == "..") {
                bail!("{:?}: files for the node need an absolute path without '..'", file.path);
            }
            write_in(&self.root, &file.path, &file.contents, file.mode)?;
        }
        Ok(())
    }

    /// What a node that runs containers needs (see [`NodeOptions::containers`]).
    fn prepare_containers(&mut self) -> Result<()> {
        let dir = self.dir.as_ref().context("the node's directory is gone")?.path().to_path_buf();
        let (view, containerd) = (dir.join("cgroups"), dir.join("containerd"));
        for made in [&view, &containerd] {
            std::fs::create_dir_all(made).with_context(|| format!("creating {}", made.display()))?;
        }
        let cgroups = NodeCgroups::create(&self.machine, &view)?;
        self.nspawn_args.extend([
            "--capability=all".to_string(),
            "--system-call-filter=@keyring bpf".to_string(),
            "--bind=/dev/kmsg".to_string(),
            format!("--bind={}:/sys/fs/cgroup", cgroups.view().display()),
            format!("--bind={}:/var/lib/containerd", containerd.display()),
        ]);
        self.cgroups = Some(cgroups);
        Ok(())
    }

    /// Starts systemd-nspawn on the tree and waits for systemd to be the node's PID 1.
    fn start(&mut self) -> Result<()> {
        let netns = self.netns.as_ref().context("the node's namespace is gone")?;
        let mut command = match &self.cgroups {
            None => Command::new("systemd-nspawn"),
            Some(cgroups) => {
                // Into the node's cgroups first, then the same process becomes systemd-nspawn.
                let mut sh = Command::new("sh");
                let joins: Vec<String> = cgroups.procs_files().iter().map(|p| p.display().to_string()).collect();
                sh.arg("-c")
                    .arg(
                        r#"for f in $HEARTH_CGROUP_PROCS; do echo $$ > "$f" || exit 1; done; exec systemd-nspawn "$@""#,
                    )
                    .arg("sh")
                    .env("HEARTH_CGROUP_PROCS", joins.join(" "));
                sh
            }
        };
        command
            .arg(format!("--directory={}", self.root.display()))
            .args(["--boot", "--register=no", "--keep-unit"])
            .arg(format!("--machine={}", self.machine))
            .arg(format!("--hostname={}", self.hostname))
            .arg(format!("--network-namespace-path={}", netns.path()))
            // The journal stays in the tree (readable after the node is gone); the tree's own
            // resolv.conf and time zone, nothing of this machine's.
            .args(["--link-journal=no", "--resolv-conf=off", "--timezone=off"])
            .args(&self.nspawn_args);
        self.booted = Some(Booted::start(command, &self.console)?);
        self.boots += 1;
        Ok(())
    }

    /// The node's hostname.
    pub fn hostname(&self) -> &str {
        &self.hostname
    }

    /// The node's address on its network (`eth0`); the same after a reboot.
    pub fn address(&self) -> Ipv4Addr {
        self.address
    }

    /// A listening socket at `address` inside the node's own network namespace (e.g. `127.0.0.1:6443`,
    /// the node's loopback, or its own address): programs in the node connect to it as to a local
    /// service, and the test serves it in-process (e.g. `KubeApiStandIn::start_on`). It keeps working
    /// across [`Node::reboot`]: the namespace is the test's, not the node's.
    pub fn listen(&self, address: SocketAddr) -> Result<TcpListener> {
        let netns = self.netns.as_ref().context("the node's namespace is gone")?;
        netns.listen(address).with_context(|| format!("listening in node {}", self.hostname))
    }

    /// The name of the node's network namespace (`/run/netns/NAME`), until the node is dropped.
    pub fn namespace(&self) -> Option<&str> {
        self.netns.as_ref().map(Netns::name)
    }

    /// The network the node is attached to (to add forwards for it).
    pub fn network(&self) -> &Arc<Network> {
        &self.network
    }

    /// The node's tree as this machine sees it (without the node's own `/run` and `/tmp`).
    pub fn tree(&self) -> &Path {
        &self.root
    }

    /// Whether the node's tree is an overlay over the cached tree (else a copy of it).
    pub fn is_overlay(&self) -> bool {
        self.overlay.is_some()
    }

    /// How long making the node's tree took, before systemd-nspawn started.
    pub fn prepared_in(&self) -> Duration {
        self.prepared_in
    }

    /// How many times systemd-nspawn was started (1 + reboots).
    pub fn boots(&self) -> u32 {
        self.boots
    }

    /// Time since systemd-nspawn was last started.
    pub fn uptime(&self) -> Duration {
        self.booted.as_ref().map_or(Duration::ZERO, |booted| booted.started().elapsed())
    }

    /// The node's PID 1 as this machine numbers it, while the node runs.
    pub fn leader(&self) -> Option<u32> {
        self.booted.as_ref().and_then(Booted::leader)
    }

    /// Whether the node's systemd is still there.
    pub fn is_running(&self) -> bool {
        self.leader().is_some()
    }

    /// The node's `/` with all its mounts while it runs (`/proc/<PID 1>/root`), else its tree.
    fn view(&self) -> PathBuf {
        match self.leader() {
            Some(pid) => PathBuf::from(format!("/proc/{pid}/root")),
            None => self.root.clone(),
        }
    }

    /// Opens `path` (absolute, inside the node) with symlinks resolved inside the node's root, as the
    /// node itself would (an absolute link such as `/run/cloud-init/result.json` must not lead into
    /// this machine's `/var`).
    fn open(&self, path: &str, flags: OFlags) -> std::io::Result<File> {
        let view = self.view();
        let root = rustix::fs::open(&view, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?;
        let relative = path.trim_start_matches('/');
        let relative = if relative.is_empty() { "." } else { relative };
        let file = rustix::fs::openat2(root, relative, flags | OFlags::CLOEXEC, Mode::empty(), ResolveFlags::IN_ROOT)?;
        Ok(File::from(file))
    }

    /// Whether `path` exists inside the node.
    pub fn exists(&self, path: &str) -> bool {
        self.open(path, OFlags::PATH).is_ok()
    }

    /// Reads the file `path` inside the node.
    pub fn read(&self, path: &str) -> Result<String> {
        let mut text = String::new();
        self.open(path, OFlags::RDONLY)
            .and_then(|mut file| file.read_to_string(&mut text))
            .with_context(|| format!("reading {path} in node {}", self.hostname))?;
        Ok(text)
    }

    /// Waits until `path` exists inside the node; returns the time since systemd-nspawn started. Fails
    /// at once, with the console's tail, if the node stops.
    pub fn wait_for(&self, path: &str, timeout: Duration) -> Result<Duration> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.exists(path) {
                return Ok(self.uptime());
            }
            if !self.is_running() {
                bail!("node {} stopped before {path} appeared:\n{}", self.hostname, self.console_tail());
            }
            if Instant::now() >= deadline {
                bail!(
                    "{path} did not appear in node {} within {timeout:?}.\n--- console (tail) ---\n{}",
                    self.hostname,
                    self.console_tail()
                );
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits for this boot's cloud-init to finish its final stage and returns what it reported. The
    /// caller decides whether errors fail it ([`CloudInitResult::errors`]).
    pub fn wait_for_cloud_init(&self, timeout: Duration) -> Result<CloudInitResult> {
        let after = self.wait_for(CLOUD_INIT_RESULT, timeout)?;
        let text = self.read(CLOUD_INIT_RESULT)?;
        let result: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{CLOUD_INIT_RESULT} in node {} is not JSON: {text}", self.hostname))?;
        let v1 = &result["v1"];
        let Some(datasource) = v1["datasource"].as_str() else {
            bail!("{CLOUD_INIT_RESULT} in node {} has no v1.datasource: {text}", self.hostname);
        };
        let Some(errors) = v1["errors"].as_array() else {
            bail!("{CLOUD_INIT_RESULT} in node {} has no v1.errors list: {text}", self.hostname);
        };
        let errors = errors.iter().map(|e| e.as_str().map_or_else(|| e.to_string(), str::to_string)).collect();
        Ok(CloudInitResult { datasource: datasource.to_string(), errors, after })
    }

    /// Runs `argv` inside the node (every namespace of its PID 1, as root, a plain environment), bounded
    /// by a generous timeout. The caller judges the exit status.
    pub fn run(&self, argv: &[&str]) -> Result<Output> {
        self.run_within(argv, RUN_TIMEOUT)
    }

    /// [`Node::run`] bounded by `timeout` (coreutils' `timeout` inside the node ends the command, and
    /// kills it 5 s later if it is still there).
    pub fn run_within(&self, argv: &[&str], timeout: Duration) -> Result<Output> {
        let Some(booted) = self.booted.as_ref().filter(|booted| booted.leader().is_some()) else {
            bail!("node {} is not running, cannot run {argv:?}", self.hostname);
        };
        let seconds = format!("{:.1}", timeout.as_secs_f64());
        let bounded: Vec<&str> =
            ["timeout", "--kill-after=5", &seconds].into_iter().chain(argv.iter().copied()).collect();
        booted
            .command(&bounded)
            .output()
            .with_context(|| format!("running {} in node {}", argv.join(" "), self.hostname))
    }

    /// Runs `argv` inside the node and returns its stdout; fails with the command, its status and its
    /// output unless it exits 0.
    pub fn run_ok(&self, argv: &[&str]) -> Result<String> {
        let out = self.run(argv)?;
        if !out.status.success() {
            bail!(
                "{} in node {} failed ({}):\n{}{}",
                argv.join(" "),
                self.hostname,
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// The node's whole journal (every boot), read with this machine's journalctl.
    pub fn journal(&self) -> Result<String> {
        self.journal_with(&[])
    }

    /// The node's journal with extra journalctl arguments (e.g. `["--unit=cloud-final", "--boot=0"]`).
    pub fn journal_with(&self, args: &[&str]) -> Result<String> {
        let view = self.view();
        let out = Command::new("journalctl")
            .arg(format!("--root={}", view.display()))
            .args(["--no-pager", "--quiet", "--output=short-precise"])
            .args(args)
            .output()
            .context("running journalctl")?;
        if !out.status.success() {
            bail!(
                "journalctl --root={} {} failed ({}): {}",
                view.display(),
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Everything the node printed on its console (and systemd-nspawn's own messages), every boot.
    pub fn console(&self) -> String {
        std::fs::read(&self.console).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
    }

    fn console_tail(&self) -> String {
        nspawn::console_tail(&self.console)
    }

    /// Shuts the node down through its own systemd and waits for systemd-nspawn to exit; returns how long
    /// the shutdown took. The tree and journal stay readable until the node is dropped.
    pub fn poweroff(&mut self, timeout: Duration) -> Result<Duration> {
        let asked = Instant::now();
        let status = self.shut_down("poweroff", timeout)?;
        if !status.success() {
            bail!("systemd-nspawn exited {status} after poweroff, not 0:\n{}", self.console_tail());
        }
        Ok(asked.elapsed())
    }

    /// Reboots the node through its own systemd: systemd-nspawn exits 133 and is started again on the
    /// same tree and namespace (machine-id, journal and cloud-init's instance state survive, like a VM's
    /// disk). Returns once systemd is PID 1 again.
    pub fn reboot(&mut self, timeout: Duration) -> Result<()> {
        let status = self.shut_down("reboot", timeout)?;
        if status.code() != Some(133) {
            bail!("systemd-nspawn exited {status} after reboot, not 133:\n{}", self.console_tail());
        }
        self.start()
    }

    /// `systemctl --no-block VERB` inside, then waits for systemd-nspawn to exit.
    fn shut_down(&mut self, verb: &str, timeout: Duration) -> Result<ExitStatus> {
        let out = self.run(&["systemctl", "--no-block", verb])?;
        if !out.status.success() {
            bail!(
                "systemctl {verb} in node {} failed ({}): {}",
                self.hostname,
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        let booted = self.booted.as_mut().context("systemd-nspawn is not running")?;
        let Some(status) = booted.wait_exit(timeout)? else {
            bail!("node {} did not {verb} within {timeout:?}:\n{}", self.hostname, self.console_tail());
        };
        self.booted = None;
        Ok(status)
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        // Ends the node at once (before its cgroups, namespace and tree go).
        drop(self.booted.take());
        drop(self.cgroups.take());
        // Deletes the veth pair and frees the address for another node of the network.
        self.network.detach(self.address);
        drop(self.netns.take());
        drop(self.overlay.take());
        let Some(dir) = self.dir.take() else { return };
        if let Err(e) = mounts::unmount_all_under(dir.path()) {
            // Deleting through a live mount would delete the cached tree's files: keep the directory.
            let kept = dir.keep();
            eprintln!("hearth-tests: keeping {} because {e:#}", kept.display());
            return;
        }
        let path = dir.path().to_path_buf();
        if let Err(e) = dir.close() {
            eprintln!("hearth-tests: could not remove {}: {e}", path.display());
        }
    }
}

/// Makes `root` the node's tree over `cached`: an overlay mount (returned), else a copy.
fn lay_tree(cached: &Path, dir: &Path, root: &Path) -> Result<Option<MountGuard>> {
    let (upper, work) = (dir.join("upper"), dir.join("work"));
    for made in [root, &upper, &work] {
        std::fs::create_dir_all(made).with_context(|| format!("creating {}", made.display()))?;
    }
    let paths = [cached, &upper, &work].map(|p| p.display().to_string());
    // overlayfs splits its options at ',' and ':' (no escaping through mount(8)).
    if paths.iter().all(|p| !p.contains([',', ':'])) {
        let options = format!("lowerdir={},upperdir={},workdir={}", paths[0], paths[1], paths[2]);
        match MountGuard::mount(&["-t", "overlay", "overlay", "-o", &options], root) {
            Ok(mount) => return Ok(Some(mount)),
            Err(e) => eprintln!("hearth-tests: no overlay for the node's tree, copying it instead: {e:#}"),
        }
    }
    debian_tree::copy_tree(cached, root)?;
    Ok(None)
}

/// A random machine-id (32 lower-case hex digits), from the kernel's UUID source.
fn new_machine_id() -> Result<String> {
    let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").context("reading a random UUID")?;
    let id: String = uuid.trim().chars().filter(|c| *c != '-').collect();
    if id.len() != 32 || !id.chars().all(|c| c.is_ascii_hexdigit()) {
        bail!("unexpected UUID from the kernel: {uuid:?}");
    }
    Ok(id.to_ascii_lowercase())
}

/// A DNS label: what a hostname and a machine name may be.
fn check_label(what: &str, value: &str) -> Result<()> {
    let valid = !value.is_empty()
        && value.len() <= 63
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !value.starts_with('-')
        && !value.ends_with('-');
    if !valid {
        bail!("{what} {value:?} is not a DNS label (a-z, 0-9, '-', at most 63, no '-' at either end)");
    }
    Ok(())
}

/// Checks what booting needs, with a message that says what to install.
fn preflight() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("booting a node with systemd-nspawn needs root");
    }
    for (program, package) in [
        ("systemd-nspawn", "systemd-container"),
        ("nsenter", "util-linux"),
        ("journalctl", "systemd"),
        ("ip", "iproute2"),
    ] {
        if debian_tree::find_program(program).is_none() {
            bail!("{program} is missing: apt-get install {package} (.ci/run installs it)");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostnames_must_be_dns_labels() {
        for good in ["node-0", "m", "a1-b2"] {
            check_label("hostname", good).unwrap();
        }
        for bad in ["", "-x", "x-", "Upper", "dot.ted", "under_score", &"x".repeat(64)] {
            assert!(check_label("hostname", bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn machine_ids_are_fresh_hex() {
        let (one, two) = (new_machine_id().unwrap(), new_machine_id().unwrap());
        assert_eq!(one.len(), 32);
        assert!(one.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{one}");
        assert_ne!(one, two);
    }
}
