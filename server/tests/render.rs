//! `hearth-server render` of the bundled examples: golden bundles, file modes, the environment file that
//! `openstack stack create -e` reads, and every value arriving in the node config exactly as written.
//! Regenerate the golden files with `HEARTH_BLESS=1 cargo test -p hearth-server --test render`.

use base64::Engine as _;
use hearth_fragments::config::{native, NodeConfig, Role};
use hearth_server::bundle::{self, Bundle, RenderError};
use hearth_server::model::{self, Cluster, ClusterTemplate};
use hearth_server::params;
use hearth_server::settings::Loaded;
use hearth_server::user_data::{self, placeholders, Format};
use serde_json::Value;
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");
/// The most base64 a bundled example's user-data may reach once Heat has filled in worst-case values:
/// a tripwire just above what they measure (7,836 at most, Fedora CoreOS master). Issue 16's goal of
/// 4,096 is out of reach while the node config carries its keys, CA and trustee credentials itself:
/// compressed, they alone cost more than half of it in Nova's base64 (see README, "User-data").
const USER_DATA_BUDGET: usize = 8_000;

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples")
}

const VARIANTS: &[(&str, &str, &str)] = &[
    ("debian", "cluster-template.yaml", "cluster.yaml"),
    ("fedora-coreos", "cluster-template-fedora-coreos.yaml", "cluster-fedora-coreos.yaml"),
    ("ha", "cluster-template-ha.yaml", "cluster-ha.yaml"),
];

fn load(template: &str, cluster: &str) -> (ClusterTemplate, Cluster, Loaded) {
    let dir = examples_dir();
    (
        model::load(&dir.join(template)).unwrap(),
        model::load(&dir.join(cluster)).unwrap(),
        Loaded::load(&dir.join("settings.yaml")).unwrap(),
    )
}

#[test]
fn bundles_match_their_golden_files_and_keep_secrets_private() {
    for (name, template, cluster) in VARIANTS {
        let out = tempfile::tempdir().unwrap();
        let dir = examples_dir();
        let run = Command::new(SERVER)
            .args(["render", "--settings"])
            .arg(dir.join("settings.yaml"))
            .arg("--cluster-template")
            .arg(dir.join(template))
            .arg("--cluster")
            .arg(dir.join(cluster))
            .arg("--out")
            .arg(out.path())
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(run.status.success(), "{name}: {}", String::from_utf8_lossy(&run.stderr));
        assert!(stdout.contains("user-data") && stdout.contains("openstack stack create"), "{stdout}");
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden").join(name);
        for (file, mode, source) in [
            ("cluster.yaml", 0o644, bundle::CLUSTER_TEMPLATE),
            ("master.yaml", 0o644, bundle::MASTER_TEMPLATE),
            ("minion.yaml", 0o644, bundle::MINION_TEMPLATE),
            ("master_port.yaml", 0o644, bundle::MASTER_PORT_TEMPLATE),
        ] {
            let path = out.path().join(file);
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, mode, "{name}/{file}");
            assert_eq!(std::fs::read_to_string(&path).unwrap(), source, "{name}/{file}");
        }
        for file in ["environment.yaml", "stack.json"] {
            let path = out.path().join(file);
            assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600, "{name}/{file}");
            let got = std::fs::read_to_string(&path).unwrap();
            hearth_tests::golden::check(&golden.join(file), &got);
        }
        // The environment file and the API body carry the same parameters.
        let env: Value =
            serde_yaml::from_str(&std::fs::read_to_string(out.path().join("environment.yaml")).unwrap()).unwrap();
        let body: Value =
            serde_json::from_str(&std::fs::read_to_string(out.path().join("stack.json")).unwrap()).unwrap();
        assert_eq!(env, body["environment"], "{name}");
        assert_eq!(body["template"].as_str().unwrap(), bundle::CLUSTER_TEMPLATE);
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys, ["environment", "files", "parameters", "stack_name", "template", "timeout_mins"]);
    }
}

