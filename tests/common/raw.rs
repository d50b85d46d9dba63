//! The raw TCP client: hand-built frames (RFC 6455 §5.2) and HTTP heads.

use super::*;

/// The fixed mask of every raw client frame.
pub const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

pub const OP_CONT: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// Encodes one frame (RFC 6455 §5.2). `rsv` is the three RSV bits (0-7).
pub fn encode_frame(
    fin: bool,
    rsv: u8,
    opcode: u8,
    mask: Option<[u8; 4]>,
    payload: &[u8],
) -> Vec<u8> {
    let mut out = encode_header(fin, rsv, opcode, mask, payload.len() as u64);
    match mask {
        Some(m) => out.extend(payload.iter().enumerate().map(|(i, b)| b ^ m[i % 4])),
        None => out.extend_from_slice(payload),
    }
    out
}

/// Just the header (with the mask key) of a frame announcing `len` bytes.
pub fn encode_header(fin: bool, rsv: u8, opcode: u8, mask: Option<[u8; 4]>, len: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(14);
    out.push((u8::from(fin) << 7) | ((rsv & 7) << 4) | (opcode & 0x0f));
    let m = if mask.is_some() { 0x80 } else { 0 };
    if len < 126 {
        out.push(m | len as u8);
    } else if len <= 0xffff {
        out.push(m | 126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(m | 127);
        out.extend_from_slice(&len.to_be_bytes());
    }
    if let Some(k) = mask {
        out.extend_from_slice(&k);
    }
    out
}

/// A masked client frame.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    encode_frame(fin, 0, opcode, Some(MASK), payload)
}

/// A masked final text frame.
pub fn text_frame(text: &str) -> Vec<u8> {
    frame(true, OP_TEXT, text.as_bytes())
}

/// A masked close frame with a code.
pub fn close_frame(code: u16) -> Vec<u8> {
    frame(true, OP_CLOSE, &code.to_be_bytes())
}

/// One frame as the server sent it.
#[derive(Debug, Clone)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

impl Frame {
    pub fn text(&self) -> &str {
        std::str::from_utf8(&self.payload).expect("server text frame is UTF-8")
    }

    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.payload).unwrap_or_else(|e| {
            panic!(
                "server sent invalid JSON ({e}): {:?}",
                String::from_utf8_lossy(&self.payload)
            )
        })
    }

    /// The close code of a close frame (`None` for an empty close payload).
    pub fn close_code(&self) -> Option<u16> {
        assert_eq!(self.opcode, OP_CLOSE);
        (self.payload.len() >= 2).then(|| u16::from_be_bytes([self.payload[0], self.payload[1]]))
    }
}

/// A parsed HTTP response.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpResponse {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// What a raw read ended with.
#[derive(Debug)]
pub enum RawEnd {
    Eof,
    Timeout,
    Error(io::ErrorKind),
}

/// A raw TCP client: hand-built HTTP heads and frames.
pub struct Raw {
    pub stream: TcpStream,
    buf: Vec<u8>,
    /// The `welcome` when made by [`Raw::ws`].
    pub welcome: Value,
}

