//! RFC 9457 problem documents: every non-2xx answer of the gateway.
//!
//! The `code` member is the stable [`RejectCode`]; `errors` lists every failing JSON pointer
//! for schema violations; `ledger_seq` is the ledger entry that recorded the rejection.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use liaison_core::RejectCode;
use liaison_schema::Violation;
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::{ContentBuilder, RefOr, ResponseBuilder};
use utoipa::{ToResponse, ToSchema};
use uuid::Uuid;

pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// RFC 9457 problem document
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:liaison:problem:<code>`
    #[serde(rename = "type")]
    pub type_: String,
    #[schema(value_type = String)]
    pub title: &'static str,
    pub status: u16,
    pub detail: String,
    /// Stable error code; a retired code is never reused
    #[schema(schema_with = reject_code_schema)]
    pub code: RejectCode,
    /// Every schema violation, sorted by pointer
    #[serde(skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<ViolationSchema>)]
    pub errors: Vec<Violation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<Uuid>,
    /// The ledger entry that recorded the rejection
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ledger_seq: Option<u64>,
}

/// Every [`RejectCode`], so the document lists exactly the codes this broker answers with.
fn reject_code_schema() -> Schema {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(RejectCode::ALL.iter().map(|code| code.as_str())))
        .description(Some("Stable error code; a retired code is never reused"))
        .into()
}

// How the document describes a `Violation` of `liaison-schema` (which does not depend on
// utoipa); `routes::tests::described_shapes_match_what_is_served` checks a real one against it.
/// One way the event fails its schemas
#[derive(ToSchema)]
#[schema(as = Violation)]
#[allow(dead_code)] // describes the JSON shape only
pub struct ViolationSchema {
    /// RFC 6901 JSON pointer into the event; for `required` the missing member
    pointer: String,
    /// The failing JSON Schema keyword
    keyword: String,
    /// Readable; never quotes the value sent
    message: String,
}

/// The response every refusal of every route shares: `#/components/responses/Problem`.
impl<'r> ToResponse<'r> for Problem {
    fn response() -> (&'r str, RefOr<utoipa::openapi::Response>) {
        let content = ContentBuilder::new()
            .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                Problem::name(),
            ))))
            .build();
        let response = ResponseBuilder::new()
            .description("Refused; `code` says why")
            .content(PROBLEM_CONTENT_TYPE, content)
            .build();
        ("Problem", RefOr::T(response))
    }
}

impl Problem {
    pub fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("urn:liaison:problem:{}", code.as_str()),
            title: code.title(),
            status: code.http_status(),
            detail: detail.into(),
            code,
            errors: Vec::new(),
            message_id: None,
            ledger_seq: None,
        }
    }

    /// `503 unavailable` because `dependency` failed. The error is logged here and kept
    /// out of the answer: PostgreSQL's and RabbitMQ's messages name hosts, roles, tables,
    /// constraints and queues, none of which is a client's business.
    pub fn unavailable(dependency: Dependency, error: &dyn std::fmt::Display) -> Self {
        tracing::warn!(dependency = dependency.name(), error = %error, "answered 503: a service behind the broker failed");
        Self::new(RejectCode::Unavailable, dependency.detail())
    }

    pub fn with_errors(mut self, errors: Vec<Violation>) -> Self {
        self.errors = errors;
        self
    }

    /// The answer to a ledger failure. What PostgreSQL said stays in the log: database
    /// error text names tables, constraints and values, and is nothing a client can act on.
    /// Stored data that fails a check is `500` (an operator must run `liaison ledger
    /// verify`); anything else is `503`, to be retried.
    pub fn ledger(error: &liaison_ledger::LedgerError) -> Self {
        if matches!(error, liaison_ledger::LedgerError::Corrupt(_)) {
            tracing::error!(%error, "stored ledger data failed a check");
            return Self::new(
                RejectCode::Internal,
                "stored ledger data failed a check; the operator has been told",
            );
        }
        Self::unavailable(Dependency::Ledger, error)
    }
}

/// A service the broker depends on, named in a `503` without its error text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dependency {
    Ledger,
    RabbitMq,
}

impl Dependency {
    fn name(self) -> &'static str {
        match self {
            Self::Ledger => "ledger",
            Self::RabbitMq => "rabbitmq",
        }
    }

    /// The whole detail a client gets.
    pub fn detail(self) -> &'static str {
        match self {
            Self::Ledger => "the ledger is unavailable; retry shortly",
            Self::RabbitMq => "message delivery is unavailable; retry shortly",
        }
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let retry = self.code.is_retryable();
        let mut response = (status, Json(self)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static(PROBLEM_CONTENT_TYPE),
        );
        if retry {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every problem document a client can get, as it is serialized: one per code.
    #[test]
    fn the_problem_documents() {
        let documents: Vec<serde_json::Value> = RejectCode::ALL
            .iter()
            .map(|code| serde_json::to_value(Problem::new(*code, "what went wrong")).unwrap())
            .collect();
        insta::assert_json_snapshot!("problem_documents", documents);
    }

    /// docs/integration.md tells integrators what each code means and what to do: a new
    /// code must be added there, with its status.
    #[test]
    fn docs_integration_md_lists_every_code_with_its_status() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/integration.md");
        let doc = std::fs::read_to_string(path).expect("docs/integration.md");
        for code in RejectCode::ALL {
            let row = format!("| `{}` | {} |", code.as_str(), code.http_status());
            assert!(doc.contains(&row), "docs/integration.md has no row {row}");
        }
    }

    #[test]
    fn an_unavailable_service_is_named_but_its_error_text_is_not_passed_on() {
        let error = "error returned from database: permission denied for table messages \
                     (role liaison_broker, host db.internal:5432)";
        for dependency in [Dependency::Ledger, Dependency::RabbitMq] {
            let problem = Problem::unavailable(dependency, &error);
            assert_eq!(problem.code, RejectCode::Unavailable);
            assert_eq!(problem.status, 503);
            assert_eq!(problem.detail, dependency.detail());
            let shown = serde_json::to_string(&problem).unwrap();
            for secret in [
                "permission denied",
                "messages",
                "liaison_broker",
                "db.internal",
            ] {
                assert!(!shown.contains(secret), "{shown}");
            }
        }
    }
}
