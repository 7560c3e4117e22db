//! The `liaison` command line, as a library so that the end-to-end tests drive the same
//! client, demo scenario and service checks that users run.

pub mod amqp_defs;
pub mod bench;
pub mod calendar_cmd;
pub mod cases_cmd;
pub mod client;
pub mod deadletters;
pub mod demo;
pub mod ledger_cmd;
pub mod policy_cmd;
pub mod report_cmd;
pub mod services;
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
