//! part-002 selinux: the configured SELinux mode, at runtime and persisted in `/etc/selinux/config`.
//!
//! Magnum forced permissive from a boothook on every boot; Hearth makes the mode a setting (permissive by
//! default, as Magnum) and writes the config file whole.

use crate::config::SelinuxMode;
use crate::host::{Cmd, FileSpec};
use crate::step::{Context, Done};
use anyhow::{Context as _, Result};
use std::path::Path;

const CONFIG: &str = "/etc/selinux/config";
const ENFORCE: &str = "/sys/fs/selinux/enforce";

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let mode = ctx.config.agent.selinux_mode.word();
    let Some(current) = ctx.host.read_to_string(Path::new(CONFIG))? else {
        return Ok(Done::Skipped(format!("SELinux is not installed ({CONFIG} does not exist)")));
    };
    ctx.host.write_file(&FileSpec::new(CONFIG, with_mode(&current, mode), 0o644))?;

    // The kernel's live mode, when SELinux is enabled at all. `disabled` needs a reboot; until then
    // permissive is the closest.
    if let Some(enforce) = ctx.host.read_to_string(Path::new(ENFORCE))? {
        let wanted = if ctx.config.agent.selinux_mode == SelinuxMode::Enforcing { "1" } else { "0" };
        if enforce.trim() != wanted {
            ctx.host.run(&Cmd::new("setenforce").arg(wanted)).context("setting the live SELinux mode")?;
        }
    }
    Ok(Done::Applied)
}

/// The config text with its `SELINUX=` line set to `mode`, everything else kept.
fn with_mode(current: &str, mode: &str) -> String {
    let wanted = format!("SELINUX={mode}");
    let mut found = false;
    let mut out: Vec<String> = current
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("SELINUX=") {
                found = true;
                wanted.clone()
            } else {
                line.to_string()
            }
        })
        .collect();
    if !found {
        out.push(wanted);
    }
    out.join("\n") + "\n"
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_the_mode_line_changes() {
        let fedora = "# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n";
        assert_eq!(super::with_mode(fedora, "permissive"), "# comment\nSELINUX=permissive\nSELINUXTYPE=targeted\n");
        assert_eq!(
            super::with_mode("SELINUXTYPE=targeted", "permissive"),
            "SELINUXTYPE=targeted\nSELINUX=permissive\n"
        );
    }
}
