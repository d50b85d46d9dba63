//! Every setting of PROTOCOL.md §10, from flags, the environment and a TOML
//! file, with every default in one place ([`Config::default`]).
//!
//! # Precedence
//!
//! A flag beats the environment (`SWITCHBOARD_` + the flag name upper-cased,
//! `_` for `-`), which beats the file named by `--config PATH` (or
//! `SWITCHBOARD_CONFIG`), which beats the default. A repeatable setting is
//! taken whole from the first source that gives it: `--history a=1` with
//! `SWITCHBOARD_HISTORY=b=2` keeps only `a`, so that a flag can always
//! replace what a deployment's environment says.
//!
//! # Forms
//!
//! | source | one value | repeatable | switch |
//! | --- | --- | --- | --- |
//! | flag | `--heartbeat 5` | `--history a=1 --history b=2` | `--autobahn-echo` |
//! | environment | `SWITCHBOARD_HEARTBEAT=5` | `SWITCHBOARD_HISTORY=a=1,b=2` | `SWITCHBOARD_AUTOBAHN_ECHO=true` |
//! | file | `heartbeat = 5` | `history = ["a=1", "b=2"]` (or `[history]` `a = 1`) | `autobahn-echo = true` |
//!
//! An empty environment variable counts as unset. File keys may be spelled
//! with `-` or `_`; a key that names no setting is an error (a silently
//! ignored typo is worse than a refused start), as is a float where a whole
//! number is expected. Every value passes the same parser whatever its source,
//! and an error names the setting, the source and the reason. Secrets are
//! never echoed: not in errors, not in `Debug`.
//!
//! # Namespaces
//!
//! A channel's namespace is the part before its first `:` (§5); a channel
//! without `:` is in the empty namespace `""`. In `--history`,
//! `--no-client-publish` and `--no-presence`, `*` stands for every namespace
//! (for `--history`, every namespace without an entry of its own).
//!
//! This module reads the `--config` file; nothing else in it does IO.

mod cli;
mod redis_url;
mod source;
mod value;

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::PathBuf;
use std::time::Duration;

pub use crate::resp::{RedisUrl, DEFAULT_PORT as DEFAULT_REDIS_PORT};
pub use source::Source;

use source::{Layer, Raw, Setting};

const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 8080));
const DEFAULT_REDIS_PREFIX: &str = "sb:";
const DEFAULT_PRESENCE_TTL_S: u64 = 30;
const DEFAULT_HEARTBEAT_S: u64 = 25;
const DEFAULT_MAX_MESSAGE_BYTES: usize = 64 * 1024;
const DEFAULT_MAX_CHANNELS: usize = 128;
const DEFAULT_RATE: u32 = 100;
const DEFAULT_BURST: u32 = 200;
const DEFAULT_OUTBOUND_LIMIT: usize = 4 * 1024 * 1024;
/// SO_SNDBUF asked for accepted sockets: the kernel doubles it for its
/// bookkeeping, so a socket holds at most 128 KiB of unsent bytes; about a
/// megabyte a second to a client 100 ms away (docs/reliability.md).
const DEFAULT_SEND_BUFFER: usize = 64 * 1024;
/// Largest `--send-buffer`; Linux caps it at `net.core.wmem_max` anyway.
const MAX_SEND_BUFFER: usize = 64 * 1024 * 1024;
const DEFAULT_DRAIN_S: u64 = 5;
const DEFAULT_HANDSHAKE_TIMEOUT_S: u64 = 10;
const DEFAULT_COMPRESSION_MIN_BYTES: usize = 128;
const DEFAULT_JWKS_REFRESH_S: u64 = 300;
const DEFAULT_JWT_LEEWAY_S: u64 = 60;
/// Largest `--jwt-leeway-s`: a day; more would keep dead tokens alive.
const MAX_JWT_LEEWAY_S: u64 = 86_400;

/// Most worker threads; more is a typo, not a machine.
const MAX_THREADS: usize = 1024;
/// Largest `--max-message-bytes`: one message is buffered whole.
const MAX_MESSAGE_BYTES_CAP: usize = 1 << 30;
/// Largest `--rate`, `--burst` and `--max-channels`.
const MAX_COUNT: u32 = 1_000_000;

