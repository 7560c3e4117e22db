//! The local RabbitMQ and PostgreSQL: check that they answer, and start them when they are
//! installed but down, so that the demo works on a fresh development machine.

use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::{Duration, Instant};

pub struct LocalService {
    pub name: &'static str,
    pub addr: SocketAddr,
    /// The command that starts it on a Debian machine, program first.
    pub start: &'static [&'static str],
}

pub const POSTGRES: LocalService = LocalService {
    name: "PostgreSQL",
    addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5432),
    start: &[
        "sh",
        "-c",
        "pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql | sort -V | tail -n1) main start",
    ],
};

pub const RABBITMQ: LocalService = LocalService {
    name: "RabbitMQ",
    addr: SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5672),
    start: &["rabbitmq-server", "-detached"],
};

impl LocalService {
    pub fn is_up(&self) -> bool {
        TcpStream::connect_timeout(&self.addr, Duration::from_millis(500)).is_ok()
    }

    /// Returns Ok(true) when it had to be started.
    pub fn ensure(&self, wait: Duration) -> anyhow::Result<bool> {
        if self.is_up() {
            return Ok(false);
        }
        eprintln!(
            "{} is not answering on {}; starting it: {}",
            self.name,
            self.addr,
            self.start.join(" ")
        );
        let status = Command::new(self.start[0]).args(&self.start[1..]).status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => anyhow::bail!(
                "{} did not start ({}): run `{}` by hand",
                self.name,
                s,
                self.start.join(" ")
            ),
            Err(e) => anyhow::bail!(
                "{} is not running and cannot be started here ({e}); is it installed?",
                self.name
            ),
        }
        let deadline = Instant::now() + wait;
        while Instant::now() < deadline {
            if self.is_up() {
                return Ok(true);
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        anyhow::bail!(
            "{} was started but does not answer on {} after {:?}",
            self.name,
            self.addr,
            wait
        )
    }
}

/// Makes sure both services answer.
pub fn ensure_all() -> anyhow::Result<()> {
    POSTGRES.ensure(Duration::from_secs(60))?;
    RABBITMQ.ensure(Duration::from_secs(120))?;
    Ok(())
}
