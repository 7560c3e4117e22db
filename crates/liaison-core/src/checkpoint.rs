//! Signed checkpoints: the ledger's tree head in the C2SP `tlog-checkpoint` text format,
//! signed as a C2SP `signed-note` with Ed25519. `docs/audit.md` is the normative
//! description, with test vectors in `docs/vectors/checkpoint.json`.
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
//! signed-note algorithm byte of Ed25519. Extension lines are allowed by C2SP (which does
//! not recommend them: log monitors cannot audit them); `time` is liaison's only one, and
//! it is informational: a checkpoint without it, or with other extension lines, still
//! opens. Signature lines by other keys (a cosigner, a witness) are ignored, as C2SP
//! requires.
//!
//! The verifier key an auditor holds is C2SP's text form, `name+keyid+base64(0x01 ‖
//! public key)` ([`CheckpointVerifier::vkey`]); `liaison pki init` writes it beside the
//! signing key and every export carries it.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::audit::{Hash, sha256};

/// The origin of the demo county's checkpoints, the default of `[ledger] origin`: every
/// deployment that keeps it shares it, so the broker accepts it only in a demo.
pub const DEMO_ORIGIN: &str = "liaison.example/demo";

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
    /// The `time` extension line: when liaison signed it. Every checkpoint liaison signs
    /// has one; a checkpoint without it still opens.
    pub time: Option<OffsetDateTime>,
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
    #[error("not a C2SP Ed25519 verifier key (name+keyid+base64): {0}")]
    VerifierKey(String),
}

