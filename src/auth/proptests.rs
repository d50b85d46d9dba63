//! Property tests of token parsing and verification (HS256, where the test
//! can sign): arbitrary text never panics and is never accepted; a token
//! signed over arbitrary claims is accepted exactly when the claim rules
//! say so; any one-character change to a valid token is refused.

use hmac::{Hmac, KeyInit, Mac};
use proptest::prelude::*;
use sha2::Sha256;

use super::*;

const SECRET: &[u8] = b"prop-secret";
const NOW: u64 = 1_700_000_000;

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

fn sign(header: &str, payload: &str) -> String {
    let input = format!("{}.{}", b64(header.as_bytes()), b64(payload.as_bytes()));
    let mut mac = Hmac::<Sha256>::new_from_slice(SECRET).unwrap();
    mac.update(input.as_bytes());
    format!("{input}.{}", b64(&mac.finalize().into_bytes()))
}

fn check(token: &str) -> Result<Identity, AuthError> {
    let key = HmacKey::new(SECRET);
    let keys = Keys {
        hmac: Some(&key),
        ..Keys::default()
    };
    let rules = Rules {
        audience: None,
        issuer: None,
        leeway_s: 60,
    };
    verify(token, keys, &rules, NOW)
}

proptest! {
    #[test]
    fn arbitrary_text_is_refused(s in ".{0,300}") {
        prop_assert!(check(&s).is_err());
    }

    #[test]
    fn arbitrary_segments_are_refused(a in "[A-Za-z0-9_-]{0,60}", b in "[A-Za-z0-9_-]{0,60}", c in "[A-Za-z0-9_-]{0,60}") {
        let token = format!("{a}.{b}.{c}");
        prop_assert!(check(&token).is_err());
    }

    #[test]
    fn signed_claims_follow_the_rules(
        sub in "[a-zA-Z0-9 @.]{0,300}",
        exp_offset in -200i64..200,
        nbf_offset in proptest::option::of(-200i64..200),
    ) {
        let exp = NOW as i64 + exp_offset;
        let mut payload = format!(r#"{{"sub":{},"exp":{exp}"#, serde_json::to_string(&sub).unwrap());
        if let Some(n) = nbf_offset {
            payload.push_str(&format!(r#","nbf":{}"#, NOW as i64 + n));
        }
        payload.push('}');
        let result = check(&sign(r#"{"alg":"HS256"}"#, &payload));
        let want_ok = !sub.is_empty()
            && sub.len() <= MAX_SUB_BYTES
            && (NOW as i64) < exp + 60
            && nbf_offset.is_none_or(|n| n <= 60);
        prop_assert_eq!(result.is_ok(), want_ok, "{} -> {:?}", payload, result);
        if let Ok(id) = result {
            prop_assert_eq!(id.user, sub);
            prop_assert_eq!(id.exp as i64, exp);
        }
    }

    #[test]
    fn any_one_character_change_is_refused(pos in 0usize..1000, with in "[A-Za-z0-9_.=-]") {
        let good = sign(r#"{"alg":"HS256"}"#, &format!(r#"{{"sub":"alice","exp":{}}}"#, NOW + 600));
        prop_assert!(check(&good).is_ok());
        let pos = pos % good.len();
        let mut bytes = good.clone().into_bytes();
        bytes[pos] = with.as_bytes()[0];
        let changed = String::from_utf8(bytes).unwrap();
        prop_assume!(changed != good);
        prop_assert!(check(&changed).is_err(), "{}", changed);
    }
}
