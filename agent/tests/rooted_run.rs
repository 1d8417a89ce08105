//! Rooted runs of the bundled examples: golden files for everything written (paths, modes, contents), a
//! second run that changes nothing, a dry run that touches nothing, and nothing written outside the root.
//!
//! The examples keep TLS on, so their certs step talks to a loopback Keystone and Magnum certificate API
//! ([`StandInCloud`]); the examples' `auth_url`/`magnum_url` are pointed at it, and put back in the golden
//! text. Keys and certificates differ on every run (fresh keys, a fresh test CA), so the golden files show
//! what openssl reads from them (subject, issuer, SANs, usages, key size) instead of their bytes.
//!
//! Regenerate the golden files on purpose with `HEARTH_BLESS=1 cargo test -p hearth-agent --test rooted_run`
//! and review the diff.

use hearth_tests::golden::{self, Snapshot};
use hearth_tests::StandInCloud;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const AGENT: &str = env!("CARGO_BIN_EXE_hearth-agent");

fn workspace(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(path)
}

/// A tree that looks like a fresh Debian node to the agent.
fn node_tree(hostname: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("etc")).unwrap();
    std::fs::write(dir.path().join("etc/os-release"), "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nID=debian\n")
        .unwrap();
    std::fs::write(dir.path().join("etc/hostname"), format!("{hostname}\n")).unwrap();
    dir
}

fn agent(args: &[&str]) -> Output {
    Command::new(AGENT).args(args).output().unwrap()
}

/// An example config pointed at its own stand-in cloud.
struct Example {
    cloud: StandInCloud,
    config: PathBuf,
    /// The example's own `auth_url` and `magnum_url`, for the golden text.
    urls: [String; 2],
    _dir: tempfile::TempDir,
}

fn example(role: &str) -> Example {
    let original = std::fs::read_to_string(workspace(&format!("examples/node/{role}.json"))).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&original).unwrap();
    let urls = ["auth_url", "magnum_url"].map(|k| config["openstack"][k].as_str().unwrap().to_string());
    let cloud = StandInCloud::for_config(&mut config);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(format!("{role}.json"));
    std::fs::write(&path, serde_json::to_string_pretty(&config).unwrap()).unwrap();
    Example { cloud, config: path, urls, _dir: dir }
}

impl Example {
    /// `text` as if the example's own URLs had been used.
    fn with_example_urls(&self, text: &str) -> String {
        text.replace(&self.cloud.keystone_url, &self.urls[0]).replace(&self.cloud.magnum_url, &self.urls[1])
    }
}

fn run_example(example: &Example, root: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["run", "--config", example.config.to_str().unwrap(), "--root", root.to_str().unwrap()];
    args.extend_from_slice(extra);
    agent(&args)
}

/// The tree under `root`. The agent's state files carry timestamps, so only their presence is compared.
fn snapshot(root: &Path) -> Snapshot {
    let mut tree = golden::snapshot(root);
    for (path, (kind, contents)) in tree.iter_mut() {
        if path.starts_with("/var/lib/hearth/") && kind.starts_with("file") {
            *contents = b"(agent state)".to_vec();
        }
    }
    golden::mark_installed_agent(&mut tree, Path::new(AGENT));
    tree
}

fn render(root: &Path, snapshot: &Snapshot) -> String {
    let mut text = String::new();
    for (path, entry) in snapshot {
        match describe_tls_file(root, path) {
            Some(described) => text.push_str(&format!("== {path} ({})\n{described}", entry.0)),
            None => text.push_str(&golden::render_entry(path, entry)),
        }
    }
    text
}

