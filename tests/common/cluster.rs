//! A throwaway Redis Cluster per test: six `redis-server --cluster-enabled
//! yes` processes ([`RedisServer`]s, so each has its own free port, its own
//! temporary directory holding its `nodes.conf`, and is killed by pid on
//! drop), joined by `redis-cli --cluster create … --cluster-replicas 1`
//! into three masters with one replica each. The machine's own Redis
//! (6379) is never touched.
//!
//! The cluster bus port is picked free too and given with `--cluster-port`
//! (Redis 7), rather than left at port + 10000, which can be past 65535 or
//! taken for a port from the ephemeral range.
//!
//! `--cluster-node-timeout 1000`: a killed master is failed over by its
//! replica within a few seconds, so failover tests stay short.

use super::*;

use std::collections::BTreeMap;
use std::path::PathBuf;

use switchboard::broker::redis::cluster::channel_slot;

/// How long `redis-cli --cluster create` and the first `cluster_state:ok`
/// on every node may take.
const CLUSTER_START: Duration = Duration::from_secs(60);

fn redis_cli_binary() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|dir| dir.join("redis-cli"));
    std::iter::once(PathBuf::from("/usr/bin/redis-cli"))
        .chain(on_path)
        .find(|p| p.is_file())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap_or_else(|e| panic!("cannot pick a free port: {e}"))
        .port()
}

/// Three masters, three replicas.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
    /// Each node's TLS port, by node, for a cluster started with
    /// [`RedisCluster::start_tls`] (empty otherwise).
    pub tls_ports: Vec<u16>,
}

impl RedisCluster {
    /// A cluster whose every node reports `cluster_state:ok`, or `None`
    /// (after a note) without `redis-server`/`redis-cli` outside CI.
    pub fn start() -> Option<RedisCluster> {
        RedisCluster::start_nodes(None)
    }

    /// As [`RedisCluster::start`], each node also listening for TLS
    /// clients on a port of its own, with the cluster bus and replication
    /// over TLS too (`--tls-cluster yes`, `--tls-replication yes`), under
    /// `certs`' CA. The plain ports stay open for the test's own
    /// inspection and for `redis-cli --cluster create`.
    pub fn start_tls(certs: &Certs) -> Option<RedisCluster> {
        RedisCluster::start_nodes(Some(certs))
    }

    /// `rediss://127.0.0.1:TLS_PORT` of every node.
    pub fn tls_urls(&self) -> Vec<String> {
        self.tls_ports
            .iter()
            .map(|p| format!("rediss://127.0.0.1:{p}"))
            .collect()
    }

