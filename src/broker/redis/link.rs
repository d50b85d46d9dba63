//! One worker's connection to Redis, without the socket: a sans-IO
//! [`Session`] that speaks RESP3, the connection's phases, and reconnection
//! with capped exponential backoff and jitter.
//!
//! The link asks for a socket ([`LinkIo::Connect`]) and gives one up
//! ([`LinkIo::Close`]); the IO shim (`crate::socket::links`) does it, feeds
//! what it reads to [`Link::handle_input`], writes what
//! [`Link::poll_transmit`] returns, and says when the socket failed
//! ([`Link::handle_closed`]). For `rediss://` the shim puts a TLS session in
//! front of the socket; the link sees the same bytes either way. Every call
//! takes `now`: the link reads no clock.
//!
//! The link only moves bytes and keeps time; what the commands mean is the
//! owner's business. Commands issued while the link is down are refused at
//! once (the owner answers `unavailable`), so nothing waits without bound.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rustls::pki_types::ServerName;

use crate::resp::{Event, RedisUrl, SendError, Session, SessionConfig, Subscription};
use crate::rng::XorShift;

/// Where the link connects, resolved once at start.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    /// `rediss://`: the client configuration (roots) and the name the
    /// server's certificate must carry.
    pub tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
}

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
/// A link given up for good ([`Link::close`]) never retries.
const NEVER: Duration = Duration::from_secs(3600 * 24 * 365);

#[derive(Debug)]
enum State<T> {
    Down {
        retry_at: Instant,
    },
    Connecting {
        session: Session<T>,
        deadline: Instant,
    },
    Up {
        session: Session<T>,
    },
}

/// What the link asks of the IO shim, in order.
#[derive(Debug, Clone)]
pub enum LinkIo {
    /// Open a socket to the endpoint (dropping any old one first).
    Connect(Endpoint),
    /// Drop the socket: the link failed or was given up.
    Close,
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
    endpoint: Endpoint,
    /// `HELLO ... SETNAME`: who this link is in `CLIENT LIST`.
    client_name: String,
    state: State<T>,
    attempt: u32,
    rng: XorShift,
    events: Vec<LinkEvent<T>>,
    io: Vec<LinkIo>,
    /// When the socket last gave us bytes.
    last_rx: Instant,
}

impl<T> Link<T> {
    /// A link that connects at its first [`Link::tick`], named
    /// `client_name` in Redis's `CLIENT LIST`.
    pub fn new(
        url: RedisUrl,
        endpoint: Endpoint,
        client_name: String,
        seed: u64,
        now: Instant,
    ) -> Self {
        Link {
            url,
            endpoint,
            client_name,
            state: State::Down { retry_at: now },
            attempt: 0,
            rng: XorShift::new(seed),
            events: Vec::new(),
            io: Vec::new(),
            last_rx: now,
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
    pub fn close(&mut self, now: Instant) {
        self.fail(now);
        self.state = State::Down {
            retry_at: now + NEVER,
        };
    }

    /// Connects when the backoff allows; gives up a connect that hangs and
    /// a link that went silent.
    pub fn tick(&mut self, now: Instant) {
        match &self.state {
            State::Down { retry_at } if now >= *retry_at => {
                self.last_rx = now;
                let config = SessionConfig {
                    client_name: Some(self.client_name.clone()),
                    ..SessionConfig::default()
                };
                self.state = State::Connecting {
                    session: Session::with_config(&self.url, config),
                    deadline: now + CONNECT_TIMEOUT,
                };
                self.io.push(LinkIo::Connect(self.endpoint.clone()));
            }
            State::Connecting { deadline, .. } if now >= *deadline => {
                tracing::warn!(addr = %self.endpoint.addr, "redis connect timed out");
                self.fail(now);
            }
            State::Up { .. } if now.saturating_duration_since(self.last_rx) >= SILENCE_LIMIT => {
                tracing::warn!(addr = %self.endpoint.addr, "redis silent; reconnecting");
                self.fail(now);
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

    /// The socket failed, hung up or never connected: drop the session and
    /// schedule a retry.
    pub fn handle_closed(&mut self, now: Instant) {
        self.fail(now);
    }

    fn fail(&mut self, now: Instant) {
        let delay = self.backoff();
        let old = std::mem::replace(
            &mut self.state,
            State::Down {
                retry_at: now + delay,
            },
        );
        let was_up = matches!(old, State::Up { .. });
        if let State::Connecting { mut session, .. } | State::Up { mut session } = old {
            let lost = session.close();
            if was_up {
                tracing::warn!(addr = %self.endpoint.addr, "redis link lost");
            }
            self.io.push(LinkIo::Close);
            self.events.push(LinkEvent::Down(lost));
        }
    }

    fn backoff(&mut self) -> Duration {
        let exp = BACKOFF_MIN.saturating_mul(1 << self.attempt.min(5));
        self.attempt += 1;
        let cap = exp.min(BACKOFF_MAX);
        // Full jitter over the upper half, so nodes do not retry in step.
        let frac = (self.rng.next_u64() % 1000) as u32;
        cap / 2 + cap / 2 * frac / 1000
    }

    /// Bytes read from the socket.
    pub fn handle_input(&mut self, data: &[u8], now: Instant) {
        let session = match &mut self.state {
            State::Down { .. } => return,
            State::Connecting { session, .. } | State::Up { session } => session,
        };
        self.last_rx = now;
        session.handle_input(data);
        let mut failed = false;
        let mut became_up = false;
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
            return self.fail(now);
        }
        if became_up {
            if let State::Connecting { session, .. } =
                std::mem::replace(&mut self.state, State::Down { retry_at: now })
            {
                self.state = State::Up { session };
                self.attempt = 0;
                tracing::info!(addr = %self.endpoint.addr, "redis link up");
            }
        }
    }

    /// Bytes for the socket, queued by commands and the handshake.
    pub fn poll_transmit(&mut self) -> Option<Bytes> {
        match &mut self.state {
            State::Connecting { session, .. } | State::Up { session } => session.poll_transmit(),
            State::Down { .. } => None,
        }
    }

    /// What the shim is to do with the socket, oldest first.
    pub fn poll_io(&mut self) -> Option<LinkIo> {
        if self.io.is_empty() {
            None
        } else {
            Some(self.io.remove(0))
        }
    }

    pub fn take_events(&mut self) -> Vec<LinkEvent<T>> {
        std::mem::take(&mut self.events)
    }
}
