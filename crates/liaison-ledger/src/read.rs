//! Read-only queries: messages, their deliveries, traces and raw entries.

use bytes::Bytes;
use liaison_core::{AgencyCode, Entry, EntryKind, OriginalMessage, Recipient, Route};
use sqlx::postgres::PgRow;
use sqlx::{PgPool, Row};
use uuid::Uuid;

use crate::error::LedgerError;
use crate::keys::{KeyColumns, Keyring, Opened, open_stored};
use crate::model::{DeliveryState, StoredEntry, StoredMessage, TraceKey, role_from_str};
use crate::sql::{agency_from_db, hash_from_db, seq_from_db, seq_to_db};

fn corrupt(what: &'static str) -> impl Fn(sqlx::Error) -> LedgerError {
    move |e| LedgerError::Corrupt(format!("{what}: {e}"))
}

/// Who sent message `id` and who it was routed to, as its `message.accepted` entry records
/// them: the canonical bytes the Merkle tree covers, not the copies in `messages` or the
/// working rows in `outbox`. Read authorization and reply routing depend on these, so they
/// must come from what `liaison ledger verify` proves and a changed copy cannot forge.
struct AcceptedParties {
    seq: u64,
    sender: AgencyCode,
    type_: String,
    caseref: Option<String>,
    inreplyto: Option<Uuid>,
    recipients: Vec<Recipient>,
}

/// Reads the accepted entry the `messages` row of `id` points at and checks that it is
/// that message's acceptance.
fn accepted_parties(
    id: Uuid,
    seq: i64,
    entry: Option<Vec<u8>>,
) -> Result<AcceptedParties, LedgerError> {
    let bad = |why: &str| {
        LedgerError::Corrupt(format!("message {id}: {why} (run `liaison ledger verify`)"))
    };
    let seq = seq_from_db(seq)?;
    let bytes = entry.ok_or_else(|| bad("its accepted entry is missing"))?;
    let entry = Entry::from_canonical(&bytes).map_err(|_| bad("its entry is not canonical"))?;
    if entry.kind != EntryKind::MessageAccepted || entry.message != Some(id) || entry.seq != seq {
        return Err(bad("its row points at an entry that does not accept it"));
    }
    let sender = entry
        .agency
        .ok_or_else(|| bad("its accepted entry names no sender"))?;
    let recipients: Vec<Recipient> = serde_json::from_value(entry.detail["recipients"].clone())
        .map_err(|_| bad("its accepted entry records no readable route"))?;
    let type_ = entry.detail["type"]
        .as_str()
        .ok_or_else(|| bad("its accepted entry records no type"))?
        .to_owned();
    let inreplyto = match entry.detail.get("inreplyto").and_then(|v| v.as_str()) {
        Some(s) => Some(Uuid::parse_str(s).map_err(|_| bad("its inreplyto is not a UUID"))?),
        None => None,
    };
    Ok(AcceptedParties {
        seq,
        sender,
        type_,
        caseref: entry.caseref,
        inreplyto,
        recipients,
    })
}

/// The parties of the message `id` from a row holding its `seq` and its accepted `entry`.
fn row_parties(row: &PgRow, id: Uuid) -> Result<AcceptedParties, LedgerError> {
    let read = corrupt("messages row");
    accepted_parties(
        id,
        row.try_get("seq").map_err(&read)?,
        row.try_get("entry").map_err(&read)?,
    )
}

pub(crate) async fn original(
    pool: &PgPool,
    id: Uuid,
) -> Result<Option<OriginalMessage>, LedgerError> {
    let row = sqlx::query(
        "SELECT m.seq, e.entry FROM messages m LEFT JOIN ledger_entries e ON e.seq = m.seq \
         WHERE m.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(LedgerError::query("reading an original message"))?;
    let Some(row) = row else { return Ok(None) };
    let parties = row_parties(&row, id)?;
    Ok(Some(OriginalMessage {
        caseref: parties.caseref,
        ..OriginalMessage::from_route(
            id,
            parties.type_,
            parties.sender,
            &Route {
                recipients: parties.recipients,
            },
        )
    }))
}

pub(crate) async fn message(
    pool: &PgPool,
    keyring: Option<&Keyring>,
    id: Uuid,
) -> Result<Option<StoredMessage>, LedgerError> {
    let row = sqlx::query(
        "SELECT m.seq, m.body, m.received_at, e.entry, k.kek_id, k.wrapped, k.erased_seq \
         FROM messages m LEFT JOIN ledger_entries e ON e.seq = m.seq \
         LEFT JOIN message_keys k ON k.message_id = m.id WHERE m.id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await
    .map_err(LedgerError::query("reading a message"))?;
    let Some(row) = row else { return Ok(None) };
    let read = corrupt("messages row");
    let parties = row_parties(&row, id)?;
    let stored: Vec<u8> = row.try_get("body").map_err(&read)?;
    let (body, erased_by) = match open_stored(
        keyring,
        id,
        stored,
        KeyColumns::from_row(&row).map_err(&read)?,
    )? {
        Opened::Body(body) => (Bytes::from(body), None),
        Opened::Erased(seq) => (Bytes::new(), Some(seq)),
    };
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

    Ok(Some(StoredMessage {
        id,
        seq: parties.seq,
        sender: parties.sender,
        type_: parties.type_,
        caseref: parties.caseref,
        inreplyto: parties.inreplyto,
        recipients: parties.recipients,
        body,
        erased_by,
        received_at: row.try_get("received_at").map_err(&read)?,
        deliveries,
    }))
}

pub(crate) async fn is_case_party(
    pool: &PgPool,
    caseref: &str,
    agency: &AgencyCode,
) -> Result<bool, LedgerError> {
    // Through the case's entries (indexed by caseref), then each acceptance's message row.
    let row = sqlx::query(
        "SELECT EXISTS ( \
             SELECT 1 FROM ledger_entries e JOIN messages m ON m.seq = e.seq \
             WHERE e.caseref = $1 AND e.kind = 'message.accepted' \
               AND (e.agency = $2 \
                    OR m.route -> 'recipients' @> jsonb_build_array(jsonb_build_object('agency', $2::text))) \
         ) AS party",
    )
    .bind(caseref)
    .bind(agency.as_str())
    .fetch_one(pool)
    .await
    .map_err(LedgerError::query("reading the parties of a case"))?;
    row.try_get("party").map_err(corrupt("case parties"))
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
