//! A real etcd (Debian's `etcd-server`, 3.4) on loopback, started from an `etcd.conf` of `ETCD_*="…"`
//! assignments as the etcd step writes one, and `etcdctl` (`etcd-client`) to read back what the agent
//! wrote, through the v3 or the v2 API.
//!
//! The process gets exactly the file's variables (and `PATH`), with `ETCD_DATA_DIR` moved into a
//! temporary directory; it is stopped when the fixture is dropped. `.ci/run` installs both packages.

use anyhow::{bail, Context as _, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a loopback etcd may take to become healthy (about a second here).
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The client certificate `etcdctl` shows, as files.
#[derive(Clone, Debug)]
pub struct EtcdctlTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A running etcd, stopped when dropped.
#[derive(Debug)]
pub struct RealEtcd {
    child: Child,
    /// The client URL `etcdctl` uses: the first advertised https one with certificates, else the first.
    pub client_url: String,
    tls: Option<EtcdctlTls>,
    log: PathBuf,
    _data: tempfile::TempDir,
}

impl Drop for RealEtcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loopback port nobody listens on right now (the kernel's choice, released at once).
pub fn free_port() -> u16 {
    free_ports::<1>()[0]
}

/// `N` different free loopback ports: all held at once before any is released, since the kernel may hand
/// a just-released port out again (a server once got the same port for its client and peer URLs).
pub fn free_ports<const N: usize>() -> [u16; N] {
    let listeners: Vec<_> =
        (0..N).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port")).collect();
    std::array::from_fn(|i| listeners[i].local_addr().expect("a bound listener's address").port())
}

/// The `NAME=value` assignments of a shell-style file, quotes removed, comments and blank lines skipped.
pub fn assignments(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let unquoted = ['"', '\''].iter().find_map(|q| v.strip_prefix(*q)?.strip_suffix(*q)).unwrap_or(v);
            (k.trim().to_string(), unquoted.to_string())
        })
        .collect()
}

impl RealEtcd {
    /// Starts etcd with the variables of `conf` and waits until `etcdctl endpoint health` says healthy;
    /// `tls` is what `etcdctl` presents (`None`: plain HTTP).
    pub fn start(conf: &Path, tls: Option<EtcdctlTls>) -> Result<RealEtcd> {
        let etcd = which("etcd").context("etcd is not installed (Debian package etcd-server; .ci/run installs it)")?;
        let text = std::fs::read_to_string(conf).with_context(|| format!("reading {}", conf.display()))?;
        let vars = assignments(&text);
        let get = |name: &str| vars.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.clone());
        // With certificates, the first advertised https URL; else the first one.
        let client_url = get("ETCD_ADVERTISE_CLIENT_URLS")
            .and_then(|urls| {
                let urls: Vec<String> = urls.split(',').map(|u| u.trim().to_string()).collect();
                let https = urls.iter().find(|u| u.starts_with("https://")).cloned();
                if tls.is_some() {
                    https
                } else {
                    urls.first().cloned()
                }
            })
            .context("the etcd configuration advertises no client URL to use")?;
        let data = tempfile::tempdir()?;
        let log = data.path().join("etcd.log");
        let out = std::fs::File::create(&log)?;
        let mut command = Command::new(etcd);
        command.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
        for (name, value) in &vars {
            command.env(name, value);
        }
        command.env("ETCD_DATA_DIR", data.path().join("member-data"));
        let child =
            command.stdin(Stdio::null()).stdout(out.try_clone()?).stderr(out).spawn().context("starting etcd")?;
        let mut etcd = RealEtcd { child, client_url, tls, log, _data: data };
        etcd.wait_healthy()?;
        Ok(etcd)
    }

    fn wait_healthy(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait()? {
                bail!("etcd exited ({status}) while starting:\n{}", self.log_tail());
            }
            if self.etcdctl(3, &["endpoint", "health"]).is_ok() {
                return Ok(());
            }
            if started.elapsed() > START_TIMEOUT {
                bail!("etcd was not healthy within {START_TIMEOUT:?}:\n{}", self.log_tail());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// The end of etcd's own log, for failure messages.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Runs `etcdctl` against this etcd through API version `api` (2 or 3) and returns its stdout; an
    /// error with its stderr when it fails.
    pub fn etcdctl(&self, api: u8, args: &[&str]) -> Result<String> {
        let mut command = Command::new("etcdctl");
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("ETCDCTL_API", api.to_string());
        command.args(["--endpoints", &self.client_url]);
        if let Some(tls) = &self.tls {
            let flags =
                if api == 2 { ["--ca-file", "--cert-file", "--key-file"] } else { ["--cacert", "--cert", "--key"] };
            for (flag, file) in flags.into_iter().zip([&tls.ca, &tls.cert, &tls.key]) {
                command.arg(flag).arg(file);
            }
        }
        let out = command.args(args).output().context("running etcdctl (Debian package etcd-client)")?;
        if !out.status.success() {
            bail!(
                "etcdctl {} failed ({}): {}",
                args.join(" "),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| Path::new(dir).join(program)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_read_like_a_sourced_file() {
        let text = "# etcd\nETCD_NAME=\"10.0.0.4\"\n\nETCD_X='a b'\nETCD_Y=plain\n";
        assert_eq!(
            assignments(text),
            [
                ("ETCD_NAME".into(), "10.0.0.4".into()),
                ("ETCD_X".into(), "a b".into()),
                ("ETCD_Y".into(), "plain".into())
            ]
        );
    }
}
