//! Offline verification: an export of 100,000 entries, written here by hand from the
//! documented format (as an auditor's own tool could), verifies with no database; a later
//! export is checked to extend an earlier one; a change in either is found.

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use liaison_core::checkpoint::CheckpointSigner;
use liaison_core::merkle::CompactRange;
use liaison_core::{AgencyCode, Entry, EntryKind, audit};
use liaison_ledger::ExportDir;
use liaison_ledger::verify::{Finding, Location};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use serde_json::json;
use uuid::Uuid;

const ORIGIN: &str = "liaison.test/offline";

/// Writes an export of `n` entries (every third one accepts a message) with checkpoints at
/// the given sizes.
fn write_export(dir: &Path, n: u64, checkpoints: &[u64], signer: &CheckpointSigner) {
    std::fs::create_dir_all(dir).unwrap();
    let mut entries =
        std::io::BufWriter::new(std::fs::File::create(dir.join("entries.jsonl")).unwrap());
    let mut messages =
        std::io::BufWriter::new(std::fs::File::create(dir.join("messages.jsonl")).unwrap());
    let mut notes = Vec::new();
    let mut range = CompactRange::new();
    let at = time::macros::datetime!(2026-11-26 08:00:00 UTC);
    for seq in 1..=n {
        let id = Uuid::from_u128(u128::from(seq));
        let accepted = seq % 3 == 1;
        let body = format!(r#"{{"specversion":"1.0","id":"{id}","data":{{"n":{seq}}}}}"#);
        let entry = Entry {
            seq,
            at,
            kind: if accepted {
                EntryKind::MessageAccepted
            } else {
                EntryKind::DeliveryDispatched
            },
            message: Some(id),
            caseref: Some(format!("SD-{}", seq % 100)),
            agency: Some(AgencyCode::new("eco").unwrap()),
            detail: if accepted {
                json!({"type": "pil.lead.v1", "sha256": hex::encode(audit::sha256(body.as_bytes())), "size": body.len()})
            } else {
                json!({"delivery": seq, "attempt": 1})
            },
        };
        let bytes = entry.canonical_bytes();
        entries.write_all(&bytes).unwrap();
        entries.write_all(b"\n").unwrap();
        range.push(audit::leaf_hash(&bytes), |_, _| {});
        if accepted {
            let line = json!({"id": id, "seq": seq, "sha256": hex::encode(audit::sha256(body.as_bytes())), "body": STANDARD.encode(&body)});
            writeln!(messages, "{line}").unwrap();
        }
        if checkpoints.contains(&seq) {
            let note = signer.sign(seq, range.root(), at);
            notes.push(json!({"tree_size": seq, "note": note}).to_string());
        }
    }
    entries.flush().unwrap();
    messages.flush().unwrap();
    std::fs::write(dir.join("checkpoints.jsonl"), notes.join("\n") + "\n").unwrap();
    std::fs::write(dir.join("ledger-key.pub"), hex::encode(signer.public_key())).unwrap();
    let manifest = json!({
        "format": liaison_ledger::EXPORT_FORMAT, "origin": ORIGIN, "entries": n,
        "messages": n.div_ceil(3), "checkpoints": notes.len(),
        "root": hex::encode(range.root()), "exported_at": "2026-11-26T08:00:00Z"
    });
    std::fs::write(dir.join("manifest.json"), manifest.to_string()).unwrap();
}

fn signer() -> CheckpointSigner {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    CheckpointSigner::new(ORIGIN, Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()).unwrap()
}

#[test]
fn an_export_of_100000_entries_verifies_without_a_database() {
    let tmp = tempfile::tempdir().unwrap();
    let signer = signer();
    let later = tmp.path().join("later");
    let earlier = tmp.path().join("earlier");
    write_export(&later, 100_000, &[40_000, 99_999, 100_000], &signer);
    write_export(&earlier, 40_000, &[40_000], &signer);

    let export = ExportDir::open(&later).unwrap();
    let key = export.verifier().unwrap();
    let mut seen = 0;
    let report = export.verify(&key, None, &mut |n| seen = n).unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!(
        (report.entries, report.messages, report.checkpoints),
        (100_000, 33_334, 3)
    );
    assert_eq!(seen, 100_000);
    assert_eq!(hex::encode(report.root), export.manifest.root);

    // The later export extends the earlier one.
    let earlier = ExportDir::open(&earlier).unwrap();
    let report = export.verify(&key, Some(&earlier), &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);

    // One changed byte in one entry of the later export: named.
    let path = later.join("entries.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let altered = text.replacen("\"SD-77\"", "\"SD-78\"", 1);
    std::fs::write(&path, altered).unwrap();
    let report = export.verify(&key, Some(&earlier), &mut |_| {}).unwrap();
    assert_eq!(report.first_bad_seq(), Some(77), "{:?}", report.findings);
    assert!(
        report
            .findings
            .contains(&Finding::DiffersFromReference { seq: 77 })
    );
    // Without the earlier export, the checkpoint roots still catch it.
    let report = export.verify(&key, None, &mut |_| {}).unwrap();
    assert_eq!(report.bad_checkpoints(), vec![40_000, 99_999, 100_000]);

    // A key that is not the ledger's makes every checkpoint fail.
    let stranger =
        liaison_core::checkpoint::CheckpointVerifier::new(ORIGIN, self::signer().public_key())
            .unwrap();
    let report = earlier.verify(&stranger, None, &mut |_| {}).unwrap();
    assert_eq!(report.bad_checkpoints(), vec![40_000]);
}

/// An export as an auditor receives it, tampered with after it was taken: a deleted line
/// is one finding naming the missing entry, not one per later line; an edited entry, which
/// only the checkpoints' roots show, is placed between two checkpoints and no closer.
#[test]
fn a_deleted_line_is_one_finding_and_an_edit_is_placed_between_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let signer = signer();
    let dir = tmp.path().join("export");
    write_export(&dir, 1_000, &[300, 600, 1_000], &signer);
    let export = ExportDir::open(&dir).unwrap();
    let key = export.verifier().unwrap();
    assert!(export.verify(&key, None, &mut |_| {}).unwrap().is_ok());
    let path = dir.join("entries.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();

    // Line 451 (entry 451, which accepts a message) deleted.
    let mut deleted = lines.clone();
    deleted.remove(450);
    std::fs::write(&path, deleted.join("\n") + "\n").unwrap();
    let report = export.verify(&key, None, &mut |_| {}).unwrap();
    assert_eq!(report.findings_total, 1, "{:?}", report.findings);
    assert_eq!(report.first_bad(), Some(Location::Seq(451)));
    assert_eq!(report.bad_checkpoints(), vec![600, 1_000]);
    assert!(
        report.findings[0]
            .to_string()
            .contains("entries 451..=451 are missing"),
        "{}",
        report.findings[0]
    );

    // Entry 450 edited (its case reference), its seq and any digest left alone.
    let mut edited = lines.clone();
    let changed = edited[449].replace("\"SD-50\"", "\"SD-51\"");
    assert_ne!(changed, edited[449]);
    edited[449] = &changed;
    std::fs::write(&path, edited.join("\n") + "\n").unwrap();
    let report = export.verify(&key, None, &mut |_| {}).unwrap();
    assert_eq!(report.findings_total, 1, "{:?}", report.findings);
    assert_eq!(
        report.first_bad(),
        Some(Location::Range { from: 301, to: 600 })
    );
    assert_eq!(report.first_bad_seq(), None);
    assert_eq!(report.verified_through, 300);
}
