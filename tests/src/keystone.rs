//! A real Keystone (PyPI `keystone` 30.0.0, served by uwsgi) on a free 127.0.0.1 port, for tests that
//! authenticate against the identity service OpenStack clouds run.
//!
//! Each instance has its own temporary directory: `keystone.conf` with an SQLite database and fernet
//! tokens, the key repositories, and the logs. Setting it up runs `keystone-manage db_sync`,
//! `fernet_setup`, `credential_setup` and `bootstrap` (an `admin` user with the `admin` role on the
//! `admin` project); then uwsgi serves `keystone.wsgi.api:application`, under `tests/keystone/supervise.py`
//! which stops it when the instance is dropped, stopped, or the test process ends in any way. About
//! 10–15 s from a cached venv; [`Keystone::shared`] gives one instance per test binary.
//!
//! The helpers speak Keystone's REST API with the project's HTTP client and the admin's token: users,
//! projects, domains, role assignments, trusts, and password tokens (unscoped, project- or trust-scoped).

use crate::venv::cached_venv;
use anyhow::{bail, Context, Result};
use hearth_fragments::http::{Client, HttpSettings, Request, Response, RetryPolicy};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The Keystone release the fixture runs (2026.1) and the server that serves it.
pub const REQUIREMENTS: &[&str] = &["keystone==30.0.0", "uwsgi==2.0.31"];
/// The bootstrap admin's password: a loopback-only throwaway.
const ADMIN_PASSWORD: &str = "hearth-test-admin";
const READY_TIMEOUT: Duration = Duration::from_secs(90);
const MANAGE_TIMEOUT: Duration = Duration::from_secs(300);

/// A running Keystone; dropping it stops uwsgi and removes its directory.
#[derive(Debug)]
pub struct Keystone {
    supervisor: Option<Child>,
    venv: PathBuf,
    conf: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
    url: String,
    client: Client,
    admin_token: String,
}

