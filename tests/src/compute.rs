//! A stand-in for the parts of Nova and Neutron that the OpenStack cloud-controller-manager asks about
//! its Nodes, speaking their real APIs on loopback, under the paths devstack gives them: Nova's compute
//! API v2.1 (`GET /compute/v2.1/servers/detail` with its `name` regex, `…/servers/{id}`,
//! `…/flavors/{id}`) and Neutron's port and extension listings (`GET /networking/v2.0/ports?device_id=`,
//! `…/extensions`), with their
//! version documents and the shapes of the payloads those services return (no microversion header: Nova
//! answers as 2.1, so a server's flavor is an id and a link); Octavia is in the catalog with its version
//! document only.
//!
//! Like the real services it trusts only Keystone: every request's `X-Auth-Token` is validated with the
//! shared [`Keystone`] (`GET /v3/auth/tokens`), a caller sees only the servers of its token's project,
//! and every request is recorded with who made it (user, project, trust), so a test can tell that the
//! cloud-controller-manager authenticated with the cluster's trust. Its endpoints are put in Keystone's
//! catalog at the hub's gateway ([`STANDIN_GATEWAY`]), where every test network forwards the same port.
//! The servers are the ones Heat's stand-in made ([`Compute::add`]).

use crate::keystone::Keystone;
use crate::loopback::{Loopback, Reply, Request};
use crate::node::network::STANDIN_GATEWAY;
use anyhow::Result;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

/// A server as Nova and Neutron describe it.
#[derive(Clone, Debug)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub project_id: String,
    /// Its one fixed address, on the network named [`NETWORK_NAME`].
    pub address: Ipv4Addr,
    /// The flavor, by id (Nova's ids are free-form; Heat's stand-in was given a name).
    pub flavor: String,
}

/// The network every server's port is on, as `addresses` names it.
pub const NETWORK_NAME: &str = "private";

/// Who made a request, as Keystone said of its token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub project_id: String,
    pub trust_id: Option<String>,
}

/// One request the stand-in answered.
#[derive(Clone, Debug)]
pub struct Seen {
    pub method: String,
    /// Path and query, as sent.
    pub url: String,
    pub status: u16,
    /// `None`: no token, or one Keystone refused.
    pub caller: Option<Caller>,
}

#[derive(Default)]
struct State {
    servers: Vec<Server>,
    seen: Vec<Seen>,
    /// Tokens Keystone validated, so a client's every request does not cost a validation.
    callers: HashMap<String, Caller>,
}

/// The running stand-in.
pub struct Compute {
    port: u16,
    state: Arc<Mutex<State>>,
    _http: Loopback,
}

impl std::fmt::Debug for Compute {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compute").field("port", &self.port).finish_non_exhaustive()
    }
}

impl Compute {
    /// One stand-in for the whole test binary, in the catalog of [`Keystone::shared`].
    pub fn shared() -> Result<&'static Compute> {
        static SHARED: OnceLock<std::result::Result<Compute, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Compute::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    fn start() -> Result<Compute> {
        let keystone = Keystone::shared()?;
        let state = Arc::new(Mutex::new(State::default()));
        let http = {
            let state = Arc::clone(&state);
            Loopback::builder().name("compute stand-in").serve(move |request| answer(keystone, &state, request))?
        };
        let port = http.port();
        let base = format!("http://{STANDIN_GATEWAY}:{port}");
        // Under a path each, as devstack deploys them, so each has its own version document.
        keystone.register_service("compute", "nova", &format!("{base}/compute/v2.1"))?;
        keystone.register_service("network", "neutron", &format!("{base}/networking/"))?;
        keystone.register_service("load-balancer", "octavia", &format!("{base}/load-balancer"))?;
        Ok(Compute { port, state, _http: http })
    }

    /// The port it listens on at 127.0.0.1, which the catalog names at the hub's gateway: a test network
    /// must forward exactly this port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Makes `servers` exist.
    pub fn add(&self, servers: impl IntoIterator<Item = Server>) {
        lock(&self.state).servers.extend(servers);
    }

