//! The one transaction of a batch, in four exchanges with PostgreSQL: begin and lock, read
//! what the plan needs, write everything in one statement, commit. Round trips are what a
//! batch waits for, on a busy machine most of its time; the rows themselves are cheap.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use liaison_core::audit::Hash;
use liaison_core::merkle::{CompactRange, NodeId};
use liaison_core::{Clock, Route};
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Postgres, Row};
use time::OffsetDateTime;
use uuid::Uuid;

use super::Request;
use super::cases::{CaseBook, CaseRow, CaseWrites, ClockRow, ThreadRow};
use super::plan::{self, BatchWrites, DeliveryStatus, KnownMessage, OutboxRow, Plan, PlanContext};
use crate::error::LedgerError;
use crate::model::{AcceptReceipt, PendingDelivery};
use crate::sql::{agency_from_db, hash_from_db, seq_from_db, seq_to_db};
use crate::telemetry::Phase;

/// The advisory lock that serialises appends of every liaison instance sharing the
/// database ("liaison" in ASCII). Held to commit, so seqs are gapless across instances.
pub(crate) const SEQUENCE_LOCK: i64 = 0x006c_6961_6973_6f6e;

/// `BEGIN`, the batch's planner settings and [`SEQUENCE_LOCK`] in one simple-protocol
/// exchange. The lock must be its own statement before any read: under READ COMMITTED a
/// statement sees the commits made before it started, so only statements after the lock
/// see every earlier batch.
///
/// A batch reaches every row it reads or changes by its key, so its statements are
/// planned once per connection (generic plans) with table scans, hash and merge joins
/// priced out: the plan is then the same key lookups whatever the tables' size and
/// statistics, and no batch pays for planning again. Left to the statistics, a plan made
/// while the outbox is small scans it whole for every later batch, a cost that grows with
/// the ledger. `SET LOCAL` ends with the transaction; the pool's other users keep the
/// connection's defaults.
const BEGIN_SEQUENCED: &str = "BEGIN; \
    SET LOCAL enable_seqscan = off; SET LOCAL enable_hashjoin = off; \
    SET LOCAL enable_mergejoin = off; SET LOCAL plan_cache_mode = force_generic_plan; \
    SELECT pg_advisory_xact_lock(30515164586667886)";

/// Runs one batch to COMMIT and returns its plan (the answers and what was written).
/// With `handoff_lease`, the batch's new deliveries are written leased for that long and
/// returned, ready to publish.
///
/// `frontier` is the right edge of the Merkle tree as this committer's last batch left it;
/// it saves reading it back while no other instance appends. It is taken for the batch and
/// put back only after COMMIT, so a failed batch makes the next one read it again.
pub(crate) async fn commit_batch(
    pool: &PgPool,
    clock: &dyn Clock,
    requests: &[Request],
    keyring: Option<&crate::keys::Keyring>,
    handoff_lease: Option<Duration>,
    frontier: &mut Option<CompactRange>,
) -> Result<CommittedBatch, LedgerError> {
    let mut phases = PhaseTimer::start();
    // Sealed before the sequencing lock is taken: encryption never holds up other batches.
    let sealed = seal_bodies(requests, keyring)?;
    phases.lap(Phase::Seal);
    let cached = frontier.take();
    let mut tx = pool
        .begin_with(BEGIN_SEQUENCED)
        .await
        .map_err(LedgerError::query(
            "starting a batch under the sequencing lock",
        ))?;
    phases.lap(Phase::Begin);
    let (last_seq, known) = read_head(&mut tx, requests).await?;
    let outbox = lock_outbox_rows(&mut tx, requests).await?;
    // The time in the canonical bytes is the one read back.
    let at = crate::sql::db_time(clock.now());
    let cases = read_cases(&mut tx, requests, at).await?;
    let case_keys = read_case_keys(&mut tx, requests).await?;
    phases.lap(Phase::Read);
    let context = PlanContext {
        first_seq: last_seq + 1,
        at,
        known,
        outbox,
        cases,
        sealed,
        case_keys,
    };
    let plan = plan::plan(requests, context);

    // The Merkle tree grows in the same transaction as its leaves. Its right edge is read
    // back only when the cached one is stale; that read counts as reading.
    let mut range = match cached {
        Some(range) if range.size() == last_seq => range,
        _ => {
            phases.lap(Phase::Plan);
            let range = crate::tree::load_range(&mut tx, last_seq).await?;
            phases.lap(Phase::Read);
            range
        }
    };
    let mut nodes = Vec::new();
    for entry in &plan.writes.entries {
        range.push(entry.leaf_hash, |id, hash| nodes.push((id, hash)));
    }
    phases.lap(Phase::Plan);

    let leased = write(&mut tx, &plan.writes, &nodes, handoff_lease).await?;
    write_erasures(&mut tx, &plan.writes.erasures).await?;
    phases.lap(Phase::Write);
    tx.commit()
        .await
        .map_err(LedgerError::query("committing a batch"))?;
    phases.lap(Phase::Commit);
    *frontier = Some(range);
    Ok(CommittedBatch {
        plan,
        leased,
        phases: phases.spent,
    })
}

