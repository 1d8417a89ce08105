//! The user-data of every server: a small stub that puts the node config on the node and starts
//! `hearth-agent`, which does everything else.
//!
//! Three files, in either format (cloud-init `write_files`, Ignition `storage.files`):
//! - `node.values.json`, plain: only the per-node values, as `@@name@@` placeholders that Heat's
//!   `str_replace` fills in (addresses, volume ids, the wait-condition handle). It holds nothing the
//!   operator wrote, so the only `@@…@@` Heat finds are the placeholders; the agent lays it over the
//!   node config (`native::with_values`) and checks its values as its own;
//! - `node.json`, the rest of the node config, and the bootstrap script (which also carries the agent's
//!   unit), each gzip+base64 (cloud-init `gz+b64`, Ignition `compression: gzip`): Heat cannot see into
//!   them, whatever characters the operator's values hold, and they travel at a third of their size.
//!
//! Cloud-init runs the bootstrap from `runcmd`; Ignition enables a unit that runs the same script, so on
//! every OS a wrong agent URL or checksum reaches Heat as a FAILURE with its reason.
//!
//! Placeholders are only ever whole JSON strings; the agent reads `""` as "not given", which is what Heat
//! substitutes for the attribute of a resource that was not created (no floating IP, no load balancer).

use crate::settings::Loaded;
use anyhow::{bail, Context as _, Result};
use base64::Engine as _;
use flate2::{write::GzEncoder, Compression};
use hearth_fragments::config::{native, NodeConfig, Role};
use serde_json::{json, Value};
use std::io::Write as _;

/// Nova refuses user-data whose base64 form is longer than this.
pub const NOVA_LIMIT: usize = 65_535;
/// The node paths the user-data writes and starts, as the agent knows them.
pub use hearth_fragments::paths::{AGENT, NODE_CONFIG};
pub use hearth_fragments::steps::agent_service::{DONE_MARKER, UNIT};
/// Beside the agent: on Fedora CoreOS `/usr/local/bin` is writable (`/var/usrlocal/bin`) and what
/// Ignition writes there gets the label of programs (`bin_t`), which a unit may run.
pub const BOOTSTRAP: &str = "/usr/local/bin/hearth-bootstrap";
/// The per-node values, where the agent looks for them beside [`NODE_CONFIG`] (`native::values_path`).
pub const NODE_VALUES: &str = "/etc/hearth/node.values.json";
/// The unit that runs [`BOOTSTRAP`] on an Ignition node (cloud-init runs it from `runcmd`).
pub const BOOTSTRAP_UNIT: &str = "hearth-bootstrap.service";

/// A per-node value Heat substitutes: the placeholder's name and where it sits in the node config.
#[derive(Clone, Copy, Debug)]
pub struct Placeholder {
    pub name: &'static str,
    path: &'static [&'static str],
}

const fn at(name: &'static str, path: &'static [&'static str]) -> Placeholder {
    Placeholder { name, path }
}

const COMMON: &[Placeholder] = &[
    at("node_ip", &["node", "ip"]),
    at("node_public_ip", &["node", "public_ip"]),
    at("instance_name", &["node", "instance_name"]),
    at("docker_volume", &["runtime", "volume", "id"]),
    at("cluster_subnet", &["openstack", "cluster_subnet"]),
    at("wait_endpoint", &["signal", "endpoint"]),
    at("wait_token", &["signal", "token"]),
];
const MASTER_ONLY: &[Placeholder] = &[
    at("master_index", &["node", "master_index"]),
    at("api_public_address", &["api", "public_address"]),
    at("api_private_address", &["api", "private_address"]),
    at("etcd_lb_vip", &["etcd", "lb_vip"]),
    at("etcd_volume", &["etcd", "volume", "id"]),
    // Every master's address (their ports are made before any master), for etcd's static cluster.
    at("master_addresses", &["etcd", "members"]),
];
const MINION_ONLY: &[Placeholder] =
    &[at("kube_master_ip", &["api", "master_ip"]), at("etcd_server_ip", &["etcd", "server_ip"])];

/// The placeholders of a role's user-data; the Heat templates fill exactly these.
pub fn placeholders(role: Role) -> Vec<Placeholder> {
    let own = if role == Role::Master { MASTER_ONLY } else { MINION_ONLY };
    COMMON.iter().chain(own).copied().collect()
}

/// How the image boots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    CloudInit,
    Ignition,
}

