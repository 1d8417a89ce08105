//! Certificates end to end with real components: a real Keystone 30 (trustee user and trust made as
//! Magnum's conductor makes them), `hearth-server serve` holding the cluster CA, and the real
//! `hearth-agent` running its certs step (rooted) for a master and a minion. openssl judges every
//! certificate; a second run issues nothing; a server that cannot reach Keystone answers 503, which the
//! agent retries and then reports.

use hearth_server::serve::{self, settings::SettingsFile};
use hearth_tests::keystone::{free_port, Keystone, Tenancy, User};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");

/// A cluster as Magnum sets it up in Keystone, and the service user `serve` validates tokens with.
struct World {
    keystone: &'static Keystone,
    service: User,
    service_project: String,
    trustee: User,
    trustee_domain: String,
    trust: String,
    uuid: String,
    state: tempfile::TempDir,
}

impl World {
    fn new() -> World {
        let keystone = Keystone::shared().unwrap();
        let Tenancy { service, service_project, owner, project, owner_token, trustee_domain } =
            keystone.magnum_tenancy().unwrap();
        let uuid = std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap().trim().to_string();
        let trustee = keystone.create_user(&format!("{uuid}_trustee"), "Tr'u$tee\"pass", &trustee_domain).unwrap();
        let trust = keystone.create_trust(&owner_token, &owner.id, &trustee.id, &project, &["member"], true).unwrap();
        let state = tempfile::Builder::new().prefix("hearth-serve-state-").tempdir().unwrap();
        serve::ca_init(state.path(), &uuid, Some(&trustee.id), Some("demo"), 3650).unwrap();
        World { keystone, service, service_project, trustee, trustee_domain, trust, uuid, state }
    }

    /// `serve` in this process, validating tokens against `keystone_url`; returns it and its `/v1` URL.
    fn serve(&self, keystone_url: &str) -> (serve::Running, String) {
        let file: SettingsFile = serde_json::from_value(json!({
            "listen": "127.0.0.1:0",
            "state_dir": self.state.path(),
            "keystone": {
                "url": keystone_url,
                "service_user": {"name": self.service.name, "password": self.service.password,
                                 "project": self.service_project},
            },
        }))
        .unwrap();
        let running = serve::Server::bind(&file.resolve(None).unwrap()).unwrap().spawn();
        let url = format!("http://{}/v1", running.local_addr());
        (running, url)
    }

    fn ca_pem(&self) -> PathBuf {
        self.state.path().join("clusters").join(&self.uuid).join("ca.crt")
    }

    /// A node of `role` from the bundled example, aimed at this world; the master uses the trust, the
    /// minion an unscoped token (Magnum's default, `cluster_user_trust = False`).
    fn node(&self, role: &str, magnum_url: &str) -> Node {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/node/{role}.json"));
        let mut config: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        config["cluster"]["uuid"] = json!(self.uuid);
        let os = &mut config["openstack"];
        os["auth_url"] = json!(self.keystone.url());
        os["magnum_url"] = json!(magnum_url);
        os["trustee_user_id"] = json!(self.trustee.id);
        os["trustee_username"] = json!(self.trustee.name);
        os["trustee_domain_id"] = json!(self.trustee_domain);
        os["trustee_password"] = json!(self.trustee.password);
        os["trust_id"] = json!(if role == "master" { self.trust.as_str() } else { "" });
        os["api_deadline_secs"] = json!(6);
        config["signal"]["endpoint"] = json!("");
        let tree = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tree.path().join("etc")).unwrap();
        std::fs::write(tree.path().join("etc/os-release"), "ID=debian\n").unwrap();
        let config_path = tree.path().join("node.json");
        std::fs::write(&config_path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
        Node { tree, config: config_path }
    }
}

struct Node {
    tree: tempfile::TempDir,
    config: PathBuf,
}

impl Node {
    fn run(&self) -> Output {
        Command::new(AGENT)
            .args(["run", "--only", "certs", "--config"])
            .arg(&self.config)
            .arg("--root")
            .arg(self.tree.path())
            .output()
            .unwrap()
    }

