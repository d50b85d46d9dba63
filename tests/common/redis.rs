//! A throwaway `redis-server` per test, and a tiny raw RESP client to look
//! inside it.
//!
//! Each [`RedisServer`] runs on a free loopback port (bind `127.0.0.1:0` to
//! pick it), without persistence, in its own temporary directory, and is
//! killed by pid on drop: the machine's own Redis (6379) is never touched or
//! flushed. Without a `redis-server` binary the tests skip with a printed
//! note, except under `CI=true`, where they fail.
//!
//! The raw client ([`RedisServer::cmd`]) speaks RESP2 over a blocking
//! `TcpStream` with its own small parser, independent of `src/resp`, so a
//! bug there cannot hide itself from the tests that inspect keys and
//! subscriptions.

use super::*;

use std::path::PathBuf;

/// How long a started or restarted `redis-server` has to answer `PING`.
const REDIS_START: Duration = Duration::from_secs(10);

fn redis_server_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-server"));
    std::iter::once(PathBuf::from("/usr/bin/redis-server"))
        .chain(on_path)
        .find(|p| p.is_file())
}

/// A reply, as read by the raw client (RESP2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Vec<u8>),
    Nil,
    Array(Vec<Resp>),
}

impl Resp {
    /// The text of a simple or bulk string.
    #[track_caller]
    pub fn text(&self) -> String {
        match self {
            Resp::Simple(s) => s.clone(),
            Resp::Bulk(b) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("not a string reply: {other:?}"),
        }
    }

    #[track_caller]
    pub fn int(&self) -> i64 {
        match self {
            Resp::Int(n) => *n,
            other => panic!("not an integer reply: {other:?}"),
        }
    }

    #[track_caller]
    pub fn array(&self) -> &[Resp] {
        match self {
            Resp::Array(items) => items,
            other => panic!("not an array reply: {other:?}"),
        }
    }

    /// An array of strings, sorted.
    #[track_caller]
    pub fn strings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.array().iter().map(Resp::text).collect();
        out.sort();
        out
    }
}

/// A blocking RESP2 connection with a read deadline per reply.
pub struct RespConn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl RespConn {
    pub fn connect(port: u16, timeout: Duration) -> io::Result<RespConn> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let stream = TcpStream::connect_timeout(&addr, timeout)?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(RespConn {
            stream,
            buf: Vec::new(),
        })
    }

    /// Sends one command and reads its reply, within `timeout`.
    pub fn cmd(&mut self, args: &[&[u8]], timeout: Duration) -> io::Result<Resp> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.stream.write_all(&out)?;
        self.read_reply(Instant::now() + timeout)
    }

    fn read_reply(&mut self, deadline: Instant) -> io::Result<Resp> {
        loop {
            if let Some((value, used)) = parse_resp(&self.buf)? {
                self.buf.drain(..used);
                return Ok(value);
            }
            let Some(wait) = left(deadline) else {
                return Err(io::ErrorKind::TimedOut.into());
            };
            self.stream.set_read_timeout(Some(wait))?;
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if would_block(&e) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_owned())
}

/// One RESP2 value from the front of `buf` and the bytes it took, or `None`
/// when it is not all there yet.
fn parse_resp(buf: &[u8]) -> io::Result<Option<(Resp, usize)>> {
    let Some(eol) = buf.windows(2).position(|w| w == b"\r\n") else {
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..eol].split_first() else {
        return Err(bad("empty RESP line"));
    };
    let line = std::str::from_utf8(line).map_err(|_| bad("non-UTF-8 RESP line"))?;
    let after = eol + 2;
    let number = || line.parse::<i64>().map_err(|_| bad("bad RESP number"));
    match kind {
        b'+' => Ok(Some((Resp::Simple(line.to_owned()), after))),
        b'-' => Ok(Some((Resp::Error(line.to_owned()), after))),
        b':' => Ok(Some((Resp::Int(number()?), after))),
        b'$' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Resp::Nil, after)));
            }
            let end = after + n as usize;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            Ok(Some((Resp::Bulk(buf[after..end].to_vec()), end + 2)))
        }
        b'*' => {
            let n = number()?;
            if n < 0 {
                return Ok(Some((Resp::Nil, after)));
            }
            let mut items = Vec::with_capacity(n as usize);
            let mut pos = after;
            for _ in 0..n {
                match parse_resp(&buf[pos..])? {
                    Some((item, used)) => {
                        items.push(item);
                        pos += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Resp::Array(items), pos)))
        }
        _ => Err(bad("unknown RESP type byte")),
    }
}

