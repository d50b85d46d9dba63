//! One mio event loop driving a share of the connections: connect, handshake,
//! join, then publish on a schedule and receive until told to stop.
//!
//! Phases are set by the main thread in [`Shared`] and announced with the
//! worker's [`mio::Waker`]:
//! * `SETUP`: connect at most `connect_concurrency` at a time; once every
//!   connection is joined or failed, send one [`SetupReport`].
//! * `RUN`: publish from `publish_start_ns` until `window.end_ns`, round-robin
//!   over this worker's publishers at `rate × publishers` per second, so each
//!   publisher sends evenly at `rate`. Keep receiving.
//! * `STOP`: return a [`WorkerResult`].
//!
//! # Draining readiness
//! Sockets are edge-triggered. A read that fills less than the buffer offered
//! means the socket was drained at that moment, so the loop stops there
//! without paying for the extra `read` that would return `EAGAIN`; new data
//! raises a new edge (epoll(7), "the condition that the read/write I/O space
//! is exhausted can also be detected by checking the amount of data read").

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::conn::{Conn, ConnError, Phase, Sink, Window};
use crate::inflate::Inflater;
use crate::payload::{self, Stamp};
use crate::scenario::{ConnPlan, Plan};
use crate::schedule::Schedule;
use crate::ws::{self, FrameError};

/// The waker's token; connection tokens are slot indices below it.
pub const WAKE: Token = Token(usize::MAX);
/// Per-worker read buffer: partial frame carried over plus one read.
const READ_BUF: usize = 256 * 1024;
/// Largest server frame payload accepted (PROTOCOL.md §2's default limit).
const MAX_FRAME: usize = 64 * 1024;

pub const PHASE_SETUP: u8 = 0;
pub const PHASE_RUN: u8 = 1;
pub const PHASE_STOP: u8 = 2;

/// State the main thread shares with every worker.
#[derive(Debug)]
pub struct Shared {
    /// Time zero of every stamp.
    pub epoch: Instant,
    phase: AtomicU8,
    run: OnceLock<RunParams>,
    /// Deliveries owed so far: each message sent times its channel's members.
    pub expected: AtomicU64,
    /// Distinct deliveries received so far.
    pub delivered: AtomicU64,
}

/// Set once by the main thread before `RUN`.
#[derive(Debug, Clone)]
pub struct RunParams {
    pub publish_start_ns: u64,
    pub window: Window,
    /// Joined members per channel, over all workers.
    pub members: Vec<u32>,
}

impl Shared {
    pub fn new(epoch: Instant) -> Shared {
        Shared {
            epoch,
            phase: AtomicU8::new(PHASE_SETUP),
            run: OnceLock::new(),
            expected: AtomicU64::new(0),
            delivered: AtomicU64::new(0),
        }
    }

    pub fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    /// Starts the run; the caller then wakes every worker.
    pub fn start(&self, params: RunParams) {
        let _ = self.run.set(params);
        self.phase.store(PHASE_RUN, Ordering::Release);
    }

    pub fn stop(&self) {
        self.phase.store(PHASE_STOP, Ordering::Release);
    }

    fn phase(&self) -> u8 {
        self.phase.load(Ordering::Acquire)
    }
}

/// Why connections did not make it to `joined`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Failures {
    pub connect: u64,
    pub handshake: u64,
    pub join: u64,
    pub timeout: u64,
}

impl Failures {
    pub fn total(&self) -> u64 {
        self.connect + self.handshake + self.join + self.timeout
    }

    pub fn add(&mut self, o: &Failures) {
        self.connect += o.connect;
        self.handshake += o.handshake;
        self.join += o.join;
        self.timeout += o.timeout;
    }
}

/// Sent once per worker when its setup is over.
#[derive(Debug, Clone)]
pub struct SetupReport {
    /// Joined connections per channel.
    pub joined: Vec<u32>,
    pub failures: Failures,
    /// ns since epoch when the last connection joined or failed.
    pub done_ns: u64,
}

/// What a worker hands back at the end.
#[derive(Debug)]
pub struct WorkerResult {
    pub sink: Sink,
    pub sent: u64,
    /// Deliveries owed for what it sent: each message times its channel's members.
    pub expected: u64,
    pub sent_in_window: u64,
    pub expected_in_window: u64,
    /// Joined connections that closed or failed during the run.
    pub dropped: u64,
    /// Server closes seen, by the last code (0 = none given).
    pub last_close_code: Option<u16>,
    /// Longest a publication waited past its scheduled time.
    pub max_send_lag_ns: u64,
}

