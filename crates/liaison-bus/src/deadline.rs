//! Every await on the broker goes through [`within`]: a connection that is dying or
//! recovering can leave lapin futures pending forever (lapin issues #409, #450).

use std::future::Future;
use std::time::Duration;

use lapin::Channel;

use crate::BusError;

/// Runs one lapin operation under `limit`, naming it in both failure cases.
pub(crate) async fn within<T>(
    limit: Duration,
    operation: impl Into<String>,
    future: impl Future<Output = lapin::Result<T>>,
) -> Result<T, BusError> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(source)) => Err(BusError::operation(operation, source)),
        Err(_elapsed) => Err(BusError::Timeout {
            operation: operation.into(),
            after: limit,
        }),
    }
}

/// Closes `channel` (`what` names it in the log) and waits, under `limit`, until RabbitMQ
/// has closed it. A channel merely dropped closes in the background, and when its
/// connection closes first, lapin logs that late close as a connection error. A channel
/// already closed needs nothing; a failure to close only logs, the channel is gone either
/// way.
pub(crate) async fn close_channel(channel: &Channel, limit: Duration, what: &str) {
    if !channel.status().connected() {
        return;
    }
    let closing = within(
        limit,
        format!("close {what}"),
        channel.close(200, "closed by liaison".into()),
    );
    if let Err(error) = closing.await {
        tracing::debug!(%error, "closing {what} failed");
    }
}
