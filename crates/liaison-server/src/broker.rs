//! Starting and stopping the broker: load the data files, connect the real services,
//! bind the listeners, spawn the relay. `Broker::start` returns once everything listens,
//! with the bound addresses, so tests run the real server in-process on port 0.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use liaison_bus::Bus;
use liaison_core::{Clock, SystemClock};
use liaison_ledger::Ledger;
use liaison_schema::ParseLimits;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::http::connections::{ConnectionAcceptor, ConnectionCounts};
use crate::http::gateway::{Gateway, GatewayState};
use crate::http::guard::{self, Guard};
use crate::http::inbox::Inbox;
use crate::http::ops::{self, Ops};
use crate::http::routes;
use crate::pipeline::{Pipeline, Rules};
use crate::refusal_budget::RefusalBudget;
use crate::tls;
use crate::tls::revocation::Revocation;
use crate::workers::checkpointing;
use crate::workers::clock_watcher::{self, ClockWatcher, ScanReport};
use crate::workers::dead_letters::DeadLetterRecorder;
use crate::workers::intake::Intake;
use crate::workers::relay::Relay;
use liaison_pki::PkiLayout;

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Registry(#[from] liaison_core::RegistryError),
    #[error(transparent)]
    Policy(#[from] liaison_core::policy::PolicyLoadError),
    #[error("message catalogue: {0}")]
    Catalogue(String),
    #[error(
        "policy {path} names message type {type_}, which the catalogue in {schemas} does not have"
    )]
    PolicyType {
        path: String,
        type_: String,
        schemas: String,
    },
    #[error(transparent)]
    Lifecycle(#[from] liaison_core::LifecycleError),
    #[error("lifecycle {path}: {message}")]
    Clocks { path: String, message: String },
    #[error(transparent)]
    Calendar(#[from] crate::calendars::CalendarLoadError),
    #[error("witnesses: {0}")]
    Witness(String),
    #[error("ledger: {0}")]
    Ledger(#[from] liaison_ledger::LedgerError),
    #[error("ledger signing key: {0}")]
    SigningKey(String),
    #[error(transparent)]
    CheckpointKey(#[from] checkpointing::CheckpointKeyError),
    #[error("ledger: {0}; ledger.require_unprivileged_role is set")]
    PrivilegedRole(String),
    #[error("RabbitMQ: {0}")]
    Bus(#[from] liaison_bus::BusError),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// A running broker.
pub struct Broker {
    pub https_addr: SocketAddr,
    pub ops_addr: SocketAddr,
    cancel: CancellationToken,
    https: axum_server::Handle<SocketAddr>,
    bus: Bus,
    tasks: JoinSet<()>,
    watcher: Option<Arc<ClockWatcher>>,
    pipeline: Arc<Pipeline>,
    inbox: Arc<Inbox>,
}

impl Broker {
    pub async fn start(config: Config) -> Result<Broker, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock)).await
    }

    /// Starts the broker with its time taken from `clock` (entry times, receipt times,
    /// deadlines): tests move a [`liaison_core::ManualClock`] instead of waiting.
    pub async fn start_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> Result<Broker, StartError> {
        tls::install_crypto_provider();
        // Before any task runs, so that no event's metrics are lost.
        crate::telemetry::prometheus();
        checkpointing::check_origin(&config)?;
        let registry = Arc::new(config.load_registry()?);
        crate::telemetry::register_agencies(registry.codes());
        let policy = Arc::new(config.load_policy(&registry)?);
        let catalogue = Arc::new(
            config
                .load_catalogue()
                .map_err(|e| StartError::Catalogue(e.to_string()))?,
        );
        if let Some(type_) = policy.types().find(|t| catalogue.get(t).is_none()) {
            return Err(StartError::PolicyType {
                path: config.policy_origin(),
                type_: type_.to_owned(),
                schemas: config.schemas_origin(),
            });
        }
        let mut lifecycle = config.load_lifecycle()?;
        if let Some(day) = config.clocks.trial_day {
            tracing::warn!(
                clocks.trial_day = ?day,
                "clocks run in trial time: their due dates are not the law's"
            );
            lifecycle = lifecycle.in_trial_time(day);
        }
        let lifecycle = Arc::new(lifecycle);
        lifecycle.check_types(
            &config.lifecycle_origin(),
            catalogue.types().map(|t| t.name.as_str()),
        )?;
        clock_watcher::check_notices(&lifecycle, &catalogue).map_err(|message| {
            StartError::Clocks {
                path: config.lifecycle_origin(),
                message,
            }
        })?;
        let calendar = Arc::new(config.holiday_calendar()?);
        let witnesses = config
            .witnesses
            .iter()
            .map(|vkey| liaison_core::cosignature::CosignatureVerifier::from_verifier_key(vkey))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| StartError::Witness(e.to_string()))?;
        warn_of_missing_years(&lifecycle, &calendar, clock.now());
        let layout = PkiLayout::new(config.tls_dir.clone());
        for warning in liaison_pki::custody_warnings(&layout) {
            tracing::warn!(tls.dir = %layout.dir.display(), "{warning}");
        }
        let (revocation, server_tls) = Revocation::start(&layout, &config.revocation)
            .map_err(|e| StartError::Tls(e.to_string()))?;
        let signer = checkpointing::signer(&config).map_err(StartError::SigningKey)?;
        checkpointing::check_published_key(&config, &signer)?;

        let ledger = Ledger::open(config.ledger_config(), clock.clone()).await?;
        let ledger_role = check_role(&ledger, config.ledger.require_unprivileged_role).await?;
        let bus = Bus::connect(config.bus_config()).await?;
        bus.declare_topology(registry.codes()).await?;

        let pipeline = Arc::new(Pipeline::new(
            Rules {
                catalogue,
                registry,
                policy,
                lifecycle,
                calendar,
            },
            ledger.clone(),
            ParseLimits {
                max_depth: config.limits.max_depth,
            },
            RefusalBudget::new(config.limits.refusal_budget, config.limits.refusal_interval),
            clock.clone(),
        ));
        let inbox = Arc::new(Inbox::new(
            bus.clone(),
            ledger.clone(),
            config.inbox.clone(),
        ));
        let gateway = Gateway::new(GatewayState {
            pipeline: pipeline.clone(),
            ledger: ledger.clone(),
            inbox: inbox.clone(),
            clock: clock.clone(),
            max_body_bytes: config.limits.max_body_bytes,
            admins: config.admins.clone().into(),
            auditors: config.auditors.clone().into(),
            witnesses: witnesses.into(),
            bus: bus.clone(),
            checkpoint_key: signer.verifier(),
            console: Arc::default(),
            retention: Arc::new(config.retention.periods_seconds()),
        });
        let guard = Arc::new(Guard::new(&config.limits));
        let rate_limiter = guard.rate_limiter();
        let app = routes::router(gateway)
            .layer(axum::middleware::from_fn_with_state(guard, guard::guard))
            .layer(axum::middleware::from_fn_with_state(
                revocation.clone(),
                crate::tls::revocation::refuse_revoked,
            ));

        let cancel = CancellationToken::new();
        let mut tasks = JoinSet::new();
        let checkpointer = checkpointing::checkpointer(ledger.clone(), signer, &config);
        tasks.spawn(checkpointer.run(cancel.clone().cancelled_owned()));

        let https_listener =
            std::net::TcpListener::bind(config.listen).map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        https_listener
            .set_nonblocking(true)
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let https_addr = https_listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?;
        let https = axum_server::Handle::new();
        let rustls = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(server_tls));
        tasks.spawn(revocation.clone().watch(
            rustls.clone(),
            config.revocation.reload_interval,
            cancel.clone(),
        ));
        #[cfg(unix)]
        {
            // SIGHUP: read the CRL (and the server certificate) again now. Registered
            // before the listeners answer, so a supervisor that saw the broker up may
            // signal it.
            let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
                .map_err(|e| StartError::Tls(format!("cannot handle SIGHUP: {e}")))?;
            let (revocation, cancel) = (revocation.clone(), cancel.clone());
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        signal = hangup.recv() => match signal {
                            Some(()) => {
                                tracing::info!("SIGHUP: reloading the CRL");
                                revocation.reload_now();
                            }
                            None => return,
                        },
                    }
                }
            });
        }
        let handshake = config.limits.handshake_timeout;
        let connections = Arc::new(ConnectionCounts::new(
            config.limits.max_connections_per_agency,
        ));
        let header_read = config.limits.header_read_timeout;
        let mut server = axum_server::from_tcp_rustls(https_listener, rustls)
            .map_err(|source| StartError::Listen {
                addr: config.listen,
                source,
            })?
            // Answers are small and latency matters: no Nagle delay on them. After the
            // handshake, connections are counted per agency and watched for idleness.
            .map(|acceptor| {
                ConnectionAcceptor::new(
                    acceptor
                        .handshake_timeout(handshake)
                        .acceptor(axum_server::accept::NoDelayAcceptor::new()),
                    connections,
                    config.limits.idle_timeout,
                )
            })
            // A connection that completes the handshake and then says nothing is closed.
            .first_request_timeout(header_read)
            .handle(https.clone());
        // Idle kept-alive HTTP/1.1 connections and headers that trickle in are cut off.
        server
            .http_builder()
            .http1()
            .header_read_timeout(header_read);
        // One HTTP/2 connection may not carry more requests than this at once, nor make the
        // gateway accept and cancel streams without end (CVE-2023-44487, "rapid reset").
        server
            .http_builder()
            .http2()
            .max_concurrent_streams(config.limits.http2_max_concurrent_streams)
            .max_pending_accept_reset_streams(config.limits.http2_max_pending_accept_reset_streams);
        tasks.spawn(async move {
            if let Err(error) = server.serve(app.into_make_service()).await {
                tracing::error!(%error, "HTTPS gateway stopped");
            }
        });

        let ops_listener = tokio::net::TcpListener::bind(config.ops_listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: config.ops_listen,
                source,
            })?;
        let ops_addr = ops_listener
            .local_addr()
            .map_err(|source| StartError::Listen {
                addr: config.ops_listen,
                source,
            })?;
        let ops_app = ops::router(Ops {
            ledger: ledger.clone(),
            bus: bus.clone(),
            revocation: revocation.clone(),
            ledger_role,
            inbox: inbox.clone(),
            flows: pipeline
                .lifecycle()
                .flows()
                .iter()
                .map(|f| f.name.clone())
                .collect(),
        });
        let ops_cancel = cancel.clone();
        tasks.spawn(async move {
            let serve = axum::serve(ops_listener, ops_app)
                .with_graceful_shutdown(ops_cancel.cancelled_owned());
            if let Err(error) = serve.await {
                tracing::error!(%error, "operations port stopped");
            }
        });

        if config.intake.enabled {
            let intake = Intake {
                bus: bus.clone(),
                pipeline: pipeline.clone(),
                clock: clock.clone(),
                config: config.intake.clone(),
                max_body_bytes: config.limits.max_body_bytes,
                rate: rate_limiter,
            };
            tasks.spawn(intake.run(cancel.clone()));
        }
        let recorder = DeadLetterRecorder {
            bus: bus.clone(),
            ledger: ledger.clone(),
            user_prefix: config.intake.user_prefix.clone(),
        };
        tasks.spawn(recorder.run(cancel.clone()));

        tasks.spawn(
            crate::workers::retention::RetentionWorker {
                ledger: ledger.clone(),
                clock: clock.clone(),
                config: config.retention.clone(),
            }
            .run(cancel.clone()),
        );

        let watcher = config.clocks.watch.then(|| {
            Arc::new(ClockWatcher::new(
                pipeline.clone(),
                ledger.clone(),
                clock.clone(),
                config.clocks.clone(),
            ))
        });
        if let Some(watcher) = &watcher {
            tasks.spawn(watcher.clone().run(cancel.clone()));
        }

        let relay = Relay {
            ledger,
            bus: bus.clone(),
            config: config.relay.clone(),
            clock,
        };
        tasks.spawn(relay.run(cancel.clone()));

        // Refusal intervals close by the clock, with or without further refusals.
        let summaries = (pipeline.clone(), cancel.clone());
        let every = (config.limits.refusal_interval / 4)
            .clamp(Duration::from_millis(100), Duration::from_secs(5));
        tasks.spawn(async move {
            let (pipeline, cancel) = summaries;
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    _ = tick.tick() => pipeline.record_refusal_summaries(false).await,
                }
            }
        });

        tracing::info!(https.addr = %https_addr, ops.addr = %ops_addr, "liaison is serving");
        Ok(Broker {
            https_addr,
            ops_addr,
            cancel,
            https,
            bus,
            tasks,
            watcher,
            pipeline,
            inbox,
        })
    }

    /// Runs one scan of the deadline watcher now and says what it sent (`None` when
    /// `clocks.watch` is off); tests call it after moving their clock.
    pub async fn scan_clocks(&self) -> Option<Result<ScanReport, liaison_ledger::LedgerError>> {
        match &self.watcher {
            Some(watcher) => Some(watcher.scan().await),
            None => None,
        }
    }

    /// Stops intake, lets in-flight requests finish (up to `grace`), stops the relay
    /// between rounds, and closes the connections.
    pub async fn shutdown(mut self, grace: Duration) {
        self.https.graceful_shutdown(Some(grace));
        self.cancel.cancel();
        while self.tasks.join_next().await.is_some() {}
        // What was summarized of the intervals still open is recorded before stopping.
        self.pipeline.record_refusal_summaries(true).await;
        // Channels merely dropped close in the background, racing the connection's close;
        // the workers closed theirs as they stopped, the inboxes' are closed here.
        self.inbox.close().await;
        self.bus.close().await;
        tracing::info!("liaison stopped");
    }
}

