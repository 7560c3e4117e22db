//! The fuzz target over envelope parsing and validation: every check the broker runs on a
//! body before it touches the ledger (parse with limits, envelope and payload schemas,
//! the typed envelope, authorization and routing by the policy), on arbitrary bytes.
//!
//! `fuzz/` runs it under libFuzzer (`cargo +nightly fuzz run envelope`), and the stable
//! harness `cargo run --release -p liaison-schema --example fuzz_envelope -- --seconds N`
//! runs it over mutated catalogue examples. Both fail on a panic or on a broken
//! invariant checked here.

use std::path::Path;

use liaison_core::{AgencyCode, Envelope, Policy, Registry, RejectCode};

use crate::{Catalogue, ParseLimits, parse};

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

    /// Runs every pre-ledger check on `bytes` as sent by `sender`, and checks the
    /// invariants the gateway relies on. Panics when one breaks.
    pub fn check(&self, sender: &AgencyCode, bytes: &[u8]) -> Verdict {
        let event = match parse(bytes, &self.limits) {
            Ok(event) => event,
            Err(error) => {
                let code = error.code();
                assert_eq!(code.http_status(), 400, "{error}");
                if std::str::from_utf8(bytes).is_ok() {
                    assert_ne!(code, RejectCode::InvalidUtf8, "valid UTF-8 refused");
                }
                return Verdict::Refused(code);
            }
        };
        assert!(
            std::str::from_utf8(bytes).is_ok(),
            "invalid UTF-8 was parsed"
        );
        if let Err(invalid) = self.catalogue.validate(&event) {
            assert!(
                !invalid.violations.is_empty(),
                "a refusal without a violation"
            );
            for violation in &invalid.violations {
                assert!(
                    violation.pointer.is_empty() || violation.pointer.starts_with('/'),
                    "not a JSON pointer: {:?}",
                    violation.pointer
                );
            }
            assert_eq!(invalid.code.http_status(), 422, "{:?}", invalid.code);
            return Verdict::Refused(invalid.code);
        }
        let envelope = match Envelope::from_value(&event) {
            Ok(envelope) => envelope,
            // The pipeline answers this as envelope_invalid with the pointer.
            Err(_) => return Verdict::Refused(RejectCode::EnvelopeInvalid),
        };
        if envelope.source_agency().as_ref() != Some(sender) {
            return Verdict::Refused(RejectCode::SourceMismatch);
        }
        // Replies need the ledger's original; without it the policy must refuse, not panic.
        match self
            .policy
            .route_event(sender, &envelope, Some(&event), None)
        {
            Ok(route) => {
                assert!(
                    !route.recipients.is_empty(),
                    "a route without recipients for {}",
                    envelope.type_
                );
                Verdict::Routable
            }
            Err(error) => Verdict::Refused(error.code()),
        }
    }
}
