//! switchboard: a real-time channel server.
//!
//! The crate is split into pure protocol cores, which take bytes and return
//! values with no IO and no clock of their own, and the IO shell that moves
//! bytes between sockets and those cores:
//!
//! | module | kind | owns |
//! | --- | --- | --- |
//! | [`ws`] | pure | RFC 6455 frames: decode, reassemble, encode |
//! | [`http`] | pure | HTTP/1.1 request heads, the WebSocket upgrade, responses, the demo page |
//! | [`proto`] | pure | the JSON messages of PROTOCOL.md, channel names, error codes |
//! | [`resp`] | pure | RESP3 commands and replies for the Redis link |
//! | [`rng`] | pure | the one xorshift sequence: epochs, reconnect jitter |
//! | [`auth`] | pure + one thread | JWT verification (HS256, RS/PS/ES/EdDSA, JWKS by `kid`), claim rules, channel permissions; the JWKS fetch thread |
//! | [`config`] | pure | every setting, from flags, environment and TOML |
//! | [`registry`] | pure | which connections are in which channel |
//! | [`id`] | pure | one connection id, and its slab key, poll token and registry handle |
//! | [`conn`] | pure | parts of a connection's state: session, rate, replies, outbound queue |
//! | [`connection`] | pure | one client connection's state machine: HTTP, upgrade, WebSocket, close |
//! | [`tls`] | pure+IO | certificates and keys, SIGHUP reload, TLS sessions driven by the loops |
//! | [`socket`] | IO | a client's byte stream: TCP in clear or behind TLS, the seam the driver writes through |
//! | [`node`] | shared | what every worker reads and counts: config, drain, broker health, totals |
//! | [`worker`] | IO | the per-core mio loop: a thin driver of connections and owners |
//! | [`broker`] | IO | the embedded broker and the Redis link, the bounded queues between workers |
#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_debug_implementations, rust_2018_idioms)]

pub mod auth;
pub mod broker;
pub mod config;
pub mod conn;
pub mod connection;
pub mod http;
pub mod id;
pub mod metrics;
pub mod node;
pub mod proto;
pub mod registry;
pub mod resp;
pub mod rng;
pub mod server;
pub mod socket;
pub mod tls;
pub mod worker;
pub mod ws;
