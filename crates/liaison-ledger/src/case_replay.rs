//! Rebuilding the case projection from ledger entries alone, and comparing it with the
//! live tables: `liaison cases replay`.
//!
//! Every `message.accepted` entry records its case reference, what it did to its thread
//! (`detail.case`) and whether liaison assigned the reference (`detail.caseref_assigned`);
//! folding them in seq order gives every case, thread and counter. The live tables are a
//! projection the committer keeps; any difference is named and can be repaired with
//! `--rebuild`, which replaces them with the fold.

use std::collections::{BTreeMap, BTreeSet};

use liaison_core::clocks::{ClockEvents, StageRef};
use liaison_core::{Entry, EntryKind};
use serde::Serialize;
use sqlx::{PgConnection, PgPool, Row};
use uuid::Uuid;

use crate::cases::{accepted_detail, case_message_of};
use crate::committer::{CaseMessageRow, CaseRow, CaseWrites, ClockRow, SEQUENCE_LOCK, ThreadRow};
use crate::error::LedgerError;
use crate::sql::seq_from_db;

/// The case projection as the entries make it.
#[derive(Debug, Default)]
pub struct CaseReplay {
    entries: u64,
    cases: BTreeMap<String, CaseRow>,
    threads: BTreeMap<Uuid, ThreadRow>,
    messages: BTreeMap<Uuid, CaseMessageRow>,
    counters: BTreeMap<(String, i32), i64>,
    clocks: BTreeMap<(Uuid, String), ClockRow>,
}

/// One difference between the fold of the entries and the live tables.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CaseDifference {
    pub caseref: String,
    /// What differs: `case`, `thread <id>`, `message <id>`, `counter PREFIX-YEAR`,
    /// `clock <name> of thread <id>`.
    pub what: String,
    pub expected: String,
    pub found: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct CaseReplayReport {
    pub entries: u64,
    pub cases: usize,
    pub threads: usize,
    /// Every thread's state as the entries leave it: (caseref, flow, state, closed).
    pub states: Vec<(String, String, String, bool)>,
    pub differences: Vec<CaseDifference>,
}

impl CaseReplay {
    /// Folds one entry, given as its canonical bytes, in seq order.
    pub fn entry(&mut self, bytes: &[u8]) -> Result<(), String> {
        let entry = Entry::from_canonical(bytes).map_err(|e| format!("an entry: {e}"))?;
        self.entries += 1;
        if entry.kind != EntryKind::MessageAccepted {
            return Ok(());
        }
        let Some(caseref) = entry.caseref.clone() else {
            return Ok(());
        };
        let accepted = accepted_detail(&entry).map_err(|e| e.to_string())?;
        let (clocks, clock_stage, assigned) = (
            accepted.clocks.clone(),
            accepted.clock_stage.clone(),
            accepted.caseref_assigned,
        );
        let message = case_message_of(&entry, accepted).map_err(|e| e.to_string())?;
        let case = self
            .cases
            .entry(caseref.clone())
            .or_insert_with(|| CaseRow {
                caseref: caseref.clone(),
                opened_seq: entry.seq,
                opened_at: entry.at,
                opened_by: message.sender.as_str().to_owned(),
                updated_seq: entry.seq,
                updated_at: entry.at,
                parties: BTreeSet::new(),
            });
        case.parties.insert(message.sender.as_str().to_owned());
        case.parties.extend(
            message
                .recipients
                .iter()
                .map(|r| r.agency.as_str().to_owned()),
        );
        case.updated_seq = entry.seq;
        case.updated_at = entry.at;
        if let Some(step) = &message.case {
            let thread = self
                .threads
                .entry(step.thread)
                .or_insert_with(|| ThreadRow {
                    thread: step.thread,
                    caseref: caseref.clone(),
                    flow: step.flow.clone(),
                    state: step.to.clone(),
                    closed: step.closed,
                    opened_seq: entry.seq,
                    updated_seq: entry.seq,
                });
            thread.state = step.to.clone();
            thread.closed = step.closed;
            thread.updated_seq = entry.seq;
        }
        self.messages.insert(
            message.id,
            CaseMessageRow {
                message_id: message.id,
                caseref: caseref.clone(),
                thread: message.case.as_ref().map(|s| s.thread),
                seq: entry.seq,
            },
        );
        self.fold_clocks(
            &entry,
            &caseref,
            message.case.as_ref().map(|s| s.flow.as_str()),
            clocks,
            clock_stage,
        )?;
        if assigned {
            let (prefix, year, number) = assigned_parts(&caseref)
                .ok_or_else(|| format!("entry {}: assigned caseref {caseref:?}", entry.seq))?;
            let last = self.counters.entry((prefix, year)).or_insert(0);
            *last = (*last).max(number);
        }
        Ok(())
    }

