//! A listener-side TLS session that holds no buffer while its connection
//! is idle: rustls' unbuffered API with buffers of our own.
//!
//! The buffered `rustls::ServerConnection` keeps a 4 KiB receive buffer
//! (its deframer resizes to 4 KiB on every read and keeps it), which was
//! half of what a TLS connection cost at rest (`docs/tls.md`). Here:
//!
//! - **Input**: ciphertext is read from the socket into `incoming`, which
//!   exists only while a record is incomplete or being processed, and is
//!   freed as soon as it is empty. rustls decrypts from it; plaintext goes
//!   straight into the caller's buffer (what a record holds beyond that
//!   buffer waits in `plain`, freed likewise).
//! - **Output**: frames are copied into a per-thread plaintext scratch
//!   (several frames share a record), encrypted into a per-thread
//!   ciphertext scratch and written; only what the socket did not take is
//!   kept, in `outgoing`, at most [`OUT_CHUNK`] plaintext's worth plus the
//!   records' overhead, and freed once written. So a broadcast allocates
//!   nothing of ours per TLS recipient whose socket takes it (rustls 0.23
//!   allocates one buffer per record it seals, freed at once).
//! - Handshake messages rustls wants sent are encoded into `outgoing` and
//!   written at once.
//!
//! At rest a session is the rustls state machine (keys, sequence numbers,
//! the traffic secrets of TLS 1.3 for key updates) and three empty vectors.
//!
//! # Keeping rustls' buffer contract
//!
//! `process_tls_records` is always handed `incoming`, the bytes rustls has
//! not yet told us to discard, and exactly its `discard` is dropped after
//! each state is handled ([`ServerSession::discard`]); after a refused
//! input, rustls is called once more for its alert and never again
//! ([`ServerSession::fail`]). Both rules come from a fuzz finding, kept in
//! `fuzz/regressions/tls_session/` and replayed by `cargo test`.
//!
//! [`ServerSession`] keeps the shape of [`super::TlsSession`]'s server use:
//! `read` hands out plaintext like `io::Read::read`, `write_vectored`
//! takes frames like `io::Write::write_vectored` (short only when the socket
//! is full), `flush` writes leftovers.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError, EncryptError, InsufficientSizeError};
use rustls::ServerConfig;

/// Plaintext encrypted per `write_vectored` round (two full records):
/// also the bound on ciphertext kept for a full socket.
pub const OUT_CHUNK: usize = 32 * 1024;
/// Ciphertext read from the socket per read call.
const READ_CHUNK: usize = 16 * 1024 + 256;
/// More than a record's overhead (header, tag, content type, padding).
const RECORD_OVERHEAD: usize = 64;

thread_local! {
    /// (plaintext gathered from frames, ciphertext made from it): per
    /// worker thread, reused by every session on it.
    static SCRATCH: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// A listener-side TLS session; see the module documentation.
pub struct ServerSession {
    conn: UnbufferedServerConnection,
    /// Ciphertext read and not yet consumed; empty and unallocated at rest.
    incoming: Vec<u8>,
    /// Decrypted bytes the caller's buffer had no room for.
    plain: Vec<u8>,
    /// Records the socket has not taken yet.
    outgoing: Vec<u8>,
    /// Some ciphertext arrived (a hang-up before any is a port probe).
    received: bool,
    /// rustls refused the peer's bytes.
    failed: bool,
    /// The peer sent close_notify, or closed: nothing more will come.
    peer_closed: bool,
    /// `close_notify` is queued (not before the handshake is done: until
    /// then there is nothing to close but the socket).
    closed: bool,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("incoming", &self.incoming.len())
            .field("plain", &self.plain.len())
            .field("outgoing", &self.outgoing.len())
            .field("handshaking", &self.conn.is_handshaking())
            .field("failed", &self.failed)
            .finish()
    }
}

