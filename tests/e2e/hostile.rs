//! Hostile input against the running broker: every case gets its expected status and
//! stable code (or a refused handshake, or a closed connection), and after every case a
//! valid lead is still accepted. Cases covered elsewhere are not repeated here:
//! malformed JSON, unknown type, 415 and unknown originals (`answers.rs`), duplicate ids
//! (`answers.rs`), `source` of another agency, no certificate and another CA (`auth.rs`),
//! forbidden recipients and types (`policy.rs`).

use std::sync::Arc;
use std::time::Duration;

use liaison_client::AgencyClient;
use liaison_core::EntryKind;
use liaison_devtools::demo::lead_event;
use liaison_ledger::TraceKey;
use liaison_pki::PkiLayout;
use liaison_server::Broker;
use liaison_server::tls;
use liaison_tests::{World, code};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// One raw request and what must come back.
struct Case {
    name: &'static str,
    content_type: &'static str,
    body: Vec<u8>,
    status: u16,
    code: &'static str,
}

fn lead_bytes(caseref: &str) -> Vec<u8> {
    serde_json::to_vec(&lead_event(caseref)).unwrap()
}

fn cases(max_body: usize) -> Vec<Case> {
    let mut invalid_utf8 = lead_bytes("SD-HOSTILE-UTF8");
    let at = invalid_utf8.len() / 2;
    invalid_utf8.splice(at..at, [0xff, 0xfe, 0xc3]);
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let mut deep_data = lead_event("SD-HOSTILE-DEEP");
    deep_data["data"]["extra"] = (0..40).fold(json!(1), |inner, _| json!({ "a": inner }));
    let mut missing = lead_event("SD-HOSTILE-MISSING");
    for attribute in ["specversion", "type", "source"] {
        missing.as_object_mut().unwrap().remove(attribute);
    }
    let mut oversized = lead_event("SD-HOSTILE-BIG");
    oversized["data"]["summary"] = json!("河".repeat(max_body / 3 + 10));
    vec![
        Case {
            name: "invalid UTF-8",
            content_type: "application/cloudevents+json",
            body: invalid_utf8,
            status: 400,
            code: "invalid_utf8",
        },
        Case {
            name: "100,000 nested arrays",
            content_type: "application/cloudevents+json",
            body: nested.into_bytes(),
            status: 400,
            code: "too_deep",
        },
        Case {
            name: "a payload nested 40 deep",
            content_type: "application/cloudevents+json",
            body: serde_json::to_vec(&deep_data).unwrap(),
            status: 400,
            code: "too_deep",
        },
        Case {
            name: "body over the limit",
            content_type: "application/cloudevents+json",
            body: serde_json::to_vec(&oversized).unwrap(),
            status: 413,
            code: "body_too_large",
        },
        Case {
            name: "missing specversion, type and source",
            content_type: "application/cloudevents+json",
            body: serde_json::to_vec(&missing).unwrap(),
            status: 422,
            code: "envelope_invalid",
        },
        Case {
            name: "valid JSON sent as text/plain",
            content_type: "text/plain",
            body: lead_bytes("SD-HOSTILE-TEXT"),
            status: 415,
            code: "unsupported_media_type",
        },
        Case {
            name: "a JSON array instead of an event",
            content_type: "application/json",
            body: b"[1,2,3]".to_vec(),
            status: 422,
            code: "envelope_invalid",
        },
        Case {
            name: "duplicate member names",
            content_type: "application/cloudevents+json",
            body: {
                let text = String::from_utf8(lead_bytes("SD-HOSTILE-DUP")).unwrap();
                text.replacen('{', "{\"type\":\"pil.lead.v1\",", 1)
                    .into_bytes()
            },
            status: 400,
            code: "malformed_json",
        },
    ]
}

