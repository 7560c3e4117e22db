//! Inclusion and consistency proofs from the stored tree, for agencies and auditors.

use std::collections::HashMap;

use liaison_core::audit::Hash;
use liaison_core::merkle::{self, NodeId};
use serde::Serialize;
use sqlx::Row;
use uuid::Uuid;

use crate::checkpoints::{StoredCheckpoint, missing_node};
use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::sql::{hash_from_db, seq_from_db, seq_to_db};
use crate::tree;

/// One entry's inclusion proof against a tree of `tree_size` leaves, with the entry's
/// canonical bytes (whose RFC 9162 leaf hash is `leaf_hash`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct InclusionProof {
    pub seq: u64,
    /// Empty for an archived entry.
    pub kind: String,
    /// Empty for an archived entry: its bytes are in its archive, its leaf hash is kept.
    #[serde(skip)]
    pub entry: Vec<u8>,
    /// The entry was archived (`liaison ledger archive`).
    pub archived: bool,
    /// `seq - 1`.
    pub leaf_index: u64,
    pub tree_size: u64,
    pub leaf_hash: Hash,
    /// RFC 9162 audit path, leaf to root.
    pub path: Vec<Hash>,
}

/// The proofs of every entry of one message against one checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageProofs {
    pub checkpoint: StoredCheckpoint,
    pub proofs: Vec<InclusionProof>,
    /// Entries of the message recorded after the checkpoint: not provable yet.
    pub pending: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConsistencyProof {
    pub from: u64,
    pub to: u64,
    pub from_root: Hash,
    pub to_root: Hash,
    pub path: Vec<Hash>,
}

