//! The HTTPS gateway: the agency-facing routes of the public contract.
//!
//! Every route runs behind [`authenticate`], which maps the verified client certificate
//! to an agency; handlers receive that agency as [`Caller`] and never trust identities
//! written in request bodies. The route table is in `routes.rs`.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::Body;
use axum::extract::{Extension, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use liaison_core::{AgencyCode, Channel, Clock, RecipientRole, RejectCode, Submission};
use liaison_ledger::{DeliveryState, Ledger};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::http::extract::{Path, Query};
use crate::http::inbox::{AckOutcome, Inbox, PulledDelivery};
use crate::http::openapi::{
    CloudEvent, DeliveryStateSchema, EntrySchema, RecipientRoleSchema, RecipientSchema,
};
use crate::http::problem::Problem;
use crate::pipeline::Pipeline;
use crate::tls;

/// The gateway's shared state, as every handler and middleware sees it. Axum clones the
/// state for each request, several times (each layer, each extractor): one reference
/// count, not one for each of the fields of [`GatewayState`]. (Cloning and dropping the
/// fields, contended between the worker threads, was 3–4 % of the broker's CPU.)
#[derive(Clone)]
pub struct Gateway(Arc<GatewayState>);

impl Gateway {
    pub fn new(state: GatewayState) -> Self {
        Self(Arc::new(state))
    }

    /// The `403` for a `caller` that is not one of the configuration's `admins` (`None` for
    /// one that is); `what` names what is reserved to them ("traces", "erasures").
    pub(crate) fn admin_refusal(&self, caller: &AgencyCode, what: &str) -> Option<Problem> {
        (!self.admins.contains(caller)).then(|| {
            Problem::new(
                RejectCode::Forbidden,
                format!(
                    "{what} are for administrators; {caller} is not one (configuration `admins`)"
                ),
            )
        })
    }
}

impl std::ops::Deref for Gateway {
    type Target = GatewayState;

    fn deref(&self) -> &GatewayState {
        &self.0
    }
}

pub struct GatewayState {
    pub pipeline: Arc<Pipeline>,
    pub ledger: Ledger,
    pub inbox: Arc<Inbox>,
    pub clock: Arc<dyn Clock>,
    pub max_body_bytes: usize,
    /// Agencies that may trace any message or case.
    pub admins: Arc<[AgencyCode]>,
    /// Auditors that may read checkpoints, proofs and entries (`auditors`).
    pub auditors: Arc<[String]>,
    /// The witnesses whose cosignatures are accepted (`witnesses`).
    pub witnesses: Arc<[liaison_core::cosignature::CosignatureVerifier]>,
    /// RabbitMQ, for the console's queue depths and dead-letter redrives.
    pub bus: liaison_bus::Bus,
    /// The ledger's checkpoint key, which the console's pages verify checkpoints with.
    pub checkpoint_key: liaison_core::checkpoint::CheckpointVerifier,
    /// What the console keeps between pages (the overview's aggregates).
    pub console: Arc<crate::http::console::state::ConsoleState>,
    /// `[retention]`: (message type, seconds), for the erasure proposals.
    pub retention: Arc<Vec<(String, i64)>>,
}

/// The agency named by the client certificate of this request.
#[derive(Clone, Debug)]
pub struct Caller(pub AgencyCode);

/// Who reads the audit routes: an agency, or an auditor of `auditors`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reader {
    Agency(AgencyCode),
    Auditor(String),
}

/// The routes an auditor's certificate opens: reading checkpoints, proofs and entries,
/// and posting cosignatures. Everything else is for agencies.
fn is_audit_route(request: &Request) -> bool {
    let path = request.uri().path();
    match *request.method() {
        axum::http::Method::GET => {
            path.starts_with("/v1/checkpoints")
                || path.starts_with("/v1/entries")
                || (path.starts_with("/v1/messages/") && path.ends_with("/proof"))
                || path == "/openapi.json"
        }
        axum::http::Method::POST => {
            path.starts_with("/v1/checkpoints/") && path.ends_with("/cosignatures")
        }
        _ => false,
    }
}

