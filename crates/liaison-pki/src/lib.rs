//! The development PKI behind `liaison pki init --out DIR`: a CA, a server certificate, one
//! client certificate per agency of the registry, and the Ed25519 key that signs ledger
//! checkpoints with its C2SP verifier key (`ledger-signing.vkey`, what auditors are given);
//! and `liaison pki issue --csr`, which certifies a key an agency made itself.
//!
//! Key custody: `DIR` is the broker's TLS folder and the broker reads only its top-level
//! files (`ca.pem`, `server.pem`, `server.key`, `ledger-signing.pk8`, `crl.pem`). The CA's
//! private key lives in `DIR/ca/` and the development agency keys in `DIR/agencies/`;
//! in production neither folder belongs on the broker host (see [`custody_warnings`]),
//! and agencies send a certificate request instead of receiving a key.
//!
//! Agencies are identified by the SAN URI `urn:liaison:agency:<code>` of their client
//! certificate (see [`agency_from_cert`]); the common name repeats the code only
//! for people reading the certificate.

pub mod crl;

use liaison_core::FileError;
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use liaison_core::checkpoint::CheckpointVerifier;
use liaison_core::{AgencyCode, Registry};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair as _};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::{Duration, OffsetDateTime};

/// Common name of the development CA.
pub const CA_COMMON_NAME: &str = "liaison development CA";

/// The CA must outlive every certificate it issues, including agency certificates that
/// [`ensure`] adds long after `init`, so it gets at least this many days.
const CA_MIN_VALIDITY_DAYS: u32 = 3650;

/// New certificates start slightly in the past so that a peer whose clock runs a little
/// behind does not see them as not yet valid.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::hours(1);

/// What to put into a new PKI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiOptions {
    /// Names the server certificate is valid for: DNS names or IP addresses.
    pub server_names: Vec<String>,
    /// Validity of the server and agency certificates, counted from now.
    pub validity_days: u32,
    /// The checkpoints' origin (`[ledger] origin`): the name in the verifier key.
    pub origin: String,
}

impl Default for PkiOptions {
    fn default() -> Self {
        Self {
            server_names: vec!["localhost".to_owned(), "127.0.0.1".to_owned()],
            validity_days: 825,
            origin: liaison_core::checkpoint::DEMO_ORIGIN.to_owned(),
        }
    }
}

/// The outcome of [`init`] or [`ensure`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiSummary {
    pub dir: PathBuf,
    /// Agencies of the registry that now have a client certificate in `dir`.
    pub agencies: usize,
    /// Files written by this call, in the order they were written (empty when [`ensure`]
    /// found nothing to add).
    pub files: Vec<PathBuf>,
}

/// Paths inside a PKI directory, one place for every file name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PkiLayout {
    pub dir: PathBuf,
}

impl PkiLayout {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The CA's own folder: its certificate and private key, everything `pki issue` and
    /// `pki revoke` need and nothing the broker reads, so it can live on another machine.
    pub fn ca_dir(&self) -> PathBuf {
        self.dir.join("ca")
    }

    /// The CA's private key.
    pub fn ca_key(&self) -> PathBuf {
        self.ca_dir().join("ca.key")
    }

    /// The CA certificate kept beside its key (the same as [`Self::ca_cert`]).
    pub fn ca_dir_cert(&self) -> PathBuf {
        self.ca_dir().join("ca.pem")
    }

    /// Where PKIs made before the CA got its own folder kept the CA key: inside the
    /// broker's TLS folder. [`ensure`] moves it; the broker warns while it is there.
    pub fn legacy_ca_key(&self) -> PathBuf {
        self.dir.join("ca.key")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.dir.join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.dir.join("server.key")
    }

    /// The key-encryption keys that seal message bodies (`<id>.kek`, 64 hex digits),
    /// liaison's default `[erasure] kek_dir`.
    pub fn kek_dir(&self) -> PathBuf {
        self.dir.join("kek")
    }

    pub fn agencies_dir(&self) -> PathBuf {
        self.dir.join("agencies")
    }

    pub fn agency_cert(&self, code: &AgencyCode) -> PathBuf {
        self.agencies_dir().join(format!("{code}.pem"))
    }

    pub fn agency_key(&self, code: &AgencyCode) -> PathBuf {
        self.agencies_dir().join(format!("{code}.key"))
    }

    /// The agency's certificate, key and the CA certificate as one password-protected
    /// PKCS#12 file, for importing into a browser (the console).
    pub fn agency_p12(&self, code: &AgencyCode) -> PathBuf {
        self.agencies_dir().join(format!("{code}.p12"))
    }

    /// Ed25519 private key, PKCS#8 DER as produced by ring.
    pub fn ledger_signing_key(&self) -> PathBuf {
        self.dir.join("ledger-signing.pk8")
    }

    /// The raw 32-byte Ed25519 public key, hex-encoded, no trailing newline.
    pub fn ledger_public_key(&self) -> PathBuf {
        self.dir.join("ledger-signing.pub")
    }

    /// The C2SP verifier key of the checkpoints: `origin+keyid+base64(0x01 ‖ public
    /// key)`, one line. It names the origin too, so it is the one thing to give auditors.
    pub fn ledger_verifier_key(&self) -> PathBuf {
        self.dir.join("ledger-signing.vkey")
    }

    /// Every file a complete PKI holds besides the agency certificates.
    fn core_files(&self) -> [PathBuf; 7] {
        [
            self.ca_cert(),
            self.ca_dir_cert(),
            self.ca_key(),
            self.server_cert(),
            self.server_key(),
            self.ledger_signing_key(),
            self.ledger_public_key(),
        ]
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error(
        "{dir} already holds a PKI ({ca} exists): keep it with `ensure`, or choose another directory"
    )]
    AlreadyInitialised { dir: PathBuf, ca: PathBuf },
    #[error(
        "the PKI in {dir} is incomplete ({missing} is missing): move the directory away and create a new PKI"
    )]
    Incomplete { dir: PathBuf, missing: PathBuf },
    #[error(transparent)]
    Io(#[from] liaison_core::FileError),
    #[error("the server certificate needs at least one server name")]
    NoServerNames,
    #[error("invalid server name {name:?}: {source}")]
    InvalidServerName {
        name: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("certificate validity must be at least one day")]
    ZeroValidity,
    #[error(
        "certificate validity is empty: not_after {not_after} is not after not_before {not_before}"
    )]
    EmptyValidity {
        not_before: OffsetDateTime,
        not_after: OffsetDateTime,
    },
    #[error("cannot issue the {subject} certificate: {source}")]
    Issue {
        subject: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("cannot load the CA from {path}: {source}")]
    LoadCa {
        path: PathBuf,
        #[source]
        source: rcgen::Error,
    },
    #[error("the CA key {key} does not belong to the CA certificate {cert}")]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("cannot generate the ledger signing key: the system random source failed")]
    LedgerKeyGeneration,
    #[error("the system random source failed")]
    Randomness,
    #[error("invalid ledger key {path}: {reason}")]
    InvalidLedgerKey { path: PathBuf, reason: String },
    #[error(
        "agency {agency} is not in the registry: certificates are issued to registered agencies only"
    )]
    UnknownAgency { agency: AgencyCode },
    #[error("cannot write a verifier key for origin {origin:?}: {reason}")]
    Origin { origin: String, reason: String },
    #[error("invalid verifier key {path}: {reason}")]
    InvalidVerifierKey { path: PathBuf, reason: String },
    #[error("cannot write the PKCS#12 file of {agency}: {reason}")]
    Pkcs12 { agency: AgencyCode, reason: String },
    #[error("not a usable certificate signing request: {source}")]
    InvalidCsr {
        #[source]
        source: rcgen::Error,
    },
}

