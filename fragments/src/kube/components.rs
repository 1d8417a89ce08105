//! The Kubernetes components of each role as [`crate::component::Component`]s: image, mounts, and the files
//! each reads, which are the same on every OS family.
//!
//! A component's configuration is its sysconfig file (`/etc/kubernetes/apiserver`, `…/kubelet`, …), one
//! variable holding its whole command line, because that is what Magnum's images read: their entrypoint
//! sources `/etc/kubernetes/<component>` and `/etc/kubernetes/config` and runs the binary with those
//! variables (magnum `dockerfiles/kubernetes-*/launch.sh`). Atomic installs them with that entrypoint
//! ([`Images::Magnum`]). Elsewhere the units run upstream's images ([`Images::Upstream`]), which exist
//! for every release, with their program as the command and the same variable of the same file as its
//! arguments (systemd's `EnvironmentFile`), so one set of files configures every OS family; the kubelet,
//! of which upstream publishes no image, runs the same way as a program of the host
//! ([`super::kubelet_program`]). The other
//! variables Magnum's scripts read (`KUBE_MASTER`, `KUBE_ALLOW_PRIV`, …) are left empty: every flag is in
//! the one variable, chosen for the release by [`super::args`].

use super::args::{self, Inputs};
use super::kubeconfig::{Identity, Kubeconfig};
use super::version::Component as Kind;
use super::{cert, kube_image, kubelet_program, upstream_program, Images};
use crate::component::{ArgsFrom, Component, Mount};
use crate::config::{NetworkDriver, Role};
use crate::host::{FileSpec, Outcome, Systemd};
use crate::paths::{CNI_BIN_DIR, CNI_CONF_DIR, CNI_DIR, KERNEL_MODULES, KUBELET_VOLUME_PLUGINS, KUBERNETES_DIR};
use crate::pki::identities;
use crate::step::Context;
use anyhow::{bail, Context as _, Result};
use std::path::Path;

/// The settings every component's entrypoint sources besides its own file.
pub const SHARED_CONFIG: &str = "/etc/kubernetes/config";

/// Directories the components and their mounts need before they start (a bind mount of a missing
/// directory fails the container; a node without kernel modules of its own, such as a container, has no
/// `/lib/modules`).
pub const DIRS: &[&str] = &[
    KUBERNETES_DIR,
    KERNEL_MODULES,
    super::MANIFESTS,
    CNI_CONF_DIR,
    CNI_BIN_DIR,
    "/var/lib/cni",
    "/var/lib/kubelet",
    KUBELET_VOLUME_PLUGINS,
];

/// NetworkManager must leave calico's interfaces alone (Magnum wrote this where NetworkManager runs).
pub const CALICO_NETWORK_MANAGER: &str = "/etc/NetworkManager/conf.d/calico.conf";

/// The directories of [`DIRS`], and what the network driver needs of the host.
fn prepare_node(ctx: &Context) -> Result<()> {
    for dir in DIRS {
        ctx.host.ensure_dir(Path::new(dir), 0o755)?;
    }
    if ctx.config.network.driver == NetworkDriver::Calico && ctx.host.exists(Path::new("/etc/NetworkManager"))? {
        let text = "# Written by hearth-agent: calico manages these interfaces.\n[keyfile]\n\
                    unmanaged-devices=interface-name:cali*;interface-name:tunl*\n";
        if ctx.host.write_file(&FileSpec::new(CALICO_NETWORK_MANAGER, text, 0o644))? != Outcome::Unchanged {
            ctx.host.systemd(Systemd::TryRestart, Some("NetworkManager.service"))?;
        }
    }
    Ok(())
}

/// Installs a node's Kubernetes `components`: the host's directories, the kubelet program where it runs on
/// the host, the units and their files, and the shared settings.
pub fn install(ctx: &Context, inputs: &Inputs, images: Images, components: &[Component]) -> Result<()> {
    prepare_node(ctx)?;
    if images == Images::Upstream {
        kubelet_program::ensure(ctx)?;
    }
    crate::component::apply(ctx, crate::component::for_node(ctx.facts.os, inputs.runtime), components)?;
    // After the install: atomic copies the images' own defaults of this file onto the host.
    ctx.host.write_file(&shared_config())?;
    Ok(())
}

