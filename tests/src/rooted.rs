//! One step of the agent run in-process on a rooted host (files under a directory, commands that act
//! on a live system recorded, not run): what a test needs to get the files a step writes.

use anyhow::{bail, Result};
use hearth_fragments::facts::{Facts, OsFamily};
use hearth_fragments::host::{Host, Mode};
use hearth_fragments::step::{Context, Done};
use hearth_fragments::steps::{self, Implementation};
use hearth_fragments::{NodeConfig, Role};
use serde_json::Value;
use std::path::Path;

/// The repository's node example of `role` (`examples/node/master.json`, `minion.json`) as JSON.
pub fn node_example(role: Role) -> Value {
    let name = match role {
        Role::Master => "master.json",
        Role::Minion => "minion.json",
    };
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/node").join(name);
    serde_json::from_str(&std::fs::read_to_string(path).expect("the node example")).expect("JSON")
}

/// Runs the step `name` of the config's role on a Debian tree rooted at `root` (made a Debian tree
/// first: an `/etc/os-release` is written when absent), as the node `hostname`.
pub fn run_step(config: &NodeConfig, name: &str, root: &Path, hostname: &str) -> Result<Done> {
    let os_release = root.join("etc/os-release");
    if !os_release.exists() {
        std::fs::create_dir_all(root.join("etc"))?;
        std::fs::write(&os_release, "ID=debian\n")?;
    }
    let Some(entry) = steps::find(config.role, name) else { bail!("no {} step {name}", config.role) };
    let Implementation::Step(step) = entry.implementation else { bail!("{name} is not implemented") };
    let host = Host::new(Mode::Rooted(root.to_path_buf()));
    let facts = Facts { hostname: hostname.into(), os: OsFamily::Debian };
    step(&Context { config, facts: &facts, host: &host })
}
