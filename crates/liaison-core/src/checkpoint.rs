//! Signed checkpoints: the ledger's tree head in the C2SP `tlog-checkpoint` text format,
//! signed as a C2SP `signed-note` with Ed25519.
//!
//! ```text
//! liaison.example/demo                         origin (also the signing key's name)
//! 1042                                         tree size, decimal
//! 4mWm8J1s0n9N0S1g6Yx1Sx2gkYq3l0eFhX3gY0n3Z1Y= root hash, standard base64
//! time 2026-11-26T08:00:01.25Z                 extension line: when it was signed (RFC 3339, UTC)
//!                                              blank line ends the signed text
//! — liaison.example/demo AbCdEf…               key id (4 bytes) ‖ Ed25519 signature, base64
//! ```
//!
//! The signature covers the text above the blank line, final newline included. The key id
//! is the first four bytes of SHA-256(key name ‖ "\n" ‖ 0x01 ‖ public key), 0x01 being the
//! signed-note algorithm byte of Ed25519. Extension lines are allowed by C2SP; `time` is
//! liaison's only one.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::{Hash, sha256};

/// The signed-note signature algorithm byte of Ed25519.
const ED25519_ALGORITHM: u8 = 0x01;
/// Signature lines start with an em dash and a space.
pub(crate) const SIGNATURE_PREFIX: &str = "\u{2014} ";
const TIME_EXTENSION: &str = "time ";

/// A tree head: what a checkpoint asserts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    pub origin: String,
    pub size: u64,
    pub root: Hash,
    pub time: OffsetDateTime,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed checkpoint: {0}")]
    Malformed(String),
    #[error("checkpoint origin is {found:?}, expected {expected:?}")]
    Origin { expected: String, found: String },
    #[error("checkpoint carries no signature by the key {0:?}")]
    NoSignature(String),
    #[error("checkpoint signature by {0:?} does not verify")]
    BadSignature(String),
    #[error("invalid key name {0:?}: it must be non-empty, with no spaces, plus signs or newlines")]
    KeyName(String),
}

impl Checkpoint {
    /// The signed text: origin, size, root, extension lines, each ending in a newline.
    pub fn body(&self) -> String {
        // Entry times are UTC; formatting a UTC time as RFC 3339 cannot fail.
        let time = self
            .time
            .to_offset(time::UtcOffset::UTC)
            .format(&Rfc3339)
            .unwrap_or_default();
        format!(
            "{}\n{}\n{}\n{TIME_EXTENSION}{time}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        )
    }

    /// Reads the signed text of a note without checking any signature.
    pub fn parse_unverified(note: &str) -> Result<Checkpoint, CheckpointError> {
        let (body, _) = split_note(note)?;
        parse_body(body)
    }
}

fn malformed(what: impl Into<String>) -> CheckpointError {
    CheckpointError::Malformed(what.into())
}

/// Splits a note into its signed text (with its final newline) and its signature lines.
pub(crate) fn split_note(note: &str) -> Result<(&str, Vec<&str>), CheckpointError> {
    let at = note
        .find("\n\n")
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let (body, rest) = note.split_at(at + 1);
    let signatures = rest[1..].lines().filter(|l| !l.is_empty()).collect();
    Ok((body, signatures))
}

fn parse_body(body: &str) -> Result<Checkpoint, CheckpointError> {
    let mut lines = body.lines();
    let origin = lines
        .next()
        .filter(|l| !l.is_empty())
        .ok_or_else(|| malformed("no origin line"))?;
    let size = lines
        .next()
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or_else(|| malformed("the second line is not a tree size"))?;
    let root = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
        .ok_or_else(|| malformed("the third line is not a base64 SHA-256 root hash"))?;
    let time = lines
        .find_map(|l| l.strip_prefix(TIME_EXTENSION))
        .ok_or_else(|| malformed("no `time` extension line"))?;
    let time = OffsetDateTime::parse(time, &Rfc3339)
        .map_err(|e| malformed(format!("time {time:?}: {e}")))?;
    Ok(Checkpoint {
        origin: origin.to_owned(),
        size,
        root,
        time,
    })
}

pub(crate) fn check_key_name(name: &str) -> Result<(), CheckpointError> {
    let bad = name.is_empty() || name.contains(|c: char| c == '+' || c.is_whitespace());
    if bad {
        Err(CheckpointError::KeyName(name.to_owned()))
    } else {
        Ok(())
    }
}

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 2 + public_key.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(ED25519_ALGORITHM);
    input.extend_from_slice(public_key);
    let hash = sha256(&input);
    [hash[0], hash[1], hash[2], hash[3]]
}

/// Signs checkpoints with the ledger key. The key name is the origin.
pub struct CheckpointSigner {
    name: String,
    key: Ed25519KeyPair,
    key_id: [u8; 4],
}

impl CheckpointSigner {
    pub fn new(name: impl Into<String>, key: Ed25519KeyPair) -> Result<Self, CheckpointError> {
        let name = name.into();
        check_key_name(&name)?;
        let key_id = key_id(&name, key.public_key().as_ref());
        Ok(Self { name, key, key_id })
    }

    pub fn origin(&self) -> &str {
        &self.name
    }

