//! Against the real RabbitMQ: `LIAISON_TEST_AMQP_URL`, default
//! amqp://guest:guest@127.0.0.1:5672/%2f. Each test uses agency codes of its own and
//! deletes the queues it declared; the shared exchanges stay.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use lapin::options::{QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use liaison_bus::{
    Bus, BusConfig, BusError, EXCHANGE_DLX, Outgoing, PublishOutcome, QUEUE_DEAD, agency_queue,
};
use liaison_core::AgencyCode;
use uuid::Uuid;

const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

fn amqp_url() -> String {
    std::env::var("LIAISON_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

async fn connect() -> Bus {
    let url = amqp_url();
    let config = BusConfig {
        url: url.clone(),
        ..BusConfig::default()
    };
    match Bus::connect(config).await {
        Ok(bus) => bus,
        Err(error) => panic!(
            "RabbitMQ is unreachable at {url} ({error}); start it or set LIAISON_TEST_AMQP_URL"
        ),
    }
}

/// An agency code no other test run uses.
fn unique_agency() -> AgencyCode {
    let id = Uuid::new_v4().simple().to_string();
    AgencyCode::new(format!("t{}", &id[..12])).expect("generated agency code is valid")
}

fn outgoing(recipient: &AgencyCode, n: u64) -> Outgoing {
    Outgoing {
        delivery_id: 10_000 + n as i64,
        recipient: recipient.clone(),
        message_id: Uuid::now_v7(),
        type_: "test.bulk.v1".to_owned(),
        seq: 1_000_000 + n,
        caseref: n.is_multiple_of(2).then(|| format!("CASE-{n}")),
        traceparent: n
            .is_multiple_of(3)
            .then(|| format!("00-{:032x}-{:016x}-01", u128::from(n) + 1, n + 1)),
        body: bytes::Bytes::from(format!(r#"{{"specversion":"1.0","n":{n}}}"#)),
    }
}

/// A raw lapin channel for what the crate's API deliberately does not offer:
/// inspecting and deleting queues.
async fn raw_channel() -> (lapin::Connection, lapin::Channel) {
    let url = amqp_url();
    let connection = lapin::Connection::connect(&url, lapin::ConnectionProperties::default())
        .await
        .unwrap_or_else(|e| {
            panic!("RabbitMQ is unreachable at {url} ({e}); set LIAISON_TEST_AMQP_URL")
        });
    let channel = connection.create_channel().await.expect("open raw channel");
    (connection, channel)
}

/// Best effort: a failed delete must not hide the test's own result.
async fn delete_queues(queues: &[String]) {
    let (_connection, channel) = raw_channel().await;
    for queue in queues {
        if let Err(error) = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
        {
            eprintln!("could not delete test queue {queue}: {error}");
        }
    }
}

async fn message_count(channel: &lapin::Channel, queue: &str) -> u32 {
    let options = QueueDeclareOptions {
        passive: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.into(), options, FieldTable::default())
        .await
        .unwrap_or_else(|e| panic!("queue {queue} should exist: {e}"))
        .message_count()
}

#[tokio::test]
async fn topology_is_declared_and_declaring_again_changes_nothing() {
    let bus = connect().await;
    let (eco, police) = (unique_agency(), unique_agency());
    let queues = vec![agency_queue(&eco), agency_queue(&police)];

    bus.declare_topology([&eco, &police])
        .await
        .expect("first declaration");
    bus.declare_topology([&eco, &police])
        .await
        .expect("second declaration is idempotent");

    let (_connection, channel) = raw_channel().await;
    for queue in queues
        .iter()
        .map(String::as_str)
        .chain(["liaison.intake", "liaison.dead"])
    {
        message_count(&channel, queue).await;
    }
    // A queue with the same name but other arguments (here: a classic queue) is refused,
    // which shows the declared queue really carries its quorum arguments.
    let redeclared = channel
        .queue_declare(
            queues[0].as_str().into(),
            QueueDeclareOptions {
                durable: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await;
    assert!(
        redeclared.is_err(),
        "a classic redeclaration of a quorum queue must be refused"
    );

    delete_queues(&queues).await;
    bus.close().await;
}

#[tokio::test]
async fn five_hundred_confirmed_publishes_arrive_intact() {
    let bus = connect().await;
    let agency = unique_agency();
    let queue = agency_queue(&agency);
    bus.declare_topology([&agency])
        .await
        .expect("declare topology");

    let batch: Vec<Outgoing> = (0..500).map(|n| outgoing(&agency, n)).collect();
    let publisher = bus.publisher().await.expect("publisher");
    let outcomes = publisher.publish_all(&batch).await;
    assert_eq!(outcomes.len(), batch.len());
    let not_confirmed: Vec<_> = outcomes
        .iter()
        .enumerate()
        .filter(|(_, o)| **o != PublishOutcome::Confirmed)
        .collect();
    assert!(not_confirmed.is_empty(), "not confirmed: {not_confirmed:?}");
    assert!(publisher.is_open());

    let mut expected: HashMap<Uuid, &Outgoing> = batch.iter().map(|o| (o.message_id, o)).collect();
    let mut consumer = bus.consume(&queue, 200).await.expect("consumer");
    while !expected.is_empty() {
        let delivery = consumer
            .next(Duration::from_secs(10))
            .await
            .expect("receive")
            .unwrap_or_else(|| panic!("{} of 500 deliveries never arrived", expected.len()));
        let id = delivery.message_id.expect("message_id is a UUID");
        // The publishes start together, yet reach the queue in the order of the batch.
        let position = batch.len() - expected.len();
        assert_eq!(
            id, batch[position].message_id,
            "delivery {position} out of order"
        );
        let sent = expected
            .remove(&id)
            .unwrap_or_else(|| panic!("unexpected or duplicate {id}"));
        assert_eq!(delivery.seq, Some(sent.seq));
        assert_eq!(delivery.delivery_id, Some(sent.delivery_id));
        assert_eq!(delivery.type_.as_deref(), Some("test.bulk.v1"));
        assert_eq!(delivery.caseref, sent.caseref);
        assert_eq!(delivery.traceparent, sent.traceparent);
        assert_eq!(delivery.body, sent.body);
        assert_eq!(delivery.user_id, None);
        assert!(!delivery.redelivered);
        delivery.ack().await.expect("ack");
    }
    assert!(
        consumer
            .next(Duration::from_millis(300))
            .await
            .expect("receive")
            .is_none()
    );

    drop(consumer);
    delete_queues(&[queue]).await;
    bus.close().await;
}

#[tokio::test]
async fn publishing_to_an_agency_without_a_queue_is_returned_not_confirmed() {
    let bus = connect().await;
    let known = unique_agency();
    let unknown = unique_agency();
    bus.declare_topology([&known])
        .await
        .expect("declare topology");

    let publisher = bus.publisher().await.expect("publisher");
    let batch = [
        outgoing(&known, 1),
        outgoing(&unknown, 2),
        outgoing(&known, 3),
    ];
    let outcomes = publisher.publish_all(&batch).await;

    assert_eq!(outcomes[0], PublishOutcome::Confirmed);
    assert_eq!(
        outcomes[1],
        PublishOutcome::Returned {
            reply_code: 312,
            reply_text: "NO_ROUTE".to_owned()
        }
    );
    assert_eq!(
        outcomes[2],
        PublishOutcome::Confirmed,
        "order of outcomes follows the batch"
    );
    assert!(
        publisher.is_open(),
        "a returned message does not close the channel"
    );

    delete_queues(&[agency_queue(&known)]).await;
    bus.close().await;
}

#[tokio::test]
async fn next_gives_none_once_the_wait_passes_on_an_empty_queue() {
    let bus = connect().await;
    let agency = unique_agency();
    bus.declare_topology([&agency])
        .await
        .expect("declare topology");

    let mut consumer = bus
        .consume(&agency_queue(&agency), 10)
        .await
        .expect("consumer");
    let wait = Duration::from_millis(300);
    let started = Instant::now();
    let next = consumer
        .next(wait)
        .await
        .expect("an empty queue is not an error");
    assert!(next.is_none());
    assert!(started.elapsed() >= wait, "returned before the wait passed");

    drop(consumer);
    delete_queues(&[agency_queue(&agency)]).await;
    bus.close().await;
}

#[tokio::test]
async fn a_message_over_the_delivery_limit_or_rejected_is_dead_lettered() {
    // The shared intake queue already exists with the default limit, and RabbitMQ refuses
    // a redeclaration with another one, so this test lives with the default of 20.
    let bus = connect().await;
    let limit = BusConfig::default().delivery_limit;
    let agency = unique_agency();
    let queue = agency_queue(&agency);
    bus.declare_topology([&agency])
        .await
        .expect("declare topology");

    // liaison.dlx is a fanout: a private queue bound to it sees every dead letter, so the
    // test need not compete for liaison.dead with other users of this broker.
    let watch = format!("test.dead-watch.{agency}");
    let (_connection, raw) = raw_channel().await;
    raw.queue_declare(
        watch.as_str().into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare watch queue");
    raw.queue_bind(
        watch.as_str().into(),
        EXCHANGE_DLX.into(),
        "".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("bind watch queue");

    let rejected = outgoing(&agency, 1);
    let exhausted = outgoing(&agency, 2);
    let publisher = bus.publisher().await.expect("publisher");
    let outcomes = publisher
        .publish_all(&[rejected.clone(), exhausted.clone()])
        .await;
    assert_eq!(
        outcomes,
        [PublishOutcome::Confirmed, PublishOutcome::Confirmed]
    );

    let mut consumer = bus.consume(&queue, 10).await.expect("consumer");
    let mut deliveries_of_exhausted = 0;
    while let Some(delivery) = consumer
        .next(Duration::from_secs(2))
        .await
        .expect("receive")
    {
        if delivery.message_id == Some(rejected.message_id) {
            delivery
                .reject(false)
                .await
                .expect("reject without requeue");
        } else {
            deliveries_of_exhausted += 1;
            assert!(
                deliveries_of_exhausted <= limit + 1,
                "delivery limit {limit} is not enforced"
            );
            delivery.reject(true).await.expect("reject with requeue");
        }
    }
    assert!(
        deliveries_of_exhausted >= limit,
        "dead-lettered after {deliveries_of_exhausted}"
    );

    let ours = [rejected.message_id, exhausted.message_id];
    let mut dead = bus.consume(&watch, 50).await.expect("consume watch queue");
    let mut missing = ours.to_vec();
    while !missing.is_empty() {
        let delivery = dead
            .next(Duration::from_secs(10))
            .await
            .expect("receive dead letter")
            .unwrap_or_else(|| panic!("never dead-lettered: {missing:?}"));
        missing.retain(|id| Some(*id) != delivery.message_id);
        delivery.ack().await.expect("ack dead letter");
    }

    drop((consumer, dead));
    remove_from_dead_queue(&bus, &ours).await;
    delete_queues(&[queue, watch]).await;
    bus.close().await;
}

/// Takes this test's copies out of the shared liaison.dead; anything else stays unacked
/// and returns to the queue when the consumer goes.
async fn remove_from_dead_queue(bus: &Bus, ids: &[Uuid]) {
    let Ok(mut dead) = bus.consume(QUEUE_DEAD, 500).await else {
        return;
    };
    let mut left = ids.to_vec();
    while !left.is_empty() {
        let Ok(Some(delivery)) = dead.next(Duration::from_secs(2)).await else {
            return;
        };
        if let Some(id) = delivery.message_id.filter(|id| left.contains(id)) {
            left.retain(|other| *other != id);
            let _ = delivery.ack().await;
        }
    }
}

#[tokio::test]
async fn an_unreachable_broker_fails_fast_and_names_the_host_but_not_the_password() {
    let config = BusConfig {
        url: "amqp://guest:topsecret@127.0.0.1:1/%2f".to_owned(),
        connect_timeout: Duration::from_secs(3),
        ..BusConfig::default()
    };
    let started = Instant::now();
    let error = Bus::connect(config)
        .await
        .err()
        .expect("nothing listens on port 1");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "took {:?}",
        started.elapsed()
    );
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("topsecret"), "{message}");
}

#[tokio::test]
async fn a_broker_that_never_answers_hits_the_connect_timeout() {
    // The kernel completes the TCP handshake for a listener that never accepts, so the
    // AMQP handshake hangs — exactly the case the timeout exists for.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = silent.local_addr().expect("local address");
    let config = BusConfig {
        url: format!("amqp://guest:guest@{address}/%2f"),
        connect_timeout: Duration::from_millis(500),
        ..BusConfig::default()
    };
    let started = Instant::now();
    let error = Bus::connect(config)
        .await
        .err()
        .expect("a silent peer is no broker");
    assert!(matches!(error, BusError::ConnectTimeout { .. }), "{error}");
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    assert!(error.to_string().contains(&address.to_string()));
}

#[tokio::test]
async fn a_closed_bus_reports_itself_down_and_opens_nothing() {
    let bus = connect().await;
    assert!(bus.is_connected());
    bus.close().await;
    assert!(!bus.is_connected());
    assert!(matches!(bus.publisher().await, Err(BusError::Closed)));
}

#[tokio::test]
async fn an_unreachable_first_endpoint_is_passed_over_for_the_next() {
    // A silent listener (hangs the handshake) and a closed port before the real broker:
    // the bus gives each its connect timeout, then takes the one that answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let address = silent.local_addr().expect("local address");
    let config = BusConfig {
        url: format!("amqp://guest:topsecret@{address}/%2f"),
        failover_urls: vec![
            "amqp://guest:topsecret@127.0.0.1:1/%2f".to_owned(),
            amqp_url(),
        ],
        connect_timeout: Duration::from_millis(500),
        ..BusConfig::default()
    };
    let bus = Bus::connect(config)
        .await
        .expect("the third endpoint answers");
    assert!(bus.is_connected());
    assert_eq!(bus.endpoint_url(), liaison_core::redact_url(&amqp_url()));
    let publisher = bus
        .publisher()
        .await
        .expect("a channel on the live endpoint");
    drop(publisher);
    bus.close().await;

    // None answers: the error is the last endpoint's, without its password.
    let config = BusConfig {
        url: format!("amqp://guest:topsecret@{address}/%2f"),
        failover_urls: vec!["amqp://guest:topsecret@127.0.0.1:1/%2f".to_owned()],
        connect_timeout: Duration::from_millis(500),
        ..BusConfig::default()
    };
    let error = Bus::connect(config)
        .await
        .err()
        .expect("no endpoint answers");
    let message = error.to_string();
    assert!(message.contains("127.0.0.1:1"), "{message}");
    assert!(!message.contains("topsecret"), "{message}");
}
