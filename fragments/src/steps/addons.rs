//! master part-015 addons (master 0, or every master without an index): cluster DNS and the pod network's manifests, applied through
//! the API idempotently (Magnum's kube_cluster_deploy on master 0: core-dns-service.sh and
//! flannel-service.sh or calico-service.sh).
//!
//! - CoreDNS for `kubernetes.dns_cluster_domain` behind the `kube-dns` Service at
//!   `kubernetes.dns_service_ip`, with its autoscaler;
//! - flannel (`--kube-subnet-mgr`, the network JSON in the `kube-flannel-cfg` ConfigMap) or calico (on
//!   etcd, with the master's etcd client certificate in the `calico-etcd-secrets` Secret, as Magnum did).
//!
//! Images come from `runtime.container_infra_prefix`, else Magnum's registries. With `node.master_index`
//! set (the native config), master 0 applies them and the others skip. Without it (Stein's heat-params
//! carry no `MASTER_INDEX`; Magnum ran these scripts on master 0 through a Heat deployment Hearth does not
//! have) every master applies them: the objects are the same from each, applying is idempotent, and
//! masters racing to create the same object converge (see [`crate::kube_api`]), so the cluster gets its
//! network and DNS whichever master comes up first. The step waits for the API server first (see
//! [`super::health`]), so it also works on its own (`--only addons`).

use crate::config::{NetworkDriver, Secret};
use crate::kube_api::KubeApi;
use crate::manifests::{self, EtcdTls};
use crate::paths::ETCD_CERTS;
use crate::probe::Budget;
use crate::step::{Context, Done};
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let config = ctx.config;
    if let Some(index @ 1..) = config.node.master_index {
        return Ok(Done::Skipped(format!("cluster add-ons are applied by master 0; this is master {index}")));
    }
    let api = KubeApi::for_master(config, ctx.host)?;
    // `false`: the host sends nothing to this node's services (a dry run, a rooted run).
    let answered = api.wait_ready(&Budget::new(Duration::from_secs(config.agent.health_deadline_secs)))?;
    let mut objects = manifests::coredns(config)?;
    objects.extend(match config.network.driver {
        NetworkDriver::Calico => manifests::calico(config, etcd_tls(ctx, answered)?.as_ref())?,
        NetworkDriver::Flannel => manifests::flannel(config)?,
    });
    for object in &objects {
        api.apply(object)?;
    }
    Ok(Done::Applied)
}

/// The etcd client identity calico's pods get, `None` when TLS is disabled. A missing file is an error
/// when the objects will really be sent (`required`); a plan may run before the certs step wrote them.
fn etcd_tls(ctx: &Context, required: bool) -> Result<Option<EtcdTls>> {
    if ctx.config.cluster.tls_disabled {
        return Ok(None);
    }
    let read = |name: &str| -> Result<String> {
        let path = Path::new(ETCD_CERTS).join(name);
        match ctx.host.read_to_string(&path)? {
            Some(pem) => Ok(pem),
            None if required => bail!("{} is missing: calico's pods need it to reach etcd", path.display()),
            None => Ok(String::new()),
        }
    };
    Ok(Some(EtcdTls { ca: read("ca.crt")?, cert: read("server.crt")?, key: Secret::new(read("server.key")?) }))
}