/// What one round of processing the input gave.
enum Step {
    /// This many plaintext bytes are in the caller's buffer.
    Data(usize),
    /// The peer closed the TLS stream.
    Closed,
    /// Nothing more without more ciphertext.
    NeedInput,
}

impl ServerSession {
    /// A session for one accepted connection.
    pub fn new(config: Arc<ServerConfig>) -> Self {
        let conn =
            UnbufferedServerConnection::new(config).expect("a server config is always usable");
        ServerSession {
            conn,
            incoming: Vec::new(),
            plain: Vec::new(),
            outgoing: Vec::new(),
            received: false,
            failed: false,
            peer_closed: false,
            closed: false,
        }
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer sent bytes and the handshake did not complete.
    pub fn handshake_failed(&self) -> bool {
        self.failed || (self.received && self.conn.is_handshaking())
    }

    /// Encrypted records wait for the socket.
    pub fn wants_write(&self) -> bool {
        !self.outgoing.is_empty()
    }

    /// Bytes this session holds in buffers of its own (0 at rest).
    pub fn buffered(&self) -> usize {
        self.incoming.capacity() + self.plain.capacity() + self.outgoing.capacity()
    }

    /// Feeds ciphertext (for tests and the fuzz target: the socket half of
    /// [`Self::read`] without a socket); decrypted bytes wait for
    /// [`Self::read_plaintext`], records to send for [`Self::take_outgoing`].
    pub fn handle_ciphertext(&mut self, data: &[u8]) -> Result<(), rustls::Error> {
        if self.failed {
            return Err(rustls::Error::General("the session failed".into()));
        }
        if !data.is_empty() {
            self.received = true;
        }
        self.incoming.extend_from_slice(data);
        let result = self.process(&mut []).map(|_| ());
        self.release();
        result
    }

    /// Decrypted bytes into `buf`; `WouldBlock` when none wait, `Ok(0)`
    /// once the peer closed.
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.plain.is_empty() {
            return Ok(self.take_plain(buf));
        }
        if self.peer_closed {
            return Ok(0);
        }
        Err(io::ErrorKind::WouldBlock.into())
    }

