#![recursion_limit = "256"]
//! Magnum's own expectations (inventory §8.1, `test_k8s_cluster_conductor.py`): the same fixture gives the
//! same parameter dict, and every parameter then lands somewhere a table here names, with the reason when
//! Hearth moved or dropped it.

use hearth_fragments::config::fields::{slots, STEIN_MASTER_KEYS};
use hearth_fragments::config::{NodeConfig, Role, Secret};
use hearth_server::model::{Cluster, ClusterTemplate, Labels};
use hearth_server::params::{self, HEAT_ONLY};
use hearth_server::settings::{Loaded, Settings, Trustee};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap};

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

fn fixture() -> (ClusterTemplate, Cluster, Loaded) {
    let template_labels = labels(&[
        ("flannel_network_cidr", "10.101.0.0/16"),
        ("flannel_network_subnetlen", "26"),
        ("flannel_backend", "vxlan"),
        ("system_pods_initial_delay", "15"),
        ("system_pods_timeout", "1"),
        ("admission_control_list", "fake_list"),
        ("prometheus_monitoring", "False"),
        ("grafana_admin_passwd", "fake_pwd"),
        ("kube_dashboard_enabled", "True"),
        ("influx_grafana_dashboard_enabled", "True"),
        ("docker_volume_type", "lvmdriver-1"),
        ("etcd_volume_size", "0"),
        ("availability_zone", "az_1"),
        ("service_cluster_ip_range", "10.254.0.0/16"),
    ]);
    let mut cluster_labels = template_labels.clone();
    cluster_labels.remove("etcd_volume_size");
    cluster_labels.extend(labels(&[
        ("cert_manager_api", "False"),
        ("ingress_controller", "traefik"),
        ("ingress_controller_role", "i-controller-role"),
        ("kubelet_options", "--kubelet"),
        ("kubeapi_options", "--kubeapi"),
        ("kubecontroller_options", "--kubecontroller"),
        ("kubescheduler_options", "--kubescheduler"),
        ("kubeproxy_options", "--kubeproxy"),
    ]));
    let text = |s: &str| Some(s.to_string());
    let template = ClusterTemplate {
        image_id: text("image_id"),
        flavor_id: text("flavor_id"),
        master_flavor_id: text("flavor_id"),
        keypair_id: text("keypair_id"),
        dns_nameserver: text("dns_nameserver"),
        external_network_id: text("e2a6c8b0-a3c2-42a3-b3f4-01400a30896e"),
        fixed_network: text("fixed_network"),
        fixed_subnet: text("fixed_subnet"),
        network_driver: text("network_driver"),
        volume_driver: text("volume_driver"),
        docker_volume_size: Some(20),
        docker_storage_driver: text("devicemapper"),
        cluster_distro: text("fedora-atomic"),
        coe: text("kubernetes"),
        http_proxy: text("http_proxy"),
        https_proxy: text("https_proxy"),
        no_proxy: text("no_proxy"),
        server_type: text("vm"),
        insecure_registry: text("10.0.0.1:5000"),
        floating_ip_enabled: false,
        labels: template_labels,
        ..Default::default()
    };
    let cluster = Cluster {
        uuid: text("5d12f6fd-a196-4bf0-ae4c-1f639a523a52"),
        keypair: text("keypair_id"),
        name: text("cluster1"),
        node_count: Some(1),
        master_count: Some(1),
        discovery_url: text("https://discovery.etcd.io/test"),
        docker_volume_size: Some(20),
        flavor_id: text("flavor_id"),
        master_flavor_id: text("master_flavor_id"),
        project_id: text("project_id"),
        labels: Some(cluster_labels),
        ..Default::default()
    };
    let settings = Loaded {
        settings: Settings {
            auth_url: "http://192.168.10.10:5000/v3".into(),
            magnum_url: "http://127.0.0.1:9511/v1".into(),
            region: "RegionOne".into(),
            username: "fake_user".into(),
            trustee: Trustee {
                domain_id: "trustee_domain_id".into(),
                user_id: "7b489f04-b458-4541-8179-6a48a553e656".into(),
                username: "fake_trustee".into(),
                password: Secret::new("fake_trustee_password"),
                trust_id: Secret::new("bd11efc5-d4e2-4dac-bbce-25e348ddf7de"),
            },
            ..Settings::default()
        },
        openstack_ca: String::new(),
        service_account_public_key: "public_key".into(),
        service_account_private_key: Secret::new("private_key"),
    };
    (template, cluster, settings)
}

