//! The plain-HTTP operations port: liveness and readiness for supervisors and load
//! balancers, and the metrics for Prometheus.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::http::header;
use axum::routing::get;
use axum::{Json, Router};
use liaison_bus::Bus;
use liaison_ledger::Ledger;
use serde_json::json;
use time::OffsetDateTime;

use crate::http::inbox::Inbox;
use crate::telemetry;
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
    /// This instance's HTTPS inboxes, for their lease count.
    pub inbox: Arc<Inbox>,
    /// The lifecycle's flows: each has its clock gauges, zero when none runs.
    pub flows: Vec<String>,
}

pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
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

/// The metrics in the Prometheus text format. The gauges of the ledger's working state are
/// read now, so a scrape sees the outbox and the clocks as they are.
async fn metrics(State(ops): State<Ops>) -> impl axum::response::IntoResponse {
    let now = OffsetDateTime::now_utc();
    match ops.ledger.gauges(now).await {
        Ok(gauges) => {
            metrics::gauge!(telemetry::POSTGRES_UP).set(1.0);
            metrics::gauge!(telemetry::OUTBOX_PENDING).set(gauges.outbox_pending as f64);
            metrics::gauge!(telemetry::OUTBOX_OLDEST_PENDING_AGE)
                .set(gauges.oldest_pending.as_secs_f64());
            for flow in &ops.flows {
                let (open, overdue) = gauges
                    .clocks
                    .iter()
                    .find(|(name, _, _)| name == flow)
                    .map_or((0, 0), |(_, open, overdue)| (*open, *overdue));
                metrics::gauge!(telemetry::CLOCKS_OPEN, "flow" => flow.clone()).set(open as f64);
                metrics::gauge!(telemetry::CLOCKS_OVERDUE, "flow" => flow.clone())
                    .set(overdue as f64);
            }
            if let Some((size, signed_at)) = gauges.checkpoint {
                metrics::gauge!(telemetry::LEDGER_SIZE).set(size as f64);
                metrics::gauge!(telemetry::CHECKPOINT_AGE)
                    .set((now - signed_at).as_seconds_f64().max(0.0));
            }
        }
        Err(error) => {
            tracing::warn!(%error, "metrics: the ledger's gauges could not be read");
            metrics::gauge!(telemetry::POSTGRES_UP).set(0.0);
        }
    }
    let rabbitmq = if ops.bus.is_connected() { 1.0 } else { 0.0 };
    metrics::gauge!(telemetry::RABBITMQ_UP).set(rabbitmq);
    metrics::gauge!(telemetry::INBOX_LEASES).set(ops.inbox.leases() as f64);
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        telemetry::render(),
    )
}
