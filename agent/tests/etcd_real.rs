//! A real etcd (Debian's `etcd-server`) started from the `/etc/etcd/etcd.conf` the agent's etcd step
//! writes, serving with the certificates the agent's certs step obtained from a stand-in Magnum
//! ([`StandInCloud`]); `etcdctl` with the client certificate succeeds, without one it is refused.
//!
//! etcd runs in a network namespace of its own (`unshare --net`), so its fixed ports (2379, 2380) never
//! meet another test's; the node's address is 127.0.0.2, which the namespace's loopback carries. The
//! configuration is read as a container runtime reads an environment file (`KEY=value` lines, taken
//! verbatim), and its node paths are mapped into the rooted tree the agent wrote.

use hearth_tests::StandInCloud;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");
const NODE_IP: &str = "127.0.0.2";

fn workspace(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// etcd, killed when dropped.
struct Etcd {
    child: Child,
    log: PathBuf,
}

impl Drop for Etcd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Etcd {
    /// A command inside etcd's network namespace.
    fn in_namespace(&self, program: &str) -> Command {
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/proc/{}/ns/net", self.child.id())).arg("--").arg(program);
        cmd
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// The variables of an environment file, as docker, podman and ctr read one: `KEY=value`, verbatim.
fn environment_file(text: &str) -> Vec<(String, String)> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').unwrap_or_else(|| panic!("not KEY=value: {l:?}"));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn agent(config: &Path, root: &Path, step: &str) {
    let out = Command::new(AGENT)
        .args(["run", "--config"])
        .arg(config)
        .arg("--root")
        .arg(root)
        .args(["--only", step])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{step}: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn start_etcd(root: &Path, vars: &[(String, String)]) -> Etcd {
    let log = root.join("etcd.log");
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--", "sh", "-c", "ip link set lo up && exec etcd"]);
    cmd.env_clear().env("PATH", std::env::var_os("PATH").unwrap_or_default());
    for (key, value) in vars {
        // The node's paths, inside the tree the agent wrote.
        let value = value
            .replace("/etc/etcd", &format!("{}/etc/etcd", root.display()))
            .replace("/var/lib/etcd", &format!("{}/var/lib/etcd", root.display()));
        cmd.env(key, value);
    }
    let file = std::fs::File::create(&log).unwrap();
    cmd.stdout(Stdio::from(file.try_clone().unwrap())).stderr(Stdio::from(file));
    let child = cmd.spawn().expect("starting etcd (apt-get install etcd-server iproute2, or run .ci/run)");
    Etcd { child, log }
}

fn etcdctl(etcd: &Etcd, root: &Path, endpoint: &str, with_cert: bool, args: &[&str]) -> Output {
    let certs = root.join("etc/etcd/certs");
    let mut cmd = etcd.in_namespace("etcdctl");
    cmd.arg(format!("--endpoints={endpoint}")).arg("--dial-timeout=2s").arg("--command-timeout=3s");
    if endpoint.starts_with("https") {
        cmd.arg(format!("--cacert={}", certs.join("ca.crt").display()));
        if with_cert {
            cmd.arg(format!("--cert={}", certs.join("server.crt").display()));
            cmd.arg(format!("--key={}", certs.join("server.key").display()));
        }
    }
    cmd.args(args).env("ETCDCTL_API", "3").output().unwrap()
}

#[test]
fn etcd_starts_from_the_agents_config_and_certificates() {
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace("examples/node/master.json")).unwrap()).unwrap();
    config["node"]["ip"] = NODE_IP.into();
    config["etcd"]["volume"]["size"] = 0.into();
    config["etcd"]["members"] = serde_json::json!([NODE_IP]);
    // A release that has the v2 switch, which the step turns on for flannel.
    config["etcd"]["tag"] = "v3.4.23".into();
    let cloud = StandInCloud::for_config(&mut config);
    let work = tempfile::tempdir().unwrap();
    let config_path = work.path().join("node.json");
    std::fs::write(&config_path, config.to_string()).unwrap();

    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(root.path().join("etc")).unwrap();
    std::fs::write(root.path().join("etc/os-release"), "ID=debian\n").unwrap();
    std::fs::write(root.path().join("etc/hostname"), "k8s-demo-master-0\n").unwrap();
    agent(&config_path, root.path(), "etcd");
    agent(&config_path, root.path(), "certs");
    assert_eq!(cloud.signed().len(), 7, "a master's seven certificates (server, kubelet and its API clients)");

    let conf = std::fs::read_to_string(root.path().join("etc/etcd/etcd.conf")).unwrap();
    let vars = environment_file(&conf);
    assert!(vars.iter().any(|(k, v)| k == "ETCD_ENABLE_V2" && v == "true"), "{conf}");
    let started = Instant::now();
    let etcd = start_etcd(root.path(), &vars);
    let endpoint = format!("https://{NODE_IP}:2379");
    loop {
        let health = etcdctl(&etcd, root.path(), &endpoint, true, &["endpoint", "health"]);
        if health.status.success() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "etcd did not become healthy: {}\n--- etcd log ---\n{}",
            String::from_utf8_lossy(&health.stderr),
            etcd.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    println!("etcd healthy {:?} after start", started.elapsed());

    let put = etcdctl(&etcd, root.path(), &endpoint, true, &["put", "/hearth/test", "converged"]);
    assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
    let get = etcdctl(&etcd, root.path(), &endpoint, true, &["get", "--print-value-only", "/hearth/test"]);
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "converged");

    // Client-certificate authentication is on: a client without one is refused.
    let refused = etcdctl(&etcd, root.path(), &endpoint, false, &["get", "/hearth/test"]);
    assert!(!refused.status.success(), "a client without a certificate was served");

    // The members the agent listed are the cluster.
    let members = etcdctl(&etcd, root.path(), &endpoint, true, &["member", "list"]);
    let members = String::from_utf8_lossy(&members.stdout);
    assert!(members.contains(&format!("{NODE_IP}, https://{NODE_IP}:2380, https://{NODE_IP}:2379")), "{members}");

    // The local apiserver's plain loopback listener, and the v2 keyspace flannel's older releases read.
    let local =
        etcdctl(&etcd, root.path(), "http://127.0.0.1:2379", false, &["get", "--print-value-only", "/hearth/test"]);
    assert_eq!(String::from_utf8_lossy(&local.stdout).trim(), "converged");
    let v2 = etcd
        .in_namespace("etcdctl")
        // --no-sync: talk to this endpoint, not to the TLS one the member advertises.
        .args(["--endpoints=http://127.0.0.1:2379", "--no-sync", "set", "/coreos.com/network/probe", "v2"])
        .env("ETCDCTL_API", "2")
        .output()
        .unwrap();
    assert!(v2.status.success(), "v2 write: {}\n{}", String::from_utf8_lossy(&v2.stderr), etcd.log_tail());
}