    /// `detail.clocks` and `detail.clock_stage` of an accepted entry of `caseref`.
    fn fold_clocks(
        &mut self,
        entry: &Entry,
        caseref: &str,
        flow: Option<&str>,
        events: ClockEvents,
        stage: Option<StageRef>,
    ) -> Result<(), String> {
        for stop in events.stopped {
            if let Some(clock) = self.clocks.get_mut(&(stop.thread, stop.clock)) {
                clock.stopped_seq = Some(entry.seq);
                clock.stopped_reason = Some(stop.reason.as_str().to_owned());
            }
        }
        for start in events.started {
            let origin = entry
                .message
                .ok_or_else(|| format!("entry {}: a clock start without a message", entry.seq))?;
            self.clocks.insert(
                (start.thread, start.clock.clone()),
                ClockRow {
                    thread: start.thread,
                    clock: start.clock,
                    caseref: caseref.to_owned(),
                    flow: flow.unwrap_or_default().to_owned(),
                    kind: start.kind,
                    origin,
                    started_seq: entry.seq,
                    started_at: start.started_at,
                    due_at: start.due,
                    due_error: start.due_error,
                    owed_by: start.owed_by,
                    stopped_seq: None,
                    stopped_reason: None,
                    stages_sent: Vec::new(),
                },
            );
        }
        if let Some(stage) = stage
            && let Some(clock) = self.clocks.get_mut(&(stage.thread, stage.clock))
            && !clock.stages_sent.contains(&stage.key)
        {
            clock.stages_sent.push(stage.key);
        }
        Ok(())
    }

    fn report(&self, differences: Vec<CaseDifference>) -> CaseReplayReport {
        CaseReplayReport {
            entries: self.entries,
            cases: self.cases.len(),
            threads: self.threads.len(),
            states: self
                .threads
                .values()
                .map(|t| (t.caseref.clone(), t.flow.clone(), t.state.clone(), t.closed))
                .collect(),
            differences,
        }
    }

    fn writes(&self) -> CaseWrites {
        CaseWrites {
            cases: self.cases.values().cloned().collect(),
            threads: self.threads.values().cloned().collect(),
            messages: self.messages.values().cloned().collect(),
            counters: self
                .counters
                .iter()
                .map(|((prefix, year), last)| (prefix.clone(), *year, *last))
                .collect(),
            clocks: self.clocks.values().cloned().collect(),
        }
    }

    /// Compares the fold with the live tables of `pool`.
    pub async fn compare(&self, pool: &PgPool) -> Result<CaseReplayReport, LedgerError> {
        let mut conn = pool
            .acquire()
            .await
            .map_err(LedgerError::query("connecting to compare cases"))?;
        let live = read_live(&mut conn).await?;
        Ok(self.report(self.differences(&live)))
    }

