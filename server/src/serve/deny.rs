//! The operator's deny list: nodes of a cluster that `serve` no longer issues their node identity
//! (`CN=system:node:<name>`) to, as a Kubernetes admin denies a node's CSR.
//!
//! All nodes of a cluster share one trustee credential, so the server cannot tell nodes apart by who
//! asks; it can only refuse the identity asked for. An operator who suspects a node, or retires one,
//! denies its name with `hearth-server node deny` (and `node allow` takes it back).
//!
//! The list is `clusters/<uuid>/denied-nodes.json` (0600), a JSON object keyed by node name:
//!
//! ```json
//! {"k8s-minion-1": {"reason": "retired", "at": "2025-05-01T09:30:00Z"}}
//! ```
//!
//! - `serve` reads it on every signing request (it is a few bytes), without caching, so a deny or an
//!   allow takes effect at once, without restarting serve. A missing file denies nothing.
//! - A file that cannot be read or is not exactly this shape (a key that is not a node name, an `at`
//!   that is not RFC 3339, an unknown field) fails closed: nothing is signed for that cluster, node or
//!   not, until the operator repairs or removes it (a 500 that says so; the log names the file).
//!   Guessing what a damaged list meant could sign for a node the operator denied.
//! - Edits take an exclusive lock on `denied-nodes.lock` in the cluster directory (across processes:
//!   two operators' commands never lose each other's entries), then write the whole list atomically
//!   (temp file, fsync, rename). `serve` never takes the lock: a rename shows it the old list or the
//!   new one, never a part.
//!
//! What it does not do:
//! - `system:kube-proxy` and `kubernetes` (the API server) are not per-node identities, so the list does
//!   not affect them; a denied node's credentials still obtain them (see [`super::policy`] for why the
//!   shared trustee makes that unavoidable, and why any node may ask for any node name).
//! - Denying does not revoke certificates already issued: they stay valid until they expire. Revoking
//!   them means a new cluster CA, which `serve` does not do.

use super::cluster::{ClusterUuid, StateDir, CLUSTER_FILE};
use super::policy::is_node_name;
use anyhow::{Context as _, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::OpenOptions;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// The deny list inside a cluster's directory.
pub const DENY_FILE: &str = "denied-nodes.json";
const DENY_LOCK: &str = "denied-nodes.lock";
/// Like the other state files: nobody else needs to read it.
const FILE_MODE: u32 = 0o600;

/// Why and since when a node is denied.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Denial {
    /// The operator's words, told to the node; may be empty.
    pub reason: String,
    /// When the node was denied, RFC 3339 in UTC.
    pub at: String,
}

impl Denial {
    /// The `detail` of the 403 a denied node gets.
    pub fn refusal(&self, name: &str) -> String {
        let reason = self.reason.trim();
        if reason.is_empty() {
            format!("node {name} is denied certificates by the operator")
        } else {
            format!("node {name} is denied certificates by the operator: {reason}")
        }
    }
}

/// One cluster's denied nodes, by name.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DenyList {
    nodes: BTreeMap<String, Denial>,
}

impl DenyList {
    pub fn get(&self, name: &str) -> Option<&Denial> {
        self.nodes.get(name)
    }

    /// In name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Denial)> {
        self.nodes.iter().map(|(name, denial)| (name.as_str(), denial))
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    fn parse(text: &str) -> Result<DenyList> {
        let nodes: BTreeMap<String, Denial> = serde_json::from_str(text)
            .context("expected an object {\"<node name>\": {\"reason\": \"…\", \"at\": \"<RFC 3339>\"}}")?;
        for (name, denial) in &nodes {
            anyhow::ensure!(is_node_name(name), "{name:?} is not a node name (a lower-case DNS subdomain)");
            OffsetDateTime::parse(&denial.at, &Rfc3339)
                .with_context(|| format!("node {name}: \"at\" {:?} is not an RFC 3339 time", denial.at))?;
        }
        Ok(DenyList { nodes })
    }

    fn to_json(&self) -> Vec<u8> {
        let mut json = serde_json::to_vec_pretty(&self.nodes).expect("deny lists serialise");
        json.push(b'\n');
        json
    }
}