impl Format {
    pub fn for_distro(distro: &str) -> Format {
        if distro == "fedora-coreos" {
            Format::Ignition
        } else {
            Format::CloudInit
        }
    }
}

/// A role's user-data as the template passes it to Heat, with its size once Heat has filled it in.
#[derive(Clone, Debug, PartialEq)]
pub struct UserData {
    pub text: String,
    /// The base64 length of `text` itself, placeholders unfilled.
    pub base64: usize,
    /// Bytes after substitution with realistic worst-case values (long endpoint and token, IPv6 addresses).
    pub filled_bytes: usize,
    /// The base64 length Nova checks.
    pub filled_base64: usize,
}

/// Renders a role's user-data. Fails when it would exceed Nova's limit.
pub fn render(config: &NodeConfig, settings: &Loaded, format: Format) -> Result<UserData> {
    let holders = placeholders(config.role);
    let mut token = String::from("hearthsub");
    // The token marks the placeholders inside the rendered text; it must occur nowhere else, which the
    // count below proves (a longer token is tried if a base64 blob happens to spell it: nothing the
    // operator wrote is visible outside those blobs).
    let node_json = static_json(config, &holders);
    let script = bootstrap_script(config, settings)?;
    let text = loop {
        let values = values_json(&holders, &token);
        let body = match format {
            Format::CloudInit => cloud_config(&values, &node_json, &script),
            Format::Ignition => ignition(&values, &node_json, &script),
        };
        let found = body.matches(&token).count();
        if found == holders.len() {
            break holders
                .iter()
                .fold(body, |text, h| text.replace(&format!("{token}-{}", h.name), &format!("@@{}@@", h.name)));
        }
        token.push('x');
    };
    let filled = fill(&text, &holders, |h| worst_case(h.name).to_string());
    let filled_base64 = base64::engine::general_purpose::STANDARD.encode(filled.as_bytes()).len();
    if filled_base64 > NOVA_LIMIT {
        bail!(
            "the {} user-data would be {filled_base64} bytes in base64, over Nova's limit of {NOVA_LIMIT}; \
             the node config holds {} bytes (large labels, CA or proxies?)",
            config.role,
            native::render(config).len()
        );
    }
    let base64 = base64::engine::general_purpose::STANDARD.encode(text.as_bytes()).len();
    Ok(UserData { text, base64, filled_bytes: filled.len(), filled_base64 })
}

/// Replaces each `@@name@@` as Heat's `str_replace` would.
pub fn fill(text: &str, holders: &[Placeholder], value: impl Fn(&Placeholder) -> String) -> String {
    holders.iter().fold(text.to_string(), |t, h| t.replace(&format!("@@{}@@", h.name), &value(h)))
}

/// The node config as a node of its role reads it once Heat has filled in the per-node values (long but
/// real ones): what the node's own checks run on before a single server boots.
pub fn as_booted(config: &NodeConfig) -> Result<NodeConfig> {
    let mut value = serde_json::to_value(config).context("serialising the node config")?;
    for holder in placeholders(config.role) {
        set_path(&mut value, holder.path, json!(worst_case(holder.name)));
    }
    serde_json::from_value(value).context("the node config with Heat's per-node values filled in")
}

