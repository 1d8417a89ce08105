//! A stand-in for dl.k8s.io on loopback: each release's kubelet at upstream's path
//! (`/release/<tag>/bin/linux/<arch>/kubelet`) with its `.sha256` beside it, as the real site and its
//! mirrors publish them, streamed from the file the test built. Every request is kept, so a test can
//! tell what the nodes fetched.

use crate::loopback::{Loopback, Reply};
use anyhow::{Context as _, Result};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;

/// A served file and its SHA-256.
struct File {
    path: PathBuf,
    sha256: String,
}

/// The running site; stops when dropped.
#[derive(Debug)]
pub struct Downloads {
    server: Loopback,
}

/// Where upstream publishes the kubelet of `tag` for `arch`.
pub fn kubelet_path(tag: &str, arch: &str) -> String {
    format!("/release/{tag}/bin/linux/{arch}/kubelet")
}

fn sha256_of(path: &std::path::Path) -> Result<String> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(hearth_fragments::digest::sha256_hex(&bytes))
}

impl Downloads {
    /// Serves `files` (URL path → file on this machine) on 127.0.0.1.
    pub fn start(files: &[(String, PathBuf)]) -> Result<Downloads> {
        let mut table = BTreeMap::new();
        for (url, path) in files {
            table.insert(url.clone(), File { path: path.clone(), sha256: sha256_of(path)? });
        }
        let server = Loopback::builder().name("downloads stand-in").serve(move |request| {
            let url = &request.url;
            match url.strip_suffix(".sha256").map_or_else(|| (false, &url[..]), |u| (true, u)) {
                (true, path) if table.contains_key(path) => Reply::text(200, table[path].sha256.clone()),
                (false, path) if table.contains_key(path) => Reply::file(&table[path].path),
                _ => Reply::text(404, "no such file"),
            }
        })?;
        Ok(Downloads { server })
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// Every path asked for so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.server.requests().into_iter().map(|request| request.url).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serves_each_file_and_its_digest_at_upstreams_paths_and_keeps_every_path_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let kubelet = dir.path().join("kubelet");
        std::fs::write(&kubelet, "#!/bin/sh\necho kubelet\n").unwrap();
        let path = kubelet_path("v1.34.4", "amd64");
        let site = Downloads::start(&[(path.clone(), kubelet.clone())]).unwrap();
        let get = |path: &str| match ureq::get(&format!("http://{}{path}", site.addr())).call() {
            Ok(r) | Err(ureq::Error::Status(_, r)) => (r.status(), r.into_string().unwrap()),
            Err(e) => panic!("{path}: {e}"),
        };
        assert_eq!(get(&path), (200, "#!/bin/sh\necho kubelet\n".to_string()));
        assert_eq!(get(&format!("{path}.sha256")), (200, sha256_of(&kubelet).unwrap()));
        assert_eq!(get("/release/v1.34.4/bin/linux/arm64/kubelet"), (404, "no such file".to_string()));
        std::fs::remove_file(&kubelet).unwrap();
        assert_eq!(get(&path).0, 500, "a file gone since is an error of the site");
        let sha = format!("{path}.sha256");
        assert_eq!(
            site.requests(),
            [path.as_str(), sha.as_str(), "/release/v1.34.4/bin/linux/arm64/kubelet", path.as_str()]
        );
    }
}
