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
//! Also `GET /healthz` (200 while serve runs; public, says nothing else) and, with `--agent`, the agent
//! binary at [`AGENT_PATH`].
//!
//! Runtime: tokio and hyper ([`connections`]: the connection bound, timeouts, `TCP_NODELAY`, graceful
//! stop on SIGTERM/SIGINT). The reactor runs on one thread per core; each request's own work —
//! validating the token (a blocking call to Keystone when it is not cached), reading the cluster's
//! files, verifying the CSR and signing — runs on a pool of at most `workers` blocking threads, so
//! neither a slow Keystone nor the signatures' CPU time stalls the connections.

pub mod api;
pub mod audit;
pub mod ca;
pub mod cluster;
pub mod connections;
pub mod csr;
pub mod deny;
pub mod keystone;
pub mod policy;
pub mod settings;

use anyhow::{Context as _, Result};
use api::ApiError;
use audit::Decision;
use bytes::Bytes;
use ca::CaStore;
use cluster::{ClusterRecord, ClusterUuid, StateDir};
use hearth_fragments::config::secret::Secret;
use http_body_util::{BodyExt as _, Full, LengthLimitError, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use keystone::{AuthError, Caller, Keystone};
use policy::Identity;
use ring::rand::SecureRandom as _;
use serde_json::Value;
use settings::{ConnectionSettings, Settings, SigningSettings};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// Bodies are a CSR in JSON: a few KiB even for RSA 4096 with many SANs.
const MAX_BODY: usize = 64 * 1024;
/// How long a node should wait before retrying after a 503.
const RETRY_AFTER_SECONDS: u32 = 2;
/// Blocking work left over after the graceful stop's bound is not waited for much longer.
const RUNTIME_SHUTDOWN: Duration = Duration::from_secs(1);

/// A bound, not yet serving, server.
pub struct Server {
    listener: std::net::TcpListener,
    service: Arc<Service>,
    workers: usize,
    connections: ConnectionSettings,
    local_addr: SocketAddr,
}

/// A server answering on background threads; [`Running::stop`] ends it (and so does dropping it,
/// without waiting).
pub struct Running {
    stop: Option<tokio::sync::mpsc::Sender<&'static str>>,
    thread: Option<JoinHandle<()>>,
    local_addr: SocketAddr,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("local_addr", &self.local_addr)
            .field("workers", &self.workers)
            .field("connections", &self.connections)
            .finish()
    }
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("local_addr", &self.local_addr).finish_non_exhaustive()
    }
}