/// Values as Heat would substitute them for one node.
fn heat_values(role: Role) -> Vec<(&'static str, String)> {
    placeholders(role)
        .into_iter()
        .map(|h| {
            let value = match h.name {
                "node_ip" => "10.0.0.5",
                "node_public_ip" => "",
                "instance_name" => "demo-abc-minion-1",
                "master_index" => "0",
                "api_public_address" => "172.24.4.7",
                "api_private_address" | "kube_master_ip" | "etcd_server_ip" => "10.0.0.4",
                "etcd_lb_vip" => "",
                "docker_volume" => "0f6b6c0e-3d5b-4a4e-8f2a-2c1d0e9b8a76",
                "etcd_volume" => "",
                "master_addresses" => "10.0.0.4,10.0.0.6",
                "cluster_subnet" => "6f0c2a1e-6b1d-4e34-9e2f-0b8f7f1d2c3a",
                "wait_endpoint" => "http://127.0.0.1:8004/v1/admin/stacks/s/1/resources/wait_handle/signal",
                "wait_token" => "gAAAAB-tok_en=",
                other => panic!("a placeholder the test does not know: {other}"),
            };
            (h.name, value.to_string())
        })
        .collect()
}

fn substitute(text: &str, values: &[(&str, String)]) -> String {
    let filled = values.iter().fold(text.to_string(), |t, (name, v)| t.replace(&format!("@@{name}@@"), v));
    assert!(!filled.contains("@@"), "a placeholder was left: {filled}");
    filled
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            out.push(u8::from_str_radix(&text[i + 1..i + 3], 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    out
}

/// The files the user-data writes, by path, read as a YAML parser / Ignition would.
fn files_of(user_data: &str, format: Format) -> Vec<(String, Vec<u8>, u32)> {
    match format {
        Format::CloudInit => {
            assert!(user_data.starts_with("#cloud-config\n"));
            let doc: serde_yaml::Value = serde_yaml::from_str(user_data).unwrap();
            doc["write_files"]
                .as_sequence()
                .unwrap()
                .iter()
                .map(|f| {
                    let content = f["content"].as_str().unwrap();
                    let data = match f["encoding"].as_str() {
                        Some("gz+b64") => {
                            let zipped = base64::engine::general_purpose::STANDARD.decode(content).unwrap();
                            let mut out = Vec::new();
                            flate2::read::GzDecoder::new(&zipped[..]).read_to_end(&mut out).unwrap();
                            out
                        }
                        None => content.as_bytes().to_vec(),
                        other => panic!("encoding {other:?}"),
                    };
                    let mode = u32::from_str_radix(f["permissions"].as_str().unwrap(), 8).unwrap();
                    (f["path"].as_str().unwrap().to_string(), data, mode)
                })
                .collect()
        }
        Format::Ignition => {
            let doc: Value = serde_json::from_str(user_data).unwrap();
            assert_eq!(doc["ignition"]["version"], "3.3.0");
            doc["storage"]["files"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| {
                    let source = f["contents"]["source"].as_str().unwrap();
                    let data = if let Some(encoded) = source.strip_prefix("data:,") {
                        percent_decode(encoded)
                    } else if let Some(encoded) = source.strip_prefix("data:;base64,") {
                        base64::engine::general_purpose::STANDARD.decode(encoded).unwrap()
                    } else {
                        panic!("Ignition would fetch {source}: the bootstrap fetches, never Ignition")
                    };
                    let data = match f["contents"]["compression"].as_str() {
                        Some("gzip") => {
                            let mut out = Vec::new();
                            flate2::read::GzDecoder::new(&data[..]).read_to_end(&mut out).unwrap();
                            out
                        }
                        None => data,
                        other => panic!("compression {other:?}"),
                    };
                    (f["path"].as_str().unwrap().to_string(), data, f["mode"].as_u64().unwrap() as u32)
                })
                .collect()
        }
    }
}

/// The node config the node reads after Heat's substitution, and what it must equal.
fn recovered_and_expected(
    bundle: &Bundle,
    role: Role,
    t: &ClusterTemplate,
    c: &Cluster,
    s: &Loaded,
) -> (NodeConfig, NodeConfig) {
    let data = if role == Role::Master { &bundle.master } else { &bundle.minion };
    let values = heat_values(role);
    let filled = substitute(&data.text, &values);
    let files = files_of(&filled, bundle.format);
    let file = |path: &str| {
        let (_, text, mode) = files.iter().find(|(p, _, _)| p == path).unwrap_or_else(|| panic!("{path} is written"));
        assert_eq!(*mode, 0o600, "{path}");
        String::from_utf8(text.clone()).unwrap()
    };
    let merged = native::with_values(&file(user_data::NODE_CONFIG), &file(user_data::NODE_VALUES), "values").unwrap();
    let recovered = native::parse(&merged, "user-data", Some(role)).unwrap();
    let magnum = params::magnum_parameters(t, c, s);
    let mut expected = params::node_config(role, t, c, s, &magnum).unwrap();
    let get = |n: &str| values.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone()).unwrap_or_default();
    let ip = |n: &str| get(n).parse().ok();
    expected.node.ip = ip("node_ip");
    expected.node.public_ip = ip("node_public_ip");
    expected.node.instance_name = get("instance_name");
    expected.runtime.volume.id = get("docker_volume");
    expected.openstack.cluster_subnet = get("cluster_subnet");
    expected.signal.endpoint = get("wait_endpoint");
    expected.signal.token = hearth_fragments::config::Secret::new(get("wait_token"));
    if role == Role::Master {
        expected.node.master_index = Some(0);
        expected.api.public_address = ip("api_public_address");
        expected.api.private_address = ip("api_private_address");
        expected.etcd.lb_vip = ip("etcd_lb_vip");
        expected.etcd.volume.id = get("etcd_volume");
        expected.etcd.members = vec!["10.0.0.4".parse().unwrap(), "10.0.0.6".parse().unwrap()];
    } else {
        expected.api.master_ip = ip("kube_master_ip");
        expected.etcd.server_ip = ip("etcd_server_ip");
    }
    (recovered, expected)
}

const HOSTILE: &str = "q\"uo'te $HOME %s %% \\back\\slash\nnew line \u{e9}\u{1f680} @@wait_token@@ `id` ${x}";
/// What of [`HOSTILE`] a command line can carry: no `"`, `\`, backtick or control character, which the
/// components' sysconfig files cannot hold and the node refuses.
const HOSTILE_OPTIONS: &str = "q'uo'te $HOME %s %% \u{e9}\u{1f680} @@wait_token@@ ${x}";

#[test]
fn every_value_reaches_the_node_config_unchanged_even_hostile_ones() {
    for (name, template, cluster) in VARIANTS {
        let (mut t, mut c, mut s) = load(template, cluster);
        let bundle = bundle::render(&t, &c, &s).unwrap();
        for role in [Role::Master, Role::Minion] {
            let (recovered, expected) = recovered_and_expected(&bundle, role, &t, &c, &s);
            assert_eq!(recovered, expected, "{name} {role}");
        }
        // Now with hostile characters wherever the operator writes free text.
        let labels = c.labels.get_or_insert_with(|| t.labels.clone());
        for label in ["kubelet_options", "kubeapi_options", "kubeproxy_options", "admission_control_list"] {
            labels.insert(label.into(), HOSTILE_OPTIONS.into());
        }
        t.no_proxy = Some("example.internal,.svc,p\u{e9}@@node_ip@@".into());
        t.http_proxy = Some("http://user:p%40ss'w$rd@127.0.0.1:3128".into());
        s.settings.trustee.password = hearth_fragments::config::Secret::new(HOSTILE);
        s.settings.username = HOSTILE.into();
        let bundle = bundle::render(&t, &c, &s).unwrap();
        for role in [Role::Master, Role::Minion] {
            let (recovered, expected) = recovered_and_expected(&bundle, role, &t, &c, &s);
            assert_eq!(recovered, expected, "{name} {role} with hostile values");
            assert_eq!(recovered.openstack.trustee_password.expose(), HOSTILE);
            assert_eq!(recovered.kubernetes.kubelet_options, HOSTILE_OPTIONS);
            assert_eq!(recovered.proxy.http_proxy, "http://user:p%40ss'w$rd@127.0.0.1:3128");
        }
    }
}

/// An option the node would refuse (a quote, backslash, backtick or control character in a command line)
/// is refused at render, naming the label, instead of every master signalling FAILURE at kube-master.
#[test]
fn options_the_node_would_refuse_are_refused_at_render_time() {
    for bad in ["--audit-log-path=/var/log/kube \"audit\".log", "--v=2\\", "--v=`id`", "--v=2\u{1b}[0m"] {
        let (mut t, c, s) = load("cluster-template.yaml", "cluster.yaml");
        t.labels.insert("kubeapi_options".into(), bad.into());
        let Err(RenderError::Invalid(errors)) = bundle::render(&t, &c, &s) else {
            panic!("{bad:?} rendered");
        };
        assert!(
            errors.iter().any(|e| e.field == "master node config"
                && e.reason.contains("part-007 kube-master")
                && e.reason.contains("kubernetes.kubeapi_options (KUBEAPI_OPTIONS)")),
            "{bad:?}: {errors:?}"
        );
    }
}

/// Both formats carry the same bootstrap (valid shell, the agent's source and its unit) and Ignition
/// runs it from a unit of its own, so every OS family signals an agent that cannot start.
#[test]
fn both_formats_carry_the_same_bootstrap_valid_shell_with_the_agent_source_and_unit() {
    let mut scripts = Vec::new();
    for (template, cluster, format) in [
        ("cluster-template.yaml", "cluster.yaml", Format::CloudInit),
        ("cluster-template-fedora-coreos.yaml", "cluster-fedora-coreos.yaml", Format::Ignition),
    ] {
        let (t, c, s) = load(template, cluster);
        let bundle = bundle::render(&t, &c, &s).unwrap();
        assert_eq!(bundle.format, format);
        let files = files_of(&substitute(&bundle.minion.text, &heat_values(Role::Minion)), format);
        let (_, script, mode) = files.iter().find(|(p, _, _)| p == user_data::BOOTSTRAP).unwrap();
        assert_eq!(*mode, 0o700);
        let script = String::from_utf8(script.clone()).unwrap();
        assert!(script.contains(&s.settings.agent.url) && script.contains(&s.settings.agent.sha256), "{script}");
        assert!(script.starts_with("#!/bin/sh\n") && !script.lines().skip(1).any(|l| l.starts_with('#')), "{script}");
        let path = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(path.path(), &script).unwrap();
        let check = Command::new("sh").arg("-n").arg(path.path()).output().unwrap();
        assert!(check.status.success(), "sh -n: {}", String::from_utf8_lossy(&check.stderr));
        assert!(script.contains(&user_data::agent_unit(&s)), "the agent's unit, whole: {script}");
        scripts.push(
            user_data::bootstrap_script(
                &params::node_config(Role::Minion, &t, &c, &s, &params::magnum_parameters(&t, &c, &s)).unwrap(),
                &s,
            )
            .unwrap(),
        );
        if format == Format::Ignition {
            let doc: Value = serde_json::from_str(&bundle.minion.text).unwrap();
            let units = doc["systemd"]["units"].as_array().unwrap();
            assert_eq!(units.len(), 1, "{units:?}");
            assert_eq!(units[0]["name"], user_data::BOOTSTRAP_UNIT);
            assert_eq!(units[0]["enabled"], true);
            assert_eq!(units[0]["contents"], user_data::bootstrap_unit());
        }
    }
    // The same template for both: only the values differ (the examples' settings are the same).
    let strip = |s: &str| s.lines().filter(|l| !l.contains("_proxy='")).collect::<Vec<_>>().join("\n");
    assert_eq!(strip(&scripts[0]), strip(&scripts[1]));
}

/// The size of each user-data the bundled examples render, in both formats and both roles, as render
/// prints it: base64 as rendered (what Heat is given) and once Heat has filled in the worst-case values
/// (what Nova receives, at most).
#[test]
fn user_data_sizes_are_printed_and_within_budget() {
    for (name, template, cluster) in VARIANTS {
        let (t, c, s) = load(template, cluster);
        let bundle = bundle::render(&t, &c, &s).unwrap();
        let summary = bundle.summary(Path::new("out"));
        for (role, data) in [("master", &bundle.master), ("minion", &bundle.minion)] {
            let b64 = base64::engine::general_purpose::STANDARD.encode(data.text.as_bytes()).len();
            assert_eq!(data.base64, b64, "{name} {role}");
            let filled = user_data::fill(
                &data.text,
                &placeholders(if role == "master" { Role::Master } else { Role::Minion }),
                |_| String::new(),
            );
            assert!(!filled.contains("@@"), "{name} {role}");
            let line = format!(
                "{role} user-data: {} bytes in base64 as rendered, {} once Heat fills",
                data.base64, data.filled_base64
            );
            assert!(summary.contains(&line), "{line} in {summary}");
            assert!(data.filled_base64 > data.base64, "{name} {role}");
            assert!(
                data.filled_base64 <= USER_DATA_BUDGET,
                "{name} {role}: {} > {USER_DATA_BUDGET}",
                data.filled_base64
            );
        }
    }
}

/// The bootstrap signals a failure under the id the agent uses (its instance name, else the host name;
/// first label, lower case), so the node has one entry at Heat whoever signals. Run by a real shell with
/// curl and hostname stand-ins on PATH; the agent download fails, so the script signals.
#[test]
fn the_bootstrap_signals_under_the_agents_id() {
    let (t, c, s) = load("cluster-template.yaml", "cluster.yaml");
    let magnum = params::magnum_parameters(&t, &c, &s);
    let config = params::node_config(Role::Minion, &t, &c, &s, &magnum).unwrap();
    let script = user_data::bootstrap_script(&config, &s).unwrap();
    for (instance_name, expected) in [("Demo-Minion-3.example", "demo-minion-3"), ("", "vm-7")] {
        let dir = tempfile::tempdir().unwrap();
        let node_values = dir.path().join("node.values.json");
        let json = format!(
            r#"{{"node":{{"instance_name":"{instance_name}"}},"signal":{{"endpoint":"http://127.0.0.1:9/signal","token":"t"}}}}"#
        );
        std::fs::write(&node_values, json).unwrap();
        let bin = dir.path().join("bin");
        std::fs::create_dir(&bin).unwrap();
        let sent = dir.path().join("sent");
        let stub = |name: &str, body: String| {
            let path = bin.join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        };
        // curl: a signal (it has --data-binary) is kept; a download fails as with no network.
        stub(
            "curl",
            format!(
                "while [ $# -gt 0 ]; do [ \"$1\" = --data-binary ] && {{ printf '%s' \"$2\" >{}; exit 0; }}; shift; done; exit 7",
                sent.display()
            ),
        );
        stub("hostname", "echo VM-7.novalocal".into());
        let script = script
            .replace(user_data::NODE_VALUES, node_values.to_str().unwrap())
            .replace(user_data::NODE_CONFIG, dir.path().join("node.json").to_str().unwrap())
            .replace(user_data::AGENT, dir.path().join("hearth-agent").to_str().unwrap());
        let out = Command::new("sh")
            .arg("-c")
            .arg(&script)
            .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        let signal: Value = serde_json::from_str(&std::fs::read_to_string(&sent).unwrap()).unwrap();
        assert_eq!(signal["status"], "FAILURE");
        assert_eq!(signal["id"], expected, "instance name {instance_name:?}: {signal}");
    }
}

#[test]
fn user_data_over_novas_limit_is_refused_at_render_time() {
    let (t, mut c, s) = load("cluster-template.yaml", "cluster.yaml");
    // Letters that gzip cannot shrink much (a repeated one it would): 60,000 of them from a simple LCG.
    let mut state = 1u32;
    let noise: String = (0..60_000)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'a' + ((state >> 16) % 26) as u8)
        })
        .collect();
    c.labels.get_or_insert_with(|| t.labels.clone()).insert("kubelet_options".into(), noise);
    let err = anyhow_chain(bundle::render(&t, &c, &s).unwrap_err());
    assert!(err.contains("Nova's limit of 65535"), "{err}");
}

