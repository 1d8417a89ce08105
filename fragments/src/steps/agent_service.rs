//! master part-010 / minion part-004 agent-service: `hearth-agent` installed on the node with a oneshot
//! unit, so the node converges at boot until it has once and can be converged again later.
//!
//! - The binary that is running (`/proc/self/exe`, whatever path it was started from) is copied to
//!   `/usr/local/bin/hearth-agent`, atomically (a running agent is never seen half written), and left
//!   alone when it already holds the same bytes.
//! - `hearth-agent.service` ([`unit`]) runs `hearth-agent run --config /etc/hearth/node.json` once per
//!   boot while `/var/lib/hearth/done` does not exist (the runner writes that marker after a successful
//!   run with its signal, and removes it when a run starts), with its output on the console so
//!   `openstack console log show` tells a failing node's story. hearth-server's user-data installs the
//!   same unit (it calls [`unit`]) to start the first run; this step keeps it for later boots.
//! - **Converging again** after a change of `/etc/hearth/node.json`: run `hearth-agent run` by hand (as
//!   root), or remove `/var/lib/hearth/done` and `systemctl restart hearth-agent.service` (a oneshot that
//!   has run stays active until restarted). `hearth-agent run --from STEP` resumes at a step.
//!
//! This replaces Magnum's heat-container-agent (inventory §3.4), and deliberately none of its access
//! path: no SSH key pair, no `authorized_keys` for root, no `PermitRootLogin` change. The agent acts on
//! the node itself; nothing logs in to it.

use crate::host::{FileSpec, Outcome, Systemd};
use crate::paths::{AGENT, NODE_CONFIG};
use crate::step::{Context, Done};
use crate::systemd::is_enabled;
use anyhow::{Context as _, Result};

pub const UNIT: &str = "hearth-agent.service";
pub const UNIT_FILE: &str = "/etc/systemd/system/hearth-agent.service";
/// The marker whose existence keeps the unit from running at boot (written by the runner).
pub const DONE_MARKER: &str = "/var/lib/hearth/done";
/// The running agent's own executable, whatever its path.
const RUNNING_AGENT: &str = "/proc/self/exe";

/// The agent's unit, running `program`: the same text whether hearth-server's user-data or this step
/// writes it.
pub fn unit(program: &str) -> String {
    format!(
        "[Unit]\n\
         Description=Hearth node agent: configure this node and signal Heat\n\
         Wants=network-online.target\n\
         After=network-online.target\n\
         ConditionPathExists=!{DONE_MARKER}\n\
         \n\
         [Service]\n\
         Type=oneshot\n\
         RemainAfterExit=yes\n\
         ExecStart={program} run --config {NODE_CONFIG}\n\
         StandardOutput=journal+console\n\
         StandardError=journal+console\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

pub(super) fn run(ctx: &Context) -> Result<Done> {
    // The agent's own bytes, not a file of the node: a rooted run installs the agent that runs.
    let binary =
        std::fs::read(RUNNING_AGENT).with_context(|| format!("reading the running agent ({RUNNING_AGENT})"))?;
    ctx.host.write_file(&FileSpec::new(AGENT, binary, 0o755))?;
    let written = ctx.host.write_file(&FileSpec::new(UNIT_FILE, unit(AGENT), 0o644))?;
    if written != Outcome::Unchanged {
        ctx.host.systemd(Systemd::DaemonReload, None)?;
    }
    if !is_enabled(ctx, UNIT)? {
        ctx.host.systemd(Systemd::Enable, Some(UNIT)).with_context(|| format!("enabling {UNIT}"))?;
    }
    Ok(Done::Applied)
}