struct Slot {
    stream: Option<TcpStream>,
    /// `wss://`: the TLS session over `stream` (boxed: most of a slot's
    /// size, and absent for `ws://`).
    tls: Option<Box<rustls::ClientConnection>>,
    conn: Conn,
    plan: ConnPlan,
    started_ns: u64,
}

/// Everything one worker owns.
pub struct Worker {
    plan: Arc<Plan>,
    shared: Arc<Shared>,
    poll: Poll,
    slots: Vec<Slot>,
    sink: Sink,
    read_buf: Box<[u8]>,
    msg_buf: Vec<u8>,
    /// Inflates compressed messages of every connection of this worker.
    inflater: Inflater,
    handshakes: Vec<Vec<u8>>,
    connect_concurrency: usize,
    connect_timeout_ns: u64,
    in_flight: usize,
    failures: Failures,
    joined: Vec<u32>,
    dropped: u64,
    last_close_code: Option<u16>,
}

impl Worker {
    /// A worker for `conns` (indices into `plan.conns`), polling with `poll`
    /// whose waker the main thread holds.
    pub fn new(
        id: usize,
        plan: Arc<Plan>,
        conns: &[usize],
        shared: Arc<Shared>,
        poll: Poll,
        connect_concurrency: usize,
        connect_timeout: Duration,
    ) -> Worker {
        let slots = conns
            .iter()
            .filter_map(|&i| plan.conns.get(i))
            .map(|cp| {
                let pubs = plan
                    .channels
                    .get(cp.channel as usize)
                    .map_or(0, |c| c.publishers);
                Slot {
                    stream: None,
                    tls: None,
                    conn: Conn::new(cp.publisher, pubs),
                    plan: *cp,
                    started_ns: 0,
                }
            })
            .collect();
        let handshakes = plan
            .targets
            .iter()
            .map(|t| {
                let mut req = Vec::new();
                ws::write_handshake_request_with(&t.host, &t.path, plan.compression, &mut req);
                req
            })
            .collect();
        Worker {
            joined: vec![0; plan.channels.len()],
            plan,
            shared,
            poll,
            slots,
            sink: Sink::new(0x5EED ^ (id as u64) << 32),
            read_buf: vec![0; READ_BUF].into_boxed_slice(),
            msg_buf: Vec::with_capacity(256),
            inflater: Inflater::default(),
            handshakes,
            connect_concurrency: connect_concurrency.max(1),
            connect_timeout_ns: connect_timeout.as_nanos() as u64,
            in_flight: 0,
            failures: Failures::default(),
            dropped: 0,
            last_close_code: None,
        }
    }

    /// Runs all three phases; `ready` receives the setup report.
    pub fn run(mut self, ready: Sender<SetupReport>) -> io::Result<WorkerResult> {
        let mut events = Events::with_capacity(1024);
        self.setup(&mut events, &ready)?;
        let (counts, max_send_lag_ns) = self.drive(&mut events)?;
        self.close_all();
        Ok(WorkerResult {
            sink: self.sink,
            sent: counts.sent,
            expected: counts.expected,
            sent_in_window: counts.sent_in_window,
            expected_in_window: counts.expected_in_window,
            dropped: self.dropped,
            last_close_code: self.last_close_code,
            max_send_lag_ns,
        })
    }

    /// `SETUP`: connect, handshake and join everything, report once, then
    /// keep serving the sockets until the main thread starts the run.
    fn setup(&mut self, events: &mut Events, ready: &Sender<SetupReport>) -> io::Result<()> {
        let mut next_to_start = 0;
        let mut reported = false;
        let mut last_sweep = 0;
        while self.shared.phase() == PHASE_SETUP {
            while self.in_flight < self.connect_concurrency && next_to_start < self.slots.len() {
                self.start_connect(next_to_start);
                next_to_start += 1;
            }
            self.poll_once(events, Some(Duration::from_millis(50)))?;
            let now = self.shared.now_ns();
            if now.saturating_sub(last_sweep) > 100_000_000 {
                last_sweep = now;
                self.expire_connects(now);
            }
            if !reported && next_to_start == self.slots.len() && self.in_flight == 0 {
                reported = true;
                let report = SetupReport {
                    joined: self.joined.clone(),
                    failures: self.failures,
                    done_ns: now,
                };
                if ready.send(report).is_err() {
                    return Err(io::Error::other("main thread gone"));
                }
            }
        }
        Ok(())
    }

