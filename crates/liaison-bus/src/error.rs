//! The one error type of the crate; every variant says which operation failed and where.

use std::time::Duration;

/// Why a bus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// The broker refused or dropped the connection attempt. `url` has no password.
    #[error("cannot connect to RabbitMQ at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: lapin::Error,
    },

    /// The connection attempt did not finish in time. `url` has no password.
    #[error("no connection to RabbitMQ at {url} within {after:?}")]
    ConnectTimeout { url: String, after: Duration },

    /// An AMQP operation (declare, publish, ack, …) failed; `operation` names it and its object.
    #[error("RabbitMQ {operation} failed: {source}")]
    Operation {
        operation: String,
        #[source]
        source: lapin::Error,
    },

    /// An AMQP operation got no answer in time; the connection may be dead or recovering.
    #[error("RabbitMQ {operation} got no answer within {after:?}")]
    Timeout { operation: String, after: Duration },

    /// [`crate::Bus::close`] was called; the bus does not reconnect after that.
    #[error("the RabbitMQ bus is closed")]
    Closed,

    /// The broker cancelled the consumer (queue deleted) or its channel closed.
    #[error("the consumer on queue {queue} was cancelled or its channel closed")]
    ConsumerEnded { queue: String },

    /// An ack or reject could not be sent: the delivery was settled already, or the
    /// channel it came on is closed (the broker then redelivers it).
    #[error(
        "delivery {delivery_tag} from queue {queue} was already settled or its channel is closed"
    )]
    NotSettled { queue: String, delivery_tag: u64 },
}

impl BusError {
    pub(crate) fn operation(operation: impl Into<String>, source: lapin::Error) -> Self {
        Self::Operation {
            operation: operation.into(),
            source,
        }
    }
}
