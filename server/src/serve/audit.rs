//! The server's audit: one log line per decision (through `hearth_fragments::log`, the agent's logger
//! too: stderr, journald's priorities).
//!
//! A decision line holds `key=value` pairs; values that come from callers (CSR subjects, SANs) are
//! quoted with Rust's escaping, so a CN holding a newline cannot forge a second line. Tokens, passwords
//! and keys are never part of a line: nothing here is given them. A trust id is a [`Secret`], as in the
//! agent's node config (with the trustee's password it is a token), so the line says only that a trust
//! was used: `trust=********`.

use hearth_fragments::config::secret::Secret;
use std::fmt;

/// One request's outcome.
#[derive(Debug, Default)]
pub struct Decision {
    pub request_id: String,
    pub method: String,
    pub path: String,
    pub cluster: Option<String>,
    /// The authenticated caller (a trust-scoped token's trustee).
    pub user: Option<String>,
    /// Shown masked.
    pub trust: Option<Secret>,
    pub admin: bool,
    pub cn: Option<String>,
    pub o: Vec<String>,
    pub sans: Vec<String>,
    pub status: u16,
    /// `issued`, `served` (the CA), `refused` or `failed`.
    pub decision: &'static str,
    pub reason: String,
    pub serial: Option<String>,
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        write!(
            f,
            "{} request={} {} {:?} cluster={} user={}",
            self.decision,
            self.request_id,
            self.method,
            self.path,
            dash(&self.cluster),
            dash(&self.user)
        )?;
        if let Some(trust) = &self.trust {
            write!(f, " trust={trust}")?;
        }
        if self.admin {
            f.write_str(" admin=true")?;
        }
        if let Some(cn) = &self.cn {
            write!(f, " cn={cn:?} o={:?} sans={:?}", self.o.join(","), self.sans.join(","))?;
        }
        if let Some(serial) = &self.serial {
            write!(f, " serial={serial}")?;
        }
        write!(f, " status={} reason={:?}", self.status, self.reason)
    }
}

pub fn decision(decision: &Decision) {
    let line = decision.to_string();
    match decision.decision {
        "failed" => tracing::error!("{line}"),
        _ => tracing::info!("{line}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decision_is_one_line_whatever_the_caller_sent() {
        let d = Decision {
            request_id: "req-1".into(),
            method: "POST".into(),
            path: "/v1/certificates".into(),
            cluster: Some("c".into()),
            user: Some("u".into()),
            cn: Some("evil\nrefused request=forged".into()),
            o: vec!["system:nodes".into()],
            sans: vec!["IP:10.0.0.1".into()],
            status: 403,
            decision: "refused",
            reason: "because".into(),
            ..Decision::default()
        };
        let line = d.to_string();
        assert_eq!(line.lines().count(), 1, "{line}");
        assert!(line.starts_with("refused request=req-1 POST \"/v1/certificates\" cluster=c user=u cn=\"evil\\n"));
        assert!(line.ends_with("status=403 reason=\"because\""), "{line}");
    }

    #[test]
    fn a_trust_id_is_masked_as_the_agent_masks_it() {
        let d = Decision {
            user: Some("trustee".into()),
            trust: Some(Secret::new("0f3c5c1d7e2a4b6f8a9b0c1d2e3f4a5b")),
            decision: "served",
            ..Decision::default()
        };
        let line = d.to_string();
        assert!(line.contains(&format!(" user=trustee trust={} ", hearth_fragments::config::secret::MASK)), "{line}");
        assert!(!line.contains("0f3c5c1d"), "{line}");
    }
}
