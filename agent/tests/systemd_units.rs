//! Every systemd unit and drop-in the agent writes passes `systemd-analyze verify`.
//!
//! The agent runs for real (`run --root TMPDIR`) with the example configs, which set
//! a proxy so the proxy step writes its drop-ins (their certs step gets its certificates from a loopback
//! Keystone and Magnum, [`StandInCloud`]). Then every `*.service`/`*.timer`/… and every drop-in
//! `*.conf` under `TMPDIR/etc/systemd/system` is verified. `systemd-analyze` only warns about unknown keys
//! and bad values, so any output on stderr counts as a failure.
//!
//! systemd loads drop-ins only together with their unit, so a drop-in for a unit the agent does not
//! write (e.g. `docker.service.d/http-proxy.conf`, docker's unit comes from its package) is verified
//! with a minimal stand-in unit (`[Service]` `ExecStart=/bin/true`) in a scratch unit directory that
//! `SYSTEMD_UNIT_PATH` puts first, ahead of the host's vendor units (which provide targets such as
//! `sysinit.target`). The host's `/etc/systemd/system` is left out so an admin's drop-ins there cannot
//! make the test fail.

use hearth_tests::StandInCloud;
use std::path::{Path, PathBuf};
use std::process::Command;

const MINION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/node/minion.json");
const MASTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/node/master.json");

const DEBIAN_OS_RELEASE: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"
NAME=\"Debian GNU/Linux\"
VERSION_ID=\"12\"
VERSION=\"12 (bookworm)\"
VERSION_CODENAME=bookworm
ID=debian
HOME_URL=\"https://www.debian.org/\"
";

/// Unit types a unit file in `/etc/systemd/system` may have.
const UNIT_SUFFIXES: &[&str] =
    &["service", "timer", "socket", "path", "mount", "automount", "target", "slice", "scope", "swap"];

#[test]
fn minion_units_and_drop_ins_pass_systemd_analyze_verify() {
    check_example(MINION, "minion-0");
}

#[test]
fn master_units_and_drop_ins_pass_systemd_analyze_verify() {
    check_example(MASTER, "master-0");
}

/// The verifier itself can fail: a drop-in with an unknown key, a unit whose binary does not exist and a
/// `.conf` outside any drop-in directory are all reported.
#[test]
fn the_verifier_reports_broken_units_and_drop_ins() {
    let bogus_key = scratch_root(&[("etc/systemd/system/docker.service.d/broken.conf", "[Service]\nBogusKey=1\n")]);
    let err = verify_tree(bogus_key.path()).expect_err("a drop-in with an unknown key passed");
    assert!(err.contains("BogusKey"), "{err}");

    let no_binary = scratch_root(&[(
        "etc/systemd/system/hearth-test-missing.service",
        "[Service]\nExecStart=/nonexistent/hearth-test-binary\n",
    )]);
    let err = verify_tree(no_binary.path()).expect_err("a unit with a missing binary passed");
    assert!(err.contains("/nonexistent/hearth-test-binary"), "{err}");

    let stray = scratch_root(&[("etc/systemd/system/stray.conf", "[Service]\n")]);
    let err = verify_tree(stray.path()).expect_err("a stray .conf passed");
    assert!(err.contains("stray.conf"), "{err}");

    let good = scratch_root(&[
        ("etc/systemd/system/hearth-test.service", "[Service]\nExecStart=/bin/true\n"),
        ("etc/systemd/system/hearth-test.service.d/10-env.conf", "[Service]\nEnvironment=A=1\n"),
        ("etc/systemd/system/containerd.service.d/http-proxy.conf", "[Service]\nEnvironmentFile=/etc/x.env\n"),
    ]);
    let verified = verify_tree(good.path()).unwrap();
    assert_eq!(verified.units, vec!["hearth-test.service"]);
    assert_eq!(verified.drop_ins.len(), 2, "{verified:?}");
}

