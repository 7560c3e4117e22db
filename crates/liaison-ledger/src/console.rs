//! Queries for the administrators' web console: the overview's aggregates, message search
//! with keyset pagination, and the lists of rejections and dead deliveries.
//!
//! They read the same tables as the API (entries, messages, outbox, the case projection);
//! there is no second store. Each is planned for its arguments and reaches its rows
//! through an index of `0015_console.sql`, so a page stays fast on a large ledger.

use liaison_core::{AgencyCode, Entry};
use sqlx::Row;
use time::{Date, OffsetDateTime};
use uuid::Uuid;

use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::sql::{agency_from_db, seq_from_db, seq_to_db};

fn corrupt(what: &'static str) -> impl Fn(sqlx::Error) -> LedgerError {
    move |e| LedgerError::Corrupt(format!("{what}: {e}"))
}

/// Messages received on one day (China Standard Time) of one type.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DailyCount {
    pub day: Date,
    pub type_: String,
    pub messages: u64,
}

/// How many cases an agency is a party of with a matter still open, and how many of its
/// own answers are overdue (a running deadline it owes, past due).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AgencyCases {
    pub agency: String,
    pub open: u64,
    pub overdue: u64,
}

/// One message as search lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageHit {
    pub id: Uuid,
    pub seq: u64,
    pub sender: AgencyCode,
    pub type_: String,
    pub caseref: Option<String>,
    pub received_at: OffsetDateTime,
}

/// What to search messages by; every given criterion must hold.
#[derive(Clone, Debug, Default)]
pub struct MessageSearch {
    pub id: Option<Uuid>,
    pub caseref: Option<String>,
    pub sender: Option<String>,
    pub type_: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    /// Only messages before this seq (the `next` of the previous page).
    pub before_seq: Option<u64>,
    pub limit: i64,
}

/// A page of hits, newest first; `next` continues it.
#[derive(Clone, Debug, Default)]
pub struct MessagePage {
    pub hits: Vec<MessageHit>,
    pub next: Option<u64>,
}

/// A delivery in the dead-letter state, with its message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadDelivery {
    pub delivery_id: i64,
    pub message_id: Uuid,
    pub recipient: String,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub sender: String,
    pub type_: String,
    pub caseref: Option<String>,
}

/// The UTC offset of China Standard Time, in which the console counts days.
pub const CST_SECONDS: i32 = 8 * 3600;

impl Ledger {
    /// Messages per day and type received at or after `since`.
    pub async fn messages_per_day(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<DailyCount>, LedgerError> {
        let rows = sqlx::query(
            "SELECT ((received_at AT TIME ZONE 'UTC') + interval '8 hours')::date AS day, \
                    type, count(*) AS n \
             FROM messages WHERE received_at >= $1 GROUP BY 1, 2 ORDER BY 1, 2",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("counting messages per day"))?;
        let read = corrupt("daily count");
        rows.iter()
            .map(|row| {
                Ok(DailyCount {
                    day: row.try_get("day").map_err(&read)?,
                    type_: row.try_get("type").map_err(&read)?,
                    messages: row.try_get::<i64, _>("n").map_err(&read)?.max(0) as u64,
                })
            })
            .collect()
    }

    /// Per agency: the cases it is a party of with an open matter, and the cases where it
    /// owes an answer past its due instant `now`.
    pub async fn cases_per_agency(
        &self,
        now: OffsetDateTime,
    ) -> Result<Vec<AgencyCases>, LedgerError> {
        // Two plain scans joined here: every open case is counted anyway, and a join in
        // SQL is planned from statistics that lag behind a ledger that grows in bulk
        // (it then probes `cases` once per open matter, several times slower).
        let open_cases: std::collections::HashSet<String> =
            sqlx::query_scalar("SELECT DISTINCT caseref FROM case_threads WHERE NOT closed")
                .fetch_all(self.pool())
                .await
                .map_err(LedgerError::query("reading open matters"))?
                .into_iter()
                .collect();
        let parties = sqlx::query("SELECT caseref, parties FROM cases")
            .fetch_all(self.pool())
            .await
            .map_err(LedgerError::query("reading case parties"))?;
        let mut open_per_agency = std::collections::BTreeMap::<String, u64>::new();
        for row in &parties {
            let caseref: String = row.try_get("caseref").map_err(corrupt("case"))?;
            if !open_cases.contains(&caseref) {
                continue;
            }
            let agencies: Vec<String> = row.try_get("parties").map_err(corrupt("case"))?;
            for agency in agencies {
                *open_per_agency.entry(agency).or_default() += 1;
            }
        }
        let overdue = sqlx::query(
            "SELECT o.agency, count(DISTINCT k.caseref) AS n \
             FROM case_clocks k CROSS JOIN LATERAL unnest(k.owed_by) AS o(agency) \
             WHERE k.stopped_seq IS NULL AND k.due_at < $1 \
             GROUP BY o.agency",
        )
        .bind(now)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("counting overdue cases"))?;
        let read = corrupt("case count");
        let mut by_agency = std::collections::BTreeMap::<String, AgencyCases>::new();
        for (agency, open) in open_per_agency {
            by_agency.insert(
                agency.clone(),
                AgencyCases {
                    agency,
                    open,
                    overdue: 0,
                },
            );
        }
        for row in overdue.iter() {
            let agency: String = row.try_get("agency").map_err(&read)?;
            let n = row.try_get::<i64, _>("n").map_err(&read)?.max(0) as u64;
            by_agency
                .entry(agency.clone())
                .or_insert_with(|| AgencyCases {
                    agency,
                    ..AgencyCases::default()
                })
                .overdue = n;
        }
        Ok(by_agency.into_values().collect())
    }

