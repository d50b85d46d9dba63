//! The JWS compact serialization (RFC 7515 §7.1) taken apart, before any key
//! is involved: three canonical base64url segments, a JSON object header
//! with a known `alg` and an optional `kid`, and no `crit`.
//!
//! Pure and allocation-bounded: [`MAX_TOKEN_BYTES`] caps the work. Nothing
//! here trusts the payload; it is decoded only after the signature holds.

use std::collections::BTreeMap;

use serde_json::value::RawValue;

use super::AuthError;

/// Longest token accepted. It arrives in the request line's query string
/// (or a `refresh` message), whose caps are the real limits; this one only
/// bounds the work done here should those caps grow.
pub const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// Longest `kid` kept: key ids are short names or thumbprints.
pub const MAX_KID_BYTES: usize = 256;

/// Members of a JSON object, values left unparsed so that each claim's type
/// error is ours to name, and `info` is kept byte for byte.
pub(crate) type Members<'a> = BTreeMap<String, &'a RawValue>;

/// The signature algorithms of PROTOCOL.md §6. Anything else a header may
/// name (`none`, `HS384`, `PS512`, `ES512`, a typo) is refused before a key
/// is looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alg {
    HS256,
    RS256,
    RS384,
    RS512,
    PS256,
    ES256,
    ES384,
    EdDSA,
}

impl Alg {
    /// Every algorithm, for tests and docs.
    pub const ALL: [Alg; 8] = [
        Alg::HS256,
        Alg::RS256,
        Alg::RS384,
        Alg::RS512,
        Alg::PS256,
        Alg::ES256,
        Alg::ES384,
        Alg::EdDSA,
    ];

    /// The header value, exactly (RFC 7518 §3.1; RFC 8037 §3.1 for EdDSA).
    pub fn name(self) -> &'static str {
        match self {
            Alg::HS256 => "HS256",
            Alg::RS256 => "RS256",
            Alg::RS384 => "RS384",
            Alg::RS512 => "RS512",
            Alg::PS256 => "PS256",
            Alg::ES256 => "ES256",
            Alg::ES384 => "ES384",
            Alg::EdDSA => "EdDSA",
        }
    }

    /// The algorithm a header names; case matters (RFC 7515 §4.1.1).
    pub fn from_name(name: &str) -> Option<Alg> {
        Alg::ALL.into_iter().find(|a| a.name() == name)
    }
}

/// A token split and its header read; the payload is still encoded.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub alg: Alg,
    pub kid: Option<String>,
    /// `header.payload` as sent, the JWS signing input (RFC 7515 §5.2).
    pub signing_input: &'a str,
    pub signature_b64: &'a str,
    pub signature: Vec<u8>,
    pub payload_b64: &'a str,
}

/// Splits `token` and reads its header. Refusals, in order:
/// over [`MAX_TOKEN_BYTES`], not three non-empty canonical base64url
/// segments, a header that is not a JSON object, or has `crit`, or a `kid`
/// that is not a string of at most [`MAX_KID_BYTES`]:
/// [`AuthError::Malformed`]; an `alg` that is missing, not a string or not
/// one of [`Alg`]: [`AuthError::WrongAlgorithm`].
pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, AuthError> {
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
    // RFC 7515 §4.1.11: we understand no extension, so none may be critical.
    if header.contains_key("crit") {
        return Err(AuthError::Malformed);
    }
    let kid = match header.get("kid") {
        None => None,
        Some(raw) => match as_string(raw) {
            Some(kid) if kid.len() <= MAX_KID_BYTES => Some(kid),
            _ => return Err(AuthError::Malformed),
        },
    };
    let alg = header
        .get("alg")
        .and_then(|raw| as_string(raw))
        .and_then(|name| Alg::from_name(&name))
        .ok_or(AuthError::WrongAlgorithm)?;
    let signature = decode_segment(signature_b64)?;
    // The header is the prefix of `token` up to the second dot.
    let signing_input = token
        .get(..header_b64.len() + 1 + payload_b64.len())
        .ok_or(AuthError::Malformed)?;
    Ok(Parsed {
        alg,
        kid,
        signing_input,
        signature_b64,
        signature,
        payload_b64,
    })
}

pub(crate) fn decode_segment(segment: &str) -> Result<Vec<u8>, AuthError> {
    if segment.is_empty() {
        return Err(AuthError::Malformed);
    }
    // BASE64URL_NOPAD refuses padding and non-canonical trailing bits, so a
    // token has exactly one spelling.
    data_encoding::BASE64URL_NOPAD
        .decode(segment.as_bytes())
        .map_err(|_| AuthError::Malformed)
}

pub(crate) fn parse_object(json: &[u8]) -> Result<Members<'_>, AuthError> {
    serde_json::from_slice(json).map_err(|_| AuthError::Malformed)
}

pub(crate) fn as_string(raw: &RawValue) -> Option<String> {
    serde_json::from_str::<String>(raw.get()).ok()
}
