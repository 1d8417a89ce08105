//! A real, standalone OpenStack Heat 27.0.1 on loopback, for tests that create the stacks Hearth renders.
//!
//! [`Heat::start`] runs `tests/heat/launcher.py` with a cached venv's Python ([`venv`]): Heat's own
//! engine and Heat's own paste API pipeline in one process (in-memory `fake://` messaging), `noauth`
//! (every request is project `admin`), SQLite, on a free 127.0.0.1 port. The launcher's docstring and
//! `tests/heat/heat.conf.in` say what is configured and why; the one behavioural change is that the
//! engine's fixed 1 s pacing sleeps are scaled by [`SLEEP_SCALE`] (timeouts stay wall-clock).
//!
//! With no Nova, Neutron, Cinder or Octavia, their resource types are mapped to generated stand-in
//! provider templates ([`standins`]). The API helpers speak Heat's REST API as any client would; a
//! stack-create body is sent as given (its `template` as text, never re-parsed here: a YAML round trip
//! would turn `2018-08-31` into a date).
//!
//! Heat's own log (`heat.log`) and the launcher's output live in the fixture's temporary directory;
//! a failed start or a failed [`Heat::wait`] prints their tails to stderr.
//!
//! Booted nodes signal their wait conditions themselves, and cannot reach this machine's loopback: with
//! [`HeatOptions::public_host`] (their network's gateway, where a forward to Heat's port listens), the
//! handles' endpoints name that address instead of 127.0.0.1, as a real cloud's public Heat endpoint
//! would. The API still listens on 127.0.0.1 only, and nothing here ever sends to the public host (it
//! exists only inside the nodes' namespaces): [`WaitHandle::signal`] goes to the same Heat on loopback.
//!
//! Known limit: stack UPDATE is not supported (SQLite reuses row ids, see the launcher).

pub mod venv;

use anyhow::{anyhow, bail, Context, Result};
use serde_json::{json, Map, Value};
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

/// The engine's fixed 1 s pacing sleeps are multiplied by this (see the launcher): a resource's
/// progress is looked at every 0.1 s instead of every second. Timeouts are unaffected.
pub const SLEEP_SCALE: f64 = 0.1;
/// The project every noauth request acts as.
pub const PROJECT: &str = "admin";
/// From spawning the launcher to the API answering (≈ 3–5 s; generous for a loaded CI machine).
const START_TIMEOUT: Duration = Duration::from_secs(180);
/// Bound on one API request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How deep [`Heat::resources`] looks into nested stacks (Heat's own default limit is 5).
const NESTED_DEPTH: u32 = 5;
/// How often [`Heat::wait`] and [`Heat::delete`] look at a stack's status (a cheap request).
/// How long an accepted update may take to begin.
const UPDATE_START: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(100);
/// How often [`Heat::wait_resources`] lists the whole resource tree: an expensive request for Heat
/// (it loads every nested stack), which would slow the very creation it waits for if made too often.
const RESOURCE_POLL: Duration = Duration::from_millis(500);

const LAUNCHER_PY: &str = include_str!("../heat/launcher.py");
const HEAT_CONF_IN: &str = include_str!("../heat/heat.conf.in");

/// What went wrong talking to Heat, so a test can tell "Heat refused this" from "Heat is not there".
#[derive(Debug, thiserror::Error)]
pub enum HeatError {
    /// Heat answered with an error status; `kind` is Heat's error type (e.g. `StackValidationFailed`).
    #[error("Heat answered {status} to {what}: {kind}: {message}")]
    Rejected { what: String, status: u16, kind: String, message: String },
    /// No answer, or one that is not what Heat's API answers.
    #[error("{what}: {detail}")]
    Transport { what: String, detail: String },
}

impl HeatError {
    /// Heat's message when it refused the request.
    pub fn rejection_message(&self) -> Option<&str> {
        match self {
            HeatError::Rejected { message, .. } => Some(message),
            HeatError::Transport { .. } => None,
        }
    }
}

/// A stack, by the name and id Heat's URLs need (`/stacks/<name>/<id>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StackId {
    pub name: String,
    pub id: String,
}

impl fmt::Display for StackId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.name, self.id)
    }
}

/// A stack's state as `GET /stacks/<name>/<id>` shows it.
#[derive(Debug, Clone)]
pub struct Stack {
    pub id: StackId,
    pub status: String,
    pub status_reason: String,
    /// `output_key` → `output_value`, for the outputs Heat could resolve.
    pub outputs: Map<String, Value>,
    /// `output_key` → `output_error`, for those it could not.
    pub output_errors: Map<String, Value>,
    /// When the last update began (empty before the first), which tells one update from the next.
    pub updated_time: String,
}

