//! The gateway's connections, counted per agency once the TLS handshake has named it.
//!
//! [`ConnectionAcceptor`] wraps the rustls acceptor: after the handshake it reads the
//! agency from the verified client certificate, counts the connection against that
//! agency's cap, and hands every request on the connection a [`Connection`] (a request
//! extension) that the [guard](crate::http::guard) consults. A connection over its agency's cap
//! is not cut at once: its first request is answered `429 concurrency_limited` and the
//! connection is then closed gracefully, so the client learns why.
//!
//! The same record watches for idleness: HTTP/2 connections have no idle timeout of their
//! own in hyper (HTTP/1.1 ones end on the header-read timeout), so a connection with no
//! request in progress for `idle_timeout` is closed gracefully (GOAWAY), and the slot it
//! held is freed.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};
use std::task::{Context, Poll};
use std::time::Duration;

use axum_server::ConnectionShutdown;
use axum_server::accept::Accept;
use liaison_core::AgencyCode;
use rustls_pki_types::CertificateDer;
use tokio::time::Instant;

use crate::tls;

/// Connections open per agency, against a cap.
pub struct ConnectionCounts {
    max_per_agency: usize,
    open: Mutex<HashMap<AgencyCode, usize>>,
}

impl ConnectionCounts {
    pub fn new(max_per_agency: usize) -> Self {
        Self {
            max_per_agency: max_per_agency.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one slot of `agency`, or `false` when it holds its cap already.
    fn try_open(&self, agency: &AgencyCode) -> bool {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(agency.clone()).or_insert(0);
        if *count >= self.max_per_agency {
            return false;
        }
        *count += 1;
        true
    }

    fn close(&self, agency: &AgencyCode) {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(agency) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                // The map holds only agencies with connections open.
                open.remove(agency);
            }
        }
    }

    /// Connections `agency` has open and counted.
    pub fn open(&self, agency: &AgencyCode) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(agency).copied().unwrap_or(0)
    }
}

/// One accepted connection; every request on it carries an `Arc<Connection>`.
pub struct Connection {
    agency: Option<AgencyCode>,
    /// Counted against the agency's cap; a connection over the cap is not.
    counted: Option<Arc<ConnectionCounts>>,
    in_flight: AtomicUsize,
    last_active: Mutex<Instant>,
    shutdown: Mutex<Option<ConnectionShutdown>>,
}

impl Connection {
    fn open(counts: &Arc<ConnectionCounts>, agency: Option<AgencyCode>) -> Self {
        let counted = agency
            .as_ref()
            .filter(|agency| counts.try_open(agency))
            .map(|_| counts.clone());
        Self {
            agency,
            counted,
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            shutdown: Mutex::new(None),
        }
    }

    /// The agency's cap on connections was reached when this one was accepted.
    pub fn over_cap(&self) -> bool {
        self.agency.is_some() && self.counted.is_none()
    }

    pub fn agency(&self) -> Option<&AgencyCode> {
        self.agency.as_ref()
    }

    /// Keeps the handle that closes this connection (axum-server gives it to each
    /// request), for the idle watch.
    pub fn remember_shutdown(&self, shutdown: &ConnectionShutdown) {
        let mut slot = self.shutdown.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(shutdown.clone());
        }
    }

    /// Marks a request in progress until the returned guard is dropped.
    pub fn busy(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        Busy(self.clone())
    }

    /// When the connection becomes idle for `idle`, if no request is in progress.
    fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return None;
        }
        let last = *self
            .last_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        Some(last + idle)
    }

    fn close_gracefully(&self) {
        if let Some(shutdown) = self
            .shutdown
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
        {
            shutdown.graceful_shutdown();
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let (Some(counts), Some(agency)) = (&self.counted, &self.agency) {
            counts.close(agency);
        }
    }
}

