//! Confirmed, mandatory, persistent publishing of deliveries to `liaison.deliver`.
//!
//! A batch is published in full before any confirm is awaited, so that hundreds of
//! confirms are in flight at once: waiting for each in turn is about 30 times slower.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::future::join_all;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel, Confirmation, PublisherConfirm};
use liaison_core::AgencyCode;
use uuid::Uuid;

use crate::BusError;
use crate::deadline::{close_channel, within};
use crate::topology::EXCHANGE_DELIVER;

/// `content_type` of every delivery: the body is a structured-mode CloudEvent.
pub const CONTENT_TYPE: &str = "application/cloudevents+json; charset=utf-8";
/// `app_id` of every delivery.
pub const APP_ID: &str = "liaison";
/// Header with the ledger sequence of the message (AMQP long).
pub const HEADER_SEQ: &str = "liaison-seq";
/// Header with the outbox delivery id (AMQP long).
pub const HEADER_DELIVERY: &str = "liaison-delivery";
/// Header with the case reference, when the message has one.
pub const HEADER_CASEREF: &str = "caseref";
/// Header with the W3C trace context, when the message has one.
pub const HEADER_TRACEPARENT: &str = "traceparent";

/// One delivery to publish: a message for one recipient agency.
#[derive(Clone, Debug)]
pub struct Outgoing {
    /// The outbox row this publish settles.
    pub delivery_id: i64,
    pub recipient: AgencyCode,
    pub message_id: Uuid,
    /// CloudEvents `type`, e.g. `pil.lead.v1`.
    pub type_: String,
    /// Ledger sequence of the message.
    pub seq: u64,
    pub caseref: Option<String>,
    pub traceparent: Option<String>,
    /// The CloudEvent, sent unchanged.
    pub body: bytes::Bytes,
}

/// What became of one published delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishOutcome {
    /// The broker routed it to a queue and took responsibility for it.
    Confirmed,
    /// No queue is bound for the recipient; the broker returned the message.
    Returned { reply_code: u16, reply_text: String },
    /// The broker refused it (e.g. the queue is full with `reject-publish`).
    Nacked,
    /// The outcome is unknown (channel error, timeout): publish it again.
    Failed(String),
}

/// Publishes on one channel in confirm mode. Clones share the channel.
#[derive(Clone)]
pub struct Publisher {
    channel: Channel,
    operation_timeout: Duration,
}

pub(crate) async fn open(
    channel: Channel,
    operation_timeout: Duration,
) -> Result<Publisher, BusError> {
    within(
        operation_timeout,
        "enable publisher confirms",
        channel.confirm_select(ConfirmSelectOptions::default()),
    )
    .await?;
    Ok(Publisher {
        channel,
        operation_timeout,
    })
}

impl Publisher {
    /// Publishes every item to `liaison.deliver` with routing key = recipient, `mandatory`,
    /// persistent, and awaits every confirm, each under the operation timeout.
    ///
    /// Returns one outcome per item, in the order of `batch`. Only an ack without a
    /// returned message is [`PublishOutcome::Confirmed`]; once the channel fails, every
    /// publish not yet confirmed is [`PublishOutcome::Failed`].
    ///
    /// The publishes start together. Each hands its frames to lapin's I/O thread and waits
    /// until they are written: one after another, every delivery would cost a wake-up of
    /// that thread, a write to the socket and a wake-up back; together, the thread writes
    /// the batch in a few writes and RabbitMQ reads it in a few reads. lapin numbers a
    /// publish for its confirm as it queues the frames, in the same step, so the confirms
    /// match whatever order the publishes are queued in (the order of `batch`, as they are
    /// first polled in turn).
    pub async fn publish_all(&self, batch: &[Outgoing]) -> Vec<PublishOutcome> {
        let timestamp = unix_seconds_now();
        let limit = self.operation_timeout;
        join_all(batch.iter().map(|item| async move {
            // Only a malformed item fails here; the channel is fine for the others.
            let properties = match properties(item, timestamp) {
                Ok(properties) => properties,
                Err(reason) => return PublishOutcome::Failed(reason),
            };
            match self.send(item, properties).await {
                Ok(confirm) => await_confirm(confirm, limit).await,
                Err(error) => {
                    let reason = error.to_string();
                    tracing::warn!(delivery_id = item.delivery_id, %reason, "publish failed");
                    PublishOutcome::Failed(reason)
                }
            }
        }))
        .await
    }

