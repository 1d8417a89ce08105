//! minion part-009 kube-minion: the kubelet and kube-proxy (inventory §3.12) as `<name>.service` through the
//! OS family's component runtime, configured for the Kubernetes release that runs (`crate::kube`).
//!
//! Writes, whole: `/etc/kubernetes/{config,kubelet,proxy}` and the two kubeconfigs (0600: they name keys;
//! Magnum appended to them and left them world-readable). Not carried over from Magnum: the
//! `KUBERNETES_MASTER` line appended to `/etc/environment` (a file other software owns; kubectl on a node
//! is given a kubeconfig instead) and the transient hostname change (the node's name is `node.instance_name`
//! or the host name, passed to the kubelet as `--hostname-override`).

use crate::config::NodeConfig;
use crate::kube::args::Inputs;
use crate::kube::{components, Images};
use crate::step::{Context, Done, CHECKED_HOSTNAME};
use anyhow::Result;

/// Every command line and file of the components builds from the config, with either image set.
pub(super) fn check(config: &NodeConfig) -> Result<()> {
    let inputs = Inputs::new(config, config.node_name(CHECKED_HOSTNAME))?;
    for images in [Images::Magnum, Images::Upstream] {
        components::minion(&inputs, images)?;
    }
    Ok(())
}

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let inputs = Inputs::new(ctx.config, ctx.config.node_name(&ctx.facts.hostname))?;
    let images = Images::for_os(ctx.facts.os);
    components::install(ctx, &inputs, images, &components::minion(&inputs, images)?)?;
    Ok(Done::Applied)
}
