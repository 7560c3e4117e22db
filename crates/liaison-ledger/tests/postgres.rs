//! The ledger against a real PostgreSQL. Each test works in a database of its own, so the
//! tests run in parallel; set LIAISON_TEST_DATABASE_URL to point them elsewhere.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::join_all;
use liaison_core::{Channel, Clock, Entry, EntryKind, ManualClock, RejectCode, SystemClock, audit};
use liaison_ledger::{
    AcceptOutcome, AcceptReceipt, DeliveryOutcome, Ledger, LedgerConfig, LedgerError, NewMessage,
    NewRejection, RejectionDetail, TraceKey,
};
use sqlx::postgres::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

mod common;
use common::{TestDb, admin_connection, agency};

fn message(id: Uuid, sender: &str, caseref: Option<&str>, body: &str, to: &[&str]) -> NewMessage {
    let mut message = common::message(sender, to, "test-rule");
    message.envelope.id = id;
    message.envelope.caseref = caseref.map(str::to_owned);
    message.envelope.traceparent =
        Some("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into());
    message.bytes = Bytes::from(body.to_owned());
    message
}

fn lead(sender: &str, to: &[&str]) -> NewMessage {
    let id = Uuid::now_v7();
    // One case per sender: a case takes messages from its parties only.
    let caseref = match sender {
        "eco" => "SD-1".to_owned(),
        other => format!("SD-1-{other}"),
    };
    message(
        id,
        sender,
        Some(&caseref),
        &format!(r#"{{"id":"{id}"}}"#),
        to,
    )
}

fn recorded(outcome: AcceptOutcome) -> AcceptReceipt {
    match outcome {
        AcceptOutcome::Recorded(receipt) => receipt,
        other => panic!("expected a new record, got {other:?}"),
    }
}

async fn count(conn: &mut PgConnection, table: &'static str) -> i64 {
    let sql = format!("SELECT count(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_one(conn)
        .await
        .unwrap()
}

async fn all_entries(ledger: &Ledger) -> Vec<Entry> {
    ledger
        .entries(1, 100_000)
        .await
        .unwrap()
        .iter()
        .map(|stored| Entry::from_canonical(&stored.entry).unwrap())
        .collect()
}

#[tokio::test]
async fn accept_records_entry_message_and_outbox_rows() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    let notified = ledger.outbox_notify();
    let m = lead("eco", &["procuratorate", "court"]);
    let id = m.envelope.id;

    let receipt = recorded(ledger.accept(m.clone()).await.unwrap());
    assert_eq!(receipt.seq, 1);
    assert_eq!(receipt.id, id);
    assert_eq!(receipt.recipients, m.route.recipients);
    tokio::time::timeout(Duration::from_secs(5), notified.notified())
        .await
        .expect("a commit with new outbox rows wakes the relay");

    let mut conn = db.connect().await;
    assert_eq!(count(&mut conn, "ledger_entries").await, 1);
    assert_eq!(count(&mut conn, "messages").await, 1);
    let pending: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE message_id = $1 AND state = 'pending'",
    )
    .bind(id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(pending, 2);

    let entries = all_entries(&ledger).await;
    assert_eq!(entries[0].seq, 1);
    assert_eq!(entries[0].kind, EntryKind::MessageAccepted);
    assert_eq!(entries[0].message, Some(id));
    assert_eq!(entries[0].caseref.as_deref(), Some("SD-1"));
    assert_eq!(entries[0].agency, Some(agency("eco")));
    assert_eq!(entries[0].at, receipt.recorded_at);
    assert_eq!(
        entries[0].detail["sha256"],
        hex::encode(audit::sha256(&m.bytes))
    );

    let stored = ledger.message(id).await.unwrap().expect("stored message");
    assert_eq!(
        (stored.seq, stored.body.clone(), stored.sender.clone()),
        (1, m.bytes.clone(), agency("eco"))
    );
    assert_eq!(stored.deliveries.len(), 2);
    assert!(
        stored
            .deliveries
            .iter()
            .all(|d| d.state == "pending" && d.attempts == 0)
    );
    let original = ledger.original(id).await.unwrap().expect("original");
    assert_eq!(
        original.recipients,
        vec![agency("procuratorate"), agency("court")]
    );
    assert!(ledger.message(Uuid::now_v7()).await.unwrap().is_none());
    ledger.ping().await.unwrap();
}

#[tokio::test]
async fn resubmission_with_the_same_bytes_gets_the_same_receipt() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    let m = lead("eco", &["procuratorate"]);

    let first = recorded(ledger.accept(m.clone()).await.unwrap());
    let again = ledger.accept(m.clone()).await.unwrap();
    assert_eq!(again, AcceptOutcome::Duplicate(first));
    let mut conn = db.connect().await;
    assert_eq!(count(&mut conn, "ledger_entries").await, 1);
    assert_eq!(count(&mut conn, "outbox").await, 1);
}

#[tokio::test]
async fn the_same_id_with_other_bytes_or_another_sender_conflicts() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    let m = lead("eco", &["procuratorate"]);
    recorded(ledger.accept(m.clone()).await.unwrap());

    let mut other_bytes = m.clone();
    other_bytes.bytes = Bytes::from_static(b"{\"changed\":true}");
    assert_eq!(
        ledger.accept(other_bytes).await.unwrap(),
        AcceptOutcome::Conflict {
            existing_seq: 1,
            same_sender: true
        }
    );
    let mut other_sender = m.clone();
    other_sender.sender = agency("police");
    assert_eq!(
        ledger.accept(other_sender).await.unwrap(),
        AcceptOutcome::Conflict {
            existing_seq: 1,
            same_sender: false
        }
    );
    assert_eq!(all_entries(&ledger).await.len(), 1);
}

