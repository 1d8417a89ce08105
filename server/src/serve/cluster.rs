//! Which clusters this server signs for and who may ask. The state directory holds one directory per
//! cluster, `clusters/<uuid>/` (0700), with `cluster.json` — the registration, written by
//! `hearth-server ca init --trustee-user-id` or by `render` — the cluster's CA (see [`super::ca`]) and
//! the operator's deny list, `denied-nodes.json` (see [`super::deny`]).
//!
//! ```json
//! {"cluster_uuid": "5d12f6fd-a196-4bf0-ae4c-1f639a523a52", "trustee_user_id": "4fa830f3…", "name": "k8s"}
//! ```

use anyhow::{bail, Context as _, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::fs::{DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// The registration file inside a cluster's directory.
pub const CLUSTER_FILE: &str = "cluster.json";
/// Directories under the state directory hold CA keys: owner only.
const DIR_MODE: u32 = 0o700;

/// A cluster UUID in Magnum's canonical form (8-4-4-4-12 hex digits, lower case). It names a directory,
/// so nothing but this form is ever accepted: no `..`, no `/`, no names.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClusterUuid(String);

#[derive(Debug, thiserror::Error)]
#[error("{shown:?} is not a cluster UUID (8-4-4-4-12 hexadecimal digits)")]
pub struct InvalidUuid {
    /// The value as given, cut short: it comes from the network.
    shown: String,
}

impl ClusterUuid {
    /// Upper-case hex digits are folded to lower case, as Magnum stores them.
    pub fn parse(value: &str) -> Result<ClusterUuid, InvalidUuid> {
        let canonical = value.len() == 36
            && value.char_indices().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => c == '-',
                _ => c.is_ascii_hexdigit(),
            });
        if !canonical {
            return Err(InvalidUuid { shown: value.chars().take(64).collect() });
        }
        Ok(ClusterUuid(value.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ClusterUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ClusterUuid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterUuid({})", self.0)
    }
}

/// `clusters/<uuid>/cluster.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterRecord {
    pub cluster_uuid: String,
    /// The Keystone user id of the cluster's trustee (Magnum's `trustee_user_id`): the one non-admin
    /// caller this server signs for, for this cluster.
    pub trustee_user_id: String,
    /// Magnum's cluster name, for operators; not used in certificates.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// The server's state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    pub fn new(root: impl Into<PathBuf>) -> StateDir {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn cluster_dir(&self, uuid: &ClusterUuid) -> PathBuf {
        self.root.join("clusters").join(uuid.as_str())
    }

    /// Creates the cluster's directory (and the state and `clusters` directories if missing), all 0700.
    /// Existing directories are narrowed to 0700 too: they hold CA keys.
    pub fn ensure_cluster_dir(&self, uuid: &ClusterUuid) -> Result<PathBuf> {
        let clusters = self.root.join("clusters");
        let dir = clusters.join(uuid.as_str());
        DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(&dir)
            .with_context(|| format!("creating {}", dir.display()))?;
        for path in [&clusters, &dir] {
            std::fs::set_permissions(path, Permissions::from_mode(DIR_MODE))
                .with_context(|| format!("setting the mode of {}", path.display()))?;
        }
        Ok(dir)
    }

    /// The cluster's registration, or `None` when it is not registered.
    pub fn cluster(&self, uuid: &ClusterUuid) -> Result<Option<ClusterRecord>> {
        let path = self.cluster_dir(uuid).join(CLUSTER_FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        let record: ClusterRecord =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
        check(&record, uuid).with_context(|| format!("checking {}", path.display()))?;
        Ok(Some(record))
    }

    /// Writes (or replaces) the cluster's registration, atomically.
    pub fn register(&self, record: &ClusterRecord) -> Result<PathBuf> {
        let uuid = ClusterUuid::parse(&record.cluster_uuid)?;
        check(record, &uuid)?;
        let dir = self.ensure_cluster_dir(&uuid)?;
        let path = dir.join(CLUSTER_FILE);
        let mut json = serde_json::to_vec_pretty(record)?;
        json.push(b'\n');
        // No secret in it, but nobody else needs to read it either.
        hearth_fragments::host::write_state_file(&path, &json, 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }
}

fn check(record: &ClusterRecord, uuid: &ClusterUuid) -> Result<()> {
    if record.cluster_uuid.to_ascii_lowercase() != uuid.as_str() {
        bail!("cluster_uuid {:?} does not match the directory {uuid}", record.cluster_uuid);
    }
    if record.trustee_user_id.trim().is_empty() {
        bail!("trustee_user_id is empty");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_canonical_uuids_are_cluster_uuids() {
        let uuid = ClusterUuid::parse("5D12F6FD-a196-4bf0-ae4c-1f639a523a52").unwrap();
        assert_eq!(uuid.as_str(), "5d12f6fd-a196-4bf0-ae4c-1f639a523a52");
        for bad in [
            "",
            "..",
            "../../etc/passwd",
            "5d12f6fd-a196-4bf0-ae4c-1f639a523a5",
            "5d12f6fd-a196-4bf0-ae4c-1f639a523a52/",
            "5d12f6fda1964bf0ae4c1f639a523a52",
            "5d12f6fd-a196-4bf0-ae4c_1f639a523a52",
            "5d12f6fd-a196-4bf0-ae4c-1f639a523g52",
            "my-cluster",
        ] {
            assert!(ClusterUuid::parse(bad).is_err(), "{bad:?}");
        }
        let long = "x".repeat(10_000);
        assert!(ClusterUuid::parse(&long).unwrap_err().to_string().len() < 200, "errors quote a bounded prefix");
    }

    #[test]
    fn registrations_round_trip_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::new(dir.path().join("state"));
        let uuid = ClusterUuid::parse("5d12f6fd-a196-4bf0-ae4c-1f639a523a52").unwrap();
        assert_eq!(state.cluster(&uuid).unwrap(), None);
        let record = ClusterRecord {
            cluster_uuid: uuid.to_string(),
            trustee_user_id: "4fa830f3ff7e494e84de98dba68a5c36".into(),
            name: Some("k8s".into()),
        };
        let path = state.register(&record).unwrap();
        assert_eq!(state.cluster(&uuid).unwrap(), Some(record.clone()));
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&state.cluster_dir(&uuid)), 0o700);
        assert_eq!(mode(&dir.path().join("state/clusters")), 0o700);

        let other = ClusterRecord { cluster_uuid: "00000000-0000-0000-0000-000000000000".into(), ..record };
        std::fs::write(&path, serde_json::to_string(&other).unwrap()).unwrap();
        let err = format!("{:#}", state.cluster(&uuid).unwrap_err());
        assert!(err.contains("does not match"), "{err}");
        std::fs::write(&path, r#"{"cluster_uuid": "x", "trustee": "y"}"#).unwrap();
        assert!(state.cluster(&uuid).is_err());
    }
}
