//! A cluster's boot storm against the real `hearth-server serve` binary, started as a child process on
//! loopback with its default settings and `--agent`.
//!
//! Each of `NODES` simulated nodes does what a booting node does: gets a trust-scoped token from
//! Keystone (`POST /v3/auth/tokens`, the trustee's password and the trust), fetches the cluster's CA
//! (`GET /v1/certificates/{uuid}`, so serve validates the token: `GET /v3/auth/tokens` with
//! `X-Subject-Token`), signs its CSRs (a minion 2: kubelet and kube-proxy; a master 4: kubelet,
//! kube-proxy, API server and a second kubelet-style client), and downloads the agent
//! (`GET /agent/hearth-agent`, 6,115,472 bytes: the static agent's size), all on one kept-alive
//! connection. Keystone is a loopback stand-in in this process speaking its token API with its real
//! JSON shapes (a trust with impersonation, as Magnum makes them).
//!
//! Runs at 1, 10, 200 and 1,000 concurrent nodes (all 1,000 nodes each time, fresh tokens, so every
//! node's first request is a cache miss), then a sign-only phase: clients POSTing CSRs in a loop on
//! kept-alive connections with cached tokens, the figure the targets name. Prints throughput,
//! p50/p99/max latency, errors, and serve's CPU per request (utime+stime from /proc/<pid>/stat), beside
//! `openssl speed -seconds 3 ecdsap256` run in the same process and the load average.
//!
//! Run: `cargo bench -p hearth-server --bench boot_storm`. Not a test: nothing is asserted; errors are
//! counted and printed. `BOOT_STORM_SERVER=PATH` measures another serve binary (an older build, for a
//! before and after under the same load); `BOOT_STORM_LEVELS=200,1000` picks the concurrency levels and
//! `BOOT_STORM_SIGNS=N` the sign-only phase's signs per level (a serve that answers a kept-alive
//! connection every 40 ms needs fewer). The bench raises its own file descriptor limit (soft to hard) for 1,000
//! connections; serve raises its own.

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::SendRequest;
use hyper::{Method, Request, StatusCode};
use hyper_util::rt::TokioIo;
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The serve under test: this build's, or another (`BOOT_STORM_SERVER=path`, e.g. main's for a
/// before-and-after in the same conditions).
fn server() -> String {
    std::env::var("BOOT_STORM_SERVER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_hearth-server").to_string())
}
const NODES: usize = 1000;
const LEVELS: &str = "1,10,200,1000";
/// One in ten nodes is a master (4 CSRs), the rest minions (2).
const MASTER_EVERY: usize = 10;
const AGENT_BYTES: usize = 6_115_472;
/// Signs per level in the sign-only phase.
const SIGN_ONLY_TOTAL: usize = 20_000;

fn levels() -> Vec<usize> {
    let levels = std::env::var("BOOT_STORM_LEVELS").unwrap_or_else(|_| LEVELS.to_string());
    levels.split(',').map(|level| level.trim().parse().expect("BOOT_STORM_LEVELS: numbers")).collect()
}

fn sign_only_total() -> usize {
    std::env::var("BOOT_STORM_SIGNS").map_or(SIGN_ONLY_TOTAL, |n| n.parse().expect("BOOT_STORM_SIGNS: a number"))
}
const CLUSTER: &str = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52";
const TRUSTEE: &str = "4fa830f3a5f84c6e9f2a1d3e5b7c9d0e";
const TRUSTEE_PASSWORD: &str = "trustee-password";
const TRUSTOR: &str = "8e1c2d3f4a5b6c7d8e9f0a1b2c3d4e5f";
const TRUST: &str = "b1c2d3e4f5a6478899aabbccddeeff00";
const PROJECT: &str = "c0ffee00c0ffee00c0ffee00c0ffee00";
const SERVICE_TOKEN: &str = "gAAAAABservice-token-of-hearth";

