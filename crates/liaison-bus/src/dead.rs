//! Dead letters and notices: what does not travel the normal delivery path.
//!
//! - The relay gives up on a delivery after its maximum attempts and parks the message in
//!   [`EXCHANGE_DLX`] with the reason in headers ([`Publisher::publish_dead`]).
//! - RabbitMQ dead-letters a message rejected without requeue, or redelivered past the
//!   queue's `x-delivery-limit`, into the same exchange with an `x-death` header.
//! - Both end in `liaison.dead` (listed and redriven by operators) and in
//!   `liaison.dead.ledger` (recorded in the ledger by the broker).
//! - Which is which, and from which queue, only RabbitMQ's `x-death` record says; a
//!   dead letter's liaison headers are whatever its publisher wrote, so the broker matches
//!   it to the ledger before it believes it is a delivery (`liaison-server` `dead_letters`).
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
/// Header naming who dead-lettered the message when it was not RabbitMQ (`relay`); for
/// operators reading the queue only, never trusted (see [`DeadBy`]).
pub const HEADER_DEAD_BY: &str = "liaison-dead-by";
/// `type` property of a problem notice in an agency's queue.
pub const TYPE_PROBLEM: &str = "liaison.problem";
/// `content_type` of a problem notice.
pub const PROBLEM_CONTENT_TYPE: &str = "application/problem+json";

/// Who parked a message in the dead-letter queue, as RabbitMQ itself shows it: never what
/// a header of the message claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeadBy {
    /// Published straight into [`EXCHANGE_DLX`], so it carries no `x-death` record: only
    /// the broker's own user may write to that exchange, and only the relay does, after
    /// its last delivery attempt failed (already recorded in the ledger).
    Relay,
    /// RabbitMQ: rejected without requeue, or over the queue's delivery limit; its own
    /// `x-death` record names the queue and the reason.
    RabbitMq,
}

/// What the dead-letter queue says about one message.
///
/// Only `by`, `queue`, `reason` and `count` come from RabbitMQ (the newest `x-death`
/// record); the rest are properties and headers a publisher wrote. They serve to find the
/// delivery in the ledger and to list it, never as proof of anything: a dead letter is a
/// delivery's only once the ledger's outbox row and message bytes match it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    pub message_id: Option<Uuid>,
    pub type_: Option<String>,
    /// `liaison-delivery` header: the outbox row it claims to be (a lookup key, unproven).
    pub delivery_id: Option<i64>,
    pub seq: Option<u64>,
    pub caseref: Option<String>,
    /// The agency whose queue RabbitMQ dead-lettered it from; for one the relay parked,
    /// the agency its own header names (only the broker can publish to the exchange).
    pub recipient: Option<AgencyCode>,
    /// The queue RabbitMQ dead-lettered it from (newest `x-death` record).
    pub queue: Option<String>,
    /// RabbitMQ's reason (`delivery_limit`, `rejected`, …) or, for one the relay parked,
    /// the relay's.
    pub reason: String,
    pub by: DeadBy,
    /// How often RabbitMQ dead-lettered it from that queue for that reason.
    pub count: i64,
    /// SHA-256 of the body, to compare with the ledger's digest of the message.
    pub body_sha256: [u8; 32],
}

impl DeadLetter {
    /// Reads the dead-letter headers of a message consumed from a dead-letter queue.
    pub fn from_delivery(delivery: &Delivery) -> DeadLetter {
        let death = newest_death(delivery.headers());
        let queue = death.as_ref().and_then(|d| table_text(d, "queue"));
        let by = match death {
            Some(_) => DeadBy::RabbitMq,
            None => DeadBy::Relay,
        };
        let recipient = match by {
            DeadBy::RabbitMq => queue
                .as_deref()
                .and_then(|q| q.strip_prefix(AGENCY_QUEUE_PREFIX))
                .map(str::to_owned),
            DeadBy::Relay => delivery.header(HEADER_RECIPIENT),
        }
        .and_then(|code| AgencyCode::new(code).ok());
        let reason = match by {
            DeadBy::RabbitMq => death.as_ref().and_then(|d| table_text(d, "reason")),
            DeadBy::Relay => delivery.header(HEADER_DEAD_REASON),
        }
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
            body_sha256: liaison_core::audit::sha256(&delivery.body),
        }
    }
}

/// RabbitMQ's own record of the latest death: it puts the record of the dead-lettering it
/// just did first (a record for the same queue and reason is counted up and moved to the
/// front), so any record a publisher wrote into `x-death` comes after it.
fn newest_death(headers: &FieldTable) -> Option<FieldTable> {
    match headers.inner().get("x-death")? {
        AMQPValue::FieldArray(deaths) => match deaths.as_slice().first()? {
            AMQPValue::FieldTable(t) => Some(t.clone()),
            _ => None,
        },
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

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::FieldArray;

    fn death(queue: &str, reason: &str) -> AMQPValue {
        let mut record = FieldTable::default();
        record.insert("queue".into(), text(queue));
        record.insert("reason".into(), text(reason));
        record.insert("count".into(), AMQPValue::LongLongInt(1));
        AMQPValue::FieldTable(record)
    }

    #[test]
    fn only_the_newest_death_record_counts() {
        // RabbitMQ's record of dead-lettering from intake comes first; the one after it
        // is what a publisher wrote into its own x-death header.
        let mut headers = FieldTable::default();
        headers.insert(
            "x-death".into(),
            AMQPValue::FieldArray(FieldArray::from(vec![
                death("liaison.intake", "delivery_limit"),
                death("liaison.agency.procuratorate", "rejected"),
            ])),
        );
        let newest = newest_death(&headers).unwrap();
        assert_eq!(
            table_text(&newest, "queue").as_deref(),
            Some("liaison.intake")
        );
        assert_eq!(
            table_text(&newest, "reason").as_deref(),
            Some("delivery_limit")
        );
    }

    #[test]
    fn no_death_record_means_published_straight_to_the_exchange() {
        assert!(newest_death(&FieldTable::default()).is_none());
        let mut headers = FieldTable::default();
        headers.insert("x-death".into(), text("not a list"));
        assert!(newest_death(&headers).is_none());
    }
}
