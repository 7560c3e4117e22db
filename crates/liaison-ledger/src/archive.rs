//! Archival: a closed range of the ledger leaves the hot tables for an export directory.
//!
//! `ledger_entries` and `messages` are partitioned by seq range (migration 0019). An
//! archive takes the partitions wholly before a cutoff: it writes them as an export of that
//! range (its manifest carries the tree before it, so it verifies on its own), makes sure a
//! signed checkpoint of exactly its last seq exists, verifies what it wrote from the disk,
//! and only then, in one transaction, keeps what the rest of the ledger needs of the range
//! (leaf hashes for proofs, message ids, senders and digests for duplicate detection),
//! records the archive and drops the partitions. The tree nodes are never archived: proofs
//! of archived entries and every later checkpoint keep working from the database.

use liaison_core::FileError;
use std::path::{Path, PathBuf};

use liaison_core::audit::Hash;
use liaison_core::checkpoint::CheckpointSigner;
use sqlx::Row;
use time::OffsetDateTime;

use crate::error::LedgerError;
use crate::export::{ExportDir, ExportError};
use crate::ledger::Ledger;
use crate::sql::{db_time, hash_from_db, seq_from_db, seq_to_db};

/// Where an archive ends: before a seq, or before the first entry recorded at or after a
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArchiveCutoff {
    Seq(u64),
    Time(OffsetDateTime),
}

/// One archived range as the database records it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ArchiveRecord {
    pub first_seq: u64,
    pub last_seq: u64,
    pub root_hash: Hash,
    pub messages: u64,
    pub manifest_sha256: Hash,
    /// Where the operator wrote it (the directory given to `liaison ledger archive`).
    pub location: String,
    #[serde(with = "time::serde::rfc3339")]
    pub archived_at: OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// Nothing before the cutoff can be archived: the reason says what holds it.
    #[error("nothing to archive: {0}")]
    Nothing(String),
    /// The export written did not verify: nothing was removed from the database.
    #[error(
        "the archive written to {dir} does not verify ({reason}); nothing was removed from the database"
    )]
    NotVerified { dir: PathBuf, reason: String },
    #[error(transparent)]
    Export(#[from] ExportError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// What [`Ledger::archive`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archived {
    pub record: ArchiveRecord,
    /// Partitions of each table dropped.
    pub partitions: u64,
    /// Whether the checkpoint of the archive's last seq was signed for it.
    pub signed_checkpoint: bool,
}

impl Ledger {
    /// The last archived seq (0 when nothing is archived).
    pub async fn archived_through(&self) -> Result<u64, LedgerError> {
        seq_from_db(
            sqlx::query_scalar("SELECT coalesce(max(last_seq), 0)::bigint FROM ledger_archives")
                .fetch_one(self.pool())
                .await
                .map_err(LedgerError::query("reading the archived range"))?,
        )
    }

    /// Every archive made, oldest first.
    pub async fn archives(&self) -> Result<Vec<ArchiveRecord>, LedgerError> {
        let rows = sqlx::query(
            "SELECT first_seq, last_seq, root_hash, messages, manifest_sha256, location, archived_at \
             FROM ledger_archives ORDER BY last_seq",
        )
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading the archives"))?;
        let read = |e: sqlx::Error| LedgerError::Corrupt(format!("ledger_archives row: {e}"));
        rows.iter()
            .map(|row| {
                Ok(ArchiveRecord {
                    first_seq: seq_from_db(row.try_get("first_seq").map_err(read)?)?,
                    last_seq: seq_from_db(row.try_get("last_seq").map_err(read)?)?,
                    root_hash: hash_from_db(row.try_get("root_hash").map_err(read)?)?,
                    messages: seq_from_db(row.try_get("messages").map_err(read)?)?,
                    manifest_sha256: hash_from_db(row.try_get("manifest_sha256").map_err(read)?)?,
                    location: row.try_get("location").map_err(read)?,
                    archived_at: row.try_get("archived_at").map_err(read)?,
                })
            })
            .collect()
    }

