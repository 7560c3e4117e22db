//! The columns copied beside the canonical entry bytes — for lookups, traces, proofs and
//! read authorization — are audited like the bytes: each one changed directly in
//! PostgreSQL (as a superuser, triggers off) makes `verify` fail and name the seq, and so
//! does a changed outbox recipient or a changed stored tree node. Each change is undone
//! before the next, and the ledger must verify again, so every check is seen on its own.

use std::sync::Arc;

use bytes::Bytes;
use liaison_core::SystemClock;
use liaison_core::checkpoint::{CheckpointSigner, CheckpointVerifier};
use liaison_ledger::verify::{Finding, Location, VerifyReport};
use liaison_ledger::{AcceptOutcome, DeliveryOutcome, ExportDir, Ledger, LedgerConfig, NewMessage};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use sqlx::Connection;
use sqlx::postgres::PgConnection;
use uuid::Uuid;

const ORIGIN: &str = "liaison.test/copies";

mod common;
use common::server_url;

fn message(sender: &str, caseref: &str, inreplyto: Option<Uuid>, to: &[&str]) -> NewMessage {
    let mut message = common::message(sender, to, "copies-test");
    let id = message.envelope.id;
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    message.envelope.caseref = Some(caseref.into());
    message.envelope.inreplyto = inreplyto;
    message.envelope.traceparent = Some(traceparent.into());
    message.bytes = Bytes::from(format!(
        r#"{{"id":"{id}","caseref":"{caseref}","traceparent":"{traceparent}"}}"#
    ));
    message
}

struct Fixture {
    url: String,
    ledger: Ledger,
    signer: CheckpointSigner,
    /// The reply: accepted with inreplyto, two recipients, a dispatched delivery.
    reply: (u64, Uuid),
}

async fn fixture() -> Fixture {
    let url = format!(
        "{}/liaison_copies_{}",
        server_url(),
        Uuid::new_v4().simple()
    );
    liaison_ledger::ensure_database(&url)
        .await
        .unwrap_or_else(|e| panic!("cannot create a test database ({e}); start PostgreSQL"));
    let ledger = Ledger::open(LedgerConfig::new(url.clone()), Arc::new(SystemClock))
        .await
        .unwrap();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let signer =
        CheckpointSigner::new(ORIGIN, Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()).unwrap();
    let mut reply = None;
    let mut original = None;
    for n in 0..8 {
        let m = message(
            "eco",
            &format!("SD-COPY-{}", n % 3),
            original,
            &["procuratorate", "court"],
        );
        let id = m.envelope.id;
        let AcceptOutcome::Recorded(receipt) = ledger.accept(m).await.unwrap() else {
            panic!("recorded")
        };
        if original.is_some() && reply.is_none() {
            reply = Some((receipt.seq, id));
        }
        original.get_or_insert(id);
    }
    let claimed = ledger
        .claim_deliveries(100, std::time::Duration::from_secs(30))
        .await
        .unwrap();
    let outcomes = claimed
        .iter()
        .map(|d| DeliveryOutcome::Dispatched {
            delivery_id: d.delivery_id,
        })
        .collect();
    ledger.record_deliveries(outcomes).await.unwrap();
    ledger.checkpoint(&signer).await.unwrap().expect("signed");
    Fixture {
        url,
        ledger,
        signer,
        reply: reply.unwrap(),
    }
}

impl Fixture {
    fn key(&self) -> CheckpointVerifier {
        CheckpointVerifier::new(ORIGIN, self.signer.public_key()).unwrap()
    }

    async fn verify(&self) -> VerifyReport {
        self.ledger
            .verify(&self.key(), None, &[], &mut |_| {})
            .await
            .unwrap()
    }