/// The variable naming the file when `--config` is absent.
const CONFIG_ENV: &str = "SWITCHBOARD_CONFIG";

/// Every setting, resolved and checked. `Debug` hides the secrets and the
/// Redis password.
#[derive(Clone)]
pub struct Config {
    pub listen: SocketAddr,
    /// At least 1; defaults to the number of cores.
    pub threads: usize,
    /// 1-32 bytes of the channel alphabet; defaults to `n` + 8 random hex
    /// digits, enough that two nodes of a cluster started without `--node`
    /// practically never share an id (and so `conn` ids stay unique).
    pub node: String,
    /// Validated `redis://` URL; see [`Config::redis_url`] for its parts.
    pub redis: Option<String>,
    /// Validated seed URLs of a Redis Cluster (PROTOCOL.md 1.1 §13), database
    /// 0; empty unless `--redis-cluster` is given, and then `redis` is
    /// `None`. See [`Config::redis_cluster_urls`].
    pub redis_cluster: Vec<String>,
    pub redis_prefix: String,
    /// Non-empty when set; turns on §6 authentication (HS256 tokens).
    pub hmac_secret: Option<String>,
    /// A PEM public key file (§6, 1.1); turns authentication on.
    pub jwt_public_key: Option<PathBuf>,
    /// A JWKS file path or `http(s)://` URL (§6, 1.1); turns authentication
    /// on. Only the form is checked here; `auth` reads it at start.
    pub jwks: Option<String>,
    /// Between fetches of a `jwks` URL; at least 1 s.
    pub jwks_refresh: Duration,
    /// `aud` must contain this when set.
    pub jwt_audience: Option<String>,
    /// `iss` must equal this when set.
    pub jwt_issuer: Option<String>,
    /// Clock leeway on `exp` and `nbf`, in seconds (also added to the
    /// expiry deadline of a connection).
    pub jwt_leeway_s: u64,
    /// Visible ASCII when set.
    pub api_key: Option<String>,
    /// `(namespace, N)`, N >= 1, each namespace once; `*` = the rest.
    pub history: Vec<(String, usize)>,
    pub no_client_publish: Vec<String>,
    pub no_presence: Vec<String>,
    pub presence_ttl: Duration,
    /// At least 1 s.
    pub heartbeat: Duration,
    pub max_message_bytes: usize,
    pub max_channels: usize,
    pub rate: u32,
    pub burst: u32,
    /// At least `max_message_bytes`, so one message always fits.
    pub outbound_limit: usize,
    /// SO_SNDBUF of accepted sockets, bytes; 0 leaves the kernel's
    /// autotuning (up to `tcp_wmem`'s maximum, 4 MiB, per socket).
    pub send_buffer: usize,
    /// 0 = no cap.
    pub max_connections: usize,
    /// Empty = any origin (see [`Config::origin_allowed`]).
    pub allowed_origin: Vec<String>,
    pub drain: Duration,
    /// Serve `/echo` for the Autobahn conformance suite (not in PROTOCOL.md;
    /// testing only).
    pub autobahn_echo: bool,
    /// Bounds the TLS handshake too, on a TLS listener.
    pub handshake_timeout: Duration,
    /// `--tls-cert` and `--tls-key`, both or neither (PROTOCOL.md §11);
    /// read by [`crate::tls::ServerTls::load`] at start and on SIGHUP.
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// CA certificates for `rediss://`; `None`: the system's roots.
    pub redis_ca: Option<PathBuf>,
    /// Accept permessage-deflate (PROTOCOL.md section 12).
    pub compression: bool,
    /// Payloads shorter than this go out uncompressed.
    pub compression_min_bytes: usize,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            listen: DEFAULT_LISTEN,
            threads: default_threads(),
            node: random_node(),
            redis: None,
            redis_cluster: Vec::new(),
            redis_prefix: DEFAULT_REDIS_PREFIX.to_owned(),
            hmac_secret: None,
            jwt_public_key: None,
            jwks: None,
            jwks_refresh: Duration::from_secs(DEFAULT_JWKS_REFRESH_S),
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway_s: DEFAULT_JWT_LEEWAY_S,
            api_key: None,
            history: Vec::new(),
            no_client_publish: Vec::new(),
            no_presence: Vec::new(),
            presence_ttl: Duration::from_secs(DEFAULT_PRESENCE_TTL_S),
            heartbeat: Duration::from_secs(DEFAULT_HEARTBEAT_S),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            max_channels: DEFAULT_MAX_CHANNELS,
            rate: DEFAULT_RATE,
            burst: DEFAULT_BURST,
            outbound_limit: DEFAULT_OUTBOUND_LIMIT,
            send_buffer: DEFAULT_SEND_BUFFER,
            max_connections: 0,
            allowed_origin: Vec::new(),
            drain: Duration::from_secs(DEFAULT_DRAIN_S),
            autobahn_echo: false,
            handshake_timeout: Duration::from_secs(DEFAULT_HANDSHAKE_TIMEOUT_S),
            tls_cert: None,
            tls_key: None,
            redis_ca: None,
            compression: false,
            compression_min_bytes: DEFAULT_COMPRESSION_MIN_BYTES,
        }
    }
}

