//! Magnum's `/etc/sysconfig/heat-params`, read as data and written back.
//!
//! Magnum's scripts `source` this file, so every value went through shell expansion (inventory A19). Hearth
//! never runs a shell on it: a line is `KEY="value"`, `KEY='value'` or `KEY=value`. Inside double quotes
//! `\n` is a newline (Magnum pre-escapes multi-line PEM values this way), and `\\`, `\"`, `\$`, `` \` ``
//! stand for the character itself; any other backslash is kept. A value that is exactly `$KEY` is a
//! placeholder Heat never substituted (Stein's `ENABLE_CINDER`) and counts as not given.

use super::error::{ConfigError, ConfigErrors};
use super::fields::{self, Slot};
use super::{validate, Loaded, NodeConfig, Role};
use std::collections::HashMap;

/// One `KEY=value` line.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    line: usize,
    key: String,
    value: String,
}

/// Parses heat-params text. `role` is the `--role` given on the command line, if any; the file's
/// `NODEGROUP_ROLE` must agree with it. Without either, the Stein layout tells: only minions have
/// `KUBE_MASTER_IP`, only masters `KUBE_API_PRIVATE_ADDRESS`.
pub fn parse(text: &str, source_name: &str, role: Option<Role>) -> Result<Loaded, ConfigErrors> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    let mut seen: HashMap<String, usize> = HashMap::new();
    for (index, raw_line) in text.lines().enumerate() {
        let line = index + 1;
        match parse_line(raw_line) {
            Ok(None) => {}
            Ok(Some((key, value))) => {
                if let Some(first) = seen.insert(key.clone(), line) {
                    errors.push(error(&key, &value, format!("set twice, first on line {first}"), line));
                } else {
                    entries.push(Entry { line, key, value });
                }
            }
            Err(reason) => errors.push(ConfigError {
                key: raw_line.split('=').next().unwrap_or("").trim().to_string(),
                value: String::new(),
                reason,
                line: Some(line),
            }),
        }
    }

    let role = match resolve_role(&entries, role) {
        Ok(role) => role,
        Err(e) => {
            errors.push(e);
            Role::Minion
        }
    };
    let mut config = NodeConfig::new(role);
    let mut unknown = Vec::new();
    {
        let mut slots: HashMap<&'static str, Slot<'_>> = fields::slots(&mut config).into_iter().collect();
        for entry in &entries {
            let value = if entry.value == format!("${}", entry.key) {
                warnings.push(format!(
                    "line {}: {} holds the unsubstituted placeholder {:?}; treated as not given",
                    entry.line, entry.key, entry.value
                ));
                ""
            } else {
                entry.value.as_str()
            };
            match slots.get_mut(entry.key.as_str()) {
                Some(slot) => {
                    if let Err(reason) = slot.set(value) {
                        errors.push(error(&entry.key, value, reason, entry.line));
                    }
                }
                None => {
                    warnings.push(format!(
                        "line {}: {} is not a key Hearth knows; kept and written back unchanged",
                        entry.line, entry.key
                    ));
                    unknown.push(entry);
                }
            }
        }
    }
    for entry in unknown {
        config.magnum_extra.insert(entry.key.clone(), entry.value.clone());
    }
    keep_magnums_choices(&mut config);

    errors.extend(validate::validate(&config));
    if errors.is_empty() {
        Ok(Loaded { config, warnings })
    } else {
        Err(ConfigErrors { source_name: source_name.to_string(), errors })
    }
}

/// What a node configured by Magnum's own parameters keeps of Magnum where Hearth's native config chooses
/// otherwise: the pause image a mirror made for Magnum holds, Magnum's master taints, and the OpenStack CA
/// where Magnum's part-001 left it (it never reached heat-params).
fn keep_magnums_choices(config: &mut NodeConfig) {
    let prefix = match config.runtime.container_infra_prefix.as_str() {
        "" => crate::kube::MAGNUM_PAUSE_PREFIX,
        prefix => prefix,
    };
    config.kubernetes.pause_image = format!("{prefix}pause:{}", crate::kube::MAGNUM_PAUSE_TAG);
    config.kubernetes.magnum_master_taints = true;
    config.openstack.ca_file = crate::paths::MAGNUM_OPENSTACK_CA.to_string();
}

/// An error about `key`; the value is masked when the key holds a secret.
fn error(key: &str, value: &str, reason: impl Into<String>, line: usize) -> ConfigError {
    let value = if fields::is_secret_key(key) && !value.is_empty() {
        super::secret::MASK.to_string()
    } else {
        value.to_string()
    };
    ConfigError { key: key.to_string(), value, reason: reason.into(), line: Some(line) }
}