impl Checkpoint {
    /// The signed text: origin, size, root, extension lines, each ending in a newline.
    pub fn body(&self) -> String {
        let mut text = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            STANDARD.encode(self.root)
        );
        if let Some(time) = self.time {
            // A UTC time formats as RFC 3339 unless its year is beyond 9999.
            let time = time
                .to_offset(time::UtcOffset::UTC)
                .format(&Rfc3339)
                .unwrap_or_default();
            text.push_str(&format!("{TIME_EXTENSION}{time}\n"));
        }
        text
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
/// As C2SP says, the last blank line separates them (a checkpoint's own lines are never
/// empty, so for a checkpoint it is also the first).
pub(crate) fn split_note(note: &str) -> Result<(&str, Vec<&str>), CheckpointError> {
    if note.chars().any(|c| c < ' ' && c != '\n') {
        return Err(malformed("a control character other than newline"));
    }
    let trimmed = note.strip_suffix('\n').unwrap_or(note);
    let at = trimmed
        .rfind("\n\n")
        .ok_or_else(|| malformed("no blank line before the signatures"))?;
    let (body, rest) = trimmed.split_at(at + 1);
    let signatures: Vec<&str> = rest[1..].split('\n').collect();
    if signatures.iter().any(|l| l.is_empty()) {
        return Err(malformed("an empty signature line"));
    }
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
        .filter(|l| *l == "0" || !l.starts_with('0'))
        .and_then(|l| l.parse::<u64>().ok())
        .ok_or_else(|| malformed("the second line is not a tree size"))?;
    let root = lines
        .next()
        .and_then(|l| STANDARD.decode(l).ok())
        .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
        .ok_or_else(|| malformed("the third line is not a base64 SHA-256 root hash"))?;
    // Extension lines are opaque to everyone but liaison, and liaison's own is advisory.
    let time = match lines.find_map(|l| l.strip_prefix(TIME_EXTENSION)) {
        Some(time) => Some(
            OffsetDateTime::parse(time, &Rfc3339)
                .map_err(|e| malformed(format!("time {time:?}: {e}")))?,
        ),
        None => None,
    };
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

/// The signed-note key id of a key of `algorithm`: SHA-256(name ‖ "\n" ‖ algorithm ‖
/// key)[:4]. Checkpoint keys are 0x01, cosignature keys 0x04.
pub(crate) fn key_id_of(name: &str, algorithm: u8, public_key: &[u8]) -> [u8; 4] {
    let mut input = Vec::with_capacity(name.len() + 2 + public_key.len());
    input.extend_from_slice(name.as_bytes());
    input.push(b'\n');
    input.push(algorithm);
    input.extend_from_slice(public_key);
    let hash = sha256(&input);
    [hash[0], hash[1], hash[2], hash[3]]
}

fn key_id(name: &str, public_key: &[u8]) -> [u8; 4] {
    key_id_of(name, ED25519_ALGORITHM, public_key)
}

/// A C2SP verifier key: `name+keyid+base64(algorithm ‖ public key)`, the key id in 8
/// lowercase hex digits.
pub(crate) fn format_vkey(name: &str, algorithm: u8, public_key: &[u8; 32]) -> String {
    let mut key = vec![algorithm];
    key.extend_from_slice(public_key);
    format!(
        "{name}+{}+{}",
        hex::encode(key_id_of(name, algorithm, public_key)),
        STANDARD.encode(key)
    )
}

/// Reads a C2SP verifier key of `algorithm` (surrounding whitespace ignored): its name and
/// public key, once the key id is the one the name and key give.
pub(crate) fn parse_vkey(text: &str, algorithm: u8) -> Result<(String, [u8; 32]), CheckpointError> {
    let bad = |why: String| CheckpointError::VerifierKey(why);
    let mut parts = text.trim().splitn(3, '+');
    let (Some(name), Some(id), Some(key)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("it needs three parts separated by +".into()));
    };
    let id = hex::decode(id)
        .ok()
        .filter(|_| id.len() == 8 && id == id.to_ascii_lowercase())
        .ok_or_else(|| bad("the key id is not 8 lowercase hex digits".into()))?;
    let key = STANDARD
        .decode(key)
        .map_err(|_| bad("the key is not standard base64".into()))?;
    let Some((_, public_key)) = key.split_first().filter(|(a, _)| **a == algorithm) else {
        return Err(bad(format!(
            "the key is not an Ed25519 key of type byte {algorithm:#04x}"
        )));
    };
    let public_key = <[u8; 32]>::try_from(public_key)
        .map_err(|_| bad("an Ed25519 public key is 32 bytes".into()))?;
    check_key_name(name)?;
    if key_id_of(name, algorithm, &public_key)[..] != id[..] {
        return Err(bad("the key id is not the one of this name and key".into()));
    }
    Ok((name.to_owned(), public_key))
}

/// The public side of a signed-note key: its name, Ed25519 public key and key id (for the
/// key's algorithm byte). Checkpoint and cosignature verifiers both hold one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NoteKey {
    pub name: String,
    pub public_key: [u8; 32],
    pub key_id: [u8; 4],
}

impl NoteKey {
    pub(crate) fn new(
        name: String,
        public_key: [u8; 32],
        algorithm: u8,
    ) -> Result<Self, CheckpointError> {
        check_key_name(&name)?;
        let key_id = key_id_of(&name, algorithm, &public_key);
        Ok(Self {
            name,
            public_key,
            key_id,
        })
    }

    /// Reads a C2SP verifier key of `algorithm`, checking its key id.
    pub(crate) fn from_vkey(text: &str, algorithm: u8) -> Result<Self, CheckpointError> {
        let (name, public_key) = parse_vkey(text, algorithm)?;
        Self::new(name, public_key, algorithm)
    }
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

    /// The verifier of this signer's checkpoints (its [`CheckpointVerifier::vkey`] is the
    /// text to publish).
    pub fn verifier(&self) -> CheckpointVerifier {
        CheckpointVerifier {
            key: NoteKey {
                name: self.name.clone(),
                public_key: self.public_key(),
                key_id: self.key_id,
            },
        }
    }

