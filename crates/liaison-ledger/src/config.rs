//! How to reach the database and how large a group commit may grow.

use std::path::PathBuf;
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct LedgerConfig {
    pub database_url: String,
    pub max_connections: u32,
    /// The most jobs one transaction of the committer takes.
    pub batch_max: usize,
    /// Bounds connecting, acquiring a pooled connection and [`crate::Ledger::ping`].
    pub connect_timeout: Duration,
    /// Seqs per partition of `ledger_entries` and `messages`: the unit archival moves out
    /// (fixed by the first broker that opens the database; later values are ignored).
    pub partition_entries: u64,
    /// The directory of key-encryption keys (`<id>.kek`) that seal message bodies; with
    /// no directory or no key in it, bodies are stored in clear and cannot be erased.
    pub kek_dir: Option<PathBuf>,
    /// The KEK that wraps new data keys; may be left out when `kek_dir` holds one key.
    pub active_kek: Option<String>,
}

impl LedgerConfig {
    pub fn new(database_url: impl Into<String>) -> Self {
        Self {
            database_url: database_url.into(),
            ..Self::default()
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/liaison".to_owned(),
            max_connections: 8,
            batch_max: 1000,
            connect_timeout: Duration::from_secs(5),
            partition_entries: 1 << 20,
            kek_dir: None,
            active_kek: None,
        }
    }
}

/// The URL with any password replaced, fit for error messages and logs.
pub(crate) use liaison_core::redact_url as redacted_url;
