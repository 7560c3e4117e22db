//! Reading cases: one case with its threads, parties and messages, and lists of cases.
//!
//! The `cases` and `case_threads` rows are a projection; the messages of a case and what
//! each did to its thread are read from the `message.accepted` entries themselves, the
//! bytes the Merkle tree covers.

use std::collections::BTreeMap;

use liaison_core::detail::Accepted;
use liaison_core::{AgencyCode, Entry, Recipient, RecipientRole, ThreadStep};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::clocks::ClockView;
use crate::error::LedgerError;
use crate::sql::{seq_from_db, seq_to_db};

fn corrupt(what: &'static str) -> impl Fn(sqlx::Error) -> LedgerError {
    move |e| LedgerError::Corrupt(format!("{what}: {e}"))
}

/// What every view of a case starts with: its reference, its first matter's flow and
/// state, and when and by whom it was opened and last changed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseHead {
    pub caseref: String,
    /// The flow and state of the case's first matter (the thread that opened it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// Every thread is in a closed state.
    pub closed: bool,
    pub opened_seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub opened_at: OffsetDateTime,
    pub opened_by: AgencyCode,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// One case as its parties and administrators read it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseView {
    #[serde(flatten)]
    pub head: CaseHead,
    pub parties: Vec<CaseParty>,
    pub threads: Vec<CaseThread>,
    /// Every clock of its matters: running, answered or closed.
    pub clocks: Vec<ClockView>,
    pub messages: Vec<CaseMessage>,
}

/// An agency of the case, with every role it had in its messages: `sender`, `to`, `cc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaseParty {
    pub agency: AgencyCode,
    pub roles: Vec<&'static str>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaseThread {
    /// The id of the message that opened it.
    pub thread: Uuid,
    pub flow: String,
    pub state: String,
    pub closed: bool,
    pub opened_seq: u64,
    pub updated_seq: u64,
}

/// One accepted message of the case, in ledger order.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseMessage {
    pub id: Uuid,
    pub seq: u64,
    #[serde(rename = "type")]
    pub type_: String,
    pub sender: AgencyCode,
    pub recipients: Vec<Recipient>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub inreplyto: Option<Uuid>,
    /// What it did to its thread; absent for a message outside any thread.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub case: Option<ThreadStep>,
}

/// One row of a case list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CaseSummary {
    #[serde(flatten)]
    pub head: CaseHead,
    pub parties: Vec<AgencyCode>,
    /// Its running clocks (with `overdue_by` once past due).
    pub clocks: Vec<ClockView>,
}

/// Which cases to list. `party`: only cases with this agency among their parties.
#[derive(Clone, Debug, Default)]
pub struct CaseFilter {
    pub party: Option<AgencyCode>,
    /// The state of the case's first thread.
    pub state: Option<String>,
    /// The flow of the case's first thread.
    pub flow: Option<String>,
    pub opened_after: Option<OffsetDateTime>,
    /// Only cases with a running deadline past its due instant.
    pub overdue: bool,
    /// Only cases with a running deadline due before this instant.
    pub due_before: Option<OffsetDateTime>,
    /// Only cases opened before this seq: the `next` of the previous page.
    pub before_seq: Option<u64>,
    pub limit: i64,
}

/// A page of cases, newest first; `next` continues the list.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CasePage {
    pub cases: Vec<CaseSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<u64>,
}

/// A query of case summaries: the case row, its first thread's flow and state, and
/// whether every thread is closed; `$tail` holds the WHERE clause and the rest.
macro_rules! select_cases {
    ($tail:literal) => {
        concat!(
            "SELECT c.caseref, c.opened_seq, c.opened_at, c.opened_by, c.updated_at, \
                    c.parties, f.flow, f.state, \
                    NOT EXISTS (SELECT 1 FROM case_threads o \
                                WHERE o.caseref = c.caseref AND NOT o.closed) AS closed \
             FROM cases c LEFT JOIN LATERAL ( \
                 SELECT t.flow, t.state FROM case_threads t WHERE t.caseref = c.caseref \
                 ORDER BY t.opened_seq LIMIT 1) f ON true ",
            $tail
        )
    };
}

