//! The labels Hearth knows: how Magnum Stein's driver passed each one to Heat, the ones Hearth adds, and
//! the check that refuses any other name, so a typo (`kube_tga`) never silently becomes Stein's default.
//! An operator's own labels (read by their tools, not by Hearth) pass when listed in the settings'
//! `pass_through_labels`.

use hearth_fragments::config::words;

/// Labels Magnum always passes, as `None` when absent (the template default applies).
pub const ALWAYS: &[&str] = &[
    "flannel_network_cidr",
    "flannel_backend",
    "flannel_network_subnetlen",
    "system_pods_initial_delay",
    "system_pods_timeout",
    "admission_control_list",
    "prometheus_monitoring",
    "grafana_admin_passwd",
    "kube_dashboard_enabled",
    "etcd_volume_size",
    "cert_manager_api",
    "ingress_controller_role",
    "octavia_ingress_controller_tag",
    "kubelet_options",
    "kubeapi_options",
    "kubeproxy_options",
    "kubecontroller_options",
    "kubescheduler_options",
    "influx_grafana_dashboard_enabled",
];

/// Labels Magnum passes only when they hold a value.
pub const TRUTHY: &[&str] = &[
    "kube_tag",
    "container_infra_prefix",
    "availability_zone",
    "cgroup_driver",
    "calico_tag",
    "calico_cni_tag",
    "calico_kube_controllers_tag",
    "calico_ipv4pool",
    "etcd_tag",
    "flannel_tag",
    "flannel_cni_tag",
    "cloud_provider_enabled",
    "cloud_provider_tag",
    "prometheus_tag",
    "grafana_tag",
    "heat_container_agent_tag",
    "keystone_auth_enabled",
    "k8s_keystone_auth_tag",
    "monitoring_enabled",
    "tiller_enabled",
    "tiller_tag",
    "tiller_namespace",
    "node_problem_detector_tag",
];

/// Labels Magnum reads under a rule of their own (renamed, defaulted, or choosing a template part).
pub const OTHER_MAGNUM: &[&str] = &[
    "ingress_controller",
    "service_cluster_ip_range",
    "docker_volume_type",
    "master_lb_floating_ip_enabled",
    "fixed_network_cidr",
];

/// Labels Hearth reads that Stein's driver did not (later Magnum releases have most of them).
pub const HEARTH: &[&str] = &[
    "container_runtime",
    "dns_cluster_domain",
    "kube_allow_priv",
    "dns_service_ip",
    "coredns_tag",
    "kubelet_url",
    "kubelet_sha256",
];

/// Whether Hearth reads a label of this name.
pub fn is_known(name: &str) -> bool {
    [ALWAYS, TRUTHY, OTHER_MAGNUM, HEARTH].iter().any(|list| list.contains(&name))
}

/// Why an unknown label is refused, with the known name it most likely meant.
pub fn unknown(name: &str) -> String {
    let closest = words::closest(name, [ALWAYS, TRUTHY, OTHER_MAGNUM, HEARTH].iter().flat_map(|l| l.iter().copied()));
    let hint = "list it in the settings' pass_through_labels if it is meant for another tool";
    match closest {
        Some(known) => format!("not a label Hearth knows: did you mean {known}? ({hint})"),
        None => format!("not a label Hearth knows ({hint})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_get_the_name_they_most_likely_meant() {
        assert!(unknown("kube_tga").contains("did you mean kube_tag?"), "{}", unknown("kube_tga"));
        assert!(unknown("cgroups_driver").contains("did you mean cgroup_driver?"));
        assert!(unknown("flannel_backed").contains("did you mean flannel_backend?"));
        assert!(!unknown("my_team").contains("did you mean"), "{}", unknown("my_team"));
    }

    #[test]
    fn every_list_is_known_and_no_name_is_listed_twice() {
        let all: Vec<&str> = [ALWAYS, TRUTHY, OTHER_MAGNUM, HEARTH].concat();
        assert!(all.iter().all(|name| is_known(name)));
        let mut sorted = all.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), all.len());
        assert!(!is_known("kube_tga"));
    }
}