    /// `RUN`: publish on schedule and receive until `STOP`; returns what was
    /// sent and the schedule's longest lag.
    fn drive(&mut self, events: &mut Events) -> io::Result<(SendCounts, u64)> {
        let params = self.shared.run.get().cloned().unwrap_or(RunParams {
            publish_start_ns: 0,
            window: Window::default(),
            members: Vec::new(),
        });
        self.sink.window = params.window;
        let publishers = (0..self.slots.len())
            .filter(|&i| {
                let conn = &self.slots[i].conn;
                conn.publisher.is_some() && conn.phase == Phase::Joined
            })
            .collect();
        let mut schedule = Schedule::new(publishers, self.plan.rate, params.publish_start_ns);
        let mut counts = SendCounts::default();
        let (mut expected_flushed, mut delivered_flushed) = (0, 0);
        while self.shared.phase() == PHASE_RUN {
            let now = self.shared.now_ns();
            self.poll_once(events, Some(schedule.timeout(now, params.window.end_ns)))?;
            self.publish_due(&mut schedule, &params, &mut counts);
            // Publish progress for the main thread's drain check.
            let delivered = self.sink.delivered;
            self.shared
                .expected
                .fetch_add(counts.expected - expected_flushed, Ordering::Relaxed);
            self.shared
                .delivered
                .fetch_add(delivered - delivered_flushed, Ordering::Relaxed);
            (expected_flushed, delivered_flushed) = (counts.expected, delivered);
        }
        Ok((counts, schedule.max_lag_ns))
    }

    fn poll_once(&mut self, events: &mut Events, timeout: Option<Duration>) -> io::Result<()> {
        match self.poll.poll(events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(()),
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            if event.token() == WAKE {
                continue;
            }
            let i = event.token().0;
            if i >= self.slots.len() {
                continue; // spurious: not ours
            }
            if self.slots[i].conn.phase == Phase::Connecting {
                self.finish_connect(i);
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                self.read_ready(i, event.is_read_closed() || event.is_error());
            }
            if event.is_writable() {
                self.flush(i);
            }
        }
        Ok(())
    }

    fn start_connect(&mut self, i: usize) {
        let now = self.shared.now_ns();
        let slot = &mut self.slots[i];
        let Some(target) = self.plan.targets.get(slot.plan.target) else {
            self.failures.connect += 1;
            return;
        };
        match connect(slot.plan.source, target.addr) {
            Ok(mut stream) => {
                let interest = Interest::READABLE | Interest::WRITABLE;
                if self
                    .poll
                    .registry()
                    .register(&mut stream, Token(i), interest)
                    .is_err()
                {
                    self.failures.connect += 1;
                    return;
                }
                slot.stream = Some(stream);
                slot.started_ns = now;
                self.in_flight += 1;
            }
            Err(_) => self.failures.connect += 1,
        }
    }

    fn finish_connect(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(stream) = slot.stream.as_ref() else {
            return;
        };
        match stream.take_error() {
            Ok(None) => {}
            _ => return self.fail(i, Fail::Connect),
        }
        match stream.peer_addr() {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotConnected => return, // still connecting
            Err(_) => return self.fail(i, Fail::Connect),
        }
        if let (Some(config), Some(Some(name))) = (
            &self.plan.tls,
            self.plan.targets.get(slot.plan.target).map(|t| &t.tls),
        ) {
            match rustls::ClientConnection::new(Arc::clone(config), name.clone()) {
                Ok(mut tls) => {
                    // The upgrade request waits in rustls until the TLS
                    // handshake is done; nothing else is ever queued.
                    tls.set_buffer_limit(None);
                    slot.tls = Some(Box::new(tls));
                }
                Err(_) => return self.fail(i, Fail::Connect),
            }
        }
        if let Some(req) = self.handshakes.get(slot.plan.target) {
            slot.conn.out.extend_from_slice(req);
        }
        slot.conn.phase = Phase::Handshake;
        self.flush(i);
    }

    fn expire_connects(&mut self, now: u64) {
        for i in 0..self.slots.len() {
            let slot = &self.slots[i];
            let setting_up = matches!(
                slot.conn.phase,
                Phase::Connecting | Phase::Handshake | Phase::Joining
            );
            if setting_up
                && slot.stream.is_some()
                && now.saturating_sub(slot.started_ns) > self.connect_timeout_ns
            {
                self.fail(i, Fail::Timeout);
            }
        }
    }

