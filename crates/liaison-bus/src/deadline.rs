//! Every await on the broker goes through [`within`]: a connection that is dying or
//! recovering can leave lapin futures pending forever (lapin issues #409, #450).

use std::future::Future;
use std::time::Duration;

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
