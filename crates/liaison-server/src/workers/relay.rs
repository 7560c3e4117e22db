//! The outbox relay: moves committed deliveries from the ledger's outbox into the
//! recipients' RabbitMQ queues.
//!
//! A round takes a batch of rows leased to this relay — handed over by this process's own
//! ledger commits, or claimed from the outbox when due (retries, expired leases) — publishes
//! them all with publisher confirms in flight at once, and records the outcome
//! of every row in one ledger commit. Several rounds overlap, so the next batch is claimed
//! and published while the previous one awaits its confirms and its commit. Only a confirm
//! without a return marks a row dispatched; anything else is a `delivery.failed` entry and
//! a retry with backoff. A crash between publish and record leaves the row leased; when
//! the lease ends it is published again, so delivery is at-least-once and consumers drop
//! duplicates by id.

use std::sync::Arc;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use liaison_bus::{Bus, BusError, PublishOutcome, Publisher};
use liaison_core::Clock;
use liaison_ledger::{DeliveryOutcome, Ledger, PendingDelivery};
use tokio_util::sync::CancellationToken;

use crate::config::RelayConfig;
use crate::telemetry::events::RelayRound;
use crate::telemetry::trace;
use crate::workers::outgoing;

/// Rounds in flight at once: enough to keep claiming, publishing and committing busy
/// together, few enough that a failing RabbitMQ does not fan out into many retries.
const ROUNDS_IN_FLIGHT: usize = 4;

/// Committed batches the handoff holds for the relay before they wait for their lease.
const HANDOFF_BATCHES: usize = 256;

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
        // This process's commits hand their deliveries over directly, already leased to
        // us; the claiming query is only for what is left: retries that came due, leases
        // that ran out (a relay that died), batches the handoff had no room for.
        let mut handed = self
            .ledger
            .take_deliveries(self.config.lease, HANDOFF_BATCHES);
        let mut poll = tokio::time::interval(self.config.poll_interval);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut claim_due = true;
        let mut publisher: Option<Publisher> = None;
        let mut rounds = FuturesUnordered::new();
        loop {
            // Fill the pipeline: handed-over batches first, then what is due in the outbox.
            while rounds.len() < ROUNDS_IN_FLIGHT && !cancel.is_cancelled() {
                let batch = match handed.try_recv() {
                    Ok(batch) => batch,
                    Err(_) if !claim_due => break,
                    Err(_) => match self
                        .ledger
                        .claim_deliveries(self.config.batch, self.config.lease)
                        .await
                    {
                        Ok(batch) if batch.is_empty() => {
                            claim_due = false;
                            break;
                        }
                        Ok(batch) => batch,
                        Err(error) => {
                            tracing::warn!(%error, "relay cannot claim deliveries; retrying");
                            claim_due = false;
                            break;
                        }
                    },
                };
                let channel = self.publisher(&mut publisher).await;
                rounds.push(self.round(channel, batch));
            }
            let room = rounds.len() < ROUNDS_IN_FLIGHT;
            tokio::select! {
                ended = rounds.next(), if !rounds.is_empty() => {
                    if ended.is_some_and(|end| end.failed > 0) {
                        publisher = None;
                    }
                }
                batch = handed.recv(), if room => {
                    if let Some(batch) = batch {
                        let channel = self.publisher(&mut publisher).await;
                        rounds.push(self.round(channel, batch));
                    }
                }
                _ = poll.tick(), if room => claim_due = true,
                _ = cancel.cancelled() => {}
            }
            if cancel.is_cancelled() {
                // Finish what was published so that its outcomes are recorded; what was
                // handed over but not published stays leased and is claimed after restart.
                while rounds.next().await.is_some() {}
                if let Some(publisher) = publisher.take() {
                    publisher.close().await;
                }
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
        let started = std::time::Instant::now();
        // A span per delivery, the child of the span that accepted its message; the
        // recipient's copy names it in its `traceparent` header.
        let (spans, messages): (Vec<_>, Vec<_>) = batch
            .iter()
            .map(|row| {
                let span = tracing::info_span!(
                    "message.relay",
                    message.id = %row.message_id,
                    agency.code = %row.recipient,
                    case.ref = row.caseref.as_deref(),
                    attempt = row.attempt,
                    trace.id = tracing::field::Empty,
                );
                let mut message = outgoing(row);
                message.traceparent = Some(trace::start_child(&span, row.traceparent.as_deref()));
                (span, message)
            })
            .unzip();
        let outcomes = match publisher {
            Ok(p) => p.publish_all(&messages).await,
            Err(e) => vec![PublishOutcome::Failed(e.to_string()); batch.len()],
        };
        drop(spans);
        let failed = outcomes
            .iter()
            .filter(|o| **o != PublishOutcome::Confirmed)
            .count();
        let recorded = batch
            .iter()
            .zip(outcomes)
            .map(|(row, outcome)| self.outcome(row, outcome))
            .collect();
        let recorded = crate::workers::dead_letters::park_exhausted(
            &self.bus,
            &batch,
            recorded,
            self.config.max_attempts,
        )
        .await;
        let retried = recorded
            .iter()
            .filter(|o| matches!(o, DeliveryOutcome::Failed { .. }))
            .count();
        if let Err(error) = self.ledger.record_deliveries(recorded).await {
            // The rows stay leased; when the lease ends they are published again.
            tracing::warn!(%error, deliveries = batch.len(), "relay could not record delivery outcomes");
        }
        RelayRound {
            deliveries: batch.len(),
            retried,
            elapsed: started.elapsed(),
        }
        .emit();
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
