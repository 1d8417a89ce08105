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
    same_bytes(path, contents).with_context(|| format!("reading {}", path.display()))
}

/// Whether the file holds exactly `contents`, read a block at a time: comparing the agent's own 6 MB
/// binary must not hold a second copy of it in memory.
fn same_bytes(path: &Path, contents: &[u8]) -> std::io::Result<bool> {
    use std::io::Read as _;
    let mut file = fs::File::open(path)?;
    let mut block = vec![0u8; 64 * 1024];
    let mut rest = contents;
    loop {
        let n = file.read(&mut block)?;
        if n == 0 {
            return Ok(rest.is_empty());
        }
        if n > rest.len() || block[..n] != rest[..n] {
            return Ok(false);
        }
        rest = &rest[n..];
    }
}

pub(super) fn dir_matches(path: &Path, mode: u32) -> Result<bool> {
    Ok(path.symlink_metadata().map(|m| m.is_dir() && mode_of(&m) == mode).unwrap_or(false))
}

/// `.<name>.hearth-<pid>`, the temp file of a write of `name` by process `pid`.
fn temp_name(name: &str, pid: u32) -> String {
    format!(".{name}.hearth-{pid}")
}

/// Removes the temp files that writes of `name` in `dir` left when their process died between creating
/// and renaming them (a killed agent): those of a pid that no longer runs. A live writer's, this
/// process's included, are left alone.
fn remove_orphaned_temps(dir: &Path, name: &str) {
    let prefix = format!(".{name}.hearth-");
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(pid) = file_name.to_str().and_then(|n| n.strip_prefix(&prefix)).and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists() {
            let _ = fs::remove_file(entry.path());
        }
    }
}

/// Temp file in the same directory, mode set before any byte is written, fsync, rename, fsync the
/// directory: a reader sees the old file or the new one, never a part, and a secret is never readable
/// by others even for a moment. Temp files of earlier writers that died are removed.
pub(super) fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<()> {
    let parent = path.parent().context("a file path has a parent")?;
    create_parents(parent)?;
    let name = path.file_name().context("a file path has a name")?.to_string_lossy();
    remove_orphaned_temps(parent, &name);
    let temp = parent.join(temp_name(&name, std::process::id()));
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
    remove_orphaned_temps(parent, &name);
    let temp = parent.join(temp_name(&name, std::process::id()));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_compared_block_by_block() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big");
        let contents: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        fs::write(&path, &contents).unwrap();
        assert!(same_bytes(&path, &contents).unwrap());
        let mut last_differs = contents.clone();
        *last_differs.last_mut().unwrap() ^= 1;
        assert!(!same_bytes(&path, &last_differs).unwrap());
        assert!(!same_bytes(&path, &contents[..contents.len() - 1]).unwrap());
        let mut longer = contents.clone();
        longer.push(0);
        assert!(!same_bytes(&path, &longer).unwrap());
        assert!(same_bytes(&dir.path().join("none"), b"").is_err());
    }

    #[test]
    fn a_write_removes_the_temp_files_of_dead_writers_only() {
        let dir = tempfile::tempdir().unwrap();
        let orphan = dir.path().join(temp_name("node.json", u32::MAX));
        let live = dir.path().join(temp_name("node.json", 1));
        let other = dir.path().join(temp_name("other.json", u32::MAX));
        for path in [&orphan, &live, &other] {
            fs::write(path, "left by a crash").unwrap();
        }
        write_atomic(&dir.path().join("node.json"), b"{}", 0o600).unwrap();
        assert!(!orphan.exists(), "a dead writer's temp file stays");
        assert!(live.exists() && other.exists(), "a live writer's, or another file's, temp file was removed");
        let names: Vec<String> =
            fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
    }
}