    /// As a superuser with every trigger off: what an intruder with database access does.
    async fn sql(&self, statement: &str) {
        let mut conn = PgConnection::connect(&self.url).await.unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "SET session_replication_role = replica; {statement}"
        )))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("{statement}: {e}"));
        conn.close().await.ok();
    }

    /// Applies `change`, expects a finding that `matches` at `seq`, then `undo`es it and
    /// expects a clean ledger again.
    /// `seq`: where the finding places the fault (a stored tree node, only to the entries
    /// under it).
    async fn expect(
        &self,
        change: &str,
        undo: &str,
        at: impl Into<Location>,
        matches: impl Fn(&Finding) -> bool,
    ) {
        self.sql(change).await;
        let report = self.verify().await;
        assert!(
            report.findings.iter().any(&matches),
            "{change}: expected finding missing in {:?}",
            report.findings
        );
        assert_eq!(
            report.first_bad(),
            Some(at.into()),
            "{change}: {:?}",
            report.findings
        );
        self.sql(undo).await;
        let report = self.verify().await;
        assert!(
            report.is_ok(),
            "after undoing {change}: {:?}",
            report.findings
        );
    }
}

fn column(name: &'static str, at: u64) -> impl Fn(&Finding) -> bool {
    move |f| matches!(f, Finding::CopiedColumn { seq, column, .. } if *seq == at && *column == name)
}

#[tokio::test]
async fn every_copied_column_changed_by_hand_fails_verify_naming_its_seq() {
    let f = fixture().await;
    let report = f.verify().await;
    assert!(report.is_ok(), "{:?}", report.findings);
    let (seq, id) = f.reply;
    let entry = format!("FROM ledger_entries WHERE seq = {seq}");

    // ledger_entries: each lookup column of the reply's accepted entry.
    for (col, changed, name) in [
        ("kind", "'delivery.failed'", "ledger_entries.kind"),
        ("agency", "'police'", "ledger_entries.agency"),
        ("caseref", "'SD-ELSEWHERE'", "ledger_entries.caseref"),
        ("caseref", "NULL", "ledger_entries.caseref"),
        (
            "message_id",
            "gen_random_uuid()",
            "ledger_entries.message_id",
        ),
        ("message_id", "NULL", "ledger_entries.message_id"),
        (
            "recorded_at",
            "recorded_at + interval '1 hour'",
            "ledger_entries.recorded_at",
        ),
    ] {
        f.expect(
            &format!(
                "CREATE TABLE keep AS SELECT {col} AS v {entry}; \
                 UPDATE ledger_entries SET {col} = {changed} WHERE seq = {seq}"
            ),
            &format!(
                "UPDATE ledger_entries SET {col} = (SELECT v FROM keep) WHERE seq = {seq}; DROP TABLE keep"
            ),
            seq,
            column(name, seq),
        )
        .await;
    }

    // messages: each copy of what the accepted entry (or the hashed body) says.
    for (col, changed, name) in [
        ("sender", "'police'", "messages.sender"),
        ("type", "'case.transfer.v1'", "messages.type"),
        ("caseref", "'SD-ELSEWHERE'", "messages.caseref"),
        ("inreplyto", "NULL", "messages.inreplyto"),
        ("inreplyto", "gen_random_uuid()", "messages.inreplyto"),
        ("channel", "'amqp'", "messages.channel"),
        ("traceparent", "NULL", "messages.traceparent"),
        (
            "route",
            r#"'{"recipients":[{"agency":"police","role":"to","rule":"copies-test"}]}'::jsonb"#,
            "messages.route",
        ),
    ] {
        f.expect(
            &format!(
                "CREATE TABLE keep AS SELECT {col} AS v FROM messages WHERE id = '{id}'; \
                 UPDATE messages SET {col} = {changed} WHERE id = '{id}'"
            ),
            &format!(
                "UPDATE messages SET {col} = (SELECT v FROM keep) WHERE id = '{id}'; DROP TABLE keep"
            ),
            seq,
            column(name, seq),
        )
        .await;
    }

    // outbox: the recipient that decides who gets (and may read) the message.
    f.expect(
        &format!(
            "UPDATE outbox SET recipient = 'police' WHERE message_id = '{id}' AND recipient = 'court'"
        ),
        &format!(
            "UPDATE outbox SET recipient = 'court' WHERE message_id = '{id}' AND recipient = 'police'"
        ),
        seq,
        |finding| matches!(finding, Finding::Delivery { seq: s, delivery_id: Some(_), .. } if *s == seq),
    )
    .await;
    f.expect(
        &format!("UPDATE outbox SET role = 'to' WHERE message_id = '{id}' AND recipient = 'court'"),
        &format!("UPDATE outbox SET role = 'cc' WHERE message_id = '{id}' AND recipient = 'court'"),
        seq,
        |finding| matches!(finding, Finding::Delivery { seq: s, .. } if *s == seq),
    )
    .await;
    // A row added for another agency.
    f.expect(
        &format!(
            "INSERT INTO outbox (message_id, recipient, role, state, next_attempt_at) \
             VALUES ('{id}', 'police', 'to', 'dispatched', now())"
        ),
        &format!("DELETE FROM outbox WHERE message_id = '{id}' AND recipient = 'police'"),
        seq,
        |finding| matches!(finding, Finding::Delivery { seq: s, delivery_id: Some(_), .. } if *s == seq),
    )
    .await;

    // ledger_tree_nodes: a stored interior node (level 1 over seqs 1..=2) changed.
    f.expect(
        "CREATE TABLE keep AS SELECT hash AS v FROM ledger_tree_nodes WHERE level = 1 AND idx = 0; \
         UPDATE ledger_tree_nodes SET hash = sha256(hash) WHERE level = 1 AND idx = 0",
        "UPDATE ledger_tree_nodes SET hash = (SELECT v FROM keep) WHERE level = 1 AND idx = 0; \
         DROP TABLE keep",
        Location::Range { from: 1, to: 2 },
        |finding| {
            matches!(
                finding,
                Finding::TreeNode {
                    level: 1,
                    index: 0,
                    ..
                }
            )
        },
    )
    .await;

    f.ledger.pool().close().await;
    drop(f.ledger);
    let _ = liaison_ledger::drop_database(&f.url).await;
}

