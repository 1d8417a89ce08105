//! docker-storage and services on a live system: a booted machine ([`machine::Machine`], systemd-nspawn
//! from this machine's own packages) with a loop device as the Cinder volume, the agent run inside it.
//!
//! - containerd: the volume formatted xfs (UUID = volume id), in fstab by UUID, mounted at
//!   `/var/lib/containerd`; a second run changes and runs nothing; the services step starts the real
//!   containerd, which reads the agent's config (`containerd config dump`) and keeps its data on the
//!   volume; the fstab entry alone mounts the volume again.
//! - a volume that is not attached fails within `agent.device_wait_secs`, naming the volume and what
//!   `/dev/disk/by-id` held.
//! - devicemapper: the volume becomes LVM VG `docker` for real; the thin pool needs docker-storage-setup
//!   (Fedora Atomic) and the kernel's device-mapper, neither of which this machine has, so the run stops
//!   there with that reason, and a second run does not touch the VG again.
//! - docker: dockerd started by systemd with the agent's `daemon.json`; a local `docker-registry` on `::1`
//!   (outside docker's default insecure 127.0.0.0/8) takes a push only under the name the agent made
//!   insecure; dockerd refuses a `daemon.json` with a bad setting.
//! - registry: the real `docker-registry` reads the agent's Swift config and sends Keystone (a recording
//!   stand-in inside the machine) the trustee's user name, domain, password and trust id.
//!
//! Needs root, `systemd-nspawn`, `losetup`, xfsprogs, lvm2, containerd, docker.io and docker-registry
//! (`.ci/run` installs them).

mod machine;

use machine::{text, LoopDevice, Machine, Options};
use std::time::{Duration, Instant};

const VOLUME_ID: &str = "9c1e2d3f-4a5b-6c7d-8e9f-0a1b2c3d4e5f";
const MINION: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/node/minion.json");

/// The minion example with `edit` applied, as the machine's `/etc/hearth/node.json`.
fn node_config(machine: &Machine, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(MINION).unwrap()).unwrap();
    config["proxy"] = serde_json::json!({});
    edit(&mut config);
    machine.write("/etc/hearth/node.json", &serde_json::to_string_pretty(&config).unwrap());
}

fn by_id_link(machine: &Machine, disk: &LoopDevice) {
    machine.ok(&["mkdir", "-p", "/dev/disk/by-id"]);
    let link = format!("/dev/disk/by-id/virtio-{}", &VOLUME_ID[..20]);
    machine.ok(&["ln", "-sf", disk.path.to_str().unwrap(), &link]);
}

fn agent_ok(machine: &Machine, args: &[&str]) -> (String, Duration) {
    let started = Instant::now();
    let out = machine.agent(args);
    let took = started.elapsed();
    assert!(out.status.success(), "hearth-agent run {args:?} failed:\n{}", text(&out));
    (String::from_utf8_lossy(&out.stdout).into_owned(), took)
}

