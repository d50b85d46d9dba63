//! Black-box harness for the integration tests: the real `switchboard`
//! binary started as a child process on `127.0.0.1:0`, driven by blocking
//! tungstenite clients ([`Client`]) and by a raw TCP client ([`Raw`]) that
//! hand-builds frames and HTTP heads for what tungstenite refuses to send.
//!
//! Every wait has a deadline and panics with a message saying what was
//! awaited. The only fixed wait is [`Client::expect_silence`], used where the
//! *absence* of a message is the thing under test.
//!
//! The contract these helpers rely on (besides `/work/shared/PROTOCOL.md`):
//! the server prints one line `switchboard listening on ADDR` on stdout when
//! ready, logs go to stderr, and `welcome.conn` is `<node>-<worker>-<seq hex>`.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tungstenite::client::IntoClientRequest;
use tungstenite::handshake::HandshakeError;
use tungstenite::http::{HeaderName, HeaderValue};
use tungstenite::{Message, WebSocket};

/// Default deadline for any single awaited event.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// How long "nothing arrives" is watched for. Short on purpose: it is only
/// used after a barrier (a later reply that did arrive), so a message that
/// should not exist would already be in flight.
pub const SILENCE: Duration = Duration::from_millis(300);
/// Ready-line deadline for a freshly started server.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Cap on the stderr/stdout tail kept for a failure report.
const LOG_TAIL: usize = 256 * 1024;

fn would_block(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Time left before `deadline`, never zero (a zero socket timeout is an error).
fn left(deadline: Instant) -> Option<Duration> {
    let now = Instant::now();
    (now < deadline).then(|| (deadline - now).max(Duration::from_millis(1)))
}

// ---------------------------------------------------------------- server

/// A running `switchboard` child process, killed on drop. When the test is
/// panicking, the drop prints the server's log tail (captured by the test
/// harness and shown with the failure).
pub struct Server {
    pub addr: SocketAddr,
    pub pid: u32,
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
}

fn append_log(log: &Mutex<Vec<u8>>, bytes: &[u8]) {
    let mut log = log.lock().unwrap_or_else(|e| e.into_inner());
    log.extend_from_slice(bytes);
    if log.len() > LOG_TAIL {
        let cut = log.len() - LOG_TAIL;
        log.drain(..cut);
    }
}

impl Server {
    /// Starts `switchboard --listen 127.0.0.1:0 --threads 2 --node t1 EXTRA..`
    /// and waits (10 s at most) for its ready line.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_node("t1", extra)
    }

    /// As [`Server::start`] with another `--node` id.
    pub fn start_node(node: &str, extra: &[&str]) -> Server {
        // SWITCHBOARD_TEST_BIN runs the suite against another build (e.g. a
        // release binary) without recompiling the tests.
        let bin = std::env::var_os("SWITCHBOARD_TEST_BIN")
            .unwrap_or_else(|| env!("CARGO_BIN_EXE_switchboard").into());
        let mut child = Command::new(bin)
            .args(["--listen", "127.0.0.1:0", "--threads", "2", "--node", node])
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn switchboard: {e}"));
        let pid = child.id();
        let log = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().expect("piped stderr");
        let stdout = child.stdout.take().expect("piped stdout");
        {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut stderr = stderr;
                let mut buf = [0u8; 8192];
                while let Ok(n) = stderr.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    append_log(&log, &buf[..n]);
                }
            });
        }
        let (tx, rx) = mpsc::channel::<String>();
        {
            let log = Arc::clone(&log);
            thread::spawn(move || {
                let mut tx = Some(tx);
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    append_log(&log, format!("[stdout] {line}\n").as_bytes());
                    if line.starts_with("switchboard listening on ") {
                        if let Some(tx) = tx.take() {
                            let _ = tx.send(line);
                        }
                    }
                }
            });
        }
        // Built before the ready line so that a failed start still kills the child.
        let mut server = Server {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            pid,
            child,
            log,
        };
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok(line) => line,
            Err(e) => {
                let status = server.child.try_wait().ok().flatten();
                panic!(
                    "switchboard {extra:?} printed no ready line within {START_TIMEOUT:?} ({e}); \
                     exit status {status:?}; log:\n{}",
                    server.log_text()
                );
            }
        };
        let addr = line
            .trim()
            .rsplit(' ')
            .next()
            .and_then(|a| a.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("unparseable ready line {line:?}"));
        server.addr = addr;
        server
    }

    /// The server's stdout/stderr tail so far.
    pub fn log_text(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&log).into_owned()
    }

    /// A tungstenite client on `/ws?QUERY`, welcome already read.
    pub fn connect(&self, query: &str) -> Client {
        Client::connect(self.addr, query)
    }

    /// Sends a signal to the server process.
    pub fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.pid).expect("pid fits pid_t");
        // SAFETY: kill(2) takes plain integers and has no memory effects on us;
        // the pid is our own child, not yet reaped (we hold its `Child`).
        let rc = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            rc,
            0,
            "kill({pid}, {sig}) failed: {}",
            io::Error::last_os_error()
        );
    }

    /// Waits for the process to exit; `None` if it is still running at `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) => {}
                Err(e) => panic!("try_wait: {e}"),
            }
            if Instant::now() >= deadline {
                return None;
            }
            // Polling a child's exit: there is no portable event to block on
            // with a timeout in std, so check every 20 ms.
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Resident memory of the server process in KiB, from `/proc/PID/status`.
    pub fn vm_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid))
            .unwrap_or_else(|e| panic!("read /proc/{}/status: {e}", self.pid));
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no VmRSS in /proc/{}/status", self.pid))
    }

    pub fn http_get(&self, path: &str) -> HttpResponse {
        http_get(self.addr, path)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if thread::panicking() {
            eprintln!(
                "---- switchboard (pid {}) log tail ----\n{}\n---- end of log ----",
                self.pid,
                self.log_text()
            );
        }
    }
}

