//! Input errors in a person's words: the known name a typo most likely meant, and serde's messages
//! ("invalid type: string \"twenty\", expected u32") said as what the field takes. The node's config
//! and the server's template, cluster and labels share them.

/// Levenshtein distance: how many single-character edits turn one name into the other.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (above + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = above;
        }
    }
    row[b.len()]
}

/// The known name closest to `name`, when it is close enough to be a typo of it (a third of its
/// length, at least two edits).
pub fn closest<'a>(name: &str, known: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    known
        .into_iter()
        .map(|known| (edit_distance(name, known), known))
        .min()
        .filter(|(distance, known)| *distance <= (known.len() / 3).max(2))
        .map(|(_, known)| known)
}

/// serde's message about a field of `object` ("node config", "Magnum's cluster") said for a person:
/// the field probably meant, or what the field takes. Other messages are kept as they are.
pub fn serde_in_words(message: &str, object: &str) -> String {
    if message.starts_with("unknown field") {
        // serde backquotes the unknown field, then the expected ones.
        let names: Vec<&str> = message.split('`').skip(1).step_by(2).collect();
        return match names.split_first().and_then(|(name, known)| closest(name, known.iter().copied())) {
            Some(known) => format!("not a field of {object}: did you mean {known}?"),
            None => format!("not a field of {object}"),
        };
    }
    let Some((given, expected)) = message.strip_prefix("invalid type: ").and_then(|m| m.split_once(", expected "))
    else {
        return message.to_string();
    };
    let wanted = match expected {
        "i64" | "u64" | "i32" | "u32" | "u16" | "u8" => "a whole number",
        "a boolean" => "true or false",
        other => other,
    };
    // The value is shown beside the message; its kind (string, map, sequence) is what was wrong.
    let kind = given.split_whitespace().next().unwrap_or(given);
    format!("must be {wanted}, not a {kind}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edit_distance_counts_edits() {
        assert_eq!(edit_distance("kube_tag", "kube_tag"), 0);
        assert_eq!(edit_distance("kube_tga", "kube_tag"), 2);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("cgroups_driver", "cgroup_driver"), 1);
    }

    #[test]
    fn serde_messages_in_words() {
        let unknown = "unknown field `tga`, expected one of `tag`, `version`";
        assert_eq!(serde_in_words(unknown, "the node config"), "not a field of the node config: did you mean tag?");
        assert_eq!(serde_in_words("unknown field `zzzzzz`, expected `tag`", "x"), "not a field of x");
        let wrong = "invalid type: string \"twenty\", expected u32";
        assert_eq!(serde_in_words(wrong, "x"), "must be a whole number, not a string");
        assert_eq!(serde_in_words("invalid IP address syntax", "x"), "invalid IP address syntax");
    }
}
