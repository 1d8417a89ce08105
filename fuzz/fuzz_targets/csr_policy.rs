//! Whatever a CSR holds, a certificate serve signs from it is a node's: never in `system:masters` (in any
//! string type), never a CA, never able to sign certificates.
#![no_main]

use std::sync::{Arc, OnceLock};

use hearth_server::serve::ca::{CaStore, ClusterCa};
use hearth_server::serve::cluster::{ClusterUuid, StateDir};
use hearth_server::serve::csr::Csr;
use hearth_server::serve::policy;
use libfuzzer_sys::fuzz_target;
use x509_parser::prelude::*;

fn ca() -> &'static Arc<ClusterCa> {
    static CA: OnceLock<(tempfile::TempDir, Arc<ClusterCa>)> = OnceLock::new();
    &CA.get_or_init(|| {
        let dir = tempfile::tempdir().expect("a temporary state directory");
        let store = CaStore::new(StateDir::new(dir.path()), 30);
        let uuid = ClusterUuid::parse("5d12f6fd-a196-4bf0-ae4c-1f639a523a52").expect("a cluster uuid");
        let (ca, _) = store.get_or_create(&uuid).expect("a cluster CA");
        (dir, ca)
    })
    .1
}

fuzz_target!(|der: &[u8]| {
    let Ok(csr) = Csr::from_der(der) else { return };
    let Ok(grant) = policy::decide(&csr) else { return };
    let issued = ca().sign(&grant, 1).expect("a granted CSR signs");
    let (_, pem) = parse_x509_pem(issued.pem.as_bytes()).expect("the issued PEM parses");
    let cert = pem.parse_x509().expect("the issued certificate parses");
    for o in cert.subject().iter_organization() {
        let value = o.as_str().map(str::to_owned).unwrap_or_else(|_| String::from_utf8_lossy(o.as_slice()).into());
        assert!(!value.contains("system:masters"), "a grant carries O={value:?}: {:?}", csr.subject_text());
    }
    let constraints = cert.basic_constraints().expect("one basicConstraints at most");
    assert!(!constraints.is_some_and(|bc| bc.value.ca), "a grant is a CA: {}", csr.subject_text());
    let usage = cert.key_usage().expect("one keyUsage at most");
    assert!(!usage.is_some_and(|ku| ku.value.key_cert_sign()), "a grant signs certificates: {}", csr.subject_text());
});