    fn path(&self, node_path: &str) -> PathBuf {
        self.tree.path().join(node_path.trim_start_matches('/'))
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

fn openssl(args: &[&str]) -> (bool, String) {
    let out = Command::new("openssl").args(args).output().unwrap();
    (out.status.success(), text(&out))
}

#[test]
fn master_and_minion_certificates_from_serve_with_a_real_keystone() {
    let world = World::new();
    let (server, url) = world.serve(world.keystone.url());
    let ca = world.ca_pem();
    let ca = ca.to_str().unwrap();
    let expected = [
        (
            "master",
            vec![("server", "CN = kubernetes"), ("kubelet", "CN = system:node:k8s-demo-master-0, O = system:nodes")],
        ),
        (
            "minion",
            vec![
                ("kubelet", "CN = system:node:k8s-demo-minion-0, O = system:nodes"),
                ("proxy", "CN = system:kube-proxy, O = system:node-proxier"),
            ],
        ),
    ];
    for (role, certs) in expected {
        let node = world.node(role, &url);
        let started = Instant::now();
        let first = node.run();
        assert!(first.status.success(), "{role}: {}", text(&first));
        eprintln!("{role}: certs from serve in {:.2}s", started.elapsed().as_secs_f64());
        assert_eq!(
            std::fs::read_to_string(node.path("/etc/kubernetes/certs/ca.crt")).unwrap(),
            std::fs::read_to_string(ca).unwrap(),
            "the node trusts the cluster CA serve holds"
        );
        let mut before = Vec::new();
        for (name, subject) in &certs {
            let cert = node.path(&format!("/etc/kubernetes/certs/{name}.crt"));
            let cert = cert.to_str().unwrap();
            let (ok, out) = openssl(&["verify", "-CAfile", ca, cert]);
            assert!(ok, "{role} {name}: {out}");
            let (_, shown) =
                openssl(&["x509", "-noout", "-subject", "-ext", "basicConstraints,extendedKeyUsage", "-in", cert]);
            assert!(shown.contains(&format!("subject={subject}")), "{role} {name}: {shown}");
            assert!(shown.contains("CA:FALSE"), "{role} {name}: {shown}");
            before.push(std::fs::read(cert).unwrap());
        }
        // Converged: the second run keeps every certificate and asks serve to sign nothing.
        let second = node.run();
        assert!(second.status.success(), "{role}: {}", text(&second));
        for ((name, _), old) in certs.iter().zip(&before) {
            assert_eq!(
                &std::fs::read(node.path(&format!("/etc/kubernetes/certs/{name}.crt"))).unwrap(),
                old,
                "{role} {name}"
            );
        }
        let status = std::fs::read_to_string(node.path("/var/lib/hearth/partial.json")).unwrap();
        let signing = format!("\"POST {url}/certificates\"");
        assert!(!status.contains(&signing), "{role}: the second run requested a signature:\n{status}");
        assert!(status.contains(&format!("\"GET {url}/certificates/{}\"", world.uuid)), "{role}: {status}");
        assert!(!status.contains(&world.trustee.password), "{role}: the trustee password leaked");
    }
    server.stop();
}

#[test]
fn a_server_without_keystone_answers_503_and_the_agent_says_so() {
    let world = World::new();
    // serve cannot reach its Keystone (nothing listens on this loopback port); the agent can reach its own.
    let dead = format!("http://127.0.0.1:{}/v3", free_port().unwrap());
    let (server, url) = world.serve(&dead);
    let node = world.node("minion", &url);
    let started = Instant::now();
    let out = node.run();
    let took = started.elapsed();
    assert!(!out.status.success(), "{}", text(&out));
    let all = text(&out);
    assert!(all.contains("part-006 certs") && all.contains("503"), "{all}");
    assert!(all.contains("attempts") || all.contains("gave up"), "the agent retried before failing: {all}");
    assert!(took.as_secs() < 30, "bounded by api_deadline_secs, took {took:?}");
    assert!(!node.path("/etc/kubernetes/certs/kubelet.crt").exists());
    server.stop();
}
