//! Mutual TLS: the gateway's rustls configuration, the agencies' client configuration, and
//! the mapping from a verified client certificate to the agency it names.
//!
//! Every configuration is built with the ring provider passed explicitly, so nothing here
//! depends on a process-wide default provider having been installed.
//!
//! The certificates and lists it loads are made by `liaison-pki`; `revocation` keeps the
//! list in force, reloaded while the gateway runs.

pub mod revocation;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock, Mutex};

use liaison_core::AgencyCode;
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use liaison_pki::PkiLayout;

/// What axum-server's rustls acceptor stores about the connection.
pub use axum_server::tls::TlsInfo;

/// The exact type axum-server 0.9 inserts into every request's extensions after the TLS
/// handshake: `request.extensions().get::<PeerTls>()`.
pub type PeerTls = Arc<TlsInfo>;

/// ALPN protocols offered by the gateway and by agency clients, preferred first.
const ALPN_PROTOCOLS: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read PEM certificates from {path}: {source}")]
    ReadCertificates {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("cannot read the PEM private key {path}: {source}")]
    ReadKey {
        path: PathBuf,
        #[source]
        source: rustls_pki_types::pem::Error,
    },
    #[error("the CA certificate in {path} is not a usable trust anchor: {source}")]
    TrustAnchor {
        path: PathBuf,
        #[source]
        source: rustls::Error,
    },
    #[error("cannot verify client certificates against {path}: {source}")]
    ClientVerifier {
        path: PathBuf,
        #[source]
        source: rustls::server::VerifierBuilderError,
    },
    #[error("certificate revocation list: {0}")]
    Crl(#[from] liaison_pki::crl::CrlError),
    #[error("the ring provider supports none of the safe TLS versions: {0}")]
    ProtocolVersions(#[source] rustls::Error),
    #[error("certificate {cert} and key {key} do not form a usable identity: {source}")]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        #[source]
        source: rustls::Error,
    },
}

/// Installs ring as the process-wide rustls provider, for libraries that build their own
/// configurations from the default (reqwest, lapin). Idempotent; call first in `main`.
pub fn install_crypto_provider() {
    // An error only says a provider is already installed; which one won is not ours to
    // overrule, and this tree compiles no other provider anyway.
    let _already_installed = rustls::crypto::ring::default_provider().install_default();
}

/// rustls server config requiring a client certificate chained to `ca.pem`
/// (WebPkiClientVerifier, which also enforces validity dates and the clientAuth usage),
/// presenting `server.pem`/`server.key`, ALPN `h2` then `http/1.1`.
pub fn server_config(layout: &PkiLayout) -> Result<ServerConfig, TlsError> {
    server_config_with_crls(layout, liaison_pki::crl::load(layout)?)
}

/// [`server_config`] enforcing the given CRLs: certificates they list (`liaison pki
/// revoke`) fail the handshake. Reads the CA and the server's identity from `layout`
/// anew, so a rebuilt configuration also picks up a renewed server certificate.
pub fn server_config_with_crls(
    layout: &PkiLayout,
    crls: Vec<rustls_pki_types::CertificateRevocationListDer<'static>>,
) -> Result<ServerConfig, TlsError> {
    let provider = ring_provider();
    let ca_path = layout.ca_cert();
    let verifier = WebPkiClientVerifier::builder_with_provider(
        Arc::new(root_store(&ca_path)?),
        provider.clone(),
    )
    .with_crls(crls)
    .build()
    .map_err(|source| TlsError::ClientVerifier {
        path: ca_path,
        source,
    })?;
    let (cert_path, key_path) = (layout.server_cert(), layout.server_key());
    let chain = read_certificates(&cert_path)?;
    let key = read_private_key(&key_path)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ProtocolVersions)?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|source| TlsError::Identity {
            cert: cert_path,
            key: key_path,
            source,
        })?;
    config.alpn_protocols = alpn_protocols();
    Ok(config)
}

/// rustls client config for an agency: trusts `ca.pem`, presents `agencies/<code>.pem`.
pub fn agency_client_config(
    layout: &PkiLayout,
    agency: &AgencyCode,
) -> Result<ClientConfig, TlsError> {
    client_config(
        &layout.ca_cert(),
        &layout.agency_cert(agency),
        &layout.agency_key(agency),
    )
}