/// What openssl reads from a generated key or an issued certificate; `None` for other files.
fn describe_tls_file(root: &Path, path: &str) -> Option<String> {
    let name = path.strip_prefix("/etc/kubernetes/certs/").or_else(|| path.strip_prefix("/etc/etcd/certs/"))?;
    let real = root.join(path.trim_start_matches('/'));
    let args: &[&str] = match name {
        // The node's generated keys; the service-account pair comes from the config, shown as it is.
        _ if name.ends_with(".key") && !name.starts_with("service_account") => &["pkey", "-noout", "-text"],
        _ if name.ends_with(".crt") => &[
            "x509",
            "-noout",
            "-subject",
            "-issuer",
            "-ext",
            "subjectAltName,basicConstraints,keyUsage,extendedKeyUsage",
        ],
        _ => return None,
    };
    let out = Command::new("openssl").args(args).arg("-in").arg(&real).output().expect("running openssl");
    assert!(out.status.success(), "openssl {args:?} {path}: {}", String::from_utf8_lossy(&out.stderr));
    let shown = String::from_utf8_lossy(&out.stdout);
    // For a key, only its kind and size: the rest is the key.
    let shown =
        if args[0] == "pkey" { shown.lines().next().unwrap_or_default().to_string() + "\n" } else { shown.into() };
    Some(format!("(openssl's reading)\n{shown}"))
}

fn check_golden(name: &str, actual: &str) {
    hearth_tests::golden::check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name), actual);
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_ok(output: &Output) {
    assert!(output.status.success(), "agent failed: {}\n{}", stdout(output), String::from_utf8_lossy(&output.stderr));
}

/// Paths the examples would write on this machine if the root leaked.
const HOST_PATHS: &[&str] = &[
    "/etc/hearth",
    "/etc/kubernetes/cloud-config",
    "/etc/sysconfig/heat-params",
    "/etc/profile.d/hearth-proxy.sh",
    "/usr/local/share/ca-certificates/openstack-ca.crt",
    "/etc/systemd/system/kubelet.service.d/http-proxy.conf",
    "/var/lib/hearth",
];

fn host_state() -> Vec<Option<std::time::SystemTime>> {
    HOST_PATHS.iter().map(|p| std::fs::symlink_metadata(p).ok().and_then(|m| m.modified().ok())).collect()
}

fn rooted_twice(role: &str, hostname: &str) {
    let before_host = host_state();
    let tree = node_tree(hostname);
    let example = example(role);
    let first = run_example(&example, tree.path(), &[]);
    assert_ok(&first);
    let after_first = snapshot(tree.path());
    check_golden(&format!("{role}.tree"), &example.with_example_urls(&render(tree.path(), &after_first)));

    let second = run_example(&example, tree.path(), &[]);
    assert_ok(&second);
    assert_eq!(snapshot(tree.path()), after_first, "the second run changed the tree");
    let out = stdout(&second);
    assert!(!out.contains(" changed "), "the second run reports changes:\n{out}");
    assert!(out.contains(" 0 changed"), "{out}");

    let status: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tree.path().join("var/lib/hearth/status.json")).unwrap()).unwrap();
    assert_eq!(status["state"], "succeeded");
    assert!(tree.path().join("var/lib/hearth/done").exists());
    let events = std::fs::read_to_string(tree.path().join("var/lib/hearth/events.jsonl")).unwrap();
    assert_eq!(events.lines().filter(|l| l.contains("\"run-end\"")).count(), 2, "one run-end per run");

    let certificates = if role == "master" { 7 } else { 2 };
    assert_eq!(example.cloud.signed().len(), certificates, "every certificate from the first run");
    assert_eq!(host_state(), before_host, "a rooted run touched the machine outside its root");
}

#[test]
fn minion_example_rooted_twice() {
    rooted_twice("minion", "k8s-demo-minion-0");
}

#[test]
fn master_example_rooted_twice() {
    rooted_twice("master", "k8s-demo-master-0");
}

