//! Proves the booted-node fixture (`hearth_tests::node`): a real Debian bookworm tree with systemd as PID 1
//! under systemd-nspawn, real cloud-init 22.4 consuming a NoCloud seed, and a network made only of
//! namespaces and veth pairs the test creates: nodes at the addresses Heat assigned, forwards that can
//! hold one node's requests, sockets inside a node's own namespace, and the container runtime and etcd
//! the end-to-end tier runs for real.
//!
//! Needs root, systemd-nspawn, nsenter, ip and journalctl, and debootstrap the first time (the cloud
//! tree is then cached: see `hearth_tests::debian_tree`). Figures (tree, PID 1, cloud-init final) are
//! printed to stderr: `cargo test -p hearth-tests --test fixture_node -- --nocapture` shows them.

use hearth_tests::kube_api::KubeApiStandIn;
use hearth_tests::loopback::{Loopback, Reply};
use hearth_tests::node::network::{STANDIN_GATEWAY, STANDIN_PREFIX_LEN};
use hearth_tests::node::{self, Netns, Network, Node, NodeOptions, TreeFile, GATEWAY};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
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

/// A loopback HTTP server that answers every request with `answer` and records what it saw.
fn answering(answer: &str) -> Loopback {
    Loopback::script([Reply::text(200, answer)])
}

/// The same, listening in the hub of `network`, on the host end of its veth pairs.
fn answering_in_hub(network: &Network, answer: &str) -> Loopback {
    Loopback::builder().on(network.listen(0).unwrap()).script([Reply::text(200, answer)]).unwrap()
}

#[test]
fn a_node_reaches_the_tests_http_servers_over_its_veth_and_nothing_else() {
    let network = Network::new().unwrap();
    // A service on this machine's loopback (where Heat and hearth-server listen), forwarded into the hub.
    let loopback = answering("hello from the loopback service\n");
    let forwarded = network.forward(SocketAddr::from(([127, 0, 0, 1], loopback.port()))).unwrap();
    assert_eq!(forwarded.ip(), IpAddr::V4(GATEWAY));
    // A server listening in the hub itself, on the host end of the veth pairs: it sees the node's address.
    let in_hub = answering_in_hub(&network, "hello from the hub\n");
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
    let seen = loopback.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!(seen[0].url, "/during-boot?from=curl-node");
    assert!(seen[0].header("User-Agent").unwrap_or_default().starts_with("curl/"), "{seen:?}");

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
    let seen = in_hub.requests();
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert_eq!((seen[0].method.as_str(), seen[0].url.as_str(), seen[0].body.as_str()), ("POST", "/direct", "ping"));
    assert_eq!(seen[0].from.map(|from| from.ip()), Some(IpAddr::V4(node.address())));

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
    assert_eq!(loopback.requests().len(), 1, "nothing else reached the loopback service");
}