impl Server {
    /// Binds the listen address; nothing is answered until [`Server::run`] or [`Server::spawn`].
    pub fn bind(settings: &Settings) -> Result<Server> {
        let state = StateDir::new(&settings.state_dir);
        std::fs::create_dir_all(state.root()).with_context(|| format!("creating {}", state.root().display()))?;
        let keystone = Keystone::new(&settings.keystone).context("setting up the Keystone client")?;
        connections::make_room_for(settings.connections.max)?;
        let listener =
            connections::listen(settings.listen).with_context(|| format!("listening on {}", settings.listen))?;
        let local_addr = listener.local_addr().context("the server listens on an IP address")?;
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
                Some(Agent { bytes: Bytes::from(bytes), sha256 })
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
            body_timeout: settings.connections.body_timeout,
            local_addr,
        };
        Ok(Server {
            listener,
            service: Arc::new(service),
            workers: settings.workers,
            connections: settings.connections,
            local_addr,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Answers requests until SIGTERM or SIGINT, then stops gracefully; a second one stops it at once
    /// (see [`connections`]).
    pub fn run(self) -> Result<()> {
        let runtime = self.runtime()?;
        let stops = {
            let _entered = runtime.enter();
            stop_signals().context("handling SIGTERM and SIGINT")?
        };
        let Server { listener, service, connections, .. } = self;
        let stopped = runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).context("listening")?;
            Ok::<_, anyhow::Error>(connections::serve(listener, connections, service, stops).await)
        })?;
        if stopped == connections::Stopped::Now {
            // Asked twice: not even blocking work still running is waited for.
            runtime.shutdown_background();
        } else {
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
        }
        Ok(())
    }

    /// Answers requests on background threads until [`Running::stop`].
    pub fn spawn(self) -> Running {
        // A dropped `Running` closes the channel, which stops the server too.
        let (stop, stops) = tokio::sync::mpsc::channel(1);
        let local_addr = self.local_addr;
        let thread = std::thread::Builder::new()
            .name("serve".into())
            .spawn(move || {
                let runtime = match self.runtime() {
                    Ok(runtime) => runtime,
                    Err(e) => return tracing::error!("hearth-server: {e:#}"),
                };
                let Server { listener, service, connections, .. } = self;
                runtime.block_on(async move {
                    match tokio::net::TcpListener::from_std(listener) {
                        Ok(listener) => {
                            connections::serve(listener, connections, service, stops).await;
                        }
                        Err(e) => tracing::error!("hearth-server: listening on {local_addr}: {e}"),
                    }
                });
                runtime.shutdown_timeout(RUNTIME_SHUTDOWN);
            })
            .expect("spawning the server thread");
        Running { stop: Some(stop), thread: Some(thread), local_addr }
    }

    /// A reactor thread per core, and `workers` threads at most for requests' blocking work.
    fn runtime(&self) -> Result<tokio::runtime::Runtime> {
        let cores = std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cores)
            .max_blocking_threads(self.workers)
            .thread_name("serve")
            .enable_all()
            .build()
            .context("starting the server's runtime")
    }
}

/// Each SIGTERM (systemd's stop) or SIGINT (Ctrl-C), by the signal's name. Must be called within the
/// runtime, which runs the task that forwards them.
fn stop_signals() -> std::io::Result<tokio::sync::mpsc::Receiver<&'static str>> {
    use tokio::signal::unix::{signal, SignalKind};
    let (mut term, mut int) = (signal(SignalKind::terminate())?, signal(SignalKind::interrupt())?);
    let (tx, rx) = tokio::sync::mpsc::channel(2);
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if tx.send(name).await.is_err() {
                break;
            }
        }
    });
    Ok(rx)
}

impl Running {
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops accepting, lets requests in flight finish (within `connections.shutdown_timeout`) and
    /// returns when the server has stopped.
    pub fn stop(mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        // Dropping the sender is the stop signal; the thread ends on its own.
        drop(self.stop.take());
    }
}

/// Where nodes download `hearth-agent` (settings `agent.url` of `render` points here).
pub const AGENT_PATH: &str = "/agent/hearth-agent";

/// The agent binary `serve` hands out, read once at start.
struct Agent {
    bytes: Bytes,
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
    body_timeout: Duration,
    local_addr: SocketAddr,
}

/// Where load balancers and supervisors ask whether serve is up.
pub const HEALTH_PATH: &str = "/healthz";

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

fn route(method: &Method, url: &str) -> Route {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let path = path.strip_suffix('/').filter(|p| !p.is_empty()).unwrap_or(path);
    if path == "/v1/certificates" {
        return match *method {
            Method::POST => Route::Sign,
            _ => Route::MethodNotAllowed("POST"),
        };
    }
    match path.strip_prefix("/v1/certificates/") {
        Some(ident) if !ident.contains('/') => match *method {
            Method::GET => Route::GetCa(ident.to_string()),
            _ => Route::MethodNotAllowed("GET"),
        },
        _ => Route::NotFound,
    }
}

