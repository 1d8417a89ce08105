//! `hearth-server serve`: Magnum's certificate API for Hearth's nodes (and Magnum's own fragments).
//!
//! - `GET /v1/certificates/{cluster_uuid}` → 200 `{cluster_uuid, bay_uuid, pem, links}`: the cluster's CA.
//! - `POST /v1/certificates` `{cluster_uuid | bay_uuid, csr}` → 201 `{cluster_uuid, bay_uuid, csr, pem, links}`.
//!
//! Each request, in Magnum's order: authenticate the `X-Auth-Token` with Keystone (401 without a valid
//! token, 503 when Keystone cannot answer, so nodes retry), check the API version (406), read the body
//! (400), find the registered cluster (404 on GET, 400 on POST, as Magnum), check the caller is its
//! trustee or an admin (403), read the CSR (400), apply the signing policy (403) and the operator's
//! deny list (403 for a denied node; 500, and nothing signed, when the list cannot be read: [`deny`]).
//! Every answer on the certificate API is logged as one decision line ([`audit`]).
//!
//! The server speaks plain HTTP: put it behind a TLS-terminating proxy, as Magnum's API usually is,
//! and give `public_url` so the `links` name the proxy.
//!
//! Threads: tiny_http reads each connection on a thread of its own; `workers` threads take the parsed
//! requests and answer them.

pub mod api;
pub mod audit;
pub mod ca;
pub mod cluster;
pub mod csr;
pub mod deny;
pub mod keystone;
pub mod policy;
pub mod settings;

use anyhow::{anyhow, Context as _, Result};
use api::ApiError;
use audit::Decision;
use ca::CaStore;
use cluster::{ClusterRecord, ClusterUuid, StateDir};
use hearth_fragments::config::secret::Secret;
use keystone::{AuthError, Caller, Keystone};
use policy::Identity;
use ring::rand::SecureRandom as _;
use serde_json::Value;
use settings::{Settings, SigningSettings};
use std::io::Read as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;

/// Bodies are a CSR in JSON: a few KiB even for RSA 4096 with many SANs.
const MAX_BODY: u64 = 64 * 1024;
/// How long a node should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u32 = 2;

/// A bound, not yet serving, server.
pub struct Server {
    http: Arc<tiny_http::Server>,
    service: Arc<Service>,
    workers: usize,
    local_addr: SocketAddr,
}

/// A server answering on background threads; [`Running::stop`] ends it.
pub struct Running {
    http: Arc<tiny_http::Server>,
    threads: Vec<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("local_addr", &self.local_addr).field("workers", &self.workers).finish()
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("local_addr", &self.local_addr).field("workers", &self.threads.len()).finish()
    }
}

impl Server {
    /// Binds the listen address; nothing is answered until [`Server::run`] or [`Server::spawn`].
    pub fn bind(settings: &Settings) -> Result<Server> {
        let state = StateDir::new(&settings.state_dir);
        std::fs::create_dir_all(state.root()).with_context(|| format!("creating {}", state.root().display()))?;
        let keystone = Keystone::new(&settings.keystone).context("setting up the Keystone client")?;
        let http =
            tiny_http::Server::http(settings.listen).map_err(|e| anyhow!("listening on {}: {e}", settings.listen))?;
        let local_addr = http.server_addr().to_ip().context("the server listens on an IP address")?;
        let agent = match &settings.agent_file {
            None => None,
            Some(path) => {
                let bytes = std::fs::read(path).with_context(|| format!("reading the agent {}", path.display()))?;
                let sha256 = hearth_fragments::digest::sha256_hex(&bytes);
                tracing::info!(
                    "hearth-server: serving {} ({} bytes, sha256 {sha256}) at {AGENT_PATH}",
                    path.display(),
                    bytes.len()
                );
                Some(Agent { bytes, sha256 })
            }
        };
        let service = Service {
            agent,
            cas: CaStore::new(state.clone(), settings.signing.ca_validity_days),
            state,
            keystone,
            keystone_url: settings.keystone.url.clone(),
            admin_role: settings.keystone.admin_role.clone(),
            public_url: settings.public_url.clone(),
            signing: settings.signing,
            local_addr,
        };
        Ok(Server { http: Arc::new(http), service: Arc::new(service), workers: settings.workers, local_addr })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers requests on `workers` threads until the process ends.
    pub fn run(self) -> Result<()> {
        let running = self.spawn();
        for thread in running.threads {
            thread.join().map_err(|_| anyhow!("a request worker panicked"))?;
        }
        Ok(())
    }

    /// Answers requests on `workers` background threads.
    pub fn spawn(self) -> Running {
        let threads = (0..self.workers)
            .map(|n| {
                let (http, service) = (self.http.clone(), self.service.clone());
                std::thread::Builder::new()
                    .name(format!("serve-{n}"))
                    .spawn(move || {
                        while let Ok(request) = http.recv() {
                            service.answer(request);
                        }
                    })
                    .expect("spawning a worker thread")
            })
            .collect();
        Running { http: self.http, threads, local_addr: self.local_addr }
    }
}

impl Running {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Lets every worker finish its request and return.
    pub fn stop(self) {
        for _ in &self.threads {
            self.http.unblock();
        }
        for thread in self.threads {
            let _ = thread.join();
        }
    }
}

/// Where nodes download `hearth-agent` (settings `agent.url` of `render` points here).
pub const AGENT_PATH: &str = "/agent/hearth-agent";

/// The agent binary `serve` hands out, read once at start.
struct Agent {
    bytes: Vec<u8>,
    sha256: String,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("bytes", &self.bytes.len()).field("sha256", &self.sha256).finish()
    }
}

