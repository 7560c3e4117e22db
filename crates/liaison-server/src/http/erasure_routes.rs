//! Erasure of a case's personal data (PIPL Art. 47), for administrators:
//! `POST /v1/cases/{caseref}/erasure` and `GET /v1/erasure-proposals`.

use axum::Json;
use axum::extract::{Extension, State};
use axum::http::StatusCode;
use liaison_core::RejectCode;
use liaison_ledger::{ErasureOutcome, ErasureProposal, KeyError, LedgerError, NewErasure};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::http::extract::Path;
use crate::http::gateway::{Caller, Gateway};
use crate::http::problem::Problem;
use crate::workers::retention::PROPOSALS_LIMIT;

/// The legal basis of an erasure
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ErasureRequest {
    /// Why the personal data is erased (PIPL Art. 47: the retention period is over, the
    /// purpose is achieved, consent was withdrawn…), recorded in the `case.erased` entry
    basis: String,
}

/// A message whose data key was destroyed
#[derive(Serialize, ToSchema)]
pub struct ErasedMessageBody {
    message: Uuid,
    /// The seq of its `message.accepted` entry
    seq: u64,
}

/// The erasure as recorded
#[derive(Serialize, ToSchema)]
pub struct ErasureBody {
    caseref: String,
    /// The seq of the `case.erased` entry (of the first one, when it was erased before)
    seq: u64,
    /// `false`: every message of the case had been erased before; nothing was recorded
    erased: bool,
    /// The messages this erasure made unreadable (empty when `erased` is `false`)
    messages: Vec<ErasedMessageBody>,
}

/// Erases the personal data of a case
///
/// For administrators. Records a `case.erased` entry (who, the legal basis, the messages)
/// and destroys the data keys of the case's messages in the same transaction: their bodies
/// can no longer be read anywhere, while their entries, digests and proofs stay verifiable.
/// Their deliveries not yet sent are withdrawn. Erasing a case again records nothing.
#[utoipa::path(
    post,
    path = "/v1/cases/{caseref}/erasure",
    operation_id = "eraseCase",
    tag = "cases",
    params(("caseref" = String, Path, description = "A case reference")),
    request_body = ErasureRequest,
    responses(
        (status = 201, description = "Erased: the entry is recorded and the keys destroyed", body = ErasureBody),
        (status = 200, description = "Erased before; nothing recorded", body = ErasureBody),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
        (status = 409, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn erase(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(caseref): Path<String>,
    Json(request): Json<ErasureRequest>,
) -> Result<(StatusCode, Json<ErasureBody>), Problem> {
    if let Some(refused) = gateway.admin_refusal(&caller, "erasures") {
        return Err(refused);
    }
    let basis = request.basis.trim();
    if basis.is_empty() {
        return Err(Problem::new(
            RejectCode::InvalidParameter,
            "basis: the legal basis of the erasure is required",
        ));
    }
    let outcome = gateway
        .ledger
        .erase(NewErasure {
            caseref: caseref.clone(),
            basis: basis.to_owned(),
            by: Some(caller),
            via: "api".into(),
        })
        .await
        .map_err(|e| match e {
            LedgerError::Keys(KeyError::Unconfigured) => Problem::new(
                RejectCode::NotErasable,
                "this broker stores bodies in clear (no key-encryption key): nothing can be erased",
            ),
            e => Problem::ledger(&e),
        })?;
    match outcome {
        ErasureOutcome::Erased { seq, messages } => Ok((
            StatusCode::CREATED,
            Json(ErasureBody {
                caseref,
                seq,
                erased: true,
                messages: messages
                    .into_iter()
                    .map(|m| ErasedMessageBody {
                        message: m.message,
                        seq: m.seq,
                    })
                    .collect(),
            }),
        )),
        ErasureOutcome::AlreadyErased { seqs } => Ok((
            StatusCode::OK,
            Json(ErasureBody {
                caseref,
                seq: seqs.first().copied().unwrap_or_default(),
                erased: false,
                messages: Vec::new(),
            }),
        )),
        ErasureOutcome::UnknownCase => Err(Problem::new(
            RejectCode::NotFound,
            format!("the ledger holds no message of case {caseref}"),
        )),
        ErasureOutcome::StoredInClear { messages } => Err(Problem::new(
            RejectCode::NotErasable,
            format!(
                "{} message(s) of case {caseref} are stored in clear (accepted before bodies were sealed){}: nothing was erased",
                messages.len(),
                messages
                    .first()
                    .map(|m| format!(", e.g. {m}"))
                    .unwrap_or_default()
            ),
        )),
    }
}

/// The cases proposed for erasure
#[derive(Serialize, ToSchema)]
pub struct ProposalsBody {
    /// Cases every message of which (not yet erased) is past its type's retention period,
    /// earliest due first
    #[schema(value_type = Vec<Object>)]
    proposals: Vec<ErasureProposal>,
}

/// Cases past the retention periods of the configuration
///
/// For administrators. Only proposals: nothing is erased until an administrator erases a
/// case with its legal basis. Empty when `[retention]` sets no period.
#[utoipa::path(
    get,
    path = "/v1/erasure-proposals",
    operation_id = "listErasureProposals",
    tag = "cases",
    responses(
        (status = 200, description = "The cases due for erasure", body = ProposalsBody),
        (status = 403, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn proposals(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
) -> Result<Json<ProposalsBody>, Problem> {
    if let Some(refused) = gateway.admin_refusal(&caller, "erasure proposals") {
        return Err(refused);
    }
    let proposals = gateway
        .ledger
        .erasure_proposals(&gateway.retention, gateway.clock.now(), PROPOSALS_LIMIT)
        .await
        .map_err(|e| Problem::ledger(&e))?;
    Ok(Json(ProposalsBody { proposals }))
}
