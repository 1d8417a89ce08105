//! The native node config: `/etc/hearth/node.json`, JSON as the server writes it, YAML accepted for files
//! written by hand. Unknown fields are refused so a typo never silently falls back to a default.

use super::choices::{
    CgroupDriver, FlannelBackend, IngressController, NetworkDriver, RuntimeChoice, SelinuxMode, StorageDriverChoice,
};
use super::error::{ConfigError, ConfigErrors};
use super::{validate, NodeConfig, Role, VERSION};

/// The choice fields (native path, heat-params key) and their words: checked before the typed parse, so
/// every wrong one is named with its field at once rather than as serde's first error.
const CHOICES: &[(&str, &str, &[&str])] = &[
    ("kubernetes.cgroup_driver", "CGROUP_DRIVER", CgroupDriver::WORDS),
    ("network.driver", "NETWORK_DRIVER", NetworkDriver::WORDS),
    ("network.flannel_backend", "FLANNEL_BACKEND", FlannelBackend::WORDS),
    ("runtime.storage_driver", "DOCKER_STORAGE_DRIVER", StorageDriverChoice::WORDS),
    ("runtime.kind", "CONTAINER_RUNTIME", RuntimeChoice::WORDS),
    ("addons.ingress_controller", "INGRESS_CONTROLLER", IngressController::WORDS),
    ("agent.selinux_mode", "", SelinuxMode::WORDS),
];

/// The wrong choices in `document`, each removed from it so that the rest still parses (and is
/// validated) with that field's default.
fn take_wrong_choices(document: &mut serde_json::Value) -> Vec<ConfigError> {
    let mut errors = Vec::new();
    for (path, key, words) in CHOICES {
        let (section, field) = path.split_once('.').expect("choice paths are section.field");
        let Some(table) = document.get_mut(section).and_then(serde_json::Value::as_object_mut) else { continue };
        let Some(word) = table.get(field).and_then(serde_json::Value::as_str).filter(|w| !words.contains(w)) else {
            continue;
        };
        let key = if key.is_empty() { path.to_string() } else { format!("{path} ({key})") };
        let reason = format!("must be one of {}", words.join(", "));
        errors.push(ConfigError { key, value: word.to_string(), reason, line: None });
        table.remove(field);
    }
    errors
}

/// How many wrong fields one file may report; past that it is not a node config at all.
const MAX_ERRORS: usize = 100;

/// Removes the value at JSON `pointer`, returning it.
fn remove(document: &mut serde_json::Value, pointer: &str) -> Option<serde_json::Value> {
    let (parent, last) = pointer.rsplit_once('/')?;
    document.pointer_mut(parent)?.as_object_mut()?.remove(last)
}

/// Parses a native config. `role`, when given on the command line, must match the file's.
pub fn parse(text: &str, source_name: &str, role: Option<Role>) -> Result<NodeConfig, ConfigErrors> {
    let fail = |key: &str, value: String, reason: String| ConfigErrors {
        source_name: source_name.to_string(),
        errors: vec![ConfigError { key: key.to_string(), value, reason, line: None }],
    };
    // JSON is read as JSON: a YAML parser refuses escapes JSON allows (UTF-16 surrogate pairs).
    let is_json = text.trim_start().starts_with('{');
    // Check the version before the shape, so a future format gets "unsupported version", not a list of
    // unknown fields.
    let probe: serde_json::Value = if is_json {
        serde_json::from_str(text).map_err(|e| fail("(document)", String::new(), e.to_string()))?
    } else {
        serde_yaml::from_str(text).map_err(|e| fail("(document)", String::new(), e.to_string()))?
    };
    match probe.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(VERSION) => {}
        Some(v) => return Err(fail("version", v.to_string(), format!("unsupported; this agent reads {VERSION}"))),
        None => return Err(fail("version", String::new(), format!("missing; expected \"version\": {VERSION}"))),
    }
    let mut probe = probe;
    let mut errors = take_wrong_choices(&mut probe);
    // The typed parse names the field that failed and shows its value, which serde alone does not; it is
    // repeated without each field it refuses, so one run names every wrong field.
    let mut refused: Vec<String> = Vec::new();
    let config: NodeConfig = loop {
        let e = match serde_path_to_error::deserialize::<_, NodeConfig>(&probe) {
            Ok(config) => break config,
            Err(e) => e,
        };
        let path = e.path().to_string();
        let pointer = format!("/{}", path.replace('.', "/"));
        let value = match probe.pointer(&pointer) {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(other) => other.to_string(),
            None => String::new(),
        };
        let key = if path == "." { "(document)".to_string() } else { path.clone() };
        let reason = super::words::serde_in_words(&e.into_inner().to_string(), "the node config");
        errors.push(ConfigError { key, value, reason, line: None });
        if path == "." || errors.len() >= MAX_ERRORS || remove(&mut probe, &pointer).is_none() {
            return Err(ConfigErrors { source_name: source_name.to_string(), errors });
        }
        refused.push(path);
    };
    if let Some(cli) = role.filter(|r| *r != config.role) {
        return Err(fail(
            "role",
            config.role.to_string(),
            format!("the file says {} but --role says {cli}", config.role),
        ));
    }
    // What validation says of a refused field (now its default) would only repeat that it was refused.
    let repeats = |error: &ConfigError| refused.iter().any(|path| error.key.starts_with(path.as_str()));
    errors.extend(validate::validate(&config).into_iter().filter(|e| !repeats(e)));
    if errors.is_empty() {
        Ok(config)
    } else {
        Err(ConfigErrors { source_name: source_name.to_string(), errors })
    }
}

