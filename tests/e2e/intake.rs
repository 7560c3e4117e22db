//! AMQP intake with real RabbitMQ users made from `liaison amqp definitions`: an agency
//! publishes to `liaison.intake` as itself, RabbitMQ enforces who may read and write what,
//! and the broker trusts only the `user_id` RabbitMQ validated.

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use liaison_cli::amqp_defs::{self, DefinitionsArgs};
use liaison_core::EntryKind;
use liaison_devtools::demo::lead_event;
use liaison_ledger::TraceKey;
use liaison_tests::{World, rabbitmqctl};
use uuid::Uuid;

/// RabbitMQ users for one test, imported from generated definitions; deleted on drop.
pub struct AgencyUsers {
    pub prefix: String,
    pub passwords: HashMap<String, String>,
    vhost: String,
}

impl AgencyUsers {
    pub fn import(world: &World) -> AgencyUsers {
        Self::import_with(world, |_| {})
    }

    /// As [`AgencyUsers::import`], with the definitions' arguments changed by `tweak`.
    pub fn import_with(world: &World, tweak: impl FnOnce(&mut DefinitionsArgs)) -> AgencyUsers {
        let prefix = format!("t{}-agency-", &Uuid::new_v4().simple().to_string()[..8]);
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("definitions.json");
        let mut args = DefinitionsArgs {
            out: out.display().to_string(),
            vhost: world.vhost.clone(),
            user_prefix: Some(prefix.clone()),
            broker_user: format!("{prefix}broker"),
            // The queue arguments come from the world's configuration, as the broker's do.
            delivery_limit: None,
            intake_max_length: None,
            intake_max_bytes: None,
            user_max_connections: 8,
            user_max_channels: 64,
            passwords: Some(dir.path().join("passwords.json")),
        };
        tweak(&mut args);
        let registry = world.config.load_registry().unwrap();
        let definitions = amqp_defs::build(&args, &registry, &world.config);
        std::fs::write(&out, serde_json::to_vec(&definitions.document).unwrap()).unwrap();
        rabbitmqctl(&["import_definitions", &out.display().to_string()]);
        let users = AgencyUsers {
            prefix,
            passwords: definitions.passwords.into_iter().collect(),
            vhost: world.vhost.clone(),
        };
        // The import is asynchronous: wait (bounded) until the last user can log in.
        let probe = format!("{}water", users.prefix);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new("rabbitmqctl")
                .args(["authenticate_user", &probe, &users.passwords[&probe]])
                .output()
                .is_ok_and(|o| o.status.success());
            if ok {
                break;
            }
            assert!(Instant::now() < deadline, "imported users never appeared");
            std::thread::sleep(Duration::from_millis(200));
        }
        users
    }

    pub fn user(&self, agency: &str) -> String {
        format!("{}{agency}", self.prefix)
    }

    pub async fn connect(&self, agency: &str) -> Connection {
        let user = self.user(agency);
        let url = format!(
            "amqp://{user}:{}@127.0.0.1:5672/{}",
            self.passwords[&user], self.vhost
        );
        Connection::connect(&url, ConnectionProperties::default())
            .await
            .unwrap_or_else(|e| panic!("{user} logs in to RabbitMQ: {e}"))
    }
}

impl Drop for AgencyUsers {
    fn drop(&mut self) {
        for user in self.passwords.keys() {
            let _ = Command::new("rabbitmqctl")
                .args(["delete_user", user])
                .output();
        }
    }
}

/// Publishes to `liaison.intake` with confirms; `Err` when RabbitMQ refuses it.
async fn publish_intake(
    connection: &Connection,
    body: &[u8],
    user_id: Option<&str>,
    message_id: &str,
) -> Result<(), String> {
    let mut properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_message_id(message_id.into())
        .with_content_type("application/cloudevents+json".into());
    if let Some(user) = user_id {
        properties = properties.with_user_id(user.into());
    }
    crate::forged_dead_letters::publish(
        connection,
        "liaison.intake",
        "pil.lead.v1",
        body,
        properties,
    )
    .await
}

