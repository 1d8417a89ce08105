//! Golden files for agent-service, docker-storage, registry-config, services and registry-service, per
//! role and OS family, from rooted runs (`hearth-agent run --root TREE --only STEP`): every file each step
//! writes and every command it records (commands a tree cannot run are recorded, not run). A second run
//! of every step changes nothing and records nothing. Each tree's units pass `systemd-analyze verify`,
//! and `systemctl --root` made the enable links.
//!
//! The trees hold what the OS family brings: Fedora Atomic's `docker.service` with its hard-coded cgroup
//! driver, `/etc/sysconfig/docker` with journald logging and `/etc/sysconfig/docker-storage`; Fedora
//! CoreOS's `/etc/sysconfig/docker`; plus stand-in units for the Kubernetes components, so the services
//! step has something to order.
//!
//! Regenerate with `HEARTH_BLESS=1 cargo test -p hearth-agent --test storage_steps` and review the diff.

use hearth_tests::golden::{self, Snapshot};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");
const VOLUME_ID: &str = "9c1e2d3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f";

const DEBIAN: &str = "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n";
const FEDORA_ATOMIC: &str = "NAME=Fedora\nVERSION=\"29.20190101.0 (Atomic Host)\"\nID=fedora\nVARIANT_ID=atomic.host\n";
const FEDORA_COREOS: &str = "NAME=\"Fedora Linux\"\nID=fedora\nVARIANT_ID=coreos\n";

/// Fedora Atomic 29's docker unit (projectatomic docker 1.13), abridged to what matters here.
const ATOMIC_DOCKER_UNIT: &str = "[Unit]
Description=Docker Application Container Engine
After=network.target
Wants=docker-storage-setup.service

[Service]
Type=notify
EnvironmentFile=-/etc/sysconfig/docker
EnvironmentFile=-/etc/sysconfig/docker-storage
ExecStart=/usr/bin/dockerd-current \\
          --add-runtime docker-runc=/usr/libexec/docker/docker-runc-current \\
          --default-runtime=docker-runc \\
          --exec-opt native.cgroupdriver=systemd \\
          $OPTIONS \\
          $DOCKER_STORAGE_OPTIONS

[Install]
WantedBy=multi-user.target
";

/// A Kubernetes component's unit as kube-steps will write it (a stand-in: the binary is /bin/true).
fn component_unit(name: &str) -> String {
    format!("[Unit]\nDescription={name} (stand-in)\n\n[Service]\nExecStart=/bin/true\n\n[Install]\nWantedBy=multi-user.target\n")
}

