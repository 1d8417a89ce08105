//! A loopback Keystone and Magnum certificate API for tests of the agent's certs step: real HTTP on
//! 127.0.0.1, the real request and answer shapes, and a real CA (rcgen, ECDSA P-256) that signs the
//! requests it is sent, so tests can check the results with `openssl verify`.
//!
//! - Keystone: `POST /v3/auth/tokens` with the password method. Checks the user id and password (and the
//!   trust, when the request is trust-scoped), answers `201` with the token in `X-Subject-Token` and a v3
//!   token body; wrong credentials get Keystone's `401` error body, an unknown trust its `404`.
//! - Magnum: `GET /v1/certificates/{cluster_uuid}` → `200 {cluster_uuid, bay_uuid, pem, links}`;
//!   `POST /v1/certificates {cluster_uuid, csr}` → `201 {cluster_uuid, bay_uuid, csr, pem, links}`,
//!   signed like Magnum's x509 module (subject and the requested extensions from the CSR, random serial,
//!   SHA-256, from a day ago for 1825 days unless told otherwise). A token Keystone did not issue (or
//!   issued before [`StandInCloud::expire_tokens`]) gets keystonemiddleware's `401`; a missing
//!   `OpenStack-API-Version: container-infra …` header a `406`; errors use Magnum's
//!   `{"errors": [{…, "title", "detail"}]}` body.
//!
//! Tests script failures ([`StandInCloud::fail_next`], [`StandInCloud::refuse_signing`], …) and read back
//! every request received.

use crate::loopback::{Loopback, Reply, Request};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName, DnType, IsCa, Issuer,
    KeyPair, KeyUsagePurpose, SerialNumber,
};
use serde_json::{json, Value};
use std::collections::{HashSet, VecDeque};
use std::net::TcpListener;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

/// Who may get a token.
#[derive(Clone, Debug)]
pub struct Trustee {
    pub user_id: String,
    pub password: String,
    /// The trust a trust-scoped request must name; empty: the trustee has none.
    pub trust_id: String,
    /// The cluster whose certificates the trustee may ask for.
    pub cluster_uuid: String,
}

impl Trustee {
    /// The trustee and cluster of a native node config (as JSON), e.g. an example from `examples/node`.
    pub fn of_config(config: &Value) -> Trustee {
        let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
        Trustee {
            user_id: text(&config["openstack"]["trustee_user_id"]),
            password: text(&config["openstack"]["trustee_password"]),
            trust_id: text(&config["openstack"]["trust_id"]),
            cluster_uuid: text(&config["cluster"]["uuid"]),
        }
    }
}

/// One request as received.
pub type Received = Request;

struct Ca {
    pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let key = KeyPair::generate().expect("CA key");
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(3650);
        let pem = params.self_signed(&key).expect("CA certificate").pem();
        Ca { pem, issuer: Issuer::new(params, key) }
    }
}

struct State {
    trustee: Trustee,
    ca: Ca,
    /// Tokens Magnum accepts.
    valid_tokens: HashSet<String>,
    issued: u64,
    /// Answers given to the next Magnum requests instead of the real ones: (status, detail).
    scripted: VecDeque<(u16, String)>,
    /// Every signing request is refused with this.
    refusal: Option<(u16, String)>,
    /// Validity of what is signed, in days relative to now.
    validity: (i64, i64),
    signed: Vec<String>,
}

/// The two services, each on its own loopback port, stopped when dropped.
pub struct StandInCloud {
    /// `http://127.0.0.1:PORT/v3`, as a node config's `openstack.auth_url`.
    pub keystone_url: String,
    /// `http://127.0.0.1:PORT/v1`, as a node config's `openstack.magnum_url`.
    pub magnum_url: String,
    state: Arc<Mutex<State>>,
    keystone: Loopback,
    magnum: Loopback,
}

impl std::fmt::Debug for StandInCloud {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StandInCloud")
            .field("keystone_url", &self.keystone_url)
            .field("magnum_url", &self.magnum_url)
            .finish_non_exhaustive()
    }
}

impl StandInCloud {
    pub fn start(trustee: Trustee) -> StandInCloud {
        let state = Arc::new(Mutex::new(State {
            ca: Ca::new(&trustee.cluster_uuid),
            trustee,
            valid_tokens: HashSet::new(),
            issued: 0,
            scripted: VecDeque::new(),
            refusal: None,
            validity: (-1, 1825),
            signed: Vec::new(),
        }));
        // Magnum's answers link to Magnum itself: its address is known before it answers.
        let magnum_listener = TcpListener::bind("127.0.0.1:0").expect("binding a loopback port");
        let magnum_base = format!("http://{}", magnum_listener.local_addr().expect("a bound address"));
        let keystone = {
            let state = state.clone();
            Loopback::serve(move |request| keystone_answer(&state, request))
        };
        let magnum = {
            let (state, base) = (state.clone(), magnum_base.clone());
            Loopback::builder()
                .on(magnum_listener)
                .serve(move |request| magnum_answer(&state, &base, request))
                .expect("starting the Magnum stand-in")
        };
        StandInCloud {
            keystone_url: keystone.url("/v3"),
            magnum_url: format!("{magnum_base}/v1"),
            state,
            keystone,
            magnum,
        }
    }

