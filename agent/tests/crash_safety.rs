//! Crash safety, by fault injection: the agent is killed (SIGKILL, by strace's `inject`) at each rename,
//! each fsync and each write of a rooted run of the quick-start minion, one trial per syscall; a rerun
//! without faults must then converge to exactly the tree a clean run writes (every path, mode and byte),
//! with no temp file (`.<name>.hearth-<pid>`) left anywhere and the run's `done` marker written.
//!
//! The quick-start example has TLS off, so every file is the same from run to run and a tree compares
//! byte for byte; the state files (`/var/lib/hearth`: timings, pids) are compared by name only.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");

/// State files whose contents differ from run to run by design (timings, pids).
const STATE_DIR: &str = "var/lib/hearth";

fn config() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node/quickstart-minion.yaml")
}

fn run_args(root: &Path) -> Vec<String> {
    ["run", "--config", config().to_str().unwrap(), "--root", root.to_str().unwrap(), "--os", "debian"]
        .map(String::from)
        .to_vec()
}

/// A fresh tree that looks like a Debian node to the agent.
fn node_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::write(dir.path().join("etc/hostname"), "k8s-demo-minion-0\n").unwrap();
    dir
}

fn clean_run(root: &Path) {
    let out = Command::new(AGENT).args(run_args(root)).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

/// Every entry under `root`: its mode, and its bytes (a symlink: its target; state files: nothing).
fn tree(root: &Path) -> BTreeMap<String, (u32, Vec<u8>)> {
    let mut entries = BTreeMap::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let name = path.strip_prefix(root).unwrap().display().to_string();
            let meta = path.symlink_metadata().unwrap();
            let bytes = if meta.is_dir() {
                dirs.push(path.clone());
                Vec::new()
            } else if meta.file_type().is_symlink() {
                std::fs::read_link(&path).unwrap().into_os_string().into_encoded_bytes()
            } else if name.starts_with(STATE_DIR) {
                Vec::new()
            } else {
                std::fs::read(&path).unwrap()
            };
            entries.insert(name, (meta.permissions().mode(), bytes));
        }
    }
    entries
}

/// Runs the agent under strace, killed at the `n`th call of any of `syscalls`.
fn run_killed_at(root: &Path, syscalls: &str, n: usize) -> ExitStatus {
    Command::new("strace")
        .args(["-f", "-o", "/dev/null", "-e", &format!("inject={syscalls}:signal=SIGKILL:when={n}")])
        .arg(AGENT)
        .args(run_args(root))
        .output()
        .expect("strace must be installed (.ci/run installs it)")
        .status
}

/// One sweep: a trial per call of `syscalls`, until a run is no longer killed. Returns the trials made.
fn sweep(syscalls: &str, reference: &BTreeMap<String, (u32, Vec<u8>)>) -> usize {
    for n in 1.. {
        let root = node_tree();
        let status = run_killed_at(root.path(), syscalls, n);
        if status.success() {
            assert!(n > 1, "no {syscalls} call was ever made: is strace's injection working?");
            return n - 1;
        }
        // strace ends as its tracee did: killed by SIGKILL (or a failed run when a child was the one killed).
        assert!(status.signal() == Some(9) || status.code() == Some(1), "trial {syscalls}#{n}: {status}");
        clean_run(root.path());
        let after = tree(root.path());
        let leftovers: Vec<&String> = after.keys().filter(|name| name.contains(".hearth-")).collect();
        assert!(leftovers.is_empty(), "trial {syscalls}#{n} left temp files: {leftovers:?}");
        assert!(after.contains_key(&format!("{STATE_DIR}/done")), "trial {syscalls}#{n}: the rerun did not finish");
        for (name, want) in reference {
            let got = after.get(name).unwrap_or_else(|| panic!("trial {syscalls}#{n}: {name} missing"));
            assert!(got == want, "trial {syscalls}#{n}: {name} differs (mode {:o} vs {:o})", got.0, want.0);
        }
        let extra: Vec<&String> = after.keys().filter(|name| !reference.contains_key(*name)).collect();
        assert!(extra.is_empty(), "trial {syscalls}#{n}: unexpected entries {extra:?}");
    }
    unreachable!()
}

#[test]
fn a_run_killed_at_any_rename_fsync_or_write_converges_on_the_rerun() {
    let clean = node_tree();
    clean_run(clean.path());
    let reference = tree(clean.path());
    let again = node_tree();
    clean_run(again.path());
    assert!(reference == tree(again.path()), "two clean runs must write the same tree for this test to mean anything");

    let mut trials = Vec::new();
    for syscalls in ["rename,renameat,renameat2", "fsync,fdatasync", "write,pwrite64,writev"] {
        trials.push((syscalls, sweep(syscalls, &reference)));
    }
    eprintln!("crash trials (killed at the nth call, then a rerun): {trials:?}");
}
