//! Rebuilding derived state from the entries alone, and comparing it with the live tables.
//!
//! Delivery states: every `message.accepted` entry names its recipients, so each
//! (message, recipient) pair must have a delivery; `delivery.*` entries carry the delivery
//! id and move it on: `dispatched`, `acknowledged`, `dead_lettered` → `dead`, `redriven`
//! → `dispatched` (republished with a confirm); `failed` leaves it pending; `case.erased`
//! makes its messages' pending deliveries `dead` (withdrawn, never sent). Kinds the
//! replay does not know are counted and otherwise ignored, so new kinds never break it.

use std::collections::{BTreeMap, HashMap};

use serde::Deserialize;
use sqlx::Row;
use uuid::Uuid;

use crate::error::LedgerError;
use crate::ledger::Ledger;
use crate::sql::{seq_from_db, seq_to_db};

/// The state of one delivery as the entries tell it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DerivedDelivery {
    pub message: Uuid,
    pub recipient: String,
    pub delivery_id: Option<i64>,
    pub state: String,
    /// The last entry that changed it.
    pub seq: u64,
}

/// One disagreement between the entries and the live tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplayDifference {
    /// The entries imply a delivery the outbox does not have.
    MissingDelivery { message: Uuid, recipient: String },
    /// The outbox has a delivery no accepted entry implies.
    UnexpectedDelivery {
        delivery_id: i64,
        message: Uuid,
        recipient: String,
    },
    /// The outbox state is not the one the entries lead to.
    State {
        delivery_id: i64,
        live: String,
        derived: String,
        seq: u64,
    },
}

impl std::fmt::Display for ReplayDifference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::MissingDelivery { message, recipient } => {
                write!(
                    f,
                    "message {message} → {recipient}: accepted, but no delivery in the outbox"
                )
            }
            Self::UnexpectedDelivery {
                delivery_id,
                message,
                recipient,
            } => write!(
                f,
                "delivery {delivery_id} (message {message} → {recipient}): no accepted entry implies it"
            ),
            Self::State {
                delivery_id,
                live,
                derived,
                seq,
            } => write!(
                f,
                "delivery {delivery_id}: outbox says {live}, the entries (last at seq {seq}) say {derived}"
            ),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub entries: u64,
    pub deliveries: u64,
    /// Case references seen, with the number of entries of each.
    pub cases: BTreeMap<String, u64>,
    /// Entries of kinds the replay does not interpret.
    pub other_kinds: u64,
    pub differences: Vec<ReplayDifference>,
}

#[derive(Deserialize)]
struct Head {
    seq: u64,
    kind: String,
    message: Option<Uuid>,
    caseref: Option<String>,
    agency: Option<String>,
    #[serde(default)]
    detail: serde_json::Value,
}

/// Folds entries (canonical bytes, in seq order) into delivery states.
#[derive(Default)]
pub struct Replayer {
    by_pair: HashMap<(Uuid, String), DerivedDelivery>,
    report: ReplayReport,
}

