//! Dead letters and notices: what does not travel the normal delivery path.
//!
//! - The relay gives up on a delivery after its maximum attempts and parks the message in
//!   [`EXCHANGE_DLX`] with the reason in headers ([`Publisher::publish_dead`]).
//! - RabbitMQ dead-letters a message rejected without requeue, or redelivered past the
//!   queue's `x-delivery-limit`, into the same exchange with an `x-death` header.
//! - Both end in `liaison.dead` (listed and redriven by operators) and in
//!   `liaison.dead.ledger` (recorded in the ledger by the broker).
//! - A problem notice ([`Publisher::publish_problem`]) tells an agency that submitted over
//!   AMQP why its message was refused, in its own queue.

use lapin::options::BasicPublishOptions;
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use liaison_core::AgencyCode;
use uuid::Uuid;

use crate::consumer::Delivery;
use crate::deadline::within;
use crate::publisher::{
    APP_ID, Outgoing, PublishOutcome, Publisher, await_confirm, properties, unix_seconds_now,
};
use crate::topology::{AGENCY_QUEUE_PREFIX, EXCHANGE_DELIVER, EXCHANGE_DLX};

/// Header naming the agency a dead-lettered delivery was for.
pub const HEADER_RECIPIENT: &str = "liaison-recipient";
/// Header with the reason the relay gave up on a delivery.
pub const HEADER_DEAD_REASON: &str = "liaison-dead-reason";
/// Header naming who dead-lettered the message when it was not RabbitMQ (`relay`).
pub const HEADER_DEAD_BY: &str = "liaison-dead-by";
/// `type` property of a problem notice in an agency's queue.
pub const TYPE_PROBLEM: &str = "liaison.problem";
/// `content_type` of a problem notice.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Who parked a message in the dead-letter queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadBy {
    /// The relay, after its last delivery attempt failed; already in the ledger.
    Relay,
    /// RabbitMQ: rejected without requeue, or over the queue's delivery limit.
    RabbitMq,
}

/// What the dead-letter queue says about one message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: Option<Uuid>,
    pub type_: Option<String>,
    pub delivery_id: Option<i64>,
    pub seq: Option<u64>,
    pub caseref: Option<String>,
    /// The agency it was for, when it was a delivery.
    pub recipient: Option<AgencyCode>,
    /// The queue it died in (RabbitMQ dead letters).
    pub queue: Option<String>,
    /// `delivery_limit`, `rejected`, … or the relay's own reason.
    pub reason: String,
    pub by: DeadBy,
    /// How often RabbitMQ dead-lettered it from that queue.
    pub count: i64,
}

impl DeadLetter {
    /// Reads the dead-letter headers of a message consumed from a dead-letter queue.
    pub fn from_delivery(delivery: &Delivery) -> DeadLetter {
        let death = first_death(delivery.headers());
        let queue = death.as_ref().and_then(|d| table_text(d, "queue"));
        let recipient = delivery
            .header(HEADER_RECIPIENT)
            .or_else(|| {
                queue
                    .as_deref()
                    .and_then(|q| q.strip_prefix(AGENCY_QUEUE_PREFIX))
                    .map(str::to_owned)
            })
            .and_then(|code| AgencyCode::new(code).ok());
        let by = match delivery.header(HEADER_DEAD_BY).as_deref() {
            Some("relay") => DeadBy::Relay,
            _ => DeadBy::RabbitMq,
        };
        let reason = delivery
            .header(HEADER_DEAD_REASON)
            .or_else(|| death.as_ref().and_then(|d| table_text(d, "reason")))
            .unwrap_or_else(|| "unknown".to_owned());
        let count = death
            .as_ref()
            .and_then(|d| match d.inner().get("count") {
                Some(AMQPValue::LongLongInt(n)) => Some(*n),
                Some(AMQPValue::LongInt(n)) => Some(i64::from(*n)),
                _ => None,
            })
            .unwrap_or(1);
        DeadLetter {
            message_id: delivery.message_id,
            type_: delivery.type_.clone(),
            delivery_id: delivery.delivery_id,
            seq: delivery.seq,
            caseref: delivery.caseref.clone(),
            recipient,
            queue,
            reason,
            by,
            count,
        }
    }
}

