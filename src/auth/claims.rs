//! The claim rules of PROTOCOL.md §6, in one place for every key source and
//! for both the handshake and `refresh`.
//!
//! Checked only after the signature holds, in this order: `sub`, `exp`,
//! `nbf`, `iss`, `aud`, `info`, `channels`. A claim given twice keeps its
//! last value (RFC 7519 §4 leaves it to us; the token is signed, so only
//! its issuer can do it).

use serde_json::value::RawValue;

use super::token::{as_string, Members};
use super::{AuthError, Identity};

/// Longest `sub` accepted, in bytes. Tokens are minted by a trusted backend
/// and `sub` is JSON-escaped wherever it is sent, so it need not follow the
/// `user` query parameter's alphabet (e-mail addresses, UUIDs and display
/// names all work); the cap only keeps every presence event small.
pub const MAX_SUB_BYTES: usize = 256;

/// What the deployment requires of every token besides its signature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rules {
    /// `--jwt-audience`: `aud` (a string, or a list of strings) must
    /// contain it.
    pub audience: Option<String>,
    /// `--jwt-issuer`: `iss` must equal it.
    pub issuer: Option<String>,
    /// `--jwt-leeway-s`: clock skew tolerated on `exp` and `nbf`.
    pub leeway_s: u64,
}

/// Checks the claims of a verified token at `now` (Unix seconds).
///
/// - `sub`: required; a string of 1 to [`MAX_SUB_BYTES`] bytes.
/// - `exp`: required; a JSON number of seconds since the epoch, integer or
///   fractional (RFC 7519 NumericDate). Refused once `now >= exp + leeway`.
/// - `nbf`: optional; a number; refused while `now + leeway < nbf`.
/// - `iss`: with [`Rules::issuer`], required and equal to it.
/// - `aud`: with [`Rules::audience`], required: equal to it, or a list of
///   strings containing it (RFC 7519 §4.1.3).
/// - `info`: optional; any JSON, kept raw; `null` counts as absent.
/// - `channels`: optional; an array of strings (see [`channel_allowed`](super::channel_allowed)).
/// - Anything else (`iat`, `jti`, ...) is ignored, and so are `iss` and
///   `aud` when no rule asks for them.
pub(crate) fn check(claims: &Members<'_>, rules: &Rules, now: u64) -> Result<Identity, AuthError> {
    let user = match claims.get("sub") {
        None => return Err(AuthError::MissingSub),
        Some(raw) => as_string(raw).ok_or(AuthError::BadSub)?,
    };
    if user.is_empty() || user.len() > MAX_SUB_BYTES {
        return Err(AuthError::BadSub);
    }

    let exp = match claims.get("exp") {
        None => return Err(AuthError::MissingExp),
        Some(raw) => as_number(raw).ok_or(AuthError::BadExp)?,
    };
    if exp.expired_at(now, rules.leeway_s) {
        return Err(AuthError::Expired);
    }
    if let Some(raw) = claims.get("nbf") {
        let nbf = as_number(raw).ok_or(AuthError::BadNbf)?;
        if nbf.ahead_of(now, rules.leeway_s) {
            return Err(AuthError::NotYetValid);
        }
    }
    if let Some(want) = &rules.issuer {
        let iss = claims.get("iss").and_then(|raw| as_string(raw));
        if iss.as_deref() != Some(want.as_str()) {
            return Err(AuthError::WrongIssuer);
        }
    }
    if let Some(want) = &rules.audience {
        if !audience_contains(claims.get("aud").copied(), want) {
            return Err(AuthError::WrongAudience);
        }
    }

    let info = match claims.get("info") {
        Some(raw) if raw.get() != "null" => Some((*raw).to_owned()),
        _ => None,
    };
    let channels = match claims.get("channels") {
        None => None,
        Some(raw) => Some(
            serde_json::from_str::<Vec<String>>(raw.get()).map_err(|_| AuthError::BadChannels)?,
        ),
    };
    Ok(Identity {
        user,
        info,
        channels,
        exp: exp.whole_seconds_up(),
    })
}

/// `aud` is a string equal to `want`, or an array with a string equal to
/// it; anything else (absent, a number, a list of non-strings) is not.
fn audience_contains(aud: Option<&RawValue>, want: &str) -> bool {
    let Some(aud) = aud else { return false };
    if let Some(one) = as_string(aud) {
        return one == want;
    }
    serde_json::from_str::<Vec<serde_json::Value>>(aud.get())
        .is_ok_and(|list| list.iter().any(|v| v.as_str() == Some(want)))
}

/// A NumericDate (RFC 7519 §2): whole seconds compare exactly, anything
/// else (fractions, negatives) as `f64`.
#[derive(Debug, Clone, Copy)]
enum NumericDate {
    Whole(u64),
    Other(f64),
}

impl NumericDate {
    /// Whether an `exp` of this value has passed at `now`, leeway included.
    fn expired_at(self, now: u64, leeway: u64) -> bool {
        match self {
            NumericDate::Whole(s) => now >= s.saturating_add(leeway),
            // u64 -> f64 rounds above 2^53 s, some 285 million years away.
            NumericDate::Other(s) => now as f64 >= s + leeway as f64,
        }
    }

    /// Whether an `nbf` of this value is still ahead of `now`, leeway
    /// included.
    fn ahead_of(self, now: u64, leeway: u64) -> bool {
        match self {
            NumericDate::Whole(s) => now.saturating_add(leeway) < s,
            NumericDate::Other(s) => (now as f64 + leeway as f64) < s,
        }
    }

    /// The value in whole seconds, rounded up (a fraction of a second more
    /// life is harmless; less would close before the token expired).
    /// Negative is 0, and beyond `u64` saturates.
    fn whole_seconds_up(self) -> u64 {
        match self {
            NumericDate::Whole(s) => s,
            // `as` saturates (NaN cannot come out of JSON).
            NumericDate::Other(s) => s.ceil() as u64,
        }
    }
}

fn as_number(raw: &RawValue) -> Option<NumericDate> {
    let n: serde_json::Number = serde_json::from_str(raw.get()).ok()?;
    match n.as_u64() {
        Some(s) => Some(NumericDate::Whole(s)),
        None => n.as_f64().map(NumericDate::Other),
    }
}
