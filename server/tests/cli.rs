//! The server's command line shell: version, help, and usage errors.

mod bundle_support;

use bundle_support::master_node_config;
use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");

#[test]
fn version_help_and_usage_errors() {
    let version = Command::new(SERVER).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), concat!("hearth-server ", env!("CARGO_PKG_VERSION")));
    let help = Command::new(SERVER).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["validate", "render", "serve", "ca"] {
        assert!(help.contains(command), "{command} missing from --help:\n{help}");
    }
    let bare = Command::new(SERVER).output().unwrap();
    assert_eq!(bare.status.code(), Some(2), "a bare call is a usage error");
    let missing = Command::new(SERVER).args(["render", "--cluster", "x"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let unreadable = Command::new(SERVER)
        .args(["validate", "--cluster-template", "/nonexistent/t.yaml", "--cluster", "/nonexistent/c.yaml"])
        .output()
        .unwrap();
    assert_eq!(unreadable.status.code(), Some(2), "an input file that cannot be read is an input error");
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("/nonexistent/t.yaml"));
}

/// `hearth-server validate` of `template` with the example cluster and `settings`.
fn validate_with(template: &std::path::Path, settings: &std::path::Path) -> std::process::Output {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    Command::new(SERVER)
        .arg("validate")
        .arg("--cluster-template")
        .arg(template)
        .arg("--cluster")
        .arg(examples.join("cluster.yaml"))
        .arg("--settings")
        .arg(settings)
        .output()
        .unwrap()
}

/// The bundled example template with one edit (which must apply), written into `dir`.
fn edited_template(dir: &std::path::Path, from: &str, to: &str) -> std::path::PathBuf {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let template = std::fs::read_to_string(examples.join("cluster-template.yaml")).unwrap();
    let edited = template.replacen(from, to, 1);
    assert_ne!(edited, template, "the example template no longer holds {from:?}");
    let path = dir.join("template.yaml");
    std::fs::write(&path, edited).unwrap();
    path
}

/// What a command printed, stdout then stderr.
fn said(out: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

/// A label typo is refused with the name it most likely meant, instead of silently becoming Stein's
/// default; a name the operator lists as pass-through is let through.
#[test]
fn a_label_typo_is_refused_with_the_name_it_meant() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = tempfile::tempdir().unwrap();
    let template =
        edited_template(dir.path(), "  kube_tag: v1.24.17\n", "  kube_tga: v1.24.17\n  team_owner: storage\n");
    let validate = |settings: &std::path::Path| validate_with(&template, settings);
    let out = validate(&examples.join("settings.yaml"));
    let text = said(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("cluster_template.labels.kube_tga") && text.contains("did you mean kube_tag?"), "{text}");
    assert!(text.contains("cluster_template.labels.team_owner") && text.contains("pass_through_labels"), "{text}");

    // The operator's own label passes once listed; the typo still does not.
    let settings = std::fs::read_to_string(examples.join("settings.yaml")).unwrap();
    let listed = dir.path().join("settings.yaml");
    std::fs::write(&listed, format!("{settings}\npass_through_labels: [team_owner]\n")).unwrap();
    for file in ["openstack-ca.pem", "service-account.key", "service-account.pub"] {
        std::fs::copy(examples.join(file), dir.path().join(file)).unwrap();
    }
    let out = validate(&listed);
    let text = said(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("kube_tga") && !text.contains("team_owner"), "{text}");
}

/// With settings, `validate` passes only what `render` renders: an option every master would refuse at
/// kube-master exits 2 naming the label, as render does.
#[test]
fn validate_with_settings_refuses_what_the_nodes_would_refuse() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = tempfile::tempdir().unwrap();
    let quoted = "labels:\n  kubeapi_options: '--audit-log-path=/var/log/kube \"audit\".log'\n";
    let out = validate_with(&edited_template(dir.path(), "labels:\n", quoted), &examples.join("settings.yaml"));
    let text = said(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("kubernetes.kubeapi_options (KUBEAPI_OPTIONS)") && !text.contains("valid\n"), "{text}");
}

