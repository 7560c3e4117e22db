//! Read-only queries: messages, their deliveries, traces and raw entries.

use bytes::Bytes;
use liaison_core::{Entry, OriginalMessage, Route};
use sqlx::postgres::PgRow;
use sqlx::types::Json;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::error::LedgerError;
use crate::model::{DeliveryState, StoredEntry, StoredMessage, TraceKey, role_from_str};
use crate::sql::{agency_from_db, hash_from_db, seq_from_db, seq_to_db};

fn corrupt(what: &'static str) -> impl Fn(sqlx::Error) -> LedgerError {
    move |e| LedgerError::Corrupt(format!("{what}: {e}"))
}

pub(crate) async fn original(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<OriginalMessage>, LedgerError> {
    let row = sqlx::query("SELECT sender, type, route FROM messages WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(LedgerError::query("reading an original message"))?;
    let Some(row) = row else { return Ok(None) };
    let read = corrupt("messages row");
    let Json(route): Json<Route> = row.try_get("route").map_err(&read)?;
    Ok(Some(OriginalMessage::from_route(
        id,
        row.try_get("type").map_err(&read)?,
        agency_from_db(row.try_get("sender").map_err(&read)?)?,
        &route,
    )))
}

pub(crate) async fn message(pool: &PgPool, id: Uuid) -> Result<Option<StoredMessage>, LedgerError> {
    let row = sqlx::query(
        "SELECT seq, sender, type, caseref, inreplyto, body, received_at FROM messages WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(LedgerError::query("reading a message"))?;
    let Some(row) = row else { return Ok(None) };
    let deliveries = sqlx::query(
        "SELECT delivery_id, recipient, role, state, attempts, dispatched_at, acknowledged_at, last_error \
         FROM outbox WHERE message_id = $1 ORDER BY delivery_id",
    )
    .bind(id)
    .fetch_all(pool)
    .await
    .map_err(LedgerError::query("reading a message's deliveries"))?
    .iter()
    .map(delivery_state)
    .collect::<Result<Vec<_>, _>>()?;

    let read = corrupt("messages row");
    Ok(Some(StoredMessage {
        id,
        seq: seq_from_db(row.try_get("seq").map_err(&read)?)?,
        sender: agency_from_db(row.try_get("sender").map_err(&read)?)?,
        type_: row.try_get("type").map_err(&read)?,
        caseref: row.try_get("caseref").map_err(&read)?,
        inreplyto: row.try_get("inreplyto").map_err(&read)?,
        body: Bytes::from(row.try_get::<Vec<u8>, _>("body").map_err(&read)?),
        received_at: row.try_get("received_at").map_err(&read)?,
        deliveries,
    }))
}

fn delivery_state(row: &PgRow) -> Result<DeliveryState, LedgerError> {
    let read = corrupt("outbox row");
    let role: String = row.try_get("role").map_err(&read)?;
    Ok(DeliveryState {
        delivery_id: row.try_get("delivery_id").map_err(&read)?,
        recipient: agency_from_db(row.try_get("recipient").map_err(&read)?)?,
        role: role_from_str(&role)
            .ok_or_else(|| LedgerError::Corrupt(format!("outbox role {role:?}")))?,
        state: row.try_get("state").map_err(&read)?,
        attempts: row.try_get("attempts").map_err(&read)?,
        dispatched_at: row.try_get("dispatched_at").map_err(&read)?,
        acknowledged_at: row.try_get("acknowledged_at").map_err(&read)?,
        last_error: row.try_get("last_error").map_err(&read)?,
    })
}

pub(crate) async fn trace(pool: &PgPool, key: &TraceKey) -> Result<Vec<Entry>, LedgerError> {
    let rows = match key {
        TraceKey::Message(id) => {
            sqlx::query(
                "SELECT seq, entry FROM ledger_entries \
             WHERE message_id = $1 \
                OR message_id IN (SELECT id FROM messages WHERE inreplyto = $1) \
             ORDER BY seq",
            )
            .bind(id)
            .fetch_all(pool)
            .await
        }
        TraceKey::Case(caseref) => {
            sqlx::query("SELECT seq, entry FROM ledger_entries WHERE caseref = $1 ORDER BY seq")
                .bind(caseref)
                .fetch_all(pool)
                .await
        }
    }
    .map_err(LedgerError::query("tracing"))?;
    rows.iter()
        .map(|row| {
            let read = corrupt("ledger entry");
            let seq: i64 = row.try_get("seq").map_err(&read)?;
            let bytes: Vec<u8> = row.try_get("entry").map_err(&read)?;
            Entry::from_canonical(&bytes).map_err(|e| {
                LedgerError::Corrupt(format!("entry {seq} is not a canonical entry: {e}"))
            })
        })
        .collect()
}

pub(crate) async fn entries(
    pool: &PgPool,
    from_seq: u64,
    limit: i64,
) -> Result<Vec<StoredEntry>, LedgerError> {
    let rows = sqlx::query(
        "SELECT seq, entry, leaf_hash FROM ledger_entries WHERE seq >= $1 ORDER BY seq LIMIT $2",
    )
    .bind(seq_to_db(from_seq)?)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(LedgerError::query("reading ledger entries"))?;
    rows.iter()
        .map(|row| {
            let read = corrupt("ledger entry");
            Ok(StoredEntry {
                seq: seq_from_db(row.try_get("seq").map_err(&read)?)?,
                entry: Bytes::from(row.try_get::<Vec<u8>, _>("entry").map_err(&read)?),
                leaf_hash: hash_from_db(row.try_get("leaf_hash").map_err(&read)?)?,
            })
        })
        .collect()
}
