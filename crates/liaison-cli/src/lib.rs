//! The `liaison` command line, as a library so that the end-to-end tests drive the same
//! client, demo scenario and service checks that users run.

pub mod amqp_defs;
pub mod bench;
pub mod client;
pub mod deadletters;
pub mod demo;
pub mod ledger_cmd;
pub mod policy_cmd;
pub mod services;
pub mod trace;
