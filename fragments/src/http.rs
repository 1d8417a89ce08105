//! The one HTTP client of the project, in the style of afterburn's retry client: one builder, so every
//! call (Heat signal, Keystone, downloads) gets the same CA bundle, proxy and timeouts, and one retry
//! loop with an exponential backoff bounded by a deadline.
//!
//! Errors name the method and URL of a request but never its header values (tokens) or its body.

use crate::config::secret::mask_url_credentials;
use ipnet::IpNet;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::io::Read;
use std::net::IpAddr;
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

/// When [`Client::send`] tries again: exponential backoff (doubling, capped at `max_backoff`), no attempt
/// starts after `deadline` (counted from the first attempt) and no sleep reaches past it. An attempt that
/// starts just before the deadline may still run for up to the request timeout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    pub deadline: Duration,
    /// Give up after this many attempts even before the deadline; `None`: only the deadline counts.
    pub max_attempts: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            deadline: Duration::from_secs(600),
            max_attempts: None,
        }
    }
}

impl RetryPolicy {
    /// The backoff after the `failed`-th failed attempt (1-based).
    fn backoff(&self, failed: u32) -> Duration {
        let factor = 1u32.checked_shl(failed.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }

    /// How long to wait before the next attempt after `failed` failures, `elapsed` after the first
    /// attempt started; `None`: give up. A server's `Retry-After` lengthens the wait, never past the deadline.
    fn next_delay(&self, failed: u32, elapsed: Duration, retry_after: Option<Duration>) -> Option<Duration> {
        if self.max_attempts.is_some_and(|max| failed >= max) {
            return None;
        }
        let remaining = self.deadline.checked_sub(elapsed).filter(|r| !r.is_zero())?;
        let wait = self.backoff(failed).max(retry_after.unwrap_or_default());
        Some(wait.min(remaining))
    }
}

/// One HTTP request. [`Debug`](fmt::Debug) shows header names only, and the body's length.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
}

impl Request {
    pub fn new(method: &str, url: impl Into<String>) -> Self {
        Request { method: method.to_string(), url: url.into(), headers: Vec::new(), body: None }
    }

    pub fn get(url: impl Into<String>) -> Self {
        Request::new("GET", url)
    }

    /// A POST of `value` as JSON, asking for JSON back.
    pub fn post_json(url: impl Into<String>, value: &serde_json::Value) -> Self {
        Request { body: Some(value.to_string().into_bytes()), ..Request::new("POST", url) }
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
    }

    /// Sets a header, replacing any of the same name (names are case-insensitive).
    pub fn header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        let name = name.into();
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
        self.headers.push((name, value.into()));
        self
    }
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("url", &mask_url_credentials(&self.url))
            .field("headers", &self.headers.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>())
            .field("body_bytes", &self.body.as_ref().map(Vec::len))
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
    direct: ureq::Agent,
    // ureq gives an agent one proxy, so there is one agent per route and `send` picks per URL.
    via_http_proxy: Option<ureq::Agent>,
    via_https_proxy: Option<ureq::Agent>,
    no_proxy: String,
    policy: RetryPolicy,
    on_retry: Option<RetryHook>,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("via_http_proxy", &self.via_http_proxy.is_some())
            .field("via_https_proxy", &self.via_https_proxy.is_some())
            .field("no_proxy", &self.no_proxy)
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

impl Client {
    pub fn new(settings: &HttpSettings, policy: RetryPolicy) -> Result<Client, HttpError> {
        let tls = tls_config(settings)?;
        let agent = |proxy: Option<ureq::Proxy>| {
            let builder = ureq::AgentBuilder::new()
                // The settings are the only source of proxies: the agent's environment may not match the node's.
                .try_proxy_from_env(false)
                .tls_config(tls.clone())
                .timeout_connect(settings.connect_timeout)
                .timeout(settings.request_timeout)
                // A redirect is an answer for the caller; following it could resend a token elsewhere.
                .redirects(0)
                .user_agent(concat!("hearth/", env!("CARGO_PKG_VERSION")));
            match proxy {
                Some(proxy) => builder.proxy(proxy),
                None => builder,
            }
            .build()
        };
        let proxied = |which: &str, url: &str| -> Result<Option<ureq::Agent>, HttpError> {
            if url.trim().is_empty() {
                return Ok(None);
            }
            let proxy = ureq::Proxy::new(url.trim()).map_err(|_| {
                HttpError::Config(format!("{which} {} is not a usable proxy URL", mask_url_credentials(url)))
            })?;
            Ok(Some(agent(Some(proxy))))
        };
        Ok(Client {
            via_http_proxy: proxied("http_proxy", &settings.http_proxy)?,
            via_https_proxy: proxied("https_proxy", &settings.https_proxy)?,
            direct: agent(None),
            no_proxy: settings.no_proxy.clone(),
            policy,
            on_retry: None,
        })
    }

