#![doc = include_str!("../README.md")]

mod admin;
mod committer;
mod config;
mod error;
mod ledger;
mod model;
mod outbox;
mod read;
mod sql;

pub use admin::{drop_database, ensure_database};
pub use config::LedgerConfig;
pub use error::LedgerError;
pub use ledger::Ledger;
pub use model::{
    AcceptOutcome, AcceptReceipt, DeliveryOutcome, DeliveryState, NewMessage, NewRejection,
    PendingDelivery, RejectionDetail, StoredEntry, StoredMessage, TraceKey,
};
