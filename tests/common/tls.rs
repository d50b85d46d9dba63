//! Certificates made at test time (rcgen), and TLS clients (rustls) for
//! `https://` and `wss://`.
//!
//! [`Certs`] is a throwaway CA with a leaf for `localhost` and 127.0.0.1,
//! written as PEM files into a fresh directory; clients trust only that CA.

use super::*;

use std::path::{Path, PathBuf};

use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};

/// A test CA and the files of a leaf it signed.
pub struct Certs {
    pub dir: PathBuf,
    /// The CA certificate (PEM): what `--redis-ca` and the clients trust.
    pub ca: PathBuf,
    /// The leaf's chain and key (PEM).
    pub cert: PathBuf,
    pub key: PathBuf,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

fn days(d: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc() + time::Duration::days(d)
}

impl Certs {
    /// A fresh CA and a leaf valid from yesterday to next week.
    pub fn new(name: &str) -> Certs {
        let dir = std::env::temp_dir().join(format!("sb-certs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.distinguished_name.push(
            rcgen::DnType::CommonName,
            format!("switchboard test CA {name}"),
        );
        let issuer =
            rcgen::CertifiedIssuer::self_signed(params, rcgen::KeyPair::generate().unwrap())
                .unwrap();
        let ca = dir.join("ca.pem");
        std::fs::write(&ca, issuer.pem()).unwrap();
        let mut certs = Certs {
            cert: PathBuf::new(),
            key: PathBuf::new(),
            dir,
            ca,
            issuer,
        };
        let (cert, key) = certs.leaf("server", -1, 7);
        certs.cert = cert;
        certs.key = key;
        certs
    }

    /// Another leaf for `localhost`/127.0.0.1, valid from `from` to `to`
    /// days from now; returns (chain, key).
    pub fn leaf(&self, name: &str, from: i64, to: i64) -> (PathBuf, PathBuf) {
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
                .unwrap();
        params.not_before = days(from);
        params.not_after = days(to);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.crt")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }

    /// `--tls-cert C --tls-key K` for the leaf.
    pub fn args(&self) -> Vec<String> {
        vec![
            "--tls-cert".into(),
            path_str(&self.cert),
            "--tls-key".into(),
            path_str(&self.key),
        ]
    }

    /// A client configuration trusting only this CA.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        client_config_trusting(&self.ca)
    }
}

/// A client configuration (ALPN `http/1.1`) trusting only the
/// certificates in the PEM file `roots`.
pub fn client_config_trusting(roots: &Path) -> Arc<ClientConfig> {
    let mut store = RootCertStore::empty();
    let pem = std::fs::read(roots).unwrap();
    for cert in rustls::pki_types::pem::PemObject::pem_slice_iter(&pem) {
        let cert: CertificateDer<'static> = cert.unwrap();
        store.add(cert).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(store)
    .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Arc::new(config)
}

impl Drop for Certs {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn path_str(p: &Path) -> String {
    p.to_str().expect("temp paths are UTF-8").to_owned()
}

/// A blocking TLS stream to the server.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

impl Transport for TlsStream {
    fn tcp(&self) -> &TcpStream {
        &self.sock
    }
}

impl Client {
    /// A `wss://` client of `/ws?QUERY`, trusting `config`'s roots.
    pub fn connect_tls(addr: SocketAddr, config: Arc<ClientConfig>, query: &str) -> Client {
        let tcp = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect: {e}"));
        Client::upgrade_tls(tcp, addr, config, query)
    }

    /// [`Client::connect_tls`] over a connected socket.
    pub fn upgrade_tls(
        tcp: TcpStream,
        addr: SocketAddr,
        config: Arc<ClientConfig>,
        query: &str,
    ) -> Client {
        let stream = tls_over(tcp, config).unwrap_or_else(|e| panic!("TLS connect: {e}"));
        Client::upgrade(Box::new(stream), addr, query, &[])
            .unwrap_or_else(|e| panic!("wss upgrade: {e}"))
    }
}

/// Connects and completes the TLS handshake (within [`TIMEOUT`]).
pub fn tls_connect(addr: SocketAddr, config: Arc<ClientConfig>) -> io::Result<TlsStream> {
    tls_over(TcpStream::connect(addr)?, config)
}

/// The TLS handshake over a connected socket (e.g. one with a small
/// `SO_RCVBUF`).
pub fn tls_over(tcp: TcpStream, config: Arc<ClientConfig>) -> io::Result<TlsStream> {
    tcp.set_nodelay(true)?;
    tcp.set_read_timeout(Some(TIMEOUT))?;
    tcp.set_write_timeout(Some(TIMEOUT))?;
    let name = ServerName::try_from("localhost").unwrap();
    let conn = ClientConnection::new(config, name).map_err(io::Error::other)?;
    let mut stream = StreamOwned::new(conn, tcp);
    while stream.conn.is_handshaking() {
        stream.conn.complete_io(&mut stream.sock)?;
    }
    Ok(stream)
}

/// One HTTP exchange over TLS (`Connection: close` in `request`): the
/// response as read until the server closes.
pub fn https(addr: SocketAddr, config: Arc<ClientConfig>, request: &str) -> HttpResponse {
    let mut s = tls_connect(addr, config).unwrap_or_else(|e| panic!("TLS connect: {e}"));
    s.write_all(request.as_bytes()).unwrap();
    s.flush().unwrap();
    let mut raw = Vec::new();
    match s.read_to_end(&mut raw) {
        Ok(_) => {}
        // A peer that closes without close_notify after a complete response.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {}
        Err(e) => panic!("reading the HTTPS response: {e} (got {raw:?})"),
    }
    parse_response(&raw).unwrap_or_else(|| {
        panic!(
            "unparseable HTTPS response: {:?}",
            String::from_utf8_lossy(&raw)
        )
    })
}

/// A whole response read until the close (head, then the body as sent;
/// the server answers with `Content-Length`).
fn parse_response(raw: &[u8]) -> Option<HttpResponse> {
    let mut hdrs = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut hdrs);
    let httparse::Status::Complete(n) = resp.parse(raw).ok()? else {
        return None;
    };
    let headers = resp
        .headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect();
    Some(HttpResponse {
        status: resp.code?,
        headers,
        body: raw[n..].to_vec(),
    })
}
