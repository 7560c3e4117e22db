//! `liaison ledger verify|export|replay`: the auditor's commands, and `liaison ledger
//! migrate`, the owner's (the schema up to date, for brokers that may not change it). The checks themselves
//! live in `liaison-ledger` (`verify`, `replay`, `ExportDir`); this module picks the key,
//! draws the progress bar and prints the verdict.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use indicatif::{ProgressBar, ProgressStyle};
use liaison_core::checkpoint::CheckpointVerifier;
use liaison_core::cosignature::CosignatureVerifier;
use liaison_ledger::verify::{CheckpointRecord, Location, VerifyReport};
use liaison_ledger::witnessed::check_cosignatures;
use liaison_ledger::{ExportDir, Ledger, parse_key_file};
use liaison_pki::PkiLayout;
use liaison_server::Config;

#[derive(Subcommand)]
pub enum LedgerCommand {
    /// Recompute every leaf and the tree, check every message body against its entry and
    /// every checkpoint's signature and root; name the first bad sequence number.
    Verify {
        /// Verify an export directory instead of the database (no database needed).
        #[arg(long, value_name = "DIR")]
        offline: Option<PathBuf>,
        /// An earlier export that the ledger (or the --offline export) must extend.
        #[arg(long, value_name = "DIR")]
        against: Option<PathBuf>,
        /// The ledger's key: its C2SP verifier key (ledger-signing.vkey, which names the
        /// origin too) or its hex public key (ledger-signing.pub, read under the origin of
        /// the configuration or the export). Default: the PKI's, or with --offline the
        /// export's own.
        #[arg(long, value_name = "FILE")]
        public_key: Option<PathBuf>,
        /// A witness's verifier key (`name+keyid+base64`, from `liaison witness init`):
        /// every cosignature it made must verify over its checkpoint. Repeatable.
        #[arg(long, value_name = "VKEY")]
        witness: Vec<String>,
        /// An archive written by `liaison ledger archive`: the archived range is verified
        /// from the archives given (together they must make it up exactly) against the leaf
        /// hashes and tree nodes the database kept. Without any, verification starts from
        /// the stored tree at the end of the archived range. Repeatable.
        #[arg(long, value_name = "DIR")]
        archive: Vec<PathBuf>,
    },
    /// Move the entries and message bodies before a cutoff out of the database into an
    /// archive directory (whole partitions of [ledger] partition_entries seqs; never the
    /// last entry, nor a message with a delivery still to publish or dead). The archive is
    /// written, verified from the disk, and given a signed checkpoint of exactly its last
    /// seq before anything is removed. Run as the owner of the ledger tables.
    Archive {
        /// A seq (entries before it) or an RFC 3339 time or date (entries recorded before
        /// it), e.g. 2027-01-01 or 2027-01-01T00:00:00+08:00.
        #[arg(long, value_name = "SEQ|DATE")]
        before: String,
        /// A new directory for the archive; keep it with the earlier ones.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Write everything committed so far to a new directory, for offline verification.
    /// Refused when the key it would carry (the PKI's verifier key, else its public key
    /// under [ledger] origin) verifies none of the ledger's checkpoints.
    Export {
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
    /// Rebuild delivery states from the entries alone and report any difference from the
    /// live tables.
    Replay,
    /// Bring the database schema up to date (apply the migrations this version brings)
    /// and exit. Run it as the database's owner before starting brokers that run as
    /// `liaison_broker`, which apply none, and again after each upgrade.
    Migrate,
}

pub async fn run(config: Config, command: LedgerCommand) -> anyhow::Result<()> {
    match command {
        LedgerCommand::Verify {
            offline: Some(dir),
            against,
            public_key,
            witness,
            archive: _,
        } => {
            let witnesses = witness_keys(&witness)?;
            verify_offline(&dir, against.as_deref(), public_key.as_deref(), &witnesses)
        }
        LedgerCommand::Verify {
            offline: None,
            against,
            public_key,
            witness,
            archive,
        } => {
            let witnesses = witness_keys(&witness)?;
            verify_database(
                &config,
                VerifySources {
                    against: against.as_deref(),
                    public_key: public_key.as_deref(),
                    archives: &archive,
                },
                &witnesses,
            )
            .await
        }
        LedgerCommand::Archive { before, out } => archive(&config, &before, &out).await,
        LedgerCommand::Export { out } => export(&config, &out).await,
        LedgerCommand::Replay => replay(&config).await,
        LedgerCommand::Migrate => migrate(&config).await,
    }
}

async fn open(config: &Config) -> anyhow::Result<Ledger> {
    crate::open_ledger(config).await
}

/// A key file given with --public-key: a verifier key, or a hex key read under `origin`.
fn read_key(path: &Path, origin: &str) -> anyhow::Result<CheckpointVerifier> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    parse_key_file(&text, origin).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))
}

