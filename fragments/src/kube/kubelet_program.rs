//! The kubelet as a program of the host, on the OS families that run upstream's images: upstream publishes
//! no kubelet image, but a kubelet binary for every release and architecture, with its SHA-256 beside it.
//!
//! The kubelet unit runs [`PROGRAM`], which is, in order:
//! 1. a link to the image's own [`IMAGE_KUBELET`], when `kubernetes.kubelet_url` is not set and that
//!    reports the release of `kubernetes.tag` (an image built for the cluster);
//! 2. kept as it is when a run already put the release there: it has `kubernetes.kubelet_sha256`'s
//!    digest, or (none configured) reports the release;
//! 3. otherwise fetched from `kubernetes.kubelet_url` (default [`default_url`], dl.k8s.io), checked
//!    against `kubernetes.kubelet_sha256` or the `<url>.sha256` published beside it (dl.k8s.io's layout,
//!    which mirrors keep) before a byte is written, and installed atomically, mode 0755.
//!
//! So a converged node asks nothing of the network on its next run. A rooted run runs no program and
//! downloads nothing ([`Destination::Download`]): it keeps a kubelet it finds and records the download
//! it would make.

use crate::config::NodeConfig;
use crate::digest::sha256_hex;
use crate::host::{Cmd, FileSpec};
use crate::http::{Destination, Request};
use crate::step::Context;
use anyhow::{bail, Result};
use std::path::Path;
use std::time::Duration;

/// Where an image that carries a kubelet has it.
pub const IMAGE_KUBELET: &str = "/usr/bin/kubelet";
/// What the kubelet unit runs: the kubelet the agent fetched, or a link to the image's.
pub const PROGRAM: &str = "/usr/local/bin/kubelet";

/// Each attempt at the kubelet (about 85 MB) may take this long: 140 kB/s at worst.
const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// dl.k8s.io's kubelet of `tag` for `arch` (Go's name: `amd64`, `arm64`, …).
pub fn default_url(tag: &str, arch: &str) -> String {
    format!("https://dl.k8s.io/release/{tag}/bin/linux/{arch}/kubelet")
}

/// The node's architecture as Kubernetes' downloads name it: `node.arch` (`ARCH`), else the agent's own
/// (a static binary built for the node).
fn release_arch(config: &NodeConfig) -> Result<&'static str> {
    let arch = match config.node.arch.as_str() {
        "" => std::env::consts::ARCH,
        configured => configured,
    };
    Ok(match arch {
        "x86_64" | "amd64" => "amd64",
        "aarch64" | "arm64" => "arm64",
        "ppc64le" | "powerpc64le" => "ppc64le",
        "s390x" => "s390x",
        other => bail!(
            "node.arch (ARCH) {other:?}: Kubernetes publishes no kubelet for it; set kubernetes.kubelet_url \
             (KUBELET_URL)"
        ),
    })
}

/// Where the kubelet of this node comes from.
pub fn url(config: &NodeConfig) -> Result<String> {
    Ok(match config.kubernetes.kubelet_url.as_str() {
        "" => default_url(&config.kubernetes.tag, release_arch(config)?),
        configured => configured.to_string(),
    })
}

/// What `kubelet --version` prints for `tag`.
fn version_line(tag: &str) -> String {
    let tag = tag.trim();
    format!("Kubernetes {}", if tag.starts_with('v') { tag.to_string() } else { format!("v{tag}") })
}

/// Whether the program at `path` is the kubelet of `tag`: `None` when this host runs no programs.
fn reports_release(ctx: &Context, path: &str, tag: &str) -> Result<Option<bool>> {
    let output = ctx.host.run(&Cmd::new(path).arg("--version").reads_only().timeout(Duration::from_secs(30)));
    match output {
        Ok(out) if !out.ran => Ok(None),
        Ok(out) => Ok(Some(out.stdout.trim() == version_line(tag))),
        // A program that does not run is not the kubelet this node needs.
        Err(_) => Ok(Some(false)),
    }
}

