//! A client's socket as the worker reads and writes it: in clear, or
//! behind a [`TlsSession`] on a TLS listener (PROTOCOL.md §11).
//!
//! This is the [`Socket`] seam the driver names: the connection above
//! only ever sees plaintext. Reads hand out decrypted bytes. Writes take
//! the frames the connection queued (they stay plaintext `Bytes` in its
//! queue, counted against `--outbound-limit`, until the socket can take
//! them) into the TLS writer, several frames to a record, and write the
//! records; rustls holds at most [`crate::tls::session::BUFFER_LIMIT`]
//! bytes of them. `flush` writes records left over from a full socket and
//! finishes a half-close, which through TLS waits for `close_notify`.
//!
//! # Write semantics
//!
//! `write` returns fewer bytes than offered only when the socket is full
//! (records are left in rustls), never merely because rustls' buffer is:
//! the caller takes a short write for a full socket and waits for the
//! writable edge.

use std::io::{self, IoSlice, Read, Write};
use std::net::Shutdown;

use mio::net::TcpStream;

use super::Socket;
use crate::tls::{ServerTls, TlsSession};

#[derive(Debug)]
pub struct Stream {
    tcp: TcpStream,
    tls: Option<Box<TlsSession>>,
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
            tls: tls.map(|t| Box::new(TlsSession::server(t.config()))),
            shutting: false,
        }
    }

    /// Moves `bufs` into the TLS writer and the records to the socket
    /// until all are taken or the socket is full; see the module docs.
    fn write_tls(&mut self, mut bufs: &mut [IoSlice<'_>]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.tcp.write_vectored(bufs);
        };
        let mut taken = 0;
        loop {
            tls.write_tls(&mut self.tcp)?;
            if tls.wants_write() || bufs.iter().all(|b| b.is_empty()) {
                break;
            }
            let n = tls.write_plaintext_vectored(bufs);
            if n == 0 {
                // The handshake is not done (nothing is queued then), or the
                // session failed: the next read reports it.
                break;
            }
            taken += n;
            IoSlice::advance_slices(&mut bufs, n);
        }
        match taken {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
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
        match self.tls {
            None => self.tcp.write(buf),
            Some(_) => self.write_tls(&mut [IoSlice::new(buf)]),
        }
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self.tls {
            None => self.tcp.write_vectored(bufs),
            Some(_) => {
                let mut owned = [IoSlice::new(&[]); crate::conn::outbound::MAX_IOV];
                let n = bufs.len().min(owned.len());
                owned[..n].copy_from_slice(&bufs[..n]);
                self.write_tls(&mut owned[..n])
            }
        }
    }

    /// Writes records left in rustls by a full socket, and half-closes
    /// once they are out if the connection asked for it.
    fn flush(&mut self) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        tls.write_tls(&mut self.tcp)?;
        if self.shutting && !tls.wants_write() {
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
