//! Where an accepted request's time goes inside the broker: the means of its own
//! histograms — the checks before the ledger, the wait for the group committer, each step
//! of a commit — over one measured run, read from the process's Prometheus recorder before
//! and after it (the broker runs in the bench's process).

use std::collections::HashMap;

use liaison_server::telemetry;
use serde::{Deserialize, Serialize};

/// The `_sum` and `_count` series of every histogram at one instant, by series name with
/// its labels as rendered (`liaison_ledger_commit_phase_seconds_sum{phase="begin"}`).
pub struct Totals(HashMap<String, f64>);

impl Totals {
    pub fn take() -> Self {
        Self::parse(&telemetry::prometheus().render())
    }

    fn parse(text: &str) -> Self {
        Self(
            text.lines()
                .filter(|line| !line.starts_with('#'))
                .filter_map(|line| {
                    let (series, value) = line.rsplit_once(' ')?;
                    let name = series.split('{').next()?;
                    if !(name.ends_with("_sum") || name.ends_with("_count")) {
                        return None;
                    }
                    Some((series.to_owned(), value.parse().ok()?))
                })
                .collect(),
        )
    }

    fn get(&self, series: &str) -> f64 {
        self.0.get(series).copied().unwrap_or(0.0)
    }
}

/// The broker's means over one run, in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stages {
    /// Submissions accepted over HTTPS in the run.
    pub accepted: u64,
    /// From receipt of the request's body to its durable answer.
    pub accept_ms: f64,
    /// The checks before the ledger: parsing, schemas, authorization, routing.
    pub admission_ms: f64,
    /// An acceptance's wait for the committer to take it into a batch.
    pub queue_wait_ms: f64,
    /// Group commits per accepted submission (the relay records its outcomes in batches
    /// too).
    pub commits_per_accepted: f64,
    /// A commit's mean duration, and its steps in order (`seal`, `begin`, `read`, `plan`,
    /// `write`, `commit`).
    pub commit_ms: f64,
    pub commit_phases_ms: Vec<(String, f64)>,
}

/// A histogram's mean over the run, in milliseconds, and how many it recorded.
fn mean_ms(before: &Totals, after: &Totals, name: &str, labels: &str) -> (f64, f64) {
    let delta = |suffix: &str| {
        let series = format!("{name}_{suffix}{labels}");
        after.get(&series) - before.get(&series)
    };
    let count = delta("count");
    let mean = if count > 0.0 {
        delta("sum") / count * 1000.0
    } else {
        0.0
    };
    (mean, count)
}

impl Stages {
    pub fn between(before: &Totals, after: &Totals) -> Self {
        let https = r#"{channel="https"}"#;
        let (accept_ms, accepted) = mean_ms(before, after, telemetry::ACCEPT_DURATION, https);
        let (admission_ms, _) = mean_ms(before, after, telemetry::ADMISSION_DURATION, https);
        let (queue_wait_ms, _) = mean_ms(
            before,
            after,
            telemetry::LEDGER_QUEUE_WAIT,
            r#"{request="accept"}"#,
        );
        let (commit_ms, commits) = mean_ms(before, after, telemetry::LEDGER_COMMIT_DURATION, "");
        let commit_phases_ms = liaison_ledger::telemetry::Phase::ALL
            .iter()
            .map(|phase| {
                let labels = format!(r#"{{phase="{}"}}"#, phase.as_str());
                let (mean, _) = mean_ms(
                    before,
                    after,
                    telemetry::LEDGER_COMMIT_PHASE_DURATION,
                    &labels,
                );
                (phase.as_str().to_owned(), mean)
            })
            .collect();
        Self {
            accepted: accepted as u64,
            accept_ms,
            admission_ms,
            queue_wait_ms,
            commits_per_accepted: if accepted > 0.0 {
                commits / accepted
            } else {
                0.0
            },
            commit_ms,
            commit_phases_ms,
        }
    }

    /// The report's line: the agency's mean split into what happened outside the broker's
    /// handler and each stage inside it.
    pub fn line(&self, client_mean_ms: f64) -> String {
        let phases: Vec<String> = self
            .commit_phases_ms
            .iter()
            .map(|(phase, ms)| format!("{phase} {ms:.2}"))
            .collect();
        format!(
            "means, ms: agency saw {client_mean_ms:.2} = outside the handler (client, TLS, HTTP/2, body) {:.2} + admission {:.2} + committer queue {:.2} + its batch and answer {:.2}; a commit {:.2} ({}), {:.2} commits per accepted lead",
            client_mean_ms - self.accept_ms,
            self.admission_ms,
            self.queue_wait_ms,
            self.accept_ms - self.admission_ms - self.queue_wait_ms,
            self.commit_ms,
            phases.join(", "),
            self.commits_per_accepted,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn means_are_taken_over_the_run_from_sums_and_counts() {
        let before = Totals::parse(
            "# TYPE liaison_accept_duration_seconds histogram\n\
             liaison_accept_duration_seconds_bucket{channel=\"https\",le=\"0.001\"} 3\n\
             liaison_accept_duration_seconds_sum{channel=\"https\"} 1\n\
             liaison_accept_duration_seconds_count{channel=\"https\"} 100\n\
             liaison_ledger_commit_duration_seconds_sum 0.5\n\
             liaison_ledger_commit_duration_seconds_count 200\n",
        );
        let after = Totals::parse(
            "liaison_accept_duration_seconds_sum{channel=\"https\"} 1.6\n\
             liaison_accept_duration_seconds_count{channel=\"https\"} 400\n\
             liaison_admission_duration_seconds_sum{channel=\"https\"} 0.06\n\
             liaison_admission_duration_seconds_count{channel=\"https\"} 300\n\
             liaison_ledger_queue_wait_seconds_sum{request=\"accept\"} 0.15\n\
             liaison_ledger_queue_wait_seconds_count{request=\"accept\"} 300\n\
             liaison_ledger_commit_duration_seconds_sum 1.1\n\
             liaison_ledger_commit_duration_seconds_count 800\n\
             liaison_ledger_commit_phase_seconds_sum{phase=\"commit\"} 0.3\n\
             liaison_ledger_commit_phase_seconds_count{phase=\"commit\"} 600\n",
        );
        let stages = Stages::between(&before, &after);
        assert_eq!(stages.accepted, 300);
        assert!((stages.accept_ms - 2.0).abs() < 1e-9, "{stages:?}");
        assert!((stages.admission_ms - 0.2).abs() < 1e-9, "{stages:?}");
        assert!((stages.queue_wait_ms - 0.5).abs() < 1e-9, "{stages:?}");
        assert!((stages.commit_ms - 1.0).abs() < 1e-9, "{stages:?}");
        assert!(
            (stages.commits_per_accepted - 2.0).abs() < 1e-9,
            "{stages:?}"
        );
        assert_eq!(stages.commit_phases_ms.len(), 6);
        assert_eq!(stages.commit_phases_ms[0], ("seal".to_owned(), 0.0));
        let commit = &stages.commit_phases_ms[5];
        assert_eq!(commit.0, "commit");
        assert!((commit.1 - 0.5).abs() < 1e-9, "{stages:?}");
        let line = stages.line(3.0);
        assert!(
            line.starts_with("means, ms: agency saw 3.00 = outside the handler (client, TLS, HTTP/2, body) 1.00 + admission 0.20 + committer queue 0.50 + its batch and answer 1.30; a commit 1.00 (seal 0.00,"),
            "{line}"
        );
        assert!(
            line.ends_with("commit 0.50), 2.00 commits per accepted lead"),
            "{line}"
        );
    }
}
