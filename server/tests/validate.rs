//! Every validation rule: the bundled example passes, and one change per rule breaks exactly that rule,
//! naming the field and the value.

use hearth_server::model::{self, Cluster, ClusterTemplate};
use hearth_server::settings::Loaded;
use hearth_server::validate::validate;
use std::path::Path;

fn examples() -> (ClusterTemplate, Cluster, Loaded) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    (
        model::load(&dir.join("cluster-template.yaml")).unwrap(),
        model::load(&dir.join("cluster.yaml")).unwrap(),
        Loaded::load(&dir.join("settings.yaml")).unwrap(),
    )
}

/// Applies `change` to the example and returns the fields reported.
fn broken(change: impl FnOnce(&mut ClusterTemplate, &mut Cluster, &mut Loaded)) -> Vec<(String, String)> {
    let (mut t, mut c, mut s) = examples();
    change(&mut t, &mut c, &mut s);
    validate(&t, &c, Some(&s)).errors.into_iter().map(|e| (e.field, e.value)).collect()
}

fn label(t: &mut ClusterTemplate, name: &str, value: &str) {
    t.labels.insert(name.into(), value.into());
}

#[test]
fn the_bundled_examples_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let s = Loaded::load(&dir.join("settings.yaml")).unwrap();
    for (t, c) in [
        ("cluster-template.yaml", "cluster.yaml"),
        ("cluster-template-fedora-coreos.yaml", "cluster-fedora-coreos.yaml"),
        ("cluster-template-ha.yaml", "cluster-ha.yaml"),
    ] {
        let report = validate(&model::load(&dir.join(t)).unwrap(), &model::load(&dir.join(c)).unwrap(), Some(&s));
        assert!(report.is_ok(), "{t}: {:?}", report.errors);
    }
}

