//! The fuzz target over envelope parsing and validation: every check the broker runs on a
//! body before it touches the ledger (parse with limits, envelope and payload schemas,
//! the typed envelope, authorization and routing by the policy), on arbitrary bytes.
//!
//! `fuzz/` runs it under libFuzzer (`cargo +nightly fuzz run envelope`), and the stable
//! harness `cargo run --release -p liaison-schema --example fuzz_envelope -- --seconds N`
//! runs it over mutated catalogue examples. Both fail on a panic or on a broken
//! invariant checked here.

use std::path::Path;

use liaison_core::{AgencyCode, Policy, Registry, RejectCode};

use crate::{Admission, Catalogue, ParseLimits, Refused};

/// What the checks said about one input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Every check passed: the broker would record the message.
    Routable,
    /// Refused with this code, as the broker would answer.
    Refused(RejectCode),
}

/// The catalogue, registry and policy the checks run against, loaded once.
pub struct FuzzTarget {
    catalogue: Catalogue,
    policy: Policy,
    senders: Vec<AgencyCode>,
    limits: ParseLimits,
}

impl FuzzTarget {
    /// Loads the repository's catalogue and the demo county's registry and policy.
    pub fn load(repo_root: &Path) -> Result<FuzzTarget, String> {
        let catalogue = Catalogue::load(&repo_root.join("schemas")).map_err(|e| e.to_string())?;
        let registry = Registry::load(&repo_root.join("deploy/demo/agencies.toml"))
            .map_err(|e| e.to_string())?;
        let policy = Policy::load(&repo_root.join("deploy/demo/policy.toml"), &registry)
            .map_err(|e| e.to_string())?;
        Ok(FuzzTarget {
            catalogue,
            policy,
            senders: registry.codes().cloned().collect(),
            limits: ParseLimits::default(),
        })
    }

    /// The agencies of the registry; the fuzzer picks the sender among them.
    pub fn senders(&self) -> &[AgencyCode] {
        &self.senders
    }

    /// Runs every pre-ledger check on `bytes` as sent by `sender` — the broker's own
    /// [`Admission`], not a copy of it — and checks the invariants the gateway relies on.
    /// Panics when one breaks.
    pub fn check(&self, sender: &AgencyCode, bytes: &[u8]) -> Verdict {
        let admission = Admission {
            catalogue: &self.catalogue,
            policy: &self.policy,
            limits: self.limits,
        };
        let admitted = match admission.admit(sender, bytes) {
            Ok(admitted) => admitted,
            Err(refused) => return Verdict::Refused(check_refusal(&refused, bytes)),
        };
        assert!(
            std::str::from_utf8(bytes).is_ok(),
            "invalid UTF-8 was admitted"
        );
        // Answers need the ledger's original; without it the policy must refuse, not panic.
        match admission.route(sender, &admitted, None) {
            Ok(route) => {
                assert!(
                    !route.recipients.is_empty(),
                    "a route without recipients for {}",
                    admitted.envelope.type_
                );
                Verdict::Routable
            }
            Err(refused) => Verdict::Refused(check_refusal(&refused, bytes)),
        }
    }
}

/// The invariants of a refusal: the status its code goes with, JSON pointers in its
/// violations, never `invalid_utf8` for valid UTF-8. Returns its code.
fn check_refusal(refused: &Refused, bytes: &[u8]) -> RejectCode {
    let code = refused.code;
    if std::str::from_utf8(bytes).is_ok() {
        assert_ne!(code, RejectCode::InvalidUtf8, "valid UTF-8 refused");
    }
    match code {
        RejectCode::InvalidUtf8 | RejectCode::MalformedJson | RejectCode::TooDeep => {
            assert_eq!(code.http_status(), 400, "{}", refused.detail);
        }
        RejectCode::EnvelopeInvalid | RejectCode::UnknownType | RejectCode::PayloadInvalid => {
            assert!(
                !refused.violations.is_empty(),
                "a refusal without a violation"
            );
            assert_eq!(code.http_status(), 422, "{code:?}");
        }
        _ => {}
    }
    for violation in &refused.violations {
        assert!(
            violation.pointer.is_empty() || violation.pointer.starts_with('/'),
            "not a JSON pointer: {:?}",
            violation.pointer
        );
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> FuzzTarget {
        FuzzTarget::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")).unwrap()
    }

    /// The first valid example lead of the catalogue, by file name.
    fn first_valid_lead() -> serde_json::Value {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../schemas/pil.lead.v1/valid");
        let first = std::fs::read_dir(&dir)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .min()
            .unwrap();
        serde_json::from_slice(&std::fs::read(first).unwrap()).unwrap()
    }

    #[test]
    fn a_valid_lead_is_routable() {
        let target = target();
        let lead = first_valid_lead();
        let sender = AgencyCode::new(
            lead["source"]
                .as_str()
                .unwrap()
                .trim_start_matches("urn:liaison:agency:"),
        )
        .unwrap();
        let bytes = serde_json::to_vec(&lead).unwrap();
        assert_eq!(target.check(&sender, &bytes), Verdict::Routable);
    }

    /// Found by the fuzzer: the procuratorate sending a lead to itself was routable with
    /// no recipient at all, so it would have been accepted and delivered nowhere.
    #[test]
    fn a_message_to_nobody_but_its_sender_is_refused() {
        let target = target();
        let mut lead = first_valid_lead();
        lead["source"] = serde_json::json!("urn:liaison:agency:procuratorate");
        // `recipients` narrows the route to the sender itself, which is never a recipient.
        // (A misconduct lead would still reach discipline inspection, its mandatory addressee.)
        lead["data"]["official_misconduct"] = serde_json::json!(false);
        lead["recipients"] = serde_json::json!(["procuratorate"]);
        let bytes = serde_json::to_vec(&lead).unwrap();
        let verdict = target.check(&AgencyCode::new("procuratorate").unwrap(), &bytes);
        assert_eq!(verdict, Verdict::Refused(RejectCode::RecipientsNotAllowed));
    }
}
