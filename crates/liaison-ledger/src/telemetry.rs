//! What the ledger reports: the group commit's size and duration as it happens, and the
//! gauges of its working state (outbox, clocks, checkpoints) read when they are scraped.

use std::time::Duration;

use time::OffsetDateTime;

use crate::{Ledger, LedgerError};

pub const BATCH_ENTRIES: &str = "liaison_ledger_batch_entries";
pub const COMMIT_DURATION: &str = "liaison_ledger_commit_duration_seconds";

pub const COMMIT_PHASE_DURATION: &str = "liaison_ledger_commit_phase_seconds";
pub const QUEUE_WAIT: &str = "liaison_ledger_queue_wait_seconds";

/// One group commit, as logged and measured.
pub(crate) struct BatchCommitted {
    pub requests: usize,
    pub entries: usize,
    pub elapsed: Duration,
    pub phases: [Duration; Phase::ALL.len()],
}

impl BatchCommitted {
    pub fn emit(&self) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let [seal, begin, read, plan, write, commit] = self.phases.map(ms);
        tracing::debug!(
            requests = self.requests,
            entries = self.entries,
            elapsed_ms = ms(self.elapsed),
            seal_ms = seal,
            begin_ms = begin,
            read_ms = read,
            plan_ms = plan,
            write_ms = write,
            commit_ms = commit,
            "batch committed"
        );
        metrics::histogram!(BATCH_ENTRIES).record(self.entries as f64);
        metrics::histogram!(COMMIT_DURATION).record(self.elapsed.as_secs_f64());
        for (phase, spent) in Phase::ALL.iter().zip(self.phases) {
            metrics::histogram!(COMMIT_PHASE_DURATION, "phase" => phase.as_str())
                .record(spent.as_secs_f64());
        }
    }
}

/// How long a request waited between being handed to the committer and the committer
/// taking it into a batch: the batch before it committing, or a full queue.
pub(crate) fn queue_wait(request: &'static str, waited: Duration) {
    metrics::histogram!(QUEUE_WAIT, "request" => request).record(waited.as_secs_f64());
}

/// The steps of one group commit, timed so that an operator (and the benchmark) can tell
/// the database's round trips from the committer's own work and from the fsync.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Sealing the accepted bodies (before the lock is taken; zero without a keyring).
    Seal,
    /// `BEGIN` and the sequencing lock, in one round trip; includes waiting for another
    /// instance's batch to release the lock.
    Begin,
    /// Reading the head, the known ids, the outbox rows and cases the batch touches (and
    /// the tree's right edge, when the one kept from the last batch is stale).
    Read,
    /// Planning the entries and growing the Merkle tree, in memory.
    Plan,
    /// The statements that write entries, messages, tree nodes, outbox rows and cases.
    Write,
    /// `COMMIT`: the WAL flushed to disk.
    Commit,
}

impl Phase {
    pub const ALL: [Phase; 6] = [
        Phase::Seal,
        Phase::Begin,
        Phase::Read,
        Phase::Plan,
        Phase::Write,
        Phase::Commit,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Seal => "seal",
            Phase::Begin => "begin",
            Phase::Read => "read",
            Phase::Plan => "plan",
            Phase::Write => "write",
            Phase::Commit => "commit",
        }
    }
}

/// The ledger's working state at one instant.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Gauges {
    /// Deliveries not yet dispatched.
    pub outbox_pending: u64,
    /// How long the oldest of them has waited since its message was accepted.
    pub oldest_pending: Duration,
    /// Running clocks per flow: (flow, running, past due).
    pub clocks: Vec<(String, u64, u64)>,
    /// The latest signed checkpoint's size and signing time.
    pub checkpoint: Option<(u64, OffsetDateTime)>,
}