/// An agency's reqwest client, for requests `AgencyClient` does not make.
fn raw_client(world: &World, agency: &str) -> reqwest::Client {
    let tls = tls::agency_client_config(&world.layout(), &code(agency)).unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

async fn still_serves(eco: &AgencyClient, after: &str) {
    let answer = eco
        .submit(&lead_event("SD-HOSTILE-VALID"))
        .await
        .unwrap_or_else(|e| panic!("no answer to a valid lead after {after}: {e:#}"));
    assert_eq!(
        answer.status, 202,
        "a valid lead after {after}: {}",
        answer.body
    );
}

#[tokio::test]
async fn hostile_bodies_get_their_status_and_code_and_valid_traffic_goes_on() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let http = raw_client(&world, "eco");
    let url = format!("https://localhost:{}/v1/messages", broker.https_addr.port());

    for case in cases(world.config.limits.max_body_bytes) {
        let response = http
            .post(&url)
            .header("content-type", case.content_type)
            .body(case.body.clone())
            .send()
            .await
            .unwrap_or_else(|e| panic!("{}: no answer: {e}", case.name));
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(
            (status, body["code"].as_str()),
            (case.status, Some(case.code)),
            "{}: {body}",
            case.name
        );
        assert!(
            content_type.starts_with("application/problem+json"),
            "{}: {content_type}",
            case.name
        );
        assert!(
            body["ledger_seq"].as_u64().is_some(),
            "{}: every refusal is recorded: {body}",
            case.name
        );
        still_serves(&eco, case.name).await;
    }

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

/// Strings that look like SQL or HTML are data: stored and handed back byte for byte.
#[tokio::test]
async fn sql_and_html_lookalikes_come_back_byte_for_byte() {
    let world = World::new().await;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");
    let mut lead = lead_event("SD-HOSTILE-INJECT");
    lead["subject"] = json!("<script>alert('x')</script> &amp; <img src=x onerror=alert(1)>");
    lead["data"]["summary"] =
        json!("Robert'); DROP TABLE messages;-- \\\" \u{0000} \u{202e} ' OR '1'='1 <b>粗</b>");
    // Not serde's formatting: odd spacing and escapes that a re-serialization would change.
    let text = serde_json::to_string_pretty(&lead).unwrap().replace(
        "\"specversion\": \"1.0\"",
        "\"specversion\" :\t\"1\\u002e0\"",
    );
    let bytes = text.into_bytes();
    let answer = eco.submit_bytes(bytes.clone()).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    let id = answer.body["id"].as_str().unwrap().to_owned();

    // The message resource embeds the stored event verbatim.
    let response = raw_client(&world, "eco")
        .get(format!(
            "https://localhost:{}/v1/messages/{id}",
            broker.https_addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let text = response.bytes().await.unwrap();
    assert!(
        contains(&text, &bytes),
        "GET /v1/messages/{id} does not hold the posted bytes verbatim"
    );

    // The recipient receives exactly those bytes.
    let response = raw_client(&world, "procuratorate")
        .get(format!(
            "https://localhost:{}/v1/inbox?wait=10&max=1",
            broker.https_addr.port()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let pulled = response.bytes().await.unwrap();
    assert!(
        contains(&pulled, &bytes),
        "the pulled delivery does not hold the posted bytes verbatim: {}",
        String::from_utf8_lossy(&pulled)
    );
    let ledger = world.ledger().await;
    let stored = ledger
        .message(id.parse().unwrap())
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(stored.body.as_ref(), bytes.as_slice(), "ledger bytes");

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

fn client_with(world: &World, broker: &Broker, cert_pem: &str, key_pem: &str) -> AgencyClient {
    let dir = tempfile::tempdir().unwrap();
    let other = PkiLayout {
        dir: dir.path().to_owned(),
    };
    std::fs::create_dir_all(other.agencies_dir()).unwrap();
    std::fs::copy(world.layout().ca_cert(), other.ca_cert()).unwrap();
    std::fs::write(other.agency_cert(&code("eco")), cert_pem).unwrap();
    std::fs::write(other.agency_key(&code("eco")), key_pem).unwrap();
    let client = AgencyClient::new(
        &other,
        &code("eco"),
        &format!("https://localhost:{}", broker.https_addr.port()),
    )
    .unwrap();
    drop(dir); // the client holds its TLS configuration in memory
    client
}

#[tokio::test]
async fn expired_and_revoked_certificates_fail_the_handshake() {
    let world = World::new().await;
    // Revoke market's certificate before the broker starts (`liaison pki revoke`).
    let revoked = liaison_pki::crl::revoke(&world.layout(), &code("market")).unwrap();
    assert_eq!(revoked.total, 1);
    let broker = world.start().await;

    let market = world.client(&broker, "market");
    let mut lead = lead_event("SD-HOSTILE-REVOKED");
    lead["source"] = json!(code("market").urn());
    let result = market.submit(&lead).await;
    assert!(
        result.is_err(),
        "a revoked certificate must get no HTTP answer: {result:?}"
    );

    let now = OffsetDateTime::now_utc();
    let (cert, key) = liaison_pki::issue_agency_cert(
        &world.config.tls_dir,
        &code("eco"),
        now - time::Duration::days(30),
        now - time::Duration::days(1),
    )
    .unwrap();
    let expired = client_with(&world, &broker, &cert, &key);
    let result = expired.submit(&lead_event("SD-HOSTILE-EXPIRED")).await;
    assert!(
        result.is_err(),
        "an expired certificate must get no HTTP answer: {result:?}"
    );

    // A freshly issued certificate of the same CA still works, and so does eco's own.
    let (cert, key) = liaison_pki::issue_agency_cert(
        &world.config.tls_dir,
        &code("eco"),
        now - time::Duration::hours(1),
        now + time::Duration::days(1),
    )
    .unwrap();
    let fresh = client_with(&world, &broker, &cert, &key);
    let answer = fresh.submit(&lead_event("SD-HOSTILE-FRESH")).await.unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    still_serves(&world.client(&broker, "eco"), "refused handshakes").await;

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

async fn tls_connect(world: &World, broker: &Broker, agency: &str) -> TlsStream<TcpStream> {
    let mut config = tls::agency_client_config(&world.layout(), &code(agency)).unwrap();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(broker.https_addr).await.unwrap();
    TlsConnector::from(Arc::new(config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake")
}

/// Reads until the peer closes or `limit` passes; returns what came.
async fn read_until_closed(stream: &mut (impl AsyncReadExt + Unpin), limit: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    out
}

#[tokio::test]
async fn slow_drip_bodies_end_with_408_and_do_not_hold_the_only_slot() {
    let mut world = World::new().await;
    world.config.limits.request_timeout = Duration::from_millis(1_500);
    world.config.limits.max_concurrent_requests = 1;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");

    let body = lead_bytes("SD-HOSTILE-DRIP");
    let drip = tls_connect(&world, &broker, "eco").await;
    let (mut reader, mut writer) = tokio::io::split(drip);
    let head = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/cloudevents+json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.write_all(&body[..10]).await.unwrap();
    writer.flush().await.unwrap();

    // While the drip holds the only slot, others are told to retry rather than queued.
    let busy = crate::path::wait_for(|| async {
        let answer = eco.submit(&lead_event("SD-HOSTILE-BUSY")).await.ok()?;
        (answer.status == 503).then_some(answer)
    })
    .await;
    assert_eq!(busy.body["code"], "unavailable", "{}", busy.body);

    // One byte every 200 ms would take minutes; the request deadline ends it.
    let dripping = async {
        for byte in &body[10..] {
            if writer.write_all(&[*byte]).await.is_err() || writer.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    let answer = tokio::select! {
        _ = dripping => panic!("the whole body was accepted at one byte per 200 ms"),
        answer = read_until_closed(&mut reader, Duration::from_secs(10)) => answer,
    };
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":\"request_timeout\""), "{text}");

    // The slot is free again.
    still_serves(&eco, "a slow-drip body").await;
    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn thousands_of_idle_connections_are_closed_and_valid_traffic_goes_on() {
    let mut world = World::new().await;
    world.config.limits.handshake_timeout = Duration::from_secs(1);
    world.config.limits.header_read_timeout = Duration::from_secs(1);
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");

    // 2,000 connections that never start TLS, and 20 that finish it and never send a request.
    let mut silent = Vec::new();
    for _ in 0..2_000 {
        silent.push(TcpStream::connect(broker.https_addr).await.unwrap());
    }
    let mut handshaken = Vec::new();
    for _ in 0..20 {
        handshaken.push(tls_connect(&world, &broker, "eco").await);
    }
    still_serves(&eco, "2,020 idle connections").await;

    let limit = Duration::from_secs(10);
    let closed = futures::future::join_all(silent.iter_mut().map(|tcp| async move {
        let mut byte = [0u8; 1];
        matches!(
            tokio::time::timeout(limit, tcp.read(&mut byte)).await,
            Ok(Ok(0) | Err(_))
        )
    }))
    .await;
    let still_open = closed.iter().filter(|c| !**c).count();
    assert_eq!(
        still_open, 0,
        "connections that never started TLS still open after {limit:?}"
    );
    for tls in &mut handshaken {
        let rest = read_until_closed(tls, limit).await;
        assert!(
            rest.is_empty() || rest.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&rest)
        );
    }
    still_serves(&eco, "idle connections were closed").await;

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn an_agency_over_its_rate_gets_429_and_others_do_not() {
    let mut world = World::new().await;
    world.config.limits.rate_per_second = 1;
    world.config.limits.rate_burst = 3;
    let broker = world.start().await;
    let eco = world.client(&broker, "eco");

    let mut statuses = Vec::new();
    for i in 0..5 {
        let answer = eco
            .submit(&lead_event(&format!("SD-HOSTILE-RATE-{i}")))
            .await
            .unwrap();
        if answer.status == 429 {
            assert_eq!(answer.body["code"], "rate_limited", "{}", answer.body);
            assert!(
                answer.body.get("ledger_seq").is_none(),
                "a flood is not recorded"
            );
        }
        statuses.push(answer.status);
    }
    assert_eq!(&statuses[..3], &[202, 202, 202], "{statuses:?}");
    assert!(statuses[3..].contains(&429), "{statuses:?}");

    // Reads are not submissions, and other agencies have their own bucket.
    assert_eq!(eco.get("/v1/schemas").await.unwrap().status, 200);
    let market = world.client(&broker, "market");
    let mut report = lead_event("SD-HOSTILE-RATE-MARKET");
    report["source"] = json!(code("market").urn());
    let answer = market.submit(&report).await.unwrap();
    assert_ne!(answer.status, 429, "{}", answer.body);

    // The ledger has no trace of the refused flood.
    let ledger = world.ledger().await;
    let trace = ledger
        .trace(&TraceKey::Case("SD-HOSTILE-RATE-4".into()))
        .await
        .unwrap();
    assert!(
        trace.iter().all(|e| e.kind == EntryKind::MessageAccepted),
        "{trace:?}"
    );

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
