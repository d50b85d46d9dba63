//! PROTOCOL.md §6 (1.1) against a running server: public-key tokens from
//! `--jwt-public-key` and `--jwks` (file and URL), the choice of key by
//! `alg` and `kid`, JWKS rotation and outages, `--jwt-audience` and
//! `--jwt-issuer`, and every refusal answering 401 before the upgrade.
//!
//! Keys are generated at test time by `openssl` (tests/keys), which also
//! signs the tokens.

mod common;
mod keys;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;
use keys::*;
use serde_json::{json, Value};

fn claims(sub: &str) -> Value {
    json!({"sub": sub, "exp": now() + 3600})
}

#[track_caller]
fn assert_401(addr: std::net::SocketAddr, token: &str) {
    let (mut raw, resp) = Raw::upgrade(addr, &format!("token={token}"));
    assert_eq!(resp.status, 401, "{token:.80}: {resp:?}");
    raw.expect_eof(TIMEOUT);
}

#[track_caller]
fn assert_user(s: &Server, token: &str, user: &str) {
    let c = s.connect(&format!("token={token}"));
    assert_eq!(c.user(), user, "{}", c.welcome);
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 path")
}

#[test]
fn every_algorithm_of_a_pem_key_connects() {
    let rsa = TestKey::generate(Kind::Rsa);
    let s = Server::start(&["--jwt-public-key", path(&rsa.public_pem)]);
    for alg in ["RS256", "RS384", "RS512", "PS256"] {
        assert_user(&s, &rsa.sign(alg, None, &claims(alg)), alg);
    }
    // A kid in the header does not matter when there is no JWKS.
    assert_user(&s, &rsa.sign("RS256", Some("any"), &claims("k")), "k");
    // The RSA key allows none of the others, whatever the signature.
    for alg in ["ES256", "EdDSA", "HS256", "PS384", "PS512", "RS1"] {
        let header = json!({"alg": alg}).to_string();
        let t = rsa.sign_raw("RS256", &header, &claims("x").to_string());
        assert_401(s.addr, &t);
    }

    for (kind, alg) in [
        (Kind::P256, "ES256"),
        (Kind::P384, "ES384"),
        (Kind::Ed25519, "EdDSA"),
    ] {
        let key = TestKey::generate(kind);
        let s = Server::start(&["--jwt-public-key", path(&key.public_pem)]);
        assert_user(&s, &key.sign(alg, None, &claims(alg)), alg);
        // An RS256 header over the same signature: refused by type.
        let header = json!({"alg": "RS256"}).to_string();
        assert_401(
            s.addr,
            &key.sign_raw(alg, &header, &claims("x").to_string()),
        );
    }
}

#[test]
fn a_jwks_file_picks_the_key_by_kid() {
    let (rsa, p256, p384, ed) = (
        TestKey::generate(Kind::Rsa),
        TestKey::generate(Kind::P256),
        TestKey::generate(Kind::P384),
        TestKey::generate(Kind::Ed25519),
    );
    let dir = temp_dir("jwks");
    let file = dir.join("jwks.json");
    let set = json!({"keys": [
        rsa.jwk("rsa-1", None),
        p256.jwk("ec-1", Some("ES256")),
        p384.jwk("ec-2", None),
        ed.jwk("ed-1", None),
        // Keys the server cannot use are skipped, not fatal.
        {"kty": "oct", "kid": "sym", "k": "c2VjcmV0"},
        {"kty": "EC", "crv": "P-521", "kid": "p521", "x": "AA", "y": "AA"},
    ]});
    std::fs::write(&file, set.to_string()).expect("write jwks");
    let s = Server::start(&["--jwks", path(&file)]);
    assert_user(&s, &rsa.sign("RS512", Some("rsa-1"), &claims("r")), "r");
    assert_user(&s, &rsa.sign("PS256", Some("rsa-1"), &claims("p")), "p");
    assert_user(&s, &p256.sign("ES256", Some("ec-1"), &claims("e1")), "e1");
    assert_user(&s, &p384.sign("ES384", Some("ec-2"), &claims("e2")), "e2");
    assert_user(&s, &ed.sign("EdDSA", Some("ed-1"), &claims("ed")), "ed");
    // Right key, wrong kid: the kid's key does not verify it.
    assert_401(s.addr, &p384.sign("ES384", Some("ec-1"), &claims("x")));
    // A kid no key has.
    assert_401(s.addr, &rsa.sign("RS256", Some("rsa-2"), &claims("x")));
    // No kid: a JWKS key is only used by kid.
    assert_401(s.addr, &rsa.sign("RS256", None, &claims("x")));
    // The `oct` key was not loaded: an HS256 token under its secret fails.
    let hs = {
        use hmac::{Hmac, KeyInit, Mac};
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","kid":"sym"}"#),
            b64(claims("x").to_string().as_bytes())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"secret").expect("key");
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    assert_401(s.addr, &hs);
    let _ = std::fs::remove_dir_all(dir);
}

