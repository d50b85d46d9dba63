use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use super::*;

fn parse(args: &[&str], env: &[(&str, &str)]) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let argv = std::iter::once("switchboard").chain(args.iter().copied());
    Config::parse_from(argv, &|name| env.get(name).cloned())
}

/// Writes a config file unique to this test and returns its path.
fn file(name: &str, text: &str) -> PathBuf {
    let path = std::env::temp_dir().join(format!(
        "switchboard-config-{}-{name}.toml",
        std::process::id()
    ));
    std::fs::write(&path, text).unwrap();
    path
}

fn with_file(
    name: &str,
    text: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<Config, ConfigError> {
    let path = file(name, text);
    let path_s = path.to_str().unwrap().to_owned();
    let mut all = vec!["--config", path_s.as_str()];
    all.extend_from_slice(args);
    let result = parse(&all, env);
    let _ = std::fs::remove_file(&path);
    result
}

/// The setting and source of an `Invalid` error; panics on anything else.
fn invalid_of(result: Result<Config, ConfigError>) -> (&'static str, Source, String) {
    match result {
        Err(ConfigError::Invalid {
            setting,
            from,
            value,
            ..
        }) => (setting, from, value),
        other => panic!("expected Invalid, got {other:?}"),
    }
}

fn flag_err(args: &[&str]) -> &'static str {
    let (setting, from, _) = invalid_of(parse(args, &[]));
    assert_eq!(from, Source::Flag);
    setting
}

#[test]
fn defaults() {
    let c = parse(&[], &[]).unwrap();
    assert_eq!(c.listen, "127.0.0.1:8080".parse().unwrap());
    assert!(c.threads >= 1);
    assert_eq!(c.redis, None);
    assert_eq!(c.redis_prefix, "sb:");
    assert_eq!(c.hmac_secret, None);
    assert_eq!(c.api_key, None);
    assert!(c.history.is_empty() && c.no_client_publish.is_empty());
    assert!(c.no_presence.is_empty() && c.allowed_origin.is_empty());
    assert_eq!(c.presence_ttl, Duration::from_secs(30));
    assert_eq!(c.heartbeat, Duration::from_secs(25));
    assert_eq!(c.max_message_bytes, 65536);
    assert_eq!(c.max_channels, 128);
    assert_eq!((c.rate, c.burst), (100, 200));
    assert_eq!(c.outbound_limit, 4_194_304);
    assert_eq!(c.send_buffer, 65_536);
    assert_eq!(c.max_connections, 0);
    assert_eq!(c.drain, Duration::from_secs(5));
    assert!(!c.autobahn_echo);
    assert_eq!(c.handshake_timeout, Duration::from_secs(10));
    assert!(!c.compression);
    assert_eq!(c.compression_min_bytes, 128);
    assert_eq!(c.compress_from(), None);
}

#[test]
fn default_node_is_random_and_valid() {
    let a = parse(&[], &[]).unwrap().node;
    let b = parse(&[], &[]).unwrap().node;
    assert_eq!(a.len(), 9);
    assert!(a.starts_with('n'));
    assert!(value::node_id(&a).is_ok());
    assert_ne!(a, b);
}

