//! HS256 JWT verification and channel permissions (PROTOCOL.md §6).
//!
//! A token is the JWS compact serialization of RFC 7515 §7.1: three base64url
//! segments without padding, `header.payload.signature`, signed with
//! HMAC-SHA-256 (RFC 7518 §3.2). This module is pure: the caller passes the
//! secret and the current Unix time, and gets an [`Identity`] or an
//! [`AuthError`] (every error answers HTTP 401 before the upgrade).
//!
//! # Why hand-rolled over `hmac` + `sha2` and not `jsonwebtoken`
//!
//! §6 fixes rules a general JWT library decides for itself: which claim
//! errors exist (`sub` not a string, `exp` not a number, `channels` not a list
//! of strings), a fractional `exp` (RFC 7519 §2 NumericDate allows it; the
//! library parses `exp` as an integer), raw pass-through of `info`, and the
//! algorithm list (no RSA/EC code is wanted in the binary at all). With
//! RustCrypto's `hmac` the cryptography stays in a well-kept crate, and the
//! MAC check is its constant-time `verify_slice`; what is left here is
//! parsing, which we want to own exactly.
//!
//! # Rules, in the order they are checked
//!
//! 1. At most [`MAX_TOKEN_BYTES`]; exactly three non-empty base64url segments
//!    (canonical, unpadded); header and payload are JSON objects; a `crit`
//!    header is refused (RFC 7515 §4.1.11: we understand no extension).
//!    Otherwise [`AuthError::Malformed`].
//! 2. Header `alg` is exactly `"HS256"`, else [`AuthError::WrongAlgorithm`]
//!    (`none`, `HS384`, `RS256`, a missing or non-string `alg`). `typ` is
//!    ignored.
//! 3. The signature is 32 bytes and the HMAC of `header.payload` under the
//!    secret, else [`AuthError::BadSignature`]. Claims are read only after
//!    this, so a forger learns nothing about them.
//! 4. Claims, see [`verify`].
//!
//! A claim given twice keeps its last value (allowed by RFC 7519 §4; the
//! token is signed, so only its issuer can do it).

use std::collections::BTreeMap;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::value::RawValue;
use sha2::Sha256;

/// Clock skew tolerated on `exp` and `nbf`, in seconds. §6 allows at most 60;
/// we take all of it because nodes and token issuers are often different
/// machines, and a minute is short next to usual token lifetimes.
pub const LEEWAY_S: u64 = 60;

/// Longest token accepted. It arrives in the request line's query string,
/// whose cap in the HTTP layer is the real limit; this one only bounds the
/// work done here should that cap grow.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest `sub` accepted, in bytes. Tokens are minted by a trusted backend
/// and `sub` is JSON-escaped wherever it is sent, so it need not follow the
/// `user` query parameter's alphabet (e-mail addresses, UUIDs and display
/// names all work); the cap only keeps every presence event small.
pub const MAX_SUB_BYTES: usize = 256;

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
}

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
/// the claim and asks here on every join.
pub fn channel_allowed(allowed: Option<&[String]>, channel: &str) -> bool {
    let Some(allowed) = allowed else {
        return true;
    };
    allowed.iter().any(|entry| match entry.strip_suffix('*') {
        Some(prefix) => channel.starts_with(prefix),
        None => entry == channel,
    })
}

/// Why a token was refused. Every variant answers HTTP 401; the variant is
/// for logs and metrics, and is never sent to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthError {
    /// Not three base64url segments of JSON objects, too long, or a `crit`
    /// header.
    Malformed,
    /// The header's `alg` is not `HS256`.
    WrongAlgorithm,
    /// The signature does not match the secret.
    BadSignature,
    /// `exp` plus [`LEEWAY_S`] is not after now.
    Expired,
    /// `nbf` is more than [`LEEWAY_S`] in the future.
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
    /// `channels` is present and not an array of strings (`null` included).
    BadChannels,
}

impl std::fmt::Display for AuthError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AuthError::Malformed => "malformed token",
            AuthError::WrongAlgorithm => "token algorithm is not HS256",
            AuthError::BadSignature => "bad token signature",
            AuthError::Expired => "token expired",
            AuthError::NotYetValid => "token not yet valid (nbf)",
            AuthError::MissingSub => "token has no sub claim",
            AuthError::BadSub => "token sub is not a string of 1-256 bytes",
            AuthError::MissingExp => "token has no exp claim",
            AuthError::BadExp => "token exp is not a number",
            AuthError::BadNbf => "token nbf is not a number",
            AuthError::BadChannels => "token channels is not an array of strings",
        })
    }
}

impl std::error::Error for AuthError {}

/// Members of a JSON object, values left unparsed so that each claim's type
/// error is ours to name, and `info` is kept byte for byte.
type Members<'a> = BTreeMap<String, &'a RawValue>;

