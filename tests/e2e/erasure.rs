//! Erasure of a case's personal data (PIPL Art. 47): two cases are sent; an administrator
//! erases one over HTTPS (a non-administrator is refused, and nothing is recorded); its
//! bodies are ciphertext without a key in PostgreSQL and absent from an export, while
//! `liaison ledger verify` (database and offline) passes and names the erasure entry; the
//! other case still reads. Then the key-encryption key is rotated and the old one removed:
//! the surviving body still reads, its ciphertext bytes unchanged.

use std::process::Command;
use std::time::Duration;

use liaison_devtools::demo::lead_event;
use liaison_tests::process::{liaison, liaison_binary, text};
use liaison_tests::{World, code};
use serde_json::{Value, json};
use sqlx::Row;

async fn stored(pool: &sqlx::PgPool, id: &str) -> (Vec<u8>, Option<String>, Option<i64>) {
    let row = sqlx::query(
        "SELECT m.body, k.kek_id, k.erased_seq FROM messages m \
         LEFT JOIN message_keys k ON k.message_id = m.id WHERE m.id = $1::uuid",
    )
    .bind(id)
    .fetch_one(pool)
    .await
    .unwrap();
    (row.get("body"), row.get("kek_id"), row.get("erased_seq"))
}

#[tokio::test]
async fn an_administrator_erases_a_case_and_the_ledger_still_verifies() {
    let mut world = World::new().await;
    world.config.admins = vec![code("gov")];
    world.config.ledger.checkpoint_interval = Duration::from_millis(100);
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let gov = world.client(&broker, "gov");

    let (lead_a, lead_b) = (lead_event("SD-ERASE-A"), lead_event("SD-ERASE-B"));
    let a = eco.submit(&lead_a).await.unwrap();
    let b = eco.submit(&lead_b).await.unwrap();
    assert_eq!((a.status, b.status), (202, 202), "{} {}", a.body, b.body);
    let (id_a, id_b) = (
        a.body["id"].as_str().unwrap().to_owned(),
        b.body["id"].as_str().unwrap().to_owned(),
    );

    // Stored sealed: neither body is its plaintext, and each has its wrapped key.
    let ledger = world.ledger().await;
    let pool = ledger.pool().clone();
    let plain_a = serde_json::to_vec(&lead_a).unwrap();
    let (sealed_a, kek_a, _) = stored(&pool, &id_a).await;
    let (sealed_b, kek_b, _) = stored(&pool, &id_b).await;
    assert_eq!(
        (kek_a.as_deref(), kek_b.as_deref()),
        (Some("k1"), Some("k1"))
    );
    for (sealed, plain) in [
        (&sealed_a, &plain_a),
        (&sealed_b, &serde_json::to_vec(&lead_b).unwrap()),
    ] {
        assert_ne!(sealed, plain);
        assert!(
            !sealed
                .windows(12)
                .any(|w| plain.windows(12).any(|p| p == w))
        );
    }

    // A non-administrator is refused and nothing is recorded.
    let erased_entries = async || -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM ledger_entries WHERE kind = 'case.erased'")
            .fetch_one(&pool)
            .await
            .unwrap()
    };
    let refused = eco
        .post_json("/v1/cases/SD-ERASE-A/erasure", &json!({"basis": "mine"}))
        .await
        .unwrap();
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert_eq!(refused.body["code"], "forbidden");
    assert_eq!(erased_entries().await, 0);

    let basis = "PIPL Art. 47(1)1: the purpose of the processing is achieved";
    let erased = gov
        .post_json("/v1/cases/SD-ERASE-A/erasure", &json!({ "basis": basis }))
        .await
        .unwrap();
    assert_eq!(erased.status, 201, "{}", erased.body);
    let erasure_seq = erased.body["seq"].as_u64().unwrap();
    assert_eq!(erased.body["messages"][0]["message"], id_a.as_str());
    assert_eq!(erased.body["messages"].as_array().unwrap().len(), 1);
    // Again: nothing more is recorded.
    let again = gov
        .post_json("/v1/cases/SD-ERASE-A/erasure", &json!({ "basis": basis }))
        .await
        .unwrap();
    assert_eq!((again.status, &again.body["erased"]), (200, &json!(false)));
    assert_eq!(erased_entries().await, 1);

    // The entry says who, what and why.
    let trace = gov.get("/v1/trace/SD-ERASE-A").await.unwrap();
    assert_eq!(trace.status, 200, "{}", trace.body);
    let entry = trace.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["kind"] == "case.erased")
        .cloned()
        .unwrap_or_else(|| panic!("no case.erased entry in {}", trace.body));
    assert_eq!(entry["seq"], erasure_seq);
    assert_eq!(entry["agency"], "gov");
    assert_eq!(entry["detail"]["basis"], basis);
    assert_eq!(entry["detail"]["messages"][0]["message"], id_a.as_str());

    // Unreadable over HTTPS, in the database (ciphertext, no key), and in an export.
    let gone = eco.get(&format!("/v1/messages/{id_a}")).await.unwrap();
    assert_eq!(gone.status, 410, "{}", gone.body);
    assert_eq!(gone.body["code"], "erased");
    assert_eq!(gone.body["ledger_seq"], erasure_seq);
    let kept = eco.get(&format!("/v1/messages/{id_b}")).await.unwrap();
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(kept.body["event"], lead_b);
    let (body_a, kek_a, erased_by) = stored(&pool, &id_a).await;
    assert_eq!(body_a, sealed_a, "the append-only body is untouched");
    assert_eq!((kek_a, erased_by), (None, Some(erasure_seq as i64)));
    let wrapped: Option<Vec<u8>> =
        sqlx::query_scalar("SELECT wrapped FROM message_keys WHERE message_id = $1::uuid")
            .bind(&id_a)
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(wrapped, None, "the data key is destroyed");

    liaison_tests::eventually(
        &format!("a checkpoint covering seq {erasure_seq}"),
        Duration::from_secs(15),
        async || {
            let latest = eco.get("/v1/checkpoints/latest").await.unwrap();
            (latest.status == 200 && latest.body["tree_size"].as_u64() >= Some(erasure_seq))
                .then_some(())
        },
    )
    .await;
    let verified = liaison(&world, &["ledger", "verify"]);
    let out = text(&verified);
    assert!(verified.status.success(), "{out}");
    assert!(
        out.contains(&format!(
            "{id_a} (seq {}) was erased by entry {erasure_seq}",
            a.body["seq"]
        )),
        "{out}"
    );

    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("export");
    let exported = liaison(
        &world,
        &["ledger", "export", "--out", export.to_str().unwrap()],
    );
    assert!(exported.status.success(), "{}", text(&exported));
    let lines: Vec<Value> = std::fs::read_to_string(export.join("messages.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let line_a = lines.iter().find(|l| l["id"] == id_a.as_str()).unwrap();
    assert_eq!(line_a.get("body"), None, "{line_a}");
    assert_eq!(line_a["erased_by"], erasure_seq);
    let line_b = lines.iter().find(|l| l["id"] == id_b.as_str()).unwrap();
    use base64::Engine;
    let body_b = base64::engine::general_purpose::STANDARD
        .decode(line_b["body"].as_str().unwrap())
        .unwrap();
    assert_eq!(serde_json::from_slice::<Value>(&body_b).unwrap(), lead_b);
    let offline = liaison(
        &world,
        &["ledger", "verify", "--offline", export.to_str().unwrap()],
    );
    let out = text(&offline);
    assert!(offline.status.success(), "{out}");
    assert!(
        out.contains(&format!("erased by entry {erasure_seq}")),
        "{out}"
    );
    let replay = liaison(&world, &["ledger", "replay"]);
    assert!(replay.status.success(), "{}", text(&replay));

    // Rotation: a second KEK made active, every data key re-wrapped, the first removed.
    broker.shutdown(Duration::from_secs(5)).await;
    let made = liaison(&world, &["keys", "new", "--id", "k2"]);
    assert!(made.status.success(), "{}", text(&made));
    let rotated = Command::new(liaison_binary())
        .args(["keys", "rotate"])
        .env("LIAISON_DATABASE_URL", &world.config.database_url)
        .env("LIAISON_TLS_DIR", &world.config.tls_dir)
        .env("LIAISON_ERASURE__ACTIVE_KEK", "k2")
        .env("LIAISON_LOG", "off")
        .output()
        .unwrap();
    assert!(rotated.status.success(), "{}", text(&rotated));
    std::fs::remove_file(world.config.tls_dir.join("kek/k1.kek")).unwrap();
    let (body_b_after, kek_b, _) = stored(&pool, &id_b).await;
    assert_eq!(body_b_after, sealed_b, "bodies are not re-encrypted");
    assert_eq!(kek_b.as_deref(), Some("k2"));

    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let kept = eco.get(&format!("/v1/messages/{id_b}")).await.unwrap();
    assert_eq!(kept.status, 200, "{}", kept.body);
    assert_eq!(kept.body["event"], lead_b);
    assert_eq!(
        eco.get(&format!("/v1/messages/{id_a}"))
            .await
            .unwrap()
            .status,
        410
    );
    let verified = liaison(&world, &["ledger", "verify"]);
    assert!(verified.status.success(), "{}", text(&verified));
    broker.shutdown(Duration::from_secs(5)).await;
    drop(ledger);
    world.cleanup().await;
}