/// Warns of every clock that, started now, would reach a year the holiday calendar has no
/// notice for: such clocks are recorded without a due date until the calendar is given.
fn warn_of_missing_years(
    lifecycle: &liaison_core::Lifecycle,
    calendar: &liaison_core::HolidayCalendar,
    now: time::OffsetDateTime,
) {
    for rule in lifecycle.clocks() {
        let periods = rule
            .period
            .into_iter()
            .chain(rule.period_when.iter().map(|(_, p)| *p));
        for period in periods {
            if let Err(error) = liaison_core::calendar::due(now, period, calendar) {
                tracing::warn!(
                    clock = %rule.name,
                    %period,
                    %error,
                    "a clock started now has no due date: add the holiday calendar (calendar_dir)"
                );
            }
        }
    }
}

/// Looks at the database role's privileges: a role that could disable the append-only
/// triggers is a warning, or a refusal to start when `required` says so. A failure to
/// look is only logged (`None`): it says nothing about the role.
async fn check_role(
    ledger: &Ledger,
    required: bool,
) -> Result<Option<liaison_ledger::RolePrivileges>, StartError> {
    match ledger.role_privileges().await {
        Ok(role) if role.is_privileged() && required => {
            Err(StartError::PrivilegedRole(role.describe()))
        }
        Ok(role) => {
            if role.is_privileged() {
                tracing::warn!(db.role = %role.role, "{}", role.describe());
            }
            Ok(Some(role))
        }
        Err(error) if required => Err(StartError::PrivilegedRole(format!(
            "cannot read the privileges of the database role: {error}"
        ))),
        Err(error) => {
            tracing::warn!(%error, "cannot read the privileges of the database role");
            Ok(None)
        }
    }
}

/// Runs the broker until `shutdown` completes.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> Result<(), StartError> {
    let broker = Broker::start(config).await?;
    shutdown.await;
    broker.shutdown(Duration::from_secs(10)).await;
    Ok(())
}
