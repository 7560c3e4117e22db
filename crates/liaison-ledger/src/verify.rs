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
//! - every column copied beside the canonical bytes for lookups says what the bytes say
//!   (live only: an export carries no copies): `ledger_entries.recorded_at/kind/message_id/
//!   caseref/agency`; `messages.sender/type/caseref/inreplyto/channel/route` against the
//!   message's accepted entry and `messages.traceparent` against the (verified) body;
//!   every `outbox` row delivers to a recipient of the route its accepted entry recorded,
//!   each recipient exactly once. Traces, proofs and read authorization go through these
//!   columns, so a changed copy could hide an entry or open a message to another agency;
//!   `messages.received_at` is the only copy with no canonical source (the entry's `at` is
//!   the commit time), and the outbox's working state (attempts, leases) is not audited;
//! - every stored interior node of the Merkle tree (`ledger_tree_nodes`, live only) equals
//!   the hash recomputed from the leaves, none is missing and none lies beyond the tree;
//! - every checkpoint's signature verifies with the ledger key, and its root equals the
//!   root recomputed from the leaves at its size; a checkpoint beyond the last entry means
//!   entries were removed. All roots are recomputed from one sequence of leaves, so
//!   checkpoints that all match are consistent with each other;
//! - optionally, a reference (an earlier export) is a prefix of what is verified.
//!
//! The set of entry kinds is open: only `message.accepted` is read further.
//!
//! Where a fault is (the prefix-root method): each checkpoint signs the root of the first
//! N leaves, and the verifier recomputes the root of every prefix as the leaves stream by.
//! The largest checkpoint whose root matches vouches for every entry up to it; the first
//! whose root differs bounds a changed entry to the seqs after the one up to the other —
//! and that range is all the checkpoints can tell ([`Location::Range`]). An exact seq
//! needs evidence about single leaves: the leaf hash stored beside the entry (live), the
//! same seq in an earlier export, the seq an entry's bytes carry, a body's digest. The
//! stored tree nodes (live) narrow a range to the entries under the lowest wrong node.
//! Each fault is one finding: what it implies further (every later line moved along, every
//! later checkpoint's root, the tree nodes above it, an orphaned body) is not found again.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;

use liaison_core::audit::{self, Hash};
use liaison_core::checkpoint::CheckpointVerifier;
use liaison_core::merkle::{CompactRange, NodeId};
use serde::Deserialize;
use serde_json::Value;
use time::OffsetDateTime;
use uuid::Uuid;

/// One entry as read from the store.
#[derive(Clone, Debug, Default)]
pub struct EntryRecord {
    pub seq: u64,
    pub bytes: Vec<u8>,
    /// The leaf hash the store keeps beside the bytes (the database does; an export not).
    pub stored_leaf_hash: Option<Hash>,
    /// The lookup columns the store keeps beside the bytes (the database does; an export not).
    pub columns: Option<EntryColumns>,
}

/// `ledger_entries`' copies of what the canonical bytes say, kept for indexed lookups.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryColumns {
    pub recorded_at: OffsetDateTime,
    pub kind: String,
    pub message_id: Option<Uuid>,
    pub caseref: Option<String>,
    pub agency: Option<String>,
}

/// One accepted message's bytes as read from the store.
#[derive(Clone, Debug, Default)]
pub struct MessageRecord {
    pub id: Uuid,
    pub seq: u64,
    pub body: Vec<u8>,
    /// The digest the store keeps beside the body, if any.
    pub stored_sha256: Option<Hash>,
    /// The store says the body was erased, by the `case.erased` entry of this seq (the
    /// body is then empty): checked against the erasure entries, not hashed.
    pub erased_by: Option<u64>,
    /// The copied columns of the `messages` row (the database has them; an export not).
    pub columns: Option<MessageColumns>,
    /// The message's outbox rows (the database has them; an export not).
    pub deliveries: Option<Vec<DeliveryRecord>>,
}

/// `messages`' copies of what the accepted entry (and the body) say.
#[derive(Clone, Debug, PartialEq)]
pub struct MessageColumns {
    pub sender: String,
    pub type_: String,
    pub caseref: Option<String>,
    pub inreplyto: Option<Uuid>,
    pub traceparent: Option<String>,
    pub channel: String,
    pub route: Value,
}

/// One outbox row: who a message is delivered to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeliveryRecord {
    pub delivery_id: i64,
    pub recipient: String,
    pub role: String,
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
    /// The entry stored at `seq` says it is entry `embedded`, and so do the `run − 1`
    /// records after it, each off by the same amount: rows swapped or moved (`run` 1), or
    /// entries removed or repeated with every later one moved along (one finding for all).
    SeqMismatch { seq: u64, embedded: u64, run: u64 },
    /// The bytes at `seq` are not a canonical entry.
    Unreadable { seq: u64, reason: String },
    /// The leaf hash stored beside the entry is not the hash of its bytes.
    LeafHashMismatch { seq: u64 },
    /// The message body does not hash to what its accepted entry recorded.
    PayloadMismatch { seq: u64, message: Uuid },
    /// An accepted entry has no message body.
    PayloadMissing { seq: u64, message: Option<Uuid> },
    /// A body is missing as erased, but no `case.erased` entry names its message.
    ErasedWithoutEntry { seq: u64, message: Uuid },
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
    /// A column copied beside the canonical bytes of entry `seq` (or of the message it
    /// accepts) says something other than they do.
    CopiedColumn {
        seq: u64,
        column: &'static str,
        stored: String,
        canonical: String,
    },
    /// An outbox row of the message accepted at `seq` disagrees with the route the entry
    /// recorded: a recipient it does not name, a second row for one, or none at all.
    Delivery {
        seq: u64,
        message: Uuid,
        delivery_id: Option<i64>,
        reason: String,
    },
    /// An outbox row names a message the ledger never accepted.
    OrphanDelivery { delivery_id: i64, message: Uuid },
    /// A stored interior node of the Merkle tree is not the hash of the entries under it,
    /// or is missing.
    TreeNode {
        level: u8,
        index: u64,
        reason: &'static str,
    },
    /// A stored interior node covers entries after `last`, the last one there is: entries
    /// were removed (or the node was added); `more` such nodes besides this one.
    TreeNodeBeyond {
        level: u8,
        index: u64,
        last: u64,
        more: u64,
    },
}

