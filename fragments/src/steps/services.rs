//! master part-011 / minion part-011 services: the node's services enabled and started, in dependency
//! order: the container runtime, etcd (masters), kube-apiserver, kube-controller-manager, kube-scheduler,
//! kubelet, kube-proxy. Only units that exist on this node are touched (an OS whose runtime unit is
//! missing, a minion without etcd); nothing waits for a service to come up (`--no-block`): the health
//! step does the waiting, with a budget.
//!
//! A unit is enabled when its `[Install]` links are missing, and started when it was just enabled or the
//! service manager reports it inactive or failed, after one `daemon-reload` so new and changed unit files
//! are read. A converged node, where every unit is enabled and running, is left alone: no command is
//! run. Magnum's minion also stopped docker and deleted the `docker0` bridge for flannel's sake; with CNI
//! (kubelet's `--network-plugin=cni`) docker's bridge is unused, so it is left as it is.

use crate::config::Role;
use crate::kube::RuntimeKind;
use crate::step::{Context, Done};
use crate::systemd::{enable_and_start, unit_text};
use anyhow::Result;

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let runtime = RuntimeKind::for_node(ctx.config)?;
    let mut wanted: Vec<&str> = vec![runtime.unit()];
    if ctx.config.role == Role::Master {
        wanted.extend([
            "etcd.service",
            "kube-apiserver.service",
            "kube-controller-manager.service",
            "kube-scheduler.service",
        ]);
    }
    wanted.extend(["kubelet.service", "kube-proxy.service"]);

    let mut present = Vec::new();
    for unit in &wanted {
        if unit_text(ctx, unit)?.is_some() {
            present.push(*unit);
        }
    }
    if present.is_empty() {
        return Ok(Done::Skipped(format!("none of {} is installed on this node", wanted.join(", "))));
    }
    enable_and_start(ctx, &present)?;
    Ok(Done::Applied)
}
