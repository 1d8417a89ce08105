//! CSR signing under load: 200 concurrent clients on loopback, each with its own keep-alive connection
//! and token, POSTing `/v1/certificates` in a loop, against an in-process `hearth-server serve`.
//! Prints signs per second and latency percentiles for ECDSA P-256 and RSA 2048 CSRs.
//!
//! Keystone is a loopback stand-in speaking its token API (service token by POST, validation by GET,
//! answering at once), so the figures are the server's own cost. Two token-cache settings:
//! - `cache 60 s` (the default): each client's token is validated once, then served from the cache;
//! - `cache off`: every request is validated against the stand-in (one extra loopback HTTP round trip).
//!
//! Run: `cargo bench -p hearth-server --bench signing` (optimised build). Not a test: nothing is asserted
//! but that every request got its certificate.

use hearth_fragments::config::secret::Secret;
use hearth_server::serve::settings::{
    ConnectionSettings, KeystoneSettings, ProjectRef, ServiceUser, Settings, SigningSettings, UserRef,
};
use hearth_server::serve::Server;
use hearth_tests::loopback::{Loopback, Reply};
use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

const CLIENTS: usize = 200;
const REQUESTS_PER_CLIENT: usize = 20;
const CLUSTER: &str = "5d12f6fd-a196-4bf0-ae4c-1f639a523a52";
/// RSA keys are slow to make; clients share this many (the server's work does not depend on it).
const RSA_KEYS: usize = 20;

fn main() {
    let keystone = keystone_stand_in();
    let keystone_url = keystone.url("/v3");
    let state = tempfile::tempdir().unwrap();
    hearth_server::serve::ca_init(state.path(), CLUSTER, Some("bench"), None, 3650).unwrap();

    let p256 = (0..CLIENTS).map(|n| csr(&KeyPair::generate().unwrap(), n)).collect::<Vec<_>>();
    let started = Instant::now();
    let rsa_keys = (0..RSA_KEYS).map(|_| rsa_2048()).collect::<Vec<_>>();
    eprintln!("(made {RSA_KEYS} RSA 2048 keys with openssl in {:.1} s)", started.elapsed().as_secs_f64());
    let rsa = (0..CLIENTS).map(|n| csr(&rsa_keys[n % RSA_KEYS], n)).collect::<Vec<_>>();

    println!(
        "hearth-server serve, {CLIENTS} concurrent clients x {REQUESTS_PER_CLIENT} POST /v1/certificates, loopback, \
         {} cores",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!(
        "{:<12} {:<10} {:>8} {:>10} {:>9} {:>9} {:>9}",
        "CSR key", "tokens", "signs", "signs/s", "p50 ms", "p99 ms", "max ms"
    );
    for (cache, cache_name) in [(Duration::from_secs(60), "cache 60 s"), (Duration::ZERO, "cache off")] {
        for (name, csrs) in [("ECDSA P-256", &p256), ("RSA 2048", &rsa)] {
            let settings = Settings {
                listen: "127.0.0.1:0".parse().unwrap(),
                state_dir: state.path().to_path_buf(),
                public_url: None,
                workers: hearth_server::serve::settings::DEFAULT_WORKERS,
                agent_file: None,
                keystone: KeystoneSettings {
                    url: keystone_url.clone(),
                    verify_tls: true,
                    ca_pem: String::new(),
                    admin_role: "admin".into(),
                    token_cache: cache,
                    service_user: ServiceUser {
                        user: UserRef::Id("hearth".into()),
                        password: Secret::new("bench"),
                        project: Some(ProjectRef::Id("service".into())),
                    },
                },
                signing: SigningSettings::default(),
                connections: ConnectionSettings::default(),
            };
            let server = Server::bind(&settings).unwrap().spawn();
            let url = format!("http://{}/v1/certificates", server.local_addr());
            let (elapsed, mut latencies) = run(&url, csrs);
            server.stop();
            latencies.sort_unstable();
            let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
            let ms = |d: Duration| d.as_secs_f64() * 1000.0;
            println!(
                "{name:<12} {cache_name:<10} {:>8} {:>10.0} {:>9.1} {:>9.1} {:>9.1}",
                latencies.len(),
                latencies.len() as f64 / elapsed.as_secs_f64(),
                ms(at(0.50)),
                ms(at(0.99)),
                ms(*latencies.last().unwrap())
            );
        }
    }
}

/// Every client POSTs its CSR `REQUESTS_PER_CLIENT` times; the wall time from the common start and
/// each request's latency.
fn run(url: &str, csrs: &[String]) -> (Duration, Vec<Duration>) {
    let barrier = Arc::new(Barrier::new(CLIENTS + 1));
    let threads = csrs
        .iter()
        .enumerate()
        .map(|(n, csr)| {
            let (url, barrier) = (url.to_string(), barrier.clone());
            let body = serde_json::json!({"cluster_uuid": CLUSTER, "csr": csr}).to_string();
            std::thread::spawn(move || {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(120)).build();
                barrier.wait();
                (0..REQUESTS_PER_CLIENT)
                    .map(|_| {
                        let started = Instant::now();
                        let response = agent
                            .post(&url)
                            .set("X-Auth-Token", &format!("tok-{n}"))
                            .set("OpenStack-API-Version", "container-infra latest")
                            .set("Content-Type", "application/json")
                            .send_string(&body)
                            .unwrap_or_else(|e| panic!("client {n}: {e}"));
                        assert_eq!(response.status(), 201);
                        let _ = response.into_string().unwrap();
                        started.elapsed()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect::<Vec<_>>();
    barrier.wait();
    let started = Instant::now();
    let latencies = threads.into_iter().flat_map(|t| t.join().unwrap()).collect::<Vec<_>>();
    (started.elapsed(), latencies)
}

/// A kubelet CSR for node `n`.
fn csr(key: &KeyPair, n: usize) -> String {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, format!("system:node:bench-{n}"));
    params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
    params.subject_alt_names = vec![
        SanType::IpAddress([10, 0, (n / 250) as u8, (n % 250) as u8].into()),
        SanType::DnsName(format!("bench-{n}").try_into().unwrap()),
    ];
    params.serialize_request(key).unwrap().pem().unwrap()
}

/// An RSA 2048 key (rcgen cannot make RSA keys; openssl can, and rcgen signs with them).
fn rsa_2048() -> KeyPair {
    let out = Command::new("openssl")
        .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"])
        .output()
        .unwrap();
    assert!(out.status.success());
    KeyPair::from_pkcs8_pem_and_sign_algo(&String::from_utf8(out.stdout).unwrap(), &rcgen::PKCS_RSA_SHA256).unwrap()
}

/// Keystone's token API on loopback: any `tok-*` token is user `bench` (the cluster's trustee).
fn keystone_stand_in() -> Loopback {
    Loopback::builder()
        .workers(8)
        .serve(|request| {
            let subject = request.header("X-Subject-Token").unwrap_or_default();
            let expires = "2999-01-01T00:00:00.000000Z";
            let (status, body) = match request.method.as_str() {
                "POST" => (201, serde_json::json!({"token": {"expires_at": expires}})),
                _ if subject.starts_with("tok-") => {
                    (200, serde_json::json!({"token": {"user": {"id": "bench"}, "expires_at": expires}}))
                }
                _ => (404, serde_json::json!({"error": {"code": 404}})),
            };
            Reply::text(status, body.to_string()).header("X-Subject-Token", "service-token")
        })
        .unwrap()
}
