//! The etcd of this master, for the network-config and health steps.
//!
//! **Where.** The first client URL etcd advertises in `/etc/etcd/etcd.conf` (`ETCD_ADVERTISE_CLIENT_URLS`,
//! written by the etcd step), the first `https://` one when TLS is on. Magnum's layout advertises
//! `https://<node ip>:2379` and a plain `http://127.0.0.1:2379`; the TLS one is used, so the loopback
//! listener is not needed. Without that file: `https://<node ip>:2379` (TLS) or `http://127.0.0.1:2379`.
//! Every request is a request to the node's own service ([`Destination::NodeService`](crate::http::Destination::NodeService)): a dry run or a
//! rooted run records it and sends nothing.
//!
//! **As whom.** `/etc/etcd/certs/{ca.crt,server.crt,server.key}`: the certs step's server certificate,
//! which has `clientAuth` and the node's IP and 127.0.0.1 among its names. etcd with
//! `ETCD_CLIENT_CERT_AUTH=true` accepts any certificate of the cluster CA.
//!
//! **APIs.** `GET /version`, `GET /health`; the v3 JSON gateway (`POST <prefix>/kv/range` and `/kv/put`,
//! keys and values in base64) under `/v3alpha` (etcd 3.2), `/v3beta` (3.3) or `/v3` (3.4 and later),
//! chosen from `/version`; the v2 keys API (`/v2/keys/<key>`, form-encoded `value=`), which etcd 3.4 and
//! later serve only with `ETCD_ENABLE_V2=true`. v2 and v3 are separate key spaces in one etcd.
//!
//! Writes compare first: a key that already holds the value is left alone (values that are JSON compare
//! as JSON, so formatting is not a change), and the step records it as unchanged.

use crate::config::{NodeConfig, Secret};
use crate::host::{Host, Outcome};
use crate::http::{ClientIdentity, Request, Response};
use crate::paths::{ETCD_CERTS, ETCD_CONF};
use crate::probe::{self, Budget, Verdict};
use anyhow::{anyhow, bail, Context as _, Result};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use std::path::Path;

/// etcd's client port when its configuration does not say.
pub const CLIENT_PORT: u16 = 2379;

/// The etcd of this master.
#[derive(Debug)]
pub struct Etcd<'h> {
    host: &'h Host,
    base: String,
    identity: Option<ClientIdentity>,
}

/// Which key API a value is written through.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyApi {
    V2,
    V3,
}

impl<'h> Etcd<'h> {
    /// This master's etcd, as the module documentation says.
    pub fn for_node(config: &NodeConfig, host: &'h Host) -> Result<Etcd<'h>> {
        let tls = !config.cluster.tls_disabled;
        let advertised = host.read_to_string(Path::new(ETCD_CONF))?.and_then(|text| {
            shell_assignment(&text, "ETCD_ADVERTISE_CLIENT_URLS")
                .or_else(|| shell_assignment(&text, "ETCD_LISTEN_CLIENT_URLS"))
        });
        let base = match advertised {
            Some(urls) => {
                let urls: Vec<&str> = urls.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
                let chosen = if tls { urls.iter().find(|u| u.starts_with("https://")) } else { urls.first() };
                chosen
                    .with_context(|| {
                        format!(
                            "{ETCD_CONF} advertises no {}client URL of etcd ({})",
                            if tls { "https:// " } else { "" },
                            urls.join(",")
                        )
                    })?
                    .trim_end_matches('/')
                    .to_string()
            }
            None if tls => {
                let ip = config.node.ip.context("node.ip (KUBE_NODE_IP) is not set: etcd is reached on it")?;
                let host = if ip.is_ipv6() { format!("[{ip}]") } else { ip.to_string() };
                format!("https://{host}:{CLIENT_PORT}")
            }
            None => format!("http://127.0.0.1:{CLIENT_PORT}"),
        };
        let identity = if base.starts_with("https://") {
            let read = |name: &str| -> Result<String> {
                Ok(host.read_to_string(&Path::new(ETCD_CERTS).join(name))?.unwrap_or_default())
            };
            Some(ClientIdentity {
                source: format!("{ETCD_CERTS}/{{ca.crt,server.crt,server.key}}"),
                ca_pem: read("ca.crt")?,
                cert_pem: read("server.crt")?,
                key_pem: Secret::new(read("server.key")?),
            })
        } else {
            None
        };
        Ok(Etcd { host, base, identity })
    }

    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: &str, path: &str) -> Request {
        Request::node_service(method, &self.base, path, self.identity.as_ref())
    }

