//! `rediss://` on a Redis Cluster (PROTOCOL.md 1.1 §13): six
//! `redis-server`s with a TLS port each, the cluster bus and replication
//! over TLS (`--tls-cluster yes`), certificates made here; two switchboard
//! nodes given only the TLS ports as `--redis-cluster rediss://…` seeds and
//! the test CA as `--redis-ca`. The slot map they read over TLS names the
//! nodes' TLS ports, so every link to every master is TLS: a channel on
//! each master carries actions both ways.

mod common;

use common::*;

#[test]
fn rediss_cluster_carries_a_channel_on_every_master() {
    let certs = Certs::new("rediss-cluster");
    let Some(rc) = RedisCluster::start_tls(&certs) else {
        return;
    };
    let ca = path_str(&certs.ca);
    let mut args: Vec<String> = Vec::new();
    for u in rc.tls_urls() {
        args.extend(["--redis-cluster".to_owned(), u]);
    }
    args.extend(["--redis-ca".to_owned(), ca]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let a = Server::start_node("na", &args);
    let b = Server::start_node("nb", &args);
    for node in [&a, &b] {
        wait_health(node, 200, TIMEOUT);
    }
    let chans = one_channel_per_master(&rc, "tls:");
    assert_eq!(chans.len(), 3, "a channel on each master: {chans:?}");
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    for ch in chans.values() {
        a1.join(ch);
        b1.join(ch);
    }
    for ch in chans.values() {
        until_delivered(&mut a1, &mut b1, ch, TIMEOUT);
        until_delivered(&mut b1, &mut a1, ch, TIMEOUT);
    }
    // Every worker's link to every master is on its TLS port (`laddr` in
    // `CLIENT LIST`); on the plain port only the test's inspection client.
    for port in rc.master_ports() {
        let i = rc
            .nodes
            .iter()
            .position(|n| n.port == port)
            .expect("a node");
        let tls = format!("laddr=127.0.0.1:{} ", rc.tls_ports[i]);
        let plain = format!("laddr=127.0.0.1:{port} ");
        let clients = rc.node(port).client_list();
        let on = |laddr: &str| clients.iter().filter(|c| c.contains(laddr)).count();
        assert!(on(&tls) >= 4, "master {port}: {clients:#?}");
        assert_eq!(on(&plain), 1, "master {port}: {clients:#?}");
    }
}
