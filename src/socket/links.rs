//! The IO shim of the Redis links: the sockets a pure owner
//! ([`LinkDriven`]) asks for, registered with the worker's poll under each
//! link's token, read into the owner and written from it.
//!
//! The owner decides when to connect and when to give a socket up
//! ([`LinkIo`]); this file only opens, reads, writes and drops. For
//! `rediss://` each socket gets a client TLS session in front of it, so the
//! owner's links see plaintext RESP either way.

use std::collections::HashMap;
use std::io::{self, Read, Write};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use crate::broker::redis::{Endpoint, LinkDriven, LinkIo, Now};
use crate::broker::Outbox;
use crate::tls::TlsSession;

/// One link's socket, in clear or through TLS.
#[derive(Debug)]
struct LinkSocket {
    tcp: TcpStream,
    tls: Option<Box<TlsSession>>,
    /// Bytes taken from the owner but not yet accepted by the socket.
    unsent: Option<Bytes>,
}

impl LinkSocket {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.read(&mut self.tcp, buf),
            None => self.tcp.read(buf),
        }
    }

    /// Takes what it can of `data`; `WouldBlock` when nothing fits.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.tcp.write(data);
        };
        tls.write_tls(&mut self.tcp)?;
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.write_plaintext(data);
        tls.write_tls(&mut self.tcp)?;
        match n {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    /// Writes what is unsent, then what `next` gives, until the socket is
    /// full or nothing is left.
    fn write_from(&mut self, mut next: impl FnMut() -> Option<Bytes>) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            // TLS records left over from a full socket.
            tls.write_tls(&mut self.tcp)?;
        }
        loop {
            let Some(mut chunk) = self.unsent.take().or_else(&mut next) else {
                return Ok(());
            };
            while !chunk.is_empty() {
                match self.write(&chunk) {
                    Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                    Ok(n) => {
                        let _ = chunk.split_to(n);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.unsent = Some(chunk);
                        return Ok(());
                    }
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            }
        }
    }
}

/// A worker's Redis sockets, by link token.
#[derive(Debug)]
pub struct LinkSockets {
    registry: Registry,
    sockets: HashMap<Token, LinkSocket>,
}

impl LinkSockets {
    /// Sockets registered with `registry` (the worker's poll).
    pub fn new(registry: Registry) -> Self {
        LinkSockets {
            registry,
            sockets: HashMap::new(),
        }
    }

    /// Link `token`'s socket is ready: reads it into `owner` until
    /// `WouldBlock`, then writes what every link has queued.
    pub fn ready(&mut self, token: Token, owner: &mut impl LinkDriven, now: Now, out: &mut Outbox) {
        let mut buf = [0u8; 16 * 1024];
        while let Some(socket) = self.sockets.get_mut(&token) {
            match socket.read(&mut buf) {
                Ok(0) => {
                    self.drop_socket(token);
                    owner.handle_closed(token, now, out);
                }
                Ok(n) => owner.handle_input(token, &buf[..n], now, out),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        // TLS refused: an untrusted or misnamed certificate.
                        tracing::warn!(error = %e, "redis TLS failed");
                    } else {
                        tracing::debug!(error = %e, "redis read");
                    }
                    self.drop_socket(token);
                    owner.handle_closed(token, now, out);
                }
            }
            // A session that failed on what it read gives its socket up.
            self.open_and_close(owner, now, out);
        }
        self.drive(owner, now, out);
    }

    /// Opens and drops the sockets `owner` asked for, then writes what its
    /// links queued. Call after every call into the owner.
    pub fn drive(&mut self, owner: &mut impl LinkDriven, now: Now, out: &mut Outbox) {
        self.open_and_close(owner, now, out);
        let tokens: Vec<Token> = self.sockets.keys().copied().collect();
        for token in tokens {
            let Some(socket) = self.sockets.get_mut(&token) else {
                continue;
            };
            if let Err(e) = socket.write_from(|| owner.poll_transmit(token)) {
                tracing::debug!(error = %e, "redis write");
                self.drop_socket(token);
                owner.handle_closed(token, now, out);
                self.open_and_close(owner, now, out);
            }
        }
    }

    fn open_and_close(&mut self, owner: &mut impl LinkDriven, now: Now, out: &mut Outbox) {
        while let Some((token, io)) = owner.poll_io() {
            self.drop_socket(token);
            if let LinkIo::Connect(endpoint) = io {
                if let Err(e) = self.connect(token, &endpoint) {
                    tracing::debug!(addr = %endpoint.addr, error = %e, "redis connect failed");
                    owner.handle_closed(token, now, out);
                }
            }
        }
    }

    fn connect(&mut self, token: Token, endpoint: &Endpoint) -> io::Result<()> {
        let mut tcp = TcpStream::connect(endpoint.addr)?;
        let _ = tcp.set_nodelay(true);
        self.registry
            .register(&mut tcp, token, Interest::READABLE | Interest::WRITABLE)?;
        let tls = endpoint
            .tls
            .as_ref()
            .map(|(config, name)| Box::new(TlsSession::client(config.clone(), name.clone())));
        self.sockets.insert(
            token,
            LinkSocket {
                tcp,
                tls,
                unsent: None,
            },
        );
        Ok(())
    }

    fn drop_socket(&mut self, token: Token) {
        if let Some(mut socket) = self.sockets.remove(&token) {
            let _ = self.registry.deregister(&mut socket.tcp);
        }
    }
}
