//! One typed configuration: built-in defaults, then a TOML file, then `LIAISON_*`
//! environment variables. Unknown keys in the file are refused at start, so a typo never
//! silently falls back to a default. `deploy/liaison.example.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// PostgreSQL holding the ledger.
    pub database_url: String,
    /// RabbitMQ the broker delivers through.
    pub amqp_url: String,
    /// HTTPS gateway (mutual TLS).
    pub listen: SocketAddr,
    /// Plain HTTP operations port: /healthz, /readyz.
    pub ops_listen: SocketAddr,
    /// Directory made by `liaison pki init`: CA, server certificate, ledger signing key.
    pub tls_dir: PathBuf,
    /// The agency registry.
    pub registry: PathBuf,
    /// The routing and authorization policy.
    pub policy: PathBuf,
    /// The case lifecycles: flows, their states and the messages that move them.
    pub lifecycle: PathBuf,
    /// The message catalogue.
    pub schemas: PathBuf,
    /// Agencies whose certificates may trace any message or case over HTTPS
    /// (`GET /v1/trace/{id or case ref}`): the county's administrators.
    pub admins: Vec<liaison_core::AgencyCode>,
    /// Directory of per-year holiday calendars (`YEAR.toml`, the format of
    /// `calendars/cn/`) that replaces the years built into the binary; `None` uses those.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub calendar_dir: Option<PathBuf>,
    pub ledger: LedgerSettings,
    pub revocation: RevocationConfig,
    pub limits: Limits,
    pub relay: RelayConfig,
    pub inbox: InboxConfig,
    pub intake: IntakeConfig,
}

/// The certificate revocation list the gateway enforces, and how it is kept current.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// The CRL file (PEM, signed by the CA of `tls_dir`). When set, the broker refuses to
    /// start without it. When unset, `<tls_dir>/crl.pem` is used if it exists (a
    /// development PKI has none until the first `liaison pki revoke`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub crl: Option<PathBuf>,
    /// How often the CRL file is read for a new version, which then applies to new TLS
    /// handshakes without a restart. SIGHUP reloads at once. 0: only on SIGHUP.
    pub reload_interval_ms: u64,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            crl: None,
            reload_interval_ms: 5_000,
        }
    }
}

