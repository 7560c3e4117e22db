//! Turns one batch of requests into the rows to write and the answers to give, without
//! touching the database: sequencing, duplicate detection and entry contents live here.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use liaison_core::envelope::is_well_formed_caseref;
use liaison_core::{AgencyCode, Entry, EntryKind, Recipient, ThreadStep, audit, detail};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tracing::warn;
use uuid::Uuid;

use super::cases::{CaseBook, CaseRefusal, CaseWrites};
use super::{Answer, Request};
use crate::model::{
    AcceptOutcome, AcceptReceipt, Claimed, DeliveryOutcome, ErasureOutcome, NewErasure, NewMessage,
    NewRejection, NewReveal, role_as_str,
};

/// A rejection records at most this many schema errors; the rest are only counted.
pub(crate) const MAX_RECORDED_ERRORS: usize = 20;

/// Each recorded error text is cut to this many characters: a schema message may quote
/// the offending value, which can be most of a megabyte.
pub(crate) const MAX_ERROR_TEXT: usize = 512;

/// A typed detail as the entry's JSON.
fn typed<T: serde::Serialize>(detail: &T) -> Value {
    serde_json::to_value(detail).expect("an entry detail serializes")
}

fn bounded(text: &str) -> String {
    match text.char_indices().nth(MAX_ERROR_TEXT) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// A message type name as the envelope schema spells one (`pil.lead.v1`), bounded.
fn is_type_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-'))
}

/// An accepted message already known to the ledger (or earlier in this batch).
#[derive(Clone, Debug)]
pub(crate) struct KnownMessage {
    pub sender: AgencyCode,
    pub sha256: [u8; 32],
    pub receipt: AcceptReceipt,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DeliveryStatus {
    Pending,
    Dispatched,
    Acknowledged,
    /// In the dead-letter queue until an operator redrives it.
    Dead,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Dispatched => "dispatched",
            Self::Acknowledged => "acknowledged",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::Pending,
            Self::Dispatched,
            Self::Acknowledged,
            Self::Dead,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }
}

/// An outbox row as locked at the start of the batch, then as the batch leaves it.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct OutboxRow {
    pub delivery_id: i64,
    pub message_id: Uuid,
    /// The message's case reference, copied into delivery entries.
    pub caseref: Option<String>,
    pub recipient: AgencyCode,
    pub state: DeliveryStatus,
    pub attempts: i32,
    pub next_attempt_at: OffsetDateTime,
    pub leased_until: Option<OffsetDateTime>,
    pub dispatched_at: Option<OffsetDateTime>,
    pub acknowledged_at: Option<OffsetDateTime>,
    pub last_error: Option<String>,
}

/// What the batch starts from, read under the sequencing lock.
pub(crate) struct PlanContext {
    pub first_seq: u64,
    pub at: OffsetDateTime,
    pub known: HashMap<Uuid, KnownMessage>,
    pub outbox: HashMap<i64, OutboxRow>,
    pub cases: CaseBook,
    /// The batch's accepted bodies, sealed (empty when bodies are stored in clear).
    pub sealed: HashMap<Uuid, crate::keys::Sealed>,
    /// The messages of the cases the batch erases, by case reference.
    pub case_keys: HashMap<String, Vec<CaseKey>>,
}

/// A message of a case to erase, as the batch found it.
#[derive(Clone, Debug)]
pub(crate) struct CaseKey {
    pub message_id: Uuid,
    pub seq: u64,
    /// Its body is sealed and its data key still there.
    pub sealed: bool,
    /// The `case.erased` entry that destroyed its key.
    pub erased_seq: Option<u64>,
}

pub(crate) struct EntryRow {
    pub seq: u64,
    pub at: OffsetDateTime,
    pub kind: EntryKind,
    pub message_id: Option<Uuid>,
    pub caseref: Option<String>,
    pub agency: Option<String>,
    pub bytes: Vec<u8>,
    pub leaf_hash: [u8; 32],
}

pub(crate) struct MessageRow {
    pub id: Uuid,
    pub seq: u64,
    pub sender: String,
    pub type_: String,
    pub caseref: Option<String>,
    pub inreplyto: Option<Uuid>,
    pub traceparent: Option<String>,
    pub trace_context: Option<String>,
    pub channel: &'static str,
    pub sha256: [u8; 32],
    /// The bytes posted, for handing straight to the relay.
    pub body: Bytes,
    /// What `messages.body` stores: the sealed body, or the posted bytes in clear.
    pub stored: Bytes,
    /// The wrapped data key of a sealed body: (KEK id, wrapped key).
    pub key: Option<(String, Vec<u8>)>,
    pub route: Value,
    pub received_at: OffsetDateTime,
}

pub(crate) struct NewDelivery {
    pub message_id: Uuid,
    pub recipient: String,
    pub role: &'static str,
}

/// Everything one batch writes, in one statement per table.
pub(crate) struct BatchWrites {
    /// The batch's one time: of its entries, and when its new deliveries become due.
    pub at: OffsetDateTime,
    pub entries: Vec<EntryRow>,
    pub messages: Vec<MessageRow>,
    pub new_deliveries: Vec<NewDelivery>,
    pub delivery_updates: Vec<OutboxRow>,
    pub cases: CaseWrites,
    /// Data keys to destroy: (message, seq of the `case.erased` entry).
    pub erasures: Vec<(Uuid, u64)>,
}

