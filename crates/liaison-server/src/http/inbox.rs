//! HTTPS pull for agency systems that do not speak AMQP.
//!
//! Each pulling agency gets a consumer on its own queue in this instance. A pulled
//! delivery stays unacknowledged in RabbitMQ, leased to the client until it acks it over
//! HTTPS or the lease ends (then it is handed back to the queue and pulled again). If the
//! instance dies, RabbitMQ requeues everything unacknowledged, so nothing pulled is lost;
//! an ack must reach the instance that served the pull (sticky sessions behind a load
//! balancer), otherwise the client simply receives the delivery again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use liaison_bus::{Bus, Consumer, Delivery, agency_queue};
use liaison_core::AgencyCode;
use liaison_ledger::Ledger;
use serde::Serialize;
use serde_json::value::RawValue;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::config::InboxConfig;
use crate::http::openapi::CloudEvent;
use crate::http::problem::{Dependency, Problem};

pub struct Inbox {
    bus: Bus,
    ledger: Ledger,
    config: InboxConfig,
    agencies: Mutex<HashMap<AgencyCode, Arc<AgencyInbox>>>,
}

#[derive(Default)]
struct AgencyInbox {
    consumer: tokio::sync::Mutex<Option<Consumer>>,
    leased: Mutex<HashMap<i64, Lease>>,
}

struct Lease {
    delivery: Delivery,
    until: Instant,
}

/// One delivery handed to a pulling client; `event` is the message exactly as accepted.
#[derive(Debug, Serialize, ToSchema)]
pub struct PulledDelivery {
    /// Acknowledge with POST /v1/inbox/{delivery}/ack
    pub delivery: i64,
    pub message_id: Option<Uuid>,
    pub seq: Option<u64>,
    #[serde(rename = "type")]
    pub type_: Option<String>,
    /// The message's case as the ledger recorded it (assigned or inherited when the event
    /// itself names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caseref: Option<String>,
    pub redelivered: bool,
    #[schema(value_type = CloudEvent)]
    pub event: Box<RawValue>,
}

/// What an ack did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AckOutcome {
    /// Recorded now.
    Acknowledged,
    /// This agency had acknowledged it before; nothing new is recorded.
    AlreadyAcknowledged,
    /// No delivery of this agency's awaits an ack here.
    Unknown,
}