/// Where the kubelet comes from reaches every node, and what the node would refuse is refused before a
/// server boots, naming the field and the value.
#[test]
fn kubelet_labels_reach_every_node_and_bad_ones_are_refused_at_render_time() {
    let (t, mut c, s) = load("cluster-template.yaml", "cluster.yaml");
    let labels = c.labels.get_or_insert_with(|| t.labels.clone());
    labels.insert("kubelet_url".into(), "https://mirror.example/k8s/v1.34.4/kubelet".into());
    labels.insert("kubelet_sha256".into(), "ab".repeat(32));
    let magnum = params::magnum_parameters(&t, &c, &s);
    for role in [Role::Master, Role::Minion] {
        let config = params::node_config(role, &t, &c, &s, &magnum).unwrap();
        assert_eq!(config.kubernetes.kubelet_url, "https://mirror.example/k8s/v1.34.4/kubelet", "{role}");
        assert_eq!(config.kubernetes.kubelet_sha256, "ab".repeat(32), "{role}");
    }
    bundle::render(&t, &c, &s).unwrap();
    c.labels.as_mut().unwrap().insert("kubelet_sha256".into(), "not-a-digest".into());
    let err = bundle::render(&t, &c, &s).unwrap_err().to_string();
    assert!(err.contains("KUBELET_SHA256") && err.contains("not-a-digest") && err.contains("64 hexadecimal"), "{err}");
}