#[test]
fn dry_run_and_plan_change_nothing_and_list_every_action() {
    let tree = node_tree("k8s-demo-master-0");
    // A converged file and a stale one, so the plan has both kinds to tell apart.
    std::fs::create_dir_all(tree.path().join("etc/selinux")).unwrap();
    std::fs::write(tree.path().join("etc/selinux/config"), "SELINUX=enforcing\nSELINUXTYPE=targeted\n").unwrap();
    let before = snapshot(tree.path());

    let master = example("master");
    let root = tree.path().to_str().unwrap();
    let plan = agent(&["plan", "--config", master.config.to_str().unwrap(), "--root", root]);
    assert_ok(&plan);
    let dry = run_example(&master, tree.path(), &["--dry-run"]);
    assert_ok(&dry);
    assert_eq!(snapshot(tree.path()), before, "plan or --dry-run changed the tree");
    assert!(master.cloud.keystone_requests().is_empty() && master.cloud.magnum_requests().is_empty());

    // Every path a real run writes appears in the plan.
    let real = node_tree("k8s-demo-master-0");
    std::fs::create_dir_all(real.path().join("etc/selinux")).unwrap();
    std::fs::write(real.path().join("etc/selinux/config"), "SELINUX=enforcing\nSELINUXTYPE=targeted\n").unwrap();
    assert_ok(&run_example(&master, real.path(), &[]));
    let plan_text = stdout(&plan);
    for (path, (kind, _)) in snapshot(real.path()) {
        if kind.starts_with("file") && !path.starts_with("/var/lib/hearth") && !before.contains_key(&path) {
            assert!(plan_text.contains(&path), "the plan does not mention {path}:\n{plan_text}");
        }
    }
    assert!(plan_text.contains("/etc/selinux/config"), "{plan_text}");
    assert!(plan_text.contains("update-ca-certificates"), "{plan_text}");
    // In the conditional and in words: a plan changes nothing, so no step "changed".
    assert!(
        plan_text.contains(" would change ") && plan_text.contains("file    would change /etc/selinux/config"),
        "{plan_text}"
    );
    assert!(!plan_text.lines().any(|l| l.starts_with('[') && l.contains(" changed ")), "{plan_text}");
    assert!(!plan_text.contains("WouldChange") && !plan_text.contains("NotRun"), "{plan_text}");
}

#[test]
fn steps_lists_every_step_of_a_role() {
    let output = agent(&["steps", "--role", "minion"]);
    assert_ok(&output);
    let text = stdout(&output);
    assert_eq!(text.lines().count(), 13, "{text}");
    assert!(text.lines().next().unwrap().starts_with("part-001  install-ca"), "{text}");
    assert!(text.lines().any(|l| l == "part-006  certs"), "{text}");
    assert!(text.lines().last().unwrap().ends_with("  signal"), "{text}");
    assert_eq!(stdout(&agent(&["steps", "--role", "master"])).lines().count(), 16);
}

#[test]
fn validate_masks_secrets_and_lists_every_error() {
    let config = workspace("examples/node/master.json");
    let output = agent(&["validate", "--config", config.to_str().unwrap()]);
    assert_ok(&output);
    let shown = stdout(&output);
    let example = std::fs::read_to_string(&config).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&example).unwrap();
    for secret in [
        parsed["openstack"]["trustee_password"].as_str().unwrap(),
        parsed["kubernetes"]["service_account_private_key"].as_str().unwrap(),
    ] {
        assert!(!shown.contains(secret), "validate printed a secret");
    }
    assert!(shown.contains("\"trustee_password\": \"********\""), "{shown}");

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    let broken = example.replacen("\"cgroup_driver\": \"systemd\"", "\"cgroup_driver\": \"cgroupv3\"", 1).replacen(
        "\"dns_service_ip\": \"10.254.0.10\"",
        "\"dns_service_ip\": \"10.100.0.10\"",
        1,
    );
    std::fs::write(&bad, broken).unwrap();
    let output = agent(&["validate", "--config", bad.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("2 errors"), "{err}");
    assert!(err.contains("kubernetes.cgroup_driver (CGROUP_DRIVER) = \"cgroupv3\""), "{err}");
    assert!(err.contains("kubernetes.dns_service_ip (DNS_SERVICE_IP) = \"10.100.0.10\""), "{err}");
}

