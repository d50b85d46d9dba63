//! Verification keys and the rule that makes algorithm confusion impossible
//! by construction: **the key decides which algorithms it verifies**, never
//! the token. An HMAC secret verifies HS256 only; a public key verifies
//! only the algorithms of its type (RSA: RS256/RS384/RS512/PS256, EC P-256:
//! ES256, EC P-384: ES384, Ed25519: EdDSA), and a JWK that names an `alg`
//! only that one. So an HS256 token "signed" with a public key's bytes
//! never meets an HMAC check, and `alg: none` meets no key at all.
//!
//! The signature mathematics is `jsonwebtoken`'s (over the RustCrypto
//! crates); this module only decides which key, if any, may be asked.

use std::fmt;

use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};
use sha2::Sha256;

use super::token::Alg;

/// What a public key is, which fixes the algorithms it may verify.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    Rsa,
    EcP256,
    EcP384,
    Ed25519,
}

impl KeyType {
    /// The algorithms of PROTOCOL.md §6 this type of key verifies.
    pub fn allows(self, alg: Alg) -> bool {
        matches!(
            (self, alg),
            (
                KeyType::Rsa,
                Alg::RS256 | Alg::RS384 | Alg::RS512 | Alg::PS256
            ) | (KeyType::EcP256, Alg::ES256)
                | (KeyType::EcP384, Alg::ES384)
                | (KeyType::Ed25519, Alg::EdDSA)
        )
    }
}

/// Why a key was not loaded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyError {
    /// Not a PEM public key of a supported type.
    Pem(String),
    /// A JWK this server cannot use (a symmetric `oct` key, another curve,
    /// an encryption key, bad members).
    Jwk(String),
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Pem(why) => write!(f, "not a usable PEM public key: {why}"),
            KeyError::Jwk(why) => write!(f, "unusable JWK: {why}"),
        }
    }
}

impl std::error::Error for KeyError {}

/// A public key with what it may verify.
#[derive(Clone)]
pub struct PublicKey {
    pub kind: KeyType,
    /// The JWK's `kid`; `None` for a PEM key.
    pub kid: Option<String>,
    /// A JWK's `alg`: when present the key verifies that algorithm only
    /// (RFC 7517 §4.4).
    pub only: Option<Alg>,
    key: DecodingKey,
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PublicKey")
            .field("kind", &self.kind)
            .field("kid", &self.kid)
            .field("only", &self.only)
            .finish_non_exhaustive()
    }
}