/// The default shown in `--help`, from the same constants as
/// [`Config::default`].
fn default_text(key: Setting) -> Option<String> {
    Some(match key {
        Setting::Listen => DEFAULT_LISTEN.to_string(),
        Setting::Threads => "number of cores".to_owned(),
        Setting::Node => "random".to_owned(),
        Setting::RedisPrefix => DEFAULT_REDIS_PREFIX.to_owned(),
        Setting::PresenceTtl => DEFAULT_PRESENCE_TTL_S.to_string(),
        Setting::Heartbeat => DEFAULT_HEARTBEAT_S.to_string(),
        Setting::MaxMessageBytes => DEFAULT_MAX_MESSAGE_BYTES.to_string(),
        Setting::MaxChannels => DEFAULT_MAX_CHANNELS.to_string(),
        Setting::Rate => DEFAULT_RATE.to_string(),
        Setting::Burst => DEFAULT_BURST.to_string(),
        Setting::OutboundLimit => DEFAULT_OUTBOUND_LIMIT.to_string(),
        Setting::SendBuffer => DEFAULT_SEND_BUFFER.to_string(),
        Setting::MaxConnections => "0".to_owned(),
        Setting::DrainS => DEFAULT_DRAIN_S.to_string(),
        Setting::HandshakeTimeoutS => DEFAULT_HANDSHAKE_TIMEOUT_S.to_string(),
        Setting::CompressionMinBytes => DEFAULT_COMPRESSION_MIN_BYTES.to_string(),
        Setting::JwksRefreshS => DEFAULT_JWKS_REFRESH_S.to_string(),
        Setting::JwtLeewayS => DEFAULT_JWT_LEEWAY_S.to_string(),
        Setting::Redis
        | Setting::RedisCluster
        | Setting::HmacSecret
        | Setting::ApiKey
        | Setting::History
        | Setting::NoClientPublish
        | Setting::NoPresence
        | Setting::AllowedOrigin
        | Setting::AutobahnEcho
        | Setting::Compression
        | Setting::JwtPublicKey
        | Setting::Jwks
        | Setting::JwtAudience
        | Setting::JwtIssuer
        | Setting::TlsCert
        | Setting::TlsKey => return None,
        Setting::RedisCa => "system roots".to_owned(),
    })
}

fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(MAX_THREADS)
}

/// `n` + 8 hex digits. `RandomState` is seeded from the OS's randomness once
/// per process, so this needs no file or syscall of its own; the time and pid
/// are mixed in for good measure.
fn random_node() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    h.write_u128(now);
    format!("n{:08x}", h.finish() as u32)
}

/// The namespace of `channel`: the part before its first `:`, or `""` for a
/// channel without `:`.
pub fn namespace(channel: &str) -> &str {
    channel.split_once(':').map_or("", |(ns, _)| ns)
}

fn listed(namespaces: &[String], ns: &str) -> bool {
    namespaces.iter().any(|n| n == ns || n == "*")
}

