//! Admission: every check of a submission that needs no ledger, in the order a sender is
//! told of faults — JSON with limits, the envelope schema, whether the sender may send the
//! type at all, the payload schema, the typed envelope, `source` — then the policy's route
//! (given the original an answer names, which the caller reads from the ledger) and the
//! answer's type. The broker's pipeline runs exactly these functions, and so do the fuzz
//! targets: there is one admission path, not a copy of it.

use liaison_core::{AgencyCode, Envelope, OriginalMessage, Policy, PolicyError, RejectCode, Route};
use serde_json::Value;

use crate::{Catalogue, ParseLimits, Violation, parse};

/// A submission that passed every check that needs no ledger.
#[derive(Clone, Debug)]
pub struct Admitted {
    /// The whole CloudEvent.
    pub event: Value,
    pub envelope: Envelope,
}

/// Why a submission was refused: its stable code, a readable detail, the schema's
/// violations, and the envelope when one could be read (the refusal's record keeps what it
/// says about itself).
#[derive(Clone, Debug)]
pub struct Refused {
    pub code: RejectCode,
    pub detail: String,
    pub violations: Vec<Violation>,
    pub envelope: Option<Envelope>,
}

impl Refused {
    fn new(code: RejectCode, detail: impl Into<String>, envelope: Option<Envelope>) -> Self {
        Self {
            code,
            detail: detail.into(),
            violations: Vec::new(),
            envelope,
        }
    }
}

/// The checks, over one catalogue and policy.
pub struct Admission<'a> {
    pub catalogue: &'a Catalogue,
    pub policy: &'a Policy,
    pub limits: ParseLimits,
}

impl Admission<'_> {
    /// JSON, schemas, the typed envelope and `source`, for `bytes` sent by `sender`.
    pub fn admit(&self, sender: &AgencyCode, bytes: &[u8]) -> Result<Admitted, Box<Refused>> {
        let event = parse(bytes, &self.limits)
            .map_err(|e| Box::new(Refused::new(e.code(), e.to_string(), None)))?;
        let partial = Envelope::from_value(&event).ok();
        let validated = self.catalogue.validate(&event);
        let envelope_valid = match &validated {
            Ok(()) => true,
            Err(invalid) => invalid.code == RejectCode::PayloadInvalid,
        };
        // A sender that may not send this type at all learns that before the payload's
        // faults: fixing them would not help. Envelope faults come first all the same (the
        // type itself may be what is wrong).
        if envelope_valid
            && let Some(type_) = event.get("type").and_then(Value::as_str)
            && !self.policy.may_send(sender, type_)
        {
            let detail = PolicyError::TypeNotAllowed {
                sender: sender.clone(),
                type_: type_.to_owned(),
            }
            .to_string();
            return Err(Box::new(Refused::new(
                RejectCode::TypeNotAllowed,
                detail,
                partial,
            )));
        }
        if let Err(invalid) = validated {
            let detail = match invalid.violations.len() {
                1 => "1 error; see `errors`".to_owned(),
                n => format!("{n} errors; see `errors`"),
            };
            let mut refused = Refused::new(invalid.code, detail, partial);
            refused.violations = invalid.violations;
            return Err(Box::new(refused));
        }
        let envelope = Envelope::from_value(&event).map_err(|e| {
            let mut refused = Refused::new(RejectCode::EnvelopeInvalid, e.to_string(), None);
            refused.violations = vec![Violation {
                pointer: e.pointer(),
                keyword: "format".into(),
                message: e.to_string(),
            }];
            Box::new(refused)
        })?;
        if envelope.source_agency().as_ref() != Some(sender) {
            let detail = format!(
                "source is {:?} but the client certificate is {}'s ({})",
                envelope.source,
                sender,
                sender.urn()
            );
            return Err(Box::new(Refused::new(
                RejectCode::SourceMismatch,
                detail,
                Some(envelope),
            )));
        }
        Ok(Admitted { event, envelope })
    }

    /// The policy's route of an admitted message, given the original it answers (`None`
    /// for a message that answers nothing, or whose original the ledger does not hold),
    /// and the check that its type answers the original's. The type is checked after the
    /// policy found the sender a party of the original, so that a stranger learns nothing
    /// of the original's type.
    pub fn route(
        &self,
        sender: &AgencyCode,
        admitted: &Admitted,
        original: Option<&OriginalMessage>,
    ) -> Result<Route, Box<Refused>> {
        let envelope = &admitted.envelope;
        let refused =
            |code, detail: String| Box::new(Refused::new(code, detail, Some(envelope.clone())));
        let route = self
            .policy
            .route_event(sender, envelope, Some(&admitted.event), original)
            .map_err(|e| refused(e.code(), e.to_string()))?;
        if let Some(original) = original {
            self.catalogue
                .check_answer(&envelope.type_, &original.type_)
                .map_err(|detail| refused(RejectCode::AnswerTypeMismatch, detail))?;
        }
        Ok(route)
    }
}
