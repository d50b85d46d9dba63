//! The command line. Every setting is an optional string here, so that clap
//! only splits arguments and the values are parsed, checked and merged with
//! the environment and file in one place (`super::resolve`). clap's own
//! `env` attribute is not used because it reads the process environment,
//! which tests must not depend on; the variable names are added to `--help`
//! by [`command`] instead.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser};

use super::source::{Layer, Raw, Setting};

const AFTER_HELP: &str = "\
Every setting is also an environment variable (SWITCHBOARD_ + the flag name, \
upper case, '_' for '-') and a key of the --config TOML file (the flag name, \
with '-' or '_'). A flag beats the environment, which beats the file. \
Repeatable flags are comma-separated lists in the environment and arrays of \
strings in the file. Prefer the environment or the file for secrets: \
command lines are visible to every local user.";

/// switchboard: WebSocket channels with presence and history.
#[derive(Parser)]
#[command(name = "switchboard", version, after_help = AFTER_HELP)]
pub(crate) struct Args {
    /// TOML file of settings [env: SWITCHBOARD_CONFIG]
    #[arg(long, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// HTTP and WebSocket address
    #[arg(long, value_name = "ADDR")]
    listen: Option<String>,
    /// Worker threads
    #[arg(long, value_name = "N")]
    threads: Option<String>,
    /// Node id in conn ids and welcome (1-32 chars of the channel alphabet)
    #[arg(long, value_name = "ID")]
    node: Option<String>,
    /// redis://[user:pass@]host[:port][/db]; none = embedded broker, one node
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
    /// Seed node of a Redis Cluster, redis://[user:pass@]host[:port] (repeatable; instead of --redis)
    #[arg(long, value_name = "URL")]
    redis_cluster: Vec<String>,
    /// Prefix of every Redis key and channel
    #[arg(long, value_name = "P")]
    redis_prefix: Option<String>,
    /// Turns JWT authentication on, with HS256 tokens
    #[arg(long, value_name = "S")]
    hmac_secret: Option<String>,
    /// Bearer key required for /api/*
    #[arg(long, value_name = "K")]
    api_key: Option<String>,
    /// Namespace NS keeps N events per channel (repeatable; NS '*' = every other)
    #[arg(long, value_name = "NS=N")]
    history: Vec<String>,
    /// Clients may not publish in namespace NS (repeatable; '*' = all)
    #[arg(long, value_name = "NS")]
    no_client_publish: Vec<String>,
    /// Channels in namespace NS keep no presence (repeatable; '*' = all)
    #[arg(long, value_name = "NS")]
    no_presence: Vec<String>,
    /// Seconds before a dead node's members leave
    #[arg(long, value_name = "S")]
    presence_ttl: Option<String>,
    /// Server ping interval in seconds; 3 silent intervals close
    #[arg(long, value_name = "S")]
    heartbeat: Option<String>,
    /// Largest client message, in bytes
    #[arg(long, value_name = "N")]
    max_message_bytes: Option<String>,
    /// Channels per connection
    #[arg(long, value_name = "N")]
    max_channels: Option<String>,
    /// Messages per second per connection
    #[arg(long, value_name = "N")]
    rate: Option<String>,
    /// Message burst per connection
    #[arg(long, value_name = "N")]
    burst: Option<String>,
    /// Bytes queued per connection before close 4008
    #[arg(long, value_name = "N")]
    outbound_limit: Option<String>,
    /// SO_SNDBUF of accepted sockets in bytes (0 = the kernel's autotuning)
    #[arg(long, value_name = "N")]
    send_buffer: Option<String>,
    /// Connections per node, further upgrades answer 503 (0 = no cap)
    #[arg(long, value_name = "N")]
    max_connections: Option<String>,
    /// Accepted Origin value (repeatable; default any)
    #[arg(long, value_name = "O")]
    allowed_origin: Vec<String>,
    /// Shutdown grace in seconds
    #[arg(long, value_name = "S")]
    drain_s: Option<String>,
    /// Serve /echo for the Autobahn conformance suite (testing only)
    #[arg(long)]
    autobahn_echo: bool,
    /// Seconds a client has to send its HTTP request head
    #[arg(long, value_name = "S")]
    handshake_timeout_s: Option<String>,
    /// PEM certificate chain: the listener speaks only TLS (https://, wss://)
    #[arg(long, value_name = "FILE")]
    tls_cert: Option<String>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 RSA or SEC1 EC)
    #[arg(long, value_name = "FILE")]
    tls_key: Option<String>,
    /// PEM CA certificates trusted for rediss:// instead of the system roots
    #[arg(long, value_name = "FILE")]
    redis_ca: Option<String>,
    /// Accept permessage-deflate offers (RFC 7692)
    #[arg(long)]
    compression: bool,
    /// Messages shorter than this are sent uncompressed
    #[arg(long, value_name = "N")]
    compression_min_bytes: Option<String>,
    /// PEM public key (RSA, EC P-256/P-384, Ed25519) for RS*/PS256/ES*/EdDSA tokens
    #[arg(long, value_name = "FILE")]
    jwt_public_key: Option<String>,
    /// JSON Web Key Set: a file path or an http(s):// URL; keys chosen by kid
    #[arg(long, value_name = "SOURCE")]
    jwks: Option<String>,
    /// Seconds between fetches of a --jwks URL
    #[arg(long, value_name = "S")]
    jwks_refresh_s: Option<String>,
    /// Required audience: the aud claim (string or list) must contain A
    #[arg(long, value_name = "A")]
    jwt_audience: Option<String>,
    /// Required issuer: the iss claim must equal I
    #[arg(long, value_name = "I")]
    jwt_issuer: Option<String>,
    /// Clock leeway in seconds for exp and nbf
    #[arg(long, value_name = "S")]
    jwt_leeway_s: Option<String>,
}