/// One resource anywhere in a stack's tree.
#[derive(Debug, Clone)]
pub struct Resource {
    /// Resource names from the top stack down, joined by `/` (e.g. `nodes/1/server`).
    pub path: String,
    pub name: String,
    pub resource_type: String,
    pub status: String,
    pub status_reason: String,
    pub physical_id: String,
    /// The stack the resource belongs to.
    pub stack: StackId,
}

/// A stand-in server and what it received from Heat.
#[derive(Debug, Clone)]
pub struct ServerInfo {
    pub path: String,
    /// Nova's id for it: the stand-in's physical resource id (empty until Heat has made it).
    pub id: String,
    /// The server's `name` attribute (its `name` property, else the name Heat made up).
    pub name: String,
    /// The exact user-data Heat handed the server (RAW format: the text itself).
    pub user_data: String,
    pub user_data_format: String,
    pub first_address: String,
    /// Every attribute, as the resource-show API returned them.
    pub attributes: Map<String, Value>,
}

/// An `OS::Heat::WaitConditionHandle`'s signal target.
#[derive(Clone)]
pub struct WaitHandle {
    pub path: String,
    /// The `endpoint` attribute exactly as Heat gave it: what nodes signal (it names
    /// [`Heat::public_host`] when there is one).
    pub endpoint: String,
    /// The same endpoint on 127.0.0.1, where this machine reaches the same Heat ([`WaitHandle::signal`]).
    pub loopback_endpoint: String,
    pub token: String,
}

// Hand-written: the token is a credential.
impl fmt::Debug for WaitHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaitHandle")
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .field("loopback_endpoint", &self.loopback_endpoint)
            .field("token", &"<masked>")
            .finish()
    }
}

impl WaitHandle {
    /// POSTs `body` to the handle from this machine, through its loopback endpoint (see [`signal`]).
    pub fn signal(&self, body: &Value) -> Result<(), HeatError> {
        signal(&self.loopback_endpoint, &self.token, body)
    }
}

/// `endpoint` as this machine reaches it: `http://<public_host>:<port>/…` becomes
/// `http://127.0.0.1:<port>/…` (the same Heat; the public host exists only in the nodes' namespaces).
/// Anything else is left as it is, for [`signal`] to judge.
fn loopback_endpoint(endpoint: &str, public_host: Option<Ipv4Addr>, port: u16) -> String {
    let Some(host) = public_host else { return endpoint.to_string() };
    match endpoint.strip_prefix(&format!("http://{host}:{port}/")) {
        Some(path) => format!("http://127.0.0.1:{port}/{path}"),
        None => endpoint.to_string(),
    }
}

/// How to start a [`Heat`].
#[derive(Debug, Clone, Default)]
pub struct HeatOptions {
    /// The address the token catalog's `public` orchestration endpoint names, and with it every
    /// wait-condition handle's `endpoint` (e.g. `node::network::STANDIN_GATEWAY`, where the nodes'
    /// forward to Heat's port listens). `None`: 127.0.0.1, like the other endpoints.
    pub public_host: Option<Ipv4Addr>,
}

/// How long starting took, for reports.
#[derive(Debug, Clone, Copy)]
pub struct StartTimes {
    /// Finding (or building, on a cold cache) the venv.
    pub venv: Duration,
    /// True when the venv had to be built.
    pub venv_built: bool,
    /// From spawning the launcher to the API answering.
    pub launch: Duration,
}

/// A running Heat; dropping it kills the launcher's whole process group.
#[derive(Debug)]
pub struct Heat {
    child: Child,
    state: tempfile::TempDir,
    port: u16,
    agent: ureq::Agent,
    venv: crate::venv::Venv,
    times: StartTimes,
    public_host: Option<Ipv4Addr>,
}