#[tokio::test]
async fn rejection_is_recorded_with_its_code() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    let id = Uuid::now_v7();
    let rejection = NewRejection {
        sender: Some(agency("eco")),
        channel: Channel::Amqp,
        message_id: Some(id),
        caseref: Some("SD-9".into()),
        type_: Some("pil.lead.v1".into()),
        claimed: Default::default(),
        code: RejectCode::PayloadInvalid,
        bytes_sha256: audit::sha256(b"bad"),
        size: 3,
        errors: vec![RejectionDetail {
            pointer: "/data/amount".into(),
            keyword: "type".into(),
            message: "must be a number".into(),
        }],
    };

    let seq = ledger.reject(rejection).await.unwrap();
    assert_eq!(seq, 1);
    let entry = &all_entries(&ledger).await[0];
    assert_eq!(entry.kind, EntryKind::MessageRejected);
    assert_eq!(entry.message, Some(id));
    assert_eq!(entry.agency, Some(agency("eco")));
    assert_eq!(entry.detail["code"], "payload_invalid");
    assert_eq!(entry.detail["channel"], "amqp");
    assert_eq!(entry.detail["errors"][0]["pointer"], "/data/amount");
    assert!(
        ledger.message(id).await.unwrap().is_none(),
        "a rejected message is not stored"
    );
}

#[tokio::test]
async fn concurrent_accepts_are_group_committed_with_gapless_seqs() {
    const N: u64 = 2_000;
    let db = TestDb::create().await;
    let ledger = db.open().await;

    let outcomes = join_all((0..N).map(|_| ledger.accept(lead("eco", &["court"])))).await;
    let mut seqs: Vec<u64> = outcomes
        .into_iter()
        .map(|o| recorded(o.unwrap()).seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=N).collect::<Vec<_>>());

    let batches = ledger.batches_committed();
    eprintln!("{N} concurrent accepts committed in {batches} transactions");
    assert!(
        batches <= N / 20,
        "{N} accepts took {batches} transactions: group commit is not grouping"
    );
    let stored: Vec<u64> = ledger
        .entries(1, 10_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(stored, (1..=N).collect::<Vec<_>>());
}

