//! Magnum's ClusterTemplate and Cluster as operators write them (YAML or JSON), with Magnum's field names.
//!
//! Fields are read as loosely as Magnum's API reads them (numbers may be negative, strings empty) so that
//! [`crate::validate`] can report every rule a value breaks, with the field and the value, instead of the
//! first type error serde meets. Unknown fields are refused: a typo must not silently fall back to a default.

use crate::validate::FieldError;
use anyhow::{Context as _, Result};
use hearth_fragments::config::words;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

/// A label value. Magnum accepts text, numbers and booleans and stores them as Python's `str()` of the
/// value, so `true` becomes `True` and `26` becomes `26`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum LabelValue {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl fmt::Display for LabelValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelValue::Bool(true) => f.write_str("True"),
            LabelValue::Bool(false) => f.write_str("False"),
            LabelValue::Int(n) => write!(f, "{n}"),
            LabelValue::Float(x) => write!(f, "{x:?}"),
            LabelValue::Text(s) => f.write_str(s),
        }
    }
}

/// Labels as Magnum stores them: every value a string.
pub type Labels = BTreeMap<String, String>;

/// Labels as a map, or as the Magnum CLI's `--labels` text (`k=v,k=v`).
#[derive(Deserialize)]
#[serde(untagged)]
enum LabelsInput {
    Map(BTreeMap<String, LabelValue>),
    Text(String),
}

fn labels_as_text<E: serde::de::Error>(raw: LabelsInput) -> Result<Labels, E> {
    match raw {
        LabelsInput::Map(map) => Ok(map.into_iter().map(|(k, v)| (k, v.to_string())).collect()),
        LabelsInput::Text(text) => parse_label_text(&text).map_err(E::custom),
    }
}

/// `k=v,k=v`, as `openstack coe cluster template create --labels` takes them; an empty text is no label.
pub fn parse_label_text(text: &str) -> Result<Labels, String> {
    let mut labels = Labels::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                labels.insert(key.trim().to_string(), value.trim().to_string());
            }
            _ => return Err(format!("labels {text:?}: {pair:?} is not key=value")),
        }
    }
    Ok(labels)
}

/// Magnum's ClusterTemplate (`POST /v1/clustertemplates`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterTemplate {
    pub name: Option<String>,
    /// Magnum's id of the template (in its exports), which a cluster's `cluster_template_id` may name.
    pub uuid: Option<String>,
    /// Only `kubernetes` is rendered by Hearth; Magnum's other COEs are recognised and refused.
    pub coe: Option<String>,
    pub image_id: Option<String>,
    /// The image's `os_distro` (Magnum reads it from Glance): `fedora-atomic`, `fedora-coreos`, `debian`
    /// or `ubuntu`. Selects cloud-init or Ignition user-data.
    pub cluster_distro: Option<String>,
    pub server_type: Option<String>,
    pub keypair_id: Option<String>,
    pub flavor_id: Option<String>,
    pub master_flavor_id: Option<String>,
    pub dns_nameserver: Option<String>,
    pub external_network_id: Option<String>,
    pub fixed_network: Option<String>,
    pub fixed_subnet: Option<String>,
    pub network_driver: Option<String>,
    pub volume_driver: Option<String>,
    pub docker_volume_size: Option<i64>,
    pub docker_storage_driver: Option<String>,
    pub http_proxy: Option<String>,
    pub https_proxy: Option<String>,
    pub no_proxy: Option<String>,
    pub insecure_registry: Option<String>,
    pub apiserver_port: Option<i64>,
    #[serde(default)]
    pub tls_disabled: bool,
    #[serde(default)]
    pub registry_enabled: bool,
    #[serde(default)]
    pub master_lb_enabled: bool,
    #[serde(default = "yes")]
    pub floating_ip_enabled: bool,
    #[serde(default)]
    pub public: bool,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default, deserialize_with = "labels")]
    pub labels: Labels,
}