/// The PKCS#12 bundle of agency `code`: its private key, its certificate and the CA
/// certificate, encrypted and authenticated with `password` (PBES2: PBKDF2-HMAC-SHA-256
/// and AES-256-CBC, HMAC-SHA-256 integrity), which browsers and `pk12util` import.
pub fn agency_pkcs12(
    layout: &PkiLayout,
    code: &AgencyCode,
    password: &str,
) -> Result<Vec<u8>, PkiError> {
    let failed = |reason: String| PkiError::Pkcs12 {
        agency: code.clone(),
        reason,
    };
    let read = |path: PathBuf| fs::read(&path).map_err(FileError::at("read", &path));
    let cert = CertificateDer::from_pem_slice(&read(layout.agency_cert(code))?)
        .map_err(|e| failed(format!("certificate: {e}")))?;
    let ca = CertificateDer::from_pem_slice(&read(layout.ca_cert())?)
        .map_err(|e| failed(format!("CA certificate: {e}")))?;
    let key = rustls_pki_types::PrivateKeyDer::from_pem_slice(&read(layout.agency_key(code))?)
        .map_err(|e| failed(format!("private key: {e}")))?;
    let key = p12_keystore::PrivateKey::from_der(key.secret_der())
        .map_err(|e| failed(format!("private key: {e}")))?;
    let chain = [cert.as_ref(), ca.as_ref()]
        .into_iter()
        .map(p12_keystore::Certificate::from_der)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| failed(format!("certificate: {e}")))?;
    let local_key_id = ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, &cert);
    let chain = p12_keystore::PrivateKeyChain::new(local_key_id.as_ref(), key, chain);
    let mut store = p12_keystore::KeyStore::new();
    store.add_entry(
        &format!("liaison {code}"),
        p12_keystore::KeyStoreEntry::PrivateKeyChain(chain),
    );
    store
        .writer(password)
        .write()
        .map_err(|e| failed(e.to_string()))
}

/// Writes `<agency>.p12` beside each agency certificate whose key is in the PKI (owner
/// readable only); returns the files written.
pub fn write_agency_pkcs12s(
    layout: &PkiLayout,
    registry: &Registry,
    password: &str,
) -> Result<Vec<PathBuf>, PkiError> {
    let mut files = FileWriter::default();
    for code in registry.codes() {
        if !exists(&layout.agency_key(code))? {
            continue;
        }
        let bundle = agency_pkcs12(layout, code, password)?;
        files.secret(&layout.agency_p12(code), &bundle)?;
    }
    Ok(files.written)
}

/// A new random password for PKCS#12 files: 20 characters of an alphabet without
/// look-alikes, about 100 bits.
pub fn random_password() -> Result<String, PkiError> {
    const ALPHABET: &[u8] = b"abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    let mut bytes = [0u8; 20];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut bytes)
        .map_err(|_| PkiError::Randomness)?;
    Ok(bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect())
}

/// Creates a new PKI in `out` (created if needed). Refuses a directory that already has a
/// `ca.pem`: overwriting a CA would silently invalidate every certificate handed out.
pub fn init(out: &Path, registry: &Registry, options: &PkiOptions) -> Result<PkiSummary, PkiError> {
    let layout = PkiLayout::new(out);
    if exists(&layout.ca_cert())? {
        return Err(PkiError::AlreadyInitialised {
            dir: layout.dir.clone(),
            ca: layout.ca_cert(),
        });
    }
    create(&layout, registry, options)
}

/// Creates the PKI if `out` has none; otherwise keeps the existing one (CA, server
/// certificate and ledger key untouched, even if `options.server_names` differ) and only
/// issues the agency certificates that are missing.
pub fn ensure(
    out: &Path,
    registry: &Registry,
    options: &PkiOptions,
) -> Result<PkiSummary, PkiError> {
    let layout = PkiLayout::new(out);
    if !exists(&layout.ca_cert())? {
        return create(&layout, registry, options);
    }
    let mut files = FileWriter::default();
    move_legacy_ca_key(&layout, &mut files)?;
    for file in layout.core_files() {
        if !exists(&file)? {
            return Err(PkiError::Incomplete {
                dir: layout.dir.clone(),
                missing: file,
            });
        }
    }
    check_validity_days(options.validity_days)?;
    // PKIs made before the verifier key existed get it now (never replaced: it may
    // already have been handed to auditors).
    if !exists(&layout.ledger_verifier_key())? {
        let public_key = read_ledger_public_key(&layout)?;
        let vkey = verifier_key(&options.origin, public_key)?;
        files.public(&layout.ledger_verifier_key(), vkey.as_bytes())?;
    }
    // PKIs made before bodies were sealed get their first key-encryption key now (a
    // directory that exists is left alone, keys or not).
    if !exists(&layout.kek_dir())? {
        write_first_kek(&layout, &mut files)?;
    }
    let ca = load_ca(&layout)?;
    create_dir(&layout.agencies_dir())?;
    let (not_before, not_after) = validity_from_now(options.validity_days);
    for code in registry.codes() {
        // A certificate without a key here is one issued from the agency's own request
        // (`pki issue --csr`): the agency holds the key, nothing is missing.
        if exists(&layout.agency_cert(code))? {
            continue;
        }
        let (cert, key) = issue_agency(&ca, code, not_before, not_after)?;
        files.secret(&layout.agency_key(code), key.as_bytes())?;
        files.public(&layout.agency_cert(code), cert.as_bytes())?;
    }
    Ok(PkiSummary {
        dir: layout.dir,
        agencies: registry.len(),
        files: files.written,
    })
}

