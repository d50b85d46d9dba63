#![no_main]
//! Arbitrary bytes as the ciphertext of a TLS listener's connection: no
//! panic, and what the session holds or answers stays bounded.
use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use switchboard::tls::{load, unbuffered};

/// A certificate made for fuzzing only (fuzz/certs), written out once so
/// the loader reads it the way the server does.
fn config() -> Arc<rustls::ServerConfig> {
    static CONFIG: OnceLock<Arc<rustls::ServerConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("sb-fuzz-tls-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
            std::fs::write(&c, include_bytes!("../certs/cert.pem")).unwrap();
            std::fs::write(&k, include_bytes!("../certs/key.pem")).unwrap();
            // Fuzzing must not stop when the certificate expires: check at
            // its start of validity.
            let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
            load::server_config_at(&c, &k, at).unwrap()
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    unbuffered::feed_arbitrary(config(), data);
});
