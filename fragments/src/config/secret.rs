//! A value that must never reach a log, a status file or a Heat signal.

use serde::{Deserialize, Serialize};
use std::fmt;

/// What a secret looks like wherever it is shown.
pub const MASK: &str = "********";

/// A password, token or private key. `Debug` and `Display` print [`MASK`]; only [`Secret::expose`] gives the
/// value, so every place that needs it is easy to find. Serialisation writes the real value because the
/// node config is persisted (0600) and handed from server to agent; displays go through
/// [`NodeConfig::masked`](super::NodeConfig::masked).
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The secret replaced by [`MASK`], or still empty when it was empty (an empty secret says "not set").
    pub fn masked(&self) -> Secret {
        if self.0.is_empty() {
            Secret::default()
        } else {
            Secret(MASK.to_string())
        }
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "\"\"" } else { MASK })
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_empty() { "" } else { MASK })
    }
}

/// A URL with any `user:password@` part masked, for proxies that carry credentials.
pub fn mask_url_credentials(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{}{MASK}@{}", &url[..scheme_end], &rest[at + 1..]),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), MASK);
        assert_eq!(s.to_string(), MASK);
        assert_eq!(s.expose(), "hunter2");
        assert_eq!(Secret::default().to_string(), "");
    }

    #[test]
    fn proxy_credentials_are_masked() {
        assert_eq!(
            mask_url_credentials("http://bob:pa@ss@proxy.example:3128/x"),
            format!("http://{MASK}@proxy.example:3128/x")
        );
        assert_eq!(mask_url_credentials("http://proxy:3128"), "http://proxy:3128");
        assert_eq!(mask_url_credentials("proxy:3128"), "proxy:3128");
    }
}
