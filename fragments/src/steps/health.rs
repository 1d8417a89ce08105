//! master part-014 health: etcd and the API server of this master are healthy, within
//! `agent.health_deadline_secs` (default 10 minutes) for both together.
//!
//! etcd: `GET /health` says `"health": "true"` (see [`crate::etcd_client`] for where and as whom). The API
//! server: `GET /healthz` answers `ok`, then `GET /readyz` does too where it exists (Kubernetes 1.16 and
//! later; an older server's 404 ends the wait). Connection errors and 5xx are retried with the run's
//! backoff; answers from a service still starting are probed again. On expiry the step fails with the last
//! probe's status and the end of its body, e.g. `… was not healthy within 600s (31 attempts); last probe
//! GET /readyz: HTTP 500: [-]etcd failed: reason withheld readyz check failed`. Magnum's master-0 scripts
//! looped on `/healthz` without a bound, and other masters never checked. Where the host sends nothing to
//! the node's services (a dry run, a rooted run) the step is skipped and says so.

use crate::etcd_client::Etcd;
use crate::kube_api::KubeApi;
use crate::probe::Budget;
use crate::step::{Context, Done};
use anyhow::Result;
use std::time::Duration;

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let budget = Budget::new(Duration::from_secs(ctx.config.agent.health_deadline_secs));
    let etcd_probed = Etcd::for_node(ctx.config, ctx.host)?.wait_healthy(&budget)?;
    let api_probed = KubeApi::for_master(ctx.config, ctx.host)?.wait_ready(&budget)?;
    if !(etcd_probed && api_probed) {
        // A check that could not look says so, rather than "ok"; the probes it would send are recorded.
        return Ok(Done::Skipped(
            "not probed: this host sends nothing to the node's own services (a dry run, or a root where they do not run)"
                .into(),
        ));
    }
    Ok(Done::Applied)
}
