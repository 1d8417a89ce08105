//! The one logger of the agent and the server, on `tracing`: events go to stderr, one write per event
//! (lines from concurrent workers stay whole), each line in a form journald understands. Under systemd
//! (`JOURNAL_STREAM` set) a line starts with its syslog priority (`<3>` error, `<4>` warning, `<6>`
//! info), which journald turns into the entry's priority and time; on a terminal the level is spelled
//! out (`error: `, `warning: `) and info lines are bare. Fields after the message are `key=value`.
//! A long-running service ([`init_service`]) also starts each line with its time (RFC 3339, UTC,
//! milliseconds) when journald is not there to record it.
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
    install(false);
}

/// [`init`] for a service that runs for days (`hearth-server serve`): off journald, every line starts
/// with the time it was written, so a log file or a container's output says when things happened.
pub fn init_service() {
    install(true);
}

fn install(service: bool) {
    let journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let _ = tracing_subscriber::fmt()
        .event_format(Journald { journald, timestamps: service && !journald })
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
    timestamps: bool,
}

/// `2026-12-03T17:50:28.123Z`.
fn timestamp(at: time::OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second(),
        at.millisecond()
    )
}

impl<S, N> FormatEvent<S, N> for Journald
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(&self, ctx: &FmtContext<'_, S, N>, mut writer: Writer<'_>, event: &Event<'_>) -> fmt::Result {
        let mut message = String::new();
        ctx.format_fields(Writer::new(&mut message), event)?;
        let level = prefix(*event.metadata().level(), self.journald);
        let prefix = if self.timestamps {
            format!("{} {level}", timestamp(time::OffsetDateTime::now_utc()))
        } else {
            level.to_string()
        };
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

    #[test]
    fn timestamps_are_utc_to_the_millisecond() {
        let at = time::OffsetDateTime::from_unix_timestamp_nanos(1_796_320_228_123_456_789).unwrap();
        assert_eq!(timestamp(at), "2026-12-03T17:50:28.123Z");
        let east = at.to_offset(time::UtcOffset::from_hms(2, 0, 0).unwrap());
        assert_eq!(timestamp(east), "2026-12-03T17:50:28.123Z");
    }
}
