//! The auditors' side of the contract through the running broker: every proof carries the
//! bytes it proves; a refused sender proves its own refusal; an auditor's certificate reads
//! checkpoints, proofs and entries and nothing else; a witness cosigns each checkpoint
//! that extends the last one it saw, the broker serves its cosignatures, and a broker that
//! shows the witness another history is caught.

use std::path::PathBuf;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use liaison_cli::witness_cmd::{self, ForkDetected, RunArgs};
use liaison_client::AgencyClient;
use liaison_core::audit::{Hash, leaf_hash};
use liaison_core::cosignature::CosignatureVerifier;
use liaison_devtools::demo::lead_event;
use liaison_pki::PkiLayout;
use liaison_server::Broker;
use liaison_tests::World;
use liaison_tests::proofs::{self, hash};
use serde_json::{Value, json};

const AUDITOR: &str = "audit-bureau";
const WITNESS: &str = "audit.shandan.example/w1";

/// The auditor's certificate and key, issued into `dir`.
fn auditor_files(world: &World, dir: &std::path::Path) -> (PathBuf, PathBuf) {
    let (cert, key) = liaison_pki::issue_auditor_cert(&world.config.tls_dir, AUDITOR, 30).unwrap();
    let (cert_path, key_path) = (dir.join("auditor.pem"), dir.join("auditor.key"));
    std::fs::write(&cert_path, cert).unwrap();
    std::fs::write(&key_path, key).unwrap();
    (cert_path, key_path)
}

fn auditor_client(world: &World, broker: &Broker, files: &(PathBuf, PathBuf)) -> AgencyClient {
    AgencyClient::from_files(
        &world.layout().ca_cert(),
        &files.0,
        &files.1,
        &format!("https://localhost:{}", broker.https_addr.port()),
    )
    .unwrap()
}

/// Waits (observing the broker, never sleeping blindly past it) until a signed checkpoint
/// covers `seq`; returns it.
async fn checkpoint_covering(client: &AgencyClient, seq: u64) -> Value {
    liaison_tests::eventually(
        &format!("a checkpoint covering seq {seq}"),
        Duration::from_secs(20),
        async || {
            let latest = client.get("/v1/checkpoints/latest").await.unwrap();
            (latest.status == 200 && latest.body["tree_size"].as_u64().unwrap() >= seq)
                .then_some(latest.body)
        },
    )
    .await
}

/// Checks an inclusion proof body against the bytes it carries and its checkpoint's root.
fn check_inclusion(proof: &Value, root: &Hash) {
    let bytes = STANDARD.decode(proof["entry"].as_str().unwrap()).unwrap();
    assert_eq!(leaf_hash(&bytes), hash(&proof["leaf_hash"]), "{proof}");
    proofs::check_inclusion(proof, proof["tree_size"].as_u64().unwrap(), root);
}

