//! The ledger handle: opening, and the operations the broker performs on it.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use liaison_core::{AgencyCode, Clock, Entry, OriginalMessage};
use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::sync::{Notify, mpsc, oneshot};
use tracing::info;
use uuid::Uuid;

use crate::committer::{Answer, Committer, Handoff, HandoffSlot, Job, Request};
use crate::config::{LedgerConfig, redacted_url};
use crate::error::LedgerError;
use crate::keys::{KeyError, Keyring};
use crate::model::{
    AcceptOutcome, DeliveryOutcome, NewMessage, NewRejection, NewRejectionSummary, PendingDelivery,
    RecordedDelivery, StoredEntry, StoredMessage, TraceKey,
};
use crate::{outbox, read};

/// The append-only ledger. Cheap to clone; the committer stops with the last clone.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

struct Inner {
    pool: PgPool,
    jobs: mpsc::Sender<Job>,
    clock: Arc<dyn Clock>,
    outbox_notify: Arc<Notify>,
    batches_committed: Arc<AtomicU64>,
    handoff: HandoffSlot,
    query_timeout: Duration,
    keyring: Option<Arc<Keyring>>,
}

impl Ledger {
    /// Connects (failing within `connect_timeout`, naming the URL), brings the schema up to
    /// date and starts the committer. Must run inside a tokio runtime.
    pub async fn open(config: LedgerConfig, clock: Arc<dyn Clock>) -> Result<Ledger, LedgerError> {
        let url = redacted_url(&config.database_url);
        let keyring = match &config.kek_dir {
            Some(dir) => Keyring::load(dir, config.active_kek.as_deref())?.map(Arc::new),
            None => None,
        };
        if keyring.is_none() {
            tracing::warn!(
                "no key-encryption key configured ([erasure] kek_dir): message bodies are stored in clear and cannot be erased"
            );
        }
        let options = PgConnectOptions::from_str(&config.database_url)
            .map_err(|source| LedgerError::Connect {
                url: url.clone(),
                source,
            })?
            // Outside the committer's batches (which set their own planning, see
            // `committer/store.rs`), plan every statement for the rows it is given and the
            // tables as they are now: a cached generic plan is made once, often while the
            // tables are still small, and keeps scanning them after they have grown.
            //
            // Price a random page like a sequential one: the ledger's working set (index
            // pages, the recent outbox) is in memory. At the default (4, for spinning disks)
            // a query's few hundred key lookups look dearer than hashing a whole table.
            .options([
                ("plan_cache_mode", "force_custom_plan"),
                ("random_page_cost", "1.1"),
            ]);
        let connecting = PgPoolOptions::new()
            .max_connections(config.max_connections.max(2))
            .acquire_timeout(config.connect_timeout)
            .connect_with(options);
        let pool = tokio::time::timeout(config.connect_timeout, connecting)
            .await
            .map_err(|_| LedgerError::ConnectTimeout {
                url: url.clone(),
                timeout: config.connect_timeout,
            })?
            .map_err(|source| LedgerError::Connect {
                url: url.clone(),
                source,
            })?;
        // sqlx takes an advisory lock around migrations: instances starting together are safe.
        let migrator = sqlx::migrate!("./migrations");
        // A production broker runs as a role that may not create tables
        // (deploy/postgres/roles.sql): when every migration is already applied there is
        // nothing to run, and running would ask for CREATE on the schema.
        if !all_applied(&pool, &migrator).await {
            migrator.run(&pool).await?;
        }
        crate::tree::ensure_complete(&pool).await?;
        let partition_entries = config.partition_entries.max(1);
        let batch_max = config.batch_max.max(1) as u64;
        let size = crate::partitions::live_size(&pool).await?;
        let partitioned_through = crate::partitions::extend_partitions(
            &pool,
            size + 2 * batch_max + partition_entries,
            partition_entries,
        )
        .await?;
        info!(url, "ledger open");

        let outbox_notify = Arc::new(Notify::new());
        let batches_committed = Arc::new(AtomicU64::new(0));
        let handoff = HandoffSlot::default();
        let jobs = Committer {
            pool: pool.clone(),
            clock: Arc::clone(&clock),
            batch_max: config.batch_max,
            outbox_notify: Arc::clone(&outbox_notify),
            batches_committed: Arc::clone(&batches_committed),
            handoff: Arc::clone(&handoff),
            partition_entries,
            partitioned_through,
            keyring: keyring.clone(),
        }
        .spawn();
        let inner = Inner {
            pool,
            jobs,
            clock,
            outbox_notify,
            batches_committed,
            handoff,
            query_timeout: config.connect_timeout,
            keyring,
        };
        Ok(Ledger {
            inner: Arc::new(inner),
        })
    }