fn in_hub_addr(server: &Loopback) -> SocketAddr {
    SocketAddr::from((GATEWAY, server.port()))
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

/// Waits until `condition` holds or `within` has passed; false on timeout.
fn eventually(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA and the server (127.0.0.1) and client certificates it signed, PEM, with their keys.
struct Pki {
    ca: String,
    server: (String, String),
    client: (String, String),
}

fn pki() -> Pki {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(DnType::CommonName, "fixture-node CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = ca_params.self_signed(&ca_key).unwrap().pem();
    let issuer = Issuer::new(ca_params, ca_key);
    let issue = |names: Vec<String>, common_name: &str| {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params.distinguished_name.push(DnType::CommonName, common_name);
        (params.signed_by(&key, &issuer).unwrap().pem(), key.serialize_pem())
    };
    Pki { ca, server: issue(vec!["127.0.0.1".into()], "kube-apiserver"), client: issue(vec![], "kubernetes") }
}

/// The node's IPv4 address and prefix on eth0, and its IPv4 routes, as `ip` inside the node shows them.
fn addresses_and_routes(node: &Node) -> (Vec<String>, Vec<String>) {
    let addresses = node.run_ok(&["ip", "-4", "-o", "addr", "show", "dev", "eth0"]).unwrap();
    let addresses = addresses
        .lines()
        .filter_map(|line| line.split_whitespace().skip_while(|word| *word != "inet").nth(1).map(str::to_string))
        .collect();
    let routes = node.run_ok(&["ip", "-4", "route", "show"]).unwrap();
    (addresses, routes.lines().map(|line| line.trim().to_string()).collect())
}

#[test]
fn a_node_takes_the_address_heat_assigned_and_serves_its_own_loopback_across_a_reboot() {
    // The segment of the Heat stand-ins' fixed addresses, and one such address (10.0.1xx.1yy).
    let network = Network::with_segment(STANDIN_GATEWAY, STANDIN_PREFIX_LEN).unwrap();
    assert_eq!(network.gateway(), STANDIN_GATEWAY);
    let heat_address = Ipv4Addr::new(10, 0, 123, 145);

    // What attach_at refuses, and what attach hands out, on namespaces alone.
    let spare = [Netns::create().unwrap(), Netns::create().unwrap(), Netns::create().unwrap()];
    let outside = network.attach_at(&spare[0], Ipv4Addr::new(10, 1, 0, 5)).unwrap_err();
    assert!(format!("{outside:#}").contains("outside the segment 10.0.0.0/16"), "{outside:#}");
    let gateway = network.attach_at(&spare[0], STANDIN_GATEWAY).unwrap_err();
    assert!(format!("{gateway:#}").contains("is the gateway"), "{gateway:#}");
    assert_eq!(network.attach_at(&spare[0], Ipv4Addr::new(10, 0, 0, 2)).unwrap(), Ipv4Addr::new(10, 0, 0, 2));
    // The automatic address skips the one taken by hand.
    assert_eq!(network.attach(&spare[1]).unwrap(), Ipv4Addr::new(10, 0, 0, 3));

    // The stand-in for a program the image cannot run, answering inside the node at its own loopback,
    // with a CA whose certificates the node holds.
    let pki = pki();
    let files = [
        ("/etc/proof/ca.crt", &pki.ca, 0o644),
        ("/etc/proof/client.crt", &pki.client.0, 0o644),
        ("/etc/proof/client.key", &pki.client.1, 0o600),
    ]
    .map(|(path, contents, mode)| TreeFile { path: path.into(), contents: contents.as_bytes().to_vec(), mode });
    let mut options = NodeOptions::new("heat-addressed").on(&network).at(heat_address);
    options.files = files.to_vec();
    let mut node = Node::boot("#cloud-config\n{}\n", options).unwrap();
    let taken = network.attach_at(&spare[2], heat_address).unwrap_err();
    assert!(format!("{taken:#}").contains("another node"), "{taken:#}");

    let api = KubeApiStandIn::start_on(
        node.listen("127.0.0.1:6443".parse().unwrap()).unwrap(),
        &pki.ca,
        &pki.server.0,
        &pki.server.1,
        &pki.client.0,
    )
    .unwrap();
    assert_eq!(api.url, "https://127.0.0.1:6443");
    // Something else of this machine's loopback: never reached by the node's 127.0.0.1.
    let loopback = answering("this machine\n");
    let forwarded = network.forward(SocketAddr::from(([127, 0, 0, 1], loopback.port()))).unwrap();
    assert_eq!(forwarded, SocketAddr::from((STANDIN_GATEWAY, loopback.port())));
    let in_hub = answering_in_hub(&network, "hub\n");
    let hub_url = format!("http://{STANDIN_GATEWAY}:{}/who", in_hub.port());

    for boot in 1..=2 {
        let result = node.wait_for_cloud_init(BOOT_TIMEOUT).unwrap();
        report(&node, "cloud-init final", result.after);
        assert_cloud_init_clean(&node, &result);
        assert_eq!(node.boots(), boot);
        // Exactly the address Heat reported, in the stand-ins' segment, routed through its gateway.
        assert_eq!(node.address(), heat_address);
        let (addresses, routes) = addresses_and_routes(&node);
        assert_eq!(addresses, ["10.0.123.145/16"], "boot {boot}");
        assert!(routes.contains(&"default via 10.0.0.1 dev eth0".to_string()), "{routes:?}");
        assert!(routes.iter().any(|r| r.starts_with("10.0.0.0/16 dev eth0")), "{routes:?}");
        assert_eq!(node.read("/etc/hosts").unwrap().lines().nth(3), Some("10.0.0.1 hearth-gateway"));
        // Its peers see that address.
        assert_eq!(node.run_ok(&["curl", "-fsS", "--max-time", "30", &hub_url]).unwrap(), "hub\n");
        assert_eq!(in_hub.requests().last().unwrap().from.map(|from| from.ip()), Some(IpAddr::V4(heat_address)));
        assert_eq!(
            node.run_ok(&["curl", "-fsS", "--max-time", "30", &format!("http://{forwarded}/")]).unwrap(),
            "this machine\n"
        );

        // The node's own 127.0.0.1:6443 is the stand-in, in TLS, with the client certificate checked.
        let healthz = node
            .run_ok(&[
                "curl",
                "-sS",
                "--max-time",
                "30",
                "--cacert",
                "/etc/proof/ca.crt",
                "--cert",
                "/etc/proof/client.crt",
                "--key",
                "/etc/proof/client.key",
                "https://127.0.0.1:6443/healthz",
            ])
            .unwrap();
        assert_eq!(healthz, "ok", "boot {boot}");
        let anonymous = node
            .run_ok(&[
                "curl",
                "-sS",
                "--max-time",
                "30",
                "--cacert",
                "/etc/proof/ca.crt",
                "https://127.0.0.1:6443/version",
            ])
            .unwrap();
        assert!(anonymous.contains("\"code\":401"), "{anonymous}");
        assert_eq!(api.requests().len(), 2 * boot as usize);
        assert!(api.requests().iter().all(|r| r.path == "/healthz" || r.path == "/version"));

        if boot == 1 {
            node.reboot(SHUTDOWN_TIMEOUT).unwrap();
        }
    }
    assert_eq!(loopback.requests().len(), 2, "only the forwarded requests reached this machine's service");
}

/// The relay threads of this process for connections from `node` (their names are cut to 15 bytes).
fn relay_threads(node: Ipv4Addr) -> usize {
    let name = format!("relay {node}");
    let name = &name[..name.len().min(15)];
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .flatten()
        .filter(|task| std::fs::read_to_string(task.path().join("comm")).is_ok_and(|comm| comm.trim_end() == name))
        .count()
}

#[test]
fn a_held_forward_keeps_one_nodes_requests_waiting_until_released_and_lets_a_killed_nodes_go() {
    // A segment of its own, so the relay threads' names tell this test's nodes apart.
    let network = Network::with_segment(Ipv4Addr::new(10, 77, 0, 1), 24).unwrap();
    let (slow, other) = (Ipv4Addr::new(10, 77, 0, 5), Ipv4Addr::new(10, 77, 0, 6));
    let service = answering("answered\n");
    let forwarded = network.forward(SocketAddr::from(([127, 0, 0, 1], service.port()))).unwrap();
    let url = |path: &str| format!("http://{forwarded}/{path}");
    let paths = || service.requests().into_iter().map(|seen| seen.url).collect::<Vec<_>>();
    let (slow_node, other_node) = std::thread::scope(|scope| {
        let booting = scope.spawn(|| Node::boot("#cloud-config\n{}\n", NodeOptions::new("slow").on(&network).at(slow)));
        let other_node = Node::boot("#cloud-config\n{}\n", NodeOptions::new("other").on(&network).at(other)).unwrap();
        (booting.join().unwrap().unwrap(), other_node)
    });

    // Held: the slow node's request is accepted and waits; the other node's goes through meanwhile.
    network.hold(forwarded, slow);
    let held_since = Instant::now();
    std::thread::scope(|scope| {
        let waiting = scope.spawn(|| slow_node.run(&["curl", "-sS", "--max-time", "60", &url("held")]).unwrap());
        assert!(
            eventually(Duration::from_secs(60), || network.held_connections(forwarded, slow) == 1),
            "the slow node's request never reached the forward"
        );
        assert_eq!(network.held_connections(forwarded, other), 0);
        assert_eq!(other_node.run_ok(&["curl", "-fsS", "--max-time", "30", &url("meanwhile")]).unwrap(), "answered\n");
        std::thread::sleep(Duration::from_millis(500));
        assert_eq!(paths(), ["/meanwhile"], "a held request reached the service");
        assert_eq!(network.held_connections(forwarded, slow), 1);
        assert!(!waiting.is_finished(), "the slow node's curl returned while held");

        network.release(forwarded, slow);
        let out = waiting.join().unwrap();
        assert!(out.status.success(), "{out:?}");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "answered\n");
        eprintln!("held request answered {:.2} s after the hold began", held_since.elapsed().as_secs_f64());
    });
    assert_eq!(paths(), ["/meanwhile", "/held"]);
    assert_eq!(network.held_connections(forwarded, slow), 0);
    // Released: its next request is relayed at once.
    assert_eq!(slow_node.run_ok(&["curl", "-fsS", "--max-time", "30", &url("after")]).unwrap(), "answered\n");

    // A node that gives up while held: its connection is closed, never relayed, even once released.
    network.hold(forwarded, slow);
    let out = slow_node.run(&["curl", "-sS", "--max-time", "2", &url("gave-up")]).unwrap();
    assert_eq!(out.status.code(), Some(28), "curl should time out while held: {out:?}");
    assert!(
        eventually(Duration::from_secs(10), || network.held_connections(forwarded, slow) == 0),
        "the connection of a curl that gave up is still held"
    );

    // A node killed while its request is held: nothing of it is relayed, no thread of it stays.
    slow_node
        .run_ok(&["systemd-run", "--unit=held-curl", "curl", "-sS", "--max-time", "300", &url("from-the-dead")])
        .unwrap();
    assert!(
        eventually(Duration::from_secs(60), || network.held_connections(forwarded, slow) == 1),
        "the request of the node about to be killed never reached the forward"
    );
    let bridge_mac = || {
        let out = std::process::Command::new("ip")
            .args(["-n", network.hub_name(), "-brief", "link", "show", "br0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).split_whitespace().nth(2).unwrap_or_default().to_string()
    };
    let mac_before = bridge_mac();
    drop(slow_node);
    // The gateway's MAC did not move with the port that went (the other node's ARP entry stays right).
    assert_eq!(bridge_mac(), mac_before);
    network.release(forwarded, slow);
    assert!(
        eventually(Duration::from_secs(10), || network.held_connections(forwarded, slow) == 0
            && relay_threads(slow) == 0),
        "{} connections and {} relay threads of the killed node remain",
        network.held_connections(forwarded, slow),
        relay_threads(slow)
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(paths(), ["/meanwhile", "/held", "/after"]);
    // The forward itself goes on serving.
    assert_eq!(other_node.run_ok(&["curl", "-fsS", "--max-time", "30", &url("still")]).unwrap(), "answered\n");
    assert_eq!(paths(), ["/meanwhile", "/held", "/after", "/still"]);
}

#[test]
fn a_booted_node_has_containerd_runc_and_etcd_and_starts_none_until_asked() {
    let node = Node::boot("#cloud-config\n{}\n", NodeOptions::new("runtime")).unwrap();
    let result = node.wait_for_cloud_init(BOOT_TIMEOUT).unwrap();
    report(&node, "cloud-init final", result.after);
    assert_cloud_init_clean(&node, &result);
    let tree_size = std::process::Command::new("du").args(["-sm"]).arg(node::cloud_tree().unwrap()).output().unwrap();
    eprintln!(
        "  cloud tree: {} MB on disk",
        String::from_utf8_lossy(&tree_size.stdout).split_whitespace().next().unwrap()
    );

    // The programs, from Debian's packages, in the versions the end-to-end tier expects.
    // (Debian ships runc in /usr/sbin, linked from /usr/bin; containerd finds it on its PATH.)
    for program in ["/usr/bin/etcd", "/usr/bin/containerd", "/usr/bin/ctr", "/usr/sbin/runc", "/usr/bin/runc"] {
        node.run_ok(&["test", "-x", program]).unwrap_or_else(|e| panic!("{program}: {e:#}"));
    }
    assert_eq!(node.run_ok(&["sh", "-c", "command -v runc"]).unwrap().trim(), "/usr/sbin/runc");
    assert!(node.run_ok(&["etcd", "--version"]).unwrap().contains("etcd Version: 3.4."));
    assert!(node.run_ok(&["containerd", "--version"]).unwrap().contains(" 1.6."));
    assert!(node.run_ok(&["runc", "--version"]).unwrap().starts_with("runc version 1.1."));

    // Booted to the end, yet neither is enabled, active or running: the agent starts them.
    for unit in ["etcd.service", "containerd.service"] {
        let enabled = node.run(&["systemctl", "is-enabled", unit]).unwrap();
        assert_eq!(String::from_utf8_lossy(&enabled.stdout).trim(), "disabled", "{unit}: {enabled:?}");
        let active = node.run(&["systemctl", "is-active", unit]).unwrap();
        assert_eq!(String::from_utf8_lossy(&active.stdout).trim(), "inactive", "{unit}: {active:?}");
    }
    let aliases = node.run(&["systemctl", "is-enabled", "etcd2.service"]).unwrap();
    assert!(!aliases.status.success(), "etcd's alias is still installed: {aliases:?}");
    for process in ["etcd", "containerd"] {
        assert_eq!(node.run(&["pgrep", "-x", process]).unwrap().status.code(), Some(1), "{process} runs");
    }
    let journal = node.journal_with(&["--boot=0", "--unit=etcd.service", "--unit=containerd.service"]).unwrap();
    assert!(journal.trim().is_empty(), "{journal}");

    // Started by hand, as the agent's services step will: the real containerd runs in the node.
    let starting = Instant::now();
    node.run_ok(&["systemctl", "start", "containerd.service"])
        .unwrap_or_else(|e| panic!("{e:#}\n{}", node.journal_with(&["--unit=containerd.service"]).unwrap_or_default()));
    let took = starting.elapsed();
    eprintln!("  systemctl start containerd: active after {:.2} s", took.as_secs_f64());
    assert_eq!(node.run_ok(&["systemctl", "is-active", "containerd.service"]).unwrap().trim(), "active");
    node.run_ok(&["pgrep", "-x", "containerd"]).unwrap();
    // ctr talks to the daemon over its socket: the server answers with its own version.
    let version = node.run_ok(&["ctr", "version"]).unwrap();
    let server = version.split("Server:").nth(1).unwrap_or_else(|| panic!("no server in {version}"));
    assert!(server.contains("Version:  1.6."), "{version}");
    let namespaces = node.run_ok(&["ctr", "namespaces", "list"]).unwrap();
    assert!(namespaces.starts_with("NAME"), "{namespaces}");
    // The plugins a kubelet goes through loaded: CRI and the runc task runtime.
    let plugins = node.run_ok(&["ctr", "plugins", "ls"]).unwrap();
    let status = |id: &str| {
        plugins
            .lines()
            .find(|line| line.split_whitespace().nth(1) == Some(id))
            .and_then(|line| line.split_whitespace().last())
    };
    assert_eq!((status("cri"), status("task")), (Some("ok"), Some("ok")), "{plugins}");
    eprintln!("  containerd's overlayfs snapshotter in the node: {}", status("overlayfs").unwrap_or("absent"));
    // etcd still is not running: nothing started it.
    assert_eq!(node.run(&["pgrep", "-x", "etcd"]).unwrap().status.code(), Some(1));
}
