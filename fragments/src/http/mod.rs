//! The one HTTP client of the project, in the style of afterburn's retry client: one builder, so every
//! call (Heat signal, Keystone, downloads) gets the same CA bundle, proxy and timeouts, and one retry
//! loop with an exponential backoff bounded by a deadline.
//!
//! A request may bring its own TLS identity ([`ClientIdentity`]: the cluster CA and a client certificate,
//! for etcd and the Kubernetes API) and its own retry deadline; proxies, timeouts and the backoff stay the
//! client's, so there is still one retry policy.
//!
//! Errors name the method and URL of a request but never its header values (tokens) or its body.

mod proxy;
mod retry;
mod tls;

pub use proxy::bypass_proxy;
pub use retry::RetryPolicy;
pub use tls::ClientIdentity;

use crate::config::secret::mask_url_credentials;
use rustls::ClientConfig;
use std::fmt;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// What every request of a [`Client`] shares.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpSettings {
    /// Extra trusted CAs in PEM (several certificates allowed), added to the system trust store.
    pub extra_ca_pem: String,
    pub verify_tls: bool,
    pub http_proxy: String,
    pub https_proxy: String,
    /// Comma-separated hosts, `.domain` suffixes, `*`, IPs and CIDRs that skip the proxy.
    pub no_proxy: String,
    pub connect_timeout: Duration,
    /// Bound on one attempt, from connect to the last byte of the body.
    pub request_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            extra_ca_pem: String::new(),
            verify_tls: true,
            http_proxy: String::new(),
            https_proxy: String::new(),
            no_proxy: String::new(),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
        }
    }
}

// Hand-written so proxy credentials never reach a log.
impl fmt::Debug for HttpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpSettings")
            .field("extra_ca_pem_bytes", &self.extra_ca_pem.len())
            .field("verify_tls", &self.verify_tls)
            .field("http_proxy", &mask_url_credentials(&self.http_proxy))
            .field("https_proxy", &mask_url_credentials(&self.https_proxy))
            .field("no_proxy", &self.no_proxy)
            .field("connect_timeout", &self.connect_timeout)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

/// One HTTP request. [`Debug`](fmt::Debug) shows header names only, the body's length and whether the
/// request carries its own TLS identity.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    /// Trust these CAs only and present this client certificate, instead of the client's TLS settings.
    pub identity: Option<ClientIdentity>,
    /// Retry until this long after the first attempt instead of the client's deadline (the backoff stays
    /// the client's): a wait with its own budget, such as the health step's.
    pub deadline: Option<Duration>,
    /// Bound on each attempt instead of the client's request timeout: a download of a large program.
    pub attempt_timeout: Option<Duration>,
    /// Who answers, which decides whether a rooted host sends it: see [`Host::http`](crate::host::Host::http).
    pub destination: Destination,
}

/// Who answers a request, for a rooted host to tell what it may send (see
/// [`Host::http`](crate::host::Host::http)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Destination {
    /// The cloud's APIs and the cluster's services (Keystone, Magnum's or hearth-server's certificate API,
    /// Heat, Swift), configured per run: a rooted run sends to them as a real run does.
    #[default]
    Remote,
    /// A service this node runs itself (etcd, the API server of a master), which a rooted host does not start.
    NodeService,
    /// A program installed onto the node from where the config says (the kubelet from dl.k8s.io or a mirror):
    /// a rooted run, often on a machine far from that network, records it instead.
    Download,
}

impl Request {
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request {
            method: method.to_string(),
            url: url.into(),
            headers: Vec::new(),
            body: None,
            identity: None,
            deadline: None,
            attempt_timeout: None,
            destination: Destination::Remote,
        }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Request::new("GET", url)
    }

    /// A POST of `value` as JSON, asking for JSON back.
    pub fn post_json(url: impl Into<String>, value: &serde_json::Value) -> Self {
        Request::new("POST", url).json_body(value)
    }

    /// `value` as the JSON body, asking for JSON back.
    pub fn json_body(self, value: &serde_json::Value) -> Self {
        self.body(value.to_string().into_bytes(), "application/json").header("Accept", "application/json")
    }

    /// The body and its `Content-Type`.
    pub fn body(mut self, body: impl Into<Vec<u8>>, content_type: &str) -> Self {
        self.body = Some(body.into());
        self.header("Content-Type", content_type)
    }

    /// Sets a header, replacing any of the same name (names are case-insensitive).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_identity(mut self, identity: ClientIdentity) -> Self {
        self.identity = Some(identity);
        self
    }

    pub fn retry_within(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    pub fn to(mut self, destination: Destination) -> Self {
        self.destination = destination;
        self
    }

    /// Each attempt may take up to `timeout`, instead of the client's request timeout.
    pub fn attempt_timeout(mut self, timeout: Duration) -> Self {
        self.attempt_timeout = Some(timeout);
        self
    }

    /// A request to one of this node's own services (etcd, the API server) under `base`, presenting
    /// `identity` when the service wants a client certificate.
    pub fn node_service(method: &str, base: &str, path: &str, identity: Option<&ClientIdentity>) -> Self {
        let request = Request::new(method, format!("{base}{path}")).to(Destination::NodeService);
        match identity {
            Some(identity) => request.with_identity(identity.clone()),
            None => request,
        }
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &mask_url_credentials(&self.url))
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
            .field("identity", &self.identity.as_ref().map(|i| i.source.as_str()))
            .field("deadline", &self.deadline)
            .field("attempt_timeout", &self.attempt_timeout)
            .field("destination", &self.destination)
            .finish()
    }
}