impl connections::Handler for Service {
    async fn respond(self: Arc<Self>, request: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = request.into_parts();
        let fetch = matches!(parts.method, Method::GET | Method::HEAD);
        match parts.uri.path() {
            HEALTH_PATH if fetch => return health(),
            AGENT_PATH if fetch => return self.serve_agent(&parts),
            _ => {}
        }
        let route = route(&parts.method, &url(&parts));
        // Read here, on the reactor, bounded in size and time; the rest is blocking work.
        let body = match route {
            Route::Sign => Some(read_body(body, self.body_timeout).await),
            _ => None,
        };
        let service = self.clone();
        match tokio::task::spawn_blocking(move || service.answer_api(&parts, route, body)).await {
            Ok(response) => response,
            Err(e) => {
                tracing::error!("hearth-server: a request's handler failed: {e}");
                response(500, [("Content-Type", "text/plain".to_string())], "the request's handler failed\n")
            }
        }
    }
}

/// `GET /healthz`: the process is up and answering.
fn health() -> Response<Full<Bytes>> {
    response(200, [("Content-Type", "application/json".to_string())], r#"{"status":"ok"}"#)
}

/// An answer of `status` with `headers` (ones that are not valid HTTP are left out) and `body`, in one
/// buffer so hyper writes it at once.
fn response(
    status: u16,
    headers: impl IntoIterator<Item = (&'static str, String)>,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    for (name, value) in headers {
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name.as_bytes()), HeaderValue::from_str(&value)) {
            response.headers_mut().append(name, value);
        }
    }
    response
}

/// The request's path and query, as sent.
fn url(parts: &Parts) -> String {
    parts.uri.path_and_query().map_or_else(|| parts.uri.to_string(), ToString::to_string)
}

impl Service {
    /// The agent binary: public (the node has no credentials yet), checked by its SHA-256 on the node.
    fn serve_agent(&self, parts: &Parts) -> Response<Full<Bytes>> {
        let request_id = request_id();
        let mut decision = Decision {
            request_id: request_id.clone(),
            method: parts.method.to_string(),
            path: AGENT_PATH.into(),
            ..Decision::default()
        };
        let answer = match &self.agent {
            Some(agent) => {
                decision.decision = "served";
                decision.status = 200;
                response(
                    200,
                    [
                        ("Content-Type", "application/octet-stream".to_string()),
                        ("X-Checksum-Sha256", agent.sha256.clone()),
                        (api::REQUEST_ID_HEADER, request_id),
                    ],
                    // Shared, not copied: a boot storm downloads the same megabytes a thousand times.
                    agent.bytes.clone(),
                )
            }
            None => {
                decision.decision = "refused";
                decision.status = 404;
                decision.reason = "no agent file configured (serve --agent FILE)".into();
                response(404, [], "no agent file is configured\n")
            }
        };
        audit::decision(&decision);
        answer
    }

    fn answer_api(&self, parts: &Parts, route: Route, body: Option<Result<Bytes, ApiError>>) -> Response<Full<Bytes>> {
        let request_id = request_id();
        let mut decision = Decision {
            request_id: request_id.clone(),
            method: parts.method.to_string(),
            path: url(parts).chars().take(200).collect(),
            ..Decision::default()
        };
        let mut version = api::MIN_VERSION;
        let answer = match self.handle(parts, route, body, &mut decision, &mut version) {
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
                if error.status == 408 {
                    // The rest of the body may still come; it is not the start of another request.
                    answer.headers.push(("Connection", "close".to_string()));
                }
                answer
            }
        };
        decision.status = answer.status;
        audit::decision(&decision);

