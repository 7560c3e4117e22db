//! Revocation while the broker runs, and agencies that make their own keys: a configured
//! CRL that is missing stops the start; a new CRL applies to new handshakes without a
//! restart (on its own within the reload interval, or on SIGHUP); a CRL past its
//! nextUpdate makes `/readyz` answer 503 with the reason; a certificate issued from an
//! agency's own request (`liaison pki issue --csr`) works over mutual TLS.

use std::process::Command;
use std::time::Duration;

use liaison_client::AgencyClient;
use liaison_devtools::demo::lead_event;
use liaison_pki::PkiLayout;
use liaison_pki::crl;
use liaison_server::Broker;
use liaison_tests::process::{BrokerProcess, free_port, liaison_binary};
use liaison_tests::{World, code, repo_root};
use serde_json::Value;
use time::OffsetDateTime;

const DEADLINE: Duration = Duration::from_secs(30);

fn client_at(world: &World, port: u16, agency: &str) -> AgencyClient {
    AgencyClient::new(
        &world.layout(),
        &code(agency),
        &format!("https://localhost:{port}"),
    )
    .expect("agency client")
}

/// Whether a new connection with `agency`'s certificate gets an HTTP answer. A fresh
/// client each time: a new TLS handshake, not a connection verified earlier.
async fn handshake_accepted(world: &World, port: u16, agency: &str) -> bool {
    client_at(world, port, agency)
        .get("/v1/schemas")
        .await
        .is_ok_and(|answer| answer.status == 200)
}

/// Polls until new handshakes with `agency`'s certificate are refused.
async fn until_refused(world: &World, port: u16, agency: &str) {
    liaison_tests::eventually(
        &format!("{agency}'s revoked certificate refused"),
        DEADLINE,
        async || (!handshake_accepted(world, port, agency).await).then_some(()),
    )
    .await;
}

async fn readyz(ops_port: u16) -> (u16, Value) {
    let response = reqwest::get(format!("http://127.0.0.1:{ops_port}/readyz"))
        .await
        .expect("operations port answers");
    let status = response.status().as_u16();
    (status, response.json().await.expect("readyz is JSON"))
}