impl Drop for Heat {
    fn drop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32);
        if let Some(pid) = pid {
            // The launcher leads its own process group (see `start`); anything it spawned goes too.
            let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One Heat shared by the tests of a process that overlap in time (see [`Heat::shared`]).
static SHARED: Mutex<Weak<Heat>> = Mutex::new(Weak::new());

impl Heat {
    /// Starts a fresh Heat (building the cached venv first if needed).
    pub fn start() -> Result<Heat> {
        Heat::start_with(HeatOptions::default())
    }

    /// [`Heat::start`] with `options`.
    pub fn start_with(options: HeatOptions) -> Result<Heat> {
        let venv = venv::heat_venv()?;
        let state =
            tempfile::Builder::new().prefix("hearth-heat-").tempdir().context("creating Heat's state directory")?;
        for (name, text) in [("launcher.py", LAUNCHER_PY), ("heat.conf.in", HEAT_CONF_IN)] {
            let path = state.path().join(name);
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        let log_path = state.path().join("launcher.log");
        let log = std::fs::File::create(&log_path).with_context(|| format!("creating {}", log_path.display()))?;
        let started = Instant::now();
        let mut launcher = Command::new(venv.python());
        launcher
            .arg("-u")
            .arg(state.path().join("launcher.py"))
            .arg("--state-dir")
            .arg(state.path())
            .arg("--sleep-scale")
            .arg(SLEEP_SCALE.to_string());
        if let Some(host) = options.public_host {
            launcher.arg("--public-host").arg(host.to_string());
        }
        let child = launcher
            .current_dir(state.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            // Its own process group, so Drop can kill everything it started in one go.
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {} launcher.py", venv.python().display()))?;
        let agent = ureq::AgentBuilder::new().try_proxy_from_env(false).timeout(REQUEST_TIMEOUT).redirects(0).build();
        let mut heat = Heat {
            child,
            state,
            port: 0,
            agent,
            times: StartTimes { venv: venv.took, venv_built: venv.built, launch: Duration::ZERO },
            venv,
            public_host: options.public_host,
        };
        if let Err(e) = heat.wait_until_ready() {
            heat.print_logs("Heat did not start");
            return Err(e);
        }
        heat.times.launch = started.elapsed();
        Ok(heat)
    }

    /// A Heat shared with every other caller that still holds one: tests of one binary that run at the
    /// same time use one Heat (stacks are independent); it stops when the last holder drops it.
    pub fn shared() -> Result<Arc<Heat>> {
        let mut shared = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(heat) = shared.upgrade() {
            return Ok(heat);
        }
        let heat = Arc::new(Heat::start()?);
        *shared = Arc::downgrade(&heat);
        Ok(heat)
    }

    fn wait_until_ready(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        let ready = self.state.path().join("ready.json");
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("the Heat launcher exited ({status}) before it was ready");
            }
            if let Ok(text) = std::fs::read_to_string(&ready) {
                let value: Value =
                    serde_json::from_str(&text).with_context(|| format!("parsing {}", ready.display()))?;
                self.port = value["port"]
                    .as_u64()
                    .and_then(|p| u16::try_from(p).ok())
                    .with_context(|| format!("{} has no port: {text}", ready.display()))?;
                break;
            }
            if Instant::now() > deadline {
                bail!("Heat was not ready within {} s", START_TIMEOUT.as_secs());
            }
            std::thread::sleep(POLL);
        }
        // The launcher writes ready.json just before serving: the first answer proves the API is up.
        let versions = self.get_json(&format!("{}/", self.root_url()), "listing API versions")?;
        if versions["versions"].as_array().is_none_or(|v| v.is_empty()) {
            bail!("Heat's version list is empty: {versions}");
        }
        Ok(())
    }

    /// The port the API listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The address wait-condition endpoints name instead of 127.0.0.1 ([`HeatOptions::public_host`]).
    pub fn public_host(&self) -> Option<Ipv4Addr> {
        self.public_host
    }

    /// `http://127.0.0.1:<port>/v1/admin`, the base of every project-scoped API call.
    pub fn url(&self) -> String {
        format!("{}/v1/{PROJECT}", self.root_url())
    }

    fn root_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn start_times(&self) -> StartTimes {
        self.times
    }

    /// Heat's temporary directory (heat.log, launcher.log, heat.conf, the SQLite DB).
    pub fn state_dir(&self) -> &Path {
        self.state.path()
    }

    /// The stand-ins for this Heat's venv (see [`standins`]).
    pub fn standins(&self) -> Result<(Map<String, Value>, Map<String, Value>)> {
        parse_standins(&venv::standins_json(&self.venv)?)
    }

    /// `POST /stacks` with `body` (stack_name, template, files, environment, parameters, timeout_mins)
    /// exactly as given; returns the new stack's name and id.
    pub fn create_stack(&self, body: &Value) -> Result<StackId, HeatError> {
        let bytes = serde_json::to_vec(body)
            .map_err(|e| HeatError::Transport { what: "encoding a stack-create body".into(), detail: e.to_string() })?;
        self.create_stack_raw(&bytes)
    }

    /// `POST /stacks` with these exact bytes (e.g. a `stack.json` as written to disk).
    pub fn create_stack_raw(&self, body: &[u8]) -> Result<StackId, HeatError> {
        let name = serde_json::from_slice::<Value>(body)
            .ok()
            .and_then(|v| v["stack_name"].as_str().map(str::to_string))
            .unwrap_or_default();
        let what = format!("creating stack {name:?}");
        let answer = self.send("POST", &format!("{}/stacks", self.url()), Some(body), None, &what)?;
        let id = answer["stack"]["id"]
            .as_str()
            .ok_or_else(|| HeatError::Transport { what: what.clone(), detail: format!("no stack id in {answer}") })?;
        Ok(StackId { name, id: id.to_string() })
    }

    /// `PATCH` the stack (Heat's update that keeps every parameter and file the body does not name):
    /// `body` holds what changes (`parameters`, `template`, `files`, `timeout_mins` …). Returns once the
    /// update has begun (Heat answers 202 before its engine thread starts it), so a [`Heat::wait`] for
    /// `UPDATE_COMPLETE` that follows sees this update, not the last one.
    pub fn update_stack(&self, stack: &StackId, body: &Value) -> Result<()> {
        let before = self.stack(stack)?.updated_time;
        let bytes = serde_json::to_vec(body).expect("a JSON value always encodes");
        let what = format!("updating stack {stack}");
        self.send("PATCH", &self.stack_url(stack), Some(&bytes), None, &what)?;
        let deadline = Instant::now() + UPDATE_START;
        loop {
            let current = self.stack(stack)?;
            if current.status == "UPDATE_IN_PROGRESS" || current.updated_time != before {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{what}: still {} {UPDATE_START:?} after Heat took the update", current.status);
            }
            std::thread::sleep(POLL);
        }
    }

    /// `POST /validate` with `template` as text and the stand-ins as its environment and files (with no
    /// Nova or Neutron, nothing else could validate a real template); Heat's answer (parameters,
    /// description) when valid. Weaker than a create: Heat does not look inside provider templates or
    /// resource groups here.
    pub fn validate(&self, template: &str) -> Result<Value, HeatError> {
        let (registry, files) = self
            .standins()
            .map_err(|e| HeatError::Transport { what: "preparing the stand-ins".into(), detail: format!("{e:#}") })?;
        self.validate_body(&json!({
            "template": template,
            "environment": { "resource_registry": registry },
            "files": files,
        }))
    }

    /// `POST /validate` with a body of your own (`template`, `environment`, `files`, `parameters`).
    pub fn validate_body(&self, body: &Value) -> Result<Value, HeatError> {
        let bytes = serde_json::to_vec(body).expect("a JSON value always encodes");
        self.send("POST", &format!("{}/validate", self.url()), Some(&bytes), None, "validating a template")
    }

    /// The stack's current state.
    pub fn stack(&self, stack: &StackId) -> Result<Stack, HeatError> {
        let what = format!("showing stack {stack}");
        let answer = self.send("GET", &self.stack_url(stack), None, None, &what)?;
        let s = &answer["stack"];
        let text = |key: &str| s[key].as_str().unwrap_or_default().to_string();
        let mut outputs = Map::new();
        let mut output_errors = Map::new();
        for output in s["outputs"].as_array().into_iter().flatten() {
            let key = output["output_key"].as_str().unwrap_or_default().to_string();
            if let Some(error) = output.get("output_error") {
                output_errors.insert(key, error.clone());
            } else {
                outputs.insert(key, output.get("output_value").cloned().unwrap_or(Value::Null));
            }
        }
        Ok(Stack {
            id: stack.clone(),
            status: text("stack_status"),
            status_reason: text("stack_status_reason"),
            outputs,
            output_errors,
            updated_time: text("updated_time"),
        })
    }

    /// Polls until the stack's status is one of `statuses`; fails at once if it settles on another
    /// status (anything not `*_IN_PROGRESS`), or after `timeout`. A failure prints Heat's log tail.
    pub fn wait(&self, stack: &StackId, statuses: &[&str], timeout: Duration) -> Result<Stack> {
        let deadline = Instant::now() + timeout;
        let result = loop {
            let current = match self.stack(stack) {
                Ok(current) => current,
                Err(e) => break Err(anyhow!(e)),
            };
            if statuses.contains(&current.status.as_str()) {
                break Ok(current);
            }
            if !current.status.ends_with("_IN_PROGRESS") {
                break Err(anyhow!(
                    "stack {stack} is {} ({}), not {}",
                    current.status,
                    current.status_reason,
                    statuses.join(" or ")
                ));
            }
            if Instant::now() > deadline {
                break Err(anyhow!(
                    "stack {stack} did not reach {} within {:.0} s: still {} ({})",
                    statuses.join(" or "),
                    timeout.as_secs_f64(),
                    current.status,
                    current.status_reason
                ));
            }
            std::thread::sleep(POLL);
        };
        if result.is_err() {
            self.print_logs(&format!("waiting for stack {stack}"));
        }
        result
    }

    /// Every resource in the stack and its nested stacks (provider templates, resource groups), with
    /// its path from the top. The stand-ins' own insides (their RandomStrings) are left out.
    pub fn resources(&self, stack: &StackId) -> Result<Vec<Resource>, HeatError> {
        let what = format!("listing the resources of {stack}");
        let url = format!("{}/resources?nested_depth={NESTED_DEPTH}", self.stack_url(stack));
        let answer = self.send("GET", &url, None, None, &what)?;
        let list = answer["resources"].as_array().ok_or_else(|| HeatError::Transport {
            what: what.clone(),
            detail: format!("no resource list in {answer}"),
        })?;
        let mut flat = Vec::new();
        for r in list {
            let text = |key: &str| r[key].as_str().unwrap_or_default().to_string();
            let owner = r["links"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["rel"] == "stack")
                .and_then(|l| l["href"].as_str())
                .and_then(stack_id_from_href)
                .ok_or_else(|| HeatError::Transport { what: what.clone(), detail: format!("no stack link in {r}") })?;
            flat.push(Resource {
                path: String::new(),
                name: text("resource_name"),
                resource_type: text("resource_type"),
                status: text("resource_status"),
                status_reason: text("resource_status_reason"),
                physical_id: text("physical_resource_id"),
                stack: owner,
            });
        }
        Ok(with_paths(flat, &stack.id))
    }

    /// Polls until at least `count` resources of `resource_type` are CREATE_COMPLETE; returns them.
    pub fn wait_resources(
        &self,
        stack: &StackId,
        resource_type: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<Vec<Resource>> {
        let deadline = Instant::now() + timeout;
        loop {
            let done: Vec<Resource> = self
                .resources(stack)?
                .into_iter()
                // One an update went through (UPDATE_COMPLETE) exists as much as a new one.
                .filter(|r| {
                    r.resource_type == resource_type
                        && matches!(r.status.as_str(), "CREATE_COMPLETE" | "UPDATE_COMPLETE")
                })
                .collect();
            if done.len() >= count {
                return Ok(done);
            }
            let state = self.stack(stack)?;
            if !state.status.ends_with("_IN_PROGRESS") {
                self.print_logs(&format!("waiting for {resource_type} in {stack}"));
                bail!(
                    "stack {stack} is {} ({}) with {} of {count} {resource_type} created",
                    state.status,
                    state.status_reason,
                    done.len()
                );
            }
            if Instant::now() > deadline {
                self.print_logs(&format!("waiting for {resource_type} in {stack}"));
                bail!("only {} of {count} {resource_type} created in {stack} within {timeout:?}", done.len());
            }
            std::thread::sleep(RESOURCE_POLL);
        }
    }

    /// One resource's attributes (`GET …/resources/<name>`).
    pub fn attributes(&self, resource: &Resource) -> Result<Map<String, Value>, HeatError> {
        let what = format!("showing resource {}", resource.path);
        let url = format!("{}/resources/{}", self.stack_url(&resource.stack), encode_segment(&resource.name));
        let answer = self.send("GET", &url, None, None, &what)?;
        Ok(answer["resource"]["attributes"].as_object().cloned().unwrap_or_default())
    }

    /// Every `OS::Nova::Server` (stand-in) in the stack's tree that exists so far, with what it received.
    pub fn servers(&self, stack: &StackId) -> Result<Vec<ServerInfo>, HeatError> {
        let mut servers = Vec::new();
        for r in self.resources(stack)?.into_iter().filter(|r| r.resource_type == "OS::Nova::Server") {
            let attributes = self.attributes(&r)?;
            let text = |key: &str| attributes.get(key).and_then(Value::as_str).unwrap_or_default().to_string();
            servers.push(ServerInfo {
                path: r.path.clone(),
                id: r.physical_id.clone(),
                name: text("name"),
                user_data: text("user_data"),
                user_data_format: text("user_data_format"),
                first_address: text("first_address"),
                attributes: attributes.clone(),
            });
        }
        Ok(servers)
    }

    /// Every `OS::Heat::WaitConditionHandle` in the stack's tree whose endpoint and token exist so far.
    pub fn wait_handles(&self, stack: &StackId) -> Result<Vec<WaitHandle>, HeatError> {
        let mut handles = Vec::new();
        for r in self.resources(stack)?.into_iter().filter(|r| r.resource_type == "OS::Heat::WaitConditionHandle") {
            let attributes = self.attributes(&r)?;
            let endpoint = attributes.get("endpoint").and_then(Value::as_str).unwrap_or_default();
            let token = attributes.get("token").and_then(Value::as_str).unwrap_or_default();
            if !endpoint.is_empty() && !token.is_empty() {
                handles.push(WaitHandle {
                    path: r.path.clone(),
                    endpoint: endpoint.into(),
                    loopback_endpoint: loopback_endpoint(endpoint, self.public_host, self.port),
                    token: token.into(),
                });
            }
        }
        Ok(handles)
    }

    /// `DELETE` the stack, then wait until Heat no longer lists it (or it is DELETE_COMPLETE).
    pub fn delete(&self, stack: &StackId, timeout: Duration) -> Result<()> {
        let what = format!("deleting stack {stack}");
        self.send("DELETE", &self.stack_url(stack), None, None, &what)?;
        let deadline = Instant::now() + timeout;
        loop {
            match self.stack(stack) {
                Ok(s) if s.status == "DELETE_COMPLETE" => return Ok(()),
                Ok(s) if s.status == "DELETE_FAILED" => bail!("{what}: DELETE_FAILED ({})", s.status_reason),
                Ok(_) => {}
                Err(HeatError::Rejected { status: 404, .. }) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            if Instant::now() > deadline {
                self.print_logs(&what);
                bail!("{what}: not gone within {timeout:?}");
            }
            std::thread::sleep(POLL);
        }
    }

    /// The last `max` bytes of heat.log and launcher.log.
    pub fn log_tail(&self, max: usize) -> String {
        let mut text = String::new();
        for name in ["heat.log", "launcher.log"] {
            let path = self.state.path().join(name);
            let content = std::fs::read_to_string(&path).unwrap_or_else(|e| format!("({}: {e})", path.display()));
            text.push_str(&format!("--- {name} (tail) ---\n{}\n", crate::venv::tail_text(&content, max)));
        }
        text
    }

    fn print_logs(&self, context: &str) {
        eprintln!("hearth-tests: {context}; Heat's logs follow\n{}", self.log_tail(6000));
    }

    fn stack_url(&self, stack: &StackId) -> String {
        format!("{}/stacks/{}/{}", self.url(), encode_segment(&stack.name), encode_segment(&stack.id))
    }

    fn get_json(&self, url: &str, what: &str) -> Result<Value, HeatError> {
        self.send("GET", url, None, None, what)
    }

    fn send(
        &self,
        method: &str,
        url: &str,
        body: Option<&[u8]>,
        token: Option<&str>,
        what: &str,
    ) -> Result<Value, HeatError> {
        send(&self.agent, method, url, body, token, what)
    }
}

/// `POST <endpoint>` with `X-Auth-Token: <token>` and `body` as JSON, as a node signals its wait
/// condition (`{"status": "SUCCESS"|"FAILURE", "reason": …, "data": …, "id": …}`). Refuses any endpoint
/// that is not on loopback: a test must never send anything elsewhere.
pub fn signal(endpoint: &str, token: &str, body: &Value) -> Result<(), HeatError> {
    let what = format!("signalling {endpoint}");
    if !is_loopback_http(endpoint) {
        return Err(HeatError::Transport { what, detail: "refusing a signal endpoint that is not on loopback".into() });
    }
    let agent = ureq::AgentBuilder::new().try_proxy_from_env(false).timeout(REQUEST_TIMEOUT).redirects(0).build();
    let bytes = serde_json::to_vec(body).expect("a JSON value always encodes");
    send(&agent, "POST", endpoint, Some(&bytes), Some(token), &what).map(|_| ())
}

/// The stand-in provider templates: `(resource_registry, files)` to merge into a stack-create body's
/// `environment.resource_registry` and `files`. Builds the Heat venv first if it is not cached.
pub fn standins() -> Result<(Map<String, Value>, Map<String, Value>)> {
    let venv = venv::heat_venv()?;
    parse_standins(&venv::standins_json(&venv)?)
}

/// Adds the stand-ins to a stack-create body (keeping any registry entry or file the body already has).
pub fn with_standins(mut body: Value) -> Result<Value> {
    let (registry, files) = standins()?;
    let object = body.as_object_mut().context("a stack-create body must be a JSON object")?;
    let environment = object.entry("environment").or_insert_with(|| json!({}));
    let environment_map = environment.as_object_mut().context("`environment` must be an object")?;
    let target = environment_map.entry("resource_registry").or_insert_with(|| json!({}));
    let target = target.as_object_mut().context("`environment.resource_registry` must be an object")?;
    for (k, v) in registry {
        target.entry(k).or_insert(v);
    }
    let target = object.entry("files").or_insert_with(|| json!({}));
    let target = target.as_object_mut().context("`files` must be an object")?;
    for (k, v) in files {
        target.entry(k).or_insert(v);
    }
    Ok(body)
}

fn parse_standins(text: &str) -> Result<(Map<String, Value>, Map<String, Value>)> {
    let mut value: Value = serde_json::from_str(text).context("parsing the stand-ins")?;
    let registry = value["resource_registry"].take();
    let files = value["files"].take();
    match (registry, files) {
        (Value::Object(registry), Value::Object(files)) => Ok((registry, files)),
        _ => bail!("the stand-ins lack resource_registry or files"),
    }
}

fn send(
    agent: &ureq::Agent,
    method: &str,
    url: &str,
    body: Option<&[u8]>,
    token: Option<&str>,
    what: &str,
) -> Result<Value, HeatError> {
    let transport = |detail: String| HeatError::Transport { what: what.to_string(), detail };
    let mut request = agent.request(method, url).set("Accept", "application/json");
    if let Some(token) = token {
        request = request.set("X-Auth-Token", token);
    }
    let response = match body {
        Some(bytes) => request.set("Content-Type", "application/json").send_bytes(bytes),
        None => request.call(),
    };
    match response {
        Ok(response) => {
            let text = read_body(response).map_err(transport)?;
            if text.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(&text).map_err(|e| transport(format!("answer is not JSON ({e}): {text}")))
        }
        Err(ureq::Error::Status(status, response)) => {
            let text = read_body(response).unwrap_or_default();
            let parsed: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            let error = &parsed["error"];
            let kind = error["type"].as_str().or(parsed["title"].as_str()).unwrap_or("error").to_string();
            let message = error["message"]
                .as_str()
                .or(parsed["explanation"].as_str())
                .map(str::to_string)
                .unwrap_or_else(|| text.trim().to_string());
            Err(HeatError::Rejected { what: what.to_string(), status, kind, message })
        }
        Err(ureq::Error::Transport(e)) => Err(transport(e.to_string())),
    }
}

fn read_body(response: ureq::Response) -> Result<String, String> {
    let mut text = String::new();
    response.into_reader().take(64 << 20).read_to_string(&mut text).map_err(|e| format!("reading the answer: {e}"))?;
    Ok(text)
}

/// `http://<loopback address>[:port]/…` only.
fn is_loopback_http(url: &str) -> bool {
    let Some(rest) = url.strip_prefix("http://") else { return false };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.rsplit_once(':').map_or(authority, |(host, _port)| host)
    };
    host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// `…/stacks/<name>/<id>` → the stack it names.
fn stack_id_from_href(href: &str) -> Option<StackId> {
    let (_, tail) = href.rsplit_once("/stacks/")?;
    let mut parts = tail.split('/');
    let name = decode_segment(parts.next()?);
    let id = decode_segment(parts.next()?);
    Some(StackId { name, id })
}

/// Each resource's path from the top stack (`top_id`): a resource in a nested stack lives under the
/// resource whose physical id is that stack's id.
fn with_paths(mut resources: Vec<Resource>, top_id: &str) -> Vec<Resource> {
    let owner_of: std::collections::HashMap<String, (String, String)> =
        resources.iter().map(|r| (r.physical_id.clone(), (r.stack.id.clone(), r.name.clone()))).collect();
    for r in &mut resources {
        let mut names = vec![r.name.clone()];
        let mut stack = r.stack.id.clone();
        // Bounded: a malformed answer must not loop forever.
        for _ in 0..=NESTED_DEPTH + 1 {
            if stack == top_id {
                break;
            }
            let Some((parent_stack, parent_name)) = owner_of.get(&stack) else { break };
            names.push(parent_name.clone());
            stack = parent_stack.clone();
        }
        names.reverse();
        r.path = names.join("/");
    }
    let types = owner_types(&resources);
    resources.retain(|r| !is_inside_a_standin(r, &types));
    resources
}

/// Physical id → resource type, for telling a stand-in's insides from the template's own resources.
fn owner_types(resources: &[Resource]) -> std::collections::HashMap<String, String> {
    resources.iter().map(|r| (r.physical_id.clone(), r.resource_type.clone())).collect()
}

fn is_inside_a_standin(resource: &Resource, types: &std::collections::HashMap<String, String>) -> bool {
    types.get(&resource.stack.id).is_some_and(|t| standin_types().contains(&t.as_str()))
}

/// The types [`standins`] replaces: the `TYPES` list of `tests/heat/standins.py`, the one place they are
/// written (read from its text, so no Python runs for it).
pub fn standin_types() -> &'static [&'static str] {
    static TYPES: std::sync::OnceLock<Vec<&'static str>> = std::sync::OnceLock::new();
    TYPES.get_or_init(|| {
        let list = venv::STANDINS_PY
            .split_once("\nTYPES = [\n")
            .and_then(|(_, rest)| rest.split_once("\n]"))
            .map(|(list, _)| list)
            .expect("standins.py has a `TYPES = [` list");
        list.lines().filter_map(|line| line.trim().strip_suffix(',')?.strip_prefix('"')?.strip_suffix('"')).collect()
    })
}

/// Percent-encodes one URL path segment (everything but RFC 3986's unreserved characters).
fn encode_segment(segment: &str) -> String {
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn decode_segment(segment: &str) -> String {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(byte) = u8::from_str_radix(&segment[i + 1..i + 3], 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_http_endpoints_are_signalled() {
        assert!(is_loopback_http("http://127.0.0.1:8004/v1/x/signal"));
        assert!(is_loopback_http("http://127.1.2.3/v1"));
        assert!(is_loopback_http("http://[::1]:80/v1"));
        assert!(!is_loopback_http("http://10.0.0.1:8004/v1"));
        assert!(!is_loopback_http("http://localhost.example:8004/v1"));
        assert!(!is_loopback_http("https://127.0.0.1/v1"));
        assert!(!is_loopback_http("http://127.0.0.1@10.0.0.1/v1"));
    }

    #[test]
    fn a_public_endpoint_maps_to_the_same_heat_on_loopback() {
        let gateway = Some(Ipv4Addr::new(10, 0, 0, 1));
        let path = "v1/stack-user-project/stacks/s/0f1e/resources/handle/signal";
        let public = format!("http://10.0.0.1:8004/{path}");
        let mapped = loopback_endpoint(&public, gateway, 8004);
        assert_eq!(mapped, format!("http://127.0.0.1:8004/{path}"));
        assert!(is_loopback_http(&mapped));
        // Without a public host the endpoint is on loopback already and stays as it is.
        let local = format!("http://127.0.0.1:8004/{path}");
        assert_eq!(loopback_endpoint(&local, None, 8004), local);
        assert_eq!(loopback_endpoint(&local, gateway, 8004), local);
        // Only this Heat's own public endpoint: another port, another host or a look-alike prefix stays
        // as it is, and signal() refuses it as not on loopback.
        for other in [
            format!("http://10.0.0.1:80040/{path}"),
            format!("http://10.0.0.1:9000/{path}"),
            format!("http://10.0.0.12:8004/{path}"),
            format!("https://10.0.0.1:8004/{path}"),
            format!("http://10.0.0.1:8004@10.9.9.9/{path}"),
        ] {
            let kept = loopback_endpoint(&other, gateway, 8004);
            assert_eq!(kept, other);
            assert!(!is_loopback_http(&kept), "{kept}");
        }
    }

    #[test]
    fn segments_round_trip_through_percent_encoding() {
        for s in ["plain", "with space", "ünïcode/slash%", "a-b_c.d~e"] {
            assert_eq!(decode_segment(&encode_segment(s)), s);
        }
        assert_eq!(encode_segment("a b/c"), "a%20b%2Fc");
        assert_eq!(decode_segment("bad%zz%"), "bad%zz%");
    }

    #[test]
    fn a_stack_link_names_its_stack() {
        let id = stack_id_from_href("http://127.0.0.1:1/v1/admin/stacks/my%20stack/abc-123").unwrap();
        assert_eq!(id, StackId { name: "my stack".into(), id: "abc-123".into() });
        assert!(stack_id_from_href("http://127.0.0.1:1/v1/admin").is_none());
    }

    #[test]
    fn paths_follow_nested_stacks_and_skip_standin_insides() {
        let r = |name: &str, ty: &str, stack: &str, physical: &str| Resource {
            path: String::new(),
            name: name.into(),
            resource_type: ty.into(),
            status: "CREATE_COMPLETE".into(),
            status_reason: String::new(),
            physical_id: physical.into(),
            stack: StackId { name: format!("name-{stack}"), id: stack.into() },
        };
        let resources = vec![
            r("nodes", "OS::Heat::ResourceGroup", "top", "rg"),
            r("0", "node.yaml", "rg", "n0"),
            r("server", "OS::Nova::Server", "n0", "srv"),
            r("octet3", "OS::Heat::RandomString", "srv", "rs"),
            r("handle", "OS::Heat::WaitConditionHandle", "n0", "h"),
        ];
        let paths: Vec<String> = with_paths(resources, "top").into_iter().map(|r| r.path).collect();
        assert_eq!(paths, ["nodes", "nodes/0", "nodes/0/server", "nodes/0/handle"]);
    }

    #[test]
    fn a_wait_handle_never_shows_its_token() {
        let handle = WaitHandle {
            path: "h".into(),
            endpoint: "http://127.0.0.1/x".into(),
            loopback_endpoint: "http://127.0.0.1/x".into(),
            token: "s3cret".into(),
        };
        assert!(!format!("{handle:?}").contains("s3cret"));
    }

    #[test]
    fn the_standin_types_are_read_from_the_generator() {
        let types = standin_types();
        let listed = venv::STANDINS_PY.matches("\n    \"OS::").count();
        assert_eq!(types.len(), listed, "{types:?}");
        assert!(types.contains(&"OS::Nova::Server") && types.contains(&"OS::Octavia::HealthMonitor"), "{types:?}");
        assert!(types.iter().all(|t| t.starts_with("OS::") && t.matches("::").count() == 2), "{types:?}");
    }
}