fn check_example(config: &str, hostname: &str) {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/os-release"), DEBIAN_OS_RELEASE).unwrap();
    std::fs::write(root.path().join("etc/hostname"), format!("{hostname}\n")).unwrap();
    // The kubelet a first run would have fetched (a rooted run downloads no programs): its unit's program.
    let kubelet = root.path().join("usr/local/bin/kubelet");
    std::fs::create_dir_all(kubelet.parent().unwrap()).unwrap();
    std::fs::write(&kubelet, "#!/bin/sh\n").unwrap();
    std::fs::set_permissions(&kubelet, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let mut aimed: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(config).unwrap()).unwrap();
    let _cloud = StandInCloud::for_config(&mut aimed);
    let work = tempfile::tempdir().unwrap();
    let aimed_path = work.path().join("node.json");
    std::fs::write(&aimed_path, aimed.to_string()).unwrap();

    let out = Command::new(env!("CARGO_BIN_EXE_hearth-agent"))
        .args(["run", "--config"])
        .arg(&aimed_path)
        .arg("--root")
        .arg(root.path())
        .env_remove("RUST_LOG")
        .output()
        .expect("running hearth-agent");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "hearth-agent run failed ({}):\n{stdout}\n{stderr}", out.status);

    let verified = verify_tree(root.path()).unwrap_or_else(|e| panic!("{config}:\n{e}"));
    println!("{config}: verified units {:?} and drop-ins {:?}", verified.units, verified.drop_ins);
    assert!(
        !verified.drop_ins.is_empty(),
        "the agent wrote no systemd drop-in for {config} (does the example still set a proxy?): nothing was verified"
    );
}

#[derive(Debug, Default)]
struct Verified {
    /// Unit files found in the tree, by name.
    units: Vec<String>,
    /// Drop-ins found in the tree, as `unit.d/name.conf`.
    drop_ins: Vec<String>,
}

/// Verifies every unit and drop-in under `root/etc/systemd/system`; the error holds every problem found.
fn verify_tree(root: &Path) -> Result<Verified, String> {
    let system = root.join("etc/systemd/system");
    let mut verified = Verified::default();
    if !system.is_dir() {
        return Ok(verified);
    }
    let mut problems = Vec::new();
    // Units to hand to systemd-analyze: the tree's own, then stand-ins for units only drop-ins name.
    let mut to_verify: Vec<String> = Vec::new();
    let mut stand_ins: Vec<String> = Vec::new();
    for path in files_under(&system) {
        let relative = path.strip_prefix(&system).unwrap().to_string_lossy().into_owned();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let parent = path.parent().unwrap();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        if meta.file_type().is_symlink() {
            // `*.wants/x.service` links that enable units: the unit they point at is verified itself.
            println!("not verified (symlink): {relative}");
            continue;
        }
        let suffix = name.rsplit_once('.').map(|(_, s)| s).unwrap_or("");
        if parent == system && UNIT_SUFFIXES.contains(&suffix) {
            verified.units.push(name.clone());
            to_verify.push(name);
        } else if suffix == "conf" {
            let dir = parent.file_name().unwrap().to_string_lossy().into_owned();
            match dir.strip_suffix(".d").filter(|unit| parent.parent() == Some(&system) && is_unit_name(unit)) {
                Some(unit) => {
                    verified.drop_ins.push(relative);
                    if !system.join(unit).is_file() && !stand_ins.iter().any(|u| u == unit) {
                        stand_ins.push(unit.to_string());
                    }
                }
                None => problems.push(format!("{relative}: a .conf outside any <unit>.d/ drop-in directory")),
            }
        } else if UNIT_SUFFIXES.contains(&suffix) {
            problems.push(format!("{relative}: a unit file outside /etc/systemd/system itself"));
        }
    }

    // A scratch unit directory: a copy of the tree's units and drop-ins plus the stand-ins.
    let scratch = tempfile::tempdir().unwrap();
    hearth_tests::copy_tree(&system, scratch.path()).map_err(|e| format!("{e:#}"))?;
    for unit in &stand_ins {
        match stand_in(unit) {
            Some(text) => {
                std::fs::write(scratch.path().join(unit), text).unwrap();
                to_verify.push(unit.clone());
            }
            None => problems.push(format!("{unit}.d/: no stand-in unit for this type; extend stand_in()")),
        }
    }
    // The tree's own programs (the agent the agent-service step installs) are where its units say.
    let local_bin = root.join("usr/local/bin");
    let local_bin = local_bin.is_dir().then_some(local_bin.as_path());
    for unit in &to_verify {
        if let Err(e) = systemd_analyze_verify(scratch.path(), unit, local_bin) {
            problems.push(e);
        }
    }
    verified.units.sort();
    verified.drop_ins.sort();
    if problems.is_empty() {
        Ok(verified)
    } else {
        Err(problems.join("\n"))
    }
}