/// Every refusal case of the issue, each a bare 401.
#[test]
fn refusals_are_401() {
    let rsa = TestKey::generate(Kind::Rsa);
    let other = TestKey::generate(Kind::Rsa);
    let s = Server::start(&[
        "--jwt-public-key",
        path(&rsa.public_pem),
        "--jwt-leeway-s",
        "5",
    ]);
    let t = now();
    let ok = rsa.sign("RS256", None, &json!({"sub": "ok", "exp": t + 600}));
    assert_user(&s, &ok, "ok");

    // Signed by another key.
    assert_401(s.addr, &other.sign("RS256", None, &claims("x")));
    // Expired beyond the leeway; within it still accepted.
    assert_401(
        s.addr,
        &rsa.sign("RS256", None, &json!({"sub": "x", "exp": t - 30})),
    );
    assert_user(
        &s,
        &rsa.sign("RS256", None, &json!({"sub": "in", "exp": t + 2})),
        "in",
    );
    // nbf in the future beyond the leeway; within it accepted.
    assert_401(
        s.addr,
        &rsa.sign(
            "RS256",
            None,
            &json!({"sub": "x", "exp": t + 600, "nbf": t + 60}),
        ),
    );
    assert_user(
        &s,
        &rsa.sign(
            "RS256",
            None,
            &json!({"sub": "nbf", "exp": t + 600, "nbf": t}),
        ),
        "nbf",
    );
    // alg none, with and without a signature segment.
    let none = format!(
        "{}.{}",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims("x").to_string().as_bytes())
    );
    assert_401(s.addr, &format!("{none}."));
    assert_401(s.addr, &format!("{none}.{}", b64(b"sig")));
    // The classic confusion: HS256 "signed" with the public key's PEM bytes
    // (and its DER bytes) as the HMAC secret.
    for secret in [rsa.public_pem_bytes(), openssl_der(&rsa)] {
        use hmac::{Hmac, KeyInit, Mac};
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","typ":"JWT"}"#),
            b64(claims("x").to_string().as_bytes())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&secret).expect("key");
        mac.update(input.as_bytes());
        let forged = format!("{input}.{}", b64(&mac.finalize().into_bytes()));
        assert_401(s.addr, &forged);
    }
    // A signature bit flipped.
    let mut parts: Vec<String> = ok.split('.').map(str::to_owned).collect();
    let mut sig = data_encoding::BASE64URL_NOPAD
        .decode(parts[2].as_bytes())
        .expect("b64");
    sig[10] ^= 1;
    parts[2] = b64(&sig);
    assert_401(s.addr, &parts.join("."));
}

fn openssl_der(key: &TestKey) -> Vec<u8> {
    openssl(
        &[
            "pkey",
            "-pubin",
            "-in",
            path(&key.public_pem),
            "-outform",
            "DER",
        ],
        b"",
    )
}

#[test]
fn audience_and_issuer() {
    let key = TestKey::generate(Kind::P256);
    let s = Server::start(&[
        "--jwt-public-key",
        path(&key.public_pem),
        "--jwt-audience",
        "api",
        "--jwt-issuer",
        "https://id.example.com/",
    ]);
    let exp = now() + 600;
    let iss = "https://id.example.com/";
    let tok = |c: Value| key.sign("ES256", None, &c);
    assert_user(
        &s,
        &tok(json!({"sub": "a", "exp": exp, "aud": "api", "iss": iss})),
        "a",
    );
    assert_user(
        &s,
        &tok(json!({"sub": "b", "exp": exp, "aud": ["web", "api"], "iss": iss})),
        "b",
    );
    for c in [
        json!({"sub": "x", "exp": exp, "aud": "web", "iss": iss}),
        json!({"sub": "x", "exp": exp, "aud": ["web"], "iss": iss}),
        json!({"sub": "x", "exp": exp, "aud": [], "iss": iss}),
        json!({"sub": "x", "exp": exp, "iss": iss}),
        json!({"sub": "x", "exp": exp, "aud": "API", "iss": iss}),
        json!({"sub": "x", "exp": exp, "aud": "api", "iss": "https://id.example.com"}),
        json!({"sub": "x", "exp": exp, "aud": "api"}),
        json!({"sub": "x", "exp": exp, "aud": "api", "iss": [iss]}),
    ] {
        assert_401(s.addr, &tok(c));
    }
}

