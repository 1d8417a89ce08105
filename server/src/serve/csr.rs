//! Reading a PKCS#10 certificate signing request into plain facts — subject attributes in order, the
//! public key, and every requested extension with its criticality — so the signing policy can judge
//! all of it. Anything that is not a well-formed, self-signed CSR is a [`CsrError`] (HTTP 400, but 403
//! for an RSA key under 2048 bits).

use std::fmt;
use std::net::IpAddr;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::cri_attributes::ParsedCriAttribute;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry as oids;
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;

/// Why a request body's CSR could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CsrError {
    #[error("the CSR is not PEM (expected -----BEGIN CERTIFICATE REQUEST-----): {0}")]
    NotPem(String),
    #[error("the CSR is not a valid PKCS#10 request: {0}")]
    NotPkcs10(String),
    #[error("the CSR's signature does not verify with its own public key")]
    BadSignature,
    #[error("the CSR's public key is not supported ({0}); use ECDSA P-256/P-384, Ed25519 or RSA")]
    UnsupportedKey(String),
    #[error("the CSR is malformed: {0}")]
    Malformed(String),
    /// Not a parse error but a refusal (HTTP 403): such keys are not signed, and ring will not even
    /// check their signature.
    #[error("an RSA key of {0} bits is too weak; at least {MIN_RSA_BITS} bits are signed")]
    WeakKey(usize),
}

/// The smallest RSA modulus signed (and the smallest whose signature ring verifies).
pub const MIN_RSA_BITS: usize = 2048;

/// A subject attribute type the policy knows; others are kept by OID so the policy can name them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttributeType {
    CommonName,
    Organization,
    OrganizationalUnit,
    Country,
    State,
    Locality,
    Other(String),
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AttributeType::CommonName => "CN",
            AttributeType::Organization => "O",
            AttributeType::OrganizationalUnit => "OU",
            AttributeType::Country => "C",
            AttributeType::State => "ST",
            AttributeType::Locality => "L",
            AttributeType::Other(oid) => oid,
        })
    }
}

/// How an attribute value was encoded; kept so the certificate carries the subject as requested.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StringKind {
    Utf8,
    Printable,
    Ia5,
    /// T61, BMP, Universal…: legal but unused by anything that makes node CSRs.
    Other,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attribute {
    pub kind: AttributeType,
    pub value: String,
    pub string_kind: StringKind,
    /// Shares its RDN with other attributes (`CN=a+O=b`).
    pub multi_valued_rdn: bool,
}

/// A subjectAltName entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    /// Anything else (e-mail, URI, otherName, directory name…), described for the refusal.
    Other(String),
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Other(what) => f.write_str(what),
        }
    }
}

/// The key usage bits a CSR asks for.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KeyUsageBits {
    pub digital_signature: bool,
    pub content_commitment: bool,
    pub key_encipherment: bool,
    pub data_encipherment: bool,
    pub key_agreement: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
    pub encipher_only: bool,
    pub decipher_only: bool,
}

/// The extended key usages a CSR asks for.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExtendedKeyUsages {
    pub server_auth: bool,
    pub client_auth: bool,
    /// Every other purpose, by name (`codeSigning`, `OCSPSigning`, `anyExtendedKeyUsage`, an OID…).
    pub others: Vec<String>,
}

/// An extension as requested: its value and whether the CSR marked it critical.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requested<T> {
    pub value: T,
    pub critical: bool,
}

/// The public key: its DER SubjectPublicKeyInfo, as the certificate will carry it, and what it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub spki_der: Vec<u8>,
    pub kind: KeyKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    EcdsaP256,
    EcdsaP384,
    Ed25519,
    Rsa { bits: usize },
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyKind::EcdsaP256 => f.write_str("ECDSA P-256"),
            KeyKind::EcdsaP384 => f.write_str("ECDSA P-384"),
            KeyKind::Ed25519 => f.write_str("Ed25519"),
            KeyKind::Rsa { bits } => write!(f, "RSA {bits}"),
        }
    }
}

/// Everything a CSR asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Csr {
    pub subject: Vec<Attribute>,
    pub public_key: PublicKeyInfo,
    pub subject_alt_names: Vec<San>,
    pub key_usage: Option<Requested<KeyUsageBits>>,
    pub extended_key_usage: Option<Requested<ExtendedKeyUsages>>,
    /// The cA flag of basicConstraints, if the extension is present.
    pub basic_constraints_ca: Option<Requested<bool>>,
    /// Extensions the policy never copies (subjectKeyIdentifier included: the signer computes its own).
    pub other_extensions: Vec<Requested<String>>,
}

