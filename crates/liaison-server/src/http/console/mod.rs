//! The administrators' web console at `/console/` on the HTTPS gateway.
//!
//! Same mutual TLS as the API: the gateway's `authenticate` has mapped the browser's
//! client certificate to an agency before any handler here runs, and only the agencies of
//! `admins` get past [`Console`] (everyone else gets a `403` page). Pages are rendered on
//! the server from templates built into the binary (`templates.rs`), every label from the
//! message catalogue of the page's language (`i18n/zh.toml`, the default, and
//! `i18n/en.toml`); the charts are inline SVG drawn here (`chart.rs`); the one script,
//! `static/verify.js`, checks an inclusion proof and the checkpoint's signature in the
//! browser. Everything shown is read from the ledger and its case projection, as the API
//! reads them. Reading masked personal data (`mask.rs`) and redriving a dead letter are
//! POSTs, each recorded in the ledger with the administrator's agency.
//!
//! The console is HTML for people, not part of the API: its routes are not in the
//! OpenAPI document (`routes.rs` exempts `/console/` from the documented-routes test).

mod chart;
pub mod i18n;
pub mod mask;
pub mod state;
pub(crate) mod templates;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Form;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use liaison_core::{AgencyCode, Entry, EntryKind};
use liaison_ledger::{MessageSearch, NewReveal, TraceKey};
use minijinja::Value;
use serde::Deserialize;
use serde_json::json;
use time::{Date, Duration, OffsetDateTime, UtcOffset};
use utoipa_axum::router::OpenApiRouter;
use uuid::Uuid;

use crate::http::gateway::{Caller, Gateway};
use i18n::Lang;
use state::Aggregates;

/// The path every console route starts with.
pub const PREFIX: &str = "/console";

const LANG_COOKIE: &str = "liaison_lang";

/// The console's routes, served but not documented (they are not the API).
pub(crate) fn mount(router: OpenApiRouter<Gateway>) -> OpenApiRouter<Gateway> {
    router
        .route(
            "/console",
            get(|| async { Redirect::permanent("/console/") }),
        )
        .route("/console/", get(overview))
        .route("/console/search", get(search))
        .route("/console/cases/{caseref}", get(case))
        .route("/console/messages/{id}", get(message))
        .route("/console/messages/{id}/reveal", post(reveal))
        .route("/console/deadletters", get(deadletters))
        .route("/console/deadletters/redrive", post(redrive))
        .route("/console/ledger", get(ledger))
        .route("/console/static/{file}", get(asset))
}

/// China Standard Time, in which the console shows every instant.
fn cst() -> UtcOffset {
    UtcOffset::from_whole_seconds(liaison_ledger::CST_SECONDS).unwrap_or(UtcOffset::UTC)
}

fn show(at: OffsetDateTime) -> String {
    let at = at.to_offset(cst());
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    )
}

fn show_opt(at: Option<OffsetDateTime>) -> String {
    at.map(show).unwrap_or_default()
}

/// An administrator's request to the console: who, and in which language.
pub struct Console {
    admin: AgencyCode,
    lang: Lang,
    /// The language was chosen by `?lang=`: remember it in a cookie.
    remember: bool,
}

fn lang_of(parts: &Parts) -> (Lang, bool) {
    let asked = parts.uri.query().and_then(|q| {
        q.split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == "lang")
            .and_then(|(_, v)| Lang::parse(v))
    });
    if let Some(lang) = asked {
        return (lang, true);
    }
    let cookie = parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == LANG_COOKIE)
        .and_then(|(_, v)| Lang::parse(v));
    (cookie.unwrap_or(Lang::Zh), false)
}

impl FromRequestParts<Gateway> for Console {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, gateway: &Gateway) -> Result<Self, Response> {
        let (lang, remember) = lang_of(parts);
        let caller = parts.extensions.get::<Caller>().map(|c| c.0.clone());
        match caller {
            Some(agency) if gateway.admins.contains(&agency) => Ok(Console {
                admin: agency,
                lang,
                remember,
            }),
            other => {
                let who = other.map(|a| a.to_string()).unwrap_or_default();
                Err(render_page(
                    lang,
                    remember,
                    &who,
                    StatusCode::FORBIDDEN,
                    "forbidden.html",
                    Value::from_serialize(json!({})),
                ))
            }
        }
    }
}

