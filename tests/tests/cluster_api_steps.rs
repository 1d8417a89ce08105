//! The master steps that act through the Kubernetes API (apiserver-kubelet-rbac, health, addons) against
//! a loopback HTTPS stand-in for the API server ([`KubeApiStandIn`]) that serves with the master's own
//! `server.crt`, lets in only the agent's `agent.crt` as client, and checks every request; health also probes a
//! real etcd. Certificates come from the agent's certs step ([`MasterNode`]).
//!
//! Checked: the exact requests (verbs, paths, queries, content types, bodies) for server-side apply
//! (Kubernetes >= 1.16) and for create / merge patch (1.11); a second run that only reads; a server that
//! is not ready at first, one that never gets ready (bounded, with the last probe's answer), an etcd that
//! is down; a foreign client certificate and an RBAC refusal, each with the server's words; add-ons only on
//! master 0; calico's etcd Secret; dry and rooted runs that send nothing to the node's services.

use hearth_fragments::config::{NodeConfig, Secret};
use hearth_fragments::host::{ActionKind, Host, Mode, Outcome};
use hearth_fragments::manifests;
use hearth_fragments::step::Done;
use hearth_tests::etcd::RealEtcd;
use hearth_tests::kube_api::{without_server_fields, ApiRequest, KubeApiStandIn};
use hearth_tests::master_node::{MasterNode, StepRun};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const RBAC: &str = "/apis/rbac.authorization.k8s.io/v1";
const APPLY: &str = "?fieldManager=hearth&force=true application/apply-patch+yaml";

/// A master, its API stand-in and its etcd.
struct Cluster {
    node: MasterNode,
    api: KubeApiStandIn,
    etcd: Option<RealEtcd>,
}

fn cluster(edit: impl FnOnce(&mut Value)) -> Cluster {
    let mut node = MasterNode::new(|c| {
        c["agent"]["health_deadline_secs"] = json!(20);
        edit(c);
    })
    .unwrap();
    let api = KubeApiStandIn::start(
        &node.read("/etc/kubernetes/certs/ca.crt"),
        &node.read("/etc/kubernetes/certs/server.crt"),
        &node.read("/etc/kubernetes/certs/server.key"),
        // The client the steps present: the agent's own identity, not the API server's.
        &node.read("/etc/kubernetes/certs/agent.crt"),
    )
    .unwrap();
    node.config.api.port = api.port;
    let etcd = Some(node.start_etcd("").unwrap());
    Cluster { node, api, etcd }
}

fn summaries(requests: &[ApiRequest]) -> Vec<String> {
    requests.iter().map(ApiRequest::summary).collect()
}

fn remote(run: &StepRun) -> Vec<(String, Outcome)> {
    run.actions.iter().filter(|a| a.kind == ActionKind::Remote).map(|a| (a.target.clone(), a.outcome)).collect()
}

fn applied(run: &StepRun) {
    assert_eq!(run.result.as_ref().map_err(|e| format!("{e:#}")), Ok(&Done::Applied), "{:#?}", run.actions);
}

/// The API path of every object of the OpenStack cloud-controller-manager, in the order applied.
fn cloud_controller_manager_paths() -> Vec<String> {
    [
        "/api/v1/namespaces/kube-system/serviceaccounts/cloud-controller-manager".to_string(),
        format!("{RBAC}/clusterroles/system:cloud-controller-manager"),
        format!("{RBAC}/clusterrolebindings/system:cloud-controller-manager"),
        "/apis/apps/v1/namespaces/kube-system/daemonsets/openstack-cloud-controller-manager".to_string(),
    ]
    .into()
}

/// The API path of every object the add-ons of a flannel cluster consist of, in the order applied.
fn flannel_addon_paths() -> Vec<String> {
    let ns = "/api/v1/namespaces/kube-system";
    let apps = "/apis/apps/v1/namespaces/kube-system";
    [
        format!("{ns}/serviceaccounts/coredns"),
        format!("{RBAC}/clusterroles/system:coredns"),
        format!("{RBAC}/clusterrolebindings/system:coredns"),
        format!("{ns}/configmaps/coredns"),
        format!("{apps}/deployments/coredns"),
        format!("{ns}/services/kube-dns"),
        format!("{ns}/serviceaccounts/kube-dns-autoscaler"),
        format!("{RBAC}/clusterroles/system:kube-dns-autoscaler"),
        format!("{RBAC}/clusterrolebindings/system:kube-dns-autoscaler"),
        format!("{apps}/deployments/kube-dns-autoscaler"),
        format!("{RBAC}/clusterroles/flannel"),
        format!("{RBAC}/clusterrolebindings/flannel"),
        format!("{ns}/serviceaccounts/flannel"),
        format!("{ns}/configmaps/kube-flannel-cfg"),
        format!("{apps}/daemonsets/kube-flannel-ds-amd64"),
    ]
    .into()
}

