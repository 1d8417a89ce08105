//! The Heat wait-condition signal: the agent's last word, telling the stack whether this node came up.
//!
//! Token-style handle (`OS::Heat::WaitConditionHandle`): `POST <endpoint>` with `X-Auth-Token`, a JSON
//! body with exactly the keys `status`, `reason`, `data` and `id` (Heat rejects any other key set), and
//! Heat answers `200` with `null`. Heat counts signals by distinct `id`, and a `FAILURE` fails the stack
//! with the reason in `stack_status_reason`.

use crate::client;
use crate::state::SignalRecord;
use hearth_fragments::config::NodeConfig;
use hearth_fragments::http::{Client, HttpError, Request};
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Heat keeps the reason in a database column; longer reasons are cut to this many characters.
pub const MAX_REASON_CHARS: usize = 4000;
pub const MAX_DATA_CHARS: usize = 8000;
const CUT_MARKER: &str = " …[truncated]";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Status {
    Success,
    Failure,
}

impl Status {
    /// As Heat writes it: `SUCCESS`, `FAILURE`.
    pub fn word(self) -> &'static str {
        match self {
            Status::Success => "SUCCESS",
            Status::Failure => "FAILURE",
        }
    }
}

/// The signal as Heat reads it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignalBody {
    pub status: Status,
    pub reason: String,
    pub data: String,
    pub id: String,
}

impl SignalBody {
    pub fn success(id: impl Into<String>, summary: &str) -> Self {
        SignalBody::new(Status::Success, id.into(), summary)
    }

    pub fn failure(id: impl Into<String>, reason: &str) -> Self {
        SignalBody::new(Status::Failure, id.into(), reason)
    }

    /// Sets `data`, which Heat hands out through the wait condition's `data` attribute, keyed by `id`.
    pub fn with_data(mut self, data: &str) -> Self {
        self.data = truncate(data, MAX_DATA_CHARS);
        self
    }

    fn new(status: Status, id: String, reason: &str) -> Self {
        SignalBody { status, reason: truncate(reason, MAX_REASON_CHARS), data: String::new(), id }
    }

    /// The body within Heat's limits, whatever was put in the public fields.
    fn clamped(&self) -> SignalBody {
        SignalBody {
            reason: truncate(&self.reason, MAX_REASON_CHARS),
            data: truncate(&self.data, MAX_DATA_CHARS),
            ..self.clone()
        }
    }
}

/// `text` cut to at most `max_chars` characters on a char boundary, marked when cut. The head is kept:
/// a reason starts with the step that failed.
fn truncate(text: &str, max_chars: usize) -> String {
    if text.chars().count() <= max_chars {
        return text.to_string();
    }
    let keep = max_chars.saturating_sub(CUT_MARKER.chars().count());
    text.chars().take(keep).chain(CUT_MARKER.chars()).collect()
}

/// The signal `id` of a node, the same from every path that signals (a run, a config that does not load,
/// a panic, and the bootstrap's shell, which computes it the same way): the node's name
/// (`node.instance_name`, else the host name, when there is a config), its first DNS label, in lower
/// case. So `signal --resend` or a later boot updates the node's one entry at Heat instead of counting as
/// another node.
pub fn node_signal_id(config: Option<&NodeConfig>, hostname: &str) -> String {
    let hostname = hostname.trim();
    let name = match config {
        Some(config) => config.node_name(hostname),
        None => hostname.split('.').next().unwrap_or_default().to_string(),
    };
    let name = name.trim().to_ascii_lowercase();
    if name.is_empty() {
        "node".to_string()
    } else {
        name
    }
}

/// What Heat accepted, for the status file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SentSignal {
    pub endpoint: String,
    pub id: String,
    pub status: Status,
    pub http_status: u16,
    pub attempts: u32,
    /// Unix seconds when Heat answered.
    pub at: u64,
}

/// Never holds the token: the endpoint and Heat's answer carry none.
#[derive(Debug, thiserror::Error)]
pub enum SignalError {
    #[error("Heat refused the signal to {endpoint}: HTTP {status}: {body_tail}")]
    Refused { endpoint: String, status: u16, body_tail: String },
    #[error(
        "gave up signalling Heat at {endpoint} after {attempts} attempt(s) in {elapsed:.1?} \
         (retry deadline {deadline:?}); last error: {last}"
    )]
    GaveUp { endpoint: String, attempts: u32, elapsed: Duration, deadline: Duration, last: String },
    #[error("cannot signal Heat at {endpoint}: {error}")]
    Http { endpoint: String, error: Box<HttpError> },
}

