//! What a cluster's trustee may have signed — stricter than Magnum, which signed any subject for the
//! trustee (so a node's credentials could mint `O=system:masters`, i.e. cluster-admin).
//!
//! A trustee only obtains node identities:
//!
//! | CN | O | default extended key usage |
//! |---|---|---|
//! | `system:node:<name>` (name: a lower-case DNS subdomain, as Kubernetes node names are) | exactly `system:nodes` | serverAuth, clientAuth |
//! | `system:kube-proxy` | none, or `system:node-proxier` (Magnum's) | clientAuth |
//! | `kubernetes` (the API server; etcd uses the same certificate, as in Magnum) | none | serverAuth, clientAuth |
//! | `system:kube-controller-manager`, `system:kube-scheduler`, `hearth-agent` (the agent's API steps), `front-proxy-client` (the API server towards aggregated APIs) | none | clientAuth |
//!
//! Decisions, and why:
//! - `O=system:masters` is refused for every CN: it is cluster-admin, and no node needs it.
//! - `CN=kubernetes` carries no O at all. Magnum's API-server request has none, and the API server's
//!   identity already gets `system:kubelet-api-admin` through RBAC; any group would add to that.
//! - The masters' other clients each have their own user, with no O: the controller-manager and the
//!   scheduler the users Kubernetes' default RBAC authorises, the agent the rules of its masters' ABAC
//!   file, the front proxy only what `--requestheader-allowed-names` gives it. Magnum's masters used the
//!   API server's certificate for all of these.
//! - Besides CN and O, the subject may hold OU, C, ST and L (Magnum's node requests carry
//!   `OU=OpenStack/Magnum, C=US, ST=TX, L=Austin`); Kubernetes ignores them. Each attribute type at most
//!   once and one per RDN: a second CN or O would be read differently by different verifiers.
//! - SANs: DNS names (no wildcards) and IP addresses only.
//! - basicConstraints `CA:TRUE`, or keyCertSign / cRLSign in keyUsage, is refused (Magnum silently
//!   dropped a non-critical request); the certificate always says `CA:FALSE` (critical).
//! - keyUsage is limited to Magnum's `[x509] allowed_key_usage` (digitalSignature, keyEncipherment,
//!   contentCommitment); other bits are dropped, or refused when the CSR marks the extension critical,
//!   as Magnum did.
//! - extendedKeyUsage is limited to serverAuth and clientAuth (a node has no use for codeSigning,
//!   OCSPSigning or anyExtendedKeyUsage); without the extension, the identity's default above applies.
//! - subjectKeyIdentifier is always computed from the key (a requested one could mimic the CA's);
//!   authorityKeyIdentifier names the CA. Other extensions are dropped, or refused when critical.
//! - Keys: ECDSA P-256/P-384, Ed25519, RSA of at least 2048 bits (checked while reading the CSR, see
//!   [`super::csr`], since a shorter RSA key's signature is not even verified).
//!
//! What this cannot prevent: Magnum gives all nodes of a cluster one trustee, so any node can obtain the
//! API server's certificate or another node's identity. The policy stops escalation beyond the node
//! identities of the caller's own cluster, not impersonation within it.

use super::csr::{AttributeType, Csr, San, StringKind};
use rcgen::string::{Ia5String, PrintableString};
use rcgen::{DistinguishedName, DnType, DnValue, ExtendedKeyUsagePurpose, KeyUsagePurpose, SanType};
use std::fmt;

/// The group that makes a certificate cluster-admin.
pub const MASTERS_GROUP: &str = "system:masters";
pub const NODES_GROUP: &str = "system:nodes";
pub const NODE_PREFIX: &str = "system:node:";
pub const KUBE_PROXY_USER: &str = "system:kube-proxy";
pub const KUBE_PROXY_GROUP: &str = "system:node-proxier";
pub const API_SERVER_USER: &str = "kubernetes";
/// The masters' clients of the API that are neither nodes nor the API server (Hearth's agent names them
/// the same, `hearth_fragments::pki::identities`).
pub const MASTER_CLIENT_USERS: &[&str] =
    &["system:kube-controller-manager", "system:kube-scheduler", "hearth-agent", "front-proxy-client"];

