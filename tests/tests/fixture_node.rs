//! Proves the booted-node fixture (`hearth_tests::node`): a real Debian bookworm tree with systemd as PID 1
//! under systemd-nspawn, real cloud-init 22.4 consuming a NoCloud seed, and a network made only of
//! namespaces and veth pairs the test creates.
//!
//! Needs root, systemd-nspawn, nsenter, ip and journalctl, and debootstrap the first time (the cloud
//! tree is then cached: see `hearth_tests::debian_tree`). Figures (tree, PID 1, cloud-init final) are
//! printed to stderr: `cargo test -p hearth-tests --test fixture_node -- --nocapture` shows them.

use hearth_tests::node::{self, Network, Node, NodeOptions, GATEWAY};
use std::net::{IpAddr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// From systemd-nspawn's start to cloud-init's final stage: ≈ 2–5 s on an idle 2-core machine, far more
/// with other builds and nodes booting beside it.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(60);

/// Prints how long the node took to get where the test waited for.
fn report(node: &Node, what: &str, after: Duration) {
    eprintln!(
        "node {} ({}): tree {} in {:.2} s; {what} {:.2} s after systemd-nspawn started (boot {})",
        node.hostname(),
        node.address(),
        if node.is_overlay() { "overlay" } else { "copy" },
        node.prepared_in().as_secs_f64(),
        after.as_secs_f64(),
        node.boots()
    );
}

/// Fails with the node's console and cloud-init journal if cloud-init reported errors.
fn assert_cloud_init_clean(node: &Node, result: &node::CloudInitResult) {
    assert!(
        result.errors.is_empty(),
        "cloud-init in {} reported errors: {:?}\n--- journal (cloud-init units) ---\n{}",
        node.hostname(),
        result.errors,
        node.journal_with(&[
            "--unit=cloud-init-local",
            "--unit=cloud-init",
            "--unit=cloud-config",
            "--unit=cloud-final"
        ])
        .unwrap_or_else(|e| format!("{e:#}"))
    );
}

/// `sha256sum` of this machine over `text`: what the node's own sha256sum must agree with.
fn sha256_hex(text: &str) -> String {
    use std::io::Write;
    let mut child = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("running sha256sum");
    child.stdin.take().unwrap().write_all(text.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_string()
}

#[test]
fn cloud_init_runs_the_cloud_config_of_a_booted_node() {
    let user_data = "#cloud-config\n\
        write_files:\n\
        \x20 - path: /etc/hearth-proof/written\n\
        \x20   permissions: '0640'\n\
        \x20   content: |\n\
        \x20     written by cloud-init's write_files\n\
        runcmd:\n\
        \x20 - [sh, -c, 'echo \"$(hostname) $(id -u) $(printf proof | sha256sum | cut -d\" \" -f1)\" >> /root/runcmd.out']\n";
    let mut options = NodeOptions::new("proof-node");
    options.instance_id = Some("iid-proof-1".to_string());
    let started = Instant::now();
    let node = Node::boot(user_data, options).unwrap();
    let result = node.wait_for_cloud_init(BOOT_TIMEOUT).unwrap();
    report(&node, "cloud-init final", result.after);
    eprintln!("  Node::boot to cloud-init final: {:.2} s", started.elapsed().as_secs_f64());

    // cloud-init read our seed: the NoCloud datasource, our instance-id, our hostname.
    assert_cloud_init_clean(&node, &result);
    assert!(result.datasource.starts_with("DataSourceNoCloud"), "{}", result.datasource);
    assert!(result.datasource.contains("seed=/var/lib/cloud/seed/nocloud"), "{}", result.datasource);
    assert_eq!(node.read("/var/lib/cloud/data/instance-id").unwrap().trim(), "iid-proof-1");

    // write_files, with its mode.
    let written = node.tree().join("etc/hearth-proof/written");
    assert_eq!(std::fs::read_to_string(&written).unwrap(), "written by cloud-init's write_files\n");
    assert_eq!(std::fs::metadata(&written).unwrap().permissions().mode() & 0o777, 0o640);
    // runcmd ran once, as root, under the seed's hostname, with the node's own coreutils.
    assert_eq!(node.read("/root/runcmd.out").unwrap(), format!("proof-node 0 {}\n", sha256_hex("proof")));

    // The node's story is in its journal and on its console (cloud-init writes to both).
    let final_stage = node.journal_with(&["--unit=cloud-final.service"]).unwrap();
    assert!(final_stage.contains("Cloud-init v. 22.4"), "{final_stage}");
    assert!(final_stage.contains("finished at"), "{final_stage}");
    assert!(node.console().contains("running 'modules:final'"), "{}", node.console());
    // The node runs its own systemd, and commands run inside it.
    assert_eq!(node.run_ok(&["cat", "/proc/1/comm"]).unwrap().trim(), "systemd");
    assert_eq!(node.run_ok(&["hostname"]).unwrap().trim(), "proof-node");
    assert!(!node.run(&["false"]).unwrap().status.success());
}

/// A tiny HTTP server that answers every request with `answer` and records what it saw.
struct Recorder {
    server: Arc<tiny_http::Server>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Clone)]
struct Seen {
    method: String,
    url: String,
    from: Option<IpAddr>,
    user_agent: String,
    body: String,
}

impl Recorder {
    fn new(server: tiny_http::Server, answer: &'static str) -> Recorder {
        let server = Arc::new(server);
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let thread = {
            let (server, seen) = (Arc::clone(&server), Arc::clone(&seen));
            std::thread::spawn(move || {
                for mut request in server.incoming_requests() {
                    let mut body = String::new();
                    let _ = request.as_reader().read_to_string(&mut body);
                    let user_agent = request
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("User-Agent"))
                        .map(|h| h.value.to_string())
                        .unwrap_or_default();
                    seen.lock().unwrap().push(Seen {
                        method: request.method().to_string(),
                        url: request.url().to_string(),
                        from: request.remote_addr().map(SocketAddr::ip),
                        user_agent,
                        body,
                    });
                    let _ = request.respond(tiny_http::Response::from_string(answer));
                }
            })
        };
        Recorder { server, seen, thread: Some(thread) }
    }

    fn port(&self) -> u16 {
        self.server.server_addr().to_ip().unwrap().port()
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.server.unblock();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn a_node_reaches_the_tests_http_servers_over_its_veth_and_nothing_else() {
    let network = Network::new().unwrap();
    // A service on this machine's loopback (where Heat and hearth-server listen), forwarded into the hub.
    let loopback = Recorder::new(tiny_http::Server::http("127.0.0.1:0").unwrap(), "hello from the loopback service\n");
    let forwarded = network.forward(SocketAddr::from(([127, 0, 0, 1], loopback.port()))).unwrap();
    assert_eq!(forwarded.ip(), IpAddr::V4(GATEWAY));
    // A server listening in the hub itself, on the host end of the veth pairs: it sees the node's address.
    let in_hub = Recorder::new(
        tiny_http::Server::from_listener(network.listen(0).unwrap(), None).unwrap(),
        "hello from the hub\n",
    );
    // Only the test's loopback services can be exposed.
    let refused = network.forward("10.213.0.99:80".parse().unwrap()).unwrap_err();
    assert!(format!("{refused:#}").contains("only this machine's loopback"), "{refused:#}");

    // cloud-init's runcmd fetches from the forwarded service while the node boots.
    let user_data = format!(
        "#cloud-config\nruncmd:\n  - [curl, -fsS, --max-time, '30', -o, /root/from-loopback.txt, \
         'http://{forwarded}/during-boot?from=curl-node']\n"
    );
    let node = Node::boot(&user_data, NodeOptions::new("curl-node").on(&network)).unwrap();
    let result = node.wait_for_cloud_init(BOOT_TIMEOUT).unwrap();
    report(&node, "cloud-init final", result.after);
    assert_cloud_init_clean(&node, &result);
    assert_eq!(node.read("/root/from-loopback.txt").unwrap(), "hello from the loopback service\n");
    let seen = loopback.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].url, "/during-boot?from=curl-node");
    assert!(seen[0].user_agent.starts_with("curl/"), "{seen:?}");

    // From a shell in the node, a POST to the server in the hub: it sees the node's own address.
    let answer = node
        .run_ok(&[
            "curl",
            "-fsS",
            "--max-time",
            "30",
            "--data",
            "ping",
            &format!("http://{}/direct", in_hub_addr(&in_hub)),
        ])
        .unwrap();
    assert_eq!(answer, "hello from the hub\n");
    let seen = in_hub.seen();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].method.as_str(), seen[0].url.as_str(), seen[0].body.as_str()), ("POST", "/direct", "ping"));
    assert_eq!(seen[0].from, Some(IpAddr::V4(node.address())));

    // The node's loopback is its own: the test's loopback service is not there.
    let out =
        node.run(&["curl", "-sS", "--max-time", "10", &format!("http://127.0.0.1:{}/", loopback.port())]).unwrap();
    assert_eq!(out.status.code(), Some(7), "curl to the node's own loopback: {out:?}");
    // Its only routes are its segment and the hub.
    let routes = node.run_ok(&["ip", "-4", "route", "show"]).unwrap();
    let routes: Vec<&str> = routes.lines().map(str::trim).collect();
    assert_eq!(routes.len(), 2, "{routes:?}");
    assert!(routes.contains(&format!("default via {GATEWAY} dev eth0").as_str()), "{routes:?}");
    assert!(routes.iter().any(|r| r.starts_with("10.213.0.0/24 dev eth0")), "{routes:?}");
    assert_eq!(loopback.seen().len(), 1, "nothing else reached the loopback service");
}

