//! A real Debian bookworm root filesystem, built once with `debootstrap` and cached, for tests that run
//! Debian's own tools (`update-ca-certificates`, …) in a chroot.
//!
//! The cache lives in `$HEARTH_CACHE_DIR`, else `$XDG_CACHE_HOME/hearth`, else `$HOME/.cache/hearth`, in
//! a directory named after a hash of everything that decides the tree's content, so changing the package
//! list builds a new tree. A tree is built in a temporary directory next to its final place and renamed
//! into place only once complete, under a lock file, so concurrent test processes build it once and
//! nobody ever sees half a tree. Nothing depends on the cache existing: an absent tree is built.
//!
//! Tests must never modify the cached tree: they work on a copy ([`debian_tree_copy`], [`copy_tree`]).
//!
//! Besides this base tree, fixtures may cache trees of their own content ([`Variant`], [`variant_tree`]),
//! e.g. the bootable "cloud" tree of [`crate::node`]; each is cached, locked and renamed into place the
//! same way, under its own entry name.

use crate::mounts;
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Instant;

/// The Debian release of the tree.
pub const SUITE: &str = "bookworm";
/// debootstrap's `--variant`.
pub const VARIANT: &str = "minbase";
/// Packages added to the variant's (`--include`).
pub const INCLUDE: &[&str] = &["ca-certificates", "openssl"];
/// Where the packages come from when this machine's apt names no mirror for [`SUITE`].
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";

/// Where the packages come from: the mirror this machine's apt uses for [`SUITE`] (its deb822
/// `*.sources` or one-line `*.list` files), so the trees build wherever apt works; else
/// [`DEFAULT_MIRROR`].
pub fn mirror() -> String {
    static MIRROR: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    MIRROR.get_or_init(apt_mirror).clone()
}

/// [`mirror`], read from /etc/apt.
fn apt_mirror() -> String {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir("/etc/apt/sources.list.d").into_iter().flatten().flatten().map(|e| e.path()).collect();
    files.sort();
    let mut texts: Vec<(PathBuf, String)> =
        files.into_iter().filter_map(|p| std::fs::read_to_string(&p).ok().map(|t| (p, t))).collect();
    if let Ok(text) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(("/etc/apt/sources.list".into(), text));
    }
    texts
        .iter()
        .find_map(|(path, text)| match path.extension().and_then(|e| e.to_str()) {
            Some("sources") => mirror_in_deb822(text),
            Some("list") => mirror_in_one_line(text),
            _ => None,
        })
        .unwrap_or_else(|| DEFAULT_MIRROR.to_string())
}

/// The first `URIs:` of a `Types: deb` stanza whose `Suites:` has [`SUITE`].
fn mirror_in_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(':').map(str::trim)).unwrap_or_default()
        };
        let serves = field("Types").split_whitespace().any(|t| t == "deb")
            && field("Suites").split_whitespace().any(|s| s == SUITE)
            && field("Enabled") != "no";
        serves.then(|| field("URIs").split_whitespace().next().map(str::to_string)).flatten()
    })
}

/// The URI of the first `deb [options] URI SUITE …` line.
fn mirror_in_one_line(text: &str) -> Option<String> {
    text.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        if words.next()? != "deb" {
            return None;
        }
        let mut uri = words.next()?;
        if uri.starts_with('[') {
            uri = words.by_ref().find(|w| !w.starts_with('[') && !w.ends_with(']') && !w.contains('='))?;
        }
        (words.next()? == SUITE).then(|| uri.to_string())
    })
}
/// Bump when the way a tree is made changes without the inputs above changing (e.g. the clean-up after
/// debootstrap), so old caches are not reused.
const LAYOUT: u32 = 1;
/// A generous bound on one debootstrap run (≈30–60 s on a good day), so a stalled mirror fails the test
/// rather than CI's whole time budget.
const DEBOOTSTRAP_TIMEOUT_SECS: u32 = 20 * 60;

/// Written into a build directory last, just before it is renamed into place.
const COMPLETE_MARKER: &str = "complete";
/// The tree itself, inside a cache entry (the entry also holds the marker and debootstrap's output).
const ROOT_DIR: &str = "root";

/// Serialises builders inside one test process; the lock file does it across processes.
static IN_PROCESS: Mutex<()> = Mutex::new(());