/// A console page in `lang` for `who` (the caller's agency), remembering the language
/// in a cookie when it was just chosen.
fn render_page(
    lang: Lang,
    remember: bool,
    who: &str,
    status: StatusCode,
    template: &str,
    data: Value,
) -> Response {
    let page = Value::from_serialize(json!({
        "lang": lang.code(),
        "other_lang": lang.other().code(),
        "admin": who,
    }));
    let context = minijinja::context! { ..data, ..page };
    let rendered = templates::ENVIRONMENT
        .get_template(template)
        .and_then(|t| t.render(context));
    let mut response = match rendered {
        Ok(html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Err(e) => {
            tracing::error!("console template {template}: {e:#}");
            (StatusCode::INTERNAL_SERVER_ERROR, "console template error").into_response()
        }
    };
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; style-src 'self'; img-src 'self' data:; script-src 'self'; form-action 'self'; frame-ancestors 'none'",
        ),
    );
    if remember
        && let Ok(cookie) = HeaderValue::from_str(&format!(
            "{LANG_COOKIE}={}; Path=/console; Secure; SameSite=Strict",
            lang.code()
        ))
    {
        headers.insert(header::SET_COOKIE, cookie);
    }
    response
}

impl Console {
    fn render(&self, template: &str, data: serde_json::Value) -> Response {
        self.render_status(StatusCode::OK, template, data)
    }

    fn render_status(
        &self,
        status: StatusCode,
        template: &str,
        data: serde_json::Value,
    ) -> Response {
        self.render_value(status, template, Value::from_serialize(&data))
    }

    fn render_value(&self, status: StatusCode, template: &str, data: Value) -> Response {
        render_page(
            self.lang,
            self.remember,
            self.admin.as_str(),
            status,
            template,
            data,
        )
    }

    fn error(&self, status: StatusCode, detail: impl std::fmt::Display) -> Response {
        self.render_status(
            status,
            "error.html",
            json!({"status": status.as_u16(), "detail": detail.to_string()}),
        )
    }

    fn unavailable(&self, e: impl std::fmt::Display) -> Response {
        tracing::warn!("console: {e}");
        self.error(StatusCode::SERVICE_UNAVAILABLE, e)
    }
}

/// A POST from a page of another origin is refused: the browser sends the client
/// certificate to any site that posts a form here, so the origin is what tells an
/// administrator's click from a forged request.
fn same_origin(headers: &HeaderMap, uri: &axum::http::Uri) -> bool {
    // HTTP/2 names the host in the `:authority` pseudo-header, which is the URI's.
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return false;
    }
    match headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) {
        Some(origin) => {
            let authority = origin.strip_prefix("https://").unwrap_or(origin);
            host.is_none_or(|h| h == authority)
        }
        None => true,
    }
}

async fn asset(Path(file): Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (
            include_str!("static/console.css"),
            "text/css; charset=utf-8",
        ),
        "console.js" => (
            include_str!("static/console.js"),
            "text/javascript; charset=utf-8",
        ),
        "verify.js" => (
            include_str!("static/verify.js"),
            "text/javascript; charset=utf-8",
        ),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, kind),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        body,
    )
        .into_response()
}

/// The flow a message type belongs to: the first flow it opens or moves, or `other`.
fn flow_of(lifecycle: &liaison_core::lifecycle::Lifecycle, type_: &str) -> String {
    lifecycle
        .flows()
        .iter()
        .find(|f| f.opened_by == type_ || f.steps.iter().any(|s| s.on == type_))
        .map(|f| f.name.clone())
        .unwrap_or_else(|| "other".to_owned())
}

fn today(now: OffsetDateTime) -> Date {
    now.to_offset(cst()).date()
}

fn midnight(day: Date) -> OffsetDateTime {
    day.midnight().assume_offset(cst())
}

/// Days shown in the per-day chart.
const CHART_DAYS: i64 = 14;

