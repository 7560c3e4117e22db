//! One typed configuration in three layers: built-in defaults, then a TOML file, then
//! `LIAISON_*` environment variables, every key of which can be set by environment
//! (`LIAISON_RELAY__MAX_ATTEMPTS`: a double underscore descends into a section). Unknown
//! keys are refused at start, naming the key, so a typo never silently falls back to a
//! default. Durations are written as `"30s"`, `"250ms"`, `"2m"`. The ledger's and the
//! bus's settings are sections of it (`[ledger]`, `[bus]`). `deploy/liaison.example.toml`
//! documents every key; `liaison config show` prints the configuration in effect with
//! where each value came from.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider, Source};
use liaison_core::policy::PolicyLoadError;
use liaison_core::{Lifecycle, LifecycleError};
use liaison_core::{Policy, Registry, RegistryError};
use liaison_schema::{Catalogue, CatalogueError, CatalogueSource};
use serde::{Deserialize, Serialize};

use crate::defaults;

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// PostgreSQL holding the ledger.
    pub database_url: String,
    /// RabbitMQ the broker delivers through.
    pub amqp_url: String,
    /// Other nodes of the same RabbitMQ cluster (same virtual host and user as
    /// `amqp_url`). The broker connects to the first of `amqp_url` and these that answers;
    /// when its connection is lost it tries the ones after the node that failed, in turn.
    pub amqp_failover_urls: Vec<String>,
    /// HTTPS gateway (mutual TLS).
    pub listen: SocketAddr,
    /// Plain HTTP operations port: /healthz, /readyz.
    pub ops_listen: SocketAddr,
    /// Directory made by `liaison pki init`: CA, server certificate, ledger signing key.
    pub tls_dir: PathBuf,
    /// The agency registry; `None` uses the demo county's, built into the binary.
    pub registry: Option<PathBuf>,
    /// The routing and authorization policy; `None` uses the demo county's, built in.
    pub policy: Option<PathBuf>,
    /// The case lifecycles (flows, their states and the messages that move them);
    /// `None` uses the demo county's, built in.
    pub lifecycle: Option<PathBuf>,
    /// The message catalogue directory; `None` uses the one built into the binary.
    pub schemas: Option<PathBuf>,
    /// Agencies whose certificates may trace any message or case over HTTPS
    /// (`GET /v1/trace/{id or case ref}`): the county's administrators.
    pub admins: Vec<liaison_core::AgencyCode>,
    /// Auditors whose certificates (SAN URI `urn:liaison:auditor:<name>`, from `liaison
    /// pki auditor`) may read checkpoints, proofs and ledger entries and post witness
    /// cosignatures — read-only: they send and receive no messages.
    pub auditors: Vec<String>,
    /// Verifier keys (`name+keyid+base64`, from `liaison witness init`) of the witnesses
    /// whose cosignatures of checkpoints the broker accepts and serves.
    pub witnesses: Vec<String>,
    /// Directory of per-year holiday calendars (`YEAR.toml`, the format of
    /// `calendars/cn/`) that replaces the years built into the binary; `None` uses those.
    pub calendar_dir: Option<PathBuf>,
    /// A demonstration or test deployment: it may sign checkpoints under the shared demo
    /// origin ([`DEMO_ORIGIN`], the default of `[ledger] origin`). Without it the broker
    /// refuses to start with that origin, which every deployment keeping the default would
    /// share. `liaison demo` sets it.
    pub demo: bool,
    pub ledger: LedgerSettings,
    pub bus: BusSettings,
    pub revocation: RevocationConfig,
    pub limits: Limits,
    pub relay: RelayConfig,
    pub inbox: InboxConfig,
    pub intake: IntakeConfig,
    pub clocks: ClocksConfig,
    pub telemetry: TelemetryConfig,
    pub erasure: ErasureConfig,
    pub retention: RetentionConfig,
}

/// Sealed message bodies, so that a case's personal data can be erased (`docs/operations.md`,
/// "Erasure"). Each body is encrypted under a data key of its own, wrapped by the active
/// key-encryption key (KEK); erasing a case destroys its data keys.
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ErasureConfig {
    /// The directory of KEK files `<id>.kek` (64 hex digits; `liaison keys new`). Unset:
    /// `<tls_dir>/kek`, where `liaison pki init` writes `k1.kek`. With no key there,
    /// bodies are stored in clear, erasure is refused and the broker warns at start.
    pub kek_dir: Option<PathBuf>,
    /// The KEK that wraps new data keys; may be left out when the directory holds one.
    pub active_kek: Option<String>,
}