#[test]
fn containerd_storage_on_a_real_volume_then_containerd_with_the_agents_config() {
    let disk = LoopDevice::new("1G");
    let machine = Machine::boot("storage-0", &Options { devices: vec![disk.path.clone()], ..Options::default() });
    println!("machine booted in {:?}", machine.boot_time);
    by_id_link(&machine, &disk);
    let host_fstab = "# /etc/fstab: static file system information.\ntmpfs /mnt/scratch tmpfs defaults 0 0\n";
    machine.write("/etc/fstab", host_fstab);
    node_config(&machine, |c| {
        c["runtime"]["kind"] = "containerd".into();
        c["runtime"]["volume"] = serde_json::json!({"id": VOLUME_ID, "size": 1});
    });

    let (first, took) = agent_ok(&machine, &["--only", "docker-storage"]);
    println!("first run ({took:?}):\n{first}");
    let disk_path = disk.path.to_str().unwrap();
    let probe = machine.ok(&["blkid", "--probe", "--output", "export", disk_path]);
    assert!(probe.contains("TYPE=xfs") && probe.contains(&format!("UUID={VOLUME_ID}")), "{probe}");
    let fstab = machine.read("/etc/fstab");
    assert_eq!(
        fstab,
        format!(
            "{host_fstab}# hearth-agent: container storage, Cinder volume {VOLUME_ID}, at /var/lib/containerd\n\
             UUID={VOLUME_ID} /var/lib/containerd xfs defaults 0 0\n"
        )
    );
    let mounted = machine.ok(&["findmnt", "--noheadings", "--output", "SOURCE,FSTYPE", "/var/lib/containerd"]);
    assert_eq!(mounted.split_whitespace().collect::<Vec<_>>(), [disk_path, "xfs"], "{mounted}");
    assert!(machine.read("/etc/containerd/config.toml").contains("SystemdCgroup = true"));

    // A marker on the volume: the second run must neither format nor remount it.
    machine.ok(&["touch", "/var/lib/containerd/hearth-test-marker"]);
    let (second, took) = agent_ok(&machine, &["--only", "docker-storage"]);
    println!("second run ({took:?}):\n{second}");
    assert!(
        second.contains("unchanged") && !second.contains(" changed "),
        "the second run changed something:\n{second}"
    );
    let status = machine.read("/var/lib/hearth/partial.json");
    assert!(!status.contains("\"kind\": \"command\""), "the second run ran a command:\n{status}");
    assert_eq!(machine.read("/etc/fstab"), fstab);
    machine.ok(&["test", "-e", "/var/lib/containerd/hearth-test-marker"]);
    let mounts = machine.ok(&["findmnt", "--noheadings", "--output", "TARGET", "--source", disk_path]);
    assert_eq!(mounts.lines().count(), 1, "mounted more than once: {mounts}");

    // services starts the real containerd, which runs with the agent's config and keeps its data on the volume.
    let (services, took) = agent_ok(&machine, &["--only", "services"]);
    println!("services ({took:?}):\n{services}");
    let up = machine.wait_active("containerd.service", Duration::from_secs(30));
    println!("containerd active {up:?} after the services step");
    machine.ok(&["ctr", "version"]);
    let dump = machine.ok(&["containerd", "config", "dump"]);
    for applied in [
        "SystemdCgroup = true",
        "sandbox_image = \"registry.k8s.io/pause:3.7\"",
        "snapshotter = \"overlayfs\"",
        "config_path = \"/etc/containerd/certs.d\"",
        "bin_dir = \"/opt/cni/bin\"",
        "conf_dir = \"/etc/cni/net.d\"",
        "root = \"/var/lib/containerd\"",
    ] {
        assert!(dump.contains(applied), "containerd did not take {applied:?} from the agent's config:\n{dump}");
    }
    let on = machine.ok(&[
        "findmnt",
        "--noheadings",
        "--output",
        "SOURCE",
        "--target",
        "/var/lib/containerd/io.containerd.metadata.v1.bolt",
    ]);
    assert_eq!(on.trim(), disk_path, "containerd's metadata is not on the volume");
    // The check can fail: a misspelt key is dropped by containerd, and the dump shows the default.
    let misspelt = machine.read("/etc/containerd/config.toml").replace("config_path", "config_pth");
    machine.write("/root/misspelt.toml", &misspelt);
    let dropped = machine.ok(&["containerd", "--config", "/root/misspelt.toml", "config", "dump"]);
    assert!(dropped.contains("config_path = \"\"") && !dropped.contains("config_pth"), "{dropped}");
    // A second services run finds containerd enabled and running: nothing to do.
    let (again, _) = agent_ok(&machine, &["--only", "services"]);
    assert!(!again.contains(" changed "), "{again}");

    // The fstab entry alone brings the volume back (as at the next boot).
    machine.ok(&["systemctl", "stop", "containerd.service"]);
    machine.ok(&["umount", "/var/lib/containerd"]);
    machine.ok(&["mount", "--all", "--types", "xfs"]);
    machine.ok(&["test", "-e", "/var/lib/containerd/hearth-test-marker"]);
}

#[test]
fn a_volume_that_never_appears_fails_within_the_bounded_wait() {
    let machine = Machine::boot("storage-1", &Options::default());
    node_config(&machine, |c| {
        c["runtime"]["volume"] = serde_json::json!({"id": VOLUME_ID, "size": 20});
        c["agent"]["device_wait_secs"] = 3.into();
    });
    let started = Instant::now();
    let out = machine.agent(&["--only", "docker-storage"]);
    let took = started.elapsed();
    println!("failed after {took:?}:\n{}", text(&out));
    assert!(!out.status.success(), "the run succeeded without its volume:\n{}", text(&out));
    assert!(took >= Duration::from_secs(3) && took < Duration::from_secs(15), "took {took:?}");
    let said = text(&out);
    assert!(said.contains(&format!("Cinder volume {VOLUME_ID} did not appear within 3 s")), "{said}");
    assert!(said.contains(&format!("/dev/disk/by-id/virtio-{}", &VOLUME_ID[..20])), "{said}");
    assert!(said.contains("/dev/disk/by-id holds nothing"), "{said}");
    let status = machine.read("/var/lib/hearth/partial.json");
    assert!(status.contains("did not appear within 3 s"), "{status}");
}