/// `cluster config`: a kubeconfig (0600) whose certificate the cluster's CA signed for the named user and
/// groups, client use only, short-lived; every issuance listed; bad requests exit 2 naming the flag.
#[test]
fn cluster_config_writes_a_short_lived_kubeconfig_signed_by_the_clusters_ca() {
    use std::os::unix::fs::PermissionsExt as _;
    let uuid = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52";
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let out = dir.path().join("admin.kubeconfig");
    let config = |extra: &[&str]| {
        Command::new(SERVER)
            .args(["cluster", "config", "--cluster", uuid, "--server", "https://127.0.0.1:6443"])
            .arg("--state")
            .arg(&state)
            .arg("--out")
            .arg(&out)
            .args(extra)
            .output()
            .unwrap()
    };
    let unregistered = config(&[]);
    assert_eq!(unregistered.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&unregistered.stderr).contains("is not registered"));
    assert!(!out.exists());

    let init =
        Command::new(SERVER).args(["ca", "init", "--cluster", uuid]).arg("--state").arg(&state).output().unwrap();
    assert!(init.status.success());
    let made = config(&["--user", "alice", "--group", "ops", "--hours", "2"]);
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let kubeconfig: serde_yaml::Value = serde_yaml::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    let data = |v: &serde_yaml::Value| {
        base64::Engine::decode(&base64::engine::general_purpose::STANDARD, v.as_str().unwrap()).unwrap()
    };
    assert_eq!(kubeconfig["clusters"][0]["cluster"]["server"].as_str(), Some("https://127.0.0.1:6443"));
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, data(&kubeconfig["clusters"][0]["cluster"]["certificate-authority-data"])).unwrap();
    let cert = dir.path().join("cert.pem");
    std::fs::write(&cert, data(&kubeconfig["users"][0]["user"]["client-certificate-data"])).unwrap();
    let verify = Command::new("openssl").arg("verify").arg("-CAfile").arg(&ca).arg(&cert).output().unwrap();
    assert!(verify.status.success(), "{}", String::from_utf8_lossy(&verify.stderr));
    let shown = Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-ext", "extendedKeyUsage", "-checkend", "7000", "-in"])
        .arg(&cert)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&shown.stdout);
    assert!(text.contains("CN = alice, O = ops") || text.contains("CN=alice, O=ops"), "{text}");
    assert!(text.contains("TLS Web Client Authentication") && !text.contains("Server"), "{text}");
    let later =
        Command::new("openssl").args(["x509", "-noout", "-checkend", "7300", "-in"]).arg(&cert).output().unwrap();
    assert!(!later.status.success(), "a 2-hour certificate is still valid in 7,300 s");
    let listed = std::fs::read_to_string(state.join("clusters").join(uuid).join("kubeconfigs.jsonl")).unwrap();
    assert!(listed.contains("\"user\":\"alice\"") && listed.contains("\"ops\""), "{listed}");

    for bad in [
        &["--user", "system:node:x"][..],
        &["--group", "system:nodes"],
        &["--group", "a", "--group", "b"],
        &["--hours", "0"],
    ] {
        let (flag, refused) = (bad[0], config(bad));
        assert_eq!(refused.status.code(), Some(2), "{bad:?}");
        assert!(String::from_utf8_lossy(&refused.stderr).contains(flag), "{bad:?}");
    }
}

