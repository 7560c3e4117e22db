//! The export an auditor takes away, and reading it back with no database.
//!
//! An export is a directory of plain files (format `liaison-ledger-export/1`):
//!
//! | file | content |
//! |---|---|
//! | `manifest.json` | format, origin (the checkpoint key name), counts, root of all entries |
//! | `entries.jsonl` | line N is the canonical bytes of entry seq N, exactly as hashed |
//! | `messages.jsonl` | one JSON object per accepted message, by seq: `id`, `seq`, `sha256` (hex), `body` (standard base64 of the exact bytes), or instead of `body` `erased_by` (the seq of the `case.erased` entry) |
//! | `checkpoints.jsonl` | one JSON object per checkpoint, by size: `tree_size`, `note` (the C2SP text) |
//! | `ledger-key.pub` | the Ed25519 public key, hex (as `liaison pki init` writes it) |
//! | `ledger-key.vkey` | the C2SP verifier key, `origin+keyid+base64(0x01 ‖ key)`, one line |
//!
//! Canonical entry bytes are compact JSON, which never contains a raw newline, so the
//! lines of `entries.jsonl` are the entries byte for byte.
//!
//! An export never carries a key that does not verify its checkpoints: it is refused
//! before anything is written ([`ExportError::WrongKey`]). Exports made before
//! `ledger-key.vkey` existed are read with `ledger-key.pub` and the manifest's origin.

use liaison_core::FileError;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use liaison_core::audit::{self, Hash};
use liaison_core::checkpoint::CheckpointVerifier;
use liaison_core::merkle::{CompactRange, NodeId};
use serde::{Deserialize, Serialize};
use sqlx::Row;
use uuid::Uuid;

use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::sql::{hash_from_db, seq_from_db, seq_to_db};
use crate::verify::{
    CheckpointRecord, DeliveryRecord, EntryColumns, EntryRecord, MessageColumns, MessageRecord,
    Verifier, VerifyReport,
};

pub const EXPORT_FORMAT: &str = "liaison-ledger-export/1";
/// The export's Ed25519 public key, hex.
pub const PUBLIC_KEY_FILE: &str = "ledger-key.pub";
/// The export's C2SP verifier key (origin and key in one line).
pub const VKEY_FILE: &str = "ledger-key.vkey";
/// Witnesses' cosignatures of the exported checkpoints, one JSON object per line
/// (`tree_size`, `witness`, `line`, `cosigned_at`); absent from exports made before there
/// were any.
pub const COSIGNATURES_FILE: &str = "cosignatures.jsonl";
const PAGE: i64 = 10_000;

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Io(#[from] liaison_core::FileError),
    #[error("{path} line {line}: {reason}")]
    Format {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("{0} is not empty; export into a new directory")]
    NotEmpty(PathBuf),
    /// The ledger itself is not exportable as it stands (a gap, a newline in an entry):
    /// `liaison ledger verify` tells what is wrong with it.
    #[error("cannot export: {0}")]
    Unexportable(String),
    /// The key the export would carry verifies none of the checkpoints it would export:
    /// an auditor would be handed a key that proves nothing (or, pinning the right one,
    /// an export whose key is wrong). Usually the exporting configuration is not the
    /// broker's: another `tls_dir` (another ledger key) or another `[ledger] origin`.
    #[error(
        "refusing to export: the verifier key {vkey} verifies none of the ledger's {checkpoints} checkpoints (checkpoint {example}: {reason}); export with the broker's own configuration: its tls_dir (LIAISON_TLS_DIR, the folder holding ledger-signing.pk8) and its [ledger] origin"
    )]
    WrongKey {
        vkey: String,
        checkpoints: u64,
        example: u64,
        reason: String,
    },
    /// The archives given do not make up the archived range exactly.
    #[error("the archives given do not cover the archived range: {0}")]
    Archives(String),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: String,
    pub origin: String,
    pub entries: u64,
    pub messages: u64,
    pub checkpoints: u64,
    /// Hex root hash of all entries (for an archive: of the whole tree through its last
    /// entry).
    pub root: String,
    /// An archive of a later range (`liaison ledger archive`): the seq of its first entry
    /// (line 1 of `entries.jsonl`); absent when the export starts at seq 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seq: Option<u64>,
    /// With `first_seq`: the tree of the `first_seq - 1` entries before, as the hex hashes of
    /// its maximal complete subtrees, largest first (RFC 9162 §2.1.1's decomposition), so
    /// that the roots of the archive's checkpoints can be recomputed from its own entries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontier: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub exported_at: time::OffsetDateTime,
}

#[derive(Serialize, Deserialize)]
struct MessageLine {
    id: Uuid,
    seq: u64,
    sha256: String,
    /// The plaintext (bodies are exported opened), absent once erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    erased_by: Option<u64>,
}