/// How a password token is scoped.
#[derive(Clone, Copy, Debug)]
pub enum Scope<'a> {
    Unscoped,
    Project(&'a str),
    Trust(&'a str),
}

/// See [`Keystone::magnum_tenancy`].
#[derive(Clone, Debug)]
pub struct Tenancy {
    pub service: User,
    /// The service user's project (by name).
    pub service_project: String,
    pub owner: User,
    /// The owner's project (by id).
    pub project: String,
    pub owner_token: String,
    pub trustee_domain: String,
}

/// A user made by [`Keystone::create_user`].
#[derive(Clone, Debug)]
pub struct User {
    pub id: String,
    pub name: String,
    pub password: String,
    pub domain_id: String,
}

impl Keystone {
    /// One Keystone for the whole test binary, started on first use. It lives until the process ends
    /// (statics are never dropped; the supervisor then stops it).
    pub fn shared() -> Result<&'static Keystone> {
        static SHARED: OnceLock<std::result::Result<Keystone, String>> = OnceLock::new();
        SHARED
            .get_or_init(|| Keystone::start().map_err(|e| format!("{e:#}")))
            .as_ref()
            .map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A Keystone of its own (e.g. to stop it mid-test).
    pub fn start() -> Result<Keystone> {
        let venv = cached_venv("keystone", REQUIREMENTS)?;
        let started = Instant::now();
        let dir =
            tempfile::Builder::new().prefix("hearth-keystone-").tempdir().context("creating a temporary directory")?;
        let port = free_port()?;
        let url = format!("http://127.0.0.1:{port}/v3");
        let conf = write_config(dir.path())?;
        let manage = |args: &[&str]| manage(&venv, &conf, dir.path(), args);
        manage(&["db_sync"])?;
        manage(&["fernet_setup", "--keystone-user", "root", "--keystone-group", "root"])?;
        manage(&["credential_setup", "--keystone-user", "root", "--keystone-group", "root"])?;
        manage(&[
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-public-url",
            &format!("{url}/"),
            "--bootstrap-region-id",
            "RegionOne",
        ])?;

        let client =
            Client::new(&HttpSettings::default(), RetryPolicy { max_attempts: Some(1), ..RetryPolicy::default() })?;
        let mut keystone =
            Keystone { supervisor: None, venv, conf, dir, port, url, client, admin_token: String::new() };
        keystone.launch()?;
        keystone.admin_token =
            keystone.token_by_name("admin", "default", ADMIN_PASSWORD, Some(("admin", "default")))?;
        eprintln!("hearth-tests: Keystone ready on port {port} in {:.1} s", started.elapsed().as_secs_f64());
        Ok(keystone)
    }

    /// The identity v3 endpoint, `http://127.0.0.1:PORT/v3`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// A project-scoped token of the bootstrap admin (role `admin`).
    pub fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// Starts uwsgi again after [`Keystone::stop`], on the same port with the same database and keys:
    /// tokens issued before still validate.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.launch()
    }

    fn launch(&mut self) -> Result<()> {
        let log = std::fs::File::options().create(true).append(true).open(self.dir.path().join("uwsgi.log"))?;
        let supervisor = Command::new(self.venv.join("bin/python"))
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("keystone/supervise.py"))
            .arg(self.venv.join("bin/uwsgi"))
            .args(["--http-socket", &format!("127.0.0.1:{}", self.port)])
            .args(["--module", "keystone.wsgi.api:application"])
            .arg("--env")
            .arg(format!("OS_KEYSTONE_CONFIG_FILES={}", self.conf.display()))
            // One request at a time: Keystone 30's policy enforcer races on first use across threads
            // (`AttributeError: 'Enforcer' object has no attribute '_warning_emitted'`, then stray 403s,
            // seen here with --threads 4), and SQLite serialises writers anyway.
            .args(["--master", "--processes", "1", "--threads", "1", "--die-on-term", "--need-app"])
            // uwsgi's http-socket closes every connection after one answer; saying so keeps clients
            // from sending the next request down a connection that is already gone.
            .args(["--add-header", "Connection: close"])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting uwsgi")?;
        self.supervisor = Some(supervisor);
        self.wait_ready()
    }

    /// Stops uwsgi (and waits for it), keeping the instance's files for inspection until drop.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut supervisor) = self.supervisor.take() else { return Ok(()) };
        let pid = rustix::process::Pid::from_child(&supervisor);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        supervisor.wait().context("waiting for the Keystone supervisor")?;
        Ok(())
    }

    /// The last part of Keystone's and uwsgi's logs, for failure messages.
    pub fn log_tail(&self) -> String {
        ["keystone.log", "uwsgi.log"]
            .iter()
            .map(|name| format!("--- {name} ---\n{}", tail(&self.dir.path().join(name), 3000)))
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn wait_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if let Ok(response) = self.client.send(&Request::get(format!("{}/", self.url))) {
                if response.status == 200 {
                    return Ok(());
                }
            }
            if let Some(status) = self.supervisor.as_mut().and_then(|s| s.try_wait().ok().flatten()) {
                bail!("uwsgi exited ({status}) before Keystone answered\n{}", self.log_tail());
            }
            if Instant::now() > deadline {
                bail!("Keystone did not answer on port {} within {READY_TIMEOUT:?}\n{}", self.port, self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// What Magnum's deployment has in Keystone around its clusters: a service user for the certificate
    /// API (role `service`), a project with its owner (role `member`, and a project token to make trusts
    /// with), and the domain trustees live in.
    pub fn magnum_tenancy(&self) -> Result<Tenancy> {
        let service_project = Keystone::unique("service");
        let service_project_id = self.create_project(&service_project, "default")?;
        let service = self.create_user(&Keystone::unique("hearth"), "service-password", "default")?;
        self.assign_role(&service.id, &service_project_id, "service")?;
        let project = self.create_project(&Keystone::unique("demo"), "default")?;
        let owner = self.create_user(&Keystone::unique("owner"), "owner-password", "default")?;
        self.assign_role(&owner.id, &project, "member")?;
        let owner_token = self.token(&owner.id, &owner.password, Scope::Project(&project))?;
        let trustee_domain = self.create_domain(&Keystone::unique("magnum"))?;
        Ok(Tenancy { service, service_project, owner, project, owner_token, trustee_domain })
    }

    /// A name no other test in this process uses: `prefix-<pid>-<n>`.
    pub fn unique(prefix: &str) -> String {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        format!("{prefix}-{}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::SeqCst))
    }

    pub fn create_domain(&self, name: &str) -> Result<String> {
        self.create("domains", "domain", json!({"domain": {"name": name}}))
    }

    pub fn create_project(&self, name: &str, domain_id: &str) -> Result<String> {
        self.create("projects", "project", json!({"project": {"name": name, "domain_id": domain_id}}))
    }

    pub fn create_user(&self, name: &str, password: &str, domain_id: &str) -> Result<User> {
        let id = self.create(
            "users",
            "user",
            json!({"user": {"name": name, "password": password, "domain_id": domain_id}}),
        )?;
        Ok(User { id, name: name.into(), password: password.into(), domain_id: domain_id.into() })
    }

    /// Grants role `role` (by name: admin, member, reader, service, …) to a user on a project.
    pub fn assign_role(&self, user_id: &str, project_id: &str, role: &str) -> Result<()> {
        let roles = self.admin(Request::get(format!("{}/roles?name={role}", self.url)))?;
        let role_id = roles["roles"][0]["id"].as_str().with_context(|| format!("no role named {role}"))?.to_string();
        let response = self.send(
            &Request::new("PUT", format!("{}/projects/{project_id}/users/{user_id}/roles/{role_id}", self.url))
                .header("X-Auth-Token", &self.admin_token),
        )?;
        if response.status != 204 {
            bail!("assigning role {role}: HTTP {}: {}", response.status, response.text_tail(300));
        }
        Ok(())
    }

    /// A trust from `trustor` (authenticated with `trustor_token`, scoped to `project_id`) to
    /// `trustee_id` delegating `roles`; Magnum's trusts use impersonation.
    pub fn create_trust(
        &self,
        trustor_token: &str,
        trustor_id: &str,
        trustee_id: &str,
        project_id: &str,
        roles: &[&str],
        impersonation: bool,
    ) -> Result<String> {
        let roles = roles.iter().map(|name| json!({"name": name})).collect::<Vec<_>>();
        let body = json!({"trust": {"trustor_user_id": trustor_id, "trustee_user_id": trustee_id,
            "project_id": project_id, "impersonation": impersonation, "roles": roles}});
        let response = self.send(
            &Request::post_json(format!("{}/OS-TRUST/trusts", self.url), &body).header("X-Auth-Token", trustor_token),
        )?;
        if response.status != 201 {
            bail!("creating a trust: HTTP {}: {}", response.status, response.text_tail(300));
        }
        let body: Value = response.json()?;
        Ok(body["trust"]["id"].as_str().context("the trust has no id")?.to_string())
    }

    /// A password token for a user by id, as Magnum's nodes authenticate.
    pub fn token(&self, user_id: &str, password: &str, scope: Scope<'_>) -> Result<String> {
        let mut body = json!({"auth": {"identity": {"methods": ["password"],
            "password": {"user": {"id": user_id, "password": password}}}}});
        match scope {
            Scope::Unscoped => {}
            Scope::Project(id) => body["auth"]["scope"] = json!({"project": {"id": id}}),
            Scope::Trust(id) => body["auth"]["scope"] = json!({"OS-TRUST:trust": {"id": id}}),
        }
        self.issue(&body)
    }

    /// Puts a service of `kind` (`compute`, `network`, …) with its public endpoint `url` in RegionOne
    /// into the catalog every token carries, as a cloud's deployment registers its APIs.
    pub fn register_service(&self, kind: &str, name: &str, url: &str) -> Result<()> {
        let service = self.create("services", "service", json!({"service": {"type": kind, "name": name}}))?;
        let endpoint = json!({"endpoint": {"service_id": service, "interface": "public", "region_id": "RegionOne",
            "url": url}});
        self.create("endpoints", "endpoint", endpoint)?;
        Ok(())
    }

    /// What Keystone says of `token` (`GET /v3/auth/tokens`, as an API service validates the tokens it is
    /// shown): the token's body, or `None` when Keystone does not know it or it expired.
    pub fn validate(&self, token: &str) -> Result<Option<Value>> {
        let response = self.send(
            &Request::get(format!("{}/auth/tokens", self.url))
                .header("X-Auth-Token", &self.admin_token)
                .header("X-Subject-Token", token),
        )?;
        match response.status {
            200 => Ok(Some(response.json()?)),
            401 | 404 => Ok(None),
            other => bail!("validating a token: HTTP {other}: {}", response.text_tail(300)),
        }
    }

    /// Revokes a token (`DELETE /v3/auth/tokens`).
    pub fn revoke(&self, token: &str) -> Result<()> {
        let response = self.send(
            &Request::new("DELETE", format!("{}/auth/tokens", self.url))
                .header("X-Auth-Token", &self.admin_token)
                .header("X-Subject-Token", token),
        )?;
        if response.status != 204 {
            bail!("revoking a token: HTTP {}: {}", response.status, response.text_tail(300));
        }
        Ok(())
    }

    fn token_by_name(
        &self,
        name: &str,
        domain_id: &str,
        password: &str,
        project: Option<(&str, &str)>,
    ) -> Result<String> {
        let mut body = json!({"auth": {"identity": {"methods": ["password"],
            "password": {"user": {"name": name, "domain": {"id": domain_id}, "password": password}}}}});
        if let Some((project, project_domain)) = project {
            body["auth"]["scope"] = json!({"project": {"name": project, "domain": {"id": project_domain}}});
        }
        self.issue(&body)
    }

    fn issue(&self, body: &Value) -> Result<String> {
        let response = self.send(&Request::post_json(format!("{}/auth/tokens", self.url), body))?;
        if response.status != 201 {
            bail!("authenticating: HTTP {}: {}", response.status, response.text_tail(300));
        }
        Ok(response.header("X-Subject-Token").context("no X-Subject-Token")?.to_string())
    }

    fn create(&self, collection: &str, kind: &str, body: Value) -> Result<String> {
        let response = self.send(
            &Request::post_json(format!("{}/{collection}", self.url), &body).header("X-Auth-Token", &self.admin_token),
        )?;
        if response.status != 201 {
            bail!("creating a {kind}: HTTP {}: {}\n{}", response.status, response.text_tail(300), self.log_tail());
        }
        let body: Value = response.json()?;
        Ok(body[kind]["id"].as_str().with_context(|| format!("the new {kind} has no id"))?.to_string())
    }

    fn admin(&self, request: Request) -> Result<Value> {
        let request = request.header("X-Auth-Token", &self.admin_token);
        let response = self.send(&request)?;
        if response.status != 200 {
            bail!("{} {}: HTTP {}: {}", request.method, request.url, response.status, response.text_tail(300));
        }
        Ok(response.json()?)
    }

    fn send(&self, request: &Request) -> Result<Response> {
        self.client.send(request).map_err(|e| anyhow::anyhow!("{e}\n{}", self.log_tail()))
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("hearth-tests: stopping Keystone: {e:#}");
        }
    }
}

fn write_config(dir: &Path) -> Result<PathBuf> {
    let conf = dir.join("keystone.conf");
    let text = format!(
        "[DEFAULT]\nlog_file = {log}\n\n[database]\nconnection = sqlite:///{db}\n\n[token]\nprovider = fernet\n\n\
         [fernet_tokens]\nkey_repository = {fernet}\n\n[credential]\nkey_repository = {credential}\n",
        log = dir.join("keystone.log").display(),
        db = dir.join("keystone.db").display(),
        fernet = dir.join("fernet-keys").display(),
        credential = dir.join("credential-keys").display(),
    );
    std::fs::write(&conf, text).with_context(|| format!("writing {}", conf.display()))?;
    Ok(conf)
}

fn manage(venv: &Path, conf: &Path, dir: &Path, args: &[&str]) -> Result<()> {
    let log = dir.join("keystone-manage.log");
    let out = std::fs::File::options().create(true).append(true).open(&log)?;
    let status = Command::new("timeout")
        .arg(MANAGE_TIMEOUT.as_secs().to_string())
        .arg(venv.join("bin/keystone-manage"))
        .arg("--config-file")
        .arg(conf)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .status()
        .context("running keystone-manage")?;
    if !status.success() {
        bail!(
            "keystone-manage {} failed ({status}):\n{}\n{}",
            args[0],
            tail(&log, 3000),
            tail(&dir.join("keystone.log"), 3000)
        );
    }
    Ok(())
}

/// A port nobody listens on right now (the kernel's pick; free again once the probe closes).
pub fn free_port() -> Result<u16> {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(probe.local_addr()?.port())
}

fn tail(path: &Path, max: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let start = text.len().saturating_sub(max);
            let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
            text[start..].to_string()
        }
        Err(e) => format!("({}: {e})", path.display()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts a real Keystone (a minute more on a fresh cache) and checks the helpers against it:
    /// a trust-scoped token with impersonation is the trustor's, naming its trustee.
    #[test]
    fn a_real_keystone_issues_and_validates_trust_tokens() {
        let keystone = Keystone::shared().unwrap();
        let project = keystone.create_project(&Keystone::unique("demo"), "default").unwrap();
        let owner = keystone.create_user(&Keystone::unique("owner"), "owner-pw", "default").unwrap();
        keystone.assign_role(&owner.id, &project, "member").unwrap();
        let domain = keystone.create_domain(&Keystone::unique("trustees")).unwrap();
        let trustee = keystone.create_user(&Keystone::unique("trustee"), "trustee-pw", &domain).unwrap();
        let owner_token = keystone.token(&owner.id, &owner.password, Scope::Project(&project)).unwrap();
        let trust = keystone.create_trust(&owner_token, &owner.id, &trustee.id, &project, &["member"], true).unwrap();
        let trust_token = keystone.token(&trustee.id, &trustee.password, Scope::Trust(&trust)).unwrap();

        let validated = keystone
            .admin(Request::get(format!("{}/auth/tokens", keystone.url())).header("X-Subject-Token", &trust_token))
            .unwrap();
        let token = &validated["token"];
        assert_eq!(token["user"]["id"], owner.id.as_str(), "impersonation: the token is the trustor's");
        assert_eq!(token["OS-TRUST:trust"]["trustee_user"]["id"], trustee.id.as_str());
        assert_eq!(token["OS-TRUST:trust"]["id"], trust.as_str());

        let unscoped = keystone.token(&trustee.id, &trustee.password, Scope::Unscoped).unwrap();
        keystone.revoke(&unscoped).unwrap();
        let response = keystone
            .send(
                &Request::get(format!("{}/auth/tokens", keystone.url()))
                    .header("X-Auth-Token", keystone.admin_token())
                    .header("X-Subject-Token", &unscoped),
            )
            .unwrap();
        assert_eq!(response.status, 404, "a revoked token no longer validates");
        assert!(keystone.token(&trustee.id, "wrong", Scope::Unscoped).is_err());
    }
}
