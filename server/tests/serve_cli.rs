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
