//! The one logger of the agent and the server, on `tracing`: events go to stderr, one write per event
//! (lines from concurrent workers stay whole), each line in a form journald understands. Under systemd
//! (`JOURNAL_STREAM` set) a line starts with its syslog priority (`<3>` error, `<4>` warning, `<6>`
//! info), which journald turns into the entry's priority and time; on a terminal the level is spelled
//! out (`error: `, `warning: `) and info lines are bare. Fields after the message are `key=value`.
//!
//! Log with `tracing::{info, warn, error}!`; the binaries call [`init`] first. Nothing logs a secret:
//! callers pass masked values (`NodeConfig::scrub`).

use std::fmt;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

/// Installs the logger for this process (once; later calls change nothing). Info and above are kept.
pub fn init() {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = tracing_subscriber::fmt()
        .event_format(Journald { journald })
        .with_writer(std::io::stderr)
        .with_max_level(Level::INFO)
        .try_init();
}

/// The prefix of each line of an event at `level`.
fn prefix(level: Level, journald: bool) -> &'static str {
    match (journald, level) {
        (true, Level::ERROR) => "<3>",
        (true, Level::WARN) => "<4>",
        (true, _) => "<6>",
        (false, Level::ERROR) => "error: ",
        (false, Level::WARN) => "warning: ",
        (false, _) => "",
    }
}

struct Journald {
    journald: bool,
}

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut message = String::new();
        ctx.format_fields(Writer::new(&mut message), event)?;
        let prefix = prefix(*event.metadata().level(), self.journald);
        // Every line of a multi-line message carries the prefix, so journald keeps its priority.
        for line in message.lines() {
            writeln!(writer, "{prefix}{line}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journald_reads_the_priority_and_a_terminal_the_word() {
        assert_eq!(prefix(Level::ERROR, true), "<3>");
        assert_eq!(prefix(Level::WARN, true), "<4>");
        assert_eq!(prefix(Level::INFO, true), "<6>");
        assert_eq!(prefix(Level::ERROR, false), "error: ");
        assert_eq!(prefix(Level::INFO, false), "");
    }
}
