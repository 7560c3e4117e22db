//! The OpenAPI 3.1 description of the gateway, served at `GET /openapi.json`.
//!
//! The operations come from the handlers' `#[utoipa::path]` attributes, collected by the
//! route table in `routes.rs`; this module holds what they share (the document's
//! header, the mutual TLS security scheme, the refusals every route can answer with) and
//! puts the message catalogue into it. The catalogue is loaded at start-up, so its schemas
//! go in at run time: the request body of `POST /v1/messages` is one CloudEvent schema per
//! type (the envelope, its `type` fixed, its `data` the type's schema). OpenAPI 3.1 uses
//! JSON Schema 2020-12, the catalogue's dialect, so the schemas go in unchanged.

use std::borrow::Cow;

use liaison_schema::Catalogue;
use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use utoipa::openapi::path::Operation;
use utoipa::openapi::schema::{ObjectBuilder, Schema};
use utoipa::openapi::security::{SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ComponentsBuilder, OpenApi, RefOr};
use utoipa::{PartialSchema, ToResponse, ToSchema};
use uuid::Uuid;

use crate::http::problem::Problem;

/// The name of the security scheme every operation requires.
pub const AGENCY_CERTIFICATE: &str = "agencyCertificate";

/// The component name of a message type's payload schema.
pub fn payload_component(type_name: &str) -> String {
    format!("{type_name}.data")
}

/// The component name of a complete CloudEvent of one type.
pub fn event_component(type_name: &str) -> String {
    format!("{type_name}.event")
}

/// The header, security scheme and shared components; the route table adds the paths.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(
        title = "liaison",
        description = "The inter-agency message broker's HTTPS API. Every request needs the \
            agency's client certificate (mutual TLS); its SAN URI urn:liaison:agency:<code> is \
            the caller's identity. Errors are RFC 9457 problem documents with a stable `code`.",
    ),
    components(schemas(Problem, CloudEvent), responses(Problem)),
    modifiers(&MutualTls)
)]
pub struct ApiDoc;

/// Declares the mutual TLS scheme and requires it of the whole API.
struct MutualTls;

impl utoipa::Modify for MutualTls {
    fn modify(&self, openapi: &mut OpenApi) {
        let scheme = SecurityScheme::MutualTls {
            description: Some(
                "A client certificate issued by the county CA, naming the agency as \
                 urn:liaison:agency:<code>"
                    .into(),
            ),
            extensions: None,
        };
        openapi
            .components
            .get_or_insert_with(|| ComponentsBuilder::new().build())
            .add_security_scheme(AGENCY_CERTIFICATE, scheme);
        openapi.security = Some(vec![agency_certificate()]);
    }
}

fn agency_certificate() -> SecurityRequirement {
    SecurityRequirement::new(AGENCY_CERTIFICATE, Vec::<String>::new())
}

/// Refusals that come from the layers in front of every handler rather than from the
/// handler: authentication (401 for a certificate naming no agency or revoked, 403 for an
/// agency the registry no longer lists), the request guard (408, 429, 503), and an
/// internal failure (500).
pub const REFUSED_BEFORE_ANY_HANDLER: [&str; 6] = ["401", "403", "408", "429", "500", "503"];

/// The refusal of a request whose query or path parameters cannot be read
/// (`crate::http::extract`): `400 invalid_parameter`, on every operation that has parameters.
pub const UNREADABLE_PARAMETER: &str = "400";

/// Adds [`REFUSED_BEFORE_ANY_HANDLER`] to every operation, and [`UNREADABLE_PARAMETER`] to
/// every operation with parameters, keeping any the handler documents itself.
pub fn add_shared_refusals(openapi: &mut OpenApi) {
    let (_, problem) = <Problem as ToResponse>::response();
    let reference = match problem {
        RefOr::T(_) => RefOr::Ref(utoipa::openapi::Ref::from_response_name("Problem")),
        reference => reference,
    };
    for item in openapi.paths.paths.values_mut() {
        for operation in operations(item) {
            let has_parameters = operation
                .parameters
                .as_ref()
                .is_some_and(|parameters| !parameters.is_empty());
            let unreadable = has_parameters.then_some(UNREADABLE_PARAMETER);
            for status in REFUSED_BEFORE_ANY_HANDLER.into_iter().chain(unreadable) {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| reference.clone());
            }
        }
    }
}