/// A request in progress on a [`Connection`].
pub struct Busy(Arc<Connection>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self
            .0
            .last_active
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Closes `connection` once it has been idle for `idle`; ends when the connection does.
async fn watch_idle(connection: Weak<Connection>, idle: Duration) {
    loop {
        let deadline = match connection.upgrade() {
            None => return,
            Some(connection) => connection.idle_deadline(idle),
        };
        // While a request is in progress, look again after one idle period.
        tokio::time::sleep_until(deadline.unwrap_or_else(|| Instant::now() + idle)).await;
        let Some(connection) = connection.upgrade() else {
            return;
        };
        if connection
            .idle_deadline(idle)
            .is_some_and(|deadline| deadline <= Instant::now())
        {
            tracing::debug!(
                agency.code = connection.agency.as_ref().map(AgencyCode::as_str),
                "closing an idle connection"
            );
            connection.close_gracefully();
            return;
        }
    }
}

/// Wraps the rustls acceptor: see the module documentation.
#[derive(Clone)]
pub struct ConnectionAcceptor<A> {
    inner: A,
    counts: Arc<ConnectionCounts>,
    idle_timeout: Duration,
}

impl<A> ConnectionAcceptor<A> {
    pub fn new(inner: A, counts: Arc<ConnectionCounts>, idle_timeout: Duration) -> Self {
        Self {
            inner,
            counts,
            idle_timeout,
        }
    }
}

impl<A, I, S, IO> Accept<I, S> for ConnectionAcceptor<A>
where
    A: Accept<I, S, Stream = tokio_rustls::server::TlsStream<IO>>,
    A::Future: Send + 'static,
    A::Service: Send + 'static,
    IO: Send + 'static,
{
    type Stream = A::Stream;
    type Service = ConnectionService<A::Service>;
    type Future =
        Pin<Box<dyn Future<Output = io::Result<(Self::Stream, Self::Service)>> + Send + 'static>>;

    fn accept(&self, stream: I, service: S) -> Self::Future {
        let accepted = self.inner.accept(stream, service);
        let counts = self.counts.clone();
        let idle = self.idle_timeout;
        Box::pin(async move {
            let (stream, service) = accepted.await?;
            let agency = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|leaf| tls::agency_from_cert(&CertificateDer::from(leaf.as_ref())));
            let connection = Arc::new(Connection::open(&counts, agency));
            if connection.over_cap() {
                tracing::warn!(
                    agency.code = connection.agency.as_ref().map(AgencyCode::as_str),
                    "connection over the agency's cap; it is answered 429 and closed"
                );
            }
            tokio::spawn(watch_idle(Arc::downgrade(&connection), idle));
            Ok((
                stream,
                ConnectionService {
                    inner: service,
                    connection,
                },
            ))
        })
    }
}

/// Adds the connection's [`Connection`] to each request's extensions.
#[derive(Clone)]
pub struct ConnectionService<S> {
    inner: S,
    connection: Arc<Connection>,
}

impl<S, B> tower::Service<http::Request<B>> for ConnectionService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        request.extensions_mut().insert(self.connection.clone());
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> AgencyCode {
        AgencyCode::new(s).unwrap()
    }

    #[test]
    fn connections_over_an_agencys_cap_are_marked_and_free_no_slot() {
        let counts = Arc::new(ConnectionCounts::new(2));
        let first = Connection::open(&counts, Some(code("eco")));
        let second = Connection::open(&counts, Some(code("eco")));
        let third = Connection::open(&counts, Some(code("eco")));
        let other = Connection::open(&counts, Some(code("market")));
        assert!(!first.over_cap() && !second.over_cap() && !other.over_cap());
        assert!(third.over_cap());
        assert_eq!(counts.open(&code("eco")), 2);
        drop(third);
        assert_eq!(
            counts.open(&code("eco")),
            2,
            "the uncounted one frees nothing"
        );
        drop(first);
        assert_eq!(counts.open(&code("eco")), 1);
        assert!(!Connection::open(&counts, Some(code("eco"))).over_cap());
        // Without an agency nothing is counted (such requests are refused later).
        assert!(!Connection::open(&counts, None).over_cap());
        drop((second, other));
        assert_eq!(counts.open(&code("eco")), 0);
    }

    #[test]
    fn a_connection_is_idle_only_without_requests_in_progress() {
        let counts = Arc::new(ConnectionCounts::new(1));
        let connection = Arc::new(Connection::open(&counts, Some(code("eco"))));
        let idle = Duration::from_secs(5);
        let busy = connection.busy();
        let long_poll = connection.busy();
        assert_eq!(connection.idle_deadline(idle), None);
        drop(busy);
        assert_eq!(
            connection.idle_deadline(idle),
            None,
            "a long poll is not idleness"
        );
        let before = Instant::now();
        drop(long_poll);
        let deadline = connection.idle_deadline(idle).unwrap();
        assert!(deadline >= before + idle && deadline <= Instant::now() + idle);
    }
}
