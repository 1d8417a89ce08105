//! hearth-agent: the runner, its reporting and state, and the Heat signal. `main.rs` is only the CLI.

pub mod input;
pub mod log;
pub mod report;
pub mod runner;
pub mod signal;
pub mod state;
