//! What the steps ask of systemd's unit files and manager, the same for every step: where unit files
//! live, whether a unit is enabled (its `[Install]` links exist) or stopped, and enabling and starting a
//! set of units in order with one `daemon-reload`.

use crate::host::{Cmd, Systemd};
use crate::paths::SYSTEMD_UNITS;
use crate::step::Context;
use anyhow::{Context as _, Result};
use std::path::Path;

/// Where unit files live, in systemd's order of precedence.
const UNIT_DIRS: &[&str] = &[
    SYSTEMD_UNITS,
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
];

/// Enables the units that are not enabled and starts (without waiting) those just enabled or not
/// running, in the order given, after a `daemon-reload`. Runs nothing when every unit is enabled and
/// running.
pub fn enable_and_start(ctx: &Context, units: &[&str]) -> Result<()> {
    let mut plan = Vec::new();
    for unit in units {
        let enable = !is_enabled(ctx, unit)?;
        let start = enable || is_stopped(ctx, unit)?;
        if enable || start {
            plan.push((*unit, enable, start));
        }
    }
    if plan.is_empty() {
        return Ok(());
    }
    ctx.host.systemd(Systemd::DaemonReload, None)?;
    // Every enable before the first start: `systemctl enable` reloads the manager, and a reload while
    // start jobs are queued behind a unit that is failing (its image missing, say) was seen to drop a
    // queued job, leaving kube-scheduler never started.
    for (unit, enable, _) in &plan {
        if *enable {
            ctx.host.systemd(Systemd::Enable, Some(unit)).with_context(|| format!("enabling {unit}"))?;
        }
    }
    for (unit, _, start) in plan {
        if start {
            ctx.host.systemd(Systemd::StartNoBlock, Some(unit)).with_context(|| format!("starting {unit}"))?;
        }
    }
    Ok(())
}

/// The unit file systemd would load for `unit`, if any.
pub fn unit_text(ctx: &Context, unit: &str) -> Result<Option<String>> {
    for dir in UNIT_DIRS {
        if let Some(text) = ctx.host.read_to_string(&Path::new(dir).join(unit))? {
            return Ok(Some(text));
        }
    }
    Ok(None)
}

/// Whether every `WantedBy=`/`RequiredBy=` link of the unit's `[Install]` section exists (in
/// `/etc/systemd/system`, where `systemctl enable` puts them, or a vendor directory). A unit without
/// such targets has nothing to enable. A missing unit is not enabled.
pub fn is_enabled(ctx: &Context, unit: &str) -> Result<bool> {
    let Some(text) = unit_text(ctx, unit)? else {
        return Ok(false);
    };
    for (kind, target) in install_targets(&text) {
        let mut linked = false;
        for dir in std::iter::once(SYSTEMD_UNITS).chain(UNIT_DIRS.iter().copied().skip(1)) {
            if ctx.host.exists(&Path::new(dir).join(format!("{target}.{kind}")).join(unit))? {
                linked = true;
                break;
            }
        }
        if !linked {
            return Ok(false);
        }
    }
    Ok(true)
}

/// `("wants", target)` / `("requires", target)` for each target of the `[Install]` section.
fn install_targets(unit: &str) -> Vec<(&'static str, String)> {
    let mut section = "";
    let mut targets = Vec::new();
    for line in unit.lines().map(str::trim) {
        if line.starts_with('[') {
            section = line;
            continue;
        }
        if section != "[Install]" {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else { continue };
        let kind = match key.trim() {
            "WantedBy" => "wants",
            "RequiredBy" => "requires",
            _ => continue,
        };
        targets.extend(value.split_whitespace().map(|t| (kind, t.to_string())));
    }
    targets
}

/// Whether the service manager reports the unit active (or on its way there); false where it cannot be
/// asked.
pub fn is_running(ctx: &Context, unit: &str) -> Result<bool> {
    let show = Cmd::new("systemctl").args(["show", "--property=ActiveState", "--value", unit]).reads_only();
    let out = ctx.host.run(&show).with_context(|| format!("asking systemd whether {unit} runs"))?;
    Ok(out.ran && matches!(out.stdout.trim(), "active" | "activating" | "reloading"))
}

/// Whether the service manager reports the unit inactive or failed; false where it cannot be asked.
fn is_stopped(ctx: &Context, unit: &str) -> Result<bool> {
    let show = Cmd::new("systemctl").args(["show", "--property=ActiveState", "--value", unit]).reads_only();
    let out = ctx.host.run(&show).with_context(|| format!("asking systemd whether {unit} runs"))?;
    Ok(out.ran && matches!(out.stdout.trim(), "inactive" | "failed"))
}

#[cfg(test)]
mod tests {
    use super::install_targets;

    #[test]
    fn install_targets_come_from_the_install_section_only() {
        let unit = "[Unit]\nWantedBy=wrong.target\n[Service]\nExecStart=/bin/true\n\n[Install]\n\
                    WantedBy=multi-user.target graphical.target\nRequiredBy=x.service\nAlias=y.service\n";
        assert_eq!(
            install_targets(unit),
            [
                ("wants", "multi-user.target".to_string()),
                ("wants", "graphical.target".to_string()),
                ("requires", "x.service".to_string())
            ]
        );
        assert!(install_targets("[Service]\nExecStart=/bin/true\n").is_empty());
    }
}
