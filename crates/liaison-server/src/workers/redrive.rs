//! Listing and redriving `liaison.dead`: one implementation for `liaison deadletters` and
//! the console.
//!
//! Listing takes the messages without acknowledging them and hands them back (closing the
//! channel requeues them), so it never removes anything. Its recipients, reasons and
//! delivery ids are what the messages say; only a redrive checks them against the ledger.
//!
//! Redriving first matches each dead letter to the delivery the ledger recorded
//! ([`identify`]: the outbox row its `liaison-delivery` header names, dead-lettered from
//! that row's recipient's queue, with that row's message id and the ledger's digest of its
//! bytes). It then publishes **the ledger's bytes** with headers the broker builds, as the
//! relay does, to the recipient the outbox recorded — never the dead letter's own body or
//! headers — with a publisher confirm, records `delivery.redriven` (with the
//! administrator's agency when the console asked for it), and only then removes it from
//! `liaison.dead`: a crash in between leaves a copy in both, never in neither, and
//! consumers drop the duplicate by message id. A dead letter that matches no delivery is
//! not redriven: it is reported with the reason and left in `liaison.dead`.

use std::time::Duration;

use liaison_bus::{Bus, BusError, DeadLetter, PublishOutcome, QUEUE_DEAD};
use liaison_core::AgencyCode;
use liaison_ledger::{DeliveryOutcome, Ledger, LedgerError};
use serde::Serialize;
use uuid::Uuid;

use crate::workers::dead_letters::identify;
use crate::workers::outgoing;

#[derive(Debug, thiserror::Error)]
pub enum RedriveError {
    #[error(transparent)]
    Bus(#[from] BusError),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// One listed dead letter.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Listed {
    pub message_id: Option<Uuid>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub recipient: Option<String>,
    pub delivery: Option<i64>,
    pub caseref: Option<String>,
    pub queue: Option<String>,
    pub reason: String,
    pub dead_lettered_by: &'static str,
}

impl From<DeadLetter> for Listed {
    fn from(d: DeadLetter) -> Self {
        Listed {
            message_id: d.message_id,
            type_: d.type_,
            recipient: d.recipient.map(|r| r.as_str().to_owned()),
            delivery: d.delivery_id,
            caseref: d.caseref,
            queue: d.queue,
            reason: d.reason,
            dead_lettered_by: match d.by {
                liaison_bus::DeadBy::Relay => "relay",
                liaison_bus::DeadBy::RabbitMq => "rabbitmq",
            },
        }
    }
}

/// How long to wait for the queue to hand over what it holds.
const SETTLE: Duration = Duration::from_millis(500);

/// The dead letters now in `liaison.dead`, up to `max`; all stay in the queue.
pub async fn list(bus: &Bus, max: u16) -> Result<Vec<Listed>, RedriveError> {
    let mut consumer = bus.consume(QUEUE_DEAD, max.max(1)).await?;
    let mut listed = Vec::new();
    while listed.len() < usize::from(max) {
        match consumer.next(SETTLE).await? {
            Some(delivery) => listed.push(Listed::from(DeadLetter::from_delivery(&delivery))),
            None => break,
        }
    }
    // Dropping the consumer closes its channel: RabbitMQ requeues every delivery unacked.
    drop(consumer);
    Ok(listed)
}

/// What a redrive did.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct Redriven {
    /// Message ids sent again, with their recipient (as the ledger recorded them).
    pub sent: Vec<(Option<Uuid>, String)>,
    /// Dead letters left where they are (no matching delivery, or the publish failed).
    pub left: usize,
    /// Of those, the ones that match no delivery in the ledger, with the reason.
    pub unmatched: Vec<(Option<Uuid>, String)>,
}

/// Redrives the dead letters of `id` (or all with `None`); `by` is the administrator who
/// asked, recorded in each `delivery.redriven` entry (`None` from the command line).
pub async fn redrive(
    bus: &Bus,
    ledger: &Ledger,
    id: Option<Uuid>,
    by: Option<&AgencyCode>,
) -> Result<Redriven, RedriveError> {
    let mut consumer = bus.consume(QUEUE_DEAD, 100).await?;
    let publisher = bus.publisher().await?;
    let mut report = Redriven::default();
    let mut held = Vec::new();
    while let Some(delivery) = consumer.next(SETTLE).await? {
        let dead = DeadLetter::from_delivery(&delivery);
        if id.is_some_and(|id| dead.message_id != Some(id)) {
            // Held unacked until the end, so it is not handed to this consumer again.
            held.push(delivery);
            continue;
        }
        let recorded = match identify(ledger, &dead).await? {
            Ok(recorded) => recorded,
            Err(why) => {
                report.left += 1;
                report.unmatched.push((dead.message_id, why));
                held.push(delivery);
                continue;
            }
        };
        if let Some(seq) = recorded.erased_by {
            // Its personal data was erased: it is never sent again, and this copy of it
            // is removed from liaison.dead.
            delivery.ack().await?;
            report.unmatched.push((
                dead.message_id,
                format!("its personal data was erased by ledger entry {seq}; removed, not sent"),
            ));
            continue;
        }
        let row = &recorded.delivery;
        // The ledger's bytes and broker-built headers, to the recorded recipient.
        let outcome = publisher.publish_all(&[outgoing(row)]).await.pop();
        if outcome != Some(PublishOutcome::Confirmed) {
            tracing::warn!(
                message.id = %row.message_id,
                agency.code = %row.recipient,
                "dead letter not redriven: {outcome:?}"
            );
            report.left += 1;
            held.push(delivery);
            continue;
        }
        ledger
            .record_deliveries(vec![DeliveryOutcome::Redriven {
                delivery_id: row.delivery_id,
                by: by.cloned(),
            }])
            .await?;
        delivery.ack().await?;
        report
            .sent
            .push((Some(row.message_id), row.recipient.as_str().to_owned()));
    }
    drop(held);
    Ok(report)
}
