//! minion part-008 registry-config: a local container registry (Docker's registry v2) on the minion,
//! storing images in Swift with the cluster trustee's credentials: its config and its unit. The
//! registry-service step (part 12) enables and starts it.
//!
//! `/etc/sysconfig/registry-config.yml` (0600: it holds the trustee password) is Magnum's (inventory
//! §3.9): `storage.swift` with `authurl`, `region`, `username`, `password`, `domainid`, `trustid`,
//! `container`, `insecureskipverify`, `chunksize`, an in-memory layer cache, logs tagged
//! `service: registry`. Departures: the trustee is named the way the config can: by user name and
//! domain when both are given (Magnum's template), else by user id (`userid`, which the registry's Swift
//! driver accepts with the trust): Stein's minion heat-params never carry `TRUSTEE_USERNAME` or
//! `TRUSTEE_DOMAIN_ID`, so Magnum's own registry there had an empty user name and could not authenticate.
//! A config with no way to authenticate at all leaves the registry out (no config, no unit) and the step
//! says so in the signal's data, while the node still joins: the registry is optional. Values are
//! written by a YAML serialiser (any character is safe), and the registry shares the host's network and
//! listens on `registry.port` itself instead of a published port, which works the same under docker and
//! containerd.
//!
//! `registry.service` runs the image `<runtime.container_infra_prefix or docker.io/library/>registry:2`
//! through the node's runtime: `docker run` (Magnum's) or, on containerd nodes, `ctr run` in the `hearth`
//! namespace after an `image pull` (ctr pulls in its own process, so the unit reads the proxy step's
//! environment file). After a change the unit is reloaded and a running registry restarted.

use crate::host::{FileSpec, Outcome, Systemd};
use crate::kube::RuntimeKind;
use crate::registry::{disabled, swift_user, SwiftUser, CONFIG, UNIT, UNIT_FILE};
use crate::step::{Context, Done};
use anyhow::Result;
use serde_json::json;

/// Where the registry image reads its config.
const CONFIG_IN_CONTAINER: &str = "/etc/docker/registry/config.yml";
/// containerd namespace of the registry container (kept apart from Kubernetes' `k8s.io`).
const CTR_NAMESPACE: &str = "hearth";

pub(super) fn run(ctx: &Context) -> Result<Done> {
    if let Some(reason) = disabled(ctx) {
        return Ok(Done::Skipped(reason));
    }
    let kind = RuntimeKind::for_node(ctx.config)?;
    let config = match registry_config(ctx) {
        Ok(config) => config,
        Err(reason) => return Ok(Done::Degraded(reason)),
    };
    let config_written = ctx.host.write_file(&FileSpec::new(CONFIG, config, 0o600))?;
    let unit_written = ctx.host.write_file(&FileSpec::new(UNIT_FILE, unit(ctx, kind), 0o644))?;
    if unit_written != Outcome::Unchanged {
        ctx.host.systemd(Systemd::DaemonReload, None)?;
    }
    if config_written != Outcome::Unchanged || unit_written != Outcome::Unchanged {
        ctx.host.systemd(Systemd::TryRestart, Some(UNIT))?;
    }
    Ok(Done::Applied)
}

/// The registry's image.
pub fn image(ctx: &Context) -> String {
    crate::kube::prefixed_image(ctx.config, "docker.io/library/", "registry", "2")
}

/// The registry's config, or why it cannot have one (what is missing for Swift).
fn registry_config(ctx: &Context) -> Result<String, String> {
    let os = &ctx.config.openstack;
    let registry = &ctx.config.registry;
    let mut swift = json!({
        "authurl": os.auth_url,
        "region": registry.swift_region,
        "password": os.trustee_password.expose(),
        "trustid": os.trust_id.expose(),
        "container": registry.container,
        "insecureskipverify": registry.insecure,
        "chunksize": registry.chunksize,
    });
    match swift_user(ctx)? {
        SwiftUser::Name { username, domain_id } => {
            swift["username"] = username.into();
            swift["domainid"] = domain_id.into();
        }
        SwiftUser::Id(id) => swift["userid"] = id.into(),
    }
    let document = json!({
        "version": "0.1",
        "log": {"fields": {"service": "registry"}},
        "storage": {"cache": {"layerinfo": "inmemory"}, "swift": swift},
        "http": {"addr": format!(":{}", registry.port)},
    });
    let yaml = serde_yaml::to_string(&document).expect("JSON values serialise as YAML");
    Ok(format!("# Written by hearth-agent (registry-config step).\n{yaml}"))
}

