//! The tungstenite client.

use super::*;

/// A blocking tungstenite client. Reads use socket timeouts set to the time
/// left before the awaited event's deadline; server pings are answered
/// (tungstenite queues the pong, [`Client`] flushes it at once).
pub struct Client {
    ws: WebSocket<Box<dyn Transport>>,
    pub welcome: Value,
    /// The subprotocol the server selected, if any.
    pub subprotocol: Option<String>,
    /// Deadline for each awaited message.
    pub timeout: Duration,
    /// Server pings seen so far.
    pub pings: usize,
    next_id: u64,
}

/// The byte stream under a [`Client`]: a TCP socket, or TLS over one.
pub trait Transport: Read + Write + Send {
    /// The socket, for timeouts and socket options.
    fn tcp(&self) -> &TcpStream;
}

impl Transport for TcpStream {
    fn tcp(&self) -> &TcpStream {
        self
    }
}

/// What ended a read.
#[derive(Debug)]
pub enum Next {
    Text(String),
    Binary(Vec<u8>),
    Close(Option<(u16, String)>),
    Timeout,
    Failed(tungstenite::Error),
}

pub fn ws_url(addr: SocketAddr, query: &str) -> String {
    if query.is_empty() {
        format!("ws://{addr}/ws")
    } else {
        format!("ws://{addr}/ws?{query}")
    }
}

impl Client {
    /// Connects to `/ws?QUERY` and reads the `welcome`; panics on failure.
    pub fn connect(addr: SocketAddr, query: &str) -> Client {
        Client::connect_with(addr, query, &[])
            .unwrap_or_else(|e| panic!("connect to {} failed: {e}", ws_url(addr, query)))
    }

