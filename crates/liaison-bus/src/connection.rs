//! The connection to RabbitMQ: configuration, connecting under a timeout, and the [`Bus`]
//! handle that the rest of the crate opens channels from.
//!
//! lapin's automatic recovery is left off on purpose: it fails pending confirms anyway and
//! has known hangs. Instead the bus reconnects lazily — when a publisher or consumer is
//! asked for and the connection is gone — so callers recover by dropping a failed
//! publisher or consumer and asking for a new one. Durable topology survives on the
//! broker, so nothing has to be redeclared.
//!
//! The bus knows one or more endpoints of the same RabbitMQ cluster (`url`, then
//! `failover_urls`). It connects to the first that answers, trying them in order; when a
//! connection is lost it tries the endpoints after the one that failed, wrapping around,
//! so that a dead node is tried last.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use liaison_core::AgencyCode;

use crate::consumer::{self, Consumer};
use crate::deadline::{close_channel, within};
use crate::publisher::{self, Publisher};
use crate::topology::IntakeQueueLimits;
use crate::{BusError, topology};

/// How to reach RabbitMQ and how long to wait for it.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// `amqp://user:password@host:port/vhost` (or `amqps://…`): the first endpoint tried.
    pub url: String,
    /// Other nodes of the same RabbitMQ cluster (same virtual host and user), tried in
    /// turn after `url` on connect, and after the endpoint that failed on reconnection.
    pub failover_urls: Vec<String>,
    /// Limit for establishing the connection (TCP, TLS and the AMQP handshake).
    pub connect_timeout: Duration,
    /// Limit for every other broker round trip: declarations, channel opening, each confirm.
    pub operation_timeout: Duration,
    /// `x-delivery-limit` of the intake and agency queues: deliveries before dead-lettering.
    pub delivery_limit: u32,
    /// `x-max-length` and `x-max-length-bytes` of `liaison.intake`.
    pub intake_queue: IntakeQueueLimits,
}

impl Default for BusConfig {
    fn default() -> Self {
        Self {
            url: "amqp://guest:guest@127.0.0.1:5672/%2f".to_owned(),
            failover_urls: Vec::new(),
            connect_timeout: Duration::from_secs(5),
            operation_timeout: Duration::from_secs(10),
            delivery_limit: 20,
            intake_queue: IntakeQueueLimits::default(),
        }
    }
}

/// A handle on the RabbitMQ connection; cheap to clone, all clones share the connection.
#[derive(Clone)]
pub struct Bus {
    shared: Arc<Shared>,
}

struct Shared {
    config: BusConfig,
    /// `url` then `failover_urls`, each with its loggable form.
    endpoints: Vec<Endpoint>,
    /// Index in `endpoints` of the current connection's endpoint.
    endpoint: AtomicUsize,
    /// Swapped for a new connection when the current one is found dead.
    current: Mutex<Arc<Connection>>,
    /// Serialises reconnection so that concurrent callers open one connection, not many.
    reconnecting: tokio::sync::Mutex<()>,
    closed: AtomicBool,
}

/// A queue's ready messages and consumers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QueueDepth {
    pub messages: u32,
    pub consumers: u32,
}

impl Bus {
    /// Connects to the first of `config.url` and `config.failover_urls` that answers,
    /// giving each `config.connect_timeout`.
    pub async fn connect(config: BusConfig) -> Result<Bus, BusError> {
        let endpoints = Endpoint::all(&config);
        let (index, connection) = connect_first(&config, &endpoints, None).await?;
        tracing::info!(url = %endpoints[index].safe_url, "connected to RabbitMQ");
        Ok(Bus {
            shared: Arc::new(Shared {
                config,
                endpoints,
                endpoint: AtomicUsize::new(index),
                current: Mutex::new(Arc::new(connection)),
                reconnecting: tokio::sync::Mutex::new(()),
                closed: AtomicBool::new(false),
            }),
        })
    }