impl Csr {
    /// Parses a PEM CSR and checks its self-signature (proof that the caller holds the private key).
    pub fn from_pem(pem: &str) -> Result<Csr, CsrError> {
        let (_, block) = x509_parser::pem::parse_x509_pem(pem.trim_start().as_bytes())
            .map_err(|e| CsrError::NotPem(e.to_string()))?;
        if block.label != "CERTIFICATE REQUEST" && block.label != "NEW CERTIFICATE REQUEST" {
            return Err(CsrError::NotPem(format!("found a PEM {:?} block", block.label)));
        }
        Csr::from_der(&block.contents)
    }

    pub fn from_der(der: &[u8]) -> Result<Csr, CsrError> {
        let (rest, csr) = X509CertificationRequest::from_der(der).map_err(|e| CsrError::NotPkcs10(e.to_string()))?;
        if !rest.is_empty() {
            return Err(CsrError::NotPkcs10(format!("{} bytes after the request", rest.len())));
        }
        let info = &csr.certification_request_info;
        let public_key = public_key(info)?;
        if let KeyKind::Rsa { bits } = public_key.kind {
            if bits < MIN_RSA_BITS {
                return Err(CsrError::WeakKey(bits));
            }
        }
        csr.verify_signature().map_err(|_| CsrError::BadSignature)?;

        let mut subject = Vec::new();
        for rdn in info.subject.iter() {
            let multi_valued_rdn = rdn.iter().count() > 1;
            for attribute in rdn.iter() {
                let oid = attribute.attr_type();
                let kind = match oid {
                    o if *o == oids::OID_X509_COMMON_NAME => AttributeType::CommonName,
                    o if *o == oids::OID_X509_ORGANIZATION_NAME => AttributeType::Organization,
                    o if *o == oids::OID_X509_ORGANIZATIONAL_UNIT => AttributeType::OrganizationalUnit,
                    o if *o == oids::OID_X509_COUNTRY_NAME => AttributeType::Country,
                    o if *o == oids::OID_X509_STATE_OR_PROVINCE_NAME => AttributeType::State,
                    o if *o == oids::OID_X509_LOCALITY_NAME => AttributeType::Locality,
                    other => AttributeType::Other(other.to_id_string()),
                };
                let any = attribute.attr_value();
                let string_kind = match any.header.tag() {
                    Tag::Utf8String => StringKind::Utf8,
                    Tag::PrintableString => StringKind::Printable,
                    Tag::Ia5String => StringKind::Ia5,
                    _ => StringKind::Other,
                };
                let value = attribute
                    .as_str()
                    .map_err(|_| CsrError::Malformed(format!("the subject's {kind} is not a readable string")))?
                    .to_string();
                subject.push(Attribute { kind, value, string_kind, multi_valued_rdn });
            }
        }

        let mut parsed = Csr {
            subject,
            public_key,
            subject_alt_names: Vec::new(),
            key_usage: None,
            extended_key_usage: None,
            basic_constraints_ca: None,
            other_extensions: Vec::new(),
        };
        let mut extension_requests = info
            .iter_attributes()
            .filter_map(|attribute| match attribute.parsed_attribute() {
                ParsedCriAttribute::ExtensionRequest(request) => Some(request),
                _ => None,
            })
            .collect::<Vec<_>>();
        if extension_requests.len() > 1 {
            return Err(CsrError::Malformed("more than one extensionRequest attribute".into()));
        }
        let mut seen = Vec::new();
        for extension in extension_requests.pop().map(|r| r.extensions.as_slice()).unwrap_or_default() {
            if seen.contains(&extension.oid) {
                return Err(CsrError::Malformed(format!("extension {} requested twice", extension.oid.to_id_string())));
            }
            seen.push(extension.oid.clone());
            parsed.add_extension(extension)?;
        }
        Ok(parsed)
    }

