//! An agency system under load, for the tests that break things while it posts (the fault
//! test, the scale-out test): many requests in flight, each lead posted until it gets its
//! `202`, with the same bytes every time, as an agency system must.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use liaison_core::AgencyCode;
use liaison_devtools::demo::lead_event;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{World, code, eventually};

/// What the posting side knows: the leads that got `202`, with their recipients.
#[derive(Default)]
pub struct Posted {
    pub accepted: HashMap<Uuid, Vec<AgencyCode>>,
    /// When each lead got its `202`.
    pub accepted_at: HashMap<Uuid, Instant>,
    /// Leads answered `duplicate: true`: an earlier attempt was recorded and its answer
    /// lost (with a killed instance).
    pub duplicate_answers: BTreeSet<Uuid>,
    /// Attempts that got no `202` and were sent again: 503 while PostgreSQL was down,
    /// connection errors while a broker was dead.
    pub retried: usize,
}

/// `total` leads posted as `eco` to one or more broker instances, as behind a load
/// balancer: a request whose connection failed goes to the next instance.
pub struct Load {
    http: reqwest::Client,
    urls: Vec<String>,
    /// Case references are `{prefix}-{i:05}`.
    prefix: &'static str,
    total: usize,
    posted: Mutex<Posted>,
    accepted: AtomicUsize,
    next: AtomicUsize,
}

impl Load {
    /// A load on the instances whose HTTPS ports are `https_ports`.
    pub fn new(
        world: &World,
        https_ports: &[u16],
        prefix: &'static str,
        total: usize,
    ) -> Arc<Load> {
        let tls = liaison_server::tls::agency_client_config(&world.layout(), &code("eco"))
            .expect("eco TLS");
        Arc::new(Load {
            http: reqwest::Client::builder()
                .use_preconfigured_tls(tls)
                .timeout(Duration::from_secs(15))
                .build()
                .expect("HTTPS client"),
            urls: https_ports
                .iter()
                .map(|port| format!("https://localhost:{port}/v1/messages"))
                .collect(),
            prefix,
            total,
            posted: Mutex::new(Posted::default()),
            accepted: AtomicUsize::new(0),
            next: AtomicUsize::new(0),
        })
    }

    /// Starts `clients` requests in flight, each taking the next lead until all are posted.
    pub fn start(self: &Arc<Self>, clients: usize, deadline: Instant) -> tokio::task::JoinSet<()> {
        let mut posting = tokio::task::JoinSet::new();
        for _ in 0..clients {
            posting.spawn(self.clone().run(deadline));
        }
        posting
    }

    /// Leads accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// What was posted, taken out (call it once the load is done).
    pub async fn take_posted(&self) -> Posted {
        std::mem::take(&mut *self.posted.lock().await)
    }

    /// The recipients of the leads accepted so far.
    pub async fn recipients(&self) -> BTreeSet<AgencyCode> {
        self.posted
            .lock()
            .await
            .accepted
            .values()
            .flatten()
            .cloned()
            .collect()
    }

    /// Waits (bounded) until `target` leads (at most all of them) are accepted.
    pub async fn until_accepted(&self, target: usize, what: &str) {
        eventually(what, Duration::from_secs(120), async || {
            (self.accepted() >= target.min(self.total)).then_some(())
        })
        .await;
    }

    async fn run(self: Arc<Self>, deadline: Instant) {
        loop {
            let i = self.next.fetch_add(1, Ordering::SeqCst);
            if i >= self.total {
                return;
            }
            self.post(i, deadline).await;
        }
    }

    /// Posts lead `i` until it gets `202`; any other answer is retried with the same bytes.
    async fn post(&self, i: usize, deadline: Instant) {
        let lead = lead_event(&format!("{}-{i:05}", self.prefix));
        let id = Uuid::parse_str(lead["id"].as_str().expect("id")).expect("uuid");
        let bytes = serde_json::to_vec(&lead).expect("lead bytes");
        let mut instance = i % self.urls.len();
        loop {
            assert!(
                Instant::now() < deadline,
                "lead {i} not accepted within the test's budget"
            );
            let answer = self
                .http
                .post(&self.urls[instance])
                .header("content-type", "application/cloudevents+json")
                .body(bytes.clone())
                .send()
                .await;
            let pause = match answer {
                Ok(response) if response.status().as_u16() == 202 => {
                    let Ok(body) = response.json::<serde_json::Value>().await else {
                        // The answer was lost on the way: ask again, the same id is idempotent.
                        self.posted.lock().await.retried += 1;
                        continue;
                    };
                    assert_eq!(body["id"].as_str(), Some(id.to_string().as_str()));
                    let recipients = body["recipients"]
                        .as_array()
                        .expect("recipients")
                        .iter()
                        .map(|r| code(r["agency"].as_str().expect("agency")))
                        .collect();
                    let mut posted = self.posted.lock().await;
                    posted.accepted.insert(id, recipients);
                    posted.accepted_at.insert(id, Instant::now());
                    if body["duplicate"].as_bool() == Some(true) {
                        posted.duplicate_answers.insert(id);
                    }
                    drop(posted);
                    self.accepted.fetch_add(1, Ordering::SeqCst);
                    return;
                }
                Ok(response) => {
                    let status = response.status().as_u16();
                    assert!(
                        [503, 408, 429].contains(&status),
                        "lead {i}: unexpected answer {status}: {}",
                        response.text().await.unwrap_or_default()
                    );
                    Duration::from_millis(100)
                }
                // The instance is gone or its answer was lost: the next one, if any. A
                // lone broker being restarted takes longer to come back than a failover.
                Err(_) if self.urls.len() > 1 => {
                    instance = (instance + 1) % self.urls.len();
                    Duration::from_millis(20)
                }
                Err(_) => Duration::from_millis(100),
            };
            self.posted.lock().await.retried += 1;
            tokio::time::sleep(pause).await;
        }
    }
}