    /// Declares the exchanges, the intake and dead-letter queues and one queue per agency.
    /// Safe to repeat; fails if a queue exists with other arguments.
    pub async fn declare_topology<'a>(
        &self,
        agencies: impl IntoIterator<Item = &'a AgencyCode>,
    ) -> Result<(), BusError> {
        let agencies: Vec<&AgencyCode> = agencies.into_iter().collect();
        let channel = self.open_channel("declare topology").await?;
        let declared = topology::declare(
            &channel,
            &agencies,
            self.shared.config.delivery_limit,
            self.shared.config.intake_queue,
            self.shared.config.operation_timeout,
        )
        .await;
        // A failed declaration has closed the channel already.
        close_channel(
            &channel,
            self.shared.config.operation_timeout,
            "the topology channel",
        )
        .await;
        declared
    }

    /// A publisher on its own channel, with publisher confirms enabled.
    pub async fn publisher(&self) -> Result<Publisher, BusError> {
        let channel = self.open_channel("open publisher channel").await?;
        publisher::open(channel, self.shared.config.operation_timeout).await
    }

    /// A consumer of `queue` on its own channel, with manual acks and at most `prefetch`
    /// unacknowledged deliveries (a per-consumer limit: quorum queues refuse global QoS).
    pub async fn consume(&self, queue: &str, prefetch: u16) -> Result<Consumer, BusError> {
        let channel = self
            .open_channel(&format!("open consumer channel for {queue}"))
            .await?;
        consumer::open(
            channel,
            queue,
            prefetch,
            self.shared.config.operation_timeout,
        )
        .await
    }

    /// How many messages are ready in each of `queues` and how many consumers it has, by a
    /// passive declaration (which changes nothing). A queue that does not exist is `None`.
    /// One channel for all of them; a missing queue closes it, so the next gets another.
    pub async fn queue_depths(
        &self,
        queues: &[String],
    ) -> Result<Vec<Option<QueueDepth>>, BusError> {
        let limit = self.shared.config.operation_timeout;
        let mut depths = Vec::with_capacity(queues.len());
        let mut channel = self.open_channel("open channel for queue depths").await?;
        for queue in queues {
            if !channel.status().connected() {
                channel = self.open_channel("open channel for queue depths").await?;
            }
            let options = lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            };
            let declared = within(
                limit,
                format!("inspect queue {queue}"),
                channel.queue_declare(
                    queue.as_str().into(),
                    options,
                    lapin::types::FieldTable::default(),
                ),
            )
            .await;
            depths.push(declared.ok().map(|q| QueueDepth {
                messages: q.message_count(),
                consumers: q.consumer_count(),
            }));
        }
        close_channel(&channel, limit, "the queue depth channel").await;
        Ok(depths)
    }

    /// Whether the connection is up right now (for readiness checks).
    pub fn is_connected(&self) -> bool {
        !self.shared.closed.load(Ordering::Acquire) && self.current().status().connected()
    }

    /// Closes the connection; publishers and consumers of this bus stop working and the
    /// bus does not reconnect.
    pub async fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        // Waiting for a reconnection under way means its connection is the one closed here.
        let _no_reconnection = self.shared.reconnecting.lock().await;
        let connection = self.current();
        if connection.status().connected() {
            let closing = within(
                self.shared.config.operation_timeout,
                "close connection",
                connection.close(200, "liaison shutting down".into()),
            );
            if let Err(error) = closing.await {
                tracing::warn!(url = %self.endpoint_url(), %error, "closing the RabbitMQ connection failed");
            }
        }
    }

    async fn open_channel(&self, purpose: &str) -> Result<Channel, BusError> {
        let connection = self.live_connection().await?;
        within(
            self.shared.config.operation_timeout,
            purpose,
            connection.create_channel(),
        )
        .await
    }

    /// The current connection if it is up, otherwise a new one.
    async fn live_connection(&self) -> Result<Arc<Connection>, BusError> {
        self.ensure_open()?;
        let connection = self.current();
        if connection.status().connected() {
            return Ok(connection);
        }
        let _only_one = self.shared.reconnecting.lock().await;
        self.ensure_open()?;
        // Another caller may have reconnected while this one waited for the lock.
        let connection = self.current();
        if connection.status().connected() {
            return Ok(connection);
        }
        let failed = self.shared.endpoint.load(Ordering::Acquire);
        tracing::warn!(url = %self.endpoint_url(), "RabbitMQ connection lost, reconnecting");
        let (index, fresh) =
            connect_first(&self.shared.config, &self.shared.endpoints, Some(failed)).await?;
        let fresh = Arc::new(fresh);
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
        self.shared.endpoint.store(index, Ordering::Release);
        tracing::info!(url = %self.endpoint_url(), "reconnected to RabbitMQ");
        Ok(fresh)
    }

    /// The endpoint of the current connection, password masked.
    pub fn endpoint_url(&self) -> &str {
        let index = self.shared.endpoint.load(Ordering::Acquire);
        &self.shared.endpoints[index].safe_url
    }

    fn ensure_open(&self) -> Result<(), BusError> {
        if self.shared.closed.load(Ordering::Acquire) {
            Err(BusError::Closed)
        } else {
            Ok(())
        }
    }

    fn current(&self) -> Arc<Connection> {
        // The lock only guards a pointer swap, so a poisoned lock still holds a valid value.
        Arc::clone(
            &self
                .shared
                .current
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        )
    }
}