#[test]
fn each_rule_reports_its_field_and_value() {
    type Change = Box<dyn FnOnce(&mut ClusterTemplate, &mut Cluster, &mut Loaded)>;
    let long_key = "k".repeat(256);
    let long_name = "x".repeat(243);
    let cases: Vec<(&str, &str, Change)> = vec![
        ("cluster_template.coe", "", Box::new(|t, _, _| t.coe = None)),
        ("cluster_template.coe", "swarm", Box::new(|t, _, _| t.coe = Some("swarm".into()))),
        ("cluster_template.coe", "k8s", Box::new(|t, _, _| t.coe = Some("k8s".into()))),
        ("cluster_template.image_id", "", Box::new(|t, _, _| t.image_id = None)),
        ("cluster_template.cluster_distro", "coreos", Box::new(|t, _, _| t.cluster_distro = Some("coreos".into()))),
        ("cluster_template.server_type", "bm", Box::new(|t, _, _| t.server_type = Some("bm".into()))),
        ("cluster_template.server_type", "invalid", Box::new(|t, _, _| t.server_type = Some("invalid".into()))),
        (
            "cluster_template.network_driver",
            "bad_driver",
            Box::new(|t, _, _| t.network_driver = Some("bad_driver".into())),
        ),
        (
            "cluster_template.network_driver",
            "flannel",
            Box::new(|_, _, s| s.settings.kubernetes_allowed_network_drivers = vec!["calico".into()]),
        ),
        ("cluster_template.volume_driver", "type", Box::new(|t, _, _| t.volume_driver = Some("type".into()))),
        ("cluster_template.docker_volume_size", "-1", Box::new(|t, _, _| t.docker_volume_size = Some(-1))),
        (
            "cluster.docker_volume_size",
            "2",
            Box::new(|t, _, _| {
                t.docker_storage_driver = Some("devicemapper".into());
                t.docker_volume_size = Some(2);
            }),
        ),
        ("cluster_template.dns_nameserver", "1.1..1", Box::new(|t, _, _| t.dns_nameserver = Some("1.1..1".into()))),
        (
            "cluster_template.dns_nameserver",
            "openstack.org",
            Box::new(|t, _, _| t.dns_nameserver = Some("openstack.org".into())),
        ),
        ("cluster_template.apiserver_port", "1023", Box::new(|t, _, _| t.apiserver_port = Some(1023))),
        ("cluster_template.apiserver_port", "65536", Box::new(|t, _, _| t.apiserver_port = Some(65536))),
        ("cluster_template.name", "", Box::new(|t, _, _| t.name = Some(String::new()))),
        ("cluster_template.keypair_id", &long_key, Box::new(|t, _, _| t.keypair_id = Some("k".repeat(256)))),
        ("cluster_template.http_proxy", "proxy:3128", Box::new(|t, _, _| t.http_proxy = Some("proxy:3128".into()))),
        ("cluster_template.no_proxy", "a, b", Box::new(|t, _, _| t.no_proxy = Some("a, b".into()))),
        ("cluster_template.fixed_subnet", "", Box::new(|t, _, _| t.fixed_network = Some("net".into()))),
        ("cluster.name", "-test_cluster", Box::new(|_, c, _| c.name = Some("-test_cluster".into()))),
        ("cluster.name", "123456test_cluster", Box::new(|_, c, _| c.name = Some("123456test_cluster".into()))),
        ("cluster.name", &long_name, Box::new(|_, c, _| c.name = Some("x".repeat(243)))),
        ("cluster.uuid", "", Box::new(|_, c, _| c.uuid = None)),
        ("cluster.uuid", "not-a-uuid", Box::new(|_, c, _| c.uuid = Some("not-a-uuid".into()))),
        ("cluster.cluster_template_id", "other", Box::new(|_, c, _| c.cluster_template_id = Some("other".into()))),
        ("cluster.node_count", "0", Box::new(|_, c, _| c.node_count = Some(0))),
        ("cluster.master_count", "0", Box::new(|_, c, _| c.master_count = Some(0))),
        ("cluster.master_count", "3", Box::new(|_, c, _| c.master_count = Some(3))),
        ("cluster.docker_volume_size", "-1", Box::new(|_, c, _| c.docker_volume_size = Some(-1))),
        ("cluster.create_timeout", "-1", Box::new(|_, c, _| c.create_timeout = Some(-1))),
        ("cluster.discovery_url", "etcd.io/x", Box::new(|_, c, _| c.discovery_url = Some("etcd.io/x".into()))),
        (
            "cluster_template.labels.kube_dashboard_enabled",
            "maybe",
            Box::new(|t, _, _| label(t, "kube_dashboard_enabled", "maybe")),
        ),
        (
            "cluster_template.labels.flannel_network_subnetlen",
            "twenty",
            Box::new(|t, _, _| label(t, "flannel_network_subnetlen", "twenty")),
        ),
        ("cluster_template.labels.etcd_volume_size", "-5", Box::new(|t, _, _| label(t, "etcd_volume_size", "-5"))),
        (
            "cluster_template.labels.flannel_network_cidr",
            "10.100.0.1/16",
            Box::new(|t, _, _| label(t, "flannel_network_cidr", "10.100.0.1/16")),
        ),
        ("cluster_template.labels.flannel_backend", "gre", Box::new(|t, _, _| label(t, "flannel_backend", "gre"))),
        ("cluster_template.labels.cgroup_driver", "none", Box::new(|t, _, _| label(t, "cgroup_driver", "none"))),
        (
            "cluster_template.labels.container_infra_prefix",
            "registry:5000",
            Box::new(|t, _, _| label(t, "container_infra_prefix", "registry:5000")),
        ),
        ("cluster_template.labels.kube_tag", "latest", Box::new(|t, _, _| label(t, "kube_tag", "latest"))),
        ("cluster_template.labels.kube_tag", "1.24", Box::new(|t, _, _| label(t, "kube_tag", "1.24"))),
        ("cluster_template.labels.kube_tag", "v1.24", Box::new(|t, _, _| label(t, "kube_tag", "v1.24"))),
        ("cluster_template.labels.etcd_tag", "v3.4 ", Box::new(|t, _, _| label(t, "etcd_tag", "v3.4 "))),
        ("cluster_template.labels.flannel_tag", "-x", Box::new(|t, _, _| label(t, "flannel_tag", "-x"))),
        ("cluster_template.labels.kube_tga", "v1.24.17", Box::new(|t, _, _| label(t, "kube_tga", "v1.24.17"))),
        (
            "cluster_template.labels.cgroups_driver",
            "systemd",
            Box::new(|t, _, _| label(t, "cgroups_driver", "systemd")),
        ),
        (
            "settings.labels.kube_tga",
            "v1.24.17",
            Box::new(|_, _, s| {
                s.settings.labels.insert("kube_tga".into(), "v1.24.17".into());
            }),
        ),
        ("cluster_template.labels.cert_manager_api", "true", Box::new(|t, _, _| label(t, "cert_manager_api", "true"))),
        (
            "cluster_template.labels.ingress_controller",
            "octavia",
            Box::new(|t, _, s| {
                label(t, "ingress_controller", "octavia");
                s.settings.octavia_enabled = false;
            }),
        ),
        (
            "cluster_template.labels.cloud_provider_enabled",
            "false",
            Box::new(|t, _, _| label(t, "cloud_provider_enabled", "false")),
        ),
        (
            "cluster_template.labels.service_cluster_ip_range",
            "10.96.0.0/12",
            Box::new(|t, _, _| label(t, "service_cluster_ip_range", "10.96.0.0/12")),
        ),
        (
            "cluster_template.labels.fixed_network_cidr",
            "10.254.1.0/24",
            Box::new(|t, _, _| label(t, "fixed_network_cidr", "10.254.1.0/24")),
        ),
        (
            "cluster_template.labels.flannel_network_subnetlen",
            "16",
            Box::new(|t, _, _| label(t, "flannel_network_subnetlen", "16")),
        ),
        ("settings.auth_url", "", Box::new(|_, _, s| s.settings.auth_url.clear())),
        ("settings.magnum_url", "ftp://x/v1", Box::new(|_, _, s| s.settings.magnum_url = "ftp://x/v1".into())),
        ("settings.agent.sha256", "abc", Box::new(|_, _, s| s.settings.agent.sha256 = "abc".into())),
        ("settings.agent.url", "http://x/a\"b", Box::new(|_, _, s| s.settings.agent.url = "http://x/a\"b".into())),
        ("settings.agent.path", "bin/agent", Box::new(|_, _, s| s.settings.agent.path = "bin/agent".into())),
        (
            "settings.agent.path",
            "relative",
            Box::new(|_, _, s| {
                s.settings.agent.url.clear();
                s.settings.agent.path = "relative".into();
            }),
        ),
        ("settings.trustee.password", "", Box::new(|_, _, s| s.settings.trustee.password = Default::default())),
        (
            "settings.nodes_affinity_policy",
            "spread",
            Box::new(|_, _, s| s.settings.nodes_affinity_policy = "spread".into()),
        ),
        (
            "settings.service_account_private_key_file",
            "",
            Box::new(|_, _, s| s.settings.service_account_private_key_file = None),
        ),
    ];
    for (field, value, change) in cases {
        let errors = broken(change);
        assert!(errors.iter().any(|(f, v)| f == field && v == value), "expected {field} = {value:?}, got {errors:?}");
    }
}

