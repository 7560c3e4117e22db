//! Operations telemetry: the metrics move with the traffic, and a delivery's AMQP
//! `traceparent` continues the trace of the request that posted the message.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use liaison_bus::agency_queue;
use liaison_client::AgencyClient;
use liaison_devtools::demo::lead_event;
use liaison_server::telemetry::{self, Kind, trace};
use liaison_tests::process::{BrokerProcess, free_port};
use liaison_tests::{World, code, eventually};

/// One scrape of `/metrics`: each series (name with its labels, as printed) and its value.
async fn scrape(ops_port: u16) -> (String, BTreeMap<String, f64>) {
    let text = reqwest::get(format!("http://127.0.0.1:{ops_port}/metrics"))
        .await
        .expect("the operations port answers")
        .text()
        .await
        .unwrap();
    let series = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    (text, series)
}

fn value(series: &BTreeMap<String, f64>, name: &str) -> f64 {
    series.get(name).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_when_messages_are_posted() {
    let world = World::new().await;
    let broker = world.start().await;
    let ops = broker.ops_addr.port();
    let eco = world.client(&broker, "eco");
    // Counters are per process and other tests run beside this one: compare before/after.
    let (_, before) = scrape(ops).await;

    let accepted_series =
        r#"liaison_submissions_total{channel="https",type="pil.lead.v1",outcome="accepted"}"#;
    let refused_series =
        r#"liaison_submissions_total{channel="https",type="unknown",outcome="malformed_json"}"#;
    for i in 0..3 {
        let answer = eco
            .submit(&lead_event(&format!("SD-METRICS-{i}")))
            .await
            .unwrap();
        assert_eq!(answer.status, 202, "{}", answer.body);
    }
    let refused = eco.submit_bytes(b"{not json".to_vec()).await.unwrap();
    assert_eq!(refused.status, 400, "{}", refused.body);

    // The relay publishes and records asynchronously: wait until its rounds show.
    let after = eventually(
        "relay rounds and a checkpoint in /metrics",
        Duration::from_secs(30),
        async || {
            let (_, now) = scrape(ops).await;
            let relayed = value(&now, "liaison_relay_publish_duration_seconds_count")
                - value(&before, "liaison_relay_publish_duration_seconds_count");
            let checkpointed = value(&now, "liaison_ledger_size") >= 1.0;
            (relayed >= 1.0 && checkpointed).then_some(now)
        },
    )
    .await;
    let moved = |name: &str| value(&after, name) - value(&before, name);
    assert!(
        moved(accepted_series) >= 3.0,
        "accepted counter moved by {}",
        moved(accepted_series)
    );
    assert!(
        moved(refused_series) >= 1.0,
        "refusal counter moved by {}",
        moved(refused_series)
    );
    assert!(moved(r#"liaison_accept_duration_seconds_count{channel="https"}"#) >= 3.0);
    assert!(moved(r#"liaison_accept_duration_seconds_sum{channel="https"}"#) > 0.0);
    assert!(moved("liaison_ledger_batch_entries_count") >= 1.0);
    assert!(moved("liaison_ledger_commit_duration_seconds_count") >= 1.0);
    assert_eq!(value(&after, "liaison_rabbitmq_up"), 1.0);
    assert_eq!(value(&after, "liaison_postgres_up"), 1.0);
    // The lead opened a case whose receipt clock runs.
    assert!(
        value(&after, r#"liaison_clocks_open{flow="lead"}"#) >= 1.0,
        "{:?}",
        after
            .keys()
            .filter(|k| k.contains("clocks"))
            .collect::<Vec<_>>()
    );

    // Every metric the broker lists is exported, with the type it is listed with.
    let (text, _) = scrape(ops).await;
    for metric in telemetry::METRICS {
        let kind = match metric.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        assert!(
            text.contains(&format!("# TYPE {} {kind}", metric.name)),
            "{} ({kind}) missing from /metrics",
            metric.name
        );
    }
    broker.shutdown(Duration::from_secs(10)).await;
    world.cleanup().await;
}

/// What an OTLP/HTTP collector received: the bodies posted to `/v1/traces`.
#[derive(Clone, Default)]
struct Collector {
    bodies: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl Collector {
    async fn start(&self) -> u16 {
        let bodies = self.bodies.clone();
        let app = axum::Router::new().route(
            "/v1/traces",
            axum::routing::post(move |body: axum::body::Bytes| {
                let bodies = bodies.clone();
                async move {
                    bodies.lock().unwrap().push(body.to_vec());
                    ""
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(listener, app).await });
        port
    }

    /// Whether some exported span carries these raw bytes (a trace or span id).
    fn received(&self, id: &[u8]) -> bool {
        self.bodies
            .lock()
            .unwrap()
            .iter()
            .any(|body| body.windows(id.len()).any(|w| w == id))
    }
}

#[tokio::test]
async fn a_delivery_continues_the_trace_of_the_request_that_posted_it() {
    let world = World::new().await;
    let collector = Collector::default();
    let collector_port = collector.start().await;
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("liaison.toml");
    std::fs::write(
        &config_file,
        "[telemetry]\nservice_name = \"liaison-test\"\n",
    )
    .unwrap();
    let endpoint = format!("http://127.0.0.1:{collector_port}/v1/traces");
    let mut broker = BrokerProcess::spawn_with_env(
        &world,
        &config_file,
        free_port(),
        free_port(),
        &[
            ("LIAISON_TELEMETRY__OTLP_ENDPOINT", &endpoint),
            // Export each batch of spans soon rather than every five seconds.
            ("OTEL_BSP_SCHEDULE_DELAY", "100"),
        ],
    )
    .await;
    let eco = AgencyClient::new(
        &world.layout(),
        &code("eco"),
        &format!("https://localhost:{}", broker.https_port),
    )
    .unwrap();

    let posted = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let answer = eco
        .submit_traced(&lead_event("SD-TRACE-AMQP"), posted)
        .await
        .unwrap();
    assert_eq!(answer.status, 202, "{}", answer.body);

    let bus = world.bus().await;
    let mut queue = bus
        .consume(&agency_queue(&code("procuratorate")), 10)
        .await
        .unwrap();
    let delivery = queue
        .next(Duration::from_secs(30))
        .await
        .unwrap()
        .expect("the lead is delivered");
    let header = delivery
        .traceparent
        .clone()
        .expect("the delivery carries a traceparent");
    assert_eq!(
        trace::trace_id(&header),
        trace::trace_id(posted),
        "the delivery continues the posting request's trace: {header}"
    );
    assert_ne!(
        trace::span_id(&header),
        trace::span_id(posted),
        "the delivery names the broker's own span, not the request's"
    );
    delivery.ack().await.unwrap();

    // The spans went to the collector: the trace, the very span the header names, and a
    // span of each step: the request, the submission, its recording, the delivery.
    let trace_id = trace::trace_id(posted).unwrap().to_bytes();
    let span_id = trace::span_id(&header).unwrap().to_bytes();
    eventually(
        "the broker's spans exported over OTLP",
        Duration::from_secs(30),
        async || {
            let steps = [
                &b"http.request"[..],
                b"message.submit",
                b"message.record",
                b"message.relay",
            ];
            (collector.received(&trace_id)
                && collector.received(&span_id)
                && steps.iter().all(|name| collector.received(name)))
            .then_some(())
        },
    )
    .await;

    broker.terminate(Duration::from_secs(10)).await;
    bus.close().await;
    world.cleanup().await;
}
