//! Identity: only certificates of the configured CA get in, and the certificate — not the
//! body — says who is sending.

use std::sync::Arc;
use std::time::Duration;

use liaison_client::AgencyClient;
use liaison_core::{EntryKind, Registry};
use liaison_devtools::demo::lead_event;
use liaison_ledger::TraceKey;
use liaison_pki::{PkiLayout, PkiOptions};
use liaison_tests::{World, code, repo_root};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

#[tokio::test]
async fn a_client_without_a_certificate_fails_the_handshake() {
    let world = World::new().await;
    let broker = world.start().await;

    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(world.layout().ca_cert()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let anonymous = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .build()
        .unwrap();
    let result = anonymous
        .post(format!(
            "https://localhost:{}/v1/messages",
            broker.https_addr.port()
        ))
        .header("content-type", "application/cloudevents+json")
        .body(serde_json::to_vec(&lead_event("SD-NOCERT")).unwrap())
        .send()
        .await;
    let err = result.expect_err("no HTTP answer without a client certificate");
    assert!(
        err.status().is_none(),
        "the TLS handshake fails, not the request: {err}"
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_fails_the_handshake() {
    let world = World::new().await;
    let broker = world.start().await;

    let other = tempfile::tempdir().unwrap();
    let registry = Registry::load(&repo_root().join("deploy/demo/agencies.toml")).unwrap();
    liaison_pki::init(other.path(), &registry, &PkiOptions::default()).unwrap();
    // Trust the real server (so only the client side differs) but present a foreign eco certificate.
    std::fs::copy(
        world.layout().ca_cert(),
        PkiLayout {
            dir: other.path().to_owned(),
        }
        .ca_cert(),
    )
    .unwrap();
    let forged = AgencyClient::new(
        &PkiLayout {
            dir: other.path().to_owned(),
        },
        &code("eco"),
        &format!("https://localhost:{}", broker.https_addr.port()),
    )
    .unwrap();
    let result = forged.submit(&lead_event("SD-OTHERCA")).await;
    assert!(
        result.is_err(),
        "a certificate from another CA must not get an HTTP answer: {result:?}"
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn source_naming_another_agency_is_forbidden_and_recorded() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");

    let mut lead = lead_event("SD-SPOOF");
    lead["source"] = serde_json::json!("urn:liaison:agency:market");
    let answer = eco.submit(&lead).await.unwrap();
    assert_eq!(answer.status, 403, "{}", answer.body);
    assert!(
        answer.content_type.starts_with("application/problem+json"),
        "{}",
        answer.content_type
    );
    assert_eq!(answer.body["code"], "source_mismatch");
    assert_eq!(answer.body["status"], 403);
    assert_eq!(answer.body["message_id"], lead["id"]);
    let seq = answer.body["ledger_seq"]
        .as_u64()
        .expect("the rejection is in the ledger");

    // Filed under its own (unused) message id; the case is only claimed, since eco is not
    // yet a party of SD-SPOOF (see refusals.rs).
    let ledger = world.ledger().await;
    let id = uuid::Uuid::parse_str(lead["id"].as_str().unwrap()).unwrap();
    let trace = ledger.trace(&TraceKey::Message(id)).await.unwrap();
    assert_eq!(trace.len(), 1, "{trace:?}");
    assert_eq!(trace[0].seq, seq);
    assert_eq!(trace[0].kind, EntryKind::MessageRejected);
    assert_eq!(
        trace[0].agency,
        Some(code("eco")),
        "recorded under the authenticated sender"
    );
    assert_eq!(trace[0].detail["code"], "source_mismatch");
    assert_eq!(trace[0].detail["claimed"]["caseref"], "SD-SPOOF");

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
