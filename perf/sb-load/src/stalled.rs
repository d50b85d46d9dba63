//! `--stalled N`: receivers that join and then stop reading (issue 16's
//! slow-receiver scenario). They are extra connections, not part of the
//! plan's members, so the measured receivers' books and latency are those
//! of the healthy ones alone. Each shrinks its receive buffer before
//! connecting (`--stalled-rcvbuf`) so the server's outbound limit, not the
//! kernel, holds the backlog. At the end each reads what is left until the
//! server's close frame: `closed_4008` counts those the server closed as
//! slow consumers and whose close frame got through, `closed_eof` those it
//! closed without one reaching them (their socket's buffer was still full).

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::blocking::{self, Ending, Joined};
use crate::scenario::Plan;

/// Deadline to open one stalled connection.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// How the stalled connections ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StalledFigures {
    pub stalled: u64,
    pub failed_to_join: u64,
    /// Closed by the server with 4008 (slow consumer).
    pub closed_4008: u64,
    /// Closed with another code.
    pub closed_other: u64,
    pub last_other_code: Option<u16>,
    /// The stream ended without a close frame: the server gave up on a
    /// socket whose send buffer never had room for its close frame (the
    /// 4008 is then in its `/metrics`, not on the wire).
    pub closed_eof: u64,
    /// Still open at the end (never closed by the server).
    pub still_open: u64,
}

/// The stalled connections, joined and no longer read.
pub struct Stalled {
    conns: Vec<Joined>,
    failed: u64,
}

impl Stalled {
    /// Opens `n` connections spread over the plan's channels and targets,
    /// each joined and then left unread.
    pub fn open(plan: &Plan, n: u32, rcvbuf: usize) -> Stalled {
        let mut conns = Vec::with_capacity(n as usize);
        let mut failed = 0;
        let channels = plan.channels.len().max(1);
        let targets = plan.targets.len().max(1);
        for i in 0..n as usize {
            let (Some(ch), Some(target)) = (
                plan.channels.get(i % channels),
                plan.targets.get(i % targets),
            ) else {
                failed += 1;
                continue;
            };
            // From an address of their own, beside the measured ones.
            let source = std::net::Ipv4Addr::new(127, 0, 1, 1 + (i / 20_000) as u8);
            match blocking::open_joined(source, target, &ch.name, Some(rcvbuf), OPEN_TIMEOUT) {
                Ok(j) => conns.push(j),
                Err(_) => failed += 1,
            }
        }
        Stalled { conns, failed }
    }

    /// Reads every connection to its end (at most `limit` in all) and says
    /// how each ended.
    pub fn finish(self, limit: Duration) -> StalledFigures {
        let deadline = Instant::now() + limit;
        let mut f = StalledFigures {
            stalled: self.conns.len() as u64,
            failed_to_join: self.failed,
            ..StalledFigures::default()
        };
        for mut j in self.conns {
            // A connection still open would wait out the whole limit: give
            // each a short look once the server had its time.
            let mine = (Instant::now() + Duration::from_millis(500)).min(deadline);
            match blocking::read_to_close(&mut j, mine) {
                Ending::Close(4008) => f.closed_4008 += 1,
                Ending::Close(code) => {
                    f.closed_other += 1;
                    f.last_other_code = Some(code);
                }
                Ending::Eof => f.closed_eof += 1,
                Ending::Timeout => f.still_open += 1,
            }
        }
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{self, Args};
    use crate::testserver::{self, Fault};
    use clap::Parser;

    #[test]
    fn stalled_receivers_join_and_a_server_that_never_closes_leaves_them_open() {
        let url = testserver::start(Fault::None);
        let args =
            Args::try_parse_from(["sb-load", "--url", &url, "--conns", "4", "--channels", "2"])
                .unwrap();
        let plan = scenario::plan(&args, 20_000).unwrap();
        let stalled = Stalled::open(&plan, 3, 4096);
        let f = stalled.finish(Duration::from_secs(2));
        assert_eq!((f.stalled, f.failed_to_join), (3, 0), "{f:?}");
        assert_eq!(f.still_open, 3, "{f:?}");
        assert_eq!(f.closed_4008 + f.closed_other + f.closed_eof, 0);
    }

    #[test]
    fn a_refused_connection_counts_as_failed() {
        // A port nobody listens on: bind one, learn it, close it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = format!("ws://127.0.0.1:{port}/ws");
        let args =
            Args::try_parse_from(["sb-load", "--url", &url, "--conns", "2", "--channels", "1"])
                .unwrap();
        let plan = scenario::plan(&args, 20_000).unwrap();
        let f = Stalled::open(&plan, 2, 4096).finish(Duration::from_secs(1));
        assert_eq!((f.stalled, f.failed_to_join), (0, 2), "{f:?}");
    }
}
