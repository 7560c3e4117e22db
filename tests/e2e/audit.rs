//! The audit ledger end to end: an agency gets its message's inclusion proof and checks it
//! against the signed checkpoint with the ledger's public key; the built `liaison` binary
//! verifies the ledger, exports it, and after a payload byte is changed in PostgreSQL
//! (triggers off) names the entry — also when checked against the export made before.

use std::process::Command;
use std::time::Duration;

use liaison_core::checkpoint::CheckpointVerifier;
use liaison_core::merkle;
use liaison_devtools::demo::lead_event;
use liaison_tests::World;
use liaison_tests::process::{liaison, liaison_binary, text};
use liaison_tests::proofs::{check_inclusion, hash};
use serde_json::Value;

#[tokio::test]
async fn an_agency_proves_its_message_and_the_binary_names_a_tampered_payload() {
    let mut world = World::new().await;
    world.config.ledger.checkpoint_interval = Duration::from_millis(100);
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");

    let lead = lead_event("SD-AUDIT");
    let answer = eco.submit(&lead).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let seq = answer.body["seq"].as_u64().unwrap();
    let id = answer.body["id"].as_str().unwrap().to_owned();

    // A checkpoint that covers the message.
    let proof = liaison_tests::eventually(
        &format!("a checkpoint covering seq {seq}"),
        Duration::from_secs(15),
        async || {
            let proof = eco.get(&format!("/v1/messages/{id}/proof")).await.unwrap();
            (proof.status == 200 && proof.body["pending"].as_array().is_some_and(Vec::is_empty))
                .then_some(proof.body)
        },
    )
    .await;
    let public_key = liaison_pki::read_ledger_public_key(&world.layout()).unwrap();
    let key = CheckpointVerifier::new(world.config.ledger.origin.clone(), public_key).unwrap();
    let checkpoint = key
        .open(proof["checkpoint"]["note"].as_str().unwrap())
        .expect("the checkpoint is signed by the ledger key");
    let entries = proof["entries"].as_array().unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e["seq"] == seq && e["kind"] == "message.accepted")
    );
    for entry in entries {
        check_inclusion(entry, checkpoint.size, &checkpoint.root);
    }
    // Not the sender's or a recipient's: not found.
    let stranger = world.client(&broker, "agri");
    assert_eq!(
        stranger
            .get(&format!("/v1/messages/{id}/proof"))
            .await
            .unwrap()
            .status,
        404
    );

    // Another message, another checkpoint, then a consistency proof between the two.
    let second = eco.submit(&lead_event("SD-AUDIT-2")).await.unwrap();
    let second_seq = second.body["seq"].as_u64().unwrap();
    let latest = liaison_tests::eventually(
        &format!("a checkpoint covering seq {second_seq}"),
        Duration::from_secs(15),
        async || {
            let latest = stranger.get("/v1/checkpoints/latest").await.unwrap();
            (latest.status == 200 && latest.body["tree_size"].as_u64() >= Some(second_seq))
                .then_some(latest.body)
        },
    )
    .await;
    let latest = key.open(latest["note"].as_str().unwrap()).unwrap();
    let consistency = stranger
        .get(&format!(
            "/v1/checkpoints/consistency?from={}&to={}",
            checkpoint.size, latest.size
        ))
        .await
        .unwrap();
    assert_eq!(consistency.status, 200, "{}", consistency.body);
    let path: Vec<[u8; 32]> = consistency.body["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(hash)
        .collect();
    merkle::verify_consistency(
        checkpoint.size,
        latest.size,
        &checkpoint.root,
        &latest.root,
        &path,
    )
    .expect("the later checkpoint extends the earlier one");
    let beyond = stranger
        .get(&format!(
            "/v1/checkpoints/consistency?from=1&to={}",
            latest.size + 1_000
        ))
        .await
        .unwrap();
    assert_eq!(beyond.status, 400, "{}", beyond.body);
    assert_eq!(beyond.body["code"], "invalid_parameter");
    broker.shutdown(Duration::from_secs(5)).await;

    // The binary: verify, export, tamper, verify again.
    let ok = liaison(&world, &["ledger", "verify"]);
    assert!(ok.status.success(), "{}", text(&ok));
    assert!(text(&ok).contains("✓"), "{}", text(&ok));
    // The verification is kept for the console's overview.
    let ledger = world.ledger().await;
    let kept = ledger
        .latest_verification()
        .await
        .unwrap()
        .expect("recorded");
    assert!(kept.ok && kept.findings == 0, "{kept:?}");
    assert_eq!(kept.entries as u64, ledger.size().await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let export = dir.path().join("before");
    let exported = liaison(
        &world,
        &["ledger", "export", "--out", export.to_str().unwrap()],
    );
    assert!(exported.status.success(), "{}", text(&exported));
    let offline = liaison(
        &world,
        &["ledger", "verify", "--offline", export.to_str().unwrap()],
    );
    assert!(offline.status.success(), "{}", text(&offline));
    let replay = liaison(&world, &["ledger", "replay"]);
    assert!(replay.status.success(), "{}", text(&replay));

    let ledger = world.ledger().await;
    let mut tx = ledger.pool().begin().await.unwrap();
    sqlx::query("SET LOCAL session_replication_role = replica")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(
        "UPDATE messages SET body = overlay(body placing '\\x20'::bytea from 2 for 1) WHERE seq = $1",
    )
    .bind(seq as i64)
    .execute(&mut *tx)
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let bad = liaison(&world, &["ledger", "verify"]);
    assert!(!bad.status.success(), "{}", text(&bad));
    assert!(
        text(&bad).contains(&format!("first bad seq: {seq}")),
        "{}",
        text(&bad)
    );
    let kept = ledger
        .latest_verification()
        .await
        .unwrap()
        .expect("recorded");
    assert!(
        !kept.ok && kept.findings > 0,
        "a failed verification is kept too: {kept:?}"
    );
    let against = liaison(
        &world,
        &["ledger", "verify", "--against", export.to_str().unwrap()],
    );
    assert!(!against.status.success(), "{}", text(&against));
    assert!(
        text(&against).contains(&format!("first bad seq: {seq}")),
        "{}",
        text(&against)
    );
    drop(ledger);
    world.cleanup().await;
}

/// `liaison ledger export` never hands an auditor a key that proves nothing: run with
/// another PKI (a TLS folder that is not the broker's), or with the broker's key under
/// another origin, it refuses with a message that says which configuration to use and
/// writes nothing; with the broker's configuration the export carries the C2SP verifier
/// key `pki init` wrote, and that key verifies the export.
#[tokio::test]
async fn an_export_with_the_wrong_key_is_refused() {
    let mut world = World::new().await;
    world.config.ledger.checkpoint_interval = Duration::from_millis(100);
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let answer = eco.submit(&lead_event("SD-AUDIT-KEY")).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let seq = answer.body["seq"].as_u64().unwrap();
    let ledger = world.ledger().await;
    liaison_tests::eventually(
        &format!("a checkpoint covering seq {seq}"),
        Duration::from_secs(15),
        async || {
            let latest = ledger.latest_checkpoint().await.unwrap();
            latest.is_some_and(|c| c.tree_size >= seq).then_some(())
        },
    )
    .await;
    broker.shutdown(Duration::from_secs(5)).await;

    let dir = tempfile::tempdir().unwrap();
    let other_pki = dir.path().join("other-pki");
    let registry = world.config.load_registry().unwrap();
    liaison_pki::init(&other_pki, &registry, &liaison_pki::PkiOptions::default()).unwrap();
    let export_with = |out: &std::path::Path, env: &[(&str, &std::ffi::OsStr)]| {
        Command::new(liaison_binary())
            .args(["ledger", "export", "--out"])
            .arg(out)
            .env("LIAISON_DATABASE_URL", &world.config.database_url)
            .env("LIAISON_TLS_DIR", &world.config.tls_dir)
            .env("LIAISON_LOG", "off")
            .envs(env.iter().copied())
            .output()
            .expect("run liaison")
    };

    // Another TLS folder: another ledger key.
    let refused_out = dir.path().join("refused");
    let refused = export_with(&refused_out, &[("LIAISON_TLS_DIR", other_pki.as_os_str())]);
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("verifies none of the ledger's"),
        "{}",
        text(&refused)
    );
    assert!(
        text(&refused).contains("LIAISON_TLS_DIR"),
        "{}",
        text(&refused)
    );
    assert!(!refused_out.exists(), "nothing is written");

    // The broker's key under another origin (a PKI made before the verifier key existed,
    // so the origin comes from the configuration).
    let layout = world.layout();
    let vkey = std::fs::read_to_string(layout.ledger_verifier_key()).unwrap();
    std::fs::remove_file(layout.ledger_verifier_key()).unwrap();
    let refused = export_with(
        &refused_out,
        &[(
            "LIAISON_LEDGER__ORIGIN",
            std::ffi::OsStr::new("ledger.elsewhere.example/liaison"),
        )],
    );
    assert!(!refused.status.success(), "{}", text(&refused));
    assert!(
        text(&refused).contains("ledger.elsewhere.example/liaison+"),
        "{}",
        text(&refused)
    );
    assert!(!refused_out.exists(), "nothing is written");
    std::fs::write(layout.ledger_verifier_key(), &vkey).unwrap();

    // The broker's own configuration: exported with the verifier key pki init wrote.
    let good = dir.path().join("export");
    let exported = export_with(&good, &[]);
    assert!(exported.status.success(), "{}", text(&exported));
    assert_eq!(
        std::fs::read_to_string(good.join("ledger-key.vkey")).unwrap(),
        vkey
    );
    let pinned = liaison(
        &world,
        &[
            "ledger",
            "verify",
            "--offline",
            good.to_str().unwrap(),
            "--public-key",
            layout.ledger_verifier_key().to_str().unwrap(),
        ],
    );
    assert!(pinned.status.success(), "{}", text(&pinned));
    // Pinned to the other PKI's key, the same export does not verify.
    let other = liaison_pki::PkiLayout::new(&other_pki).ledger_verifier_key();
    let wrong = liaison(
        &world,
        &[
            "ledger",
            "verify",
            "--offline",
            good.to_str().unwrap(),
            "--public-key",
            other.to_str().unwrap(),
        ],
    );
    assert!(!wrong.status.success(), "{}", text(&wrong));

    // An entry edited in the export, its seq and digest kept: only the checkpoints bound
    // it, and the verdict gives their range, not a seq it cannot know.
    let entries = good.join("entries.jsonl");
    let lines = std::fs::read_to_string(&entries).unwrap();
    let edited = lines.replacen("\"channel\":\"https\"", "\"channel\":\"amqp\"", 1);
    assert_ne!(edited, lines);
    std::fs::write(&entries, edited).unwrap();
    let edited = liaison(
        &world,
        &["ledger", "verify", "--offline", good.to_str().unwrap()],
    );
    assert!(!edited.status.success(), "{}", text(&edited));
    let checkpoints = std::fs::read_to_string(good.join("checkpoints.jsonl")).unwrap();
    let first: Value = serde_json::from_str(checkpoints.lines().next().unwrap()).unwrap();
    let expected = match first["tree_size"].as_u64().unwrap() {
        // A checkpoint of that one entry is its leaf hash: then it is named.
        1 => "first bad seq: 1".to_owned(),
        size => format!("first bad entry: one of seqs 1..={size} "),
    };
    assert!(text(&edited).contains(&expected), "{}", text(&edited));
    drop(ledger);
    world.cleanup().await;
}

/// `liaison serve` refuses the demo origin unless the configuration says it is a demo.
#[tokio::test]
async fn serve_refuses_the_demo_origin_outside_a_demo() {
    let world = World::new().await;
    let serve = Command::new(liaison_binary())
        .arg("serve")
        .env("LIAISON_DATABASE_URL", &world.config.database_url)
        .env("LIAISON_AMQP_URL", &world.config.amqp_url)
        .env("LIAISON_TLS_DIR", &world.config.tls_dir)
        .env("LIAISON_LISTEN", "127.0.0.1:0")
        .env("LIAISON_OPS_LISTEN", "127.0.0.1:0")
        .env("LIAISON_LOG", "off")
        .output()
        .expect("run liaison serve");
    assert!(!serve.status.success(), "{}", text(&serve));
    assert!(
        text(&serve).contains("the demo origin") && text(&serve).contains("demo = true"),
        "{}",
        text(&serve)
    );
    world.cleanup().await;
}
