//! Proves the cloud-init fixture (`hearth_tests::cloud_init`) against Debian's real cloud-init: user-data
//! built by `cloud-init devel make-mime` and by hand (gzip, base64, guessed types) splits into the parts
//! a booting node would see; the strict schema check refuses what it must; `write_files` lands byte-exact
//! with its mode. Then the server's own cloud-init user-data for every bundled example: one part, schema
//! clean, its files written by cloud-init's own module and read back as the node config the server
//! meant, and its bootstrap telling a loopback Heat why an agent that fails its checksum cannot start.

use hearth_fragments::config::{native, Role};
use hearth_server::user_data::{self, placeholders, Format};
use hearth_server::{bundle, model, settings::Loaded};
use hearth_tests::cloud_init::{self, Part};
use hearth_tests::loopback::{Loopback, Reply};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const CLOUD_CONFIG: &str = "#cloud-config\nruncmd:\n- [sh, -c, 'echo \"$HOME\" 100% é']\n";
const SCRIPT: &str = "#!/bin/sh\necho 'it''s' \"$HOME\" \\ 100% ✓\n";

/// Runs a real tool with `input` on stdin; its stdout.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {program}: {e}"));
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{program} {args:?} failed");
    out.stdout
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    pipe("gzip", &["-c", "-n", "-9"], bytes)
}

fn base64(bytes: &[u8]) -> String {
    String::from_utf8(pipe("base64", &["-w", "76"], bytes)).unwrap()
}

fn part(filename: &str, content_type: &str, payload: &str) -> Part {
    Part { filename: filename.into(), content_type: content_type.into(), payload: payload.as_bytes().to_vec() }
}

#[test]
fn user_data_from_make_mime_splits_into_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("config.yaml"), CLOUD_CONFIG).unwrap();
    std::fs::write(dir.path().join("boot.sh"), SCRIPT).unwrap();
    let out = Command::new("cloud-init")
        .args(["devel", "make-mime", "-a", "config.yaml:cloud-config", "-a", "boot.sh:x-shellscript"])
        .current_dir(dir.path())
        .output()
        .expect("cloud-init devel make-mime (Debian's cloud-init, installed by .ci/run)");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    let parts = cloud_init::parts(&out.stdout).unwrap();
    assert_eq!(
        parts,
        [part("config.yaml", "text/cloud-config", CLOUD_CONFIG), part("boot.sh", "text/x-shellscript", SCRIPT)]
    );
    cloud_init::schema_check(parts[0].text().unwrap()).unwrap();
}

const ASCII_CLOUD_CONFIG: &str = "#cloud-config\nruncmd:\n- [sh, -c, 'echo \"$HOME\" 100%']\n";

#[test]
fn a_hand_built_multipart_with_gzip_and_guessed_types_splits_as_at_boot() {
    let boundary = "hearth-boundary-42";
    let hostile = "#!/bin/bash\nprintf '%s\\n' \"$1\" `id` $(id) \\\\ 日本 🚀\n";
    let user_data = format!(
        "Content-Type: multipart/mixed; boundary=\"{boundary}\"\nMIME-Version: 1.0\n\n\
         --{boundary}\nContent-Type: text/plain; charset=\"us-ascii\"\nMIME-Version: 1.0\n\n{ASCII_CLOUD_CONFIG}\n\
         --{boundary}\nContent-Type: application/x-gzip\nMIME-Version: 1.0\nContent-Transfer-Encoding: base64\n\
         Content-Disposition: attachment; filename=\"zipped.sh\"\n\n{zipped}\n\
         --{boundary}\nContent-Type: text/x-shellscript; charset=\"utf-8\"\nMIME-Version: 1.0\n\
         Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=\"hostile.sh\"\n\n{hostile_b64}\n\
         --{boundary}--\n",
        zipped = base64(&gzip(SCRIPT.as_bytes())),
        hostile_b64 = base64(hostile.as_bytes()),
    );
    let parts = cloud_init::parts(user_data.as_bytes()).unwrap();
    assert_eq!(
        parts,
        [
            // text/plain is typed by its first line; a part without a filename is numbered.
            part("part-001", "text/cloud-config", ASCII_CLOUD_CONFIG),
            // Decompressed, then typed by its `#!`. A fact for whoever writes MIME user-data:
            // cloud-init 22.4 re-wraps a decompressed part without a charset, and Python's `email`
            // then turns its non-ASCII characters into `\uXXXX` escapes (a wholly gzipped blob is
            // unaffected: see below).
            part("zipped.sh", "text/x-shellscript", &SCRIPT.replace('✓', "\\u2713")),
            part("hostile.sh", "text/x-shellscript", hostile),
        ]
    );
}