/// Verifies `token` against `secret` at time `now_unix_s` (§6).
///
/// Claims, after the checks of the module docs:
/// - `sub`: required; a string of 1 to [`MAX_SUB_BYTES`] bytes.
/// - `exp`: required; a JSON number of seconds since the epoch, integer or
///   fractional (RFC 7519 NumericDate). The token is refused once
///   `now >= exp + LEEWAY_S`.
/// - `nbf`: optional; a number; refused while `now + LEEWAY_S < nbf`.
/// - `info`: optional; any JSON, kept raw; `null` counts as absent.
/// - `channels`: optional; an array of strings (see [`Identity::may_join`]).
/// - Anything else (`iat`, `iss`, `aud`, ...) is ignored.
pub fn verify(token: &str, secret: &[u8], now_unix_s: u64) -> Result<Identity, AuthError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(AuthError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed);
    };

    let header_json = decode_segment(header_b64)?;
    let header: Members<'_> = parse_object(&header_json)?;
    if header.contains_key("crit") {
        return Err(AuthError::Malformed);
    }
    let alg = header.get("alg").and_then(|raw| as_string(raw));
    if alg.as_deref() != Some("HS256") {
        return Err(AuthError::WrongAlgorithm);
    }

    let signature = decode_segment(signature_b64)?;
    // The signing input is the two segments as sent, dot included
    // (RFC 7515 §5.2 step 8); the header is the prefix of `token` up to the
    // second dot.
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(AuthError::Malformed)?;
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).map_err(|_| AuthError::BadSignature)?;
    mac.update(signing_input.as_bytes());
    mac.verify_slice(&signature)
        .map_err(|_| AuthError::BadSignature)?;

    let payload_json = decode_segment(payload_b64)?;
    let claims: Members<'_> = parse_object(&payload_json)?;
    check_claims(&claims, now_unix_s)
}

fn check_claims(claims: &Members<'_>, now: u64) -> Result<Identity, AuthError> {
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
    if exp.expired_at(now) {
        return Err(AuthError::Expired);
    }
    if let Some(raw) = claims.get("nbf") {
        let nbf = as_number(raw).ok_or(AuthError::BadNbf)?;
        if nbf.ahead_of(now) {
            return Err(AuthError::NotYetValid);
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
    })
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
    fn expired_at(self, now: u64) -> bool {
        match self {
            NumericDate::Whole(s) => now >= s.saturating_add(LEEWAY_S),
            // u64 -> f64 rounds above 2^53 s, some 285 million years away.
            NumericDate::Other(s) => now as f64 >= s + LEEWAY_S as f64,
        }
    }

    /// Whether an `nbf` of this value is still ahead of `now`, leeway
    /// included.
    fn ahead_of(self, now: u64) -> bool {
        match self {
            NumericDate::Whole(s) => now.saturating_add(LEEWAY_S) < s,
            NumericDate::Other(s) => (now as f64 + LEEWAY_S as f64) < s,
        }
    }
}

fn decode_segment(segment: &str) -> Result<Vec<u8>, AuthError> {
    if segment.is_empty() {
        return Err(AuthError::Malformed);
    }
    // BASE64URL_NOPAD refuses padding and non-canonical trailing bits, so a
    // token has exactly one spelling.
    data_encoding::BASE64URL_NOPAD
        .decode(segment.as_bytes())
        .map_err(|_| AuthError::Malformed)
}

fn parse_object(json: &[u8]) -> Result<Members<'_>, AuthError> {
    serde_json::from_slice(json).map_err(|_| AuthError::Malformed)
}

fn as_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}

