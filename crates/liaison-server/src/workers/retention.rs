//! The retention worker: every `retention.scan_interval` it counts the cases past the
//! retention periods of `[retention]` (metric `liaison_erasure_proposals`) and logs them.
//! It proposes; it never erases. An administrator erases a case, giving the legal basis
//! (`POST /v1/cases/{caseref}/erasure`, `liaison erase`), and the ledger records who did.

use std::sync::Arc;

use liaison_core::Clock;
use liaison_ledger::Ledger;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionConfig;
use crate::telemetry;

/// Most proposals listed at once (by the worker, the route and the command).
pub const PROPOSALS_LIMIT: i64 = 10_000;

pub struct RetentionWorker {
    pub ledger: Ledger,
    pub clock: Arc<dyn Clock>,
    pub config: RetentionConfig,
}

impl RetentionWorker {
    pub async fn run(self, cancel: CancellationToken) {
        // Present from the start, 0 until a scan finds a case (and with no periods set).
        metrics::gauge!(telemetry::ERASURE_PROPOSALS).set(0.0);
        let periods = self.config.periods_seconds();
        if periods.is_empty() || self.config.scan_interval.is_zero() {
            return;
        }
        let mut tick = tokio::time::interval(self.config.scan_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {}
            }
            match self
                .ledger
                .erasure_proposals(&periods, self.clock.now(), PROPOSALS_LIMIT)
                .await
            {
                Ok(due) => {
                    metrics::gauge!(telemetry::ERASURE_PROPOSALS).set(due.len() as f64);
                    if !due.is_empty() {
                        tracing::info!(
                            cases = due.len(),
                            first = %due[0].caseref,
                            "cases past their retention periods are proposed for erasure (GET /v1/erasure-proposals); none is erased without an administrator"
                        );
                    }
                }
                Err(error) => tracing::warn!(%error, "could not list the cases due for erasure"),
            }
        }
    }
}
