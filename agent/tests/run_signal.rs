//! The runner's signal, end to end: a rooted run of an example whose wait-condition endpoint is a real
//! HTTP server on 127.0.0.1 speaking Heat's signal API (`200 null`), checking the exact requests.

use hearth_tests::loopback::{Loopback, Reply, Request};
use hearth_tests::StandInCloud;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");
const TOKEN: &str = "gAAAAABtest-wait-condition-token";

/// A Heat wait-condition handle on loopback that answers like Heat, and its URL.
fn heat_handle() -> (Loopback, String) {
    let heat = Loopback::script([Reply::text(200, "null")]);
    let url = heat.url("/v1/a1b2c3/stacks/k8s-demo-kube_minions-x-0-y/8a1b/resources/minion_wait_handle/signal");
    (heat, url)
}

/// The example with the signal going to `endpoint`, and its certs step to a loopback Keystone and Magnum
/// (kept running as long as the returned cloud lives).
fn example_with_endpoint(role: &str, endpoint: &str, dir: &Path) -> (PathBuf, StandInCloud) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/node/{role}.json"));
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    config["signal"] = serde_json::json!({"endpoint": endpoint, "token": TOKEN, "deadline_secs": 20});
    let cloud = StandInCloud::for_config(&mut config);
    let out = dir.join(format!("{role}.json"));
    std::fs::write(&out, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    (out, cloud)
}

fn node_tree() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::write(dir.path().join("etc/hostname"), "k8s-demo-minion-0\n").unwrap();
    dir
}

fn agent(args: &[&str]) -> Output {
    Command::new(AGENT).args(args).output().unwrap()
}

/// `hearth-agent run --config CONFIG --root TREE [extra…]`.
fn run_rooted(config: &Path, tree: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--config", config.to_str().unwrap(), "--root", tree.to_str().unwrap()];
    args.extend_from_slice(extra);
    agent(&args)
}

fn received(heat: &Loopback) -> Request {
    heat.next_request(Duration::from_secs(10)).expect("the agent sent no signal")
}

fn assert_heat_shape(signal: &Request, endpoint: &str) {
    let body = signal.json();
    assert_eq!(signal.method, "POST");
    assert!(endpoint.ends_with(&signal.url), "{} vs {endpoint}", signal.url);
    assert_eq!(signal.header("X-Auth-Token"), Some(TOKEN));
    assert_eq!(signal.header("Content-Type"), Some("application/json"));
    let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
    assert_eq!(keys, ["data", "id", "reason", "status"], "exactly Heat's lower-case keys");
    assert_eq!(body["id"], "k8s-demo-minion-0", "the id names the node");
}

#[test]
fn success_carries_the_summary() {
    let (heat, endpoint) = heat_handle();
    let work = tempfile::tempdir().unwrap();
    let (config, _cloud) = example_with_endpoint("minion", &endpoint, work.path());
    let tree = node_tree();
    let output = run_rooted(&config, tree.path(), &[]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let signal = received(&heat);
    let body = signal.json();
    assert_heat_shape(&signal, &endpoint);
    assert_eq!(body["status"], "SUCCESS");
    let data = body["data"].as_str().unwrap();
    assert!(data.starts_with("12 steps in "), "{data}");
    assert!(!data.contains("NOT IMPLEMENTED"), "every minion step is implemented: {data}");
    assert!(heat.next_request(Duration::from_millis(300)).is_none(), "exactly one signal");

    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.path().join("var/lib/hearth/status.json")).unwrap()).unwrap();
    assert_eq!(status["signal"]["sent"]["http_status"], 200);
    assert_eq!(status["signal"]["body"]["status"], "SUCCESS");
    let on_disk = std::fs::read_to_string(tree.path().join("var/lib/hearth/status.json")).unwrap();
    assert!(!on_disk.contains(TOKEN), "the token reached the status file");

    // `signal --resend` sends the recorded body again, with the same id.
    let resend =
        agent(&["signal", "--resend", "--config", config.to_str().unwrap(), "--root", tree.path().to_str().unwrap()]);
    assert!(resend.status.success(), "{}", String::from_utf8_lossy(&resend.stderr));
    let again = received(&heat);
    assert_eq!(again.json(), body);
}