/// A cached tree of another content than the base tree: more packages, and a preparation step run on
/// the fresh tree before it is marked complete.
#[derive(Debug)]
pub struct Variant {
    /// In the entry name, instead of the variant (`debian-bookworm-<label>-…`); lower case, no spaces.
    pub label: &'static str,
    /// debootstrap's `--include` (on top of `--variant=minbase`). debootstrap resolves dependencies but
    /// not virtual packages: name the package that provides one.
    pub include: &'static [&'static str],
    /// Bump when `prepare` (or anything else that decides the content) changes, so old caches are not
    /// reused.
    pub revision: u32,
    /// Runs on the fresh tree's `/` after debootstrap and the common trim, before the tree is marked
    /// complete: a failure leaves nothing in the cache.
    pub prepare: fn(&Path) -> Result<()>,
}

/// The base tree, in the terms of a variant; its entry name is the one [`entry_name`] has always given.
#[derive(Debug, Clone, Copy)]
enum Flavour<'a> {
    Base,
    Variant(&'a Variant),
}

impl Flavour<'_> {
    fn include(&self) -> &[&str] {
        match self {
            Flavour::Base => INCLUDE,
            Flavour::Variant(variant) => variant.include,
        }
    }

    fn entry_name(&self) -> String {
        let mut include: Vec<&str> = self.include().to_vec();
        include.sort_unstable();
        let mut key = format!(
            "layout={LAYOUT}\nsuite={SUITE}\nvariant={VARIANT}\ninclude={}\nmirror={}\narch={}\n",
            include.join(","),
            mirror(),
            std::env::consts::ARCH
        );
        let label = match self {
            Flavour::Base => VARIANT,
            Flavour::Variant(variant) => {
                key.push_str(&format!("label={}\nrevision={}\n", variant.label, variant.revision));
                variant.label
            }
        };
        format!("debian-{SUITE}-{label}-{}-{:016x}", std::env::consts::ARCH, fnv1a64(key.as_bytes()))
    }
}

/// The path of the cached Debian tree (its `/`), building it first if it is not cached yet.
///
/// Needs root and `debootstrap` (`.ci/run` installs it). Never write into the returned tree: copy it.
pub fn debian_tree() -> Result<PathBuf> {
    cached_tree(Flavour::Base)
}

/// The path of `variant`'s cached tree (its `/`), building it first if it is not cached yet; the same
/// needs and rules as [`debian_tree`].
pub fn variant_tree(variant: &Variant) -> Result<PathBuf> {
    cached_tree(Flavour::Variant(variant))
}

fn cached_tree(flavour: Flavour) -> Result<PathBuf> {
    let _in_process = IN_PROCESS.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    let cache = cache_dir()?;
    let name = flavour.entry_name();
    let entry = cache.join(&name);
    if entry.join(COMPLETE_MARKER).is_file() {
        remove_leftovers_if_idle(&cache, &name);
        return Ok(entry.join(ROOT_DIR));
    }

    let debootstrap = preflight()?;
    std::fs::create_dir_all(&cache).with_context(|| format!("creating the cache directory {}", cache.display()))?;
    let lock = lock_file(&cache.join(format!("{name}.lock")))?;

    // Someone else may have built it while we waited for the lock.
    if entry.join(COMPLETE_MARKER).is_file() {
        return Ok(entry.join(ROOT_DIR));
    }
    remove_leftovers(&cache, &name)?;

    let building = cache.join(format!("{name}.tmp-{}", std::process::id()));
    let result = build(&debootstrap, &building, flavour);
    if let Err(e) = result {
        if let Err(cleanup) = mounts::remove_tree(&building) {
            eprintln!("hearth-tests: could not clean up {}: {cleanup:#}", building.display());
        }
        return Err(e);
    }
    std::fs::rename(&building, &entry)
        .with_context(|| format!("renaming {} to {}", building.display(), entry.display()))?;
    drop(lock);
    Ok(entry.join(ROOT_DIR))
}

/// A private copy of the cached Debian tree in a temporary directory, removed (after unmounting anything
/// a test left mounted in it) when dropped.
#[derive(Debug)]
pub struct TreeCopy {
    root: PathBuf,
    dir: Option<tempfile::TempDir>,
}

impl TreeCopy {
    /// The copy's `/`.
    pub fn path(&self) -> &Path {
        &self.root
    }
}

