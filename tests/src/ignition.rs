//! Debian's real Ignition: `ignition-validate`, and the `ignition` binary itself applying a config into
//! a directory instead of a booting machine's `/sysroot`.
//!
//! Ignition 2.14 (Debian `ignition`, which `.ci/run` installs) accepts config spec 3.0.0–3.3.0; 3.4.0
//! and later, and 2.x, are rejected. `ignition-validate` only warns about unknown keys (exit 0), so
//! [`validate`] treats any output at all as a failure.

use anyhow::{bail, Context, Result};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The validator Debian installs on `$PATH`.
pub const VALIDATE: &str = "/usr/bin/ignition-validate";
/// The real binary, where Debian keeps it for dracut (it runs in the initramfs on a real machine).
pub const IGNITION: &str = "/usr/lib/dracut/modules.d/30ignition/ignition";
/// Ignition's `files` stage relabels what it wrote with SELinux's `setfiles`, reading the policy type
/// from the root's `/etc/selinux/config`; the test root gets this line when it has no such file.
const SELINUX_CONFIG: &str = "SELINUXTYPE=targeted\n";
/// A stage of Ignition on a small config takes well under a second; a hang fails after this.
const STAGE_TIMEOUT_SECS: u32 = 120;

/// `ignition-validate` on the config; `Err` holds what it said (an error, or any warning).
pub fn validate(config_json: &str) -> Result<(), String> {
    if !Path::new(VALIDATE).is_file() {
        return Err(format!("{VALIDATE} is missing: run `.ci/run` (it installs Debian's ignition)"));
    }
    let dir = tempfile::tempdir().map_err(|e| format!("creating a temporary directory: {e}"))?;
    let path = dir.path().join("config.ign");
    std::fs::write(&path, config_json).map_err(|e| format!("writing {}: {e}", path.display()))?;
    let out = Command::new(VALIDATE)
        .arg(&path)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running {VALIDATE}: {e}"))?;
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let said = said.trim();
    if !out.status.success() {
        return Err(format!("ignition-validate failed ({}): {said}", out.status));
    }
    if !said.is_empty() {
        return Err(format!("ignition-validate warned: {said}"));
    }
    Ok(())
}

/// Runs the real `ignition` binary's `fetch-offline` then `files` stages on the config with `root` as
/// the target root (`-platform file`, no network), so a test can read back the files, directories,
/// links and systemd units Ignition would have written. Writes `root/etc/selinux/config` if absent (see
/// [`SELINUX_CONFIG`]) and puts a no-op `setfiles` first on Ignition's `$PATH`: there is no SELinux here.
pub fn apply(config_json: &str, root: &Path) -> Result<()> {
    if !Path::new(IGNITION).is_file() {
        bail!("{IGNITION} is missing: run `.ci/run` (it installs Debian's ignition)");
    }
    let root = std::path::absolute(root).with_context(|| format!("resolving {}", root.display()))?;
    let selinux = root.join("etc/selinux/config");
    if !selinux.exists() {
        std::fs::create_dir_all(selinux.parent().expect("has a parent"))
            .with_context(|| format!("creating {}", selinux.display()))?;
        let tmp = selinux.with_extension(format!("tmp-{}", std::process::id()));
        std::fs::write(&tmp, SELINUX_CONFIG).with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &selinux).with_context(|| format!("renaming {} into place", tmp.display()))?;
    }
    let work =
        tempfile::Builder::new().prefix("hearth-ignition-").tempdir().context("creating a temporary directory")?;
    let config = work.path().join("config.ign");
    std::fs::write(&config, config_json).with_context(|| format!("writing {}", config.display()))?;
    let bin = work.path().join("bin");
    std::fs::create_dir(&bin)?;
    let setfiles = bin.join("setfiles");
    std::fs::write(&setfiles, "#!/bin/sh\n# No SELinux on the test machine: nothing to relabel.\nexit 0\n")?;
    std::fs::set_permissions(&setfiles, std::fs::Permissions::from_mode(0o755))?;
    let path = std::env::join_paths(
        std::iter::once(bin.clone()).chain(std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())),
    )?;
    for stage in ["fetch-offline", "files"] {
        run_stage(stage, &config, &root, work.path(), &path)?;
    }
    Ok(())
}

fn run_stage(stage: &str, config: &Path, root: &Path, work: &Path, path: &std::ffi::OsStr) -> Result<()> {
    let flag = |name: &str| -> PathBuf { work.join(name) };
    let out = Command::new("timeout")
        .args(["--kill-after=10", &STAGE_TIMEOUT_SECS.to_string()])
        .arg(IGNITION)
        .args(["-platform", "file", "-stage", stage, "-log-to-stdout"])
        .arg("-root")
        .arg(root)
        .arg("-config-cache")
        .arg(flag("config-cache.json"))
        .arg("-state-file")
        .arg(flag("state.json"))
        .arg("-neednet")
        .arg(flag("neednet"))
        .env("IGNITION_CONFIG_FILE", config)
        .env("PATH", path)
        .current_dir(work)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {IGNITION} -stage {stage}"))?;
    if !out.status.success() {
        let log = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        let start = log.len().saturating_sub(4000);
        let start = (start..log.len()).find(|&i| log.is_char_boundary(i)).unwrap_or(log.len());
        bail!("ignition -stage {stage} -root {} failed ({}):\n{}", root.display(), out.status, &log[start..]);
    }
    Ok(())
}

/// The host directories a program run by [`run_in_root`] needs, bound read-only into the root: this
/// machine's programs and libraries (merged /usr), its CA certificates and its devices.
const HOST_DIRS: &[&str] = &["usr/bin", "usr/sbin", "usr/lib", "usr/lib64", "usr/share", "etc/ssl", "dev"];

/// Runs `program` (a path inside `root`) with `root` as `/`, as the booted machine would after
/// Ignition (or cloud-init's `write_files`) wrote it: in a mount namespace of its own (nothing leaks onto this machine), with this
/// machine's programs bound under `root/usr` (the files Ignition wrote under `usr/local` stay visible),
/// on this machine's network (loopback servers are reachable). Its exit status, stdout and stderr.
pub fn run_in_root(root: &Path, program: &str) -> Result<std::process::Output> {
    let root = std::path::absolute(root).with_context(|| format!("resolving {}", root.display()))?;
    for dir in HOST_DIRS {
        std::fs::create_dir_all(root.join(dir)).with_context(|| format!("creating {dir} in {}", root.display()))?;
    }
    std::fs::create_dir_all(root.join("run"))?;
    for link in ["bin", "sbin", "lib", "lib64"] {
        if !root.join(link).exists() {
            std::os::unix::fs::symlink(format!("usr/{link}"), root.join(link))?;
        }
    }
    let binds: String = HOST_DIRS
        .iter()
        .map(|dir| match *dir {
            // Device nodes stay writable (`/dev/null`); everything else the program cannot change.
            "dev" => format!("mount --rbind /{dir} \"$0\"/{dir} && "),
            _ => format!("mount --rbind /{dir} \"$0\"/{dir} && mount -o remount,bind,ro \"$0\"/{dir} && "),
        })
        .collect();
    let out = Command::new("timeout")
        .args(["--kill-after=10", &STAGE_TIMEOUT_SECS.to_string()])
        .args(["unshare", "--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!("{binds}exec chroot \"$0\" \"$1\""))
        .arg(&root)
        .arg(program)
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/usr/sbin")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program} in {}", root.display()))?;
    Ok(out)
}
