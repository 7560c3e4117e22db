//! The test vectors of `docs/audit.md`, in `docs/vectors/`: entries with their canonical
//! bytes and leaf hashes, the roots of the trees of their first 0…13 leaves, an inclusion
//! and a consistency proof, and a signed checkpoint with its key.
//!
//! The files are generated here from the implementation, and this test fails when the
//! committed files differ from what the implementation gives (the encoder, the tree or the
//! signature changed: every existing ledger would stop verifying). Regenerate them, after
//! a deliberate change of the documented format only, with
//! `LIAISON_UPDATE_DOCS=1 cargo test -p liaison-core --test vectors`.
//!
//! The committed files are also checked against independent code: SHA-256 and the RFC
//! 9162 tree from the `sha2` and `ct-merkle` crates, and the signature against the public
//! key, so that the vectors stay right even if both the implementation and the generator
//! drifted together.

use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ct_merkle::mem_backed_tree::MemoryBackedTree;
use liaison_core::checkpoint::{CheckpointSigner, CheckpointVerifier};
use liaison_core::clocks::{
    ClockEvents, ClockKind, ClockStarted, ClockStopped, StageKind, StageRef, StopReason,
};
use liaison_core::{AgencyCode, Entry, EntryKind, ThreadStep, audit, merkle};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::macros::datetime;
use uuid::Uuid;

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/vectors")
}

const UPDATE: &str = "LIAISON_UPDATE_DOCS";

// ---------------------------------------------------------------------------------------
// The files' shapes.

#[derive(Serialize, Deserialize)]
struct EntriesFile {
    about: String,
    entries: Vec<EntryVector>,
}

#[derive(Serialize, Deserialize)]
struct EntryVector {
    /// What the vector shows.
    shows: String,
    /// The entry as a JSON value (a reader's member order is irrelevant here).
    entry: Value,
    /// The canonical bytes, as a string (they are UTF-8).
    canonical: String,
    /// SHA-256(0x00 ‖ canonical), hex.
    leaf_hash: String,
    /// For an accepted message: the exact bytes posted, whose SHA-256 is `detail.sha256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct TreeFile {
    about: String,
    /// Leaf hashes of the entries of `entries.json`, leaf index = seq − 1.
    leaves: Vec<String>,
    roots: Vec<RootVector>,
}

#[derive(Serialize, Deserialize)]
struct RootVector {
    tree_size: u64,
    root: String,
}

#[derive(Serialize, Deserialize)]
struct ProofsFile {
    about: String,
    inclusion: InclusionVector,
    consistency: ConsistencyVector,
}

#[derive(Serialize, Deserialize)]
struct InclusionVector {
    seq: u64,
    leaf_index: u64,
    tree_size: u64,
    leaf_hash: String,
    audit_path: Vec<String>,
    root: String,
}

#[derive(Serialize, Deserialize)]
struct ConsistencyVector {
    from: u64,
    to: u64,
    from_root: String,
    to_root: String,
    proof: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointFile {
    about: String,
    /// The Ed25519 seed of the test key (RFC 8032 private key), hex. A test vector: this
    /// key signs nothing else.
    seed: String,
    /// Its public key, hex (the form of `ledger-signing.pub`).
    public_key: String,
    origin: String,
    /// SHA-256(origin ‖ 0x0A ‖ 0x01 ‖ public key)[:4], hex.
    key_id: String,
    /// The C2SP verifier key (the form of `ledger-signing.vkey`).
    vkey: String,
    tree_size: u64,
    /// The root of `tree.json` at `tree_size`, hex.
    root: String,
    /// The signed text: every byte before the blank line, final newline included.
    signed_text: String,
    /// base64(key id ‖ Ed25519 signature of `signed_text`).
    signature: String,
    /// The whole note as liaison stores and serves it.
    note: String,
    /// The same note with a second signature line by another key (a cosigner): a verifier
    /// holding `vkey` ignores that line and accepts the note.
    note_cosigned: String,
    /// The cosigner's verifier key.
    cosigner_vkey: String,
}

// ---------------------------------------------------------------------------------------
// The vectors, from the implementation.

fn agency(code: &str) -> Option<AgencyCode> {
    Some(AgencyCode::new(code).expect("agency code"))
}

fn id(text: &str) -> Uuid {
    Uuid::parse_str(text).expect("uuid")
}

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(audit::sha256(bytes))
}

