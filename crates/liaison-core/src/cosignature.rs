//! Witness cosignatures of checkpoints: C2SP `tlog-cosignature`, Ed25519 (`cosignature/v1`).
//!
//! A witness keeps the last checkpoint it saw of a log, checks that each new one is
//! consistent with it, and only then cosigns it: a signature line added to the checkpoint
//! note, over
//!
//! ```text
//! cosignature/v1
//! time <POSIX seconds>
//! <the checkpoint's signed text, final newline included>
//! ```
//!
//! The line is `— <witness name> base64(key id ‖ timestamp (8 bytes, big-endian) ‖
//! signature)`, the key id being the first four bytes of SHA-256(name ‖ "\n" ‖ 0x04 ‖
//! public key). A log that showed two witnesses different histories cannot get both to
//! cosign checkpoints of one origin that disagree: each would have refused the other's
//! view, or a verifier holding both cosigned checkpoints sees two roots for one size.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use time::OffsetDateTime;

use crate::checkpoint::{
    CheckpointError, NoteKey, SIGNATURE_PREFIX, check_key_name, format_vkey, key_id_of, split_note,
};

/// The key id algorithm byte of Ed25519 cosignatures.
const COSIGNATURE_ALGORITHM: u8 = 0x04;
const HEADER: &str = "cosignature/v1\n";

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    key_id_of(name, COSIGNATURE_ALGORITHM, public_key)
}

/// The message a cosignature signs: the header, the time, the checkpoint's signed text.
fn signed_message(body: &str, timestamp: u64) -> String {
    format!("{HEADER}time {timestamp}\n{body}")
}

/// A witness's signing key.
pub struct Cosigner {
    name: String,
    key: Ed25519KeyPair,
    key_id: [u8; 4],
}

impl Cosigner {
    pub fn new(name: impl Into<String>, key: Ed25519KeyPair) -> Result<Self, CheckpointError> {
        let name = name.into();
        check_key_name(&name)?;
        let key_id = key_id(&name, key.public_key().as_ref());
        Ok(Self { name, key, key_id })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// The verifier key, in the signed-note form `name+keyid+base64(0x04 ‖ public key)`,
    /// to hand to whoever checks this witness's cosignatures.
    pub fn verifier_key(&self) -> String {
        let public_key: [u8; 32] = self
            .key
            .public_key()
            .as_ref()
            .try_into()
            .expect("an Ed25519 public key is 32 bytes");
        format_vkey(&self.name, COSIGNATURE_ALGORITHM, &public_key)
    }

    /// The signature line cosigning checkpoint `note` at `time` (whole seconds).
    pub fn cosign(&self, note: &str, time: OffsetDateTime) -> Result<String, CheckpointError> {
        let (body, _) = split_note(note)?;
        let timestamp = u64::try_from(time.unix_timestamp())
            .map_err(|_| CheckpointError::Malformed("a time before 1970".into()))?;
        let signature = self.key.sign(signed_message(body, timestamp).as_bytes());
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(&timestamp.to_be_bytes());
        blob.extend_from_slice(signature.as_ref());
        Ok(format!(
            "{SIGNATURE_PREFIX}{} {}",
            self.name,
            STANDARD.encode(blob)
        ))
    }
}

/// Checks one witness's cosignatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CosignatureVerifier {
    key: NoteKey,
}

impl CosignatureVerifier {
    pub fn new(name: impl Into<String>, public_key: [u8; 32]) -> Result<Self, CheckpointError> {
        NoteKey::new(name.into(), public_key, COSIGNATURE_ALGORITHM).map(|key| Self { key })
    }

    /// Reads a verifier key `name+keyid+base64(0x04 ‖ public key)`, checking its key id.
    pub fn from_verifier_key(vkey: &str) -> Result<Self, CheckpointError> {
        NoteKey::from_vkey(vkey, COSIGNATURE_ALGORITHM).map(|key| Self { key })
    }

    pub fn name(&self) -> &str {
        &self.key.name
    }

