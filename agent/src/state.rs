//! The agent's own records under `/var/lib/hearth` (under the root of a rooted run): `status.json` (the
//! last full run, step by step, and its signal), `partial.json` (the last `--only`/`--from` run, which
//! never replaces the record of a full one), `events.jsonl` (every event of every run, appended) and the
//! `done` marker that the agent's unit checks so a converged node is not re-run at boot.

use crate::report::StepRecord;
use crate::signal::{SentSignal, SignalBody};
use anyhow::{Context as _, Result};
use hearth_fragments::host::write_state_file;
use hearth_fragments::Role;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

pub const STATE_DIR: &str = "var/lib/hearth";

fn write_json(path: &Path, status: &Status) -> Result<()> {
    let mut text = serde_json::to_vec_pretty(status)?;
    text.push(b'\n');
    write_state_file(path, &text, 0o600)
}

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RunState {
    Running,
    Succeeded,
    Failed,
}

/// What was sent to Heat, or what should have been.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignalRecord {
    pub endpoint: String,
    pub body: SignalBody,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<SentSignal>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Status {
    pub agent_version: String,
    pub role: Role,
    pub node: String,
    pub os: String,
    pub state: RunState,
    pub started_at: u64,
    #[serde(default)]
    pub finished_at: Option<u64>,
    pub duration_ms: u64,
    pub steps: Vec<StepRecord>,
    /// `part-NNN step: reason` of the step that stopped the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<SignalRecord>,
}

/// The run lock, held until dropped (see [`StateDir::lock`]).
#[derive(Debug)]
pub struct RunLock {
    _file: std::fs::File,
}

/// The state directory of one root.
#[derive(Clone, Debug)]
pub struct StateDir(PathBuf);

impl StateDir {
    pub fn under(root: &Path) -> Self {
        StateDir(root.join(STATE_DIR))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    fn status_path(&self) -> PathBuf {
        self.0.join("status.json")
    }

    fn partial_path(&self) -> PathBuf {
        self.0.join("partial.json")
    }

    fn done_path(&self) -> PathBuf {
        self.0.join("done")
    }

    /// Records a full run (every step and the signal) in `status.json`.
    pub fn write_status(&self, status: &Status) -> Result<()> {
        write_json(&self.status_path(), status).context("writing the status file")
    }

    /// Records a run of some steps (`--only`, `--from`) in `partial.json`, beside the full run's record.
    pub fn write_partial(&self, status: &Status) -> Result<()> {
        write_json(&self.partial_path(), status).context("writing the partial run's status file")
    }

    /// The last partial run, when one ran after the last full run began.
    pub fn later_partial(&self, full: &Status) -> Option<Status> {
        let partial: Status = serde_json::from_slice(&std::fs::read(self.partial_path()).ok()?).ok()?;
        (partial.started_at >= full.started_at).then_some(partial)
    }

    pub fn read_status(&self) -> Result<Status> {
        let path = self.status_path();
        let text =
            std::fs::read(&path).with_context(|| format!("reading {}: has the agent run here?", path.display()))?;
        serde_json::from_slice(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Appends one event line. A single `write` on an `O_APPEND` file, so lines never interleave.
    pub fn event(&self, event: &serde_json::Value) -> Result<()> {
        std::fs::create_dir_all(&self.0)?;
        let mut line = serde_json::to_vec(event)?;
        line.push(b'\n');
        let mut file = std::fs::OpenOptions::new()
            .mode(0o600)
            .create(true)
            .append(true)
            .open(self.0.join("events.jsonl"))
            .context("opening events.jsonl")?;
        file.write_all(&line).context("appending to events.jsonl")
    }

    pub fn mark_done(&self, summary: &str) -> Result<()> {
        write_state_file(&self.done_path(), format!("{summary}\n").as_bytes(), 0o644).context("writing the done marker")
    }

    /// Takes the run lock (`run.lock`, holding the holder's pid) for as long as the [`RunLock`] lives, or
    /// refuses at once, naming the run that holds it: two runs converging one node together would write
    /// the same files and both signal Heat. The kernel drops the lock when its process dies, so a killed
    /// run never blocks the next.
    pub fn lock(&self) -> Result<RunLock> {
        std::fs::create_dir_all(&self.0).with_context(|| format!("creating {}", self.0.display()))?;
        let path = self.0.join("run.lock");
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(&path).unwrap_or_default();
                anyhow::bail!(
                    "another hearth-agent run (pid {}) is converging this node and holds {}: wait for it \
                     (`hearth-agent status`), this run changed nothing",
                    holder.trim(),
                    path.display()
                );
            }
            Err(std::fs::TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()))
            }
        }
        file.set_len(0)?;
        file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
        Ok(RunLock { _file: file })
    }

    /// Whether a run holds the run lock now (a shared probe: the holder's pid in the file is left as it is).
    pub fn is_locked(&self) -> bool {
        let Ok(file) = std::fs::File::open(self.0.join("run.lock")) else { return false };
        matches!(file.try_lock_shared(), Err(std::fs::TryLockError::WouldBlock))
    }

    /// The pid the last run that took the lock wrote into it.
    pub fn lock_holder(&self) -> Option<String> {
        std::fs::read_to_string(self.0.join("run.lock")).ok().map(|pid| pid.trim().to_string())
    }

    /// The step the last run started and did not finish (`part-006 certs`), from the events.
    pub fn unfinished_step(&self) -> Option<String> {
        let text = std::fs::read_to_string(self.0.join("events.jsonl")).ok()?;
        let events: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        let this_run = events.iter().rposition(|e| e["event"] == "run-start").map_or(&events[..], |i| &events[i..]);
        match this_run.iter().rev().find(|e| e["event"] == "step-start" || e["event"] == "step-end") {
            Some(e) if e["event"] == "step-start" => {
                Some(format!("part-{:03} {}", e["part"].as_u64().unwrap_or(0), e["step"].as_str().unwrap_or("?")))
            }
            _ => None,
        }
    }

    /// How the run that wrote `status` went, for `status`: a status that says running was written by a
    /// run that still holds the lock, or by one that died (killed, or the machine stopped) and never
    /// finished it.
    pub fn how_it_went(&self, status: &Status) -> String {
        match status.state {
            RunState::Running => {
                let step = self.unfinished_step().map(|s| format!(" in {s}")).unwrap_or_default();
                if self.is_locked() {
                    let pid = self.lock_holder().unwrap_or_default();
                    format!("running (pid {pid}){step}")
                } else {
                    format!("interrupted{step}: the run that wrote this is gone; `hearth-agent run` converges again")
                }
            }
            RunState::Succeeded => format!("succeeded in {:.1}s", status.duration_ms as f64 / 1000.0),
            RunState::Failed => format!("failed after {:.1}s", status.duration_ms as f64 / 1000.0),
        }
    }

    pub fn clear_done(&self) -> Result<()> {
        match std::fs::remove_file(self.done_path()) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e).context("removing the done marker"),
            _ => Ok(()),
        }
    }
}
