//! Starting and stopping a node: listeners, workers, signals, drain.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::TcpListener;
use mio::{Poll, Waker};
use socket2::{Domain, Protocol, Socket, Type};

use crate::broker::{Broker, Msg, ToWorker};
use rustls::pki_types::ServerName;

use crate::broker::redis::{ClusterSeeds, Endpoint};
use crate::config::{Config, RedisUrl};
use crate::node::Node;
use crate::tls::ServerTls;
use crate::worker::{Parts, Shared, Worker};

/// A running node.
#[derive(Debug)]
pub struct Server {
    pub local_addr: SocketAddr,
    shared: Arc<Shared>,
    /// The listener's certificate, for SIGHUP; `None` in clear.
    tls: Option<Arc<ServerTls>>,
    threads: Vec<JoinHandle<io::Result<()>>>,
}

/// One `SO_REUSEPORT` listener; the kernel spreads connections over them.
fn listener(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(4096)?;
    Ok(socket.into())
}

impl Server {
    /// Binds every worker's listener and starts the workers.
    pub fn start(config: Config) -> io::Result<Server> {
        // First, so that a bad key source stops the start before any port
        // is bound.
        let auth = crate::auth::Authenticator::start(&config).map_err(io::Error::other)?;
        let config = Arc::new(config);
        let n = config.threads.max(1);
        let redis = match config.redis_url() {
            Some(url) => Some(redis_endpoint(&config, &url)?),
            None => None,
        };
        let cluster = cluster_seeds(&config)?;
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(
                ServerTls::load(cert.clone(), key.clone()).map_err(io::Error::other)?,
            )),
            _ => None,
        };
        // The first bind fixes the port (port 0 picks one); the others share it.
        let first = listener(config.listen)?;
        let local_addr = first.local_addr()?;
        let mut listeners = vec![first];
        for _ in 1..n {
            listeners.push(listener(local_addr)?);
        }
        let mut polls = Vec::with_capacity(n);
        let mut wakers = Vec::with_capacity(n);
        let mut senders = Vec::with_capacity(n);
        let mut receivers = Vec::with_capacity(n);
        for _ in 0..n {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), mio::Token(0))?));
            polls.push(poll);
            let (tx, rx) = crossbeam_channel::unbounded();
            senders.push(tx);
            receivers.push(rx);
        }
        let shared = Arc::new(Shared::new(
            Node::new(
                config.clone(),
                n,
                redis.is_some() || cluster.is_some(),
                auth,
            ),
            senders,
            wakers,
        ));
        let seed = seed();
        let mut threads = Vec::with_capacity(n);
        for (index, ((poll, listener), receiver)) in
            polls.into_iter().zip(listeners).zip(receivers).enumerate()
        {
            let broker = Broker::new(
                &shared.node,
                index,
                redis.clone(),
                cluster.clone(),
                seed ^ ((index as u64 + 1) << 32),
                poll.registry(),
            )?;
            let parts = Parts {
                index,
                poll,
                listener: TcpListener::from_std(listener),
                receiver,
                broker,
                tls: tls.clone(),
            };
            let worker = Worker::new(parts, shared.clone())?;
            threads.push(
                std::thread::Builder::new()
                    .name(format!("worker-{index}"))
                    .spawn(move || worker.run())?,
            );
        }
        Ok(Server {
            local_addr,
            shared,
            tls,
            threads,
        })
    }

    /// Drains: `/healthz` turns 503, every WebSocket gets 1001, and the
    /// workers stop; returns when they did or when `drain` has passed.
    pub fn drain(self, drain: Duration) -> bool {
        self.shared.node.draining.store(true, Ordering::SeqCst);
        for w in 0..self.threads.len() {
            self.shared
                .queues
                .send(w, vec![Msg::Worker(ToWorker::Shutdown)]);
        }
        let deadline = Instant::now() + drain;
        for t in &self.threads {
            while !t.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        self.threads.iter().all(|t| t.is_finished())
    }

    /// Reads `--tls-cert` and `--tls-key` again (SIGHUP): new handshakes
    /// use the new pair; on error the old one stays. `Ok` without TLS.
    pub fn reload_tls(&self) -> Result<(), crate::tls::LoadError> {
        match &self.tls {
            Some(tls) => tls.reload(),
            None => Ok(()),
        }
    }

    /// Whether this node serves TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether any worker has stopped (it only stops on error or drain).
    pub fn any_worker_stopped(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }
}

/// Redis's address, resolved once, and for `rediss://` the client
/// configuration (`--redis-ca` or the system's roots) and the name the
/// certificate must carry.
fn redis_endpoint(config: &Config, url: &RedisUrl) -> io::Result<Endpoint> {
    let addr = std::net::ToSocketAddrs::to_socket_addrs(&(url.host.as_str(), url.port))?
        .next()
        .ok_or_else(|| io::Error::other("redis host has no address"))?;
    let tls = if url.tls {
        let roots = crate::tls::load::redis_roots(config.redis_ca.as_deref())
            .map_err(|e| io::Error::other(format!("--redis-ca: {e}")))?;
        let name = ServerName::try_from(url.host.clone()).map_err(|e| {
            io::Error::other(format!(
                "rediss:// host is not a DNS name or an IP address: {e}"
            ))
        })?;
        Some((crate::tls::load::client_config(roots), name))
    } else {
        None
    };
    Ok(Endpoint { addr, tls })
}

/// `--redis-cluster`: the seeds, and for `rediss://` the client
/// configuration every node's link uses (`--redis-ca` or the system's
/// roots). Each node's address is resolved when its link is made.
fn cluster_seeds(config: &Config) -> io::Result<Option<ClusterSeeds>> {
    let urls = config.redis_cluster_urls();
    if urls.is_empty() {
        return Ok(None);
    }
    let tls = if urls.iter().any(|u| u.tls) {
        if !urls.iter().all(|u| u.tls) {
            return Err(io::Error::other(
                "--redis-cluster: seeds must all be redis:// or all rediss://",
            ));
        }
        let roots = crate::tls::load::redis_roots(config.redis_ca.as_deref())
            .map_err(|e| io::Error::other(format!("--redis-ca: {e}")))?;
        Some(crate::tls::load::client_config(roots))
    } else {
        None
    };
    Ok(Some(ClusterSeeds { urls, tls }))
}

/// A seed for epochs that differs per process start.
fn seed() -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    t ^ (u64::from(std::process::id()) << 17)
}