// ---------------------------------------------------------------- conn ids

/// The worker index of a `conn` id `<node>-<worker>-<seq hex>`, parsed from
/// the right because the node id may itself contain `-`.
pub fn worker_of(conn: &str) -> usize {
    let mut parts = conn.rsplitn(3, '-');
    let seq = parts.next().unwrap_or_default();
    let worker = parts.next().unwrap_or_default();
    let node = parts.next();
    assert!(
        node.is_some_and(|n| !n.is_empty())
            && !seq.is_empty()
            && seq.bytes().all(|b| b.is_ascii_hexdigit()),
        "conn {conn:?} is not <node>-<worker>-<seq hex>"
    );
    worker
        .parse()
        .unwrap_or_else(|_| panic!("conn {conn:?}: worker {worker:?} is not a number"))
}

/// Connects until it holds `per_worker` clients on each of workers 0 and 1
/// (users `PREFIX<n>`). Extra connections are dropped before joining anything.
pub fn connect_on_both_workers(
    server: &Server,
    prefix: &str,
    per_worker: usize,
) -> [Vec<Client>; 2] {
    let mut out: [Vec<Client>; 2] = [Vec::new(), Vec::new()];
    let attempts = 2 * per_worker + 64;
    for n in 0..attempts {
        if out.iter().all(|v| v.len() >= per_worker) {
            return out;
        }
        let c = server.connect(&format!("user={prefix}{n}"));
        let w = worker_of(c.conn());
        assert!(
            w < 2,
            "worker index {w} with --threads 2 (conn {})",
            c.conn()
        );
        if out[w].len() < per_worker {
            out[w].push(c);
        }
    }
    if out.iter().all(|v| v.len() >= per_worker) {
        return out;
    }
    panic!(
        "{attempts} connections did not give {per_worker} on each worker (got {} and {})",
        out[0].len(),
        out[1].len()
    );
}

/// `n` clients (users `PREFIX<i>`) with at least one on each worker.
pub fn connect_spread(server: &Server, prefix: &str, n: usize) -> Vec<Client> {
    assert!(n >= 2);
    let mut clients: Vec<Client> = (0..n)
        .map(|i| server.connect(&format!("user={prefix}{i}")))
        .collect();
    for extra in 0..64 {
        let on = |w: usize, cs: &[Client]| cs.iter().filter(|c| worker_of(c.conn()) == w).count();
        let (n0, n1) = (on(0, &clients), on(1, &clients));
        if n0 > 0 && n1 > 0 {
            return clients;
        }
        let missing = if n0 == 0 { 0 } else { 1 };
        let c = server.connect(&format!("user={prefix}x{extra}"));
        if worker_of(c.conn()) == missing {
            clients.pop();
            clients.push(c);
        }
    }
    panic!("64 extra connections all landed on one worker");
}