impl RevocationConfig {
    pub fn reload_interval(&self) -> Duration {
        Duration::from_millis(self.reload_interval_ms)
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest accepted submission body, in bytes (HTTPS request or AMQP message).
    pub max_body_bytes: usize,
    /// Deepest accepted JSON nesting.
    pub max_depth: usize,
    /// Time allowed for one HTTPS request, body included: a client that dribbles its
    /// body gets `408 request_timeout` when it runs out.
    pub request_timeout_ms: u64,
    /// Time allowed for the TLS handshake of a new connection; connections that say
    /// nothing are closed after it.
    pub handshake_timeout_ms: u64,
    /// Time allowed for a request's headers to arrive, on a new or a kept-alive
    /// connection; an idle HTTP/1.1 connection is closed after it.
    pub header_read_timeout_ms: u64,
    /// HTTPS requests handled at once; more get `503 unavailable` with `Retry-After`.
    pub max_concurrent_requests: usize,
    /// Submissions per second each agency may make, over HTTPS and AMQP together (one
    /// token bucket per agency); more get `429 rate_limited` over HTTPS, and over AMQP a
    /// recorded `rate_limited` rejection with a problem notice. 0 turns the limit off.
    pub rate_per_second: u32,
    /// Submissions an agency may post in one burst above its rate.
    pub rate_burst: u32,
    /// HTTPS requests one agency may have in progress at once (long polls included); more
    /// get `429 concurrency_limited`. Keeps one agency from taking all of
    /// `max_concurrent_requests`.
    pub max_requests_per_agency: usize,
    /// `GET /v1/inbox` requests one agency may have waiting at once; more get
    /// `429 concurrency_limited`.
    pub max_long_polls_per_agency: usize,
    /// TLS connections one agency may hold open; a connection over it has its first request
    /// answered `429 concurrency_limited` and is then closed.
    pub max_connections_per_agency: usize,
    /// Streams (requests) a client may open at once on one HTTP/2 connection.
    pub http2_max_concurrent_streams: u32,
    /// Streams a client may open and reset before the gateway has accepted them, per
    /// HTTP/2 connection; past it the connection is closed (the "rapid reset" attack).
    pub http2_max_pending_accept_reset_streams: usize,
    /// A connection with no request in progress for this long is closed (GOAWAY for
    /// HTTP/2); a waiting long poll is a request in progress.
    pub idle_timeout_ms: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Outbox rows claimed and published per round; all their confirms are in flight at once.
    pub batch: i64,
    /// How long a claimed row is reserved for this instance before another may take it.
    pub lease_ms: u64,
    /// How often the outbox is polled when no local commit woke the relay.
    pub poll_interval_ms: u64,
    /// First retry delay after a failed delivery; doubles per attempt up to `retry_max_ms`.
    pub retry_base_ms: u64,
    pub retry_max_ms: u64,
    /// Attempts after which a delivery that still fails (no queue for the agency, nacked)
    /// is parked in `liaison.dead` with the reason, a `delivery.dead_lettered` entry.
    pub max_attempts: i32,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct IntakeConfig {
    /// Consume `liaison.intake`: agencies publishing over AMQP with their own user.
    pub enabled: bool,
    /// RabbitMQ user of agency `<code>` is `<user_prefix><code>`; the validated `user_id`
    /// of each intake message names the sender this way.
    pub user_prefix: String,
    /// Intake messages in flight (unacknowledged) at once.
    pub prefetch: u16,
    /// `x-max-length` of the `liaison.intake` queue: past it RabbitMQ refuses (nacks) new
    /// publishes. Must equal what `liaison amqp definitions --intake-max-length` wrote.
    pub queue_max_length: u32,
    /// `x-max-length-bytes` of the `liaison.intake` queue (total body bytes queued).
    /// Must equal what `liaison amqp definitions --intake-max-bytes` wrote.
    pub queue_max_bytes: u64,
}

impl IntakeConfig {
    /// The bounds the broker declares `liaison.intake` with.
    pub fn queue_limits(&self) -> liaison_bus::IntakeQueueLimits {
        liaison_bus::IntakeQueueLimits {
            max_length: self.queue_max_length,
            max_bytes: self.queue_max_bytes,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct InboxConfig {
    /// How long a delivery pulled over HTTPS stays reserved awaiting its ack before it is
    /// handed out again.
    pub lease_ms: u64,
    /// Upper bound of `GET /v1/inbox?wait=`.
    pub max_wait_ms: u64,
    /// Most deliveries returned by one pull.
    pub max_batch: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/liaison".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            tls_dir: PathBuf::from(".liaison/pki"),
            registry: PathBuf::from("deploy/demo/agencies.toml"),
            policy: PathBuf::from("deploy/demo/policy.toml"),
            lifecycle: PathBuf::from("deploy/demo/lifecycle.toml"),
            schemas: PathBuf::from("schemas"),
            admins: Vec::new(),
            calendar_dir: None,
            ledger: LedgerSettings::default(),
            revocation: RevocationConfig::default(),
            limits: Limits::default(),
            relay: RelayConfig::default(),
            inbox: InboxConfig::default(),
            intake: IntakeConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_depth: 32,
            request_timeout_ms: 30_000,
            handshake_timeout_ms: 10_000,
            header_read_timeout_ms: 30_000,
            max_concurrent_requests: 1_024,
            rate_per_second: 2_000,
            rate_burst: 4_000,
            max_requests_per_agency: 256,
            max_long_polls_per_agency: 8,
            max_connections_per_agency: 64,
            http2_max_concurrent_streams: 128,
            http2_max_pending_accept_reset_streams: 20,
            idle_timeout_ms: 120_000,
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            lease_ms: 30_000,
            poll_interval_ms: 500,
            retry_base_ms: 1_000,
            retry_max_ms: 300_000,
            max_attempts: 12,
        }
    }
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            user_prefix: "agency-".into(),
            prefetch: 100,
            queue_max_length: liaison_bus::IntakeQueueLimits::default().max_length,
            queue_max_bytes: liaison_bus::IntakeQueueLimits::default().max_bytes,
        }
    }
}

impl Default for InboxConfig {
    fn default() -> Self {
        Self {
            lease_ms: 60_000,
            max_wait_ms: 30_000,
            max_batch: 100,
        }
    }
}

impl RelayConfig {
    pub fn lease(&self) -> Duration {
        Duration::from_millis(self.lease_ms)
    }

    /// Delay before retry number `attempt` (1-based): exponential, capped.
    pub fn retry_delay(&self, attempt: i32) -> Duration {
        let exp = attempt.clamp(1, 20) as u32 - 1;
        let ms = self
            .retry_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.retry_max_ms);
        Duration::from_millis(ms)
    }
}

/// The audit ledger's signed checkpoints.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// How often the tree head is signed when the ledger grew.
    pub checkpoint_interval_ms: u64,
    /// The checkpoints' origin line and signing key name: one per deployment.
    pub origin: String,
    /// Refuse to start when the database role is a superuser or owns a ledger table: such
    /// a role can disable the append-only triggers. Off, the broker only warns (at start and
    /// on `/readyz`), so that a development database run as `postgres` still works.
    pub require_unprivileged_role: bool,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        Self {
            checkpoint_interval_ms: 1_000,
            origin: "liaison.example/demo".into(),
            require_unprivileged_role: false,
        }
    }
}