/// Maps the client certificate to a registered agency. A certificate of an agency the
/// registry no longer lists stays valid until it expires or is revoked; until then it is
/// refused here, on every route, rather than trusted for what it once was. Submissions
/// go on to the pipeline, which refuses them with the same code and records the refusal.
pub(crate) async fn authenticate(
    State(gateway): State<Gateway>,
    mut request: Request,
    next: Next,
) -> Response {
    match tls::peer_agency(request.extensions()) {
        Some(agency)
            if !gateway.pipeline.registry().contains(&agency) && !is_submission(&request) =>
        {
            Problem::new(
                RejectCode::UnknownAgency,
                format!("agency {agency} is not in the registry"),
            )
            .into_response()
        }
        Some(agency) => {
            request
                .extensions_mut()
                .insert(Reader::Agency(agency.clone()));
            request.extensions_mut().insert(Caller(agency));
            next.run(request).await
        }
        None => match tls::peer_auditor(request.extensions()) {
            Some(auditor) if !gateway.auditors.contains(&auditor) => Problem::new(
                RejectCode::Forbidden,
                format!("auditor {auditor} is not among the configured auditors"),
            )
            .into_response(),
            Some(auditor) if !is_audit_route(&request) => Problem::new(
                RejectCode::Forbidden,
                format!(
                    "auditor {auditor} reads checkpoints, proofs and entries; this route is for agencies"
                ),
            )
            .into_response(),
            Some(auditor) => {
                request.extensions_mut().insert(Reader::Auditor(auditor));
                next.run(request).await
            }
            None => Problem::new(
                RejectCode::Unauthenticated,
                "the client certificate names no agency (expected a SAN URI urn:liaison:agency:<code>)",
            )
            .into_response(),
        },
    }
}

fn is_submission(request: &Request) -> bool {
    request.method() == axum::http::Method::POST && request.uri().path() == "/v1/messages"
}

#[derive(Serialize, ToSchema)]
#[schema(as = Accepted)]
pub(crate) struct AcceptedBody {
    id: Uuid,
    /// Ledger sequence number of the acceptance
    seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    recorded_at: OffsetDateTime,
    recipients: Vec<RecipientBody>,
    /// The message's case: the one it named or inherited, or the one liaison assigned.
    #[serde(skip_serializing_if = "Option::is_none")]
    caseref: Option<String>,
    /// The same id and bytes were accepted before; this is that answer
    duplicate: bool,
}

/// A recipient of an accepted message
#[derive(Serialize, ToSchema)]
#[schema(as = AcceptedRecipient)]
pub(crate) struct RecipientBody {
    #[schema(value_type = String)]
    agency: AgencyCode,
    #[schema(value_type = RecipientRoleSchema)]
    role: RecipientRole,
}

fn is_json_media_type(headers: &HeaderMap) -> bool {
    let Some(value) = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    essence == "application/cloudevents+json" || essence == "application/json"
}

/// Submit one CloudEvent
///
/// Checked against the catalogue and the routing policy, recorded in the ledger, then
/// delivered. The same id with the same bytes gets the same answer again; the same id with
/// other bytes gets 409. A schema violation is 422 with every failing JSON pointer in
/// `errors`.
#[utoipa::path(
    post,
    path = "/v1/messages",
    operation_id = "submitMessage",
    tag = "messages",
    request_body(
        content(
            (CloudEvent = "application/cloudevents+json"),
            (CloudEvent = "application/json"),
        ),
    ),
    responses(
        (status = 202, description = "Accepted: recorded, and going to be delivered", body = AcceptedBody,
            headers(("Location" = String, description = "The message: /v1/messages/{id}"))),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 409, response = Problem),
        (status = 413, response = Problem),
        (status = 415, response = Problem),
        (status = 422, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn submit(
    State(gateway): State<Gateway>,
    Extension(Caller(sender)): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let pipeline = &gateway.pipeline;
    let bytes = match read_event(&gateway, &headers, body).await {
        Ok(bytes) => bytes,
        Err(BodyFault::Refused { code, detail, size }) => {
            return pipeline
                .refuse_unread(&sender, Channel::Https, code, detail, size)
                .await
                .into_response();
        }
        // The client went away or stalled; there is nobody to answer.
        Err(BodyFault::Unreadable(problem)) => return problem.into_response(),
    };
    let submission = Submission {
        sender,
        bytes,
        channel: Channel::Https,
        received_at: gateway.clock.now(),
        traceparent: headers
            .get("traceparent")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
    };
    match pipeline.submit(submission).await {
        Ok(accepted) => {
            let receipt = accepted.receipt;
            let location = format!("/v1/messages/{}", receipt.id);
            let body = AcceptedBody {
                id: receipt.id,
                seq: receipt.seq,
                recorded_at: receipt.recorded_at,
                recipients: receipt
                    .recipients
                    .into_iter()
                    .map(|r| RecipientBody {
                        agency: r.agency,
                        role: r.role,
                    })
                    .collect(),
                caseref: receipt.caseref,
                duplicate: accepted.duplicate,
            };
            let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            response
        }
        Err(problem) => problem.into_response(),
    }
}

/// Why a request's CloudEvent body could not be read.
enum BodyFault {
    /// Refused before reading it whole (media type, size): `submit` records these.
    Refused {
        code: RejectCode,
        detail: String,
        size: usize,
    },
    /// The body could not be read at all.
    Unreadable(Problem),
}

/// The CloudEvent body of a request, within the media type and size the gateway takes.
async fn read_event(
    gateway: &Gateway,
    headers: &HeaderMap,
    body: Body,
) -> Result<Bytes, BodyFault> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if !is_json_media_type(headers) {
        return Err(BodyFault::Refused {
            code: RejectCode::UnsupportedMediaType,
            detail: "send the CloudEvent in structured mode as application/cloudevents+json"
                .to_owned(),
            size: declared.unwrap_or(0),
        });
    }
    let limit = gateway.max_body_bytes;
    let too_large = |size: usize| BodyFault::Refused {
        code: RejectCode::BodyTooLarge,
        detail: format!("the body is {size} bytes or more; the limit is {limit}"),
        size,
    };
    if let Some(size) = declared.filter(|s| *s > limit) {
        return Err(too_large(size));
    }
    match axum::body::to_bytes(body, limit).await {
        Ok(bytes) => Ok(bytes),
        Err(e) if is_length_limit(&e) => Err(too_large(limit + 1)),
        Err(e) => Err(BodyFault::Unreadable(Problem::new(
            RejectCode::MalformedJson,
            format!("could not read the body: {e}"),
        ))),
    }
}

