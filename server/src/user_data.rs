//! The user-data of every server: a small stub that puts the node config on the node and starts
//! `hearth-agent`, which does everything else.
//!
//! Values must reach the node exactly as the operator wrote them, whatever characters they hold, although
//! the text passes through Heat's `str_replace` (which fills in the per-node values: addresses, volume ids,
//! the wait-condition handle) and, for cloud-init, a YAML parser. So:
//! - the node config is JSON in which every `@` and every non-ASCII character is written as a `\u` escape:
//!   the text is printable ASCII (safe in a YAML literal block) and holds no `@@` of its own, so the only
//!   `@@name@@` sequences Heat finds are the placeholders put there on purpose;
//! - everything else the operator controls (agent URL, proxies, CA) travels gzip+base64 (cloud-init) or
//!   percent-encoded / JSON-escaped the same way (Ignition), where Heat cannot see it.
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
pub use hearth_fragments::steps::agent_service::UNIT;
pub const BOOTSTRAP: &str = "/usr/local/lib/hearth/bootstrap";

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
    // count below proves (and a longer token is tried if the operator's values happen to contain it).
    let text = loop {
        let marked = marked_json(config, &holders, &token);
        let body = match format {
            Format::CloudInit => cloud_config(&marked, config, settings)?,
            Format::Ignition => ignition(&marked, config, settings),
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
    Ok(UserData { text, filled_bytes: filled.len(), filled_base64 })
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
/// step writes the whole config on the node), with each placeholder as the string `TOKEN-name`, and
/// every `@` and non-ASCII character escaped.
fn marked_json(config: &NodeConfig, holders: &[Placeholder], token: &str) -> String {
    let mut value = serde_json::to_value(config).expect("a NodeConfig serialises");
    let defaults = serde_json::to_value(NodeConfig::new(config.role)).expect("a NodeConfig serialises");
    prune_defaults(&mut value, &defaults);
    if let Value::Object(map) = &mut value {
        // Always explicit, whatever the defaults: the format and the role.
        map.insert("version".into(), json!(config.version));
        map.insert("role".into(), json!(config.role));
    }
    for holder in holders {
        set_path(&mut value, holder.path, json!(format!("{token}-{}", holder.name)));
    }
    ascii_json(&serde_json::to_string(&value).expect("JSON values serialise"))
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

/// The cloud-init bootstrap script: get the agent (or find it on the image), check its SHA-256, start its
/// unit. Any failure is signalled to Heat at once with the reason, instead of a stack that waits for its
/// timeout. The wait-condition handle is read from the node config, which the agent also reads.
pub fn bootstrap_script(config: &NodeConfig, settings: &Loaded) -> Result<String> {
    let agent = &settings.settings.agent;
    let proxy = &config.proxy;
    let verify = if config.openstack.verify_ca { "true" } else { "false" };
    fill_named(
        BOOTSTRAP_TEMPLATE,
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
            ("agent", AGENT.to_string()),
            ("unit", UNIT.to_string()),
        ],
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
fn cloud_config(marked_json: &str, config: &NodeConfig, settings: &Loaded) -> Result<String> {
    let mut out = String::from(
        "#cloud-config\n# Hearth: the node config and a bootstrap that starts hearth-agent.\nwrite_files:\n",
    );
    out.push_str(&format!(
        "- path: {NODE_CONFIG}\n  permissions: '0600'\n  owner: root:root\n  content: |\n    {marked_json}\n"
    ));
    let mut file = |path: &str, mode: &str, data: &str| {
        out.push_str(&format!(
            "- path: {path}\n  permissions: '{mode}'\n  encoding: gz+b64\n  content: {}\n",
            gzip_base64(data.as_bytes())
        ));
    };
    file(&format!("/etc/systemd/system/{UNIT}"), "0644", &agent_unit(settings));
    file(BOOTSTRAP, "0700", &bootstrap_script(config, settings)?);
    out.push_str(&format!("runcmd:\n- [{BOOTSTRAP}]\n"));
    Ok(out)
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for a `data:` URL.
fn percent_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn data_url(text: &str) -> String {
    format!("data:,{}", percent_encode(text))
}

/// An Ignition 3.3.0 config (Fedora CoreOS): the node config, the agent fetched and verified by
/// Ignition itself, and the agent's unit, enabled.
fn ignition(marked_json: &str, config: &NodeConfig, settings: &Loaded) -> String {
    let agent = &settings.settings.agent;
    let mut files = vec![json!({
        "path": NODE_CONFIG, "mode": 0o600, "overwrite": true,
        "contents": {"source": data_url(marked_json)}
    })];
    let ca = config.openstack.ca_pem.trim();
    if agent.path.is_empty() {
        files.push(json!({
            "path": AGENT, "mode": 0o755, "overwrite": true,
            "contents": {"source": agent.url, "verification": {"hash": format!("sha256-{}", agent.sha256.to_ascii_lowercase())}}
        }));
    }
    let mut ignition = json!({"version": "3.3.0"});
    if !ca.is_empty() {
        ignition["security"] =
            json!({"tls": {"certificateAuthorities": [{"source": data_url(&config.openstack.ca_pem)}]}});
    }
    let proxy = &config.proxy;
    if proxy.is_set() {
        let mut p = json!({"noProxy": config.no_proxy().split(',').collect::<Vec<_>>()});
        if !proxy.http_proxy.is_empty() {
            p["httpProxy"] = json!(proxy.http_proxy);
        }
        if !proxy.https_proxy.is_empty() {
            p["httpsProxy"] = json!(proxy.https_proxy);
        }
        ignition["proxy"] = p;
    }
    let doc = json!({
        "ignition": ignition,
        "storage": {"files": files},
        "systemd": {"units": [{"name": UNIT, "enabled": true, "contents": agent_unit(settings)}]},
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
        assert_eq!(percent_encode("a b/@%\u{e9}"), "a%20b%2F%40%25%C3%A9");
    }
}