/// rustls client config trusting the CA certificates in `ca_cert` and presenting the
/// certificate chain `cert` with its private key `key` (all PEM files), for clients whose
/// files live outside a PKI directory.
pub fn client_config(ca_cert: &Path, cert: &Path, key: &Path) -> Result<ClientConfig, TlsError> {
    let chain = read_certificates(cert)?;
    let private_key = read_private_key(key)?;
    let mut config = ClientConfig::builder_with_provider(ring_provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::ProtocolVersions)?
        .with_root_certificates(root_store(ca_cert)?)
        .with_client_auth_cert(chain, private_key)
        .map_err(|source| TlsError::Identity {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            source,
        })?;
    config.alpn_protocols = alpn_protocols();
    Ok(config)
}

/// What a verified client certificate names (`liaison-pki` says what its certificates
/// carry): call these only on a certificate the TLS handshake has verified, as
/// [`peer_agency`] does.
pub use liaison_pki::{agency_from_cert, auditor_from_cert};

/// The agency of the client that sent a request, from the [`PeerTls`] that axum-server
/// put into the request's extensions. `None` for a request that did not come through a
/// TLS acceptor or whose client certificate names no agency.
///
/// The certificates there are only trustworthy because [`server_config`] makes the
/// handshake verify them; a server built on another configuration must not use this.
pub fn peer_agency(extensions: &http::Extensions) -> Option<AgencyCode> {
    peer_identity(extensions)?.agency
}

/// The serial number (the bytes of its DER integer) of the client certificate of a
/// request, for the revocation check of requests on connections opened before a
/// revocation. `None` without a client certificate or for one that cannot be read.
pub fn peer_serial(extensions: &http::Extensions) -> Option<Vec<u8>> {
    peer_identity(extensions)?.serial
}

#[derive(Clone)]
struct PeerIdentity {
    agency: Option<AgencyCode>,
    auditor: Option<String>,
    serial: Option<Vec<u8>>,
}

/// The auditor (`urn:liaison:auditor:<name>`) of the client that sent a request, like
/// [`peer_agency`]: `None` when its certificate names no auditor.
pub fn peer_auditor(extensions: &http::Extensions) -> Option<String> {
    peer_identity(extensions)?.auditor
}

fn peer_identity(extensions: &http::Extensions) -> Option<PeerIdentity> {
    let tls = extensions.get::<PeerTls>()?;
    let leaf = tls.peer_certificates.first()?;
    let known = lock_peers().get(leaf.as_slice()).cloned();
    if let Some(identity) = known {
        return Some(identity);
    }
    let cert = CertificateDer::from(leaf.as_slice());
    let identity = PeerIdentity {
        agency: agency_from_cert(&cert),
        auditor: auditor_from_cert(&cert),
        serial: x509_parser::parse_x509_certificate(cert.as_ref())
            .ok()
            .map(|(_, parsed)| parsed.raw_serial().to_vec()),
    };
    let mut peers = lock_peers();
    if peers.len() >= KNOWN_PEERS_MAX {
        peers.clear();
    }
    peers.insert(leaf.clone(), identity.clone());
    Some(identity)
}

/// Client certificates already read, with the agency each names. Every request on a
/// connection carries the same certificate, and parsing it costs more than everything
/// else the gateway does with a small message's headers; a county has a few dozen
/// agencies, so the map stays small (and is emptied if something makes it grow).
static KNOWN_PEERS: LazyLock<Mutex<HashMap<Vec<u8>, PeerIdentity>>> = LazyLock::new(Mutex::default);
const KNOWN_PEERS_MAX: usize = 4096;

fn lock_peers() -> std::sync::MutexGuard<'static, HashMap<Vec<u8>, PeerIdentity>> {
    KNOWN_PEERS.lock().unwrap_or_else(|p| p.into_inner())
}

fn ring_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn alpn_protocols() -> Vec<Vec<u8>> {
    ALPN_PROTOCOLS
        .iter()
        .map(|protocol| protocol.to_vec())
        .collect()
}