/// A fact for whoever writes MIME user-data: cloud-init 22.4 reads a text part that is not base64
/// through Python's `email` as Latin-1 escapes, so UTF-8 text reaches the handlers mangled (`é` becomes
/// the single byte 0xE9). `make-mime` base64-encodes every part, which is what keeps them intact.
#[test]
fn a_non_ascii_text_part_survives_only_when_base64_encoded() {
    let eight_bit = format!(
        "Content-Type: multipart/mixed; boundary=\"b\"\nMIME-Version: 1.0\n\n--b\n\
         Content-Type: text/cloud-config; charset=\"utf-8\"\nMIME-Version: 1.0\n\
         Content-Transfer-Encoding: 8bit\n\n{CLOUD_CONFIG}\n--b--\n"
    );
    let parts = cloud_init::parts(eight_bit.as_bytes()).unwrap();
    assert_eq!(parts.len(), 1);
    // Each character as its one Latin-1 byte.
    let latin1: Vec<u8> = CLOUD_CONFIG.chars().map(|c| u8::try_from(u32::from(c)).unwrap()).collect();
    assert_eq!(parts[0].payload, latin1);
    assert!(parts[0].text().is_err());

    let base64_part = eight_bit
        .replace("Content-Transfer-Encoding: 8bit", "Content-Transfer-Encoding: base64")
        .replace(CLOUD_CONFIG, &base64(CLOUD_CONFIG.as_bytes()));
    assert_eq!(cloud_init::parts(base64_part.as_bytes()).unwrap()[0].text().unwrap(), CLOUD_CONFIG);
}

#[test]
fn plain_and_wholly_gzipped_user_data_are_single_parts() {
    let plain = cloud_init::parts(CLOUD_CONFIG.as_bytes()).unwrap();
    assert_eq!(plain, [part("part-001", "text/cloud-config", CLOUD_CONFIG)]);
    let zipped = cloud_init::parts(&gzip(SCRIPT.as_bytes())).unwrap();
    assert_eq!(zipped, [part("part-001", "text/x-shellscript", SCRIPT)]);
}

#[test]
fn an_include_is_reported_and_never_fetched() {
    // Port 9 (discard) on loopback: even a fetch attempt would go nowhere.
    let err = cloud_init::parts(b"#include http://127.0.0.1:9/user-data\n").unwrap_err();
    assert!(format!("{err:#}").contains("http://127.0.0.1:9/user-data"), "{err:#}");
}

#[test]
fn the_schema_check_is_strict() {
    cloud_init::schema_check(CLOUD_CONFIG).unwrap();
    cloud_init::schema_check("#cloud-config\nwrite_files:\n- path: /etc/x\n  content: x\n  permissions: '0600'\n")
        .unwrap();

    let wrong_type = cloud_init::schema_check("#cloud-config\nruncmd: 5\n").unwrap_err();
    assert!(wrong_type.contains("runcmd") && wrong_type.contains("is not of type"), "{wrong_type}");
    let wrong_nested =
        cloud_init::schema_check("#cloud-config\nwrite_files:\n- content: x\n  permissions: 600\n").unwrap_err();
    assert!(wrong_nested.contains("write_files.0"), "{wrong_nested}");
    let not_yaml = cloud_init::schema_check("#cloud-config\nruncmd: [\n").unwrap_err();
    assert!(not_yaml.contains("not valid YAML"), "{not_yaml}");
    let no_header = cloud_init::schema_check("runcmd: []\n").unwrap_err();
    assert!(no_header.contains("#cloud-config"), "{no_header}");
    let misspelt = cloud_init::schema_check("#cloud-config\nwrite_file: []\n").unwrap_err();
    assert!(misspelt.contains("write_file: not a key"), "{misspelt}");
}

