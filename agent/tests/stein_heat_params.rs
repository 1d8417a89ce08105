//! Drop-in for a real Magnum (issue 13): the agent run rooted on Magnum Stein's own heat-params
//! (`examples/heat-params/stein-{master,minion}`: no `MASTER_INDEX`, no `TRUSTEE_USERNAME` or
//! `TRUSTEE_DOMAIN_ID` on minions, no OpenStack CA) with `--os fedora-atomic`, in three variants derived
//! from those files: TLS off; TLS on; TLS with proxy, docker volume, insecure registry, the local
//! registry, an etcd discovery URL and calico. Each run must succeed, leave the node's Kubernetes
//! configuration complete (kubelet, kube-proxy, their kubeconfigs, the CNI directories and flags, the
//! add-ons planned) and keep what Magnum's node had; a second run changes nothing.
//!
//! The tree is a Fedora Atomic node as far as the steps look: its vendor `docker.service` (which passes
//! `$DOCKER_STORAGE_OPTIONS`) and an enabled `docker-storage-setup.service`. Keystone and Magnum's
//! certificate API are loopback stand-ins ([`StandInCloud`]), the minion's wait condition a loopback
//! handle; every other address in the files (proxy, discovery, registry) is loopback and never dialled.

use hearth_tests::cloud::Trustee;
use hearth_tests::loopback::{Loopback, Reply};
use hearth_tests::StandInCloud;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");
const MASTER_IP: &str = "10.0.0.4";
const MINION_IP: &str = "10.0.0.5";

/// Fedora Atomic 29's docker unit, as far as the steps read it.
const ATOMIC_DOCKER_UNIT: &str = "[Unit]\nDescription=Docker Application Container Engine\n\
    After=network-online.target\nWants=network-online.target docker-storage-setup.service\n\n\
    [Service]\nType=notify\nEnvironmentFile=-/etc/sysconfig/docker\nEnvironmentFile=-/etc/sysconfig/docker-storage\n\
    ExecStart=/usr/bin/dockerd-current --exec-opt native.cgroupdriver=systemd $OPTIONS $DOCKER_STORAGE_OPTIONS\n\n\
    [Install]\nWantedBy=multi-user.target\n";
const ATOMIC_STORAGE_SETUP_UNIT: &str = "[Unit]\nDescription=Docker Storage Setup\nBefore=docker.service\n\n\
    [Service]\nType=oneshot\nExecStart=/usr/bin/container-storage-setup\n\n[Install]\nWantedBy=multi-user.target\n";
const STORAGE_SETUP_LINK: &str = "etc/systemd/system/multi-user.target.wants/docker-storage-setup.service";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    TlsOff,
    TlsOn,
    /// TLS, proxy, docker volume, insecure registry, the local registry, discovery URL, calico.
    Everything,
}