#[derive(Serialize, Deserialize)]
struct CheckpointLine {
    tree_size: u64,
    note: String,
}

struct Writer {
    path: PathBuf,
    out: BufWriter<File>,
}

/// What [`Ledger::export`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exported {
    pub manifest: Manifest,
    /// Checkpoints the carried key does not verify although it verifies others: the
    /// ledger's own fault (a checkpoint altered or forged), which `verify` then names.
    pub unverified_checkpoints: Vec<u64>,
}

/// Creates `path` for writing, readable by its owner only whatever the umask or an
/// earlier file's mode: an export holds every message body, and message bodies name the
/// people the agencies write about.
fn create_private(path: &Path) -> Result<File, ExportError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options.open(path).map_err(FileError::at("create", path))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(FileError::at("set permissions on", path))?;
    }
    Ok(file)
}

fn write_private(path: &Path, contents: &[u8]) -> Result<(), ExportError> {
    let mut file = create_private(path)?;
    file.write_all(contents)
        .map_err(FileError::at("write", path))?;
    Ok(file.sync_all().map_err(FileError::at("sync", path))?)
}

impl Writer {
    fn create(dir: &Path, name: &str) -> Result<Self, ExportError> {
        let path = dir.join(name);
        let file = create_private(&path)?;
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            path,
        })
    }

    fn line(&mut self, bytes: &[u8]) -> Result<(), ExportError> {
        self.out
            .write_all(bytes)
            .and_then(|()| self.out.write_all(b"\n"))
            .map_err(FileError::at("write", &self.path))?;
        Ok(())
    }

    fn finish(self) -> Result<(), ExportError> {
        let path = self.path;
        let file = self
            .out
            .into_inner()
            .map_err(|e| FileError::new("write", &path, e.into_error()))?;
        Ok(file.sync_all().map_err(FileError::at("sync", &path))?)
    }
}

fn json_line<T: Serialize>(value: &T) -> Vec<u8> {
    // Plain structs of strings and numbers always serialise.
    serde_json::to_vec(value).unwrap_or_default()
}

impl Ledger {
    /// The signed checkpoints as the verifier reads them, oldest first.
    pub async fn checkpoint_records(&self) -> Result<Vec<CheckpointRecord>, LedgerError> {
        Ok(self
            .checkpoints()
            .await?
            .into_iter()
            .map(|c| CheckpointRecord {
                tree_size: c.tree_size,
                note: c.note,
            })
            .collect())
    }