/// A `redis-server` child process on its own port, killed on drop.
pub struct RedisServer {
    pub port: u16,
    binary: PathBuf,
    extra: Vec<String>,
    dir: PathBuf,
    child: Option<Child>,
    /// The password given with `--requirepass`, used by the raw client.
    password: Option<String>,
}

impl RedisServer {
    /// A plain server, or `None` (after a note) without `redis-server`
    /// outside CI.
    pub fn start() -> Option<RedisServer> {
        RedisServer::start_with(&[])
    }

    /// A server with extra arguments (e.g. `["--requirepass", "secret"]`).
    pub fn start_with(extra: &[&str]) -> Option<RedisServer> {
        let Some(binary) = redis_server_binary() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-server is required under CI=true (apt-get install redis-server)"
            );
            eprintln!("note: redis-server not found, skipping this Redis test");
            return None;
        };
        let password = extra
            .windows(2)
            .find(|w| w[0] == "--requirepass")
            .map(|w| w[1].to_owned());
        // The port is free when probed; losing a race with another process
        // shows up as an early exit, so try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap_or_else(|e| panic!("cannot pick a free port: {e}"))
                .port();
            let dir = std::env::temp_dir().join(format!("sb-redis-{}-{port}", std::process::id()));
            std::fs::create_dir_all(&dir)
                .unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
            let mut redis = RedisServer {
                port,
                binary: binary.clone(),
                extra: extra.iter().map(|s| (*s).to_owned()).collect(),
                dir,
                child: None,
                password: password.clone(),
            };
            if redis.spawn() {
                return Some(redis);
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// Starts the process on `self.port`; true once it answers `PING`.
    fn spawn(&mut self) -> bool {
        let child = Command::new(&self.binary)
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--dir")
            .arg(&self.dir)
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", self.binary.display()));
        self.child = Some(child);
        let deadline = Instant::now() + REDIS_START;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(Child::try_wait) {
                self.child = None;
                return false;
            }
            if self.ping() {
                return true;
            }
            thread::sleep(Duration::from_millis(20));
        }
        self.kill();
        false
    }

    /// True when the server answers `PING` with `PONG` within a second.
    pub fn ping(&self) -> bool {
        matches!(
            self.try_cmd(&[b"PING"], Duration::from_secs(1)),
            Ok(Resp::Simple(s)) if s == "PONG"
        )
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.url_with("", 0)
    }

    /// `redis://CREDENTIALS127.0.0.1:PORT/DB`; `credentials` ends in `@`.
    pub fn url_with(&self, credentials: &str, db: u32) -> String {
        format!("redis://{credentials}127.0.0.1:{}/{db}", self.port)
    }

    /// SIGKILL by pid, then reaps the process.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = libc::pid_t::try_from(child.id()).expect("pid fits pid_t");
            // SAFETY: kill(2) takes plain integers; the pid is our own child,
            // not yet reaped (we still hold its `Child`).
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port (empty: nothing is saved).
    pub fn restart(&mut self) {
        self.kill();
        // The old listening socket is gone with the process; redis-server
        // sets SO_REUSEADDR, so TIME_WAIT connections do not block the bind.
        let deadline = Instant::now() + REDIS_START;
        while Instant::now() < deadline {
            if self.spawn() {
                return;
            }
            thread::sleep(Duration::from_millis(100));
        }
        panic!("redis-server did not restart on port {}", self.port);
    }

    /// One command on a fresh connection (authenticated when the server
    /// has a password).
    pub fn try_cmd(&self, args: &[&[u8]], timeout: Duration) -> io::Result<Resp> {
        let mut conn = RespConn::connect(self.port, timeout)?;
        if let Some(pass) = &self.password {
            match conn.cmd(&[b"AUTH", pass.as_bytes()], timeout)? {
                Resp::Simple(_) => {}
                other => return Err(bad(&format!("AUTH refused: {other:?}"))),
            }
        }
        conn.cmd(args, timeout)
    }

    /// One command; panics on an IO failure (an error reply is returned).
    #[track_caller]
    pub fn cmd(&self, args: &[&str]) -> Resp {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.try_cmd(&args, TIMEOUT).unwrap_or_else(|e| {
            panic!(
                "redis command {:?} on port {} failed: {e}",
                args.iter()
                    .map(|a| String::from_utf8_lossy(a))
                    .collect::<Vec<_>>(),
                self.port
            )
        })
    }

    /// `PUBSUB NUMSUB channel`: how many connections subscribe to it.
    pub fn numsub(&self, channel: &str) -> i64 {
        let reply = self.cmd(&["PUBSUB", "NUMSUB", channel]);
        match reply.array() {
            [_, n] => n.int(),
            other => panic!("PUBSUB NUMSUB reply {other:?}"),
        }
    }

    /// Polls [`RedisServer::numsub`] until it reads `want`, for
    /// [`TIMEOUT`] at most.
    #[track_caller]
    pub fn wait_numsub(&self, channel: &str, want: i64) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let n = self.numsub(channel);
            if n == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "NUMSUB {channel} stayed {n}, expected {want}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Redis's client list, one line per connection.
    pub fn client_list(&self) -> Vec<String> {
        self.cmd(&["CLIENT", "LIST"])
            .text()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A switchboard node on `redis` (`--redis URL --threads 2 --node NAME
/// EXTRA..`), returned once its `/healthz` answers 200.
pub fn redis_node(name: &str, redis: &RedisServer, extra: &[&str]) -> Server {
    let url = redis.url();
    redis_node_url(name, &url, extra, true)
}

/// As [`redis_node`] with any URL; waits for health only when `healthy`.
pub fn redis_node_url(name: &str, url: &str, extra: &[&str], healthy: bool) -> Server {
    let mut args = vec!["--redis", url];
    args.extend_from_slice(extra);
    let server = Server::start_node(name, &args);
    if healthy {
        wait_health(&server, 200, TIMEOUT);
    }
    server
}

/// Waits until `/healthz` answers `status`; returns how long it took.
#[track_caller]
pub fn wait_health(server: &Server, status: u16, within: Duration) -> Duration {
    let start = Instant::now();
    let deadline = start + within;
    loop {
        let last = match try_http(server.addr, &get_request(server.addr, "/healthz")) {
            Ok(r) if r.status == status => return start.elapsed(),
            Ok(r) => format!("{} {}", r.status, r.body_text()),
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            panic!(
                "/healthz of {} did not answer {status} within {within:?}; last: {last}\nlog:\n{}",
                server.addr,
                server.log_text()
            );
        }
        thread::sleep(Duration::from_millis(25));
    }
}

/// Publishes from `from` until `to` receives one on `ch` (pub/sub loses
/// what is sent before a node subscribed again); panics after `within`.
#[track_caller]
pub fn until_delivered(from: &mut Client, to: &mut Client, ch: &str, within: Duration) {
    let deadline = Instant::now() + within;
    let sender = from.conn().to_owned();
    while Instant::now() < deadline {
        let v = from.request(json!({"type": "user_action", "channel": ch, "action": "probe"}));
        if v["type"] == "error" {
            assert_error(&v, "unavailable", v["id"].as_u64());
            std::thread::sleep(Duration::from_millis(50));
            continue;
        }
        let wait = Instant::now() + Duration::from_millis(300);
        while let Next::Text(t) = to.next(wait) {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "user_action" && v["channel"] == ch && v["conn"] == sender.as_str() {
                return;
            }
        }
    }
    panic!(
        "{} received nothing on {ch} from {sender} within {within:?}",
        to.conn()
    );
}