/// Magnum's Cluster (`POST /v1/clusters`).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cluster {
    pub name: Option<String>,
    /// Magnum generates it; Hearth takes it from the file so that renders are repeatable.
    pub uuid: Option<String>,
    /// The template's name; when given it must match the template file's `name`.
    pub cluster_template_id: Option<String>,
    pub keypair: Option<String>,
    pub node_count: Option<i64>,
    pub master_count: Option<i64>,
    pub docker_volume_size: Option<i64>,
    /// When given, replaces the template's labels whole, unless `merge_labels` (Magnum since Train).
    #[serde(default, deserialize_with = "optional_labels")]
    pub labels: Option<Labels>,
    /// The cluster's labels go over the template's instead of replacing them.
    #[serde(default)]
    pub merge_labels: bool,
    pub master_flavor_id: Option<String>,
    pub flavor_id: Option<String>,
    /// Minutes; 0 or absent means the default (60).
    pub create_timeout: Option<i64>,
    pub discovery_url: Option<String>,
    pub project_id: Option<String>,
    /// Later Magnum lets a cluster choose its own API load balancer; absent means the template's.
    pub master_lb_enabled: Option<bool>,
    /// Later Magnum lets a cluster choose floating IPs for its nodes; absent means the template's.
    pub floating_ip_enabled: Option<bool>,
    /// Later Magnum lets a cluster join an existing network; absent means the template's.
    pub fixed_network: Option<String>,
    /// The subnet of `fixed_network`; absent means the template's.
    pub fixed_subnet: Option<String>,
}

fn yes() -> bool {
    true
}

fn labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
    labels_as_text(LabelsInput::deserialize(d)?)
}

fn optional_labels<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Labels>, D::Error> {
    Option::<LabelsInput>::deserialize(d)?.map(labels_as_text).transpose()
}

/// Reads a YAML (or JSON) document, naming the file in any error.
pub fn load<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// A Magnum object as its API shows it (`openstack coe cluster template show -f json`, `… cluster show`).
pub trait MagnumExport: serde::de::DeserializeOwned {
    /// Fields Magnum's API shows but sets itself: they describe Magnum's object, not what to create.
    const READ_ONLY: &'static [&'static str];
    /// How errors name the object's fields: `cluster_template.docker_volume_size`.
    const PREFIX: &'static str;
}

impl MagnumExport for ClusterTemplate {
    const PREFIX: &'static str = "cluster_template";
    const READ_ONLY: &'static [&'static str] =
        &["created_at", "updated_at", "links", "project_id", "user_id", "tags", "driver"];
}

impl MagnumExport for Cluster {
    const PREFIX: &'static str = "cluster";
    const READ_ONLY: &'static [&'static str] = &[
        "status",
        "status_reason",
        "health_status",
        "health_status_reason",
        "stack_id",
        "created_at",
        "updated_at",
        "coe_version",
        "container_version",
        "node_addresses",
        "master_addresses",
        "api_address",
        "faults",
        "labels_added",
        "labels_overridden",
        "labels_skipped",
        "user_id",
        "links",
    ];
}

/// Why a template or cluster file was not read.
#[derive(Debug)]
pub enum LoadError {
    /// The file is missing, unreadable or not YAML at all.
    File(anyhow::Error),
    /// Fields of the wrong type or unknown: every one, each with its path and value.
    Fields(Vec<FieldError>),
}

/// How many wrong fields one file may report; past that the file is not what it claims to be.
const MAX_FIELD_ERRORS: usize = 100;

/// [`load`] for a template or cluster written by hand or exported from Magnum: Magnum's read-only fields
/// are dropped and named in the returned note; any other unknown field is still refused. Every field of
/// the wrong type or unknown is reported, not only the first serde meets.
pub fn load_export<T: MagnumExport>(path: &Path) -> Result<(T, Option<String>), LoadError> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(LoadError::File)?;
    let mut value: serde_yaml::Value =
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display())).map_err(LoadError::File)?;
    let mut ignored = Vec::new();
    if let Some(map) = value.as_mapping_mut() {
        for field in T::READ_ONLY {
            if map.remove(*field).is_some() {
                ignored.push(*field);
            }
        }
    }
    let loaded = typed::<T>(value).map_err(LoadError::Fields)?;
    let note = (!ignored.is_empty()).then(|| {
        format!("{}: ignored Magnum's read-only fields {} (Magnum sets them)", path.display(), ignored.join(", "))
    });
    Ok((loaded, note))
}

