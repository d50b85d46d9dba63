//! `--recover`: every connection behaves like a careful client on a history
//! channel (PROTOCOL.md §5), and the run accounts exactly for acknowledged
//! actions (issue 16). Made for fault runs (`perf/chaos`), not for speed: one
//! mio loop, every server frame parsed as JSON.
//!
//! A connection, on any close (server close, EOF, refused connect, a join
//! answered `unavailable`), waits a full-jitter backoff (uniform in
//! `[0, min(cap, base × 2^attempt)]`), reconnects (to the next `--url` when
//! the connect itself failed) and re-joins with `since` = the last offset and
//! epoch it saw. On `resync`, or an offset gap it sees itself, it re-joins
//! with `since` on the same connection; events arriving until the answer are
//! not trusted and dropped (the replay carries them again). Publishers send
//! every `user_action` with an `id`: an `ack` with an offset is recorded in
//! the [`ledger`](crate::ledger), an `unavailable` error counted apart, and a
//! request whose connection closed before any answer is `unanswered`.

use std::collections::HashMap;
use std::io::{self, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use serde::{Deserialize, Serialize};
use socket2::SockRef;

use crate::churn::{Churn, ChurnFigures};
use crate::ledger::{self, Ack, EpochId, Member, Tally};
use crate::payload::{self, Stamp};
use crate::procstat;
use crate::sampler::{Sampler, Soak};
use crate::scenario::{self, Args, ConnPlan, Plan};
use crate::schedule::Schedule;
use crate::worker::{connect, read_plaintext};
use crate::ws;

const MAX_FRAME: usize = 64 * 1024;
const READ_BUF: usize = 256 * 1024;
/// Bytes queued towards the server before the connection is given up.
const MAX_OUT: usize = 4 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting to reconnect until this time (ns).
    Backoff(u64),
    Connecting,
    Handshake,
    /// `join_channel` sent, `joined` not yet received.
    Joining,
    Joined,
}

struct Client {
    plan: ConnPlan,
    target: usize,
    stream: Option<TcpStream>,
    /// The TLS session over `stream` for a `wss://` target.
    tls: Option<Box<rustls::ClientConnection>>,
    state: State,
    inbuf: Vec<u8>,
    out: Vec<u8>,
    member: Member,
    /// The epoch string of the last `joined` (sent back in `since`).
    epoch: String,
    /// A re-join with `since` is outstanding on a live connection.
    rejoining: bool,
    attempt: u32,
    /// When the connection last lost its footing (close or resync), ns.
    down_since: Option<u64>,
    next_id: u64,
    /// `user_action` ids awaiting an answer → their sequence number.
    pending: HashMap<u64, u64>,
    next_seq: u64,
    ever_joined: bool,
}

/// The figures of a `--recover` run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverSummary {
    pub conns: u64,
    pub joined_at_start: u64,
    pub joined_at_end: u64,
    /// `user_action` requests sent.
    pub offered: u64,
    /// Answered `ack` with an offset.
    pub acked: u64,
    /// Answered `ack` without an offset (no history: not verifiable).
    pub acked_no_offset: u64,
    /// Answered `unavailable`: no effect, not owed.
    pub unavailable: u64,
    /// Answered with another error (rate_limited, ...): no effect.
    pub rejected: u64,
    /// Never answered before their connection closed: unknown, not owed.
    pub unanswered: u64,
    /// Owed deliveries of acknowledged actions, and their fate.
    pub owed: u64,
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Owed deliveries excused by `recovered:false`.
    pub reset: u64,
    /// `recovered:false` answers.
    pub resets: u64,
    /// `recovered:true` answers.
    pub recoveries: u64,
    pub resyncs: u64,
    /// Offset gaps the client saw itself (and re-joined for).
    pub gaps: u64,
    /// Events dropped as already applied, or untrusted while re-joining.
    pub dropped_replays: u64,
    pub untrusted: u64,
    /// Connections closed (any cause) and reconnects made.
    pub closes: u64,
    pub reconnects: u64,
    pub last_close_code: Option<u16>,
    /// From losing footing (close or resync) to the `joined` that recovered it.
    pub recover_p50_ms: f64,
    pub recover_p99_ms: f64,
    pub recover_max_ms: f64,
    pub rss_before_kib: u64,
    pub rss_after_kib: u64,
    pub drain_complete: bool,
    /// `--churn`: the cycles made, and the server's RSS and fds around them.
    pub churn: Option<ChurnFigures>,
    pub soak: Option<Soak>,
}

