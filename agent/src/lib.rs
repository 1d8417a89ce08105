//! hearth-agent: the runner, its reporting and state, and the Heat signal. `main.rs` is only the CLI.

// Product code fails with a message or an error, never a bare unwrap; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod client;
pub mod input;
pub mod report;
pub mod runner;
pub mod signal;
pub mod state;

/// `println!` for the agent's output: a reader that went away (`hearth-agent status | head -1`) loses
/// the rest of it, and the command goes on to its end instead of panicking on the closed pipe.
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}
