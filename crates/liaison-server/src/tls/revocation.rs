//! The CRL in force while the broker runs.
//!
//! At start the CRL is loaded before anything listens; a configured CRL file that is
//! missing stops the start (fail closed: a broker told to enforce revocations does not
//! run without them). Afterwards a watcher reads the file every
//! `[revocation] reload_interval` and on SIGHUP; a new version is checked (signed by
//! the CA) and swapped into the gateway's rustls configuration, so new handshakes use it
//! without a restart. A file that disappears or cannot be used never lifts revocations:
//! the last good CRL stays in force and `/readyz` reports the problem, as it reports a CRL
//! whose `nextUpdate` has passed.
//!
//! Connections established before a revocation keep their verified handshake; the
//! per-request check [`refuse_revoked`] answers their requests `401 unauthenticated`.

use liaison_core::FileError;
use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{Request, State as AxumState};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::tls_rustls::RustlsConfig;
use liaison_core::RejectCode;
use rustls::ServerConfig;
use time::OffsetDateTime;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::config::RevocationConfig;
use crate::http::problem::Problem;
use crate::tls::{self, TlsError};
use liaison_pki::PkiLayout;
use liaison_pki::crl::{self, Crl, CrlError, CrlInfo};

/// The CRL source of one broker and the state `/readyz` reports. Cheap to clone.
#[derive(Clone)]
pub struct Revocation {
    layout: PkiLayout,
    path: PathBuf,
    state: Arc<Mutex<State>>,
    reload: Arc<Notify>,
}

#[derive(Default)]
struct State {
    /// The CRL in force (`None`: none configured and none written yet).
    in_force: Option<CrlInfo>,
    /// Serial numbers (DER bytes) the CRL in force lists.
    revoked: HashSet<Vec<u8>>,
    /// The file's bytes as last read (`None`: it did not exist), to notice a change.
    seen: Option<Vec<u8>>,
    /// Why the file as last read is not in force.
    problem: Option<String>,
}

impl Revocation {
    /// Loads the CRL and builds the gateway's first rustls configuration from it.
    pub fn start(
        layout: &PkiLayout,
        config: &RevocationConfig,
    ) -> Result<(Revocation, ServerConfig), TlsError> {
        let path = config.crl.clone().unwrap_or_else(|| crl::crl_path(layout));
        let seen = read_bytes(&path)?;
        if seen.is_none() && config.crl.is_some() {
            return Err(CrlError::Missing { path }.into());
        }
        let loaded = crl::read(&path, &layout.ca_cert())?;
        let server = tls::server_config_with_crls(
            layout,
            loaded.as_ref().map(|c| c.ders.clone()).unwrap_or_default(),
        )?;
        let revocation = Revocation {
            layout: layout.clone(),
            path,
            state: Arc::default(),
            reload: Arc::new(Notify::new()),
        };
        {
            let mut state = revocation.lock();
            state.seen = seen;
            if let Some(crl) = &loaded {
                state.apply(crl);
            }
        }
        if let Some(crl) = &loaded {
            log_in_force(&crl.info);
        }
        Ok((revocation, server))
    }

    /// Asks the watcher to read the CRL file now (what SIGHUP does).
    pub fn reload_now(&self) {
        self.reload.notify_one();
    }

    /// Reads the CRL file every `interval` (never when zero) and whenever
    /// [`Self::reload_now`] is called, swapping a new CRL into `rustls`, until `cancel`.
    pub async fn watch(self, rustls: RustlsConfig, interval: Duration, cancel: CancellationToken) {
        loop {
            let forced = tokio::select! {
                () = cancel.cancelled() => return,
                () = self.reload.notified() => true,
                () = tokio::time::sleep(interval), if !interval.is_zero() => false,
            };
            let this = self.clone();
            let rebuilt = tokio::task::spawn_blocking(move || this.check(forced)).await;
            if let Ok(Some(server)) = rebuilt {
                rustls.reload_from_config(Arc::new(server));
            }
        }
    }

