//! The events the broker reports, each with its log line and its metrics.

use std::time::Duration;

use liaison_core::{AgencyCode, Channel, RejectCode};
use uuid::Uuid;

use super::{
    ACCEPT_DURATION, ADMISSION_DURATION, DEAD_LETTERS, REFUSALS_SUMMARIZED, RELAY_PUBLISH_DURATION,
    RELAY_RETRIES, SUBMISSIONS,
};

/// The `type` label of a submission: a catalogue type, or `unknown` for anything else, so
/// that a sender cannot mint label values.
fn type_label(type_: Option<&str>) -> String {
    type_.unwrap_or("unknown").to_owned()
}

/// A submission recorded as accepted (or found to be a duplicate of one that was).
pub struct Accepted<'a> {
    pub sender: &'a AgencyCode,
    pub channel: Channel,
    pub type_: &'a str,
    pub message_id: Uuid,
    pub seq: u64,
    pub duplicate: bool,
    /// The checks before the ledger: parsing, schemas, authorization, routing.
    pub admission: Duration,
    /// From receipt to the durable answer.
    pub elapsed: Duration,
}

impl Accepted<'_> {
    pub fn emit(&self) {
        tracing::debug!(
            agency.code = %self.sender,
            message.id = %self.message_id,
            message.type = self.type_,
            ledger.seq = self.seq,
            duplicate = self.duplicate,
            channel = self.channel.as_str(),
            "submission accepted"
        );
        metrics::counter!(SUBMISSIONS,
            "channel" => self.channel.as_str(),
            "type" => self.type_.to_owned(),
            "outcome" => "accepted")
        .increment(1);
        metrics::histogram!(ACCEPT_DURATION, "channel" => self.channel.as_str())
            .record(self.elapsed.as_secs_f64());
        metrics::histogram!(ADMISSION_DURATION, "channel" => self.channel.as_str())
            .record(self.admission.as_secs_f64());
    }
}

/// A submission refused, with the ledger entry that records the refusal when there is one
/// (`None`: the ledger could not be reached, or could not record it).
pub struct Refused<'a> {
    pub sender: Option<&'a AgencyCode>,
    pub channel: Channel,
    pub type_: Option<&'a str>,
    pub code: RejectCode,
    pub seq: Option<u64>,
}

impl Refused<'_> {
    pub fn emit(&self) {
        let agency = self.sender.map(AgencyCode::as_str);
        match self.seq {
            Some(seq) => tracing::info!(
                agency.code = agency,
                reject.code = self.code.as_str(),
                ledger.seq = seq,
                channel = self.channel.as_str(),
                "submission rejected"
            ),
            None => tracing::warn!(
                agency.code = agency,
                reject.code = self.code.as_str(),
                channel = self.channel.as_str(),
                "submission refused and not recorded"
            ),
        }
        self.count();
    }

    /// A refusal beyond its sender's budget: answered, and counted into the interval's
    /// summary entry rather than recorded alone (so logged at debug level only: a flood
    /// must not flood the logs either).
    pub fn emit_summarized(&self) {
        let agency = self.sender.map(AgencyCode::as_str);
        tracing::debug!(
            agency.code = agency,
            reject.code = self.code.as_str(),
            channel = self.channel.as_str(),
            "submission rejected; counted into the refusal summary"
        );
        self.count();
        metrics::counter!(REFUSALS_SUMMARIZED, "agency" => agency.unwrap_or("none").to_owned())
            .increment(1);
    }

    fn count(&self) {
        metrics::counter!(SUBMISSIONS,
            "channel" => self.channel.as_str(),
            "type" => type_label(self.type_),
            "outcome" => self.code.as_str())
        .increment(1);
    }
}

/// One relay round: a batch published with confirms and its outcomes recorded.
pub struct RelayRound {
    pub deliveries: usize,
    /// Deliveries that failed and are scheduled again.
    pub retried: usize,
    pub elapsed: Duration,
}

impl RelayRound {
    pub fn emit(&self) {
        tracing::debug!(
            deliveries = self.deliveries,
            failed = self.retried,
            elapsed_ms = self.elapsed.as_secs_f64() * 1000.0,
            "relay round recorded"
        );
        metrics::histogram!(RELAY_PUBLISH_DURATION).record(self.elapsed.as_secs_f64());
        metrics::counter!(RELAY_RETRIES).increment(self.retried as u64);
    }
}

/// A delivery given up after its last attempt and parked in the dead-letter queue.
pub struct DeadLettered<'a> {
    pub message_id: Uuid,
    pub recipient: &'a AgencyCode,
    pub attempts: u32,
}

impl DeadLettered<'_> {
    pub fn emit(&self) {
        tracing::warn!(
            message.id = %self.message_id,
            agency.code = %self.recipient,
            attempts = self.attempts,
            "delivery dead-lettered"
        );
        metrics::counter!(DEAD_LETTERS, "recipient" => self.recipient.as_str().to_owned())
            .increment(1);
    }
}