impl RecoverSummary {
    /// One line, `key=value` pairs: what `perf/chaos` prints per scenario.
    pub fn line(&self) -> String {
        format!(
            "offered={} acked={} delivered={} lost={} duplicated={} reordered={} unavailable={} \
             unanswered={} reset={} resets={} recovered={} resyncs={} gaps={} closes={} \
             recover_p99_ms={:.0} recover_max_ms={:.0} rss_before_kib={} rss_after_kib={} \
             joined_end={}/{} drained={}",
            self.offered,
            self.acked,
            self.delivered,
            self.lost,
            self.duplicated,
            self.reordered,
            self.unavailable,
            self.unanswered,
            self.reset,
            self.resets,
            self.recoveries,
            self.resyncs,
            self.gaps,
            self.closes,
            self.recover_p99_ms,
            self.recover_max_ms,
            self.rss_before_kib,
            self.rss_after_kib,
            self.joined_at_end,
            self.conns,
            self.drain_complete,
        ) + &self.churn_line()
    }

    /// The churn figures appended to [`line`](Self::line), when churning.
    fn churn_line(&self) -> String {
        let (Some(c), Some(k)) = (&self.churn, &self.soak) else {
            return String::new();
        };
        format!(
            " churn_cycles={} churn_rate={:.0} churn_failed={} close_timeouts={} \
             churn_open_ms={:.1} churn_close_ms={:.1} churn_behind_s={:.1} \
             rss_base_kib={} rss_peak_kib={} rss_end_kib={} rss_end_pct={:+.1} \
             rss_early_kib={} rss_late_kib={} rss_slope_kib_per_min={:+.0} \
             fds_base={} fds_peak={} fds_end={} fds_end_pct={:+.1} fds_slope_per_min={:+.1} samples={}",
            c.cycles,
            c.rate,
            c.failed_connect + c.failed_handshake + c.failed_join,
            c.close_timeouts,
            c.open_ms_mean,
            c.close_ms_mean,
            c.behind_s,
            k.rss_base_kib,
            k.rss_peak_kib,
            k.rss_end_kib,
            k.rss_end_pct,
            k.rss_early_kib,
            k.rss_late_kib,
            k.rss_slope_kib_per_min,
            k.fds_base,
            k.fds_peak,
            k.fds_end,
            k.fds_end_pct,
            k.fds_slope_per_min,
            k.samples,
        )
    }

    /// What makes `--assert-no-loss` fail in this mode.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        if self.lost > 0 {
            p.push(format!("{} acknowledged deliveries lost", self.lost));
        }
        if self.duplicated > 0 {
            p.push(format!("{} duplicated", self.duplicated));
        }
        if self.reordered > 0 {
            p.push(format!("{} reordered", self.reordered));
        }
        if self.acked == 0 {
            p.push("nothing acknowledged".to_owned());
        }
        p
    }
}

#[derive(Deserialize)]
struct ServerMsg<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    id: Option<u64>,
    channel: Option<&'a str>,
    offset: Option<u64>,
    epoch: Option<&'a str>,
    recovered: Option<bool>,
    code: Option<&'a str>,
}

struct Loop {
    plan: Plan,
    poll: Poll,
    clients: Vec<Client>,
    handshakes: Vec<Vec<u8>>,
    read_buf: Box<[u8]>,
    rng: u64,
    base_ns: u64,
    cap_ns: u64,
    acks: Vec<Ack>,
    recover_ns: Histogram<u64>,
    s: RecoverSummary,
    epoch: Instant,
}

