//! minion part-012 registry-service: the local registry written by registry-config (part 8) enabled and
//! started (without waiting for it), only when `registry.enabled`. Magnum's enable-docker-registry did
//! the same (inventory §3.16); a registry that is already enabled and running is left alone. A registry
//! the config gives no Swift credentials for is not started (registry-config left it out and said so).

use crate::registry::{disabled, swift_user, UNIT, UNIT_FILE};
use crate::step::{Context, Done};
use crate::systemd::{enable_and_start, unit_text};
use anyhow::{bail, Result};

pub(super) fn run(ctx: &Context) -> Result<Done> {
    if let Some(reason) = disabled(ctx) {
        return Ok(Done::Skipped(reason));
    }
    if let Err(reason) = swift_user(ctx) {
        // The registry-config step said so in the signal's data already.
        return Ok(Done::Skipped(reason));
    }
    if unit_text(ctx, UNIT)?.is_none() {
        bail!("{UNIT_FILE} does not exist: the registry-config step (part 8) writes it; run it first");
    }
    enable_and_start(ctx, &[UNIT])?;
    Ok(Done::Applied)
}