    /// The last seq an archive before `cutoff` could end at, and what keeps it from
    /// reaching further: whole partitions only, never the last entry (the ledger's head
    /// stays in the database), never a message with a delivery still to publish or dead
    /// (the relay or a redrive still needs its body), never a row of the default
    /// partitions. A dispatched delivery is settled: RabbitMQ holds its copy.
    async fn archivable_through(
        &self,
        after: u64,
        cutoff: ArchiveCutoff,
    ) -> Result<u64, ArchiveError> {
        let size = self.size().await?;
        let per: Option<i64> =
            sqlx::query_scalar("SELECT partition_entries FROM ledger_partitioning")
                .fetch_optional(self.pool())
                .await
                .map_err(LedgerError::query("reading the partition size"))?;
        let per = seq_from_db(per.unwrap_or(0))?;
        if per == 0 {
            return Err(ArchiveError::Nothing(
                "the ledger is not partitioned yet (no broker has opened it)".into(),
            ));
        }
        let before = match cutoff {
            ArchiveCutoff::Seq(seq) => seq,
            ArchiveCutoff::Time(at) => {
                let first: Option<i64> = sqlx::query_scalar(
                    "SELECT min(seq) FROM ledger_entries WHERE seq > $1 AND recorded_at >= $2",
                )
                .bind(seq_to_db(after)?)
                .bind(at)
                .fetch_one(self.pool())
                .await
                .map_err(LedgerError::query(
                    "finding the first entry after the cutoff",
                ))?;
                first.map_or(Ok(size + 1), seq_from_db)?
            }
        };
        let mut limit = before.saturating_sub(1).min(size.saturating_sub(1));
        let mut why = format!(
            "entries before the cutoff end at {}",
            before.saturating_sub(1)
        );
        if size.saturating_sub(1) < before.saturating_sub(1) {
            why = format!("the last entry ({size}) stays in the database");
        }
        let unsettled: Option<i64> = sqlx::query_scalar(
            "SELECT min(m.seq) FROM outbox o JOIN messages m ON m.id = o.message_id \
             WHERE o.state IN ('pending', 'dead') AND m.seq > $1",
        )
        .bind(seq_to_db(after)?)
        .fetch_one(self.pool())
        .await
        .map_err(LedgerError::query("finding unsettled deliveries"))?;
        if let Some(seq) = unsettled.map(seq_from_db).transpose()?
            && seq <= limit + 1
        {
            limit = seq - 1;
            why = format!(
                "the message of entry {seq} has a delivery still to publish or dead (redrive or settle it first)"
            );
        }
        let defaulted: Option<i64> = sqlx::query_scalar(
            "SELECT min(seq) FROM (SELECT seq FROM ledger_entries_default WHERE seq > $1 \
             UNION ALL SELECT seq FROM messages_default WHERE seq > $1) d",
        )
        .bind(seq_to_db(after)?)
        .fetch_one(self.pool())
        .await
        .map_err(LedgerError::query("reading the default partitions"))?;
        if let Some(seq) = defaulted.map(seq_from_db).transpose()?
            && seq <= limit + 1
        {
            limit = seq - 1;
            why = format!("entry {seq} lies in the default partition, which is never archived");
        }
        let through = limit / per * per;
        if through <= after {
            return Err(ArchiveError::Nothing(format!(
                "archived through {after}, partitions of {per} entries; {why}"
            )));
        }
        Ok(through)
    }

