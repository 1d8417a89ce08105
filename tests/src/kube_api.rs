//! A loopback HTTPS stand-in for a master's Kubernetes API server, for the agent's API steps
//! (apiserver-kubelet-rbac, health, addons).
//!
//! It speaks the API the way kube-apiserver does for what those steps use, and checks every request:
//!
//! - **TLS and who is asking**: it serves with the certificate it is given (the master's `server.crt`),
//!   asks for a client certificate from the cluster CA, and only the expected one (the master's own
//!   `server.crt`, user `kubernetes`) is let in: another certificate, or none, gets `401 Unauthorized`
//!   in the API's `Status` shape.
//! - **Health**: `GET /healthz`, `/readyz` (`ok`) and `/version`; tests script answers while "starting"
//!   ([`KubeApiStandIn::script`]) or a server that never gets ready.
//! - **Objects**: the resources of the kinds the steps apply, under `/api/v1/…` and `/apis/<group>/<version>/…`,
//!   cluster-wide or namespaced. `GET` answers the stored object or `404 NotFound`. `POST` to a collection
//!   (`application/json`) creates (`409 AlreadyExists` if present). `PATCH` takes server-side apply
//!   (`application/apply-patch+yaml`, which needs `fieldManager`; JSON is YAML) or a JSON merge patch
//!   (`application/merge-patch+json`); other patch types get `415`. Bodies must name the kind, version,
//!   name and namespace of their URL (`400` otherwise).
//! - **As the real server stores objects**: `uid`, `creationTimestamp` and a `resourceVersion` are added,
//!   plus some of kube-apiserver's defaults (Service `type`/`sessionAffinity`/`targetPort`, container
//!   `terminationMessagePath`/`imagePullPolicy`, pod `restartPolicy`/`schedulerName`, workload
//!   `revisionHistoryLimit`/update strategies), and empty `omitempty` fields are left out of answers (an
//!   env var's `value: ""`, a mount's `readOnly: false`). A write that changes nothing keeps the
//!   `resourceVersion`, as the real server does.
//! - **Refusals**: [`KubeApiStandIn::forbid_writes`] makes every write answer RBAC's `403 Forbidden`.
//!
//! Every request is recorded ([`KubeApiStandIn::requests`]) with its headers, body and whether the
//! expected client certificate was shown.
//!
//! [`KubeApiStandIn::start`] listens on a free port of this machine's loopback;
//! [`KubeApiStandIn::start_on`] serves a listener the caller made, e.g. one inside a booted node's own
//! network namespace (`Node::listen("127.0.0.1:6443")`), where the node's programs reach it as their
//! local API server.

use anyhow::{bail, Context as _, Result};
use rustls::pki_types::CertificateDer;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// One request as received.
#[derive(Clone, Debug)]
pub struct ApiRequest {
    pub method: String,
    /// The path, without the query.
    pub path: String,
    pub query: String,
    /// Header names lower-cased.
    pub headers: HashMap<String, String>,
    pub body: String,
    /// Whether the client showed the expected certificate.
    pub authenticated: bool,
}

impl ApiRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// `PATCH /apis/…/clusterroles/x application/apply-patch+yaml`: what the tests compare.
    pub fn summary(&self) -> String {
        let query = if self.query.is_empty() { String::new() } else { format!("?{}", self.query) };
        match self.header("content-type") {
            Some(kind) => format!("{} {}{query} {kind}", self.method, self.path),
            None => format!("{} {}{query}", self.method, self.path),
        }
    }
}

/// The resources the stand-in serves: (group, version, resource, kind, namespaced).
const RESOURCES: &[(&str, &str, &str, &str, bool)] = &[
    ("", "v1", "namespaces", "Namespace", false),
    ("", "v1", "serviceaccounts", "ServiceAccount", true),
    ("", "v1", "configmaps", "ConfigMap", true),
    ("", "v1", "secrets", "Secret", true),
    ("", "v1", "services", "Service", true),
    ("apps", "v1", "deployments", "Deployment", true),
    ("apps", "v1", "daemonsets", "DaemonSet", true),
    ("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", false),
    ("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", false),
    ("rbac.authorization.k8s.io", "v1", "roles", "Role", true),
    ("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding", true),
];

/// What the server version says (`/version`).
const GIT_VERSION: &str = "v1.24.17";
/// How long the accept loop sleeps when no connection is waiting: the bound on noticing a stop.
const ACCEPT_POLL: Duration = Duration::from_millis(25);
/// A client that sends nothing for this long is let go (its thread must not wait forever).
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

