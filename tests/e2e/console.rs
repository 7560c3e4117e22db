//! The administrators' console in a real headless Chromium, presenting the agency's
//! client certificate over the gateway's mutual TLS: an administrator opens the overview,
//! searches a case reference, opens the case's timeline, reveals a masked field (and the
//! ledger then holds the reveal), redrives a dead letter (recorded with the
//! administrator's agency) and verifies an inclusion proof in the page's own script; every
//! page renders in Chinese and in English; an agency that is no administrator gets 403.
//! Screenshots of each page are saved under `target/console-screenshots/`.

use std::time::Duration;

use liaison_core::{EntryKind, Registry};
use liaison_devtools::demo::{lead_event, receipt_event};
use liaison_ledger::TraceKey;
use liaison_tests::browser::{Browser, screenshot_dir};
use liaison_tests::{World, code, eventually, repo_root};
use serde_json::json;
use uuid::Uuid;

/// A lead naming a suspected person: the personal data the console masks.
fn lead_with_person(caseref: &str) -> serde_json::Value {
    let mut lead = lead_event(caseref);
    lead["data"]["suspected_party"] = json!({
        "kind": "person",
        "name": "张三",
        "id_number": "620725197506152814",
        "phone": "13800001234",
    });
    lead
}

fn id_of(event: &serde_json::Value) -> Uuid {
    Uuid::parse_str(event["id"].as_str().unwrap()).unwrap()
}

