//! The benchmark's result: text for people, JSON for records.

use serde::Serialize;

use super::full::PathResult;
use super::ledger::LedgerResult;
use super::raw::RawResult;
use super::setup::BenchWorld;

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
    /// The same leads posted to the route preview: the gateway alone.
    pub gateway_alone: Option<PathResult>,
    /// The most the ratio could be on this machine, from the CPU each part costs.
    pub ceiling: Option<Ceiling>,
    pub latency_at_half_rate: Option<PathResult>,
    /// The full path with one request in flight: what a lone request waits.
    pub one_in_flight: Option<PathResult>,
    /// The same requests in flight over one HTTP/2 connection and over eight, in the
    /// order one, eight, eight, one.
    pub by_connections: Vec<PathResult>,
    /// The throughput of the one-connection runs together over the eight-connection runs'.
    pub one_connection_ratio: Option<f64>,
    /// Full-path throughput divided by the raw floor measured in the same run.
    pub ratio: f64,
}

/// The most the ratio could be on this machine. Where every process shares the same cores
/// and keeps them busy, throughput goes as the inverse of the CPU a message costs, so the
/// ratio is about the floor's CPU per message over the full path's. The full path costs at
/// least the floor's own publishing and consuming, what the gateway alone costs (TLS,
/// HTTP/2 and admission, on the agency's side and the broker's) and what the ledger alone
/// costs to record it (the committer and PostgreSQL, in the large batches of a thousand
/// concurrent callers). Each part is measured in the same run; the relay's recording of
/// dispatches and the case rows are left out, so the real ceiling is lower still.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ceiling {
    /// CPU µs per message of the raw floor, every process.
    pub floor_us: f64,
    /// CPU µs per request of the gateway alone: the broker and the load generator.
    pub gateway_us: f64,
    /// CPU µs per append of the ledger alone: the committer's process and PostgreSQL.
    pub ledger_us: f64,
    /// floor / (floor + gateway + ledger).
    pub ratio: f64,
}

impl Ceiling {
    pub fn of(raw: &RawResult, gateway: &PathResult, ledger: &LedgerResult) -> Option<Self> {
        let floor_us = raw.cpu.per_message_us(Some(raw.cpu.total_s()))?;
        let g = gateway.cpu.as_ref()?;
        let gateway_us = g.per_message_us(Some(g.liaison_s? + g.load_generator_s?))?;
        let l = &ledger.cpu;
        let ledger_us = l.per_message_us(Some(l.liaison_s? + l.postgresql_s?))?;
        let all = floor_us + gateway_us + ledger_us;
        (all > 0.0).then(|| Self {
            floor_us,
            gateway_us,
            ledger_us,
            ratio: floor_us / all,
        })
    }

    fn line(&self) -> String {
        format!(
            "ceiling of the ratio on this machine, CPU µs per message: floor {:.0} / (floor {:.0} + gateway alone {:.0} + ledger alone {:.0}) = {:.2}\n",
            self.floor_us, self.floor_us, self.gateway_us, self.ledger_us, self.ratio
        )
    }
}

/// Messages per second of the runs over `connections` connections, taken together.
fn throughput_over(runs: &[PathResult], connections: usize) -> Option<f64> {
    let (messages, seconds) = runs
        .iter()
        .filter(|r| r.connections == connections)
        .fold((0, 0.0), |(m, s), r| (m + r.messages, s + r.seconds));
    (seconds > 0.0).then(|| messages as f64 / seconds)
}

/// The compared runs' throughput over the first connection count (one) divided by theirs
/// over the second (eight).
fn one_connection_ratio(runs: &[PathResult]) -> Option<f64> {
    let [one, many, ..] = super::COMPARE_CONNECTIONS;
    Some(throughput_over(runs, one)? / throughput_over(runs, many)?)
}

