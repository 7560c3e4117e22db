//! Reading cases over HTTPS: `GET /v1/cases/{caseref}` for the case's parties and the
//! administrators, `GET /v1/cases` for the caller's cases (administrators: every case).

use axum::Json;
use axum::extract::{Extension, State};
use liaison_core::{AgencyCode, RejectCode};
use liaison_ledger::{CaseFilter, CasePage, CaseView};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;

use crate::http::extract::{Path, Query};
use crate::http::gateway::{Caller, Gateway};
use crate::http::problem::Problem;

/// The case, if `caller` is one of its parties or an administrator. Anyone else is told it
/// does not exist: that a case exists is itself not for them to learn.
#[utoipa::path(
    get,
    path = "/v1/cases/{caseref}",
    operation_id = "getCase",
    tag = "cases",
    params(("caseref" = String, Path, description = "A case reference, e.g. ECO-2026-000123")),
    responses(
        (status = 200, description = "The case, for its parties and administrators", body = crate::http::openapi::CaseSchema),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn case(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Path(caseref): Path<String>,
) -> Result<Json<CaseView>, Problem> {
    let not_found = || {
        Problem::new(
            RejectCode::NotFound,
            format!("no case {caseref} visible to this agency"),
        )
    };
    let view = gateway
        .ledger
        .case(&caseref)
        .await
        .map_err(|e| Problem::ledger(&e))?
        .ok_or_else(not_found)?;
    // Parties as the case's accepted entries record them, not the projection's copy.
    let party = view.parties.iter().any(|p| p.agency == caller);
    if party || gateway.admins.contains(&caller) {
        Ok(Json(view))
    } else {
        Err(not_found())
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct CaseQuery {
    /// The state of the case's first matter.
    state: Option<String>,
    /// Cases this agency is a party of (administrators only; others see their own).
    #[param(value_type = Option<String>)]
    agency: Option<AgencyCode>,
    /// The flow of the case's first matter (`transfer`, `lead`…).
    flow: Option<String>,
    /// The type of the message that opened the case's first matter.
    #[serde(rename = "type")]
    type_: Option<String>,
    /// Cases opened after this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    opened_after: Option<OffsetDateTime>,
    /// Only cases with a running deadline past its due instant; each listed case carries
    /// its running clocks, with the late party (`owed_by`), `due` and `overdue_by`.
    #[serde(default)]
    overdue: bool,
    /// Only cases with a running deadline due before this instant (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    due_before: Option<OffsetDateTime>,
    /// The `next` of the previous page.
    cursor: Option<u64>,
    /// Most cases per page (1–1000, default 100).
    limit: Option<i64>,
}

/// The caller's cases, newest first (administrators: every case), each with its running
/// clocks; `overdue=true` lists the cases with a deadline past due
#[utoipa::path(
    get,
    path = "/v1/cases",
    operation_id = "listCases",
    tag = "cases",
    params(CaseQuery),
    responses(
        (status = 200, description = "A page of cases", body = crate::http::openapi::CasePageSchema),
        (status = 403, response = Problem),
        (status = 404, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn list(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Query(query): Query<CaseQuery>,
) -> Result<Json<CasePage>, Problem> {
    let admin = gateway.admins.contains(&caller);
    let party = match (admin, query.agency) {
        (true, agency) => agency,
        (false, Some(agency)) if agency != caller => {
            return Err(Problem::new(
                RejectCode::Forbidden,
                format!("{caller} lists its own cases; other agencies' are for administrators"),
            ));
        }
        (false, _) => Some(caller),
    };
    let lifecycle = gateway.pipeline.lifecycle();
    let flow = match (query.flow, query.type_) {
        (Some(flow), _) => Some(flow),
        (None, Some(type_)) => Some(
            lifecycle
                .opened_by(&type_)
                .map(|f| f.name.clone())
                .ok_or_else(|| {
                    Problem::new(RejectCode::NotFound, format!("{type_} opens no case flow"))
                })?,
        ),
        (None, None) => None,
    };
    let filter = CaseFilter {
        party,
        state: query.state,
        flow,
        opened_after: query.opened_after,
        overdue: query.overdue,
        due_before: query.due_before,
        before_seq: query.cursor,
        limit: query.limit.unwrap_or(100),
    };
    let page = gateway
        .ledger
        .cases(&filter)
        .await
        .map_err(|e| Problem::ledger(&e))?;
    Ok(Json(page))
}
