//! Clients for the two OpenStack APIs a node talks to: Keystone (a token for the cluster's trustee) and
//! Magnum's certificate API (the cluster CA, and signing the node's requests). Both go through
//! [`Host::http`](crate::host::Host::http), so they share the run's client (CA bundle, `verify_ca`, proxy,
//! retries) and a dry run sends nothing.

pub mod keystone;
pub mod magnum;

/// The most useful line of an OpenStack error body: Keystone's `error.message`, Magnum's
/// `errors[0].detail` (or `title`), else the end of the body as text.
pub(crate) fn error_message(response: &crate::http::Response) -> String {
    let text = |v: &serde_json::Value| v.as_str().map(str::trim).filter(|s| !s.is_empty()).map(String::from);
    if let Ok(body) = response.json::<serde_json::Value>() {
        let found = text(&body["error"]["message"])
            .or_else(|| text(&body["errors"][0]["detail"]))
            .or_else(|| text(&body["errors"][0]["title"]))
            .or_else(|| text(&body["error_message"]));
        if let Some(message) = found {
            return message.split_whitespace().collect::<Vec<_>>().join(" ");
        }
    }
    match response.text_tail(300) {
        tail if tail.is_empty() => "(empty body)".into(),
        tail => tail,
    }
}
