//! The scale-out test: a three-node RabbitMQ cluster on this machine
//! (`scripts/rabbitmq-cluster`), two liaison instances on one database, each told all
//! three nodes (`amqp_url` and `amqp_failover_urls`, each starting at another node). An
//! agency posts thousands of leads across both instances while the test kills (SIGKILL)
//! the RabbitMQ node leading the recipients' queues, then one liaison instance.
//! Afterwards every lead that got `202` reached every recipient's queue at least once,
//! nothing else did, duplicates carry the same id, and `liaison ledger verify` passes.
//! Deliveries are consumed while the test runs, so it also measures how long delivery
//! paused after each kill.
//!
//! It starts three RabbitMQ nodes (about a minute) beside the machine's own RabbitMQ and
//! stops them at the end, also when it fails; it is `#[ignore]`d, and `scripts/test` runs
//! it alone after the fault test (`cargo test -p liaison-tests --test scaleout --
//! --ignored --nocapture`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use liaison_bus::{Bus, BusConfig, agency_queue};
use liaison_core::{AgencyCode, Registry};
use liaison_devtools::demo::lead_event;
use liaison_tests::load::Load;
use liaison_tests::process::{self, BrokerProcess};
use liaison_tests::{World, eventually, repo_root};
use tokio::sync::Mutex;
use uuid::Uuid;

/// Leads posted in all.
const MESSAGES: usize = 3_000;
/// Requests in flight at once, spread over both instances.
const CLIENTS: usize = 8;
/// Posting must end within this.
const BUDGET: Duration = Duration::from_secs(300);
/// After a kill, deliveries within this window count for the pause it caused.
const PAUSE_WINDOW: Duration = Duration::from_secs(60);

/// Three RabbitMQ nodes started by `scripts/rabbitmq-cluster`; stopped when dropped.
struct Cluster {
    /// Always the same directory: a run that was killed before it could stop its nodes
    /// has them stopped by the next run's start (the script stops what the directory's
    /// pid files name before starting).
    dir: PathBuf,
    urls: Vec<String>,
}

impl Cluster {
    fn script() -> std::path::PathBuf {
        repo_root().join("scripts/rabbitmq-cluster")
    }