fn as_number(raw: &RawValue) -> Option<NumericDate> {
    let n: serde_json::Number = serde_json::from_str(raw.get()).ok()?;
    match n.as_u64() {
        Some(s) => Some(NumericDate::Whole(s)),
        None => n.as_f64().map(NumericDate::Other),
    }
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
mod tests {
    use super::*;

    const SECRET: &[u8] = b"test-secret";
    const NOW: u64 = 1_700_000_000;

    fn b64(bytes: &[u8]) -> String {
        data_encoding::BASE64URL_NOPAD.encode(bytes)
    }

    fn sign_raw(header: &str, payload: &str, secret: &[u8]) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    }

    fn token(payload: &str) -> String {
        sign_raw(r#"{"alg":"HS256","typ":"JWT"}"#, payload, SECRET)
    }

    fn claims(extra: &str) -> String {
        format!(r#"{{"sub":"alice","exp":{}{extra}}}"#, NOW + 3600)
    }

    fn check(payload: &str) -> Result<Identity, AuthError> {
        verify(&token(payload), SECRET, NOW)
    }

    #[test]
    fn valid_token_gives_identity() {
        let id = check(&claims(
            r#","info":{"name":"Alice", "n":1.50},"channels":["doc:*"]"#,
        ))
        .unwrap();
        assert_eq!(id.user, "alice");
        // Raw: spacing and number spelling kept.
        assert_eq!(id.info.unwrap().get(), r#"{"name":"Alice", "n":1.50}"#);
        assert_eq!(id.channels, Some(vec!["doc:*".to_string()]));
    }

    #[test]
    fn optional_claims_absent() {
        let id = check(&claims("")).unwrap();
        assert!(id.info.is_none());
        assert!(id.channels.is_none());
    }

    #[test]
    fn info_null_counts_as_absent_and_other_values_are_kept() {
        assert!(check(&claims(r#","info":null"#)).unwrap().info.is_none());
        let id = check(&claims(r#","info":"x""#)).unwrap();
        assert_eq!(id.info.unwrap().get(), r#""x""#);
    }

    #[test]
    fn unknown_claims_are_ignored() {
        assert!(check(&claims(r#","iat":1,"iss":"me","aud":["a"]"#)).is_ok());
    }

    #[test]
    fn wrong_algorithms_are_refused() {
        for header in [
            r#"{"alg":"none"}"#,
            r#"{"alg":"HS384"}"#,
            r#"{"alg":"RS256"}"#,
            r#"{"alg":"hs256"}"#,
            r#"{"alg":256}"#,
            r#"{"typ":"JWT"}"#,
        ] {
            let t = sign_raw(header, &claims(""), SECRET);
            assert_eq!(
                verify(&t, SECRET, NOW).unwrap_err(),
                AuthError::WrongAlgorithm,
                "{header}"
            );
        }
    }

    #[test]
    fn alg_none_without_signature_is_refused() {
        let t = format!(
            "{}.{}.",
            b64(br#"{"alg":"none"}"#),
            b64(claims("").as_bytes())
        );
        assert!(verify(&t, SECRET, NOW).is_err());
    }

    #[test]
    fn crit_header_is_refused() {
        let t = sign_raw(
            r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
            &claims(""),
            SECRET,
        );
        assert_eq!(verify(&t, SECRET, NOW).unwrap_err(), AuthError::Malformed);
    }

    #[test]
    fn bad_signatures_are_refused() {
        let t = token(&claims(""));
        assert_eq!(
            verify(&t, b"other", NOW).unwrap_err(),
            AuthError::BadSignature
        );
        // Payload swapped under the original signature.
        let forged_payload = b64(format!(r#"{{"sub":"mallory","exp":{}}}"#, NOW + 3600).as_bytes());
        let mut parts: Vec<&str> = t.split('.').collect();
        parts[1] = &forged_payload;
        assert_eq!(
            verify(&parts.join("."), SECRET, NOW).unwrap_err(),
            AuthError::BadSignature
        );
        // Truncated signature.
        let short = sign_raw(r#"{"alg":"HS256"}"#, &claims(""), SECRET);
        let cut = &short[..short.len() - 4];
        assert_eq!(
            verify(cut, SECRET, NOW).unwrap_err(),
            AuthError::BadSignature
        );
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let good = token(&claims(""));
        let not_json = sign_raw(r#"{"alg":"HS256"}"#, "not json", SECRET);
        let array = sign_raw(r#"{"alg":"HS256"}"#, "[1]", SECRET);
        let header_array = sign_raw("[]", &claims(""), SECRET);
        let too_long = "a".repeat(MAX_TOKEN_BYTES + 1);
        let padded = format!("{good}=");
        let four = format!("{good}.x");
        for t in [
            "",
            "abc",
            "a.b",
            "..",
            four.as_str(),
            padded.as_str(),
            "!!!.abc.abc",
            not_json.as_str(),
            array.as_str(),
            header_array.as_str(),
            too_long.as_str(),
        ] {
            assert_eq!(
                verify(t, SECRET, NOW).unwrap_err(),
                AuthError::Malformed,
                "{t:.40}"
            );
        }
    }

    #[test]
    fn sub_rules() {
        let exp = NOW + 3600;
        let e = |p: String| check(&p).unwrap_err();
        assert_eq!(e(format!(r#"{{"exp":{exp}}}"#)), AuthError::MissingSub);
        assert_eq!(e(format!(r#"{{"sub":7,"exp":{exp}}}"#)), AuthError::BadSub);
        assert_eq!(
            e(format!(r#"{{"sub":null,"exp":{exp}}}"#)),
            AuthError::BadSub
        );
        assert_eq!(e(format!(r#"{{"sub":"","exp":{exp}}}"#)), AuthError::BadSub);
        let long = "x".repeat(MAX_SUB_BYTES + 1);
        assert_eq!(
            e(format!(r#"{{"sub":"{long}","exp":{exp}}}"#)),
            AuthError::BadSub
        );
        let max = "x".repeat(MAX_SUB_BYTES);
        let id = check(&format!(r#"{{"sub":"{max}","exp":{exp}}}"#)).unwrap();
        assert_eq!(id.user.len(), MAX_SUB_BYTES);
        // Any characters, escapes decoded.
        let id = check(&format!(r#"{{"sub":"Zoë \"Z\" <z@x>","exp":{exp}}}"#)).unwrap();
        assert_eq!(id.user, "Zoë \"Z\" <z@x>");
    }

    #[test]
    fn exp_rules() {
        let e = |p: &str| check(p).unwrap_err();
        assert_eq!(e(r#"{"sub":"a"}"#), AuthError::MissingExp);
        assert_eq!(e(r#"{"sub":"a","exp":"9999999999"}"#), AuthError::BadExp);
        assert_eq!(e(r#"{"sub":"a","exp":null}"#), AuthError::BadExp);
        assert_eq!(e(r#"{"sub":"a","exp":true}"#), AuthError::BadExp);
        assert_eq!(e(r#"{"sub":"a","exp":-5}"#), AuthError::Expired);
    }

    #[test]
    fn exp_leeway_boundary() {
        let at = |exp: &str, now: u64| {
            verify(
                &token(&format!(r#"{{"sub":"a","exp":{exp}}}"#)),
                SECRET,
                now,
            )
        };
        let exp = NOW.to_string();
        assert!(at(&exp, NOW + LEEWAY_S - 1).is_ok());
        assert_eq!(at(&exp, NOW + LEEWAY_S).unwrap_err(), AuthError::Expired);
        // Fractional NumericDate.
        let frac = format!("{NOW}.5");
        assert!(at(&frac, NOW + LEEWAY_S).is_ok());
        assert_eq!(
            at(&frac, NOW + LEEWAY_S + 1).unwrap_err(),
            AuthError::Expired
        );
        // Far future does not overflow.
        assert!(at(&u64::MAX.to_string(), NOW).is_ok());
        assert!(at("1e300", NOW).is_ok());
    }

    #[test]
    fn nbf_rules() {
        let p = |nbf: &str| claims(&format!(r#","nbf":{nbf}"#));
        assert!(check(&p(&(NOW + LEEWAY_S).to_string())).is_ok());
        assert_eq!(
            check(&p(&(NOW + LEEWAY_S + 1).to_string())).unwrap_err(),
            AuthError::NotYetValid
        );
        assert_eq!(check(&p(r#""soon""#)).unwrap_err(), AuthError::BadNbf);
        assert!(check(&p("0")).is_ok());
    }

    #[test]
    fn channels_rules() {
        let e = |c: &str| check(&claims(&format!(r#","channels":{c}"#))).unwrap_err();
        assert_eq!(e("null"), AuthError::BadChannels);
        assert_eq!(e(r#""doc:*""#), AuthError::BadChannels);
        assert_eq!(e(r#"["a",1]"#), AuthError::BadChannels);
        assert_eq!(e(r#"{"a":1}"#), AuthError::BadChannels);
        let id = check(&claims(r#","channels":[]"#)).unwrap();
        assert_eq!(id.channels, Some(vec![]));
    }

    #[test]
    fn duplicate_claim_keeps_last() {
        let id = check(&format!(r#"{{"sub":"a","sub":"b","exp":{}}}"#, NOW + 10)).unwrap();
        assert_eq!(id.user, "b");
    }

    fn identity(channels: Option<&[&str]>) -> Identity {
        Identity {
            user: "u".into(),
            info: None,
            channels: channels.map(|c| c.iter().map(|s| s.to_string()).collect()),
        }
    }

    #[test]
    fn may_join_absent_allows_all_and_empty_allows_none() {
        assert!(identity(None).may_join("doc:1"));
        assert!(!identity(Some(&[])).may_join("doc:1"));
    }

    #[test]
    fn may_join_exact_and_prefix() {
        let id = identity(Some(&["lobby", "doc:*", "team:a*"]));
        assert!(id.may_join("lobby"));
        assert!(!id.may_join("lobby2"));
        assert!(!id.may_join("lobb"));
        assert!(id.may_join("doc:42"));
        assert!(!id.may_join("doc"));
        assert!(!id.may_join("docs:1"));
        assert!(id.may_join("team:alpha"));
        assert!(!id.may_join("team:beta"));
        assert!(identity(Some(&["*"])).may_join("anything"));
    }

    #[test]
    fn constant_time_eq_compares() {
        assert!(constant_time_eq(b"", b""));
        assert!(constant_time_eq(b"key-1", b"key-1"));
        assert!(!constant_time_eq(b"key-1", b"key-2"));
        assert!(!constant_time_eq(b"xey-1", b"key-1"));
        assert!(!constant_time_eq(b"key", b"key-1"));
    }
}
