//! Verifying a ledger from its records alone: the same code checks the live database
//! (`liaison ledger verify`) and an export on a machine with no database
//! (`liaison ledger verify --offline DIR`). Nothing here touches PostgreSQL.
//!
//! What is checked, record by record:
//! - entries come with seqs 1, 2, 3… with no gap and no repeat;
//! - each entry's canonical bytes carry that same seq (a swapped or moved row is found);
//! - the leaf hash is recomputed from the bytes (and compared with the stored one, if any);
//! - every message body hashes to the `detail.sha256` of its `message.accepted` entry, and
//!   every accepted entry has its body;
//! - every checkpoint's signature verifies with the ledger key, and its root equals the
//!   root recomputed from the leaves at its size; a checkpoint beyond the last entry means
//!   entries were removed. All roots are recomputed from one sequence of leaves, so
//!   checkpoints that all match are consistent with each other;
//! - optionally, a reference (an earlier export) is a prefix of what is verified.
//!
//! The set of entry kinds is open: only `message.accepted` is read further.

use std::collections::BTreeMap;
use std::fmt;

use liaison_core::audit::{self, Hash};
use liaison_core::checkpoint::CheckpointVerifier;
use liaison_core::merkle::CompactRange;
use serde::Deserialize;
use uuid::Uuid;

/// One entry as read from the store.
#[derive(Clone, Debug)]
pub struct EntryRecord {
    pub seq: u64,
    pub bytes: Vec<u8>,
    /// The leaf hash the store keeps beside the bytes (the database does; an export not).
    pub stored_leaf_hash: Option<Hash>,
}

/// One accepted message's bytes as read from the store.
#[derive(Clone, Debug)]
pub struct MessageRecord {
    pub id: Uuid,
    pub seq: u64,
    pub body: Vec<u8>,
    /// The digest the store keeps beside the body, if any.
    pub stored_sha256: Option<Hash>,
}

/// One stored checkpoint: its tree size as the store indexes it, and the signed note.
#[derive(Clone, Debug)]
pub struct CheckpointRecord {
    pub tree_size: u64,
    pub note: String,
}

/// Something wrong, with the seq or checkpoint it is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Finding {
    /// Seqs `from..=to` are absent.
    Missing { from: u64, to: u64 },
    /// A seq came again or out of order.
    OutOfOrder { seq: u64, after: u64 },
    /// The entry stored at `seq` says it is entry `embedded` (rows swapped or moved).
    SeqMismatch { seq: u64, embedded: u64 },
    /// The bytes at `seq` are not a canonical entry.
    Unreadable { seq: u64, reason: String },
    /// The leaf hash stored beside the entry is not the hash of its bytes.
    LeafHashMismatch { seq: u64 },
    /// The message body does not hash to what its accepted entry recorded.
    PayloadMismatch { seq: u64, message: Uuid },
    /// An accepted entry has no message body.
    PayloadMissing { seq: u64, message: Option<Uuid> },
    /// A message body points at an entry that is not its acceptance.
    MessageWithoutEntry { seq: u64, message: Uuid },
    /// A checkpoint does not verify (forged, altered, other key, unreadable).
    CheckpointSignature { tree_size: u64, reason: String },
    /// A checkpoint's root differs from the root of the leaves at its size.
    CheckpointRoot { tree_size: u64, since: u64 },
    /// A checkpoint covers more entries than there are: entries after `last` were removed.
    Truncated { tree_size: u64, last: u64 },
    /// The entry differs from the one at the same seq in the reference export.
    DiffersFromReference { seq: u64 },
    /// The reference export holds entries that are not here any more.
    ShorterThanReference { reference: u64, last: u64 },
    /// The reference could not be read.
    Reference { reason: String },
}

impl Finding {
    /// The first seq this finding shows to be bad.
    pub fn seq(&self) -> Option<u64> {
        match self {
            Self::Missing { from, .. } => Some(*from),
            Self::OutOfOrder { seq, .. }
            | Self::SeqMismatch { seq, .. }
            | Self::Unreadable { seq, .. }
            | Self::LeafHashMismatch { seq }
            | Self::PayloadMismatch { seq, .. }
            | Self::PayloadMissing { seq, .. }
            | Self::MessageWithoutEntry { seq, .. }
            | Self::DiffersFromReference { seq } => Some(*seq),
            // The leaves changed somewhere after the last checkpoint that matched.
            Self::CheckpointRoot { since, .. } => Some(since + 1),
            Self::Truncated { last, .. } | Self::ShorterThanReference { last, .. } => {
                Some(last + 1)
            }
            Self::CheckpointSignature { .. } | Self::Reference { .. } => None,
        }
    }