impl PublicKey {
    /// Reads a PEM public key: `PUBLIC KEY` (SPKI) of RSA, EC P-256/P-384
    /// or Ed25519, or `RSA PUBLIC KEY` (PKCS#1).
    pub fn from_pem(pem: &[u8]) -> Result<PublicKey, KeyError> {
        let (kind, key) = if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
            (KeyType::Rsa, key)
        } else if let Ok(key) = DecodingKey::from_ed_pem(pem) {
            (KeyType::Ed25519, key)
        } else {
            match DecodingKey::from_ec_pem(pem) {
                Ok(key) => (ec_curve(key.as_bytes())?, key),
                Err(e) => {
                    return Err(KeyError::Pem(format!(
                        "{e} (expected an RSA, EC P-256/P-384 or Ed25519 public key)"
                    )))
                }
            }
        };
        Ok(PublicKey {
            kind,
            kid: None,
            only: None,
            key,
        })
    }

    /// Reads one key of a JWKS (RFC 7517 §4, RFC 7518 §6, RFC 8037 §2).
    /// Refused: `oct` keys (a shared secret has no place in a published
    /// set, and accepting one would bring HMAC back in through the side
    /// door), curves other than P-256/P-384/Ed25519, `use` other than
    /// `sig`, and an `alg` that the key type cannot verify.
    pub fn from_jwk(jwk: &Jwk) -> Result<PublicKey, KeyError> {
        let bad = |why: &str| KeyError::Jwk(why.to_owned());
        if let Some(u) = &jwk.common.public_key_use {
            if *u != jsonwebtoken::jwk::PublicKeyUse::Signature {
                return Err(bad("use is not sig"));
            }
        }
        let (kind, key) = match &jwk.algorithm {
            AlgorithmParameters::RSA(p) => (
                KeyType::Rsa,
                DecodingKey::from_rsa_components(&p.n, &p.e).map_err(|e| bad(&e.to_string()))?,
            ),
            AlgorithmParameters::EllipticCurve(p) => {
                let (kind, len) = match p.curve {
                    EllipticCurve::P256 => (KeyType::EcP256, 32),
                    EllipticCurve::P384 => (KeyType::EcP384, 48),
                    _ => return Err(bad("EC curve is not P-256 or P-384")),
                };
                let key =
                    DecodingKey::from_ec_components(&p.x, &p.y).map_err(|e| bad(&e.to_string()))?;
                // 0x04 || x || y, each coordinate exactly the field size.
                if key.as_bytes().len() != 1 + 2 * len {
                    return Err(bad("EC coordinates of the wrong length"));
                }
                (kind, key)
            }
            AlgorithmParameters::OctetKeyPair(p) => {
                if p.curve != EllipticCurve::Ed25519 {
                    return Err(bad("OKP curve is not Ed25519"));
                }
                let key = DecodingKey::from_ed_components(&p.x).map_err(|e| bad(&e.to_string()))?;
                if key.as_bytes().len() != 32 {
                    return Err(bad("Ed25519 key is not 32 bytes"));
                }
                (KeyType::Ed25519, key)
            }
            AlgorithmParameters::OctetKey(_) => {
                return Err(bad("symmetric (oct) keys are refused"))
            }
        };
        let only = match jwk.common.key_algorithm {
            None => None,
            Some(a) => {
                let alg = key_algorithm(a).ok_or_else(|| bad("alg not supported"))?;
                if !kind.allows(alg) {
                    return Err(bad("alg does not fit the key type"));
                }
                Some(alg)
            }
        };
        Ok(PublicKey {
            kind,
            kid: jwk.common.key_id.clone(),
            only,
            key,
        })
    }

    /// Whether this key may verify a token of `alg`.
    pub fn allows(&self, alg: Alg) -> bool {
        self.kind.allows(alg) && self.only.is_none_or(|only| only == alg)
    }

    /// Whether `signature_b64` signs `signing_input` under this key with
    /// `alg`. False for an algorithm the key does not allow, whatever the
    /// bytes.
    pub fn verify(&self, alg: Alg, signing_input: &str, signature_b64: &str) -> bool {
        if !self.allows(alg) {
            return false;
        }
        let Some(algorithm) = library_alg(alg) else {
            return false;
        };
        jsonwebtoken::crypto::verify(
            signature_b64,
            signing_input.as_bytes(),
            &self.key,
            algorithm,
        )
        .unwrap_or(false)
    }
}

/// An EC point's curve from its SEC1 length (uncompressed or compressed).
fn ec_curve(point: &[u8]) -> Result<KeyType, KeyError> {
    match point.len() {
        65 | 33 => Ok(KeyType::EcP256),
        97 | 49 => Ok(KeyType::EcP384),
        _ => Err(KeyError::Pem("EC key is not on P-256 or P-384".to_owned())),
    }
}

fn library_alg(alg: Alg) -> Option<Algorithm> {
    Some(match alg {
        Alg::HS256 => return None,
        Alg::RS256 => Algorithm::RS256,
        Alg::RS384 => Algorithm::RS384,
        Alg::RS512 => Algorithm::RS512,
        Alg::PS256 => Algorithm::PS256,
        Alg::ES256 => Algorithm::ES256,
        Alg::ES384 => Algorithm::ES384,
        Alg::EdDSA => Algorithm::EdDSA,
    })
}

fn key_algorithm(a: KeyAlgorithm) -> Option<Alg> {
    Some(match a {
        KeyAlgorithm::RS256 => Alg::RS256,
        KeyAlgorithm::RS384 => Alg::RS384,
        KeyAlgorithm::RS512 => Alg::RS512,
        KeyAlgorithm::PS256 => Alg::PS256,
        KeyAlgorithm::ES256 => Alg::ES256,
        KeyAlgorithm::ES384 => Alg::ES384,
        KeyAlgorithm::EdDSA => Alg::EdDSA,
        _ => return None,
    })
}

/// The `--hmac-secret` key: HS256 only.
#[derive(Clone)]
pub struct HmacKey(Box<[u8]>);

impl fmt::Debug for HmacKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("HmacKey(***)")
    }
}

impl HmacKey {
    pub fn new(secret: &[u8]) -> HmacKey {
        HmacKey(secret.into())
    }

    /// Whether `signature` is the HMAC-SHA-256 of `signing_input`, compared
    /// in constant time by `hmac`'s `verify_slice`.
    pub fn verify(&self, signing_input: &str, signature: &[u8]) -> bool {
        let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.0) else {
            return false;
        };
        mac.update(signing_input.as_bytes());
        mac.verify_slice(signature).is_ok()
    }
}
