//! The gateway's guards against overload and hostile clients, applied to every HTTPS
//! request before it reaches a handler:
//!
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
use liaison_core::{AgencyCode, RejectCode};
use tokio::sync::Semaphore;

use crate::config::Limits;
use crate::problem::Problem;
use crate::tls;

/// The shared state of [`guard`].
pub struct Guard {
    permits: Arc<Semaphore>,
    max_concurrent: usize,
    request_timeout: Duration,
    rate: Option<Arc<RateLimiter>>,
}

impl Guard {
    pub fn new(limits: &Limits) -> Self {
        let max_concurrent = limits.max_concurrent_requests.max(1);
        Self {
            permits: Arc::new(Semaphore::new(max_concurrent)),
            max_concurrent,
            request_timeout: Duration::from_millis(limits.request_timeout_ms),
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