/// Long but real values: a Heat signal URL and Fernet token at their usual lengths, IPv6 addresses.
fn worst_case(name: &str) -> &'static str {
    match name {
        "wait_endpoint" => concat!(
            "https://orchestration.cloud.example.org:8004/v1/0123456789abcdef0123456789abcdef/stacks/",
            "k8s-production-cluster-abcdef-kube_masters-abcdefghijkl-0-abcdefghijkl/",
            "01234567-89ab-cdef-0123-456789abcdef/resources/wait_handle/signal"
        ),
        "wait_token" => concat!(
            "gAAAAABnZ0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_abcdefghijklm",
            "nopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRS",
            "TUVWXYZ0123456789-_abcdefghijklmnopqrstuvwxyz="
        ),
        "instance_name" => "k8s-production-cluster-abcdef-master-127",
        "master_index" => "127",
        "docker_volume" | "etcd_volume" | "cluster_subnet" => "01234567-89ab-cdef-0123-456789abcdef",
        "master_addresses" => concat!(
            "fd00:1234:5678:9abc:def0:1234:5678:9abc,fd00:1234:5678:9abc:def0:1234:5678:9abd,",
            "fd00:1234:5678:9abc:def0:1234:5678:9abe,fd00:1234:5678:9abc:def0:1234:5678:9abf,",
            "fd00:1234:5678:9abc:def0:1234:5678:9ac0"
        ),
        _ => "fd00:1234:5678:9abc:def0:1234:5678:9abc",
    }
}

/// The node config as compact JSON holding only what differs from the agent's defaults (the node-config
/// step writes the whole config on the node), without the per-node values, which [`values_json`] holds.
fn static_json(config: &NodeConfig, holders: &[Placeholder]) -> String {
    let mut value = serde_json::to_value(config).expect("a NodeConfig serialises");
    let defaults = serde_json::to_value(NodeConfig::new(config.role)).expect("a NodeConfig serialises");
    for holder in holders {
        remove_path(&mut value, holder.path);
    }
    prune_defaults(&mut value, &defaults);
    if let Value::Object(map) = &mut value {
        // Always explicit, whatever the defaults: the format and the role.
        map.insert("version".into(), json!(config.version));
        map.insert("role".into(), json!(config.role));
    }
    serde_json::to_string(&value).expect("JSON values serialise")
}

/// The per-node values file: each placeholder as the string `TOKEN-name` at its path, nothing else (so
/// nothing the operator wrote can hold an `@@`).
fn values_json(holders: &[Placeholder], token: &str) -> String {
    let mut value = json!({});
    for holder in holders {
        set_path(&mut value, holder.path, json!(format!("{token}-{}", holder.name)));
    }
    serde_json::to_string(&value).expect("JSON values serialise")
}

fn remove_path(value: &mut Value, path: &[&str]) {
    let (last, parents) = path.split_last().expect("placeholder paths are not empty");
    let mut cursor = value;
    for key in parents {
        let Some(next) = cursor.get_mut(*key) else { return };
        cursor = next;
    }
    if let Value::Object(map) = cursor {
        map.remove(*last);
    }
}

fn prune_defaults(value: &mut Value, defaults: &Value) {
    if let (Value::Object(map), Value::Object(base)) = (value, defaults) {
        map.retain(|key, v| match base.get(key) {
            Some(d) if d == v => false,
            Some(d) => {
                prune_defaults(v, d);
                !v.as_object().is_some_and(|m| m.is_empty())
            }
            None => true,
        });
    }
}

fn set_path(value: &mut Value, path: &[&str], new: Value) {
    let (last, parents) = path.split_last().expect("placeholder paths are not empty");
    let mut cursor = value;
    for key in parents {
        cursor =
            cursor.as_object_mut().expect("objects along a placeholder path").entry(*key).or_insert_with(|| json!({}));
    }
    cursor.as_object_mut().expect("object at a placeholder's parent").insert((*last).to_string(), new);
}

/// JSON text with `@` and every non-ASCII character written as `\u` escapes (both only occur inside
/// strings, so the result is the same JSON value).
pub fn ascii_json(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for ch in text.chars() {
        if ch == '@' || !ch.is_ascii() {
            let mut units = [0u16; 2];
            for unit in ch.encode_utf16(&mut units) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(ch);
        }
    }
    out
}

