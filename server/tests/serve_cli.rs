//! `hearth-server ca init` and `serve`'s settings handling, as an operator (or `render`) uses them.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");
const CLUSTER: &str = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52";

fn server(args: &[&str]) -> std::process::Output {
    Command::new(SERVER).args(args).env_remove("HEARTH_SERVICE_PASSWORD").output().unwrap()
}

#[test]
fn ca_init_registers_the_cluster_and_makes_its_ca_once() {
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap();
    let first = server(&["ca", "init", "--cluster", CLUSTER, "--state", state_arg, "--trustee-user-id", "abc123"]);
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let pem = String::from_utf8(first.stdout).unwrap();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"), "{pem}");
    let dir = state.path().join("clusters").join(CLUSTER);
    assert!(String::from_utf8_lossy(&first.stderr).contains(&dir.join("ca.crt").display().to_string()));
    assert_eq!(std::fs::read_to_string(dir.join("ca.crt")).unwrap(), pem);
    let record: serde_json::Value = serde_json::from_slice(&std::fs::read(dir.join("cluster.json")).unwrap()).unwrap();
    assert_eq!(record, serde_json::json!({"cluster_uuid": CLUSTER, "trustee_user_id": "abc123"}));
    let mode = |name: &str| std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
    assert_eq!((mode("ca.key"), mode("ca.crt"), mode("cluster.json")), (0o600, 0o644, 0o600));

    // Again, with an upper-case UUID and a new trustee: the same CA, the registration updated.
    let again = server(&[
        "ca",
        "init",
        "--cluster",
        &CLUSTER.to_uppercase(),
        "--state",
        state_arg,
        "--trustee-user-id",
        "def456",
    ]);
    assert!(again.status.success());
    assert_eq!(String::from_utf8(again.stdout).unwrap(), pem, "an existing CA is never replaced");
    assert!(std::fs::read_to_string(dir.join("cluster.json")).unwrap().contains("def456"));

    // The CA itself, judged by openssl: self-signed, CA:TRUE with pathlen 0, for certificate signing.
    let text =
        Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(dir.join("ca.crt")).output().unwrap();
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(text.contains(&format!("Issuer: CN = {CLUSTER}")) && text.contains(&format!("Subject: CN = {CLUSTER}")));
    assert!(text.contains("CA:TRUE, pathlen:0") && text.contains("Certificate Sign, CRL Sign"), "{text}");
    let verify = Command::new("openssl")
        .args(["verify", "-CAfile"])
        .arg(dir.join("ca.crt"))
        .arg(dir.join("ca.crt"))
        .output()
        .unwrap();
    assert!(verify.status.success());
}