impl Config {
    /// Parses flags (`args[0]` is the program name), the environment (through
    /// `env`, so tests need not touch the process's) and the `--config` file.
    pub fn parse_from<I, T>(
        args: I,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError>
    where
        I: IntoIterator<Item = T>,
        T: Into<std::ffi::OsString> + Clone,
    {
        let args = cli::parse(args).map_err(ConfigError::Cli)?;
        let env_layer = Layer::from_env(env);
        let path = args
            .config
            .clone()
            .or_else(|| env(CONFIG_ENV).filter(|p| !p.is_empty()).map(PathBuf::from));
        let file_layer = match path {
            None => Layer::default(),
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|e| ConfigError::File {
                    path: path.clone(),
                    reason: e.to_string(),
                })?;
                Layer::from_toml(&text, &path)?
            }
        };
        resolve([
            (Source::Flag, args.layer()),
            (Source::Env, env_layer),
            (Source::File, file_layer),
        ])
    }

    /// From `std::env::args_os` and the process environment. A
    /// `SWITCHBOARD_*` variable that is not UTF-8 is an error rather than
    /// silently unset.
    pub fn from_env() -> Result<Config, ConfigError> {
        let names = Setting::ALL
            .iter()
            .map(|k| (k.name(), k.env_name()))
            .chain([("config", CONFIG_ENV.to_owned())]);
        for (setting, var) in names {
            if std::env::var_os(&var).is_some_and(|v| v.to_str().is_none()) {
                return Err(ConfigError::Invalid {
                    setting,
                    from: Source::Env,
                    value: "<not UTF-8>".to_owned(),
                    reason: "is not valid UTF-8".to_owned(),
                });
            }
        }
        Config::parse_from(std::env::args_os(), &|name| std::env::var(name).ok())
    }

    /// Events kept per channel for `channel` (§5): its namespace's count, else
    /// the `*` count, else `None` (no history).
    pub fn history_for(&self, channel: &str) -> Option<usize> {
        let ns = namespace(channel);
        let count = |want: &str| self.history.iter().find(|(n, _)| n == want).map(|e| e.1);
        count(ns).or_else(|| count("*"))
    }

    /// From how many payload bytes a broadcast is compressed; `None` with
    /// compression off (PROTOCOL.md section 12).
    pub fn compress_from(&self) -> Option<usize> {
        self.compression.then_some(self.compression_min_bytes)
    }

    /// Whether `channel` keeps presence: false when its namespace or `*` is
    /// in `no_presence`.
    pub fn presence_on(&self, channel: &str) -> bool {
        !listed(&self.no_presence, namespace(channel))
    }

    /// Whether clients may send `user_action` in `channel` (§6): false when
    /// its namespace or `*` is in `no_client_publish`.
    pub fn client_publish_allowed(&self, channel: &str) -> bool {
        !listed(&self.no_client_publish, namespace(channel))
    }

    /// Whether an upgrade with this `Origin` header may proceed (else 403).
    /// With no `--allowed-origin`, or `*` among them, any. A request without
    /// `Origin` is allowed: browsers always send it on WebSocket upgrades, so
    /// its absence means a non-browser client, which origin checks (a defence
    /// against cross-site pages) do not concern. Scheme and host compare
    /// ASCII case-insensitively (RFC 6454 §4 lower-cases them).
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        self.allowed_origin.is_empty()
            || self
                .allowed_origin
                .iter()
                .any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }

    /// Whether §6 authentication is on: any key source configured.
    pub fn auth_on(&self) -> bool {
        self.hmac_secret.is_some() || self.jwt_public_key.is_some() || self.jwks.is_some()
    }

    /// The parts of [`Config::redis`], checked when the configuration was
    /// read (so `Some` whenever `redis` is).
    pub fn redis_url(&self) -> Option<RedisUrl> {
        self.redis
            .as_deref()
            .and_then(|u| crate::resp::parse_url(u).ok())
    }

    /// The parts of each [`Config::redis_cluster`] seed, checked when the
    /// configuration was read.
    pub fn redis_cluster_urls(&self) -> Vec<RedisUrl> {
        self.redis_cluster
            .iter()
            .filter_map(|u| crate::resp::parse_url(u).ok())
            .collect()
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hidden = |s: &Option<String>| s.as_ref().map(|_| "***");
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("threads", &self.threads)
            .field("node", &self.node)
            .field("redis", &self.redis.as_deref().map(redis_url::redact))
            .field(
                "redis_cluster",
                &self
                    .redis_cluster
                    .iter()
                    .map(|u| redis_url::redact(u))
                    .collect::<Vec<_>>(),
            )
            .field("redis_prefix", &self.redis_prefix)
            .field("hmac_secret", &hidden(&self.hmac_secret))
            .field("jwt_public_key", &self.jwt_public_key)
            .field("jwks", &self.jwks)
            .field("jwks_refresh", &self.jwks_refresh)
            .field("jwt_audience", &self.jwt_audience)
            .field("jwt_issuer", &self.jwt_issuer)
            .field("jwt_leeway_s", &self.jwt_leeway_s)
            .field("api_key", &hidden(&self.api_key))
            .field("history", &self.history)
            .field("no_client_publish", &self.no_client_publish)
            .field("no_presence", &self.no_presence)
            .field("presence_ttl", &self.presence_ttl)
            .field("heartbeat", &self.heartbeat)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_channels", &self.max_channels)
            .field("rate", &self.rate)
            .field("burst", &self.burst)
            .field("outbound_limit", &self.outbound_limit)
            .field("send_buffer", &self.send_buffer)
            .field("max_connections", &self.max_connections)
            .field("allowed_origin", &self.allowed_origin)
            .field("drain", &self.drain)
            .field("autobahn_echo", &self.autobahn_echo)
            .field("compression", &self.compression)
            .field("compression_min_bytes", &self.compression_min_bytes)
            .field("handshake_timeout", &self.handshake_timeout)
            .field("tls_cert", &self.tls_cert)
            .field("tls_key", &self.tls_key)
            .field("redis_ca", &self.redis_ca)
            .finish()
    }
}

