//! Cases through the running broker: liaison assigns a case reference to a message that
//! opens a matter and its answers inherit it; another reference, a stranger, a reserved
//! reference that names no case and a step the matter's state does not allow are each
//! refused and recorded; every flow of the county document walks from opening to closing
//! with the state checked after each message; and the case tables, dropped, are rebuilt
//! from the ledger's entries with the same states.

use std::time::Duration;

use liaison_client::AgencyClient;
use liaison_core::{Entry, EntryKind};
use liaison_tests::{World, answering, example, repo_root};
use serde_json::{Value, json};

/// The catalogue's example `file` of `type_` from `sender`, answering `original` when
/// given, naming `recipients` when given.
fn event(
    type_: &str,
    file: &str,
    sender: &str,
    original: Option<&Value>,
    recipients: Option<&[&str]>,
) -> Value {
    let mut event = example(type_, file, sender);
    if let Some(original) = original {
        event = answering(event, original);
    }
    if let Some(recipients) = recipients {
        event["recipients"] = json!(recipients);
    }
    event
}

async fn accepted(client: &AgencyClient, event: &Value) -> Value {
    let answer = client.submit(event).await.unwrap();
    assert_eq!(answer.status, 202, "{} {}", event["type"], answer.body);
    answer.body
}

/// The state of the case's first matter, as `reader` sees it.
async fn state(reader: &AgencyClient, caseref: &str) -> (String, bool) {
    let answer = reader.get(&format!("/v1/cases/{caseref}")).await.unwrap();
    assert_eq!(answer.status, 200, "{}", answer.body);
    (
        answer.body["state"].as_str().unwrap().to_owned(),
        answer.body["closed"].as_bool().unwrap(),
    )
}

