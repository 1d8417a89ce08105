//! The container images the tests serve from their registry ([`crate::registry`]), made by
//! [`crate::oci`] from programs built here: what an operator's mirror of the upstream images holds.

use crate::oci::{Built, Entry, Image};
use anyhow::{bail, Context as _, Result};
use std::path::Path;
use std::process::Command;

/// The pod sandbox image (`pause`): `tests/kube/pause.c`, linked statically, as its entrypoint.
pub fn pause() -> Result<Built> {
    let dir = tempfile::tempdir()?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("kube/pause.c");
    let binary = dir.path().join("pause");
    let out = Command::new("gcc")
        .args(["-Os", "-static", "-s", "-o"])
        .arg(&binary)
        .arg(&source)
        .output()
        .context("running gcc (Debian packages gcc and libc6-dev; .ci/run installs them)")?;
    if !out.status.success() {
        bail!("gcc {} failed: {}", source.display(), String::from_utf8_lossy(&out.stderr));
    }
    let contents = std::fs::read(&binary)?;
    Image {
        entrypoint: vec!["/pause".into()],
        env: Vec::new(),
        layers: vec![vec![Entry::file("/pause", 0o755, contents)]],
    }
    .build()
}
