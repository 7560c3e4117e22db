//! AMQP intake: agencies publish CloudEvents to the `liaison.intake` exchange with their own
//! RabbitMQ user, and this consumer feeds them to the same [`Pipeline`] as HTTPS.
//!
//! Identity: RabbitMQ refuses a publish whose `user_id` property differs from the
//! connection's user, so a present `user_id` is authenticated. The user `<prefix><code>`
//! (default prefix `agency-`, see [`IntakeConfig`]) is agency `<code>`. A message without
//! `user_id`, or from a user that names no agency, has no identity: it is recorded as a
//! `message.rejected` entry with code `unauthenticated` and acknowledged (no problem
//! notice is possible without knowing whom to tell). It is not dead-lettered: nothing a
//! publisher wrote may reach `liaison.dead`, which operators redrive from, or the
//! dead-letter recorder, which changes deliveries.
//!
//! Limits, as for HTTPS: the agency's rate (the same token buckets as the gateway's, see
//! `guard.rs`) and `limits.max_body_bytes` are checked before anything is parsed; past
//! either, the message is refused (`rate_limited`, `body_too_large`), recorded, answered
//! with a problem notice and acknowledged, so that a flooding agency neither holds intake
//! slots nor delays other agencies' messages. Unlike the gateway's, these rate refusals
//! are recorded: the message was already taken from the queue, and the record and the
//! notice are the sender's only answer. The queue's own bounds (`x-max-length`,
//! `x-max-length-bytes`) cap what can wait to be refused.
//!
//! Settlement: a message is acked only after the pipeline answered — accepted (committed
//! with its outbox rows) or refused (the rejection committed, and an RFC 9457 problem notice
//! put in the sender's own queue). When the ledger is unavailable the message is rejected
//! with requeue after a pause, so it is retried until the queue's delivery limit
//! dead-letters it. A crash before the ack makes RabbitMQ deliver it again; the pipeline
//! answers a repeated id with the same bytes as a duplicate, so nothing is recorded twice.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use liaison_bus::{Bus, BusError, Delivery, PublishOutcome, Publisher, QUEUE_INTAKE};
use liaison_core::{AgencyCode, Channel, Clock, RejectCode, Submission};
use tokio_util::sync::CancellationToken;

use crate::config::IntakeConfig;
use crate::http::guard::RateLimiter;
use crate::http::problem::Problem;
use crate::pipeline::Pipeline;

/// How long an intake message is held before it is requeued while the ledger is down.
const UNAVAILABLE_PAUSE: Duration = Duration::from_secs(1);

pub struct Intake {
    pub bus: Bus,
    pub pipeline: Arc<Pipeline>,
    pub clock: Arc<dyn Clock>,
    pub config: IntakeConfig,
    /// `limits.max_body_bytes`.
    pub max_body_bytes: usize,
    /// The gateway's per-agency buckets (`None` when the rate limit is off).
    pub rate: Option<Arc<RateLimiter>>,
}

/// The RabbitMQ user of an agency, given the configured prefix.
pub fn agency_user(prefix: &str, agency: &AgencyCode) -> String {
    format!("{prefix}{agency}")
}

/// The agency a validated RabbitMQ user id names, if any.
pub fn agency_of_user(prefix: &str, user: &str) -> Option<AgencyCode> {
    user.strip_prefix(prefix)
        .and_then(|code| AgencyCode::new(code).ok())
}

/// What to do with an intake message once it was handled.
#[derive(Debug, PartialEq, Eq)]
enum Settle {
    Ack,
    /// Back to the queue: the pipeline could not record anything.
    Requeue,
}

impl Intake {
    /// Consumes until `cancel`; a lost channel or connection is reopened with backoff.
    pub async fn run(self, cancel: CancellationToken) {
        crate::workers::reopen::reopening("AMQP intake", &cancel, || self.consume(&cancel)).await;
    }

