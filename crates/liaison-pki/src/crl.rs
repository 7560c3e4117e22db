//! Certificate revocation: `liaison pki revoke --agency CODE` adds the agency's current
//! client certificate to `crl.pem`, a CRL signed by the development CA; the gateway loads
//! that file at start and again whenever it changes (`liaison_server::tls::revocation`), and refuses
//! revoked certificates in the TLS handshake.
//!
//! The CRL is rewritten whole on each revocation: it keeps every serial it held, gets the
//! next CRL number, and is written through a temporary file so that a crash never leaves
//! a truncated CRL (which would stop the gateway from starting).

use liaison_core::FileError;
use std::fs;
use std::path::{Path, PathBuf};

use liaison_core::AgencyCode;
use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::{Duration, OffsetDateTime};

use crate::{self as pki, PkiLayout};

/// How long a CRL written here stays current. rustls does not enforce `nextUpdate` by
/// default, but other verifiers may: a year keeps a development PKI usable.
const CRL_VALIDITY: Duration = Duration::days(365);

#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error(transparent)]
    Io(#[from] liaison_core::FileError),
    #[error("{path} is not a PEM certificate revocation list: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot read the certificate {path}: {reason}")]
    Certificate { path: PathBuf, reason: String },
    #[error("the CRL {path} is not signed by the CA in {ca}: {reason}")]
    NotFromCa {
        path: PathBuf,
        ca: PathBuf,
        reason: String,
    },
    #[error(
        "the configured CRL {path} does not exist: the broker does not start without the revocations it was told to enforce"
    )]
    Missing { path: PathBuf },
    #[error("loading the CA to sign the CRL: {0}")]
    Ca(#[from] pki::PkiError),
    #[error("signing the CRL: {0}")]
    Sign(#[source] rcgen::Error),
}

/// The CRL file of a PKI directory.
pub fn crl_path(layout: &PkiLayout) -> PathBuf {
    layout.dir.join("crl.pem")
}

/// The CRLs the gateway enforces: the contents of `crl.pem`, or none when there is no
/// such file (nothing was ever revoked).
pub fn load(layout: &PkiLayout) -> Result<Vec<CertificateRevocationListDer<'static>>, CrlError> {
    let path = crl_path(layout);
    let pem = match fs::read(&path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(FileError::new("read", path, source).into());
        }
    };
    parse_pem(&path, &pem)
}

fn parse_pem(
    path: &Path,
    pem: &[u8],
) -> Result<Vec<CertificateRevocationListDer<'static>>, CrlError> {
    let crls = CertificateRevocationListDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CrlError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(CrlError::Parse {
            path: path.to_owned(),
            reason: "no X509 CRL block".to_owned(),
        });
    }
    Ok(crls)
}

/// A CRL file as read and checked by [`read`].
#[derive(Debug, Clone)]
pub struct Crl {
    pub ders: Vec<CertificateRevocationListDer<'static>>,
    pub info: CrlInfo,
    /// The serial numbers listed (the bytes of each DER integer).
    pub serials: Vec<Vec<u8>>,
}

/// What a CRL file says, for logs and `/readyz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrlInfo {
    pub path: PathBuf,
    /// The highest CRL number in the file.
    pub number: Option<u64>,
    /// The earliest `nextUpdate` in the file: after it, the CRL is stale.
    pub next_update: Option<OffsetDateTime>,
    /// Serial numbers listed, over every CRL in the file.
    pub revoked: usize,
}

impl CrlInfo {
    /// Whether `nextUpdate` has passed at `now`.
    pub fn expired_at(&self, now: OffsetDateTime) -> bool {
        self.next_update.is_some_and(|next| next < now)
    }
}

/// Reads the CRL file `path` and checks that every CRL in it is issued and signed by the CA
/// certificate in `ca_cert`. A CRL from another CA would otherwise be found only at the
/// next handshake, as a refusal of every client; here it is refused before it replaces
/// the CRL in force. `Ok(None)` when the file does not exist.
pub fn read(path: &Path, ca_cert: &Path) -> Result<Option<Crl>, CrlError> {
    let pem = match fs::read(path) {
        Ok(pem) => pem,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(FileError::new("read", path, source).into());
        }
    };
    let ders = parse_pem(path, &pem)?;
    let not_from_ca = |reason: String| CrlError::NotFromCa {
        path: path.to_owned(),
        ca: ca_cert.to_owned(),
        reason,
    };
    let ca_der = CertificateDer::from_pem_file(ca_cert).map_err(|e| not_from_ca(e.to_string()))?;
    let (_, ca) = x509_parser::parse_x509_certificate(ca_der.as_ref())
        .map_err(|e| not_from_ca(e.to_string()))?;
    let mut info = CrlInfo {
        path: path.to_owned(),
        number: None,
        next_update: None,
        revoked: 0,
    };
    let mut serials = Vec::new();
    for der in &ders {
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| CrlError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if crl.issuer() != ca.subject() {
            return Err(not_from_ca(format!("issued by {}", crl.issuer())));
        }
        crl.verify_signature(ca.public_key())
            .map_err(|e| not_from_ca(format!("signature: {e}")))?;
        if let Some(n) = crl.crl_number().and_then(|n| u64::try_from(n).ok()) {
            info.number = Some(info.number.map_or(n, |m| m.max(n)));
        }
        if let Some(next) = crl
            .next_update()
            .and_then(|t| OffsetDateTime::from_unix_timestamp(t.timestamp()).ok())
        {
            info.next_update = Some(info.next_update.map_or(next, |m| m.min(next)));
        }
        serials.extend(
            crl.iter_revoked_certificates()
                .map(|r| r.raw_serial().to_vec()),
        );
    }
    info.revoked = serials.len();
    Ok(Some(Crl {
        ders,
        info,
        serials,
    }))
}