/// A batch that committed: what it wrote and answered, the deliveries it leased to this
/// process's relay, and where its time went.
pub(crate) struct CommittedBatch {
    pub plan: Plan,
    pub leased: Vec<PendingDelivery>,
    pub phases: [Duration; Phase::ALL.len()],
}

struct PhaseTimer {
    last: Instant,
    spent: [Duration; Phase::ALL.len()],
}

impl PhaseTimer {
    fn start() -> Self {
        Self {
            last: Instant::now(),
            spent: [Duration::ZERO; Phase::ALL.len()],
        }
    }

    /// Charges the time since the previous lap to `phase`.
    fn lap(&mut self, phase: Phase) {
        let now = Instant::now();
        self.spent[phase as usize] += now - self.last;
        self.last = now;
    }
}

/// Each accepted body of the batch sealed under a data key of its own (none without a
/// keyring). A resubmission is sealed too, and its seal dropped by the plan.
fn seal_bodies(
    requests: &[Request],
    keyring: Option<&crate::keys::Keyring>,
) -> Result<HashMap<Uuid, crate::keys::Sealed>, LedgerError> {
    let Some(keyring) = keyring else {
        return Ok(HashMap::new());
    };
    requests
        .iter()
        .filter_map(|r| match r {
            Request::Accept(m) => Some(m),
            _ => None,
        })
        .map(|m| Ok((m.envelope.id, keyring.seal(m.envelope.id, &m.bytes)?)))
        .collect()
}

/// For each case the batch erases: its accepted messages, in seq order, with whether each
/// body is sealed and the seq of the erasure that already destroyed its key. Skipped (no
/// round trip) for a batch without erasures, which is nearly every batch.
async fn read_case_keys(
    conn: &mut PgConnection,
    requests: &[Request],
) -> Result<HashMap<String, Vec<plan::CaseKey>>, LedgerError> {
    let caserefs: Vec<&str> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Erase(e) => Some(e.caseref.as_str()),
            _ => None,
        })
        .collect();
    let mut keys: HashMap<String, Vec<plan::CaseKey>> = HashMap::new();
    if caserefs.is_empty() {
        return Ok(keys);
    }
    let rows = sqlx::query(
        "SELECT e.caseref, m.id, m.seq, k.wrapped IS NOT NULL AS sealed, k.erased_seq \
         FROM ledger_entries e JOIN messages m ON m.seq = e.seq \
         LEFT JOIN message_keys k ON k.message_id = m.id \
         WHERE e.caseref = ANY($1) AND e.kind = 'message.accepted' \
         ORDER BY m.seq",
    )
    .bind(&caserefs)
    .fetch_all(&mut *conn)
    .await
    .map_err(LedgerError::query("reading the keys of the cases to erase"))?;
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("message key row: {e}"));
    for row in &rows {
        let erased: Option<i64> = row.try_get("erased_seq").map_err(read)?;
        keys.entry(row.try_get("caseref").map_err(read)?)
            .or_default()
            .push(plan::CaseKey {
                message_id: row.try_get("id").map_err(read)?,
                seq: seq_from_db(row.try_get("seq").map_err(read)?)?,
                sealed: row.try_get("sealed").map_err(read)?,
                erased_seq: erased.map(seq_from_db).transpose()?,
            });
    }
    Ok(keys)
}

/// Destroys the data keys the batch's erasures name (the `case.erased` entries of the same
/// transaction record it) and withdraws their messages' deliveries not yet sent: they
/// become `dead`, and are never published (`liaison ledger replay` derives the same from
/// the entry).
async fn write_erasures(
    conn: &mut PgConnection,
    erasures: &[(Uuid, u64)],
) -> Result<(), LedgerError> {
    if erasures.is_empty() {
        return Ok(());
    }
    let seqs = erasures
        .iter()
        .map(|(_, seq)| seq_to_db(*seq))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "WITH erased AS ( \
             UPDATE message_keys AS k SET kek_id = NULL, wrapped = NULL, erased_seq = u.seq \
             FROM UNNEST($1::uuid[], $2::bigint[]) AS u(id, seq) \
             WHERE k.message_id = u.id AND k.wrapped IS NOT NULL \
         ) \
         UPDATE outbox SET state = 'dead', leased_until = NULL, last_error = 'erased' \
         WHERE message_id = ANY($1) AND state = 'pending'",
    )
    .bind(column(erasures, |(id, _)| *id))
    .bind(seqs)
    .execute(&mut *conn)
    .await
    .map_err(LedgerError::query("destroying the erased messages' keys"))?;
    Ok(())
}