#[test]
fn devicemapper_makes_the_volume_group_for_real_and_stops_at_the_thin_pool() {
    let disk = LoopDevice::new("1G");
    let machine = Machine::boot("storage-2", &Options { devices: vec![disk.path.clone()], ..Options::default() });
    by_id_link(&machine, &disk);
    node_config(&machine, |c| {
        c["runtime"]["kind"] = "docker".into();
        // docker is the runtime of the Kubernetes releases that still had dockershim.
        c["kubernetes"]["tag"] = "v1.23.17".into();
        c["kubernetes"]["version"] = "v1.23.17".into();
        c["runtime"]["storage_driver"] = "devicemapper".into();
        c["runtime"]["volume"] = serde_json::json!({"id": VOLUME_ID, "size": 1});
    });
    let disk_path = disk.path.to_str().unwrap();
    for run in ["first", "second"] {
        let out = machine.agent(&["--only", "docker-storage"]);
        let said = text(&out);
        println!("{run} run:\n{said}");
        assert!(!out.status.success(), "{said}");
        assert!(said.contains("docker-storage-setup"), "{said}");
        let pvs = machine.ok(&["pvs", "--noheadings", "--options", "pv_name,vg_name"]);
        assert_eq!(pvs.split_whitespace().collect::<Vec<_>>(), [disk_path, "docker"], "{pvs}");
        let status = machine.read("/var/lib/hearth/partial.json");
        let made_vg = status.contains("vgcreate docker");
        assert_eq!(made_vg, run == "first", "vgcreate in the {run} run:\n{status}");
    }
    assert_eq!(
        machine.read("/etc/sysconfig/docker-storage-setup"),
        "# Written by hearth-agent (docker-storage step).\nGROWROOT=True\nSTORAGE_DRIVER=devicemapper\nVG=docker\n"
    );
    machine.ok(&["vgremove", "--force", "docker"]);
    machine.ok(&["pvremove", "--force", disk_path]);
}

#[test]
fn dockerd_runs_with_the_agents_daemon_json_and_trusts_only_its_insecure_registry() {
    let machine = Machine::boot(
        "docker-0",
        &Options { hosts: "::1 registry.hearth.test other-registry.hearth.test\n", ..Options::default() },
    );
    node_config(&machine, |c| {
        c["runtime"]["kind"] = "docker".into();
        // docker is the runtime of the Kubernetes releases that still had dockershim.
        c["kubernetes"]["tag"] = "v1.23.17".into();
        c["kubernetes"]["version"] = "v1.23.17".into();
        c["runtime"]["insecure_registry_url"] = "registry.hearth.test:5000".into();
        c["runtime"]["registry_mirrors"] = serde_json::json!(["https://mirror.hearth.test"]);
        c["runtime"]["volume"] = serde_json::json!({"id": "", "size": 0});
    });
    agent_ok(&machine, &["--only", "docker-storage"]);
    let daemon_json = machine.read("/etc/docker/daemon.json");
    println!("daemon.json:\n{daemon_json}");
    let (services, _) = agent_ok(&machine, &["--only", "services"]);
    println!("{services}");
    let up = machine.wait_active("docker.service", Duration::from_secs(60));
    println!("docker active {up:?} after the services step");
    let info = machine.ok(&[
        "docker",
        "info",
        "--format",
        "{{.CgroupDriver}} {{.Driver}} {{.LoggingDriver}} {{.RegistryConfig.Mirrors}}",
    ]);
    assert_eq!(info.trim(), "systemd overlay2 json-file [https://mirror.hearth.test/]", "{info}");

    // A registry on ::1: docker only trusts 127.0.0.0/8 without TLS by default.
    machine.write(
        "/etc/hearth-test/registry.yml",
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: /var/lib/hearth-test-registry\nhttp:\n  addr: \"[::1]:5000\"\n",
    );
    machine.ok(&[
        "systemd-run",
        "--unit=hearth-test-registry",
        "docker-registry",
        "serve",
        "/etc/hearth-test/registry.yml",
    ]);
    machine.wait_active("hearth-test-registry.service", Duration::from_secs(10));
    machine.ok(&[
        "sh",
        "-c",
        "mkdir -p /tmp/image && echo hello > /tmp/image/hello && tar -C /tmp/image -cf /tmp/image.tar .",
    ]);
    machine.ok(&["docker", "import", "/tmp/image.tar", "registry.hearth.test:5000/hearth/probe:1"]);
    let pushed = retry_push(&machine, "registry.hearth.test:5000/hearth/probe:1");
    assert!(pushed.status.success(), "push to the insecure registry failed:\n{}", text(&pushed));
    machine.ok(&[
        "docker",
        "tag",
        "registry.hearth.test:5000/hearth/probe:1",
        "other-registry.hearth.test:5000/hearth/probe:1",
    ]);
    let refused = machine.run(&["docker", "push", "other-registry.hearth.test:5000/hearth/probe:1"]);
    assert!(!refused.status.success(), "a registry the agent did not make insecure took a plain-HTTP push");
    assert!(text(&refused).contains("HTTP response to HTTPS client"), "{}", text(&refused));
    machine.ok(&[
        "docker",
        "rmi",
        "registry.hearth.test:5000/hearth/probe:1",
        "other-registry.hearth.test:5000/hearth/probe:1",
    ]);
    machine.ok(&["docker", "pull", "registry.hearth.test:5000/hearth/probe:1"]);

    // dockerd refuses a daemon.json with a bad setting at once, so a bad file from the agent would show.
    let bad = daemon_json.replacen('{', "{\n  \"storage-driver-typo\": \"overlay2\",", 1);
    machine.write("/root/bad-daemon.json", &bad);
    let started = Instant::now();
    let refused = machine.run(&[
        "timeout",
        "30",
        "dockerd",
        "--config-file",
        "/root/bad-daemon.json",
        "--data-root",
        "/tmp/bad-docker",
        "--exec-root",
        "/tmp/bad-docker-exec",
        "--pidfile",
        "/tmp/bad-docker.pid",
        "--host",
        "unix:///tmp/bad-docker.sock",
    ]);
    let said = text(&refused);
    assert!(
        !refused.status.success() && refused.status.code() != Some(124),
        "dockerd ran with a bad daemon.json:\n{said}"
    );
    assert!(said.contains("storage-driver-typo"), "{said}");
    println!("dockerd refused the bad daemon.json in {:?}", started.elapsed());
}

