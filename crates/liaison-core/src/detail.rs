//! The `detail` of each kind of ledger entry as a type: what the committer writes, and what
//! traces, replays, reports and verifiers read, from one definition. Serialized, they are
//! the members `docs/audit.md` lists per kind (the canonical encoding sorts them); an
//! optional member is absent, never `null`.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::clocks::{ClockEvents, StageRef};
use crate::entry::{Entry, EntryKind};
use crate::lifecycle::ThreadStep;
use crate::policy::Recipient;

/// `message.accepted`: a message recorded with its route.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Accepted {
    /// The CloudEvents type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `https`, `amqp` or `clock` (the deadline watcher).
    pub channel: String,
    /// Lowercase hex SHA-256 of the message's bytes.
    pub sha256: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inreplyto: Option<Uuid>,
    /// Every recipient with its role and the policy rule that chose it.
    pub recipients: Vec<Recipient>,
    /// What the message did to its matter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub case: Option<ThreadStep>,
    /// liaison assigned the entry's case reference (the message opened a case).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub caseref_assigned: bool,
    /// The clocks it started and stopped.
    #[serde(default, skip_serializing_if = "ClockEvents::is_empty")]
    pub clocks: ClockEvents,
    /// The deadline watcher's notice this message is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_stage: Option<StageRef>,
}

/// `message.rejected`: a refused submission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    /// The stable rejection code.
    pub code: String,
    pub channel: String,
    pub sha256: String,
    pub size: u64,
    /// The type, when it is one of the catalogue's.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// What the refused envelope claimed (an id, a case reference) that the entry does
    /// not index because the sender is no party to it.
    #[serde(default, skip_serializing_if = "Claimed::is_empty")]
    pub claimed: Claimed,
    /// The first violations, bounded.
    pub errors: Vec<RecordedError>,
    /// How many violations there were, when more than `errors` holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errors_total: Option<u64>,
    /// For an invalid transition: the matter's state the message met.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub met: Option<ThreadStep>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claimed {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Uuid>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub caseref: Option<String>,
}

impl Claimed {
    pub fn is_empty(&self) -> bool {
        self.message.is_none() && self.caseref.is_none()
    }
}

/// One violation as a rejection records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedError {
    pub pointer: String,
    pub keyword: String,
    pub message: String,
}

/// `delivery.*`: one delivery's outcome.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// The outbox row.
    pub delivery: i64,
    /// Attempts made so far.
    pub attempt: i32,
    /// `delivery.failed`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `delivery.dead_lettered`: why, who gave up (`relay` or `rabbitmq`), and the queue
    /// RabbitMQ dead-lettered it from. `delivery.redriven` from the console: `by` is the
    /// administrator's agency (absent for a redrive from the command line).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// `delivery.dispatched` recorded because the recipient pulled it (`pulled`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed: Option<String>,
}

impl Delivery {
    /// The detail of delivery `delivery` after `attempt` attempts, with nothing more to say.
    pub fn new(delivery: i64, attempt: i32) -> Self {
        Self {
            delivery,
            attempt,
            error: None,
            reason: None,
            by: None,
            queue: None,
            observed: None,
        }
    }
}

/// `message.rejections_summarized`: the refusals of one sender (the entry's `agency`; none
/// for submissions without an identity) beyond its refusal budget in one interval.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RejectionSummary {
    /// Refusals summarized here, by rejection code; `total` is their sum.
    pub codes: std::collections::BTreeMap<String, u64>,
    pub total: u64,
    /// When the interval began, and when its first and last summarized refusal came
    /// (RFC 3339).
    pub interval_start: String,
    pub first_at: String,
    pub last_at: String,
    /// SHA-256 (hex) of the first and the last summarized submission's bytes.
    pub first_sha256: String,
    pub last_sha256: String,
    /// The budget in force: refusals recorded one by one per interval before summarizing.
    pub budget: u64,
    /// The interval's length in seconds.
    pub interval_seconds: u64,
}

/// `message.revealed`: the masked fields of a message an administrator chose to read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revealed {
    /// The JSON pointers (into the CloudEvent) of the personal data shown.
    pub fields: Vec<String>,
    /// Where it was read: `console`.
    pub via: String,
}

/// `case.erased`: which messages of the case were erased, on what legal basis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Erased {
    /// The legal basis the administrator gave (PIPL Art. 47: retention over, purpose
    /// achieved, consent withdrawn, …), as written.
    pub basis: String,
    /// The messages whose data keys were destroyed, in seq order.
    pub messages: Vec<ErasedMessage>,
    /// Where it was asked: `api` (or the console) or `cli`.
    pub via: String,
}

/// One erased message: its id and the seq of its `message.accepted` entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErasedMessage {
    pub message: Uuid,
    pub seq: u64,
}

/// An entry's detail, read by its kind.
#[derive(Clone, Debug, PartialEq)]
pub enum Detail {
    Accepted(Box<Accepted>),
    Rejected(Box<Rejected>),
    Delivery(Delivery),
    RejectionSummary(Box<RejectionSummary>),
    Revealed(Revealed),
    Erased(Erased),
}

impl Entry {
    /// The entry's detail as the type of its kind.
    pub fn typed_detail(&self) -> Result<Detail, serde_json::Error> {
        let detail = self.detail.clone();
        Ok(match self.kind {
            EntryKind::MessageAccepted => Detail::Accepted(serde_json::from_value(detail)?),
            EntryKind::MessageRejected => Detail::Rejected(serde_json::from_value(detail)?),
            EntryKind::DeliveryDispatched
            | EntryKind::DeliveryFailed
            | EntryKind::DeliveryAcknowledged
            | EntryKind::DeliveryDeadLettered
            | EntryKind::DeliveryRedriven => Detail::Delivery(serde_json::from_value(detail)?),
            EntryKind::RejectionsSummarized => {
                Detail::RejectionSummary(serde_json::from_value(detail)?)
            }
            EntryKind::MessageRevealed => Detail::Revealed(serde_json::from_value(detail)?),
            EntryKind::CaseErased => Detail::Erased(serde_json::from_value(detail)?),
        })
    }

    /// The detail of a `message.accepted` entry.
    pub fn accepted(&self) -> Option<Result<Accepted, serde_json::Error>> {
        (self.kind == EntryKind::MessageAccepted)
            .then(|| serde_json::from_value(self.detail.clone()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn optional_members_are_absent_and_read_back() {
        let accepted = Accepted {
            type_: "pil.lead.v1".into(),
            channel: "https".into(),
            sha256: "ab".repeat(32),
            size: 2,
            inreplyto: None,
            recipients: vec![],
            case: None,
            caseref_assigned: false,
            clocks: ClockEvents::default(),
            clock_stage: None,
        };
        let value = serde_json::to_value(&accepted).unwrap();
        assert_eq!(
            value,
            json!({"type": "pil.lead.v1", "channel": "https", "sha256": "ab".repeat(32),
                   "size": 2, "recipients": []})
        );
        assert_eq!(serde_json::from_value::<Accepted>(value).unwrap(), accepted);
        let delivery = json!({"delivery": 7, "attempt": 1, "observed": "pulled"});
        let read: Delivery = serde_json::from_value(delivery.clone()).unwrap();
        assert_eq!(read.observed.as_deref(), Some("pulled"));
        assert_eq!(serde_json::to_value(read).unwrap(), delivery);
    }
}