struct Built {
    shows: &'static str,
    entry: Entry,
    body: Option<String>,
}

/// A small ledger with every kind of entry and the detail members each kind carries, as
/// the committer writes them (`crates/liaison-ledger/src/committer/plan.rs`).
fn entries() -> Vec<Built> {
    let lead = id("01a23b4c-0000-7000-8000-000000000001");
    let decision = id("01a23b4c-0000-7000-8000-000000000002");
    let refused = id("01a23b4c-0000-7000-8000-000000000003");
    let reminder = id("01a23b4c-0000-7000-8000-000000000004");
    let thread = lead;
    let caseref = "ECO-2026-000017";
    let lead_body = format!(
        r#"{{"specversion":"1.0","id":"{lead}","source":"urn:liaison:agency:eco","type":"pil.lead.v1","time":"2026-11-26T08:00:00Z","datacontenttype":"application/json","data":{{"summary":"河道排污线索"}}}}"#
    );
    let decision_body = format!(
        r#"{{"specversion":"1.0","id":"{decision}","source":"urn:liaison:agency:procuratorate","type":"pil.lead-decision.v1","inreplyto":"{lead}","caseref":"{caseref}","data":{{"decision":"accept"}}}}"#
    );
    let reminder_body = format!(
        r#"{{"specversion":"1.0","id":"{reminder}","source":"urn:liaison:agency:eco","type":"deadline.reminder.v1","inreplyto":"{lead}","caseref":"{caseref}","data":{{"stage":"reminder"}}}}"#
    );
    let started_at = datetime!(2026-11-26 08:00:00.1201 UTC);
    // Due dates of the law end at 24:00 China Standard Time and are written so.
    let due = datetime!(2026-12-01 00:00:00 +08:00);
    let recipient = |agency: &str, role: &str, rule: &str| json!({"agency": agency, "role": role, "rule": rule});

    let mut accepted = Map::new();
    accepted.insert("type".into(), json!("pil.lead.v1"));
    accepted.insert("channel".into(), json!("https"));
    accepted.insert("sha256".into(), json!(hex_sha256(lead_body.as_bytes())));
    accepted.insert("size".into(), json!(lead_body.len()));
    accepted.insert(
        "recipients".into(),
        json!([recipient("procuratorate", "to", "lead-to-procuratorate")]),
    );
    accepted.insert(
        "case".into(),
        json!(ThreadStep {
            thread,
            flow: "lead".into(),
            from: None,
            to: "received".into(),
            closed: false,
        }),
    );
    accepted.insert("caseref_assigned".into(), json!(true));
    accepted.insert(
        "clocks".into(),
        json!(ClockEvents {
            started: vec![ClockStarted {
                thread,
                clock: "decision".into(),
                kind: ClockKind::Deadline,
                started_at,
                due: Some(due),
                due_error: None,
                owed_by: vec!["procuratorate".into()],
            }],
            stopped: Vec::new(),
        }),
    );

    let mut answer = Map::new();
    answer.insert("type".into(), json!("pil.lead-decision.v1"));
    answer.insert("channel".into(), json!("amqp"));
    answer.insert("sha256".into(), json!(hex_sha256(decision_body.as_bytes())));
    answer.insert("size".into(), json!(decision_body.len()));
    answer.insert("inreplyto".into(), json!(lead.to_string()));
    answer.insert(
        "recipients".into(),
        json!([
            recipient("eco", "to", "decision-to-sender"),
            recipient("market", "cc", "decision-copies")
        ]),
    );
    answer.insert(
        "case".into(),
        json!(ThreadStep {
            thread,
            flow: "lead".into(),
            from: Some("received".into()),
            to: "decided".into(),
            closed: true,
        }),
    );
    answer.insert(
        "clocks".into(),
        json!(ClockEvents {
            started: Vec::new(),
            stopped: vec![ClockStopped {
                thread,
                clock: "decision".into(),
                reason: StopReason::Answered,
                started_at,
                due: Some(due),
                late: false,
            }],
        }),
    );

    let mut notice = Map::new();
    notice.insert("type".into(), json!("deadline.reminder.v1"));
    notice.insert("channel".into(), json!("clock"));
    notice.insert("sha256".into(), json!(hex_sha256(reminder_body.as_bytes())));
    notice.insert("size".into(), json!(reminder_body.len()));
    notice.insert("inreplyto".into(), json!(lead.to_string()));
    notice.insert(
        "recipients".into(),
        json!([recipient(
            "procuratorate",
            "to",
            "deadline-reminder-to-the-late"
        )]),
    );
    notice.insert(
        "case".into(),
        json!(ThreadStep {
            thread,
            flow: "lead".into(),
            from: Some("received".into()),
            to: "received".into(),
            closed: false,
        }),
    );
    notice.insert(
        "clock_stage".into(),
        json!(StageRef {
            thread,
            clock: "decision".into(),
            stage: StageKind::Reminder,
            key: "reminder-P1D".into(),
        }),
    );
    notice.insert(
        "clocks".into(),
        json!(ClockEvents {
            started: vec![ClockStarted {
                thread,
                clock: "review".into(),
                kind: ClockKind::Window,
                started_at: datetime!(2026-11-30 08:00:00 UTC),
                due: None,
                due_error: Some("no holiday calendar for 2027".into()),
                owed_by: vec!["procuratorate".into()],
            }],
            stopped: Vec::new(),
        }),
    );

    let met = ThreadStep {
        thread,
        flow: "lead".into(),
        from: None,
        to: "received".into(),
        closed: false,
    };
    let entry =
        |seq, at, kind, message, caseref: Option<&str>, agency_code: Option<&str>, detail| Entry {
            seq,
            at,
            kind,
            message,
            caseref: caseref.map(str::to_owned),
            agency: agency_code.and_then(agency),
            detail,
        };
    vec![
        Built {
            shows: "message.accepted opening a case: liaison assigned the reference (caseref_assigned), the message started a clock whose due instant is in China Standard Time; `at` with six fractional digits",
            entry: entry(
                1,
                datetime!(2026-11-26 08:00:00.123456 UTC),
                EntryKind::MessageAccepted,
                Some(lead),
                Some(caseref),
                Some("eco"),
                Value::Object(accepted),
            ),
            body: Some(lead_body),
        },
        Built {
            shows: "delivery.dispatched: RabbitMQ confirmed the delivery; `at` 08:00:00.374600 is written with its trailing zeros trimmed",
            entry: entry(
                2,
                datetime!(2026-11-26 08:00:00.3746 UTC),
                EntryKind::DeliveryDispatched,
                Some(lead),
                Some(caseref),
                Some("procuratorate"),
                json!({"delivery": 1, "attempt": 1}),
            ),
            body: None,
        },
        Built {
            shows: "delivery.acknowledged: the recipient acknowledged a pulled delivery; `at` on a whole second has no fraction",
            entry: entry(
                3,
                datetime!(2026-11-26 08:00:01 UTC),
                EntryKind::DeliveryAcknowledged,
                Some(lead),
                Some(caseref),
                Some("procuratorate"),
                json!({"delivery": 1, "attempt": 1}),
            ),
            body: None,
        },
        Built {
            shows: "message.rejected with schema errors: string escaping (quote, backslash, newline, tab, other control characters as \\u00XX in lowercase hex; DEL, '/', U+2028 and non-ASCII written as they are)",
            entry: entry(
                4,
                datetime!(2026-11-26 08:00:02.5 UTC),
                EntryKind::MessageRejected,
                Some(refused),
                None,
                Some("police"),
                json!({
                    "code": "payload_invalid",
                    "channel": "https",
                    "sha256": hex_sha256(b"the refused bytes"),
                    "size": 1234,
                    "type": "pil.lead.v1",
                    "claimed": {"caseref": caseref},
                    "errors": [
                        {"pointer": "/data/summary", "keyword": "maxLength", "message": "\"线索\\t\n说明\" is longer than 4000 characters"},
                        {"pointer": "/data/note", "keyword": "pattern", "message": "\u{1}\u{1f}\u{7f} / \u{2028} 📄 does not match \"^[^<>]*$\""}
                    ],
                }),
            ),
            body: None,
        },
        Built {
            shows: "message.rejected of a submission with no identity (an AMQP message without user_id, unreadable JSON): message, caseref and agency are null",
            entry: entry(
                5,
                datetime!(2026-11-26 08:00:03.000001 UTC),
                EntryKind::MessageRejected,
                None,
                None,
                None,
                json!({
                    "code": "malformed_json",
                    "channel": "amqp",
                    "sha256": hex_sha256(b"{not json"),
                    "size": 9,
                    "errors": [],
                }),
            ),
            body: None,
        },
        Built {
            shows: "message.rejected by its case: the state the message met (met), the reference it claimed",
            entry: entry(
                6,
                datetime!(2026-11-26 08:00:04.02 UTC),
                EntryKind::MessageRejected,
                Some(id("01a23b4c-0000-7000-8000-000000000005")),
                Some(caseref),
                Some("procuratorate"),
                json!({
                    "code": "invalid_transition",
                    "channel": "https",
                    "sha256": hex_sha256(b"an answer out of turn"),
                    "size": 480,
                    "type": "pil.lead-decision.v1",
                    "errors": [],
                    "met": met,
                }),
            ),
            body: None,
        },
        Built {
            shows: "message.accepted by the deadline watcher (channel clock): the notice it is (clock_stage); a clock started whose due instant is unknown (due null, due_error)",
            entry: entry(
                7,
                datetime!(2026-11-30 08:00:00.25 UTC),
                EntryKind::MessageAccepted,
                Some(reminder),
                Some(caseref),
                Some("eco"),
                Value::Object(notice),
            ),
            body: Some(reminder_body),
        },
        Built {
            shows: "message.accepted answering another (inreplyto), closing its thread (case.closed) and stopping a clock",
            entry: entry(
                8,
                datetime!(2026-11-30 09:15:00.7 UTC),
                EntryKind::MessageAccepted,
                Some(decision),
                Some(caseref),
                Some("procuratorate"),
                Value::Object(answer),
            ),
            body: Some(decision_body),
        },
        Built {
            shows: "delivery.failed: the attempt and the error; the relay retries",
            entry: entry(
                9,
                datetime!(2026-11-30 09:15:01.001 UTC),
                EntryKind::DeliveryFailed,
                Some(decision),
                Some(caseref),
                Some("eco"),
                json!({"delivery": 2, "attempt": 1, "error": "unroutable: no queue \"liaison.agency.eco\""}),
            ),
            body: None,
        },
        Built {
            shows: "delivery.dispatched observed through the recipient's pull, before the relay's confirm was recorded",
            entry: entry(
                10,
                datetime!(2026-11-30 09:15:02 UTC),
                EntryKind::DeliveryDispatched,
                Some(decision),
                Some(caseref),
                Some("market"),
                json!({"delivery": 3, "attempt": 0, "observed": "pulled"}),
            ),
            body: None,
        },
        Built {
            shows: "delivery.dead_lettered by RabbitMQ (by, queue, reason)",
            entry: entry(
                11,
                datetime!(2026-11-30 09:20:00.5 UTC),
                EntryKind::DeliveryDeadLettered,
                Some(decision),
                Some(caseref),
                Some("eco"),
                json!({"delivery": 2, "attempt": 5, "reason": "delivery_limit", "by": "rabbitmq", "queue": "liaison.agency.eco"}),
            ),
            body: None,
        },
        Built {
            shows: "delivery.redriven: an operator sent the dead delivery again",
            entry: entry(
                12,
                datetime!(2026-11-30 10:00:00.999999 UTC),
                EntryKind::DeliveryRedriven,
                Some(decision),
                Some(caseref),
                Some("eco"),
                json!({"delivery": 2, "attempt": 5}),
            ),
            body: None,
        },
        Built {
            shows: "delivery.dead_lettered by the relay after its maximum attempts (no queue)",
            entry: entry(
                13,
                datetime!(2026-11-30 10:05:00.1 UTC),
                EntryKind::DeliveryDeadLettered,
                Some(lead),
                Some(caseref),
                Some("procuratorate"),
                json!({"delivery": 1, "attempt": 10, "reason": "maximum attempts reached", "by": "relay"}),
            ),
            body: None,
        },
    ]
}