/// What a request needs, shared by the workers.
#[derive(Debug)]
struct Service {
    agent: Option<Agent>,
    state: StateDir,
    cas: CaStore,
    keystone: Keystone,
    keystone_url: String,
    admin_role: String,
    public_url: Option<String>,
    signing: SigningSettings,
    local_addr: SocketAddr,
}

/// A JSON answer.
struct Answer {
    status: u16,
    body: Value,
    headers: Vec<(&'static str, String)>,
}

impl Answer {
    fn json(status: u16, body: &impl serde::Serialize) -> Answer {
        Answer { status, body: serde_json::to_value(body).expect("response bodies serialise"), headers: Vec::new() }
    }
}

enum Route {
    GetCa(String),
    Sign,
    MethodNotAllowed(&'static str),
    NotFound,
}

fn route(method: &tiny_http::Method, url: &str) -> Route {
    use tiny_http::Method;
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    if path == "/v1/certificates" {
        return match method {
            Method::Post => Route::Sign,
            _ => Route::MethodNotAllowed("POST"),
        };
    }
    match path.strip_prefix("/v1/certificates/") {
        Some(ident) if !ident.contains('/') => match method {
            Method::Get => Route::GetCa(ident.to_string()),
            _ => Route::MethodNotAllowed("GET"),
        },
        _ => Route::NotFound,
    }
}

impl Service {
    fn answer(&self, request: tiny_http::Request) {
        let path = request.url().split(['?', '#']).next().unwrap_or_default();
        if path == AGENT_PATH && matches!(request.method(), tiny_http::Method::Get | tiny_http::Method::Head) {
            return self.serve_agent(request);
        }
        self.answer_api(request);
    }

    /// The agent binary: public (the node has no credentials yet), checked by its SHA-256 on the node.
    fn serve_agent(&self, request: tiny_http::Request) {
        let request_id = request_id();
        let mut decision = Decision {
            request_id: request_id.clone(),
            method: request.method().to_string(),
            path: AGENT_PATH.into(),
            ..Decision::default()
        };
        let response = match &self.agent {
            Some(agent) => {
                decision.decision = "served";
                decision.status = 200;
                let mut response = tiny_http::Response::from_data(agent.bytes.clone());
                for (name, value) in [
                    ("Content-Type", "application/octet-stream".to_string()),
                    ("X-Checksum-Sha256", agent.sha256.clone()),
                    (api::REQUEST_ID_HEADER, request_id),
                ] {
                    if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                        response.add_header(header);
                    }
                }
                response
            }
            None => {
                decision.decision = "refused";
                decision.status = 404;
                decision.reason = "no agent file configured (serve --agent FILE)".into();
                tiny_http::Response::from_data(b"no agent file is configured\n".to_vec()).with_status_code(404)
            }
        };
        audit::decision(&decision);
        let _ = request.respond(response);
    }