impl Ledger {
    /// Reads the gauges; each query uses a partial index of the rows it counts (pending
    /// deliveries, running clocks), so the cost follows the backlog, not the ledger's size.
    pub async fn gauges(&self, now: OffsetDateTime) -> Result<Gauges, LedgerError> {
        let pool = self.pool();
        let (pending, oldest): (i64, Option<OffsetDateTime>) = sqlx::query_as(
            "SELECT count(*), min(m.received_at) FROM outbox o \
             JOIN messages m ON m.id = o.message_id WHERE o.state = 'pending'",
        )
        .fetch_one(pool)
        .await
        .map_err(LedgerError::query("counting pending deliveries"))?;
        let clocks: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT flow, count(*), count(*) FILTER (WHERE due_at < $1) FROM case_clocks \
             WHERE stopped_seq IS NULL GROUP BY flow ORDER BY flow",
        )
        .bind(now)
        .fetch_all(pool)
        .await
        .map_err(LedgerError::query("counting running clocks"))?;
        let checkpoint = self.latest_checkpoint().await?;
        let waited = oldest.map_or(time::Duration::ZERO, |at| now - at);
        Ok(Gauges {
            outbox_pending: pending.max(0) as u64,
            oldest_pending: waited.try_into().unwrap_or(Duration::ZERO),
            clocks: clocks
                .into_iter()
                .map(|(flow, open, overdue)| (flow, open.max(0) as u64, overdue.max(0) as u64))
                .collect(),
            checkpoint: checkpoint.map(|c| (c.tree_size, c.signed_at)),
        })
    }
}

/// What one table of the ledger's database holds: rows (PostgreSQL's estimate after
/// `ANALYZE`) and bytes on disk with its indexes and TOAST.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct TableUse {
    pub table: String,
    pub rows: i64,
    pub bytes: i64,
}

impl Ledger {
    /// The disk use of every table of the ledger's schema, for capacity planning.
    pub async fn table_use(&self) -> Result<Vec<TableUse>, LedgerError> {
        let pool = self.pool();
        sqlx::query("ANALYZE")
            .execute(pool)
            .await
            .map_err(LedgerError::query("analyzing the tables"))?;
        let rows: Vec<(String, i64, i64)> = sqlx::query_as(
            // A partitioned table counts as the sum of its partitions.
            "SELECT coalesce(pg_partition_root(c.oid), c.oid)::regclass::text AS name, \
                    sum(greatest(c.reltuples, 0))::bigint, \
                    sum(pg_total_relation_size(c.oid))::bigint \
             FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = current_schema() AND c.relkind = 'r' \
             GROUP BY 1 ORDER BY 1",
        )
        .fetch_all(pool)
        .await
        .map_err(LedgerError::query("reading table sizes"))?;
        Ok(rows
            .into_iter()
            .map(|(table, rows, bytes)| TableUse { table, rows, bytes })
            .collect())
    }

    /// The server's write-ahead log position, in bytes since the cluster began: the
    /// difference between two readings is the WAL written in between (by every database
    /// of the cluster).
    pub async fn wal_position(&self) -> Result<i64, LedgerError> {
        sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint")
            .fetch_one(self.pool())
            .await
            .map_err(LedgerError::query("reading the WAL position"))
    }
}

/// One full verification of the database ledger, as `liaison ledger verify` recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verification {
    pub verified_at: OffsetDateTime,
    pub entries: i64,
    pub ok: bool,
    pub findings: i64,
}

impl Ledger {
    /// Records the outcome of a full verification, for the console to show when the ledger
    /// was last verified and with what result.
    pub async fn record_verification(&self, v: &Verification) -> Result<(), LedgerError> {
        sqlx::query(
            "INSERT INTO ledger_verifications (verified_at, entries, ok, findings) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(v.verified_at)
        .bind(v.entries)
        .bind(v.ok)
        .bind(v.findings)
        .execute(self.pool())
        .await
        .map_err(LedgerError::query("recording a verification"))?;
        Ok(())
    }

    /// The latest full verification recorded, if any.
    pub async fn latest_verification(&self) -> Result<Option<Verification>, LedgerError> {
        let row: Option<(OffsetDateTime, i64, bool, i64)> = sqlx::query_as(
            "SELECT verified_at, entries, ok, findings FROM ledger_verifications \
             ORDER BY verified_at DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(LedgerError::query("reading the latest verification"))?;
        Ok(
            row.map(|(verified_at, entries, ok, findings)| Verification {
                verified_at,
                entries,
                ok,
                findings,
            }),
        )
    }
}