async fn next_on(
    connection: &Connection,
    queue: &str,
    wanted: impl Fn(&lapin::message::Delivery) -> bool,
) -> lapin::message::Delivery {
    let channel = connection.create_channel().await.unwrap();
    let mut consumer = channel
        .basic_consume(
            queue.into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap_or_else(|e| panic!("consume {queue}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let delivery = tokio::time::timeout(left, consumer.next())
            .await
            .unwrap_or_else(|_| panic!("nothing wanted arrived in {queue}"))
            .expect("consumer open")
            .expect("delivery");
        delivery.ack(BasicAckOptions::default()).await.unwrap();
        if wanted(&delivery) {
            return delivery;
        }
    }
}

#[tokio::test]
async fn an_agency_publishes_a_lead_to_intake_as_itself_and_rabbitmq_enforces_the_rest() {
    let mut world = World::new().await;
    let users = AgencyUsers::import(&world);
    world.config.intake.user_prefix = users.prefix.clone();
    let broker = world.start().await;
    let ledger = world.ledger().await;

    // eco publishes a lead to intake with its own user: the procuratorate receives it.
    let eco = users.connect("eco").await;
    let lead = lead_event("SD-AMQP-INTAKE");
    let id = lead["id"].as_str().unwrap().to_owned();
    let bytes = serde_json::to_vec(&lead).unwrap();
    publish_intake(&eco, &bytes, Some(&users.user("eco")), &id)
        .await
        .expect("RabbitMQ takes eco's publish to intake");
    let procuratorate = users.connect("procuratorate").await;
    let delivered = next_on(&procuratorate, "liaison.agency.procuratorate", |d| {
        d.properties.message_id().as_ref().map(|m| m.as_str()) == Some(id.as_str())
    })
    .await;
    assert_eq!(delivered.data, bytes, "delivered byte for byte");
    let trace = ledger
        .trace(&TraceKey::Case("SD-AMQP-INTAKE".into()))
        .await
        .unwrap();
    assert_eq!(trace[0].kind, EntryKind::MessageAccepted);
    assert_eq!(trace[0].detail["channel"], "amqp");
    assert_eq!(trace[0].agency.as_ref().map(|a| a.as_str()), Some("eco"));

    // eco may not read the procuratorate's queue.
    let channel = eco.create_channel().await.unwrap();
    let refused = channel
        .basic_consume(
            "liaison.agency.procuratorate".into(),
            "".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await;
    let err = refused.expect_err("RabbitMQ refuses eco on the procuratorate's queue");
    assert!(
        err.to_string().contains("ACCESS_REFUSED") || err.to_string().contains("403"),
        "{err}"
    );

    // A publish claiming to be the procuratorate is refused by RabbitMQ and never recorded.
    let forged = lead_event("SD-AMQP-FORGED");
    let forged_id = forged["id"].as_str().unwrap().to_owned();
    let result = publish_intake(
        &eco,
        &serde_json::to_vec(&forged).unwrap(),
        Some(&users.user("procuratorate")),
        &forged_id,
    )
    .await;
    let err = result.expect_err("a forged user_id is refused");
    assert!(
        err.contains("PRECONDITION_FAILED") || err.contains("406"),
        "{err}"
    );

    // A lead eco may not send as a hotline record: a problem notice in eco's own queue,
    // and the rejection in the ledger.
    let mut refused_event = lead_event("SD-AMQP-REFUSED");
    refused_event["type"] = serde_json::json!("hotline.record.v1");
    let refused_id = refused_event["id"].as_str().unwrap().to_owned();
    publish_intake(
        &eco,
        &serde_json::to_vec(&refused_event).unwrap(),
        Some(&users.user("eco")),
        &refused_id,
    )
    .await
    .unwrap();
    let notice = next_on(&eco, "liaison.agency.eco", |d| {
        d.properties.kind().as_ref().map(|k| k.as_str()) == Some("liaison.problem")
    })
    .await;
    let problem: serde_json::Value = serde_json::from_slice(&notice.data).unwrap();
    // Not allowed the type at all: told so before the payload's faults.
    assert_eq!(problem["code"], "type_not_allowed", "{problem}");
    assert_eq!(problem["message_id"], refused_event["id"]);
    let seq = problem["ledger_seq"]
        .as_u64()
        .expect("the rejection is recorded");
    // eco is no party of that case yet, so its refusal is indexed under the message id
    // only (a refusal never attaches to a case its sender has no part in).
    let trace = ledger
        .trace(&TraceKey::Message(refused_id.parse().unwrap()))
        .await
        .unwrap();
    assert_eq!(trace.len(), 1, "{trace:?}");
    assert_eq!(
        (trace[0].seq, trace[0].kind),
        (seq, EntryKind::MessageRejected)
    );
    assert_eq!(trace[0].detail["channel"], "amqp");

    // Without user_id there is no identity: recorded as unauthenticated and acknowledged,
    // never dead-lettered (nothing a publisher wrote may reach liaison.dead).
    let anonymous = lead_event("SD-AMQP-ANON");
    let anonymous_id = anonymous["id"].as_str().unwrap().to_owned();
    publish_intake(
        &eco,
        &serde_json::to_vec(&anonymous).unwrap(),
        None,
        &anonymous_id,
    )
    .await
    .unwrap();
    let bus = world.bus().await;
    liaison_tests::eventually(
        "the anonymous message recorded",
        Duration::from_secs(20),
        async || {
            let entries = ledger.entries(1, 1000).await.unwrap();
            entries
                .iter()
                .any(|e| {
                    let e = liaison_core::Entry::from_canonical(&e.entry).unwrap();
                    e.kind == EntryKind::MessageRejected && e.detail["code"] == "unauthenticated"
                })
                .then_some(())
        },
    )
    .await;
    let dead = liaison_cli::deadletters::list(&bus, 50).await.unwrap();
    assert!(
        dead.iter()
            .all(|d| d.message_id.map(|m| m.to_string()) != Some(anonymous_id.clone())),
        "{dead:?}"
    );
    let entries = ledger.entries(1, 1000).await.unwrap();
    let unauthenticated = entries
        .iter()
        .map(|e| liaison_core::Entry::from_canonical(&e.entry).unwrap())
        .filter(|e| e.kind == EntryKind::MessageRejected && e.detail["code"] == "unauthenticated")
        .count();
    assert_eq!(unauthenticated, 1);

    bus.close().await;
    let _ = eco.close(200, "done".into()).await;
    let _ = procuratorate.close(200, "done".into()).await;
    broker.shutdown(Duration::from_secs(5)).await;
    drop(users);
    world.cleanup().await;
}
