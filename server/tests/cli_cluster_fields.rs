//! The cluster-level fields later Magnum added (`master_lb_enabled`, `floating_ip_enabled`,
//! `fixed_network`, `fixed_subnet`) go over the template's, as Magnum's API fills them from the template
//! only when the cluster gives none; a pair that cannot name one network is refused.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

/// The example cluster with `extra` YAML lines appended, rendered (or validated) with the example
/// template, or the template with `template_extra` appended.
fn run(command: &str, dir: &Path, template_extra: &str, extra: &str) -> Output {
    // The example says `master_lb_enabled: false`, Magnum's default, which a case may want to set itself.
    let template = std::fs::read_to_string(examples().join("cluster-template.yaml")).unwrap();
    let template = template.replace("master_lb_enabled: false\n", "") + template_extra;
    let cluster = std::fs::read_to_string(examples().join("cluster.yaml")).unwrap() + extra;
    let (t, c) = (dir.join("template.yaml"), dir.join("cluster.yaml"));
    std::fs::write(&t, template).unwrap();
    std::fs::write(&c, cluster).unwrap();
    let mut cmd = Command::new(SERVER);
    cmd.arg(command).arg("--cluster-template").arg(&t).arg("--cluster").arg(&c);
    cmd.arg("--settings").arg(examples().join("settings.yaml"));
    if command == "render" {
        cmd.arg("--out").arg(dir.join("out"));
    }
    cmd.output().unwrap()
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn the_clusters_own_fields_go_over_the_templates() {
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(examples().join("cluster-template.yaml")).unwrap();
    assert!(!template.contains("master_lb_enabled: true") && !template.contains("floating_ip_enabled: false"));

    let out = run("render", dir.path(), "", "");
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("private network on, master load balancer off"), "{said}");
    assert!(said.contains("node floating IPs on"), "{said}");

    let own = "master_lb_enabled: true\nfloating_ip_enabled: false\nfixed_network: net-a\nfixed_subnet: sub-a\n\
               flavor_id: m1.xlarge\n";
    let out = run("render", dir.path(), "", own);
    let said = text(&out);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("private network off, master load balancer on"), "{said}");
    assert!(said.contains("node floating IPs off"), "{said}");
    assert!(said.contains("2 minion(s) (m1.xlarge)"), "{said}");
    let environment = std::fs::read_to_string(dir.path().join("out/environment.yaml")).unwrap();
    for wanted in
        ["fixed_network: net-a", "fixed_subnet: sub-a", "master_lb_enabled: true", "floating_ip_enabled: false"]
    {
        assert!(environment.contains(wanted), "{wanted} missing:\n{environment}");
    }

    // The cluster's `false` wins over the template's `true` too, and an HA cluster needs the balancer.
    let template_lb = "master_lb_enabled: true\n";
    let out = run("validate", dir.path(), template_lb, "master_lb_enabled: false\n");
    assert!(out.status.success(), "{}", text(&out));
    let ha =
        std::fs::read_to_string(examples().join("cluster.yaml")).unwrap().replace("master_count: 1", "master_count: 3");
    std::fs::write(dir.path().join("ha.yaml"), ha + "master_lb_enabled: false\n").unwrap();
    let out = Command::new(SERVER)
        .arg("validate")
        .arg("--cluster-template")
        .arg(dir.path().join("template.yaml"))
        .arg("--cluster")
        .arg(dir.path().join("ha.yaml"))
        .output()
        .unwrap();
    let said = text(&out);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("cluster.master_count") && said.contains("the cluster's master_lb_enabled is false"),
        "{said}"
    );
}

#[test]
fn a_network_pair_made_of_two_sides_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cases: &[(&str, &str, &str, &str)] = &[
        ("", "fixed_subnet: sub-a\n", "cluster.fixed_subnet", "needs fixed_network"),
        ("", "fixed_network: net-a\n", "cluster.fixed_subnet", "mandatory with fixed_network"),
        (
            "fixed_network: net-t\nfixed_subnet: sub-t\n",
            "fixed_network: net-a\n",
            "cluster.fixed_subnet",
            "belongs to the template's network",
        ),
        ("fixed_network: net-t\n", "", "cluster_template.fixed_subnet", "mandatory with fixed_network"),
    ];
    for (template_extra, extra, field, reason) in cases {
        let out = run("validate", dir.path(), template_extra, extra);
        let said = text(&out);
        assert_eq!(out.status.code(), Some(2), "{template_extra}{extra}: {said}");
        assert!(said.contains(field) && said.contains(reason), "{template_extra}{extra}: {said}");
    }
    // The template's network given whole, or the cluster naming the template's own network, is fine.
    for (template_extra, extra) in [
        ("fixed_network: net-t\nfixed_subnet: sub-t\n", ""),
        ("fixed_network: net-t\nfixed_subnet: sub-t\n", "fixed_network: net-t\n"),
    ] {
        let out = run("validate", dir.path(), template_extra, extra);
        assert!(out.status.success(), "{template_extra}{extra}: {}", text(&out));
    }
}
