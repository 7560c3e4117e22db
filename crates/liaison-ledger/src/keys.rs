//! Sealed message bodies: what makes erasure possible in an append-only ledger.
//!
//! Each accepted message gets a random 256-bit data key. Its body is stored as
//! `nonce (12 bytes) ‖ AES-256-GCM(data key, body)` in `messages.body`, and the data key is
//! stored apart, in the deletable table `message_keys`, as `nonce ‖ AES-256-GCM(KEK, data
//! key)` under a key-encryption key (KEK) of the configuration. Both are bound to the
//! message's id (the GCM associated data), so neither a body nor a wrapped key can be moved
//! onto another message. Destroying the wrapped key (`case.erased`) makes the body
//! unreadable wherever its ciphertext went; the digest in the `message.accepted` entry is
//! of the plaintext, so entries, proofs and checkpoints never change.
//!
//! KEKs are files `<id>.kek` (64 hex digits) in one directory; the active one wraps new
//! keys, the others only unwrap, until [`crate::Ledger::rotate_keys`] has re-wrapped
//! every key under the active one and the old file can be deleted.

use liaison_core::FileError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use uuid::Uuid;

/// The file name extension of a key-encryption key.
pub const KEK_EXTENSION: &str = "kek";
const BODY_CONTEXT: &[u8] = b"liaison.body.v1";
const KEY_CONTEXT: &[u8] = b"liaison.data-key.v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(transparent)]
    Io(#[from] liaison_core::FileError),
    #[error("{path}: a key-encryption key file holds 64 hex digits (liaison keys new)")]
    Format { path: PathBuf },
    #[error(
        "{dir} holds no key-encryption key {id:?} ([erasure] active_kek names a file {id}.kek there)"
    )]
    NoSuchActive { dir: PathBuf, id: String },
    #[error(
        "{dir} holds {count} key-encryption keys and [erasure] active_kek chooses none (LIAISON_ERASURE__ACTIVE_KEK)"
    )]
    NoActive { dir: PathBuf, count: usize },
    #[error(
        "the data key of message {message} is wrapped by key-encryption key {kek:?}, which is not configured"
    )]
    UnknownKek { message: Uuid, kek: String },
    #[error("message {message}: {what} does not decrypt (wrong key, or altered)")]
    Decrypt { message: Uuid, what: &'static str },
    #[error("no key-encryption key is configured: bodies are stored in clear and cannot be erased")]
    Unconfigured,
    #[error("the system random number generator failed")]
    Random,
}

/// The configured key-encryption keys.
pub struct Keyring {
    active: String,
    keks: BTreeMap<String, LessSafeKey>,
    random: SystemRandom,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the keys themselves.
        f.debug_struct("Keyring")
            .field("active", &self.active)
            .field("keks", &self.keks.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A body sealed for storage, with its wrapped data key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sealed {
    pub body: Vec<u8>,
    pub kek_id: String,
    pub wrapped: Vec<u8>,
}

fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("32 bytes make an AES-256 key"))
}

fn aad(context: &[u8], id: Uuid) -> Vec<u8> {
    let mut aad = context.to_vec();
    aad.extend_from_slice(id.as_bytes());
    aad
}

impl Keyring {
    /// A keyring of `keys`; `active` must be one of them.
    pub fn new(keys: Vec<(String, [u8; 32])>, active: &str) -> Result<Keyring, KeyError> {
        let keks: BTreeMap<String, LessSafeKey> = keys
            .iter()
            .map(|(id, key)| (id.clone(), aead_key(key)))
            .collect();
        if !keks.contains_key(active) {
            return Err(KeyError::NoSuchActive {
                dir: PathBuf::new(),
                id: active.to_owned(),
            });
        }
        Ok(Keyring {
            active: active.to_owned(),
            keks,
            random: SystemRandom::new(),
        })
    }