/// How long the messages of each type are kept before their case is proposed for erasure.
/// A worker lists the cases due (`GET /v1/erasure-proposals`, `liaison erase --proposals`);
/// it never erases: an administrator does, with the legal basis.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Message type → retention period (`"1825d"`, `"5y"`). A case is due when every
    /// message of it not yet erased is past its type's period; a case holding a type
    /// without a period is never due.
    pub periods: std::collections::BTreeMap<String, humantime_serde::Serde<Duration>>,
    /// How often the worker looks for due cases (and sets the metric); zero: never (the
    /// route and the command still list them).
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        Self {
            periods: Default::default(),
            scan_interval: Duration::from_secs(3600),
        }
    }
}

impl RetentionConfig {
    /// (message type, seconds) of every period.
    pub fn periods_seconds(&self) -> Vec<(String, i64)> {
        self.periods
            .iter()
            .map(|(t, d)| (t.clone(), i64::try_from(d.as_secs()).unwrap_or(i64::MAX)))
            .collect()
    }
}

/// Where spans go. Metrics are always on the operations port (`GET /metrics`); spans are
/// exported only when an OTLP endpoint is set.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// An OpenTelemetry collector's OTLP/HTTP traces endpoint
    /// (`http://127.0.0.1:4318/v1/traces`); unset: no export.
    pub otlp_endpoint: Option<String>,
    /// The `service.name` of the exported spans.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            service_name: "liaison".into(),
        }
    }
}

/// The deadline watcher: the background task that sends the reminders, overdue notices and
/// escalations of the lifecycle's clocks.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClocksConfig {
    /// Run the watcher in this instance. Any number of instances may run it on one
    /// database: each notice is recorded once.
    pub watch: bool,
    /// How often running clocks are looked at; a notice goes out at most this late.
    #[serde(with = "humantime_serde")]
    pub scan_interval: Duration,
    /// Notices sent per scan at most; the rest follow in the next.
    pub scan_batch: i64,
    /// Trials and demonstrations only: run every clock in trial time, where a day of its
    /// period and of its notices' offsets lasts this long (`2s`: a three-day review is due
    /// six seconds after the transfer), with no holiday calendar. Unset in production.
    #[serde(
        default,
        with = "humantime_serde",
        skip_serializing_if = "Option::is_none"
    )]
    pub trial_day: Option<Duration>,
}

impl Default for ClocksConfig {
    fn default() -> Self {
        Self {
            watch: true,
            scan_interval: Duration::from_secs(30),
            scan_batch: 500,
            trial_day: None,
        }
    }
}

/// The certificate revocation list the gateway enforces, and how it is kept current.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RevocationConfig {
    /// The CRL file (PEM, signed by the CA of `tls_dir`). When set, the broker refuses to
    /// start without it. When unset, `<tls_dir>/crl.pem` is used if it exists (a
    /// development PKI has none until the first `liaison pki revoke`).
    pub crl: Option<PathBuf>,
    /// How often the CRL file is read for a new version, which then applies to new TLS
    /// handshakes without a restart. SIGHUP reloads at once. Zero: only on SIGHUP.
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
}

impl Default for RevocationConfig {
    fn default() -> Self {
        Self {
            crl: None,
            reload_interval: Duration::from_secs(5),
        }
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
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Time allowed for the TLS handshake of a new connection; connections that say
    /// nothing are closed after it.
    #[serde(with = "humantime_serde")]
    pub handshake_timeout: Duration,
    /// Time allowed for a request's headers to arrive, on a new or a kept-alive
    /// connection; an idle HTTP/1.1 connection is closed after it.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
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
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Refusals of one sender recorded one by one per `refusal_interval`; beyond it they
    /// are still answered, and counted by code into one `message.rejections_summarized`
    /// entry per sender and interval, so a flood of bad requests cannot grow the ledger
    /// without bound (docs/reliability.md).
    pub refusal_budget: u64,
    #[serde(with = "humantime_serde")]
    pub refusal_interval: Duration,
}

#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RelayConfig {
    /// Outbox rows claimed and published per round; all their confirms are in flight at once.
    pub batch: i64,
    /// How long a claimed row is reserved for this instance before another may take it.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// How often the outbox is polled when no local commit woke the relay.
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// First retry delay after a failed delivery; doubles per attempt up to `retry_max`.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
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
    /// publishes. `liaison amqp definitions` writes this value unless told otherwise.
    pub queue_max_length: u32,
    /// `x-max-length-bytes` of the `liaison.intake` queue (total body bytes queued).
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
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Upper bound of `GET /v1/inbox?wait=`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
    /// Most deliveries returned by one pull.
    pub max_batch: u16,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            database_url: "postgres://postgres@127.0.0.1:5432/liaison".into(),
            amqp_url: "amqp://guest:guest@127.0.0.1:5672/%2f".into(),
            amqp_failover_urls: Vec::new(),
            listen: SocketAddr::from(([127, 0, 0, 1], 8443)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 9090)),
            tls_dir: PathBuf::from(".liaison/pki"),
            registry: None,
            policy: None,
            lifecycle: None,
            schemas: None,
            admins: Vec::new(),
            auditors: Vec::new(),
            witnesses: Vec::new(),
            calendar_dir: None,
            demo: false,
            ledger: LedgerSettings::default(),
            bus: BusSettings::default(),
            revocation: RevocationConfig::default(),
            limits: Limits::default(),
            relay: RelayConfig::default(),
            inbox: InboxConfig::default(),
            intake: IntakeConfig::default(),
            clocks: ClocksConfig::default(),
            telemetry: TelemetryConfig::default(),
            erasure: ErasureConfig::default(),
            retention: RetentionConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_body_bytes: 1024 * 1024,
            max_depth: 32,
            request_timeout: Duration::from_secs(30),
            handshake_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(30),
            max_concurrent_requests: 1_024,
            rate_per_second: 2_000,
            rate_burst: 4_000,
            max_requests_per_agency: 256,
            max_long_polls_per_agency: 8,
            max_connections_per_agency: 64,
            http2_max_concurrent_streams: 128,
            http2_max_pending_accept_reset_streams: 20,
            idle_timeout: Duration::from_secs(120),
            refusal_budget: 100,
            refusal_interval: Duration::from_secs(60),
        }
    }
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            batch: 500,
            lease: Duration::from_secs(30),
            poll_interval: Duration::from_millis(500),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
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
            lease: Duration::from_secs(60),
            max_wait: Duration::from_secs(30),
            max_batch: 100,
        }
    }
}