/// The last seq and the batch's message ids already in the ledger (archived ones
/// included), in one statement (one row with NULL message columns when none is known).
async fn read_head(
    conn: &mut PgConnection,
    requests: &[Request],
) -> Result<(u64, HashMap<Uuid, KnownMessage>), LedgerError> {
    let ids: Vec<Uuid> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Accept(m) => Some(m.envelope.id),
            _ => None,
        })
        .collect();
    let rows = sqlx::query(
        "SELECT h.last_seq, m.id, m.seq, m.sender, m.caseref, m.sha256, m.route, m.recorded_at \
         FROM (SELECT coalesce(max(seq), 0)::bigint AS last_seq FROM ledger_entries) AS h \
         LEFT JOIN ( \
             SELECT m.id, m.seq, m.sender, m.caseref, m.sha256, m.route, e.recorded_at \
             FROM messages m JOIN ledger_entries e ON e.seq = m.seq WHERE m.id = ANY($1) \
             UNION ALL \
             SELECT id, seq, sender, caseref, sha256, route, recorded_at \
             FROM archived_messages WHERE id = ANY($1) \
         ) AS m ON true",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(LedgerError::query(
        "reading the last seq and known message ids",
    ))?;
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("ledger head: {e}"));
    let last_seq = match rows.first() {
        Some(row) => seq_from_db(row.try_get("last_seq").map_err(read)?)?,
        None => {
            return Err(LedgerError::Internal(
                "the ledger head query returned no row",
            ));
        }
    };
    let mut known = HashMap::new();
    for row in &rows {
        if row
            .try_get::<Option<Uuid>, _>("id")
            .map_err(read)?
            .is_some()
        {
            let (id, message) = known_message(row)?;
            known.insert(id, message);
        }
    }
    Ok((last_seq, known))
}

fn known_message(row: &PgRow) -> Result<(Uuid, KnownMessage), LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("messages row: {e}"));
    let id: Uuid = row.try_get("id").map_err(read)?;
    let Json(route): Json<Route> = row.try_get("route").map_err(read)?;
    let receipt = AcceptReceipt {
        id,
        seq: seq_from_db(row.try_get("seq").map_err(read)?)?,
        recorded_at: row.try_get("recorded_at").map_err(read)?,
        recipients: route.recipients,
        caseref: row.try_get("caseref").map_err(read)?,
    };
    let known = KnownMessage {
        sender: agency_from_db(row.try_get("sender").map_err(read)?)?,
        sha256: hash_from_db(row.try_get("sha256").map_err(read)?)?,
        receipt,
    };
    Ok((id, known))
}

/// The cases the batch's messages name, the threads of the messages they answer, and the
/// case-number counters of the senders that may open a case: what placing them needs.
/// Skipped (no round trip) for a batch without messages.
async fn read_cases(
    conn: &mut PgConnection,
    requests: &[Request],
    at: OffsetDateTime,
) -> Result<CaseBook, LedgerError> {
    let mut caserefs = Vec::new();
    let mut originals = Vec::new();
    let mut prefixes = Vec::new();
    for request in requests {
        let Request::Accept(message) = request else {
            continue;
        };
        let given = message
            .case
            .caseref
            .as_ref()
            .or(message.envelope.caseref.as_ref());
        match given {
            Some(caseref) => caserefs.push(caseref.clone()),
            None if message.case.moves.opens.is_some() => {
                prefixes.push(liaison_core::caseref::prefix(&message.sender));
            }
            None => {}
        }
        originals.extend(message.envelope.inreplyto);
    }
    let mut book = CaseBook::default();
    if caserefs.is_empty() && originals.is_empty() && prefixes.is_empty() {
        return Ok(book);
    }
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("case row: {e}"));
    // Three reads in one round trip: every row is tagged with what it is.
    let rows = sqlx::query(
        "SELECT 'case' AS what, c.caseref, c.opened_seq, c.opened_at, c.opened_by, \
                c.updated_seq, c.updated_at, c.parties, \
                NULL::uuid AS message_id, NULL::uuid AS thread, NULL::text AS flow, \
                NULL::text AS state, NULL::boolean AS closed, NULL::text AS prefix, \
                NULL::int AS year, NULL::bigint AS last, NULL::jsonb AS clock \
         FROM cases c WHERE c.caseref = ANY($1) \
         UNION ALL \
         SELECT 'thread', t.caseref, t.opened_seq, NULL, NULL, t.updated_seq, NULL, NULL, \
                m.message_id, t.thread, t.flow, t.state, t.closed, NULL, NULL, NULL, NULL \
         FROM case_messages m JOIN case_threads t ON t.thread = m.thread \
         WHERE m.message_id = ANY($2) \
         UNION ALL \
         SELECT 'counter', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                NULL, k.prefix, k.year, k.last, NULL \
         FROM case_counters k WHERE k.prefix = ANY($3) AND k.year = $4 \
         UNION ALL \
         SELECT 'clock', NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, \
                NULL, NULL, NULL, NULL, to_jsonb(k) \
         FROM case_clocks k WHERE k.thread IN \
              (SELECT m.thread FROM case_messages m WHERE m.message_id = ANY($2))",
    )
    .bind(&caserefs)
    .bind(&originals)
    .bind(&prefixes)
    .bind(liaison_core::caseref::year(at))
    .fetch_all(&mut *conn)
    .await
    .map_err(LedgerError::query("reading the batch's cases"))?;
    for row in &rows {
        let what: String = row.try_get("what").map_err(read)?;
        match what.as_str() {
            "case" => {
                let case = CaseRow::from_row(row)?;
                book.cases.insert(case.caseref.clone(), case);
            }
            "thread" => {
                let message_id: Uuid = row.try_get("message_id").map_err(read)?;
                let thread = ThreadRow::from_row(row)?;
                book.message_thread.insert(message_id, thread.thread);
                book.threads.insert(thread.thread, thread);
            }
            "clock" => {
                let row: serde_json::Value = row.try_get("clock").map_err(read)?;
                let clock: ClockRow = serde_json::from_value(row)
                    .map_err(|e| LedgerError::Corrupt(format!("case_clocks row: {e}")))?;
                book.clocks
                    .insert((clock.thread, clock.clock.clone()), clock);
            }
            _ => {
                book.counters.insert(
                    (
                        row.try_get("prefix").map_err(read)?,
                        row.try_get("year").map_err(read)?,
                    ),
                    row.try_get("last").map_err(read)?,
                );
            }
        }
    }
    Ok(book)
}