/// Issues one more client certificate for `code` from the CA in `dir`, without writing it:
/// returns the certificate and its private key, both PEM. Tests use it for expired or
/// not-yet-valid certificates.
pub fn issue_agency_cert(
    dir: &Path,
    code: &AgencyCode,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    if not_after <= not_before {
        return Err(PkiError::EmptyValidity {
            not_before,
            not_after,
        });
    }
    let ca = load_ca(&PkiLayout::new(dir))?;
    issue_agency(&ca, code, not_before, not_after)
}

/// Issues a client certificate for auditor `name` (SAN URI `urn:liaison:auditor:<name>`,
/// client authentication only) from the CA in `dir`, valid from now for `days`: returns
/// the certificate and its private key, both PEM. An auditor reads checkpoints, proofs and
/// entries and cosigns checkpoints; the broker lets it in only when `auditors` names it.
pub fn issue_auditor_cert(dir: &Path, name: &str, days: u32) -> Result<(String, String), PkiError> {
    let subject = format!("auditor {name}");
    let issue_error = |source| PkiError::Issue {
        subject: subject.clone(),
        source,
    };
    let urn = liaison_core::agency::AUDITOR_URN_PREFIX.to_owned() + name;
    if liaison_core::agency::auditor_from_urn(&urn).is_none() {
        return Err(issue_error(rcgen::Error::InvalidNameType));
    }
    let ca = load_ca(&PkiLayout::new(dir))?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, subject.as_str());
    params.subject_alt_names = vec![SanType::URI(urn.try_into().map_err(issue_error)?)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.serial_number = Some(random_serial()?);
    let now = OffsetDateTime::now_utc();
    issue_leaf(
        &ca,
        params,
        &subject,
        now - time::Duration::minutes(5),
        now + time::Duration::days(i64::from(days)),
    )
}

/// Certifies a key an agency generated itself: `csr_pem` is its PKCS#10 request, whose
/// self-signature must verify (proof that the requester holds the private key). Only the
/// public key is taken from the request; subject, names and usages are the ones every
/// agency certificate gets (CN and SAN URI `urn:liaison:agency:<code>`, clientAuth), so a
/// request cannot ask for another agency, a server name or a CA. Returns the certificate,
/// PEM, valid from now for `validity_days`.
pub fn issue_from_csr(
    dir: &Path,
    registry: &Registry,
    code: &AgencyCode,
    csr_pem: &str,
    validity_days: u32,
) -> Result<String, PkiError> {
    if !registry.contains(code) {
        return Err(PkiError::UnknownAgency {
            agency: code.clone(),
        });
    }
    check_validity_days(validity_days)?;
    let request = rcgen::CertificateSigningRequestParams::from_pem(csr_pem)
        .map_err(|source| PkiError::InvalidCsr { source })?;
    let ca = load_ca(&PkiLayout::new(dir))?;
    let (not_before, not_after) = validity_from_now(validity_days);
    let subject = format!("agency {code}");
    let params = agency_params(code, &subject, not_before, not_after)?;
    let cert = params
        .signed_by(&request.public_key, &ca)
        .map_err(|source| PkiError::Issue { subject, source })?;
    Ok(cert.pem())
}

/// Private keys found in the broker's TLS folder `layout.dir` that the broker does not
/// need: each is a sentence for the start-up log. The broker needs only `server.key` and
/// `ledger-signing.pk8`; whoever can read the folder must not get the CA's key (it could
/// mint any agency's identity) or an agency's key (it could act as that agency).
pub fn custody_warnings(layout: &PkiLayout) -> Vec<String> {
    let mut warnings = Vec::new();
    if layout.legacy_ca_key().is_file() {
        warnings.push(format!(
            "the CA private key {} is in the broker's TLS folder: move it off this host (or run `liaison demo` once to move it into {})",
            layout.legacy_ca_key().display(),
            layout.ca_dir().display()
        ));
    }
    if layout.ca_key().is_file() {
        warnings.push(format!(
            "the CA private key {} is under the broker's TLS folder: fine for development, keep the ca/ folder off the broker host in production",
            layout.ca_key().display()
        ));
    }
    let agency_keys = fs::read_dir(layout.agencies_dir())
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "key"))
                .count()
        })
        .unwrap_or(0);
    if agency_keys > 0 {
        warnings.push(format!(
            "{agency_keys} agency private key(s) under {}: fine for development; in production agencies make their own keys and send a request (`liaison pki issue --csr`)",
            layout.agencies_dir().display()
        ));
    }
    warnings
}

/// Loads the ledger signing key written by [`init`].
pub fn load_ledger_signing_key(layout: &PkiLayout) -> Result<Ed25519KeyPair, PkiError> {
    let path = layout.ledger_signing_key();
    let pkcs8 = fs::read(&path).map_err(FileError::at("read", &path))?;
    Ed25519KeyPair::from_pkcs8(&pkcs8).map_err(|rejected| PkiError::InvalidLedgerKey {
        path,
        reason: rejected.to_string(),
    })
}

/// The verifier key file's text for `origin` and `public_key`, newline included.
fn verifier_key(origin: &str, public_key: [u8; 32]) -> Result<String, PkiError> {
    let verifier = CheckpointVerifier::new(origin, public_key).map_err(|e| PkiError::Origin {
        origin: origin.to_owned(),
        reason: e.to_string(),
    })?;
    Ok(format!("{}\n", verifier.vkey()))
}

/// Writes (or rewrites) the verifier key of the PKI's ledger key under `origin`: for a PKI
/// made before the verifier key existed, or after `[ledger] origin` changed.
pub fn write_verifier_key(layout: &PkiLayout, origin: &str) -> Result<String, PkiError> {
    let vkey = verifier_key(origin, read_ledger_public_key(layout)?)?;
    FileWriter::default().public(&layout.ledger_verifier_key(), vkey.as_bytes())?;
    Ok(vkey.trim_end().to_owned())
}

/// The verifier key `pki init` wrote, if the PKI has one (older PKIs have not).
pub fn read_verifier_key(layout: &PkiLayout) -> Result<Option<CheckpointVerifier>, PkiError> {
    let path = layout.ledger_verifier_key();
    let text = match fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(FileError::new("read", path, e).into()),
    };
    CheckpointVerifier::from_vkey(&text)
        .map(Some)
        .map_err(|e| PkiError::InvalidVerifierKey {
            path,
            reason: e.to_string(),
        })
}

