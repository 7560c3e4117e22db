//! End-to-end tests: the real broker, over real mutual TLS, against the local RabbitMQ and
//! PostgreSQL. Each test builds its own isolated [`liaison_tests::World`].

mod answers;
mod archive;
mod audit;
mod auth;
mod bench;
mod cases;
mod catalogue;
mod clocks;
mod config;
mod console;
mod crash;
mod deadletter;
mod erasure;
mod forged_dead_letters;
mod gateway_limits;
mod hostile;
mod intake;
mod intake_limits;
mod integration;
mod leaks;
mod ledger_role;
mod path;
mod policy;
mod refusals;
mod revocation;
mod supervision;
mod telemetry;
mod trace;
mod witness;
mod world;
