//! The test registry serves the images the tests build, and the real containerd pulls them over plain
//! HTTP exactly when the registry host files Hearth's runtime step writes for an insecure registry say
//! so. The registry is reached at a test network's gateway, as nodes reach it, not on loopback (where
//! containerd would allow plain HTTP anyway).

use hearth_fragments::config::native;
use hearth_fragments::Role;
use hearth_tests::node::Network;
use hearth_tests::registry::Registry;
use hearth_tests::{images, rooted};
use serde_json::json;
use std::net::SocketAddr;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A containerd of this test's own (root, state, socket in a temporary directory; no CRI).
struct Containerd {
    child: Child,
    socket: String,
    _dir: tempfile::TempDir,
}

impl Containerd {
    fn start() -> Containerd {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("containerd.sock").display().to_string();
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "version = 2\ndisabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n").unwrap();
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .args(["--address", &socket])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("containerd (Debian package containerd; .ci/run installs it)");
        let deadline = Instant::now() + Duration::from_secs(20);
        while !std::path::Path::new(&socket).exists() {
            assert!(Instant::now() < deadline, "containerd made no socket within 20 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        Containerd { child, socket, _dir: dir }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}

#[test]
fn containerd_pulls_a_pushed_image_through_the_hosts_file_hearth_writes() {
    let registry = Registry::start().unwrap();
    let pause = images::pause().unwrap();
    registry.push("magnum/pause", "3.10.1", &pause).unwrap();
    let network = Network::new().unwrap();
    let at = network.forward(SocketAddr::from(([127, 0, 0, 1], registry.port))).unwrap();

    // Hearth's runtime configuration for that insecure registry, from its own step.
    let mut value = rooted::node_example(Role::Minion);
    value["runtime"]["insecure_registry_url"] = json!(at.to_string());
    value["runtime"]["container_infra_prefix"] = json!(format!("{at}/magnum/"));
    value["runtime"]["volume"] = json!({"id": "", "size": 0});
    let config = native::parse(&value.to_string(), "the edited minion example", Some(Role::Minion)).unwrap();
    let root = tempfile::tempdir().unwrap();
    rooted::run_step(&config, "docker-storage", root.path(), "k8s-minion-0").unwrap();
    let hosts = root.path().join("etc/containerd/certs.d");
    assert!(hosts.join(at.to_string()).join("hosts.toml").is_file(), "no hosts.toml for {at}");

    let containerd = Containerd::start();
    let image = format!("{at}/magnum/pause:3.10.1");
    // ctr fetches from inside the network's hub (where the gateway is); containerd stores what it got.
    let ctr = |args: &[&str]| {
        Command::new("nsenter")
            .arg(format!("--net=/run/netns/{}", network.hub_name()))
            .args(["ctr", "--address", &containerd.socket, "--namespace", "hearth"])
            .args(args)
            .output()
            .unwrap()
    };
    let refused = ctr(&["images", "pull", &image]);
    assert!(!refused.status.success(), "a plain-HTTP registry pulled without Hearth's hosts file");
    assert!(text(&refused).contains("HTTP response to HTTPS client"), "{}", text(&refused));
    let hosts_dir = hosts.display().to_string();
    let pulled = ctr(&["images", "pull", "--hosts-dir", &hosts_dir, &image]);
    assert!(pulled.status.success(), "{}\nregistry log:\n{}", text(&pulled), registry.log());
    let listed = text(&ctr(&["images", "ls"]));
    assert!(listed.contains(&image) && listed.contains(&pause.manifest.digest), "{listed}");
}