/// `clusters/<uuid>/denied-nodes.json`.
pub fn path(state: &StateDir, uuid: &ClusterUuid) -> PathBuf {
    state.cluster_dir(uuid).join(DENY_FILE)
}

/// The cluster's deny list as it is on disk now; empty when there is no file. Any other failure to
/// read it is an error (callers must not sign then: see the module comment).
pub fn load(state: &StateDir, uuid: &ClusterUuid) -> Result<DenyList> {
    let path = path(state, uuid);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(DenyList::default()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    DenyList::parse(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Why `node deny`, `allow` or `list` did nothing: the operator's input (exit 2), or a failure.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(
        "{0:?} is not a node name: a lower-case DNS subdomain, at most 253 characters (the NAME of \
         CN=system:node:NAME, without the prefix)"
    )]
    InvalidName(String),
    #[error("the reason holds a control character (a newline, a tab…); give it on one line")]
    InvalidReason,
    #[error(
        "cluster {uuid} is not registered in this state directory ({} does not exist); register it with \
         `hearth-server render --state` or `hearth-server ca init --trustee-user-id`",
        registration.display()
    )]
    UnknownCluster { uuid: ClusterUuid, registration: PathBuf },
    #[error(transparent)]
    Failed(#[from] anyhow::Error),
}

/// What `deny` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Denied {
    /// The node was not denied and now is.
    Now,
    /// The node was already denied; its reason is replaced.
    ReasonUpdated,
    /// The node was already denied, for the same reason: nothing written.
    Already,
}

/// What `allow` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Allowed {
    /// The node was denied and no longer is.
    Again,
    /// The node was not denied: nothing written.
    NotDenied,
}

/// Denies `name` its node certificates. Denying a denied node keeps the time it was first denied and
/// replaces its reason when `reason` is given (`None` keeps the reason it has; a new entry gets "").
/// Returns what changed and the node's entry as it now is.
pub fn deny(
    state: &StateDir,
    uuid: &ClusterUuid,
    name: &str,
    reason: Option<&str>,
) -> Result<(Denied, Denial), EditError> {
    check_name(name)?;
    if reason.is_some_and(|r| r.chars().any(char::is_control)) {
        return Err(EditError::InvalidReason);
    }
    edit(state, uuid, |list| match list.nodes.get_mut(name) {
        Some(denial) => match reason {
            Some(reason) if reason != denial.reason => {
                denial.reason = reason.to_string();
                (Denied::ReasonUpdated, denial.clone())
            }
            _ => (Denied::Already, denial.clone()),
        },
        None => {
            let denial = Denial { reason: reason.unwrap_or_default().to_string(), at: rfc3339_utc(now()) };
            list.nodes.insert(name.to_string(), denial.clone());
            (Denied::Now, denial)
        }
    })
}

/// Lets `name` obtain its node certificates again; allowing a node that is not denied changes nothing.
pub fn allow(state: &StateDir, uuid: &ClusterUuid, name: &str) -> Result<Allowed, EditError> {
    check_name(name)?;
    edit(state, uuid, |list| match list.nodes.remove(name) {
        Some(_) => Allowed::Again,
        None => Allowed::NotDenied,
    })
}

/// The deny list of a registered cluster.
pub fn list(state: &StateDir, uuid: &ClusterUuid) -> Result<DenyList, EditError> {
    registered(state, uuid)?;
    Ok(load(state, uuid)?)
}

fn check_name(name: &str) -> Result<(), EditError> {
    if is_node_name(name) {
        Ok(())
    } else {
        Err(EditError::InvalidName(name.chars().take(300).collect()))
    }
}

/// Only registered clusters have a deny list: a typo in the UUID must not create a directory (and a
/// list nobody reads) for a cluster that does not exist.
fn registered(state: &StateDir, uuid: &ClusterUuid) -> Result<(), EditError> {
    match state.cluster(uuid)? {
        Some(_) => Ok(()),
        None => Err(EditError::UnknownCluster {
            uuid: uuid.clone(),
            registration: state.cluster_dir(uuid).join(CLUSTER_FILE),
        }),
    }
}

