//! master part-013 apiserver-kubelet-rbac: the ClusterRole `system:kube-apiserver-to-kubelet` (nodes/proxy,
//! stats, log, spec, metrics) bound to user `kubernetes`, the API server's client identity towards the
//! kubelets, so `kubectl logs`, `exec` and metrics work; and, when the components run with the external
//! OpenStack cloud provider, the openstack-cloud-controller-manager that initialises their Nodes (both
//! from Magnum's kube-apiserver-to-kubelet-role.sh).
//!
//! The manager is deployed exactly when the kubelets are told `--cloud-provider=external`
//! ([`crate::kube::external_cloud_provider`]), so a Node is never left waiting for a manager that will not
//! come (Magnum's script required a trust id, while its minions took the provider whenever it was enabled).
//!
//! Applied through the API with the master's own identity (see [`crate::kube_api`]), idempotently, from
//! every master: the objects are the same from each. The step runs before health, so it first waits for
//! the API server within `agent.health_deadline_secs`, as Magnum's script waited for `/healthz`.

use crate::kube::external_cloud_provider;
use crate::kube_api::KubeApi;
use crate::manifests;
use crate::probe::Budget;
use crate::step::{Context, Done};
use anyhow::Result;
use std::time::Duration;

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let mut objects = manifests::apiserver_kubelet_rbac()?;
    if external_cloud_provider(ctx.config) {
        objects.extend(manifests::cloud_controller_manager(ctx.config)?);
    }
    let api = KubeApi::for_master(ctx.config, ctx.host)?;
    api.wait_ready(&Budget::new(Duration::from_secs(ctx.config.agent.health_deadline_secs)))?;
    for object in &objects {
        api.apply(object)?;
    }
    Ok(Done::Applied)
}