/// What [`revoke`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revoked {
    pub crl: PathBuf,
    /// The revoked certificate's serial number, hex.
    pub serial: String,
    /// Serials the CRL now lists, this one included.
    pub total: usize,
}

/// Revokes the client certificate at `agencies/<code>.pem` of the PKI in `layout`.
/// Revoking the same certificate twice keeps one entry.
pub fn revoke(layout: &PkiLayout, agency: &AgencyCode) -> Result<Revoked, CrlError> {
    revoke_certificate(layout, &layout.agency_cert(agency))
}

/// Revokes the certificate in the PEM file `cert_path` (one the CA of `layout` issued,
/// wherever it is kept: certificates issued from an agency's request need not be in
/// `agencies/`).
pub fn revoke_certificate(layout: &PkiLayout, cert_path: &Path) -> Result<Revoked, CrlError> {
    let serial = certificate_serial(cert_path)?;
    let now = OffsetDateTime::now_utc();
    let (mut revoked, number) = existing_entries(layout)?;
    if !revoked.iter().any(|r| r.serial_number == serial) {
        revoked.push(RevokedCertParams {
            serial_number: serial.clone(),
            revocation_time: now,
            reason_code: Some(RevocationReason::CessationOfOperation),
            invalidity_date: None,
        });
    }
    let total = revoked.len();
    let path = sign(layout, revoked, number + 1, now, now + CRL_VALIDITY)?;
    Ok(Revoked {
        crl: path,
        serial: hex::encode(serial.as_ref()),
        total,
    })
}

/// Signs the CRL again with the same entries, valid from `this_update` to `next_update`:
/// a CRL is stale after its `nextUpdate` (the broker then reports itself not ready), so
/// the CA re-signs it before then even when nothing new was revoked. Returns its path.
pub fn refresh(
    layout: &PkiLayout,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<PathBuf, CrlError> {
    let (revoked, number) = existing_entries(layout)?;
    sign(layout, revoked, number + 1, this_update, next_update)
}

/// Refreshes the CRL from now for `days` days.
pub fn refresh_for_days(layout: &PkiLayout, days: u32) -> Result<PathBuf, CrlError> {
    let now = OffsetDateTime::now_utc();
    refresh(layout, now, now + Duration::days(i64::from(days)))
}

/// Whether the CRL of `layout` lists the certificate in `cert_path`.
pub fn is_revoked(layout: &PkiLayout, cert_path: &Path) -> Result<bool, CrlError> {
    let serial = certificate_serial(cert_path)?;
    let (revoked, _) = existing_entries(layout)?;
    Ok(revoked.iter().any(|r| r.serial_number == serial))
}

fn sign(
    layout: &PkiLayout,
    revoked: Vec<RevokedCertParams>,
    number: u64,
    this_update: OffsetDateTime,
    next_update: OffsetDateTime,
) -> Result<PathBuf, CrlError> {
    let params = CertificateRevocationListParams {
        this_update,
        next_update,
        crl_number: SerialNumber::from(number),
        issuing_distribution_point: None,
        revoked_certs: revoked,
        key_identifier_method: KeyIdMethod::Sha256,
    };
    let issuer = pki::load_ca(layout)?;
    let pem = params
        .signed_by(&issuer)
        .and_then(|crl| crl.pem())
        .map_err(CrlError::Sign)?;
    let path = crl_path(layout);
    write_atomically(&path, pem.as_bytes())?;
    Ok(path)
}

fn certificate_serial(path: &Path) -> Result<SerialNumber, CrlError> {
    let error = |reason: String| CrlError::Certificate {
        path: path.to_owned(),
        reason,
    };
    let der = CertificateDer::from_pem_file(path).map_err(|e| error(e.to_string()))?;
    let (_, cert) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| error(e.to_string()))?;
    Ok(SerialNumber::from_slice(cert.raw_serial()))
}

