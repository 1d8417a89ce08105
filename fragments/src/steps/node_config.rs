//! part-003 node-config: persist the validated config, so later runs (`hearth-agent run` from the
//! agent's unit, `status`, `signal --resend`) and operators read exactly what this run used, and write
//! a Magnum-compatible heat-params for tools that still source it.

use crate::config::{heat_params, native};
use crate::host::FileSpec;
use crate::paths::{HEAT_PARAMS, NODE_CONFIG};
use crate::step::{Context, Done};
use anyhow::Result;

pub(super) fn run(ctx: &Context) -> Result<Done> {
    // Both hold secrets (trustee password, service-account key): root only.
    ctx.host.write_file(&FileSpec::new(NODE_CONFIG, native::render(ctx.config), 0o600))?;
    ctx.host.write_file(&FileSpec::new(HEAT_PARAMS, heat_params::render(ctx.config), 0o600))?;
    Ok(Done::Applied)
}
