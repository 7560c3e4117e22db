//! Consuming a queue with manual acknowledgements.
//!
//! Unacknowledged deliveries go back to the queue when the consumer is dropped (its
//! channel closes), and quorum queues count that as a delivery attempt towards the
//! delivery limit.

use std::time::Duration;

use futures::StreamExt;
use lapin::message::Delivery as LapinDelivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, BasicRejectOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Acker, Channel};
use uuid::Uuid;

use crate::BusError;
use crate::deadline::{close_channel, within};
use crate::publisher::{HEADER_CASEREF, HEADER_DELIVERY, HEADER_SEQ, HEADER_TRACEPARENT};

/// Deliveries from one queue, on a channel of its own.
pub struct Consumer {
    queue: String,
    stream: lapin::Consumer,
    operation_timeout: Duration,
    // Keeps the channel open for as long as the consumer lives.
    channel: Channel,
}

pub(crate) async fn open(
    channel: Channel,
    queue: &str,
    prefetch: u16,
    operation_timeout: Duration,
) -> Result<Consumer, BusError> {
    // `global: false` makes the limit per consumer; quorum queues refuse a global one.
    within(
        operation_timeout,
        format!("set prefetch {prefetch} for {queue}"),
        channel.basic_qos(prefetch, BasicQosOptions { global: false }),
    )
    .await?;
    let options = BasicConsumeOptions {
        no_ack: false,
        ..BasicConsumeOptions::default()
    };
    let stream = within(
        operation_timeout,
        format!("consume {queue}"),
        // An empty tag lets the broker choose a unique one.
        channel.basic_consume(queue.into(), "".into(), options, FieldTable::default()),
    )
    .await?;
    Ok(Consumer {
        queue: queue.to_owned(),
        stream,
        operation_timeout,
        channel,
    })
}

impl Consumer {
    /// Closes the consumer's channel and waits until RabbitMQ has closed it; its
    /// unacknowledged deliveries go back to the queue. Close consumers before their bus: a
    /// channel merely dropped closes in the background, and when the connection closes
    /// first, lapin logs that late close as a connection error.
    pub async fn close(self) {
        let what = format!("the consumer of {}", self.queue);
        close_channel(&self.channel, self.operation_timeout, &what).await;
    }

    /// The next delivery, or `Ok(None)` when `wait` passes without one.
    pub async fn next(&mut self, wait: Duration) -> Result<Option<Delivery>, BusError> {
        match tokio::time::timeout(wait, self.stream.next()).await {
            Err(_elapsed) => Ok(None),
            Ok(Some(Ok(delivery))) => Ok(Some(Delivery::new(
                delivery,
                &self.queue,
                self.operation_timeout,
            ))),
            Ok(Some(Err(source))) => Err(BusError::operation(
                format!("receive from {}", self.queue),
                source,
            )),
            Ok(None) => Err(BusError::ConsumerEnded {
                queue: self.queue.clone(),
            }),
        }
    }

    /// The queue this consumer reads.
    pub fn queue(&self) -> &str {
        &self.queue
    }
}

/// One message received from a queue; settle it with [`Delivery::ack`] or
/// [`Delivery::reject`], otherwise the broker redelivers it once the consumer is gone.
pub struct Delivery {
    /// `message_id` property, if it is a UUID.
    pub message_id: Option<Uuid>,
    /// `type` property: the CloudEvents type.
    pub type_: Option<String>,
    /// `liaison-seq` header: the ledger sequence.
    pub seq: Option<u64>,
    /// `liaison-delivery` header: the outbox delivery id.
    pub delivery_id: Option<i64>,
    /// `user_id` property; RabbitMQ guarantees it equals the publishing connection's user.
    pub user_id: Option<String>,
    /// `caseref` header.
    pub caseref: Option<String>,
    /// `traceparent` header (W3C trace context).
    pub traceparent: Option<String>,
    /// Whether the broker delivered this message before (the handler may have seen it).
    pub redelivered: bool,
    pub body: bytes::Bytes,
    /// Every header as sent (dead-letter tools read `x-death` and liaison's own headers).
    headers: FieldTable,
    acker: Acker,
    delivery_tag: u64,
    queue: String,
    operation_timeout: Duration,
}

