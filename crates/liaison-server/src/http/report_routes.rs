//! The periodic report (通报) over HTTPS: `GET /v1/reports?from=&to=&format=`, for the
//! administrators. Computed from the ledger's entries as `liaison report` computes it
//! (docs/cases.md, "The periodic report").

use axum::extract::{Extension, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use liaison_core::{AgencyCode, RejectCode};
use liaison_ledger::{Report, ReportFormat, ReportPeriod};
use serde::Deserialize;
use utoipa::IntoParams;

use crate::http::extract::Query;
use crate::http::gateway::{Caller, Gateway};
use crate::http::openapi::ReportSchema;
use crate::http::problem::Problem;

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ReportQuery {
    /// The first day of the period, China Standard Time (`2026-01-01`)
    #[param(required = true, value_type = String, format = Date)]
    from: Option<String>,
    /// The last day of the period, included (`2026-03-31`)
    #[param(required = true, value_type = String, format = Date)]
    to: Option<String>,
    /// `json` (the default), `csv` or `md`
    format: Option<String>,
}

/// The periodic report (通报) of a period, per agency and flow; administrators only
///
/// Messages sent and received, matters opened and closed, clocks answered on time and
/// late with the median answer time, deadlines overdue now, filing decisions, replies to
/// recommendations, and rejections by code — computed from the ledger's entries alone.
#[utoipa::path(
    get,
    path = "/v1/reports",
    operation_id = "getReport",
    tag = "audit",
    params(ReportQuery),
    responses(
        (status = 200, description = "The report, in the format asked for", content(
            (ReportSchema = "application/json"),
            (String = "text/csv"),
            (String = "text/markdown"),
        )),
        (status = 403, response = Problem),
        (status = 400, response = Problem),
    ),
    security(("agencyCertificate" = [])),
)]
pub(crate) async fn report(
    State(gateway): State<Gateway>,
    Extension(Caller(caller)): Extension<Caller>,
    Query(query): Query<ReportQuery>,
) -> Result<Response, Problem> {
    let (period, format) = request(gateway.admins.contains(&caller), &caller, &query)
        .map_err(|(code, detail)| Problem::new(code, detail))?;
    // Whole seconds, so that the `now` in the report reproduces it exactly.
    let now = gateway.clock.now();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    let report = gateway
        .ledger
        .report(period, now)
        .await
        .map_err(|e| Problem::ledger(&e))?;
    Ok(respond(format, &report))
}

/// The period and format asked for, if the caller may have a report; else the code and
/// detail of the problem to answer.
fn request(
    admin: bool,
    caller: &AgencyCode,
    query: &ReportQuery,
) -> Result<(ReportPeriod, ReportFormat), (RejectCode, String)> {
    if !admin {
        return Err((
            RejectCode::Forbidden,
            format!("reports are for administrators; {caller} is not one (configuration `admins`)"),
        ));
    }
    let no_report = |why: String| (RejectCode::InvalidParameter, format!("no report: {why}"));
    let (Some(from), Some(to)) = (query.from.as_deref(), query.to.as_deref()) else {
        return Err(no_report(
            "name the period's first and last days, e.g. ?from=2026-01-01&to=2026-03-31".into(),
        ));
    };
    let period = ReportPeriod::parse(from, to).map_err(|e| no_report(e.to_string()))?;
    let format = match query.format.as_deref() {
        None => ReportFormat::Json,
        Some(name) => ReportFormat::parse(name).ok_or_else(|| {
            no_report(format!("format {name:?}: the formats are json, csv and md"))
        })?,
    };
    Ok((period, format))
}

fn respond(format: ReportFormat, report: &Report) -> Response {
    (
        [(header::CONTENT_TYPE, format.content_type())],
        format.render(report),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use axum::http::StatusCode;

    use super::*;

    fn query(from: Option<&str>, to: Option<&str>, format: Option<&str>) -> ReportQuery {
        ReportQuery {
            from: from.map(str::to_owned),
            to: to.map(str::to_owned),
            format: format.map(str::to_owned),
        }
    }

    fn refused(admin: bool, q: &ReportQuery) -> Problem {
        let caller = AgencyCode::new("eco").unwrap();
        let (code, detail) = request(admin, &caller, q).expect_err("refused");
        Problem::new(code, detail)
    }

    #[test]
    fn only_administrators_get_a_report() {
        let quarter = query(Some("2026-01-01"), Some("2026-03-31"), None);
        let problem = refused(false, &quarter);
        assert_eq!((problem.code, problem.status), (RejectCode::Forbidden, 403));
        let caller = AgencyCode::new("gov").unwrap();
        let (period, format) = request(true, &caller, &quarter).unwrap();
        assert_eq!(
            period,
            ReportPeriod::parse("2026-01-01", "2026-03-31").unwrap()
        );
        assert_eq!(format, ReportFormat::Json);
    }

    #[test]
    fn a_period_or_format_that_makes_no_report_is_an_invalid_parameter() {
        for q in [
            query(None, Some("2026-03-31"), None),
            query(Some("2026-01-01"), None, None),
            query(Some("2026-04-01"), Some("2026-03-31"), None),
            query(Some("2026-01-01"), Some("2026-02-30"), None),
            query(Some("2026-01-01"), Some("2026-03-31"), Some("xml")),
        ] {
            let problem = refused(true, &q);
            assert_eq!(
                (problem.code, problem.status),
                (RejectCode::InvalidParameter, 400),
                "{q:?}"
            );
        }
        let caller = AgencyCode::new("gov").unwrap();
        for (name, format) in [
            ("json", ReportFormat::Json),
            ("csv", ReportFormat::Csv),
            ("md", ReportFormat::Markdown),
        ] {
            let q = query(Some("2026-01-01"), Some("2026-01-01"), Some(name));
            assert_eq!(request(true, &caller, &q).unwrap().1, format);
        }
    }

    #[test]
    fn each_format_is_answered_with_its_media_type() {
        let period = ReportPeriod::parse("2026-01-01", "2026-03-31").unwrap();
        let report = Report::compute([], period, time::OffsetDateTime::UNIX_EPOCH);
        for (format, media_type) in [
            (ReportFormat::Json, "application/json"),
            (ReportFormat::Csv, "text/csv; charset=utf-8"),
            (ReportFormat::Markdown, "text/markdown; charset=utf-8"),
        ] {
            let response = respond(format, &report);
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()[header::CONTENT_TYPE], media_type);
        }
    }
}