/// Why the configuration was refused.
#[derive(Debug)]
pub enum ConfigError {
    /// From clap: a bad command line, or `--help`/`--version`. Call
    /// [`ConfigError::exit`] to print it and exit as clap does (0 for help
    /// and version, 2 otherwise).
    Cli(clap::Error),
    /// A value that does not parse or is out of range. `setting` is the flag
    /// name without `--`; `value` is `***` for secrets.
    Invalid {
        setting: &'static str,
        from: Source,
        value: String,
        reason: String,
    },
    /// The `--config` file cannot be read, or is not TOML.
    File { path: PathBuf, reason: String },
    /// The `--config` file has a key that names no setting.
    UnknownKey { path: PathBuf, key: String },
}

impl ConfigError {
    /// Prints the error and exits: clap's own exit for [`ConfigError::Cli`],
    /// else the message on stderr and status 2 (clap's usage-error status).
    pub fn exit(self) -> ! {
        match self {
            ConfigError::Cli(e) => e.exit(),
            other => {
                eprintln!("switchboard: {other}");
                std::process::exit(2)
            }
        }
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Cli(e) => write!(f, "{e}"),
            ConfigError::Invalid {
                setting,
                from,
                value,
                reason,
            } => {
                let from = match from {
                    Source::Flag => format!("--{setting}"),
                    Source::Env => source::env_name(setting),
                    Source::File => "the config file".to_owned(),
                    Source::Default => "the default".to_owned(),
                };
                write!(f, "invalid {setting} '{value}' (from {from}): {reason}")
            }
            ConfigError::File { path, reason } => {
                write!(f, "config file {}: {reason}", path.display())
            }
            ConfigError::UnknownKey { path, key } => write!(
                f,
                "config file {}: unknown key '{key}' (keys are the flag names, e.g. max-message-bytes)",
                path.display()
            ),
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Cli(e) => Some(e),
            _ => None,
        }
    }
}

/// How a value appears in errors: secrets as `***`, Redis URLs without the
/// password.
fn shown(key: Setting, value: &str) -> String {
    if key.is_secret() {
        "***".to_owned()
    } else if matches!(key, Setting::Redis | Setting::RedisCluster) {
        redis_url::redact(value)
    } else {
        value.to_owned()
    }
}

fn invalid(key: Setting, from: Source, value: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        setting: key.name(),
        from,
        value: shown(key, value),
        reason,
    }
}

/// The sources in precedence order, highest first.
struct Resolver {
    layers: [(Source, Layer); 3],
}

impl Resolver {
    fn find(&self, key: Setting) -> Option<(Source, &Raw)> {
        self.layers
            .iter()
            .find_map(|(from, layer)| layer.get(key).map(|raw| (*from, raw)))
    }

    fn source_of(&self, key: Setting) -> Source {
        self.find(key).map_or(Source::Default, |(from, _)| from)
    }

