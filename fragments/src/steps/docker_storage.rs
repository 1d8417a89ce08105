//! master part-006 / minion part-007 docker-storage: where the container runtime keeps its images and
//! containers, and the runtime's daemon config ([`super::runtime`]).
//!
//! | `runtime.storage_driver` | with a volume (`runtime.volume.size` > 0) | without |
//! |---|---|---|
//! | `overlay2` (default), `overlay` | the volume as xfs at the runtime's data directory (`/var/lib/docker` or `/var/lib/containerd`), in fstab by UUID ([`crate::volume`]) | the root filesystem |
//! | `devicemapper` (docker only) | the volume as LVM physical volume of VG `docker`, then docker-storage-setup's thin pool | docker-storage-setup's thin pool in the root VG |
//!
//! devicemapper is Magnum's: `/etc/sysconfig/docker-storage-setup` (`STORAGE_DRIVER=devicemapper`,
//! `GROWROOT=True`, `VG=docker` or `ROOT_SIZE=5GB`/`DATA_SIZE=95%FREE`), then `docker-storage-setup`, which
//! Fedora Atomic ships; it writes docker's storage options itself. Unlike Magnum, the physical volume and
//! the VG are made only when the disk is not already docker's, and the tool runs only while the thin pool
//! does not exist or its config changed.
//!
//! As Magnum did before putting the volume in place: the runtime stopped, docker-storage-setup disabled
//! where the node has it, the data directory on the root filesystem emptied (and the runtime started
//! again after, if it was running). Departures from Magnum: the volume is formatted only when it holds no xfs (Magnum
//! formatted it on every run), fstab holds one entry by UUID (Magnum appended `<device> … 0 0` per run),
//! and none of that preparation runs again once the volume is in place.
//! Magnum's Ironic branch (`ENABLE_CINDER=False`, `/dev/disk/by-label/ephemeral0`) could never run in
//! Stein (the key was never substituted) and is not carried over.
//!
//! After a config change the running daemon is restarted (`try-restart`: one that is not running is left
//! to the services step); a changed unit override is loaded with `daemon-reload` first.

use crate::config::NodeConfig;
use crate::host::{Cmd, FileSpec, Outcome, Systemd};
use crate::kube::RuntimeKind;
use crate::runtime::{self, StorageDriver};
use crate::step::{Context, Done};
use crate::systemd::{is_enabled, is_running, unit_text};
use crate::volume::{self, Device};
use anyhow::{bail, Context as _, Result};
use std::path::Path;
use std::time::Duration;

pub const STORAGE_SETUP_CONFIG: &str = "/etc/sysconfig/docker-storage-setup";
/// Fedora Atomic's unit that runs docker-storage-setup before docker.
pub const STORAGE_SETUP_UNIT: &str = "docker-storage-setup.service";
/// The volume group Magnum gives docker's volume, and the thin pool docker-storage-setup makes in it.
const DOCKER_VG: &str = "docker";
const THIN_POOL: &str = "docker-pool";
const WHAT: &str = "container storage";

/// What the step needs of the config: a runtime and driver it knows, the volume's Cinder id when it has a
/// size, and docker for devicemapper.
pub(super) fn check(config: &NodeConfig) -> Result<()> {
    let kind = RuntimeKind::for_node(config)?;
    if StorageDriver::of(config)? == StorageDriver::Devicemapper {
        needs_docker(kind)?;
    }
    volume_id(config).map(drop)
}

/// The Cinder volume of the runtime's storage, if it has one.
fn volume_id(config: &NodeConfig) -> Result<Option<&str>> {
    let volume = &config.runtime.volume;
    Ok(match (volume.size, volume.id.trim()) {
        (0, _) => None,
        (size, "") => bail!(
            "runtime.volume.size (DOCKER_VOLUME_SIZE) is {size} GB but runtime.volume.id (DOCKER_VOLUME) is empty: \
             the volume cannot be found without its Cinder id"
        ),
        (_, id) => Some(id),
    })
}