/// The sysconfig file of a component and the variable Magnum's image reads from it.
pub fn sysconfig_location(kind: Kind) -> (&'static str, &'static str) {
    match kind {
        Kind::ApiServer => ("/etc/kubernetes/apiserver", "KUBE_API_ARGS"),
        Kind::ControllerManager => ("/etc/kubernetes/controller-manager", "KUBE_CONTROLLER_MANAGER_ARGS"),
        Kind::Scheduler => ("/etc/kubernetes/scheduler", "KUBE_SCHEDULER_ARGS"),
        Kind::Kubelet => ("/etc/kubernetes/kubelet", "KUBELET_ARGS"),
        Kind::Proxy => ("/etc/kubernetes/proxy", "KUBE_PROXY_ARGS"),
    }
}

/// `VAR="args"` for a shell to source: the argument builders refuse quotes, backslashes and backquotes,
/// so only `$` needs escaping.
pub fn sysconfig(kind: Kind, args: &[String]) -> FileSpec {
    let (path, var) = sysconfig_location(kind);
    let line = args.iter().map(|a| a.replace('$', "\\$")).collect::<Vec<_>>().join(" ");
    let text = format!(
        "# Written by hearth-agent: the whole command line of {}, as Magnum's image reads it.\n{var}=\"{line}\"\n",
        kind.binary()
    );
    FileSpec::new(path, text, 0o644)
}

/// `/etc/kubernetes/config`, with the shared variables empty.
pub fn shared_config() -> FileSpec {
    let text = "# Written by hearth-agent. Magnum's images source this file too; every flag is in the\n\
                # component's own file, so these stay empty.\n\
                KUBE_LOGTOSTDERR=\"\"\nKUBE_LOG_LEVEL=\"\"\nKUBE_ALLOW_PRIV=\"\"\nKUBE_MASTER=\"\"\n";
    FileSpec::new(SHARED_CONFIG, text, 0o644)
}

/// The API server's URL for this node's components.
fn server(inputs: &Inputs) -> Result<String> {
    let c = inputs.config;
    let scheme = if c.cluster.tls_disabled { "http" } else { "https" };
    let host = match c.role {
        Role::Master => "127.0.0.1".to_string(),
        Role::Minion => match c.api.master_ip {
            Some(std::net::IpAddr::V6(v6)) => format!("[{v6}]"),
            Some(ip) => ip.to_string(),
            None => bail!("api.master_ip (KUBE_MASTER_IP) is not set: the minion's kubelet needs the API address"),
        },
    };
    Ok(format!("{scheme}://{host}:{}", c.api.port))
}

/// The kubeconfig `kind` uses, at its path.
fn kubeconfig(inputs: &Inputs, kind: Kind) -> Result<Option<FileSpec>> {
    let c = inputs.config;
    let (path, identity) = match (kind, c.role) {
        (Kind::ApiServer, _) => return Ok(None),
        (Kind::Kubelet, _) => (super::KUBELET_KUBECONFIG, ("kubelet", format!("system:node:{}", inputs.node_name))),
        (Kind::Proxy, Role::Minion) => (super::PROXY_KUBECONFIG_MINION, ("proxy", identities::KUBE_PROXY.into())),
        (Kind::Proxy, Role::Master) => (super::PROXY_KUBECONFIG_MASTER, ("proxy", identities::KUBE_PROXY.into())),
        (Kind::ControllerManager, _) => {
            (super::CONTROLLER_MANAGER_KUBECONFIG, ("controller-manager", identities::CONTROLLER_MANAGER.into()))
        }
        (Kind::Scheduler, _) => (super::SCHEDULER_KUBECONFIG, ("scheduler", identities::SCHEDULER.into())),
    };
    let tls = !c.cluster.tls_disabled;
    let (file, user) = identity;
    let config = Kubeconfig {
        server: server(inputs)?,
        certificate_authority: tls.then(|| cert("ca.crt")),
        identity: tls.then(|| Identity {
            user,
            certificate: cert(&format!("{file}.crt")),
            key: cert(&format!("{file}.key")),
        }),
        insecure_skip_tls_verify: false,
        cluster_name: "kubernetes".into(),
    };
    Ok(Some(config.file(path)))
}