    fn answer_api(&self, mut request: tiny_http::Request) {
        let request_id = request_id();
        let mut decision = Decision {
            request_id: request_id.clone(),
            method: request.method().to_string(),
            path: request.url().chars().take(200).collect(),
            ..Decision::default()
        };
        let mut version = api::MIN_VERSION;
        let answer = match self.handle(&mut request, &mut decision, &mut version) {
            Ok(answer) => answer,
            Err(error) => {
                decision.reason = error.log_detail.clone().unwrap_or_else(|| error.detail.clone());
                if decision.decision.is_empty() {
                    decision.decision = if error.status >= 500 { "failed" } else { "refused" };
                }
                let mut answer = Answer { status: error.status, body: error.body(&request_id), headers: Vec::new() };
                if error.status == 401 {
                    answer.headers.push(("WWW-Authenticate", format!("Keystone uri=\"{}\"", self.keystone_url)));
                }
                if error.status == 503 {
                    answer.headers.push(("Retry-After", RETRY_AFTER_SECONDS.to_string()));
                }
                answer
            }
        };
        decision.status = answer.status;
        audit::decision(&decision);

        let body = serde_json::to_vec(&answer.body).expect("JSON values serialise");
        let mut response = tiny_http::Response::from_data(body).with_status_code(answer.status);
        let headers = answer
            .headers
            .into_iter()
            .chain(api::version_headers(version))
            .chain([("Content-Type", "application/json".to_string()), (api::REQUEST_ID_HEADER, request_id)]);
        for (name, value) in headers {
            if let Ok(header) = tiny_http::Header::from_bytes(name.as_bytes(), value.as_bytes()) {
                response.add_header(header);
            }
        }
        // The caller may have gone; nothing to do about it.
        let _ = request.respond(response);
    }

    fn handle(
        &self,
        request: &mut tiny_http::Request,
        decision: &mut Decision,
        version: &mut (u32, u32),
    ) -> Result<Answer, ApiError> {
        let route = route(request.method(), request.url());
        if let Route::NotFound = route {
            return Err(ApiError::new(404, "Not Found", "The resource could not be found."));
        }
        // Read before authenticating (bounded), so even a 401 or 503 names the cluster in the log.
        let body = match route {
            Route::Sign => Some(read_body(request)?),
            _ => None,
        };
        decision.cluster = match (&route, &body) {
            (Route::GetCa(ident), _) => ClusterUuid::parse(ident).ok().map(|uuid| uuid.to_string()),
            (_, Some(body)) => claimed_cluster(body),
            _ => None,
        };
        let caller = self.authenticate(request, decision)?;
        *version = api::negotiate(header(request, api::VERSION_HEADER))?;
        match route {
            Route::GetCa(ident) => self.get_ca(request, &ident, &caller, decision),
            Route::Sign => self.sign(request, body.as_deref().unwrap_or_default(), &caller, decision),
            Route::MethodNotAllowed(allowed) => Err(ApiError::new(
                405,
                "Method Not Allowed",
                format!("{} is not allowed here; this resource answers {allowed}", request.method()),
            )),
            Route::NotFound => unreachable!("answered above"),
        }
    }

    fn authenticate(&self, request: &tiny_http::Request, decision: &mut Decision) -> Result<Arc<Caller>, ApiError> {
        let caller = self.keystone.validate(header(request, "X-Auth-Token")).map_err(|e| match e {
            AuthError::Missing | AuthError::Invalid => {
                ApiError::new(401, "Unauthorized", format!("The request you have made requires authentication: {e}."))
            }
            AuthError::Unavailable(_) => ApiError::new(
                503,
                "Service Unavailable",
                "cannot validate the token: Keystone is unavailable; retry later",
            )
            .with_log_detail(e.to_string()),
        })?;
        decision.user = Some(caller.user_id.clone());
        decision.trust = caller.trust_id.as_deref().map(Secret::new);
        decision.admin = caller.is_admin(&self.admin_role);
        Ok(caller)
    }