/// The RFC 6455 §1.3 sample key and its accept value.
pub const SAMPLE_KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const SAMPLE_ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// An upgrade request head for `PATH_AND_QUERY` with extra header lines.
pub fn upgrade_request(addr: SocketAddr, path_and_query: &str, extra: &[(&str, &str)]) -> String {
    let mut head = format!(
        "GET {path_and_query} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {SAMPLE_KEY}\r\nSec-WebSocket-Version: 13\r\n"
    );
    for (k, v) in extra {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    head
}

impl Raw {
    pub fn connect(addr: SocketAddr) -> Raw {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("tcp connect {addr}: {e}"));
        stream.set_nodelay(true).expect("nodelay");
        stream
            .set_write_timeout(Some(TIMEOUT))
            .expect("write timeout");
        Raw {
            stream,
            buf: Vec::new(),
            welcome: Value::Null,
        }
    }

    /// Sends an upgrade request for `/ws?QUERY` (`/ws` when the query is
    /// empty) and reads the answer, whatever it is.
    #[track_caller]
    pub fn upgrade(addr: SocketAddr, query: &str) -> (Raw, HttpResponse) {
        let mut raw = Raw::connect(addr);
        let path = if query.is_empty() {
            "/ws".to_owned()
        } else {
            format!("/ws?{query}")
        };
        raw.send(upgrade_request(addr, &path, &[]).as_bytes());
        let resp = raw.read_response();
        (raw, resp)
    }

    /// A completed upgrade to `/ws?QUERY` (101 and the right accept key
    /// asserted) with the `welcome` frame read.
    pub fn ws(addr: SocketAddr, query: &str) -> Raw {
        let (mut raw, resp) = Raw::upgrade(addr, query);
        assert_eq!(resp.status, 101, "upgrade refused: {resp:?}");
        assert_eq!(
            resp.header("sec-websocket-accept"),
            Some(SAMPLE_ACCEPT),
            "{resp:?}"
        );
        let f = raw.read_frame(TIMEOUT).expect("welcome frame");
        assert_eq!(f.opcode, OP_TEXT, "first frame is the welcome: {f:?}");
        raw.welcome = f.json();
        assert_eq!(raw.welcome["type"], "welcome");
        raw
    }

    /// Writes bytes; panics on failure.
    pub fn send(&mut self, bytes: &[u8]) {
        self.stream
            .write_all(bytes)
            .unwrap_or_else(|e| panic!("raw write of {} bytes: {e}", bytes.len()));
    }

    /// Writes bytes, ignoring failure (the server may already have closed).
    pub fn send_lossy(&mut self, bytes: &[u8]) {
        let _ = self.stream.write_all(bytes);
    }

    /// Reads more bytes into the buffer; `Err` on EOF, timeout or error.
    fn fill(&mut self, deadline: Instant) -> Result<(), RawEnd> {
        let Some(left) = left(deadline) else {
            return Err(RawEnd::Timeout);
        };
        self.stream
            .set_read_timeout(Some(left))
            .expect("read timeout");
        let mut chunk = [0u8; 16 * 1024];
        match self.stream.read(&mut chunk) {
            Ok(0) => Err(RawEnd::Eof),
            Ok(n) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) if would_block(&e) => {
                if Instant::now() >= deadline {
                    Err(RawEnd::Timeout)
                } else {
                    Ok(())
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(()),
            Err(e) => Err(RawEnd::Error(e.kind())),
        }
    }

    /// Reads an HTTP response (head, then a `Content-Length` or chunked body,
    /// or the rest until EOF when neither is given, except for 101).
    pub fn try_read_response(&mut self, timeout: Duration) -> Result<HttpResponse, RawEnd> {
        let deadline = Instant::now() + timeout;
        let (status, headers, head_len) = loop {
            let mut hdrs = [httparse::EMPTY_HEADER; 64];
            let mut resp = httparse::Response::new(&mut hdrs);
            match resp.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => {
                    let headers: Vec<(String, String)> = resp
                        .headers
                        .iter()
                        .map(|h| {
                            (
                                h.name.to_owned(),
                                String::from_utf8_lossy(h.value).into_owned(),
                            )
                        })
                        .collect();
                    break (resp.code.unwrap_or(0), headers, n);
                }
                Ok(httparse::Status::Partial) => self.fill(deadline)?,
                Err(e) => panic!(
                    "malformed HTTP response ({e}): {:?}",
                    String::from_utf8_lossy(&self.buf)
                ),
            }
        };
        self.buf.drain(..head_len);
        let mut resp = HttpResponse {
            status,
            headers,
            body: Vec::new(),
        };
        if status == 101 {
            return Ok(resp);
        }
        let chunked = resp
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        if let Some(len) = resp
            .header("content-length")
            .and_then(|v| v.trim().parse::<usize>().ok())
        {
            while self.buf.len() < len {
                self.fill(deadline)?;
            }
            resp.body = self.buf.drain(..len).collect();
        } else {
            loop {
                match self.fill(deadline) {
                    Ok(()) => {}
                    Err(RawEnd::Eof) => break,
                    Err(e) => return Err(e),
                }
            }
            let rest: Vec<u8> = std::mem::take(&mut self.buf);
            resp.body = if chunked { dechunk(&rest) } else { rest };
        }
        Ok(resp)
    }

    #[track_caller]
    pub fn read_response(&mut self) -> HttpResponse {
        self.try_read_response(TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "no HTTP response: {e:?} (buffered {:?})",
                String::from_utf8_lossy(&self.buf)
            )
        })
    }

    /// Reads one server frame; `Err` on EOF/timeout/error before it is complete.
    pub fn try_read_frame(&mut self, timeout: Duration) -> Result<Frame, RawEnd> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((frame, used)) = decode_frame(&self.buf) {
                self.buf.drain(..used);
                return Ok(frame);
            }
            self.fill(deadline)?;
        }
    }

    /// Reads one server frame; `None` on EOF. Panics on timeout/error.
    #[track_caller]
    pub fn read_frame(&mut self, timeout: Duration) -> Option<Frame> {
        match self.try_read_frame(timeout) {
            Ok(f) => Some(f),
            Err(RawEnd::Eof) => None,
            Err(e) => panic!("no frame within {timeout:?}: {e:?}"),
        }
    }

    /// Reads frames until the close; returns its code and the data frames
    /// read before it. Panics if the connection ends without a close frame.
    #[track_caller]
    pub fn read_until_close(&mut self, timeout: Duration) -> (Option<u16>, Vec<Frame>) {
        let deadline = Instant::now() + timeout;
        let mut before = Vec::new();
        loop {
            let left = left(deadline).unwrap_or(Duration::from_millis(1));
            match self.try_read_frame(left) {
                Ok(f) => {
                    assert!(
                        !f.masked,
                        "server frames must not be masked (RFC 6455 §5.1): {f:?}"
                    );
                    if f.opcode == OP_CLOSE {
                        return (f.close_code(), before);
                    }
                    before.push(f);
                }
                Err(e) => panic!(
                    "connection ended without a close frame ({e:?}) after {} frames: {:?}",
                    before.len(),
                    before.iter().rev().take(3).collect::<Vec<_>>()
                ),
            }
        }
    }

    /// Asserts the close code, answers the close (RFC 6455 §5.5.1) and
    /// expects the server then to close the TCP connection.
    #[track_caller]
    pub fn expect_close(&mut self, code: u16) {
        let (got, before) = self.read_until_close(TIMEOUT);
        assert_eq!(
            got,
            Some(code),
            "close code; frames before: {:?}",
            before
                .iter()
                .map(|f| String::from_utf8_lossy(&f.payload).into_owned())
                .collect::<Vec<_>>()
        );
        self.send_lossy(&close_frame(code));
        self.expect_eof(TIMEOUT);
    }

    /// Expects the server to end the TCP connection (EOF or reset), skipping
    /// any frames still in flight.
    #[track_caller]
    pub fn expect_eof(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            self.buf.clear();
            match self.fill(deadline) {
                Ok(()) => {}
                Err(RawEnd::Eof | RawEnd::Error(_)) => return,
                Err(RawEnd::Timeout) => {
                    panic!("server kept the TCP connection open for {timeout:?}")
                }
            }
        }
    }
}