impl Delivery {
    fn new(delivery: LapinDelivery, queue: &str, operation_timeout: Duration) -> Self {
        let properties = &delivery.properties;
        let headers = properties.headers().as_ref();
        Self {
            message_id: properties
                .message_id()
                .as_ref()
                .and_then(|id| Uuid::parse_str(id.as_str()).ok()),
            type_: properties.kind().as_ref().map(|kind| kind.to_string()),
            seq: headers
                .and_then(|h| header_integer(h, HEADER_SEQ))
                .and_then(|n| u64::try_from(n).ok()),
            delivery_id: headers.and_then(|h| header_integer(h, HEADER_DELIVERY)),
            user_id: properties.user_id().as_ref().map(|user| user.to_string()),
            caseref: headers.and_then(|h| header_text(h, HEADER_CASEREF)),
            traceparent: headers.and_then(|h| header_text(h, HEADER_TRACEPARENT)),
            redelivered: delivery.redelivered,
            headers: headers.cloned().unwrap_or_default(),
            body: bytes::Bytes::from(delivery.data),
            acker: delivery.acker,
            delivery_tag: delivery.delivery_tag,
            queue: queue.to_owned(),
            operation_timeout,
        }
    }

    /// A text header, whichever AMQP string kind the publisher used.
    pub fn header(&self, name: &str) -> Option<String> {
        header_text(&self.headers, name)
    }

    /// An integer header, whatever its width.
    pub fn header_integer(&self, name: &str) -> Option<i64> {
        header_integer(&self.headers, name)
    }

    /// The headers, for republishing a message unchanged (dead-letter redrive).
    pub fn headers(&self) -> &FieldTable {
        &self.headers
    }

    /// Tells the broker the message is handled; it will not be delivered again.
    pub async fn ack(&self) -> Result<(), BusError> {
        let settled = within(
            self.operation_timeout,
            format!("ack delivery {} from {}", self.delivery_tag, self.queue),
            self.acker.ack(BasicAckOptions::default()),
        )
        .await?;
        self.settled(settled)
    }

    /// Refuses the message: back to the queue with `requeue` (counted against the delivery
    /// limit), otherwise straight to the dead-letter exchange.
    pub async fn reject(&self, requeue: bool) -> Result<(), BusError> {
        let settled = within(
            self.operation_timeout,
            format!("reject delivery {} from {}", self.delivery_tag, self.queue),
            self.acker.reject(BasicRejectOptions { requeue }),
        )
        .await?;
        self.settled(settled)
    }

    /// lapin answers `false` instead of an error when the acker was used or its channel died.
    fn settled(&self, settled: bool) -> Result<(), BusError> {
        if settled {
            Ok(())
        } else {
            Err(BusError::NotSettled {
                queue: self.queue.clone(),
                delivery_tag: self.delivery_tag,
            })
        }
    }
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("queue", &self.queue)
            .field("delivery_tag", &self.delivery_tag)
            .field("message_id", &self.message_id)
            .field("type_", &self.type_)
            .field("seq", &self.seq)
            .field("delivery_id", &self.delivery_id)
            .field("user_id", &self.user_id)
            .field("redelivered", &self.redelivered)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

/// Reads an integer header whatever integer width the publisher chose.
pub(crate) fn header_integer(headers: &FieldTable, name: &str) -> Option<i64> {
    match headers.inner().get(name)? {
        AMQPValue::LongLongInt(n) => Some(*n),
        AMQPValue::LongInt(n) => Some(i64::from(*n)),
        AMQPValue::LongUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortInt(n) => Some(i64::from(*n)),
        AMQPValue::ShortShortUInt(n) => Some(i64::from(*n)),
        AMQPValue::Timestamp(n) => i64::try_from(*n).ok(),
        _ => None,
    }
}

pub(crate) fn header_text(headers: &FieldTable, name: &str) -> Option<String> {
    match headers.inner().get(name)? {
        AMQPValue::LongString(text) => String::from_utf8(text.as_bytes().to_vec()).ok(),
        AMQPValue::ShortString(text) => Some(text.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lapin::types::{LongString, ShortString};

    #[test]
    fn integer_headers_are_read_whatever_their_width() {
        let mut headers = FieldTable::default();
        headers.insert("a".into(), AMQPValue::LongLongInt(7));
        headers.insert("b".into(), AMQPValue::LongInt(-3));
        headers.insert("c".into(), AMQPValue::LongString(LongString::from("9")));
        assert_eq!(header_integer(&headers, "a"), Some(7));
        assert_eq!(header_integer(&headers, "b"), Some(-3));
        assert_eq!(header_integer(&headers, "c"), None);
        assert_eq!(header_integer(&headers, "missing"), None);
    }

    #[test]
    fn text_headers_accept_both_string_kinds() {
        let mut headers = FieldTable::default();
        headers.insert(
            "long".into(),
            AMQPValue::LongString(LongString::from("case-1")),
        );
        headers.insert(
            "short".into(),
            AMQPValue::ShortString(ShortString::from("case-2")),
        );
        assert_eq!(header_text(&headers, "long").as_deref(), Some("case-1"));
        assert_eq!(header_text(&headers, "short").as_deref(), Some("case-2"));
    }
}
