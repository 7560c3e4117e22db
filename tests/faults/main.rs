//! The fault test: while an agency posts thousands of leads, the broker process is killed
//! (SIGKILL) three times and restarted, RabbitMQ is restarted once and PostgreSQL once.
//! Afterwards every lead that got `202` is in every recipient's queue at least once,
//! nothing else is, duplicates carry the same id, and `liaison ledger verify` passes.
//!
//! It stops the machine's shared RabbitMQ and PostgreSQL, so it must never run beside
//! other tests: it is `#[ignore]`d, and `scripts/test` runs it alone after everything
//! else (`cargo test -p liaison-tests --test faults -- --ignored`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use liaison_bus::agency_queue;
use liaison_core::AgencyCode;
use liaison_devtools::demo::lead_event;
use liaison_server::tls;
use liaison_tests::process::{self, BrokerProcess, ServicesRestored};
use liaison_tests::{World, code};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Leads posted in all.
const MESSAGES: usize = 3_000;
/// Requests in flight at once.
const CLIENTS: usize = 8;
/// The whole test must end within this (it is well under the 5 minutes CI allows it).
const BUDGET: Duration = Duration::from_secs(240);

/// What the posting side knows: the leads that got `202`, with their recipients.
#[derive(Default)]
struct Posted {
    accepted: HashMap<Uuid, Vec<AgencyCode>>,
    /// Answers other than 202 that the client retried (503 while PostgreSQL was down,
    /// connection errors while the broker was dead).
    retried: usize,
}

struct Client {
    http: reqwest::Client,
    url: String,
    posted: Mutex<Posted>,
    accepted: AtomicUsize,
    next: AtomicUsize,
}

impl Client {
    /// Posts lead `i` until it gets `202`; any other answer is retried with the same
    /// bytes, as an agency system must.
    async fn post(&self, i: usize, deadline: Instant) {
        let lead = lead_event(&format!("SD-FAULT-{i:05}"));
        let id = Uuid::parse_str(lead["id"].as_str().expect("id")).expect("uuid");
        let bytes = serde_json::to_vec(&lead).expect("lead bytes");
        loop {
            assert!(
                Instant::now() < deadline,
                "lead {i} not accepted within the test's budget"
            );
            let answer = self
                .http
                .post(&self.url)
                .header("content-type", "application/cloudevents+json")
                .body(bytes.clone())
                .send()
                .await;
            let retry = match answer {
                Ok(response) if response.status().as_u16() == 202 => {
                    let body: serde_json::Value = match response.json().await {
                        Ok(body) => body,
                        // The answer was lost on the way: ask again, the same id is idempotent.
                        Err(_) => {
                            self.posted.lock().await.retried += 1;
                            continue;
                        }
                    };
                    assert_eq!(body["id"].as_str(), Some(id.to_string().as_str()));
                    let recipients = body["recipients"]
                        .as_array()
                        .expect("recipients")
                        .iter()
                        .map(|r| code(r["agency"].as_str().expect("agency")))
                        .collect();
                    self.posted.lock().await.accepted.insert(id, recipients);
                    self.accepted.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    assert!(
                        [503, 408, 429].contains(&status),
                        "lead {i}: unexpected answer {status}: {}",
                        response.text().await.unwrap_or_default()
                    );
                    true
                }
                Err(_) => true,
            };
            if retry {
                self.posted.lock().await.retried += 1;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }

    async fn run(self: Arc<Self>, deadline: Instant) {
        loop {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= MESSAGES {
                return;
            }
            self.post(i, deadline).await;
        }
    }
}

/// Waits (bounded) until the client has `target` accepted leads.
async fn until_accepted(client: &Client, target: usize, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(90);
    while client.accepted.load(Ordering::SeqCst) < target.min(MESSAGES) {
        assert!(
            Instant::now() < deadline,
            "{what}: only {} of {target} leads accepted within 90 s",
            client.accepted.load(Ordering::SeqCst)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

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

    let tls = tls::agency_client_config(&world.layout(), &code("eco")).expect("eco TLS");
    let client = Arc::new(Client {
        http: reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .timeout(Duration::from_secs(15))
            .build()
            .expect("HTTPS client"),
        url: format!("https://localhost:{https_port}/v1/messages"),
        posted: Mutex::new(Posted::default()),
        accepted: AtomicUsize::new(0),
        next: AtomicUsize::new(0),
    });
    let mut posting = tokio::task::JoinSet::new();
    for _ in 0..CLIENTS {
        posting.spawn(client.clone().run(deadline));
    }

    let mut kills = 0;
    let mut kill = async |broker: &mut BrokerProcess, at: usize| {
        until_accepted(&client, at, "before a kill").await;
        broker.kill();
        kills += 1;
        eprintln!("faults: broker killed (SIGKILL) at {at} accepted");
        *broker = BrokerProcess::spawn(&world, &config_file, https_port, ops_port).await;
    };
    kill(&mut broker, 300).await;

    // RabbitMQ goes away: leads are still accepted (recorded), /readyz says RabbitMQ is
    // down, and the relay delivers once it is back.
    until_accepted(&client, 700, "before the RabbitMQ restart").await;
    process::rabbitmq_stop_app();
    eprintln!("faults: RabbitMQ stopped");
    let readyz = until_ready_says(ops_port, 503, "rabbitmq").await;
    let during = client.accepted.load(Ordering::SeqCst);
    until_accepted(&client, during + 100, "while RabbitMQ is down").await;
    process::rabbitmq_start_app();
    eprintln!("faults: RabbitMQ started; /readyz meanwhile said {readyz}");
    until_ready_says(ops_port, 200, "\"rabbitmq\":\"ok\"").await;

    kill(&mut broker, 1_200).await;

    // PostgreSQL goes away: nothing is accepted (503, retried), /readyz says so.
    until_accepted(&client, 1_600, "before the PostgreSQL restart").await;
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
    let posted = std::mem::take(&mut *client.posted.lock().await);
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

    let verify = std::process::Command::new(process::liaison_binary())
        .args(["ledger", "verify"])
        .env("LIAISON_DATABASE_URL", &world.config.database_url)
        .env("LIAISON_TLS_DIR", &world.config.tls_dir)
        .env("LIAISON_LOG", "off")
        .output()
        .expect("run liaison ledger verify");
    let verify_text = format!(
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

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
