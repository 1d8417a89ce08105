//! Every command line Hearth writes is accepted by the real Kubernetes component of that release.
//!
//! For each release of [`kubernetes::RELEASES`] (built from its Go module), the agent's own kube-master and
//! kube-minion steps write the components' sysconfig files in a rooted tree, for the bundled examples and
//! variants of them; each component is then started with exactly the arguments its file holds, plus
//! `--version`. The components parse every flag before they look at `--version`, so an unknown or removed
//! flag fails the test with the component's own words, and the version printed must be the release's.

use hearth_fragments::config::native;
use hearth_fragments::kube::components::sysconfig_location;
use hearth_fragments::kube::Component;
use hearth_fragments::Role;
use hearth_tests::etcd::assignments;
use hearth_tests::kubernetes::{self, Programs};
use hearth_tests::rooted;
use serde_json::{json, Value};
use std::path::Path;

/// The components' command lines the agent writes for `config` (the example of `role` edited), read back
/// from their sysconfig files as the images' entrypoints read them.
fn command_lines(role: Role, edit: impl FnOnce(&mut Value)) -> Vec<(Component, Vec<String>)> {
    let mut value = rooted::node_example(role);
    edit(&mut value);
    let config = native::parse(&value.to_string(), "the edited example", Some(role)).expect("a valid config");
    let root = tempfile::tempdir().unwrap();
    let (step, components): (&str, &[Component]) = match role {
        Role::Master => ("kube-master", &Component::ALL),
        Role::Minion => ("kube-minion", &[Component::Kubelet, Component::Proxy]),
    };
    rooted::run_step(&config, step, root.path(), &format!("k8s-{role}-0")).unwrap_or_else(|e| panic!("{step}: {e:#}"));
    components
        .iter()
        .map(|&component| {
            let (path, var) = sysconfig_location(component);
            let text = std::fs::read_to_string(root.path().join(path.trim_start_matches('/'))).unwrap();
            let line = assignments(&text).into_iter().find(|(k, _)| k == var).map(|(_, v)| v).unwrap();
            // The shell's reading of the file: words split on blanks, `\$` is a `$`.
            (component, line.split_whitespace().map(|w| w.replace("\\$", "$")).collect())
        })
        .collect()
}

/// Starts every component of every variant with its arguments and `--version`; all failures at once.
fn check_release(release: &Programs) -> Vec<String> {
    let tag = release.version.as_str();
    type Edit = fn(&mut Value);
    let variants: [(&str, Edit); 4] = [
        ("the example", |_| {}),
        ("no cloud provider", |c| c["kubernetes"]["cloud_provider_enabled"] = json!(false)),
        ("controller-manager signs CSRs, no keystone auth", |c| {
            c["kubernetes"]["cert_manager_api"] = json!(true);
            // Any key: the components only name its file here.
            let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/service-account.key");
            c["kubernetes"]["ca_key"] = json!(std::fs::read_to_string(key).unwrap());
            c["kubernetes"]["keystone_auth_enabled"] = json!(false);
        }),
        ("calico", |c| c["network"]["driver"] = json!("calico")),
    ];
    let mut failures = Vec::new();
    for role in [Role::Master, Role::Minion] {
        for (label, edit) in variants {
            let lines = command_lines(role, |c| {
                c["kubernetes"]["tag"] = json!(tag);
                c["kubernetes"]["version"] = json!(tag);
                edit(c);
            });
            for (component, args) in lines {
                let program = release.binary(component.binary());
                match kubernetes::version_with_args(&program, &args) {
                    Ok(said) if said.contains(&format!("Kubernetes {tag}")) => {}
                    Ok(said) => failures.push(format!("{tag} {role} {label}: {} says {said:?}", component.binary())),
                    Err(e) => failures.push(format!("{tag} {role} {label}: {e:#}")),
                }
            }
        }
    }
    failures
}

#[test]
fn every_component_accepts_the_command_line_hearth_writes() {
    let releases = kubernetes::releases().expect("the Kubernetes components");
    let mut failures = Vec::new();
    for release in &releases {
        eprintln!(
            "Kubernetes {}: {} (ready in {:.1} s)",
            release.version,
            release.dir.display(),
            release.took.as_secs_f64()
        );
        failures.extend(check_release(release));
    }
    assert!(failures.is_empty(), "{} command line(s) refused:\n{}", failures.len(), failures.join("\n\n"));
}

/// The check can fail: a flag the release does not have is refused by the real binary.
#[test]
fn a_flag_the_release_lacks_is_refused() {
    let release = kubernetes::release(kubernetes::CLUSTER_RELEASE).expect("the Kubernetes components");
    let err = kubernetes::version_with_args(&release.binary("kubelet"), &["--cadvisor-port=0".into()]).unwrap_err();
    assert!(format!("{err:#}").contains("unknown flag: --cadvisor-port"), "{err:#}");
    let ok = kubernetes::version_with_args(&release.binary("kube-proxy"), &[]).unwrap();
    assert_eq!(ok, format!("Kubernetes {}", release.version));
}
