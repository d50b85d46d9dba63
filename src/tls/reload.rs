//! The listener's certificate, shared by the workers and replaced on SIGHUP.
//!
//! Workers take the current `ServerConfig` once per accepted connection
//! (one atomic load and a reference count, no lock); a session keeps the
//! config it started with, so a reload touches only later handshakes. A
//! reload that fails leaves the old pair in place (PROTOCOL.md §11).

use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::ServerConfig;

use super::load::{self, LoadError};

/// `--tls-cert` and `--tls-key`, and the configuration last read from them.
#[derive(Debug)]
pub struct ServerTls {
    cert: PathBuf,
    key: PathBuf,
    current: ArcSwap<ServerConfig>,
}

impl ServerTls {
    /// Reads the pair; the error names the file and the reason.
    pub fn load(cert: PathBuf, key: PathBuf) -> Result<Self, LoadError> {
        let config = load::server_config(&cert, &key)?;
        Ok(ServerTls {
            cert,
            key,
            current: ArcSwap::new(config),
        })
    }

    /// The configuration for a new handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reads both files again; on success new handshakes use them, on
    /// failure nothing changes and the error says why.
    pub fn reload(&self) -> Result<(), LoadError> {
        let config = load::server_config(&self.cert, &self.key)?;
        self.current.store(config);
        Ok(())
    }
}
