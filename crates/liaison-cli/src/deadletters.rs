//! `liaison deadletters list` and `liaison deadletters redrive`: what is in `liaison.dead`,
//! and sending it again.
//!
//! Both are `liaison_server::workers::redrive`, which the console uses too.
//!
//! Listing takes the messages without acknowledging them and hands them back (closing the
//! channel requeues them), so it never removes anything. Its recipients, reasons and
//! delivery ids are what the messages say; only a redrive checks them against the ledger.
//!
//! Redriving first matches each dead letter to the delivery the ledger recorded
//! (`liaison_server::workers::dead_letters::identify`: the outbox row its `liaison-delivery` header
//! names, dead-lettered from that row's recipient's queue, with that row's message id and
//! the ledger's digest of its bytes). It then publishes **the ledger's bytes** with
//! headers the broker builds, as the relay does, to the recipient the outbox recorded —
//! never the dead letter's own body or headers — with a publisher confirm, records
//! `delivery.redriven`, and only then removes it from `liaison.dead`: a crash in between
//! leaves a copy in both, never in neither, and consumers drop the duplicate by message
//! id. A dead letter that matches no delivery is not redriven: it is reported with the
//! reason and left in `liaison.dead` for an operator to inspect (and purge).

use clap::Subcommand;
use liaison_bus::Bus;
use liaison_ledger::Ledger;
pub use liaison_server::workers::redrive::{Listed, Redriven};
use uuid::Uuid;

#[derive(Subcommand)]
pub enum DeadLettersCommand {
    /// List the dead letters (without removing them).
    List {
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        max: u16,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Send dead letters again to their recipients' queues.
    Redrive {
        /// Only the dead letters of this message id.
        #[arg(long, value_name = "UUID", conflicts_with = "all")]
        id: Option<Uuid>,
        /// Every dead letter that matches a delivery in the ledger.
        #[arg(long)]
        all: bool,
    },
}

/// The dead letters now in `liaison.dead`, up to `max`; all stay in the queue.
pub async fn list(bus: &Bus, max: u16) -> anyhow::Result<Vec<Listed>> {
    Ok(liaison_server::workers::redrive::list(bus, max).await?)
}

/// Redrives the dead letters of `id` (or all with `None`), reporting on standard error each
/// one that matches no delivery.
pub async fn redrive(bus: &Bus, ledger: &Ledger, id: Option<Uuid>) -> anyhow::Result<Redriven> {
    let report = liaison_server::workers::redrive::redrive(bus, ledger, id, None).await?;
    for (message, why) in &report.unmatched {
        eprintln!("✗ {message:?} not redriven: {why}");
    }
    Ok(report)
}

pub fn render(listed: &[Listed]) -> String {
    if listed.is_empty() {
        return "liaison.dead is empty\n".to_owned();
    }
    let mut out = String::new();
    for d in listed {
        out.push_str(&format!(
            "{}  {}  → {}  ({}, by {}{})\n",
            d.message_id
                .map(|i| i.to_string())
                .unwrap_or_else(|| "-".into()),
            d.type_.as_deref().unwrap_or("-"),
            d.recipient.as_deref().unwrap_or("-"),
            d.reason,
            d.dead_lettered_by,
            d.queue
                .as_deref()
                .map(|q| format!(" in {q}"))
                .unwrap_or_default(),
        ));
    }
    out
}