pub(crate) struct Plan {
    pub writes: BatchWrites,
    /// One answer per request, in request order.
    pub answers: Vec<Answer>,
}

pub(crate) fn plan(requests: &[Request], context: PlanContext) -> Plan {
    let mut planner = Planner {
        next_seq: context.first_seq,
        at: context.at,
        known: context.known,
        outbox: context.outbox,
        cases: context.cases,
        sealed: context.sealed,
        case_keys: context.case_keys,
        changed: BTreeSet::new(),
        writes: BatchWrites {
            at: context.at,
            entries: Vec::new(),
            messages: Vec::new(),
            new_deliveries: Vec::new(),
            delivery_updates: Vec::new(),
            cases: CaseWrites::default(),
            erasures: Vec::new(),
        },
    };
    let answers = requests
        .iter()
        .map(|request| match request {
            Request::Accept(message) => Answer::Accepted(planner.accept(message)),
            Request::Reject(rejection) => Answer::Rejected(planner.reject(rejection)),
            Request::SummarizeRejections(summary) => Answer::Rejected(planner.push_entry(
                EntryKind::RejectionsSummarized,
                None,
                None,
                summary.sender.as_ref(),
                typed(&summary.summary),
            )),
            Request::Deliveries(outcomes) => {
                planner.deliveries(outcomes);
                Answer::DeliveriesRecorded
            }
            Request::Acknowledge {
                delivery_id,
                agency,
            } => Answer::Acknowledged(planner.acknowledge(*delivery_id, agency)),
            Request::Reveal(reveal) => Answer::Revealed(planner.reveal(reveal)),
            Request::Erase(erasure) => Answer::Erased(planner.erase(erasure)),
        })
        .collect();
    let mut writes = planner.writes;
    // A delivery touched twice in one batch is written once, in its final state: an
    // UPDATE … FROM UNNEST with repeated keys would apply an arbitrary one of them.
    writes.delivery_updates = planner
        .changed
        .into_iter()
        .filter_map(|id| planner.outbox.get(&id).cloned())
        .collect();
    writes.cases = planner.cases.into_writes();
    Plan { writes, answers }
}

struct Planner {
    next_seq: u64,
    at: OffsetDateTime,
    known: HashMap<Uuid, KnownMessage>,
    outbox: HashMap<i64, OutboxRow>,
    cases: CaseBook,
    sealed: HashMap<Uuid, crate::keys::Sealed>,
    case_keys: HashMap<String, Vec<CaseKey>>,
    changed: BTreeSet<i64>,
    writes: BatchWrites,
}

impl Planner {
    fn accept(&mut self, message: &NewMessage) -> AcceptOutcome {
        let envelope = &message.envelope;
        let sha256 = audit::sha256(&message.bytes);
        if let Some(known) = self.known.get(&envelope.id) {
            return if known.sender == message.sender && known.sha256 == sha256 {
                AcceptOutcome::Duplicate(known.receipt.clone())
            } else {
                AcceptOutcome::Conflict {
                    existing_seq: known.receipt.seq,
                    same_sender: known.sender == message.sender,
                }
            };
        }

        let placement = match self.cases.place(message, self.at) {
            Ok(placement) => placement,
            Err(refusal) => return self.refuse_for_case(message, sha256, *refusal),
        };
        let caseref = placement.as_ref().map(|p| p.caseref.clone());

        let recipients = &message.route.recipients;
        let detail = detail::Accepted {
            type_: envelope.type_.clone(),
            channel: message.channel.as_str().to_owned(),
            sha256: hex::encode(sha256),
            size: message.bytes.len() as u64,
            inreplyto: envelope.inreplyto,
            recipients: recipients.clone(),
            case: placement.as_ref().and_then(|p| p.step.clone()),
            caseref_assigned: placement.as_ref().is_some_and(|p| p.assigned.is_some()),
            clocks: placement
                .as_ref()
                .map(|p| p.clocks.clone())
                .unwrap_or_default(),
            clock_stage: placement.as_ref().and_then(|p| p.stage.clone()),
        };
        let seq = self.push_entry(
            EntryKind::MessageAccepted,
            Some(envelope.id),
            caseref.clone(),
            Some(&message.sender),
            typed(&detail),
        );
        if let Some(placement) = &placement {
            self.cases.record(placement, message, seq, self.at);
        }

        let (stored, key) = match self.sealed.remove(&envelope.id) {
            Some(sealed) => (
                Bytes::from(sealed.body),
                Some((sealed.kek_id, sealed.wrapped)),
            ),
            None => (message.bytes.clone(), None),
        };
        self.writes.messages.push(MessageRow {
            id: envelope.id,
            seq,
            sender: message.sender.as_str().to_owned(),
            type_: envelope.type_.clone(),
            caseref: caseref.clone(),
            inreplyto: envelope.inreplyto,
            traceparent: envelope.traceparent.clone(),
            trace_context: message.trace_context.clone(),
            channel: message.channel.as_str(),
            sha256,
            body: message.bytes.clone(),
            stored,
            key,
            // The same shape as `Route`'s serde form, so it reads back as a `Route`.
            route: json!({ "recipients": recipients_json(recipients) }),
            received_at: message.received_at,
        });
        self.writes
            .new_deliveries
            .extend(recipients.iter().map(|r| NewDelivery {
                message_id: envelope.id,
                recipient: r.agency.as_str().to_owned(),
                role: role_as_str(r.role),
            }));

        let receipt = AcceptReceipt {
            id: envelope.id,
            seq,
            recorded_at: self.at,
            recipients: recipients.clone(),
            caseref,
        };
        self.known.insert(
            envelope.id,
            KnownMessage {
                sender: message.sender.clone(),
                sha256,
                receipt: receipt.clone(),
            },
        );
        AcceptOutcome::Recorded(receipt)
    }