impl RelayConfig {
    /// Delay before retry number `attempt` (1-based): exponential, capped.
    pub fn retry_delay(&self, attempt: i32) -> Duration {
        let exp = attempt.clamp(1, 20) as u32 - 1;
        self.retry_base
            .saturating_mul(1u32 << exp)
            .min(self.retry_max)
    }
}

/// The checkpoints' origin of demonstrations and tests, and the default of `[ledger]
/// origin`: a deployment must name its own (or say it is a demo, `demo = true`).
pub use liaison_core::checkpoint::DEMO_ORIGIN;

/// The audit ledger: its signed checkpoints, and the settings of `liaison-ledger`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerSettings {
    /// How often the tree head is signed when the ledger grew.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
    /// The checkpoints' origin line and signing key name: one per deployment, never shared
    /// (a schema-less URL such as `ledger.county.example/liaison`, no spaces or `+`). The
    /// default, [`DEMO_ORIGIN`], is accepted only with `demo = true`.
    pub origin: String,
    /// Refuse to start when the database role is a superuser or owns a ledger table: such
    /// a role can disable the append-only triggers. Off, the broker only warns (at start and
    /// on `/readyz`), so that a development database run as `postgres` still works.
    pub require_unprivileged_role: bool,
    /// Connections in the database pool.
    pub max_connections: u32,
    /// The most appends one group-commit transaction takes.
    pub batch_max: usize,
    /// Bounds connecting, acquiring a pooled connection and the readiness ping.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Seqs per partition of the ledger's tables: the unit `liaison ledger archive` moves
    /// out. Fixed by the first broker that opens the database.
    pub partition_entries: u64,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        let ledger = liaison_ledger::LedgerConfig::default();
        Self {
            checkpoint_interval: Duration::from_secs(1),
            origin: DEMO_ORIGIN.into(),
            require_unprivileged_role: false,
            max_connections: ledger.max_connections,
            batch_max: ledger.batch_max,
            connect_timeout: ledger.connect_timeout,
            partition_entries: ledger.partition_entries,
        }
    }
}

/// RabbitMQ: the settings of `liaison-bus`.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// Limit for establishing the connection (TCP, TLS and the AMQP handshake).
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Limit for every other round trip to RabbitMQ: declarations, opening a channel, each
    /// publisher confirm.
    #[serde(with = "humantime_serde")]
    pub operation_timeout: Duration,
    /// `x-delivery-limit` of the intake and agency queues: deliveries of one message
    /// before RabbitMQ dead-letters it. `liaison amqp definitions` writes this value unless
    /// told otherwise; RabbitMQ refuses to redeclare a queue with another.
    pub delivery_limit: u32,
}

impl Default for BusSettings {
    fn default() -> Self {
        let bus = liaison_bus::BusConfig::default();
        Self {
            connect_timeout: bus.connect_timeout,
            operation_timeout: bus.operation_timeout,
            delivery_limit: bus.delivery_limit,
        }
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
    /// Every fault found, one per line, each naming its key and where it was set.
    #[error("configuration: {0}")]
    Invalid(String),
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        let faults: Vec<String> = error.into_iter().map(|e| describe(&e)).collect();
        ConfigError::Invalid(faults.join("\n"))
    }
}