struct State {
    objects: BTreeMap<String, Value>,
    resource_version: u64,
    requests: Vec<ApiRequest>,
    /// Answers given to the next probes of a path instead of `ok`: path → (status, body).
    scripted: HashMap<String, VecDeque<(u16, String)>>,
    /// A path that answers this forever (a server that never gets ready).
    stuck: HashMap<String, (u16, String)>,
    /// Paths that do not exist on this server (e.g. `/readyz` before Kubernetes 1.16).
    absent: Vec<String>,
    forbid_writes: bool,
}

/// The server, on its own listener, stopped when dropped.
pub struct KubeApiStandIn {
    /// `https://ADDRESS:PORT`, the listener's address (meaningful where the listener lives: this
    /// machine's loopback for [`KubeApiStandIn::start`], a node's namespace for a node's listener).
    pub url: String,
    pub port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for KubeApiStandIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeApiStandIn").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Drop for KubeApiStandIn {
    fn drop(&mut self) {
        // The accept loop looks at the flag between polls; never "wake" it by connecting: the listener
        // may live in another namespace, where this machine's 127.0.0.1:PORT is someone else.
        self.stop.store(true, Ordering::SeqCst);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes()).collect::<Result<Vec<_>, _>>()?;
    if certs.is_empty() {
        bail!("no PEM certificate");
    }
    Ok(certs)
}

impl KubeApiStandIn {
    /// Serves on a free port of this machine's loopback with `server_cert`/`server_key` (PEM), trusting
    /// client certificates of `ca` and letting in only `client_cert`.
    pub fn start(ca: &str, server_cert: &str, server_key: &str, client_cert: &str) -> Result<KubeApiStandIn> {
        let listener = TcpListener::bind("127.0.0.1:0").context("listening on 127.0.0.1")?;
        KubeApiStandIn::start_on(listener, ca, server_cert, server_key, client_cert)
    }

