//! A client's byte stream as the worker reads and writes it: the
//! [`Socket`] seam between the driver and a [`crate::connection::Connection`].
//!
//! A plain TCP stream is a `Socket`; so is [`Stream`], TCP in clear or
//! behind a TLS session (PROTOCOL.md §11). The connection above only ever
//! sees plaintext, and the driver only ever sees a `Socket`.

mod links;
mod stream;

use std::io::{self, Read, Write};

use mio::net::TcpStream;

pub use links::LinkSockets;
pub use stream::Stream;

/// A connection's byte stream. `flush` writes what the stream itself still
/// holds (TLS records a full socket did not take).
pub trait Socket: Read + Write {
    /// Half-closes the write side once the last bytes are out.
    fn shutdown_write(&mut self) -> io::Result<()>;

    /// Whether a read that filled less than the buffer drained the socket
    /// (see `worker::Driver::read`); not through TLS, where it may be one
    /// record's plaintext with more records behind it.
    fn short_read_drains(&self) -> bool {
        true
    }

    /// The peer sent bytes and never completed the TLS handshake.
    fn handshake_failed(&self) -> bool {
        false
    }
}

impl Socket for TcpStream {
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(std::net::Shutdown::Write)
    }
}