#[test]
fn several_sources_together() {
    let rsa = TestKey::generate(Kind::Rsa);
    let ed = TestKey::generate(Kind::Ed25519);
    let jwks = JwksServer::start(&[ed.jwk("ed", None)]);
    let s = Server::start(&[
        "--hmac-secret",
        "s3cret",
        "--jwt-public-key",
        path(&rsa.public_pem),
        "--jwks",
        &jwks.url(),
    ]);
    assert_user(&s, &rsa.sign("RS256", None, &claims("pem")), "pem");
    assert_user(&s, &ed.sign("EdDSA", Some("ed"), &claims("jwks")), "jwks");
    // A kid the set lacks falls back to the PEM key.
    assert_user(&s, &rsa.sign("RS256", Some("zz"), &claims("fb")), "fb");
    let hs = {
        use hmac::{Hmac, KeyInit, Mac};
        let input = format!(
            "{}.{}",
            b64(br#"{"alg":"HS256","kid":"ed"}"#),
            b64(claims("hs").to_string().as_bytes())
        );
        let mut mac = Hmac::<sha2::Sha256>::new_from_slice(b"s3cret").expect("key");
        mac.update(input.as_bytes());
        format!("{input}.{}", b64(&mac.finalize().into_bytes()))
    };
    assert_user(&s, &hs, "hs");
    // EdDSA without the kid: the set's keys are found by kid only.
    assert_401(s.addr, &ed.sign("EdDSA", None, &claims("x")));
}

/// The set at the URL rotates (old kid removed, new one added): the server
/// follows on its refresh without a restart.
#[test]
fn jwks_url_rotation_is_followed() {
    let k1 = TestKey::generate(Kind::P256);
    let k2 = TestKey::generate(Kind::Rsa);
    let jwks = JwksServer::start(&[k1.jwk("k1", None)]);
    let s = Server::start(&["--jwks", &jwks.url(), "--jwks-refresh-s", "1"]);
    assert_user(&s, &k1.sign("ES256", Some("k1"), &claims("one")), "one");
    jwks.set_keys(&[k2.jwk("k2", Some("RS256"))]);
    let seen = jwks.served();
    // The next periodic fetch gets the new set.
    jwks.wait_requests(seen + 1, false, Duration::from_secs(5));
    let t2 = k2.sign("RS256", Some("k2"), &claims("two"));
    // The fetch that was answered may still be being parsed: retry briefly.
    wait_until_accepted(&s, &t2, "two");
    assert_401(s.addr, &k1.sign("ES256", Some("k1"), &claims("one")));
    // The JWK's alg pins the key to RS256.
    assert_401(s.addr, &k2.sign("PS256", Some("k2"), &claims("x")));
}

/// Connects with `token` until accepted (for up to 5 s: the server applies
/// a fetched set a moment after the fetch is answered).
fn wait_until_accepted(s: &Server, token: &str, user: &str) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let (_raw, resp) = Raw::upgrade(s.addr, &format!("token={token}"));
        if resp.status == 101 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "token never accepted: {resp:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_user(s, token, user);
}

/// An unknown kid is refused at once and makes the server fetch the set
/// again, at most once per 30 s.
#[test]
fn unknown_kid_triggers_one_rate_limited_fetch() {
    let k1 = TestKey::generate(Kind::Ed25519);
    let k2 = TestKey::generate(Kind::Ed25519);
    let jwks = JwksServer::start(&[k1.jwk("k1", None)]);
    let s = Server::start(&["--jwks", &jwks.url()]);
    assert_eq!(jwks.served(), 1, "one fetch at start");
    jwks.set_keys(&[k1.jwk("k1", None), k2.jwk("k2", None)]);
    let t2 = k2.sign("EdDSA", Some("k2"), &claims("two"));
    assert_401(s.addr, &t2);
    jwks.wait_requests(2, false, TIMEOUT);
    wait_until_accepted(&s, &t2, "two");
    // Another unknown kid within 30 s: refused, and no fetch.
    let k3 = TestKey::generate(Kind::Ed25519);
    jwks.set_keys(&[k3.jwk("k3", None)]);
    for _ in 0..3 {
        assert_401(s.addr, &k3.sign("EdDSA", Some("k3"), &claims("x")));
    }
    std::thread::sleep(SILENCE * 2);
    assert_eq!(jwks.served(), 2, "a second unknown kid within 30 s fetched");
}

