//! The stored Merkle tree: complete-subtree hashes in `ledger_tree_nodes` (level ≥ 1) and
//! leaf hashes in `ledger_entries` (level 0; `ledger_archived_leaves` once archived). Appends extend it inside the committer's
//! transaction; proofs and tree heads read the `O(log n)` nodes they need in one query.

use std::collections::HashMap;

use liaison_core::audit::Hash;
use liaison_core::merkle::{CompactRange, NodeId};
use sqlx::{PgConnection, Row};

use crate::committer::SEQUENCE_LOCK;
use crate::error::LedgerError;
use crate::sql::{hash_from_db, seq_from_db, seq_to_db};

/// Reads the given nodes; a node that is not stored is reported as corruption (the tree is
/// written with its entries, so only a hand-made change can lose one).
pub(crate) async fn fetch_nodes(
    conn: &mut PgConnection,
    ids: &[NodeId],
) -> Result<HashMap<NodeId, Hash>, LedgerError> {
    let mut found = HashMap::with_capacity(ids.len());
    let (leaves, interior): (Vec<NodeId>, Vec<NodeId>) = ids.iter().partition(|id| id.level == 0);
    if !leaves.is_empty() {
        let seqs = leaves
            .iter()
            .map(|id| seq_to_db(id.index + 1))
            .collect::<Result<Vec<_>, _>>()?;
        // Archived leaves are kept apart from their (archived) entries.
        let rows = sqlx::query(
            "SELECT seq, leaf_hash FROM ledger_entries WHERE seq = ANY($1) \
             UNION ALL SELECT seq, leaf_hash FROM ledger_archived_leaves WHERE seq = ANY($1)",
        )
        .bind(seqs)
        .fetch_all(&mut *conn)
        .await
        .map_err(LedgerError::query("reading leaf hashes"))?;
        for row in rows {
            let seq = seq_from_db(row.try_get("seq").map_err(corrupt)?)?;
            let hash = hash_from_db(row.try_get("leaf_hash").map_err(corrupt)?)?;
            found.insert(NodeId::leaf(seq - 1), hash);
        }
    }
    for (id, hash) in stored_interior_nodes(&mut *conn, &interior, "reading tree nodes").await? {
        found.insert(id, hash_from_db(hash)?);
    }
    if let Some(missing) = ids.iter().find(|id| !found.contains_key(id)) {
        return Err(LedgerError::Corrupt(format!(
            "tree node level {} index {} is missing",
            missing.level, missing.index
        )));
    }
    Ok(found)
}

/// The stored interior nodes among `ids`, with their hashes as stored (callers decide what
/// a hash of the wrong length means); ids with no stored node are left out.
pub(crate) async fn stored_interior_nodes<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    ids: &[NodeId],
    doing: &'static str,
) -> Result<Vec<(NodeId, Vec<u8>)>, LedgerError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let levels: Vec<i16> = ids.iter().map(|id| i16::from(id.level)).collect();
    let indexes = ids
        .iter()
        .map(|id| seq_to_db(id.index))
        .collect::<Result<Vec<_>, _>>()?;
    let rows = sqlx::query(
        "SELECT n.level, n.idx, n.hash FROM ledger_tree_nodes n \
         JOIN UNNEST($1::smallint[], $2::bigint[]) AS u(level, idx) \
           ON n.level = u.level AND n.idx = u.idx",
    )
    .bind(levels)
    .bind(indexes)
    .fetch_all(executor)
    .await
    .map_err(LedgerError::query(doing))?;
    rows.iter()
        .map(|row| {
            let level: i16 = row.try_get("level").map_err(corrupt)?;
            let id = NodeId {
                level: u8::try_from(level)
                    .map_err(|_| LedgerError::Corrupt(format!("tree node level {level}")))?,
                index: seq_from_db(row.try_get("idx").map_err(corrupt)?)?,
            };
            Ok((id, row.try_get("hash").map_err(corrupt)?))
        })
        .collect()
}

fn corrupt(e: sqlx::Error) -> LedgerError {
    LedgerError::Corrupt(format!("tree row: {e}"))
}

/// The right edge of the stored tree of `size` leaves.
pub(crate) async fn load_range(
    conn: &mut PgConnection,
    size: u64,
) -> Result<CompactRange, LedgerError> {
    let frontier = CompactRange::frontier(size);
    let hashes = fetch_nodes(conn, &frontier).await?;
    let parts = frontier.iter().map(|id| hashes[id]).collect();
    CompactRange::from_parts(size, parts)
        .ok_or(LedgerError::Internal("frontier of the wrong length"))
}

async fn insert_nodes(
    conn: &mut PgConnection,
    nodes: &[(NodeId, Hash)],
) -> Result<(), LedgerError> {
    if nodes.is_empty() {
        return Ok(());
    }
    let levels: Vec<i16> = nodes.iter().map(|(id, _)| i16::from(id.level)).collect();
    let indexes = nodes
        .iter()
        .map(|(id, _)| seq_to_db(id.index))
        .collect::<Result<Vec<_>, _>>()?;
    // ON CONFLICT only matters for the one-time backfill, which may meet nodes it wrote in
    // an interrupted earlier run; appends never write a node twice.
    sqlx::query(
        "INSERT INTO ledger_tree_nodes (level, idx, hash) \
         SELECT * FROM UNNEST($1::smallint[], $2::bigint[], $3::bytea[]) \
         ON CONFLICT DO NOTHING",
    )
    .bind(levels)
    .bind(indexes)
    .bind(nodes.iter().map(|(_, h)| &h[..]).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(LedgerError::query("inserting tree nodes"))?;
    Ok(())
}

/// Makes sure the stored tree covers every entry: a ledger created before the tree table
/// existed gets its nodes computed once from the stored leaf hashes. Cheap when nothing is
/// missing: it only looks at the `O(log n)` nodes of the right edge.
pub(crate) async fn ensure_complete(pool: &sqlx::PgPool) -> Result<(), LedgerError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(LedgerError::query("starting the tree check"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SEQUENCE_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::query("taking the sequencing lock"))?;
    let size = seq_from_db(
        sqlx::query_scalar("SELECT coalesce(max(seq), 0)::bigint FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await
            .map_err(LedgerError::query("reading the last seq"))?,
    )?;
    if load_range(&mut tx, size).await.is_ok() {
        return Ok(());
    }
    tracing::warn!(
        entries = size,
        "building the stored Merkle tree of an older ledger"
    );
    let mut range = CompactRange::new();
    const PAGE: i64 = 10_000;
    while range.size() < size {
        let rows = sqlx::query(
            "SELECT seq, leaf_hash FROM ledger_entries WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(seq_to_db(range.size())?)
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await
        .map_err(LedgerError::query("reading leaf hashes"))?;
        if rows.is_empty() {
            break;
        }
        let mut nodes = Vec::new();
        for row in rows {
            let seq = seq_from_db(row.try_get("seq").map_err(corrupt)?)?;
            if seq != range.size() + 1 {
                return Err(LedgerError::Corrupt(format!(
                    "ledger entry {} is missing",
                    range.size() + 1
                )));
            }
            let leaf = hash_from_db(row.try_get("leaf_hash").map_err(corrupt)?)?;
            range.push(leaf, |id, hash| nodes.push((id, hash)));
        }
        insert_nodes(&mut tx, &nodes).await?;
    }
    tx.commit()
        .await
        .map_err(LedgerError::query("committing the tree backfill"))
}
