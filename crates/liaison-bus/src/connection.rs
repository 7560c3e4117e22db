//! The connection to RabbitMQ: configuration, connecting under a timeout, and the [`Bus`]
//! handle that the rest of the crate opens channels from.
//!
//! lapin's automatic recovery is left off on purpose: it fails pending confirms anyway and
//! has known hangs. Instead the bus reconnects lazily — when a publisher or consumer is
//! asked for and the connection is gone — so callers recover by dropping a failed
//! publisher or consumer and asking for a new one. Durable topology survives on the
//! broker, so nothing has to be redeclared.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use liaison_core::AgencyCode;

use crate::consumer::{self, Consumer};
use crate::deadline::within;
use crate::publisher::{self, Publisher};
use crate::topology::IntakeQueueLimits;
use crate::{BusError, topology};

/// How to reach RabbitMQ and how long to wait for it.
#[derive(Clone, Debug)]
pub struct BusConfig {
    /// `amqp://user:password@host:port/vhost` (or `amqps://…`).
    pub url: String,
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
    /// The URL as it may appear in logs and errors.
    safe_url: String,
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
    /// Connects to `config.url`, giving up after `config.connect_timeout`.
    pub async fn connect(config: BusConfig) -> Result<Bus, BusError> {
        let safe_url = liaison_core::redact_url(&config.url);
        let connection = open_connection(&config, &safe_url).await?;
        tracing::info!(url = %safe_url, "connected to RabbitMQ");
        Ok(Bus {
            shared: Arc::new(Shared {
                config,
                safe_url,
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
        // A failed declaration has closed the channel already; closing is only tidiness.
        if declared.is_ok() {
            let _ = within(
                self.shared.config.operation_timeout,
                "close topology channel",
                channel.close(200, "topology declared".into()),
            )
            .await;
        }
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
        if channel.status().connected() {
            let _ = within(
                limit,
                "close queue depth channel",
                channel.close(200, "queue depths read".into()),
            )
            .await;
        }
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
                tracing::warn!(url = %self.shared.safe_url, %error, "closing the RabbitMQ connection failed");
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
        tracing::warn!(url = %self.shared.safe_url, "RabbitMQ connection lost, reconnecting");
        let fresh = Arc::new(open_connection(&self.shared.config, &self.shared.safe_url).await?);
        *self
            .shared
            .current
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Arc::clone(&fresh);
        tracing::info!(url = %self.shared.safe_url, "reconnected to RabbitMQ");
        Ok(fresh)
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

async fn open_connection(config: &BusConfig, safe_url: &str) -> Result<Connection, BusError> {
    let properties = ConnectionProperties::default().with_connection_name("liaison".into());
    match tokio::time::timeout(
        config.connect_timeout,
        Connection::connect(&config.url, properties),
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
