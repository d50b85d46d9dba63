//! Test keys and tokens for the public-key paths of PROTOCOL.md §6, made
//! at test time with the `openssl` command (RSA 2048, EC P-256/P-384,
//! Ed25519), and a small JWKS HTTP server that can rotate its keys and go
//! down.
//!
//! Tokens are signed by `openssl` itself, not by the crates the server
//! verifies with, so a bug in the server's verification cannot hide behind
//! the same bug in the tests' signer. Under `CI=true` a missing `openssl`
//! fails the test like any other error (the spawn panics).
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

pub fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Runs `openssl ARGS` with `stdin`, returns stdout; panics with stderr.
pub fn openssl(args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("openssl")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl (install it: apt-get install openssl): {e}")
        });
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(stdin)
        .expect("write to openssl");
    let out = child.wait_with_output().expect("openssl output");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Rsa,
    P256,
    P384,
    Ed25519,
}

/// A key pair in a directory of its own, removed on drop.
pub struct TestKey {
    pub kind: Kind,
    dir: PathBuf,
    pub private_pem: PathBuf,
    pub public_pem: PathBuf,
}

impl Drop for TestKey {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static SEQ: AtomicUsize = AtomicUsize::new(0);

/// A fresh private directory under the system's temp dir.
pub fn temp_dir(what: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "sb-{what}-{}-{}",
        std::process::id(),
        SEQ.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

impl TestKey {
    pub fn generate(kind: Kind) -> TestKey {
        let dir = temp_dir("key");
        let private_pem = dir.join("private.pem");
        let public_pem = dir.join("public.pem");
        let p = private_pem.to_str().expect("utf-8 path");
        let opts: &[&str] = match kind {
            Kind::Rsa => &["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"],
            Kind::P256 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
            Kind::P384 => &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"],
            Kind::Ed25519 => &["-algorithm", "ED25519"],
        };
        let mut args = vec!["genpkey"];
        args.extend_from_slice(opts);
        args.extend_from_slice(&["-out", p]);
        openssl(&args, b"");
        openssl(
            &[
                "pkey",
                "-in",
                p,
                "-pubout",
                "-out",
                public_pem.to_str().expect("utf-8 path"),
            ],
            b"",
        );
        TestKey {
            kind,
            dir,
            private_pem,
            public_pem,
        }
    }

    /// The public key, DER SubjectPublicKeyInfo.
    fn public_der(&self) -> Vec<u8> {
        openssl(
            &[
                "pkey",
                "-pubin",
                "-in",
                self.public_pem.to_str().expect("utf-8"),
                "-outform",
                "DER",
            ],
            b"",
        )
    }

    /// The public key's PEM bytes.
    pub fn public_pem_bytes(&self) -> Vec<u8> {
        std::fs::read(&self.public_pem).expect("public pem")
    }

    /// The public key as a JWK with `kid` (and `alg` when given).
    pub fn jwk(&self, kid: &str, alg: Option<&str>) -> Value {
        let der = self.public_der();
        let mut jwk = match self.kind {
            Kind::Rsa => {
                let text = String::from_utf8(openssl(
                    &[
                        "rsa",
                        "-pubin",
                        "-in",
                        self.public_pem.to_str().expect("utf-8"),
                        "-modulus",
                        "-noout",
                    ],
                    b"",
                ))
                .expect("utf-8");
                let hex = text.trim().strip_prefix("Modulus=").expect("Modulus=");
                let n = data_encoding::HEXUPPER
                    .decode(hex.to_ascii_uppercase().as_bytes())
                    .expect("hex modulus");
                // openssl's default public exponent is 65537.
                json!({"kty": "RSA", "n": b64(&n), "e": "AQAB"})
            }
            Kind::P256 | Kind::P384 => {
                let (crv, len) = if self.kind == Kind::P256 {
                    ("P-256", 32)
                } else {
                    ("P-384", 48)
                };
                // The SPKI ends with the uncompressed point 04 || x || y.
                let point = &der[der.len() - (1 + 2 * len)..];
                assert_eq!(point[0], 4, "uncompressed point");
                json!({"kty": "EC", "crv": crv, "x": b64(&point[1..1 + len]), "y": b64(&point[1 + len..])})
            }
            Kind::Ed25519 => {
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&der[der.len() - 32..])})
            }
        };
        jwk["kid"] = json!(kid);
        jwk["use"] = json!("sig");
        if let Some(alg) = alg {
            jwk["alg"] = json!(alg);
        }
        jwk
    }

    /// A token over `claims` with `header` exactly as given, signed by
    /// openssl with this key for `alg` (which must fit the key).
    pub fn sign_raw(&self, alg: &str, header: &str, claims: &str) -> String {
        let input = format!("{}.{}", b64(header.as_bytes()), b64(claims.as_bytes()));
        let sig = self.signature(alg, input.as_bytes());
        format!("{input}.{}", b64(&sig))
    }

    /// A token with header `{"alg":ALG,"typ":"JWT"[,"kid":KID]}`.
    pub fn sign(&self, alg: &str, kid: Option<&str>, claims: &Value) -> String {
        let mut header = json!({"alg": alg, "typ": "JWT"});
        if let Some(kid) = kid {
            header["kid"] = json!(kid);
        }
        self.sign_raw(alg, &header.to_string(), &claims.to_string())
    }

    /// The JWS signature bytes of `input` (RFC 7518 §3.3-3.5, RFC 8037).
    pub fn signature(&self, alg: &str, input: &[u8]) -> Vec<u8> {
        let key = self.private_pem.to_str().expect("utf-8");
        let digest = match alg {
            "RS256" | "PS256" | "ES256" => "-sha256",
            "RS384" | "ES384" => "-sha384",
            "RS512" => "-sha512",
            "EdDSA" => {
                let msg = self.dir.join("msg");
                std::fs::write(&msg, input).expect("write msg");
                return openssl(
                    &[
                        "pkeyutl",
                        "-sign",
                        "-inkey",
                        key,
                        "-rawin",
                        "-in",
                        msg.to_str().expect("utf-8"),
                    ],
                    b"",
                );
            }
            other => panic!("no openssl signer for {other}"),
        };
        let mut args = vec!["dgst", digest, "-sign", key, "-binary"];
        if alg == "PS256" {
            args.extend_from_slice(&[
                "-sigopt",
                "rsa_padding_mode:pss",
                "-sigopt",
                "rsa_pss_saltlen:32",
            ]);
        }
        let sig = openssl(&args, input);
        match alg {
            "ES256" => ecdsa_der_to_jose(&sig, 32),
            "ES384" => ecdsa_der_to_jose(&sig, 48),
            _ => sig,
        }
    }
}

