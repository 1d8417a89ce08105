//! A real container registry on this machine's loopback (Debian's `docker-registry`, distribution 2.8),
//! which the end-to-end tier forwards into its network as an air-gapped cloud's mirror, and a push of
//! [`crate::oci`] images into it through the registry's own HTTP API (monolithic blob uploads, then
//! the manifest by tag). `.ci/run` installs docker-registry.

use crate::etcd::free_port;
use crate::oci::{Blob, Built, MANIFEST_TYPE};
use anyhow::{bail, Context as _, Result};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running registry, stopped when dropped.
#[derive(Debug)]
pub struct Registry {
    child: Child,
    pub port: u16,
    dir: tempfile::TempDir,
}

impl Registry {
    /// Starts a registry with an empty store at `127.0.0.1:<free port>`.
    pub fn start() -> Result<Registry> {
        let dir = tempfile::Builder::new().prefix("hearth-registry-").tempdir()?;
        let port = free_port();
        let config = format!(
            "version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("store").display()
        );
        let path = dir.path().join("config.yml");
        std::fs::write(&path, config)?;
        let log = std::fs::File::create(dir.path().join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&path)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry (Debian package docker-registry; .ci/run installs it)")?;
        let mut registry = Registry { child, port, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while registry.get("/v2/").is_err() {
            if let Some(status) = registry.child.try_wait()? {
                bail!("docker-registry exited ({status}):\n{}", registry.log());
            }
            if Instant::now() > deadline {
                bail!("docker-registry did not answer within 20 s:\n{}", registry.log());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(registry)
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn get(&self, path: &str) -> Result<ureq::Response> {
        ureq::get(&self.url(path))
            .timeout(Duration::from_secs(10))
            .call()
            .map_err(|e| anyhow::anyhow!("GET {path}: {e}"))
    }

    /// What the registry printed.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Pushes `image` as `<name>:<tag>` (blobs the registry has already are skipped).
    pub fn push(&self, name: &str, tag: &str, image: &Built) -> Result<()> {
        for blob in image.layers.iter().chain([&image.config]) {
            self.push_blob(name, blob).with_context(|| format!("pushing {} of {name}:{tag}", blob.digest))?;
        }
        let path = format!("/v2/{name}/manifests/{tag}");
        ureq::put(&self.url(&path))
            .timeout(Duration::from_secs(60))
            .set("Content-Type", MANIFEST_TYPE)
            .send_bytes(&image.manifest.bytes)
            .map_err(|e| anyhow::anyhow!("PUT {path}: {e}"))?;
        Ok(())
    }

    fn push_blob(&self, name: &str, blob: &Blob) -> Result<()> {
        let head = format!("/v2/{name}/blobs/{}", blob.digest);
        if ureq::head(&self.url(&head)).timeout(Duration::from_secs(10)).call().is_ok() {
            return Ok(());
        }
        let start = format!("/v2/{name}/blobs/uploads/");
        let started = ureq::post(&self.url(&start))
            .timeout(Duration::from_secs(10))
            .call()
            .map_err(|e| anyhow::anyhow!("POST {start}: {e}"))?;
        let location = started.header("Location").context("the upload's answer has no Location")?.to_string();
        let location = if location.starts_with("http") { location } else { self.url(&location) };
        let separator = if location.contains('?') { '&' } else { '?' };
        ureq::put(&format!("{location}{separator}digest={}", blob.digest))
            .timeout(Duration::from_secs(300))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(&blob.bytes)
            .map_err(|e| anyhow::anyhow!("PUT the upload of {}: {e}", blob.digest))?;
        Ok(())
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
