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
    let report = ledger.verify(&key, None, &mut |_| {}).await.unwrap();
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
