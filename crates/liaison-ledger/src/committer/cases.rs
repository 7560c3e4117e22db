//! Places each accepted message in its case, under the sequencing lock: assigns case
//! references, checks that the sender is a party, and moves the message's thread. Deciding
//! here, in ledger order, is what makes two concurrent messages of one case see each
//! other: the second is checked against the state the first left.

use std::collections::{BTreeSet, HashMap};

use liaison_core::clocks::{
    ClockEvents, ClockKind, ClockStarted, ClockStopped, StageRef, StopReason,
};
use liaison_core::{RecipientRole, RejectCode, ThreadStep, caseref};
use sqlx::Row;
use sqlx::postgres::PgRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::error::LedgerError;
use crate::model::NewMessage;
use crate::sql::seq_from_db;

fn read(e: sqlx::Error) -> LedgerError {
    LedgerError::Corrupt(format!("case projection row: {e}"))
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CaseRow {
    pub caseref: String,
    pub opened_seq: u64,
    pub opened_at: OffsetDateTime,
    pub opened_by: String,
    pub updated_seq: u64,
    pub updated_at: OffsetDateTime,
    pub parties: BTreeSet<String>,
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct ThreadRow {
    pub thread: Uuid,
    pub caseref: String,
    pub flow: String,
    pub state: String,
    pub closed: bool,
    pub opened_seq: u64,
    pub updated_seq: u64,
}

impl CaseRow {
    /// A row of `cases` (or a query giving the same column names).
    pub fn from_row(row: &PgRow) -> Result<Self, LedgerError> {
        let parties: Vec<String> = row.try_get("parties").map_err(read)?;
        Ok(Self {
            caseref: row.try_get("caseref").map_err(read)?,
            opened_seq: seq_from_db(row.try_get("opened_seq").map_err(read)?)?,
            opened_at: row.try_get("opened_at").map_err(read)?,
            opened_by: row.try_get("opened_by").map_err(read)?,
            updated_seq: seq_from_db(row.try_get("updated_seq").map_err(read)?)?,
            updated_at: row.try_get("updated_at").map_err(read)?,
            parties: parties.into_iter().collect(),
        })
    }
}

impl ThreadRow {
    /// A row of `case_threads` (or a query giving the same column names).
    pub fn from_row(row: &PgRow) -> Result<Self, LedgerError> {
        Ok(Self {
            thread: row.try_get("thread").map_err(read)?,
            caseref: row.try_get("caseref").map_err(read)?,
            flow: row.try_get("flow").map_err(read)?,
            state: row.try_get("state").map_err(read)?,
            closed: row.try_get("closed").map_err(read)?,
            opened_seq: seq_from_db(row.try_get("opened_seq").map_err(read)?)?,
            updated_seq: seq_from_db(row.try_get("updated_seq").map_err(read)?)?,
        })
    }
}

/// One clock of one thread (`case_clocks`): the last start of that clock in the thread.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub(crate) struct ClockRow {
    pub thread: Uuid,
    pub clock: String,
    pub caseref: String,
    pub flow: String,
    pub kind: ClockKind,
    /// The message that started it.
    pub origin: Uuid,
    pub started_seq: u64,
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: OffsetDateTime,
    #[serde(default, with = "time::serde::rfc3339::option")]
    pub due_at: Option<OffsetDateTime>,
    pub due_error: Option<String>,
    pub owed_by: Vec<String>,
    pub stopped_seq: Option<u64>,
    pub stopped_reason: Option<String>,
    /// The watcher's notices recorded for this start (stage keys).
    pub stages_sent: Vec<String>,
}

impl ClockRow {
    pub fn running(&self) -> bool {
        self.stopped_seq.is_none()
    }
}

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CaseMessageRow {
    pub message_id: Uuid,
    pub caseref: String,
    pub thread: Option<Uuid>,
    pub seq: u64,
}

/// The case rows one batch writes, each in its final state.
#[derive(Debug, Default)]
pub(crate) struct CaseWrites {
    pub cases: Vec<CaseRow>,
    pub threads: Vec<ThreadRow>,
    pub messages: Vec<CaseMessageRow>,
    pub counters: Vec<(String, i32, i64)>,
    pub clocks: Vec<ClockRow>,
}

impl CaseWrites {
    pub fn is_empty(&self) -> bool {
        self.cases.is_empty()
            && self.threads.is_empty()
            && self.messages.is_empty()
            && self.counters.is_empty()
            && self.clocks.is_empty()
    }
}

/// The cases a batch may touch, as read at its start, and as its messages leave them.
#[derive(Debug, Default)]
pub(crate) struct CaseBook {
    pub cases: HashMap<String, CaseRow>,
    pub threads: HashMap<Uuid, ThreadRow>,
    /// The thread of each message an answer of the batch names (and of the batch's own).
    pub message_thread: HashMap<Uuid, Uuid>,
    /// The last number assigned per prefix and year.
    pub counters: HashMap<(String, i32), i64>,
    /// The clocks of the threads in `threads`, by thread and clock name.
    pub clocks: HashMap<(Uuid, String), ClockRow>,
    changed_cases: BTreeSet<String>,
    changed_threads: BTreeSet<Uuid>,
    changed_counters: BTreeSet<(String, i32)>,
    changed_clocks: BTreeSet<(Uuid, String)>,
    new_messages: Vec<CaseMessageRow>,
}

/// Where an accepted message goes in its case.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Placement {
    pub caseref: String,
    /// Liaison assigned the reference: the counter (prefix, year) and the number it took.
    pub assigned: Option<((String, i32), i64)>,
    /// What the message does to its thread; `closed` says whether the thread is closed after.
    pub step: Option<ThreadStep>,
    /// The clocks it starts and stops (`detail.clocks`).
    pub clocks: ClockEvents,
    /// The watcher's notice this message is (`detail.clock_stage`).
    pub stage: Option<StageRef>,
}

