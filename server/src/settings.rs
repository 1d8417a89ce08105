//! The operator's server settings: what Magnum read from `magnum.conf`, the Keystone catalog and the
//! conductor's trustee, which Hearth cannot look up itself. Paths inside are relative to the settings file.

use crate::model::Labels;
use anyhow::{Context as _, Result};
use hearth_fragments::config::Secret;
use serde::Deserialize;
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    /// Keystone v3 URL nodes authenticate against (Magnum: the catalog's identity endpoint).
    pub auth_url: String,
    /// The certificate API nodes use: Magnum's `…/v1` or `hearth-server serve`'s.
    pub magnum_url: String,
    /// Region nodes use (Magnum: `[cinder_client] region_name`).
    pub region: String,
    /// Nodes verify TLS of OpenStack endpoints (`[drivers] verify_ca`).
    pub verify_ca: bool,
    /// PEM file of the CA nodes must trust for OpenStack endpoints (`[drivers] openstack_ca_file`).
    pub openstack_ca_file: Option<PathBuf>,
    /// The requesting user's name (Magnum: the API caller's).
    pub username: String,
    /// The cluster's trustee (Magnum's conductor creates it per cluster).
    pub trustee: Trustee,
    /// Pass the trust id to nodes (`[trust] cluster_user_trust`, default false as in Magnum).
    pub cluster_user_trust: bool,
    /// The cloud has Octavia (Magnum looks for a `load-balancer` service in the catalog).
    pub octavia_enabled: bool,
    /// Where nodes get `hearth-agent`.
    pub agent: AgentSource,
    /// Server group policy of both node groups (`[cluster] nodes_affinity_policy`).
    pub nodes_affinity_policy: String,
    /// Cinder type of docker volumes when the `docker_volume_type` label is absent.
    pub default_docker_volume_type: String,
    /// Minutes, when the cluster gives none (`[cluster_heat] create_timeout`).
    pub create_timeout: u32,
    /// Swift region and container of the minions' registry (`[docker_registry]`).
    pub swift_region: String,
    pub registry_container: String,
    /// Network driver applied when a template names none.
    pub kubernetes_default_network_driver: String,
    /// Network drivers templates may use (`all` or names).
    pub kubernetes_allowed_network_drivers: Vec<String>,
    /// The service-account key pair (PEM). Magnum generated a fresh pair per cluster; Hearth takes the
    /// pair from files so that a re-render of the same cluster gives the same stack.
    pub service_account_public_key_file: Option<PathBuf>,
    pub service_account_private_key_file: Option<PathBuf>,
    /// Label defaults (e.g. image tags) under every cluster's own labels.
    pub labels: Labels,
    /// Label names Hearth does not read but lets through (the operator's own tools read them); any other
    /// unknown name is refused as a likely typo.
    pub pass_through_labels: Vec<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            auth_url: String::new(),
            magnum_url: String::new(),
            region: String::new(),
            verify_ca: true,
            openstack_ca_file: None,
            username: String::new(),
            trustee: Trustee::default(),
            cluster_user_trust: false,
            octavia_enabled: false,
            agent: AgentSource::default(),
            nodes_affinity_policy: "soft-anti-affinity".into(),
            default_docker_volume_type: String::new(),
            create_timeout: 60,
            swift_region: String::new(),
            registry_container: "docker_registry".into(),
            kubernetes_default_network_driver: "flannel".into(),
            kubernetes_allowed_network_drivers: vec!["all".into()],
            service_account_public_key_file: None,
            service_account_private_key_file: None,
            labels: Labels::new(),
            pass_through_labels: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Trustee {
    pub domain_id: String,
    pub user_id: String,
    pub username: String,
    pub password: Secret,
    pub trust_id: Secret,
}

/// `url` + `sha256` (the stub downloads and checks it), or `path` (the image carries the agent).
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentSource {
    pub url: String,
    pub sha256: String,
    pub path: String,
}

/// Settings with the files they name already read.
#[derive(Clone, Debug, PartialEq)]
pub struct Loaded {
    pub settings: Settings,
    pub openstack_ca: String,
    pub service_account_public_key: String,
    pub service_account_private_key: Secret,
}

impl Loaded {
    pub fn load(path: &Path) -> Result<Loaded> {
        let settings: Settings = crate::model::load(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let read = |field: &str, file: &Option<PathBuf>| -> Result<String> {
            match file {
                None => Ok(String::new()),
                Some(file) => {
                    let full = base.join(file);
                    std::fs::read_to_string(&full)
                        .with_context(|| format!("settings {field}: reading {}", full.display()))
                }
            }
        };
        Ok(Loaded {
            openstack_ca: read("openstack_ca_file", &settings.openstack_ca_file)?,
            service_account_public_key: read(
                "service_account_public_key_file",
                &settings.service_account_public_key_file,
            )?,
            service_account_private_key: Secret::new(read(
                "service_account_private_key_file",
                &settings.service_account_private_key_file,
            )?),
            settings,
        })
    }

    /// Settings when none are given (validation only).
    pub fn defaults() -> Loaded {
        Loaded {
            settings: Settings::default(),
            openstack_ca: String::new(),
            service_account_public_key: String::new(),
            service_account_private_key: Secret::default(),
        }
    }
}
