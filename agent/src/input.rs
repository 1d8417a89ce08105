//! Where the node config comes from: `--config` (native), `--heat-params` (Magnum), or by default
//! `/etc/hearth/node.json`, else `/etc/sysconfig/heat-params` (under `--root` when given). A native
//! config is always read with its per-node values file (`node.values.json` beside it) laid over it when
//! that file exists: the user-data writes the two apart (see `native::values_path`).

use anyhow::{bail, Context as _, Result};
use hearth_fragments::config::{heat_params, native, ConfigErrors, Loaded, Secret};
use hearth_fragments::Role;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Native,
    HeatParams,
}

#[derive(Clone, Debug)]
pub struct Source {
    pub path: PathBuf,
    pub format: Format,
}

impl Source {
    pub fn locate(config: Option<&Path>, heat_params: Option<&Path>, root: &Path) -> Result<Source> {
        match (config, heat_params) {
            (Some(_), Some(_)) => bail!("give --config or --heat-params, not both"),
            (Some(path), None) => Ok(Source { path: path.into(), format: Format::Native }),
            (None, Some(path)) => Ok(Source { path: path.into(), format: Format::HeatParams }),
            (None, None) => {
                let native = root.join("etc/hearth/node.json");
                let magnum = root.join("etc/sysconfig/heat-params");
                if native.exists() {
                    Ok(Source { path: native, format: Format::Native })
                } else if magnum.exists() {
                    Ok(Source { path: magnum, format: Format::HeatParams })
                } else {
                    bail!(
                        "no node config: neither {} nor {} exists (use --config or --heat-params)",
                        native.display(),
                        magnum.display()
                    )
                }
            }
        }
    }

    /// The config's text; for a native config, with its values file laid over it.
    fn read(&self) -> Result<String> {
        let text = std::fs::read_to_string(&self.path).with_context(|| format!("reading {}", self.path.display()))?;
        if self.format == Format::HeatParams {
            return Ok(text);
        }
        let values_path = native::values_path(&self.path);
        let values = match std::fs::read_to_string(&values_path) {
            Ok(values) => values,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(text),
            Err(e) => return Err(e).with_context(|| format!("reading {}", values_path.display())),
        };
        let values_name = values_path.display().to_string();
        native::with_values(&text, &values, &values_name)
            .map_err(|reason| anyhow::anyhow!("reading {} with {values_name}: {reason}", self.path.display()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Unreadable(#[from] anyhow::Error),
    #[error(transparent)]
    Invalid(#[from] ConfigErrors),
}

pub fn load(source: &Source, role: Option<Role>) -> Result<Loaded, LoadError> {
    let text = source.read()?;
    let name = source.path.display().to_string();
    match source.format {
        Format::Native => Ok(Loaded { config: native::parse(&text, &name, role)?, warnings: Vec::new() }),
        Format::HeatParams => Ok(heat_params::parse(&text, &name, role)?),
    }
}

/// The wait-condition endpoint and token of a config that failed to load, read as leniently as possible,
/// so that a node with a broken config still tells Heat why instead of leaving it to time out.
pub fn recover_signal(source: &Source) -> Option<(String, Secret)> {
    let text = source.read().ok()?;
    let signal = match source.format {
        Format::Native => {
            let value = native::lenient_value(&text)?;
            let signal = value.get("signal")?;
            let field = |name: &str| signal.get(name).and_then(|v| v.as_str()).map(String::from);
            (field("endpoint")?, Secret::new(field("token")?))
        }
        Format::HeatParams => {
            let line = text.lines().find(|l| l.trim_start().starts_with("WAIT_CURL="))?;
            let signal = heat_params::parse(line, "WAIT_CURL", Some(Role::Minion)).ok()?.config.signal;
            (signal.endpoint, signal.token)
        }
    };
    (!signal.0.is_empty() && !signal.1.is_empty()).then_some(signal)
}