fn main() {
    raise_fd_limit();
    let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
    println!("boot storm: {NODES} nodes against {} serve on loopback, {cores} cores", server());
    println!("load average before: {}", loadavg());
    println!("openssl speed -seconds 3 ecdsap256 (one core): {}", openssl_speed());

    let keystone = Arc::new(KeystoneStandIn::default());
    let keystone_addr = keystone.clone().serve();
    let state = tempfile::tempdir().unwrap();
    hearth_server::serve::ca_init(state.path(), CLUSTER, Some(TRUSTEE), Some("storm"), 3650).unwrap();
    let agent = state.path().join("hearth-agent");
    std::fs::write(&agent, (0..AGENT_BYTES).map(|i| ((i * 2_654_435_761) >> 13) as u8).collect::<Vec<_>>()).unwrap();
    let nodes = (0..NODES).map(Node::new).collect::<Vec<_>>();
    let serve = Serve::start(&format!("http://{keystone_addr}/v3"), state.path(), &agent);

    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let nodes = Arc::new(nodes);
    println!();
    println!(
        "boot storm (token, CA, 2-4 CSRs, agent per node; latencies of serve's requests, all kinds and signs only)"
    );
    println!(
        "{:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9}",
        "clients",
        "wall s",
        "nodes/s",
        "req/s",
        "signs/s",
        "p50 ms",
        "p99 ms",
        "sign p50",
        "sign p99",
        "errors",
        "CPU ms/rq"
    );
    for &clients in &levels() {
        let cpu_before = serve.cpu_seconds();
        let started = Instant::now();
        let outcome = runtime.block_on(storm(serve.addr, keystone_addr, nodes.clone(), clients));
        let wall = started.elapsed().as_secs_f64();
        let cpu = serve.cpu_seconds() - cpu_before;
        let requests = outcome.all.len();
        println!(
            "{clients:>7} {wall:>8.2} {:>8.0} {:>8.0} {:>8.0} {:>8.1} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>9.3}",
            outcome.nodes as f64 / wall,
            requests as f64 / wall,
            outcome.signs.len() as f64 / wall,
            percentile(&outcome.all, 0.50),
            percentile(&outcome.all, 0.99),
            percentile(&outcome.signs, 0.50),
            percentile(&outcome.signs, 0.99),
            outcome.errors.len(),
            cpu * 1000.0 / requests.max(1) as f64,
        );
        print_errors(&outcome.errors);
    }

    println!();
    let total = sign_only_total();
    println!("sign only ({total} POST /v1/certificates per row, kept-alive connections, tokens cached)");
    println!(
        "{:>7} {:>8} {:>8} {:>8} {:>8} {:>8} {:>7} {:>9}",
        "clients", "wall s", "signs/s", "p50 ms", "p99 ms", "max ms", "errors", "CPU us/sg"
    );
    for &clients in &levels() {
        let cpu_before = serve.cpu_seconds();
        let started = Instant::now();
        let outcome = runtime.block_on(sign_only(serve.addr, keystone_addr, nodes.clone(), clients, total));
        let wall = started.elapsed().as_secs_f64();
        let cpu = serve.cpu_seconds() - cpu_before;
        println!(
            "{clients:>7} {wall:>8.2} {:>8.0} {:>8.1} {:>8.1} {:>8.1} {:>7} {:>9.1}",
            outcome.signs.len() as f64 / wall,
            percentile(&outcome.signs, 0.50),
            percentile(&outcome.signs, 0.99),
            percentile(&outcome.signs, 1.0),
            outcome.errors.len(),
            cpu * 1e6 / outcome.signs.len().max(1) as f64,
        );
        print_errors(&outcome.errors);
    }
    println!();
    println!(
        "Keystone stand-in: {} tokens issued, {} validations; load average after: {}",
        keystone.issued.load(Ordering::Relaxed),
        keystone.validated.load(Ordering::Relaxed),
        loadavg()
    );
}

/// One simulated node: its name and CSRs (made once, before anything is timed).
struct Node {
    csrs: Vec<String>,
}

