//! Shared fixtures for Hearth's end-to-end tests.

pub mod debian_tree;
pub mod keystone;
pub mod mounts;
pub mod venv;

pub use debian_tree::{copy_tree, debian_tree, debian_tree_copy, TreeCopy};
pub use mounts::MountGuard;
