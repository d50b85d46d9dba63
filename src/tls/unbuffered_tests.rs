//! [`ServerSession`] against an in-memory rustls client: both versions,
//! data both ways, a full socket, garbage, and no buffer held at rest.

use std::io::{self, IoSlice, Read, Write};

use bytes::Bytes;
use rustls::ClientConnection;

use super::tests::{client, feed, pair, shared_pair, Pipe};
use super::unbuffered::{ServerSession, OUT_CHUNK};
use crate::conn::Outbound;

/// The session seen as the driver sees a TLS stream's writes.
struct Via<'a> {
    s: &'a mut ServerSession,
    pipe: &'a mut Pipe,
}

impl Write for Via<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.s.write_vectored(self.pipe, &[IoSlice::new(buf)])
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.s.write_vectored(self.pipe, bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.s.flush(self.pipe).map(|_| ())
    }
}

fn send(s: &mut ServerSession, out: &mut Outbound, pipe: &mut Pipe) {
    out.write_to(&mut Via { s, pipe }).unwrap();
}

fn handshake(c: &mut ClientConnection, s: &mut ServerSession, pipe: &mut Pipe) {
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

#[test]
fn both_versions_data_both_ways_and_nothing_buffered_at_rest() {
    let (config, root) = pair();
    for version in [&rustls::version::TLS13, &rustls::version::TLS12] {
        let mut s = ServerSession::new(config.clone());
        let mut c = client(std::slice::from_ref(&root), &[version]);
        let mut pipe = Pipe::default();
        handshake(&mut c, &mut s, &mut pipe);
        assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
        assert_eq!(c.protocol_version(), Some(version.version));
        assert!(!s.handshake_failed());

        c.writer().write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        c.write_tls(&mut pipe.input).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut pipe, &mut buf).unwrap();
        assert_eq!(&buf[..n], b"GET / HTTP/1.1\r\n\r\n");
        let r = s.read(&mut pipe, &mut buf);
        assert!(matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock));

        let mut out = Outbound::default();
        out.push(Bytes::from_static(b"HTTP/1.1 200 OK\r\n"), 1 << 20)
            .unwrap();
        out.push(Bytes::from_static(b"\r\n"), 1 << 20).unwrap();
        send(&mut s, &mut out, &mut pipe);
        assert!(out.is_empty() && !s.wants_write());
        feed(&mut c, &mut pipe.out);
        let mut got = Vec::new();
        let _ = c.reader().read_to_end(&mut got);
        assert_eq!(got, b"HTTP/1.1 200 OK\r\n\r\n");
        assert_eq!(s.buffered(), 0, "{version:?}: a buffer kept at rest");

        // close_notify reads as the end of the stream on either side.
        s.close();
        assert!(s.flush(&mut pipe).unwrap());
        feed(&mut c, &mut pipe.out);
        assert_eq!(c.reader().read(&mut buf).unwrap(), 0);
        c.send_close_notify();
        c.write_tls(&mut pipe.input).unwrap();
        assert_eq!(s.read(&mut pipe, &mut buf).unwrap(), 0);
    }
}

#[test]
fn records_split_across_reads_and_a_small_read_buffer() {
    let (config, root) = pair();
    let mut s = ServerSession::new(config);
    let mut c = client(&[root], &[&rustls::version::TLS13]);
    let mut pipe = Pipe::default();
    handshake(&mut c, &mut s, &mut pipe);
    let data: Vec<u8> = (0..60_000u32).map(|i| (i % 251) as u8).collect();
    c.writer().write_all(&data).unwrap();
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 1000];
    for chunk in wire.chunks(777) {
        pipe.input.extend_from_slice(chunk);
        loop {
            match s.read(&mut pipe, &mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => {
                    assert_eq!(e.kind(), io::ErrorKind::WouldBlock);
                    break;
                }
            }
        }
    }
    assert_eq!(got, data);
    assert_eq!(s.buffered(), 0);
}

#[test]
fn a_full_socket_leaves_frames_in_the_queue_and_little_in_the_session() {
    let (config, root) = pair();
    let mut s = ServerSession::new(config);
    let mut c = client(&[root], &[&rustls::version::TLS13]);
    let mut pipe = Pipe::default();
    handshake(&mut c, &mut s, &mut pipe);
    pipe.room = Some(10_000);
    let frame = Bytes::from(vec![b'x'; 1000]);
    let mut out = Outbound::default();
    for _ in 0..1000 {
        out.push(frame.clone(), usize::MAX).unwrap();
    }
    send(&mut s, &mut out, &mut pipe);
    assert_eq!(pipe.out.len(), 10_000);
    // What the socket did not take stays plaintext in the queue, bar one
    // round of records kept by the session.
    let in_session = 1_000_000 - out.queued_bytes() - 10_000;
    assert!(in_session <= OUT_CHUNK, "{in_session}");
    assert!(s.wants_write());
    assert!(s.buffered() <= OUT_CHUNK + 4096, "{}", s.buffered());

    let mut got = Vec::new();
    loop {
        feed(&mut c, &mut pipe.out);
        let _ = c.reader().read_to_end(&mut got);
        if out.is_empty() && !s.wants_write() {
            break;
        }
        send(&mut s, &mut out, &mut pipe);
        s.flush(&mut pipe).unwrap();
    }
    assert_eq!(got.len(), 1_000_000);
    assert!(got.iter().all(|&b| b == b'x'));
    assert_eq!(s.buffered(), 0);
}

