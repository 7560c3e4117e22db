//! Long-running consumers outlive their channels: RabbitMQ restarts, connections drop.

use std::future::Future;
use std::time::Duration;

use liaison_bus::BusError;
use tokio_util::sync::CancellationToken;

const FIRST_PAUSE: Duration = Duration::from_millis(200);
const MAX_PAUSE: Duration = Duration::from_secs(5);

/// Runs `consume` until it returns `Ok` (it does so when cancelled) or `cancel` fires.
/// An error — a lost channel or connection — is logged and `consume` starts again after a
/// pause that doubles up to five seconds, so a RabbitMQ that is down is not hammered.
pub async fn reopening<F, Fut>(what: &'static str, cancel: &CancellationToken, mut consume: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), BusError>>,
{
    let mut pause = FIRST_PAUSE;
    while !cancel.is_cancelled() {
        match consume().await {
            Ok(()) => break,
            Err(error) => {
                tracing::warn!(%error, consumer = what, "consumer stopped; reopening");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(pause) => {}
                }
                pause = (pause * 2).min(MAX_PAUSE);
            }
        }
    }
}
