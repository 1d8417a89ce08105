//! The node's container runtime, docker or containerd, and its daemon config, written whole (by the
//! docker-storage step).
//!
//! Which runtime: `runtime.kind` (`docker`, Magnum's `host-docker`, or `containerd`); empty chooses
//! containerd from Kubernetes 1.24 on (kubelet lost dockershim then) and docker before it, as Magnum's
//! drivers did. Other steps read the choice through [`RuntimeKind::of`] (unit name, data directory, CRI
//! socket), so every step agrees on it.
//!
//! | runtime | file | what |
//! |---|---|---|
//! | docker | `/etc/docker/daemon.json` | cgroup driver (`exec-opts`), storage driver, insecure registries, Docker Hub mirrors, `json-file` logs with rotation |
//! | containerd | `/etc/containerd/config.toml` | CRI: `SystemdCgroup`, snapshotter, sandbox (pause) image from the image prefix, CNI directories, registry hosts directory |
//! | containerd | `/etc/containerd/certs.d/<registry>/hosts.toml` | one per insecure registry (HTTPS without verification, then HTTP) and for Docker Hub mirrors |
//!
//! Proxy settings are not here: the proxy step gives both units their drop-in.
//!
//! Distribution packaging of docker passes some settings as flags, and dockerd refuses to start when a
//! setting is both a flag and in `daemon.json`. Hearth reads what is on the node instead of guessing by
//! OS family: a vendor `docker.service` that hard-codes `native.cgroupdriver=` (Fedora) gets an
//! override copy in `/etc/systemd/system` with the configured driver (what Magnum did) and `daemon.json`
//! leaves `exec-opts` out; a `--log-driver` in `/etc/sysconfig/docker`'s `OPTIONS` (Fedora's journald) is
//! removed, as Magnum did, because kubelet reads docker's `json-file` logs; a vendor unit that passes
//! `$DOCKER_STORAGE_OPTIONS` (Fedora Atomic's) gets the storage driver there, in
//! `/etc/sysconfig/docker-storage` as Magnum wrote it, and `daemon.json` leaves it out (dockerd refuses a
//! driver given twice); elsewhere a `/etc/sysconfig/docker-storage` is emptied so the driver comes from
//! `daemon.json` alone. devicemapper's options are docker-storage-setup's, which it writes there itself.

use crate::config::{CgroupDriver, NodeConfig, StorageDriverChoice};
use crate::host::{FileSpec, Outcome};
use crate::kube::RuntimeKind;
use crate::paths::{CNI_BIN_DIR, CNI_CONF_DIR, CONTAINERD_HOSTS_DIR};
use crate::step::Context;
use anyhow::{bail, Context as _, Result};
use serde_json::json;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const DOCKER_DAEMON_JSON: &str = "/etc/docker/daemon.json";
pub const CONTAINERD_CONFIG: &str = "/etc/containerd/config.toml";
/// The first line of every file this module writes: it tells operators not to edit by hand, and marks
/// the containerd host files Hearth may remove again.
const HEADER: &str = "# Written by hearth-agent (docker-storage step); replaced whole on every run.";
const DOCKER_OVERRIDE_UNIT: &str = "/etc/systemd/system/docker.service";
const DOCKER_VENDOR_UNITS: &[&str] = &["/usr/lib/systemd/system/docker.service", "/lib/systemd/system/docker.service"];
const DOCKER_SYSCONFIG: &str = "/etc/sysconfig/docker";
const DOCKER_STORAGE_SYSCONFIG: &str = "/etc/sysconfig/docker-storage";
/// The variable of [`DOCKER_STORAGE_SYSCONFIG`] a unit that takes docker-storage-setup's options names.
const STORAGE_OPTIONS_VAR: &str = "DOCKER_STORAGE_OPTIONS";
/// The storage driver asked for (`runtime.storage_driver`, default `overlay2`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StorageDriver {
    Overlay2,
    Overlay,
    Devicemapper,
}

