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

/// Options of an accepted socket, set before it is registered: no Nagle
/// delay, and with `send_buffer` > 0 a fixed `SO_SNDBUF`.
///
/// # Why a fixed send buffer
///
/// The kernel's send buffer is memory the outbound queue does not count.
/// Left to autotuning, a client that stops reading lets its socket grow to
/// `tcp_wmem`'s maximum (4 MiB by default; about 300 KiB measured on
/// loopback) before a single byte waits in the server's queue, so a slow
/// consumer is noticed late and costs up to that much kernel memory
/// besides `--outbound-limit`. A fixed size bounds both (Linux doubles the value
/// asked for its bookkeeping), at the price of autotuning for fast clients
/// on long links: a client gets at most about `2 × send_buffer` per round
/// trip. `docs/reliability.md` has the measurements.
pub fn configure_accepted(tcp: &TcpStream, send_buffer: usize) -> io::Result<()> {
    tcp.set_nodelay(true)?;
    if send_buffer > 0 {
        socket2::SockRef::from(tcp).set_send_buffer_size(send_buffer)?;
    }
    Ok(())
}

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