#[tokio::test]
async fn an_assigned_case_reference_binds_the_answers_and_keeps_strangers_out() {
    let world = World::new().await;
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let client = |agency: &str| world.client(&broker, agency);
    let (eco, procuratorate, market) = (client("eco"), client("procuratorate"), client("market"));

    // A lead without a reference gets one: agency, year, number.
    let lead = event("pil.lead.v1", "sand-dump-minimal.json", "eco", None, None);
    let body = accepted(&eco, &lead).await;
    let caseref = body["caseref"]
        .as_str()
        .expect("an assigned caseref")
        .to_owned();
    assert!(
        caseref.starts_with("ECO-") && caseref.ends_with("-000001"),
        "{caseref}"
    );
    let second = accepted(
        &eco,
        &event(
            "pil.lead.v1",
            "river-pollution-full.json",
            "eco",
            None,
            None,
        ),
    )
    .await;
    assert!(
        second["caseref"].as_str().unwrap().ends_with("-000002"),
        "{second}"
    );
    // The accepted entry records the reference it assigned.
    let seq = body["seq"].as_u64().unwrap();
    let entry = Entry::from_canonical(&ledger.entries(seq, 1).await.unwrap()[0].entry).unwrap();
    assert_eq!(entry.caseref.as_deref(), Some(caseref.as_str()));
    assert_eq!(entry.detail["caseref_assigned"], true);
    assert_eq!(entry.detail["case"]["to"], "submitted");

    // The answer names no reference and inherits its original's; the recipient sees it.
    let decision = event(
        "pil.lead-decision.v1",
        "accept.json",
        "procuratorate",
        Some(&lead),
        None,
    );
    let answered = accepted(&procuratorate, &decision).await;
    assert_eq!(answered["caseref"], caseref.as_str(), "{answered}");
    let pulled = eco.pull(10, 10).await.unwrap();
    let decision_delivery = pulled.body["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["message_id"] == decision["id"])
        .cloned()
        .expect("the decision reaches eco");
    assert_eq!(decision_delivery["caseref"], caseref.as_str());
    assert_eq!(state(&eco, &caseref).await, ("accepted".to_owned(), false));

    // An answer naming another reference is refused.
    let mut elsewhere = event(
        "pil.lead-outcome.v1",
        "case-filed.json",
        "procuratorate",
        Some(&lead),
        None,
    );
    elsewhere["caseref"] = json!("SD-ANOTHER-CASE");
    let refused = procuratorate.submit(&elsewhere).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["code"], "caseref_mismatch", "{}", refused.body);
    assert!(refused.body["ledger_seq"].as_u64().is_some());

    // A stranger may not add to the case, nor read it, nor see it listed.
    let mut intruding = event(
        "pil.lead.v1",
        "sand-dump-minimal.json",
        "market",
        None,
        None,
    );
    intruding["caseref"] = json!(caseref);
    let refused = market.submit(&intruding).await.unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.body["code"], "not_a_party", "{}", refused.body);
    let seq = refused.body["ledger_seq"].as_u64().expect("recorded");
    let entry = Entry::from_canonical(&ledger.entries(seq, 1).await.unwrap()[0].entry).unwrap();
    assert_eq!(entry.kind, EntryKind::MessageRejected);
    assert_eq!(
        entry.caseref, None,
        "a stranger's refusal stays out of the case"
    );
    assert_eq!(entry.detail["claimed"]["caseref"], caseref.as_str());
    let hidden = market.get(&format!("/v1/cases/{caseref}")).await.unwrap();
    assert_eq!(hidden.status, 404, "{}", hidden.body);
    let listed = market.get("/v1/cases").await.unwrap();
    assert_eq!(listed.body["cases"], json!([]), "{}", listed.body);
    let listed = eco.get("/v1/cases?state=accepted").await.unwrap();
    let refs: Vec<&str> = listed.body["cases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["caseref"].as_str().unwrap())
        .collect();
    assert_eq!(refs, vec![caseref.as_str()], "{}", listed.body);

    // References of the assigned form are liaison's to hand out.
    let mut invented = event("pil.lead.v1", "sand-dump-minimal.json", "eco", None, None);
    invented["caseref"] = json!("ECO-2026-999999");
    let refused = eco.submit(&invented).await.unwrap();
    assert_eq!(refused.status, 422, "{}", refused.body);
    assert_eq!(refused.body["code"], "caseref_unknown", "{}", refused.body);

    // A second decision on an accepted lead is no step of the flow: 409, recorded with
    // the state it met.
    let again = event(
        "pil.lead-decision.v1",
        "decline.json",
        "procuratorate",
        Some(&lead),
        None,
    );
    let refused = procuratorate.submit(&again).await.unwrap();
    assert_eq!(refused.status, 409, "{}", refused.body);
    assert_eq!(
        refused.body["code"], "invalid_transition",
        "{}",
        refused.body
    );
    let seq = refused.body["ledger_seq"].as_u64().expect("recorded");
    let entry = Entry::from_canonical(&ledger.entries(seq, 1).await.unwrap()[0].entry).unwrap();
    assert_eq!(entry.kind, EntryKind::MessageRejected);
    assert_eq!(entry.detail["code"], "invalid_transition");
    assert_eq!(entry.detail["met"]["to"], "accepted", "{}", entry.detail);
    assert_eq!(entry.caseref.as_deref(), Some(caseref.as_str()));
    assert_eq!(state(&eco, &caseref).await, ("accepted".to_owned(), false));

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

/// One message of a walk: who sends which example, answering which earlier message of the
/// walk, to whom (named routes), and the state the matter is in afterwards.
struct Step {
    sender: &'static str,
    type_: &'static str,
    file: &'static str,
    answers: Option<usize>,
    recipients: Option<&'static [&'static str]>,
    state: &'static str,
}

const fn step(
    sender: &'static str,
    type_: &'static str,
    file: &'static str,
    answers: Option<usize>,
    state: &'static str,
) -> Step {
    Step {
        sender,
        type_,
        file,
        answers,
        recipients: None,
        state,
    }
}

