//! `liaison bench`: the broker's throughput and latency against the raw RabbitMQ floor,
//! measured in one run on one machine.
//!
//! 1. **raw floor** — lapin alone: persistent messages of the same size, publisher confirms
//!    with a window in flight, into a quorum queue, consumed and acked;
//! 2. **ledger** — group-committed appends alone, many concurrent callers;
//! 3. **full path** — concurrent HTTPS clients with client certificates and keep-alive post
//!    realistic leads; each is validated, committed, relayed with confirms and consumed from
//!    the procuratorate's queue;
//! 4. **gateway alone** — the same leads to the route preview (the same checks, nothing
//!    recorded or delivered); with the floor's and the ledger's CPU per message, the
//!    ratio's ceiling on this machine;
//! 5. **latency** — the full path again at half the rate step 3 reached, and with one
//!    request in flight;
//! 6. **connections** — 64 requests in flight over one HTTP/2 connection, then over eight.
//!
//! The broker runs in this process; the agencies' clients and the consuming agency run in a
//! separate one, the load generator ([`load`]). For each phase the CPU time of this process,
//! the load generator, RabbitMQ and the PostgreSQL server is read from `/proc` ([`cpu`]).
//!
//! Everything runs in a private RabbitMQ virtual host and a private database, removed at the
//! end, so a running demo or broker is not disturbed.

mod capacity;
mod cpu;
mod full;
mod ledger;
mod load;
mod raw;
mod report;
mod setup;
mod stages;

use std::time::Duration;

use anyhow::Context;
pub use capacity::{CapacityReport, run as capacity};
pub use full::Http;
pub use load::serve as serve_load;
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
    /// Clients (HTTP/2 connections) the agencies post over, dealt to eight agencies in turn.
    pub connections: usize,
    /// Leads posted in each run of the connections comparison.
    pub compare_messages: usize,
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
            connections: 8,
            compare_messages: 3_000,
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

/// Requests in flight in the connections comparison.
const COMPARE_CONCURRENCY: usize = 64;
/// The connections it compares, in the order run: one, eight, eight, one, so that a host
/// that speeds up or slows down during the comparison weighs on both sides alike.
pub(crate) const COMPARE_CONNECTIONS: [usize; 4] = [1, 8, 8, 1];

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
    let broker = liaison_server::Broker::start(world.config.clone())
        .await
        .context("starting the broker")?;
    let runs = full_path(options, world, &broker, leads).await;
    broker.shutdown(Duration::from_secs(5)).await;
    let runs = runs?;
    Ok(Report::new(world, raw, ledger, runs, body).await)
}

/// The full-path runs, each by a load generator of its own.
async fn full_path(
    options: &BenchOptions,
    world: &setup::BenchWorld,
    broker: &liaison_server::Broker,
    leads: full::Leads,
) -> anyhow::Result<report::FullPathRuns> {
    let run = |connections: usize, concurrency: usize, pace: full::Pace, prefix: &str| full::Run {
        target: full::Target::of(world, broker),
        endpoint: full::Endpoint::Submit,
        leads,
        http: options.http,
        connections,
        concurrency,
        pace,
        caseref_prefix: prefix.to_owned(),
    };
    eprintln!(
        "full path: {} leads over HTTPS, {} in flight, {} connections…",
        options.full_messages, options.full_concurrency, options.connections
    );
    let saturated = load::run(&run(
        options.connections,
        options.full_concurrency,
        full::Pace::Saturate {
            messages: options.full_messages,
        },
        &format!("SD-BENCH-C{}-", options.full_concurrency),
    ))
    .await?;
    // The same leads to the route preview: TLS, HTTP/2 and admission on both ends, nothing
    // recorded or delivered — what the gateway alone costs, for the ratio's ceiling.
    eprintln!(
        "gateway alone: {} route previews, {} in flight…",
        options.full_messages, options.full_concurrency
    );
    let gateway = load::run(&full::Run {
        endpoint: full::Endpoint::Preview,
        ..run(
            options.connections,
            options.full_concurrency,
            full::Pace::Saturate {
                messages: options.full_messages,
            },
            "SD-BENCH-G-",
        )
    })
    .await?;
    let rate = (saturated.throughput / 2.0).max(1.0);
    eprintln!(
        "latency: {:.0} leads/s offered for {:?}…",
        rate, options.latency_duration
    );
    let half_rate = load::run(&run(
        options.connections,
        options.full_concurrency,
        full::Pace::FixedRate {
            rate,
            seconds: options.latency_duration.as_secs_f64(),
        },
        "SD-BENCH-R",
    ))
    .await?;
    // A lone request: it should wait for one commit, not for a batch to fill.
    eprintln!(
        "one in flight: {} leads, one after another…",
        options.alone_messages
    );
    let one_in_flight = load::run(&run(
        options.connections,
        1,
        full::Pace::Saturate {
            messages: options.alone_messages,
        },
        "SD-BENCH-C1-",
    ))
    .await?;
    let mut by_connections = Vec::new();
    for connections in COMPARE_CONNECTIONS {
        eprintln!(
            "connections: {} leads, {COMPARE_CONCURRENCY} in flight over {connections} HTTP/2…",
            options.compare_messages
        );
        // Always HTTP/2: with HTTP/1.1 each request in flight has a connection of its own.
        let compared = full::Run {
            http: full::Http::Http2,
            ..run(
                connections,
                COMPARE_CONCURRENCY,
                full::Pace::Saturate {
                    messages: options.compare_messages,
                },
                &format!("SD-BENCH-N{connections}-"),
            )
        };
        by_connections.push(load::run(&compared).await?);
    }
    Ok(report::FullPathRuns {
        saturated,
        gateway,
        half_rate,
        one_in_flight,
        by_connections,
    })
}
