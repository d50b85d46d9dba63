//! The loaders against files made here (rcgen, and the `openssl` CLI for
//! the PKCS#1 and SEC1 key formats), and the session against an in-memory
//! rustls client: no sockets.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, RootCertStore};

use super::load::{self, LoadError};
use super::{ServerTls, TlsSession};
use crate::conn::Outbound;

/// A fresh directory for one test's files.
fn dir(name: &str) -> PathBuf {
    // Tests run in parallel and some make the same kind of pair.
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let d = std::env::temp_dir().join(format!("sb-tls-{}-{name}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A self-signed certificate for `localhost` and 127.0.0.1, valid from
/// `from` to `to` (days from now); returns (cert path, key path, cert DER).
fn self_signed(
    d: &Path,
    name: &str,
    from: i64,
    to: i64,
) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    let now = time_now();
    params.not_before = now + time_days(from);
    params.not_after = now + time_days(to);
    let cert = params.self_signed(&key).unwrap();
    let c = d.join(format!("{name}.crt"));
    let k = d.join(format!("{name}.key"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (c, k, cert.der().clone())
}

fn time_now() -> time::OffsetDateTime {
    time::OffsetDateTime::now_utc()
}

fn time_days(d: i64) -> time::Duration {
    time::Duration::days(d)
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A key in a traditional format (`-traditional` RSA is PKCS#1, an EC key
/// from `ecparam` is SEC1) and a certificate for it, made by openssl.
fn openssl_pair(d: &Path, kind: &str) -> (PathBuf, PathBuf) {
    let k = d.join(format!("{kind}.key"));
    let c = d.join(format!("{kind}.crt"));
    let ks = k.to_str().unwrap();
    match kind {
        "rsa" => openssl(&["genrsa", "-traditional", "-out", ks, "2048"]),
        _ => openssl(&[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            ks,
        ]),
    }
    openssl(&[
        "req",
        "-new",
        "-x509",
        "-key",
        ks,
        "-subj",
        "/CN=localhost",
        "-days",
        "2",
        "-out",
        c.to_str().unwrap(),
    ]);
    (c, k)
}

#[test]
fn key_formats_pkcs8_pkcs1_and_sec1_load() {
    let d = dir("formats");
    let (c, k, _) = self_signed(&d, "p8", -1, 1);
    assert!(std::fs::read_to_string(&k)
        .unwrap()
        .contains("BEGIN PRIVATE KEY"));
    load::server_config(&c, &k).unwrap();
    let (c, k) = openssl_pair(&d, "rsa");
    assert!(std::fs::read_to_string(&k)
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
    load::server_config(&c, &k).unwrap();
    let (c, k) = openssl_pair(&d, "ec");
    assert!(std::fs::read_to_string(&k)
        .unwrap()
        .contains("BEGIN EC PRIVATE KEY"));
    load::server_config(&c, &k).unwrap();
}

#[test]
fn each_refusal_names_the_file_and_the_reason() {
    let d = dir("refusals");
    let (c, k, _) = self_signed(&d, "good", -1, 1);
    let (_, other_key, _) = self_signed(&d, "other", -1, 1);
    let missing = d.join("nope.pem");
    let garbage = d.join("garbage.pem");
    std::fs::write(&garbage, "not a pem file\n").unwrap();

    let e = load::server_config(&missing, &k).unwrap_err();
    assert_eq!(
        e,
        LoadError::Missing {
            path: missing.clone()
        }
    );
    assert!(e.to_string().contains("nope.pem"), "{e}");

    let e = load::server_config(&d, &k).unwrap_err();
    assert!(matches!(e, LoadError::Unreadable { .. }), "{e:?}");

    let e = load::server_config(&garbage, &k).unwrap_err();
    assert!(
        matches!(&e, LoadError::Malformed { path, .. } if *path == garbage),
        "{e:?}"
    );
    let e = load::server_config(&c, &garbage).unwrap_err();
    assert!(
        matches!(&e, LoadError::Malformed { path, .. } if *path == garbage),
        "{e:?}"
    );
    // The certificate given as the key, and the key as the certificate.
    let e = load::server_config(&c, &c).unwrap_err();
    assert!(
        matches!(&e, LoadError::Malformed { path, .. } if *path == c),
        "{e:?}"
    );
    let e = load::server_config(&k, &k).unwrap_err();
    assert!(
        matches!(&e, LoadError::Malformed { path, .. } if *path == k),
        "{e:?}"
    );

    let e = load::server_config(&c, &other_key).unwrap_err();
    assert_eq!(
        e,
        LoadError::KeyMismatch {
            cert: c.clone(),
            key: other_key.clone()
        }
    );
    assert!(e.to_string().contains("does not match"), "{e}");

    let (old, old_key, _) = self_signed(&d, "expired", -10, -1);
    let e = load::server_config(&old, &old_key).unwrap_err();
    assert!(
        matches!(&e, LoadError::Expired { path, .. } if *path == old),
        "{e:?}"
    );
    assert!(e.to_string().contains("expired"), "{e}");

    let (young, young_key, _) = self_signed(&d, "future", 2, 10);
    let e = load::server_config(&young, &young_key).unwrap_err();
    assert!(matches!(e, LoadError::NotYetValid { .. }), "{e:?}");
    // ...and valid once its time comes.
    load::server_config_at(
        &young,
        &young_key,
        SystemTime::now() + Duration::from_secs(3 * 86400),
    )
    .unwrap();
}

#[test]
fn a_bad_new_pair_on_reload_keeps_the_old() {
    let d = dir("reload");
    let (c, k, first) = self_signed(&d, "pair", -1, 1);
    let tls = ServerTls::load(c.clone(), k.clone()).unwrap();
    let before = tls.config();
    std::fs::write(&k, "garbage").unwrap();
    assert!(tls.reload().is_err());
    assert!(Arc::ptr_eq(&before, &tls.config()));
    let roots = [first.clone()];
    assert_eq!(served_cert(tls.config(), &roots), first);

    let (c2, k2, second) = self_signed(&d, "next", -1, 1);
    std::fs::copy(c2, &c).unwrap();
    std::fs::copy(k2, &k).unwrap();
    tls.reload().unwrap();
    let roots = [first.clone(), second.clone()];
    assert_eq!(served_cert(tls.config(), &roots), second);
    // A session started before keeps the config it started with.
    assert_eq!(served_cert(before, &roots), first);
}

/// A client trusting everything the tests make (each test's own roots).
pub(super) fn client(
    roots: &[CertificateDer<'static>],
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> ClientConnection {
    let mut store = RootCertStore::empty();
    for r in roots {
        store.add(r.clone()).unwrap();
    }
    let mut config = ClientConfig::builder_with_provider(super::provider())
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(store)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    ClientConnection::new(Arc::new(config), ServerName::try_from("localhost").unwrap()).unwrap()
}

/// An in-memory socket: reads what the peer wrote, writes into `out`,
/// and says `WouldBlock` past `room` bytes of unread output.
#[derive(Default)]
pub(super) struct Pipe {
    pub(super) input: Vec<u8>,
    pub(super) out: Vec<u8>,
    pub(super) room: Option<usize>,
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.input.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = buf.len().min(self.input.len());
        buf[..n].copy_from_slice(&self.input[..n]);
        self.input.drain(..n);
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = match self.room {
            Some(room) => buf.len().min(room.saturating_sub(self.out.len())),
            None => buf.len(),
        };
        if n == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        self.out.extend_from_slice(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Gives the client everything in `wire` (one `read_tls` takes a bounded
/// amount), decrypting as it goes.
pub(super) fn feed(c: &mut ClientConnection, wire: &mut Vec<u8>) {
    let mut rest = &wire[..];
    while !rest.is_empty() {
        c.read_tls(&mut rest).unwrap();
        c.process_new_packets().unwrap();
    }
    wire.clear();
}

/// Runs the handshake between `c` and `s` over `pipe`.
fn handshake(c: &mut ClientConnection, s: &mut TlsSession, pipe: &mut Pipe) {
    let mut buf = [0u8; 1024];
    for _ in 0..10 {
        while c.wants_write() {
            c.write_tls(&mut pipe.input).unwrap();
        }
        let r = s.read(pipe, &mut buf);
        assert!(
            matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "{r:?}"
        );
        if !pipe.out.is_empty() {
            feed(c, &mut pipe.out);
        }
        if !c.is_handshaking() && !s.is_handshaking() {
            return;
        }
    }
    panic!("no handshake");
}

/// The certificate a new handshake with `config` presents, to a client
/// trusting `roots`.
fn served_cert(
    config: Arc<rustls::ServerConfig>,
    roots: &[CertificateDer<'static>],
) -> CertificateDer<'static> {
    let mut s = TlsSession::server(config);
    let mut c = client(roots, &[&rustls::version::TLS13]);
    handshake(&mut c, &mut s, &mut Pipe::default());
    c.peer_certificates().unwrap()[0].clone()
}

pub(super) fn pair() -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    let d = dir("pair");
    let (c, k, der) = self_signed(&d, "s", -1, 1);
    (load::server_config(&c, &k).unwrap(), der)
}

#[test]
fn both_versions_alpn_and_data_both_ways() {
    let (config, root) = pair();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut s = TlsSession::server(config.clone());
        let mut c = client(std::slice::from_ref(&root), &[version]);
        let mut pipe = Pipe::default();
        handshake(&mut c, &mut s, &mut pipe);
        assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(c.protocol_version(), Some(version.version));

        c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        c.write_tls(&mut pipe.input).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut pipe, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");

        let mut out = Outbound::default();
        out.push(Bytes::from_static(b"HTTP/1.1 200 OK\r\n"), 1 << 20)
            .unwrap();
        out.push(Bytes::from_static(b"\r\n"), 1 << 20).unwrap();
        s.flush(&mut out, &mut pipe).unwrap();
        assert!(out.is_empty() && !s.wants_write());
        feed(&mut c, &mut pipe.out);
        let mut got = Vec::new();
        let _ = c.reader().read_to_end(&mut got);
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n");

        // close_notify reads as the end of the stream on either side.
        s.close();
        s.flush(&mut out, &mut pipe).unwrap();
        feed(&mut c, &mut pipe.out);
        assert_eq!(c.reader().read(&mut buf).unwrap(), 0);
        c.send_close_notify();
        c.write_tls(&mut pipe.input).unwrap();
        assert_eq!(s.read(&mut pipe, &mut buf).unwrap(), 0);
    }
}

#[test]
fn a_full_socket_leaves_frames_in_the_queue_and_rustls_within_its_limit() {
    let (config, root) = pair();
    let mut s = TlsSession::server(config);
    let mut c = client(&[root], &[&rustls::version::TLS13]);
    let mut pipe = Pipe::default();
    handshake(&mut c, &mut s, &mut pipe);
    pipe.room = Some(10_000);
    let frame = Bytes::from(vec![b'x'; 1000]);
    let mut out = Outbound::default();
    for _ in 0..1000 {
        out.push(frame.clone(), usize::MAX).unwrap();
    }
    s.flush(&mut out, &mut pipe).unwrap();
    assert_eq!(pipe.out.len(), 10_000);
    // What the socket did not take stays plaintext in the queue, bar what
    // rustls holds, which its limit bounds (plus one record's overhead).
    let in_rustls = 1_000_000 - out.queued_bytes() - 10_000;
    assert!(
        in_rustls <= super::session::BUFFER_LIMIT + 100,
        "{in_rustls}"
    );
    assert!(s.wants_write());

    // Drained, everything arrives in order.
    let mut got = Vec::new();
    loop {
        feed(&mut c, &mut pipe.out);
        let _ = c.reader().read_to_end(&mut got);
        if out.is_empty() && !s.wants_write() {
            break;
        }
        s.flush(&mut out, &mut pipe).unwrap();
    }
    assert_eq!(got.len(), 1_000_000);
}

#[test]
fn garbage_and_plain_http_fail_the_handshake_with_an_alert() {
    let (config, _) = pair();
    for input in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0u8; 16][..]] {
        let mut s = TlsSession::server(config.clone());
        let mut pipe = Pipe {
            input: input.to_vec(),
            ..Pipe::default()
        };
        let e = s.read(&mut pipe, &mut [0u8; 64]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(s.handshake_failed());
        // Nothing the plain client could take for HTTP: a TLS alert record.
        assert!(pipe.out.is_empty() || pipe.out[0] == 0x15, "{:?}", pipe.out);
    }
    // A peer that connects and hangs up has not failed a handshake.
    let s = TlsSession::server(config);
    assert!(!s.handshake_failed());
}

#[test]
fn handle_ciphertext_takes_what_the_plaintext_buffer_allows() {
    let (config, root) = pair();
    let mut s = TlsSession::server(config);
    let mut c = client(&[root], &[&rustls::version::TLS13]);
    let mut pipe = Pipe::default();
    handshake(&mut c, &mut s, &mut pipe);
    let mut wire = Vec::new();
    for _ in 0..8 {
        c.writer().write_all(&[b'y'; 16_000]).unwrap();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
    }
    let mut plain = Vec::new();
    let mut rest = &wire[..];
    let mut buf = [0u8; 4096];
    while !rest.is_empty() {
        let used = s.handle_ciphertext(rest).unwrap();
        rest = &rest[used..];
        loop {
            match s.read_plaintext(&mut buf) {
                Ok(n) => plain.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
        }
    }
    assert_eq!(plain.len(), 128_000);
}

proptest::proptest! {
    /// The fuzz target's property on stable: garbage (alone, or after a
    /// real ClientHello) never panics, and the answer stays an alert or a
    /// handshake flight, never a growing buffer.
    #[test]
    fn garbage_ciphertext_never_panics_or_grows(
        garbage in proptest::collection::vec(proptest::num::u8::ANY, 0..4096),
        after_hello in proptest::bool::ANY,
    ) {
        let (config, _) = shared_pair();
        let mut s = TlsSession::server(config);
        let mut input = Vec::new();
        if after_hello {
            let mut c = client(&[], &[&rustls::version::TLS13]);
            c.write_tls(&mut input).unwrap();
        }
        input.extend_from_slice(&garbage);
        let mut pipe = Pipe { input, ..Pipe::default() };
        let mut buf = [0u8; 4096];
        for _ in 0..64 {
            match s.read(&mut pipe, &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        proptest::prop_assert!(pipe.out.len() < 16 * 1024, "{}", pipe.out.len());
    }
}

/// One server configuration for the property test's many cases.
pub(super) fn shared_pair() -> (Arc<rustls::ServerConfig>, CertificateDer<'static>) {
    static PAIR: std::sync::OnceLock<(Arc<rustls::ServerConfig>, CertificateDer<'static>)> =
        std::sync::OnceLock::new();
    PAIR.get_or_init(pair).clone()
}
