//! Every flow of the domain brief through the running broker, with the demo policy: the
//! catalogue's valid examples, sent in a chain (answers name what they answer), get `202`
//! with exactly the recipients the policy gives; unauthorized sends get `403` and a
//! `message.rejected` entry.

use std::time::Duration;

use liaison_core::{Entry, EntryKind, Policy, Registry};
use liaison_ledger::TraceKey;
use liaison_server::Config;
use liaison_tests::{World, answering, example, repo_root};
use serde_json::{Value, json};

/// (agency, role) of a 202 answer.
fn routed(body: &Value) -> Vec<(String, String)> {
    body["recipients"]
        .as_array()
        .expect("recipients")
        .iter()
        .map(|r| {
            (
                r["agency"].as_str().unwrap().to_owned(),
                r["role"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn want(list: &[(&str, &str)]) -> Vec<(String, String)> {
    list.iter()
        .map(|(a, r)| ((*a).to_owned(), (*r).to_owned()))
        .collect()
}

#[tokio::test]
async fn every_flow_routes_through_the_broker_and_unauthorized_sends_are_403_and_recorded() {
    let world = World::new().await;
    let broker = world.start().await;
    let ledger = world.ledger().await;
    let send = |sender: &'static str, event: Value| {
        let client = world.client(&broker, sender);
        async move { (client.submit(&event).await.unwrap(), event) }
    };
    let mut accepted = 0;
    macro_rules! expect_route {
        ($sender:expr, $event:expr, $want:expr) => {{
            let (answer, event) = send($sender, $event).await;
            assert_eq!(
                answer.status, 202,
                "{} {}: {}",
                $sender, event["type"], answer.body
            );
            assert_eq!(
                routed(&answer.body),
                want($want),
                "{} sends {}",
                $sender,
                event["type"]
            );
            accepted += 1;
            event
        }};
    }

    // 1 PIL lead (misconduct → also addressed to discipline), its decision, a receipt.
    let lead = expect_route!(
        "market",
        example(
            "pil.lead.v1",
            "food-safety-official-misconduct.json",
            "market"
        ),
        &[("discipline", "to"), ("procuratorate", "to")]
    );
    expect_route!(
        "procuratorate",
        answering(
            example("pil.lead-decision.v1", "accept.json", "procuratorate"),
            &lead
        ),
        &[("market", "to")]
    );
    expect_route!(
        "procuratorate",
        answering(
            example("receipt.v1", "minimal-receipt.json", "procuratorate"),
            &lead
        ),
        &[("market", "to")]
    );
    // 2 transfer (no copy to the federation of industry and commerce, even of an enterprise
    // case), filing decision to the transferor and copies,
    // reconsideration back to the police and copies.
    let transfer = expect_route!(
        "agri",
        example("case.transfer.v1", "counterfeit-fertiliser.json", "agri"),
        &[("police", "to"), ("procuratorate", "cc")]
    );
    let decision = expect_route!(
        "police",
        answering(
            example("case.filing-decision.v1", "not-filed.json", "police"),
            &transfer
        ),
        &[("agri", "to"), ("procuratorate", "cc")]
    );
    let reconsideration = expect_route!(
        "agri",
        answering(
            example(
                "case.reconsideration-request.v1",
                "sand-mining-reconsideration.json",
                "agri"
            ),
            &decision
        ),
        &[("police", "to"), ("procuratorate", "cc")]
    );
    // 11 filing supervision: the refusal upheld, the agency asks the procuratorate (the
    // police not copied), which demands reasons and then notifies the police to file; the
    // police answer the notice with their filing decision.
    let upheld = expect_route!(
        "police",
        answering(
            example("case.reconsideration-decision.v1", "upheld.json", "police"),
            &reconsideration
        ),
        &[("agri", "to"), ("procuratorate", "cc")]
    );
    let request = expect_route!(
        "agri",
        answering(
            example(
                "filing.supervision-request.v1",
                "after-reconsideration.json",
                "agri"
            ),
            &upheld
        ),
        &[("procuratorate", "to")]
    );
    let demand = expect_route!(
        "procuratorate",
        answering(
            example(
                "filing.reasons-demand.v1",
                "at-agency-request.json",
                "procuratorate"
            ),
            &request
        ),
        &[("police", "to")]
    );
    let statement = expect_route!(
        "police",
        answering(
            example(
                "filing.reasons-statement.v1",
                "survey-not-reviewed.json",
                "police"
            ),
            &demand
        ),
        &[("procuratorate", "to")]
    );
    let notice = expect_route!(
        "procuratorate",
        answering(
            example("filing.notice.v1", "survey-reviewed.json", "procuratorate"),
            &statement
        ),
        &[("police", "to")]
    );
    expect_route!(
        "police",
        answering(
            example("case.filing-decision.v1", "filed-on-notice.json", "police"),
            &notice
        ),
        &[("procuratorate", "to")]
    );
    // 3 transfer supervision to the agency named.
    expect_route!(
        "procuratorate",
        example(
            "transfer.supervision.v1",
            "unsafe-mining.json",
            "procuratorate"
        ),
        &[("emergency", "to")]
    );
    // 4 opinion and reply.
    let opinion = expect_route!(
        "procuratorate",
        example(
            "procuratorial.opinion.v1",
            "penalty-after-non-prosecution.json",
            "procuratorate"
        ),
        &[("market", "to")]
    );
    expect_route!(
        "market",
        answering(
            example(
                "procuratorial.opinion-reply.v1",
                "penalty-imposed.json",
                "market"
            ),
            &opinion
        ),
        &[("procuratorate", "to")]
    );
    // 5 high-impact recommendation (gov copy), objection, decision, then the reply to all
    // (the case's lifecycle takes an objection only before the recommendation is answered).
    let recommendation = expect_route!(
        "procuratorate",
        example("procuratorial.recommendation.v1", "*high*", "procuratorate"),
        &[("water", "to"), ("gov", "cc")]
    );
    let objection = expect_route!(
        "water",
        answering(
            example(
                "procuratorial.objection.v1",
                "permit-already-granted.json",
                "water"
            ),
            &recommendation
        ),
        &[("procuratorate", "to")]
    );
    expect_route!(
        "procuratorate",
        answering(
            example(
                "procuratorial.objection-decision.v1",
                "rejected.json",
                "procuratorate"
            ),
            &objection
        ),
        &[("water", "to")]
    );
    expect_route!(
        "water",
        answering(
            example(
                "procuratorial.recommendation-reply.v1",
                "rectified.json",
                "water"
            ),
            &recommendation
        ),
        &[("procuratorate", "to"), ("gov", "cc")]
    );
    // The deadline watcher reminds the late agency on the procuratorate's behalf; the
    // original's copy (the county government) is copied again.
    expect_route!(
        "procuratorate",
        answering(
            example("deadline.reminder.v1", "*", "procuratorate"),
            &recommendation
        ),
        &[("water", "to"), ("gov", "cc")]
    );
    // 6 file access.
    let request = expect_route!(
        "procuratorate",
        example(
            "file.access-request.v1",
            "training-school-files.json",
            "procuratorate"
        ),
        &[("edu", "to")]
    );
    expect_route!(
        "edu",
        answering(
            example("file.access-response.v1", "refused.json", "edu"),
            &request
        ),
        &[("procuratorate", "to")]
    );
    // 7 hotline records both ways.
    expect_route!(
        "hotline12345",
        example("hotline.record.v1", "from-12345.json", "hotline12345"),
        &[("procuratorate", "to")]
    );
    expect_route!(
        "procuratorate",
        example("hotline.record.v1", "from-12309.json", "procuratorate"),
        &[("hotline12345", "to")]
    );
    // 8 case notification, 9 meeting notice: the agencies named.
    expect_route!(
        "police",
        example("case.notification.v1", "suspect-arrested.json", "police"),
        &[("agri", "to"), ("procuratorate", "to")]
    );
    // An enterprise-related notification informs the federation of industry and commerce.
    expect_route!(
        "police",
        example("case.notification.v1", "enterprise-case.json", "police"),
        &[("market", "to"), ("procuratorate", "to"), ("fic", "cc")]
    );
    expect_route!(
        "justice",
        example("meeting.notice.v1", "liaison-officers.json", "justice"),
        &[("gov", "to"), ("procuratorate", "to")]
    );

    // Unauthorized: 403 with the stable code, and a rejection entry in the ledger.
    let mut named_gov = example("pil.lead.v1", "sand-dump-minimal.json", "eco");
    named_gov["recipients"] = json!(["gov"]);
    let refused = [
        (
            "eco",
            example("hotline.record.v1", "from-12345.json", "eco"),
            "type_not_allowed",
        ),
        (
            "eco",
            example("procuratorial.recommendation.v1", "*high*", "eco"),
            "type_not_allowed",
        ),
        (
            "police",
            example("transfer.supervision.v1", "*", "police"),
            "type_not_allowed",
        ),
        (
            "eco",
            example("meeting.notice.v1", "liaison-officers.json", "eco"),
            "type_not_allowed",
        ),
        (
            "eco",
            answering(example("deadline.reminder.v1", "*", "eco"), &recommendation),
            "unknown_original",
        ),
        ("eco", named_gov, "recipients_not_allowed"),
        (
            "natres",
            answering(
                example("receipt.v1", "minimal-receipt.json", "natres"),
                &lead,
            ),
            "unknown_original",
        ),
    ];
    let mut rejected_seqs = Vec::new();
    for (sender, event, code) in refused {
        let (answer, event) = send(sender, event).await;
        let status = if code == "unknown_original" { 422 } else { 403 };
        assert_eq!(
            answer.status, status,
            "{sender} {}: {}",
            event["type"], answer.body
        );
        assert_eq!(answer.body["code"], code, "{sender} {}", event["type"]);
        rejected_seqs.push((
            answer.body["ledger_seq"].as_u64().expect("recorded"),
            code,
            sender,
        ));
    }

    // Every acceptance is in the ledger once; each flow opened a case of its own.
    let entries = ledger.entries(1, 100_000).await.unwrap();
    let accepted_entries: Vec<Entry> = entries
        .iter()
        .map(|stored| Entry::from_canonical(&stored.entry).unwrap())
        .filter(|e| e.kind == EntryKind::MessageAccepted)
        .collect();
    assert_eq!(accepted_entries.len(), accepted);
    // A notification sent on its own opens no matter; every other message belongs to one.
    assert!(
        accepted_entries
            .iter()
            .filter(|e| e.detail["type"] != "case.notification.v1")
            .all(|e| e.caseref.is_some()),
        "every message of these flows belongs to a case"
    );
    for (seq, code, sender) in rejected_seqs {
        let stored = ledger.entries(seq, 1).await.unwrap().remove(0);
        let entry = Entry::from_canonical(&stored.entry).unwrap();
        assert_eq!(entry.kind, EntryKind::MessageRejected);
        assert_eq!(entry.detail["code"], code);
        assert_eq!(entry.agency.as_ref().map(|a| a.as_str()), Some(sender));
    }

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[test]
fn the_demo_policy_checks_against_registry_and_catalogue() {
    let root = repo_root();
    let demo = Config {
        registry: Some(root.join("deploy/demo/agencies.toml")),
        policy: Some(root.join("deploy/demo/policy.toml")),
        lifecycle: Some(root.join("deploy/demo/lifecycle.toml")),
        schemas: Some(root.join("schemas")),
        ..Config::default()
    };
    let report = liaison_cli::policy_cmd::check(&demo).unwrap();
    assert!(report.contains("every condition satisfiable"), "{report}");
    assert!(
        report.contains("every catalogue type has its place"),
        "{report}"
    );

    // A lifecycle condition on a value the schema cannot hold is caught with its line.
    let dir = tempfile::tempdir().unwrap();
    let lifecycle = std::fs::read_to_string(root.join("deploy/demo/lifecycle.toml")).unwrap();
    let misspelt = dir.path().join("lifecycle.toml");
    std::fs::write(
        &misspelt,
        lifecycle.replace(
            r#""data.decision" = "accept""#,
            r#""data.decision" = "acept""#,
        ),
    )
    .unwrap();
    let err = liaison_cli::policy_cmd::check(&Config {
        lifecycle: Some(misspelt.clone()),
        ..demo.clone()
    })
    .unwrap_err()
    .to_string();
    // The line of the step's `[[flow.step]]` header.
    let lines: Vec<&str> = lifecycle.lines().collect();
    let condition = lines
        .iter()
        .position(|l| l.contains(r#""data.decision" = "accept""#))
        .unwrap();
    let line = lines[..condition]
        .iter()
        .rposition(|l| l.trim() == "[[flow.step]]")
        .unwrap()
        + 1;
    assert!(
        err.contains("acept") && err.contains(&format!("lifecycle.toml:{line}:")),
        "{err}"
    );

    // A condition on a value the schema cannot hold is caught with its file and line.
    let bad = dir.path().join("policy.toml");
    std::fs::write(
        &bad,
        "[[rule]]\nname = \"typo\"\ntype = \"procuratorial.recommendation.v1\"\nfrom = [\"procuratorate\"]\ncc = [\"gov\"]\nwhen = { \"data.impact\" = \"hihg\" }\n",
    )
    .unwrap();
    let err = liaison_cli::policy_cmd::check(&Config {
        policy: Some(bad.clone()),
        ..demo
    })
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("policy.toml:1:") && err.contains("hihg"),
        "{err}"
    );
    let registry = Registry::load(&root.join("deploy/demo/agencies.toml")).unwrap();
    assert!(
        Policy::load(&bad, &registry).is_ok(),
        "the file itself is well-formed"
    );
}

#[tokio::test]
async fn a_policy_changed_while_a_message_is_in_flight_does_not_lose_or_reroute_it() {
    let mut world = World::new().await;
    world.config.relay.retry_base = Duration::from_millis(100);
    world.config.relay.retry_max = Duration::from_millis(200);
    world.config.relay.poll_interval = Duration::from_millis(50);
    world.config.relay.max_attempts = 10_000;
    let broker = world.start().await;
    let ledger = world.ledger().await;
    // Keep the lead in flight: its recipient's queue is missing, so the relay retries.
    world.delete_agency_queue("procuratorate");
    let caseref = "SD-RELOAD";
    let lead = liaison_devtools::demo::lead_event(caseref);
    let answer = world.client(&broker, "eco").submit(&lead).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    liaison_tests::eventually(
        "a failed attempt recorded",
        Duration::from_secs(20),
        async || {
            let trace = ledger.trace(&TraceKey::Case(caseref.into())).await.unwrap();
            trace
                .iter()
                .any(|e| e.kind == EntryKind::DeliveryFailed)
                .then_some(())
        },
    )
    .await;
    broker.shutdown(Duration::from_secs(5)).await;

    // The new policy no longer lets anyone send leads.
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        "[[rule]]\nname = \"receipt-to-sender\"\ntype = \"receipt.v1\"\nfrom = [\"*\"]\nreply_to = \"sender\"\n",
    )
    .unwrap();
    world.config.policy = Some(policy);
    let broker = world.start().await; // declares the missing queue again

    let bus = world.bus().await;
    let mut queue = bus
        .consume("liaison.agency.procuratorate", 10)
        .await
        .unwrap();
    let delivery = queue
        .next(Duration::from_secs(20))
        .await
        .unwrap()
        .expect("the lead accepted under the old policy still arrives");
    assert_eq!(
        delivery.message_id.map(|m| m.to_string()).as_deref(),
        lead["id"].as_str()
    );
    delivery.ack().await.unwrap();
    let again = world
        .client(&broker, "eco")
        .submit(&liaison_devtools::demo::lead_event(caseref))
        .await
        .unwrap();
    assert_eq!(again.status, 403, "{}", again.body);
    assert_eq!(again.body["code"], "type_not_allowed");

    drop(queue);
    bus.close().await;
    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
