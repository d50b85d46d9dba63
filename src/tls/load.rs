//! Reading `--tls-cert`, `--tls-key` and `--redis-ca` (PROTOCOL.md §11).
//!
//! The server refuses to start, and a SIGHUP reload is refused, with a
//! [`LoadError`] that names the file and the reason: missing, unreadable,
//! malformed (no PEM block of the right kind, or one that does not parse),
//! a key that does not match the certificate, or a certificate outside its
//! validity period. A certificate that has expired would make every
//! handshake fail at the client, which is harder to diagnose than an error
//! at start.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use rustls::pki_types::pem::{self, PemObject};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{RootCertStore, ServerConfig};

/// Why a certificate, key or CA file was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoadError {
    /// The file does not exist.
    Missing { path: PathBuf },
    /// The file exists but could not be read (permissions, a directory).
    Unreadable { path: PathBuf, reason: String },
    /// The file holds no PEM block of the expected kind, or one that does
    /// not parse.
    Malformed { path: PathBuf, reason: String },
    /// The private key is not the one of the chain's first certificate.
    KeyMismatch { cert: PathBuf, key: PathBuf },
    /// The chain's first certificate expired (`not_after`, Unix seconds).
    Expired { path: PathBuf, not_after: u64 },
    /// The chain's first certificate is not valid yet.
    NotYetValid { path: PathBuf, not_before: u64 },
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing { path } => write!(f, "{}: no such file", path.display()),
            Self::Unreadable { path, reason } => {
                write!(f, "{}: cannot read: {reason}", path.display())
            }
            Self::Malformed { path, reason } => {
                write!(f, "{}: malformed: {reason}", path.display())
            }
            Self::KeyMismatch { cert, key } => write!(
                f,
                "{}: the key does not match the certificate in {}",
                key.display(),
                cert.display()
            ),
            Self::Expired { path, not_after } => write!(
                f,
                "{}: the certificate expired (not after {not_after}, Unix seconds)",
                path.display()
            ),
            Self::NotYetValid { path, not_before } => write!(
                f,
                "{}: the certificate is not valid yet (not before {not_before}, Unix seconds)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for LoadError {}

/// The PEM parser's error, on a file it read.
fn pem_error(path: &Path, e: pem::Error) -> LoadError {
    match e {
        pem::Error::Io(e) if e.kind() == io::ErrorKind::NotFound => LoadError::Missing {
            path: path.to_owned(),
        },
        pem::Error::Io(e) => LoadError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        pem::Error::NoItemsFound => LoadError::Malformed {
            path: path.to_owned(),
            reason: "no PEM block of the expected kind".to_owned(),
        },
        other => LoadError::Malformed {
            path: path.to_owned(),
            reason: format!("{other:?}"),
        },
    }
}

/// Reads a file whole, so that a missing or unreadable file is told apart
/// from a malformed one before any parsing.
fn read(path: &Path) -> Result<Vec<u8>, LoadError> {
    std::fs::read(path).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => LoadError::Missing {
            path: path.to_owned(),
        },
        _ => LoadError::Unreadable {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })
}

/// Every `CERTIFICATE` block of a PEM file, in order; at least one.
pub fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, LoadError> {
    let text = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&text)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(path, e))?;
    if certs.is_empty() {
        return Err(LoadError::Malformed {
            path: path.to_owned(),
            reason: "no CERTIFICATE block".to_owned(),
        });
    }
    Ok(certs)
}

/// The first private key of a PEM file: `PRIVATE KEY` (PKCS#8),
/// `RSA PRIVATE KEY` (PKCS#1) or `EC PRIVATE KEY` (SEC1).
pub fn private_key(path: &Path) -> Result<PrivateKeyDer<'static>, LoadError> {
    let text = read(path)?;
    PrivateKeyDer::from_pem_slice(&text).map_err(|e| match e {
        pem::Error::NoItemsFound => LoadError::Malformed {
            path: path.to_owned(),
            reason: "no PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block".to_owned(),
        },
        e => pem_error(path, e),
    })
}

/// Checks the validity period of the chain's first certificate at `now`.
fn check_validity(
    path: &Path,
    cert: &CertificateDer<'_>,
    now: SystemTime,
) -> Result<(), LoadError> {
    use x509_cert::der::Decode;
    let parsed =
        x509_cert::Certificate::from_der(cert.as_ref()).map_err(|e| LoadError::Malformed {
            path: path.to_owned(),
            reason: format!("the first certificate does not parse: {e}"),
        })?;
    let validity = parsed.tbs_certificate.validity;
    let now = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let not_after = validity.not_after.to_unix_duration();
    let not_before = validity.not_before.to_unix_duration();
    if now > not_after {
        return Err(LoadError::Expired {
            path: path.to_owned(),
            not_after: not_after.as_secs(),
        });
    }
    if now < not_before {
        return Err(LoadError::NotYetValid {
            path: path.to_owned(),
            not_before: not_before.as_secs(),
        });
    }
    Ok(())
}

/// The listener's configuration from a certificate chain and its key:
/// TLS 1.3 and 1.2, ALPN `http/1.1`, no client certificates.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, LoadError> {
    server_config_at(cert, key, SystemTime::now())
}

/// [`server_config`] with the clock passed in, for tests.
pub fn server_config_at(
    cert: &Path,
    key: &Path,
    now: SystemTime,
) -> Result<Arc<ServerConfig>, LoadError> {
    let chain = certificates(cert)?;
    let der = private_key(key)?;
    check_validity(cert, &chain[0], now)?;
    let builder = ServerConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the provider supports TLS 1.2 and 1.3");
    let mut config = builder
        .with_no_client_auth()
        .with_single_cert(chain, der)
        .map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => LoadError::KeyMismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            },
            other => LoadError::Malformed {
                path: key.to_owned(),
                reason: other.to_string(),
            },
        })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The roots trusted for `rediss://`: every certificate of `ca` when given
/// (and nothing else), or the system's roots.
pub fn redis_roots(ca: Option<&Path>) -> Result<RootCertStore, LoadError> {
    let mut roots = RootCertStore::empty();
    match ca {
        Some(path) => {
            for cert in certificates(path)? {
                roots.add(cert).map_err(|e| LoadError::Malformed {
                    path: path.to_owned(),
                    reason: e.to_string(),
                })?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            for e in &found.errors {
                tracing::warn!(error = %e, "reading a system root certificate");
            }
            let (added, _ignored) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(LoadError::Missing {
                    path: PathBuf::from("the system's root certificates (give --redis-ca)"),
                });
            }
        }
    }
    Ok(roots)
}

/// The Redis link's client configuration: TLS 1.3 and 1.2, the server
/// verified against `roots`, no client certificate.
pub fn client_config(roots: RootCertStore) -> Arc<rustls::ClientConfig> {
    let config = rustls::ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .expect("the provider supports TLS 1.2 and 1.3")
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}