/// The `members` of a `joined`/`presence_state` as a set of (user, conn),
/// asserting each entry is `{user, conn}` strings and there are no duplicates.
pub fn members(v: &Value) -> BTreeSet<(String, String)> {
    let list = v["members"]
        .as_array()
        .unwrap_or_else(|| panic!("no members array in {v}"));
    let set: BTreeSet<(String, String)> = list
        .iter()
        .map(|m| {
            let user = m["user"]
                .as_str()
                .unwrap_or_else(|| panic!("member without user: {m}"));
            let conn = m["conn"]
                .as_str()
                .unwrap_or_else(|| panic!("member without conn: {m}"));
            (user.to_owned(), conn.to_owned())
        })
        .collect();
    assert_eq!(set.len(), list.len(), "duplicate members in {v}");
    set
}

/// The (user, conn) pair of clients, for comparing with [`members`].
pub fn who(clients: &[&Client]) -> BTreeSet<(String, String)> {
    clients
        .iter()
        .map(|c| (c.user().to_owned(), c.conn().to_owned()))
        .collect()
}

/// Asserts `v` is an `error` with `code`, echoing `id` (or carrying none).
#[track_caller]
pub fn assert_error(v: &Value, code: &str, id: Option<u64>) {
    assert_eq!(v["type"], "error", "expected error {code}, got {v}");
    assert_eq!(v["code"], code, "wrong error code in {v}");
    match id {
        Some(id) => assert_eq!(v["id"].as_u64(), Some(id), "error must echo id {id}: {v}"),
        None => assert!(v.get("id").is_none(), "error must carry no id: {v}"),
    }
}

// ---------------------------------------------------------------- tungstenite client

/// A blocking tungstenite client. Reads use socket timeouts set to the time
/// left before the awaited event's deadline; server pings are answered
/// (tungstenite queues the pong, [`Client`] flushes it at once).
pub struct Client {
    ws: WebSocket<TcpStream>,
    pub welcome: Value,
    /// The subprotocol the server selected, if any.
    pub subprotocol: Option<String>,
    /// Deadline for each awaited message.
    pub timeout: Duration,
    /// Server pings seen so far.
    pub pings: usize,
    next_id: u64,
}

/// What ended a read.
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
        let deadline = Instant::now() + TIMEOUT;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(TIMEOUT))
            .map_err(|e| e.to_string())?;
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
        self.ws.get_ref()
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
            if let Err(e) = self.ws.get_mut().set_read_timeout(Some(left)) {
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
        let text = self.recv_text();
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {text}"))
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
                    let v: Value = serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {t}"));
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
                    let v: Value = serde_json::from_str(&t)
                        .unwrap_or_else(|e| panic!("server sent invalid JSON ({e}): {t}"));
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

    /// Sends `req` with a fresh id and returns the reply with that id.
    #[track_caller]
    pub fn request(&mut self, mut req: Value) -> Value {
        let id = self.fresh_id();
        req["id"] = json!(id);
        self.send_json(req);
        self.recv_reply(id)
    }

    /// As [`Client::request`], also returning the messages read before the
    /// reply (for asserting what did *not* arrive).
    #[track_caller]
    pub fn request_noting(&mut self, mut req: Value) -> (Value, Vec<Value>) {
        let id = self.fresh_id();
        req["id"] = json!(id);
        self.send_json(req);
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

// ---------------------------------------------------------------- raw frames

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

    /// A completed upgrade to `/ws?QUERY` (101 and the right accept key
    /// asserted) with the `welcome` frame read.
    pub fn ws(addr: SocketAddr, query: &str) -> Raw {
        let mut raw = Raw::connect(addr);
        let path = if query.is_empty() {
            "/ws".to_owned()
        } else {
            format!("/ws?{query}")
        };
        raw.send(upgrade_request(addr, &path, &[]).as_bytes());
        let resp = raw.read_response();
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