    fn differences(&self, live: &CaseReplay) -> Vec<CaseDifference> {
        let mut found = Vec::new();
        let describe_case = |c: &CaseRow| {
            format!(
                "opened at seq {} by {}, last seq {}, parties {}",
                c.opened_seq,
                c.opened_by,
                c.updated_seq,
                c.parties.iter().cloned().collect::<Vec<_>>().join(",")
            )
        };
        let describe_thread = |t: &ThreadRow| {
            format!(
                "{} {}{} (seq {}..{})",
                t.flow,
                t.state,
                if t.closed { " closed" } else { "" },
                t.opened_seq,
                t.updated_seq
            )
        };
        let missing = || "nothing".to_owned();
        diff(
            &self.cases,
            &live.cases,
            |c| c.caseref.clone(),
            |_| "case".to_owned(),
            describe_case,
            &missing,
            &mut found,
        );
        diff(
            &self.threads,
            &live.threads,
            |t| t.caseref.clone(),
            |t| format!("thread {}", t.thread),
            describe_thread,
            &missing,
            &mut found,
        );
        diff(
            &self.messages,
            &live.messages,
            |m| m.caseref.clone(),
            |m| format!("message {}", m.message_id),
            |m| match m.thread {
                Some(thread) => format!("seq {} in thread {thread}", m.seq),
                None => format!("seq {}", m.seq),
            },
            &missing,
            &mut found,
        );
        let counters =
            |c: &BTreeMap<(String, i32), i64>| -> BTreeMap<(String, i32), (String, i64)> {
                c.iter()
                    .map(|(k, v)| (k.clone(), (format!("{}-{}", k.0, k.1), *v)))
                    .collect()
            };
        diff(
            &counters(&self.counters),
            &counters(&live.counters),
            |(name, _)| name.clone(),
            |(name, _)| format!("counter {name}"),
            |(_, last)| format!("last {last}"),
            &missing,
            &mut found,
        );
        let describe_clock = |c: &ClockRow| {
            format!(
                "started at seq {} by message {}, due {}, owed by {}, {}, notices [{}]",
                c.started_seq,
                c.origin,
                c.due_at.map_or_else(
                    || c.due_error.clone().unwrap_or_else(|| "unknown".into()),
                    |d| d.to_string()
                ),
                c.owed_by.join(","),
                match (c.stopped_seq, &c.stopped_reason) {
                    (Some(seq), Some(reason)) => format!("stopped ({reason}) at seq {seq}"),
                    _ => "running".into(),
                },
                c.stages_sent.join(",")
            )
        };
        diff(
            &self.clocks,
            &live.clocks,
            |c| c.caseref.clone(),
            |c| format!("clock {} of thread {}", c.clock, c.thread),
            describe_clock,
            &missing,
            &mut found,
        );
        found
    }
}

/// Compares two keyed sets of rows, naming every row missing, extra or different.
fn diff<K: Ord, V: PartialEq>(
    expected: &BTreeMap<K, V>,
    live: &BTreeMap<K, V>,
    caseref: impl Fn(&V) -> String,
    what: impl Fn(&V) -> String,
    describe: impl Fn(&V) -> String,
    missing: &dyn Fn() -> String,
    found: &mut Vec<CaseDifference>,
) {
    for (key, want) in expected {
        match live.get(key) {
            Some(have) if have == want => {}
            have => found.push(CaseDifference {
                caseref: caseref(want),
                what: what(want),
                expected: describe(want),
                found: have.map_or_else(missing, &describe),
            }),
        }
    }
    for (key, have) in live {
        if !expected.contains_key(key) {
            found.push(CaseDifference {
                caseref: caseref(have),
                what: what(have),
                expected: missing(),
                found: describe(have),
            });
        }
    }
}

/// `ECO-2026-000123` → ("ECO", 2026, 123).
fn assigned_parts(caseref: &str) -> Option<(String, i32, i64)> {
    let mut parts = caseref.rsplitn(3, '-');
    let number = parts.next()?.parse().ok()?;
    let year = parts.next()?.parse().ok()?;
    Some((parts.next()?.to_owned(), year, number))
}