fn gzip_base64(data: &[u8]) -> String {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::best());
    encoder.write_all(data).expect("writing to memory");
    base64::engine::general_purpose::STANDARD.encode(encoder.finish().expect("writing to memory"))
}

/// `'value'` for a POSIX shell, whatever the value holds.
pub fn shell_quote(value: &str) -> String {
    format!("'{}'", value.replace('\'', r"'\''"))
}

fn agent_program(settings: &Loaded) -> &str {
    let path = &settings.settings.agent.path;
    if path.is_empty() {
        AGENT
    } else {
        path
    }
}

/// The systemd unit that runs the agent: once per boot until it has converged (its done-marker), its
/// output on the console so `openstack console log show` tells a failing node's story without SSH. The
/// agent's agent-service step installs the same unit, from the same function.
pub fn agent_unit(settings: &Loaded) -> String {
    hearth_fragments::steps::agent_service::unit(agent_program(settings))
}

/// The cloud-init bootstrap script, with `{{name}}` where [`bootstrap_script`] puts a value. A file of its
/// own so that it reads (and can be checked) as the shell it is.
const BOOTSTRAP_TEMPLATE: &str = include_str!("../templates/bootstrap.sh");

/// The bootstrap script of both formats: get the agent (or find it on the image), check its SHA-256,
/// write and start its unit. Any failure is signalled to Heat at once with the reason, instead of a
/// stack that waits for its timeout. The wait-condition handle is read from the per-node values, which
/// the agent also reads. Shipped without its comment lines, which are for whoever reads the template.
pub fn bootstrap_script(config: &NodeConfig, settings: &Loaded) -> Result<String> {
    let agent = &settings.settings.agent;
    let proxy = &config.proxy;
    let verify = if config.openstack.verify_ca { "true" } else { "false" };
    fill_named(
        &without_comment_lines(BOOTSTRAP_TEMPLATE),
        &[
            ("agent_url", shell_quote(&agent.url)),
            ("agent_sha256", shell_quote(&agent.sha256.to_ascii_lowercase())),
            ("agent_path", shell_quote(&agent.path)),
            ("verify_ca", verify.to_string()),
            ("http_proxy", shell_quote(&proxy.http_proxy)),
            ("https_proxy", shell_quote(&proxy.https_proxy)),
            ("no_proxy", shell_quote(&config.no_proxy())),
            // Hearth's own paths and names, which hold nothing a shell would read: written bare.
            ("node_config", NODE_CONFIG.to_string()),
            ("node_values", NODE_VALUES.to_string()),
            ("agent", AGENT.to_string()),
            ("unit", UNIT.to_string()),
            ("agent_unit", agent_unit(settings)),
        ],
    )
}

/// A shell script without its comment lines (the `#!` line kept), blank lines and indentation. Applied
/// to the template before any value is filled in, so no value and no here-document line is touched.
fn without_comment_lines(script: &str) -> String {
    let mut lines = script.lines();
    let mut out: String = lines.next().map(|first| format!("{first}\n")).unwrap_or_default();
    for line in lines.map(str::trim_start).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        out.push_str(line);
        out.push('\n');
    }
    out
}

/// The unit that runs the bootstrap on an Ignition node, once per boot until the agent has converged
/// (its done-marker), with its output on the console like the agent's.
pub fn bootstrap_unit() -> String {
    format!(
        "[Unit]\nDescription=Hearth bootstrap: fetch, check and start hearth-agent, or tell Heat why not\n\
         Wants=network-online.target\nAfter=network-online.target\nConditionPathExists=!{DONE_MARKER}\n\n\
         [Service]\nType=oneshot\nExecStart={BOOTSTRAP}\nStandardOutput=journal+console\n\
         StandardError=journal+console\n\n[Install]\nWantedBy=multi-user.target\n"
    )
}

