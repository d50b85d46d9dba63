//! A client's socket as the worker reads and writes it: in clear, or
//! behind a [`TlsSession`] on a TLS listener (PROTOCOL.md §11).
//!
//! This is the seam the [`crate::connection::Connection`] docs name: the
//! connection only ever sees plaintext. [`Stream::read`] hands out
//! decrypted bytes; [`Stream::write_from`] encrypts the frames the
//! connection queued (they stay plaintext `Bytes` in its queue, counted
//! against `--outbound-limit`, until the socket takes them) and writes the
//! records; [`Stream::shutdown_write`] sends `close_notify` before the
//! half-close.

use std::io::{self, Read};
use std::net::Shutdown;

use mio::net::TcpStream;

use crate::conn::Outbound;
use crate::tls::TlsSession;

#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    tls: Option<Box<TlsSession>>,
    /// The connection asked for the half-close; through TLS it waits for
    /// `close_notify` to be written.
    shutting: bool,
}

impl Stream {
    pub fn new(tcp: TcpStream, tls: Option<Box<TlsSession>>) -> Self {
        Stream {
            tcp,
            tls,
            shutting: false,
        }
    }

    /// Plaintext from the peer, with `io::Read::read`'s meaning of `Ok(0)`
    /// and `WouldBlock`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.read(&mut self.tcp, buf),
            None => self.tcp.read(buf),
        }
    }

    /// Whether a read that filled less than the buffer drained the socket
    /// (in clear; through TLS it may be one record's plaintext, with more
    /// records behind it in the socket).
    pub fn short_read_drains(&self) -> bool {
        self.tls.is_none()
    }

    /// Writes `out` until it is empty or the socket is full; returns the
    /// bytes written to the socket. Finishes a half-close that waited for
    /// TLS records.
    pub fn write_from(&mut self, out: &mut Outbound) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return out.write_to(&mut self.tcp);
        };
        let written = tls.flush(out, &mut self.tcp)?;
        if self.shutting && out.is_empty() && !tls.wants_write() {
            self.shutting = false;
            let _ = self.tcp.shutdown(Shutdown::Write);
        }
        Ok(written)
    }

    /// Half-closes the write side once everything queued is out: at once in
    /// clear, after `close_notify` through TLS (on a later
    /// [`Stream::write_from`] if the socket is full now).
    pub fn shutdown_write(&mut self, out: &mut Outbound) {
        match &mut self.tls {
            None => {
                let _ = self.tcp.shutdown(Shutdown::Write);
            }
            Some(tls) => {
                tls.close();
                self.shutting = true;
                let _ = self.write_from(out);
            }
        }
    }

    /// A TLS client that sent bytes and never completed the handshake.
    pub fn tls_handshake_failed(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.handshake_failed())
    }
}
