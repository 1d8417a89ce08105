//! Proves the Ignition fixture (`hearth_tests::ignition`) against Debian's real Ignition 2.14: a spec
//! 3.3.0 config validates and the real binary writes its file and unit byte-exact into a directory; an
//! unknown key (only a warning for ignition-validate) and spec 3.4.0 are refused. Then the server's own
//! Fedora CoreOS user-data, applied by the real Ignition, boots into a bootstrap unit that
//! `systemd-analyze verify` accepts and whose script tells Heat why an agent that fails its checksum
//! cannot start.

use hearth_fragments::config::Role;
use hearth_server::user_data::{self, placeholders};
use hearth_server::{bundle, model, settings::Loaded};
use hearth_tests::ignition;
use hearth_tests::loopback::{Loopback, Reply};
use serde_json::json;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

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

fn sha256(data: &[u8]) -> String {
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), data).unwrap();
    let out = Command::new("sha256sum").arg(file.path()).output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

/// `systemd-analyze verify --root=ROOT UNIT` with the host's targets copied in (all the unit depends
/// on); any output is a failure.
fn verify_unit(root: &Path, unit: &str) {
    let vendor = root.join("usr/lib/systemd/system");
    std::fs::create_dir_all(&vendor).unwrap();
    for entry in std::fs::read_dir("/usr/lib/systemd/system").unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if (name.ends_with(".target") || name.ends_with(".slice")) && entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), vendor.join(&name)).unwrap();
        }
    }
    let out = Command::new("systemd-analyze")
        .args(["verify", "--man=no", "--generators=no", "--recursive-errors=no"])
        .arg(format!("--root={}", root.display()))
        .arg(unit)
        .env("SYSTEMD_LOG_COLOR", "0")
        .env_remove("SYSTEMD_LOG_LEVEL")
        .output()
        .expect("systemd-analyze (apt-get install systemd)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && said.trim().is_empty(), "systemd-analyze verify {unit}: {said}");
}

/// Fedora CoreOS: Ignition writes the files and enables the bootstrap unit but fetches nothing, so a
/// tampered agent no longer stops the boot in the initramfs; the bootstrap (run as the booted machine
/// would, with the root Ignition wrote as `/`) downloads it from a loopback server, refuses it, and
/// signals FAILURE with the reason to a loopback wait condition that answers as Heat does.
#[test]
fn a_fedora_coreos_node_whose_agent_fails_its_checksum_tells_heat_why() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let template = model::load(&examples.join("cluster-template-fedora-coreos.yaml")).unwrap();
    let cluster = model::load(&examples.join("cluster-fedora-coreos.yaml")).unwrap();
    let mut settings = Loaded::load(&examples.join("settings.yaml")).unwrap();
    const TAMPERED: &[u8] = b"#!/bin/sh\necho a tampered hearth-agent\n";
    let agent = Loopback::serve(|request| match request.path() {
        "/agent/hearth-agent" => Reply::bytes(200, TAMPERED),
        _ => Reply::text(404, "not found"),
    });
    let released = sha256(b"the hearth-agent that was released");
    settings.settings.agent.url = agent.url("/agent/hearth-agent");
    settings.settings.agent.sha256 = released.clone();
    let bundle = bundle::render(&template, &cluster, &settings).unwrap();
    assert_eq!(bundle.format, user_data::Format::Ignition);

    // Heat's substitution, with a wait condition on loopback.
    let heat = Loopback::script([Reply::text(200, "null")]);
    let endpoint = heat.url("/v1/a1b2/stacks/k8s-fcos-minions-0/9c3d/resources/minion_wait_handle/signal");
    let token = "gAAAAABfcos-wait-condition-token";
    let filled = user_data::fill(&bundle.minion.text, &placeholders(Role::Minion), |h| match h.name {
        "wait_endpoint" => endpoint.clone(),
        "wait_token" => token.into(),
        "instance_name" => "K8s-FCOS-Minion-0.novalocal".into(),
        "node_public_ip" => String::new(),
        "docker_volume" | "cluster_subnet" => "0f6b6c0e-3d5b-4a4e-8f2a-2c1d0e9b8a76".into(),
        _ => "10.0.0.5".into(),
    });
    ignition::validate(&filled).unwrap();
    let root = tempfile::tempdir().unwrap();
    ignition::apply(&filled, root.path()).unwrap();
    let agent_path = root.path().join(user_data::AGENT.trim_start_matches('/'));
    assert!(!agent_path.exists(), "Ignition fetches nothing");
    let unit = root.path().join("etc/systemd/system").join(user_data::BOOTSTRAP_UNIT);
    assert_eq!(std::fs::read_to_string(&unit).unwrap(), user_data::bootstrap_unit());
    let preset = std::fs::read_to_string(root.path().join("etc/systemd/system-preset/20-ignition.preset")).unwrap();
    assert!(preset.lines().any(|l| l == format!("enable {}", user_data::BOOTSTRAP_UNIT)), "{preset}");
    let mode = |path: &str| {
        std::fs::metadata(root.path().join(path.trim_start_matches('/'))).unwrap().permissions().mode() & 0o7777
    };
    assert_eq!(mode(user_data::BOOTSTRAP), 0o700);
    assert_eq!(mode(user_data::NODE_CONFIG), 0o600);
    assert_eq!(mode(user_data::NODE_VALUES), 0o600);
    verify_unit(root.path(), user_data::BOOTSTRAP_UNIT);

    let out = ignition::run_in_root(root.path(), user_data::BOOTSTRAP).unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    let signal = heat.next_request(Duration::from_secs(30)).expect("the bootstrap signalled the wait condition");
    assert_eq!(signal.method, "POST");
    assert!(endpoint.ends_with(&signal.url), "{} vs {endpoint}", signal.url);
    assert_eq!(signal.header("X-Auth-Token"), Some(token));
    assert_eq!(signal.header("Content-Type"), Some("application/json"));
    let body = signal.json();
    assert_eq!(body["status"], "FAILURE", "{}", signal.body);
    assert_eq!(body["id"], "k8s-fcos-minion-0", "the id the agent would use");
    let reason = body["reason"].as_str().unwrap();
    let expected = format!(
        "part-000 bootstrap: hearth-agent from {} has sha256 {}, expected {released}",
        settings.settings.agent.url,
        sha256(TAMPERED)
    );
    assert_eq!(reason, expected);
    let told = expected.replacen("part-000 bootstrap: ", "hearth-bootstrap: ", 1);
    assert!(stderr.contains(&told), "the console tells the same story: {stderr}");
    assert!(!agent_path.exists(), "a binary that failed its check stays out");
    assert!(!root.path().join("usr/local/bin/hearth-agent.download").exists(), "and leaves nothing behind");
    assert_eq!(agent.requests().len(), 1, "one download");
}
