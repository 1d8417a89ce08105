//! Atomic, honest file operations on real paths (already resolved under the host's root).

use anyhow::{Context as _, Result};
use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

const DIR_MODE: u32 = 0o755;

fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.permissions().mode() & 0o7777
}

/// Whether `path` is a regular file with exactly these bytes and mode.
pub(super) fn file_matches(path: &Path, contents: &[u8], mode: u32) -> Result<bool> {
    let meta = match path.symlink_metadata() {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("inspecting {}", path.display())),
    };
    if !meta.is_file() || mode_of(&meta) != mode || meta.len() != contents.len() as u64 {
        return Ok(false);
    }
    Ok(fs::read(path).with_context(|| format!("reading {}", path.display()))? == contents)
}

pub(super) fn dir_matches(path: &Path, mode: u32) -> Result<bool> {
    Ok(path.symlink_metadata().map(|m| m.is_dir() && mode_of(&m) == mode).unwrap_or(false))
}

/// Temp file in the same directory, mode set before any byte is written, fsync, rename, fsync the
/// directory: a reader sees the old file or the new one, never a part, and a secret is never readable
/// by others even for a moment.
pub(super) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let parent = path.parent().context("a file path has a parent")?;
    create_parents(parent)?;
    let name = path.file_name().context("a file path has a name")?.to_string_lossy();
    let temp = parent.join(format!(".{name}.hearth-{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&temp)
            .with_context(|| format!("creating {}", temp.display()))?;
        // The umask may have narrowed the mode given to open(); set it exactly.
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&temp, path).with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
        sync_dir(parent)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result
}

pub(super) fn ensure_dir(path: &Path, mode: u32) -> Result<()> {
    create_parents(path)?;
    fs::set_permissions(path, Permissions::from_mode(mode))?;
    Ok(())
}

/// A new link under a temp name renamed over the old one, so the link never disappears.
pub(super) fn symlink_atomic(target: &Path, link: &Path) -> Result<()> {
    let parent = link.parent().context("a link path has a parent")?;
    create_parents(parent)?;
    let name = link.file_name().context("a link path has a name")?.to_string_lossy();
    let temp = parent.join(format!(".{name}.hearth-{}", std::process::id()));
    let _ = fs::remove_file(&temp);
    std::os::unix::fs::symlink(target, &temp)?;
    fs::rename(&temp, link)?;
    sync_dir(parent)
}

pub(super) fn sync_parent(path: &Path) -> Result<()> {
    path.parent().map(sync_dir).unwrap_or(Ok(()))
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).with_context(|| format!("syncing directory {}", dir.display()))
}

fn create_parents(dir: &Path) -> Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
        .with_context(|| format!("creating directory {}", dir.display()))
}

/// An atomic write for the agent's own state files, which are not step actions.
pub fn write_state_file(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    write_atomic(path, contents, mode)
}
