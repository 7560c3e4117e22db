//! The answers an agency integrator relies on: idempotent resubmission, conflicts, and
//! problem documents that point at the failing fields.

use std::time::Duration;

use liaison_devtools::demo::{lead_event, receipt_event};
use liaison_tests::World;
use uuid::Uuid;

#[tokio::test]
async fn resubmitting_is_idempotent_and_reusing_an_id_is_a_conflict() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");

    let lead = lead_event("SD-IDEMPOTENT");
    let first = eco.submit(&lead).await.unwrap();
    assert_eq!(first.status, 202, "{}", first.body);
    assert_eq!(first.body["duplicate"], false);
    let again = eco.submit(&lead).await.unwrap();
    assert_eq!(again.status, 202);
    assert_eq!(
        again.body["seq"], first.body["seq"],
        "the same answer, not a new entry"
    );
    assert_eq!(again.body["recipients"], first.body["recipients"]);
    assert_eq!(again.body["duplicate"], true);

    let mut altered = lead.clone();
    altered["data"]["summary"] = serde_json::json!("另一条线索");
    let conflict = eco.submit(&altered).await.unwrap();
    assert_eq!(conflict.status, 409, "{}", conflict.body);
    assert_eq!(conflict.body["code"], "id_conflict");
    assert!(conflict.body["ledger_seq"].as_u64().is_some());

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn malformed_and_invalid_messages_get_problem_documents_with_pointers() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let procuratorate = world.client(&broker, "procuratorate");

    let malformed = eco
        .submit_bytes(b"{\"specversion\": ".to_vec())
        .await
        .unwrap();
    assert_eq!(
        (malformed.status, malformed.body["code"].as_str()),
        (400, Some("malformed_json"))
    );

    let mut lead = lead_event("SD-INVALID");
    lead["data"]["domain"] = serde_json::json!("astrology");
    lead["data"].as_object_mut().unwrap().remove("summary");
    let invalid = eco.submit(&lead).await.unwrap();
    assert_eq!(invalid.status, 422, "{}", invalid.body);
    assert_eq!(invalid.body["code"], "payload_invalid");
    let pointers: Vec<&str> = invalid.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert!(pointers.contains(&"/data/domain"), "{pointers:?}");
    assert!(
        pointers.iter().any(|p| p.starts_with("/data")),
        "{pointers:?}"
    );
    assert_eq!(
        invalid.body["errors"].as_array().unwrap().len(),
        2,
        "{}",
        invalid.body
    );

    let mut unknown = lead_event("SD-INVALID");
    unknown["type"] = serde_json::json!("pil.horoscope.v1");
    let answer = eco.submit(&unknown).await.unwrap();
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (422, Some("unknown_type"))
    );

    // A receipt must answer a message its sender received.
    let stray = receipt_event("SD-INVALID", Uuid::now_v7());
    let answer = procuratorate.submit(&stray).await.unwrap();
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (422, Some("unknown_original")),
        "{}",
        answer.body
    );

    // Not JSON at all, per the declared media type.
    let wrong_type = eco.post_empty("/v1/messages").await.unwrap();
    assert_eq!(
        (wrong_type.status, wrong_type.body["code"].as_str()),
        (415, Some("unsupported_media_type"))
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
