//! The raw floor: what RabbitMQ itself does on this machine with persistent messages,
//! publisher confirms and a quorum queue, consumed and acked — no liaison code involved.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use lapin::options::{
    BasicAckOptions, BasicCancelOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions,
    ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Confirmation, Connection, ConnectionProperties};
use serde::Serialize;

use super::cpu::{CpuUse, Snapshot};

#[derive(Clone, Debug, Serialize)]
pub struct RawResult {
    pub messages: usize,
    pub window: usize,
    pub seconds: f64,
    pub throughput: f64,
    /// CPU of each process while publishing and consuming; the lapin client is this
    /// process (`liaison_s`), there is no load generator.
    pub cpu: CpuUse,
}

pub async fn run(
    url: &str,
    messages: usize,
    window: usize,
    size: usize,
) -> anyhow::Result<RawResult> {
    let connection = Connection::connect(url, ConnectionProperties::default())
        .await
        .context("raw floor: connecting")?;
    let queue = format!("liaison.bench.raw.{}", uuid::Uuid::new_v4().simple());
    let setup = connection.create_channel().await?;
    let mut args = FieldTable::default();
    args.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    setup
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..Default::default()
            },
            args,
        )
        .await?;

    let (consuming, mut consumer) = consumer(&connection, &queue).await?;
    let counting = tokio::spawn(async move {
        let mut seen = 0usize;
        while seen < messages {
            match tokio::time::timeout(Duration::from_secs(30), consumer.next()).await {
                Ok(Some(Ok(delivery))) => {
                    delivery.acker.ack(BasicAckOptions::default()).await?;
                    seen += 1;
                }
                Ok(Some(Err(e))) => return Err(anyhow::Error::from(e)),
                Ok(None) | Err(_) => {
                    bail!("raw floor: consumer stopped after {seen} of {messages}")
                }
            }
        }
        Ok(consumer)
    });

    let publish = connection.create_channel().await?;
    publish
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    let body = vec![b'x'; size];
    let cpu_before = Snapshot::take(None);
    let started = Instant::now();
    let mut in_flight = FuturesUnordered::new();
    for _ in 0..messages {
        if in_flight.len() >= window {
            confirmed(in_flight.next().await)?;
        }
        let confirm = publish
            .basic_publish(
                "".into(),
                queue.as_str().into(),
                BasicPublishOptions {
                    mandatory: true,
                    ..Default::default()
                },
                &body,
                BasicProperties::default().with_delivery_mode(2),
            )
            .await?;
        in_flight.push(confirm);
    }
    while let Some(next) = in_flight.next().await {
        confirmed(Some(next))?;
    }
    let consumer = counting.await??;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuUse::between(&cpu_before, &Snapshot::take(None), messages);

    // Cancel and wait before deleting the queue: a consumer dropped while the queue goes
    // away races RabbitMQ's own cancel, and lapin takes the late cancel-ok for a protocol
    // error that closes the connection.
    consuming
        .basic_cancel(CONSUMER_TAG.into(), BasicCancelOptions::default())
        .await?;
    drop(consumer);
    setup
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await?;
    connection.close(200, "bench done".into()).await.ok();
    Ok(RawResult {
        messages,
        window,
        seconds,
        throughput: messages as f64 / seconds,
        cpu,
    })
}

const CONSUMER_TAG: &str = "bench";

/// The consumer both phases measure with, so the floor and the full path are consumed
/// the same way: its own channel, prefetch 300, one manual ack per message.
pub(super) async fn consumer(
    connection: &Connection,
    queue: &str,
) -> Result<(Channel, lapin::Consumer), lapin::Error> {
    let channel = connection.create_channel().await?;
    channel.basic_qos(300, BasicQosOptions::default()).await?;
    let consumer = channel
        .basic_consume(
            queue.into(),
            CONSUMER_TAG.into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    Ok((channel, consumer))
}

fn confirmed(next: Option<Result<Confirmation, lapin::Error>>) -> anyhow::Result<()> {
    match next {
        Some(Ok(Confirmation::Ack(None))) => Ok(()),
        Some(Ok(other)) => bail!("raw floor: publish not confirmed: {other:?}"),
        Some(Err(e)) => Err(e.into()),
        None => Ok(()),
    }
}