/// Makes [`PROGRAM`] the kubelet of the node's release, fetching it if it has to.
pub fn ensure(ctx: &Context) -> Result<()> {
    let config = ctx.config;
    let tag = &config.kubernetes.tag;
    let configured_sha = config.kubernetes.kubelet_sha256.trim().to_ascii_lowercase();
    if config.kubernetes.kubelet_url.is_empty()
        && ctx.host.exists(Path::new(IMAGE_KUBELET))?
        && reports_release(ctx, IMAGE_KUBELET, tag)? != Some(false)
    {
        ctx.host.symlink(Path::new(IMAGE_KUBELET), Path::new(PROGRAM))?;
        return Ok(());
    }
    let current = match configured_sha.as_str() {
        "" => ctx.host.exists(Path::new(PROGRAM))? && reports_release(ctx, PROGRAM, tag)? != Some(false),
        wanted => ctx.host.read(Path::new(PROGRAM))?.is_some_and(|installed| sha256_hex(&installed) == wanted),
    };
    if current {
        return Ok(());
    }
    let url = url(config)?;
    let expected = match configured_sha.as_str() {
        "" => published_sha256(ctx, &url)?,
        configured => Some(configured.to_string()),
    };
    let request = Request::get(&url).to(Destination::Download).attempt_timeout(DOWNLOAD_TIMEOUT);
    // Neither is sent on a rooted or dry run, which records them.
    let (Some(response), Some(expected)) = (ctx.host.http(&request, "fetching the kubelet")?, expected) else {
        return Ok(());
    };
    let response = response.error_for_status("fetching the kubelet")?;
    let got = sha256_hex(&response.body);
    if got != expected {
        bail!(
            "the kubelet from {url} ({} bytes) has SHA-256 {got}, expected {expected}: not installed",
            response.body.len()
        );
    }
    // Over a link to the image's kubelet too: the rename replaces the link, never its target.
    ctx.host.write_file(&FileSpec::new(PROGRAM, response.body, 0o755))?;
    Ok(())
}