const fn to(mut step: Step, recipients: &'static [&'static str]) -> Step {
    step.recipients = Some(recipients);
    step
}

/// Every flow of the county document, from the message that opens it to a closed state.
fn walks() -> Vec<(&'static str, Vec<Step>)> {
    vec![
        (
            "lead",
            vec![
                step(
                    "eco",
                    "pil.lead.v1",
                    "sand-dump-minimal.json",
                    None,
                    "submitted",
                ),
                step(
                    "procuratorate",
                    "receipt.v1",
                    "procuratorate-receipt.json",
                    Some(0),
                    "received",
                ),
                step(
                    "procuratorate",
                    "pil.lead-decision.v1",
                    "more-evidence.json",
                    Some(0),
                    "more_evidence_requested",
                ),
                step(
                    "eco",
                    "pil.lead-supplement.v1",
                    "measurement.json",
                    Some(2),
                    "evidence_supplemented",
                ),
                step(
                    "procuratorate",
                    "pil.lead-decision.v1",
                    "accept.json",
                    Some(0),
                    "accepted",
                ),
                step(
                    "procuratorate",
                    "pil.lead-outcome.v1",
                    "case-filed.json",
                    Some(0),
                    "concluded",
                ),
            ],
        ),
        (
            "transfer",
            vec![
                step(
                    "eco",
                    "case.transfer.v1",
                    "hazardous-waste-dumping.json",
                    None,
                    "transferred",
                ),
                // The procuratorate's copy signs for it: informed, the matter does not move.
                step(
                    "procuratorate",
                    "receipt.v1",
                    "procuratorate-receipt.json",
                    Some(0),
                    "transferred",
                ),
                step(
                    "police",
                    "receipt.v1",
                    "minimal-receipt.json",
                    Some(0),
                    "received",
                ),
                step(
                    "police",
                    "case.filing-decision.v1",
                    "not-filed.json",
                    Some(0),
                    "not_filed",
                ),
                step(
                    "eco",
                    "case.reconsideration-request.v1",
                    "hazardous-waste-reconsideration.json",
                    Some(3),
                    "reconsideration_requested",
                ),
                step(
                    "police",
                    "case.reconsideration-decision.v1",
                    "upheld.json",
                    Some(4),
                    "reconsideration_upheld",
                ),
                step(
                    "eco",
                    "filing.supervision-request.v1",
                    "after-reconsideration.json",
                    Some(5),
                    "supervision_requested",
                ),
                step(
                    "procuratorate",
                    "filing.reasons-demand.v1",
                    "at-agency-request.json",
                    Some(6),
                    "reasons_demanded",
                ),
                step(
                    "police",
                    "filing.reasons-statement.v1",
                    "survey-not-reviewed.json",
                    Some(7),
                    "reasons_stated",
                ),
                step(
                    "procuratorate",
                    "filing.notice.v1",
                    "survey-reviewed.json",
                    Some(8),
                    "filing_notified",
                ),
                step(
                    "police",
                    "case.filing-decision.v1",
                    "filed-on-notice.json",
                    Some(9),
                    "filed",
                ),
            ],
        ),
        (
            "transfer_supervision",
            vec![
                to(
                    step(
                        "procuratorate",
                        "transfer.supervision.v1",
                        "counterfeit-fertiliser.json",
                        None,
                        "urged",
                    ),
                    &["agri"],
                ),
                step(
                    "agri",
                    "transfer.supervision-reply.v1",
                    "will-transfer.json",
                    Some(0),
                    "promised",
                ),
                step(
                    "agri",
                    "transfer.supervision-reply.v1",
                    "transferred.json",
                    Some(0),
                    "transferred",
                ),
            ],
        ),
        (
            "opinion",
            vec![
                to(
                    step(
                        "procuratorate",
                        "procuratorial.opinion.v1",
                        "penalty-after-non-prosecution.json",
                        None,
                        "issued",
                    ),
                    &["eco"],
                ),
                step(
                    "eco",
                    "receipt.v1",
                    "minimal-receipt.json",
                    Some(0),
                    "received",
                ),
                step(
                    "eco",
                    "procuratorial.opinion-reply.v1",
                    "penalty-imposed.json",
                    Some(0),
                    "replied",
                ),
            ],
        ),
        (
            "recommendation",
            vec![
                to(
                    step(
                        "procuratorate",
                        "procuratorial.recommendation.v1",
                        "river-high-impact.json",
                        None,
                        "issued",
                    ),
                    &["water"],
                ),
                step(
                    "water",
                    "procuratorial.objection.v1",
                    "permit-already-granted.json",
                    Some(0),
                    "objected",
                ),
                step(
                    "procuratorate",
                    "procuratorial.objection-decision.v1",
                    "rejected.json",
                    Some(1),
                    "objection_rejected",
                ),
                step(
                    "water",
                    "procuratorial.recommendation-reply.v1",
                    "rectified.json",
                    Some(0),
                    "adopted",
                ),
            ],
        ),
        (
            "file_access",
            vec![
                to(
                    step(
                        "procuratorate",
                        "file.access-request.v1",
                        "wage-arrears-files.json",
                        None,
                        "requested",
                    ),
                    &["hrss"],
                ),
                step(
                    "hrss",
                    "file.access-response.v1",
                    "files-provided.json",
                    Some(0),
                    "provided",
                ),
            ],
        ),
        (
            "hotline",
            vec![
                step(
                    "hotline12345",
                    "hotline.record.v1",
                    "from-12345.json",
                    None,
                    "recorded",
                ),
                step(
                    "procuratorate",
                    "hotline.feedback.v1",
                    "resolved.json",
                    Some(0),
                    "closed",
                ),
            ],
        ),
        (
            "meeting",
            vec![to(
                step(
                    "gov",
                    "meeting.notice.v1",
                    "quarterly-meeting.json",
                    None,
                    "notified",
                ),
                &["procuratorate", "eco"],
            )],
        ),
        (
            "supervision",
            vec![to(
                step(
                    "gov",
                    "supervision.notice.v1",
                    "overdue-reply.json",
                    None,
                    "notified",
                ),
                &["water"],
            )],
        ),
    ]
}