#[derive(Debug, thiserror::Error)]
pub enum InboxError {
    #[error("RabbitMQ unavailable: {0}")]
    Bus(#[from] liaison_bus::BusError),
    #[error("ledger unavailable: {0}")]
    Ledger(#[from] liaison_ledger::LedgerError),
}

impl InboxError {
    /// The answer to the client: which service failed, not how.
    pub fn problem(&self) -> Problem {
        match self {
            Self::Bus(e) => Problem::unavailable(Dependency::RabbitMq, e),
            Self::Ledger(e) => Problem::ledger(e),
        }
    }
}

impl Inbox {
    pub fn new(bus: Bus, ledger: Ledger, config: InboxConfig) -> Self {
        Self {
            bus,
            ledger,
            config,
            agencies: Mutex::new(HashMap::new()),
        }
    }

    /// Closes every agency's consumer (their deliveries still leased go back to the queues),
    /// before the broker closes its RabbitMQ connection.
    pub async fn close(&self) {
        let inboxes: Vec<Arc<AgencyInbox>> = self
            .agencies
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for inbox in inboxes {
            inbox
                .leased
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clear();
            if let Some(consumer) = inbox.consumer.lock().await.take() {
                consumer.close().await;
            }
        }
    }

    /// Deliveries leased to pulling clients of this instance, over every agency.
    pub fn leases(&self) -> usize {
        let agencies = self.agencies.lock().unwrap_or_else(|p| p.into_inner());
        agencies
            .values()
            .map(|inbox| inbox.leased.lock().unwrap_or_else(|p| p.into_inner()).len())
            .sum()
    }

    fn agency(&self, agency: &AgencyCode) -> Arc<AgencyInbox> {
        let mut agencies = self.agencies.lock().unwrap_or_else(|p| p.into_inner());
        agencies.entry(agency.clone()).or_default().clone()
    }

    /// Waits up to `wait` for the first delivery, then takes whatever else is ready, up to `max`.
    pub async fn pull(
        &self,
        agency: &AgencyCode,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<PulledDelivery>, InboxError> {
        let wait = wait.min(self.config.max_wait);
        let max = max.clamp(1, usize::from(self.config.max_batch));
        let inbox = self.agency(agency);
        inbox.release_expired().await;

        let mut slot = inbox.consumer.lock().await;
        if slot.is_none() {
            *slot = Some(
                self.bus
                    .consume(&agency_queue(agency), self.config.max_batch)
                    .await?,
            );
        }
        let mut pulled = Vec::new();
        let mut next_wait = wait;
        while pulled.len() < max {
            let Some(consumer) = slot.as_mut() else { break };
            let delivery = match consumer.next(next_wait).await {
                Ok(Some(delivery)) => delivery,
                Ok(None) => break,
                Err(e) => {
                    // The channel is gone; its unacknowledged deliveries return to the queue.
                    *slot = None;
                    inbox
                        .leased
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .clear();
                    if pulled.is_empty() {
                        return Err(e.into());
                    }
                    break;
                }
            };
            next_wait = Duration::ZERO;
            if let Some(item) = inbox.lease(delivery, self.lease()).await {
                pulled.push(item);
            }
        }
        Ok(pulled)
    }

    /// Acknowledges a pulled delivery: recorded in the ledger first, then acked to RabbitMQ.
    /// Without a lease on this instance, an ack the ledger already holds from this agency
    /// is [`AckOutcome::AlreadyAcknowledged`] (a client retrying an ack whose answer it
    /// lost), anything else [`AckOutcome::Unknown`].
    pub async fn ack(
        &self,
        agency: &AgencyCode,
        delivery_id: i64,
    ) -> Result<AckOutcome, InboxError> {
        let inbox = self.agency(agency);
        let Some(lease) = inbox
            .leased
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&delivery_id)
        else {
            // The outbox row's state is working state, but `acknowledged` is final: only an
            // ack recorded in the ledger sets it.
            let acknowledged = self
                .ledger
                .delivery(delivery_id)
                .await?
                .is_some_and(|d| &d.delivery.recipient == agency && d.state == "acknowledged");
            return Ok(if acknowledged {
                AckOutcome::AlreadyAcknowledged
            } else {
                AckOutcome::Unknown
            });
        };
        match self.ledger.acknowledge(delivery_id, agency).await {
            Ok(true) => {}
            // Only the relay puts deliveries into agency queues, so the ledger knows each one;
            // settle a stray anyway so that it does not come back forever.
            Ok(false) => {
                tracing::warn!(agency.code = %agency, delivery = delivery_id, "acknowledged delivery unknown to the ledger")
            }
            Err(e) => {
                inbox
                    .leased
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(delivery_id, lease);
                return Err(e.into());
            }
        }
        // Recorded; if this ack is lost the delivery comes again and the client drops it by id.
        if let Err(e) = lease.delivery.ack().await {
            tracing::warn!(agency.code = %agency, delivery = delivery_id, error = %e, "ack to RabbitMQ failed");
        }
        Ok(AckOutcome::Acknowledged)
    }

    fn lease(&self) -> Duration {
        self.config.lease
    }
}

impl AgencyInbox {
    async fn lease(&self, delivery: Delivery, lease: Duration) -> Option<PulledDelivery> {
        let event = std::str::from_utf8(&delivery.body)
            .ok()
            .and_then(|s| RawValue::from_string(s.to_owned()).ok());
        if delivery.type_.as_deref() == Some(liaison_bus::TYPE_PROBLEM) {
            // A problem notice for an AMQP submission. Over HTTPS the submitter got the
            // problem in its answer and the ledger holds the rejection: settle it here
            // rather than dead-letter it. AMQP-only agencies read notices from the queue.
            let _ = delivery.ack().await;
            return None;
        }
        let (Some(id), Some(event)) = (delivery.delivery_id, event) else {
            // Not something the relay published: park it in the dead-letter queue.
            tracing::warn!(message.id = ?delivery.message_id, "unexpected message in an agency queue; dead-lettering it");
            let _ = delivery.reject(false).await;
            return None;
        };
        let item = PulledDelivery {
            delivery: id,
            message_id: delivery.message_id,
            seq: delivery.seq,
            type_: delivery.type_.clone(),
            caseref: delivery.caseref.clone(),
            redelivered: delivery.redelivered,
            event,
        };
        let mut leased = self.leased.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(stale) = leased.insert(
            id,
            Lease {
                delivery,
                until: Instant::now() + lease,
            },
        ) {
            // The same delivery again (published twice): one lease, the older copy is settled.
            tokio::spawn(async move {
                let _ = stale.delivery.ack().await;
            });
        }
        Some(item)
    }

    /// Hands deliveries whose lease ended back to the queue.
    async fn release_expired(&self) {
        let now = Instant::now();
        let expired: Vec<Lease> = {
            let mut leased = self.leased.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<i64> = leased
                .iter()
                .filter(|(_, l)| l.until <= now)
                .map(|(id, _)| *id)
                .collect();
            ids.into_iter()
                .filter_map(|id| leased.remove(&id))
                .collect()
        };
        for lease in expired {
            let _ = lease.delivery.reject(true).await;
        }
    }
}