/// One RabbitMQ endpoint: its URL, and the URL as it may appear in logs and errors.
struct Endpoint {
    url: String,
    safe_url: String,
}

impl Endpoint {
    fn all(config: &BusConfig) -> Vec<Endpoint> {
        std::iter::once(&config.url)
            .chain(&config.failover_urls)
            .map(|url| Endpoint {
                url: url.clone(),
                safe_url: liaison_core::redact_url(url),
            })
            .collect()
    }
}

/// The order in which `count` endpoints are tried: from the first on connect (`failed` is
/// `None`); after a connection to endpoint `failed` was lost, the endpoints after it,
/// wrapping around, and `failed` itself last (it may have been the connection alone that
/// broke).
fn attempt_order(count: usize, failed: Option<usize>) -> impl Iterator<Item = usize> {
    let start = failed.map_or(0, |failed| failed + 1);
    (0..count).map(move |k| (start + k) % count)
}

/// Connects to the first endpoint that answers, in [`attempt_order`]; every failure is
/// logged, and the last one returned when none answers.
async fn connect_first(
    config: &BusConfig,
    endpoints: &[Endpoint],
    failed: Option<usize>,
) -> Result<(usize, Connection), BusError> {
    let mut last_error = None;
    for index in attempt_order(endpoints.len(), failed) {
        let endpoint = &endpoints[index];
        match open_connection(config, endpoint).await {
            Ok(connection) => return Ok((index, connection)),
            Err(error) => {
                if endpoints.len() > 1 {
                    tracing::warn!(url = %endpoint.safe_url, %error, "RabbitMQ endpoint unreachable, trying the next");
                }
                last_error = Some(error);
            }
        }
    }
    Err(last_error.expect("the bus has at least one endpoint: `url`"))
}

async fn open_connection(config: &BusConfig, endpoint: &Endpoint) -> Result<Connection, BusError> {
    let safe_url = &endpoint.safe_url;
    let properties = ConnectionProperties::default().with_connection_name("liaison".into());
    match tokio::time::timeout(
        config.connect_timeout,
        Connection::connect(&endpoint.url, properties),
    )
    .await
    {
        Ok(Ok(connection)) => Ok(connection),
        Ok(Err(source)) => Err(BusError::Connect {
            url: safe_url.to_owned(),
            source,
        }),
        Err(_elapsed) => Err(BusError::ConnectTimeout {
            url: safe_url.to_owned(),
            after: config.connect_timeout,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(count: usize, failed: Option<usize>) -> Vec<usize> {
        attempt_order(count, failed).collect()
    }

    #[test]
    fn connecting_tries_the_endpoints_in_order() {
        assert_eq!(order(1, None), [0]);
        assert_eq!(order(3, None), [0, 1, 2]);
    }

    #[test]
    fn reconnecting_starts_after_the_endpoint_that_failed_and_tries_it_last() {
        assert_eq!(order(3, Some(0)), [1, 2, 0]);
        assert_eq!(order(3, Some(1)), [2, 0, 1]);
        assert_eq!(order(3, Some(2)), [0, 1, 2]);
        // One endpoint: it is tried again.
        assert_eq!(order(1, Some(0)), [0]);
    }

    #[test]
    fn every_endpoint_is_tried_once_whichever_failed() {
        for count in 1..6 {
            for failed in (0..count).map(Some).chain([None]) {
                let mut tried = order(count, failed);
                tried.sort_unstable();
                assert_eq!(tried, (0..count).collect::<Vec<_>>(), "{count} {failed:?}");
            }
        }
    }

    #[test]
    fn endpoints_are_the_url_then_the_failover_urls_with_passwords_masked() {
        let config = BusConfig {
            url: "amqp://liaison:s3cret@mq1:5672/prod".into(),
            failover_urls: vec![
                "amqp://liaison:s3cret@mq2:5672/prod".into(),
                "amqps://liaison:s3cret@mq3:5671/prod".into(),
            ],
            ..BusConfig::default()
        };
        let endpoints = Endpoint::all(&config);
        let urls: Vec<&str> = endpoints.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(
            urls,
            [
                config.url.as_str(),
                &config.failover_urls[0],
                &config.failover_urls[1]
            ]
        );
        for endpoint in &endpoints {
            assert!(
                !endpoint.safe_url.contains("s3cret"),
                "{}",
                endpoint.safe_url
            );
        }
    }
}