#[test]
fn garbage_and_plain_http_fail_the_handshake_with_an_alert() {
    let (config, _) = pair();
    for input in [&b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"[..], &[0u8; 16][..]] {
        let mut s = ServerSession::new(config.clone());
        let mut pipe = Pipe {
            input: input.to_vec(),
            ..Pipe::default()
        };
        let e = s.read(&mut pipe, &mut [0u8; 64]).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert!(s.handshake_failed());
        assert!(pipe.out.is_empty() || pipe.out[0] == 0x15, "{:?}", pipe.out);
    }
    let s = ServerSession::new(config);
    assert!(!s.handshake_failed());
}

#[test]
fn handle_ciphertext_and_read_plaintext_without_a_socket() {
    let (config, root) = pair();
    let mut s = ServerSession::new(config);
    let mut c = client(&[root], &[&rustls::version::TLS13]);
    for _ in 0..10 {
        let mut wire = Vec::new();
        while c.wants_write() {
            c.write_tls(&mut wire).unwrap();
        }
        s.handle_ciphertext(&wire).unwrap();
        let mut back = s.take_outgoing();
        feed(&mut c, &mut back);
        if !c.is_handshaking() && !s.is_handshaking() {
            break;
        }
    }
    assert!(!s.is_handshaking());
    c.writer().write_all(&[b'y'; 40_000]).unwrap();
    let mut wire = Vec::new();
    while c.wants_write() {
        c.write_tls(&mut wire).unwrap();
    }
    s.handle_ciphertext(&wire).unwrap();
    let mut got = 0;
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read_plaintext(&mut buf) {
        if n == 0 {
            break;
        }
        got += n;
    }
    assert_eq!(got, 40_000);
    assert_eq!(s.buffered(), 0);
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
        let mut s = ServerSession::new(config);
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
        proptest::prop_assert!(s.buffered() < 80 * 1024, "{}", s.buffered());
    }
}

/// The fuzz target's configuration: its certificate (fuzz/certs), checked
/// at its start of validity so the test does not expire with it.
fn fuzz_config() -> std::sync::Arc<rustls::ServerConfig> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/certs");
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    crate::tls::load::server_config_at(&root.join("cert.pem"), &root.join("key.pem"), at).unwrap()
}

/// Every input the `tls_session` fuzz target ever crashed on, replayed the
/// way it feeds them and through a socket. The first one: a ClientHello
/// record whose handshake message claims more than the record holds (rustls
/// joins it in our buffer and remembers the offset, 162), then bytes rustls
/// refuses. To fetch the alert, the session then called rustls in a loop
/// with an empty buffer; the second call went back to reading input and
/// rustls sliced `buffer[162..]` of the empty one. See
/// `ServerSession::discard` and `ServerSession::fail`.
#[test]
fn fuzz_regressions_replay_without_a_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/tls_session");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "no input in {}", dir.display());
    let config = fuzz_config();
    for path in inputs {
        let data = std::fs::read(&path).unwrap();
        super::unbuffered::feed_arbitrary(config.clone(), &data);
        // The same bytes from a socket, in one read and byte by byte.
        for step in [data.len().max(1), 1] {
            let mut s = ServerSession::new(config.clone());
            let mut pipe = Pipe::default();
            let mut buf = [0u8; 4096];
            'feed: for chunk in data.chunks(step) {
                pipe.input.extend_from_slice(chunk);
                loop {
                    match s.read(&mut pipe, &mut buf) {
                        Ok(0) => break 'feed,
                        Ok(_) => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => break 'feed,
                    }
                    let _ = s.write_vectored(&mut pipe, &[IoSlice::new(b"x")]);
                }
            }
            s.close();
            let _ = s.flush(&mut pipe);
            assert!(
                pipe.out.len() < 64 * 1024,
                "{}: {}",
                path.display(),
                pipe.out.len()
            );
        }
    }
}

/// A ClientHello split over several records, the session asked to write
/// and to close while rustls holds the first records: it must hand rustls
/// the same bytes again, and finish the handshake after.
#[test]
fn a_handshake_message_across_records_survives_writes_and_closes_meanwhile() {
    let (config, root) = pair();
    let mut s = ServerSession::new(config);
    let mut c = client(&[root], &[&rustls::version::TLS13]);
    let mut hello = Vec::new();
    c.write_tls(&mut hello).unwrap();
    // Re-frame the ClientHello's handshake bytes as records of 40 bytes.
    assert_eq!(hello[0], 0x16);
    let body = &hello[5..];
    let mut pipe = Pipe::default();
    let mut buf = [0u8; 1024];
    for part in body.chunks(40) {
        pipe.input
            .extend_from_slice(&[0x16, 0x03, 0x01, 0, part.len() as u8]);
        pipe.input.extend_from_slice(part);
        let r = s.read(&mut pipe, &mut buf);
        assert!(
            matches!(&r, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "{r:?}"
        );
        let w = s.write_vectored(&mut pipe, &[IoSlice::new(b"early")]);
        assert!(
            matches!(&w, Err(e) if e.kind() == io::ErrorKind::WouldBlock),
            "{w:?}"
        );
        // Before the handshake there is nothing to close but the socket.
        s.close();
    }
    assert!(!pipe.out.is_empty(), "no ServerHello");
    feed(&mut c, &mut pipe.out);
    for _ in 0..4 {
        while c.wants_write() {
            c.write_tls(&mut pipe.input).unwrap();
        }
        let _ = s.read(&mut pipe, &mut buf);
        feed(&mut c, &mut pipe.out);
    }
    assert!(!s.is_handshaking() && !c.is_handshaking());
    assert!(!s.handshake_failed());
    assert_eq!(
        s.write_vectored(&mut pipe, &[IoSlice::new(b"hello")])
            .unwrap(),
        5
    );
    s.close();
    s.flush(&mut pipe).unwrap();
    feed(&mut c, &mut pipe.out);
    let mut got = Vec::new();
    let _ = c.reader().read_to_end(&mut got);
    assert_eq!(got, b"hello");
}
