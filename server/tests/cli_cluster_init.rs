//! `hearth-server cluster init` prepares what Magnum's conductor prepared: the cluster's CA (registered
//! for serve when the trustee is known), its service-account key pair and a settings file that
//! `validate` and `render` read once the operator has completed it.

mod bundle_support;

use bundle_support::master_node_config;
use serde_json::Value;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");
const CLUSTER: &str = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52";

fn server(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(SERVER).args(args).output().unwrap()
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn with_settings(command: &str, settings: &Path, out: &Path) -> Output {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut cmd = Command::new(SERVER);
    cmd.arg(command).arg("--cluster-template").arg(examples.join("cluster-template.yaml"));
    cmd.arg("--cluster").arg(examples.join("cluster.yaml")).arg("--settings").arg(settings);
    if command == "render" {
        cmd.arg("--out").arg(out);
    }
    cmd.output().unwrap()
}

#[test]
fn init_makes_what_the_conductor_made_and_validate_names_what_is_left() {
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("cfg"));
    let made = server(args!["cluster", "init", "--cluster", CLUSTER, "--state", &state, "--out", &out]);
    let said = String::from_utf8_lossy(&made.stdout);
    assert!(made.status.success(), "{said}{}", String::from_utf8_lossy(&made.stderr));
    assert!(said.contains("not registered for serve yet"), "{said}");
    assert!(state.join("clusters").join(CLUSTER).join("ca.crt").is_file(), "{said}");
    assert_eq!(mode(&out.join("service-account.key")), 0o600);
    assert_eq!(mode(&out.join("settings.yaml")), 0o600);
    let key = std::fs::read_to_string(out.join("service-account.key")).unwrap();
    assert!(key.starts_with("-----BEGIN PRIVATE KEY-----"), "{key}");
    assert!(std::fs::read_to_string(out.join("service-account.pub"))
        .unwrap()
        .starts_with("-----BEGIN PUBLIC KEY-----"));

    // The file parses as settings, and what the operator has still to give is named, all at once.
    let checked = with_settings("validate", &out.join("settings.yaml"), &dir.path().join("x"));
    let stderr = String::from_utf8_lossy(&checked.stderr);
    assert_eq!(checked.status.code(), Some(2), "{stderr}");
    for field in [
        "settings.auth_url",
        "settings.magnum_url",
        "settings.agent",
        "settings.trustee.user_id",
        "settings.trustee.password",
    ] {
        assert!(stderr.contains(field), "{field} missing:\n{stderr}");
    }
    assert!(!stderr.contains("service_account"), "init made the key pair: {stderr}");

    // Again: nothing is replaced (a new key would invalidate the cluster's tokens).
    let again = server(args!["--json", "cluster", "init", "--cluster", CLUSTER, "--state", &state, "--out", &out]);
    let doc: Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!((doc["keys_written"].as_bool(), doc["settings_written"].as_bool()), (Some(false), Some(false)), "{doc}");
    assert_eq!(std::fs::read_to_string(out.join("service-account.key")).unwrap(), key);

    // Half a key pair is refused rather than completed with a key of another pair.
    std::fs::remove_file(out.join("service-account.pub")).unwrap();
    let half = server(args!["cluster", "init", "--cluster", CLUSTER, "--state", &state, "--out", &out]);
    assert_eq!(half.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&half.stderr).contains("one half of a service-account key pair"));

    let bad = server(args!["cluster", "init", "--cluster", "../etc", "--state", &state, "--out", &out]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn init_with_the_trustee_registers_the_cluster_and_the_settings_render() {
    let dir = tempfile::tempdir().unwrap();
    let (state, out) = (dir.path().join("state"), dir.path().join("cfg"));
    let password = dir.path().join("password");
    std::fs::write(&password, "Tr'u$tee\"Pa%ss\\word\n").unwrap();
    let sha = "2f6c5ab1d4c0e7f3a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b0c9d8e7f6";
    let made = server(args![
        "--json",
        "cluster",
        "init",
        "--cluster",
        CLUSTER,
        "--state",
        &state,
        "--out",
        &out,
        "--name",
        "demo",
        "--auth-url",
        "http://127.0.0.1:5000/v3",
        "--magnum-url",
        "http://127.0.0.1:9511/v1",
        "--region",
        "RegionOne",
        "--trustee-user-id",
        "2b7fa6c8d26e4b4e8a8e35a3a0e8ef5e",
        "--trustee-username",
        "demo_trustee",
        "--trustee-domain-id",
        "8f5ef2a7a3b14bb3a6e8e7f9a1b2c3d4",
        "--trustee-password-file",
        &password,
        "--trust-id",
        "e2a7c3d9f1b84c6a9d0e1f2a3b4c5d6e",
        "--agent-url",
        "http://127.0.0.1:9511/agent/hearth-agent",
        "--agent-sha256",
        sha,
    ]);
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(made.status.success(), "{stdout}{}", String::from_utf8_lossy(&made.stderr));
    assert!(!stdout.contains("Pa%ss") && !String::from_utf8_lossy(&made.stderr).contains("Pa%ss"), "secret shown");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["registered"], true, "{doc}");
    let record = std::fs::read_to_string(state.join("clusters").join(CLUSTER).join("cluster.json")).unwrap();
    assert!(record.contains("2b7fa6c8d26e4b4e8a8e35a3a0e8ef5e") && record.contains("demo"), "{record}");

    let rendered = with_settings("render", &out.join("settings.yaml"), &dir.path().join("bundle"));
    assert!(rendered.status.success(), "{}", String::from_utf8_lossy(&rendered.stderr));
    // The nodes get init's service-account key, not the example's.
    let environment = std::fs::read_to_string(dir.path().join("bundle/environment.yaml")).unwrap();
    let public_key = std::fs::read_to_string(out.join("service-account.pub")).unwrap();
    let body = public_key.lines().nth(1).unwrap();
    let master = master_node_config(&environment);
    assert!(body.len() > 40 && master.contains(body), "init's public key is not in the master's node config");
    // The password went through the YAML file unchanged (its quote, backslash and percent included).
    let settings: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(out.join("settings.yaml")).unwrap()).unwrap();
    assert_eq!(settings["trustee"]["password"].as_str(), Some("Tr'u$tee\"Pa%ss\\word"));
}