#[test]
fn bad_input_exits_2_with_the_reason() {
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap();
    for (args, hint) in [
        (vec!["ca", "init", "--cluster", "../etc", "--state", state_arg], "not a cluster UUID"),
        (vec!["serve", "--listen", "127.0.0.1:0", "--state", state_arg], "no Keystone URL"),
        (
            vec![
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--state",
                state_arg,
                "--keystone-url",
                "http://127.0.0.1:1",
                "--service-user",
                "hearth",
            ],
            "HEARTH_SERVICE_PASSWORD",
        ),
        (vec!["serve", "--settings", "/nonexistent/serve.yaml"], "/nonexistent/serve.yaml"),
    ] {
        let out = server(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(hint), "{args:?}: {stderr}");
    }
    let typo = state.path().join("serve.yaml");
    std::fs::write(&typo, "listen: 127.0.0.1:0\nkeystone:\n  urll: http://127.0.0.1:1\n").unwrap();
    let out = server(&["serve", "--settings", typo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field `urll`"));
    assert!(!state.path().join("clusters").exists(), "nothing was created for bad input");
}

#[test]
fn serve_runs_from_a_settings_file_and_refuses_callers_without_a_token() {
    let state = tempfile::tempdir().unwrap();
    let settings = state.path().join("serve.yaml");
    // Keystone is never asked here: a request without a token is refused before that.
    std::fs::write(
        &settings,
        format!(
            "listen: 127.0.0.1:0\nstate_dir: {}\npublic_url: https://127.0.0.1:9511/\nkeystone:\n  url: http://127.0.0.1:9/v3\n  \
             service_user: {{name: hearth, password: secret-pw, project: service}}\n",
            state.path().join("state").display()
        ),
    )
    .unwrap();
    let mut child = Command::new(SERVER)
        .args(["serve", "--settings", settings.to_str().unwrap()])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    let address = line.split_whitespace().find_map(|w| w.strip_prefix("http://")).expect(&line).to_string();
    let response = ureq::get(&format!("http://{address}/v1/certificates/{CLUSTER}")).call();
    let Err(ureq::Error::Status(401, response)) = response else { panic!("{response:?}") };
    assert!(response.header("WWW-Authenticate").unwrap().contains("http://127.0.0.1:9/v3"));
    let body: serde_json::Value = response.into_json().unwrap();
    assert_eq!(body["errors"][0]["status"], 401);
    child.kill().unwrap();
    child.wait().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert!(rest.contains("refused request=") && rest.contains("status=401"), "{rest}");
    assert!(!format!("{line}{rest}").contains("secret-pw"));
    assert!(state.path().join("state").is_dir(), "the state directory is created");
}

#[test]
fn serve_hands_out_the_agent_binary_with_its_checksum() {
    let state = tempfile::tempdir().unwrap();
    let agent = state.path().join("hearth-agent");
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    std::fs::write(&agent, &bytes).unwrap();
    let sha256 = {
        let out = Command::new("sha256sum").arg(&agent).output().unwrap();
        String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
    };
    let mut child = Command::new(SERVER)
        .args(["serve", "--listen", "127.0.0.1:0", "--keystone-url", "http://127.0.0.1:9/v3"])
        .args(["--service-user", "hearth", "--service-project", "service", "--state"])
        .arg(state.path().join("state"))
        .arg("--agent")
        .arg(&agent)
        .env("HEARTH_SERVICE_PASSWORD", "secret-pw")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    let address = loop {
        let mut line = String::new();
        assert!(std::io::BufRead::read_line(&mut stderr, &mut line).unwrap() > 0, "serve ended: {seen}");
        seen.push_str(&line);
        if let Some(address) = line.split_whitespace().find_map(|w| w.strip_prefix("http://")) {
            break address.to_string();
        }
    };
    assert!(seen.contains(&format!("sha256 {sha256}")), "the log names the checksum for settings: {seen}");
    let response = ureq::get(&format!("http://{address}/agent/hearth-agent")).call().unwrap();
    assert_eq!(response.header("X-Checksum-Sha256"), Some(sha256.as_str()));
    let mut served = Vec::new();
    std::io::Read::read_to_end(&mut response.into_reader(), &mut served).unwrap();
    assert!(served == bytes, "the bytes served are the file's");
    let Err(ureq::Error::Status(405 | 404, _)) = ureq::post(&format!("http://{address}/agent/hearth-agent")).call()
    else {
        panic!("only GET and HEAD fetch the agent");
    };
    child.kill().unwrap();
    child.wait().unwrap();
}

/// A state directory with `CLUSTER` registered, as `ca init --trustee-user-id` does it.
fn registered_state() -> tempfile::TempDir {
    let state = tempfile::tempdir().unwrap();
    let out = Command::new(SERVER)
        .args(["ca", "init", "--cluster", CLUSTER, "--trustee-user-id", "abc123", "--state"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    state
}

/// `hearth-server node SUBCOMMAND --state STATE --cluster CLUSTER ARGS…`.
fn node(state: &std::path::Path, subcommand: &str, args: &[&str]) -> std::process::Output {
    Command::new(SERVER)
        .args(["node", subcommand, "--cluster", CLUSTER, "--state"])
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn stdout_of(out: std::process::Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

fn denied(state: &std::path::Path) -> serde_json::Value {
    let file = state.join("clusters").join(CLUSTER).join("denied-nodes.json");
    serde_json::from_slice(&std::fs::read(file).unwrap()).unwrap()
}

#[test]
fn node_deny_allow_and_list_are_idempotent() {
    let state = registered_state();
    let state = state.path();
    assert_eq!(stdout_of(node(state, "list", &[])), "", "nothing denied yet");

    let said = stdout_of(node(state, "deny", &["k8s-minion-1", "--reason", "disk replaced"]));
    assert_eq!(said, format!("node k8s-minion-1 of cluster {CLUSTER} is denied certificates (\"disk replaced\")\n"));
    let at = denied(state)["k8s-minion-1"]["at"].clone();
    let file = state.join("clusters").join(CLUSTER).join("denied-nodes.json");
    assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);

    // Deny twice: one entry, the reason updated, the time it was first denied kept.
    let said = stdout_of(node(state, "deny", &["k8s-minion-1", "--reason", "retired"]));
    assert!(said.contains("was already denied") && said.contains("reason now \"retired\""), "{said}");
    assert_eq!(denied(state), serde_json::json!({"k8s-minion-1": {"reason": "retired", "at": at}}));
    // Without --reason the reason stays; the same reason again changes nothing.
    for again in [&["k8s-minion-1"][..], &["k8s-minion-1", "--reason", "retired"]] {
        let said = stdout_of(node(state, "deny", again));
        assert!(said.contains("unchanged"), "{said}");
        assert_eq!(denied(state), serde_json::json!({"k8s-minion-1": {"reason": "retired", "at": at}}));
    }
    // Upper-case UUIDs name the same cluster, as everywhere else.
    let out = Command::new(SERVER)
        .args(["node", "deny", "--cluster", &CLUSTER.to_uppercase(), "--state"])
        .arg(state)
        .arg("node.example")
        .output()
        .unwrap();
    assert!(stdout_of(out).contains("no reason given"));

    let listed = stdout_of(node(state, "list", &[]));
    let rows = listed.lines().map(|l| l.split('\t').collect::<Vec<_>>()).collect::<Vec<_>>();
    assert_eq!(rows.len(), 2, "{listed}");
    assert_eq!((rows[0][0], rows[0][1], rows[0][2]), ("k8s-minion-1", at.as_str().unwrap(), "retired"));
    assert_eq!((rows[1][0], rows[1][2]), ("node.example", ""));

    // Allowing a node that is not denied succeeds and says so; allowing a denied one removes it.
    let said = stdout_of(node(state, "allow", &["k8s-minion-9"]));
    assert_eq!(said, format!("node k8s-minion-9 of cluster {CLUSTER} was not denied; nothing to do\n"));
    let said = stdout_of(node(state, "allow", &["k8s-minion-1"]));
    assert_eq!(said, format!("node k8s-minion-1 of cluster {CLUSTER} may obtain certificates again\n"));
    assert_eq!(denied(state).as_object().unwrap().keys().collect::<Vec<_>>(), ["node.example"]);
    assert!(stdout_of(node(state, "allow", &["k8s-minion-1"])).contains("was not denied"));
}

#[test]
fn node_commands_refuse_bad_input_with_exit_2() {
    let state = registered_state();
    let path = state.path();
    let path_arg = path.to_str().unwrap();
    let unregistered = "00000000-0000-4000-8000-000000000000";
    let nowhere = path.join("nowhere");
    for (args, hint) in [
        (vec!["deny", "--cluster", CLUSTER, "--state", path_arg, "K8s-Minion-1"], "is not a node name"),
        (vec!["deny", "--cluster", CLUSTER, "--state", path_arg, "system:node:k8s-minion-1"], "without the prefix"),
        (vec!["allow", "--cluster", CLUSTER, "--state", path_arg, "k8s_minion_1"], "lower-case DNS subdomain"),
        (vec!["deny", "--cluster", CLUSTER, "--state", path_arg, "a", "--reason", "two\nlines"], "one line"),
        (vec!["deny", "--cluster", "../etc", "--state", path_arg, "a"], "not a cluster UUID"),
        (vec!["list", "--cluster", "my-cluster", "--state", path_arg], "not a cluster UUID"),
        (vec!["deny", "--cluster", unregistered, "--state", path_arg, "a"], "is not registered"),
        (vec!["allow", "--cluster", unregistered, "--state", path_arg, "a"], "ca init --trustee-user-id"),
        (vec!["list", "--cluster", unregistered, "--state", path_arg], "is not registered"),
        (vec!["list", "--cluster", CLUSTER, "--state", nowhere.to_str().unwrap()], "is not registered"),
        (vec!["deny", "--cluster", CLUSTER, "--state", path_arg], "<NAME>"),
    ] {
        let out = server(&[&["node"][..], &args[..]].concat());
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(hint), "{args:?}: {stderr}");
    }
    assert!(!path.join("clusters").join(CLUSTER).join("denied-nodes.json").exists(), "nothing written");
    assert!(!path.join("clusters").join(unregistered).exists() && !nowhere.exists(), "nothing created");

    // A damaged list is a failure (exit 1) naming the file, and is left for the operator to repair.
    let file = path.join("clusters").join(CLUSTER).join("denied-nodes.json");
    std::fs::write(&file, "[\"k8s-minion-1\"]").unwrap();
    for args in [&["list"][..], &["deny", "k8s-minion-2"], &["allow", "k8s-minion-1"]] {
        let out = node(path, args[0], &args[1..]);
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(&file.display().to_string()), "{args:?}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "[\"k8s-minion-1\"]");
}

#[test]
fn concurrent_denies_and_allows_lose_no_entry() {
    let state = registered_state();
    let state = state.path();
    let spawn = |subcommand: &str, name: &str| {
        let mut command = Command::new(SERVER);
        command.args(["node", subcommand, "--cluster", CLUSTER, "--state"]).arg(state).arg(name);
        if subcommand == "deny" {
            command.args(["--reason", &format!("batch {name}")]);
        }
        command.stdout(std::process::Stdio::null()).spawn().unwrap()
    };
    let wait_all = |children: Vec<std::process::Child>| {
        for mut child in children {
            assert!(child.wait().unwrap().success());
        }
    };
    wait_all((0..16).map(|n| spawn("deny", &format!("node-{n}"))).collect());
    let expected = (0..16).map(|n| format!("node-{n}")).collect::<std::collections::BTreeSet<_>>();
    let names =
        |list: serde_json::Value| list.as_object().unwrap().keys().cloned().collect::<std::collections::BTreeSet<_>>();
    assert_eq!(names(denied(state)), expected);

    // Allow the even ones while denying others.
    let mut children = (0..16).step_by(2).map(|n| spawn("allow", &format!("node-{n}"))).collect::<Vec<_>>();
    children.extend((16..24).map(|n| spawn("deny", &format!("node-{n}"))));
    wait_all(children);
    let expected =
        (1..16).step_by(2).chain(16..24).map(|n| format!("node-{n}")).collect::<std::collections::BTreeSet<_>>();
    assert_eq!(names(denied(state)), expected);
    assert_eq!(denied(state)["node-17"]["reason"], "batch node-17");
}
