//! Proves the Ignition fixture (`hearth_tests::ignition`) against Debian's real Ignition 2.14: a spec
//! 3.3.0 config validates and the real binary writes its file and unit byte-exact into a directory; an
//! unknown key (only a warning for ignition-validate) and spec 3.4.0 are refused.

use hearth_tests::ignition;
use serde_json::json;
use std::os::unix::fs::PermissionsExt;

/// Every byte a shell, JSON or a data URL might mangle, including a NUL-free run of controls.
const HOSTILE: &str = "KEY=\"va'l\" $HOME ${X} `id` 100% \\ back\\slash #frag ?q=1&a=b\ttab\r\nline é ✓ 日本 🚀\n";
const UNIT: &str = "[Unit]\nDescription=Hearth agent (fixture proof)\n\n[Service]\nType=oneshot\n\
                    ExecStart=/usr/local/bin/hearth-agent run --config /etc/hearth/node.json\n\n\
                    [Install]\nWantedBy=multi-user.target\n";

/// RFC 3986 percent-encoding of every byte but the unreserved ones, as a data URL needs.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn config(version: &str) -> serde_json::Value {
    json!({
        "ignition": { "version": version },
        "storage": { "files": [{
            "path": "/etc/hearth/node.env",
            "mode": 0o600,
            "overwrite": true,
            "contents": { "source": format!("data:,{}", percent_encode(HOSTILE)) },
        }]},
        "systemd": { "units": [{ "name": "hearth-agent.service", "enabled": true, "contents": UNIT }] },
    })
}

#[test]
fn a_spec_3_3_config_validates_and_applies_byte_exact() {
    let config = config("3.3.0").to_string();
    ignition::validate(&config).unwrap();

    let root = tempfile::tempdir().unwrap();
    ignition::apply(&config, root.path()).unwrap();
    let file = root.path().join("etc/hearth/node.env");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), HOSTILE);
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o7777, 0o600);
    let unit = root.path().join("etc/systemd/system/hearth-agent.service");
    assert_eq!(std::fs::read_to_string(unit).unwrap(), UNIT);
    // Ignition records `enabled: true` as a preset, which `systemctl --root preset-all` turns into links.
    let preset = std::fs::read_to_string(root.path().join("etc/systemd/system-preset/20-ignition.preset")).unwrap();
    assert!(preset.lines().any(|l| l == "enable hearth-agent.service"), "{preset}");
}

#[test]
fn an_unknown_key_fails_validation_although_ignition_only_warns() {
    let mut config = config("3.3.0");
    config["storage"]["files"][0]["mdoe"] = json!(0o600);
    let err = ignition::validate(&config.to_string()).unwrap_err();
    assert!(err.contains("warned") && err.contains("mdoe"), "{err}");
}

#[test]
fn spec_3_4_0_and_broken_json_are_refused() {
    let err = ignition::validate(&config("3.4.0").to_string()).unwrap_err();
    assert!(err.contains("failed"), "{err}");
    let err = ignition::validate("{\"ignition\": {\"version\": \"3.3.0\"}").unwrap_err();
    assert!(err.contains("failed"), "{err}");
    // The real binary refuses it too, before writing anything.
    let root = tempfile::tempdir().unwrap();
    let err = ignition::apply(&config("3.4.0").to_string(), root.path()).unwrap_err();
    assert!(format!("{err:#}").contains("fetch-offline"), "{err:#}");
    assert!(!root.path().join("etc/hearth").exists());
}
