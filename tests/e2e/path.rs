//! The foundation path: a lead from `eco` reaches the procuratorate, a receipt comes back.

use std::time::Duration;

use liaison_bus::agency_queue;
use liaison_core::EntryKind;
use liaison_devtools::demo::{lead_event, receipt_event};
use liaison_ledger::TraceKey;
use liaison_tests::{World, code};
use uuid::Uuid;

fn id_of(event: &serde_json::Value) -> Uuid {
    Uuid::parse_str(event["id"].as_str().expect("id")).expect("uuid id")
}

#[tokio::test]
async fn a_lead_is_consumed_over_amqp_and_its_receipt_reaches_eco() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let procuratorate = world.client(&broker, "procuratorate");
    let bus = world.bus().await;

    let lead = lead_event("SD-PIL-E2E-AMQP");
    let lead_bytes = serde_json::to_vec(&lead).unwrap();
    let answer = eco.submit_bytes(lead_bytes.clone()).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["id"], lead["id"]);
    assert_eq!(answer.body["recipients"][0]["agency"], "procuratorate");
    assert_eq!(answer.body["recipients"].as_array().unwrap().len(), 1);
    let lead_seq = answer.body["seq"].as_u64().expect("ledger seq");

    let mut queue = bus
        .consume(&agency_queue(&code("procuratorate")), 10)
        .await
        .unwrap();
    let delivery = queue
        .next(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the lead is delivered");
    assert_eq!(delivery.message_id, Some(id_of(&lead)));
    assert_eq!(delivery.seq, Some(lead_seq));
    assert_eq!(
        delivery.body.as_ref(),
        lead_bytes.as_slice(),
        "delivered byte for byte"
    );
    delivery.ack().await.unwrap();

    let receipt = receipt_event("SD-PIL-E2E-AMQP", id_of(&lead));
    let answer = procuratorate.submit(&receipt).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(answer.body["recipients"][0]["agency"], "eco");

    let mut eco_queue = bus.consume(&agency_queue(&code("eco")), 10).await.unwrap();
    let delivery = eco_queue
        .next(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the receipt is delivered");
    assert_eq!(delivery.message_id, Some(id_of(&receipt)));
    delivery.ack().await.unwrap();
    // Nothing else was routed to eco or the procuratorate.
    assert!(
        eco_queue
            .next(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        queue
            .next(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none()
    );

    // The ledger holds every event of both messages, in order.
    let ledger = world.ledger().await;
    let kinds = |id: Uuid, trace: &[liaison_core::Entry]| -> Vec<EntryKind> {
        trace
            .iter()
            .filter(|e| e.message == Some(id))
            .map(|e| e.kind)
            .collect()
    };
    let trace = wait_for(|| async {
        let trace = ledger
            .trace(&TraceKey::Case("SD-PIL-E2E-AMQP".into()))
            .await
            .unwrap();
        let done = kinds(id_of(&receipt), &trace).contains(&EntryKind::DeliveryDispatched);
        done.then_some(trace)
    })
    .await;
    assert_eq!(
        kinds(id_of(&lead), &trace),
        vec![EntryKind::MessageAccepted, EntryKind::DeliveryDispatched]
    );
    assert_eq!(
        kinds(id_of(&receipt), &trace),
        vec![EntryKind::MessageAccepted, EntryKind::DeliveryDispatched]
    );
    assert!(
        trace.windows(2).all(|w| w[0].seq < w[1].seq),
        "trace in ledger order"
    );
    assert_eq!(trace[0].seq, lead_seq);

    bus.close().await;
    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn a_lead_is_pulled_over_https_and_acknowledged() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let procuratorate = world.client(&broker, "procuratorate");

    let lead = lead_event("SD-PIL-E2E-PULL");
    assert_eq!(eco.submit(&lead).await.unwrap().status, 202);

    let pulled = procuratorate.pull(20, 10).await.unwrap();
    assert_eq!(pulled.status, 200, "{}", pulled.body);
    let deliveries = pulled.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{}", pulled.body);
    assert_eq!(deliveries[0]["event"], lead);
    assert_eq!(deliveries[0]["type"], "pil.lead.v1");
    let delivery = deliveries[0]["delivery"].as_i64().unwrap();

    // eco may not acknowledge the procuratorate's delivery; the procuratorate may, and an
    // ack repeated (its first answer lost) is told it stands, with nothing new recorded.
    assert_eq!(eco.ack(delivery).await.unwrap().status, 404);
    assert_eq!(procuratorate.ack(delivery).await.unwrap().status, 204);
    let entries = world
        .ledger()
        .await
        .trace(&TraceKey::parse(lead["id"].as_str().unwrap()))
        .await
        .unwrap()
        .len();
    let again = procuratorate.ack(delivery).await.unwrap();
    assert_eq!(again.status, 200, "{}", again.body);
    assert_eq!(
        again.body,
        serde_json::json!({"already_acknowledged": true})
    );
    let after = world
        .ledger()
        .await
        .trace(&TraceKey::parse(lead["id"].as_str().unwrap()))
        .await
        .unwrap()
        .len();
    assert_eq!(after, entries, "a repeated ack records nothing");
    // Still not eco's to acknowledge, even now.
    let stranger = eco.ack(delivery).await.unwrap();
    assert_eq!(stranger.status, 404);
    assert_eq!(stranger.body["code"], "not_found");

    // The receipt travels back and is pulled by eco.
    let receipt = receipt_event("SD-PIL-E2E-PULL", id_of(&lead));
    assert_eq!(procuratorate.submit(&receipt).await.unwrap().status, 202);
    let pulled = eco.pull(20, 10).await.unwrap();
    let deliveries = pulled.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{}", pulled.body);
    assert_eq!(deliveries[0]["message_id"], receipt["id"]);
    assert_eq!(
        eco.ack(deliveries[0]["delivery"].as_i64().unwrap())
            .await
            .unwrap()
            .status,
        204
    );

    // An empty inbox answers an empty list after the wait.
    let empty = procuratorate.pull(0, 10).await.unwrap();
    assert_eq!(empty.body["deliveries"].as_array().unwrap().len(), 0);

    // The message view shows the delivery acknowledged, to the sender and the recipient only.
    let view = eco
        .get(&format!("/v1/messages/{}", id_of(&lead)))
        .await
        .unwrap();
    assert_eq!(view.status, 200, "{}", view.body);
    assert_eq!(view.body["deliveries"][0]["recipient"], "procuratorate");
    assert_eq!(view.body["deliveries"][0]["state"], "acknowledged");
    assert_eq!(view.body["event"], lead);
    let police = world.client(&broker, "police");
    assert_eq!(
        police
            .get(&format!("/v1/messages/{}", id_of(&lead)))
            .await
            .unwrap()
            .status,
        404
    );

    let ledger = world.ledger().await;
    let trace = ledger
        .trace(&TraceKey::Message(id_of(&lead)))
        .await
        .unwrap();
    let kinds: Vec<EntryKind> = trace
        .iter()
        .filter(|e| e.message == Some(id_of(&lead)))
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        vec![
            EntryKind::MessageAccepted,
            EntryKind::DeliveryDispatched,
            EntryKind::DeliveryAcknowledged
        ]
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

/// Polls `check` until it yields a value; the ledger records dispatches asynchronously.
pub async fn wait_for<T, F, Fut>(mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "condition not reached within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