/// The static ABAC rules of the agent's API steps (`hearth-agent`): one per kind they apply
/// ([`crate::kube_api::KINDS`]), in `kube-system` for namespaced kinds. Read by kube-apiserver at start,
/// before any RBAC object exists: RBAC cannot authorise its own first objects for a user outside
/// `system:masters`, and the agent never holds that. Nothing else is in the file; every other identity is
/// authorised by RBAC.
pub fn authorization_policy() -> FileSpec {
    let mut text = String::new();
    for kind in crate::kube_api::KINDS {
        let (group, resource) = (kind.api_group(), kind.resource);
        let namespace = if kind.namespaced { crate::kube_api::NAMESPACE } else { "*" };
        let rule = serde_json::json!({
            "apiVersion": "abac.authorization.kubernetes.io/v1beta1",
            "kind": "Policy",
            "spec": {"user": identities::AGENT, "apiGroup": group, "resource": resource, "namespace": namespace},
        });
        text.push_str(&rule.to_string());
        text.push('\n');
    }
    // What the steps probe, read-only: every release's default RBAC allows these too, but not before the
    // API server has made its default roles, and 1.11–1.15 have no /readyz for RBAC to name (the 404 the
    // health wait expects there needs the request authorised first).
    for path in crate::kube_api::PROBED_PATHS {
        let rule = serde_json::json!({
            "apiVersion": "abac.authorization.kubernetes.io/v1beta1",
            "kind": "Policy",
            "spec": {"user": identities::AGENT, "nonResourcePath": path, "readonly": true},
        });
        text.push_str(&rule.to_string());
        text.push('\n');
    }
    FileSpec::new(super::AUTHORIZATION_POLICY, text, 0o644)
}

/// Magnum's webhook kubeconfig for k8s-keystone-auth, which serves on the master's loopback with a
/// self-signed certificate.
pub fn keystone_webhook_config() -> FileSpec {
    Kubeconfig {
        server: "https://127.0.0.1:8443/webhook".into(),
        certificate_authority: None,
        identity: None,
        insecure_skip_tls_verify: true,
        cluster_name: "webhook".into(),
    }
    .file(super::KEYSTONE_WEBHOOK_CONFIG)
}

/// The kubelet's configuration file, from 1.35: `failCgroupV1: false`, so a node whose image still boots
/// with cgroup v1 (Fedora Atomic, a Debian or Ubuntu image with `systemd.unified_cgroup_hierarchy=0`)
/// joins with the kubelet's deprecation warning instead of a kubelet that never starts while the agent
/// reports success. Everything else stays on the command line, where operators' `kubelet_options` can
/// override it.
pub fn kubelet_configuration(inputs: &Inputs) -> Option<FileSpec> {
    inputs.version.kubelet_fails_on_cgroup_v1().then(|| {
        let text = "# Written by hearth-agent: what the kubelet takes only from a file; the flags are in
                    # /etc/kubernetes/kubelet.
                    apiVersion: kubelet.config.k8s.io/v1beta1
                    kind: KubeletConfiguration
                    failCgroupV1: false
";
        FileSpec::new(super::KUBELET_CONFIGURATION, text, 0o644)
    })
}

/// The host paths a containerised component needs. None for the kubelet: it runs on the host, or on
/// fedora-atomic from Magnum's image, whose own system-container template mounts what it needs.
fn mounts(kind: Kind) -> Vec<Mount> {
    let config = Mount::same(KUBERNETES_DIR, false).relabel();
    match kind {
        Kind::ApiServer | Kind::ControllerManager | Kind::Scheduler => vec![config],
        Kind::Proxy => vec![config, Mount::same(KERNEL_MODULES, false), Mount::same("/run", true)],
        Kind::Kubelet => Vec::new(),
    }
}

