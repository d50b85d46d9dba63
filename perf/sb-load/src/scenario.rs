//! Command-line flags, the named scenarios of issue 7, and the plan they
//! expand to: which connection joins which channel, publishes or not, talks
//! to which server, from which source address.
//!
//! A preset fills every shape flag the command line left out, so
//! `--scenario fanout --rate 200` is fanout at 200 msg/s per publisher.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, ValueEnum};
use rustls::pki_types::ServerName;

use crate::tls::{self, TlsSetupError};

/// Named load shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// 2000 connections, 20 channels of 100, one publisher each.
    Fanout,
    /// 5000 connections in one channel, one publisher.
    Bigroom,
    /// 1000 channels of 2, every member publishing.
    Chatty,
    /// As many joined connections as the fd cap allows; memory only.
    Idle,
    /// Fanout over two servers: publishers on the first --url, receivers on the second.
    Multinode,
    /// A ~5 s CI check: 200 connections, 10 channels, one publisher each.
    Smoke,
}

/// switchboard's load generator.
#[derive(Debug, Clone, Parser)]
#[command(name = "sb-load", version)]
pub struct Args {
    /// Preset shape; explicit flags override its values.
    #[arg(long, value_enum, default_value = "fanout")]
    pub scenario: Scenario,
    /// Server WebSocket URL (ws://HOST:PORT/PATH or wss://…); repeat for multinode.
    #[arg(long = "url", default_value = "ws://127.0.0.1:8080/ws")]
    pub urls: Vec<String>,
    /// Connections to open.
    #[arg(long)]
    pub conns: Option<u32>,
    /// Channels to spread them over (evenly).
    #[arg(long)]
    pub channels: Option<u32>,
    /// Publishers per channel.
    #[arg(long)]
    pub publishers: Option<u32>,
    /// Messages per second per publisher.
    #[arg(long)]
    pub rate: Option<f64>,
    /// Length of the measured window, seconds.
    #[arg(long)]
    pub duration: Option<f64>,
    /// Publishing before the measured window, seconds.
    #[arg(long)]
    pub warmup: Option<f64>,
    /// After publishing stops, wait up to this long for late deliveries, seconds.
    #[arg(long, default_value_t = 3.0)]
    pub drain: f64,
    /// Worker threads (each a mio event loop).
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Source addresses 127.0.0.1..=127.0.0.K to spread connections over (0: one per 8000).
    #[arg(long, default_value_t = 0)]
    pub source_ips: u8,
    /// Connections in the middle of connecting/handshaking/joining at once, per thread.
    #[arg(long, default_value_t = 256)]
    pub connect_concurrency: usize,
    /// wss://: the PEM CA certificate(s) the server's certificate must chain to.
    #[arg(long, value_name = "FILE")]
    pub tls_ca: Option<String>,
    /// Offer permessage-deflate (no context takeover); compressed messages
    /// are inflated, and wire bytes per delivery are reported.
    #[arg(long)]
    pub compression: bool,
    /// Pad every published action to about this many bytes of realistic,
    /// compressible JSON (a batch of editor cursors; 0: the bare stamp).
    #[arg(long, default_value_t = 0)]
    pub action_bytes: usize,
    /// Give up on connections not joined after this many seconds.
    #[arg(long, default_value_t = 30.0)]
    pub connect_timeout: f64,
    /// Server process to read RSS and CPU time from (repeat to sum several).
    #[arg(long = "server-pid")]
    pub server_pids: Vec<u32>,
    /// Channel names are PREFIX:N.
    #[arg(long, default_value = "load")]
    pub channel_prefix: String,
    /// Also print one JSON line with every figure.
    #[arg(long)]
    pub json: bool,
    /// Exit with status 1 when any message was lost, duplicated or reordered,
    /// or any connection failed (with --recover: any acknowledged delivery
    /// lost, duplicated or reordered).
    #[arg(long)]
    pub assert_no_loss: bool,
    /// Recovering clients on history channels: reconnect with backoff,
    /// re-join with `since`, exact accounting of acknowledged actions
    /// (perf/chaos; see perf/README.md).
    #[arg(long)]
    pub recover: bool,
    /// --recover: first backoff ceiling, ms (full jitter, doubling per attempt).
    #[arg(long, default_value_t = 50.0)]
    pub backoff_base_ms: f64,
    /// --recover: largest backoff ceiling, ms.
    #[arg(long, default_value_t = 2000.0)]
    pub backoff_max_ms: f64,
    /// --recover: connections that connect, join and leave, per second,
    /// beside the load while it publishes (the churn scenario; 0: none).
    #[arg(long, default_value_t = 0.0)]
    pub churn: f64,
    /// --churn: blocking threads the cycles are spread over.
    #[arg(long, default_value_t = 8)]
    pub churn_threads: usize,
    /// Extra receivers that join and then stop reading (the slow-receiver
    /// scenario); not counted among the measured members.
    #[arg(long, default_value_t = 0)]
    pub stalled: u32,
    /// --stalled: their receive buffer, bytes (set before connecting).
    #[arg(long, default_value_t = 4096)]
    pub stalled_rcvbuf: usize,
    /// With --churn or --stalled: sample the server's RSS and open fds this
    /// often, seconds.
    #[arg(long, default_value_t = 1.0)]
    pub sample_every: f64,
    /// --churn: after the churn stops and the drain, wait this long before
    /// the last sample, seconds (closing connections finish closing).
    #[arg(long, default_value_t = 5.0)]
    pub settle: f64,
}