    /// Records an accepted message, its entry and one outbox row per recipient; answers
    /// once durably committed. A resubmission is answered like the first submission.
    pub async fn accept(&self, m: NewMessage) -> Result<AcceptOutcome, LedgerError> {
        match self.submit(Request::Accept(Box::new(m))).await? {
            Answer::Accepted(outcome) => Ok(outcome),
            _ => Err(LedgerError::Internal(
                "an accept was answered as another request",
            )),
        }
    }

    /// Records a refused submission; returns the seq of its entry.
    pub async fn reject(&self, r: NewRejection) -> Result<u64, LedgerError> {
        match self.submit(Request::Reject(r)).await? {
            Answer::Rejected(seq) => Ok(seq),
            _ => Err(LedgerError::Internal(
                "a rejection was answered as another request",
            )),
        }
    }

    /// Records the refusals of one sender beyond its budget as one entry; its seq.
    pub async fn summarize_rejections(&self, s: NewRejectionSummary) -> Result<u64, LedgerError> {
        match self.submit(Request::SummarizeRejections(s)).await? {
            Answer::Rejected(seq) => Ok(seq),
            _ => Err(LedgerError::Internal(
                "a rejection summary was answered as another request",
            )),
        }
    }

    /// Records what the relay achieved. Outcomes for unknown deliveries, or for deliveries
    /// no longer pending (a repeated outcome), change nothing.
    pub async fn record_deliveries(
        &self,
        outcomes: Vec<DeliveryOutcome>,
    ) -> Result<(), LedgerError> {
        if outcomes.is_empty() {
            return Ok(());
        }
        match self.submit(Request::Deliveries(outcomes)).await? {
            Answer::DeliveriesRecorded => Ok(()),
            _ => Err(LedgerError::Internal(
                "delivery outcomes were answered as another request",
            )),
        }
    }

    /// Records that `agency` acknowledged a dispatched delivery addressed to it. `false`
    /// (and nothing recorded) for an unknown delivery, another agency's, or one not yet
    /// dispatched; `true` again, with no new entry, for one already acknowledged.
    pub async fn acknowledge(
        &self,
        delivery_id: i64,
        agency: &AgencyCode,
    ) -> Result<bool, LedgerError> {
        match self
            .submit(Request::Acknowledge {
                delivery_id,
                agency: agency.clone(),
            })
            .await?
        {
            Answer::Acknowledged(done) => Ok(done),
            _ => Err(LedgerError::Internal(
                "an acknowledgement was answered as another request",
            )),
        }
    }

    /// Records that an administrator read the masked personal data of a message; returns
    /// the seq of the `message.revealed` entry, committed before anything is shown.
    pub async fn reveal(&self, reveal: crate::model::NewReveal) -> Result<u64, LedgerError> {
        match self.submit(Request::Reveal(reveal)).await? {
            Answer::Revealed(seq) => Ok(seq),
            _ => Err(LedgerError::Internal(
                "a reveal was answered as another request",
            )),
        }
    }