impl Ledger {
    /// Proofs for every entry about message `id` against the latest checkpoint; `None` when
    /// no checkpoint has been signed yet.
    pub async fn message_proofs(&self, id: Uuid) -> Result<Option<MessageProofs>, LedgerError> {
        let Some(checkpoint) = self.latest_checkpoint().await? else {
            return Ok(None);
        };
        let size = checkpoint.tree_size;
        let rows = sqlx::query(
            "SELECT seq, kind, entry, leaf_hash FROM ledger_entries WHERE message_id = $1 \
             ORDER BY seq",
        )
        .bind(id)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading a message's entries"))?;
        let read = |e: sqlx::Error| LedgerError::Corrupt(format!("ledger entry: {e}"));
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            let seq = seq_from_db(row.try_get("seq").map_err(read)?)?;
            let kind: String = row.try_get("kind").map_err(read)?;
            let entry: Vec<u8> = row.try_get("entry").map_err(read)?;
            let leaf = hash_from_db(row.try_get("leaf_hash").map_err(read)?)?;
            entries.push((seq, kind, entry, leaf));
        }
        let (covered, pending): (Vec<_>, Vec<_>) =
            entries.into_iter().partition(|(seq, ..)| *seq <= size);
        let wanted: Vec<NodeId> = covered
            .iter()
            .flat_map(|(seq, ..)| merkle::nodes_for_inclusion(seq - 1, size))
            .collect();
        let nodes = self.tree_nodes(wanted).await?;
        let mut proofs = Vec::with_capacity(covered.len());
        for (seq, kind, entry, leaf_hash) in covered {
            let path = merkle::inclusion_proof(&nodes, seq - 1, size).map_err(proof_error)?;
            proofs.push(InclusionProof {
                seq,
                kind,
                entry,
                archived: false,
                leaf_index: seq - 1,
                tree_size: size,
                leaf_hash,
                path,
            });
        }
        Ok(Some(MessageProofs {
            checkpoint,
            proofs,
            pending: pending.into_iter().map(|(seq, ..)| seq).collect(),
        }))
    }

    /// The inclusion proof of entry `seq` against the latest checkpoint: `Ok(None)` when
    /// the ledger has no such entry; `Err(Pending)`-like `Ok(Some(Err(size)))` when no
    /// checkpoint covers it yet (`size`: the latest checkpoint's, 0 for none).
    pub async fn entry_proof(
        &self,
        seq: u64,
    ) -> Result<Option<Result<(StoredCheckpoint, InclusionProof), u64>>, LedgerError> {
        // An archived entry is proved from its kept leaf hash; its bytes are in the archive.
        let row = sqlx::query(
            "SELECT kind, entry, leaf_hash FROM ledger_entries WHERE seq = $1 \
             UNION ALL SELECT NULL, NULL, leaf_hash FROM ledger_archived_leaves WHERE seq = $1",
        )
        .bind(seq_to_db(seq)?)
        .fetch_optional(self.pool())
        .await
        .map_err(LedgerError::query("reading an entry"))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let read = |e: sqlx::Error| LedgerError::Corrupt(format!("ledger entry: {e}"));
        let kind: Option<String> = row.try_get("kind").map_err(read)?;
        let entry: Option<Vec<u8>> = row.try_get("entry").map_err(read)?;
        let checkpoint = match self.latest_checkpoint().await? {
            Some(c) if c.tree_size >= seq => c,
            other => return Ok(Some(Err(other.map_or(0, |c| c.tree_size)))),
        };
        let size = checkpoint.tree_size;
        let nodes = self
            .tree_nodes(merkle::nodes_for_inclusion(seq - 1, size))
            .await?;
        let path = merkle::inclusion_proof(&nodes, seq - 1, size).map_err(proof_error)?;
        Ok(Some(Ok((
            checkpoint,
            InclusionProof {
                seq,
                archived: entry.is_none(),
                kind: kind.unwrap_or_default(),
                entry: entry.unwrap_or_default(),
                leaf_index: seq - 1,
                tree_size: size,
                leaf_hash: hash_from_db(row.try_get("leaf_hash").map_err(read)?)?,
                path,
            },
        ))))
    }

    /// The consistency proof between trees of `from` and `to` leaves with both roots.
    /// The caller checks `1 ≤ from ≤ to ≤` the ledger's size.
    pub async fn consistency_proof(
        &self,
        from: u64,
        to: u64,
    ) -> Result<ConsistencyProof, LedgerError> {
        let mut wanted = merkle::nodes_for_consistency(from, to);
        wanted.extend(merkle::nodes_for_root(from));
        wanted.extend(merkle::nodes_for_root(to));
        let nodes = self.tree_nodes(wanted).await?;
        Ok(ConsistencyProof {
            from,
            to,
            from_root: merkle::root(&nodes, from).map_err(missing_node)?,
            to_root: merkle::root(&nodes, to).map_err(missing_node)?,
            path: merkle::consistency_proof(&nodes, from, to).map_err(proof_error)?,
        })
    }

    /// The stored tree nodes `wanted` names (each once, whatever the repeats).
    async fn tree_nodes(
        &self,
        mut wanted: Vec<NodeId>,
    ) -> Result<HashMap<NodeId, Hash>, LedgerError> {
        wanted.sort_unstable();
        wanted.dedup();
        let mut conn = self
            .pool()
            .acquire()
            .await
            .map_err(LedgerError::query("acquiring a connection"))?;
        tree::fetch_nodes(&mut conn, &wanted).await
    }

    /// The root hash of the first `size` entries, from the stored tree.
    pub async fn root_at(&self, size: u64) -> Result<Hash, LedgerError> {
        let nodes = self.tree_nodes(merkle::nodes_for_root(size)).await?;
        merkle::root(&nodes, size).map_err(missing_node)
    }

    /// How many entries the ledger holds (its last seq), archived ones included.
    pub async fn size(&self) -> Result<u64, LedgerError> {
        crate::partitions::live_size(self.pool()).await
    }

    /// Whether the ledger holds an entry with this seq, in the database or archived (for
    /// validating requests).
    pub async fn has_seq(&self, seq: u64) -> Result<bool, LedgerError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM ledger_entries WHERE seq = $1) \
                 OR EXISTS (SELECT 1 FROM ledger_archived_leaves WHERE seq = $1)",
        )
        .bind(seq_to_db(seq)?)
        .fetch_one(self.pool())
        .await
        .map_err(LedgerError::query("looking up a seq"))
    }
}

fn proof_error(e: merkle::ProofError<NodeId>) -> LedgerError {
    match e {
        merkle::ProofError::Source(id) => missing_node(id),
        merkle::ProofError::IndexOutOfRange { index, size } => {
            LedgerError::Corrupt(format!("leaf {index} is outside a tree of {size}"))
        }
        merkle::ProofError::BadSizes { old, new } => {
            LedgerError::Corrupt(format!("no consistency proof for sizes {old} → {new}"))
        }
    }
}