fn needs_docker(kind: RuntimeKind) -> Result<()> {
    if kind != RuntimeKind::Docker {
        bail!(
            "runtime.storage_driver (DOCKER_STORAGE_DRIVER) devicemapper needs the docker runtime (this node runs \
             {}): Magnum's devicemapper storage is docker's thin pool; use overlay2 with containerd",
            kind.name()
        );
    }
    Ok(())
}

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let config = ctx.config;
    check(config)?;
    let kind = RuntimeKind::for_node(config)?;
    let driver = StorageDriver::of(config)?;
    let volume_id = volume_id(config)?;

    if kind == RuntimeKind::Docker && driver != StorageDriver::Devicemapper {
        disable_storage_setup(ctx)?;
    }
    let stopped = match (driver, volume_id) {
        (StorageDriver::Devicemapper, _) => {
            devicemapper(ctx, kind, volume_id)?;
            false
        }
        (_, Some(id)) => overlay_on_volume(ctx, kind, id)?,
        // No volume: the runtime's data directory stays on the root filesystem.
        (_, None) => false,
    };

    let changes = runtime::configure(ctx, kind, driver)?;
    if changes.unit {
        ctx.host.systemd(Systemd::DaemonReload, None)?;
    }
    if stopped {
        ctx.host.systemd(Systemd::Start, Some(kind.unit()))?;
    } else if changes.config || changes.unit {
        ctx.host.systemd(Systemd::TryRestart, Some(kind.unit()))?;
    }
    Ok(Done::Applied)
}

/// The volume at the runtime's data directory. Returns whether a running runtime was stopped for it (and
/// is to be started again).
///
/// Until the volume is in place, as Magnum's `clear_docker_storage` did before formatting: the runtime is
/// stopped (it must not keep writing to what the mount is about to hide; docker-storage-setup is disabled
/// before, see [`disable_storage_setup`]), and what the runtime left in its data directory
/// on the root filesystem deleted (hidden under the mount it would only take the root's space). On a node
/// where the volume is in place none of this runs again.
fn overlay_on_volume(ctx: &Context, kind: RuntimeKind, volume_id: &str) -> Result<bool> {
    let data_dir = kind.data_dir();
    if volume::is_in_place(ctx, volume_id, data_dir)? {
        volume::prepare(ctx, volume_id, data_dir, 0o755, WHAT)?;
        return Ok(false);
    }
    let was_running = is_running(ctx, kind.unit())?;
    ctx.host
        .systemd(Systemd::Stop, Some(kind.unit()))
        .with_context(|| format!("stopping {} before mounting its volume over {data_dir}", kind.name()))?;
    if !volume::is_mounted(ctx, data_dir)? && has_entries(ctx, data_dir)? {
        let clear = Cmd::new("find")
            .args([data_dir, "-mindepth", "1", "-maxdepth", "1", "-exec", "rm", "-rf", "--"])
            .args(["{}", "+"]);
        ctx.host.run(&clear).with_context(|| format!("emptying {data_dir} before mounting its volume there"))?;
    }
    volume::prepare(ctx, volume_id, data_dir, 0o755, WHAT)?;
    Ok(was_running)
}

/// Fedora Atomic's docker-storage-setup, when the node has it, disabled (Magnum's `systemctl disable
/// docker-storage-setup`): Hearth decides docker's storage, and the tool would rewrite docker's storage
/// options at every boot. Done once: a disabled unit is left alone.
pub fn disable_storage_setup(ctx: &Context) -> Result<()> {
    if unit_text(ctx, STORAGE_SETUP_UNIT)?.is_some() && is_enabled(ctx, STORAGE_SETUP_UNIT)? {
        ctx.host.systemd(Systemd::Disable, Some(STORAGE_SETUP_UNIT)).context("disabling docker-storage-setup")?;
    }
    Ok(())
}

/// Whether a directory exists and holds anything.
fn has_entries(ctx: &Context, dir: &str) -> Result<bool> {
    let real = ctx.host.resolve(Path::new(dir))?;
    match std::fs::read_dir(&real) {
        Ok(mut entries) => Ok(entries.next().is_some()),
        Err(e) if matches!(e.kind(), std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory) => Ok(false),
        Err(e) => Err(e).with_context(|| format!("listing {dir}")),
    }
}