/// Read, change and write the list under the cluster's deny lock, so concurrent edits each see the
/// other's result. A list that cannot be read is left as it is: rewriting it would drop its entries.
fn edit<T>(state: &StateDir, uuid: &ClusterUuid, change: impl FnOnce(&mut DenyList) -> T) -> Result<T, EditError> {
    registered(state, uuid)?;
    let dir = state.cluster_dir(uuid);
    let _lock = lock(&dir)?;
    let mut list = load(state, uuid)?;
    let before = list.clone();
    let outcome = change(&mut list);
    if list != before {
        let path = path(state, uuid);
        hearth_fragments::host::write_state_file(&path, &list.to_json(), FILE_MODE)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(outcome)
}

/// An exclusive lock on the cluster's deny lock file, held until the returned file is dropped.
fn lock(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(DENY_LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(FILE_MODE)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.lock().with_context(|| format!("locking {}", path.display()))?;
    Ok(file)
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// `2025-05-01T09:30:00Z`. By hand: the `time` crate's formatter is a feature this crate does not
/// otherwise need.
fn rfc3339_utc(at: OffsetDateTime) -> String {
    let at = at.to_offset(UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::cluster::ClusterRecord;
    use std::os::unix::fs::PermissionsExt;

    fn registered_state() -> (tempfile::TempDir, StateDir, ClusterUuid) {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path());
        let uuid = ClusterUuid::parse("5d12f6fd-a196-4bf0-ae4c-1f639a523a52").unwrap();
        state
            .register(&ClusterRecord { cluster_uuid: uuid.to_string(), trustee_user_id: "t".into(), name: None })
            .unwrap();
        (dir, state, uuid)
    }

    #[test]
    fn times_are_rfc3339_utc() {
        let at = OffsetDateTime::from_unix_timestamp(1_746_091_800).unwrap();
        assert_eq!(rfc3339_utc(at), "2025-05-01T09:30:00Z");
        let shifted = at.to_offset(UtcOffset::from_hms(5, 30, 0).unwrap());
        assert_eq!(rfc3339_utc(shifted), "2025-05-01T09:30:00Z");
        assert_eq!(OffsetDateTime::parse(&rfc3339_utc(now()), &Rfc3339).unwrap().offset(), UtcOffset::UTC);
    }

    #[test]
    fn refusals_name_the_node_and_the_reason_if_any() {
        let denial = Denial { reason: "retired".into(), at: "2025-05-01T09:30:00Z".into() };
        assert_eq!(denial.refusal("k8s-minion-1"), "node k8s-minion-1 is denied certificates by the operator: retired");
        let silent = Denial { reason: " ".into(), ..denial };
        assert_eq!(silent.refusal("k8s-minion-1"), "node k8s-minion-1 is denied certificates by the operator");
    }

    #[test]
    fn edits_round_trip_and_are_idempotent() {
        let (_dir, state, uuid) = registered_state();
        assert!(load(&state, &uuid).unwrap().is_empty(), "no file, nothing denied");
        let (change, first) = deny(&state, &uuid, "k8s-minion-1", Some("suspect")).unwrap();
        assert_eq!((change, first.reason.as_str()), (Denied::Now, "suspect"));
        let file = path(&state, &uuid);
        assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(load(&state, &uuid).unwrap().get("k8s-minion-1"), Some(&first));

        // Same reason: nothing written. No reason: the reason kept. New reason: replaced, `at` kept.
        let written = std::fs::read(&file).unwrap();
        assert_eq!(deny(&state, &uuid, "k8s-minion-1", Some("suspect")).unwrap().0, Denied::Already);
        assert_eq!(deny(&state, &uuid, "k8s-minion-1", None).unwrap(), (Denied::Already, first.clone()));
        assert_eq!(std::fs::read(&file).unwrap(), written);
        let (change, updated) = deny(&state, &uuid, "k8s-minion-1", Some("retired")).unwrap();
        assert_eq!((change, updated.reason.as_str(), &updated.at), (Denied::ReasonUpdated, "retired", &first.at));
        let (change, empty) = deny(&state, &uuid, "k8s-minion-2", None).unwrap();
        assert_eq!((change, empty.reason.as_str()), (Denied::Now, ""));

        let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"k8s-minion-1": {"reason": "retired", "at": first.at},
                               "k8s-minion-2": {"reason": "", "at": empty.at}})
        );
        assert_eq!(
            list(&state, &uuid).unwrap().iter().map(|(n, _)| n).collect::<Vec<_>>(),
            ["k8s-minion-1", "k8s-minion-2"]
        );

        assert_eq!(allow(&state, &uuid, "k8s-minion-1").unwrap(), Allowed::Again);
        assert_eq!(allow(&state, &uuid, "k8s-minion-1").unwrap(), Allowed::NotDenied);
        assert_eq!(allow(&state, &uuid, "k8s-minion-2").unwrap(), Allowed::Again);
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "{}\n");
        assert!(load(&state, &uuid).unwrap().is_empty());
    }

    #[test]
    fn bad_input_is_told_apart_from_failures() {
        let (dir, state, uuid) = registered_state();
        for bad in ["", "K8s-minion-1", "system:node:k8s-minion-1", "a_b", "-a", "a."] {
            assert!(matches!(deny(&state, &uuid, bad, None), Err(EditError::InvalidName(_))), "{bad:?}");
            assert!(matches!(allow(&state, &uuid, bad), Err(EditError::InvalidName(_))), "{bad:?}");
        }
        assert!(matches!(deny(&state, &uuid, "a", Some("two\nlines")), Err(EditError::InvalidReason)));
        let other = ClusterUuid::parse("00000000-0000-4000-8000-000000000000").unwrap();
        let unknown = deny(&state, &other, "a", None).unwrap_err();
        assert!(matches!(unknown, EditError::UnknownCluster { .. }), "{unknown}");
        assert!(unknown.to_string().contains("ca init --trustee-user-id"), "{unknown}");
        assert!(matches!(list(&state, &other), Err(EditError::UnknownCluster { .. })));
        assert!(!dir.path().join("clusters").join(other.as_str()).exists(), "nothing made for an unknown cluster");
        assert!(!path(&state, &uuid).exists(), "nothing written for bad input");
    }

    #[test]
    fn a_damaged_list_is_an_error_naming_the_file_and_is_never_rewritten() {
        let (_dir, state, uuid) = registered_state();
        let file = path(&state, &uuid);
        for (text, hint) in [
            ("", "EOF"),
            ("{\"k8s-minion-1\": ", "EOF"),
            ("[\"k8s-minion-1\"]", "expected a map"),
            ("{\"k8s-minion-1\": {\"reason\": \"x\"}}", "missing field `at`"),
            ("{\"k8s-minion-1\": {\"reason\": \"x\", \"at\": \"now\", \"by\": \"me\"}}", "unknown field `by`"),
            ("{\"k8s-minion-1\": {\"reason\": \"x\", \"at\": \"yesterday\"}}", "not an RFC 3339 time"),
            ("{\"system:node:k8s-minion-1\": {\"reason\": \"\", \"at\": \"2025-05-01T09:30:00Z\"}}", "not a node name"),
        ] {
            std::fs::write(&file, text).unwrap();
            let error = format!("{:#}", load(&state, &uuid).unwrap_err());
            assert!(error.contains(&file.display().to_string()) && error.contains(hint), "{text:?}: {error}");
            let error = deny(&state, &uuid, "k8s-minion-2", None).unwrap_err();
            assert!(matches!(error, EditError::Failed(_)), "{text:?}: {error}");
            assert!(matches!(allow(&state, &uuid, "k8s-minion-1"), Err(EditError::Failed(_))));
            assert_eq!(std::fs::read_to_string(&file).unwrap(), text, "left for the operator to repair");
        }
        std::fs::remove_file(&file).unwrap();
        std::fs::create_dir(&file).unwrap();
        assert!(format!("{:#}", load(&state, &uuid).unwrap_err()).contains(DENY_FILE));
    }
}
