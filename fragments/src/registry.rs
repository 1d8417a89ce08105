//! The node's local container registry (minions, `registry.enabled`): what the registry-config step
//! (which writes it) and the registry-service step (which starts it) both know.

use crate::step::Context;

/// The registry's configuration (it names the trustee's password: 0600).
pub const CONFIG: &str = "/etc/sysconfig/registry-config.yml";
pub const UNIT: &str = "registry.service";
pub const UNIT_FILE: &str = "/etc/systemd/system/registry.service";

/// Why the registry steps do nothing on this node, if they do nothing.
pub fn disabled(ctx: &Context) -> Option<String> {
    (!ctx.config.registry.enabled).then(|| "the local registry is off (registry.enabled, REGISTRY_ENABLED)".to_string())
}