fn in_hub_addr(recorder: &Recorder) -> SocketAddr {
    SocketAddr::from((GATEWAY, recorder.port()))
}

#[test]
fn two_nodes_boot_from_the_same_cached_tree_reach_each_other_reboot_and_clean_up() {
    let network = Network::new().unwrap();
    let hub = network.hub_name().to_string();
    // runcmd appends: a second run after the reboot would show as a second line.
    let first_data = "#cloud-config\nruncmd:\n  - [sh, -c, 'date +%s.%N >> /root/runcmd-runs']\n";
    // A failing runcmd: cloud-init must report it, so a clean result above means something.
    let second_data = "#cloud-config\nruncmd:\n  - [sh, -c, 'echo failing on purpose; exit 3']\n";

    let started = Instant::now();
    let (first, second) = std::thread::scope(|scope| {
        let booting = scope.spawn(|| Node::boot(first_data, NodeOptions::new("node-a").on(&network)));
        let second = Node::boot(second_data, NodeOptions::new("node-b").on(&network)).unwrap();
        (booting.join().unwrap().unwrap(), second)
    });
    let mut first = first;
    let mut second = second;
    let first_result = first.wait_for_cloud_init(BOOT_TIMEOUT).unwrap();
    let second_result = second.wait_for_cloud_init(BOOT_TIMEOUT).unwrap();
    report(&first, "cloud-init final", first_result.after);
    report(&second, "cloud-init final", second_result.after);
    eprintln!(
        "  two nodes side by side: both final {:.2} s after the first Node::boot",
        started.elapsed().as_secs_f64()
    );
    assert_cloud_init_clean(&first, &first_result);
    assert!(
        second_result.errors.iter().any(|e| e.contains("scripts_user") || e.contains("scripts-user")),
        "the failing runcmd is not in cloud-init's errors: {:?}",
        second_result.errors
    );
    assert_ne!(first.address(), second.address());
    assert_ne!(
        first.read("/etc/machine-id").unwrap(),
        second.read("/etc/machine-id").unwrap(),
        "each node has an identity of its own"
    );

    // The nodes of one network reach each other: node-b serves a file, node-a fetches it.
    second
        .run_ok(&["systemd-run", "--unit=proof-web", "python3", "-m", "http.server", "8080", "--directory", "/etc"])
        .unwrap();
    let url = format!("http://{}:8080/hostname", second.address());
    let fetched = retry(Duration::from_secs(30), || first.run_ok(&["curl", "-fsS", "--max-time", "5", &url]));
    assert_eq!(fetched.trim(), "node-b");

    // A reboot: systemd starts again on the same tree; cloud-init runs its stages again (a fresh
    // result for this boot) but not the per-instance runcmd.
    let booted_before = first.journal_with(&["--list-boots"]).unwrap();
    first.reboot(SHUTDOWN_TIMEOUT).unwrap();
    let after_reboot = first.wait_for_cloud_init(BOOT_TIMEOUT).unwrap();
    report(&first, "cloud-init final", after_reboot.after);
    assert_cloud_init_clean(&first, &after_reboot);
    assert_eq!(first.boots(), 2);
    assert_eq!(first.read("/root/runcmd-runs").unwrap().lines().count(), 1, "runcmd ran again after the reboot");
    let boots = first.journal_with(&["--list-boots"]).unwrap();
    assert_eq!(boots.lines().count(), booted_before.lines().count() + 1, "{booted_before}\n---\n{boots}");

    // A poweroff: systemd-nspawn exits 0, the journal stays readable from the tree.
    let took = second.poweroff(SHUTDOWN_TIMEOUT).unwrap();
    eprintln!("node-b powered off in {:.2} s", took.as_secs_f64());
    assert!(!second.is_running());
    assert!(second.run(&["true"]).is_err());
    let journal = second.journal().unwrap();
    assert!(journal.contains("failing on purpose"), "{journal}");
    // Waiting on a stopped node fails at once; on a running one, at the deadline, with the console.
    let waited = Instant::now();
    let stopped = second.wait_for("/never-there", Duration::from_secs(60)).unwrap_err();
    assert!(format!("{stopped:#}").contains("stopped before"), "{stopped:#}");
    assert!(waited.elapsed() < Duration::from_secs(5), "waited {:?} on a stopped node", waited.elapsed());
    let late = first.wait_for("/never-there", Duration::from_millis(300)).unwrap_err();
    assert!(format!("{late:#}").contains("did not appear") && format!("{late:#}").contains("console"), "{late:#}");

    // Dropping a node kills it, deletes its namespace and removes its tree; the hub goes with the last
    // holder of the network.
    let leftovers: Vec<(String, PathBuf)> = [&first, &second]
        .iter()
        .map(|node| (node.namespace().unwrap().to_string(), node.tree().parent().unwrap().to_path_buf()))
        .collect();
    let leader = first.leader().unwrap();
    drop(first);
    drop(second);
    assert!(!Path::new(&format!("/proc/{leader}")).exists(), "node-a's systemd outlived its Node");
    for (namespace, dir) in leftovers {
        assert!(!Path::new("/run/netns").join(&namespace).exists(), "{namespace} was not deleted");
        assert!(!dir.exists(), "{} was not removed", dir.display());
    }
    assert!(Path::new("/run/netns").join(&hub).exists());
    drop(network);
    assert!(!Path::new("/run/netns").join(&hub).exists(), "the hub {hub} was not deleted");
}

/// Calls `attempt` until it succeeds or `within` has passed (a service just started inside a node may
/// not listen yet).
fn retry<T>(within: Duration, mut attempt: impl FnMut() -> anyhow::Result<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match attempt() {
            Ok(value) => return value,
            Err(e) if Instant::now() >= deadline => panic!("still failing after {within:?}: {e:#}"),
            Err(_) => std::thread::sleep(Duration::from_millis(200)),
        }
    }
}