/// The ledger's key as the PKI holds it: its verifier key, or (a PKI made before there was
/// one) its public key under the configured origin.
fn pki_key(config: &Config) -> anyhow::Result<CheckpointVerifier> {
    let layout = PkiLayout::new(config.tls_dir.clone());
    if let Some(verifier) = liaison_pki::read_verifier_key(&layout)? {
        return Ok(verifier);
    }
    let key = liaison_pki::read_ledger_public_key(&layout)
        .context("the ledger public key of the PKI (--public-key FILE to name another)")?;
    Ok(CheckpointVerifier::new(config.ledger.origin.clone(), key)?)
}

pub(crate) fn progress_bar(total: u64, what: &str) -> ProgressBar {
    // indicatif draws on stderr only when it is a terminal: logs and pipes stay clean.
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} entries ({per_sec}, {eta} left)")
    {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_message(what.to_owned());
    bar
}

fn open_reference(against: Option<&Path>) -> anyhow::Result<Option<ExportDir>> {
    against
        .map(|dir| {
            ExportDir::open(dir).with_context(|| format!("earlier export {}", dir.display()))
        })
        .transpose()
}

fn witness_keys(keys: &[String]) -> anyhow::Result<Vec<CosignatureVerifier>> {
    keys.iter()
        .map(|k| {
            CosignatureVerifier::from_verifier_key(k).with_context(|| format!("--witness {k}"))
        })
        .collect()
}

/// Prints what the named witnesses' cosignatures showed; an error when one is bad.
fn witnessed(
    checkpoints: &[CheckpointRecord],
    cosignatures: &[liaison_ledger::StoredCosignature],
    witnesses: &[CosignatureVerifier],
) -> anyhow::Result<()> {
    if witnesses.is_empty() {
        return Ok(());
    }
    let report = check_cosignatures(checkpoints, cosignatures, witnesses);
    for (name, (count, largest)) in &report.witnesses {
        println!(
            "✓ witness {name}: {count} cosignature(s) verified, largest cosigned tree size {largest}"
        );
    }
    for finding in &report.findings {
        println!("✗ {finding}");
    }
    anyhow::ensure!(
        report.is_ok(),
        "{} bad cosignature(s)",
        report.findings.len()
    );
    Ok(())
}

/// What a database verification reads besides the database.
struct VerifySources<'a> {
    against: Option<&'a Path>,
    public_key: Option<&'a Path>,
    archives: &'a [PathBuf],
}

