//! Metrics for `GET /metrics` (PROTOCOL.md §9), in the Prometheus text
//! exposition format, version 0.0.4.
//!
//! # Per worker, summed at scrape
//!
//! Each worker thread owns one [`WorkerMetrics`], shared as
//! `Arc<WorkerMetrics>` with whoever serves the scrape. Workers only ever
//! write their own struct, so no cache line is shared between two writers:
//! the struct is aligned (and therefore padded) to 128 bytes, which covers
//! the adjacent-line prefetcher of x86 as well as 128-byte lines elsewhere.
//! [`render`] reads every worker's struct and sums.
//!
//! # Single writer
//!
//! Every [`Counter`] (and [`Histogram`]) has exactly one writing thread at a
//! time. That lets `add` be a relaxed load and a relaxed store (two plain
//! `mov`s on x86-64) instead of a `lock xadd`, which would stall the store
//! buffer on every message. Readers see a value that is at most a few
//! increments old, which Prometheus tolerates by design. Writing the same
//! counter from two threads at once would lose increments (never corrupt
//! memory); do not do it.
//!
//! # What is not on the per-recipient path
//!
//! Fan-out counts (`messages_delivered_total`) are added once per fan-out
//! with the number of recipients ([`WorkerMetrics::delivered`] takes `n`),
//! so delivering to 10 000 connections costs one add, not 10 000.
//!
//! Nothing here reads a clock or allocates on a write: durations come in as
//! nanoseconds measured by the caller.

mod histogram;
pub mod latency;
mod render;

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

pub use histogram::{
    Histogram, HistogramSnapshot, BROKER_RTT_BOUNDS, BUCKETS, FANOUT_BOUNDS, LOOP_TIME_BOUNDS,
    WRITE_DELAY_BOUNDS,
};
pub use render::{render, render_jwks, Gauges, JwksGauges};

/// The `Content-Type` of a scrape answer (text format 0.0.4).
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A monotonically increasing count with a single writing thread.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning thread may call this (see the module docs).
    #[inline]
    pub fn add(&self, n: u64) {
        let v = self.0.load(Relaxed);
        self.0.store(v.wrapping_add(n), Relaxed);
    }

    /// The current value; any thread.
    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }
}

/// Declares a label enum: its variants, their label values, `ALL` in
/// rendering order and `COUNT` for sizing the counter arrays.
macro_rules! label_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $var:ident => $label:literal,)+ }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($(#[$vm])* $var,)+ }

        impl $name {
            /// Every value, in rendering order (the order of the variants).
            pub const ALL: &'static [$name] = &[$($name::$var,)+];
            /// Number of values.
            pub const COUNT: usize = Self::ALL.len();

            /// The label value written in the exposition.
            pub const fn label(self) -> &'static str {
                match self { $($name::$var => $label,)+ }
            }
        }
    };
}

label_enum! {
    /// A client request by `type` (PROTOCOL.md §3), for
    /// `switchboard_messages_received_total{type=...}`.
    MsgType {
        Join => "join_channel",
        Leave => "leave_channel",
        Action => "user_action",
        Presence => "presence",
        Ping => "ping",
        Refresh => "refresh",
        /// A message that failed to parse (answered `bad_request` or
        /// `unknown_type`).
        Invalid => "invalid",
    }
}

label_enum! {
    /// A frame queued to clients, for
    /// `switchboard_messages_delivered_total{type=...}`.
    DeliveredType {
        UserAction => "user_action",
        Presence => "presence",
        /// A `resync` (PROTOCOL.md §5): the node saw a gap in a channel.
        Resync => "resync",
        /// A direct answer to one request (`joined`, `pong`, `error`, ...).
        Reply => "reply",
    }
}

label_enum! {
    /// Why a WebSocket closed (PROTOCOL.md §8), for
    /// `switchboard_closes_total{code=...}`.
    CloseKind {
        Normal => "1000",
        GoingAway => "1001",
        Protocol => "1002",
        /// The peer hung up, or the socket failed, without a close
        /// handshake (RFC 6455 §7.1.5 reports this as 1006; it is never
        /// sent).
        Abnormal => "1006",
        InvalidUtf8 => "1007",
        TooBig => "1009",
        SlowConsumer => "4008",
        RateLimited => "4009",
        /// The token expired without a successful `refresh`.
        TokenExpired => "4010",
        Other => "other",
    }
}

label_enum! {
    /// Which handler served an HTTP request, for
    /// `switchboard_http_requests_total{route=...}`.
    HttpRoute {
        /// The WebSocket upgrade on `/ws`.
        Ws => "ws",
        Demo => "demo",
        Healthz => "healthz",
        Metrics => "metrics",
        ApiPublish => "api_publish",
        ApiPresence => "api_presence",
        ApiChannels => "api_channels",
        NotFound => "not_found",
        /// Anything else: 405s, malformed heads, the Autobahn echo route.
        Other => "other",
    }
}

