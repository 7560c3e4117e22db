//! Dead letters, both ways they happen, each recorded in the ledger.
//!
//! - The relay gives up on a delivery after `relay.max_attempts` failed attempts (no queue
//!   for the agency — e.g. one removed from the registry —, nacks, a broken channel):
//!   [`park_exhausted`] publishes it to `liaison.dlx` with the reason in headers and turns
//!   its outcome into `delivery.dead_lettered`. Until that publish is confirmed the
//!   delivery stays a retried failure, so nothing is lost in between.
//! - RabbitMQ dead-letters a message that a consumer rejected, or that went past the
//!   queue's `x-delivery-limit`. The DLX fans out to `liaison.dead` (kept for operators)
//!   and `liaison.dead.ledger`, which [`DeadLetterRecorder`] consumes: it records one
//!   `delivery.dead_lettered` entry per death and acks only after the commit.

use std::time::Duration;

use liaison_bus::{
    Bus, BusError, DeadBy, DeadLetter, Delivery, PublishOutcome, QUEUE_DEAD_LEDGER, QUEUE_INTAKE,
};
use liaison_core::audit::sha256;
use liaison_core::{Channel, RejectCode};
use liaison_ledger::{DeliveryOutcome, Ledger, NewRejection, PendingDelivery, RejectionDetail};
use tokio_util::sync::CancellationToken;

use crate::intake::agency_of_user;
use crate::relay::outgoing;

/// Replaces the failed outcomes of deliveries on their last attempt with dead letters,
/// once each is confirmed in `liaison.dlx`.
pub async fn park_exhausted(
    bus: &Bus,
    batch: &[PendingDelivery],
    outcomes: Vec<DeliveryOutcome>,
    max_attempts: i32,
) -> Vec<DeliveryOutcome> {
    let exhausted = |row: &PendingDelivery, outcome: &DeliveryOutcome| {
        matches!(outcome, DeliveryOutcome::Failed { .. }) && row.attempt >= max_attempts
    };
    if !batch.iter().zip(&outcomes).any(|(r, o)| exhausted(r, o)) {
        return outcomes;
    }
    let publisher = match bus.publisher().await {
        Ok(p) => Some(p),
        Err(error) => {
            tracing::warn!(%error, "cannot open a channel to dead-letter exhausted deliveries; they stay due");
            None
        }
    };
    let mut result = Vec::with_capacity(outcomes.len());
    for (row, outcome) in batch.iter().zip(outcomes) {
        let (true, Some(publisher), DeliveryOutcome::Failed { error, .. }) =
            (exhausted(row, &outcome), &publisher, &outcome)
        else {
            result.push(outcome);
            continue;
        };
        let reason = format!("gave up after {} attempts: {error}", row.attempt);
        match publisher.publish_dead(&outgoing(row), &reason).await {
            PublishOutcome::Confirmed => {
                tracing::warn!(message.id = %row.message_id, agency.code = %row.recipient, %reason, "delivery dead-lettered");
                result.push(DeliveryOutcome::DeadLettered {
                    delivery_id: row.delivery_id,
                    reason,
                    by: "relay".into(),
                    queue: None,
                });
            }
            other => {
                tracing::warn!(message.id = %row.message_id, outcome = ?other, "dead-lettering failed; the delivery stays due");
                result.push(outcome);
            }
        }
    }
    result
}

/// Records every dead letter RabbitMQ makes in the ledger.
pub struct DeadLetterRecorder {
    pub bus: Bus,
    pub ledger: Ledger,
    /// To name the sender of an intake message that died (see `intake.user_prefix`).
    pub user_prefix: String,
}

impl DeadLetterRecorder {
    pub async fn run(self, cancel: CancellationToken) {
        crate::reopen::reopening("dead-letter recorder", &cancel, || self.consume(&cancel)).await;
    }

    async fn consume(&self, cancel: &CancellationToken) -> Result<(), BusError> {
        let mut consumer = self.bus.consume(QUEUE_DEAD_LEDGER, 50).await?;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                next = consumer.next(Duration::from_secs(60)) => next?,
            };
            let Some(delivery) = next else { continue };
            match self.record(&delivery).await {
                Ok(()) => delivery.ack().await?,
                Err(error) => {
                    // Not recorded: leave it for the next try; the ledger may be down.
                    tracing::warn!(%error, "cannot record a dead letter; retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                    delivery.reject(true).await?;
                }
            }
        }
    }

    async fn record(&self, delivery: &Delivery) -> Result<(), liaison_ledger::LedgerError> {
        let dead = DeadLetter::from_delivery(delivery);
        if dead.by == DeadBy::Relay {
            // The relay recorded it in the same commit as its last attempt.
            return Ok(());
        }
        if let Some(delivery_id) = dead.delivery_id {
            return self
                .ledger
                .record_deliveries(vec![DeliveryOutcome::DeadLettered {
                    delivery_id,
                    reason: dead.reason,
                    by: "rabbitmq".into(),
                    queue: dead.queue,
                }])
                .await;
        }
        if dead.queue.as_deref() == Some(QUEUE_INTAKE) && dead.reason != "rejected" {
            // A submission the broker could never record (the ledger was down through every
            // redelivery): its death is the only trace, so record it as a rejection.
            let sender = delivery
                .user_id
                .as_deref()
                .and_then(|u| agency_of_user(&self.user_prefix, u));
            self.ledger
                .reject(NewRejection {
                    sender,
                    channel: Channel::Amqp,
                    message_id: None,
                    caseref: None,
                    type_: None,
                    claimed: Default::default(),
                    code: RejectCode::Unavailable,
                    bytes_sha256: sha256(&delivery.body),
                    size: delivery.body.len(),
                    errors: vec![RejectionDetail {
                        pointer: String::new(),
                        keyword: "dead_letter".into(),
                        message: format!(
                            "dead-lettered from {QUEUE_INTAKE} ({}) before it could be recorded",
                            dead.reason
                        ),
                    }],
                })
                .await?;
            return Ok(());
        }
        // Intake messages rejected for want of identity were recorded by the intake; problem
        // notices and strays carry no delivery to record.
        tracing::info!(message.id = ?dead.message_id, queue = ?dead.queue, reason = %dead.reason, "dead letter without a delivery");
        Ok(())
    }
}