async fn verify_database(
    config: &Config,
    sources: VerifySources<'_>,
    witnesses: &[CosignatureVerifier],
) -> anyhow::Result<()> {
    let key = match sources.public_key {
        Some(path) => read_key(path, &config.ledger.origin)?,
        None => pki_key(config)?,
    };
    let reference = open_reference(sources.against)?;
    let archives = sources
        .archives
        .iter()
        .map(|dir| ExportDir::open(dir).with_context(|| format!("archive {}", dir.display())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let ledger = open(config).await?;
    let bar = progress_bar(ledger.size().await?, "verifying the ledger");
    let started = Instant::now();
    let report = ledger
        .verify(&key, reference.as_ref(), &archives, &mut |n| {
            bar.set_position(n)
        })
        .await?;
    bar.finish_and_clear();
    if report.skipped_through > 0 {
        println!(
            "note: entries 1..={} are archived and were not read (the tree kept for them was); give their archives with --archive DIR to verify them too",
            report.skipped_through
        );
    } else if !archives.is_empty() {
        println!(
            "✓ the archived range was read from {} archive(s)",
            archives.len()
        );
    }
    let checkpoints = ledger.checkpoint_records().await?;
    let cosigned = witnessed(&checkpoints, &ledger.cosignatures(None).await?, witnesses);
    // Kept for the console's overview; a role that may not write it only loses that.
    let recorded = ledger
        .record_verification(&liaison_ledger::telemetry::Verification {
            verified_at: time::OffsetDateTime::now_utc(),
            entries: i64::try_from(report.entries).unwrap_or(i64::MAX),
            ok: report.is_ok(),
            findings: i64::try_from(report.findings_total).unwrap_or(i64::MAX),
        })
        .await;
    if let Err(error) = recorded {
        eprintln!("note: the verification could not be recorded for the console: {error}");
    }
    verdict(&report, started)?;
    cosigned
}

fn verify_offline(
    dir: &Path,
    against: Option<&Path>,
    public_key: Option<&Path>,
    witnesses: &[CosignatureVerifier],
) -> anyhow::Result<()> {
    let export = ExportDir::open(dir).with_context(|| format!("export {}", dir.display()))?;
    let key = match public_key {
        Some(path) => read_key(path, &export.manifest.origin)?,
        None => {
            let key = export.verifier()?;
            println!(
                "note: checking signatures with the key the export carries ({}); pass --public-key to pin the key you got from the operator",
                key.vkey()
            );
            key
        }
    };
    let reference = open_reference(against)?;
    let bar = progress_bar(export.manifest.entries, "verifying the export");
    let started = Instant::now();
    let report = export.verify(&key, reference.as_ref(), &mut |n| bar.set_position(n))?;
    bar.finish_and_clear();
    if report.root != [0; 32] && hex::encode(report.root) != export.manifest.root {
        println!("note: the manifest's root differs from the entries' root");
    }
    let cosigned = witnessed(&export.checkpoints()?, &export.cosignatures()?, witnesses);
    verdict(&report, started)?;
    cosigned
}

/// Prints the report; an error (exit status 1) when anything is wrong.
fn verdict(report: &VerifyReport, started: Instant) -> anyhow::Result<()> {
    let seconds = started.elapsed().as_secs_f64();
    for erased in &report.erased {
        println!(
            "erased: the body of message {} (seq {}) was erased by entry {}",
            erased.message, erased.seq, erased.by
        );
    }
    if !report.erased.is_empty() {
        println!(
            "{} message bodies erased on the record (case.erased entries); their digests stay in their entries",
            report.erased.len()
        );
    }
    if report.is_ok() {
        println!(
            "✓ {} entries, {} message bodies, {} checkpoints verified in {seconds:.1}s; root {}",
            report.entries,
            report.messages,
            report.checkpoints,
            hex::encode(report.root)
        );
        return Ok(());
    }
    for finding in &report.findings {
        println!("✗ {finding}");
    }
    if report.findings_total > report.findings.len() as u64 {
        println!(
            "… and {} more",
            report.findings_total - report.findings.len() as u64
        );
    }
    let checkpoints = report.bad_checkpoints();
    if !checkpoints.is_empty() {
        let sizes: Vec<String> = checkpoints.iter().map(u64::to_string).collect();
        println!("bad checkpoints: {}", sizes.join(", "));
    }
    match report.first_bad() {
        Some(Location::Seq(seq)) => {
            println!("first bad seq: {seq}");
            anyhow::bail!("the ledger does not verify: first bad seq {seq}")
        }
        Some(Location::Range { from, to }) => {
            // The signed roots bound it and nothing here names it: say so, not a seq.
            println!(
                "first bad entry: one of seqs {from}..={to} (only this range is known; an earlier export holding it, --against DIR, names it)"
            );
            anyhow::bail!("the ledger does not verify: an entry in seqs {from}..={to} was changed")
        }
        None => anyhow::bail!(
            "the ledger does not verify: {} finding(s)",
            report.findings_total
        ),
    }
}

async fn export(config: &Config, out: &Path) -> anyhow::Result<()> {
    let key = pki_key(config)?;
    let ledger = open(config).await?;
    let bar = progress_bar(ledger.size().await?, "exporting");
    let exported = ledger.export(out, &key, &mut |n| bar.set_position(n)).await;
    bar.finish_and_clear();
    let exported = exported?;
    let manifest = exported.manifest;
    if !exported.unverified_checkpoints.is_empty() {
        let sizes: Vec<String> = exported
            .unverified_checkpoints
            .iter()
            .map(u64::to_string)
            .collect();
        println!(
            "warning: the ledger key does not verify checkpoint(s) {}: `liaison ledger verify` names them",
            sizes.join(", ")
        );
    }
    println!(
        "exported {} entries, {} message bodies and {} checkpoints to {}; root {}; verifier key {}",
        manifest.entries,
        manifest.messages,
        manifest.checkpoints,
        out.display(),
        manifest.root,
        key.vkey()
    );
    Ok(())
}

/// `--before`: a seq, or an RFC 3339 time or date (midnight UTC).
fn parse_cutoff(text: &str) -> anyhow::Result<liaison_ledger::ArchiveCutoff> {
    use liaison_ledger::ArchiveCutoff;
    if let Ok(seq) = text.parse::<u64>() {
        return Ok(ArchiveCutoff::Seq(seq));
    }
    let rfc3339 = &time::format_description::well_known::Rfc3339;
    if let Ok(at) = time::OffsetDateTime::parse(text, rfc3339) {
        return Ok(ArchiveCutoff::Time(at));
    }
    let date = time::Date::parse(
        text,
        time::macros::format_description!("[year]-[month]-[day]"),
    )
    .map_err(|_| {
        anyhow::anyhow!(
            "--before {text:?}: expected a seq, a date (2027-01-01) or an RFC 3339 time"
        )
    })?;
    Ok(ArchiveCutoff::Time(date.midnight().assume_utc()))
}

async fn archive(config: &Config, before: &str, out: &Path) -> anyhow::Result<()> {
    let cutoff = parse_cutoff(before)?;
    let signer = liaison_server::workers::checkpointing::signer(config)
        .map_err(|e| anyhow::anyhow!("the ledger signing key: {e}"))?;
    let ledger = open(config).await?;
    let bar = progress_bar(ledger.size().await?, "archiving");
    let archived = ledger
        .archive(cutoff, out, &signer, &mut |n| bar.set_position(n))
        .await;
    bar.finish_and_clear();
    let archived = archived?;
    let record = &archived.record;
    if archived.signed_checkpoint {
        println!("signed the checkpoint of tree size {}", record.last_seq);
    }
    println!(
        "archived entries {}..={} ({} message bodies) to {}; verified, root {}; {} partition(s) of each table dropped",
        record.first_seq,
        record.last_seq,
        record.messages,
        out.display(),
        hex::encode(record.root_hash),
        archived.partitions
    );
    Ok(())
}

async fn migrate(config: &Config) -> anyhow::Result<()> {
    // Opening the ledger applies what is missing (under sqlx's advisory lock, so that
    // brokers starting meanwhile wait) and fails naming the first migration it could not.
    let ledger = open(config).await?;
    let entries = ledger.size().await?;
    ledger.pool().close().await;
    println!("the ledger's schema is up to date ({entries} entries)");
    Ok(())
}

async fn replay(config: &Config) -> anyhow::Result<()> {
    let ledger = open(config).await?;
    let bar = progress_bar(ledger.size().await?, "replaying");
    let report = ledger.replay(&mut |n| bar.set_position(n)).await?;
    bar.finish_and_clear();
    println!(
        "replayed {} entries: {} deliveries across {} cases ({} entries of kinds the replay does not interpret)",
        report.entries,
        report.deliveries,
        report.cases.len(),
        report.other_kinds
    );
    for difference in &report.differences {
        println!("✗ {difference}");
    }
    anyhow::ensure!(
        report.differences.is_empty(),
        "{} difference(s) between the entries and the live tables",
        report.differences.len()
    );
    println!("✓ the live delivery states are the ones the entries lead to");
    Ok(())
}
