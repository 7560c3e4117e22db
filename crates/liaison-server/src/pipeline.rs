//! The one pipeline every intake channel feeds: parse, validate, authorize, route, record.
//!
//! HTTPS and AMQP intake both build a [`Submission`] whose sender is the authenticated
//! identity and call [`Pipeline::submit`]. A message is accepted only once the ledger has
//! committed it with its outbox rows; every rejection is recorded in the ledger before it
//! is answered, so "rejected" is as durable as "accepted".

use std::sync::Arc;

use liaison_core::audit::sha256;
use liaison_core::{AgencyCode, Channel, Envelope, Policy, Registry, RejectCode, Submission};
use liaison_ledger::{
    AcceptOutcome, AcceptReceipt, Ledger, NewMessage, NewRejection, RejectionDetail,
};
use liaison_schema::{Catalogue, ParseLimits, Violation};
use uuid::Uuid;

use crate::problem::{Dependency, Problem};

/// The answer to an accepted submission.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub receipt: AcceptReceipt,
    /// The same id and bytes were accepted before; this is that earlier answer.
    pub duplicate: bool,
}

pub struct Pipeline {
    catalogue: Arc<Catalogue>,
    registry: Arc<Registry>,
    policy: Arc<Policy>,
    ledger: Ledger,
    limits: ParseLimits,
}

/// What is known of a refused submission, for its ledger entry and its problem document.
struct Refusal {
    code: RejectCode,
    detail: String,
    violations: Vec<Violation>,
    message_id: Option<Uuid>,
    caseref: Option<String>,
    type_: Option<String>,
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
        }
    }

    fn about(mut self, envelope: &Envelope) -> Self {
        self.message_id = Some(envelope.id);
        self.caseref = envelope.caseref.clone();
        self.type_ = Some(envelope.type_.clone());
        self
    }
}

/// The ledger failed: the error is logged, the client gets a detail without its text.
fn ledger_unavailable(error: &liaison_ledger::LedgerError) -> Refusal {
    tracing::warn!(%error, "ledger unavailable during a submission");
    Refusal::new(RejectCode::Unavailable, Dependency::Ledger.detail())
}

impl Pipeline {
    pub fn new(
        catalogue: Arc<Catalogue>,
        registry: Arc<Registry>,
        policy: Arc<Policy>,
        ledger: Ledger,
        limits: ParseLimits,
    ) -> Self {
        Self {
            catalogue,
            registry,
            policy,
            ledger,
            limits,
        }
    }

    pub fn catalogue(&self) -> &Catalogue {
        &self.catalogue
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub async fn submit(&self, submission: Submission) -> Result<Accepted, Problem> {
        match self.check_and_record(&submission).await {
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

    async fn check_and_record(&self, submission: &Submission) -> Result<Accepted, Refusal> {
        let sender = &submission.sender;
        if !self.registry.contains(sender) {
            return Err(Refusal::new(
                RejectCode::UnknownAgency,
                format!("agency {sender} is not in the registry"),
            ));
        }
        let event = liaison_schema::parse(&submission.bytes, &self.limits)
            .map_err(|e| Refusal::new(e.code(), e.to_string()))?;
        let partial = Envelope::from_value(&event).ok();
        if let Err(invalid) = self.catalogue.validate(&event) {
            let detail = match invalid.violations.len() {
                1 => "1 error; see `errors`".to_owned(),
                n => format!("{n} errors; see `errors`"),
            };
            let mut refusal = Refusal::new(invalid.code, detail);
            refusal.violations = invalid.violations;
            if let Some(envelope) = &partial {
                refusal = refusal.about(envelope);
            }
            return Err(refusal);
        }
        let envelope = Envelope::from_value(&event).map_err(|e| {
            let mut refusal = Refusal::new(RejectCode::EnvelopeInvalid, e.to_string());
            refusal.violations = vec![Violation {
                pointer: e.pointer(),
                keyword: "format".into(),
                message: e.to_string(),
            }];
            refusal
        })?;

        if envelope.source_agency().as_ref() != Some(sender) {
            return Err(Refusal::new(
                RejectCode::SourceMismatch,
                format!(
                    "source is {:?} but the client certificate is {}'s ({})",
                    envelope.source,
                    sender,
                    sender.urn()
                ),
            )
            .about(&envelope));
        }

        let original = match envelope.inreplyto {
            Some(id) => self
                .ledger
                .original(id)
                .await
                .map_err(|e| ledger_unavailable(&e).about(&envelope))?,
            None => None,
        };
        let route = self
            .policy
            .route_event(sender, &envelope, Some(&event), original.as_ref())
            .map_err(|e| Refusal::new(e.code(), e.to_string()).about(&envelope))?;

        let id = envelope.id;
        let outcome = self
            .ledger
            .accept(NewMessage {
                envelope: envelope.clone(),
                sender: sender.clone(),
                channel: submission.channel,
                bytes: submission.bytes.clone(),
                received_at: submission.received_at,
                route,
            })
            .await
            .map_err(|e| ledger_unavailable(&e).about(&envelope))?;
        match outcome {
            AcceptOutcome::Recorded(receipt) => Ok(Accepted { receipt, duplicate: false }),
            AcceptOutcome::Duplicate(receipt) => Ok(Accepted { receipt, duplicate: true }),
            AcceptOutcome::Conflict {
                existing_seq,
                same_sender: true,
            } => Err(Refusal::new(
                RejectCode::IdConflict,
                format!("message {id} was already recorded (ledger entry {existing_seq}) with other content"),
            )
            .about(&envelope)),
            // Whose message holds the id, and where it is in the ledger, is not for
            // another agency to learn: only that the id is taken.
            AcceptOutcome::Conflict {
                same_sender: false, ..
            } => Err(Refusal::new(
                RejectCode::IdConflict,
                format!("message id {id} is already taken; choose another id"),
            )
            .about(&envelope)),
        }
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
        if refusal.code == RejectCode::Unavailable {
            tracing::warn!(agency.code = sender.map(AgencyCode::as_str), detail = %refusal.detail, "submission not recorded");
            return problem;
        }
        let rejection = NewRejection {
            sender: sender.cloned(),
            channel,
            message_id: refusal.message_id,
            caseref: refusal.caseref,
            type_: refusal.type_,
            code: refusal.code,
            bytes_sha256: sha256(bytes),
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
        match self.ledger.reject(rejection).await {
            Ok(seq) => {
                tracing::info!(
                    agency.code = sender.map(AgencyCode::as_str),
                    reject.code = refusal.code.as_str(),
                    ledger.seq = seq,
                    "submission rejected"
                );
                problem.ledger_seq = Some(seq);
                problem
            }
            Err(e) => {
                tracing::warn!(error = %e, reject.code = refusal.code.as_str(), "could not record a rejection");
                let mut unavailable = Problem::unavailable(Dependency::Ledger, &e);
                unavailable.message_id = problem.message_id;
                unavailable
            }
        }
    }
}