    /// A cloud for the trustee and cluster of `config` (a native node config as JSON), and `config`
    /// pointed at it.
    pub fn for_config(config: &mut Value) -> StandInCloud {
        let cloud = StandInCloud::start(Trustee::of_config(config));
        cloud.aim(config);
        cloud
    }

    /// Points a native node config (as JSON) at this cloud.
    pub fn aim(&self, config: &mut Value) {
        config["openstack"]["auth_url"] = json!(self.keystone_url);
        config["openstack"]["magnum_url"] = json!(self.magnum_url);
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The cluster CA certificate (PEM).
    pub fn ca_pem(&self) -> String {
        self.state().ca.pem.clone()
    }

    /// Replaces the cluster CA, as a CA rotation would.
    pub fn rotate_ca(&self) {
        let mut state = self.state();
        state.ca = Ca::new(&state.trustee.cluster_uuid);
    }

    /// The next Magnum requests get these answers (status, detail), in order, whatever they ask.
    pub fn fail_next(&self, answers: &[(u16, &str)]) {
        self.state().scripted.extend(answers.iter().map(|(s, d)| (*s, d.to_string())));
    }

    /// Every signing request is refused with `status` and `detail` from now on.
    pub fn refuse_signing(&self, status: u16, detail: &str) {
        self.state().refusal = Some((status, detail.to_string()));
    }

    /// Tokens issued so far stop working (they expired or were revoked).
    pub fn expire_tokens(&self) {
        self.state().valid_tokens.clear();
    }

    /// What is signed from now on is valid from `from_days` to `until_days` relative to now.
    pub fn set_validity(&self, from_days: i64, until_days: i64) {
        self.state().validity = (from_days, until_days);
    }

    pub fn keystone_requests(&self) -> Vec<Received> {
        self.keystone.requests()
    }

    pub fn magnum_requests(&self) -> Vec<Received> {
        self.magnum.requests()
    }

    /// Certificates signed so far (PEM), in order.
    pub fn signed(&self) -> Vec<String> {
        self.state().signed.clone()
    }

    /// Every token issued so far has this prefix; tests look for it in places tokens must never reach.
    pub fn token_prefix(&self) -> &'static str {
        TOKEN_PREFIX
    }
}

const TOKEN_PREFIX: &str = "gAAAAABstandin";

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn iso(time: time::OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339).expect("formatting a time")
}

/// Keystone's error body.
fn keystone_error(status: u16, title: &str, message: &str) -> Reply {
    Reply::json(status, &json!({"error": {"code": status, "title": title, "message": message}}))
}

fn keystone_answer(state: &Mutex<State>, received: &Received) -> Reply {
    let mut state = lock(state);
    if received.method != "POST" || received.url != "/v3/auth/tokens" {
        return keystone_error(404, "Not Found", "The resource could not be found.");
    }
    let body = received.json();
    let identity = &body["auth"]["identity"];
    let user = &identity["password"]["user"];
    let trustee = state.trustee.clone();
    if identity["methods"] != json!(["password"])
        || user["id"] != json!(trustee.user_id)
        || user["password"] != json!(trustee.password)
    {
        return keystone_error(401, "Unauthorized", "The request you have made requires authentication.");
    }
    let scope = &body["auth"]["scope"];
    let trust = match scope {
        Value::Null => None,
        _ => match scope["OS-TRUST:trust"]["id"].as_str() {
            Some(id) if !trustee.trust_id.is_empty() && id == trustee.trust_id => Some(id.to_string()),
            Some(id) => return keystone_error(404, "Not Found", &format!("Could not find trust: {id}.")),
            None => return keystone_error(400, "Bad Request", "Invalid scope in the request."),
        },
    };
    state.issued += 1;
    let token = format!("{TOKEN_PREFIX}{:04}{:x}", state.issued, rand_u64());
    state.valid_tokens.insert(token.clone());
    let now = time::OffsetDateTime::now_utc();
    let mut token_body = json!({
        "methods": ["password"],
        "user": {"domain": {"id": "default", "name": "Default"}, "id": trustee.user_id,
                 "name": format!("{}_trustee", trustee.cluster_uuid), "password_expires_at": null},
        "audit_ids": [format!("{:x}", rand_u64())],
        "expires_at": iso(now + time::Duration::hours(1)),
        "issued_at": iso(now),
    });
    if let Some(id) = trust {
        token_body["OS-TRUST:trust"] = json!({"id": id, "impersonation": false,
            "trustee_user": {"id": trustee.user_id}, "trustor_user": {"id": "c0ffee00c0ffee00c0ffee00c0ffee00"}});
        token_body["project"] = json!({"domain": {"id": "default", "name": "Default"},
            "id": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "name": "demo"});
        token_body["roles"] = json!([{"id": "0f1e2d3c4b5a69788796a5b4c3d2e1f0", "name": "member"}]);
        token_body["catalog"] = json!([]);
    }
    Reply::json(201, &json!({ "token": token_body })).header("X-Subject-Token", token)
}

