//! Token parsing and the claim rules (`auth::verify`) on arbitrary text,
//! and `Jwks::parse` on arbitrary bytes: never panics; an accepted token
//! yields a `sub` within bounds and an `exp` not yet past; a set that
//! parses holds at least one key.
#![no_main]
use libfuzzer_sys::fuzz_target;
use switchboard::auth::{self, HmacKey, Jwks, Keys, Rules, MAX_SUB_BYTES};

const NOW: u64 = 1_700_000_000;

fuzz_target!(|data: &[u8]| {
    if let Ok((jwks, _)) = Jwks::parse(data) {
        assert!(!jwks.keys.is_empty());
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let key = HmacKey::new(b"fuzz-secret");
    let rules = Rules {
        audience: Some("api".into()),
        issuer: Some("iss".into()),
        leeway_s: 60,
    };
    let keys = Keys {
        hmac: Some(&key),
        ..Keys::default()
    };
    if let Ok(id) = auth::verify(text, keys, &rules, NOW) {
        assert!(!id.user.is_empty() && id.user.len() <= MAX_SUB_BYTES);
        // A date past u64 seconds saturates to u64::MAX (never expires).
        assert!(id.exp.saturating_add(60) > NOW);
    }
    // The same text as the claims of a token signed with the right key:
    // the claim rules run on fuzzed JSON.
    let b64 = |b: &[u8]| data_encoding::BASE64URL_NOPAD.encode(b);
    let input = format!("{}.{}", b64(br#"{"alg":"HS256"}"#), b64(data));
    let signed = format!("{input}.{}", b64(&hs256(b"fuzz-secret", input.as_bytes())));
    if let Ok(id) = auth::verify(&signed, keys, &rules, NOW) {
        assert!(text.contains("\"sub\""));
        // A date past u64 seconds saturates to u64::MAX (never expires).
        assert!(id.exp.saturating_add(60) > NOW);
    }
});

fn hs256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("any key length");
    mac.update(msg);
    mac.finalize().into_bytes().to_vec()
}
