//! Mounts made by tests (e.g. `/proc` inside a chroot), undone even when a test fails.
//!
//! Everything here shells out to `mount`/`umount` (util-linux): the workspace forbids `unsafe`, and the
//! commands report errors in words a person can act on.

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A mount that is undone when dropped (lazily if it is busy), so a failing test never leaves a mount
/// behind that would make removing its temporary directory walk into `/proc` or `/dev`.
#[derive(Debug)]
pub struct MountGuard {
    target: PathBuf,
}

impl MountGuard {
    /// `mount ARGS... TARGET`, e.g. `mount(&["-t", "proc", "proc"], tree/proc)` or
    /// `mount(&["--bind", "/dev"], tree/dev)`. The target directory must exist.
    pub fn mount(args: &[&str], target: &Path) -> Result<MountGuard> {
        let out = Command::new("mount").args(args).arg(target).output().context("running mount (util-linux)")?;
        if !out.status.success() {
            bail!(
                "mount {} {} failed ({}): {}",
                args.join(" "),
                target.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(MountGuard { target: target.to_path_buf() })
    }

    /// `mount -t proc proc ROOT/proc`.
    pub fn proc_in(root: &Path) -> Result<MountGuard> {
        let target = root.join("proc");
        std::fs::create_dir_all(&target).with_context(|| format!("creating {}", target.display()))?;
        MountGuard::mount(&["-t", "proc", "proc"], &target)
    }

    pub fn target(&self) -> &Path {
        &self.target
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = unmount(&self.target) {
            eprintln!("hearth-tests: could not unmount {}: {e:#}", self.target.display());
        }
    }
}

/// Unmounts `target`, lazily if a plain unmount fails (e.g. busy).
pub fn unmount(target: &Path) -> Result<()> {
    let plain = Command::new("umount").arg(target).output().context("running umount (util-linux)")?;
    if plain.status.success() {
        return Ok(());
    }
    let lazy = Command::new("umount").arg("-l").arg(target).output().context("running umount -l")?;
    if lazy.status.success() {
        return Ok(());
    }
    bail!(
        "umount {} failed: {}; umount -l: {}",
        target.display(),
        String::from_utf8_lossy(&plain.stderr).trim(),
        String::from_utf8_lossy(&lazy.stderr).trim()
    )
}

/// Every mount point at or below `dir`, deepest first (the order to unmount them in).
pub fn mounts_under(dir: &Path) -> Result<Vec<PathBuf>> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("reading /proc/self/mountinfo")?;
    let mut found: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(hearth_fragments::volume::unescape_mountinfo(field)))
        .filter(|mount_point| mount_point.starts_with(&dir))
        .collect();
    found.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    found.dedup();
    Ok(found)
}

/// Unmounts everything at or below `dir`; fails if anything is still mounted afterwards, so a caller can
/// refuse to delete the directory rather than recurse into a live `/proc` or `/dev`.
pub fn unmount_all_under(dir: &Path) -> Result<()> {
    for mount_point in mounts_under(dir)? {
        if let Err(e) = unmount(&mount_point) {
            eprintln!("hearth-tests: {e:#}");
        }
    }
    let left = mounts_under(dir)?;
    if !left.is_empty() {
        bail!("still mounted under {}: {left:?}", dir.display());
    }
    Ok(())
}

/// Removes `dir` and everything in it after unmounting whatever is mounted below it. A missing `dir` is
/// not an error.
pub fn remove_tree(dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    unmount_all_under(dir)?;
    std::fs::remove_dir_all(dir).with_context(|| format!("removing {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(hearth_fragments::volume::unescape_mountinfo("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(hearth_fragments::volume::unescape_mountinfo("/x\\134y\\011"), "/x\\y\t");
        assert_eq!(hearth_fragments::volume::unescape_mountinfo("/plain\\"), "/plain\\");
        assert_eq!(hearth_fragments::volume::unescape_mountinfo("/bad\\999"), "/bad\\999");
    }

    #[test]
    fn nothing_is_mounted_under_a_fresh_directory() {
        let dir = tempfile::tempdir().unwrap();
        assert!(mounts_under(dir.path()).unwrap().is_empty());
        assert!(!mounts_under(Path::new("/")).unwrap().is_empty());
    }
}