/// The case rows of the batch, clocks included, each upserted in its final state: one
/// statement, however many tables it touches.
const WRITE_CASES: &str = "\
WITH changed_cases AS ( \
    INSERT INTO cases (caseref, opened_seq, opened_at, opened_by, updated_seq, updated_at, parties) \
    SELECT u.caseref, u.opened_seq, u.opened_at, u.opened_by, u.updated_seq, u.updated_at, \
           string_to_array(u.parties, ',') \
    FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[], $4::text[], $5::bigint[], \
                $6::timestamptz[], $7::text[]) \
         AS u(caseref, opened_seq, opened_at, opened_by, updated_seq, updated_at, parties) \
    ON CONFLICT (caseref) DO UPDATE SET updated_seq = EXCLUDED.updated_seq, \
           updated_at = EXCLUDED.updated_at, parties = EXCLUDED.parties \
), changed_threads AS ( \
    INSERT INTO case_threads (thread, caseref, flow, state, closed, opened_seq, updated_seq) \
    SELECT * FROM UNNEST($8::uuid[], $9::text[], $10::text[], $11::text[], $12::boolean[], \
                         $13::bigint[], $14::bigint[]) \
    ON CONFLICT (thread) DO UPDATE SET state = EXCLUDED.state, closed = EXCLUDED.closed, \
           updated_seq = EXCLUDED.updated_seq \
), new_case_messages AS ( \
    INSERT INTO case_messages (message_id, caseref, thread, seq) \
    SELECT * FROM UNNEST($15::uuid[], $16::text[], $17::uuid[], $18::bigint[]) \
), changed_clocks AS ( \
    INSERT INTO case_clocks (thread, clock, caseref, flow, kind, origin, started_seq, \
                             started_at, due_at, due_error, owed_by, stopped_seq, \
                             stopped_reason, stages_sent) \
    SELECT u.thread, u.clock, u.caseref, u.flow, u.kind, u.origin, u.started_seq, \
           u.started_at, u.due_at, u.due_error, string_to_array(u.owed_by, ','), \
           u.stopped_seq, u.stopped_reason, string_to_array(u.stages_sent, ',') \
    FROM UNNEST($22::uuid[], $23::text[], $24::text[], $25::text[], $26::text[], \
                $27::uuid[], $28::bigint[], $29::timestamptz[], $30::timestamptz[], \
                $31::text[], $32::text[], $33::bigint[], $34::text[], $35::text[]) \
         AS u(thread, clock, caseref, flow, kind, origin, started_seq, started_at, due_at, \
              due_error, owed_by, stopped_seq, stopped_reason, stages_sent) \
    ON CONFLICT (thread, clock) DO UPDATE SET caseref = EXCLUDED.caseref, \
           flow = EXCLUDED.flow, kind = EXCLUDED.kind, origin = EXCLUDED.origin, \
           started_seq = EXCLUDED.started_seq, started_at = EXCLUDED.started_at, \
           due_at = EXCLUDED.due_at, due_error = EXCLUDED.due_error, \
           owed_by = EXCLUDED.owed_by, stopped_seq = EXCLUDED.stopped_seq, \
           stopped_reason = EXCLUDED.stopped_reason, stages_sent = EXCLUDED.stages_sent \
) \
INSERT INTO case_counters (prefix, year, last) \
SELECT * FROM UNNEST($19::text[], $20::int[], $21::bigint[]) \
ON CONFLICT (prefix, year) DO UPDATE SET last = EXCLUDED.last";

pub(crate) async fn write_cases(
    conn: &mut PgConnection,
    writes: &CaseWrites,
) -> Result<(), LedgerError> {
    if writes.is_empty() {
        return Ok(());
    }
    bind_cases(sqlx::query(WRITE_CASES), writes)?
        .execute(&mut *conn)
        .await
        .map_err(LedgerError::query("writing the batch's cases"))?;
    Ok(())
}