/// Offline, the export carries only the message columns `id`, `seq` and `sha256` beside the
/// body; each of them changed in the export is found and named by seq too.
#[tokio::test]
async fn the_copied_columns_an_export_carries_are_checked_offline() {
    let f = fixture().await;
    let (seq, id) = f.reply;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export");
    f.ledger
        .export(&path, &f.signer.verifier(), &mut |_| {})
        .await
        .unwrap();
    let messages = std::fs::read_to_string(path.join("messages.jsonl")).unwrap();
    let line = messages
        .lines()
        .find(|l| l.contains(&id.to_string()))
        .unwrap()
        .to_owned();
    let mut value: serde_json::Value = serde_json::from_str(&line).unwrap();
    let other = Uuid::now_v7().to_string();
    for (field, changed) in [
        ("id", serde_json::json!(other)),
        ("sha256", serde_json::json!("00".repeat(32))),
        ("seq", serde_json::json!(seq + 1)),
    ] {
        let original = value[field].clone();
        value[field] = changed;
        std::fs::write(
            path.join("messages.jsonl"),
            messages.replace(&line, &value.to_string()),
        )
        .unwrap();
        let export = ExportDir::open(&path).unwrap();
        let report = export
            .verify(&export.verifier().unwrap(), None, &mut |_| {})
            .unwrap();
        assert_eq!(
            report.first_bad_seq(),
            Some(seq),
            "{field}: {:?}",
            report.findings
        );
        value[field] = original;
    }
    std::fs::write(path.join("messages.jsonl"), &messages).unwrap();
    let export = ExportDir::open(&path).unwrap();
    let report = export
        .verify(&export.verifier().unwrap(), None, &mut |_| {})
        .unwrap();
    assert!(report.is_ok(), "{:?}", report.findings);

    f.ledger.pool().close().await;
    drop(f.ledger);
    let _ = liaison_ledger::drop_database(&f.url).await;
}
