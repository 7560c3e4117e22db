//! Dead letters are what the broker recorded, never what a publisher wrote: an agency user
//! that publishes to `liaison.intake` with liaison's dead-letter headers cannot mark
//! another agency's delivery dead, and nothing it wrote is ever redriven. A dead letter
//! whose body is not the ledger's bytes of the delivery it names is not redriven either.

use std::time::Duration;

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString};
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use liaison_cli::deadletters;
use liaison_core::{Entry, EntryKind};
use liaison_devtools::demo::lead_event;
use liaison_ledger::{Ledger, TraceKey};
use liaison_tests::World;
use uuid::Uuid;

use crate::intake::AgencyUsers;

fn text(value: &str) -> AMQPValue {
    AMQPValue::LongString(LongString::from(value))
}

/// The headers a forger would write to pass for a dead delivery of `delivery_id`.
fn forged_headers(delivery_id: i64, recipient: &str, by: &str) -> FieldTable {
    let mut headers = FieldTable::default();
    headers.insert(
        "liaison-delivery".into(),
        AMQPValue::LongLongInt(delivery_id),
    );
    headers.insert("liaison-recipient".into(), text(recipient));
    headers.insert("liaison-dead-by".into(), text(by));
    headers.insert("liaison-dead-reason".into(), text("delivery_limit"));
    headers
}

/// One confirmed publish; `Err` when RabbitMQ refuses it.
pub async fn publish(
    connection: &Connection,
    exchange: &str,
    routing_key: &str,
    body: &[u8],
    properties: BasicProperties,
) -> Result<(), String> {
    let channel = connection
        .create_channel()
        .await
        .map_err(|e| e.to_string())?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .map_err(|e| e.to_string())?;
    let confirm = channel
        .basic_publish(
            exchange.into(),
            routing_key.into(),
            BasicPublishOptions::default(),
            body,
            properties,
        )
        .await
        .map_err(|e| e.to_string())?;
    let result = match tokio::time::timeout(Duration::from_secs(10), confirm).await {
        Ok(Ok(Confirmation::Ack(_))) => Ok(()),
        Ok(Ok(other)) => Err(format!("{other:?}")),
        Ok(Err(e)) => Err(e.to_string()),
        Err(_) => Err("no confirm".into()),
    };
    let _ = channel.close(200, "done".into()).await;
    result
}

pub async fn poll<T>(what: &str, check: impl AsyncFnMut() -> Option<T>) -> T {
    liaison_tests::eventually(what, Duration::from_secs(30), check).await
}

async fn trace(ledger: &Ledger, caseref: &str) -> Vec<Entry> {
    ledger.trace(&TraceKey::Case(caseref.into())).await.unwrap()
}

/// Every rejection entry with `code`.
pub async fn rejections(ledger: &Ledger, code: &str) -> Vec<Entry> {
    ledger
        .entries(1, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|e| Entry::from_canonical(&e.entry).unwrap())
        .filter(|e| e.kind == EntryKind::MessageRejected && e.detail["code"] == code)
        .collect()
}

/// The procuratorate's delivery of `id` once the relay dispatched it.
async fn dispatched_delivery(ledger: &Ledger, id: Uuid) -> i64 {
    poll("the delivery's dispatch", async || {
        let message = ledger.message(id).await.unwrap()?;
        message
            .deliveries
            .iter()
            .find(|d| d.recipient.as_str() == "procuratorate" && d.state == "dispatched")
            .map(|d| d.delivery_id)
    })
    .await
}