    /// Records the erasure of case `caseref`'s personal data (a `case.erased` entry) and
    /// destroys its messages' data keys in the same transaction. Refused with
    /// [`KeyError::Unconfigured`] when this ledger seals nothing.
    pub async fn erase(
        &self,
        erasure: crate::model::NewErasure,
    ) -> Result<crate::model::ErasureOutcome, LedgerError> {
        if self.inner.keyring.is_none() {
            return Err(KeyError::Unconfigured.into());
        }
        match self.submit(Request::Erase(erasure)).await? {
            Answer::Erased(outcome) => Ok(outcome),
            _ => Err(LedgerError::Internal(
                "an erasure was answered as another request",
            )),
        }
    }

    /// The key-encryption keys this ledger seals with and opens with; `None`: bodies are
    /// stored in clear.
    pub fn keyring(&self) -> Option<&Keyring> {
        self.inner.keyring.as_deref()
    }

    /// Re-wraps every data key not wrapped by the active KEK under it, `page` keys a
    /// statement; bodies are untouched. Each key is replaced only if it is still the one
    /// read, so a concurrent erasure is never undone. Returns how many were re-wrapped;
    /// `progress` is told the running count.
    pub async fn rotate_keys(
        &self,
        page: i64,
        progress: &mut dyn FnMut(u64),
    ) -> Result<u64, LedgerError> {
        let keyring = self.keyring().ok_or(KeyError::Unconfigured)?;
        let active = keyring.active().to_owned();
        let mut done = 0u64;
        let mut after = Uuid::nil();
        loop {
            let rows: Vec<(Uuid, String, Vec<u8>)> = sqlx::query_as(
                "SELECT message_id, kek_id, wrapped FROM message_keys \
                 WHERE kek_id IS NOT NULL AND kek_id <> $1 AND message_id > $2 \
                 ORDER BY message_id LIMIT $3",
            )
            .bind(&active)
            .bind(after)
            .bind(page)
            .fetch_all(&self.inner.pool)
            .await
            .map_err(LedgerError::query("reading data keys to re-wrap"))?;
            let Some(last) = rows.last() else {
                return Ok(done);
            };
            after = last.0;
            let mut ids = Vec::with_capacity(rows.len());
            let mut old = Vec::with_capacity(rows.len());
            let mut new = Vec::with_capacity(rows.len());
            for (id, kek, wrapped) in &rows {
                new.push(keyring.rewrap(*id, kek, wrapped)?);
                ids.push(*id);
                old.push(wrapped.clone());
            }
            let changed = sqlx::query(
                "UPDATE message_keys AS k SET kek_id = $1, wrapped = u.new \
                 FROM UNNEST($2::uuid[], $3::bytea[], $4::bytea[]) AS u(id, old, new) \
                 WHERE k.message_id = u.id AND k.wrapped = u.old",
            )
            .bind(&active)
            .bind(&ids)
            .bind(&old)
            .bind(&new)
            .execute(&self.inner.pool)
            .await
            .map_err(LedgerError::query("re-wrapping data keys"))?;
            done += changed.rows_affected();
            progress(done);
        }
    }

    /// How many data keys each KEK wraps, and how many keys were destroyed by erasures
    /// (under `None`).
    pub async fn key_usage(&self) -> Result<Vec<(Option<String>, i64)>, LedgerError> {
        sqlx::query_as("SELECT kek_id, count(*) FROM message_keys GROUP BY kek_id ORDER BY kek_id")
            .fetch_all(&self.inner.pool)
            .await
            .map_err(LedgerError::query("counting data keys"))
    }

    /// Leases up to `limit` pending deliveries due now, in one round trip, counting an
    /// attempt for each. "Now" is the ledger's clock, the same that dated the entries.
    pub async fn claim_deliveries(
        &self,
        limit: i64,
        lease: Duration,
    ) -> Result<Vec<PendingDelivery>, LedgerError> {
        outbox::claim(
            &self.inner.pool,
            self.keyring(),
            self.inner.clock.now(),
            limit,
            lease,
        )
        .await
    }

