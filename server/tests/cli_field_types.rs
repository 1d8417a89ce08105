//! A template or cluster file with fields of the wrong type or unknown ones: exit 2 with every such
//! field of both files at once, each with its path, its value and a sentence instead of serde's words.

use std::path::Path;
use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");

#[test]
fn every_wrong_field_of_both_files_is_named_at_once() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(examples.join("cluster-template.yaml")).unwrap();
    let wrong = template
        .replace("docker_volume_size: 20", "docker_volume_size: twenty")
        .replace("master_lb_enabled: false", "master_lb_enabled: maybe");
    assert_eq!(wrong.matches("twenty").count() + wrong.matches("maybe").count(), 2, "the example's lines moved");
    let long = "y".repeat(5000);
    let cluster = std::fs::read_to_string(examples.join("cluster.yaml"))
        .unwrap()
        .replace("node_count: 2", "node_count: two")
        .replace("master_count: 1", &format!("master_count: {long}"))
        + "node_cuont: 3\nlabels: [a]\n";
    let (t, c) = (dir.path().join("t.yaml"), dir.path().join("c.yaml"));
    std::fs::write(&t, wrong).unwrap();
    std::fs::write(&c, cluster).unwrap();
    let out = Command::new(SERVER)
        .arg("validate")
        .arg("--cluster-template")
        .arg(&t)
        .arg("--cluster")
        .arg(&c)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    for line in [
        "cluster_template.docker_volume_size = \"twenty\": must be a whole number, not a string",
        "cluster_template.master_lb_enabled = \"maybe\": must be true or false, not a string",
        "cluster.node_count = \"two\": must be a whole number",
        "cluster.node_cuont = \"3\": not a field of Magnum's cluster: did you mean node_count?",
        "cluster.labels = \"- a\": labels are a map of name: value, or the CLI's text k=v,k=v",
        "cluster.master_count = \"yyyy",
    ] {
        assert!(stderr.contains(line), "{line:?} missing:\n{stderr}");
    }
    assert!(stderr.contains("6 invalid field(s)"), "{stderr}");
    assert!(stderr.contains("(5000 characters") && stderr.len() < 2000, "a long value is cut: {stderr}");
    assert!(!stderr.contains("expected i64"), "serde's words: {stderr}");

    // The same through --json, each error apart.
    let out = Command::new(SERVER)
        .args(["validate", "--json", "--cluster-template"])
        .arg(&t)
        .arg("--cluster")
        .arg(&c)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let fields: Vec<&str> = doc["errors"].as_array().unwrap().iter().map(|e| e["field"].as_str().unwrap()).collect();
    assert_eq!(fields.len(), 6, "{doc}");
    assert!(fields.contains(&"cluster.node_cuont") && fields.contains(&"cluster_template.docker_volume_size"), "{doc}");
}
