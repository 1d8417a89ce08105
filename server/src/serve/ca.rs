//! One certificate authority per cluster, kept on disk under `clusters/<uuid>/`: `ca.key` (PKCS#8 PEM,
//! 0600), `ca.crt` (PEM, 0644), in a 0700 directory.
//!
//! The CA key is ECDSA P-256: small, fast to sign with (a signature is tens of microseconds, which is
//! what lets one server sign for hundreds of nodes booting at once), and accepted by everything that
//! verifies these certificates (Kubernetes, etcd, OpenSSL). Magnum used RSA 2048. The CA certificate:
//! subject and issuer `CN=<cluster uuid>` (the uuid, not the name: names can change and repeat),
//! basicConstraints `CA:TRUE, pathlen:0` (critical), keyUsage keyCertSign + cRLSign (critical), as
//! Magnum's; valid from a day ago (clock skew, as Magnum) for `ca_validity_days`.
//!
//! Created on first use (or by `hearth-server ca init`), exactly once: creation holds an exclusive lock
//! on `ca.lock` (across processes) and a mutex (across threads), writes the key and then the
//! certificate atomically, and a CA counts as existing only once its certificate is in place. A key
//! left without a certificate by a crash is replaced; an existing CA is never replaced.

use super::cluster::{ClusterUuid, StateDir};
use super::policy::Grant;
use anyhow::{bail, Context as _, Result};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose,
    PublicKeyData as _, SerialNumber, SubjectPublicKeyInfo,
};
use ring::rand::SecureRandom as _;
use std::collections::HashMap;
use std::fs::{File, OpenOptions, Permissions};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use time::{Duration, OffsetDateTime};

pub const CA_CERT: &str = "ca.crt";
pub const CA_KEY: &str = "ca.key";
const CA_LOCK: &str = "ca.lock";
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;
/// Certificates start a day in the past, as Magnum's do, so a node whose clock lags still accepts them.
const BACKDATE: Duration = Duration::days(1);

/// The CAs of all clusters, loaded once and kept in memory (a CA never changes once made).
#[derive(Debug)]
pub struct CaStore {
    state: StateDir,
    ca_validity_days: u32,
    loaded: Mutex<HashMap<ClusterUuid, Arc<ClusterCa>>>,
    /// Held while loading or creating, so two threads never race on the files.
    creating: Mutex<()>,
}

impl CaStore {
    pub fn new(state: StateDir, ca_validity_days: u32) -> CaStore {
        CaStore { state, ca_validity_days, loaded: Mutex::default(), creating: Mutex::default() }
    }

    pub fn cert_path(&self, uuid: &ClusterUuid) -> PathBuf {
        self.state.cluster_dir(uuid).join(CA_CERT)
    }

    /// The cluster's CA, created if it does not exist yet; `true` when this call created it.
    pub fn get_or_create(&self, uuid: &ClusterUuid) -> Result<(Arc<ClusterCa>, bool)> {
        if let Some(ca) = self.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(uuid) {
            return Ok((ca.clone(), false));
        }
        let _creating = self.creating.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(ca) = self.loaded.lock().unwrap_or_else(|p| p.into_inner()).get(uuid) {
            return Ok((ca.clone(), false));
        }
        let (ca, created) = self.load_or_create(uuid).with_context(|| format!("the CA of cluster {uuid}"))?;
        let ca = Arc::new(ca);
        self.loaded.lock().unwrap_or_else(|p| p.into_inner()).insert(uuid.clone(), ca.clone());
        Ok((ca, created))
    }

    fn load_or_create(&self, uuid: &ClusterUuid) -> Result<(ClusterCa, bool)> {
        let dir = self.state.ensure_cluster_dir(uuid)?;
        let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
        let lock_path = dir.join(CA_LOCK);
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(KEY_MODE)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("locking {}", lock_path.display()))?;
        if cert_path.exists() {
            return Ok((ClusterCa::load(uuid, &cert_path, &key_path)?, false));
        }
        let (cert_pem, key_pem) = generate(uuid, self.ca_validity_days)?;
        hearth_fragments::host::write_state_file(&key_path, key_pem.as_bytes(), KEY_MODE)
            .with_context(|| format!("writing {}", key_path.display()))?;
        hearth_fragments::host::write_state_file(&cert_path, cert_pem.as_bytes(), CERT_MODE)
            .with_context(|| format!("writing {}", cert_path.display()))?;
        Ok((ClusterCa::load(uuid, &cert_path, &key_path)?, true))
    }
}

