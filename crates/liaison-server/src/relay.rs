//! The outbox relay: moves committed deliveries from the ledger's outbox into the
//! recipients' RabbitMQ queues.
//!
//! Each round claims a batch of due rows (a lease, so several instances share the work),
//! publishes them all with publisher confirms in flight at once, and records the outcome
//! of every row in one ledger commit. Only a confirm without a return marks a row
//! dispatched; anything else is a `delivery.failed` entry and a retry with backoff.
//! A crash between publish and record leaves the row leased; when the lease ends it is
//! published again, so delivery is at-least-once and consumers drop duplicates by id.

use std::sync::Arc;
use std::time::Duration;

use liaison_bus::{Bus, Outgoing, PublishOutcome, Publisher};
use liaison_core::Clock;
use liaison_ledger::{DeliveryOutcome, Ledger, PendingDelivery};
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;

pub struct Relay {
    pub ledger: Ledger,
    pub bus: Bus,
    pub config: RelayConfig,
    pub clock: Arc<dyn Clock>,
}

impl Relay {
    pub async fn run(self, cancel: CancellationToken) {
        let notify = self.ledger.outbox_notify();
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        let mut publisher: Option<Publisher> = None;
        loop {
            match self.drain(&mut publisher).await {
                Ok(()) => {}
                Err(error) => {
                    tracing::warn!(%error, "relay round failed; retrying");
                    publisher = None;
                }
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = notify.notified() => {}
                _ = tokio::time::sleep(poll) => {}
            }
        }
    }

    /// Publishes batches until the outbox has nothing due.
    async fn drain(&self, publisher: &mut Option<Publisher>) -> Result<(), RelayError> {
        loop {
            let batch = self
                .ledger
                .claim_deliveries(self.config.batch, self.config.lease())
                .await?;
            if batch.is_empty() {
                return Ok(());
            }
            let full = batch.len() as i64 == self.config.batch;
            let outcomes = match self.publisher(publisher).await {
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
            if failed > 0 {
                *publisher = None;
            }
            let recorded = batch
                .iter()
                .zip(outcomes)
                .map(|(row, outcome)| self.outcome(row, outcome))
                .collect();
            self.ledger.record_deliveries(recorded).await?;
            tracing::debug!(deliveries = batch.len(), failed, "relay round recorded");
            if !full || failed > 0 {
                return Ok(());
            }
        }
    }

    async fn publisher<'a>(
        &self,
        slot: &'a mut Option<Publisher>,
    ) -> Result<&'a Publisher, liaison_bus::BusError> {
        let open = match slot.take() {
            Some(p) if p.is_open() => p,
            _ => self.bus.publisher().await?,
        };
        Ok(slot.insert(open))
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

#[derive(Debug, thiserror::Error)]
enum RelayError {
    #[error(transparent)]
    Ledger(#[from] liaison_ledger::LedgerError),
}
