//! What a host did or would do, in order, for reports and `plan`.

use serde::{Deserialize, Serialize};
use std::fmt::Display;
use std::sync::Mutex;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Changed,
    Unchanged,
    /// Dry run: this would change.
    WouldChange,
    /// A command this host does not run (dry run, or rooted without a way to point it at the root), or a
    /// request a dry run does not send.
    NotRun,
    /// An HTTP request sent and answered (whatever the status). A request changes nothing on the node by
    /// itself: what a step does with the answer is recorded as its own actions.
    Sent,
    Failed,
}

impl Outcome {
    /// The outcome as a person reads it: `would change`, `not run`.
    pub fn words(self) -> &'static str {
        match self {
            Outcome::Changed => "changed",
            Outcome::Unchanged => "unchanged",
            Outcome::WouldChange => "would change",
            Outcome::NotRun => "not run",
            Outcome::Sent => "sent",
            Outcome::Failed => "failed",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ActionKind {
    File,
    Dir,
    Symlink,
    Remove,
    Command,
    Http,
    /// State a service keeps for the cluster (a Kubernetes object, an etcd key), as the service answered.
    Remote,
}

impl ActionKind {
    pub fn word(self) -> &'static str {
        match self {
            ActionKind::File => "file",
            ActionKind::Dir => "dir",
            ActionKind::Symlink => "symlink",
            ActionKind::Remove => "remove",
            ActionKind::Command => "command",
            ActionKind::Http => "request",
            ActionKind::Remote => "object",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    /// The node path or the command line.
    pub target: String,
    #[serde(skip_serializing_if = "String::is_empty", default)]
    pub detail: String,
    pub outcome: Outcome,
}

#[derive(Debug, Default)]
pub(super) struct Journal(Mutex<Vec<Action>>);

impl Journal {
    pub(super) fn record(&self, kind: ActionKind, target: impl Display, detail: String, outcome: Outcome) {
        let action = Action { kind, target: target.to_string(), detail, outcome };
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(action);
    }

    pub(super) fn take(&self) -> Vec<Action> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}