    fn service(&self) -> String {
        format!("etcd at {}", self.base)
    }

    /// Waits within `budget` for `/health` to say `true`. `false`: nothing was sent (dry run, rooted).
    pub fn wait_healthy(&self, budget: &Budget) -> Result<bool> {
        let healthy = |response: &Response| {
            let health = response.json::<Value>().ok().map(|body| body["health"].clone());
            match (response.status, health) {
                (200, Some(Value::String(h))) if h == "true" => Verdict::Healthy,
                (200, Some(Value::Bool(true))) => Verdict::Healthy,
                (200, _) => Verdict::not_yet(response),
                _ => Verdict::Broken(probe::status_line(response)),
            }
        };
        let probe = self.request("GET", "/health");
        Ok(probe::wait_until(self.host, &probe, &self.service(), "waiting for etcd /health", budget, healthy)?
            .is_some())
    }

    /// The server's version (`3.4.23`); `None` when nothing was sent.
    pub fn version(&self) -> Result<Option<(u64, u64, u64)>> {
        let Some(answer) = self.host.http(&self.request("GET", "/version"), "reading etcd's version")? else {
            return Ok(None);
        };
        let answer = answer.error_for_status("reading etcd's version")?;
        let body: Value = answer.json().context("etcd's /version is not JSON")?;
        let text = body["etcdserver"].as_str().unwrap_or_default();
        crate::version::parse(text).map(Some).with_context(|| format!("etcd's /version has no server version: {body}"))
    }

    /// Makes `key` hold `value` through `api`, and records what it took.
    pub fn ensure(&self, api: KeyApi, key: &str, value: &str) -> Result<Outcome> {
        if key.is_empty()
            || !key.starts_with('/')
            || !key.chars().all(|c| c.is_ascii_alphanumeric() || "._-/".contains(c))
        {
            bail!("{key:?} is not an etcd key Hearth writes");
        }
        let target = format!(
            "etcd {} key {key}",
            match api {
                KeyApi::V2 => "v2",
                KeyApi::V3 => "v3",
            }
        );
        let outcome = match api {
            KeyApi::V2 => self.ensure_v2(key, value),
            KeyApi::V3 => self.ensure_v3(key, value),
        }
        .with_context(|| format!("writing {target} at {}", self.base))?;
        let detail = match outcome {
            Outcome::Unchanged => "holds the value",
            Outcome::NotRun => return Ok(outcome),
            _ => "written",
        };
        self.host.record_remote(target, detail.into(), outcome);
        Ok(outcome)
    }

    fn ensure_v3(&self, key: &str, value: &str) -> Result<Outcome> {
        let Some(version) = self.version()? else { return self.put_v3("/v3", key, value) };
        let prefix = v3_prefix(version)?;
        let range = self.request("POST", &format!("{prefix}/kv/range")).json_body(&json!({"key": BASE64.encode(key)}));
        let Some(answer) = self.host.http(&range, &format!("reading v3 key {key}"))? else {
            return self.put_v3(prefix, key, value);
        };
        let answer = answer.error_for_status(&format!("reading v3 key {key}"))?;
        let body: Value = answer.json().context("etcd's range answer is not JSON")?;
        let current = match body["kvs"].get(0) {
            None => None,
            Some(kv) => Some(
                kv["value"]
                    .as_str()
                    .and_then(|v| BASE64.decode(v).ok())
                    .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                    .ok_or_else(|| anyhow!("etcd's range answer has no base64 value for {key}"))?,
            ),
        };
        if current.is_some_and(|current| same_value(&current, value)) {
            return Ok(Outcome::Unchanged);
        }
        self.put_v3(prefix, key, value)
    }

    fn put_v3(&self, prefix: &str, key: &str, value: &str) -> Result<Outcome> {
        let put = self
            .request("POST", &format!("{prefix}/kv/put"))
            .json_body(&json!({"key": BASE64.encode(key), "value": BASE64.encode(value)}));
        match self.host.http(&put, &format!("writing v3 key {key}"))? {
            None => Ok(Outcome::NotRun),
            Some(answer) => {
                answer.error_for_status(&format!("writing v3 key {key}"))?;
                Ok(Outcome::Changed)
            }
        }
    }