impl StorageDriver {
    pub fn of(config: &NodeConfig) -> Result<StorageDriver> {
        Ok(match config.runtime.storage_driver {
            StorageDriverChoice::Default | StorageDriverChoice::Overlay2 => StorageDriver::Overlay2,
            StorageDriverChoice::Overlay => StorageDriver::Overlay,
            StorageDriverChoice::Devicemapper => StorageDriver::Devicemapper,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            StorageDriver::Overlay2 => "overlay2",
            StorageDriver::Overlay => "overlay",
            StorageDriver::Devicemapper => "devicemapper",
        }
    }
}

/// The pod sandbox ("pause") image: the one kube-steps gives kubelet, so the two never disagree.
pub fn sandbox_image(config: &NodeConfig) -> Result<String> {
    Ok(crate::kube::pause_image(config, crate::kube::KubeVersion::of(config)?))
}

/// Registries the runtime reaches without TLS verification, as `host[:port]`: the configured insecure
/// registry (a scheme or trailing `/` given with it dropped: docker refuses them) and, when the local
/// registry runs, `localhost:<port>` (loopback is insecure by default for docker, not for containerd).
pub fn insecure_registries(config: &NodeConfig) -> Vec<String> {
    let mut hosts = Vec::new();
    let url = config.runtime.insecure_registry_url.trim();
    if !url.is_empty() {
        let host = url.trim_start_matches("http://").trim_start_matches("https://");
        hosts.push(host.split('/').next().unwrap_or(host).to_string());
    }
    if config.registry.enabled {
        hosts.push(format!("localhost:{}", config.registry.port));
    }
    hosts.dedup();
    hosts
}

/// Writes the daemon config of `kind` whole. Returns whether anything changed that the running daemon
/// only reads at start (the caller restarts it), and whether a unit file changed (daemon-reload first).
pub fn configure(ctx: &Context, kind: RuntimeKind, driver: StorageDriver) -> Result<Changes> {
    match kind {
        RuntimeKind::Docker => configure_docker(ctx, driver),
        RuntimeKind::Containerd => configure_containerd(ctx, driver),
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    pub config: bool,
    pub unit: bool,
}

fn changed(outcome: Outcome) -> bool {
    outcome != Outcome::Unchanged
}

fn configure_docker(ctx: &Context, driver: StorageDriver) -> Result<Changes> {
    let config = ctx.config;
    let cgroup_driver = &config.kubernetes.cgroup_driver;
    let mut changes = Changes::default();

    // A vendor unit that hard-codes the cgroup driver as a flag: override it with a copy (Magnum's way).
    let vendor = DOCKER_VENDOR_UNITS.iter().map(|p| ctx.host.read_to_string(Path::new(p))).find_map(|r| r.transpose());
    let vendor = vendor.transpose()?;
    let unit_sets_cgroup_driver = vendor.as_deref().is_some_and(|unit| unit.contains(CGROUP_FLAG));
    if let Some(unit) = vendor.as_deref().filter(|_| unit_sets_cgroup_driver) {
        let copy = format!("{}\n{}", HEADER, with_cgroup_driver(unit, cgroup_driver.word()));
        changes.unit |= changed(ctx.host.write_file(&FileSpec::new(DOCKER_OVERRIDE_UNIT, copy, 0o644))?);
    }

    if let Some(sysconfig) = ctx.host.read_to_string(Path::new(DOCKER_SYSCONFIG))? {
        let without = without_log_driver(&sysconfig);
        if without != sysconfig {
            changes.config |= changed(ctx.host.write_file(&FileSpec::new(DOCKER_SYSCONFIG, without, 0o644))?);
        }
    }
    // Fedora Atomic's unit passes docker-storage-setup's options (`$DOCKER_STORAGE_OPTIONS`, from
    // /etc/sysconfig/docker-storage) as flags: the driver goes there, as Magnum wrote it, and not into
    // daemon.json too, or a boot on which docker-storage-setup writes its own options would give dockerd
    // the driver twice, which it refuses.
    let unit_takes_storage_options = vendor.as_deref().is_some_and(|unit| unit.contains(STORAGE_OPTIONS_VAR));
    let storage_in_daemon_json = driver != StorageDriver::Devicemapper && !unit_takes_storage_options;
    if driver != StorageDriver::Devicemapper
        && (unit_takes_storage_options || ctx.host.exists(Path::new(DOCKER_STORAGE_SYSCONFIG))?)
    {
        let text = if unit_takes_storage_options {
            format!("{HEADER}\n{STORAGE_OPTIONS_VAR}=\"--storage-driver {}\"\n", driver.name())
        } else {
            format!("{HEADER}\n# The storage driver is set in {DOCKER_DAEMON_JSON}.\n{STORAGE_OPTIONS_VAR}=\n")
        };
        changes.config |= changed(ctx.host.write_file(&FileSpec::new(DOCKER_STORAGE_SYSCONFIG, text, 0o644))?);
    }

    let daemon = docker_daemon_json(config, storage_in_daemon_json.then_some(driver), !unit_sets_cgroup_driver);
    changes.config |= changed(ctx.host.write_file(&FileSpec::new(DOCKER_DAEMON_JSON, daemon, 0o644))?);
    Ok(changes)
}

const CGROUP_FLAG: &str = "native.cgroupdriver=";

/// `unit` with the value after every `native.cgroupdriver=` replaced by `driver`.
fn with_cgroup_driver(unit: &str, driver: &str) -> String {
    let mut out = String::with_capacity(unit.len());
    let mut rest = unit;
    while let Some(at) = rest.find(CGROUP_FLAG) {
        let (before, after) = rest.split_at(at + CGROUP_FLAG.len());
        out.push_str(before);
        out.push_str(driver);
        let end = after.find(|c: char| c.is_whitespace() || c == '"' || c == '\'').unwrap_or(after.len());
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// A sysconfig text with every `--log-driver=X` / `--log-driver X` removed from its (non-comment) lines.
fn without_log_driver(text: &str) -> String {
    text.split_inclusive('\n')
        .map(
            |line| {
                if line.trim_start().starts_with('#') {
                    line.to_string()
                } else {
                    without_flag(line, "--log-driver")
                }
            },
        )
        .collect()
}

/// `line` without `flag` and its value, and without one of the spaces around them.
fn without_flag(line: &str, flag: &str) -> String {
    let mut out = line.to_string();
    while let Some(at) = out.find(flag) {
        let after = &out[at + flag.len()..];
        let separator = usize::from(after.starts_with('=') || after.starts_with(' '));
        let value = &after[separator..];
        let value_len = value.find(|c: char| c.is_whitespace() || c == '\'' || c == '"').unwrap_or(value.len());
        let (mut start, mut end) = (at, at + flag.len() + separator + value_len);
        if out[..start].ends_with(' ') {
            start -= 1;
        } else if out[end..].starts_with(' ') {
            end += 1;
        }
        out.replace_range(start..end, "");
    }
    out
}

/// docker's `daemon.json`. Logs go to `json-file` (what kubelet's dockershim reads) with rotation, so a
/// chatty container cannot fill the data volume.
fn docker_daemon_json(config: &NodeConfig, driver: Option<StorageDriver>, with_cgroup_driver: bool) -> String {
    let mut daemon = serde_json::Map::new();
    if with_cgroup_driver {
        daemon.insert("exec-opts".into(), json!([format!("{CGROUP_FLAG}{}", config.kubernetes.cgroup_driver)]));
    }
    if let Some(driver) = driver {
        daemon.insert("storage-driver".into(), json!(driver.name()));
    }
    let insecure = insecure_registries(config);
    if !insecure.is_empty() {
        daemon.insert("insecure-registries".into(), json!(insecure));
    }
    if !config.runtime.registry_mirrors.is_empty() {
        daemon.insert("registry-mirrors".into(), json!(config.runtime.registry_mirrors));
    }
    daemon.insert("log-driver".into(), json!("json-file"));
    daemon.insert("log-opts".into(), json!({"max-size": "50m", "max-file": "5"}));
    let mut text = serde_json::to_string_pretty(&serde_json::Value::Object(daemon)).expect("JSON values serialise");
    text.push('\n');
    text
}

fn configure_containerd(ctx: &Context, driver: StorageDriver) -> Result<Changes> {
    if driver == StorageDriver::Devicemapper {
        bail!(
            "runtime.storage_driver (DOCKER_STORAGE_DRIVER) devicemapper needs the docker runtime: Magnum's \
             devicemapper storage is docker's thin pool from docker-storage-setup; use overlay2 with containerd"
        );
    }
    let config = ctx.config;
    let mut changes = Changes::default();
    let text = containerd_config(config)?;
    changes.config |= changed(ctx.host.write_file(&FileSpec::new(CONTAINERD_CONFIG, text, 0o644))?);

    let wanted = containerd_hosts(config);
    for (host, text) in &wanted {
        let path = hosts_file(host);
        changes.config |= changed(ctx.host.write_file(&FileSpec::new(path, text.as_bytes(), 0o644))?);
    }
    // Host files of registries no longer configured, but only those Hearth wrote.
    for host in hosts_on_disk(ctx)? {
        if wanted.iter().all(|(h, _)| *h != host) {
            let path = hosts_file(&host);
            let ours = ctx.host.read_to_string(&path)?.is_some_and(|t| t.starts_with(HEADER));
            if ours {
                changes.config |= changed(ctx.host.remove_file(&path)?);
            }
        }
    }
    Ok(changes)
}

fn hosts_file(host: &str) -> PathBuf {
    Path::new(CONTAINERD_HOSTS_DIR).join(host).join("hosts.toml")
}

/// The registry directories under the hosts directory (read through the host's root).
fn hosts_on_disk(ctx: &Context) -> Result<Vec<String>> {
    let dir = ctx.host.resolve(Path::new(CONTAINERD_HOSTS_DIR))?;
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("listing {CONTAINERD_HOSTS_DIR}")),
    };
    let mut hosts = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("listing {CONTAINERD_HOSTS_DIR}"))?;
        hosts.push(entry.file_name().to_string_lossy().into_owned());
    }
    hosts.sort();
    Ok(hosts)
}