async fn overview(console: Console, State(gateway): State<Gateway>) -> Response {
    let now = gateway.clock.now();
    let first_day = today(now) - Duration::days(CHART_DAYS - 1);
    let week_start = {
        let day = today(now);
        midnight(day - Duration::days(i64::from(day.weekday().number_days_from_monday())))
    };
    let ledger = &gateway.ledger;
    let queues: Vec<(String, String)> = gateway
        .pipeline
        .registry()
        .codes()
        .map(|c| (c.to_string(), liaison_bus::agency_queue(c)))
        .chain([(String::new(), liaison_bus::QUEUE_DEAD.to_owned())])
        .collect();
    let queue_names: Vec<String> = queues.iter().map(|(_, q)| q.clone()).collect();
    let (aggregates, rejections, dead, latest, depths) = tokio::join!(
        aggregates(&gateway, now),
        ledger.rejections_by_code(week_start),
        ledger.dead_count(),
        ledger.latest_checkpoint(),
        gateway.bus.queue_depths(&queue_names),
    );
    let (aggregates, rejections, dead, latest) = match (aggregates, rejections, dead, latest) {
        (Ok(a), Ok(b), Ok(c), Ok(d)) => (a, b, c, d),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return console.unavailable(e);
        }
    };
    let (per_day, cases) = (&aggregates.per_day, &aggregates.cases);
    let lifecycle = gateway.pipeline.lifecycle();
    let mut counts = BTreeMap::new();
    for row in per_day {
        *counts
            .entry((row.day.to_string(), flow_of(lifecycle, &row.type_)))
            .or_insert(0) += row.messages;
    }
    let days: Vec<String> = (0..CHART_DAYS)
        .map(|i| (first_day + Duration::days(i)).to_string())
        .collect();
    let case_rows: Vec<(String, u64, u64)> = cases
        .iter()
        .map(|c| (c.agency.clone(), c.open, c.overdue))
        .collect();
    let depths = depths.unwrap_or_else(|e| {
        tracing::warn!("console: queue depths: {e}");
        vec![None; queue_names.len()]
    });
    let queues: Vec<serde_json::Value> = queues
        .iter()
        .zip(depths)
        .map(|((agency, queue), depth)| {
            json!({
                "agency": agency, "queue": queue, "present": depth.is_some(),
                "messages": depth.map(|d| d.messages), "consumers": depth.map(|d| d.consumers),
            })
        })
        .collect();
    let checkpoint = match latest {
        Some(c) => {
            let problem = match gateway.checkpoint_key.open(&c.note) {
                Err(e) => Some(e.to_string()),
                Ok(opened) if opened.root != c.root_hash || opened.size != c.tree_size => {
                    Some("the note does not assert the stored root".to_owned())
                }
                Ok(_) => match ledger.root_at(c.tree_size).await {
                    Ok(root) if root == c.root_hash => None,
                    Ok(_) => Some("the stored tree has another root".to_owned()),
                    Err(e) => Some(e.to_string()),
                },
            };
            json!({
                "tree_size": c.tree_size, "root": hex::encode(c.root_hash),
                "signed_at": show(c.signed_at), "ok": problem.is_none(), "problem": problem,
            })
        }
        None => serde_json::Value::Null,
    };
    let full_verification = match ledger.latest_verification().await {
        Ok(Some(v)) => json!({
            "at": show(v.verified_at), "entries": v.entries, "ok": v.ok, "findings": v.findings,
        }),
        Ok(None) => serde_json::Value::Null,
        Err(e) => return console.unavailable(e),
    };
    let data = json!({
        "rejections": rejections.iter().map(|(code, n)| json!({"code": code, "count": n})).collect::<Vec<_>>(),
        "dead_count": dead,
        "queues": queues,
        "checkpoint": checkpoint,
        "full_verification": full_verification,
        "verified_at": show(now),
        "aggregates_at": show(aggregates.at),
    });
    let charts = minijinja::context! {
        per_day_chart => Value::from_safe_string(chart::stacked_columns(&days, &counts)),
        cases_chart => Value::from_safe_string(chart::agency_bars(&case_rows)),
    };
    console.render_value(
        StatusCode::OK,
        "overview.html",
        minijinja::context! { ..charts, ..Value::from_serialize(&data) },
    )
}

const AGGREGATES_MAX_AGE: std::time::Duration = std::time::Duration::from_secs(10);
const AGGREGATES_INLINE: std::time::Duration = std::time::Duration::from_millis(50);

async fn compute_aggregates(
    gateway: &Gateway,
    now: OffsetDateTime,
) -> Result<Arc<Aggregates>, liaison_ledger::LedgerError> {
    let began = std::time::Instant::now();
    let first_day = today(now) - Duration::days(CHART_DAYS - 1);
    let (per_day, cases) = tokio::join!(
        gateway.ledger.messages_per_day(midnight(first_day)),
        gateway.ledger.cases_per_agency(now),
    );
    let fresh = Arc::new(Aggregates {
        at: now,
        took: began.elapsed(),
        per_day: per_day?,
        cases: cases?,
    });
    *gateway.console.aggregates.write().await = Some(fresh.clone());
    Ok(fresh)
}

