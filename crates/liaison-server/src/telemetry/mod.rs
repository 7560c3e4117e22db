//! Telemetry: the broker's metrics and trace context.
//!
//! Each thing the broker reports is one typed event ([`events`]) whose `emit` writes its log
//! line and moves its metrics together, so that logs and `/metrics` cannot disagree. The
//! metric names are listed once, in [`METRICS`]; the operations port renders them in the
//! Prometheus text format ([`render`]). [`trace`] continues the W3C trace context of each
//! request or message and hands it on in the AMQP headers of every delivery.

pub mod events;
pub mod subscriber;
pub mod trace;

use std::sync::OnceLock;

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// What a metric is, for its `# TYPE` line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric the broker exports: its name, kind, labels and help text.
#[derive(Clone, Copy, Debug)]
pub struct Metric {
    pub name: &'static str,
    pub kind: Kind,
    pub labels: &'static [&'static str],
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: Kind,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

pub const SUBMISSIONS: &str = "liaison_submissions_total";
pub const ACCEPT_DURATION: &str = "liaison_accept_duration_seconds";
pub const ADMISSION_DURATION: &str = "liaison_admission_duration_seconds";
pub const LEDGER_BATCH_ENTRIES: &str = liaison_ledger::telemetry::BATCH_ENTRIES;
pub const LEDGER_COMMIT_DURATION: &str = liaison_ledger::telemetry::COMMIT_DURATION;
pub const LEDGER_COMMIT_PHASE_DURATION: &str = liaison_ledger::telemetry::COMMIT_PHASE_DURATION;
pub const LEDGER_QUEUE_WAIT: &str = liaison_ledger::telemetry::QUEUE_WAIT;
pub const RELAY_PUBLISH_DURATION: &str = "liaison_relay_publish_duration_seconds";
pub const RELAY_RETRIES: &str = "liaison_relay_retries_total";
pub const REFUSALS_SUMMARIZED: &str = "liaison_refusals_summarized_total";
pub const DEAD_LETTERS: &str = "liaison_dead_letters_total";
pub const OUTBOX_PENDING: &str = "liaison_outbox_pending";
pub const OUTBOX_OLDEST_PENDING_AGE: &str = "liaison_outbox_oldest_pending_age_seconds";
pub const INBOX_LEASES: &str = "liaison_inbox_leases";
pub const CLOCKS_OPEN: &str = "liaison_clocks_open";
pub const CLOCKS_OVERDUE: &str = "liaison_clocks_overdue";
pub const CHECKPOINT_AGE: &str = "liaison_checkpoint_age_seconds";
pub const LEDGER_SIZE: &str = "liaison_ledger_size";
pub const RABBITMQ_UP: &str = "liaison_rabbitmq_up";
pub const POSTGRES_UP: &str = "liaison_postgres_up";
pub const ERASURE_PROPOSALS: &str = "liaison_erasure_proposals";

/// Every metric the broker exports. `docs/operations.md` lists the same table (a test
/// compares them), and the dashboards and alert rules of `deploy/` name only these.
pub const METRICS: &[Metric] = &[
    metric(
        SUBMISSIONS,
        Kind::Counter,
        &["channel", "type", "outcome"],
        "Submissions by intake channel, message type and outcome (accepted or the refusal code)",
    ),
    metric(
        ACCEPT_DURATION,
        Kind::Histogram,
        &["channel"],
        "Time from receiving a submission to its durable answer",
    ),
    metric(
        ADMISSION_DURATION,
        Kind::Histogram,
        &["channel"],
        "Time an accepted submission spent in the checks before the ledger: parsing, schemas, authorization, routing",
    ),
    metric(
        LEDGER_QUEUE_WAIT,
        Kind::Histogram,
        &["request"],
        "Time a request waited for the group committer to take it into a batch",
    ),
    metric(
        LEDGER_BATCH_ENTRIES,
        Kind::Histogram,
        &[],
        "Ledger entries written per group commit",
    ),
    metric(
        LEDGER_COMMIT_DURATION,
        Kind::Histogram,
        &[],
        "Duration of one group commit",
    ),
    metric(
        LEDGER_COMMIT_PHASE_DURATION,
        Kind::Histogram,
        &["phase"],
        "Time one group commit spent in each step: seal, begin (and the sequencing lock), read, plan, write, commit (the WAL flush)",
    ),
    metric(
        REFUSALS_SUMMARIZED,
        Kind::Counter,
        &["agency"],
        "Refusals beyond their sender's refusal budget, counted into a summary entry instead of recorded alone",
    ),
    metric(
        RELAY_PUBLISH_DURATION,
        Kind::Histogram,
        &[],
        "Duration of one relay round: publishing a batch to RabbitMQ with confirms and recording the outcomes",
    ),
    metric(
        RELAY_RETRIES,
        Kind::Counter,
        &[],
        "Deliveries that failed and were scheduled again",
    ),
    metric(
        DEAD_LETTERS,
        Kind::Counter,
        &["recipient"],
        "Deliveries given up after their last attempt and parked as dead letters",
    ),
    metric(
        OUTBOX_PENDING,
        Kind::Gauge,
        &[],
        "Deliveries not yet dispatched",
    ),
    metric(
        OUTBOX_OLDEST_PENDING_AGE,
        Kind::Gauge,
        &[],
        "Age of the oldest delivery not yet dispatched (0 when none)",
    ),
    metric(
        INBOX_LEASES,
        Kind::Gauge,
        &[],
        "Deliveries leased to agencies pulling over HTTPS from this instance",
    ),
    metric(
        CLOCKS_OPEN,
        Kind::Gauge,
        &["flow"],
        "Legal clocks running, by case flow",
    ),
    metric(
        CLOCKS_OVERDUE,
        Kind::Gauge,
        &["flow"],
        "Legal clocks running past their due date, by case flow",
    ),
    metric(
        CHECKPOINT_AGE,
        Kind::Gauge,
        &[],
        "Seconds since the latest signed checkpoint",
    ),
    metric(
        LEDGER_SIZE,
        Kind::Gauge,
        &[],
        "Entries covered by the latest signed checkpoint",
    ),
    metric(
        RABBITMQ_UP,
        Kind::Gauge,
        &[],
        "1 when this instance holds a RabbitMQ connection, else 0",
    ),
    metric(
        POSTGRES_UP,
        Kind::Gauge,
        &[],
        "1 when PostgreSQL answers this instance, else 0",
    ),
    metric(
        ERASURE_PROPOSALS,
        Kind::Gauge,
        &[],
        "Cases past the retention periods of [retention], proposed for erasure, as last counted",
    ),
];