#[test]
fn rbac_and_addons_are_server_side_applied_with_exact_requests_and_a_second_run_only_reads() {
    let c = cluster(|_| {});
    let rbac = c.node.run("apiserver-kubelet-rbac");
    applied(&rbac);
    let role = format!("{RBAC}/clusterroles/system:kube-apiserver-to-kubelet");
    let binding = format!("{RBAC}/clusterrolebindings/system:kube-apiserver");
    let requests = c.api.requests();
    let mut expected = vec!["GET /healthz".to_string(), "GET /readyz".to_string()];
    for path in [role.clone(), binding.clone()].into_iter().chain(cloud_controller_manager_paths()) {
        expected.push(format!("GET {path}"));
        expected.push(format!("PATCH {path}{APPLY}"));
    }
    assert_eq!(summaries(&requests), expected, "the example has trustee credentials: the manager is deployed");
    assert!(requests.iter().all(|r| r.authenticated), "every request showed the agent's agent.crt");
    let mut manifests = manifests::apiserver_kubelet_rbac().unwrap();
    assert_eq!(
        manifests[1]["subjects"],
        json!([{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kubernetes"}])
    );
    assert_eq!(without_server_fields(&c.api.object(&binding).unwrap()), manifests[1]);
    manifests.extend(manifests::cloud_controller_manager(&c.node.config).unwrap());
    let patches: Vec<&ApiRequest> = requests.iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), manifests.len());
    for (patch, manifest) in patches.iter().zip(&manifests) {
        assert_eq!(&patch.json(), manifest, "the body is the manifest, as JSON (which YAML reads)");
        assert_eq!(patch.header("accept"), Some("application/json"));
    }
    let manager = c.api.object(&cloud_controller_manager_paths()[3]).unwrap();
    let container = &manager["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "docker.io/k8scloudprovider/openstack-cloud-controller-manager:v0.2.0");
    let command: Vec<&str> = container["command"].as_array().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    assert!(command.contains(&"--cloud-config=/etc/kubernetes/cloud-config"), "{command:?}");
    assert!(command.contains(&format!("--cluster-name={}", c.node.config.cluster.uuid).as_str()), "{command:?}");
    let changed = remote(&rbac);
    assert_eq!(
        changed[..2],
        [
            ("ClusterRole system:kube-apiserver-to-kubelet".to_string(), Outcome::Changed),
            ("ClusterRoleBinding system:kube-apiserver".to_string(), Outcome::Changed),
        ]
    );
    assert!(changed.iter().all(|(_, o)| *o == Outcome::Changed) && changed.len() == 6, "{changed:?}");

    c.api.clear_requests();
    let addons = c.node.run("addons");
    applied(&addons);
    let paths = flannel_addon_paths();
    let mut expected = vec!["GET /healthz".to_string(), "GET /readyz".to_string()];
    for path in &paths {
        expected.push(format!("GET {path}"));
        expected.push(format!("PATCH {path}{APPLY}"));
    }
    let requests = c.api.requests();
    assert_eq!(summaries(&requests), expected);
    let mut wanted = manifests::coredns(&c.node.config).unwrap();
    wanted.extend(manifests::flannel(&c.node.config).unwrap());
    let bodies: Vec<Value> = requests.iter().filter(|r| r.method == "PATCH").map(ApiRequest::json).collect();
    assert_eq!(bodies, wanted);
    let dns = c.api.object("/api/v1/namespaces/kube-system/services/kube-dns").unwrap();
    assert_eq!(
        (dns["spec"]["clusterIP"].as_str(), dns["spec"]["type"].as_str()),
        (Some("10.254.0.10"), Some("ClusterIP"))
    );
    let flannel = c.api.object("/api/v1/namespaces/kube-system/configmaps/kube-flannel-cfg").unwrap();
    assert_eq!(
        flannel["data"]["net-conf.json"],
        r#"{"Network": "10.100.0.0/16", "Subnetlen": 24, "Backend": {"Type": "vxlan"}}"#
    );
    assert!(remote(&addons).iter().all(|(_, o)| *o == Outcome::Changed) && remote(&addons).len() == 15);

    // Second runs: everything is found as applied, although the server added defaults and left out
    // empty fields: reads only, nothing changed on the server.
    let versions = |api: &KubeApiStandIn| -> Vec<Value> {
        api.object_paths().iter().map(|p| api.object(p).unwrap()["metadata"]["resourceVersion"].clone()).collect()
    };
    let before = versions(&c.api);
    c.api.clear_requests();
    for step in ["apiserver-kubelet-rbac", "addons"] {
        let again = c.node.run(step);
        applied(&again);
        assert!(remote(&again).iter().all(|(_, o)| *o == Outcome::Unchanged), "{step}: {:?}", remote(&again));
    }
    assert!(c.api.requests().iter().all(|r| r.method == "GET"), "{:#?}", summaries(&c.api.requests()));
    assert_eq!(c.api.requests().len(), (2 + 6) + (2 + 15), "probes and one GET per object");
    assert_eq!(versions(&c.api), before);
}

#[test]
fn kubernetes_1_11_gets_creates_and_merge_patches_and_has_no_readyz() {
    let mut c = cluster(|config| {
        config["kubernetes"]["tag"] = json!("v1.11.6");
        config["kubernetes"]["version"] = json!("v1.11.6");
    });
    c.api.remove_path("/readyz");
    applied(&c.node.run("addons"));
    let requests = c.api.requests();
    assert_eq!(
        summaries(&requests[..4]),
        [
            "GET /healthz",
            "GET /readyz",
            "GET /api/v1/namespaces/kube-system/serviceaccounts/coredns",
            "POST /api/v1/namespaces/kube-system/serviceaccounts?fieldManager=hearth application/json",
        ]
    );
    let creates: Vec<&ApiRequest> = requests.iter().filter(|r| r.method == "POST").collect();
    assert_eq!(creates.len(), 15);
    assert!(!requests.iter().any(|r| r.method == "PATCH"));
    let daemonset = c.api.object("/apis/apps/v1/namespaces/kube-system/daemonsets/kube-flannel-ds-amd64").unwrap();
    assert_eq!(daemonset["spec"]["template"]["spec"]["nodeSelector"], json!({"beta.kubernetes.io/arch": "amd64"}));

    // A new CoreDNS tag: only its Deployment is patched, with a JSON merge patch of the manifest.
    let path = "/apis/apps/v1/namespaces/kube-system/deployments/coredns";
    let version_before = c.api.object(path).unwrap()["metadata"]["resourceVersion"].clone();
    c.node.config.addons.coredns_tag = "1.6.6".into();
    c.api.clear_requests();
    let update = c.node.run("addons");
    applied(&update);
    let writes: Vec<String> = c.api.requests().iter().filter(|r| r.method != "GET").map(ApiRequest::summary).collect();
    assert_eq!(writes, [format!("PATCH {path}?fieldManager=hearth application/merge-patch+json")]);
    let stored = c.api.object(path).unwrap();
    assert_eq!(stored["spec"]["template"]["spec"]["containers"][0]["image"], "docker.io/coredns/coredns:1.6.6");
    assert_ne!(stored["metadata"]["resourceVersion"], version_before);
    let changed: Vec<String> =
        remote(&update).into_iter().filter(|(_, o)| *o == Outcome::Changed).map(|(t, _)| t).collect();
    assert_eq!(changed, ["Deployment kube-system/coredns"]);
}

#[test]
fn health_waits_through_a_server_that_is_starting() {
    let c = cluster(|_| {});
    c.api.script("/healthz", &[
        (503, "[-]poststarthook/start-apiextensions-controllers failed: not finished\nhealthz check failed"),
        (403, r#"{"kind":"Status","status":"Failure","message":"forbidden: User \"kubernetes\" cannot get path \"/healthz\"","reason":"Forbidden","code":403}"#),
    ]);
    c.api
        .script("/readyz", &[(500, "[-]poststarthook/rbac/bootstrap-roles failed: not finished\nreadyz check failed")]);
    let run = c.node.run("health");
    applied(&run);
    assert_eq!(
        summaries(&c.api.requests()),
        ["GET /healthz", "GET /healthz", "GET /healthz", "GET /readyz", "GET /readyz"]
    );
    let probes: Vec<String> = run
        .actions
        .iter()
        .filter(|a| a.kind == ActionKind::Http)
        .map(|a| format!("{} {}", a.target, a.detail))
        .collect();
    let etcd = &c.etcd.as_ref().unwrap().client_url;
    let api = &c.api.url;
    assert_eq!(
        probes,
        [
            format!("GET {etcd}/health waiting for etcd /health: HTTP 200"),
            format!("GET {api}/healthz waiting for /healthz: HTTP 403 after 2 attempts"),
            format!("GET {api}/healthz waiting for /healthz: HTTP 200"),
            format!("GET {api}/readyz waiting for /readyz: HTTP 200 after 2 attempts"),
        ]
    );
}

#[test]
fn health_fails_within_its_budget_with_the_last_probes_answer() {
    let c = cluster(|config| config["agent"]["health_deadline_secs"] = json!(3));
    c.api.stick("/readyz", 500, "[+]ping ok\n[-]etcd failed: reason withheld\nreadyz check failed\n");
    let started = Instant::now();
    let err = c.node.run("health").error();
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(2) && took < Duration::from_secs(6), "took {took:?}");
    let api = &c.api.url;
    assert!(err.starts_with(&format!("the Kubernetes API at {api} was not healthy within 3s")), "{err}");
    assert!(
        err.ends_with(
            "last probe GET /readyz: HTTP 500: [+]ping ok [-]etcd failed: reason withheld readyz check failed"
        ),
        "{err}"
    );
}

#[test]
fn health_fails_when_etcd_is_down_and_says_which_etcd() {
    let mut c = cluster(|config| config["agent"]["health_deadline_secs"] = json!(2));
    let url = c.etcd.as_ref().unwrap().client_url.clone();
    c.etcd = None;
    let err = c.node.run("health").error();
    assert!(err.starts_with(&format!("etcd at {url} was not healthy within 2s")), "{err}");
    assert!(err.contains("last probe GET /health: ") && err.contains("cannot connect: Connection refused"), "{err}");
    assert!(c.api.requests().is_empty(), "the API server is probed after etcd");
}

#[test]
fn a_client_certificate_the_server_does_not_accept_fails_with_its_answer() {
    let c = cluster(|_| {});
    for ext in ["crt", "key"] {
        let kubelet = c.node.read(&format!("/etc/kubernetes/certs/kubelet.{ext}"));
        // The agent's own identity (agent.crt/key) replaced by one the API server does not take for it.
        std::fs::write(c.node.path(&format!("/etc/kubernetes/certs/agent.{ext}")), kubelet).unwrap();
    }
    let err = c.node.run("apiserver-kubelet-rbac").error();
    assert!(err.contains("answered GET /healthz with HTTP 401") && err.contains(r#""reason":"Unauthorized""#), "{err}");
    let requests = c.api.requests();
    assert_eq!(summaries(&requests), ["GET /healthz"]);
    assert!(!requests[0].authenticated);
}

#[test]
fn an_rbac_refusal_fails_the_step_with_the_servers_message() {
    let c = cluster(|_| {});
    c.api.forbid_writes();
    let started = Instant::now();
    let err = c.node.run("apiserver-kubelet-rbac").error();
    assert!(started.elapsed() < Duration::from_secs(5), "a 403 is an answer, not retried");
    assert!(
        err.starts_with("applying ClusterRole system:kube-apiserver-to-kubelet: PATCH https://127.0.0.1:"),
        "{err}"
    );
    assert!(err.ends_with(
        "answered HTTP 403: Forbidden: clusterroles.rbac.authorization.k8s.io \"system:kube-apiserver-to-kubelet\" is \
         forbidden: User \"kubernetes\" cannot patch resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" \
         at the cluster scope"
    ), "{err}");
}

#[test]
fn without_the_external_cloud_provider_no_cloud_controller_manager_is_deployed() {
    let mut c = cluster(|_| {});
    for off in [
        (|n: &mut NodeConfig| n.kubernetes.cloud_provider_enabled = false) as fn(&mut NodeConfig),
        |n: &mut NodeConfig| n.openstack.trustee_password = Secret::new(""),
    ] {
        let original = c.node.config.clone();
        off(&mut c.node.config);
        c.api.clear_requests();
        applied(&c.node.run("apiserver-kubelet-rbac"));
        let reads: Vec<String> =
            c.api.requests().iter().filter(|r| r.method == "GET").map(ApiRequest::summary).collect();
        assert_eq!(reads.len(), 2 + 2, "probes and the RBAC objects only: {reads:#?}");
        c.node.config = original;
    }
}

/// Master 0 applies the add-ons and the others leave them to it; without `MASTER_INDEX` (Magnum Stein's
/// heat-params have none) every master applies them, converging on the same objects.
#[test]
fn addons_are_applied_by_master_0_or_by_every_master_without_an_index() {
    let mut c = cluster(|_| {});
    c.node.config.node.master_index = Some(1);
    let run = c.node.run("addons");
    assert!(
        matches!(&run.result, Ok(Done::Skipped(reason)) if reason.contains("this is master 1")),
        "{:?}",
        run.result
    );
    assert!(run.actions.is_empty());
    assert!(c.api.requests().is_empty());
    c.node.config.node.master_index = None;
    let run = c.node.run("addons");
    assert!(matches!(&run.result, Ok(Done::Applied)), "{:?}", run.result);
    assert!(c.api.requests().iter().any(|r| r.method == "PATCH" || r.method == "POST"), "nothing applied");
}

#[test]
fn calico_addons_carry_the_masters_etcd_certificates() {
    let c = cluster(|config| config["network"]["driver"] = json!("calico"));
    applied(&c.node.run("addons"));
    let secret = c.api.object("/api/v1/namespaces/kube-system/secrets/calico-etcd-secrets").unwrap();
    // coreutils' base64 reads what the Secret holds.
    let decode = |key: &str| {
        use std::io::Write as _;
        let mut child = std::process::Command::new("base64")
            .arg("--decode")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(secret["data"][key].as_str().unwrap().as_bytes()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(decode("etcd-ca"), c.node.read("/etc/etcd/certs/ca.crt"));
    assert_eq!(decode("etcd-cert"), c.node.read("/etc/etcd/certs/server.crt"));
    assert_eq!(decode("etcd-key"), c.node.read("/etc/etcd/certs/server.key"));
    let config = c.api.object("/api/v1/namespaces/kube-system/configmaps/calico-config").unwrap();
    assert_eq!(config["data"]["etcd_endpoints"], "https://127.0.0.2:2379");
    assert!(c.api.object("/api/v1/namespaces/kube-system/configmaps/kube-flannel-cfg").is_none());
    // The key travelled in a request body only: the journal names requests, never their bodies.
    let run = c.node.run("addons");
    let key = c.node.read("/etc/etcd/certs/server.key");
    let body_line = key.lines().nth(1).unwrap();
    assert!(!format!("{:?}", run.actions).contains(body_line));
}

#[test]
fn dry_and_rooted_runs_send_nothing_to_the_nodes_services() {
    let c = cluster(|_| {});
    let root = c.node.root.path().to_path_buf();
    for (host, expected) in [
        (Host::new(Mode::DryRun { root: root.clone() }), "waiting for /healthz"),
        (
            Host::new(Mode::Rooted(root.clone())),
            "waiting for /healthz (not sent: the node's services do not run under a root)",
        ),
    ] {
        for step in ["network-config", "apiserver-kubelet-rbac", "health", "addons"] {
            let run = c.node.run_on(step, host_clone(&host));
            match step {
                "health" => assert!(
                    matches!(&run.result, Ok(Done::Skipped(why)) if why.starts_with("not probed")),
                    "{:?}",
                    run.result
                ),
                _ => applied(&run),
            }
            assert!(
                run.actions.iter().all(|a| a.kind == ActionKind::Http && a.outcome == Outcome::NotRun),
                "{step}: {:?}",
                run.actions
            );
            if step != "network-config" {
                assert!(run.actions.iter().any(|a| a.detail == expected), "{step}: {:?}", run.actions);
            }
        }
    }
    assert!(c.api.requests().is_empty(), "{:?}", summaries(&c.api.requests()));
}

fn host_clone(host: &Host) -> Host {
    Host::new(host.mode().clone())
}
