//! The full path: HTTPS clients with client certificates post leads; the broker validates,
//! commits, relays with confirms; a consumer takes them from the procuratorate's queue.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use lapin::options::BasicAckOptions;
use lapin::{Connection, ConnectionProperties};
use liaison_bus::agency_queue;
use liaison_core::AgencyCode;
use liaison_pki::PkiLayout;
use liaison_server::Broker;
use serde::Serialize;
use uuid::Uuid;

use super::report::Percentiles;
use super::setup::BenchWorld;
use liaison_client::AgencyClient;

/// Agencies that post leads in the benchmark, each over its own keep-alive HTTP/2 connection.
const SENDERS: [&str; 8] = [
    "eco",
    "market",
    "agri",
    "natres",
    "emergency",
    "hrss",
    "water",
    "forestry",
];

#[derive(Clone, Debug, Serialize)]
pub struct PathResult {
    /// How the agencies' clients spoke to the gateway.
    pub http: Http,
    pub messages: usize,
    pub concurrency: Option<usize>,
    pub offered_rate: Option<f64>,
    pub seconds: f64,
    pub throughput: f64,
    pub accepted_ms: Percentiles,
    pub delivered_ms: Percentiles,
}

/// The leads the benchmark posts: the demo's realistic lead, its harm description
/// lengthened with more of the same prose when a larger message is asked for.
#[derive(Clone, Copy, Debug)]
pub struct Leads {
    /// Serialised size to reach at least; 0 keeps the natural size (about 950 bytes).
    pub pad_to: usize,
}

/// More description of the harm, 3 bytes a character in UTF-8.
const HARM_FILLER: &str = "沿岸农田灌溉取水口位于排污口下游，村民反映井水出现异味。";
/// The schema's limit on `data.harm`, in characters.
const HARM_MAX_CHARS: usize = 4000;

impl Leads {
    /// One lead from `sender` with a fresh id.
    pub fn make(&self, sender: &AgencyCode, caseref: &str) -> (Uuid, Vec<u8>) {
        let mut event = crate::demo::lead_event(caseref);
        event["source"] = serde_json::Value::String(sender.urn());
        let natural = serde_json::to_vec(&event).unwrap_or_default().len();
        if self.pad_to > natural {
            let harm = event["data"]["harm"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let chars = harm.chars().count();
            let wanted = (self.pad_to - natural).div_ceil(3);
            let extra: String = HARM_FILLER
                .chars()
                .cycle()
                .take(wanted.min(HARM_MAX_CHARS.saturating_sub(chars)))
                .collect();
            event["data"]["harm"] = serde_json::Value::String(harm + &extra);
        }
        let id = event["id"]
            .as_str()
            .and_then(|s| Uuid::parse_str(s).ok())
            .unwrap_or_default();
        (id, serde_json::to_vec(&event).unwrap_or_default())
    }

    pub fn size(&self) -> anyhow::Result<usize> {
        Ok(self
            .make(&AgencyCode::new("eco")?, "SD-BENCH-0000000")
            .1
            .len())
    }
}

type Started = Arc<Mutex<HashMap<Uuid, Instant>>>;

/// How the agencies' clients speak to the gateway; reported by its protocol name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Http {
    /// HTTP/1.1 keep-alive: a connection per request in flight.
    Http1,
    /// HTTP/2: one connection per agency, the requests multiplexed on it.
    Http2,
}

impl Http {
    pub fn name(self) -> &'static str {
        match self {
            Self::Http1 => "HTTP/1.1",
            Self::Http2 => "HTTP/2",
        }
    }
}

impl Serialize for Http {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.name())
    }
}

/// One client per sending agency, each with the connections `concurrency` requests in
/// flight will use already open: keep-alive clients pay their TLS handshakes once, before
/// any message, and the measurement should not include them. (Requests started together
/// on a client that has not yet learned, through ALPN, that its connection speaks HTTP/2
/// would also each open a connection of their own.)
async fn clients(
    world: &BenchWorld,
    broker: &Broker,
    http: Http,
    concurrency: usize,
) -> anyhow::Result<Vec<Arc<AgencyClient>>> {
    let layout = PkiLayout {
        dir: world.config.tls_dir.clone(),
    };
    let base = format!("https://localhost:{}", broker.https_addr.port());
    let connections = match http {
        Http::Http1 => concurrency.div_ceil(SENDERS.len()),
        Http::Http2 => 1,
    };
    let mut clients = Vec::with_capacity(SENDERS.len());
    for sender in SENDERS {
        let agency = AgencyCode::new(sender)?;
        let client = match http {
            Http::Http1 => AgencyClient::new_http1(&layout, &agency, &base)?,
            Http::Http2 => AgencyClient::new(&layout, &agency, &base)?,
        };
        let answers =
            futures::future::join_all((0..connections).map(|_| client.get("/v1/schemas"))).await;
        for answer in answers {
            let answer = answer?;
            if answer.status != 200 {
                bail!(
                    "{sender} could not connect: {} {}",
                    answer.status,
                    answer.body
                );
            }
        }
        clients.push(Arc::new(client));
    }
    Ok(clients)
}