    /// The registered cluster, if the caller may act for it. `missing_status`: Magnum answers 404 for a
    /// GET and 400 for a POST naming an unknown cluster.
    fn authorize(
        &self,
        ident: &str,
        caller: &Caller,
        missing_status: u16,
        decision: &mut Decision,
    ) -> Result<(ClusterUuid, ClusterRecord), ApiError> {
        let uuid =
            ClusterUuid::parse(ident).map_err(|e| ApiError::new(missing_status, "Cluster not found", e.to_string()))?;
        decision.cluster = Some(uuid.to_string());
        let record = self.state.cluster(&uuid).map_err(|e| internal("reading the cluster registration", &e))?;
        let Some(record) = record else {
            return Err(ApiError::new(
                missing_status,
                "Cluster not found",
                format!("Cluster {uuid} could not be found."),
            ));
        };
        if caller.user_id != record.trustee_user_id && !caller.is_admin(&self.admin_role) {
            return Err(ApiError::new(
                403,
                "Forbidden",
                format!("user {} is not the trustee of cluster {uuid} (and not an admin)", caller.user_id),
            ));
        }
        Ok((uuid, record))
    }

    fn get_ca(
        &self,
        request: &tiny_http::Request,
        ident: &str,
        caller: &Caller,
        decision: &mut Decision,
    ) -> Result<Answer, ApiError> {
        let (uuid, _) = self.authorize(ident, caller, 404, decision)?;
        let (ca, created) = self.cas.get_or_create(&uuid).map_err(|e| internal("loading the CA", &e))?;
        decision.decision = "served";
        decision.reason = if created { "CA created and returned" } else { "CA returned" }.into();
        Ok(Answer::json(
            200,
            &api::CaResponse {
                cluster_uuid: uuid.to_string(),
                bay_uuid: uuid.to_string(),
                pem: ca.cert_pem().to_string(),
                links: api::links(&self.base_url(request), uuid.as_str()),
            },
        ))
    }

    fn sign(
        &self,
        request: &tiny_http::Request,
        body: &[u8],
        caller: &Caller,
        decision: &mut Decision,
    ) -> Result<Answer, ApiError> {
        let not_a_request =
            |e: String| ApiError::new(400, "Bad Request", format!("the body is not a certificate request: {e}"));
        let body: Value = serde_json::from_slice(body).map_err(|e| not_a_request(e.to_string()))?;
        // serde would read a JSON array as the struct's fields in order.
        if !body.is_object() {
            return Err(not_a_request("expected a JSON object".into()));
        }
        let sign_request: api::SignRequest = serde_json::from_value(body).map_err(|e| not_a_request(e.to_string()))?;
        let (ident, csr_pem) = sign_request.cluster_and_csr().map_err(|e| ApiError::new(400, "Bad Request", e))?;
        let (uuid, _) = self.authorize(ident, caller, 400, decision)?;

        let csr = csr::Csr::from_pem(csr_pem).map_err(|e| match e {
            csr::CsrError::WeakKey(_) => ApiError::new(403, "Forbidden", e.to_string()),
            _ => ApiError::new(400, "Invalid CSR", e.to_string()),
        })?;
        decision.cn = Some(csr.common_name().unwrap_or("-").to_string());
        decision.o = csr.values(csr::AttributeType::Organization).map(str::to_string).collect();
        decision.sans = csr.subject_alt_names.iter().map(ToString::to_string).collect();
        let grant = policy::decide(&csr).map_err(|refusal| ApiError::new(403, "Forbidden", refusal.0))?;
        // Read on every request, whatever the identity: a deny takes effect at once, and a list that
        // cannot be read stops all signing for the cluster rather than risk signing for a denied node.
        let denied = deny::load(&self.state, &uuid).map_err(|e| {
            ApiError::new(
                500,
                "Internal Server Error",
                format!(
                    "the operator's deny list of cluster {uuid} is unreadable, so nothing is signed for the \
                     cluster until it is repaired; the server log names the file"
                ),
            )
            .with_log_detail(format!("the deny list is unreadable: {e:#}"))
        })?;
        if let Identity::Node { name } = &grant.identity {
            if let Some(denial) = denied.get(name) {
                return Err(ApiError::new(403, "Forbidden", denial.refusal(name)));
            }
        }
        let (ca, _) = self.cas.get_or_create(&uuid).map_err(|e| internal("loading the CA", &e))?;
        let issued = ca.sign(&grant, self.signing.validity_days).map_err(|e| internal("signing", &e))?;
        decision.decision = "issued";
        decision.serial = Some(issued.serial.clone());
        decision.reason = if grant.dropped.is_empty() {
            grant.identity.to_string()
        } else {
            format!("{}; left out: {}", grant.identity, grant.dropped.join(", "))
        };
        Ok(Answer::json(
            201,
            &api::SignResponse {
                cluster_uuid: uuid.to_string(),
                bay_uuid: uuid.to_string(),
                csr: csr_pem.to_string(),
                pem: issued.pem,
                links: api::links(&self.base_url(request), uuid.as_str()),
            },
        ))
    }

