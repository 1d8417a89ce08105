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