    /// The server with Nova's id `id`.
    pub fn server(&self, id: &str) -> Option<Server> {
        lock(&self.state).servers.iter().find(|s| s.id == id).cloned()
    }

    /// The requests of callers of `project_id`'s tokens so far.
    pub fn requests_of(&self, project_id: &str) -> Vec<Seen> {
        let state = lock(&self.state);
        state.seen.iter().filter(|s| s.caller.as_ref().is_some_and(|c| c.project_id == project_id)).cloned().collect()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|e| e.into_inner())
}

fn answer(keystone: &Keystone, state: &Mutex<State>, request: &Request) -> Reply {
    let (method, url) = (request.method.clone(), request.url.clone());
    let caller = request.header("X-Auth-Token").and_then(|token| caller_of(keystone, state, token));
    let (status, body) = match (versions(&url, request.header("Host")), &caller) {
        // Version documents answer anyone, as the real services' do (clients discover before they ask).
        (Some(document), _) => (200, document),
        (None, None) => (401, error("Unauthorized", 401, "The request you have made requires authentication.")),
        (None, Some(_)) if method != "GET" => (405, error("HTTPMethodNotAllowed", 405, "Method not allowed.")),
        (None, Some(caller)) => route(&lock(state).servers, caller, &url),
    };
    lock(state).seen.push(Seen { method, url, status, caller });
    Reply::json(status, &body)
}

fn caller_of(keystone: &Keystone, state: &Mutex<State>, token: &str) -> Option<Caller> {
    if let Some(known) = lock(state).callers.get(token) {
        return Some(known.clone());
    }
    let body = keystone.validate(token).ok()??;
    let token_body = &body["token"];
    let caller = Caller {
        user_id: token_body["user"]["id"].as_str()?.to_string(),
        project_id: token_body["project"]["id"].as_str()?.to_string(),
        trust_id: token_body["OS-TRUST:trust"]["id"].as_str().map(str::to_string),
    };
    lock(state).callers.insert(token.to_string(), caller.clone());
    Some(caller)
}

/// Neutron's and Octavia's version documents at their roots, Nova's at v2.1's: what gophercloud reads to
/// choose a version. Octavia is only that: the cloud-controller-manager's load-balancer controller makes
/// its client at start (and exits without one), but nothing here asks for a LoadBalancer Service.
fn versions(url: &str, host: Option<&str>) -> Option<Value> {
    let base = format!("http://{}", host.unwrap_or("localhost"));
    match url.trim_end_matches('/') {
        "/networking" => Some(json!({"versions": [{"id": "v2.0", "status": "CURRENT",
            "links": [link("self", format!("{base}/networking/v2.0/"))]}]})),
        "/load-balancer" => Some(json!({"versions": [
            {"id": "v2.0", "status": "SUPPORTED", "updated": "2016-12-11T00:00:00Z",
                "links": [link("self", format!("{base}/load-balancer/v2.0"))]},
            {"id": "v2.27", "status": "CURRENT", "updated": "2023-05-05T00:00:00Z",
                "links": [link("self", format!("{base}/load-balancer/v2"))]},
        ]})),
        "/compute/v2.1" => Some(json!({"version": {"id": "v2.1", "status": "CURRENT", "version": "2.96",
            "min_version": "2.1", "updated": "2013-07-23T11:33:21Z",
            "links": [link("self", format!("{base}/compute/v2.1/"))],
            "media-types": [{"base": "application/json", "type": "application/vnd.openstack.compute+json;version=2.1"}]}})),
        _ => None,
    }
}

fn error(title: &str, code: u16, message: &str) -> Value {
    json!({"error": {"code": code, "title": title, "message": message}})
}

fn not_found(what: &str) -> (u16, Value) {
    (404, json!({"itemNotFound": {"code": 404, "message": format!("{what} could not be found.")}}))
}

