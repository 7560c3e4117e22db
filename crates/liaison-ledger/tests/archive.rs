//! Archival against a real PostgreSQL: a closed range leaves the hot tables for a verified
//! archive; the whole ledger verifies from the database plus its archives; an archived
//! entry is still proved from the kept leaf hashes and tree nodes; and nothing archived
//! comes back by accident — a resubmitted archived message is a duplicate, not a new one.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use liaison_core::checkpoint::{CheckpointSigner, CheckpointVerifier};
use liaison_core::{SystemClock, audit, merkle};
use liaison_ledger::verify::Location;
use liaison_ledger::{
    AcceptOutcome, ArchiveCutoff, ArchiveError, DeliveryOutcome, ErasureOutcome, ExportDir,
    ExportError, Ledger, NewErasure, NewMessage,
};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;

mod common;
use common::{TestDb, agency};

const ORIGIN: &str = "liaison.test/archive";
const PARTITION: u64 = 32;

fn lead(n: usize) -> NewMessage {
    let mut lead = common::message("eco", &["procuratorate"], "archive-test");
    let id = lead.envelope.id;
    lead.envelope.caseref = Some(format!("SD-ARCHIVE-{}", n % 5));
    lead.bytes = Bytes::from(format!(r#"{{"id":"{id}","n":{n},"summary":"线索 {n}"}}"#));
    lead
}

/// Accepts `count` leads and, with `settle`, dispatches and acknowledges every delivery.
async fn send(ledger: &Ledger, from: usize, count: usize, settle: bool) -> Vec<NewMessage> {
    let leads: Vec<NewMessage> = (from..from + count).map(lead).collect();
    for outcome in join_all(leads.iter().cloned().map(|m| ledger.accept(m))).await {
        assert!(matches!(outcome.unwrap(), AcceptOutcome::Recorded(_)));
    }
    if settle {
        let claimed = ledger
            .claim_deliveries(1000, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        assert_eq!(claimed.len(), count);
        let outcomes = claimed
            .iter()
            .map(|d| DeliveryOutcome::Dispatched {
                delivery_id: d.delivery_id,
            })
            .collect();
        ledger.record_deliveries(outcomes).await.unwrap();
        for d in &claimed {
            assert!(
                ledger
                    .acknowledge(d.delivery_id, &agency("procuratorate"))
                    .await
                    .unwrap()
            );
        }
    }
    leads
}

fn signer() -> CheckpointSigner {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    CheckpointSigner::new(ORIGIN, Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()).unwrap()
}

async fn count(db: &TestDb, sql: &'static str) -> i64 {
    let mut conn = db.connect().await;
    sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap()
}

fn archive_dir(root: &Path, name: &str) -> std::path::PathBuf {
    root.join(name)
}

#[tokio::test]
async fn a_closed_range_is_archived_verified_proved_and_never_comes_back() {
    let db = TestDb::create().await;
    let dirs = tempfile::tempdir().unwrap();
    let keks = dirs.path().join("kek");
    std::fs::create_dir(&keks).unwrap();
    liaison_ledger::keys::generate_kek(&keks, "k1").unwrap();
    let mut config = db.config();
    config.partition_entries = PARTITION;
    config.batch_max = 64;
    config.kek_dir = Some(keks);
    let ledger = Ledger::open(config, Arc::new(SystemClock)).await.unwrap();
    let signer = signer();
    let key = CheckpointVerifier::new(ORIGIN, signer.public_key()).unwrap();

    // 40 leads delivered and acknowledged (3 entries each), then one still pending.
    let settled = send(&ledger, 0, 40, true).await;
    let pending = send(&ledger, 100, 1, false).await;
    let pending_seq = ledger.size().await.unwrap();
    assert_eq!(pending_seq, 121);
    // A case erased before its range is archived: the archive holds no body of it, and
    // names the later erasure entry that destroyed them.
    let erasure = ledger
        .erase(NewErasure {
            caseref: "SD-ARCHIVE-1".into(),
            basis: "PIPL Art. 47: retention period ended".into(),
            by: None,
            via: "cli".into(),
        })
        .await
        .unwrap();
    let ErasureOutcome::Erased {
        seq: erased_by,
        messages: erased,
    } = erasure
    else {
        panic!("not erased: {erasure:?}");
    };
    assert_eq!((erased_by, erased.len()), (122, 8));
    ledger.checkpoint(&signer).await.unwrap();
    let size = ledger.size().await.unwrap();

    // Nothing may be archived past the pending delivery's message, nor past whole
    // partitions: 120 settled entries make 3 partitions of 32.
    let first = archive_dir(dirs.path(), "archive-1");
    let archived = ledger
        .archive(ArchiveCutoff::Seq(1_000), &first, &signer, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(archived.record.first_seq, 1);
    assert_eq!(archived.record.last_seq, 96);
    assert_eq!(archived.partitions, 3);
    assert!(
        archived.signed_checkpoint,
        "no checkpoint of size 96 existed"
    );
    assert!(pending_seq > archived.record.last_seq);
    assert_eq!(ledger.archived_through().await.unwrap(), 96);
    assert_eq!(
        ledger.archives().await.unwrap(),
        vec![archived.record.clone()]
    );

    // The range is gone from the hot tables, its partitions dropped; the rest stays.
    assert_eq!(
        count(&db, "SELECT count(*) FROM ledger_entries WHERE seq <= 96").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM messages WHERE seq <= 96").await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM ledger_entries").await,
        (size - 96) as i64
    );
    assert_eq!(
        count(
            &db,
            "SELECT count(*) FROM pg_class WHERE relname IN ('ledger_entries_0', 'ledger_entries_2', 'messages_1')"
        )
        .await,
        0
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM ledger_archived_leaves").await,
        96
    );

    // The archive verifies alone, as an auditor reads it.
    let archive = ExportDir::open(&first).unwrap();
    assert_eq!(archive.offset(), 0);
    let report = archive.verify(&key, None, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!((report.entries, report.verified_through), (96, 96));
    assert_eq!((report.messages, report.erased.len()), (32, 8));
    assert!(report.erased.iter().all(|e| e.by == erased_by));
    let lines = std::fs::read_to_string(first.join("messages.jsonl")).unwrap();
    for e in &erased {
        let line = lines
            .lines()
            .find(|l| l.contains(&e.message.to_string()))
            .unwrap();
        assert!(
            line.contains(&format!("\"erased_by\":{erased_by}")) && !line.contains("\"body\""),
            "{line}"
        );
    }

    // The database alone: from the stored tree at the archive's end.
    let alone = ledger.verify(&key, None, &[], &mut |_| {}).await.unwrap();
    assert!(alone.is_ok(), "{:?}", alone.findings);
    assert_eq!(alone.skipped_through, 96);
    // The whole ledger: the database plus the archive.
    let whole = ledger
        .verify(&key, None, std::slice::from_ref(&archive), &mut |_| {})
        .await
        .unwrap();
    assert!(whole.is_ok(), "{:?}", whole.findings);
    assert_eq!((whole.skipped_through, whole.entries), (0, size));
    // The erasure entry itself was read this time, and names each erased body.
    assert_eq!(whole.erased.len(), 8);
    // A plain export would silently lack the range: refused.
    assert!(matches!(
        ledger
            .export(&dirs.path().join("export"), &key, &mut |_| {})
            .await,
        Err(ExportError::Unexportable(_))
    ));

    // What folds every entry from seq 1 says it cannot, rather than misreport.
    assert!(matches!(
        ledger.replay(&mut |_| {}).await,
        Err(liaison_ledger::LedgerError::Archived { through: 96, .. })
    ));
    assert!(matches!(
        ledger.rebuild_cases().await,
        Err(liaison_ledger::LedgerError::Archived { through: 96, .. })
    ));

    // A changed line of the archive is found, at its seq.
    let forged = dirs.path().join("forged");
    copy_dir(&first, &forged);
    let entries = std::fs::read_to_string(forged.join("entries.jsonl")).unwrap();
    let mut lines: Vec<String> = entries.lines().map(str::to_owned).collect();
    lines[9] = lines[9].replace("\"eco\"", "\"police\"");
    std::fs::write(forged.join("entries.jsonl"), lines.join("\n") + "\n").unwrap();
    let forged = ExportDir::open(&forged).unwrap();
    let caught = ledger
        .verify(&key, None, std::slice::from_ref(&forged), &mut |_| {})
        .await
        .unwrap();
    assert!(!caught.is_ok());
    assert_eq!(caught.first_bad(), Some(Location::Seq(10)));

    // An archived entry is still proved, against the latest checkpoint, from the kept
    // leaf hash: its line in the archive hashes to it.
    ledger.checkpoint(&signer).await.unwrap();
    let (checkpoint, proof) = ledger.entry_proof(10).await.unwrap().unwrap().unwrap();
    assert!(proof.archived);
    assert!(proof.entry.is_empty());
    let line = entries.lines().nth(9).unwrap();
    assert_eq!(proof.leaf_hash, audit::leaf_hash(line.as_bytes()));
    merkle::verify_inclusion(
        &proof.leaf_hash,
        proof.leaf_index,
        proof.tree_size,
        &proof.path,
        &checkpoint.root_hash,
    )
    .expect("the archived entry's proof checks against the checkpoint");
    assert!(ledger.has_seq(10).await.unwrap());

    // Nothing comes back: an archived message resubmitted is the duplicate it is, with
    // its first receipt; no entry, message or delivery is written for it.
    let before = ledger.size().await.unwrap();
    let again = ledger.accept(settled[3].clone()).await.unwrap();
    let AcceptOutcome::Duplicate(receipt) = again else {
        panic!("an archived message was accepted again: {again:?}");
    };
    assert!(receipt.seq <= 96);
    assert_eq!(ledger.size().await.unwrap(), before);
    assert_eq!(
        count(&db, "SELECT count(*) FROM outbox WHERE state = 'pending'").await,
        1,
        "only the lead never delivered waits"
    );
    // Under another sender, the same id is a conflict, as before archival.
    let mut stolen = settled[3].clone();
    stolen.sender = agency("police");
    assert!(matches!(
        ledger.accept(stolen).await.unwrap(),
        AcceptOutcome::Conflict { .. }
    ));

    // Nothing more to archive until the pending delivery settles.
    assert!(matches!(
        ledger
            .archive(
                ArchiveCutoff::Seq(1_000),
                &dirs.path().join("nothing"),
                &signer,
                &mut |_| {}
            )
            .await,
        Err(ArchiveError::Nothing(_))
    ));

    // Settle it, grow, archive the next range: it starts where the first ended and
    // carries the tree before it.
    let claimed = ledger
        .claim_deliveries(10, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed[0].message_id, pending[0].envelope.id);
    ledger
        .record_deliveries(vec![DeliveryOutcome::Dispatched {
            delivery_id: claimed[0].delivery_id,
        }])
        .await
        .unwrap();
    ledger
        .acknowledge(claimed[0].delivery_id, &agency("procuratorate"))
        .await
        .unwrap();
    send(&ledger, 200, 20, true).await;
    ledger.checkpoint(&signer).await.unwrap();
    let second = archive_dir(dirs.path(), "archive-2");
    let next = ledger
        .archive(ArchiveCutoff::Seq(1_000), &second, &signer, &mut |_| {})
        .await
        .unwrap();
    assert_eq!(next.record.first_seq, 97);
    assert_eq!(next.record.last_seq % PARTITION, 0);
    let second = ExportDir::open(&second).unwrap();
    assert_eq!(second.offset(), 96);
    let report = second.verify(&key, None, &mut |_| {}).unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!(report.skipped_through, 96);
    assert_eq!(report.verified_through, next.record.last_seq);

    let both = [archive, second];
    let whole = ledger.verify(&key, None, &both, &mut |_| {}).await.unwrap();
    assert!(whole.is_ok(), "{:?}", whole.findings);
    assert_eq!(whole.entries, ledger.size().await.unwrap());
    // One archive missing: refused, not a partial verdict.
    assert!(matches!(
        ledger.verify(&key, None, &both[1..], &mut |_| {}).await,
        Err(ExportError::Archives(_))
    ));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}
