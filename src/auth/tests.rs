//! Unit tests of token parsing, HS256 and the claim rules.
use super::*;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

const LEEWAY_S: u64 = 60;

/// HS256 verification under `secret` with the default rules.
fn verify_hs(token: &str, secret: &[u8], now: u64) -> Result<Identity, AuthError> {
    let key = HmacKey::new(secret);
    let keys = Keys {
        hmac: Some(&key),
        ..Keys::default()
    };
    let rules = Rules {
        leeway_s: LEEWAY_S,
        ..Rules::default()
    };
    verify(token, keys, &rules, now)
}

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
    verify_hs(&token(payload), SECRET, NOW)
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
            verify_hs(&t, SECRET, NOW).unwrap_err(),
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
    assert!(verify_hs(&t, SECRET, NOW).is_err());
}

#[test]
fn crit_header_is_refused() {
    let t = sign_raw(
        r#"{"alg":"HS256","crit":["b64"],"b64":false}"#,
        &claims(""),
        SECRET,
    );
    assert_eq!(
        verify_hs(&t, SECRET, NOW).unwrap_err(),
        AuthError::Malformed
    );
}

#[test]
fn bad_signatures_are_refused() {
    let t = token(&claims(""));
    assert_eq!(
        verify_hs(&t, b"other", NOW).unwrap_err(),
        AuthError::BadSignature
    );
    // Payload swapped under the original signature.
    let forged_payload = b64(format!(r#"{{"sub":"mallory","exp":{}}}"#, NOW + 3600).as_bytes());
    let mut parts: Vec<&str> = t.split('.').collect();
    parts[1] = &forged_payload;
    assert_eq!(
        verify_hs(&parts.join("."), SECRET, NOW).unwrap_err(),
        AuthError::BadSignature
    );
    // Truncated signature.
    let short = sign_raw(r#"{"alg":"HS256"}"#, &claims(""), SECRET);
    let cut = &short[..short.len() - 4];
    assert_eq!(
        verify_hs(cut, SECRET, NOW).unwrap_err(),
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
            verify_hs(t, SECRET, NOW).unwrap_err(),
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
        verify_hs(
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
        exp: 0,
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

fn rules(aud: Option<&str>, iss: Option<&str>, leeway_s: u64) -> Rules {
    Rules {
        audience: aud.map(str::to_owned),
        issuer: iss.map(str::to_owned),
        leeway_s,
    }
}

fn verify_rules(payload: &str, rules: &Rules, now: u64) -> Result<Identity, AuthError> {
    let key = HmacKey::new(SECRET);
    let keys = Keys {
        hmac: Some(&key),
        ..Keys::default()
    };
    verify(&token(payload), keys, rules, now)
}

#[test]
fn audience_string_or_list_must_contain_it() {
    let r = rules(Some("api"), None, 60);
    let ok = |extra: &str| verify_rules(&claims(extra), &r, NOW);
    assert!(ok(r#","aud":"api""#).is_ok());
    assert!(ok(r#","aud":["web","api"]"#).is_ok());
    for bad in [
        "",
        r#","aud":"web""#,
        r#","aud":[]"#,
        r#","aud":["Api"]"#,
        r#","aud":null"#,
        r#","aud":7"#,
        r#","aud":[["api"]]"#,
    ] {
        assert_eq!(ok(bad).unwrap_err(), AuthError::WrongAudience, "{bad}");
    }
    // Without the rule, aud is ignored whatever it is.
    assert!(verify_rules(&claims(r#","aud":7"#), &rules(None, None, 60), NOW).is_ok());
}

#[test]
fn issuer_must_equal_it() {
    let r = rules(None, Some("https://id/"), 60);
    let ok = |extra: &str| verify_rules(&claims(extra), &r, NOW);
    assert!(ok(r#","iss":"https://id/""#).is_ok());
    for bad in [
        "",
        r#","iss":"https://id""#,
        r#","iss":["https://id/"]"#,
        r#","iss":null"#,
    ] {
        assert_eq!(ok(bad).unwrap_err(), AuthError::WrongIssuer, "{bad}");
    }
}

#[test]
fn leeway_is_the_configured_one() {
    let p = format!(r#"{{"sub":"a","exp":{NOW}}}"#);
    assert!(verify_rules(&p, &rules(None, None, 0), NOW - 1).is_ok());
    assert_eq!(
        verify_rules(&p, &rules(None, None, 0), NOW).unwrap_err(),
        AuthError::Expired
    );
    assert!(verify_rules(&p, &rules(None, None, 5), NOW + 4).is_ok());
    let nbf = claims(&format!(r#","nbf":{}"#, NOW + 1));
    assert_eq!(
        verify_rules(&nbf, &rules(None, None, 0), NOW).unwrap_err(),
        AuthError::NotYetValid
    );
    assert!(verify_rules(&nbf, &rules(None, None, 1), NOW).is_ok());
}

#[test]
fn exp_is_kept_in_whole_seconds_rounded_up() {
    let r = rules(None, None, 60);
    let id = verify_rules(&format!(r#"{{"sub":"a","exp":{}}}"#, NOW + 10), &r, NOW).unwrap();
    assert_eq!(id.exp, NOW + 10);
    let id = verify_rules(&format!(r#"{{"sub":"a","exp":{}.25}}"#, NOW + 10), &r, NOW).unwrap();
    assert_eq!(id.exp, NOW + 11);
}

#[test]
fn public_key_algorithms_without_public_keys_are_wrong_algorithm() {
    // Only an HMAC key: every other alg finds no key, kid or not.
    for alg in ["RS256", "PS256", "ES256", "ES384", "EdDSA"] {
        for header in [
            format!(r#"{{"alg":"{alg}"}}"#),
            format!(r#"{{"alg":"{alg}","kid":"k"}}"#),
        ] {
            let t = sign_raw(&header, &claims(""), SECRET);
            assert_eq!(
                verify_hs(&t, SECRET, NOW).unwrap_err(),
                AuthError::WrongAlgorithm,
                "{header}"
            );
        }
    }
    // HS256 with no HMAC key at all.
    let t = token(&claims(""));
    let rules = rules(None, None, 60);
    assert_eq!(
        verify(&t, Keys::default(), &rules, NOW).unwrap_err(),
        AuthError::WrongAlgorithm
    );
}

#[test]
fn a_kid_that_is_not_a_short_string_is_malformed() {
    let long = "k".repeat(token::MAX_KID_BYTES + 1);
    for header in [
        r#"{"alg":"HS256","kid":7}"#.to_owned(),
        r#"{"alg":"HS256","kid":null}"#.to_owned(),
        format!(r#"{{"alg":"HS256","kid":"{long}"}}"#),
    ] {
        let t = sign_raw(&header, &claims(""), SECRET);
        assert_eq!(
            verify_hs(&t, SECRET, NOW).unwrap_err(),
            AuthError::Malformed
        );
    }
    // An HS256 token's kid is otherwise ignored.
    let t = sign_raw(r#"{"alg":"HS256","kid":"any"}"#, &claims(""), SECRET);
    assert!(verify_hs(&t, SECRET, NOW).is_ok());
}

#[test]
fn jwks_parse_skips_unusable_keys_and_refuses_an_empty_set() {
    let ed = r#"{"kty":"OKP","crv":"Ed25519","kid":"e","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}"#;
    let (set, skipped) = Jwks::parse(
        format!(
            r#"{{"keys":[{ed},{{"kty":"oct","k":"AA"}},{{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}},{{"kty":"OKP","crv":"Ed25519","x":"11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo","use":"enc"}},{{"nonsense":1}}]}}"#
        )
        .as_bytes(),
    )
    .unwrap();
    assert_eq!((set.keys.len(), skipped), (1, 4));
    assert_eq!(set.keys[0].kid.as_deref(), Some("e"));
    assert_eq!(set.keys[0].kind, KeyType::Ed25519);
    assert!(set.keys[0].allows(Alg::EdDSA) && !set.keys[0].allows(Alg::ES256));
    for bad in [
        r#"{"keys":[]}"#,
        r#"{"keys":[{"kty":"oct","k":"AA"}]}"#,
        "[]",
        "not json",
        r#"{"keys":{}}"#,
    ] {
        assert!(Jwks::parse(bad.as_bytes()).is_err(), "{bad}");
    }
    // An alg that does not fit the key type makes the key unusable.
    let mismatched = format!(
        r#"{{"keys":[{}]}}"#,
        ed.replace(r#""kid":"e""#, r#""kid":"e","alg":"RS256""#)
    );
    assert!(Jwks::parse(mismatched.as_bytes()).is_err());
}

#[test]
fn key_types_allow_their_algorithms_only() {
    use KeyType::*;
    let allowed = |k: KeyType| -> Vec<&str> {
        Alg::ALL
            .into_iter()
            .filter(|a| k.allows(*a))
            .map(Alg::name)
            .collect()
    };
    assert_eq!(allowed(Rsa), ["RS256", "RS384", "RS512", "PS256"]);
    assert_eq!(allowed(EcP256), ["ES256"]);
    assert_eq!(allowed(EcP384), ["ES384"]);
    assert_eq!(allowed(Ed25519), ["EdDSA"]);
    for name in ["none", "HS384", "PS384", "ES512", "hs256", "Ed25519"] {
        assert_eq!(Alg::from_name(name), None, "{name}");
    }
}