impl Node {
    fn new(n: usize) -> Node {
        let name = format!("storm-minion-{n}");
        let ip = [10, 0, (n / 250) as u8, (n % 250 + 1) as u8];
        let mut subjects = vec![
            (format!("system:node:{name}"), Some("system:nodes"), true),
            ("system:kube-proxy".to_string(), Some("system:node-proxier"), false),
        ];
        if n.is_multiple_of(MASTER_EVERY) {
            subjects.push(("kubernetes".to_string(), None, true));
            subjects.push((format!("system:node:{name}-master"), Some("system:nodes"), true));
        }
        let csrs = subjects
            .into_iter()
            .map(|(cn, o, sans)| {
                let key = KeyPair::generate().unwrap();
                let mut params = CertificateParams::default();
                params.distinguished_name = DistinguishedName::new();
                params.distinguished_name.push(DnType::CommonName, cn);
                if let Some(o) = o {
                    params.distinguished_name.push(DnType::OrganizationName, o);
                }
                if sans {
                    params.subject_alt_names =
                        vec![SanType::IpAddress(ip.into()), SanType::DnsName(name.clone().try_into().unwrap())];
                }
                let csr = params.serialize_request(&key).unwrap().pem().unwrap();
                json!({"cluster_uuid": CLUSTER, "csr": csr}).to_string()
            })
            .collect();
        Node { csrs }
    }
}

#[derive(Default)]
struct Outcome {
    nodes: usize,
    /// Latency of every request to serve, in ms.
    all: Vec<f64>,
    signs: Vec<f64>,
    errors: Vec<String>,
}

impl Outcome {
    fn merge(&mut self, other: Outcome) {
        self.nodes += other.nodes;
        self.all.extend(other.all);
        self.signs.extend(other.signs);
        self.errors.extend(other.errors);
    }
}

/// Every worker's outcome, added up.
async fn gather(workers: Vec<tokio::task::JoinHandle<Outcome>>) -> Outcome {
    let mut total = Outcome::default();
    for worker in workers {
        total.merge(worker.await.unwrap());
    }
    total
}

/// All nodes, `clients` at a time.
async fn storm(serve: SocketAddr, keystone: SocketAddr, nodes: Arc<Vec<Node>>, clients: usize) -> Outcome {
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..clients)
        .map(|_| {
            let (nodes, next) = (nodes.clone(), next.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    let Some(node) = nodes.get(n) else { break };
                    match boot(serve, keystone, node, &mut outcome).await {
                        Ok(()) => outcome.nodes += 1,
                        Err(e) => outcome.errors.push(e),
                    }
                }
                outcome
            })
        })
        .collect::<Vec<_>>();
    gather(workers).await
}

/// One node's boot: token, CA, CSRs, agent.
async fn boot(serve: SocketAddr, keystone: SocketAddr, node: &Node, outcome: &mut Outcome) -> Result<(), String> {
    let token = trust_token(keystone).await?;
    let mut conn = Conn::open(serve).await?;
    let started = Instant::now();
    let (status, body) = conn.send(Method::GET, &format!("/v1/certificates/{CLUSTER}"), &token, None).await?;
    outcome.all.push(ms(started));
    let pem = serde_json::from_slice::<Value>(&body).ok().and_then(|b| b["pem"].as_str().map(str::to_string));
    if status != StatusCode::OK || !pem.is_some_and(|pem| pem.starts_with("-----BEGIN CERTIFICATE-----")) {
        return Err(format!("CA: HTTP {status}"));
    }
    for csr in &node.csrs {
        let started = Instant::now();
        let (status, body) = conn.send(Method::POST, "/v1/certificates", &token, Some(csr.clone())).await?;
        let took = ms(started);
        outcome.all.push(took);
        outcome.signs.push(took);
        if status != StatusCode::CREATED {
            return Err(format!("sign: HTTP {status}: {}", String::from_utf8_lossy(&body)));
        }
    }
    let started = Instant::now();
    let (status, body) = conn.send(Method::GET, "/agent/hearth-agent", "", None).await?;
    outcome.all.push(ms(started));
    if status != StatusCode::OK || body.len() != AGENT_BYTES {
        return Err(format!("agent: HTTP {status}, {} bytes", body.len()));
    }
    Ok(())
}

