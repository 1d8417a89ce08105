//! install-ca for real: the agent runs inside a chroot of a debootstrapped Debian bookworm, writes the
//! OpenStack CA as a trust anchor and runs Debian's own `update-ca-certificates`, after which a
//! certificate signed by that CA verifies against the system bundle.
//!
//! Needs root (chroot), debootstrap (for the cached tree, built once: see `hearth_tests::debian_tree`)
//! and the openssl CLI; `.ci/run` installs them. The test fails, rather than skips, without them.

use hearth_tests::debian_tree::find_program;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Instant;

const ANCHOR: &str = "usr/local/share/ca-certificates/openstack-ca.crt";
const BUNDLE: &str = "etc/ssl/certs/ca-certificates.crt";

#[test]
fn install_ca_makes_the_debian_trust_store_trust_the_openstack_ca() {
    let openssl = find_program("openssl").expect("the openssl CLI is missing: run .ci/run (it installs it)");
    let chroot = find_program("chroot").expect("chroot (coreutils) is missing");

    let pki = tempfile::tempdir().unwrap();
    let (ca_pem, leaf) = make_ca_and_leaf(&openssl, pki.path());

    let tree = hearth_tests::debian_tree_copy().expect("the debootstrapped Debian tree");
    let root = tree.path();
    install_agent(root);
    write(root, "etc/hostname", "minion-0\n", 0o644);
    let config = serde_json::json!({
        "version": 1,
        "role": "minion",
        "openstack": { "ca_pem": ca_pem },
    });
    write(root, "etc/hearth/node.json", &serde_json::to_string_pretty(&config).unwrap(), 0o600);

    // Before: the tree's bundle has only the public CAs, so the leaf does not verify. This is what
    // proves the check below can fail.
    let before = verify(&openssl, &root.join(BUNDLE), &leaf);
    assert!(!before.status.success(), "the leaf verified before install-ca ran:\n{}", text(&before));
    assert!(!root.join(ANCHOR).exists(), "the pristine tree already has {ANCHOR}");

    let first = run_install_ca(&chroot, root);
    let after = verify(&openssl, &root.join(BUNDLE), &leaf);
    assert!(
        after.status.success(),
        "the leaf does not verify against {BUNDLE} after install-ca:\n{}\nagent:\n{}",
        text(&after),
        text(&first)
    );
    let anchor = std::fs::read_to_string(root.join(ANCHOR)).unwrap();
    assert_eq!(anchor.trim(), ca_pem.trim(), "the anchor is not the configured CA");

    // Idempotent: a second run leaves the anchor and the bundle byte for byte as they were.
    let anchor_bytes = std::fs::read(root.join(ANCHOR)).unwrap();
    let bundle_bytes = std::fs::read(root.join(BUNDLE)).unwrap();
    let bundle_mtime = std::fs::metadata(root.join(BUNDLE)).unwrap().modified().unwrap();
    run_install_ca(&chroot, root);
    assert!(std::fs::read(root.join(ANCHOR)).unwrap() == anchor_bytes, "the second run changed {ANCHOR}");
    assert!(std::fs::read(root.join(BUNDLE)).unwrap() == bundle_bytes, "the second run changed {BUNDLE}");
    let rebuilt = std::fs::metadata(root.join(BUNDLE)).unwrap().modified().unwrap() != bundle_mtime;
    println!("second run {} the bundle", if rebuilt { "rebuilt (same bytes)" } else { "left alone" });
    assert!(verify(&openssl, &root.join(BUNDLE), &leaf).status.success());
}

