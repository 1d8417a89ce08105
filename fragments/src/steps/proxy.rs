//! part-009/010 proxy: the cluster's HTTP(S) proxy for the container runtime, kubelet, etcd, the agent
//! and login shells.
//!
//! Magnum wrote docker drop-ins and appended to `/etc/bashrc` on every run; Hearth writes every file
//! whole, removes them when the proxy is unset again, and extends NO_PROXY with the cluster's own
//! addresses so traffic inside the cluster never goes to the proxy.

use crate::host::{FileSpec, Outcome, Systemd};
use crate::paths::PROXY_ENV_FILE;
use crate::step::{Context, Done};
use anyhow::Result;
use std::path::Path;

/// The proxy for login shells (every drop-in points at `paths::PROXY_ENV_FILE`, one place for the values).
pub const PROFILE: &str = "/etc/profile.d/hearth-proxy.sh";
/// Units that reach registries or discovery services through the proxy.
pub const UNITS: &[&str] = &["docker", "containerd", "kubelet", "etcd", "hearth-agent"];
/// Units restarted (when already running) so a change reaches them.
const RESTART: &[&str] = &["docker", "containerd"];

fn drop_in(unit: &str) -> String {
    format!("/etc/systemd/system/{unit}.service.d/http-proxy.conf")
}

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let proxy = &ctx.config.proxy;
    if !proxy.is_set() {
        let files =
            [PROXY_ENV_FILE.to_string(), PROFILE.to_string()].into_iter().chain(UNITS.iter().map(|u| drop_in(u)));
        let removed = files
            .map(|f| ctx.host.remove_file(Path::new(&f)))
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .any(|o| o != Outcome::Unchanged);
        if removed {
            reload(ctx)?;
            return Ok(Done::Applied);
        }
        return Ok(Done::Skipped("no proxy configured".into()));
    }

    let no_proxy = ctx.config.no_proxy();
    let vars = [
        ("HTTP_PROXY", proxy.http_proxy.as_str()),
        ("HTTPS_PROXY", proxy.https_proxy.as_str()),
        ("NO_PROXY", no_proxy.as_str()),
    ];
    // Proxy URLs may carry credentials: keep the files that hold them root-only unless they carry none,
    // in which case login shells of every user may read them.
    let has_credentials = [&proxy.http_proxy, &proxy.https_proxy].iter().any(|u| u.contains('@'));
    let shared_mode = if has_credentials { 0o600 } else { 0o644 };

    let mut changed = false;
    changed |=
        ctx.host.write_file(&FileSpec::new(PROXY_ENV_FILE, environment_file(&vars), 0o600))? != Outcome::Unchanged;
    ctx.host.write_file(&FileSpec::new(PROFILE, profile_script(&vars), shared_mode))?;
    let unit_text = format!("# Written by hearth-agent (proxy step).\n[Service]\nEnvironmentFile={PROXY_ENV_FILE}\n");
    for unit in UNITS {
        changed |=
            ctx.host.write_file(&FileSpec::new(drop_in(unit), unit_text.as_bytes(), 0o644))? != Outcome::Unchanged;
    }
    if changed {
        reload(ctx)?;
    }
    Ok(Done::Applied)
}

/// Make systemd read the new drop-ins and restart the runtimes that are already running.
fn reload(ctx: &Context) -> Result<()> {
    ctx.host.systemd(Systemd::DaemonReload, None)?;
    for unit in RESTART {
        ctx.host.systemd(Systemd::TryRestart, Some(&format!("{unit}.service")))?;
    }
    Ok(())
}

/// systemd `EnvironmentFile=` syntax, which reads double quotes like a shell and expands `$VAR`: so
/// `\`, `"`, `$` and `` ` `` are escaped. Lower-case twins because curl and many Go and Python tools read
/// only those.
fn environment_file(vars: &[(&str, &str)]) -> String {
    let mut out = String::from("# Written by hearth-agent (proxy step).\n");
    for (name, value) in vars.iter().filter(|(_, v)| !v.is_empty()) {
        let mut quoted = String::from("\"");
        for c in value.chars() {
            if matches!(c, '\\' | '"' | '$' | '`') {
                quoted.push('\\');
            }
            quoted.push(c);
        }
        quoted.push('"');
        out.push_str(&format!("{name}={quoted}\n{}={quoted}\n", name.to_ascii_lowercase()));
    }
    out
}

/// A POSIX shell snippet for login shells: single quotes, so nothing in a value is expanded.
fn profile_script(vars: &[(&str, &str)]) -> String {
    let mut out = String::from("# Written by hearth-agent (proxy step).\n");
    for (name, value) in vars.iter().filter(|(_, v)| !v.is_empty()) {
        let quoted = format!("'{}'", value.replace('\'', "'\\''"));
        out.push_str(&format!("export {name}={quoted} {}={quoted}\n", name.to_ascii_lowercase()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    use crate::config::NodeConfig;

    #[test]
    fn no_proxy_keeps_the_operators_entries_and_adds_the_cluster() {
        let mut c = NodeConfig::new(Role::Minion);
        c.proxy.no_proxy = "example.internal, 127.0.0.1".into();
        c.node.ip = Some("10.0.0.5".parse().unwrap());
        c.api.master_ip = Some("10.0.0.3".parse().unwrap());
        let list = c.no_proxy();
        assert_eq!(
            list,
            "example.internal,127.0.0.1,localhost,169.254.169.254,10.0.0.5,10.0.0.3,\
             10.100.0.0/16,10.254.0.0/16,.svc,.cluster.local"
        );
    }

    #[test]
    fn quoting_survives_hostile_values() {
        let vars = [("HTTP_PROXY", "http://u:p'a\"s$s@proxy:3128")];
        assert!(environment_file(&vars).contains(r#"HTTP_PROXY="http://u:p'a\"s\$s@proxy:3128""#));
        assert!(profile_script(&vars).contains(r#"export HTTP_PROXY='http://u:p'\''a"s$s@proxy:3128'"#));
    }
}
