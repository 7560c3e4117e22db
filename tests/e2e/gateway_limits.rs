//! One agency cannot exhaust the gateway: its long polls, requests and connections are
//! capped per agency, and the others are served meanwhile.

use std::sync::Arc;
use std::time::{Duration, Instant};

use liaison_client::Answer;
use liaison_devtools::demo::lead_event;
use liaison_server::tls;
use liaison_tests::{World, code};
use serde_json::json;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio_rustls::TlsConnector;

fn market_lead(caseref: &str) -> serde_json::Value {
    let mut lead = lead_event(caseref);
    lead["source"] = json!(code("market").urn());
    lead
}

#[tokio::test]
async fn long_polls_of_one_agency_do_not_starve_the_others() {
    let mut world = World::new().await;
    // A small gateway, so that one agency could fill it: 8 requests in all.
    world.config.limits.max_concurrent_requests = 8;
    world.config.limits.max_requests_per_agency = 4;
    world.config.limits.max_long_polls_per_agency = 2;
    let broker = world.start().await;
    let eco = Arc::new(world.client(&broker, "eco"));
    let market = world.client(&broker, "market");

    // Eco opens twelve long polls on its (empty) inbox, all on one HTTP/2 connection.
    let mut polls: JoinSet<Answer> = JoinSet::new();
    for _ in 0..12 {
        let eco = eco.clone();
        polls.spawn(async move { eco.pull(30, 10).await.expect("an answer to a pull") });
    }
    // The polls over the cap are answered at once; wait for them.
    let mut refused = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while refused.len() < 10 {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, polls.join_next()).await {
            Ok(Some(answer)) => refused.push(answer.unwrap()),
            Ok(None) => panic!("every poll ended; two should still be waiting"),
            Err(_) => panic!(
                "only {} of eco's 12 long polls were answered at once; the rest hold the gateway",
                refused.len()
            ),
        }
    }
    for answer in &refused {
        assert_eq!(answer.status, 429, "{}", answer.body);
        assert_eq!(answer.body["code"], "concurrency_limited");
        assert!(
            answer.body["detail"]
                .as_str()
                .unwrap()
                .contains("long polls")
        );
    }

    // Meanwhile another agency's submission is answered promptly.
    let started = Instant::now();
    let answer = tokio::time::timeout(
        Duration::from_secs(10),
        market.submit(&market_lead("SD-STARVE")),
    )
    .await
    .expect("market's submission is answered while eco polls")
    .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);
    assert!(started.elapsed() < Duration::from_secs(5));
    // So is eco's own submission: its long polls hold only part of its share.
    let own = eco.submit(&lead_event("SD-STARVE-ECO")).await.unwrap();
    assert_eq!(own.status, 202, "{}", own.body);
    // Two polls still wait.
    assert_eq!(polls.len(), 2);
    polls.abort_all();

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn connections_over_an_agencys_cap_are_answered_429_and_closed() {
    let mut world = World::new().await;
    world.config.limits.max_connections_per_agency = 2;
    let broker = world.start().await;

    // Each client holds its own connection (kept alive between requests).
    let first = world.client(&broker, "eco");
    let second = world.client(&broker, "eco");
    for client in [&first, &second] {
        assert_eq!(client.get("/v1/schemas").await.unwrap().status, 200);
    }
    let third = world.client(&broker, "eco");
    let over = third.get("/v1/schemas").await.unwrap();
    assert_eq!(over.status, 429, "{}", over.body);
    assert_eq!(over.body["code"], "concurrency_limited");
    assert!(
        over.body["detail"]
            .as_str()
            .unwrap()
            .contains("connections")
    );
    // Another agency has its own connections.
    let market = world.client(&broker, "market");
    assert_eq!(market.get("/v1/schemas").await.unwrap().status, 200);

    // When eco closes a connection, a new one is served.
    drop(first);
    drop(third);
    liaison_tests::eventually(
        "the closed connection's slot freed",
        Duration::from_secs(10),
        async || {
            let answer = world
                .client(&broker, "eco")
                .get("/v1/schemas")
                .await
                .unwrap();
            if answer.status != 200 {
                assert_eq!(answer.body["code"], "concurrency_limited");
            }
            (answer.status == 200).then_some(())
        },
    )
    .await;
    assert_eq!(second.get("/v1/schemas").await.unwrap().status, 200);

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}

#[tokio::test]
async fn http2_connections_have_a_stream_cap_and_are_closed_when_idle() {
    let mut world = World::new().await;
    world.config.limits.http2_max_concurrent_streams = 7;
    world.config.limits.idle_timeout = Duration::from_millis(300);
    let broker = world.start().await;

    let mut tls_config = tls::agency_client_config(&world.layout(), &code("eco")).unwrap();
    tls_config.alpn_protocols = vec![b"h2".to_vec()];
    let tcp = TcpStream::connect(broker.https_addr).await.unwrap();
    let stream = TlsConnector::from(Arc::new(tls_config))
        .connect("localhost".try_into().unwrap(), tcp)
        .await
        .expect("TLS handshake");
    let (mut client, connection) = h2::client::handshake(stream).await.unwrap();
    tokio::pin!(connection);
    let mut get = async |path: &str| {
        let request = http::Request::get(format!("https://localhost{path}"))
            .body(())
            .unwrap();
        let (response, _) = client.send_request(request, true).unwrap();
        response.await.unwrap().status()
    };

    // A long poll outlasting the idle timeout is no idleness: it is answered on the same
    // connection. (The connection is driven meanwhile.)
    let polled = tokio::select! {
        status = get("/v1/inbox?wait=1") => status,
        closed = &mut connection => panic!("the connection closed during a long poll: {closed:?}"),
    };
    assert_eq!(polled, 200);
    // The broker's SETTINGS have arrived: the client may open 7 streams at once, no more.
    assert_eq!(connection.max_concurrent_send_streams(), 7);

    // With no request in progress the broker closes the connection (GOAWAY).
    tokio::time::timeout(Duration::from_secs(10), &mut connection)
        .await
        .expect("the idle HTTP/2 connection was not closed")
        .ok();

    broker.shutdown(Duration::from_secs(5)).await;
    world.cleanup().await;
}
