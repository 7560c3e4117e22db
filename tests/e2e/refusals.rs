//! Refusals record only what passed its checks, attach to a message or case only for its
//! parties, and never hold up other agencies' submissions; read access follows the route
//! the ledger recorded, not the outbox.

use std::time::Duration;

use futures::future::join_all;
use liaison_core::Entry;
use liaison_devtools::demo::lead_event;
use liaison_tests::{World, code};
use serde_json::{Value, json};
use sqlx::Connection;
use uuid::Uuid;

/// A valid lead from `agency` (any agency may send one; it goes to the procuratorate).
fn lead_from(agency: &str, caseref: &str) -> Value {
    let mut lead = lead_event(caseref);
    lead["source"] = json!(code(agency).urn());
    lead
}

/// The stored entry at `seq`, parsed, and its bytes.
async fn entry(world: &World, seq: u64) -> (Entry, Vec<u8>) {
    let ledger = world.ledger().await;
    let stored = ledger.entries(seq, 1).await.unwrap();
    let bytes = stored[0].entry.to_vec();
    (Entry::from_canonical(&bytes).unwrap(), bytes)
}

/// A 10 KiB case reference that does not compress below PostgreSQL's index row limit.
fn huge_caseref() -> String {
    let mut s = String::from("SD-");
    while s.len() < 10 * 1024 {
        s.push_str(&Uuid::new_v4().simple().to_string());
    }
    s
}

