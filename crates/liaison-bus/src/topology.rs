//! The RabbitMQ names of the public contract and their declaration.
//!
//! Everything is durable; every queue is a quorum queue. Declaring is idempotent as long
//! as the arguments stay the same: RabbitMQ refuses (PRECONDITION_FAILED) a redeclaration
//! whose arguments differ, which the error then reports with the queue's name.

use std::time::Duration;

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{Channel, ExchangeKind};
use liaison_core::AgencyCode;

use crate::BusError;
use crate::deadline::within;

/// Topic exchange where agencies publish submissions over AMQP.
pub const EXCHANGE_INTAKE: &str = "liaison.intake";
/// Direct exchange the relay publishes deliveries to; routing key = recipient agency code.
pub const EXCHANGE_DELIVER: &str = "liaison.deliver";
/// Fanout exchange that receives everything dead-lettered from the other queues.
pub const EXCHANGE_DLX: &str = "liaison.dlx";
/// Queue bound to [`EXCHANGE_INTAKE`] with `#`: every AMQP submission.
pub const QUEUE_INTAKE: &str = "liaison.intake";
/// Queue bound to [`EXCHANGE_DLX`]: what exhausted its delivery limit or was rejected.
pub const QUEUE_DEAD: &str = "liaison.dead";

/// Queue bound to [`EXCHANGE_DLX`] beside [`QUEUE_DEAD`]: the broker records each dead
/// letter from here in the ledger.
pub const QUEUE_DEAD_LEDGER: &str = "liaison.dead.ledger";

/// Prefix of the per-agency delivery queues.
pub const AGENCY_QUEUE_PREFIX: &str = "liaison.agency.";

/// The delivery queue of one agency: `liaison.agency.<code>`.
///
/// Agency codes are at most 64 characters, so the name always fits an AMQP short string.
pub fn agency_queue(code: &AgencyCode) -> String {
    format!("{AGENCY_QUEUE_PREFIX}{code}")
}

/// Bounds on what `liaison.intake` holds. Any agency user may publish there, so without a
/// bound one of them could fill RabbitMQ's memory and disk (and trip its alarms, which
/// block every publisher, the relay included). Past either bound RabbitMQ refuses the
/// publish (`x-overflow=reject-publish`: a nack to a publisher using confirms) rather
/// than dropping or dead-lettering what is queued. A quorum queue checks its bounds after
/// each enqueue, so it may hold one message more than `max_length`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IntakeQueueLimits {
    /// `x-max-length`: messages ready in the queue.
    pub max_length: u32,
    /// `x-max-length-bytes`: total size of their bodies.
    pub max_bytes: u64,
}

impl Default for IntakeQueueLimits {
    fn default() -> Self {
        Self {
            max_length: 100_000,
            max_bytes: 512 * 1024 * 1024,
        }
    }
}

/// Declares the exchanges, the intake and dead-letter queues, and one queue per agency,
/// with their bindings, on `channel`.
pub(crate) async fn declare(
    channel: &Channel,
    agencies: &[&AgencyCode],
    delivery_limit: u32,
    intake: IntakeQueueLimits,
    limit: Duration,
) -> Result<(), BusError> {
    for (name, kind) in [
        (EXCHANGE_INTAKE, ExchangeKind::Topic),
        (EXCHANGE_DELIVER, ExchangeKind::Direct),
        (EXCHANGE_DLX, ExchangeKind::Fanout),
    ] {
        let options = ExchangeDeclareOptions {
            durable: true,
            ..ExchangeDeclareOptions::default()
        };
        within(
            limit,
            format!("declare exchange {name}"),
            channel.exchange_declare(name.into(), kind, options, FieldTable::default()),
        )
        .await?;
    }

    // The dead-letter queue has no dead-letter exchange of its own: nothing may loop.
    declare_bound_queue(
        channel,
        QUEUE_DEAD,
        dead_queue_arguments(),
        EXCHANGE_DLX,
        "",
        limit,
    )
    .await?;
    // A second copy of every dead letter, which the broker consumes to record each one in
    // the ledger; `liaison.dead` itself stays for operators to list and redrive.
    declare_bound_queue(
        channel,
        QUEUE_DEAD_LEDGER,
        dead_queue_arguments(),
        EXCHANGE_DLX,
        "",
        limit,
    )
    .await?;
    let working = working_queue_arguments(delivery_limit);
    declare_bound_queue(
        channel,
        QUEUE_INTAKE,
        intake_queue_arguments(delivery_limit, intake),
        EXCHANGE_INTAKE,
        "#",
        limit,
    )
    .await?;
    for code in agencies {
        let queue = agency_queue(code);
        declare_bound_queue(
            channel,
            &queue,
            working.clone(),
            EXCHANGE_DELIVER,
            code.as_str(),
            limit,
        )
        .await?;
    }
    Ok(())
}

/// One queue of the topology, with its arguments and its binding: what
/// [`declare`] creates, for tools that write RabbitMQ definitions files.
#[derive(Clone, Debug)]
pub struct QueuePlan {
    pub name: String,
    pub arguments: FieldTable,
    pub exchange: &'static str,
    pub routing_key: String,
}

