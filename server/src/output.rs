//! What a command prints: words for a person, or with `--json` one JSON document on stdout for a
//! program, failures included, so a caller never has to parse sentences.

use crate::validate::FieldError;
use serde_json::{json, Value};

/// Characters of a value an error shows before cutting it, as the words do.
const SHOWN_CHARS: usize = 120;

/// A finished command's result, in both forms; the caller picks one.
#[derive(Debug, Default)]
pub struct Reply {
    /// Printed to stdout as it is.
    pub text: String,
    /// Printed with `--json`; `ok: true` is added.
    pub json: serde_json::Map<String, Value>,
    /// Side remarks (Magnum's read-only fields dropped …), already said on stderr; `notes` in JSON.
    pub notes: Vec<String>,
}

impl Reply {
    pub fn new(text: impl Into<String>) -> Reply {
        Reply { text: text.into(), ..Reply::default() }
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Reply {
        self.json.insert(key.to_string(), value.into());
        self
    }

    /// The JSON document: `ok`, the command's fields, its notes.
    pub fn document(&self) -> Value {
        let mut doc = serde_json::Map::new();
        doc.insert("ok".into(), json!(true));
        doc.extend(self.json.clone());
        doc.insert("notes".into(), json!(self.notes));
        Value::Object(doc)
    }
}

/// Broken rules as JSON: each with its field path, its value (cut like the words cut it, with its
/// length) and the reason.
pub fn field_errors(errors: &[FieldError]) -> Value {
    let errors: Vec<Value> = errors
        .iter()
        .map(|e| {
            let count = e.value.chars().count();
            let mut error = json!({"field": e.field, "message": e.reason});
            if count > SHOWN_CHARS {
                error["value"] = json!(e.value.chars().take(SHOWN_CHARS).collect::<String>());
                error["value_chars"] = json!(count);
                error["value_cut"] = json!(true);
            } else {
                error["value"] = json!(e.value);
            }
            error
        })
        .collect();
    json!({"ok": false, "errors": errors})
}

/// A failure that is not about one field (a missing file, a refused flag, a write that failed):
/// its whole chain of causes as one message, and each cause apart.
pub fn failure(error: &anyhow::Error) -> Value {
    let causes: Vec<String> = error.chain().map(ToString::to_string).collect();
    json!({"ok": false, "errors": [{"field": null, "value": null, "message": format!("{error:#}"), "causes": causes}]})
}

/// A usage error in clap's words (`error: …`, tips, `Usage: …`) as JSON: the message and the usage line.
pub fn usage_error(words: &str) -> Value {
    let (message, rest) = words.split_once("\n\nUsage: ").unwrap_or((words, ""));
    let message = message.trim().strip_prefix("error: ").unwrap_or(message.trim());
    let usage = rest.lines().next().unwrap_or_default();
    json!({"ok": false, "errors": [{"field": null, "value": null, "message": message, "usage": usage}]})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_errors_keep_the_message_and_the_usage_line() {
        let words =
            "error: unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'\n\n\
                     Usage: hearth-server render --out <DIR>\n\nFor more information, try '--help'.\n";
        let doc = usage_error(words);
        assert_eq!(
            doc["errors"][0]["message"],
            "unexpected argument '--bogus' found\n\n  tip: to pass '--bogus' as a value, use '-- --bogus'"
        );
        assert_eq!(doc["errors"][0]["usage"], "hearth-server render --out <DIR>");
        assert_eq!(doc["ok"], false);
    }

    #[test]
    fn long_values_are_cut_with_their_length() {
        let long = "x".repeat(65_536);
        let doc = field_errors(&[FieldError { field: "cluster.name".into(), value: long, reason: "too long".into() }]);
        let error = &doc["errors"][0];
        assert_eq!(error["value"].as_str().map(str::len), Some(SHOWN_CHARS));
        assert_eq!(error["value_chars"], 65_536);
        assert_eq!(doc["ok"], false);
        let short = field_errors(&[FieldError { field: "f".into(), value: "v".into(), reason: "r".into() }]);
        assert_eq!(short["errors"][0]["value"], "v");
        assert!(short["errors"][0].get("value_chars").is_none());
    }
}
