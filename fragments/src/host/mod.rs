//! The one interface through which steps touch the machine and the network: files, directories, symlinks,
//! commands, systemd and HTTP. Steps never branch on the mode; the host does.
//!
//! - [`Mode::System`] acts on `/`.
//! - [`Mode::Rooted`] acts under a directory: files are written there, `systemctl` gets `--root`, and
//!   commands that cannot be pointed at a root are recorded instead of run.
//! - [`Mode::DryRun`] reads the machine (or a root) to tell what would change, and changes nothing; it
//!   sends no HTTP request either, so a plan never asks a signer for anything.
//!
//! HTTP goes through the run's one [`Client`] (CA bundle, proxy, retry policy), given with
//! [`Host::with_http`]; rooted hosts send for real, which tests use against loopback servers, except
//! requests to the node's own services (etcd, the API server), which no rooted tree runs: those are
//! recorded like commands that cannot act on a root, and so are downloads of programs for the node
//! ([`Destination`]), unless [`Host::sending`] says stand-ins serve them.
//!
//! Every call is recorded in the host's journal, which the runner drains after each step.

mod command;
mod fs;
mod journal;

pub use command::{Cmd, CmdOutput, CommandError, RootedRun};
pub use fs::write_state_file;
pub use journal::{Action, ActionKind, Outcome};

use crate::config::secret::mask_url_credentials;
use crate::http::{Client, Destination, HttpError, Request, Response};
use anyhow::{bail, Context as _, Result};
use journal::Journal;
use std::path::{Component, Path, PathBuf};

/// Where and how a host acts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mode {
    System,
    Rooted(PathBuf),
    DryRun { root: PathBuf },
}

/// A file a step wants to exist with exactly this content and mode (owned by root).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileSpec {
    pub path: PathBuf,
    pub contents: Vec<u8>,
    pub mode: u32,
}

impl FileSpec {
    pub fn new(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>, mode: u32) -> Self {
        FileSpec { path: path.into(), contents: contents.into(), mode }
    }
}

/// systemd operations steps ask for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Systemd {
    DaemonReload,
    Enable,
    /// Removes the unit's `[Install]` links (`systemctl --root` on a rooted host, like enable).
    Disable,
    Start,
    /// Start without waiting for the unit to be up (`systemctl --no-block start`): units that wait for
    /// each other (kubelet for the API server) must not hold up the run.
    StartNoBlock,
    Stop,
    Restart,
    /// Restart only if the unit is running, so a configuration change reaches it without starting it early.
    TryRestart,
}

impl Systemd {
    fn args(self) -> &'static [&'static str] {
        match self {
            Systemd::DaemonReload => &["daemon-reload"],
            Systemd::Enable => &["enable"],
            Systemd::Disable => &["disable"],
            Systemd::Start => &["start"],
            Systemd::StartNoBlock => &["--no-block", "start"],
            Systemd::Stop => &["stop"],
            Systemd::Restart => &["restart"],
            Systemd::TryRestart => &["try-restart"],
        }
    }
}

#[derive(Debug)]
pub struct Host {
    mode: Mode,
    journal: Journal,
    /// The client for [`Host::http`], or why there is none (its settings did not build).
    http: std::result::Result<Client, String>,
    /// What a rooted host sends beyond [`Destination::Remote`] (tests serve stand-ins for them).
    rooted_sends: Vec<Destination>,
}

impl Host {
    pub fn new(mode: Mode) -> Self {
        Host {
            mode,
            journal: Journal::default(),
            http: Err("no HTTP client was set up for this run".into()),
            rooted_sends: Vec::new(),
        }
    }

    /// Lets a rooted host send the requests to `destination` too: for tests that serve stand-ins for the
    /// node's etcd or API server, or for a download, on loopback.
    pub fn sending(mut self, destination: Destination) -> Self {
        self.rooted_sends.push(destination);
        self
    }

    /// The client [`Host::http`] sends with. An error (a CA bundle or proxy that does not build) is kept
    /// and returned by the first request, so only steps that need the network fail on it.
    pub fn with_http(mut self, client: std::result::Result<Client, HttpError>) -> Self {
        self.http = client.map_err(|e| e.to_string());
        self
    }

    pub fn mode(&self) -> &Mode {
        &self.mode
    }

    /// The directory that stands for `/`.
    pub fn root(&self) -> &Path {
        match &self.mode {
            Mode::System => Path::new("/"),
            Mode::Rooted(root) | Mode::DryRun { root } => root,
        }
    }