    fn ensure_v2(&self, key: &str, value: &str) -> Result<Outcome> {
        let path = format!("/v2/keys{key}");
        if let Some(answer) = self.host.http(&self.request("GET", &path), &format!("reading v2 key {key}"))? {
            let body: Option<Value> = answer.json().ok();
            match (answer.status, body) {
                (200, Some(body)) => {
                    if body["node"]["value"].as_str().is_some_and(|current| same_value(current, value)) {
                        return Ok(Outcome::Unchanged);
                    }
                }
                // etcd's "Key not found" (errorCode 100); a plain 404 page means the v2 API is off.
                (404, Some(body)) if body["errorCode"] == json!(100) => {}
                (404, _) => bail!(
                    "etcd does not serve the v2 API (GET {path} answered {}); etcd 3.4 and later need \
                     ETCD_ENABLE_V2=true for flannel before v0.18",
                    probe::status_line(&answer)
                ),
                _ => return Err(anyhow!("GET {path} answered {}", probe::status_line(&answer))),
            }
        }
        let put = self
            .request("PUT", &path)
            .body(format!("value={}", form_encode(value)), "application/x-www-form-urlencoded")
            .header("Accept", "application/json");
        match self.host.http(&put, &format!("writing v2 key {key}"))? {
            None => Ok(Outcome::NotRun),
            Some(answer) => {
                answer.error_for_status(&format!("writing v2 key {key}"))?;
                Ok(Outcome::Changed)
            }
        }
    }
}

/// Where etcd `version` serves its v3 JSON gateway: etcd 3.5 dropped `/v3beta`, 3.4 `/v3alpha`.
pub fn v3_prefix(version: (u64, u64, u64)) -> Result<&'static str> {
    Ok(match version {
        (3, 2, _) => "/v3alpha",
        (3, 3, _) => "/v3beta",
        (major, minor, _) if (major, minor) >= (3, 4) => "/v3",
        (major, minor, patch) => bail!("etcd {major}.{minor}.{patch} has no v3 JSON gateway"),
    })
}

/// The value of `name` in a file of shell assignments (`NAME="value"`, `NAME='value'`, `NAME=value`); the
/// last assignment wins, as when the file is sourced.
pub fn shell_assignment(text: &str, name: &str) -> Option<String> {
    text.lines()
        .rev()
        .filter_map(|line| {
            let line = line.trim();
            let (key, value) = line.strip_prefix("export ").unwrap_or(line).split_once('=')?;
            (key.trim() == name).then(|| {
                let value = value.trim();
                let unquoted = ['"', '\''].iter().find_map(|q| value.strip_prefix(*q)?.strip_suffix(*q));
                unquoted.unwrap_or(value).to_string()
            })
        })
        .next()
}

/// Equal as JSON when both are JSON, else as text.
fn same_value(current: &str, wanted: &str) -> bool {
    match (serde_json::from_str::<Value>(current), serde_json::from_str::<Value>(wanted)) {
        (Ok(current), Ok(wanted)) => current == wanted,
        _ => current == wanted,
    }
}

