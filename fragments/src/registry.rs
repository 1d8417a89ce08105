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

/// How the registry's Swift driver authenticates: Keystone v3 password auth scoped to the cluster's trust,
/// as the trustee, named by user name and domain (what Magnum's template asked for) or by user id (what
/// Stein's minion heat-params carry: they never held `TRUSTEE_USERNAME` or `TRUSTEE_DOMAIN_ID`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SwiftUser<'a> {
    Name { username: &'a str, domain_id: &'a str },
    Id(&'a str),
}

/// The trustee the registry authenticates as, or what is missing for any way of authenticating.
pub fn swift_user<'a>(ctx: &Context<'a>) -> Result<SwiftUser<'a>, String> {
    let os = &ctx.config.openstack;
    let user = match (os.trustee_username.as_str(), os.trustee_domain_id.as_str(), os.trustee_user_id.as_str()) {
        (username, domain_id, _) if !username.is_empty() && !domain_id.is_empty() => {
            Some(SwiftUser::Name { username, domain_id })
        }
        (_, _, "") => None,
        (_, _, id) => Some(SwiftUser::Id(id)),
    };
    let missing: Vec<&str> = [
        (os.auth_url.is_empty(), "openstack.auth_url (AUTH_URL)"),
        (
            user.is_none(),
            "openstack.trustee_user_id (TRUSTEE_USER_ID) or openstack.trustee_username and \
             openstack.trustee_domain_id (TRUSTEE_USERNAME, TRUSTEE_DOMAIN_ID)",
        ),
        (os.trustee_password.is_empty(), "openstack.trustee_password (TRUSTEE_PASSWORD)"),
        (os.trust_id.is_empty(), "openstack.trust_id (TRUST_ID)"),
        (ctx.config.registry.container.is_empty(), "registry.container (REGISTRY_CONTAINER)"),
    ]
    .into_iter()
    .filter_map(|(absent, field)| absent.then_some(field))
    .collect();
    match user {
        Some(user) if missing.is_empty() => Ok(user),
        _ => Err(format!(
            "the local registry is not configured: it cannot reach Swift without {}; the node runs without it",
            missing.join(", ")
        )),
    }
}