    /// Writes an export of everything committed so far into `dir` (created; must be empty).
    /// `progress` sees the number of entries written so far.
    ///
    /// `key` is the verifier key the export carries; the export is refused, before anything
    /// is written, when it verifies none of the checkpoints exported.
    pub async fn export(
        &self,
        dir: &Path,
        key: &CheckpointVerifier,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Exported, ExportError> {
        // Entries up to the size read now: later commits are left for the next export.
        let size = self.size().await?;
        let archived = self.archived_through().await?;
        if archived > 0 {
            return Err(ExportError::Unexportable(format!(
                "entries 1..={archived} are archived: their archives and an export of the \
                 rest (`liaison ledger archive` writes the next one) make the whole ledger"
            )));
        }
        self.export_range(dir, key, 0, size, progress).await
    }

    /// Writes an export of entries `after + 1 ..= through` (an archive when `after > 0`: its
    /// manifest carries the tree before it, see [`Manifest::frontier`]).
    pub(crate) async fn export_range(
        &self,
        dir: &Path,
        key: &CheckpointVerifier,
        after: u64,
        through: u64,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<Exported, ExportError> {
        let size = through;
        let checkpoints: Vec<_> = self
            .checkpoints()
            .await?
            .into_iter()
            .filter(|c| c.tree_size > after && c.tree_size <= size)
            .collect();
        let mut unverified = Vec::new();
        let mut first_refusal = None;
        for c in &checkpoints {
            if let Err(e) = key.open(&c.note) {
                unverified.push(c.tree_size);
                first_refusal.get_or_insert((c.tree_size, e.to_string()));
            }
        }
        if let Some((example, reason)) = first_refusal
            && unverified.len() == checkpoints.len()
        {
            return Err(ExportError::WrongKey {
                vkey: key.vkey(),
                checkpoints: checkpoints.len() as u64,
                example,
                reason,
            });
        }
        std::fs::create_dir_all(dir).map_err(FileError::at("create", dir))?;
        if std::fs::read_dir(dir)
            .map_err(FileError::at("read", dir))?
            .next()
            .is_some()
        {
            return Err(ExportError::NotEmpty(dir.to_path_buf()));
        }
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
                .map_err(FileError::at("set permissions on", dir))?;
        }
        let mut entries = Writer::create(dir, "entries.jsonl")?;
        let mut messages = Writer::create(dir, "messages.jsonl")?;
        let mut range = if after == 0 {
            CompactRange::new()
        } else {
            let mut conn = self
                .pool()
                .acquire()
                .await
                .map_err(LedgerError::query("acquiring a connection"))?;
            crate::tree::load_range(&mut conn, after).await?
        };
        let frontier = (after > 0).then(|| range.hashes().iter().map(hex::encode).collect());
        let mut message_count = 0;
        while range.size() < size {
            let from = range.size();
            let rows = sqlx::query(
                "SELECT seq, entry FROM ledger_entries WHERE seq > $1 AND seq <= $2 ORDER BY seq LIMIT $3",
            )
            .bind(seq_to_db(from)?)
            .bind(seq_to_db(size)?)
            .bind(PAGE)
            .fetch_all(self.pool())
            .await
            .map_err(LedgerError::query("reading entries to export"))?;
            if rows.is_empty() {
                return Err(ExportError::Unexportable(format!(
                    "entry {} is missing",
                    from + 1
                )));
            }
            for row in &rows {
                let seq = seq_from_db(row.try_get("seq").map_err(read)?)?;
                let bytes: Vec<u8> = row.try_get("entry").map_err(read)?;
                if seq != range.size() + 1 {
                    return Err(ExportError::Unexportable(format!(
                        "entry {} is missing",
                        range.size() + 1
                    )));
                }
                if bytes.contains(&b'\n') {
                    return Err(ExportError::Unexportable(format!(
                        "entry {seq} holds a newline: it is not canonical"
                    )));
                }
                entries.line(&bytes)?;
                range.push(audit::leaf_hash(&bytes), |_, _| {});
            }
            let through = range.size();
            let rows = sqlx::query(
                "SELECT m.id, m.seq, m.sha256, m.body, k.kek_id, k.wrapped, k.erased_seq \
                 FROM messages m LEFT JOIN message_keys k ON k.message_id = m.id \
                 WHERE m.seq > $1 AND m.seq <= $2 ORDER BY m.seq",
            )
            .bind(seq_to_db(from)?)
            .bind(seq_to_db(through)?)
            .fetch_all(self.pool())
            .await
            .map_err(LedgerError::query("reading messages to export"))?;
            for row in &rows {
                let id: Uuid = row.try_get("id").map_err(read)?;
                let opened = crate::keys::open_stored(
                    self.keyring(),
                    id,
                    row.try_get("body").map_err(read)?,
                    crate::keys::KeyColumns::from_row(row).map_err(read)?,
                )
                .map_err(LedgerError::from)?;
                let (body, erased_by) = match opened {
                    crate::keys::Opened::Body(body) => (Some(STANDARD.encode(&body)), None),
                    crate::keys::Opened::Erased(seq) => (None, Some(seq)),
                };
                let line = MessageLine {
                    id,
                    seq: seq_from_db(row.try_get("seq").map_err(read)?)?,
                    sha256: hex::encode(hash_from_db(row.try_get("sha256").map_err(read)?)?),
                    body,
                    erased_by,
                };
                messages.line(&json_line(&line))?;
                message_count += 1;
            }
            progress(through);
        }
        entries.finish()?;
        messages.finish()?;

        let mut file = Writer::create(dir, "checkpoints.jsonl")?;
        for c in &checkpoints {
            file.line(&json_line(&CheckpointLine {
                tree_size: c.tree_size,
                note: c.note.clone(),
            }))?;
        }
        file.finish()?;
        let mut file = Writer::create(dir, COSIGNATURES_FILE)?;
        for c in self.cosignatures(None).await? {
            if c.tree_size > after && c.tree_size <= size {
                file.line(&json_line(&c))?;
            }
        }
        file.finish()?;
        let key_path = dir.join(PUBLIC_KEY_FILE);
        write_private(&key_path, hex::encode(key.public_key()).as_bytes())?;
        let vkey_path = dir.join(VKEY_FILE);
        write_private(&vkey_path, format!("{}\n", key.vkey()).as_bytes())?;

        let manifest = Manifest {
            format: EXPORT_FORMAT.to_owned(),
            origin: key.origin().to_owned(),
            entries: size - after,
            messages: message_count,
            checkpoints: checkpoints.len() as u64,
            root: hex::encode(range.root()),
            first_seq: (after > 0).then_some(after + 1),
            frontier,
            exported_at: self.clock_now(),
        };
        let manifest_path = dir.join("manifest.json");
        let text = serde_json::to_vec_pretty(&manifest).unwrap_or_default();
        write_private(&manifest_path, &text)?;
        Ok(Exported {
            manifest,
            unverified_checkpoints: unverified,
        })
    }

    /// Verifies the live ledger (see [`crate::verify`]): entries, stored leaf hashes and
    /// tree nodes, message bodies, every copied column and outbox row, and checkpoints;
    /// with `reference`, also that an earlier export is a prefix of it. The archived range,
    /// if any, is read from `archives` (which must make it up exactly), checked against the
    /// leaf hashes and tree nodes kept for it; with no archives given, verification starts
    /// from the stored tree at its end ([`VerifyReport::skipped_through`]). `progress` sees
    /// the number of entries checked so far.
    pub async fn verify(
        &self,
        key: &CheckpointVerifier,
        reference: Option<&ExportDir>,
        archives: &[ExportDir],
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<VerifyReport, ExportError> {
        let checkpoints = self.checkpoint_records().await?;
        let mut verifier = Verifier::new(key, &checkpoints).with_tree_nodes();
        if let Some(reference) = reference {
            for c in reference.checkpoints()? {
                verifier.add_checkpoint(key, &c);
            }
            verifier = verifier.with_reference(Box::new(reference.leaves()?));
        }
        let archived = self.archived_through().await?;
        if archived > 0 && archives.is_empty() {
            let mut conn = self
                .pool()
                .acquire()
                .await
                .map_err(LedgerError::query("acquiring a connection"))?;
            verifier.resume(crate::tree::load_range(&mut conn, archived).await?);
        } else if archived > 0 || !archives.is_empty() {
            self.verify_archives(&mut verifier, key, archives, archived, progress)
                .await?;
        }
        let mut last: i64 = seq_to_db(archived)?;
        loop {
            let rows = sqlx::query(
                "SELECT seq, recorded_at, kind, message_id, caseref, agency, entry, leaf_hash \
                 FROM ledger_entries WHERE seq > $1 ORDER BY seq LIMIT $2",
            )
            .bind(last)
            .bind(PAGE)
            .fetch_all(self.pool())
            .await
            .map_err(LedgerError::query("reading entries to verify"))?;
            let Some(page_last) = rows.last().map(|r| r.try_get::<i64, _>("seq")) else {
                break;
            };
            let page_last = page_last.map_err(read)?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in &rows {
                let leaf: Vec<u8> = row.try_get("leaf_hash").map_err(read)?;
                entries.push(EntryRecord {
                    seq: seq_from_db(row.try_get("seq").map_err(read)?)?,
                    bytes: row.try_get("entry").map_err(read)?,
                    // A stored hash of the wrong length is a mismatch, not a crash.
                    stored_leaf_hash: Some(<Hash>::try_from(leaf.as_slice()).unwrap_or([0; 32])),
                    columns: Some(EntryColumns {
                        recorded_at: row.try_get("recorded_at").map_err(read)?,
                        kind: row.try_get("kind").map_err(read)?,
                        message_id: row.try_get("message_id").map_err(read)?,
                        caseref: row.try_get("caseref").map_err(read)?,
                        agency: row.try_get("agency").map_err(read)?,
                    }),
                });
            }
            let messages = self.message_records(last, Some(page_last)).await?;
            self.verify_page(&mut verifier, entries, messages, seq_from_db(page_last)?)
                .await?;
            progress(verifier.entries_seen());
            last = page_last;
        }
        // Bodies pointing past the last entry.
        for m in self.message_records(last, None).await? {
            verifier.message(m);
        }
        // Tree nodes over leaves that do not exist: level l index i covers leaves up to
        // (i + 1)·2^l, beyond a tree of `last` leaves once i ≥ last >> l.
        let extra = sqlx::query(
            "SELECT level, idx FROM ledger_tree_nodes WHERE idx >= ($1::bigint >> level::int) \
             ORDER BY level, idx LIMIT 100",
        )
        .bind(last)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading tree nodes to verify"))?;
        for row in &extra {
            verifier.extra_tree_node(node_id(row)?);
        }
        // Outbox rows of no message: the relay would skip them, but they were not written
        // by the ledger.
        let orphans = sqlx::query(
            "SELECT o.delivery_id, o.message_id FROM outbox o \
             WHERE NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = o.message_id) \
             ORDER BY o.delivery_id LIMIT 100",
        )
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading outbox rows to verify"))?;
        for row in &orphans {
            verifier.orphan_delivery(
                row.try_get("delivery_id").map_err(read)?,
                row.try_get("message_id").map_err(read)?,
            );
        }
        Ok(verifier.finish())
    }

    /// Feeds the archived range from its archives, oldest first, checking each entry's
    /// leaf hash against the one kept and the tree nodes it completes against the stored
    /// ones.
    async fn verify_archives(
        &self,
        verifier: &mut Verifier,
        key: &CheckpointVerifier,
        archives: &[ExportDir],
        archived: u64,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<(), ExportError> {
        let mut ordered: Vec<&ExportDir> = archives.iter().collect();
        ordered.sort_by_key(|a| a.offset());
        let mut through = 0;
        for archive in &ordered {
            if archive.offset() != through {
                return Err(ExportError::Archives(format!(
                    "{} starts at seq {}, the one before ends at {through}",
                    archive.dir.display(),
                    archive.offset() + 1
                )));
            }
            through += archive.manifest.entries;
        }
        if through != archived {
            return Err(ExportError::Archives(format!(
                "they end at seq {through}, the database archived through {archived}"
            )));
        }
        for archive in ordered {
            for c in archive.checkpoints()? {
                verifier.add_checkpoint(key, &c);
            }
            let mut entries = archive.entries()?.peekable();
            let mut messages = archive.messages()?.peekable();
            while entries.peek().is_some() {
                let mut page = Vec::with_capacity(PAGE as usize);
                for entry in entries.by_ref().take(PAGE as usize) {
                    page.push(entry?);
                }
                let (Some(first), Some(last_seq)) =
                    (page.first().map(|e| e.seq), page.last().map(|e| e.seq))
                else {
                    break;
                };
                let kept = self.archived_leaves(first, last_seq).await?;
                for entry in &mut page {
                    // A leaf hash not kept is a mismatch with nothing, not a crash.
                    entry.stored_leaf_hash = Some(kept.get(&entry.seq).copied().unwrap_or([0; 32]));
                }
                let mut page_messages = Vec::new();
                while let Some(m) =
                    messages.next_if(|m| m.as_ref().map_or(true, |m| m.seq <= last_seq))
                {
                    page_messages.push(m?);
                }
                self.verify_page(verifier, page, page_messages, last_seq)
                    .await?;
                progress(verifier.entries_seen());
            }
            for m in messages {
                verifier.message(m?);
            }
        }
        Ok(())
    }

    /// Feeds one page of entries (through seq `last`) with their messages, then compares
    /// the tree nodes they completed with the stored ones.
    async fn verify_page(
        &self,
        verifier: &mut Verifier,
        entries: Vec<EntryRecord>,
        messages: Vec<MessageRecord>,
        last: u64,
    ) -> Result<(), LedgerError> {
        feed(verifier, entries, messages);
        verifier.messages_done_through(last);
        let computed = verifier.take_completed_nodes();
        let stored = self.stored_tree_nodes(&computed).await?;
        verifier.compare_tree_nodes(&computed, &stored);
        Ok(())
    }

    /// The leaf hashes kept for archived seqs `first ..= last`.
    async fn archived_leaves(
        &self,
        first: u64,
        last: u64,
    ) -> Result<HashMap<u64, Hash>, LedgerError> {
        let rows = sqlx::query(
            "SELECT seq, leaf_hash FROM ledger_archived_leaves WHERE seq >= $1 AND seq <= $2",
        )
        .bind(seq_to_db(first)?)
        .bind(seq_to_db(last)?)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading archived leaf hashes"))?;
        rows.iter()
            .map(|row| {
                let leaf: Vec<u8> = row.try_get("leaf_hash").map_err(read)?;
                Ok((
                    seq_from_db(row.try_get("seq").map_err(read)?)?,
                    <Hash>::try_from(leaf.as_slice()).unwrap_or([0; 32]),
                ))
            })
            .collect()
    }

    /// The stored interior nodes among `computed`'s ids.
    async fn stored_tree_nodes(
        &self,
        computed: &[(NodeId, Hash)],
    ) -> Result<HashMap<NodeId, Hash>, LedgerError> {
        let ids: Vec<NodeId> = computed.iter().map(|(id, _)| *id).collect();
        let stored =
            crate::tree::stored_interior_nodes(self.pool(), &ids, "reading tree nodes to verify")
                .await?;
        Ok(stored
            .into_iter()
            // A stored hash of the wrong length is a mismatch, not a crash.
            .map(|(id, hash)| (id, <Hash>::try_from(hash.as_slice()).unwrap_or([0; 32])))
            .collect())
    }

    async fn message_records(
        &self,
        after: i64,
        through: Option<i64>,
    ) -> Result<Vec<MessageRecord>, LedgerError> {
        let rows = sqlx::query(
            "SELECT m.id, m.seq, m.sha256, m.body, m.sender, m.type, m.caseref, m.inreplyto, \
                    m.traceparent, m.channel, m.route, k.kek_id, k.wrapped, k.erased_seq \
             FROM messages m LEFT JOIN message_keys k ON k.message_id = m.id \
             WHERE m.seq > $1 AND ($2::bigint IS NULL OR m.seq <= $2) ORDER BY m.seq",
        )
        .bind(after)
        .bind(through)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading messages to verify"))?;
        let ids = rows
            .iter()
            .map(|row| row.try_get::<Uuid, _>("id").map_err(read))
            .collect::<Result<Vec<_>, _>>()?;
        let mut deliveries: HashMap<Uuid, Vec<DeliveryRecord>> = HashMap::new();
        let outbox = sqlx::query(
            "SELECT delivery_id, message_id, recipient, role FROM outbox \
             WHERE message_id = ANY($1) ORDER BY delivery_id",
        )
        .bind(&ids)
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading outbox rows to verify"))?;
        for row in &outbox {
            deliveries
                .entry(row.try_get("message_id").map_err(read)?)
                .or_default()
                .push(DeliveryRecord {
                    delivery_id: row.try_get("delivery_id").map_err(read)?,
                    recipient: row.try_get("recipient").map_err(read)?,
                    role: row.try_get("role").map_err(read)?,
                });
        }
        rows.iter()
            .map(|row| {
                let digest: Vec<u8> = row.try_get("sha256").map_err(read)?;
                let id: Uuid = row.try_get("id").map_err(read)?;
                let stored: Vec<u8> = row.try_get("body").map_err(read)?;
                // A sealed body that does not open is an altered one: its stored bytes
                // then fail the digest like a changed clear body.
                let (body, erased_by) = match crate::keys::open_stored(
                    self.keyring(),
                    id,
                    stored.clone(),
                    crate::keys::KeyColumns::from_row(row).map_err(read)?,
                ) {
                    Ok(crate::keys::Opened::Body(body)) => (body, None),
                    Ok(crate::keys::Opened::Erased(seq)) => (Vec::new(), Some(seq)),
                    Err(crate::keys::KeyError::Decrypt { .. }) => (stored, None),
                    Err(e) => return Err(e.into()),
                };
                Ok(MessageRecord {
                    id,
                    seq: seq_from_db(row.try_get("seq").map_err(read)?)?,
                    body,
                    erased_by,
                    stored_sha256: Some(<Hash>::try_from(digest.as_slice()).unwrap_or([0; 32])),
                    columns: Some(MessageColumns {
                        sender: row.try_get("sender").map_err(read)?,
                        type_: row.try_get("type").map_err(read)?,
                        caseref: row.try_get("caseref").map_err(read)?,
                        inreplyto: row.try_get("inreplyto").map_err(read)?,
                        traceparent: row.try_get("traceparent").map_err(read)?,
                        channel: row.try_get("channel").map_err(read)?,
                        route: row.try_get("route").map_err(read)?,
                    }),
                    deliveries: Some(deliveries.remove(&id).unwrap_or_default()),
                })
            })
            .collect()
    }
}

fn node_id(row: &sqlx::postgres::PgRow) -> Result<NodeId, LedgerError> {
    let level: i16 = row.try_get("level").map_err(read)?;
    Ok(NodeId {
        level: u8::try_from(level)
            .map_err(|_| LedgerError::Corrupt(format!("tree node level {level}")))?,
        index: seq_from_db(row.try_get("idx").map_err(read)?)?,
    })
}

fn read(e: sqlx::Error) -> LedgerError {
    LedgerError::Corrupt(format!("reading a row: {e}"))
}

/// Feeds a page: each message right after the entries up to its seq.
fn feed(verifier: &mut Verifier, entries: Vec<EntryRecord>, messages: Vec<MessageRecord>) {
    let mut messages = messages.into_iter().peekable();
    for entry in entries {
        let seq = entry.seq;
        verifier.entry(entry);
        while let Some(m) = messages.next_if(|m| m.seq <= seq) {
            verifier.message(m);
        }
    }
    for m in messages {
        verifier.message(m);
    }
}

/// An export directory, read lazily.
pub struct ExportDir {
    pub dir: PathBuf,
    pub manifest: Manifest,
}

impl ExportDir {
    pub fn open(dir: &Path) -> Result<Self, ExportError> {
        let path = dir.join("manifest.json");
        let text = std::fs::read(&path).map_err(FileError::at("read", &path))?;
        let manifest: Manifest =
            serde_json::from_slice(&text).map_err(|e| ExportError::Format {
                path: path.clone(),
                line: 1,
                reason: e.to_string(),
            })?;
        if manifest.format != EXPORT_FORMAT {
            return Err(ExportError::Format {
                path,
                line: 1,
                reason: format!("format {:?}, expected {EXPORT_FORMAT:?}", manifest.format),
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            manifest,
        })
    }

    /// The public key the export carries. An auditor should compare it with the key they
    /// got from the operator, or pass that key instead.
    pub fn public_key(&self) -> Result<[u8; 32], ExportError> {
        let path = self.dir.join(PUBLIC_KEY_FILE);
        let text = std::fs::read_to_string(&path).map_err(FileError::at("read", &path))?;
        parse_public_key(&text).map_err(|reason| ExportError::Format {
            path,
            line: 1,
            reason,
        })
    }

    pub fn checkpoints(&self) -> Result<Vec<CheckpointRecord>, ExportError> {
        let path = self.dir.join("checkpoints.jsonl");
        lines(&path)?
            .map(|line| {
                let (n, bytes) = line?;
                let c: CheckpointLine =
                    serde_json::from_slice(&bytes).map_err(|e| ExportError::Format {
                        path: path.clone(),
                        line: n,
                        reason: e.to_string(),
                    })?;
                Ok(CheckpointRecord {
                    tree_size: c.tree_size,
                    note: c.note,
                })
            })
            .collect()
    }

    /// The witnesses' cosignatures the export carries (none for an export made before it
    /// carried them).
    pub fn cosignatures(&self) -> Result<Vec<crate::StoredCosignature>, ExportError> {
        let path = self.dir.join(COSIGNATURES_FILE);
        if !path.exists() {
            return Ok(Vec::new());
        }
        lines(&path)?
            .map(|line| {
                let (n, bytes) = line?;
                serde_json::from_slice(&bytes).map_err(|e| ExportError::Format {
                    path: path.clone(),
                    line: n,
                    reason: e.to_string(),
                })
            })
            .collect()
    }

    /// The seqs before the export's first entry (0 unless it is an archive of a later range).
    pub fn offset(&self) -> u64 {
        self.manifest
            .first_seq
            .map_or(0, |first| first.saturating_sub(1))
    }

    /// The tree before the first entry, for an archive of a later range.
    pub fn frontier(&self) -> Result<Option<CompactRange>, ExportError> {
        let offset = self.offset();
        if offset == 0 {
            return Ok(None);
        }
        let path = self.dir.join("manifest.json");
        let bad = |reason: &str| ExportError::Format {
            path: path.clone(),
            line: 1,
            reason: reason.to_owned(),
        };
        let hashes = self
            .manifest
            .frontier
            .as_ref()
            .ok_or_else(|| bad("first_seq without frontier"))?
            .iter()
            .map(|h| {
                hex::decode(h)
                    .ok()
                    .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
                    .ok_or_else(|| bad("frontier: not 32 bytes of hex"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        CompactRange::from_parts(offset, hashes)
            .map(Some)
            .ok_or_else(|| bad("frontier: wrong number of hashes for first_seq"))
    }

    /// Entries in seq order: line N is seq N (after [`ExportDir::offset`]).
    pub fn entries(
        &self,
    ) -> Result<impl Iterator<Item = Result<EntryRecord, ExportError>> + use<>, ExportError> {
        let lines = lines(&self.dir.join("entries.jsonl"))?;
        let offset = self.offset();
        Ok(lines.map(move |line| {
            let (line, bytes) = line?;
            Ok(EntryRecord {
                seq: line + offset,
                bytes,
                ..EntryRecord::default()
            })
        }))
    }

    /// (seq, leaf hash) of every entry: what a later ledger must extend.
    pub fn leaves(
        &self,
    ) -> Result<impl Iterator<Item = Result<(u64, Hash), String>> + Send + use<>, ExportError> {
        let lines = lines(&self.dir.join("entries.jsonl"))?;
        let offset = self.offset();
        Ok(lines.map(move |line| {
            line.map(|(seq, bytes)| (seq + offset, audit::leaf_hash(&bytes)))
                .map_err(|e| e.to_string())
        }))
    }

    pub fn messages(
        &self,
    ) -> Result<impl Iterator<Item = Result<MessageRecord, ExportError>> + use<>, ExportError> {
        let path = self.dir.join("messages.jsonl");
        let lines = lines(&path)?;
        Ok(lines.map(move |line| {
            let (n, bytes) = line?;
            let format = |reason: String| ExportError::Format {
                path: path.clone(),
                line: n,
                reason,
            };
            let m: MessageLine =
                serde_json::from_slice(&bytes).map_err(|e| format(e.to_string()))?;
            let body = STANDARD
                .decode(m.body.as_deref().unwrap_or_default())
                .map_err(|e| format(format!("body: {e}")))?;
            let digest = hex::decode(&m.sha256)
                .ok()
                .and_then(|d| <Hash>::try_from(d.as_slice()).ok())
                .ok_or_else(|| format("sha256 is not 32 bytes of hex".into()))?;
            Ok(MessageRecord {
                id: m.id,
                seq: m.seq,
                body,
                stored_sha256: Some(digest),
                erased_by: m.erased_by,
                ..MessageRecord::default()
            })
        }))
    }

    /// Verifies the export with no database. `key` defaults to the export's own key and
    /// origin; `reference` is an earlier export this one must extend.
    pub fn verify(
        &self,
        key: &CheckpointVerifier,
        reference: Option<&ExportDir>,
        progress: &mut dyn FnMut(u64),
    ) -> Result<VerifyReport, ExportError> {
        let mut verifier = Verifier::new(key, &self.checkpoints()?);
        if let Some(frontier) = self.frontier()? {
            verifier.resume(frontier);
        }
        if let Some(reference) = reference {
            for c in reference.checkpoints()? {
                verifier.add_checkpoint(key, &c);
            }
            verifier = verifier.with_reference(Box::new(reference.leaves()?));
        }
        let mut messages = self.messages()?.peekable();
        for entry in self.entries()? {
            let entry = entry?;
            let seq = entry.seq;
            verifier.entry(entry);
            while let Some(m) = messages.next_if(|m| m.as_ref().map_or(true, |m| m.seq <= seq)) {
                verifier.message(m?);
            }
            if seq % PAGE as u64 == 0 {
                verifier.messages_done_through(seq);
                progress(seq);
            }
        }
        for m in messages {
            verifier.message(m?);
        }
        let report = verifier.finish();
        progress(report.entries);
        Ok(report)
    }

    /// The checkpoint key as the export names it: its verifier key (`ledger-key.vkey`),
    /// which must agree with the manifest's origin and `ledger-key.pub`; for an export
    /// made before it was written, the public key under the manifest's origin.
    pub fn verifier(&self) -> Result<CheckpointVerifier, ExportError> {
        let vkey_path = self.dir.join(VKEY_FILE);
        let format = |path: &Path, reason: String| ExportError::Format {
            path: path.to_path_buf(),
            line: 1,
            reason,
        };
        let from_pub = || {
            CheckpointVerifier::new(self.manifest.origin.clone(), self.public_key()?)
                .map_err(|e| format(&self.dir.join("manifest.json"), e.to_string()))
        };
        let text = match std::fs::read_to_string(&vkey_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return from_pub(),
            Err(source) => {
                return Err(FileError::new("read", vkey_path, source).into());
            }
        };
        let verifier =
            CheckpointVerifier::from_vkey(&text).map_err(|e| format(&vkey_path, e.to_string()))?;
        if verifier.origin() != self.manifest.origin {
            return Err(format(
                &vkey_path,
                format!(
                    "it names the origin {:?}, the manifest {:?}",
                    verifier.origin(),
                    self.manifest.origin
                ),
            ));
        }
        if self.dir.join(PUBLIC_KEY_FILE).exists() && self.public_key()? != verifier.public_key() {
            return Err(format(
                &vkey_path,
                format!("it is not the key of {PUBLIC_KEY_FILE}"),
            ));
        }
        Ok(verifier)
    }
}

/// A hex Ed25519 public key as `liaison pki init` writes it.
pub fn parse_public_key(text: &str) -> Result<[u8; 32], String> {
    hex::decode(text.trim())
        .ok()
        .and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok())
        .ok_or_else(|| "not a hex Ed25519 public key (64 hex digits)".to_owned())
}

/// A key file as an auditor holds it: a C2SP verifier key (`ledger-signing.vkey`, which
/// names its origin), or a hex public key (`ledger-signing.pub`), read under `origin`.
pub fn parse_key_file(text: &str, origin: &str) -> Result<CheckpointVerifier, String> {
    if text.contains('+') {
        return CheckpointVerifier::from_vkey(text).map_err(|e| e.to_string());
    }
    let key = parse_public_key(text)
        .map_err(|e| format!("{e}, nor a C2SP verifier key (origin+keyid+base64)"))?;
    CheckpointVerifier::new(origin, key).map_err(|e| e.to_string())
}

/// Numbered lines (from 1) without their newline.
fn lines(
    path: &Path,
) -> Result<impl Iterator<Item = Result<(u64, Vec<u8>), ExportError>> + Send + use<>, ExportError> {
    let file = File::open(path).map_err(FileError::at("open", path))?;
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let path = path.to_path_buf();
    let mut n = 0u64;
    Ok(std::iter::from_fn(move || {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => {
                n += 1;
                if line.last() == Some(&b'\n') {
                    line.pop();
                }
                Some(Ok((n, line)))
            }
            Err(source) => Some(Err(FileError::new("read", &path, source).into())),
        }
    }))
}