fn devicemapper(ctx: &Context, kind: RuntimeKind, volume_id: Option<&str>) -> Result<()> {
    needs_docker(kind)?;
    let mut setup =
        String::from("# Written by hearth-agent (docker-storage step).\nGROWROOT=True\nSTORAGE_DRIVER=devicemapper\n");
    match volume_id {
        Some(_) => setup.push_str(&format!("VG={DOCKER_VG}\n")),
        None => setup.push_str("ROOT_SIZE=5GB\nDATA_SIZE=95%FREE\n"),
    }
    // The config is written after the volume group is made: when it is there already, so is the VG.
    let configured = ctx.host.read_to_string(Path::new(STORAGE_SETUP_CONFIG))?.as_deref() == Some(setup.as_str());
    if let (Some(id), false) = (volume_id, configured) {
        let device = volume::wait_for_device(ctx, id, WHAT)?;
        ensure_volume_group(ctx, &device, id)?;
    }
    let written = ctx.host.write_file(&FileSpec::new(STORAGE_SETUP_CONFIG, setup, 0o644))?;
    if written != Outcome::Unchanged || thin_pool_exists(ctx)? == Some(false) {
        let tool = Cmd::new("docker-storage-setup").timeout(Duration::from_secs(600));
        ctx.host.run(&tool).context(
            "making docker's devicemapper thin pool with docker-storage-setup (Fedora Atomic's tool; other \
             systems use overlay2)",
        )?;
    }
    Ok(())
}

/// The disk as the only physical volume of VG `docker`, made only when it is not that already.
fn ensure_volume_group(ctx: &Context, device: &Device, id: &str) -> Result<()> {
    let path = device.path.display().to_string();
    let blkid = Cmd::new("blkid").args(["--probe", "--match-tag", "TYPE", "--output", "value"]).arg(&path).reads_only();
    let fstype = match ctx.host.run(&blkid) {
        Ok(out) => out.ran.then(|| out.stdout.trim().to_string()),
        // Exit status 2: nothing on the disk yet.
        Err(e) if volume::exit_code(&e) == Some(2) => Some(String::new()),
        Err(e) => return Err(e).with_context(|| format!("probing Cinder volume {id} ({WHAT})")),
    };
    let vg = match fstype.as_deref() {
        Some("LVM2_member") => {
            let pvs = Cmd::new("pvs").args(["--noheadings", "--options", "vg_name"]).arg(&path).reads_only();
            let out = ctx.host.run(&pvs).with_context(|| format!("reading the volume group of {path}"))?;
            Some(out.stdout.trim().to_string())
        }
        _ => None,
    };
    match vg.as_deref() {
        Some(DOCKER_VG) => return Ok(()),
        Some("") => {}
        Some(other) => bail!(
            "Cinder volume {id} ({WHAT}, {path}) belongs to volume group {other:?}, not {DOCKER_VG:?}: refusing to \
             take it over"
        ),
        None => {
            let pvcreate = Cmd::new("pvcreate").args(["-f", "-y"]).arg(&path);
            ctx.host.run(&pvcreate).with_context(|| format!("making Cinder volume {id} an LVM physical volume"))?;
        }
    }
    let vgcreate = Cmd::new("vgcreate").arg(DOCKER_VG).arg(&path);
    ctx.host.run(&vgcreate).with_context(|| format!("making volume group {DOCKER_VG} on Cinder volume {id}"))?;
    Ok(())
}

/// Whether docker-storage-setup's thin pool exists in any volume group; `None` where LVM cannot be asked.
fn thin_pool_exists(ctx: &Context) -> Result<Option<bool>> {
    let lvs = Cmd::new("lvs").args(["--noheadings", "--options", "lv_name"]).reads_only();
    let out = ctx.host.run(&lvs).context("listing LVM logical volumes")?;
    Ok(out.ran.then(|| out.stdout.lines().any(|l| l.trim() == THIN_POOL)))
}
