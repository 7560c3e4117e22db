//! The configuration reaches the running broker: a nested setting given only as an
//! environment variable changes the queues `liaison serve` declares.

use std::time::Duration;

use liaison_bus::{Bus, BusConfig};
use liaison_tests::World;
use liaison_tests::process::{BrokerProcess, free_port};

#[tokio::test]
async fn a_nested_environment_variable_sets_the_delivery_limit_the_broker_declares() {
    let world = World::new().await;
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("liaison.toml");
    std::fs::write(
        &config_file,
        "# every setting from the defaults and the environment\n",
    )
    .unwrap();
    assert_ne!(
        world.config.bus.delivery_limit, 7,
        "7 must not be the default"
    );
    // The broker answers /healthz only once it has declared its queues.
    let mut broker = BrokerProcess::spawn_with_env(
        &world,
        &config_file,
        free_port(),
        free_port(),
        &[("LIAISON_BUS__DELIVERY_LIMIT", "7")],
    )
    .await;

    let registry = world.config.load_registry().unwrap();
    let declare = |delivery_limit: u32| {
        let config = BusConfig {
            delivery_limit,
            ..world.config.bus_config()
        };
        let registry = &registry;
        async move {
            let bus = Bus::connect(config).await.expect("RabbitMQ");
            let declared = bus.declare_topology(registry.codes()).await;
            bus.close().await;
            declared
        }
    };
    // RabbitMQ refuses to redeclare a queue with other arguments: the default limit no
    // longer matches what the broker declared, the variable's does.
    let refused = declare(world.config.bus.delivery_limit)
        .await
        .expect_err("the default limit differs from the declared one")
        .to_string();
    assert!(refused.contains("x-delivery-limit"), "{refused}");
    declare(7)
        .await
        .expect("the broker declared x-delivery-limit 7");

    broker.terminate(Duration::from_secs(10)).await;
    world.cleanup().await;
}
