//! Third-party programs the tests run for real, built from their Go modules and cached in the cache
//! directory of [`crate::debian_tree`]: the Kubernetes components (kube-apiserver,
//! kube-controller-manager, kube-scheduler, kubelet, kube-proxy, and kubectl) of the releases the tests
//! check Hearth against (`tests/kube/build-kubernetes`), the add-ons' flanneld, CNI plugins and
//! CoreDNS (`tests/kube/build-addons`), and openstack-cloud-controller-manager
//! (`tests/kube/build-cloud-provider`).
//!
//! An entry's name holds what was built and a hash of what decides its bytes (the script, its other
//! inputs, its arguments, the Go version), so changing any of them builds anew. Like a Debian tree, it is
//! built beside its final path while holding a lock file and renamed into place when complete; nothing
//! depends on the cache existing: a cold build of one Kubernetes release takes about ten minutes on two
//! cores (README has the measured figures).

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

/// The programs of one build: a Kubernetes release, the add-ons', or the cloud provider's.
#[derive(Clone, Debug)]
pub struct Programs {
    /// For people: `Kubernetes v1.34.4`.
    pub what: String,
    /// `v1.34.4`.
    pub version: String,
    /// The directory holding the programs.
    pub dir: PathBuf,
    /// Finding, or building, it.
    pub took: Duration,
    /// True when this call built it (a cold cache).
    pub built: bool,
}

impl Programs {
    /// The path of one of the programs.
    pub fn binary(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

fn kube_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("kube")
}

/// The programs of `version` (`v1.34.4`), building them first if they are not cached.
pub fn release(version: &str) -> Result<Programs> {
    let dir = kube_dir();
    cached(&Build {
        what: format!("Kubernetes {version}"),
        entry: format!("kubernetes-{version}"),
        script: dir.join("build-kubernetes"),
        inputs: Vec::new(),
        args: vec![version.to_string()],
        binaries: BINARIES,
        version: version.to_string(),
    })
}

/// The releases of the add-ons' programs the tests run: flannel, the CNI plugins (the last with
/// flannel's), CoreDNS.
pub const FLANNEL_VERSION: &str = "v0.28.10";
pub const CNI_VERSION: &str = "v0.9.1";
pub const COREDNS_VERSION: &str = "v1.14.7";

/// CoreDNS's image tag for [`COREDNS_VERSION`] (upstream tags its images without the `v`).
pub fn coredns_tag() -> &'static str {
    COREDNS_VERSION.trim_start_matches('v')
}
/// The add-ons' programs, as `build-addons` names them.
pub const ADDON_BINARIES: &[&str] = &["flanneld", "flannel", "bridge", "host-local", "loopback", "portmap", "coredns"];

/// flanneld, the CNI plugins and CoreDNS (`tests/kube/build-addons`), building them first if not cached.
pub fn addons() -> Result<Programs> {
    let dir = kube_dir();
    cached(&Build {
        what: format!("flannel {FLANNEL_VERSION}, the CNI plugins {CNI_VERSION} and CoreDNS {COREDNS_VERSION}"),
        entry: format!("addons-{FLANNEL_VERSION}-{CNI_VERSION}-{COREDNS_VERSION}"),
        script: dir.join("build-addons"),
        inputs: vec![dir.join("tencentcloud-vpc-stub/go.mod"), dir.join("tencentcloud-vpc-stub/v20170312/vpc.go")],
        args: [FLANNEL_VERSION, CNI_VERSION, COREDNS_VERSION].map(String::from).to_vec(),
        binaries: ADDON_BINARIES,
        version: FLANNEL_VERSION.to_string(),
    })
}

/// The openstack-cloud-controller-manager release the end-to-end clusters run (the one made for
/// [`CLUSTER_RELEASE`]'s minor).
pub const CLOUD_PROVIDER_VERSION: &str = "v1.34.1";