impl LedgerSettings {
    pub fn checkpoint_interval(&self) -> Duration {
        Duration::from_millis(self.checkpoint_interval_ms)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration {path}: {message}")]
    Parse { path: String, message: String },
    #[error("environment variable {name}={value:?}: {message}")]
    Env {
        name: String,
        value: String,
        message: String,
    },
}

impl Config {
    /// Defaults, then `file` if given, then the `LIAISON_*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let mut config = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.display().to_string(),
                    source,
                })?;
                toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    path: path.display().to_string(),
                    message: e.to_string(),
                })?
            }
            None => Config::default(),
        };
        for (name, value) in env {
            config.apply_env(&name, value)?;
        }
        Ok(config)
    }

    fn apply_env(&mut self, name: &str, value: String) -> Result<(), ConfigError> {
        let addr = |value: &str| -> Result<SocketAddr, ConfigError> {
            value
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                    name: name.to_owned(),
                    value: value.to_owned(),
                    message: e.to_string(),
                })
        };
        match name {
            "LIAISON_DATABASE_URL" => self.database_url = value,
            "LIAISON_AMQP_URL" => self.amqp_url = value,
            "LIAISON_LISTEN" => self.listen = addr(&value)?,
            "LIAISON_OPS_LISTEN" => self.ops_listen = addr(&value)?,
            "LIAISON_TLS_DIR" => self.tls_dir = value.into(),
            "LIAISON_CRL" => self.revocation.crl = Some(value.into()),
            "LIAISON_REGISTRY" => self.registry = value.into(),
            "LIAISON_POLICY" => self.policy = value.into(),
            "LIAISON_LIFECYCLE" => self.lifecycle = value.into(),
            "LIAISON_SCHEMAS" => self.schemas = value.into(),
            "LIAISON_CALENDAR_DIR" => self.calendar_dir = Some(value.into()),
            // Other LIAISON_* names belong to other tools (tests, scripts).
            _ => {}
        }
        Ok(())
    }

    /// The holiday calendar legal periods are counted with (see `calendar_dir`).
    pub fn holiday_calendar(
        &self,
    ) -> Result<liaison_core::HolidayCalendar, crate::calendars::CalendarLoadError> {
        crate::calendars::load(self.calendar_dir.as_deref())
    }

    /// The configuration as TOML with passwords in URLs masked, for logs and `--print-config`.
    pub fn redacted(&self) -> String {
        let mut shown = self.clone();
        shown.database_url = redact_url(&self.database_url);
        shown.amqp_url = redact_url(&self.amqp_url);
        toml::to_string_pretty(&shown).unwrap_or_default()
    }
}

pub use liaison_core::redact_url;

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/liaison.example.toml");
        let config = Config::load(Some(&path), []).unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn environment_overrides_file_and_defaults() {
        let config = Config::load(
            None,
            env(&[
                ("LIAISON_LISTEN", "127.0.0.1:0"),
                ("LIAISON_DATABASE_URL", "postgres://x@db/y"),
                ("LIAISON_OTHER", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.database_url, "postgres://x@db/y");
        let err = Config::load(None, env(&[("LIAISON_OPS_LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("LIAISON_OPS_LISTEN"), "{err}");
    }

    #[test]
    fn the_calendar_directory_comes_from_the_file_or_the_environment() {
        assert_eq!(Config::default().calendar_dir, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "calendar_dir = \"/etc/liaison/calendars\"\n").unwrap();
        let config = Config::load(Some(&path), []).unwrap();
        assert_eq!(
            config.calendar_dir.as_deref(),
            Some(Path::new("/etc/liaison/calendars"))
        );
        assert!(config.redacted().contains("calendar_dir"));
        let config = Config::load(Some(&path), env(&[("LIAISON_CALENDAR_DIR", "cal")])).unwrap();
        assert_eq!(config.calendar_dir.as_deref(), Some(Path::new("cal")));
        // Unset, the built-in years are used; a directory without year files is refused.
        assert_eq!(
            Config::default().holiday_calendar().unwrap(),
            liaison_core::HolidayCalendar::shipped()
        );
        let config = Config::load(
            None,
            env(&[("LIAISON_CALENDAR_DIR", &dir.path().display().to_string())]),
        );
        assert!(config.unwrap().holiday_calendar().is_err());
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "listne = \"127.0.0.1:1\"\n").unwrap();
        let err = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
        std::fs::write(&path, "[limits]\nmax_body = 1\n").unwrap();
        assert!(Config::load(Some(&path), []).is_err());
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            redact_url("amqp://guest:guest@127.0.0.1:5672/%2f"),
            "amqp://guest:***@127.0.0.1:5672/%2f"
        );
        assert_eq!(
            redact_url("postgres://postgres@127.0.0.1/liaison"),
            "postgres://postgres@127.0.0.1/liaison"
        );
        let shown = Config::default().redacted();
        assert!(!shown.contains("guest:guest"), "{shown}");
    }

    #[test]
    fn retry_delay_doubles_and_is_capped() {
        let relay = RelayConfig {
            retry_base_ms: 100,
            retry_max_ms: 1_000,
            ..RelayConfig::default()
        };
        assert_eq!(relay.retry_delay(1), Duration::from_millis(100));
        assert_eq!(relay.retry_delay(2), Duration::from_millis(200));
        assert_eq!(relay.retry_delay(30), Duration::from_millis(1_000));
    }
}