    /// This witness's cosignature in `note` (a checkpoint with its signature lines, or a
    /// checkpoint and one more `line`): the time it was made. Lines of other keys are
    /// ignored, as signed-note verifiers must.
    pub fn verify(&self, note: &str) -> Result<OffsetDateTime, CheckpointError> {
        let (body, signatures) = split_note(note)?;
        for line in signatures {
            let Some((name, blob)) = line
                .strip_prefix(SIGNATURE_PREFIX)
                .and_then(|rest| rest.split_once(' '))
            else {
                continue;
            };
            let Ok(blob) = STANDARD.decode(blob) else {
                continue;
            };
            if name != self.key.name || blob.len() != 4 + 8 + 64 || blob[..4] != self.key.key_id {
                continue;
            }
            let timestamp = u64::from_be_bytes(blob[4..12].try_into().expect("8 bytes"));
            UnparsedPublicKey::new(&ED25519, &self.key.public_key)
                .verify(signed_message(body, timestamp).as_bytes(), &blob[12..])
                .map_err(|_| CheckpointError::BadSignature(self.key.name.clone()))?;
            return i64::try_from(timestamp)
                .ok()
                .and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok())
                .ok_or_else(|| {
                    CheckpointError::Malformed("a cosignature time out of range".into())
                });
        }
        Err(CheckpointError::NoSignature(self.key.name.clone()))
    }
}

/// `note` with `line` added to its signature lines.
pub fn with_signature_line(note: &str, line: &str) -> String {
    let mut out = note.trim_end_matches('\n').to_owned();
    out.push('\n');
    out.push_str(line.trim_end());
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::checkpoint::{CheckpointSigner, CheckpointVerifier};
    use ring::rand::SystemRandom;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    #[test]
    fn a_cosignature_verifies_and_leaves_the_log_signature_intact() {
        let log = CheckpointSigner::new("liaison.example/test", key()).unwrap();
        let note = log.sign(7, [9; 32], time::macros::datetime!(2026-12-01 08:00 UTC));
        let witness = Cosigner::new("audit.example/w1", key()).unwrap();
        let at = time::macros::datetime!(2026-12-01 08:05 UTC);
        let line = witness.cosign(&note, at).unwrap();
        assert!(line.starts_with("— audit.example/w1 "), "{line}");
        let cosigned = with_signature_line(&note, &line);

        let verifier = CosignatureVerifier::from_verifier_key(&witness.verifier_key()).unwrap();
        assert_eq!(verifier.verify(&cosigned), Ok(at));
        // The log's own verifier ignores the witness's line.
        let log_verifier = CheckpointVerifier::new(log.origin(), log.public_key()).unwrap();
        assert_eq!(log_verifier.open(&cosigned).unwrap().size, 7);

        // Another checkpoint's body does not carry this cosignature.
        let other = log.sign(8, [9; 32], time::macros::datetime!(2026-12-01 08:00 UTC));
        let moved = with_signature_line(&other, &line);
        assert_eq!(
            verifier.verify(&moved),
            Err(CheckpointError::BadSignature("audit.example/w1".into()))
        );
        // Another witness's key finds no cosignature of its own.
        let stranger = Cosigner::new("audit.example/w2", key()).unwrap();
        let stranger = CosignatureVerifier::from_verifier_key(&stranger.verifier_key()).unwrap();
        assert!(matches!(
            stranger.verify(&cosigned),
            Err(CheckpointError::NoSignature(_))
        ));
    }

    #[test]
    fn the_signed_message_is_the_c2sp_one() {
        // cosignature/v1, the time line, then the checkpoint's signed text.
        assert_eq!(
            signed_message("o\n1\nAAAA\n", 1679315147),
            "cosignature/v1\ntime 1679315147\no\n1\nAAAA\n"
        );
        let bad = ["w1+00000000", "w1+00+AQ==", "w1+00000000+BA=="];
        for vkey in bad {
            assert!(
                CosignatureVerifier::from_verifier_key(vkey).is_err(),
                "{vkey}"
            );
        }
    }
}
