//! TLS for the listener (`https://`, `wss://`) and the Redis link
//! (`rediss://`), PROTOCOL.md §11, with rustls driven by the poll loops.
//!
//! - [`load`]: reading certificates and keys into rustls configurations,
//!   with errors that name the file and the reason;
//! - [`reload`]: the listener's configuration, shared by the workers and
//!   replaced on SIGHUP;
//! - [`session`]: one TLS session in front of a byte stream, without a
//!   socket of its own (the Redis link passes it in);
//! - [`unbuffered`]: the listener's session, on rustls' unbuffered API
//!   with buffers of our own that exist only while bytes are in flight, so
//!   an idle TLS connection holds none.
//!
//! No thread, no async runtime: sessions are read and written by the loop
//! that owns their socket, the same way as plain connections.
//!
//! # Crypto provider
//!
//! [`provider`] is the one place that picks it; see `docs/tls.md` for the
//! choice and its figures.

pub mod load;
pub mod reload;
pub mod session;
#[cfg(test)]
mod tests;
pub mod unbuffered;
#[cfg(test)]
mod unbuffered_tests;

use std::sync::Arc;

pub use load::LoadError;
pub use reload::ServerTls;
pub use session::TlsSession;
pub use unbuffered::ServerSession;

/// The crypto provider of every TLS configuration switchboard builds.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}