/// Every operation of one path.
pub fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.put,
        &mut item.post,
        &mut item.delete,
        &mut item.options,
        &mut item.head,
        &mut item.patch,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

/// The complete document: the generated `openapi` with the catalogue's schemas merged into
/// its components, and [`CloudEvent`] replaced by one event schema per message type.
pub fn document(mut openapi: OpenApi, catalogue: &Catalogue) -> Value {
    add_shared_refusals(&mut openapi);
    let mut document = serde_json::to_value(&openapi).unwrap_or_else(|_| json!({}));
    document["jsonSchemaDialect"] = json!(liaison_schema::DRAFT_2020_12);
    let schemas = &mut document["components"]["schemas"];
    if !schemas.is_object() {
        *schemas = json!({});
    }
    if let Value::Object(schemas) = schemas {
        add_catalogue(schemas, catalogue);
    }
    document
}

fn add_catalogue(schemas: &mut Map<String, Value>, catalogue: &Catalogue) {
    schemas.insert("envelope".into(), catalogue.envelope_schema().clone());
    let mut events = Vec::new();
    for message_type in catalogue.types() {
        let name = &message_type.name;
        schemas.insert(payload_component(name), message_type.schema.clone());
        let mut required = vec![json!("type"), json!("data")];
        required.extend(message_type.info.requires.iter().map(|a| json!(a)));
        schemas.insert(
            event_component(name),
            json!({
                "title": message_type.title,
                "description": message_type.description,
                "allOf": [{"$ref": "#/components/schemas/envelope"}],
                "required": required,
                "properties": {
                    "type": {"const": name},
                    "data": {"$ref": format!("#/components/schemas/{}", payload_component(name))}
                }
            }),
        );
        events.push(json!({"$ref": format!("#/components/schemas/{}", event_component(name))}));
    }
    schemas.insert(
        CloudEvent::name().into_owned(),
        json!({
            "title": "CloudEvent of the catalogue",
            "description": "One CloudEvent in structured JSON mode, of one of the catalogue's types",
            "oneOf": events,
            "discriminator": {"propertyName": "type"}
        }),
    );
}

// A CloudEvent of one of the catalogue's types, as submitted and as delivered. Handlers
// refer to it by name; `document` replaces its placeholder schema with the catalogue's.
pub struct CloudEvent;

impl PartialSchema for CloudEvent {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .description(Some("One CloudEvent of the message catalogue"))
            .into()
    }
}

impl ToSchema for CloudEvent {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("CloudEvent")
    }
}

// The types below describe types of other crates (which do not depend on utoipa) as they
// serialise; `routes::tests::described_shapes_match_what_is_served` checks them against
// real values. Their doc comments are the descriptions in the document.

/// A signed checkpoint: a tree head of the ledger
#[derive(ToSchema)]
#[schema(as = Checkpoint)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CheckpointSchema {
    /// Entries the signed tree holds
    tree_size: u64,
    /// Root hash of the tree, lowercase hex
    root_hash: String,
    signed_at: OffsetDateTime,
    /// The signed note (C2SP signed-note format)
    note: String,
}

/// Where one delivery of a message stands
#[derive(ToSchema)]
#[schema(as = DeliveryState)]
#[allow(dead_code)] // describes the JSON shape only
pub struct DeliveryStateSchema {
    delivery_id: i64,
    recipient: String,
    role: RecipientRoleSchema,
    /// `pending`, `dispatched`, `acknowledged` or `dead`
    state: String,
    attempts: i32,
    dispatched_at: Option<OffsetDateTime>,
    acknowledged_at: Option<OffsetDateTime>,
    last_error: Option<String>,
}

