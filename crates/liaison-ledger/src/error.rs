//! Everything the ledger can fail with, each variant saying what was being done.

use std::sync::Arc;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error(
        "cannot connect to PostgreSQL at {url} (set LIAISON_DATABASE_URL or the configuration's database URL): {source}"
    )]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "PostgreSQL at {url} did not answer within {timeout:?} (set LIAISON_DATABASE_URL or the configuration's database URL)"
    )]
    ConnectTimeout { url: String, timeout: Duration },
    #[error("cannot {action} the database {url}: {source}")]
    Provision {
        url: String,
        action: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot migrate the ledger schema: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The group commit that carried this request failed; nothing of it was recorded.
    /// Every request of the batch gets the same error, hence the `Arc`.
    #[error("the ledger could not commit this batch: {0}")]
    Commit(#[source] Arc<LedgerError>),
    #[error("ledger query failed while {context}: {source}")]
    Query {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error("the database did not answer within {0:?}")]
    Timeout(Duration),
    /// A stored row cannot be read back into domain types: someone wrote it by hand.
    #[error("stored ledger data is unreadable: {0}")]
    Corrupt(String),
    #[error("the ledger committer has stopped")]
    Closed,
    /// What was asked reads every entry from seq 1, and the first ones are archived.
    #[error(
        "cannot {what}: entries 1..={through} are archived (liaison ledger archive) and it reads every entry from seq 1"
    )]
    Archived { what: &'static str, through: u64 },
    /// The key-encryption keys of sealed bodies are missing, unreadable or wrong.
    #[error("{0}")]
    Keys(#[from] crate::keys::KeyError),
    /// A bug: the committer answered with something the request did not ask for.
    #[error("internal ledger error: {0}")]
    Internal(&'static str),
}

impl LedgerError {
    pub(crate) fn query(context: &'static str) -> impl FnOnce(sqlx::Error) -> Self {
        move |source| Self::Query { context, source }
    }

    /// Whether PostgreSQL refused the values written (SQLSTATE classes 22 data exception,
    /// 23 integrity violation, 54 program limit): a fault of some request, not of the
    /// database, so the batch is worth splitting to find it.
    pub(crate) fn is_refused_data(&self) -> bool {
        let Self::Query {
            source: sqlx::Error::Database(e),
            ..
        } = self
        else {
            return false;
        };
        e.code().is_some_and(|code| {
            ["22", "23", "54"]
                .iter()
                .any(|class| code.starts_with(class))
        })
    }

    /// Whether the same request may succeed later: the server answers these with 503.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Commit(cause) => !cause.is_refused_data(),
            _ => !matches!(
                self,
                Self::Migrate(_) | Self::Corrupt(_) | Self::Internal(_) | Self::Keys(_)
            ),
        }
    }
}
