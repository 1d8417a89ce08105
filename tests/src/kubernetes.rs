//! The real Kubernetes components (kube-apiserver, kube-controller-manager, kube-scheduler, kubelet,
//! kube-proxy) of the releases the tests check Hearth against, built from `k8s.io/kubernetes`'s Go module
//! by `tests/kube/build-kubernetes` and cached in the cache directory of [`crate::debian_tree`].
//!
//! An entry's name holds the release and a hash of what decides its bytes (the build script, the Go
//! version), so changing either builds anew. Like a Debian tree, it is built beside its final path while
//! holding a lock file and renamed into place when complete; nothing depends on the cache existing: a cold
//! build of one release takes about 20 minutes on two cores (README has the measured figures).

use crate::debian_tree::{cache_dir, lock_file};
use crate::mounts;
use crate::venv::{fnv1a64, tail_text};
use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The releases the tests run: the one the end-to-end tier's clusters use first, then the newest the Go
/// module proxy serves.
pub const RELEASES: &[&str] = &["v1.34.4", "v1.37.2"];

/// The release the clusters of the end-to-end tier run.
pub const CLUSTER_RELEASE: &str = RELEASES[0];

/// The programs of one release, as `build-kubernetes` names them.
pub const BINARIES: &[&str] =
    &["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy", "kubectl"];

/// Bump when the way an entry is made changes without its inputs changing.
const LAYOUT: u32 = 1;
/// A generous bound on one cold build, so a stalled module download fails the test rather than CI.
const BUILD_TIMEOUT: Duration = Duration::from_secs(80 * 60);

static IN_PROCESS: Mutex<()> = Mutex::new(());

/// One release's programs.
#[derive(Clone, Debug)]
pub struct Release {
    /// `v1.34.4`.
    pub version: String,
    /// The directory holding [`BINARIES`].
    pub dir: PathBuf,
    /// Finding, or building, it.
    pub took: Duration,
    /// True when this call built it (a cold cache).
    pub built: bool,
}

impl Release {
    /// The path of one program of the release.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The minor number (`34` for `v1.34.4`).
    pub fn minor(&self) -> u32 {
        minor(&self.version)
    }
}

fn minor(version: &str) -> u32 {
    version.trim_start_matches('v').split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0)
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kube/build-kubernetes")
}

/// The programs of `version` (`v1.34.4`), building them first if they are not cached.
pub fn release(version: &str) -> Result<Release> {
    let started = Instant::now();
    let _in_process = IN_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let script = script();
    let script_text =
        std::fs::read(&script).with_context(|| format!("reading the build script {}", script.display()))?;
    let go = Command::new("go")
        .arg("version")
        .output()
        .context("running `go version`: the Kubernetes components are built with Go (the machine's Go 1.26)")?;
    let key = format!(
        "layout={LAYOUT}\nversion={version}\ngo={}\nscript={:016x}\n",
        String::from_utf8_lossy(&go.stdout).trim(),
        fnv1a64(&script_text)
    );
    let cache = cache_dir()?;
    let name = format!("kubernetes-{version}-{:016x}", fnv1a64(key.as_bytes()));
    let entry = cache.join(&name);
    let found = |entry: PathBuf, built| Release { version: version.into(), dir: entry, took: started.elapsed(), built };
    if complete(&entry) {
        return Ok(found(entry, false));
    }
    std::fs::create_dir_all(&cache).with_context(|| format!("creating the cache directory {}", cache.display()))?;
    let lock = lock_file(&cache.join(format!("{name}.lock")))?;
    if complete(&entry) {
        return Ok(found(entry, false));
    }
    let building = cache.join(format!("{name}.tmp"));
    if building.exists() {
        mounts::remove_tree(&building)?;
    }
    eprintln!("hearth-tests: building Kubernetes {version} from its Go modules into {} (once)", entry.display());
    let log = cache.join(format!("{name}.log"));
    let result = build(&script, version, &building, &log);
    if let Err(e) = result {
        let _ = mounts::remove_tree(&building);
        return Err(e);
    }
    std::fs::write(building.join(".key"), key)?;
    std::fs::rename(&building, &entry)
        .with_context(|| format!("renaming {} to {}", building.display(), entry.display()))?;
    drop(lock);
    eprintln!("hearth-tests: built Kubernetes {version} in {:.0} s", started.elapsed().as_secs_f64());
    Ok(found(entry, true))
}

fn complete(entry: &Path) -> bool {
    BINARIES.iter().all(|b| entry.join(b).is_file()) && entry.join(".key").is_file()
}

fn build(script: &Path, version: &str, out: &Path, log_path: &Path) -> Result<()> {
    let log = std::fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    // `timeout` stops go and the compilers it starts if the module proxy stalls.
    let status = Command::new("timeout")
        .args(["--kill-after=30", &BUILD_TIMEOUT.as_secs().to_string()])
        .arg(script)
        .arg(version)
        .arg(out)
        // Never a toolchain download: the machine's Go builds what the release's go.mod asks for.
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running {}", script.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        bail!(
            "building Kubernetes {version} failed ({status}); the end of {}:\n{}",
            log_path.display(),
            tail_text(&text, 4000)
        );
    }
    Ok(())
}

/// Every release of [`RELEASES`], built when absent.
pub fn releases() -> Result<Vec<Release>> {
    RELEASES.iter().map(|v| release(v)).collect()
}

/// What a program of a release says of itself with `--version` after `args` (the command line Hearth
/// writes): Ok with its output when it exits 0, else an error with its exit status and output. The
/// components parse every flag before they look at `--version`, so an unknown or removed flag fails here.
pub fn version_with_args(program: &Path, args: &[String]) -> Result<String> {
    let out = Command::new("timeout")
        .arg("60")
        .arg(program)
        .args(args)
        .arg("--version")
        .env_clear()
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {}", program.display()))?;
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        bail!(
            "{} {} --version exited with {}:\n{}",
            program.display(),
            args.join(" "),
            out.status,
            tail_text(&text, 3000)
        );
    }
    Ok(text.trim().to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn minors_of_release_names() {
        assert_eq!(super::minor("v1.34.4"), 34);
        assert_eq!(super::minor("1.37.2"), 37);
        assert_eq!(super::minor("nonsense"), 0);
    }
}