/// Reads the ledger's public key, the one auditors use to check checkpoint signatures.
pub fn read_ledger_public_key(layout: &PkiLayout) -> Result<[u8; 32], PkiError> {
    let path = layout.ledger_public_key();
    let text = fs::read_to_string(&path).map_err(FileError::at("read", &path))?;
    let bytes = hex::decode(text.trim()).map_err(|e| PkiError::InvalidLedgerKey {
        path: path.clone(),
        reason: e.to_string(),
    })?;
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| PkiError::InvalidLedgerKey {
        path,
        reason: format!("expected 32 bytes, found {}", bytes.len()),
    })
}

fn create(
    layout: &PkiLayout,
    registry: &Registry,
    options: &PkiOptions,
) -> Result<PkiSummary, PkiError> {
    check_validity_days(options.validity_days)?;
    if options.server_names.is_empty() {
        return Err(PkiError::NoServerNames);
    }
    let ca = generate_ca(options.validity_days.max(CA_MIN_VALIDITY_DAYS))?;
    let (not_before, not_after) = validity_from_now(options.validity_days);
    let (server_cert, server_key) =
        issue_server(&ca.issuer, &options.server_names, not_before, not_after)?;
    let ledger_key = generate_ledger_key()?;
    let vkey = verifier_key(&options.origin, ledger_key.public)?;

    create_dir(&layout.dir)?;
    create_dir(&layout.agencies_dir())?;
    let mut files = FileWriter::default();
    files.secret(&layout.server_key(), server_key.as_bytes())?;
    files.public(&layout.server_cert(), server_cert.as_bytes())?;
    files.secret(&layout.ledger_signing_key(), &ledger_key.pkcs8)?;
    write_first_kek(layout, &mut files)?;
    files.public(
        &layout.ledger_public_key(),
        hex::encode(ledger_key.public).as_bytes(),
    )?;
    files.public(&layout.ledger_verifier_key(), vkey.as_bytes())?;
    for code in registry.codes() {
        let (cert, key) = issue_agency(&ca.issuer, code, not_before, not_after)?;
        files.secret(&layout.agency_key(code), key.as_bytes())?;
        files.public(&layout.agency_cert(code), cert.as_bytes())?;
    }
    // The CA in its own folder, away from the files the broker reads.
    create_dir(&layout.ca_dir())?;
    set_mode(&layout.ca_dir(), 0o700)?;
    files.secret(&layout.ca_key(), ca.issuer.key().serialize_pem().as_bytes())?;
    files.public(&layout.ca_dir_cert(), ca.cert_pem.as_bytes())?;
    // ca.pem last: its presence marks a complete PKI, so an interrupted run leaves a
    // directory that `init` accepts again instead of one `ensure` would call incomplete.
    files.public(&layout.ca_cert(), ca.cert_pem.as_bytes())?;
    Ok(PkiSummary {
        dir: layout.dir.clone(),
        agencies: registry.len(),
        files: files.written,
    })
}

struct GeneratedCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

fn generate_ca(validity_days: u32) -> Result<GeneratedCa, PkiError> {
    let issue_error = |source| PkiError::Issue {
        subject: CA_COMMON_NAME.to_owned(),
        source,
    };
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    (params.not_before, params.not_after) = validity_from_now(validity_days);
    let key = KeyPair::generate().map_err(issue_error)?;
    let cert = params.self_signed(&key).map_err(issue_error)?;
    Ok(GeneratedCa {
        cert_pem: cert.pem(),
        issuer: Issuer::new(params, key),
    })
}

/// Moves the CA key of a PKI made before the CA got its own folder out of the broker's
/// TLS folder into `ca/`, with a copy of the CA certificate beside it.
fn move_legacy_ca_key(layout: &PkiLayout, files: &mut FileWriter) -> Result<(), PkiError> {
    let legacy = layout.legacy_ca_key();
    if !exists(&legacy)? || exists(&layout.ca_key())? {
        return Ok(());
    }
    create_dir(&layout.ca_dir())?;
    set_mode(&layout.ca_dir(), 0o700)?;
    let cert = fs::read(layout.ca_cert()).map_err(FileError::at("read", &layout.ca_cert()))?;
    files.public(&layout.ca_dir_cert(), &cert)?;
    fs::rename(&legacy, layout.ca_key()).map_err(FileError::at("move", &legacy))?;
    files.written.push(layout.ca_key());
    Ok(())
}

/// The CA of the PKI in `layout`, ready to sign (certificates, CRLs): from `ca/`, or from
/// where PKIs made before `ca/` existed kept it.
pub(crate) fn load_ca(layout: &PkiLayout) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let (cert_path, key_path) = if !layout.ca_key().exists() && layout.legacy_ca_key().exists() {
        (layout.ca_cert(), layout.legacy_ca_key())
    } else {
        (layout.ca_dir_cert(), layout.ca_key())
    };
    let cert_pem = fs::read_to_string(&cert_path).map_err(FileError::at("read", &cert_path))?;
    let key_pem = fs::read_to_string(&key_path).map_err(FileError::at("read", &key_path))?;
    let key = KeyPair::from_pem(&key_pem).map_err(|source| PkiError::LoadCa {
        path: key_path.clone(),
        source,
    })?;
    let cert =
        CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| PkiError::LoadCa {
            path: cert_path.clone(),
            source: rcgen::Error::CouldNotParseCertificate,
        })?;
    // rcgen signs with whatever key it is given; a swapped ca.key would only show up later
    // as certificates no peer accepts.
    let (_, parsed) = x509_parser::parse_x509_certificate(&cert).map_err(|_| PkiError::LoadCa {
        path: cert_path.clone(),
        source: rcgen::Error::CouldNotParseCertificate,
    })?;
    if parsed.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
        return Err(PkiError::CaKeyMismatch {
            cert: cert_path,
            key: key_path,
        });
    }
    Issuer::from_ca_cert_der(&cert, key).map_err(|source| PkiError::LoadCa {
        path: cert_path,
        source,
    })
}

fn issue_server(
    ca: &Issuer<'_, KeyPair>,
    server_names: &[String],
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    let first_name = server_names.first().ok_or(PkiError::NoServerNames)?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, first_name.as_str());
    params.subject_alt_names = server_names
        .iter()
        .map(|name| server_san(name))
        .collect::<Result<_, _>>()?;
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    issue_leaf(ca, params, "server", not_before, not_after)
}

fn server_san(name: &str) -> Result<SanType, PkiError> {
    if let Ok(ip) = name.parse::<IpAddr>() {
        return Ok(SanType::IpAddress(ip));
    }
    name.try_into()
        .map(SanType::DnsName)
        .map_err(|source| PkiError::InvalidServerName {
            name: name.to_owned(),
            source,
        })
}

