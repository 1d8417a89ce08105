//! Components (etcd and the Kubernetes daemons) as systemd services, one small trait with an
//! implementation per OS family, chosen from the host's facts:
//!
//! | OS family | how `<name>.service` comes to exist | implementation |
//! |---|---|---|
//! | fedora-atomic | `atomic install --system --system-package=no --storage ostree --name=<name> <image>`, as Magnum: atomic writes the unit from the image's own template, the image's entrypoint reads the config files | [`atomic::Atomic`] |
//! | fedora-coreos | a unit whose `ExecStart` is `podman run --net=host …` (Magnum's Fedora CoreOS driver did the same) | [`units::Podman`] |
//! | debian | a unit that runs the image through the node's runtime: `docker run` on docker, `ctr run` on containerd | [`units::Docker`], [`units::Ctr`] |
//! | fedora-coreos, debian: a component without an image | a unit that runs the host's program | [`units::HostProgram`] |
//!
//! The unit runtimes pass a component's program and its [`ArgsFrom`] variable as the container's command
//! (upstream's images), or run the image's own entrypoint (Magnum's).
//!
//! On containerd the unit uses `ctr`, the client containerd's own package ships, because it needs nothing
//! else on the node: `nerdctl` is not packaged by Debian 12, and `crictl` runs containers only inside pod
//! sandboxes of a kubelet that is itself one of the components. The images go into their own containerd
//! namespace (`hearth`), where the kubelet's image garbage collection (namespace `k8s.io`) never removes them.
//!
//! Every unit is written whole; a step that changed a component's unit or files restarts it when it is
//! already running (`try-restart`), so a re-converged node runs its new configuration. Starting is the
//! services step's business.

pub mod atomic;
pub mod units;

use crate::facts::OsFamily;
use crate::host::{FileSpec, Outcome, Systemd};
use crate::kube::RuntimeKind;
use crate::step::Context;
use anyhow::{Context as _, Result};

/// A host path inside the container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mount {
    pub host: String,
    pub container: String,
    pub writable: bool,
    /// Give the content the shared container SELinux label (podman's `z`). Only for directories that hold
    /// nothing but the component's own files: relabelling `/` or `/sys` would break the host.
    pub relabel: bool,
}

impl Mount {
    /// The same path inside and out.
    pub fn same(path: &str, writable: bool) -> Mount {
        Mount { host: path.into(), container: path.into(), writable, relabel: false }
    }

    pub fn relabel(mut self) -> Mount {
        self.relabel = true;
        self
    }
}

/// One daemon of the cluster, whatever runs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Component {
    /// Unit name without `.service`, and the container's name.
    pub name: String,
    pub description: String,
    /// The image the component runs in; `None` runs `args` on the host itself (the kubelet, of which
    /// upstream publishes no image), where mounts, privileges and namespaces mean nothing.
    pub image: Option<String>,
    /// Arguments after the image, or the host's program and its arguments; empty runs the image's
    /// entrypoint as it is (Magnum's images read their configuration from the files mounted into them).
    pub args: Vec<String>,
    /// The rest of the command line, from a file: see [`ArgsFrom`].
    pub args_from: Option<ArgsFrom>,
    /// A `KEY=value` file whose variables the container gets.
    pub env_file: Option<String>,
    pub mounts: Vec<Mount>,
    pub privileged: bool,
    pub host_network: bool,
    /// In the host's PID namespace (the kubelet sees the processes of the pods it runs).
    pub host_pid: bool,
    /// Units this one starts after, and wants.
    pub after: Vec<String>,
    /// `atomic install --set=KEY=VALUE` values for the image's system-container template; the other
    /// runtimes give every mount in full and ignore these.
    pub system_container_settings: Vec<String>,
    /// Key files Magnum's system-container image reads as its unprivileged user (the kubernetes-apiserver,
    /// -controller-manager and -scheduler images run as uid 996): atomic makes them that user's before each
    /// start. The other runtimes run the images as root and ignore this.
    pub system_container_user_files: Vec<String>,
    /// The files the component reads (its configuration, kubeconfigs), written after it is installed:
    /// `atomic install` copies the image's default files onto the host, which must not win.
    pub files: Vec<FileSpec>,
}

/// The unbraced `$var` of the systemd `EnvironmentFile` `file` after the unit's arguments: systemd splits
/// its value at blanks, as the shell of Magnum's images split the same variable of the same file, so a
/// component's sysconfig file stays the one place its command line is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ArgsFrom {
    pub file: String,
    pub var: String,
}

impl Component {
    pub fn unit(&self) -> String {
        format!("{}.service", self.name)
    }
}

/// Makes components run under systemd as `<name>.service`.
pub trait ComponentRuntime: std::fmt::Debug + Sync {
    /// What the runtime is, for messages (`podman`, `atomic system container`).
    fn describe(&self) -> &'static str;

    /// Installs `component` as `<name>.service`; whether that changed anything, including whether a unit
    /// file was written (systemd then needs a reload).
    fn install(&self, ctx: &Context, component: &Component) -> Result<Installed>;
}

/// What installing a component did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Installed {
    pub changed: bool,
    /// A unit file under `/etc/systemd/system` was written (systemd must reload).
    pub unit_written: bool,
}

/// The runtime for this node: by OS family, and on Debian by the container runtime the node has.
pub fn for_node(os: OsFamily, runtime: RuntimeKind) -> &'static dyn ComponentRuntime {
    match (os, runtime) {
        (OsFamily::FedoraAtomic, _) => &atomic::Atomic,
        (OsFamily::FedoraCoreos, _) => &units::Podman,
        (OsFamily::Debian, RuntimeKind::Docker) => &units::Docker,
        (OsFamily::Debian, RuntimeKind::Containerd) => &units::Ctr,
    }
}

/// Installs every component, writes its files, reloads systemd once if a unit changed and restarts the
/// components that changed and are running.
pub fn apply(ctx: &Context, runtime: &dyn ComponentRuntime, components: &[Component]) -> Result<()> {
    let mut restart = Vec::new();
    let mut reload = false;
    for component in components {
        let runtime = if component.image.is_some() { runtime } else { &units::HostProgram };
        let installed = runtime
            .install(ctx, component)
            .with_context(|| format!("installing {} as {}", component.unit(), runtime.describe()))?;
        reload |= installed.unit_written;
        let mut changed = installed.changed;
        for file in &component.files {
            changed |= ctx.host.write_file(file)? != Outcome::Unchanged;
        }
        if changed {
            restart.push(component.unit());
        }
    }
    if reload {
        ctx.host.systemd(Systemd::DaemonReload, None)?;
    }
    for unit in restart {
        ctx.host.systemd(Systemd::TryRestart, Some(&unit))?;
    }
    Ok(())
}