    /// [`KubeApiStandIn::start`] on `listener`, wherever it listens (e.g. inside a node's namespace).
    pub fn start_on(
        listener: TcpListener,
        ca: &str,
        server_cert: &str,
        server_key: &str,
        client_cert: &str,
    ) -> Result<KubeApiStandIn> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        for cert in certificates(ca).context("the CA")? {
            roots.add(cert)?;
        }
        // Like kube-apiserver: a client certificate is asked for, not required; who sent none is anonymous.
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .allow_unauthenticated()
            .build()?;
        let key = rustls_pemfile::private_key(&mut server_key.as_bytes())?.context("no server key")?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certificates(server_cert).context("the server certificate")?, key)?;
        let expected = certificates(client_cert).context("the expected client certificate")?.remove(0);

        let address = listener.local_addr().context("reading the listener's address")?;
        listener.set_nonblocking(true).context("making the listener non-blocking")?;
        let state = Arc::new(Mutex::new(State {
            objects: BTreeMap::new(),
            resource_version: 1000,
            requests: Vec::new(),
            scripted: HashMap::new(),
            stuck: HashMap::new(),
            absent: Vec::new(),
            forbid_writes: false,
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (config, shared, stopping) = (Arc::new(config), state.clone(), stop.clone());
        let acceptor = std::thread::Builder::new()
            .name(format!("kube-api {address}"))
            .spawn(move || accept_loop(&listener, &config, &shared, &expected, &stopping))
            .context("starting the API stand-in's thread")?;
        Ok(KubeApiStandIn {
            url: format!("https://{address}"),
            port: address.port(),
            state,
            stop,
            acceptor: Some(acceptor),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The next probes of `path` (`/healthz`, `/readyz`) get these answers, in order, then `ok` again.
    pub fn script(&self, path: &str, answers: &[(u16, &str)]) {
        self.state().scripted.entry(path.into()).or_default().extend(answers.iter().map(|(s, b)| (*s, b.to_string())));
    }

    /// `path` answers `status` and `body` from now on.
    pub fn stick(&self, path: &str, status: u16, body: &str) {
        self.state().stuck.insert(path.into(), (status, body.into()));
    }

    /// `path` does not exist on this server (404), as `/readyz` before Kubernetes 1.16.
    pub fn remove_path(&self, path: &str) {
        self.state().absent.push(path.into());
    }

    /// Every write is refused by RBAC from now on.
    pub fn forbid_writes(&self) {
        self.state().forbid_writes = true;
    }

    pub fn requests(&self) -> Vec<ApiRequest> {
        self.state().requests.clone()
    }

    /// Forgets the requests received so far.
    pub fn clear_requests(&self) {
        self.state().requests.clear();
    }

    /// The stored object at `path` (`/apis/…/clusterroles/x`), as the server would answer it.
    pub fn object(&self, path: &str) -> Option<Value> {
        self.state().objects.get(path).cloned()
    }

    /// The paths of every stored object.
    pub fn object_paths(&self) -> Vec<String> {
        self.state().objects.keys().cloned().collect()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Accepts connections (a non-blocking listener, looked at every [`ACCEPT_POLL`]) until `stop`; each
/// one is served by a thread of its own. Dropping the listener on the way out closes the port.
fn accept_loop(
    listener: &TcpListener,
    config: &Arc<rustls::ServerConfig>,
    state: &Arc<Mutex<State>>,
    expected: &CertificateDer<'static>,
    stop: &AtomicBool,
) {
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((tcp, _peer)) => {
                // The connection is served with blocking reads and writes, bounded for a silent client.
                if tcp.set_nonblocking(false).is_err() || tcp.set_read_timeout(Some(IDLE_TIMEOUT)).is_err() {
                    continue;
                }
                let (config, state, expected) = (config.clone(), state.clone(), expected.clone());
                std::thread::spawn(move || serve_connection(tcp, config, &state, &expected));
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(ACCEPT_POLL),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A connection reset before it was accepted, or no file descriptor left for a moment.
            Err(_) => std::thread::sleep(ACCEPT_POLL),
        }
    }
}

fn serve_connection(
    tcp: TcpStream,
    config: Arc<rustls::ServerConfig>,
    state: &Mutex<State>,
    expected: &CertificateDer<'static>,
) {
    let Ok(connection) = rustls::ServerConnection::new(config) else { return };
    let mut tls = rustls::StreamOwned::new(connection, tcp);
    let Some((method, target, headers, body)) = read_request(&mut tls) else { return };
    let authenticated = tls.conn.peer_certificates().and_then(|c| c.first()).is_some_and(|c| c == expected);
    let (path, query) = target.split_once('?').map_or((target.clone(), String::new()), |(p, q)| (p.into(), q.into()));
    let request = ApiRequest { method, path, query, headers, body, authenticated };
    let (status, content_type, body) = answer(state, request);
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        reason(status),
        body.len()
    );
    let _ = tls.write_all(head.as_bytes());
    let _ = tls.write_all(body.as_bytes());
    tls.conn.send_close_notify();
    let _ = tls.flush();
}

type Head = (String, String, HashMap<String, String>, String);

/// Method, target, headers (names lower-cased) and body of one HTTP/1.1 request.
fn read_request(stream: &mut impl Read) -> Option<Head> {
    let mut head = Vec::new();
    let mut byte = [0u8];
    while !head.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).ok()? != 1 || head.len() > 64 * 1024 {
            return None;
        }
        head.push(byte[0]);
    }
    let text = String::from_utf8(head).ok()?;
    let mut lines = text.split("\r\n");
    let mut first = lines.next()?.split(' ');
    let (method, target) = (first.next()?.to_string(), first.next()?.to_string());
    let headers: HashMap<String, String> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers.get("content-length").and_then(|l| l.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).ok()?;
    Some((method, target, headers, String::from_utf8(body).ok()?))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Entity",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    }
}

type Answer = (u16, &'static str, String);

/// The API's `Status` body for a failure.
fn status(code: u16, reason: &str, message: &str) -> Answer {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code});
    (code, "application/json", body.to_string())
}

fn answer(state: &Mutex<State>, request: ApiRequest) -> Answer {
    let mut state = lock(state);
    state.requests.push(request.clone());
    if !request.authenticated {
        return status(401, "Unauthorized", "Unauthorized");
    }
    let path = request.path.clone();
    if ["/healthz", "/readyz", "/version"].contains(&path.as_str()) {
        if request.method != "GET" {
            return status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource");
        }
        if state.absent.contains(&path) {
            return (404, "text/plain; charset=utf-8", "404 page not found\n".into());
        }
        if let Some((code, body)) = state.stuck.get(&path).cloned() {
            return (code, "text/plain; charset=utf-8", body);
        }
        if let Some((code, body)) = state.scripted.get_mut(&path).and_then(VecDeque::pop_front) {
            return (code, "text/plain; charset=utf-8", body);
        }
        if path == "/version" {
            let body = json!({"major": "1", "minor": "24", "gitVersion": GIT_VERSION, "platform": "linux/amd64"});
            return (200, "application/json", body.to_string());
        }
        return (200, "text/plain; charset=utf-8", "ok".into());
    }
    match Route::parse(&path) {
        Some(route) => objects(&mut state, &request, route),
        None => (404, "text/plain; charset=utf-8", "404 page not found\n".into()),
    }
}

/// A resource URL: which resource, in which namespace, and the name when it names one object.
struct Route {
    group: &'static str,
    version: &'static str,
    resource: &'static str,
    kind: &'static str,
    namespace: Option<String>,
    name: Option<String>,
}

impl Route {
    fn parse(path: &str) -> Option<Route> {
        let parts: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        let (group, version, rest) = match parts.as_slice() {
            ["api", version, rest @ ..] => ("", *version, rest),
            ["apis", group, version, rest @ ..] => (*group, *version, rest),
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some(ns.to_string()), rest),
            _ => (None, rest),
        };
        let (resource, name) = match rest {
            [resource] => (*resource, None),
            [resource, name] => (*resource, Some(name.to_string())),
            _ => return None,
        };
        let &(group, version, resource, kind, namespaced) =
            RESOURCES.iter().find(|(g, v, r, _, _)| *g == group && *v == version && *r == resource)?;
        if namespaced != namespace.is_some() {
            return None;
        }
        Some(Route { group, version, resource, kind, namespace, name })
    }

    fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    /// `clusterroles.rbac.authorization.k8s.io`, as the server's messages name a resource.
    fn qualified(&self) -> String {
        if self.group.is_empty() {
            self.resource.to_string()
        } else {
            format!("{}.{}", self.resource, self.group)
        }
    }

    fn item_path(&self, name: &str) -> String {
        let prefix = if self.group.is_empty() { "/api".to_string() } else { format!("/apis/{}", self.group) };
        match &self.namespace {
            Some(ns) => format!("{prefix}/{}/namespaces/{ns}/{}/{name}", self.version, self.resource),
            None => format!("{prefix}/{}/{}/{name}", self.version, self.resource),
        }
    }
}