fn issue_agency(
    ca: &Issuer<'_, KeyPair>,
    code: &AgencyCode,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    let subject = format!("agency {code}");
    let params = agency_params(code, &subject, not_before, not_after)?;
    let key = KeyPair::generate().map_err(|source| PkiError::Issue {
        subject: subject.clone(),
        source,
    })?;
    let cert = params
        .signed_by(&key, ca)
        .map_err(|source| PkiError::Issue { subject, source })?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// What every agency certificate says, whoever made its key: the agency's code as common
/// name, its URN as the one SAN, client authentication only.
fn agency_params(
    code: &AgencyCode,
    subject: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<CertificateParams, PkiError> {
    let urn = code.urn().try_into().map_err(|source| PkiError::Issue {
        subject: subject.to_owned(),
        source,
    })?;
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, code.as_str());
    params.subject_alt_names = vec![SanType::URI(urn)];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    // rcgen's default serial is a hash of the public key: a second certificate for the
    // same request would repeat it, and revoking either would revoke both.
    params.serial_number = Some(random_serial()?);
    Ok(leaf_params(params, not_before, not_after))
}

/// 16 random bytes, positive as RFC 5280 wants serial numbers.
fn random_serial() -> Result<rcgen::SerialNumber, PkiError> {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| PkiError::Randomness)?;
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// Signs an end-entity certificate with a fresh key; returns (certificate PEM, key PEM).
fn issue_leaf(
    ca: &Issuer<'_, KeyPair>,
    params: CertificateParams,
    subject: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> Result<(String, String), PkiError> {
    let issue_error = |source| PkiError::Issue {
        subject: subject.to_owned(),
        source,
    };
    let params = leaf_params(params, not_before, not_after);
    let key = KeyPair::generate().map_err(issue_error)?;
    let cert = params.signed_by(&key, ca).map_err(issue_error)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The constraints of every end-entity certificate: not a CA, signatures only.
fn leaf_params(
    mut params: CertificateParams,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
) -> CertificateParams {
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.use_authority_key_identifier_extension = true;
    params.not_before = not_before;
    params.not_after = not_after;
    params
}

struct LedgerKey {
    pkcs8: Vec<u8>,
    public: [u8; 32],
}

fn generate_ledger_key() -> Result<LedgerKey, PkiError> {
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| PkiError::LedgerKeyGeneration)?;
    let pair =
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| PkiError::LedgerKeyGeneration)?;
    Ok(LedgerKey {
        public: pair
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| PkiError::LedgerKeyGeneration)?,
        pkcs8: pkcs8.as_ref().to_vec(),
    })
}

fn check_validity_days(days: u32) -> Result<(), PkiError> {
    if days == 0 {
        Err(PkiError::ZeroValidity)
    } else {
        Ok(())
    }
}

fn validity_from_now(days: u32) -> (OffsetDateTime, OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    (
        now - CLOCK_SKEW_ALLOWANCE,
        now + Duration::days(i64::from(days)),
    )
}

/// Writes files atomically (temporary file, then rename) so that a crash never leaves a
/// truncated key behind, and records what it wrote.
#[derive(Default)]
struct FileWriter {
    written: Vec<PathBuf>,
}

impl FileWriter {
    fn public(&mut self, path: &Path, contents: &[u8]) -> Result<(), PkiError> {
        self.write(path, contents, 0o644)
    }

    /// Private keys: readable by the owner only.
    fn secret(&mut self, path: &Path, contents: &[u8]) -> Result<(), PkiError> {
        self.write(path, contents, 0o600)
    }

    fn write(&mut self, path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let temporary = path.with_file_name(format!(".{file_name}.tmp"));
        let mut file = open_with_mode(&temporary, mode)?;
        file.write_all(contents)
            .map_err(FileError::at("write", &temporary))?;
        file.sync_all().map_err(FileError::at("sync", &temporary))?;
        fs::rename(&temporary, path).map_err(FileError::at("rename into place", path))?;
        self.written.push(path.to_path_buf());
        Ok(())
    }
}

#[cfg(unix)]
fn open_with_mode(path: &Path, mode: u32) -> Result<fs::File, PkiError> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(FileError::at("create", path))?;
    // `mode` only applies to new files; a leftover temporary file from an interrupted run
    // keeps its old permissions unless they are set again.
    file.set_permissions(fs::Permissions::from_mode(mode))
        .map_err(FileError::at("set permissions on", path))?;
    Ok(file)
}

#[cfg(not(unix))]
fn open_with_mode(path: &Path, _mode: u32) -> Result<fs::File, PkiError> {
    Ok(fs::File::create(path).map_err(FileError::at("create", path))?)
}

#[cfg(unix)]
fn set_mode(path: &Path, mode: u32) -> Result<(), PkiError> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .map_err(FileError::at("set permissions on", path))?;
    Ok(())
}

#[cfg(not(unix))]
fn set_mode(_path: &Path, _mode: u32) -> Result<(), PkiError> {
    Ok(())
}

/// `kek/k1.kek`: 32 random bytes in hex, the first key-encryption key of message bodies.
fn write_first_kek(layout: &PkiLayout, files: &mut FileWriter) -> Result<(), PkiError> {
    let dir = layout.kek_dir();
    create_dir(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700))
            .map_err(FileError::at("restrict", &dir))?;
    }
    let mut key = [0u8; 32];
    ring::rand::SecureRandom::fill(&SystemRandom::new(), &mut key)
        .map_err(|_| PkiError::Randomness)?;
    files.secret(
        &dir.join("k1.kek"),
        format!("{}\n", hex::encode(key)).as_bytes(),
    )
}

fn create_dir(path: &Path) -> Result<(), PkiError> {
    fs::create_dir_all(path).map_err(FileError::at("create directory", path))?;
    Ok(())
}

fn exists(path: &Path) -> Result<bool, PkiError> {
    Ok(path.try_exists().map_err(FileError::at("inspect", path))?)
}

/// The agency a client certificate names: its SAN URI `urn:liaison:agency:<code>`. `None`
/// when the certificate is unreadable, names no agency, or names more than one (an
/// ambiguous identity is no identity). It does not verify the certificate.
pub fn agency_from_cert(cert: &CertificateDer<'_>) -> Option<AgencyCode> {
    one_named(cert, AgencyCode::from_urn)
}

/// The auditor a client certificate names: its SAN URI `urn:liaison:auditor:<name>`, when
/// it names exactly one. It does not verify the certificate.
pub fn auditor_from_cert(cert: &CertificateDer<'_>) -> Option<String> {
    one_named(cert, liaison_core::agency::auditor_from_urn)
}