    /// Hands the deliveries of every later commit of this ledger handle straight to the
    /// caller (the relay of this process), written already leased to it for `lease`, so
    /// that they need no claiming query. Batches that do not fit in `capacity` wait for
    /// their lease to end and are then claimed as usual. A later call replaces the earlier.
    pub fn take_deliveries(
        &self,
        lease: Duration,
        capacity: usize,
    ) -> mpsc::Receiver<Vec<PendingDelivery>> {
        let (sender, receiver) = mpsc::channel(capacity.max(1));
        *self.inner.handoff.lock().unwrap_or_else(|p| p.into_inner()) =
            Some(Handoff { sender, lease });
        receiver
    }

    /// The outbox row `delivery_id` and the message it delivers, in whatever state; `None`
    /// when no such delivery was recorded. Changes nothing (no lease, no attempt).
    pub async fn delivery(
        &self,
        delivery_id: i64,
    ) -> Result<Option<RecordedDelivery>, LedgerError> {
        outbox::recorded(&self.inner.pool, self.keyring(), delivery_id).await
    }

    /// Notified after each commit that created outbox rows.
    pub fn outbox_notify(&self) -> Arc<Notify> {
        Arc::clone(&self.inner.outbox_notify)
    }

    /// The sender and recipients of a recorded message, for routing a reply to it.
    pub async fn original(&self, id: Uuid) -> Result<Option<OriginalMessage>, LedgerError> {
        read::original(&self.inner.pool, id).await
    }

    pub async fn message(&self, id: Uuid) -> Result<Option<StoredMessage>, LedgerError> {
        read::message(&self.inner.pool, self.keyring(), id).await
    }

    /// Case `caseref` with its threads, parties and messages.
    pub async fn case(&self, caseref: &str) -> Result<Option<crate::CaseView>, LedgerError> {
        crate::cases::case(&self.inner.pool, caseref, self.inner.clock.now()).await
    }

    /// A page of cases, newest first.
    pub async fn cases(&self, filter: &crate::CaseFilter) -> Result<crate::CasePage, LedgerError> {
        crate::cases::list(&self.inner.pool, filter, self.inner.clock.now()).await
    }

    /// Running deadlines due before `until` with notices left to send (`stages`: how many
    /// notices each clock of each flow sends in all), earliest due first: the watcher's work.
    pub async fn pending_clocks(
        &self,
        until: time::OffsetDateTime,
        stages: &[(String, String, i32)],
        limit: i64,
    ) -> Result<Vec<crate::PendingClock>, LedgerError> {
        crate::clocks::pending(&self.inner.pool, until, stages, limit).await
    }

    /// Rebuilds every case from the ledger's entries and compares the result with the live
    /// case tables; `progress` is told how many entries were read.
    pub async fn replay_cases(
        &self,
        progress: &mut dyn FnMut(u64),
    ) -> Result<crate::CaseReplayReport, LedgerError> {
        self.refuse_if_archived("replay the cases").await?;
        let mut conn = self
            .inner
            .pool
            .acquire()
            .await
            .map_err(LedgerError::query("connecting to replay cases"))?;
        let replay = crate::case_replay::fold_database(&mut conn, progress).await?;
        drop(conn);
        replay.compare(&self.inner.pool).await
    }

    /// Compares a fold made elsewhere (from an export) with the live case tables.
    pub async fn compare_cases(
        &self,
        replay: &crate::CaseReplay,
    ) -> Result<crate::CaseReplayReport, LedgerError> {
        replay.compare(&self.inner.pool).await
    }

    /// Replaces the case tables with the fold of the ledger's entries.
    pub async fn rebuild_cases(&self) -> Result<crate::CaseReplayReport, LedgerError> {
        self.refuse_if_archived("rebuild the cases").await?;
        crate::case_replay::rebuild(&self.inner.pool).await
    }

    /// Refuses what would fold every entry from seq 1 once some are archived: it would
    /// see answers without their questions and deliveries without their messages.
    pub(crate) async fn refuse_if_archived(&self, what: &'static str) -> Result<(), LedgerError> {
        match self.archived_through().await? {
            0 => Ok(()),
            through => Err(LedgerError::Archived { what, through }),
        }
    }