fn unit(ctx: &Context, kind: RuntimeKind) -> String {
    let image = image(ctx);
    let runtime = kind.unit();
    let service = match kind {
        RuntimeKind::Docker => format!(
            "ExecStartPre=-/usr/bin/docker rm --force registry\n\
             ExecStart=/usr/bin/docker run --rm --name registry --network host \
             --volume {CONFIG}:{CONFIG_IN_CONTAINER}:ro {image}\n\
             ExecStop=/usr/bin/docker stop registry\n"
        ),
        RuntimeKind::Containerd => format!(
            "EnvironmentFile=-{env}\n\
             ExecStartPre=/usr/bin/ctr --namespace {CTR_NAMESPACE} image pull {image}\n\
             ExecStartPre=-/usr/bin/ctr --namespace {CTR_NAMESPACE} task kill --signal SIGKILL registry\n\
             ExecStartPre=-/usr/bin/ctr --namespace {CTR_NAMESPACE} container delete registry\n\
             ExecStart=/usr/bin/ctr --namespace {CTR_NAMESPACE} run --rm --net-host \
             --mount type=bind,src={CONFIG},dst={CONFIG_IN_CONTAINER},options=rbind:ro {image} registry\n\
             ExecStop=/usr/bin/ctr --namespace {CTR_NAMESPACE} task kill registry\n",
            env = crate::paths::PROXY_ENV_FILE
        ),
    };
    format!(
        "# Written by hearth-agent (registry-config step).\n\
         [Unit]\n\
         Description=Local container registry backed by Swift\n\
         Requires={runtime}\n\
         After={runtime} network-online.target\n\
         Wants=network-online.target\n\
         \n\
         [Service]\n\
         {service}\
         Restart=always\n\
         RestartSec=10\n\
         \n\
         [Install]\n\
         WantedBy=multi-user.target\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NodeConfig, Role, Secret};
    use crate::facts::{Facts, OsFamily};
    use crate::host::{Host, Mode};

    #[test]
    fn every_missing_swift_credential_is_named_and_none_is_shown() {
        let mut config = NodeConfig::new(Role::Minion);
        config.registry.enabled = true;
        config.openstack.auth_url = "http://127.0.0.1:5000/v3".into();
        config.openstack.trustee_password = Secret::new("s3cret-pass");
        let facts = Facts { hostname: "minion-0".into(), os: OsFamily::Debian };
        let host = Host::new(Mode::DryRun { root: "/nonexistent-hearth-root".into() });
        let ctx = Context { config: &config, facts: &facts, host: &host };
        let err = registry_config(&ctx).unwrap_err();
        for field in ["TRUSTEE_USER_ID", "TRUSTEE_USERNAME", "TRUSTEE_DOMAIN_ID", "TRUST_ID"] {
            assert!(err.contains(field), "{err}");
        }
        assert!(!err.contains("AUTH_URL") && !err.contains("s3cret"), "{err}");
        assert!(err.contains("runs without it"), "{err}");

        // Stein's minion: the trustee's id and the trust, no user name or domain.
        config.openstack.trustee_user_id = "2b7fa6c8".into();
        config.openstack.trust_id = Secret::new("trust");
        let ctx = Context { config: &config, facts: &facts, host: &host };
        let parsed: serde_yaml::Value = serde_yaml::from_str(&registry_config(&ctx).unwrap()).unwrap();
        let swift = &parsed["storage"]["swift"];
        assert_eq!(swift["userid"].as_str(), Some("2b7fa6c8"));
        assert!(swift.get("username").is_none() && swift.get("domainid").is_none(), "{swift:?}");

        config.openstack.trustee_username = "trustee".into();
        config.openstack.trustee_domain_id = "domain".into();
        let ctx = Context { config: &config, facts: &facts, host: &host };
        let yaml = registry_config(&ctx).unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed["storage"]["swift"]["password"].as_str(), Some("s3cret-pass"));
        assert_eq!(parsed["storage"]["swift"]["trustid"].as_str(), Some("trust"));
        assert_eq!(parsed["storage"]["swift"]["username"].as_str(), Some("trustee"));
        assert!(parsed["storage"]["swift"].get("userid").is_none(), "the name and domain when both are given");
        assert_eq!(parsed["version"].as_str(), Some("0.1"));
        assert_eq!(disabled(&ctx), None);
    }
}