#[test]
fn every_flag_sets_its_field() {
    let c = parse(
        &[
            "--listen",
            "0.0.0.0:9000",
            "--threads",
            "3",
            "--node",
            "n1",
            "--redis",
            "redis://h:1/2",
            "--redis-prefix",
            "x:",
            "--hmac-secret",
            "s",
            "--api-key",
            "k",
            "--history",
            "doc=10",
            "--no-client-publish",
            "ro",
            "--no-presence",
            "big",
            "--presence-ttl",
            "7",
            "--heartbeat",
            "2",
            "--max-message-bytes",
            "1000",
            "--max-channels",
            "4",
            "--rate",
            "5",
            "--burst",
            "6",
            "--outbound-limit",
            "2000",
            "--send-buffer",
            "0",
            "--max-connections",
            "9",
            "--allowed-origin",
            "https://a.example",
            "--drain-s",
            "0",
            "--autobahn-echo",
            "--handshake-timeout-s",
            "3",
            "--compression",
            "--compression-min-bytes",
            "64",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.listen, "0.0.0.0:9000".parse().unwrap());
    assert_eq!((c.threads, c.node.as_str()), (3, "n1"));
    assert_eq!(c.redis.as_deref(), Some("redis://h:1/2"));
    assert_eq!(c.redis_prefix, "x:");
    assert_eq!(c.hmac_secret.as_deref(), Some("s"));
    assert_eq!(c.api_key.as_deref(), Some("k"));
    assert_eq!(c.history, vec![("doc".to_string(), 10)]);
    assert_eq!(c.no_client_publish, vec!["ro"]);
    assert_eq!(c.no_presence, vec!["big"]);
    assert_eq!(c.presence_ttl, Duration::from_secs(7));
    assert_eq!(c.heartbeat, Duration::from_secs(2));
    assert_eq!((c.max_message_bytes, c.max_channels), (1000, 4));
    assert_eq!((c.rate, c.burst), (5, 6));
    assert_eq!((c.outbound_limit, c.max_connections), (2000, 9));
    assert_eq!(c.send_buffer, 0);
    assert_eq!(c.allowed_origin, vec!["https://a.example"]);
    assert_eq!(c.drain, Duration::ZERO);
    assert!(c.autobahn_echo);
    assert_eq!(c.handshake_timeout, Duration::from_secs(3));
    assert!(c.compression);
    assert_eq!(c.compress_from(), Some(64));
}

#[test]
fn scalar_precedence_flag_env_file_default() {
    let file = "heartbeat = 7\n";
    let env = [("SWITCHBOARD_HEARTBEAT", "8")];
    let hb = |c: Result<Config, ConfigError>| c.unwrap().heartbeat.as_secs();
    assert_eq!(hb(with_file("p1", file, &["--heartbeat", "9"], &env)), 9);
    assert_eq!(hb(with_file("p2", file, &[], &env)), 8);
    assert_eq!(hb(with_file("p3", file, &[], &[])), 7);
    assert_eq!(hb(parse(&[], &[])), 25);
}

#[test]
fn list_precedence_takes_the_whole_list_from_one_source() {
    let file = "history = [\"f=1\", \"g=2\"]\n";
    let env = [("SWITCHBOARD_HISTORY", "e=3")];
    let h = |c: Result<Config, ConfigError>| c.unwrap().history;
    assert_eq!(
        h(with_file(
            "l1",
            file,
            &["--history", "a=4", "--history", "b=5"],
            &env
        )),
        vec![("a".to_string(), 4), ("b".to_string(), 5)]
    );
    assert_eq!(
        h(with_file("l2", file, &[], &env)),
        vec![("e".to_string(), 3)]
    );
    assert_eq!(
        h(with_file("l3", file, &[], &[])),
        vec![("f".to_string(), 1), ("g".to_string(), 2)]
    );
    assert!(h(parse(&[], &[])).is_empty());
}

#[test]
fn env_lists_are_comma_separated_and_trimmed() {
    let c = parse(
        &[],
        &[
            ("SWITCHBOARD_NO_PRESENCE", " big , huge,"),
            (
                "SWITCHBOARD_ALLOWED_ORIGIN",
                "https://a.example,http://b.example:8080",
            ),
        ],
    )
    .unwrap();
    assert_eq!(c.no_presence, vec!["big", "huge"]);
    assert_eq!(
        c.allowed_origin,
        vec!["https://a.example", "http://b.example:8080"]
    );
}

#[test]
fn empty_env_var_counts_as_unset() {
    let c = with_file(
        "empty-env",
        "threads = 3",
        &[],
        &[("SWITCHBOARD_THREADS", "")],
    )
    .unwrap();
    assert_eq!(c.threads, 3);
}

#[test]
fn env_names_follow_the_rule() {
    let c = parse(
        &[],
        &[
            ("SWITCHBOARD_MAX_MESSAGE_BYTES", "1234"),
            ("SWITCHBOARD_HMAC_SECRET", "sekrit"),
            ("SWITCHBOARD_AUTOBAHN_ECHO", "yes"),
            ("SWITCHBOARD_DRAIN_S", "1"),
        ],
    )
    .unwrap();
    assert_eq!(c.max_message_bytes, 1234);
    assert_eq!(c.hmac_secret.as_deref(), Some("sekrit"));
    assert!(c.autobahn_echo);
    assert_eq!(c.drain, Duration::from_secs(1));
}

#[test]
fn file_keys_with_dash_and_underscore() {
    let c = with_file(
        "keys",
        "max-message-bytes = 2000\nmax_channels = 5\nno_presence = [\"big\"]\nautobahn_echo = true\n",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!((c.max_message_bytes, c.max_channels), (2000, 5));
    assert_eq!(c.no_presence, vec!["big"]);
    assert!(c.autobahn_echo);
}

#[test]
fn file_key_given_both_ways_is_an_error() {
    let r = with_file("twice", "max-channels = 5\nmax_channels = 6\n", &[], &[]);
    assert!(matches!(r, Err(ConfigError::File { .. })), "{r:?}");
}

#[test]
fn unknown_file_key_is_an_error() {
    match with_file("unknown", "hearbeat = 5\n", &[], &[]) {
        Err(ConfigError::UnknownKey { key, .. }) => assert_eq!(key, "hearbeat"),
        other => panic!("{other:?}"),
    }
    // `config` is a flag, not a setting a file may hold.
    assert!(matches!(
        with_file("nested", "config = \"x.toml\"\n", &[], &[]),
        Err(ConfigError::UnknownKey { .. })
    ));
}

#[test]
fn file_history_as_table_and_single_string_list() {
    let c = with_file(
        "table",
        "allowed-origin = \"https://a.example\"\n[history]\ndoc = 100\n\"*\" = 5\n",
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(c.allowed_origin, vec!["https://a.example"]);
    assert!(c.history.contains(&("doc".to_string(), 100)));
    assert!(c.history.contains(&("*".to_string(), 5)));
}

#[test]
fn file_type_errors() {
    for (name, text, setting) in [
        ("float", "threads = 2.0", "threads"),
        ("bool-for-int", "rate = true", "rate"),
        ("array-for-one", "listen = [\"a\"]", "listen"),
        ("int-list", "no-presence = [1]", "no-presence"),
        ("int-switch", "autobahn-echo = 1", "autobahn-echo"),
        ("str-count", "[history]\ndoc = \"5\"", "history"),
        ("negative", "max-channels = -1", "max-channels"),
    ] {
        let (s, from, _) = invalid_of(with_file(name, text, &[], &[]));
        assert_eq!((s, from), (setting, Source::File), "{name}");
    }
}

#[test]
fn bad_toml_and_missing_file() {
    assert!(matches!(
        with_file("syntax", "threads = = 3", &[], &[]),
        Err(ConfigError::File { .. })
    ));
    assert!(matches!(
        parse(&["--config", "/nonexistent/switchboard.toml"], &[]),
        Err(ConfigError::File { .. })
    ));
}

#[test]
fn config_path_from_env_and_flag_beats_it() {
    let a = file("env-a", "threads = 3");
    let b = file("env-b", "threads = 4");
    let env = [("SWITCHBOARD_CONFIG", a.to_str().unwrap())];
    assert_eq!(parse(&[], &env).unwrap().threads, 3);
    assert_eq!(
        parse(&["--config", b.to_str().unwrap()], &env)
            .unwrap()
            .threads,
        4
    );
    let _ = (std::fs::remove_file(a), std::fs::remove_file(b));
}

#[test]
fn validation_errors_name_the_setting() {
    for (args, setting) in [
        (&["--threads", "0"][..], "threads"),
        (&["--threads", "x"], "threads"),
        (&["--threads=-1"], "threads"),
        (&["--threads", "1025"], "threads"),
        (&["--listen", "localhost:80"], "listen"),
        (&["--listen", "1.2.3.4"], "listen"),
        (&["--node", ""], "node"),
        (&["--node", "a b"], "node"),
        (&["--node", "n*"], "node"),
        (&["--node", &"x".repeat(33)], "node"),
        (&["--redis", "localhost:6379"], "redis"),
        (&["--redis", "rediss//h"], "redis"),
        (&["--tls-cert", "c.pem"], "tls-cert"),
        (&["--tls-key", "k.pem"], "tls-key"),
        (&["--redis-ca", "ca.pem"], "redis-ca"),
        (
            &["--redis", "redis://h", "--redis-ca", "ca.pem"],
            "redis-ca",
        ),
        (&["--redis", "redis://h:0"], "redis"),
        (&["--redis", "redis://h/x"], "redis"),
        (&["--redis", "redis://"], "redis"),
        (&["--redis-prefix", "a b"], "redis-prefix"),
        (&["--hmac-secret", ""], "hmac-secret"),
        (&["--api-key", "a b"], "api-key"),
        (&["--api-key", ""], "api-key"),
        (&["--history", "doc=x"], "history"),
        (&["--history", "doc=0"], "history"),
        (&["--history", "doc"], "history"),
        (&["--history", "a:b=3"], "history"),
        (&["--history", "doc=1", "--history", "doc=2"], "history"),
        (&["--no-client-publish", "a:b"], "no-client-publish"),
        (&["--no-presence", "a b"], "no-presence"),
        (&["--presence-ttl", "0"], "presence-ttl"),
        (&["--heartbeat", "0"], "heartbeat"),
        (&["--heartbeat", "1.5"], "heartbeat"),
        (&["--heartbeat", "86401"], "heartbeat"),
        (&["--max-message-bytes", "0"], "max-message-bytes"),
        (&["--max-channels", "0"], "max-channels"),
        (&["--rate", "0"], "rate"),
        (&["--burst", "0"], "burst"),
        (&["--outbound-limit", "0"], "outbound-limit"),
        (&["--outbound-limit", "100"], "outbound-limit"),
        (&["--send-buffer=-1"], "send-buffer"),
        (&["--send-buffer", "67108865"], "send-buffer"),
        (&["--max-connections=-1"], "max-connections"),
        (
            &["--allowed-origin", "https://a.example/"],
            "allowed-origin",
        ),
        (&["--allowed-origin", "a.example"], "allowed-origin"),
        (&["--drain-s", "x"], "drain-s"),
        (&["--handshake-timeout-s", "0"], "handshake-timeout-s"),
    ] {
        assert_eq!(flag_err(args), setting, "{args:?}");
    }
}

#[test]
fn validation_errors_from_env_and_across_settings() {
    let (s, from, _) = invalid_of(parse(&[], &[("SWITCHBOARD_AUTOBAHN_ECHO", "maybe")]));
    assert_eq!((s, from), ("autobahn-echo", Source::Env));
    // The default outbound limit is below a raised message limit.
    let (s, from, value) = invalid_of(parse(&["--max-message-bytes", "8388608"], &[]));
    assert_eq!(
        (s, from, value.as_str()),
        ("outbound-limit", Source::Default, "4194304")
    );
}

#[test]
fn valid_edge_values() {
    let c = parse(
        &[
            "--listen",
            "[::1]:0",
            "--node",
            "a-Z_0:.@=/",
            "--history",
            "=3",
            "--history",
            "a=b=4",
            "--allowed-origin",
            "null",
            "--max-message-bytes",
            "4194304",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.listen.port(), 0);
    assert_eq!(c.history, vec![("".to_string(), 3), ("a=b".to_string(), 4)]);
    assert_eq!(c.history_for("lobby"), Some(3));
    assert_eq!(c.history_for("a=b:1"), Some(4));
}

#[test]
fn error_messages_name_source_and_reason() {
    let e = parse(&[], &[("SWITCHBOARD_THREADS", "0")])
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("threads") && e.contains("SWITCHBOARD_THREADS") && e.contains("between"),
        "{e}"
    );
    let e = parse(&["--threads", "0"], &[]).unwrap_err().to_string();
    assert!(e.contains("--threads"), "{e}");
}

#[test]
fn secrets_never_shown() {
    let c = parse(
        &[
            "--hmac-secret",
            "hunter2",
            "--api-key",
            "k3y-value",
            "--redis",
            "redis://u:pw123@h:1",
        ],
        &[],
    )
    .unwrap();
    let d = format!("{c:?}");
    assert!(
        !d.contains("hunter2") && !d.contains("k3y-value") && !d.contains("pw123"),
        "{d}"
    );
    assert!(d.contains("***") && d.contains("redis://u:***@h:1"), "{d}");
    assert!(!format!("{:?}", c.redis_url().unwrap()).contains("pw123"));

    let e = parse(&["--api-key", "bad key"], &[]).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("bad key"));
    let e = parse(&["--redis", "redis://:p/ss@h:x"], &[]).unwrap_err();
    assert!(!format!("{e} {e:?}").contains("p/ss"), "{e}");
}

#[test]
fn help_and_version_are_clap_errors_that_exit_zero() {
    match parse(&["--help"], &[]) {
        Err(ConfigError::Cli(e)) => {
            assert_eq!(e.kind(), clap::error::ErrorKind::DisplayHelp);
            assert_eq!(e.exit_code(), 0);
        }
        other => panic!("{other:?}"),
    }
    match parse(&["--version"], &[]) {
        Err(ConfigError::Cli(e)) => assert_eq!(e.exit_code(), 0),
        other => panic!("{other:?}"),
    }
    match parse(&["--no-such-flag"], &[]) {
        Err(ConfigError::Cli(e)) => assert_ne!(e.exit_code(), 0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn help_names_every_env_var_and_default() {
    let help = cli::command().render_long_help().to_string();
    for key in Setting::ALL {
        assert!(
            help.contains(&format!("--{}", key.name())),
            "{}",
            key.name()
        );
        assert!(help.contains(&key.env_name()), "{}", key.env_name());
    }
    assert!(help.contains("SWITCHBOARD_CONFIG"));
    assert!(help.contains("[default: 127.0.0.1:8080]"));
    assert!(help.contains("[default: 4194304]"));
}

#[test]
fn namespace_of_channels() {
    assert_eq!(namespace("doc:42"), "doc");
    assert_eq!(namespace("doc:42:x"), "doc");
    assert_eq!(namespace("lobby"), "");
    assert_eq!(namespace(":x"), "");
}

#[test]
fn history_for_by_namespace_with_star_fallback() {
    let c = parse(&["--history", "doc=100", "--history", "chat=5"], &[]).unwrap();
    assert_eq!(c.history_for("doc:42"), Some(100));
    assert_eq!(c.history_for("chat:1"), Some(5));
    assert_eq!(c.history_for("docs:1"), None);
    assert_eq!(c.history_for("doc"), None);
    let c = parse(&["--history", "*=7", "--history", "doc=100"], &[]).unwrap();
    assert_eq!(c.history_for("doc:1"), Some(100));
    assert_eq!(c.history_for("other:1"), Some(7));
    assert_eq!(c.history_for("lobby"), Some(7));
}

#[test]
fn presence_and_publish_by_namespace() {
    let c = parse(
        &["--no-presence", "big", "--no-client-publish", "news"],
        &[],
    )
    .unwrap();
    assert!(!c.presence_on("big:1"));
    assert!(c.presence_on("bigger:1"));
    assert!(c.presence_on("news:1"));
    assert!(!c.client_publish_allowed("news:1"));
    assert!(c.client_publish_allowed("big:1"));
    let c = parse(&["--no-presence", "*", "--no-client-publish", "*"], &[]).unwrap();
    assert!(!c.presence_on("any:1") && !c.presence_on("lobby"));
    assert!(!c.client_publish_allowed("lobby"));
    let c = parse(&["--no-presence", ""], &[]).unwrap();
    assert!(!c.presence_on("lobby"));
    assert!(c.presence_on("doc:1"));
}

#[test]
fn origin_allowed_rules() {
    let any = parse(&[], &[]).unwrap();
    assert!(any.origin_allowed(Some("https://evil.example")));
    let c = parse(&["--allowed-origin", "https://a.example"], &[]).unwrap();
    assert!(c.origin_allowed(Some("https://a.example")));
    assert!(c.origin_allowed(Some("HTTPS://A.example")));
    assert!(!c.origin_allowed(Some("https://b.example")));
    assert!(!c.origin_allowed(Some("http://a.example")));
    assert!(c.origin_allowed(None));
    let star = parse(&["--allowed-origin", "*"], &[]).unwrap();
    assert!(star.origin_allowed(Some("https://b.example")));
}

#[test]
fn redis_redaction() {
    assert_eq!(
        redis_url::redact("redis://u:pw@h:1/0"),
        "redis://u:***@h:1/0"
    );
    assert_eq!(redis_url::redact("redis://:pw@h"), "redis://:***@h");
    assert_eq!(redis_url::redact("redis://h:1"), "redis://h:1");
    assert_eq!(redis_url::redact("redis://a/b:pw@h"), "redis://***@h");
}

#[test]
fn every_key_has_a_flag_and_round_trips_its_file_name() {
    let cmd = cli::command();
    for key in Setting::ALL {
        let id = key.name().replace('-', "_");
        assert!(
            cmd.get_arguments().any(|a| a.get_id() == id.as_str()),
            "{id}"
        );
        assert_eq!(Setting::from_file_key(key.name()), Some(key));
        assert_eq!(Setting::from_file_key(&id), Some(key));
    }
}

#[test]
fn redis_cluster_seeds_repeat_and_hide_their_password() {
    let c = parse(
        &[
            "--redis-cluster",
            "redis://u:pw123@h1:7000",
            "--redis-cluster",
            "redis://u:pw123@h2",
        ],
        &[],
    )
    .unwrap();
    assert_eq!(c.redis, None);
    let urls = c.redis_cluster_urls();
    assert_eq!(urls.len(), 2);
    assert_eq!((urls[0].host.as_str(), urls[0].port), ("h1", 7000));
    assert_eq!((urls[1].host.as_str(), urls[1].port), ("h2", 6379));
    assert_eq!(urls[1].password.as_deref(), Some("pw123"));
    assert!(!format!("{c:?}").contains("pw123"), "{c:?}");

    let env = parse(
        &[],
        &[("SWITCHBOARD_REDIS_CLUSTER", "redis://a:1,redis://b:2")],
    )
    .unwrap();
    assert_eq!(env.redis_cluster.len(), 2);
}

#[test]
fn redis_cluster_refusals_name_the_settings() {
    let e = parse(
        &[
            "--redis",
            "redis://h:1",
            "--redis-cluster",
            "redis://u:pw9@h:2",
        ],
        &[],
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("--redis-cluster") && e.contains("with --redis:") && !e.contains("pw9"),
        "{e}"
    );
    for (args, setting) in [
        (&["--redis-cluster", "redis://h:1/2"][..], "redis-cluster"),
        (&["--redis-cluster", "h:1"], "redis-cluster"),
        (
            &["--redis-cluster", "redis://h:1", "--redis-prefix", "a{b"],
            "redis-prefix",
        ),
    ] {
        match parse(args, &[]) {
            Err(ConfigError::Invalid { setting: s, .. }) => assert_eq!(s, setting, "{args:?}"),
            other => panic!("{args:?}: {other:?}"),
        }
    }
}

#[test]
fn token_key_settings() {
    let c = parse(&[], &[]).unwrap();
    assert!(!c.auth_on());
    assert_eq!(c.jwks_refresh, Duration::from_secs(300));
    assert_eq!(c.jwt_leeway_s, 60);
    let c = parse(
        &[
            "--jwks",
            "HTTPS://id.example.com/.well-known/jwks.json",
            "--jwks-refresh-s",
            "30",
            "--jwt-audience",
            "api",
            "--jwt-leeway-s",
            "0",
        ],
        &[
            ("SWITCHBOARD_JWT_PUBLIC_KEY", "/etc/sb/key.pem"),
            ("SWITCHBOARD_JWT_ISSUER", "https://id.example.com/"),
        ],
    )
    .unwrap();
    assert!(c.auth_on());
    assert_eq!(c.jwt_public_key, Some(PathBuf::from("/etc/sb/key.pem")));
    assert_eq!(c.jwks_refresh, Duration::from_secs(30));
    assert_eq!(c.jwt_audience.as_deref(), Some("api"));
    assert_eq!(c.jwt_issuer.as_deref(), Some("https://id.example.com/"));
    assert_eq!(c.jwt_leeway_s, 0);
    // A file path is a JWKS source too.
    assert_eq!(
        parse(&["--jwks", "keys/jwks.json"], &[])
            .unwrap()
            .jwks
            .as_deref(),
        Some("keys/jwks.json")
    );
    for bad in [
        &["--jwks", "ftp://x/jwks"][..],
        &["--jwks", "https://"],
        &["--jwks", "http:///path"],
        &["--jwks", ""],
        &["--jwks-refresh-s", "0"],
        &["--jwt-leeway-s", "86401"],
        &["--jwt-leeway-s", "-1"],
        &["--jwt-audience", ""],
        &["--jwt-public-key", ""],
    ] {
        assert!(parse(bad, &[]).is_err(), "{bad:?}");
    }
}
