//! What a run did, step by step: the records behind the progress lines, `status.json`, `events.jsonl`
//! and the signal's summary.

use crate::state::Status;
use hearth_fragments::host::{Action, ActionKind, Outcome};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StepResult {
    Changed,
    /// A dry run's step that would have changed something (and changed nothing).
    WouldChange,
    Unchanged,
    Skipped,
    Failed,
}

impl StepResult {
    fn word(self) -> &'static str {
        match self {
            StepResult::Changed => "changed",
            StepResult::WouldChange => "would change",
            StepResult::Unchanged => "ok",
            StepResult::Skipped => "skipped",
            StepResult::Failed => "FAILED",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepRecord {
    pub part: u8,
    pub name: String,
    pub result: StepResult,
    /// Why it was skipped, or the error chain when it failed (secrets scrubbed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
    pub duration_ms: u64,
    /// What the node lacks after a step that applied what it could (`Done::Degraded`), secrets scrubbed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub degraded: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<Action>,
}

impl StepRecord {
    pub fn label(&self) -> String {
        format!("part-{:03} {}", self.part, self.name)
    }

    /// The result a finished step earns from what its host did. Requests do not count: they change
    /// nothing on the node, what the step did with the answers does.
    pub fn result_from(actions: &[Action]) -> StepResult {
        let node_actions = || actions.iter().filter(|a| a.kind != ActionKind::Http);
        let only_would = node_actions().any(|a| a.outcome == Outcome::WouldChange)
            && node_actions().all(|a| matches!(a.outcome, Outcome::WouldChange | Outcome::NotRun | Outcome::Unchanged));
        if only_would {
            StepResult::WouldChange
        } else if node_actions().any(|a| a.outcome != Outcome::Unchanged) {
            StepResult::Changed
        } else {
            StepResult::Unchanged
        }
    }

    /// `(3 files, 1 command)`, `(no proxy configured)`.
    fn detail(&self) -> String {
        match self.result {
            StepResult::Skipped => format!("({})", self.reason),
            StepResult::Failed => format!("({})", self.reason.lines().next().unwrap_or_default()),
            _ => {
                let count = |kinds: &[ActionKind]| {
                    self.actions.iter().filter(|a| kinds.contains(&a.kind) && a.outcome != Outcome::Unchanged).count()
                };
                let files = count(&[ActionKind::File, ActionKind::Dir, ActionKind::Symlink, ActionKind::Remove]);
                let commands = count(&[ActionKind::Command]);
                let requests = count(&[ActionKind::Http]);
                let objects = count(&[ActionKind::Remote]);
                let mut parts = Vec::new();
                if files > 0 {
                    parts.push(format!("{files} file{}", if files == 1 { "" } else { "s" }));
                }
                if objects > 0 {
                    parts.push(format!("{objects} cluster object{}", if objects == 1 { "" } else { "s" }));
                }
                if commands > 0 {
                    parts.push(format!("{commands} command{}", if commands == 1 { "" } else { "s" }));
                }
                if requests > 0 {
                    parts.push(format!("{requests} request{}", if requests == 1 { "" } else { "s" }));
                }
                if let Some(degraded) = &self.degraded {
                    parts.push(format!("degraded: {degraded}"));
                }
                if parts.is_empty() {
                    String::new()
                } else {
                    format!("({})", parts.join(", "))
                }
            }
        }
    }

    /// `[ 6/13] part-006 certs ........ changed  1.2s  (4 files)`
    pub fn progress_line(&self, index: usize, total: usize) -> String {
        let width = total.to_string().len();
        let name = format!("{} ", self.label());
        let line = format!(
            "[{index:>width$}/{total}] {name:.<34} {:<12} {:>5.1}s  {}",
            self.result.word(),
            self.duration_ms as f64 / 1000.0,
            self.detail()
        );
        line.trim_end().to_string()
    }
}

/// A one-line account of the run for the SUCCESS signal's `data` and the last progress line.
/// Each degraded step follows the counts (`; degraded: part-008 registry-config: …`), so the operator
/// reads next to the node what it lacks.
pub fn summary(steps: &[StepRecord], duration_ms: u64) -> String {
    let count = |r: StepResult| steps.iter().filter(|s| s.result == r).count();
    let mut text = format!(
        "{} steps in {:.1}s: {} changed, {} unchanged, {} skipped",
        steps.len(),
        duration_ms as f64 / 1000.0,
        count(StepResult::Changed),
        count(StepResult::Unchanged),
        count(StepResult::Skipped),
    );
    let would = count(StepResult::WouldChange);
    if would > 0 {
        text.push_str(&format!(", {would} would change"));
    }
    for step in steps {
        if let Some(degraded) = &step.degraded {
            text.push_str(&format!("; degraded: {}: {degraded}", step.label()));
        }
    }
    text
}

/// `hearth-agent status` for people: the node and `how` its last run went, each step's line, the failure
/// and the signal.
pub fn status_lines(status: &Status, how: &str) -> Vec<String> {
    let mut lines =
        vec![format!("{} {} ({}, hearth-agent {}): {how}", status.role, status.node, status.os, status.agent_version)];
    let total = status.steps.len();
    lines.extend(status.steps.iter().enumerate().map(|(i, step)| step.progress_line(i + 1, total)));
    if let Some(failure) = &status.failure {
        lines.push(format!("failure: {failure}"));
    }
    lines.push(match &status.signal {
        Some(signal) => match (&signal.sent, &signal.error) {
            (Some(_), _) => format!("signal: {:?} sent to {}", signal.body.status, signal.endpoint),
            (None, Some(error)) => format!("signal: {:?} NOT sent: {error}", signal.body.status),
            (None, None) => format!("signal: {:?} not sent", signal.body.status),
        },
        None => "signal: none".to_string(),
    });
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_lines_line_up() {
        let record = StepRecord {
            part: 6,
            name: "certs".into(),
            result: StepResult::Changed,
            reason: String::new(),
            duration_ms: 1234,
            degraded: None,
            actions: vec![Action {
                kind: ActionKind::File,
                target: "/etc/x".into(),
                detail: String::new(),
                outcome: Outcome::Changed,
            }],
        };
        assert_eq!(
            record.progress_line(6, 13),
            "[ 6/13] part-006 certs ................... changed        1.2s  (1 file)"
        );
        let degraded = StepRecord { degraded: Some("no CA found".into()), ..record };
        assert!(degraded.progress_line(6, 13).ends_with("(1 file, degraded: no CA found)"));
        let summary = summary(&[degraded], 1000);
        assert!(summary.ends_with("; degraded: part-006 certs: no CA found"), "{summary}");
    }
}