/// A server's answer, whatever its status. [`Debug`](fmt::Debug) leaves out header values, which may
/// carry tokens (Keystone's `X-Subject-Token`), and the body.
#[derive(Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The request's method and URL, so errors built from the response can name them.
    pub method: String,
    pub url: String,
    /// How many attempts it took, this one included.
    pub attempts: u32,
}

impl Response {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The end of the body as one line of text (whitespace runs collapsed), at most `max_chars`
    /// characters, starting with `…` when cut: the part of an error page that usually says what went wrong.
    pub fn text_tail(&self, max_chars: usize) -> String {
        let text = String::from_utf8_lossy(&self.body).split_whitespace().collect::<Vec<_>>().join(" ");
        let count = text.chars().count();
        if count <= max_chars {
            return text;
        }
        let tail: String = text.chars().skip(count - max_chars.saturating_sub(1)).collect();
        format!("…{}", tail.trim_start())
    }

    /// The response itself when its status is below 400, else [`HttpError::Status`]; `what` says what
    /// the request was for ("fetching the CA").
    pub fn error_for_status(self, what: &str) -> Result<Response, HttpError> {
        if self.status < 400 {
            return Ok(self);
        }
        Err(HttpError::Status {
            what: what.to_string(),
            method: self.method.clone(),
            url: mask_url_credentials(&self.url),
            status: self.status,
            body_tail: self.text_tail(BODY_TAIL_CHARS),
        })
    }
}

impl fmt::Debug for Response {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Response")
            .field("status", &self.status)
            .field("method", &self.method)
            .field("url", &mask_url_credentials(&self.url))
            .field("attempts", &self.attempts)
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// How much of a response body goes into an error.
const BODY_TAIL_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The request can never succeed as written (bad URL, scheme or header); not retried.
    #[error("invalid request {method} {url}: {reason}")]
    InvalidRequest { method: String, url: String, reason: String },
    /// The client could not be built (CA bundle, proxy URL) or a proxy refused its credentials.
    #[error("HTTP client configuration: {0}")]
    Config(String),
    /// The server's certificate was rejected; retrying would not change that.
    #[error("{method} {url}: TLS: {reason}")]
    Tls { method: String, url: String, reason: String },
    /// Every attempt failed with a retryable error until the deadline or the attempt limit.
    #[error("{method} {url}: gave up after {attempts} attempt(s) in {elapsed:.1?}; last: {last}")]
    GaveUp { method: String, url: String, attempts: u32, elapsed: Duration, last: String },
    /// From [`Response::error_for_status`].
    #[error("{what}: {method} {url} answered HTTP {status}: {body_tail}")]
    Status { what: String, method: String, url: String, status: u16, body_tail: String },
}

/// What [`Client::on_retry`] is told before each wait.
#[derive(Debug)]
pub struct RetryNotice<'a> {
    pub method: &'a str,
    /// With any credentials masked.
    pub url: &'a str,
    /// The attempt that just failed (1-based).
    pub attempt: u32,
    pub error: &'a str,
    pub wait: Duration,
}

