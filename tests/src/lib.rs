//! Shared fixtures for Hearth's end-to-end tests.

pub mod cloud;
pub mod cloud_init;
pub mod compute;
pub mod debian_tree;
pub mod downloads;
pub mod e2e;
pub mod etcd;
pub mod golden;
pub mod heat;
pub mod ignition;
pub mod images;
pub mod keystone;
pub mod kube_api;
pub mod kubernetes;
pub mod load_balancer;
pub mod loopback;
pub mod master_node;
pub mod mounts;
pub mod node;
pub mod nspawn;
pub mod oci;
pub mod registry;
pub mod rooted;
pub mod s_server;
pub mod venv;

pub use cloud::{StandInCloud, Trustee};
pub use debian_tree::{copy_tree, debian_tree, debian_tree_copy, TreeCopy};
pub use mounts::MountGuard;
pub use node::{Network, Node, NodeOptions};
