//! The server's command line shell: version, help, and usage errors.

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
    assert_eq!(unreadable.status.code(), Some(1));
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

/// A label typo is refused with the name it most likely meant, instead of silently becoming Stein's
/// default; a name the operator lists as pass-through is let through.
#[test]
fn a_label_typo_is_refused_with_the_name_it_meant() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(examples.join("cluster-template.yaml")).unwrap();
    let typo = template.replace("  kube_tag: v1.24.17\n", "  kube_tga: v1.24.17\n  team_owner: storage\n");
    assert_ne!(typo, template, "the example's kube_tag line moved");
    std::fs::write(dir.path().join("template.yaml"), typo).unwrap();
    let validate = |settings: &std::path::Path| validate_with(&dir.path().join("template.yaml"), settings);
    let out = validate(&examples.join("settings.yaml"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
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
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("kube_tga") && !text.contains("team_owner"), "{text}");
}

/// With settings, `validate` passes only what `render` renders: an option every master would refuse at
/// kube-master exits 2 naming the label, as render does.
#[test]
fn validate_with_settings_refuses_what_the_nodes_would_refuse() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let dir = tempfile::tempdir().unwrap();
    let template = std::fs::read_to_string(examples.join("cluster-template.yaml")).unwrap();
    let quoted =
        template.replace("labels:\n", "labels:\n  kubeapi_options: '--audit-log-path=/var/log/kube \"audit\".log'\n");
    std::fs::write(dir.path().join("template.yaml"), quoted).unwrap();
    let out = validate_with(&dir.path().join("template.yaml"), &examples.join("settings.yaml"));
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
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