/// A server to connect to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` as given, for the `Host` header.
    pub host: String,
    pub path: String,
    /// `wss://`: TLS first, and the name the certificate must carry.
    pub tls: Option<ServerName<'static>>,
}

/// One channel of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPlan {
    pub name: String,
    pub members: u32,
    pub publishers: u32,
}

/// One connection of the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnPlan {
    pub channel: u32,
    pub publisher: Option<u32>,
    pub target: usize,
    pub source: Ipv4Addr,
}

/// Everything a run needs, flags and presets resolved.
#[derive(Debug, Clone)]
pub struct Plan {
    pub scenario: Scenario,
    pub targets: Vec<Target>,
    pub channels: Vec<ChannelPlan>,
    pub conns: Vec<ConnPlan>,
    pub rate: f64,
    pub warmup: Duration,
    pub duration: Duration,
    pub drain: Duration,
    /// The client TLS configuration, when any target is `wss://`.
    pub tls: Option<Arc<rustls::ClientConfig>>,
    /// Offer permessage-deflate.
    pub compression: bool,
    /// Published actions are padded to about this many bytes (0: not).
    pub action_bytes: usize,
}

/// A flag combination that makes no run.
#[derive(Debug, Clone, PartialEq)]
pub enum PlanError {
    BadUrl { url: String },
    NeedTwoUrls,
    Shape { what: &'static str },
    TooManyConns { conns: u32, fd_limit: u64 },
    Tls(TlsSetupError),
}

impl std::fmt::Display for PlanError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PlanError::BadUrl { url } => {
                write!(
                    f,
                    "cannot use URL {url:?} (want ws://HOST:PORT/PATH or wss://HOST:PORT/PATH)"
                )
            }
            PlanError::NeedTwoUrls => write!(f, "multinode needs two --url"),
            PlanError::Tls(e) => write!(f, "TLS: {e}"),
            PlanError::Shape { what } => write!(f, "bad shape: {what}"),
            PlanError::TooManyConns { conns, fd_limit } => {
                write!(
                    f,
                    "{conns} connections do not fit under the fd limit {fd_limit}"
                )
            }
        }
    }
}

/// Descriptors kept free for the poll, wakers, stdio and /proc reads.
pub const FD_RESERVE: u64 = 100;

struct Preset {
    conns: u32,
    channels: u32,
    publishers: u32,
    rate: f64,
    warmup: f64,
    duration: f64,
}

fn preset(scenario: Scenario, fd_limit: u64) -> Preset {
    let p = |conns, channels, publishers, rate, warmup, duration| Preset {
        conns,
        channels,
        publishers,
        rate,
        warmup,
        duration,
    };
    match scenario {
        // 20 x 100 x 50/s = 100 000 deliveries/s, issue 7's reference point.
        Scenario::Fanout | Scenario::Multinode => p(2000, 20, 1, 50.0, 2.0, 10.0),
        Scenario::Bigroom => p(5000, 1, 1, 20.0, 2.0, 10.0),
        Scenario::Chatty => p(2000, 1000, 2, 10.0, 2.0, 10.0),
        Scenario::Idle => {
            let conns = fd_limit.saturating_sub(FD_RESERVE).min(u64::from(u32::MAX)) as u32;
            p(conns, conns.div_ceil(100).max(1), 0, 0.0, 0.0, 5.0)
        }
        Scenario::Smoke => p(200, 10, 1, 50.0, 1.0, 3.0),
    }
}

