//! The server's command line: help and version, and no silent success without a subcommand.

use std::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_hearth-server");

#[test]
fn version_and_help_work_and_nothing_else_pretends_to() {
    let version = Command::new(SERVER).arg("--version").output().unwrap();
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), concat!("hearth-server ", env!("CARGO_PKG_VERSION")));
    let help = Command::new(SERVER).arg("--help").output().unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("Usage: hearth-server"));
    let bare = Command::new(SERVER).output().unwrap();
    assert_eq!(bare.status.code(), Some(2), "without a subcommand it must not exit 0");
}