/// A self-signed CA certificate and its key, both PEM.
fn generate(uuid: &ClusterUuid, validity_days: u32) -> Result<(String, String)> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).context("generating the CA key")?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, uuid.as_str());
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let now = OffsetDateTime::now_utc();
    params.not_before = now - BACKDATE;
    params.not_after = now + Duration::days(i64::from(validity_days));
    params.serial_number = Some(random_serial()?);
    let cert = params.self_signed(&key).context("self-signing the CA certificate")?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// 128 random bits, positive and of fixed length (Magnum used a random UUID's 122).
fn random_serial() -> Result<SerialNumber> {
    let mut bytes = [0u8; 16];
    ring::rand::SystemRandom::new().fill(&mut bytes).map_err(|_| anyhow::anyhow!("the system RNG failed"))?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// One cluster's CA, ready to sign.
pub struct ClusterCa {
    cert_pem: String,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for ClusterCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCa").field("not_after", &self.not_after).finish_non_exhaustive()
    }
}

/// A signed certificate.
#[derive(Clone, Debug)]
pub struct Issued {
    pub pem: String,
    /// Hex, as `openssl x509 -serial` prints it.
    pub serial: String,
    pub not_after: OffsetDateTime,
}

impl ClusterCa {
    fn load(uuid: &ClusterUuid, cert_path: &Path, key_path: &Path) -> Result<ClusterCa> {
        tighten_key_mode(key_path)?;
        let cert_pem =
            std::fs::read_to_string(cert_path).with_context(|| format!("reading {}", cert_path.display()))?;
        let key_pem = std::fs::read_to_string(key_path).with_context(|| format!("reading {}", key_path.display()))?;
        let key = KeyPair::from_pem(&key_pem).with_context(|| format!("reading the key in {}", key_path.display()))?;
        let (_, block) = x509_parser::pem::parse_x509_pem(cert_pem.as_bytes())
            .map_err(|e| anyhow::anyhow!("{} is not PEM: {e}", cert_path.display()))?;
        let cert =
            block.parse_x509().map_err(|e| anyhow::anyhow!("{} is not a certificate: {e}", cert_path.display()))?;
        if cert.public_key().raw != key.subject_public_key_info().as_slice() {
            bail!("{} and {} do not belong together", cert_path.display(), key_path.display());
        }
        if cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok()) != Some(uuid.as_str()) {
            bail!("{} is not the CA of cluster {uuid} (its subject is {})", cert_path.display(), cert.subject());
        }
        let not_after = cert.validity().not_after.to_datetime();
        let issuer = Issuer::from_ca_cert_der(&block.contents.clone().into(), key)
            .with_context(|| format!("reading {}", cert_path.display()))?;
        Ok(ClusterCa { cert_pem, not_after, issuer })
    }

    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// Signs what the policy granted: valid from a day ago for `validity_days`, but never past the CA's
    /// own end (a certificate its CA no longer vouches for is no use to anyone).
    pub fn sign(&self, grant: &Grant, validity_days: u32) -> Result<Issued> {
        self.sign_for(grant, Duration::days(i64::from(validity_days)))
    }

    /// [`ClusterCa::sign`] for a validity of any length (an operator's short-lived kubeconfig).
    pub fn sign_for(&self, grant: &Grant, validity: Duration) -> Result<Issued> {
        let public_key = SubjectPublicKeyInfo::from_der(&grant.spki_der).context("reading the CSR's public key")?;
        let mut params = CertificateParams::default();
        params.distinguished_name = grant.subject.clone();
        params.subject_alt_names = grant.subject_alt_names.clone();
        params.key_usages = grant.key_usages.clone();
        params.extended_key_usages = grant.extended_key_usages.clone();
        params.is_ca = IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        let now = OffsetDateTime::now_utc();
        params.not_before = now - BACKDATE;
        params.not_after = (now + validity).min(self.not_after);
        let serial = random_serial()?;
        let serial_hex = serial.as_ref().iter().map(|b| format!("{b:02X}")).collect::<String>();
        params.serial_number = Some(serial);
        let cert = params.signed_by(&public_key, &self.issuer).context("signing the certificate")?;
        // rcgen re-encodes the key from its parts: make sure the certificate holds exactly the CSR's key.
        let (_, parsed) = x509_parser::parse_x509_certificate(cert.der())
            .map_err(|e| anyhow::anyhow!("re-reading the certificate: {e}"))?;
        if parsed.public_key().raw != grant.spki_der.as_slice() {
            bail!("the signed certificate's public key differs from the CSR's");
        }
        Ok(Issued { pem: cert.pem(), serial: serial_hex, not_after: params.not_after })
    }
}

