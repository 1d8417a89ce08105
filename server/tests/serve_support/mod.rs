//! What the `serve_*` tests share: a Keystone world (service user, cluster owner, trustees and trusts,
//! as Magnum sets them up), the `hearth-server serve` binary running against it, and openssl as the
//! maker of keys and CSRs (what Magnum's make-cert.sh used) and the judge of certificates.

#![allow(dead_code)] // each test binary uses its own part of this module

use hearth_tests::keystone::{Keystone, Scope, Tenancy, User};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

pub const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");

/// One cluster as Magnum makes it: a trustee user in the trustee domain and a trust from the owner.
#[derive(Debug)]
pub struct Cluster {
    pub uuid: String,
    pub trustee: User,
    pub trust: String,
}

/// Users, projects and clusters in a real Keystone, and a state directory where the clusters are
/// registered.
#[derive(Debug)]
pub struct World {
    pub keystone: &'static Keystone,
    pub service: User,
    pub service_project: String,
    pub owner: User,
    pub project: String,
    pub clusters: Vec<Cluster>,
    pub state: tempfile::TempDir,
}

impl World {
    /// `clusters` clusters; the first is registered with `hearth-server ca init --trustee-user-id`,
    /// the others by writing `cluster.json` the way `render` will.
    pub fn new(keystone: &'static Keystone, clusters: usize) -> World {
        let Tenancy { service, service_project, owner, project, owner_token, trustee_domain } =
            keystone.magnum_tenancy().unwrap();
        let state = tempfile::Builder::new().prefix("hearth-serve-state-").tempdir().unwrap();
        let clusters = (0..clusters)
            .map(|n| {
                let uuid = new_uuid();
                let trustee = keystone
                    .create_user(&format!("{uuid}_trustee"), &format!("trustee-password-{n}"), &trustee_domain)
                    .unwrap();
                let trust =
                    keystone.create_trust(&owner_token, &owner.id, &trustee.id, &project, &["member"], true).unwrap();
                if n == 0 {
                    let out = Command::new(SERVER)
                        .args(["ca", "init", "--cluster", &uuid, "--trustee-user-id", &trustee.id, "--name", "k8s-0"])
                        .arg("--state")
                        .arg(state.path())
                        .output()
                        .unwrap();
                    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
                } else {
                    let dir = state.path().join("clusters").join(&uuid);
                    std::fs::create_dir_all(&dir).unwrap();
                    let record = json!({"cluster_uuid": uuid, "trustee_user_id": trustee.id});
                    std::fs::write(dir.join("cluster.json"), record.to_string()).unwrap();
                }
                Cluster { uuid, trustee, trust }
            })
            .collect();
        World { keystone, service, service_project, owner, project, clusters, state }
    }

    pub fn unscoped_token(&self, cluster: usize) -> String {
        let trustee = &self.clusters[cluster].trustee;
        self.keystone.token(&trustee.id, &trustee.password, Scope::Unscoped).unwrap()
    }

    pub fn trust_token(&self, cluster: usize) -> String {
        let c = &self.clusters[cluster];
        self.keystone.token(&c.trustee.id, &c.trustee.password, Scope::Trust(&c.trust)).unwrap()
    }

    /// `hearth-server serve` for this world's Keystone and state, with `extra` flags.
    pub fn serve(&self, extra: &[&str]) -> Serve {
        Serve::start(self.keystone.url(), &self.service, &self.service_project, self.state.path(), extra)
    }
}

