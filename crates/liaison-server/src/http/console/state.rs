//! What the console keeps between pages. Apart from the pages themselves so that the
//! gateway, which holds it, needs nothing else of the console.

use std::sync::Arc;

use time::OffsetDateTime;

/// The overview's two aggregates over a whole period (messages per day, cases per
/// agency): their cost grows with the ledger, so a large ledger's are computed at most
/// every `AGGREGATES_MAX_AGE` and in the background, and pages show them with their
/// time. A small ledger's (computed within `AGGREGATES_INLINE`) are computed for each
/// page.
#[derive(Default)]
pub struct ConsoleState {
    pub(super) aggregates: tokio::sync::RwLock<Option<Arc<Aggregates>>>,
    pub(super) refreshing: std::sync::atomic::AtomicBool,
}

pub(crate) struct Aggregates {
    pub at: OffsetDateTime,
    pub took: std::time::Duration,
    pub per_day: Vec<liaison_ledger::DailyCount>,
    pub cases: Vec<liaison_ledger::AgencyCases>,
}
