//! `runtime-config.toml`: where state lives and the host's limits. Every key
//! has an embedded default, so a missing file means "run on defaults".

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::capabilities::blobs::BucketConfig;
use crate::capabilities::inference::InferenceConfig;
use crate::capabilities::kv::StoreConfig;
use crate::capabilities::limits::LimitsConfig;
use crate::capabilities::mail::MailConfig;
use crate::capabilities::queue::QueueConfig;
use crate::capabilities::sql::DatabaseConfig;
use crate::capabilities::tokens::AuthConfig;
use crate::capabilities::vectors::IndexConfig;
use crate::gateway::cors::CorsConfig;
use crate::gateway::rate_limit::RateLimitConfig;
use crate::units::ByteSize;

/// The whole runtime configuration.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RuntimeConfig {
    /// Where the host keeps state (compiled-component cache, SQLite files, ...).
    pub data: DataConfig,
    /// The public HTTP listener.
    pub http: HttpConfig,
    /// The local admin listener (hot deploy).
    pub admin: AdminConfig,
    /// Component execution limits.
    pub components: ComponentsConfig,
    /// `[databases.<name>]`: SQL databases (`default` is SQLite unless set).
    pub databases: BTreeMap<String, DatabaseConfig>,
    /// `[key_value_stores.<name>]`: stores (`default` is in-process unless set).
    pub key_value_stores: BTreeMap<String, StoreConfig>,
    /// `[blobs.<name>]`: blob buckets (`default` is a directory unless set).
    pub blobs: BTreeMap<String, BucketConfig>,
    /// `[vector_indexes.<name>]`: vector indexes (`default` always exists).
    pub vector_indexes: BTreeMap<String, IndexConfig>,
    /// `[queue]`: the message queue backend and retry policy.
    pub queue: QueueConfig,
    /// `[auth]`: how bearer tokens are signed and verified, where API keys
    /// and the revocation list live.
    pub auth: AuthConfig,
    /// `[inference]`: the models directory and the llama.cpp engine.
    pub inference: InferenceConfig,
    /// `[limits]`: where token budgets are counted.
    pub limits: LimitsConfig,
    /// `[circuit_breaker]`: when a failing backend is given a rest.
    pub circuit_breaker: BreakerConfig,
    /// `[rate_limit]`: limiter backend and classes.
    pub rate_limit: RateLimitConfig,
    /// `[cors]`: which browser origins may call the API.
    pub cors: CorsConfig,
    /// `[mail]`: the SMTP server components send through, if any.
    pub mail: MailConfig,
    /// `[variables]`: values for application variables (the environment's
    /// `LAMINA_VAR_<NAME>` wins over these).
    pub variables: BTreeMap<String, String>,
}

/// `[data]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// State directory, relative to the runtime-config file.
    pub dir: PathBuf,
}

impl Default for DataConfig {
    fn default() -> Self {
        DataConfig {
            dir: PathBuf::from(".lamina"),
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Address of the public listener.
    pub listen: SocketAddr,
    /// Default time a component has to produce response headers (504 after).
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Default longest stretch of guest code without a return to the host
    /// (an endless loop is stopped after it: 504).
    #[serde(with = "humantime_serde")]
    pub execution_deadline: Duration,
    /// Longest a whole request may keep an instance alive, response body
    /// streaming included.
    #[serde(with = "humantime_serde")]
    pub max_request_duration: Duration,
    /// How long graceful shutdown waits for in-flight requests.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
    /// Open connections beyond this wait to be accepted.
    pub max_connections: usize,
    /// Largest request body; a larger declared length is refused with 413,
    /// a longer stream is cut off. A route may set its own.
    pub max_body_size: ByteSize,
    /// Proxies (CIDRs) whose forwarding header names the client; from any
    /// other peer it is ignored.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// The header those proxies write: `x-forwarded-for` (default) or
    /// `forwarded` (RFC 7239); the other is ignored.
    pub forwarded_header: crate::gateway::client_ip::ForwardedHeader,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3000)),
            timeout: Duration::from_secs(30),
            execution_deadline: Duration::from_secs(5),
            max_request_duration: Duration::from_secs(30 * 60),
            drain_timeout: Duration::from_secs(30),
            max_connections: 1024,
            max_body_size: ByteSize::mib(10),
            trusted_proxies: Vec::new(),
            forwarded_header: Default::default(),
        }
    }
}

/// `[admin]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// Address of the admin listener; keep it on loopback.
    pub listen: SocketAddr,
    /// Largest component a deploy may upload.
    pub max_component_size: ByteSize,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 3001)),
            max_component_size: ByteSize::mib(64),
        }
    }
}

/// `[components]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ComponentsConfig {
    /// Default linear-memory limit per instance.
    pub memory_limit: ByteSize,
    /// Most component instances alive at once (pooling allocator slots).
    pub max_instances: u32,
    /// Use the pooling allocator when the machine allows it.
    pub pooling: bool,
}

impl Default for ComponentsConfig {
    fn default() -> Self {
        ComponentsConfig {
            memory_limit: ByteSize::mib(128),
            max_instances: 1000,
            pooling: true,
        }
    }
}

impl RuntimeConfig {
    /// Loads `path`; a missing file yields the defaults. Relative paths inside
    /// are resolved against the file's directory.
    pub fn load(path: &Path) -> anyhow::Result<RuntimeConfig> {
        let mut config: RuntimeConfig = match std::fs::read_to_string(path) {
            Ok(text) => toml::from_str(&text)
                .with_context(|| format!("{}: invalid runtime config", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => RuntimeConfig::default(),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let keys = [
            config.auth.public_key.as_mut(),
            config.auth.private_key.as_mut(),
        ];
        for relative in keys.into_iter().flatten().chain([&mut config.data.dir]) {
            if relative.is_relative() {
                *relative = base.join(&*relative);
            }
        }
        let models_dir = match config.inference.models_dir.take() {
            Some(dir) if dir.is_relative() => base.join(dir),
            Some(dir) => dir,
            None => config.data.dir.join("models"),
        };
        config.inference.models_dir = Some(models_dir);
        config
            .inference
            .validate()
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        anyhow::ensure!(
            config.circuit_breaker.failures > 0,
            "{}: circuit_breaker.failures must be at least 1",
            path.display()
        );
        anyhow::ensure!(
            config.queue.max_attempts > 0,
            "{}: queue.max_attempts must be at least 1",
            path.display()
        );
        anyhow::ensure!(
            config.components.max_instances > 0,
            "{}: components.max_instances must be at least 1",
            path.display()
        );
        Ok(config)
    }
}