fn summary(row: &PgRow) -> Result<CaseSummary, LedgerError> {
    let read = corrupt("cases row");
    let agency = |code: String| {
        AgencyCode::new(code).map_err(|e| LedgerError::Corrupt(format!("case party: {e}")))
    };
    let parties: Vec<String> = row.try_get("parties").map_err(&read)?;
    Ok(CaseSummary {
        head: CaseHead {
            caseref: row.try_get("caseref").map_err(&read)?,
            flow: row.try_get("flow").map_err(&read)?,
            state: row.try_get("state").map_err(&read)?,
            closed: row.try_get("closed").map_err(&read)?,
            opened_seq: seq_from_db(row.try_get("opened_seq").map_err(&read)?)?,
            opened_at: row.try_get("opened_at").map_err(&read)?,
            opened_by: agency(row.try_get("opened_by").map_err(&read)?)?,
            updated_at: row.try_get("updated_at").map_err(&read)?,
        },
        parties: parties.into_iter().map(agency).collect::<Result<_, _>>()?,
        clocks: Vec::new(),
    })
}

pub(crate) async fn case(
    pool: &PgPool,
    caseref: &str,
    now: OffsetDateTime,
) -> Result<Option<CaseView>, LedgerError> {
    let Some(row) = sqlx::query(select_cases!("WHERE c.caseref = $1"))
        .bind(caseref)
        .fetch_optional(pool)
        .await
        .map_err(LedgerError::query("reading a case"))?
    else {
        return Ok(None);
    };
    let summary = summary(&row)?;

    let read = corrupt("case_threads row");
    let threads = sqlx::query(
        "SELECT thread, flow, state, closed, opened_seq, updated_seq FROM case_threads \
         WHERE caseref = $1 ORDER BY opened_seq",
    )
    .bind(caseref)
    .fetch_all(pool)
    .await
    .map_err(LedgerError::query("reading a case's threads"))?
    .iter()
    .map(|row| {
        Ok(CaseThread {
            thread: row.try_get("thread").map_err(&read)?,
            flow: row.try_get("flow").map_err(&read)?,
            state: row.try_get("state").map_err(&read)?,
            closed: row.try_get("closed").map_err(&read)?,
            opened_seq: seq_from_db(row.try_get("opened_seq").map_err(&read)?)?,
            updated_seq: seq_from_db(row.try_get("updated_seq").map_err(&read)?)?,
        })
    })
    .collect::<Result<Vec<_>, LedgerError>>()?;
    let clocks = crate::clocks::of_cases(pool, &[caseref.to_owned()], false, now).await?;

    let read = corrupt("ledger entry");
    let mut messages = Vec::new();
    let mut roles: BTreeMap<AgencyCode, Vec<&'static str>> = BTreeMap::new();
    let rows = sqlx::query(
        "SELECT entry FROM ledger_entries WHERE caseref = $1 AND kind = 'message.accepted' \
         ORDER BY seq",
    )
    .bind(caseref)
    .fetch_all(pool)
    .await
    .map_err(LedgerError::query("reading a case's messages"))?;
    for row in &rows {
        let bytes: Vec<u8> = row.try_get("entry").map_err(&read)?;
        let entry = Entry::from_canonical(&bytes)
            .map_err(|e| LedgerError::Corrupt(format!("a case entry is not canonical: {e}")))?;
        let message = case_message(&entry)?;
        let mut add = |agency: &AgencyCode, role: &'static str| {
            let list = roles.entry(agency.clone()).or_default();
            if !list.contains(&role) {
                list.push(role);
            }
        };
        add(&message.sender, "sender");
        for recipient in &message.recipients {
            add(
                &recipient.agency,
                match recipient.role {
                    RecipientRole::To => "to",
                    RecipientRole::Cc => "cc",
                },
            );
        }
        messages.push(message);
    }
    Ok(Some(CaseView {
        head: summary.head,
        parties: roles
            .into_iter()
            .map(|(agency, roles)| CaseParty { agency, roles })
            .collect(),
        threads,
        clocks,
        messages,
    }))
}

