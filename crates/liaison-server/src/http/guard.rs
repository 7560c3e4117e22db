//! The gateway's guards against overload and hostile clients, applied to every HTTPS
//! request before it reaches a handler:
//!
//! - per agency, caps on requests in progress, on waiting long polls (`GET /v1/inbox`) and
//!   on open connections (counted in [`crate::http::connections`]): past them,
//!   `429 concurrency_limited`, so that one agency cannot take the capacity of the others;
//! - a cap on requests in progress: past it, `503 unavailable` at once (with `Retry-After`)
//!   rather than a queue that grows until memory or the clients' patience runs out;
//! - a per-agency token bucket on `POST /v1/messages`: past it, `429 rate_limited` (AMQP
//!   intake draws from the same buckets, see `intake.rs`);
//! - a deadline for the whole request, body included, so that a client dribbling its body
//!   gets `408 request_timeout` instead of holding a slot for ever.
//!
//! Refusals here are not recorded in the ledger: a flood must not be able to fill it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum_server::ConnectionShutdown;
use liaison_core::{AgencyCode, RejectCode};
use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::http::connections::Connection;
use crate::http::problem::Problem;
use crate::tls;

/// The shared state of [`guard`].
pub struct Guard {
    agencies: Arc<AgencyCounts>,
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    request_timeout: Duration,
    rate: Option<Arc<RateLimiter>>,
}

impl Guard {
    pub fn new(limits: &Limits) -> Self {
        let max_concurrent = limits.max_concurrent_requests.max(1);
        Self {
            agencies: Arc::new(AgencyCounts {
                max_requests: limits.max_requests_per_agency.max(1),
                max_long_polls: limits.max_long_polls_per_agency.max(1),
                counts: Mutex::new(HashMap::new()),
            }),
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            request_timeout: limits.request_timeout,
            rate: (limits.rate_per_second > 0)
                .then(|| Arc::new(RateLimiter::new(limits.rate_per_second, limits.rate_burst))),
        }
    }

    /// The per-agency buckets, for AMQP intake to draw from the same ones: an agency
    /// gets one rate however it submits.
    pub fn rate_limiter(&self) -> Option<Arc<RateLimiter>> {
        self.rate.clone()
    }
}

/// axum middleware (`from_fn_with_state`) enforcing the [`Guard`].
pub async fn guard(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let connection = request.extensions().get::<Arc<Connection>>().cloned();
    let shutdown = request.extensions().get::<ConnectionShutdown>().cloned();
    if let (Some(connection), Some(shutdown)) = (&connection, &shutdown) {
        connection.remember_shutdown(shutdown);
        if connection.over_cap() {
            // Answered, then closed: the client learns why instead of seeing a reset.
            shutdown.graceful_shutdown();
            return concurrency_limited(format!(
                "agency {} holds as many connections as it may; reuse one of them",
                connection.agency().map_or("?", AgencyCode::as_str)
            ));
        }
    }
    let _busy = connection.as_ref().map(Connection::busy);
    // Per agency first: an agency over its own caps must not take a global permit.
    let _agency_slot = match tls::peer_agency(request.extensions()) {
        Some(agency) => match guard.agencies.try_take(&agency, is_long_poll(&request)) {
            Ok(slot) => Some(slot),
            Err(refusal) => return concurrency_limited(refusal),
        },
        None => None,
    };
    let Ok(_permit) = guard.permits.clone().try_acquire_owned() else {
        return Problem::new(
            RejectCode::Unavailable,
            format!(
                "the broker is handling {} requests already; retry shortly",
                guard.max_concurrent
            ),
        )
        .into_response();
    };
    if let Some(rate) = &guard.rate
        && is_submission(&request)
        && let Some(agency) = tls::peer_agency(request.extensions())
        && let Err(wait) = rate.take(&agency, Instant::now())
    {
        return rate_limited(&agency, wait);
    }
    match tokio::time::timeout(guard.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_elapsed) => Problem::new(
            RejectCode::RequestTimeout,
            format!(
                "the request did not arrive and complete within {} ms",
                guard.request_timeout.as_millis()
            ),
        )
        .into_response(),
    }
}

fn is_long_poll(request: &Request) -> bool {
    request.method() == Method::GET && request.uri().path() == "/v1/inbox"
}

fn concurrency_limited(detail: String) -> Response {
    Problem::new(RejectCode::ConcurrencyLimited, detail).into_response()
}

/// Requests and long polls each agency has in progress.
struct AgencyCounts {
    max_requests: usize,
    max_long_polls: usize,
    counts: Mutex<HashMap<AgencyCode, InProgress>>,
}

#[derive(Default)]
struct InProgress {
    requests: usize,
    long_polls: usize,
}

