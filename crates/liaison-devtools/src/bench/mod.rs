//! `liaison bench`: the broker's throughput and latency against the raw RabbitMQ floor,
//! measured in one run on one machine.
//!
//! 1. **raw floor** — lapin alone: persistent messages of the same size, publisher confirms
//!    with a window in flight, into a quorum queue, consumed and acked;
//! 2. **ledger** — group-committed appends alone, many concurrent callers;
//! 3. **full path** — concurrent HTTPS clients with client certificates and keep-alive post
//!    realistic leads; each is validated, committed, relayed with confirms and consumed from
//!    the procuratorate's queue;
//! 4. **latency** — the full path again at half the rate step 3 reached.
//!
//! Everything runs in a private RabbitMQ virtual host and a private database, removed at the
//! end, so a running demo or broker is not disturbed.

mod capacity;
mod full;
mod ledger;
mod raw;
mod report;
mod setup;

use std::time::Duration;

use anyhow::Context;
pub use capacity::{CapacityReport, run as capacity};
pub use full::Http;
pub use report::Report;

/// How much work each phase does.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    pub raw_messages: usize,
    pub raw_window: usize,
    pub ledger_appends: usize,
    pub ledger_concurrency: usize,
    pub full_messages: usize,
    pub full_concurrency: usize,
    pub latency_duration: Duration,
    /// Leads posted one after another, for the latency of a lone request.
    pub alone_messages: usize,
    /// Size to pad each lead to, in bytes; 0 keeps the natural size (about 950 bytes).
    pub message_bytes: usize,
    /// Synthetic agencies added to the registry (each gets its quorum queue and certificate).
    pub extra_agencies: usize,
    /// How the agencies' clients connect.
    pub http: full::Http,
}

impl Default for BenchOptions {
    fn default() -> Self {
        Self {
            raw_messages: 20_000,
            raw_window: 1_000,
            ledger_appends: 20_000,
            ledger_concurrency: 1_000,
            full_messages: 10_000,
            full_concurrency: 256,
            latency_duration: Duration::from_secs(8),
            alone_messages: 500,
            message_bytes: 0,
            extra_agencies: 0,
            http: full::Http::Http2,
        }
    }
}

pub async fn run(options: &BenchOptions, base: &liaison_server::Config) -> anyhow::Result<Report> {
    crate::services::ensure_all()?;
    let world = setup::BenchWorld::create(base, options.extra_agencies)
        .await
        .context("preparing the benchmark's vhost, database and PKI")?;
    let result = phases(options, &world).await;
    world.remove().await;
    result
}

async fn phases(options: &BenchOptions, world: &setup::BenchWorld) -> anyhow::Result<Report> {
    let leads = full::Leads {
        pad_to: options.message_bytes,
    };
    let body = leads.size()?;
    eprintln!(
        "raw floor: {} persistent {}-byte messages, {} confirms in flight…",
        options.raw_messages, body, options.raw_window
    );
    let raw = raw::run(
        &world.config.amqp_url,
        options.raw_messages,
        options.raw_window,
        body,
    )
    .await?;
    eprintln!(
        "ledger: {} appends from {} concurrent callers…",
        options.ledger_appends, options.ledger_concurrency
    );
    let ledger = ledger::run(
        world,
        leads,
        options.ledger_appends,
        options.ledger_concurrency,
    )
    .await?;
    eprintln!(
        "full path: {} leads over HTTPS, {} in flight…",
        options.full_messages, options.full_concurrency
    );
    let broker = liaison_server::Broker::start(world.config.clone())
        .await
        .context("starting the broker")?;
    let agencies = LoadGenerator::new()?;
    let saturation = agencies.run(full::saturate(
        world,
        &broker,
        leads,
        options.http,
        options.full_messages,
        options.full_concurrency,
    ));
    let latency = match &saturation {
        Ok(s) => {
            let rate = (s.throughput / 2.0).max(1.0);
            eprintln!(
                "latency: {:.0} leads/s offered for {:?}…",
                rate, options.latency_duration
            );
            Some(agencies.run(full::fixed_rate(
                world,
                &broker,
                leads,
                options.http,
                options.full_concurrency,
                rate,
                options.latency_duration,
            )))
        }
        Err(_) => None,
    };
    // A lone request: it should wait for one commit, not for a batch to fill.
    let one_in_flight = match &saturation {
        Ok(_) => {
            eprintln!(
                "one in flight: {} leads, one after another…",
                options.alone_messages
            );
            Some(agencies.run(full::saturate(
                world,
                &broker,
                leads,
                options.http,
                options.alone_messages,
                1,
            )))
        }
        Err(_) => None,
    };
    broker.shutdown(Duration::from_secs(5)).await;
    let saturation = saturation?;
    let latency = latency.transpose()?;
    let one_in_flight = one_in_flight.transpose()?;
    Ok(Report::new(world, raw, ledger, saturation, latency, one_in_flight, body).await)
}

/// The agencies' side of the full path — HTTPS clients and the consuming agency — on a
/// runtime of its own, as separate programs would be: the broker's tasks are not queued
/// behind the load generator's, and the operating system shares the cores between them.
struct LoadGenerator {
    runtime: Option<tokio::runtime::Runtime>,
}

impl LoadGenerator {
    fn new() -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("bench-agencies")
            .enable_all()
            .build()
            .context("starting the load generator's runtime")?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` to completion on the load generator's runtime; the caller's worker
    /// thread is handed over to the broker's other tasks meanwhile.
    fn run<T>(&self, work: impl std::future::Future<Output = T>) -> T {
        let runtime = self.runtime.as_ref().expect("taken only on drop");
        tokio::task::block_in_place(|| runtime.block_on(work))
    }
}

impl Drop for LoadGenerator {
    fn drop(&mut self) {
        // Dropped inside the broker's runtime, where waiting for threads is not allowed;
        // whatever it still runs (idle connections) is only ever dropped.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