/// Magnum's expected dict (62 keys), `test_extract_template_definition`.
fn magnum_expected() -> BTreeMap<String, Value> {
    let v = json!({
        "ssh_key_name": "keypair_id", "external_network": "e2a6c8b0-a3c2-42a3-b3f4-01400a30896e",
        "fixed_network": "fixed_network", "fixed_subnet": "fixed_subnet", "network_driver": "network_driver",
        "volume_driver": "volume_driver", "dns_nameserver": "dns_nameserver", "server_image": "image_id",
        "minion_flavor": "flavor_id", "master_flavor": "master_flavor_id", "number_of_minions": 1,
        "number_of_masters": 1, "docker_volume_size": 20, "docker_volume_type": "lvmdriver-1",
        "docker_storage_driver": "devicemapper", "discovery_url": "https://discovery.etcd.io/test",
        "etcd_volume_size": null, "flannel_network_cidr": "10.101.0.0/16", "flannel_network_subnetlen": "26",
        "flannel_backend": "vxlan", "system_pods_initial_delay": "15", "system_pods_timeout": "1",
        "admission_control_list": "fake_list", "prometheus_monitoring": "False", "grafana_admin_passwd": "fake_pwd",
        "kube_dashboard_enabled": "True", "influx_grafana_dashboard_enabled": "True", "http_proxy": "http_proxy",
        "https_proxy": "https_proxy", "no_proxy": "no_proxy", "username": "fake_user",
        "cluster_uuid": "5d12f6fd-a196-4bf0-ae4c-1f639a523a52", "magnum_url": "http://127.0.0.1:9511/v1",
        "region_name": "RegionOne", "tls_disabled": false, "registry_enabled": false,
        "trustee_domain_id": "trustee_domain_id", "trustee_username": "fake_trustee",
        "trustee_password": "fake_trustee_password", "trustee_user_id": "7b489f04-b458-4541-8179-6a48a553e656",
        "trust_id": "", "auth_url": "http://192.168.10.10:5000/v3", "insecure_registry_url": "10.0.0.1:5000",
        "kube_version": "fake-version", "verify_ca": true, "openstack_ca": "",
        "nodes_affinity_policy": "soft-anti-affinity", "availability_zone": "az_1", "cert_manager_api": "False",
        "ingress_controller": "traefik", "ingress_controller_role": "i-controller-role",
        "octavia_ingress_controller_tag": null, "kubelet_options": "--kubelet", "kubeapi_options": "--kubeapi",
        "kubecontroller_options": "--kubecontroller", "kubescheduler_options": "--kubescheduler",
        "kubeproxy_options": "--kubeproxy", "octavia_enabled": false, "kube_service_account_key": "public_key",
        "kube_service_account_private_key": "private_key", "portal_network_cidr": "10.254.0.0/16",
        "project_id": "project_id"
    });
    serde_json::from_value(v).unwrap()
}

/// Where Hearth departs from Magnum's dict, and why.
const DEPARTURES: &[(&str, &str)] = &[
    (
        "kube_version",
        "Magnum sent the cluster's coe_version; Hearth has no such field: the version is the kube_tag label (absent here)",
    ),
    (
        "ca_key",
        "not in this dict (cert_manager_api is False); Hearth never sends it: validation refuses cert_manager_api=true",
    ),
];

#[test]
fn the_fixture_gives_magnums_dict_except_the_listed_departures() {
    let (t, c, s) = fixture();
    let ours = params::magnum_parameters(&t, &c, &s);
    let want = magnum_expected();
    assert_eq!(want.len(), 62);
    for (key, value) in &want {
        if DEPARTURES.iter().any(|(k, _)| k == key) {
            continue;
        }
        assert_eq!(ours.get(key), Some(value), "{key}");
    }
    for key in ours.keys() {
        assert!(want.contains_key(key), "{key} is not in Magnum's dict and not listed as a departure");
    }
    assert!(!ours.contains_key("kube_version") && !ours.contains_key("ca_key"));
}

