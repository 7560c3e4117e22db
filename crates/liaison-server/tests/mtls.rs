//! Mutual TLS end to end, the way the gateway serves it: axum behind axum-server's rustls
//! acceptor built from `tls::server_config`, called by reqwest with rustls client configs.
//! Only certificates issued by the PKI's own CA, valid now and meant for clients, get
//! through the handshake; the handler learns the agency from the request's extensions.

use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::routing::get;
use axum_server::Handle;
use axum_server::tls_rustls::RustlsConfig;
use liaison_core::{AgencyCode, Registry};
use liaison_pki::{PkiLayout, PkiOptions};
use liaison_server::tls;
use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;

/// Bounds every request so that a regression shows up as a failure, not a hung test.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(20);

fn eco() -> AgencyCode {
    AgencyCode::new("eco").expect("valid code")
}

fn new_pki(dir: &Path) -> PkiLayout {
    let registry = Registry::from_toml(
        r#"
        [[agency]]
        code = "eco"
        name_zh = "生态环境分局"
        name_en = "Ecology and Environment Bureau"
        [[agency]]
        code = "police"
        name_zh = "公安分局"
        name_en = "Public Security Bureau"
        "#,
        "test registry",
    )
    .expect("registry parses");
    liaison_pki::init(dir, &registry, &PkiOptions::default()).expect("pki init");
    PkiLayout::new(dir)
}

/// Answers the caller's agency code, exactly as the gateway middleware will find it.
async fn whoami(request: Request) -> Result<String, StatusCode> {
    tls::peer_agency(request.extensions())
        .map(|agency| agency.to_string())
        .ok_or(StatusCode::FORBIDDEN)
}

/// A running HTTPS server; shut down when dropped.
struct TestGateway {
    url: String,
    handle: Handle<SocketAddr>,
}

impl Drop for TestGateway {
    fn drop(&mut self) {
        self.handle.shutdown();
    }
}

fn start_gateway(layout: &PkiLayout) -> TestGateway {
    // Bound before the server task starts: connections made from here on wait in the
    // listen backlog, so no one has to wait for the server to be "ready".
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local address");
    let config = tls::server_config(layout).expect("server config");
    let handle = Handle::new();
    let server =
        axum_server::from_tcp_rustls(listener, RustlsConfig::from_config(Arc::new(config)))
            .expect("server from listener")
            .handle(handle.clone());
    let app = Router::new().route("/whoami", get(whoami));
    tokio::spawn(async move {
        if let Err(error) = server.serve(app.into_make_service()).await {
            panic!("test gateway failed: {error}");
        }
    });
    TestGateway {
        url: format!("https://{addr}/whoami"),
        handle,
    }
}

async fn call(
    gateway: &TestGateway,
    tls: ClientConfig,
) -> Result<(StatusCode, String), reqwest::Error> {
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("reqwest client");
    let response = client.get(&gateway.url).send().await?;
    let status = response.status();
    Ok((status, response.text().await?))
}

/// Asserts the call failed before any HTTP exchange: no status, not our own timeout, and,
/// when the client got to read the server's TLS alert, one of the `expected_alerts` (rustls
/// names). The alert can be lost when the server's close races the client's first write, so
/// its absence alone does not fail the test.
fn assert_handshake_refused(
    outcome: Result<(StatusCode, String), reqwest::Error>,
    case: &str,
    expected_alerts: &[&str],
) {
    let error = match outcome {
        Ok((status, body)) => {
            panic!("{case}: expected the handshake to fail, got {status} {body:?}")
        }
        Err(error) => error,
    };
    let chain = error_chain(&error);
    assert!(
        error.status().is_none(),
        "{case}: no HTTP status expected, got {chain}"
    );
    assert!(
        !error.is_timeout(),
        "{case}: the server should refuse, not stall: {chain}"
    );
    if let Some((_, alert)) = chain.split_once("received fatal alert: ") {
        assert!(
            expected_alerts
                .iter()
                .any(|expected| alert.starts_with(expected)),
            "{case}: expected alert {expected_alerts:?}, got {chain}"
        );
    }
}