/// A CA key must never be readable by others; one that is (restored from a backup, copied by hand)
/// is narrowed rather than refused, and the fix is logged.
fn tighten_key_mode(key_path: &Path) -> Result<()> {
    let file = File::open(key_path).with_context(|| format!("opening {}", key_path.display()))?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        file.set_permissions(Permissions::from_mode(KEY_MODE))
            .with_context(|| format!("narrowing the mode of {}", key_path.display()))?;
        tracing::warn!("{} had mode {mode:04o}; set to {KEY_MODE:04o}", key_path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::csr::Csr;
    use crate::serve::policy;

    fn uuid() -> ClusterUuid {
        ClusterUuid::parse("5d12f6fd-a196-4bf0-ae4c-1f639a523a52").unwrap()
    }

    #[test]
    fn the_ca_is_created_once_with_private_files_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let store = CaStore::new(StateDir::new(dir.path()), 3650);
        let (ca, created) = store.get_or_create(&uuid()).unwrap();
        assert!(created);
        let (again, created) = store.get_or_create(&uuid()).unwrap();
        assert!(!created && Arc::ptr_eq(&ca, &again));
        let cluster = dir.path().join("clusters").join(uuid().as_str());
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&cluster.join(CA_KEY)), 0o600);
        assert_eq!(mode(&cluster.join(CA_CERT)), 0o644);
        assert_eq!(mode(&cluster), 0o700);

        // Another process (a second store) loads the same CA instead of making one.
        std::fs::set_permissions(cluster.join(CA_KEY), Permissions::from_mode(0o644)).unwrap();
        let (other, created) = CaStore::new(StateDir::new(dir.path()), 3650).get_or_create(&uuid()).unwrap();
        assert!(!created);
        assert_eq!(other.cert_pem(), ca.cert_pem());
        assert_eq!(mode(&cluster.join(CA_KEY)), 0o600, "a loose key mode is narrowed");
    }

    #[test]
    fn concurrent_first_requests_make_one_ca() {
        let dir = tempfile::tempdir().unwrap();
        let stores = (0..4).map(|_| Arc::new(CaStore::new(StateDir::new(dir.path()), 3650))).collect::<Vec<_>>();
        let pems = std::thread::scope(|scope| {
            let handles = (0..16)
                .map(|i| {
                    let store = stores[i % stores.len()].clone();
                    scope.spawn(move || store.get_or_create(&uuid()).unwrap())
                })
                .collect::<Vec<_>>();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        assert_eq!(pems.iter().filter(|(_, created)| *created).count(), 1);
        assert!(pems.iter().all(|(ca, _)| ca.cert_pem() == pems[0].0.cert_pem()));
    }

    #[test]
    fn a_certificate_never_outlives_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let (ca, _) = CaStore::new(StateDir::new(dir.path()), 10).get_or_create(&uuid()).unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "kubernetes");
        let csr = Csr::from_pem(&params.serialize_request(&key).unwrap().pem().unwrap()).unwrap();
        let issued = ca.sign(&policy::decide(&csr).unwrap(), 1825).unwrap();
        assert_eq!(issued.not_after, ca.not_after);
        assert_eq!(issued.serial.len(), 32);
    }

    #[test]
    fn mismatched_files_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        CaStore::new(StateDir::new(dir.path()), 10).get_or_create(&uuid()).unwrap();
        let cluster = dir.path().join("clusters").join(uuid().as_str());
        std::fs::write(cluster.join(CA_KEY), KeyPair::generate().unwrap().serialize_pem()).unwrap();
        let err = format!("{:#}", CaStore::new(StateDir::new(dir.path()), 10).get_or_create(&uuid()).unwrap_err());
        assert!(err.contains("do not belong together"), "{err}");
    }
}
