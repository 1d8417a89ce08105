//! CPU time the certs step spends on its own work per certificate: a fresh key plus a signed CSR, for each
//! key algorithm (`cargo bench -p hearth-fragments --bench node_keys`). Not a timed test: it prints the
//! figures for the record (Magnum generated RSA 4096 keys; Hearth defaults to ECDSA P-256).
//!
//! CPU time of the calling thread, so other load on the machine does not count; RSA generation is
//! randomised (prime search), hence min/median/max.

use hearth_fragments::config::KeyAlgorithm;
use hearth_fragments::pki::{CertSpec, ExtendedUsage, NodeKey, San, Subject};
use rustix::time::{clock_gettime, ClockId};
use std::time::Duration;

fn thread_cpu() -> Duration {
    let t = clock_gettime(ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn main() {
    let spec = CertSpec {
        subject: Subject { common_name: "system:node:bench-0".into(), organization: Some("system:nodes".into()) },
        sans: vec![San::Ip("10.0.0.5".parse().unwrap()), San::Dns("bench-0".into())],
        extended_usages: vec![ExtendedUsage::ClientAuth, ExtendedUsage::ServerAuth],
    };
    // Few RSA 4096 rounds: each costs about a second.
    let rounds = |algorithm| match algorithm {
        KeyAlgorithm::EcdsaP256 => 500,
        KeyAlgorithm::Rsa2048 => 20,
        KeyAlgorithm::Rsa4096 => 8,
    };
    println!("key + CSR per certificate, CPU time of one thread");
    println!(
        "{:<11} {:>6} {:>12} {:>12} {:>12} {:>18}",
        "algorithm", "rounds", "min", "median", "max", "a node (2 certs)"
    );
    for algorithm in KeyAlgorithm::ALL {
        let mut times: Vec<Duration> = (0..rounds(algorithm))
            .map(|_| {
                let start = thread_cpu();
                let key = NodeKey::generate(algorithm).expect("key");
                let csr = key.request(&spec).expect("csr");
                std::hint::black_box((key.to_pem(), csr));
                thread_cpu() - start
            })
            .collect();
        times.sort();
        let median = times[times.len() / 2];
        println!(
            "{:<11} {:>6} {:>12.3?} {:>12.3?} {:>12.3?} {:>18.3?}",
            algorithm.name(),
            times.len(),
            times[0],
            median,
            times[times.len() - 1],
            median * 2
        );
    }
}
