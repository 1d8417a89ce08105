//! What one render reads, resolved once: the template, the cluster and the settings as given, and what
//! follows from them. Validation and every part of the mapping read the same values instead of each
//! working them out again.

use crate::model::{effective_labels, Cluster, ClusterTemplate, Effective, Labels};
use crate::settings::Loaded;

#[derive(Clone, Debug)]
pub struct Inputs<'a> {
    pub template: &'a ClusterTemplate,
    pub cluster: &'a Cluster,
    pub settings: &'a Loaded,
    /// The cluster after Magnum's API has filled its gaps from the template.
    pub effective: Effective,
    /// The settings' label defaults under `effective.labels`: the labels every rule and mapping reads.
    pub labels: Labels,
}

impl<'a> Inputs<'a> {
    pub fn resolve(template: &'a ClusterTemplate, cluster: &'a Cluster, settings: &'a Loaded) -> Inputs<'a> {
        let effective = Effective::of(template, cluster, settings.settings.create_timeout);
        let labels = effective_labels(&settings.settings.labels, &effective.labels);
        Inputs { template, cluster, settings, effective, labels }
    }
}