    /// Records the refusal of `message` by its case, in place of its acceptance.
    fn refuse_for_case(
        &mut self,
        message: &NewMessage,
        sha256: [u8; 32],
        refusal: CaseRefusal,
    ) -> AcceptOutcome {
        let rejection = NewRejection {
            sender: Some(message.sender.clone()),
            channel: message.channel,
            message_id: Some(message.envelope.id),
            caseref: refusal.caseref,
            type_: Some(message.envelope.type_.clone()),
            claimed: Claimed {
                message_id: None,
                caseref: refusal.claimed_caseref,
            },
            code: refusal.code,
            bytes_sha256: sha256,
            size: message.bytes.len(),
            errors: Vec::new(),
        };
        let seq = self.reject_noting(&rejection, refusal.met);
        AcceptOutcome::Refused {
            seq,
            code: refusal.code,
            detail: refusal.detail,
        }
    }

    fn reject(&mut self, rejection: &NewRejection) -> u64 {
        self.reject_noting(rejection, None)
    }

    /// Records a rejection; `met` is the case thread's state the message met, for an
    /// invalid transition.
    fn reject_noting(&mut self, rejection: &NewRejection, met: Option<ThreadStep>) -> u64 {
        // Whatever the caller passed, only well-formed values reach the text columns: one
        // submission's content must never make PostgreSQL refuse the batch it is in.
        let caseref = rejection
            .caseref
            .clone()
            .filter(|c| is_well_formed_caseref(c));
        let claimed = &rejection.claimed;
        let detail = detail::Rejected {
            code: rejection.code.as_str().to_owned(),
            channel: rejection.channel.as_str().to_owned(),
            sha256: hex::encode(rejection.bytes_sha256),
            size: rejection.size as u64,
            type_: rejection.type_.clone().filter(|t| is_type_name(t)),
            claimed: detail::Claimed {
                message: claimed.message_id,
                caseref: claimed
                    .caseref
                    .clone()
                    .filter(|c| is_well_formed_caseref(c)),
            },
            errors: rejection
                .errors
                .iter()
                .take(MAX_RECORDED_ERRORS)
                .map(|e| detail::RecordedError {
                    pointer: bounded(&e.pointer),
                    keyword: bounded(&e.keyword),
                    message: bounded(&e.message),
                })
                .collect(),
            errors_total: (rejection.errors.len() > MAX_RECORDED_ERRORS)
                .then_some(rejection.errors.len() as u64),
            met,
        };
        self.push_entry(
            EntryKind::MessageRejected,
            rejection.message_id,
            caseref,
            rejection.sender.as_ref(),
            typed(&detail),
        )
    }

    fn deliveries(&mut self, outcomes: &[DeliveryOutcome]) {
        let at = self.at;
        for outcome in outcomes {
            let delivery_id = outcome.delivery_id();
            let Some(row) = self.outbox.get_mut(&delivery_id) else {
                warn!(
                    delivery_id,
                    "delivery outcome for an unknown delivery ignored"
                );
                continue;
            };
            // A lease that expired lets a second relay publish the same row; only the
            // first outcome for a pending row is recorded, later ones change nothing.
            // Dead letters are recorded once per death (RabbitMQ may report one twice).
            let applies = match outcome {
                DeliveryOutcome::Dispatched { .. } | DeliveryOutcome::Failed { .. } => {
                    row.state == DeliveryStatus::Pending
                }
                DeliveryOutcome::DeadLettered { .. } => {
                    matches!(
                        row.state,
                        DeliveryStatus::Pending | DeliveryStatus::Dispatched
                    )
                }
                DeliveryOutcome::Redriven { .. } => {
                    matches!(row.state, DeliveryStatus::Dead | DeliveryStatus::Dispatched)
                }
            };
            if !applies {
                continue;
            }
            row.leased_until = None;
            let mut detail = detail::Delivery::new(delivery_id, row.attempts);
            let kind = match outcome {
                DeliveryOutcome::Dispatched { .. } => {
                    row.state = DeliveryStatus::Dispatched;
                    row.dispatched_at = Some(at);
                    EntryKind::DeliveryDispatched
                }
                DeliveryOutcome::Failed {
                    error, retry_at, ..
                } => {
                    row.next_attempt_at = *retry_at;
                    row.last_error = Some(error.clone());
                    detail.error = Some(error.clone());
                    EntryKind::DeliveryFailed
                }
                DeliveryOutcome::DeadLettered {
                    reason, by, queue, ..
                } => {
                    row.state = DeliveryStatus::Dead;
                    row.last_error = Some(reason.clone());
                    detail.reason = Some(reason.clone());
                    detail.by = Some(by.clone());
                    detail.queue = queue.clone();
                    EntryKind::DeliveryDeadLettered
                }
                DeliveryOutcome::Redriven { by, .. } => {
                    row.state = DeliveryStatus::Dispatched;
                    row.dispatched_at = Some(at);
                    detail.by = by.as_ref().map(|a| a.as_str().to_owned());
                    EntryKind::DeliveryRedriven
                }
            };
            let (message_id, caseref, recipient) =
                (row.message_id, row.caseref.clone(), row.recipient.clone());
            self.changed.insert(delivery_id);
            self.push_entry(
                kind,
                Some(message_id),
                caseref,
                Some(&recipient),
                typed(&detail),
            );
        }
    }