/// Binds the case rows of `writes` as the next 35 parameters of `query` (in the order of
/// [`WRITE_CASES`]'s `$1`–`$35`).
fn bind_cases<'q>(
    query: Query<'q, Postgres, PgArguments>,
    writes: &'q CaseWrites,
) -> Result<Query<'q, Postgres, PgArguments>, LedgerError> {
    let seqs = |values: Vec<u64>| {
        values
            .into_iter()
            .map(seq_to_db)
            .collect::<Result<Vec<_>, _>>()
    };
    let (cases, threads, messages, clocks) = (
        &writes.cases,
        &writes.threads,
        &writes.messages,
        &writes.clocks,
    );
    Ok(query
        .bind(column(cases, |c| c.caseref.as_str()))
        .bind(seqs(column(cases, |c| c.opened_seq))?)
        .bind(column(cases, |c| c.opened_at))
        .bind(column(cases, |c| c.opened_by.as_str()))
        .bind(seqs(column(cases, |c| c.updated_seq))?)
        .bind(column(cases, |c| c.updated_at))
        .bind(column(cases, |c| {
            c.parties.iter().cloned().collect::<Vec<_>>().join(",")
        }))
        .bind(column(threads, |t| t.thread))
        .bind(column(threads, |t| t.caseref.as_str()))
        .bind(column(threads, |t| t.flow.as_str()))
        .bind(column(threads, |t| t.state.as_str()))
        .bind(column(threads, |t| t.closed))
        .bind(seqs(column(threads, |t| t.opened_seq))?)
        .bind(seqs(column(threads, |t| t.updated_seq))?)
        .bind(column(messages, |m| m.message_id))
        .bind(column(messages, |m| m.caseref.as_str()))
        .bind(column(messages, |m| m.thread))
        .bind(seqs(column(messages, |m| m.seq))?)
        .bind(column(&writes.counters, |k| k.0.as_str()))
        .bind(column(&writes.counters, |k| k.1))
        .bind(column(&writes.counters, |k| k.2))
        .bind(column(clocks, |c| c.thread))
        .bind(column(clocks, |c| c.clock.as_str()))
        .bind(column(clocks, |c| c.caseref.as_str()))
        .bind(column(clocks, |c| c.flow.as_str()))
        .bind(column(clocks, |c| c.kind.as_str()))
        .bind(column(clocks, |c| c.origin))
        .bind(seqs(column(clocks, |c| c.started_seq))?)
        .bind(column(clocks, |c| c.started_at))
        .bind(column(clocks, |c| c.due_at))
        .bind(column(clocks, |c| c.due_error.as_deref()))
        .bind(column(clocks, |c| c.owed_by.join(",")))
        .bind(
            clocks
                .iter()
                .map(|c| c.stopped_seq.map(seq_to_db).transpose())
                .collect::<Result<Vec<_>, _>>()?,
        )
        .bind(column(clocks, |c| c.stopped_reason.as_deref()))
        .bind(column(clocks, |c| c.stages_sent.join(","))))
}

/// Locks the outbox rows the batch's outcomes and acknowledgements touch, so that a relay
/// claiming concurrently cannot change them between this read and the write.
async fn lock_outbox_rows(
    conn: &mut PgConnection,
    requests: &[Request],
) -> Result<HashMap<i64, OutboxRow>, LedgerError> {
    let mut ids: Vec<i64> = requests
        .iter()
        .flat_map(|r| match r {
            Request::Deliveries(outcomes) => outcomes.iter().map(|o| o.delivery_id()).collect(),
            Request::Acknowledge { delivery_id, .. } => vec![*delivery_id],
            _ => Vec::new(),
        })
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    ids.sort_unstable();
    ids.dedup();
    let rows = sqlx::query(
        "SELECT o.delivery_id, o.message_id, m.caseref, o.recipient, o.state, o.attempts, \
                o.next_attempt_at, o.leased_until, o.dispatched_at, o.acknowledged_at, o.last_error \
         FROM outbox o JOIN messages m ON m.id = o.message_id \
         WHERE o.delivery_id = ANY($1) \
         ORDER BY o.delivery_id \
         FOR UPDATE OF o",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(LedgerError::query("locking outbox rows"))?;
    rows.iter()
        .map(|row| outbox_row(row).map(|r| (r.delivery_id, r)))
        .collect()
}

fn outbox_row(row: &PgRow) -> Result<OutboxRow, LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("outbox row: {e}"));
    let state: String = row.try_get("state").map_err(read)?;
    Ok(OutboxRow {
        delivery_id: row.try_get("delivery_id").map_err(read)?,
        message_id: row.try_get("message_id").map_err(read)?,
        caseref: row.try_get("caseref").map_err(read)?,
        recipient: agency_from_db(row.try_get("recipient").map_err(read)?)?,
        state: DeliveryStatus::parse(&state)
            .ok_or_else(|| LedgerError::Corrupt(format!("outbox state {state:?}")))?,
        attempts: row.try_get("attempts").map_err(read)?,
        next_attempt_at: row.try_get("next_attempt_at").map_err(read)?,
        leased_until: row.try_get("leased_until").map_err(read)?,
        dispatched_at: row.try_get("dispatched_at").map_err(read)?,
        acknowledged_at: row.try_get("acknowledged_at").map_err(read)?,
        last_error: row.try_get("last_error").map_err(read)?,
    })
}