    /// The keys `<id>.kek` of `dir`. `active` names the one that wraps new data keys; it
    /// may be left out when the directory holds exactly one. `Ok(None)`: no such
    /// directory, or no key in it (bodies are then stored in clear).
    pub fn load(dir: &Path, active: Option<&str>) -> Result<Option<Keyring>, KeyError> {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && active.is_none() => {
                return Ok(None);
            }
            Err(source) => {
                return Err(
                    FileError::new("read the key-encryption key directory", dir, source).into(),
                );
            }
        };
        let mut keys = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(FileError::at("read the key-encryption key directory", dir))?
                .path();
            if path.extension().and_then(|e| e.to_str()) != Some(KEK_EXTENSION) {
                continue;
            }
            let Some(id) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            keys.push((id.to_owned(), read_kek(&path)?));
        }
        let active = match (active, keys.as_slice()) {
            (Some(active), _) => active.to_owned(),
            (None, []) => return Ok(None),
            (None, [(only, _)]) => only.clone(),
            (None, several) => {
                return Err(KeyError::NoActive {
                    dir: dir.to_owned(),
                    count: several.len(),
                });
            }
        };
        Keyring::new(keys, &active)
            .map(Some)
            .map_err(|_| KeyError::NoSuchActive {
                dir: dir.to_owned(),
                id: active,
            })
    }

    /// The KEK that wraps new data keys.
    pub fn active(&self) -> &str {
        &self.active
    }

    /// The configured KEK ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        self.keks.keys().cloned().collect()
    }

    fn nonce(&self) -> Result<[u8; NONCE_LEN], KeyError> {
        let mut nonce = [0; NONCE_LEN];
        self.random.fill(&mut nonce).map_err(|_| KeyError::Random)?;
        Ok(nonce)
    }

    fn encrypt(
        &self,
        key: &LessSafeKey,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let nonce = self.nonce()?;
        let mut out = Vec::with_capacity(NONCE_LEN + plaintext.len() + AES_256_GCM.tag_len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(plaintext);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut out[NONCE_LEN..],
            )
            .map_err(|_| KeyError::Random)?;
        out.extend_from_slice(tag.as_ref());
        Ok(out)
    }

    /// Seals the body of message `id` under a new data key, wrapped by the active KEK.
    pub fn seal(&self, id: Uuid, plaintext: &[u8]) -> Result<Sealed, KeyError> {
        let mut data_key = [0u8; 32];
        self.random
            .fill(&mut data_key)
            .map_err(|_| KeyError::Random)?;
        let body = self.encrypt(&aead_key(&data_key), &aad(BODY_CONTEXT, id), plaintext)?;
        let wrapped = self.encrypt(&self.keks[&self.active], &aad(KEY_CONTEXT, id), &data_key)?;
        Ok(Sealed {
            body,
            kek_id: self.active.clone(),
            wrapped,
        })
    }

    fn unwrap_key(&self, id: Uuid, kek_id: &str, wrapped: &[u8]) -> Result<[u8; 32], KeyError> {
        let kek = self.keks.get(kek_id).ok_or_else(|| KeyError::UnknownKek {
            message: id,
            kek: kek_id.to_owned(),
        })?;
        let key = decrypt(kek, &aad(KEY_CONTEXT, id), wrapped).ok_or(KeyError::Decrypt {
            message: id,
            what: "its wrapped data key",
        })?;
        <[u8; 32]>::try_from(key.as_slice()).map_err(|_| KeyError::Decrypt {
            message: id,
            what: "its wrapped data key",
        })
    }

    /// The plaintext body of message `id`, from its sealed `body` and wrapped key.
    pub fn open(
        &self,
        id: Uuid,
        body: &[u8],
        kek_id: &str,
        wrapped: &[u8],
    ) -> Result<Vec<u8>, KeyError> {
        let key = self.unwrap_key(id, kek_id, wrapped)?;
        decrypt(&aead_key(&key), &aad(BODY_CONTEXT, id), body).ok_or(KeyError::Decrypt {
            message: id,
            what: "its body",
        })
    }

    /// The data key of message `id` wrapped by the active KEK instead; the body is untouched.
    pub fn rewrap(&self, id: Uuid, kek_id: &str, wrapped: &[u8]) -> Result<Vec<u8>, KeyError> {
        let key = self.unwrap_key(id, kek_id, wrapped)?;
        self.encrypt(&self.keks[&self.active], &aad(KEY_CONTEXT, id), &key)
    }
}

