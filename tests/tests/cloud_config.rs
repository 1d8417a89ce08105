//! The cloud config the kube-os-config step writes, as the components of each release read it: without
//! Octavia, the load-balancer controller of today's cloud-controller-manager is switched off (it finds no
//! other load balancer and exits at start otherwise), but not for releases whose in-tree provider reads
//! the same file and refuses keys it does not know.

use hearth_fragments::step::Done;
use hearth_fragments::{NodeConfig, Role};
use hearth_tests::rooted::{node_example, run_step};
use serde_json::json;

fn cloud_config(tag: &str, octavia: bool) -> String {
    let mut value = node_example(Role::Master);
    value["kubernetes"]["tag"] = json!(tag);
    value["openstack"]["octavia_enabled"] = json!(octavia);
    let config: NodeConfig = serde_json::from_value(value).unwrap();
    let root = tempfile::tempdir().unwrap();
    assert_eq!(run_step(&config, "kube-os-config", root.path(), "k8s-master-0").unwrap(), Done::Applied);
    std::fs::read_to_string(root.path().join("etc/kubernetes/cloud-config")).unwrap()
}

fn load_balancer_section(text: &str) -> Vec<String> {
    let start = text.find("[LoadBalancer]").expect("a [LoadBalancer] section");
    text[start..].lines().skip(1).take_while(|l| !l.starts_with('[')).map(str::to_string).collect()
}

#[test]
fn without_octavia_the_load_balancer_controller_is_off_where_no_in_tree_provider_reads_the_file() {
    for (tag, octavia, off) in
        [("v1.34.4", false, true), ("v1.34.4", true, false), ("v1.25.16", false, false), ("v1.25.16", true, false)]
    {
        let section = load_balancer_section(&cloud_config(tag, octavia));
        assert_eq!(section.contains(&"enabled=false".to_string()), off, "{tag}, octavia {octavia}: {section:?}");
        let octavia_line = format!("use-octavia={}", if octavia { "True" } else { "False" });
        assert!(section.contains(&octavia_line), "{tag}: {section:?}");
    }
}
