#![doc = include_str!("../README.md")]

pub mod audit_routes;
pub mod broker;
pub mod calendars;
pub mod case_routes;
pub mod checkpointing;
pub mod clock_watcher;
pub mod config;
pub mod connections;
pub mod crl;
pub mod dead_letters;
pub mod defaults;
pub mod directory;
pub mod extract;
pub mod gateway;
pub mod guard;
pub mod inbox;
pub mod intake;
pub mod openapi;
pub mod ops;
pub mod pipeline;
pub mod pki;
pub mod problem;
pub mod relay;
pub mod reopen;
pub mod report_routes;
pub mod revocation;
pub mod routes;
pub mod tls;

pub use broker::{Broker, StartError, run};
pub use config::Config;
