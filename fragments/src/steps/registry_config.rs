//! minion part-008 registry-config: a local container registry (Docker's registry v2) on the minion,
//! storing images in Swift with the cluster trustee's credentials: its config and its unit. The
//! registry-service step (part 12) enables and starts it.
//!
//! `/etc/sysconfig/registry-config.yml` (0600: it holds the trustee password) is Magnum's (inventory
//! §3.9): `storage.swift` with `authurl`, `region`, `username`, `password`, `domainid`, `trustid`,
//! `container`, `insecureskipverify`, `chunksize`, an in-memory layer cache, logs tagged
//! `service: registry`. Departures: every credential is required and present (Magnum's minions never
//! received the trustee user name and domain, so the registry could not authenticate), values are
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
use crate::registry::{disabled, CONFIG, UNIT, UNIT_FILE};
use crate::step::{Context, Done};
use anyhow::{bail, Result};
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
    let config = registry_config(ctx)?;
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

fn registry_config(ctx: &Context) -> Result<String> {
    let os = &ctx.config.openstack;
    let registry = &ctx.config.registry;
    let missing: Vec<&str> = [
        (os.auth_url.is_empty(), "openstack.auth_url (AUTH_URL)"),
        (os.trustee_username.is_empty(), "openstack.trustee_username (TRUSTEE_USERNAME)"),
        (os.trustee_domain_id.is_empty(), "openstack.trustee_domain_id (TRUSTEE_DOMAIN_ID)"),
        (os.trustee_password.is_empty(), "openstack.trustee_password (TRUSTEE_PASSWORD)"),
        (os.trust_id.is_empty(), "openstack.trust_id (TRUST_ID)"),
        (registry.container.is_empty(), "registry.container (REGISTRY_CONTAINER)"),
    ]
    .into_iter()
    .filter_map(|(absent, field)| absent.then_some(field))
    .collect();
    if !missing.is_empty() {
        bail!("the local registry cannot reach Swift without {}", missing.join(", "));
    }
    let document = json!({
        "version": "0.1",
        "log": {"fields": {"service": "registry"}},
        "storage": {
            "cache": {"layerinfo": "inmemory"},
            "swift": {
                "authurl": os.auth_url,
                "region": registry.swift_region,
                "username": os.trustee_username,
                "password": os.trustee_password.expose(),
                "domainid": os.trustee_domain_id,
                "trustid": os.trust_id.expose(),
                "container": registry.container,
                "insecureskipverify": registry.insecure,
                "chunksize": registry.chunksize,
            },
        },
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
        let err = registry_config(&ctx).unwrap_err().to_string();
        for field in ["TRUSTEE_USERNAME", "TRUSTEE_DOMAIN_ID", "TRUST_ID"] {
            assert!(err.contains(field), "{err}");
        }
        assert!(!err.contains("AUTH_URL") && !err.contains("s3cret"), "{err}");

        config.openstack.trustee_username = "trustee".into();
        config.openstack.trustee_domain_id = "domain".into();
        config.openstack.trust_id = Secret::new("trust");
        let ctx = Context { config: &config, facts: &facts, host: &host };
        let yaml = registry_config(&ctx).unwrap();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&yaml).unwrap();
        assert_eq!(parsed["storage"]["swift"]["password"].as_str(), Some("s3cret-pass"));
        assert_eq!(parsed["storage"]["swift"]["trustid"].as_str(), Some("trust"));
        assert_eq!(parsed["version"].as_str(), Some("0.1"));
        assert_eq!(disabled(&ctx), None);
    }
}
