//! The audit routes of the gateway: inclusion proofs for a message's entries, the latest
//! signed checkpoint, and consistency proofs between tree sizes. Hashes are lowercase hex;
//! audit paths are RFC 9162 order (leaf to root). See docs/audit.md.

use axum::Json;
use axum::extract::{Extension, State};
use liaison_core::RejectCode;
use liaison_core::audit::Hash;
use liaison_ledger::{LedgerError, StoredCheckpoint};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::extract::{Path, Query};
use crate::gateway::{Caller, Gateway, visible_message};
use crate::openapi::CheckpointSchema;
use crate::problem::Problem;

#[derive(Serialize, ToSchema)]
#[schema(as = Proof)]
pub struct ProofBody {
    message: Uuid,
    /// The checkpoint every proof below is against.
    #[schema(value_type = CheckpointSchema)]
    checkpoint: StoredCheckpoint,
    entries: Vec<EntryProof>,
    /// Entries of the message not yet under a checkpoint: ask again after the next one.
    pending: Vec<u64>,
}

#[derive(Serialize, ToSchema)]
struct EntryProof {
    seq: u64,
    kind: String,
    leaf_index: u64,
    tree_size: u64,
    /// Lowercase hex
    leaf_hash: String,
    /// Lowercase hex hashes, leaf to root (RFC 9162)
    audit_path: Vec<String>,
}

fn hex_all(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

fn unavailable(e: LedgerError) -> Problem {
    Problem::ledger(&e)
}

fn no_checkpoint() -> Problem {
    Problem::new(
        RejectCode::Unavailable,
        "no checkpoint has been signed yet; retry in a moment",
    )
}

/// Inclusion proofs of the message's ledger entries against a signed checkpoint
///
/// For the message's sender and recipients.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}/proof",
    operation_id = "getMessageProof",
    tag = "audit",
    params(("id" = String, Path, description = "The message id (UUID)")),
    responses(
        (status = 200, description = "Inclusion proofs", body = ProofBody),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub async fn proof(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<ProofBody>, Problem> {
    let stored = visible_message(&gateway, &caller, &id).await?;
    let uuid = stored.id;
    let proofs = gateway
        .ledger
        .message_proofs(uuid)
        .await
        .map_err(unavailable)?
        .ok_or_else(no_checkpoint)?;
    let entries = proofs
        .proofs
        .into_iter()
        .map(|p| EntryProof {
            seq: p.seq,
            kind: p.kind,
            leaf_index: p.leaf_index,
            tree_size: p.tree_size,
            leaf_hash: hex::encode(p.leaf_hash),
            audit_path: hex_all(&p.path),
        })
        .collect();
    Ok(Json(ProofBody {
        message: uuid,
        checkpoint: proofs.checkpoint,
        entries,
        pending: proofs.pending,
    }))
}

/// The latest signed checkpoint of the ledger
///
/// For any agency. Before the first checkpoint is signed the answer is 503: retry.
#[utoipa::path(
    get,
    path = "/v1/checkpoints/latest",
    operation_id = "getLatestCheckpoint",
    tag = "audit",
    responses((status = 200, description = "A signed checkpoint", body = CheckpointSchema)),
    security(("agencyCertificate" = [])),
)]
pub async fn latest_checkpoint(
    State(gateway): State<Gateway>,
) -> Result<Json<StoredCheckpoint>, Problem> {
    gateway
        .ledger
        .latest_checkpoint()
        .await
        .map_err(unavailable)?
        .map(Json)
        .ok_or_else(no_checkpoint)
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree size
    #[param(minimum = 1)]
    from: Option<u64>,
    /// The newer tree size; the latest checkpoint's by default
    #[param(minimum = 1)]
    to: Option<u64>,
}

#[derive(Serialize, ToSchema)]
#[schema(as = Consistency)]
pub struct ConsistencyBody {
    from: u64,
    to: u64,
    from_root: String,
    to_root: String,
    /// RFC 9162 §2.1.4 consistency proof.
    proof: Vec<String>,
    /// The latest checkpoint, which covers `to`.
    #[schema(value_type = CheckpointSchema)]
    checkpoint: StoredCheckpoint,
}

/// A consistency proof between two tree sizes
///
/// `1 ≤ from ≤ to ≤` the latest checkpoint's size (`to` defaults to it).
#[utoipa::path(
    get,
    path = "/v1/checkpoints/consistency",
    operation_id = "getConsistencyProof",
    tag = "audit",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "A consistency proof", body = ConsistencyBody),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub async fn consistency(
    State(gateway): State<Gateway>,
    Query(query): Query<ConsistencyQuery>,
) -> Result<Json<ConsistencyBody>, Problem> {
    let checkpoint = gateway
        .ledger
        .latest_checkpoint()
        .await
        .map_err(unavailable)?
        .ok_or_else(no_checkpoint)?;
    let to = query.to.unwrap_or(checkpoint.tree_size);
    let Some(from) = query
        .from
        .filter(|f| *f >= 1 && *f <= to && to <= checkpoint.tree_size)
    else {
        return Err(Problem::new(
            RejectCode::NotFound,
            format!(
                "no consistency proof for from={:?} to={to}: need 1 ≤ from ≤ to ≤ {} (the latest checkpoint)",
                query.from, checkpoint.tree_size
            ),
        ));
    };
    let proof = gateway
        .ledger
        .consistency_proof(from, to)
        .await
        .map_err(unavailable)?;
    Ok(Json(ConsistencyBody {
        from,
        to,
        from_root: hex::encode(proof.from_root),
        to_root: hex::encode(proof.to_root),
        proof: hex_all(&proof.path),
        checkpoint,
    }))
}
