//! What an agency must not learn from the broker's answers: another agency's ledger
//! entries through a conflicting id, and the internals of the services behind the broker.

use std::time::Duration;

use liaison_cli::demo::lead_event;
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
    let numbers: Vec<&str> = detail.split(|c: char| !c.is_ascii_digit()).collect();
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
