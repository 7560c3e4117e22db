//! Archival with the built binary while the broker runs: `liaison ledger archive` moves the
//! first partitions out, `liaison ledger verify --archive` checks the whole ledger from the
//! database and the archive, and the gateway still serves an archived entry's inclusion
//! proof (to an administrator; whose entry it was cannot be told without its bytes).

use std::time::Duration;

use liaison_core::audit;
use liaison_core::checkpoint::CheckpointVerifier;
use liaison_devtools::demo::lead_event;
use liaison_tests::World;
use liaison_tests::process::{liaison, text};
use liaison_tests::proofs::{check_inclusion, hash};

// Worker threads: the binary runs (blocking this test's thread) while the broker in this
// process keeps committing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_archives_a_range_verifies_it_and_the_gateway_proves_an_archived_entry() {
    let mut world = World::new().await;
    world.config.ledger.checkpoint_interval = Duration::from_millis(100);
    world.config.ledger.partition_entries = 8;
    world.config.admins = vec![liaison_core::AgencyCode::new("gov").unwrap()];
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let gov = world.client(&broker, "gov");

    // Twenty refusals (entries with nothing to deliver), then a lead whose deliveries
    // are still open: the archive may take 16 entries, two partitions of 8.
    for i in 0..20 {
        let answer = eco
            .submit_bytes(format!("{{not json {i}").into_bytes())
            .await
            .unwrap();
        assert_eq!(answer.status, 400, "{}", answer.body);
    }
    let lead = eco.submit(&lead_event("SD-ARCHIVE")).await.unwrap();
    assert_eq!(lead.status, 202, "{}", lead.body);

    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("archive-1");
    let archived = liaison(
        &world,
        &[
            "ledger",
            "archive",
            "--before",
            "1000",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(archived.status.success(), "{}", text(&archived));
    assert!(
        text(&archived).contains("archived entries 1..=16"),
        "{}",
        text(&archived)
    );
    let ledger = world.ledger().await;
    assert_eq!(ledger.archived_through().await.unwrap(), 16);

    // The archive alone, offline, and the whole ledger from the database plus it.
    let offline = liaison(
        &world,
        &["ledger", "verify", "--offline", out.to_str().unwrap()],
    );
    assert!(offline.status.success(), "{}", text(&offline));
    let whole = liaison(
        &world,
        &["ledger", "verify", "--archive", out.to_str().unwrap()],
    );
    assert!(whole.status.success(), "{}", text(&whole));
    assert!(
        text(&whole).contains("read from 1 archive"),
        "{}",
        text(&whole)
    );
    let alone = liaison(&world, &["ledger", "verify"]);
    assert!(alone.status.success(), "{}", text(&alone));
    assert!(
        text(&alone).contains("entries 1..=16 are archived"),
        "{}",
        text(&alone)
    );

    // An archived entry's proof, from the gateway, against the latest checkpoint; its
    // leaf hash is the hash of its line in the archive.
    let proof = gov.get("/v1/entries/5/proof").await.unwrap();
    assert_eq!(proof.status, 200, "{}", proof.body);
    assert_eq!(proof.body["archived"], true);
    assert!(proof.body.get("entry").is_none(), "{}", proof.body);
    let line = std::fs::read_to_string(out.join("entries.jsonl"))
        .unwrap()
        .lines()
        .nth(4)
        .unwrap()
        .to_owned();
    assert_eq!(
        hash(&proof.body["leaf_hash"]),
        audit::leaf_hash(line.as_bytes())
    );
    let public_key = liaison_pki::read_ledger_public_key(&world.layout()).unwrap();
    let key = CheckpointVerifier::new(world.config.ledger.origin.clone(), public_key).unwrap();
    let checkpoint = key
        .open(proof.body["checkpoint"]["note"].as_str().unwrap())
        .expect("signed by the ledger key");
    assert_eq!(proof.body["leaf_index"], 4);
    check_inclusion(&proof.body, checkpoint.size, &checkpoint.root);
    // The refused sender cannot be told apart from anyone else without the entry's bytes.
    assert_eq!(eco.get("/v1/entries/5/proof").await.unwrap().status, 404);

    // The broker goes on appending after the archive.
    let more = eco.submit(&lead_event("SD-ARCHIVE-2")).await.unwrap();
    assert_eq!(more.status, 202, "{}", more.body);
    broker.shutdown(Duration::from_secs(5)).await;
    let after = liaison(
        &world,
        &["ledger", "verify", "--archive", out.to_str().unwrap()],
    );
    assert!(after.status.success(), "{}", text(&after));
}