/// The identity a granted certificate carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Identity {
    Node {
        name: String,
    },
    KubeProxy,
    ApiServer,
    /// One of [`MASTER_CLIENT_USERS`].
    MasterClient {
        user: &'static str,
    },
    /// A person, through `hearth-server cluster config` (never granted by [`decide`]: only who holds
    /// the state directory, and with it the CA key, can ask).
    Operator {
        user: String,
    },
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Node { name } => write!(f, "node {name}"),
            Identity::KubeProxy => f.write_str("kube-proxy"),
            Identity::ApiServer => f.write_str("API server"),
            Identity::MasterClient { user } => write!(f, "master client {user}"),
            Identity::Operator { user } => write!(f, "operator {user}"),
        }
    }
}

/// Why a CSR is refused (HTTP 403); the text goes to the caller and the log.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// What the certificate will say, decided from a CSR.
#[derive(Clone, Debug)]
pub struct Grant {
    pub identity: Identity,
    pub subject: DistinguishedName,
    pub subject_alt_names: Vec<SanType>,
    pub key_usages: Vec<KeyUsagePurpose>,
    pub extended_key_usages: Vec<ExtendedKeyUsagePurpose>,
    /// The CSR's SubjectPublicKeyInfo, DER, copied into the certificate unchanged.
    pub spki_der: Vec<u8>,
    /// What the CSR asked for and the certificate leaves out, for the log.
    pub dropped: Vec<String>,
}

/// Applies the policy to a CSR.
pub fn decide(csr: &Csr) -> Result<Grant, Refusal> {
    let refuse = |reason: String| Err(Refusal(reason));
    // The most dangerous asks first, so their refusal names them.
    if csr.values(AttributeType::Organization).any(|o| o == MASTERS_GROUP) {
        return refuse(format!("O={MASTERS_GROUP} (cluster-admin) is never issued to a node"));
    }
    if csr.basic_constraints_ca.as_ref().is_some_and(|bc| bc.value) {
        return refuse("the CSR asks for CA:TRUE; only end-entity certificates are issued".into());
    }
    if let Some(usage) = &csr.key_usage {
        for (asked, name) in [(usage.value.key_cert_sign, "keyCertSign"), (usage.value.crl_sign, "cRLSign")] {
            if asked {
                return refuse(format!("the CSR asks for key usage {name}, which only a CA has"));
            }
        }
    }

    let identity = identity(csr)?;
    let subject = subject(csr)?;
    let mut dropped = Vec::new();
    let subject_alt_names = subject_alt_names(&csr.subject_alt_names)?;
    let key_usages = key_usages(csr, &mut dropped)?;
    let extended_key_usages = extended_key_usages(csr, &identity)?;
    for extension in &csr.other_extensions {
        if extension.critical {
            return refuse(format!("critical extension {} is not allowed", extension.value));
        }
        dropped.push(extension.value.clone());
    }
    Ok(Grant {
        identity,
        subject,
        subject_alt_names,
        key_usages,
        extended_key_usages,
        spki_der: csr.public_key.spki_der.clone(),
        dropped,
    })
}

fn identity(csr: &Csr) -> Result<Identity, Refusal> {
    let common_names = csr.values(AttributeType::CommonName).collect::<Vec<_>>();
    let organizations = csr.values(AttributeType::Organization).collect::<Vec<_>>();
    let cn = match common_names.as_slice() {
        [cn] => *cn,
        [] => return Err(Refusal("the CSR has no CN; node certificates are identified by their CN".into())),
        _ => return Err(Refusal("the CSR has more than one CN".into())),
    };
    if organizations.len() > 1 {
        return Err(Refusal(format!("the CSR has more than one O ({})", organizations.join(", "))));
    }
    let organization = organizations.first().copied();
    if let Some(name) = cn.strip_prefix(NODE_PREFIX) {
        if !is_node_name(name) {
            return Err(Refusal(format!(
                "CN={cn}: {name:?} is not a node name (a lower-case DNS subdomain, at most 253 characters)"
            )));
        }
        if organization != Some(NODES_GROUP) {
            return Err(Refusal(format!(
                "CN={cn} must come with O={NODES_GROUP} (and no other O), not {}",
                organization.map(|o| format!("O={o}")).unwrap_or_else(|| "no O".into())
            )));
        }
        return Ok(Identity::Node { name: name.to_string() });
    }
    match (cn, organization) {
        (KUBE_PROXY_USER, None | Some(KUBE_PROXY_GROUP)) => Ok(Identity::KubeProxy),
        (KUBE_PROXY_USER, Some(o)) => {
            Err(Refusal(format!("CN={KUBE_PROXY_USER} may only carry O={KUBE_PROXY_GROUP}, not O={o}")))
        }
        (API_SERVER_USER, None) => Ok(Identity::ApiServer),
        (API_SERVER_USER, Some(o)) => Err(Refusal(format!("CN={API_SERVER_USER} is issued without any O, not O={o}"))),
        (cn, organization) => match (MASTER_CLIENT_USERS.iter().find(|user| **user == cn), organization) {
            (Some(user), None) => Ok(Identity::MasterClient { user }),
            (Some(user), Some(o)) => Err(Refusal(format!("CN={user} is issued without any O, not O={o}"))),
            (None, _) => Err(Refusal(format!(
                "CN={cn} is not a node identity; a trustee may obtain CN={NODE_PREFIX}<name> with O={NODES_GROUP}, \
                 CN={KUBE_PROXY_USER}, CN={API_SERVER_USER} or CN={}",
                MASTER_CLIENT_USERS.join(", CN=")
            ))),
        },
    }
}