/// Where a finding puts the fault: at one seq, or somewhere in a range of seqs, when that
/// is all the evidence shows (a checkpoint root that does not match bounds a changed entry
/// to the seqs after the last checkpoint that does; a wrong tree node to its entries).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Location {
    Seq(u64),
    Range { from: u64, to: u64 },
}

impl Location {
    fn bounds(self) -> (u64, u64) {
        match self {
            Self::Seq(s) => (s, s),
            Self::Range { from, to } => (from, to),
        }
    }
}

impl From<u64> for Location {
    fn from(seq: u64) -> Self {
        Self::Seq(seq)
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Seq(s) => write!(f, "seq {s}"),
            Self::Range { from, to } => write!(f, "seqs {from}..={to}"),
        }
    }
}

/// The seqs under tree node (`level`, `index`): `index·2^level + 1 ..= (index + 1)·2^level`.
fn node_seqs(level: u8, index: u64) -> (u64, u64) {
    let width = 1u64.checked_shl(u32::from(level)).unwrap_or(u64::MAX);
    let first = index.saturating_mul(width).saturating_add(1);
    (first, first.saturating_add(width - 1))
}

/// Stored values quoted in findings are cut to this many characters.
const QUOTE_MAX: usize = 80;

fn quote(value: Option<&str>) -> String {
    match value {
        None => "null".to_owned(),
        Some(s) if s.chars().count() > QUOTE_MAX => {
            let cut: String = s.chars().take(QUOTE_MAX).collect();
            format!("{cut:?}…")
        }
        Some(s) => format!("{s:?}"),
    }
}

impl Finding {
    /// Where the fault is, as far as this finding shows.
    pub fn location(&self) -> Option<Location> {
        match self {
            Self::Missing { from, .. } => Some(Location::Seq(*from)),
            Self::OutOfOrder { seq, .. }
            | Self::SeqMismatch { seq, .. }
            | Self::Unreadable { seq, .. }
            | Self::LeafHashMismatch { seq }
            | Self::PayloadMismatch { seq, .. }
            | Self::PayloadMissing { seq, .. }
            | Self::ErasedWithoutEntry { seq, .. }
            | Self::MessageWithoutEntry { seq, .. }
            | Self::CopiedColumn { seq, .. }
            | Self::Delivery { seq, .. }
            | Self::DiffersFromReference { seq } => Some(Location::Seq(*seq)),
            Self::TreeNode { level, index, .. } => {
                let (from, to) = node_seqs(*level, *index);
                Some(Location::Range { from, to })
            }
            // The leaves changed somewhere after the last checkpoint that matched.
            Self::CheckpointRoot { tree_size, since } => Some(Location::Range {
                from: since + 1,
                to: *tree_size,
            }),
            Self::Truncated { last, .. }
            | Self::ShorterThanReference { last, .. }
            | Self::TreeNodeBeyond { last, .. } => Some(Location::Seq(last + 1)),
            Self::CheckpointSignature { .. }
            | Self::Reference { .. }
            | Self::OrphanDelivery { .. } => None,
        }
    }

    /// Whether the finding shows a leaf itself to be other than it was signed (so that it
    /// explains a checkpoint root or a tree node over it that does not match).
    fn changes_leaves(&self) -> bool {
        matches!(
            self,
            Self::Missing { .. }
                | Self::OutOfOrder { .. }
                | Self::SeqMismatch { .. }
                | Self::Unreadable { .. }
                | Self::LeafHashMismatch { .. }
                | Self::DiffersFromReference { .. }
        )
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
            Self::SeqMismatch {
                seq,
                embedded,
                run: 1,
            } => write!(
                f,
                "seq {seq}: the stored entry is entry {embedded} (rows swapped or moved)"
            ),
            Self::SeqMismatch { seq, embedded, run } if embedded > seq => write!(
                f,
                "seq {seq}: entries {seq}..={} are missing: seqs {seq}..={} hold entries {embedded}..={}, each moved up by {}",
                embedded - 1,
                seq + run - 1,
                embedded + run - 1,
                embedded - seq
            ),
            Self::SeqMismatch { seq, embedded, run } => write!(
                f,
                "seq {seq}: an entry is repeated or inserted: seqs {seq}..={} hold entries {embedded}..={}, each moved down by {}",
                seq + run - 1,
                embedded + run - 1,
                seq - embedded
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
            Self::ErasedWithoutEntry { seq, message } => write!(
                f,
                "seq {seq}: the body of accepted message {message} is gone as erased, but no case.erased entry names it"
            ),
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
                "checkpoint {tree_size}: root differs from the entries' root: an entry in seqs {}..={tree_size} was changed (checkpoint {since} still matches; only this range is known)",
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
            Self::CopiedColumn {
                seq,
                column,
                stored,
                canonical,
            } => write!(
                f,
                "seq {seq}: {column} is {stored} but the entry says {canonical}"
            ),
            Self::Delivery {
                seq,
                message,
                delivery_id: Some(d),
                reason,
            } => write!(f, "seq {seq}: outbox row {d} of message {message} {reason}"),
            Self::Delivery {
                seq,
                message,
                delivery_id: None,
                reason,
            } => write!(f, "seq {seq}: message {message} {reason}"),
            Self::OrphanDelivery {
                delivery_id,
                message,
            } => write!(
                f,
                "outbox row {delivery_id} delivers message {message}, which the ledger never accepted"
            ),
            Self::TreeNode {
                level,
                index,
                reason,
            } => {
                let (first, last) = node_seqs(*level, *index);
                write!(
                    f,
                    "seq {first}: the stored tree node (level {level}, index {index}) over seqs {first}..={last} {reason}"
                )
            }
            Self::TreeNodeBeyond {
                level,
                index,
                last,
                more,
            } => {
                let (first, end) = node_seqs(*level, *index);
                write!(
                    f,
                    "seq {}: the stored tree node (level {level}, index {index}) covers seqs {first}..={end}, but the ledger ends at seq {last}",
                    last + 1
                )?;
                if *more > 0 {
                    write!(f, " ({more} more such nodes)")?;
                }
                Ok(())
            }
        }
    }
}