/// containerd's config (schema version 2, read by containerd 1.5 to 1.7; 2.x migrates it).
fn containerd_config(config: &NodeConfig) -> Result<String> {
    let systemd_cgroup = config.kubernetes.cgroup_driver == CgroupDriver::Systemd;
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let mut out = String::new();
    let _ = writeln!(out, "{HEADER}");
    let _ = writeln!(out, "version = 2");
    let _ = writeln!(out, "root = \"/var/lib/containerd\"");
    let _ = writeln!(out, "state = \"/run/containerd\"");
    let _ = writeln!(out, "\n[grpc]\n  address = \"/run/containerd/containerd.sock\"");
    let _ = writeln!(out, "\n[{cri}]");
    let _ = writeln!(out, "  sandbox_image = {}", toml_string(&sandbox_image(config)?));
    // Containers never get a lower OOM score than containerd's own. Where containerd runs at its unit's
    // -999 this changes nothing (the kubelet asks -998 for sandboxes and more for the rest); where the
    // node is itself a container without CAP_SYS_RESOURCE (LXD, systemd-nspawn), containerd stays at 0
    // and, unrestricted, every pod sandbox fails in runc ("can't get final child's PID from pipe").
    let _ = writeln!(out, "  restrict_oom_score_adj = true");
    let _ = writeln!(out, "\n[{cri}.containerd]");
    let _ = writeln!(out, "  snapshotter = \"overlayfs\"");
    let _ = writeln!(out, "  default_runtime_name = \"runc\"");
    let _ = writeln!(out, "\n[{cri}.containerd.runtimes.runc]");
    let _ = writeln!(out, "  runtime_type = \"io.containerd.runc.v2\"");
    let _ = writeln!(out, "\n[{cri}.containerd.runtimes.runc.options]");
    let _ = writeln!(out, "  SystemdCgroup = {systemd_cgroup}");
    let _ = writeln!(out, "\n[{cri}.cni]");
    let _ = writeln!(out, "  bin_dir = \"{CNI_BIN_DIR}\"");
    let _ = writeln!(out, "  conf_dir = \"{CNI_CONF_DIR}\"");
    let _ = writeln!(out, "\n[{cri}.registry]");
    let _ = writeln!(out, "  config_path = \"{CONTAINERD_HOSTS_DIR}\"");
    Ok(out)
}

