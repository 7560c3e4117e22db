//! The test kit itself: a world a test drops without `cleanup` (it panicked) removes its
//! database and virtual host all the same.

use liaison_tests::{World, base_database_url};

#[tokio::test]
async fn a_world_dropped_without_cleanup_removes_its_database_and_virtual_host() {
    let world = World::new().await;
    let (database, vhost) = (world.database.clone(), world.vhost.clone());
    drop(world);

    let pool = sqlx::PgPool::connect(&format!("{}/postgres", base_database_url()))
        .await
        .expect("the local PostgreSQL");
    let left: i64 = sqlx::query_scalar("SELECT count(*) FROM pg_database WHERE datname = $1")
        .bind(&database)
        .fetch_one(&pool)
        .await
        .unwrap();
    pool.close().await;
    assert_eq!(left, 0, "database {database} outlived its world");

    let vhosts = std::process::Command::new("rabbitmqctl")
        .args(["list_vhosts", "--quiet"])
        .output()
        .expect("rabbitmqctl");
    let listed = String::from_utf8_lossy(&vhosts.stdout);
    assert!(
        vhosts.status.success() && !listed.lines().any(|l| l.trim() == vhost),
        "virtual host {vhost} outlived its world: {listed}"
    );
}
