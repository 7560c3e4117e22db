//! Ledger throughput on this machine's PostgreSQL: appends through the group committer
//! with many concurrent callers (entries, messages, outbox rows and tree nodes all
//! written), and verification (every leaf, the tree, payload digests, checkpoints).
//! `cargo bench -p liaison-ledger`; figures go to docs/performance.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::future::join_all;
use liaison_core::checkpoint::{CheckpointSigner, CheckpointVerifier};
use liaison_core::merkle::CompactRange;
use liaison_core::{
    AgencyCode, Channel, Entry, EntryKind, Envelope, Recipient, RecipientRole, Route, SystemClock,
    audit,
};
use liaison_ledger::verify::{CheckpointRecord, EntryRecord, MessageRecord, Verifier};
use liaison_ledger::{Ledger, LedgerConfig, NewMessage};
use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

/// Concurrent callers per measured round: what a busy gateway hands the committer.
const CALLERS: usize = 4_000;

fn lead() -> NewMessage {
    let id = Uuid::now_v7();
    let eco = AgencyCode::new("eco").unwrap();
    NewMessage {
        envelope: Envelope {
            id,
            source: eco.urn(),
            type_: "pil.lead.v1".into(),
            time: OffsetDateTime::now_utc(),
            subject: None,
            caseref: Some("SD-BENCH".into()),
            inreplyto: None,
            recipients: None,
            traceparent: None,
        },
        sender: eco,
        channel: Channel::Https,
        // About the size of a real lead.
        bytes: Bytes::from(format!(r#"{{"id":"{id}","data":"{}"}}"#, "x".repeat(1_900))),
        received_at: OffsetDateTime::now_utc(),
        case: Default::default(),
        route: Route {
            recipients: vec![Recipient {
                agency: AgencyCode::new("procuratorate").unwrap(),
                role: RecipientRole::To,
                rule: "bench".into(),
            }],
        },
        trace_context: None,
    }
}

fn appends(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let server = std::env::var("LIAISON_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let url = format!("{server}/liaison_bench_{}", Uuid::new_v4().simple());
    let ledger = runtime.block_on(async {
        liaison_ledger::ensure_database(&url)
            .await
            .expect("PostgreSQL for the benchmark");
        Ledger::open(LedgerConfig::new(url.clone()), Arc::new(SystemClock))
            .await
            .unwrap()
    });
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(CALLERS as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("append (group commit, 4000 concurrent callers)", |b| {
        b.to_async(&runtime).iter_custom(|rounds| {
            let ledger = ledger.clone();
            async move {
                let mut total = Duration::ZERO;
                for _ in 0..rounds {
                    let messages: Vec<NewMessage> = (0..CALLERS).map(|_| lead()).collect();
                    let started = Instant::now();
                    let outcomes = join_all(messages.into_iter().map(|m| {
                        let ledger = ledger.clone();
                        tokio::spawn(async move { ledger.accept(m).await })
                    }))
                    .await;
                    total += started.elapsed();
                    for outcome in outcomes {
                        outcome.unwrap().unwrap();
                    }
                }
                total
            }
        });
    });
    group.finish();
    runtime.block_on(async {
        drop(ledger);
        let _ = liaison_ledger::drop_database(&url).await;
    });
}

/// 100,000 entries as the database or an export hands them over, with their bodies.
fn records() -> (
    Vec<EntryRecord>,
    Vec<MessageRecord>,
    Vec<CheckpointRecord>,
    CheckpointVerifier,
) {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
    let signer =
        CheckpointSigner::new("bench", Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap())
            .unwrap();
    let mut entries = Vec::new();
    let mut messages = Vec::new();
    let mut checkpoints = Vec::new();
    let mut range = CompactRange::new();
    for seq in 1..=100_000u64 {
        let id = Uuid::now_v7();
        let accepted = seq % 3 == 1;
        let body = format!(r#"{{"id":"{id}","data":"{}"}}"#, "x".repeat(1_900)).into_bytes();
        let entry = Entry {
            seq,
            at: OffsetDateTime::now_utc(),
            kind: if accepted {
                EntryKind::MessageAccepted
            } else {
                EntryKind::DeliveryDispatched
            },
            message: Some(id),
            caseref: Some("SD-BENCH".into()),
            agency: Some(AgencyCode::new("eco").unwrap()),
            detail: json!({"type": "pil.lead.v1", "channel": "https", "sha256": hex::encode(audit::sha256(&body)),
                           "size": body.len(), "recipients": [{"agency": "procuratorate", "role": "to", "rule": "bench"}]}),
        };
        let bytes = entry.canonical_bytes();
        range.push(audit::leaf_hash(&bytes), |_, _| {});
        entries.push(EntryRecord {
            seq,
            stored_leaf_hash: Some(audit::leaf_hash(&bytes)),
            bytes,
            ..EntryRecord::default()
        });
        if accepted {
            messages.push(MessageRecord {
                id,
                seq,
                stored_sha256: Some(audit::sha256(&body)),
                body,
                ..MessageRecord::default()
            });
        }
        if seq % 1_000 == 0 {
            checkpoints.push(CheckpointRecord {
                tree_size: seq,
                note: signer.sign(seq, range.root(), OffsetDateTime::now_utc()),
            });
        }
    }
    let key = CheckpointVerifier::new("bench", signer.public_key()).unwrap();
    (entries, messages, checkpoints, key)
}

fn verification(c: &mut Criterion) {
    let (entries, messages, checkpoints, key) = records();
    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(entries.len() as u64));
    group.sample_size(10);
    group.bench_function(
        "verify 100000 entries (leaves, tree, bodies, 100 checkpoints)",
        |b| {
            b.iter_batched(
                || (entries.clone(), messages.clone()),
                |(entries, messages)| {
                    let mut v = Verifier::new(&key, &checkpoints);
                    let mut messages = messages.into_iter().peekable();
                    for e in entries {
                        let seq = e.seq;
                        v.entry(e);
                        while let Some(m) = messages.next_if(|m| m.seq <= seq) {
                            v.message(m);
                        }
                    }
                    let report = v.finish();
                    assert!(report.is_ok());
                },
                criterion::BatchSize::LargeInput,
            );
        },
    );
    group.finish();
}

criterion_group!(benches, verification, appends);
criterion_main!(benches);