/// Posts `body` to the wait-condition handle at `endpoint`, retrying as the client's policy says.
pub fn send(client: &Client, endpoint: &str, token: &str, body: &SignalBody) -> Result<SentSignal, SignalError> {
    let body = body.clamped();
    let json = serde_json::to_value(&body).expect("a SignalBody always serialises");
    let request = Request::post_json(endpoint, &json).header("X-Auth-Token", token);
    let response = client.send(&request).map_err(|error| match error {
        HttpError::GaveUp { attempts, elapsed, last, .. } => SignalError::GaveUp {
            endpoint: endpoint.to_string(),
            attempts,
            elapsed,
            deadline: client.policy().deadline,
            last,
        },
        error => SignalError::Http { endpoint: endpoint.to_string(), error: Box::new(error) },
    })?;
    if !(200..300).contains(&response.status) {
        return Err(SignalError::Refused {
            endpoint: endpoint.to_string(),
            status: response.status,
            body_tail: response.text_tail(500),
        });
    }
    Ok(SentSignal {
        endpoint: endpoint.to_string(),
        id: body.id,
        status: body.status,
        http_status: response.status,
        attempts: response.attempts,
        at: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
    })
}

/// Sends one signal body and records how it went; used by `run` and `signal --resend`.
pub fn deliver(config: &NodeConfig, endpoint: &str, token: &str, body: SignalBody) -> SignalRecord {
    let result = client::for_node(config, client::signal_deadline(config))
        .map_err(anyhow::Error::from)
        .and_then(|client| send(&client, endpoint, token, &body).map_err(anyhow::Error::from));
    let (sent, error) = match result {
        Ok(sent) => {
            tracing::info!("signalled {} to Heat", body.status.word());
            (Some(sent), None)
        }
        Err(e) => {
            let message = config.scrub(&format!("{e:#}"));
            tracing::error!("could not signal Heat: {message}");
            (None, Some(message))
        }
    };
    SignalRecord { endpoint: endpoint.to_string(), body, sent, error }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_has_heats_lowercase_keys_and_uppercase_status() {
        let body = SignalBody::success("node-1", "kubelet up").with_data("{\"k\":1}");
        let json = serde_json::to_value(&body).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"status": "SUCCESS", "reason": "kubelet up", "data": "{\"k\":1}", "id": "node-1"})
        );
        assert_eq!(serde_json::to_value(Status::Failure).unwrap(), "FAILURE");
    }

    #[test]
    fn long_texts_are_cut_on_char_boundaries_and_marked() {
        let long = "é".repeat(MAX_REASON_CHARS + 10);
        let body = SignalBody::failure("n", &long).with_data(&"✗".repeat(MAX_DATA_CHARS * 2));
        assert_eq!(body.reason.chars().count(), MAX_REASON_CHARS);
        assert!(body.reason.starts_with("éé") && body.reason.ends_with(CUT_MARKER));
        assert_eq!(body.data.chars().count(), MAX_DATA_CHARS);
        let exact = "x".repeat(MAX_REASON_CHARS);
        assert_eq!(SignalBody::failure("n", &exact).reason, exact);

        let mut raw = SignalBody::success("n", "ok");
        raw.reason = long;
        assert_eq!(raw.clamped().reason.chars().count(), MAX_REASON_CHARS);
    }

    #[test]
    fn the_id_comes_from_the_host_name_alone() {
        assert_eq!(node_signal_id(None, "K8s-Minion-0.example.org."), "k8s-minion-0");
        assert_eq!(node_signal_id(None, "k8s-minion-0"), node_signal_id(None, " k8s-minion-0 \n"));
        assert_eq!(node_signal_id(None, ""), "node");
        let mut config = NodeConfig::new(hearth_fragments::Role::Minion);
        assert_eq!(node_signal_id(Some(&config), "K8s-Minion-0.novalocal"), "k8s-minion-0");
        config.node.instance_name = "Cluster-Minion-3.example".into();
        assert_eq!(node_signal_id(Some(&config), "k8s-minion-0"), "cluster-minion-3");
    }
}
