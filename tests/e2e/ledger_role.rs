//! The broker's database role: a role that could disable the append-only triggers
//! (superuser or table owner) is refused when `ledger.require_unprivileged_role` is set,
//! and the INSERT/SELECT-only role of `deploy/postgres/roles.sql` runs the whole path.

use std::process::Command;
use std::time::Duration;

use liaison_devtools::demo::lead_event;
use liaison_server::{Broker, StartError};
use liaison_tests::{World, repo_root};
use sqlx::Connection;

/// The world's database URL with another user.
fn as_user(url: &str, user: &str) -> String {
    liaison_devtools::demo::with_user(url, user).unwrap()
}

async fn readyz(broker: &Broker) -> serde_json::Value {
    reqwest::get(format!("http://{}/readyz", broker.ops_addr))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_superuser_broker_warns_and_refuses_to_start_when_told_to() {
    let mut world = World::new().await;
    // The test services connect as `postgres`, a superuser.
    let broker = world.start().await;
    let ready = readyz(&broker).await;
    let warning = ready["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("superuser"), "{ready}");
    broker.shutdown(Duration::from_secs(5)).await;

    world.config.ledger.require_unprivileged_role = true;
    match Broker::start(world.config.clone()).await {
        Err(StartError::PrivilegedRole(why)) => {
            assert!(why.contains("superuser"), "{why}")
        }
        Err(other) => panic!("refused for another reason: {other}"),
        Ok(_) => panic!("a superuser broker started with require_unprivileged_role"),
    }
    world.cleanup().await;
}

#[tokio::test]
async fn the_append_only_role_runs_the_broker_and_cannot_rewrite_the_ledger() {
    let mut world = World::new().await;
    // The owner (here the superuser) applies the migrations, then creates the roles.
    drop(world.ledger().await);
    let psql = Command::new("psql")
        .arg(&world.config.database_url)
        .args(["-v", "ON_ERROR_STOP=1", "-q", "-f"])
        .arg(repo_root().join("deploy/postgres/roles.sql"))
        .output()
        .expect("psql runs");
    assert!(
        psql.status.success(),
        "roles.sql: {}",
        String::from_utf8_lossy(&psql.stderr)
    );
    let owner_url = world.config.database_url.clone();
    let broker_url = as_user(&owner_url, "liaison_broker");
    world.config.database_url = broker_url.clone();
    world.config.ledger.require_unprivileged_role = true;
    let broker = world.start().await;
    assert!(readyz(&broker).await.get("warnings").is_none());

    // The whole path: accept, relay, pull, ack.
    let eco = world.client(&broker, "eco");
    let procuratorate = world.client(&broker, "procuratorate");
    let accepted = eco.submit(&lead_event("SD-ROLE")).await.unwrap();
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let id = accepted.body["id"].as_str().unwrap().to_owned();
    let pulled = procuratorate.pull(10, 10).await.unwrap();
    assert_eq!(pulled.status, 200, "{}", pulled.body);
    let delivery = pulled.body["deliveries"][0]["delivery"].as_i64().unwrap();
    assert_eq!(procuratorate.ack(delivery).await.unwrap().status, 204);

    // Even with database access, the broker's role cannot change or remove a recorded
    // row, nor turn the triggers off to do so.
    let mut conn = sqlx::PgConnection::connect(&broker_url).await.unwrap();
    for statement in [
        "UPDATE ledger_entries SET seq = seq",
        "DELETE FROM messages",
        "TRUNCATE ledger_entries",
        "ALTER TABLE ledger_entries DISABLE TRIGGER ALL",
        "SET session_replication_role = replica",
    ] {
        let error = sqlx::query(statement)
            .execute(&mut conn)
            .await
            .expect_err(statement);
        let text = error.to_string();
        assert!(
            text.contains("permission denied") || text.contains("must be owner"),
            "{statement}: {text}"
        );
    }

    // When the database refuses the broker, the client is told the ledger is unavailable,
    // not PostgreSQL's words about roles and tables.
    let mut owner = sqlx::PgConnection::connect(&owner_url).await.unwrap();
    sqlx::query("REVOKE SELECT ON messages FROM liaison_broker")
        .execute(&mut owner)
        .await
        .unwrap();
    let refused = eco.get(&format!("/v1/messages/{id}")).await.unwrap();
    assert_eq!(refused.status, 503, "{}", refused.body);
    let shown = refused.body.to_string();
    for internal in ["permission denied", "messages", "liaison_broker"] {
        assert!(!shown.contains(internal), "{shown}");
    }

    broker.shutdown(Duration::from_secs(5)).await;
    drop((conn, owner));
    world.config.database_url = owner_url;
    world.cleanup().await;
}
