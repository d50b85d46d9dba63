//! One worker's connection to Redis: a non-blocking socket in the worker's
//! poll, a sans-IO [`Session`] that speaks RESP3, and reconnection with
//! capped exponential backoff and jitter.
//!
//! For `rediss://` the socket is wrapped in a [`TlsSession`] (client side,
//! the server verified against the configured roots) read and written by
//! the same loop; the RESP session above it sees the same bytes either way.
//!
//! The link only moves bytes and keeps time; what the commands mean is the
//! owner's business. Commands issued while the link is down are refused at
//! once (the owner answers `unavailable`), so nothing waits without bound.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::ServerName;

use crate::resp::{Event, RedisUrl, SendError, Session, Subscription};
use crate::tls::TlsSession;

/// Where the link connects, resolved once at start.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `rediss://`: the client configuration (roots) and the name the
    /// server's certificate must carry.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

/// The link's socket, in clear or through TLS.
#[derive(Debug)]
struct Stream {
    tcp: TcpStream,
    tls: Option<Box<TlsSession>>,
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => tls.read(&mut self.tcp, buf),
            None => self.tcp.read(buf),
        }
    }

    /// Takes what it can of `data`; `WouldBlock` when nothing fits.
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.tcp.write(data);
        };
        tls.write_tls(&mut self.tcp)?;
        if tls.wants_write() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        let n = tls.write_plaintext(data);
        tls.write_tls(&mut self.tcp)?;
        match n {
            0 => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    /// Writes TLS records left over from a full socket.
    fn flush_tls(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            tls.write_tls(&mut self.tcp)?;
        }
        Ok(())
    }
}
use crate::rng::XorShift;

/// Backoff before the first retry; doubles up to [`BACKOFF_MAX`].
const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Small enough that subscriptions are back within seconds of Redis.
pub const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// A connect or handshake that takes longer than this is abandoned.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// An established link that has read nothing for this long is taken for
/// dead (a Redis host gone without a FIN); the owner pings every
/// [`KEEPALIVE`], so a live Redis always has something to say.
const SILENCE_LIMIT: Duration = Duration::from_secs(3);
/// How often the owner pings an otherwise quiet link.
pub const KEEPALIVE: Duration = Duration::from_secs(1);

#[derive(Debug)]
enum State<T> {
    Down {
        retry_at: Instant,
    },
    Connecting {
        stream: Stream,
        session: Session<T>,
        deadline: Instant,
    },
    Up {
        stream: Stream,
        session: Session<T>,
    },
}

/// What changed on the link, for the owner.
#[derive(Debug)]
pub enum LinkEvent<T> {
    /// The handshake completed: (re)subscribe and (re)register now.
    Up,
    /// The link failed; these commands will never be answered.
    Down(Vec<T>),
    /// A reply or push.
    Session(Event<T>),
}

#[derive(Debug)]
pub struct Link<T> {
    url: RedisUrl,
    addr: SocketAddr,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    token: Token,
    state: State<T>,
    attempt: u32,
    /// Bytes taken from the session but not yet accepted by the socket.
    unsent: Option<Bytes>,
    rng: XorShift,
    events: Vec<LinkEvent<T>>,
    /// When the socket last gave us bytes.
    last_rx: Instant,
}

impl<T> Link<T> {
    pub fn new(url: RedisUrl, endpoint: Endpoint, token: Token, seed: u64) -> Self {
        Link {
            url,
            addr: endpoint.addr,
            tls: endpoint.tls,
            token,
            state: State::Down {
                retry_at: Instant::now(),
            },
            attempt: 0,
            unsent: None,
            rng: XorShift::new(seed),
            events: Vec::new(),
            last_rx: Instant::now(),
        }
    }

    /// Queues a command whose reply comes back as `LinkEvent::Session(Reply)`.
    /// On refusal the tag comes back, so its requester can be answered.
    pub fn command(&mut self, args: &[&[u8]], tag: T) -> Result<(), (SendError, T)> {
        match &mut self.state {
            State::Up { session, .. } => session.command(args, tag),
            _ => Err((SendError::Closed, tag)),
        }
    }

    /// `SUBSCRIBE`/`SSUBSCRIBE` (by `kind`) or their opposites.
    pub fn pubsub(
        &mut self,
        kind: Subscription,
        subscribe: bool,
        channels: &[&[u8]],
    ) -> Result<(), SendError> {
        match &mut self.state {
            State::Up { session, .. } => session.pubsub(kind, subscribe, channels),
            _ => Err(SendError::Closed),
        }
    }

    /// Drops the connection for good (a cluster node no longer used); the
    /// commands it still waited for come back as `LinkEvent::Down`.
    pub fn close(&mut self, now: Instant, registry: &Registry) {
        self.fail(now, registry);
        self.state = State::Down {
            retry_at: now + Duration::from_secs(3600 * 24 * 365),
        };
    }

    /// Connects when the backoff allows; gives up a connect that hangs.
    pub fn tick(&mut self, now: Instant, registry: &Registry) {
        match &self.state {
            State::Down { retry_at } if now >= *retry_at => self.connect(now, registry),
            State::Connecting { deadline, .. } if now >= *deadline => {
                tracing::warn!(addr = %self.addr, "redis connect timed out");
                self.fail(now, registry);
            }
            State::Up { .. } if now.saturating_duration_since(self.last_rx) >= SILENCE_LIMIT => {
                tracing::warn!(addr = %self.addr, "redis silent; reconnecting");
                self.fail(now, registry);
            }
            _ => {}
        }
    }

