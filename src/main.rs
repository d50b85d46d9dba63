//! The switchboard binary: configuration, logging, start, wait for a signal,
//! drain.

use std::io::Write;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use switchboard::config::Config;
use switchboard::server::Server;

fn main() {
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => e.exit(),
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    // A worker that panics must not leave a half-alive node behind.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        default_hook(info);
        tracing::error!("panic: {info}; exiting");
        std::process::exit(70);
    }));
    let mut signals = match signal_hook::iterator::Signals::new([SIGTERM, SIGINT, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: cannot install signal handlers: {e}");
            std::process::exit(1);
        }
    };
    let drain = config.drain;
    let node = config.node.clone();
    let threads = config.threads;
    let server = match Server::start(config) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("switchboard: cannot start: {e}");
            std::process::exit(1);
        }
    };
    tracing::info!(node = %node, threads, addr = %server.local_addr, "switchboard started");
    // The one line on stdout: scripts and tests wait for it.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "switchboard listening on {}", server.local_addr);
    let _ = out.flush();
    // Wait for SIGTERM/SIGINT; a worker that stopped on its own is fatal.
    // SIGHUP re-reads the TLS pair (PROTOCOL.md §11).
    'wait: loop {
        for sig in signals.pending() {
            if sig == SIGHUP {
                match server.reload_tls() {
                    Ok(()) if server.is_tls() => tracing::info!("TLS certificate reloaded"),
                    Ok(()) => {}
                    Err(e) => tracing::error!("TLS reload refused, the old pair stays: {e}"),
                }
                continue;
            }
            tracing::info!(signal = sig, "draining");
            break 'wait;
        }
        if server.any_worker_stopped() {
            tracing::error!("a worker stopped; exiting");
            std::process::exit(1);
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let clean = server.drain(drain);
    tracing::info!(clean, "stopped");
    std::process::exit(0);
}
