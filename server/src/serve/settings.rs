//! What `hearth-server serve` is configured with: a settings file (YAML, or JSON which is YAML too) and
//! command-line flags over it. Defaults live here and nowhere else.
//!
//! ```yaml
//! listen: 127.0.0.1:9511
//! state_dir: /var/lib/hearth-server
//! public_url: https://hearth.example.org:9511   # base of the `links` hrefs; default http://<Host header>
//! workers: 32
//! keystone:
//!   url: https://keystone.example.org:5000/v3  # with or without the trailing /v3
//!   verify_tls: true
//!   ca_file: /etc/hearth/keystone-ca.pem         # extra CA for Keystone's certificate
//!   admin_role: admin
//!   token_cache_seconds: 60
//!   service_user:                                # validates callers' tokens; needs Keystone's
//!     name: hearth                               #   `service` role (or a system reader role)
//!     domain: Default
//!     password_file: /etc/hearth/service-password  # or `password:`, or $HEARTH_SERVICE_PASSWORD
//!     project: service                           # project scope; omit for a system-scoped token
//!     project_domain: Default
//! signing:
//!   validity_days: 1825
//!   ca_validity_days: 3650
//! connections:
//!   max: 1024                    # open at once; more wait in the listen backlog until one closes
//!   header_timeout_seconds: 10   # from a request's first byte to the end of its headers
//!   idle_timeout_seconds: 60     # a kept-alive connection with nothing to read or write is closed
//!   body_timeout_seconds: 30     # reading a request body, once its headers are in
//!   shutdown_timeout_seconds: 20 # on SIGTERM/SIGINT, how long in-flight requests may take to finish
//! ```

use anyhow::{bail, Context as _, Result};
use hearth_fragments::config::secret::Secret;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the service password comes from when neither the file nor a flag gives it, so it need not sit
/// on a command line (which every local user can read in /proc).
pub const PASSWORD_ENV: &str = "HEARTH_SERVICE_PASSWORD";

/// Magnum's `[x509] term_of_validity`: five years.
pub const DEFAULT_VALIDITY_DAYS: u32 = 1825;
/// Twice a leaf's default life, so a certificate issued late in the CA's life is not cut short soon
/// (leaves never outlive their CA: see [`super::ca`]). Magnum gave its CA the same five years as a leaf.
pub const DEFAULT_CA_VALIDITY_DAYS: u32 = 3650;
/// How long a validated token is trusted without asking Keystone again (bounded by the token's own
/// expiry). keystonemiddleware's default is 300 s; a shorter cache notices a revoked token sooner and still
/// spares Keystone when a whole cluster's nodes ask at once.
pub const DEFAULT_TOKEN_CACHE_SECONDS: u64 = 60;
/// Threads for requests' blocking work (Keystone validation of an uncached token, the cluster's files,
/// CSR verification and signing); connections themselves cost no thread. Each may wait on Keystone, so
/// there are more than cores; signing itself (one ECDSA signature) takes well under a millisecond.
pub const DEFAULT_WORKERS: usize = 32;
pub const DEFAULT_ADMIN_ROLE: &str = "admin";
/// Open connections: a whole cluster's nodes booting at once, each with one kept-alive connection, fit
/// with room to spare; a connection costs a task and a few KiB, not a thread.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The upper bound of `connections.max` (each connection is a file descriptor).
pub const MAX_MAX_CONNECTIONS: usize = 1_000_000;
/// A node sends its headers in one packet; ten seconds is generous and still stops a slow-header client.
pub const DEFAULT_HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Nodes make their few requests in a row; a connection quiet for a minute is not coming back soon.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Bodies are a few KiB (at most 64 KiB): thirty seconds is slow links' worth.
pub const DEFAULT_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// Shorter than systemd's default stop timeout (90 s) and longer than a Keystone validation may take
/// (its retry deadline is 5 s).
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// Everything `serve` needs, validated.
#[derive(Clone, Debug)]
pub struct Settings {
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// Base URL for the `links` of responses (`{public_url}/v1/certificates/…`); `None`: `http://` plus
    /// the request's `Host` header, which is what Magnum (pecan's `host_url`) does.
    pub public_url: Option<String>,
    pub workers: usize,
    pub keystone: KeystoneSettings,
    pub signing: SigningSettings,
    /// The `hearth-agent` binary served at [`super::AGENT_PATH`] for the nodes' bootstrap to download.
    pub agent_file: Option<PathBuf>,
    pub connections: ConnectionSettings,
}