impl CloseKind {
    /// Maps a close code to its label; codes PROTOCOL.md §8 does not list
    /// are `Other`.
    pub const fn from_code(code: u16) -> Self {
        match code {
            1000 => CloseKind::Normal,
            1001 => CloseKind::GoingAway,
            1002 => CloseKind::Protocol,
            1006 => CloseKind::Abnormal,
            1007 => CloseKind::InvalidUtf8,
            1009 => CloseKind::TooBig,
            4008 => CloseKind::SlowConsumer,
            4009 => CloseKind::RateLimited,
            4010 => CloseKind::TokenExpired,
            _ => CloseKind::Other,
        }
    }
}

/// The error codes of PROTOCOL.md §7 in rendering order, then `other` for
/// anything else. Strings rather than `proto::ErrorCode` keep this module
/// free of the protocol types.
pub const ERROR_CODES: [&str; 10] = [
    "bad_request",
    "unknown_type",
    "invalid_channel",
    "forbidden",
    "not_joined",
    "too_many_channels",
    "rate_limited",
    "unavailable",
    "unauthorized",
    "other",
];

/// The index of `code` in [`ERROR_CODES`]; unknown codes map to `other`.
pub fn error_index(code: &str) -> usize {
    match code {
        "bad_request" => 0,
        "unknown_type" => 1,
        "invalid_channel" => 2,
        "forbidden" => 3,
        "not_joined" => 4,
        "too_many_channels" => 5,
        "rate_limited" => 6,
        "unavailable" => 7,
        "unauthorized" => 8,
        _ => 9,
    }
}