/// The subject as the certificate will carry it: the CSR's attributes, in order and encoding.
fn subject(csr: &Csr) -> Result<DistinguishedName, Refusal> {
    let mut subject = DistinguishedName::new();
    let mut seen = Vec::new();
    for attribute in &csr.subject {
        let dn_type = match &attribute.kind {
            AttributeType::CommonName => DnType::CommonName,
            AttributeType::Organization => DnType::OrganizationName,
            AttributeType::OrganizationalUnit => DnType::OrganizationalUnitName,
            AttributeType::Country => DnType::CountryName,
            AttributeType::State => DnType::StateOrProvinceName,
            AttributeType::Locality => DnType::LocalityName,
            AttributeType::Other(oid) => {
                return Err(Refusal(format!("subject attribute {oid} is not allowed (CN, O, OU, C, ST and L are)")))
            }
        };
        if attribute.multi_valued_rdn {
            return Err(Refusal(format!("subject attribute {} shares an RDN with another (`+`)", attribute.kind)));
        }
        if seen.contains(&attribute.kind) {
            return Err(Refusal(format!("subject attribute {} appears more than once", attribute.kind)));
        }
        seen.push(attribute.kind.clone());
        let unusable = || Refusal(format!("subject attribute {} is not valid in its string type", attribute.kind));
        let value = match attribute.string_kind {
            StringKind::Utf8 => DnValue::Utf8String(attribute.value.clone()),
            StringKind::Printable => {
                DnValue::PrintableString(PrintableString::try_from(attribute.value.as_str()).map_err(|_| unusable())?)
            }
            StringKind::Ia5 => {
                DnValue::Ia5String(Ia5String::try_from(attribute.value.as_str()).map_err(|_| unusable())?)
            }
            StringKind::Other => {
                return Err(Refusal(format!(
                    "subject attribute {} uses a string type other than UTF8String, PrintableString or IA5String",
                    attribute.kind
                )))
            }
        };
        subject.push(dn_type, value);
    }
    Ok(subject)
}

fn subject_alt_names(sans: &[San]) -> Result<Vec<SanType>, Refusal> {
    sans.iter()
        .map(|san| match san {
            San::Dns(name) if is_dns_name(name) => Ok(SanType::DnsName(
                Ia5String::try_from(name.as_str()).map_err(|_| Refusal(format!("SAN DNS:{name} is not ASCII")))?,
            )),
            San::Dns(name) => Err(Refusal(format!(
                "SAN DNS:{name} is not a host name (letters, digits and hyphens in dot-separated labels, no wildcard)"
            ))),
            San::Ip(ip) => Ok(SanType::IpAddress(*ip)),
            San::Other(what) => Err(Refusal(format!("SAN {what} is not allowed; only DNS names and IP addresses are"))),
        })
        .collect()
}

