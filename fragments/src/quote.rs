//! Quoting for the config dialects the steps write.

/// `"value"` with `"`, `\`, newline and tab backslash-escaped: the double-quoted string both systemd's
/// command lines and gcfg (the cloud provider's INI dialect) read back as the value.
pub fn double_quoted(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len() + 2);
    quoted.push('"');
    for c in value.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\t' => quoted.push_str("\\t"),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    #[test]
    fn quotes_backslashes_and_control_characters_are_escaped() {
        assert_eq!(super::double_quoted("a \"b\" \\c\nd\te"), r#""a \"b\" \\c\nd\te""#);
    }
}