    /// The checkpoint (tree size) this finding is about, if it is about one.
    pub fn checkpoint(&self) -> Option<u64> {
        match self {
            Self::CheckpointSignature { tree_size, .. }
            | Self::CheckpointRoot { tree_size, .. }
            | Self::Truncated { tree_size, .. } => Some(*tree_size),
            _ => None,
        }
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { from, to } if from == to => write!(f, "seq {from}: entry missing"),
            Self::Missing { from, to } => write!(f, "seq {from}: entries {from}..={to} missing"),
            Self::OutOfOrder { seq, after } => write!(f, "seq {seq}: out of order after {after}"),
            Self::SeqMismatch { seq, embedded } => write!(
                f,
                "seq {seq}: the stored entry is entry {embedded} (rows swapped or moved)"
            ),
            Self::Unreadable { seq, reason } => {
                write!(f, "seq {seq}: not a canonical entry: {reason}")
            }
            Self::LeafHashMismatch { seq } => {
                write!(
                    f,
                    "seq {seq}: the entry bytes do not hash to the stored leaf hash"
                )
            }
            Self::PayloadMismatch { seq, message } => write!(
                f,
                "seq {seq}: the body of message {message} does not hash to the digest its accepted entry recorded"
            ),
            Self::PayloadMissing { seq, message } => match message {
                Some(m) => write!(f, "seq {seq}: the body of accepted message {m} is missing"),
                None => write!(f, "seq {seq}: an accepted entry names no message"),
            },
            Self::MessageWithoutEntry { seq, message } => write!(
                f,
                "seq {seq}: message {message} points at an entry that does not accept it"
            ),
            Self::CheckpointSignature { tree_size, reason } => {
                write!(
                    f,
                    "checkpoint {tree_size}: signature does not verify: {reason}"
                )
            }
            Self::CheckpointRoot { tree_size, since } => write!(
                f,
                "checkpoint {tree_size}: root differs from the entries' root; an entry in seqs {}..={tree_size} was changed",
                since + 1
            ),
            Self::Truncated { tree_size, last } => write!(
                f,
                "seq {}: checkpoint {tree_size} covers {tree_size} entries but the ledger ends at seq {last}",
                last + 1
            ),
            Self::DiffersFromReference { seq } => {
                write!(
                    f,
                    "seq {seq}: differs from the same entry in the earlier export"
                )
            }
            Self::ShorterThanReference { reference, last } => write!(
                f,
                "seq {}: the earlier export holds {reference} entries, the ledger ends at seq {last}",
                last + 1
            ),
            Self::Reference { reason } => write!(f, "earlier export unreadable: {reason}"),
        }
    }
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    pub messages: u64,
    pub checkpoints: u64,
    /// The root of all entries verified.
    pub root: Hash,
    /// At most [`MAX_FINDINGS`], in the order found.
    pub findings: Vec<Finding>,
    /// How many findings there were in all.
    pub findings_total: u64,
}

/// Findings kept in a report; the rest are only counted.
pub const MAX_FINDINGS: usize = 100;

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.findings_total == 0
    }

    /// The lowest seq any finding names: where the ledger first goes wrong. A root that
    /// does not match only bounds the change to a range of seqs; when an exact finding
    /// falls in that range it explains the mismatch, otherwise the range's start counts.
    pub fn first_bad_seq(&self) -> Option<u64> {
        let exact: Vec<u64> = self
            .findings
            .iter()
            .filter(|f| !matches!(f, Finding::CheckpointRoot { .. }))
            .filter_map(Finding::seq)
            .collect();
        let unexplained = self.findings.iter().filter_map(|f| match f {
            Finding::CheckpointRoot { tree_size, since } => {
                let explained = exact.iter().any(|s| s > since && s <= tree_size);
                (!explained).then_some(since + 1)
            }
            _ => None,
        });
        exact.iter().copied().chain(unexplained).min()
    }

    /// The checkpoints the findings name, ascending.
    pub fn bad_checkpoints(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self
            .findings
            .iter()
            .filter_map(Finding::checkpoint)
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }
}

/// The fields of an entry the verifier reads; everything else is only hashed.
#[derive(Deserialize)]
struct EntryHead<'a> {
    seq: u64,
    #[serde(borrow)]
    kind: &'a str,
    message: Option<Uuid>,
    #[serde(default)]
    detail: Option<AcceptedDetail>,
}

