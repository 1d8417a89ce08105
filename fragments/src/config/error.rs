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
        write!(f, "{} = {:?}: {}", self.key, self.value, self.reason)
    }
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
