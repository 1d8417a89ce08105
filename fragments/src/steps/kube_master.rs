//! master part-007 kube-master: kube-apiserver, kube-controller-manager, kube-scheduler, and the master's
//! kubelet and kube-proxy (inventory §3.11), each as `<name>.service` through the OS family's component
//! runtime, configured for the Kubernetes release that runs (`crate::kube`).
//!
//! Writes, whole: the components' sysconfig files (`/etc/kubernetes/{config,apiserver,controller-manager,
//! scheduler,kubelet,proxy}`), their kubeconfigs (0600: they name keys), the ABAC rule that authorises the
//! masters' identity, the keystone webhook kubeconfig when keystone auth is on, and the cluster CA key when
//! controller-manager signs CSRs (`cert_manager_api`). The certificates themselves come from the certs
//! step, which runs after this one: the files only name them, and nothing starts before the services step.

use crate::config::NodeConfig;
use crate::kube::args::Inputs;
use crate::kube::{components, Images};
use crate::step::{Context, Done, CHECKED_HOSTNAME};
use anyhow::Result;

/// Every command line and file of the components builds from the config, with either image set.
pub(super) fn check(config: &NodeConfig) -> Result<()> {
    let inputs = Inputs::new(config, config.node_name(CHECKED_HOSTNAME))?;
    for images in [Images::Magnum, Images::Upstream] {
        components::master(&inputs, images)?;
    }
    Ok(())
}

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let inputs = Inputs::new(ctx.config, ctx.config.node_name(&ctx.facts.hostname))?;
    let images = Images::for_os(ctx.facts.os);
    components::install(ctx, &inputs, images, &components::master(&inputs, images)?)?;
    Ok(Done::Applied)
}