    /// When the next [`Link::tick`] matters.
    pub fn next_deadline(&self) -> Option<Instant> {
        match &self.state {
            State::Down { retry_at } => Some(*retry_at),
            State::Connecting { deadline, .. } => Some(*deadline),
            State::Up { .. } => None,
        }
    }

    fn connect(&mut self, now: Instant, registry: &Registry) {
        match TcpStream::connect(self.addr) {
            Ok(mut stream) => {
                let _ = stream.set_nodelay(true);
                if let Err(e) = registry.register(
                    &mut stream,
                    self.token,
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    tracing::warn!(error = %e, "redis register failed");
                    return self.fail(now, registry);
                }
                self.unsent = None;
                self.last_rx = now;
                let tls = self.tls.as_ref().map(|(config, name)| {
                    Box::new(TlsSession::client(config.clone(), name.clone()))
                });
                self.state = State::Connecting {
                    stream: Stream { tcp: stream, tls },
                    session: Session::new(&self.url),
                    deadline: now + CONNECT_TIMEOUT,
                };
            }
            Err(e) => {
                tracing::debug!(error = %e, "redis connect failed");
                self.fail(now, registry);
            }
        }
    }

    /// Drops the connection and schedules a retry.
    fn fail(&mut self, now: Instant, registry: &Registry) {
        let delay = self.backoff();
        let old = std::mem::replace(
            &mut self.state,
            State::Down {
                retry_at: now + delay,
            },
        );
        let was_up = matches!(old, State::Up { .. });
        if let State::Connecting {
            mut stream,
            mut session,
            ..
        }
        | State::Up {
            mut stream,
            mut session,
        } = old
        {
            let _ = registry.deregister(&mut stream.tcp);
            let lost = session.close();
            if was_up {
                tracing::warn!(addr = %self.addr, "redis link lost");
            }
            self.events.push(LinkEvent::Down(lost));
        }
        self.unsent = None;
    }

    fn backoff(&mut self) -> Duration {
        let exp = BACKOFF_MIN.saturating_mul(1 << self.attempt.min(5));
        self.attempt += 1;
        let cap = exp.min(BACKOFF_MAX);
        // Full jitter over the upper half, so nodes do not retry in step.
        let frac = (self.rng.next_u64() % 1000) as u32;
        cap / 2 + cap / 2 * frac / 1000
    }

    /// Reads and writes what the socket allows. Call on its readiness and
    /// after queueing commands.
    pub fn pump(&mut self, now: Instant, registry: &Registry) {
        let (stream, session) = match &mut self.state {
            State::Down { .. } => return,
            State::Connecting {
                stream, session, ..
            }
            | State::Up { stream, session } => (stream, session),
        };
        let mut failed = false;
        let mut became_up = false;
        let mut buf = [0u8; 16 * 1024];
        loop {
            let n = match stream.read(&mut buf) {
                Ok(0) => {
                    failed = true;
                    break;
                }
                Ok(n) => {
                    self.last_rx = now;
                    n
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    if e.kind() == io::ErrorKind::InvalidData {
                        // TLS refused: an untrusted or misnamed certificate.
                        tracing::warn!(addr = %self.addr, error = %e, "redis TLS failed");
                    } else {
                        tracing::debug!(error = %e, "redis read");
                    }
                    failed = true;
                    break;
                }
            };
            session.handle_input(&buf[..n]);
            while let Some(ev) = session.poll_event() {
                match ev {
                    Event::Ready => {
                        became_up = true;
                        self.events.push(LinkEvent::Up);
                    }
                    Event::Failed(e) => {
                        tracing::warn!(error = %e, "redis session failed");
                        failed = true;
                    }
                    other => self.events.push(LinkEvent::Session(other)),
                }
            }
            if failed {
                break;
            }
        }
        if !failed {
            if let Err(e) = write_from(stream, session, &mut self.unsent) {
                tracing::debug!(error = %e, "redis write");
                failed = true;
            }
        }
        if failed {
            return self.fail(now, registry);
        }
        if became_up {
            if let State::Connecting {
                stream, session, ..
            } = std::mem::replace(&mut self.state, State::Down { retry_at: now })
            {
                self.state = State::Up { stream, session };
                self.attempt = 0;
                tracing::info!(addr = %self.addr, "redis link up");
            }
        }
    }

    /// Flushes commands queued since the last pump.
    pub fn flush(&mut self, now: Instant, registry: &Registry) {
        let failed = match &mut self.state {
            State::Up { stream, session }
            | State::Connecting {
                stream, session, ..
            } => write_from(stream, session, &mut self.unsent).is_err(),
            State::Down { .. } => false,
        };
        if failed {
            self.fail(now, registry);
        }
    }

    pub fn take_events(&mut self) -> Vec<LinkEvent<T>> {
        std::mem::take(&mut self.events)
    }
}

fn write_from<T>(
    stream: &mut Stream,
    session: &mut Session<T>,
    unsent: &mut Option<Bytes>,
) -> io::Result<()> {
    stream.flush_tls()?;
    loop {
        let mut chunk = match unsent.take() {
            Some(c) => c,
            None => match session.poll_transmit() {
                Some(c) => c,
                None => return Ok(()),
            },
        };
        while !chunk.is_empty() {
            match stream.write(&chunk) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    let _ = chunk.split_to(n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    *unsent = Some(chunk);
                    return Ok(());
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}
