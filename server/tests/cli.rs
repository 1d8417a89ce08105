//! The server's command line shell: version, help, and usage errors.

use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");

#[test]
fn version_help_and_usage_errors() {
    let version = Command::new(SERVER).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), concat!("hearth-server ", env!("CARGO_PKG_VERSION")));
    let help = Command::new(SERVER).arg("--help").output().unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    for command in ["validate", "render", "serve", "ca"] {
        assert!(help.contains(command), "{command} missing from --help:\n{help}");
    }
    let bare = Command::new(SERVER).output().unwrap();
    assert_eq!(bare.status.code(), Some(2), "a bare call is a usage error");
    let missing = Command::new(SERVER).args(["render", "--cluster", "x"]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    let unreadable = Command::new(SERVER)
        .args(["validate", "--cluster-template", "/nonexistent/t.yaml", "--cluster", "/nonexistent/c.yaml"])
        .output()
        .unwrap();
    assert_eq!(unreadable.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unreadable.stderr).contains("/nonexistent/t.yaml"));
}