/// What a step would refuse of the config is refused by `validate`, and by `run` before its first step:
/// a config that names no certificate API or trustee never gets as far as writing files or enabling units.
#[test]
fn what_a_step_would_refuse_is_refused_before_any_step_runs() {
    let dir = tempfile::tempdir().unwrap();
    let minimal = dir.path().join("minimal.yaml");
    std::fs::write(&minimal, "version: 1\nrole: minion\n").unwrap();
    let output = agent(&["validate", "--config", minimal.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "{}", stdout(&output));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("2 errors"), "{err}");
    assert!(err.contains("part-006 certs: the certificates cannot be requested without openstack.auth_url"), "{err}");
    assert!(err.contains("part-009 kube-minion: building kubelet's arguments: node.ip (KUBE_NODE_IP)"), "{err}");

    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let output =
        agent(&["run", "--config", minimal.to_str().unwrap(), "--root", root.to_str().unwrap(), "--os", "debian"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("config refused before any step ran: part-006 certs"));
    let mut written: Vec<String> =
        walk(&root).iter().map(|p| p.strip_prefix(&root).unwrap().display().to_string()).collect();
    written.sort();
    assert_eq!(written, ["var/lib/hearth/events.jsonl", "var/lib/hearth/run.lock", "var/lib/hearth/status.json"]);

    // An option with a quote: every master used to fail at kube-master after writing its files.
    let example = std::fs::read_to_string(workspace("examples/node/master.json")).unwrap();
    let mut config: serde_json::Value = serde_json::from_str(&example).unwrap();
    config["kubernetes"]["kubeapi_options"] = serde_json::json!("--audit-log-path=/var/log/kube \"audit\".log");
    let quoted = dir.path().join("quoted.json");
    std::fs::write(&quoted, config.to_string()).unwrap();
    let output = agent(&["validate", "--config", quoted.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(
        err.contains("part-007 kube-master") && err.contains("kubernetes.kubeapi_options (KUBEAPI_OPTIONS)"),
        "{err}"
    );

    // The storage and etcd steps' own refusals: a sized volume without its id, devicemapper under
    // containerd, and a static etcd cluster that does not list this master.
    let mut config: serde_json::Value = serde_json::from_str(&example).unwrap();
    config["runtime"]["volume"] = serde_json::json!({"id": "", "size": 20});
    config["runtime"]["storage_driver"] = serde_json::json!("devicemapper");
    config["etcd"]["members"] = serde_json::json!(["10.0.0.99"]);
    let storage = dir.path().join("storage.json");
    std::fs::write(&storage, config.to_string()).unwrap();
    let output = agent(&["validate", "--config", storage.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("part-004 etcd: etcd.members [10.0.0.99] does not list this master's node.ip"), "{err}");
    assert!(
        err.contains("part-006 docker-storage: runtime.storage_driver (DOCKER_STORAGE_DRIVER) devicemapper"),
        "{err}"
    );
    config["runtime"]["storage_driver"] = serde_json::json!("overlay2");
    std::fs::write(&storage, config.to_string()).unwrap();
    let err = String::from_utf8_lossy(&agent(&["validate", "--config", storage.to_str().unwrap()]).stderr).into_owned();
    assert!(err.contains("part-006 docker-storage: runtime.volume.size (DOCKER_VOLUME_SIZE) is 20 GB"), "{err}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

/// A second run while one converges the node refuses at once and changes nothing; once the first has
/// ended (or died: the kernel drops its lock) the next one runs.
#[test]
fn a_run_refuses_while_another_holds_the_node() {
    let tree = node_tree("k8s-demo-minion-0");
    let lock_path = tree.path().join("var/lib/hearth/run.lock");
    std::fs::create_dir_all(lock_path.parent().unwrap()).unwrap();
    let held = std::fs::File::create(&lock_path).unwrap();
    held.lock().unwrap();
    std::fs::write(&lock_path, "4242\n").unwrap();
    let config = workspace("examples/node/quickstart-minion.yaml");
    let run = || agent(&["run", "--config", config.to_str().unwrap(), "--root", tree.path().to_str().unwrap()]);
    let refused = run();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{stderr}");
    assert!(stderr.contains("another hearth-agent run (pid 4242)") && stderr.contains("changed nothing"), "{stderr}");
    assert!(!tree.path().join("var/lib/hearth/status.json").exists(), "the refused run wrote a status");
    assert!(!tree.path().join("etc/kubernetes").exists(), "the refused run wrote files");
    drop(held);
    let ran = run();
    assert_ok(&ran);
    let last = stdout(&ran).lines().last().unwrap_or_default().to_string();
    assert!(last.ends_with(&format!(" (under {})", tree.path().display())), "the run must say which tree: {last}");
    assert!(std::fs::read_to_string(&lock_path).unwrap().trim().parse::<u32>().is_ok(), "the lock names its holder");
}

/// `status` after a run that died mid-step (killed, the machine stopped) says so and names the step,
/// instead of "Running"; while a run holds the node it names that run's pid.
#[test]
fn status_tells_an_interrupted_run_from_a_running_one() {
    let tree = node_tree("k8s-demo-minion-0");
    let config = workspace("examples/node/quickstart-minion.yaml");
    let root = tree.path().to_str().unwrap();
    assert_ok(&agent(&["run", "--config", config.to_str().unwrap(), "--root", root]));
    // What a run killed inside its certs step leaves: a status still running, the step started.
    let state = tree.path().join("var/lib/hearth");
    let mut status: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(state.join("status.json")).unwrap()).unwrap();
    status["state"] = "running".into();
    std::fs::write(state.join("status.json"), status.to_string()).unwrap();
    let mut events = std::fs::read_to_string(state.join("events.jsonl")).unwrap();
    events.push_str("{\"event\":\"run-start\"}\n{\"event\":\"step-start\",\"part\":6,\"step\":\"certs\"}\n");
    std::fs::write(state.join("events.jsonl"), events).unwrap();

    let interrupted = stdout(&agent(&["status", "--root", root]));
    assert!(interrupted.contains("interrupted in part-006 certs") && interrupted.contains("gone"), "{interrupted}");
    let held = std::fs::File::open(state.join("run.lock")).unwrap();
    held.lock().unwrap();
    std::fs::write(state.join("run.lock"), "4242\n").unwrap();
    let running = stdout(&agent(&["status", "--root", root]));
    assert!(running.contains("running (pid 4242) in part-006 certs"), "{running}");
}

/// Reporting commands piped into `head` stop quietly: no panic on the closed pipe.
#[test]
fn output_into_a_closed_pipe_is_no_panic() {
    for args in [vec!["steps"], vec!["validate", "--config", "examples/node/minion.json"]] {
        // A pipe whose reader is gone before the agent writes its first line.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(AGENT).args(&args).current_dir(workspace("")).stdout(writer).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success() && !stderr.contains("panicked"), "{args:?}: {}\n{stderr}", out.status);
    }
}

#[test]
fn heat_params_examples_validate() {
    for name in ["stein-master", "stein-minion"] {
        let path = workspace(&format!("examples/heat-params/{name}"));
        let output = agent(&["validate", "--heat-params", path.to_str().unwrap()]);
        assert_ok(&output);
        assert!(!stdout(&output).contains("gAAAAAB"), "the wait-condition token leaked");
    }
}

#[test]
fn unsetting_the_proxy_removes_every_file_the_proxy_step_wrote() {
    let tree = node_tree("k8s-demo-minion-0");
    assert_ok(&run_example(&example("minion"), tree.path(), &["--only", "proxy"]));
    let drop_in = tree.path().join("etc/systemd/system/docker.service.d/http-proxy.conf");
    assert!(drop_in.exists() && tree.path().join("etc/hearth/proxy.env").exists());

    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(workspace("examples/node/minion.json")).unwrap()).unwrap();
    config["proxy"] = serde_json::json!({});
    let dir = tempfile::tempdir().unwrap();
    let unset = dir.path().join("minion.json");
    std::fs::write(&unset, config.to_string()).unwrap();
    let run = |config: &Path| {
        let out = agent(&[
            "run",
            "--config",
            config.to_str().unwrap(),
            "--root",
            tree.path().to_str().unwrap(),
            "--only",
            "proxy",
        ]);
        assert_ok(&out);
        stdout(&out)
    };
    let removed = run(&unset);
    assert!(removed.contains("part-010 proxy") && removed.contains(" changed "), "{removed}");
    let left: Vec<String> =
        snapshot(tree.path()).into_keys().filter(|p| p.contains("proxy") && !p.ends_with(".service.d")).collect();
    assert!(left.is_empty(), "proxy files left behind: {left:?}");
    let again = run(&unset);
    assert!(again.contains("skipped") && again.contains("no proxy configured"), "{again}");
}

/// The README's quick-start commands, as written, work on a machine with no cloud at all: quickly, and
/// honestly (the certs step says why it is skipped, the plan says what it would request).
#[test]
fn readme_quick_start_works_without_any_cloud_service() {
    let readme = std::fs::read_to_string(workspace("README.md")).unwrap();
    let section = readme.split("## Quick start").nth(1).unwrap().split("\n## ").next().unwrap();
    let commands: Vec<&str> =
        section.lines().filter_map(|l| l.trim().strip_prefix("cargo run -q -p hearth-agent -- ")).collect();
    assert_eq!(commands.len(), 2, "{section}");
    for command in commands {
        let root = tempfile::tempdir().unwrap();
        let expanded = command.replace("\"$(mktemp -d)\"", &root.path().display().to_string());
        let args: Vec<&str> = expanded.split_whitespace().collect();
        let started = std::time::Instant::now();
        let output = Command::new(AGENT).args(&args).current_dir(workspace("")).output().unwrap();
        assert_ok(&output);
        assert!(started.elapsed().as_secs() < 20, "`{command}` took {:?}", started.elapsed());
        let out = stdout(&output);
        if args[0] == "run" {
            assert!(
                out.contains("part-006 certs") && out.contains("skipped") && out.contains("TLS is disabled"),
                "{out}"
            );
            assert!(root.path().join("etc/kubernetes/cloud-config").exists(), "{out}");
        } else {
            assert!(
                out.contains("request not run      POST http://127.0.0.1:9511/v1/certificates signing kubelet"),
                "{out}"
            );
        }
    }
}

/// `--only` on a converged node keeps the full run's record and the `done` marker (the next boot must
/// not re-run everything because an operator re-ran one step); its own record goes to partial.json and
/// `status` names it. A partial run that fails leaves the node unconverged.
#[test]
fn a_partial_run_never_replaces_the_record_of_a_full_run() {
    let tree = node_tree("k8s-demo-minion-0");
    let example = example("minion");
    assert_ok(&run_example(&example, tree.path(), &[]));
    let state = tree.path().join("var/lib/hearth");
    let full = std::fs::read(state.join("status.json")).unwrap();
    assert!(state.join("done").exists());

    assert_ok(&run_example(&example, tree.path(), &["--only", "node-config"]));
    assert_eq!(std::fs::read(state.join("status.json")).unwrap(), full, "--only replaced status.json");
    assert!(state.join("done").exists(), "--only removed the done marker");
    let partial: serde_json::Value =
        serde_json::from_slice(&std::fs::read(state.join("partial.json")).unwrap()).unwrap();
    assert_eq!(partial["state"], "succeeded");
    assert_eq!(partial["steps"].as_array().unwrap().len(), 1);
    let shown = stdout(&agent(&["status", "--root", tree.path().to_str().unwrap()]));
    assert!(
        shown.contains("since then, a partial run (--only/--from) of part-003 node-config: succeeded in"),
        "{shown}"
    );

    // A failing partial run: the stand-in cloud's Magnum is gone, so certs cannot be fetched.
    let mut config: serde_json::Value = serde_json::from_slice(&std::fs::read(&example.config).unwrap()).unwrap();
    config["openstack"]["magnum_url"] = serde_json::json!("http://127.0.0.1:9/v1");
    config["openstack"]["api_deadline_secs"] = serde_json::json!(1);
    std::fs::write(&example.config, config.to_string()).unwrap();
    std::fs::remove_dir_all(tree.path().join("etc/kubernetes/certs")).unwrap();
    let failed = run_example(&example, tree.path(), &["--only", "certs"]);
    assert_eq!(failed.status.code(), Some(1), "{}", stdout(&failed));
    assert_eq!(std::fs::read(state.join("status.json")).unwrap(), full);
    assert!(!state.join("done").exists(), "a failed step leaves the node unconverged");
}