#[tokio::test]
async fn a_configured_crl_that_is_missing_stops_the_start() {
    let mut world = World::new().await;
    let missing = world.config.tls_dir.join("published").join("crl.pem");
    world.config.revocation.crl = Some(missing.clone());
    let error = Broker::start(world.config.clone())
        .await
        .err()
        .expect("the broker must not start without the CRL it was told to enforce");
    let text = error.to_string();
    assert!(
        text.contains(&missing.display().to_string()) && text.contains("does not exist"),
        "{text}"
    );

    // The same file, once there, is enforced from the start.
    std::fs::create_dir_all(missing.parent().unwrap()).unwrap();
    crl::revoke(&world.layout(), &code("market")).unwrap();
    std::fs::copy(crl::crl_path(&world.layout()), &missing).unwrap();
    std::fs::remove_file(crl::crl_path(&world.layout())).unwrap();
    let broker = world.start().await;
    let port = broker.https_addr.port();
    assert!(!handshake_accepted(&world, port, "market").await);
    assert!(handshake_accepted(&world, port, "eco").await);
    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn a_new_crl_refuses_a_revoked_certificate_without_a_restart() {
    let mut world = World::new().await;
    world.config.revocation.reload_interval = Duration::from_millis(200);
    let broker = world.start().await;
    let port = broker.https_addr.port();
    assert!(handshake_accepted(&world, port, "market").await);
    // A connection opened before the revocation: the per-request check covers it.
    let before = client_at(&world, port, "market");
    assert_eq!(before.get("/v1/schemas").await.unwrap().status, 200);

    // `liaison pki revoke` replaces the CRL file while the broker runs.
    crl::revoke(&world.layout(), &code("market")).unwrap();
    until_refused(&world, port, "market").await;
    let answer = before.get("/v1/schemas").await.unwrap();
    assert_eq!(answer.status, 401, "{}", answer.body);
    assert_eq!(answer.body["code"], "unauthenticated", "{}", answer.body);

    // Other agencies are unaffected and can still submit.
    let eco = client_at(&world, port, "eco");
    let accepted = eco.submit(&lead_event("SD-REVOKE-LIVE")).await.unwrap();
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let (status, body) = readyz(broker.ops_addr.port()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["crl"], "ok", "{body}");

    // A file that cannot be used does not lift the revocation: the last good CRL stays,
    // and readiness says why.
    std::fs::write(crl::crl_path(&world.layout()), "not a CRL").unwrap();
    let body = liaison_tests::eventually(
        "readiness refused for the unusable CRL",
        DEADLINE,
        async || {
            let (status, body) = readyz(broker.ops_addr.port()).await;
            (status == 503).then_some(body)
        },
    )
    .await;
    assert!(
        body["crl"]
            .as_str()
            .unwrap_or("")
            .contains("stays in force"),
        "{body}"
    );
    assert!(!handshake_accepted(&world, port, "market").await);
    assert!(handshake_accepted(&world, port, "eco").await);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn an_expired_crl_makes_the_broker_not_ready_until_a_fresh_one_is_in_place() {
    let mut world = World::new().await;
    world.config.revocation.reload_interval = Duration::from_millis(200);
    let layout = world.layout();
    crl::revoke(&layout, &code("market")).unwrap();
    let now = OffsetDateTime::now_utc();
    crl::refresh(
        &layout,
        now - time::Duration::days(2),
        now - time::Duration::days(1),
    )
    .unwrap();
    let broker = world.start().await;
    let ops = broker.ops_addr.port();

    let (status, body) = readyz(ops).await;
    assert_eq!(status, 503, "{body}");
    let reason = body["crl"].as_str().unwrap_or_default();
    assert!(reason.contains("expired"), "{body}");
    assert_eq!(body["ledger"], "ok", "{body}");
    // Stale or not, it is the newest revocation information: still enforced.
    assert!(!handshake_accepted(&world, broker.https_addr.port(), "market").await);

    crl::refresh_for_days(&layout, 7).unwrap();
    let body = liaison_tests::eventually("ready again", DEADLINE, async || {
        let (status, body) = readyz(ops).await;
        (status == 200).then_some(body)
    })
    .await;
    assert_eq!(body["crl"], "ok", "{body}");
    assert!(!handshake_accepted(&world, broker.https_addr.port(), "market").await);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn sighup_reloads_the_crl() {
    let world = World::new().await;
    // No polling: only the signal can bring the new CRL in.
    let config_file = world.config.tls_dir.join("sighup-test.toml");
    std::fs::write(&config_file, "[revocation]\nreload_interval = \"0s\"\n").unwrap();
    let (https, ops) = (free_port(), free_port());
    let process = BrokerProcess::spawn(&world, &config_file, https, ops).await;
    assert!(handshake_accepted(&world, https, "market").await);

    crl::revoke(&world.layout(), &code("market")).unwrap();
    assert!(
        handshake_accepted(&world, https, "market").await,
        "with polling off, the new CRL waits for the signal"
    );
    let status = Command::new("kill")
        .args(["-HUP", &process.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    until_refused(&world, https, "market").await;
    assert!(handshake_accepted(&world, https, "eco").await);

    drop(process);
    world.cleanup().await;
}

#[tokio::test]
async fn a_certificate_issued_from_an_agency_request_works_over_mutual_tls() {
    let world = World::new().await;
    let layout = world.layout();
    let work = tempfile::tempdir().unwrap();
    // The agency makes its key and request; the key never leaves it.
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let csr_path = work.path().join("eco.csr");
    std::fs::write(&csr_path, csr).unwrap();

    let liaison = |args: &[&str]| {
        Command::new(liaison_binary())
            .args(args)
            .arg("--dir")
            .arg(&layout.dir)
            .arg("--registry")
            .arg(repo_root().join("deploy/demo/agencies.toml"))
            .output()
            .expect("run liaison pki issue")
    };
    let csr_arg = csr_path.to_str().unwrap();
    // eco still holds its development certificate, not revoked: not replaced silently.
    let refused = liaison(&["pki", "issue", "--csr", csr_arg, "--agency", "eco"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("revoke it first"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let unknown = liaison(&["pki", "issue", "--csr", csr_arg, "--agency", "nobody"]);
    assert!(!unknown.status.success());
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("not in the registry"),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    crl::revoke(&layout, &code("eco")).unwrap();
    let issued = liaison(&["pki", "issue", "--csr", csr_arg, "--agency", "eco"]);
    assert!(
        issued.status.success(),
        "{}",
        String::from_utf8_lossy(&issued.stderr)
    );
    assert!(
        !layout.agency_key(&code("eco")).exists(),
        "the development key of the revoked certificate is gone"
    );

    // The agency's own files: the CA certificate, the issued certificate, its own key.
    let mine = PkiLayout::new(work.path().join("eco-side"));
    std::fs::create_dir_all(mine.agencies_dir()).unwrap();
    std::fs::copy(layout.ca_cert(), mine.ca_cert()).unwrap();
    std::fs::copy(
        layout.agency_cert(&code("eco")),
        mine.agency_cert(&code("eco")),
    )
    .unwrap();
    std::fs::write(mine.agency_key(&code("eco")), key.serialize_pem()).unwrap();

    let broker = world.start().await;
    let eco = AgencyClient::new(
        &mine,
        &code("eco"),
        &format!("https://localhost:{}", broker.https_addr.port()),
    )
    .unwrap();
    let answer = eco.submit(&lead_event("SD-CSR-ISSUED")).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
