//! The ledger's extent in PostgreSQL: its last seq, and the seq-range partitions of
//! `ledger_entries` and `messages` that the committer creates ahead of its batches and the
//! archive drops behind them.

use sqlx::PgPool;

use crate::error::LedgerError;
use crate::sql::{seq_from_db, seq_to_db};

/// Creates the partitions up to `through` (fixing their size at `entries` the first time)
/// and answers the last seq the created ones cover.
pub(crate) async fn extend_partitions(
    pool: &PgPool,
    through: u64,
    entries: u64,
) -> Result<u64, LedgerError> {
    let covered: i64 = sqlx::query_scalar("SELECT liaison_extend_partitions($1, $2)")
        .bind(seq_to_db(through)?)
        .bind(seq_to_db(entries)?)
        .fetch_one(pool)
        .await
        .map_err(LedgerError::query("creating ledger partitions"))?;
    seq_from_db(covered)
}

/// The ledger's last seq: its newest entry, or the end of the archived range when (as never
/// happens through `liaison ledger archive`, which keeps the head) no entry is left.
pub(crate) async fn live_size(pool: &PgPool) -> Result<u64, LedgerError> {
    seq_from_db(
        sqlx::query_scalar(
            "SELECT greatest((SELECT coalesce(max(seq), 0) FROM ledger_entries), \
                             (SELECT coalesce(max(last_seq), 0) FROM ledger_archives))::bigint",
        )
        .fetch_one(pool)
        .await
        .map_err(LedgerError::query("reading the ledger size"))?,
    )
}
