#![doc = include_str!("../README.md")]

mod admin;
mod archive;
mod case_replay;
mod cases;
mod checkpoints;
mod clocks;
mod committer;
mod config;
mod console;
mod error;
mod export;
pub mod keys;
mod ledger;
mod model;
mod outbox;
mod partitions;
mod privileges;
mod proofs;
mod read;
pub mod replay;
pub mod report;
mod retention;
mod sql;
pub mod telemetry;
mod tree;
pub mod verify;
pub mod witnessed;

pub use admin::{drop_database, ensure_database};
pub use archive::{ArchiveCutoff, ArchiveError, ArchiveRecord, Archived};
pub use case_replay::{CaseDifference, CaseReplay, CaseReplayReport};
pub use cases::{
    CaseFilter, CaseHead, CaseMessage, CasePage, CaseParty, CaseSummary, CaseThread, CaseView,
};
pub use checkpoints::{Checkpointer, StoredCheckpoint, StoredCosignature};
pub use clocks::{ClockView, PendingClock};
pub use config::LedgerConfig;
pub use console::{
    AgencyCases, CST_SECONDS, DailyCount, DeadDelivery, MessageHit, MessagePage, MessageSearch,
};
pub use error::LedgerError;
pub use export::{
    EXPORT_FORMAT, ExportDir, ExportError, Exported, Manifest, PUBLIC_KEY_FILE, VKEY_FILE,
    parse_key_file, parse_public_key,
};
pub use keys::{KeyError, Keyring};
pub use ledger::Ledger;
pub use model::{
    AcceptOutcome, AcceptReceipt, CaseIntent, Claimed, DeliveryOutcome, DeliveryState,
    ErasureOutcome, NewErasure, NewMessage, NewRejection, NewRejectionSummary, NewReveal,
    PendingDelivery, RecordedDelivery, RejectionDetail, StoredEntry, StoredMessage, TraceKey,
};
pub use privileges::{APPEND_ONLY_TABLES, RolePrivileges};
pub use proofs::{ConsistencyProof, InclusionProof, MessageProofs};
pub use report::{Report, ReportFormat, ReportPeriod};
pub use retention::ErasureProposal;