struct Scenario {
    name: &'static str,
    role: &'static str,
    os_release: &'static str,
    edit: fn(&mut serde_json::Value),
    /// Files the OS (or other steps) put in the tree first.
    seed: Vec<(&'static str, String)>,
}

fn scenarios() -> Vec<Scenario> {
    let kube = |names: &[&'static str]| -> Vec<(&'static str, String)> {
        names.iter().map(|n| (*n, component_unit(n.rsplit('/').next().unwrap()))).collect()
    };
    let minion_units = ["/etc/systemd/system/kubelet.service", "/etc/systemd/system/kube-proxy.service"];
    let master_units = [
        "/etc/systemd/system/etcd.service",
        "/etc/systemd/system/kube-apiserver.service",
        "/etc/systemd/system/kube-controller-manager.service",
        "/etc/systemd/system/kube-scheduler.service",
        "/etc/systemd/system/kubelet.service",
        "/etc/systemd/system/kube-proxy.service",
    ];
    let vendor = |unit: &'static str| (unit, component_unit(unit.rsplit('/').next().unwrap()));
    let mut atomic_minion = kube(&minion_units);
    atomic_minion.extend([
        ("/usr/lib/systemd/system/docker.service", ATOMIC_DOCKER_UNIT.to_string()),
        (
            "/etc/sysconfig/docker",
            "# /etc/sysconfig/docker\n\n# Modify these options if you want to change the way the docker daemon runs\n\
             OPTIONS='--selinux-enabled --log-driver=journald --signature-verification=false'\n"
                .to_string(),
        ),
        ("/etc/sysconfig/docker-storage", "DOCKER_STORAGE_OPTIONS=\n".to_string()),
    ]);
    let mut atomic_master = kube(&master_units);
    atomic_master.extend([
        ("/usr/lib/systemd/system/docker.service", ATOMIC_DOCKER_UNIT.to_string()),
        ("/etc/sysconfig/docker-storage", "DOCKER_STORAGE_OPTIONS=\"--storage-driver overlay2\"\n".to_string()),
    ]);
    let mut coreos_minion = kube(&minion_units);
    coreos_minion.extend([
        vendor("/usr/lib/systemd/system/docker.service"),
        (
            "/etc/sysconfig/docker",
            "# Modify these options if you want to change the way the docker daemon runs\n\
             OPTIONS=\"--selinux-enabled \\\n  --log-driver=journald \\\n  --live-restore \\\n  --default-ulimit nofile=1024:1024\"\n"
                .to_string(),
        ),
    ]);
    let mut debian_minion = kube(&minion_units);
    debian_minion.push(vendor("/lib/systemd/system/containerd.service"));
    let mut debian_master = kube(&master_units);
    debian_master.push(vendor("/lib/systemd/system/containerd.service"));
    let mut coreos_master = kube(&master_units);
    coreos_master.push(vendor("/usr/lib/systemd/system/containerd.service"));

    vec![
        Scenario {
            name: "debian-minion",
            role: "minion",
            os_release: DEBIAN,
            edit: |c| {
                c["registry"]["enabled"] = true.into();
                c["registry"]["swift_region"] = "RegionOne".into();
                c["runtime"]["insecure_registry_url"] = "http://registry.example:5000/".into();
                c["runtime"]["registry_mirrors"] = serde_json::json!(["https://mirror.example"]);
            },
            seed: debian_minion,
        },
        Scenario { name: "debian-master", role: "master", os_release: DEBIAN, edit: |_| {}, seed: debian_master },
        Scenario {
            name: "fedora-atomic-minion",
            role: "minion",
            os_release: FEDORA_ATOMIC,
            edit: |c| {
                c["kubernetes"]["tag"] = "v1.11.6".into();
                c["kubernetes"]["cgroup_driver"] = "cgroupfs".into();
                c["runtime"]["kind"] = "".into();
                c["runtime"]["storage_driver"] = "devicemapper".into();
                c["runtime"]["container_infra_prefix"] = "registry.example:5000/magnum/".into();
                c["registry"]["enabled"] = true.into();
            },
            seed: atomic_minion,
        },
        Scenario {
            name: "fedora-atomic-master",
            role: "master",
            os_release: FEDORA_ATOMIC,
            edit: |c| {
                c["kubernetes"]["tag"] = "v1.11.6".into();
                c["runtime"]["kind"] = "".into();
                c["runtime"]["volume"] = serde_json::json!({"id": VOLUME_ID, "size": 50});
            },
            seed: atomic_master,
        },
        Scenario {
            name: "fedora-coreos-minion",
            role: "minion",
            os_release: FEDORA_COREOS,
            edit: |c| {
                // docker is the runtime of the releases that still had dockershim.
                c["kubernetes"]["tag"] = "v1.23.17".into();
                c["kubernetes"]["version"] = "v1.23.17".into();
                c["runtime"]["kind"] = "docker".into();
                c["runtime"]["volume"] = serde_json::json!({"id": "", "size": 0});
            },
            seed: coreos_minion,
        },
        Scenario {
            name: "fedora-coreos-master",
            role: "master",
            os_release: FEDORA_COREOS,
            edit: |_| {},
            seed: coreos_master,
        },
    ]
}

fn steps(role: &str) -> &'static [&'static str] {
    match role {
        "minion" => &["agent-service", "docker-storage", "registry-config", "services", "registry-service"],
        _ => &["docker-storage", "agent-service", "services"],
    }
}

#[test]
fn storage_steps_per_role_and_os_family_match_their_golden_files_and_converge() {
    for scenario in scenarios() {
        let tree = tempfile::tempdir().unwrap();
        let root = tree.path();
        write(root, "/etc/os-release", scenario.os_release, 0o644);
        write(root, "/etc/hostname", &format!("k8s-{}-0\n", scenario.role), 0o644);
        for (path, text) in &scenario.seed {
            write(root, path, text, 0o644);
        }
        let config_dir = tempfile::tempdir().unwrap();
        let config = config_dir.path().join("node.json");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../examples/node/{}.json", scenario.role));
        let mut value: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(example).unwrap()).unwrap();
        (scenario.edit)(&mut value);
        std::fs::write(&config, serde_json::to_string_pretty(&value).unwrap()).unwrap();

        let mut golden = String::new();
        for step in steps(scenario.role) {
            let before = snapshot(root);
            let (ok, output, actions) = run_step(root, &config, step);
            assert!(ok, "{} {step}:\n{output}", scenario.name);
            let after = snapshot(root);
            golden.push_str(&format!("#### {step}: {}\n", without_duration(output.lines().next().unwrap_or_default())));
            for line in &actions {
                golden.push_str(&format!("  {line}\n"));
            }
            for (path, value) in &after {
                if before.get(path) != Some(value) {
                    golden.push_str(&golden::render_entry(path, value));
                }
            }
            golden.push('\n');
        }
        check_golden(&format!("steps/{}.txt", scenario.name), &golden);

        // Converged: every step again, nothing written, nothing recorded.
        let converged = snapshot(root);
        for step in steps(scenario.role) {
            let (ok, output, actions) = run_step(root, &config, step);
            assert!(ok, "{} {step} (second run):\n{output}", scenario.name);
            let changed: Vec<&String> = actions.iter().filter(|a| !a.contains("unchanged")).collect();
            assert!(changed.is_empty(), "{} {step}: the second run did {changed:?}\n{output}", scenario.name);
            assert!(!output.contains(" changed "), "{} {step}: {output}", scenario.name);
        }
        assert_eq!(snapshot(root), converged, "{}: the second run changed the tree", scenario.name);

        verify_units(root, scenario.name);
        check_enable_links(root, scenario.name);
    }
}