#[tokio::test]
async fn every_flow_walks_to_its_end_and_the_case_tables_rebuild_from_the_entries() {
    let world = World::new().await;
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let admin_reader = |agency: &str| world.client(&broker, agency);

    let mut walked = Vec::new();
    for (flow, steps) in walks() {
        let mut sent: Vec<Value> = Vec::new();
        let mut caseref = String::new();
        for (n, step) in steps.iter().enumerate() {
            let message = event(
                step.type_,
                step.file,
                step.sender,
                step.answers.map(|i| &sent[i]),
                step.recipients,
            );
            let body = accepted(&admin_reader(step.sender), &message).await;
            if n == 0 {
                caseref = body["caseref"].as_str().expect("assigned").to_owned();
            } else {
                assert_eq!(body["caseref"], caseref.as_str(), "{flow} step {n}: {body}");
            }
            let (state, closed) = state(&admin_reader(step.sender), &caseref).await;
            assert_eq!(state, step.state, "{flow} after step {n} ({})", step.type_);
            assert_eq!(
                closed,
                n + 1 == steps.len(),
                "{flow} after step {n}: closed"
            );
            sent.push(message);
        }
        let case = admin_reader(steps[0].sender)
            .get(&format!("/v1/cases/{caseref}"))
            .await
            .unwrap()
            .body;
        assert_eq!(case["flow"], flow, "{case}");
        assert_eq!(
            case["messages"].as_array().unwrap().len(),
            steps.len(),
            "{case}"
        );
        walked.push((caseref, case));
    }

    // The projection agrees with the entries; dropped, it is rebuilt with the same states.
    let report = ledger.replay_cases(&mut |_| {}).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    assert_eq!(report.cases, walked.len());
    let pool = sqlx::PgPool::connect(&world.config.database_url)
        .await
        .unwrap();
    sqlx::raw_sql("DELETE FROM case_threads; DELETE FROM cases; DELETE FROM case_messages")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
    // `liaison cases replay` names each case the tables lack and fails; with `--rebuild`
    // it puts them back from the entries.
    let replay = |args: &[&str]| {
        std::process::Command::new(liaison_tests::process::liaison_binary())
            .args(["cases", "replay"])
            .args(args)
            .env("LIAISON_DATABASE_URL", &world.config.database_url)
            .env("LIAISON_LOG", "off")
            .output()
            .expect("run liaison cases replay")
    };
    let checked = replay(&[]);
    let printed = String::from_utf8_lossy(&checked.stdout);
    assert!(!checked.status.success(), "{printed}");
    for (caseref, _) in &walked {
        assert!(
            printed.contains(&format!("✗ {caseref} case: entries lead to")),
            "{caseref} not named: {printed}"
        );
    }
    let rebuilt = replay(&["--rebuild"]);
    assert!(
        rebuilt.status.success(),
        "{}{}",
        String::from_utf8_lossy(&rebuilt.stdout),
        String::from_utf8_lossy(&rebuilt.stderr)
    );
    let report = ledger.replay_cases(&mut |_| {}).await.unwrap();
    assert!(report.differences.is_empty(), "{:?}", report.differences);
    for (caseref, before) in &walked {
        let sender = before["opened_by"].as_str().unwrap();
        let after = admin_reader(sender)
            .get(&format!("/v1/cases/{caseref}"))
            .await
            .unwrap()
            .body;
        assert_eq!(&after, before, "{caseref} rebuilt");
    }

    // The broker goes on numbering after the rebuild: eco opened the lead and the transfer.
    let next = accepted(
        &admin_reader("eco"),
        &event(
            "pil.lead.v1",
            "river-pollution-full.json",
            "eco",
            None,
            None,
        ),
    )
    .await;
    assert!(
        next["caseref"].as_str().unwrap().ends_with("-000003"),
        "{next}"
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn every_answer_type_refuses_an_original_of_a_type_it_does_not_answer() {
    let world = World::new().await;
    let broker = world.start().await;
    let catalogue = liaison_schema::Catalogue::load(&repo_root().join("schemas")).unwrap();
    let gov = world.client(&broker, "gov");

    let mut checked = Vec::new();
    for message_type in catalogue.types() {
        let answers: Vec<&str> = message_type.schema["x-liaison"]["answers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if answers.is_empty() || answers.contains(&"*") {
            continue;
        }
        // The answer's sender, as its own example names it.
        let dir = repo_root().join(format!("schemas/{}/valid", message_type.name));
        let mut files: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        files.sort();
        let example: Value =
            serde_json::from_slice(&std::fs::read(dir.join(&files[0])).unwrap()).unwrap();
        let sender = example["source"]
            .as_str()
            .unwrap()
            .trim_start_matches("urn:liaison:agency:")
            .to_owned();
        // A notification addressed to that sender: an original it may answer, of a type
        // no answer type answers.
        let notification = event(
            "case.notification.v1",
            "suspect-arrested.json",
            "gov",
            None,
            Some(&[sender.as_str()]),
        );
        accepted(&gov, &notification).await;
        let answer = event(
            &message_type.name,
            &files[0],
            &sender,
            Some(&notification),
            None,
        );
        let refused = world
            .client(&broker, &sender)
            .submit(&answer)
            .await
            .unwrap();
        assert_eq!(
            (refused.status, refused.body["code"].as_str()),
            (422, Some("answer_type_mismatch")),
            "{} from {sender}: {}",
            message_type.name,
            refused.body
        );
        assert!(refused.body["ledger_seq"].as_u64().is_some());
        checked.push(message_type.name.clone());
    }
    assert!(checked.len() >= 15, "{checked:?}");

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