fn key_usages(csr: &Csr, dropped: &mut Vec<String>) -> Result<Vec<KeyUsagePurpose>, Refusal> {
    let Some(requested) = &csr.key_usage else { return Ok(Vec::new()) };
    let usage = requested.value;
    let mut granted = Vec::new();
    for (asked, purpose) in [
        (usage.digital_signature, KeyUsagePurpose::DigitalSignature),
        (usage.content_commitment, KeyUsagePurpose::ContentCommitment),
        (usage.key_encipherment, KeyUsagePurpose::KeyEncipherment),
    ] {
        if asked {
            granted.push(purpose);
        }
    }
    for (asked, name) in [
        (usage.data_encipherment, "dataEncipherment"),
        (usage.key_agreement, "keyAgreement"),
        (usage.encipher_only, "encipherOnly"),
        (usage.decipher_only, "decipherOnly"),
    ] {
        if !asked {
            continue;
        }
        if requested.critical {
            return Err(Refusal(format!(
                "critical key usage {name} is not allowed (digitalSignature, keyEncipherment and \
                 contentCommitment are)"
            )));
        }
        dropped.push(format!("keyUsage {name}"));
    }
    Ok(granted)
}

fn extended_key_usages(csr: &Csr, identity: &Identity) -> Result<Vec<ExtendedKeyUsagePurpose>, Refusal> {
    let Some(requested) = &csr.extended_key_usage else {
        return Ok(match identity {
            Identity::KubeProxy | Identity::MasterClient { .. } | Identity::Operator { .. } => {
                vec![ExtendedKeyUsagePurpose::ClientAuth]
            }
            Identity::Node { .. } | Identity::ApiServer => {
                vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
            }
        });
    };
    if let Some(other) = requested.value.others.first() {
        return Err(Refusal(format!(
            "extended key usage {other} is not allowed; node certificates get serverAuth and clientAuth only"
        )));
    }
    let mut granted = Vec::new();
    if requested.value.server_auth {
        granted.push(ExtendedKeyUsagePurpose::ServerAuth);
    }
    if requested.value.client_auth {
        granted.push(ExtendedKeyUsagePurpose::ClientAuth);
    }
    if granted.is_empty() {
        return Err(Refusal("the extendedKeyUsage extension is empty".into()));
    }
    Ok(granted)
}