    pub fn public_key(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.key.public_key().as_ref());
        out
    }

    /// The checkpoint of `size` leaves with `root`, signed now: the complete note text.
    pub fn sign(&self, size: u64, root: Hash, time: OffsetDateTime) -> String {
        let checkpoint = Checkpoint {
            origin: self.name.clone(),
            size,
            root,
            time,
        };
        let body = checkpoint.body();
        let signature = self.key.sign(body.as_bytes());
        let mut blob = self.key_id.to_vec();
        blob.extend_from_slice(signature.as_ref());
        format!(
            "{body}\n{SIGNATURE_PREFIX}{} {}\n",
            self.name,
            STANDARD.encode(blob)
        )
    }
}

/// Checks checkpoint notes against the ledger's public key.
#[derive(Clone, Debug)]
pub struct CheckpointVerifier {
    name: String,
    public_key: [u8; 32],
    key_id: [u8; 4],
}

impl CheckpointVerifier {
    pub fn new(name: impl Into<String>, public_key: [u8; 32]) -> Result<Self, CheckpointError> {
        let name = name.into();
        check_key_name(&name)?;
        let key_id = key_id(&name, &public_key);
        Ok(Self {
            name,
            public_key,
            key_id,
        })
    }

    pub fn origin(&self) -> &str {
        &self.name
    }

    /// The checkpoint a note asserts, once its signature by this key verifies and its origin
    /// is this key's name. Signature lines of other keys are ignored, as C2SP prescribes.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let (body, signatures) = split_note(note)?;
        let mut ours = false;
        for line in signatures {
            let Some(rest) = line.strip_prefix(SIGNATURE_PREFIX) else {
                return Err(malformed(format!("{line:?} is not a signature line")));
            };
            let Some((name, blob)) = rest.split_once(' ') else {
                return Err(malformed(format!("{line:?} is not a signature line")));
            };
            if name != self.name {
                continue;
            }
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| malformed("a signature is not base64"))?;
            if blob.len() != 4 + 64 || blob[..4] != self.key_id {
                continue;
            }
            ours = true;
            UnparsedPublicKey::new(&ED25519, &self.public_key)
                .verify(body.as_bytes(), &blob[4..])
                .map_err(|_| CheckpointError::BadSignature(self.name.clone()))?;
        }
        if !ours {
            return Err(CheckpointError::NoSignature(self.name.clone()));
        }
        let checkpoint = parse_body(body)?;
        if checkpoint.origin != self.name {
            return Err(CheckpointError::Origin {
                expected: self.name.clone(),
                found: checkpoint.origin,
            });
        }
        Ok(checkpoint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    fn key() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn at() -> OffsetDateTime {
        time::macros::datetime!(2026-11-26 08:00:01.25 UTC)
    }

    #[test]
    fn signed_note_has_the_c2sp_shape_and_verifies() {
        let signer = CheckpointSigner::new("liaison.example/demo", key()).unwrap();
        let note = signer.sign(1042, [7; 32], at());
        let lines: Vec<&str> = note.lines().collect();
        assert_eq!(lines[0], "liaison.example/demo");
        assert_eq!(lines[1], "1042");
        assert_eq!(lines[2], STANDARD.encode([7u8; 32]));
        assert_eq!(lines[3], "time 2026-11-26T08:00:01.25Z");
        assert_eq!(lines[4], "");
        assert!(lines[5].starts_with("\u{2014} liaison.example/demo "));
        assert!(note.ends_with('\n'));

        let verifier =
            CheckpointVerifier::new("liaison.example/demo", signer.public_key()).unwrap();
        let checkpoint = verifier.open(&note).unwrap();
        assert_eq!(checkpoint.size, 1042);
        assert_eq!(checkpoint.root, [7; 32]);
        assert_eq!(checkpoint.time, at());
        assert_eq!(Checkpoint::parse_unverified(&note).unwrap(), checkpoint);
    }

    #[test]
    fn the_key_id_follows_the_signed_note_rule() {
        // SHA-256("n" ‖ "\n" ‖ 0x01 ‖ 32 zero bytes), first four bytes.
        let mut input = b"n\n\x01".to_vec();
        input.extend_from_slice(&[0u8; 32]);
        assert_eq!(key_id("n", &[0u8; 32])[..], sha256(&input)[..4]);
    }

    #[test]
    fn altered_forged_or_foreign_checkpoints_are_refused() {
        let signer = CheckpointSigner::new("liaison.example/demo", key()).unwrap();
        let verifier =
            CheckpointVerifier::new("liaison.example/demo", signer.public_key()).unwrap();
        let note = signer.sign(10, [1; 32], at());

        let altered = note.replacen("\n10\n", "\n11\n", 1);
        assert_eq!(
            verifier.open(&altered),
            Err(CheckpointError::BadSignature("liaison.example/demo".into()))
        );
        // Same name, another key: its key id differs, so no signature of ours is found.
        let forger = CheckpointSigner::new("liaison.example/demo", key()).unwrap();
        let forged = forger.sign(10, [1; 32], at());
        assert!(matches!(
            verifier.open(&forged),
            Err(CheckpointError::NoSignature(_))
        ));
        // Our key id with a forged signature.
        let sig_line = note.lines().last().unwrap();
        let blob = STANDARD
            .decode(sig_line.rsplit_once(' ').unwrap().1)
            .unwrap();
        let mut bad = blob.clone();
        bad[10] ^= 1;
        let forged = note.replace(&STANDARD.encode(&blob), &STANDARD.encode(&bad));
        assert!(matches!(
            verifier.open(&forged),
            Err(CheckpointError::BadSignature(_))
        ));
        assert!(verifier.open("no blank line").is_err());
        assert!(CheckpointSigner::new("with space", key()).is_err());
    }
}