    /// Records waiting to be sent (for tests and the fuzz target).
    pub fn take_outgoing(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.outgoing)
    }

    fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let n = self.plain.len().min(buf.len());
        buf[..n].copy_from_slice(&self.plain[..n]);
        self.plain.drain(..n);
        if self.plain.is_empty() {
            self.plain = Vec::new();
        }
        n
    }

    /// Frees the input buffers once they are empty. An empty `incoming`
    /// holds nothing rustls has yet to see discarded, so the next call may
    /// hand it a fresh buffer.
    fn release(&mut self) {
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            self.incoming = Vec::new();
        }
        if self.plain.is_empty() && self.plain.capacity() > 0 {
            self.plain = Vec::new();
        }
    }

    /// Drops the first `n` bytes of `incoming`, as rustls asked.
    ///
    /// # The buffer contract
    ///
    /// rustls' unbuffered API remembers how far it got into the buffer it
    /// was handed: a handshake message split across records is joined in
    /// place, and its records stay in `incoming` until rustls reports them
    /// in a `discard`. So every `process_tls_records` call gets `incoming`
    /// (never an empty or other buffer, even just to encrypt or to fetch an
    /// alert), and only what rustls reported is dropped, exactly. Handing it
    /// an empty buffer while it still held such an offset was the panic the
    /// fuzz target found (`fuzz/regressions/tls_session/`).
    fn discard(&mut self, n: usize) {
        debug_assert!(
            n <= self.incoming.len(),
            "rustls discards {n} of {}",
            self.incoming.len()
        );
        self.incoming.drain(..n.min(self.incoming.len()));
    }

    /// `io::Read::read` through TLS: plaintext into `buf`, reading
    /// ciphertext from `stream` as needed. `Ok(0)` is the end of the stream
    /// (close_notify or EOF), `WouldBlock` means the stream is drained, a
    /// TLS failure is `InvalidData` (the alert sent on a best-effort write).
    pub fn read<S: Read + Write>(&mut self, stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        if !self.plain.is_empty() {
            return Ok(self.take_plain(buf));
        }
        if self.failed {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the TLS session failed",
            ));
        }
        loop {
            match self.process(buf) {
                Ok(Step::Data(n)) => {
                    self.write_out(stream)?;
                    self.release();
                    return Ok(n);
                }
                Ok(Step::Closed) => {
                    let _ = self.write_out(stream);
                    self.release();
                    return Ok(0);
                }
                Ok(Step::NeedInput) => {}
                Err(e) => {
                    let _ = self.write_out(stream);
                    self.release();
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
            self.write_out(stream)?;
            if self.peer_closed {
                self.release();
                return Ok(0);
            }
            // More ciphertext, after what rustls has not discarded yet.
            let at = self.incoming.len();
            self.incoming.resize(at + READ_CHUNK, 0);
            let got = loop {
                match stream.read(&mut self.incoming[at..]) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    other => break other,
                }
            };
            match got {
                Ok(n) => {
                    self.incoming.truncate(at + n);
                    if n == 0 {
                        self.peer_closed = true;
                        self.release();
                        return Ok(0);
                    }
                    self.received = true;
                }
                Err(e) => {
                    self.incoming.truncate(at);
                    self.release();
                    return Err(e);
                }
            }
        }
    }

    /// Runs rustls over `incoming` until it needs more input or the peer
    /// closed, the plaintext of every complete record into `buf` (what does
    /// not fit into `plain`). Handshake records it wants sent are appended
    /// to `outgoing`. Returns `Data(n)` when `buf` or `plain` got bytes.
    fn process(&mut self, buf: &mut [u8]) -> Result<Step, rustls::Error> {
        let mut n = 0;
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let step = match status.state {
                Err(e) => {
                    self.discard(discard);
                    self.fail();
                    return Err(e);
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    while let Some(record) = traffic.next_record() {
                        let record = match record {
                            Ok(r) => r,
                            Err(e) => {
                                drop(traffic);
                                self.discard(discard);
                                self.fail();
                                return Err(e);
                            }
                        };
                        discard += record.discard;
                        let take = record.payload.len().min(buf.len() - n);
                        buf[n..n + take].copy_from_slice(&record.payload[..take]);
                        n += take;
                        self.plain.extend_from_slice(&record.payload[take..]);
                    }
                    None
                }
                Ok(ConnectionState::ReadEarlyData(mut early)) => {
                    // Early data is not enabled; drained all the same.
                    while let Some(record) = early.next_record() {
                        match record {
                            Ok(r) => discard += r.discard,
                            Err(e) => {
                                drop(early);
                                self.discard(discard);
                                self.fail();
                                return Err(e);
                            }
                        }
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if let Err(e) = encode_into(&mut self.outgoing, |out| encode.encode(out)) {
                        drop(encode);
                        self.discard(discard);
                        self.fail();
                        return Err(e);
                    }
                    None
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    // `outgoing` is ours: written by the caller after this,
                    // kept until the socket takes it.
                    transmit.done();
                    None
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => {
                    self.peer_closed = true;
                    Some(Step::Closed)
                }
                Ok(_) => Some(Step::NeedInput),
            };
            self.discard(discard);
            match step {
                None => continue,
                Some(_) if n > 0 || !self.plain.is_empty() => return Ok(Step::Data(n)),
                Some(step) => return Ok(step),
            }
        }
    }

    /// The peer's bytes were refused: the alert rustls queued goes into
    /// `outgoing`, and rustls is not called again (the next read reports
    /// the failure, writes take nothing).
    ///
    /// One call fetches the alert: rustls hands out what it queued before
    /// it reads input again, and reading again would meet the same refused
    /// bytes and fail a second time (rustls asserts that a connection sends
    /// at most one fatal alert).
    fn fail(&mut self) {
        self.failed = true;
        let status = self.conn.process_tls_records(&mut self.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut encode)) = status.state {
            let _ = encode_into(&mut self.outgoing, |out| encode.encode(out));
        }
        // Nothing will be read any more.
        self.incoming = Vec::new();
        self.plain = Vec::new();
    }

    /// Writes `outgoing` until it is empty or `w` is full.
    fn write_out<W: Write>(&mut self, w: &mut W) -> io::Result<()> {
        let mut at = 0;
        let result = loop {
            if at == self.outgoing.len() {
                break Ok(());
            }
            match w.write(&self.outgoing[at..]) {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => at += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        self.outgoing.drain(..at);
        if self.outgoing.is_empty() {
            self.outgoing = Vec::new();
        }
        result
    }

    /// Writes records left over from a full socket; returns whether none
    /// are left.
    pub fn flush<W: Write>(&mut self, w: &mut W) -> io::Result<bool> {
        self.write_out(w)?;
        Ok(self.outgoing.is_empty())
    }

    /// Takes frames from `bufs` into records and writes them to `w` until
    /// all are taken or `w` is full; returns the plaintext bytes taken.
    /// `WouldBlock` when none could be: records from before still wait,
    /// the handshake is under way, or the session failed (which the next
    /// read reports).
    pub fn write_vectored<W: Write>(
        &mut self,
        w: &mut W,
        bufs: &[IoSlice<'_>],
    ) -> io::Result<usize> {
        self.write_out(w)?;
        if !self.outgoing.is_empty() || self.conn.is_handshaking() || self.failed {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        let mut taken = 0;
        SCRATCH.with(|scratch| {
            let (plain, cipher) = &mut *scratch.borrow_mut();
            while taken < total && self.outgoing.is_empty() {
                // Gather up to OUT_CHUNK plaintext bytes from `taken` on.
                plain.clear();
                let mut skip = taken;
                for b in bufs {
                    if plain.len() == OUT_CHUNK {
                        break;
                    }
                    if skip >= b.len() {
                        skip -= b.len();
                        continue;
                    }
                    let part = &b[skip..];
                    skip = 0;
                    let room = OUT_CHUNK - plain.len();
                    plain.extend_from_slice(&part[..part.len().min(room)]);
                }
                let records = plain.len().div_ceil(16 * 1024).max(1);
                cipher.clear();
                cipher.resize(plain.len() + records * RECORD_OVERHEAD, 0);
                let n = match self.encrypt(plain, cipher)? {
                    Some(n) => n,
                    // rustls queued records of its own (a key update):
                    // they go first, then ours if the socket takes them.
                    None if !self.outgoing.is_empty() => {
                        self.write_out(w)?;
                        continue;
                    }
                    None => break,
                };
                taken += plain.len();
                let mut at = 0;
                while at < n {
                    match w.write(&cipher[at..n]) {
                        Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                        Ok(k) => at += k,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                }
                // The socket is full: keep the rest, stop taking frames.
                self.outgoing.extend_from_slice(&cipher[at..n]);
            }
            Ok(())
        })?;
        if taken == 0 && total > 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(taken)
    }

    /// Encrypts `plain` into `cipher` (grown when rustls asks); `None`
    /// when rustls has something of its own to send first (written before
    /// any record of ours) or cannot send application data now.
    fn encrypt(&mut self, plain: &[u8], cipher: &mut Vec<u8>) -> io::Result<Option<usize>> {
        for _ in 0..8 {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let outcome = match status.state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    match traffic.encrypt(plain, cipher) {
                        Ok(n) => Some(Ok(Some(n))),
                        Err(EncryptError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => {
                            cipher.resize(required_size, 0);
                            None
                        }
                        Err(e) => Some(Err(io::Error::other(e.to_string()))),
                    }
                }
                // Something of rustls' own first (a ticket, a key update).
                Ok(ConnectionState::EncodeTlsData(mut encode)) => Some(
                    encode_into(&mut self.outgoing, |out| encode.encode(out))
                        .map(|()| None)
                        .map_err(|e| io::Error::other(e.to_string())),
                ),
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    Some(Ok(None))
                }
                // Records the last read left undecrypted (it stops at the
                // end of what the socket gave, so only after a caller that
                // stopped reading early): kept for the next read.
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut failed = None;
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(r) => {
                                discard += r.discard;
                                self.plain.extend_from_slice(r.payload);
                            }
                            Err(e) => {
                                failed = Some(e);
                                break;
                            }
                        }
                    }
                    failed.map(|e| Err(io::Error::new(io::ErrorKind::InvalidData, e)))
                }
                Ok(_) => Some(Ok(None)),
                Err(e) => Some(Err(io::Error::new(io::ErrorKind::InvalidData, e))),
            };
            self.discard(discard);
            match outcome {
                None => continue,
                Some(Err(e)) if e.kind() == io::ErrorKind::InvalidData => {
                    self.fail();
                    return Err(e);
                }
                Some(other) => return other,
            }
        }
        Ok(None)
    }

    /// Queues `close_notify` (written by the next flush), after whatever
    /// rustls has of its own to send first.
    pub fn close(&mut self) {
        if self.failed || self.closed {
            return;
        }
        for _ in 0..8 {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let more = match status.state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    let mut out = [0u8; 64];
                    if let Ok(n) = traffic.queue_close_notify(&mut out) {
                        self.outgoing.extend_from_slice(&out[..n]);
                        self.closed = true;
                    }
                    false
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, |out| encode.encode(out)).is_ok()
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    true
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut ok = true;
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(r) => {
                                discard += r.discard;
                                self.plain.extend_from_slice(r.payload);
                            }
                            Err(_) => {
                                ok = false;
                                break;
                            }
                        }
                    }
                    ok
                }
                _ => false,
            };
            self.discard(discard);
            if !more {
                break;
            }
        }
    }
}