    /// Records that an administrator read a message's masked fields.
    fn reveal(&mut self, reveal: &NewReveal) -> u64 {
        let detail = detail::Revealed {
            fields: reveal.fields.iter().map(|f| bounded(f)).collect(),
            via: "console".to_owned(),
        };
        self.push_entry(
            EntryKind::MessageRevealed,
            Some(reveal.message_id),
            reveal.caseref.clone().filter(|c| is_well_formed_caseref(c)),
            Some(&reveal.by),
            typed(&detail),
        )
    }

    /// Records the erasure of a case's personal data and marks its data keys for
    /// destruction in the same transaction. All or nothing: a case with a body stored in
    /// clear is not erased at all.
    fn erase(&mut self, erasure: &NewErasure) -> ErasureOutcome {
        let Some(keys) = self.case_keys.get_mut(&erasure.caseref) else {
            return ErasureOutcome::UnknownCase;
        };
        let clear: Vec<Uuid> = keys
            .iter()
            .filter(|k| !k.sealed && k.erased_seq.is_none())
            .map(|k| k.message_id)
            .collect();
        if !clear.is_empty() {
            return ErasureOutcome::StoredInClear { messages: clear };
        }
        let messages: Vec<detail::ErasedMessage> = keys
            .iter()
            .filter(|k| k.erased_seq.is_none())
            .map(|k| detail::ErasedMessage {
                message: k.message_id,
                seq: k.seq,
            })
            .collect();
        if messages.is_empty() {
            let seqs: BTreeSet<u64> = keys.iter().filter_map(|k| k.erased_seq).collect();
            return ErasureOutcome::AlreadyErased {
                seqs: seqs.into_iter().collect(),
            };
        }
        let seq = self.next_seq;
        for key in keys.iter_mut().filter(|k| k.erased_seq.is_none()) {
            key.erased_seq = Some(seq);
            key.sealed = false;
        }
        let detail = detail::Erased {
            basis: bounded(&erasure.basis),
            messages: messages.clone(),
            via: erasure.via.clone(),
        };
        let pushed = self.push_entry(
            EntryKind::CaseErased,
            None,
            Some(erasure.caseref.clone()),
            erasure.by.as_ref(),
            typed(&detail),
        );
        debug_assert_eq!(pushed, seq);
        self.writes
            .erasures
            .extend(messages.iter().map(|m| (m.message, seq)));
        ErasureOutcome::Erased { seq, messages }
    }

    fn acknowledge(&mut self, delivery_id: i64, agency: &AgencyCode) -> bool {
        let at = self.at;
        let Some(row) = self.outbox.get_mut(&delivery_id) else {
            return false;
        };
        if &row.recipient != agency {
            return false;
        }
        match row.state {
            // An acknowledgement repeated after a lost response succeeds again, once recorded.
            DeliveryStatus::Acknowledged => true,
            // A dead delivery that the recipient still pulled (it was redriven, or died
            // after being handed out) is acknowledged like any other.
            DeliveryStatus::Pending | DeliveryStatus::Dispatched | DeliveryStatus::Dead => {
                let (message_id, caseref) = (row.message_id, row.caseref.clone());
                if row.state == DeliveryStatus::Pending {
                    // The recipient pulled it from its queue before the relay's confirm was
                    // recorded: the delivery itself proves the dispatch. The relay's late
                    // outcome then finds the row no longer pending and changes nothing.
                    row.state = DeliveryStatus::Dispatched;
                    row.dispatched_at = Some(at);
                    row.leased_until = None;
                    let detail = typed(&detail::Delivery {
                        observed: Some("pulled".into()),
                        ..detail::Delivery::new(delivery_id, row.attempts)
                    });
                    self.push_entry(
                        EntryKind::DeliveryDispatched,
                        Some(message_id),
                        caseref.clone(),
                        Some(agency),
                        detail,
                    );
                }
                let Some(row) = self.outbox.get_mut(&delivery_id) else {
                    return false;
                };
                row.state = DeliveryStatus::Acknowledged;
                row.acknowledged_at = Some(at);
                let detail = typed(&detail::Delivery::new(delivery_id, row.attempts));
                self.changed.insert(delivery_id);
                self.push_entry(
                    EntryKind::DeliveryAcknowledged,
                    Some(message_id),
                    caseref,
                    Some(agency),
                    detail,
                );
                true
            }
        }
    }

