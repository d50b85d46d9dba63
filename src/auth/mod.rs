//! JWT verification and channel permissions (PROTOCOL.md §6).
//!
//! A token is the JWS compact serialization of RFC 7515 §7.1: three
//! base64url segments without padding, `header.payload.signature`. It is
//! signed HS256 under `--hmac-secret`, or RS256/RS384/RS512, PS256,
//! ES256/ES384 or EdDSA under a public key from `--jwt-public-key` (PEM) or
//! `--jwks` (a key set, key chosen by `kid`).
//!
//! | module | owns |
//! | --- | --- |
//! | [`token`] | splitting a token, reading its header (`alg`, `kid`) |
//! | [`keys`] | keys and which algorithms each may verify |
//! | [`claims`] | every claim rule (`sub`, `exp`, `nbf`, `iss`, `aud`, `info`, `channels`) |
//! | [`jwks`] | key sets, their fetch thread and lock-free hand-over |
//! | [`session`] | a connection's expiry deadline and the `refresh` decision |
//!
//! [`verify`] is pure: the caller passes the keys, the rules and the
//! current Unix time. [`Authenticator`] is the shell a worker holds: the
//! configured sources, with the JWKS snapshot taken per call.
//!
//! # Why `jsonwebtoken` for signatures, and our own parsing
//!
//! RSA, RSA-PSS, ECDSA and Ed25519 verification, PEM and JWK key decoding
//! are work a well-kept crate does better than we would: `jsonwebtoken`
//! (over the RustCrypto `rsa`, `p256`, `p384` and `ed25519-dalek` crates,
//! no C) does exactly that. Its claim validation is not used: §6 fixes
//! rules a general JWT library decides for itself (which claim errors
//! exist, fractional `exp`, raw pass-through of `info`), so the token is
//! split, its header read and its claims checked here, and the library is
//! only asked "does this signature verify under this key with this
//! algorithm". HS256 stays on RustCrypto's `hmac` directly (constant-time
//! `verify_slice`).
//!
//! # Rules, in the order they are checked
//!
//! 1. At most [`MAX_TOKEN_BYTES`]; three non-empty canonical base64url
//!    segments; the header a JSON object without `crit`, its `kid` (if
//!    any) a string. Otherwise [`AuthError::Malformed`].
//! 2. `alg` is one of [`Alg`], else [`AuthError::WrongAlgorithm`] (`none`,
//!    `HS384`, a missing or non-string `alg`).
//! 3. A key that allows `alg` ([`keys`]) is found and the signature holds,
//!    else [`AuthError::WrongAlgorithm`] (no configured key allows it),
//!    [`AuthError::UnknownKid`] or [`AuthError::BadSignature`]. Claims are
//!    read only after this, so a forger learns nothing about them.
//! 4. Claims, see [`claims::check`].

pub mod claims;
pub mod jwks;
pub mod keys;
pub mod session;
pub mod token;

use std::sync::Arc;

use serde_json::value::RawValue;

pub use claims::{Rules, MAX_SUB_BYTES};
pub use jwks::{Jwks, JwksCell};
pub use keys::{HmacKey, KeyError, KeyType, PublicKey};
pub use token::{Alg, MAX_TOKEN_BYTES};

use crate::config::Config;

/// Who a verified token says the client is, and where it may go.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The `sub` claim: 1 to [`MAX_SUB_BYTES`] bytes of any characters.
    pub user: String,
    /// The `info` claim exactly as the token carried it (any JSON value other
    /// than `null`, which counts as absent), sent on presence and actions.
    pub info: Option<Box<RawValue>>,
    /// The `channels` claim: `None` when absent (every channel allowed).
    pub channels: Option<Vec<String>>,
    /// The `exp` claim in whole seconds since the epoch, rounded up; 0 for
    /// an identity without a token (authentication off).
    pub exp: u64,
}

#[cfg(test)]
impl Identity {
    /// Whether the token allows joining `channel` (§6); see
    /// [`channel_allowed`].
    pub fn may_join(&self, channel: &str) -> bool {
        channel_allowed(self.channels.as_deref(), channel)
    }
}

/// Whether a `channels` claim allows joining `channel` (§6).
///
/// An absent claim (`None`) allows every channel and an empty list allows
/// none. An entry ending in `*` allows every channel starting with the part
/// before the `*` (so `"*"` alone allows everything and `"doc:*"` allows
/// `doc:42`); any other entry must equal the channel. `*` is outside the
/// channel alphabet, so it cannot be meant literally.
///
/// The one place this rule lives: the session of an open connection keeps
/// the claim and asks here on every join and on every `refresh`.
pub fn channel_allowed(allowed: Option<&[String]>, channel: &str) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    allowed.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => entry == channel,
    })
}

