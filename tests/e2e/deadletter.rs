//! A delivery that keeps failing ends in `liaison.dead`, is listed, redriven and arrives;
//! one that its consumer keeps rejecting is dead-lettered by RabbitMQ; the ledger records
//! every step.

use std::time::Duration;

use liaison_bus::agency_queue;
use liaison_cli::deadletters;
use liaison_core::{Entry, EntryKind, Registry};
use liaison_devtools::demo::lead_event;
use liaison_ledger::{Ledger, TraceKey};
use liaison_tests::{World, code, repo_root};
use uuid::Uuid;

async fn kinds(ledger: &Ledger, caseref: &str) -> Vec<Entry> {
    ledger.trace(&TraceKey::Case(caseref.into())).await.unwrap()
}

/// Polls the case's trace until `done` holds (bounded).
async fn until(
    ledger: &Ledger,
    caseref: &str,
    what: &str,
    done: impl Fn(&[Entry]) -> bool,
) -> Vec<Entry> {
    liaison_tests::eventually(what, Duration::from_secs(30), async || {
        let trace = kinds(ledger, caseref).await;
        done(&trace).then_some(trace)
    })
    .await
}

fn count(trace: &[Entry], kind: EntryKind) -> usize {
    trace.iter().filter(|e| e.kind == kind).count()
}

#[tokio::test]
async fn a_failing_delivery_is_dead_lettered_listed_redriven_and_arrives() {
    let mut world = World::new().await;
    world.config.relay.max_attempts = 2;
    world.config.relay.retry_base = Duration::from_millis(20);
    world.config.relay.retry_max = Duration::from_millis(50);
    world.config.relay.poll_interval = Duration::from_millis(50);
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let bus = world.bus().await;

    // The procuratorate's queue is gone (as for an agency removed from RabbitMQ): every
    // publish to it comes back unroutable.
    world.delete_agency_queue("procuratorate");

    let caseref = "SD-DEAD-1";
    let lead = lead_event(caseref);
    let id = Uuid::parse_str(lead["id"].as_str().unwrap()).unwrap();
    let answer = world.client(&broker, "eco").submit(&lead).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);

    let trace = until(&ledger, caseref, "dead-lettering by the relay", |t| {
        count(t, EntryKind::DeliveryDeadLettered) == 1
    })
    .await;
    assert_eq!(count(&trace, EntryKind::DeliveryFailed), 1, "{trace:#?}");
    let dead = trace
        .iter()
        .find(|e| e.kind == EntryKind::DeliveryDeadLettered)
        .unwrap();
    assert_eq!(dead.detail["by"], "relay");
    assert!(
        dead.detail["reason"]
            .as_str()
            .unwrap()
            .contains("unroutable"),
        "{dead:?}"
    );
    assert_eq!(dead.agency, Some(code("procuratorate")));

    let listed = deadletters::list(&bus, 100).await.unwrap();
    let entry = listed
        .iter()
        .find(|d| d.message_id == Some(id))
        .unwrap_or_else(|| panic!("listed: {listed:?}"));
    assert_eq!(entry.recipient.as_deref(), Some("procuratorate"));
    assert_eq!(entry.dead_lettered_by, "relay");
    // Listing removes nothing.
    assert_eq!(
        deadletters::list(&bus, 100).await.unwrap().len(),
        listed.len()
    );

    // The queue is back; the redrive sends it and records it.
    let registry = Registry::load(&repo_root().join("deploy/demo/agencies.toml")).unwrap();
    bus.declare_topology(registry.codes()).await.unwrap();
    let report = deadletters::redrive(&bus, &ledger, Some(id)).await.unwrap();
    assert_eq!(report.sent, vec![(Some(id), "procuratorate".to_owned())]);
    assert!(
        deadletters::list(&bus, 100)
            .await
            .unwrap()
            .iter()
            .all(|d| d.message_id != Some(id))
    );

    let mut queue = bus
        .consume(&agency_queue(&code("procuratorate")), 10)
        .await
        .unwrap();
    let delivery = queue
        .next(Duration::from_secs(10))
        .await
        .unwrap()
        .expect("the redriven lead arrives");
    assert_eq!(delivery.message_id, Some(id));
    assert_eq!(
        delivery.body.as_ref(),
        serde_json::to_vec(&lead).unwrap().as_slice()
    );

    // Now its consumer keeps rejecting it: past the delivery limit RabbitMQ dead-letters it.
    delivery.reject(true).await.unwrap();
    for _ in 0..40 {
        match queue.next(Duration::from_secs(2)).await.unwrap() {
            Some(again) => again.reject(true).await.unwrap(),
            None => break,
        }
    }
    let trace = until(&ledger, caseref, "dead-lettering by RabbitMQ", |t| {
        count(t, EntryKind::DeliveryDeadLettered) == 2
    })
    .await;
    let steps: Vec<&str> = trace.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        steps,
        [
            "message.accepted",
            "delivery.failed",
            "delivery.dead_lettered",
            "delivery.redriven",
            "delivery.dead_lettered"
        ]
    );
    let last = trace.last().unwrap();
    assert_eq!(last.detail["by"], "rabbitmq");
    assert_eq!(last.detail["queue"], "liaison.agency.procuratorate");
    let listed = deadletters::list(&bus, 100).await.unwrap();
    assert!(
        listed
            .iter()
            .any(|d| d.message_id == Some(id) && d.dead_lettered_by == "rabbitmq"),
        "{listed:?}"
    );

    drop(queue);
    bus.close().await;
    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
