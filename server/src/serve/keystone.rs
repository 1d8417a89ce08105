//! Who is calling: the caller's `X-Auth-Token` validated by Keystone, as keystonemiddleware does in
//! front of Magnum: `GET {keystone}/v3/auth/tokens` with the server's own service token in
//! `X-Auth-Token` and the caller's in `X-Subject-Token`. 200 is a valid token and says whose; 404 is
//! an invalid, expired or revoked one.
//!
//! The service token comes from password authentication with the configured service user, scoped to
//! its project (or the system); it is renewed before it expires and once when Keystone answers 401.
//! Keystone's default policy lets the `service` role (or a system reader) validate others' tokens.
//!
//! Validated tokens are cached for `token_cache` (default 60 s, never past the token's own expiry),
//! keyed by the token's SHA-256 so no token sits in memory as a map key. Concurrent requests with the
//! same uncached token share one Keystone call. A token revoked in Keystone is thus honoured for at
//! most `token_cache` more; failures are not cached.

use super::settings::{KeystoneSettings, ProjectRef, ServiceUser, UserRef};
use hearth_fragments::config::secret::Secret;
use hearth_fragments::http::{Client, HttpError, HttpSettings, Request, RetryPolicy};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

/// Renew the service token when it has less than this left, so a validation never races its expiry.
const SERVICE_TOKEN_MARGIN: Duration = Duration::from_secs(300);
/// Longer tokens are not Keystone's (fernet tokens are ~200 bytes, JWS ~800); refused unasked.
const MAX_TOKEN_LEN: usize = 8192;
/// Past this many cached tokens, expired entries are swept.
const CACHE_SWEEP_AT: usize = 10_000;

/// Who a valid token belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    /// The user who authenticated: for a trust-scoped token the trust's trustee, because with
    /// impersonation (Magnum's trusts use it) the token's `user` is the trustor, who did not.
    pub user_id: String,
    pub trust_id: Option<String>,
    /// Role names (empty for an unscoped token).
    pub roles: Vec<String>,
}

impl Caller {
    /// Whether the caller holds `admin_role`. A trust-scoped token never counts: its roles are the
    /// trustor's, delegated to a node, and must not turn a node into an admin of every cluster.
    pub fn is_admin(&self, admin_role: &str) -> bool {
        self.trust_id.is_none() && self.roles.iter().any(|role| role == admin_role)
    }
}

/// Why a caller is not authenticated.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// HTTP 401.
    #[error("the request has no X-Auth-Token")]
    Missing,
    /// HTTP 401.
    #[error("the token is invalid or has expired")]
    Invalid,
    /// HTTP 503: the caller should retry.
    #[error("cannot validate the token: {0}")]
    Unavailable(String),
}

struct ServiceToken {
    value: Secret,
    renew_after: Instant,
}

enum Slot {
    Ready { caller: Arc<Caller>, until: Instant },
    Pending(Arc<Pending>),
}

#[derive(Default)]
struct Pending {
    result: Mutex<Option<Result<Arc<Caller>, AuthError>>>,
    done: Condvar,
}

pub struct Keystone {
    client: Client,
    url: String,
    service_user: ServiceUser,
    cache_ttl: Duration,
    service_token: Mutex<Option<ServiceToken>>,
    cache: Mutex<HashMap<[u8; 32], Slot>>,
}

impl std::fmt::Debug for Keystone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keystone").field("url", &self.url).field("cache_ttl", &self.cache_ttl).finish_non_exhaustive()
    }
}