    pub fn is_dry_run(&self) -> bool {
        matches!(self.mode, Mode::DryRun { .. })
    }

    /// Where an absolute node path lives on this host. Relative paths and `..` are refused so that
    /// nothing a step asks for can land outside the root.
    pub fn resolve(&self, path: &Path) -> Result<PathBuf> {
        if !path.is_absolute() || path.components().any(|c| matches!(c, Component::ParentDir)) {
            bail!("refusing path {}: steps use absolute paths without '..'", path.display());
        }
        Ok(self.root().join(path.strip_prefix("/").expect("absolute path")))
    }

    /// Everything recorded since the last call.
    pub fn take_actions(&self) -> Vec<Action> {
        self.journal.take()
    }

    pub fn read(&self, path: &Path) -> Result<Option<Vec<u8>>> {
        let real = self.resolve(path)?;
        match std::fs::read(&real) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn read_to_string(&self, path: &Path) -> Result<Option<String>> {
        self.read(path)?
            .map(|bytes| String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8", path.display())))
            .transpose()
    }

    pub fn exists(&self, path: &Path) -> Result<bool> {
        Ok(self.resolve(path)?.symlink_metadata().is_ok())
    }

    /// Makes `spec.path` hold exactly `spec.contents` with `spec.mode`, atomically; "unchanged" when it
    /// already does.
    pub fn write_file(&self, spec: &FileSpec) -> Result<Outcome> {
        let real = self.resolve(&spec.path)?;
        let detail = format!("{} bytes, mode {:04o}", spec.contents.len(), spec.mode);
        let outcome = if fs::file_matches(&real, &spec.contents, spec.mode)? {
            Outcome::Unchanged
        } else if self.is_dry_run() {
            Outcome::WouldChange
        } else {
            fs::write_atomic(&real, &spec.contents, spec.mode)
                .with_context(|| format!("writing {}", spec.path.display()))?;
            Outcome::Changed
        };
        self.journal.record(ActionKind::File, spec.path.display(), detail, outcome);
        Ok(outcome)
    }

    pub fn ensure_dir(&self, path: &Path, mode: u32) -> Result<Outcome> {
        let real = self.resolve(path)?;
        let outcome = if fs::dir_matches(&real, mode)? {
            Outcome::Unchanged
        } else if self.is_dry_run() {
            Outcome::WouldChange
        } else {
            fs::ensure_dir(&real, mode).with_context(|| format!("creating directory {}", path.display()))?;
            Outcome::Changed
        };
        self.journal.record(ActionKind::Dir, path.display(), format!("mode {mode:04o}"), outcome);
        Ok(outcome)
    }

    /// Makes `link` a symlink to `target` (a node path, kept as given).
    pub fn symlink(&self, target: &Path, link: &Path) -> Result<Outcome> {
        let real = self.resolve(link)?;
        let outcome = if std::fs::read_link(&real).ok().as_deref() == Some(target) {
            Outcome::Unchanged
        } else if self.is_dry_run() {
            Outcome::WouldChange
        } else {
            fs::symlink_atomic(target, &real).with_context(|| format!("linking {}", link.display()))?;
            Outcome::Changed
        };
        self.journal.record(ActionKind::Symlink, link.display(), format!("-> {}", target.display()), outcome);
        Ok(outcome)
    }

    pub fn remove_file(&self, path: &Path) -> Result<Outcome> {
        let real = self.resolve(path)?;
        let outcome = if real.symlink_metadata().is_err() {
            Outcome::Unchanged
        } else if self.is_dry_run() {
            Outcome::WouldChange
        } else {
            std::fs::remove_file(&real).with_context(|| format!("removing {}", path.display()))?;
            fs::sync_parent(&real)?;
            Outcome::Changed
        };
        self.journal.record(ActionKind::Remove, path.display(), String::new(), outcome);
        Ok(outcome)
    }

    /// Runs a command, or records it where this host cannot run it. The output says which.
    pub fn run(&self, cmd: &Cmd) -> Result<CmdOutput> {
        let argv = match (&self.mode, cmd.rooted) {
            (Mode::System, _) => Some(cmd.argv()),
            (Mode::Rooted(root), RootedRun::WithFlag(flag)) => Some(cmd.argv_with_root(flag, root)),
            (Mode::Rooted(_), RootedRun::Never) | (Mode::DryRun { .. }, _) => None,
        };
        let Some(argv) = argv else {
            if cmd.read_only {
                return Ok(CmdOutput::not_run());
            }
            self.journal.record(ActionKind::Command, cmd.display(), "not run on this host".into(), Outcome::NotRun);
            return Ok(CmdOutput::not_run());
        };
        let output = command::run(&argv, cmd.timeout, &cmd.env);
        let outcome = match &output {
            Ok(_) if cmd.read_only => Outcome::Unchanged,
            Ok(_) => Outcome::Changed,
            Err(_) => Outcome::Failed,
        };
        self.journal.record(ActionKind::Command, cmd.display(), String::new(), outcome);
        Ok(output?)
    }

    /// Sends `req` with the run's client (retries per its policy) and returns the answer whatever its
    /// status; on a dry run records it and returns `None`, the answer a real run would get. So does a rooted
    /// host for a request to the node's own services, which do not run under a root, or for a program's
    /// download (see [`Destination`]; unless [`Host::sending`]). `what` says what the request is for ("signing kubelet
    /// certificate") in the journal, which never holds header values or bodies (tokens, passwords).
    pub fn http(&self, req: &Request, what: &str) -> std::result::Result<Option<Response>, HttpError> {
        let target = format!("{} {}", req.method, mask_url_credentials(&req.url));
        let unsent = match self.mode {
            Mode::DryRun { .. } => Some(what.to_string()),
            Mode::Rooted(_) if !self.rooted_sends.contains(&req.destination) => match req.destination {
                Destination::Remote => None,
                Destination::NodeService => {
                    Some(format!("{what} (not sent: the node's services do not run under a root)"))
                }
                Destination::Download => Some(format!("{what} (not fetched: a rooted run downloads no programs)")),
            },
            Mode::Rooted(_) | Mode::System => None,
        };
        if let Some(detail) = unsent {
            self.journal.record(ActionKind::Http, target, detail, Outcome::NotRun);
            return Ok(None);
        }
        let sent = match &self.http {
            Ok(client) => client.send(req),
            Err(reason) => Err(HttpError::Config(reason.clone())),
        };
        match sent {
            Ok(response) => {
                let retried = match response.attempts {
                    1 => String::new(),
                    n => format!(" after {n} attempts"),
                };
                let detail = format!("{what}: HTTP {}{retried}", response.status);
                self.journal.record(ActionKind::Http, target, detail, Outcome::Sent);
                Ok(Some(response))
            }
            Err(e) => {
                self.journal.record(ActionKind::Http, target, what.to_string(), Outcome::Failed);
                Err(e)
            }
        }
    }

    /// Records what a step did to state kept by a service rather than on the node's disk, from the
    /// service's answers: a Kubernetes object created, an etcd key found as it should be.
    pub fn record_remote(&self, target: impl std::fmt::Display, detail: String, outcome: Outcome) {
        self.journal.record(ActionKind::Remote, target, detail, outcome);
    }

    /// A systemd operation. Rooted hosts can only enable and disable (through `systemctl --root`); the rest
    /// is recorded.
    pub fn systemd(&self, op: Systemd, unit: Option<&str>) -> Result<CmdOutput> {
        let mut cmd = Cmd::new("systemctl").args(op.args().iter().copied());
        if let Some(unit) = unit {
            cmd = cmd.arg(unit);
        }
        if matches!(op, Systemd::Enable | Systemd::Disable) {
            cmd = cmd.rooted(RootedRun::WithFlag("--root"));
        }
        self.run(&cmd)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rooted_writes_stay_under_the_root_and_repeat_as_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(Mode::Rooted(dir.path().to_path_buf()));
        let spec = FileSpec::new("/etc/kubernetes/cloud-config", "x=1\n", 0o600);
        assert_eq!(host.write_file(&spec).unwrap(), Outcome::Changed);
        let real = dir.path().join("etc/kubernetes/cloud-config");
        assert_eq!(std::fs::read(&real).unwrap(), b"x=1\n");
        assert_eq!(std::fs::metadata(&real).unwrap().permissions().mode() & 0o7777, 0o600);
        assert_eq!(host.write_file(&spec).unwrap(), Outcome::Unchanged);
        std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(host.write_file(&spec).unwrap(), Outcome::Changed, "a wrong mode is a change");
        assert!(host.resolve(Path::new("/etc/../../escape")).is_err());
        assert!(host.resolve(Path::new("relative")).is_err());
        assert_eq!(host.take_actions().len(), 3);
    }

    #[test]
    fn dry_run_reports_without_touching() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(Mode::DryRun { root: dir.path().to_path_buf() });
        let spec = FileSpec::new("/etc/a", "a", 0o644);
        assert_eq!(host.write_file(&spec).unwrap(), Outcome::WouldChange);
        assert_eq!(host.ensure_dir(Path::new("/etc/d"), 0o755).unwrap(), Outcome::WouldChange);
        assert_eq!(host.symlink(Path::new("/x"), Path::new("/etc/l")).unwrap(), Outcome::WouldChange);
        let out = host.run(&Cmd::new("false")).unwrap();
        assert!(!out.ran);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
        let kinds: Vec<Outcome> = host.take_actions().into_iter().map(|a| a.outcome).collect();
        assert_eq!(kinds, [Outcome::WouldChange, Outcome::WouldChange, Outcome::WouldChange, Outcome::NotRun]);
    }

    #[test]
    fn http_is_sent_by_rooted_hosts_and_only_recorded_by_dry_runs() {
        use crate::http::{Client, HttpSettings, RetryPolicy};
        use crate::test_server::TestServer;
        let server = TestServer::script(&[(403, "{}")]);
        let url = server.url("/v1/x");
        let request = Request::get(&url).header("X-Auth-Token", "tok-secret");
        let client = || Client::new(&HttpSettings::default(), RetryPolicy::default());
        let dir = tempfile::tempdir().unwrap();

        let rooted = Host::new(Mode::Rooted(dir.path().to_path_buf())).with_http(client());
        let answer = rooted.http(&request, "reading x").unwrap().expect("a rooted host sends");
        assert_eq!(answer.status, 403, "any status is an answer");
        let dry = Host::new(Mode::DryRun { root: dir.path().to_path_buf() }).with_http(client());
        assert_eq!(dry.http(&request, "reading x").unwrap(), None);
        let unset = Host::new(Mode::Rooted(dir.path().to_path_buf()));
        assert!(matches!(unset.http(&request, "reading x"), Err(crate::http::HttpError::Config(_))));

        let recorded: Vec<(Outcome, String)> = [rooted, dry, unset]
            .iter()
            .flat_map(|h| h.take_actions())
            .map(|a| (a.outcome, format!("{} {}", a.target, a.detail)))
            .collect();
        let target = format!("GET {url}");
        assert_eq!(
            recorded,
            [
                (Outcome::Sent, format!("{target} reading x: HTTP 403")),
                (Outcome::NotRun, format!("{target} reading x")),
                (Outcome::Failed, format!("{target} reading x")),
            ]
        );
    }

    #[test]
    fn rooted_hosts_send_to_the_nodes_services_only_when_told_they_are_served() {
        use crate::http::{Client, HttpSettings, RetryPolicy};
        use crate::test_server::TestServer;
        let server = TestServer::script(&[(200, "ok")]);
        let url = server.url("/healthz");
        let dir = tempfile::tempdir().unwrap();
        let rooted = || {
            Host::new(Mode::Rooted(dir.path().to_path_buf()))
                .with_http(Client::new(&HttpSettings::default(), RetryPolicy::default()))
        };
        let local = Request::get(&url).to(Destination::NodeService);
        let plain = rooted();
        assert_eq!(plain.http(&local, "probing").unwrap(), None);
        assert_eq!(plain.http(&Request::get(&url), "probing").unwrap().unwrap().status, 200);
        let served = rooted().sending(Destination::NodeService);
        assert_eq!(served.http(&local, "probing").unwrap().unwrap().body, b"ok");
        let recorded: Vec<(Outcome, String)> =
            plain.take_actions().into_iter().map(|a| (a.outcome, a.detail)).collect();
        assert_eq!(
            recorded,
            [
                (Outcome::NotRun, "probing (not sent: the node's services do not run under a root)".to_string()),
                (Outcome::Sent, "probing: HTTP 200".to_string())
            ]
        );
        served.record_remote("ConfigMap kube-system/x", "created".into(), Outcome::Changed);
        assert_eq!(served.take_actions().last().unwrap().kind, ActionKind::Remote);
    }

    #[test]
    fn rooted_commands_run_only_when_they_take_a_root() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::new(Mode::Rooted(dir.path().to_path_buf()));
        assert!(!host.run(&Cmd::new("update-ca-certificates")).unwrap().ran);
        let echo = Cmd::new("echo").arg("hi").rooted(RootedRun::WithFlag("--root"));
        let out = host.run(&echo).unwrap();
        assert!(out.ran);
        assert_eq!(out.stdout, format!("--root={} hi\n", dir.path().display()));
    }
}
