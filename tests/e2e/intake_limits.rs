//! AMQP intake is held to the limits of HTTPS: an oversized body is refused and recorded
//! with the same code, and one agency flooding the intake is rate limited (recorded, with
//! a problem notice) while another agency's message goes through.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection};
use liaison_core::{Entry, EntryKind};
use liaison_devtools::demo::lead_event;
use liaison_ledger::Ledger;
use liaison_tests::{World, code};
use serde_json::Value;

use crate::forged_dead_letters::{poll, publish, rejections};
use crate::intake::AgencyUsers;

async fn publish_as(users: &AgencyUsers, connection: &Connection, agency: &str, body: &[u8]) {
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_user_id(users.user(agency).into())
        .with_content_type("application/cloudevents+json".into());
    publish(
        connection,
        "liaison.intake",
        "pil.lead.v1",
        body,
        properties,
    )
    .await
    .expect("RabbitMQ takes the publish");
}

/// Problem notices in `agency`'s queue, until `count` arrived.
async fn notices(connection: &Connection, agency: &str, count: usize) -> Vec<Value> {
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            format!("liaison.agency.{agency}").as_str().into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut found = Vec::new();
    while found.len() < count {
        let got = tokio::time::timeout(Duration::from_secs(20), consumer.next())
            .await
            .expect("the problem notices arrive")
            .unwrap()
            .unwrap();
        got.ack(BasicAckOptions::default()).await.unwrap();
        if got.properties.kind().as_ref().map(|k| k.as_str()) == Some("liaison.problem") {
            found.push(serde_json::from_slice(&got.data).unwrap());
        }
    }
    found
}

async fn accepted_from(ledger: &Ledger, agency: &str) -> Vec<Entry> {
    ledger
        .entries(1, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|e| Entry::from_canonical(&e.entry).unwrap())
        .filter(|e| e.kind == EntryKind::MessageAccepted && e.agency == Some(code(agency)))
        .collect()
}

#[tokio::test]
async fn an_oversized_amqp_submission_is_refused_and_recorded_as_over_https() {
    let mut world = World::new().await;
    let users = AgencyUsers::import(&world);
    world.config.intake.user_prefix = users.prefix.clone();
    world.config.limits.max_body_bytes = 4096;
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let eco = users.connect("eco").await;

    // A valid lead, padded with whitespace past the limit: only the size is wrong.
    let mut big = serde_json::to_vec(&lead_event("SD-AMQP-BIG")).unwrap();
    big.resize(5000, b' ');
    publish_as(&users, &eco, "eco", &big).await;
    let problem = notices(&eco, "eco", 1).await.remove(0);
    assert_eq!(problem["code"], "body_too_large", "{problem}");
    assert_eq!(problem["status"], 413, "{problem}");
    let seq = problem["ledger_seq"].as_u64().expect("recorded");
    let recorded = rejections(&ledger, "body_too_large").await;
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    assert_eq!(recorded[0].seq, seq);
    assert_eq!(recorded[0].detail["channel"], "amqp");
    assert_eq!(recorded[0].agency, Some(code("eco")));
    assert!(accepted_from(&ledger, "eco").await.is_empty());

    // One within the limit is accepted.
    publish_as(
        &users,
        &eco,
        "eco",
        &serde_json::to_vec(&lead_event("SD-AMQP-SMALL")).unwrap(),
    )
    .await;
    poll("the small lead accepted", async || {
        (accepted_from(&ledger, "eco").await.len() == 1).then_some(())
    })
    .await;

    let _ = eco.close(200, "done".into()).await;
    broker.shutdown(Duration::from_secs(5)).await;
    drop(users);
    world.cleanup().await;
}

