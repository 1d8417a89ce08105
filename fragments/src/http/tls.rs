//! TLS for the client: the system's trust store plus the OpenStack CA (or no verification, as
//! `verify_ca: false` asks), and a request's own identity for the cluster's services.

use super::{HttpError, HttpSettings};
use crate::config::Secret;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::fmt;
use std::sync::Arc;

/// The TLS identity of a request to a service of the cluster rather than of the cloud (etcd, the
/// Kubernetes API): trust the cluster CA only (neither the system store nor the OpenStack CA) and present a
/// client certificate. Parsed when the request is sent, so a dry run, which sends nothing, never needs the
/// files. [`Debug`](fmt::Debug) names where the PEMs came from, never the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientIdentity {
    /// Where the PEMs were read, for errors: `/etc/kubernetes/certs/{ca.crt,server.crt,server.key}`.
    pub source: String,
    pub ca_pem: String,
    /// The client certificate, optionally followed by intermediates.
    pub cert_pem: String,
    pub key_pem: Secret,
}

impl fmt::Debug for ClientIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientIdentity").field("source", &self.source).finish_non_exhaustive()
    }
}

impl ClientIdentity {
    /// The rustls configuration for this identity.
    pub(super) fn tls_config(&self) -> Result<Arc<ClientConfig>, HttpError> {
        let bad = |why: String| HttpError::Config(format!("TLS identity from {}: {why}", self.source));
        let mut roots = RootCertStore::empty();
        for (i, ca) in pem_certificates(&self.ca_pem).map_err(|e| bad(format!("CA: {e}")))?.into_iter().enumerate() {
            roots.add(ca).map_err(|e| bad(format!("CA certificate #{} is not a usable trust anchor: {e}", i + 1)))?;
        }
        let chain = pem_certificates(&self.cert_pem).map_err(|e| bad(format!("client certificate: {e}")))?;
        // The parser's own errors may quote the PEM: name the problem only.
        let key = match rustls_pemfile::private_key(&mut self.key_pem.expose().as_bytes()) {
            Ok(Some(key)) => key,
            Ok(None) => return Err(bad("client key: no PEM private key found".into())),
            Err(_) => return Err(bad("client key: unreadable PEM".into())),
        };
        let config = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| HttpError::Config(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| bad(format!("client certificate and key: {e}")))?;
        Ok(Arc::new(config))
    }
}

pub(super) fn tls_config(settings: &HttpSettings) -> Result<Arc<ClientConfig>, HttpError> {
    // Parsed even when verification is off so a broken bundle is reported, not silently ignored.
    let extra = extra_ca_certs(&settings.extra_ca_pem)?;
    // Explicit provider: a process-wide default may be unset or, with several crypto backends in the
    // dependency tree, ambiguous.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| HttpError::Config(format!("TLS: {e}")))?;
    let config = if settings.verify_tls {
        let mut roots = RootCertStore::empty();
        // The system store may be missing or partly unreadable in minimal images; the extra CAs may be
        // all this node needs, so take what loads.
        roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        for (i, cert) in extra.into_iter().enumerate() {
            roots.add(cert).map_err(|e| {
                HttpError::Config(format!("extra CA certificate #{} is not a usable trust anchor: {e}", i + 1))
            })?;
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder.dangerous().with_custom_certificate_verifier(Arc::new(AcceptAnyCert(provider))).with_no_client_auth()
    };
    Ok(Arc::new(config))
}

fn extra_ca_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, HttpError> {
    if pem.trim().is_empty() {
        return Ok(Vec::new());
    }
    pem_certificates(pem).map_err(|why| HttpError::Config(format!("extra CA bundle: {why}")))
}

/// Every certificate of a PEM bundle; an error for anything else in it, or for no certificate at all.
pub(super) fn pem_certificates(pem: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let mut certs = Vec::new();
    for (i, item) in rustls_pemfile::read_all(&mut pem.as_bytes()).enumerate() {
        match item.map_err(|e| format!("PEM section #{} is unreadable: {e}", i + 1))? {
            rustls_pemfile::Item::X509Certificate(cert) => certs.push(cert),
            _ => return Err(format!("PEM section #{} is not a certificate (a key?)", i + 1)),
        }
    }
    if certs.is_empty() {
        return Err("no PEM certificate found (expected -----BEGIN CERTIFICATE-----)".into());
    }
    Ok(certs)
}

/// Accepts any server certificate. Only used when `verify_tls` is false, which mirrors Magnum's
/// `VERIFY_CA=False` (its scripts then run `curl -k`): clouds with self-signed endpoints must still be
/// able to build clusters. Handshake signatures are still checked, so the peer at least holds the key of
/// the certificate it shows.
#[derive(Debug)]
struct AcceptAnyCert(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
