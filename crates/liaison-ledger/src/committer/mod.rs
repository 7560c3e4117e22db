//! Group commit: one task takes every queued request and records them in one transaction,
//! so a busy broker pays one commit (and one fsync) per batch rather than per message.

mod cases;
mod plan;
mod store;

pub(crate) use cases::{CaseMessageRow, CaseRow, CaseWrites, ClockRow, ThreadRow};
pub(crate) use store::{SEQUENCE_LOCK, write_cases};

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use liaison_core::merkle::CompactRange;
use liaison_core::{AgencyCode, Clock};
use sqlx::PgPool;
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::{debug, warn};

use crate::error::LedgerError;
use crate::model::{
    AcceptOutcome, DeliveryOutcome, ErasureOutcome, NewErasure, NewMessage, NewRejection,
    NewRejectionSummary, NewReveal, PendingDelivery,
};

/// What a caller asks the committer to record.
pub(crate) enum Request {
    /// Boxed: a message is several times the size of the other requests.
    Accept(Box<NewMessage>),
    Reject(NewRejection),
    SummarizeRejections(NewRejectionSummary),
    Deliveries(Vec<DeliveryOutcome>),
    Acknowledge {
        delivery_id: i64,
        agency: AgencyCode,
    },
    Reveal(NewReveal),
    Erase(NewErasure),
}

/// The committer's answer to one request, given only after its batch committed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Answer {
    Accepted(AcceptOutcome),
    /// The seq of the rejection entry.
    Rejected(u64),
    DeliveriesRecorded,
    Acknowledged(bool),
    /// The seq of the reveal entry.
    Revealed(u64),
    Erased(ErasureOutcome),
}

pub(crate) struct Job {
    pub request: Request,
    pub reply: Reply,
    /// When the caller handed it over (before waiting for room in the queue).
    pub queued: Instant,
}

impl Request {
    /// The request's kind, as the queue-wait metric labels it.
    fn kind(&self) -> &'static str {
        match self {
            Request::Accept(_) => "accept",
            Request::Reject(_) | Request::SummarizeRejections(_) => "reject",
            Request::Deliveries(_) => "deliveries",
            Request::Acknowledge { .. } => "acknowledge",
            Request::Reveal(_) => "reveal",
            Request::Erase(_) => "erase",
        }
    }
}

/// A relay in this process that takes freshly committed deliveries straight from the
/// committer: their outbox rows are written already leased to it for `lease`, so it needs
/// no claiming query for them. If the relay dies or falls behind, the lease runs out and
/// any relay claims the rows as usual.
#[derive(Clone)]
pub(crate) struct Handoff {
    pub sender: mpsc::Sender<Vec<PendingDelivery>>,
    pub lease: Duration,
}

pub(crate) type HandoffSlot = Arc<Mutex<Option<Handoff>>>;

/// What the ledger handle shares with its committer task.
pub(crate) struct Committer {
    pub pool: PgPool,
    pub clock: Arc<dyn Clock>,
    pub batch_max: usize,
    /// Woken after a commit that created outbox rows, so the relay need not poll.
    pub outbox_notify: Arc<Notify>,
    pub batches_committed: Arc<AtomicU64>,
    pub handoff: HandoffSlot,
    /// Seqs per partition, and the last seq the partitions created so far cover: the
    /// committer creates the next ones before its batches could reach past them.
    pub partition_entries: u64,
    pub partitioned_through: u64,
    /// Seals each accepted body; `None`: bodies are stored in clear.
    pub keyring: Option<Arc<crate::keys::Keyring>>,
}

impl Committer {
    /// Spawns the committer; it stops once every sender of the returned channel is gone.
    pub fn spawn(self) -> mpsc::Sender<Job> {
        let batch_max = self.batch_max.max(1);
        // Bounded so that a stalled database pushes back on callers instead of queueing
        // without limit; room for two batches keeps the next one filling during a commit.
        let (sender, receiver) = mpsc::channel(batch_max.saturating_mul(2));
        tokio::spawn(self.run(receiver, batch_max));
        sender
    }

