//! The one pipeline every intake channel feeds: parse, validate, authorize, route, record.
//!
//! HTTPS and AMQP intake both build a [`Submission`] whose sender is the authenticated
//! identity and call [`Pipeline::submit`]. A message is accepted only once the ledger has
//! committed it with its outbox rows; every rejection is recorded in the ledger before it
//! is answered, so "rejected" is as durable as "accepted".

use std::sync::Arc;
use std::time::Instant;

use liaison_core::audit::sha256;
use liaison_core::clocks::StageRef;
use liaison_core::envelope::is_well_formed_caseref;
use liaison_core::{
    AgencyCode, Channel, Clock, Envelope, HolidayCalendar, Lifecycle, Policy, Registry, RejectCode,
    Submission,
};
use liaison_ledger::{
    AcceptOutcome, AcceptReceipt, CaseIntent, Claimed, Ledger, LedgerError, NewMessage,
    NewRejection, NewRejectionSummary, RejectionDetail,
};
use liaison_schema::{Admission, Catalogue, ParseLimits, Violation};
use uuid::Uuid;

use tracing::Instrument;
use tracing::field::Empty;

use crate::http::problem::{Dependency, Problem};
use crate::refusal_budget::{self, RefusalBudget, Verdict};
use crate::telemetry::{events, trace};

/// The answer to an accepted submission.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub receipt: AcceptReceipt,
    /// The same id and bytes were accepted before; this is that earlier answer.
    pub duplicate: bool,
    /// The message's type.
    pub type_: String,
}

pub struct Pipeline {
    catalogue: Arc<Catalogue>,
    registry: Arc<Registry>,
    policy: Arc<Policy>,
    lifecycle: Arc<Lifecycle>,
    calendar: Arc<HolidayCalendar>,
    ledger: Ledger,
    limits: ParseLimits,
    refusals: RefusalBudget,
    clock: Arc<dyn Clock>,
}

/// What is known of a refused submission, for its ledger entry and its problem document.
/// `message_id`, `caseref` and `type_` hold only values that passed their own checks (see
/// [`Refusal::about`]); whether they index the entry is decided when it is recorded.
struct Refusal {
    code: RejectCode,
    detail: String,
    violations: Vec<Violation>,
    message_id: Option<Uuid>,
    caseref: Option<String>,
    type_: Option<String>,
    /// Already recorded by the ledger at this seq (a refusal by the message's case).
    recorded: Option<u64>,
}

/// The answer when the ledger could not take a submission. What PostgreSQL said goes to
/// the log, never to the client.
fn ledger_unavailable(error: &LedgerError, envelope: &Envelope) -> Refusal {
    tracing::warn!(%error, message.id = %envelope.id, "ledger unavailable");
    let mut refusal = Refusal::new(RejectCode::Unavailable, Dependency::Ledger.detail());
    refusal.message_id = Some(envelope.id);
    refusal
}

impl Refusal {
    fn new(code: RejectCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            violations: Vec::new(),
            message_id: None,
            caseref: None,
            type_: None,
            recorded: None,
        }
    }

    /// Keeps what the refused envelope says about itself, each field only if it passed its
    /// check on its own, whatever else failed: the id is a UUID (parsing made sure), the type
    /// is one of the catalogue's, the case reference matches the envelope schema's pattern
    /// (at most 64 printable ASCII characters). Anything else is left out of the record.
    fn about(mut self, envelope: &Envelope, catalogue: &Catalogue) -> Self {
        self.message_id = Some(envelope.id);
        self.caseref = envelope
            .caseref
            .clone()
            .filter(|c| is_well_formed_caseref(c));
        self.type_ = catalogue
            .get(&envelope.type_)
            .map(|_| envelope.type_.clone());
        self
    }
}

/// What submissions are checked against: the catalogue, the agencies, the routing policy,
/// the case lifecycles and the holiday calendar their clocks count with.
pub struct Rules {
    pub catalogue: Arc<Catalogue>,
    pub registry: Arc<Registry>,
    pub policy: Arc<Policy>,
    pub lifecycle: Arc<Lifecycle>,
    pub calendar: Arc<HolidayCalendar>,
}

/// A message that passed every check before the ledger.
struct Checked {
    envelope: Envelope,
    route: liaison_core::Route,
    case: CaseIntent,
}