    /// Handles up to `prefetch` messages at once; returns `Ok` only when cancelled.
    async fn consume(&self, cancel: &CancellationToken) -> Result<(), BusError> {
        let prefetch = self.config.prefetch.max(1);
        let mut consumer = self.bus.consume(QUEUE_INTAKE, prefetch).await?;
        let publisher: tokio::sync::Mutex<Option<Publisher>> = tokio::sync::Mutex::new(None);
        let mut in_flight = FuturesUnordered::new();
        tracing::info!(queue = QUEUE_INTAKE, "AMQP intake consuming");
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    // Finish what was taken so that each is settled after its commit.
                    while let Some(settled) = in_flight.next().await {
                        settled?;
                    }
                    drop(in_flight);
                    consumer.close().await;
                    if let Some(publisher) = publisher.into_inner() {
                        publisher.close().await;
                    }
                    return Ok(());
                }
                Some(settled) = in_flight.next(), if !in_flight.is_empty() => settled?,
                next = consumer.next(Duration::from_secs(60)), if in_flight.len() < usize::from(prefetch) => {
                    if let Some(delivery) = next? {
                        in_flight.push(self.handle_and_settle(delivery, &publisher));
                    }
                }
            }
        }
    }

    async fn handle_and_settle(
        &self,
        delivery: Delivery,
        publisher: &tokio::sync::Mutex<Option<Publisher>>,
    ) -> Result<(), BusError> {
        match self.handle(&delivery, publisher).await {
            Settle::Ack => delivery.ack().await,
            Settle::Requeue => {
                tokio::time::sleep(UNAVAILABLE_PAUSE).await;
                delivery.reject(true).await
            }
        }
    }

    async fn handle(
        &self,
        delivery: &Delivery,
        publisher: &tokio::sync::Mutex<Option<Publisher>>,
    ) -> Settle {
        let received_at = self.clock.now();
        let sender = delivery
            .user_id
            .as_deref()
            .and_then(|user| agency_of_user(&self.config.user_prefix, user));
        let Some(sender) = sender else {
            let detail = match &delivery.user_id {
                None => "an AMQP submission must carry the user_id property (RabbitMQ checks it against the publishing user)".to_owned(),
                Some(user) => format!(
                    "RabbitMQ user {user:?} is not an agency user ({}<code>)",
                    self.config.user_prefix
                ),
            };
            let problem = self
                .pipeline
                .refuse_anonymous(
                    Channel::Amqp,
                    RejectCode::Unauthenticated,
                    detail,
                    &delivery.body,
                )
                .await;
            tracing::warn!(user = ?delivery.user_id, ledger.seq = ?problem.ledger_seq, "AMQP submission without agency identity refused");
            return if problem.code == RejectCode::Unavailable {
                Settle::Requeue
            } else {
                Settle::Ack
            };
        };

        if let Some(problem) = self.over_limits(&sender, delivery).await {
            if problem.code == RejectCode::Unavailable {
                return Settle::Requeue;
            }
            self.notify(&sender, &problem, publisher).await;
            return Settle::Ack;
        }

        let submission = Submission {
            sender: sender.clone(),
            bytes: delivery.body.clone(),
            channel: Channel::Amqp,
            received_at,
            traceparent: delivery.traceparent.clone(),
        };
        match self.pipeline.submit(submission).await {
            Ok(_) => Settle::Ack,
            Err(problem) if problem.code == RejectCode::Unavailable => Settle::Requeue,
            Err(problem) => {
                self.notify(&sender, &problem, publisher).await;
                Settle::Ack
            }
        }
    }

    /// The agency's rate, then the size limit; `Some` (recorded) when one refuses it.
    async fn over_limits(&self, sender: &AgencyCode, delivery: &Delivery) -> Option<Problem> {
        let refusal = if let Some(rate) = &self.rate
            && let Err(wait) = rate.take(sender, std::time::Instant::now())
        {
            (
                RejectCode::RateLimited,
                format!(
                    "agency {sender} is over its submission rate; publish again after {} ms",
                    wait.as_millis().max(1)
                ),
            )
        } else if delivery.body.len() > self.max_body_bytes {
            (
                RejectCode::BodyTooLarge,
                format!(
                    "the body is {} bytes; the limit is {}",
                    delivery.body.len(),
                    self.max_body_bytes
                ),
            )
        } else {
            return None;
        };
        let (code, detail) = refusal;
        let problem = self
            .pipeline
            .refuse_bytes(sender, Channel::Amqp, code, detail, &delivery.body)
            .await;
        tracing::warn!(agency.code = %sender, reject.code = code.as_str(), ledger.seq = ?problem.ledger_seq, "AMQP submission over the limits");
        Some(problem)
    }

    /// Puts the problem into the sender's own queue. The rejection is already in the
    /// ledger, so a notice that cannot be delivered is logged, not retried.
    async fn notify(
        &self,
        sender: &AgencyCode,
        problem: &Problem,
        publisher: &tokio::sync::Mutex<Option<Publisher>>,
    ) {
        let body = match serde_json::to_vec(problem) {
            Ok(body) => body,
            Err(error) => {
                tracing::warn!(%error, "cannot encode a problem notice");
                return;
            }
        };
        let mut slot = publisher.lock().await;
        let open = match slot.take() {
            Some(p) if p.is_open() => Ok(p),
            _ => self.bus.publisher().await,
        };
        let outcome = match open {
            Ok(p) => {
                let outcome = p.publish_problem(sender, problem.message_id, &body).await;
                *slot = Some(p);
                outcome
            }
            Err(e) => PublishOutcome::Failed(e.to_string()),
        };
        if outcome != PublishOutcome::Confirmed {
            tracing::warn!(agency.code = %sender, reject.code = problem.code.as_str(), ?outcome, "problem notice not delivered to the agency's queue");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_map_to_agencies_by_prefix() {
        let eco = AgencyCode::new("eco").unwrap();
        assert_eq!(agency_user("agency-", &eco), "agency-eco");
        assert_eq!(agency_of_user("agency-", "agency-eco"), Some(eco));
        assert_eq!(agency_of_user("agency-", "guest"), None);
        assert_eq!(agency_of_user("agency-", "agency-"), None);
        assert_eq!(agency_of_user("agency-", "agency-Not Valid"), None);
    }
}