fn error_chain(error: &reqwest::Error) -> String {
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(inner) = source {
        chain.push_str(&format!(" <- {inner}"));
        source = inner.source();
    }
    chain
}

fn client_trusting(ca_cert: &Path) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_cert).expect("read ca.pem") {
        roots
            .add(cert.expect("parse ca.pem"))
            .expect("trust anchor");
    }
    ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

#[tokio::test]
async fn an_agency_certificate_identifies_its_agency() {
    tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = new_pki(dir.path());
    let gateway = start_gateway(&layout);

    for agency in [eco(), AgencyCode::new("police").expect("valid code")] {
        let client_tls = tls::agency_client_config(&layout, &agency).expect("client config");
        let (status, body) = call(&gateway, client_tls)
            .await
            .expect("mutual TLS request");
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, agency.as_str());
    }
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused_in_the_handshake() {
    tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = new_pki(dir.path());
    let gateway = start_gateway(&layout);

    let outcome = call(&gateway, client_trusting(&layout.ca_cert())).await;
    assert_handshake_refused(outcome, "no client certificate", &["CertificateRequired"]);
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_in_the_handshake() {
    tls::install_crypto_provider();
    let (dir, other_dir) = (
        tempfile::tempdir().expect("tempdir"),
        tempfile::tempdir().expect("tempdir"),
    );
    let layout = new_pki(dir.path());
    let other = new_pki(other_dir.path());
    let gateway = start_gateway(&layout);

    // Trusts the right server, so only the server's verdict on the client can fail this.
    let client_tls = tls::client_config(
        &layout.ca_cert(),
        &other.agency_cert(&eco()),
        &other.agency_key(&eco()),
    )
    .expect("client config");
    // Both CAs share a name, so the verifier finds a candidate issuer whose signature does not
    // match (DecryptError); a CA with another name would give UnknownCA.
    assert_handshake_refused(
        call(&gateway, client_tls).await,
        "certificate from another CA",
        &["DecryptError", "UnknownCA", "BadCertificate"],
    );
}

#[tokio::test]
async fn an_expired_certificate_is_refused_in_the_handshake() {
    tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = new_pki(dir.path());
    let gateway = start_gateway(&layout);

    let now = OffsetDateTime::now_utc();
    let (cert, key) = liaison_pki::issue_agency_cert(
        dir.path(),
        &eco(),
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    )
    .expect("issue expired certificate");
    let files = tempfile::tempdir().expect("tempdir");
    let (cert_path, key_path) = (
        files.path().join("expired.pem"),
        files.path().join("expired.key"),
    );
    std::fs::write(&cert_path, cert).expect("write certificate");
    std::fs::write(&key_path, key).expect("write key");

    let client_tls =
        tls::client_config(&layout.ca_cert(), &cert_path, &key_path).expect("client config");
    assert_handshake_refused(
        call(&gateway, client_tls).await,
        "expired certificate",
        &["CertificateExpired"],
    );
}

#[tokio::test]
async fn a_server_certificate_cannot_stand_in_for_a_client_certificate() {
    tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = new_pki(dir.path());
    let gateway = start_gateway(&layout);

    // Chains to the right CA, but carries only the serverAuth usage.
    let client_tls = tls::client_config(
        &layout.ca_cert(),
        &layout.server_cert(),
        &layout.server_key(),
    )
    .expect("client config");
    assert_handshake_refused(
        call(&gateway, client_tls).await,
        "server certificate as client certificate",
        &["UnsupportedCertificate"],
    );
}

#[tokio::test]
async fn the_gateway_speaks_http2_when_the_client_offers_it() {
    tls::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let layout = new_pki(dir.path());
    let gateway = start_gateway(&layout);

    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls::agency_client_config(&layout, &eco()).expect("client config"))
        .timeout(REQUEST_TIMEOUT)
        .build()
        .expect("reqwest client");
    let response = client
        .get(&gateway.url)
        .send()
        .await
        .expect("mutual TLS request");
    assert_eq!(response.version(), reqwest::Version::HTTP_2);
}