#[tokio::test]
async fn hostile_case_references_get_a_clean_refusal_recorded_without_them() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let others = ["police", "market", "natres", "agri"].map(|a| world.client(&broker, a));

    let hostile = [
        "SD-\u{0}-NUL".to_owned(),
        huge_caseref(),
        "SD-\u{7}\u{1b}[31m-\r\n".to_owned(),
    ];
    // Each hostile submission goes in with other agencies' valid leads, so they share
    // batches of the group committer.
    let round = |caseref: String| {
        let eco = &eco;
        let others = &others;
        async move {
            let hostile_lead = lead_from("eco", &caseref);
            let bad = eco.submit(&hostile_lead);
            let good = join_all(others.iter().enumerate().map(|(i, client)| {
                let agency = ["police", "market", "natres", "agri"][i];
                let lead = lead_from(agency, &format!("SD-GOOD-{i}"));
                async move { client.submit(&lead).await.unwrap() }
            }));
            let (bad, good) = tokio::join!(bad, good);
            (caseref, bad.unwrap(), good)
        }
    };
    for (caseref, bad, good) in join_all(hostile.into_iter().map(round)).await {
        let shown = caseref.chars().take(20).collect::<String>();
        assert_eq!(
            (bad.status, bad.body["code"].as_str()),
            (422, Some("envelope_invalid")),
            "{shown:?}: {}",
            bad.body
        );
        let text = bad.body.to_string().to_lowercase();
        for leak in ["postgres", "database", "sqlx", "sqlstate"] {
            assert!(!text.contains(leak), "{shown:?}: {leak} in {}", bad.body);
        }
        for answer in &good {
            assert_eq!(answer.status, 202, "{}", answer.body);
        }
        let seq = bad.body["ledger_seq"]
            .as_u64()
            .expect("the refusal is recorded");
        let (rejected, bytes) = entry(&world, seq).await;
        assert_eq!(rejected.kind, liaison_core::EntryKind::MessageRejected);
        assert_eq!(rejected.caseref, None, "{shown:?}");
        assert!(rejected.detail.get("claimed").is_none());
        // The schema errors may quote the value, but only so much of it.
        assert!(
            bytes.len() < 4096,
            "{shown:?}: entry of {} bytes",
            bytes.len()
        );
    }

    // The ledger verifies, copies included.
    let ledger = world.ledger().await;
    let key = liaison_core::checkpoint::CheckpointVerifier::new(
        world.config.ledger.origin.clone(),
        liaison_pki::read_ledger_public_key(&world.layout()).unwrap(),
    )
    .unwrap();
    let report = ledger.verify(&key, None, &[], &mut |_| {}).await.unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn a_rejection_naming_another_agencys_message_stays_out_of_its_trace() {
    let mut world = World::new().await;
    world.config.admins = vec![code("gov")];
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let police = world.client(&broker, "police");
    let gov = world.client(&broker, "gov");

    let lead = lead_from("eco", "SD-OWNED-0001");
    let id = lead["id"].as_str().unwrap().to_owned();
    assert_eq!(eco.submit(&lead).await.unwrap().status, 202);

    // police reuses eco's message id and case reference: refused, recorded as a claim.
    let mut squat = lead_from("police", "SD-OWNED-0001");
    squat["id"] = json!(id);
    let refused = police.submit(&squat).await.unwrap();
    assert_eq!(refused.status, 409, "{}", refused.body);
    let seq = refused.body["ledger_seq"].as_u64().unwrap();
    let (rejected, _) = entry(&world, seq).await;
    assert_eq!(
        (rejected.message, rejected.caseref.as_deref()),
        (None, None)
    );
    assert_eq!(
        rejected.detail["claimed"],
        json!({ "message": id, "caseref": "SD-OWNED-0001" })
    );
    // …and a refusal that only names the case (an invalid payload) likewise.
    let mut invalid = lead_from("police", "SD-OWNED-0001");
    invalid["data"]["urgency"] = json!("whenever");
    let refused = police.submit(&invalid).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);

    // eco's own refused submission in its own case does join the case.
    let mut own = lead_from("eco", "SD-OWNED-0001");
    own["data"]["urgency"] = json!("whenever");
    let own_refused = eco.submit(&own).await.unwrap();
    assert_eq!(own_refused.status, 422, "{}", own_refused.body);

    for key in [id.as_str(), "SD-OWNED-0001"] {
        let traced = gov.get(&format!("/v1/trace/{key}")).await.unwrap();
        assert_eq!(traced.status, 200, "{}", traced.body);
        let entries = traced.body["entries"].as_array().unwrap();
        assert!(
            entries.iter().all(|e| e["agency"] != "police"),
            "{key}: {entries:#?}"
        );
        if key.starts_with("SD-") {
            assert!(
                entries
                    .iter()
                    .any(|e| e["kind"] == "message.rejected" && e["agency"] == "eco"),
                "{entries:#?}"
            );
        }
    }

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn a_changed_outbox_recipient_opens_the_message_to_nobody_else() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let procuratorate = world.client(&broker, "procuratorate");
    let police = world.client(&broker, "police");

    let lead = lead_from("eco", "SD-OUTBOX-0001");
    let id = lead["id"].as_str().unwrap().to_owned();
    assert_eq!(eco.submit(&lead).await.unwrap().status, 202);

    // The outbox is working state: a database user that can write it changes the recipient.
    let mut conn = sqlx::PgConnection::connect(&world.config.database_url)
        .await
        .unwrap();
    let changed = sqlx::query(
        "UPDATE outbox SET recipient = 'police' WHERE message_id = $1::uuid AND recipient = 'procuratorate'",
    )
    .bind(&id)
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(changed.rows_affected(), 1);
    conn.close().await.ok();

    let path = format!("/v1/messages/{id}");
    let read = police.get(&path).await.unwrap();
    assert_eq!(
        (read.status, read.body["code"].as_str()),
        (404, Some("not_found")),
        "{}",
        read.body
    );
    let proof = police.get(&format!("{path}/proof")).await.unwrap();
    assert_eq!(proof.status, 404, "{}", proof.body);
    // The recipients the ledger recorded still read it.
    for client in [&eco, &procuratorate] {
        let read = client.get(&path).await.unwrap();
        assert_eq!(read.status, 200, "{}", read.body);
        assert_eq!(read.body["sender"], "eco");
    }

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