/// Every row of the batch in one statement: the entries, the messages, the tree nodes, the
/// changed and the new outbox rows. Data-modifying CTEs all run to completion whether or
/// not the main query reads them.
const WRITE_BATCH: &str = "\
WITH new_entries AS ( \
    INSERT INTO ledger_entries (seq, recorded_at, kind, message_id, caseref, agency, entry, leaf_hash) \
    SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::uuid[], $5::text[], \
                         $6::text[], $7::bytea[], $8::bytea[]) \
), new_messages AS ( \
    INSERT INTO messages (id, seq, sender, type, caseref, inreplyto, traceparent, channel, \
                          sha256, body, route, received_at, trace_context) \
    SELECT * FROM UNNEST($9::uuid[], $10::bigint[], $11::text[], $12::text[], $13::text[], \
                         $14::uuid[], $15::text[], $16::text[], $17::bytea[], $18::bytea[], \
                         $19::jsonb[], $20::timestamptz[], $37::text[]) \
), new_keys AS ( \
    INSERT INTO message_keys (message_id, kek_id, wrapped) \
    SELECT * FROM UNNEST($38::uuid[], $39::text[], $40::bytea[]) \
), new_nodes AS ( \
    INSERT INTO ledger_tree_nodes (level, idx, hash) \
    SELECT * FROM UNNEST($21::smallint[], $22::bigint[], $23::bytea[]) \
), changed_deliveries AS ( \
    UPDATE outbox AS o SET state = u.state, next_attempt_at = u.next_attempt_at, \
           leased_until = u.leased_until, dispatched_at = u.dispatched_at, \
           acknowledged_at = u.acknowledged_at, last_error = u.last_error \
    FROM UNNEST($24::bigint[], $25::text[], $26::timestamptz[], $27::timestamptz[], \
                $28::timestamptz[], $29::timestamptz[], $30::text[]) \
         AS u(delivery_id, state, next_attempt_at, leased_until, dispatched_at, acknowledged_at, last_error) \
    WHERE o.delivery_id = u.delivery_id \
) \
INSERT INTO outbox (message_id, recipient, role, state, next_attempt_at, leased_until, attempts) \
SELECT u.message_id, u.recipient, u.role, 'pending', $34, $35, $36 \
FROM UNNEST($31::uuid[], $32::text[], $33::text[]) AS u(message_id, recipient, role) \
RETURNING delivery_id, message_id, recipient";

/// Parameters [`WRITE_BATCH`] takes; the case rows' follow them in the combined statement.
const WRITE_BATCH_PARAMS: usize = 40;

/// [`WRITE_BATCH`] with [`WRITE_CASES`]'s statements as more data-modifying CTEs of the
/// same statement, their parameters numbered after [`WRITE_BATCH`]'s: a batch writes
/// everything in one round trip. (They touch different tables, so no row is changed twice
/// in the statement.)
static WRITE_BATCH_WITH_CASES: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    let cases = WRITE_CASES
        .strip_prefix("WITH ")
        .expect("WRITE_CASES is a WITH statement");
    let (ctes, counters) = cases
        .split_once(") INSERT INTO case_counters")
        .expect("WRITE_CASES ends by writing the counters");
    let cases = format!("{ctes}), changed_counters AS ( INSERT INTO case_counters{counters} ) ");
    let cases = renumber(&cases, WRITE_BATCH_PARAMS);
    let (batch, outbox) = WRITE_BATCH
        .split_once(") INSERT INTO outbox")
        .expect("WRITE_BATCH ends by inserting the outbox rows");
    format!("{batch}), {cases}INSERT INTO outbox{outbox}")
});

/// `sql` with every parameter `$n` renumbered `$(n + by)`.
fn renumber(sql: &str, by: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut rest = sql;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..=at]);
        rest = &rest[at + 1..];
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        match rest[..digits].parse::<usize>() {
            Ok(n) => out.push_str(&(n + by).to_string()),
            Err(_) => out.push_str(&rest[..digits]),
        }
        rest = &rest[digits..];
    }
    out.push_str(rest);
    out
}