/// `clients` nodes each POSTing their first CSR in a loop until `total` are signed.
async fn sign_only(
    serve: SocketAddr,
    keystone: SocketAddr,
    nodes: Arc<Vec<Node>>,
    clients: usize,
    total: usize,
) -> Outcome {
    let left = Arc::new(AtomicUsize::new(total));
    let workers = (0..clients)
        .map(|n| {
            let (nodes, left) = (nodes.clone(), left.clone());
            tokio::spawn(async move {
                let mut outcome = Outcome::default();
                let setup = async {
                    let token = trust_token(keystone).await?;
                    let conn = Conn::open(serve).await?;
                    Ok::<_, String>((token, conn))
                };
                let (token, mut conn) = match setup.await {
                    Ok(ready) => ready,
                    Err(e) => {
                        outcome.errors.push(e);
                        return outcome;
                    }
                };
                let csr = &nodes[n % nodes.len()].csrs[0];
                while left.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |l| l.checked_sub(1)).is_ok() {
                    let started = Instant::now();
                    match conn.send(Method::POST, "/v1/certificates", &token, Some(csr.clone())).await {
                        Ok((StatusCode::CREATED, _)) => outcome.signs.push(ms(started)),
                        Ok((status, _)) => outcome.errors.push(format!("sign: HTTP {status}")),
                        Err(e) => {
                            outcome.errors.push(e);
                            break;
                        }
                    }
                }
                outcome
            })
        })
        .collect::<Vec<_>>();
    gather(workers).await
}

/// A kept-alive HTTP/1.1 connection.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    host: String,
}

impl Conn {
    async fn open(addr: SocketAddr) -> Result<Conn, String> {
        let stream = tokio::net::TcpStream::connect(addr).await.map_err(|e| format!("connecting to {addr}: {e}"))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        Ok(Conn { sender, host: addr.to_string() })
    }

    async fn send(
        &mut self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<String>,
    ) -> Result<(StatusCode, Bytes), String> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header("Host", &self.host)
            .header("OpenStack-API-Version", "container-infra latest");
        if !token.is_empty() {
            request = request.header("X-Auth-Token", token);
        }
        if body.is_some() {
            request = request.header("Content-Type", "application/json");
        }
        let request = request.body(Full::new(Bytes::from(body.unwrap_or_default()))).unwrap();
        self.sender.ready().await.map_err(|e| format!("{path}: {e}"))?;
        let response = self.sender.send_request(request).await.map_err(|e| format!("{path}: {e}"))?;
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| format!("{path}: {e}"))?.to_bytes();
        Ok((status, body))
    }
}

/// A trust-scoped token for the cluster's trustee, as a node's agent asks Keystone for one.
async fn trust_token(keystone: SocketAddr) -> Result<String, String> {
    let body = json!({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {"id": TRUSTEE, "password": TRUSTEE_PASSWORD}}},
        "scope": {"OS-TRUST:trust": {"id": TRUST}}
    }});
    let stream = tokio::net::TcpStream::connect(keystone).await.map_err(|e| format!("Keystone: {e}"))?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = Request::post("/v3/auth/tokens")
        .header("Host", keystone.to_string())
        .header("Content-Type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap();
    let response = sender.send_request(request).await.map_err(|e| format!("Keystone: {e}"))?;
    if response.status() != StatusCode::CREATED {
        return Err(format!("Keystone: HTTP {}", response.status()));
    }
    let token = response.headers().get("X-Subject-Token").and_then(|v| v.to_str().ok()).map(str::to_string);
    token.ok_or_else(|| "Keystone: no X-Subject-Token".into())
}