    async fn run(mut self, mut receiver: mpsc::Receiver<Job>, batch_max: usize) {
        let mut jobs = Vec::with_capacity(batch_max);
        // The Merkle tree's right edge after the last commit; read back only when lost.
        let mut frontier = None;
        // `recv_many` waits for one job, then takes whatever else is queued, up to the limit.
        while receiver.recv_many(&mut jobs, batch_max).await > 0 {
            let taken = Instant::now();
            let (requests, replies): (Vec<Request>, Vec<_>) = jobs
                .drain(..)
                .map(|job| {
                    crate::telemetry::queue_wait(job.request.kind(), taken - job.queued);
                    (job.request, job.reply)
                })
                .unzip();
            self.commit(&requests, replies, &mut frontier).await;
            if let Some(size) = frontier.as_ref().map(CompactRange::size) {
                self.extend_partitions(size, batch_max as u64).await;
            }
        }
        debug!("ledger committer stopped: no ledger handle is left");
    }

    /// Creates the next partitions once the ledger (`size` entries) is within two batches
    /// of the last one. A failure only logs: rows past the partitions land in the default
    /// partition, which keeps them (they are then never archived).
    async fn extend_partitions(&mut self, size: u64, batch_max: u64) {
        if size + 2 * batch_max < self.partitioned_through {
            return;
        }
        let through = size + 2 * batch_max + self.partition_entries;
        match crate::partitions::extend_partitions(&self.pool, through, self.partition_entries)
            .await
        {
            Ok(covered) => self.partitioned_through = covered,
            Err(error) => {
                warn!(%error, "could not create the next ledger partitions; trying again after the next batch")
            }
        }
    }

    /// Commits the batch and answers every request of it. When PostgreSQL refuses the data
    /// of some request (a NUL in a text, an over-long case reference), the batch is split in
    /// halves and retried, in order, so that one bad request fails alone rather than taking
    /// a thousand good ones with it. Any other failure is every request's answer.
    async fn commit(
        &self,
        requests: &[Request],
        replies: Vec<Reply>,
        frontier: &mut Option<CompactRange>,
    ) {
        let mut replies: Vec<Option<Reply>> = replies.into_iter().map(Some).collect();
        let handoff = self
            .handoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .filter(|h| !h.sender.is_closed());
        let lease = handoff.as_ref().map(|h| h.lease);
        let mut ranges = VecDeque::new();
        ranges.push_back(0..requests.len());
        while let Some(range) = ranges.pop_front() {
            let started = std::time::Instant::now();
            match store::commit_batch(
                &self.pool,
                self.clock.as_ref(),
                &requests[range.clone()],
                self.keyring.as_deref(),
                lease,
                frontier,
            )
            .await
            {
                Ok(store::CommittedBatch {
                    plan,
                    leased,
                    phases,
                }) => {
                    self.batches_committed.fetch_add(1, Ordering::Relaxed);
                    crate::telemetry::BatchCommitted {
                        requests: range.len(),
                        entries: plan.writes.entries.len(),
                        elapsed: started.elapsed(),
                        phases,
                    }
                    .emit();
                    if let (Some(handoff), false) = (&handoff, leased.is_empty()) {
                        // A full or closed channel only delays these rows until their lease ends.
                        if handoff.sender.try_send(leased).is_err() {
                            debug!("relay busy: handed-off deliveries wait for their lease to end");
                        }
                    }
                    if !plan.writes.new_deliveries.is_empty() {
                        // notify_one keeps a permit when no relay is waiting right now.
                        self.outbox_notify.notify_one();
                    }
                    for (reply, answer) in replies[range].iter_mut().zip(plan.answers) {
                        answer_with(reply, Ok(answer));
                    }
                }
                Err(error) if range.len() > 1 && error.is_refused_data() => {
                    debug!(requests = range.len(), %error, "batch refused by the database; splitting it");
                    let middle = range.start + range.len() / 2;
                    ranges.push_front(middle..range.end);
                    ranges.push_front(range.start..middle);
                }
                Err(error) => {
                    warn!(requests = range.len(), %error, "ledger batch failed; every request of it is refused");
                    let error = Arc::new(error);
                    for reply in &mut replies[range] {
                        answer_with(reply, Err(LedgerError::Commit(Arc::clone(&error))));
                    }
                }
            }
        }
    }
}

type Reply = oneshot::Sender<Result<Answer, LedgerError>>;

fn answer_with(reply: &mut Option<Reply>, answer: Result<Answer, LedgerError>) {
    if let Some(reply) = reply.take() {
        // A caller that gave up waiting is no reason to stop.
        let _ = reply.send(answer);
    }
}