/// openstack-cloud-controller-manager (`tests/kube/build-cloud-provider`), building it first if not cached.
pub fn cloud_provider() -> Result<Programs> {
    cached(&Build {
        what: format!("openstack-cloud-controller-manager {CLOUD_PROVIDER_VERSION}"),
        entry: format!("cloud-provider-openstack-{CLOUD_PROVIDER_VERSION}"),
        script: kube_dir().join("build-cloud-provider"),
        inputs: Vec::new(),
        args: vec![CLOUD_PROVIDER_VERSION.to_string()],
        binaries: &["openstack-cloud-controller-manager"],
        version: CLOUD_PROVIDER_VERSION.to_string(),
    })
}

/// One cached build: what `script ARGS… OUT_DIR` makes.
struct Build {
    /// For messages: `Kubernetes v1.34.4`.
    what: String,
    /// The cache entry's readable part.
    entry: String,
    script: PathBuf,
    /// Files besides the script whose content decides the programs.
    inputs: Vec<PathBuf>,
    args: Vec<String>,
    binaries: &'static [&'static str],
    version: String,
}

fn cached(build: &Build) -> Result<Programs> {
    let started = Instant::now();
    let _in_process = IN_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let mut inputs = Vec::new();
    for file in std::iter::once(&build.script).chain(&build.inputs) {
        let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
        inputs.push(format!("{:016x}", fnv1a64(&text)));
    }
    let go = Command::new("go")
        .arg("version")
        .output()
        .context("running `go version`: the tests build third-party programs with Go (the machine's Go 1.26)")?;
    let key = format!(
        "layout={LAYOUT}\nargs={}\ngo={}\ninputs={}\n",
        build.args.join(" "),
        String::from_utf8_lossy(&go.stdout).trim(),
        inputs.join(" ")
    );
    let cache = cache_dir()?;
    let name = format!("{}-{:016x}", build.entry, fnv1a64(key.as_bytes()));
    let entry = cache.join(&name);
    let complete =
        |entry: &Path| build.binaries.iter().all(|b| entry.join(b).is_file()) && entry.join(".key").is_file();
    let found = |entry: PathBuf, built| Programs {
        what: build.what.clone(),
        version: build.version.clone(),
        dir: entry,
        took: started.elapsed(),
        built,
    };
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
    eprintln!("hearth-tests: building {} from Go modules into {} (once)", build.what, entry.display());
    let log = cache.join(format!("{name}.log"));
    if let Err(e) = run(build, &building, &log) {
        let _ = mounts::remove_tree(&building);
        return Err(e);
    }
    std::fs::write(building.join(".key"), key)?;
    std::fs::rename(&building, &entry)
        .with_context(|| format!("renaming {} to {}", building.display(), entry.display()))?;
    drop(lock);
    eprintln!("hearth-tests: built {} in {:.0} s", build.what, started.elapsed().as_secs_f64());
    Ok(found(entry, true))
}

fn run(build: &Build, out: &Path, log_path: &Path) -> Result<()> {
    let log = std::fs::File::create(log_path).with_context(|| format!("creating {}", log_path.display()))?;
    // `timeout` stops go and the compilers it starts if the module proxy stalls.
    let status = Command::new("timeout")
        .args(["--kill-after=30", &BUILD_TIMEOUT.as_secs().to_string()])
        .arg(&build.script)
        .args(&build.args)
        .arg(out)
        // Never a toolchain download: the machine's Go builds what the modules' go.mod files ask for.
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .with_context(|| format!("running {}", build.script.display()))?;
    if !status.success() {
        let text = std::fs::read_to_string(log_path).unwrap_or_default();
        bail!(
            "building {} failed ({status}); the end of {}:\n{}",
            build.what,
            log_path.display(),
            tail_text(&text, 4000)
        );
    }
    Ok(())
}

/// Every release of [`RELEASES`], built when absent.
pub fn releases() -> Result<Vec<Programs>> {
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
