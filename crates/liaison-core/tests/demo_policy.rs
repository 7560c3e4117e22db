//! The demo county's policy (`deploy/demo/policy.toml`) routes every flow of the domain
//! brief: for each (sender, type, payload, named recipients, original) the expected
//! recipients, or the refusal.

use std::path::PathBuf;

use liaison_core::policy::{OriginalMessage, Policy, RecipientRole};
use liaison_core::{AgencyCode, Envelope, Registry, RejectCode};
use serde_json::{Value, json};
use uuid::Uuid;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn demo() -> Policy {
    let registry = Registry::load(&root().join("deploy/demo/agencies.toml")).unwrap();
    // LIAISON_TEST_POLICY checks a candidate policy against the same table.
    let path = std::env::var_os("LIAISON_TEST_POLICY")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("deploy/demo/policy.toml"));
    Policy::load(&path, &registry).unwrap_or_else(|e| panic!("{e}"))
}

fn code(s: &str) -> AgencyCode {
    AgencyCode::new(s).unwrap()
}

/// A reply's original: sent by `sender` to `recipients`; a recipient written `cc:CODE`
/// was a copy, the others addressees. (The policy does not look at the original's type;
/// the pipeline checks it against the catalogue.)
fn original(sender: &str, recipients: &[&str]) -> Option<OriginalMessage> {
    Some(OriginalMessage {
        id: Uuid::nil(),
        type_: String::new(),
        sender: code(sender),
        recipients: recipients
            .iter()
            .map(|r| code(r.trim_start_matches("cc:")))
            .collect(),
        addressees: recipients
            .iter()
            .filter(|r| !r.starts_with("cc:"))
            .map(|r| code(r))
            .collect(),
        caseref: None,
    })
}

struct Case {
    sender: &'static str,
    type_: &'static str,
    data: Value,
    recipients: Option<&'static [&'static str]>,
    original: Option<OriginalMessage>,
    expect: Result<&'static [(&'static str, RecipientRole)], RejectCode>,
}

fn case(sender: &'static str, type_: &'static str) -> Case {
    Case {
        sender,
        type_,
        data: json!({}),
        recipients: None,
        original: None,
        expect: Err(RejectCode::TypeNotAllowed),
    }
}

impl Case {
    fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
    fn naming(mut self, recipients: &'static [&'static str]) -> Self {
        self.recipients = Some(recipients);
        self
    }
    fn answering(mut self, original: Option<OriginalMessage>) -> Self {
        self.original = original;
        self
    }
    fn to(mut self, expect: &'static [(&'static str, RecipientRole)]) -> Self {
        self.expect = Ok(expect);
        self
    }
    fn refused(mut self, code: RejectCode) -> Self {
        self.expect = Err(code);
        self
    }
}

use RecipientRole::{Cc, To};