/// The clap command, with each setting's environment variable and default
/// appended to its help line (defaults come from `super::default_text`, so
/// help cannot drift from the code).
pub(crate) fn command() -> clap::Command {
    let mut cmd = Args::command();
    for key in Setting::ALL {
        let id = key.name().replace('-', "_");
        if !cmd.get_arguments().any(|a| a.get_id() == id.as_str()) {
            continue; // A test checks that every key has its flag.
        }
        cmd = cmd.mut_arg(id, |arg| {
            let about = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
            let default = super::default_text(key)
                .map(|d| format!(" [default: {d}]"))
                .unwrap_or_default();
            arg.help(format!("{about} [env: {}]{default}", key.env_name()))
        });
    }
    cmd
}

/// Splits the command line. `Err` holds clap's error, `--help` and
/// `--version` included (its `exit` prints them and exits 0).
pub(crate) fn parse<I, T>(args: I) -> Result<Args, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let matches = command().try_get_matches_from(args)?;
    Args::from_arg_matches(&matches)
}

impl Args {
    /// The settings given as flags.
    pub(crate) fn layer(&self) -> Layer {
        let mut layer = Layer::default();
        let one = [
            (Setting::Listen, &self.listen),
            (Setting::Threads, &self.threads),
            (Setting::Node, &self.node),
            (Setting::Redis, &self.redis),
            (Setting::RedisPrefix, &self.redis_prefix),
            (Setting::HmacSecret, &self.hmac_secret),
            (Setting::ApiKey, &self.api_key),
            (Setting::PresenceTtl, &self.presence_ttl),
            (Setting::Heartbeat, &self.heartbeat),
            (Setting::MaxMessageBytes, &self.max_message_bytes),
            (Setting::MaxChannels, &self.max_channels),
            (Setting::Rate, &self.rate),
            (Setting::Burst, &self.burst),
            (Setting::OutboundLimit, &self.outbound_limit),
            (Setting::SendBuffer, &self.send_buffer),
            (Setting::MaxConnections, &self.max_connections),
            (Setting::DrainS, &self.drain_s),
            (Setting::HandshakeTimeoutS, &self.handshake_timeout_s),
            (Setting::TlsCert, &self.tls_cert),
            (Setting::TlsKey, &self.tls_key),
            (Setting::RedisCa, &self.redis_ca),
            (Setting::CompressionMinBytes, &self.compression_min_bytes),
            (Setting::JwtPublicKey, &self.jwt_public_key),
            (Setting::Jwks, &self.jwks),
            (Setting::JwksRefreshS, &self.jwks_refresh_s),
            (Setting::JwtAudience, &self.jwt_audience),
            (Setting::JwtIssuer, &self.jwt_issuer),
            (Setting::JwtLeewayS, &self.jwt_leeway_s),
        ];
        for (key, value) in one {
            if let Some(v) = value {
                layer.set(key, Raw::One(v.clone()));
            }
        }
        let many = [
            (Setting::History, &self.history),
            (Setting::RedisCluster, &self.redis_cluster),
            (Setting::NoClientPublish, &self.no_client_publish),
            (Setting::NoPresence, &self.no_presence),
            (Setting::AllowedOrigin, &self.allowed_origin),
        ];
        for (key, values) in many {
            if !values.is_empty() {
                layer.set(key, Raw::Many(values.clone()));
            }
        }
        // A switch flag can only turn the setting on; absent, it defers to
        // the environment and the file.
        if self.autobahn_echo {
            layer.set(Setting::AutobahnEcho, Raw::One("true".to_owned()));
        }
        if self.compression {
            layer.set(Setting::Compression, Raw::One("true".to_owned()));
        }
        layer
    }
}
