//! Debian's real cloud-init, asked what it would do with a user-data blob, without booting anything.
//!
//! `tests/cloud_init/helper.py` runs cloud-init's own code with Debian's `/usr/bin/python3` (the
//! interpreter the `cloud-init` package is installed for; `.ci/run` installs it with
//! `/etc/cloud/cloud-init.disabled` in place so it never acts on the test machine):
//! - [`parts`]: `UserDataProcessor.process` + `handlers.walk`, the parts the init stage hands its part
//!   handlers (MIME multipart, gzip, `#cloud-config`, `#!` scripts); an `#include` is never fetched.
//! - [`schema_check`]: cloud-init's JSON schema, strict.
//! - [`write_files_into`]: cloud-init's own `write_files` module with every path moved under a root.

use anyhow::{bail, Context, Result};
use serde_json::Value;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

/// Debian's interpreter, which has cloud-init's package on its path.
pub const PYTHON: &str = "/usr/bin/python3";
/// Where Debian's `cloud-init` package puts its Python code.
pub const PACKAGE_DIR: &str = "/usr/lib/python3/dist-packages/cloudinit";

const HELPER_PY: &str = include_str!("../cloud_init/helper.py");

/// One part as cloud-init's part handlers see it at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// The MIME filename, or `part-NNN` as cloud-init names parts without one.
    pub filename: String,
    /// The content type cloud-init decided on (e.g. `text/cloud-config`, `text/x-shellscript`).
    pub content_type: String,
    /// The decoded (base64, gzip) payload.
    pub payload: Vec<u8>,
}

impl Part {
    /// The payload as UTF-8 text.
    pub fn text(&self) -> Result<&str> {
        std::str::from_utf8(&self.payload).with_context(|| format!("part {} is not UTF-8", self.filename))
    }
}

/// A file [`write_files_into`] wrote, as cloud-init would have at boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenFile {
    /// The path on the node (`/etc/...`); the file itself is at `root` + this.
    pub path: String,
    /// `user:group` cloud-init would have chowned it to (recorded, not applied).
    pub owner: String,
    /// Written by the later `write_files_deferred` module (`defer: true`).
    pub deferred: bool,
    /// Permission bits as cloud-init set them.
    pub mode: u32,
}

/// The parts cloud-init's init stage would hand its part handlers for `user_data`. Fails if the
/// user-data asks cloud-init to fetch a URL (`#include`, which no node of ours should need) or if
/// cloud-init logged a warning (it logs, rather than fails, on e.g. a part that will not decompress).
pub fn parts(user_data: &[u8]) -> Result<Vec<Part>> {
    let answer = run_helper(&["parts"], user_data)?;
    let includes: Vec<&str> = answer["includes"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if !includes.is_empty() {
        bail!(
            "the user-data asks cloud-init to fetch {} (an #include); a node would fetch it at boot",
            includes.join(", ")
        );
    }
    fail_on_warnings(&answer, "parsing the user-data")?;
    let mut parts = Vec::new();
    for part in answer["parts"].as_array().context("the helper's answer has no parts")? {
        let text = |key: &str| part[key].as_str().unwrap_or_default().to_string();
        parts.push(Part {
            filename: text("filename"),
            content_type: text("content_type"),
            payload: from_hex(part["payload_hex"].as_str().unwrap_or_default())?,
        });
    }
    Ok(parts)
}

/// Validates one `#cloud-config` document against cloud-init's own schema, strictly: type errors,
/// YAML errors, a missing `#cloud-config` header, deprecated keys and top-level keys the schema does
/// not know are all refused (the last two go beyond `cloud-init schema`, which only warns or passes).
/// `Err` holds every problem, one per line.
pub fn schema_check(cloud_config: &str) -> Result<(), String> {
    let answer = run_helper(&["schema"], cloud_config.as_bytes()).map_err(|e| format!("{e:#}"))?;
    let mut problems: Vec<String> =
        answer["problems"].as_array().into_iter().flatten().filter_map(Value::as_str).map(str::to_string).collect();
    problems.extend(
        answer["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).map(|w| format!("warning: {w}")),
    );
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("\n"))
    }
}

/// Applies the cloud-config's `write_files` with cloud-init's own module (`cc_write_files`: b64, gzip
/// and text encodings, permissions, append; deferred entries last) under `root` instead of `/`.
/// Owners are recorded, not applied. Fails if cloud-init logged a warning (e.g. an unknown encoding,
/// which it would silently write as text).
pub fn write_files_into(cloud_config: &str, root: &Path) -> Result<Vec<WrittenFile>> {
    let root_arg = root.to_str().with_context(|| format!("{} is not UTF-8", root.display()))?;
    let answer = run_helper(&["write-files", root_arg], cloud_config.as_bytes())?;
    fail_on_warnings(&answer, "applying write_files")?;
    let mut files = Vec::new();
    for file in answer["files"].as_array().context("the helper's answer has no files")? {
        files.push(WrittenFile {
            path: file["path"].as_str().unwrap_or_default().to_string(),
            owner: file["owner"].as_str().unwrap_or_default().to_string(),
            deferred: file["deferred"].as_bool().unwrap_or(false),
            mode: file["mode"].as_u64().and_then(|m| u32::try_from(m).ok()).context("a written file has no mode")?,
        });
    }
    Ok(files)
}

fn fail_on_warnings(answer: &Value, what: &str) -> Result<()> {
    let warnings: Vec<&str> = answer["warnings"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if !warnings.is_empty() {
        bail!("cloud-init warned while {what}: {}", warnings.join("; "));
    }
    Ok(())
}

fn run_helper(args: &[&str], input: &[u8]) -> Result<Value> {
    if !Path::new(PACKAGE_DIR).is_dir() {
        bail!(
            "cloud-init is not installed ({PACKAGE_DIR} is missing): run `.ci/run`, which installs Debian's \
             cloud-init without letting it act on this machine"
        );
    }
    let what = format!("{PYTHON} tests/cloud_init/helper.py {}", args.join(" "));
    let mut child = Command::new(PYTHON)
        .arg("-c")
        .arg(HELPER_PY)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("running {what}"))?;
    // Written from a thread: a large input must not deadlock against a helper that answers early.
    let mut stdin = child.stdin.take().context("no stdin")?;
    let input = input.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().with_context(|| format!("running {what}"))?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("the stdin writer panicked"))?
        .with_context(|| format!("feeding {what}"))?;
    if !out.status.success() {
        bail!("{what} failed ({}):\n{}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    serde_json::from_slice(&out.stdout).with_context(|| {
        format!("{what} answered something that is not JSON: {}", String::from_utf8_lossy(&out.stdout))
    })
}

fn from_hex(hex: &str) -> Result<Vec<u8>> {
    if !hex.len().is_multiple_of(2) {
        bail!("odd-length hex from the helper");
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).with_context(|| format!("bad hex at {i}")))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_decodes_and_refuses_garbage() {
        assert_eq!(from_hex("00ff41").unwrap(), vec![0, 255, b'A']);
        assert!(from_hex("0").is_err());
        assert!(from_hex("zz").is_err());
    }
}