/// Why a case refused a message, for its rejection entry.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct CaseRefusal {
    pub code: RejectCode,
    pub detail: String,
    /// The case reference, when the sender is entitled to have the rejection join the
    /// case's trace (a party); otherwise it is only recorded as claimed.
    pub caseref: Option<String>,
    pub claimed_caseref: Option<String>,
    /// The thread and the state the message met, for an invalid transition.
    pub met: Option<ThreadStep>,
}

impl CaseBook {
    /// Decides where `message` goes, without changing anything. `Ok(None)`: it belongs to
    /// no case (it carries no reference and opens no matter).
    pub fn place(
        &self,
        message: &NewMessage,
        at: OffsetDateTime,
    ) -> Result<Option<Placement>, Box<CaseRefusal>> {
        let intent = &message.case;
        let sender = message.sender.as_str();
        let given = intent
            .caseref
            .as_ref()
            .or(message.envelope.caseref.as_ref());
        let (caseref, assigned) = match given {
            None if intent.moves.opens.is_some() => {
                let (caseref, key, number) = self.next_caseref(message, at);
                (caseref, Some((key, number)))
            }
            None => return Ok(None),
            Some(given) => {
                match self.cases.get(given) {
                    Some(case) if !case.parties.contains(sender) => {
                        return Err(Box::new(CaseRefusal {
                            code: RejectCode::NotAParty,
                            detail: format!(
                                "{sender} is not a party of case {given}: only the senders and \
                                 recipients of its messages add to it"
                            ),
                            caseref: None,
                            claimed_caseref: Some(given.clone()),
                            met: None,
                        }));
                    }
                    Some(_) => {}
                    None if caseref::is_assigned_form(given) => {
                        return Err(Box::new(CaseRefusal {
                            code: RejectCode::CaserefUnknown,
                            detail: format!(
                                "{given} names no case; references of this form are assigned \
                                 by liaison (omit `caseref` on a message that opens a matter)"
                            ),
                            caseref: None,
                            claimed_caseref: Some(given.clone()),
                            met: None,
                        }));
                    }
                    None => {}
                }
                (given.clone(), None)
            }
        };

        let id = message.envelope.id;
        if let Some(opening) = &intent.moves.opens {
            let step = ThreadStep {
                thread: id,
                flow: opening.flow.clone(),
                from: None,
                to: opening.initial.clone(),
                closed: opening.closed,
            };
            let clocks = self.clock_events(message, &step, &caseref)?;
            return Ok(Some(Placement {
                caseref,
                assigned,
                step: Some(step),
                clocks,
                stage: None,
            }));
        }
        let thread = message
            .envelope
            .inreplyto
            .and_then(|original| self.message_thread.get(&original))
            .and_then(|thread| self.threads.get(thread));
        let Some(thread) = thread else {
            return Ok(Some(Placement {
                caseref,
                assigned,
                step: None,
                clocks: ClockEvents::default(),
                stage: None,
            }));
        };
        match intent.moves.apply(&thread.flow, &thread.state) {
            Ok(moved) => {
                let step = ThreadStep {
                    thread: thread.thread,
                    flow: thread.flow.clone(),
                    from: Some(thread.state.clone()),
                    to: moved.map_or_else(|| thread.state.clone(), |m| m.to.clone()),
                    closed: moved.map_or(thread.closed, |m| m.closes),
                };
                let stage = self.check_stage(message, &step, &caseref)?;
                let clocks = self.clock_events(message, &step, &caseref)?;
                Ok(Some(Placement {
                    caseref,
                    assigned,
                    step: Some(step),
                    clocks,
                    stage,
                }))
            }
            Err(invalid) => Err(Box::new(CaseRefusal {
                code: RejectCode::InvalidTransition,
                detail: format!(
                    "{} is not a step of the {} in case {caseref} from its state {:?}",
                    message.envelope.type_, invalid.flow, invalid.state
                ),
                caseref: Some(caseref),
                claimed_caseref: None,
                met: Some(ThreadStep {
                    thread: thread.thread,
                    flow: invalid.flow.clone(),
                    from: Some(invalid.state.clone()),
                    to: invalid.state,
                    closed: thread.closed,
                }),
            })),
        }
    }