/// How a recipient came to receive a message: addressed directly (`to`) or copied (`cc`)
#[derive(ToSchema)]
#[schema(as = RecipientRole)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)] // describes the JSON shape only
pub enum RecipientRoleSchema {
    To,
    Cc,
}

/// One ledger entry
#[derive(ToSchema)]
#[schema(as = Entry)]
#[allow(dead_code)] // describes the JSON shape only
pub struct EntrySchema {
    seq: u64,
    at: OffsetDateTime,
    /// `message.accepted`, `message.rejected`, `delivery.*`, …
    kind: String,
    message: Option<Uuid>,
    caseref: Option<String>,
    agency: Option<String>,
    #[schema(value_type = Object)]
    detail: Value,
}

/// One case: its first matter's state, its threads, parties and messages in ledger order
#[derive(ToSchema)]
#[schema(as = Case)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CaseSchema {
    caseref: String,
    /// The flow of the case's first matter (`lead`, `transfer`, …)
    flow: Option<String>,
    /// The state of the case's first matter
    state: Option<String>,
    /// Every matter of the case is in a closed state
    closed: bool,
    opened_seq: u64,
    opened_at: OffsetDateTime,
    opened_by: String,
    updated_at: OffsetDateTime,
    parties: Vec<CasePartySchema>,
    threads: Vec<CaseThreadSchema>,
    /// Every clock of its matters: running, answered or closed
    clocks: Vec<ClockSchema>,
    messages: Vec<CaseMessageSchema>,
}

/// A legal clock of a matter: an answer owed (`deadline`) or a period to act in (`window`)
#[derive(ToSchema)]
#[schema(as = Clock)]
#[allow(dead_code)] // describes the JSON shape only
pub struct ClockSchema {
    caseref: String,
    /// The matter (the id of the message that opened it)
    thread: Uuid,
    /// The clock's name in the lifecycle (`filing_review`, `recommendation_reply`, …)
    clock: String,
    flow: String,
    /// `deadline` or `window`
    kind: String,
    /// The message that started it
    origin: Uuid,
    started_at: OffsetDateTime,
    /// When it runs out; absent when it cannot be computed (`due_error` says why)
    due: Option<OffsetDateTime>,
    due_error: Option<String>,
    /// Who owes the answer or may act: the addressees of the starting message
    owed_by: Vec<String>,
    /// `running`, `answered` or `closed`
    status: String,
    /// How late a running deadline is (ISO 8601 duration); absent before its due instant
    overdue_by: Option<String>,
    /// The watcher's notices recorded for it: `reminder-P1D`, `overdue`, `escalation-P3D`…
    notices: Vec<String>,
}

/// An agency of a case with every role it had in its messages
#[derive(ToSchema)]
#[schema(as = CaseParty)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CasePartySchema {
    agency: String,
    /// `sender`, `to`, `cc`
    roles: Vec<String>,
}

/// One matter of a case, opened by the message `thread`
#[derive(ToSchema)]
#[schema(as = CaseThread)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CaseThreadSchema {
    thread: Uuid,
    flow: String,
    state: String,
    closed: bool,
    opened_seq: u64,
    updated_seq: u64,
}

/// What a message did to its matter: `from` absent when it opened it, equal to `to` when it
/// joined without moving it
#[derive(ToSchema)]
#[schema(as = CaseStep)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CaseStepSchema {
    thread: Uuid,
    flow: String,
    from: Option<String>,
    to: String,
}

/// One accepted message of a case
#[derive(ToSchema)]
#[schema(as = CaseMessage)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CaseMessageSchema {
    id: Uuid,
    seq: u64,
    #[schema(rename = "type")]
    type_: String,
    sender: String,
    recipients: Vec<RecipientSchema>,
    at: OffsetDateTime,
    inreplyto: Option<Uuid>,
    case: Option<CaseStepSchema>,
}

