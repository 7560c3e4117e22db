//! The data the ledger takes in and hands out.

use bytes::Bytes;
use liaison_core::clocks::ClockIntent;
use liaison_core::{
    AgencyCode, CaseMoves, Channel, Envelope, Recipient, RecipientRole, RejectCode, Route,
};
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

/// A message that passed every check, to be recorded with its recipients.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub envelope: Envelope,
    pub sender: AgencyCode,
    pub channel: Channel,
    /// The bytes exactly as the sender submitted them.
    pub bytes: Bytes,
    pub received_at: OffsetDateTime,
    pub route: Route,
    pub case: CaseIntent,
    /// The traceparent of the broker's span that accepted it; each delivery's span is a
    /// child of it (`messages.trace_context`).
    pub trace_context: Option<String>,
}

/// What a message does to its case, as far as the message alone decides it. The committer
/// applies it against the case as the ledger holds it when the message is recorded.
#[derive(Clone, Debug, Default)]
pub struct CaseIntent {
    /// The case reference the message inherits from the message it answers, when it
    /// carries none itself (`envelope.caseref` is used otherwise). With neither, a type that
    /// opens a matter gets one assigned.
    pub caseref: Option<String>,
    pub moves: CaseMoves,
    /// The clocks the message could start or stop; a watcher's notice names its stage.
    pub clocks: ClockIntent,
}

/// What the sender is told once its message is durably recorded.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AcceptReceipt {
    pub id: Uuid,
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub recorded_at: OffsetDateTime,
    pub recipients: Vec<Recipient>,
    /// The message's case, assigned by liaison when it opened one without a reference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caseref: Option<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum AcceptOutcome {
    /// Newly recorded.
    Recorded(AcceptReceipt),
    /// The same sender already submitted this id with the same bytes: the first receipt.
    Duplicate(AcceptReceipt),
    /// The id is taken by other bytes or another sender. `same_sender` says whether the
    /// message holding it came from the same sender: only then may the submitter be told
    /// where it is (`existing_seq`), since another agency's entries are not its to learn.
    Conflict {
        existing_seq: u64,
        same_sender: bool,
    },
    /// Its case refused it (not a party, an invalid transition…): the rejection is
    /// recorded at `seq`, in the same batch.
    Refused {
        seq: u64,
        code: RejectCode,
        detail: String,
    },
}

/// A refused submission, recorded so that refusals are audited too.
///
/// Only fields that passed their checks belong here, and `message_id` and `caseref` only
/// when the sender is entitled to them: they become the entry's `message` and `caseref`,
/// which index it into that message's or case's trace and proofs. What the submission
/// claimed beyond that goes into [`Claimed`]. The ledger drops a `caseref` or `type_` that
/// is not well-formed whatever the caller passes, so no content can fail a batch.
#[derive(Clone, Debug)]
pub struct NewRejection {
    /// `None` when the client could not be authenticated.
    pub sender: Option<AgencyCode>,
    pub channel: Channel,
    pub message_id: Option<Uuid>,
    pub caseref: Option<String>,
    /// A message type of the catalogue.
    pub type_: Option<String>,
    /// Recorded in the entry's `detail.claimed` only, never indexed.
    pub claimed: Claimed,
    pub code: RejectCode,
    pub bytes_sha256: [u8; 32],
    pub size: usize,
    pub errors: Vec<RejectionDetail>,
}

/// The refusals of one sender over its refusal budget in one interval, to be recorded as
/// one `message.rejections_summarized` entry.
#[derive(Clone, Debug, PartialEq)]
pub struct NewRejectionSummary {
    /// `None`: submissions that carried no identity.
    pub sender: Option<AgencyCode>,
    pub summary: liaison_core::detail::RejectionSummary,
}

/// What a refused submission said it was about, when its sender is no party to that
/// message or case (or could not be identified): kept as evidence of the attempt, without
/// attaching the rejection to someone else's trace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Claimed {
    pub message_id: Option<Uuid>,
    pub caseref: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RejectionDetail {
    pub pointer: String,
    pub keyword: String,
    pub message: String,
}

/// A delivery leased to the relay by [`crate::Ledger::claim_deliveries`].
#[derive(Clone, Debug)]
pub struct PendingDelivery {
    pub delivery_id: i64,
    pub message_id: Uuid,
    pub recipient: AgencyCode,
    pub type_: String,
    pub seq: u64,
    pub caseref: Option<String>,
    /// The trace the delivery continues: the accepting span's traceparent, or for messages
    /// accepted before it was kept, the CloudEvent's own.
    pub traceparent: Option<String>,
    pub body: Bytes,
    /// 1 for the first attempt.
    pub attempt: i32,
}

/// A delivery as the ledger recorded it: its outbox row (`delivery.attempt` is the attempts
/// so far) and the message it carries, with the SHA-256 of the message's bytes.
#[derive(Clone, Debug)]
pub struct RecordedDelivery {
    pub delivery: PendingDelivery,
    /// `pending`, `dispatched`, `acknowledged` or `dead`.
    pub state: String,
    pub sha256: [u8; 32],
    /// The seq of the `case.erased` entry that destroyed the body's key (the body is then
    /// empty): such a delivery is never sent again.
    pub erased_by: Option<u64>,
}