/// What one client may hold: how many connections are open at once, and for how long each may
/// stay quiet in each phase of a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionSettings {
    /// Open connections at most; the next one is accepted when one closes (until then it waits in
    /// the kernel's listen backlog, [`super::connections::LISTEN_BACKLOG`] deep).
    pub max: usize,
    /// From the first byte of a request to the end of its headers.
    pub header_timeout: Duration,
    /// A connection with no request in flight and nothing read or written for this long is closed
    /// (kept-alive connections between requests, and connections that never send anything).
    pub idle_timeout: Duration,
    /// Reading a request's body, once its headers are in (408 after).
    pub body_timeout: Duration,
    /// On SIGTERM or SIGINT: how long in-flight requests may take to finish before serve exits anyway.
    pub shutdown_timeout: Duration,
}

impl Default for ConnectionSettings {
    fn default() -> Self {
        ConnectionSettings {
            max: DEFAULT_MAX_CONNECTIONS,
            header_timeout: DEFAULT_HEADER_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            body_timeout: DEFAULT_BODY_TIMEOUT,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

#[derive(Clone, Debug)]
pub struct KeystoneSettings {
    /// The identity v3 endpoint, always ending in `/v3` (no trailing slash).
    pub url: String,
    pub verify_tls: bool,
    /// Extra trusted CAs (PEM) for Keystone's certificate.
    pub ca_pem: String,
    pub admin_role: String,
    pub token_cache: Duration,
    pub service_user: ServiceUser,
}

/// The server's own Keystone identity, used only to validate callers' tokens.
#[derive(Clone, Debug)]
pub struct ServiceUser {
    pub user: UserRef,
    pub password: Secret,
    /// `None`: a system-scoped token (`"system": {"all": true}`).
    pub project: Option<ProjectRef>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UserRef {
    Id(String),
    Name { name: String, domain: String },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProjectRef {
    Id(String),
    Name { name: String, domain: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SigningSettings {
    pub validity_days: u32,
    pub ca_validity_days: u32,
}

impl Default for SigningSettings {
    fn default() -> Self {
        SigningSettings { validity_days: DEFAULT_VALIDITY_DAYS, ca_validity_days: DEFAULT_CA_VALIDITY_DAYS }
    }
}

/// The settings file as written; every field optional so flags can fill the gaps.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsFile {
    pub listen: Option<String>,
    pub state_dir: Option<PathBuf>,
    pub public_url: Option<String>,
    pub workers: Option<usize>,
    pub agent_file: Option<PathBuf>,
    #[serde(default)]
    pub keystone: KeystoneFile,
    #[serde(default)]
    pub signing: SigningFile,
    #[serde(default)]
    pub connections: ConnectionsFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeystoneFile {
    pub url: Option<String>,
    pub verify_tls: Option<bool>,
    pub ca_file: Option<PathBuf>,
    pub admin_role: Option<String>,
    pub token_cache_seconds: Option<u64>,
    #[serde(default)]
    pub service_user: ServiceUserFile,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceUserFile {
    pub id: Option<String>,
    pub name: Option<String>,
    pub domain: Option<String>,
    pub password: Option<Secret>,
    pub password_file: Option<PathBuf>,
    pub project: Option<String>,
    pub project_id: Option<String>,
    pub project_domain: Option<String>,
}

// Hand-written so the password never reaches a log.
impl std::fmt::Debug for ServiceUserFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceUserFile")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("domain", &self.domain)
            .field("password", &self.password.as_ref().map(Secret::masked))
            .field("password_file", &self.password_file)
            .field("project", &self.project)
            .field("project_id", &self.project_id)
            .field("project_domain", &self.project_domain)
            .finish()
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigningFile {
    pub validity_days: Option<u32>,
    pub ca_validity_days: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConnectionsFile {
    pub max: Option<usize>,
    pub header_timeout_seconds: Option<u64>,
    pub idle_timeout_seconds: Option<u64>,
    pub body_timeout_seconds: Option<u64>,
    pub shutdown_timeout_seconds: Option<u64>,
}

impl ConnectionsFile {
    fn resolve(&self) -> Result<ConnectionSettings> {
        let defaults = ConnectionSettings::default();
        let max = self.max.unwrap_or(defaults.max);
        if !(1..=MAX_MAX_CONNECTIONS).contains(&max) {
            bail!("connections.max must be from 1 to {MAX_MAX_CONNECTIONS}, not {max}");
        }
        let seconds = |field: &str, value: Option<u64>, default: Duration| match value {
            None => Ok(default),
            // Zero would close every connection at once; a day is longer than any node waits.
            Some(value @ 1..=86_400) => Ok(Duration::from_secs(value)),
            Some(value) => bail!("connections.{field} must be from 1 to 86400 seconds, not {value}"),
        };
        Ok(ConnectionSettings {
            max,
            header_timeout: seconds("header_timeout_seconds", self.header_timeout_seconds, defaults.header_timeout)?,
            idle_timeout: seconds("idle_timeout_seconds", self.idle_timeout_seconds, defaults.idle_timeout)?,
            body_timeout: seconds("body_timeout_seconds", self.body_timeout_seconds, defaults.body_timeout)?,
            shutdown_timeout: seconds(
                "shutdown_timeout_seconds",
                self.shutdown_timeout_seconds,
                defaults.shutdown_timeout,
            )?,
        })
    }
}

impl SettingsFile {
    pub fn load(path: &Path) -> Result<SettingsFile> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_yaml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Checks and completes the settings; `password_env` is the value of [`PASSWORD_ENV`], if set.
    pub fn resolve(self, password_env: Option<String>) -> Result<Settings> {
        let listen = self.listen.context("no listen address: give --listen or `listen:` in the settings file")?;
        let listen: SocketAddr = listen.parse().with_context(|| format!("listen address {listen:?} is not IP:PORT"))?;
        let state_dir = self.state_dir.context("no state directory: give --state or `state_dir:`")?;
        let public_url = match self.public_url {
            Some(url) if !(url.starts_with("http://") || url.starts_with("https://")) => {
                bail!("public_url {url:?} must start with http:// or https://")
            }
            other => other.map(|url| url.trim_end_matches('/').to_string()),
        };
        let workers = self.workers.unwrap_or(DEFAULT_WORKERS);
        if workers == 0 {
            bail!("workers must be at least 1");
        }
        let signing = SigningSettings {
            validity_days: self.signing.validity_days.unwrap_or(DEFAULT_VALIDITY_DAYS),
            ca_validity_days: self.signing.ca_validity_days.unwrap_or(DEFAULT_CA_VALIDITY_DAYS),
        };
        if signing.validity_days == 0 || signing.ca_validity_days == 0 {
            bail!("validity_days and ca_validity_days must be at least 1");
        }
        let connections = self.connections.resolve()?;
        let keystone = self.keystone.resolve(password_env)?;
        Ok(Settings {
            listen,
            state_dir,
            public_url,
            workers,
            keystone,
            signing,
            agent_file: self.agent_file,
            connections,
        })
    }
}

impl KeystoneFile {
    fn resolve(self, password_env: Option<String>) -> Result<KeystoneSettings> {
        let url = self.url.context("no Keystone URL: give --keystone-url or `keystone: url:`")?;
        let url = identity_v3_url(&url)?;
        let ca_pem = match &self.ca_file {
            Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
            None => String::new(),
        };
        let admin_role = self.admin_role.unwrap_or_else(|| DEFAULT_ADMIN_ROLE.to_string());
        if admin_role.trim().is_empty() {
            bail!("admin_role must not be empty");
        }
        Ok(KeystoneSettings {
            url,
            verify_tls: self.verify_tls.unwrap_or(true),
            ca_pem,
            admin_role,
            token_cache: Duration::from_secs(self.token_cache_seconds.unwrap_or(DEFAULT_TOKEN_CACHE_SECONDS)),
            service_user: self.service_user.resolve(password_env)?,
        })
    }
}

impl ServiceUserFile {
    fn resolve(self, password_env: Option<String>) -> Result<ServiceUser> {
        let default_domain = || "Default".to_string();
        let user = match (self.id, self.name) {
            (Some(_), Some(_)) => bail!("service_user: give id or name, not both"),
            (Some(id), None) => UserRef::Id(id),
            (None, Some(name)) => UserRef::Name { name, domain: self.domain.unwrap_or_else(default_domain) },
            (None, None) => bail!("no service user: give --service-user(-id) or `keystone: service_user:`"),
        };
        let project = match (self.project_id, self.project) {
            (Some(_), Some(_)) => bail!("service_user: give project or project_id, not both"),
            (Some(id), None) => Some(ProjectRef::Id(id)),
            (None, Some(name)) => {
                Some(ProjectRef::Name { name, domain: self.project_domain.unwrap_or_else(default_domain) })
            }
            (None, None) => None,
        };
        let password = match (self.password, self.password_file) {
            (Some(_), Some(_)) => bail!("service_user: give password or password_file, not both"),
            (Some(password), None) => password,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
                // A file written by `echo` ends in a newline that is not part of the password.
                Secret::new(text.trim_end_matches(['\n', '\r']))
            }
            (None, None) => match password_env {
                Some(value) => Secret::new(value),
                None => bail!("no service password: give --service-password-file, `password_file:` or ${PASSWORD_ENV}"),
            },
        };
        if password.is_empty() {
            bail!("the service password is empty");
        }
        Ok(ServiceUser { user, password, project })
    }
}

/// `https://host:5000`, `…/v3` and `…/v3/` all name the same identity v3 API; callers' `auth_url`
/// (Magnum's AUTH_URL) conventionally ends in `/v3`.
pub fn identity_v3_url(url: &str) -> Result<String> {
    let url = url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("Keystone URL {url:?} must start with http:// or https://");
    }
    let base = url.trim_end_matches('/');
    Ok(if base.ends_with("/v3") { base.to_string() } else { format!("{base}/v3") })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(yaml: &str) -> SettingsFile {
        serde_yaml::from_str(yaml).unwrap()
    }

    const MINIMAL: &str = "listen: 127.0.0.1:9511\nstate_dir: /tmp/x\nkeystone:\n  url: http://127.0.0.1:5000\n  \
                           service_user: {name: hearth, password: pw, project: service}\n";

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let s = file(MINIMAL).resolve(None).unwrap();
        assert_eq!(s.listen, "127.0.0.1:9511".parse().unwrap());
        assert_eq!(s.keystone.url, "http://127.0.0.1:5000/v3");
        assert_eq!(s.keystone.admin_role, "admin");
        assert_eq!(s.keystone.token_cache, Duration::from_secs(60));
        assert!(s.keystone.verify_tls);
        assert_eq!(s.signing, SigningSettings { validity_days: 1825, ca_validity_days: 3650 });
        assert_eq!(s.workers, DEFAULT_WORKERS);
        assert_eq!(s.connections, ConnectionSettings::default());
        assert_eq!(s.connections.max, 1024);
        assert_eq!(s.connections.idle_timeout, Duration::from_secs(60));
        assert_eq!(s.keystone.service_user.user, UserRef::Name { name: "hearth".into(), domain: "Default".into() });
        assert_eq!(
            s.keystone.service_user.project,
            Some(ProjectRef::Name { name: "service".into(), domain: "Default".into() })
        );
        assert!(!format!("{s:?}").contains("pw\""), "the password is masked in Debug: {s:?}");
    }

    #[test]
    fn keystone_urls_are_normalised_to_v3() {
        for url in ["http://k:5000", "http://k:5000/", "http://k:5000/v3", "http://k:5000/v3/"] {
            assert_eq!(identity_v3_url(url).unwrap(), "http://k:5000/v3", "{url}");
        }
        assert_eq!(identity_v3_url("https://k/identity").unwrap(), "https://k/identity/v3");
        assert!(identity_v3_url("k:5000").is_err());
    }

    #[test]
    fn bad_settings_are_refused_with_the_field() {
        let err = |yaml: &str, env: Option<&str>| {
            file(yaml).resolve(env.map(str::to_string)).map(|_| ()).unwrap_err().to_string()
        };
        let no_password = MINIMAL.replace("password: pw, ", "");
        assert!(err(&no_password, None).contains(PASSWORD_ENV));
        assert_eq!(
            file(&no_password).resolve(Some("from-env".into())).unwrap().keystone.service_user.password.expose(),
            "from-env"
        );
        assert!(err(&MINIMAL.replace("name: hearth", "name: hearth, id: abc"), None).contains("not both"));
        assert!(err(&MINIMAL.replace("127.0.0.1:9511", "localhost"), None).contains("IP:PORT"));
        assert!(serde_yaml::from_str::<SettingsFile>("listen: x\nlisten_typo: y\n").is_err());
    }

    #[test]
    fn connection_limits_are_read_and_refused_out_of_range_with_the_field_and_value() {
        let with = |connections: &str| format!("{MINIMAL}connections: {{{connections}}}\n");
        let s = file(&with(
            "max: 3, header_timeout_seconds: 2, idle_timeout_seconds: 4, body_timeout_seconds: 5, \
                             shutdown_timeout_seconds: 6",
        ))
        .resolve(None)
        .unwrap();
        assert_eq!(
            s.connections,
            ConnectionSettings {
                max: 3,
                header_timeout: Duration::from_secs(2),
                idle_timeout: Duration::from_secs(4),
                body_timeout: Duration::from_secs(5),
                shutdown_timeout: Duration::from_secs(6),
            }
        );
        for (connections, says) in [
            ("max: 0", "connections.max must be from 1 to 1000000, not 0"),
            ("max: 2000000", "connections.max must be from 1 to 1000000, not 2000000"),
            ("idle_timeout_seconds: 0", "connections.idle_timeout_seconds must be from 1 to 86400 seconds, not 0"),
            ("header_timeout_seconds: 0", "connections.header_timeout_seconds must be from 1 to 86400 seconds, not 0"),
            (
                "body_timeout_seconds: 90000",
                "connections.body_timeout_seconds must be from 1 to 86400 seconds, not 90000",
            ),
            ("shutdown_timeout_seconds: 0", "connections.shutdown_timeout_seconds must be from 1"),
        ] {
            let error = file(&with(connections)).resolve(None).map(|_| ()).unwrap_err().to_string();
            assert!(error.contains(says), "{connections}: {error}");
        }
        assert!(serde_yaml::from_str::<SettingsFile>("connections: {idle_seconds: 1}\n").is_err());
    }
}