/// Magnum's error body (its `ParsableErrorMiddleware`).
fn magnum_error(status: u16, title: &str, detail: &str) -> Reply {
    let body = json!({"errors": [{"request_id": format!("req-{:x}", rand_u64()), "code": "client",
        "status": status, "title": title, "detail": detail, "links": []}]});
    Reply::json(status, &body)
}

fn magnum_answer(state: &Mutex<State>, base: &str, received: &Received) -> Reply {
    let mut state = lock(state);
    if let Some((status, detail)) = state.scripted.pop_front() {
        return magnum_error(status, "Scripted", &detail);
    }
    if !received.header("X-Auth-Token").is_some_and(|t| state.valid_tokens.contains(t)) {
        // keystonemiddleware answers before Magnum sees the request, in Keystone's error shape.
        return keystone_error(401, "Unauthorized", "The request you have made requires authentication.");
    }
    if !received.header("OpenStack-API-Version").is_some_and(|v| v.starts_with("container-infra ")) {
        return magnum_error(406, "Not Acceptable", "Invalid service type for OpenStack-API-Version header");
    }
    let uuid = state.trustee.cluster_uuid.clone();
    let links = |path: &str| {
        json!([{"href": format!("{base}/v1/certificates{path}"), "rel": "self"},
               {"href": format!("{base}/certificates{path}"), "rel": "bookmark"}])
    };
    match (received.method.as_str(), received.path()) {
        ("GET", p) if p.starts_with("/v1/certificates/") => {
            let asked = &p["/v1/certificates/".len()..];
            if asked != uuid {
                return magnum_error(404, "Not Found", &format!("Cluster {asked} could not be found."));
            }
            let body = json!({"cluster_uuid": uuid, "bay_uuid": uuid, "pem": state.ca.pem,
                "links": links(&format!("/{uuid}"))});
            Reply::json(200, &body)
        }
        ("POST", "/v1/certificates") => {
            if !received.header("Content-Type").is_some_and(|c| c.starts_with("application/json")) {
                return magnum_error(415, "Unsupported Media Type", "The request body must be JSON.");
            }
            let body = received.json();
            let asked = body["cluster_uuid"].as_str().or(body["bay_uuid"].as_str()).unwrap_or_default();
            if asked != uuid {
                return magnum_error(
                    403,
                    "Forbidden",
                    &format!("Policy doesn't allow certificate:create for {asked}."),
                );
            }
            if let Some((status, detail)) = state.refusal.clone() {
                return magnum_error(status, "Forbidden", &detail);
            }
            let csr = body["csr"].as_str().unwrap_or_default().to_string();
            let pem = match sign(&state, &csr) {
                Ok(pem) => pem,
                Err(e) => return magnum_error(400, "Bad Request", &format!("Invalid CSR: {e}")),
            };
            state.signed.push(pem.clone());
            let body = json!({"cluster_uuid": uuid, "bay_uuid": uuid, "csr": csr, "pem": pem, "links": links("")});
            Reply::json(201, &body)
        }
        _ => magnum_error(404, "Not Found", "The resource could not be found."),
    }
}

fn sign(state: &State, csr: &str) -> Result<String, rcgen::Error> {
    let mut request = CertificateSigningRequestParams::from_pem(csr)?;
    let now = time::OffsetDateTime::now_utc();
    request.params.not_before = now + time::Duration::days(state.validity.0);
    request.params.not_after = now + time::Duration::days(state.validity.1);
    request.params.serial_number = Some(SerialNumber::from_slice(&rand_u64().to_be_bytes()[1..]));
    request.params.is_ca = IsCa::ExplicitNoCa;
    Ok(request.signed_by(&state.ca.issuer)?.pem())
}

/// Enough randomness for serials and token suffixes in tests, without another dependency.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos());
    hasher.finish()
}