    fn start_nodes(certs: Option<&Certs>) -> Option<RedisCluster> {
        let Some(cli) = redis_cli_binary() else {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "redis-cli is required under CI=true (apt-get install redis-tools)"
            );
            eprintln!("note: redis-cli not found, skipping this Redis Cluster test");
            return None;
        };
        let mut nodes = Vec::with_capacity(6);
        let mut tls_ports = Vec::new();
        for _ in 0..6 {
            let bus = free_port().to_string();
            let mut tls: Vec<String> = Vec::new();
            if let Some(c) = certs {
                let port = free_port();
                tls_ports.push(port);
                tls = [
                    "--tls-port",
                    &port.to_string(),
                    "--tls-cert-file",
                    &path_str(&c.cert),
                    "--tls-key-file",
                    &path_str(&c.key),
                    "--tls-ca-cert-file",
                    &path_str(&c.ca),
                    "--tls-auth-clients",
                    "no",
                    "--tls-cluster",
                    "yes",
                    "--tls-replication",
                    "yes",
                ]
                .map(str::to_owned)
                .to_vec();
            }
            let mut args: Vec<&str> = vec![
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                "nodes.conf",
                "--cluster-node-timeout",
                "1000",
                "--cluster-port",
                &bus,
                // A replica fails its master over however stale its last
                // sync; a test cluster is young and short-lived.
                "--cluster-replica-validity-factor",
                "0",
            ];
            args.extend(tls.iter().map(String::as_str));
            let node = RedisServer::start_with(&args)?;
            nodes.push(node);
        }
        let cluster = RedisCluster { nodes, tls_ports };
        cluster.create(&cli);
        cluster.wait_ok(CLUSTER_START);
        cluster.wait_replicas_synced(CLUSTER_START);
        Some(cluster)
    }

    /// `redis-cli --cluster create`, killed if it overruns.
    fn create(&self, cli: &PathBuf) {
        let mut cmd = Command::new(cli);
        cmd.arg("--cluster").arg("create");
        for n in &self.nodes {
            cmd.arg(format!("127.0.0.1:{}", n.port));
        }
        cmd.args(["--cluster-replicas", "1", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot spawn {}: {e}", cli.display()));
        let deadline = Instant::now() + CLUSTER_START;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait for redis-cli") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("redis-cli --cluster create did not finish within {CLUSTER_START:?}");
            }
            thread::sleep(Duration::from_millis(50));
        };
        let output = child.wait_with_output().expect("redis-cli output");
        assert!(
            status.success(),
            "redis-cli --cluster create failed: {status}\n{}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Waits until every live node reports `cluster_state:ok` and all
    /// 16384 slots assigned.
    #[track_caller]
    pub fn wait_ok(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let not_ok: Vec<u16> = self
                .live()
                .filter(|n| {
                    !matches!(
                        n.try_cmd(&[b"CLUSTER", b"INFO"], Duration::from_secs(1)),
                        Ok(Resp::Bulk(b)) if {
                            let info = String::from_utf8_lossy(&b);
                            info.contains("cluster_state:ok")
                                && info.contains("cluster_slots_assigned:16384")
                        }
                    )
                })
                .map(|n| n.port)
                .collect();
            if not_ok.is_empty() {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "cluster_state not ok within {within:?} on ports {not_ok:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until every replica's link to its master is up (so a
    /// failover has data to promote).
    #[track_caller]
    pub fn wait_replicas_synced(&self, within: Duration) {
        let deadline = Instant::now() + within;
        loop {
            let (mut replicas, mut synced) = (0, 0);
            for n in self.live() {
                let info = n.cmd(&["INFO", "replication"]).text();
                if info.contains("role:slave") {
                    replicas += 1;
                    synced += usize::from(info.contains("master_link_status:up"));
                }
            }
            if replicas == 3 && synced == 3 {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{synced} of {replicas} replicas synced within {within:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// The nodes still running.
    pub fn live(&self) -> impl Iterator<Item = &RedisServer> {
        self.nodes.iter().filter(|n| n.pid().is_some())
    }

    /// `redis://127.0.0.1:PORT` of every node, the seeds for
    /// `--redis-cluster`.
    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(RedisServer::url).collect()
    }

    /// The slot of `key`, as the cluster computes it (`CLUSTER KEYSLOT`).
    pub fn key_slot(&self, key: &str) -> u16 {
        let n = self.live().next().expect("a live node");
        u16::try_from(n.cmd(&["CLUSTER", "KEYSLOT", key]).int()).expect("slot fits u16")
    }

    /// The port of the master serving `slot`, as a live node sees it now
    /// (`CLUSTER SLOTS`); `None` while no master serves it.
    pub fn master_port(&self, slot: u16) -> Option<u16> {
        let n = self.live().next()?;
        for range in n.cmd(&["CLUSTER", "SLOTS"]).array() {
            let r = range.array();
            let (start, end) = (r[0].int(), r[1].int());
            if (start..=end).contains(&i64::from(slot)) {
                return Some(u16::try_from(r[2].array()[1].int()).expect("port"));
            }
        }
        None
    }

    /// The ports of the three masters, sorted.
    pub fn master_ports(&self) -> Vec<u16> {
        let mut ports: Vec<u16> = self
            .live()
            .filter(|n| matches!(n.cmd(&["ROLE"]).array().first(), Some(r) if r.text() == "master"))
            .map(|n| n.port)
            .collect();
        ports.sort();
        ports
    }

    /// The node on `port`.
    pub fn node(&self, port: u16) -> &RedisServer {
        self.nodes
            .iter()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
    }

    /// SIGKILLs the node on `port` (by pid).
    pub fn kill(&mut self, port: u16) {
        self.nodes
            .iter_mut()
            .find(|n| n.port == port)
            .unwrap_or_else(|| panic!("no cluster node on port {port}"))
            .kill();
    }

    /// Waits until a master other than `old` serves `slot` and the live
    /// nodes are all `ok` again; returns the new master's port and how long
    /// it took.
    #[track_caller]
    pub fn wait_promoted(&self, slot: u16, old: u16, within: Duration) -> (u16, Duration) {
        let start = Instant::now();
        let deadline = start + within;
        loop {
            if let Some(port) = self.master_port(slot).filter(|&p| p != old) {
                self.wait_ok(deadline.saturating_duration_since(Instant::now()));
                return (port, start.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "no replica took slot {slot} over from port {old} within {within:?}"
            );
            thread::sleep(Duration::from_millis(50));
        }
    }
}

impl RedisCluster {
    /// The cluster node id of the node on `port` (`CLUSTER MYID`).
    pub fn node_id(&self, port: u16) -> String {
        self.node(port).cmd(&["CLUSTER", "MYID"]).text()
    }

    /// Starts moving `slot` from its master to the master on `to`: the
    /// target `IMPORTING`, the source `MIGRATING` (Redis Cluster
    /// specification, "Live resharding"). Returns the source's port.
    pub fn begin_migration(&self, slot: u16, to: u16) -> u16 {
        let from = self.master_port(slot).expect("slot has a master");
        assert_ne!(from, to, "slot {slot} is already on {to}");
        let s = slot.to_string();
        let ok = |r: Resp| assert_eq!(r, Resp::Simple("OK".into()));
        ok(self
            .node(to)
            .cmd(&["CLUSTER", "SETSLOT", &s, "IMPORTING", &self.node_id(from)]));
        ok(self
            .node(from)
            .cmd(&["CLUSTER", "SETSLOT", &s, "MIGRATING", &self.node_id(to)]));
        from
    }

    /// `MIGRATE`s `keys` of a slot being moved from `from` to `to`.
    pub fn migrate_keys(&self, from: u16, to: u16, keys: &[&str]) {
        let port = to.to_string();
        let mut args = vec![
            "MIGRATE",
            "127.0.0.1",
            port.as_str(),
            "",
            "0",
            "5000",
            "KEYS",
        ];
        args.extend_from_slice(keys);
        let r = self.node(from).cmd(&args);
        assert!(
            matches!(&r, Resp::Simple(s) if s == "OK" || s == "NOKEY"),
            "MIGRATE: {r:?}"
        );
    }

    /// Moves every remaining key of `slot` and gives the slot to `to` on
    /// every master (`CLUSTER SETSLOT … NODE`), then waits for the cluster
    /// to agree.
    pub fn finish_migration(&self, slot: u16, from: u16, to: u16) {
        let s = slot.to_string();
        loop {
            let keys = self
                .node(from)
                .cmd(&["CLUSTER", "GETKEYSINSLOT", &s, "100"])
                .strings();
            if keys.is_empty() {
                break;
            }
            let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
            self.migrate_keys(from, to, &keys);
        }
        let id = self.node_id(to);
        for port in [to, from] {
            let r = self
                .node(port)
                .cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &id]);
            assert_eq!(r, Resp::Simple("OK".into()), "SETSLOT NODE on {port}");
        }
        for port in self.master_ports() {
            if port != to && port != from {
                self.node(port)
                    .cmd(&["CLUSTER", "SETSLOT", &s, "NODE", &id]);
            }
        }
        let deadline = Instant::now() + TIMEOUT;
        while self.live().any(|n| {
            n.cmd(&["CLUSTER", "SLOTS"]).array().iter().any(|r| {
                let r = r.array();
                (r[0].int()..=r[1].int()).contains(&i64::from(slot))
                    && r[2].array()[1].int() != i64::from(to)
            })
        }) {
            assert!(Instant::now() < deadline, "slot {slot} not agreed on {to}");
            thread::sleep(Duration::from_millis(50));
        }
    }
}

/// `--redis-cluster` for every node of `rc`, then `extra`.
pub fn cluster_node(name: &str, rc: &RedisCluster, extra: &[&str]) -> Server {
    let urls = rc.urls();
    let mut args: Vec<&str> = Vec::new();
    for u in &urls {
        args.extend(["--redis-cluster", u.as_str()]);
    }
    args.extend_from_slice(extra);
    let server = Server::start_node(name, &args);
    wait_health(&server, 200, TIMEOUT);
    server
}

/// One channel `{prefix}N` per master: the master's port and the channel.
pub fn one_channel_per_master(rc: &RedisCluster, prefix: &str) -> BTreeMap<u16, String> {
    let masters = rc.master_ports().len();
    let mut out = BTreeMap::new();
    for i in 0..1000 {
        let ch = format!("{prefix}{i}");
        let port = rc
            .master_port(channel_slot("sb:", &ch))
            .expect("every slot has a master");
        out.entry(port).or_insert(ch);
        if out.len() == masters {
            break;
        }
    }
    out
}