/// `hosts.toml` per registry host: insecure registries are tried over HTTPS without verification, then
/// over HTTP (docker's meaning of "insecure"); Docker Hub goes through the mirrors first.
fn containerd_hosts(config: &NodeConfig) -> Vec<(String, String)> {
    let all = ["pull", "resolve", "push"];
    let capabilities = |caps: &[&str]| caps.iter().map(|c| toml_string(c)).collect::<Vec<_>>().join(", ");
    let mut files = Vec::new();
    for host in insecure_registries(config) {
        let mut text = format!("{HEADER}\n# An insecure registry: HTTPS without verification, then HTTP.\n");
        let _ = writeln!(text, "server = {}", toml_string(&format!("http://{host}")));
        let _ = writeln!(text, "\n[host.{}]", toml_string(&format!("https://{host}")));
        let _ = writeln!(text, "  capabilities = [{}]", capabilities(&all));
        let _ = writeln!(text, "  skip_verify = true");
        let _ = writeln!(text, "\n[host.{}]", toml_string(&format!("http://{host}")));
        let _ = writeln!(text, "  capabilities = [{}]", capabilities(&all));
        files.push((host, text));
    }
    if !config.runtime.registry_mirrors.is_empty() {
        let mut text = format!("{HEADER}\n# Docker Hub, through its mirrors first.\n");
        let _ = writeln!(text, "server = \"https://registry-1.docker.io\"");
        for mirror in &config.runtime.registry_mirrors {
            let _ = writeln!(text, "\n[host.{}]", toml_string(mirror.trim_end_matches('/')));
            let _ = writeln!(text, "  capabilities = [{}]", capabilities(&["pull", "resolve"]));
        }
        files.push(("docker.io".to_string(), text));
    }
    files
}

