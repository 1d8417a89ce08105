//! A rendered cluster: the Heat templates (`cluster.yaml` and the nested ones it names), the environment with every parameter, and `stack.json`, the
//! exact body of Heat's stack-create API.

use crate::inputs::Inputs;
use crate::model::{Cluster, ClusterTemplate};
use crate::params::{self, Parts};
use crate::settings::Loaded;
use crate::user_data::{self, Format, UserData};
use crate::validate::{self, FieldError};
use anyhow::{Context as _, Result};
use hearth_fragments::config::Role;
use hearth_fragments::host::write_state_file;
use serde_json::{json, Map, Value};
use std::fmt::Write as _;
use std::path::Path;

pub const CLUSTER_TEMPLATE: &str = include_str!("../templates/cluster.yaml");
pub const MASTER_TEMPLATE: &str = include_str!("../templates/master.yaml");
pub const MINION_TEMPLATE: &str = include_str!("../templates/minion.yaml");
pub const MASTER_PORT_TEMPLATE: &str = include_str!("../templates/master_port.yaml");

/// The nested templates `cluster.yaml` names, by the names it uses.
pub const NESTED: [(&str, &str); 3] =
    [("master.yaml", MASTER_TEMPLATE), ("master_port.yaml", MASTER_PORT_TEMPLATE), ("minion.yaml", MINION_TEMPLATE)];

#[derive(Debug)]
pub struct Bundle {
    pub stack_name: String,
    pub timeout_mins: u32,
    /// Every parameter of `cluster.yaml`, the two user-data texts included.
    pub parameters: Map<String, Value>,
    pub master: UserData,
    pub minion: UserData,
    pub format: Format,
    pub parts: Parts,
    pub masters: i64,
    pub minions: i64,
}

/// Why a cluster did not render.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("{} invalid field(s):\n{}", .0.len(), .0.iter().map(|e| format!("  {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Validates, maps and renders. Nothing is written.
pub fn render(template: &ClusterTemplate, cluster: &Cluster, settings: &Loaded) -> Result<Bundle, RenderError> {
    let inputs = Inputs::resolve(template, cluster, settings);
    let report = validate::for_render(&inputs);
    if !report.is_ok() {
        return Err(RenderError::Invalid(report.errors));
    }
    let magnum = params::magnum(&inputs);
    let mut parameters = params::heat(&inputs, &magnum);
    let format = Format::for_distro(template.cluster_distro.as_deref().unwrap_or_default());
    let mut rendered = Vec::new();
    for role in [Role::Master, Role::Minion] {
        let config = params::node(role, &inputs, &magnum).map_err(|errors| {
            RenderError::Invalid(
                errors
                    .into_iter()
                    .map(|reason| FieldError { field: format!("{role} node config"), value: String::new(), reason })
                    .collect(),
            )
        })?;
        // The rules the node will apply to what it is given, and what its steps would refuse of it,
        // checked before a single server boots.
        let mut refused = hearth_fragments::config::validate(&config);
        let booted = user_data::as_booted(&config)?;
        refused.extend(hearth_fragments::steps::check(&booted, hearth_fragments::steps::catalogue(role)));
        if !refused.is_empty() {
            let field = format!("{role} node config");
            return Err(RenderError::Invalid(
                refused
                    .into_iter()
                    .map(|e| FieldError { field: field.clone(), value: e.value.clone(), reason: e.to_string() })
                    .collect(),
            ));
        }
        let data =
            user_data::render(&config, settings, format).with_context(|| format!("rendering the {role} user-data"))?;
        parameters.insert(format!("{role}_user_data"), json!(data.text));
        rendered.push(data);
    }
    let minion = rendered.pop().expect("two roles rendered");
    let master = rendered.pop().expect("two roles rendered");
    Ok(Bundle {
        stack_name: params::stack_name(
            cluster.name.as_deref().unwrap_or("cluster"),
            cluster.uuid.as_deref().unwrap_or_default(),
        ),
        timeout_mins: inputs.effective.create_timeout,
        parameters,
        master,
        minion,
        format,
        parts: Parts::of(&inputs),
        masters: inputs.effective.master_count,
        minions: inputs.effective.node_count,
    })
}

impl Bundle {
    /// `environment.yaml`: every parameter, for `openstack stack create -e`.
    pub fn environment(&self) -> Value {
        json!({"parameters": self.parameters})
    }

    /// The body of `POST /v1/{project}/stacks`.
    pub fn stack_create_body(&self) -> Value {
        json!({
            "stack_name": self.stack_name,
            "template": CLUSTER_TEMPLATE,
            "files": NESTED.iter().map(|(name, text)| (name.to_string(), json!(text))).collect::<Map<String, Value>>(),
            "environment": self.environment(),
            "parameters": {},
            "timeout_mins": self.timeout_mins,
        })
    }

    /// Writes the bundle into `dir` (created if needed). Files holding secrets are 0600.
    pub fn write(&self, dir: &Path) -> Result<()> {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let environment = serde_yaml::to_string(&self.environment()).context("writing environment.yaml")?;
        let stack = serde_json::to_string_pretty(&self.stack_create_body()).expect("JSON values serialise") + "\n";
        let templates = std::iter::once(("cluster.yaml", CLUSTER_TEMPLATE)).chain(NESTED).map(|(n, t)| (n, t, 0o644));
        let secret = [("environment.yaml", environment.as_str(), 0o600), ("stack.json", stack.as_str(), 0o600)];
        for (name, text, mode) in templates.chain(secret) {
            let path = dir.join(name);
            write_state_file(&path, text.as_bytes(), mode).with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(())
    }

    /// A few lines for the operator: servers, optional parts, user-data sizes against Nova's limit.
    pub fn summary(&self, dir: &Path) -> String {
        let on = |b: bool| if b { "on" } else { "off" };
        let p = &self.parameters;
        let mut out = String::new();
        let _ = writeln!(out, "stack {} (timeout {} min)", self.stack_name, self.timeout_mins);
        let _ = writeln!(
            out,
            "servers: {} master(s) ({}), {} minion(s) ({}); user-data: {}",
            self.masters,
            p["master_flavor"].as_str().unwrap_or_default(),
            self.minions,
            p["minion_flavor"].as_str().unwrap_or_default(),
            match self.format {
                Format::CloudInit => "cloud-init",
                Format::Ignition => "Ignition 3.3.0",
            }
        );
        let _ = writeln!(
            out,
            "parts: private network {}, master load balancer {}, LB floating IP {}, node floating IPs {}, \
             etcd volume {}, docker volume {}",
            on(self.parts.private_network),
            on(self.parts.master_lb),
            on(self.parts.lb_floating_ip),
            on(self.parts.floating_ip),
            on(self.parts.etcd_volume),
            on(self.parts.docker_volume),
        );
        for (role, data) in [("master", &self.master), ("minion", &self.minion)] {
            let _ = writeln!(
                out,
                "{role} user-data: {} bytes in base64 as rendered, {} once Heat fills in worst-case values \
                 ({} bytes; {:.1}% of Nova's {})",
                data.base64,
                data.filled_base64,
                data.filled_bytes,
                100.0 * data.filled_base64 as f64 / user_data::NOVA_LIMIT as f64,
                user_data::NOVA_LIMIT
            );
        }
        let _ = writeln!(
            out,
            "wrote {0}/cluster.yaml master.yaml master_port.yaml minion.yaml environment.yaml stack.json\n\
             create it: openstack stack create -t {0}/cluster.yaml -e {0}/environment.yaml --timeout {1} {2}",
            dir.display(),
            self.timeout_mins,
            self.stack_name
        );
        out
    }
}