/// What `openstack coe cluster template show -f json` and `openstack coe cluster show -f json` print is
/// accepted: Magnum's read-only fields are dropped with a note naming them, the cluster may name its
/// template by UUID, labels may be the CLI's `k=v,k=v` text, and `merge_labels` keeps the template's
/// labels under the cluster's. An unknown field is still refused.
#[test]
fn magnum_exports_and_cli_labels_are_accepted() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = tempfile::tempdir().unwrap();
    let template_uuid = "0c4a5f3e-9d1b-4a6e-8f2c-7b3d9e1a5c60";
    let template = serde_json::json!({
        "insecure_registry": null, "labels": {"kube_tag": "v1.24.17", "container_runtime": "containerd",
            "cgroup_driver": "systemd", "cloud_provider_enabled": "true", "availability_zone": "nova"},
        "updated_at": null, "floating_ip_enabled": true, "fixed_subnet": null, "master_flavor_id": "m1.large",
        "uuid": template_uuid, "no_proxy": null, "https_proxy": null, "tls_disabled": false, "keypair_id": "demo-key",
        "public": false, "http_proxy": null, "docker_volume_size": 20, "server_type": "vm",
        "external_network_id": "public", "cluster_distro": "debian", "image_id": "debian-12-genericcloud",
        "volume_driver": "cinder", "registry_enabled": false, "docker_storage_driver": "overlay2",
        "apiserver_port": null, "name": "k8s-debian", "created_at": "2026-11-30T10:00:00+00:00",
        "network_driver": "flannel", "fixed_network": null, "coe": "kubernetes", "flavor_id": "m1.medium",
        "master_lb_enabled": false, "dns_nameserver": "8.8.8.8", "hidden": false, "tags": null,
        "project_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "user_id": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
        "links": [{"href": "http://127.0.0.1:9511/v1/clustertemplates/x", "rel": "self"}],
    });
    let cluster = serde_json::json!({
        "status": "CREATE_COMPLETE", "health_status": null, "cluster_template_id": template_uuid,
        "node_addresses": [], "uuid": "5d12f6fd-a196-4bf0-ae4c-1f639a523a52", "stack_id": null,
        "status_reason": null, "created_at": "2026-11-30T10:05:00+00:00", "updated_at": null,
        "coe_version": null, "labels": "kube_tag=v1.25.16,flannel_backend=host-gw", "merge_labels": true,
        "labels_overridden": {}, "labels_skipped": {}, "labels_added": {}, "faults": {}, "keypair": "demo-key",
        "api_address": null, "master_addresses": [], "create_timeout": 60, "node_count": 2,
        "discovery_url": null, "master_count": 1, "container_version": null, "name": "demo",
        "project_id": "a1b2c3d4e5f60718293a4b5c6d7e8f90", "user_id": "f0e1d2c3b4a5968778695a4b3c2d1e0f",
        "links": [], "health_status_reason": {},
    });
    let (t, c) = (dir.path().join("template.json"), dir.path().join("cluster.json"));
    std::fs::write(&t, template.to_string()).unwrap();
    std::fs::write(&c, cluster.to_string()).unwrap();
    let render = |cluster: &std::path::Path| {
        Command::new(SERVER)
            .args(["render", "--cluster-template"])
            .arg(&t)
            .arg("--cluster")
            .arg(cluster)
            .arg("--settings")
            .arg(examples.join("settings.yaml"))
            .arg("--out")
            .arg(dir.path().join("out"))
            .output()
            .unwrap()
    };
    let out = render(&c);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("ignored Magnum's read-only fields created_at, updated_at, links, project_id, user_id, tags"),
        "{stderr}"
    );
    assert!(stderr.contains("status, status_reason, health_status"), "{stderr}");
    let environment = std::fs::read_to_string(dir.path().join("out/environment.yaml")).unwrap();
    let master = master_node_config(&environment);
    // The cluster's own labels reach the nodes (merge_labels itself: model.rs's unit tests).
    for wanted in ["v1.25.16", "host-gw"] {
        assert!(environment.contains(wanted) || master.contains(wanted), "{wanted} missing from the render");
    }

    let mut typo = cluster.clone();
    typo["node_cuont"] = serde_json::json!(3);
    std::fs::write(&c, typo.to_string()).unwrap();
    let out = render(&c);
    assert_ne!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stderr).contains("node_cuont"));
}

/// Found by the render_validate fuzz target: `container_runtime: contAinerd` passed validate (which
/// lowered it) and render then refused it, as every node would have. The node's words are exact.
#[test]
fn a_label_word_in_the_wrong_case_is_refused_by_validate_as_by_render() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = tempfile::tempdir().unwrap();
    let cased = edited_template(dir.path(), "  container_runtime: containerd\n", "  container_runtime: contAinerd\n");
    let out = validate_with(&cased, &examples.join("settings.yaml"));
    let text = said(&out);
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("cluster_template.labels.container_runtime") && text.contains("contAinerd"), "{text}");
}