/// The entries of the current CRL and its number (0 when there is none yet).
fn existing_entries(layout: &PkiLayout) -> Result<(Vec<RevokedCertParams>, u64), CrlError> {
    let path = crl_path(layout);
    let mut entries = Vec::new();
    let mut number = 0u64;
    for der in load(layout)? {
        let (_, crl) = x509_parser::parse_x509_crl(der.as_ref()).map_err(|e| CrlError::Parse {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        if let Some(n) = crl.crl_number().and_then(|n| u64::try_from(n).ok()) {
            number = number.max(n);
        }
        for entry in crl.iter_revoked_certificates() {
            let revoked_at = OffsetDateTime::from_unix_timestamp(entry.revocation_date.timestamp())
                .unwrap_or_else(|_| OffsetDateTime::now_utc());
            entries.push(RevokedCertParams {
                serial_number: SerialNumber::from_slice(entry.raw_serial()),
                revocation_time: revoked_at,
                reason_code: Some(RevocationReason::CessationOfOperation),
                invalidity_date: None,
            });
        }
    }
    Ok((entries, number))
}

fn write_atomically(path: &Path, contents: &[u8]) -> Result<(), CrlError> {
    let temporary = path.with_extension("pem.tmp");
    fs::write(&temporary, contents).map_err(FileError::at("write", &temporary))?;
    fs::rename(&temporary, path).map_err(FileError::at("rename into", path))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use liaison_core::Registry;

    fn pki_dir() -> (tempfile::TempDir, PkiLayout) {
        let dir = tempfile::tempdir().unwrap();
        let registry = Registry::load(
            &Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/demo/agencies.toml"),
        )
        .unwrap();
        let out = dir.path().join("pki");
        pki::init(&out, &registry, &pki::PkiOptions::default()).unwrap();
        (dir, PkiLayout::new(out))
    }

    #[test]
    fn no_crl_file_means_nothing_revoked() {
        let (_dir, layout) = pki_dir();
        assert!(load(&layout).unwrap().is_empty());
    }

    #[test]
    fn revoking_lists_each_certificate_once_and_counts_up() {
        let (_dir, layout) = pki_dir();
        let eco = AgencyCode::new("eco").unwrap();
        let first = revoke(&layout, &eco).unwrap();
        assert_eq!(first.total, 1);
        assert_eq!(revoke(&layout, &eco).unwrap().total, 1, "idempotent");
        let market = revoke(&layout, &AgencyCode::new("market").unwrap()).unwrap();
        assert_eq!(market.total, 2);

        let crls = load(&layout).unwrap();
        assert_eq!(crls.len(), 1);
        let (_, crl) = x509_parser::parse_x509_crl(crls[0].as_ref()).unwrap();
        assert_eq!(
            crl.crl_number().and_then(|n| u64::try_from(n).ok()),
            Some(3)
        );
        let serials: Vec<String> = crl
            .iter_revoked_certificates()
            .map(|r| hex::encode(r.raw_serial()))
            .collect();
        assert!(serials.contains(&first.serial), "{serials:?}");
        let read = read(&crl_path(&layout), &layout.ca_cert())
            .unwrap()
            .unwrap();
        assert_eq!(read.info.number, Some(3));
        assert_eq!(read.info.revoked, 2);
        assert!(!read.info.expired_at(OffsetDateTime::now_utc()));
    }

    #[test]
    fn a_refreshed_crl_keeps_its_entries_and_carries_the_new_dates() {
        let (_dir, layout) = pki_dir();
        let eco = AgencyCode::new("eco").unwrap();
        revoke(&layout, &eco).unwrap();
        let now = OffsetDateTime::now_utc();
        refresh(&layout, now - Duration::days(2), now - Duration::days(1)).unwrap();
        let stale = read(&crl_path(&layout), &layout.ca_cert())
            .unwrap()
            .unwrap();
        assert_eq!(stale.info.revoked, 1);
        assert_eq!(stale.info.number, Some(2));
        assert!(stale.info.expired_at(now));
        assert!(is_revoked(&layout, &layout.agency_cert(&eco)).unwrap());
        assert!(
            !is_revoked(
                &layout,
                &layout.agency_cert(&AgencyCode::new("market").unwrap())
            )
            .unwrap()
        );

        refresh_for_days(&layout, 7).unwrap();
        let fresh = read(&crl_path(&layout), &layout.ca_cert())
            .unwrap()
            .unwrap();
        assert!(!fresh.info.expired_at(now));
        assert_eq!(fresh.info.revoked, 1);
    }

    #[test]
    fn a_crl_of_another_ca_is_refused() {
        let (_dir, layout) = pki_dir();
        let (_other_dir, other) = pki_dir();
        revoke(&other, &AgencyCode::new("eco").unwrap()).unwrap();
        let err = read(&crl_path(&other), &layout.ca_cert()).unwrap_err();
        assert!(matches!(err, CrlError::NotFromCa { .. }), "{err}");
        assert!(
            read(&crl_path(&layout), &layout.ca_cert())
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn a_corrupt_crl_is_an_error_not_an_empty_list() {
        let (_dir, layout) = pki_dir();
        fs::write(crl_path(&layout), "not a crl").unwrap();
        assert!(matches!(load(&layout), Err(CrlError::Parse { .. })));
    }
}