/// `docker push`, retried briefly while the registry is still binding its port.
fn retry_push(machine: &Machine, image: &str) -> std::process::Output {
    let started = Instant::now();
    loop {
        let out = machine.run(&["docker", "push", image]);
        if out.status.success()
            || started.elapsed() > Duration::from_secs(10)
            || !text(&out).contains("connection refused")
        {
            return out;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Keystone's token API as far as the registry's first request: records the body, answers 401.
const RECORDING_KEYSTONE: &str = r#"
import http.server, sys
class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with open("/root/keystone-request.json", "wb") as f:
            f.write(self.path.encode() + b"\n" + body)
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": {"code": 401, "title": "Unauthorized", "message": "recorded"}}')
http.server.HTTPServer(("127.0.0.1", 5000), Handler).serve_forever()
"#;

#[test]
fn the_registry_reads_the_agents_swift_config_and_sends_every_trustee_credential() {
    let machine = Machine::boot("registry-0", &Options::default());
    node_config(&machine, |c| {
        c["registry"]["enabled"] = true.into();
        c["registry"]["swift_region"] = "RegionOne".into();
        c["registry"]["port"] = 5050.into();
    });
    agent_ok(&machine, &["--only", "registry-config"]);
    let mode = machine.ok(&["stat", "--format", "%a %U", "/etc/sysconfig/registry-config.yml"]);
    assert_eq!(mode.trim(), "600 root");

    // A recording Keystone at the example's auth_url (http://127.0.0.1:5000/v3), inside the machine.
    machine.write("/root/keystone.py", RECORDING_KEYSTONE);
    machine.ok(&["systemd-run", "--unit=hearth-test-keystone", "python3", "/root/keystone.py"]);
    machine.wait_active("hearth-test-keystone.service", Duration::from_secs(10));
    let started = Instant::now();
    let out = loop {
        let out = machine.run(&["timeout", "60", "docker-registry", "serve", "/etc/sysconfig/registry-config.yml"]);
        if !text(&out).contains("connection refused") || started.elapsed() > Duration::from_secs(10) {
            break out;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let said = text(&out);
    assert!(!out.status.success() && out.status.code() != Some(124), "{said}");
    assert!(said.contains("swift authentication failed"), "the registry did not get as far as Swift:\n{said}");

    let request = machine.read("/root/keystone-request.json");
    let (path, body) = request.split_once('\n').unwrap();
    assert_eq!(path, "/v3/auth/tokens");
    let body: serde_json::Value = serde_json::from_str(body).unwrap();
    let example: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(MINION).unwrap()).unwrap();
    let os = &example["openstack"];
    let user = &body["auth"]["identity"]["password"]["user"];
    assert_eq!(user["name"], os["trustee_username"], "{body}");
    assert_eq!(user["domain"]["id"], os["trustee_domain_id"], "{body}");
    assert_eq!(user["password"], os["trustee_password"], "{body}");
    assert_eq!(body["auth"]["scope"]["OS-TRUST:trust"]["id"], os["trust_id"], "{body}");
}
