//! The three sources of settings (flags, environment, TOML file) reduced to
//! one shape: a [`Layer`] of raw strings per [`Setting`], parsed later in one
//! place so a value means the same wherever it came from.

use std::collections::BTreeMap;
use std::path::Path;

use super::ConfigError;

/// One setting of PROTOCOL.md §10 (plus the test-only ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Setting {
    Listen,
    Threads,
    Node,
    Redis,
    RedisCluster,
    RedisPrefix,
    HmacSecret,
    ApiKey,
    History,
    NoClientPublish,
    NoPresence,
    PresenceTtl,
    Heartbeat,
    MaxMessageBytes,
    MaxChannels,
    Rate,
    Burst,
    OutboundLimit,
    SendBuffer,
    MaxConnections,
    AllowedOrigin,
    DrainS,
    AutobahnEcho,
    HandshakeTimeoutS,
    TlsCert,
    TlsKey,
    RedisCa,
    Compression,
    CompressionMinBytes,
    JwtPublicKey,
    Jwks,
    JwksRefreshS,
    JwtAudience,
    JwtIssuer,
    JwtLeewayS,
}

/// How many values a setting takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shape {
    /// One value.
    One,
    /// Repeatable: a flag per value, a comma-separated environment
    /// variable, an array in the file.
    Many,
    /// A flag without a value; `true`/`false` in the environment and file.
    Switch,
}

impl Setting {
    pub(crate) const ALL: [Setting; 35] = [
        Setting::Listen,
        Setting::Threads,
        Setting::Node,
        Setting::Redis,
        Setting::RedisCluster,
        Setting::RedisPrefix,
        Setting::HmacSecret,
        Setting::ApiKey,
        Setting::History,
        Setting::NoClientPublish,
        Setting::NoPresence,
        Setting::PresenceTtl,
        Setting::Heartbeat,
        Setting::MaxMessageBytes,
        Setting::MaxChannels,
        Setting::Rate,
        Setting::Burst,
        Setting::OutboundLimit,
        Setting::SendBuffer,
        Setting::MaxConnections,
        Setting::AllowedOrigin,
        Setting::DrainS,
        Setting::AutobahnEcho,
        Setting::HandshakeTimeoutS,
        Setting::TlsCert,
        Setting::TlsKey,
        Setting::RedisCa,
        Setting::Compression,
        Setting::CompressionMinBytes,
        Setting::JwtPublicKey,
        Setting::Jwks,
        Setting::JwksRefreshS,
        Setting::JwtAudience,
        Setting::JwtIssuer,
        Setting::JwtLeewayS,
    ];

    /// The flag name without `--`; also the canonical file key.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Setting::Listen => "listen",
            Setting::Threads => "threads",
            Setting::Node => "node",
            Setting::Redis => "redis",
            Setting::RedisCluster => "redis-cluster",
            Setting::RedisPrefix => "redis-prefix",
            Setting::HmacSecret => "hmac-secret",
            Setting::ApiKey => "api-key",
            Setting::History => "history",
            Setting::NoClientPublish => "no-client-publish",
            Setting::NoPresence => "no-presence",
            Setting::PresenceTtl => "presence-ttl",
            Setting::Heartbeat => "heartbeat",
            Setting::MaxMessageBytes => "max-message-bytes",
            Setting::MaxChannels => "max-channels",
            Setting::Rate => "rate",
            Setting::Burst => "burst",
            Setting::OutboundLimit => "outbound-limit",
            Setting::SendBuffer => "send-buffer",
            Setting::MaxConnections => "max-connections",
            Setting::AllowedOrigin => "allowed-origin",
            Setting::DrainS => "drain-s",
            Setting::AutobahnEcho => "autobahn-echo",
            Setting::HandshakeTimeoutS => "handshake-timeout-s",
            Setting::TlsCert => "tls-cert",
            Setting::TlsKey => "tls-key",
            Setting::RedisCa => "redis-ca",
            Setting::Compression => "compression",
            Setting::CompressionMinBytes => "compression-min-bytes",
            Setting::JwtPublicKey => "jwt-public-key",
            Setting::Jwks => "jwks",
            Setting::JwksRefreshS => "jwks-refresh-s",
            Setting::JwtAudience => "jwt-audience",
            Setting::JwtIssuer => "jwt-issuer",
            Setting::JwtLeewayS => "jwt-leeway-s",
        }
    }

    pub(crate) fn shape(self) -> Shape {
        match self {
            Setting::History
            | Setting::RedisCluster
            | Setting::NoClientPublish
            | Setting::NoPresence
            | Setting::AllowedOrigin => Shape::Many,
            Setting::AutobahnEcho | Setting::Compression => Shape::Switch,
            _ => Shape::One,
        }
    }

    /// Values never echoed in errors or `Debug`.
    pub(crate) fn is_secret(self) -> bool {
        matches!(self, Setting::HmacSecret | Setting::ApiKey)
    }

    /// `SWITCHBOARD_` + the flag name upper-cased, `-` as `_` (§10).
    pub(crate) fn env_name(self) -> String {
        env_name(self.name())
    }

    /// Accepts the flag spelling and the same with `_` for `-`.
    pub(crate) fn from_file_key(key: &str) -> Option<Setting> {
        let canonical = key.replace('_', "-");
        Setting::ALL.into_iter().find(|k| k.name() == canonical)
    }
}