    fn add_extension(&mut self, extension: &x509_parser::extensions::X509Extension<'_>) -> Result<(), CsrError> {
        let critical = extension.critical;
        match extension.parsed_extension() {
            ParsedExtension::SubjectAlternativeName(san) => {
                for name in &san.general_names {
                    self.subject_alt_names.push(san_of(name)?);
                }
            }
            ParsedExtension::KeyUsage(usage) => {
                let value = KeyUsageBits {
                    digital_signature: usage.digital_signature(),
                    content_commitment: usage.non_repudiation(),
                    key_encipherment: usage.key_encipherment(),
                    data_encipherment: usage.data_encipherment(),
                    key_agreement: usage.key_agreement(),
                    key_cert_sign: usage.key_cert_sign(),
                    crl_sign: usage.crl_sign(),
                    encipher_only: usage.encipher_only(),
                    decipher_only: usage.decipher_only(),
                };
                self.key_usage = Some(Requested { value, critical });
            }
            ParsedExtension::ExtendedKeyUsage(eku) => {
                let mut others = Vec::new();
                for (asked, name) in [
                    (eku.any, "anyExtendedKeyUsage"),
                    (eku.code_signing, "codeSigning"),
                    (eku.email_protection, "emailProtection"),
                    (eku.time_stamping, "timeStamping"),
                    (eku.ocsp_signing, "OCSPSigning"),
                ] {
                    if asked {
                        others.push(name.to_string());
                    }
                }
                others.extend(eku.other.iter().map(|oid| oid.to_id_string()));
                let value = ExtendedKeyUsages { server_auth: eku.server_auth, client_auth: eku.client_auth, others };
                self.extended_key_usage = Some(Requested { value, critical });
            }
            ParsedExtension::BasicConstraints(constraints) => {
                self.basic_constraints_ca = Some(Requested { value: constraints.ca, critical });
            }
            ParsedExtension::ParseError { error } => {
                return Err(CsrError::Malformed(format!(
                    "extension {} cannot be read: {error}",
                    extension_name(&extension.oid)
                )));
            }
            _ => self.other_extensions.push(Requested { value: extension_name(&extension.oid), critical }),
        }
        Ok(())
    }

    /// The first CN, if any.
    pub fn common_name(&self) -> Option<&str> {
        self.values(AttributeType::CommonName).next()
    }

    /// Every value of one attribute type, in order.
    pub fn values(&self, kind: AttributeType) -> impl Iterator<Item = &str> {
        self.subject.iter().filter(move |a| a.kind == kind).map(|a| a.value.as_str())
    }

    /// The subject as `CN=…, O=…` for messages.
    pub fn subject_text(&self) -> String {
        let parts = self.subject.iter().map(|a| format!("{}={}", a.kind, a.value)).collect::<Vec<_>>();
        if parts.is_empty() {
            "(empty)".into()
        } else {
            parts.join(", ")
        }
    }
}

fn public_key(
    info: &x509_parser::certification_request::X509CertificationRequestInfo<'_>,
) -> Result<PublicKeyInfo, CsrError> {
    let spki = &info.subject_pki;
    let algorithm = &spki.algorithm.algorithm;
    let kind = if *algorithm == oids::OID_PKCS1_RSAENCRYPTION {
        match spki.parsed() {
            Ok(PublicKey::RSA(rsa)) => KeyKind::Rsa { bits: rsa.key_size() },
            _ => return Err(CsrError::Malformed("the RSA public key cannot be read".into())),
        }
    } else if *algorithm == oids::OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki.algorithm.parameters.as_ref().and_then(|p| p.as_oid().ok());
        match curve {
            Some(c) if c == oids::OID_EC_P256 => KeyKind::EcdsaP256,
            Some(c) if c == oids::OID_NIST_EC_P384 => KeyKind::EcdsaP384,
            Some(c) => return Err(CsrError::UnsupportedKey(format!("EC curve {}", c.to_id_string()))),
            None => return Err(CsrError::UnsupportedKey("EC key without a named curve".into())),
        }
    } else if *algorithm == oids::OID_SIG_ED25519 {
        KeyKind::Ed25519
    } else {
        return Err(CsrError::UnsupportedKey(format!("algorithm {}", algorithm.to_id_string())));
    };
    Ok(PublicKeyInfo { spki_der: spki.raw.to_vec(), kind })
}