    /// Whether `agency` sent or was routed an accepted message of case `caseref`.
    pub async fn is_case_party(
        &self,
        caseref: &str,
        agency: &AgencyCode,
    ) -> Result<bool, LedgerError> {
        read::is_case_party(&self.inner.pool, caseref, agency).await
    }

    /// Entries of a message id (and of messages whose inreplyto is that id), or of a case
    /// ref, in seq order.
    pub async fn trace(&self, key: &TraceKey) -> Result<Vec<Entry>, LedgerError> {
        read::trace(&self.inner.pool, key).await
    }

    /// Up to `limit` stored entries from `from_seq` on, in seq order.
    pub async fn entries(
        &self,
        from_seq: u64,
        limit: i64,
    ) -> Result<Vec<StoredEntry>, LedgerError> {
        read::entries(&self.inner.pool, from_seq, limit).await
    }

    /// The periodic report of `period` as the ledger stood at `now`, folded from every
    /// entry's canonical bytes in seq order: what [`crate::Report::compute`] makes of the
    /// same entries read from an export.
    pub async fn report(
        &self,
        period: crate::ReportPeriod,
        now: time::OffsetDateTime,
    ) -> Result<crate::Report, LedgerError> {
        const PAGE: i64 = 10_000;
        let mut fold = crate::report::ReportFold::new(period, now);
        let mut next = 1;
        loop {
            let page = read::entries(&self.inner.pool, next, PAGE).await?;
            for stored in &page {
                let entry = Entry::from_canonical(&stored.entry).map_err(|e| {
                    LedgerError::Corrupt(format!("entry {} is not canonical: {e}", stored.seq))
                })?;
                fold.entry(&entry);
                next = stored.seq + 1;
            }
            if (page.len() as i64) < PAGE {
                return Ok(fold.finish());
            }
        }
    }

    /// Whether the database answers a trivial query in time, for readiness checks.
    pub async fn ping(&self) -> Result<(), LedgerError> {
        let timeout = self.inner.query_timeout;
        tokio::time::timeout(timeout, sqlx::query("SELECT 1").execute(&self.inner.pool))
            .await
            .map_err(|_| LedgerError::Timeout(timeout))?
            .map_err(LedgerError::query("pinging the database"))?;
        Ok(())
    }

    /// The time of the ledger's clock, the one that dates entries.
    pub(crate) fn clock_now(&self) -> time::OffsetDateTime {
        self.inner.clock.now()
    }

    /// The PostgreSQL server's version, as it reports it (`SHOW server_version`).
    pub async fn server_version(&self) -> Result<String, LedgerError> {
        sqlx::query_scalar("SHOW server_version")
            .fetch_one(&self.inner.pool)
            .await
            .map_err(LedgerError::query("reading the server version"))
    }

    pub fn pool(&self) -> &PgPool {
        &self.inner.pool
    }

    /// How many group commits this handle's committer has completed.
    pub fn batches_committed(&self) -> u64 {
        self.inner.batches_committed.load(Ordering::Relaxed)
    }

    async fn submit(&self, request: Request) -> Result<Answer, LedgerError> {
        let (reply, answer) = oneshot::channel();
        let queued = std::time::Instant::now();
        self.inner
            .jobs
            .send(Job {
                request,
                reply,
                queued,
            })
            .await
            .map_err(|_| LedgerError::Closed)?;
        answer.await.map_err(|_| LedgerError::Closed)?
    }
}

/// Whether every up-migration of `migrator` is recorded as applied in the database.
async fn all_applied(pool: &PgPool, migrator: &sqlx::migrate::Migrator) -> bool {
    let applied: Vec<i64> =
        match sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
            .fetch_all(pool)
            .await
        {
            Ok(versions) => versions,
            // No table yet (a new database): the migrations must run.
            Err(_) => return false,
        };
    migrator
        .iter()
        .filter(|m| !m.migration_type.is_down_migration())
        .all(|m| applied.contains(&m.version))
}