#[tokio::test]
async fn an_administrator_works_the_console_in_a_browser_and_others_get_403() {
    liaison_tests::browser::require_tools();
    let mut world = World::new().await;
    world.config.admins = vec![code("gov")];
    world.config.relay.max_attempts = 2;
    world.config.relay.retry_base = Duration::from_millis(20);
    world.config.relay.retry_max = Duration::from_millis(50);
    world.config.relay.poll_interval = Duration::from_millis(50);
    world.config.ledger.checkpoint_interval = Duration::from_millis(200);
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let bus = world.bus().await;
    let origin = format!("https://127.0.0.1:{}", broker.https_addr.port());
    let eco = world.client(&broker, "eco");
    let procuratorate = world.client(&broker, "procuratorate");

    // A case delivered, pulled and acknowledged, then answered.
    let caseref = "SD-CONSOLE-1";
    let lead = lead_with_person(caseref);
    assert_eq!(eco.submit(&lead).await.unwrap().status, 202);
    let pulled = procuratorate.pull(20, 10).await.unwrap();
    let delivery = pulled.body["deliveries"][0]["delivery"].as_i64().unwrap();
    assert_eq!(procuratorate.ack(delivery).await.unwrap().status, 204);
    let receipt = receipt_event(caseref, id_of(&lead));
    assert_eq!(procuratorate.submit(&receipt).await.unwrap().status, 202);

    // A refused submission, for the rejections list.
    let mut refused = lead_event("SD-CONSOLE-REFUSED");
    refused["data"]["urgency"] = json!("whenever");
    assert_eq!(eco.submit(&refused).await.unwrap().status, 422);

    // A second case whose delivery dies: the procuratorate's queue is gone.
    world.delete_agency_queue("procuratorate");
    let dead_case = "SD-CONSOLE-DEAD";
    let doomed = lead_event(dead_case);
    assert_eq!(eco.submit(&doomed).await.unwrap().status, 202);
    eventually(
        "the doomed lead dead-lettered",
        Duration::from_secs(30),
        async || {
            let trace = ledger.trace(&TraceKey::Case(dead_case.into())).await.ok()?;
            trace
                .iter()
                .any(|e| e.kind == EntryKind::DeliveryDeadLettered)
                .then_some(())
        },
    )
    .await;

    let shots = screenshot_dir();
    let admin = Browser::start(&world.layout(), &code("gov"), &origin).await;

    // Overview.
    admin.goto(&format!("{origin}/console/")).await;
    admin.find("#overview").await;
    assert_eq!(admin.text("#who").await, "gov");
    assert_eq!(admin.text("#nav-overview").await, "概览");
    admin.find("#chart-per-day").await;
    admin.find("#chart-cases").await;
    assert_eq!(admin.text("#dead-count").await, "1");
    admin.fit_page().await;
    admin.screenshot(&shots, "zh-overview").await;

    // Search by case reference, then the case's timeline.
    admin.goto(&format!("{origin}/console/search")).await;
    admin.type_into("#caseref", caseref).await;
    admin.click("#search-submit").await;
    let results = admin.text("#results").await;
    assert!(results.contains(&id_of(&lead).to_string()), "{results}");
    assert!(results.contains(&id_of(&receipt).to_string()), "{results}");
    admin.screenshot(&shots, "zh-search").await;
    admin.click(".case-link").await;
    admin.find("#case").await;
    assert!(admin.text("h1").await.contains(caseref));
    let timeline = admin.source().await;
    assert!(
        timeline.contains("class=\"step acknowledged\""),
        "the acknowledged lead is drawn so: {timeline}"
    );
    assert!(timeline.contains(&format!("/console/messages/{}", id_of(&receipt))));
    admin.fit_page().await;
    admin.screenshot(&shots, "zh-case").await;

    // The lead's page: its personal data masked until revealed, and the reveal recorded.
    let link = admin
        .attribute("a.step.acknowledged", "href")
        .await
        .expect("each step links to its message");
    admin.goto(&format!("{origin}{link}")).await;
    let masked = admin.text("#payload").await;
    assert!(
        masked.contains("张*") && !masked.contains("张三"),
        "{masked}"
    );
    assert!(masked.contains("6207**********2814"), "{masked}");
    assert!(masked.contains("138****1234"), "{masked}");
    admin.fit_page().await;
    admin.screenshot(&shots, "zh-message").await;
    admin.click("#reveal").await;
    admin.accept_dialog().await;
    let shown = admin.wait_for_text("#payload", "张三").await;
    assert!(shown.contains("620725197506152814"), "{shown}");
    admin.screenshot(&shots, "zh-message-revealed").await;
    let trace = ledger
        .trace(&TraceKey::Message(id_of(&lead)))
        .await
        .unwrap();
    let reveal = trace
        .iter()
        .find(|e| e.kind == EntryKind::MessageRevealed)
        .expect("the reveal is in the ledger");
    assert_eq!(reveal.agency, Some(code("gov")));
    assert_eq!(reveal.message, Some(id_of(&lead)));
    let fields = reveal.detail["fields"].as_array().unwrap();
    assert!(
        fields.contains(&json!("/data/suspected_party/name")),
        "{fields:?}"
    );

    // The dead letter, redriven from the page once the queue is back.
    let registry = Registry::load(&repo_root().join("deploy/demo/agencies.toml")).unwrap();
    bus.declare_topology(registry.codes()).await.unwrap();
    admin.goto(&format!("{origin}/console/deadletters")).await;
    let dead = admin.text("#dead").await;
    assert!(dead.contains(&id_of(&doomed).to_string()), "{dead}");
    let rejections = admin.text("#rejections").await;
    assert!(
        rejections.contains("payload_invalid") && rejections.contains("/data/urgency"),
        "{rejections}"
    );
    admin.fit_page().await;
    admin.screenshot(&shots, "zh-deadletters").await;
    admin.click("button.redrive").await;
    admin.accept_dialog().await;
    let outcome = admin.text("#redrive-outcome").await;
    assert!(outcome.contains("已重新投递: 1"), "{outcome}");
    admin.find("#no-dead").await;
    let trace = ledger
        .trace(&TraceKey::Case(dead_case.into()))
        .await
        .unwrap();
    let redriven = trace
        .iter()
        .find(|e| e.kind == EntryKind::DeliveryRedriven)
        .expect("the redrive is in the ledger");
    assert_eq!(redriven.detail["by"], "gov");
    admin.screenshot(&shots, "zh-deadletters-redriven").await;

    // An inclusion proof verified by the page's own script.
    let seq = trace[0].seq;
    eventually(
        "a checkpoint covering the lead",
        Duration::from_secs(30),
        async || {
            let latest = ledger.latest_checkpoint().await.ok()??;
            (latest.tree_size > seq).then_some(())
        },
    )
    .await;
    admin
        .goto(&format!("{origin}/console/ledger?seq={seq}"))
        .await;
    admin.click("#verify").await;
    let verdict = admin.wait_for_text("#verify-result", "验证通过").await;
    assert_eq!(
        admin
            .attribute("#verify-result", "data-verified")
            .await
            .as_deref(),
        Some("true"),
        "{verdict}"
    );
    let checkpoints = ledger.checkpoints().await.unwrap();
    let (first, last) = (
        checkpoints[0].tree_size,
        checkpoints.last().unwrap().tree_size,
    );
    admin.fit_page().await;
    admin.screenshot(&shots, "zh-ledger").await;
    admin
        .goto(&format!("{origin}/console/ledger?from={first}&to={last}"))
        .await;
    assert_eq!(
        admin
            .attribute("#consistency-result", "class")
            .await
            .as_deref(),
        Some("ok"),
        "{}",
        admin.text("#consistency-result").await
    );

    // The same pages in English, the language kept once chosen.
    admin.goto(&format!("{origin}/console/?lang=en")).await;
    assert_eq!(admin.text("#nav-overview").await, "Overview");
    let pages = [
        ("overview", "/console/".to_owned()),
        ("search", format!("/console/search?caseref={caseref}")),
        ("case", format!("/console/cases/{caseref}")),
        ("message", link.clone()),
        ("deadletters", "/console/deadletters".to_owned()),
        ("ledger", format!("/console/ledger?seq={seq}")),
    ];
    for (name, path) in &pages {
        admin.goto(&format!("{origin}{path}")).await;
        assert_eq!(admin.text("#nav-search").await, "Search", "{path}");
        let html = admin.source().await;
        assert!(
            !html.contains("检索"),
            "{path} shows a Chinese label in English"
        );
        admin.fit_page().await;
        admin.screenshot(&shots, &format!("en-{name}")).await;
    }
    admin.click("#verify").await;
    admin.wait_for_text("#verify-result", "Verified").await;
    admin.close().await;

    // Another agency's certificate: the same console, refused.
    let outsider = Browser::start(&world.layout(), &code("eco"), &origin).await;
    outsider.goto(&format!("{origin}/console/")).await;
    assert!(outsider.text("#forbidden").await.starts_with("403"));
    assert!(!outsider.source().await.contains("chart-per-day"));
    outsider.screenshot(&shots, "zh-forbidden").await;
    outsider.close().await;
    for path in [
        "/console/",
        "/console/search?caseref=SD-CONSOLE-1",
        "/console/ledger",
    ] {
        assert_eq!(eco.get(path).await.unwrap().status, 403, "{path}");
    }
    let revealing = eco
        .post_empty(&format!("/console/messages/{}/reveal", id_of(&lead)))
        .await
        .unwrap();
    assert_eq!(revealing.status, 403);
    let reveals = ledger
        .trace(&TraceKey::Message(id_of(&lead)))
        .await
        .unwrap()
        .iter()
        .filter(|e| e.kind == EntryKind::MessageRevealed)
        .count();
    assert_eq!(reveals, 1, "a refused reveal records nothing");

    if std::env::var_os("LIAISON_CONSOLE_DOCS").is_some() {
        let docs = repo_root().join("docs/console");
        std::fs::create_dir_all(&docs).unwrap();
        for entry in std::fs::read_dir(&shots).unwrap().flatten() {
            std::fs::copy(entry.path(), docs.join(entry.file_name())).unwrap();
        }
    }

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

/// The console's pages on a ledger of at least 100,000 entries, timed from an
/// administrator's HTTPS client (mutual TLS, one HTTP/2 connection): p50 and p99 per page.
/// Run alone and in release mode; the figures are in docs/performance.md:
/// `cargo test --release -p liaison-tests --test e2e console_pages -- --ignored --nocapture`
#[tokio::test]
#[ignore = "a benchmark: fills a ledger of 100,000 entries (about a minute), run on demand"]
async fn console_pages_on_a_ledger_of_100_000_entries() {
    use futures::StreamExt;
    use std::time::Instant;

    const TARGET_ENTRIES: u64 = 100_000;
    const SAMPLES: usize = 50;
    let mut world = World::new().await;
    world.config.admins = vec![code("gov")];
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let eco = world.client(&broker, "eco");
    let procuratorate = world.client(&broker, "procuratorate");
    let gov = world.client(&broker, "gov");

    // Leads, each opening a case and delivered (two entries); every fourth answered with a
    // receipt (two more); every fiftieth submission refused (one).
    let started = Instant::now();
    let mut round = 0u64;
    let mut sample_lead = None;
    while ledger.size().await.unwrap() < TARGET_ENTRIES {
        let batch: Vec<u64> = (round * 2000..(round + 1) * 2000).collect();
        round += 1;
        let answers: Vec<(u64, serde_json::Value, u16)> = futures::stream::iter(batch)
            .map(|i| {
                let eco = &eco;
                async move {
                    let mut lead = lead_with_person(&format!("SD-BENCH-{i:06}"));
                    if i % 50 == 49 {
                        lead["data"]["urgency"] = json!("not-an-urgency");
                    }
                    let status = eco.submit(&lead).await.map(|a| a.status).unwrap_or(0);
                    (i, lead, status)
                }
            })
            .buffer_unordered(64)
            .collect()
            .await;
        let receipts: Vec<serde_json::Value> = answers
            .iter()
            .filter(|(i, _, status)| *status == 202 && i % 4 == 0)
            .map(|(i, lead, _)| receipt_event(&format!("SD-BENCH-{i:06}"), id_of(lead)))
            .collect();
        futures::stream::iter(receipts)
            .map(|receipt| {
                let procuratorate = &procuratorate;
                async move { procuratorate.submit(&receipt).await.map(|a| a.status) }
            })
            .buffer_unordered(64)
            .collect::<Vec<_>>()
            .await;
        if sample_lead.is_none() {
            sample_lead = answers
                .iter()
                .find(|(i, _, status)| *status == 202 && i % 4 == 0)
                .map(|(_, lead, _)| lead.clone());
        }
    }
    let entries = ledger.size().await.unwrap();
    println!(
        "filled {entries} entries in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let lead = sample_lead.unwrap();
    let caseref = lead["caseref"].as_str().unwrap().to_owned();
    let latest = eventually(
        "a checkpoint of the filled ledger",
        Duration::from_secs(30),
        async || {
            let latest = ledger.latest_checkpoint().await.ok()??;
            (latest.tree_size >= TARGET_ENTRIES).then_some(latest)
        },
    )
    .await;
    let first = ledger.checkpoints().await.unwrap()[0].tree_size;
    let page_two = {
        let page = gov.get("/console/search?sender=eco").await.unwrap();
        let html = page.body.as_str().unwrap_or_default().to_owned();
        let marker = "id=\"next-page\" href=\"";
        let at = html.find(marker).expect("a second page");
        html[at + marker.len()..]
            .split('"')
            .next()
            .unwrap()
            .replace("&amp;", "&")
            .replace("&#x2f;", "/")
    };
    let pages = [
        ("overview", "/console/".to_owned()),
        (
            "search by caseref",
            format!("/console/search?caseref={caseref}"),
        ),
        ("search by sender, page 2", page_two),
        (
            "search by type and day",
            format!(
                "/console/search?type=pil.lead.v1&from={}",
                time::OffsetDateTime::now_utc().date()
            ),
        ),
        ("case", format!("/console/cases/{caseref}")),
        ("message", format!("/console/messages/{}", id_of(&lead))),
        (
            "rejections and dead letters",
            "/console/deadletters".to_owned(),
        ),
        (
            "ledger with a proof",
            format!("/console/ledger?seq={}", latest.tree_size / 2),
        ),
        (
            "ledger consistency",
            format!("/console/ledger?from={first}&to={}", latest.tree_size),
        ),
    ];
    // What the overview's own queries cost, alone.
    let now = time::OffsetDateTime::now_utc();
    let week = now - time::Duration::days(7);
    let bus = world.bus().await;
    let queues: Vec<String> = Registry::load(&repo_root().join("deploy/demo/agencies.toml"))
        .unwrap()
        .codes()
        .map(liaison_bus::agency_queue)
        .collect();
    println!("| overview query | ms (median of 9) |\n|---|---|");
    macro_rules! timed {
        ($name:expr, $call:expr) => {{
            let mut times = Vec::new();
            for _ in 0..9 {
                let began = Instant::now();
                $call.await.unwrap();
                times.push(began.elapsed().as_secs_f64() * 1000.0);
            }
            times.sort_by(f64::total_cmp);
            println!("| {} | {:.1} |", $name, times[4]);
        }};
    }
    timed!(
        "messages per day and type, 14 days",
        ledger.messages_per_day(now - time::Duration::days(14))
    );
    timed!(
        "open and overdue cases per agency",
        ledger.cases_per_agency(now)
    );
    timed!(
        "rejections by code, 7 days",
        ledger.rejections_by_code(week)
    );
    timed!("dead deliveries", ledger.dead_count());
    timed!("latest checkpoint", ledger.latest_checkpoint());
    timed!(
        "root at the checkpoint's size",
        ledger.root_at(latest.tree_size)
    );
    timed!("queue depths (20 queues)", bus.queue_depths(&queues));
    // The overview's aggregates over the whole period are computed by the first overview
    // after start (inline), then at most every 10 s in the background.
    let began = Instant::now();
    assert_eq!(gov.get("/console/").await.unwrap().status, 200);
    println!(
        "first overview after start (aggregates computed inline): {:.1} ms",
        began.elapsed().as_secs_f64() * 1000.0
    );
    println!("| page | p50 ms | p99 ms | max ms |\n|---|---|---|---|");
    let mut worst = 0.0f64;
    for (name, path) in &pages {
        let mut times = Vec::with_capacity(SAMPLES);
        for _ in 0..SAMPLES {
            let began = Instant::now();
            let answer = gov.get(path).await.unwrap();
            times.push(began.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        }
        times.sort_by(f64::total_cmp);
        let at = |q: f64| times[((times.len() as f64 - 1.0) * q).round() as usize];
        println!(
            "| {name} | {:.1} | {:.1} | {:.1} |",
            at(0.5),
            at(0.99),
            times[times.len() - 1]
        );
        worst = worst.max(at(0.99));
    }
    println!("entries: {entries}; worst p99: {worst:.1} ms");
    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