/// Who would receive a message
#[derive(Serialize, ToSchema)]
#[schema(as = RoutePreview)]
pub(crate) struct PreviewBody {
    #[serde(rename = "type")]
    type_: String,
    /// Every recipient, with the policy rule that chose it, as a submission would be routed now
    #[schema(value_type = Vec<RecipientSchema>)]
    recipients: Vec<liaison_core::Recipient>,
    /// The case reference it names or would inherit from the message it answers (a message
    /// opening a case without one is assigned one only when it is recorded)
    #[serde(skip_serializing_if = "Option::is_none")]
    caseref: Option<String>,
    /// Always `false`: nothing of a preview is recorded
    recorded: bool,
}

/// Who would receive a message, without sending it
///
/// Takes the same body as POST /v1/messages and makes the same checks before the ledger:
/// envelope and payload schemas, whether the sender may send the type, `source`, the
/// policy's route, and for an answer the original it names (that the sender may answer
/// it, its type, its case reference). Nothing is recorded: a refusal is the problem a
/// submission would get, without `ledger_seq`, and no ledger entry. Not checked: what
/// the ledger decides when it records a message (an id already used, the state of the
/// case, whether the sender is a party of a case it names).
#[utoipa::path(
    post,
    path = "/v1/routes/preview",
    operation_id = "previewRoute",
    tag = "messages",
    request_body(
        content(
            (CloudEvent = "application/cloudevents+json"),
            (CloudEvent = "application/json"),
        ),
    ),
    responses(
        (status = 200, description = "Who would receive it; nothing recorded", body = PreviewBody),
        (status = 400, response = Problem),
        (status = 403, response = Problem),
        (status = 413, response = Problem),
        (status = 415, response = Problem),
        (status = 422, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn preview(
    State(gateway): State<Gateway>,
    Extension(Caller(sender)): Extension<Caller>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PreviewBody>, Problem> {
    let bytes = read_event(&gateway, &headers, body)
        .await
        .map_err(|fault| match fault {
            BodyFault::Refused { code, detail, .. } => Problem::new(code, detail),
            BodyFault::Unreadable(problem) => problem,
        })?;
    let preview = gateway
        .pipeline
        .preview(&sender, &bytes, gateway.clock.now())
        .await?;
    Ok(Json(PreviewBody {
        type_: preview.type_,
        recipients: preview.recipients,
        caseref: preview.caseref,
        recorded: false,
    }))
}

fn is_length_limit(error: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if e.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = e.source();
    }
    false
}

#[derive(Serialize, ToSchema)]
#[schema(as = Message)]
pub(crate) struct MessageBody {
    id: Uuid,
    seq: u64,
    #[schema(value_type = String)]
    sender: AgencyCode,
    #[serde(rename = "type")]
    type_: String,
    caseref: Option<String>,
    inreplyto: Option<Uuid>,
    #[serde(with = "time::serde::rfc3339")]
    received_at: OffsetDateTime,
    #[schema(value_type = Vec<DeliveryStateSchema>)]
    deliveries: Vec<DeliveryState>,
    /// The event exactly as accepted
    #[schema(value_type = CloudEvent)]
    event: Box<RawValue>,
}

/// The stored message `id`, if `caller` sent or received it. Anyone else is told it does
/// not exist: whether a message exists is itself not for them to learn.
pub(crate) async fn visible_message(
    gateway: &Gateway,
    caller: &AgencyCode,
    id: &str,
) -> Result<liaison_ledger::StoredMessage, Problem> {
    let not_found = || {
        Problem::new(
            RejectCode::NotFound,
            format!("no message {id} visible to this agency"),
        )
    };
    let uuid = Uuid::parse_str(id).map_err(|_| not_found())?;
    let stored = gateway
        .ledger
        .message(uuid)
        .await
        .map_err(unavailable)?
        .ok_or_else(not_found)?;
    // Parties as the accepted entry records them, never the outbox: its rows are working
    // state that the relay updates, and a changed recipient there must not open the message
    // to another agency.
    let visible = &stored.sender == caller || stored.recipients.iter().any(|r| &r.agency == caller);
    if visible {
        Ok(stored)
    } else {
        Err(not_found())
    }
}

/// A message and its delivery states (its sender and recipients only)
#[utoipa::path(
    get,
    path = "/v1/messages/{id}",
    operation_id = "getMessage",
    tag = "messages",
    params(("id" = String, Path, description = "The message id (UUID)")),
    responses(
        (status = 200, description = "The message as recorded", body = MessageBody),
        (status = 404, response = Problem),
        (status = 410, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn message(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<MessageBody>, Problem> {
    let stored = visible_message(&gateway, &caller, &id).await?;
    if let Some(seq) = stored.erased_by {
        let mut problem = Problem::new(
            RejectCode::Erased,
            format!(
                "the personal data of message {} was erased by ledger entry {seq}; its entries and proofs remain (GET /v1/messages/{}/proof)",
                stored.id, stored.id
            ),
        );
        problem.message_id = Some(stored.id);
        problem.ledger_seq = Some(seq);
        return Err(problem);
    }
    let event = std::str::from_utf8(&stored.body)
        .ok()
        .and_then(|s| RawValue::from_string(s.to_owned()).ok())
        .ok_or_else(|| Problem::new(RejectCode::Internal, "stored message is not JSON"))?;
    Ok(Json(MessageBody {
        id: stored.id,
        seq: stored.seq,
        sender: stored.sender,
        type_: stored.type_,
        caseref: stored.caseref,
        inreplyto: stored.inreplyto,
        received_at: stored.received_at,
        deliveries: stored.deliveries,
        event,
    }))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PullQuery {
    /// Seconds to wait for the first delivery (long poll)
    #[serde(default)]
    #[param(minimum = 0, default = 0)]
    wait: u64,
    /// Most deliveries to return
    #[serde(default = "default_max")]
    #[param(minimum = 1, default = 10)]
    max: usize,
}

fn default_max() -> usize {
    10
}

#[derive(Serialize, ToSchema)]
#[schema(as = Pulled)]
pub(crate) struct PullBody {
    deliveries: Vec<PulledDelivery>,
}

/// Pull the caller's deliveries (long poll)
#[utoipa::path(
    get,
    path = "/v1/inbox",
    operation_id = "pullInbox",
    tag = "inbox",
    params(PullQuery),
    responses(
        (status = 200, description = "Leased deliveries; acknowledge each", body = PullBody),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn pull(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Query(query): Query<PullQuery>,
) -> Result<Json<PullBody>, Problem> {
    let deliveries = gateway
        .inbox
        .pull(&caller, Duration::from_secs(query.wait), query.max)
        .await
        .map_err(|e| e.problem())?;
    Ok(Json(PullBody { deliveries }))
}

/// The answer to an ack of a delivery the agency had acknowledged before.
#[derive(Serialize, ToSchema)]
#[schema(as = AlreadyAcknowledged)]
pub(crate) struct AlreadyAcknowledgedBody {
    /// Always `true`: the earlier ack stands and nothing new was recorded
    already_acknowledged: bool,
}

/// Acknowledge a pulled delivery
///
/// The first ack is recorded and answered 204. An ack of a delivery this agency had
/// acknowledged already (a retry whose first answer was lost) is 200 with
/// `{"already_acknowledged": true}`; an ack of a delivery whose lease ended, or that
/// another instance handed out, or that is not this agency's is 404.
#[utoipa::path(
    post,
    path = "/v1/inbox/{delivery}/ack",
    operation_id = "ackDelivery",
    tag = "inbox",
    params(("delivery" = String, Path, description = "The delivery number from GET /v1/inbox")),
    responses(
        (status = 204, description = "Acknowledged and recorded"),
        (status = 200, description = "Acknowledged before; nothing new recorded", body = AlreadyAcknowledgedBody),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn ack(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(delivery): Path<String>,
) -> Result<Response, Problem> {
    let not_found = || {
        Problem::new(
            RejectCode::NotFound,
            format!("no pulled delivery {delivery} awaits an ack from this agency"),
        )
    };
    let Ok(id) = delivery.parse::<i64>() else {
        return Err(not_found());
    };
    match gateway.inbox.ack(&caller, id).await {
        Ok(AckOutcome::Acknowledged) => Ok(StatusCode::NO_CONTENT.into_response()),
        Ok(AckOutcome::AlreadyAcknowledged) => Ok(Json(AlreadyAcknowledgedBody {
            already_acknowledged: true,
        })
        .into_response()),
        Ok(AckOutcome::Unknown) => Err(not_found()),
        Err(e) => Err(e.problem()),
    }
}

#[derive(Serialize, ToSchema)]
pub(crate) struct SchemaSummary<'a> {
    /// A message type, e.g. pil.lead.v1
    #[serde(rename = "type")]
    type_: &'a str,
    title: &'a str,
    description: &'a str,
    /// Its payload schema: /v1/schemas/{type}
    href: String,
}

// What `GET /v1/schemas` answers; the handler builds it as JSON around borrowed schemas.
/// The message catalogue
#[derive(ToSchema)]
#[schema(as = Schemas)]
#[allow(dead_code)] // describes the JSON shape only
pub(crate) struct SchemasBody {
    /// The CloudEvents envelope schema (JSON Schema 2020-12)
    #[schema(value_type = Object)]
    envelope: serde_json::Value,
    types: Vec<SchemaSummary<'static>>,
}

/// The message catalogue: the envelope schema and every type
#[utoipa::path(
    get,
    path = "/v1/schemas",
    operation_id = "listSchemas",
    tag = "catalogue",
    responses((status = 200, description = "The catalogue", body = SchemasBody)),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn schemas(State(gateway): State<Gateway>) -> Json<serde_json::Value> {
    let catalogue = gateway.pipeline.catalogue();
    let types: Vec<SchemaSummary<'_>> = catalogue
        .types()
        .map(|t| SchemaSummary {
            type_: &t.name,
            title: &t.title,
            description: &t.description,
            href: format!("/v1/schemas/{}", t.name),
        })
        .collect();
    Json(serde_json::json!({ "envelope": catalogue.envelope_schema(), "types": types }))
}

/// The payload (data) schema of one message type
#[utoipa::path(
    get,
    path = "/v1/schemas/{type}",
    operation_id = "getSchema",
    tag = "catalogue",
    params(("type" = String, Path, description = "A message type, e.g. pil.lead.v1")),
    responses(
        (status = 200, description = "A JSON Schema 2020-12", body = Object),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn schema(
    State(gateway): State<Gateway>,
    Path(type_): Path<String>,
) -> Result<Json<serde_json::Value>, Problem> {
    gateway
        .pipeline
        .catalogue()
        .get(&type_)
        .map(|t| Json(t.schema.clone()))
        .ok_or_else(|| Problem::new(RejectCode::NotFound, format!("no message type {type_}")))
}

#[derive(Serialize, ToSchema)]
#[schema(as = Trace)]
pub(crate) struct TraceBody {
    key: String,
    #[schema(value_type = Vec<EntrySchema>)]
    entries: Vec<liaison_core::Entry>,
}

/// Every ledger entry of a message (and its answers) or of a case, in ledger order; administrators only
#[utoipa::path(
    get,
    path = "/v1/trace/{key}",
    operation_id = "getTrace",
    tag = "audit",
    params(("key" = String, Path, description = "A message id (UUID) or a case reference")),
    responses(
        (status = 200, description = "The trace", body = TraceBody),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn trace(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(key): Path<String>,
) -> Result<Json<TraceBody>, Problem> {
    if let Some(refused) = gateway.admin_refusal(&caller, "traces") {
        return Err(refused);
    }
    let entries = gateway
        .ledger
        .trace(&liaison_ledger::TraceKey::parse(&key))
        .await
        .map_err(unavailable)?;
    if entries.is_empty() {
        return Err(Problem::new(
            RejectCode::NotFound,
            format!("the ledger holds nothing for {key}"),
        ));
    }
    Ok(Json(TraceBody { key, entries }))
}

fn unavailable(e: liaison_ledger::LedgerError) -> Problem {
    Problem::ledger(&e)
}
