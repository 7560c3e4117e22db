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
//!
//! A dead letter changes a delivery only when [`identify`] matches it to the ledger:
//! RabbitMQ's own `x-death` record says which queue it died in, and the outbox row and the
//! message's digest say whether it is that queue's delivery. Headers such as
//! `liaison-delivery` are only where to look; `liaison-recipient`, `liaison-dead-by` and
//! `liaison-dead-reason` are never believed.

use std::time::Duration;

use liaison_bus::{
    AGENCY_QUEUE_PREFIX, Bus, BusError, DeadBy, DeadLetter, Delivery, PublishOutcome,
    QUEUE_DEAD_LEDGER, QUEUE_INTAKE, agency_queue,
};
use liaison_core::audit::sha256;
use liaison_core::{Channel, RejectCode};
use liaison_ledger::{
    DeliveryOutcome, Ledger, NewRejection, PendingDelivery, RecordedDelivery, RejectionDetail,
};
use tokio_util::sync::CancellationToken;

use crate::workers::intake::agency_of_user;
use crate::workers::outgoing;

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
                crate::telemetry::events::DeadLettered {
                    message_id: row.message_id,
                    recipient: &row.recipient,
                    attempts: row.attempt.max(0) as u32,
                }
                .emit();
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
        crate::workers::reopen::reopening("dead-letter recorder", &cancel, || {
            self.consume(&cancel)
        })
        .await;
    }

    async fn consume(&self, cancel: &CancellationToken) -> Result<(), BusError> {
        let mut consumer = self.bus.consume(QUEUE_DEAD_LEDGER, 50).await?;
        loop {
            let next = tokio::select! {
                _ = cancel.cancelled() => {
                    consumer.close().await;
                    return Ok(());
                }
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
            // Published straight into the exchange, which only the broker's user may do:
            // the relay, which recorded it in the same commit as its last attempt.
            return Ok(());
        }
        if dead.queue.as_deref() == Some(QUEUE_INTAKE) {
            // Intake acks everything it could record (refusals included), so a death here
            // is a submission the broker could never record (the ledger was down through
            // every redelivery): its death is the only trace, so record it as a rejection.
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
        match identify(&self.ledger, &dead).await? {
            Ok(recorded) => {
                self.ledger
                    .record_deliveries(vec![DeliveryOutcome::DeadLettered {
                        delivery_id: recorded.delivery.delivery_id,
                        reason: dead.reason,
                        by: "rabbitmq".into(),
                        queue: dead.queue,
                    }])
                    .await
            }
            Err(why) => {
                // Problem notices rejected by their agency, or anything whose headers do
                // not lead to a matching delivery: logged, and no delivery changes.
                tracing::warn!(message.id = ?dead.message_id, queue = ?dead.queue, reason = %dead.reason, %why, "stray dead letter: no delivery recorded");
                Ok(())
            }
        }
    }
}

/// The ledger's delivery that a dead letter is, or why it is none.
///
/// A dead letter's headers are whatever its publisher wrote; only RabbitMQ's `x-death`
/// record (its queue) and the ledger are believed. It is outbox row `delivery_id` only
/// if that row exists, RabbitMQ dead-lettered it from that row's recipient's queue (or
/// the relay parked it: no `x-death`, published into the exchange only the broker may
/// write to), its message id is the row's, and its body's SHA-256 is the ledger's digest
/// of that message.
pub async fn identify(
    ledger: &Ledger,
    dead: &DeadLetter,
) -> Result<Result<RecordedDelivery, String>, liaison_ledger::LedgerError> {
    let Some(delivery_id) = dead.delivery_id else {
        return Ok(Err("it names no delivery".into()));
    };
    if dead.by == DeadBy::RabbitMq
        && !dead
            .queue
            .as_deref()
            .is_some_and(|q| q.starts_with(AGENCY_QUEUE_PREFIX))
    {
        return Ok(Err(format!(
            "RabbitMQ dead-lettered it from {:?}, not from an agency's queue",
            dead.queue
        )));
    }
    let Some(recorded) = ledger.delivery(delivery_id).await? else {
        return Ok(Err(format!("the ledger holds no delivery {delivery_id}")));
    };
    let row = &recorded.delivery;
    if dead.by == DeadBy::RabbitMq && dead.queue.as_deref() != Some(&agency_queue(&row.recipient)) {
        return Ok(Err(format!(
            "delivery {delivery_id} is for {}, but it died in {:?}",
            row.recipient, dead.queue
        )));
    }
    if dead.message_id != Some(row.message_id) {
        return Ok(Err(format!(
            "delivery {delivery_id} carries message {}, not {:?}",
            row.message_id, dead.message_id
        )));
    }
    if dead.body_sha256 != recorded.sha256 {
        return Ok(Err(format!(
            "its body is not the ledger's bytes of message {}",
            row.message_id
        )));
    }
    Ok(Ok(recorded))
}
