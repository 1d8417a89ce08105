//! `hearth-server cluster config`: a kubeconfig for a person (Magnum's `coe cluster config`), signed by
//! the cluster's CA in the state directory `serve` uses. serve itself never signs such a certificate (its
//! policy refuses `system:masters` and every name that is not a node's): only who can read the state
//! directory, and with it the CA key, can make one.
//!
//! The certificate is short-lived (24 h unless asked otherwise) because Kubernetes has no revocation for
//! client certificates: one stops working when it expires, or for all at once when the cluster's CA is
//! replaced. Every issuance is logged as serve logs its decisions, and appended to
//! `clusters/<uuid>/kubeconfigs.jsonl` (serial, user, groups, expiry) so an operator can see what is out.

use crate::serve::audit::{self, Decision};
use crate::serve::ca::CaStore;
use crate::serve::cluster::{ClusterUuid, StateDir};
use crate::serve::policy::{Grant, Identity};
use anyhow::{bail, Context as _, Result};
use hearth_fragments::host::write_state_file;
use rcgen::{DistinguishedName, DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, PublicKeyData as _};
use serde_json::json;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use time::Duration;

/// What the kubeconfig is for.
#[derive(Clone, Debug)]
pub struct Request {
    /// The certificate's CN: the user Kubernetes sees (and audits).
    pub user: String,
    /// The certificate's O value, at most one: the user's group (`system:masters` for a cluster
    /// administrator).
    pub groups: Vec<String>,
    pub validity: Duration,
    /// The API's URL as the operator reaches it (`https://<api address>:6443`).
    pub server: String,
}

/// What was written.
#[derive(Debug)]
pub struct Written {
    pub serial: String,
    pub not_after: time::OffsetDateTime,
}

/// Signs a client certificate for `request` with the CA of `cluster` and writes a kubeconfig holding it
/// (0600: it holds the key) to `out`.
pub fn write(state_dir: &Path, cluster: &str, request: &Request, out: &Path) -> Result<Written> {
    check(request)?;
    let uuid = ClusterUuid::parse(cluster).map_err(|e| anyhow::anyhow!("--cluster {cluster:?}: {e}"))?;
    let state = StateDir::new(state_dir);
    let store = CaStore::new(state.clone(), crate::serve::settings::DEFAULT_CA_VALIDITY_DAYS);
    if state.cluster(&uuid)?.is_none() && !store.cert_path(&uuid).exists() {
        bail!(
            "cluster {uuid} is not registered under {}: `render --state` or `ca init` registers it",
            state_dir.display()
        );
    }
    // Created here when no node has asked serve for it yet, as serve would: the nodes get the same CA.
    let (ca, _) = store.get_or_create(&uuid)?;
    let key = KeyPair::generate().context("making the kubeconfig's key")?;
    let mut subject = DistinguishedName::new();
    subject.push(DnType::CommonName, request.user.as_str());
    for group in &request.groups {
        subject.push(DnType::OrganizationName, group.as_str());
    }
    let grant = Grant {
        identity: Identity::Operator { user: request.user.clone() },
        subject,
        subject_alt_names: Vec::new(),
        key_usages: vec![KeyUsagePurpose::DigitalSignature],
        extended_key_usages: vec![ExtendedKeyUsagePurpose::ClientAuth],
        spki_der: key.subject_public_key_info(),
        dropped: Vec::new(),
    };
    let issued = ca.sign_for(&grant, request.validity)?;
    let b64 = |text: &str| base64::Engine::encode(&base64::engine::general_purpose::STANDARD, text);
    let name = format!("hearth-{uuid}");
    let config = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": name, "cluster": {"server": request.server, "certificate-authority-data": b64(ca.cert_pem())}}],
        "users": [{"name": request.user, "user": {
            "client-certificate-data": b64(&issued.pem),
            "client-key-data": b64(&key.serialize_pem()),
        }}],
        "contexts": [{"name": name, "context": {"cluster": name, "user": request.user}}],
        "current-context": name,
    });
    let text = serde_yaml::to_string(&config).context("writing the kubeconfig as YAML")?;
    write_state_file(out, text.as_bytes(), 0o600).with_context(|| format!("writing {}", out.display()))?;

    let rfc3339 =
        |at: time::OffsetDateTime| at.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let not_after = rfc3339(issued.not_after);
    let record = json!({"serial": issued.serial, "user": request.user, "groups": request.groups,
        "not_after": not_after, "issued_at": rfc3339(time::OffsetDateTime::now_utc())});
    append_line(&state.cluster_dir(&uuid).join("kubeconfigs.jsonl"), &record.to_string())?;
    audit::decision(&Decision {
        request_id: "-".into(),
        method: "CLI".into(),
        path: "cluster config".into(),
        cluster: Some(uuid.to_string()),
        cn: Some(request.user.clone()),
        o: request.groups.clone(),
        status: 201,
        decision: "issued",
        reason: format!("operator kubeconfig until {not_after}"),
        serial: Some(issued.serial.clone()),
        ..Decision::default()
    });
    Ok(Written { serial: issued.serial, not_after: issued.not_after })
}

fn check(request: &Request) -> Result<()> {
    let printable = |s: &str| !s.is_empty() && s.len() <= 256 && !s.chars().any(char::is_control);
    if !printable(&request.user) || request.user.starts_with("system:node:") {
        bail!("--user {:?}: a name of 1 to 256 printable characters, not a node's (system:node:…)", request.user);
    }
    if request.groups.len() > 1 {
        // rcgen writes one value per attribute type, so a second O would silently replace the first.
        bail!("--group {}: one group per certificate", request.groups.join(" --group "));
    }
    if let Some(group) = request.groups.iter().find(|g| !printable(g) || g.as_str() == "system:nodes") {
        bail!("--group {group:?}: a name of 1 to 256 printable characters, not system:nodes");
    }
    if request.validity <= Duration::ZERO || request.validity > Duration::days(366) {
        bail!("--hours {}: from 1 hour to 366 days", request.validity.whole_hours());
    }
    if !(request.server.starts_with("https://") || request.server.starts_with("http://")) {
        bail!("--server {:?}: the API's URL, such as https://203.0.113.10:6443", request.server);
    }
    Ok(())
}

fn append_line(path: &Path, line: &str) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    file.write_all(format!("{line}\n").as_bytes()).with_context(|| format!("appending to {}", path.display()))
}