fn query_value<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query.split('&').filter_map(|pair| pair.split_once('=')).find(|(k, _)| *k == key).map(|(_, v)| v)
}

fn objects(state: &mut State, request: &ApiRequest, route: Route) -> Answer {
    let content_type = request.header("content-type").unwrap_or_default().to_string();
    match (request.method.as_str(), &route.name) {
        ("GET", Some(name)) => match state.objects.get(&route.item_path(name)) {
            Some(object) => (200, "application/json", object.to_string()),
            None => not_found(&route, name),
        },
        ("POST", None) => {
            if content_type != "application/json" {
                return status(
                    415,
                    "UnsupportedMediaType",
                    &format!("the body of a create must be JSON, not {content_type:?}"),
                );
            }
            let body = match checked_body(&route, request, None) {
                Ok(body) => body,
                Err(answer) => return answer,
            };
            let name = body["metadata"]["name"].as_str().unwrap_or_default().to_string();
            if let Some(refused) = forbidden(state, &route, "create", &name) {
                return refused;
            }
            let path = route.item_path(&name);
            if state.objects.contains_key(&path) {
                return status(409, "AlreadyExists", &format!("{} \"{name}\" already exists", route.qualified()));
            }
            let stored = store(state, &path, None, body);
            (201, "application/json", stored.to_string())
        }
        ("PATCH", Some(name)) => {
            let path = route.item_path(name);
            let existing = state.objects.get(&path).cloned();
            let patched = match content_type.as_str() {
                "application/apply-patch+yaml" => {
                    if query_value(&request.query, "fieldManager").is_none_or(str::is_empty) {
                        return status(422, "Invalid", "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch");
                    }
                    match checked_body(&route, request, Some(name)) {
                        Ok(applied) => match &existing {
                            Some(live) => merge(live.clone(), applied, false),
                            None => applied,
                        },
                        Err(answer) => return answer,
                    }
                }
                "application/merge-patch+json" => {
                    let Some(live) = &existing else { return not_found(&route, name) };
                    match checked_body(&route, request, Some(name)) {
                        Ok(patch) => merge(live.clone(), patch, true),
                        Err(answer) => return answer,
                    }
                }
                other => {
                    return status(
                        415,
                        "UnsupportedMediaType",
                        &format!("the stand-in does not take {other:?} patches"),
                    )
                }
            };
            if let Some(refused) = forbidden(state, &route, "patch", name) {
                return refused;
            }
            let created = existing.is_none();
            let stored = store(state, &path, existing, patched);
            (if created { 201 } else { 200 }, "application/json", stored.to_string())
        }
        _ => status(405, "MethodNotAllowed", "the server does not allow this method on the requested resource"),
    }
}