/// A progress line without its duration (`0.1s`), which differs from run to run.
fn without_duration(line: &str) -> String {
    let is_duration = |w: &str| w.strip_suffix('s').is_some_and(|n| n.parse::<f64>().is_ok());
    line.split_whitespace().filter(|w| !is_duration(w)).collect::<Vec<_>>().join(" ")
}

/// `hearth-agent run --only STEP` rooted: success, stdout, and the step's recorded actions as
/// `outcome kind target`.
fn run_step(root: &Path, config: &Path, step: &str) -> (bool, String, Vec<String>) {
    let out = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(config)
        .arg("--root")
        .arg(root)
        .args(["--only", step])
        .output()
        .unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(root.join("var/lib/hearth/partial.json")).unwrap()).unwrap();
    let actions = status["steps"][0]["actions"]
        .as_array()
        .map(|list| {
            list.iter()
                .map(|a| {
                    let target = a["target"].as_str().unwrap().replace(root.to_str().unwrap(), "ROOT");
                    format!("{} {} {}", a["outcome"].as_str().unwrap(), a["kind"].as_str().unwrap(), target)
                })
                .collect()
        })
        .unwrap_or_default();
    (out.status.success(), text, actions)
}

/// The tree under `root` but the agent's state.
fn snapshot(root: &Path) -> Snapshot {
    let mut tree = golden::snapshot(root);
    tree.retain(|path, _| !path.starts_with("/var/lib/hearth"));
    golden::mark_installed_agent(&mut tree, Path::new(AGENT));
    tree
}

fn check_golden(name: &str, actual: &str) {
    hearth_tests::golden::check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name), actual);
}

/// `systemd-analyze verify` of every unit the steps wrote in `/etc/systemd/system` (not the stand-ins the
/// test seeded, nor a copy of a vendor unit, whose programs are the OS's), with the tree's
/// `/usr/local/bin` bind-mounted in a private mount namespace so the agent's unit finds the agent.
fn verify_units(root: &Path, scenario: &str) {
    let system = root.join("etc/systemd/system");
    let ours: Vec<PathBuf> =
        ["hearth-agent.service", "registry.service"].iter().map(|u| system.join(u)).filter(|p| p.is_file()).collect();
    assert!(!ours.is_empty(), "{scenario}: no unit to verify");
    let scratch = tempfile::tempdir().unwrap();
    for unit in &ours {
        std::fs::copy(unit, scratch.path().join(unit.file_name().unwrap())).unwrap();
    }
    let unit_path = format!("{}:/usr/lib/systemd/system:/lib/systemd/system", scratch.path().display());
    for unit in &ours {
        let name = unit.file_name().unwrap().to_str().unwrap();
        let out = Command::new("unshare")
            .args([
                "--mount",
                "--propagation",
                "private",
                "--",
                "sh",
                "-c",
                "mount --bind \"$0\" /usr/local/bin && exec \"$@\"",
            ])
            .arg(root.join("usr/local/bin"))
            .args(["systemd-analyze", "verify", "--man=no", "--generators=no"])
            .arg(scratch.path().join(name))
            .env("SYSTEMD_UNIT_PATH", &unit_path)
            .env("SYSTEMD_LOG_COLOR", "0")
            .output()
            .expect("running systemd-analyze");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && stderr.trim().is_empty(),
            "{scenario}: systemd-analyze verify {name} ({}):\n{stderr}",
            out.status
        );
    }
}

/// The links `systemctl --root enable` made point at units that exist in the tree or the vendor dirs.
fn check_enable_links(root: &Path, scenario: &str) {
    let wants = root.join("etc/systemd/system/multi-user.target.wants");
    let mut linked: Vec<String> = std::fs::read_dir(&wants)
        .unwrap_or_else(|e| panic!("{scenario}: {}: {e}", wants.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    linked.sort();
    assert!(linked.iter().any(|l| l == "hearth-agent.service"), "{scenario}: {linked:?}");
    for link in &linked {
        let target = std::fs::read_link(wants.join(link)).unwrap();
        assert!(root.join(target.strip_prefix("/").unwrap()).is_file(), "{scenario}: {link} -> {}", target.display());
    }
}

fn write(root: &Path, path: &str, contents: &str, mode: u32) {
    let real = root.join(path.trim_start_matches('/'));
    std::fs::create_dir_all(real.parent().unwrap()).unwrap();
    std::fs::write(&real, contents).unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(mode)).unwrap();
}
