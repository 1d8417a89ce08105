//! End to end: render → real Heat → each server's user-data as Heat delivered it → a booted Debian node
//! with cloud-init → hearth-agent downloaded from hearth-server → every step → the signal back into Heat.
//! See `hearth_tests::e2e` for the wiring and for what stands in for what this machine cannot run.
//!
//! Every scenario appends its summary (per node: steps, agent time, result, units that cannot run here;
//! per stack: time to its final status) to `e2e-summary.txt` in Cargo's test scratch directory, which
//! `.ci/run` prints at the end.

use hearth_fragments::config::Role;
use hearth_tests::e2e::{Cluster, ClusterNode, Example, Spec, AGENT, CONTROL_PLANE, DONE};
use hearth_tests::kubernetes;
use serde_json::{json, Value};
use std::io::Write as _;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

/// Bound on a whole stack; a node converges in seconds, a hung one fails the test with diagnostics.
const STACK_TIMEOUT: Duration = Duration::from_secs(300);

/// One cluster at a time: the machine has two cores, and the timings reported must mean something.
fn exclusive() -> MutexGuard<'static, ()> {
    static ONE_CLUSTER: Mutex<()> = Mutex::new(());
    ONE_CLUSTER.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Appends to the run's summary file (made empty by the first scenario of this process).
