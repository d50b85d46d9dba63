//! One TLS session in front of a byte stream, driven by its owner's loop.
//!
//! [`TlsSession`] wraps a `rustls::Connection` (server side for the
//! listener, client side for `rediss://`) and adds what the poll loops need
//! around it, without a socket of its own: the owner passes the stream in
//! on each call, so unit tests and the fuzz target drive it over in-memory
//! buffers.
//!
//! - Input: [`TlsSession::read`] hands back decrypted bytes with the shape
//!   of `io::Read::read` (0 = the peer closed, `WouldBlock` = nothing yet),
//!   reading ciphertext from the stream only once the plaintext already
//!   decrypted is drained, so rustls' receive buffer never grows past its
//!   own limit. Handshake answers are written at once.
//! - Output: [`TlsSession::flush`] moves queued frames from an
//!   [`Outbound`] into the TLS writer and the records to the stream until
//!   both are empty or the stream is full. Frames stay plaintext `Bytes` in
//!   the queue (shared by every recipient of a broadcast, counted against
//!   `--outbound-limit`) until the socket can take them; rustls holds at
//!   most [`BUFFER_LIMIT`] bytes of records on top, so a connection's
//!   memory stays within the limit plus that.
//!
//! # Failures
//!
//! A record that does not decrypt or a handshake the peer botches is an
//! `InvalidData` error from `read`; the alert rustls queued for it is sent
//! on a best-effort write before the error is returned, and the owner drops
//! the connection. [`TlsSession::handshake_failed`] tells a failed
//! handshake apart from a peer that connected and hung up.

use std::io::{self, IoSlice, Read, Write};
use std::sync::Arc;

use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::conn::{outbound::MAX_IOV, Outbound};

/// Bytes of encrypted records (and of plaintext written before the
/// handshake completes) rustls may hold for one connection.
pub const BUFFER_LIMIT: usize = 32 * 1024;

/// A TLS session; see the module documentation.
#[derive(Debug)]
pub struct TlsSession {
    conn: Connection,
    /// Some ciphertext arrived (a hang-up before any is not a failed
    /// handshake, just a port probe).
    received: bool,
    /// rustls refused the peer's bytes.
    failed: bool,
    /// `close_notify` is queued.
    closed: bool,
}

impl TlsSession {
    /// A server session for one accepted connection.
    pub fn server(config: Arc<ServerConfig>) -> Self {
        let conn = ServerConnection::new(config).expect("a server config is always usable");
        Self::wrap(Connection::Server(conn))
    }

    /// A client session to `name` (a DNS name or an IP address, checked
    /// against the server's certificate).
    pub fn client(config: Arc<ClientConfig>, name: ServerName<'static>) -> Self {
        let conn = ClientConnection::new(config, name).expect("a client config is always usable");
        Self::wrap(Connection::Client(conn))
    }

    fn wrap(mut conn: Connection) -> Self {
        conn.set_buffer_limit(Some(BUFFER_LIMIT));
        TlsSession {
            conn,
            received: false,
            failed: false,
            closed: false,
        }
    }

    /// Whether the handshake is still under way.
    pub fn is_handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    /// The peer sent bytes and the handshake did not complete: a failed
    /// handshake, as counted in the metrics.
    pub fn handshake_failed(&self) -> bool {
        self.failed || (self.received && self.conn.is_handshaking())
    }

    /// Encrypted records wait for the stream.
    pub fn wants_write(&self) -> bool {
        self.conn.wants_write()
    }

    /// Feeds ciphertext and decrypts what completed; returns the bytes
    /// taken from `data` (fewer than given while decrypted plaintext waits
    /// to be read). The pure twin of the socket half of [`Self::read`].
    pub fn handle_ciphertext(&mut self, mut data: &[u8]) -> Result<usize, rustls::Error> {
        let before = data.len();
        while !data.is_empty() {
            match self.conn.read_tls(&mut data) {
                Ok(0) => break,
                Ok(_) => {
                    self.received = true;
                    self.process()?;
                }
                // The received-plaintext buffer is full: read it first.
                Err(_) => break,
            }
        }
        Ok(before - data.len())
    }

    fn process(&mut self) -> Result<(), rustls::Error> {
        match self.conn.process_new_packets() {
            Ok(_) => Ok(()),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    /// Copies decrypted bytes into `buf`: `Ok(0)` once the peer sent
    /// `close_notify`, `WouldBlock` when none are waiting.
    pub fn read_plaintext(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.conn.reader().read(buf)
    }

    /// `io::Read::read` through TLS: decrypted bytes into `buf`, reading
    /// ciphertext from `stream` as needed. `Ok(0)` is the end of the stream
    /// (`close_notify` or EOF), `WouldBlock` means the stream is drained.
    pub fn read<S: Read + Write>(&mut self, stream: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // EOF without close_notify: a truncation the owner treats
                // as the end of the stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            match self.conn.read_tls(stream) {
                Ok(0) => return Ok(0),
                Ok(_) => {
                    self.received = true;
                    if let Err(e) = self.process() {
                        // Best effort: tell the peer why.
                        let _ = self.write_tls(stream);
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if self.conn.wants_write() {
                        self.write_tls(stream)?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes encrypted records until none wait or `w` is full; returns
    /// the bytes written.
    pub fn write_tls<W: Write>(&mut self, w: &mut W) -> io::Result<usize> {
        let mut total = 0;
        while self.conn.wants_write() {
            match self.conn.write_tls(w) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => total += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }

    /// Moves frames from `out` into the TLS writer as far as its buffer
    /// allows (several frames share records); returns the plaintext bytes
    /// taken. Nothing moves during the handshake.
    pub fn encrypt(&mut self, out: &mut Outbound) -> usize {
        let mut taken = 0;
        while !out.is_empty() && !self.conn.is_handshaking() {
            let mut slices = [IoSlice::new(&[]); MAX_IOV];
            let n = out.io_slices(&mut slices);
            // An error here is the connection's fatal error, which the
            // next read reports; nothing more can be sent.
            let moved = self
                .conn
                .writer()
                .write_vectored(&slices[..n])
                .unwrap_or_default();
            if moved == 0 {
                break;
            }
            out.advance(moved);
            taken += moved;
        }
        taken
    }

    /// Encrypts queued frames and writes the records to `w` until both are
    /// empty or `w` is full; returns the ciphertext bytes written.
    pub fn flush<W: Write>(&mut self, out: &mut Outbound, w: &mut W) -> io::Result<usize> {
        let mut total = 0;
        loop {
            total += self.write_tls(w)?;
            if self.conn.wants_write() || self.encrypt(out) == 0 {
                return Ok(total);
            }
        }
    }

    /// Queues `close_notify`, so the peer can tell our end of the stream
    /// from a truncation; written by the next [`Self::flush`].
    pub fn close(&mut self) {
        if !std::mem::replace(&mut self.closed, true) {
            self.conn.send_close_notify();
        }
    }

    /// Plaintext bytes to encrypt: returns how many the buffer took (0
    /// once it is full, or after a fatal error, which the next read
    /// reports).
    pub fn write_plaintext(&mut self, data: &[u8]) -> usize {
        self.conn.writer().write(data).unwrap_or(0)
    }

    /// [`Self::write_plaintext`] over several buffers; they share records.
    pub fn write_plaintext_vectored(&mut self, bufs: &[IoSlice<'_>]) -> usize {
        self.conn.writer().write_vectored(bufs).unwrap_or(0)
    }
}