/// The most recent `x-death` record (RabbitMQ keeps the latest first).
fn first_death(headers: &FieldTable) -> Option<FieldTable> {
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(deaths) => deaths.as_slice().iter().find_map(|d| match d {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        }),
        _ => None,
    }
}

fn table_text(table: &FieldTable, key: &str) -> Option<String> {
    crate::consumer::header_text(table, key)
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

impl Publisher {
    /// Parks a delivery the relay gave up on in the dead-letter exchange, with the reason.
    pub async fn publish_dead(&self, item: &Outgoing, reason: &str) -> PublishOutcome {
        let properties = match properties(item, unix_seconds_now()) {
            Ok(p) => p,
            Err(reason) => return PublishOutcome::Failed(reason),
        };
        let mut headers = properties.headers().clone().unwrap_or_default();
        headers.insert(HEADER_RECIPIENT.into(), text(item.recipient.as_str()));
        headers.insert(HEADER_DEAD_REASON.into(), text(reason));
        headers.insert(HEADER_DEAD_BY.into(), text("relay"));
        let properties = properties.with_headers(headers);
        self.publish_confirmed(
            EXCHANGE_DLX,
            item.recipient.as_str(),
            &item.body,
            properties,
        )
        .await
    }

    /// Puts an RFC 9457 problem document into `agency`'s own queue, so that an agency
    /// that submits over AMQP learns why a message was refused.
    pub async fn publish_problem(
        &self,
        agency: &AgencyCode,
        message_id: Option<Uuid>,
        problem: &[u8],
    ) -> PublishOutcome {
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type(PROBLEM_CONTENT_TYPE.into())
            .with_type(ShortString::from(TYPE_PROBLEM))
            .with_app_id(APP_ID.into())
            .with_timestamp(unix_seconds_now());
        if let Some(id) = message_id {
            properties = properties
                .with_correlation_id(id.to_string().into())
                .with_message_id(Uuid::now_v7().to_string().into());
        }
        self.publish_confirmed(EXCHANGE_DELIVER, agency.as_str(), problem, properties)
            .await
    }

    /// Publishes a message from a dead-letter queue again into `recipient`'s queue, with
    /// its properties and liaison headers but without the dead-letter bookkeeping.
    pub async fn redrive(&self, delivery: &Delivery, recipient: &AgencyCode) -> PublishOutcome {
        let mut headers = FieldTable::default();
        for (key, value) in delivery.headers().inner() {
            let key_text = key.as_str();
            if key_text.starts_with("x-") || key_text.starts_with("liaison-dead") {
                continue;
            }
            headers.insert(key.clone(), value.clone());
        }
        let mut properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_app_id(APP_ID.into())
            .with_timestamp(unix_seconds_now())
            .with_content_type(crate::publisher::CONTENT_TYPE.into())
            .with_headers(headers);
        if let Some(id) = delivery.message_id {
            properties = properties.with_message_id(id.to_string().into());
        }
        if let Some(kind) = delivery
            .type_
            .as_deref()
            .and_then(|t| ShortString::try_new(t).ok())
        {
            properties = properties.with_type(kind);
        }
        self.publish_confirmed(
            EXCHANGE_DELIVER,
            recipient.as_str(),
            &delivery.body,
            properties,
        )
        .await
    }

    /// One mandatory publish, confirmed.
    async fn publish_confirmed(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        properties: BasicProperties,
    ) -> PublishOutcome {
        let channel: &Channel = self.channel();
        let sent = within(
            self.operation_timeout(),
            format!("publish to {exchange} with key {routing_key}"),
            channel.basic_publish(
                exchange.into(),
                routing_key.into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                body,
                properties,
            ),
        )
        .await;
        match sent {
            Ok(confirm) => await_confirm(confirm, self.operation_timeout()).await,
            Err(e) => PublishOutcome::Failed(e.to_string()),
        }
    }
}
