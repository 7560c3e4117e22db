//! CPU time each process spends during a phase, read from `/proc` (Linux): this process
//! (the broker, or the raw floor's lapin client), the load generator, RabbitMQ's Erlang VM
//! and the PostgreSQL server. Elsewhere the figures are simply absent.

use std::path::Path;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// Clock ticks a second, as `/proc/<pid>/stat` counts CPU time. `sysconf(_SC_CLK_TCK)`
/// would need `unsafe` (forbidden in this workspace), so `getconf CLK_TCK` is asked once;
/// if it cannot answer, 100 is assumed — the value on every Linux architecture liaison
/// runs on.
fn ticks_per_second() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .filter(|t| *t > 0.0)
            .unwrap_or(100.0)
    })
}

/// CPU ticks from one `/proc/<pid>/stat` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatTimes {
    /// utime + stime: the process's own CPU time.
    pub own: u64,
    /// cutime + cstime: CPU time of its children that ended and were waited for.
    pub children: u64,
}

/// Parses a `/proc/<pid>/stat` line. The command name (field 2) is in parentheses and
/// may itself hold spaces and parentheses, so the fields are counted from the last `)`:
/// utime, stime, cutime and cstime are fields 14 to 17.
pub fn parse_stat(line: &str) -> Option<StatTimes> {
    let after = &line[line.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (the state), so field n is fields[n - 3].
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatTimes {
        own: field(14)? + field(15)?,
        children: field(16)? + field(17)?,
    })
}

fn stat_of(dir: &Path) -> Option<StatTimes> {
    parse_stat(&std::fs::read_to_string(dir.join("stat")).ok()?)
}

/// RabbitMQ's Erlang VM: the `beam.smp` started with `-s rabbit boot`. (`rabbitmqctl` runs
/// on a `beam.smp` of its own, short-lived, whose command line also names rabbitmq.)
fn is_rabbitmq(comm: &str, cmdline: &[u8]) -> bool {
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    comm == "beam.smp"
        && args
            .windows(2)
            .any(|w| w[0] == b"-s".as_slice() && w[1] == b"rabbit".as_slice())
}

/// Ticks of RabbitMQ and of the PostgreSQL server, scanning `/proc`. PostgreSQL's total
/// counts every `postgres` process (postmaster, backends, background workers) and, through
/// the postmaster's children times, the backends that ended meanwhile.
fn services() -> (Option<u64>, Option<u64>) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return (None, None);
    };
    let (mut rabbitmq, mut postgres) = (None::<u64>, None::<u64>);
    for entry in entries.flatten() {
        let name = entry.file_name();
        if !name.to_string_lossy().bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let dir = entry.path();
        let Ok(comm) = std::fs::read_to_string(dir.join("comm")) else {
            continue;
        };
        let comm = comm.trim_end();
        if comm == "postgres" {
            if let Some(t) = stat_of(&dir) {
                *postgres.get_or_insert(0) += t.own + t.children;
            }
        } else if comm == "beam.smp"
            && is_rabbitmq(
                comm,
                &std::fs::read(dir.join("cmdline")).unwrap_or_default(),
            )
            && let Some(t) = stat_of(&dir)
        {
            *rabbitmq.get_or_insert(0) += t.own;
        }
    }
    (rabbitmq, postgres)
}

/// Every process's CPU ticks at one moment.
#[derive(Clone, Copy, Debug)]
pub struct Snapshot {
    liaison: Option<u64>,
    load_generator: Option<u64>,
    rabbitmq: Option<u64>,
    postgresql: Option<u64>,
}

impl Snapshot {
    /// This process, the load generator `load_generator` (a live child) if any, and the
    /// services.
    pub fn take(load_generator: Option<u32>) -> Self {
        let (rabbitmq, postgresql) = services();
        Self {
            liaison: stat_of(Path::new("/proc/self")).map(|t| t.own),
            load_generator: load_generator
                .and_then(|pid| stat_of(&Path::new("/proc").join(pid.to_string())))
                .map(|t| t.own),
            rabbitmq,
            postgresql,
        }
    }
}

/// CPU seconds each process spent between two snapshots, and per message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CpuUse {
    /// The bench's own process: the broker in the full path, the lapin client in the raw
    /// floor.
    pub liaison_s: Option<f64>,
    /// The load generator: the agencies' HTTPS clients and the consuming agency.
    pub load_generator_s: Option<f64>,
    /// RabbitMQ's Erlang VM (`beam.smp`).
    pub rabbitmq_s: Option<f64>,
    /// The whole PostgreSQL server (every `postgres` process), not only the broker's
    /// connections.
    pub postgresql_s: Option<f64>,
    pub messages: usize,
}