        let body = serde_json::to_vec(&answer.body).expect("JSON values serialise");
        let headers = answer
            .headers
            .into_iter()
            .chain(api::version_headers(version))
            .chain([("Content-Type", "application/json".to_string()), (api::REQUEST_ID_HEADER, request_id)]);
        response(answer.status, headers, body)
    }

    fn handle(
        &self,
        parts: &Parts,
        route: Route,
        body: Option<Result<Bytes, ApiError>>,
        decision: &mut Decision,
        version: &mut (u32, u32),
    ) -> Result<Answer, ApiError> {
        if let Route::NotFound = route {
            return Err(ApiError::new(404, "Not Found", "The resource could not be found."));
        }
        // Read before authenticating (bounded), so even a 401 or 503 names the cluster in the log.
        let body = body.transpose()?;
        decision.cluster = match (&route, &body) {
            (Route::GetCa(ident), _) => ClusterUuid::parse(ident).ok().map(|uuid| uuid.to_string()),
            (_, Some(body)) => claimed_cluster(body),
            _ => None,
        };
        let caller = self.authenticate(&parts.headers, decision)?;
        *version = api::negotiate(header(&parts.headers, api::VERSION_HEADER))?;
        match route {
            Route::GetCa(ident) => self.get_ca(&parts.headers, &ident, &caller, decision),
            Route::Sign => self.sign(&parts.headers, body.as_deref().unwrap_or_default(), &caller, decision),
            Route::MethodNotAllowed(allowed) => Err(ApiError::new(
                405,
                "Method Not Allowed",
                format!("{} is not allowed here; this resource answers {allowed}", parts.method),
            )),
            Route::NotFound => unreachable!("answered above"),
        }
    }

    fn authenticate(&self, headers: &HeaderMap, decision: &mut Decision) -> Result<Arc<Caller>, ApiError> {
        let caller = self.keystone.validate(header(headers, "X-Auth-Token")).map_err(|e| match e {
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
        headers: &HeaderMap,
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
                links: api::links(&self.base_url(headers), uuid.as_str()),
            },
        ))
    }

    fn sign(
        &self,
        headers: &HeaderMap,
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
                links: api::links(&self.base_url(headers), uuid.as_str()),
            },
        ))
    }

    /// What the `links` start with: the configured public URL, else `http://` and the request's `Host`
    /// (pecan's `host_url`), else the listen address.
    fn base_url(&self, headers: &HeaderMap) -> String {
        if let Some(url) = &self.public_url {
            return url.clone();
        }
        let host = header(headers, "Host")
            .filter(|h| !h.is_empty() && h.bytes().all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)));
        format!("http://{}", host.map(str::to_string).unwrap_or_else(|| self.local_addr.to_string()))
    }
}

/// The body, at most [`MAX_BODY`] bytes (413 past it), within `timeout` (408 after it).
async fn read_body(body: Incoming, timeout: Duration) -> Result<Bytes, ApiError> {
    match tokio::time::timeout(timeout, Limited::new(body, MAX_BODY).collect()).await {
        Err(_) => Err(ApiError::new(
            408,
            "Request Timeout",
            format!("the body did not arrive within {} s", timeout.as_secs()),
        )),
        Ok(Err(e)) if e.is::<LengthLimitError>() => {
            Err(ApiError::new(413, "Request Entity Too Large", format!("the body exceeds {MAX_BODY} bytes")))
        }
        Ok(Err(e)) => Err(ApiError::new(400, "Bad Request", format!("reading the body: {e}"))),
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
    }
}

/// The cluster a sign request names, for the log only (nothing is decided on it before the checks).
fn claimed_cluster(body: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let named = value.get("cluster_uuid").or_else(|| value.get("bay_uuid"))?.as_str()?;
    ClusterUuid::parse(named).ok().map(|uuid| uuid.to_string())
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|value| value.to_str().ok())
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

    #[test]
    fn routes_are_magnums() {
        assert!(matches!(route(&Method::POST, "/v1/certificates"), Route::Sign));
        assert!(matches!(route(&Method::POST, "/v1/certificates/"), Route::Sign));
        assert!(matches!(route(&Method::GET, "/v1/certificates/abc?x=1"), Route::GetCa(id) if id == "abc"));
        assert!(matches!(route(&Method::GET, "/v1/certificates"), Route::MethodNotAllowed("POST")));
        assert!(matches!(route(&Method::PATCH, "/v1/certificates/abc"), Route::MethodNotAllowed("GET")));
        for path in ["/", "/v1", "/v1/certificates/a/b", "/v2/certificates", "/certificates/abc"] {
            assert!(matches!(route(&Method::GET, path), Route::NotFound), "{path}");
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
