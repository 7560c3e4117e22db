//! The fault test: while an agency posts thousands of leads, the broker process is killed
//! (SIGKILL) three times and restarted, RabbitMQ is restarted once and PostgreSQL once.
//! Afterwards every lead that got `202` is in every recipient's queue at least once,
//! nothing else is, duplicates carry the same id, and `liaison ledger verify` passes.
//!
//! It stops the machine's shared RabbitMQ and PostgreSQL, so it must never run beside
//! other tests: it is `#[ignore]`d, and `scripts/test` runs it alone after everything
//! else (`cargo test -p liaison-tests --test faults -- --ignored`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::{Duration, Instant};

use liaison_bus::agency_queue;
use liaison_core::AgencyCode;
use liaison_tests::World;
use liaison_tests::load::Load;
use liaison_tests::process::{self, BrokerProcess, ServicesRestored};
use uuid::Uuid;

/// Leads posted in all.
const MESSAGES: usize = 3_000;
/// Requests in flight at once.
const CLIENTS: usize = 8;
/// The whole test must end within this (it is well under the 5 minutes CI allows it).
const BUDGET: Duration = Duration::from_secs(240);

/// Waits (bounded) until `/readyz` answers `status` and its body mentions `needle`.
async fn until_ready_says(ops_port: u16, status: u16, needle: &str) -> String {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("HTTP client");
    let url = format!("http://127.0.0.1:{ops_port}/readyz");
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(response) = http.get(&url).send().await {
            let got = response.status().as_u16();
            let body = response.text().await.unwrap_or_default();
            if got == status && body.contains(needle) {
                return body;
            }
        }
        assert!(
            Instant::now() < deadline,
            "/readyz never answered {status} with {needle:?} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "restarts the shared RabbitMQ and PostgreSQL: scripts/test runs it alone"]
async fn kills_and_restarts_lose_nothing_and_invent_nothing() {
    let started = Instant::now();
    let deadline = started + BUDGET;
    let restore = ServicesRestored {
        postgres_version: process::postgres_cluster_version(),
    };
    let world = World::new().await;
    let config_file = world.config.tls_dir.join("faults.toml");
    // Fast retries and short leases, so that recovery shows within the test's budget;
    // no rate limit, the client is the only agency.
    std::fs::write(
        &config_file,
        "[relay]\nlease = \"3s\"\nretry_base = \"200ms\"\nretry_max = \"1s\"\npoll_interval = \"200ms\"\nmax_attempts = 1000\n\n[limits]\nrate_per_second = 0\n",
    )
    .expect("fault test configuration");
    let (https_port, ops_port) = (process::free_port(), process::free_port());
    let mut broker = BrokerProcess::spawn(&world, &config_file, https_port, ops_port).await;

    let client = Load::new(&world, &[https_port], "SD-FAULT", MESSAGES);
    let mut posting = client.start(CLIENTS, deadline);

    let mut kills = 0;
    let mut kill = async |broker: &mut BrokerProcess, at: usize| {
        client.until_accepted(at, "before a kill").await;
        broker.kill();
        kills += 1;
        eprintln!("faults: broker killed (SIGKILL) at {at} accepted");
        *broker = BrokerProcess::spawn(&world, &config_file, https_port, ops_port).await;
    };
    kill(&mut broker, 300).await;

    // RabbitMQ goes away: leads are still accepted (recorded), /readyz says RabbitMQ is
    // down, and the relay delivers once it is back.
    client
        .until_accepted(700, "before the RabbitMQ restart")
        .await;
    process::rabbitmq_stop_app();
    eprintln!("faults: RabbitMQ stopped");
    let readyz = until_ready_says(ops_port, 503, "rabbitmq").await;
    let during = client.accepted();
    client
        .until_accepted(during + 100, "while RabbitMQ is down")
        .await;
    process::rabbitmq_start_app();
    eprintln!("faults: RabbitMQ started; /readyz meanwhile said {readyz}");
    until_ready_says(ops_port, 200, "\"rabbitmq\":\"ok\"").await;

    kill(&mut broker, 1_200).await;

    // PostgreSQL goes away: nothing is accepted (503, retried), /readyz says so.
    client
        .until_accepted(1_600, "before the PostgreSQL restart")
        .await;
    process::postgres_stop(&restore.postgres_version);
    eprintln!("faults: PostgreSQL stopped");
    let readyz = until_ready_says(ops_port, 503, "ledger").await;
    process::postgres_start(&restore.postgres_version);
    eprintln!("faults: PostgreSQL started; /readyz meanwhile said {readyz}");
    until_ready_says(ops_port, 200, "\"ledger\":\"ok\"").await;

    kill(&mut broker, 2_200).await;

    while let Some(done) = posting.join_next().await {
        done.expect("a posting task panicked");
    }
    let posted = client.take_posted().await;
    assert_eq!(posted.accepted.len(), MESSAGES, "every lead got its 202");

    // Everything accepted is dispatched: no pending outbox row is left.
    let ledger_pool = sqlx::PgPool::connect(&world.config.database_url)
        .await
        .expect("test database");
    let expected_pairs: usize = posted.accepted.values().map(Vec::len).sum();
    let wait = Instant::now() + Duration::from_secs(90);
    loop {
        let (pending, all): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE state = 'pending'), count(*) FROM outbox",
        )
        .fetch_one(&ledger_pool)
        .await
        .expect("outbox counts");
        if pending == 0 {
            assert_eq!(
                usize::try_from(all).unwrap_or(0),
                expected_pairs,
                "one outbox row per accepted recipient"
            );
            break;
        }
        assert!(
            Instant::now() < wait,
            "{pending} deliveries still pending 90 s after the last post"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    ledger_pool.close().await;

    // Drain every recipient queue.
    let queues: BTreeSet<AgencyCode> = posted.accepted.values().flatten().cloned().collect();
    let bus = world.bus().await;
    let mut deliveries_by_pair: BTreeMap<(Uuid, AgencyCode), usize> = BTreeMap::new();
    let mut id_of_delivery: HashMap<i64, Uuid> = HashMap::new();
    let mut total_deliveries = 0usize;
    let mut mismatched_ids = 0usize;
    for agency in &queues {
        let mut consumer = bus
            .consume(&agency_queue(agency), 500)
            .await
            .expect("consume a recipient queue");
        // The queue is complete (nothing pending); a quiet second means it is drained.
        while let Some(delivery) = consumer
            .next(Duration::from_secs(2))
            .await
            .expect("receive")
        {
            total_deliveries += 1;
            let id = delivery.message_id.expect("every delivery carries its id");
            *deliveries_by_pair.entry((id, agency.clone())).or_default() += 1;
            let outbox_row = delivery.delivery_id.expect("liaison-delivery header");
            if *id_of_delivery.entry(outbox_row).or_insert(id) != id {
                mismatched_ids += 1;
            }
            delivery.ack().await.expect("ack");
        }
    }
    bus.close().await;

    let expected: BTreeSet<(Uuid, AgencyCode)> = posted
        .accepted
        .iter()
        .flat_map(|(id, recipients)| recipients.iter().map(move |r| (*id, r.clone())))
        .collect();
    let delivered: BTreeSet<(Uuid, AgencyCode)> = deliveries_by_pair.keys().cloned().collect();
    let lost = expected.difference(&delivered).count();
    let invented = delivered.difference(&expected).count();
    let duplicates = total_deliveries - delivered.len();

    let verify = process::liaison(&world, &["ledger", "verify"]);
    let verify_text = process::text(&verify);

    println!(
        "fault test: accepted {} leads ({} recipient deliveries expected), delivered {total_deliveries} \
         ({} distinct, {duplicates} duplicates), lost {lost}, invented {invented}, \
         duplicate ids mismatched {mismatched_ids}; broker kills {kills}, RabbitMQ restarts 1, \
         PostgreSQL restarts 1; {} client retries; {:.1} s",
        posted.accepted.len(),
        expected.len(),
        delivered.len(),
        posted.retried,
        started.elapsed().as_secs_f64()
    );
    println!("liaison ledger verify: {}", verify_text.trim());

    assert_eq!(lost, 0, "accepted leads missing from a recipient queue");
    assert_eq!(invented, 0, "deliveries of leads that were never accepted");
    assert_eq!(mismatched_ids, 0, "a redelivery carried another message id");
    assert!(kills >= 3, "{kills} broker kills");
    assert!(
        verify.status.success(),
        "liaison ledger verify failed: {verify_text}"
    );

    // Graceful shutdown: SIGTERM ends the broker cleanly and promptly.
    let status = broker.terminate(Duration::from_secs(20)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "liaison serve did not exit cleanly on SIGTERM: {status:?}"
    );
    world.cleanup().await;
    drop(restore);
}
