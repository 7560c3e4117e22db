//! Leasing due deliveries to the relay.

use std::time::Duration;

use bytes::Bytes;
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use time::OffsetDateTime;

use crate::error::LedgerError;
use crate::keys::{KeyColumns, Keyring, Opened, open_stored};
use crate::model::{PendingDelivery, RecordedDelivery};
use crate::sql::{agency_from_db, hash_from_db, seq_from_db};

/// Leases up to `limit` due pending deliveries in one statement. `SKIP LOCKED` lets several
/// relays (of one or many instances) claim side by side without waiting on each other; the
/// lease keeps a row from being claimed again until the relay reports its outcome or dies.
pub(crate) async fn claim(
    pool: &PgPool,
    keyring: Option<&Keyring>,
    now: OffsetDateTime,
    limit: i64,
    lease: Duration,
) -> Result<Vec<PendingDelivery>, LedgerError> {
    let leased_until = now + lease;
    let rows = sqlx::query(
        "WITH due AS ( \
             SELECT delivery_id FROM outbox \
             WHERE state = 'pending' AND next_attempt_at <= $1 \
               AND (leased_until IS NULL OR leased_until <= $1) \
             ORDER BY next_attempt_at, delivery_id \
             LIMIT $3 \
             FOR UPDATE SKIP LOCKED \
         ), claimed AS ( \
             UPDATE outbox AS o SET leased_until = $2, attempts = o.attempts + 1 \
             WHERE o.delivery_id IN (SELECT delivery_id FROM due) \
             RETURNING o.delivery_id, o.message_id, o.recipient, o.attempts \
         ) \
         SELECT c.delivery_id, c.message_id, c.recipient, c.attempts, \
                m.type, m.seq, m.caseref, COALESCE(m.trace_context, m.traceparent) AS traceparent, m.body, \
                k.kek_id, k.wrapped, k.erased_seq \
         FROM claimed c JOIN messages m ON m.id = c.message_id \
         LEFT JOIN message_keys k ON k.message_id = m.id \
         ORDER BY c.delivery_id",
    )
    .bind(now)
    .bind(leased_until)
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(LedgerError::query("claiming deliveries"))?;
    // An erasure withdraws its messages' pending deliveries in its own transaction, so an
    // erased body is never claimed; were one, it would fail to open here, not go out.
    rows.iter()
        .map(|row| Ok(pending_delivery(row, keyring)?.0))
        .collect()
}

/// The delivery of `row`, its body opened, and the seq of the erasure that destroyed its
/// key (the body is then empty).
fn pending_delivery(
    row: &PgRow,
    keyring: Option<&Keyring>,
) -> Result<(PendingDelivery, Option<u64>), LedgerError> {
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("claimed delivery: {e}"));
    let message_id = row.try_get("message_id").map_err(read)?;
    let (body, erased_by) = match open_stored(
        keyring,
        message_id,
        row.try_get("body").map_err(read)?,
        KeyColumns::from_row(row).map_err(read)?,
    )? {
        Opened::Body(body) => (Bytes::from(body), None),
        Opened::Erased(seq) => (Bytes::new(), Some(seq)),
    };
    let delivery = PendingDelivery {
        delivery_id: row.try_get("delivery_id").map_err(read)?,
        message_id,
        recipient: agency_from_db(row.try_get("recipient").map_err(read)?)?,
        type_: row.try_get("type").map_err(read)?,
        seq: seq_from_db(row.try_get("seq").map_err(read)?)?,
        caseref: row.try_get("caseref").map_err(read)?,
        traceparent: row.try_get("traceparent").map_err(read)?,
        body,
        attempt: row.try_get("attempts").map_err(read)?,
    };
    Ok((delivery, erased_by))
}

/// One outbox row with the recorded message it delivers, whatever its state: what the
/// broker itself knows of a delivery, against which a dead letter is checked.
pub(crate) async fn recorded(
    pool: &PgPool,
    keyring: Option<&Keyring>,
    delivery_id: i64,
) -> Result<Option<RecordedDelivery>, LedgerError> {
    let row = sqlx::query(
        "SELECT o.delivery_id, o.message_id, o.recipient, o.attempts, o.state, \
                m.type, m.seq, m.caseref, COALESCE(m.trace_context, m.traceparent) AS traceparent, m.body, m.sha256, \
                k.kek_id, k.wrapped, k.erased_seq \
         FROM outbox o JOIN messages m ON m.id = o.message_id \
         LEFT JOIN message_keys k ON k.message_id = m.id \
         WHERE o.delivery_id = $1",
    )
    .bind(delivery_id)
    .fetch_optional(pool)
    .await
    .map_err(LedgerError::query("reading a delivery"))?;
    let Some(row) = row else { return Ok(None) };
    let read = |e: sqlx::Error| LedgerError::Corrupt(format!("recorded delivery: {e}"));
    let (delivery, erased_by) = pending_delivery(&row, keyring)?;
    Ok(Some(RecordedDelivery {
        delivery,
        state: row.try_get("state").map_err(read)?,
        sha256: hash_from_db(row.try_get("sha256").map_err(read)?)?,
        erased_by,
    }))
}
