//! Ledger entries and their canonical encoding.
//!
//! An entry's canonical bytes are compact JSON with the members in the order of [`Entry`]'s
//! fields and every object inside `detail` with its members in lexicographic order
//! (serde_json's default map, a `BTreeMap`: the workspace must never enable serde_json's
//! `preserve_order`, which would keep insertion order instead), strings escaped as
//! serde_json does, and `at` in RFC 3339 UTC with the fraction's trailing zeros trimmed.
//! Those bytes are what the ledger stores and what the audit hash covers, so a verifier
//! never needs to re-encode anything: it hashes the stored bytes. `docs/audit.md` states
//! the rules normatively; the vectors of `docs/vectors/` fail the tests if they drift.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::agency::AgencyCode;
use crate::audit::{self, Hash};

/// What happened. The dotted names are part of the audit contract.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EntryKind {
    /// A message passed every check and was recorded with its recipients.
    #[serde(rename = "message.accepted")]
    MessageAccepted,
    /// A submission was refused; `detail.code` says why.
    #[serde(rename = "message.rejected")]
    MessageRejected,
    /// RabbitMQ confirmed a delivery into the recipient's queue.
    #[serde(rename = "delivery.dispatched")]
    DeliveryDispatched,
    /// A delivery attempt failed (unroutable, nacked, connection lost); it will be retried.
    #[serde(rename = "delivery.failed")]
    DeliveryFailed,
    /// The recipient acknowledged a delivery it pulled over HTTPS.
    #[serde(rename = "delivery.acknowledged")]
    DeliveryAcknowledged,
    /// A delivery went to the dead-letter queue `liaison.dead`: the relay gave up after its
    /// maximum attempts, or RabbitMQ dead-lettered it (rejected, or over the delivery limit).
    #[serde(rename = "delivery.dead_lettered")]
    DeliveryDeadLettered,
    /// An operator sent a dead-lettered delivery again to its recipient's queue.
    #[serde(rename = "delivery.redriven")]
    DeliveryRedriven,
    /// Refusals of one sender beyond its refusal budget in one interval, counted by code
    /// instead of recorded one by one.
    #[serde(rename = "message.rejections_summarized")]
    RejectionsSummarized,
    /// An administrator revealed a message's masked personal data in the console:
    /// `agency` is the administrator, `message` the message, `detail.fields` the JSON
    /// pointers shown. Personal information is read on purpose, and on the record.
    #[serde(rename = "message.revealed")]
    MessageRevealed,
    /// An administrator erased the personal data of a case (PIPL Art. 47): the data keys
    /// of the messages `detail.messages` lists were destroyed in the same transaction, so
    /// their bodies can no longer be read; their entries and digests stay verifiable.
    /// `agency` is the administrator (`null` from the command line), `caseref` the case.
    #[serde(rename = "case.erased")]
    CaseErased,
}

impl EntryKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MessageAccepted => "message.accepted",
            Self::MessageRejected => "message.rejected",
            Self::DeliveryDispatched => "delivery.dispatched",
            Self::DeliveryFailed => "delivery.failed",
            Self::DeliveryAcknowledged => "delivery.acknowledged",
            Self::DeliveryDeadLettered => "delivery.dead_lettered",
            Self::DeliveryRedriven => "delivery.redriven",
            Self::RejectionsSummarized => "message.rejections_summarized",
            Self::MessageRevealed => "message.revealed",
            Self::CaseErased => "case.erased",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            Self::MessageAccepted,
            Self::MessageRejected,
            Self::DeliveryDispatched,
            Self::DeliveryFailed,
            Self::DeliveryAcknowledged,
            Self::DeliveryDeadLettered,
            Self::DeliveryRedriven,
            Self::RejectionsSummarized,
            Self::MessageRevealed,
            Self::CaseErased,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One ledger entry. `seq` is assigned by the ledger at commit: gapless, starting at 1.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Entry {
    pub seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    pub kind: EntryKind,
    /// The message the entry is about, when there is one (a rejection may have none).
    pub message: Option<Uuid>,
    /// The case reference of that message, so a whole matter can be traced.
    pub caseref: Option<String>,
    /// The acting agency: the sender for `message.*`, the recipient for `delivery.*`.
    pub agency: Option<AgencyCode>,
    pub detail: Value,
}

impl Entry {
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising plain structs, strings and a serde_json::Value cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    pub fn leaf_hash(&self) -> Hash {
        audit::leaf_hash(&self.canonical_bytes())
    }

    pub fn from_canonical(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        serde_json::from_slice(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample() -> Entry {
        Entry {
            seq: 7,
            at: time::macros::datetime!(2026-11-26 08:00:00.123456 UTC),
            kind: EntryKind::MessageAccepted,
            message: Some(Uuid::nil()),
            caseref: Some("SD-1".into()),
            agency: Some(AgencyCode::new("eco").unwrap()),
            detail: json!({"type": "pil.lead.v1", "b": 1, "a": 2}),
        }
    }

    #[test]
    fn canonical_bytes_are_stable_and_round_trip() {
        let e = sample();
        let text = String::from_utf8(e.canonical_bytes()).unwrap();
        assert_eq!(
            text,
            r#"{"seq":7,"at":"2026-11-26T08:00:00.123456Z","kind":"message.accepted","message":"00000000-0000-0000-0000-000000000000","caseref":"SD-1","agency":"eco","detail":{"a":2,"b":1,"type":"pil.lead.v1"}}"#
        );
        assert_eq!(Entry::from_canonical(text.as_bytes()).unwrap(), e);
    }

    #[test]
    fn any_change_changes_the_leaf_hash() {
        let e = sample();
        let mut other = e.clone();
        other.seq = 8;
        assert_ne!(e.leaf_hash(), other.leaf_hash());
        for kind in [
            EntryKind::MessageRejected,
            EntryKind::DeliveryDispatched,
            EntryKind::DeliveryDeadLettered,
            EntryKind::DeliveryRedriven,
            EntryKind::MessageRevealed,
        ] {
            assert_eq!(EntryKind::parse(kind.as_str()), Some(kind));
        }
    }
}