/// An administrator's reading of a message's masked personal data, to be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewReveal {
    pub message_id: Uuid,
    pub caseref: Option<String>,
    /// The administrator's agency.
    pub by: AgencyCode,
    /// JSON pointers of the fields shown.
    pub fields: Vec<String>,
}

/// An administrator's erasure of a case's personal data (PIPL Art. 47), to be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewErasure {
    pub caseref: String,
    /// The legal basis, as the administrator wrote it.
    pub basis: String,
    /// The administrator's agency; `None` from the command line.
    pub by: Option<AgencyCode>,
    /// `api` or `cli`.
    pub via: String,
}

/// What an erasure request came to, once committed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum ErasureOutcome {
    /// The `case.erased` entry `seq` records it; the data keys of `messages` are destroyed.
    Erased {
        seq: u64,
        messages: Vec<liaison_core::detail::ErasedMessage>,
    },
    /// Every message of the case was erased before, by these entries; nothing recorded.
    AlreadyErased { seqs: Vec<u64> },
    /// The ledger holds no accepted message of the case; nothing recorded.
    UnknownCase,
    /// Some of the case's bodies are stored in clear (before the ledger sealed bodies, or by
    /// a broker without a key-encryption key): they cannot be erased, so nothing is.
    StoredInClear { messages: Vec<Uuid> },
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// RabbitMQ confirmed the message into the recipient's queue.
    Dispatched { delivery_id: i64 },
    /// The attempt failed; the delivery becomes due again at `retry_at`.
    Failed {
        delivery_id: i64,
        error: String,
        retry_at: OffsetDateTime,
    },
    /// The delivery is in the dead-letter queue: `by` is `relay` (it gave up after its
    /// last attempt) or `rabbitmq` (rejected, or over the queue's delivery limit).
    /// Recorded once per time it dies; a repeat while it is dead changes nothing.
    DeadLettered {
        delivery_id: i64,
        reason: String,
        by: String,
        queue: Option<String>,
    },
    /// An operator republished the dead delivery into its recipient's queue; `by` is the
    /// administrator's agency when it was done from the console.
    Redriven {
        delivery_id: i64,
        by: Option<AgencyCode>,
    },
}

impl DeliveryOutcome {
    pub fn delivery_id(&self) -> i64 {
        match self {
            Self::Dispatched { delivery_id }
            | Self::Failed { delivery_id, .. }
            | Self::DeadLettered { delivery_id, .. }
            | Self::Redriven { delivery_id, .. } => *delivery_id,
        }
    }
}

/// A stored message. `sender`, `type_`, `caseref`, `inreplyto` and `recipients` are read
/// from its `message.accepted` entry (the audited bytes), so they decide who may read it;
/// `deliveries` are the outbox's working state.
#[derive(Clone, Debug)]
pub struct StoredMessage {
    pub id: Uuid,
    pub seq: u64,
    pub sender: AgencyCode,
    /// The route recorded at acceptance.
    pub recipients: Vec<Recipient>,
    pub type_: String,
    pub caseref: Option<String>,
    pub inreplyto: Option<Uuid>,
    /// The bytes the sender posted; empty when the message was erased.
    pub body: Bytes,
    /// The seq of the `case.erased` entry that destroyed the body's key, if one did.
    pub erased_by: Option<u64>,
    pub received_at: OffsetDateTime,
    pub deliveries: Vec<DeliveryState>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeliveryState {
    pub delivery_id: i64,
    pub recipient: AgencyCode,
    pub role: RecipientRole,
    /// `pending`, `dispatched`, `acknowledged` or `dead`.
    pub state: String,
    pub attempts: i32,
    #[serde(with = "time::serde::rfc3339::option")]
    pub dispatched_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub acknowledged_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// What to trace: one message (with the messages answering it) or a whole case.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceKey {
    Message(Uuid),
    Case(String),
}

impl TraceKey {
    /// A UUID names a message; anything else is taken as a case reference.
    pub fn parse(s: &str) -> TraceKey {
        match Uuid::parse_str(s) {
            Ok(id) => Self::Message(id),
            Err(_) => Self::Case(s.to_owned()),
        }
    }
}

/// One ledger entry as stored: the canonical bytes the audit hash covers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEntry {
    pub seq: u64,
    pub entry: Bytes,
    pub leaf_hash: [u8; 32],
}

/// The `role` column's spelling, the same as the serde name.
pub(crate) fn role_as_str(role: RecipientRole) -> &'static str {
    match role {
        RecipientRole::To => "to",
        RecipientRole::Cc => "cc",
    }
}

pub(crate) fn role_from_str(s: &str) -> Option<RecipientRole> {
    match s {
        "to" => Some(RecipientRole::To),
        "cc" => Some(RecipientRole::Cc),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_key_reads_uuids_as_messages_and_the_rest_as_cases() {
        let id = Uuid::now_v7();
        assert_eq!(TraceKey::parse(&id.to_string()), TraceKey::Message(id));
        assert_eq!(
            TraceKey::parse("SD-2026-0001"),
            TraceKey::Case("SD-2026-0001".into())
        );
    }

    #[test]
    fn role_spelling_matches_serde() {
        for role in [RecipientRole::To, RecipientRole::Cc] {
            assert_eq!(
                serde_json::to_value(role).unwrap(),
                serde_json::json!(role_as_str(role))
            );
            assert_eq!(role_from_str(role_as_str(role)), Some(role));
        }
    }
}
