//! `--json` on every server command: one JSON document on stdout, for success and for every kind of
//! failure, with the same exit codes as the words (0 done, 1 failed, 2 bad input).

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");
const CLUSTER: &str = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52";

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// Runs `hearth-server --json ARGS…`; stdout must be exactly one JSON document whatever the outcome.
fn json(args: &[&std::ffi::OsStr]) -> (Option<i32>, Value) {
    let out = Command::new(SERVER).arg("--json").args(args).output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| {
        panic!("{args:?}: stdout is not one JSON document ({e}):\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code(), doc)
}

macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(std::ffi::OsStr::new($a)),*] };
}

#[test]
fn validate_and_render_answer_in_json() {
    let ex = examples();
    let (t, c, s) = (ex.join("cluster-template.yaml"), ex.join("cluster.yaml"), ex.join("settings.yaml"));
    let (code, doc) = json(args!["validate", "--cluster-template", &t, "--cluster", &c, "--settings", &s]);
    assert_eq!(
        (code, &doc["ok"], &doc["valid"], &doc["settings_checked"]),
        (Some(0), &true.into(), &true.into(), &true.into()),
        "{doc}"
    );

    // Every broken rule, each with its field, value (long ones cut with their length) and message.
    let dir = tempfile::tempdir().unwrap();
    let bad = std::fs::read_to_string(&c)
        .unwrap()
        .replace("name: demo", &format!("name: {}", "d".repeat(300)))
        .replace("node_count: 2", "node_count: 0");
    let bad_path = dir.path().join("bad.yaml");
    std::fs::write(&bad_path, bad).unwrap();
    let (code, doc) = json(args!["validate", "--cluster-template", &t, "--cluster", &bad_path]);
    assert_eq!(code, Some(2), "{doc}");
    assert_eq!(doc["ok"], false);
    let errors = doc["errors"].as_array().unwrap();
    let by_field =
        |field: &str| errors.iter().find(|e| e["field"] == field).unwrap_or_else(|| panic!("{field}: {doc}"));
    assert_eq!(by_field("cluster.node_count")["value"], "0");
    assert!(by_field("cluster.node_count")["message"].as_str().unwrap().contains("at least 1"));
    let name = by_field("cluster.name");
    assert_eq!(name["value_chars"], 300, "{name}");
    assert!(name["value"].as_str().unwrap().len() < 300, "{name}");

    // A failure that is no field's (a missing file) is JSON too, with its exit code.
    let (code, doc) = json(args!["validate", "--cluster-template", "/nonexistent/t.yaml", "--cluster", &c]);
    assert_eq!(code, Some(2), "{doc}");
    assert!(doc["errors"][0]["message"].as_str().unwrap().contains("/nonexistent/t.yaml"), "{doc}");

    let out = dir.path().join("out");
    let state = dir.path().join("state");
    let (code, doc) = json(args![
        "render",
        "--cluster-template",
        &t,
        "--cluster",
        &c,
        "--settings",
        &s,
        "--out",
        &out,
        "--state",
        &state
    ]);
    assert_eq!(code, Some(0), "{doc}");
    assert!(doc["stack_name"].as_str().unwrap().starts_with("demo-"), "{doc}");
    assert_eq!((doc["masters"].as_i64(), doc["minions"].as_i64()), (Some(1), Some(2)), "{doc}");
    assert_eq!(doc["parts"]["private_network"], true, "{doc}");
    assert!(doc["user_data"]["master"]["base64_bytes"].as_u64().unwrap() > 0, "{doc}");
    for file in doc["files"].as_array().unwrap() {
        assert!(Path::new(file.as_str().unwrap()).is_file(), "{file} was not written");
    }
    assert!(Path::new(doc["registered"].as_str().unwrap()).exists(), "{doc}");
}

#[test]
fn notes_are_in_the_json() {
    let ex = examples();
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(ex.join("cluster-template.yaml")).unwrap() + "created_at: '2026-11-30'\n";
    let t = dir.path().join("t.yaml");
    std::fs::write(&t, template).unwrap();
    let (code, doc) = json(args!["validate", "--cluster-template", &t, "--cluster", &ex.join("cluster.yaml")]);
    assert_eq!(code, Some(0), "{doc}");
    assert!(doc["notes"][0].as_str().unwrap().contains("created_at"), "{doc}");
}

