//! What every step is: a function of the config, the facts and the host ([`Context`]) that applied
//! its changes or says why it had nothing to do ([`Done`]). A leaf: the modules steps use (components,
//! volumes, the clients) take a [`Context`] from here, never from the catalogue above them.

use crate::config::NodeConfig;
use crate::facts::Facts;
use crate::host::Host;
use anyhow::Result;

/// What a step has to work with.
#[derive(Debug)]
pub struct Context<'a> {
    pub config: &'a NodeConfig,
    pub facts: &'a Facts,
    pub host: &'a Host,
}

/// How a step ended when it did not fail. Whether it changed anything is read from the host's journal.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Done {
    Applied,
    /// Nothing to do for this node, and why (e.g. "no OpenStack CA in the config").
    Skipped(String),
    /// Applied what it could, and what the node lacks because of it: an optional part left out or weaker
    /// than asked (a local registry without credentials for Swift, no OpenStack CA found). The run goes on
    /// and the warning reaches the signal's `data`, so the node joins and the operator reads why.
    Degraded(String),
}

pub type StepFn = fn(&Context) -> Result<Done>;

/// What a step needs of the config alone. The step calls it first; `validate`, `run` (before its first
/// step) and the server's render call it too, so a config the step would refuse is refused before the
/// machine is touched.
pub type CheckFn = fn(&NodeConfig) -> Result<()>;

/// The host name a check assumes when the config names no instance: the real one is known only on the
/// node, and Kubernetes takes either as it comes.
pub const CHECKED_HOSTNAME: &str = "node";