    /// Reads the file; returns a new server configuration when it changed (or `forced`)
    /// and is usable.
    fn check(&self, forced: bool) -> Option<ServerConfig> {
        let bytes = match read_bytes(&self.path) {
            Ok(bytes) => bytes,
            Err(error) => {
                self.refuse(None, error.to_string());
                return None;
            }
        };
        {
            let state = self.lock();
            if !forced && state.seen == bytes {
                return None;
            }
        }
        if bytes.is_none() {
            let had_one = self.lock().in_force.is_some();
            if had_one {
                self.refuse(
                    None,
                    format!(
                        "{} disappeared; the CRL loaded before stays in force",
                        self.path.display()
                    ),
                );
            } else {
                self.lock().seen = None;
            }
            return None;
        }
        let built = crl::read(&self.path, &self.layout.ca_cert())
            .map_err(TlsError::from)
            .and_then(|loaded| {
                let crl = loaded.ok_or_else(|| CrlError::Missing {
                    path: self.path.clone(),
                })?;
                let server = tls::server_config_with_crls(&self.layout, crl.ders.clone())?;
                Ok((crl, server))
            });
        match built {
            Ok((crl, server)) => {
                let mut state = self.lock();
                state.seen = bytes;
                state.apply(&crl);
                drop(state);
                log_in_force(&crl.info);
                Some(server)
            }
            Err(error) => {
                self.refuse(
                    bytes,
                    format!("{error}; the CRL loaded before stays in force"),
                );
                None
            }
        }
    }

    fn refuse(&self, seen: Option<Vec<u8>>, problem: String) {
        tracing::warn!(crl.path = %self.path.display(), %problem, "CRL not reloaded");
        let mut state = self.lock();
        state.seen = seen;
        state.problem = Some(problem);
    }

    /// `Ok` with a short description when the CRL in force is usable at `now`; `Err` with
    /// the reason when the broker should not count as ready: the CRL's `nextUpdate` has
    /// passed, or a new CRL file could not be put in force.
    pub fn readiness(&self, now: OffsetDateTime) -> Result<String, String> {
        let state = self.lock();
        if let Some(problem) = &state.problem {
            return Err(problem.clone());
        }
        match &state.in_force {
            None => Ok("none".to_owned()),
            Some(info) if info.expired_at(now) => Err(format!(
                "{} expired: its nextUpdate {} has passed; sign a fresh one (`liaison pki refresh-crl`)",
                info.path.display(),
                info.next_update.map(|t| t.to_string()).unwrap_or_default()
            )),
            Some(_) => Ok("ok".to_owned()),
        }
    }

    /// Whether the CRL in force lists `serial` (DER bytes of a certificate's serial
    /// number). For requests on connections whose handshake predates the revocation.
    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        let state = self.lock();
        !state.revoked.is_empty() && state.revoked.contains(serial)
    }

    /// Whether the CRL in force lists anything (most requests then skip the check).
    fn lists_any(&self) -> bool {
        !self.lock().revoked.is_empty()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Middleware: a request whose client certificate the CRL in force lists gets `401
/// unauthenticated`. New connections with such a certificate fail the handshake; this
/// covers connections (HTTP/2 or kept-alive) opened before the certificate was revoked.
pub async fn refuse_revoked(
    AxumState(revocation): AxumState<Revocation>,
    request: Request,
    next: Next,
) -> Response {
    if revocation.lists_any()
        && let Some(serial) = tls::peer_serial(request.extensions())
        && revocation.is_revoked(&serial)
    {
        return Problem::new(
            RejectCode::Unauthenticated,
            "the client certificate has been revoked",
        )
        .into_response();
    }
    next.run(request).await
}

impl State {
    fn apply(&mut self, crl: &Crl) {
        self.in_force = Some(crl.info.clone());
        self.revoked = crl.serials.iter().cloned().collect();
        self.problem = None;
    }
}

fn log_in_force(info: &CrlInfo) {
    tracing::info!(
        crl.path = %info.path.display(),
        crl.number = info.number,
        crl.revoked = info.revoked,
        crl.next_update = %info.next_update.map(|t| t.to_string()).unwrap_or_default(),
        "CRL in force"
    );
    if info.expired_at(OffsetDateTime::now_utc()) {
        tracing::warn!(crl.path = %info.path.display(), "the CRL's nextUpdate has passed: /readyz reports not ready until a fresh CRL is in place");
    }
}

fn read_bytes(path: &std::path::Path) -> Result<Option<Vec<u8>>, CrlError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(FileError::new("read", path, source).into()),
    }
}