fn not_found(route: &Route, name: &str) -> Answer {
    status(404, "NotFound", &format!("{} \"{name}\" not found", route.qualified()))
}

fn forbidden(state: &State, route: &Route, verb: &str, name: &str) -> Option<Answer> {
    if !state.forbid_writes {
        return None;
    }
    let scope = match &route.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let message = format!(
        "{} \"{name}\" is forbidden: User \"kubernetes\" cannot {verb} resource \"{}\" in API group \"{}\" {scope}",
        route.qualified(),
        route.resource,
        route.group
    );
    Some(status(403, "Forbidden", &message))
}

/// The body as JSON, checked against the URL: kind, version, name (`name` for items) and namespace.
fn checked_body(route: &Route, request: &ApiRequest, name: Option<&str>) -> Result<Value, Answer> {
    let body: Value = serde_json::from_str(&request.body)
        .map_err(|e| status(400, "BadRequest", &format!("the body is not JSON: {e}")))?;
    let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
    let mismatch = |what: &str, got: String, want: String| {
        status(400, "BadRequest", &format!("the body's {what} {got:?} does not match the URL's {want:?}"))
    };
    if text(&body["apiVersion"]) != route.api_version() {
        return Err(mismatch("apiVersion", text(&body["apiVersion"]), route.api_version()));
    }
    if text(&body["kind"]) != route.kind {
        return Err(mismatch("kind", text(&body["kind"]), route.kind.to_string()));
    }
    let body_name = text(&body["metadata"]["name"]);
    if body_name.is_empty() || name.is_some_and(|n| n != body_name) {
        return Err(mismatch("name", body_name, name.unwrap_or_default().to_string()));
    }
    let body_namespace = body["metadata"]["namespace"].as_str().map(str::to_string);
    if body_namespace.is_some() && body_namespace != route.namespace {
        return Err(mismatch(
            "namespace",
            body_namespace.unwrap_or_default(),
            route.namespace.clone().unwrap_or_default(),
        ));
    }
    Ok(body)
}

/// `patch` merged into `base`: objects key by key, anything else replaced; with `nulls_delete` (JSON merge
/// patch, RFC 7386) a `null` removes the key.
fn merge(base: Value, patch: Value, nulls_delete: bool) -> Value {
    match (base, patch) {
        (Value::Object(mut base), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() && nulls_delete {
                    base.remove(&key);
                    continue;
                }
                let merged = match base.remove(&key) {
                    Some(old) => merge(old, value, nulls_delete),
                    None => value,
                };
                base.insert(key, merged);
            }
            Value::Object(base)
        }
        (_, patch) => patch,
    }
}

/// Stores `object` at `path` as the server would, keeping `previous`'s identity and `resourceVersion`
/// when nothing else changed; returns what is stored.
fn store(state: &mut State, path: &str, previous: Option<Value>, object: Value) -> Value {
    let mut object = shaped(object);
    let (uid, created, version) = match &previous {
        Some(p) => (
            p["metadata"]["uid"].clone(),
            p["metadata"]["creationTimestamp"].clone(),
            p["metadata"]["resourceVersion"].clone(),
        ),
        None => (
            json!(format!("5f0c{:08x}-0000-4000-8000-{:012x}", state.objects.len(), state.resource_version)),
            json!("2026-01-01T00:00:00Z"),
            Value::Null,
        ),
    };
    object["metadata"]["uid"] = uid;
    object["metadata"]["creationTimestamp"] = created;
    object["metadata"]["resourceVersion"] = version;
    if previous.as_ref() != Some(&object) {
        state.resource_version += 1;
        object["metadata"]["resourceVersion"] = json!(state.resource_version.to_string());
    }
    state.objects.insert(path.to_string(), object.clone());
    object
}

