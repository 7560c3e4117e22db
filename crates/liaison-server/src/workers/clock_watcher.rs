//! The deadline watcher: sends the notices of the lifecycle's running deadlines — reminders
//! before the due instant, the overdue notice at it, escalations after it — each as a
//! `deadline.reminder.v1` of the case, in the name of the sender of the message that
//! started the clock, through the same pipeline as every message (validated, routed by the
//! policy, recorded, delivered).
//!
//! Exactly once, however many instances watch and however often they restart: a notice's
//! id and bytes are a function of (thread, clock, starting message, stage), so a second
//! submission of it is the ledger's duplicate of the first; the committer records the
//! stage on the clock's row in the same transaction, so a later scan skips it; and a notice
//! for a clock an answer stopped meanwhile is refused by the committer, which decides both
//! in ledger order.

use std::sync::Arc;

use bytes::Bytes;
use liaison_core::calendar::CHINA_STANDARD_TIME;
use liaison_core::clocks::{ClockRule, Stage, StageKind, StageRef, iso_duration};
use liaison_core::{AgencyCode, Channel, Clock, Lifecycle, Submission};
use liaison_ledger::{Ledger, LedgerError, PendingClock};
use liaison_schema::Catalogue;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::config::ClocksConfig;
use crate::pipeline::Pipeline;

/// The type of every notice.
pub const NOTICE_TYPE: &str = "deadline.reminder.v1";

/// What one scan did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// Notices recorded by this scan.
    pub sent: usize,
    /// Notices another instance (or an earlier attempt) had recorded already.
    pub duplicates: usize,
    /// Notices refused (the clock stopped meanwhile) or not recordable now.
    pub refused: usize,
}

pub struct ClockWatcher {
    pipeline: Arc<Pipeline>,
    ledger: Ledger,
    lifecycle: Arc<Lifecycle>,
    clock: Arc<dyn Clock>,
    config: ClocksConfig,
    /// Per flow and clock name, how many notices it sends in all.
    stage_counts: Vec<(String, String, i32)>,
    /// The longest time a reminder goes out before its due instant.
    lead: time::Duration,
}

impl ClockWatcher {
    pub fn new(
        pipeline: Arc<Pipeline>,
        ledger: Ledger,
        clock: Arc<dyn Clock>,
        config: ClocksConfig,
    ) -> Self {
        let lifecycle = pipeline.lifecycle_arc();
        let stage_counts = lifecycle
            .clocks()
            .iter()
            .filter(|c| !c.stages.is_empty())
            .map(|c| {
                let count = i32::try_from(c.stages.len()).unwrap_or(i32::MAX);
                (c.flow.clone(), c.name.clone(), count)
            })
            .collect();
        let lead = lifecycle
            .clocks()
            .iter()
            .flat_map(|c| c.stages.iter())
            .map(|s| -s.offset)
            .max()
            .unwrap_or(time::Duration::ZERO)
            .max(time::Duration::ZERO);
        Self {
            pipeline,
            ledger,
            lifecycle,
            clock,
            config,
            stage_counts,
            lead,
        }
    }

    /// Scans at every interval until cancelled.
    pub async fn run(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            match self.scan().await {
                Ok(report) if report != ScanReport::default() => {
                    tracing::info!(
                        sent = report.sent,
                        duplicates = report.duplicates,
                        refused = report.refused,
                        "deadline notices"
                    );
                }
                Ok(_) => {}
                Err(error) => tracing::warn!(%error, "deadline watcher: cannot read clocks"),
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(self.config.scan_interval) => {}
            }
        }
    }

    /// Sends every notice due now that is not recorded yet, in due order.
    pub async fn scan(&self) -> Result<ScanReport, LedgerError> {
        let now = self.clock.now();
        let pending = self
            .ledger
            .pending_clocks(now + self.lead, &self.stage_counts, self.config.scan_batch)
            .await?;
        let mut report = ScanReport::default();
        for clock in pending {
            let Some(rule) = self.lifecycle.clock(&clock.flow, &clock.clock) else {
                continue;
            };
            for stage in &rule.stages {
                if clock.notices.contains(&stage.key) || stage.at(clock.due) > now {
                    continue;
                }
                self.send(&clock, rule, stage, now, &mut report).await;
            }
        }
        Ok(report)
    }

    async fn send(
        &self,
        clock: &PendingClock,
        rule: &ClockRule,
        stage: &Stage,
        now: OffsetDateTime,
        report: &mut ScanReport,
    ) {
        let Ok(sender) = AgencyCode::new(clock.origin_sender.clone()) else {
            report.refused += 1;
            return;
        };
        let event = notice(clock, rule, stage);
        let submission = Submission {
            sender,
            bytes: Bytes::from(serde_json::to_vec(&event).expect("a JSON value serializes")),
            channel: Channel::Clock,
            received_at: now,
            traceparent: None,
        };
        let stage_ref = StageRef {
            thread: clock.thread,
            clock: clock.clock.clone(),
            stage: stage.kind,
            key: stage.key.clone(),
        };
        match self.pipeline.submit_notice(submission, stage_ref).await {
            Ok(accepted) if accepted.duplicate => report.duplicates += 1,
            Ok(_) => report.sent += 1,
            Err(problem) => {
                tracing::warn!(
                    case = %clock.caseref,
                    clock = %clock.clock,
                    stage = %stage.key,
                    code = problem.code.as_str(),
                    detail = %problem.detail,
                    "deadline notice not recorded"
                );
                report.refused += 1;
            }
        }
    }
}