/// The one identity the SAN URIs of `cert` name, read by `parse`.
fn one_named<T: PartialEq>(
    cert: &CertificateDer<'_>,
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    let mut named = names
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            x509_parser::extensions::GeneralName::URI(uri) => parse(uri),
            _ => None,
        });
    let first = named.next()?;
    if named.any(|other| other != first) {
        return None;
    }
    Some(first)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(codes: &[&str]) -> Registry {
        if codes.is_empty() {
            return Registry::default();
        }
        let text: String = codes
            .iter()
            .map(|code| format!("[[agency]]\ncode = \"{code}\"\nname_zh = \"机构\"\nname_en = \"Agency {code}\"\n"))
            .collect();
        Registry::from_toml(&text, "test registry").unwrap()
    }

    fn code(code: &str) -> AgencyCode {
        AgencyCode::new(code).unwrap()
    }

    fn read_cert(path: &Path) -> CertificateDer<'static> {
        CertificateDer::from_pem_file(path).unwrap()
    }

    #[test]
    fn init_writes_every_file_of_the_layout() {
        let dir = tempfile::tempdir().unwrap();
        let summary = init(
            dir.path(),
            &registry(&["eco", "police"]),
            &PkiOptions::default(),
        )
        .unwrap();
        let layout = PkiLayout::new(dir.path());
        let mut expected: Vec<PathBuf> = layout.core_files().into();
        expected.push(layout.ledger_verifier_key());
        expected.push(layout.kek_dir().join("k1.kek"));
        for agency in ["eco", "police"] {
            expected.push(layout.agency_cert(&code(agency)));
            expected.push(layout.agency_key(&code(agency)));
        }
        for path in &expected {
            assert!(path.is_file(), "{} missing", path.display());
            assert!(
                summary.files.contains(path),
                "{} not reported",
                path.display()
            );
        }
        assert_eq!(summary.files.len(), expected.len());
        assert_eq!(summary.agencies, 2);
        assert_eq!(summary.dir, dir.path());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .filter(|name| name.to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    }

    #[test]
    fn agency_certificate_names_its_agency_and_chains_to_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&["eco"]), &PkiOptions::default()).unwrap();
        let layout = PkiLayout::new(dir.path());
        let eco = code("eco");
        let cert = read_cert(&layout.agency_cert(&eco));
        assert_eq!(agency_from_cert(&cert), Some(eco));

        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        let common_names: Vec<_> = parsed
            .subject()
            .iter_common_name()
            .map(|cn| cn.as_str().unwrap())
            .collect();
        assert_eq!(common_names, ["eco"]);
        let ca = read_cert(&layout.ca_cert());
        let (_, parsed_ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
        assert!(parsed_ca.is_ca());
        assert_eq!(parsed.issuer(), parsed_ca.subject());
        parsed
            .verify_signature(Some(parsed_ca.public_key()))
            .unwrap();
    }

    #[test]
    fn server_certificate_covers_dns_names_and_ip_addresses() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&[]), &PkiOptions::default()).unwrap();
        let cert = read_cert(&PkiLayout::new(dir.path()).server_cert());
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        let names = &parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        use x509_parser::extensions::GeneralName;
        assert!(names.contains(&GeneralName::DNSName("localhost")));
        assert!(names.contains(&GeneralName::IPAddress(&[127, 0, 0, 1])));
        assert_eq!(
            agency_from_cert(&cert),
            None,
            "the server certificate names no agency"
        );
    }

    #[cfg(unix)]
    #[test]
    fn private_keys_are_readable_by_the_owner_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&["eco"]), &PkiOptions::default()).unwrap();
        let layout = PkiLayout::new(dir.path());
        for key in [
            layout.ca_key(),
            layout.server_key(),
            layout.ledger_signing_key(),
            layout.kek_dir().join("k1.kek"),
            layout.agency_key(&code("eco")),
        ] {
            let mode = fs::metadata(&key).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{} has mode {mode:o}", key.display());
        }
    }

    #[test]
    fn the_broker_folder_holds_only_what_the_broker_reads() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&["eco"]), &PkiOptions::default()).unwrap();
        let mut top: Vec<String> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        top.sort();
        assert_eq!(
            top,
            [
                "agencies",
                "ca",
                "ca.pem",
                "kek",
                "ledger-signing.pk8",
                "ledger-signing.pub",
                "ledger-signing.vkey",
                "server.key",
                "server.pem"
            ]
        );
        let layout = PkiLayout::new(dir.path());
        assert_eq!(
            fs::read(layout.ca_cert()).unwrap(),
            fs::read(layout.ca_dir_cert()).unwrap()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = fs::metadata(layout.ca_dir()).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "ca/ has mode {mode:o}");
        }
        let warnings = custody_warnings(&layout);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("ca.key"), "{warnings:?}");
        assert!(warnings[1].contains("1 agency private key"), "{warnings:?}");
    }

    #[test]
    fn ensure_moves_a_legacy_ca_key_out_of_the_broker_folder() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&["eco"]), &PkiOptions::default()).unwrap();
        let layout = PkiLayout::new(dir.path());
        // The layout of PKIs made before ca/ existed.
        fs::rename(layout.ca_key(), layout.legacy_ca_key()).unwrap();
        fs::remove_dir_all(layout.ca_dir()).unwrap();
        assert!(
            custody_warnings(&layout)[0].contains("is in the broker's TLS folder"),
            "{:?}",
            custody_warnings(&layout)
        );
        let now = OffsetDateTime::now_utc();
        issue_agency_cert(dir.path(), &code("eco"), now, now + Duration::days(1))
            .expect("the legacy CA key still signs");

        ensure(dir.path(), &registry(&["eco"]), &PkiOptions::default()).unwrap();
        assert!(!layout.legacy_ca_key().exists());
        assert!(layout.ca_key().is_file());
        assert!(
            custody_warnings(&layout)
                .iter()
                .all(|w| !w.contains("is in the broker's TLS folder"))
        );
        issue_agency_cert(dir.path(), &code("eco"), now, now + Duration::days(1))
            .expect("the moved CA key signs");
    }

    fn request(params: CertificateParams) -> (KeyPair, String) {
        let key = KeyPair::generate().unwrap();
        let csr = params.serialize_request(&key).unwrap().pem().unwrap();
        (key, csr)
    }

    #[test]
    fn a_request_is_certified_with_the_agency_identity_only() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&["eco", "police"]);
        init(dir.path(), &registry, &PkiOptions::default()).unwrap();
        // The request asks for more than an agency certificate may have.
        let mut asked = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        asked.distinguished_name.push(DnType::CommonName, "police");
        asked.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        asked
            .subject_alt_names
            .push(SanType::URI(code("police").urn().try_into().unwrap()));
        let (key, csr) = request(asked);

        let pem = issue_from_csr(dir.path(), &registry, &code("eco"), &csr, 30).unwrap();
        let cert = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(agency_from_cert(&cert), Some(code("eco")));
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        assert_eq!(
            parsed.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw(),
            "the certificate is for the requester's key"
        );
        assert!(!parsed.is_ca());
        let names = &parsed
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names;
        assert_eq!(names.len(), 1, "{names:?}");
        let eku = parsed.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.client_auth && !eku.server_auth);
        let ca = read_cert(&PkiLayout::new(dir.path()).ca_cert());
        let (_, parsed_ca) = x509_parser::parse_x509_certificate(&ca).unwrap();
        parsed
            .verify_signature(Some(parsed_ca.public_key()))
            .unwrap();

        // Two certificates for one request have different serials.
        let again = issue_from_csr(dir.path(), &registry, &code("eco"), &csr, 30).unwrap();
        let again = CertificateDer::from_pem_slice(again.as_bytes()).unwrap();
        let (_, again) = x509_parser::parse_x509_certificate(&again).unwrap();
        assert_ne!(again.raw_serial(), parsed.raw_serial());
    }

    #[test]
    fn requests_for_unknown_agencies_or_with_bad_signatures_are_refused() {
        use x509_parser::prelude::FromDer;
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&["eco"]);
        init(dir.path(), &registry, &PkiOptions::default()).unwrap();
        let (_key, csr) = request(CertificateParams::default());
        let err = issue_from_csr(dir.path(), &registry, &code("nobody"), &csr, 30).unwrap_err();
        assert!(matches!(err, PkiError::UnknownAgency { .. }), "{err}");

        // The public key of one request under the signature of another: the signature
        // no longer proves possession of the key.
        let (_, other) = request(CertificateParams::default());
        let der = |pem: &str| {
            rustls_pki_types::CertificateSigningRequestDer::from_pem_slice(pem.as_bytes())
                .unwrap()
                .as_ref()
                .to_vec()
        };
        let (mine, theirs) = (der(&csr), der(&other));
        let (_, parsed_mine) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&mine).unwrap();
        let (_, parsed_theirs) =
            x509_parser::certification_request::X509CertificationRequest::from_der(&theirs)
                .unwrap();
        let my_key = parsed_mine.certification_request_info.subject_pki.raw;
        let their_key = parsed_theirs.certification_request_info.subject_pki.raw;
        assert_eq!(my_key.len(), their_key.len());
        let start = mine
            .windows(my_key.len())
            .position(|w| w == my_key)
            .unwrap();
        let mut forged = mine.clone();
        forged[start..start + my_key.len()].copy_from_slice(their_key);
        let forged_pem = pem_encode("CERTIFICATE REQUEST", &forged);
        let err = issue_from_csr(dir.path(), &registry, &code("eco"), &forged_pem, 30).unwrap_err();
        assert!(matches!(err, PkiError::InvalidCsr { .. }), "{err}");
        let err = issue_from_csr(dir.path(), &registry, &code("eco"), "garbage", 30).unwrap_err();
        assert!(matches!(err, PkiError::InvalidCsr { .. }), "{err}");
    }

    fn pem_encode(label: &str, der: &[u8]) -> String {
        use base64::Engine;
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    #[test]
    fn ledger_key_files_hold_one_key_pair() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&[]), &PkiOptions::default()).unwrap();
        let layout = PkiLayout::new(dir.path());
        let signing = load_ledger_signing_key(&layout).unwrap();
        let public = read_ledger_public_key(&layout).unwrap();
        assert_eq!(signing.public_key().as_ref(), public);
        let message = b"checkpoint";
        let signature = signing.sign(message);
        ring::signature::UnparsedPublicKey::new(&ring::signature::ED25519, public)
            .verify(message, signature.as_ref())
            .unwrap();
    }

    /// The verifier key names the origin it was made for and verifies what the signing key
    /// signs under it; a PKI made before it existed gets it from `ensure`, and `pki vkey`
    /// rewrites it for another origin.
    #[test]
    fn the_verifier_key_names_the_origin_and_verifies_the_signing_key() {
        let dir = tempfile::tempdir().unwrap();
        let options = PkiOptions {
            origin: "ledger.county.example/liaison".into(),
            ..PkiOptions::default()
        };
        init(dir.path(), &registry(&[]), &options).unwrap();
        let layout = PkiLayout::new(dir.path());
        let text = fs::read_to_string(layout.ledger_verifier_key()).unwrap();
        assert!(text.starts_with("ledger.county.example/liaison+"), "{text}");
        assert!(text.ends_with('\n') && text.lines().count() == 1);
        let verifier = read_verifier_key(&layout).unwrap().unwrap();
        assert_eq!(
            verifier.public_key(),
            read_ledger_public_key(&layout).unwrap()
        );
        let signer = liaison_core::checkpoint::CheckpointSigner::new(
            "ledger.county.example/liaison",
            load_ledger_signing_key(&layout).unwrap(),
        )
        .unwrap();
        let note = signer.sign(1, [0; 32], OffsetDateTime::now_utc());
        assert_eq!(verifier.open(&note).unwrap().size, 1);

        // An older PKI without it: `ensure` adds it (under the options' origin), and never
        // replaces one that exists.
        fs::remove_file(layout.ledger_verifier_key()).unwrap();
        assert!(read_verifier_key(&layout).unwrap().is_none());
        let summary = ensure(dir.path(), &registry(&[]), &PkiOptions::default()).unwrap();
        assert_eq!(summary.files, vec![layout.ledger_verifier_key()]);
        assert_eq!(
            read_verifier_key(&layout).unwrap().unwrap().origin(),
            liaison_core::checkpoint::DEMO_ORIGIN
        );
        let summary = ensure(dir.path(), &registry(&[]), &options).unwrap();
        assert!(summary.files.is_empty());

        let vkey = write_verifier_key(&layout, "ledger.county.example/liaison").unwrap();
        assert_eq!(vkey, verifier.vkey());
        assert_eq!(read_verifier_key(&layout).unwrap().unwrap(), verifier);
        assert!(matches!(
            write_verifier_key(&layout, "with space"),
            Err(PkiError::Origin { .. })
        ));
    }

    #[test]
    fn an_agency_pkcs12_holds_its_key_certificate_and_the_ca() {
        let dir = tempfile::tempdir().unwrap();
        let registry = registry(&["eco", "police"]);
        init(dir.path(), &registry, &PkiOptions::default()).unwrap();
        let layout = PkiLayout::new(dir.path());
        let password = random_password().unwrap();
        assert_eq!(password.len(), 20);
        let written = write_agency_pkcs12s(&layout, &registry, &password).unwrap();
        assert_eq!(written.len(), 2);
        let eco = code("eco");
        let bytes = fs::read(layout.agency_p12(&eco)).unwrap();
        let store = p12_keystore::KeyStore::from_pkcs12(
            &bytes,
            &password,
            p12_keystore::Pkcs12ImportPolicy::Strict,
        )
        .unwrap();
        let (_, chain) = store.private_key_chain().expect("a key with its chain");
        let cert = CertificateDer::from_pem_file(layout.agency_cert(&eco)).unwrap();
        let ca = CertificateDer::from_pem_file(layout.ca_cert()).unwrap();
        assert_eq!(chain.certs()[0].as_der(), cert.as_ref());
        assert_eq!(chain.certs()[1].as_der(), ca.as_ref());
        assert!(
            p12_keystore::KeyStore::from_pkcs12(
                &bytes,
                "wrong",
                p12_keystore::Pkcs12ImportPolicy::Strict
            )
            .is_err()
        );
    }

    #[test]
    fn init_refuses_an_existing_pki() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&["eco"]), &PkiOptions::default()).unwrap();
        let ca_before = fs::read(PkiLayout::new(dir.path()).ca_cert()).unwrap();
        let err = init(dir.path(), &registry(&["eco"]), &PkiOptions::default()).unwrap_err();
        assert!(matches!(err, PkiError::AlreadyInitialised { .. }), "{err}");
        assert!(
            err.to_string().contains("ensure"),
            "the error names the way out: {err}"
        );
        assert_eq!(
            fs::read(PkiLayout::new(dir.path()).ca_cert()).unwrap(),
            ca_before
        );
    }

    #[test]
    fn ensure_keeps_the_ca_and_adds_only_missing_agencies() {
        let dir = tempfile::tempdir().unwrap();
        let layout = PkiLayout::new(dir.path());
        init(dir.path(), &registry(&["eco"]), &PkiOptions::default()).unwrap();
        let kept: Vec<_> = [
            layout.ca_cert(),
            layout.ca_key(),
            layout.server_cert(),
            layout.agency_cert(&code("eco")),
        ]
        .into_iter()
        .map(|path| (fs::read(&path).unwrap(), path))
        .collect();

        let summary = ensure(
            dir.path(),
            &registry(&["eco", "police"]),
            &PkiOptions::default(),
        )
        .unwrap();
        let police = code("police");
        assert_eq!(
            summary.files,
            [layout.agency_key(&police), layout.agency_cert(&police)]
        );
        assert_eq!(summary.agencies, 2);
        for (contents, path) in kept {
            assert_eq!(
                fs::read(&path).unwrap(),
                contents,
                "{} changed",
                path.display()
            );
        }
        let police_cert = read_cert(&layout.agency_cert(&police));
        assert_eq!(agency_from_cert(&police_cert), Some(police));
        let (_, parsed) = x509_parser::parse_x509_certificate(&police_cert).unwrap();
        let ca_der = read_cert(&layout.ca_cert());
        let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
        parsed.verify_signature(Some(ca.public_key())).unwrap();

        let again = ensure(
            dir.path(),
            &registry(&["eco", "police"]),
            &PkiOptions::default(),
        )
        .unwrap();
        assert!(again.files.is_empty(), "nothing to add: {:?}", again.files);
    }

    #[test]
    fn ensure_creates_a_pki_where_there_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pki");
        let summary = ensure(&out, &registry(&["eco"]), &PkiOptions::default()).unwrap();
        assert!(PkiLayout::new(&out).ca_cert().is_file());
        assert_eq!(summary.agencies, 1);
    }

    #[test]
    fn ensure_refuses_an_incomplete_pki() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&[]), &PkiOptions::default()).unwrap();
        let layout = PkiLayout::new(dir.path());
        fs::remove_file(layout.server_key()).unwrap();
        let err = ensure(dir.path(), &registry(&[]), &PkiOptions::default()).unwrap_err();
        assert!(
            matches!(&err, PkiError::Incomplete { missing, .. } if *missing == layout.server_key()),
            "{err}"
        );
    }

    #[test]
    fn a_ca_key_from_another_pki_is_refused() {
        let (first, second) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        init(first.path(), &registry(&[]), &PkiOptions::default()).unwrap();
        init(second.path(), &registry(&[]), &PkiOptions::default()).unwrap();
        fs::copy(
            PkiLayout::new(second.path()).ca_key(),
            PkiLayout::new(first.path()).ca_key(),
        )
        .unwrap();
        let now = OffsetDateTime::now_utc();
        let err = issue_agency_cert(first.path(), &code("eco"), now, now + Duration::days(1))
            .unwrap_err();
        assert!(matches!(err, PkiError::CaKeyMismatch { .. }), "{err}");
    }

    #[test]
    fn issued_certificates_carry_the_requested_validity() {
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry(&[]), &PkiOptions::default()).unwrap();
        let not_before = OffsetDateTime::now_utc() - Duration::days(10);
        let not_after = OffsetDateTime::now_utc() - Duration::days(1);
        let (cert_pem, key_pem) =
            issue_agency_cert(dir.path(), &code("eco"), not_before, not_after).unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).unwrap();
        let (_, parsed) = x509_parser::parse_x509_certificate(&cert).unwrap();
        assert_eq!(
            parsed.validity().not_after.timestamp(),
            not_after.unix_timestamp()
        );
        assert!(!parsed.validity().is_valid());

        let err = issue_agency_cert(dir.path(), &code("eco"), not_after, not_before).unwrap_err();
        assert!(matches!(err, PkiError::EmptyValidity { .. }), "{err}");
    }

    #[test]
    fn invalid_options_are_refused_before_anything_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("pki");
        let no_names = PkiOptions {
            server_names: vec![],
            ..PkiOptions::default()
        };
        assert!(matches!(
            init(&out, &registry(&[]), &no_names),
            Err(PkiError::NoServerNames)
        ));
        let bad_name = PkiOptions {
            server_names: vec!["bad name\u{7f}é".to_owned()],
            ..PkiOptions::default()
        };
        assert!(matches!(
            init(&out, &registry(&[]), &bad_name),
            Err(PkiError::InvalidServerName { .. })
        ));
        let zero = PkiOptions {
            validity_days: 0,
            ..PkiOptions::default()
        };
        assert!(matches!(
            init(&out, &registry(&[]), &zero),
            Err(PkiError::ZeroValidity)
        ));
        assert!(!out.exists());
    }
}