/// A stored body as it can be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Opened {
    /// The bytes the sender posted.
    Body(Vec<u8>),
    /// Its data key was destroyed by the `case.erased` entry of this seq.
    Erased(u64),
}

/// The columns a read selects beside `messages.body`: `k.kek_id, k.wrapped, k.erased_seq`
/// of a `LEFT JOIN message_keys k ON k.message_id = m.id`.
pub(crate) struct KeyColumns {
    pub kek_id: Option<String>,
    pub wrapped: Option<Vec<u8>>,
    pub erased_seq: Option<i64>,
}

impl KeyColumns {
    pub fn from_row(row: &sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        Ok(KeyColumns {
            kek_id: row.try_get("kek_id")?,
            wrapped: row.try_get("wrapped")?,
            erased_seq: row.try_get("erased_seq")?,
        })
    }
}

/// Message `id`'s stored `body` as it can be read: in clear (no key row), opened with its
/// data key, or erased.
pub(crate) fn open_stored(
    keyring: Option<&Keyring>,
    id: Uuid,
    body: Vec<u8>,
    key: KeyColumns,
) -> Result<Opened, KeyError> {
    if let Some(seq) = key.erased_seq {
        return Ok(Opened::Erased(u64::try_from(seq).unwrap_or(0)));
    }
    match (key.kek_id, key.wrapped) {
        (Some(kek), Some(wrapped)) => {
            let keyring = keyring.ok_or(KeyError::UnknownKek {
                message: id,
                kek: kek.clone(),
            })?;
            keyring.open(id, &body, &kek, &wrapped).map(Opened::Body)
        }
        _ => Ok(Opened::Body(body)),
    }
}

fn decrypt(key: &LessSafeKey, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return None;
    }
    let (nonce, ciphertext) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buffer = ciphertext.to_vec();
    let plaintext = key.open_in_place(nonce, Aad::from(aad), &mut buffer).ok()?;
    let len = plaintext.len();
    buffer.truncate(len);
    Some(buffer)
}

fn read_kek(path: &Path) -> Result<[u8; 32], KeyError> {
    let text = std::fs::read_to_string(path)
        .map_err(FileError::at("read the key-encryption key", path))?;
    hex::decode(text.trim())
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
        .ok_or_else(|| KeyError::Format {
            path: path.to_owned(),
        })
}