/// `systemd-analyze verify --man=no DIR/UNIT` with DIR first in the unit path, so the unit's drop-ins
/// in `DIR/UNIT.d/` are loaded. Fails on a non-zero exit and on any output on stderr (warnings included).
///
/// systemd-analyze checks that every `ExecStart=` program exists on this machine. With `local_bin` (a
/// tree's `/usr/local/bin`), it runs in a private mount namespace where that directory is bind-mounted
/// over `/usr/local/bin`, so a unit of the tree that runs a program the tree holds (`hearth-agent`) is
/// checked against it; the machine's own `/usr/local/bin` is untouched.
fn systemd_analyze_verify(dir: &Path, unit: &str, local_bin: Option<&Path>) -> Result<(), String> {
    let mut unit_path = dir.as_os_str().to_owned();
    for vendor in ["/usr/lib/systemd/system", "/lib/systemd/system"] {
        unit_path.push(":");
        unit_path.push(vendor);
    }
    let mut command = match local_bin {
        Some(bin) => {
            let mut c = Command::new("unshare");
            c.args(["--mount", "--propagation", "private", "--", "sh", "-c"])
                .arg("mount --bind \"$0\" /usr/local/bin && exec \"$@\"")
                .arg(bin)
                .arg("systemd-analyze");
            c
        }
        None => Command::new("systemd-analyze"),
    };
    let out = command
        .args(["verify", "--man=no", "--generators=no"])
        .arg(dir.join(unit))
        .env("SYSTEMD_UNIT_PATH", &unit_path)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env_remove("SYSTEMD_LOG_LEVEL")
        .output()
        .map_err(|e| format!("running systemd-analyze (apt-get install systemd, or run .ci/run): {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() && stderr.trim().is_empty() {
        return Ok(());
    }
    Err(format!("systemd-analyze verify {unit} ({}):\n{}{}", out.status, stderr, String::from_utf8_lossy(&out.stdout)))
}

/// A minimal unit of `unit`'s type, so its drop-ins can be loaded and checked.
fn stand_in(unit: &str) -> Option<&'static str> {
    match unit.rsplit_once('.')?.1 {
        "service" => Some("[Service]\nExecStart=/bin/true\n"),
        "target" | "slice" => Some("[Unit]\nDescription=stand-in\n"),
        "socket" => Some("[Socket]\nListenStream=/run/hearth-test-stand-in.sock\n"),
        _ => None,
    }
}

fn is_unit_name(name: &str) -> bool {
    name.rsplit_once('.').is_some_and(|(base, suffix)| !base.is_empty() && UNIT_SUFFIXES.contains(&suffix))
}

/// Every file and symlink below `dir` (symlinks are not followed), sorted.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(current) = pending.pop() {
        for entry in std::fs::read_dir(&current).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                pending.push(entry.path());
            } else {
                found.push(entry.path());
            }
        }
    }
    found.sort();
    found
}

/// A temporary root holding `files` (relative path, content).
fn scratch_root(files: &[(&str, &str)]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    for (path, text) in files {
        let path = root.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
    root
}
