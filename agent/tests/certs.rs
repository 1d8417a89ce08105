//! The certs step end to end: `hearth-agent run --only certs --root DIR` against a loopback Keystone and
//! Magnum certificate API ([`StandInCloud`]) whose CA signs for real. Every issued certificate is checked
//! with openssl (`verify -CAfile`, `x509 -noout -text`), files and modes on disk, and the requests the
//! services received; then the failure cases on the same kind of server.

use hearth_tests::StandInCloud;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");

/// A scratch node: a tree that looks like Debian, and a place for its config.
struct Node {
    tree: tempfile::TempDir,
    config: PathBuf,
    _work: tempfile::TempDir,
}

impl Node {
    fn path(&self, node_path: &str) -> PathBuf {
        self.tree.path().join(node_path.trim_start_matches('/'))
    }

    fn read(&self, node_path: &str) -> String {
        std::fs::read_to_string(self.path(node_path)).unwrap_or_else(|e| panic!("{node_path}: {e}"))
    }

    fn mode(&self, node_path: &str) -> u32 {
        std::fs::metadata(self.path(node_path)).unwrap().permissions().mode() & 0o7777
    }

    /// `hearth-agent run --only certs`, or `extra` instead of `--only certs`.
    fn run(&self, extra: &[&str]) -> Output {
        let args = if extra.is_empty() { &["--only", "certs"][..] } else { extra };
        Command::new(AGENT)
            .args(["run", "--config", self.config.to_str().unwrap(), "--root", self.tree.path().to_str().unwrap()])
            .args(args)
            .output()
            .unwrap()
    }
}