/// Resolves flags and preset into a plan. `fd_limit` is this process's
/// (already raised) descriptor limit.
pub fn plan(args: &Args, fd_limit: u64) -> Result<Plan, PlanError> {
    let pre = preset(args.scenario, fd_limit);
    let conns = args.conns.unwrap_or(pre.conns);
    let n_channels = args.channels.unwrap_or(pre.channels);
    let publishers = args.publishers.unwrap_or(pre.publishers);
    let rate = args.rate.unwrap_or(pre.rate);
    if conns == 0 || n_channels == 0 || n_channels > conns {
        return Err(PlanError::Shape {
            what: "need 1 <= channels <= conns",
        });
    }
    if u64::from(conns) + FD_RESERVE > fd_limit {
        return Err(PlanError::TooManyConns { conns, fd_limit });
    }
    if !(rate.is_finite() && rate >= 0.0) || (publishers > 0 && rate == 0.0) {
        return Err(PlanError::Shape {
            what: "rate must be > 0 when publishing",
        });
    }
    let targets = args
        .urls
        .iter()
        .map(|u| parse_url(u))
        .collect::<Result<Vec<_>, _>>()?;
    let tls = match (targets.iter().any(|t| t.tls.is_some()), &args.tls_ca) {
        (false, _) => None,
        (true, None) => return Err(PlanError::Tls(TlsSetupError::NoCa)),
        (true, Some(ca)) => Some(tls::client_config(ca).map_err(PlanError::Tls)?),
    };
    if args.scenario == Scenario::Multinode && targets.len() < 2 {
        return Err(PlanError::NeedTwoUrls);
    }
    let sources = match args.source_ips {
        0 => conns.div_ceil(8000).clamp(1, 254),
        k => u32::from(k),
    };
    let base = conns / n_channels;
    let extra = conns % n_channels;
    let mut channels = Vec::with_capacity(n_channels as usize);
    let mut plan_conns = Vec::with_capacity(conns as usize);
    for c in 0..n_channels {
        let members = base + u32::from(c < extra);
        if publishers > members {
            return Err(PlanError::Shape {
                what: "more publishers than members in a channel",
            });
        }
        channels.push(ChannelPlan {
            name: format!("{}:{c}", args.channel_prefix),
            members,
            publishers,
        });
        for m in 0..members {
            let publisher = (m < publishers).then_some(m);
            let i = plan_conns.len();
            let target = match (args.scenario, publisher) {
                (Scenario::Multinode, Some(_)) => 0,
                (Scenario::Multinode, None) => 1 + i % (targets.len() - 1),
                _ => i % targets.len(),
            };
            let source = Ipv4Addr::new(127, 0, 0, 1 + (i as u32 % sources) as u8);
            plan_conns.push(ConnPlan {
                channel: c,
                publisher,
                target,
                source,
            });
        }
    }
    let secs = |s: f64, what| Duration::try_from_secs_f64(s).map_err(|_| PlanError::Shape { what });
    Ok(Plan {
        scenario: args.scenario,
        targets,
        channels,
        conns: plan_conns,
        rate,
        warmup: secs(args.warmup.unwrap_or(pre.warmup), "warmup")?,
        duration: secs(args.duration.unwrap_or(pre.duration), "duration")?,
        drain: secs(args.drain, "drain")?,
        tls,
        compression: args.compression,
        action_bytes: args.action_bytes,
    })
}