/// The document as untyped data, whatever its fields: for reading the signal endpoint out of a config
/// that failed to load.
pub fn lenient_value(text: &str) -> Option<serde_json::Value> {
    serde_yaml::from_str(text).ok()
}

/// The per-node values file beside a native config (`node.json` → `node.values.json`): the few values
/// Heat fills in per server (addresses, volume ids, the wait-condition handle). The server keeps them
/// out of `node.json` so that `node.json` can travel compressed, where Heat's `str_replace` cannot see.
pub fn values_path(config: &std::path::Path) -> std::path::PathBuf {
    config.with_extension("values.json")
}

/// The config text with the values file laid over it, field by field (objects merge, anything else is
/// replaced), as one JSON document for [`parse`]: the values are then checked exactly as if the config
/// had held them. `Err` says which document is not a JSON/YAML object.
pub fn with_values(text: &str, values: &str, values_name: &str) -> Result<String, String> {
    let mut document: serde_json::Value = if text.trim_start().starts_with('{') {
        serde_json::from_str(text).map_err(|e| e.to_string())?
    } else {
        serde_yaml::from_str(text).map_err(|e| e.to_string())?
    };
    let overlay: serde_json::Value =
        serde_json::from_str(values).map_err(|e| format!("{values_name} is not JSON: {e}"))?;
    if !overlay.is_object() {
        return Err(format!("{values_name} is not a JSON object"));
    }
    overlay_onto(&mut document, overlay);
    Ok(document.to_string())
}

fn overlay_onto(base: &mut serde_json::Value, overlay: serde_json::Value) {
    match (base, overlay) {
        (serde_json::Value::Object(base), serde_json::Value::Object(overlay)) => {
            for (key, value) in overlay {
                overlay_onto(base.entry(key).or_insert(serde_json::Value::Null), value);
            }
        }
        (base, overlay) => *base = overlay,
    }
}