impl Replayer {
    pub fn entry(&mut self, bytes: &[u8]) -> Result<(), String> {
        let head: Head = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        self.report.entries += 1;
        if let Some(caseref) = head.caseref {
            *self.report.cases.entry(caseref).or_default() += 1;
        }
        if head.kind == "case.erased" {
            // The erasure withdrew its messages' deliveries not yet sent.
            let erased: std::collections::HashSet<Uuid> = head.detail["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|m| m["message"].as_str().and_then(|s| s.parse().ok()))
                .collect();
            for delivery in self.by_pair.values_mut() {
                if erased.contains(&delivery.message) && delivery.state == "pending" {
                    delivery.state = "dead".into();
                    delivery.seq = head.seq;
                }
            }
            return Ok(());
        }
        let Some(message) = head.message else {
            if !head.kind.starts_with("message.") {
                self.report.other_kinds += 1;
            }
            return Ok(());
        };
        if head.kind == "message.accepted" {
            let recipients = head.detail["recipients"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            for r in recipients {
                if let Some(agency) = r["agency"].as_str() {
                    self.by_pair.insert(
                        (message, agency.to_owned()),
                        DerivedDelivery {
                            message,
                            recipient: agency.to_owned(),
                            delivery_id: None,
                            state: "pending".into(),
                            seq: head.seq,
                        },
                    );
                }
            }
            return Ok(());
        }
        let Some(suffix) = head.kind.strip_prefix("delivery.") else {
            if head.kind != "message.rejected" {
                self.report.other_kinds += 1;
            }
            return Ok(());
        };
        let state = match suffix {
            "dispatched" => Some("dispatched"),
            "acknowledged" => Some("acknowledged"),
            "dead_lettered" => Some("dead"),
            // A redrive is published with a confirm into the recipient's queue.
            "redriven" => Some("dispatched"),
            "failed" => None,
            _ => {
                self.report.other_kinds += 1;
                return Ok(());
            }
        };
        let Some(recipient) = head.agency else {
            return Ok(());
        };
        let delivery = self
            .by_pair
            .entry((message, recipient.clone()))
            .or_insert_with(|| DerivedDelivery {
                message,
                recipient,
                delivery_id: None,
                state: "pending".into(),
                seq: head.seq,
            });
        delivery.delivery_id = head.detail["delivery"].as_i64().or(delivery.delivery_id);
        if let Some(state) = state {
            // An acknowledgement is final for delivery; a late dispatch does not undo it.
            if !(delivery.state == "acknowledged" && state == "dispatched") {
                delivery.state = state.to_owned();
            }
            delivery.seq = head.seq;
        }
        Ok(())
    }

    /// Compares with the live outbox rows: (delivery id, message, recipient, state).
    pub fn compare(mut self, live: Vec<(i64, Uuid, String, String)>) -> ReplayReport {
        self.report.deliveries = self.by_pair.len() as u64;
        for (delivery_id, message, recipient, state) in live {
            match self.by_pair.remove(&(message, recipient.clone())) {
                None => self
                    .report
                    .differences
                    .push(ReplayDifference::UnexpectedDelivery {
                        delivery_id,
                        message,
                        recipient,
                    }),
                Some(derived) if derived.state != state => {
                    self.report.differences.push(ReplayDifference::State {
                        delivery_id,
                        live: state,
                        derived: derived.state,
                        seq: derived.seq,
                    })
                }
                Some(_) => {}
            }
        }
        let mut missing: Vec<_> = self.by_pair.into_values().collect();
        missing.sort_by_key(|d| d.seq);
        self.report.differences.extend(missing.into_iter().map(|d| {
            ReplayDifference::MissingDelivery {
                message: d.message,
                recipient: d.recipient,
            }
        }));
        self.report
    }
}

impl Ledger {
    /// Rebuilds delivery states from the entries and reports where the outbox differs.
    pub async fn replay(
        &self,
        progress: &mut (dyn FnMut(u64) + Send),
    ) -> Result<ReplayReport, LedgerError> {
        self.refuse_if_archived("replay the deliveries").await?;
        let mut replayer = Replayer::default();
        let mut last = 0u64;
        loop {
            let rows = sqlx::query(
                "SELECT seq, entry FROM ledger_entries WHERE seq > $1 ORDER BY seq LIMIT 10000",
            )
            .bind(seq_to_db(last)?)
            .fetch_all(self.pool())
            .await
            .map_err(LedgerError::query("reading entries to replay"))?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                let read = |e: sqlx::Error| LedgerError::Corrupt(format!("ledger entry: {e}"));
                last = seq_from_db(row.try_get("seq").map_err(read)?)?;
                let bytes: Vec<u8> = row.try_get("entry").map_err(read)?;
                replayer
                    .entry(&bytes)
                    .map_err(|e| LedgerError::Corrupt(format!("entry {last}: {e}")))?;
            }
            progress(last);
        }
        let live = sqlx::query_as::<_, (i64, Uuid, String, String)>(
            "SELECT delivery_id, message_id, recipient, state FROM outbox ORDER BY delivery_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(LedgerError::query("reading the outbox"))?;
        Ok(replayer.compare(live))
    }
}