/// A Kubernetes node name: a lower-case RFC 1123 subdomain.
pub fn is_node_name(name: &str) -> bool {
    name.len() <= 253
        && !name.is_empty()
        && name.split('.').all(|label| {
            is_label(label) && label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// A host name: dot-separated LDH labels (any case), no wildcard, no trailing dot.
pub fn is_dns_name(name: &str) -> bool {
    name.len() <= 253 && !name.is_empty() && name.split('.').all(is_label)
}

fn is_label(label: &str) -> bool {
    !label.is_empty()
        && label.len() <= 63
        && !label.starts_with('-')
        && !label.ends_with('-')
        && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, CustomExtension, IsCa, KeyPair};

    fn params(subject: &[(DnType, &str)]) -> CertificateParams {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        for (kind, value) in subject {
            params.distinguished_name.push(kind.clone(), *value);
        }
        params
    }

    fn judge(params: &CertificateParams) -> Result<Grant, Refusal> {
        let key = KeyPair::generate().unwrap();
        let pem = params.serialize_request(&key).unwrap().pem().unwrap();
        decide(&Csr::from_pem(&pem).unwrap())
    }

    fn refusal(params: &CertificateParams) -> String {
        judge(params).unwrap_err().0
    }

    fn node() -> CertificateParams {
        params(&[(DnType::CommonName, "system:node:k8s-minion-0"), (DnType::OrganizationName, "system:nodes")])
    }

    #[test]
    fn node_identities_are_granted() {
        let mut kubelet = node();
        kubelet.distinguished_name.push(DnType::OrganizationalUnitName, "OpenStack/Magnum");
        kubelet.subject_alt_names =
            vec![SanType::IpAddress("fd00::5".parse().unwrap()), SanType::DnsName("k8s-minion-0".try_into().unwrap())];
        kubelet.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        let grant = judge(&kubelet).unwrap();
        assert_eq!(grant.identity, Identity::Node { name: "k8s-minion-0".into() });
        assert_eq!(grant.subject_alt_names.len(), 2);
        assert_eq!(grant.key_usages, [KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment]);
        assert_eq!(
            grant.extended_key_usages,
            [ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth]
        );

        let mut proxy =
            params(&[(DnType::CommonName, "system:kube-proxy"), (DnType::OrganizationName, "system:node-proxier")]);
        proxy.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        assert_eq!(judge(&proxy).unwrap().identity, Identity::KubeProxy);
        let proxy = params(&[(DnType::CommonName, "system:kube-proxy")]);
        assert_eq!(judge(&proxy).unwrap().extended_key_usages, [ExtendedKeyUsagePurpose::ClientAuth]);

        let mut server = params(&[(DnType::CommonName, "kubernetes")]);
        server.subject_alt_names = vec![SanType::DnsName("kubernetes.default.svc.cluster.local".try_into().unwrap())];
        assert_eq!(judge(&server).unwrap().identity, Identity::ApiServer);

        for user in MASTER_CLIENT_USERS {
            let client = params(&[(DnType::CommonName, user)]);
            let grant = judge(&client).unwrap();
            assert_eq!(grant.identity, Identity::MasterClient { user });
            assert_eq!(grant.extended_key_usages, [ExtendedKeyUsagePurpose::ClientAuth], "{user}: a client only");
        }
    }

    #[test]
    fn escalations_are_refused_with_the_reason() {
        let mut masters = node();
        masters.distinguished_name =
            params(&[(DnType::CommonName, "admin"), (DnType::OrganizationName, "system:masters")]).distinguished_name;
        assert!(refusal(&masters).contains("system:masters"));
        let mut ca = node();
        ca.is_ca = IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        assert!(refusal(&ca).contains("CA:TRUE"));
        let mut signer = node();
        signer.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyCertSign];
        assert!(refusal(&signer).contains("keyCertSign"));
        let mut crl = node();
        crl.key_usages = vec![KeyUsagePurpose::CrlSign];
        assert!(refusal(&crl).contains("cRLSign"));
        for (subject, hint) in [
            (params(&[(DnType::CommonName, "system:kube-controller")]), "not a node identity"),
            (
                params(&[(DnType::CommonName, "hearth-agent"), (DnType::OrganizationName, "system:nodes")]),
                "without any O",
            ),
            (params(&[(DnType::CommonName, "system:node:k8s-minion-0")]), "must come with O=system:nodes"),
            (
                params(&[(DnType::CommonName, "system:node:Minion_0"), (DnType::OrganizationName, "system:nodes")]),
                "not a node name",
            ),
            (
                params(&[(DnType::CommonName, "kubernetes"), (DnType::OrganizationName, "system:nodes")]),
                "without any O",
            ),
            (params(&[(DnType::CommonName, "system:kube-proxy"), (DnType::OrganizationName, "x")]), "may only carry"),
            (params(&[(DnType::OrganizationName, "system:nodes")]), "no CN"),
            (params(&[(DnType::CommonName, "kubernetes"), (DnType::CustomDnType(vec![2, 5, 4, 5]), "1")]), "2.5.4.5"),
        ] {
            let reason = refusal(&subject);
            assert!(reason.contains(hint), "{reason} lacks {hint}");
        }
        let mut code = node();
        code.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth, ExtendedKeyUsagePurpose::CodeSigning];
        assert!(refusal(&code).contains("codeSigning"));
        let mut mail = node();
        mail.subject_alt_names = vec![SanType::Rfc822Name("node@localhost".try_into().unwrap())];
        assert!(refusal(&mail).contains("email:node@localhost"));
        let mut wildcard = node();
        wildcard.subject_alt_names = vec![SanType::DnsName("*.svc.cluster.local".try_into().unwrap())];
        assert!(refusal(&wildcard).contains("*.svc.cluster.local"));
        let mut critical = node();
        critical.custom_extensions = vec![{
            let mut ext = CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0]);
            ext.set_criticality(true);
            ext
        }];
        assert!(refusal(&critical).contains("critical extension 1.2.3.4"));
    }

    #[test]
    fn harmless_extras_are_dropped_not_refused() {
        let mut extra = node();
        extra.custom_extensions = vec![CustomExtension::from_oid_content(&[1, 2, 3, 4], vec![5, 0])];
        let grant = judge(&extra).unwrap();
        assert_eq!(grant.dropped, ["1.2.3.4"]);
    }

    #[test]
    fn names_follow_kubernetes_and_dns_rules() {
        for good in ["a", "k8s-minion-0", "node.cluster.local", &"a".repeat(63)] {
            assert!(is_node_name(good), "{good}");
        }
        for bad in ["", "A", "a_b", "-a", "a-", "a..b", "a.", &"a".repeat(64), "system:node:x"] {
            assert!(!is_node_name(bad), "{bad}");
        }
        assert!(is_dns_name("Kubernetes.default"));
        assert!(!is_dns_name("*.svc.cluster.local") && !is_dns_name("a b") && !is_dns_name("x."));
    }
}
