//! The audit routes of the gateway: inclusion proofs for a message's entries and for any
//! entry its agency may see, each with the entry's canonical bytes; signed checkpoints,
//! the latest or by size, with their witnesses' cosignatures; consistency proofs between
//! tree sizes with the checkpoints at both ends; the entries themselves, for auditors and
//! administrators; and witnesses' cosignatures posted by auditors. Hashes are lowercase
//! hex, entry bytes standard base64; audit paths are RFC 9162 order (leaf to root). See
//! docs/audit.md.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use liaison_core::audit::Hash;
use liaison_core::cosignature::with_signature_line;
use liaison_core::{Entry, RejectCode};
use liaison_ledger::{InclusionProof, LedgerError, StoredCheckpoint, StoredCosignature};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::extract::{Path, Query};
use crate::http::gateway::{Gateway, Reader, visible_message};
use crate::http::openapi::CheckpointSchema;
use crate::http::problem::Problem;

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
pub struct EntryProof {
    seq: u64,
    /// Absent for an archived entry
    #[serde(skip_serializing_if = "String::is_empty")]
    kind: String,
    /// The entry's canonical bytes, standard base64: SHA-256(0x00 ‖ these bytes) is
    /// `leaf_hash`. Absent for an archived entry, whose bytes are in its archive
    #[serde(skip_serializing_if = "Option::is_none")]
    entry: Option<String>,
    /// The entry was archived (`liaison ledger archive`): the proof is of its kept leaf
    /// hash, which the entry's line in the archive hashes to
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    archived: bool,
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

impl From<InclusionProof> for EntryProof {
    fn from(p: InclusionProof) -> Self {
        EntryProof {
            seq: p.seq,
            kind: p.kind,
            entry: (!p.archived).then(|| STANDARD.encode(&p.entry)),
            archived: p.archived,
            leaf_index: p.leaf_index,
            tree_size: p.tree_size,
            leaf_hash: hex::encode(p.leaf_hash),
            audit_path: hex_all(&p.path),
        }
    }
}

/// The checkpoint signed at tree size `size`, or `404`.
async fn signed_at_size(gateway: &Gateway, size: u64) -> Result<StoredCheckpoint, Problem> {
    gateway
        .ledger
        .checkpoint_at(size)
        .await
        .map_err(unavailable)?
        .ok_or_else(|| {
            Problem::new(
                RejectCode::NotFound,
                format!("no checkpoint was signed at tree size {size}"),
            )
        })
}

fn invalid(detail: String) -> Problem {
    Problem::new(RejectCode::InvalidParameter, detail)
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
/// For the message's sender and recipients, and auditors. Each entry comes with its
/// canonical bytes, so the proof can be checked against the very bytes it proves.
#[utoipa::path(
    get,
    path = "/v1/messages/{id}/proof",
    operation_id = "getMessageProof",
    tag = "audit",
    params(("id" = String, Path, description = "The message id (UUID)")),
    responses(
        (status = 200, description = "Inclusion proofs", body = ProofBody),
        (status = 404, response = Problem),
        (status = 503, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub async fn proof(
    State(gateway): State<Gateway>,
    Extension(reader): Extension<Reader>,
    Path(id): Path<String>,
) -> Result<Json<ProofBody>, Problem> {
    let uuid = match &reader {
        Reader::Agency(agency) => visible_message(&gateway, agency, &id).await?.id,
        Reader::Auditor(_) => Uuid::parse_str(&id)
            .map_err(|_| Problem::new(RejectCode::NotFound, format!("no message {id}")))?,
    };
    let proofs = gateway
        .ledger
        .message_proofs(uuid)
        .await
        .map_err(unavailable)?
        .ok_or_else(no_checkpoint)?;
    if proofs.proofs.is_empty() && proofs.pending.is_empty() {
        return Err(Problem::new(
            RejectCode::NotFound,
            format!("no message {id}"),
        ));
    }
    Ok(Json(ProofBody {
        message: uuid,
        checkpoint: proofs.checkpoint,
        entries: proofs.proofs.into_iter().map(EntryProof::from).collect(),
        pending: proofs.pending,
    }))
}

/// One entry's inclusion proof, with the checkpoint it is against
#[derive(Serialize, ToSchema)]
#[schema(as = EntryInclusion)]
pub struct EntryProofBody {
    #[schema(value_type = CheckpointSchema)]
    checkpoint: StoredCheckpoint,
    #[serde(flatten)]
    proof: EntryProof,
}

/// The inclusion proof of one ledger entry, with its canonical bytes
///
/// For the agency the entry names (a sender refused: the proof of its refusal, whose
/// `ledger_seq` the refusal gave it), the parties of the message it is about,
/// administrators and auditors. `503` while no checkpoint covers the entry yet.
#[utoipa::path(
    get,
    path = "/v1/entries/{seq}/proof",
    operation_id = "getEntryProof",
    tag = "audit",
    params(("seq" = u64, Path, description = "The entry's ledger sequence number")),
    responses(
        (status = 200, description = "The entry and its inclusion proof", body = EntryProofBody),
        (status = 404, response = Problem),
        (status = 503, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub async fn entry_proof(
    State(gateway): State<Gateway>,
    Extension(reader): Extension<Reader>,
    Path(seq): Path<u64>,
) -> Result<Json<EntryProofBody>, Problem> {
    let not_found = || {
        Problem::new(
            RejectCode::NotFound,
            format!("no ledger entry {seq} visible to this caller"),
        )
    };
    if seq == 0 {
        return Err(not_found());
    }
    let found = gateway
        .ledger
        .entry_proof(seq)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    let (checkpoint, proof) = match found {
        Ok(found) => found,
        Err(size) => {
            return Err(Problem::new(
                RejectCode::Unavailable,
                format!(
                    "entry {seq} is not under a checkpoint yet (the latest covers {size}); retry after the next"
                ),
            ));
        }
    };
    if let Reader::Agency(agency) = &reader
        && !gateway.admins.contains(agency)
    {
        // Whose an archived entry is cannot be told without its bytes: administrators and
        // auditors only.
        if proof.archived {
            return Err(not_found());
        }
        let entry = Entry::from_canonical(&proof.entry)
            .map_err(|e| Problem::ledger(&LedgerError::Corrupt(e.to_string())))?;
        let own = entry.agency.as_ref() == Some(agency);
        let party = match entry.message {
            Some(id) if !own => visible_message(&gateway, agency, &id.to_string())
                .await
                .is_ok(),
            _ => false,
        };
        if !own && !party {
            return Err(not_found());
        }
    }
    Ok(Json(EntryProofBody {
        checkpoint,
        proof: proof.into(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EntriesQuery {
    /// The first seq (default 1)
    #[param(minimum = 1)]
    from: Option<u64>,
    /// Most entries (1–1000, default 100)
    limit: Option<i64>,
}

/// A page of ledger entries
#[derive(Serialize, ToSchema)]
#[schema(as = EntryPage)]
pub struct EntriesBody {
    entries: Vec<EntryBytes>,
    /// The `from` of the next page; absent on the last
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<u64>,
}

/// One ledger entry as it is hashed
#[derive(Serialize, ToSchema)]
pub struct EntryBytes {
    seq: u64,
    /// The canonical bytes, standard base64
    entry: String,
    /// Lowercase hex of SHA-256(0x00 ‖ entry)
    leaf_hash: String,
}

/// The ledger's entries, in seq order, as their canonical bytes
///
/// For auditors and administrators: what an auditor needs to recompute every leaf and
/// root without an export. Entries carry no message bodies.
#[utoipa::path(
    get,
    path = "/v1/entries",
    operation_id = "listEntries",
    tag = "audit",
    params(EntriesQuery),
    responses(
        (status = 200, description = "A page of entries", body = EntriesBody),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub async fn entries(
    State(gateway): State<Gateway>,
    Extension(reader): Extension<Reader>,
    Query(query): Query<EntriesQuery>,
) -> Result<Json<EntriesBody>, Problem> {
    if let Reader::Agency(agency) = &reader
        && !gateway.admins.contains(agency)
    {
        return Err(Problem::new(
            RejectCode::Forbidden,
            format!(
                "{agency} may not read the ledger's entries: they are for auditors and administrators"
            ),
        ));
    }
    let from = query.from.unwrap_or(1);
    let limit = query.limit.unwrap_or(100);
    if from == 0 || !(1..=1000).contains(&limit) {
        return Err(invalid(format!(
            "from={from} limit={limit}: need from ≥ 1 and 1 ≤ limit ≤ 1000"
        )));
    }
    let mut page = gateway
        .ledger
        .entries(from, limit + 1)
        .await
        .map_err(unavailable)?;
    let next = (page.len() as i64 > limit).then(|| {
        page.truncate(limit as usize);
        from + limit as u64
    });
    Ok(Json(EntriesBody {
        entries: page
            .into_iter()
            .map(|e| EntryBytes {
                seq: e.seq,
                entry: STANDARD.encode(&e.entry),
                leaf_hash: hex::encode(e.leaf_hash),
            })
            .collect(),
        next,
    }))
}

/// The latest signed checkpoint of the ledger
///
/// For any agency and auditors. Before the first checkpoint is signed the answer is 503:
/// retry.
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
    /// The signed checkpoint of size `from`, when one was signed at that size.
    #[schema(value_type = Option<CheckpointSchema>)]
    from_checkpoint: Option<StoredCheckpoint>,
    /// The signed checkpoint of size `to`, when one was signed at that size.
    #[schema(value_type = Option<CheckpointSchema>)]
    to_checkpoint: Option<StoredCheckpoint>,
}

/// A consistency proof between two tree sizes
///
/// `1 ≤ from ≤ to ≤` the latest checkpoint's size (`to` defaults to it); anything else is
/// `400 invalid_parameter`. The answer carries the signed checkpoints of sizes `from` and
/// `to` where they exist, so both roots can be checked against signatures.
#[utoipa::path(
    get,
    path = "/v1/checkpoints/consistency",
    operation_id = "getConsistencyProof",
    tag = "audit",
    params(ConsistencyQuery),
    responses(
        (status = 200, description = "A consistency proof", body = ConsistencyBody),
        (status = 400, response = Problem),
        (status = 503, response = Problem),
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
        return Err(invalid(format!(
            "no consistency proof for from={:?} to={to}: need 1 ≤ from ≤ to ≤ {} (the latest checkpoint)",
            query.from, checkpoint.tree_size
        )));
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
        from_checkpoint: gateway
            .ledger
            .checkpoint_at(from)
            .await
            .map_err(unavailable)?,
        to_checkpoint: gateway
            .ledger
            .checkpoint_at(to)
            .await
            .map_err(unavailable)?,
    }))
}

/// A signed checkpoint with its witnesses' cosignatures
#[derive(Serialize, ToSchema)]
#[schema(as = CosignedCheckpoint)]
pub struct CosignedCheckpointBody {
    #[serde(flatten)]
    #[schema(inline, value_type = CheckpointSchema)]
    checkpoint: StoredCheckpoint,
    /// The checkpoint note with every stored cosignature line added (C2SP
    /// tlog-cosignature): verifiers ignore the lines of keys they do not know
    cosigned_note: String,
    #[schema(value_type = Vec<CosignatureSchema>)]
    cosignatures: Vec<StoredCosignature>,
}

/// A witness's cosignature of a checkpoint
#[derive(ToSchema)]
#[schema(as = Cosignature)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CosignatureSchema {
    tree_size: u64,
    /// The witness's key name
    witness: String,
    /// The signature line, `— <witness> base64(keyid ‖ timestamp ‖ signature)`
    line: String,
    cosigned_at: time::OffsetDateTime,
}

/// The checkpoint signed at a tree size, with its cosignatures
///
/// For any agency and auditors; `404` when no checkpoint was signed at that size.
#[utoipa::path(
    get,
    path = "/v1/checkpoints/{size}",
    operation_id = "getCheckpoint",
    tag = "audit",
    params(("size" = u64, Path, description = "A tree size at which a checkpoint was signed")),
    responses(
        (status = 200, description = "The signed checkpoint", body = CosignedCheckpointBody),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub async fn checkpoint(
    State(gateway): State<Gateway>,
    Path(size): Path<u64>,
) -> Result<Json<CosignedCheckpointBody>, Problem> {
    let checkpoint = signed_at_size(&gateway, size).await?;
    let cosignatures = gateway
        .ledger
        .cosignatures(Some(size))
        .await
        .map_err(unavailable)?;
    let cosigned_note = cosignatures
        .iter()
        .fold(checkpoint.note.clone(), |note, c| {
            with_signature_line(&note, &c.line)
        });
    Ok(Json(CosignedCheckpointBody {
        checkpoint,
        cosigned_note,
        cosignatures,
    }))
}

/// A witness's cosignature, as posted
#[derive(Deserialize, ToSchema)]
pub struct CosignatureRequest {
    /// The signature line: `— <witness> base64(keyid ‖ timestamp ‖ signature)`
    line: String,
}

/// Whether a posted cosignature was new
#[derive(Serialize, ToSchema)]
pub struct CosignatureStored {
    witness: String,
    /// `false`: this witness had cosigned this checkpoint already; the first is kept
    stored: bool,
}

/// Stores a witness's cosignature of the checkpoint of a tree size
///
/// For auditors. The line must verify, over that checkpoint, with the key of one of the
/// configured `witnesses`; anything else is `400 invalid_parameter`.
#[utoipa::path(
    post,
    path = "/v1/checkpoints/{size}/cosignatures",
    operation_id = "postCosignature",
    tag = "audit",
    params(("size" = u64, Path, description = "The cosigned checkpoint's tree size")),
    request_body = CosignatureRequest,
    responses(
        (status = 201, description = "Stored", body = CosignatureStored),
        (status = 200, description = "Already stored", body = CosignatureStored),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub async fn post_cosignature(
    State(gateway): State<Gateway>,
    Extension(reader): Extension<Reader>,
    Path(size): Path<u64>,
    Json(request): Json<CosignatureRequest>,
) -> Result<(StatusCode, Json<CosignatureStored>), Problem> {
    if let Reader::Agency(agency) = &reader {
        return Err(Problem::new(
            RejectCode::Forbidden,
            format!("{agency} is an agency: cosignatures come from auditors' witnesses"),
        ));
    }
    let checkpoint = signed_at_size(&gateway, size).await?;
    let line = request.line.trim();
    if line.contains('\n') {
        return Err(invalid("a cosignature is one signature line".into()));
    }
    let note = with_signature_line(&checkpoint.note, line);
    let Some((witness, at)) = gateway
        .witnesses
        .iter()
        .find_map(|w| w.verify(&note).ok().map(|at| (w.name().to_owned(), at)))
    else {
        return Err(invalid(format!(
            "the line is no valid cosignature of checkpoint {size} by a configured witness"
        )));
    };
    let stored = gateway
        .ledger
        .add_cosignature(size, &witness, line, at)
        .await
        .map_err(unavailable)?;
    let status = if stored {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(CosignatureStored { witness, stored })))
}