/// The full-path runs of one bench.
pub struct FullPathRuns {
    pub saturated: PathResult,
    pub gateway: PathResult,
    pub half_rate: PathResult,
    pub one_in_flight: PathResult,
    pub by_connections: Vec<PathResult>,
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
        runs: FullPathRuns,
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
        let ratio = runs.saturated.throughput / raw_floor.throughput;
        let ceiling = Ceiling::of(&raw_floor, &runs.gateway, &ledger);
        Self {
            machine,
            message_bytes,
            raw_floor,
            ledger,
            full_path: runs.saturated,
            gateway_alone: Some(runs.gateway),
            ceiling,
            latency_at_half_rate: Some(runs.half_rate),
            one_in_flight: Some(runs.one_in_flight),
            one_connection_ratio: one_connection_ratio(&runs.by_connections),
            by_connections: runs.by_connections,
            ratio,
        }
    }

    pub fn text(&self) -> String {
        let m = &self.machine;
        let mut out = format!(
            "liaison {} bench — {} cores, PostgreSQL {}, RabbitMQ {}, {}\nmessage size {} bytes, {} agencies, posting over {} ({} {}), from a separate load generator process\n\n",
            m.liaison,
            m.cores,
            m.postgresql,
            m.rabbitmq,
            m.os,
            self.message_bytes,
            m.agencies,
            self.full_path.http.name(),
            self.full_path.connections,
            match (self.full_path.http, self.full_path.connections) {
                (super::full::Http::Http2, 1) => "connection",
                (super::full::Http::Http2, _) => "connections",
                (super::full::Http::Http1, 1) => "client",
                (super::full::Http::Http1, _) => "clients",
            }
        );
        out.push_str(&format!(
            "raw floor (lapin, quorum queue, {} confirms in flight, consumed): {:>8.0} msg/s\n",
            self.raw_floor.window, self.raw_floor.throughput
        ));
        out.push_str(&format!(
            "    {}\n",
            self.raw_floor.cpu.line("bench process (lapin)")
        ));
        out.push_str(&format!(
            "ledger appends (group commit, {} callers):              {:>8.0} entries/s in {} transactions\n",
            self.ledger.concurrency, self.ledger.throughput, self.ledger.transactions
        ));
        out.push_str(&format!(
            "    {}\n",
            self.ledger.cpu.line("bench process (committer)")
        ));
        out.push_str(&path_line("full path, saturated", &self.full_path));
        if let Some(g) = &self.gateway_alone {
            out.push_str(&format!(
                "gateway alone (route previews: TLS, HTTP/2, admission; nothing recorded): {:>8.0} req/s ({} requests) — answered p50/p95/p99 {:.1}/{:.1}/{:.1} ms\n",
                g.throughput, g.messages, g.accepted_ms.p50, g.accepted_ms.p95, g.accepted_ms.p99
            ));
            if let Some(cpu) = &g.cpu {
                out.push_str(&format!("    {}\n", cpu.line("broker")));
            }
        }
        if let Some(l) = &self.latency_at_half_rate {
            out.push_str(&path_line("full path, half rate", l));
        }
        if let Some(l) = &self.one_in_flight {
            out.push_str(&path_line("full path, 1 in flight", l));
        }
        for r in &self.by_connections {
            let name = format!(
                "full path, {} in flight, {} {} connection{}",
                r.concurrency.unwrap_or(0),
                r.connections,
                r.http.name(),
                if r.connections == 1 { "" } else { "s" }
            );
            out.push_str(&path_line(&name, r));
        }
        if let Some(ratio) = self.one_connection_ratio {
            let order: Vec<String> = super::COMPARE_CONNECTIONS
                .iter()
                .map(usize::to_string)
                .collect();
            out.push_str(&format!(
                "one HTTP/2 connection / eight (runs in the order {}, taken together): {ratio:.2}\n",
                order.join(", ")
            ));
        }
        out.push_str(&format!(
            "\nratio full path / raw floor: {:.2}\n",
            self.ratio
        ));
        if let Some(ceiling) = &self.ceiling {
            out.push_str(&ceiling.line());
        }
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
    ) + &r
        .cpu
        .as_ref()
        .map(|c| format!("    {}\n", c.line("broker")))
        .unwrap_or_default()
        + &r.stages
            .as_ref()
            .map(|s| format!("    {}\n", s.line(r.accepted_ms.mean)))
            .unwrap_or_default()
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
    use super::*;
    use crate::bench::cpu::CpuUse;
    use crate::bench::full::{Http, Percentiles};

    fn path(connections: usize, concurrency: usize, throughput: f64) -> PathResult {
        PathResult {
            http: Http::Http2,
            connections,
            messages: 1000,
            concurrency: Some(concurrency),
            offered_rate: None,
            seconds: 1000.0 / throughput,
            throughput,
            accepted_ms: Percentiles {
                mean: 12.0,
                p50: 10.0,
                p95: 20.0,
                p99: 30.0,
                max: 40.0,
            },
            delivered_ms: Percentiles::default(),
            cpu: Some(CpuUse {
                liaison_s: Some(0.5),
                load_generator_s: Some(0.25),
                rabbitmq_s: Some(0.125),
                postgresql_s: Some(0.125),
                messages: 1000,
            }),
            stages: None,
        }
    }

    #[test]
    fn the_text_names_connections_and_cpu_per_process() {
        let mut report = Report {
            machine: Machine {
                cores: 2,
                agencies: 20,
                liaison: "0.0.0",
                postgresql: "17".into(),
                rabbitmq: "4.1".into(),
                os: "Linux".into(),
            },
            message_bytes: 950,
            raw_floor: RawResult {
                messages: 2000,
                window: 1000,
                seconds: 1.0,
                throughput: 2000.0,
                cpu: CpuUse {
                    liaison_s: Some(0.1),
                    load_generator_s: None,
                    rabbitmq_s: Some(0.3),
                    postgresql_s: Some(0.0),
                    messages: 2000,
                },
            },
            ledger: LedgerResult {
                appends: 2000,
                concurrency: 1000,
                seconds: 0.5,
                throughput: 4000.0,
                transactions: 10,
                cpu: CpuUse {
                    liaison_s: Some(0.05),
                    load_generator_s: None,
                    rabbitmq_s: Some(0.01),
                    postgresql_s: Some(0.05),
                    messages: 2000,
                },
            },
            full_path: path(8, 256, 1000.0),
            gateway_alone: Some(path(8, 256, 1000.0)),
            ceiling: None,
            latency_at_half_rate: None,
            one_in_flight: None,
            by_connections: vec![
                path(1, 64, 500.0),
                path(8, 64, 900.0),
                path(8, 64, 1100.0),
                path(1, 64, 700.0),
            ],
            one_connection_ratio: None,
            ratio: 0.5,
        };
        report.one_connection_ratio = one_connection_ratio(&report.by_connections);
        report.ceiling = Ceiling::of(
            &report.raw_floor,
            report.gateway_alone.as_ref().unwrap(),
            &report.ledger,
        );
        // The floor: 0.4 s over 2,000 messages; the gateway: the broker's 0.5 s and the load
        // generator's 0.25 s over 1,000 requests (RabbitMQ and PostgreSQL left out); the
        // ledger: the committer's 0.05 s and PostgreSQL's 0.05 s over 2,000 appends.
        assert_eq!(
            report.ceiling,
            Some(Ceiling {
                floor_us: 200.0,
                gateway_us: 750.0,
                ledger_us: 50.0,
                ratio: 0.2,
            })
        );
        // 2,000 messages in 2 + 1000/700 s over one connection, in 1000/900 + 1000/1100 s
        // over eight.
        let expected =
            (2000.0 / (2.0 + 1000.0 / 700.0)) / (2000.0 / (1000.0 / 900.0 + 1000.0 / 1100.0));
        assert!(
            (report.one_connection_ratio.unwrap() - expected).abs() < 1e-9,
            "{report:?}"
        );
        let text = report.text();
        assert!(
            text.contains(
                "posting over HTTP/2 (8 connections), from a separate load generator process"
            ),
            "{text}"
        );
        assert!(text.contains("    CPU µs per message: bench process (lapin) 50, RabbitMQ 150, PostgreSQL (server total) 0; total 200\n"), "{text}");
        assert!(
            text.contains("full path, 64 in flight, 1 HTTP/2 connection:      500 msg/s"),
            "{text}"
        );
        assert!(
            text.contains("full path, 64 in flight, 8 HTTP/2 connections:      900 msg/s"),
            "{text}"
        );
        assert!(
            text.contains(&format!(
                "one HTTP/2 connection / eight (runs in the order 1, 8, 8, 1, taken together): {expected:.2}\n"
            )),
            "{text}"
        );
        assert!(text.contains("    CPU µs per message: broker 500, load generator 250, RabbitMQ 125, PostgreSQL (server total) 125; total 1000\n"), "{text}");
        assert!(
            text.contains("gateway alone (route previews: TLS, HTTP/2, admission; nothing recorded):     1000 req/s (1000 requests)"),
            "{text}"
        );
        assert!(
            text.contains("ceiling of the ratio on this machine, CPU µs per message: floor 200 / (floor 200 + gateway alone 750 + ledger alone 50) = 0.20\n"),
            "{text}"
        );
    }
}