/// The notice of `stage` of `clock`: the same bytes whoever builds it, whenever.
pub fn notice(clock: &PendingClock, rule: &ClockRule, stage: &Stage) -> Value {
    let at = stage.at(clock.due).to_offset(CHINA_STANDARD_TIME);
    let rfc3339 = |t: OffsetDateTime| {
        t.to_offset(CHINA_STANDARD_TIME)
            .format(&Rfc3339)
            .expect("a date in range formats")
    };
    let due = rfc3339(clock.due);
    let (zh, en) = rule
        .title
        .split_once(" / ")
        .unwrap_or((rule.title.as_str(), rule.title.as_str()));
    let mut data = json!({
        "clock": rule.name,
        "stage": stage.kind.as_str(),
        "due": due,
        "answers": clock.origin.to_string(),
    });
    let text = match stage.kind {
        StageKind::Reminder => {
            let remaining = iso_duration(-stage.offset);
            data["remaining"] = json!(remaining);
            format!("期限提醒：{zh}将于 {due} 届满。/ Reminder: {en} is due {due}.")
        }
        StageKind::Overdue => {
            data["overdue_by"] = json!(iso_duration(stage.offset));
            format!("超期通知：{zh}已于 {due} 届满，尚未答复。/ Overdue: {en} was due {due}.")
        }
        StageKind::Escalation => {
            let late = iso_duration(stage.offset);
            data["overdue_by"] = json!(late);
            format!(
                "超期督办：{zh}已超期 {late}。/ Escalation: {en} is {late} past its due instant."
            )
        }
    };
    if let Some(late) = clock.owed_by.first() {
        data["late_agency"] = json!(late);
    }
    data["notice"] = json!(text);
    json!({
        "specversion": "1.0",
        "id": notice_id(clock, &stage.key).to_string(),
        "source": format!("urn:liaison:agency:{}", clock.origin_sender),
        "type": NOTICE_TYPE,
        "time": rfc3339(at),
        "datacontenttype": "application/json",
        "caseref": clock.caseref,
        "inreplyto": clock.origin.to_string(),
        "data": data,
    })
}

/// A notice's id: a hash of what makes it this notice, so that every instance building it
/// gets the same id.
fn notice_id(clock: &PendingClock, key: &str) -> Uuid {
    let mut hash = Sha256::new();
    for part in [
        "liaison deadline notice",
        &clock.thread.to_string(),
        &clock.clock,
        &clock.origin.to_string(),
        key,
    ] {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    let digest = hash.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    Uuid::new_v8(bytes)
}

/// Checks at start that the notice of every stage of every clock is a valid
/// `deadline.reminder.v1` of `catalogue` (its clock name is one the schema lists), so that
/// a lifecycle file and a catalogue that disagree are found now, not at the first expiry.
pub fn check_notices(lifecycle: &Lifecycle, catalogue: &Catalogue) -> Result<(), String> {
    for rule in lifecycle.clocks() {
        let sample = PendingClock {
            caseref: "ECO-2026-000001".into(),
            thread: Uuid::nil(),
            flow: rule.flow.clone(),
            clock: rule.name.clone(),
            origin: Uuid::nil(),
            origin_sender: "eco".into(),
            due: OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000),
            owed_by: vec!["police".into()],
            notices: Vec::new(),
        };
        for stage in &rule.stages {
            catalogue
                .validate(&notice(&sample, rule, stage))
                .map_err(|e| {
                    format!(
                        "clock {:?}: its {} notice is no valid {NOTICE_TYPE}: {e}",
                        rule.name, stage.key
                    )
                })?;
        }
    }
    Ok(())
}