/// Runs a `--recover` run.
pub fn run(args: &Args) -> Result<RecoverSummary, String> {
    let fd_limit = procstat::raise_fd_limit().map_err(|e| format!("raising RLIMIT_NOFILE: {e}"))?;
    let plan = scenario::plan(args, fd_limit).map_err(|e| e.to_string())?;
    let rss = || -> u64 {
        args.server_pids
            .iter()
            .filter_map(|&p| procstat::rss_kib(p).ok())
            .sum()
    };
    let rss_before = rss();
    let poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let handshakes = plan
        .targets
        .iter()
        .map(|t| {
            let mut req = Vec::new();
            ws::write_handshake_request(&t.host, &t.path, &mut req);
            req
        })
        .collect();
    let clients = plan
        .conns
        .iter()
        .map(|cp| Client {
            plan: *cp,
            target: cp.target,
            stream: None,
            tls: None,
            state: State::Backoff(u64::MAX),
            inbuf: Vec::new(),
            out: Vec::new(),
            member: Member::new(cp.channel),
            epoch: String::new(),
            rejoining: false,
            attempt: 0,
            down_since: None,
            next_id: 1,
            pending: HashMap::new(),
            next_seq: 0,
            ever_joined: false,
        })
        .collect();
    let mut lp = Loop {
        poll,
        clients,
        handshakes,
        read_buf: vec![0; READ_BUF].into_boxed_slice(),
        rng: 0x9E37_79B9_7F4A_7C15 ^ u64::from(std::process::id()),
        base_ns: (args.backoff_base_ms.max(1.0) * 1e6) as u64,
        cap_ns: (args.backoff_max_ms.max(1.0) * 1e6) as u64,
        acks: Vec::new(),
        recover_ns: Histogram::new_with_bounds(1, 600_000_000_000, 3)
            .map_err(|e| format!("histogram: {e}"))?,
        s: RecoverSummary {
            conns: plan.conns.len() as u64,
            rss_before_kib: rss_before,
            ..RecoverSummary::default()
        },
        epoch: Instant::now(),
        plan,
    };
    let mut events = Events::with_capacity(1024);

    // Setup: everything joined (or the connect timeout).
    let setup_end = lp.now() + (args.connect_timeout.max(0.1) * 1e9) as u64;
    let mut started = 0;
    while lp.now() < setup_end {
        let in_flight = lp
            .clients
            .iter()
            .filter(|c| {
                matches!(
                    c.state,
                    State::Connecting | State::Handshake | State::Joining
                )
            })
            .count();
        let mut room = args.connect_concurrency.saturating_sub(in_flight);
        while room > 0 && started < lp.clients.len() {
            lp.start_connect(started);
            started += 1;
            room -= 1;
        }
        lp.turn(&mut events, Duration::from_millis(20))?;
        if started == lp.clients.len() && lp.clients.iter().all(|c| c.ever_joined) {
            break;
        }
    }
    lp.s.joined_at_start = lp.clients.iter().filter(|c| c.ever_joined).count() as u64;
    if lp.s.joined_at_start == 0 {
        return Err("no connection joined".to_owned());
    }

    // With --churn: the server sampled from here (the baseline), the churn
    // beside the publishing window.
    let sampler =
        (args.churn > 0.0).then(|| Sampler::start(&args.server_pids, secs(args.sample_every)));
    let churn_from = sampler.as_ref().map_or(0.0, Sampler::now_s);
    let churn = sampler
        .is_some()
        .then(|| Churn::start(&lp.plan.targets, args.churn, args.churn_threads));

    // Publish through warmup + duration, reconnecting whatever closes.
    let start = lp.now();
    let end = start + (lp.plan.warmup + lp.plan.duration).as_nanos() as u64;
    let publishers: Vec<usize> = (0..lp.clients.len())
        .filter(|&i| lp.clients[i].plan.publisher.is_some())
        .collect();
    let mut schedule = Schedule::new(publishers, lp.plan.rate, start);
    while lp.now() < end {
        let now = lp.now();
        let timeout = schedule.timeout(now, end).min(Duration::from_millis(20));
        lp.turn(&mut events, timeout)?;
        let budget = schedule.publishers.len();
        for _ in 0..budget {
            let Some(i) = schedule.due(lp.now(), end) else {
                break;
            };
            lp.publish(i);
        }
    }

    lp.s.churn = churn.map(Churn::finish);
    let churn_to = sampler.as_ref().map_or(0.0, Sampler::now_s);

    // Drain: until every member caught up with every ack, or --drain.
    let drain_end = lp.now() + lp.plan.drain.as_nanos() as u64;
    lp.s.drain_complete = loop {
        lp.turn(&mut events, Duration::from_millis(20))?;
        if lp.caught_up() {
            break true;
        }
        if lp.now() >= drain_end {
            break false;
        }
    };
    if let Some(sampler) = sampler {
        // Keep serving the load while the churned connections finish closing.
        let settle_end = lp.now() + secs(args.settle).as_nanos() as u64;
        while lp.now() < settle_end {
            lp.turn(&mut events, Duration::from_millis(20))?;
        }
        lp.s.soak = Some(Soak::of(&sampler.finish(), churn_from, churn_to));
    }
    lp.s.rss_after_kib = rss();
    Ok(lp.settle())
}