    /// Calls `hook` before each wait between attempts, e.g. to log progress of a long retry.
    pub fn on_retry(mut self, hook: impl Fn(&RetryNotice<'_>) + Send + Sync + 'static) -> Self {
        self.on_retry = Some(Arc::new(hook));
        self
    }

    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Sends `req`, retrying transport errors, 5xx and 429 per the policy. Any other status is `Ok`:
    /// whether a 4xx is an error is the caller's call (see [`Response::error_for_status`]).
    pub fn send(&self, req: &Request) -> Result<Response, HttpError> {
        let shown_url = mask_url_credentials(&req.url);
        let invalid =
            |reason: String| HttpError::InvalidRequest { method: req.method.clone(), url: shown_url.clone(), reason };
        check_headers(&req.headers).map_err(&invalid)?;
        let agent = self.agent_for(req).map_err(invalid)?;

        let started = Instant::now();
        let mut failed = 0;
        loop {
            let (last, retry_after) = match attempt(agent, req, &shown_url) {
                Attempt::Done(response) => return Ok(Response { attempts: failed + 1, ..response }),
                Attempt::Fatal(err) => return Err(err),
                Attempt::Retry { last, retry_after } => (last, retry_after),
            };
            failed += 1;
            let elapsed = started.elapsed();
            let Some(wait) = self.policy.next_delay(failed, elapsed, retry_after) else {
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

    fn agent_for(&self, req: &Request) -> Result<&ureq::Agent, String> {
        let parsed = self.direct.request(&req.method, &req.url);
        let url = parsed.request_url().map_err(|e| format!("not a valid URL ({})", e.kind()))?;
        let proxy = match url.scheme() {
            "http" => &self.via_http_proxy,
            "https" => &self.via_https_proxy,
            other => return Err(format!("unsupported scheme {other:?}")),
        };
        Ok(match proxy {
            Some(agent) if !bypass_proxy(url.host(), &self.no_proxy) => agent,
            _ => &self.direct,
        })
    }
}

/// Rejects what ureq would reject mid-request, by ureq's rules (RFC 7230 tokens; visible ASCII, space
/// and tab in values), naming the header but not its value: ureq's own error quotes the whole line.
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

fn attempt(agent: &ureq::Agent, req: &Request, shown_url: &str) -> Attempt {
    let call = req.headers.iter().fold(agent.request(&req.method, &req.url), |call, (n, v)| call.set(n, v));
    let result = match &req.body {
        Some(body) => call.send_bytes(body),
        None => call.call(),
    };
    let answer = match result {
        Ok(answer) | Err(ureq::Error::Status(_, answer)) => answer,
        Err(ureq::Error::Transport(t)) => return transport_failure(t, req, shown_url),
    };
    let status = answer.status();
    let headers: Vec<(String, String)> = answer
        .headers_names()
        .into_iter()
        .flat_map(|name| answer.all(&name).into_iter().map(|v| (name.clone(), v.to_string())).collect::<Vec<_>>())
        .collect();
    let mut body = Vec::new();
    if let Err(e) = answer.into_reader().read_to_end(&mut body) {
        return Attempt::Retry { last: format!("HTTP {status}, then reading the body failed: {e}"), retry_after: None };
    }
    let response = Response { status, headers, body, method: req.method.clone(), url: req.url.clone(), attempts: 1 };
    if status >= 500 || status == 429 {
        let retry_after = response.header("Retry-After").and_then(|s| s.trim().parse().ok()).map(Duration::from_secs);
        Attempt::Retry { last: format!("HTTP {status}: {}", response.text_tail(BODY_TAIL_CHARS)), retry_after }
    } else {
        Attempt::Done(response)
    }
}

fn transport_failure(t: ureq::Transport, req: &Request, shown_url: &str) -> Attempt {
    use ureq::ErrorKind as K;
    // ureq's own Display starts with the URL, which may carry credentials; describe it without.
    let mut reason = t.kind().to_string();
    let message = t.message().map(str::to_string);
    let source = std::error::Error::source(&t).map(|s| s.to_string());
    for part in [message, source].into_iter().flatten() {
        // Wrapped io errors often repeat the outer description; say it once.
        reason = if part.starts_with(&reason) { part } else { format!("{reason}: {part}") };
    }
    let (method, url) = (req.method.clone(), shown_url.to_string());
    match t.kind() {
        // ureq's message quotes the offending header line, value (token) included.
        K::BadHeader => {
            Attempt::Fatal(HttpError::InvalidRequest { method, url, reason: "a header is not valid HTTP".into() })
        }
        K::InvalidUrl | K::UnknownScheme | K::InsecureRequestHttpsOnly => {
            Attempt::Fatal(HttpError::InvalidRequest { method, url, reason })
        }
        K::InvalidProxyUrl | K::ProxyUnauthorized => {
            Attempt::Fatal(HttpError::Config(format!("{method} {url}: proxy: {reason}")))
        }
        _ if is_certificate_rejection(&t) => Attempt::Fatal(HttpError::Tls { method, url, reason }),
        _ => Attempt::Retry { last: reason, retry_after: None },
    }
}

/// Whether the TLS handshake failed on the server's certificate: a wrong CA bundle does not fix itself,
/// while other handshake failures (a reset, an overloaded balancer) may.
fn is_certificate_rejection(t: &ureq::Transport) -> bool {
    let mut cause = std::error::Error::source(t);
    while let Some(err) = cause {
        // io::Error hides the error it wraps from `source()`; rustls' lives behind `get_ref()`.
        let inner =
            err.downcast_ref::<std::io::Error>().and_then(|io| io.get_ref()).map(|e| e as &dyn std::error::Error);
        for candidate in [Some(err), inner].into_iter().flatten() {
            if let Some(rustls::Error::InvalidCertificate(_)) = candidate.downcast_ref::<rustls::Error>() {
                return true;
            }
        }
        cause = err.source();
    }
    false
}

fn tls_config(settings: &HttpSettings) -> Result<Arc<ClientConfig>, HttpError> {
    // Parsed even when verification is off so a broken bundle is reported, not silently ignored.
    let extra = extra_ca_certs(&settings.extra_ca_pem)?;
    // Explicit provider: a process-wide default may be unset or, with several crypto backends in the
    // dependency tree, ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Config(format!("TLS: {e}")))?;
    let config = if settings.verify_tls {
        let mut roots = RootCertStore::empty();
        // The system store may be missing or partly unreadable in minimal images; the extra CAs may be
        // all this node needs, so take what loads.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for (i, cert) in extra.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                HttpError::Config(format!("extra CA certificate #{} is not a usable trust anchor: {e}", i + 1))
            })?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider))).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn extra_ca_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    if pem.trim().is_empty() {
        return Ok(Vec::new());
    }
    let bad = |why: String| HttpError::Config(format!("extra CA bundle: {why}"));
    let mut certs = Vec::new();
    for (i, item) in rustls_pemfile::read_all(&mut pem.as_bytes()).enumerate() {
        match item.map_err(|e| bad(format!("PEM section #{} is unreadable: {e}", i + 1)))? {
            rustls_pemfile::Item::X509Certificate(cert) => certs.push(cert),
            _ => return Err(bad(format!("PEM section #{} is not a certificate (a key?)", i + 1))),
        }
    }
    if certs.is_empty() {
        return Err(bad("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)".into()));
    }
    Ok(certs)
}

