//! Shared helpers for liaison's end-to-end tests.