    /// A watcher's notice is recorded only while its clock runs, from the start it names
    /// (`inreplyto` is the starting message): a notice decided just before an answer
    /// stopped the clock is refused, so a stopped clock sends nothing more.
    fn check_stage(
        &self,
        message: &NewMessage,
        step: &ThreadStep,
        caseref: &str,
    ) -> Result<Option<StageRef>, Box<CaseRefusal>> {
        let Some(stage) = &message.case.clocks.stage else {
            return Ok(None);
        };
        let running = self
            .clocks
            .get(&(step.thread, stage.clock.clone()))
            .is_some_and(|c| c.running() && Some(c.origin) == message.envelope.inreplyto);
        if running && stage.thread == step.thread {
            return Ok(Some(stage.clone()));
        }
        Err(Box::new(CaseRefusal {
            code: RejectCode::InvalidTransition,
            detail: format!(
                "clock {} of case {caseref} is not running from message {}: its notice {} is \
                 no longer due",
                stage.clock,
                message
                    .envelope
                    .inreplyto
                    .map(|id| id.to_string())
                    .unwrap_or_default(),
                stage.key
            ),
            caseref: Some(caseref.to_owned()),
            claimed_caseref: None,
            met: Some(step.clone()),
        }))
    }

    /// The clocks `message`, making `step` in its thread, stops and starts. A `stops_on`
    /// message of a window that ran out is refused `window_closed`.
    fn clock_events(
        &self,
        message: &NewMessage,
        step: &ThreadStep,
        caseref: &str,
    ) -> Result<ClockEvents, Box<CaseRefusal>> {
        let intent = &message.case.clocks;
        let sender = message.sender.as_str();
        // PostgreSQL keeps microseconds: the projection and the entry must say the same.
        let micros = |t: OffsetDateTime| t.replace_microsecond(t.microsecond()).unwrap_or(t);
        let received = micros(message.received_at);
        let mut events = ClockEvents::default();
        let mut running: Vec<&ClockRow> = self
            .clocks
            .values()
            .filter(|c| c.thread == step.thread && c.running())
            .collect();
        running.sort_by(|a, b| a.clock.cmp(&b.clock));
        let stopped = |clock: &ClockRow, reason| ClockStopped {
            thread: clock.thread,
            clock: clock.clock.clone(),
            reason,
            started_at: clock.started_at,
            due: clock.due_at,
            late: clock.due_at.is_some_and(|due| received >= due),
        };
        for clock in &running {
            let answers = intent
                .stops
                .iter()
                .any(|s| s.clock == clock.clock && s.flow == step.flow);
            if !answers || !clock.owed_by.iter().any(|a| a == sender) {
                continue;
            }
            if clock.kind == ClockKind::Window
                && let Some(due) = clock.due_at.filter(|due| received >= *due)
            {
                return Err(Box::new(CaseRefusal {
                    code: RejectCode::WindowClosed,
                    detail: format!(
                        "the period for {} in case {caseref} ({}) ended at {}",
                        message.envelope.type_,
                        clock.clock,
                        due.to_offset(liaison_core::calendar::CHINA_STANDARD_TIME)
                            .format(&time::format_description::well_known::Rfc3339)
                            .unwrap_or_default()
                    ),
                    caseref: Some(caseref.to_owned()),
                    claimed_caseref: None,
                    met: Some(step.clone()),
                }));
            }
            events.stopped.push(stopped(clock, StopReason::Answered));
        }
        if step.closed {
            for clock in &running {
                if !events.stopped.iter().any(|s| s.clock == clock.clock) {
                    events.stopped.push(stopped(clock, StopReason::Closed));
                }
            }
        }
        let moved = step.from.is_none() || step.is_transition();
        if moved && !step.closed {
            let owed_by: Vec<String> = message
                .route
                .recipients
                .iter()
                .filter(|r| r.role == RecipientRole::To)
                .map(|r| r.agency.as_str().to_owned())
                .collect();
            for start in &intent.starts {
                let applies = start.flow == step.flow
                    && start.entering.as_ref().is_none_or(|s| *s == step.to);
                if !applies {
                    continue;
                }
                events.started.push(ClockStarted {
                    thread: step.thread,
                    clock: start.clock.clone(),
                    kind: start.kind,
                    started_at: received,
                    due: start.due.as_ref().ok().copied().map(micros),
                    due_error: start.due.as_ref().err().cloned(),
                    owed_by: owed_by.clone(),
                });
            }
        }
        Ok(events)
    }