/// Decodes one complete frame from the front of `buf`.
fn decode_frame(buf: &[u8]) -> Option<(Frame, usize)> {
    if buf.len() < 2 {
        return None;
    }
    let fin = buf[0] & 0x80 != 0;
    let rsv = (buf[0] >> 4) & 7;
    let opcode = buf[0] & 0x0f;
    let masked = buf[1] & 0x80 != 0;
    let (len, mut at) = match buf[1] & 0x7f {
        126 => {
            if buf.len() < 4 {
                return None;
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
        }
        127 => {
            if buf.len() < 10 {
                return None;
            }
            let mut b = [0u8; 8];
            b.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(b), 10)
        }
        n => (u64::from(n), 2),
    };
    let key = if masked {
        if buf.len() < at + 4 {
            return None;
        }
        let k = [buf[at], buf[at + 1], buf[at + 2], buf[at + 3]];
        at += 4;
        Some(k)
    } else {
        None
    };
    let len = usize::try_from(len).expect("frame length fits usize");
    if buf.len() < at + len {
        return None;
    }
    let mut payload = buf[at..at + len].to_vec();
    if let Some(k) = key {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= k[i % 4];
        }
    }
    Some((
        Frame {
            fin,
            rsv,
            opcode,
            masked,
            payload,
        },
        at + len,
    ))
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = body.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&body[..eol]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            return out;
        };
        body = &body[eol + 2..];
        if size == 0 || body.len() < size {
            out.extend_from_slice(&body[..size.min(body.len())]);
            return out;
        }
        out.extend_from_slice(&body[..size]);
        body = body.get(size + 2..).unwrap_or_default();
    }
}

/// Sends a raw HTTP request head and reads the response.
pub fn try_http(addr: SocketAddr, request: &str) -> Result<HttpResponse, String> {
    let stream = TcpStream::connect(addr).map_err(|e| format!("connect: {e}"))?;
    stream
        .set_write_timeout(Some(TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut raw = Raw {
        stream,
        buf: Vec::new(),
        welcome: Value::Null,
    };
    raw.stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("write: {e}"))?;
    raw.try_read_response(TIMEOUT).map_err(|e| format!("{e:?}"))
}

#[track_caller]
pub fn http(addr: SocketAddr, request: &str) -> HttpResponse {
    try_http(addr, request).unwrap_or_else(|e| panic!("HTTP request failed ({e}): {request:.200}"))
}

pub fn get_request(addr: SocketAddr, path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n")
}

#[track_caller]
pub fn http_get(addr: SocketAddr, path: &str) -> HttpResponse {
    http(addr, &get_request(addr, path))
}
