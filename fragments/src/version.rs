//! The one reader of release numbers as tags write them: `v1.24.17`, `1.3.1`, `v0.10.0-amd64`,
//! `v1.27.3-rancher1`, `v1.11`. Kubernetes releases are then asked of [`crate::kube::KubeVersion`];
//! etcd's and flannel's tags, and etcd's own `/version`, are compared as these numbers.

/// `(major, minor, patch)`: each part is its leading digits (so `3-rancher1` is 3), a missing patch is
/// 0; `None` when the major or minor number is missing (`latest`, an empty tag).
pub fn parse(tag: &str) -> Option<(u64, u64, u64)> {
    let mut parts = tag.trim().trim_start_matches('v').split('.').map(|part| {
        let digits: String = part.chars().take_while(char::is_ascii_digit).collect();
        digits.parse::<u64>().ok()
    });
    let major = parts.next()??;
    let minor = parts.next()??;
    let patch = parts.next().flatten().unwrap_or(0);
    Some((major, minor, patch))
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn versions_read_from_tags() {
        assert_eq!(parse("v1.24.17"), Some((1, 24, 17)));
        assert_eq!(parse("v0.10.0-amd64"), Some((0, 10, 0)));
        assert_eq!(parse("v1.27.3-rancher1"), Some((1, 27, 3)));
        assert_eq!(parse("v1.11.6-1"), Some((1, 11, 6)));
        assert_eq!(parse("1.3.1"), Some((1, 3, 1)));
        assert_eq!(parse("v1.11"), Some((1, 11, 0)));
        assert_eq!(parse(" 3.4.23\n"), Some((3, 4, 23)));
        assert_eq!(parse("latest"), None);
        assert_eq!(parse("v1"), None);
        assert_eq!(parse(""), None);
    }
}
