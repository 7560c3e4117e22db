//! The full path: HTTPS clients with client certificates post leads; the broker validates,
//! commits, relays with confirms; a consumer takes them from the procuratorate's queue.

use std::collections::HashMap;
use std::path::PathBuf;
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
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::cpu::CpuUse;
use super::setup::BenchWorld;
use liaison_client::AgencyClient;

/// Agencies that post leads in the benchmark; the clients (one HTTP/2 connection each) are
/// dealt to them in turn.
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

/// Latencies of one run, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Percentiles {
    #[serde(default)]
    pub mean: f64,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl Percentiles {
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1]
        };
        Self {
            mean: samples.iter().sum::<f64>() / samples.len() as f64,
            p50: at(0.50),
            p95: at(0.95),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PathResult {
    /// How the agencies' clients spoke to the gateway.
    pub http: Http,
    /// Clients posting: with HTTP/2, the connections the requests are multiplexed on.
    pub connections: usize,
    pub messages: usize,
    pub concurrency: Option<usize>,
    pub offered_rate: Option<f64>,
    pub seconds: f64,
    pub throughput: f64,
    pub accepted_ms: Percentiles,
    pub delivered_ms: Percentiles,
    /// CPU each process spent while the phase was measured (filled in by the bench, which
    /// watches the processes; absent when measured in-process).
    #[serde(default)]
    pub cpu: Option<CpuUse>,
    /// The broker's own means over the phase (filled in by the bench, whose process the
    /// broker runs in).
    #[serde(default)]
    pub stages: Option<super::stages::Stages>,
}

/// The leads the benchmark posts: the demo's realistic lead, its harm description
/// lengthened with more of the same prose when a larger message is asked for.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
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
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Http {
    /// HTTP/1.1 keep-alive: a connection per request in flight.
    #[serde(rename = "HTTP/1.1")]
    Http1,
    /// HTTP/2: one connection per client, the requests multiplexed on it.
    #[serde(rename = "HTTP/2")]
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

/// Where the load goes: the gateway, the PKI the agencies' certificates come from, and the
/// RabbitMQ virtual host the procuratorate consumes from. All a separate process needs.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    /// The gateway's base URL, `https://localhost:<port>`.
    pub base_url: String,
    pub tls_dir: PathBuf,
    pub amqp_url: String,
}

impl Target {
    pub fn of(world: &BenchWorld, broker: &Broker) -> Self {
        Self {
            base_url: format!("https://localhost:{}", broker.https_addr.port()),
            tls_dir: world.config.tls_dir.clone(),
            amqp_url: world.config.amqp_url.clone(),
        }
    }
}

/// `count` clients, dealt to the sending agencies in turn (eight: one each), each with the
/// connections its share of `concurrency` requests in flight will use already open:
/// keep-alive clients pay their TLS handshakes once, before any message, and the
/// measurement should not include them. Over HTTP/2 a client is one connection. (Requests
/// started together on a client that has not yet learned, through ALPN, that its
/// connection speaks HTTP/2 would also each open a connection of their own.)
async fn clients(
    target: &Target,
    http: Http,
    count: usize,
    concurrency: usize,
) -> anyhow::Result<Vec<Arc<AgencyClient>>> {
    let layout = PkiLayout {
        dir: target.tls_dir.clone(),
    };
    let base = &target.base_url;
    let count = count.max(1);
    let connections = match http {
        Http::Http1 => concurrency.div_ceil(count),
        Http::Http2 => 1,
    };
    let mut clients = Vec::with_capacity(count);
    for sender in SENDERS.iter().cycle().take(count) {
        let agency = AgencyCode::new(*sender)?;
        let client = match http {
            Http::Http1 => AgencyClient::new_http1(&layout, &agency, base)?,
            Http::Http2 => AgencyClient::new(&layout, &agency, base)?,
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

/// The consuming agency's task: each lead's time from post to consumption, and when the
/// last one arrived.
type Consuming = tokio::task::JoinHandle<anyhow::Result<(Vec<f64>, Instant)>>;

/// Consumes `expect` messages from the procuratorate's queue and returns each one's
/// time from post to consumption.
async fn consume(target: &Target, expect: usize, started: Started) -> anyhow::Result<Consuming> {
    let connection = Connection::connect(&target.amqp_url, ConnectionProperties::default()).await?;
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
    endpoint: Endpoint,
    id: Uuid,
    bytes: Vec<u8>,
    started: &Started,
) -> anyhow::Result<f64> {
    let begin = Instant::now();
    started
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id, begin);
    let answer = match endpoint {
        Endpoint::Submit => client.submit_bytes(bytes).await?,
        Endpoint::Preview => client.preview_bytes(bytes).await?,
    };
    if answer.status != endpoint.success() {
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

/// How the leads are offered.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum Pace {
    /// `messages` leads as fast as the requests in flight allow.
    Saturate { messages: usize },
    /// A lead every 1/rate seconds for `seconds`, regardless of how fast answers come.
    FixedRate { rate: f64, seconds: f64 },
}

/// What the leads are posted to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Endpoint {
    /// `POST /v1/messages`: the full path, each lead consumed from the procuratorate's
    /// queue.
    Submit,
    /// `POST /v1/routes/preview`: the same checks before the ledger, nothing recorded and
    /// nothing delivered — the gateway alone (TLS, HTTP/2 and admission, both ends).
    Preview,
}

impl Endpoint {
    /// The status every post must be answered with.
    fn success(self) -> u16 {
        match self {
            Self::Submit => 202,
            Self::Preview => 200,
        }
    }
}

/// One run of the load generator.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Run {
    pub target: Target,
    pub endpoint: Endpoint,
    pub leads: Leads,
    pub http: Http,
    /// Clients (HTTP/2 connections) the requests are spread over.
    pub connections: usize,
    /// Requests in flight at most (saturated runs).
    pub concurrency: usize,
    pub pace: Pace,
    /// Case references of their own per run, so that each run opens new cases.
    pub caseref_prefix: String,
}

/// A run with its connections open, its consumer listening (when its leads are
/// delivered) and its leads made: what is left is what is measured.
pub struct Ready {
    run: Run,
    messages: usize,
    prepared: Vec<(Arc<AgencyClient>, Uuid, Vec<u8>)>,
    started: Started,
    consumer: Option<Consuming>,
}

impl Run {
    pub fn messages(&self) -> usize {
        match self.pace {
            Pace::Saturate { messages } => messages,
            Pace::FixedRate { rate, seconds } => ((rate * seconds) as usize).max(1),
        }
    }

    pub async fn prepare(self) -> anyhow::Result<Ready> {
        let clients = clients(&self.target, self.http, self.connections, self.concurrency).await?;
        let messages = self.messages();
        let started: Started = Arc::default();
        let consumer = match self.endpoint {
            Endpoint::Submit => Some(consume(&self.target, messages, started.clone()).await?),
            Endpoint::Preview => None,
        };
        let prepared = prepare(&clients, self.leads, messages, &self.caseref_prefix);
        Ok(Ready {
            run: self,
            messages,
            prepared,
            started,
            consumer,
        })
    }
}

impl Ready {
    /// Posts every lead and waits until the procuratorate has consumed them all (for
    /// previews, until every answer is in).
    pub async fn go(self) -> anyhow::Result<PathResult> {
        let Ready {
            run,
            messages,
            prepared,
            started,
            consumer,
        } = self;
        let begin = Instant::now();
        let (accepted, concurrency, offered_rate) = match run.pace {
            Pace::Saturate { .. } => (
                post_all(prepared, run.endpoint, run.concurrency, &started).await?,
                Some(run.concurrency),
                None,
            ),
            Pace::FixedRate { rate, .. } => {
                let posted = paced(prepared, run.endpoint, rate, &started).await?;
                (posted, None, Some(rate))
            }
        };
        let (delivered, end) = match consumer {
            Some(consumer) => consumer.await.context("consumer task")??,
            None => (Vec::new(), Instant::now()),
        };
        let seconds = end.duration_since(begin).as_secs_f64();
        Ok(PathResult {
            http: run.http,
            connections: run.connections,
            messages,
            concurrency,
            offered_rate,
            seconds,
            throughput: messages as f64 / seconds,
            accepted_ms: Percentiles::of(accepted),
            delivered_ms: Percentiles::of(delivered),
            cpu: None,
            stages: None,
        })
    }
}

/// As fast as `concurrency` requests in flight allow, from this process.
pub async fn saturate(
    target: &Target,
    leads: Leads,
    messages: usize,
    concurrency: usize,
) -> anyhow::Result<PathResult> {
    Run {
        target: target.clone(),
        endpoint: Endpoint::Submit,
        leads,
        http: Http::Http2,
        connections: SENDERS.len(),
        concurrency,
        pace: Pace::Saturate { messages },
        caseref_prefix: format!("SD-BENCH-C{concurrency}-"),
    }
    .prepare()
    .await?
    .go()
    .await
}

/// Posts `messages` leads and waits for their answers only: nobody consumes them.
pub async fn post_only(
    target: &Target,
    leads: Leads,
    messages: usize,
    concurrency: usize,
) -> anyhow::Result<()> {
    let clients = clients(target, Http::Http2, SENDERS.len(), concurrency).await?;
    let prepared = prepare(&clients, leads, messages, "SD-WAITING-");
    post_all(prepared, Endpoint::Submit, concurrency, &Started::default())
        .await
        .map(drop)
}

/// Posts every prepared lead, `concurrency` at once; each one's accept latency in ms.
async fn post_all(
    prepared: Vec<(Arc<AgencyClient>, Uuid, Vec<u8>)>,
    endpoint: Endpoint,
    concurrency: usize,
    started: &Started,
) -> anyhow::Result<Vec<f64>> {
    let answers: Vec<anyhow::Result<f64>> = futures::stream::iter(prepared)
        .map(|(client, id, bytes)| async move { post(&client, endpoint, id, bytes, started).await })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    answers.into_iter().collect()
}

/// An open-loop run: a lead every 1/rate seconds regardless of how fast answers come.
async fn paced(
    prepared: Vec<(Arc<AgencyClient>, Uuid, Vec<u8>)>,
    endpoint: Endpoint,
    rate: f64,
    started: &Started,
) -> anyhow::Result<Vec<f64>> {
    let mut ticker = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut accepted = Vec::with_capacity(prepared.len());
    let mut tasks = tokio::task::JoinSet::new();
    for (client, id, bytes) in prepared {
        ticker.tick().await;
        let started = started.clone();
        tasks.spawn(async move { post(&client, endpoint, id, bytes, &started).await });
    }
    while let Some(joined) = tasks.join_next().await {
        accepted.push(joined.context("posting task")??);
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let p = Percentiles::of((1..=100).map(f64::from).collect());
        assert_eq!((p.p50, p.p95, p.p99, p.max), (50.0, 95.0, 99.0, 100.0));
        assert_eq!(p.mean, 50.5);
        assert_eq!(Percentiles::of(vec![]).p99, 0.0);
    }
}