/// The config as the server writes it and the node-config step persists it.
pub fn render(config: &NodeConfig) -> String {
    let mut text = serde_json::to_string_pretty(config).expect("a NodeConfig always serialises");
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_unknown_fields_and_versions() {
        let config = NodeConfig::new(Role::Minion);
        let text = render(&config);
        assert_eq!(parse(&text, "t", None).unwrap(), config);
        let typo = text.replacen("\"tls_disabled\"", "\"tls_disabeld\"", 1);
        let err = parse(&typo, "t", None).unwrap_err().to_string();
        assert!(err.contains("tls_disabeld"), "{err}");
        let v2 = text.replacen("\"version\": 1", "\"version\": 2", 1);
        assert!(parse(&v2, "t", None).unwrap_err().to_string().contains("unsupported"));
        assert!(parse(&text, "t", Some(Role::Master)).unwrap_err().to_string().contains("--role"));
    }

    #[test]
    fn a_value_of_the_wrong_type_is_named_by_its_field() {
        let text =
            render(&NodeConfig::new(Role::Minion)).replacen("\"public_ip\": null", "\"public_ip\": \"10.0.0\"", 1);
        let err = parse(&text, "t", None).unwrap_err().to_string();
        assert!(err.contains("node.public_ip = \"10.0.0\": invalid IP address syntax"), "{err}");
        let yaml = "version: 1\nrole: minion\nruntime:\n  volume:\n    size: twenty\n";
        let err = parse(yaml, "t", None).unwrap_err().to_string();
        assert!(err.contains("runtime.volume.size = \"twenty\": must be a whole number, not a string"), "{err}");
    }

    #[test]
    fn every_wrong_choice_is_named_with_its_field() {
        let text = render(&NodeConfig::new(Role::Minion))
            .replacen("\"cgroup_driver\": \"cgroupfs\"", "\"cgroup_driver\": \"cgroupv3\"", 1)
            .replacen("\"storage_driver\": \"\"", "\"storage_driver\": \"btrfs\"", 1);
        let err = parse(&text, "t", None).unwrap_err();
        let shown: Vec<String> = err.errors.iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "kubernetes.cgroup_driver (CGROUP_DRIVER) = \"cgroupv3\": must be one of cgroupfs, systemd",
                "runtime.storage_driver (DOCKER_STORAGE_DRIVER) = \"btrfs\": must be one of , overlay2, overlay, devicemapper",
            ]
        );
        let heat = super::super::heat_params::parse(
            "CGROUP_DRIVER=\"cgroupv3\"\nNETWORK_DRIVER=\"weave\"\n",
            "h",
            Some(Role::Minion),
        );
        let shown = heat.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(shown.contains("CGROUP_DRIVER") && shown.contains("must be one of cgroupfs, systemd"), "{shown}");
        assert!(shown.contains("NETWORK_DRIVER") && shown.contains("\"weave\""), "{shown}");
    }

    #[test]
    fn empty_addresses_read_as_not_given_and_bad_ones_are_refused() {
        let text = render(&NodeConfig::new(Role::Minion)).replacen("\"public_ip\": null", "\"public_ip\": \"\"", 1);
        assert_eq!(parse(&text, "t", None).unwrap().node.public_ip, None);
        let bad = text.replacen("\"public_ip\": \"\"", "\"public_ip\": \"10.0.0.300\"", 1);
        assert!(parse(&bad, "t", None).unwrap_err().to_string().contains("invalid IP address"));
        let members = text.replacen("\"members\": []", "\"members\": \"10.0.0.4, 10.0.0.5\"", 1);
        assert_eq!(parse(&members, "t", None).unwrap().etcd.members.len(), 2);
        let bad = text.replacen("\"members\": []", "\"members\": \"10.0.0.4,nope\"", 1);
        assert!(parse(&bad, "t", None).unwrap_err().to_string().contains("\"nope\" is not an IP address"));
        let index = text.replacen("\"master_index\": null", "\"master_index\": \"2\"", 1);
        assert_eq!(parse(&index, "t", None).unwrap().node.master_index, Some(2));
    }

    #[test]
    fn values_are_laid_over_the_config_and_checked_like_its_own() {
        assert_eq!(
            values_path(std::path::Path::new("/etc/hearth/node.json")).to_str(),
            Some("/etc/hearth/node.values.json")
        );
        let text = render(&NodeConfig::new(Role::Minion));
        let merged = with_values(&text, r#"{"node":{"ip":"10.0.0.5"},"signal":{"token":"t"}}"#, "v").unwrap();
        let config = parse(&merged, "t", None).unwrap();
        assert_eq!(config.node.ip.map(|ip| ip.to_string()).as_deref(), Some("10.0.0.5"));
        assert_eq!(config.signal.token.expose(), "t");
        // A value from the values file is refused as one from the config would be.
        let merged = with_values(&text, r#"{"node":{"ip":"10.0.0.300"}}"#, "v").unwrap();
        assert!(parse(&merged, "t", None).unwrap_err().to_string().contains("node.ip = \"10.0.0.300\""));
        assert!(with_values(&text, "[1]", "v.json").unwrap_err().contains("v.json is not a JSON object"));
        assert!(with_values(&text, "{", "v.json").unwrap_err().contains("v.json is not JSON"));
    }

    #[test]
    fn every_wrong_field_is_named_at_once() {
        let text = "version: 1\nrole: minion\nnode:\n  ip: 10.0.0\nruntime:\n  volume:\n    size: twenty\n\
                    kubernetes:\n  tga: v1.24.17\n";
        let errors = parse(text, "t.yaml", None).unwrap_err().errors;
        let shown: Vec<String> = errors.iter().map(|e| format!("{} = {:?}", e.key, e.value)).collect();
        assert_eq!(
            shown,
            ["kubernetes.tga = \"v1.24.17\"", "node.ip = \"10.0.0\"", "runtime.volume.size = \"twenty\""],
            "{errors:?}"
        );
        assert_eq!(errors[0].reason, "not a field of the node config: did you mean tag?");
        assert_eq!(errors[2].reason, "must be a whole number, not a string");
        assert!(errors[1].reason.contains("invalid IP address syntax"), "{errors:?}");
    }

    #[test]
    fn yaml_is_accepted_for_hand_written_files() {
        let config = parse("version: 1\nrole: master\ncluster:\n  uuid: abc\n", "t", None).unwrap();
        assert_eq!(config.role, Role::Master);
        assert_eq!(config.cluster.uuid, "abc");
    }
}
