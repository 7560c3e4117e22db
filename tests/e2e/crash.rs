//! Accepted means delivered: a broker killed (SIGKILL) between `202` and delivery loses
//! nothing; the next broker delivers what was accepted.
//!
//! To hold deliveries back deterministically, the test's RabbitMQ user is first denied
//! write access to the `liaison.deliver` exchange, so every publish is refused and the
//! relay keeps the rows pending. The broker process is then killed, access restored, and
//! a new broker process started on the same ledger.

use std::collections::BTreeSet;
use std::time::Duration;

use liaison_bus::agency_queue;
use liaison_client::AgencyClient;
use liaison_core::EntryKind;
use liaison_devtools::demo::lead_event;
use liaison_ledger::TraceKey;
use liaison_tests::process::{BrokerProcess, free_port};
use liaison_tests::{World, code, rabbitmqctl};
use uuid::Uuid;

async fn spawn_broker(world: &World, config_file: &std::path::Path) -> BrokerProcess {
    BrokerProcess::spawn(world, config_file, free_port(), free_port()).await
}

#[tokio::test]
async fn a_killed_broker_loses_nothing_it_accepted() {
    let world = World::new().await;
    let config_file = world.config.tls_dir.join("crash-test.toml");
    std::fs::write(&config_file, "[relay]\nlease = \"2s\"\nretry_base = \"100ms\"\nretry_max = \"500ms\"\npoll_interval = \"100ms\"\n").unwrap();
    // Everything but publishing to liaison.deliver.
    rabbitmqctl(&[
        "set_permissions",
        "-p",
        &world.vhost,
        "guest",
        ".*",
        "^liaison\\.(agency\\..*|intake|dead|dead\\.ledger|dlx)$",
        ".*",
    ]);

    let mut first = spawn_broker(&world, &config_file).await;
    let eco = AgencyClient::new(
        &world.layout(),
        &code("eco"),
        &format!("https://localhost:{}", first.https_port),
    )
    .unwrap();
    let mut accepted = BTreeSet::new();
    for i in 0..20 {
        let lead = lead_event(&format!("SD-CRASH-{i:02}"));
        let answer = eco.submit(&lead).await.unwrap();
        assert_eq!(answer.status, 202, "{}", answer.body);
        accepted.insert(Uuid::parse_str(lead["id"].as_str().unwrap()).unwrap());
    }
    // The relay has tried every one of them and failed: the ledger says so. So at the
    // kill, every accepted message is undelivered.
    let ledger = world.ledger().await;
    for id in &accepted {
        crate::path::wait_for(|| async {
            let trace = ledger.trace(&TraceKey::Message(*id)).await.unwrap();
            trace
                .iter()
                .any(|e| e.kind == EntryKind::DeliveryFailed)
                .then_some(())
        })
        .await;
    }

    first.kill();

    let bus = world.bus().await;
    let mut queue = bus
        .consume(&agency_queue(&code("procuratorate")), 100)
        .await
        .unwrap();
    assert!(
        queue
            .next(Duration::from_millis(500))
            .await
            .unwrap()
            .is_none(),
        "nothing was delivered before the kill"
    );

    rabbitmqctl(&[
        "set_permissions",
        "-p",
        &world.vhost,
        "guest",
        ".*",
        ".*",
        ".*",
    ]);
    let mut second = spawn_broker(&world, &config_file).await;

    let mut delivered = BTreeSet::new();
    while delivered.len() < accepted.len() {
        let delivery = queue
            .next(Duration::from_secs(30))
            .await
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "only {} of {} accepted messages delivered after the restart",
                    delivered.len(),
                    accepted.len()
                )
            });
        delivered.insert(delivery.message_id.expect("message id"));
        delivery.ack().await.unwrap();
    }
    assert_eq!(
        delivered, accepted,
        "every accepted message, and nothing else"
    );

    for id in &accepted {
        let kinds: Vec<EntryKind> = crate::path::wait_for(|| async {
            let trace = ledger.trace(&TraceKey::Message(*id)).await.unwrap();
            let kinds: Vec<EntryKind> = trace.iter().map(|e| e.kind).collect();
            kinds
                .contains(&EntryKind::DeliveryDispatched)
                .then_some(kinds)
        })
        .await;
        assert_eq!(kinds[0], EntryKind::MessageAccepted);
        assert!(kinds.contains(&EntryKind::DeliveryFailed), "{kinds:?}");
        assert_eq!(
            kinds.last(),
            Some(&EntryKind::DeliveryDispatched),
            "{kinds:?}"
        );
    }

    second.kill();
    bus.close().await;
    world.cleanup().await;
}