fn root_store(ca_cert: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certificates(ca_cert)? {
        roots.add(cert).map_err(|source| TlsError::TrustAnchor {
            path: ca_cert.to_path_buf(),
            source,
        })?;
    }
    Ok(roots)
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let read_error = |source| TlsError::ReadCertificates {
        path: path.to_path_buf(),
        source,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(read_error)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(read_error)?;
    if certificates.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certificates)
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path).map_err(|source| TlsError::ReadKey {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use liaison_pki::{PkiOptions, init};

    fn pki_with(codes: &[&str]) -> (tempfile::TempDir, PkiLayout) {
        let text: String = codes
            .iter()
            .map(|code| {
                format!("[[agency]]\ncode = \"{code}\"\nname_zh = \"机构\"\nname_en = \"{code}\"\n")
            })
            .collect();
        let registry = if codes.is_empty() {
            liaison_core::Registry::default()
        } else {
            liaison_core::Registry::from_toml(&text, "test registry").unwrap()
        };
        let dir = tempfile::tempdir().unwrap();
        init(dir.path(), &registry, &PkiOptions::default()).unwrap();
        let layout = PkiLayout::new(dir.path());
        (dir, layout)
    }

    #[test]
    fn configs_build_from_a_fresh_pki_and_offer_h2_first() {
        let (_dir, layout) = pki_with(&["eco"]);
        let server = server_config(&layout).unwrap();
        assert_eq!(
            server.alpn_protocols,
            [b"h2".to_vec(), b"http/1.1".to_vec()]
        );
        let client = agency_client_config(&layout, &AgencyCode::new("eco").unwrap()).unwrap();
        assert!(client.client_auth_cert_resolver.has_certs());
        assert_eq!(client.alpn_protocols, server.alpn_protocols);
    }

    #[test]
    fn a_missing_agency_certificate_is_reported_with_its_path() {
        let (_dir, layout) = pki_with(&[]);
        let unknown = AgencyCode::new("nobody").unwrap();
        let err = agency_client_config(&layout, &unknown).unwrap_err();
        assert!(
            matches!(&err, TlsError::ReadCertificates { path, .. } if *path == layout.agency_cert(&unknown))
        );
        assert!(err.to_string().contains("nobody.pem"), "{err}");
    }

    #[test]
    fn a_key_that_is_not_pem_is_reported() {
        let (_dir, layout) = pki_with(&[]);
        std::fs::write(layout.server_key(), "not a key").unwrap();
        let err = server_config(&layout).unwrap_err();
        assert!(matches!(err, TlsError::ReadKey { .. }), "{err}");
    }

    #[test]
    fn certificates_without_an_agency_urn_name_no_agency() {
        let (_dir, layout) = pki_with(&[]);
        let server = CertificateDer::from_pem_file(layout.server_cert()).unwrap();
        assert_eq!(agency_from_cert(&server), None);
        assert_eq!(
            agency_from_cert(&CertificateDer::from(&b"garbage"[..])),
            None
        );
    }

    #[test]
    fn peer_agency_reads_the_leaf_from_request_extensions() {
        let (_dir, layout) = pki_with(&["eco", "market"]);
        let presenting = |code: &str| {
            let leaf =
                CertificateDer::from_pem_file(layout.agency_cert(&AgencyCode::new(code).unwrap()))
                    .unwrap();
            let mut info = TlsInfo::default();
            info.peer_certificates = vec![leaf.to_vec()];
            let mut extensions = http::Extensions::new();
            extensions.insert::<PeerTls>(Arc::new(info));
            extensions
        };
        let (eco, market) = (presenting("eco"), presenting("market"));
        // Twice each: the second answer comes from the map of certificates already read.
        for _ in 0..2 {
            assert_eq!(peer_agency(&eco), AgencyCode::new("eco").ok());
            assert_eq!(peer_agency(&market), AgencyCode::new("market").ok());
        }

        assert_eq!(
            peer_agency(&http::Extensions::new()),
            None,
            "no TLS information"
        );
        let mut anonymous = http::Extensions::new();
        anonymous.insert::<PeerTls>(Arc::new(TlsInfo::default()));
        assert_eq!(peer_agency(&anonymous), None, "no client certificate");
    }

    #[test]
    fn installing_the_provider_twice_is_harmless() {
        install_crypto_provider();
        install_crypto_provider();
        assert!(CryptoProvider::get_default().is_some());
    }
}
