//! Config errors that name the key, the offending value (masked when secret) and the reason.

use std::fmt;

/// One thing wrong with a config.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// Where: the heat-params key or the native field path (`openstack.auth_url`).
    pub key: String,
    /// The value as given, already masked when the key holds a secret.
    pub value: String,
    /// Why it is refused.
    pub reason: String,
    /// Line in the input, when known.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(line) = self.line {
            write!(f, "line {line}: ")?;
        }
        if self.value.is_empty() {
            // Nothing given (a missing field, or a step's needs): `= ""` would only be noise.
            return write!(f, "{}: {}", self.key, self.reason);
        }
        write!(f, "{} = {}: {}", self.key, shown_value(&self.value), self.reason)
    }
}

/// How many characters of a refused value an error shows: enough to recognise it, never a whole
/// 64 KiB option string on the operator's terminal.
const SHOWN_CHARS: usize = 120;

/// `value` quoted as Rust quotes it, cut after [`SHOWN_CHARS`] characters with its full length named.
pub fn shown_value(value: &str) -> String {
    let count = value.chars().count();
    if count <= SHOWN_CHARS {
        return format!("{value:?}");
    }
    let head: String = value.chars().take(SHOWN_CHARS).collect();
    format!("{head:?}… ({count} characters, {} bytes)", value.len())
}

/// Every error found in one config: loading never stops at the first, so an operator fixes them all at once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file or source the errors are about.
    pub source_name: String,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "{}: {n} error{}", self.source_name, if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            write!(f, "\n  {e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_value_is_shown_by_its_head_and_length() {
        let huge = ConfigError {
            key: "KUBELET_OPTIONS".into(),
            value: "x\"".repeat(32_768),
            reason: "bad".into(),
            line: None,
        };
        let shown = huge.to_string();
        assert!(shown.len() < 400, "{} bytes of error", shown.len());
        assert!(shown.contains("… (65536 characters, 65536 bytes): bad"), "{shown}");
        let small = ConfigError { key: "K".into(), value: "a\"b".into(), reason: "r".into(), line: Some(3) };
        assert_eq!(small.to_string(), "line 3: K = \"a\\\"b\": r");
    }
}