/// `ws://HOST:PORT/PATH` or `wss://…` → target (path defaults to `/ws`).
pub fn parse_url(url: &str) -> Result<Target, PlanError> {
    let bad = || PlanError::BadUrl {
        url: url.to_owned(),
    };
    let (secure, rest) = match url.strip_prefix("wss://") {
        Some(rest) => (true, rest),
        None => (false, url.strip_prefix("ws://").ok_or_else(bad)?),
    };
    let (host, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/ws"),
    };
    let addr = host
        .to_socket_addrs()
        .map_err(|_| bad())?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(bad)?;
    let tls = match secure {
        true => Some(tls::server_name(host).map_err(PlanError::Tls)?),
        false => None,
    };
    Ok(Target {
        addr,
        host: host.to_owned(),
        path: path.to_owned(),
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(extra: &[&str]) -> Args {
        let mut v = vec!["sb-load"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v).unwrap()
    }

    #[test]
    fn fanout_preset_shape() {
        let p = plan(&args(&[]), 20_000).unwrap();
        assert_eq!(p.conns.len(), 2000);
        assert_eq!(p.channels.len(), 20);
        assert!(p
            .channels
            .iter()
            .all(|c| c.members == 100 && c.publishers == 1));
        assert_eq!(p.conns.iter().filter(|c| c.publisher.is_some()).count(), 20);
        assert_eq!(p.rate, 50.0);
        assert_eq!(p.targets[0].addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(p.targets[0].path, "/ws");
    }

    #[test]
    fn flags_override_the_preset_and_remainders_spread() {
        let p = plan(
            &args(&[
                "--scenario",
                "chatty",
                "--conns",
                "7",
                "--channels",
                "3",
                "--publishers",
                "2",
                "--rate",
                "5",
            ]),
            20_000,
        )
        .unwrap();
        let members: Vec<u32> = p.channels.iter().map(|c| c.members).collect();
        assert_eq!(members, vec![3, 2, 2]);
        assert_eq!(p.conns.iter().filter(|c| c.publisher.is_some()).count(), 6);
        assert_eq!(p.rate, 5.0);
    }

    #[test]
    fn idle_fills_the_fd_cap_and_sources_spread() {
        let p = plan(&args(&["--scenario", "idle"]), 20_000).unwrap();
        assert_eq!(p.conns.len(), 19_900);
        assert_eq!(p.rate, 0.0);
        let sources: std::collections::BTreeSet<_> = p.conns.iter().map(|c| c.source).collect();
        assert_eq!(sources.len(), 3);
        assert!(sources.contains(&Ipv4Addr::new(127, 0, 0, 3)));
    }

    #[test]
    fn multinode_puts_publishers_on_the_first_url() {
        let a = args(&[
            "--scenario",
            "multinode",
            "--url",
            "ws://127.0.0.1:1/ws",
            "--url",
            "ws://127.0.0.1:2/ws",
            "--conns",
            "40",
            "--channels",
            "4",
        ]);
        let p = plan(&a, 20_000).unwrap();
        for c in &p.conns {
            assert_eq!(c.target, usize::from(c.publisher.is_none()));
        }
        let one = args(&["--scenario", "multinode"]);
        assert_eq!(plan(&one, 20_000).unwrap_err(), PlanError::NeedTwoUrls);
    }

    #[test]
    fn impossible_shapes_are_refused() {
        assert!(matches!(
            plan(&args(&["--conns", "30000"]), 20_000),
            Err(PlanError::TooManyConns { .. })
        ));
        assert!(matches!(
            plan(&args(&["--conns", "5", "--channels", "6"]), 20_000),
            Err(PlanError::Shape { .. })
        ));
        assert!(matches!(
            plan(
                &args(&["--conns", "4", "--channels", "2", "--publishers", "3"]),
                20_000
            ),
            Err(PlanError::Shape { .. })
        ));
        assert!(matches!(
            plan(&args(&["--rate", "0"]), 20_000),
            Err(PlanError::Shape { .. })
        ));
        assert!(matches!(
            parse_url("http://x"),
            Err(PlanError::BadUrl { .. })
        ));
        assert_eq!(parse_url("ws://127.0.0.1:9/x/y").unwrap().path, "/x/y");
        let t = parse_url("wss://127.0.0.1:9").unwrap();
        assert!(t.tls.is_some() && t.path == "/ws" && t.host == "127.0.0.1:9");
        assert!(parse_url("ws://127.0.0.1:9").unwrap().tls.is_none());
        assert_eq!(
            plan(&args(&["--url", "wss://127.0.0.1:9/ws"]), 20_000).unwrap_err(),
            PlanError::Tls(TlsSetupError::NoCa)
        );
    }
}