fn table() -> Vec<Case> {
    let transfer = || original("eco", &["police", "cc:procuratorate"]);
    let not_filed = || original("police", &["eco", "cc:procuratorate"]);
    let high = || original("procuratorate", &["eco", "cc:gov"]);
    let reconsideration = || original("natres", &["police", "cc:procuratorate"]);
    let upheld = || original("police", &["natres", "cc:procuratorate"]);
    let supervision_request = || original("natres", &["procuratorate"]);
    let demand = || original("procuratorate", &["police"]);
    let statement = || original("police", &["procuratorate"]);
    let notice = || original("procuratorate", &["police"]);
    vec![
        // 1 PIL lead and its decision.
        case("eco", "pil.lead.v1").to(&[("procuratorate", To)]),
        case("hotline12345", "pil.lead.v1").to(&[("procuratorate", To)]),
        case("market", "pil.lead.v1")
            .data(json!({"domain": "food_drug_safety", "official_misconduct": true}))
            .to(&[("discipline", To), ("procuratorate", To)]),
        case("market", "pil.lead.v1")
            .data(json!({"official_misconduct": false}))
            .to(&[("procuratorate", To)]),
        case("eco", "pil.lead.v1")
            .naming(&["gov"])
            .refused(RejectCode::RecipientsNotAllowed),
        case("procuratorate", "pil.lead-decision.v1")
            .data(json!({"decision": "more_evidence"}))
            .answering(original("eco", &["procuratorate"]))
            .to(&[("eco", To)]),
        case("procuratorate", "pil.lead-decision.v1").refused(RejectCode::UnknownOriginal),
        case("police", "pil.lead-decision.v1")
            .answering(original("eco", &["procuratorate"]))
            .refused(RejectCode::TypeNotAllowed),
        // 12 supplementary evidence after "more evidence", and the lead's outcome.
        case("eco", "pil.lead-supplement.v1")
            .answering(original("procuratorate", &["eco"]))
            .to(&[("procuratorate", To)]),
        case("market", "pil.lead-supplement.v1")
            .answering(original("procuratorate", &["eco"]))
            .refused(RejectCode::UnknownOriginal),
        case("procuratorate", "pil.lead-outcome.v1")
            .data(json!({"outcome": "case_filed"}))
            .answering(original("eco", &["procuratorate"]))
            .to(&[("eco", To)]),
        // Discipline inspection is an addressee of a misconduct lead, but the outcome of a
        // PIL lead is the procuratorate's to report.
        case("discipline", "pil.lead-outcome.v1")
            .answering(original("market", &["discipline", "procuratorate"]))
            .refused(RejectCode::TypeNotAllowed),
        case("procuratorate", "pil.lead-outcome.v1").refused(RejectCode::UnknownOriginal),
        // 2 criminal case transfer, filing decision, reconsideration.
        case("eco", "case.transfer.v1").to(&[("police", To), ("procuratorate", Cc)]),
        // Transfers carry suspects' identity numbers: the federation of industry and
        // commerce is not copied, even on enterprise-related cases.
        case("market", "case.transfer.v1")
            .data(json!({"enterprise_related": true}))
            .to(&[("police", To), ("procuratorate", Cc)]),
        // Naming only the police cannot drop the procuratorate's supervisory copy.
        case("market", "case.transfer.v1")
            .naming(&["police"])
            .to(&[("police", To), ("procuratorate", Cc)]),
        case("market", "case.transfer.v1")
            .data(json!({"enterprise_related": true}))
            .naming(&["police"])
            .to(&[("police", To), ("procuratorate", Cc)]),
        case("police", "case.filing-decision.v1")
            .naming(&["eco"])
            .answering(transfer())
            .to(&[("eco", To), ("procuratorate", Cc)]),
        case("market", "pil.lead.v1")
            .data(json!({"official_misconduct": true}))
            .naming(&["procuratorate"])
            .to(&[("discipline", To), ("procuratorate", To)]),
        case("gov", "case.transfer.v1").refused(RejectCode::TypeNotAllowed),
        case("procuratorate", "case.transfer.v1").refused(RejectCode::TypeNotAllowed),
        case("police", "case.filing-decision.v1")
            .data(json!({"decision": "not_file"}))
            .answering(transfer())
            .to(&[("eco", To), ("procuratorate", Cc)]),
        case("market", "case.filing-decision.v1")
            .answering(transfer())
            .refused(RejectCode::TypeNotAllowed),
        case("eco", "case.reconsideration-request.v1")
            .answering(not_filed())
            .to(&[("police", To), ("procuratorate", Cc)]),
        case("natres", "case.reconsideration-request.v1")
            .answering(not_filed())
            .refused(RejectCode::UnknownOriginal),
        // Only the transferring agencies ask the police to reconsider.
        case("procuratorate", "case.reconsideration-request.v1")
            .answering(not_filed())
            .refused(RejectCode::TypeNotAllowed),
        // The reconsideration decision: to the requester, the procuratorate copied even when
        // the police name only the requester.
        case("police", "case.reconsideration-decision.v1")
            .data(json!({"decision": "upheld"}))
            .answering(reconsideration())
            .to(&[("natres", To), ("procuratorate", Cc)]),
        case("police", "case.reconsideration-decision.v1")
            .data(json!({"decision": "reversed"}))
            .naming(&["natres"])
            .answering(reconsideration())
            .to(&[("natres", To), ("procuratorate", Cc)]),
        case("procuratorate", "case.reconsideration-decision.v1")
            .answering(reconsideration())
            .refused(RejectCode::TypeNotAllowed),
        // 11 filing supervision: the agency asks the procuratorate, the police not copied.
        case("natres", "filing.supervision-request.v1")
            .answering(upheld())
            .to(&[("procuratorate", To)]),
        case("eco", "filing.supervision-request.v1")
            .answering(not_filed())
            .to(&[("procuratorate", To)]),
        case("eco", "filing.supervision-request.v1")
            .answering(not_filed())
            .naming(&["procuratorate", "police"])
            .refused(RejectCode::RecipientsNotAllowed),
        // An answer even with fixed recipients: it names a decision its sender received.
        case("eco", "filing.supervision-request.v1").refused(RejectCode::UnknownOriginal),
        case("market", "filing.supervision-request.v1")
            .answering(not_filed())
            .refused(RejectCode::UnknownOriginal),
        // The procuratorate, only copied on the decision, supervises but does not ask.
        case("procuratorate", "filing.supervision-request.v1")
            .answering(not_filed())
            .refused(RejectCode::TypeNotAllowed),
        // The demand for reasons: answering the agency's request, or on the procuratorate's
        // own initiative the filing decision it was copied on.
        case("procuratorate", "filing.reasons-demand.v1")
            .answering(supervision_request())
            .to(&[("police", To)]),
        case("procuratorate", "filing.reasons-demand.v1")
            .answering(not_filed())
            .to(&[("police", To)]),
        case("procuratorate", "filing.reasons-demand.v1").refused(RejectCode::UnknownOriginal),
        case("eco", "filing.reasons-demand.v1")
            .answering(not_filed())
            .refused(RejectCode::TypeNotAllowed),
        case("police", "filing.reasons-statement.v1")
            .answering(demand())
            .to(&[("procuratorate", To)]),
        case("natres", "filing.reasons-statement.v1")
            .answering(demand())
            .refused(RejectCode::TypeNotAllowed),
        case("procuratorate", "filing.notice.v1")
            .data(json!({"file_within_days": 15}))
            .answering(statement())
            .to(&[("police", To)]),
        case("police", "filing.notice.v1")
            .answering(statement())
            .refused(RejectCode::TypeNotAllowed),
        // The police answer the notice with their filing decision, to the procuratorate.
        case("police", "case.filing-decision.v1")
            .data(json!({"decision": "file"}))
            .answering(notice())
            .to(&[("procuratorate", To)]),
        // 3 transfer supervision.
        case("procuratorate", "transfer.supervision.v1")
            .naming(&["natres"])
            .to(&[("natres", To)]),
        case("procuratorate", "transfer.supervision.v1").refused(RejectCode::RecipientsNotAllowed),
        case("procuratorate", "transfer.supervision.v1")
            .naming(&["gov"])
            .refused(RejectCode::RecipientsNotAllowed),
        case("procuratorate", "transfer.supervision.v1")
            .naming(&["nosuchagency"])
            .refused(RejectCode::RecipientsNotAllowed),
        case("eco", "transfer.supervision.v1")
            .naming(&["market"])
            .refused(RejectCode::TypeNotAllowed),
        case("natres", "transfer.supervision-reply.v1")
            .data(json!({"response": "not_transferring"}))
            .answering(original("procuratorate", &["natres"]))
            .to(&[("procuratorate", To)]),
        case("eco", "transfer.supervision-reply.v1")
            .answering(original("procuratorate", &["natres"]))
            .refused(RejectCode::UnknownOriginal),
        case("police", "transfer.supervision-reply.v1")
            .answering(original("procuratorate", &["police"]))
            .refused(RejectCode::TypeNotAllowed),
        // 4 opinion and reply.
        case("procuratorate", "procuratorial.opinion.v1")
            .naming(&["market"])
            .to(&[("market", To)]),
        case("market", "procuratorial.opinion-reply.v1")
            .answering(original("procuratorate", &["market"]))
            .to(&[("procuratorate", To)]),
        case("eco", "procuratorial.opinion-reply.v1")
            .answering(original("procuratorate", &["market"]))
            .refused(RejectCode::UnknownOriginal),
        // 5 recommendation, reply, objection, decision.
        case("procuratorate", "procuratorial.recommendation.v1")
            .data(json!({"impact": "normal", "urgent": false}))
            .naming(&["eco"])
            .to(&[("eco", To)]),
        case("procuratorate", "procuratorial.recommendation.v1")
            .data(json!({"impact": "high", "urgent": true}))
            .naming(&["eco"])
            .to(&[("eco", To), ("gov", Cc)]),
        case("procuratorate", "procuratorial.recommendation.v1")
            .data(json!({"impact": "normal"}))
            .naming(&["eco", "water"])
            .to(&[("eco", To), ("water", To)]),
        case("eco", "procuratorial.recommendation.v1")
            .naming(&["market"])
            .refused(RejectCode::TypeNotAllowed),
        case("eco", "procuratorial.recommendation-reply.v1")
            .data(json!({"status": "rectified"}))
            .answering(high())
            .to(&[("procuratorate", To), ("gov", Cc)]),
        case("eco", "procuratorial.recommendation-reply.v1")
            .answering(original("procuratorate", &["eco"]))
            .to(&[("procuratorate", To)]),
        // Copies are informed; they do not reply or object. Nor does the recommendation's
        // own sender.
        case("gov", "procuratorial.recommendation-reply.v1")
            .answering(high())
            .refused(RejectCode::NotAnAddressee),
        case("gov", "procuratorial.objection.v1")
            .answering(high())
            .refused(RejectCode::NotAnAddressee),
        case("procuratorate", "procuratorial.recommendation-reply.v1")
            .answering(high())
            .refused(RejectCode::NotAnAddressee),
        case("eco", "procuratorial.objection.v1")
            .answering(original("procuratorate", &["eco"]))
            .to(&[("procuratorate", To)]),
        case("procuratorate", "procuratorial.objection-decision.v1")
            .data(json!({"decision": "rejected"}))
            .answering(original("eco", &["procuratorate"]))
            .to(&[("eco", To)]),
        case("eco", "procuratorial.objection-decision.v1")
            .answering(original("procuratorate", &["eco"]))
            .refused(RejectCode::TypeNotAllowed),
        // 6 file access.
        case("procuratorate", "file.access-request.v1")
            .naming(&["health"])
            .to(&[("health", To)]),
        case("health", "file.access-response.v1")
            .answering(original("procuratorate", &["health"]))
            .to(&[("procuratorate", To)]),
        // 7 hotline records, both ways.
        case("hotline12345", "hotline.record.v1").to(&[("procuratorate", To)]),
        case("procuratorate", "hotline.record.v1").to(&[("hotline12345", To)]),
        case("eco", "hotline.record.v1").refused(RejectCode::TypeNotAllowed),
        // Result feedback, back to the hotline that shared the record.
        case("procuratorate", "hotline.feedback.v1")
            .data(json!({"result": "resolved"}))
            .answering(original("hotline12345", &["procuratorate"]))
            .to(&[("hotline12345", To)]),
        case("hotline12345", "hotline.feedback.v1")
            .data(json!({"result": "referred"}))
            .answering(original("procuratorate", &["hotline12345"]))
            .to(&[("procuratorate", To)]),
        case("hotline12345", "hotline.feedback.v1")
            .answering(original("hotline12345", &["procuratorate"]))
            .refused(RejectCode::NotAnAddressee),
        case("eco", "hotline.feedback.v1")
            .answering(original("hotline12345", &["procuratorate"]))
            .refused(RejectCode::TypeNotAllowed),
        // 8 case notification.
        case("police", "case.notification.v1")
            .naming(&["eco", "market"])
            .to(&[("eco", To), ("market", To)]),
        case("police", "case.notification.v1").refused(RejectCode::RecipientsNotAllowed),
        // Enterprise-related: the federation of industry and commerce is informed (§二.9).
        case("police", "case.notification.v1")
            .data(json!({"enterprise_related": true}))
            .naming(&["market"])
            .to(&[("market", To), ("fic", Cc)]),
        case("police", "case.notification.v1")
            .data(json!({"enterprise_related": false}))
            .naming(&["market"])
            .to(&[("market", To)]),
        // 9 joint meeting notice.
        case("gov", "meeting.notice.v1")
            .naming(&["procuratorate", "police", "justice"])
            .to(&[("justice", To), ("police", To), ("procuratorate", To)]),
        case("justice", "meeting.notice.v1")
            .naming(&["gov"])
            .to(&[("gov", To)]),
        case("procuratorate", "meeting.notice.v1")
            .naming(&["gov", "justice"])
            .to(&[("gov", To), ("justice", To)]),
        case("eco", "meeting.notice.v1")
            .naming(&["gov"])
            .refused(RejectCode::TypeNotAllowed),
        // 12 the county government's supervision and interview notices.
        case("gov", "supervision.notice.v1")
            .data(json!({"kind": "supervision"}))
            .naming(&["forestry"])
            .to(&[("forestry", To)]),
        case("gov", "supervision.notice.v1")
            .data(json!({"kind": "interview"}))
            .naming(&["forestry", "police"])
            .to(&[("forestry", To), ("police", To)]),
        case("gov", "supervision.notice.v1").refused(RejectCode::RecipientsNotAllowed),
        case("procuratorate", "supervision.notice.v1")
            .naming(&["forestry"])
            .refused(RejectCode::TypeNotAllowed),
        // 10 receipt.
        case("procuratorate", "receipt.v1")
            .answering(original("eco", &["procuratorate"]))
            .to(&[("eco", To)]),
        case("police", "receipt.v1")
            .answering(original("eco", &["procuratorate"]))
            .refused(RejectCode::UnknownOriginal),
        // Every recipient signs for what it received, copies included.
        case("procuratorate", "receipt.v1")
            .answering(transfer())
            .to(&[("eco", To)]),
        case("eco", "receipt.v1")
            .answering(transfer())
            .refused(RejectCode::NotAnAddressee),
        // Deadline reminders: from the waiting sender to those who owe it an answer.
        // The county government hears of overdue replies, not of reminders before the date.
        case("procuratorate", "deadline.reminder.v1")
            .data(json!({"clock": "recommendation_reply", "stage": "overdue"}))
            .answering(original("procuratorate", &["eco"]))
            .to(&[("eco", To), ("gov", Cc)]),
        case("procuratorate", "deadline.reminder.v1")
            .data(json!({"clock": "opinion_reply", "stage": "escalation"}))
            .answering(original("procuratorate", &["eco"]))
            .to(&[("eco", To), ("gov", Cc)]),
        case("procuratorate", "deadline.reminder.v1")
            .data(json!({"clock": "recommendation_reply", "stage": "reminder"}))
            .answering(original("procuratorate", &["eco"]))
            .to(&[("eco", To)]),
        case("eco", "deadline.reminder.v1")
            .data(json!({"clock": "filing_review", "stage": "overdue"}))
            .answering(transfer())
            .to(&[("police", To), ("procuratorate", Cc)]),
        case("police", "deadline.reminder.v1")
            .data(json!({"clock": "filing_review"}))
            .answering(transfer())
            .refused(RejectCode::UnknownOriginal),
        case("gov", "deadline.reminder.v1").refused(RejectCode::UnknownOriginal),
    ]
}

