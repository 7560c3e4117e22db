//! Administrators trace a case over HTTPS; other agencies may not.

use std::time::Duration;

use liaison_devtools::demo::{lead_event, receipt_event};
use liaison_tests::{World, code};
use uuid::Uuid;

#[tokio::test]
async fn an_administrator_traces_a_case_and_an_agency_may_not() {
    let mut world = World::new().await;
    world.config.admins = vec![code("gov")];
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let procuratorate = world.client(&broker, "procuratorate");
    let gov = world.client(&broker, "gov");

    let lead = lead_event("SD-TRACE-0001");
    let lead_id = Uuid::parse_str(lead["id"].as_str().unwrap()).unwrap();
    assert_eq!(eco.submit(&lead).await.unwrap().status, 202);
    let receipt = receipt_event("SD-TRACE-0001", lead_id);
    assert_eq!(procuratorate.submit(&receipt).await.unwrap().status, 202);

    let traced = gov.get("/v1/trace/SD-TRACE-0001").await.unwrap();
    assert_eq!(traced.status, 200, "{}", traced.body);
    let entries = traced.body["entries"].as_array().unwrap();
    let seqs: Vec<u64> = entries.iter().map(|e| e["seq"].as_u64().unwrap()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "ledger order: {seqs:?}"
    );
    let accepted: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "message.accepted")
        .map(|e| e["message"].as_str().unwrap())
        .collect();
    assert_eq!(
        accepted,
        vec![
            lead["id"].as_str().unwrap(),
            receipt["id"].as_str().unwrap()
        ]
    );

    // By message id: the lead and the receipt that answers it.
    let by_id = gov.get(&format!("/v1/trace/{lead_id}")).await.unwrap();
    assert_eq!(by_id.status, 200);
    assert!(
        by_id.body["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["message"] == receipt["id"])
    );

    let refused = eco.get("/v1/trace/SD-TRACE-0001").await.unwrap();
    assert_eq!(
        (refused.status, refused.body["code"].as_str()),
        (403, Some("forbidden"))
    );
    let unknown = gov.get("/v1/trace/SD-NO-SUCH-CASE").await.unwrap();
    assert_eq!(
        (unknown.status, unknown.body["code"].as_str()),
        (404, Some("not_found"))
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
