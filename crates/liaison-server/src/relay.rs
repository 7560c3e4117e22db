//! The outbox relay: moves committed deliveries from the ledger's outbox into the
//! recipients' RabbitMQ queues.
//!
//! A round claims a batch of due rows (a lease, so several instances share the work),
//! publishes them all with publisher confirms in flight at once, and records the outcome
//! of every row in one ledger commit. Several rounds overlap, so the next batch is claimed
//! and published while the previous one awaits its confirms and its commit. Only a confirm
//! without a return marks a row dispatched; anything else is a `delivery.failed` entry and
//! a retry with backoff. A crash between publish and record leaves the row leased; when
//! the lease ends it is published again, so delivery is at-least-once and consumers drop
//! duplicates by id.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use liaison_bus::{Bus, BusError, Outgoing, PublishOutcome, Publisher};
use liaison_core::Clock;
use liaison_ledger::{DeliveryOutcome, Ledger, PendingDelivery};
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;

/// Rounds in flight at once: enough to keep claiming, publishing and committing busy
/// together, few enough that a failing RabbitMQ does not fan out into many retries.
const ROUNDS_IN_FLIGHT: usize = 4;

pub struct Relay {
    pub ledger: Ledger,
    pub bus: Bus,
    pub config: RelayConfig,
    pub clock: Arc<dyn Clock>,
}

/// What one round saw, so the loop knows whether its channel is still good.
struct RoundEnd {
    failed: usize,
}

impl Relay {
    pub async fn run(self, cancel: CancellationToken) {
        let notify = self.ledger.outbox_notify();
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut publisher: Option<Publisher> = None;
        let mut rounds = FuturesUnordered::new();
        loop {
            // Fill the pipeline with whatever is due.
            while rounds.len() < ROUNDS_IN_FLIGHT && !cancel.is_cancelled() {
                let batch = match self
                    .ledger
                    .claim_deliveries(self.config.batch, self.config.lease())
                    .await
                {
                    Ok(batch) if batch.is_empty() => break,
                    Ok(batch) => batch,
                    Err(error) => {
                        tracing::warn!(%error, "relay cannot claim deliveries; retrying");
                        break;
                    }
                };
                let channel = self.publisher(&mut publisher).await;
                rounds.push(self.round(channel, batch));
            }
            if rounds.is_empty() {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = notify.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                }
                continue;
            }
            tokio::select! {
                ended = rounds.next() => {
                    if ended.is_some_and(|end| end.failed > 0) {
                        publisher = None;
                    }
                }
                _ = notify.notified(), if rounds.len() < ROUNDS_IN_FLIGHT => {}
                _ = cancel.cancelled() => {}
            }
            if cancel.is_cancelled() {
                // Finish what was published so that its outcomes are recorded.
                while rounds.next().await.is_some() {}
                break;
            }
        }
    }

    async fn publisher(&self, slot: &mut Option<Publisher>) -> Result<Publisher, BusError> {
        if let Some(open) = slot.as_ref().filter(|p| p.is_open()) {
            return Ok(open.clone());
        }
        let fresh = self.bus.publisher().await?;
        *slot = Some(fresh.clone());
        Ok(fresh)
    }

    async fn round(
        &self,
        publisher: Result<Publisher, BusError>,
        batch: Vec<PendingDelivery>,
    ) -> RoundEnd {
        let outcomes = match publisher {
            Ok(p) => {
                p.publish_all(&batch.iter().map(outgoing).collect::<Vec<_>>())
                    .await
            }
            Err(e) => vec![PublishOutcome::Failed(e.to_string()); batch.len()],
        };
        let failed = outcomes
            .iter()
            .filter(|o| **o != PublishOutcome::Confirmed)
            .count();
        let recorded = batch
            .iter()
            .zip(outcomes)
            .map(|(row, outcome)| self.outcome(row, outcome))
            .collect();
        let recorded = crate::dead_letters::park_exhausted(
            &self.bus,
            &batch,
            recorded,
            self.config.max_attempts,
        )
        .await;
        if let Err(error) = self.ledger.record_deliveries(recorded).await {
            // The rows stay leased; when the lease ends they are published again.
            tracing::warn!(%error, deliveries = batch.len(), "relay could not record delivery outcomes");
        }
        tracing::debug!(deliveries = batch.len(), failed, "relay round recorded");
        RoundEnd { failed }
    }

    fn outcome(&self, row: &PendingDelivery, outcome: PublishOutcome) -> DeliveryOutcome {
        let error = match outcome {
            PublishOutcome::Confirmed => {
                return DeliveryOutcome::Dispatched {
                    delivery_id: row.delivery_id,
                };
            }
            PublishOutcome::Returned {
                reply_code,
                reply_text,
            } => {
                format!(
                    "unroutable: {reply_code} {reply_text} (no queue for agency {})",
                    row.recipient
                )
            }
            PublishOutcome::Nacked => "nacked by RabbitMQ".to_owned(),
            PublishOutcome::Failed(e) => e,
        };
        tracing::warn!(message.id = %row.message_id, agency.code = %row.recipient, attempt = row.attempt, %error, "delivery failed");
        DeliveryOutcome::Failed {
            delivery_id: row.delivery_id,
            error,
            retry_at: self.clock.now() + self.config.retry_delay(row.attempt),
        }
    }
}

fn outgoing(row: &PendingDelivery) -> Outgoing {
    Outgoing {
        delivery_id: row.delivery_id,
        recipient: row.recipient.clone(),
        message_id: row.message_id,
        type_: row.type_.clone(),
        seq: row.seq,
        caseref: row.caseref.clone(),
        traceparent: row.traceparent.clone(),
        body: row.body.clone(),
    }
}
