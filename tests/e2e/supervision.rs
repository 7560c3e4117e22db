//! Supervisory copies through the running broker: a sender that narrows a criminal case
//! transfer to the police alone still reaches the procuratorate, the `202` says so, and
//! the procuratorate can pull the transfer from its own inbox.

use std::time::Duration;

use liaison_tests::{World, repo_root};
use serde_json::{Value, json};
use uuid::Uuid;

fn transfer(caseref: &str, recipients: &[&str]) -> Value {
    let dir = repo_root().join("schemas/case.transfer.v1/valid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut event: Value = serde_json::from_slice(&std::fs::read(&files[0]).unwrap()).unwrap();
    event["id"] = json!(Uuid::now_v7().to_string());
    event["source"] = json!("urn:liaison:agency:eco");
    event["caseref"] = json!(caseref);
    event["recipients"] = json!(recipients);
    event
}

#[tokio::test]
async fn a_transfer_narrowed_to_the_police_still_reaches_the_procuratorate() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");

    let event = transfer("SD-SUPERVISED-1", &["police"]);
    let answer = eco.submit(&event).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let recipients: Vec<(&str, &str)> = answer.body["recipients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["agency"].as_str().unwrap(), r["role"].as_str().unwrap()))
        .collect();
    assert_eq!(recipients, vec![("police", "to"), ("procuratorate", "cc")]);

    let procuratorate = world.client(&broker, "procuratorate");
    let pulled = procuratorate.pull(20, 10).await.unwrap();
    let deliveries = pulled.body["deliveries"].as_array().unwrap();
    assert_eq!(deliveries.len(), 1, "{}", pulled.body);
    assert_eq!(deliveries[0]["message_id"], event["id"]);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
