//! Python virtual environments for fixtures that are Python programs (Heat, Keystone) or ship through
//! PyPI (kubectl), installed once with pip and cached in the cache directory of [`crate::debian_tree`].
//!
//! Unlike the Debian tree, a venv cannot be built elsewhere and renamed into place: pip writes the
//! venv's absolute path into the `#!` line of every script it installs. So a venv is built at its final
//! path while holding a lock file, and counts as built only once its completion marker exists; a
//! directory without the marker (a killed build) is removed and built again. The entry's name holds a
//! hash of the requirements and the interpreter, so changing either builds a new venv. Nothing depends
//! on the cache existing: an absent venv is built (about a minute for Keystone, which compiles uwsgi).

use crate::debian_tree::{cache_dir, lock_file};
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Bump when the way a venv is made changes without its inputs changing.
const LAYOUT: u32 = 1;
const COMPLETE_MARKER: &str = ".hearth-complete";
/// A generous bound on one pip run, so a stalled index fails the test rather than CI's whole budget.
const PIP_TIMEOUT_SECS: u32 = 20 * 60;

static IN_PROCESS: Mutex<()> = Mutex::new(());

/// The interpreter venvs are made from: Debian's (what CI installs python3-venv for), else `python3`.
fn base_python() -> PathBuf {
    let debian = PathBuf::from("/usr/bin/python3");
    if debian.is_file() {
        debian
    } else {
        PathBuf::from("python3")
    }
}

/// A ready venv: its root, and how getting it went (for fixtures that report their start-up).
#[derive(Debug, Clone)]
pub struct Venv {
    pub root: PathBuf,
    /// Finding, or building, it.
    pub took: Duration,
    /// True when this call built it (a cold cache).
    pub built: bool,
}

impl Venv {
    pub fn python(&self) -> PathBuf {
        self.root.join("bin/python")
    }
}

/// The path of a cached venv with `requirements` (pip requirement specifiers, pinned), building it
/// first if needed. `name` makes the directory readable (`heat`, `keystone`, `kubectl`).
pub fn cached_venv(name: &str, requirements: &[&str]) -> Result<PathBuf> {
    Ok(venv(name, requirements)?.root)
}

/// [`cached_venv`], saying how long it took and whether it was built.
pub fn venv(name: &str, requirements: &[&str]) -> Result<Venv> {
    let started = Instant::now();
    let found = |root: PathBuf| Ok(Venv { root, took: started.elapsed(), built: false });
    let _in_process = IN_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let python = base_python();
    let version = Command::new(&python)
        .args(["-c", "import sys; print(sys.version)"])
        .output()
        .with_context(|| format!("running {} (install python3 and python3-venv: see .ci/run)", python.display()))?;
    let mut sorted = requirements.to_vec();
    sorted.sort_unstable();
    let key = format!(
        "layout={LAYOUT}\npython={}\nversion={}\nrequirements={}\n",
        python.display(),
        String::from_utf8_lossy(&version.stdout).trim(),
        sorted.join(" ")
    );
    let cache = cache_dir()?;
    let entry = cache.join(format!("venv-{name}-{:016x}", fnv1a64(key.as_bytes())));
    if entry.join(COMPLETE_MARKER).is_file() {
        return found(entry);
    }

    std::fs::create_dir_all(&cache).with_context(|| format!("creating the cache directory {}", cache.display()))?;
    let lock = lock_file(&entry.with_extension("lock"))?;
    if entry.join(COMPLETE_MARKER).is_file() {
        return found(entry);
    }
    if entry.exists() {
        eprintln!("hearth-tests: removing the unfinished venv {}", entry.display());
        std::fs::remove_dir_all(&entry).with_context(|| format!("removing {}", entry.display()))?;
    }
    let result = build(&python, &entry, requirements);
    if let Err(e) = result {
        let _ = std::fs::remove_dir_all(&entry);
        return Err(e);
    }
    std::fs::write(entry.join(COMPLETE_MARKER), key).context("marking the venv complete")?;
    drop(lock);
    Ok(Venv { root: entry, took: started.elapsed(), built: true })
}

fn build(python: &Path, entry: &Path, requirements: &[&str]) -> Result<()> {
    eprintln!(
        "hearth-tests: building a Python venv with {} in {} (once; later runs reuse it)",
        requirements.join(" "),
        entry.display()
    );
    let started = Instant::now();
    run(Command::new(python).arg("-m").arg("venv").arg(entry), &entry.with_extension("log"))
        .context("creating the venv (is python3-venv installed?)")?;
    // `timeout` stops pip and the compilers it starts if the index stalls.
    run(
        Command::new("timeout")
            .args(["--kill-after=30", &PIP_TIMEOUT_SECS.to_string()])
            .arg(entry.join("bin/pip"))
            .args(["install", "--disable-pip-version-check", "--no-input", "--quiet"])
            .args(requirements),
        &entry.with_extension("log"),
    )
    .with_context(|| format!("pip install {}", requirements.join(" ")))?;
    eprintln!("hearth-tests: built the venv in {:.1} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs `command` with its output in `log`; on failure the error holds the log's tail.
fn run(command: &mut Command, log_path: &Path) -> Result<()> {
    let log = File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    let status = command
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running {command:?}"))?;
    if !status.success() {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        bail!("{command:?} failed ({status}):\n{}", tail_text(&text, 4000));
    }
    Ok(())
}

/// The last `max` bytes of `text` (at a character boundary).
pub fn tail_text(text: &str, max: usize) -> String {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_string()
}

/// FNV-1a: stable across Rust versions, unlike `std`'s `DefaultHasher`.
pub(crate) fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_text_keeps_the_end_at_a_character_boundary() {
        assert_eq!(tail_text("abcdef", 3), "def");
        assert_eq!(tail_text("ab", 10), "ab");
        // "é" is two bytes: a cut inside it moves forward.
        assert_eq!(tail_text("xé", 1), "");
        assert_eq!(tail_text("xéy", 3), "éy");
    }
}
