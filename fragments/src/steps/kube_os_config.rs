//! part-005 kube-os-config: `/etc/kubernetes/cloud-config` for the OpenStack cloud provider.
//!
//! Departures from Magnum (DESIGN §6): written whenever trustee credentials exist (Magnum wrote nothing
//! without a trust id), mode 0600 (Magnum left it world-readable with the password inside), optional
//! lines only when they have a value (Magnum always wrote `region=` and empty subnet ids on minions),
//! values quoted when gcfg would otherwise misread them, and, from 1.26 without Octavia, the
//! cloud-controller-manager's load-balancer controller off (`enabled=false`), without which it exits.

use crate::host::FileSpec;
use crate::kube::KubeVersion;
use crate::step::{Context, Done};
use anyhow::Result;
use std::fmt::Write as _;

use crate::paths::{CLOUD_CONFIG, KUBERNETES_DIR};
/// The name older cloud-provider manifests mount.
pub const LEGACY_CLOUD_CONFIG: &str = "/etc/kubernetes/kube_openstack_config";
pub const CA_BUNDLE: &str = "/etc/kubernetes/ca-bundle.crt";

pub(super) fn run(ctx: &Context) -> Result<Done> {
    let os = &ctx.config.openstack;
    if os.auth_url.is_empty() || os.trustee_user_id.is_empty() || os.trustee_password.is_empty() {
        return Ok(Done::Skipped(
            "no trustee credentials (auth_url, trustee_user_id, trustee_password) for the cloud provider".into(),
        ));
    }
    ctx.host.ensure_dir(std::path::Path::new(KUBERNETES_DIR), 0o755)?;
    let bundle = ca_bundle(ctx)?;
    if let Some(bundle) = &bundle {
        ctx.host.write_file(&FileSpec::new(CA_BUNDLE, bundle.as_bytes(), 0o644))?;
    }
    // Today's cloud-controller-manager has no load balancer but Octavia and exits at start when its
    // load-balancer controller finds none; the in-tree provider that reads this file before 1.26 refuses
    // keys it does not know (and had Neutron's LBaaS).
    let load_balancer_controller = ctx.config.openstack.octavia_enabled
        || KubeVersion::of(ctx.config)?.controller_manager_has_openstack_volume_plugin();
    let text = render(ctx, bundle.is_some(), load_balancer_controller);
    for path in [CLOUD_CONFIG, LEGACY_CLOUD_CONFIG] {
        ctx.host.write_file(&FileSpec::new(path, text.as_bytes(), 0o600))?;
    }
    Ok(Done::Applied)
}

/// The CAs the cloud provider trusts: the system bundle (which holds the OpenStack CA once install-ca
/// ran), or the OpenStack CA alone where the bundle cannot be read yet (rooted runs).
fn ca_bundle(ctx: &Context) -> Result<Option<String>> {
    if let Some(system) = ctx.host.read_to_string(ctx.facts.os.layout().ca_bundle())? {
        return Ok(Some(system));
    }
    let pem = ctx.config.openstack.ca_pem.trim();
    Ok((!pem.is_empty()).then(|| format!("{pem}\n")))
}

fn render(ctx: &Context, with_ca: bool, load_balancer_controller: bool) -> String {
    let os = &ctx.config.openstack;
    let mut out = String::from("[Global]\n");
    let line = |out: &mut String, key: &str, value: &str| {
        if !value.is_empty() {
            let _ = writeln!(out, "{key}={}", gcfg_value(value));
        }
    };
    line(&mut out, "auth-url", &os.auth_url);
    line(&mut out, "user-id", &os.trustee_user_id);
    line(&mut out, "password", os.trustee_password.expose());
    line(&mut out, "trust-id", os.trust_id.expose());
    if with_ca {
        line(&mut out, "ca-file", CA_BUNDLE);
    }
    line(&mut out, "region", &os.region);
    out.push_str("\n[LoadBalancer]\n");
    line(&mut out, "use-octavia", if os.octavia_enabled { "True" } else { "False" });
    if !load_balancer_controller {
        line(&mut out, "enabled", "false");
    }
    line(&mut out, "subnet-id", &os.cluster_subnet);
    line(&mut out, "floating-network-id", &os.external_network_id);
    out.push_str("create-monitor=yes\nmonitor-delay=1m\nmonitor-timeout=30s\nmonitor-max-retries=3\n");
    out.push_str("\n[BlockStorage]\nbs-version=v2\n");
    out
}

/// gcfg (the INI dialect of the cloud provider) ends a bare value at `;` or `#`, trims blanks and treats
/// `"` and `\` specially: quote and escape any value that holds one of them.
fn gcfg_value(value: &str) -> String {
    let plain = !value.is_empty()
        && value.trim() == value
        && !value.chars().any(|c| matches!(c, ';' | '#' | '"' | '\\' | '\n' | '\t'));
    if plain {
        return value.to_string();
    }
    crate::quote::double_quoted(value)
}

#[cfg(test)]
mod tests {
    use super::gcfg_value;

    #[test]
    fn values_gcfg_would_misread_are_quoted() {
        assert_eq!(gcfg_value("https://keystone:5000/v3"), "https://keystone:5000/v3");
        assert_eq!(gcfg_value("pa;ss#\"w\\d"), "\"pa;ss#\\\"w\\\\d\"");
        assert_eq!(gcfg_value(" lead"), "\" lead\"");
    }
}
