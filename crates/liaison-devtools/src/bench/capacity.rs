//! `liaison bench --capacity N`: what N leads cost on disk, measured — each table of the
//! ledger's database with its indexes, the PostgreSQL WAL written, and what a lead costs
//! RabbitMQ while it waits in a queue — for `docs/capacity.md`'s projections.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use liaison_ledger::Ledger;
use liaison_ledger::telemetry::TableUse;
use serde::Serialize;

use super::full::{self, Leads, Target};
use super::setup::BenchWorld;

#[derive(Clone, Debug, Serialize)]
pub struct CapacityReport {
    /// Leads accepted and delivered (each to one recipient).
    pub messages: usize,
    pub message_bytes: usize,
    /// Growth of each table over the run (bytes include indexes and TOAST).
    pub tables: Vec<TableUse>,
    pub database_bytes: i64,
    pub wal_bytes: i64,
    /// Leads left waiting in a queue nobody consumes, and what RabbitMQ reports for them.
    pub queued: usize,
    /// Growth of the local node's quorum queue directory (`None`: not readable here).
    pub queue_disk_bytes: Option<i64>,
    pub queue_memory_bytes: i64,
    pub seconds: f64,
    /// Archiving the first half of the ledger, and verifying it all from the database
    /// plus the archive.
    pub archive: ArchiveFigures,
}

#[derive(Clone, Debug, Serialize)]
pub struct ArchiveFigures {
    pub entries: u64,
    pub messages: u64,
    /// Writing, reading back and verifying the archive, then dropping the partitions.
    pub seconds: f64,
    /// What `ledger_entries` and `messages` shrank by.
    pub bytes_freed: i64,
    /// The archive directory's size.
    pub archive_bytes: u64,
    /// `verify` of the whole ledger (database and archive).
    pub verify_entries: u64,
    pub verify_seconds: f64,
}

impl CapacityReport {
    pub fn text(&self) -> String {
        let per = |bytes: i64| bytes as f64 / self.messages as f64;
        let mut out = format!(
            "liaison capacity — {} leads of {} bytes, each accepted, recorded, relayed and consumed ({:.1} s)\n\n\
             | table | rows | bytes | bytes per lead |\n|---|---|---|---|\n",
            self.messages, self.message_bytes, self.seconds
        );
        for t in &self.tables {
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} |\n",
                t.table,
                t.rows,
                t.bytes,
                per(t.bytes)
            ));
        }
        out.push_str(&format!(
            "| **database** | | {} | {:.0} |\n| PostgreSQL WAL written | | {} | {:.0} |\n\n\
             RabbitMQ, {} leads waiting in a quorum queue: {} bytes more on disk ({} per lead), \
             {} bytes of queue memory ({:.0} per lead)\n",
            self.database_bytes,
            per(self.database_bytes),
            self.wal_bytes,
            per(self.wal_bytes),
            self.queued,
            self.queue_disk_bytes
                .map_or_else(|| "unknown".to_owned(), |b| b.to_string()),
            self.queue_disk_bytes.map_or_else(
                || "unknown".to_owned(),
                |b| format!("{:.0}", b as f64 / self.queued.max(1) as f64)
            ),
            self.queue_memory_bytes,
            self.queue_memory_bytes as f64 / self.queued.max(1) as f64,
        ));
        let a = &self.archive;
        out.push_str(&format!(
            "\nArchive of the first {} entries ({} message bodies): {:.2} s ({:.0} entries/s), \
             {} bytes of ledger_entries and messages freed, archive {} bytes; \
             verify of all {} entries from the database and the archive: {:.2} s ({:.0} entries/s)\n",
            a.entries,
            a.messages,
            a.seconds,
            a.entries as f64 / a.seconds.max(1e-9),
            a.bytes_freed,
            a.archive_bytes,
            a.verify_entries,
            a.verify_seconds,
            a.verify_entries as f64 / a.verify_seconds.max(1e-9),
        ));
        out
    }
}

/// The growth of each table from `before` to `after`.
fn growth(before: &[TableUse], after: &[TableUse]) -> Vec<TableUse> {
    after
        .iter()
        .map(|a| {
            let b = before.iter().find(|b| b.table == a.table);
            TableUse {
                table: a.table.clone(),
                rows: a.rows - b.map_or(0, |b| b.rows),
                bytes: a.bytes - b.map_or(0, |b| b.bytes),
            }
        })
        .filter(|t| t.bytes != 0 || t.rows != 0)
        .collect()
}

/// Waits (bounded) until the outbox has nothing left to dispatch.
async fn until_dispatched(ledger: &Ledger) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let gauges = ledger.gauges(time::OffsetDateTime::now_utc()).await?;
        if gauges.outbox_pending == 0 {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!(
                "{} deliveries still pending after 5 minutes",
                gauges.outbox_pending
            );
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The procuratorate's queue as RabbitMQ reports it: messages and memory.
fn queue_use(vhost: &str) -> anyhow::Result<(i64, i64)> {
    let output = std::process::Command::new("rabbitmqctl")
        .args([
            "list_queues",
            "-p",
            vhost,
            "--quiet",
            "--no-table-headers",
            "name",
            "messages",
            "memory",
        ])
        .output()
        .context("running rabbitmqctl")?;
    let text = String::from_utf8_lossy(&output.stdout);
    let line = text
        .lines()
        .find(|l| l.starts_with("liaison.agency.procuratorate"))
        .context("the procuratorate's queue is not listed")?;
    let numbers: Vec<i64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|n| n.parse().ok())
        .collect();
    match numbers[..] {
        [messages, memory] => Ok((messages, memory)),
        _ => bail!("unexpected rabbitmqctl output: {line}"),
    }
}

