//! `hearth-server cluster init`: what Magnum's conductor prepared before it created a cluster's stack,
//! made once by the operator. The cluster gets its CA in serve's state directory (registered for serve
//! when the trustee is known), its service-account key pair, and a settings file holding what Hearth
//! cannot look up itself, for the operator to complete; `validate --settings` then names what is missing.

use crate::serve::cluster::ClusterUuid;
use anyhow::{Context as _, Result};
use hearth_fragments::host::write_state_file;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// What the operator already knows; empty fields are left for them to fill in.
#[derive(Debug, Default)]
pub struct Request {
    pub cluster: String,
    pub name: Option<String>,
    /// The cluster's settings directory: settings.yaml and the service-account key pair.
    pub out: PathBuf,
    pub state: PathBuf,
    pub ca_validity_days: u32,
    pub auth_url: String,
    pub magnum_url: String,
    pub region: String,
    pub trustee_domain_id: String,
    pub trustee_user_id: String,
    pub trustee_username: String,
    /// Read from a file so that it never sits in argv or shell history.
    pub trustee_password: String,
    pub trust_id: String,
    pub agent_url: String,
    pub agent_sha256: String,
    pub agent_path: String,
}

/// What init made, and what it found already there and kept.
#[derive(Debug)]
pub struct Prepared {
    pub ca_path: PathBuf,
    pub registered: bool,
    pub settings: PathBuf,
    pub settings_written: bool,
    pub public_key: PathBuf,
    pub private_key: PathBuf,
    pub keys_written: bool,
}

pub const SETTINGS_FILE: &str = "settings.yaml";
pub const PUBLIC_KEY_FILE: &str = "service-account.pub";
pub const PRIVATE_KEY_FILE: &str = "service-account.key";

/// Prepares the cluster. Run again, it keeps what exists: a new service-account key would invalidate
/// every token the cluster issued, and a rewritten settings file would lose the operator's edits.
pub fn prepare(request: &Request) -> Result<Prepared> {
    let uuid = ClusterUuid::parse(&request.cluster)?;
    let trustee = Some(request.trustee_user_id.as_str()).filter(|id| !id.is_empty());
    let (ca_path, _) = crate::serve::ca_init(
        &request.state,
        uuid.as_str(),
        trustee,
        request.name.as_deref(),
        request.ca_validity_days,
    )
    .with_context(|| format!("making the CA of cluster {uuid}"))?;
    std::fs::create_dir_all(&request.out).with_context(|| format!("creating {}", request.out.display()))?;

    let (public_key, private_key) = (request.out.join(PUBLIC_KEY_FILE), request.out.join(PRIVATE_KEY_FILE));
    let keys_written = match (public_key.exists(), private_key.exists()) {
        (true, true) => false,
        (false, false) => {
            // ECDSA P-256, which the API server signs service-account tokens with (ES256).
            let key = rcgen::KeyPair::generate().context("making the service-account key pair")?;
            write_state_file(&private_key, key.serialize_pem().as_bytes(), 0o600)
                .with_context(|| format!("writing {}", private_key.display()))?;
            write_state_file(&public_key, key.public_key_pem().as_bytes(), 0o644)
                .with_context(|| format!("writing {}", public_key.display()))?;
            true
        }
        _ => anyhow::bail!(
            "{} holds one half of a service-account key pair: restore the other or remove both",
            request.out.display()
        ),
    };

    let settings = request.out.join(SETTINGS_FILE);
    let settings_written = !settings.exists();
    if settings_written {
        // 0600: the trustee's password may be in it.
        write_state_file(&settings, settings_text(request, &uuid).as_bytes(), 0o600)
            .with_context(|| format!("writing {}", settings.display()))?;
    }
    Ok(Prepared {
        ca_path,
        registered: trustee.is_some(),
        settings,
        settings_written,
        public_key,
        private_key,
        keys_written,
    })
}

/// A YAML string: JSON's quoting is valid YAML and escapes whatever the value holds.
fn quoted(value: &str) -> String {
    serde_json::Value::String(value.to_string()).to_string()
}

fn settings_text(r: &Request, uuid: &ClusterUuid) -> String {
    let mut t = String::new();
    let line = |t: &mut String, comment: &str, key: &str, value: &str| {
        let _ = writeln!(t, "# {comment}\n{key}: {}", quoted(value));
    };
    let _ = writeln!(
        t,
        "# hearth-server settings of cluster {uuid}, made by `hearth-server cluster init`.\n\
         # Fill in what is empty, then check with `hearth-server validate --settings {SETTINGS_FILE} …`,\n\
         # which names every field still missing. Paths are relative to this file."
    );
    line(&mut t, "Keystone v3 URL the nodes use.", "auth_url", &r.auth_url);
    line(&mut t, "The certificate API the nodes use: serve's public URL ending in /v1.", "magnum_url", &r.magnum_url);
    line(&mut t, "The region the nodes' cloud provider uses.", "region", &r.region);
    let _ = writeln!(
        t,
        "# The cluster's trustee (Magnum's conductor made one per cluster): a Keystone user with a trust\n\
         # from the cluster's owner. Nodes sign their certificates as this user.\n\
         trustee:\n  domain_id: {}\n  user_id: {}\n  username: {}\n  password: {}\n  trust_id: {}",
        quoted(&r.trustee_domain_id),
        quoted(&r.trustee_user_id),
        quoted(&r.trustee_username),
        quoted(&r.trustee_password),
        quoted(&r.trust_id),
    );
    let _ = writeln!(
        t,
        "# Where nodes get hearth-agent: url + sha256 (`sha256sum hearth-agent`), or path on the image.\n\
         agent:\n  url: {}\n  sha256: {}\n  path: {}",
        quoted(&r.agent_url),
        quoted(&r.agent_sha256),
        quoted(&r.agent_path),
    );
    let _ = writeln!(
        t,
        "# The cluster's service-account key pair, made by init; keep it for the cluster's life.\n\
         service_account_public_key_file: {PUBLIC_KEY_FILE}\n\
         service_account_private_key_file: {PRIVATE_KEY_FILE}"
    );
    t
}

/// The password file's first line: what `echo secret > file` leaves, without its newline.
pub fn read_password(path: &Path) -> Result<String> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(text.lines().next().unwrap_or_default().to_string())
}