#[test]
fn a_failing_step_signals_failure_at_once_with_the_part_and_reason() {
    let (heat, endpoint) = heat_handle();
    let work = tempfile::tempdir().unwrap();
    let (config, _cloud) = example_with_endpoint("minion", &endpoint, work.path());
    let tree = node_tree();
    // A file where part-005 needs a directory: a real filesystem failure, not a simulated one.
    std::fs::write(tree.path().join("etc/kubernetes"), "in the way").unwrap();
    let output = run_rooted(&config, tree.path(), &[]);
    assert_eq!(output.status.code(), Some(1));
    let signal = received(&heat);
    let body = signal.json();
    assert_heat_shape(&signal, &endpoint);
    assert_eq!(body["status"], "FAILURE");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.starts_with("part-005 kube-os-config: creating directory /etc/kubernetes"), "{reason}");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("part-010"), "steps after the failure ran:\n{stdout}");
    assert!(!tree.path().join("var/lib/hearth/done").exists());
}

#[test]
fn a_config_error_still_signals_failure_when_the_endpoint_is_known() {
    let (heat, endpoint) = heat_handle();
    let work = tempfile::tempdir().unwrap();
    let (config, _cloud) = example_with_endpoint("minion", &endpoint, work.path());
    let text = std::fs::read_to_string(&config).unwrap().replacen(
        "\"cgroup_driver\": \"systemd\"",
        "\"cgroup_driver\": \"cgroupv3\"",
        1,
    );
    std::fs::write(&config, text).unwrap();
    let tree = node_tree();
    let output = agent(&["run", "--config", config.to_str().unwrap(), "--root", tree.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let signal = received(&heat);
    let body = signal.json();
    assert_eq!(body["status"], "FAILURE");
    let reason = body["reason"].as_str().unwrap();
    assert!(
        reason.starts_with("config: ") && reason.contains("CGROUP_DRIVER") && reason.contains("cgroupv3"),
        "{reason}"
    );
}

/// The user-data writes the per-node values (the handle among them) beside the config, in
/// `minion.values.json`: the agent reads them as part of the config, so a bad address there is refused
/// like one in the config and the failure still reaches the handle that only the values file names.
#[test]
fn per_node_values_beside_the_config_are_read_and_checked_as_part_of_it() {
    let (heat, endpoint) = heat_handle();
    let work = tempfile::tempdir().unwrap();
    let (config, _cloud) = example_with_endpoint("minion", &endpoint, work.path());
    let mut without: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config).unwrap()).unwrap();
    without.as_object_mut().unwrap().remove("signal");
    std::fs::write(&config, without.to_string()).unwrap();
    let values = serde_json::json!({
        "node": {"ip": "10.0.0.300"},
        "signal": {"endpoint": endpoint, "token": TOKEN, "deadline_secs": 20},
    });
    std::fs::write(work.path().join("minion.values.json"), values.to_string()).unwrap();
    let tree = node_tree();
    let output = run_rooted(&config, tree.path(), &[]);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));
    let signal = received(&heat);
    assert!(endpoint.ends_with(&signal.url), "{} vs {endpoint}", signal.url);
    assert_eq!(signal.header("X-Auth-Token"), Some(TOKEN));
    let body = signal.json();
    assert_eq!(body["status"], "FAILURE");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.starts_with("config: ") && reason.contains("node.ip") && reason.contains("10.0.0.300"), "{reason}");
}

#[test]
fn magnum_heat_params_signal_through_wait_curl() {
    let (heat, endpoint) = heat_handle();
    let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/heat-params/stein-minion");
    let text: String = std::fs::read_to_string(sample)
        .unwrap()
        .lines()
        .map(|line| {
            if line.starts_with("TLS_DISABLED=") {
                // No certificates: nothing here answers for Keystone, and the run must not wait out the
                // certs step's retry deadline.
                "TLS_DISABLED=\"True\"\n".to_string()
            } else if line.starts_with("WAIT_CURL=") {
                format!(
                    "WAIT_CURL=\"curl -i -X POST -H 'X-Auth-Token: {TOKEN}' -H 'Content-Type: application/json' \
                     -H 'Accept: application/json' {endpoint}\"\n"
                )
            } else {
                format!("{line}\n")
            }
        })
        .collect();
    let work = tempfile::tempdir().unwrap();
    let params = work.path().join("heat-params");
    std::fs::write(&params, text).unwrap();
    let tree = node_tree();
    // Every step of Magnum's minion runs from its heat-params, and Heat hears the result.
    let output = agent(&["run", "--heat-params", params.to_str().unwrap(), "--root", tree.path().to_str().unwrap()]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let signal = received(&heat);
    let body = signal.json();
    assert_heat_shape(&signal, &endpoint);
    assert_eq!(body["status"], "SUCCESS", "{body}");
}