/// Seconds from a flag, clamped to what a `Duration` holds.
fn secs(s: f64) -> Duration {
    Duration::try_from_secs_f64(s.max(0.001)).unwrap_or(Duration::from_secs(1))
}

impl Loop {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn rand(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }

    /// One poll, then due reconnects.
    fn turn(&mut self, events: &mut Events, timeout: Duration) -> Result<(), String> {
        match self.poll.poll(events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("poll: {e}")),
        }
        for event in events.iter() {
            let i = event.token().0;
            if i >= self.clients.len() {
                continue;
            }
            if self.clients[i].state == State::Connecting {
                self.finish_connect(i);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.read_ready(i, event.is_read_closed() || event.is_error());
            }
            if event.is_writable() {
                self.flush(i);
            }
        }
        let now = self.now();
        for i in 0..self.clients.len() {
            if let State::Backoff(at) = self.clients[i].state {
                if at <= now {
                    self.start_connect(i);
                }
            }
        }
        Ok(())
    }

    fn start_connect(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(target) = self.plan.targets.get(c.target) else {
            return;
        };
        match connect(c.plan.source, target.addr) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut stream, Token(i), interest)
                    .is_ok()
                {
                    c.stream = Some(stream);
                    c.state = State::Connecting;
                    if c.ever_joined {
                        self.s.reconnects += 1;
                    }
                    return;
                }
                self.close(i, true, None);
            }
            Err(_) => self.close(i, true, None),
        }
    }

    fn finish_connect(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(stream) = c.stream.as_ref() else {
            return;
        };
        if !matches!(stream.take_error(), Ok(None)) {
            return self.close(i, true, None);
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
            Err(_) => return self.close(i, true, None),
        }
        if let (Some(config), Some(Some(name))) = (
            &self.plan.tls,
            self.plan.targets.get(c.target).map(|t| &t.tls),
        ) {
            match rustls::ClientConnection::new(Arc::clone(config), name.clone()) {
                Ok(mut tls) => {
                    // The upgrade request waits in rustls until the TLS
                    // handshake is done; MAX_OUT bounds the rest.
                    tls.set_buffer_limit(None);
                    c.tls = Some(Box::new(tls));
                }
                Err(_) => return self.close(i, true, None),
            }
        }
        if let Some(req) = self.handshakes.get(c.target) {
            c.out.extend_from_slice(req);
        }
        c.state = State::Handshake;
        self.flush(i);
    }

    /// Reads what is there. A short read means drained, except when the
    /// peer already closed (`peer_closed`): the end of stream then waits
    /// behind the data and raises no new edge, so read on to it (a killed
    /// node's clients otherwise sit in CLOSE-WAIT forever).
    fn read_ready(&mut self, i: usize, peer_closed: bool) {
        loop {
            let c = &mut self.clients[i];
            let Some(stream) = c.stream.as_mut() else {
                return;
            };
            let carry = c.inbuf.len();
            if carry >= self.read_buf.len() / 2 {
                return self.close(i, false, None);
            }
            self.read_buf[..carry].copy_from_slice(&c.inbuf);
            let space = self.read_buf.len() - carry;
            let mut wire = 0;
            let read = read_plaintext(
                stream,
                c.tls.as_deref_mut(),
                &mut self.read_buf[carry..],
                &mut wire,
            );
            let through_tls = c.tls.is_some();
            let n = match read {
                Ok(0) => return self.close(i, false, None),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => return self.close(i, false, None),
            };
            let buf = std::mem::take(&mut self.read_buf);
            let result = self.on_bytes(i, &buf[..carry + n]);
            self.read_buf = buf;
            match result {
                Ok(used) => {
                    let c = &mut self.clients[i];
                    c.inbuf.clear();
                    c.inbuf.extend_from_slice(&self.read_buf[used..carry + n]);
                }
                Err(code) => return self.close(i, false, code),
            }
            // Through TLS a short read says nothing of the socket.
            if n < space && !peer_closed && !through_tls {
                break;
            }
        }
        self.flush(i);
    }

    /// Consumes frames; `Err(code)` closes the connection.
    fn on_bytes(&mut self, i: usize, buf: &[u8]) -> Result<usize, Option<u16>> {
        let mut at = 0;
        if self.clients[i].state == State::Handshake {
            match ws::parse_handshake_response(buf) {
                Ok(None) => return Ok(0),
                Ok(Some(head)) => at = head,
                Err(_) => return Err(None),
            }
            self.send_join(i);
        }
        loop {
            let head = match ws::parse_frame(&buf[at..], MAX_FRAME) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => return Err(None),
            };
            let body = &buf[at + head.header_len..at + head.frame_len()];
            at += head.frame_len();
            match head.opcode {
                ws::OP_TEXT => self.on_text(i, body)?,
                ws::OP_PING => {
                    let mask = self.rand() as u32;
                    let c = &mut self.clients[i];
                    ws::write_client_frame(ws::OP_PONG, body, mask.to_le_bytes(), &mut c.out);
                }
                ws::OP_CLOSE => {
                    let code = match body {
                        [a, b, ..] => u16::from_be_bytes([*a, *b]),
                        _ => 0,
                    };
                    return Err(Some(code));
                }
                _ => {}
            }
        }
        Ok(at)
    }

    fn on_text(&mut self, i: usize, body: &[u8]) -> Result<(), Option<u16>> {
        let Ok(msg) = serde_json::from_slice::<ServerMsg>(body) else {
            return Ok(());
        };
        let now = self.now();
        let ours = self
            .plan
            .channels
            .get(self.clients[i].plan.channel as usize)
            .is_some_and(|ch| msg.channel == Some(ch.name.as_str()));
        match msg.kind {
            "user_action" if ours => {
                let c = &mut self.clients[i];
                if c.state != State::Joined || c.rejoining {
                    self.s.untrusted += 1;
                    return Ok(());
                }
                let (Some(offset), Some(stamp)) = (msg.offset, payload::scan_stamp(body)) else {
                    return Ok(());
                };
                let last = c.member.position().map_or(0, |(_, o)| o);
                if offset > last + 1 {
                    // A gap the server did not announce: fill it as a resync would.
                    self.s.gaps += 1;
                    c.down_since.get_or_insert(now);
                    self.send_join(i);
                    return Ok(());
                }
                c.member.on_event(offset, (stamp.publisher, stamp.seq));
            }
            "resync" if ours => {
                self.s.resyncs += 1;
                let c = &mut self.clients[i];
                c.down_since.get_or_insert(now);
                self.send_join(i);
            }
            "joined" if ours => {
                let c = &mut self.clients[i];
                c.state = State::Joined;
                c.rejoining = false;
                c.attempt = 0;
                c.ever_joined = true;
                if let Some(t) = c.down_since.take() {
                    let _ = self.recover_ns.record(now.saturating_sub(t).max(1));
                }
                if let (Some(epoch), Some(offset)) = (msg.epoch, msg.offset) {
                    let id = ledger::epoch_id(epoch);
                    if c.epoch != epoch {
                        c.epoch = epoch.to_owned();
                    }
                    c.member.on_joined(id, offset, msg.recovered);
                }
            }
            "ack" => {
                let c = &mut self.clients[i];
                let Some(seq) = msg.id.and_then(|id| c.pending.remove(&id)) else {
                    return Ok(());
                };
                let Some(offset) = msg.offset else {
                    self.s.acked_no_offset += 1;
                    return Ok(());
                };
                self.s.acked += 1;
                let epoch = c.member.position().map_or(0, |(e, _)| e);
                self.acks.push(Ack {
                    channel: c.plan.channel,
                    epoch,
                    offset,
                    stamp: (c.plan.publisher.unwrap_or(0), seq),
                });
            }
            "error" => {
                let c = &mut self.clients[i];
                if let Some(seq_id) = msg.id {
                    if c.pending.remove(&seq_id).is_some() {
                        match msg.code {
                            Some("unavailable") => self.s.unavailable += 1,
                            _ => self.s.rejected += 1,
                        }
                        return Ok(());
                    }
                }
                if c.state == State::Joining || c.rejoining {
                    // A refused (re-)join, `unavailable` while Redis is down:
                    // start over after a backoff.
                    return Err(None);
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn send_join(&mut self, i: usize) {
        let mask = self.rand() as u32;
        let c = &mut self.clients[i];
        let Some(ch) = self.plan.channels.get(c.plan.channel as usize) else {
            return;
        };
        let mut req = Vec::with_capacity(128);
        match c.member.position() {
            Some((_, offset)) => {
                let _ = write!(
                    req,
                    r#"{{"type":"join_channel","channel":"{}","since":{{"offset":{},"epoch":{}}}}}"#,
                    ch.name,
                    offset,
                    serde_json::Value::from(c.epoch.as_str())
                );
            }
            None => payload::write_join(&ch.name, &mut req),
        }
        ws::write_client_frame(ws::OP_TEXT, &req, mask.to_le_bytes(), &mut c.out);
        if c.state == State::Joined {
            c.rejoining = true;
        } else {
            c.state = State::Joining;
        }
    }

    fn publish(&mut self, i: usize) {
        let mask = self.rand() as u32;
        let now = self.now();
        let c = &mut self.clients[i];
        let Some(publisher) = c.plan.publisher else {
            return;
        };
        if c.state != State::Joined {
            return;
        }
        let Some(ch) = self.plan.channels.get(c.plan.channel as usize) else {
            return;
        };
        let stamp = Stamp {
            seq: c.next_seq,
            sent_ns: now,
            publisher,
        };
        let mut req = Vec::with_capacity(128);
        payload::write_user_action(&ch.name, stamp, &mut req);
        // `…}` → `…,"id":N}`: every action asks for its ack.
        req.pop();
        let _ = write!(req, r#","id":{}}}"#, c.next_id);
        c.pending.insert(c.next_id, c.next_seq);
        c.next_id += 1;
        c.next_seq += 1;
        self.s.offered += 1;
        ws::write_client_frame(ws::OP_TEXT, &req, mask.to_le_bytes(), &mut c.out);
        self.flush(i);
    }

    fn flush(&mut self, i: usize) {
        let c = &mut self.clients[i];
        let Some(stream) = c.stream.as_mut() else {
            return;
        };
        if c.state == State::Connecting {
            return;
        }
        if let Some(tls) = c.tls.as_deref_mut() {
            // Unbounded (set_buffer_limit(None)): everything moves in.
            let mut failed = tls.writer().write_all(&c.out).is_err();
            c.out.clear();
            while !failed && tls.wants_write() {
                match tls.write_tls(stream) {
                    Ok(0) => failed = true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => failed = true,
                }
            }
            if failed {
                self.close(i, false, None);
            }
            return;
        }
        let mut written = 0;
        let failed = loop {
            if written == c.out.len() {
                break false;
            }
            match stream.write(&c.out[written..]) {
                Ok(0) => break true,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
        };
        c.out.drain(..written);
        if failed || c.out.len() > MAX_OUT {
            self.close(i, false, None);
        }
    }

    /// Drops the connection and schedules a reconnect; `connect_failed`
    /// moves it to the next server.
    fn close(&mut self, i: usize, connect_failed: bool, code: Option<u16>) {
        let now = self.now();
        let backoff = {
            let attempt = self.clients[i].attempt.min(20);
            let ceiling = self.cap_ns.min(self.base_ns.saturating_mul(1 << attempt));
            self.rand() % ceiling.max(1)
        };
        let n_targets = self.plan.targets.len().max(1);
        let c = &mut self.clients[i];
        if let Some(mut stream) = c.stream.take() {
            let _ = self.poll.registry().deregister(&mut stream);
            let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            self.s.closes += 1;
        }
        if code.is_some() {
            self.s.last_close_code = code;
        }
        self.s.unanswered += c.pending.len() as u64;
        c.pending.clear();
        c.tls = None;
        c.inbuf.clear();
        c.out.clear();
        c.rejoining = false;
        if connect_failed {
            c.target = (c.target + 1) % n_targets;
        }
        if c.ever_joined {
            c.down_since.get_or_insert(now);
        }
        c.attempt = c.attempt.saturating_add(1);
        c.state = State::Backoff(now + backoff);
    }

    /// Tells stderr which members did not catch up (at most 10), to start
    /// the search for a loss.
    fn report_laggards(&self) {
        let mut top: HashMap<u32, u64> = HashMap::new();
        for a in &self.acks {
            let t = top.entry(a.channel).or_default();
            *t = (*t).max(a.offset);
        }
        let mut shown = 0;
        for (i, c) in self.clients.iter().enumerate() {
            let pos = c.member.position().map(|(_, o)| o);
            let want = top.get(&c.plan.channel).copied();
            if shown < 10 && (pos < want || c.state != State::Joined || !c.pending.is_empty()) {
                shown += 1;
                eprintln!(
                    "sb-load: conn {i} channel {} url #{} state {:?} rejoining {} at offset {:?} of {:?}, {} unanswered",
                    c.plan.channel,
                    c.target,
                    c.state,
                    c.rejoining,
                    pos,
                    want,
                    c.pending.len()
                );
            }
        }
    }

    /// Whether every member holds the highest acknowledged offset of its
    /// channel and every request was answered.
    fn caught_up(&self) -> bool {
        let mut top: HashMap<u32, (EpochId, u64)> = HashMap::new();
        for a in &self.acks {
            let e = top.entry(a.channel).or_insert((a.epoch, 0));
            if a.epoch == e.0 {
                e.1 = e.1.max(a.offset);
            } else {
                *e = (a.epoch, a.offset);
            }
        }
        self.clients.iter().all(|c| {
            c.pending.is_empty()
                && (!c.ever_joined
                    || (c.state == State::Joined
                        && !c.rejoining
                        && top.get(&c.plan.channel).is_none_or(|&(e, o)| {
                            c.member
                                .position()
                                .is_some_and(|(pe, po)| pe != e || po >= o)
                        })))
        })
    }

    fn settle(mut self) -> RecoverSummary {
        if !self.s.drain_complete {
            self.report_laggards();
        }
        let members: Vec<Member> = self
            .clients
            .iter_mut()
            .map(|c| std::mem::take(&mut c.member))
            .collect();
        let t: Tally = ledger::verify(&members, &self.acks);
        let s = &mut self.s;
        s.joined_at_end = self
            .clients
            .iter()
            .filter(|c| c.state == State::Joined)
            .count() as u64;
        s.unanswered += self
            .clients
            .iter()
            .map(|c| c.pending.len() as u64)
            .sum::<u64>();
        s.joined_at_end = s.joined_at_end.min(s.conns);
        s.owed = t.owed;
        s.delivered = t.delivered;
        s.lost = t.lost;
        s.duplicated = t.duplicated;
        s.reordered = t.reordered;
        s.reset = t.reset;
        s.dropped_replays = t.dropped_replays;
        s.resets = members.iter().map(|m| m.resets).sum();
        s.recoveries = members.iter().map(|m| m.recoveries).sum();
        let ms = |ns: u64| ns as f64 / 1e6;
        if !self.recover_ns.is_empty() {
            s.recover_p50_ms = ms(self.recover_ns.value_at_quantile(0.5));
            s.recover_p99_ms = ms(self.recover_ns.value_at_quantile(0.99));
            s.recover_max_ms = ms(self.recover_ns.max());
        }
        for c in &mut self.clients {
            if let Some(stream) = c.stream.take() {
                let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
        }
        self.s
    }
}