fn route(servers: &[Server], caller: &Caller, url: &str) -> (u16, Value) {
    let (path, query) = url.split_once('?').unwrap_or((url, ""));
    let query: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decoded(k), percent_decoded(v))
        })
        .collect();
    let param = |name: &str| query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    let visible = servers.iter().filter(|s| s.project_id == caller.project_id);
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["compute", "v2.1", "servers"] | ["compute", "v2.1", "servers", "detail"] => {
            let wanted = param("name").map(NamePattern::of);
            let list: Vec<Value> = visible
                .filter(|s| wanted.as_ref().is_none_or(|p| p.matches(&s.name)))
                .map(|s| if path.ends_with("/detail") { server_detail(s) } else { server_summary(s) })
                .collect();
            (200, json!({"servers": list}))
        }
        ["compute", "v2.1", "servers", id] => match visible.into_iter().find(|s| s.id == *id) {
            Some(server) => (200, json!({"server": server_detail(server)})),
            None => not_found(&format!("Instance {id}")),
        },
        ["compute", "v2.1", "flavors", id] => match servers.iter().find(|s| s.flavor == *id) {
            Some(_) => (200, json!({"flavor": flavor(id)})),
            None => not_found(&format!("Flavor {id}")),
        },
        ["networking", "v2.0", "extensions"] => (200, json!({"extensions": extensions()})),
        ["networking", "v2.0", "ports"] => {
            let device = param("device_id");
            let ports: Vec<Value> = visible.filter(|s| device.is_none_or(|d| d == s.id)).map(port).collect();
            (200, json!({"ports": ports}))
        }
        _ => not_found(&format!("Resource {path}")),
    }
}

/// Nova's `name` filter is a regular expression searched in the name; clients anchor it and quote the
/// name (gophercloud's callers: `^` + `regexp.QuoteMeta(name)` + `$`). Those two forms are what this
/// understands: an anchored literal matches exactly, anything else as a substring.
struct NamePattern {
    literal: String,
    anchored: bool,
}

impl NamePattern {
    fn of(pattern: &str) -> NamePattern {
        let anchored = pattern.starts_with('^') && pattern.ends_with('$') && pattern.len() >= 2;
        let inner = if anchored { &pattern[1..pattern.len() - 1] } else { pattern };
        let mut literal = String::new();
        let mut chars = inner.chars();
        while let Some(c) = chars.next() {
            literal.push(if c == '\\' { chars.next().unwrap_or('\\') } else { c });
        }
        NamePattern { literal, anchored }
    }

    fn matches(&self, name: &str) -> bool {
        if self.anchored {
            name == self.literal
        } else {
            name.contains(&self.literal)
        }
    }
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped =
            bytes.get(i + 1..i + 3).and_then(|hex| u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok());
        match (bytes[i], escaped) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
                continue;
            }
            (b'+', _) => out.push(b' '),
            (other, _) => out.push(other),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A UUID-shaped id derived from `seed`, so every answer about one thing names it the same way.
fn id_of(seed: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, seed.as_bytes());
    let hex: String = digest.as_ref()[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("{}-{}-{}-{}-{}", &hex[..8], &hex[8..12], &hex[12..16], &hex[16..20], &hex[20..32])
}

fn mac_of(address: Ipv4Addr) -> String {
    let [_, b, c, d] = address.octets();
    format!("fa:16:3e:{b:02x}:{c:02x}:{d:02x}")
}

/// When the stand-in's servers were made, as Nova writes times (`created`, `updated`).
const CREATED: &str = "2026-12-03T00:00:00Z";

fn link(rel: &str, href: String) -> Value {
    json!({"rel": rel, "href": href})
}

fn server_summary(s: &Server) -> Value {
    json!({"id": s.id, "name": s.name, "links": [link("self", format!("/compute/v2.1/servers/{}", s.id))]})
}

