//! `liaison report --export DIR`, run as the built binary on an export directory written
//! here: the report needs the export's entries and nothing else (no database).

use std::path::Path;
use std::process::{Command, Output};

use liaison_core::{AgencyCode, Entry, EntryKind};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use uuid::Uuid;

fn liaison(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_liaison"))
        .args(args)
        .current_dir(std::env::temp_dir())
        .output()
        .expect("run liaison")
}

fn entry(seq: u64, at: &str, kind: EntryKind, agency: &str, detail: Value) -> Entry {
    Entry {
        seq,
        at: OffsetDateTime::parse(at, &Rfc3339).unwrap(),
        kind,
        message: Some(Uuid::from_u128(u128::from(seq))),
        caseref: Some("ECO-2026-000001".into()),
        agency: Some(AgencyCode::new(agency).unwrap()),
        detail,
    }
}

/// An export of four entries: eco transfers a case to the police on 10 March with a
/// filing review due on the 13th; the police refuse to file it on the 20th, late; eco
/// sends a payload that fails its schema; and, in April, another transfer.
fn write_export(dir: &Path) {
    let thread = Uuid::from_u128(7).to_string();
    let to_police = json!([
        {"agency": "police", "role": "to", "rule": "r"},
        {"agency": "procuratorate", "role": "cc", "rule": "r"},
    ]);
    let entries = [
        entry(
            1,
            "2026-03-10T09:00:00+08:00",
            EntryKind::MessageAccepted,
            "eco",
            json!({
                "type": "case.transfer.v1", "recipients": to_police, "caseref_assigned": true,
                "case": {"thread": thread, "flow": "transfer", "to": "transferred"},
                "clocks": {"started": [{"thread": thread, "clock": "filing_review",
                    "kind": "deadline", "due": "2026-03-13T00:00:00+08:00",
                    "owed_by": ["police"]}]},
            }),
        ),
        entry(
            2,
            "2026-03-20T15:00:00+08:00",
            EntryKind::MessageAccepted,
            "police",
            json!({
                "type": "case.filing-decision.v1", "inreplyto": Uuid::from_u128(1).to_string(),
                "recipients": [{"agency": "eco", "role": "to", "rule": "r"}],
                "case": {"thread": thread, "flow": "transfer", "from": "transferred",
                    "to": "not_filed"},
                "clocks": {"stopped": [{"thread": thread, "clock": "filing_review",
                    "reason": "answered", "started_at": "2026-03-10T09:00:00+08:00",
                    "due": "2026-03-13T00:00:00+08:00", "late": true}]},
            }),
        ),
        entry(
            3,
            "2026-03-21T09:00:00+08:00",
            EntryKind::MessageRejected,
            "eco",
            json!({"code": "payload_invalid", "errors": []}),
        ),
        entry(
            4,
            "2026-04-03T09:00:00+08:00",
            EntryKind::MessageAccepted,
            "eco",
            json!({"type": "case.transfer.v1", "recipients": to_police}),
        ),
    ];
    std::fs::create_dir_all(dir).unwrap();
    let mut lines = Vec::new();
    for e in &entries {
        lines.extend(e.canonical_bytes());
        lines.push(b'\n');
    }
    std::fs::write(dir.join("entries.jsonl"), lines).unwrap();
    let manifest = json!({
        "format": "liaison-ledger-export/1", "origin": "liaison.test/report",
        "entries": entries.len(), "messages": 0, "checkpoints": 0, "root": "",
        "exported_at": "2026-04-02T00:00:00Z",
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

fn report(dir: &Path, extra: &[&str]) -> String {
    let mut args = vec![
        "report",
        "--export",
        dir.to_str().unwrap(),
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-31",
        "--now",
        "2026-04-02T00:00:00+08:00",
    ];
    args.extend_from_slice(extra);
    let out = liaison(&args);
    assert!(
        out.status.success(),
        "liaison {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn a_report_is_computed_from_an_export_alone() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    write_export(&export);

    let json: Value = serde_json::from_str(&report(&export, &["--format", "json"])).unwrap();
    assert_eq!(json["from"], "2026-03-01");
    assert_eq!(json["end"], "2026-04-01T00:00:00+08:00");
    assert_eq!(json["now"], "2026-04-02T00:00:00+08:00");
    assert_eq!(json["entries"], 3, "April's entry is after now");
    let row = |agency: &str| {
        json["rows"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["agency"] == agency && r["flow"] == "transfer")
            .unwrap_or_else(|| panic!("no {agency} row in {json}"))
            .clone()
    };
    let eco = row("eco");
    assert_eq!(
        (&eco["sent"], &eco["cases_opened"], &eco["received"]),
        (&json!(1), &json!(1), &json!(1))
    );
    let police = row("police");
    assert_eq!(police["received"], 1);
    assert_eq!(police["transfers_not_filed"], 1);
    assert_eq!(police["answers_late"], 1);
    assert_eq!(police["median_answer"], "10d 6h");
    assert_eq!(police["overdue_now"], 0, "answered, if late");
    assert_eq!(row("procuratorate")["received"], 1);
    assert_eq!(
        json["rejections"],
        json!([{"agency": "eco", "code": "payload_invalid", "count": 1}])
    );

    // Markdown by default.
    let markdown = report(&export, &[]);
    assert!(
        markdown.starts_with("# 通报 2026-03-01 – 2026-03-31\n"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| police | transfer | 1 | 1 | 0 | 0 | 0 | 1 | 10d 6h | 0 | 0 | 1 |"),
        "{markdown}"
    );
    assert!(
        markdown.contains("| eco | payload_invalid | 1 |"),
        "{markdown}"
    );

    let csv = report(&export, &["--format", "csv"]);
    assert!(csv.starts_with("agency,flow,sent,received,"), "{csv}");
    assert!(
        csv.contains("\ntotal,,2,3,1,0,0,1,10d 6h,0,0,1,0,0,0,885600\n"),
        "{csv}"
    );
    assert!(
        csv.ends_with("\nagency,code,count\neco,payload_invalid,1\n"),
        "{csv}"
    );
}

#[test]
fn a_period_that_is_no_period_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    write_export(&export);
    let path = export.to_str().unwrap();
    for (args, says) in [
        (
            vec!["--from", "2026-03-31", "--to", "2026-03-01"],
            "is after",
        ),
        (
            vec!["--from", "2026-3-1", "--to", "2026-03-31"],
            "not a date",
        ),
    ] {
        let mut all = vec!["report", "--export", path];
        all.extend(args);
        let out = liaison(&all);
        assert!(!out.status.success(), "{all:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{all:?}: {stderr}");
    }
    let out = liaison(&[
        "report",
        "--export",
        path,
        "--from",
        "2026-03-01",
        "--to",
        "2026-03-31",
        "--format",
        "xml",
    ]);
    assert!(!out.status.success());
}
