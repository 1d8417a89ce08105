//! Logs on stderr in a form journald understands: under systemd (`JOURNAL_STREAM` set) each line starts
//! with its syslog priority (`<3>`), which journald turns into the entry's priority; on a terminal the
//! level is spelled out.

use std::sync::OnceLock;

#[derive(Clone, Copy, Debug)]
pub enum Level {
    Error = 3,
    Warning = 4,
    Info = 6,
}

fn under_journald() -> bool {
    static JOURNALD: OnceLock<bool> = OnceLock::new();
    *JOURNALD.get_or_init(|| std::env::var_os("JOURNAL_STREAM").is_some())
}

pub fn log(level: Level, message: &str) {
    let prefix = if under_journald() {
        format!("<{}>", level as u8)
    } else {
        match level {
            Level::Error => "error: ",
            Level::Warning => "warning: ",
            Level::Info => "",
        }
        .to_string()
    };
    for line in message.lines() {
        eprintln!("{prefix}{line}");
    }
}

pub fn info(message: &str) {
    log(Level::Info, message);
}

pub fn warn(message: &str) {
    log(Level::Warning, message);
}

pub fn error(message: &str) {
    log(Level::Error, message);
}