#[test]
fn every_parameter_reaches_heat_or_the_node_config_of_the_right_role() {
    let (mut t, mut c, s) = fixture();
    // A network driver Hearth knows, so the node config can be built.
    t.network_driver = Some("flannel".into());
    c.labels.as_mut().unwrap().insert("kube_tag".into(), "v1.24.17".into());
    let magnum = params::magnum_parameters(&t, &c, &s);
    let heat = params::heat_parameters(&t, &c, &s, &magnum);
    let mut configs: HashMap<Role, BTreeMap<String, String>> = HashMap::new();
    for role in [Role::Master, Role::Minion] {
        let mut config: NodeConfig = params::node_config(role, &t, &c, &s, &magnum).unwrap();
        let rendered = slots(&mut config).into_iter().map(|(k, slot)| (k.to_string(), slot.render())).collect();
        configs.insert(role, rendered);
    }
    for (key, value) in &magnum {
        if let Some((_, why)) = HEAT_ONLY.iter().find(|(k, _)| k == key) {
            if why.starts_with("Heat") {
                assert!(heat.contains_key(key.as_str()), "{key}: {why}");
            }
            continue;
        }
        let heat_params_key = match key.as_str() {
            "kubernetes_port" => "KUBE_API_PORT".to_string(),
            "discovery_url" => "ETCD_DISCOVERY_URL".to_string(),
            "external_network" => "EXTERNAL_NETWORK_ID".to_string(),
            other => other.to_uppercase(),
        };
        let role = if STEIN_MASTER_KEYS.contains(&heat_params_key.as_str()) { Role::Master } else { Role::Minion };
        let Some(got) = configs[&role].get(&heat_params_key) else {
            panic!("{key} reaches no node config field and is not listed as Heat-only or dropped");
        };
        let expected = match value {
            Value::Null => continue,
            Value::Bool(b) => if *b { "True" } else { "False" }.to_string(),
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        assert_eq!(got, &expected, "{key} in the {role} config");
    }
    let minion = &configs[&Role::Minion];
    assert_eq!(minion["KUBE_SERVICE_ACCOUNT_PRIVATE_KEY"], "", "minions never get the service-account key");
    assert_eq!(minion["KUBEAPI_OPTIONS"], "", "minions do not get the control plane's options");
    assert_eq!(minion["KUBELET_OPTIONS"], "--kubelet");
    assert_eq!(minion["TRUSTEE_USERNAME"], "fake_trustee", "minions get the trustee name Stein forgot");
}

#[test]
fn optional_parts_follow_magnums_environment_selection() {
    let (mut t, mut c, s) = fixture();
    let p = params::parts(&t, &c, &s);
    assert!(!p.private_network && !p.etcd_volume && p.docker_volume && !p.master_lb && !p.floating_ip);
    t.fixed_network = None;
    assert!(params::parts(&t, &c, &s).private_network, "_only_required: with_private_network");
    // test_add_fip_env_*: (FIP, LB, label) → (floating_ip, lb_floating_ip)
    let cases = [
        (true, false, None, (true, false)),
        (true, true, None, (true, true)),
        (false, false, None, (false, false)),
        (false, true, None, (false, false)),
        (false, true, Some("true"), (false, true)),
        (false, true, Some("false"), (false, false)),
    ];
    for (fip, lb, label, want) in cases {
        t.floating_ip_enabled = fip;
        t.master_lb_enabled = lb;
        let labels = c.labels.as_mut().unwrap();
        match label {
            Some(v) => labels.insert("master_lb_floating_ip_enabled".into(), v.into()),
            None => labels.remove("master_lb_floating_ip_enabled"),
        };
        let p = params::parts(&t, &c, &s);
        assert_eq!((p.floating_ip, p.lb_floating_ip), want, "{fip} {lb} {label:?}");
    }
}

#[test]
fn tls_disabled_uses_http_on_8080_like_magnum() {
    let (mut t, c, s) = fixture();
    t.tls_disabled = true;
    let magnum = params::magnum_parameters(&t, &c, &s);
    assert_eq!(magnum["loadbalancing_protocol"], "HTTP");
    assert_eq!(magnum["kubernetes_port"], 8080);
    t.tls_disabled = false;
    t.apiserver_port = Some(7443);
    let magnum = params::magnum_parameters(&t, &c, &s);
    assert_eq!(magnum["kubernetes_port"], 7443, "Hearth honours apiserver_port (Magnum ignored it)");
    assert!(!magnum.contains_key("loadbalancing_protocol"));
}

#[test]
fn registry_and_trust_follow_the_settings() {
    let (mut t, c, mut s) = fixture();
    t.registry_enabled = true;
    s.settings.swift_region = "RegionOne".into();
    s.settings.cluster_user_trust = true;
    let magnum = params::magnum_parameters(&t, &c, &s);
    assert_eq!(magnum["swift_region"], "RegionOne");
    assert_eq!(magnum["registry_container"], "docker_registry");
    assert_eq!(magnum["trust_id"], "bd11efc5-d4e2-4dac-bbce-25e348ddf7de");
}

#[test]
fn later_releases_labels_reach_the_nodes_that_read_them() {
    let (mut t, mut c, s) = fixture();
    t.network_driver = Some("flannel".into());
    let labels = c.labels.as_mut().unwrap();
    labels.insert("coredns_tag".into(), "1.14.7".into());
    labels.insert("container_runtime".into(), "containerd".into());
    let magnum = params::magnum_parameters(&t, &c, &s);
    let master = params::node_config(Role::Master, &t, &c, &s, &magnum).unwrap();
    let minion = params::node_config(Role::Minion, &t, &c, &s, &magnum).unwrap();
    assert_eq!(master.addons.coredns_tag, "1.14.7", "the add-ons step is a master's");
    assert_eq!(minion.addons.coredns_tag, NodeConfig::new(Role::Minion).addons.coredns_tag, "minions apply no add-ons");
    assert_eq!((master.runtime.kind.word(), minion.runtime.kind.word()), ("containerd", "containerd"));
}