    /// Archives the partitions before `cutoff` into `out` (created; must be empty), which
    /// the operator keeps: [`ExportDir::verify`] checks it alone, and `liaison ledger verify
    /// --archive` checks the whole ledger from the database and its archives. `signer` is
    /// the ledger's key: it signs the checkpoint of the archive's last seq when the broker
    /// has not signed one, and the archive carries its verifier key.
    pub async fn archive(
        &self,
        cutoff: ArchiveCutoff,
        out: &Path,
        signer: &CheckpointSigner,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Archived, ArchiveError> {
        let key = &signer.verifier();
        let after = self.archived_through().await?;
        let through = self.archivable_through(after, cutoff).await?;
        let signed_checkpoint = self.ensure_checkpoint_at(signer, through).await?;
        let exported = self
            .export_range(out, key, after, through, progress)
            .await?;
        let not_verified = |reason: String| ArchiveError::NotVerified {
            dir: out.to_path_buf(),
            reason,
        };
        // Read back from the disk, as an auditor will.
        let written = ExportDir::open(out)?;
        let report = written.verify(key, None, &mut |_| {})?;
        if !report.is_ok() {
            return Err(not_verified(format!(
                "{} finding(s), first: {}",
                report.findings_total,
                report
                    .findings
                    .first()
                    .map_or_else(|| "checkpoint roots differ".to_owned(), ToString::to_string)
            )));
        }
        let root = self.root_at(through).await?;
        if report.verified_through != through || report.root != root {
            return Err(not_verified(format!(
                "it verifies through {} with root {}, the database's tree through {through} has root {}",
                report.verified_through,
                hex::encode(report.root),
                hex::encode(root)
            )));
        }
        let manifest = std::fs::read(out.join("manifest.json"))
            .map_err(FileError::at("read", &out.join("manifest.json")))
            .map_err(ExportError::from)?;
        let record = ArchiveRecord {
            first_seq: after + 1,
            last_seq: through,
            root_hash: root,
            messages: exported.manifest.messages,
            manifest_sha256: liaison_core::audit::sha256(&manifest),
            location: std::path::absolute(out)
                .unwrap_or_else(|_| out.to_path_buf())
                .display()
                .to_string(),
            archived_at: db_time(self.clock_now()),
        };
        let partitions = self.drop_archived(&record).await?;
        Ok(Archived {
            record,
            partitions,
            signed_checkpoint,
        })
    }

    /// Signs the checkpoint of exactly `size` entries unless one exists (the broker signs
    /// the head as it grows, rarely at a partition's end). Whether it signed one.
    async fn ensure_checkpoint_at(
        &self,
        signer: &CheckpointSigner,
        size: u64,
    ) -> Result<bool, LedgerError> {
        if self.checkpoint_at(size).await?.is_some() {
            return Ok(false);
        }
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(LedgerError::query("acquiring a connection"))?;
        crate::checkpoints::sign_and_store(&mut conn, signer, size, self.clock_now()).await?;
        Ok(true)
    }

    /// Keeps what the rest of the ledger needs of the range, records the archive and drops
    /// its partitions, in one transaction: either all of it happens or none.
    async fn drop_archived(&self, record: &ArchiveRecord) -> Result<u64, LedgerError> {
        let first = seq_to_db(record.first_seq)?;
        let last = seq_to_db(record.last_seq)?;
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(LedgerError::query("starting the archive transaction"))?;
        sqlx::query(
            "INSERT INTO ledger_archived_leaves (seq, leaf_hash) \
             SELECT seq, leaf_hash FROM ledger_entries WHERE seq >= $1 AND seq <= $2",
        )
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::query("keeping the archived leaf hashes"))?;
        sqlx::query(
            "INSERT INTO archived_messages (id, seq, sender, caseref, sha256, route, recorded_at) \
             SELECT m.id, m.seq, m.sender, m.caseref, m.sha256, m.route, e.recorded_at \
             FROM messages m JOIN ledger_entries e ON e.seq = m.seq \
             WHERE m.seq >= $1 AND m.seq <= $2",
        )
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::query("keeping the archived message ids"))?;
        sqlx::query(
            "DELETE FROM outbox WHERE message_id IN \
             (SELECT id FROM messages WHERE seq >= $1 AND seq <= $2)",
        )
        .bind(first)
        .bind(last)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::query(
            "removing the archived messages' settled deliveries",
        ))?;
        sqlx::query(
            "INSERT INTO ledger_archives \
             (first_seq, last_seq, root_hash, messages, manifest_sha256, location, archived_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(first)
        .bind(last)
        .bind(&record.root_hash[..])
        .bind(seq_to_db(record.messages)?)
        .bind(&record.manifest_sha256[..])
        .bind(&record.location)
        .bind(record.archived_at)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::query("recording the archive"))?;
        let dropped: i32 = sqlx::query_scalar("SELECT liaison_drop_archived_partitions($1, $2)")
            .bind(first)
            .bind(last)
            .fetch_one(&mut *tx)
            .await
            .map_err(LedgerError::query(
                "dropping the archived partitions (run as the tables' owner)",
            ))?;
        tx.commit()
            .await
            .map_err(LedgerError::query("committing the archive"))?;
        Ok(u64::try_from(dropped).unwrap_or(0))
    }
}
