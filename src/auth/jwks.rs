//! JSON Web Key Sets (RFC 7517 §5) from a file or an `http(s)://` URL, kept
//! fresh by a thread of their own (PROTOCOL.md §6, 1.1).
//!
//! # No lock on the message path
//!
//! The current set lives in an [`ArcSwap`]: a worker verifying a token
//! takes a lock-free snapshot (`load`), the fetch thread publishes a new
//! set with one atomic `store`, and a snapshot in use stays valid until
//! dropped. No fetch ever runs on a worker: a token naming an unknown `kid`
//! only pokes the fetch thread through a one-slot channel (`try_send`,
//! which never blocks) and is refused at once.
//!
//! # Fetch schedule
//!
//! At start (synchronously: the server does not start without a first good
//! set unless another key source is configured), then every
//! `--jwks-refresh-s`, and on a poke when the previous poke-caused fetch is
//! at least [`UNKNOWN_KID_INTERVAL`] old. A failed fetch keeps the last good
//! set, is logged, and is counted in `/metrics`.

use std::fmt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use jsonwebtoken::jwk::Jwk;

use super::keys::PublicKey;

/// Poke-caused fetches are at most this frequent, so that a stream of
/// tokens with made-up `kid`s cannot turn the server into a load generator
/// against the identity provider.
pub const UNKNOWN_KID_INTERVAL: Duration = Duration::from_secs(30);
/// Largest JWKS document read; real sets are a few KiB.
pub const MAX_JWKS_BYTES: u64 = 1024 * 1024;
/// Most keys kept from one set.
pub const MAX_KEYS: usize = 64;
/// One fetch, connect to last byte.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// A parsed key set. Keys the server cannot use (an `oct` key, another
/// curve, an encryption key) are skipped, not fatal: providers publish
/// them beside the signing keys.
#[derive(Debug, Default)]
pub struct Jwks {
    pub keys: Vec<PublicKey>,
}

impl Jwks {
    /// Parses a JWKS document. Fails when it is not a JSON object with a
    /// `keys` array, or when not one key in it is usable (a set that can
    /// verify nothing is a configuration mistake, and keeping the last good
    /// set is then the better answer).
    pub fn parse(json: &[u8]) -> Result<(Jwks, usize), JwksError> {
        #[derive(serde::Deserialize)]
        struct Doc {
            keys: Vec<serde_json::Value>,
        }
        let doc: Doc = serde_json::from_slice(json)
            .map_err(|e| JwksError::Parse(format!("not a JWKS ({{\"keys\":[...]}}): {e}")))?;
        let mut keys = Vec::new();
        let mut skipped = 0;
        for value in doc.keys {
            let key = serde_json::from_value::<Jwk>(value)
                .map_err(|e| e.to_string())
                .and_then(|jwk| PublicKey::from_jwk(&jwk).map_err(|e| e.to_string()));
            match key {
                Ok(key) if keys.len() < MAX_KEYS => keys.push(key),
                Ok(_) => skipped += 1,
                Err(why) => {
                    tracing::debug!(%why, "JWKS key skipped");
                    skipped += 1;
                }
            }
        }
        if keys.is_empty() {
            return Err(JwksError::Parse(format!(
                "no usable key ({skipped} skipped: only RSA, EC P-256/P-384 and Ed25519 signing keys are used)"
            )));
        }
        Ok((Jwks { keys }, skipped))
    }
}

/// Why a fetch failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwksError {
    /// The file could not be read.
    Read(String),
    /// The HTTP request failed (connect, TLS, status, size, timeout).
    Http(String),
    /// The document is not a usable JWKS.
    Parse(String),
}

impl fmt::Display for JwksError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JwksError::Read(why) => write!(f, "cannot read: {why}"),
            JwksError::Http(why) => write!(f, "fetch failed: {why}"),
            JwksError::Parse(why) => write!(f, "{why}"),
        }
    }
}

impl std::error::Error for JwksError {}

/// Where a set comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Url(String),
}

impl Source {
    /// `http://` and `https://` (any case) are URLs; anything else a path.
    pub fn new(text: &str) -> Source {
        let lower = text.to_ascii_lowercase();
        if lower.starts_with("http://") || lower.starts_with("https://") {
            Source::Url(text.to_owned())
        } else {
            Source::File(text.into())
        }
    }

    /// Reads or fetches the set, blocking up to [`FETCH_TIMEOUT`].
    pub fn load(&self, agent: &ureq::Agent) -> Result<(Jwks, usize), JwksError> {
        let bytes = match self {
            Source::File(path) => std::fs::read(path)
                .map_err(|e| JwksError::Read(format!("{}: {e}", path.display())))?,
            Source::Url(url) => agent
                .get(url)
                .header("Accept", "application/json")
                .call()
                .and_then(|mut resp| {
                    resp.body_mut()
                        .with_config()
                        .limit(MAX_JWKS_BYTES)
                        .read_to_vec()
                })
                .map_err(|e| JwksError::Http(e.to_string()))?,
        };
        Jwks::parse(&bytes)
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::File(p) => write!(f, "{}", p.display()),
            Source::Url(u) => f.write_str(u),
        }
    }
}