impl Drop for TreeCopy {
    fn drop(&mut self) {
        let Some(dir) = self.dir.take() else { return };
        if let Err(e) = mounts::unmount_all_under(dir.path()) {
            // Deleting through a live mount would delete the host's files: keep the directory instead.
            let kept = dir.keep();
            eprintln!("hearth-tests: keeping {} because {e:#}", kept.display());
        }
    }
}

/// Builds the cached tree if needed and copies it into a fresh temporary directory.
pub fn debian_tree_copy() -> Result<TreeCopy> {
    let cached = debian_tree()?;
    let dir = tempfile::Builder::new().prefix("hearth-debian-").tempdir().context("creating a temporary directory")?;
    let root = dir.path().join("root");
    copy_tree(&cached, &root)?;
    Ok(TreeCopy { root, dir: Some(dir) })
}

/// Copies the directory tree `src` to `dst` (created if absent, must be empty if present) keeping owners,
/// modes, links, device nodes and timestamps (`cp -a`).
pub fn copy_tree(src: &Path, dst: &Path) -> Result<()> {
    if !src.is_dir() {
        bail!("{} is not a directory", src.display());
    }
    std::fs::create_dir_all(dst).with_context(|| format!("creating {}", dst.display()))?;
    if std::fs::read_dir(dst)?.next().is_some() {
        bail!("refusing to copy into {}: it is not empty", dst.display());
    }
    let mut from = src.as_os_str().to_owned();
    from.push("/.");
    let out = Command::new("cp").arg("-a").arg("--reflink=auto").arg(&from).arg(dst).output().context("running cp")?;
    if !out.status.success() {
        bail!(
            "cp -a {} {} failed ({}): {}",
            src.display(),
            dst.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Opens and exclusively locks `path` (created if absent): the cache's guard across test processes.
/// The lock holds until the returned file is dropped.
pub fn lock_file(path: &Path) -> Result<File> {
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    lock.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(lock)
}

/// Where cached trees live: `$HEARTH_CACHE_DIR`, else `$XDG_CACHE_HOME/hearth`, else `$HOME/.cache/hearth`.
pub fn cache_dir() -> Result<PathBuf> {
    let non_empty = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty("HEARTH_CACHE_DIR") {
        return Ok(dir);
    }
    if let Some(dir) = non_empty("XDG_CACHE_HOME") {
        return Ok(dir.join("hearth"));
    }
    if let Some(home) = non_empty("HOME") {
        return Ok(home.join(".cache").join("hearth"));
    }
    bail!("no cache directory: set HEARTH_CACHE_DIR (or XDG_CACHE_HOME or HOME)")
}

/// The cache entry's name: readable, plus a hash of every input that decides the tree's content.
pub fn entry_name() -> String {
    Flavour::Base.entry_name()
}

/// [`entry_name`] for a variant's tree.
pub fn variant_entry_name(variant: &Variant) -> String {
    Flavour::Variant(variant).entry_name()
}

/// FNV-1a: stable across Rust versions and platforms, unlike `std`'s `DefaultHasher`.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |hash, &b| (hash ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// Checks what building needs, with a message that says what to do; returns debootstrap's path.
fn preflight() -> Result<PathBuf> {
    let Some(debootstrap) = find_program("debootstrap") else {
        bail!(
            "debootstrap is not installed, and the Debian test tree is not cached yet: run `.ci/run` \
             (it installs debootstrap and the other test tools) or `apt-get install debootstrap`"
        );
    };
    if !rustix::process::geteuid().is_root() {
        bail!("building the Debian test tree with debootstrap needs root (and so do the chroot tests)");
    }
    Ok(debootstrap)
}

/// Looks a program up in `$PATH` and the sbin directories (often missing from a non-login `$PATH`).
pub fn find_program(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| OsString::from("/usr/bin:/bin"));
    std::env::split_paths(&path)
        .chain(["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Removes what a killed builder left behind when nobody is building right now (best effort: the tree
/// is already there, so this never fails the caller).
fn remove_leftovers_if_idle(cache: &Path, name: &str) {
    let prefix = format!("{name}.tmp-");
    let has_leftovers = std::fs::read_dir(cache)
        .map(|items| items.flatten().any(|item| item.file_name().to_string_lossy().starts_with(&prefix)))
        .unwrap_or(false);
    if !has_leftovers {
        return;
    }
    let lock_path = cache.join(format!("{name}.lock"));
    let Ok(lock) = File::options().create(true).truncate(false).write(true).open(&lock_path) else { return };
    if lock.try_lock().is_ok() {
        let _ = remove_leftovers(cache, name);
    }
}

/// Removes build directories that a killed builder left behind (we hold the lock), and
/// an entry without its completion marker (which the rename protocol never produces, but a hand copy
/// might).
fn remove_leftovers(cache: &Path, name: &str) -> Result<()> {
    let entry = &cache.join(name);
    let prefix = format!("{name}.tmp-");
    for item in std::fs::read_dir(cache).with_context(|| format!("listing {}", cache.display()))? {
        let item = item?;
        if item.file_name().to_string_lossy().starts_with(&prefix) {
            // Best effort: a killed test's debootstrap may still be running in it (the lock died with the
            // test, not with its children); our own build uses a directory of its own anyway.
            eprintln!("hearth-tests: removing the unfinished build {}", item.path().display());
            if let Err(e) = mounts::remove_tree(&item.path()) {
                eprintln!("hearth-tests: could not remove {}: {e:#}", item.path().display());
            }
        }
    }
    if entry.exists() && !entry.join(COMPLETE_MARKER).is_file() {
        eprintln!("hearth-tests: removing {} (no completion marker)", entry.display());
        mounts::remove_tree(entry)?;
    }
    Ok(())
}

/// Runs debootstrap into `building/root`, trims (and prepares) the result and writes the completion
/// marker.
fn build(debootstrap: &Path, building: &Path, flavour: Flavour) -> Result<()> {
    let include = flavour.include().join(",");
    let root = building.join(ROOT_DIR);
    std::fs::create_dir_all(&root).with_context(|| format!("creating {}", root.display()))?;
    let log_path = building.join("debootstrap.out");
    let log = File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
    eprintln!(
        "hearth-tests: building the Debian {SUITE} test tree with debootstrap into {} (once; later runs reuse it)",
        building.display()
    );
    let started = Instant::now();
    // `timeout` signals debootstrap's whole process group (dpkg and friends too) if the mirror stalls.
    let status = Command::new("timeout")
        .args(["--kill-after=30", &DEBOOTSTRAP_TIMEOUT_SECS.to_string()])
        .arg(debootstrap)
        .arg(format!("--variant={VARIANT}"))
        .arg(format!("--include={include}"))
        .arg(SUITE)
        .arg(&root)
        .arg(mirror())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .status()
        .context("running timeout debootstrap")?;
    let seconds = started.elapsed().as_secs_f64();
    if !status.success() {
        let timed_out = if status.code() == Some(124) || status.code() == Some(137) {
            format!(" (timed out after {DEBOOTSTRAP_TIMEOUT_SECS} s)")
        } else {
            String::new()
        };
        bail!(
            "debootstrap {SUITE} failed{timed_out} after {seconds:.0} s ({status}).\n--- its output (tail) ---\n{}\n\
             --- debootstrap/debootstrap.log (tail) ---\n{}",
            tail(&log_path, 4000),
            tail(&root.join("debootstrap/debootstrap.log"), 4000)
        );
    }
    // debootstrap unmounts what it mounted; make sure, so nothing live ends up in the cache.
    mounts::unmount_all_under(building)?;
    trim(&root)?;
    if let Flavour::Variant(variant) = flavour {
        (variant.prepare)(&root).with_context(|| format!("preparing the {} tree", variant.label))?;
    }
    let description =
        format!("debootstrap --variant={VARIANT} --include={include} {SUITE} {}\nbuilt in {seconds:.1} s\n", mirror());
    std::fs::write(building.join(COMPLETE_MARKER), description)?;
    eprintln!("hearth-tests: built the Debian test tree in {seconds:.1} s");
    Ok(())
}

/// Drops what no test needs from a fresh tree, so every per-test copy is quicker.
fn trim(root: &Path) -> Result<()> {
    let archives = root.join("var/cache/apt/archives");
    if let Ok(items) = std::fs::read_dir(&archives) {
        for item in items {
            let path = item?.path();
            if path.extension().is_some_and(|e| e == "deb") {
                std::fs::remove_file(&path).with_context(|| format!("removing {}", path.display()))?;
            }
        }
    }
    Ok(())
}

/// The last `max` bytes of a file, or a note that it could not be read.
fn tail(path: &Path, max: u64) -> String {
    let read = || -> std::io::Result<String> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    read().unwrap_or_else(|e| format!("({}: {e})", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mirror_is_the_one_apt_uses_for_the_suite() {
        let deb822 = "Types: deb-src\nURIs: http://src.example/debian\nSuites: bookworm\n\n\
            Types: deb\n# a comment\nURIs: http://mirror.example/debian http://second.example/debian\n\
            Suites: bookworm bookworm-updates\nComponents: main\n\n\
            Types: deb\nURIs: http://security.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(mirror_in_deb822(deb822).as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(mirror_in_deb822("Types: deb\nURIs: http://x/debian\nSuites: trixie\n"), None);
        let one_line = "# deb http://old.example/debian bookworm main\n\
            deb [arch=amd64 signed-by=/usr/share/keyrings/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(mirror_in_one_line(one_line).as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(mirror_in_one_line("deb http://m.example/debian trixie main\n"), None);
    }

    #[test]
    fn the_entry_name_is_stable_and_names_its_inputs() {
        let name = entry_name();
        assert!(name.starts_with("debian-bookworm-minbase-"), "{name}");
        assert_eq!(name, entry_name());
        // FNV-1a's published test vectors.
        assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }

    #[test]
    fn variants_have_names_of_their_own_and_the_base_name_did_not_move() {
        // The base tree's name from before variants existed: existing caches stay valid.
        if std::env::consts::ARCH == "x86_64" {
            assert_eq!(entry_name(), "debian-bookworm-minbase-x86_64-0bd6391301d26063");
        }
        fn nothing(_: &Path) -> Result<()> {
            Ok(())
        }
        let one = Variant { label: "extra", include: &["openssl", "ca-certificates"], revision: 1, prepare: nothing };
        let two = Variant { revision: 2, ..one };
        let name = variant_entry_name(&one);
        assert!(name.starts_with("debian-bookworm-extra-"), "{name}");
        assert_ne!(name, entry_name(), "same packages, but a variant is prepared: another tree");
        assert_ne!(name, variant_entry_name(&two), "a new revision is a new tree");
    }

    #[test]
    fn copy_tree_keeps_links_and_modes_and_refuses_a_full_destination() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        std::fs::create_dir_all(src.join("etc")).unwrap();
        std::fs::write(src.join("etc/file"), "x").unwrap();
        std::fs::set_permissions(src.join("etc/file"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::os::unix::fs::symlink("file", src.join("etc/link")).unwrap();
        let dst = dir.path().join("dst");
        copy_tree(&src, &dst).unwrap();
        assert_eq!(std::fs::read_to_string(dst.join("etc/link")).unwrap(), "x");
        assert!(std::fs::symlink_metadata(dst.join("etc/link")).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::metadata(dst.join("etc/file")).unwrap().permissions().mode() & 0o777, 0o640);
        assert!(copy_tree(&src, &dst).is_err());
    }

    /// Builds (or reuses) the real tree: the first run in a fresh cache takes about a minute.
    #[test]
    fn the_cached_tree_is_bookworm_with_the_tools_and_copies_do_not_touch_it() {
        let started = Instant::now();
        let cached = debian_tree().unwrap();
        eprintln!("debian_tree() took {:.1} s", started.elapsed().as_secs_f64());
        let os_release = std::fs::read_to_string(cached.join("etc/os-release")).unwrap();
        assert!(os_release.contains("VERSION_CODENAME=bookworm"), "{os_release}");
        for tool in ["usr/sbin/update-ca-certificates", "usr/bin/openssl", "usr/bin/c_rehash"] {
            assert!(cached.join(tool).is_file(), "{tool} missing from {}", cached.display());
        }
        assert!(cached.parent().unwrap().join(COMPLETE_MARKER).is_file());

        let started = Instant::now();
        let copy = debian_tree_copy().unwrap();
        eprintln!("copying the tree took {:.1} s", started.elapsed().as_secs_f64());
        std::fs::write(copy.path().join("etc/hostname"), "changed-by-a-test\n").unwrap();
        assert_ne!(std::fs::read(cached.join("etc/hostname")).ok(), Some(b"changed-by-a-test\n".to_vec()));
        let dir = copy.path().parent().unwrap().to_path_buf();
        drop(copy);
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
}