#[tokio::test]
async fn a_request_the_database_refuses_fails_alone_and_the_committer_goes_on() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    let mut poison = lead("eco", &["court"]);
    // PostgreSQL text cannot hold NUL: this request's batch fails at the database.
    poison.envelope.caseref = Some("SD-\0-1".into());
    let mut requests: Vec<NewMessage> = (0..50).map(|_| lead("eco", &["court"])).collect();
    requests.insert(25, poison);

    let outcomes = join_all(requests.into_iter().map(|m| ledger.accept(m))).await;
    let failed: Vec<&LedgerError> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    assert_eq!(failed.len(), 1, "only the bad request fails: {failed:?}");
    assert!(
        matches!(failed[0], LedgerError::Commit(_)) && !failed[0].is_transient(),
        "{}",
        failed[0]
    );
    let mut seqs: Vec<u64> = outcomes
        .into_iter()
        .filter_map(Result::ok)
        .map(|o| recorded(o).seq)
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());

    let after = recorded(ledger.accept(lead("eco", &["court"])).await.unwrap());
    assert_eq!(
        after.seq, 51,
        "the committer still runs and no seq was lost"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_keep_seqs_gapless_and_hashes_right() {
    const PER_INSTANCE: usize = 400;
    let db = TestDb::create().await;
    let (first, second) = tokio::join!(db.open(), db.open());

    let appends = |ledger: Ledger, sender: &'static str| async move {
        let accepts = join_all((0..PER_INSTANCE).map(|_| ledger.accept(lead(sender, &["court"]))));
        let rejects = join_all((0..PER_INSTANCE / 4).map(|i| {
            ledger.reject(NewRejection {
                sender: Some(agency(sender)),
                channel: Channel::Https,
                message_id: None,
                caseref: None,
                type_: None,
                claimed: Default::default(),
                code: RejectCode::MalformedJson,
                bytes_sha256: audit::sha256(format!("{sender}{i}").as_bytes()),
                size: i,
                errors: Vec::new(),
            })
        }));
        let (accepts, rejects) = tokio::join!(accepts, rejects);
        let mut seqs: Vec<u64> = accepts
            .into_iter()
            .map(|o| recorded(o.unwrap()).seq)
            .collect();
        seqs.extend(rejects.into_iter().map(Result::unwrap));
        seqs
    };
    let (a, b) = tokio::join!(
        tokio::spawn(appends(first.clone(), "eco")),
        tokio::spawn(appends(second.clone(), "police"))
    );
    let answered: Vec<u64> = a.unwrap().into_iter().chain(b.unwrap()).collect();
    let total = (PER_INSTANCE + PER_INSTANCE / 4) * 2;
    assert_eq!(
        answered.iter().collect::<HashSet<_>>().len(),
        total,
        "every answer has its own seq"
    );

    let stored = first.entries(1, 10_000).await.unwrap();
    let seqs: Vec<u64> = stored.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (1..=total as u64).collect::<Vec<_>>());
    for stored in &stored {
        assert_eq!(
            stored.leaf_hash,
            audit::leaf_hash(&stored.entry),
            "leaf hash of entry {}",
            stored.seq
        );
        let entry = Entry::from_canonical(&stored.entry).unwrap();
        assert_eq!(entry.seq, stored.seq);
        assert_eq!(
            entry.leaf_hash(),
            stored.leaf_hash,
            "entry {} re-encodes to its stored bytes",
            stored.seq
        );
    }
    assert!(
        first.batches_committed() > 0 && second.batches_committed() > 0,
        "both instances appended"
    );
}

#[tokio::test]
async fn ledger_tables_refuse_update_delete_and_truncate() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    recorded(ledger.accept(lead("eco", &["court"])).await.unwrap());
    let mut conn = db.connect().await;

    for statement in [
        "UPDATE ledger_entries SET kind = 'forged'",
        "DELETE FROM ledger_entries",
        "TRUNCATE ledger_entries CASCADE",
        "UPDATE messages SET body = 'forged'",
        "DELETE FROM messages",
        "TRUNCATE messages CASCADE",
    ] {
        let error = sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect_err(statement);
        assert!(
            error.to_string().contains("append-only"),
            "{statement}: {error}"
        );
    }
    assert_eq!(count(&mut conn, "ledger_entries").await, 1);
    assert_eq!(count(&mut conn, "messages").await, 1);
}