/// An agent for JWKS fetches: rustls with the webpki roots, a timeout on
/// the whole exchange, few redirects.
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(FETCH_TIMEOUT))
        .max_redirects(3)
        .user_agent(concat!("switchboard/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Fetch counters for `/metrics`; the fetch thread is their only writer.
#[derive(Debug, Default)]
pub struct JwksStats {
    pub fetches_ok: AtomicU64,
    pub fetches_failed: AtomicU64,
    /// Keys in the current set.
    pub keys: AtomicU64,
}

/// The current set, shared by the workers and the fetch thread.
#[derive(Debug)]
pub struct JwksCell {
    pub source: Source,
    current: ArcSwap<Jwks>,
    pub stats: JwksStats,
    /// One slot: a poke while one is pending is a no-op.
    poke: Sender<()>,
}

impl JwksCell {
    /// A lock-free snapshot of the current set.
    pub fn load(&self) -> arc_swap::Guard<Arc<Jwks>> {
        self.current.load()
    }

    /// Asks the fetch thread for a fetch (a token named an unknown `kid`).
    /// Never blocks; the thread decides whether the rate limit allows it.
    pub fn request_refetch(&self) {
        match self.poke.try_send(()) {
            Ok(()) | Err(TrySendError::Full(())) | Err(TrySendError::Disconnected(())) => {}
        }
    }

    /// The counters, for `/metrics`.
    pub fn gauges(&self) -> crate::metrics::JwksGauges {
        crate::metrics::JwksGauges {
            fetches_ok: self.stats.fetches_ok.load(Relaxed),
            fetches_failed: self.stats.fetches_failed.load(Relaxed),
            keys: self.stats.keys.load(Relaxed),
        }
    }

    fn publish(&self, jwks: Jwks) {
        self.stats.keys.store(jwks.keys.len() as u64, Relaxed);
        self.current.store(Arc::new(jwks));
    }
}

/// Loads the set once and, for a URL or a file alike, starts the thread
/// that keeps it fresh. `first_required`: the start fails when the first
/// load fails (no other key source is configured); otherwise the server
/// starts with an empty set and the thread keeps trying.
pub fn start(
    source: Source,
    refresh: Duration,
    first_required: bool,
) -> Result<Arc<JwksCell>, JwksError> {
    let agent = agent();
    let first = source.load(&agent);
    let (poke, pokes) = crossbeam_channel::bounded(1);
    let cell = Arc::new(JwksCell {
        source,
        current: ArcSwap::from_pointee(Jwks::default()),
        stats: JwksStats::default(),
        poke,
    });
    match first {
        Ok((jwks, skipped)) => {
            tracing::info!(source = %cell.source, keys = jwks.keys.len(), skipped, "JWKS loaded");
            cell.stats.fetches_ok.fetch_add(1, Relaxed);
            cell.publish(jwks);
        }
        Err(e) if first_required => return Err(e),
        Err(e) => {
            tracing::warn!(source = %cell.source, error = %e, "JWKS not loaded; other key sources in use, retrying");
            cell.stats.fetches_failed.fetch_add(1, Relaxed);
        }
    }
    let weak = Arc::downgrade(&cell);
    std::thread::Builder::new()
        .name("jwks".to_owned())
        .spawn(move || refresh_loop(weak, pokes, agent, refresh))
        .map_err(|e| JwksError::Read(format!("cannot start the JWKS thread: {e}")))?;
    Ok(cell)
}

/// The fetch thread: until the cell is dropped.
fn refresh_loop(
    cell: std::sync::Weak<JwksCell>,
    pokes: Receiver<()>,
    agent: ureq::Agent,
    refresh: Duration,
) {
    let mut next = Instant::now() + refresh;
    let mut last_poked: Option<Instant> = None;
    loop {
        let wait = next.saturating_duration_since(Instant::now());
        match pokes.recv_timeout(wait) {
            Ok(()) => {
                let now = Instant::now();
                if last_poked.is_some_and(|t| now.duration_since(t) < UNKNOWN_KID_INTERVAL) {
                    continue;
                }
                last_poked = Some(now);
            }
            Err(RecvTimeoutError::Timeout) => next = Instant::now() + refresh,
            Err(RecvTimeoutError::Disconnected) => return,
        }
        let Some(cell) = cell.upgrade() else { return };
        match cell.source.load(&agent) {
            Ok((jwks, skipped)) => {
                tracing::debug!(source = %cell.source, keys = jwks.keys.len(), skipped, "JWKS refreshed");
                cell.stats.fetches_ok.fetch_add(1, Relaxed);
                cell.publish(jwks);
            }
            Err(e) => {
                tracing::warn!(source = %cell.source, error = %e, "JWKS refresh failed; keeping the last good set");
                cell.stats.fetches_failed.fetch_add(1, Relaxed);
            }
        }
    }
}