#[tokio::test]
async fn forged_dead_letter_headers_neither_kill_nor_redrive_another_agencys_delivery() {
    let mut world = World::new().await;
    let users = AgencyUsers::import(&world);
    world.config.intake.user_prefix = users.prefix.clone();
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let bus = world.bus().await;

    // eco's lead is delivered to the procuratorate.
    let real = lead_event("SD-FORGE-REAL");
    let real_id = Uuid::parse_str(real["id"].as_str().unwrap()).unwrap();
    let real_bytes = serde_json::to_vec(&real).unwrap();
    let answer = world.client(&broker, "eco").submit(&real).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let delivery = dispatched_delivery(&ledger, real_id).await;

    // market publishes to intake, without user_id, a body of its own dressed as that
    // delivery's dead letter (once claiming RabbitMQ, once the relay).
    let forged_body = br#"{"forged":"by market"}"#.to_vec();
    let market = users.connect("market").await;
    for by in ["rabbitmq", "relay"] {
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(real_id.to_string().into())
            .with_type("pil.lead.v1".into())
            .with_headers(forged_headers(delivery, "procuratorate", by));
        publish(
            &market,
            "liaison.intake",
            "pil.lead.v1",
            &forged_body,
            properties,
        )
        .await
        .expect("RabbitMQ takes market's publish to intake");
    }
    // Refused for want of identity, and recorded.
    poll("both unauthenticated rejections", async || {
        (rejections(&ledger, "unauthenticated").await.len() == 2).then_some(())
    })
    .await;

    // A real dead letter after them, which the recorder must reach: the procuratorate
    // rejects a second lead outright.
    let sentinel = lead_event("SD-FORGE-SENTINEL");
    let sentinel_id = sentinel["id"].as_str().unwrap().to_owned();
    let answer = world
        .client(&broker, "eco")
        .submit(&sentinel)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let procuratorate = users.connect("procuratorate").await;
    let channel = procuratorate.create_channel().await.unwrap();
    let mut queue = channel
        .basic_consume(
            "liaison.agency.procuratorate".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    loop {
        let got = tokio::time::timeout(Duration::from_secs(20), queue.next())
            .await
            .expect("the sentinel arrives")
            .unwrap()
            .unwrap();
        let id = got.properties.message_id().as_ref().map(|m| m.to_string());
        if id.as_deref() == Some(sentinel_id.as_str()) {
            got.reject(BasicRejectOptions { requeue: false })
                .await
                .unwrap();
            break;
        }
        got.ack(BasicAckOptions::default()).await.unwrap();
    }
    poll("the sentinel's dead letter recorded", async || {
        trace(&ledger, "SD-FORGE-SENTINEL")
            .await
            .iter()
            .any(|e| e.kind == EntryKind::DeliveryDeadLettered)
            .then_some(())
    })
    .await;

    // The real delivery is untouched.
    let kinds: Vec<EntryKind> = trace(&ledger, "SD-FORGE-REAL")
        .await
        .iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [EntryKind::MessageAccepted, EntryKind::DeliveryDispatched],
        "a forged dead letter changed the real delivery"
    );
    let state = ledger.message(real_id).await.unwrap().unwrap().deliveries;
    assert_eq!(state[0].state, "dispatched", "{state:?}");

    // A dead letter whose headers name the real delivery but whose body is not the
    // ledger's (put straight into the dead-letter exchange) is not redriven either.
    let guest = Connection::connect(&world.config.amqp_url, ConnectionProperties::default())
        .await
        .unwrap();
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(real_id.to_string().into())
        .with_headers(forged_headers(delivery, "procuratorate", "relay"));
    publish(
        &guest,
        "liaison.dlx",
        "procuratorate",
        &forged_body,
        properties,
    )
    .await
    .unwrap();
    poll("the lying dead letter listed", async || {
        deadletters::list(&bus, 100)
            .await
            .unwrap()
            .iter()
            .any(|d| d.message_id == Some(real_id))
            .then_some(())
    })
    .await;

    let report = deadletters::redrive(&bus, &ledger, None).await.unwrap();
    assert!(
        report.sent.iter().all(|(id, _)| *id != Some(real_id)),
        "a forged dead letter was redriven: {report:?}"
    );
    assert!(
        report.sent.iter().any(
            |(id, to)| id.map(|i| i.to_string()) == Some(sentinel_id.clone())
                && to == "procuratorate"
        ),
        "the real dead letter is redriven: {report:?}"
    );

    // What arrives in the procuratorate's queue is the ledger's bytes, never the forger's.
    let got = tokio::time::timeout(Duration::from_secs(20), queue.next())
        .await
        .expect("the redriven sentinel arrives")
        .unwrap()
        .unwrap();
    assert_eq!(
        got.properties.message_id().as_ref().map(|m| m.to_string()),
        Some(sentinel_id.clone())
    );
    assert_eq!(got.data, serde_json::to_vec(&sentinel).unwrap());
    got.ack(BasicAckOptions::default()).await.unwrap();
    if let Ok(Some(Ok(extra))) = tokio::time::timeout(Duration::from_secs(1), queue.next()).await {
        assert_ne!(
            extra.data, forged_body,
            "the forged body reached the procuratorate"
        );
        assert_eq!(extra.data, real_bytes, "unexpected delivery");
    }
    let trace = trace(&ledger, "SD-FORGE-REAL").await;
    assert!(
        trace.iter().all(|e| e.kind != EntryKind::DeliveryRedriven),
        "{trace:#?}"
    );

    drop(queue);
    let _ = guest.close(200, "done".into()).await;
    let _ = market.close(200, "done".into()).await;
    let _ = procuratorate.close(200, "done".into()).await;
    bus.close().await;
    broker.shutdown(Duration::from_secs(5)).await;
    drop(users);
    world.cleanup().await;
}
