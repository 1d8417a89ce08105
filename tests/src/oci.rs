//! OCI images made from files by the tests, for the registry of the end-to-end tier: what an operator's
//! mirror of the upstream images would serve, but built here from the programs of `crate::kubernetes`.
//!
//! An image is layers (gzipped tars written here: ustar, fixed owner and times, so the same files give
//! the same digest), a config (entrypoint, environment, the layers' uncompressed digests) and a manifest
//! naming them (OCI image spec v1.1, `application/vnd.oci.image.manifest.v1+json`).

use anyhow::{bail, Result};
use serde_json::json;
use std::io::Write as _;

/// One entry of a layer.
#[derive(Clone, Debug)]
pub enum Entry {
    Dir { path: String },
    File { path: String, mode: u32, contents: Vec<u8> },
    Symlink { path: String, target: String },
}

impl Entry {
    pub fn file(path: &str, mode: u32, contents: Vec<u8>) -> Entry {
        Entry::File { path: path.into(), mode, contents }
    }

    pub fn symlink(path: &str, target: &str) -> Entry {
        Entry::Symlink { path: path.into(), target: target.into() }
    }
}

/// What an image is made of.
#[derive(Clone, Debug, Default)]
pub struct Image {
    pub entrypoint: Vec<String>,
    pub env: Vec<String>,
    pub layers: Vec<Vec<Entry>>,
}

/// Content and its digest.
#[derive(Clone, Debug)]
pub struct Blob {
    /// `sha256:<hex>`.
    pub digest: String,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn of(bytes: Vec<u8>) -> Blob {
        Blob { digest: sha256(&bytes), bytes }
    }
}

/// An image ready to push: its manifest, config and layers.
#[derive(Clone, Debug)]
pub struct Built {
    pub manifest: Blob,
    pub config: Blob,
    pub layers: Vec<Blob>,
}

pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

pub fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hearth_fragments::digest::sha256_hex(bytes))
}

impl Image {
    pub fn build(&self) -> Result<Built> {
        let mut layers = Vec::new();
        let mut diff_ids = Vec::new();
        for entries in &self.layers {
            let tar = tar(entries)?;
            diff_ids.push(sha256(&tar));
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            gz.write_all(&tar)?;
            layers.push(Blob::of(gz.finish()?));
        }
        let config = json!({
            "architecture": "amd64",
            "os": "linux",
            "config": {"Entrypoint": self.entrypoint, "Env": self.env},
            "rootfs": {"type": "layers", "diff_ids": diff_ids},
        });
        let config = Blob::of(serde_json::to_vec(&config)?);
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": MANIFEST_TYPE,
            "config": {"mediaType": CONFIG_TYPE, "digest": config.digest, "size": config.bytes.len()},
            "layers": layers.iter().map(|l| json!({"mediaType": LAYER_TYPE, "digest": l.digest, "size": l.bytes.len()})).collect::<Vec<_>>(),
        });
        Ok(Built { manifest: Blob::of(serde_json::to_vec(&manifest)?), config, layers })
    }
}

/// A ustar archive of `entries` (owner root, mtime 0), parents before children as given.
pub fn tar(entries: &[Entry]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for entry in entries {
        let (path, mode, kind, size, link, contents): (&str, u32, u8, usize, &str, &[u8]) = match entry {
            Entry::Dir { path } => (path, 0o755, b'5', 0, "", &[]),
            Entry::File { path, mode, contents } => (path, *mode, b'0', contents.len(), "", contents),
            Entry::Symlink { path, target } => (path, 0o777, b'2', 0, target, &[]),
        };
        let path = path.trim_start_matches('/');
        let name = if kind == b'5' { format!("{path}/") } else { path.to_string() };
        if name.len() > 100 || link.len() > 100 {
            bail!("{name:?} -> {link:?}: longer than a plain ustar header holds");
        }
        let mut header = [0u8; 512];
        header[..name.len()].copy_from_slice(name.as_bytes());
        let octal = |field: &mut [u8], value: u64| {
            let text = format!("{value:0width$o}\0", width = field.len() - 1);
            field.copy_from_slice(text.as_bytes());
        };
        octal(&mut header[100..108], u64::from(mode));
        octal(&mut header[108..116], 0);
        octal(&mut header[116..124], 0);
        octal(&mut header[124..136], size as u64);
        octal(&mut header[136..148], 0);
        header[156] = kind;
        header[157..157 + link.len()].copy_from_slice(link.as_bytes());
        header[257..263].copy_from_slice(b"ustar\0");
        header[263..265].copy_from_slice(b"00");
        header[265..269].copy_from_slice(b"root");
        header[297..301].copy_from_slice(b"root");
        // The checksum is computed with its own field as spaces.
        header[148..156].copy_from_slice(b"        ");
        let sum: u64 = header.iter().map(|&b| u64::from(b)).sum();
        let text = format!("{sum:06o}\0 ");
        header[148..156].copy_from_slice(text.as_bytes());
        out.extend_from_slice(&header);
        out.extend_from_slice(contents);
        out.resize(out.len().div_ceil(512) * 512, 0);
    }
    out.resize(out.len() + 1024, 0);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GNU tar reads the archives back: names, modes, link targets and contents.
    #[test]
    fn gnu_tar_lists_and_extracts_what_was_written() {
        let entries = vec![
            Entry::Dir { path: "/opt/bin".into() },
            Entry::file("/opt/bin/hello", 0o755, b"#!/bin/sh\necho hello\n".to_vec()),
            Entry::symlink("/bin", "opt/bin"),
        ];
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("layer.tar");
        std::fs::write(&path, tar(&entries).unwrap()).unwrap();
        let out = std::process::Command::new("tar").arg("-tvf").arg(&path).output().unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert!(listing.contains("rwxr-xr-x root/root") && listing.contains("opt/bin/hello"), "{listing}");
        assert!(listing.contains("bin -> opt/bin"), "{listing}");
        let into = dir.path().join("x");
        std::fs::create_dir(&into).unwrap();
        assert!(std::process::Command::new("tar")
            .arg("-xf")
            .arg(&path)
            .arg("-C")
            .arg(&into)
            .status()
            .unwrap()
            .success());
        assert_eq!(std::fs::read(into.join("opt/bin/hello")).unwrap(), b"#!/bin/sh\necho hello\n");
        // The same files give the same image.
        let image = Image { entrypoint: vec!["/opt/bin/hello".into()], env: vec![], layers: vec![entries] };
        assert_eq!(image.build().unwrap().manifest.digest, image.build().unwrap().manifest.digest);
    }
}