/// A TOML basic string.
fn toml_string(value: &str) -> String {
    let mut out = String::from("\"");
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;

    fn config(kind: &str, tag: &str) -> NodeConfig {
        let mut c = NodeConfig::new(Role::Minion);
        c.runtime.kind = kind.parse().unwrap();
        c.kubernetes.tag = tag.into();
        c.kubernetes.version = tag.into();
        c
    }

    #[test]
    fn the_runtime_follows_the_kind_then_the_kubernetes_version() {
        let kind = |k: &str, tag: &str| RuntimeKind::for_node(&config(k, tag));
        assert_eq!(kind("", "v1.11.6").unwrap(), RuntimeKind::Docker);
        assert_eq!(kind("", "v1.23.17").unwrap(), RuntimeKind::Docker);
        assert_eq!(kind("", "v1.24.0").unwrap(), RuntimeKind::Containerd);
        assert_eq!(kind("", "v1.31.2-rancher1").unwrap(), RuntimeKind::Containerd);
        assert_eq!(kind("host-docker", "v1.11.6").unwrap(), RuntimeKind::Docker);
        assert_eq!(kind("containerd", "v1.11.6").unwrap(), RuntimeKind::Containerd);
        let no_dockershim = kind("docker", "v1.30.0").unwrap_err().to_string();
        assert!(no_dockershim.contains("dockershim"), "{no_dockershim}");
        let err = kind("", "latest").unwrap_err().to_string();
        assert!(err.contains("KUBE_TAG") && err.contains("\"latest\""), "{err}");
    }

    #[test]
    fn the_sandbox_image_is_the_kubelets_pause_image() {
        let mut c = config("", "v1.24.17");
        let kubelets = |c: &NodeConfig| crate::kube::pause_image(c, crate::kube::KubeVersion::of(c).unwrap());
        assert_eq!(sandbox_image(&c).unwrap(), kubelets(&c));
        c.runtime.container_infra_prefix = "registry.example:5000/magnum/".into();
        assert!(sandbox_image(&c).unwrap().starts_with("registry.example:5000/magnum/pause:"));
        assert_eq!(sandbox_image(&c).unwrap(), kubelets(&c));
    }

    #[test]
    fn insecure_registries_lose_their_scheme_and_add_the_local_registry() {
        let mut c = config("", "v1.24.17");
        c.runtime.insecure_registry_url = "http://10.0.0.9:5000/".into();
        c.registry.enabled = true;
        assert_eq!(insecure_registries(&c), ["10.0.0.9:5000", "localhost:5000"]);
    }

    #[test]
    fn fedora_flags_are_rewritten_not_duplicated() {
        let unit =
            "ExecStart=/usr/bin/dockerd-current \\\n          --exec-opt native.cgroupdriver=systemd \\\n  $OPTIONS\n";
        assert_eq!(
            with_cgroup_driver(unit, "cgroupfs"),
            "ExecStart=/usr/bin/dockerd-current \\\n          --exec-opt native.cgroupdriver=cgroupfs \\\n  $OPTIONS\n"
        );
        let atomic = "# /etc/sysconfig/docker\nOPTIONS='--selinux-enabled --log-driver=journald --signature-verification=false'\n";
        assert_eq!(
            without_log_driver(atomic),
            "# /etc/sysconfig/docker\nOPTIONS='--selinux-enabled --signature-verification=false'\n"
        );
        let fcos = "OPTIONS=\"--log-driver=journald --live-restore\"\nX=1\n";
        assert_eq!(without_log_driver(fcos), "OPTIONS=\"--live-restore\"\nX=1\n");
        let separate = "OPTIONS='--selinux-enabled --log-driver journald'\n";
        assert_eq!(without_log_driver(separate), "OPTIONS='--selinux-enabled'\n");
    }

    #[test]
    fn toml_strings_escape_what_toml_needs() {
        assert_eq!(toml_string("a\"b\\c\n"), "\"a\\\"b\\\\c\\u000A\"");
    }
}
