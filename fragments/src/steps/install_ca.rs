//! part-001 install-ca: the OpenStack CA into the OS trust store, so every TLS client on the node
//! (the agent, the runtime, kubelet) trusts the cloud's endpoints.
//!
//! Magnum appended the CA to the anchor on every run (duplicates) and ignored failures; Hearth writes the
//! anchor whole and rebuilds the bundle only when needed, failing loudly if that fails.

use crate::host::{FileSpec, Outcome};
use crate::step::{Context, Done};
use anyhow::{bail, Context as _, Result};

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let pem = ctx.config.openstack.ca_pem.trim();
    if pem.is_empty() {
        return Ok(Done::Skipped("no OpenStack CA in the config".into()));
    }
    if !pem.contains("-----BEGIN CERTIFICATE-----") {
        bail!("openstack.ca_pem is not a PEM certificate");
    }
    let layout = ctx.facts.os.layout();
    let anchor = FileSpec::new(layout.ca_anchor(), format!("{pem}\n"), 0o644);
    let written = ctx.host.write_file(&anchor)?;
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
