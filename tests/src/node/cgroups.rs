//! A node's own cgroup subtrees, for nodes that run containers (the kubelet's pods, containerd's tasks).
//!
//! systemd-nspawn gives a node read-only cgroup v1 hierarchies, so runc cannot make a container's cgroup
//! and the kubelet cannot make `kubepods`. Binding this machine's whole `/sys/fs/cgroup` instead would let
//! every node's systemd and kubelet act at the roots of this machine's hierarchies, on top of each other.
//! So each node gets a subtree of its own in every hierarchy, below the cgroup this test process is in
//! (so it stays inside whatever limits this machine's own sandbox has): `<hierarchy><our path>/hearth-<name>`.
//! systemd-nspawn is started inside those subtrees and shown them at `/sys/fs/cgroup/<hierarchy>`
//! through a tmpfs of bind mounts ([`NodeCgroups::view`]); its cgroup namespace then makes each the
//! node's root, as on a machine of its own. Everything is removed when the node is gone.

use crate::mounts::MountGuard;
use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where this machine mounts its cgroup hierarchies.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// One node's subtrees and the view of them the node gets; see the module documentation.
#[derive(Debug)]
pub struct NodeCgroups {
    /// The subtree in each hierarchy, made here.
    subtrees: Vec<PathBuf>,
    /// The binds of the view, then the view's tmpfs (dropped in that order).
    mounts: Vec<MountGuard>,
    view: PathBuf,
}

/// One line of `/proc/self/cgroup`: the hierarchy's directory under [`CGROUP_ROOT`] (`cpu`, `systemd`,
/// `unified`) and this process's path in it.
fn hierarchies(proc_self_cgroup: &str) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for line in proc_self_cgroup.lines().filter(|l| !l.trim().is_empty()) {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next(), fields.next().unwrap_or(""), fields.next().unwrap_or(""));
        let dir = match controllers {
            "" => "unified".to_string(),
            named => named.trim_start_matches("name=").to_string(),
        };
        found.push((dir, path.to_string()));
    }
    Ok(found)
}

impl NodeCgroups {
    /// Makes the subtrees of node `name` and the view of them in `view` (an empty directory).
    pub fn create(name: &str, view: &Path) -> Result<NodeCgroups> {
        if std::fs::metadata(CGROUP_ROOT).is_err() || Path::new(CGROUP_ROOT).join("cgroup.controllers").exists() {
            bail!(
                "nodes that run containers need this machine's cgroup v1 (or hybrid) hierarchies under {CGROUP_ROOT}; \
                 a cgroup v2-only machine is not supported by this fixture yet"
            );
        }
        let text = std::fs::read_to_string("/proc/self/cgroup").context("reading /proc/self/cgroup")?;
        let mut cgroups = NodeCgroups { subtrees: Vec::new(), mounts: Vec::new(), view: view.to_path_buf() };
        cgroups.mounts.push(MountGuard::mount(&["-t", "tmpfs", "-o", "mode=755", "hearth-cgroups"], view)?);
        for (dir, path) in hierarchies(&text)? {
            let hierarchy = Path::new(CGROUP_ROOT).join(&dir);
            if !hierarchy.is_dir() {
                bail!("this process is in cgroup hierarchy {dir:?}, which is not mounted at {}", hierarchy.display());
            }
            let parent = hierarchy.join(path.trim_start_matches('/'));
            let subtree = parent.join(format!("hearth-{name}"));
            std::fs::create_dir_all(&subtree).with_context(|| format!("creating {}", subtree.display()))?;
            cgroups.subtrees.push(subtree.clone());
            if dir == "cpuset" {
                // A new cpuset has no CPUs and no memory nodes: no task may join it until it has some.
                for file in ["cpuset.cpus", "cpuset.mems"] {
                    let value = std::fs::read_to_string(parent.join(file))?;
                    std::fs::write(subtree.join(file), value.trim())
                        .with_context(|| format!("writing {}", subtree.join(file).display()))?;
                }
            }
            let target = view.join(&dir);
            std::fs::create_dir_all(&target)?;
            cgroups.mounts.push(MountGuard::mount(&["--bind", &subtree.display().to_string()], &target)?);
        }
        // The binds go before the tmpfs under them.
        cgroups.mounts.reverse();
        Ok(cgroups)
    }

    /// The directory to show the node at `/sys/fs/cgroup`.
    pub fn view(&self) -> &Path {
        &self.view
    }

    /// The `cgroup.procs` files a process writes its pid into to be inside the node's subtrees.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.subtrees.iter().map(|s| s.join("cgroup.procs")).collect()
    }
}

/// Removes a cgroup directory and every cgroup below it (deepest first: only empty cgroups go).
fn remove_cgroup(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_cgroup(&entry.path())?;
        }
    }
    std::fs::remove_dir(dir)
}

impl Drop for NodeCgroups {
    fn drop(&mut self) {
        self.mounts.clear();
        // The node's processes are gone once systemd-nspawn has exited, but the kernel may take a moment
        // to release their cgroups.
        let deadline = Instant::now() + Duration::from_secs(10);
        for subtree in &self.subtrees {
            loop {
                match remove_cgroup(subtree) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if Instant::now() > deadline => {
                        eprintln!("hearth-tests: could not remove the node's cgroup {}: {e}", subtree.display());
                        break;
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(100)),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn hierarchies_of_a_hybrid_machine() {
        let text = "9:name=systemd:/\n4:memory:/process_api/6eff\n1:cpu,cpuacct:/\n0::/\n";
        let found = super::hierarchies(text).unwrap();
        assert_eq!(
            found,
            [
                ("systemd".to_string(), "/".to_string()),
                ("memory".into(), "/process_api/6eff".into()),
                ("cpu,cpuacct".into(), "/".into()),
                ("unified".into(), "/".into())
            ]
        );
    }
}
