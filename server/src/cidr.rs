//! The network labels and what a cluster gets when one is unset. The rules and the mapping both read
//! them here, so they agree on what a CIDR is (the node's own reader) and on the defaults (the node's
//! own, and the Heat template's for the fixed network).

use crate::model::Labels;
use hearth_fragments::config::Network;
use ipnet::IpNet;

/// A network in CIDR form, as the node reads one: host bits are refused rather than masked.
pub use hearth_fragments::config::fields::parse_net as parse;

/// The network of a cluster made without `fixed_network`: `cluster.yaml`'s own default.
const FIXED_NETWORK: &str = "10.0.0.0/24";

/// A label that names a network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NetworkLabel {
    FlannelNetwork,
    CalicoPool,
    Services,
    FixedNetwork,
}

impl NetworkLabel {
    pub const ALL: [NetworkLabel; 4] =
        [NetworkLabel::FlannelNetwork, NetworkLabel::Services, NetworkLabel::CalicoPool, NetworkLabel::FixedNetwork];

    pub fn name(self) -> &'static str {
        match self {
            NetworkLabel::FlannelNetwork => "flannel_network_cidr",
            NetworkLabel::CalicoPool => "calico_ipv4pool",
            NetworkLabel::Services => "service_cluster_ip_range",
            NetworkLabel::FixedNetwork => "fixed_network_cidr",
        }
    }

    /// What the cluster gets when the label is unset.
    fn default(self) -> String {
        let node = Network::default();
        match self {
            NetworkLabel::FlannelNetwork => node.flannel_cidr.to_string(),
            NetworkLabel::CalicoPool => node.calico_ipv4pool.to_string(),
            NetworkLabel::Services => node.services_cidr.to_string(),
            NetworkLabel::FixedNetwork => FIXED_NETWORK.to_string(),
        }
    }

    /// The label as given, or its default when unset or empty.
    pub fn text(self, labels: &Labels) -> String {
        labels.get(self.name()).filter(|v| !v.is_empty()).cloned().unwrap_or_else(|| self.default())
    }

    /// The network the cluster gets, `None` when the label does not parse (the rules report that).
    pub fn net(self, labels: &Labels) -> Option<IpNet> {
        parse(&self.text(labels)).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_and_empty_labels_get_the_nodes_defaults() {
        let mut labels = Labels::new();
        assert_eq!(NetworkLabel::FlannelNetwork.text(&labels), "10.100.0.0/16");
        assert_eq!(NetworkLabel::Services.text(&labels), "10.254.0.0/16");
        assert_eq!(NetworkLabel::CalicoPool.text(&labels), "192.168.0.0/16");
        assert_eq!(NetworkLabel::FixedNetwork.text(&labels), "10.0.0.0/24");
        labels.insert("service_cluster_ip_range".into(), String::new());
        assert_eq!(NetworkLabel::Services.text(&labels), "10.254.0.0/16");
        labels.insert("service_cluster_ip_range".into(), "172.30.0.0/16".into());
        assert_eq!(NetworkLabel::Services.net(&labels), Some("172.30.0.0/16".parse().unwrap()));
        labels.insert("service_cluster_ip_range".into(), "172.30.0.1/16".into());
        assert_eq!(NetworkLabel::Services.net(&labels), None);
    }
}
