//! Certificate revocation: `liaison pki revoke --agency CODE` adds the agency's current
//! client certificate to `crl.pem`, a CRL signed by the development CA; the gateway loads
//! that file at start (`tls::server_config`) and refuses revoked certificates in the TLS
//! handshake.
//!
//! The CRL is rewritten whole on each revocation: it keeps every serial it held, gets the
//! next CRL number, and is written through a temporary file so that a crash never leaves
//! a truncated CRL (which would stop the gateway from starting).

use std::fs;
use std::path::{Path, PathBuf};

use liaison_core::AgencyCode;
use rcgen::{
    CertificateRevocationListParams, KeyIdMethod, RevocationReason, RevokedCertParams, SerialNumber,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer};
use time::{Duration, OffsetDateTime};

use crate::pki::{self, PkiLayout};

/// How long a CRL written here stays current. rustls does not enforce `nextUpdate` by
/// default, but other verifiers may: a year keeps a development PKI usable.
const CRL_VALIDITY: Duration = Duration::days(365);

#[derive(Debug, thiserror::Error)]
pub enum CrlError {
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a PEM certificate revocation list: {reason}")]
    Parse { path: PathBuf, reason: String },
    #[error("cannot read the certificate of agency {agency} at {path}: {reason}")]
    Certificate {
        agency: AgencyCode,
        path: PathBuf,
        reason: String,
    },
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
            return Err(CrlError::Io {
                action: "read",
                path,
                source,
            });
        }
    };
    let crls = CertificateRevocationListDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CrlError::Parse {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if crls.is_empty() {
        return Err(CrlError::Parse {
            path,
            reason: "no X509 CRL block".to_owned(),
        });
    }
    Ok(crls)
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
    let cert_path = layout.agency_cert(agency);
    let serial = certificate_serial(agency, &cert_path)?;
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
    let params = CertificateRevocationListParams {
        this_update: now,
        next_update: now + CRL_VALIDITY,
        crl_number: SerialNumber::from(number + 1),
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
    Ok(Revoked {
        crl: path,
        serial: hex::encode(serial.as_ref()),
        total: params.revoked_certs.len(),
    })
}

fn certificate_serial(agency: &AgencyCode, path: &Path) -> Result<SerialNumber, CrlError> {
    let error = |reason: String| CrlError::Certificate {
        agency: agency.clone(),
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
    let io = |action, path: &Path| {
        let path = path.to_owned();
        move |source| CrlError::Io {
            action,
            path,
            source,
        }
    };
    fs::write(&temporary, contents).map_err(io("write", &temporary))?;
    fs::rename(&temporary, path).map_err(io("rename into", path))
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
        // Signed by the CA: the gateway's verifier accepts it.
        let layout_config = crate::tls::server_config(&layout);
        assert!(layout_config.is_ok(), "{:?}", layout_config.err());
    }

    #[test]
    fn a_corrupt_crl_is_an_error_not_an_empty_list() {
        let (_dir, layout) = pki_dir();
        fs::write(crl_path(&layout), "not a crl").unwrap();
        assert!(matches!(load(&layout), Err(CrlError::Parse { .. })));
    }
}