#[derive(Deserialize)]
struct AcceptedDetail {
    sha256: Option<String>,
}

/// The leaf hashes of a reference export, in seq order.
pub type ReferenceLeaves = Box<dyn Iterator<Item = Result<(u64, Hash), String>> + Send>;

/// Streaming verifier: feed entries in seq order, each message after its entry, then
/// [`Verifier::finish`].
pub struct Verifier {
    range: CompactRange,
    last_seq: u64,
    /// Valid checkpoints by size, and the root each claims.
    checkpoints: BTreeMap<u64, Hash>,
    /// The largest checkpoint size whose root matched.
    last_good_checkpoint: u64,
    /// Accepted entries awaiting their message: seq → (message id, recorded digest).
    accepted: BTreeMap<u64, (Option<Uuid>, Option<String>)>,
    reference: Option<ReferenceLeaves>,
    reference_done: bool,
    report: VerifyReport,
}

impl Verifier {
    /// Checks every checkpoint's signature now; the valid ones are compared with the
    /// recomputed roots as the entries stream by.
    pub fn new(key: &CheckpointVerifier, checkpoints: &[CheckpointRecord]) -> Self {
        let mut verifier = Self {
            range: CompactRange::new(),
            last_seq: 0,
            checkpoints: BTreeMap::new(),
            last_good_checkpoint: 0,
            accepted: BTreeMap::new(),
            reference: None,
            reference_done: true,
            report: VerifyReport::default(),
        };
        for record in checkpoints {
            verifier.add_checkpoint(key, record);
        }
        verifier
    }

    /// Adds a checkpoint, e.g. one of an earlier export.
    pub fn add_checkpoint(&mut self, key: &CheckpointVerifier, record: &CheckpointRecord) {
        self.report.checkpoints += 1;
        match key.open(&record.note) {
            Ok(c) if c.size != record.tree_size => self.find(Finding::CheckpointSignature {
                tree_size: record.tree_size,
                reason: format!(
                    "it is stored as size {} but signs size {}",
                    record.tree_size, c.size
                ),
            }),
            Ok(c) => match self.checkpoints.get(&c.size) {
                Some(root) if *root != c.root => self.find(Finding::CheckpointSignature {
                    tree_size: c.size,
                    reason: "two validly signed checkpoints of this size disagree".into(),
                }),
                _ => {
                    self.checkpoints.insert(c.size, c.root);
                }
            },
            Err(e) => self.find(Finding::CheckpointSignature {
                tree_size: record.tree_size,
                reason: e.to_string(),
            }),
        }
    }

    /// Compares every entry with the same seq of `reference` (an earlier export).
    pub fn with_reference(mut self, reference: ReferenceLeaves) -> Self {
        self.reference = Some(reference);
        self.reference_done = false;
        self
    }

    fn find(&mut self, finding: Finding) {
        self.report.findings_total += 1;
        if self.report.findings.len() < MAX_FINDINGS {
            self.report.findings.push(finding);
        }
    }

    pub fn entries_seen(&self) -> u64 {
        self.report.entries
    }

    pub fn entry(&mut self, record: EntryRecord) {
        let seq = record.seq;
        self.report.entries += 1;
        if seq <= self.last_seq {
            self.find(Finding::OutOfOrder {
                seq,
                after: self.last_seq,
            });
        } else if seq != self.last_seq + 1 {
            self.find(Finding::Missing {
                from: self.last_seq + 1,
                to: seq - 1,
            });
        }
        self.last_seq = self.last_seq.max(seq);

        let leaf = audit::leaf_hash(&record.bytes);
        if record.stored_leaf_hash.is_some_and(|stored| stored != leaf) {
            self.find(Finding::LeafHashMismatch { seq });
        }
        match serde_json::from_slice::<EntryHead<'_>>(&record.bytes) {
            Ok(head) => {
                if head.seq != seq {
                    self.find(Finding::SeqMismatch {
                        seq,
                        embedded: head.seq,
                    });
                }
                if head.kind == "message.accepted" {
                    let digest = head.detail.and_then(|d| d.sha256);
                    self.accepted.insert(seq, (head.message, digest));
                }
            }
            Err(e) => self.find(Finding::Unreadable {
                seq,
                reason: e.to_string(),
            }),
        }
        self.compare_with_reference(seq, leaf);