/// Writes a new random KEK `<dir>/<id>.kek` (mode 0600; the directory 0700 when made),
/// refusing to replace one.
pub fn generate_kek(dir: &Path, id: &str) -> Result<PathBuf, KeyError> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(KeyError::Format {
            path: dir.join(format!("{id}.{KEK_EXTENSION}")),
        });
    }
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(FileError::at(
        "create the key-encryption key directory",
        dir,
    ))?;
    let mut key = [0u8; 32];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| KeyError::Random)?;
    let path = dir.join(format!("{id}.{KEK_EXTENSION}"));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(&path)
        .map_err(FileError::at("create the key-encryption key", &path))?;
    std::io::Write::write_all(&mut file, format!("{}\n", hex::encode(key)).as_bytes())
        .map_err(FileError::at("write the key-encryption key", &path))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(active: &str) -> Keyring {
        Keyring::new(vec![("k1".into(), [1; 32]), ("k2".into(), [2; 32])], active).unwrap()
    }

    #[test]
    fn a_sealed_body_opens_with_its_key_and_hides_the_plaintext() {
        let keys = ring("k1");
        let id = Uuid::now_v7();
        let body = br#"{"data":{"name":"Zhang San"}}"#;
        let sealed = keys.seal(id, body).unwrap();
        assert_eq!(sealed.kek_id, "k1");
        assert_eq!(sealed.body.len(), NONCE_LEN + body.len() + 16);
        assert!(!sealed.body.windows(5).any(|w| w == b"Zhang"));
        assert_eq!(sealed.wrapped.len(), NONCE_LEN + 32 + 16);
        assert_eq!(
            keys.open(id, &sealed.body, "k1", &sealed.wrapped).unwrap(),
            body
        );
        // Two seals of one body share nothing.
        let again = keys.seal(id, body).unwrap();
        assert_ne!(again.body, sealed.body);
        assert_ne!(again.wrapped, sealed.wrapped);
    }

    #[test]
    fn a_body_or_key_moved_to_another_message_or_altered_does_not_open() {
        let keys = ring("k1");
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        let sealed = keys.seal(a, b"one").unwrap();
        assert!(matches!(
            keys.open(b, &sealed.body, "k1", &sealed.wrapped),
            Err(KeyError::Decrypt {
                what: "its wrapped data key",
                ..
            })
        ));
        let mut body = sealed.body.clone();
        body[NONCE_LEN] ^= 1;
        assert!(matches!(
            keys.open(a, &body, "k1", &sealed.wrapped),
            Err(KeyError::Decrypt {
                what: "its body",
                ..
            })
        ));
        assert!(keys.open(a, &sealed.body, "k2", &sealed.wrapped).is_err());
        assert!(matches!(
            keys.open(a, &sealed.body, "k9", &sealed.wrapped),
            Err(KeyError::UnknownKek { .. })
        ));
        assert!(keys.open(a, &[0; 5], "k1", &sealed.wrapped).is_err());
    }

    #[test]
    fn rotation_rewraps_the_data_key_and_leaves_the_body_as_it_was() {
        let id = Uuid::now_v7();
        let sealed = ring("k1").seal(id, b"kept").unwrap();
        let both = ring("k2");
        let rewrapped = both.rewrap(id, "k1", &sealed.wrapped).unwrap();
        assert_ne!(rewrapped, sealed.wrapped);
        // Only the new KEK is left: the old wrapping no longer opens, the new one does,
        // and the body bytes are the ones sealed before the rotation.
        let only_k2 = Keyring::new(vec![("k2".into(), [2; 32])], "k2").unwrap();
        assert!(
            only_k2
                .open(id, &sealed.body, "k1", &sealed.wrapped)
                .is_err()
        );
        assert_eq!(
            only_k2.open(id, &sealed.body, "k2", &rewrapped).unwrap(),
            b"kept"
        );
    }

    #[test]
    fn keys_load_from_a_directory_and_one_must_be_chosen_among_several() {
        let dir = tempfile::tempdir().unwrap();
        let kek_dir = dir.path().join("kek");
        assert!(Keyring::load(&kek_dir, None).unwrap().is_none());
        generate_kek(&kek_dir, "k1").unwrap();
        assert!(generate_kek(&kek_dir, "k1").is_err(), "never replaced");
        assert!(generate_kek(&kek_dir, "../x").is_err());
        let one = Keyring::load(&kek_dir, None).unwrap().unwrap();
        assert_eq!(one.active(), "k1");
        generate_kek(&kek_dir, "k2").unwrap();
        assert!(matches!(
            Keyring::load(&kek_dir, None),
            Err(KeyError::NoActive { count: 2, .. })
        ));
        let two = Keyring::load(&kek_dir, Some("k2")).unwrap().unwrap();
        assert_eq!(
            (two.active(), two.ids()),
            ("k2", vec!["k1".into(), "k2".into()])
        );
        assert!(Keyring::load(&kek_dir, Some("k3")).is_err());
        assert!(!format!("{two:?}").contains(&hex::encode([2u8; 4])));
        std::fs::write(kek_dir.join("bad.kek"), "zz").unwrap();
        assert!(matches!(
            Keyring::load(&kek_dir, Some("k1")),
            Err(KeyError::Format { .. })
        ));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(kek_dir.join("k1.kek"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }
}