/// Runs `hearth-agent run --config /etc/hearth/node.json --only install-ca` chrooted into `root`, with a
/// clean environment; panics with the agent's output unless it succeeds.
///
/// Where the machine allows it, the chroot gets what a booted node has and a bare chroot lacks: `/proc`
/// (the agent reads the kernel's hostname there) and a kernel hostname of its own (`minion-0`, as
/// cloud-init would set). Both live in private namespaces (`unshare --mount --uts`) that vanish with the
/// process, so no mount outlives the test whatever happens to it. Without that privilege (e.g. an
/// unprivileged container) it falls back to a bare chroot, which is all `update-ca-certificates` needs.
fn run_install_ca(chroot: &Path, root: &Path) -> Output {
    const AGENT: [&str; 6] =
        ["/usr/local/bin/hearth-agent", "run", "--config", "/etc/hearth/node.json", "--only", "install-ca"];
    let mut command = match find_program("unshare").filter(|unshare| namespaces_work(unshare)) {
        Some(unshare) => {
            let mut c = Command::new(unshare);
            c.args(["--mount", "--uts", "--propagation", "private"])
                .arg(format!("--mount-proc={}", root.join("proc").display()))
                .arg(chroot)
                .arg(root)
                .args(["/bin/sh", "-c", "hostname \"$0\" && exec \"$@\"", "minion-0"])
                .args(AGENT);
            c
        }
        None => {
            println!("no private mount/UTS namespace here: running in a bare chroot (no /proc)");
            let mut c = Command::new(chroot);
            c.arg(root).args(AGENT);
            c
        }
    };
    let started = Instant::now();
    let out = command
        .env_clear()
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("HOME", "/root")
        .env("LANG", "C.UTF-8")
        .output()
        .expect("running the agent in the chroot");
    println!("chroot run of install-ca took {:.2} s:\n{}", started.elapsed().as_secs_f64(), text(&out));
    assert!(out.status.success(), "hearth-agent in the chroot failed ({}):\n{}", out.status, text(&out));
    out
}

/// Whether this process may make private mount and UTS namespaces (root outside a locked-down container).
fn namespaces_work(unshare: &Path) -> bool {
    Command::new(unshare)
        .args(["--mount", "--uts", "--propagation", "private", "true"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Copies the agent under test into the tree. It is linked against the host's glibc, which is
/// bookworm's like the tree's, so it runs there.
fn install_agent(root: &Path) {
    let dest = root.join("usr/local/bin/hearth-agent");
    std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_hearth-agent"), &dest).unwrap();
    set_mode(&dest, 0o755);
}

/// A CA (EC P-256) and a leaf certificate it signed, made with the openssl CLI in `dir`; returns the
/// CA's PEM and the leaf's path.
fn make_ca_and_leaf(openssl: &Path, dir: &Path) -> (String, PathBuf) {
    // Our own config, so the host's openssl.cnf cannot change what a CA looks like.
    std::fs::write(
        dir.join("ca.cnf"),
        "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n\
         [dn]\nCN = Hearth test OpenStack CA\n\
         [v3_ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n\
         subjectKeyIdentifier = hash\n",
    )
    .unwrap();
    std::fs::write(
        dir.join("leaf.ext"),
        "basicConstraints = CA:FALSE\nkeyUsage = critical, digitalSignature\nextendedKeyUsage = serverAuth\n\
         subjectAltName = DNS:keystone.hearth.test\n",
    )
    .unwrap();
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    run_openssl(
        openssl,
        dir,
        &["req", "-x509", "-config", "ca.cnf"],
        &ec,
        &["-keyout", "ca.key", "-out", "ca.pem", "-days", "30"],
    );
    run_openssl(
        openssl,
        dir,
        &["req", "-config", "ca.cnf", "-subj", "/CN=keystone.hearth.test"],
        &ec,
        &["-keyout", "leaf.key", "-out", "leaf.csr"],
    );
    run_openssl(
        openssl,
        dir,
        &["x509", "-req", "-in", "leaf.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"],
        &["-extfile", "leaf.ext"],
        &["-out", "leaf.pem", "-days", "30"],
    );
    // Sanity: the leaf verifies against its own CA, so a failure later is about the trust store.
    let own = verify(openssl, &dir.join("ca.pem"), &dir.join("leaf.pem"));
    assert!(own.status.success(), "the test leaf does not verify against its CA:\n{}", text(&own));
    (std::fs::read_to_string(dir.join("ca.pem")).unwrap(), dir.join("leaf.pem"))
}

fn run_openssl(openssl: &Path, dir: &Path, a: &[&str], b: &[&str], c: &[&str]) {
    let out = Command::new(openssl).args(a).args(b).args(c).current_dir(dir).output().expect("running openssl");
    assert!(out.status.success(), "openssl {} {} {} failed:\n{}", a.join(" "), b.join(" "), c.join(" "), text(&out));
}

/// `openssl verify -CAfile BUNDLE LEAF` (the host's openssl, reading the tree's bundle).
fn verify(openssl: &Path, bundle: &Path, leaf: &Path) -> Output {
    Command::new(openssl).arg("verify").arg("-CAfile").arg(bundle).arg(leaf).output().expect("running openssl verify")
}

fn write(root: &Path, relative: &str, content: &str, mode: u32) {
    let path = root.join(relative);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, content).unwrap();
    set_mode(&path, mode);
}

fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn text(out: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
}