/// The typed parse, repeated without each field it refused until the rest parses, so that one run
/// names every wrong field.
fn typed<T: MagnumExport>(mut value: serde_yaml::Value) -> Result<T, Vec<FieldError>> {
    let mut errors = Vec::new();
    loop {
        let error = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(loaded) if errors.is_empty() => return Ok(loaded),
            Ok(_) => return Err(errors),
            Err(error) => error,
        };
        let path: Vec<String> = error.path().iter().map(ToString::to_string).collect();
        let message = error.into_inner().to_string();
        let path: Vec<String> = path.into_iter().filter(|p| p != ".").collect();
        let field = std::iter::once(T::PREFIX.to_string()).chain(path.iter().cloned()).collect::<Vec<_>>().join(".");
        let removed = take(&mut value, &path);
        errors.push(FieldError {
            field,
            value: removed.as_ref().map(shown).unwrap_or_default(),
            reason: in_words(&message, &T::PREFIX.replace('_', " ")),
        });
        if removed.is_none() || errors.len() >= MAX_FIELD_ERRORS {
            return Err(errors);
        }
    }
}

/// Removes the value at `path` (map keys), returning it.
fn take(value: &mut serde_yaml::Value, path: &[String]) -> Option<serde_yaml::Value> {
    let (last, parents) = path.split_last()?;
    let mut here = value;
    for key in parents {
        here = here.as_mapping_mut()?.get_mut(key.as_str())?;
    }
    here.as_mapping_mut()?.remove(last.as_str())
}

/// A value as the operator wrote it: text bare, anything else as one line of YAML, with the values of
/// secret labels (a wrong `labels` map is shown whole) masked.
fn shown(value: &serde_yaml::Value) -> String {
    let mut value = value.clone();
    if let Some(map) = value.as_mapping_mut() {
        for (key, entry) in map.iter_mut() {
            if key.as_str().is_some_and(|k| k.ends_with("passwd") || k.ends_with("password")) {
                *entry = serde_yaml::Value::String(hearth_fragments::config::secret::MASK.to_string());
            }
        }
    }
    match &value {
        serde_yaml::Value::String(text) => text.clone(),
        other => serde_yaml::to_string(other).unwrap_or_default().trim_end().replace('\n', " "),
    }
}

/// serde's message said for a person: what the field takes, or which field was probably meant.
fn in_words(message: &str, object: &str) -> String {
    if message.contains("untagged enum LabelsInput") {
        return "labels are a map of name: value, or the CLI's text k=v,k=v".to_string();
    }
    words::serde_in_words(message, &format!("Magnum's {object}"))
}

/// What the cluster gets after Magnum's API fills its gaps from the template (inventory §7.2).
#[derive(Clone, Debug, PartialEq)]
pub struct Effective {
    pub keypair: Option<String>,
    pub master_flavor_id: Option<String>,
    pub flavor_id: Option<String>,
    pub docker_volume_size: Option<i64>,
    pub labels: Labels,
    pub node_count: i64,
    pub master_count: i64,
    /// Minutes, after "0 or absent means 60".
    pub create_timeout: u32,
    pub master_lb_enabled: bool,
    pub floating_ip_enabled: bool,
    pub fixed_network: Option<String>,
    pub fixed_subnet: Option<String>,
}

impl Effective {
    pub fn of(template: &ClusterTemplate, cluster: &Cluster, default_timeout: u32) -> Effective {
        let docker_volume_size = match cluster.docker_volume_size {
            Some(size) if size != 0 => Some(size),
            _ => template.docker_volume_size,
        };
        let create_timeout = match cluster.create_timeout {
            Some(t) if t > 0 => u32::try_from(t).unwrap_or(u32::MAX),
            _ => default_timeout,
        };
        Effective {
            keypair: cluster.keypair.clone().or_else(|| template.keypair_id.clone()),
            master_flavor_id: cluster.master_flavor_id.clone().or_else(|| template.master_flavor_id.clone()),
            flavor_id: cluster.flavor_id.clone().or_else(|| template.flavor_id.clone()),
            docker_volume_size,
            labels: match &cluster.labels {
                Some(own) if cluster.merge_labels => effective_labels(&template.labels, own),
                Some(own) => own.clone(),
                None => template.labels.clone(),
            },
            node_count: cluster.node_count.unwrap_or(1),
            master_count: cluster.master_count.unwrap_or(1),
            create_timeout,
            // Later Magnum's API copies the template's value into the cluster when the cluster gives none;
            // its driver then reads only the cluster's, so a cluster's own value wins.
            master_lb_enabled: cluster.master_lb_enabled.unwrap_or(template.master_lb_enabled),
            floating_ip_enabled: cluster.floating_ip_enabled.unwrap_or(template.floating_ip_enabled),
            fixed_network: cluster.fixed_network.clone().or_else(|| template.fixed_network.clone()),
            fixed_subnet: cluster.fixed_subnet.clone().or_else(|| template.fixed_subnet.clone()),
        }
    }
}