/// Keystone's token API: the service user's password authentication, the trustee's trust-scoped one, and
/// validation of the tokens it issued.
#[derive(Default)]
struct KeystoneStandIn {
    tokens: Mutex<HashMap<String, ()>>,
    issued: AtomicUsize,
    validated: AtomicUsize,
}

impl KeystoneStandIn {
    /// Serves on a loopback port of its own (hyper, on a runtime of its own) and returns the address.
    fn serve(self: Arc<Self>) -> SocketAddr {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
            runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    let me = self.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request: Request<hyper::body::Incoming>| {
                            let me = me.clone();
                            async move {
                                let (parts, body) = request.into_parts();
                                let body = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                Ok::<_, std::convert::Infallible>(me.answer(&parts, &body))
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        });
        addr
    }

    fn answer(&self, parts: &hyper::http::request::Parts, body: &[u8]) -> hyper::Response<Full<Bytes>> {
        let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default();
        let reply = |status: u16, body: Value, subject: Option<&str>| {
            let mut response = hyper::Response::builder().status(status).header("Content-Type", "application/json");
            if let Some(subject) = subject {
                response = response.header("X-Subject-Token", subject);
            }
            response.body(Full::new(Bytes::from(body.to_string()))).unwrap()
        };
        if parts.uri.path() != "/v3/auth/tokens" {
            return reply(404, json!({"error": {"code": 404, "message": "not found", "title": "Not Found"}}), None);
        }
        match parts.method {
            Method::POST => {
                let body: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
                let user = &body["auth"]["identity"]["password"]["user"];
                let scope = &body["auth"]["scope"];
                if user["id"] == TRUSTEE
                    && user["password"] == TRUSTEE_PASSWORD
                    && scope["OS-TRUST:trust"]["id"] == TRUST
                {
                    let n = self.issued.fetch_add(1, Ordering::Relaxed);
                    let token = format!("gAAAAABtrust-{n:08}-{:016x}", (n as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                    self.tokens.lock().unwrap().insert(token.clone(), ());
                    reply(201, trust_token_body(), Some(&token))
                } else if user["id"] == "hearth" {
                    reply(201, service_token_body(), Some(SERVICE_TOKEN))
                } else {
                    reply(
                        401,
                        json!({"error": {"code": 401, "message": "The request you have made requires authentication.", "title": "Unauthorized"}}),
                        None,
                    )
                }
            }
            Method::GET => {
                self.validated.fetch_add(1, Ordering::Relaxed);
                if header("X-Auth-Token") != SERVICE_TOKEN {
                    return reply(401, json!({"error": {"code": 401, "title": "Unauthorized"}}), None);
                }
                let subject = header("X-Subject-Token");
                if self.tokens.lock().unwrap().contains_key(subject) {
                    reply(200, trust_token_body(), Some(subject))
                } else {
                    reply(
                        404,
                        json!({"error": {"code": 404, "message": "Could not find token", "title": "Not Found"}}),
                        None,
                    )
                }
            }
            _ => reply(405, json!({"error": {"code": 405, "title": "Method Not Allowed"}}), None),
        }
    }
}

/// Keystone's body for a trust-scoped token with impersonation: `user` is the trustor.
fn trust_token_body() -> Value {
    json!({"token": {
        "methods": ["password"],
        "user": {"id": TRUSTOR, "name": "owner", "domain": {"id": "default", "name": "Default"},
                 "password_expires_at": null},
        "audit_ids": ["3T2dc1CGQxyJsHdDu1xkcw"],
        "expires_at": "2999-01-01T00:00:00.000000Z",
        "issued_at": "2026-01-01T00:00:00.000000Z",
        "OS-TRUST:trust": {"id": TRUST, "impersonation": true,
                           "trustee_user": {"id": TRUSTEE}, "trustor_user": {"id": TRUSTOR}},
        "project": {"id": PROJECT, "name": "k8s", "domain": {"id": "default", "name": "Default"}},
        "is_domain": false,
        "roles": [{"id": "9fe2ff9ee4384b1894a90878d3e92bab", "name": "member"}],
        "catalog": []
    }})
}

fn service_token_body() -> Value {
    json!({"token": {
        "methods": ["password"],
        "user": {"id": "hearth", "name": "hearth", "domain": {"id": "default", "name": "Default"}},
        "expires_at": "2999-01-01T00:00:00.000000Z",
        "issued_at": "2026-01-01T00:00:00.000000Z",
        "project": {"id": "service", "name": "service", "domain": {"id": "default", "name": "Default"}},
        "roles": [{"id": "r1", "name": "service"}],
        "catalog": []
    }})
}

/// The serve child process.
struct Serve {
    child: Child,
    addr: SocketAddr,
    _log: tempfile::NamedTempFile,
}

impl Serve {
    fn start(keystone_url: &str, state: &std::path::Path, agent: &std::path::Path) -> Serve {
        // serve logs a line per decision: straight to a file, so no reader of ours sits in its way.
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(server())
            .args(["serve", "--listen", "127.0.0.1:0", "--keystone-url", keystone_url])
            .args(["--service-user-id", "hearth", "--service-project", "service", "--state"])
            .arg(state)
            .arg("--agent")
            .arg(agent)
            .env("HEARTH_SERVICE_PASSWORD", "service-password")
            .env_remove("JOURNAL_STREAM")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let started = Instant::now();
        let addr = loop {
            let text = std::fs::read_to_string(log.path()).unwrap();
            if let Some(at) = text.find("listening on http://") {
                let rest = &text[at + "listening on http://".len()..];
                break rest.split_whitespace().next().unwrap().parse().unwrap();
            }
            assert!(started.elapsed() < Duration::from_secs(20), "serve did not start: {text}");
            std::thread::sleep(Duration::from_millis(20));
        };
        Serve { child, addr, _log: log }
    }

    /// serve's user + system CPU time so far.
    fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap();
        // Fields after the command name (which is in parentheses and may hold spaces).
        let fields = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect::<Vec<_>>();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / clock_ticks()
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn clock_ticks() -> f64 {
    let out = Command::new("getconf").arg("CLK_TCK").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(100.0)
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1000.0
}

fn percentile(values: &[f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[((sorted.len() as f64 * q) as usize).min(sorted.len() - 1)]
}

fn print_errors(errors: &[String]) {
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for error in errors {
        *counts.entry(error.as_str()).or_default() += 1;
    }
    for (error, count) in counts {
        println!("        {count} x {error}");
    }
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The sign and verify rates `openssl speed` prints for ECDSA P-256 (one core).
fn openssl_speed() -> String {
    let out = Command::new("openssl").args(["speed", "-seconds", "3", "ecdsap256"]).output();
    let Ok(out) = out else { return "openssl not found".into() };
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().find(|l| l.contains("ecdsa") && l.contains("nistp256")).unwrap_or("no result").trim();
    let rates = line.split_whitespace().rev().take(2).collect::<Vec<_>>();
    match rates.as_slice() {
        [verify, sign] => match (sign.parse::<f64>(), verify.parse::<f64>()) {
            (Ok(s), Ok(v)) => {
                format!("{s:.0} sign/s, {v:.0} verify/s; sign+verify {:.0}/s per core", 1.0 / (1.0 / s + 1.0 / v))
            }
            _ => line.to_string(),
        },
        _ => line.to_string(),
    }
}

/// The soft file descriptor limit up to the hard one: 1,000 clients and the stand-in's connections.
fn raise_fd_limit() {
    use rustix::process::{getrlimit, setrlimit, Resource, Rlimit};
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(Resource::Nofile, Rlimit { current: limit.maximum, maximum: limit.maximum });
    let now = getrlimit(Resource::Nofile).current.map_or("unlimited".to_string(), |n| n.to_string());
    println!("file descriptor limit: {now}");
}
