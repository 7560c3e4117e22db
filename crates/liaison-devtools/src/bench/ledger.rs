//! Ledger appends alone: many concurrent accepts through the group committer.

use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use bytes::Bytes;
use futures::StreamExt;
use liaison_core::{AgencyCode, Channel, Envelope, Recipient, RecipientRole, Route, SystemClock};
use liaison_ledger::{AcceptOutcome, Ledger, LedgerConfig, NewMessage};
use serde::Serialize;
use time::OffsetDateTime;

use super::cpu::{CpuUse, Snapshot};
use super::full::Leads;
use super::setup::BenchWorld;

#[derive(Clone, Debug, Serialize)]
pub struct LedgerResult {
    pub appends: usize,
    pub concurrency: usize,
    pub seconds: f64,
    pub throughput: f64,
    pub transactions: u64,
    /// CPU of each process while appending: this process is the committer and its callers.
    pub cpu: CpuUse,
}

/// Runs in a database of its own, so that its outbox rows never reach the full-path phase.
pub async fn run(
    world: &BenchWorld,
    leads: Leads,
    appends: usize,
    concurrency: usize,
) -> anyhow::Result<LedgerResult> {
    let url = format!("{}_ledger", world.config.database_url);
    liaison_ledger::ensure_database(&url).await?;
    let result = measure(&url, leads, appends, concurrency).await;
    let _ = liaison_ledger::drop_database(&url).await;
    result
}

async fn measure(
    url: &str,
    leads: Leads,
    appends: usize,
    concurrency: usize,
) -> anyhow::Result<LedgerResult> {
    let ledger = Ledger::open(LedgerConfig::new(url.to_owned()), Arc::new(SystemClock)).await?;
    let eco = AgencyCode::new("eco")?;
    let route = Route {
        recipients: vec![Recipient {
            agency: AgencyCode::new("procuratorate")?,
            role: RecipientRole::To,
            rule: "bench".into(),
        }],
    };
    let messages: Vec<NewMessage> = (0..appends)
        .map(|i| {
            let (_, bytes) = leads.make(&eco, &format!("SD-BENCH-L{i}"));
            let value: serde_json::Value = serde_json::from_slice(&bytes)?;
            Ok(NewMessage {
                envelope: Envelope::from_value(&value)?,
                sender: eco.clone(),
                channel: Channel::Https,
                bytes: Bytes::from(bytes),
                received_at: OffsetDateTime::now_utc(),
                case: Default::default(),
                route: route.clone(),
                trace_context: None,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let before = ledger.batches_committed();
    let cpu_before = Snapshot::take(None);
    let started = Instant::now();
    let outcomes: Vec<_> = futures::stream::iter(messages)
        .map(|m| {
            let ledger = ledger.clone();
            async move { ledger.accept(m).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let seconds = started.elapsed().as_secs_f64();
    let cpu = CpuUse::between(&cpu_before, &Snapshot::take(None), appends);
    for outcome in outcomes {
        if !matches!(outcome?, AcceptOutcome::Recorded(_)) {
            bail!("ledger bench: an append was not recorded");
        }
    }
    Ok(LedgerResult {
        appends,
        concurrency,
        seconds,
        throughput: appends as f64 / seconds,
        transactions: ledger.batches_committed() - before,
        cpu,
    })
}
