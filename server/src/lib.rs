//! hearth-server: cluster model and validation, Heat rendering, and the node-facing service.
//! Only the command-line shell exists so far; the rest arrives with the server issue.

pub mod serve;