    /// The checkpoint of `size` leaves with `root`, signed now: the complete note text.
    pub fn sign(&self, size: u64, root: Hash, time: OffsetDateTime) -> String {
        let checkpoint = Checkpoint {
            origin: self.name.clone(),
            size,
            root,
            time: Some(time),
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
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointVerifier {
    key: NoteKey,
}

impl CheckpointVerifier {
    pub fn new(name: impl Into<String>, public_key: [u8; 32]) -> Result<Self, CheckpointError> {
        NoteKey::new(name.into(), public_key, ED25519_ALGORITHM).map(|key| Self { key })
    }

    /// Reads a C2SP verifier key, `name+keyid+base64(0x01 ‖ public key)` (surrounding
    /// whitespace ignored). The key id must be the one the name and key give.
    pub fn from_vkey(text: &str) -> Result<Self, CheckpointError> {
        NoteKey::from_vkey(text, ED25519_ALGORITHM).map(|key| Self { key })
    }

    /// The C2SP verifier key: `name+keyid+base64(0x01 ‖ public key)`, the key id in 8
    /// lowercase hex digits.
    pub fn vkey(&self) -> String {
        format_vkey(&self.key.name, ED25519_ALGORITHM, &self.key.public_key)
    }

    pub fn origin(&self) -> &str {
        &self.key.name
    }

    pub fn public_key(&self) -> [u8; 32] {
        self.key.public_key
    }

    pub fn key_id(&self) -> [u8; 4] {
        self.key.key_id
    }

    /// The signed text of a note (final newline included) once this key's signature on it
    /// verifies. As C2SP prescribes, signature lines by other keys — another name, or this
    /// name with another key id — are ignored, and a line by this key that does not verify
    /// refuses the note.
    pub fn verify_note<'a>(&self, note: &'a str) -> Result<&'a str, CheckpointError> {
        let (body, signatures) = split_note(note)?;
        let mut ours = false;
        for line in signatures {
            let Some((name, blob)) = line
                .strip_prefix(SIGNATURE_PREFIX)
                .and_then(|rest| rest.split_once(' '))
            else {
                return Err(malformed(format!("{line:?} is not a signature line")));
            };
            if name != self.key.name {
                continue;
            }
            let blob = STANDARD
                .decode(blob)
                .map_err(|_| malformed("a signature is not base64"))?;
            if blob.len() < 4 || blob[..4] != self.key.key_id {
                continue;
            }
            ours = true;
            UnparsedPublicKey::new(&ED25519, &self.key.public_key)
                .verify(body.as_bytes(), &blob[4..])
                .map_err(|_| CheckpointError::BadSignature(self.key.name.clone()))?;
        }
        if ours {
            Ok(body)
        } else {
            Err(CheckpointError::NoSignature(self.key.name.clone()))
        }
    }

    /// The checkpoint a note asserts, once its signature by this key verifies and its origin
    /// is this key's name.
    pub fn open(&self, note: &str) -> Result<Checkpoint, CheckpointError> {
        let checkpoint = parse_body(self.verify_note(note)?)?;
        if checkpoint.origin != self.key.name {
            return Err(CheckpointError::Origin {
                expected: self.key.name.clone(),
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
        assert_eq!(checkpoint.time, Some(at()));
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
    /// The example of the C2SP signed-note specification: its verifier key verifies its
    /// note, so the key id, the vkey form and the signature check follow the text.
    #[test]
    fn the_c2sp_example_note_verifies_with_its_vkey() {
        let verifier = CheckpointVerifier::from_vkey(
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k\n",
        )
        .unwrap();
        assert_eq!(verifier.origin(), "example.com/foo");
        assert_eq!(
            verifier.vkey(),
            "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
        );
        let note = "This is an example message.\n\n\u{2014} example.com/foo Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n";
        assert_eq!(
            verifier.verify_note(note).unwrap(),
            "This is an example message.\n"
        );
        let altered = note.replace("example message", "example massage");
        assert_eq!(
            verifier.verify_note(&altered),
            Err(CheckpointError::BadSignature("example.com/foo".into()))
        );
    }

    #[test]
    fn a_vkey_round_trips_and_a_wrong_one_is_refused() {
        let signer = CheckpointSigner::new("liaison.example/demo", key()).unwrap();
        let vkey = signer.verifier().vkey();
        let (name, rest) = vkey.split_once('+').unwrap();
        assert_eq!(name, "liaison.example/demo");
        assert_eq!(rest.split_once('+').unwrap().0, hex::encode(signer.key_id));
        let verifier = CheckpointVerifier::from_vkey(&vkey).unwrap();
        assert_eq!(verifier, signer.verifier());
        assert_eq!(verifier.public_key(), signer.public_key());

        let other_id = vkey.replacen(&hex::encode(signer.key_id), "00000000", 1);
        let upper = vkey.replacen(
            &hex::encode(signer.key_id),
            &hex::encode_upper(signer.key_id),
            1,
        );
        // An upper-case key id is refused; a random id of decimal digits only has none
        // (then `upper` is the vkey itself, and not a bad one).
        let upper = if upper == vkey {
            other_id.clone()
        } else {
            upper
        };
        for bad in [
            other_id.as_str(),
            upper.as_str(),
            "liaison.example/demo",
            "liaison.example/demo+00000000+AAAA",
            "with space+00000000+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k",
        ] {
            assert!(CheckpointVerifier::from_vkey(bad).is_err(), "{bad}");
        }
    }

    /// C2SP: verifiers ignore signatures from unknown keys (a cosigner's, a witness's, or a
    /// key of the same name with another id) but must verify the line of the known key.
    #[test]
    fn signature_lines_of_other_keys_are_ignored() {
        let signer = CheckpointSigner::new("liaison.example/demo", key()).unwrap();
        let verifier = signer.verifier();
        let note = signer.sign(5, [3; 32], at());
        let cosigner = CheckpointSigner::new("witness.example/w1", key()).unwrap();
        let cosigned_line = cosigner.sign(5, [3; 32], at());
        let cosigned_line = cosigned_line.lines().last().unwrap();
        let same_name_other_key = CheckpointSigner::new("liaison.example/demo", key())
            .unwrap()
            .sign(5, [3; 32], at());
        let same_name_line = same_name_other_key.lines().last().unwrap();
        let with_others = format!("{note}{cosigned_line}\n{same_name_line}\n");
        assert_eq!(verifier.open(&with_others).unwrap().size, 5);
        // Only unknown keys' lines: no signature of ours.
        let body = note.split("\n\n").next().unwrap();
        let foreign = format!("{body}\n\n{cosigned_line}\n");
        assert_eq!(
            verifier.open(&foreign),
            Err(CheckpointError::NoSignature("liaison.example/demo".into()))
        );
        // Our name and key id with a signature that does not verify: refused, even beside
        // a good one.
        let ours = note.lines().last().unwrap();
        let (prefix, blob) = ours.rsplit_once(' ').unwrap();
        let mut bad = STANDARD.decode(blob).unwrap();
        bad.truncate(40);
        let bad_line = format!("{prefix} {}", STANDARD.encode(bad));
        let with_bad = format!("{note}{bad_line}\n");
        assert_eq!(
            verifier.open(&with_bad),
            Err(CheckpointError::BadSignature("liaison.example/demo".into()))
        );
    }

    #[test]
    fn extension_lines_are_optional_and_opaque() {
        let signer = CheckpointSigner::new("liaison.example/demo", key()).unwrap();
        let verifier = signer.verifier();
        let sign_text = |text: &str| {
            let mut blob = signer.key_id.to_vec();
            blob.extend_from_slice(signer.key.sign(text.as_bytes()).as_ref());
            format!(
                "{text}\n\u{2014} liaison.example/demo {}\n",
                STANDARD.encode(blob)
            )
        };
        let root = STANDARD.encode([9u8; 32]);
        let plain = verifier
            .open(&sign_text(&format!("liaison.example/demo\n3\n{root}\n")))
            .unwrap();
        assert_eq!((plain.size, plain.time), (3, None));
        let extended = verifier
            .open(&sign_text(&format!(
                "liaison.example/demo\n3\n{root}\nwitnessed-by x\ntime 2026-11-26T08:00:01.25Z\n"
            )))
            .unwrap();
        assert_eq!(extended.time, Some(at()));
        // A tree size with a leading zero is not C2SP's form.
        assert!(
            verifier
                .open(&sign_text(&format!("liaison.example/demo\n03\n{root}\n")))
                .is_err()
        );
    }
}