fn workspace(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// `text` with each `KEY="value"` line of `changes` replaced (or added at the end).
fn with(text: &str, changes: &[(&str, String)]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for (key, value) in changes {
        let line = format!("{key}=\"{value}\"");
        match lines.iter_mut().find(|l| l.starts_with(&format!("{key}="))) {
            Some(existing) => *existing = line,
            None => lines.push(line),
        }
    }
    lines.join("\n") + "\n"
}

/// Stein's heat-params of `role` for `variant`, pointed at `cloud` (and, for minions, `signal`).
fn heat_params(role: &str, variant: Variant, cloud: &StandInCloud, signal: &str) -> String {
    let text = std::fs::read_to_string(workspace(&format!("examples/heat-params/stein-{role}"))).unwrap();
    let mut changes = vec![("AUTH_URL", cloud.keystone_url.clone()), ("MAGNUM_URL", cloud.magnum_url.clone())];
    if role == "minion" {
        let curl = format!("curl -i -X POST -H 'X-Auth-Token: gAAAAABstein-token' {signal}");
        changes.push(("WAIT_CURL", curl));
    }
    let tls_disabled = if variant == Variant::TlsOff { "True" } else { "False" };
    changes.push(("TLS_DISABLED", tls_disabled.into()));
    if variant == Variant::Everything {
        // The example's proxy, docker volume and discovery URL stay; the rest is switched on.
        changes.extend([
            ("INSECURE_REGISTRY_URL", "127.0.0.1:5001".to_string()),
            ("REGISTRY_ENABLED", "True".into()),
            ("NETWORK_DRIVER", "calico".into()),
        ]);
    } else {
        changes.extend(["HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ETCD_DISCOVERY_URL"].map(|key| (key, String::new())));
        changes.extend(["DOCKER_VOLUME_SIZE", "ETCD_VOLUME_SIZE"].map(|key| (key, "0".to_string())));
    }
    with(&text, &changes)
}

/// A cloud for the trustee and cluster the Stein examples name.
fn cloud() -> StandInCloud {
    let text = std::fs::read_to_string(workspace("examples/heat-params/stein-minion")).unwrap();
    let loaded = hearth_fragments::config::heat_params::parse(&text, "stein-minion", None).unwrap();
    let os = &loaded.config.openstack;
    StandInCloud::start(Trustee {
        user_id: os.trustee_user_id.clone(),
        password: os.trustee_password.expose().to_string(),
        trust_id: os.trust_id.expose().to_string(),
        cluster_uuid: loaded.config.cluster.uuid.clone(),
    })
}

/// A Fedora Atomic node's tree; with `ca`, the anchor Magnum's part-001 wrote.
fn atomic_tree(hostname: &str, ca: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let path = dir.path().join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write("etc/os-release", "NAME=Fedora\nVERSION=\"29 (Atomic Host)\"\nID=fedora\nVARIANT_ID=atomic.host\n");
    write("etc/hostname", &format!("{hostname}.novalocal\n"));
    write("usr/lib/systemd/system/docker.service", ATOMIC_DOCKER_UNIT);
    write("usr/lib/systemd/system/docker-storage-setup.service", ATOMIC_STORAGE_SETUP_UNIT);
    // What docker-storage-setup wrote at first boot, and docker's data from before the volume.
    write("etc/sysconfig/docker-storage", "DOCKER_STORAGE_OPTIONS=\"--storage-driver overlay2\"\n");
    write("var/lib/docker/image/overlay2/repositories.json", "{}\n");
    let link = dir.path().join(STORAGE_SETUP_LINK);
    std::fs::create_dir_all(link.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink("/usr/lib/systemd/system/docker-storage-setup.service", link).unwrap();
    if ca {
        write(
            "etc/pki/ca-trust/source/anchors/openstack-ca.pem",
            &std::fs::read_to_string(workspace("examples/openstack-ca.pem")).unwrap(),
        );
    }
    dir
}

fn run(params: &Path, tree: &Path) -> Output {
    let args =
        ["run", "--heat-params", params.to_str().unwrap(), "--root", tree.to_str().unwrap(), "--os", "fedora-atomic"];
    Command::new(AGENT).args(args).output().unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_ok(output: &Output) {
    assert!(output.status.success(), "agent failed:\n{}\n{}", stdout(output), String::from_utf8_lossy(&output.stderr));
}

/// One role's node after a run, and the second run.
struct Node {
    tree: tempfile::TempDir,
    /// The first run's status: its steps and their actions.
    status: Value,
    /// What the minion's wait condition received.
    signals: Vec<Value>,
}

impl Node {
    fn read(&self, path: &str) -> String {
        std::fs::read_to_string(self.tree.path().join(path.trim_start_matches('/')))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn exists(&self, path: &str) -> bool {
        self.tree.path().join(path.trim_start_matches('/')).exists()
    }

    /// The value of a shell variable in a sysconfig file.
    fn variable(&self, path: &str, var: &str) -> String {
        let text = self.read(path);
        let line =
            text.lines().find(|l| l.starts_with(&format!("{var}="))).unwrap_or_else(|| panic!("{var} in {path}"));
        line[var.len() + 1..].trim_matches('"').to_string()
    }

    fn kubelet_flags(&self) -> Vec<String> {
        self.variable("/etc/kubernetes/kubelet", "KUBELET_ARGS").split(' ').map(String::from).collect()
    }

    fn step(&self, name: &str) -> &Value {
        self.status["steps"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap_or_else(|| panic!("{name}"))
    }

    /// The targets of a step's actions.
    fn targets(&self, name: &str) -> Vec<String> {
        let actions = self.step(name)["actions"].as_array().cloned().unwrap_or_default();
        actions.iter().map(|a| a["target"].as_str().unwrap_or_default().to_string()).collect()
    }
}

fn flag<'a>(flags: &'a [String], name: &str) -> Option<&'a str> {
    flags.iter().find_map(|f| f.strip_prefix(&format!("--{name}=")))
}

/// Runs `role` of `variant` twice; the second run must change nothing.
fn converge(role: &str, variant: Variant, ca: bool) -> Node {
    let cloud = cloud();
    let heat = Loopback::serve(|_| Reply::text(200, "null"));
    let signal = heat.url("/v1/a1b2c3/stacks/k8s-demo-kube_minions-x-0-y/8a1b/resources/minion_wait_handle/signal");
    let work = tempfile::tempdir().unwrap();
    let params = work.path().join("heat-params");
    std::fs::write(&params, heat_params(role, variant, &cloud, &signal)).unwrap();
    let tree = atomic_tree(&format!("k8s-demo-{role}-0"), ca);

    let read_status = || -> Value {
        let text = std::fs::read_to_string(tree.path().join("var/lib/hearth/status.json")).unwrap();
        serde_json::from_str(&text).unwrap()
    };
    assert_ok(&run(&params, tree.path()));
    let status = read_status();
    let second = run(&params, tree.path());
    assert_ok(&second);
    let again = stdout(&second);
    assert!(
        !again.contains(" changed ") && again.contains(" 0 changed"),
        "{role} {variant:?}: the second run changed:\n{again}"
    );
    for status in [&status, &read_status()] {
        assert_eq!(status["state"], "succeeded", "{status}");
    }
    let mut signals = Vec::new();
    while let Some(request) = heat.next_request(Duration::from_millis(if role == "minion" { 5000 } else { 100 })) {
        signals.push(request.json());
    }
    if role == "minion" {
        assert_eq!(signals.len(), 2, "one signal per run");
        assert!(signals.iter().all(|s| s["status"] == "SUCCESS"), "{signals:?}");
    }
    let expected_certs = match (variant, role) {
        (Variant::TlsOff, _) => 0,
        (_, "master") => 7,
        _ => 2,
    };
    assert_eq!(cloud.signed().len(), expected_certs, "{role} {variant:?}: certificates, all from the first run");
    Node { tree, status, signals }
}

/// What every variant must leave on both roles.
fn complete_kubernetes_config(node: &Node, role: &str, variant: Variant) {
    let ip = if role == "master" { MASTER_IP } else { MINION_IP };
    let kubelet = node.kubelet_flags();
    // Point 7: the kubelet serves on the node's address, on both roles, as Magnum's.
    assert_eq!(flag(&kubelet, "address"), Some(ip), "{kubelet:?}");
    // Point 6: no anonymous caller, the API server decides, with TLS off too.
    assert_eq!(flag(&kubelet, "anonymous-auth"), Some("false"), "{kubelet:?}");
    assert_eq!(flag(&kubelet, "authorization-mode"), Some("Webhook"), "{kubelet:?}");
    assert_eq!(flag(&kubelet, "authentication-token-webhook"), Some("true"), "{kubelet:?}");
    // Point 3: Magnum's pause image, which a mirror made for Magnum holds.
    assert_eq!(flag(&kubelet, "pod-infra-container-image"), Some("gcr.io/google_containers/pause:3.0"));
    // CNI, as the network add-on's pods fill it.
    assert_eq!(flag(&kubelet, "network-plugin"), Some("cni"));
    assert_eq!(flag(&kubelet, "cni-conf-dir"), Some("/etc/cni/net.d"));
    assert!(node.exists("/etc/cni/net.d") && node.exists("/opt/cni/bin"));
    let kubeconfig = node.read("/etc/kubernetes/kubelet-config.yaml");
    let scheme = if variant == Variant::TlsOff { "http" } else { "https" };
    let server = if role == "master" { "127.0.0.1" } else { MASTER_IP };
    assert!(kubeconfig.contains(&format!("\"{scheme}://{server}:6443\"")), "{kubeconfig}");
    let proxy = node.variable("/etc/kubernetes/proxy", "KUBE_PROXY_ARGS");
    let proxy_kubeconfig = if role == "master" { "proxy-kubeconfig.yaml" } else { "proxy-config.yaml" };
    assert!(proxy.contains(&format!("--kubeconfig=/etc/kubernetes/{proxy_kubeconfig}")), "{proxy}");
    assert!(node.read(&format!("/etc/kubernetes/{proxy_kubeconfig}")).contains(&format!("{scheme}://")));
    // Magnum's system containers, installed by atomic (which records the image it installed).
    for (name, image) in [("kubelet", "kubernetes-kubelet"), ("kube-proxy", "kubernetes-proxy")] {
        let installed = node.read(&format!("/var/lib/hearth/components/{name}.image"));
        assert_eq!(installed.trim(), format!("docker.io/openstackmagnum/{image}:v1.11.6"), "{name}");
    }

    // Point 8: on Fedora Atomic the driver is docker-storage-setup's option, once; the tool disabled.
    assert!(!node.read("/etc/docker/daemon.json").contains("storage-driver"), "the driver twice");
    assert_eq!(node.variable("/etc/sysconfig/docker-storage", "DOCKER_STORAGE_OPTIONS"), "--storage-driver overlay2");
    assert!(!node.tree.path().join(STORAGE_SETUP_LINK).exists(), "docker-storage-setup is still enabled");
    let storage = node.targets("docker-storage");
    let volume = variant == Variant::Everything;
    assert_eq!(storage.iter().any(|t| t == "systemctl stop docker.service"), volume, "{storage:?}");
    assert_eq!(storage.iter().any(|t| t.starts_with("find /var/lib/docker -mindepth 1")), volume, "{storage:?}");
    assert_eq!((node.exists("/etc/fstab") && node.read("/etc/fstab").contains("/var/lib/docker xfs")), volume);

    let proxied = node.exists("/etc/systemd/system/docker.service.d/http-proxy.conf");
    assert_eq!(proxied, variant == Variant::Everything, "proxy drop-in");
    let daemon = node.read("/etc/docker/daemon.json");
    assert_eq!(daemon.contains("127.0.0.1:5001"), variant == Variant::Everything, "{daemon}");
}

fn master(variant: Variant) {
    let node = converge("master", variant, variant != Variant::TlsOff);
    complete_kubernetes_config(&node, "master", variant);
    let kubelet = node.kubelet_flags();
    // Point 4: Magnum's taints first, then the release's; Magnum's role label.
    assert_eq!(
        flag(&kubelet, "register-with-taints"),
        Some(
            "CriticalAddonsOnly=True:NoSchedule,dedicated=master:NoSchedule,node-role.kubernetes.io/master=:NoSchedule"
        )
    );
    assert!(flag(&kubelet, "node-labels").unwrap().split(',').any(|l| l == "node-role.kubernetes.io/master="));

    // Point 2: no MASTER_INDEX, and the add-ons are applied (planned: a rooted run sends nothing to the
    // node's own API server).
    let addons = node.step("addons");
    assert_ne!(addons["result"], "skipped", "{addons}");
    let planned = node.targets("addons").join("\n");
    let network = match variant {
        Variant::Everything => ["daemonsets/calico-node", "configmaps/calico-config"],
        _ => ["daemonsets/kube-flannel-ds-amd64", "configmaps/kube-flannel-cfg"],
    };
    for object in ["deployments/coredns", "services/kube-dns"].iter().chain(&network) {
        assert!(planned.contains(&format!("/namespaces/kube-system/{object}")), "{object} not planned:\n{planned}");
    }
    assert_eq!(
        node.step("network-config")["result"] == "skipped",
        variant == Variant::Everything,
        "calico has no etcd key"
    );

    // Point 9: etcd as a multi-master Stein cluster needs it.
    let etcd = node.read("/etc/etcd/etcd.conf");
    let scheme = if variant == Variant::TlsOff { "http" } else { "https" };
    assert!(
        etcd.contains(&format!("ETCD_LISTEN_CLIENT_URLS={scheme}://{MASTER_IP}:2379,http://127.0.0.1:2379")),
        "{etcd}"
    );
    assert!(etcd.contains(&format!("ETCD_ADVERTISE_CLIENT_URLS={scheme}://{MASTER_IP}:2379\n")), "{etcd}");
    match variant {
        Variant::Everything => {
            assert!(etcd.contains("ETCD_DISCOVERY=http://127.0.0.1:2379/v2/keys/discovery/"), "{etcd}");
            assert!(!etcd.contains("ETCD_INITIAL_CLUSTER="), "{etcd}");
        }
        _ => assert!(etcd.contains(&format!("ETCD_INITIAL_CLUSTER={MASTER_IP}={scheme}://{MASTER_IP}:2380")), "{etcd}"),
    }

    let api = node.variable("/etc/kubernetes/apiserver", "KUBE_API_ARGS");
    if variant == Variant::TlsOff {
        assert!(api.contains("--insecure-port=6443") && !api.contains("--authorization-mode"), "{api}");
        return;
    }
    // Point 5: no superuser. The ABAC file names only the agent, kind by kind; every master client of the
    // API has its own identity; only the front proxy may assert users; the API server's certificate is
    // the kubelets' client and nothing more.
    let policy = node.read("/etc/kubernetes/authorization-policy.jsonl");
    for line in policy.lines() {
        let rule: Value = serde_json::from_str(line).unwrap();
        assert_eq!(rule["spec"]["user"], "hearth-agent", "{line}");
        assert!(rule["spec"]["resource"] != "*" && rule["spec"]["apiGroup"] != "*", "{line}");
    }
    assert!(api.contains("--requestheader-allowed-names=front-proxy-client "), "{api}");
    assert!(api.contains("--kubelet-client-certificate=/etc/kubernetes/certs/server.crt"), "{api}");
    for (file, user, cert) in [
        ("controller-manager-kubeconfig.yaml", "system:kube-controller-manager", "controller-manager.crt"),
        ("scheduler-kubeconfig.yaml", "system:kube-scheduler", "scheduler.crt"),
        ("proxy-kubeconfig.yaml", "system:kube-proxy", "proxy.crt"),
    ] {
        let text = node.read(&format!("/etc/kubernetes/{file}"));
        assert!(text.contains(&format!("\"{user}\"")) && text.contains(cert), "{file}:\n{text}");
    }
    // Point 10: the CA Magnum's part-001 left is found, so nothing is degraded.
    assert!(node.step("install-ca").get("degraded").is_none(), "{}", node.step("install-ca"));
}

fn minion(variant: Variant) {
    let ca = variant == Variant::TlsOn;
    let node = converge("minion", variant, ca);
    complete_kubernetes_config(&node, "minion", variant);
    assert!(flag(&node.kubelet_flags(), "register-with-taints").is_none());
    let data = node.signals[0]["data"].as_str().unwrap().to_string();
    // Point 10: without the anchor the signal's data says no CA was found; with it, nothing.
    assert_eq!(data.contains("degraded: part-001 install-ca: no OpenStack CA found"), !ca, "{data}");
    // Point 1: the registry authenticates with what Stein's minion carries: the trustee's id and the trust.
    if variant == Variant::Everything {
        let registry = node.read("/etc/sysconfig/registry-config.yml");
        let swift: Vec<&str> = registry.lines().map(str::trim).collect();
        assert!(swift.contains(&"userid: 2b7fa6c8d26e4b4e8a8e35a3a0e8ef5e"), "{registry}");
        assert!(swift.contains(&"trustid: e2a7c3d9f1b84c6a9d0e1f2a3b4c5d6e"), "{registry}");
        assert!(!swift.iter().any(|l| l.starts_with("username:") || l.starts_with("domainid:")), "{registry}");
        assert!(node.exists("/etc/systemd/system/registry.service"));
        assert!(!data.contains("registry"), "{data}");
        assert!(node.read("/etc/docker/daemon.json").contains("localhost:5000"));
    }
}

#[test]
fn stein_master_tls_off() {
    master(Variant::TlsOff);
}

#[test]
fn stein_master_tls_on() {
    master(Variant::TlsOn);
}

#[test]
fn stein_master_with_proxy_volume_registry_discovery_and_calico() {
    master(Variant::Everything);
}

#[test]
fn stein_minion_tls_off() {
    minion(Variant::TlsOff);
}

#[test]
fn stein_minion_tls_on() {
    minion(Variant::TlsOn);
}

#[test]
fn stein_minion_with_proxy_volume_registry_discovery_and_calico() {
    minion(Variant::Everything);
}

/// Point 1's other half: a registry that cannot authenticate at all leaves the node joining, the
/// registry out, and the reason in the signal's data.
#[test]
fn a_minion_whose_registry_cannot_reach_swift_still_joins_and_says_so() {
    let cloud = cloud();
    let heat = Loopback::serve(|_| Reply::text(200, "null"));
    let signal = heat.url("/v1/p/stacks/s/i/resources/minion_wait_handle/signal");
    let work = tempfile::tempdir().unwrap();
    let params = work.path().join("heat-params");
    let text = with(
        &heat_params("minion", Variant::TlsOff, &cloud, &signal),
        &[("REGISTRY_ENABLED", "True".into()), ("TRUST_ID", String::new())],
    );
    std::fs::write(&params, text).unwrap();
    let tree = atomic_tree("k8s-demo-minion-0", true);
    let output = run(&params, tree.path());
    assert_ok(&output);
    let body = heat.next_request(Duration::from_secs(10)).expect("no signal").json();
    assert_eq!(body["status"], "SUCCESS");
    let data = body["data"].as_str().unwrap();
    assert!(
        data.contains("degraded: part-008 registry-config: the local registry is not configured")
            && data.contains("TRUST_ID"),
        "{data}"
    );
    assert!(!data.contains("Tr'u$tee"), "a secret in the signal: {data}");
    assert!(tree.path().join("etc/kubernetes/kubelet").exists(), "the kubelet was not configured");
    assert!(!tree.path().join("etc/sysconfig/registry-config.yml").exists());
    assert!(stdout(&output).contains("part-012 registry-service") && stdout(&output).contains("skipped"));
}