fn server_detail(s: &Server) -> Value {
    json!({
        "id": s.id,
        "name": s.name,
        "status": "ACTIVE",
        "tenant_id": s.project_id,
        "user_id": id_of(&format!("user {}", s.project_id)).replace('-', ""),
        "metadata": {},
        "hostId": id_of(&format!("host {}", s.id)).replace('-', ""),
        "image": {"id": id_of("image"), "links": [link("bookmark", format!("/images/{}", id_of("image")))]},
        "flavor": {"id": s.flavor, "links": [link("bookmark", format!("/flavors/{}", s.flavor))]},
        "created": CREATED,
        "updated": CREATED,
        "addresses": {NETWORK_NAME: [{
            "version": 4,
            "addr": s.address.to_string(),
            "OS-EXT-IPS:type": "fixed",
            "OS-EXT-IPS-MAC:mac_addr": mac_of(s.address),
        }]},
        "accessIPv4": "",
        "accessIPv6": "",
        "links": [link("self", format!("/compute/v2.1/servers/{}", s.id))],
        "OS-DCF:diskConfig": "MANUAL",
        "progress": 0,
        "OS-EXT-AZ:availability_zone": "nova",
        "config_drive": "",
        "key_name": null,
        "OS-EXT-STS:task_state": null,
        "OS-EXT-STS:vm_state": "active",
        "OS-EXT-STS:power_state": 1,
        "os-extended-volumes:volumes_attached": [],
        "security_groups": [{"name": "default"}],
    })
}

fn flavor(id: &str) -> Value {
    json!({
        "id": id,
        "name": id,
        "ram": 4096,
        "vcpus": 2,
        "disk": 40,
        "OS-FLV-EXT-DATA:ephemeral": 0,
        "OS-FLV-DISABLED:disabled": false,
        "swap": "",
        "rxtx_factor": 1.0,
        "os-flavor-access:is_public": true,
        "links": [link("self", format!("/compute/v2.1/flavors/{id}"))],
    })
}

/// Neutron's extensions of an ML2/OVS deployment, those the cloud-controller-manager looks for among
/// them (without a `router-id` in the cloud config, it then declines routes, as on a real cloud).
fn extensions() -> Vec<Value> {
    [
        ("allowed-address-pairs", "Allowed Address Pairs"),
        ("binding", "Port Binding"),
        ("extraroute", "Neutron Extra Route"),
        ("port-security", "Port Security"),
        ("router", "Neutron L3 Router"),
        ("security-group", "security-group"),
    ]
    .iter()
    .map(|(alias, name)| {
        json!({"alias": alias, "name": name, "description": name, "updated": "2013-02-01T10:00:00-00:00", "links": []})
    })
    .collect()
}

fn port(s: &Server) -> Value {
    let network = id_of(&format!("network {}", s.project_id));
    json!({
        "id": id_of(&format!("port {}", s.id)),
        "name": "",
        "network_id": network,
        "tenant_id": s.project_id,
        "project_id": s.project_id,
        "mac_address": mac_of(s.address),
        "admin_state_up": true,
        "status": "ACTIVE",
        "device_id": s.id,
        "device_owner": "compute:nova",
        "fixed_ips": [{"subnet_id": id_of(&format!("subnet {}", s.project_id)), "ip_address": s.address.to_string()}],
        "allowed_address_pairs": [],
        "extra_dhcp_opts": [],
        "security_groups": [id_of(&format!("security group {}", s.project_id))],
        "binding:vnic_type": "normal",
        "port_security_enabled": true,
        "description": "",
        "tags": [],
        "created_at": CREATED,
        "updated_at": CREATED,
        "revision_number": 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_nova_filters_them_for_anchored_quoted_patterns() {
        let exact = NamePattern::of(r"^demo\.minion-0$");
        assert!(exact.matches("demo.minion-0") && !exact.matches("demo.minion-01"));
        assert!(NamePattern::of("minion").matches("demo-minion-0"));
        assert_eq!(percent_decoded("%5Edemo-minion-0%24"), "^demo-minion-0$");
        assert_eq!(percent_decoded("a%2"), "a%2");
    }
}