/// The live projection, read into the same shape as the fold.
async fn read_live(conn: &mut PgConnection) -> Result<CaseReplay, LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("case projection: {e}"));
    let mut live = CaseReplay::default();
    for row in sqlx::query(
        "SELECT caseref, opened_seq, opened_at, opened_by, updated_seq, updated_at, parties \
         FROM cases",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(LedgerError::query("reading cases"))?
    {
        let case = CaseRow::from_row(&row)?;
        live.cases.insert(case.caseref.clone(), case);
    }
    for row in sqlx::query(
        "SELECT thread, caseref, flow, state, closed, opened_seq, updated_seq FROM case_threads",
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(LedgerError::query("reading case threads"))?
    {
        let thread = ThreadRow::from_row(&row)?;
        live.threads.insert(thread.thread, thread);
    }
    for row in sqlx::query("SELECT message_id, caseref, thread, seq FROM case_messages")
        .fetch_all(&mut *conn)
        .await
        .map_err(LedgerError::query("reading case messages"))?
    {
        let message_id: Uuid = row.try_get("message_id").map_err(read)?;
        live.messages.insert(
            message_id,
            CaseMessageRow {
                message_id,
                caseref: row.try_get("caseref").map_err(read)?,
                thread: row.try_get("thread").map_err(read)?,
                seq: seq_from_db(row.try_get("seq").map_err(read)?)?,
            },
        );
    }
    for row in sqlx::query("SELECT prefix, year, last FROM case_counters")
        .fetch_all(&mut *conn)
        .await
        .map_err(LedgerError::query("reading case counters"))?
    {
        live.counters.insert(
            (
                row.try_get("prefix").map_err(read)?,
                row.try_get("year").map_err(read)?,
            ),
            row.try_get("last").map_err(read)?,
        );
    }
    for row in sqlx::query("SELECT to_jsonb(k) AS clock FROM case_clocks k")
        .fetch_all(&mut *conn)
        .await
        .map_err(LedgerError::query("reading case clocks"))?
    {
        let clock: ClockRow = serde_json::from_value(row.try_get("clock").map_err(read)?)
            .map_err(|e| LedgerError::Corrupt(format!("case_clocks row: {e}")))?;
        live.clocks
            .insert((clock.thread, clock.clock.clone()), clock);
    }
    Ok(live)
}

/// Folds every entry of the database, in pages, under no lock (a running broker may append
/// meanwhile; the comparison then names the cases it touched).
pub(crate) async fn fold_database(
    conn: &mut PgConnection,
    progress: &mut dyn FnMut(u64),
) -> Result<CaseReplay, LedgerError> {
    const PAGE: i64 = 10_000;
    let mut replay = CaseReplay::default();
    let mut next: i64 = 1;
    loop {
        let rows = sqlx::query(
            "SELECT seq, entry FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
        )
        .bind(next)
        .bind(PAGE)
        .fetch_all(&mut *conn)
        .await
        .map_err(LedgerError::query("reading entries to replay cases"))?;
        for row in &rows {
            let seq: i64 = row
                .try_get("seq")
                .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
            let bytes: Vec<u8> = row
                .try_get("entry")
                .map_err(|e| LedgerError::Corrupt(e.to_string()))?;
            replay
                .entry(&bytes)
                .map_err(|e| LedgerError::Corrupt(format!("entry {seq}: {e}")))?;
            next = seq + 1;
        }
        progress(replay.entries);
        if (rows.len() as i64) < PAGE {
            return Ok(replay);
        }
    }
}

/// Replaces the projection with the fold of every entry, under the sequencing lock so that
/// no batch commits meanwhile. Needs DELETE on the projection tables (the database owner).
pub(crate) async fn rebuild(pool: &PgPool) -> Result<CaseReplayReport, LedgerError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(LedgerError::query("starting the case rebuild"))?;
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SEQUENCE_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::query("taking the sequencing lock"))?;
    let replay = fold_database(&mut tx, &mut |_| {}).await?;
    sqlx::raw_sql(
        "DELETE FROM case_messages; DELETE FROM case_threads; DELETE FROM cases; \
         DELETE FROM case_counters; DELETE FROM case_clocks;",
    )
    .execute(&mut *tx)
    .await
    .map_err(LedgerError::query("clearing the case projection"))?;
    crate::committer::write_cases(&mut tx, &replay.writes()).await?;
    let live = read_live(&mut tx).await?;
    let report = replay.report(replay.differences(&live));
    tx.commit()
        .await
        .map_err(LedgerError::query("committing the case rebuild"))?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_references_split_into_prefix_year_and_number() {
        assert_eq!(
            assigned_parts("ECO-2026-000123"),
            Some(("ECO".into(), 2026, 123))
        );
        assert_eq!(assigned_parts("SD-1"), None);
    }
}