#[tokio::test]
async fn proofs_carry_their_bytes_refusals_are_provable_and_auditors_only_read() {
    let mut world = World::new().await;
    world.config.auditors = vec![AUDITOR.into()];
    let broker = world.start().await;
    let files_dir = tempfile::tempdir().unwrap();
    let auditor = auditor_client(&world, &broker, &auditor_files(&world, files_dir.path()));
    let (eco, market) = (
        world.client(&broker, "eco"),
        world.client(&broker, "market"),
    );

    let lead = lead_event("SD-PROOF-1");
    let accepted = eco.submit(&lead).await.unwrap();
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let mut refused = lead_event("SD-PROOF-1");
    refused["data"]["domain"] = json!("astrology");
    let refusal = eco.submit(&refused).await.unwrap();
    assert_eq!(refusal.status, 422, "{}", refusal.body);
    let refusal_seq = refusal.body["ledger_seq"].as_u64().unwrap();
    let checkpoint = checkpoint_covering(&eco, refusal_seq).await;
    let root = hash(&checkpoint["root_hash"]);

    // The refused sender proves its refusal with the seq the refusal gave it.
    let proof = eco
        .get(&format!("/v1/entries/{refusal_seq}/proof"))
        .await
        .unwrap();
    assert_eq!(proof.status, 200, "{}", proof.body);
    check_inclusion(&proof.body, &hash(&proof.body["checkpoint"]["root_hash"]));
    let entry: Value = serde_json::from_slice(
        &STANDARD
            .decode(proof.body["entry"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(entry["kind"], "message.rejected");
    assert_eq!(entry["detail"]["code"], "payload_invalid");
    // Another agency learns nothing of it.
    let hidden = market
        .get(&format!("/v1/entries/{refusal_seq}/proof"))
        .await
        .unwrap();
    assert_eq!(hidden.status, 404, "{}", hidden.body);

    // The message's proof carries each entry's bytes, whose leaf hash is the proven one.
    let proof = eco
        .get(&format!(
            "/v1/messages/{}/proof",
            lead["id"].as_str().unwrap()
        ))
        .await
        .unwrap();
    assert_eq!(proof.status, 200, "{}", proof.body);
    let proven_root = hash(&proof.body["checkpoint"]["root_hash"]);
    for entry in proof.body["entries"].as_array().unwrap() {
        check_inclusion(entry, &proven_root);
    }

    // Consistency: bad ranges are 400; the answer carries both ends' checkpoints.
    let bad = eco.get("/v1/checkpoints/consistency?from=0").await.unwrap();
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert_eq!(bad.body["code"], "invalid_parameter");
    let size = checkpoint["tree_size"].as_u64().unwrap();
    let by_size = eco.get(&format!("/v1/checkpoints/{size}")).await.unwrap();
    assert_eq!(by_size.status, 200, "{}", by_size.body);
    assert_eq!(hash(&by_size.body["root_hash"]), root);
    assert_eq!(eco.get("/v1/checkpoints/999999").await.unwrap().status, 404);
    let consistency = eco
        .get(&format!(
            "/v1/checkpoints/consistency?from={size}&to={size}"
        ))
        .await
        .unwrap();
    assert_eq!(consistency.status, 200, "{}", consistency.body);
    assert_eq!(consistency.body["from_checkpoint"]["tree_size"], size);
    assert_eq!(consistency.body["to_checkpoint"]["tree_size"], size);

    // The auditor reads entries, checkpoints and proofs; agencies do not page the ledger;
    // the auditor sends and receives nothing.
    let page = auditor.get("/v1/entries?from=1&limit=1").await.unwrap();
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["next"], 2);
    let first = STANDARD
        .decode(page.body["entries"][0]["entry"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        leaf_hash(&first),
        hash(&page.body["entries"][0]["leaf_hash"])
    );
    let proof = auditor
        .get(&format!("/v1/entries/{refusal_seq}/proof"))
        .await
        .unwrap();
    assert_eq!(proof.status, 200, "{}", proof.body);
    assert_eq!(eco.get("/v1/entries").await.unwrap().status, 403);
    let sent = auditor.submit(&lead_event("SD-PROOF-2")).await.unwrap();
    assert_eq!(sent.status, 403, "{}", sent.body);
    assert_eq!(auditor.pull(0, 1).await.unwrap().status, 403);
    let limit = auditor.get("/v1/entries?limit=0").await.unwrap();
    assert_eq!(limit.status, 400, "{}", limit.body);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn a_witness_cosigns_checkpoints_that_extend_and_catches_a_forked_history() {
    let mut world = World::new().await;
    let files_dir = tempfile::tempdir().unwrap();
    let witness_key = files_dir.path().join("witness.key");
    let verifier_key = witness_cmd::init(WITNESS, &witness_key).unwrap();
    world.config.auditors = vec![AUDITOR.into()];
    world.config.witnesses = vec![verifier_key.clone()];
    let broker = world.start().await;
    let auditor_files = auditor_files(&world, files_dir.path());
    let eco = world.client(&broker, "eco");
    let layout = PkiLayout::new(world.config.tls_dir.clone());
    // The ledger's checkpoint verifier key, as `liaison pki init` publishes it.
    let log_key = std::fs::read_to_string(layout.ledger_verifier_key())
        .unwrap()
        .trim()
        .to_owned();
    let args = |broker: &Broker| RunArgs {
        url: format!("https://localhost:{}", broker.https_addr.port()),
        ca: layout.ca_cert(),
        cert: auditor_files.0.clone(),
        tls_key: auditor_files.1.clone(),
        log_key: log_key.clone(),
        name: WITNESS.into(),
        key: witness_key.clone(),
        state: files_dir.path().join("witness.state"),
    };

    let first = eco.submit(&lead_event("SD-WIT-1")).await.unwrap();
    checkpoint_covering(&eco, first.body["seq"].as_u64().unwrap()).await;
    let seen = witness_cmd::witness_once(&args(&broker)).await.unwrap();
    assert_eq!(seen.previous, None);
    assert!(seen.stored);
    // The broker serves the cosignature; it verifies with the witness's key.
    let cosigned = eco
        .get(&format!("/v1/checkpoints/{}", seen.size))
        .await
        .unwrap();
    assert_eq!(cosigned.status, 200, "{}", cosigned.body);
    assert_eq!(cosigned.body["cosignatures"][0]["witness"], WITNESS);
    let verifier = CosignatureVerifier::from_verifier_key(&verifier_key).unwrap();
    verifier
        .verify(cosigned.body["cosigned_note"].as_str().unwrap())
        .unwrap();
    // A line that is no cosignature of a configured witness is refused.
    let auditor = auditor_client(&world, &broker, &auditor_files);
    let forged = auditor
        .post_json(
            &format!("/v1/checkpoints/{}/cosignatures", seen.size),
            &json!({"line": format!("— {WITNESS} AAAA")}),
        )
        .await
        .unwrap();
    assert_eq!(forged.status, 400, "{}", forged.body);

    // The ledger grows: the witness checks the consistency proof and cosigns again.
    let second = eco.submit(&lead_event("SD-WIT-2")).await.unwrap();
    checkpoint_covering(&eco, second.body["seq"].as_u64().unwrap()).await;
    let grown = witness_cmd::witness_once(&args(&broker)).await.unwrap();
    assert_eq!(grown.previous, Some(seen.size));
    assert!(grown.size > seen.size);
    let state_before = std::fs::read_to_string(files_dir.path().join("witness.state")).unwrap();
    broker.shutdown(Duration::from_secs(5)).await;

    // The same key and origin now serve another history (another database): more
    // entries, but not an extension of what the witness cosigned.
    let mut forked = world.config.clone();
    forked.database_url = format!("{}_fork", world.config.database_url);
    liaison_ledger::ensure_database(&forked.database_url)
        .await
        .unwrap();
    let fork = Broker::start(forked.clone()).await.unwrap();
    let eco = world.client(&fork, "eco");
    let mut last = 0;
    for i in 0..8 {
        let answer = eco
            .submit(&lead_event(&format!("SD-FORK-{i}")))
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{}", answer.body);
        last = answer.body["seq"].as_u64().unwrap();
    }
    assert!(last > grown.size);
    checkpoint_covering(&eco, last).await;
    let error = witness_cmd::witness_once(&args(&fork)).await.unwrap_err();
    let fork_found = error
        .downcast_ref::<ForkDetected>()
        .unwrap_or_else(|| panic!("not a fork: {error:#}"));
    assert_eq!(fork_found.seen_size, grown.size);
    // Nothing was cosigned on the forked history, and the witness kept what it saw.
    let size = fork_found.shown_size;
    let served = eco.get(&format!("/v1/checkpoints/{size}")).await.unwrap();
    assert_eq!(served.body["cosignatures"], json!([]), "{}", served.body);
    assert_eq!(
        std::fs::read_to_string(files_dir.path().join("witness.state")).unwrap(),
        state_before
    );

    fork.shutdown(Duration::from_secs(5)).await;
    let _ = liaison_ledger::drop_database(&forked.database_url).await;
    world.cleanup().await;
}