/// One fault as `WHERE: KEY: what is wrong`, WHERE being the file or the variable.
fn describe(error: &figment::Error) -> String {
    let key = error.path.join(".");
    let whence = match &error.metadata {
        Some(metadata) if metadata.name == ENV_LAYER && !error.path.is_empty() => {
            return format!(
                "{}: {}",
                metadata.interpolate(&Profile::Default, &error.path),
                error.kind
            );
        }
        Some(Metadata {
            source: Some(Source::File(path)),
            ..
        }) => path.display().to_string(),
        Some(metadata) => metadata.name.to_string(),
        None => String::new(),
    };
    [whence, key, error.kind.to_string()]
        .into_iter()
        .filter(|part| !part.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// Environment variables that configure liaison start with this.
pub const ENV_PREFIX: &str = "LIAISON_";
/// Separates the keys of a nested setting in a variable name: `LIAISON_RELAY__LEASE`.
pub const ENV_NESTING: &str = "__";
/// The name of the environment layer in figment's metadata.
const ENV_LAYER: &str = "environment variable";

/// A configuration and the layers it was made from, to tell where each value came from.
pub struct Layered {
    pub config: Config,
    figment: Figment,
}

impl Config {
    /// Defaults, then `file` if given, then the `LIAISON_*` variables of `env`.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        Ok(Self::layered(file, env)?.config)
    }

    /// [`Config::load`], keeping the layers for [`Layered::show`].
    pub fn layered(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layered, ConfigError> {
        let defaults = Serialized::defaults(Config::default());
        let mut figment = Figment::from(defaults);
        if let Some(path) = file {
            // figment takes a missing file for an empty one; a named file must exist.
            std::fs::File::open(path).map_err(|source| ConfigError::Read {
                path: path.display().to_string(),
                source,
            })?;
            figment = figment.merge(Toml::file_exact(path));
        }
        let environment = Environment::new(env, &top_level_keys());
        let figment = figment.merge(environment);
        let config = figment.extract::<Config>()?;
        Ok(Layered { config, figment })
    }

    /// The ledger's settings (`liaison-ledger`), from `database_url` and `[ledger]`.
    pub fn ledger_config(&self) -> liaison_ledger::LedgerConfig {
        // Every field named, so that a new setting of the ledger cannot go unconfigured.
        liaison_ledger::LedgerConfig {
            database_url: self.database_url.clone(),
            max_connections: self.ledger.max_connections,
            batch_max: self.ledger.batch_max,
            connect_timeout: self.ledger.connect_timeout,
            partition_entries: self.ledger.partition_entries,
            kek_dir: Some(self.kek_dir()),
            active_kek: self.erasure.active_kek.clone(),
        }
    }

    /// Where the key-encryption keys are: `[erasure] kek_dir`, or `<tls_dir>/kek`.
    pub fn kek_dir(&self) -> PathBuf {
        self.erasure
            .kek_dir
            .clone()
            .unwrap_or_else(|| self.tls_dir.join("kek"))
    }

    /// The bus's settings (`liaison-bus`), from `amqp_url`, `amqp_failover_urls`, `[bus]`
    /// and `[intake]`.
    pub fn bus_config(&self) -> liaison_bus::BusConfig {
        // Every field named, so that a new setting of the bus cannot go unconfigured.
        liaison_bus::BusConfig {
            url: self.amqp_url.clone(),
            failover_urls: self.amqp_failover_urls.clone(),
            connect_timeout: self.bus.connect_timeout,
            operation_timeout: self.bus.operation_timeout,
            delivery_limit: self.bus.delivery_limit,
            intake_queue: self.intake.queue_limits(),
        }
    }

    /// The agency registry: the configured file, or the built-in one.
    pub fn load_registry(&self) -> Result<Registry, RegistryError> {
        match &self.registry {
            Some(path) => Registry::load(path),
            None => Registry::from_toml(defaults::REGISTRY.text, &defaults::REGISTRY.origin()),
        }
    }

    /// The routing policy, checked against `registry`: the configured file, or the
    /// built-in one.
    pub fn load_policy(&self, registry: &Registry) -> Result<Policy, PolicyLoadError> {
        match &self.policy {
            Some(path) => Policy::load(path, registry),
            None => Policy::from_toml(defaults::POLICY.text, &defaults::POLICY.origin(), registry),
        }
    }

    /// The case lifecycles: the configured file, or the built-in one.
    pub fn load_lifecycle(&self) -> Result<Lifecycle, LifecycleError> {
        match &self.lifecycle {
            Some(path) => Lifecycle::load(path),
            None => Lifecycle::from_toml(defaults::LIFECYCLE.text, &defaults::LIFECYCLE.origin()),
        }
    }

    /// How messages name the lifecycle file: its path, or the built-in file.
    pub fn lifecycle_origin(&self) -> String {
        origin(self.lifecycle.as_deref(), &defaults::LIFECYCLE.origin())
    }

    /// The files of the message catalogue: the configured directory, or the built-in one.
    pub fn catalogue_source(&self) -> Result<CatalogueSource, CatalogueError> {
        match &self.schemas {
            Some(dir) => CatalogueSource::read_dir(dir),
            None => Ok(defaults::schemas()),
        }
    }

    /// The compiled message catalogue.
    pub fn load_catalogue(&self) -> Result<Catalogue, CatalogueError> {
        Catalogue::from_source(&self.catalogue_source()?)
    }

    /// How messages name the registry: its path, or the built-in file.
    pub fn registry_origin(&self) -> String {
        origin(self.registry.as_deref(), &defaults::REGISTRY.origin())
    }

    /// How messages name the policy: its path, or the built-in file.
    pub fn policy_origin(&self) -> String {
        origin(self.policy.as_deref(), &defaults::POLICY.origin())
    }

    /// How messages name the catalogue: its directory, or the built-in one.
    pub fn schemas_origin(&self) -> String {
        origin(
            self.schemas.as_deref(),
            &format!("built-in {}", defaults::SCHEMAS_PATH),
        )
    }

    /// The holiday calendar legal periods are counted with (see `calendar_dir`).
    pub fn holiday_calendar(
        &self,
    ) -> Result<liaison_core::HolidayCalendar, crate::calendars::CalendarLoadError> {
        crate::calendars::load(self.calendar_dir.as_deref())
    }

    /// This configuration with passwords in URLs masked.
    pub fn masked(&self) -> Config {
        let mut shown = self.clone();
        shown.database_url = redact_url(&self.database_url);
        shown.amqp_url = redact_url(&self.amqp_url);
        shown.amqp_failover_urls = self
            .amqp_failover_urls
            .iter()
            .map(|url| redact_url(url))
            .collect();
        shown
    }

    /// The configuration as TOML with passwords in URLs masked, for logs.
    pub fn redacted(&self) -> String {
        toml::to_string_pretty(&self.masked()).unwrap_or_default()
    }
}

fn origin(path: Option<&Path>, built_in: &str) -> String {
    path.map_or_else(|| built_in.to_owned(), |p| p.display().to_string())
}

/// The keys of the top level of the configuration (sections included).
fn top_level_keys() -> BTreeSet<String> {
    Serialized::defaults(Config::default())
        .data()
        .ok()
        .and_then(|mut profiles| profiles.remove(&Profile::Default))
        .map(|dict| dict.into_keys().collect())
        .unwrap_or_default()
}

/// The `LIAISON_*` layer. A variable configures liaison when its name, less the prefix,
/// starts with a top-level key (`LIAISON_LISTEN`, `LIAISON_RELAY__LEASE`) or descends
/// into a section (`__`): those are refused when they name no key. Other `LIAISON_*`
/// names (`LIAISON_LOG`, the tests' `LIAISON_TEST_*`) belong to other tools.
struct Environment {
    /// (key path, value) of each configuring variable.
    settings: Vec<(Vec<String>, String)>,
}

impl Environment {
    fn new(env: impl IntoIterator<Item = (String, String)>, top_level: &BTreeSet<String>) -> Self {
        let mut settings = Vec::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let keys: Vec<String> = rest
                .split(ENV_NESTING)
                .map(str::to_ascii_lowercase)
                .collect();
            let nested = keys.len() > 1;
            if nested || top_level.contains(&keys[0]) {
                settings.push((keys, value));
            }
        }
        Self { settings }
    }
}

impl Provider for Environment {
    fn metadata(&self) -> Metadata {
        Metadata::named(ENV_LAYER).interpolater(|_profile, keys| {
            format!(
                "{ENV_PREFIX}{}",
                keys.join(ENV_NESTING).to_ascii_uppercase()
            )
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let mut root = Dict::new();
        for (keys, text) in &self.settings {
            // Numbers, booleans and `[a, b]` lists are typed as in TOML; anything else is
            // a string.
            let value: Value = text.parse().unwrap_or_else(|never| match never {});
            let (last, sections) = keys.split_last().expect("split yields one key at least");
            let mut dict = &mut root;
            for section in sections {
                let entry = dict
                    .entry(section.clone())
                    .or_insert_with(|| Dict::new().into());
                if entry.as_dict().is_none() {
                    *entry = Dict::new().into();
                }
                dict = match entry {
                    Value::Dict(_, inner) => inner,
                    _ => unreachable!("made a dictionary just above"),
                };
            }
            dict.insert(last.clone(), value);
        }
        Ok(Profile::Default.collect(root))
    }
}

impl Layered {
    /// The configuration in effect as TOML, passwords masked, each value followed by where
    /// it came from: `default`, the file's path, or the environment variable's name.
    pub fn show(&self) -> String {
        let shown = toml::Table::try_from(self.config.masked()).unwrap_or_default();
        let mut out =
            String::from("# The configuration in effect; after each value, where it came from.\n");
        self.render(&mut out, &shown, &mut Vec::new(), &defaults_table());
        out
    }

    fn render(
        &self,
        out: &mut String,
        table: &toml::Table,
        at: &mut Vec<String>,
        defaults: &BTreeSet<Vec<String>>,
    ) {
        for (key, value) in table.iter().filter(|(_, v)| !v.is_table()) {
            at.push(key.clone());
            out.push_str(&format!("{key} = {value} # {}\n", self.source_of(at)));
            at.pop();
        }
        // Settings left unset (no value: a built-in file, an optional path).
        for unset in defaults
            .iter()
            .filter(|keys| keys.len() == at.len() + 1 && keys.starts_with(at))
        {
            let key = unset.last().map(String::as_str).unwrap_or_default();
            if !table.contains_key(key) {
                out.push_str(&format!("# {key} is unset{}\n", unset_means(unset)));
            }
        }
        for (key, value) in table.iter() {
            if let toml::Value::Table(inner) = value {
                at.push(key.clone());
                out.push_str(&format!("\n[{}]\n", at.join(".")));
                self.render(out, inner, at, defaults);
                at.pop();
            }
        }
    }

    fn source_of(&self, keys: &[String]) -> String {
        match self.figment.find_metadata(&keys.join(".")) {
            Some(metadata) if metadata.name == ENV_LAYER => {
                metadata.interpolate(&Profile::Default, keys)
            }
            Some(Metadata {
                source: Some(Source::File(path)),
                ..
            }) => path.display().to_string(),
            _ => "default".to_owned(),
        }
    }
}

/// Every key path the defaults know of, unset ones included.
fn defaults_table() -> BTreeSet<Vec<String>> {
    fn walk(dict: &Dict, at: &mut Vec<String>, keys: &mut BTreeSet<Vec<String>>) {
        for (key, value) in dict {
            at.push(key.clone());
            if let Some(inner) = value.as_dict() {
                walk(inner, at, keys);
            } else {
                keys.insert(at.clone());
            }
            at.pop();
        }
    }
    let mut keys = BTreeSet::new();
    if let Some(dict) = Serialized::defaults(Config::default())
        .data()
        .ok()
        .and_then(|mut profiles| profiles.remove(&Profile::Default))
    {
        walk(&dict, &mut Vec::new(), &mut keys);
    }
    keys
}

/// What leaving a setting unset means, for `liaison config show`.
fn unset_means(keys: &[String]) -> String {
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    match keys.as_slice() {
        ["registry"] => format!(": {}", defaults::REGISTRY.origin()),
        ["policy"] => format!(": {}", defaults::POLICY.origin()),
        ["lifecycle"] => format!(": {}", defaults::LIFECYCLE.origin()),
        ["schemas"] => format!(": built-in {}", defaults::SCHEMAS_PATH),
        ["calendar_dir"] => ": the years built into the binary".to_owned(),
        ["revocation", "crl"] => ": <tls_dir>/crl.pem when it exists".to_owned(),
        ["erasure", "kek_dir"] => ": <tls_dir>/kek".to_owned(),
        ["erasure", "active_kek"] => ": the one key of kek_dir".to_owned(),
        _ => String::new(),
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

    fn file(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("liaison.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn the_example_file_parses_to_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/liaison.example.toml");
        let config = Config::load(Some(&path), []).unwrap();
        assert_eq!(config, Config::default());
        // It documents every key: all that have a default value are set in it.
        fn keys(table: &toml::Table, at: &str, out: &mut BTreeSet<String>) {
            for (key, value) in table {
                match value {
                    toml::Value::Table(inner) => keys(inner, &format!("{at}{key}."), out),
                    _ => {
                        out.insert(format!("{at}{key}"));
                    }
                }
            }
        }
        let (mut documented, mut every) = (BTreeSet::new(), BTreeSet::new());
        let text = std::fs::read_to_string(&path).unwrap();
        keys(&toml::from_str(&text).unwrap(), "", &mut documented);
        keys(
            &toml::Table::try_from(Config::default()).unwrap(),
            "",
            &mut every,
        );
        let missing: Vec<&String> = every.difference(&documented).collect();
        assert!(missing.is_empty(), "not in the example file: {missing:?}");
    }

    #[test]
    fn the_file_overrides_defaults_and_the_environment_overrides_the_file() {
        let (_dir, path) = file(
            "listen = \"127.0.0.1:1\"\nops_listen = \"127.0.0.1:2\"\n[relay]\nmax_attempts = 3\nbatch = 7\n",
        );
        let config = Config::load(Some(&path), []).unwrap();
        assert_eq!(config.listen.port(), 1);
        assert_eq!(config.relay.max_attempts, 3);
        assert_eq!(config.relay.batch, 7);
        assert_eq!(config.relay.lease, RelayConfig::default().lease);

        let config = Config::load(
            Some(&path),
            env(&[
                ("LIAISON_LISTEN", "127.0.0.1:0"),
                ("LIAISON_DATABASE_URL", "postgres://x@db/y"),
                ("LIAISON_RELAY__MAX_ATTEMPTS", "5"),
                ("LIAISON_BUS__DELIVERY_LIMIT", "7"),
                ("LIAISON_LEDGER__MAX_CONNECTIONS", "3"),
                ("LIAISON_ADMINS", "[gov, procuratorate]"),
            ]),
        )
        .unwrap();
        assert_eq!(config.listen.port(), 0);
        assert_eq!(config.ops_listen.port(), 2);
        assert_eq!(config.database_url, "postgres://x@db/y");
        assert_eq!(config.relay.max_attempts, 5);
        assert_eq!(
            config.relay.batch, 7,
            "the file's value beside the variable"
        );
        assert_eq!(config.bus_config().delivery_limit, 7);
        assert_eq!(config.ledger_config().max_connections, 3);
        assert_eq!(config.ledger_config().database_url, "postgres://x@db/y");
        let admins: Vec<&str> = config.admins.iter().map(|a| a.as_str()).collect();
        assert_eq!(admins, ["gov", "procuratorate"]);
    }

    #[test]
    fn variables_of_other_tools_are_left_alone() {
        let config = Config::load(
            None,
            env(&[
                ("LIAISON_LOG", "debug"),
                ("LIAISON_TEST_DATABASE_URL", "postgres://elsewhere"),
                ("PATH", "/bin"),
            ]),
        )
        .unwrap();
        assert_eq!(config, Config::default());
    }

    #[test]
    fn bad_values_are_refused_naming_the_variable() {
        let err = Config::load(None, env(&[("LIAISON_OPS_LISTEN", "nowhere")])).unwrap_err();
        assert!(err.to_string().contains("LIAISON_OPS_LISTEN"), "{err}");
        let err = Config::load(None, env(&[("LIAISON_RELAY__MAX_ATTEMPTS", "many")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("LIAISON_RELAY__MAX_ATTEMPTS: invalid type"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused_naming_them() {
        let (_dir, path) = file("listne = \"127.0.0.1:1\"\n");
        let err = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("listne"), "{err}");
        let (_dir, path) = file("[limits]\nmax_body = 1\n");
        let err = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("max_body"), "{err}");
        // The old millisecond keys are gone.
        let (_dir, path) = file("[relay]\nlease_ms = 1000\n");
        let err = Config::load(Some(&path), []).unwrap_err().to_string();
        let named = format!("{}: relay.lease_ms: unknown field", path.display());
        assert!(err.contains(&named), "{err}");
        let err = Config::load(None, env(&[("LIAISON_RELAY__MAX_ATTEMTPS", "3")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_attemtps"), "{err}");
        let err = Config::load(None, env(&[("LIAISON_RELAYS__MAX_ATTEMPTS", "3")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("relays"), "{err}");
        let err = Config::load(Some(Path::new("/nonexistent/liaison.toml")), [])
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/liaison.toml"), "{err}");
    }

    #[test]
    fn durations_are_human() {
        let (_dir, path) = file(
            "[relay]\nlease = \"2m\"\npoll_interval = \"250ms\"\n[revocation]\nreload_interval = \"0s\"\n",
        );
        let config = Config::load(Some(&path), env(&[("LIAISON_INBOX__LEASE", "1h 30m")])).unwrap();
        assert_eq!(config.relay.lease, Duration::from_secs(120));
        assert_eq!(config.relay.poll_interval, Duration::from_millis(250));
        assert_eq!(config.revocation.reload_interval, Duration::ZERO);
        assert_eq!(config.inbox.lease, Duration::from_secs(90 * 60));
        let (_dir, path) = file("[limits]\nidle_timeout = \"ten seconds\"\n");
        let err = Config::load(Some(&path), []).unwrap_err().to_string();
        assert!(err.contains("idle_timeout"), "{err}");
        let (_dir, path) = file("[limits]\nidle_timeout = 1000\n");
        assert!(
            Config::load(Some(&path), []).is_err(),
            "a bare number has no unit"
        );
        // Printed the same way, so that what `config show` prints loads again.
        let shown = Config::default().redacted();
        assert!(shown.contains("lease = \"30s\""), "{shown}");
        assert_eq!(
            toml::from_str::<Config>(&shown).unwrap(),
            Config::default().masked()
        );
    }

    #[test]
    fn show_names_where_each_value_came_from_with_passwords_masked() {
        let (_dir, path) =
            file("amqp_url = \"amqp://broker:s3cret@mq:5672/%2f\"\n[relay]\nbatch = 9\n");
        let layered = Config::layered(
            Some(&path),
            env(&[
                ("LIAISON_RELAY__MAX_ATTEMPTS", "4"),
                (
                    "LIAISON_DATABASE_URL",
                    "postgres://liaison:hunter2@db/ledger",
                ),
            ]),
        )
        .unwrap();
        let shown = layered.show();
        assert!(
            !shown.contains("s3cret") && !shown.contains("hunter2"),
            "{shown}"
        );
        let line = |prefix: &str| {
            shown
                .lines()
                .find(|l| l.starts_with(prefix))
                .unwrap_or_else(|| panic!("no {prefix} in {shown}"))
                .to_owned()
        };
        assert!(line("amqp_url = ").ends_with(&format!("# {}", path.display())));
        assert!(line("amqp_url = ").contains("broker:***@mq"));
        assert!(line("database_url = ").ends_with("# LIAISON_DATABASE_URL"));
        assert!(line("batch = 9").ends_with(&format!("# {}", path.display())));
        assert!(line("max_attempts = 4").ends_with("# LIAISON_RELAY__MAX_ATTEMPTS"));
        assert!(line("lease = \"30s\"").ends_with("# default"));
        assert!(line("# registry is unset").contains("built-in deploy/demo/agencies.toml"));
        assert!(shown.contains("\n[bus]\n"), "{shown}");
        // What it prints is a configuration file (comments aside).
        let reread: Config = toml::from_str(&shown).unwrap();
        assert_eq!(reread.relay.max_attempts, 4);
    }

    #[test]
    fn failover_urls_come_from_the_file_or_the_environment_and_are_masked() {
        assert!(Config::default().bus_config().failover_urls.is_empty());
        let (_dir, path) = file(
            "amqp_url = \"amqp://broker:s3cret@mq1:5672/prod\"\namqp_failover_urls = [\"amqp://broker:s3cret@mq2:5672/prod\", \"amqp://broker:s3cret@mq3:5672/prod\"]\n",
        );
        let layered = Config::layered(Some(&path), []).unwrap();
        let bus = layered.config.bus_config();
        assert_eq!(bus.url, "amqp://broker:s3cret@mq1:5672/prod");
        assert_eq!(
            bus.failover_urls,
            [
                "amqp://broker:s3cret@mq2:5672/prod",
                "amqp://broker:s3cret@mq3:5672/prod"
            ]
        );
        let shown = layered.show();
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("broker:***@mq3"), "{shown}");
        let reread: Config = toml::from_str(&shown).unwrap();
        assert_eq!(reread.amqp_failover_urls.len(), 2);

        // In a variable, as a list.
        let config = Config::load(
            None,
            env(&[(
                "LIAISON_AMQP_FAILOVER_URLS",
                "[\"amqp://broker:pw@mq2:5672/%2f\", \"amqp://broker:pw@mq3:5672/%2f\"]",
            )]),
        )
        .unwrap();
        assert_eq!(
            config.amqp_failover_urls,
            [
                "amqp://broker:pw@mq2:5672/%2f",
                "amqp://broker:pw@mq3:5672/%2f"
            ]
        );
        // An older configuration without the key still loads: one endpoint.
        let (_dir, path) = file("amqp_url = \"amqp://broker:pw@mq1:5672/prod\"\n");
        assert!(
            Config::load(Some(&path), [])
                .unwrap()
                .amqp_failover_urls
                .is_empty()
        );
    }

    #[test]
    fn the_calendar_directory_comes_from_the_file_or_the_environment() {
        assert_eq!(Config::default().calendar_dir, None);
        let (dir, path) = file("calendar_dir = \"/etc/liaison/calendars\"\n");
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
    fn unset_data_files_are_the_built_in_ones_and_files_replace_them() {
        let config = Config::default();
        let registry = config.load_registry().unwrap();
        config.load_policy(&registry).unwrap();
        assert!(
            config
                .load_catalogue()
                .unwrap()
                .get("pil.lead.v1")
                .is_some()
        );
        assert_eq!(
            config.registry_origin(),
            "built-in deploy/demo/agencies.toml"
        );

        let (_dir, path) = file("[[agencies]]\ncode = \"x\"\n");
        let config = Config::load(
            None,
            env(&[("LIAISON_REGISTRY", &path.display().to_string())]),
        )
        .unwrap();
        assert_eq!(config.registry_origin(), path.display().to_string());
        let err = config.load_registry().map(|_| ()).unwrap_err().to_string();
        assert!(err.contains(&path.display().to_string()), "{err}");
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
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            ..RelayConfig::default()
        };
        assert_eq!(relay.retry_delay(1), Duration::from_millis(100));
        assert_eq!(relay.retry_delay(2), Duration::from_millis(200));
        assert_eq!(relay.retry_delay(30), Duration::from_secs(1));
    }
}