/// Some of kube-apiserver's defaults, and its leaving out of empty `omitempty` fields.
fn shaped(mut object: Value) -> Value {
    let kind = object["kind"].as_str().unwrap_or_default().to_string();
    let set = |value: &mut Value, key: &str, default: Value| {
        if let Some(map) = value.as_object_mut() {
            map.entry(key.to_string()).or_insert(default);
        }
    };
    match kind.as_str() {
        "Service" => {
            set(&mut object["spec"], "type", json!("ClusterIP"));
            set(&mut object["spec"], "sessionAffinity", json!("None"));
            if let Some(ports) = object["spec"]["ports"].as_array_mut() {
                for port in ports {
                    let number = port["port"].clone();
                    set(port, "protocol", json!("TCP"));
                    set(port, "targetPort", number);
                }
            }
        }
        "Deployment" | "DaemonSet" => {
            set(&mut object["spec"], "revisionHistoryLimit", json!(10));
            if kind == "Deployment" {
                set(&mut object["spec"], "progressDeadlineSeconds", json!(600));
                set(
                    &mut object["spec"],
                    "strategy",
                    json!({"type": "RollingUpdate",
                    "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}}),
                );
            } else {
                set(
                    &mut object["spec"],
                    "updateStrategy",
                    json!({"type": "RollingUpdate",
                    "rollingUpdate": {"maxUnavailable": 1}}),
                );
            }
            let pod = &mut object["spec"]["template"]["spec"];
            set(pod, "restartPolicy", json!("Always"));
            set(pod, "schedulerName", json!("default-scheduler"));
            set(pod, "securityContext", json!({}));
            for list in ["containers", "initContainers"] {
                if let Some(containers) = pod[list].as_array_mut() {
                    for container in containers {
                        set(container, "terminationMessagePath", json!("/dev/termination-log"));
                        set(container, "imagePullPolicy", json!("IfNotPresent"));
                    }
                }
            }
        }
        _ => {}
    }
    drop_empty(&mut object);
    object
}

/// Leaves out what kube-apiserver's JSON leaves out when empty: an env var's `value` and a volume
/// mount's `readOnly`.
fn drop_empty(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if map.get("readOnly") == Some(&json!(false)) {
                map.remove("readOnly");
            }
            if map.contains_key("name") && map.get("value") == Some(&json!("")) {
                map.remove("value");
            }
            map.values_mut().for_each(drop_empty);
        }
        Value::Array(items) => items.iter_mut().for_each(drop_empty),
        _ => {}
    }
}

/// The object's manifest fields only (no server-set metadata): for comparing with what was applied.
pub fn without_server_fields(object: &Value) -> Value {
    let mut object = object.clone();
    if let Some(metadata) = object["metadata"].as_object_mut() {
        for key in ["uid", "creationTimestamp", "resourceVersion"] {
            metadata.remove(key);
        }
    }
    object
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    /// A self-signed certificate for 127.0.0.1 and its key (PEM): CA, server and client at once.
    fn self_signed() -> (String, String) {
        let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        (certified.cert.pem(), certified.signing_key.serialize_pem())
    }

    /// One HTTPS request over rustls, as a client of the API would make it; the whole answer.
    fn get(address: SocketAddr, ca: &str, identity: Option<(&str, &str)>, path: &str) -> String {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(certificates(ca).unwrap().remove(0)).unwrap();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    certificates(cert).unwrap(),
                    rustls_pemfile::private_key(&mut key.as_bytes()).unwrap().unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let name = rustls::pki_types::ServerName::IpAddress(address.ip().into());
        let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let mut tls = rustls::StreamOwned::new(connection, TcpStream::connect(address).unwrap());
        tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n").as_bytes())
            .unwrap();
        let mut answer = String::new();
        tls.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn serves_the_listener_it_is_given_and_closes_it_when_dropped_without_connecting() {
        let (cert, key) = self_signed();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let api = KubeApiStandIn::start_on(listener, &cert, &cert, &key, &cert).unwrap();
        assert_eq!(api.url, format!("https://{address}"));
        assert_eq!(api.port, address.port());

        let answer = get(address, &cert, Some((&cert, &key)), "/healthz");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n") && answer.ends_with("\r\n\r\nok"), "{answer}");
        let anonymous = get(address, &cert, None, "/healthz");
        assert!(anonymous.starts_with("HTTP/1.1 401 Unauthorized\r\n"), "{anonymous}");
        assert_eq!(api.requests().len(), 2);

        // Drop returns once the accept loop has seen the flag and let the listener go: nothing connects
        // to wake it, yet the port is closed at once.
        drop(api);
        let refused = TcpStream::connect(address).unwrap_err();
        assert_eq!(refused.kind(), ErrorKind::ConnectionRefused, "{refused}");
    }
}
