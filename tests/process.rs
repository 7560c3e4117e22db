//! The broker as a real process (`liaison serve`), for tests that kill it, and the shell
//! commands that stop and start the machine's RabbitMQ and PostgreSQL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::World;

/// The `liaison` binary next to the test executable (`target/<profile>/liaison`).
pub fn liaison_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir")
        .join("liaison");
    assert!(
        path.exists(),
        "{} is missing: build it with `cargo build -p liaison-cli` (scripts/test does)",
        path.display()
    );
    path
}

/// Runs `liaison ARGS` against the world's database and TLS folder, quietly, to the end.
pub fn liaison(world: &World, args: &[&str]) -> std::process::Output {
    Command::new(liaison_binary())
        .args(args)
        .env("LIAISON_DATABASE_URL", &world.config.database_url)
        .env("LIAISON_TLS_DIR", &world.config.tls_dir)
        .env("LIAISON_LOG", "off")
        .output()
        .expect("run liaison")
}

/// What a command printed, standard output then standard error.
pub fn text(output: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free local port")
        .port()
}

/// A running `liaison serve`; killed (SIGKILL) when dropped.
pub struct BrokerProcess {
    child: Child,
    pub https_port: u16,
    pub ops_port: u16,
}

impl BrokerProcess {
    /// Starts `liaison serve --config config_file` on the world's services and the given
    /// ports, and waits (bounded) until its operations port answers `/healthz`.
    pub async fn spawn(
        world: &World,
        config_file: &Path,
        https_port: u16,
        ops_port: u16,
    ) -> BrokerProcess {
        Self::spawn_with_env(world, config_file, https_port, ops_port, &[]).await
    }

    /// [`BrokerProcess::spawn`] with more environment variables (which override the
    /// world's own `LIAISON_*` settings).
    pub async fn spawn_with_env(
        world: &World,
        config_file: &Path,
        https_port: u16,
        ops_port: u16,
        env: &[(&str, &str)],
    ) -> BrokerProcess {
        let c = &world.config;
        let child = Command::new(liaison_binary())
            .args(["serve", "--config"])
            .arg(config_file)
            .env("LIAISON_DATABASE_URL", &c.database_url)
            .env("LIAISON_AMQP_URL", &c.amqp_url)
            .env("LIAISON_LISTEN", format!("127.0.0.1:{https_port}"))
            .env("LIAISON_OPS_LISTEN", format!("127.0.0.1:{ops_port}"))
            .env("LIAISON_TLS_DIR", &c.tls_dir)
            .env("LIAISON_DEMO", c.demo.to_string())
            .env("LIAISON_LEDGER__ORIGIN", &c.ledger.origin)
            .envs(
                [
                    ("LIAISON_REGISTRY", &c.registry),
                    ("LIAISON_POLICY", &c.policy),
                    ("LIAISON_LIFECYCLE", &c.lifecycle),
                    ("LIAISON_SCHEMAS", &c.schemas),
                ]
                .into_iter()
                .filter_map(|(name, path)| Some((name, path.as_ref()?))),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .spawn()
            .expect("spawn liaison serve");
        let mut process = BrokerProcess {
            child,
            https_port,
            ops_port,
        };
        let health = format!("http://127.0.0.1:{ops_port}/healthz");
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(2))
            .build()
            .expect("HTTP client");
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            if http
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return process;
            }
            if let Ok(Some(status)) = process.child.try_wait() {
                panic!("liaison serve exited during start: {status}");
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "liaison serve did not come up on {health}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// The process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill(&mut self) {
        self.child.kill().expect("SIGKILL the broker");
        self.child.wait().expect("reap the broker");
    }

    /// SIGTERM, then waits (bounded) for the exit status.
    pub async fn terminate(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let deadline = tokio::time::Instant::now() + limit;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        None
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs a service command; panics with its output when it fails.
pub fn service_command(program: &str, args: &[&str]) -> String {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program} {args:?}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "{program} {args:?} failed: {text}");
    text
}

/// The version of the local PostgreSQL cluster `main` (`pg_lsclusters`).
pub fn postgres_cluster_version() -> String {
    let listing = service_command("pg_lsclusters", &["--no-header"]);
    listing
        .lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let version = fields.next()?;
            (fields.next()? == "main").then(|| version.to_owned())
        })
        .next()
        .unwrap_or_else(|| panic!("no PostgreSQL cluster `main` in pg_lsclusters: {listing}"))
}

pub fn postgres_stop(version: &str) {
    service_command(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", version, "main", "stop"],
    );
}

pub fn postgres_start(version: &str) {
    service_command(
        "pg_ctlcluster",
        &["--skip-systemctl-redirect", version, "main", "start"],
    );
}

pub fn rabbitmq_stop_app() {
    service_command("rabbitmqctl", &["stop_app"]);
}

pub fn rabbitmq_start_app() {
    service_command("rabbitmqctl", &["start_app"]);
    service_command("rabbitmqctl", &["await_startup"]);
}

/// Puts RabbitMQ and PostgreSQL back when dropped, even when the test panics midway:
/// other tests and the next run need them.
pub struct ServicesRestored {
    pub postgres_version: String,
}

impl Drop for ServicesRestored {
    fn drop(&mut self) {
        // Both commands succeed (or say "already running") when the service is up.
        let _ = Command::new("rabbitmqctl").arg("start_app").output();
        let _ = Command::new("rabbitmqctl").arg("await_startup").output();
        let _ = Command::new("pg_ctlcluster")
            .args([
                "--skip-systemctl-redirect",
                &self.postgres_version,
                "main",
                "start",
            ])
            .output();
    }
}
