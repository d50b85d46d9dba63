//! A socket and what the worker keeps beside it.
//!
//! On a TLS listener every connection has a [`TlsSession`] between the
//! socket and everything else: [`Conn::read`] hands out plaintext and
//! [`Conn::flush`] encrypts the queued frames, so the HTTP and WebSocket
//! paths above are the same for both.

use std::io::{self, Read};
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;

use crate::conn::{Outbound, Overflow, Session};
use crate::tls::TlsSession;
use crate::ws;

/// Where a connection is in its life.
#[derive(Debug)]
pub enum Phase {
    /// Reading HTTP request heads (the handshake, or API calls over
    /// keep-alive). `deadline` bounds a slow or idle client.
    Http { deadline: Instant },
    /// A WebSocket.
    Ws(Box<WsConn>),
    /// The server queued its last bytes (a close frame or a final response);
    /// once they are written it half-closes and waits for the peer's EOF, so
    /// unread input cannot turn the close into a reset that loses them.
    Closing { deadline: Instant, shut: bool },
}

#[derive(Debug)]
pub struct WsConn {
    pub decoder: ws::Decoder,
    pub session: Session,
    /// `/echo` (the conformance-suite endpoint) instead of the protocol.
    pub echo: bool,
    pub last_recv: Instant,
    pub next_ping: Instant,
}

#[derive(Debug)]
pub struct Conn {
    pub stream: TcpStream,
    /// The TLS session on a TLS listener; `None` in clear.
    pub tls: Option<Box<TlsSession>>,
    pub serial: u32,
    pub phase: Phase,
    /// Bytes of an incomplete frame or request; empty for an idle connection.
    pub inbuf: Vec<u8>,
    pub out: Outbound,
    /// Already on the worker's list of connections to flush.
    pub dirty: bool,
    /// Counted in the WebSocket connection total (for --max-connections).
    pub counted: bool,
    /// An API request waiting for owners to answer; input waits behind it.
    pub api_pending: Option<super::http::PendingApi>,
    /// HTTP input waits (an API answer is pending, or responses fill the
    /// queue): requests stay unparsed and, past one read buffer, unread
    /// until `Worker::resume_input`.
    pub held: bool,
}

impl Conn {
    pub fn new(
        stream: TcpStream,
        serial: u32,
        deadline: Instant,
        tls: Option<Box<TlsSession>>,
    ) -> Self {
        Conn {
            stream,
            tls,
            serial,
            phase: Phase::Http { deadline },
            inbuf: Vec::new(),
            out: Outbound::default(),
            dirty: false,
            counted: false,
            api_pending: None,
            held: false,
        }
    }

    pub fn ws_mut(&mut self) -> Option<&mut WsConn> {
        match &mut self.phase {
            Phase::Ws(ws) => Some(ws),
            _ => None,
        }
    }

    pub fn is_closing(&self) -> bool {
        matches!(self.phase, Phase::Closing { .. })
    }

    pub fn queue(&mut self, frame: Bytes, limit: usize) -> Result<(), Overflow> {
        self.out.push(frame, limit)
    }

    /// Writes queued frames until the queue is empty or the socket is full;
    /// returns the bytes written.
    pub fn flush(&mut self) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.flush(&mut self.out, &mut self.stream),
            None => self.out.write_to(&mut self.stream),
        }
    }

    /// Reads plaintext: from the socket, or decrypted by the TLS session.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.read(&mut self.stream, buf),
            None => self.stream.read(buf),
        }
    }

    /// Whether a read that filled less than the buffer drained the socket
    /// (true in clear; through TLS it may be one record's plaintext).
    pub fn short_read_drains(&self) -> bool {
        self.tls.is_none()
    }

    /// Half-closes the socket once everything queued is written (through
    /// TLS: and `close_notify` after it); returns whether it did.
    pub fn shutdown_when_sent(&mut self) -> bool {
        if !self.out.is_empty() {
            return false;
        }
        if let Some(tls) = &mut self.tls {
            tls.close();
            if tls.write_tls(&mut self.stream).is_err() || tls.wants_write() {
                return false;
            }
        }
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        true
    }

    /// A TLS client that sent bytes and never completed the handshake.
    pub fn tls_handshake_failed(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.handshake_failed())
    }
}

impl crate::registry::Recipient for Conn {
    fn serial(&self) -> u32 {
        self.serial
    }

    fn outbound(&mut self) -> &mut Outbound {
        &mut self.out
    }

    fn mark_dirty(&mut self) -> bool {
        !std::mem::replace(&mut self.dirty, true)
    }
}
