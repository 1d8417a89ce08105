//! Fedora Atomic: components as atomic system containers, as Magnum installed them
//! (`atomic install --system --system-package=no --storage ostree --name=<name> <image>`). atomic writes
//! `/etc/systemd/system/<name>.service` from the image's template; the image's entrypoint reads the files
//! the step writes (`/etc/kubernetes/apiserver`, `/etc/etcd/etcd.conf`, …).
//!
//! atomic has no "install or leave alone": a second `install` of the same name fails. Hearth records the
//! image each component was installed from (`/var/lib/hearth/components/<name>.image`, written only after
//! atomic succeeded) and installs when there is no record, rebases (`atomic containers update --rebase`)
//! when the image changed, and does nothing when it is the same. atomic cannot act on a root, so rooted
//! runs record its commands without running them.
//!
//! Magnum's kubernetes-apiserver, -controller-manager and -scheduler images run their daemon as uid 996,
//! gid 994 (Fedora Atomic's `kube` user; `process.user` of their `config.json.template`), while the certs
//! step writes keys root-only. Magnum made the whole certificate directory `kube:kube_etcd`; Hearth gives
//! exactly the keys a component reads to that user, mode unchanged, in a drop-in that runs before every
//! start (so a key the certs step renews is handed over again), and leaves the keys of other components alone.

use super::{Component, ComponentRuntime, Installed};
use crate::host::{Cmd, FileSpec, Outcome};
use crate::step::Context;
use anyhow::Result;
use std::path::PathBuf;
use std::time::Duration;

/// Where the image a component was installed from is recorded.
pub const RECORDS: &str = "/var/lib/hearth/components";

/// The user and group Magnum's kubernetes system containers run as.
pub const MAGNUM_KUBE_USER: &str = "996:994";

/// Pulling an image from a remote registry takes a while on a small VM.
const ATOMIC_TIMEOUT: Duration = Duration::from_secs(900);

#[derive(Debug)]
pub struct Atomic;

fn record_path(name: &str) -> PathBuf {
    PathBuf::from(format!("{RECORDS}/{name}.image"))
}

/// The `atomic install` command line of `component` from `image`.
pub fn install_command(component: &Component, image: &str) -> Cmd {
    Cmd::new("atomic")
        .args(["install", "--system", "--system-package=no", "--storage", "ostree"])
        .arg(format!("--name={}", component.name))
        .args(component.system_container_settings.iter().map(|s| format!("--set={s}")))
        .arg(image)
        .timeout(ATOMIC_TIMEOUT)
}

impl ComponentRuntime for Atomic {
    fn describe(&self) -> &'static str {
        "an atomic system container"
    }

    fn install(&self, ctx: &Context, component: &Component) -> Result<Installed> {
        let image = match &component.image {
            Some(image) if component.args_from.is_none() && component.args.is_empty() => image,
            _ => anyhow::bail!(
                "{} is not an image with its own entrypoint: atomic runs only such system containers",
                component.name
            ),
        };
        let record = record_path(&component.name);
        let installed = ctx.host.read_to_string(&record)?;
        let wanted = format!("{image}\n");
        let key_owner = key_owner_drop_in(ctx, component, image)?;
        let cmd = match installed.as_deref() {
            Some(image) if image == wanted => return Ok(key_owner),
            Some(_) => Cmd::new("atomic")
                .args(["containers", "update"])
                .arg(format!("--rebase={image}"))
                .arg(&component.name)
                .timeout(ATOMIC_TIMEOUT),
            None => install_command(component, image),
        };
        ctx.host.run(&cmd)?;
        ctx.host.write_file(&FileSpec::new(record, wanted, 0o644))?;
        // atomic wrote (or rewrote) the unit.
        Ok(Installed { changed: true, unit_written: true })
    }
}

/// The drop-in that hands the component's keys to its image's user (none when it reads none).
fn key_owner_drop_in(ctx: &Context, component: &Component, image: &str) -> Result<Installed> {
    let path = PathBuf::from(format!("/etc/systemd/system/{}.d/hearth-key-owner.conf", component.unit()));
    if component.system_container_user_files.is_empty() {
        let removed = ctx.host.remove_file(&path)? != Outcome::Unchanged;
        return Ok(Installed { changed: removed, unit_written: removed });
    }
    let text = format!(
        "# Written by hearth-agent: {} runs {} as uid {}, which must read these keys.\n[Service]\n\
         ExecStartPre=/usr/bin/chown {MAGNUM_KUBE_USER} {}\n",
        image,
        component.name,
        MAGNUM_KUBE_USER.split(':').next().unwrap_or_default(),
        component.system_container_user_files.join(" ")
    );
    let changed = ctx.host.write_file(&FileSpec::new(path, text, 0o644))? != Outcome::Unchanged;
    Ok(Installed { changed, unit_written: changed })
}
