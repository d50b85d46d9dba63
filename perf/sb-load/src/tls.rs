//! `wss://`: the client TLS configuration, one per run, shared by every
//! connection (rustls, the server's own provider: aws-lc-rs).
//!
//! The server is verified as a browser would verify it, against the CA
//! certificates of `--tls-ca FILE` and nothing else: a load test runs
//! against a test certificate, and the handshake it measures must be the
//! real one (certificate chain sent, signature checked). There is no
//! switch that turns verification off.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// Why the TLS configuration could not be made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TlsSetupError {
    /// `wss://` without `--tls-ca`.
    NoCa,
    /// The CA file could not be read.
    Read { path: String, reason: String },
    /// The CA file held no usable certificate.
    NoCertificate { path: String },
    /// The URL's host is neither a DNS name nor an IP address.
    BadName { host: String },
}

impl std::fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TlsSetupError::NoCa => write!(
                f,
                "wss:// needs --tls-ca FILE (the PEM CA certificate that signed the server's)"
            ),
            TlsSetupError::Read { path, reason } => write!(f, "{path}: {reason}"),
            TlsSetupError::NoCertificate { path } => {
                write!(f, "{path}: no PEM certificate in it")
            }
            TlsSetupError::BadName { host } => {
                write!(f, "{host:?} is not a DNS name or IP address to verify")
            }
        }
    }
}

/// A client configuration trusting exactly the certificates in `ca_pem`
/// (a PEM file's path), ALPN `http/1.1`.
pub fn client_config(ca_pem: &str) -> Result<Arc<ClientConfig>, TlsSetupError> {
    let pem = std::fs::read(ca_pem).map_err(|e| TlsSetupError::Read {
        path: ca_pem.to_owned(),
        reason: e.to_string(),
    })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsSetupError::Read {
            path: ca_pem.to_owned(),
            reason: e.to_string(),
        })?;
        roots.add(cert).map_err(|e| TlsSetupError::Read {
            path: ca_pem.to_owned(),
            reason: e.to_string(),
        })?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoCertificate {
            path: ca_pem.to_owned(),
        });
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError::Read {
            path: ca_pem.to_owned(),
            reason: e.to_string(),
        })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The name a certificate must carry for `host` (`host:port` or `host`).
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsSetupError> {
    let bare = match host.rsplit_once(':') {
        Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(bare.to_owned()).map_err(|_| TlsSetupError::BadName {
        host: host.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_from_hosts() {
        assert!(matches!(
            server_name("127.0.0.1:8443"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(matches!(
            server_name("localhost:1"),
            Ok(ServerName::DnsName(_))
        ));
        assert!(matches!(
            server_name("[::1]:9"),
            Ok(ServerName::IpAddress(_))
        ));
        assert!(server_name("bad name:1").is_err());
    }

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let e = client_config("/nonexistent/ca.pem").unwrap_err();
        assert!(e.to_string().starts_with("/nonexistent/ca.pem: "), "{e}");
        let dir = std::env::temp_dir().join(format!("sb-load-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let path = empty.to_str().unwrap();
        assert_eq!(
            client_config(path).unwrap_err(),
            TlsSetupError::NoCertificate {
                path: path.to_owned()
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
