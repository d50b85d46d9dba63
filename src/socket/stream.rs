//! A client's socket as the worker reads and writes it: in clear, or
//! behind a [`ServerSession`] on a TLS listener (PROTOCOL.md §11).
//!
//! This is the [`Socket`] seam the driver names: the connection above
//! only ever sees plaintext. Reads hand out decrypted bytes. Writes take
//! the frames the connection queued (they stay plaintext `Bytes` in its
//! queue, counted against `--outbound-limit`, until the socket can take
//! them), several frames to a record, and write the records; what a full
//! socket leaves is kept by the session, at most
//! [`crate::tls::unbuffered::OUT_CHUNK`] of plaintext's worth. `flush`
//! writes those leftovers and finishes a half-close, which through TLS
//! waits for `close_notify`.
//!
//! # Write semantics
//!
//! `write` returns fewer bytes than offered only when the socket is full
//! (records are left in the session): the caller takes a short write for a
//! full socket and waits for the writable edge.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

use super::Socket;
use crate::tls::{ServerSession, ServerTls};

#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    tls: Option<Box<ServerSession>>,
    /// The connection asked for the half-close; through TLS it waits until
    /// `close_notify` is written.
    shutting: bool,
}

impl Stream {
    /// An accepted socket, behind a TLS session on a TLS listener. The
    /// certificate is the one of the moment (SIGHUP may replace it): one
    /// atomic load per connection, none per message. The connection's
    /// handshake timeout, running from now, covers the TLS handshake.
    pub fn accepted(tcp: TcpStream, tls: Option<&ServerTls>) -> Self {
        Stream {
            tcp,
            tls: tls.map(|t| Box::new(ServerSession::new(t.config()))),
            shutting: false,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.read(&mut self.tcp, buf),
            None => self.tcp.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.tcp.write(buf),
            Some(tls) => tls.write_vectored(&mut self.tcp, &[IoSlice::new(buf)]),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match &mut self.tls {
            None => self.tcp.write_vectored(bufs),
            Some(tls) => tls.write_vectored(&mut self.tcp, bufs),
        }
    }

    /// Writes records left in rustls by a full socket, and half-closes
    /// once they are out if the connection asked for it.
    fn flush(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        let all_out = tls.flush(&mut self.tcp)?;
        if self.shutting && all_out {
            self.shutting = false;
            let _ = self.tcp.shutdown(Shutdown::Write);
        }
        Ok(())
    }
}

impl Socket for Stream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => self.tcp.shutdown(Shutdown::Write),
            Some(tls) => {
                tls.close();
                self.shutting = true;
                self.flush()
            }
        }
    }

    fn short_read_drains(&self) -> bool {
        self.tls.is_none()
    }

    fn handshake_failed(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.handshake_failed())
    }
}