#[test]
fn every_flow_of_the_domain_routes_as_the_table_says() {
    let policy = demo();
    let mut failures = Vec::new();
    for (i, c) in table().into_iter().enumerate() {
        let mut event = json!({
            "specversion": "1.0",
            "id": Uuid::now_v7().to_string(),
            "source": code(c.sender).urn(),
            "type": c.type_,
            "time": "2026-11-26T08:00:00Z",
            "caseref": "SD-TABLE",
            "data": c.data,
        });
        if let Some(r) = c.recipients {
            event["recipients"] = json!(r);
        }
        if c.original.is_some() {
            event["inreplyto"] = json!(Uuid::nil().to_string());
        }
        let envelope = match Envelope::from_value(&event) {
            Ok(e) => e,
            Err(e) => {
                // An unregistered name is still a well-formed code; anything else is a table bug.
                panic!("case {i}: envelope: {e}")
            }
        };
        let got = policy
            .route_event(
                &code(c.sender),
                &envelope,
                Some(&event),
                c.original.as_ref(),
            )
            .map(|route| {
                route
                    .recipients
                    .iter()
                    .map(|r| (r.agency.as_str().to_owned(), r.role))
                    .collect::<Vec<_>>()
            })
            .map_err(|e| e.code());
        let want = c.expect.map(|list| {
            list.iter()
                .map(|(a, r)| ((*a).to_owned(), *r))
                .collect::<Vec<_>>()
        });
        if got != want {
            failures.push(format!(
                "case {i}: {} sends {}: got {got:?}, want {want:?}",
                c.sender, c.type_
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_recipient_names_the_rule_that_chose_it() {
    let policy = demo();
    let event = json!({
        "specversion": "1.0", "id": Uuid::now_v7().to_string(),
        "source": "urn:liaison:agency:procuratorate", "type": "procuratorial.recommendation.v1",
        "time": "2026-11-26T08:00:00Z", "recipients": ["eco"], "data": {"impact": "high"},
    });
    let envelope = Envelope::from_value(&event).unwrap();
    let route = policy
        .route_event(&code("procuratorate"), &envelope, Some(&event), None)
        .unwrap();
    let rules: Vec<(&str, &str)> = route
        .recipients
        .iter()
        .map(|r| (r.agency.as_str(), r.rule.as_str()))
        .collect();
    assert_eq!(
        rules,
        vec![
            ("eco", "recommendation-to-named-agency"),
            ("gov", "recommendation-high-impact-to-gov")
        ]
    );
}
