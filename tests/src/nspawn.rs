//! One systemd-nspawn container with systemd as its PID 1, driven from outside: what every booted machine
//! of the tests shares (the agent's storage machine, the end-to-end nodes). The caller makes the tree and
//! the `systemd-nspawn --boot …` command; this starts it, finds its PID 1, runs commands inside with
//! `nsenter --target <PID 1> --all` and ends it. Dropping it kills its PID 1, which ends every process of
//! its PID namespace, and then systemd-nspawn.

use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// From starting systemd-nspawn to systemd running as the container's PID 1 (≈ 0.1 s idle).
const LEADER_TIMEOUT: Duration = Duration::from_secs(60);
/// After killing the PID 1, how long systemd-nspawn gets to notice and exit.
const KILL_GRACE: Duration = Duration::from_secs(10);
/// How often waits look again.
const POLL: Duration = Duration::from_millis(50);
/// How much of the console an error quotes.
const CONSOLE_TAIL: usize = 6000;
/// The PATH commands run with inside.
const PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A running container; see the module documentation.
#[derive(Debug)]
pub struct Booted {
    nspawn: Option<Child>,
    /// The container's PID 1 (systemd), as this machine numbers it.
    leader: u32,
    console: PathBuf,
    started: Instant,
}

impl Booted {
    /// Starts `nspawn` (systemd-nspawn, or a program that execs it) with its output appended to `console`,
    /// and returns once systemd is the container's PID 1.
    pub fn start(mut nspawn: Command, console: &Path) -> Result<Booted> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(console)
            .with_context(|| format!("opening {}", console.display()))?;
        // Not a terminal: nspawn relays the console read-only to its output.
        nspawn.stdin(Stdio::null()).stdout(log.try_clone().context("duplicating the console file")?).stderr(log);
        let started = Instant::now();
        let child = nspawn.spawn().context("starting systemd-nspawn")?;
        let mut booted = Booted { nspawn: Some(child), leader: 0, console: console.to_path_buf(), started };
        booted.leader = booted.wait_for_leader()?;
        Ok(booted)
    }

    /// The child of systemd-nspawn that is systemd.
    fn wait_for_leader(&mut self) -> Result<u32> {
        let deadline = Instant::now() + LEADER_TIMEOUT;
        loop {
            let nspawn = self.nspawn.as_mut().context("systemd-nspawn is not running")?;
            if let Some(status) = nspawn.try_wait().context("waiting for systemd-nspawn")? {
                bail!("systemd-nspawn exited ({status}) before systemd started:\n{}", console_tail(&self.console));
            }
            let children = std::fs::read_to_string(format!("/proc/{0}/task/{0}/children", nspawn.id()));
            for pid in children.unwrap_or_default().split_whitespace().filter_map(|p| p.parse::<u32>().ok()) {
                if is_systemd(pid) {
                    return Ok(pid);
                }
            }
            if Instant::now() >= deadline {
                bail!("systemd did not start within {LEADER_TIMEOUT:?}:\n{}", console_tail(&self.console));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The container's PID 1 while it is still systemd.
    pub fn leader(&self) -> Option<u32> {
        Some(self.leader).filter(|&pid| is_systemd(pid))
    }

    /// When systemd-nspawn was started.
    pub fn started(&self) -> Instant {
        self.started
    }

    /// A command that runs `argv` inside (every namespace of its PID 1, as root, a plain environment).
    pub fn command(&self, argv: &[&str]) -> Command {
        let mut command = Command::new("nsenter");
        command
            .arg(format!("--target={}", self.leader))
            .args(["--all", "--"])
            .args(argv)
            .env_clear()
            .env("PATH", PATH)
            .env("HOME", "/root")
            .env("LANG", "C.UTF-8")
            .stdin(Stdio::null());
        command
    }

    /// Waits up to `timeout` for systemd-nspawn to exit (after a poweroff or reboot asked inside).
    pub fn wait_exit(&mut self, timeout: Duration) -> Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        let nspawn = self.nspawn.as_mut().context("systemd-nspawn is not running")?;
        loop {
            if let Some(status) = nspawn.try_wait().context("waiting for systemd-nspawn")? {
                self.nspawn = None;
                return Ok(Some(status));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            std::thread::sleep(POLL);
        }
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        if let Some(pid) = self.leader().and_then(|pid| rustix::process::Pid::from_raw(pid as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
        let Some(mut nspawn) = self.nspawn.take() else { return };
        let deadline = Instant::now() + KILL_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = nspawn.try_wait() {
                return;
            }
            std::thread::sleep(POLL);
        }
        let _ = nspawn.kill();
        let _ = nspawn.wait();
    }
}

/// The end of a console file, for error messages.
pub fn console_tail(console: &Path) -> String {
    let bytes = std::fs::read(console).unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes);
    let start = text.len().saturating_sub(CONSOLE_TAIL);
    let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
    text[start..].to_string()
}

/// Whether `pid` is a live process named systemd.
fn is_systemd(pid: u32) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else { return false };
    // `PID (COMM) STATE …`; a zombie has ended already.
    let Some((comm, rest)) = stat.split_once(") ") else { return false };
    comm.ends_with("(systemd") && !rest.starts_with('Z')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_not_systemd() {
        assert!(!is_systemd(std::process::id()));
    }

    #[test]
    fn the_console_tail_is_the_end_and_whole_characters() {
        let dir = tempfile::tempdir().unwrap();
        let console = dir.path().join("console.log");
        std::fs::write(&console, format!("{}é{}", "a".repeat(10), "b".repeat(CONSOLE_TAIL - 1))).unwrap();
        let tail = console_tail(&console);
        assert!(tail.starts_with('b') || tail.starts_with('é'), "{}", &tail[..10]);
        assert!(tail.ends_with('b') && tail.len() <= CONSOLE_TAIL);
    }
}
