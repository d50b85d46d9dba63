//! A socket and what the worker keeps beside it.

use std::io::{self, Read};
use std::time::Instant;

use bytes::Bytes;
use mio::net::TcpStream;

use crate::conn::{Outbound, Overflow, Session};
use crate::ws;
use crate::ws::deflate::WindowBits;

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
    /// permessage-deflate was negotiated: the window its compressed frames
    /// use. The only compression state a connection has.
    pub deflate: Option<WindowBits>,
}

impl Conn {
    pub fn new(stream: TcpStream, serial: u32, deadline: Instant) -> Self {
        Conn {
            stream,
            serial,
            phase: Phase::Http { deadline },
            inbuf: Vec::new(),
            out: Outbound::default(),
            dirty: false,
            counted: false,
            api_pending: None,
            held: false,
            deflate: None,
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
        self.out.write_to(&mut self.stream)
    }

    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.stream.read(buf)
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

    fn deflate(&self) -> Option<WindowBits> {
        self.deflate
    }
}
