//! master part-012 network-config: the pod network's configuration where its driver reads it.
//!
//! **flannel.** Magnum's network JSON (`{"Network": <flannel_cidr>, "Subnetlen": <len>, "Backend":
//! {"Type": <backend>}}`) into etcd under `/atomic.io/network/config`, the key of Magnum's
//! `FLANNEL_ETCD_PREFIX=/atomic.io/network` (Rocky's flannel-config service), for flanneld run against
//! etcd. flannel before v0.18.0 reads etcd's v2 keys API; v0.18.0 moved to the v3 API (flannel-io/flannel
//! PR #1562, merged 2022-05-26), so Magnum's tags (`v0.10.0-amd64` …) get the v2 key and v0.18.0 and later
//! the v3 key, chosen from `network.flannel_tag` (a tag that reads as no version counts as a current
//! release: v3). etcd 3.4 and later serve v2 only with `ETCD_ENABLE_V2=true`; without it this step fails
//! and says so. The same JSON goes into the `kube-flannel-cfg` ConfigMap (addons step), which Stein's
//! DaemonSet reads with `--kube-subnet-mgr`.
//!
//! **calico** keeps its IP pool in calico-node's `CALICO_IPV4POOL_CIDR`, in the manifests the addons
//! step applies: nothing to write here.
//!
//! Every master writes it (the key is the same from each, and an equal value is left alone), so no
//! master index is needed. The step runs right after services started etcd and before health, so it
//! first waits for etcd's `/health` within `agent.health_deadline_secs`.

use crate::config::NetworkDriver;
use crate::etcd_client::{Etcd, KeyApi};
use crate::manifests::flannel_network_config;
use crate::probe::Budget;
use crate::step::{Context, Done};
use anyhow::Result;
use std::time::Duration;

/// Where flanneld with `-etcd-prefix=/atomic.io/network` reads its network.
pub const FLANNEL_KEY: &str = "/atomic.io/network/config";

/// The first flannel release whose etcd client speaks v3.
const FLANNEL_ETCD_V3_SINCE: (u64, u64, u64) = (0, 18, 0);

/// The key API flannel `tag` reads.
pub fn flannel_key_api(tag: &str) -> KeyApi {
    match crate::version::parse(tag) {
        Some(version) if version < FLANNEL_ETCD_V3_SINCE => KeyApi::V2,
        _ => KeyApi::V3,
    }
}

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let config = ctx.config;
    if config.network.driver != NetworkDriver::Flannel {
        return Ok(Done::Skipped(format!(
            "network driver {}: calico sets its IP pool from the calico-node DaemonSet (addons step)",
            config.network.driver
        )));
    }
    let etcd = Etcd::for_node(config, ctx.host)?;
    let budget = Budget::new(Duration::from_secs(config.agent.health_deadline_secs));
    etcd.wait_healthy(&budget)?;
    etcd.ensure(flannel_key_api(&config.network.flannel_tag), FLANNEL_KEY, &flannel_network_config(config))?;
    Ok(Done::Applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flannel_reads_v2_before_0_18_and_v3_from_then_on() {
        for (tag, api) in [
            ("v0.10.0-amd64", KeyApi::V2),
            ("v0.11.0", KeyApi::V2),
            ("v0.17.0", KeyApi::V2),
            ("v0.18.0", KeyApi::V3),
            ("v0.26.7", KeyApi::V3),
            ("latest", KeyApi::V3),
        ] {
            assert_eq!(flannel_key_api(tag), api, "{tag}");
        }
    }
}