fn example(role: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/node/{role}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The example of `role` aimed at a new stand-in cloud, changed by `edit`; short retry deadlines so
/// failure cases end quickly.
fn new_node(role: &str, edit: impl FnOnce(&mut Value)) -> (Node, StandInCloud) {
    let mut config = example(role);
    config["openstack"]["api_deadline_secs"] = json!(20);
    edit(&mut config);
    let cloud = StandInCloud::for_config(&mut config);
    let tree = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(tree.path().join("etc")).unwrap();
    std::fs::write(tree.path().join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::write(tree.path().join("etc/hostname"), format!("k8s-demo-{role}-0\n")).unwrap();
    let work = tempfile::tempdir().unwrap();
    let path = work.path().join(format!("{role}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    (Node { tree, config: path, _work: work }, cloud)
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

fn assert_ok(output: &Output) {
    assert!(output.status.success(), "the agent failed:\n{}", text(output));
}

fn openssl(args: &[&str]) -> String {
    let out = Command::new("openssl").args(args).output().expect("running openssl");
    let all = text(&out);
    assert!(out.status.success(), "openssl {args:?} failed:\n{all}");
    all
}

/// `openssl x509 -noout -text` of a certificate on the node.
fn x509_text(node: &Node, path: &str) -> String {
    openssl(&["x509", "-noout", "-text", "-in", node.path(path).to_str().unwrap()])
}

/// The line after `header` in openssl's text output, trimmed.
fn field<'a>(text: &'a str, header: &str) -> &'a str {
    let mut lines = text.lines();
    lines.find(|l| l.trim_start().starts_with(header)).unwrap_or_else(|| panic!("no {header} in:\n{text}"));
    lines.next().unwrap().trim()
}

fn subject(text: &str) -> &str {
    text.lines().find_map(|l| l.trim().strip_prefix("Subject: ")).expect("a subject")
}

fn signing_requests(cloud: &StandInCloud) -> usize {
    cloud.magnum_requests().iter().filter(|r| r.method == "POST").count()
}

#[test]
fn a_master_gets_server_kubelet_and_service_account_files_that_openssl_accepts() {
    let (node, cloud) = new_node("master", |_| {});
    let first = node.run(&[]);
    assert_ok(&first);
    assert!(text(&first).contains("part-008 certs"), "{}", text(&first));

    let ca = node.path("/etc/kubernetes/certs/ca.crt");
    assert_eq!(std::fs::read_to_string(&ca).unwrap(), cloud.ca_pem(), "ca.crt is the cluster CA");
    for cert in ["server", "kubelet", "proxy", "controller-manager", "scheduler", "agent", "front-proxy-client"] {
        let crt = node.path(&format!("/etc/kubernetes/certs/{cert}.crt"));
        let verified = openssl(&["verify", "-CAfile", ca.to_str().unwrap(), crt.to_str().unwrap()]);
        assert!(verified.contains(": OK"), "{verified}");
        // The certificate is for the key next to it.
        let key = node.path(&format!("/etc/kubernetes/certs/{cert}.key"));
        let from_crt = openssl(&["x509", "-noout", "-pubkey", "-in", crt.to_str().unwrap()]);
        let from_key = openssl(&["pkey", "-pubout", "-in", key.to_str().unwrap()]);
        assert_eq!(from_crt, from_key, "{cert}.crt is not for {cert}.key");
    }

    let server = x509_text(&node, "/etc/kubernetes/certs/server.crt");
    assert_eq!(subject(&server), "CN = kubernetes");
    assert_eq!(
        field(&server, "X509v3 Subject Alternative Name"),
        "IP Address:10.0.0.4, IP Address:172.24.4.10, IP Address:127.0.0.1, IP Address:10.254.0.1, \
         DNS:kubernetes, DNS:kubernetes.default, DNS:kubernetes.default.svc, \
         DNS:kubernetes.default.svc.cluster.local, DNS:k8s-demo-master-0"
    );
    assert_eq!(
        field(&server, "X509v3 Extended Key Usage"),
        "TLS Web Server Authentication, TLS Web Client Authentication"
    );
    assert!(server.contains("X509v3 Key Usage: critical"), "{server}");
    assert_eq!(field(&server, "X509v3 Key Usage"), "Digital Signature");
    assert!(server.contains("ASN1 OID: prime256v1"), "ECDSA P-256 by default:\n{server}");
    assert!(!server.contains("CA:TRUE"), "{server}");

    let kubelet = x509_text(&node, "/etc/kubernetes/certs/kubelet.crt");
    assert_eq!(subject(&kubelet), "CN = system:node:k8s-demo-master-0, O = system:nodes");
    assert_eq!(field(&kubelet, "X509v3 Subject Alternative Name"), "IP Address:10.0.0.4, DNS:k8s-demo-master-0");
    // Order is the signer's (the stand-in, like Python's cryptography, writes a fixed order).
    assert_eq!(
        field(&kubelet, "X509v3 Extended Key Usage"),
        "TLS Web Server Authentication, TLS Web Client Authentication"
    );

    // The masters' other clients of the API: each its own user, no group, a client only.
    for (cert, expected) in [
        ("proxy", "CN = system:kube-proxy, O = system:node-proxier"),
        ("controller-manager", "CN = system:kube-controller-manager"),
        ("scheduler", "CN = system:kube-scheduler"),
        ("agent", "CN = hearth-agent"),
        ("front-proxy-client", "CN = front-proxy-client"),
    ] {
        let text = x509_text(&node, &format!("/etc/kubernetes/certs/{cert}.crt"));
        assert_eq!(subject(&text), expected);
        assert_eq!(field(&text, "X509v3 Extended Key Usage"), "TLS Web Client Authentication", "{cert}");
        assert!(!text.contains("X509v3 Subject Alternative Name"), "{cert}: a client needs no SAN");
    }

    // Modes, and the copies etcd reads.
    for key in ["server.key", "kubelet.key", "service_account.key", "service_account_private.key"] {
        assert_eq!(node.mode(&format!("/etc/kubernetes/certs/{key}")), 0o600, "{key}");
    }
    for crt in ["ca.crt", "server.crt", "kubelet.crt"] {
        assert_eq!(node.mode(&format!("/etc/kubernetes/certs/{crt}")), 0o644, "{crt}");
    }
    for file in ["ca.crt", "server.crt", "server.key"] {
        assert_eq!(node.read(&format!("/etc/etcd/certs/{file}")), node.read(&format!("/etc/kubernetes/certs/{file}")));
    }
    assert_eq!(node.mode("/etc/etcd/certs/server.key"), 0o600);
    let mut listed: Vec<String> = std::fs::read_dir(node.path("/etc/etcd/certs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    listed.sort();
    assert_eq!(listed, ["ca.crt", "server.crt", "server.key"], "etcd gets only what it needs");

    // The service-account pair is the config's, and openssl agrees the halves belong together.
    let config = example("master");
    let public = node.read("/etc/kubernetes/certs/service_account.key");
    assert_eq!(public.trim(), config["kubernetes"]["service_account_key"].as_str().unwrap().trim());
    let private = node.path("/etc/kubernetes/certs/service_account_private.key");
    let derived = openssl(&["pkey", "-pubout", "-in", private.to_str().unwrap()]);
    assert_eq!(derived.trim(), public.trim());

    // What the services saw: one trust-scoped token, one CA fetch, a signing request per certificate,
    // Magnum's headers.
    let tokens = cloud.keystone_requests();
    assert_eq!(tokens.len(), 1, "one token per run");
    let body = tokens[0].json();
    assert_eq!(body["auth"]["scope"], json!({"OS-TRUST:trust": {"id": config["openstack"]["trust_id"]}}));
    assert_eq!(body["auth"]["identity"]["password"]["user"]["id"], config["openstack"]["trustee_user_id"]);
    assert_eq!(body["auth"]["identity"]["password"]["user"]["domain"]["id"], config["openstack"]["trustee_domain_id"]);
    let magnum = cloud.magnum_requests();
    let calls: Vec<String> = magnum.iter().map(|r| format!("{} {}", r.method, r.url)).collect();
    let uuid = config["cluster"]["uuid"].as_str().unwrap();
    let mut expected = vec![format!("GET /v1/certificates/{uuid}")];
    expected.extend(std::iter::repeat_n("POST /v1/certificates".to_string(), 7));
    assert_eq!(calls, expected);
    for request in &magnum {
        assert_eq!(request.header("OpenStack-API-Version"), Some("container-infra latest"));
        assert!(request.header("X-Auth-Token").unwrap().starts_with(cloud.token_prefix()));
    }
    let post = magnum[1].json();
    assert_eq!(post["cluster_uuid"], uuid);
    assert!(post["csr"].as_str().unwrap().starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    assert_eq!(magnum[1].header("Content-Type"), Some("application/json"));

    // Converged: the second run fetches the CA again but signs nothing and changes nothing.
    let before = snapshot(&node);
    let second = node.run(&[]);
    assert_ok(&second);
    assert!(text(&second).contains("certs") && text(&second).contains(" ok "), "{}", text(&second));
    assert_eq!(signing_requests(&cloud), 7, "the second run asked for a certificate");
    assert_eq!(cloud.keystone_requests().len(), 2, "one token for the second run");
    assert_eq!(snapshot(&node), before);

    // Nothing the services handed out reached the agent's output or state.
    let state = std::fs::read_to_string(node.path("/var/lib/hearth/partial.json")).unwrap()
        + &std::fs::read_to_string(node.path("/var/lib/hearth/events.jsonl")).unwrap();
    for shown in [text(&first), text(&second), state] {
        assert!(!shown.contains(cloud.token_prefix()), "a token leaked:\n{shown}");
        assert!(!shown.contains("PRIVATE KEY"), "a key leaked:\n{shown}");
    }
}

/// Every file under the node's certificate directories with its mode.
fn snapshot(node: &Node) -> Vec<(String, u32, String)> {
    let mut files = Vec::new();
    for dir in ["/etc/kubernetes/certs", "/etc/etcd/certs"] {
        let Ok(entries) = std::fs::read_dir(node.path(dir)) else { continue };
        for entry in entries {
            let path = format!("{dir}/{}", entry.unwrap().file_name().to_string_lossy());
            files.push((path.clone(), node.mode(&path), node.read(&path)));
        }
    }
    files.sort();
    files
}

#[test]
fn a_minion_gets_kubelet_and_proxy_with_an_unscoped_token_when_there_is_no_trust() {
    let (node, cloud) = new_node("minion", |c| c["openstack"]["trust_id"] = json!(""));
    assert_ok(&node.run(&[]));
    let ca = node.path("/etc/kubernetes/certs/ca.crt");
    for cert in ["kubelet", "proxy"] {
        let crt = node.path(&format!("/etc/kubernetes/certs/{cert}.crt"));
        assert!(openssl(&["verify", "-CAfile", ca.to_str().unwrap(), crt.to_str().unwrap()]).contains(": OK"));
        assert_eq!(node.mode(&format!("/etc/kubernetes/certs/{cert}.key")), 0o600);
    }
    let proxy = x509_text(&node, "/etc/kubernetes/certs/proxy.crt");
    assert_eq!(subject(&proxy), "CN = system:kube-proxy, O = system:node-proxier");
    assert!(!proxy.contains("Subject Alternative Name"), "{proxy}");
    assert_eq!(field(&proxy, "X509v3 Extended Key Usage"), "TLS Web Client Authentication");
    let kubelet = x509_text(&node, "/etc/kubernetes/certs/kubelet.crt");
    assert_eq!(subject(&kubelet), "CN = system:node:k8s-demo-minion-0, O = system:nodes");
    assert_eq!(field(&kubelet, "X509v3 Subject Alternative Name"), "IP Address:10.0.0.5, DNS:k8s-demo-minion-0");
    assert!(!node.path("/etc/etcd").exists(), "minions hold no etcd certificates");
    assert!(!node.path("/etc/kubernetes/certs/service_account.key").exists());

    let tokens = cloud.keystone_requests();
    assert_eq!(tokens.len(), 1);
    assert!(tokens[0].json()["auth"].get("scope").is_none(), "unscoped without a trust: {}", tokens[0].body);
    assert_eq!(signing_requests(&cloud), 2);
}

#[test]
fn rsa_keys_on_request() {
    let (node, _cloud) = new_node("minion", |c| c["kubernetes"]["key_algorithm"] = json!("rsa-2048"));
    assert_ok(&node.run(&[]));
    let kubelet = x509_text(&node, "/etc/kubernetes/certs/kubelet.crt");
    assert!(kubelet.contains("Public-Key: (2048 bit)"), "{kubelet}");
    assert_eq!(field(&kubelet, "X509v3 Key Usage"), "Digital Signature, Key Encipherment");
    // Switching back to the default algorithm replaces the keys.
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&node.config).unwrap()).unwrap();
    config["kubernetes"]["key_algorithm"] = json!("ecdsa-p256");
    std::fs::write(&node.config, config.to_string()).unwrap();
    let again = node.run(&[]);
    assert_ok(&again);
    assert!(x509_text(&node, "/etc/kubernetes/certs/kubelet.crt").contains("prime256v1"));
}

#[test]
fn ipv6_node_and_service_network_give_ipv6_sans() {
    let (node, _cloud) = new_node("master", |c| {
        c["node"]["ip"] = json!("fd00:10::4");
        c["node"]["public_ip"] = json!(null);
        c["api"]["public_address"] = json!("2001:db8::10");
        c["api"]["private_address"] = json!("fd00:10::4");
        c["network"]["services_cidr"] = json!("fd00:96::/112");
        c["kubernetes"]["dns_service_ip"] = json!("fd00:96::a");
        c["kubernetes"]["dns_cluster_domain"] = json!("k8s.example");
    });
    assert_ok(&node.run(&[]));
    let server = x509_text(&node, "/etc/kubernetes/certs/server.crt");
    assert_eq!(
        field(&server, "X509v3 Subject Alternative Name"),
        "IP Address:FD00:10:0:0:0:0:0:4, IP Address:2001:DB8:0:0:0:0:0:10, IP Address:127.0.0.1, \
         IP Address:0:0:0:0:0:0:0:1, IP Address:FD00:96:0:0:0:0:0:1, DNS:kubernetes, DNS:kubernetes.default, \
         DNS:kubernetes.default.svc, DNS:kubernetes.default.svc.k8s.example, DNS:k8s-demo-master-0"
    );
    let kubelet = x509_text(&node, "/etc/kubernetes/certs/kubelet.crt");
    assert_eq!(
        field(&kubelet, "X509v3 Subject Alternative Name"),
        "IP Address:FD00:10:0:0:0:0:0:4, DNS:k8s-demo-master-0"
    );
}

#[test]
fn a_refusal_names_the_certificate_and_the_signers_reason() {
    let (node, cloud) = new_node("minion", |_| {});
    cloud.refuse_signing(403, "trustee 2b7f… may not obtain system:masters");
    let output = node.run(&[]);
    assert_eq!(output.status.code(), Some(1), "{}", text(&output));
    let all = text(&output);
    assert!(
        all.contains(
            "part-006 certs: signing kubelet certificate: Magnum answered 403: \
                      trustee 2b7f… may not obtain system:masters"
        ),
        "{all}"
    );
    assert_eq!(signing_requests(&cloud), 1, "a 4xx is an answer, not retried");
    assert!(!all.contains(cloud.token_prefix()));
    assert!(!node.path("/etc/kubernetes/certs/kubelet.key").exists(), "no key without its certificate");
    let status = std::fs::read_to_string(node.path("/var/lib/hearth/partial.json")).unwrap();
    assert!(status.contains("Magnum answered 403"), "{status}");
}

#[test]
fn a_401_renews_the_token_once() {
    // An expired token is renewed and the run goes on.
    let (node, cloud) = new_node("minion", |_| {});
    cloud.fail_next(&[(401, "The request you have made requires authentication.")]);
    assert_ok(&node.run(&[]));
    assert_eq!(cloud.keystone_requests().len(), 2, "one renewal");
    assert_eq!(signing_requests(&cloud), 2);

    // A service that refuses every token fails the run after one renewal, saying so.
    let (node, cloud) = new_node("minion", |_| {});
    cloud.fail_next(&[(401, "Token expired"), (401, "Token expired"), (401, "Token expired")]);
    let output = node.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    let all = text(&output);
    assert!(
        all.contains("fetching the CA of cluster 5d12f6fd-a196-4bf0-ae4c-1f639a523a52: Magnum answered 401 even to a renewed token: Token expired"),
        "{all}"
    );
    assert_eq!(cloud.keystone_requests().len(), 2, "exactly one renewal");
    assert_eq!(cloud.magnum_requests().len(), 2);

    // Keystone refusing the trustee is its own error, and never shows the password.
    let (node, cloud) = new_node("minion", |_| {});
    let mut config: Value = serde_json::from_str(&std::fs::read_to_string(&node.config).unwrap()).unwrap();
    config["openstack"]["trustee_password"] = json!("wrong-password-1234");
    std::fs::write(&node.config, config.to_string()).unwrap();
    let output = node.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    let all = text(&output);
    assert!(all.contains("Keystone refused the trustee's credentials: HTTP 401"), "{all}");
    assert!(!all.contains("wrong-password-1234"), "{all}");
    assert!(cloud.magnum_requests().is_empty());
}

#[test]
fn server_errors_are_retried() {
    let (node, cloud) = new_node("minion", |_| {});
    cloud.fail_next(&[(503, "Service Unavailable"), (502, "Bad Gateway")]);
    let output = node.run(&[]);
    assert_ok(&output);
    assert!(text(&output).contains("attempt 2 failed (HTTP 502"), "retries are logged:\n{}", text(&output));
    assert_eq!(cloud.magnum_requests().len(), 2 + 3, "two failures, then the CA and two signatures");
    let status = std::fs::read_to_string(node.path("/var/lib/hearth/partial.json")).unwrap();
    assert!(status.contains("HTTP 200 after 3 attempts"), "{status}");

    // Until the deadline: then the step fails with the last answer.
    let (node, cloud) = new_node("minion", |c| c["openstack"]["api_deadline_secs"] = json!(2));
    cloud.fail_next(&[(503, "down for maintenance"); 50]);
    let output = node.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    let all = text(&output);
    assert!(all.contains("gave up after") && all.contains("HTTP 503") && all.contains("down for maintenance"), "{all}");
}

/// A Keystone that never answers: the failure names its cause once (it used to follow
/// "getting a Keystone token" twice).
#[test]
fn a_failure_says_its_cause_once() {
    let (node, _cloud) = new_node("minion", |c| c["openstack"]["api_deadline_secs"] = json!(1));
    // After the stand-in cloud pointed the config at itself: a port where nothing listens.
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&node.config).unwrap()).unwrap();
    config["openstack"]["auth_url"] = json!("http://127.0.0.1:9/v3");
    std::fs::write(&node.config, config.to_string()).unwrap();
    let output = node.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    let all = text(&output);
    let failure = all.lines().find(|l| l.starts_with("error: run failed")).unwrap_or_else(|| panic!("{all}"));
    assert!(failure.contains("getting a Keystone token: POST http://127.0.0.1:9/v3/auth/tokens: gave up"), "{failure}");
    assert_eq!(failure.matches("gave up after").count(), 1, "{failure}");
}

#[test]
fn an_expiring_certificate_or_a_new_ca_gets_new_certificates() {
    let (node, cloud) = new_node("minion", |_| {});
    // Issued 50 days ago for 60 days: 10 days left, inside the 30-day window.
    cloud.set_validity(-50, 10);
    assert_ok(&node.run(&[]));
    cloud.set_validity(-1, 1825);
    let old_key = node.read("/etc/kubernetes/certs/kubelet.key");
    let output = node.run(&[]);
    assert_ok(&output);
    assert_eq!(signing_requests(&cloud), 4, "both certificates replaced");
    assert_ne!(node.read("/etc/kubernetes/certs/kubelet.key"), old_key, "with a new key");
    let status = std::fs::read_to_string(node.path("/var/lib/hearth/partial.json")).unwrap();
    assert!(status.contains("because it expires"), "the reason is recorded:\n{status}");

    assert_ok(&node.run(&[]));
    assert_eq!(signing_requests(&cloud), 4, "renewed certificates are kept");

    cloud.rotate_ca();
    assert_ok(&node.run(&[]));
    assert_eq!(signing_requests(&cloud), 6, "a new CA means new certificates");
    assert_eq!(node.read("/etc/kubernetes/certs/ca.crt"), cloud.ca_pem());
    let ca = node.path("/etc/kubernetes/certs/ca.crt");
    let crt = node.path("/etc/kubernetes/certs/proxy.crt");
    assert!(openssl(&["verify", "-CAfile", ca.to_str().unwrap(), crt.to_str().unwrap()]).contains(": OK"));

    // A certificate someone broke on disk is replaced too.
    std::fs::write(node.path("/etc/kubernetes/certs/proxy.crt"), "garbage").unwrap();
    assert_ok(&node.run(&[]));
    assert_eq!(signing_requests(&cloud), 7);
}

#[test]
fn tls_disabled_skips_without_a_request() {
    let (node, cloud) = new_node("minion", |c| c["cluster"]["tls_disabled"] = json!(true));
    let output = node.run(&[]);
    assert_ok(&output);
    assert!(text(&output).contains("skipped") && text(&output).contains("TLS is disabled"), "{}", text(&output));
    assert!(cloud.keystone_requests().is_empty() && cloud.magnum_requests().is_empty());
    assert!(!node.path("/etc/kubernetes/certs").exists());
}

#[test]
fn missing_inputs_fail_naming_the_fields() {
    let (node, cloud) = new_node("minion", |c| {
        c["openstack"]["trustee_user_id"] = json!("");
        c["cluster"]["uuid"] = json!("");
    });
    let output = node.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    let all = text(&output);
    assert!(
        all.contains(
            "cannot be requested without cluster.uuid (CLUSTER_UUID), openstack.trustee_user_id (TRUSTEE_USER_ID)"
        ),
        "{all}"
    );
    assert!(cloud.keystone_requests().is_empty());

    // A master's service-account halves that do not belong together are refused before any request.
    let other_private = openssl(&["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]);
    let (node, cloud) = new_node("master", |c| c["kubernetes"]["service_account_private_key"] = json!(other_private));
    let output = node.run(&[]);
    assert_eq!(output.status.code(), Some(1));
    let all = text(&output);
    assert!(
        all.contains(
            "(KUBE_SERVICE_ACCOUNT_KEY, KUBE_SERVICE_ACCOUNT_PRIVATE_KEY) do not make a key pair: \
                      the public key is not the public half of the private key"
        ),
        "{all}"
    );
    assert!(!all.contains(&other_private[40..80]), "key material in the error");
    assert!(cloud.keystone_requests().is_empty() && !node.path("/etc/kubernetes/certs").exists());
}

#[test]
fn a_plan_sends_nothing_and_says_what_it_would_request() {
    let (node, cloud) = new_node("master", |_| {});
    let plan = Command::new(AGENT)
        .args(["plan", "--config", node.config.to_str().unwrap(), "--root", node.tree.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&plan);
    assert!(cloud.keystone_requests().is_empty() && cloud.magnum_requests().is_empty(), "a plan sent a request");
    let shown = text(&plan);
    for expected in [
        "request not run      POST http://127.0.0.1:",
        "trust-scoped token for trustee 2b7fa6c8d26e4b4e8a8e35a3a0e8ef5e",
        "fetching the CA of cluster 5d12f6fd-a196-4bf0-ae4c-1f639a523a52 -> /etc/kubernetes/certs/ca.crt, /etc/etcd/certs/ca.crt",
        "signing server certificate (CN=kubernetes; SANs: IP:10.0.0.4",
        "because there is none yet -> /etc/kubernetes/certs/server.key, /etc/kubernetes/certs/server.crt, /etc/etcd/certs/server.key, /etc/etcd/certs/server.crt",
        "signing kubelet certificate (CN=system:node:k8s-demo-master-0, O=system:nodes; SANs: IP:10.0.0.4, DNS:k8s-demo-master-0)",
        "/etc/kubernetes/certs/service_account_private.key",
    ] {
        assert!(shown.contains(expected), "the plan lacks {expected:?}:\n{shown}");
    }
    assert!(!node.path("/etc/kubernetes").exists());

    // On a converged node the plan checks against the CA on disk and plans no signing.
    assert_ok(&node.run(&[]));
    let plan = Command::new(AGENT)
        .args(["plan", "--config", node.config.to_str().unwrap(), "--root", node.tree.path().to_str().unwrap()])
        .output()
        .unwrap();
    assert_ok(&plan);
    let shown = text(&plan);
    assert!(!shown.contains("signing"), "{shown}");
    assert!(shown.contains("part-008 certs") && shown.contains(" ok "), "{shown}");
}
