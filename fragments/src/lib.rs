//! Hearth's node side: the node config contract, facts about the host, the one interface through which
//! steps touch the machine, and the steps themselves (one module each, named as in the catalogue).

// Product code fails with a message or an error, never a bare unwrap; tests may unwrap.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod component;
pub mod config;
pub mod digest;
pub mod etcd_client;
pub mod facts;
pub mod host;
pub mod http;
pub mod kube;
pub mod kube_api;
pub mod log;
pub mod manifests;
pub mod openstack;
pub mod paths;
pub mod pki;
pub mod probe;
pub mod quote;
pub mod registry;
pub mod runtime;
pub mod step;
pub mod steps;
pub mod systemd;
#[cfg(test)]
pub(crate) mod test_server;
pub mod version;
pub mod volume;

pub use config::{NodeConfig, Role};
