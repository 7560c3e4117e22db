//! What an agency must not learn from the broker's answers: another agency's ledger
//! entries through a conflicting id, and the internals of the services behind the broker.

use std::time::Duration;

use liaison_devtools::demo::lead_event;
use liaison_tests::{World, code};
use serde_json::json;

#[tokio::test]
async fn an_id_taken_by_another_agency_is_a_conflict_that_reveals_nothing_of_the_original() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let market = world.client(&broker, "market");

    let lead = lead_event("SD-LEAK-409");
    let first = eco.submit(&lead).await.unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    let original_seq = first.body["seq"].as_u64().unwrap();

    // Another agency guesses (or copies) the id of eco's message.
    let mut copied = lead.clone();
    copied["source"] = json!(code("market").urn());
    let conflict = market.submit(&copied).await.unwrap();
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_eq!(conflict.body["code"], "id_conflict");
    let detail = conflict.body["detail"].as_str().unwrap();
    // The id market itself sent may be repeated; any other number may not.
    let without_id = detail.replace(lead["id"].as_str().unwrap(), "");
    let numbers: Vec<&str> = without_id.split(|c: char| !c.is_ascii_digit()).collect();
    assert!(
        !numbers.contains(&original_seq.to_string().as_str()) && !detail.contains("entry"),
        "the conflict tells market where eco's message is in the ledger: {detail}"
    );
    // The rejection itself is recorded, and market may know where: it is its own entry.
    let rejection_seq = conflict.body["ledger_seq"].as_u64().unwrap();
    assert_ne!(rejection_seq, original_seq);

    // Eco, reusing its own id with other bytes, is told which entry holds its message.
    let mut altered = lead.clone();
    altered["data"]["summary"] = json!("另一条线索");
    let own = eco.submit(&altered).await.unwrap();
    assert_eq!(own.status, 409, "{}", own.body);
    let detail = own.body["detail"].as_str().unwrap();
    assert!(
        detail.contains(&format!("ledger entry {original_seq}")),
        "the sender may learn where its own message is: {detail}"
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn an_agency_removed_from_the_registry_is_refused_on_every_route() {
    let world = World::new().await;
    // A certificate the CA issued to an agency the registry no longer lists (its entry was
    // removed; its certificate has not expired and was not revoked).
    let layout = world.layout();
    let retired = code("retired");
    let now = time::OffsetDateTime::now_utc();
    let (cert, key) = liaison_pki::issue_agency_cert(
        &layout.dir,
        &retired,
        now - time::Duration::hours(1),
        now + time::Duration::days(30),
    )
    .unwrap();
    std::fs::write(layout.agency_cert(&retired), cert).unwrap();
    std::fs::write(layout.agency_key(&retired), key).unwrap();
    let broker = world.start().await;
    let client = world.client(&broker, "retired");

    for (what, answer) in [
        ("inbox", client.pull(0, 10).await.unwrap()),
        ("ack", client.ack(1).await.unwrap()),
        ("schemas", client.get("/v1/schemas").await.unwrap()),
        (
            "checkpoint",
            client.get("/v1/checkpoints/latest").await.unwrap(),
        ),
    ] {
        assert_eq!(answer.status, 403, "{what}: {}", answer.body);
        assert_eq!(answer.body["code"], "unknown_agency", "{what}");
    }
    // A submission is refused with the same code, and the refusal is recorded.
    let mut lead = lead_event("SD-RETIRED");
    lead["source"] = json!(retired.urn());
    let submitted = client.submit(&lead).await.unwrap();
    assert_eq!(submitted.status, 403, "{}", submitted.body);
    assert_eq!(submitted.body["code"], "unknown_agency");
    assert!(submitted.body["ledger_seq"].as_u64().is_some());

    // A registered agency is served as before.
    let eco = world.client(&broker, "eco");
    assert_eq!(eco.pull(0, 10).await.unwrap().status, 200);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