/// The settings' label defaults under the cluster's effective labels: what the rules and the mapping read.
/// The operator sets defaults such as image tags once for every cluster; a cluster's own value wins.
pub fn effective_labels(defaults: &Labels, own: &Labels) -> Labels {
    let mut labels = defaults.clone();
    labels.extend(own.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_stored_as_magnum_stores_them() {
        let t: ClusterTemplate = serde_yaml::from_str("labels: {a: true, b: 26, c: 1.5, d: text, e: 'False'}").unwrap();
        let want: Labels = [("a", "True"), ("b", "26"), ("c", "1.5"), ("d", "text"), ("e", "False")]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(t.labels, want);
        assert!(t.floating_ip_enabled, "Magnum's default");
    }

    #[test]
    fn labels_may_be_the_clis_text_and_merge_over_the_templates() {
        let c: Cluster =
            serde_yaml::from_str("labels: 'kube_tag=v1.25.16, flannel_backend=host-gw'\nmerge_labels: true").unwrap();
        let template = ClusterTemplate {
            labels: [("kube_tag", "v1.24.17"), ("cgroup_driver", "systemd")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Default::default()
        };
        let merged = Effective::of(&template, &c, 60).labels;
        assert_eq!(merged["kube_tag"], "v1.25.16");
        assert_eq!(merged["flannel_backend"], "host-gw");
        assert_eq!(merged["cgroup_driver"], "systemd", "merge_labels keeps the template's");
        let replaced = Effective::of(&template, &Cluster { merge_labels: false, ..c }, 60).labels;
        assert!(!replaced.contains_key("cgroup_driver"), "without merge_labels Magnum replaces them whole");
        assert!(parse_label_text("").unwrap().is_empty());
        let err = serde_yaml::from_str::<Cluster>("labels: 'kube_tag'").unwrap_err().to_string();
        assert!(err.contains("\"kube_tag\" is not key=value"), "{err}");
    }

    #[test]
    fn every_wrong_field_is_named_and_secret_labels_stay_hidden() {
        let value: serde_yaml::Value =
            serde_yaml::from_str("node_count: two\nlabels: {grafana_admin_passwd: s3cret, kube_tag: [1]}").unwrap();
        let errors = typed::<Cluster>(value).unwrap_err();
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["cluster.node_count", "cluster.labels"], "{errors:?}");
        assert!(!errors[1].value.contains("s3cret") && errors[1].value.contains("kube_tag"), "{errors:?}");
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = serde_yaml::from_str::<Cluster>("node_cuont: 3").unwrap_err().to_string();
        assert!(err.contains("node_cuont"), "{err}");
    }

    #[test]
    fn cluster_falls_back_to_the_template_like_magnum() {
        let template = ClusterTemplate {
            keypair_id: Some("kp".into()),
            flavor_id: Some("m1.small".into()),
            docker_volume_size: Some(20),
            labels: [("kube_tag".to_string(), "v1.24.17".to_string())].into(),
            ..Default::default()
        };
        let cluster = Cluster { docker_volume_size: Some(0), create_timeout: Some(0), ..Default::default() };
        let e = Effective::of(&template, &cluster, 60);
        assert_eq!(e.keypair.as_deref(), Some("kp"));
        assert_eq!(e.flavor_id.as_deref(), Some("m1.small"));
        assert_eq!(e.docker_volume_size, Some(20));
        assert_eq!(e.labels["kube_tag"], "v1.24.17");
        assert_eq!((e.node_count, e.master_count, e.create_timeout), (1, 1, 60));
        let own = Cluster { labels: Some(Labels::new()), create_timeout: Some(15), ..Default::default() };
        let e = Effective::of(&template, &own, 60);
        assert!(e.labels.is_empty(), "cluster labels replace the template's whole");
        assert_eq!(e.create_timeout, 15);
    }
}
