//! Signed checkpoints: the checkpointer that signs the tree head on a cadence, and reading
//! checkpoints back.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use liaison_core::audit::Hash;
use liaison_core::checkpoint::CheckpointSigner;
use liaison_core::merkle;
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgConnection, Row};
use time::OffsetDateTime;
use tracing::{debug, warn};

use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::sql::{db_time, hash_from_db, seq_from_db, seq_to_db};
use crate::tree;

/// Only one instance signs at a time ("ckpt" in ASCII); the others skip their turn.
const CHECKPOINT_LOCK: i64 = 0x636b_7074;

/// A checkpoint as stored: the C2SP note and the values it asserts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct StoredCheckpoint {
    pub tree_size: u64,
    #[serde(serialize_with = "hex_hash")]
    pub root_hash: Hash,
    #[serde(with = "time::serde::rfc3339")]
    pub signed_at: OffsetDateTime,
    pub note: String,
}

/// A witness's cosignature of a checkpoint: its signature line, as the witness made it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct StoredCosignature {
    pub tree_size: u64,
    pub witness: String,
    pub line: String,
    #[serde(with = "time::serde::rfc3339")]
    pub cosigned_at: OffsetDateTime,
}

fn hex_hash<S: serde::Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(hash))
}

fn checkpoint_row(row: &PgRow) -> Result<StoredCheckpoint, LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("checkpoint row: {e}"));
    Ok(StoredCheckpoint {
        tree_size: seq_from_db(row.try_get("tree_size").map_err(read)?)?,
        root_hash: hash_from_db(row.try_get("root_hash").map_err(read)?)?,
        signed_at: row.try_get("signed_at").map_err(read)?,
        note: row.try_get("note").map_err(read)?,
    })
}

/// Signs the tree of the first `size` entries (its root from the stored tree) and stores
/// the checkpoint, unless one of that size is stored already.
pub(crate) async fn sign_and_store(
    conn: &mut PgConnection,
    signer: &CheckpointSigner,
    size: u64,
    now: OffsetDateTime,
) -> Result<StoredCheckpoint, LedgerError> {
    let nodes = tree::fetch_nodes(conn, &merkle::nodes_for_root(size)).await?;
    let root = merkle::root(&nodes, size).map_err(missing_node)?;
    // The note and the column say the same time.
    let signed_at = db_time(now);
    let note = signer.sign(size, root, signed_at);
    sqlx::query(
        "INSERT INTO ledger_checkpoints (tree_size, root_hash, signed_at, note) \
         VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size) DO NOTHING",
    )
    .bind(seq_to_db(size)?)
    .bind(&root[..])
    .bind(signed_at)
    .bind(&note)
    .execute(&mut *conn)
    .await
    .map_err(LedgerError::query("inserting a checkpoint"))?;
    Ok(StoredCheckpoint {
        tree_size: size,
        root_hash: root,
        signed_at,
        note,
    })
}

impl Ledger {
    /// Signs the current tree head unless the latest checkpoint already covers it, or
    /// another instance is signing right now. Returns the new checkpoint, if any.
    pub async fn checkpoint(
        &self,
        signer: &CheckpointSigner,
    ) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let mut tx = self
            .pool()
            .begin()
            .await
            .map_err(LedgerError::query("starting a checkpoint"))?;
        let ours: bool = sqlx::query_scalar("SELECT pg_try_advisory_xact_lock($1)")
            .bind(CHECKPOINT_LOCK)
            .fetch_one(&mut *tx)
            .await
            .map_err(LedgerError::query("taking the checkpoint lock"))?;
        if !ours {
            return Ok(None);
        }
        // Batches commit one after another under the sequencing lock, so every seq up to
        // the largest committed one is committed, with its tree nodes.
        let size = seq_from_db(
            sqlx::query_scalar("SELECT coalesce(max(seq), 0)::bigint FROM ledger_entries")
                .fetch_one(&mut *tx)
                .await
                .map_err(LedgerError::query("reading the tree size"))?,
        )?;
        let signed = seq_from_db(
            sqlx::query_scalar(
                "SELECT coalesce(max(tree_size), 0)::bigint FROM ledger_checkpoints",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(LedgerError::query("reading the latest checkpoint"))?,
        )?;
        if size == 0 || size <= signed {
            return Ok(None);
        }
        let signed = sign_and_store(&mut tx, signer, size, self.clock_now()).await?;
        tx.commit()
            .await
            .map_err(LedgerError::query("committing a checkpoint"))?;
        debug!(tree.size = size, "checkpoint signed");
        Ok(Some(signed))
    }