impl CpuUse {
    pub fn between(before: &Snapshot, after: &Snapshot, messages: usize) -> Self {
        let seconds = |a: Option<u64>, b: Option<u64>| {
            Some(b?.saturating_sub(a?) as f64 / ticks_per_second())
        };
        Self {
            liaison_s: seconds(before.liaison, after.liaison),
            load_generator_s: seconds(before.load_generator, after.load_generator),
            rabbitmq_s: seconds(before.rabbitmq, after.rabbitmq),
            postgresql_s: seconds(before.postgresql, after.postgresql),
            messages,
        }
    }

    /// `seconds` of CPU over the messages measured, in µs; `None` without messages.
    pub(crate) fn per_message_us(&self, seconds: Option<f64>) -> Option<f64> {
        seconds
            .filter(|_| self.messages > 0)
            .map(|s| s * 1e6 / self.messages as f64)
    }

    /// Sum over the processes measured, in seconds.
    pub fn total_s(&self) -> f64 {
        [
            self.liaison_s,
            self.load_generator_s,
            self.rabbitmq_s,
            self.postgresql_s,
        ]
        .into_iter()
        .flatten()
        .sum()
    }

    /// `CPU per message: liaison 410 µs, …; total 1160 µs`, naming this process `own`.
    pub fn line(&self, own: &str) -> String {
        let parts: Vec<String> = [
            (own, self.liaison_s),
            ("load generator", self.load_generator_s),
            ("RabbitMQ", self.rabbitmq_s),
            ("PostgreSQL (server total)", self.postgresql_s),
        ]
        .into_iter()
        .filter_map(|(name, s)| Some(format!("{name} {:.0}", self.per_message_us(s)?)))
        .collect();
        if parts.is_empty() {
            return "CPU per message: not measured (no /proc)".into();
        }
        format!(
            "CPU µs per message: {}; total {:.0}",
            parts.join(", "),
            self.per_message_us(Some(self.total_s())).unwrap_or(0.0)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_holds_spaces_and_parentheses() {
        let line = "4242 (tokio (rt) w) S 1 4242 4242 0 -1 4194560 5313 0 0 0 \
                    1250 375 7 3 20 0 9 0 123456 1000000 2000 18446744073709551615";
        assert_eq!(
            parse_stat(line),
            Some(StatTimes {
                own: 1625,
                children: 10
            })
        );
        assert_eq!(parse_stat("12 (short) S 1 2"), None);
        assert_eq!(parse_stat("no parenthesis"), None);
    }

    #[test]
    fn recognises_rabbitmq_by_name_and_command_line() {
        let cmdline = b"/usr/lib/erlang/erts-14/bin/beam.smp\0-W\0w\0--\0-home\0/var/lib/rabbitmq\0-s\0rabbit\0boot";
        assert!(is_rabbitmq("beam.smp", cmdline));
        // rabbitmqctl: its own VM, for a moment.
        let ctl =
            b"/usr/lib/erlang/erts-14/bin/beam.smp\0-B\0--\0-home\0/var/lib/rabbitmq\0-noshell";
        assert!(!is_rabbitmq("beam.smp", ctl));
        assert!(!is_rabbitmq("postgres", cmdline));
    }

    #[test]
    fn differences_become_seconds_and_microseconds_per_message() {
        let before = Snapshot {
            liaison: Some(100),
            load_generator: Some(0),
            rabbitmq: Some(1_000),
            postgresql: None,
        };
        let after = Snapshot {
            liaison: Some(300),
            load_generator: Some(100),
            rabbitmq: Some(1_050),
            postgresql: None,
        };
        let ticks = ticks_per_second();
        let measured = CpuUse::between(&before, &after, 10_000);
        assert_eq!(measured.liaison_s, Some(200.0 / ticks));
        assert_eq!(measured.load_generator_s, Some(100.0 / ticks));
        assert_eq!(measured.postgresql_s, None);
        let nothing = CpuUse {
            messages: 10_000,
            ..CpuUse::default()
        };
        assert_eq!(
            nothing.line("broker"),
            "CPU per message: not measured (no /proc)"
        );
        let fixed = CpuUse {
            liaison_s: Some(2.0),
            load_generator_s: Some(1.0),
            rabbitmq_s: Some(0.5),
            postgresql_s: None,
            messages: 10_000,
        };
        assert_eq!(
            fixed.line("broker"),
            "CPU µs per message: broker 200, load generator 100, RabbitMQ 50; total 350"
        );
    }
}
