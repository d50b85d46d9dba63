use bytes::Bytes;

use super::*;

fn bulk(s: &str) -> Value {
    Value::Bulk(Bytes::copy_from_slice(s.as_bytes()))
}

fn addr(host: &str, port: u16) -> NodeAddr {
    NodeAddr {
        host: host.to_owned(),
        port,
    }
}

fn asked() -> NodeAddr {
    addr("10.1.1.1", 7000)
}

fn node(endpoint: &str, port: i64, role: &str, health: &str) -> Value {
    Value::Map(vec![
        (bulk("id"), bulk("abc")),
        (bulk("port"), Value::Int(port)),
        (bulk("ip"), bulk("10.9.9.9")),
        (bulk("endpoint"), bulk(endpoint)),
        (bulk("role"), bulk(role)),
        (bulk("replication-offset"), Value::Int(72156)),
        (bulk("health"), bulk(health)),
    ])
}

fn shard(slots: &[i64], nodes: Vec<Value>) -> Value {
    Value::Map(vec![
        (
            bulk("slots"),
            Value::Array(slots.iter().map(|&s| Value::Int(s)).collect()),
        ),
        (bulk("nodes"), Value::Array(nodes)),
    ])
}

/// Three shards as `redis-cli --cluster create` splits them.
fn three_shards() -> Value {
    Value::Array(vec![
        shard(
            &[0, 5460],
            vec![
                node("127.0.0.1", 7000, "master", "online"),
                node("127.0.0.1", 7004, "replica", "online"),
            ],
        ),
        shard(
            &[5461, 10922],
            vec![
                node("127.0.0.1", 7005, "replica", "online"),
                node("127.0.0.1", 7001, "master", "online"),
            ],
        ),
        shard(
            &[10923, 16000, 16001, 16383],
            vec![node("127.0.0.1", 7002, "master", "online")],
        ),
    ])
}

#[test]
fn shards_cover_every_slot() {
    let map = SlotMap::from_shards(&three_shards(), &asked(), false).unwrap();
    assert_eq!(map.unassigned(), 0);
    assert_eq!(map.masters().len(), 3);
    assert_eq!(map.master_of(0).unwrap().1, &addr("127.0.0.1", 7000));
    assert_eq!(map.master_of(5460).unwrap().1, &addr("127.0.0.1", 7000));
    assert_eq!(map.master_of(5461).unwrap().1, &addr("127.0.0.1", 7001));
    assert_eq!(map.master_of(16383).unwrap().1, &addr("127.0.0.1", 7002));
    assert_eq!(map.master_of(16384), None);
}

#[test]
fn a_failed_master_leaves_its_slots_unassigned() {
    let reply = Value::Array(vec![
        shard(
            &[0, 99],
            vec![
                node("127.0.0.1", 7000, "master", "failed"),
                node("127.0.0.1", 7004, "replica", "online"),
            ],
        ),
        shard(
            &[100, 16383],
            vec![node("127.0.0.1", 7001, "master", "online")],
        ),
    ]);
    let map = SlotMap::from_shards(&reply, &asked(), false).unwrap();
    assert_eq!(map.unassigned(), 100);
    assert_eq!(map.master_of(50), None);
    assert_eq!(map.master_of(100).unwrap().0, 0);
}

#[test]
fn unknown_endpoint_is_the_host_asked_and_tls_port_is_used_with_tls() {
    let mut n = node("?", 7000, "master", "online");
    if let Value::Map(pairs) = &mut n {
        pairs.push((bulk("tls-port"), Value::Int(7443)));
    }
    let reply = Value::Array(vec![shard(&[0, 16383], vec![n])]);
    let plain = SlotMap::from_shards(&reply, &asked(), false).unwrap();
    assert_eq!(plain.master_of(1).unwrap().1, &addr("10.1.1.1", 7000));
    let tls = SlotMap::from_shards(&reply, &asked(), true).unwrap();
    assert_eq!(tls.master_of(1).unwrap().1, &addr("10.1.1.1", 7443));
}

#[test]
fn resp2_flat_maps_are_read_too() {
    let flat = |v: Value| match v {
        Value::Map(pairs) => Value::Array(pairs.into_iter().flat_map(|(k, v)| [k, v]).collect()),
        other => other,
    };
    let reply = Value::Array(vec![flat(shard(
        &[0, 16383],
        vec![flat(node("h", 1, "master", "online"))],
    ))]);
    let map = SlotMap::from_shards(&reply, &asked(), false).unwrap();
    assert_eq!(map.master_of(9).unwrap().1, &addr("h", 1));
}

#[test]
fn cluster_slots_reply() {
    let range = |a: i64, b: i64, host: &str, port: i64| {
        Value::Array(vec![
            Value::Int(a),
            Value::Int(b),
            Value::Array(vec![
                bulk(host),
                Value::Int(port),
                bulk("id1"),
                Value::Map(vec![]),
            ]),
            Value::Array(vec![bulk(host), Value::Int(port + 3), bulk("id2")]),
        ])
    };
    let reply = Value::Array(vec![
        range(0, 5460, "127.0.0.1", 30001),
        range(5461, 10922, "", 30002),
        range(10923, 16383, "127.0.0.1", 30003),
    ]);
    let map = SlotMap::from_slots(&reply, &asked()).unwrap();
    assert_eq!(map.unassigned(), 0);
    assert_eq!(map.master_of(6000).unwrap().1, &addr("10.1.1.1", 30002));
    assert_eq!(map.master_of(16383).unwrap().1, &addr("127.0.0.1", 30003));
}

#[test]
fn moved_updates_one_slot() {
    let mut map = SlotMap::from_shards(&three_shards(), &asked(), false).unwrap();
    let i = map.set(42, &addr("127.0.0.1", 7001)).unwrap();
    assert_eq!(i, 1);
    assert_eq!(map.master_of(42).unwrap().1, &addr("127.0.0.1", 7001));
    assert_eq!(map.master_of(41).unwrap().1, &addr("127.0.0.1", 7000));
    let new = map.set(43, &addr("127.0.0.1", 7009)).unwrap();
    assert_eq!(new, 3);
    assert_eq!(map.set(16384, &addr("h", 1)), None);
}

#[test]
fn malformed_replies() {
    let refused = Value::Error(Bytes::from_static(b"ERR unknown subcommand 'shards'"));
    assert_eq!(
        SlotMap::from_shards(&refused, &asked(), false),
        Err(MapError::Refused)
    );
    for bad in [
        Value::Int(1),
        Value::Array(vec![Value::Int(1)]),
        Value::Array(vec![shard(&[0], vec![node("h", 1, "master", "online")])]),
        Value::Array(vec![shard(&[5, 1], vec![node("h", 1, "master", "online")])]),
        Value::Array(vec![shard(
            &[0, 16384],
            vec![node("h", 1, "master", "online")],
        )]),
        Value::Array(vec![shard(&[0, 1], vec![node("h", 0, "master", "online")])]),
    ] {
        assert!(
            matches!(
                SlotMap::from_shards(&bad, &asked(), false),
                Err(MapError::Shape(_))
            ),
            "{bad:?}"
        );
    }
    assert!(SlotMap::from_slots(&Value::Array(vec![Value::Array(vec![])]), &asked()).is_err());
}