pub(crate) fn env_name(flag: &str) -> String {
    format!(
        "SWITCHBOARD_{}",
        flag.to_ascii_uppercase().replace('-', "_")
    )
}

/// A setting's value before parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Raw {
    One(String),
    Many(Vec<String>),
}

/// Where a value came from, named in error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// A command-line flag.
    Flag,
    /// A `SWITCHBOARD_*` environment variable.
    Env,
    /// The `--config` TOML file.
    File,
    /// The built-in default (only for checks across settings).
    Default,
}

/// The values one source gives, by key.
#[derive(Debug, Default)]
pub(crate) struct Layer {
    values: BTreeMap<Setting, Raw>,
}

impl Layer {
    pub(crate) fn get(&self, key: Setting) -> Option<&Raw> {
        self.values.get(&key)
    }

    pub(crate) fn set(&mut self, key: Setting, raw: Raw) {
        self.values.insert(key, raw);
    }

    /// Reads `SWITCHBOARD_*` through `lookup`. An empty variable counts as
    /// unset (as `FOO=` in a compose file usually means "no value"). Lists are
    /// split on `,`, items trimmed, empty items dropped (so a trailing comma
    /// is harmless).
    pub(crate) fn from_env(lookup: &dyn Fn(&str) -> Option<String>) -> Layer {
        let mut layer = Layer::default();
        for key in Setting::ALL {
            let Some(value) = lookup(&key.env_name()).filter(|v| !v.is_empty()) else {
                continue;
            };
            let raw = match key.shape() {
                Shape::Many => Raw::Many(
                    value
                        .split(',')
                        .map(str::trim)
                        .filter(|item| !item.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ),
                Shape::One | Shape::Switch => Raw::One(value),
            };
            layer.set(key, raw);
        }
        layer
    }

    /// Reads a TOML file's text. Keys are flag names, with `-` or `_`; a key
    /// that names no setting is an error, because a silently ignored typo
    /// (`hearbeat = 5`) is worse than a refusal to start.
    pub(crate) fn from_toml(text: &str, path: &Path) -> Result<Layer, ConfigError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut layer = Layer::default();
        for (name, value) in &table {
            let key = Setting::from_file_key(name).ok_or_else(|| ConfigError::UnknownKey {
                path: path.to_owned(),
                key: name.clone(),
            })?;
            if layer.get(key).is_some() {
                return Err(ConfigError::File {
                    path: path.to_owned(),
                    reason: format!("{} is set twice (with '-' and with '_')", key.name()),
                });
            }
            let raw = toml_value(key, value).map_err(|reason| ConfigError::Invalid {
                setting: key.name(),
                from: Source::File,
                value: super::shown(key, &value.to_string()),
                reason,
            })?;
            layer.set(key, raw);
        }
        Ok(layer)
    }
}

/// Turns a TOML value into the strings a flag would have given. Floats are
/// refused rather than printed, since `2.0` would print as `2` and pass for an
/// integer.
fn toml_value(key: Setting, value: &toml::Value) -> Result<Raw, String> {
    use toml::Value;
    match (key.shape(), value) {
        (Shape::One, Value::String(s)) => Ok(Raw::One(s.clone())),
        (Shape::One, Value::Integer(i)) => Ok(Raw::One(i.to_string())),
        (Shape::One, _) => Err("expected a string or an integer".into()),
        (Shape::Switch, Value::Boolean(b)) => Ok(Raw::One(b.to_string())),
        (Shape::Switch, Value::String(s)) => Ok(Raw::One(s.clone())),
        (Shape::Switch, _) => Err("expected true or false".into()),
        (Shape::Many, Value::String(s)) => Ok(Raw::Many(vec![s.clone()])),
        (Shape::Many, Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(s) => Ok(s.clone()),
                _ => Err("expected an array of strings".to_owned()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Raw::Many),
        // `[history]` with `doc = 100` reads better than `["doc=100"]`.
        (Shape::Many, Value::Table(table)) if key == Setting::History => table
            .iter()
            .map(|(ns, n)| match n {
                Value::Integer(n) => Ok(format!("{ns}={n}")),
                _ => Err(format!("{ns}: expected an integer count")),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Raw::Many),
        (Shape::Many, _) => Err("expected an array of strings".into()),
    }
}