/// Why a token was refused. Every variant answers HTTP 401 at the
/// handshake and `unauthorized` to a `refresh`; the variant is for logs
/// and metrics, and is never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Not three base64url segments of JSON objects, too long, a `crit`
    /// header, or a `kid` that is not a short string.
    Malformed,
    /// The header's `alg` is not one of §6's, or no configured key allows
    /// it (an HS256 token without `--hmac-secret`, an RS256 token against
    /// an EC key, `alg: none`).
    WrongAlgorithm,
    /// The token names a `kid` that no key set holds (and no other key
    /// verified it). Pokes the JWKS fetch thread.
    UnknownKid,
    /// The signature does not verify under any key allowed to check it.
    BadSignature,
    /// `exp` plus the leeway is not after now.
    Expired,
    /// `nbf` is more than the leeway in the future.
    NotYetValid,
    /// No `sub` claim.
    MissingSub,
    /// `sub` is not a string, is empty, or is over [`MAX_SUB_BYTES`].
    BadSub,
    /// No `exp` claim.
    MissingExp,
    /// `exp` is not a number.
    BadExp,
    /// `nbf` is present and not a number.
    BadNbf,
    /// `iss` is absent or differs from `--jwt-issuer`.
    WrongIssuer,
    /// `aud` is absent or does not contain `--jwt-audience`.
    WrongAudience,
    /// `channels` is present and not an array of strings (`null` included).
    BadChannels,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::Malformed => "malformed token",
            AuthError::WrongAlgorithm => "token algorithm is not allowed by any configured key",
            AuthError::UnknownKid => "token kid names no known key",
            AuthError::BadSignature => "bad token signature",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid (nbf)",
            AuthError::MissingSub => "token has no sub claim",
            AuthError::BadSub => "token sub is not a string of 1-256 bytes",
            AuthError::MissingExp => "token has no exp claim",
            AuthError::BadExp => "token exp is not a number",
            AuthError::BadNbf => "token nbf is not a number",
            AuthError::WrongIssuer => "token iss is not the required issuer",
            AuthError::WrongAudience => "token aud does not contain the required audience",
            AuthError::BadChannels => "token channels is not an array of strings",
        })
    }
}

impl std::error::Error for AuthError {}

/// The keys a token may be checked against, as one call sees them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Keys<'a> {
    pub hmac: Option<&'a HmacKey>,
    /// `--jwt-public-key`: no `kid`.
    pub pem: &'a [PublicKey],
    /// The current JWKS, when one is configured.
    pub jwks: Option<&'a Jwks>,
}

/// Verifies `token` against `keys` and `rules` at `now_unix_s` (§6); see
/// the module docs for the order of the checks.
///
/// # Choosing the key
///
/// The token's `alg` and `kid` choose; a key never verifies an algorithm
/// it does not allow ([`keys`]):
/// - `HS256`: the HMAC secret, `kid` ignored.
/// - another `alg` with a `kid`: the JWKS key of that `kid`, else the PEM
///   key. A JWKS key of that `kid` that does not allow `alg` is
///   [`AuthError::WrongAlgorithm`], not a reason to look further.
/// - another `alg` without a `kid`: the PEM key, and the JWKS keys that have
///   no `kid` themselves.
///
/// So a token costs at most a handful of signature checks, however large
/// the set.
pub fn verify(
    token: &str,
    keys: Keys<'_>,
    rules: &Rules,
    now_unix_s: u64,
) -> Result<Identity, AuthError> {
    let parsed = token::parse(token)?;
    check_signature(&parsed, keys)?;
    let payload = token::decode_segment(parsed.payload_b64)?;
    let claims: token::Members<'_> = token::parse_object(&payload)?;
    claims::check(&claims, rules, now_unix_s)
}

fn check_signature(t: &token::Parsed<'_>, keys: Keys<'_>) -> Result<(), AuthError> {
    if t.alg == Alg::HS256 {
        let key = keys.hmac.ok_or(AuthError::WrongAlgorithm)?;
        return if key.verify(t.signing_input, &t.signature) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        };
    }
    let jwks: &[PublicKey] = keys.jwks.map_or(&[], |j| &j.keys);
    let mut tried = false;
    let mut unknown_kid = false;
    let mut check = |key: &PublicKey| {
        tried = true;
        key.verify(t.alg, t.signing_input, t.signature_b64)
    };
    match &t.kid {
        Some(kid) => {
            if let Some(key) = jwks.iter().find(|k| k.kid.as_deref() == Some(kid)) {
                if !key.allows(t.alg) {
                    return Err(AuthError::WrongAlgorithm);
                }
                return if check(key) {
                    Ok(())
                } else {
                    Err(AuthError::BadSignature)
                };
            }
            unknown_kid = keys.jwks.is_some();
            for key in keys.pem.iter().filter(|k| k.allows(t.alg)) {
                if check(key) {
                    return Ok(());
                }
            }
        }
        None => {
            let candidates = keys
                .pem
                .iter()
                .chain(jwks.iter().filter(|k| k.kid.is_none()))
                .filter(|k| k.allows(t.alg));
            for key in candidates {
                if check(key) {
                    return Ok(());
                }
            }
        }
    }
    Err(if unknown_kid {
        AuthError::UnknownKid
    } else if tried {
        AuthError::BadSignature
    } else {
        AuthError::WrongAlgorithm
    })
}

