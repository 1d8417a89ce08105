//! Kubeconfigs, written whole (Magnum appended to them, so every re-run added another document:
//! inventory A10). Every string is a double-quoted scalar (JSON's quoting, which YAML reads the same), so
//! `system:node:<name>` and URLs need no care.

use crate::host::FileSpec;

/// A client identity: a certificate and its key, or none (TLS disabled).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Identity {
    /// The user's name in the file (what the certificate's CN says).
    pub user: String,
    pub certificate: String,
    pub key: String,
}

/// One kubeconfig: one cluster, one user, one context.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Kubeconfig {
    pub server: String,
    /// CA file that verifies the server; `None` for a plain-HTTP server.
    pub certificate_authority: Option<String>,
    pub identity: Option<Identity>,
    /// Skip server verification (Magnum's keystone webhook on 127.0.0.1 serves a self-signed certificate).
    pub insecure_skip_tls_verify: bool,
    pub cluster_name: String,
}

fn quoted(text: &str) -> String {
    serde_json::to_string(text).expect("a string serialises")
}

impl Kubeconfig {
    pub fn render(&self) -> String {
        let mut out = String::from("# Written by hearth-agent.\napiVersion: v1\nkind: Config\nclusters:\n");
        out.push_str(&format!("- name: {}\n  cluster:\n", quoted(&self.cluster_name)));
        out.push_str(&format!("    server: {}\n", quoted(&self.server)));
        if let Some(ca) = &self.certificate_authority {
            out.push_str(&format!("    certificate-authority: {}\n", quoted(ca)));
        }
        if self.insecure_skip_tls_verify {
            out.push_str("    insecure-skip-tls-verify: true\n");
        }
        let user = self.identity.as_ref().map(|i| i.user.as_str()).unwrap_or("default");
        out.push_str(&format!("users:\n- name: {}\n", quoted(user)));
        match &self.identity {
            Some(identity) => out.push_str(&format!(
                "  user:\n    client-certificate: {}\n    client-key: {}\n",
                quoted(&identity.certificate),
                quoted(&identity.key)
            )),
            None => out.push_str("  user: {}\n"),
        }
        out.push_str(&format!(
            "contexts:\n- name: default\n  context:\n    cluster: {}\n    user: {}\ncurrent-context: default\n",
            quoted(&self.cluster_name),
            quoted(user)
        ));
        out
    }

    /// The file at `path`: `0600` when it names a key (so only root reads where the key is), else `0644`.
    pub fn file(&self, path: &str) -> FileSpec {
        let mode = if self.identity.is_some() { 0o600 } else { 0o644 };
        FileSpec::new(path, self.render(), mode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_one_cluster_user_and_context_as_yaml() {
        let config = Kubeconfig {
            server: "https://127.0.0.1:6443".into(),
            certificate_authority: Some("/etc/kubernetes/certs/ca.crt".into()),
            identity: Some(Identity {
                user: "system:node:k8s-0".into(),
                certificate: "/etc/kubernetes/certs/kubelet.crt".into(),
                key: "/etc/kubernetes/certs/kubelet.key".into(),
            }),
            insecure_skip_tls_verify: false,
            cluster_name: "kubernetes".into(),
        };
        let text = config.render();
        let parsed: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
        assert_eq!(parsed["clusters"][0]["cluster"]["server"], "https://127.0.0.1:6443");
        assert_eq!(parsed["users"][0]["name"], "system:node:k8s-0");
        assert_eq!(parsed["users"][0]["user"]["client-key"], "/etc/kubernetes/certs/kubelet.key");
        assert_eq!(parsed["contexts"][0]["context"]["user"], "system:node:k8s-0");
        assert_eq!(parsed["current-context"], "default");
        assert_eq!(config.file("/x").mode, 0o600);

        let plain = Kubeconfig { certificate_authority: None, identity: None, ..config };
        let parsed: serde_yaml::Value = serde_yaml::from_str(&plain.render()).unwrap();
        assert!(parsed["users"][0]["user"].as_mapping().unwrap().is_empty());
        assert!(parsed["clusters"][0]["cluster"].get("certificate-authority").is_none());
        assert_eq!(plain.file("/x").mode, 0o644);
    }
}