fn key(seed_text: &str) -> (Ed25519KeyPair, [u8; 32]) {
    // A fixed seed derived from a fixed text: a key anyone can recompute, for vectors only.
    let seed = audit::sha256(seed_text.as_bytes());
    (
        Ed25519KeyPair::from_seed_unchecked(&seed).expect("a 32-byte seed"),
        seed,
    )
}

const VECTOR_ORIGIN: &str = "liaison.example/test-vectors";
const COSIGNER_ORIGIN: &str = "witness.example/test-vectors";
const SIGNED_AT: OffsetDateTime = datetime!(2026-11-30 10:05:01.5 UTC);

struct Generated {
    entries: EntriesFile,
    tree: TreeFile,
    proofs: ProofsFile,
    checkpoint: CheckpointFile,
}

fn generate() -> Generated {
    let built = entries();
    let mut vectors = Vec::new();
    let mut leaves = Vec::new();
    for b in &built {
        let bytes = b.entry.canonical_bytes();
        leaves.push(audit::leaf_hash(&bytes));
        vectors.push(EntryVector {
            shows: b.shows.to_owned(),
            entry: serde_json::to_value(&b.entry).expect("an entry is JSON"),
            canonical: String::from_utf8(bytes).expect("canonical bytes are UTF-8"),
            leaf_hash: hex::encode(audit::leaf_hash(&b.entry.canonical_bytes())),
            body: b.body.clone(),
        });
    }
    let n = leaves.len() as u64;
    let roots = (0..=n)
        .map(|size| RootVector {
            tree_size: size,
            root: hex::encode(merkle::root(&leaves[..], size).expect("in range")),
        })
        .collect();
    let root_at = |size: u64| merkle::root(&leaves[..], size).expect("in range");
    let (index, proof_size) = (4, 7);
    let path = merkle::inclusion_proof(&leaves[..], index, proof_size).expect("in range");
    let (from, to) = (6, n);
    let consistency = merkle::consistency_proof(&leaves[..], from, to).expect("in range");

    let (signing, seed) = key("liaison test vector ledger key");
    let signer = CheckpointSigner::new(VECTOR_ORIGIN, signing).expect("key name");
    let verifier = signer.verifier();
    let note = signer.sign(n, root_at(n), SIGNED_AT);
    let (signed_text, signature_line) = note.split_once("\n\n").expect("a signed note");
    let signature = signature_line
        .trim_end()
        .rsplit_once(' ')
        .expect("a signature line")
        .1;
    // A second key signs the same text (as a cosigner would add its line to the note).
    let (cosigning, _) = key("liaison test vector cosigner key");
    let cosigner = CheckpointVerifier::new(
        COSIGNER_ORIGIN,
        cosigning
            .public_key()
            .as_ref()
            .try_into()
            .expect("32 bytes"),
    )
    .expect("key name");
    let mut blob = cosigner.key_id().to_vec();
    blob.extend_from_slice(
        cosigning
            .sign(format!("{signed_text}\n").as_bytes())
            .as_ref(),
    );
    let cosignature = format!("\u{2014} {COSIGNER_ORIGIN} {}", STANDARD.encode(blob));

    Generated {
        entries: EntriesFile {
            about: "liaison ledger entries: `entry` is each entry as a JSON value, `canonical` its canonical bytes (the exact UTF-8 text that is stored, exported and hashed), `leaf_hash` = SHA-256(0x00 ‖ canonical) in hex. For accepted messages, `body` is the exact message posted: detail.sha256 is its SHA-256. See docs/audit.md, \"Entries\".".into(),
            entries: vectors,
        },
        tree: TreeFile {
            about: "RFC 9162 Merkle tree over the entries of entries.json (leaf index = seq − 1): the root of the first `tree_size` leaves, hex; size 0 is SHA-256 of nothing. See docs/audit.md, \"The Merkle tree\".".into(),
            leaves: leaves.iter().map(hex::encode).collect(),
            roots,
        },
        proofs: ProofsFile {
            about: "An RFC 9162 §2.1.3 inclusion proof (audit_path leaf to root) and a §2.1.4 consistency proof over the leaves of tree.json, hashes in hex, as the proof routes answer them.".into(),
            inclusion: InclusionVector {
                seq: index + 1,
                leaf_index: index,
                tree_size: proof_size,
                leaf_hash: hex::encode(leaves[index as usize]),
                audit_path: path.iter().map(hex::encode).collect(),
                root: hex::encode(root_at(proof_size)),
            },
            consistency: ConsistencyVector {
                from,
                to,
                from_root: hex::encode(root_at(from)),
                to_root: hex::encode(root_at(to)),
                proof: consistency.iter().map(hex::encode).collect(),
            },
        },
        checkpoint: CheckpointFile {
            about: "A checkpoint of the tree of tree.json, a C2SP tlog-checkpoint signed as a C2SP signed note with Ed25519, by a test key made from a fixed seed (SHA-256 of \"liaison test vector ledger key\"). See docs/audit.md, \"Checkpoints\".".into(),
            seed: hex::encode(seed),
            public_key: hex::encode(verifier.public_key()),
            origin: VECTOR_ORIGIN.into(),
            key_id: hex::encode(verifier.key_id()),
            vkey: verifier.vkey(),
            tree_size: n,
            root: hex::encode(root_at(n)),
            signed_text: format!("{signed_text}\n"),
            signature: signature.to_owned(),
            note_cosigned: format!("{note}{cosignature}\n"),
            note,
            cosigner_vkey: cosigner.vkey(),
        },
    }
}