/// ECDSA-Sig-Value (DER SEQUENCE of two INTEGERs) to the JOSE form, r and s
/// each left-padded to the field size (RFC 7518 §3.4).
fn ecdsa_der_to_jose(der: &[u8], size: usize) -> Vec<u8> {
    fn read_len(b: &[u8], i: &mut usize) -> usize {
        let first = b[*i];
        *i += 1;
        if first < 0x80 {
            return first as usize;
        }
        let n = (first & 0x7f) as usize;
        let mut len = 0;
        for _ in 0..n {
            len = (len << 8) | b[*i] as usize;
            *i += 1;
        }
        len
    }
    let mut i = 0;
    assert_eq!(der[i], 0x30, "SEQUENCE");
    i += 1;
    read_len(der, &mut i);
    let mut out = Vec::with_capacity(2 * size);
    for _ in 0..2 {
        assert_eq!(der[i], 0x02, "INTEGER");
        i += 1;
        let len = read_len(der, &mut i);
        let int = &der[i..i + len];
        i += len;
        let int = &int[int.len().saturating_sub(size)..];
        out.extend(std::iter::repeat_n(0u8, size - int.len()));
        out.extend_from_slice(int);
    }
    out
}

/// A JWKS served over plain HTTP on 127.0.0.1, one request per connection.
/// The set can be replaced (rotation) and the server taken "down" (every
/// connection is closed unanswered, as a crashed provider would).
pub struct JwksServer {
    pub addr: SocketAddr,
    state: Arc<(Mutex<ServerState>, Condvar)>,
    down: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

#[derive(Default)]
struct ServerState {
    body: String,
    /// Requests answered with the set.
    served: usize,
    /// Requests refused while down.
    refused: usize,
}

impl JwksServer {
    pub fn start(keys: &[Value]) -> JwksServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind jwks server");
        let addr = listener.local_addr().expect("local addr");
        let state = Arc::new((Mutex::new(ServerState::default()), Condvar::new()));
        let down = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let server = JwksServer {
            addr,
            state: state.clone(),
            down: down.clone(),
            stop: stop.clone(),
        };
        server.set_keys(keys);
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(mut stream) = stream else { continue };
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let mut buf = [0u8; 4096];
                let mut head = Vec::new();
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let (lock, cvar) = &*state;
                let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
                if down.load(Ordering::SeqCst) {
                    st.refused += 1;
                    cvar.notify_all();
                    continue; // dropped unanswered
                }
                let body = st.body.clone();
                st.served += 1;
                cvar.notify_all();
                drop(st);
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
            }
        });
        server
    }

    pub fn url(&self) -> String {
        format!("http://{}/.well-known/jwks.json", self.addr)
    }

    pub fn set_keys(&self, keys: &[Value]) {
        let (lock, _) = &*self.state;
        lock.lock().unwrap_or_else(|e| e.into_inner()).body = json!({ "keys": keys }).to_string();
    }

    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    /// Requests answered with the set so far.
    pub fn served(&self) -> usize {
        self.state
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .served
    }

    /// Waits until `served` reaches `n` (or `refused`, when `refused`);
    /// panics at `timeout`.
    pub fn wait_requests(&self, n: usize, refused: bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let (lock, cvar) = &*self.state;
        let mut st = lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let count = if refused { st.refused } else { st.served };
            if count >= n {
                return;
            }
            let now = Instant::now();
            assert!(
                now < deadline,
                "the JWKS server saw {count} {} requests, waited for {n}",
                if refused { "refused" } else { "served" }
            );
            st = cvar
                .wait_timeout(st, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so that it sees `stop`.
        let _ = std::net::TcpStream::connect(self.addr);
    }
}
