//! One joined connection over a blocking std socket, with a deadline on
//! every step: what the churning and the stalled connections (`--churn`,
//! `--stalled`) need, who do one thing each and then misbehave, and so do
//! not belong in the event loops that measure.

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::payload::{self, Reply};
use crate::scenario::Target;
use crate::ws;

/// TCP_MAXSEG of a connection with a shrunk receive buffer.
const ETHERNET_MSS: u32 = 1460;

/// Largest server frame read while waiting for `joined` or a close.
const MAX_FRAME: usize = 64 * 1024;

/// Which step of opening a joined connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    Connect,
    Handshake,
    Join,
}

/// A connection that is joined; `rest` holds bytes read past the `joined`.
pub struct Joined {
    pub stream: TcpStream,
    pub rest: Vec<u8>,
}

/// How a connection ended, as the client saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code (0: none given).
    Close(u16),
    /// End of stream or reset without a close frame.
    Eof,
    /// Nothing decisive before the deadline.
    Timeout,
}

/// Connects from `source` to `target`, upgrades and joins `channel`, all
/// within `timeout`. `rcvbuf` shrinks the receive buffer before connecting
/// (a reader that stops fills it sooner).
pub fn open_joined(
    source: Ipv4Addr,
    target: &Target,
    channel: &str,
    rcvbuf: Option<usize>,
    timeout: Duration,
) -> Result<Joined, Step> {
    let deadline = Instant::now() + timeout;
    let socket =
        Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(|_| Step::Connect)?;
    if let Some(n) = rcvbuf {
        socket.set_recv_buffer_size(n).map_err(|_| Step::Connect)?;
        // An Ethernet-sized MSS, as a real client's: loopback's 64 KiB
        // segments would let the server's send buffer autotune to
        // tcp_wmem's maximum (4 MiB) at once.
        socket
            .set_tcp_mss(ETHERNET_MSS)
            .map_err(|_| Step::Connect)?;
    }
    socket.set_tcp_nodelay(true).map_err(|_| Step::Connect)?;
    socket
        .bind(&SocketAddr::from((source, 0)).into())
        .map_err(|_| Step::Connect)?;
    socket
        .connect_timeout(&target.addr.into(), timeout)
        .map_err(|_| Step::Connect)?;
    let mut stream: TcpStream = socket.into();
    let mut out = Vec::with_capacity(256);
    ws::write_handshake_request(&target.host, &target.path, &mut out);
    write_by(&mut stream, &out, deadline).map_err(|_| Step::Handshake)?;
    let mut buf = Vec::with_capacity(1024);
    let head = loop {
        match ws::parse_handshake_response(&buf) {
            Ok(Some(n)) => break n,
            Ok(None) => read_more(&mut stream, &mut buf, deadline).map_err(|_| Step::Handshake)?,
            Err(_) => return Err(Step::Handshake),
        }
    };
    buf.drain(..head);
    out.clear();
    let mut join = Vec::with_capacity(64);
    payload::write_join(channel, &mut join);
    ws::write_client_frame(ws::OP_TEXT, &join, mask(), &mut out);
    write_by(&mut stream, &out, deadline).map_err(|_| Step::Join)?;
    loop {
        match ws::parse_frame(&buf, MAX_FRAME) {
            Ok(Some(h)) => {
                let body = &buf[h.header_len..h.frame_len()];
                let reply = (h.opcode == ws::OP_TEXT).then(|| payload::classify_reply(body));
                let closed = h.opcode == ws::OP_CLOSE;
                buf.drain(..h.frame_len());
                match reply {
                    Some(Reply::Joined) => break,
                    Some(Reply::Error) => return Err(Step::Join),
                    _ if closed => return Err(Step::Join),
                    _ => {}
                }
            }
            Ok(None) => read_more(&mut stream, &mut buf, deadline).map_err(|_| Step::Join)?,
            Err(_) => return Err(Step::Join),
        }
    }
    Ok(Joined { stream, rest: buf })
}

/// Sends a close frame (code 1000) and waits, until `deadline`, for the
/// server's close frame or end of stream.
pub fn close_cleanly(j: &mut Joined, deadline: Instant) -> Ending {
    let mut out = Vec::with_capacity(16);
    ws::write_client_frame(ws::OP_CLOSE, &1000u16.to_be_bytes(), mask(), &mut out);
    if write_by(&mut j.stream, &out, deadline).is_err() {
        return Ending::Eof;
    }
    read_to_close(j, deadline)
}

/// Reads (and discards) everything until a close frame, end of stream or
/// `deadline`.
pub fn read_to_close(j: &mut Joined, deadline: Instant) -> Ending {
    let buf = &mut j.rest;
    loop {
        let mut at = 0;
        loop {
            match ws::parse_frame(&buf[at..], usize::MAX / 2) {
                Ok(Some(h)) if h.opcode == ws::OP_CLOSE => {
                    let code = match &buf[at + h.header_len..at + h.frame_len()] {
                        [a, b, ..] => u16::from_be_bytes([*a, *b]),
                        _ => 0,
                    };
                    return Ending::Close(code);
                }
                Ok(Some(h)) => at += h.frame_len(),
                Ok(None) => break,
                Err(_) => return Ending::Eof,
            }
        }
        buf.drain(..at);
        match read_more(&mut j.stream, buf, deadline) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ending::Timeout,
            Err(_) => return Ending::Eof,
        }
    }
}

/// One read into `buf`, waiting at most until `deadline`; end of stream is
/// `UnexpectedEof`.
fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>, deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_read_timeout(Some(left))?;
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => Err(io::ErrorKind::UnexpectedEof.into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Err(io::ErrorKind::TimedOut.into()),
        Err(e) => Err(e),
    }
}

fn write_by(stream: &mut TcpStream, bytes: &[u8], deadline: Instant) -> io::Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(io::ErrorKind::TimedOut.into());
    }
    stream.set_write_timeout(Some(left))?;
    stream.write_all(bytes)
}

/// A client frame mask; its value does not matter to a server.
fn mask() -> [u8; 4] {
    [0x5b, 0x1d, 0x27, 0x9e]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::parse_url;
    use crate::testserver::{self, Fault};

    #[test]
    fn opens_a_joined_connection_and_sees_the_end_of_stream() {
        let target = parse_url(&testserver::start(Fault::None)).unwrap();
        let source = Ipv4Addr::new(127, 0, 0, 1);
        let mut j = open_joined(source, &target, "t:1", Some(4096), Duration::from_secs(5))
            .unwrap_or_else(|s| panic!("failed at {s:?}"));
        // Nothing more comes from this server unprompted.
        let soon = Instant::now() + Duration::from_millis(100);
        assert_eq!(read_to_close(&mut j, soon), Ending::Timeout);
        j.stream.shutdown(std::net::Shutdown::Both).unwrap();
        assert_eq!(
            read_to_close(&mut j, Instant::now() + Duration::from_secs(2)),
            Ending::Eof
        );
    }

    #[test]
    fn a_close_frame_carries_its_code() {
        let (a, mut b) = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
            (l.accept().unwrap().0, c)
        };
        // A text frame, then close 4008, as a server writes them.
        let mut frames = vec![0x81, 2, b'h', b'i', 0x88, 2];
        frames.extend_from_slice(&4008u16.to_be_bytes());
        (&a).write_all(&frames).unwrap();
        let mut j = Joined {
            stream: b.try_clone().unwrap(),
            rest: Vec::new(),
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        assert_eq!(read_to_close(&mut j, deadline), Ending::Close(4008));
        let _ = b.flush();
    }
}
