//! The native node config: `/etc/hearth/node.json`, JSON as the server writes it, YAML accepted for files
//! written by hand. Unknown fields are refused so a typo never silently falls back to a default.

use super::error::{ConfigError, ConfigErrors};
use super::{validate, NodeConfig, Role, VERSION};

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
    let config: NodeConfig = if is_json {
        serde_json::from_value(probe).map_err(|e| fail("(document)", String::new(), e.to_string()))?
    } else {
        serde_yaml::from_str(text).map_err(|e| fail("(document)", String::new(), e.to_string()))?
    };
    if let Some(cli) = role.filter(|r| *r != config.role) {
        return Err(fail(
            "role",
            config.role.to_string(),
            format!("the file says {} but --role says {cli}", config.role),
        ));
    }
    let errors = validate::validate(&config);
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
    fn yaml_is_accepted_for_hand_written_files() {
        let config = parse("version: 1\nrole: master\ncluster:\n  uuid: abc\n", "t", None).unwrap();
        assert_eq!(config.role, Role::Master);
        assert_eq!(config.cluster.uuid, "abc");
    }
}
