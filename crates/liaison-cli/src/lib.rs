//! The `liaison` command line, as a library so that the end-to-end tests drive the same
//! commands users run. The agency client is `liaison-client`; the demo, the benchmark and
//! the service checks are `liaison-devtools`.

pub mod amqp_defs;
pub mod calendar_cmd;
pub mod cases_cmd;
pub mod deadletters;
pub mod erasure_cmd;
pub mod ledger_cmd;
pub mod policy_cmd;
pub mod report_cmd;
pub mod trace;
pub mod witness_cmd;

/// Opens the ledger a configuration names (running its migrations), for the commands that
/// read or write it directly.
pub async fn open_ledger(
    config: &liaison_server::Config,
) -> anyhow::Result<liaison_ledger::Ledger> {
    let ledger = liaison_ledger::Ledger::open(
        config.ledger_config(),
        std::sync::Arc::new(liaison_core::SystemClock),
    )
    .await?;
    Ok(ledger)
}