    /// Reads what is there. A short read means drained, except when the
    /// peer already closed (`peer_closed`): the end of stream then waits
    /// behind the data and raises no new edge, so read on to it (otherwise
    /// the connection sits in CLOSE-WAIT, counted joined, and never fails).
    fn read_ready(&mut self, i: usize, peer_closed: bool) {
        let slot = &mut self.slots[i];
        let Some(stream) = slot.stream.as_mut() else {
            return;
        };
        let name = self
            .plan
            .channels
            .get(slot.plan.channel as usize)
            .map_or("", |c| c.name.as_str());
        let was_joined = slot.conn.phase == Phase::Joined;
        let outcome = loop {
            let carry = slot.conn.inbuf.len();
            // A carry is an incomplete head (<= ws::MAX_HEAD) or frame
            // (<= MAX_FRAME + 14), far below the buffer; checked all the same.
            if carry >= self.read_buf.len() / 2 {
                break Err(Fail::Protocol(ConnError::Frame(FrameError::TooLarge {
                    len: carry as u64,
                    max: MAX_FRAME,
                })));
            }
            self.read_buf[..carry].copy_from_slice(&slot.conn.inbuf);
            let space = self.read_buf.len() - carry;
            let mut wire = 0;
            let read = read_plaintext(
                stream,
                slot.tls.as_deref_mut(),
                &mut self.read_buf[carry..],
                &mut wire,
            );
            if wire > 0 {
                self.sink.wire(wire, self.shared.now_ns());
            }
            match read {
                Ok(0) => break Err(Fail::Eof),
                Ok(n) => {
                    let now = self.shared.now_ns();
                    let filled = &self.read_buf[..carry + n];
                    match slot.conn.on_bytes(
                        filled,
                        now,
                        name,
                        MAX_FRAME,
                        &mut self.sink,
                        &mut self.inflater,
                    ) {
                        Ok(used) => {
                            slot.conn.inbuf.clear();
                            slot.conn.inbuf.extend_from_slice(&filled[used..]);
                        }
                        Err(e) => break Err(Fail::Protocol(e)),
                    }
                    // Through TLS a short read says nothing of the socket.
                    if n < space && slot.tls.is_none() && !peer_closed {
                        break Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::InvalidData => break Err(Fail::Tls),
                Err(_) => break Err(Fail::Eof),
            }
        };
        if !slot.conn.out.is_empty() || slot.tls.as_ref().is_some_and(|t| t.wants_write()) {
            self.flush(i);
        }
        let slot = &self.slots[i];
        if !was_joined && slot.conn.phase == Phase::Joined {
            self.joined[slot.plan.channel as usize] += 1;
            self.in_flight = self.in_flight.saturating_sub(1);
        }
        if let Err(fail) = outcome {
            self.fail(i, fail);
        }
    }

    fn flush(&mut self, i: usize) {
        let slot = &mut self.slots[i];
        let Some(stream) = slot.stream.as_mut() else {
            return;
        };
        if slot.conn.phase == Phase::Connecting {
            return;
        }
        if let Some(tls) = slot.tls.as_deref_mut() {
            // Unbounded (set_buffer_limit(None)): everything moves in.
            if tls.writer().write_all(&slot.conn.out).is_err() {
                return self.fail(i, Fail::Tls);
            }
            slot.conn.out.clear();
            let failed = loop {
                if !tls.wants_write() {
                    break false;
                }
                match tls.write_tls(stream) {
                    Ok(0) => break true,
                    Ok(_) => {}
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break true,
                }
            };
            if failed {
                self.fail(i, Fail::Eof);
            }
            return;
        }
        let mut written = 0;
        let failed = loop {
            if written == slot.conn.out.len() {
                break false;
            }
            match stream.write(&slot.conn.out[written..]) {
                Ok(0) => break true,
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break false,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break true,
            }
        };
        slot.conn.out.drain(..written);
        if failed {
            self.fail(i, Fail::Eof);
        }
    }

    /// Sends every publication whose time has come (at most one round of
    /// publishers per call, so receiving is never starved).
    fn publish_due(
        &mut self,
        schedule: &mut Schedule,
        params: &RunParams,
        counts: &mut SendCounts,
    ) {
        let mut budget = schedule.publishers.len();
        while budget > 0 {
            let now = self.shared.now_ns();
            let Some(i) = schedule.due(now, params.window.end_ns) else {
                break;
            };
            budget -= 1;
            let slot = &mut self.slots[i];
            let (Some(publisher), Phase::Joined) = (slot.conn.publisher, slot.conn.phase) else {
                continue;
            };
            let ch = slot.plan.channel as usize;
            let name = self.plan.channels.get(ch).map_or("", |c| c.name.as_str());
            let stamp = Stamp {
                seq: slot.conn.next_seq,
                sent_ns: now,
                publisher,
            };
            self.msg_buf.clear();
            match self.plan.action_bytes {
                0 => payload::write_user_action(name, stamp, &mut self.msg_buf),
                n => payload::write_padded_user_action(name, stamp, n, &mut self.msg_buf),
            }
            ws::write_client_frame(
                ws::OP_TEXT,
                &self.msg_buf,
                self.sink.next_mask(),
                &mut slot.conn.out,
            );
            slot.conn.next_seq += 1;
            let members = u64::from(params.members.get(ch).copied().unwrap_or(0));
            counts.sent += 1;
            counts.expected += members;
            if params.window.contains(now) {
                counts.sent_in_window += 1;
                counts.expected_in_window += members;
            }
            self.flush(i);
        }
    }

    fn fail(&mut self, i: usize, fail: Fail) {
        let slot = &mut self.slots[i];
        let Some(mut stream) = slot.stream.take() else {
            return;
        };
        slot.tls = None;
        let _ = self.poll.registry().deregister(&mut stream);
        let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        let phase = slot.conn.phase;
        slot.conn.phase = Phase::Closed;
        if let Fail::Protocol(ConnError::ClosedByServer { code }) = fail {
            self.last_close_code = Some(code);
        }
        if phase == Phase::Joined {
            self.dropped += 1;
            return;
        }
        self.in_flight = self.in_flight.saturating_sub(1);
        match fail {
            Fail::Connect | Fail::Eof if phase == Phase::Connecting => self.failures.connect += 1,
            Fail::Timeout => self.failures.timeout += 1,
            Fail::Protocol(ConnError::JoinRefused) => self.failures.join += 1,
            _ => self.failures.handshake += 1,
        }
    }

    /// Closes every socket with an RST (linger 0) so a run leaves no
    /// TIME_WAIT sockets on the client addresses for the next run to trip on.
    fn close_all(&mut self) {
        for slot in &mut self.slots {
            if let Some(stream) = slot.stream.take() {
                let _ = SockRef::from(&stream).set_linger(Some(Duration::ZERO));
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Fail {
    Connect,
    Timeout,
    Eof,
    /// The TLS session failed (certificate refused, bad record).
    Tls,
    Protocol(ConnError),
}

/// `io::Read::read` of plaintext: from the socket, or through `tls`
/// (reading records from the socket until some plaintext is there).
/// `Ok(0)` is the end of the stream; a TLS failure is `InvalidData`.
/// Adds the bytes taken from the socket to `wire`.
pub(crate) fn read_plaintext(
    stream: &mut TcpStream,
    tls: Option<&mut rustls::ClientConnection>,
    buf: &mut [u8],
    wire: &mut usize,
) -> io::Result<usize> {
    let Some(tls) = tls else {
        let n = stream.read(buf)?;
        *wire += n;
        return Ok(n);
    };
    loop {
        match tls.reader().read(buf) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            // EOF without close_notify: the end all the same.
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
            Err(e) => return Err(e),
        }
        match tls.read_tls(stream) {
            Ok(0) => return Ok(0),
            Ok(n) => *wire += n,
            Err(e) => return Err(e),
        }
        if let Err(e) = tls.process_new_packets() {
            let _ = tls.write_tls(stream); // the alert, best effort
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
    }
}

#[derive(Debug, Default)]
struct SendCounts {
    sent: u64,
    expected: u64,
    sent_in_window: u64,
    expected_in_window: u64,
}

/// A nonblocking connect from `source` (port chosen at connect time, so each
/// source address offers the whole ephemeral range per destination).
pub fn connect(source: std::net::Ipv4Addr, dest: SocketAddr) -> io::Result<TcpStream> {
    let socket = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    bind_address_no_port(&socket)?;
    socket.bind(&SocketAddr::from((source, 0)).into())?;
    match socket.connect(&dest.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// `IP_BIND_ADDRESS_NO_PORT` (ip(7)): defer the port choice of `bind(addr, 0)`
/// to `connect`, which can then reuse a port for different destinations.
fn bind_address_no_port(socket: &Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: a valid fd and a pointer to an int of the stated length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
