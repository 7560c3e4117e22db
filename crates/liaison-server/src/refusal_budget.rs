//! The refusal budget: how many refusals of one sender are recorded one by one per
//! interval before the rest are counted instead.
//!
//! Every refusal is answered, and every refusal is in the ledger: within the budget as its
//! own `message.rejected` entry, beyond it in the one `message.rejections_summarized` entry
//! that closes the sender's interval (counts by code, the first and last submission's
//! digest and time). So a sender that floods malformed requests adds at most `budget + 1`
//! entries per interval to the ledger, whatever its rate. The windows are per broker
//! instance; an instance that stops writes what it has summarized so far
//! ([`RefusalBudget::drain`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use liaison_core::detail::RejectionSummary;
use liaison_core::{AgencyCode, RejectCode};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What to do with one refusal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Within the budget: record it as its own entry.
    Record,
    /// Beyond it: counted in the interval's summary.
    Summarize,
}

/// A summary ready to be recorded: its sender (`None`: no identity) and its detail.
pub type Closed = (Option<AgencyCode>, RejectionSummary);

pub struct RefusalBudget {
    budget: u64,
    interval: Duration,
    windows: Mutex<HashMap<Option<AgencyCode>, Window>>,
}

struct Window {
    started: OffsetDateTime,
    recorded: u64,
    summary: Option<RejectionSummary>,
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_default()
}

impl RefusalBudget {
    pub fn new(budget: u64, interval: Duration) -> Self {
        Self {
            budget,
            interval,
            windows: Mutex::new(HashMap::new()),
        }
    }

    /// Notes one refusal of `sender` at `now`: whether to record it, and the summary of the
    /// sender's previous interval when `now` closed it.
    pub fn note(
        &self,
        sender: Option<&AgencyCode>,
        now: OffsetDateTime,
        code: RejectCode,
        sha256: &str,
    ) -> (Verdict, Option<Closed>) {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let window = windows.entry(sender.cloned()).or_insert_with(|| Window {
            started: now,
            recorded: 0,
            summary: None,
        });
        let mut closed = None;
        if now >= window.started + self.interval {
            closed = window.summary.take().map(|s| (sender.cloned(), s));
            window.started = now;
            window.recorded = 0;
        }
        if window.recorded < self.budget {
            window.recorded += 1;
            return (Verdict::Record, closed);
        }
        let summary = window.summary.get_or_insert_with(|| RejectionSummary {
            interval_start: rfc3339(window.started),
            first_at: rfc3339(now),
            first_sha256: sha256.to_owned(),
            budget: self.budget,
            interval_seconds: self.interval.as_secs(),
            ..RejectionSummary::default()
        });
        *summary.codes.entry(code.as_str().to_owned()).or_default() += 1;
        summary.total += 1;
        summary.last_at = rfc3339(now);
        summary.last_sha256 = sha256.to_owned();
        (Verdict::Summarize, closed)
    }

    /// The summaries of the intervals that ended by `now`; senders without refusals for a
    /// whole interval are forgotten.
    pub fn close_due(&self, now: OffsetDateTime) -> Vec<Closed> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let mut closed = Vec::new();
        windows.retain(|sender, window| {
            if now < window.started + self.interval {
                return true;
            }
            if let Some(summary) = window.summary.take() {
                closed.push((sender.clone(), summary));
            }
            false
        });
        closed
    }

    /// Every summary so far, whether or not its interval ended (at shutdown).
    pub fn drain(&self) -> Vec<Closed> {
        let mut windows = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        windows
            .drain()
            .filter_map(|(sender, window)| window.summary.map(|s| (sender, s)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    const T0: OffsetDateTime = datetime!(2026-12-01 08:00:00 UTC);

    fn eco() -> AgencyCode {
        AgencyCode::new("eco").unwrap()
    }

    #[test]
    fn refusals_within_the_budget_are_recorded_the_rest_summarized_by_code() {
        let budget = RefusalBudget::new(3, Duration::from_secs(60));
        let mut verdicts = Vec::new();
        for i in 0..10 {
            let code = if i % 2 == 0 {
                RejectCode::MalformedJson
            } else {
                RejectCode::PayloadInvalid
            };
            let at = T0 + Duration::from_secs(i);
            let (verdict, closed) = budget.note(Some(&eco()), at, code, &format!("{i:064}"));
            assert!(closed.is_none());
            verdicts.push(verdict);
        }
        assert_eq!(
            verdicts.iter().filter(|v| **v == Verdict::Record).count(),
            3
        );
        assert_eq!(&verdicts[..3], &[Verdict::Record; 3]);
        // Nothing is closed before the interval ends.
        assert!(budget.close_due(T0 + Duration::from_secs(59)).is_empty());
        let closed = budget.close_due(T0 + Duration::from_secs(60));
        assert_eq!(closed.len(), 1);
        let (sender, summary) = &closed[0];
        assert_eq!(sender.as_ref(), Some(&eco()));
        assert_eq!(summary.total, 7);
        assert_eq!(summary.codes["malformed_json"], 3); // 4, 6, 8
        assert_eq!(summary.codes["payload_invalid"], 4); // 3, 5, 7, 9
        assert_eq!(summary.first_sha256, format!("{:064}", 3));
        assert_eq!(summary.last_sha256, format!("{:064}", 9));
        assert_eq!(summary.interval_start, "2026-12-01T08:00:00Z");
        assert_eq!(summary.first_at, "2026-12-01T08:00:03Z");
        assert_eq!(summary.last_at, "2026-12-01T08:00:09Z");
        assert_eq!((summary.budget, summary.interval_seconds), (3, 60));
        // The window is gone: the next refusal starts a fresh budget.
        let (verdict, closed) = budget.note(
            Some(&eco()),
            T0 + Duration::from_secs(61),
            RejectCode::MalformedJson,
            "x",
        );
        assert_eq!((verdict, closed), (Verdict::Record, None));
    }

    #[test]
    fn a_refusal_after_the_interval_closes_the_previous_summary() {
        let budget = RefusalBudget::new(1, Duration::from_secs(10));
        budget.note(None, T0, RejectCode::Unauthenticated, "a");
        budget.note(None, T0, RejectCode::Unauthenticated, "b");
        let (verdict, closed) = budget.note(
            None,
            T0 + Duration::from_secs(10),
            RejectCode::Unauthenticated,
            "c",
        );
        assert_eq!(verdict, Verdict::Record);
        let (sender, summary) = closed.expect("the previous interval's summary");
        assert_eq!((sender, summary.total), (None, 1));
        assert!(
            budget.drain().is_empty(),
            "the new interval summarized nothing yet"
        );
    }

    #[test]
    fn senders_have_budgets_of_their_own_and_drain_returns_open_summaries() {
        let budget = RefusalBudget::new(1, Duration::from_secs(60));
        let police = AgencyCode::new("police").unwrap();
        for sender in [&eco(), &police, &eco()] {
            budget.note(Some(sender), T0, RejectCode::MalformedJson, "d");
        }
        let drained = budget.drain();
        assert_eq!(drained.len(), 1, "only eco went over its budget");
        assert_eq!(drained[0].0.as_ref(), Some(&eco()));
    }
}