/// Appends what `encode` writes to `out`, growing it when asked.
fn encode_into(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, EncodeError>,
) -> Result<(), rustls::Error> {
    let at = out.len();
    let mut room = 4096;
    loop {
        out.resize(at + room, 0);
        match encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return Ok(());
            }
            Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                room = required_size;
            }
            Err(e) => {
                out.truncate(at);
                return Err(rustls::Error::General(e.to_string()));
            }
        }
    }
}

/// Arbitrary bytes as the ciphertext of a listener's connection, the way
/// the `tls_session` fuzz target feeds them (and `cargo test` replays its
/// findings in `fuzz/regressions/tls_session/`): in socket-sized pieces,
/// with a response written and the session closed between them, so every
/// entry point meets whatever rustls holds of a half-read handshake.
/// Panics if the session panics, or if what it holds or answers grows past
/// a handshake's worth.
#[doc(hidden)]
pub fn feed_arbitrary(config: Arc<ServerConfig>, data: &[u8]) {
    let mut s = ServerSession::new(config);
    let mut plain = [0u8; 4096];
    let mut sent = 0;
    let mut sink = Vec::new();
    for (i, piece) in data.chunks(1500).enumerate() {
        if s.handle_ciphertext(piece).is_err() {
            break;
        }
        while let Ok(n) = s.read_plaintext(&mut plain) {
            if n == 0 {
                break;
            }
        }
        let answer = [IoSlice::new(b"HTTP/1.1 200 OK\r\n\r\n")];
        let _ = s.write_vectored(&mut sink, &answer);
        if i == 3 {
            s.close();
        }
        sent += s.take_outgoing().len() + std::mem::take(&mut sink).len();
        // Never more than a handshake message in flight (64 KiB) plus a read.
        assert!(s.buffered() < 96 * 1024, "{}", s.buffered());
    }
    s.close();
    sent += s.take_outgoing().len();
    // Handshake answers and alerts only: a few kilobytes.
    assert!(sent < 64 * 1024, "{sent}");
}