#[test]
fn write_files_land_byte_exact_with_their_modes() {
    let secret: Vec<u8> = (0u8..=255).chain(b"-----BEGIN PRIVATE KEY-----\n\xc3\xa9\n".iter().copied()).collect();
    let text = "KEY=\"va'l $HOME\" 100% \\ é\n";
    let config = format!(
        "#cloud-config\nwrite_files:\n\
         - path: /etc/hearth/node.key\n  encoding: b64\n  permissions: '0600'\n  owner: root:root\n  content: {b64}\n\
         - path: /etc/hearth/zipped.conf\n  encoding: gz+b64\n  permissions: '0640'\n  content: {gz}\n\
         - path: /etc/hearth/plain.env\n  owner: nobody:nogroup\n  content: {plain}\n\
         - path: /var/lib/hearth/../hearth/later\n  defer: true\n  content: later\n",
        b64 = base64(&secret).replace('\n', ""),
        gz = base64(&gzip(text.as_bytes())).replace('\n', ""),
        plain = serde_json::to_string(text).unwrap(),
    );
    cloud_init::schema_check(&config).unwrap();
    let root = tempfile::tempdir().unwrap();
    let written = cloud_init::write_files_into(&config, root.path()).unwrap();

    let read = |path: &str| std::fs::read(root.path().join(path.trim_start_matches('/'))).unwrap();
    let mode = |path: &str| {
        std::fs::metadata(root.path().join(path.trim_start_matches('/'))).unwrap().permissions().mode() & 0o7777
    };
    assert_eq!(read("/etc/hearth/node.key"), secret);
    assert_eq!(mode("/etc/hearth/node.key"), 0o600);
    assert_eq!(read("/etc/hearth/zipped.conf"), text.as_bytes());
    assert_eq!(mode("/etc/hearth/zipped.conf"), 0o640);
    assert_eq!(read("/etc/hearth/plain.env"), text.as_bytes());
    assert_eq!(mode("/etc/hearth/plain.env"), 0o644, "cloud-init's default mode");
    assert_eq!(read("/var/lib/hearth/later"), b"later");

    let summary: Vec<(&str, &str, bool, u32)> =
        written.iter().map(|f| (f.path.as_str(), f.owner.as_str(), f.deferred, f.mode)).collect();
    assert_eq!(
        summary,
        [
            ("/etc/hearth/node.key", "root:root", false, 0o600),
            ("/etc/hearth/zipped.conf", "root:root", false, 0o640),
            ("/etc/hearth/plain.env", "nobody:nogroup", false, 0o644),
            ("/var/lib/hearth/later", "root:root", true, 0o644),
        ]
    );
    // Nothing escaped the root: only etc/ and var/ were created in it.
    let mut top: Vec<String> = std::fs::read_dir(root.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    top.sort();
    assert_eq!(top, ["etc", "var"]);
}

#[test]
fn an_unknown_encoding_is_an_error_not_a_silent_text_file() {
    let root = tempfile::tempdir().unwrap();
    let err = cloud_init::write_files_into(
        "#cloud-config\nwrite_files:\n- path: /etc/x\n  encoding: rot13\n  content: nop\n",
        root.path(),
    )
    .unwrap_err();
    assert!(format!("{err:#}").contains("Unknown encoding type rot13"), "{err:#}");
}

fn sha256(data: &[u8]) -> String {
    String::from_utf8(pipe("sha256sum", &[], data)).unwrap().split_whitespace().next().unwrap().to_string()
}

/// Every bundled cloud-init example, both roles, as a node boots it: cloud-init sees one
/// `#cloud-config` part that its schema accepts, writes the values plain and the config and bootstrap
/// from `gz+b64` with their modes, and the two files read as one node config holding Heat's values.
/// The minion's bootstrap, run with that root as `/`, refuses a tampered agent and says so to Heat.
#[test]
fn the_servers_user_data_is_written_by_cloud_init_and_its_bootstrap_signals_a_bad_agent() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    const TAMPERED: &[u8] = b"#!/bin/sh\necho a tampered hearth-agent\n";
    let agent = Loopback::serve(|request| match request.path() {
        "/agent/hearth-agent" => Reply::bytes(200, TAMPERED),
        _ => Reply::text(404, "not found"),
    });
    let released = sha256(b"the hearth-agent that was released");
    for (template, cluster) in
        [("cluster-template.yaml", "cluster.yaml"), ("cluster-template-ha.yaml", "cluster-ha.yaml")]
    {
        let template = model::load(&examples.join(template)).unwrap();
        let cluster = model::load(&examples.join(cluster)).unwrap();
        let mut settings = Loaded::load(&examples.join("settings.yaml")).unwrap();
        settings.settings.agent.url = agent.url("/agent/hearth-agent");
        settings.settings.agent.sha256 = released.clone();
        let bundle = bundle::render(&template, &cluster, &settings).unwrap();
        assert_eq!(bundle.format, Format::CloudInit);
        for (role, data) in [(Role::Master, &bundle.master), (Role::Minion, &bundle.minion)] {
            let heat = Loopback::script([Reply::text(200, "null")]);
            let endpoint = heat.url("/v1/a1b2/stacks/k8s-demo-kube_minions-0/9c3d/resources/wait_handle/signal");
            let filled = user_data::fill(&data.text, &placeholders(role), |h| match h.name {
                "wait_endpoint" => endpoint.clone(),
                "wait_token" => "gAAAAABdebian-token".into(),
                "instance_name" => "k8s-demo-node-0".into(),
                "master_index" => "0".into(),
                "master_addresses" => "10.0.0.5,10.0.0.6".into(),
                "node_public_ip" | "etcd_lb_vip" | "etcd_volume" => String::new(),
                "docker_volume" | "cluster_subnet" => "0f6b6c0e-3d5b-4a4e-8f2a-2c1d0e9b8a76".into(),
                _ => "10.0.0.5".into(),
            });
            let parts = cloud_init::parts(filled.as_bytes()).unwrap();
            assert_eq!(parts.len(), 1, "{role}");
            assert_eq!(parts[0].content_type, "text/cloud-config");
            let config = parts[0].text().unwrap();
            cloud_init::schema_check(config).unwrap();
            let root = tempfile::tempdir().unwrap();
            let written = cloud_init::write_files_into(config, root.path()).unwrap();
            let modes: Vec<(&str, u32)> = written.iter().map(|f| (f.path.as_str(), f.mode)).collect();
            assert_eq!(
                modes,
                [(user_data::NODE_VALUES, 0o600), (user_data::NODE_CONFIG, 0o600), (user_data::BOOTSTRAP, 0o700)]
            );
            let read = |path: &str| std::fs::read_to_string(root.path().join(path.trim_start_matches('/'))).unwrap();
            let merged =
                native::with_values(&read(user_data::NODE_CONFIG), &read(user_data::NODE_VALUES), "v").unwrap();
            let node = native::parse(&merged, "user-data", Some(role)).unwrap();
            assert_eq!(node.signal.endpoint, endpoint);
            assert_eq!(node.node.ip.unwrap().to_string(), "10.0.0.5");
            assert_eq!(node.openstack.trustee_password.expose(), settings.settings.trustee.password.expose());
            if role == Role::Master {
                assert_eq!(node.etcd.members.len(), 2);
                continue;
            }
            let out = hearth_tests::ignition::run_in_root(root.path(), user_data::BOOTSTRAP).unwrap();
            assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
            let signal = heat.next_request(Duration::from_secs(30)).expect("the bootstrap signalled");
            assert_eq!(signal.header("X-Auth-Token"), Some("gAAAAABdebian-token"));
            let body = signal.json();
            assert_eq!(body["status"], "FAILURE");
            assert_eq!(body["id"], "k8s-demo-node-0");
            let expected = format!(
                "part-000 bootstrap: hearth-agent from {} has sha256 {}, expected {released}",
                settings.settings.agent.url,
                sha256(TAMPERED)
            );
            assert_eq!(body["reason"], expected.as_str());
            assert!(!root.path().join(user_data::AGENT.trim_start_matches('/')).exists());
        }
    }
}
