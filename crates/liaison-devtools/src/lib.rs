//! What liaison's developers and evaluators run, kept out of the runtime crates: the demo
//! scenario (`liaison demo`), the benchmark (`liaison bench`), and starting the local
//! PostgreSQL and RabbitMQ (`liaison services ensure`). The `liaison` binary calls them;
//! they use the other crates' public APIs.

pub mod bench;
pub mod demo;
pub mod services;

/// Opens the ledger a configuration names (running its migrations).
pub async fn open_ledger(
    config: &liaison_server::Config,
) -> anyhow::Result<liaison_ledger::Ledger> {
    Ok(liaison_ledger::Ledger::open(
        config.ledger_config(),
        std::sync::Arc::new(liaison_core::SystemClock),
    )
    .await?)
}