#[test]
fn render_registers_the_cluster_for_serve() {
    let dir = examples_dir();
    let out = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let run = Command::new(SERVER)
        .args(["render", "--settings"])
        .arg(dir.join("settings.yaml"))
        .arg("--cluster-template")
        .arg(dir.join("cluster-template.yaml"))
        .arg("--cluster")
        .arg(dir.join("cluster.yaml"))
        .arg("--out")
        .arg(out.path())
        .arg("--state")
        .arg(state.path())
        .output()
        .unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let record = state.path().join("clusters/5d12f6fd-a196-4bf0-ae4c-1f639a523a52/cluster.json");
    let record: Value = serde_json::from_str(&std::fs::read_to_string(record).unwrap()).unwrap();
    assert_eq!(record["trustee_user_id"], "2b7fa6c8d26e4b4e8a8e35a3a0e8ef5e");
    assert_eq!(record["name"], "demo");
}

#[test]
fn validate_and_render_exit_codes() {
    let dir = examples_dir();
    let ok = Command::new(SERVER)
        .args(["validate", "--cluster-template"])
        .arg(dir.join("cluster-template.yaml"))
        .arg("--cluster")
        .arg(dir.join("cluster.yaml"))
        .output()
        .unwrap();
    assert!(ok.status.success(), "{}", String::from_utf8_lossy(&ok.stderr));
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(bad.path(), "name: \"-bad\"\nuuid: nope\nnode_count: 0\n").unwrap();
    let out = Command::new(SERVER)
        .args(["validate", "--cluster-template"])
        .arg(dir.join("cluster-template.yaml"))
        .arg("--cluster")
        .arg(bad.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    for field in ["cluster.name = \"-bad\"", "cluster.uuid = \"nope\"", "cluster.node_count = \"0\""] {
        assert!(stderr.contains(field), "{field} missing from:\n{stderr}");
    }
}

fn anyhow_chain(err: bundle::RenderError) -> String {
    match err {
        bundle::RenderError::Other(e) => format!("{e:#}"),
        other => other.to_string(),
    }
}
