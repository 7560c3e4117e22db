//! Reading clocks: the running clocks the deadline watcher has notices for, and clocks as
//! the case views and overdue lists show them. The rows are the `case_clocks` projection
//! the committer keeps from `detail.clocks` of accepted entries.

use liaison_core::clocks::{ClockKind, iso_duration};
use serde::Serialize;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::LedgerError;
use crate::sql::seq_from_db;

fn corrupt(e: sqlx::Error) -> LedgerError {
    LedgerError::Corrupt(format!("case_clocks row: {e}"))
}

/// One clock of one matter, as views show it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ClockView {
    pub caseref: String,
    /// The thread (the id of the message that opened the matter).
    pub thread: Uuid,
    pub clock: String,
    pub flow: String,
    /// `deadline` (an answer is owed) or `window` (a period to act in).
    pub kind: ClockKind,
    /// The message that started it.
    pub origin: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    /// When it runs out; absent when it cannot be computed (`due_error`).
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub due: Option<OffsetDateTime>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub due_error: Option<String>,
    /// Who owes the answer (the addressees of the starting message): the late party once
    /// it is overdue.
    pub owed_by: Vec<String>,
    /// `running`, `answered` or `closed`.
    pub status: String,
    /// How late, for a running deadline past its due instant (ISO 8601 duration).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub overdue_by: Option<String>,
    /// The watcher's notices recorded for it (`reminder-P1D`, `overdue`, …).
    pub notices: Vec<String>,
}

/// A running deadline with a notice that may be due: what the watcher needs to send it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingClock {
    pub caseref: String,
    pub thread: Uuid,
    pub flow: String,
    pub clock: String,
    pub origin: Uuid,
    /// The sender of the starting message: the watcher's notices go out in its name.
    pub origin_sender: String,
    pub due: OffsetDateTime,
    pub owed_by: Vec<String>,
    pub notices: Vec<String>,
}

pub(crate) const CLOCK_COLUMNS: &str = "k.caseref, k.thread, k.clock, k.flow, k.kind, k.origin, \
     k.started_at, k.due_at, k.due_error, k.owed_by, k.stopped_seq, k.stopped_reason, \
     k.stages_sent";

pub(crate) fn clock_view(row: &PgRow, now: OffsetDateTime) -> Result<ClockView, LedgerError> {
    let kind: String = row.try_get("kind").map_err(corrupt)?;
    let kind = ClockKind::parse(&kind)
        .ok_or_else(|| LedgerError::Corrupt(format!("case_clocks kind {kind:?}")))?;
    let due: Option<OffsetDateTime> = row.try_get("due_at").map_err(corrupt)?;
    let stopped: Option<i64> = row.try_get("stopped_seq").map_err(corrupt)?;
    if let Some(seq) = stopped {
        seq_from_db(seq)?;
    }
    let reason: Option<String> = row.try_get("stopped_reason").map_err(corrupt)?;
    let running = stopped.is_none();
    Ok(ClockView {
        caseref: row.try_get("caseref").map_err(corrupt)?,
        thread: row.try_get("thread").map_err(corrupt)?,
        clock: row.try_get("clock").map_err(corrupt)?,
        flow: row.try_get("flow").map_err(corrupt)?,
        kind,
        origin: row.try_get("origin").map_err(corrupt)?,
        started_at: row.try_get("started_at").map_err(corrupt)?,
        due,
        due_error: row.try_get("due_error").map_err(corrupt)?,
        owed_by: row.try_get("owed_by").map_err(corrupt)?,
        status: if running {
            "running".into()
        } else {
            reason.unwrap_or_else(|| "stopped".into())
        },
        overdue_by: due
            .filter(|due| running && kind == ClockKind::Deadline && *due <= now)
            .map(|due| iso_duration(now - due)),
        notices: row.try_get("stages_sent").map_err(corrupt)?,
    })
}

/// Every clock of the cases `caserefs`, in start order.
pub(crate) async fn of_cases(
    pool: &PgPool,
    caserefs: &[String],
    running_only: bool,
    now: OffsetDateTime,
) -> Result<Vec<ClockView>, LedgerError> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {CLOCK_COLUMNS} FROM case_clocks k WHERE k.caseref = ANY($1) \
           AND (NOT $2 OR k.stopped_seq IS NULL) \
         ORDER BY k.started_seq, k.clock"
    )))
    .bind(caserefs)
    .bind(running_only)
    .fetch_all(pool)
    .await
    .map_err(LedgerError::query("reading clocks"))?;
    rows.iter().map(|row| clock_view(row, now)).collect()
}

/// Running deadlines due before `until` that still have notices to send: `stages` gives,
/// per flow and clock name, how many notices it sends in all. Earliest due first.
pub(crate) async fn pending(
    pool: &PgPool,
    until: OffsetDateTime,
    stages: &[(String, String, i32)],
    limit: i64,
) -> Result<Vec<PendingClock>, LedgerError> {
    let flows: Vec<&str> = stages.iter().map(|(f, _, _)| f.as_str()).collect();
    let names: Vec<&str> = stages.iter().map(|(_, n, _)| n.as_str()).collect();
    let counts: Vec<i32> = stages.iter().map(|(_, _, c)| *c).collect();
    let rows = sqlx::query(
        "SELECT k.caseref, k.thread, k.flow, k.clock, k.origin, m.sender, k.due_at, \
                k.owed_by, k.stages_sent \
         FROM case_clocks k \
         JOIN UNNEST($2::text[], $3::text[], $4::int[]) AS s(flow, clock, stages) \
              ON s.flow = k.flow AND s.clock = k.clock \
         JOIN messages m ON m.id = k.origin \
         WHERE k.stopped_seq IS NULL AND k.kind = 'deadline' AND k.due_at IS NOT NULL \
           AND k.due_at <= $1 AND cardinality(k.stages_sent) < s.stages \
         ORDER BY k.due_at, k.thread, k.clock LIMIT $5",
    )
    .bind(until)
    .bind(flows)
    .bind(names)
    .bind(counts)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(LedgerError::query("reading the clocks to notify"))?;
    rows.iter()
        .map(|row| {
            Ok(PendingClock {
                caseref: row.try_get("caseref").map_err(corrupt)?,
                thread: row.try_get("thread").map_err(corrupt)?,
                flow: row.try_get("flow").map_err(corrupt)?,
                clock: row.try_get("clock").map_err(corrupt)?,
                origin: row.try_get("origin").map_err(corrupt)?,
                origin_sender: row.try_get("sender").map_err(corrupt)?,
                due: row.try_get("due_at").map_err(corrupt)?,
                owed_by: row.try_get("owed_by").map_err(corrupt)?,
                notices: row.try_get("stages_sent").map_err(corrupt)?,
            })
        })
        .collect()
}
