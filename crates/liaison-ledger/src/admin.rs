//! Creating and dropping the ledger's database itself, for development machines, the demo
//! and tests. Production databases are provisioned by their operators.

use sqlx::Postgres;
use sqlx::migrate::MigrateDatabase;

use crate::config::redacted_url;
use crate::error::LedgerError;

/// PostgreSQL's SQLSTATE for "database already exists".
const DUPLICATE_DATABASE: &str = "42P04";

/// Creates the database the URL names unless it exists, connecting to the server's
/// `postgres` database to do so. Safe to race with another caller doing the same.
pub async fn ensure_database(url: &str) -> Result<(), LedgerError> {
    let failed = |action, source| LedgerError::Provision {
        url: redacted_url(url),
        action,
        source,
    };
    if Postgres::database_exists(url)
        .await
        .map_err(|e| failed("look up", e))?
    {
        return Ok(());
    }
    match Postgres::create_database(url).await {
        Err(sqlx::Error::Database(e)) if e.code().as_deref() == Some(DUPLICATE_DATABASE) => Ok(()),
        other => other.map_err(|e| failed("create", e)),
    }
}

/// Drops the database the URL names, ending its open sessions first. Missing is fine.
pub async fn drop_database(url: &str) -> Result<(), LedgerError> {
    Postgres::force_drop_database(url)
        .await
        .map_err(|source| LedgerError::Provision {
            url: redacted_url(url),
            action: "drop",
            source,
        })
}