    /// Connects with extra request headers; `Err` describes a refused upgrade.
    pub fn connect_with(
        addr: SocketAddr,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, String> {
        let stream = TcpStream::connect(addr).map_err(|e| format!("tcp connect: {e}"))?;
        Client::from_stream(stream, addr, query, headers)
    }

    /// Upgrades an already connected stream (e.g. one with a small
    /// `SO_RCVBUF` set through socket2) and reads the `welcome`.
    pub fn from_stream(
        stream: TcpStream,
        addr: SocketAddr,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, String> {
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        Client::upgrade(Box::new(stream), addr, query, headers)
    }

    /// Upgrades any connected [`Transport`] and reads the `welcome`.
    pub fn upgrade(
        stream: Box<dyn Transport>,
        addr: SocketAddr,
        query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Client, String> {
        let deadline = Instant::now() + TIMEOUT;
        let mut req = ws_url(addr, query)
            .into_client_request()
            .map_err(|e| e.to_string())?;
        for (k, v) in headers {
            let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| e.to_string())?;
            let value = HeaderValue::from_str(v).map_err(|e| e.to_string())?;
            req.headers_mut().insert(name, value);
        }
        let mut attempt = tungstenite::client(req, stream);
        let (ws, resp) = loop {
            match attempt {
                Ok(done) => break done,
                Err(HandshakeError::Interrupted(mid)) => {
                    if Instant::now() >= deadline {
                        return Err("handshake timed out".into());
                    }
                    attempt = mid.handshake();
                }
                Err(HandshakeError::Failure(tungstenite::Error::Http(resp))) => {
                    return Err(format!(
                        "upgrade refused with HTTP {}",
                        resp.status().as_u16()
                    ));
                }
                Err(HandshakeError::Failure(e)) => return Err(format!("handshake failed: {e}")),
            }
        };
        let subprotocol = resp
            .headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut client = Client {
            ws,
            welcome: Value::Null,
            subprotocol,
            timeout: TIMEOUT,
            pings: 0,
            next_id: 1_000,
        };
        let welcome = client.recv_json();
        if welcome["type"] != "welcome" {
            return Err(format!("first message is not a welcome: {welcome}"));
        }
        client.welcome = welcome;
        Ok(client)
    }

    pub fn conn(&self) -> &str {
        self.welcome["conn"]
            .as_str()
            .expect("welcome.conn is a string")
    }

    pub fn user(&self) -> &str {
        self.welcome["user"]
            .as_str()
            .expect("welcome.user is a string")
    }

    pub fn worker(&self) -> usize {
        worker_of(self.conn())
    }

    /// A fresh request id (from 1000 up, so tests' literal ids stay distinct).
    pub fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    pub fn stream(&self) -> &TcpStream {
        self.ws.get_ref().tcp()
    }

    pub fn send_json(&mut self, v: Value) {
        self.send_raw_text(&v.to_string());
    }

    pub fn send_raw_text(&mut self, text: &str) {
        self.ws
            .send(Message::text(text))
            .unwrap_or_else(|e| panic!("send {text:.200}: {e}"));
    }

    pub fn send_binary(&mut self, bytes: &[u8]) {
        self.ws
            .send(Message::binary(bytes.to_vec()))
            .unwrap_or_else(|e| panic!("send binary: {e}"));
    }

    /// The next data message or close, answering pings on the way.
    pub fn next(&mut self, deadline: Instant) -> Next {
        loop {
            let Some(left) = left(deadline) else {
                return Next::Timeout;
            };
            if let Err(e) = self.ws.get_ref().tcp().set_read_timeout(Some(left)) {
                return Next::Failed(e.into());
            }
            match self.ws.read() {
                Ok(Message::Text(t)) => return Next::Text(t.as_str().to_owned()),
                Ok(Message::Binary(b)) => return Next::Binary(b.to_vec()),
                Ok(Message::Close(f)) => {
                    return Next::Close(
                        f.map(|f| (u16::from(f.code), f.reason.as_str().to_owned())),
                    )
                }
                Ok(Message::Ping(_)) => {
                    self.pings += 1;
                    match self.ws.flush() {
                        Ok(()) => {}
                        Err(tungstenite::Error::Io(e)) if would_block(&e) => {}
                        Err(e) => return Next::Failed(e),
                    }
                }
                Ok(Message::Pong(_) | Message::Frame(_)) => {}
                Err(tungstenite::Error::Io(e)) if would_block(&e) => {}
                Err(e) => return Next::Failed(e),
            }
        }
    }

    /// The next text message, raw. Panics on timeout, close or error.
    #[track_caller]
    pub fn recv_text(&mut self) -> String {
        let timeout = self.timeout;
        match self.next(Instant::now() + timeout) {
            Next::Text(t) => t,
            Next::Binary(b) => panic!("{}: expected text, got binary {b:?}", self.label()),
            Next::Close(f) => panic!("{}: expected text, got close {f:?}", self.label()),
            Next::Timeout => panic!("{}: no message within {timeout:?}", self.label()),
            Next::Failed(e) => panic!(
                "{}: connection failed while awaiting a message: {e}",
                self.label()
            ),
        }
    }

    #[track_caller]
    pub fn recv_json(&mut self) -> Value {
        parse_json(&self.recv_text())
    }

    /// Reads until a message matches `pred`; returns it with the raw text.
    /// Skipped messages (e.g. presence events) are discarded.
    #[track_caller]
    pub fn recv_until_raw(&mut self, pred: impl Fn(&Value) -> bool) -> (Value, String) {
        let deadline = Instant::now() + self.timeout;
        let mut skipped = Vec::new();
        loop {
            match self.next(deadline) {
                Next::Text(t) => {
                    let v = parse_json(&t);
                    if pred(&v) {
                        return (v, t);
                    }
                    if skipped.len() < 16 {
                        skipped.push(clip(&t));
                    }
                }
                other => panic!(
                    "{}: awaited message never came ({}); first skipped: {skipped:?}",
                    self.label(),
                    describe(&other)
                ),
            }
        }
    }

    #[track_caller]
    pub fn recv_until(&mut self, pred: impl Fn(&Value) -> bool) -> Value {
        self.recv_until_raw(pred).0
    }

    /// Reads until a message matches `pred`; returns every message read, the
    /// matching one last (for asserting what was *not* received before it).
    #[track_caller]
    pub fn recv_all_until(&mut self, pred: impl Fn(&Value) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + self.timeout;
        let mut seen = Vec::new();
        loop {
            match self.next(deadline) {
                Next::Text(t) => {
                    let v = parse_json(&t);
                    let done = pred(&v);
                    seen.push(v);
                    if done {
                        return seen;
                    }
                }
                other => panic!(
                    "{}: awaited message never came ({}); seen: {}",
                    self.label(),
                    describe(&other),
                    clip(&format!("{seen:?}"))
                ),
            }
        }
    }

    /// The reply carrying `"id": id`, skipping anything else.
    #[track_caller]
    pub fn recv_reply(&mut self, id: u64) -> Value {
        self.recv_until(|v| v["id"].as_u64() == Some(id))
    }

    /// Sends `req` with a fresh id, which it returns.
    fn send_with_id(&mut self, mut req: Value) -> u64 {
        let id = self.fresh_id();
        req["id"] = json!(id);
        self.send_json(req);
        id
    }

    /// Sends `req` with a fresh id and returns the reply with that id.
    #[track_caller]
    pub fn request(&mut self, req: Value) -> Value {
        let id = self.send_with_id(req);
        self.recv_reply(id)
    }

    /// As [`Client::request`], also returning the messages read before the
    /// reply (for asserting what did *not* arrive).
    #[track_caller]
    pub fn request_noting(&mut self, req: Value) -> (Value, Vec<Value>) {
        let id = self.send_with_id(req);
        let mut seen = self.recv_all_until(|v| v["id"].as_u64() == Some(id));
        let reply = seen.pop().expect("recv_all_until returns the match last");
        (reply, seen)
    }

    /// Joins `channel` and returns the `joined`.
    #[track_caller]
    pub fn join(&mut self, channel: &str) -> Value {
        let v = self.request(json!({"type": "join_channel", "channel": channel}));
        assert_eq!(v["type"], "joined", "{} join {channel}: {v}", self.label());
        assert_eq!(v["channel"], channel, "{v}");
        v
    }

    /// Leaves `channel` and returns the `left`.
    #[track_caller]
    pub fn leave(&mut self, channel: &str) -> Value {
        let v = self.request(json!({"type": "leave_channel", "channel": channel}));
        assert_eq!(v["type"], "left", "{} leave {channel}: {v}", self.label());
        v
    }

    /// Asserts nothing but pings arrives for `d`: only for asserting absence.
    #[track_caller]
    pub fn expect_silence(&mut self, d: Duration) {
        match self.next(Instant::now() + d) {
            Next::Timeout => {}
            other => panic!(
                "{}: expected silence for {d:?}, got {}",
                self.label(),
                describe(&other)
            ),
        }
    }

    /// Reads until the close frame (skipping text messages, returned) and
    /// asserts its code.
    #[track_caller]
    pub fn expect_close(&mut self, code: u16) -> Vec<String> {
        let deadline = Instant::now() + self.timeout;
        let mut texts = Vec::new();
        loop {
            match self.next(deadline) {
                Next::Text(t) => texts.push(t),
                Next::Binary(_) => {}
                Next::Close(Some((got, reason))) => {
                    assert_eq!(
                        got,
                        code,
                        "{}: close code (reason {reason:?})",
                        self.label()
                    );
                    return texts;
                }
                other => panic!(
                    "{}: expected close {code}, got {} after {} text messages (last: {:?})",
                    self.label(),
                    describe(&other),
                    texts.len(),
                    texts.last().map(|t| clip(t))
                ),
            }
        }
    }

    fn label(&self) -> String {
        match self.welcome["conn"].as_str() {
            Some(c) => format!("client {c}"),
            None => "client (no welcome yet)".into(),
        }
    }
}

/// A server message as JSON; panics (showing it) when it is not.
#[track_caller]
fn parse_json(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {text}"))
}

/// At most 300 characters of `s`, for failure messages.
pub fn clip(s: &str) -> String {
    match s.char_indices().nth(300) {
        Some((at, _)) => format!("{}…({} bytes)", &s[..at], s.len()),
        None => s.to_owned(),
    }
}

fn describe(n: &Next) -> String {
    match n {
        Next::Text(t) => format!("text {}", clip(t)),
        Next::Binary(b) => format!("binary of {} bytes", b.len()),
        Next::Close(f) => format!("close {f:?}"),
        Next::Timeout => "timeout".into(),
        Next::Failed(e) => format!("error {e}"),
    }
}