/// The outcome of a verification.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub entries: u64,
    /// Message bodies verified against their digests (erased ones not included).
    pub messages: u64,
    /// Bodies erased by a `case.erased` entry that names them: not failures.
    pub erased: Vec<ErasedBody>,
    pub checkpoints: u64,
    /// The root of all entries verified.
    pub root: Hash,
    /// At most [`MAX_FINDINGS`], in the order found; one per fault: what a fault implies
    /// further (every later line moved along, every later checkpoint's root, the tree
    /// nodes above a changed entry) is not found again.
    pub findings: Vec<Finding>,
    /// How many findings there were in all.
    pub findings_total: u64,
    /// Validly signed checkpoints whose root is not the root of the entries at their size,
    /// whether or not a finding of their own names them (the fault that explains them is
    /// named once, by the finding that locates it best).
    pub mismatched_checkpoints: Vec<u64>,
    /// The largest checkpoint whose root matches: the entries up to it are the ones signed.
    pub verified_through: u64,
    /// Entries `1..=skipped_through` were not read: the verification started from the
    /// tree they make (an archive's recorded frontier, or an archived range whose archive
    /// was not given); 0 when it started at seq 1.
    pub skipped_through: u64,
}

/// A body the ledger erased on the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErasedBody {
    pub message: Uuid,
    /// The seq of its `message.accepted` entry.
    pub seq: u64,
    /// The seq of the `case.erased` entry that names it.
    pub by: u64,
}

/// Findings kept in a report; the rest are only counted.
pub const MAX_FINDINGS: usize = 100;

impl VerifyReport {
    pub fn is_ok(&self) -> bool {
        self.findings_total == 0 && self.mismatched_checkpoints.is_empty()
    }

    /// Where the ledger first goes wrong: an exact seq when the evidence names one, else
    /// the range it is known to be in.
    ///
    /// Ranges come from checkpoint roots (an entry after the last matching checkpoint and
    /// up to the first that does not match) and from stored tree nodes (the entries under
    /// the node). A range is explained by an exact finding or a smaller range inside it
    /// (the node above a changed entry differs too); an unexplained range is cut to the
    /// entries after [`VerifyReport::verified_through`], which a signed root vouches for.
    pub fn first_bad(&self) -> Option<Location> {
        let located: Vec<(u64, u64)> = self
            .findings
            .iter()
            .filter_map(Finding::location)
            .map(Location::bounds)
            .collect();
        let explained = |&(from, to): &(u64, u64)| {
            from < to
                && located
                    .iter()
                    .any(|&(a, b)| from <= a && b <= to && (a, b) != (from, to))
        };
        located
            .iter()
            .filter(|r| !explained(r))
            .map(|&(from, to)| {
                let cut = if from < to && to > self.verified_through {
                    from.max(self.verified_through + 1)
                } else {
                    from
                };
                (cut, to)
            })
            .min()
            .map(|(from, to)| {
                if from == to {
                    Location::Seq(from)
                } else {
                    Location::Range { from, to }
                }
            })
    }

    /// The first bad seq when the evidence names one exactly ([`VerifyReport::first_bad`]
    /// without its ranges).
    pub fn first_bad_seq(&self) -> Option<u64> {
        match self.first_bad() {
            Some(Location::Seq(seq)) => Some(seq),
            _ => None,
        }
    }

    /// The checkpoints that do not verify or do not match the entries, ascending.
    pub fn bad_checkpoints(&self) -> Vec<u64> {
        let mut sizes: Vec<u64> = self
            .findings
            .iter()
            .filter_map(Finding::checkpoint)
            .chain(self.mismatched_checkpoints.iter().copied())
            .collect();
        sizes.sort_unstable();
        sizes.dedup();
        sizes
    }
}

/// The fields of an entry the verifier reads; everything else is only hashed. Lenient:
/// members of an unexpected type are compared (and found to differ), never a parse error.
#[derive(Deserialize)]
struct EntryHead {
    seq: u64,
    kind: String,
    #[serde(default)]
    at: Option<String>,
    #[serde(default)]
    message: Option<Uuid>,
    #[serde(default)]
    caseref: Option<String>,
    #[serde(default)]
    agency: Option<String>,
    #[serde(default)]
    detail: Option<EntryDetail>,
}

#[derive(Deserialize)]
struct EntryDetail {
    #[serde(default)]
    sha256: Option<Value>,
    #[serde(default, rename = "type")]
    type_: Option<Value>,
    #[serde(default)]
    channel: Option<Value>,
    #[serde(default)]
    inreplyto: Option<Value>,
    #[serde(default)]
    recipients: Option<Value>,
    /// `case.erased`: the messages erased.
    #[serde(default)]
    messages: Option<Value>,
}

/// What an accepted entry says about its message, kept until the message is fed.
struct Accepted {
    message: Option<Uuid>,
    caseref: Option<String>,
    agency: Option<String>,
    detail: Option<EntryDetail>,
}

fn as_str(value: Option<&Value>) -> Option<&str> {
    value.and_then(Value::as_str)
}

/// The traceparent the body's envelope carries (the body is hashed, so it is canonical).
#[derive(Deserialize)]
struct BodyHead {
    #[serde(default)]
    traceparent: Option<Value>,
}

/// The leaf hashes of a reference export, in seq order.
pub type ReferenceLeaves = Box<dyn Iterator<Item = Result<(u64, Hash), String>> + Send>;