#[test]
fn ca_node_and_cluster_config_answer_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (code, doc) = json(args!["ca", "init", "--cluster", CLUSTER, "--state", &state, "--trustee-user-id", "abc123"]);
    assert_eq!(code, Some(0), "{doc}");
    assert!(doc["ca_pem"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE-----"), "{doc}");
    assert!(Path::new(doc["ca_path"].as_str().unwrap()).is_file(), "{doc}");
    let (code, doc) = json(args!["ca", "init", "--cluster", "../etc", "--state", &state]);
    assert_eq!(code, Some(2), "{doc}");
    assert!(doc["errors"][0]["message"].as_str().unwrap().contains("not a cluster UUID"), "{doc}");

    let (code, doc) = json(args!["node", "deny", "--cluster", CLUSTER, "--state", &state, "n1", "--reason", "lost"]);
    assert_eq!((code, doc["change"].as_str()), (Some(0), Some("denied")), "{doc}");
    let (_, again) = json(args!["node", "deny", "--cluster", CLUSTER, "--state", &state, "n1", "--reason", "lost"]);
    assert_eq!(again["change"], "unchanged", "{again}");
    let (code, doc) = json(args!["node", "list", "--cluster", CLUSTER, "--state", &state]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!(doc["denied"][0]["node"], "n1", "{doc}");
    assert_eq!(doc["denied"][0]["reason"], "lost", "{doc}");
    let (_, doc) = json(args!["node", "allow", "--cluster", CLUSTER, "--state", &state, "n1"]);
    assert_eq!(doc["change"], "allowed", "{doc}");
    let (_, doc) = json(args!["node", "list", "--cluster", CLUSTER, "--state", &state]);
    assert_eq!(doc["denied"].as_array().map(Vec::len), Some(0), "{doc}");

    let out = dir.path().join("kubeconfig");
    let (code, doc) = json(args![
        "cluster",
        "config",
        "--cluster",
        CLUSTER,
        "--state",
        &state,
        "--server",
        "https://127.0.0.1:6443",
        "--out",
        &out,
        "--user",
        "alice",
        "--hours",
        "2"
    ]);
    assert_eq!(code, Some(0), "{doc}");
    assert_eq!((doc["user"].as_str(), doc["groups"][0].as_str()), (Some("alice"), Some("system:masters")), "{doc}");
    assert!(doc["not_after"].as_str().unwrap().contains('T') && !doc["serial"].as_str().unwrap().is_empty(), "{doc}");
    assert!(out.is_file());
    let (code, doc) = json(args![
        "cluster",
        "config",
        "--cluster",
        CLUSTER,
        "--state",
        &state,
        "--server",
        "https://127.0.0.1:6443",
        "--out",
        &out,
        "--hours",
        "0"
    ]);
    assert_eq!(code, Some(2), "{doc}");
    assert!(doc["errors"][0]["message"].as_str().unwrap().contains("hours"), "{doc}");
}

#[test]
fn serve_refuses_its_settings_in_json() {
    let dir = tempfile::tempdir().unwrap();
    let (code, doc) = json(args!["serve", "--listen", "127.0.0.1:0", "--state", dir.path()]);
    assert_eq!(code, Some(2), "{doc}");
    assert!(doc["errors"][0]["message"].as_str().unwrap().contains("no Keystone URL"), "{doc}");
}

#[test]
fn usage_errors_answer_in_json_and_help_stays_words() {
    let (code, doc) = json(args!["render", "--bogus"]);
    assert_eq!(code, Some(2), "{doc}");
    let error = &doc["errors"][0];
    assert!(error["message"].as_str().unwrap().starts_with("unexpected argument '--bogus' found"), "{doc}");
    assert!(error["usage"].as_str().unwrap().starts_with("hearth-server render "), "{doc}");
    let (code, doc) = json(args!["validate"]);
    assert_eq!(code, Some(2), "{doc}");
    assert!(doc["errors"][0]["message"].as_str().unwrap().contains("--cluster-template"), "{doc}");

    // After `--`, `--json` is a value, not the flag: the words stay words.
    let out = Command::new(SERVER).args(["node", "deny", "--", "--json"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    let help = Command::new(SERVER).args(["--json", "--help"]).output().unwrap();
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).starts_with("Validates Magnum cluster definitions"));
}
