//! A stand-in for dl.k8s.io on loopback: each release's kubelet at upstream's path
//! (`/release/<tag>/bin/linux/<arch>/kubelet`) with its `.sha256` beside it, as the real site and its
//! mirrors publish them, streamed from the file the test built. Every request is kept, so a test can
//! tell what the nodes fetched.

use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

/// A served file and its SHA-256.
struct File {
    path: PathBuf,
    sha256: String,
}

/// The running site; stops when dropped.
pub struct Downloads {
    server: Arc<tiny_http::Server>,
    addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Downloads {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloads").field("addr", &self.addr).finish()
    }
}

/// Where upstream publishes the kubelet of `tag` for `arch`.
pub fn kubelet_path(tag: &str, arch: &str) -> String {
    format!("/release/{tag}/bin/linux/{arch}/kubelet")
}

fn sha256_of(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(ring::digest::digest(&ring::digest::SHA256, &bytes).as_ref().iter().map(|b| format!("{b:02x}")).collect())
}

impl Downloads {
    /// Serves `files` (URL path → file on this machine) on 127.0.0.1.
    pub fn start(files: &[(String, PathBuf)]) -> Result<Downloads> {
        let mut table = BTreeMap::new();
        for (url, path) in files {
            table.insert(url.clone(), File { path: path.clone(), sha256: sha256_of(path)? });
        }
        let server =
            Arc::new(tiny_http::Server::http("127.0.0.1:0").map_err(|e| anyhow::anyhow!("downloads stand-in: {e}"))?);
        let addr = server.server_addr().to_ip().context("the downloads stand-in has no IP address")?;
        let requests = Arc::new(Mutex::new(Vec::new()));
        let (incoming, seen) = (server.clone(), requests.clone());
        std::thread::spawn(move || {
            for request in incoming.incoming_requests() {
                let url = request.url().to_string();
                seen.lock().unwrap().push(url.clone());
                let answer = match url.strip_suffix(".sha256").map_or_else(|| (false, &url[..]), |u| (true, u)) {
                    (true, path) if table.contains_key(path) => {
                        tiny_http::Response::from_string(table[path].sha256.clone()).boxed()
                    }
                    (false, path) if table.contains_key(path) => match std::fs::File::open(&table[path].path) {
                        Ok(file) => tiny_http::Response::from_file(file).boxed(),
                        Err(e) => tiny_http::Response::from_string(e.to_string()).with_status_code(500).boxed(),
                    },
                    _ => tiny_http::Response::from_string("no such file").with_status_code(404).boxed(),
                };
                let _ = request.respond(answer);
            }
        });
        Ok(Downloads { server, addr, requests })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Every path asked for so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for Downloads {
    fn drop(&mut self) {
        self.server.unblock();
    }
}