/// A log line without the timestamp serve starts it with off journald (`2026-12-03T17:50:28.123Z `).
pub fn message(line: &str) -> &str {
    match line.split_once(' ') {
        Some((time, rest)) if is_timestamp(time) => rest,
        _ => line,
    }
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ`, UTC to the millisecond.
pub fn is_timestamp(word: &str) -> bool {
    let shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    word.len() == shape.len()
        && word.bytes().zip(shape.bytes()).all(|(c, s)| if s == b'd' { c.is_ascii_digit() } else { c == s })
}

/// A random (version 4) UUID, as Magnum gives clusters.
pub fn new_uuid() -> String {
    std::fs::read_to_string("/proc/sys/kernel/random/uuid").unwrap().trim().to_string()
}

/// A running `hearth-server serve`; its stderr is collected line by line.
#[derive(Debug)]
pub struct Serve {
    child: Child,
    pub url: String,
    log: Arc<Mutex<Vec<String>>>,
    agent: ureq::Agent,
    _password_dir: tempfile::TempDir,
}

/// An answer: status, headers, and the body as JSON (`Null` when it is not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The `detail` of Magnum's error body, after checking its shape.
    pub fn error_detail(&self) -> String {
        let errors = self.body["errors"].as_array().unwrap_or_else(|| panic!("not an error body: {}", self.body));
        assert_eq!(errors.len(), 1, "{}", self.body);
        let error = &errors[0];
        assert_eq!(error["status"], self.status, "{}", self.body);
        assert_eq!(error["code"], if self.status >= 500 { "server" } else { "client" }, "{}", self.body);
        assert!(error["request_id"].as_str().unwrap().starts_with("req-"), "{}", self.body);
        assert_eq!(Some(error["request_id"].as_str().unwrap()), self.header("X-OpenStack-Request-Id"));
        assert!(error["title"].as_str().is_some_and(|t| !t.is_empty()) && error["links"] == json!([]));
        error["detail"].as_str().unwrap().to_string()
    }
}

/// Starts serve from `command` with its stderr collected line by line, and waits for it to listen;
/// returns the child, the URL it listens on and the lines so far (growing as serve writes).
pub fn spawn_logged(command: &mut Command) -> (Child, String, Arc<Mutex<Vec<String>>>) {
    let mut child = command.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (found, listening) = mpsc::channel();
    let lines = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            // Under journald serve prefixes its lines with a priority instead of a timestamp.
            let text = message(line.strip_prefix("<6>").unwrap_or(&line));
            if let Some(rest) = text.strip_prefix("hearth-server: listening on ") {
                let _ = found.send(rest.split_whitespace().next().unwrap_or_default().to_string());
            }
            lines.lock().unwrap().push(line);
        }
    });
    let url = listening.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| {
        let _ = child.kill();
        panic!("serve did not start: {:?}", log.lock().unwrap())
    });
    (child, url, log)
}

impl Serve {
    pub fn start(keystone_url: &str, service: &User, project: &str, state: &Path, extra: &[&str]) -> Serve {
        let password_dir = tempfile::tempdir().unwrap();
        let password_file = password_dir.path().join("password");
        std::fs::write(&password_file, format!("{}\n", service.password)).unwrap();
        let mut command = Command::new(SERVER);
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--keystone-url", keystone_url])
            .args(["--service-user", &service.name, "--service-project", project])
            .arg("--service-password-file")
            .arg(&password_file)
            .arg("--state")
            .arg(state)
            .args(extra)
            .env_remove("JOURNAL_STREAM");
        let (child, url, log) = spawn_logged(&mut command);
        let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(60)).build();
        Serve { child, url, log, agent, _password_dir: password_dir }
    }

    /// Everything serve wrote on stderr so far, each line without its timestamp.
    pub fn log(&self) -> Vec<String> {
        self.raw_log().iter().map(|line| message(line).to_string()).collect()
    }

    /// Everything serve wrote on stderr so far, as written.
    pub fn raw_log(&self) -> Vec<String> {
        self.log.lock().unwrap().clone()
    }

    /// The decision line of a request, by its request id (waits a moment: the line is written just
    /// before the answer, by another thread).
    pub fn decision(&self, request_id: &str) -> String {
        for _ in 0..50 {
            if let Some(line) = self.log().into_iter().find(|l| l.contains(&format!("request={request_id} "))) {
                // Failures are logged at error priority, which a terminal sees as a prefix.
                return line.strip_prefix("error: ").map(str::to_string).unwrap_or(line);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("no decision line for {request_id}: {:?}", self.log())
    }

    /// A request with Magnum's `OpenStack-API-Version: container-infra latest`, as nodes send it.
    pub fn send(&self, method: &str, path: &str, token: Option<&str>, body: Option<&Value>) -> Answer {
        let mut headers = vec![("OpenStack-API-Version", "container-infra latest")];
        headers.extend(token.map(|token| ("X-Auth-Token", token)));
        self.send_with(method, path, &headers, body)
    }

    /// A request with exactly these headers (plus Content-Type for a body); any status is an answer.
    pub fn send_with(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&Value>) -> Answer {
        let mut call = self.agent.request(method, &format!("{}{path}", self.url));
        for (name, value) in headers {
            call = call.set(name, value);
        }
        let result = match body {
            Some(body) => call.set("Content-Type", "application/json").send_string(&body.to_string()),
            None => call.call(),
        };
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(e) => panic!("{method} {path}: {e}"),
        };
        let status = response.status();
        let headers = response
            .headers_names()
            .into_iter()
            .filter_map(|name| response.header(&name).map(|value| (name.clone(), value.to_string())))
            .collect();
        let text = response.into_string().unwrap();
        Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::Null) }
    }

    pub fn get_ca(&self, cluster: &str, token: &str) -> Answer {
        self.send("GET", &format!("/v1/certificates/{cluster}"), Some(token), None)
    }

    pub fn sign(&self, cluster: &str, csr: &str, token: &str) -> Answer {
        self.send("POST", "/v1/certificates", Some(token), Some(&json!({"cluster_uuid": cluster, "csr": csr})))
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A key and CSR made by `openssl req`, as Magnum's make-cert.sh made them.
#[derive(Debug)]
pub struct KeyAndCsr {
    pub key: PathBuf,
    pub csr: String,
}

/// `openssl req -new -newkey KEY -subj SUBJECT -addext EXT…`; `key` is `ec` (P-256) or `rsa:BITS`.
pub fn openssl_csr(dir: &Path, name: &str, key: &str, subject: &str, extensions: &[&str]) -> KeyAndCsr {
    let key_path = dir.join(format!("{name}.key"));
    let csr_path = dir.join(format!("{name}.csr"));
    let mut command = Command::new("openssl");
    command.args(["req", "-new", "-nodes", "-newkey", key]);
    if key == "ec" {
        command.args(["-pkeyopt", "ec_paramgen_curve:P-256"]);
    }
    command.arg("-keyout").arg(&key_path).arg("-out").arg(&csr_path).args(["-subj", subject]);
    for extension in extensions {
        command.args(["-addext", extension]);
    }
    run(&mut command);
    KeyAndCsr { key: key_path, csr: std::fs::read_to_string(&csr_path).unwrap() }
}

/// Runs a command that must succeed; its stdout.
pub fn run(command: &mut Command) -> String {
    let out = command.output().unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        out.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `openssl x509 -noout -text` of a PEM file.
pub fn x509_text(cert: &Path) -> String {
    run(Command::new("openssl").args(["x509", "-noout", "-text", "-in"]).arg(cert))
}

/// Whether `openssl verify -CAfile ca cert` accepts the certificate.
pub fn openssl_verifies(ca: &Path, cert: &Path) -> bool {
    Command::new("openssl").args(["verify", "-CAfile"]).arg(ca).arg(cert).output().unwrap().status.success()
}

/// Writes `text` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}