/// `application/x-www-form-urlencoded` for one value: unreserved characters as they are, the rest as
/// `%XX` bytes.
fn form_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::host::Mode;

    #[test]
    fn shell_assignments_as_etcd_conf_holds_them() {
        let text = "# etcd\nETCD_NAME=\"10.0.0.4\"\nETCD_ADVERTISE_CLIENT_URLS=\"https://10.0.0.4:2379,http://127.0.0.1:2379\"\n\
                    export ETCD_X='a b'\nETCD_Y=plain\nETCD_Y=later\n";
        assert_eq!(
            shell_assignment(text, "ETCD_ADVERTISE_CLIENT_URLS").as_deref(),
            Some("https://10.0.0.4:2379,http://127.0.0.1:2379")
        );
        assert_eq!(shell_assignment(text, "ETCD_X").as_deref(), Some("a b"));
        assert_eq!(shell_assignment(text, "ETCD_Y").as_deref(), Some("later"));
        assert_eq!(shell_assignment(text, "ETCD_NONE"), None);
    }

    fn etcd_for(conf: Option<&str>, tls: bool) -> Result<String> {
        let dir = tempfile::tempdir().unwrap();
        if let Some(conf) = conf {
            std::fs::create_dir_all(dir.path().join("etc/etcd")).unwrap();
            std::fs::write(dir.path().join("etc/etcd/etcd.conf"), conf).unwrap();
        }
        let host = Host::new(Mode::DryRun { root: dir.path().to_path_buf() });
        let mut config = NodeConfig::new(Role::Master);
        config.cluster.tls_disabled = !tls;
        config.node.ip = Some("10.0.0.4".parse().unwrap());
        Etcd::for_node(&config, &host).map(|e| e.base_url().to_string())
    }

    #[test]
    fn the_client_url_comes_from_etcds_configuration() {
        let magnum = "ETCD_ADVERTISE_CLIENT_URLS=\"http://127.0.0.1:2379,https://10.0.0.4:2379\"\n";
        assert_eq!(etcd_for(Some(magnum), true).unwrap(), "https://10.0.0.4:2379");
        assert_eq!(etcd_for(Some(magnum), false).unwrap(), "http://127.0.0.1:2379");
        assert_eq!(etcd_for(None, true).unwrap(), "https://10.0.0.4:2379");
        assert_eq!(etcd_for(None, false).unwrap(), "http://127.0.0.1:2379");
        let plain = "ETCD_LISTEN_CLIENT_URLS=\"http://10.0.0.4:2379\"\n";
        let err = etcd_for(Some(plain), true).unwrap_err().to_string();
        assert!(err.contains("advertises no https:// client URL") && err.contains("http://10.0.0.4:2379"), "{err}");
    }

    #[test]
    fn a_dry_run_records_what_it_would_write() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(Mode::DryRun { root: dir.path().to_path_buf() });
        let mut config = NodeConfig::new(Role::Master);
        config.node.ip = Some("10.0.0.4".parse().unwrap());
        let etcd = Etcd::for_node(&config, &host).unwrap();
        assert_eq!(etcd.ensure(KeyApi::V3, "/atomic.io/network/config", "{}").unwrap(), Outcome::NotRun);
        assert_eq!(etcd.ensure(KeyApi::V2, "/atomic.io/network/config", "{}").unwrap(), Outcome::NotRun);
        let shown: Vec<String> =
            host.take_actions().into_iter().map(|a| format!("{} {}", a.target, a.detail)).collect();
        assert_eq!(
            shown,
            [
                "GET https://10.0.0.4:2379/version reading etcd's version",
                "POST https://10.0.0.4:2379/v3/kv/put writing v3 key /atomic.io/network/config",
                "GET https://10.0.0.4:2379/v2/keys/atomic.io/network/config reading v2 key /atomic.io/network/config",
                "PUT https://10.0.0.4:2379/v2/keys/atomic.io/network/config writing v2 key /atomic.io/network/config",
            ]
        );
        assert!(etcd.ensure(KeyApi::V2, "/a/../b?x", "{}").is_err());
    }

    #[test]
    fn the_v3_gateway_prefix_follows_the_etcd_version() {
        assert_eq!(v3_prefix((3, 2, 7)).unwrap(), "/v3alpha", "Magnum's default etcd tag v3.2.7");
        assert_eq!(v3_prefix((3, 3, 25)).unwrap(), "/v3beta");
        assert_eq!(v3_prefix((3, 4, 23)).unwrap(), "/v3", "Debian bookworm's etcd");
        assert_eq!(v3_prefix((3, 5, 0)).unwrap(), "/v3");
        assert!(v3_prefix((3, 1, 0)).unwrap_err().to_string().contains("no v3 JSON gateway"));
    }

    #[test]
    fn values_compare_as_json_and_encode_as_forms() {
        assert!(same_value(
            r#"{"Network": "10.100.0.0/16", "Subnetlen": 24}"#,
            r#"{"Subnetlen":24,"Network":"10.100.0.0/16"}"#
        ));
        assert!(!same_value(r#"{"Subnetlen": 24}"#, r#"{"Subnetlen": 25}"#));
        assert!(same_value("plain", "plain") && !same_value("plain", "other"));
        assert_eq!(form_encode(r#"{"a": "b/c"}"#), "%7B%22a%22%3A%20%22b%2Fc%22%7D");
    }
}