/// The exchanges of the topology with their AMQP kind (`topic`, `direct`, `fanout`).
pub const EXCHANGES: [(&str, &str); 3] = [
    (EXCHANGE_INTAKE, "topic"),
    (EXCHANGE_DELIVER, "direct"),
    (EXCHANGE_DLX, "fanout"),
];

/// Every queue [`declare`] creates, with the same arguments, so that a definitions file
/// and the broker's own declarations agree (RabbitMQ refuses a redeclaration that differs).
pub fn queue_plan(
    agencies: &[&AgencyCode],
    delivery_limit: u32,
    intake: IntakeQueueLimits,
) -> Vec<QueuePlan> {
    let working = working_queue_arguments(delivery_limit);
    let mut plan = vec![
        QueuePlan {
            name: QUEUE_DEAD.into(),
            arguments: dead_queue_arguments(),
            exchange: EXCHANGE_DLX,
            routing_key: String::new(),
        },
        QueuePlan {
            name: QUEUE_DEAD_LEDGER.into(),
            arguments: dead_queue_arguments(),
            exchange: EXCHANGE_DLX,
            routing_key: String::new(),
        },
        QueuePlan {
            name: QUEUE_INTAKE.into(),
            arguments: intake_queue_arguments(delivery_limit, intake),
            exchange: EXCHANGE_INTAKE,
            routing_key: "#".into(),
        },
    ];
    plan.extend(agencies.iter().map(|code| QueuePlan {
        name: agency_queue(code),
        arguments: working.clone(),
        exchange: EXCHANGE_DELIVER,
        routing_key: code.as_str().to_owned(),
    }));
    plan
}

async fn declare_bound_queue(
    channel: &Channel,
    queue: &str,
    arguments: FieldTable,
    exchange: &str,
    routing_key: &str,
    limit: Duration,
) -> Result<(), BusError> {
    let options = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    within(
        limit,
        format!("declare queue {queue}"),
        channel.queue_declare(queue.into(), options, arguments),
    )
    .await?;
    within(
        limit,
        format!("bind queue {queue} to {exchange} with {routing_key:?}"),
        channel.queue_bind(
            queue.into(),
            exchange.into(),
            routing_key.into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        ),
    )
    .await
}

pub(crate) fn dead_queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments
}

/// Arguments of the queues whose messages are worked on (intake and agency queues).
///
/// Quorum queues have no delivery limit before RabbitMQ 4.0 unless one is set, and
/// at-least-once dead-lettering only takes effect with `reject-publish` overflow.
pub(crate) fn working_queue_arguments(delivery_limit: u32) -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), text("quorum"));
    arguments.insert(
        "x-delivery-limit".into(),
        AMQPValue::LongLongInt(i64::from(delivery_limit)),
    );
    arguments.insert("x-dead-letter-exchange".into(), text(EXCHANGE_DLX));
    arguments.insert("x-dead-letter-strategy".into(), text("at-least-once"));
    arguments.insert("x-overflow".into(), text("reject-publish"));
    arguments
}

/// The working queue arguments plus the intake's bounds (see [`IntakeQueueLimits`]).
pub(crate) fn intake_queue_arguments(delivery_limit: u32, limits: IntakeQueueLimits) -> FieldTable {
    let mut arguments = working_queue_arguments(delivery_limit);
    arguments.insert(
        "x-max-length".into(),
        AMQPValue::LongLongInt(i64::from(limits.max_length)),
    );
    arguments.insert(
        "x-max-length-bytes".into(),
        AMQPValue::LongLongInt(i64::try_from(limits.max_bytes).unwrap_or(i64::MAX)),
    );
    arguments
}

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agency_queue_name_follows_the_contract() {
        let code = AgencyCode::new("eco").expect("valid code");
        assert_eq!(agency_queue(&code), "liaison.agency.eco");
    }

    #[test]
    fn working_queues_dead_letter_at_least_once() {
        let arguments = working_queue_arguments(20);
        let table = arguments.inner();
        assert_eq!(table.get("x-queue-type"), Some(&text("quorum")));
        assert_eq!(
            table.get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(20))
        );
        assert_eq!(
            table.get("x-dead-letter-exchange"),
            Some(&text("liaison.dlx"))
        );
        assert_eq!(
            table.get("x-dead-letter-strategy"),
            Some(&text("at-least-once"))
        );
        assert_eq!(table.get("x-overflow"), Some(&text("reject-publish")));
        assert_eq!(table.get("x-max-length"), None);
    }

    #[test]
    fn the_intake_queue_is_bounded_and_refuses_publishes_past_its_bounds() {
        let limits = IntakeQueueLimits {
            max_length: 7,
            max_bytes: 4096,
        };
        let plan = queue_plan(&[], 20, limits);
        let intake = plan.iter().find(|q| q.name == QUEUE_INTAKE).unwrap();
        let table = intake.arguments.inner();
        assert_eq!(table.get("x-max-length"), Some(&AMQPValue::LongLongInt(7)));
        assert_eq!(
            table.get("x-max-length-bytes"),
            Some(&AMQPValue::LongLongInt(4096))
        );
        assert_eq!(table.get("x-overflow"), Some(&text("reject-publish")));
        assert_eq!(
            table.get("x-delivery-limit"),
            Some(&AMQPValue::LongLongInt(20))
        );
    }
}