/// Bytes under the local RabbitMQ node's quorum queue directory (its Raft logs and
/// segments), when it can be read here.
fn quorum_disk() -> Option<i64> {
    let output = std::process::Command::new("sh")
        .args([
            "-c",
            "du -sb /var/lib/rabbitmq/mnesia/*/quorum | awk '{s+=$1} END {print s}'",
        ])
        .output()
        .ok()?;
    String::from_utf8_lossy(&output.stdout).trim().parse().ok()
}

pub async fn run(
    base: &liaison_server::Config,
    messages: usize,
    message_bytes: usize,
) -> anyhow::Result<CapacityReport> {
    crate::services::ensure_all()?;
    let world = BenchWorld::create(base, 0)
        .await
        .context("preparing the capacity run's vhost, database and PKI")?;
    let result = measure(&world, messages, message_bytes).await;
    world.remove().await;
    result
}

async fn measure(
    world: &BenchWorld,
    messages: usize,
    message_bytes: usize,
) -> anyhow::Result<CapacityReport> {
    let leads = Leads {
        pad_to: message_bytes,
    };
    let size = leads.size()?;
    // About eight partitions, so that half the ledger is whole partitions to archive.
    let mut config = world.config.clone();
    config.ledger.partition_entries = (messages as u64 / 4).max(16);
    let broker = liaison_server::Broker::start(config.clone())
        .await
        .context("starting the broker")?;
    let ledger = Ledger::open(
        config.ledger_config(),
        std::sync::Arc::new(liaison_core::SystemClock),
    )
    .await?;
    let before = ledger.table_use().await?;
    let wal_before = ledger.wal_position().await?;
    let started = Instant::now();
    eprintln!("capacity: {messages} leads over HTTPS, consumed by the procuratorate…");
    full::saturate(&Target::of(world, &broker), leads, messages, 64).await?;
    until_dispatched(&ledger).await?;
    let seconds = started.elapsed().as_secs_f64();
    let wal_bytes = ledger.wal_position().await? - wal_before;
    let tables = growth(&before, &ledger.table_use().await?);
    let database_bytes = tables.iter().map(|t| t.bytes).sum();

    // What waiting leads cost RabbitMQ: post some that nobody consumes.
    let queued = (messages / 10).max(100);
    eprintln!("capacity: {queued} more leads left waiting in the procuratorate's queue…");
    let disk_before = quorum_disk();
    full::post_only(&Target::of(world, &broker), leads, queued, 64).await?;
    until_dispatched(&ledger).await?;
    // RabbitMQ's queue statistics lag by a few seconds.
    let deadline = Instant::now() + Duration::from_secs(60);
    let (in_queue, queue_memory_bytes) = loop {
        let (in_queue, memory) = queue_use(&world.vhost)?;
        if in_queue as usize >= queued || Instant::now() > deadline {
            break (in_queue, memory);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let queue_disk_bytes = disk_before
        .zip(quorum_disk())
        .map(|(before, after)| after - before);
    broker.shutdown(Duration::from_secs(5)).await;
    let archive = archive_half(&config, &ledger).await?;
    Ok(CapacityReport {
        messages,
        message_bytes: size,
        tables,
        database_bytes,
        wal_bytes,
        queued: in_queue.max(0) as usize,
        queue_disk_bytes,
        queue_memory_bytes,
        seconds,
        archive,
    })
}

/// Archives the first half of the ledger into a temporary directory, then verifies the
/// whole ledger from the database and that archive.
async fn archive_half(
    config: &liaison_server::Config,
    ledger: &Ledger,
) -> anyhow::Result<ArchiveFigures> {
    let signer = liaison_server::workers::checkpointing::signer(config)
        .map_err(|e| anyhow::anyhow!("the ledger signing key: {e}"))?;
    let key = signer.verifier();
    let hot = |tables: &[TableUse]| -> i64 {
        tables
            .iter()
            .filter(|t| t.table == "ledger_entries" || t.table == "messages")
            .map(|t| t.bytes)
            .sum()
    };
    let before = hot(&ledger.table_use().await?);
    let dir = tempfile::tempdir()?;
    let out = dir.path().join("archive");
    let half = ledger.size().await? / 2;
    eprintln!("capacity: archiving the entries before {half}…");
    let started = Instant::now();
    let archived = ledger
        .archive(
            liaison_ledger::ArchiveCutoff::Seq(half),
            &out,
            &signer,
            &mut |_| {},
        )
        .await?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes_freed = before - hot(&ledger.table_use().await?);
    let archive_bytes = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    let archives = [liaison_ledger::ExportDir::open(&out)?];
    let started = Instant::now();
    let report = ledger.verify(&key, None, &archives, &mut |_| {}).await?;
    let verify_seconds = started.elapsed().as_secs_f64();
    if !report.is_ok() {
        bail!(
            "the ledger does not verify after the archive: {:?}",
            report.findings.first()
        );
    }
    Ok(ArchiveFigures {
        entries: archived.record.last_seq - archived.record.first_seq + 1,
        messages: archived.record.messages,
        seconds,
        bytes_freed,
        archive_bytes,
        verify_entries: report.entries,
        verify_seconds,
    })
}
