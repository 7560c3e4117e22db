//! The one transaction of a batch: lock, read what the plan needs, write everything with
//! one statement per table.

use std::collections::HashMap;
use std::time::Duration;

use liaison_core::{Clock, Route};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgConnection, PgPool, Row};
use time::{OffsetDateTime, UtcOffset};
use uuid::Uuid;

use super::Request;
use super::plan::{self, BatchWrites, DeliveryStatus, KnownMessage, OutboxRow, Plan, PlanContext};
use crate::error::LedgerError;
use crate::model::{AcceptReceipt, PendingDelivery};
use crate::sql::{agency_from_db, hash_from_db, seq_from_db, seq_to_db};

/// The advisory lock that serialises appends of every liaison instance sharing the
/// database ("liaison" in ASCII). Held to commit, so seqs are gapless across instances.
pub(crate) const SEQUENCE_LOCK: i64 = 0x006c_6961_6973_6f6e;

/// Runs one batch to COMMIT and returns its plan (the answers and what was written).
/// With `handoff_lease`, the batch's new deliveries are written leased for that long and
/// returned, ready to publish.
pub(crate) async fn commit_batch(
    pool: &PgPool,
    clock: &dyn Clock,
    requests: &[Request],
    handoff_lease: Option<Duration>,
) -> Result<(Plan, Vec<PendingDelivery>), LedgerError> {
    let mut tx = pool
        .begin()
        .await
        .map_err(LedgerError::query("starting a batch transaction"))?;

    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(SEQUENCE_LOCK)
        .execute(&mut *tx)
        .await
        .map_err(LedgerError::query("taking the sequencing lock"))?;
    // Read after the lock: under READ COMMITTED this statement sees every earlier commit.
    let last_seq: i64 =
        sqlx::query_scalar("SELECT coalesce(max(seq), 0)::bigint FROM ledger_entries")
            .fetch_one(&mut *tx)
            .await
            .map_err(LedgerError::query("reading the last seq"))?;

    let known = load_known_messages(&mut tx, requests).await?;
    let outbox = lock_outbox_rows(&mut tx, requests).await?;
    let context_first_seq = seq_from_db(last_seq)? + 1;
    let context = PlanContext {
        first_seq: context_first_seq,
        at: entry_time(clock),
        known,
        outbox,
    };
    let plan = plan::plan(requests, context);

    let leased = write(&mut tx, &plan.writes, handoff_lease).await?;
    // The Merkle tree grows in the same transaction as its leaves.
    let leaves: Vec<[u8; 32]> = plan.writes.entries.iter().map(|e| e.leaf_hash).collect();
    crate::tree::append(&mut tx, context_first_seq - 1, leaves.into_iter()).await?;
    tx.commit()
        .await
        .map_err(LedgerError::query("committing a batch"))?;
    Ok((plan, leased))
}

/// Entry times are stored in PostgreSQL, which keeps microseconds: truncating first makes
/// the time in the canonical bytes the same as the one read back.
fn entry_time(clock: &dyn Clock) -> OffsetDateTime {
    let now = clock.now().to_offset(UtcOffset::UTC);
    now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
        .unwrap_or(now)
}

async fn load_known_messages(
    conn: &mut PgConnection,
    requests: &[Request],
) -> Result<HashMap<Uuid, KnownMessage>, LedgerError> {
    let ids: Vec<Uuid> = requests
        .iter()
        .filter_map(|r| match r {
            Request::Accept(m) => Some(m.envelope.id),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(
        "SELECT m.id, m.seq, m.sender, m.sha256, m.route, e.recorded_at \
         FROM messages m JOIN ledger_entries e ON e.seq = m.seq \
         WHERE m.id = ANY($1)",
    )
    .bind(&ids)
    .fetch_all(&mut *conn)
    .await
    .map_err(LedgerError::query("looking up message ids"))?;
    rows.iter().map(known_message).collect()
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
    };
    let known = KnownMessage {
        sender: agency_from_db(row.try_get("sender").map_err(read)?)?,
        sha256: hash_from_db(row.try_get("sha256").map_err(read)?)?,
        receipt,
    };
    Ok((id, known))
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

async fn write(
    conn: &mut PgConnection,
    writes: &BatchWrites,
    handoff_lease: Option<Duration>,
) -> Result<Vec<PendingDelivery>, LedgerError> {
    insert_entries(conn, writes).await?;
    insert_messages(conn, writes).await?;
    let leased = insert_deliveries(conn, writes, handoff_lease).await?;
    update_deliveries(conn, writes).await?;
    Ok(leased)
}

async fn insert_entries(conn: &mut PgConnection, writes: &BatchWrites) -> Result<(), LedgerError> {
    let entries = &writes.entries;
    if entries.is_empty() {
        return Ok(());
    }
    let seqs = entries
        .iter()
        .map(|e| seq_to_db(e.seq))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "INSERT INTO ledger_entries (seq, recorded_at, kind, message_id, caseref, agency, entry, leaf_hash) \
         SELECT * FROM UNNEST($1::bigint[], $2::timestamptz[], $3::text[], $4::uuid[], $5::text[], \
                              $6::text[], $7::bytea[], $8::bytea[])",
    )
    .bind(seqs)
    .bind(entries.iter().map(|e| e.at).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.kind.as_str()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.message_id).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.caseref.as_deref()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.agency.as_deref()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| e.bytes.as_slice()).collect::<Vec<_>>())
    .bind(entries.iter().map(|e| &e.leaf_hash[..]).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(LedgerError::query("inserting ledger entries"))?;
    Ok(())
}