/// Every entry of the ledger, parsed.
async fn all_entries(ledger: &liaison_ledger::Ledger) -> Vec<Entry> {
    let mut entries = Vec::new();
    loop {
        let page = ledger
            .entries(entries.len() as u64 + 1, 1000)
            .await
            .unwrap();
        if page.is_empty() {
            return entries;
        }
        entries.extend(
            page.iter()
                .map(|stored| Entry::from_canonical(&stored.entry).unwrap()),
        );
    }
}

#[tokio::test]
async fn a_refusal_flood_grows_the_ledger_by_the_budget_and_one_summary_per_interval() {
    use liaison_core::{EntryKind, ManualClock};

    let mut world = World::new().await;
    world.config.limits.refusal_budget = 5;
    world.config.limits.refusal_interval = Duration::from_secs(2);
    let time = ManualClock::new(time::macros::datetime!(2026-12-01 09:00 UTC));
    let broker = world
        .start_with_clock(std::sync::Arc::new(time.clone()))
        .await;
    let ledger = world.ledger().await;
    let eco = world.client(&broker, "eco");
    let police = world.client(&broker, "police");
    let before = all_entries(&ledger).await.len();

    // 40 malformed submissions in one interval: every one answered 400, five recorded.
    let mut digests = Vec::new();
    for i in 0..40 {
        let body = format!("{{not json {i}").into_bytes();
        digests.push(hex::encode(liaison_core::audit::sha256(&body)));
        let answer = eco.submit_bytes(body).await.unwrap();
        assert_eq!(answer.status, 400, "{}", answer.body);
        assert_eq!(answer.body["code"], "malformed_json");
        assert_eq!(
            answer.body.get("ledger_seq").is_some(),
            i < 5,
            "refusal {i}: {}",
            answer.body
        );
    }
    // Another agency's budget is its own.
    let answer = police.submit_bytes(b"{".to_vec()).await.unwrap();
    assert!(answer.body["ledger_seq"].is_u64(), "{}", answer.body);
    let added = all_entries(&ledger).await.split_off(before);
    let eco_rejections = |entries: &[Entry]| {
        entries
            .iter()
            .filter(|e| e.kind == EntryKind::MessageRejected && e.agency == Some(code("eco")))
            .count()
    };
    assert_eq!(eco_rejections(&added), 5);
    assert!(
        added
            .iter()
            .all(|e| e.kind != EntryKind::RejectionsSummarized)
    );

    // The interval ends: its summary is recorded without any further request.
    time.advance(time::Duration::seconds(2));
    let summary = liaison_tests::eventually(
        "the interval's summary",
        Duration::from_secs(30),
        async || {
            all_entries(&ledger)
                .await
                .into_iter()
                .find(|e| e.kind == EntryKind::RejectionsSummarized)
        },
    )
    .await;
    assert_eq!(summary.agency, Some(code("eco")));
    assert_eq!(summary.detail["total"], 35);
    assert_eq!(summary.detail["codes"], json!({ "malformed_json": 35 }));
    assert_eq!(summary.detail["first_sha256"], digests[5]);
    assert_eq!(summary.detail["last_sha256"], digests[39]);
    assert_eq!(summary.detail["interval_start"], "2026-12-01T09:00:00Z");
    assert_eq!(
        (
            summary.detail["budget"].as_u64(),
            summary.detail["interval_seconds"].as_u64()
        ),
        (Some(5), Some(2))
    );
    let grown = all_entries(&ledger).await.len() - before;
    assert_eq!(
        grown,
        5 + 1 + 1,
        "eco's five, the police's one, one summary"
    );

    // A new interval, a new budget.
    let answer = eco.submit_bytes(b"{".to_vec()).await.unwrap();
    assert!(answer.body["ledger_seq"].is_u64(), "{}", answer.body);
    broker.shutdown(Duration::from_secs(10)).await;
    // The summary is an entry like any other: the whole ledger verifies.
    let verified = liaison_tests::process::liaison(&world, &["ledger", "verify"]);
    assert!(
        verified.status.success(),
        "{}",
        liaison_tests::process::text(&verified)
    );
    world.cleanup().await;
}
