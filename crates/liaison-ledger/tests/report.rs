//! The periodic report read from the database is the one an auditor computes from an
//! export of it: both fold the same canonical entry bytes. Needs PostgreSQL (a database of
//! its own; LIAISON_TEST_DATABASE_URL points elsewhere).

use std::sync::Arc;

use liaison_core::{Channel, Entry, ManualClock, RejectCode, audit};
use liaison_ledger::{
    AcceptOutcome, ExportDir, Ledger, NewMessage, NewRejection, Report, ReportPeriod,
};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

mod common;
use common::{TestDb, agency};

fn at(text: &str) -> OffsetDateTime {
    OffsetDateTime::parse(text, &Rfc3339).unwrap()
}

fn message(sender: &str, to: &[&str]) -> NewMessage {
    let mut message = common::message(sender, to, "report-test");
    message.envelope.type_ = "case.notification.v1".into();
    message
}

fn rejection(sender: &str, code: RejectCode) -> NewRejection {
    NewRejection {
        sender: Some(agency(sender)),
        channel: Channel::Https,
        message_id: None,
        caseref: None,
        type_: None,
        claimed: Default::default(),
        code,
        bytes_sha256: audit::sha256(sender.as_bytes()),
        size: 1,
        errors: Vec::new(),
    }
}

#[tokio::test]
async fn the_database_and_its_export_give_the_same_report() {
    let db = TestDb::create().await;
    let clock = Arc::new(ManualClock::new(at("2026-01-31T23:59:00+08:00")));
    let ledger = Ledger::open(db.config(), clock.clone()).await.unwrap();
    let accept = |m: NewMessage| {
        let ledger = ledger.clone();
        async move {
            let outcome = ledger.accept(m).await.unwrap();
            assert!(matches!(outcome, AcceptOutcome::Recorded(_)), "{outcome:?}");
        }
    };
    // January, by a minute: not in February's report.
    accept(message("eco", &["procuratorate"])).await;
    clock.set(at("2026-02-01T00:00:00+08:00"));
    accept(message("market", &["police", "procuratorate"])).await;
    accept(message("market", &["police"])).await;
    ledger
        .reject(rejection("eco", RejectCode::PayloadInvalid))
        .await
        .unwrap();
    clock.set(at("2026-02-28T23:59:59.999999+08:00"));
    ledger
        .reject(rejection("market", RejectCode::NotAParty))
        .await
        .unwrap();
    clock.set(at("2026-03-01T00:00:00+08:00"));
    accept(message("eco", &["procuratorate"])).await;
    ledger
        .reject(rejection("eco", RejectCode::PayloadInvalid))
        .await
        .unwrap();

    let february = ReportPeriod::parse("2026-02-01", "2026-02-28").unwrap();
    let now = at("2026-03-02T09:00:00+08:00");
    let report = ledger.report(february, now).await.unwrap();
    let rows: Vec<(&str, &str, u64, u64)> = report
        .rows
        .iter()
        .map(|r| {
            (
                r.agency.as_str(),
                r.flow.as_str(),
                r.counts.sent,
                r.counts.received,
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("market", "-", 2, 0),
            ("police", "-", 0, 2),
            ("procuratorate", "-", 0, 1),
        ]
    );
    let rejections: Vec<(&str, &str, u64)> = report
        .rejections
        .iter()
        .map(|r| (r.agency.as_str(), r.code.as_str(), r.count))
        .collect();
    assert_eq!(
        rejections,
        [("eco", "payload_invalid", 1), ("market", "not_a_party", 1)]
    );
    assert_eq!(report.entries, 7);

    // The auditor's side: the same report from the export's entries alone.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    ledger
        .export(
            &out,
            &liaison_core::checkpoint::CheckpointVerifier::new("liaison.test/report", [7; 32])
                .unwrap(),
            &mut |_| {},
        )
        .await
        .unwrap();
    let export = ExportDir::open(&out).unwrap();
    let entries: Vec<Entry> = export
        .entries()
        .unwrap()
        .map(|record| Entry::from_canonical(&record.unwrap().bytes).unwrap())
        .collect();
    assert_eq!(Report::compute(&entries, february, now), report);
}
