#![doc = include_str!("../README.md")]

//! The layout is the architecture: `http/` is the gateway (routes, authentication and
//! admission control, the OpenAPI document, the operations port), `workers/` are the
//! background tasks (relay, dead letters, AMQP intake, checkpoints, the deadline watcher),
//! `tls/` is mutual TLS with the development PKI and the revocation lists; `pipeline` is
//! the one admission path both intake channels feed, `telemetry` the metrics and trace
//! context, and `broker` starts it all.

pub mod broker;
pub mod calendars;
pub mod config;
pub mod defaults;
pub mod http;
pub mod pipeline;
pub mod refusal_budget;
pub mod telemetry;
pub mod tls;
pub mod workers;

pub use broker::{Broker, StartError, run};
pub use config::Config;