/// A recipient of a message and the policy rule that chose it
#[derive(ToSchema)]
#[schema(as = Recipient)]
#[allow(dead_code)] // describes the JSON shape only
pub struct RecipientSchema {
    agency: String,
    role: RecipientRoleSchema,
    rule: String,
}

/// A page of cases, newest first
#[derive(ToSchema)]
#[schema(as = CasePage)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CasePageSchema {
    cases: Vec<CaseSummarySchema>,
    /// The `cursor` of the next page; absent on the last
    next: Option<u64>,
}

/// One case of a list
#[derive(ToSchema)]
#[schema(as = CaseSummary)]
#[allow(dead_code)] // describes the JSON shape only
pub struct CaseSummarySchema {
    caseref: String,
    flow: Option<String>,
    state: Option<String>,
    closed: bool,
    opened_seq: u64,
    opened_at: OffsetDateTime,
    opened_by: String,
    updated_at: OffsetDateTime,
    parties: Vec<String>,
    /// Its running clocks
    clocks: Vec<ClockSchema>,
}

/// The periodic report (通报) of a period: per agency and flow, from ledger entries alone
#[derive(ToSchema)]
#[schema(as = Report)]
#[allow(dead_code)] // describes the JSON shape only
pub struct ReportSchema {
    /// The first day, China Standard Time
    from: time::Date,
    /// The last day, included
    to: time::Date,
    /// The first instant counted (`from` at 00:00+08:00)
    start: OffsetDateTime,
    /// The first instant not counted (the day after `to` at 00:00+08:00)
    end: OffsetDateTime,
    /// Entries after it are left out; deadlines due before it are overdue
    now: OffsetDateTime,
    /// Ledger entries folded (every kind, up to `now`)
    entries: u64,
    /// One row per agency and flow with any number, by agency then flow
    rows: Vec<ReportRowSchema>,
    /// Every column summed over the rows; the median over every answer
    totals: ReportCountsSchema,
    /// Refused submissions by agency (`-`: sender unknown) and code
    rejections: Vec<ReportRejectionSchema>,
}

/// An agency in a flow (`-`: messages of no matter) and its numbers
#[derive(ToSchema)]
#[schema(as = ReportRow)]
#[allow(dead_code)] // describes the JSON shape only
pub struct ReportRowSchema {
    agency: String,
    flow: String,
    #[serde(flatten)]
    counts: ReportCountsSchema,
}

/// The numbers of a report row; docs/cases.md says which entries each counts
#[derive(ToSchema)]
#[schema(as = ReportCounts)]
#[allow(dead_code)] // describes the JSON shape only
pub struct ReportCountsSchema {
    /// Messages the agency sent
    sent: u64,
    /// Messages routed to the agency, as addressee or copy
    received: u64,
    /// Matters the agency opened
    cases_opened: u64,
    /// Matters the agency opened that reached a closed state
    cases_closed: u64,
    /// Clocks the agency answered by their due time
    answers_on_time: u64,
    /// Clocks the agency answered after their due time
    answers_late: u64,
    /// Median time from a clock's start to the answer, in seconds
    median_answer_seconds: Option<i64>,
    /// The same, readable (`2d 3h`)
    median_answer: Option<String>,
    /// Deadlines the agency owes that are past due at `now`
    overdue_now: u64,
    transfers_filed: u64,
    transfers_not_filed: u64,
    recommendations_adopted: u64,
    recommendations_partly_adopted: u64,
    recommendations_not_adopted: u64,
}

/// Submissions of one agency refused with one code
#[derive(ToSchema)]
#[schema(as = ReportRejection)]
#[allow(dead_code)] // describes the JSON shape only
pub struct ReportRejectionSchema {
    agency: String,
    code: String,
    count: u64,
}
