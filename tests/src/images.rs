//! The container images the tests serve from their registry ([`crate::registry`]), made by
//! [`crate::oci`] from programs built here: what an operator's mirror of the upstream images holds.

use crate::oci::{Built, Entry, Image};
use anyhow::{bail, Context as _, Result};
use std::path::Path;
use std::process::Command;

/// The pod sandbox image (`pause`): `tests/kube/pause.c`, linked statically, as its entrypoint.
pub fn pause() -> Result<Built> {
    let dir = tempfile::tempdir()?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("kube/pause.c");
    let binary = dir.path().join("pause");
    let out = Command::new("gcc")
        .args(["-Os", "-static", "-s", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .context("running gcc (Debian packages gcc and libc6-dev; .ci/run installs them)")?;
    if !out.status.success() {
        bail!("gcc {} failed: {}", source.display(), String::from_utf8_lossy(&out.stderr));
    }
    let contents = std::fs::read(&binary)?;
    Image {
        entrypoint: vec!["/pause".into()],
        env: Vec::new(),
        layers: vec![vec![Entry::file("/pause", 0o755, contents)]],
    }
    .build()
}

/// Debian's static busybox (package busybox-static), with the applets the images' scripts use.
fn busybox(applets: &[&str]) -> Result<Vec<Entry>> {
    let contents = std::fs::read("/bin/busybox")
        .context("reading /bin/busybox (Debian package busybox-static; .ci/run installs it)")?;
    let mut entries = vec![Entry::Dir { path: "/bin".into() }, Entry::file("/bin/busybox", 0o755, contents)];
    entries.extend(applets.iter().map(|a| Entry::symlink(&format!("/bin/{a}"), "busybox")));
    Ok(entries)
}

/// This machine's iptables (nft backend: Debian's `xtables-nft-multi`, its libraries and its extensions),
/// as flanneld's `--ip-masq` and kube-proxy run it; read once per test process.
fn iptables() -> Result<Vec<Entry>> {
    static ENTRIES: std::sync::OnceLock<std::result::Result<Vec<Entry>, String>> = std::sync::OnceLock::new();
    ENTRIES.get_or_init(|| read_iptables().map_err(|e| format!("{e:#}"))).clone().map_err(|e| anyhow::anyhow!("{e}"))
}

fn read_iptables() -> Result<Vec<Entry>> {
    let multi = "/usr/sbin/xtables-nft-multi";
    let mut programs = vec![multi.to_string()];
    // The extensions have libraries of their own (`statistic`, which kube-proxy's rules use, needs libm).
    let extensions = Path::new("/usr/lib/x86_64-linux-gnu/xtables");
    for entry in std::fs::read_dir(extensions).with_context(|| format!("listing {}", extensions.display()))? {
        programs.push(entry?.path().display().to_string());
    }
    let mut files = programs.clone();
    for program in &programs {
        let ldd = Command::new("ldd").arg(program).output().context("running ldd")?;
        if !ldd.status.success() {
            bail!("ldd {program} failed (Debian package iptables; .ci/run installs it)");
        }
        for line in String::from_utf8_lossy(&ldd.stdout).lines() {
            // `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)` or `/lib64/ld-linux-x86-64.so.2 (0x…)`
            if let Some(path) = line.split_whitespace().find(|w| w.starts_with('/')) {
                files.push(path.to_string());
            }
        }
    }
    files.sort();
    files.dedup();
    let mut entries = Vec::new();
    let mut dirs: Vec<String> =
        files.iter().filter_map(|f| Path::new(f).parent().map(|p| p.display().to_string())).collect();
    dirs.sort();
    dirs.dedup();
    for dir in dirs {
        let mut path = String::new();
        for part in dir.trim_start_matches('/').split('/') {
            path.push('/');
            path.push_str(part);
            entries.push(Entry::Dir { path: path.clone() });
        }
    }
    for file in &files {
        // Through symlinks (`/lib64/ld-linux-x86-64.so.2`): the image gets the file itself at that name.
        let contents = std::fs::read(file).with_context(|| format!("reading {file}"))?;
        entries.push(Entry::file(file, 0o755, contents));
    }
    for name in ["iptables", "iptables-save", "iptables-restore", "ip6tables", "ip6tables-save", "ip6tables-restore"] {
        entries.push(Entry::symlink(&format!("/usr/sbin/{name}"), "xtables-nft-multi"));
    }
    Ok(dedup(entries))
}

/// The first of each path (directories repeat between the parts of an image).
fn dedup(entries: Vec<Entry>) -> Vec<Entry> {
    let mut seen = std::collections::HashSet::new();
    entries
        .into_iter()
        .filter(|e| {
            let path = match e {
                Entry::Dir { path } | Entry::File { path, .. } | Entry::Symlink { path, .. } => path.clone(),
            };
            seen.insert(path)
        })
        .collect()
}

const PATH_ENV: &str = "PATH=/usr/sbin:/usr/bin:/sbin:/bin:/opt/bin";

/// flannel's image as Hearth's manifest runs it: `/opt/bin/flanneld` (from `network`, the programs of
/// [`crate::kubernetes::addons`]), `cp` for its install-cni init container, iptables for `--ip-masq`.
pub fn flannel(network: &Path) -> Result<Built> {
    let mut entries = busybox(&["sh", "cp"])?;
    entries.extend(iptables()?);
    entries.push(Entry::Dir { path: "/opt".into() });
    entries.push(Entry::Dir { path: "/opt/bin".into() });
    entries.push(Entry::file("/opt/bin/flanneld", 0o755, std::fs::read(network.join("flanneld"))?));
    entries.push(Entry::Dir { path: "/run".into() });
    Image { entrypoint: vec!["/opt/bin/flanneld".into()], env: vec![PATH_ENV.into()], layers: vec![dedup(entries)] }
        .build()
}

/// flannel's CNI image as Hearth's manifest runs it: `sh` for its install script, which copies the CNI
/// plugins of `/opt/cni/bin` onto the node.
pub fn flannel_cni(network: &Path) -> Result<Built> {
    let mut entries = busybox(&["sh", "cp", "echo"])?;
    for dir in ["/opt", "/opt/cni", "/opt/cni/bin"] {
        entries.push(Entry::Dir { path: dir.into() });
    }
    for plugin in ["flannel", "bridge", "host-local", "loopback", "portmap"] {
        entries.push(Entry::file(&format!("/opt/cni/bin/{plugin}"), 0o755, std::fs::read(network.join(plugin))?));
    }
    Image { entrypoint: vec!["/bin/sh".into()], env: vec![PATH_ENV.into()], layers: vec![entries] }.build()
}

/// The smoke-test image: Debian's static busybox with the applets the tests' pods use (`httpd` to
/// answer, `nc` to ask, `nslookup` for DNS; its static `wget` crashes without glibc's NSS modules, so
/// it is left out).
pub fn busybox_image() -> Result<Built> {
    let applets = ["sh", "cat", "echo", "hostname", "httpd", "mkdir", "nc", "nslookup", "printf", "sleep"];
    Image { entrypoint: vec!["/bin/sh".into()], env: vec![PATH_ENV.into()], layers: vec![busybox(&applets)?] }.build()
}

/// CoreDNS's image as upstream publishes it: `/coredns` as its entrypoint (Hearth's manifest passes
/// `-conf`).
pub fn coredns(addons: &Path) -> Result<Built> {
    let entries = vec![Entry::file("/coredns", 0o755, std::fs::read(addons.join("coredns"))?)];
    Image { entrypoint: vec!["/coredns".into()], env: Vec::new(), layers: vec![entries] }.build()
}

/// openstack-cloud-controller-manager's image as upstream publishes it (`registry.k8s.io/provider-os/`):
/// the program at `/bin/openstack-cloud-controller-manager`, which Hearth's manifest runs as its command.
pub fn cloud_controller_manager(cloud_provider: &Path) -> Result<Built> {
    let name = "openstack-cloud-controller-manager";
    let entries = vec![Entry::file(&format!("/bin/{name}"), 0o755, std::fs::read(cloud_provider.join(name))?)];
    Image { entrypoint: vec![format!("/bin/{name}")], env: Vec::new(), layers: vec![entries] }.build()
}

/// A Kubernetes component's image as upstream publishes it (`registry.k8s.io/kube-apiserver`, …): the
/// program at `/usr/local/bin/<binary>`, which Hearth's unit runs as the container's command, and for
/// kube-proxy this machine's iptables with its libraries (upstream bases it on distroless-iptables).
pub fn kube_component(release: &Path, binary: &str) -> Result<Built> {
    let mut entries = Vec::new();
    if binary == "kube-proxy" {
        entries.extend(iptables()?);
        entries.push(Entry::Dir { path: "/run".into() });
    }
    for dir in ["/usr", "/usr/local", "/usr/local/bin"] {
        entries.push(Entry::Dir { path: dir.into() });
    }
    let program = format!("/usr/local/bin/{binary}");
    entries.push(Entry::file(&program, 0o755, std::fs::read(release.join(binary))?));
    Image { entrypoint: vec![program], env: vec![PATH_ENV.into()], layers: vec![dedup(entries)] }.build()
}