    /// The reference the next case `message`'s sender opens at `at` gets.
    fn next_caseref(
        &self,
        message: &NewMessage,
        at: OffsetDateTime,
    ) -> (String, (String, i32), i64) {
        let prefix = caseref::prefix(&message.sender);
        let year = caseref::year(at);
        let key = (prefix, year);
        let number = self.counters.get(&key).copied().unwrap_or(0) + 1;
        (caseref::format(&key.0, year, number), key, number)
    }

    /// Records `message`, accepted at `seq`, where `placement` put it.
    pub fn record(
        &mut self,
        placement: &Placement,
        message: &NewMessage,
        seq: u64,
        at: OffsetDateTime,
    ) {
        if let Some((key, number)) = &placement.assigned {
            self.counters.insert(key.clone(), *number);
            self.changed_counters.insert(key.clone());
        }
        let parties = std::iter::once(message.sender.as_str())
            .chain(message.route.recipients.iter().map(|r| r.agency.as_str()))
            .map(str::to_owned);
        let case = self
            .cases
            .entry(placement.caseref.clone())
            .or_insert_with(|| CaseRow {
                caseref: placement.caseref.clone(),
                opened_seq: seq,
                opened_at: at,
                opened_by: message.sender.as_str().to_owned(),
                updated_seq: seq,
                updated_at: at,
                parties: BTreeSet::new(),
            });
        case.parties.extend(parties);
        case.updated_seq = seq;
        case.updated_at = at;
        self.changed_cases.insert(placement.caseref.clone());

        let id = message.envelope.id;
        if let Some(step) = &placement.step {
            let thread = self
                .threads
                .entry(step.thread)
                .or_insert_with(|| ThreadRow {
                    thread: step.thread,
                    caseref: placement.caseref.clone(),
                    flow: step.flow.clone(),
                    state: step.to.clone(),
                    closed: step.closed,
                    opened_seq: seq,
                    updated_seq: seq,
                });
            thread.state = step.to.clone();
            thread.closed = step.closed;
            thread.updated_seq = seq;
            self.changed_threads.insert(step.thread);
            self.message_thread.insert(id, step.thread);
        }
        for stop in &placement.clocks.stopped {
            let key = (stop.thread, stop.clock.clone());
            if let Some(clock) = self.clocks.get_mut(&key) {
                clock.stopped_seq = Some(seq);
                clock.stopped_reason = Some(stop.reason.as_str().to_owned());
                self.changed_clocks.insert(key);
            }
        }
        for start in &placement.clocks.started {
            let key = (start.thread, start.clock.clone());
            let flow = placement
                .step
                .as_ref()
                .map(|s| s.flow.clone())
                .unwrap_or_default();
            self.clocks.insert(
                key.clone(),
                ClockRow {
                    thread: start.thread,
                    clock: start.clock.clone(),
                    caseref: placement.caseref.clone(),
                    flow,
                    kind: start.kind,
                    origin: id,
                    started_seq: seq,
                    started_at: start.started_at,
                    due_at: start.due,
                    due_error: start.due_error.clone(),
                    owed_by: start.owed_by.clone(),
                    stopped_seq: None,
                    stopped_reason: None,
                    stages_sent: Vec::new(),
                },
            );
            self.changed_clocks.insert(key);
        }
        if let Some(stage) = &placement.stage {
            let key = (stage.thread, stage.clock.clone());
            if let Some(clock) = self.clocks.get_mut(&key)
                && !clock.stages_sent.contains(&stage.key)
            {
                clock.stages_sent.push(stage.key.clone());
                self.changed_clocks.insert(key);
            }
        }
        self.new_messages.push(CaseMessageRow {
            message_id: id,
            caseref: placement.caseref.clone(),
            thread: placement.step.as_ref().map(|s| s.thread),
            seq,
        });
    }

    pub fn into_writes(mut self) -> CaseWrites {
        CaseWrites {
            cases: self
                .changed_cases
                .iter()
                .filter_map(|c| self.cases.remove(c))
                .collect(),
            threads: self
                .changed_threads
                .iter()
                .filter_map(|t| self.threads.remove(t))
                .collect(),
            messages: self.new_messages,
            clocks: self
                .changed_clocks
                .iter()
                .filter_map(|k| self.clocks.remove(k))
                .collect(),
            counters: self
                .changed_counters
                .into_iter()
                .filter_map(|key| {
                    let last = self.counters.get(&key).copied()?;
                    Some((key.0, key.1, last))
                })
                .collect(),
        }
    }
}
