//! The one HTTP client the agent builds for a node: the OpenStack CA and `verify_ca`, the proxy with the
//! cluster's own addresses bypassed, a retry deadline, and every retry logged, so a node waiting on an
//! unreachable service says so on its console. The steps' requests (Keystone, Magnum) and the Heat
//! signal differ only in their deadline.

use hearth_fragments::http::{Client, HttpError, HttpSettings, RetryPolicy};
use hearth_fragments::NodeConfig;
use std::time::Duration;

/// The steps' budget for the cloud's APIs (`openstack.api_deadline_secs`).
pub fn steps_deadline(config: &NodeConfig) -> Duration {
    Duration::from_secs(config.openstack.api_deadline_secs)
}

/// The signal's budget (`signal.deadline_secs`).
pub fn signal_deadline(config: &NodeConfig) -> Duration {
    Duration::from_secs(config.signal.deadline_secs)
}

/// The node's client, retrying until `deadline`.
pub fn for_node(config: &NodeConfig, deadline: Duration) -> Result<Client, HttpError> {
    let settings = HttpSettings {
        extra_ca_pem: config.openstack.trusted_ca_pem().to_string(),
        verify_tls: config.openstack.verify_ca,
        http_proxy: config.proxy.http_proxy.clone(),
        https_proxy: config.proxy.https_proxy.clone(),
        no_proxy: config.no_proxy(),
        ..HttpSettings::default()
    };
    let client = Client::new(&settings, RetryPolicy::within(deadline))?;
    Ok(client.on_retry(|notice| {
        tracing::warn!(
            "{} {}: attempt {} failed ({}); retrying in {:.1?}",
            notice.method,
            notice.url,
            notice.attempt,
            notice.error,
            notice.wait
        );
    }))
}