fn resolve_role(entries: &[Entry], cli: Option<Role>) -> Result<Role, ConfigError> {
    let find = |key: &str| entries.iter().find(|e| e.key == key);
    let from_file = match find("NODEGROUP_ROLE") {
        Some(e) if !e.value.is_empty() => {
            Some(e.value.parse::<Role>().map_err(|reason| error(&e.key, &e.value, reason, e.line))?)
        }
        _ => None,
    };
    match (from_file, cli) {
        (Some(file), Some(cli)) if file != cli => Err(ConfigError {
            key: "NODEGROUP_ROLE".into(),
            value: file.to_string(),
            reason: format!("the file says {file} but --role says {cli}"),
            line: find("NODEGROUP_ROLE").map(|e| e.line),
        }),
        (Some(role), _) | (None, Some(role)) => Ok(role),
        (None, None) if find("KUBE_MASTER_IP").is_some() => Ok(Role::Minion),
        (None, None) if find("KUBE_API_PRIVATE_ADDRESS").is_some() => Ok(Role::Master),
        (None, None) => Err(ConfigError {
            key: "NODEGROUP_ROLE".into(),
            value: String::new(),
            reason: "the role is unknown: pass --role master|minion or set NODEGROUP_ROLE".into(),
            line: None,
        }),
    }
}

/// One line: `Ok(None)` for blank lines and comments.
fn parse_line(line: &str) -> Result<Option<(String, String)>, String> {
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let trimmed = trimmed.strip_prefix("export ").unwrap_or(trimmed);
    let (key, rest) = trimmed.split_once('=').ok_or("not a KEY=value line")?;
    if !is_valid_key(key) {
        return Err(format!("{key:?} is not a valid key (letters, digits and _, not starting with a digit)"));
    }
    Ok(Some((key.to_string(), parse_value(rest)?)))
}

fn is_valid_key(key: &str) -> bool {
    let mut chars = key.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn parse_value(rest: &str) -> Result<String, String> {
    let rest = rest.trim_end();
    if let Some(inner) = rest.strip_prefix('\'') {
        let (value, after) = inner.split_once('\'').ok_or("unterminated single quote")?;
        return trailing(value.to_string(), after);
    }
    let Some(inner) = rest.strip_prefix('"') else {
        return Ok(rest.to_string());
    };
    let mut value = String::with_capacity(inner.len());
    let mut chars = inner.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return trailing(value, &inner[i + 1..]),
            '\\' => match chars.next() {
                Some((_, 'n')) => value.push('\n'),
                Some((_, e @ ('\\' | '"' | '$' | '`'))) => value.push(e),
                Some((_, other)) => {
                    value.push('\\');
                    value.push(other);
                }
                None => return Err("unterminated double quote (line ends in a backslash)".into()),
            },
            c => value.push(c),
        }
    }
    Err("unterminated double quote".into())
}

fn trailing(value: String, after: &str) -> Result<String, String> {
    if after.trim().is_empty() {
        Ok(value)
    } else {
        Err(format!("unexpected text after the closing quote: {:?}", after.trim()))
    }
}

/// The config as a heat-params file: every key Hearth knows, then the unknown ones it kept. Values are
/// double-quoted and escaped so that both this loader and a shell's `source` read them back exactly
/// (newlines become `\n`, as Magnum's consumers expect to undo with `echo -e`).
pub fn render(config: &NodeConfig) -> String {
    let mut c = config.clone();
    let mut out = String::from("# Written by hearth-agent from the node config; Magnum's KEY=\"value\" layout.\n");
    let rendered: Vec<(&str, String)> =
        fields::slots(&mut c).into_iter().map(|(key, slot)| (key, slot.render())).collect();
    for (key, value) in rendered
        .iter()
        .map(|(k, v)| (*k, v.as_str()))
        .chain(config.magnum_extra.iter().map(|(k, v)| (k.as_str(), v.as_str())))
    {
        out.push_str(key);
        out.push_str("=\"");
        out.push_str(&escape(value));
        out.push_str("\"\n");
    }
    out
}

fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\\' | '"' | '$' | '`' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_unquoted_and_unescaped_as_data() {
        assert_eq!(parse_line(r#"A="x=y""#).unwrap(), Some(("A".into(), "x=y".into())));
        assert_eq!(parse_line(r#"A="a\nb\\c\"d\$e\`f\zg""#).unwrap().unwrap().1, "a\nb\\c\"d$e`f\\zg");
        assert_eq!(parse_line("A='$HOME \\n'").unwrap().unwrap().1, "$HOME \\n");
        assert_eq!(parse_line("export A=plain").unwrap().unwrap().1, "plain");
        assert_eq!(parse_line("  # comment").unwrap(), None);
        assert!(parse_line(r#"A="open"#).unwrap_err().contains("unterminated"));
        assert!(parse_line(r#"A="x" y"#).unwrap_err().contains("after the closing quote"));
        assert!(parse_line("1A=x").unwrap_err().contains("not a valid key"));
        assert!(parse_line("just words").unwrap_err().contains("KEY=value"));
    }

    #[test]
    fn escape_round_trips_any_text() {
        for value in ["", "plain", "a\"b'c$d`e\\f\ng=h", "ünïcødé ✓", "\\n literal", "$TRUST_ID"] {
            let line = format!("K=\"{}\"", escape(value));
            assert_eq!(parse_line(&line).unwrap().unwrap().1, value, "{line}");
        }
    }
}
