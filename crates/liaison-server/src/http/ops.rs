//! The plain-HTTP operations port: liveness and readiness for supervisors and load balancers.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use liaison_bus::Bus;
use liaison_ledger::Ledger;
use serde_json::json;
use time::OffsetDateTime;

use crate::tls::revocation::Revocation;

#[derive(Clone)]
pub struct Ops {
    pub ledger: Ledger,
    pub bus: Bus,
    /// The CRL in force: an expired one, or a new file that could not be used, makes the
    /// broker not ready.
    pub revocation: Revocation,
    /// The database role's privileges as found at start (`None`: could not be read).
    pub ledger_role: Option<liaison_ledger::RolePrivileges>,
}

pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .with_state(ops)
}

/// Ready means able to accept (the ledger answers), to deliver (RabbitMQ is connected) and
/// to refuse revoked certificates with current information (the CRL in force is the file's
/// latest version and its `nextUpdate` has not passed).
async fn ready(State(ops): State<Ops>) -> (StatusCode, Json<serde_json::Value>) {
    let ledger = ops.ledger.ping().await.map_err(|e| e.to_string());
    // The bus reconnects on demand; asking for a channel is that demand.
    let bus = if ops.bus.is_connected() {
        Ok(())
    } else {
        ops.bus
            .publisher()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    let crl = ops.revocation.readiness(OffsetDateTime::now_utc());
    let status = if ledger.is_ok() && bus.is_ok() && crl.is_ok() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let show = |r: &Result<(), String>| match r {
        Ok(()) => json!("ok"),
        Err(e) => json!(e),
    };
    let mut body = json!({
        "ledger": show(&ledger),
        "rabbitmq": show(&bus),
        "crl": match &crl { Ok(state) => json!(state), Err(e) => json!(e) },
    });
    // Ready, but not as it should be: said where operators look, without failing the probe.
    let warnings: Vec<String> = ops
        .ledger_role
        .iter()
        .filter(|role| role.is_privileged())
        .map(liaison_ledger::RolePrivileges::describe)
        .collect();
    if !warnings.is_empty() {
        body["warnings"] = json!(warnings);
    }
    (status, Json(body))
}