impl AgencyCounts {
    /// One more request of `agency` in progress, or why not.
    fn try_take(
        self: &Arc<Self>,
        agency: &AgencyCode,
        long_poll: bool,
    ) -> Result<AgencySlot, String> {
        // Plain counters: a poisoned lock still holds valid state.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let now = counts.entry(agency.clone()).or_default();
        if now.requests >= self.max_requests {
            return Err(format!(
                "agency {agency} has {} requests in progress, as many as it may; retry when one has finished",
                self.max_requests
            ));
        }
        if long_poll && now.long_polls >= self.max_long_polls {
            return Err(format!(
                "agency {agency} has {} inbox long polls waiting, as many as it may; pull with fewer at once",
                self.max_long_polls
            ));
        }
        now.requests += 1;
        now.long_polls += usize::from(long_poll);
        Ok(AgencySlot {
            counts: self.clone(),
            agency: agency.clone(),
            long_poll,
        })
    }
}

/// A request counted against its agency until dropped.
struct AgencySlot {
    counts: Arc<AgencyCounts>,
    agency: AgencyCode,
    long_poll: bool,
}

impl Drop for AgencySlot {
    fn drop(&mut self) {
        let mut counts = self
            .counts
            .counts
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(now) = counts.get_mut(&self.agency) {
            now.requests = now.requests.saturating_sub(1);
            now.long_polls = now.long_polls.saturating_sub(usize::from(self.long_poll));
            if now.requests == 0 {
                // The map holds only agencies with requests in progress.
                counts.remove(&self.agency);
            }
        }
    }
}

fn is_submission(request: &Request) -> bool {
    request.method() == Method::POST && request.uri().path() == "/v1/messages"
}

fn rate_limited(agency: &AgencyCode, wait: Duration) -> Response {
    let mut response = Problem::new(
        RejectCode::RateLimited,
        format!("agency {agency} is over its submission rate; retry after the Retry-After delay"),
    )
    .into_response();
    // Whole seconds, rounded up, never zero: a client that retries at once is refused again.
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    if let Ok(value) = HeaderValue::from_str(&seconds.max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

/// One token bucket per agency: `rate` tokens a second, holding at most `burst`.
pub struct RateLimiter {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<AgencyCode, Bucket>>,
}

struct Bucket {
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    pub fn new(rate_per_second: u32, burst: u32) -> Self {
        let rate = f64::from(rate_per_second.max(1));
        Self {
            rate,
            // A burst below one token would refuse everything.
            burst: f64::from(burst).max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token of `agency` at `now`, or says how long until one is there.
    pub fn take(&self, agency: &AgencyCode, now: Instant) -> Result<(), Duration> {
        // The map only holds plain numbers, so a poisoned lock still holds valid state.
        let mut buckets = self.buckets.lock().unwrap_or_else(PoisonError::into_inner);
        let bucket = buckets.entry(agency.clone()).or_insert(Bucket {
            tokens: self.burst,
            refilled: now,
        });
        let elapsed = now.saturating_duration_since(bucket.refilled).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(self.burst);
        bucket.refilled = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.rate))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(s: &str) -> AgencyCode {
        AgencyCode::new(s).unwrap()
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let limiter = RateLimiter::new(10, 3);
        let start = Instant::now();
        for _ in 0..3 {
            assert!(limiter.take(&code("eco"), start).is_ok());
        }
        let wait = limiter.take(&code("eco"), start).unwrap_err();
        assert!(
            wait > Duration::from_millis(90) && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another agency has its own bucket.
        assert!(limiter.take(&code("market"), start).is_ok());
        // A tenth of a second later one token is back, and only one.
        let later = start + Duration::from_millis(100);
        assert!(limiter.take(&code("eco"), later).is_ok());
        assert!(limiter.take(&code("eco"), later).is_err());
    }

    #[test]
    fn each_agency_has_its_own_caps_on_requests_and_long_polls() {
        let limits = Limits {
            max_requests_per_agency: 3,
            max_long_polls_per_agency: 2,
            ..Limits::default()
        };
        let guard = Guard::new(&limits);
        let agencies = &guard.agencies;
        let polls: Vec<_> = (0..2)
            .map(|_| agencies.try_take(&code("eco"), true).unwrap())
            .collect();
        let Err(third_poll) = agencies.try_take(&code("eco"), true) else {
            panic!("a third long poll was let through");
        };
        assert!(third_poll.contains("long polls"), "{third_poll}");
        // Other requests of the agency still pass, up to its cap on requests.
        let submission = agencies.try_take(&code("eco"), false).unwrap();
        assert!(agencies.try_take(&code("eco"), false).is_err());
        // Another agency is not affected.
        assert!(agencies.try_take(&code("market"), true).is_ok());
        drop(polls);
        assert!(agencies.try_take(&code("eco"), true).is_ok());
        drop(submission);
        assert!(
            agencies
                .counts
                .lock()
                .unwrap()
                .keys()
                .all(|agency| agency.as_str() != "eco"),
            "agencies without requests in progress leave the map"
        );
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_burst() {
        let limiter = RateLimiter::new(1000, 2);
        let start = Instant::now();
        assert!(limiter.take(&code("eco"), start).is_ok());
        let much_later = start + Duration::from_secs(60);
        assert!(limiter.take(&code("eco"), much_later).is_ok());
        assert!(limiter.take(&code("eco"), much_later).is_ok());
        assert!(limiter.take(&code("eco"), much_later).is_err());
    }
}