/// One Kubernetes component of this node, with `extra` files it also reads.
pub fn component(inputs: &Inputs, kind: Kind, images: Images, extra: Vec<FileSpec>) -> Result<Component> {
    let args = args::for_component(kind, inputs).with_context(|| format!("building {}'s arguments", kind.binary()))?;
    let mut files = vec![sysconfig(kind, &args)];
    files.extend(kubeconfig(inputs, kind)?);
    if kind == Kind::Kubelet {
        files.extend(kubelet_configuration(inputs));
    }
    files.extend(extra);
    let runtime_unit = inputs.runtime.unit().to_string();
    let (after, privileged, host_pid) = match kind {
        Kind::ApiServer => (vec!["etcd.service".to_string()], false, false),
        Kind::ControllerManager | Kind::Scheduler => (vec!["kube-apiserver.service".to_string()], false, false),
        Kind::Kubelet => (vec![runtime_unit], true, true),
        Kind::Proxy => (Vec::new(), true, false),
    };
    // Atomic's kubelet template mounts a fixed set; /opt/cni (the CNI plugins) comes in as Magnum added it.
    let system_container_settings = match kind {
        Kind::Kubelet => vec![format!(
            r#"ADDTL_MOUNTS=,{{"type":"bind","source":"{CNI_DIR}","destination":"{CNI_DIR}","options":["bind","rw","slave","mode=777"]}}"#
        )],
        _ => Vec::new(),
    };
    // The keys Magnum's unprivileged images (uid 996) read: the apiserver's, the service-account pair, and
    // the CA key when controller-manager signs.
    let tls = !inputs.config.cluster.tls_disabled;
    let system_container_user_files: Vec<String> = match kind {
        _ if !tls => Vec::new(),
        Kind::ApiServer => {
            ["server.key", "front-proxy-client.key", "service_account.key", "service_account_private.key"]
                .map(cert)
                .to_vec()
        }
        Kind::ControllerManager => {
            let mut keys = ["controller-manager.key", "service_account_private.key"].map(cert).to_vec();
            if inputs.config.kubernetes.cert_manager_api {
                keys.push(super::CA_KEY.to_string());
            }
            keys
        }
        Kind::Scheduler => vec![cert("scheduler.key")],
        Kind::Kubelet | Kind::Proxy => Vec::new(),
    };
    let (image, args, args_from) = match (images, kind) {
        (Images::Magnum, _) => (Some(kube_image(inputs.config, kind, images)), Vec::new(), None),
        (Images::Upstream, _) => {
            let (file, var) = sysconfig_location(kind);
            let args_from = Some(ArgsFrom { file: file.into(), var: var.into() });
            match kind {
                // Upstream publishes no kubelet image: the host's program (see `kubelet_program`).
                Kind::Kubelet => (None, vec![kubelet_program::PROGRAM.to_string()], args_from),
                _ => (Some(kube_image(inputs.config, kind, images)), vec![upstream_program(kind)], args_from),
            }
        }
    };
    Ok(Component {
        name: kind.binary().to_string(),
        description: format!("Kubernetes {}", kind.binary()),
        image,
        args,
        args_from,
        env_file: None,
        mounts: mounts(kind),
        privileged,
        host_network: true,
        host_pid,
        after,
        system_container_settings,
        system_container_user_files,
        files,
    })
}

/// A master's components: the control plane, then its kubelet and kube-proxy.
pub fn master(inputs: &Inputs, images: Images) -> Result<Vec<Component>> {
    let c = inputs.config;
    let tls = !c.cluster.tls_disabled;
    let mut api_files = Vec::new();
    if tls {
        api_files.push(authorization_policy());
        if c.kubernetes.keystone_auth_enabled {
            api_files.push(keystone_webhook_config());
        }
    }
    let mut cm_files = Vec::new();
    if c.kubernetes.cert_manager_api {
        let key = c.kubernetes.ca_key.expose().trim();
        if key.is_empty() {
            bail!("kubernetes.cert_manager_api (CERT_MANAGER_API) is on but kubernetes.ca_key (CA_KEY) is empty");
        }
        cm_files.push(FileSpec::new(super::CA_KEY, format!("{key}\n"), 0o600));
    }
    Ok(vec![
        component(inputs, Kind::ApiServer, images, api_files)?,
        component(inputs, Kind::ControllerManager, images, cm_files)?,
        component(inputs, Kind::Scheduler, images, Vec::new())?,
        component(inputs, Kind::Kubelet, images, Vec::new())?,
        component(inputs, Kind::Proxy, images, Vec::new())?,
    ])
}