/// Accepts any server certificate. Only used when `verify_tls` is false, which mirrors Magnum's
/// `VERIFY_CA=False` (its scripts then run `curl -k`): clouds with self-signed endpoints must still be
/// able to build clusters. Handshake signatures are still checked, so the peer at least holds the key of
/// the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Whether `host` (a name or an IP, IPv6 with or without brackets) skips the proxy per `no_proxy`:
/// comma-separated entries, each `*` (everything), an IP, a CIDR, or a domain matching itself and its
/// subdomains (a leading `.` or `*.` changes nothing). Case and trailing dots are ignored.
pub fn bypass_proxy(host: &str, no_proxy: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').trim_end_matches('.').to_ascii_lowercase();
    let host_ip: Option<IpAddr> = host.parse().ok();
    no_proxy.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
        if entry == "*" {
            return true;
        }
        let bare = entry.trim_start_matches('[').trim_end_matches(']');
        if let Ok(net) = bare.parse::<IpNet>() {
            return host_ip.is_some_and(|ip| net.contains(&ip));
        }
        if let Ok(ip) = bare.parse::<IpAddr>() {
            return host_ip == Some(ip);
        }
        let domain = entry.trim_start_matches("*.").trim_start_matches('.').trim_end_matches('.').to_ascii_lowercase();
        !domain.is_empty()
            && host_ip.is_none()
            && (host == domain || host.strip_suffix(&domain).is_some_and(|rest| rest.ends_with('.')))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    const SEC: Duration = Duration::from_secs(1);

    fn policy(deadline: Duration) -> RetryPolicy {
        RetryPolicy { deadline, ..RetryPolicy::default() }
    }

    #[test]
    fn http_backoff_doubles_and_caps() {
        let p = RetryPolicy::default();
        let waits: Vec<_> = (1..=9).map(|n| p.backoff(n).as_millis()).collect();
        assert_eq!(waits, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(p.backoff(200), p.max_backoff, "no overflow on long retries");
    }

    #[test]
    fn http_retry_never_sleeps_past_the_deadline() {
        let p = policy(10 * SEC);
        assert_eq!(p.next_delay(1, Duration::ZERO, None), Some(Duration::from_millis(500)));
        assert_eq!(p.next_delay(5, Duration::from_millis(9_900), None), Some(Duration::from_millis(100)));
        assert_eq!(p.next_delay(1, 10 * SEC, None), None);
        assert_eq!(p.next_delay(1, 11 * SEC, None), None);
    }

    #[test]
    fn http_retry_after_lengthens_the_wait_up_to_the_deadline() {
        let p = policy(10 * SEC);
        assert_eq!(p.next_delay(1, SEC, Some(3 * SEC)), Some(3 * SEC));
        assert_eq!(p.next_delay(1, 8 * SEC, Some(60 * SEC)), Some(2 * SEC));
        assert_eq!(p.next_delay(4, SEC, Some(Duration::ZERO)), Some(4 * SEC), "0 does not mean hammer");
    }

    #[test]
    fn http_max_attempts_stops_early() {
        let p = RetryPolicy { max_attempts: Some(3), ..policy(600 * SEC) };
        assert!(p.next_delay(2, SEC, None).is_some());
        assert_eq!(p.next_delay(3, SEC, None), None);
    }

    /// Instant attempts on a virtual clock: the waits add up to exactly the deadline, the last attempt
    /// starts at it, none after.
    #[test]
    fn http_schedule_ends_at_the_deadline() {
        let p = RetryPolicy { initial_backoff: SEC, max_backoff: 8 * SEC, ..policy(60 * SEC) };
        let (mut now, mut starts) = (Duration::ZERO, vec![Duration::ZERO]);
        while let Some(wait) = p.next_delay(starts.len() as u32, now, None) {
            now += wait;
            starts.push(now);
        }
        let secs: Vec<_> = starts.iter().map(Duration::as_secs).collect();
        assert_eq!(secs, [0, 1, 3, 7, 15, 23, 31, 39, 47, 55, 60]);
    }

    #[test]
    fn http_no_proxy_matching() {
        let list = "localhost, .svc.cluster.local,example.com,*.corp.test, 10.0.0.0/8,192.168.1.5,fd00::/8,[::1]";
        for host in [
            "localhost",
            "LOCALHOST.",
            "kubernetes.default.svc.cluster.local",
            "example.com",
            "api.example.com",
            "x.corp.test",
            "corp.test",
            "10.1.2.3",
            "192.168.1.5",
            "fd00::1",
            "[fd00::1]",
            "::1",
        ] {
            assert!(bypass_proxy(host, list), "{host} should bypass");
        }
        for host in ["notexample.com", "example.com.evil", "192.168.1.6", "11.0.0.1", "fe80::1", "svc.cluster"] {
            assert!(!bypass_proxy(host, list), "{host} should use the proxy");
        }
        assert!(bypass_proxy("anything.example", " * "));
        assert!(!bypass_proxy("anything.example", ""));
        assert!(!bypass_proxy("anything.example", " , ,"));
        assert!(!bypass_proxy("10.0.0.1", "0.0.10.in-addr.arpa"), "an IP host matches IP entries only");
    }

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
        let ca = include_str!("../tests/fixtures/test-ca.pem");
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
    fn serve(statuses: &'static [(u16, &'static str)]) -> (String, Arc<AtomicUsize>, Arc<tiny_http::Server>) {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let url = format!("http://{}/", server.server_addr().to_ip().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let (s, h) = (server.clone(), hits.clone());
        std::thread::spawn(move || {
            for req in s.incoming_requests() {
                let n = h.fetch_add(1, Ordering::SeqCst).min(statuses.len() - 1);
                let (status, retry_after) = statuses[n];
                let mut resp = tiny_http::Response::from_string(format!("answer {n}")).with_status_code(status);
                if !retry_after.is_empty() {
                    resp.add_header(tiny_http::Header::from_bytes("Retry-After", retry_after).unwrap());
                }
                let _ = req.respond(resp);
            }
        });
        (url, hits, server)
    }

    fn quick(deadline: Duration) -> Client {
        let policy = RetryPolicy { initial_backoff: Duration::from_millis(20), deadline, ..RetryPolicy::default() };
        Client::new(&HttpSettings::default(), policy).unwrap()
    }

    #[test]
    fn http_send_retries_5xx_and_429_then_returns_the_answer() {
        let (url, hits, server) = serve(&[(503, ""), (429, "1"), (500, ""), (200, "")]);
        let retries = Arc::new(AtomicUsize::new(0));
        let seen = retries.clone();
        let client = quick(10 * SEC).on_retry(move |_| {
            seen.fetch_add(1, Ordering::SeqCst);
        });
        let started = Instant::now();
        let resp = client.send(&Request::get(&url)).unwrap();
        assert_eq!((resp.status, resp.attempts, hits.load(Ordering::SeqCst)), (200, 4, 4));
        assert_eq!(resp.body, b"answer 3");
        assert_eq!(retries.load(Ordering::SeqCst), 3);
        assert!(started.elapsed() >= SEC, "Retry-After: 1 was honoured");
        server.unblock();
    }

    #[test]
    fn http_send_returns_4xx_and_gives_up_on_5xx() {
        let (url, hits, server) = serve(&[(404, "")]);
        let resp = quick(10 * SEC).send(&Request::get(&url)).unwrap();
        assert_eq!((resp.status, hits.load(Ordering::SeqCst)), (404, 1));
        server.unblock();

        let (url, hits, server) = serve(&[(502, "")]);
        let err = quick(Duration::from_millis(300)).send(&Request::get(&url)).unwrap_err();
        let HttpError::GaveUp { attempts, ref last, .. } = err else { panic!("{err:?}") };
        assert_eq!(attempts as usize, hits.load(Ordering::SeqCst));
        assert!(attempts > 1 && last.contains("502") && last.contains("answer"), "{err}");
        server.unblock();
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
            Client::new(&settings, policy(10 * SEC)).unwrap()
        };
        let ca = include_str!("../tests/fixtures/test-ca.pem");
        assert_eq!(client(ca, true).send(&Request::get(&url)).unwrap().body, b"ok");
        assert_eq!(client("", false).send(&Request::get(&url)).unwrap().body, b"ok", "verify_tls=false is curl -k");
        let started = Instant::now();
        let err = client("", true).send(&Request::get(&url)).unwrap_err();
        assert!(matches!(err, HttpError::Tls { .. }), "{err:?}");
        assert!(started.elapsed() < 5 * SEC, "an untrusted certificate is not retried");
        assert_eq!(served.load(Ordering::SeqCst), 2);
    }
    #[test]
    fn http_proxy_is_used_per_scheme_unless_no_proxy_matches() {
        let (target, _, target_server) = serve(&[(200, "")]);
        // The fake proxy answers 203 so its answers are told apart; it sees absolute-form targets.
        let proxy = Arc::new(tiny_http::Server::http("127.0.0.1:0").unwrap());
        let proxy_url = format!("http://{}", proxy.server_addr().to_ip().unwrap());
        let (p, asked) = (proxy.clone(), Arc::new(std::sync::Mutex::new(Vec::new())));
        let log = asked.clone();
        std::thread::spawn(move || {
            for req in p.incoming_requests() {
                log.lock().unwrap().push(req.url().to_string());
                let _ = req.respond(tiny_http::Response::empty(203));
            }
        });
        let via = |no_proxy: &str| {
            let settings =
                HttpSettings { http_proxy: proxy_url.clone(), no_proxy: no_proxy.into(), ..HttpSettings::default() };
            Client::new(&settings, policy(5 * SEC))
                .unwrap()
                .send(&Request::get(format!("{target}x?y=1")))
                .unwrap()
                .status
        };
        assert_eq!(via(""), 203);
        assert_eq!(via("localhost, 127.0.0.0/8"), 200);
        assert_eq!(via("127.0.0.1"), 200);
        assert_eq!(*asked.lock().unwrap(), [format!("{target}x?y=1")]);
        target_server.unblock();
        proxy.unblock();
    }
}