/// Why authentication could not be set up at start.
#[derive(Debug)]
pub enum StartError {
    /// `--jwt-public-key` unreadable or not a usable key.
    PublicKey {
        path: std::path::PathBuf,
        why: String,
    },
    /// The first JWKS load failed and no other key source is configured.
    Jwks { source: String, why: String },
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::PublicKey { path, why } => {
                write!(f, "--jwt-public-key {}: {why}", path.display())
            }
            StartError::Jwks { source, why } => write!(
                f,
                "--jwks {source}: {why} (no other key source is configured, so the server cannot verify any token)"
            ),
        }
    }
}

impl std::error::Error for StartError {}

/// The configured key sources and rules, shared by every worker.
#[derive(Debug)]
pub struct Authenticator {
    hmac: Option<HmacKey>,
    pem: Vec<PublicKey>,
    jwks: Option<Arc<JwksCell>>,
    pub rules: Rules,
}

impl Authenticator {
    /// From the configuration: `None` when authentication is off. Reads the
    /// PEM file and loads the JWKS (starting its thread): IO, at start only.
    pub fn start(config: &Config) -> Result<Option<Authenticator>, StartError> {
        if !config.auth_on() {
            return Ok(None);
        }
        let hmac = config
            .hmac_secret
            .as_deref()
            .map(|s| HmacKey::new(s.as_bytes()));
        let mut pem = Vec::new();
        if let Some(path) = &config.jwt_public_key {
            let err = |why: String| StartError::PublicKey {
                path: path.clone(),
                why,
            };
            let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
            pem.push(PublicKey::from_pem(&bytes).map_err(|e| err(e.to_string()))?);
        }
        let jwks = match &config.jwks {
            None => None,
            Some(text) => {
                let first_required = hmac.is_none() && pem.is_empty();
                let cell =
                    jwks::start(jwks::Source::new(text), config.jwks_refresh, first_required)
                        .map_err(|e| StartError::Jwks {
                            source: text.clone(),
                            why: e.to_string(),
                        })?;
                Some(cell)
            }
        };
        Ok(Some(Authenticator {
            hmac,
            pem,
            jwks,
            rules: Rules {
                audience: config.jwt_audience.clone(),
                issuer: config.jwt_issuer.clone(),
                leeway_s: config.jwt_leeway_s,
            },
        }))
    }

    /// An authenticator over fixed keys (tests, benches).
    pub fn with_keys(hmac: Option<HmacKey>, pem: Vec<PublicKey>, rules: Rules) -> Authenticator {
        Authenticator {
            hmac,
            pem,
            jwks: None,
            rules,
        }
    }

    /// Verifies `token` at `now_unix_s` against every configured source.
    /// An unknown `kid` asks the JWKS thread for a (rate-limited) fetch.
    pub fn verify(&self, token: &str, now_unix_s: u64) -> Result<Identity, AuthError> {
        let snapshot = self.jwks.as_ref().map(|cell| cell.load());
        let keys = Keys {
            hmac: self.hmac.as_ref(),
            pem: &self.pem,
            jwks: snapshot.as_deref().map(|arc| &**arc),
        };
        let result = verify(token, keys, &self.rules, now_unix_s);
        if matches!(result, Err(AuthError::UnknownKid)) {
            if let Some(cell) = &self.jwks {
                cell.request_refetch();
            }
        }
        result
    }

    /// The JWKS cell, for `/metrics`.
    pub fn jwks(&self) -> Option<&JwksCell> {
        self.jwks.as_deref()
    }
}

/// The current Unix time in whole seconds (0 before 1970).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Compares two byte strings in time that depends on their lengths only, not
/// on where they differ (for the API key). A length mismatch returns at once:
/// the key's length is not treated as secret.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    // Keeps the optimizer from turning the fold into an early-exit compare.
    std::hint::black_box(diff) == 0
}

#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;