/// `template` with each `{{name}}` replaced by its value. One pass, so that a value that happens to hold
/// `{{…}}` is written as it is; a name without a value is an error, never left in the output.
fn fill_named(template: &str, values: &[(&str, String)]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else { bail!("a {{{{ placeholder without its }}}}") };
        let name = &after[..end];
        let Some((_, value)) = values.iter().find(|(n, _)| *n == name) else {
            bail!("placeholder {{{{{name}}}}} has no value");
        };
        out.push_str(value);
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

/// One `#cloud-config` document: the files, then the bootstrap.
fn cloud_config(values_json: &str, node_json: &str, script: &str) -> String {
    let mut out = format!(
        "#cloud-config\nwrite_files:\n- path: {NODE_VALUES}\n  permissions: '0600'\n  content: |\n    {values_json}\n"
    );
    for (path, mode, data) in [(NODE_CONFIG, "0600", node_json), (BOOTSTRAP, "0700", script)] {
        out.push_str(&format!(
            "- path: {path}\n  permissions: '{mode}'\n  encoding: gz+b64\n  content: {}\n",
            gzip_base64(data.as_bytes())
        ));
    }
    out.push_str(&format!("runcmd:\n- [{BOOTSTRAP}]\n"));
    out
}

/// Percent-encodes every byte a `data:` URL may not hold as it is (RFC 2396 `uric`, which Ignition's
/// parser follows): JSON's braces and quotes, `%`, spaces, controls and non-ASCII.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.!~*'();/?:@&=+$,".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// An Ignition 3.3.0 config (Fedora CoreOS): the per-node values, the node config and the bootstrap
/// (compressed), and the unit that runs the bootstrap, enabled. Ignition fetches nothing itself: the
/// bootstrap does, so that a wrong agent URL or checksum is signalled to Heat instead of stopping the
/// boot in the initramfs.
fn ignition(values_json: &str, node_json: &str, script: &str) -> String {
    let compressed = |path: &str, mode: u32, data: &str| {
        json!({"path": path, "mode": mode, "contents": {
            "compression": "gzip", "source": format!("data:;base64,{}", gzip_base64(data.as_bytes()))
        }})
    };
    let doc = json!({
        "ignition": {"version": "3.3.0"},
        "storage": {"files": [
            {"path": NODE_VALUES, "mode": 0o600, "contents": {"source": format!("data:,{}", percent_encode(values_json))}},
            compressed(NODE_CONFIG, 0o600, node_json),
            compressed(BOOTSTRAP, 0o700, script),
        ]},
        "systemd": {"units": [{"name": BOOTSTRAP_UNIT, "enabled": true, "contents": bootstrap_unit()}]},
    });
    ascii_json(&serde_json::to_string(&doc).expect("JSON values serialise"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ascii_json_is_the_same_value_without_at_signs_or_non_ascii() {
        let value = json!({"a": "p@@ss \u{e9}\u{1f600} \"q\" \\ $ % \n"});
        let text = ascii_json(&value.to_string());
        assert!(text.is_ascii() && !text.contains('@'), "{text}");
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
    }

    #[test]
    fn shell_quoting_survives_single_quotes() {
        assert_eq!(shell_quote("a'b"), r"'a'\''b'");
    }

    #[test]
    fn named_placeholders_are_filled_in_one_pass_and_never_left_in() {
        let values = [("a", "{{b}}".to_string()), ("b", "B".to_string())];
        assert_eq!(fill_named("x{{a}}y{{b}}z", &values).unwrap(), "x{{b}}yBz");
        assert!(fill_named("{{c}}", &values).is_err());
        assert!(fill_named("x{{a", &values).is_err());
    }

    #[test]
    fn percent_encoding_keeps_only_unreserved_characters() {
        assert_eq!(percent_encode("{\"a b\":\"/@%\u{e9}\"}"), "%7B%22a%20b%22:%22/@%25%C3%A9%22%7D");
    }
}
