//! Supervision through the running broker: a sender that narrows a criminal case transfer
//! to the police alone still reaches the procuratorate, the `202` says so, and the
//! procuratorate can pull the transfer from its own inbox; an answer must be of a type that
//! answers its original, and only the original's addressees answer it (copies are
//! informed, they do not reply), each refusal recorded in the ledger.

use std::time::Duration;

use liaison_core::{Entry, EntryKind};
use liaison_tests::{World, answering, repo_root};
use serde_json::{Value, json};

/// The catalogue's example `file` of `type_`, sent by `sender` in case `caseref`.
fn example(type_: &str, file: &str, sender: &str, caseref: &str) -> Value {
    let mut event = liaison_tests::example(type_, file, sender);
    event["caseref"] = json!(caseref);
    event
}

fn transfer(caseref: &str, recipients: &[&str]) -> Value {
    let dir = repo_root().join("schemas/case.transfer.v1/valid");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut event = example("case.transfer.v1", &files[0], "eco", caseref);
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

#[tokio::test]
async fn answers_are_bound_to_their_question_and_only_addressees_answer() {
    let world = World::new().await;
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let client = |agency: &str| world.client(&broker, agency);
    let case = "SD-ANSWERS-BOUND";

    // A high-impact recommendation to water, copied to the county government.
    let mut recommendation = example(
        "procuratorial.recommendation.v1",
        "river-high-impact.json",
        "procuratorate",
        case,
    );
    recommendation["recipients"] = json!(["water"]);
    let answer = client("procuratorate")
        .submit(&recommendation)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert_eq!(
        answer.body["recipients"][1]["agency"], "gov",
        "{}",
        answer.body
    );

    let reply = || {
        example(
            "procuratorial.recommendation-reply.v1",
            "rectified.json",
            "water",
            case,
        )
    };
    // The copied county government and the recommendation's own sender may not reply.
    for sender in ["gov", "procuratorate"] {
        let mut event = answering(reply(), &recommendation);
        event["source"] = json!(format!("urn:liaison:agency:{sender}"));
        let refused = client(sender).submit(&event).await.unwrap();
        assert_eq!(refused.status, 403, "{sender}: {}", refused.body);
        assert_eq!(refused.body["code"], "not_an_addressee", "{}", refused.body);
        let seq = refused.body["ledger_seq"]
            .as_u64()
            .expect("refusal recorded");
        let stored = ledger.entries(seq, 1).await.unwrap().remove(0);
        let entry = Entry::from_canonical(&stored.entry).unwrap();
        assert_eq!(entry.kind, EntryKind::MessageRejected);
        assert_eq!(entry.detail["code"], "not_an_addressee", "{}", entry.detail);
    }

    // A file-access response does not answer a recommendation.
    let mut wrong = example(
        "file.access-response.v1",
        "files-provided.json",
        "water",
        case,
    );
    wrong = answering(wrong, &recommendation);
    let refused = client("water").submit(&wrong).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(
        refused.body["code"], "answer_type_mismatch",
        "{}",
        refused.body
    );
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .contains("file.access-request.v1"),
        "{}",
        refused.body
    );
    assert!(refused.body["ledger_seq"].as_u64().is_some());

    // The addressee replies; the reply goes to the procuratorate and the copy.
    let accepted = client("water")
        .submit(&answering(reply(), &recommendation))
        .await
        .unwrap();
    assert_eq!(accepted.status, 202, "{}", accepted.body);

    // Every copy signs a receipt, like any recipient.
    let mut receipt = example("receipt.v1", "procuratorate-receipt.json", "gov", case);
    receipt = answering(receipt, &recommendation);
    let signed = client("gov").submit(&receipt).await.unwrap();
    assert_eq!(signed.status, 202, "{}", signed.body);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