#[test]
fn magnums_valid_names_and_sizes_pass() {
    for name in [
        "test_cluster123456",
        "test-cluster",
        "test.cluster",
        "testcluster.",
        "testcluster-",
        "test.-_cluster",
        "Testcluster",
    ] {
        assert!(broken(|_, c, _| c.name = Some(name.into())).is_empty(), "{name}");
    }
    let ok = broken(|t, _, _| {
        t.docker_storage_driver = Some("devicemapper".into());
        t.docker_volume_size = Some(3);
    });
    assert!(ok.is_empty(), "{ok:?}");
    assert!(broken(|_, c, _| c.create_timeout = Some(0)).is_empty());
    assert!(broken(|t, c, _| {
        t.master_lb_enabled = true;
        c.master_count = Some(3);
    })
    .is_empty());
}

#[test]
fn a_secret_label_is_never_echoed() {
    let errors = broken(|t, _, _| {
        label(t, "grafana_admin_passwd", "");
        t.labels.insert("kube_dashboard_enabled".into(), "maybe".into());
        t.labels.insert("grafana_admin_passwd".into(), "hunter2".into());
    });
    assert!(!format!("{errors:?}").contains("hunter2"));
}

/// A refused value is shown by its head and its length, and the two new choice checks name their
/// field: the storage driver Magnum's API refuses, and the node's own runtime words.
#[test]
fn refused_values_are_shown_short_and_choices_use_the_nodes_words() {
    let (mut t, c, s) = examples();
    t.docker_storage_driver = Some("btrfs".into());
    label(&mut t, "flannel_backend", &"v".repeat(70_000));
    label(&mut t, "container_runtime", "host-docker");
    let report = validate(&t, &c, Some(&s));
    let shown: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(
        shown
            .iter()
            .any(|e| e.starts_with("cluster_template.docker_storage_driver = \"btrfs\": must be one of overlay2")),
        "{shown:?}"
    );
    let long = shown.iter().find(|e| e.contains("flannel_backend")).unwrap();
    assert!(long.len() < 400 && long.contains("(70000 characters, 70000 bytes)"), "{} bytes: {long:.200}", long.len());
}