impl Keystone {
    pub fn new(settings: &KeystoneSettings) -> Result<Keystone, HttpError> {
        let http = HttpSettings {
            extra_ca_pem: settings.ca_pem.clone(),
            verify_tls: settings.verify_tls,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(15),
            ..HttpSettings::default()
        };
        // A caller waits while we ask: retry a blip, then answer 503 so the node retries instead.
        let policy = RetryPolicy {
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(1),
            deadline: Duration::from_secs(5),
            max_attempts: Some(3),
        };
        Ok(Keystone {
            client: Client::new(&http, policy)?,
            url: settings.url.clone(),
            service_user: settings.service_user.clone(),
            cache_ttl: settings.token_cache,
            service_token: Mutex::new(None),
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// The caller behind `token` (the `X-Auth-Token` value, `None` when absent).
    pub fn validate(&self, token: Option<&str>) -> Result<Arc<Caller>, AuthError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or(AuthError::Missing)?;
        if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(AuthError::Invalid);
        }
        let key: [u8; 32] = ring::digest::digest(&ring::digest::SHA256, token.as_bytes())
            .as_ref()
            .try_into()
            .expect("SHA-256 is 32 bytes");

        let pending = {
            let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
            match cache.get(&key) {
                Some(Slot::Ready { caller, until }) if Instant::now() < *until => return Ok(caller.clone()),
                Some(Slot::Pending(pending)) => Some(pending.clone()),
                _ => {
                    if cache.len() >= CACHE_SWEEP_AT {
                        let now = Instant::now();
                        cache.retain(|_, slot| {
                            matches!(slot, Slot::Pending(_))
                                || matches!(slot, Slot::Ready { until, .. } if *until > now)
                        });
                    }
                    cache.insert(key, Slot::Pending(Arc::default()));
                    None
                }
            }
        };
        if let Some(pending) = pending {
            let mut result = pending.result.lock().unwrap_or_else(|p| p.into_inner());
            while result.is_none() {
                result = pending.done.wait(result).unwrap_or_else(|p| p.into_inner());
            }
            return result.clone().expect("set before notifying");
        }

        let outcome = self.ask_keystone(token);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        let Some(Slot::Pending(pending)) = cache.remove(&key) else {
            unreachable!("only this call replaces its pending slot")
        };
        let result = match outcome {
            Ok((caller, lifetime)) => {
                let caller = Arc::new(caller);
                let ttl = self.cache_ttl.min(lifetime);
                if !ttl.is_zero() {
                    cache.insert(key, Slot::Ready { caller: caller.clone(), until: Instant::now() + ttl });
                }
                Ok(caller)
            }
            Err(e) => Err(e),
        };
        drop(cache);
        *pending.result.lock().unwrap_or_else(|p| p.into_inner()) = Some(result.clone());
        pending.done.notify_all();
        result
    }

    /// One validation: the caller and how long the token is still valid.
    fn ask_keystone(&self, token: &str) -> Result<(Caller, Duration), AuthError> {
        for renewed in [false, true] {
            let service = self.service_token(renewed)?;
            let request = Request::get(format!("{}/auth/tokens", self.url))
                .header("X-Auth-Token", service.expose())
                .header("X-Subject-Token", token)
                .header("Accept", "application/json");
            let response = match self.client.send(&request) {
                Ok(response) => response,
                // Only the caller's token can make the request invalid: it is not a token.
                Err(HttpError::InvalidRequest { .. }) => return Err(AuthError::Invalid),
                Err(e) => return Err(AuthError::Unavailable(e.to_string())),
            };
            match response.status {
                200 => {
                    let body: Value = response
                        .json()
                        .map_err(|e| AuthError::Unavailable(format!("Keystone's token body is not JSON: {e}")))?;
                    return caller_of(&body);
                }
                404 => return Err(AuthError::Invalid),
                // Our service token was refused (expired, revoked): get a new one and ask once more.
                401 if !renewed => continue,
                401 => return Err(AuthError::Unavailable("Keystone refuses the service token".into())),
                403 => {
                    return Err(AuthError::Unavailable(
                        "the service user may not validate tokens (it needs Keystone's service role)".into(),
                    ))
                }
                status => {
                    return Err(AuthError::Unavailable(format!(
                        "Keystone answered HTTP {status} to token validation: {}",
                        response.text_tail(200)
                    )))
                }
            }
        }
        unreachable!("the second pass always returns")
    }

    /// The service token, fetched when missing, near expiry, or `renew` (after a 401).
    fn service_token(&self, renew: bool) -> Result<Secret, AuthError> {
        let mut slot = self.service_token.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(current) = slot.as_ref() {
            if !renew && Instant::now() < current.renew_after {
                return Ok(current.value.clone());
            }
        }
        *slot = None;
        let body = password_auth_body(&self.service_user);
        let response = self
            .client
            .send(&Request::post_json(format!("{}/auth/tokens", self.url), &body))
            .map_err(|e| AuthError::Unavailable(format!("getting the service token: {e}")))?;
        if response.status != 201 {
            return Err(AuthError::Unavailable(format!(
                "getting the service token: Keystone answered HTTP {}: {}",
                response.status,
                response.text_tail(200)
            )));
        }
        let value = response.header("X-Subject-Token").map(str::trim).filter(|t| !t.is_empty()).ok_or_else(|| {
            AuthError::Unavailable("Keystone issued the service token without X-Subject-Token".into())
        })?;
        let lifetime = response
            .json::<Value>()
            .ok()
            .and_then(|body| remaining(&body["token"]["expires_at"]))
            .unwrap_or(SERVICE_TOKEN_MARGIN * 2);
        let token = Secret::new(value);
        *slot = Some(ServiceToken {
            value: token.clone(),
            renew_after: Instant::now() + lifetime.saturating_sub(SERVICE_TOKEN_MARGIN),
        });
        Ok(token)
    }
}

/// Keystone's password authentication for the service user.
fn password_auth_body(service: &ServiceUser) -> Value {
    let mut user = match &service.user {
        UserRef::Id(id) => json!({"id": id}),
        UserRef::Name { name, domain } => json!({"name": name, "domain": {"name": domain}}),
    };
    user["password"] = json!(service.password.expose());
    let scope = match &service.project {
        Some(ProjectRef::Id(id)) => json!({"project": {"id": id}}),
        Some(ProjectRef::Name { name, domain }) => json!({"project": {"name": name, "domain": {"name": domain}}}),
        None => json!({"system": {"all": true}}),
    };
    json!({"auth": {"identity": {"methods": ["password"], "password": {"user": user}}, "scope": scope}})
}

/// The caller described by a `GET /v3/auth/tokens` body, and how long the token has left.
fn caller_of(body: &Value) -> Result<(Caller, Duration), AuthError> {
    let token = &body["token"];
    let bad = |what: &str| AuthError::Unavailable(format!("Keystone's token body has no {what}"));
    let trust = token.get("OS-TRUST:trust");
    let user_id = match trust {
        Some(trust) => trust["trustee_user"]["id"].as_str().ok_or_else(|| bad("trust trustee_user id"))?,
        None => token["user"]["id"].as_str().ok_or_else(|| bad("user id"))?,
    };
    let trust_id = match trust {
        Some(trust) => Some(trust["id"].as_str().ok_or_else(|| bad("trust id"))?.to_string()),
        None => None,
    };
    let roles = token["roles"]
        .as_array()
        .map(|roles| roles.iter().filter_map(|r| r["name"].as_str()).map(str::to_string).collect())
        .unwrap_or_default();
    // Without an expiry (never seen from Keystone) the cache TTL alone bounds reuse.
    let lifetime = match token.get("expires_at") {
        Some(value) => remaining(value).ok_or_else(|| bad("readable expires_at"))?,
        None => Duration::MAX,
    };
    Ok((Caller { user_id: user_id.to_string(), trust_id, roles }, lifetime))
}

/// Time left until an RFC 3339 `expires_at`; zero when past.
fn remaining(expires_at: &Value) -> Option<Duration> {
    let at = OffsetDateTime::parse(expires_at.as_str()?, &Rfc3339).ok()?;
    let left = at - OffsetDateTime::now_utc();
    Some(Duration::try_from(left).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hearth_tests::loopback::{Loopback, Reply};

    #[test]
    fn a_trust_scoped_token_is_its_trustee_and_never_admin() {
        // As Keystone 30 answers for a trust with impersonation (Magnum's): `user` is the trustor.
        let body = json!({"token": {
            "user": {"id": "trustor", "name": "owner", "domain": {"id": "default", "name": "Default"}},
            "expires_at": "2999-01-01T00:00:00.000000Z",
            "OS-TRUST:trust": {"id": "t1", "trustor_user": {"id": "trustor"}, "trustee_user": {"id": "trustee"},
                               "impersonation": true},
            "roles": [{"id": "r", "name": "admin"}, {"id": "m", "name": "member"}],
            "project": {"id": "p"}
        }});
        let (caller, left) = caller_of(&body).unwrap();
        assert_eq!(caller.user_id, "trustee");
        assert_eq!(caller.trust_id.as_deref(), Some("t1"));
        assert!(!caller.is_admin("admin"), "delegated roles do not make an admin");
        assert!(left > Duration::from_secs(3600));

        let unscoped = json!({"token": {"user": {"id": "trustee"}, "expires_at": "2000-01-01T00:00:00Z"}});
        let (caller, left) = caller_of(&unscoped).unwrap();
        assert_eq!((caller.user_id.as_str(), caller.roles.len(), left), ("trustee", 0, Duration::ZERO));

        let admin =
            json!({"token": {"user": {"id": "a"}, "roles": [{"name": "admin"}], "expires_at": "2999-01-01T00:00:00Z"}});
        assert!(caller_of(&admin).unwrap().0.is_admin("admin"));
        assert!(!caller_of(&admin).unwrap().0.is_admin("cloud-admin"));
        assert!(matches!(caller_of(&json!({"token": {}})), Err(AuthError::Unavailable(_))));
    }

    /// A loopback stand-in speaking Keystone's token API: it issues service tokens `svc-N`, accepts
    /// subject tokens starting with `good-` (slowly, so concurrent callers overlap), and can be told to
    /// refuse the current service token once, as Keystone does after a revocation.
    struct StandIn {
        url: String,
        issued: Arc<std::sync::atomic::AtomicUsize>,
        validated: Arc<std::sync::atomic::AtomicUsize>,
        revoke_service_token: Arc<std::sync::atomic::AtomicBool>,
        _server: Loopback,
    }

    impl StandIn {
        fn start() -> StandIn {
            use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
            let (issued, validated) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
            let revoke_service_token = Arc::new(AtomicBool::new(false));
            let (counted_issued, counted_validated, revoke) =
                (issued.clone(), validated.clone(), revoke_service_token.clone());
            let server = Loopback::builder()
                .workers(8)
                .serve(move |request| {
                    let header = |name: &str| request.header(name).unwrap_or_default();
                    let expires = "2999-01-01T00:00:00.000000Z";
                    let (status, body, token) = match request.method.as_str() {
                        "POST" => {
                            let n = counted_issued.fetch_add(1, SeqCst) + 1;
                            (201, json!({"token": {"expires_at": expires}}), Some(format!("svc-{n}")))
                        }
                        _ => {
                            counted_validated.fetch_add(1, SeqCst);
                            std::thread::sleep(Duration::from_millis(150));
                            let current = format!("svc-{}", counted_issued.load(SeqCst));
                            if header("X-Auth-Token") != current || revoke.swap(false, SeqCst) {
                                (401, json!({"error": {"code": 401}}), None)
                            } else if let Some(user) = header("X-Subject-Token").strip_prefix("good-") {
                                (200, json!({"token": {"user": {"id": user}, "expires_at": expires}}), None)
                            } else {
                                (404, json!({"error": {"code": 404, "message": "Could not find token"}}), None)
                            }
                        }
                    };
                    let reply = Reply::text(status, body.to_string());
                    match token {
                        Some(token) => reply.header("X-Subject-Token", token),
                        None => reply,
                    }
                })
                .unwrap();
            StandIn { url: server.url("/v3"), issued, validated, revoke_service_token, _server: server }
        }

        fn keystone(&self, cache: Duration) -> Keystone {
            Keystone::new(&KeystoneSettings {
                url: self.url.clone(),
                verify_tls: true,
                ca_pem: String::new(),
                admin_role: "admin".into(),
                token_cache: cache,
                service_user: ServiceUser {
                    user: UserRef::Id("svc".into()),
                    password: Secret::new("pw"),
                    project: Some(ProjectRef::Id("p".into())),
                },
            })
            .unwrap()
        }

        fn counts(&self) -> (usize, usize) {
            use std::sync::atomic::Ordering::SeqCst;
            (self.issued.load(SeqCst), self.validated.load(SeqCst))
        }
    }

    #[test]
    fn concurrent_callers_share_one_validation_and_the_cache_spares_keystone() {
        let stand_in = StandIn::start();
        let keystone = stand_in.keystone(Duration::from_secs(60));
        let callers = std::thread::scope(|scope| {
            let handles = (0..20).map(|_| scope.spawn(|| keystone.validate(Some("good-node")))).collect::<Vec<_>>();
            handles.into_iter().map(|h| h.join().unwrap().unwrap()).collect::<Vec<_>>()
        });
        assert!(callers.iter().all(|c| c.user_id == "node"));
        assert_eq!(stand_in.counts(), (1, 1), "one service token, one validation for 20 callers");
        keystone.validate(Some("good-node")).unwrap();
        assert_eq!(stand_in.counts(), (1, 1), "cached");
        keystone.validate(Some("good-other")).unwrap();
        assert_eq!(stand_in.counts(), (1, 2), "another token is validated on its own");

        // Refusals are not cached: a node that fixes its token is not locked out.
        assert_eq!(keystone.validate(Some("expired")), Err(AuthError::Invalid));
        assert_eq!(keystone.validate(Some("expired")), Err(AuthError::Invalid));
        assert_eq!(stand_in.counts(), (1, 4));
        assert_eq!(keystone.validate(None), Err(AuthError::Missing));
        assert_eq!(keystone.validate(Some("bad\u{7f}token")), Err(AuthError::Invalid), "refused unasked");
        assert_eq!(stand_in.counts(), (1, 4));
    }

    #[test]
    fn a_refused_service_token_is_renewed_once_and_no_cache_means_every_call_asks() {
        let stand_in = StandIn::start();
        let keystone = stand_in.keystone(Duration::ZERO);
        keystone.validate(Some("good-a")).unwrap();
        keystone.validate(Some("good-a")).unwrap();
        assert_eq!(stand_in.counts(), (1, 2));
        stand_in.revoke_service_token.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(keystone.validate(Some("good-a")).unwrap().user_id, "a");
        assert_eq!(stand_in.counts(), (2, 4), "401, a new service token, then the answer");
    }

    #[test]
    fn an_unreachable_keystone_is_unavailable_quickly() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let settings = KeystoneSettings {
            url: format!("http://127.0.0.1:{port}/v3"),
            verify_tls: true,
            ca_pem: String::new(),
            admin_role: "admin".into(),
            token_cache: Duration::from_secs(60),
            service_user: ServiceUser { user: UserRef::Id("svc".into()), password: Secret::new("pw"), project: None },
        };
        let started = Instant::now();
        let err = Keystone::new(&settings).unwrap().validate(Some("good-a")).unwrap_err();
        assert!(matches!(&err, AuthError::Unavailable(reason) if reason.contains("service token")), "{err:?}");
        assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
        assert!(!format!("{err}").contains("pw"));
    }

    #[test]
    fn the_service_auth_body_is_keystones_shape() {
        let service = ServiceUser {
            user: UserRef::Name { name: "hearth".into(), domain: "Default".into() },
            password: Secret::new("pw"),
            project: Some(ProjectRef::Name { name: "service".into(), domain: "Default".into() }),
        };
        assert_eq!(
            password_auth_body(&service),
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user":
                {"name": "hearth", "domain": {"name": "Default"}, "password": "pw"}}},
                "scope": {"project": {"name": "service", "domain": {"name": "Default"}}}}})
        );
        let system = ServiceUser { user: UserRef::Id("u".into()), project: None, ..service };
        assert_eq!(password_auth_body(&system)["auth"]["scope"], json!({"system": {"all": true}}));
    }
}
