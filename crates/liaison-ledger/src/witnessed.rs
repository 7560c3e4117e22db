//! Checking witnesses' cosignatures of a ledger's checkpoints, in the database or in an
//! export: each cosignature by a witness the auditor names must verify, with that
//! witness's key, over the checkpoint of its size. Cosignatures by other keys are left
//! alone (the signed-note rule); a cosignature of a size with no checkpoint, or one that
//! does not verify, is a finding.

use std::collections::BTreeMap;

use liaison_core::cosignature::{CosignatureVerifier, with_signature_line};

use crate::StoredCosignature;
use crate::verify::CheckpointRecord;

/// What the cosignatures of the named witnesses showed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WitnessReport {
    /// Per witness name: how many of its cosignatures verified, and the largest tree size
    /// it cosigned (0: none).
    pub witnesses: BTreeMap<String, (u64, u64)>,
    pub findings: Vec<String>,
}

impl WitnessReport {
    pub fn is_ok(&self) -> bool {
        self.findings.is_empty()
    }
}

/// Checks `cosignatures` against `checkpoints` with the keys of `witnesses`.
pub fn check_cosignatures(
    checkpoints: &[CheckpointRecord],
    cosignatures: &[StoredCosignature],
    witnesses: &[CosignatureVerifier],
) -> WitnessReport {
    let notes: BTreeMap<u64, &str> = checkpoints
        .iter()
        .map(|c| (c.tree_size, c.note.as_str()))
        .collect();
    let mut report = WitnessReport {
        witnesses: witnesses
            .iter()
            .map(|w| (w.name().to_owned(), (0, 0)))
            .collect(),
        findings: Vec::new(),
    };
    for cosignature in cosignatures {
        let Some(witness) = witnesses.iter().find(|w| w.name() == cosignature.witness) else {
            continue;
        };
        let Some(note) = notes.get(&cosignature.tree_size) else {
            report.findings.push(format!(
                "witness {} cosigned tree size {}, which has no checkpoint",
                cosignature.witness, cosignature.tree_size
            ));
            continue;
        };
        match witness.verify(&with_signature_line(note, &cosignature.line)) {
            Ok(_) => {
                let counts = report
                    .witnesses
                    .entry(cosignature.witness.clone())
                    .or_default();
                counts.0 += 1;
                counts.1 = counts.1.max(cosignature.tree_size);
            }
            Err(error) => report.findings.push(format!(
                "witness {}'s cosignature of checkpoint {} does not verify: {error}",
                cosignature.witness, cosignature.tree_size
            )),
        }
    }
    report
}

#[cfg(test)]
mod tests {
    use super::*;
    use liaison_core::checkpoint::CheckpointSigner;
    use liaison_core::cosignature::Cosigner;
    use ring::rand::SystemRandom;
    use ring::signature::Ed25519KeyPair;
    use time::macros::datetime;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn cosignatures_verify_over_their_checkpoints_and_strangers_are_left_alone() {
        let log = CheckpointSigner::new("liaison.example/test", key()).unwrap();
        let checkpoints: Vec<CheckpointRecord> = [3, 5]
            .into_iter()
            .map(|size| CheckpointRecord {
                tree_size: size,
                note: log.sign(size, [size as u8; 32], datetime!(2026-12-01 08:00 UTC)),
            })
            .collect();
        let witness = Cosigner::new("audit.example/w1", key()).unwrap();
        let stranger = Cosigner::new("elsewhere.example/w9", key()).unwrap();
        let at = datetime!(2026-12-01 08:01 UTC);
        let cosign = |who: &Cosigner, size: u64, over: usize| StoredCosignature {
            tree_size: size,
            witness: who.name().to_owned(),
            line: who.cosign(&checkpoints[over].note, at).unwrap(),
            cosigned_at: at,
        };
        let verifier = CosignatureVerifier::from_verifier_key(&witness.verifier_key()).unwrap();

        let good = [
            cosign(&witness, 3, 0),
            cosign(&witness, 5, 1),
            cosign(&stranger, 5, 1),
        ];
        let report = check_cosignatures(&checkpoints, &good, std::slice::from_ref(&verifier));
        assert!(report.is_ok(), "{report:?}");
        assert_eq!(report.witnesses["audit.example/w1"], (2, 5));

        // A line moved to another checkpoint, or to a size with none, is a finding.
        let moved = [cosign(&witness, 5, 0), cosign(&witness, 4, 0)];
        let report = check_cosignatures(&checkpoints, &moved, &[verifier]);
        assert_eq!(report.findings.len(), 2, "{report:?}");
        assert!(report.findings[0].contains("does not verify"));
        assert!(report.findings[1].contains("no checkpoint"));
    }
}