/// The digest published at `<url>.sha256` (its first word, 64 hexadecimal digits).
fn published_sha256(ctx: &Context, url: &str) -> Result<Option<String>> {
    let sha_url = format!("{url}.sha256");
    let Some(response) =
        ctx.host.http(&Request::get(&sha_url).to(Destination::Download), "fetching the kubelet's SHA-256")?
    else {
        return Ok(None);
    };
    let response = response.error_for_status("fetching the kubelet's SHA-256")?;
    let text = String::from_utf8_lossy(&response.body);
    let word = text.split_whitespace().next().unwrap_or_default().to_ascii_lowercase();
    if word.len() != 64 || !word.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "{sha_url} holds {:?}, not a SHA-256: set kubernetes.kubelet_sha256 (KUBELET_SHA256)",
            response.text_tail(80)
        );
    }
    Ok(Some(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Role;
    use crate::facts::{Facts, OsFamily};
    use crate::host::{ActionKind, Host, Mode, Outcome};
    use crate::http::{Client, HttpSettings, RetryPolicy};
    use crate::test_server::TestServer;

    const KUBELET: &[u8] = b"#!/bin/sh\necho Kubernetes v1.34.4\n";

    /// A loopback download site: `files` by path; every path asked for is kept.
    fn site(files: Vec<(&'static str, Vec<u8>)>) -> TestServer {
        TestServer::start(move |_, url| match files.iter().find(|(path, _)| *path == url) {
            Some((_, body)) => tiny_http::Response::from_data(body.clone()),
            None => tiny_http::Response::from_data(b"no such file".to_vec()).with_status_code(404),
        })
    }

    fn config(url: &str, sha: &str) -> NodeConfig {
        let mut c = NodeConfig::new(Role::Minion);
        c.kubernetes.tag = "v1.34.4".into();
        c.kubernetes.kubelet_url = url.into();
        c.kubernetes.kubelet_sha256 = sha.into();
        c
    }

    fn host(root: &Path, downloads: bool) -> Host {
        let host = Host::new(Mode::Rooted(root.to_path_buf()))
            .with_http(Client::new(&HttpSettings::default(), RetryPolicy::default()));
        if downloads {
            host.sending(Destination::Download)
        } else {
            host
        }
    }

    fn ensure_on(host: &Host, config: &NodeConfig) -> Result<()> {
        let facts = Facts { hostname: "minion-0".into(), os: OsFamily::Debian };
        ensure(&Context { config, facts: &facts, host })
    }

    #[test]
    fn fetches_the_release_checks_its_published_digest_and_keeps_it_after() {
        let sha = sha256_hex(KUBELET);
        let downloads =
            site(vec![("/kubelet", KUBELET.to_vec()), ("/kubelet.sha256", format!("{sha}  kubelet\n").into_bytes())]);
        let base = downloads.url("");
        let root = tempfile::tempdir().unwrap();
        let installed = root.path().join(PROGRAM.trim_start_matches('/'));
        let host = host(root.path(), true);
        ensure_on(&host, &config(&format!("{base}/kubelet"), "")).unwrap();
        assert_eq!(std::fs::read(&installed).unwrap(), KUBELET);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&installed).unwrap().permissions().mode() & 0o777, 0o755);
        assert_eq!(downloads.asked(), ["/kubelet.sha256", "/kubelet"]);

        // Converged: neither asked again, with the digest published or configured.
        ensure_on(&host, &config(&format!("{base}/kubelet"), "")).unwrap();
        ensure_on(&host, &config(&format!("{base}/kubelet"), &sha.to_uppercase())).unwrap();
        assert_eq!(downloads.asked().len(), 2);
        // A configured digest that the installed program does not have fetches it again.
        let other = "0".repeat(64);
        let err = ensure_on(&host, &config(&format!("{base}/kubelet"), &other)).unwrap_err().to_string();
        assert!(err.contains(&format!("{base}/kubelet")) && err.contains(&sha) && err.contains(&other), "{err}");
        assert_eq!(std::fs::read(&installed).unwrap(), KUBELET, "a mismatch writes nothing");
    }

    #[test]
    fn a_wrong_download_or_digest_file_is_refused_and_named() {
        let downloads = site(vec![("/kubelet", b"truncated".to_vec()), ("/bad.sha256", b"<html>".to_vec())]);
        let base = downloads.url("");
        let root = tempfile::tempdir().unwrap();
        let host = host(root.path(), true);
        let err = ensure_on(&host, &config(&format!("{base}/kubelet"), &sha256_hex(KUBELET))).unwrap_err();
        assert!(err.to_string().contains("9 bytes") && err.to_string().contains("not installed"), "{err}");
        assert!(!root.path().join(PROGRAM.trim_start_matches('/')).exists());

        let err = ensure_on(&host, &config(&format!("{base}/bad"), "")).unwrap_err().to_string();
        assert!(err.contains("/bad.sha256") && err.contains("KUBELET_SHA256"), "{err}");
        let err = ensure_on(&host, &config(&format!("{base}/missing"), "")).unwrap_err().to_string();
        assert!(err.contains("404"), "{err}");
    }

    #[test]
    fn a_rooted_run_downloads_nothing_and_says_so() {
        let downloads = site(vec![]);
        let base = downloads.url("");
        let root = tempfile::tempdir().unwrap();
        let host = host(root.path(), false);
        ensure_on(&host, &config(&format!("{base}/kubelet"), "")).unwrap();
        let actions: Vec<_> = host.take_actions().into_iter().filter(|a| a.kind == ActionKind::Http).collect();
        assert_eq!(actions.len(), 2, "{actions:?}");
        assert!(
            actions.iter().all(|a| a.outcome == Outcome::NotRun && a.detail.contains("not fetched")),
            "{actions:?}"
        );
        assert!(downloads.asked().is_empty());
    }

    #[test]
    fn the_images_own_kubelet_is_linked_unless_a_url_is_configured() {
        let root = tempfile::tempdir().unwrap();
        let image = root.path().join("usr/bin/kubelet");
        std::fs::create_dir_all(image.parent().unwrap()).unwrap();
        std::fs::write(&image, KUBELET).unwrap();
        let host = host(root.path(), true);
        ensure_on(&host, &config("", "")).unwrap();
        let link = root.path().join(PROGRAM.trim_start_matches('/'));
        assert_eq!(std::fs::read_link(&link).unwrap(), Path::new(IMAGE_KUBELET));

        // A configured URL wins over the image's kubelet: fetched, and written over the link only.
        let fetched = b"#!/bin/sh\necho Kubernetes v1.34.4 from the mirror\n".to_vec();
        let mirror = site(vec![("/kubelet", fetched.clone())]);
        ensure_on(&host, &config(&mirror.url("/kubelet"), &sha256_hex(&fetched))).unwrap();
        assert_eq!(mirror.asked(), ["/kubelet"]);
        assert!(!std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&link).unwrap(), fetched);
        assert_eq!(std::fs::read(&image).unwrap(), KUBELET, "the image's kubelet is left as it is");
    }

    #[test]
    fn the_default_names_the_release_and_architecture() {
        let mut c = config("", "");
        c.node.arch = "x86_64".into();
        assert_eq!(url(&c).unwrap(), "https://dl.k8s.io/release/v1.34.4/bin/linux/amd64/kubelet");
        c.node.arch = "aarch64".into();
        assert!(url(&c).unwrap().ends_with("/linux/arm64/kubelet"));
        c.node.arch = "mips".into();
        let err = url(&c).unwrap_err().to_string();
        assert!(err.contains("ARCH") && err.contains("mips") && err.contains("KUBELET_URL"), "{err}");
        assert_eq!(version_line("1.34.4"), "Kubernetes v1.34.4");
    }
}
