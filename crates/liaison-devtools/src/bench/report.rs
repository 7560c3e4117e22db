//! The benchmark's result: text for people, JSON for records.

use serde::Serialize;

use super::full::PathResult;
use super::ledger::LedgerResult;
use super::raw::RawResult;
use super::setup::BenchWorld;

#[derive(Clone, Debug, Default, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Self {
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    pub cores: usize,
    /// Agencies in the registry the broker ran with (one quorum queue each).
    pub agencies: usize,
    pub liaison: &'static str,
    pub postgresql: String,
    pub rabbitmq: String,
    pub os: String,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub message_bytes: usize,
    pub raw_floor: RawResult,
    pub ledger: LedgerResult,
    pub full_path: PathResult,
    pub latency_at_half_rate: Option<PathResult>,
    /// The full path with one request in flight: what a lone request waits.
    pub one_in_flight: Option<PathResult>,
    /// Full-path throughput divided by the raw floor measured in the same run.
    pub ratio: f64,
}

fn command_output(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_else(|| "unknown".into())
}

impl Report {
    pub async fn new(
        world: &BenchWorld,
        raw_floor: RawResult,
        ledger: LedgerResult,
        full_path: PathResult,
        latency: Option<PathResult>,
        one_in_flight: Option<PathResult>,
        message_bytes: usize,
    ) -> Self {
        let machine = Machine {
            cores: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            agencies: world.config.load_registry().map(|r| r.len()).unwrap_or(0),
            liaison: env!("CARGO_PKG_VERSION"),
            postgresql: postgres_version(&world.config.database_url).await,
            rabbitmq: command_output("rabbitmqctl", &["version"]),
            os: command_output("uname", &["-sr"]),
        };
        let ratio = full_path.throughput / raw_floor.throughput;
        Self {
            machine,
            message_bytes,
            raw_floor,
            ledger,
            full_path,
            latency_at_half_rate: latency,
            one_in_flight,
            ratio,
        }
    }

    pub fn text(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "liaison {} bench — {} cores, PostgreSQL {}, RabbitMQ {}, {}\nmessage size {} bytes, {} agencies, posting over {}\n\n",
            m.liaison,
            m.cores,
            m.postgresql,
            m.rabbitmq,
            m.os,
            self.message_bytes,
            m.agencies,
            self.full_path.http.name()
        );
        out.push_str(&format!(
            "raw floor (lapin, quorum queue, {} confirms in flight, consumed): {:>8.0} msg/s\n",
            self.raw_floor.window, self.raw_floor.throughput
        ));
        out.push_str(&format!(
            "ledger appends (group commit, {} callers):              {:>8.0} entries/s in {} transactions\n",
            self.ledger.concurrency, self.ledger.throughput, self.ledger.transactions
        ));
        out.push_str(&path_line("full path, saturated", &self.full_path));
        if let Some(l) = &self.latency_at_half_rate {
            out.push_str(&path_line("full path, half rate", l));
        }
        if let Some(l) = &self.one_in_flight {
            out.push_str(&path_line("full path, 1 in flight", l));
        }
        out.push_str(&format!(
            "\nratio full path / raw floor: {:.2}\n",
            self.ratio
        ));
        out
    }
}

fn path_line(name: &str, r: &PathResult) -> String {
    format!(
        "{name}: {:>8.0} msg/s ({} messages) — accepted p50/p95/p99 {:.1}/{:.1}/{:.1} ms, delivered p50/p95/p99 {:.1}/{:.1}/{:.1} ms\n",
        r.throughput,
        r.messages,
        r.accepted_ms.p50,
        r.accepted_ms.p95,
        r.accepted_ms.p99,
        r.delivered_ms.p50,
        r.delivered_ms.p95,
        r.delivered_ms.p99
    )
}

async fn postgres_version(url: &str) -> String {
    let ledger = liaison_ledger::Ledger::open(
        liaison_ledger::LedgerConfig::new(url.to_owned()),
        std::sync::Arc::new(liaison_core::SystemClock),
    )
    .await;
    match ledger {
        Ok(l) => l
            .server_version()
            .await
            .unwrap_or_else(|_| "unknown".into()),
        Err(_) => "unknown".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::Percentiles;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(Percentiles::of(vec![]).p99, 0.0);
    }
}