#[tokio::test]
async fn claimed_delivery_recorded_as_dispatched() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    let m = lead("eco", &["court"]);
    let receipt = recorded(ledger.accept(m.clone()).await.unwrap());

    let claimed = ledger
        .claim_deliveries(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    let delivery = &claimed[0];
    assert_eq!(
        (delivery.message_id, delivery.seq, delivery.attempt),
        (m.envelope.id, receipt.seq, 1)
    );
    assert_eq!(
        (delivery.recipient.as_str(), delivery.type_.as_str()),
        ("court", "pil.lead.v1")
    );
    assert_eq!(delivery.body, m.bytes);
    assert_eq!(delivery.traceparent, m.envelope.traceparent);
    assert_eq!(delivery.caseref.as_deref(), Some("SD-1"));
    assert!(
        ledger
            .claim_deliveries(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "leased"
    );

    let delivery_id = delivery.delivery_id;
    ledger
        .record_deliveries(vec![DeliveryOutcome::Dispatched { delivery_id }])
        .await
        .unwrap();
    // A second relay's late report for the same delivery changes nothing.
    ledger
        .record_deliveries(vec![DeliveryOutcome::Dispatched { delivery_id }])
        .await
        .unwrap();

    let stored = ledger.message(m.envelope.id).await.unwrap().unwrap();
    assert_eq!(stored.deliveries[0].state, "dispatched");
    assert!(stored.deliveries[0].dispatched_at.is_some());
    let entries = all_entries(&ledger).await;
    assert_eq!(
        entries.iter().map(|e| e.kind).collect::<Vec<_>>(),
        vec![EntryKind::MessageAccepted, EntryKind::DeliveryDispatched]
    );
    assert_eq!(entries[1].agency, Some(agency("court")));
    assert_eq!(entries[1].detail["delivery"], delivery_id);
    assert_eq!(entries[1].detail["attempt"], 1);
    assert!(
        ledger
            .claim_deliveries(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn failed_delivery_is_claimable_again_only_after_retry_at() {
    let db = TestDb::create().await;
    let clock = Arc::new(ManualClock::new(OffsetDateTime::now_utc()));
    let ledger = db.open_with(clock.clone()).await;
    let m = lead("eco", &["court"]);
    recorded(ledger.accept(m.clone()).await.unwrap());

    let first = ledger
        .claim_deliveries(10, Duration::from_secs(30))
        .await
        .unwrap();
    let delivery_id = first[0].delivery_id;
    let retry_at = clock.now() + Duration::from_secs(60);
    let error = "unroutable: no queue bound".to_owned();
    ledger
        .record_deliveries(vec![DeliveryOutcome::Failed {
            delivery_id,
            error: error.clone(),
            retry_at,
        }])
        .await
        .unwrap();

    assert!(
        ledger
            .claim_deliveries(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "not due yet"
    );
    clock.advance(time::Duration::seconds(59));
    assert!(
        ledger
            .claim_deliveries(10, Duration::from_secs(30))
            .await
            .unwrap()
            .is_empty(),
        "still not due"
    );
    clock.advance(time::Duration::seconds(2));
    let again = ledger
        .claim_deliveries(10, Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].delivery_id, again[0].attempt), (delivery_id, 2));

    let stored = ledger.message(m.envelope.id).await.unwrap().unwrap();
    assert_eq!(stored.deliveries[0].state, "pending");
    assert_eq!(
        stored.deliveries[0].last_error.as_deref(),
        Some(error.as_str())
    );
    let failed = &all_entries(&ledger).await[1];
    assert_eq!(failed.kind, EntryKind::DeliveryFailed);
    assert_eq!(
        (
            failed.detail["attempt"].clone(),
            failed.detail["error"].clone()
        ),
        (1.into(), error.into())
    );
}

#[tokio::test]
async fn only_the_recipient_acknowledges_and_a_pulled_delivery_proves_its_dispatch() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    let m = lead("eco", &["court"]);
    recorded(ledger.accept(m.clone()).await.unwrap());
    let delivery_id = ledger
        .claim_deliveries(1, Duration::from_secs(30))
        .await
        .unwrap()[0]
        .delivery_id;

    assert!(
        !ledger
            .acknowledge(delivery_id, &agency("police"))
            .await
            .unwrap(),
        "another agency's"
    );
    assert!(
        !ledger
            .acknowledge(delivery_id + 1000, &agency("court"))
            .await
            .unwrap(),
        "unknown"
    );
    assert_eq!(
        all_entries(&ledger).await.len(),
        1,
        "refused acknowledgements record nothing"
    );

    // The recipient acknowledges before the relay recorded its confirm: the pull proves
    // the dispatch, so both are recorded, in order.
    assert!(
        ledger
            .acknowledge(delivery_id, &agency("court"))
            .await
            .unwrap()
    );
    let kinds: Vec<EntryKind> = all_entries(&ledger).await.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EntryKind::MessageAccepted,
            EntryKind::DeliveryDispatched,
            EntryKind::DeliveryAcknowledged
        ]
    );

    // The relay's late outcome and a repeated acknowledgement change nothing.
    ledger
        .record_deliveries(vec![DeliveryOutcome::Dispatched { delivery_id }])
        .await
        .unwrap();
    assert!(
        ledger
            .acknowledge(delivery_id, &agency("court"))
            .await
            .unwrap(),
        "repeat is idempotent"
    );
    assert_eq!(all_entries(&ledger).await.len(), 3);
    let state = &ledger
        .message(m.envelope.id)
        .await
        .unwrap()
        .unwrap()
        .deliveries[0];
    assert_eq!(state.state, "acknowledged");
    assert!(state.acknowledged_at.is_some());
    assert!(state.dispatched_at.is_some());
}