fn san_of(name: &GeneralName<'_>) -> Result<San, CsrError> {
    Ok(match name {
        GeneralName::DNSName(dns) => San::Dns(dns.to_string()),
        GeneralName::IPAddress(bytes) => match bytes.len() {
            4 => San::Ip(IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("length checked"))),
            16 => San::Ip(IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("length checked"))),
            n => return Err(CsrError::Malformed(format!("an IP address SAN of {n} bytes"))),
        },
        GeneralName::RFC822Name(mail) => San::Other(format!("email:{mail}")),
        GeneralName::URI(uri) => San::Other(format!("URI:{uri}")),
        GeneralName::OtherName(oid, _) => San::Other(format!("otherName:{}", oid.to_id_string())),
        GeneralName::DirectoryName(name) => San::Other(format!("dirName:{name}")),
        GeneralName::RegisteredID(oid) => San::Other(format!("RID:{}", oid.to_id_string())),
        GeneralName::X400Address(_) => San::Other("x400Address".into()),
        GeneralName::EDIPartyName(_) => San::Other("ediPartyName".into()),
        GeneralName::Invalid(..) => return Err(CsrError::Malformed("a subjectAltName entry cannot be read".into())),
    })
}

/// An extension's usual name (`authorityKeyIdentifier`), else its dotted OID.
fn extension_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    oids::OidRegistry::default()
        .with_x509()
        .get(oid)
        .map(|entry| entry.sn().to_string())
        .unwrap_or_else(|| oid.to_id_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DnType, DnValue, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType};

    fn csr_pem(params: &CertificateParams, key: &KeyPair) -> String {
        params.serialize_request(key).unwrap().pem().unwrap()
    }

    #[test]
    fn a_kubelet_csr_reads_back_as_asked() {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "system:node:minion-0");
        params.distinguished_name.push(DnType::OrganizationName, "system:nodes");
        params.distinguished_name.push(DnType::CountryName, DnValue::PrintableString("US".try_into().unwrap()));
        params.subject_alt_names =
            vec![SanType::IpAddress("10.0.0.5".parse().unwrap()), SanType::DnsName("minion-0".try_into().unwrap())];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::ServerAuth];
        params.is_ca = IsCa::ExplicitNoCa;
        let csr = Csr::from_pem(&csr_pem(&params, &key)).unwrap();
        assert_eq!(csr.common_name(), Some("system:node:minion-0"));
        assert_eq!(csr.values(AttributeType::Organization).collect::<Vec<_>>(), ["system:nodes"]);
        assert_eq!(csr.subject[2].string_kind, StringKind::Printable);
        assert_eq!(csr.subject_text(), "CN=system:node:minion-0, O=system:nodes, C=US");
        assert_eq!(csr.subject_alt_names, [San::Ip("10.0.0.5".parse().unwrap()), San::Dns("minion-0".into())]);
        let usage = csr.key_usage.unwrap();
        assert!(usage.critical && usage.value.digital_signature && usage.value.key_encipherment);
        assert!(!usage.value.key_cert_sign);
        let eku = csr.extended_key_usage.unwrap().value;
        assert!(eku.server_auth && eku.client_auth && eku.others.is_empty());
        assert_eq!(csr.basic_constraints_ca, Some(Requested { value: false, critical: true }));
        assert_eq!(csr.public_key.kind, KeyKind::EcdsaP256);
        assert_eq!(csr.public_key.spki_der, rcgen::PublicKeyData::subject_public_key_info(&key));
    }

    #[test]
    fn garbage_and_tampered_csrs_are_errors() {
        assert!(matches!(Csr::from_pem("hello"), Err(CsrError::NotPem(_))));
        let cert = rcgen::generate_simple_self_signed(vec!["x".into()]).unwrap().cert.pem();
        assert!(matches!(Csr::from_pem(&cert), Err(CsrError::NotPem(m)) if m.contains("CERTIFICATE")));
        let junk = "-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8=\n-----END CERTIFICATE REQUEST-----\n";
        assert!(matches!(Csr::from_pem(junk), Err(CsrError::NotPkcs10(_))));

        // The same request body under another key's signature: no proof of possession.
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, "kubernetes");
        let der = params.serialize_request(&key).unwrap().der().to_vec();
        let mut tampered = der.clone();
        let at = der.windows(10).position(|w| w == b"kubernetes").unwrap();
        tampered[at] = b'K';
        assert_eq!(Csr::from_der(&tampered), Err(CsrError::BadSignature));
        assert!(Csr::from_der(&der).is_ok());
    }
}