    /// The confirm-mode channel, for the other publishing helpers of the crate.
    pub(crate) fn channel(&self) -> &Channel {
        &self.channel
    }

    pub(crate) fn operation_timeout(&self) -> Duration {
        self.operation_timeout
    }

    /// Closes the channel and waits until RabbitMQ has closed it; clones of this publisher
    /// stop working too. Close publishers before their bus, as consumers
    /// ([`crate::Consumer::close`]).
    pub async fn close(self) {
        close_channel(&self.channel, self.operation_timeout, "a publisher channel").await;
    }

    /// Whether the channel is still open; a closed publisher must be replaced.
    pub fn is_open(&self) -> bool {
        self.channel.status().connected()
    }

    async fn send(
        &self,
        item: &Outgoing,
        properties: BasicProperties,
    ) -> Result<PublisherConfirm, BusError> {
        let options = BasicPublishOptions {
            mandatory: true,
            ..BasicPublishOptions::default()
        };
        within(
            self.operation_timeout,
            format!(
                "publish delivery {} to {}",
                item.delivery_id, item.recipient
            ),
            self.channel.basic_publish(
                EXCHANGE_DELIVER.into(),
                item.recipient.as_str().into(),
                options,
                &item.body,
                properties,
            ),
        )
        .await
    }
}

pub(crate) async fn await_confirm(confirm: PublisherConfirm, limit: Duration) -> PublishOutcome {
    match tokio::time::timeout(limit, confirm).await {
        Ok(Ok(confirmation)) => outcome(confirmation),
        Ok(Err(error)) => PublishOutcome::Failed(format!("publisher confirm failed: {error}")),
        Err(_elapsed) => PublishOutcome::Failed(format!("no publisher confirm within {limit:?}")),
    }
}

/// lapin reports an unroutable mandatory publish as an ack that carries the returned
/// message, so the return must be checked before an ack counts as delivered.
fn outcome(confirmation: Confirmation) -> PublishOutcome {
    match confirmation {
        Confirmation::Ack(None) => PublishOutcome::Confirmed,
        Confirmation::Ack(Some(returned)) => PublishOutcome::Returned {
            reply_code: returned.reply_code,
            reply_text: returned.reply_text.to_string(),
        },
        Confirmation::Nack(_) => PublishOutcome::Nacked,
        Confirmation::NotRequested => {
            PublishOutcome::Failed("publisher confirms are not enabled on this channel".to_owned())
        }
    }
}

/// The AMQP properties of one delivery; fails only for a `type` longer than an AMQP short
/// string (255 bytes), which the catalogue never contains.
pub(crate) fn properties(item: &Outgoing, timestamp: u64) -> Result<BasicProperties, String> {
    let kind = ShortString::try_new(item.type_.as_str()).map_err(|_| {
        format!(
            "message type of delivery {} is longer than 255 bytes",
            item.delivery_id
        )
    })?;
    let mut headers = FieldTable::default();
    // AMQP has no unsigned 64-bit field type; ledger sequences stay far below i64::MAX.
    let seq = i64::try_from(item.seq).unwrap_or(i64::MAX);
    headers.insert(HEADER_SEQ.into(), AMQPValue::LongLongInt(seq));
    headers.insert(
        HEADER_DELIVERY.into(),
        AMQPValue::LongLongInt(item.delivery_id),
    );
    if let Some(caseref) = &item.caseref {
        headers.insert(
            HEADER_CASEREF.into(),
            AMQPValue::LongString(LongString::from(caseref.as_str())),
        );
    }
    if let Some(traceparent) = &item.traceparent {
        headers.insert(
            HEADER_TRACEPARENT.into(),
            AMQPValue::LongString(LongString::from(traceparent.as_str())),
        );
    }
    Ok(BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_content_type(CONTENT_TYPE.into())
        .with_message_id(item.message_id.to_string().into())
        .with_type(kind)
        .with_app_id(APP_ID.into())
        .with_timestamp(timestamp)
        .with_headers(headers))
}

/// AMQP `delivery_mode` 2: the broker writes the message to disk.
const PERSISTENT: u8 = 2;

pub(crate) fn unix_seconds_now() -> u64 {
    // A clock before 1970 is a broken host; a zero timestamp is then the honest value.
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|age| age.as_secs())
        .unwrap_or(0)
}
