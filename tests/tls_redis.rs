//! `rediss://` (PROTOCOL.md §11): the Redis link over TLS against a
//! `redis-server` with a TLS port and certificates made here, verified
//! against `--redis-ca`; an untrusted Redis certificate is refused.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// A `redis-server` with a TLS port beside the plain one (the plain one is
/// for the test's own inspection client); returns it and the TLS port.
fn tls_redis(certs: &Certs) -> Option<(RedisServer, u16)> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port()
        .to_string();
    let (cert, key, ca) = (
        path_str(&certs.cert),
        path_str(&certs.key),
        path_str(&certs.ca),
    );
    let redis = RedisServer::start_with(&[
        "--tls-port",
        &port,
        "--tls-cert-file",
        &cert,
        "--tls-key-file",
        &key,
        "--tls-ca-cert-file",
        &ca,
        "--tls-auth-clients",
        "no",
    ])?;
    Some((redis, port.parse().unwrap()))
}

#[test]
fn rediss_carries_the_cluster_and_survives_a_redis_restart() {
    let certs = Certs::new("rediss-ok");
    let Some((mut redis, port)) = tls_redis(&certs) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{port}");
    let ca = path_str(&certs.ca);
    let a = redis_node_url("na", &url, &["--redis-ca", &ca], true);
    let b = redis_node_url("nb", &url, &["--redis-ca", &ca], true);
    let ch = "room:tls";
    let mut a1 = a.connect("user=a1");
    let mut b1 = b.connect("user=b1");
    a1.join(ch);
    b1.join(ch);
    until_delivered(&mut a1, &mut b1, ch, TIMEOUT);
    until_delivered(&mut b1, &mut a1, ch, TIMEOUT);
    // The links are TLS clients of Redis (CLIENT LIST shows no TLS flag,
    // so count them against the plain port's lone inspection client).
    let clients = redis.client_list();
    assert_eq!(clients.len(), 5, "{clients:#?}");

    redis.kill();
    for node in [&a, &b] {
        wait_health(node, 503, TIMEOUT);
    }
    redis.restart();
    for node in [&a, &b] {
        wait_health(node, 200, TIMEOUT);
    }
    until_delivered(&mut a1, &mut b1, ch, TIMEOUT);
    until_delivered(&mut b1, &mut a1, ch, TIMEOUT);
}

#[test]
fn an_untrusted_redis_certificate_is_refused_and_healthz_stays_503() {
    let certs = Certs::new("rediss-theirs");
    let ours = Certs::new("rediss-ours");
    let Some((_redis, port)) = tls_redis(&certs) else {
        return;
    };
    let url = format!("rediss://127.0.0.1:{port}");
    // Trusting another CA, then the system's roots: neither signed it.
    let ca = path_str(&ours.ca);
    let with_ca = redis_node_url("nc", &url, &["--redis-ca", &ca], false);
    let system = redis_node_url("ns", &url, &[], false);
    for node in [&with_ca, &system] {
        // Refused on the first connect and again on a retry, and unhealthy
        // all along.
        let deadline = Instant::now() + TIMEOUT;
        while node.log_text().matches("redis TLS failed").count() < 3 {
            assert!(
                Instant::now() < deadline,
                "no TLS refusals logged:\n{}",
                node.log_text()
            );
            assert_eq!(node.http_get("/healthz").status, 503);
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(node.http_get("/healthz").status, 503);
        assert!(
            node.log_text().contains("UnknownIssuer"),
            "{}",
            node.log_text()
        );
    }
}

#[test]
fn redis_ca_without_rediss_and_a_missing_ca_file_stop_the_start() {
    let certs = Certs::new("rediss-cfg");
    let missing = certs.dir.join("nope.pem");
    for (url, ca, want) in [
        ("redis://127.0.0.1:1", path_str(&certs.ca), "rediss://"),
        ("rediss://127.0.0.1:1", path_str(&missing), "nope.pem"),
    ] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
            .args(["--listen", "127.0.0.1:0", "--redis", url, "--redis-ca", &ca])
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(want), "{want}: {err}");
    }
}