    pub async fn latest_checkpoint(&self) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let row = sqlx::query(
            "SELECT tree_size, root_hash, signed_at, note FROM ledger_checkpoints \
             ORDER BY tree_size DESC LIMIT 1",
        )
        .fetch_optional(self.pool())
        .await
        .map_err(LedgerError::query("reading the latest checkpoint"))?;
        row.as_ref().map(checkpoint_row).transpose()
    }

    /// The checkpoint signed at tree size `size`, if one was.
    pub async fn checkpoint_at(&self, size: u64) -> Result<Option<StoredCheckpoint>, LedgerError> {
        let row = sqlx::query(
            "SELECT tree_size, root_hash, signed_at, note FROM ledger_checkpoints \
             WHERE tree_size = $1",
        )
        .bind(seq_to_db(size)?)
        .fetch_optional(self.pool())
        .await
        .map_err(LedgerError::query("reading a checkpoint"))?;
        row.as_ref().map(checkpoint_row).transpose()
    }

    /// Stores a witness's cosignature of the checkpoint of `size` (checked by the caller);
    /// `false` when this witness had cosigned it already.
    pub async fn add_cosignature(
        &self,
        size: u64,
        witness: &str,
        line: &str,
        cosigned_at: time::OffsetDateTime,
    ) -> Result<bool, LedgerError> {
        let inserted = sqlx::query(
            "INSERT INTO checkpoint_cosignatures (tree_size, witness, line, cosigned_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (tree_size, witness) DO NOTHING",
        )
        .bind(seq_to_db(size)?)
        .bind(witness)
        .bind(line)
        .bind(cosigned_at)
        .execute(self.pool())
        .await
        .map_err(LedgerError::query("storing a cosignature"))?
        .rows_affected();
        Ok(inserted == 1)
    }

    /// The cosignatures of the checkpoint of `size` (every size when `None`), by size and
    /// witness.
    pub async fn cosignatures(
        &self,
        size: Option<u64>,
    ) -> Result<Vec<StoredCosignature>, LedgerError> {
        let rows = sqlx::query(
            "SELECT tree_size, witness, line, cosigned_at FROM checkpoint_cosignatures \
             WHERE $1::bigint IS NULL OR tree_size = $1 ORDER BY tree_size, witness",
        )
        .bind(size.map(seq_to_db).transpose()?)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading cosignatures"))?;
        let read = |e: sqlx::Error| LedgerError::Corrupt(format!("cosignature row: {e}"));
        rows.iter()
            .map(|row| {
                Ok(StoredCosignature {
                    tree_size: seq_from_db(row.try_get("tree_size").map_err(read)?)?,
                    witness: row.try_get("witness").map_err(read)?,
                    line: row.try_get("line").map_err(read)?,
                    cosigned_at: row.try_get("cosigned_at").map_err(read)?,
                })
            })
            .collect()
    }

    /// Every checkpoint, oldest first.
    pub async fn checkpoints(&self) -> Result<Vec<StoredCheckpoint>, LedgerError> {
        let rows = sqlx::query(
            "SELECT tree_size, root_hash, signed_at, note FROM ledger_checkpoints ORDER BY tree_size",
        )
            .fetch_all(self.pool())
            .await
            .map_err(LedgerError::query("reading checkpoints"))?;
        rows.iter().map(checkpoint_row).collect()
    }
}

pub(crate) fn missing_node(id: merkle::NodeId) -> LedgerError {
    LedgerError::Corrupt(format!(
        "tree node level {} index {} is missing",
        id.level, id.index
    ))
}

/// Signs the tree head every `interval` while the ledger grows.
pub struct Checkpointer {
    pub ledger: Ledger,
    pub signer: Arc<CheckpointSigner>,
    pub interval: Duration,
}

impl Checkpointer {
    /// Runs until `shutdown` completes, then signs once more so that a clean stop leaves
    /// every entry under a checkpoint.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut ticks = tokio::time::interval(self.interval.max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                _ = ticks.tick() => self.sign_once().await,
            }
        }
        self.sign_once().await;
    }

    async fn sign_once(&self) {
        if let Err(error) = self.ledger.checkpoint(&self.signer).await {
            warn!(%error, "could not sign a checkpoint; trying again next time");
        }
    }
}