/// Who would receive a message, as [`Pipeline::preview`] answers.
#[derive(Clone, Debug)]
pub struct Preview {
    pub type_: String,
    pub recipients: Vec<liaison_core::Recipient>,
    /// The case reference it names or would inherit from the message it answers; a message
    /// that opens a case without one would be assigned one when recorded.
    pub caseref: Option<String>,
}

impl Pipeline {
    pub fn new(
        rules: Rules,
        ledger: Ledger,
        limits: ParseLimits,
        refusals: RefusalBudget,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let Rules {
            catalogue,
            registry,
            policy,
            lifecycle,
            calendar,
        } = rules;
        Self {
            catalogue,
            registry,
            policy,
            lifecycle,
            calendar,
            ledger,
            limits,
            refusals,
            clock,
        }
    }

    /// Records the summaries of the refusal intervals that have ended (all of them with
    /// `all`, at shutdown). A summary the ledger cannot take now is kept for the next call.
    pub async fn record_refusal_summaries(&self, all: bool) {
        let closed = if all {
            self.refusals.drain()
        } else {
            self.refusals.close_due(self.clock.now())
        };
        for summary in closed {
            self.record_summary(summary).await;
        }
    }

    async fn record_summary(&self, (sender, summary): refusal_budget::Closed) {
        let total = summary.total;
        match self
            .ledger
            .summarize_rejections(NewRejectionSummary {
                sender: sender.clone(),
                summary,
            })
            .await
        {
            Ok(seq) => tracing::info!(
                agency.code = sender.as_ref().map(AgencyCode::as_str),
                refusals = total,
                ledger.seq = seq,
                "refusals over the budget recorded as one summary"
            ),
            Err(error) => tracing::warn!(
                %error,
                agency.code = sender.as_ref().map(AgencyCode::as_str),
                refusals = total,
                "could not record a summary of refusals"
            ),
        }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    pub fn lifecycle(&self) -> &Lifecycle {
        &self.lifecycle
    }

    pub fn lifecycle_arc(&self) -> Arc<Lifecycle> {
        self.lifecycle.clone()
    }

    pub async fn submit(&self, submission: Submission) -> Result<Accepted, Problem> {
        self.admit(submission, None).await
    }

    /// A notice of the deadline watcher, sent on behalf of `submission.sender`: admitted
    /// like any message, and recorded only while its clock still runs.
    pub async fn submit_notice(
        &self,
        submission: Submission,
        stage: StageRef,
    ) -> Result<Accepted, Problem> {
        self.admit(submission, Some(stage)).await
    }

    /// Admits a submission in a span of its own (`message.submit`), the child of the trace
    /// its transport or its CloudEvent names.
    async fn admit(
        &self,
        submission: Submission,
        stage: Option<StageRef>,
    ) -> Result<Accepted, Problem> {
        let span = tracing::info_span!(
            "message.submit",
            agency.code = %submission.sender,
            channel = submission.channel.as_str(),
            message.id = Empty,
            message.type = Empty,
            case.ref = Empty,
            ledger.seq = Empty,
            trace.id = Empty,
        );
        let started = Instant::now();
        let submit_trace = trace::start_child(&span, submission.traceparent.as_deref());
        async {
            match self
                .check_and_record(&submission, stage, started, &submit_trace)
                .await
            {
                Ok(accepted) => Ok(accepted),
                Err(refusal) => Err(self
                    .record_refusal(
                        Some(&submission.sender),
                        submission.channel,
                        &submission.bytes,
                        submission.bytes.len(),
                        refusal,
                    )
                    .await),
            }
        }
        .instrument(span)
        .await
    }

    /// Records a submission refused before its body could be read in full (too large, wrong
    /// media type), and answers it.
    pub async fn refuse_unread(
        &self,
        sender: &AgencyCode,
        channel: Channel,
        code: RejectCode,
        detail: String,
        size: usize,
    ) -> Problem {
        self.record_refusal(Some(sender), channel, &[], size, Refusal::new(code, detail))
            .await
    }

    /// Records a submission from `sender` refused on its bytes alone, before any parsing
    /// (an AMQP message over the size limit, or over the agency's rate), and answers it.
    pub async fn refuse_bytes(
        &self,
        sender: &AgencyCode,
        channel: Channel,
        code: RejectCode,
        detail: String,
        bytes: &[u8],
    ) -> Problem {
        self.record_refusal(
            Some(sender),
            channel,
            bytes,
            bytes.len(),
            Refusal::new(code, detail),
        )
        .await
    }

    /// Records a submission that carries no identity (an AMQP message without a validated
    /// `user_id`, or from a user that names no agency), and answers it.
    pub async fn refuse_anonymous(
        &self,
        channel: Channel,
        code: RejectCode,
        detail: String,
        bytes: &[u8],
    ) -> Problem {
        self.record_refusal(
            None,
            channel,
            bytes,
            bytes.len(),
            Refusal::new(code, detail),
        )
        .await
    }

    /// Who would receive `bytes` from `sender`, by every check [`Pipeline::submit`] makes
    /// before the ledger (schemas, policy, the original of an answer, its case reference),
    /// with nothing recorded: a refusal is answered with the problem `submit` would give,
    /// without a `ledger_seq`. What only the ledger decides when it records (the case's
    /// state, its parties, an id already taken) is not checked.
    pub async fn preview(
        &self,
        sender: &AgencyCode,
        bytes: &[u8],
        now: time::OffsetDateTime,
    ) -> Result<Preview, Problem> {
        match self.check(sender, bytes, now).await {
            Ok(checked) => Ok(Preview {
                type_: checked.envelope.type_,
                recipients: checked.route.recipients,
                caseref: checked.envelope.caseref.or(checked.case.caseref),
            }),
            Err(refusal) => {
                let mut problem =
                    Problem::new(refusal.code, refusal.detail).with_errors(refusal.violations);
                problem.message_id = refusal.message_id;
                Err(problem)
            }
        }
    }

    async fn check_and_record(
        &self,
        submission: &Submission,
        stage: Option<StageRef>,
        started: Instant,
        submit_trace: &str,
    ) -> Result<Accepted, Refusal> {
        let checking = Instant::now();
        let Checked {
            envelope,
            route,
            mut case,
        } = self
            .check(
                &submission.sender,
                &submission.bytes,
                submission.received_at,
            )
            .await?;
        let admission = checking.elapsed();
        case.clocks.stage = stage;
        let span = tracing::Span::current();
        span.record("message.id", tracing::field::display(envelope.id));
        span.record("message.type", envelope.type_.as_str());
        // The recording span continues the request's trace; a CloudEvent that names a
        // trace, posted without one, is recorded in the CloudEvent's.
        let record_span = tracing::info_span!("message.record", trace.id = Empty);
        let parent = match (&submission.traceparent, &envelope.traceparent) {
            (None, Some(event_trace)) if trace::parse(event_trace).is_some() => event_trace,
            _ => submit_trace,
        };
        let trace_context = trace::start_child(&record_span, Some(parent));
        let accepted = self
            .record(submission, envelope, route, case, trace_context)
            .instrument(record_span)
            .await?;
        span.record("ledger.seq", accepted.receipt.seq);
        if let Some(caseref) = &accepted.receipt.caseref {
            span.record("case.ref", caseref.as_str());
        }
        events::Accepted {
            sender: &submission.sender,
            channel: submission.channel,
            type_: &accepted.type_,
            message_id: accepted.receipt.id,
            seq: accepted.receipt.seq,
            duplicate: accepted.duplicate,
            admission,
            elapsed: started.elapsed(),
        }
        .emit();
        Ok(accepted)
    }

    /// Every check before the ledger, in the order a sender is told of faults: identity,
    /// JSON, the envelope schema, whether the sender may send the type at all, the payload
    /// schema, `source`, then the policy's route and the original an answer names.
    async fn check(
        &self,
        sender: &AgencyCode,
        bytes: &[u8],
        received_at: time::OffsetDateTime,
    ) -> Result<Checked, Refusal> {
        if !self.registry.contains(sender) {
            return Err(Refusal::new(
                RejectCode::UnknownAgency,
                format!("agency {sender} is not in the registry"),
            ));
        }
        let admission = Admission {
            catalogue: &self.catalogue,
            policy: &self.policy,
            limits: self.limits,
        };
        let admitted = tracing::info_span!("message.validate")
            .in_scope(|| admission.admit(sender, bytes))
            .map_err(|refused| self.refusal(*refused))?;
        let envelope = &admitted.envelope;
        let original = match envelope.inreplyto {
            Some(id) => self
                .ledger
                .original(id)
                .await
                .map_err(|e| ledger_unavailable(&e, envelope))?,
            None => None,
        };
        let route = admission
            .route(sender, &admitted, original.as_ref())
            .map_err(|refused| self.refusal(*refused))?;
        let case = self
            .case_intent(
                sender,
                envelope,
                &admitted.event,
                original.as_ref(),
                received_at,
            )
            .map_err(|refusal| *refusal)?;
        Ok(Checked {
            envelope: admitted.envelope,
            route,
            case,
        })
    }

    /// A refusal of admission, keeping what the refused envelope says about itself.
    fn refusal(&self, refused: liaison_schema::Refused) -> Refusal {
        let mut refusal = Refusal::new(refused.code, refused.detail);
        refusal.violations = refused.violations;
        match &refused.envelope {
            Some(envelope) => refusal.about(envelope, &self.catalogue),
            None => refusal,
        }
    }

    /// Records a checked message (or learns why the ledger refuses it).
    async fn record(
        &self,
        submission: &Submission,
        envelope: Envelope,
        route: liaison_core::Route,
        case: CaseIntent,
        trace_context: String,
    ) -> Result<Accepted, Refusal> {
        let sender = &submission.sender;
        let id = envelope.id;
        let type_ = envelope.type_.clone();
        let outcome = self
            .ledger
            .accept(NewMessage {
                envelope: envelope.clone(),
                sender: sender.clone(),
                channel: submission.channel,
                bytes: submission.bytes.clone(),
                received_at: submission.received_at,
                route,
                case,
                trace_context: Some(trace_context),
            })
            .instrument(tracing::info_span!("ledger.commit"))
            .await
            .map_err(|e| {
                if e.is_transient() {
                    return ledger_unavailable(&e, &envelope);
                }
                // PostgreSQL refused a value of this message alone (the batch was split to
                // find it): retrying cannot help, so it is a recorded refusal. Every text the
                // ledger stores passed the envelope schema, so this is not expected.
                tracing::warn!(error = %e, message.id = %envelope.id, "the ledger refused a value of a message");
                Refusal::new(
                    RejectCode::EnvelopeInvalid,
                    "a value of this message cannot be stored",
                )
                .about(&envelope, &self.catalogue)
            })?;
        match outcome {
            AcceptOutcome::Recorded(receipt) => Ok(Accepted {
                receipt,
                duplicate: false,
                type_,
            }),
            AcceptOutcome::Duplicate(receipt) => Ok(Accepted {
                receipt,
                duplicate: true,
                type_,
            }),
            AcceptOutcome::Refused { seq, code, detail } => {
                let mut refusal = Refusal::new(code, detail).about(&envelope, &self.catalogue);
                refusal.recorded = Some(seq);
                Err(refusal)
            }
            AcceptOutcome::Conflict {
                existing_seq,
                same_sender: true,
            } => Err(Refusal::new(
                RejectCode::IdConflict,
                format!("message {id} was already recorded (ledger entry {existing_seq}) with other content"),
            )
            .about(&envelope, &self.catalogue)),
            // Whose message holds the id, and where it is in the ledger, is not for
            // another agency to learn: only that the id is taken.
            AcceptOutcome::Conflict {
                same_sender: false, ..
            } => Err(Refusal::new(
                RejectCode::IdConflict,
                format!("message id {id} is already taken; choose another id"),
            )
            .about(&envelope, &self.catalogue)),
        }
    }

    /// The case the message belongs to, as far as the message and its original decide it:
    /// an answer inherits its original's case reference (naming another is refused), and
    /// the lifecycle says which moves the message could make. The ledger applies them
    /// against the case's state when it records the message.
    fn case_intent(
        &self,
        sender: &AgencyCode,
        envelope: &Envelope,
        event: &serde_json::Value,
        original: Option<&liaison_core::OriginalMessage>,
        received_at: time::OffsetDateTime,
    ) -> Result<CaseIntent, Box<Refusal>> {
        let inherited = match original {
            Some(original) => match (&original.caseref, &envelope.caseref) {
                (Some(theirs), Some(own)) if theirs != own => {
                    return Err(Box::new(Refusal::new(
                        RejectCode::CaserefMismatch,
                        format!(
                            "caseref is {own:?} but message {} it answers belongs to case {theirs:?}; \
                             an answer carries its original's case reference (or none)",
                            original.id
                        ),
                    )
                    .about(envelope, &self.catalogue)));
                }
                (Some(theirs), None) => Some(theirs.clone()),
                _ => None,
            },
            None => None,
        };
        let by_addressee = original.is_some_and(|o| o.addressees.contains(sender));
        Ok(CaseIntent {
            caseref: inherited,
            moves: self.lifecycle.moves(&envelope.type_, event, by_addressee),
            clocks: self.lifecycle.clock_intent(
                &envelope.type_,
                event,
                received_at,
                &self.calendar,
            ),
        })
    }

    /// Writes the refusal to the ledger and turns it into the answer. A refusal that
    /// cannot be recorded is answered `503` instead: the client retries and the retry is
    /// recorded, so no rejection goes unrecorded.
    async fn record_refusal(
        &self,
        sender: Option<&AgencyCode>,
        channel: Channel,
        bytes: &[u8],
        size: usize,
        refusal: Refusal,
    ) -> Problem {
        let mut problem = Problem::new(refusal.code, refusal.detail.clone())
            .with_errors(refusal.violations.clone());
        problem.message_id = refusal.message_id;
        let type_ = refusal.type_.clone();
        let refused = |seq: Option<u64>| events::Refused {
            sender,
            channel,
            type_: type_.as_deref(),
            code: refusal.code,
            seq,
        };
        if let Some(seq) = refusal.recorded {
            refused(Some(seq)).emit();
            problem.ledger_seq = Some(seq);
            return problem;
        }
        if refusal.code == RejectCode::Unavailable {
            tracing::warn!(agency.code = sender.map(AgencyCode::as_str), detail = %refusal.detail, "submission not recorded");
            refused(None).emit();
            return problem;
        }
        let digest = sha256(bytes);
        let (verdict, closed) =
            self.refusals
                .note(sender, self.clock.now(), refusal.code, &hex::encode(digest));
        if let Some(closed) = closed {
            self.record_summary(closed).await;
        }
        if verdict == Verdict::Summarize {
            events::Refused {
                sender,
                channel,
                type_: type_.as_deref(),
                code: refusal.code,
                seq: None,
            }
            .emit_summarized();
            return problem;
        }
        let (message_id, caseref, claimed) = self
            .entitled(sender, refusal.message_id, refusal.caseref)
            .await;
        let rejection = NewRejection {
            sender: sender.cloned(),
            channel,
            message_id,
            caseref,
            type_: refusal.type_,
            claimed,
            code: refusal.code,
            bytes_sha256: digest,
            size,
            errors: refusal
                .violations
                .into_iter()
                .map(|v| RejectionDetail {
                    pointer: v.pointer,
                    keyword: v.keyword,
                    message: v.message,
                })
                .collect(),
        };
        let code = refusal.code;
        match self.ledger.reject(rejection).await {
            Ok(seq) => {
                refused(Some(seq)).emit();
                problem.ledger_seq = Some(seq);
                problem
            }
            Err(e) => {
                tracing::warn!(error = %e, reject.code = code.as_str(), "could not record a rejection");
                refused(None).emit();
                let mut unavailable = Problem::ledger(&e);
                unavailable.message_id = problem.message_id;
                unavailable
            }
        }
    }

    /// Splits what a refused submission is about into what indexes its rejection entry
    /// (its `message` and `caseref`, which put it into traces and proofs) and what is only
    /// recorded as claimed. A rejection joins a message's entries only if that id is not
    /// another agency's message — unknown, or one the sender sent or received — and a
    /// case's only if the sender already is a party of it (sent or was routed one of its
    /// accepted messages). Otherwise any agency could attach entries to others' messages
    /// and cases. A lookup that fails counts as "not entitled".
    async fn entitled(
        &self,
        sender: Option<&AgencyCode>,
        message_id: Option<Uuid>,
        caseref: Option<String>,
    ) -> (Option<Uuid>, Option<String>, Claimed) {
        let Some(sender) = sender else {
            return (
                None,
                None,
                Claimed {
                    message_id,
                    caseref,
                },
            );
        };
        let mut claimed = Claimed::default();
        let message_id = match message_id {
            Some(id) => match self.ledger.original(id).await {
                Ok(None) => Some(id),
                Ok(Some(o)) if &o.sender == sender || o.recipients.contains(sender) => Some(id),
                Ok(Some(_)) | Err(_) => {
                    claimed.message_id = Some(id);
                    None
                }
            },
            None => None,
        };
        let caseref = match caseref {
            Some(c) => match self.ledger.is_case_party(&c, sender).await {
                Ok(true) => Some(c),
                Ok(false) | Err(_) => {
                    claimed.caseref = Some(c);
                    None
                }
            },
            None => None,
        };
        (message_id, caseref, claimed)
    }
}
