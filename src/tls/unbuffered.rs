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
//!   nothing per TLS recipient whose socket takes it.
//! - Handshake messages rustls wants sent are encoded into `outgoing` and
//!   written at once.
//!
//! At rest a session is the rustls state machine (keys, sequence numbers,
//! the traffic secrets of TLS 1.3 for key updates) and four empty vectors.
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
    /// `close_notify` is queued.
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
        if !data.is_empty() {
            self.received = true;
        }
        self.incoming.extend_from_slice(data);
        loop {
            let mut none: [u8; 0] = [];
            match self.process(&mut none) {
                Ok(Step::NeedInput) | Ok(Step::Closed) => break,
                Ok(Step::Data(_)) => {}
                Err(e) => return Err(e),
            }
            // The caller's buffer was empty: everything went to `plain`.
            if self.incoming.is_empty() {
                break;
            }
        }
        self.release();
        Ok(())
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

    /// Frees the input buffers once they are empty.
    fn release(&mut self) {
        if self.incoming.is_empty() && self.incoming.capacity() > 0 {
            self.incoming = Vec::new();
        }
        if self.plain.is_empty() && self.plain.capacity() > 0 {
            self.plain = Vec::new();
        }
    }

    /// `io::Read::read` through TLS: plaintext into `buf`, reading
    /// ciphertext from `stream` as needed. `Ok(0)` is the end of the stream
    /// (close_notify or EOF), `WouldBlock` means the stream is drained, a
    /// TLS failure is `InvalidData` (the alert sent on a best-effort write).
    pub fn read<S: Read + Write>(&mut self, stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        if !self.plain.is_empty() {
            return Ok(self.take_plain(buf));
        }
        loop {
            match self.process(buf) {
                Ok(Step::Data(n)) => {
                    self.write_out(stream)?;
                    self.release();
                    return Ok(n);
                }
                Ok(Step::Closed) => {
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
                return Ok(0);
            }
            // More ciphertext.
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

    /// Runs rustls over `incoming` until it yields plaintext (copied into
    /// `buf`, the rest into `plain`), needs more input, or the peer closed.
    /// Handshake records it wants sent are appended to `outgoing`.
    fn process(&mut self, buf: &mut [u8]) -> Result<Step, rustls::Error> {
        loop {
            let status = self.conn.process_tls_records(&mut self.incoming);
            let mut discard = status.discard;
            let step = match status.state {
                Err(e) => {
                    self.failed = true;
                    self.incoming.drain(..discard.min(self.incoming.len()));
                    self.encode_pending();
                    return Err(e);
                }
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut n = 0;
                    while let Some(record) = traffic.next_record() {
                        let record = record?;
                        discard += record.discard;
                        let take = record.payload.len().min(buf.len() - n);
                        buf[n..n + take].copy_from_slice(&record.payload[..take]);
                        n += take;
                        self.plain.extend_from_slice(&record.payload[take..]);
                    }
                    Some(Step::Data(n))
                }
                Ok(ConnectionState::ReadEarlyData(mut early)) => {
                    // Early data is not enabled; drained all the same.
                    while let Some(record) = early.next_record() {
                        discard += record?.discard;
                    }
                    None
                }
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, |out| encode.encode(out))?;
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
                Ok(ConnectionState::BlockedHandshake) | Ok(ConnectionState::WriteTraffic(_)) => {
                    Some(Step::NeedInput)
                }
                Ok(_) => Some(Step::NeedInput),
            };
            self.incoming.drain(..discard.min(self.incoming.len()));
            match step {
                Some(Step::Data(0)) if self.plain.is_empty() => continue,
                Some(step) => return Ok(step),
                None => continue,
            }
        }
    }

    /// After a failure: the alert rustls queued, into `outgoing`.
    fn encode_pending(&mut self) {
        for _ in 0..4 {
            let status = self.conn.process_tls_records(&mut []);
            match status.state {
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    if encode_into(&mut self.outgoing, |out| encode.encode(out)).is_err() {
                        return;
                    }
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => transmit.done(),
                _ => return,
            }
        }
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
    /// when rustls cannot send application data now.
    fn encrypt(&mut self, plain: &[u8], cipher: &mut Vec<u8>) -> io::Result<Option<usize>> {
        for _ in 0..8 {
            let status = self.conn.process_tls_records(&mut []);
            match status.state {
                Ok(ConnectionState::WriteTraffic(mut traffic)) => {
                    return match traffic.encrypt(plain, cipher) {
                        Ok(n) => Ok(Some(n)),
                        Err(EncryptError::InsufficientSize(InsufficientSizeError {
                            required_size,
                        })) => {
                            cipher.resize(required_size, 0);
                            continue;
                        }
                        Err(e) => Err(io::Error::other(e.to_string())),
                    };
                }
                // Something of rustls' own first (a ticket, a key update).
                Ok(ConnectionState::EncodeTlsData(mut encode)) => {
                    encode_into(&mut self.outgoing, |out| encode.encode(out))
                        .map_err(|e| io::Error::other(e.to_string()))?;
                    return Ok(None);
                }
                Ok(ConnectionState::TransmitTlsData(transmit)) => {
                    transmit.done();
                    return Ok(None);
                }
                Ok(_) => return Ok(None),
                Err(e) => {
                    self.failed = true;
                    return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                }
            }
        }
        Ok(None)
    }

    /// Queues `close_notify` (written by the next flush).
    pub fn close(&mut self) {
        if std::mem::replace(&mut self.closed, true) {
            return;
        }
        let status = self.conn.process_tls_records(&mut []);
        if let Ok(ConnectionState::WriteTraffic(mut traffic)) = status.state {
            let mut out = [0u8; 64];
            if let Ok(n) = traffic.queue_close_notify(&mut out) {
                self.outgoing.extend_from_slice(&out[..n]);
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
