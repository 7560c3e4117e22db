//! The audit ledger proves itself: a populated ledger (two appenders at once) verifies,
//! its proofs check against its signed checkpoints, and each kind of tampering done
//! directly in PostgreSQL — as a superuser with the triggers off — is detected and named.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::join_all;
use liaison_core::checkpoint::{CheckpointSigner, CheckpointVerifier};
use liaison_core::merkle::{self, CompactRange};
use liaison_core::{Channel, RejectCode, SystemClock, audit};
use liaison_ledger::replay::ReplayDifference;
use liaison_ledger::verify::{Finding, Location, VerifyReport};
use liaison_ledger::{
    AcceptOutcome, DeliveryOutcome, ExportDir, ExportError, Ledger, LedgerConfig, NewMessage,
    NewRejection,
};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

const ORIGIN: &str = "liaison.test/audit";

mod common;
use common::{agency, server_url};

/// A populated ledger in a database of its own, dropped at the end.
struct Populated {
    url: String,
    ledger: Ledger,
    signer: CheckpointSigner,
    /// Accepted (seq, message id), ascending.
    accepted: Vec<(u64, Uuid)>,
    size: u64,
    /// Tree sizes of the checkpoints signed, ascending.
    checkpoints: Vec<u64>,
}

fn lead(sender: &str, n: usize) -> NewMessage {
    let mut lead = common::message(sender, &["procuratorate"], "audit-test");
    let id = lead.envelope.id;
    // Each sender its own cases: a case takes messages from its parties only.
    lead.envelope.caseref = Some(format!("SD-AUDIT-{sender}-{}", n % 7));
    lead.bytes = Bytes::from(format!(r#"{{"id":"{id}","n":{n},"summary":"线索 {n}"}}"#));
    lead
}

fn rejection(n: usize) -> NewRejection {
    NewRejection {
        sender: Some(agency("police")),
        channel: Channel::Https,
        message_id: None,
        caseref: None,
        type_: None,
        claimed: Default::default(),
        code: RejectCode::MalformedJson,
        bytes_sha256: audit::sha256(&n.to_be_bytes()),
        size: n,
        errors: Vec::new(),
    }
}

async fn populate() -> Populated {
    let server = server_url();
    let url = format!("{server}/liaison_audit_{}", Uuid::new_v4().simple());
    liaison_ledger::ensure_database(&url).await.unwrap_or_else(|e| {
        panic!("cannot create a test database at {server} ({e}); start PostgreSQL or set LIAISON_TEST_DATABASE_URL")
    });
    let open = || Ledger::open(LedgerConfig::new(url.clone()), Arc::new(SystemClock));
    // Two appenders on one database, as two liaison instances would be.
    let (first, second) = tokio::join!(open(), open());
    let (first, second) = (first.unwrap(), second.unwrap());
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let signer =
        CheckpointSigner::new(ORIGIN, Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()).unwrap();

    let mut checkpoints = Vec::new();
    for round in 0..3 {
        let accepts = |ledger: Ledger, sender: &'static str| async move {
            join_all((0..40).map(|n| ledger.accept(lead(sender, round * 100 + n)))).await
        };
        let (a, b, r) = tokio::join!(
            accepts(first.clone(), "eco"),
            accepts(second.clone(), "market"),
            join_all((0..10).map(|n| second.reject(rejection(n))))
        );
        for outcome in a.into_iter().chain(b) {
            assert!(matches!(outcome.unwrap(), AcceptOutcome::Recorded(_)));
        }
        for seq in r {
            seq.unwrap();
        }
        // Some deliveries too, so that the ledger holds more than one kind of entry.
        let claimed = first
            .claim_deliveries(30, std::time::Duration::from_secs(30))
            .await
            .unwrap();
        let outcomes = claimed
            .iter()
            .map(|d| DeliveryOutcome::Dispatched {
                delivery_id: d.delivery_id,
            })
            .collect();
        first.record_deliveries(outcomes).await.unwrap();
        let signed = second
            .checkpoint(&signer)
            .await
            .unwrap()
            .expect("the ledger grew");
        checkpoints.push(signed.tree_size);
        // Nothing new: nothing signed.
        assert!(first.checkpoint(&signer).await.unwrap().is_none());
    }
    let size = first.size().await.unwrap();
    assert_eq!(checkpoints.last(), Some(&size));
    let mut conn = PgConnection::connect(&url).await.unwrap();
    let accepted: Vec<(i64, Uuid)> = sqlx::query_as("SELECT seq, id FROM messages ORDER BY seq")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    Populated {
        url,
        ledger: first,
        signer,
        accepted: accepted.into_iter().map(|(s, id)| (s as u64, id)).collect(),
        size,
        checkpoints,
    }
}

impl Populated {
    fn key(&self) -> CheckpointVerifier {
        CheckpointVerifier::new(ORIGIN, self.signer.public_key()).unwrap()
    }

    async fn verify(&self, reference: Option<&ExportDir>) -> VerifyReport {
        self.ledger
            .verify(&self.key(), reference, &[], &mut |_| {})
            .await
            .unwrap()
    }

    async fn export(&self, dir: &std::path::Path) -> ExportDir {
        self.ledger
            .export(dir, &self.key(), &mut |_| {})
            .await
            .unwrap();
        ExportDir::open(dir).unwrap()
    }

    /// Runs SQL as a superuser with every trigger off: what an intruder with database
    /// access could do.
    async fn tamper(&self, statements: &[&str]) {
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        sqlx::query("SET session_replication_role = replica")
            .execute(&mut conn)
            .await
            .unwrap();
        for sql in statements {
            sqlx::query(sqlx::AssertSqlSafe(sql.to_string()))
                .execute(&mut conn)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
        }
    }

    async fn drop(self) {
        let url = self.url.clone();
        drop(self.ledger);
        let _ = liaison_ledger::drop_database(&url).await;
    }
}

#[tokio::test]
async fn an_untouched_ledger_verifies_and_its_proofs_check_against_its_checkpoints() {
    let p = populate().await;
    let report = p.verify(None).await;
    assert!(report.is_ok(), "{:?}", report.findings);
    assert_eq!(report.entries, p.size);
    assert_eq!(report.messages, p.accepted.len() as u64);
    assert_eq!(report.checkpoints, 3);

    // The stored tree gives the same roots as the leaves themselves.
    let stored = p.ledger.entries(1, 100_000).await.unwrap();
    let mut range = CompactRange::new();
    for (i, e) in stored.iter().enumerate() {
        range.push(e.leaf_hash, |_, _| {});
        if p.checkpoints.contains(&(i as u64 + 1)) {
            assert_eq!(p.ledger.root_at(i as u64 + 1).await.unwrap(), range.root());
        }
    }
    assert_eq!(report.root, range.root());

    // Every entry of a message is included in the latest signed checkpoint.
    let latest = p.ledger.latest_checkpoint().await.unwrap().unwrap();
    let checkpoint = p.key().open(&latest.note).unwrap();
    assert_eq!(checkpoint.size, p.size);
    for (seq, id) in [p.accepted[0], p.accepted[p.accepted.len() / 2]] {
        let proofs = p.ledger.message_proofs(id).await.unwrap().unwrap();
        assert!(proofs.pending.is_empty());
        assert!(proofs.proofs.iter().any(|pr| pr.seq == seq));
        for proof in &proofs.proofs {
            merkle::verify_inclusion(
                &proof.leaf_hash,
                proof.leaf_index,
                proof.tree_size,
                &proof.path,
                &checkpoint.root,
            )
            .unwrap_or_else(|e| panic!("entry {}: {e}", proof.seq));
        }
    }
    // Each checkpoint is consistent with the next.
    for pair in p.checkpoints.windows(2) {
        let proof = p.ledger.consistency_proof(pair[0], pair[1]).await.unwrap();
        merkle::verify_consistency(
            pair[0],
            pair[1],
            &proof.from_root,
            &proof.to_root,
            &proof.path,
        )
        .unwrap();
    }

    // An export verifies on its own, with the same root.
    let dir = tempfile::tempdir().unwrap();
    let export = p.export(&dir.path().join("x")).await;
    assert_eq!(export.manifest.entries, p.size);
    let offline = export
        .verify(&export.verifier().unwrap(), None, &mut |_| {})
        .unwrap();
    assert!(offline.is_ok(), "{:?}", offline.findings);
    assert_eq!(offline.root, report.root);

    // Replaying the entries gives the outbox's delivery states; a hand-made change shows.
    let replay = p.ledger.replay(&mut |_| {}).await.unwrap();
    assert!(replay.differences.is_empty(), "{:?}", replay.differences);
    assert_eq!(replay.deliveries, p.accepted.len() as u64);
    assert!(replay.cases.len() >= 7);
    p.tamper(&[
        "UPDATE outbox SET state = 'acknowledged' WHERE delivery_id = \
                (SELECT min(delivery_id) FROM outbox WHERE state = 'dispatched')",
    ])
    .await;
    let replay = p.ledger.replay(&mut |_| {}).await.unwrap();
    assert!(
        matches!(&replay.differences[..], [ReplayDifference::State { live, derived, .. }] if live == "acknowledged" && derived == "dispatched"),
        "{:?}",
        replay.differences
    );
    p.drop().await;
}

#[tokio::test]
async fn a_changed_byte_in_a_payload_names_its_accepted_entry() {
    let p = populate().await;
    let dir = tempfile::tempdir().unwrap();
    let before = p.export(&dir.path().join("before")).await;
    let (seq, id) = p.accepted[17];
    // The intruder fixes up the digest column too; only the ledger entry gives it away.
    p.tamper(&[&format!(
        "UPDATE messages SET body = overlay(body placing '\\x58'::bytea from 12 for 1), \
         sha256 = sha256(overlay(body placing '\\x58'::bytea from 12 for 1)) WHERE id = '{id}'"
    )])
    .await;
    let report = p.verify(None).await;
    assert_eq!(report.first_bad_seq(), Some(seq), "{:?}", report.findings);
    assert!(
        matches!(report.findings[0], Finding::PayloadMismatch { seq: s, message } if s == seq && message == id)
    );
    // The export taken before still verifies, and the ledger still extends it entry by
    // entry (a payload is not a leaf) — but the ledger itself fails.
    assert!(!p.verify(Some(&before)).await.is_ok());
    p.drop().await;
}

#[tokio::test]
async fn a_deleted_row_is_named() {
    let p = populate().await;
    let dir = tempfile::tempdir().unwrap();
    let before = p.export(&dir.path().join("before")).await;
    let victim = p.size / 2;
    p.tamper(&[
        &format!("DELETE FROM messages WHERE seq = {victim}"),
        &format!("DELETE FROM ledger_entries WHERE seq = {victim}"),
    ])
    .await;
    let report = p.verify(None).await;
    assert_eq!(
        report.first_bad_seq(),
        Some(victim),
        "{:?}",
        report.findings
    );
    assert!(report.findings.contains(&Finding::Missing {
        from: victim,
        to: victim
    }));
    let against = p.verify(Some(&before)).await;
    assert_eq!(against.first_bad_seq(), Some(victim));
    p.drop().await;
}

#[tokio::test]
async fn two_swapped_rows_are_named() {
    let p = populate().await;
    let dir = tempfile::tempdir().unwrap();
    let before = p.export(&dir.path().join("before")).await;
    let a = 30;
    p.tamper(&[&format!(
        "UPDATE ledger_entries t SET entry = o.entry, leaf_hash = o.leaf_hash, kind = o.kind, \
                message_id = o.message_id \
         FROM ledger_entries o WHERE (t.seq, o.seq) IN (({a}, {b}), ({b}, {a}))",
        b = a + 1
    )])
    .await;
    let report = p.verify(None).await;
    assert_eq!(report.first_bad_seq(), Some(a), "{:?}", report.findings);
    // One finding for the pair, and none for what the swap implies (the bodies' entries
    // out of place, the tree nodes over them); the lookup columns the intruder did not
    // swap are copies out of step, found each.
    assert!(report.findings.contains(&Finding::SeqMismatch {
        seq: a,
        embedded: a + 1,
        run: 1
    }));
    assert!(
        report.findings.iter().all(|f| matches!(
            f,
            Finding::SeqMismatch { seq, .. } if *seq == a
        ) || matches!(f, Finding::CopiedColumn { .. })),
        "{:?}",
        report.findings
    );
    assert_eq!(p.verify(Some(&before)).await.first_bad_seq(), Some(a));
    p.drop().await;
}

#[tokio::test]
async fn removed_last_rows_are_named_by_the_checkpoint_that_covered_them() {
    let p = populate().await;
    let dir = tempfile::tempdir().unwrap();
    let before = p.export(&dir.path().join("before")).await;
    let keep = p.size - 5;
    p.tamper(&[
        &format!(
            "DELETE FROM outbox WHERE message_id IN (SELECT id FROM messages WHERE seq > {keep})"
        ),
        &format!("DELETE FROM messages WHERE seq > {keep}"),
        &format!("DELETE FROM ledger_entries WHERE seq > {keep}"),
        &format!("DELETE FROM ledger_checkpoints WHERE tree_size > {keep}"),
        // Stored tree nodes over the removed entries would give it away (see `copies.rs`).
        &format!("DELETE FROM ledger_tree_nodes WHERE idx >= ({keep}::bigint >> level::int)"),
    ])
    .await;
    // With the checkpoint and the tree nodes gone too, the database alone looks whole…
    assert!(p.verify(None).await.is_ok());
    // …but the earlier export holds the signed checkpoint of the full size.
    let against = p.verify(Some(&before)).await;
    assert_eq!(
        against.first_bad_seq(),
        Some(keep + 1),
        "{:?}",
        against.findings
    );
    assert_eq!(against.bad_checkpoints(), vec![p.size]);
    p.drop().await;
}

#[tokio::test]
async fn removed_last_rows_under_a_kept_checkpoint_are_named() {
    let p = populate().await;
    let keep = p.size - 3;
    p.tamper(&[
        &format!("DELETE FROM messages WHERE seq > {keep}"),
        &format!("DELETE FROM ledger_entries WHERE seq > {keep}"),
    ])
    .await;
    let report = p.verify(None).await;
    assert_eq!(
        report.first_bad_seq(),
        Some(keep + 1),
        "{:?}",
        report.findings
    );
    assert_eq!(report.bad_checkpoints(), vec![p.size]);
    p.drop().await;
}

#[tokio::test]
async fn a_forged_checkpoint_signature_is_named() {
    let p = populate().await;
    let first = p.checkpoints[0];
    let note: String =
        sqlx::query_scalar("SELECT note FROM ledger_checkpoints WHERE tree_size = $1")
            .bind(first as i64)
            .fetch_one(p.ledger.pool())
            .await
            .unwrap();
    // Flip one base64 character of the signature.
    let (text, sig) = note.trim_end().rsplit_once(' ').unwrap();
    let flipped = if sig.starts_with('A') { 'B' } else { 'A' };
    let forged = format!("{text} {flipped}{}\n", &sig[1..]);
    p.tamper(&[&format!(
        "UPDATE ledger_checkpoints SET note = '{}' WHERE tree_size = {first}",
        forged.replace('\'', "''")
    )])
    .await;
    let report = p.verify(None).await;
    assert_eq!(
        report.bad_checkpoints(),
        vec![first],
        "{:?}",
        report.findings
    );
    assert!(
        matches!(report.findings[0], Finding::CheckpointSignature { tree_size, .. } if tree_size == first)
    );
    p.drop().await;
}

#[tokio::test]
async fn an_entry_rewritten_with_its_leaf_hash_is_located_by_roots_and_by_an_earlier_export() {
    let p = populate().await;
    let dir = tempfile::tempdir().unwrap();
    let before = p.export(&dir.path().join("before")).await;
    let victim = p.checkpoints[0] + 2;
    // Rewrite an entry's detail and recompute its leaf hash: no row-level check can see it.
    p.tamper(&[&format!(
        "UPDATE ledger_entries SET entry = convert_to(replace(convert_from(entry, 'UTF8'), '\"detail\":{{', '\"detail\":{{\"x\":1,'), 'UTF8') WHERE seq = {victim}"
    ), &format!(
        "UPDATE ledger_entries SET leaf_hash = sha256('\\x00'::bytea || entry) WHERE seq = {victim}"
    )])
    .await;
    let report = p.verify(None).await;
    assert!(!report.is_ok());
    assert_eq!(report.bad_checkpoints(), p.checkpoints[1..].to_vec());
    // The stored tree nodes bound it to the two entries under the lowest wrong node: one
    // finding, not one per level of the tree and per later checkpoint.
    assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
    let pair = if victim % 2 == 0 {
        (victim - 1, victim)
    } else {
        (victim, victim + 1)
    };
    assert_eq!(
        report.first_bad(),
        Some(Location::Range {
            from: pair.0,
            to: pair.1
        })
    );
    // Offline, an export has no leaf hashes or tree nodes: only the checkpoints bound it,
    // to the entries after the last one that still matches, and that is what is said.
    let after = p.export(&dir.path().join("after")).await;
    let offline = after.verify(&p.key(), None, &mut |_| {}).unwrap();
    assert_eq!(
        offline.first_bad(),
        Some(Location::Range {
            from: p.checkpoints[0] + 1,
            to: p.checkpoints[1]
        }),
        "{:?}",
        offline.findings
    );
    assert_eq!(offline.first_bad_seq(), None);
    assert_eq!(offline.findings_total, 1);
    // The earlier export names it exactly, live and offline.
    let against = p.verify(Some(&before)).await;
    assert_eq!(
        against.first_bad_seq(),
        Some(victim),
        "{:?}",
        against.findings
    );
    let offline = after.verify(&p.key(), Some(&before), &mut |_| {}).unwrap();
    assert_eq!(offline.first_bad(), Some(Location::Seq(victim)));
    p.drop().await;
}

/// An export never hands an auditor a key that proves nothing: the key of another PKI, or
/// the right key under another origin, verifies none of the checkpoints, and the export is
/// refused before a file is written. The export's own verifier key opens them all.
#[tokio::test]
async fn an_export_with_a_key_that_verifies_no_checkpoint_is_refused() {
    let p = populate().await;
    let dir = tempfile::tempdir().unwrap();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let other_key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    let another_pki = CheckpointSigner::new(ORIGIN, other_key).unwrap().verifier();
    let another_origin =
        CheckpointVerifier::new("liaison.example/demo", p.signer.public_key()).unwrap();
    for wrong in [&another_pki, &another_origin] {
        let out = dir.path().join("refused");
        let error = p
            .ledger
            .export(&out, wrong, &mut |_| {})
            .await
            .expect_err("a key that verifies no checkpoint is refused");
        assert!(
            matches!(&error, ExportError::WrongKey { vkey, checkpoints: 3, .. } if *vkey == wrong.vkey()),
            "{error}"
        );
        let text = error.to_string();
        assert!(
            text.contains("verifies none of the ledger's 3 checkpoints"),
            "{text}"
        );
        assert!(
            text.contains("tls_dir") && text.contains("[ledger] origin"),
            "{text}"
        );
        assert!(!out.exists(), "nothing is written");
    }

    let out = dir.path().join("export");
    let exported = p.ledger.export(&out, &p.key(), &mut |_| {}).await.unwrap();
    assert!(exported.unverified_checkpoints.is_empty());
    let vkey = std::fs::read_to_string(out.join(liaison_ledger::VKEY_FILE)).unwrap();
    assert_eq!(vkey, format!("{}\n", p.key().vkey()));
    let export = ExportDir::open(&out).unwrap();
    assert_eq!(export.verifier().unwrap(), p.key());
    assert!(
        export
            .verify(&export.verifier().unwrap(), None, &mut |_| {})
            .unwrap()
            .is_ok()
    );
    // A vkey file that disagrees with the export's public key is not trusted.
    std::fs::write(out.join(liaison_ledger::VKEY_FILE), another_pki.vkey()).unwrap();
    assert!(export.verifier().is_err());
    p.drop().await;
}

/// An export holds every message body: its files are the owner's alone, whatever the
/// umask, and so is the directory (also when the auditor made it beforehand).
#[cfg(unix)]
#[tokio::test]
async fn an_export_is_readable_by_its_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let p = populate().await;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("export");
    std::fs::create_dir(&out).unwrap();
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.export(&out).await;
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&out), 0o700, "export directory");
    let mut files = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
        files += 1;
    }
    assert_eq!(
        files, 7,
        "manifest, entries, messages, checkpoints, cosignatures, key, vkey"
    );
    // The layout an auditor's tools read: the files, and the manifest's members with the
    // type of each value (the values themselves differ from run to run).
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("manifest.json")).unwrap()).unwrap();
    let members: Vec<String> = manifest
        .as_object()
        .unwrap()
        .iter()
        .map(|(key, value)| {
            let kind = match value {
                serde_json::Value::String(_) if key == "format" => value.to_string(),
                serde_json::Value::String(_) => "string".into(),
                serde_json::Value::Number(_) => "number".into(),
                other => format!("{other}"),
            };
            format!("{key}: {kind}")
        })
        .collect();
    insta::assert_snapshot!(
        "export_layout",
        format!(
            "{}\n\nmanifest.json\n{}",
            names.join("\n"),
            members.join("\n")
        )
    );
    p.drop().await;
}
