//! A booted machine for tests that need a live system: systemd as PID 1, real units, real mounts and
//! block devices, its own network namespace. `systemd-nspawn -b` boots a root made of this machine's own
//! `/usr` (read-only; it holds systemd, containerd, dockerd, xfsprogs, lvm2 from Debian packages that
//! `.ci/run` installs) and a fresh `/etc`, `/var` and `/run` in a temporary directory, with
//! `--private-network` (only its own loopback). Loop devices the test made are bound into its `/dev`.
//!
//! Starting it, running commands inside and ending it are [`hearth_tests::nspawn`]'s, as for the
//! end-to-end nodes. Dropping the machine kills its PID 1, which ends every process in it and with its
//! mount namespace every mount made inside: nothing outlives the test. Needs root and `systemd-nspawn`
//! (Debian `systemd-container`).

#![allow(dead_code)]

use hearth_tests::nspawn::{console_tail, Booted};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");
/// Where the agent lives inside the machine (its /usr is read-only).
pub const AGENT_IN_MACHINE: &str = "/opt/hearth/hearth-agent";

#[derive(Debug)]
pub struct Machine {
    booted: Booted,
    dir: tempfile::TempDir,
    pub boot_time: Duration,
}

/// What a machine is booted with.
#[derive(Debug, Default)]
pub struct Options<'a> {
    /// Block devices of this machine to bind into the machine's `/dev` (loop devices).
    pub devices: Vec<PathBuf>,
    /// Extra `/etc/hosts` lines.
    pub hosts: &'a str,
}

impl Machine {
    pub fn boot(name: &str, options: &Options) -> Machine {
        assert_program("systemd-nspawn", "systemd-container");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        for sub in ["usr", "etc", "var/tmp", "run", "tmp", "root", "proc", "sys", "dev", "opt", "srv", "home"] {
            std::fs::create_dir_all(root.join(sub)).unwrap();
        }
        for link in ["bin", "sbin", "lib", "lib64"] {
            std::os::unix::fs::symlink(format!("usr/{link}"), root.join(link)).unwrap();
        }
        // The machine's /etc: what the programs need to run and log in, nothing of this machine's config.
        for file in ["os-release", "passwd", "group", "shadow", "gshadow", "ld.so.cache", "ld.so.conf", "nsswitch.conf"]
        {
            let from = Path::new("/etc").join(file);
            if from.exists() {
                std::fs::copy(&from, root.join("etc").join(file)).unwrap();
            }
        }
        // The dynamic linker's search path, and Debian's alternatives (`iptables` is one).
        for dir in ["ld.so.conf.d", "alternatives"] {
            let from = Path::new("/etc").join(dir);
            if from.is_dir() {
                hearth_tests::copy_tree(&from, &root.join("etc").join(dir)).unwrap();
            }
        }
        std::fs::write(root.join("etc/hostname"), format!("{name}\n")).unwrap();
        std::fs::write(root.join("etc/machine-id"), "").unwrap();
        std::fs::write(
            root.join("etc/hosts"),
            format!("127.0.0.1 localhost {name}\n::1 localhost ip6-localhost\n{}", options.hosts),
        )
        .unwrap();
        // The agent, in the machine's own tree.
        let agent = root.join(AGENT_IN_MACHINE.trim_start_matches('/'));
        std::fs::create_dir_all(agent.parent().unwrap()).unwrap();
        std::fs::copy(AGENT, &agent).unwrap();

        let mut command = Command::new("systemd-nspawn");
        command
            .arg("--directory")
            .arg(&root)
            .args(["--bind-ro=/usr", "--register=no", "--keep-unit", "--private-network", "--quiet"])
            .arg(format!("--machine={name}"));
        for device in &options.devices {
            command.arg(format!("--bind={}", device.display()));
        }
        command.arg("--boot");
        let started = Instant::now();
        let booted = Booted::start(command, &dir.path().join("console.log"))
            .unwrap_or_else(|e| panic!("booting the machine: {e:#}"));
        let mut machine = Machine { booted, dir, boot_time: Duration::ZERO };
        machine.wait_until_running();
        machine.boot_time = started.elapsed();
        machine
    }

    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    fn wait_until_running(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let out = self.run(&["systemctl", "is-system-running"]);
            let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if state == "running" || state == "degraded" {
                return;
            }
            assert!(Instant::now() < deadline, "the machine is {state:?} after 60 s:\n{}", self.console());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the machine printed on its console.
    pub fn console(&self) -> String {
        console_tail(&self.dir.path().join("console.log"))
    }

    /// Runs `argv` inside the machine (all its namespaces, root), with a plain environment.
    pub fn run(&self, argv: &[&str]) -> Output {
        self.command(argv).output().expect("running nsenter")
    }

    /// A command that runs `argv` inside the machine.
    pub fn command(&self, argv: &[&str]) -> Command {
        self.booted.command(argv)
    }

    /// Runs `argv` inside and panics with its output unless it succeeds; returns its stdout.
    pub fn ok(&self, argv: &[&str]) -> String {
        let out = self.run(argv);
        assert!(out.status.success(), "{argv:?} in the machine failed ({}):\n{}", out.status, text(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Writes a file into the machine's tree (not under /tmp, a tmpfs of its own once booted).
    pub fn write(&self, path: &str, contents: &str) {
        let real = self.root().join(path.trim_start_matches('/'));
        std::fs::create_dir_all(real.parent().unwrap()).unwrap();
        std::fs::write(real, contents).unwrap();
    }

    /// Reads a file of the machine (through its own mounts).
    pub fn read(&self, path: &str) -> String {
        self.ok(&["cat", path])
    }

    /// `hearth-agent run --config /etc/hearth/node.json ARGS` inside the machine.
    pub fn agent(&self, args: &[&str]) -> Output {
        let mut argv = vec![AGENT_IN_MACHINE, "run", "--config", "/etc/hearth/node.json"];
        argv.extend_from_slice(args);
        self.run(&argv)
    }

    /// Waits until `systemctl is-active UNIT` says `active`; returns how long it took.
    pub fn wait_active(&self, unit: &str, within: Duration) -> Duration {
        let started = Instant::now();
        loop {
            let state = String::from_utf8_lossy(&self.run(&["systemctl", "is-active", unit]).stdout).trim().to_string();
            if state == "active" {
                return started.elapsed();
            }
            if started.elapsed() > within || state == "failed" {
                let status = text(&self.run(&["journalctl", "--no-pager", "--lines=40", "--unit", unit]));
                panic!("{unit} is {state:?} after {:?}:\n{status}", started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A loop device over a sparse file, detached when dropped.
#[derive(Debug)]
pub struct LoopDevice {
    pub path: PathBuf,
    _file: tempfile::TempDir,
}

impl LoopDevice {
    pub fn new(size: &str) -> LoopDevice {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("disk.img");
        let out = Command::new("truncate").args(["-s", size]).arg(&image).output().unwrap();
        assert!(out.status.success(), "truncate: {}", text(&out));
        let out = Command::new("losetup").args(["--find", "--show"]).arg(&image).output().expect("running losetup");
        assert!(out.status.success(), "losetup --find --show: {}", text(&out));
        let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        LoopDevice { path, _file: dir }
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // A device still held by a mount that is going away is detached when it is released.
        let _ = Command::new("losetup").arg("--detach").arg(&self.path).output();
    }
}

pub fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn assert_program(program: &str, package: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(found, "{program} is missing: apt-get install {package} (.ci/run installs it)");
}