/// Bucket bounds, in seconds, of the latency histograms: from a lone commit (about a
/// millisecond) to a request that waits out a saturated pipeline.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.0, 5.0,
];

/// Bucket bounds of the batch size histogram.
const BATCH_BUCKETS: &[f64] = &[
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0, 2048.0,
];

/// The process's Prometheus recorder, installed on first use. One per process: every
/// broker instance started in it (tests start several) adds to the same counters.
pub fn prometheus() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let handle = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), LATENCY_BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(Matcher::Suffix("_entries".into()), BATCH_BUCKETS)
            })
            .expect("bucket bounds are not empty")
            .install_recorder()
            .expect("liaison installs the only metrics recorder of its process");
        for m in METRICS {
            match m.kind {
                Kind::Counter => metrics::describe_counter!(m.name, m.help),
                Kind::Gauge => metrics::describe_gauge!(m.name, m.help),
                Kind::Histogram => metrics::describe_histogram!(m.name, m.help),
            }
        }
        handle
    })
}

/// The metrics in the Prometheus text exposition format.
pub fn render() -> String {
    prometheus().render()
}

/// Shows the per-agency series at zero from the start, so that a rate or an alert over
/// them has a series before the first event.
pub fn register_agencies<'a>(agencies: impl IntoIterator<Item = &'a liaison_core::AgencyCode>) {
    for agency in agencies {
        metrics::counter!(DEAD_LETTERS, "recipient" => agency.as_str().to_owned()).increment(0);
        metrics::counter!(REFUSALS_SUMMARIZED, "agency" => agency.as_str().to_owned()).increment(0);
    }
    metrics::counter!(RELAY_RETRIES).increment(0);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The metrics table of `docs/operations.md` ("Metrics"): name, kind, labels per row.
    fn documented() -> Vec<(String, String, String)> {
        let doc = include_str!("../../../../docs/operations.md");
        let table = doc
            .split("\n## Metrics\n")
            .nth(1)
            .expect("docs/operations.md has a Metrics section");
        table
            .lines()
            .filter(|l| l.starts_with("| liaison_"))
            .map(|l| {
                let cells: Vec<&str> = l.split('|').map(str::trim).collect();
                (
                    cells[1].to_owned(),
                    cells[2].to_owned(),
                    cells[3].to_owned(),
                )
            })
            .collect()
    }

    #[test]
    fn the_operations_guide_lists_every_metric_as_exported() {
        let listed: Vec<(String, String, String)> = METRICS
            .iter()
            .map(|m| {
                let kind = match m.kind {
                    Kind::Counter => "counter",
                    Kind::Gauge => "gauge",
                    Kind::Histogram => "histogram",
                };
                (m.name.to_owned(), kind.to_owned(), m.labels.join(", "))
            })
            .collect();
        let mut documented = documented();
        let mut listed_sorted = listed.clone();
        documented.sort();
        listed_sorted.sort();
        assert_eq!(documented, listed_sorted);
    }
}
