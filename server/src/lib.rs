//! hearth-server: Magnum's cluster model and validation, the mapping to Heat parameters and node configs,
//! the Heat templates and user-data, the bundle `openstack stack create` takes, and `serve`, the
//! certificate service nodes use.

// Product code fails with a message or an error, never a bare unwrap; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod bundle;
pub mod cidr;
pub mod init;
pub mod inputs;
pub mod kubeconfig;
pub mod labels;
pub mod model;
pub mod output;
pub mod params;
pub mod serve;
pub mod settings;
pub mod user_data;
pub mod validate;