/// A minion's components.
pub fn minion(inputs: &Inputs, images: Images) -> Result<Vec<Component>> {
    Ok(vec![component(inputs, Kind::Kubelet, images, Vec::new())?, component(inputs, Kind::Proxy, images, Vec::new())?])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeConfig;

    #[test]
    fn sysconfig_files_hold_one_shell_variable() {
        let file = sysconfig(Kind::Scheduler, &["--kubeconfig=/x".into(), "--v=$2".into()]);
        let text = String::from_utf8(file.contents).unwrap();
        assert!(text.ends_with("KUBE_SCHEDULER_ARGS=\"--kubeconfig=/x --v=\\$2\"\n"), "{text}");
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("{text}\nprintf '%s' \"$KUBE_SCHEDULER_ARGS\""))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "--kubeconfig=/x --v=$2");
    }

    #[test]
    fn master_components_use_the_masters_identity_and_minions_their_own() {
        let mut c = NodeConfig::new(Role::Master);
        c.kubernetes.tag = "v1.24.17".into();
        c.node.ip = Some("10.0.0.4".parse().unwrap());
        let inputs = Inputs::new(&c, "m-0".into()).unwrap();
        let master = master(&inputs, Images::Magnum).unwrap();
        let names: Vec<&str> = master.iter().map(|m| m.name.as_str()).collect();
        assert_eq!(names, ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy"]);
        let text = |component: &Component, path: &str| {
            String::from_utf8(component.files.iter().find(|f| f.path.to_str() == Some(path)).unwrap().contents.clone())
                .unwrap()
        };
        let cm = text(&master[1], super::super::CONTROLLER_MANAGER_KUBECONFIG);
        assert!(cm.contains("certs/controller-manager.crt") && cm.contains("system:kube-controller-manager"));
        assert!(text(&master[2], super::super::SCHEDULER_KUBECONFIG).contains("certs/scheduler.crt"));
        assert!(text(&master[3], super::super::KUBELET_KUBECONFIG).contains("\"system:node:m-0\""));
        assert!(text(&master[4], super::super::PROXY_KUBECONFIG_MASTER).contains("certs/proxy.crt"));
        let policy = text(&master[0], super::super::AUTHORIZATION_POLICY);
        for line in policy.lines() {
            let rule: serde_json::Value = serde_json::from_str(line).unwrap();
            assert_eq!(rule["spec"]["user"], "hearth-agent", "{line}");
            assert!(rule["spec"]["resource"] != "*" && rule["spec"]["nonResourcePath"] != "*", "{line}");
        }
        assert!(policy.contains(r#""namespace":"kube-system","resource":"daemonsets""#), "{policy}");
        assert!(!policy.contains("\"kubernetes\""), "no rule for the API server's certificate: {policy}");

        c.role = Role::Minion;
        let minion_of = |c: &NodeConfig| minion(&Inputs::new(c, "n-0".into()).unwrap(), Images::Upstream);
        assert!(minion_of(&c).unwrap_err().to_string().contains("KUBE_MASTER_IP"));
        c.api.master_ip = Some("10.0.0.4".parse().unwrap());
        let minion = minion_of(&c).unwrap();
        let proxy = text(&minion[1], super::super::PROXY_KUBECONFIG_MINION);
        assert_eq!(minion[1].image.as_deref(), Some("registry.k8s.io/kube-proxy:v1.24.17"));
        assert_eq!(
            (minion[0].image.as_deref(), minion[0].args.as_slice()),
            (None, ["/usr/local/bin/kubelet".to_string()].as_slice())
        );
        assert_eq!(minion[1].args, ["/usr/local/bin/kube-proxy"]);
        assert_eq!(minion[1].args_from.as_ref().map(|a| a.var.as_str()), Some("KUBE_PROXY_ARGS"));
        assert!(proxy.contains("https://10.0.0.4:6443") && proxy.contains("certs/proxy.key"), "{proxy}");
    }
}
