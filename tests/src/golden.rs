//! Golden files: a rendered artefact compared with its reviewed copy under a test's `golden/` folder.
//! `HEARTH_BLESS=1` rewrites the copies instead (then review the diff before committing).

use std::path::Path;

/// Compares `actual` with the file `path`, or writes it there when `HEARTH_BLESS` is set. Panics with
/// the first differing line and the whole actual text, so a failing CI log shows what changed.
pub fn check(path: &Path, actual: &str) {
    if std::env::var_os("HEARTH_BLESS").is_some() {
        std::fs::create_dir_all(path.parent().expect("a golden file lives in a folder")).unwrap();
        std::fs::write(path, actual).unwrap();
        return;
    }
    let expected =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e} (HEARTH_BLESS=1 writes it)", path.display()));
    if expected != actual {
        let first = expected.lines().zip(actual.lines()).position(|(a, b)| a != b);
        panic!(
            "{} differs from this run (first differing line {:?}); HEARTH_BLESS=1 regenerates it.\n--- actual ---\n{actual}",
            path.display(),
            first.map(|i| i + 1)
        );
    }
}

/// A tree as golden files show it: path as on the node → (kind and mode, contents).
pub type Snapshot = std::collections::BTreeMap<String, (String, Vec<u8>)>;

/// Every directory, file and link under `root` (a rooted node), keyed by its path on the node.
pub fn snapshot(root: &Path) -> Snapshot {
    use std::os::unix::fs::PermissionsExt as _;
    let mut out = Snapshot::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = path.symlink_metadata().unwrap();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            let mode = meta.permissions().mode() & 0o7777;
            let value = if meta.is_dir() {
                stack.push(path.clone());
                (format!("dir {mode:04o}"), Vec::new())
            } else if meta.file_type().is_symlink() {
                ("link".into(), std::fs::read_link(&path).unwrap().display().to_string().into_bytes())
            } else {
                (format!("file {mode:04o}"), std::fs::read(&path).unwrap())
            };
            out.insert(rel, value);
        }
    }
    out
}

/// Shows the agent binary the agent-service step installed as whether it is the one that ran, not its
/// bytes (megabytes that change with every build).
pub fn mark_installed_agent(snapshot: &mut Snapshot, agent_that_ran: &Path) {
    if let Some((_, contents)) = snapshot.get_mut("/usr/local/bin/hearth-agent") {
        let same = *contents == std::fs::read(agent_that_ran).unwrap();
        *contents = format!("(the hearth-agent that ran: {same})\n").into_bytes();
    }
}

/// One entry of a snapshot as golden files show it: a header line, then a file's or link's contents.
pub fn render_entry(path: &str, (kind, contents): &(String, Vec<u8>)) -> String {
    let mut text = format!("== {path} ({kind})\n");
    if kind.starts_with("file") || kind == "link" {
        text.push_str(&String::from_utf8_lossy(contents));
        if !contents.ends_with(b"\n") {
            text.push_str("\n(no newline at end)\n");
        }
    }
    text
}