/// One worker's counters and histograms. Create one per worker with
/// [`WorkerMetrics::new`], keep an `Arc` in the worker (the only writer) and
/// hand clones to the scrape path.
#[repr(align(128))]
#[derive(Debug)]
pub struct WorkerMetrics {
    received: [Counter; MsgType::COUNT],
    delivered: [Counter; DeliveredType::COUNT],
    bytes_in: Counter,
    bytes_out: Counter,
    errors: [Counter; ERROR_CODES.len()],
    closes: [Counter; CloseKind::COUNT],
    rate_limited: Counter,
    redis_reconnects: Counter,
    tls_handshake_failures: Counter,
    http: [Counter; HttpRoute::COUNT],
    /// `[recovered, not_recovered]`.
    recoveries: [Counter; 2],
    replayed: Counter,
    /// Publish to the owner's (or Redis's) answer:
    /// `switchboard_broker_round_trip_seconds`.
    pub broker_rtt: Histogram,
    /// One turn of the event loop: `switchboard_loop_iteration_seconds`.
    pub loop_time: Histogram,
    /// A message's arrival at this worker (the start of the loop turn that
    /// received it from its owner or Redis) to its frame queued on every
    /// local recipient: `switchboard_fanout_seconds`.
    pub fanout: Histogram,
    /// A connection's first queued frame to its last byte written, per
    /// backlog that drains: `switchboard_write_delay_seconds`.
    pub write_delay: Histogram,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl WorkerMetrics {
    /// All zero.
    pub fn new() -> Self {
        WorkerMetrics {
            received: Default::default(),
            delivered: Default::default(),
            bytes_in: Counter::default(),
            bytes_out: Counter::default(),
            errors: Default::default(),
            closes: Default::default(),
            rate_limited: Counter::default(),
            redis_reconnects: Counter::default(),
            tls_handshake_failures: Counter::default(),
            http: Default::default(),
            recoveries: Default::default(),
            replayed: Counter::default(),
            broker_rtt: Histogram::new(&BROKER_RTT_BOUNDS),
            loop_time: Histogram::new(&LOOP_TIME_BOUNDS),
            fanout: Histogram::new(&FANOUT_BOUNDS),
            write_delay: Histogram::new(&WRITE_DELAY_BOUNDS),
        }
    }

    /// One client request of type `t`.
    #[inline]
    pub fn received(&self, t: MsgType) {
        self.received[t as usize].add(1);
    }

    /// `n` frames of type `t` queued to clients: call once per fan-out with
    /// the recipient count, never once per recipient.
    #[inline]
    pub fn delivered(&self, t: DeliveredType, n: u64) {
        self.delivered[t as usize].add(n);
    }

    /// `n` bytes read from client sockets (WebSocket and HTTP).
    #[inline]
    pub fn bytes_in(&self, n: u64) {
        self.bytes_in.add(n);
    }

    /// `n` bytes written to client sockets (WebSocket and HTTP).
    #[inline]
    pub fn bytes_out(&self, n: u64) {
        self.bytes_out.add(n);
    }

    /// One `error` frame sent with `code` (a PROTOCOL.md §7 code; anything
    /// else counts as `other`).
    #[inline]
    pub fn error(&self, code: &str) {
        if let Some(c) = self.errors.get(error_index(code)) {
            c.add(1);
        }
    }

    /// One WebSocket closed with `code`: the code of the close the server
    /// decided or echoed, or 1006 for one that ended without a close
    /// handshake. Each WebSocket is counted once.
    #[inline]
    pub fn close(&self, code: u16) {
        self.closes[CloseKind::from_code(code) as usize].add(1);
    }

    /// Closes counted under `code`'s label so far.
    pub fn closes_of(&self, code: u16) -> u64 {
        self.closes[CloseKind::from_code(code) as usize].get()
    }

    /// One client request refused by the rate limiter.
    #[inline]
    pub fn rate_limited(&self) {
        self.rate_limited.add(1);
    }

    /// One reconnection to Redis.
    #[inline]
    pub fn redis_reconnect(&self) {
        self.redis_reconnects.add(1);
    }

    /// One client dropped in a failed TLS handshake (refused bytes, or
    /// the handshake timeout passed after it started).
    #[inline]
    pub fn tls_handshake_failed(&self) {
        self.tls_handshake_failures.add(1);
    }

    /// One HTTP request (a request head parsed) served by `route`.
    #[inline]
    pub fn http(&self, route: HttpRoute) {
        self.http[route as usize].add(1);
    }

    /// One history recovery on join (`since`): whether the gap was filled.
    #[inline]
    pub fn recovery(&self, recovered: bool) {
        self.recoveries[usize::from(!recovered)].add(1);
    }

    /// `n` history events replayed to a client.
    #[inline]
    pub fn replayed(&self, n: u64) {
        self.replayed.add(n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_workers_never_share_a_cache_line() {
        assert_eq!(std::mem::align_of::<WorkerMetrics>(), 128);
        assert_eq!(std::mem::size_of::<WorkerMetrics>() % 128, 0);
        let v: Vec<std::sync::Arc<WorkerMetrics>> = (0..4).map(|_| Default::default()).collect();
        for m in &v {
            assert_eq!(std::ptr::from_ref::<WorkerMetrics>(m) as usize % 128, 0);
        }
    }

    #[test]
    fn error_index_names_every_code_and_other() {
        for (i, code) in ERROR_CODES.iter().enumerate() {
            assert_eq!(error_index(code), i, "{code}");
        }
        assert_eq!(ERROR_CODES[error_index("too_large")], "other");
        assert_eq!(ERROR_CODES[error_index("")], "other");
        // Every code a client can receive has a label of its own.
        for code in crate::proto::ErrorCode::ALL {
            assert_eq!(ERROR_CODES[error_index(code.as_str())], code.as_str());
        }
    }

    #[test]
    fn close_kind_round_trips_its_label() {
        for k in CloseKind::ALL {
            if let Ok(code) = k.label().parse::<u16>() {
                assert_eq!(CloseKind::from_code(code), *k);
            } else {
                assert_eq!(*k, CloseKind::Other);
            }
        }
        assert_eq!(CloseKind::from_code(1011), CloseKind::Other);
    }

    #[test]
    fn variants_are_listed_in_discriminant_order() {
        // The counter arrays are indexed by `as usize` and rendered by `ALL`.
        assert!(MsgType::ALL
            .iter()
            .enumerate()
            .all(|(i, v)| *v as usize == i));
        assert!(DeliveredType::ALL
            .iter()
            .enumerate()
            .all(|(i, v)| *v as usize == i));
        assert!(CloseKind::ALL
            .iter()
            .enumerate()
            .all(|(i, v)| *v as usize == i));
        assert!(HttpRoute::ALL
            .iter()
            .enumerate()
            .all(|(i, v)| *v as usize == i));
    }

    #[test]
    fn counters_add_what_they_are_given() {
        let m = WorkerMetrics::new();
        m.received(MsgType::Ping);
        m.received(MsgType::Ping);
        m.delivered(DeliveredType::Presence, 10_000);
        m.error("forbidden");
        m.error("no_such_code");
        m.close(4008);
        m.close(3000);
        m.recovery(true);
        m.recovery(false);
        m.recovery(false);
        assert_eq!(m.received[MsgType::Ping as usize].get(), 2);
        assert_eq!(m.received[MsgType::Join as usize].get(), 0);
        assert_eq!(m.delivered[DeliveredType::Presence as usize].get(), 10_000);
        assert_eq!(m.errors[3].get(), 1);
        assert_eq!(m.errors[error_index("other")].get(), 1);
        assert_eq!(m.closes[CloseKind::SlowConsumer as usize].get(), 1);
        assert_eq!(m.closes[CloseKind::Other as usize].get(), 1);
        assert_eq!(m.recoveries[0].get(), 1);
        assert_eq!(m.recoveries[1].get(), 2);
    }
}