    /// Rejections recorded at or after `since`, counted by code, most frequent first.
    pub async fn rejections_by_code(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<(String, u64)>, LedgerError> {
        let rows = sqlx::query(
            "SELECT convert_from(entry, 'UTF8')::jsonb #>> '{detail,code}' AS code, count(*) AS n \
             FROM ledger_entries \
             WHERE kind = 'message.rejected' AND recorded_at >= $1 \
             GROUP BY 1 ORDER BY 2 DESC, 1",
        )
        .bind(since)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("counting rejections"))?;
        let read = corrupt("rejection count");
        rows.iter()
            .map(|row| {
                Ok((
                    row.try_get::<Option<String>, _>("code")
                        .map_err(&read)?
                        .unwrap_or_default(),
                    row.try_get::<i64, _>("n").map_err(&read)?.max(0) as u64,
                ))
            })
            .collect()
    }

    /// The newest rejection entries, before `before_seq` when given.
    pub async fn rejections(
        &self,
        before_seq: Option<u64>,
        limit: i64,
    ) -> Result<Vec<Entry>, LedgerError> {
        let before = before_seq.map(seq_to_db).transpose()?;
        let rows = sqlx::query(
            "SELECT seq, entry FROM ledger_entries \
             WHERE kind = 'message.rejected' AND ($1::bigint IS NULL OR seq < $1) \
             ORDER BY seq DESC LIMIT $2",
        )
        .bind(before)
        .bind(limit.clamp(1, 500))
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("listing rejections"))?;
        rows.iter()
            .map(|row| {
                let bytes: Vec<u8> = row.try_get("entry").map_err(corrupt("rejection"))?;
                Entry::from_canonical(&bytes)
                    .map_err(|e| LedgerError::Corrupt(format!("a rejection entry: {e}")))
            })
            .collect()
    }

    /// How many deliveries are dead-lettered and not redriven.
    pub async fn dead_count(&self) -> Result<u64, LedgerError> {
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox WHERE state = 'dead'")
            .fetch_one(self.pool())
            .await
            .map_err(LedgerError::query("counting dead deliveries"))?;
        Ok(n.max(0) as u64)
    }

    /// The newest dead-lettered deliveries with their messages.
    pub async fn dead_deliveries(&self, limit: i64) -> Result<Vec<DeadDelivery>, LedgerError> {
        let rows = sqlx::query(
            "SELECT o.delivery_id, o.message_id, o.recipient, o.attempts, o.last_error, \
                    m.sender, m.type, m.caseref \
             FROM outbox o JOIN messages m ON m.id = o.message_id \
             WHERE o.state = 'dead' ORDER BY o.delivery_id DESC LIMIT $1",
        )
        .bind(limit.clamp(1, 500))
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("listing dead deliveries"))?;
        let read = corrupt("dead delivery");
        rows.iter()
            .map(|row| {
                Ok(DeadDelivery {
                    delivery_id: row.try_get("delivery_id").map_err(&read)?,
                    message_id: row.try_get("message_id").map_err(&read)?,
                    recipient: row.try_get("recipient").map_err(&read)?,
                    attempts: row.try_get("attempts").map_err(&read)?,
                    last_error: row.try_get("last_error").map_err(&read)?,
                    sender: row.try_get("sender").map_err(&read)?,
                    type_: row.try_get("type").map_err(&read)?,
                    caseref: row.try_get("caseref").map_err(&read)?,
                })
            })
            .collect()
    }

    /// Messages matching `search`, newest first, one page.
    pub async fn search_messages(
        &self,
        search: &MessageSearch,
    ) -> Result<MessagePage, LedgerError> {
        let limit = search.limit.clamp(1, 200);
        let before = search.before_seq.map(seq_to_db).transpose()?;
        let rows = sqlx::query(
            "SELECT id, seq, sender, type, caseref, received_at FROM messages \
             WHERE ($1::uuid IS NULL OR id = $1) \
               AND ($2::text IS NULL OR caseref = $2) \
               AND ($3::text IS NULL OR sender = $3) \
               AND ($4::text IS NULL OR type = $4) \
               AND ($5::timestamptz IS NULL OR received_at >= $5) \
               AND ($6::timestamptz IS NULL OR received_at < $6) \
               AND ($7::bigint IS NULL OR seq < $7) \
             ORDER BY seq DESC LIMIT $8",
        )
        .bind(search.id)
        .bind(search.caseref.as_deref())
        .bind(search.sender.as_deref())
        .bind(search.type_.as_deref())
        .bind(search.from)
        .bind(search.to)
        .bind(before)
        .bind(limit + 1)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("searching messages"))?;
        let read = corrupt("message hit");
        let mut hits = rows
            .iter()
            .map(|row| {
                Ok(MessageHit {
                    id: row.try_get("id").map_err(&read)?,
                    seq: seq_from_db(row.try_get("seq").map_err(&read)?)?,
                    sender: agency_from_db(row.try_get("sender").map_err(&read)?)?,
                    type_: row.try_get("type").map_err(&read)?,
                    caseref: row.try_get("caseref").map_err(&read)?,
                    received_at: row.try_get("received_at").map_err(&read)?,
                })
            })
            .collect::<Result<Vec<_>, LedgerError>>()?;
        let next = if hits.len() as i64 > limit {
            hits.truncate(limit as usize);
            hits.last().map(|h| h.seq)
        } else {
            None
        };
        Ok(MessagePage { hits, next })
    }
}