fn pretty<T: Serialize>(value: &T) -> String {
    serde_json::to_string_pretty(value).expect("vectors are JSON") + "\n"
}

/// Compares a generated file with the committed one (rewriting it when asked).
fn check_file(name: &str, generated: &str) -> Result<(), String> {
    let path = vectors_dir().join(name);
    if std::env::var_os(UPDATE).is_some() {
        std::fs::create_dir_all(vectors_dir()).expect("create docs/vectors");
        std::fs::write(&path, generated).expect("write a vector file");
    }
    let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
    if on_disk == generated {
        return Ok(());
    }
    let line = on_disk
        .lines()
        .zip(generated.lines())
        .position(|(a, b)| a != b)
        .map_or_else(
            || on_disk.lines().count().min(generated.lines().count()) + 1,
            |i| i + 1,
        );
    Err(format!(
        "docs/vectors/{name} differs from what the implementation gives (first difference at line {line})"
    ))
}

/// A committed vector file; while they are being rewritten, the new one (the tests run
/// side by side, and one of them is writing).
fn read<T: for<'de> Deserialize<'de>>(name: &str) -> T {
    let path = vectors_dir().join(name);
    let text = if std::env::var_os(UPDATE).is_some() {
        let g = generate();
        match name {
            "entries.json" => pretty(&g.entries),
            "tree.json" => pretty(&g.tree),
            "proofs.json" => pretty(&g.proofs),
            _ => pretty(&g.checkpoint),
        }
    } else {
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    };
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn unhex(text: &str) -> [u8; 32] {
    hex::decode(text)
        .expect("hex")
        .try_into()
        .expect("32 bytes")
}

// ---------------------------------------------------------------------------------------
// The tests.

#[test]
fn the_committed_vectors_are_what_the_implementation_gives() {
    let g = generate();
    let faults: Vec<String> = [
        check_file("entries.json", &pretty(&g.entries)),
        check_file("tree.json", &pretty(&g.tree)),
        check_file("proofs.json", &pretty(&g.proofs)),
        check_file("checkpoint.json", &pretty(&g.checkpoint)),
    ]
    .into_iter()
    .filter_map(Result::err)
    .collect();
    assert!(
        faults.is_empty(),
        "{}\nIf the format changed on purpose (existing ledgers then no longer verify), \
         regenerate with {UPDATE}=1 cargo test -p liaison-core --test vectors",
        faults.join("\n")
    );
}

#[test]
fn entry_vectors_hash_and_encode_as_documented() {
    let file: EntriesFile = read("entries.json");
    assert!(file.entries.len() >= 10);
    let mut kinds = std::collections::HashSet::new();
    for (i, v) in file.entries.iter().enumerate() {
        let bytes = v.canonical.as_bytes();
        // SHA-256(0x00 ‖ bytes) by another implementation.
        let mut hasher = Sha256::new();
        hasher.update([0u8]);
        hasher.update(bytes);
        assert_eq!(
            hex::encode(hasher.finalize()),
            v.leaf_hash,
            "entry {}",
            i + 1
        );
        // The value encodes to exactly these bytes, and the bytes decode to the value.
        let entry: Entry = serde_json::from_value(v.entry.clone()).expect("an entry");
        assert_eq!(entry.canonical_bytes(), bytes, "entry {}", i + 1);
        assert_eq!(Entry::from_canonical(bytes).expect("canonical"), entry);
        assert_eq!(entry.seq, i as u64 + 1, "entries are seqs 1, 2, 3…");
        // Compact JSON: no raw newline (an export's line is an entry), members in order.
        assert!(!bytes.contains(&b'\n'));
        assert!(
            v.canonical
                .starts_with(&format!("{{\"seq\":{},\"at\":\"", entry.seq))
        );
        if let Some(body) = &v.body {
            let mut hasher = Sha256::new();
            hasher.update(body.as_bytes());
            assert_eq!(
                v.entry["detail"]["sha256"],
                json!(hex::encode(hasher.finalize()))
            );
            assert_eq!(v.entry["detail"]["size"], json!(body.len()));
        }
        kinds.insert(entry.kind);
    }
    for kind in [
        EntryKind::MessageAccepted,
        EntryKind::MessageRejected,
        EntryKind::DeliveryDispatched,
        EntryKind::DeliveryFailed,
        EntryKind::DeliveryAcknowledged,
        EntryKind::DeliveryDeadLettered,
        EntryKind::DeliveryRedriven,
    ] {
        assert!(kinds.contains(&kind), "no vector of {}", kind.as_str());
    }
    // What docs/audit.md states about the bytes, seen in the vectors.
    let canonical: Vec<&str> = file.entries.iter().map(|v| v.canonical.as_str()).collect();
    assert!(canonical[1].contains(r#""at":"2026-11-26T08:00:00.3746Z""#));
    assert!(canonical[2].contains(r#""at":"2026-11-26T08:00:01Z""#));
    assert!(canonical[3].contains(r#"\"线索\\t\n说明\""#));
    assert!(canonical[3].contains("\\u0001\\u001f\u{7f} / \u{2028} 📄"));
    assert!(canonical[4].contains(r#""message":null,"caseref":null,"agency":null"#));
    assert!(canonical[0].contains(r#""due":"2026-12-01T00:00:00+08:00""#));
    assert!(canonical[6].contains(r#""due":null,"due_error":"#));
}

#[test]
fn tree_vectors_match_an_independent_rfc9162_tree() {
    let tree: TreeFile = read("tree.json");
    let entries: EntriesFile = read("entries.json");
    assert_eq!(tree.leaves.len(), entries.entries.len());
    let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    let mut leaves = Vec::new();
    assert_eq!(
        tree.roots[0].root,
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
    for (i, v) in entries.entries.iter().enumerate() {
        assert_eq!(tree.leaves[i], v.leaf_hash);
        leaves.push(unhex(&v.leaf_hash));
        ct.push(v.canonical.as_bytes().to_vec());
        let size = i as u64 + 1;
        let expected = &tree.roots[i + 1];
        assert_eq!(expected.tree_size, size);
        assert_eq!(
            hex::encode(ct.root().as_bytes()),
            expected.root,
            "size {size}"
        );
        assert_eq!(
            hex::encode(merkle::root(&leaves[..], size).unwrap()),
            expected.root
        );
    }
    assert_eq!(tree.roots.len(), leaves.len() + 1);
}

#[test]
fn proof_vectors_verify_and_match_an_independent_tree() {
    let proofs: ProofsFile = read("proofs.json");
    let tree: TreeFile = read("tree.json");
    let entries: EntriesFile = read("entries.json");
    let root_at = |size: u64| unhex(&tree.roots[size as usize].root);

    let inc = &proofs.inclusion;
    assert_eq!(inc.leaf_index, inc.seq - 1);
    assert_eq!(inc.root, tree.roots[inc.tree_size as usize].root);
    let path: Vec<[u8; 32]> = inc.audit_path.iter().map(|h| unhex(h)).collect();
    merkle::verify_inclusion(
        &unhex(&inc.leaf_hash),
        inc.leaf_index,
        inc.tree_size,
        &path,
        &root_at(inc.tree_size),
    )
    .expect("the inclusion vector verifies");
    let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    for v in &entries.entries[..inc.tree_size as usize] {
        ct.push(v.canonical.as_bytes().to_vec());
    }
    assert_eq!(
        ct.prove_inclusion(inc.leaf_index as usize).as_bytes(),
        path.concat()
    );

    let con = &proofs.consistency;
    let proof: Vec<[u8; 32]> = con.proof.iter().map(|h| unhex(h)).collect();
    assert_eq!(con.from_root, tree.roots[con.from as usize].root);
    assert_eq!(con.to_root, tree.roots[con.to as usize].root);
    merkle::verify_consistency(
        con.from,
        con.to,
        &root_at(con.from),
        &root_at(con.to),
        &proof,
    )
    .expect("the consistency vector verifies");
    let mut ct = MemoryBackedTree::<Sha256, Vec<u8>>::new();
    for v in &entries.entries[..con.to as usize] {
        ct.push(v.canonical.as_bytes().to_vec());
    }
    assert_eq!(
        ct.prove_consistency((con.to - con.from) as usize)
            .as_bytes(),
        proof.concat()
    );
}

#[test]
fn the_checkpoint_vector_verifies_with_its_key() {
    let cp: CheckpointFile = read("checkpoint.json");
    let tree: TreeFile = read("tree.json");
    // The key from the seed, the key id and vkey from the key, by the documented rules.
    let (_, seed) = key("liaison test vector ledger key");
    assert_eq!(cp.seed, hex::encode(seed));
    let public_key = unhex(&cp.public_key);
    let mut id_input = format!("{}\n", cp.origin).into_bytes();
    id_input.push(0x01);
    id_input.extend_from_slice(&public_key);
    let key_id = &Sha256::digest(&id_input)[..4];
    assert_eq!(cp.key_id, hex::encode(key_id));
    let mut typed = vec![0x01];
    typed.extend_from_slice(&public_key);
    assert_eq!(
        cp.vkey,
        format!("{}+{}+{}", cp.origin, cp.key_id, STANDARD.encode(&typed))
    );
    // The signed text and the note.
    assert_eq!(cp.root, tree.roots[cp.tree_size as usize].root);
    let root_b64 = STANDARD.encode(unhex(&cp.root));
    assert!(cp.signed_text.starts_with(&format!(
        "{}\n{}\n{root_b64}\ntime ",
        cp.origin, cp.tree_size
    )));
    assert_eq!(
        cp.note,
        format!(
            "{}\n\u{2014} {} {}\n",
            cp.signed_text, cp.origin, cp.signature
        )
    );
    let blob = STANDARD.decode(&cp.signature).expect("base64");
    assert_eq!(blob.len(), 68);
    assert_eq!(&blob[..4], key_id);
    UnparsedPublicKey::new(&ED25519, &public_key)
        .verify(cp.signed_text.as_bytes(), &blob[4..])
        .expect("Ed25519 signature of the signed text");
    // liaison's verifier, from the vkey alone, opens both notes; the cosigner's line is
    // ignored, and the cosigner's own key opens the cosigned note too.
    let verifier = CheckpointVerifier::from_vkey(&cp.vkey).expect("vkey");
    for note in [&cp.note, &cp.note_cosigned] {
        let checkpoint = verifier.open(note).expect("the vector verifies");
        assert_eq!(checkpoint.size, cp.tree_size);
        assert_eq!(checkpoint.root, unhex(&cp.root));
    }
    assert!(cp.note_cosigned.starts_with(&cp.note));
    let cosigner = CheckpointVerifier::from_vkey(&cp.cosigner_vkey).expect("vkey");
    assert!(cosigner.verify_note(&cp.note_cosigned).is_ok());
    assert!(cosigner.verify_note(&cp.note).is_err());
}

/// A verifier written from docs/audit.md alone, in another language, agrees with every
/// vector: the contract is enough to re-implement the encoding, the tree and the notes.
#[test]
fn an_independent_verifier_written_from_the_docs_agrees_with_the_vectors() {
    let dir = vectors_dir();
    let output = std::process::Command::new("python3")
        .arg(dir.join("independent_verifier.py"))
        .arg(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "python3 is needed for the independent verifier (scripts/test checks for it): {e}"
            )
        });
    assert!(
        output.status.success(),
        "the independent verifier disagrees (python3 with `cryptography`; scripts/test installs it):\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("all vectors agree"));
}
