//! Shared fixtures for Hearth's end-to-end tests.