/// Writes the batch, its cases included, in one statement; with `handoff_lease` its new
/// outbox rows are written as the first attempt, leased to this process, and returned as
/// deliveries ready to publish.
async fn write(
    conn: &mut PgConnection,
    writes: &BatchWrites,
    nodes: &[(NodeId, Hash)],
    handoff_lease: Option<Duration>,
) -> Result<Vec<PendingDelivery>, LedgerError> {
    let entries = &writes.entries;
    let messages = &writes.messages;
    let updates = &writes.delivery_updates;
    let deliveries = &writes.new_deliveries;
    let entry_seqs = entries
        .iter()
        .map(|e| seq_to_db(e.seq))
        .collect::<Result<Vec<_>, _>>()?;
    let message_seqs = messages
        .iter()
        .map(|m| seq_to_db(m.seq))
        .collect::<Result<Vec<_>, _>>()?;
    let node_indexes = nodes
        .iter()
        .map(|(id, _)| seq_to_db(id.index))
        .collect::<Result<Vec<_>, _>>()?;
    let keyed: Vec<(Uuid, &str, &[u8])> = messages
        .iter()
        .filter_map(|m| {
            m.key
                .as_ref()
                .map(|(kek, wrapped)| (m.id, kek.as_str(), wrapped.as_slice()))
        })
        .collect();
    let leased_until = handoff_lease.map(|lease| writes.at + lease);
    let attempts: i32 = if handoff_lease.is_some() { 1 } else { 0 };
    let query = sqlx::query(WRITE_BATCH_WITH_CASES.as_str())
        // ledger_entries
        .bind(entry_seqs)
        .bind(column(entries, |e| e.at))
        .bind(column(entries, |e| e.kind.as_str()))
        .bind(column(entries, |e| e.message_id))
        .bind(column(entries, |e| e.caseref.as_deref()))
        .bind(column(entries, |e| e.agency.as_deref()))
        .bind(column(entries, |e| e.bytes.as_slice()))
        .bind(column(entries, |e| &e.leaf_hash[..]))
        // messages
        .bind(column(messages, |m| m.id))
        .bind(message_seqs)
        .bind(column(messages, |m| m.sender.as_str()))
        .bind(column(messages, |m| m.type_.as_str()))
        .bind(column(messages, |m| m.caseref.as_deref()))
        .bind(column(messages, |m| m.inreplyto))
        .bind(column(messages, |m| m.traceparent.as_deref()))
        .bind(column(messages, |m| m.channel))
        .bind(column(messages, |m| &m.sha256[..]))
        .bind(column(messages, |m| &m.stored[..]))
        .bind(column(messages, |m| m.route.clone()))
        .bind(column(messages, |m| m.received_at))
        // ledger_tree_nodes
        .bind(column(nodes, |(id, _)| i16::from(id.level)))
        .bind(node_indexes)
        .bind(column(nodes, |(_, hash)| &hash[..]))
        // outbox rows changed by outcomes and acknowledgements
        .bind(column(updates, |r| r.delivery_id))
        .bind(column(updates, |r| r.state.as_str()))
        .bind(column(updates, |r| r.next_attempt_at))
        .bind(column(updates, |r| r.leased_until))
        .bind(column(updates, |r| r.dispatched_at))
        .bind(column(updates, |r| r.acknowledged_at))
        .bind(column(updates, |r| r.last_error.as_deref()))
        // new outbox rows
        .bind(column(deliveries, |d| d.message_id))
        .bind(column(deliveries, |d| d.recipient.as_str()))
        .bind(column(deliveries, |d| d.role))
        .bind(writes.at)
        .bind(leased_until)
        .bind(attempts)
        // messages.trace_context ($37)
        .bind(column(messages, |m| m.trace_context.as_deref()))
        // message_keys ($38–$40): the sealed messages' wrapped data keys
        .bind(column(&keyed, |(id, _, _)| *id))
        .bind(column(&keyed, |(_, kek, _)| *kek))
        .bind(column(&keyed, |(_, _, wrapped)| *wrapped));
    // case rows ($41–$75)
    let rows = bind_cases(query, &writes.cases)?
        .fetch_all(&mut *conn)
        .await
        .map_err(LedgerError::query("writing a batch"))?;
    if handoff_lease.is_none() {
        return Ok(Vec::new());
    }
    let messages: HashMap<Uuid, &plan::MessageRow> = messages.iter().map(|m| (m.id, m)).collect();
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("inserted outbox row: {e}"));
    rows.iter()
        .map(|row| {
            let message_id: Uuid = row.try_get("message_id").map_err(read)?;
            let message = messages.get(&message_id).ok_or_else(|| {
                LedgerError::Corrupt(format!(
                    "outbox row for message {message_id} outside its batch"
                ))
            })?;
            Ok(PendingDelivery {
                delivery_id: row.try_get("delivery_id").map_err(read)?,
                message_id,
                recipient: agency_from_db(row.try_get("recipient").map_err(read)?)?,
                type_: message.type_.clone(),
                seq: message.seq,
                caseref: message.caseref.clone(),
                traceparent: message
                    .trace_context
                    .clone()
                    .or_else(|| message.traceparent.clone()),
                body: message.body.clone(),
                attempt: attempts,
            })
        })
        .collect()
}