#[tokio::test]
async fn an_agency_flooding_amqp_intake_is_rate_limited_and_others_go_through() {
    const FLOOD: usize = 12;
    let mut world = World::new().await;
    let users = AgencyUsers::import(&world);
    world.config.intake.user_prefix = users.prefix.clone();
    world.config.limits.rate_per_second = 1;
    world.config.limits.rate_burst = 2;
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let eco = users.connect("eco").await;
    let market = users.connect("market").await;

    let started = Instant::now();
    for n in 0..FLOOD {
        let lead = lead_event(&format!("SD-FLOOD-{n}"));
        publish_as(&users, &eco, "eco", &serde_json::to_vec(&lead).unwrap()).await;
    }
    let mut other = lead_event("SD-FLOOD-MARKET");
    other["source"] = Value::from(code("market").urn());
    publish_as(
        &users,
        &market,
        "market",
        &serde_json::to_vec(&other).unwrap(),
    )
    .await;

    // Every flooding message is answered: accepted, or refused as rate limited.
    let (accepted, limited) = poll("every flooding message answered", async || {
        let accepted = accepted_from(&ledger, "eco").await.len();
        let limited = rejections(&ledger, "rate_limited").await;
        (accepted + limited.len() == FLOOD).then_some((accepted, limited))
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    assert!(!limited.is_empty(), "no eco message was rate limited");
    assert!(
        accepted as f64 <= 2.0 + elapsed.ceil() + 1.0,
        "{accepted} accepted in {elapsed:.1} s at 1/s with a burst of 2"
    );
    for entry in &limited {
        assert_eq!(entry.agency, Some(code("eco")));
        assert_eq!(entry.detail["channel"], "amqp");
    }
    // market is not held up by eco's flood.
    poll("market's lead accepted", async || {
        (accepted_from(&ledger, "market").await.len() == 1).then_some(())
    })
    .await;
    // eco learns why, in its own queue.
    let problems = notices(&eco, "eco", 1).await;
    assert_eq!(problems[0]["code"], "rate_limited", "{problems:?}");

    let _ = eco.close(200, "done".into()).await;
    let _ = market.close(200, "done".into()).await;
    broker.shutdown(Duration::from_secs(5)).await;
    drop(users);
    world.cleanup().await;
}

#[tokio::test]
async fn the_intake_queue_is_bounded_and_agency_users_are_limited_to_intake() {
    let mut world = World::new().await;
    // Nothing drains the queue, so its bound is what refuses the fourth message.
    world.config.intake.enabled = false;
    world.config.intake.queue_max_length = 3;
    let users = AgencyUsers::import_with(&world, |args| args.user_max_connections = 2);
    world.config.intake.user_prefix = users.prefix.clone();
    // The broker declares liaison.intake with the bounds the definitions gave it; were
    // they different, RabbitMQ would refuse the declaration and the broker would not start.
    let broker = world.start().await;
    let eco = users.connect("eco").await;

    // A quorum queue checks its bound after each enqueue, so it can take one message over
    // it; the publishes after that are refused (nacked).
    let lead = serde_json::to_vec(&lead_event("SD-AMQP-BOUND")).unwrap();
    let mut taken = 0;
    let err = loop {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_user_id(users.user("eco").into());
        match publish(&eco, "liaison.intake", "pil.lead.v1", &lead, properties).await {
            Ok(()) => taken += 1,
            Err(err) => break err,
        }
        assert!(taken <= 4, "the full intake queue took {taken} messages");
    };
    assert!(taken >= 3, "refused below the bound, after {taken}: {err}");
    assert!(err.contains("Nack"), "{err}");

    // Agency users may write to liaison.intake and nowhere else.
    for (exchange, key) in [
        ("liaison.dlx", "procuratorate"),
        ("liaison.deliver", "procuratorate"),
        ("", "liaison.agency.procuratorate"),
    ] {
        let properties = BasicProperties::default().with_user_id(users.user("eco").into());
        let err = publish(&eco, exchange, key, b"{}", properties)
            .await
            .expect_err("RabbitMQ refuses an agency's publish outside intake");
        assert!(
            err.contains("ACCESS_REFUSED") || err.contains("403"),
            "{exchange}: {err}"
        );
    }

    // The definitions' user limits are in force: eco's third connection is refused.
    let listed = liaison_tests::process::service_command(
        "rabbitmqctl",
        &["list_user_limits", "--user", &users.user("eco")],
    );
    assert!(listed.contains("\"max-connections\":2"), "{listed}");
    assert!(listed.contains("\"max-channels\":64"), "{listed}");
    let second = users.connect("eco").await;
    let user = users.user("eco");
    let url = format!(
        "amqp://{user}:{}@127.0.0.1:5672/{}",
        users.passwords[&user], world.vhost
    );
    let third = Connection::connect(&url, lapin::ConnectionProperties::default()).await;
    assert!(third.is_err(), "a third connection of eco was accepted");

    let _ = second.close(200, "done".into()).await;
    let _ = eco.close(200, "done".into()).await;
    broker.shutdown(Duration::from_secs(5)).await;
    drop(users);
    world.cleanup().await;
}