async fn insert_messages(conn: &mut PgConnection, writes: &BatchWrites) -> Result<(), LedgerError> {
    let messages = &writes.messages;
    if messages.is_empty() {
        return Ok(());
    }
    let seqs = messages
        .iter()
        .map(|m| seq_to_db(m.seq))
        .collect::<Result<Vec<_>, _>>()?;
    sqlx::query(
        "INSERT INTO messages (id, seq, sender, type, caseref, inreplyto, traceparent, channel, \
                               sha256, body, route, received_at) \
         SELECT * FROM UNNEST($1::uuid[], $2::bigint[], $3::text[], $4::text[], $5::text[], $6::uuid[], \
                              $7::text[], $8::text[], $9::bytea[], $10::bytea[], $11::jsonb[], \
                              $12::timestamptz[])",
    )
    .bind(messages.iter().map(|m| m.id).collect::<Vec<_>>())
    .bind(seqs)
    .bind(messages.iter().map(|m| m.sender.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.type_.as_str()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.caseref.as_deref()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.inreplyto).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.traceparent.as_deref()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.channel).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| &m.sha256[..]).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| &m.body[..]).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.route.clone()).collect::<Vec<_>>())
    .bind(messages.iter().map(|m| m.received_at).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(LedgerError::query("inserting messages"))?;
    Ok(())
}

/// Inserts the outbox rows; with `handoff_lease` they are written as the first attempt,
/// leased to this process, and returned as deliveries ready to publish.
async fn insert_deliveries(
    conn: &mut PgConnection,
    writes: &BatchWrites,
    handoff_lease: Option<Duration>,
) -> Result<Vec<PendingDelivery>, LedgerError> {
    let deliveries = &writes.new_deliveries;
    if deliveries.is_empty() {
        return Ok(Vec::new());
    }
    let leased_until = handoff_lease.map(|lease| writes.at + lease);
    let attempts: i32 = if handoff_lease.is_some() { 1 } else { 0 };
    let rows = sqlx::query(
        "INSERT INTO outbox (message_id, recipient, role, state, next_attempt_at, leased_until, attempts) \
         SELECT u.message_id, u.recipient, u.role, 'pending', $4, $5, $6 \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[]) AS u(message_id, recipient, role) \
         RETURNING delivery_id, message_id, recipient",
    )
    .bind(deliveries.iter().map(|d| d.message_id).collect::<Vec<_>>())
    .bind(
        deliveries
            .iter()
            .map(|d| d.recipient.as_str())
            .collect::<Vec<_>>(),
    )
    .bind(deliveries.iter().map(|d| d.role).collect::<Vec<_>>())
    .bind(writes.at)
    .bind(leased_until)
    .bind(attempts)
    .fetch_all(&mut *conn)
    .await
    .map_err(LedgerError::query("inserting outbox rows"))?;
    if handoff_lease.is_none() {
        return Ok(Vec::new());
    }
    let messages: HashMap<Uuid, &plan::MessageRow> =
        writes.messages.iter().map(|m| (m.id, m)).collect();
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
                traceparent: message.traceparent.clone(),
                body: message.body.clone(),
                attempt: attempts,
            })
        })
        .collect()
}

async fn update_deliveries(
    conn: &mut PgConnection,
    writes: &BatchWrites,
) -> Result<(), LedgerError> {
    let rows = &writes.delivery_updates;
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE outbox AS o SET state = u.state, next_attempt_at = u.next_attempt_at, \
                leased_until = u.leased_until, dispatched_at = u.dispatched_at, \
                acknowledged_at = u.acknowledged_at, last_error = u.last_error \
         FROM UNNEST($1::bigint[], $2::text[], $3::timestamptz[], $4::timestamptz[], \
                     $5::timestamptz[], $6::timestamptz[], $7::text[]) \
              AS u(delivery_id, state, next_attempt_at, leased_until, dispatched_at, acknowledged_at, last_error) \
         WHERE o.delivery_id = u.delivery_id",
    )
    .bind(rows.iter().map(|r| r.delivery_id).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.state.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.next_attempt_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.leased_until).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.dispatched_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.acknowledged_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.last_error.as_deref()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await
    .map_err(LedgerError::query("updating outbox rows"))?;
    Ok(())
}