fn report(text: &str) {
    static FILE: OnceLock<Mutex<std::fs::File>> = OnceLock::new();
    let file = FILE.get_or_init(|| {
        let path = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("e2e-summary.txt");
        Mutex::new(std::fs::File::create(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
    });
    let mut file = file.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    file.write_all(text.as_bytes()).unwrap();
    file.write_all(b"\n").unwrap();
    println!("{text}");
}

/// Creates the cluster, boots its nodes and follows the stack; panics with diagnostics on a setup error.
fn converge(spec: Spec, observe: impl FnMut(&mut Cluster)) -> Cluster {
    let mut cluster = Cluster::create(spec).unwrap_or_else(|e| panic!("creating the cluster: {e:#}"));
    cluster.boot().unwrap_or_else(|e| panic!("booting the nodes: {e:#}\n{}", cluster.diagnostics()));
    cluster.wait(STACK_TIMEOUT, observe).unwrap_or_else(|e| panic!("{e:#}"));
    cluster
}

/// The agent's result per step of a status (`[(name, result)]`).
fn step_results(status: &Value) -> Vec<(String, String)> {
    status["steps"]
        .as_array()
        .map(|steps| {
            steps
                .iter()
                .map(|s| (s["name"].as_str().unwrap_or("").to_string(), s["result"].as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// One step's record in a status.
fn step(status: &Value, name: &str) -> Value {
    status["steps"].as_array().and_then(|steps| steps.iter().find(|s| s["name"] == name).cloned()).unwrap_or_default()
}

/// Asserts the completed cluster: every node's agent succeeded, left its done marker, and its summary
/// is in Heat's wait-condition data; then a second run on each node changes nothing.
fn assert_converged(cluster: &Cluster) {
    let outcome = cluster.outcome.as_ref().unwrap();
    assert_eq!(outcome.status, "CREATE_COMPLETE", "{}\n{}", outcome.reason, cluster.diagnostics());
    let data = cluster.wait_condition_data().unwrap();
    for member in &cluster.nodes {
        let name = member.name();
        let status = member.status().unwrap_or_else(|| panic!("{name}: no status.json"));
        assert_eq!(status["state"], "succeeded", "{name}: {status}");
        assert!(member.node().exists(DONE), "{name}: no done marker");
        let steps = step_results(&status);
        let expected = if member.role() == Role::Master { 15 } else { 12 };
        assert_eq!(steps.len(), expected, "{name}: every step of a {} ran: {steps:?}", member.role());
        assert!(steps.iter().all(|(_, r)| r != "failed" && r != "not-implemented"), "{name}: {steps:?}");
        let summary = data.get(name).and_then(Value::as_str).unwrap_or_else(|| panic!("{name}: no data in {data:?}"));
        assert!(summary.contains(&format!("{expected} steps in")), "{name}: Heat holds {summary:?}");
        assert_eq!(status["signal"]["body"]["status"], "SUCCESS", "{name}: {}", status["signal"]);
    }
    for member in &cluster.nodes {
        let name = member.name();
        let out = member
            .node()
            .run_within(&[AGENT, "run", "--config", "/etc/hearth/node.json"], Duration::from_secs(300))
            .unwrap();
        assert!(out.status.success(), "{name}: second run: {}", String::from_utf8_lossy(&out.stderr));
        let status = member.status().unwrap();
        let changed: Vec<_> =
            step_results(&status).into_iter().filter(|(_, r)| r != "unchanged" && r != "skipped").collect();
        assert!(
            changed.is_empty(),
            "{name}: a second run changed {changed:?}\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

/// The units a master and a minion must have written, enabled and started, all running for real: the
/// runtime, etcd, the control plane, the kubelet and kube-proxy.
fn assert_units(cluster: &Cluster) {
    for member in &cluster.nodes {
        let units = member.units();
        let mut wanted = vec!["containerd.service", "kubelet.service", "kube-proxy.service"];
        if member.role() == Role::Master {
            wanted.extend([
                "etcd.service",
                "kube-apiserver.service",
                "kube-controller-manager.service",
                "kube-scheduler.service",
            ]);
        }
        let names: Vec<&str> = units.iter().map(|u| u.unit.as_str()).collect();
        assert_eq!(names.len(), wanted.len(), "{}: {units:?}", member.name());
        for unit in &units {
            assert!(wanted.contains(&unit.unit.as_str()), "{}: {unit:?}", member.name());
            let real = ["containerd.service", "etcd.service", "kubelet.service", "kube-proxy.service"]
                .contains(&unit.unit.as_str())
                || CONTROL_PLANE.iter().any(|c| unit.unit == format!("{}.service", c.binary()));
            let started = unit.is_running() || unit.state.starts_with("activating/");
            assert!(
                if real { unit.is_running() } else { started },
                "{}: {unit:?}\n{}\nthe services step: {}",
                member.name(),
                member.unit_log(&unit.unit, 20),
                step(&member.status().unwrap_or_default(), "services"),
            );
        }
    }
}

#[test]
fn the_example_cluster_boots_converges_and_completes() {
    let _one = exclusive();
    let mut cluster = converge(Spec::new("e2e", Example::Debian, 1, 2), |_| {});
    follow_nodes(&mut cluster, Until::Ready);
    assert_units(&cluster);
    assert_converged(&cluster);
    assert_control_plane(&cluster.nodes[0], cluster.spec.release);
    assert_registered(&cluster);
    assert_services_programmed(&cluster);
    assert_pod_network(&cluster);
    assert_cloud_provider(&cluster);
    assert_kubelet_fetched(&cluster);
}

/// Every agent fetched the release's kubelet from the dl.k8s.io stand-in (its digest, then the program)
/// exactly once, and the unit runs that program.
fn assert_kubelet_fetched(cluster: &Cluster) {
    let path = hearth_tests::downloads::kubelet_path(cluster.spec.release, "amd64");
    let fetched = cluster.downloads.requests();
    let count = |p: &str| fetched.iter().filter(|f| *f == p).count();
    let nodes = cluster.nodes.len();
    assert_eq!((count(&format!("{path}.sha256")), count(&path)), (nodes, nodes), "{fetched:?}");
    for member in &cluster.nodes {
        let node = member.node.as_ref().unwrap();
        let version = node.run_ok(&["/usr/local/bin/kubelet", "--version"]).unwrap();
        assert_eq!(version.trim(), format!("Kubernetes {}", cluster.spec.release), "{}", member.name());
        let exec = node.run_ok(&["systemctl", "show", "--property=ExecStart", "kubelet.service"]).unwrap();
        assert!(exec.contains("path=/usr/local/bin/kubelet"), "{}: {exec}", member.name());
    }
}

/// How far [`follow_nodes`] waits.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Until {
    Registered,
    Ready,
}

/// Waits until every kubelet has registered its Node (and, for [`Until::Ready`], every Node is Ready),
/// reports the summary either way, and fails with the cluster's pods and events.
fn follow_nodes(cluster: &mut Cluster, until: Until) {
    let mut waited = cluster.wait_registered(REGISTER_TIMEOUT);
    if waited.is_ok() && until == Until::Ready {
        waited = cluster.wait_ready(READY_TIMEOUT);
    }
    report(&cluster.summary());
    if let Err(e) = waited {
        let master = &cluster.nodes[0];
        let show = |args: &[&str]| master.kubectl(args).unwrap_or_else(|e| format!("{e:#}"));
        let pods = show(&["get", "pods", "-A", "-o", "wide"]);
        let events = show(&["get", "events", "-A", "--sort-by=.lastTimestamp"]);
        panic!("{e:#}\npods:\n{pods}\nevents:\n{events}");
    }
}

/// Bound on every kubelet registering its Node once the stack is complete.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(120);
/// Bound on every Node being Ready once registered: flannel's pods pulled from the cluster's registry,
/// started, and their CNI configuration written.
const READY_TIMEOUT: Duration = Duration::from_secs(180);

/// The pod network is up: every Node is Ready with a pod CIDR from the controller-manager, and flannel
/// (pulled from the cluster's registry) announced the node's own address for its vxlan.
fn assert_pod_network(cluster: &Cluster) {
    for member in &cluster.nodes {
        let name = member.name();
        let item = member.kube_node.as_ref().unwrap_or_else(|| panic!("{name}: no Node"));
        assert!(hearth_tests::e2e::is_ready(item), "{name}: {}", item["status"]["conditions"]);
        let cidr = item["spec"]["podCIDR"].as_str().unwrap_or_else(|| panic!("{name}: no podCIDR: {}", item["spec"]));
        let pods: ipnet::IpNet = member.config.network.pods_cidr;
        assert!(pods.contains(&cidr.parse::<ipnet::IpNet>().unwrap()), "{name}: {cidr} outside {pods}");
        // flanneld annotates once its main container runs, after the init container wrote the CNI
        // configuration that made the Node Ready.
        let node = member.config.node_name(name);
        let path = "jsonpath={.metadata.annotations.flannel\\.alpha\\.coreos\\.com/public-ip}";
        eventually(&format!("{name}: flannel announces the node's address"), || {
            let announced =
                cluster.nodes[0].kubectl(&["get", "node", &node, "-o", path]).map_err(|e| format!("{e:#}"))?;
            if announced == member.address().to_string() {
                Ok(())
            } else {
                Err(format!("announced {announced:?}"))
            }
        });
    }
}

/// With the cloud provider on (the example's default): the real openstack-cloud-controller-manager, which
/// the apiserver-kubelet-rbac step deployed, authenticated to the real Keystone with the cluster's trust,
/// found every Node's server through Nova's API (the stand-in) and initialised it: its provider id, its
/// address from Neutron's port, flavor and zone labels, and the uninitialized taint gone.
fn assert_cloud_provider(cluster: &Cluster) {
    let master = &cluster.nodes[0];
    let kubectl = |args: &[&str]| master.kubectl(args).unwrap_or_else(|e| format!("{e:#}"));
    let compute = hearth_tests::compute::Compute::shared().unwrap();
    let started = Instant::now();
    for member in &cluster.nodes {
        let name = member.name();
        let node = member.config.node_name(name);
        let wanted_id = format!("openstack:///{}", member.server.id);
        let flavor = compute.server(&member.server.id).unwrap_or_else(|| panic!("{name}: not in Nova")).flavor;
        eventually(&format!("{name}: the cloud-controller-manager initialises the Node"), || {
            let item: Value = serde_json::from_str(&kubectl(&["get", "node", &node, "-o", "json"]))
                .map_err(|e| format!("reading the Node: {e}"))?;
            let taints = item["spec"]["taints"].to_string();
            let addresses = &item["status"]["addresses"];
            let internal = addresses.as_array().into_iter().flatten().any(|a| {
                a["type"] == "InternalIP" && a["address"].as_str() == Some(member.address().to_string().as_str())
            });
            let labels = &item["metadata"]["labels"];
            if item["spec"]["providerID"] == wanted_id.as_str()
                && !taints.contains("node.cloudprovider.kubernetes.io/uninitialized")
                && internal
                && labels["topology.kubernetes.io/region"] == "RegionOne"
                && labels["topology.kubernetes.io/zone"] == "nova"
                && labels["node.kubernetes.io/instance-type"] == flavor.as_str()
            {
                return Ok(());
            }
            let logs = kubectl(&["-n", "kube-system", "logs", "ds/openstack-cloud-controller-manager", "--tail=15"]);
            Err(format!(
                "providerID {} (want {wanted_id}), taints {taints}, addresses {addresses}, labels {labels}\n\
                 manager's pods: {}\nits log:\n{logs}",
                item["spec"]["providerID"],
                kubectl(&["-n", "kube-system", "get", "pods", "-l", "k8s-app=openstack-cloud-controller-manager"]),
            ))
        });
    }
    let calls = compute.requests_of(&cluster.project_id);
    assert!(!calls.is_empty(), "the manager never asked Nova");
    for call in &calls {
        // Scoped by the trust (Magnum's trusts impersonate: the token's user is the cluster's owner).
        let caller = call.caller.as_ref().unwrap();
        assert_eq!(caller.trust_id.as_deref(), Some(cluster.trust_id.as_str()), "{call:?}");
    }
    let mut asked: Vec<String> = calls
        .iter()
        .map(|c| {
            let path = c.url.split('?').next().unwrap_or_default();
            let path = cluster.nodes.iter().fold(path.to_string(), |p, n| p.replace(&n.server.id, "{id}"));
            format!("{} {path}", c.method)
        })
        .collect();
    asked.sort();
    asked.dedup();
    report(&format!(
        "cloud provider: openstack-cloud-controller-manager {} initialised {} Nodes (waited {:.1} s once they were all \
         Ready and the pod network up); \
         {} Nova/Neutron requests, all scoped by the cluster's trust: {}\n",
        kubernetes::CLOUD_PROVIDER_VERSION,
        cluster.nodes.len(),
        started.elapsed().as_secs_f64(),
        calls.len(),
        asked.join(", "),
    ));
}

/// Every node's kube-proxy programmed the `kubernetes` Service (the service network's first address)
/// into the node's iptables, through its own identity and kubeconfig.
fn assert_services_programmed(cluster: &Cluster) {
    for member in &cluster.nodes {
        let name = member.name();
        let Some(vip) = member.config.network.services_cidr.hosts().next() else { panic!("{name}: no service VIP") };
        let wanted = format!("-d {vip}/32");
        eventually(&format!("{name}: kube-proxy programs the kubernetes Service {vip}"), || {
            let rules = member.node().run_ok(&["iptables-save", "-t", "nat"]).map_err(|e| format!("{e:#}"))?;
            if rules.lines().any(|l| l.contains(&wanted) && l.contains("KUBE-SVC")) {
                Ok(())
            } else {
                Err(format!("{} nat rules, none for {vip}", rules.lines().count()))
            }
        });
    }
}

/// Every node's kubelet registered its Node, of the cluster's release, at the node's own address, as the
/// node identity the agent gave it; masters carry the control-plane taint.
fn assert_registered(cluster: &Cluster) {
    for member in &cluster.nodes {
        let name = member.name();
        let item = member.kube_node.as_ref().unwrap_or_else(|| panic!("{name}: no Node"));
        assert_eq!(item["status"]["nodeInfo"]["kubeletVersion"], cluster.spec.release, "{name}: {item}");
        // The node's own address: reported by the kubelet, or (with the external cloud provider, which
        // sets the addresses) announced for the cloud-controller-manager to choose.
        let address = Value::from(member.address().to_string());
        if hearth_fragments::kube::external_cloud_provider(&member.config) {
            let announced = &item["metadata"]["annotations"]["alpha.kubernetes.io/provided-node-ip"];
            assert_eq!(announced, &address, "{name}: {}", item["metadata"]);
        } else {
            let addresses = item["status"]["addresses"].as_array().cloned().unwrap_or_default();
            let internal = addresses.iter().find(|a| a["type"] == "InternalIP").map(|a| a["address"].clone());
            assert_eq!(internal, Some(address), "{name}: {addresses:?}");
        }
        let taints: Vec<String> = item["spec"]["taints"]
            .as_array()
            .map(|ts| ts.iter().filter_map(|t| t["key"].as_str().map(str::to_string)).collect())
            .unwrap_or_default();
        if member.role() == Role::Master {
            assert!(taints.iter().any(|t| t == "node-role.kubernetes.io/control-plane"), "{name}: {taints:?}");
        }
    }
}

/// Polls `probe` for up to a minute; the last observation is the error.
fn eventually(what: &str, mut probe: impl FnMut() -> Result<(), String>) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match probe() {
            Ok(()) => return,
            Err(last) if Instant::now() > deadline => panic!("{what} within 60 s; last: {last}"),
            Err(_) => std::thread::sleep(Duration::from_millis(500)),
        }
    }
}

/// What the master's real control plane shows after the agent: its release, the objects of the API
/// steps, and controller-manager and scheduler at work on them.
fn assert_control_plane(master: &ClusterNode, release: &str) {
    let name = master.name();
    let kubectl = |args: &[&str]| master.kubectl(args).map_err(|e| format!("{e:#}"));
    let version: Value = serde_json::from_str(&kubectl(&["version", "-o", "json"]).unwrap()).unwrap();
    assert_eq!(version["serverVersion"]["gitVersion"], release, "{name}: {version}");
    // The apiserver-kubelet-rbac step, read back from the real server.
    let binding: Value =
        serde_json::from_str(&kubectl(&["get", "clusterrolebinding", "system:kube-apiserver", "-o", "json"]).unwrap())
            .unwrap();
    assert_eq!(binding["roleRef"]["name"], "system:kube-apiserver-to-kubelet", "{name}: {binding}");
    assert_eq!(binding["subjects"][0]["name"], "kubernetes", "{name}: {binding}");
    // The add-ons step, and the controller-manager acting on them (a Deployment gets its ReplicaSet).
    kubectl(&["-n", "kube-system", "get", "daemonset", "kube-flannel-ds-amd64"]).unwrap();
    eventually(&format!("{name}: the controller-manager makes CoreDNS's ReplicaSet"), || {
        let out = kubectl(&["-n", "kube-system", "get", "replicasets", "-l", "k8s-app=coredns", "-o", "name"])?;
        if out.trim().is_empty() {
            return Err("no ReplicaSet yet".into());
        }
        Ok(())
    });
    // Both hold their leader lease: they run with the kubeconfigs the agent wrote.
    for component in ["kube-controller-manager", "kube-scheduler"] {
        eventually(&format!("{name}: {component} holds its lease"), || {
            kubectl(&["-n", "kube-system", "get", "lease", component, "-o", "jsonpath={.spec.holderIdentity}"])
                .and_then(|holder| if holder.is_empty() { Err("no holder".into()) } else { Ok(()) })
        });
    }
}

/// The newest release the module proxy serves, on this machine's cgroup v1 nodes: the kubelet starts only
/// because Hearth's KubeletConfiguration says `failCgroupV1: false` (1.35 and later refuse otherwise),
/// and every component takes the command line of the newest row of the version table.
#[test]
fn the_newest_release_runs_on_the_configuration_hearth_writes() {
    let _one = exclusive();
    let newest = kubernetes::RELEASES[kubernetes::RELEASES.len() - 1];
    let spec = Spec { release: newest, ..Spec::new("newest", Example::Debian, 1, 1) };
    let mut cluster = converge(spec, |_| {});
    follow_nodes(&mut cluster, Until::Registered);
    assert_units(&cluster);
    assert_control_plane(&cluster.nodes[0], newest);
    assert_registered(&cluster);
    assert_services_programmed(&cluster);
}

/// Pods on the nodes Hearth bootstrapped: the scheduler places one on each minion, they reach each other
/// across nodes over flannel's vxlan, a Service's ClusterIP reaches both through kube-proxy, and
/// `kubectl exec` and `logs` go through the API server to the kubelets (the apiserver-kubelet-rbac step,
/// for real). The cloud provider is off here: with it on, every Node keeps the cloud provider's
/// `uninitialized` taint and no address, because Hearth does not deploy the OpenStack
/// cloud-controller-manager yet (the other scenarios' summaries show it).
#[test]
fn pods_reach_each_other_across_nodes_and_through_a_service() {
    let _one = exclusive();
    let no_cloud_provider = |t: &mut hearth_server::model::ClusterTemplate| {
        t.labels.insert("cloud_provider_enabled".into(), "false".into());
        // Magnum's rule: Cinder volumes need the cloud provider.
        t.volume_driver = None;
    };
    let spec = Spec { edit_template: no_cloud_provider, ..Spec::new("pods", Example::Debian, 1, 2) };
    let mut cluster = converge(spec, |_| {});
    follow_nodes(&mut cluster, Until::Ready);
    assert_registered(&cluster);
    let master = &cluster.nodes[0];
    let kubectl = |args: &[&str]| master.kubectl(args).map_err(|e| format!("{e:#}"));
    // With the cloud provider off, no component is told to expect one and none is deployed.
    use hearth_fragments::kube::components::sysconfig_location;
    use hearth_fragments::kube::version::Component;
    for member in &cluster.nodes {
        let components = match member.role() {
            Role::Master => &[Component::ApiServer, Component::ControllerManager, Component::Kubelet][..],
            Role::Minion => &[Component::Kubelet],
        };
        for component in components {
            let (file, _) = sysconfig_location(*component);
            let args = member.node().read(file).unwrap();
            assert!(args.contains("--kubeconfig") || args.contains("--etcd-servers"), "{file}: {args}");
            assert!(!args.contains("--cloud-provider"), "{}: {file}: {args}", member.name());
        }
    }
    let manager = kubectl(&["-n", "kube-system", "get", "daemonsets", "-o", "name"]).unwrap();
    assert!(!manager.contains("cloud-controller-manager"), "{manager}");
    let image = cluster.smoke_image();
    let minions: Vec<&ClusterNode> = cluster.nodes.iter().filter(|n| n.role() == Role::Minion).collect();
    let started = Instant::now();
    for (i, minion) in minions.iter().enumerate() {
        let selector =
            json!({"spec": {"nodeSelector": {"kubernetes.io/hostname": minion.config.node_name(minion.name())}}});
        kubectl(&[
            "run",
            &format!("smoke-{i}"),
            "--image",
            &image,
            "--labels=app=smoke",
            "--restart=Never",
            &format!("--overrides={selector}"),
            "--command",
            "--",
            "sh",
            "-c",
            "mkdir -p /www && hostname > /www/index.html && echo smoke started && exec httpd -f -p 8080 -h /www",
        ])
        .unwrap();
    }
    let pod = |name: &str, path: &str| kubectl(&["get", "pod", name, "-o", &format!("jsonpath={path}")]);
    for i in 0..minions.len() {
        eventually(&format!("smoke-{i} runs"), || {
            let phase = pod(&format!("smoke-{i}"), "{.status.phase}")?;
            if phase == "Running" {
                Ok(())
            } else {
                let events =
                    kubectl(&["get", "events", "--field-selector", &format!("involvedObject.name=smoke-{i}")])?;
                Err(format!(
                    "{phase}: {}\nevents:\n{events}",
                    pod(&format!("smoke-{i}"), "{.status.containerStatuses}")?
                ))
            }
        });
    }
    let running_after = started.elapsed();
    let ips: Vec<String> = (0..minions.len()).map(|i| pod(&format!("smoke-{i}"), "{.status.podIP}").unwrap()).collect();
    for (i, minion) in minions.iter().enumerate() {
        let host = pod(&format!("smoke-{i}"), "{.spec.nodeName}").unwrap();
        assert_eq!(host, minion.config.node_name(minion.name()), "smoke-{i} placed on {host}");
    }
    // Across nodes, pod to pod, through `kubectl exec`: an HTTP GET with busybox's nc (its static wget
    // crashes without glibc's NSS modules), the body's last line is the answering pod's name.
    let fetch = |from: usize, ip: &str| {
        let get = format!("printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 {ip} 8080");
        let answer = kubectl(&["exec", &format!("smoke-{from}"), "--", "sh", "-c", &get])?;
        Ok::<String, String>(answer.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("").trim().to_string())
    };
    assert_eq!(fetch(0, &ips[1]).unwrap(), "smoke-1");
    assert_eq!(fetch(1, &ips[0]).unwrap(), "smoke-0");
    assert!(kubectl(&["logs", "smoke-1"]).unwrap().contains("smoke started"));
    // A Service's ClusterIP, through kube-proxy, reaches both.
    kubectl(&["create", "service", "clusterip", "smoke", "--tcp=8080:8080"]).unwrap();
    let vip = kubectl(&["get", "service", "smoke", "-o", "jsonpath={.spec.clusterIP}"]).unwrap();
    let mut answered = std::collections::BTreeSet::new();
    eventually(&format!("both pods answer at the Service's {vip}"), || {
        let fetched = fetch(0, &vip).map_err(|e| {
            let journal = ["journalctl", "-u", "kube-proxy", "-n", "12", "--no-pager", "-o", "cat"];
            let proxy = minions[0].node().run_ok(&journal).unwrap_or_else(|e| format!("{e:#}"));
            let rules = minions[0].node().run_ok(&["iptables-save", "-t", "nat"]).unwrap_or_else(|e| format!("{e:#}"));
            let service: Vec<&str> = rules.lines().filter(|l| l.contains(&vip) || l.contains("KUBE-SEP")).collect();
            format!("{e}\n{}'s kube-proxy:\n{proxy}\nits rules for {vip}:\n{}", minions[0].name(), service.join("\n"))
        })?;
        answered.insert(fetched);
        if answered.len() == 2 {
            Ok(())
        } else {
            Err(format!("answered so far: {answered:?}"))
        }
    });
    // DNS: the pod resolves the API's Service name through CoreDNS (the add-ons step's) at kube-dns.
    let domain = master.config.kubernetes.dns_cluster_domain.trim_matches('.').to_string();
    let name = format!("kubernetes.default.svc.{domain}");
    let api_vip = master.config.network.services_cidr.hosts().next().unwrap().to_string();
    let mut resolved = String::new();
    eventually(&format!("smoke-0 resolves {name} through CoreDNS"), || {
        resolved = kubectl(&["exec", "smoke-0", "--", "nslookup", &name]).unwrap_or_else(|e| e);
        if resolved.lines().any(|l| l.contains("Address") && l.contains(&api_vip)) {
            return Ok(());
        }
        let dns = ["-n", "kube-system", "get", "pods,endpoints", "-l", "k8s-app=coredns", "-o", "wide"];
        Err(format!("{resolved}\nCoreDNS: {}", kubectl(&dns).unwrap_or_else(|e| e)))
    });
    report(&format!(
        "pods: smoke-0 ({}) and smoke-1 ({}) Running {:.1} s after creation on {} and {}; pod to pod across nodes \
         both ways, `kubectl exec` and `logs`, Service {vip} answered by {answered:?}, {name} resolved to \
         {api_vip} through CoreDNS\n",
        ips[0],
        ips[1],
        running_after.as_secs_f64(),
        minions[0].name(),
        minions[1].name()
    ));
}

#[test]
fn three_masters_behind_load_balancers_converge_with_one_etcd_cluster() {
    let _one = exclusive();
    let mut cluster = converge(Spec::new("ha", Example::Ha, 3, 1), |_| {});
    follow_nodes(&mut cluster, Until::Registered);
    assert_registered(&cluster);
    assert_converged(&cluster);
    assert_units(&cluster);
    // One etcd cluster of the three masters, over the nodes' own network.
    let master = &cluster.nodes[0];
    let ip = master.address();
    let members = master
        .node()
        .run_ok(&[
            "curl",
            "-sS",
            "--cacert",
            "/etc/etcd/certs/ca.crt",
            "--cert",
            "/etc/etcd/certs/server.crt",
            "--key",
            "/etc/etcd/certs/server.key",
            "-X",
            "POST",
            &format!("https://{ip}:2379/v3/cluster/member/list"),
            "-d",
            "{}",
        ])
        .unwrap();
    let members: Value = serde_json::from_str(&members).unwrap();
    let names: Vec<&str> = members["members"].as_array().unwrap().iter().filter_map(|m| m["name"].as_str()).collect();
    let masters: Vec<String> =
        cluster.nodes.iter().filter(|n| n.role() == Role::Master).map(|n| n.address().to_string()).collect();
    assert_eq!(names.len(), 3, "{members}");
    for address in &masters {
        assert!(names.contains(&address.as_str()), "{address} not in {names:?}");
    }
    // Three real API servers on that etcd: each answers, and each advertises its master's address in the
    // `kubernetes` Service's endpoints.
    for member in cluster.nodes.iter().filter(|n| n.role() == Role::Master) {
        assert_control_plane(member, cluster.spec.release);
    }
    eventually("the kubernetes Service lists the three masters", || {
        let out = cluster.nodes[0]
            .kubectl(&["get", "endpoints", "kubernetes", "-o", "jsonpath={.subsets[*].addresses[*].ip}"])
            .map_err(|e| format!("{e:#}"))?;
        let mut advertised: Vec<&str> = out.split_whitespace().collect();
        advertised.sort_unstable();
        let mut expected: Vec<&str> = masters.iter().map(String::as_str).collect();
        expected.sort_unstable();
        if advertised == expected {
            Ok(())
        } else {
            Err(format!("{advertised:?}, not {expected:?}"))
        }
    });
    // One whole master gone (powered off: its API server, etcd member, kubelet, everything): the minion's
    // kubelet keeps renewing its lease through the load balancer, and the cluster still takes writes on
    // the two masters left (etcd keeps its quorum of 2 of 3).
    let minion = cluster.nodes.iter().find(|n| n.role() == Role::Minion).unwrap();
    let minion_node = minion.config.node_name(minion.name());
    let lease_of = |kubectl_on: &ClusterNode| {
        kubectl_on
            .kubectl(&["-n", "kube-node-lease", "get", "lease", &minion_node, "-o", "jsonpath={.spec.renewTime}"])
            .map_err(|e| format!("{e:#}"))
    };
    let before = lease_of(&cluster.nodes[1]).unwrap();
    let gone = cluster.nodes[0].name().to_string();
    let took = cluster.nodes[0].node_mut().poweroff(Duration::from_secs(120)).unwrap();
    let mut renewals = Vec::new();
    eventually(&format!("the minion renews its lease twice with {gone} powered off"), || {
        let now = lease_of(&cluster.nodes[1])?;
        if now != before && !renewals.contains(&now) {
            renewals.push(now);
        }
        if renewals.len() >= 2 {
            Ok(())
        } else {
            Err(format!("renewed at {renewals:?} since {before}"))
        }
    });
    for (i, survivor) in cluster.nodes.iter().enumerate().filter(|(_, n)| n.role() == Role::Master).skip(1) {
        let name = format!("written-after-poweroff-{i}");
        survivor.kubectl(&["-n", "default", "create", "configmap", &name, "--from-literal=by=ha-test"]).unwrap();
        let read = cluster.nodes[1 + (i % 2)]
            .kubectl(&["-n", "default", "get", "configmap", &name, "-o", "jsonpath={.data.by}"])
            .unwrap();
        assert_eq!(read, "ha-test", "{name} written on {}", survivor.name());
    }
    report(&format!(
        "HA: {gone} powered off in {:.1} s; the minion renewed its lease through the load balancer at \
         {renewals:?}; both remaining masters took writes\n",
        took.as_secs_f64()
    ));
}

#[test]
fn a_refused_certificate_fails_the_stack_at_once_with_the_servers_reason() {
    let _one = exclusive();
    let mut cluster = Cluster::create(Spec::new("refused", Example::Debian, 1, 2)).unwrap();
    let victim = cluster.member("minion-1").name().to_string();
    cluster.deny(&victim, "quarantined by the e2e test").unwrap();
    cluster.boot().unwrap();
    let mut refused_at: Option<Instant> = None;
    let outcome = cluster
        .wait(STACK_TIMEOUT, |c| {
            if refused_at.is_none() && c.member("minion-1").status().is_some_and(|s| s["state"] == "failed") {
                refused_at = Some(Instant::now());
            }
        })
        .unwrap();
    report(&cluster.summary());
    assert_eq!(outcome.status, "CREATE_FAILED", "{}", cluster.diagnostics());
    assert!(outcome.reason.contains("part-006 certs"), "{}", outcome.reason);
    assert!(outcome.reason.contains("quarantined by the e2e test"), "{}", outcome.reason);
    let refused_at = refused_at.expect("the test saw the minion's failed status");
    let to_failed = outcome.after.saturating_sub(refused_at.duration_since(cluster.created_at));
    report(&format!(
        "fail fast: {victim} refused by hearth-server → CREATE_FAILED in {:.2} s (target < 10 s; Magnum: the \
         60-minute wait-condition timeout)\n",
        to_failed.as_secs_f64()
    ));
    assert!(to_failed < Duration::from_secs(10), "{to_failed:?}");
    let status = cluster.member("minion-1").status().unwrap();
    assert!(status["failure"].as_str().unwrap().starts_with("part-006 certs"), "{status}");
    assert_eq!(status["signal"]["body"]["status"], "FAILURE");
    assert!(!cluster.member("minion-1").node().exists(DONE));
}

#[test]
fn a_wrong_agent_checksum_is_refused_by_the_bootstrap_and_signalled() {
    let _one = exclusive();
    let mut spec = Spec::new("badsum", Example::Debian, 1, 1);
    spec.agent_sha256 = Some("0".repeat(64));
    let cluster = converge(spec, |_| {});
    report(&cluster.summary());
    let outcome = cluster.outcome.as_ref().unwrap();
    assert_eq!(outcome.status, "CREATE_FAILED", "{}", cluster.diagnostics());
    assert!(outcome.reason.contains("part-000 bootstrap"), "{}", outcome.reason);
    assert!(
        outcome.reason.to_lowercase().contains("sha256") || outcome.reason.contains("SHA-256"),
        "{}",
        outcome.reason
    );
    for member in &cluster.nodes {
        assert!(!member.node().exists(AGENT), "{}: a binary that failed its check stays out", member.name());
        assert!(member.status().is_none(), "{}: no agent ran", member.name());
    }
}

#[test]
fn an_agent_killed_mid_step_resumes_after_a_reboot_and_signals_once() {
    let _one = exclusive();
    let mut cluster = Cluster::create(Spec::new("crash", Example::Debian, 1, 1)).unwrap();
    let victim = cluster.member("minion-0").address();
    let (keystone_at, serve_at) = (cluster.keystone_at, cluster.serve_at);
    // The minion's requests wait at the network, first to Keystone (the certs step's first request; the
    // bootstrap's download of the agent from hearth-server passes), then to hearth-server: the agent is
    // killed while its certs step has a token and waits for the cluster CA or its certificate.
    cluster.network.hold(keystone_at, victim);
    cluster.boot().unwrap();
    let mut killed_in: Option<String> = None;
    let mut past_keystone = false;
    let outcome = cluster
        .wait(STACK_TIMEOUT, |c| {
            if killed_in.is_some() {
                return;
            }
            let in_step = c.member("minion-0").events().last().filter(|e| e["event"] == "step-start").cloned();
            let Some(in_step) = in_step else { return };
            if !past_keystone {
                if c.network.held_connections(keystone_at, victim) > 0 {
                    c.network.hold(serve_at, victim);
                    c.network.release(keystone_at, victim);
                    past_keystone = true;
                }
                return;
            }
            if c.network.held_connections(serve_at, victim) == 0 {
                return;
            }
            killed_in = in_step["step"].as_str().map(str::to_string);
            // SIGKILL to the process itself (`systemctl kill` goes through cgroup.kill, which this kernel
            // refuses inside the container).
            c.member("minion-0").node().run_ok(&["pkill", "--signal", "KILL", "--exact", "hearth-agent"]).unwrap();
            c.member_mut("minion-0").node_mut().reboot(Duration::from_secs(120)).unwrap();
            c.network.release(serve_at, victim);
        })
        .unwrap();
    report(&cluster.summary());
    assert_eq!(killed_in.as_deref(), Some("certs"), "the agent was killed inside its certs step");
    assert_eq!(outcome.status, "CREATE_COMPLETE", "{}\n{}", outcome.reason, cluster.diagnostics());
    let member = cluster.member("minion-0");
    let events = member.events();
    let count = |kind: &str| events.iter().filter(|e| e["event"] == kind).count();
    assert_eq!(count("run-start"), 2, "the killed run and the resumed one: {events:?}");
    assert_eq!(count("run-end"), 1, "only the resumed run ended");
    assert_eq!(count("signal"), 1, "one signal for the node: {events:?}");
    assert_eq!(member.node().boots(), 2);
    let status = member.status().unwrap();
    assert_eq!(status["state"], "succeeded", "{status}");
    assert!(member.node().exists(DONE));
}