    /// What the `links` start with: the configured public URL, else `http://` and the request's `Host`
    /// (pecan's `host_url`), else the listen address.
    fn base_url(&self, request: &tiny_http::Request) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = header(request, "Host")
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
        format!("http://{}", host.map(str::to_string).unwrap_or_else(|| self.local_addr.to_string()))
    }
}

fn read_body(request: &mut tiny_http::Request) -> Result<Vec<u8>, ApiError> {
    let mut body = Vec::new();
    request
        .as_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::new(400, "Bad Request", format!("reading the body: {e}")))?;
    if body.len() as u64 > MAX_BODY {
        return Err(ApiError::new(413, "Request Entity Too Large", format!("the body exceeds {MAX_BODY} bytes")));
    }
    Ok(body)
}

/// The cluster a sign request names, for the log only (nothing is decided on it before the checks).
fn claimed_cluster(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let named = value.get("cluster_uuid").or_else(|| value.get("bay_uuid"))?.as_str()?;
    ClusterUuid::parse(named).ok().map(|uuid| uuid.to_string())
}

fn header<'a>(request: &'a tiny_http::Request, name: &str) -> Option<&'a str> {
    request.headers().iter().find(|h| h.field.as_str().as_str().eq_ignore_ascii_case(name)).map(|h| h.value.as_str())
}

/// A 500 whose detail stays in the log: file paths and internals are not the caller's business.
fn internal(what: &str, error: &anyhow::Error) -> ApiError {
    ApiError::new(500, "Internal Server Error", format!("{what} failed; the server log has the details"))
        .with_log_detail(format!("{what}: {error:#}"))
}

/// oslo.middleware's form: `req-` and a random UUID.
fn request_id() -> String {
    let mut bytes = [0u8; 16];
    // The id only correlates log lines; a failing RNG would fail signing just after anyway.
    let _ = ring::rand::SystemRandom::new().fill(&mut bytes);
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex = bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
    format!("req-{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..])
}

/// `hearth-server ca init`: registers the cluster when a trustee is given, creates its CA if missing,
/// and returns the CA certificate's path and PEM.
pub fn ca_init(
    state_dir: &std::path::Path,
    cluster: &str,
    trustee_user_id: Option<&str>,
    name: Option<&str>,
    ca_validity_days: u32,
) -> Result<(std::path::PathBuf, String)> {
    let uuid = ClusterUuid::parse(cluster)?;
    let state = StateDir::new(state_dir);
    if let Some(trustee) = trustee_user_id {
        state.register(&ClusterRecord {
            cluster_uuid: uuid.to_string(),
            trustee_user_id: trustee.to_string(),
            name: name.map(str::to_string),
        })?;
    }
    let cas = CaStore::new(state, ca_validity_days);
    let (ca, _) = cas.get_or_create(&uuid)?;
    Ok((cas.cert_path(&uuid), ca.cert_pem().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tiny_http::Method;

    #[test]
    fn routes_are_magnums() {
        assert!(matches!(route(&Method::Post, "/v1/certificates"), Route::Sign));
        assert!(matches!(route(&Method::Post, "/v1/certificates/"), Route::Sign));
        assert!(matches!(route(&Method::Get, "/v1/certificates/abc?x=1"), Route::GetCa(id) if id == "abc"));
        assert!(matches!(route(&Method::Get, "/v1/certificates"), Route::MethodNotAllowed("POST")));
        assert!(matches!(route(&Method::Patch, "/v1/certificates/abc"), Route::MethodNotAllowed("GET")));
        for path in ["/", "/v1", "/v1/certificates/a/b", "/v2/certificates", "/certificates/abc"] {
            assert!(matches!(route(&Method::Get, path), Route::NotFound), "{path}");
        }
    }

    #[test]
    fn request_ids_look_like_oslos() {
        let id = request_id();
        assert_eq!(id.len(), 40, "{id}");
        assert!(id.starts_with("req-") && id.as_bytes()[18] == b'4', "{id}");
        assert_ne!(id, request_id());
    }
}