        self.range.push(leaf, |_, _| {});
        let size = self.range.size();
        if let Some(claimed) = self.checkpoints.get(&size).copied() {
            if claimed == self.range.root() {
                self.last_good_checkpoint = size;
            } else {
                let since = self.last_good_checkpoint;
                self.find(Finding::CheckpointRoot {
                    tree_size: size,
                    since,
                });
            }
        }
    }

    fn compare_with_reference(&mut self, seq: u64, leaf: Hash) {
        if self.reference_done {
            return;
        }
        let Some(reference) = self.reference.as_mut() else {
            return;
        };
        match reference.next() {
            None => self.reference_done = true,
            Some(Ok((ref_seq, ref_leaf))) => {
                if ref_seq != seq || ref_leaf != leaf {
                    self.find(Finding::DiffersFromReference { seq });
                }
            }
            Some(Err(reason)) => {
                self.reference_done = true;
                self.find(Finding::Reference { reason });
            }
        }
    }

    /// A message body; its accepted entry must have been fed already.
    pub fn message(&mut self, record: MessageRecord) {
        self.report.messages += 1;
        let digest = audit::sha256(&record.body);
        if record.stored_sha256.is_some_and(|stored| stored != digest) {
            self.find(Finding::PayloadMismatch {
                seq: record.seq,
                message: record.id,
            });
            self.accepted.remove(&record.seq);
            return;
        }
        match self.accepted.remove(&record.seq) {
            Some((Some(id), recorded)) if id == record.id => {
                if recorded.as_deref() != Some(hex::encode(digest).as_str()) {
                    self.find(Finding::PayloadMismatch {
                        seq: record.seq,
                        message: record.id,
                    });
                }
            }
            _ => self.find(Finding::MessageWithoutEntry {
                seq: record.seq,
                message: record.id,
            }),
        }
    }

    /// Every accepted entry up to `seq` should have had its message by now.
    pub fn messages_done_through(&mut self, seq: u64) {
        let rest = self.accepted.split_off(&(seq + 1));
        let done = std::mem::replace(&mut self.accepted, rest);
        for (seq, (message, _)) in done {
            self.find(Finding::PayloadMissing { seq, message });
        }
    }

    pub fn finish(mut self) -> VerifyReport {
        self.messages_done_through(u64::MAX - 1);
        let last = self.last_seq;
        if let Some((&size, _)) = self.checkpoints.range(self.range.size() + 1..).next() {
            self.find(Finding::Truncated {
                tree_size: size,
                last,
            });
        }
        if !self.reference_done
            && let Some(reference) = self.reference.as_mut()
        {
            let extra = reference
                .by_ref()
                .filter_map(Result::ok)
                .map(|(s, _)| s)
                .max();
            if let Some(reference_last) = extra {
                self.find(Finding::ShorterThanReference {
                    reference: reference_last,
                    last,
                });
            }
        }
        self.report.root = self.range.root();
        self.report
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use liaison_core::checkpoint::CheckpointSigner;
    use liaison_core::{Entry, EntryKind};
    use ring::rand::SystemRandom;
    use ring::signature::Ed25519KeyPair;
    use serde_json::json;

    const ORIGIN: &str = "liaison.test/verify";

    #[derive(Clone)]
    struct Fixture {
        entries: Vec<EntryRecord>,
        messages: Vec<MessageRecord>,
        signer: std::sync::Arc<CheckpointSigner>,
    }

    fn fixture(n: u64) -> Fixture {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let mut entries = Vec::new();
        let mut messages = Vec::new();
        for seq in 1..=n {
            let id = Uuid::now_v7();
            let body = format!("{{\"n\":{seq}}}").into_bytes();
            let accepted = seq % 2 == 1;
            let entry = Entry {
                seq,
                at: time::macros::datetime!(2026-11-26 08:00:00 UTC),
                kind: if accepted {
                    EntryKind::MessageAccepted
                } else {
                    EntryKind::DeliveryDispatched
                },
                message: Some(id),
                caseref: None,
                agency: None,
                detail: json!({ "sha256": hex::encode(audit::sha256(&body)) }),
            };
            let bytes = entry.canonical_bytes();
            entries.push(EntryRecord {
                seq,
                stored_leaf_hash: Some(audit::leaf_hash(&bytes)),
                bytes,
            });
            if accepted {
                messages.push(MessageRecord {
                    id,
                    seq,
                    body,
                    stored_sha256: None,
                });
            }
        }
        Fixture {
            entries,
            messages,
            signer: std::sync::Arc::new(CheckpointSigner::new(ORIGIN, key).unwrap()),
        }
    }

    impl Fixture {
        fn checkpoint(&self, size: u64) -> CheckpointRecord {
            let mut range = CompactRange::new();
            for e in &self.entries[..size as usize] {
                range.push(audit::leaf_hash(&e.bytes), |_, _| {});
            }
            CheckpointRecord {
                tree_size: size,
                note: self
                    .signer
                    .sign(size, range.root(), time::OffsetDateTime::now_utc()),
            }
        }

        fn verify(&self, checkpoints: &[CheckpointRecord]) -> VerifyReport {
            let key = CheckpointVerifier::new(ORIGIN, self.signer.public_key()).unwrap();
            let mut v = Verifier::new(&key, checkpoints);
            let mut messages = self.messages.iter().peekable();
            for e in &self.entries {
                v.entry(e.clone());
                while let Some(m) = messages.next_if(|m| m.seq <= e.seq) {
                    v.message(m.clone());
                }
            }
            for m in messages {
                v.message(m.clone());
            }
            v.finish()
        }
    }

    #[test]
    fn an_intact_ledger_verifies() {
        let f = fixture(20);
        let report = f.verify(&[f.checkpoint(7), f.checkpoint(20)]);
        assert!(report.is_ok(), "{:?}", report.findings);
        assert_eq!(
            (report.entries, report.messages, report.checkpoints),
            (20, 10, 2)
        );
    }

    #[test]
    fn each_kind_of_tampering_names_its_seq_or_checkpoint() {
        let f = fixture(20);
        let checkpoints = [f.checkpoint(7), f.checkpoint(20)];

        let mut payload = f.clone();
        payload.messages[4].body[2] ^= 1; // seq 9
        assert_eq!(payload.verify(&checkpoints).first_bad_seq(), Some(9));

        let mut deleted = f.clone();
        deleted.entries.remove(11); // seq 12
        assert_eq!(deleted.verify(&checkpoints).first_bad_seq(), Some(12));

        let mut swapped = f.clone();
        let (a, b) = (
            swapped.entries[4].bytes.clone(),
            swapped.entries[5].bytes.clone(),
        );
        swapped.entries[4].bytes = b;
        swapped.entries[5].bytes = a;
        assert_eq!(swapped.verify(&checkpoints).first_bad_seq(), Some(5));

        let mut truncated = f.clone();
        truncated.entries.truncate(17);
        truncated.messages.retain(|m| m.seq <= 17);
        let report = truncated.verify(&checkpoints);
        assert_eq!(report.first_bad_seq(), Some(18));
        assert_eq!(report.bad_checkpoints(), vec![20]);

        let mut forged = checkpoints.clone();
        forged[0].note = forged[0].note.replacen("\n7\n", "\n6\n", 1);
        let report = f.verify(&forged);
        assert_eq!(report.bad_checkpoints(), vec![7]);
        assert_eq!(report.first_bad_seq(), None);

        // A rewritten entry whose stored leaf hash was fixed up too: located by the roots.
        let mut rewritten = f.clone();
        rewritten.entries[3].bytes = b"{\"seq\":4,\"kind\":\"x\"}".to_vec();
        rewritten.entries[3].stored_leaf_hash = None;
        let report = rewritten.verify(&checkpoints);
        assert_eq!(report.bad_checkpoints(), vec![7, 20]);
        assert!(matches!(
            report.findings[0],
            Finding::CheckpointRoot { since: 0, .. }
        ));
    }

    #[test]
    fn a_reference_export_must_be_a_prefix() {
        let f = fixture(10);
        let leaves: Vec<(u64, Hash)> = f
            .entries
            .iter()
            .map(|e| (e.seq, audit::leaf_hash(&e.bytes)))
            .collect();
        let key = CheckpointVerifier::new(ORIGIN, f.signer.public_key()).unwrap();
        let run = |entries: &[EntryRecord], reference: Vec<(u64, Hash)>| {
            let mut v =
                Verifier::new(&key, &[]).with_reference(Box::new(reference.into_iter().map(Ok)));
            for e in entries {
                v.entry(e.clone());
            }
            for m in &f.messages {
                v.message(m.clone());
            }
            v.finish()
        };
        assert!(run(&f.entries, leaves[..6].to_vec()).is_ok());
        let mut changed = f.entries.clone();
        changed[3].bytes.push(b' ');
        changed[3].stored_leaf_hash = None;
        assert_eq!(run(&changed, leaves.clone()).first_bad_seq(), Some(4));
        let report = run(&f.entries[..8], leaves);
        assert!(!report.is_ok());
        assert_eq!(report.first_bad_seq(), Some(9));
    }
}