type RetryHook = Arc<dyn Fn(&RetryNotice<'_>) + Send + Sync>;

/// The project's HTTP client. Cheap to clone; clones share connection pools.
#[derive(Clone)]
pub struct Client {
    inner: reqwest::blocking::Client,
    proxies: Proxies,
    settings: HttpSettings,
    policy: RetryPolicy,
    on_retry: Option<RetryHook>,
}

/// The proxy of each scheme and the hosts that skip them: one rule, which every client built for a request
/// with its own TLS identity shares.
#[derive(Clone, Debug, Default)]
struct Proxies {
    http: Option<reqwest::Url>,
    https: Option<reqwest::Url>,
    no_proxy: String,
}

impl Proxies {
    fn new(settings: &HttpSettings) -> Result<Proxies, HttpError> {
        let parse = |which: &str, url: &str| -> Result<Option<reqwest::Url>, HttpError> {
            let url = url.trim();
            if url.is_empty() {
                return Ok(None);
            }
            match reqwest::Url::parse(url) {
                Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.host().is_some() => {
                    Ok(Some(parsed))
                }
                _ => Err(HttpError::Config(format!(
                    "{which} {} is not a usable proxy URL (expected http://host:port or https://host:port)",
                    mask_url_credentials(url)
                ))),
            }
        };
        Ok(Proxies {
            http: parse("http_proxy", &settings.http_proxy)?,
            https: parse("https_proxy", &settings.https_proxy)?,
            no_proxy: settings.no_proxy.clone(),
        })
    }

    /// One reqwest proxy per scheme, each taking the URLs of its scheme that `no_proxy` does not exempt,
    /// with its own credentials (reqwest sends a custom proxy's only when given apart from its URL).
    fn each(&self) -> Vec<reqwest::Proxy> {
        let per_scheme = [("http", &self.http), ("https", &self.https)];
        per_scheme
            .into_iter()
            .filter_map(|(scheme, proxy)| {
                let mut bare = proxy.clone()?;
                let credentials = (!bare.username().is_empty() || bare.password().is_some()).then(|| {
                    let decode =
                        |part: &str| percent_encoding::percent_decode_str(part).decode_utf8_lossy().into_owned();
                    (decode(bare.username()), decode(bare.password().unwrap_or("")))
                });
                let _ = (bare.set_username(""), bare.set_password(None));
                let no_proxy = self.no_proxy.clone();
                let proxy = reqwest::Proxy::custom(move |url| {
                    let host = url.host_str()?;
                    (url.scheme() == scheme && !bypass_proxy(host, &no_proxy)).then(|| bare.clone())
                });
                Some(match credentials {
                    Some((user, password)) => proxy.basic_auth(&user, &password),
                    None => proxy,
                })
            })
            .collect()
    }
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("via_http_proxy", &self.proxies.http.is_some())
            .field("via_https_proxy", &self.proxies.https.is_some())
            .field("no_proxy", &self.proxies.no_proxy)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

/// What one attempt came to.
enum Attempt {
    Done(Response),
    Retry { last: String, retry_after: Option<Duration> },
    Fatal(HttpError),
}

/// The least time an attempt is given, even when less than that is left before the deadline: an attempt
/// that could not even connect would only turn a slow answer into a certain failure.
const MIN_ATTEMPT: Duration = Duration::from_secs(1);

impl Client {
    pub fn new(settings: &HttpSettings, policy: RetryPolicy) -> Result<Client, HttpError> {
        let proxies = Proxies::new(settings)?;
        let inner = build_client(settings, tls::tls_config(settings)?, &proxies)?;
        Ok(Client { inner, proxies, settings: settings.clone(), policy, on_retry: None })
    }

    /// Calls `hook` before each wait between attempts, e.g. to log progress of a long retry.
    pub fn on_retry(mut self, hook: impl Fn(&RetryNotice<'_>) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(hook));
        self
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Sends `req`, retrying transport errors, 5xx and 429 per the policy (with the request's own deadline
    /// when it has one). Any other status is `Ok`: whether a 4xx is an error is the caller's call (see
    /// [`Response::error_for_status`]). Each attempt's timeout ends at the deadline (but is never under
    /// [`MIN_ATTEMPT`]), so a server that accepts and never answers cannot hold a caller past it.
    pub fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let shown_url = mask_url_credentials(&req.url);
        let invalid =
            |reason: String| HttpError::InvalidRequest { method: req.method.clone(), url: shown_url.clone(), reason };
        check_headers(&req.headers).map_err(&invalid)?;
        let url = reqwest::Url::parse(&req.url).map_err(|e| invalid(format!("not a valid URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(format!("unsupported scheme {:?}", url.scheme())));
        }
        let method = reqwest::Method::from_bytes(req.method.as_bytes())
            .map_err(|_| invalid(format!("{:?} is not an HTTP method", req.method)))?;
        let own_client = match &req.identity {
            Some(identity) => Some(build_client(&self.settings, identity.tls_config()?, &self.proxies)?),
            None => None,
        };
        let client = own_client.as_ref().unwrap_or(&self.inner);
        let policy = RetryPolicy { deadline: req.deadline.unwrap_or(self.policy.deadline), ..self.policy };
        let timeout = req.attempt_timeout.unwrap_or(self.settings.request_timeout);

        let started = Instant::now();
        let mut failed = 0;
        loop {
            let remaining = policy.deadline.saturating_sub(started.elapsed());
            let call = Call { client, method: &method, url: &url, req, shown_url: &shown_url };
            let (last, retry_after) = match call.attempt(timeout.min(remaining.max(MIN_ATTEMPT))) {
                Attempt::Done(response) => return Ok(Response { attempts: failed + 1, ..response }),
                Attempt::Fatal(err) => return Err(err),
                Attempt::Retry { last, retry_after } => (last, retry_after),
            };
            failed += 1;
            let elapsed = started.elapsed();
            let Some(wait) = policy.next_delay(failed, elapsed, retry_after) else {
                return Err(HttpError::GaveUp {
                    method: req.method.clone(),
                    url: shown_url,
                    attempts: failed,
                    elapsed,
                    last,
                });
            };
            if let Some(hook) = &self.on_retry {
                hook(&RetryNotice { method: &req.method, url: &shown_url, attempt: failed, error: &last, wait });
            }
            std::thread::sleep(wait);
        }
    }
}

/// A client with the settings' timeouts, `tls` and the proxies.
fn build_client(
    settings: &HttpSettings,
    tls: Arc<ClientConfig>,
    proxies: &Proxies,
) -> Result<reqwest::blocking::Client, HttpError> {
    let mut builder = reqwest::blocking::Client::builder()
        // The settings are the only source of proxies: the agent's environment may not match the node's.
        .no_proxy()
        .use_preconfigured_tls(Arc::unwrap_or_clone(tls))
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        // A redirect is an answer for the caller; following it could resend a token elsewhere.
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")));
    for proxy in proxies.each() {
        builder = builder.proxy(proxy);
    }
    builder.build().map_err(|e| HttpError::Config(format!("building the HTTP client: {}", chain(&e.without_url()))))
}

/// Rejects what the client would reject mid-request, by HTTP's rules (RFC 9110 tokens; visible ASCII,
/// space and tab in values), naming the header but not its value, which may be a token.
fn check_headers(headers: &[(String, String)]) -> Result<(), String> {
    const TOKEN_PUNCT: &[u8] = b"!#$%&'*+-.^_`|~";
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || TOKEN_PUNCT.contains(&b)) {
            return Err(format!("header name {name:?} is not valid HTTP"));
        }
        if !value.bytes().all(|b| matches!(b, b' ' | b'\t' | 0x21..=0x7e)) {
            return Err(format!("the value of header {name} holds characters HTTP does not allow"));
        }
    }
    Ok(())
}

/// The most a Content-Length may reserve up front (a kubelet is about 85 MB).
const MAX_RESERVED_BODY: usize = 256 << 20;

/// One request as the client sends it.
struct Call<'a> {
    client: &'a reqwest::blocking::Client,
    method: &'a reqwest::Method,
    url: &'a reqwest::Url,
    req: &'a Request,
    shown_url: &'a str,
}

impl Call<'_> {
    /// One attempt, from connect to the body's last byte within `timeout`.
    fn attempt(&self, timeout: Duration) -> Attempt {
        let req = self.req;
        let mut call = self.client.request(self.method.clone(), self.url.clone()).timeout(timeout);
        for (name, value) in &req.headers {
            call = call.header(name, value);
        }
        if let Some(body) = &req.body {
            call = call.body(body.clone());
        }
        let mut answer = match call.send() {
            Ok(answer) => answer,
            Err(e) => return self.failure(&e.without_url(), timeout),
        };
        let status = answer.status().as_u16();
        let headers: Vec<(String, String)> = answer
            .headers()
            .iter()
            .map(|(name, value)| (name.as_str().to_string(), String::from_utf8_lossy(value.as_bytes()).into_owned()))
            .collect();
        // Sized from Content-Length (within reason) so a large download is held once, not grown by doubling.
        let announced = answer.content_length().and_then(|n| usize::try_from(n).ok());
        let mut body = Vec::with_capacity(announced.unwrap_or(0).min(MAX_RESERVED_BODY));
        if let Err(e) = answer.read_to_end(&mut body) {
            return Attempt::Retry {
                last: format!("HTTP {status}, then reading the body failed: {}", io_reason(&e, timeout)),
                retry_after: None,
            };
        }
        let response =
            Response { status, headers, body, method: req.method.clone(), url: req.url.clone(), attempts: 1 };
        match status {
            407 => Attempt::Fatal(HttpError::Config(format!(
                "{} {}: the proxy refused its credentials (HTTP 407)",
                req.method, self.shown_url
            ))),
            429 | 500.. => {
                let retry_after =
                    response.header("Retry-After").and_then(|s| s.trim().parse().ok()).map(Duration::from_secs);
                Attempt::Retry { last: format!("HTTP {status}: {}", response.text_tail(BODY_TAIL_CHARS)), retry_after }
            }
            _ => Attempt::Done(response),
        }
    }

    fn failure(&self, e: &reqwest::Error, timeout: Duration) -> Attempt {
        let (method, url) = (self.req.method.clone(), self.shown_url.to_string());
        if e.is_builder() {
            return Attempt::Fatal(HttpError::InvalidRequest { method, url, reason: chain(e) });
        }
        if is_certificate_rejection(e) {
            return Attempt::Fatal(HttpError::Tls { method, url, reason: chain(e) });
        }
        let last = if e.is_timeout() {
            format!("no answer within {timeout:.1?}")
        } else if e.is_connect() {
            format!("cannot connect: {}", root_cause(e))
        } else {
            chain(e)
        };
        Attempt::Retry { last, retry_after: None }
    }
}

/// An error and its causes in one line, each said once: wrapped errors often repeat the outer
/// description. With the URL already left out by the caller (it may carry credentials).
fn chain(err: &dyn std::error::Error) -> String {
    let mut reason = err.to_string();
    let mut cause = err.source();
    while let Some(err) = cause {
        let part = err.to_string();
        if !reason.contains(&part) {
            reason = if part.starts_with(&reason) { part } else { format!("{reason}: {part}") };
        }
        cause = err.source();
    }
    reason
}

/// The innermost cause of an error: for a connection that failed, what the system said ("Connection
/// refused (os error 111)"), without the three layers of client wording around it.
fn root_cause(err: &dyn std::error::Error) -> String {
    let mut innermost = err;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    innermost.to_string()
}

/// Why reading a body failed: a timeout in words, anything else as its causes.
fn io_reason(e: &std::io::Error, timeout: Duration) -> String {
    let timed_out = e.kind() == std::io::ErrorKind::TimedOut
        || e.get_ref().and_then(|inner| inner.downcast_ref::<reqwest::Error>()).is_some_and(reqwest::Error::is_timeout);
    if timed_out {
        format!("no answer within {timeout:.1?}")
    } else {
        chain(e)
    }
}

/// Whether the TLS handshake failed on a certificate: the server's, which a wrong CA bundle rejects, or
/// ours, which the server refused with an alert. Neither fixes itself, while other handshake failures (a
/// reset, an overloaded balancer) may.
fn is_certificate_rejection(e: &reqwest::Error) -> bool {
    use rustls::AlertDescription as A;
    let mut cause = std::error::Error::source(e);
    while let Some(err) = cause {
        // io::Error hides the error it wraps from `source()`, behind `get_ref()`, and the connector wraps
        // rustls' io::Error in another.
        let mut candidate: Option<&dyn std::error::Error> = Some(err);
        while let Some(this) = candidate {
            match this.downcast_ref::<rustls::Error>() {
                Some(rustls::Error::InvalidCertificate(_)) => return true,
                Some(rustls::Error::AlertReceived(
                    A::BadCertificate
                    | A::UnsupportedCertificate
                    | A::CertificateRevoked
                    | A::CertificateExpired
                    | A::CertificateUnknown
                    | A::UnknownCA
                    | A::CertificateRequired
                    // A signature in the handshake did not verify, e.g. a client certificate from another
                    // CA of the same name.
                    | A::DecryptError,
                )) => return true,
                _ => {}
            }
            candidate = this.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as _);
        }
        cause = err.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::tls::pem_certificates;
    use super::*;
    use crate::config::Secret;
    use crate::test_server::TestServer;
    use rustls::RootCertStore;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SEC: Duration = Duration::from_secs(1);

    #[test]
    fn http_client_rejects_a_garbage_ca_bundle() {
        for (pem, hint) in [
            ("not a certificate at all", "no PEM certificate"),
            ("-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n", "unreadable"),
            ("-----BEGIN CERTIFICATE-----\naGVsbG8=\n-----END CERTIFICATE-----\n", "not a usable trust anchor"),
            ("-----BEGIN PRIVATE KEY-----\naGVsbG8=\n-----END PRIVATE KEY-----\n", "not a certificate"),
        ] {
            let settings = HttpSettings { extra_ca_pem: pem.into(), ..HttpSettings::default() };
            let err = Client::new(&settings, RetryPolicy::default()).unwrap_err().to_string();
            assert!(err.contains("extra CA") && err.contains(hint), "{pem:?}: {err}");
        }
    }

    #[test]
    fn http_client_accepts_a_ca_bundle_and_bad_proxies_are_named() {
        let ca = include_str!("../../tests/fixtures/test-ca.pem");
        let bundle = format!("{ca}\n{ca}");
        for verify_tls in [true, false] {
            let settings = HttpSettings { extra_ca_pem: bundle.clone(), verify_tls, ..HttpSettings::default() };
            Client::new(&settings, RetryPolicy::default()).unwrap();
        }
        let settings = HttpSettings { https_proxy: "ftp://u:secret@proxy:21".into(), ..HttpSettings::default() };
        let err = Client::new(&settings, RetryPolicy::default()).unwrap_err().to_string();
        assert!(err.contains("https_proxy") && !err.contains("secret"), "{err}");
    }

    #[test]
    fn http_requests_never_show_header_values() {
        let req = Request::post_json("http://127.0.0.1:1/x", &serde_json::json!({"a": "body-secret"}))
            .header("X-Auth-Token", "tok-secret")
            .header("content-type", "application/json; charset=utf-8");
        let shown = format!("{req:?}");
        assert!(!shown.contains("tok-secret") && !shown.contains("body-secret"), "{shown}");
        assert_eq!(req.headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-type")).count(), 1);
        let bad = Request::get("http://127.0.0.1:1/").header("X-Auth-Token", "tok-secret\r\nX: y");
        let err = Client::new(&HttpSettings::default(), RetryPolicy::default()).unwrap().send(&bad).unwrap_err();
        assert!(matches!(err, HttpError::InvalidRequest { .. }) && !format!("{err} {err:?}").contains("tok-secret"));
    }

    #[test]
    fn http_text_tail_keeps_the_end() {
        let r = Response {
            status: 500,
            headers: vec![("Content-Type".into(), "text/plain".into())],
            body: "first line\n  second line é".as_bytes().to_vec(),
            method: "GET".into(),
            url: "http://127.0.0.1/".into(),
            attempts: 1,
        };
        assert_eq!(r.text_tail(100), "first line second line é");
        assert_eq!(r.text_tail(8), "…line é");
        assert_eq!(r.header("content-type"), Some("text/plain"));
        let err = r.error_for_status("fetching x").unwrap_err().to_string();
        assert!(err.contains("fetching x") && err.contains("GET http://127.0.0.1/") && err.contains("500"), "{err}");
    }

    /// A loopback server answering with `statuses` in turn (then the last one again), counting requests.
    fn serve(statuses: &'static [(u16, &'static str)]) -> TestServer {
        TestServer::start(move |n, _| {
            let n = n.min(statuses.len() - 1);
            let (status, retry_after) = statuses[n];
            let mut resp = tiny_http::Response::from_string(format!("answer {n}")).with_status_code(status);
            if !retry_after.is_empty() {
                resp.add_header(tiny_http::Header::from_bytes("Retry-After", retry_after).unwrap());
            }
            resp
        })
    }

    fn quick(deadline: Duration) -> Client {
        let policy = RetryPolicy { initial_backoff: Duration::from_millis(20), deadline, ..RetryPolicy::default() };
        Client::new(&HttpSettings::default(), policy).unwrap()
    }

    #[test]
    fn http_send_retries_5xx_and_429_then_returns_the_answer() {
        let server = serve(&[(503, ""), (429, "1"), (500, ""), (200, "")]);
        let url = server.url("/");
        let retries = Arc::new(AtomicUsize::new(0));
        let seen = retries.clone();
        let client = quick(10 * SEC).on_retry(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        let started = Instant::now();
        let resp = client.send(&Request::get(&url)).unwrap();
        assert_eq!((resp.status, resp.attempts, server.hits()), (200, 4, 4));
        assert_eq!(resp.body, b"answer 3");
        assert_eq!(retries.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= SEC, "Retry-After: 1 was honoured");
    }

    #[test]
    fn http_send_returns_4xx_and_gives_up_on_5xx() {
        let server = serve(&[(404, "")]);
        let url = server.url("/");
        let resp = quick(10 * SEC).send(&Request::get(&url)).unwrap();
        assert_eq!((resp.status, server.hits()), (404, 1));

        let server = serve(&[(502, "")]);
        let url = server.url("/");
        let err = quick(Duration::from_millis(300)).send(&Request::get(&url)).unwrap_err();
        let HttpError::GaveUp { attempts, ref last, .. } = err else { panic!("{err:?}") };
        assert_eq!(attempts as usize, server.hits());
        assert!(attempts > 1 && last.contains("502") && last.contains("answer"), "{err}");
    }
    /// A loopback HTTPS server with the fixture certificate, answering `ok`; counts requests served.
    fn serve_tls() -> (String, Arc<AtomicUsize>) {
        let fixture =
            |name: &str| std::fs::read(format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap();
        let certs = rustls_pemfile::certs(&mut &fixture("test-server.pem")[..]).collect::<Result<Vec<_>, _>>().unwrap();
        let key = rustls_pemfile::private_key(&mut &fixture("test-server.key")[..]).unwrap().unwrap();
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let (config, listener) = (Arc::new(config), std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let url = format!("https://{}/", listener.local_addr().unwrap());
        let served = Arc::new(AtomicUsize::new(0));
        let count = served.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), tcp);
                let (mut head, mut byte) = (Vec::new(), [0u8]);
                // A client that rejects the certificate ends the handshake, and so this read.
                while !head.ends_with(b"\r\n\r\n") && matches!(tls.read(&mut byte), Ok(1)) {
                    head.push(byte[0]);
                }
                if head.ends_with(b"\r\n\r\n") {
                    count.fetch_add(1, Ordering::SeqCst);
                    let _ = std::io::Write::write_all(
                        &mut tls,
                        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
                    );
                    tls.conn.send_close_notify();
                    let _ = std::io::Write::flush(&mut tls);
                }
            }
        });
        (url, served)
    }

    #[test]
    fn http_tls_trusts_the_extra_ca_and_fails_fast_without_it() {
        let (url, served) = serve_tls();
        let client = |extra_ca_pem: &str, verify_tls| {
            let settings = HttpSettings { extra_ca_pem: extra_ca_pem.into(), verify_tls, ..HttpSettings::default() };
            Client::new(&settings, RetryPolicy::within(10 * SEC)).unwrap()
        };
        let ca = include_str!("../../tests/fixtures/test-ca.pem");
        assert_eq!(client(ca, true).send(&Request::get(&url)).unwrap().body, b"ok");
        assert_eq!(client("", false).send(&Request::get(&url)).unwrap().body, b"ok", "verify_tls=false is curl -k");
        let started = Instant::now();
        let err = client("", true).send(&Request::get(&url)).unwrap_err();
        assert!(matches!(err, HttpError::Tls { .. }), "{err:?}");
        assert!(started.elapsed() < 5 * SEC, "an untrusted certificate is not retried");
        assert_eq!(served.load(Ordering::SeqCst), 2);
    }
    /// A CA and what it issued, as PEM: a server certificate for 127.0.0.1 and a client certificate.
    struct Pki {
        ca: String,
        server: (String, String),
        client: (String, String),
    }

    fn pki(ca_name: &str, client_name: &str) -> Pki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, ca_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(params, ca_key);
        let leaf = |sans: Vec<String>, name: &str| {
            let key = KeyPair::generate().unwrap();
            let mut params = CertificateParams::new(sans).unwrap();
            params.distinguished_name.push(DnType::CommonName, name);
            (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
        };
        Pki { ca, server: leaf(vec!["127.0.0.1".into()], "server"), client: leaf(Vec::new(), client_name) }
    }

    fn identity(ca: &str, (cert, key): &(String, String)) -> ClientIdentity {
        ClientIdentity {
            source: "/etc/test/{ca.crt,client.crt,client.key}".into(),
            ca_pem: ca.into(),
            cert_pem: cert.clone(),
            key_pem: Secret::new(key.clone()),
        }
    }

    /// A loopback HTTPS server that requires a client certificate from `pki`'s CA and answers with the
    /// common name of the certificate it was shown.
    fn serve_mutual_tls(pki: &Pki) -> String {
        let pem_certs = |pem: &str| pem_certificates(pem).unwrap();
        let mut roots = RootCertStore::empty();
        roots.add(pem_certs(&pki.ca).remove(0)).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .unwrap();
        let key = rustls_pemfile::private_key(&mut pki.server.1.as_bytes()).unwrap().unwrap();
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(pem_certs(&pki.server.0), key)
            .unwrap();
        let (config, listener) = (Arc::new(config), std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let url = format!("https://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            for tcp in listener.incoming().flatten() {
                let mut tls = rustls::StreamOwned::new(rustls::ServerConnection::new(config.clone()).unwrap(), tcp);
                let (mut head, mut byte) = (Vec::new(), [0u8]);
                while !head.ends_with(b"\r\n\r\n") && matches!(tls.read(&mut byte), Ok(1)) {
                    head.push(byte[0]);
                }
                let Some(peer) = tls.conn.peer_certificates().and_then(|c| c.first().cloned()) else { continue };
                let (_, cert) = x509_parser::parse_x509_certificate(&peer).unwrap();
                let name = cert.subject().iter_common_name().next().unwrap().as_str().unwrap().to_string();
                let answer =
                    format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{name}", name.len());
                let _ = std::io::Write::write_all(&mut tls, answer.as_bytes());
                tls.conn.send_close_notify();
                let _ = std::io::Write::flush(&mut tls);
            }
        });
        url
    }

    #[test]
    fn http_a_request_with_its_own_identity_trusts_its_ca_and_shows_its_certificate() {
        let cluster = pki("cluster CA", "kubernetes");
        let url = serve_mutual_tls(&cluster);
        // The client's own settings trust nothing the server has: only the identity's CA can work.
        let client = Client::new(&HttpSettings::default(), RetryPolicy::within(10 * SEC)).unwrap();
        let answer = client.send(&Request::get(&url).with_identity(identity(&cluster.ca, &cluster.client))).unwrap();
        assert_eq!((answer.status, answer.body.as_slice()), (200, &b"kubernetes"[..]));

        let started = Instant::now();
        let err = client.send(&Request::get(&url)).unwrap_err();
        assert!(matches!(err, HttpError::Tls { .. }), "the server's CA is not trusted without the identity: {err:?}");
        let other = pki("another CA", "intruder");
        let err = client.send(&Request::get(&url).with_identity(identity(&other.ca, &other.client))).unwrap_err();
        assert!(matches!(err, HttpError::Tls { .. }), "a foreign CA: {err:?}");
        // The right CA trusted, but a client certificate the server does not accept (from another CA, or
        // from another CA that has the same name): refused by an alert.
        let namesake = pki("cluster CA", "intruder");
        for foreign in [&other.client, &namesake.client] {
            let err = client.send(&Request::get(&url).with_identity(identity(&cluster.ca, foreign))).unwrap_err();
            assert!(matches!(err, HttpError::Tls { .. }), "a foreign client certificate: {err:?}");
        }
        assert!(started.elapsed() < 5 * SEC, "certificate problems are not retried");
    }

    #[test]
    fn http_a_broken_identity_is_named_without_its_key() {
        let cluster = pki("cluster CA", "kubernetes");
        let client = Client::new(&HttpSettings::default(), RetryPolicy::within(10 * SEC)).unwrap();
        let send = |identity: ClientIdentity| {
            let err = client.send(&Request::get("https://127.0.0.1:1/").with_identity(identity)).unwrap_err();
            assert!(matches!(err, HttpError::Config(_)), "{err:?}");
            err.to_string()
        };
        let mut broken = identity(&cluster.ca, &cluster.client);
        broken.key_pem =
            Secret::new("-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1ieXRlcw==\n-----END PRIVATE KEY-----\n");
        let err = send(broken);
        assert!(err.contains("/etc/test/{ca.crt,client.crt,client.key}") && err.contains("key"), "{err}");
        assert!(!err.contains("c2VjcmV0"), "{err}");
        let mut no_cert = identity(&cluster.ca, &cluster.client);
        no_cert.cert_pem = String::new();
        assert!(send(no_cert).contains("client certificate: no PEM certificate"));
        let shown = format!("{:?}", Request::get("https://x/").with_identity(identity(&cluster.ca, &cluster.client)));
        assert!(!shown.contains("PRIVATE KEY") && shown.contains("/etc/test/"), "{shown}");
    }

    #[test]
    fn http_a_request_deadline_replaces_the_clients() {
        let server = serve(&[(503, "")]);
        let url = server.url("/");
        let client = Client::new(&HttpSettings::default(), RetryPolicy::within(600 * SEC)).unwrap();
        let started = Instant::now();
        let err = client.send(&Request::get(&url).retry_within(Duration::from_millis(1200))).unwrap_err();
        let HttpError::GaveUp { attempts, .. } = err else { panic!("{err:?}") };
        assert!(started.elapsed() < 3 * SEC && attempts >= 2, "{:?} {attempts}", started.elapsed());
        assert_eq!(attempts as usize, server.hits());
    }

    /// A server that accepts connections and never answers: the deadline, not the request timeout,
    /// decides when the caller hears back.
    #[test]
    fn http_an_attempt_never_outlives_the_deadline() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().take(8).collect();
            std::thread::sleep(60 * SEC);
            drop(held);
        });
        let settings = HttpSettings { request_timeout: 30 * SEC, ..HttpSettings::default() };
        let client = Client::new(&settings, RetryPolicy::within(2 * SEC)).unwrap();
        let started = Instant::now();
        let err = client.send(&Request::get(&url)).unwrap_err();
        let HttpError::GaveUp { ref last, .. } = err else { panic!("{err:?}") };
        assert!(last.contains("no answer within"), "{err}");
        // Two seconds of deadline, plus at most one MIN_ATTEMPT for an attempt started just before it.
        assert!(started.elapsed() < 2 * SEC + MIN_ATTEMPT + SEC, "{:?}", started.elapsed());
    }

    /// A proxy at a bracketed IPv6 address with credentials in its URL (percent-encoded, as curl takes
    /// them) gets the request in absolute form with Basic credentials.
    #[test]
    fn http_proxy_at_an_ipv6_address_gets_its_credentials() {
        let listener = std::net::TcpListener::bind("[::1]:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let head = std::thread::spawn(move || {
            let (mut tcp, _) = listener.accept().unwrap();
            let (mut head, mut byte) = (Vec::new(), [0u8]);
            while !head.ends_with(b"\r\n\r\n") && matches!(tcp.read(&mut byte), Ok(1)) {
                head.push(byte[0]);
            }
            let _ = std::io::Write::write_all(&mut tcp, b"HTTP/1.1 203 OK\r\nContent-Length: 0\r\n\r\n");
            String::from_utf8(head).unwrap()
        });
        let settings =
            HttpSettings { http_proxy: format!("http://hearth:p%40ss@[::1]:{port}"), ..HttpSettings::default() };
        let client = Client::new(&settings, RetryPolicy::within(5 * SEC)).unwrap();
        assert_eq!(client.send(&Request::get("http://127.0.0.1:9/x")).unwrap().status, 203);
        let head = head.join().unwrap();
        assert!(head.starts_with("GET http://127.0.0.1:9/x HTTP/1.1\r\n"), "{head}");
        // base64("hearth:p@ss"); header names are case-insensitive.
        assert!(head.to_ascii_lowercase().contains("proxy-authorization: basic "), "{head}");
        assert!(head.contains(" aGVhcnRoOnBAc3M=\r\n"), "{head}");
        assert!(!format!("{client:?}").contains("p%40ss"));
    }

    #[test]
    fn http_proxy_is_used_per_scheme_unless_no_proxy_matches() {
        let target_server = serve(&[(200, "")]);
        let target = target_server.url("/");
        // The fake proxy answers 203 so its answers are told apart; it sees absolute-form targets.
        let proxy = TestServer::start(|_, _| tiny_http::Response::from_data(Vec::new()).with_status_code(203));
        let proxy_url = proxy.url("");
        let via = |no_proxy: &str| {
            let settings =
                HttpSettings { http_proxy: proxy_url.clone(), no_proxy: no_proxy.into(), ..HttpSettings::default() };
            Client::new(&settings, RetryPolicy::within(5 * SEC))
                .unwrap()
                .send(&Request::get(format!("{target}x?y=1")))
                .unwrap()
                .status
        };
        assert_eq!(via(""), 203);
        assert_eq!(via("localhost, 127.0.0.0/8"), 200);
        assert_eq!(via("127.0.0.1"), 200);
        assert_eq!(proxy.asked(), [format!("{target}x?y=1")]);
    }
}