async fn aggregates(
    gateway: &Gateway,
    now: OffsetDateTime,
) -> Result<Arc<Aggregates>, liaison_ledger::LedgerError> {
    use std::sync::atomic::Ordering;
    let cached = gateway.console.aggregates.read().await.clone();
    match cached {
        Some(cached) if cached.took > AGGREGATES_INLINE => {
            let age = (now - cached.at).unsigned_abs();
            if age > AGGREGATES_MAX_AGE && !gateway.console.refreshing.swap(true, Ordering::AcqRel)
            {
                let gateway = gateway.clone();
                tokio::spawn(async move {
                    if let Err(e) = compute_aggregates(&gateway, gateway.clock.now()).await {
                        tracing::warn!("console: overview aggregates: {e}");
                    }
                    gateway.console.refreshing.store(false, Ordering::Release);
                });
            }
            Ok(cached)
        }
        _ => compute_aggregates(gateway, now).await,
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct SearchQuery {
    #[serde(default)]
    id: String,
    #[serde(default)]
    caseref: String,
    #[serde(default)]
    sender: String,
    #[serde(default, rename = "type")]
    type_: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    before: Option<u64>,
}

/// `text` percent-encoded for a query string.
fn encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-_.~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn non_empty(s: &str) -> Option<String> {
    let s = s.trim();
    (!s.is_empty()).then(|| s.to_owned())
}

async fn search(
    console: Console,
    State(gateway): State<Gateway>,
    Query(query): Query<SearchQuery>,
) -> Response {
    let date = |s: &str| {
        non_empty(s).and_then(|s| {
            Date::parse(
                &s,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .ok()
        })
    };
    let searched = [
        &query.id,
        &query.caseref,
        &query.sender,
        &query.type_,
        &query.from,
        &query.to,
    ]
    .iter()
    .any(|s| !s.trim().is_empty());
    let mut hits = Vec::new();
    let mut next = None;
    if searched {
        let id = match non_empty(&query.id).map(|s| Uuid::parse_str(&s)) {
            Some(Ok(id)) => Some(id),
            Some(Err(_)) => Some(Uuid::nil()),
            None => None,
        };
        let filter = MessageSearch {
            id,
            caseref: non_empty(&query.caseref),
            sender: non_empty(&query.sender),
            type_: non_empty(&query.type_),
            from: date(&query.from).map(midnight),
            to: date(&query.to).map(|d| midnight(d + Duration::days(1))),
            before_seq: query.before,
            limit: 50,
        };
        let page = match gateway.ledger.search_messages(&filter).await {
            Ok(page) => page,
            Err(e) => return console.unavailable(e),
        };
        hits = page
            .hits
            .iter()
            .map(|h| {
                json!({"id": h.id, "seq": h.seq, "at": show(h.received_at), "type": h.type_,
                       "sender": h.sender.as_str(), "caseref": h.caseref})
            })
            .collect();
        next = page.next.map(|seq| {
            format!(
                "/console/search?id={}&caseref={}&sender={}&type={}&from={}&to={}&before={seq}",
                encode(&query.id),
                encode(&query.caseref),
                encode(&query.sender),
                encode(&query.type_),
                encode(&query.from),
                encode(&query.to)
            )
        });
    }
    let agencies: Vec<String> = gateway
        .pipeline
        .registry()
        .codes()
        .map(|c| c.to_string())
        .collect();
    let types: Vec<String> = gateway
        .pipeline
        .catalogue()
        .types()
        .map(|t| t.name.clone())
        .collect();
    console.render(
        "search.html",
        json!({
            "q": {"id": query.id, "caseref": query.caseref, "sender": query.sender,
                  "type": query.type_, "from": query.from, "to": query.to},
            "searched": searched, "hits": hits, "next": next,
            "agencies": agencies, "types": types,
        }),
    )
}

/// The state a delivery of `message` to `agency` reached, from the case's entries.
fn delivery_states(entries: &[Entry]) -> BTreeMap<(Uuid, String), &'static str> {
    let mut states = BTreeMap::new();
    for entry in entries {
        let (Some(message), Some(agency)) = (entry.message, entry.agency.as_ref()) else {
            continue;
        };
        let key = (message, agency.to_string());
        let state = match entry.kind {
            EntryKind::DeliveryDispatched | EntryKind::DeliveryRedriven => "delivered",
            EntryKind::DeliveryAcknowledged => "acknowledged",
            EntryKind::DeliveryDeadLettered => "pending",
            _ => continue,
        };
        // An acknowledgement stands over a later duplicate dispatch.
        let current = states.entry(key).or_insert(state);
        if *current != "acknowledged" {
            *current = state;
        }
    }
    states
}

/// Whether an accepted message answered late (it stopped a clock past its due instant).
fn answered_late(entry: &Entry) -> bool {
    entry.detail["clocks"]["stopped"]
        .as_array()
        .is_some_and(|stopped| stopped.iter().any(|s| s["late"] == json!(true)))
}

async fn case(
    console: Console,
    State(gateway): State<Gateway>,
    Path(caseref): Path<String>,
) -> Response {
    let key = TraceKey::Case(caseref.clone());
    let (view, entries) = tokio::join!(gateway.ledger.case(&caseref), gateway.ledger.trace(&key));
    let (view, entries) = match (view, entries) {
        (Ok(Some(view)), Ok(entries)) => (view, entries),
        (Ok(None), _) => {
            return console.error(StatusCode::NOT_FOUND, format!("no case {caseref}"));
        }
        (Err(e), _) | (_, Err(e)) => return console.unavailable(e),
    };
    let now = gateway.clock.now();
    let states = delivery_states(&entries);
    let mut lanes: Vec<String> = Vec::new();
    let lane = |agency: &str, lanes: &mut Vec<String>| -> usize {
        match lanes.iter().position(|l| l == agency) {
            Some(i) => i,
            None => {
                lanes.push(agency.to_owned());
                lanes.len() - 1
            }
        }
    };
    let mut steps = Vec::new();
    for entry in entries
        .iter()
        .filter(|e| e.kind == EntryKind::MessageAccepted)
    {
        let (Some(message), Some(sender)) = (entry.message, entry.agency.as_ref()) else {
            continue;
        };
        let from = lane(sender.as_str(), &mut lanes);
        let late = answered_late(entry);
        let type_ = entry.detail["type"].as_str().unwrap_or_default().to_owned();
        let recipients: Vec<liaison_core::Recipient> =
            serde_json::from_value(entry.detail["recipients"].clone()).unwrap_or_default();
        let arrows = recipients
            .iter()
            .map(|r| {
                let to = lane(r.agency.as_str(), &mut lanes);
                let state = states
                    .get(&(message, r.agency.to_string()))
                    .copied()
                    .unwrap_or("pending");
                chart::Arrow {
                    message: message.to_string(),
                    label: format!("#{} {type_}", entry.seq),
                    from,
                    to,
                    state: if late && state != "pending" {
                        "late"
                    } else {
                        state
                    },
                }
            })
            .collect();
        steps.push(chart::Step {
            at: show(entry.at),
            arrows,
        });
    }
    let clocks: Vec<serde_json::Value> = view
        .clocks
        .iter()
        .filter(|c| c.status == "running")
        .map(|c| {
            json!({
                "clock": c.clock, "due": show_opt(c.due), "owed_by": c.owed_by,
                "overdue": c.overdue_by.is_some() || c.due.is_some_and(|d| d < now),
            })
        })
        .collect();
    let data = json!({
        "case": {
            "caseref": view.head.caseref,
            "state": view.head.state,
            "closed": view.head.closed,
            "parties": view.parties.iter().map(|p| json!({"agency": p.agency.as_str(), "roles": p.roles})).collect::<Vec<_>>(),
            "threads": view.threads.iter().map(|t| json!({"flow": t.flow, "state": t.state, "closed": t.closed})).collect::<Vec<_>>(),
            "clocks": clocks,
        },
    });
    let timeline = Value::from_safe_string(chart::timeline(&lanes, &steps));
    console.render_value(
        StatusCode::OK,
        "case.html",
        minijinja::context! { timeline => timeline, ..Value::from_serialize(&data) },
    )
}

async fn message(
    console: Console,
    State(gateway): State<Gateway>,
    Path(id): Path<String>,
) -> Response {
    show_message(&console, &gateway, &id, false).await
}

async fn reveal(
    console: Console,
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Path(id): Path<String>,
) -> Response {
    if !same_origin(&headers, &uri) {
        return console.error(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    show_message(&console, &gateway, &id, true).await
}

/// The message page; with `reveal`, its personal data unmasked once the reading is
/// recorded in the ledger (and never unless it is).
async fn show_message(console: &Console, gateway: &Gateway, id: &str, reveal: bool) -> Response {
    let Ok(uuid) = Uuid::parse_str(id) else {
        return console.error(StatusCode::NOT_FOUND, format!("no message {id}"));
    };
    let stored = match gateway.ledger.message(uuid).await {
        Ok(Some(stored)) => stored,
        Ok(None) => return console.error(StatusCode::NOT_FOUND, format!("no message {id}")),
        Err(e) => return console.unavailable(e),
    };
    let event: serde_json::Value = serde_json::from_slice(&stored.body).unwrap_or_default();
    let data = event.get("data").cloned().unwrap_or_default();
    let pointers = gateway
        .pipeline
        .catalogue()
        .get(&stored.type_)
        .map(|t| mask::pii_pointers(&t.schema, &data))
        .unwrap_or_default();
    if reveal && !pointers.is_empty() {
        let recorded = gateway
            .ledger
            .reveal(NewReveal {
                message_id: uuid,
                caseref: stored.caseref.clone(),
                by: console.admin.clone(),
                fields: pointers.iter().map(|p| format!("/data{p}")).collect(),
            })
            .await;
        if let Err(e) = recorded {
            return console.unavailable(e);
        }
        tracing::info!(
            message.id = %uuid,
            agency.code = %console.admin,
            fields = pointers.len(),
            "personal data revealed in the console"
        );
    }
    let revealed = reveal && !pointers.is_empty();
    let shown = if revealed {
        data.clone()
    } else {
        mask::masked(&data, &pointers)
    };
    let mut envelope = event.clone();
    if let Some(members) = envelope.as_object_mut() {
        members.remove("data");
    }
    let entries = match gateway.ledger.trace(&TraceKey::Message(uuid)).await {
        Ok(entries) => entries,
        Err(e) => return console.unavailable(e),
    };
    let entries: Vec<serde_json::Value> = entries
        .iter()
        .filter(|e| e.message == Some(uuid))
        .map(|e| {
            json!({"seq": e.seq, "at": show(e.at), "kind": e.kind.as_str(),
                   "agency": e.agency.as_ref().map(|a| a.as_str()), "detail": e.detail.to_string()})
        })
        .collect();
    let pretty = |v: &serde_json::Value| serde_json::to_string_pretty(v).unwrap_or_default();
    console.render(
        "message.html",
        json!({
            "m": {"id": stored.id, "seq": stored.seq, "type": stored.type_,
                  "sender": stored.sender.as_str(), "received_at": show(stored.received_at),
                  "caseref": stored.caseref},
            "envelope": pretty(&envelope),
            "payload": pretty(&shown),
            "pii": !pointers.is_empty(),
            "revealed": revealed,
            "route": stored.recipients.iter().map(|r| json!({"agency": r.agency.as_str(), "role": liaison_ledger_role(r.role)})).collect::<Vec<_>>(),
            "deliveries": stored.deliveries.iter().map(|d| json!({
                "recipient": d.recipient.as_str(), "state": d.state, "attempts": d.attempts,
                "dispatched_at": show_opt(d.dispatched_at), "acknowledged_at": show_opt(d.acknowledged_at),
                "last_error": d.last_error,
            })).collect::<Vec<_>>(),
            "entries": entries,
        }),
    )
}

fn liaison_ledger_role(role: liaison_core::RecipientRole) -> &'static str {
    match role {
        liaison_core::RecipientRole::To => "to",
        liaison_core::RecipientRole::Cc => "cc",
    }
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct DeadQuery {
    before: Option<u64>,
}

async fn deadletters(
    console: Console,
    State(gateway): State<Gateway>,
    Query(query): Query<DeadQuery>,
) -> Response {
    render_deadletters(&console, &gateway, query.before, None).await
}

async fn render_deadletters(
    console: &Console,
    gateway: &Gateway,
    before: Option<u64>,
    outcome: Option<serde_json::Value>,
) -> Response {
    const PAGE: i64 = 50;
    let (dead, rejections) = tokio::join!(
        gateway.ledger.dead_deliveries(200),
        gateway.ledger.rejections(before, PAGE)
    );
    let (dead, rejections) = match (dead, rejections) {
        (Ok(d), Ok(r)) => (d, r),
        (Err(e), _) | (_, Err(e)) => return console.unavailable(e),
    };
    let next = (rejections.len() as i64 == PAGE)
        .then(|| {
            rejections
                .last()
                .map(|e| format!("/console/deadletters?before={}", e.seq))
        })
        .flatten();
    let rejections: Vec<serde_json::Value> = rejections
        .iter()
        .map(|e| {
            json!({
                "seq": e.seq, "at": show(e.at), "code": e.detail["code"],
                "sender": e.agency.as_ref().map(|a| a.as_str()), "type": e.detail["type"],
                "errors": e.detail["errors"],
            })
        })
        .collect();
    let dead: Vec<serde_json::Value> = dead
        .iter()
        .map(|d| {
            json!({"message_id": d.message_id, "type": d.type_, "sender": d.sender,
                   "recipient": d.recipient, "attempts": d.attempts, "last_error": d.last_error})
        })
        .collect();
    console.render(
        "deadletters.html",
        json!({"dead": dead, "rejections": rejections, "next": next, "outcome": outcome}),
    )
}

#[derive(Debug, Deserialize)]
pub(crate) struct RedriveForm {
    message: Uuid,
}

async fn redrive(
    console: Console,
    State(gateway): State<Gateway>,
    headers: HeaderMap,
    uri: axum::http::Uri,
    Form(form): Form<RedriveForm>,
) -> Response {
    if !same_origin(&headers, &uri) {
        return console.error(StatusCode::FORBIDDEN, "cross-origin request refused");
    }
    let report = match crate::workers::redrive::redrive(
        &gateway.bus,
        &gateway.ledger,
        Some(form.message),
        Some(&console.admin),
    )
    .await
    {
        Ok(report) => report,
        Err(e) => return console.unavailable(e),
    };
    tracing::info!(
        message.id = %form.message,
        agency.code = %console.admin,
        sent = report.sent.len(),
        left = report.left,
        "dead letters redriven from the console"
    );
    let outcome = json!({
        "sent": report.sent.len(),
        "left": report.left,
        "unmatched": report.unmatched.iter().map(|(id, why)| format!("{} {why}", id.map(|i| i.to_string()).unwrap_or_default())).collect::<Vec<_>>(),
    });
    render_deadletters(&console, &gateway, None, Some(outcome)).await
}

#[derive(Debug, Default, Deserialize)]
pub(crate) struct LedgerQuery {
    seq: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
}

/// Checkpoints listed on the ledger page (the newest).
const CHECKPOINTS_SHOWN: usize = 200;

async fn ledger(
    console: Console,
    State(gateway): State<Gateway>,
    Query(query): Query<LedgerQuery>,
) -> Response {
    let ledger = &gateway.ledger;
    let mut checkpoints = match ledger.checkpoints().await {
        Ok(c) => c,
        Err(e) => return console.unavailable(e),
    };
    if checkpoints.len() > CHECKPOINTS_SHOWN {
        checkpoints.drain(..checkpoints.len() - CHECKPOINTS_SHOWN);
    }
    let listed: Vec<serde_json::Value> = checkpoints
        .iter()
        .map(|c| json!({"tree_size": c.tree_size, "signed_at": show(c.signed_at), "root": hex::encode(c.root_hash)}))
        .collect();
    let consistency = match (query.from, query.to) {
        (Some(from), Some(to)) => Some(consistency(&gateway, from, to).await),
        _ => None,
    };
    let seq = query
        .seq
        .as_deref()
        .and_then(|s| s.trim().parse::<u64>().ok());
    let (mut proof, mut pending) = (None, false);
    if let Some(seq) = seq {
        match ledger.entry_proof(seq).await {
            Ok(Some(Ok((checkpoint, p)))) => {
                let key = &gateway.checkpoint_key;
                let data = json!({
                    "seq": p.seq,
                    "entry": STANDARD.encode(&p.entry),
                    "leaf_hash": hex::encode(p.leaf_hash),
                    "leaf_index": p.leaf_index,
                    "tree_size": p.tree_size,
                    "audit_path": p.path.iter().map(hex::encode).collect::<Vec<_>>(),
                    "note": checkpoint.note,
                    "origin": key.origin(),
                    "public_key": STANDARD.encode(key.public_key()),
                });
                // Inside <script>: `<` escaped so that no text of an entry can close it.
                proof = Some(data.to_string().replace('<', "\\u003c"));
            }
            Ok(Some(Err(_))) => pending = true,
            Ok(None) => {
                return console.error(StatusCode::NOT_FOUND, format!("no entry {seq}"));
            }
            Err(e) => return console.unavailable(e),
        }
    }
    // The consistency form offers the oldest and the newest checkpoint unless chosen.
    let from = query.from.or(checkpoints.first().map(|c| c.tree_size));
    let to = query.to.or(checkpoints.last().map(|c| c.tree_size));
    let data = json!({
        "checkpoints": listed,
        "from": from, "to": to,
        "consistency": consistency,
        "seq": query.seq.unwrap_or_default(),
        "pending": pending,
        "public_key": gateway.checkpoint_key.vkey(),
    });
    console.render_value(
        StatusCode::OK,
        "ledger.html",
        minijinja::context! {
            proof => proof.map(Value::from_safe_string),
            ..Value::from_serialize(&data)
        },
    )
}

/// The consistency of the checkpoints at `from` and `to`, checked here: both notes'
/// signatures, then the proof between their roots.
async fn consistency(gateway: &Gateway, from: u64, to: u64) -> serde_json::Value {
    let (from, to) = (from.min(to), from.max(to));
    let result: Result<Vec<String>, String> = async {
        let at = |size: u64| async move {
            gateway
                .ledger
                .checkpoint_at(size)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("no checkpoint at {size}"))
        };
        let (old, new) = (at(from).await?, at(to).await?);
        for c in [&old, &new] {
            gateway
                .checkpoint_key
                .open(&c.note)
                .map_err(|e| e.to_string())?;
        }
        let proof = gateway
            .ledger
            .consistency_proof(from, to)
            .await
            .map_err(|e| e.to_string())?;
        liaison_core::merkle::verify_consistency(
            from,
            to,
            &old.root_hash,
            &new.root_hash,
            &proof.path,
        )
        .map_err(|e| format!("{e:?}"))?;
        Ok(proof.path.iter().map(hex::encode).collect())
    }
    .await;
    match result {
        Ok(path) => json!({"ok": true, "path": path}),
        Err(problem) => json!({"ok": false, "problem": problem, "path": []}),
    }
}

/// Identities and inputs the console never needs beyond a request, for the tests.
#[cfg(test)]
mod tests {
    use super::*;

    fn page(lang: Lang) -> Console {
        Console {
            admin: AgencyCode::new("cityhall").unwrap(),
            lang,
            remember: false,
        }
    }

    async fn body(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 22)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    /// Every template renders in both languages with representative data, and a render
    /// that asks for a label the catalogue lacks fails rather than showing nothing.
    #[tokio::test]
    async fn every_template_renders_in_both_languages() {
        let samples = [
            ("forbidden.html", json!({})),
            ("error.html", json!({"status": 404, "detail": "x"})),
            (
                "overview.html",
                json!({"rejections": [{"code": "payload_invalid", "count": 2}], "dead_count": 1,
                       "queues": [{"agency": "eco", "queue": "liaison.agency.eco", "present": true, "messages": 3, "consumers": 1}],
                       "checkpoint": {"tree_size": 9, "root": "ab", "signed_at": "x", "ok": true},
                       "verified_at": "x"}),
            ),
            (
                "search.html",
                json!({"q": {"caseref": "SD-1"}, "searched": true, "agencies": ["eco"], "types": ["pil.lead.v1"],
                       "hits": [{"id": "1", "seq": 1, "at": "x", "type": "t", "sender": "eco", "caseref": "SD-1"}],
                       "next": "/console/search?before=1"}),
            ),
            (
                "case.html",
                json!({"case": {"caseref": "SD-1", "state": "open", "closed": false,
                       "parties": [{"agency": "eco", "roles": ["sender"]}],
                       "threads": [{"flow": "lead", "state": "open", "closed": false}],
                       "clocks": [{"clock": "reply", "due": "x", "owed_by": ["police"], "overdue": true}]}}),
            ),
            (
                "message.html",
                json!({"m": {"id": "1", "seq": 1, "type": "t", "sender": "eco", "received_at": "x", "caseref": "SD-1"},
                       "envelope": "{}", "payload": "{}", "pii": true, "revealed": false,
                       "route": [{"agency": "police", "role": "to"}],
                       "deliveries": [{"recipient": "police", "state": "dead", "attempts": 2}],
                       "entries": [{"seq": 1, "at": "x", "kind": "message.accepted", "agency": "eco", "detail": "{}"}]}),
            ),
            (
                "deadletters.html",
                json!({"dead": [{"message_id": "1", "type": "t", "sender": "eco", "recipient": "police", "attempts": 2}],
                       "rejections": [{"seq": 2, "at": "x", "code": "payload_invalid", "sender": "eco", "type": "t",
                                       "errors": [{"pointer": "/data/x", "message": "m"}]}],
                       "outcome": {"sent": 1, "left": 0, "unmatched": []}}),
            ),
            (
                "ledger.html",
                json!({"checkpoints": [{"tree_size": 3, "signed_at": "x", "root": "ab"}], "from": 3, "to": 3,
                       "consistency": {"ok": true, "path": []}, "seq": "1", "pending": false,
                       "public_key": "k", "proof": "{}"}),
            ),
        ];
        assert_eq!(
            samples.len(),
            templates::TEMPLATES.len() - 1,
            "base.html aside"
        );
        for lang in [Lang::Zh, Lang::En] {
            for (template, data) in &samples {
                let response = page(lang).render(template, data.clone());
                assert_eq!(response.status(), StatusCode::OK, "{template} in {lang:?}");
                let html = body(response).await;
                let title = i18n::text(lang, "app.title").unwrap();
                assert!(html.contains(title), "{template} in {lang:?}: {html}");
            }
        }
        let zh = body(page(Lang::Zh).render("forbidden.html", json!({}))).await;
        let en = body(page(Lang::En).render("forbidden.html", json!({}))).await;
        assert!(zh.contains("无权访问") && en.contains("Forbidden"));
    }

    #[test]
    fn a_template_asking_for_a_missing_label_fails_to_render() {
        let mut env = minijinja::Environment::new();
        env.add_function("t", |key: &str| {
            i18n::text(Lang::En, key).map(str::to_owned).ok_or_else(|| {
                minijinja::Error::new(minijinja::ErrorKind::UndefinedError, key.to_owned())
            })
        });
        env.add_template("x.html", r#"{{ t("no.such.label") }}"#)
            .unwrap();
        assert!(env.get_template("x.html").unwrap().render(()).is_err());
    }

    #[test]
    fn cross_origin_posts_are_refused() {
        let uri = axum::http::Uri::from_static("/console/deadletters/redrive");
        let same_origin = |h: &HeaderMap| same_origin(h, &uri);
        let mut headers = HeaderMap::new();
        headers.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8443"));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://127.0.0.1:8443"),
        );
        assert!(same_origin(&headers));
        headers.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://evil.example"),
        );
        assert!(!same_origin(&headers));
        headers.remove(header::ORIGIN);
        headers.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(!same_origin(&headers));
    }

    #[test]
    fn instants_are_shown_in_china_standard_time() {
        let at = time::macros::datetime!(2026-12-01 16:30:00 UTC);
        assert_eq!(show(at), "2026-12-02 00:30:00");
        assert_eq!(encode("a b/案"), "a%20b%2F%E6%A1%88");
    }
}