/// One column of a batch statement: `field` of every row, for an `UNNEST($n::type[])`.
fn column<'a, T, U>(rows: &'a [T], field: impl Fn(&'a T) -> U) -> Vec<U> {
    rows.iter().map(field).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_combined_write_numbers_the_case_parameters_after_the_batch() {
        assert_eq!(
            renumber("a $1 b $35::text[] $x $", 40),
            "a $41 b $75::text[] $x $"
        );
        let sql = WRITE_BATCH_WITH_CASES.as_str();
        // Every parameter from 1 to 75 is used, none beyond.
        let used = |n: usize| {
            sql.match_indices(&format!("${n}"))
                .any(|(at, p)| !sql[at + p.len()..].starts_with(|c: char| c.is_ascii_digit()))
        };
        for n in 1..=WRITE_BATCH_PARAMS + 35 {
            assert!(used(n), "${n} unused in {sql}");
        }
        assert!(!used(WRITE_BATCH_PARAMS + 36), "{sql}");
        assert!(!WRITE_BATCH.contains(&format!("${}", WRITE_BATCH_PARAMS + 1)));
        assert!(WRITE_BATCH.contains(&format!("${WRITE_BATCH_PARAMS}::")));
        // The case statements became CTEs before the outbox insert, which still returns
        // the leased rows.
        let outbox = sql.find("INSERT INTO outbox").unwrap();
        for cte in [
            "changed_cases AS (",
            "changed_threads AS (",
            "new_case_messages AS (",
            "changed_clocks AS (",
            "changed_counters AS (",
        ] {
            assert!(
                sql.find(cte).is_some_and(|at| at < outbox),
                "{cte} in {sql}"
            );
        }
        assert!(sql.ends_with("RETURNING delivery_id, message_id, recipient"));
    }

    #[test]
    fn the_begin_statement_takes_the_sequencing_lock() {
        assert!(BEGIN_SEQUENCED.ends_with(&format!("pg_advisory_xact_lock({SEQUENCE_LOCK})")));
    }

    /// Against a real PostgreSQL (LIAISON_TEST_DATABASE_URL, else the local server): in
    /// tables with thousands of rows and no statistics yet — a young ledger — a batch that
    /// records delivery outcomes locks and updates its outbox rows through their keys.
    /// Left to the default planner, both statements read the whole outbox and `messages`.
    /// It lives here rather than in `tests/` because the statements are the module's own.
    #[tokio::test]
    async fn a_batch_reaches_outbox_and_message_rows_by_key_in_young_tables() {
        use crate::model::DeliveryOutcome;
        use sqlx::Connection;

        let server = std::env::var("LIAISON_TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned());
        let url = format!("{server}/liaison_t_{}", Uuid::new_v4().simple());
        crate::ensure_database(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot create a test database at {url}: {e}"));
        let mut setup = PgConnection::connect(&url).await.expect("connect");
        sqlx::migrate!("./migrations")
            .run(&mut setup)
            .await
            .expect("migrate");
        sqlx::raw_sql(
            "INSERT INTO messages (id, seq, sender, type, caseref, channel, sha256, body, route, received_at) \
             SELECT gen_random_uuid(), g, 'eco', 'pil.lead.v1', 'SD-' || g, 'https', \
                    sha256(g::text::bytea), convert_to(repeat('x', 900), 'UTF8'), '{}'::jsonb, now() \
             FROM generate_series(1, 5000) AS g; \
             INSERT INTO outbox (message_id, recipient, role, state, next_attempt_at, leased_until, attempts) \
             SELECT id, 'procuratorate', 'to', 'pending', now(), now() + interval '1 minute', 1 FROM messages",
        )
        .execute(&mut setup)
        .await
        .expect("seed the outbox");
        setup.close().await.ok();

        // The seeded messages sit in the default partition (no broker created partitions
        // here), whose counters are its own. A connection of its own: a backend's table counters accumulate until flushed, so
        // the seeding must not have run on this one.
        let mut conn = PgConnection::connect(&url).await.expect("connect");

        sqlx::raw_sql(BEGIN_SEQUENCED)
            .execute(&mut conn)
            .await
            .expect("begin");
        let outcomes = (4001..=4200)
            .map(|delivery_id| DeliveryOutcome::Dispatched { delivery_id })
            .collect();
        let locked = lock_outbox_rows(&mut conn, &[Request::Deliveries(outcomes)])
            .await
            .expect("lock the batch's outbox rows");
        assert_eq!(locked.len(), 200);
        let writes = BatchWrites {
            at: OffsetDateTime::now_utc(),
            entries: Vec::new(),
            messages: Vec::new(),
            new_deliveries: Vec::new(),
            delivery_updates: locked.into_values().collect(),
            cases: CaseWrites::default(),
            erasures: Vec::new(),
        };
        write(&mut conn, &writes, &[], None)
            .await
            .expect("write the batch");
        // This backend's own counters, not yet flushed: nothing to wait for.
        let scans: Vec<(String, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, seq_scan, coalesce(idx_scan, 0) FROM pg_stat_xact_user_tables \
             WHERE relname IN ('outbox', 'messages_default') ORDER BY relname",
        )
        .fetch_all(&mut conn)
        .await
        .expect("read the transaction's table statistics");
        sqlx::raw_sql("ROLLBACK")
            .execute(&mut conn)
            .await
            .expect("rollback");
        conn.close().await.ok();
        crate::drop_database(&url).await.ok();

        assert_eq!(scans.len(), 2, "{scans:?}");
        for (table, seq_scans, index_scans) in scans {
            assert_eq!(seq_scans, 0, "{table} was read whole");
            assert!(index_scans > 0, "{table} was not read by key");
        }
    }
}