/// Streaming verifier: feed entries in seq order, each message after its entry, then
/// [`Verifier::finish`].
///
/// A fault is reported once. Entries are matched to their messages, to the earlier export
/// and to the checkpoints they cover by the seq their own bytes carry, so one removed or
/// repeated line does not make every later line a finding; what a fault implies further
/// (later checkpoints' roots, the tree nodes above it) is counted, not found again.
pub struct Verifier {
    range: CompactRange,
    /// The store's last seq (an export's line number).
    last_seq: u64,
    /// The highest seq seen, from the store or from an entry's own bytes.
    max_seq: u64,
    /// The seq carried by the last readable entry, and the highest one carried.
    last_embedded: u64,
    max_embedded: u64,
    /// How far entries' own seqs are off the store's (0 while they agree), and the index
    /// of the finding that reported the current offset, which counts its run.
    offset: i128,
    offset_finding: Option<usize>,
    /// Seqs known to be absent (from the store's gaps or from entries moved up).
    missing: Vec<(u64, u64)>,
    /// From this leaf on, leaves no longer sit at the index of their seq (entries removed
    /// or repeated): every tree node over them differs, as a consequence.
    misaligned_from: Option<u64>,
    /// Positions whose leaf is shown to differ from what was signed.
    leaf_faults: BTreeSet<u64>,
    /// Valid checkpoints by size, and the root each claims.
    checkpoints: BTreeMap<u64, Hash>,
    /// The largest checkpoint size whose root matched.
    last_good_checkpoint: u64,
    /// Checkpoints whose root differs, with the last good size before each, not yet
    /// reported: decided once the tree nodes over them have been compared.
    pending_roots: Vec<(u64, u64)>,
    /// The `since` of the last checkpoint-root finding or explained mismatch: later
    /// checkpoints with the same one are the same fault.
    roots_reported_since: Option<u64>,
    /// Accepted entries awaiting their message, by the seq they carry.
    accepted: BTreeMap<u64, Accepted>,
    /// Messages fed before their accepted entry (which comes later in a moved row).
    early: BTreeMap<u64, MessageRecord>,
    /// The messages `case.erased` entries name, with the first such entry's seq.
    erasures: HashMap<Uuid, u64>,
    /// Bodies the store says are erased: (message, its seq), checked at the end against
    /// `erasures` (the erasure entry comes after the acceptance).
    /// With the seq of the erasure the store names, which may lie beyond what is read
    /// here (an archive of a range closed before the erasure).
    erased_claims: Vec<(Uuid, u64, Option<u64>)>,
    /// Interior tree nodes completed since last taken, when the store keeps them.
    completed_nodes: Option<Vec<(NodeId, Hash)>>,
    /// The ranges of the stored tree nodes found wrong so far.
    wrong_nodes: Vec<(u64, u64)>,
    /// The first stored node beyond the last entry, and how many more there were.
    beyond: Option<(usize, u64)>,
    reference: Option<std::iter::Peekable<ReferenceLeaves>>,
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
            max_seq: 0,
            last_embedded: 0,
            max_embedded: 0,
            offset: 0,
            offset_finding: None,
            missing: Vec::new(),
            misaligned_from: None,
            leaf_faults: BTreeSet::new(),
            checkpoints: BTreeMap::new(),
            last_good_checkpoint: 0,
            pending_roots: Vec::new(),
            roots_reported_since: None,
            accepted: BTreeMap::new(),
            early: BTreeMap::new(),
            erasures: HashMap::new(),
            erased_claims: Vec::new(),
            completed_nodes: None,
            wrong_nodes: Vec::new(),
            beyond: None,
            reference: None,
            reference_done: true,
            report: VerifyReport::default(),
        };
        for record in checkpoints {
            verifier.add_checkpoint(key, record);
        }
        verifier
    }

    /// Starts after the entries `range` covers, as if they had been fed: for an archive of a
    /// later range, or a ledger whose first entries are archived. The checkpoint of exactly
    /// that size, if any, is compared with the range's root now; smaller ones cannot be.
    pub fn resume(&mut self, range: CompactRange) {
        let size = range.size();
        self.last_seq = size;
        self.max_seq = size;
        self.last_embedded = size;
        self.max_embedded = size;
        self.report.skipped_through = size;
        if let Some(claimed) = self.checkpoints.get(&size).copied() {
            if claimed == range.root() {
                self.last_good_checkpoint = size;
                self.report.verified_through = size;
            } else {
                self.report.mismatched_checkpoints.push(size);
                self.pending_roots.push((size, 0));
            }
        }
        self.range = range;
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
        self.reference = Some(reference.peekable());
        self.reference_done = false;
        self
    }

    /// Collects the interior tree nodes the leaves complete, for
    /// [`Verifier::compare_tree_nodes`] (a store that keeps them: the database).
    pub fn with_tree_nodes(mut self) -> Self {
        self.completed_nodes = Some(Vec::new());
        self
    }

    /// The interior nodes completed by the entries fed since the last call.
    pub fn take_completed_nodes(&mut self) -> Vec<(NodeId, Hash)> {
        self.completed_nodes
            .as_mut()
            .map(std::mem::take)
            .unwrap_or_default()
    }

    /// Compares recomputed nodes with the stored ones of the same ids. A wrong node is a
    /// finding only when nothing found already explains it: a changed leaf under it, a
    /// smaller wrong node under it, or leaves moved out of place before it.
    pub fn compare_tree_nodes(
        &mut self,
        computed: &[(NodeId, Hash)],
        stored: &HashMap<NodeId, Hash>,
    ) {
        for (id, hash) in computed {
            let reason = match stored.get(id) {
                Some(s) if s == hash => continue,
                Some(_) => "differs from the hash of the entries under it",
                None => "is missing",
            };
            let (first, last) = node_seqs(id.level, id.index);
            let explained = self.leaf_faults.range(first..=last).next().is_some()
                || self.misaligned_from.is_some_and(|from| from <= last)
                || self
                    .wrong_nodes
                    .iter()
                    .any(|&(a, b)| first <= a && b <= last);
            self.wrong_nodes
                .retain(|&(a, b)| !(first <= a && b <= last));
            self.wrong_nodes.push((first, last));
            if !explained {
                self.find(Finding::TreeNode {
                    level: id.level,
                    index: id.index,
                    reason,
                });
            }
        }
        self.resolve_roots();
    }

    /// A stored node that covers entries beyond the last one fed: one finding, counting
    /// the others.
    pub fn extra_tree_node(&mut self, id: NodeId) {
        match self.beyond {
            Some((index, ref mut more)) => {
                *more += 1;
                let more = *more;
                if let Some(Finding::TreeNodeBeyond { more: m, .. }) =
                    self.report.findings.get_mut(index)
                {
                    *m = more;
                }
            }
            None => {
                self.beyond = Some((self.report.findings.len(), 0));
                self.find(Finding::TreeNodeBeyond {
                    level: id.level,
                    index: id.index,
                    last: self.max_seq,
                    more: 0,
                });
            }
        }
    }

    /// An outbox row whose message the store does not hold.
    pub fn orphan_delivery(&mut self, delivery_id: i64, message: Uuid) {
        self.find(Finding::OrphanDelivery {
            delivery_id,
            message,
        });
    }

    fn find(&mut self, finding: Finding) {
        if finding.changes_leaves()
            && let Some(Location::Seq(seq)) = finding.location()
        {
            self.leaf_faults.insert(seq);
        }
        self.report.findings_total += 1;
        if self.report.findings.len() < MAX_FINDINGS {
            self.report.findings.push(finding);
        }
    }

    pub fn entries_seen(&self) -> u64 {
        self.report.entries
    }

    fn is_missing(&self, seq: u64) -> bool {
        self.missing.iter().any(|&(a, b)| (a..=b).contains(&seq))
    }

    pub fn entry(&mut self, record: EntryRecord) {
        let seq = record.seq;
        self.report.entries += 1;
        if seq <= self.last_seq {
            self.misaligned_from.get_or_insert(self.range.size() + 1);
            self.find(Finding::OutOfOrder {
                seq,
                after: self.last_seq,
            });
        } else if seq != self.last_seq + 1 {
            self.misaligned_from.get_or_insert(self.range.size() + 1);
            self.missing.push((self.last_seq + 1, seq - 1));
            self.find(Finding::Missing {
                from: self.last_seq + 1,
                to: seq - 1,
            });
        }
        self.last_seq = self.last_seq.max(seq);
        self.max_seq = self.max_seq.max(seq);

        let leaf = audit::leaf_hash(&record.bytes);
        if record.stored_leaf_hash.is_some_and(|stored| stored != leaf) {
            self.find(Finding::LeafHashMismatch { seq });
        }
        // The seq the entry carries: what it is matched with from here on.
        let mut own_seq = seq;
        match serde_json::from_slice::<EntryHead>(&record.bytes) {
            Ok(head) => {
                own_seq = head.seq;
                self.embedded_seq(seq, head.seq);
                if let Some(columns) = &record.columns {
                    self.compare_entry_columns(seq, &head, columns);
                }
                if head.kind == "message.accepted" {
                    self.accepted.insert(
                        head.seq,
                        Accepted {
                            message: head.message,
                            caseref: head.caseref,
                            agency: head.agency,
                            detail: head.detail,
                        },
                    );
                    if let Some(message) = self.early.remove(&head.seq) {
                        self.message(message);
                    }
                } else if head.kind == "case.erased" {
                    let named = head
                        .detail
                        .as_ref()
                        .and_then(|d| d.messages.as_ref())
                        .and_then(Value::as_array);
                    for m in named.into_iter().flatten() {
                        if let Some(id) = as_str(m.get("message")).and_then(|s| s.parse().ok()) {
                            self.erasures.entry(id).or_insert(head.seq);
                        }
                    }
                }
            }
            Err(e) => self.find(Finding::Unreadable {
                seq,
                reason: e.to_string(),
            }),
        }
        self.compare_with_reference(own_seq, leaf);

        match self.completed_nodes.as_mut() {
            Some(nodes) => self.range.push(leaf, |id, hash| nodes.push((id, hash))),
            None => self.range.push(leaf, |_, _| {}),
        }
        let size = self.range.size();
        if let Some(claimed) = self.checkpoints.get(&size).copied() {
            if claimed == self.range.root() {
                self.last_good_checkpoint = size;
                self.report.verified_through = size;
            } else {
                self.report.mismatched_checkpoints.push(size);
                self.pending_roots.push((size, self.last_good_checkpoint));
            }
        }
    }

    /// Compares the seq an entry carries with the store's: a change of the offset between
    /// them is one finding, which then counts the records that keep that offset.
    fn embedded_seq(&mut self, seq: u64, embedded: u64) {
        self.max_seq = self.max_seq.max(embedded);
        self.max_embedded = self.max_embedded.max(embedded);
        let previous = self.last_embedded;
        self.last_embedded = embedded;
        let offset = i128::from(embedded) - i128::from(seq);
        if offset != 0 {
            // A leaf out of its place: the tree nodes and roots over it differ for that.
            self.leaf_faults.insert(seq);
        }
        if offset == self.offset {
            if offset != 0
                && let Some(Some(Finding::SeqMismatch { run, .. })) = self
                    .offset_finding
                    .map(|index| self.report.findings.get_mut(index))
            {
                *run += 1;
            }
            return;
        }
        let back_in_place = offset == 0;
        // The second row of a swapped pair: the pair is one fault, named by the first.
        let swap = matches!(
            self.offset_finding.and_then(|i| self.report.findings.get(i)),
            Some(Finding::SeqMismatch { seq: s, embedded: e, run: 1 }) if *e == seq && *s == embedded
        );
        self.offset = offset;
        self.offset_finding = None;
        if back_in_place || swap {
            return;
        }
        if embedded > previous + 1 {
            self.missing.push((previous + 1, embedded - 1));
        }
        self.offset_finding = Some(self.report.findings.len());
        self.find(Finding::SeqMismatch {
            seq,
            embedded,
            run: 1,
        });
    }

    /// Reports the checkpoints whose root differs, once per fault: a mismatch explained by
    /// a changed leaf or a wrong tree node in its range, or following one already reported
    /// from the same last good checkpoint, is only counted in `mismatched_checkpoints`.
    fn resolve_roots(&mut self) {
        for (tree_size, since) in std::mem::take(&mut self.pending_roots) {
            let explained = self
                .leaf_faults
                .range(since + 1..=tree_size)
                .next()
                .is_some()
                || self
                    .wrong_nodes
                    .iter()
                    .any(|&(a, b)| a <= tree_size && b > since);
            if self.roots_reported_since == Some(since) {
                continue;
            }
            self.roots_reported_since = Some(since);
            if !explained {
                self.find(Finding::CheckpointRoot { tree_size, since });
            }
        }
    }

    fn mismatch(
        &mut self,
        seq: u64,
        column: &'static str,
        stored: Option<&str>,
        canonical: Option<&str>,
    ) {
        if stored != canonical {
            self.find(Finding::CopiedColumn {
                seq,
                column,
                stored: quote(stored),
                canonical: quote(canonical),
            });
        }
    }

    fn compare_entry_columns(&mut self, seq: u64, head: &EntryHead, columns: &EntryColumns) {
        self.mismatch(
            seq,
            "ledger_entries.kind",
            Some(&columns.kind),
            Some(&head.kind),
        );
        let message = head.message.map(|m| m.to_string());
        self.mismatch(
            seq,
            "ledger_entries.message_id",
            columns.message_id.map(|m| m.to_string()).as_deref(),
            message.as_deref(),
        );
        self.mismatch(
            seq,
            "ledger_entries.caseref",
            columns.caseref.as_deref(),
            head.caseref.as_deref(),
        );
        self.mismatch(
            seq,
            "ledger_entries.agency",
            columns.agency.as_deref(),
            head.agency.as_deref(),
        );
        let rfc3339 = &time::format_description::well_known::Rfc3339;
        let at = head
            .at
            .as_deref()
            .and_then(|at| OffsetDateTime::parse(at, rfc3339).ok());
        if at != Some(columns.recorded_at) {
            let stored = columns.recorded_at.format(rfc3339).ok();
            self.mismatch(
                seq,
                "ledger_entries.recorded_at",
                Some(stored.as_deref().unwrap_or("?")),
                Some(head.at.as_deref().unwrap_or("null")),
            );
        }
    }

    /// The message's copied columns and outbox rows against its accepted entry.
    fn compare_message(&mut self, record: &MessageRecord, accepted: &Accepted) {
        let seq = record.seq;
        let detail = accepted.detail.as_ref();
        if let Some(columns) = &record.columns {
            self.mismatch(
                seq,
                "messages.sender",
                Some(&columns.sender),
                accepted.agency.as_deref(),
            );
            self.mismatch(
                seq,
                "messages.type",
                Some(&columns.type_),
                as_str(detail.and_then(|d| d.type_.as_ref())),
            );
            self.mismatch(
                seq,
                "messages.caseref",
                columns.caseref.as_deref(),
                accepted.caseref.as_deref(),
            );
            self.mismatch(
                seq,
                "messages.inreplyto",
                columns.inreplyto.map(|m| m.to_string()).as_deref(),
                as_str(detail.and_then(|d| d.inreplyto.as_ref())),
            );
            self.mismatch(
                seq,
                "messages.channel",
                Some(&columns.channel),
                as_str(detail.and_then(|d| d.channel.as_ref())),
            );
            let route = serde_json::json!({
                "recipients": detail.and_then(|d| d.recipients.clone()).unwrap_or(Value::Null)
            });
            if columns.route != route {
                self.mismatch(
                    seq,
                    "messages.route",
                    Some(&columns.route.to_string()),
                    Some(&route.to_string()),
                );
            }
            // An erased body cannot say what its traceparent was.
            if record.erased_by.is_none() {
                let traceparent = serde_json::from_slice::<BodyHead>(&record.body)
                    .ok()
                    .and_then(|b| b.traceparent);
                self.mismatch(
                    seq,
                    "messages.traceparent",
                    columns.traceparent.as_deref(),
                    as_str(traceparent.as_ref()),
                );
            }
        }
        if let Some(deliveries) = &record.deliveries {
            self.compare_deliveries(record, detail, deliveries);
        }
    }

    /// Each recipient of the recorded route has exactly one outbox row, and no row goes
    /// anywhere else: the outbox decides what the relay publishes to whom.
    fn compare_deliveries(
        &mut self,
        record: &MessageRecord,
        detail: Option<&EntryDetail>,
        deliveries: &[DeliveryRecord],
    ) {
        let mut route: Vec<(&str, &str)> = detail
            .and_then(|d| d.recipients.as_ref())
            .and_then(Value::as_array)
            .map(|recipients| {
                recipients
                    .iter()
                    .map(|r| {
                        (
                            r["agency"].as_str().unwrap_or(""),
                            r["role"].as_str().unwrap_or(""),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut findings = Vec::new();
        for d in deliveries {
            match route
                .iter()
                .position(|(agency, role)| *agency == d.recipient && *role == d.role)
            {
                Some(i) => {
                    route.swap_remove(i);
                }
                None => findings.push(Finding::Delivery {
                    seq: record.seq,
                    message: record.id,
                    delivery_id: Some(d.delivery_id),
                    reason: format!(
                        "delivers to {} ({}), which its accepted entry does not route it to",
                        quote(Some(&d.recipient)),
                        quote(Some(&d.role))
                    ),
                }),
            }
        }
        for (agency, role) in route {
            findings.push(Finding::Delivery {
                seq: record.seq,
                message: record.id,
                delivery_id: None,
                reason: format!("has no outbox row for its recipient {agency} ({role})"),
            });
        }
        for finding in findings {
            self.find(finding);
        }
    }

    /// Compares the entry carrying `seq` with the earlier export's entry of that seq. The
    /// export's seqs that never come (entries removed since, already reported) are passed.
    fn compare_with_reference(&mut self, seq: u64, leaf: Hash) {
        if self.reference_done {
            return;
        }
        let Some(reference) = self.reference.as_mut() else {
            return;
        };
        let found = loop {
            match reference.peek() {
                None => {
                    self.reference_done = true;
                    return;
                }
                Some(Err(_)) => {
                    let Some(Err(reason)) = reference.next() else {
                        return;
                    };
                    self.reference_done = true;
                    break Some(Finding::Reference { reason });
                }
                Some(Ok((ref_seq, _))) if *ref_seq < seq => {
                    reference.next();
                }
                Some(Ok((ref_seq, ref_leaf))) => {
                    let differs = *ref_seq == seq && *ref_leaf != leaf;
                    if *ref_seq == seq {
                        reference.next();
                    }
                    break differs.then_some(Finding::DiffersFromReference { seq });
                }
            }
        };
        if let Some(finding) = found {
            self.find(finding);
        }
    }

    /// A message body; its accepted entry should have been fed already (if it comes later,
    /// in a moved row, the body waits for it).
    pub fn message(&mut self, record: MessageRecord) {
        if record.erased_by.is_some() {
            return self.erased_message(record);
        }
        let digest = audit::sha256(&record.body);
        if record.stored_sha256.is_some_and(|stored| stored != digest) {
            self.report.messages += 1;
            self.find(Finding::PayloadMismatch {
                seq: record.seq,
                message: record.id,
            });
            self.accepted.remove(&record.seq);
            return;
        }
        match self.accepted.remove(&record.seq) {
            Some(accepted) if accepted.message == Some(record.id) => {
                self.report.messages += 1;
                let recorded = as_str(accepted.detail.as_ref().and_then(|d| d.sha256.as_ref()));
                if recorded != Some(hex::encode(digest).as_str()) {
                    self.find(Finding::PayloadMismatch {
                        seq: record.seq,
                        message: record.id,
                    });
                    return;
                }
                self.compare_message(&record, &accepted);
            }
            matched => self.unmatched(record, matched.is_none()),
        }
    }

    /// A message whose accepted entry has not been seen (`none_yet`) or does not accept it.
    fn unmatched(&mut self, record: MessageRecord, none_yet: bool) {
        // Entries out of place: its entry may be in a later row.
        if none_yet && (record.seq > self.max_embedded || self.offset != 0) {
            self.early.insert(record.seq, record);
            return;
        }
        self.report.messages += 1;
        // The body of an entry that was removed or found changed is part of that one fault.
        if !self.is_missing(record.seq) && !self.leaf_faults.contains(&record.seq) {
            self.find(Finding::MessageWithoutEntry {
                seq: record.seq,
                message: record.id,
            });
        }
    }

    /// A message whose body the store says was erased: matched with its accepted entry
    /// like any other (its stored digest too), its copied columns compared, and kept to be
    /// checked against the erasure entries at the end.
    fn erased_message(&mut self, record: MessageRecord) {
        match self.accepted.remove(&record.seq) {
            Some(accepted) if accepted.message == Some(record.id) => {
                let recorded = as_str(accepted.detail.as_ref().and_then(|d| d.sha256.as_ref()));
                if let Some(stored) = record.stored_sha256
                    && recorded != Some(hex::encode(stored).as_str())
                {
                    self.report.messages += 1;
                    self.find(Finding::PayloadMismatch {
                        seq: record.seq,
                        message: record.id,
                    });
                    return;
                }
                self.compare_message(&record, &accepted);
                self.erased_claims
                    .push((record.id, record.seq, record.erased_by));
            }
            matched => self.unmatched(record, matched.is_none()),
        }
    }

    /// Every accepted entry up to `seq` should have had its message by now.
    pub fn messages_done_through(&mut self, seq: u64) {
        let rest = self.accepted.split_off(&(seq + 1));
        let done = std::mem::replace(&mut self.accepted, rest);
        for (seq, accepted) in done {
            self.find(Finding::PayloadMissing {
                seq,
                message: accepted.message,
            });
        }
    }

    pub fn finish(mut self) -> VerifyReport {
        for (seq, message) in std::mem::take(&mut self.early) {
            self.report.messages += 1;
            if !self.is_missing(seq) && !self.leaf_faults.contains(&seq) {
                self.find(Finding::MessageWithoutEntry {
                    seq,
                    message: message.id,
                });
            }
        }
        self.messages_done_through(u64::MAX - 1);
        let read_through = self.range.size();
        for (message, seq, claimed) in std::mem::take(&mut self.erased_claims) {
            match (self.erasures.get(&message), claimed) {
                (Some(&by), _) if by > seq => {
                    self.report.erased.push(ErasedBody { message, seq, by })
                }
                // Erased by an entry after the last one read here: an archive closed before
                // the erasure. Verifying the whole ledger (database and archives) checks it.
                (None, Some(by)) if by > read_through => {
                    self.report.erased.push(ErasedBody { message, seq, by })
                }
                _ => self.find(Finding::ErasedWithoutEntry { seq, message }),
            }
        }
        self.resolve_roots();
        // Checkpoints beyond the leaves: up to the highest seq seen, entries are missing in
        // between (already found), so their roots cannot match; beyond it, the last
        // entries were removed, which the largest such checkpoint shows best.
        let leaves = self.range.size();
        let last = self.max_seq;
        let beyond: Vec<u64> = self
            .checkpoints
            .range(leaves + 1..)
            .map(|(&s, _)| s)
            .collect();
        let truncated = beyond.iter().copied().filter(|&s| s > last).max();
        for &size in &beyond {
            if Some(size) != truncated {
                self.report.mismatched_checkpoints.push(size);
            }
        }
        if let Some(tree_size) = truncated {
            self.find(Finding::Truncated { tree_size, last });
        }
        if !self.reference_done
            && let Some(reference) = self.reference.as_mut()
        {
            let extra = reference
                .by_ref()
                .filter_map(Result::ok)
                .map(|(s, _)| s)
                .max();
            if let Some(reference_last) = extra.filter(|&s| s > last) {
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
                ..EntryRecord::default()
            });
            if accepted {
                messages.push(MessageRecord {
                    id,
                    seq,
                    body,
                    ..MessageRecord::default()
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

    impl Fixture {
        /// The entries as an export's lines: line N is whatever now stands N-th.
        fn as_lines(&self) -> Fixture {
            let mut f = self.clone();
            for (i, e) in f.entries.iter_mut().enumerate() {
                e.seq = i as u64 + 1;
                e.stored_leaf_hash = None;
            }
            f
        }

        /// The interior tree nodes of the untouched entries, as the database stores them.
        fn stored_nodes(&self) -> HashMap<NodeId, Hash> {
            let mut nodes = HashMap::new();
            let mut range = CompactRange::new();
            for e in &self.entries {
                range.push(audit::leaf_hash(&e.bytes), |id, hash| {
                    nodes.insert(id, hash);
                });
            }
            nodes
        }

        /// Verifies as the live database does: stored leaf hashes and tree nodes too.
        fn verify_live(
            &self,
            checkpoints: &[CheckpointRecord],
            stored: &HashMap<NodeId, Hash>,
        ) -> VerifyReport {
            let key = CheckpointVerifier::new(ORIGIN, self.signer.public_key()).unwrap();
            let mut v = Verifier::new(&key, checkpoints).with_tree_nodes();
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
            let computed = v.take_completed_nodes();
            v.compare_tree_nodes(&computed, stored);
            v.finish()
        }
    }

    /// An entry changed in a way only its leaf shows (its seq and digest intact).
    fn edit(entry: &mut EntryRecord) {
        let text = String::from_utf8(entry.bytes.clone()).unwrap();
        entry.bytes = text
            .replacen("\"detail\":{", "\"detail\":{\"x\":1,", 1)
            .into_bytes();
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

    /// Offline, a deleted line moves every later line up: one finding names the missing
    /// entry, and neither the later lines, their messages nor the later checkpoints add
    /// findings of their own.
    #[test]
    fn a_deleted_line_is_one_finding() {
        let f = fixture(200);
        let checkpoints: Vec<_> = [50, 100, 150, 200].map(|s| f.checkpoint(s)).into();
        let mut deleted = f.clone();
        deleted.entries.remove(119); // seq 120, a dispatch
        let report = deleted.as_lines().verify(&checkpoints);
        assert_eq!(
            report.findings,
            vec![Finding::SeqMismatch {
                seq: 120,
                embedded: 121,
                run: 80
            }],
            "{:?}",
            report.findings
        );
        assert_eq!(report.findings_total, 1);
        assert_eq!(report.first_bad(), Some(Location::Seq(120)));
        assert_eq!(report.bad_checkpoints(), vec![150, 200]);
        assert_eq!(report.verified_through, 100);
        assert!(
            report.findings[0]
                .to_string()
                .contains("entries 120..=120 are missing: seqs 120..=199 hold entries 121..=200")
        );

        // An accepted entry deleted with its line: its body is part of the same fault.
        let mut deleted = f.clone();
        deleted.entries.remove(120); // seq 121, accepted
        let report = deleted.as_lines().verify(&checkpoints);
        assert_eq!(report.findings_total, 1, "{:?}", report.findings);
        assert_eq!(report.first_bad(), Some(Location::Seq(121)));

        // A repeated line moves every later line down: one finding too.
        let mut repeated = f.clone();
        let copy = repeated.entries[59].clone();
        repeated.entries.insert(60, copy);
        repeated.entries.pop();
        let report = repeated.as_lines().verify(&checkpoints);
        assert_eq!(report.findings_total, 1, "{:?}", report.findings);
        assert!(matches!(
            report.findings[0],
            Finding::SeqMismatch {
                seq: 61,
                embedded: 60,
                ..
            }
        ));
    }

    /// Offline, with no stored leaf hash and no earlier export, an edited entry is placed
    /// between two checkpoints and no closer; with an earlier export it is named.
    #[test]
    fn an_edit_offline_is_a_range_unless_an_earlier_export_names_it() {
        let f = fixture(200);
        let checkpoints: Vec<_> = [50, 100, 150, 200].map(|s| f.checkpoint(s)).into();
        let mut edited = f.as_lines();
        edit(&mut edited.entries[119]); // seq 120
        let report = edited.verify(&checkpoints);
        assert_eq!(
            report.findings,
            vec![Finding::CheckpointRoot {
                tree_size: 150,
                since: 100
            }]
        );
        assert_eq!(
            report.first_bad(),
            Some(Location::Range { from: 101, to: 150 })
        );
        assert_eq!(report.first_bad_seq(), None);
        assert_eq!(report.bad_checkpoints(), vec![150, 200]);

        let leaves: Vec<(u64, Hash)> = f
            .entries
            .iter()
            .map(|e| (e.seq, audit::leaf_hash(&e.bytes)))
            .collect();
        let key = CheckpointVerifier::new(ORIGIN, f.signer.public_key()).unwrap();
        let mut v = Verifier::new(&key, &checkpoints)
            .with_reference(Box::new(leaves.into_iter().take(160).map(Ok)));
        for e in &edited.entries {
            v.entry(e.clone());
        }
        for m in &edited.messages {
            v.message(m.clone());
        }
        let report = v.finish();
        assert_eq!(report.first_bad(), Some(Location::Seq(120)));
        assert_eq!(report.findings_total, 1, "{:?}", report.findings);
    }

    /// Live, the stored leaf hashes name an edit exactly; when the intruder recomputed the
    /// leaf hash too, the stored tree nodes narrow it to the two entries under the lowest
    /// wrong node — one finding, not one per level of the tree and per checkpoint.
    #[test]
    fn live_an_edit_is_named_by_its_leaf_hash_or_bounded_by_the_tree() {
        let f = fixture(64);
        let stored = f.stored_nodes();
        let checkpoints: Vec<_> = [16, 40, 64].map(|s| f.checkpoint(s)).into();
        assert!(f.verify_live(&checkpoints, &stored).is_ok());

        let mut edited = f.clone();
        edit(&mut edited.entries[29]); // seq 30, leaf hash left as it was
        let report = edited.verify_live(&checkpoints, &stored);
        assert_eq!(
            report.findings,
            vec![Finding::LeafHashMismatch { seq: 30 }],
            "{:?}",
            report.findings
        );
        assert_eq!(report.first_bad(), Some(Location::Seq(30)));
        assert_eq!(report.bad_checkpoints(), vec![40, 64]);

        edited.entries[29].stored_leaf_hash = Some(audit::leaf_hash(&edited.entries[29].bytes));
        let report = edited.verify_live(&checkpoints, &stored);
        assert_eq!(report.findings.len(), 1, "{:?}", report.findings);
        assert!(matches!(
            report.findings[0],
            Finding::TreeNode {
                level: 1,
                index: 14,
                ..
            }
        ));
        assert_eq!(
            report.first_bad(),
            Some(Location::Range { from: 29, to: 30 })
        );
        assert_eq!(report.bad_checkpoints(), vec![40, 64]);
    }

    /// Live, a deleted row is one finding: not one per tree node after it, nor one per
    /// later checkpoint, nor its orphaned message body.
    #[test]
    fn live_a_deleted_row_is_one_finding() {
        let f = fixture(64);
        let stored = f.stored_nodes();
        let checkpoints: Vec<_> = [16, 40, 64].map(|s| f.checkpoint(s)).into();
        let mut deleted = f.clone();
        deleted.entries.remove(20); // seq 21, accepted; its body stays
        let report = deleted.verify_live(&checkpoints, &stored);
        assert_eq!(
            report.findings,
            vec![Finding::Missing { from: 21, to: 21 }],
            "{:?}",
            report.findings
        );
        assert_eq!(report.first_bad(), Some(Location::Seq(21)));
        assert_eq!(report.bad_checkpoints(), vec![40, 64]);
    }

    /// Entries removed from the end under several checkpoints: one finding, by the largest
    /// checkpoint (it covers the most of what was removed).
    #[test]
    fn removed_last_entries_are_one_finding() {
        let f = fixture(40);
        let checkpoints: Vec<_> = [10, 30, 35, 40].map(|s| f.checkpoint(s)).into();
        let mut cut = f.clone();
        cut.entries.truncate(25);
        cut.messages.retain(|m| m.seq <= 25);
        let report = cut.verify(&checkpoints);
        assert_eq!(
            report.findings,
            vec![Finding::Truncated {
                tree_size: 40,
                last: 25
            }]
        );
        assert_eq!(report.first_bad(), Some(Location::Seq(26)));
        assert_eq!(report.bad_checkpoints(), vec![30, 35, 40]);
    }
}