/// A case's message as its accepted entry records it.
pub(crate) fn case_message(entry: &Entry) -> Result<CaseMessage, LedgerError> {
    case_message_of(entry, accepted_detail(entry)?)
}

/// The typed detail of an accepted entry.
pub(crate) fn accepted_detail(entry: &Entry) -> Result<Accepted, LedgerError> {
    let bad = |why: String| LedgerError::Corrupt(format!("entry {}: {why}", entry.seq));
    entry
        .accepted()
        .ok_or_else(|| bad("not an acceptance".into()))?
        .map_err(|e| bad(format!("unreadable detail: {e}")))
}

/// A case's message from its entry and the entry's detail, read once.
pub(crate) fn case_message_of(
    entry: &Entry,
    accepted: Accepted,
) -> Result<CaseMessage, LedgerError> {
    let bad = |why: String| LedgerError::Corrupt(format!("entry {}: {why}", entry.seq));
    Ok(CaseMessage {
        id: entry
            .message
            .ok_or_else(|| bad("names no message".into()))?,
        seq: entry.seq,
        type_: accepted.type_,
        sender: entry
            .agency
            .clone()
            .ok_or_else(|| bad("names no sender".into()))?,
        recipients: accepted.recipients,
        at: entry.at,
        inreplyto: accepted.inreplyto,
        case: accepted.case,
    })
}

pub(crate) async fn list(
    pool: &PgPool,
    filter: &CaseFilter,
    now: OffsetDateTime,
) -> Result<CasePage, LedgerError> {
    let limit = filter.limit.clamp(1, 1000);
    let before = filter.before_seq.map(seq_to_db).transpose()?;
    let rows = sqlx::query(select_cases!(
        "WHERE ($1::text IS NULL OR $1 = ANY(c.parties)) \
           AND ($2::text IS NULL OR f.state = $2) \
           AND ($3::text IS NULL OR f.flow = $3) \
           AND ($4::timestamptz IS NULL OR c.opened_at > $4) \
           AND ($5::bigint IS NULL OR c.opened_seq < $5) \
           AND ($7::timestamptz IS NULL OR EXISTS (SELECT 1 FROM case_clocks k \
                WHERE k.caseref = c.caseref AND k.stopped_seq IS NULL \
                  AND k.kind = 'deadline' AND k.due_at < $7)) \
         ORDER BY c.opened_seq DESC LIMIT $6"
    ))
    .bind(filter.party.as_ref().map(AgencyCode::as_str))
    .bind(filter.state.as_deref())
    .bind(filter.flow.as_deref())
    .bind(filter.opened_after)
    .bind(before)
    .bind(limit + 1)
    .bind(clocks_due_before(filter, now))
    .fetch_all(pool)
    .await
    .map_err(LedgerError::query("listing cases"))?;
    let mut cases = rows.iter().map(summary).collect::<Result<Vec<_>, _>>()?;
    let next = if cases.len() as i64 > limit {
        cases.truncate(limit as usize);
        cases.last().map(|c| c.head.opened_seq)
    } else {
        None
    };
    let caserefs: Vec<String> = cases.iter().map(|c| c.head.caseref.clone()).collect();
    for clock in crate::clocks::of_cases(pool, &caserefs, true, now).await? {
        if let Some(case) = cases.iter_mut().find(|c| c.head.caseref == clock.caseref) {
            case.clocks.push(clock);
        }
    }
    Ok(CasePage { cases, next })
}

/// The instant a listed case must have a running deadline due before: `now` for overdue
/// cases, `due_before`, or the earlier of both.
fn clocks_due_before(filter: &CaseFilter, now: OffsetDateTime) -> Option<OffsetDateTime> {
    match (filter.overdue.then_some(now), filter.due_before) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}