    fn start() -> Cluster {
        let dir = std::env::temp_dir().join("liaison-scaleout-cluster");
        let output = Command::new(Self::script())
            .arg("start")
            .arg(&dir)
            .output()
            .expect("run scripts/rabbitmq-cluster");
        let cluster = Cluster {
            dir,
            urls: String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect(),
        };
        assert!(
            output.status.success() && cluster.urls.len() == 3,
            "the RabbitMQ cluster did not start: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        cluster
    }

    /// `rabbitmqctl` against node `n` (1-based).
    fn ctl(&self, n: usize, args: &[&str]) -> String {
        let output = Command::new(Self::script())
            .arg("ctl")
            .arg(&self.dir)
            .arg(n.to_string())
            .args(args)
            .output()
            .expect("run rabbitmqctl");
        assert!(
            output.status.success(),
            "rabbitmqctl {args:?} on node {n}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// One column of `rabbitmqctl list_queues` for each queue, asked of node `via`.
    fn queue_column(&self, via: usize, column: &str) -> Vec<(String, String)> {
        self.ctl(
            via,
            &[
                "list_queues",
                "--quiet",
                "--no-table-headers",
                "name",
                column,
            ],
        )
        .lines()
        .filter_map(|line| {
            let (queue, value) = line.split_once('\t')?;
            Some((queue.to_owned(), value.trim().to_owned()))
        })
        .collect()
    }

    /// The node (1-based) leading each quorum queue, asked of node `via`.
    fn leaders(&self, via: usize) -> BTreeMap<String, usize> {
        self.queue_column(via, "leader")
            .into_iter()
            .filter_map(|(queue, node)| {
                let n = node
                    .strip_prefix("liaison")?
                    .split('@')
                    .next()?
                    .parse()
                    .ok()?;
                Some((queue, n))
            })
            .collect()
    }

    /// How many members (replicas, one per node) each quorum queue has, asked of node `via`.
    fn members(&self, via: usize) -> BTreeMap<String, usize> {
        self.queue_column(via, "members")
            .into_iter()
            .map(|(queue, members)| (queue, members.matches('@').count()))
            .collect()
    }

    /// SIGKILL node `n`'s Erlang VM.
    fn kill(&self, n: usize) {
        let status = Command::new(Self::script())
            .arg("kill")
            .arg(&self.dir)
            .arg(n.to_string())
            .status()
            .expect("kill a RabbitMQ node");
        assert!(status.success(), "killing RabbitMQ node {n} failed");
    }

    /// The AMQP URLs starting at node `first` (0-based), then the others in turn.
    fn urls_from(&self, first: usize) -> (String, Vec<String>) {
        let n = self.urls.len();
        let mut urls = (0..n).map(|k| self.urls[(first + k) % n].clone());
        let head = urls.next().expect("three URLs");
        (head, urls.collect())
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = Command::new(Self::script())
            .arg("stop")
            .arg(&self.dir)
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One delivery as a recipient's system saw it.
struct Received {
    at: Instant,
    id: Uuid,
    agency: AgencyCode,
    outbox_row: i64,
}

/// Consumes `agency`'s queue until `stop`, reconnecting (through the bus's endpoints)
/// whenever the consumer fails, and records every delivery before acking it.
async fn receive(
    bus: Bus,
    agency: AgencyCode,
    log: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
) {
    let queue = agency_queue(&agency);
    while !stop.load(Ordering::SeqCst) {
        let Ok(mut consumer) = bus.consume(&queue, 200).await else {
            tokio::time::sleep(Duration::from_millis(100)).await;
            continue;
        };
        while !stop.load(Ordering::SeqCst) {
            match consumer.next(Duration::from_millis(250)).await {
                Ok(Some(delivery)) => {
                    log.lock().await.push(Received {
                        at: Instant::now(),
                        id: delivery.message_id.expect("every delivery carries its id"),
                        agency: agency.clone(),
                        outbox_row: delivery.delivery_id.expect("liaison-delivery header"),
                    });
                    // A lost ack means a redelivery, which counts as a duplicate.
                    let _ = delivery.ack().await;
                }
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

/// The longest time without any delivery, among the gaps that end after `kill` and
/// start within [`PAUSE_WINDOW`] of it, and when that gap started relative to the kill.
fn pause_after(arrivals: &[Instant], kill: Instant) -> (Duration, Duration) {
    let mut longest = (Duration::ZERO, Duration::ZERO);
    for pair in arrivals.windows(2) {
        let (before, after) = (pair[0], pair[1]);
        if after > kill && before < kill + PAUSE_WINDOW {
            let gap = after - before;
            if gap > longest.0 {
                longest = (gap, before.saturating_duration_since(kill));
            }
        }
    }
    longest
}

/// How long after `kill` the last of the leads accepted before it reached all its
/// recipients (zero when all had arrived already): what was in flight at the kill, caught
/// up. `arrived` is when each lead had reached every recipient.
fn caught_up_after(
    accepted_at: &HashMap<Uuid, Instant>,
    arrived: &HashMap<Uuid, Instant>,
    kill: Instant,
) -> Duration {
    accepted_at
        .iter()
        .filter(|(_, at)| **at < kill)
        .filter_map(|(id, _)| arrived.get(id))
        .map(|arrived| arrived.saturating_duration_since(kill))
        .max()
        .unwrap_or_default()
}

/// The size of the database at `url`, in bytes.
async fn database_size(url: &str) -> i64 {
    let pool = sqlx::PgPool::connect(url).await.expect("test database");
    let (bytes,): (i64,) = sqlx::query_as("SELECT pg_database_size(current_database())")
        .fetch_one(&pool)
        .await
        .expect("database size");
    pool.close().await;
    bytes
}

/// Waits (bounded) until the instance on `ops_port` says it is ready, RabbitMQ included.
async fn until_ready(ops_port: u16, what: &str) {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("HTTP client");
    let url = format!("http://127.0.0.1:{ops_port}/readyz");
    eventually(what, Duration::from_secs(60), async || {
        let response = http.get(&url).send().await.ok()?;
        let ready = response.status().is_success();
        let body = response.text().await.ok()?;
        (ready && body.contains("\"rabbitmq\":\"ok\"")).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "starts a three-node RabbitMQ cluster: scripts/test runs it alone"]
async fn a_cluster_node_and_an_instance_die_and_nothing_is_lost_or_invented() {
    let started = Instant::now();
    let cluster = Cluster::start();
    eprintln!(
        "scaleout: RabbitMQ cluster of 3 nodes up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut world = World::new().await;
    // Instance A starts at node 1, instance B at node 2; each knows all three.
    let (url_a, failover_a) = cluster.urls_from(0);
    let (url_b, failover_b) = cluster.urls_from(1);
    world.config.amqp_url = url_a.clone();
    let list = |urls: &[String]| format!("[\"{}\"]", urls.join("\", \""));
    let config_file = world.config.tls_dir.join("scaleout.toml");
    std::fs::write(
        &config_file,
        "[relay]\nlease = \"3s\"\nretry_base = \"200ms\"\nretry_max = \"1s\"\npoll_interval = \"200ms\"\nmax_attempts = 1000\n\n[bus]\nconnect_timeout = \"2s\"\noperation_timeout = \"5s\"\n\n[limits]\nrate_per_second = 0\n",
    )
    .expect("scale-out configuration");
    let ports = [
        (process::free_port(), process::free_port()),
        (process::free_port(), process::free_port()),
    ];
    let failover_a = list(&failover_a);
    let instance_a = BrokerProcess::spawn_with_env(
        &world,
        &config_file,
        ports[0].0,
        ports[0].1,
        &[("LIAISON_AMQP_FAILOVER_URLS", &failover_a)],
    )
    .await;
    let failover_b = list(&failover_b);
    let mut instance_b = BrokerProcess::spawn_with_env(
        &world,
        &config_file,
        ports[1].0,
        ports[1].1,
        &[
            ("LIAISON_AMQP_URL", &url_b),
            ("LIAISON_AMQP_FAILOVER_URLS", &failover_b),
        ],
    )
    .await;

    // For sizing: the database before any message (the schema the instances made).
    let empty_database = database_size(&world.config.database_url).await;

    // Every agency's queue is consumed while the test runs, through a bus that knows all
    // three nodes (starting at node 3).
    let registry =
        Registry::load(&repo_root().join("deploy/demo/agencies.toml")).expect("demo registry");
    let (url_c, failover_c) = cluster.urls_from(2);
    let bus = Bus::connect(BusConfig {
        url: url_c,
        failover_urls: failover_c,
        ..world.config.bus_config()
    })
    .await
    .expect("the cluster");
    let log = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut receiving = tokio::task::JoinSet::new();
    for agency in registry.codes() {
        receiving.spawn(receive(
            bus.clone(),
            agency.clone(),
            log.clone(),
            stop.clone(),
        ));
    }

    let client = Load::new(&world, &ports.map(|(https, _)| https), "SD-SCALE", MESSAGES);
    let load_started = Instant::now();
    let deadline = load_started + BUDGET;
    let mut posting = client.start(CLIENTS, deadline);

    // Kill the RabbitMQ node leading most of the recipients' queues.
    client
        .until_accepted(800, "before the RabbitMQ node is killed")
        .await;
    let recipients: BTreeSet<String> = client.recipients().await.iter().map(agency_queue).collect();
    // Each recipient queue has a member on every node, or losing one could lose it.
    let members = cluster.members(3);
    for queue in &recipients {
        assert_eq!(
            members.get(queue),
            Some(&3),
            "members of {queue}: {members:?}"
        );
    }
    let leaders = cluster.leaders(3);
    let mut led: BTreeMap<usize, usize> = BTreeMap::new();
    for queue in &recipients {
        *led.entry(*leaders.get(queue).expect("a leader per recipient queue"))
            .or_default() += 1;
    }
    let (&victim, _) = led
        .iter()
        .max_by_key(|(_, count)| **count)
        .expect("recipient queues");
    let node_killed = Instant::now();
    cluster.kill(victim);
    eprintln!(
        "scaleout: RabbitMQ node liaison{victim} (leader of {} of {} recipient queues, each with 3 members) killed at {} accepted",
        led[&victim],
        recipients.len(),
        client.accepted()
    );
    let survivor = if victim == 3 { 1 } else { 3 };
    let new_leaders = eventually(
        "every recipient queue has a leader on a live node",
        Duration::from_secs(60),
        async || {
            let leaders = cluster.leaders(survivor);
            recipients
                .iter()
                .all(|q| leaders.get(q).is_some_and(|n| *n != victim))
                .then_some(leaders)
        },
    )
    .await;
    let leader_elected = node_killed.elapsed();
    eprintln!(
        "scaleout: new leaders {:?} after {:.1} s",
        recipients
            .iter()
            .map(|q| new_leaders[q])
            .collect::<Vec<_>>(),
        leader_elected.as_secs_f64()
    );
    // Both instances are connected again; the one that was on the killed node through
    // another endpoint of its list.
    until_ready(ports[0].1, "instance A ready after the node was killed").await;
    until_ready(ports[1].1, "instance B ready after the node was killed").await;
    let instances_ready = node_killed.elapsed();
    eprintln!(
        "scaleout: both instances ready (RabbitMQ connected) {:.1} s after the kill",
        instances_ready.as_secs_f64()
    );

    // Then kill liaison instance B; A takes over its leased deliveries when the lease ends.
    let at = client.accepted();
    client
        .until_accepted(at + 800, "before the liaison instance is killed")
        .await;
    let instance_killed = Instant::now();
    instance_b.kill();
    eprintln!(
        "scaleout: liaison instance B killed (SIGKILL) at {} accepted",
        client.accepted()
    );

    while let Some(done) = posting.join_next().await {
        done.expect("a posting task panicked");
    }
    let load_time = load_started.elapsed();
    let posted = client.take_posted().await;
    assert_eq!(posted.accepted.len(), MESSAGES, "every lead got its 202");
    let expected: BTreeSet<(Uuid, AgencyCode)> = posted
        .accepted
        .iter()
        .flat_map(|(id, recipients)| recipients.iter().map(move |r| (*id, r.clone())))
        .collect();

    // Everything accepted is dispatched (no pending outbox row) and received.
    let ledger_pool = sqlx::PgPool::connect(&world.config.database_url)
        .await
        .expect("test database");
    eventually(
        "every delivery dispatched",
        Duration::from_secs(120),
        async || {
            let (pending,): (i64,) =
                sqlx::query_as("SELECT count(*) FROM outbox WHERE state = 'pending'")
                    .fetch_one(&ledger_pool)
                    .await
                    .expect("outbox count");
            (pending == 0).then_some(())
        },
    )
    .await;
    let (outbox_rows,): (i64,) = sqlx::query_as("SELECT count(*) FROM outbox")
        .fetch_one(&ledger_pool)
        .await
        .expect("outbox rows");

    ledger_pool.close().await;
    // The ledger, tree, messages, outbox and their indexes, per lead (for sizing).
    let database_growth = database_size(&world.config.database_url).await - empty_database;
    let lead_bytes = serde_json::to_vec(&lead_event("SD-SCALE-00000"))
        .expect("lead bytes")
        .len();
    eventually(
        "every accepted delivery received",
        Duration::from_secs(60),
        async || {
            let log = log.lock().await;
            let seen: BTreeSet<(Uuid, AgencyCode)> =
                log.iter().map(|r| (r.id, r.agency.clone())).collect();
            expected.is_subset(&seen).then_some(())
        },
    )
    .await;
    // The consumers stay a little longer, so that a late duplicate or an invented
    // delivery is counted too: until two seconds pass without any delivery.
    eventually(
        "the queues fall quiet",
        Duration::from_secs(30),
        async || {
            let log = log.lock().await;
            log.last()
                .is_none_or(|last| last.at.elapsed() >= Duration::from_secs(2))
                .then_some(())
        },
    )
    .await;
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = receiving.join_next().await {
        done.expect("a receiving task panicked");
    }
    bus.close().await;

    let log = std::mem::take(&mut *log.lock().await);
    let mut deliveries_by_pair: BTreeMap<(Uuid, AgencyCode), usize> = BTreeMap::new();
    let mut id_of_row: HashMap<i64, Uuid> = HashMap::new();
    let mut mismatched_ids = 0usize;
    for received in &log {
        *deliveries_by_pair
            .entry((received.id, received.agency.clone()))
            .or_default() += 1;
        if *id_of_row.entry(received.outbox_row).or_insert(received.id) != received.id {
            mismatched_ids += 1;
        }
    }
    let delivered: BTreeSet<(Uuid, AgencyCode)> = deliveries_by_pair.keys().cloned().collect();
    let lost = expected.difference(&delivered).count();
    let invented = delivered.difference(&expected).count();
    let duplicates = log.len() - delivered.len();
    let arrivals: Vec<Instant> = log.iter().map(|r| r.at).collect();
    let (node_pause, node_pause_from) = pause_after(&arrivals, node_killed);
    let (instance_pause, instance_pause_from) = pause_after(&arrivals, instance_killed);
    // When each lead had reached every recipient: the latest of its first arrivals.
    let mut first_arrival: HashMap<(Uuid, AgencyCode), Instant> = HashMap::new();
    for received in &log {
        first_arrival
            .entry((received.id, received.agency.clone()))
            .or_insert(received.at);
    }
    let mut arrived: HashMap<Uuid, Instant> = HashMap::new();
    for ((id, _), at) in &first_arrival {
        let latest = arrived.entry(*id).or_insert(*at);
        *latest = (*latest).max(*at);
    }
    let node_caught_up = caught_up_after(&posted.accepted_at, &arrived, node_killed);
    let instance_caught_up = caught_up_after(&posted.accepted_at, &arrived, instance_killed);
    let (slowest, slowest_id) = posted
        .accepted_at
        .iter()
        .filter_map(|(id, at)| Some((arrived.get(id)?.saturating_duration_since(*at), *id)))
        .max()
        .unwrap_or_default();
    // Where the slowest lead was: answered before or after which kill, and whether its
    // 202 was a duplicate's (recorded by the killed instance, answered by the other).
    let slowest_context = {
        let at = posted
            .accepted_at
            .get(&slowest_id)
            .copied()
            .unwrap_or(started);
        let relative = |kill: Instant| {
            if at >= kill {
                format!("+{:.2} s", (at - kill).as_secs_f64())
            } else {
                format!("-{:.2} s", (kill - at).as_secs_f64())
            }
        };
        format!(
            "its 202 {} from the node kill, {} from the instance kill{}",
            relative(node_killed),
            relative(instance_killed),
            if posted.duplicate_answers.contains(&slowest_id) {
                ", answered as a duplicate"
            } else {
                ""
            }
        )
    };
    let steady = arrivals
        .windows(2)
        .filter(|pair| pair[1] < node_killed)
        .map(|pair| pair[1] - pair[0])
        .max()
        .unwrap_or_default();

    let verify = process::liaison(&world, &["ledger", "verify"]);
    let verify_text = process::text(&verify);

    println!(
        "scale-out test: 3 RabbitMQ nodes, 2 liaison instances on one database; accepted {} leads \
         ({} recipient deliveries expected, {outbox_rows} outbox rows) in {:.1} s, received {} \
         ({} distinct, {duplicates} duplicates), lost {lost}, invented {invented}, duplicate ids \
         mismatched {mismatched_ids}; {} client retries, {} leads answered as duplicates",
        posted.accepted.len(),
        expected.len(),
        load_time.as_secs_f64(),
        log.len(),
        delivered.len(),
        posted.retried,
        posted.duplicate_answers.len(),
    );
    println!(
        "delivery pause (longest time without any delivery): before any kill {:.2} s; after \
         killing RabbitMQ node liaison{victim}, the queue leader, {:.2} s (from {:.2} s after \
         the kill; new leader elected within {:.1} s, both instances ready within {:.1} s); after \
         killing liaison instance B {:.2} s (from {:.2} s after the kill)",
        steady.as_secs_f64(),
        node_pause.as_secs_f64(),
        node_pause_from.as_secs_f64(),
        leader_elected.as_secs_f64(),
        instances_ready.as_secs_f64(),
        instance_pause.as_secs_f64(),
        instance_pause_from.as_secs_f64(),
    );
    println!(
        "in flight at a kill, delivered by: {:.2} s after the node kill, {:.2} s after the \
         instance kill; slowest lead from 202 to its recipients {:.2} s ({slowest_context}); \
         the database grew by {:.1} MB ({} bytes per accepted lead of {} bytes); whole test \
         {:.1} s",
        node_caught_up.as_secs_f64(),
        instance_caught_up.as_secs_f64(),
        slowest.as_secs_f64(),
        database_growth as f64 / 1e6,
        database_growth / i64::try_from(MESSAGES).unwrap_or(1),
        lead_bytes,
        started.elapsed().as_secs_f64()
    );
    println!("liaison ledger verify: {}", verify_text.trim());

    assert_eq!(lost, 0, "accepted leads missing from a recipient queue");
    assert_eq!(invented, 0, "deliveries of leads that were never accepted");
    assert_eq!(mismatched_ids, 0, "a redelivery carried another message id");
    assert_eq!(
        usize::try_from(outbox_rows).unwrap_or(0),
        expected.len(),
        "one outbox row per accepted recipient"
    );
    assert!(
        verify.status.success(),
        "liaison ledger verify failed: {verify_text}"
    );

    drop(instance_a);
    drop(instance_b);
    world.cleanup().await;
    drop(cluster);
}