#[tokio::test]
async fn trace_follows_a_case_and_a_message_with_its_replies_in_seq_order() {
    let db = TestDb::create().await;
    let ledger = db.open().await;
    let lead_id = Uuid::now_v7();
    let first = message(
        lead_id,
        "eco",
        Some("SD-7"),
        r#"{"n":1}"#,
        &["procuratorate"],
    );
    recorded(ledger.accept(first).await.unwrap());
    recorded(
        ledger
            .accept(message(
                Uuid::now_v7(),
                "eco",
                Some("SD-8"),
                r#"{"n":2}"#,
                &["court"],
            ))
            .await
            .unwrap(),
    );
    let reply_id = Uuid::now_v7();
    let mut reply = message(
        reply_id,
        "procuratorate",
        Some("SD-7"),
        r#"{"n":3}"#,
        &["eco"],
    );
    reply.envelope.inreplyto = Some(lead_id);
    recorded(ledger.accept(reply).await.unwrap());
    let delivery_id = ledger
        .claim_deliveries(10, Duration::from_secs(30))
        .await
        .unwrap()[0]
        .delivery_id;
    ledger
        .record_deliveries(vec![DeliveryOutcome::Dispatched { delivery_id }])
        .await
        .unwrap();

    let case = ledger.trace(&TraceKey::parse("SD-7")).await.unwrap();
    let seqs: Vec<u64> = case.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, vec![1, 3, 4]);
    assert_eq!(
        case.iter().map(|e| e.message).collect::<Vec<_>>(),
        vec![Some(lead_id), Some(reply_id), Some(lead_id)]
    );
    assert_eq!(case[1].detail["inreplyto"], lead_id.to_string());

    let thread = ledger
        .trace(&TraceKey::parse(&lead_id.to_string()))
        .await
        .unwrap();
    assert_eq!(
        thread.iter().map(|e| e.seq).collect::<Vec<_>>(),
        vec![1, 3, 4]
    );
    assert!(
        ledger
            .trace(&TraceKey::Case("SD-none".into()))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn ensure_database_is_idempotent_and_drop_removes_it() {
    let db = TestDb::create().await;
    liaison_ledger::ensure_database(&db.url())
        .await
        .expect("a second ensure is a no-op");
    let mut admin = admin_connection(&db.server).await;
    let exists = "SELECT count(*) FROM pg_database WHERE datname = $1";
    let count: i64 = sqlx::query_scalar(exists)
        .bind(&db.name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(count, 1);
    liaison_ledger::drop_database(&db.url()).await.unwrap();
    let count: i64 = sqlx::query_scalar(exists)
        .bind(&db.name)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(count, 0);
}

#[tokio::test]
async fn open_names_the_url_it_cannot_reach() {
    let config = LedgerConfig {
        database_url: "postgres://app:secret@127.0.0.1:1/liaison".into(),
        connect_timeout: Duration::from_secs(2),
        ..LedgerConfig::default()
    };
    let error = Ledger::open(config, Arc::new(SystemClock))
        .await
        .err()
        .expect("port 1 has no PostgreSQL");
    assert!(
        matches!(
            error,
            LedgerError::Connect { .. } | LedgerError::ConnectTimeout { .. }
        ),
        "{error}"
    );
    let text = error.to_string();
    assert!(
        text.contains("postgres://app:***@127.0.0.1:1/liaison"),
        "{text}"
    );
    assert!(!text.contains("secret"), "{text}");
}