    /// The value of a one-value setting from the first source giving it.
    fn one<T>(
        &self,
        key: Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<T>, ConfigError> {
        match self.find(key) {
            None => Ok(None),
            Some((from, Raw::One(text))) => parse(text)
                .map(Some)
                .map_err(|reason| invalid(key, from, text, reason)),
            Some((from, Raw::Many(items))) => Err(invalid(
                key,
                from,
                &items.join(","),
                "expected a single value".to_owned(),
            )),
        }
    }

    /// The items of a repeatable setting from the first source giving it.
    fn many<T>(
        &self,
        key: Setting,
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Result<Option<Vec<T>>, ConfigError> {
        let Some((from, raw)) = self.find(key) else {
            return Ok(None);
        };
        let items = match raw {
            Raw::One(text) => std::slice::from_ref(text),
            Raw::Many(items) => items.as_slice(),
        };
        items
            .iter()
            .map(|text| parse(text).map_err(|reason| invalid(key, from, text, reason)))
            .collect::<Result<Vec<T>, _>>()
            .map(Some)
    }
}

/// Merges the layers (highest precedence first) over the defaults, then
/// checks what involves more than one setting.
fn resolve(layers: [(Source, Layer); 3]) -> Result<Config, ConfigError> {
    use value::{int_in, seconds};
    let r = Resolver { layers };
    let count = |s: &str| int_in(s, 1, MAX_COUNT);
    let mut c = Config::default();

    if let Some(v) = r.one(Setting::Listen, value::socket_addr)? {
        c.listen = v;
    }
    if let Some(v) = r.one(Setting::Threads, |s| int_in(s, 1, MAX_THREADS))? {
        c.threads = v;
    }
    if let Some(v) = r.one(Setting::Node, value::node_id)? {
        c.node = v;
    }
    c.redis = r.one(Setting::Redis, |s| {
        crate::resp::parse_url(s)
            .map(|_| s.to_owned())
            .map_err(|e| e.to_string())
    })?;
    if let Some(v) = r.many(Setting::RedisCluster, value::cluster_seed)? {
        c.redis_cluster = v;
    }
    if let Some(v) = r.one(Setting::RedisPrefix, value::redis_prefix)? {
        c.redis_prefix = v;
    }
    c.hmac_secret = r.one(Setting::HmacSecret, value::secret)?;
    c.api_key = r.one(Setting::ApiKey, value::api_key)?;
    c.jwt_public_key = r.one(Setting::JwtPublicKey, value::path)?;
    c.jwks = r.one(Setting::Jwks, value::jwks_source)?;
    if let Some(v) = r.one(Setting::JwksRefreshS, |s| seconds(s, 1))? {
        c.jwks_refresh = v;
    }
    c.jwt_audience = r.one(Setting::JwtAudience, value::claim_text)?;
    c.jwt_issuer = r.one(Setting::JwtIssuer, value::claim_text)?;
    if let Some(v) = r.one(Setting::JwtLeewayS, |s| int_in(s, 0, MAX_JWT_LEEWAY_S))? {
        c.jwt_leeway_s = v;
    }
    if let Some(v) = r.many(Setting::History, value::history_entry)? {
        c.history = v;
    }
    if let Some(v) = r.many(Setting::NoClientPublish, value::namespace)? {
        c.no_client_publish = v;
    }
    if let Some(v) = r.many(Setting::NoPresence, value::namespace)? {
        c.no_presence = v;
    }
    if let Some(v) = r.one(Setting::PresenceTtl, |s| seconds(s, 1))? {
        c.presence_ttl = v;
    }
    if let Some(v) = r.one(Setting::Heartbeat, |s| seconds(s, 1))? {
        c.heartbeat = v;
    }
    if let Some(v) = r.one(Setting::MaxMessageBytes, |s| {
        int_in(s, 1, MAX_MESSAGE_BYTES_CAP)
    })? {
        c.max_message_bytes = v;
    }
    if let Some(v) = r.one(Setting::MaxChannels, |s| int_in(s, 1, MAX_COUNT as usize))? {
        c.max_channels = v;
    }
    if let Some(v) = r.one(Setting::Rate, count)? {
        c.rate = v;
    }
    if let Some(v) = r.one(Setting::Burst, count)? {
        c.burst = v;
    }
    if let Some(v) = r.one(Setting::OutboundLimit, |s| int_in(s, 1, usize::MAX))? {
        c.outbound_limit = v;
    }
    if let Some(v) = r.one(Setting::SendBuffer, |s| int_in(s, 0, MAX_SEND_BUFFER))? {
        c.send_buffer = v;
    }
    if let Some(v) = r.one(Setting::MaxConnections, |s| int_in(s, 0, usize::MAX))? {
        c.max_connections = v;
    }
    if let Some(v) = r.many(Setting::AllowedOrigin, value::origin)? {
        c.allowed_origin = v;
    }
    if let Some(v) = r.one(Setting::DrainS, |s| seconds(s, 0))? {
        c.drain = v;
    }
    if let Some(v) = r.one(Setting::AutobahnEcho, value::switch)? {
        c.autobahn_echo = v;
    }
    if let Some(v) = r.one(Setting::HandshakeTimeoutS, |s| seconds(s, 1))? {
        c.handshake_timeout = v;
    }
    c.tls_cert = r.one(Setting::TlsCert, value::path)?;
    c.tls_key = r.one(Setting::TlsKey, value::path)?;
    c.redis_ca = r.one(Setting::RedisCa, value::path)?;
    if let Some(v) = r.one(Setting::Compression, value::switch)? {
        c.compression = v;
    }
    if let Some(v) = r.one(Setting::CompressionMinBytes, |s| int_in(s, 0, usize::MAX))? {
        c.compression_min_bytes = v;
    }

    check_across(&r, &c)?;
    Ok(c)
}

fn check_across(r: &Resolver, c: &Config) -> Result<(), ConfigError> {
    if c.redis.is_some() && !c.redis_cluster.is_empty() {
        return Err(invalid(
            Setting::RedisCluster,
            r.source_of(Setting::RedisCluster),
            &c.redis_cluster[0],
            "cannot be given together with --redis: one Redis or one cluster".to_owned(),
        ));
    }
    // Every key of a channel is `PREFIX{CHANNEL}:…`: a brace in the prefix
    // would make Redis hash a different tag, splitting a channel's keys
    // over slots (CROSSSLOT in a cluster).
    if !c.redis_cluster.is_empty() && c.redis_prefix.contains(['{', '}']) {
        return Err(invalid(
            Setting::RedisPrefix,
            r.source_of(Setting::RedisPrefix),
            &c.redis_prefix,
            "must not contain '{' or '}' with --redis-cluster (they delimit hash tags)".to_owned(),
        ));
    }
    // One of the pair alone would serve plain text where TLS was meant.
    for (given, missing) in [
        (Setting::TlsCert, Setting::TlsKey),
        (Setting::TlsKey, Setting::TlsCert),
    ] {
        let set = |k| match k {
            Setting::TlsCert => c.tls_cert.as_ref(),
            _ => c.tls_key.as_ref(),
        };
        if let (Some(v), None) = (set(given), set(missing)) {
            return Err(invalid(
                given,
                r.source_of(given),
                &v.display().to_string(),
                format!("needs --{} as well", missing.name()),
            ));
        }
    }
    if let Some(ca) = &c.redis_ca {
        let tls =
            c.redis_url().is_some_and(|u| u.tls) || c.redis_cluster_urls().iter().any(|u| u.tls);
        if !tls {
            return Err(invalid(
                Setting::RedisCa,
                r.source_of(Setting::RedisCa),
                &ca.display().to_string(),
                "applies only to a rediss:// --redis or --redis-cluster URL".to_owned(),
            ));
        }
    }
    for (i, (ns, n)) in c.history.iter().enumerate() {
        if c.history.iter().take(i).any(|(earlier, _)| earlier == ns) {
            return Err(invalid(
                Setting::History,
                r.source_of(Setting::History),
                &format!("{ns}={n}"),
                format!("namespace '{ns}' is given twice"),
            ));
        }
    }
    // A message the server accepts must fit the queue of every receiver,
    // or one large broadcast would close them all with 4008.
    if c.outbound_limit < c.max_message_bytes {
        return Err(invalid(
            Setting::OutboundLimit,
            r.source_of(Setting::OutboundLimit),
            &c.outbound_limit.to_string(),
            format!(
                "must be at least max-message-bytes ({})",
                c.max_message_bytes
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