    fn push_entry(
        &mut self,
        kind: EntryKind,
        message: Option<Uuid>,
        caseref: Option<String>,
        agency: Option<&AgencyCode>,
        detail: Value,
    ) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        let entry = Entry {
            seq,
            at: self.at,
            kind,
            message,
            caseref,
            agency: agency.cloned(),
            detail,
        };
        let bytes = entry.canonical_bytes();
        self.writes.entries.push(EntryRow {
            seq,
            at: self.at,
            kind,
            message_id: message,
            caseref: entry.caseref,
            agency: agency.map(|a| a.as_str().to_owned()),
            leaf_hash: audit::leaf_hash(&bytes),
            bytes,
        });
        seq
    }
}

fn recipients_json(recipients: &[Recipient]) -> Value {
    Value::Array(
        recipients
            .iter()
            .map(|r| json!({ "agency": r.agency.as_str(), "role": role_as_str(r.role), "rule": r.rule }))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::RejectionDetail;
    use liaison_core::{Channel, Envelope, RecipientRole, RejectCode, Route};

    fn agency(code: &str) -> AgencyCode {
        AgencyCode::new(code).unwrap()
    }

    fn at() -> OffsetDateTime {
        time::macros::datetime!(2026-11-26 08:00:00.123456 UTC)
    }

    fn message(id: Uuid, sender: &str, body: &'static [u8]) -> NewMessage {
        NewMessage {
            envelope: Envelope {
                id,
                source: agency(sender).urn(),
                type_: "pil.lead.v1".into(),
                time: at(),
                subject: None,
                caseref: Some("SD-1".into()),
                inreplyto: None,
                recipients: None,
                traceparent: None,
            },
            sender: agency(sender),
            channel: Channel::Https,
            bytes: Bytes::from_static(body),
            received_at: at(),
            case: Default::default(),
            route: Route {
                recipients: vec![
                    Recipient {
                        agency: agency("procuratorate"),
                        role: RecipientRole::To,
                        rule: "leads".into(),
                    },
                    Recipient {
                        agency: agency("court"),
                        role: RecipientRole::Cc,
                        rule: "leads".into(),
                    },
                ],
            },
            trace_context: None,
        }
    }

    fn context(first_seq: u64) -> PlanContext {
        PlanContext {
            first_seq,
            at: at(),
            known: HashMap::new(),
            outbox: HashMap::new(),
            cases: CaseBook::default(),
            sealed: HashMap::new(),
            case_keys: HashMap::new(),
        }
    }

    fn dispatched_row(delivery_id: i64, recipient: &str) -> OutboxRow {
        OutboxRow {
            delivery_id,
            message_id: Uuid::nil(),
            caseref: Some("SD-1".into()),
            recipient: agency(recipient),
            state: DeliveryStatus::Dispatched,
            attempts: 1,
            next_attempt_at: at(),
            leased_until: None,
            dispatched_at: Some(at()),
            acknowledged_at: None,
            last_error: None,
        }
    }

    #[test]
    fn seqs_are_consecutive_and_repeats_in_a_batch_are_answered_like_the_first() {
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let requests = vec![
            Request::Accept(Box::new(message(a, "eco", b"one"))),
            Request::Accept(Box::new(message(b, "eco", b"two"))),
            Request::Accept(Box::new(message(a, "eco", b"one"))),
            Request::Accept(Box::new(message(a, "eco", b"other bytes"))),
            Request::Accept(Box::new(message(b, "police", b"two"))),
        ];
        let plan = plan(&requests, context(41));
        let seqs: Vec<u64> = plan.writes.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, vec![41, 42]);
        assert_eq!(plan.writes.messages.len(), 2);
        assert_eq!(plan.writes.new_deliveries.len(), 4);
        let Answer::Accepted(AcceptOutcome::Recorded(first)) = &plan.answers[0] else {
            panic!()
        };
        assert_eq!(
            plan.answers[2],
            Answer::Accepted(AcceptOutcome::Duplicate(first.clone()))
        );
        assert_eq!(
            plan.answers[3],
            Answer::Accepted(AcceptOutcome::Conflict {
                existing_seq: 41,
                same_sender: true
            })
        );
        assert_eq!(
            plan.answers[4],
            Answer::Accepted(AcceptOutcome::Conflict {
                existing_seq: 42,
                same_sender: false
            })
        );
    }

    #[test]
    fn accepted_entry_carries_the_audit_detail() {
        let id = Uuid::now_v7();
        let plan = plan(
            &[Request::Accept(Box::new(message(id, "eco", b"{}")))],
            context(1),
        );
        let row = &plan.writes.entries[0];
        let entry = Entry::from_canonical(&row.bytes).unwrap();
        assert_eq!(row.leaf_hash, audit::leaf_hash(&row.bytes));
        assert_eq!(entry.kind, EntryKind::MessageAccepted);
        assert_eq!(entry.agency, Some(agency("eco")));
        assert_eq!(
            entry.detail["sha256"],
            json!(hex::encode(audit::sha256(b"{}")))
        );
        assert_eq!(entry.detail["size"], json!(2));
        assert_eq!(entry.detail["channel"], json!("https"));
        assert_eq!(
            entry.detail["recipients"][1],
            json!({"agency": "court", "role": "cc", "rule": "leads"})
        );
        assert!(entry.detail.get("inreplyto").is_none());
        let route: Route = serde_json::from_value(plan.writes.messages[0].route.clone()).unwrap();
        assert_eq!(route, message(id, "eco", b"{}").route);
    }

    #[test]
    fn rejection_records_at_most_twenty_errors() {
        let errors = (0..25)
            .map(|i| RejectionDetail {
                pointer: format!("/data/{i}"),
                keyword: "type".into(),
                message: "bad".into(),
            })
            .collect();
        let rejection = NewRejection {
            sender: None,
            channel: Channel::Amqp,
            message_id: None,
            caseref: None,
            type_: None,
            claimed: Default::default(),
            code: RejectCode::PayloadInvalid,
            bytes_sha256: [7; 32],
            size: 10,
            errors,
        };
        let plan = plan(&[Request::Reject(rejection)], context(5));
        assert_eq!(plan.answers, vec![Answer::Rejected(5)]);
        let entry = Entry::from_canonical(&plan.writes.entries[0].bytes).unwrap();
        assert_eq!(entry.detail["code"], json!("payload_invalid"));
        assert_eq!(
            entry.detail["errors"].as_array().unwrap().len(),
            MAX_RECORDED_ERRORS
        );
        assert_eq!(entry.detail["errors_total"], json!(25));
        assert_eq!(entry.agency, None);
    }

    #[test]
    fn a_rejection_records_only_well_formed_fields_and_claims_apart() {
        let claimed = Uuid::now_v7();
        let rejection = NewRejection {
            sender: Some(agency("eco")),
            channel: Channel::Https,
            message_id: None,
            caseref: Some(format!("SD\u{0}{}", "x".repeat(10_000))),
            type_: Some("pil.lead.v1\u{1}".into()),
            claimed: crate::model::Claimed {
                message_id: Some(claimed),
                caseref: Some("SD-OTHER-1".into()),
            },
            code: RejectCode::EnvelopeInvalid,
            bytes_sha256: [1; 32],
            size: 10,
            errors: vec![RejectionDetail {
                pointer: "/caseref".into(),
                keyword: "pattern".into(),
                message: "y".repeat(5_000),
            }],
        };
        let plan = plan(&[Request::Reject(rejection)], context(1));
        let row = &plan.writes.entries[0];
        assert_eq!((row.caseref.as_deref(), row.message_id), (None, None));
        let entry = Entry::from_canonical(&row.bytes).unwrap();
        assert_eq!((entry.caseref, entry.message), (None, None));
        assert!(entry.detail.get("type").is_none());
        assert_eq!(
            entry.detail["claimed"],
            json!({ "message": claimed.to_string(), "caseref": "SD-OTHER-1" })
        );
        let message = entry.detail["errors"][0]["message"].as_str().unwrap();
        assert!(message.chars().count() <= MAX_ERROR_TEXT + 1);
    }

    #[test]
    fn an_erasure_is_all_or_nothing_and_recorded_once() {
        let key = |n: u64, sealed: bool, erased_seq: Option<u64>| CaseKey {
            message_id: Uuid::from_u128(n.into()),
            seq: n,
            sealed,
            erased_seq,
        };
        let mut ctx = context(20);
        ctx.case_keys.insert(
            "SD-1".into(),
            vec![
                key(3, true, None),
                key(5, false, Some(9)),
                key(7, true, None),
            ],
        );
        ctx.case_keys
            .insert("SD-2".into(), vec![key(4, true, None), key(6, false, None)]);
        let erase = |caseref: &str| {
            Request::Erase(NewErasure {
                caseref: caseref.into(),
                basis: "PIPL Art. 47(1)".into(),
                by: Some(agency("gov")),
                via: "api".into(),
            })
        };
        let plan = plan(
            &[erase("SD-1"), erase("SD-1"), erase("SD-2"), erase("SD-9")],
            ctx,
        );
        let erased = vec![
            detail::ErasedMessage {
                message: Uuid::from_u128(3),
                seq: 3,
            },
            detail::ErasedMessage {
                message: Uuid::from_u128(7),
                seq: 7,
            },
        ];
        assert_eq!(
            plan.answers,
            vec![
                Answer::Erased(ErasureOutcome::Erased {
                    seq: 20,
                    messages: erased,
                }),
                Answer::Erased(ErasureOutcome::AlreadyErased { seqs: vec![9, 20] }),
                Answer::Erased(ErasureOutcome::StoredInClear {
                    messages: vec![Uuid::from_u128(6)]
                }),
                Answer::Erased(ErasureOutcome::UnknownCase),
            ]
        );
        assert_eq!(plan.writes.entries.len(), 1);
        let entry = Entry::from_canonical(&plan.writes.entries[0].bytes).unwrap();
        assert_eq!(entry.kind, EntryKind::CaseErased);
        assert_eq!(
            (entry.message, entry.caseref.as_deref(), entry.agency),
            (None, Some("SD-1"), Some(agency("gov")))
        );
        assert_eq!(entry.detail["basis"], json!("PIPL Art. 47(1)"));
        assert_eq!(entry.detail["messages"][1]["seq"], json!(7));
        assert_eq!(
            plan.writes.erasures,
            vec![(Uuid::from_u128(3), 20), (Uuid::from_u128(7), 20)]
        );
    }

    #[test]
    fn a_sealed_body_is_stored_sealed_and_handed_to_the_relay_in_clear() {
        let id = Uuid::now_v7();
        let keys = crate::keys::Keyring::new(vec![("k1".into(), [7; 32])], "k1").unwrap();
        let mut ctx = context(1);
        ctx.sealed.insert(id, keys.seal(id, b"{}").unwrap());
        let plan = plan(&[Request::Accept(Box::new(message(id, "eco", b"{}")))], ctx);
        let row = &plan.writes.messages[0];
        assert_eq!(&row.body[..], b"{}");
        assert_ne!(row.stored, row.body);
        let (kek, wrapped) = row.key.clone().unwrap();
        assert_eq!(keys.open(id, &row.stored, &kek, &wrapped).unwrap(), b"{}");
        assert_eq!(row.sha256, audit::sha256(b"{}"));
    }

    #[test]
    fn a_delivery_touched_twice_is_written_once_in_its_final_state() {
        let mut ctx = context(1);
        let mut pending = dispatched_row(9, "court");
        pending.state = DeliveryStatus::Pending;
        ctx.outbox.insert(9, pending);
        let requests = vec![
            Request::Deliveries(vec![DeliveryOutcome::Dispatched { delivery_id: 9 }]),
            Request::Acknowledge {
                delivery_id: 9,
                agency: agency("court"),
            },
            Request::Deliveries(vec![DeliveryOutcome::Dispatched { delivery_id: 404 }]),
        ];
        let plan = plan(&requests, ctx);
        let kinds: Vec<EntryKind> = plan.writes.entries.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                EntryKind::DeliveryDispatched,
                EntryKind::DeliveryAcknowledged
            ]
        );
        assert_eq!(plan.writes.delivery_updates.len(), 1);
        assert_eq!(
            plan.writes.delivery_updates[0].state,
            DeliveryStatus::Acknowledged
        );
        assert_eq!(plan.answers[1], Answer::Acknowledged(true));
    }

    #[test]
    fn acknowledgement_needs_the_recipient_and_proves_a_pending_dispatch() {
        let mut ctx = context(1);
        ctx.outbox.insert(1, dispatched_row(1, "court"));
        let mut pending = dispatched_row(2, "court");
        pending.state = DeliveryStatus::Pending;
        ctx.outbox.insert(2, pending);
        let requests = vec![
            Request::Acknowledge {
                delivery_id: 1,
                agency: agency("police"),
            },
            Request::Acknowledge {
                delivery_id: 2,
                agency: agency("court"),
            },
            Request::Acknowledge {
                delivery_id: 3,
                agency: agency("court"),
            },
        ];
        let plan = plan(&requests, ctx);
        assert_eq!(
            plan.answers,
            vec![
                Answer::Acknowledged(false),
                Answer::Acknowledged(true),
                Answer::Acknowledged(false)
            ]
        );
        // The pending delivery the recipient pulled is recorded dispatched, then acknowledged.
        let kinds: Vec<EntryKind> = plan.writes.entries.iter().map(|e| e.kind).collect();
        assert_eq!(
            kinds,
            vec![
                EntryKind::DeliveryDispatched,
                EntryKind::DeliveryAcknowledged
            ]
        );
    }

    /// The detail members of `kind` the committer wrote, recursively: `a`, `a.b`.
    fn member_names(value: &Value, at: &str, out: &mut BTreeSet<String>) {
        match value {
            Value::Object(map) => {
                for (name, inner) in map {
                    let path = format!("{at}{name}");
                    member_names(inner, &format!("{path}."), out);
                    out.insert(path);
                }
            }
            Value::Array(items) => {
                for item in items {
                    member_names(item, at, out);
                }
            }
            _ => {}
        }
    }

    /// Every `detail` member the committer writes, for every kind it writes here, is named
    /// in the section of `docs/audit.md` that documents that kind's detail, so that the
    /// byte-level contract stays whole when a member is added.
    #[test]
    fn every_detail_member_is_documented_in_docs_audit_md() {
        let doc = include_str!("../../../../docs/audit.md");
        let section = |heading: &str| {
            // The paragraph that starts with the kind, at the start of a line.
            let start = doc
                .find(&format!("\n{heading}"))
                .unwrap_or_else(|| panic!("docs/audit.md has no {heading}"));
            let rest = &doc[start..];
            let end = rest[1..]
                .find("\n`message.")
                .or_else(|| rest[1..].find("\n`delivery.*`"))
                .map_or(rest.len(), |i| i + 1)
                .min(rest.find("\n### ").unwrap_or(rest.len()));
            &rest[..end]
        };

        let mut ctx = context(1);
        let mut pending = dispatched_row(9, "court");
        pending.state = DeliveryStatus::Pending;
        ctx.outbox.insert(9, pending);
        ctx.outbox.insert(10, dispatched_row(10, "court"));
        let mut dead = dispatched_row(11, "court");
        dead.state = DeliveryStatus::Dead;
        ctx.outbox.insert(11, dead);
        let mut pulled = dispatched_row(12, "court");
        pulled.state = DeliveryStatus::Pending;
        ctx.outbox.insert(12, pulled);
        ctx.case_keys.insert(
            "SD-ERASED-1".into(),
            vec![CaseKey {
                message_id: Uuid::now_v7(),
                seq: 3,
                sealed: true,
                erased_seq: None,
            }],
        );
        let mut answer = message(Uuid::now_v7(), "eco", b"{}");
        answer.envelope.inreplyto = Some(Uuid::now_v7());
        let errors = (0..25)
            .map(|i| RejectionDetail {
                pointer: format!("/data/{i}"),
                keyword: "type".into(),
                message: "bad".into(),
            })
            .collect();
        let requests = vec![
            Request::Accept(Box::new(answer)),
            Request::Reject(NewRejection {
                sender: Some(agency("eco")),
                channel: Channel::Https,
                message_id: None,
                caseref: None,
                type_: Some("pil.lead.v1".into()),
                claimed: crate::model::Claimed {
                    message_id: Some(Uuid::now_v7()),
                    caseref: Some("SD-OTHER-1".into()),
                },
                code: RejectCode::PayloadInvalid,
                bytes_sha256: [1; 32],
                size: 10,
                errors,
            }),
            Request::Reveal(crate::model::NewReveal {
                message_id: Uuid::now_v7(),
                caseref: None,
                by: agency("gov"),
                fields: vec!["/data/suspected_party/name".into()],
            }),
            Request::SummarizeRejections(crate::model::NewRejectionSummary {
                sender: Some(agency("eco")),
                summary: detail::RejectionSummary {
                    codes: [("malformed_json".to_owned(), 2)].into(),
                    total: 2,
                    ..Default::default()
                },
            }),
            Request::Deliveries(vec![
                DeliveryOutcome::Failed {
                    delivery_id: 9,
                    error: "unroutable".into(),
                    retry_at: at(),
                },
                DeliveryOutcome::DeadLettered {
                    delivery_id: 10,
                    reason: "delivery_limit".into(),
                    by: "rabbitmq".into(),
                    queue: Some("liaison.agency.court".into()),
                },
                DeliveryOutcome::Redriven {
                    delivery_id: 11,
                    by: None,
                },
            ]),
            Request::Deliveries(vec![DeliveryOutcome::Dispatched { delivery_id: 9 }]),
            Request::Acknowledge {
                delivery_id: 12,
                agency: agency("court"),
            },
            Request::Erase(NewErasure {
                caseref: "SD-ERASED-1".into(),
                basis: "retention period over".into(),
                by: Some(agency("gov")),
                via: "api".into(),
            }),
        ];
        let plan = plan(&requests, ctx);
        let mut kinds = BTreeSet::new();
        for row in &plan.writes.entries {
            let entry = Entry::from_canonical(&row.bytes).unwrap();
            kinds.insert(entry.kind.as_str());
            let text = match entry.kind {
                EntryKind::MessageAccepted => section("`message.accepted` —"),
                EntryKind::MessageRejected => section("`message.rejected` —"),
                EntryKind::RejectionsSummarized => section("`message.rejections_summarized` —"),
                EntryKind::CaseErased => section("`case.erased` —"),
                _ => section("`delivery.*` —"),
            };
            let mut names = BTreeSet::new();
            member_names(&entry.detail, "", &mut names);
            for name in names {
                // The keys of a summary's `codes` are reject codes (reject.rs), not members.
                if name.starts_with("codes.") {
                    continue;
                }
                let last = name.rsplit('.').next().unwrap_or(&name);
                assert!(
                    text.contains(&format!("`{last}`"))
                        || text.contains(&format!("{{{last}"))
                        || text.contains(&format!(", {last}")),
                    "detail.{name} of {} is not documented in docs/audit.md",
                    entry.kind.as_str()
                );
            }
            if !matches!(
                entry.kind,
                EntryKind::MessageAccepted
                    | EntryKind::MessageRejected
                    | EntryKind::RejectionsSummarized
            ) {
                assert!(
                    text.contains(&format!("`{}`", entry.kind.as_str())),
                    "{} has no row",
                    entry.kind.as_str()
                );
            }
        }
        assert_eq!(
            kinds.len(),
            10,
            "every kind is written by this test: {kinds:?}"
        );
    }
}
