//! part-001 install-ca: the OpenStack CA into the OS trust store, so every TLS client on the node
//! (the agent, the runtime, kubelet) trusts the cloud's endpoints.
//!
//! Magnum appended the CA to the anchor on every run (duplicates) and ignored failures; Hearth writes the
//! anchor whole and rebuilds the bundle only when needed, failing loudly if that fails.
//!
//! Magnum rendered the CA into its part-001 by template substitution; it never reached heat-params. A node
//! configured from heat-params looks where that part-001 left it (`openstack.ca_file`,
//! `/etc/pki/ca-trust/source/anchors/openstack-ca.pem`): found, it is made sure to be in the trust store;
//! not found, the step says so and the warning reaches the signal's data (Magnum's part-001 wrote nothing
//! when magnum.conf named no CA, and the cloud's endpoints may be signed by a public CA).

use crate::host::{FileSpec, Outcome};
use crate::step::{Context, Done};
use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let layout = ctx.facts.os.layout();
    let given = ctx.config.openstack.ca_pem.trim();
    let (pem, written) = if given.is_empty() {
        match on_node(ctx)? {
            Found::NotLooked => return Ok(Done::Skipped("no OpenStack CA in the config".into())),
            Found::Missing(why) => return Ok(Done::Degraded(why)),
            Found::At(path, pem) if path == layout.ca_anchor() => (pem, Outcome::Unchanged),
            Found::At(_, pem) => {
                let anchor = FileSpec::new(layout.ca_anchor(), format!("{}\n", pem.trim()), 0o644);
                let written = ctx.host.write_file(&anchor)?;
                (pem, written)
            }
        }
    } else {
        if !given.contains("-----BEGIN CERTIFICATE-----") {
            bail!("openstack.ca_pem is not a PEM certificate");
        }
        let anchor = FileSpec::new(layout.ca_anchor(), format!("{given}\n"), 0o644);
        (given.to_string(), ctx.host.write_file(&anchor)?)
    };
    let pem = pem.trim();
    // Also rebuild when an earlier run wrote the anchor but died before the bundle was rebuilt.
    let bundle = ctx.host.read_to_string(layout.ca_bundle())?;
    let missing_from_bundle = bundle.is_some_and(|b| !b.contains(first_base64_line(pem)));
    if written == Outcome::Changed || written == Outcome::WouldChange || missing_from_bundle {
        let update = layout.update_ca_trust();
        ctx.host.run(&update).with_context(|| format!("rebuilding the trust store with {}", update.display()))?;
    }
    Ok(Done::Applied)
}

/// A line of the certificate body that any bundle holding the certificate contains verbatim.
fn first_base64_line(pem: &str) -> &str {
    pem.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with("-----")).unwrap_or(pem)
}

/// The OpenStack CA already on the node, at `openstack.ca_file`.
enum Found {
    /// No `openstack.ca_file` to look at.
    NotLooked,
    Missing(String),
    At(PathBuf, String),
}

fn on_node(ctx: &Context) -> Result<Found> {
    let file = ctx.config.openstack.ca_file.trim();
    if file.is_empty() {
        return Ok(Found::NotLooked);
    }
    let path = Path::new(file);
    Ok(match ctx.host.read_to_string(path)? {
        Some(pem) if pem.contains("-----BEGIN CERTIFICATE-----") => Found::At(path.to_path_buf(), pem),
        Some(_) => bail!("{file} (openstack.ca_file) holds no PEM certificate"),
        None => Found::Missing(format!(
            "no OpenStack CA found: the config carries none and {file} (where Magnum's part-001 writes it) does \
             not exist; OpenStack endpoints are checked against the system's trust store only"
        )),
    })
}