/// The JWKS server going down at refresh time keeps the last good set, and
/// the failures are counted in /metrics.
#[test]
fn jwks_down_keeps_the_last_set() {
    let key = TestKey::generate(Kind::P256);
    let jwks = JwksServer::start(&[key.jwk("k", None)]);
    let s = Server::start(&["--jwks", &jwks.url(), "--jwks-refresh-s", "1"]);
    let tok = key.sign("ES256", Some("k"), &claims("still"));
    assert_user(&s, &tok, "still");
    jwks.set_down(true);
    jwks.wait_requests(2, true, Duration::from_secs(5));
    assert_user(&s, &tok, "still");
    // The JWKS server counts a request when it arrives; the fetcher counts the
    // failure only once it has read the refusal, a moment later. A counter has
    // no event to wait on, so scrape until it shows both, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let metrics = loop {
        let metrics = s.http_get("/metrics").body_text();
        let failed = metrics
            .lines()
            .find_map(|l| l.strip_prefix(r#"switchboard_jwks_fetches_total{result="error"} "#))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        if failed >= 2 {
            break metrics;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{failed} JWKS failures counted after 5 s:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(metrics.contains("switchboard_jwks_keys 1\n"), "{metrics}");
    // Back up: refreshes succeed again.
    jwks.set_down(false);
    let seen = jwks.served();
    jwks.wait_requests(seen + 1, false, Duration::from_secs(5));
    assert_user(&s, &tok, "still");
}

fn start_fails(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["--listen", "127.0.0.1:0", "--threads", "1"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("run switchboard");
    assert!(!out.status.success(), "started: {args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn start_fails_clearly_without_a_usable_key() {
    // Nothing listens on port 1.
    let err = start_fails(&["--jwks", "http://127.0.0.1:1/jwks.json"]);
    assert!(
        err.contains("--jwks http://127.0.0.1:1/jwks.json") && err.contains("no other key source"),
        "{err}"
    );
    let err = start_fails(&["--jwks", "/nonexistent/jwks.json"]);
    assert!(err.contains("/nonexistent/jwks.json"), "{err}");
    let err = start_fails(&["--jwt-public-key", "/nonexistent/key.pem"]);
    assert!(
        err.contains("--jwt-public-key /nonexistent/key.pem"),
        "{err}"
    );
    let dir = temp_dir("badpem");
    let bad = dir.join("bad.pem");
    std::fs::write(
        &bad,
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
    )
    .expect("write");
    let err = start_fails(&["--jwt-public-key", path(&bad)]);
    assert!(err.contains("bad.pem"), "{err}");
    let _ = std::fs::remove_dir_all(dir);

    // With another source the server starts, and keeps trying the set.
    let s = Server::start(&[
        "--hmac-secret",
        "x",
        "--jwks",
        "http://127.0.0.1:1/jwks.json",
    ]);
    assert_eq!(s.http_get("/healthz").status, 200);
}

/// A JWKS over HTTPS goes through rustls with certificate verification on:
/// a server with a self-signed certificate (here `openssl s_server`) is
/// refused, and with no other key source the start fails saying so.
#[test]
fn https_jwks_verifies_the_certificate() {
    let dir = temp_dir("tls");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            path(&key),
            "-out",
            path(&cert),
        ],
        b"",
    );
    let jwk = TestKey::generate(Kind::Ed25519).jwk("k", None);
    std::fs::write(dir.join("jwks.json"), json!({ "keys": [jwk] }).to_string()).expect("write");
    // A free port: bind, note, release (s_server binds it right after).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut server = Command::new("openssl")
        .args(["s_server", "-quiet", "-WWW", "-cert"])
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .args(["-accept", &format!("127.0.0.1:{port}")])
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("openssl s_server");
    let deadline = std::time::Instant::now() + TIMEOUT;
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "s_server never listened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let url = format!("https://127.0.0.1:{port}/jwks.json");
    let err = start_fails(&["--jwks", &url]);
    let _ = server.kill();
    let _ = server.wait();
    let _ = std::fs::remove_dir_all(dir);
    assert!(
        err.contains(&url) && err.contains("certificate"),
        "not refused for its certificate: {err}"
    );
}