/// Consumes `expect` messages from the procuratorate's queue and returns each one's
/// time from post to consumption.
async fn consume(
    world: &BenchWorld,
    expect: usize,
    started: Started,
) -> anyhow::Result<tokio::task::JoinHandle<anyhow::Result<(Vec<f64>, Instant)>>> {
    let connection =
        Connection::connect(&world.config.amqp_url, ConnectionProperties::default()).await?;
    let queue = agency_queue(&AgencyCode::new("procuratorate")?);
    let (channel, mut consumer) = super::raw::consumer(&connection, &queue).await?;
    Ok(tokio::spawn(async move {
        let _open = (connection, channel);
        let mut latencies = Vec::with_capacity(expect);
        let mut seen = std::collections::HashSet::with_capacity(expect);
        while seen.len() < expect {
            let delivery =
                match tokio::time::timeout(Duration::from_secs(60), consumer.next()).await {
                    Ok(Some(Ok(d))) => d,
                    Ok(Some(Err(e))) => return Err(e.into()),
                    Ok(None) | Err(_) => bail!(
                        "only {} of {expect} leads reached the procuratorate's queue",
                        seen.len()
                    ),
                };
            let now = Instant::now();
            let id = delivery
                .properties
                .message_id()
                .as_ref()
                .and_then(|s| Uuid::parse_str(s.as_str()).ok());
            delivery.acker.ack(BasicAckOptions::default()).await?;
            if let Some(id) = id.filter(|id| seen.insert(*id)) {
                let start = started
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&id)
                    .copied();
                if let Some(start) = start {
                    latencies.push(now.duration_since(start).as_secs_f64() * 1000.0);
                }
            }
        }
        Ok((latencies, Instant::now()))
    }))
}

async fn post(
    client: &AgencyClient,
    id: Uuid,
    bytes: Vec<u8>,
    started: &Started,
) -> anyhow::Result<f64> {
    let begin = Instant::now();
    started
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, begin);
    let answer = client.submit_bytes(bytes).await?;
    if answer.status != 202 {
        bail!("lead {id} answered {} {}", answer.status, answer.body);
    }
    Ok(begin.elapsed().as_secs_f64() * 1000.0)
}

/// The leads to post, each with the client of its sender, made before the clock starts:
/// building them is the agencies' work, not the broker's.
fn prepare(
    clients: &[Arc<AgencyClient>],
    leads: Leads,
    messages: usize,
    caseref_prefix: &str,
) -> Vec<(Arc<AgencyClient>, Uuid, Vec<u8>)> {
    (0..messages)
        .map(|i| {
            let client = clients[i % clients.len()].clone();
            let (id, bytes) = leads.make(&client.agency, &format!("{caseref_prefix}{i:07}"));
            (client, id, bytes)
        })
        .collect()
}

/// As fast as `concurrency` requests in flight allow.
pub async fn saturate(
    world: &BenchWorld,
    broker: &Broker,
    leads: Leads,
    http: Http,
    messages: usize,
    concurrency: usize,
) -> anyhow::Result<PathResult> {
    let clients = clients(world, broker, http, concurrency).await?;
    let started: Started = Arc::default();
    let consumer = consume(world, messages, started.clone()).await?;
    // Case references of their own per run, so that runs of one benchmark open new cases.
    let prefix = format!("SD-BENCH-C{concurrency}-");
    let prepared = prepare(&clients, leads, messages, &prefix);
    let begin = Instant::now();
    let accepted = post_all(prepared, concurrency, &started).await?;
    let (delivered, end) = consumer.await.context("consumer task")??;
    let seconds = end.duration_since(begin).as_secs_f64();
    Ok(PathResult {
        http,
        messages,
        concurrency: Some(concurrency),
        offered_rate: None,
        seconds,
        throughput: messages as f64 / seconds,
        accepted_ms: Percentiles::of(accepted),
        delivered_ms: Percentiles::of(delivered),
    })
}

/// Posts `messages` leads and waits for their answers only: nobody consumes them.
pub async fn post_only(
    world: &BenchWorld,
    broker: &Broker,
    leads: Leads,
    messages: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let clients = clients(world, broker, Http::Http2, concurrency).await?;
    let prepared = prepare(&clients, leads, messages, "SD-WAITING-");
    post_all(prepared, concurrency, &Started::default())
        .await
        .map(drop)
}

/// Posts every prepared lead, `concurrency` at once; each one's accept latency in ms.
async fn post_all(
    prepared: Vec<(Arc<AgencyClient>, Uuid, Vec<u8>)>,
    concurrency: usize,
    started: &Started,
) -> anyhow::Result<Vec<f64>> {
    let answers: Vec<anyhow::Result<f64>> = futures::stream::iter(prepared)
        .map(|(client, id, bytes)| async move { post(&client, id, bytes, started).await })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    answers.into_iter().collect()
}

/// An open-loop run: a lead every 1/rate seconds regardless of how fast answers come.
pub async fn fixed_rate(
    world: &BenchWorld,
    broker: &Broker,
    leads: Leads,
    http: Http,
    concurrency: usize,
    rate: f64,
    duration: Duration,
) -> anyhow::Result<PathResult> {
    let clients = clients(world, broker, http, concurrency).await?;
    let messages = ((rate * duration.as_secs_f64()) as usize).max(1);
    let started: Started = Arc::default();
    let consumer = consume(world, messages, started.clone()).await?;
    let prepared = prepare(&clients, leads, messages, "SD-BENCH-R");
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let begin = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (client, id, bytes) in prepared {
        ticker.tick().await;
        let started = started.clone();
        tasks.spawn(async move { post(&client, id, bytes, &started).await });
    }
    let mut accepted = Vec::with_capacity(messages);
    while let Some(joined) = tasks.join_next().await {
        accepted.push(joined.context("posting task")??);
    }
    let (delivered, end) = consumer.await.context("consumer task")??;
    let seconds = end.duration_since(begin).as_secs_f64();
    Ok(PathResult {
        http,
        messages,
        concurrency: None,
        offered_rate: Some(rate),
        seconds,
        throughput: messages as f64 / seconds,
        accepted_ms: Percentiles::of(accepted),
        delivered_ms: Percentiles::of(delivered),
    })
}
