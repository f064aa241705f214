//! The `kv` capability: named key-value stores with expiry, in-process
//! (default; bounded, TTL-aware) or Redis.
//!
//! A store is a cache: when its backend is unreachable every operation fails
//! fast with `unavailable` (logged and counted), and the SDK's cache-aside
//! helper falls back to the source of truth, so a request never fails because
//! the cache did.

mod memory;
mod redis;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use wasmtime::component::Resource;

use super::CapabilityView;
use super::bindings::lamina::platform::kv as wit;
use crate::breaker::BreakerConfig;
use crate::units::ByteSize;

/// Longest key a guest may use.
const MAX_KEY_BYTES: usize = 512;

/// `[key_value_stores.<name>]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum StoreConfig {
    /// In-process store.
    Memory(memory::MemoryConfig),
    /// Redis.
    Redis(redis::RedisConfig),
}

impl StoreConfig {
    /// The embedded default.
    pub fn embedded() -> Self {
        StoreConfig::Memory(memory::MemoryConfig::default())
    }
}

fn default_max_value_size() -> ByteSize {
    ByteSize::mib(1)
}

/// One store's backend.
#[derive(Clone)]
enum Backend {
    Memory(memory::MemoryStore),
    Redis(redis::RedisStore),
}

impl Backend {
    fn kind(&self) -> &'static str {
        match self {
            Backend::Memory(_) => "memory",
            Backend::Redis(_) => "redis",
        }
    }
}

/// A guest's handle on a granted store.
#[derive(Clone)]
pub struct Store {
    name: String,
    backend: Backend,
    max_value_size: usize,
}

/// The configured stores by name.
#[derive(Clone, Default)]
pub struct Stores {
    by_name: BTreeMap<String, Store>,
}

impl Stores {
    /// Builds every configured store; `default` always exists (in-process
    /// unless configured otherwise). Redis stores connect lazily.
    pub fn open(
        configs: &BTreeMap<String, StoreConfig>,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Self> {
        let default = StoreConfig::embedded();
        let mut by_name = BTreeMap::new();
        let implicit =
            (!configs.contains_key("default")).then_some(("default".to_string(), default));
        for (name, config) in configs.clone().into_iter().chain(implicit) {
            let store = Store::open(&name, &config, breaker)?;
            by_name.insert(name, store);
        }
        Ok(Stores { by_name })
    }

    /// Whether each store's backend answers.
    pub async fn probe(&self) -> Vec<(String, Result<(), String>)> {
        let mut results = Vec::new();
        for (name, store) in &self.by_name {
            results.push((name.clone(), store.probe().await));
        }
        results
    }

    /// Names of the configured stores.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

/// What a backend reports when it fails.
#[derive(Debug)]
enum BackendError {
    /// Unreachable or slow: the guest should treat it as a miss.
    Unavailable(String),
    /// The backend refused the operation (e.g. not an integer).
    Invalid(String),
}

impl Store {
    /// Builds one store (Redis connects lazily). The host's own stores (the
    /// token revocation list) are built here too, outside [`Stores`], so no
    /// guest can open them.
    pub fn open(name: &str, config: &StoreConfig, breaker: BreakerConfig) -> anyhow::Result<Self> {
        let (backend, max_value_size) = match config {
            StoreConfig::Memory(c) => (
                Backend::Memory(memory::MemoryStore::new(c)),
                c.max_value_size,
            ),
            StoreConfig::Redis(c) => (
                Backend::Redis(redis::RedisStore::new(name, c, breaker)?),
                c.max_value_size,
            ),
        };
        tracing::info!(store = %name, backend = backend.kind(), "key-value store ready");
        Ok(Store {
            name: name.to_owned(),
            backend,
            max_value_size: max_value_size.bytes() as usize,
        })
    }

    /// Whether the backend answers.
    pub async fn probe(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Memory(_) => Ok(()),
            Backend::Redis(r) => r
                .exists("lamina:ready")
                .await
                .map(drop)
                .map_err(|e| format!("{e:?}")),
        }
    }

    fn check_key(key: &str) -> Result<(), wit::Error> {
        if key.is_empty() || key.len() > MAX_KEY_BYTES {
            return Err(wit::Error::Invalid(format!(
                "keys are 1 to {MAX_KEY_BYTES} bytes, got {}",
                key.len()
            )));
        }
        Ok(())
    }

    pub(crate) async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, wit::Error> {
        Store::check_key(key)?;
        let result = match &self.backend {
            Backend::Memory(m) => Ok(m.get(key)),
            Backend::Redis(r) => r.get(key).await,
        };
        result.map_err(|e| self.fail("get", e))
    }

    /// Several keys in one round trip (the revocation check).
    pub(crate) async fn get_many(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, wit::Error> {
        for key in keys {
            Store::check_key(key)?;
        }
        let result = match &self.backend {
            Backend::Memory(m) => Ok(keys.iter().map(|k| m.get(k)).collect()),
            Backend::Redis(r) => r.get_many(keys).await,
        };
        result.map_err(|e| self.fail("get-many", e))
    }

    pub(crate) async fn set(
        &self,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> Result<(), wit::Error> {
        Store::check_key(&key)?;
        if value.len() > self.max_value_size {
            return Err(wit::Error::Invalid(format!(
                "value is {} bytes; the store's limit is {}",
                value.len(),
                self.max_value_size
            )));
        }
        let ttl = ttl(ttl_ms)?;
        let result = match &self.backend {
            Backend::Memory(m) => {
                m.set(key, value, ttl);
                Ok(())
            }
            Backend::Redis(r) => r.set(&key, value, ttl).await,
        };
        result.map_err(|e| self.fail("set", e))
    }

    pub(crate) async fn delete(&self, key: &str) -> Result<bool, wit::Error> {
        Store::check_key(key)?;
        let result = match &self.backend {
            Backend::Memory(m) => Ok(m.delete(key)),
            Backend::Redis(r) => r.delete(key).await,
        };
        result.map_err(|e| self.fail("delete", e))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, wit::Error> {
        if prefix.len() > MAX_KEY_BYTES {
            return Err(wit::Error::Invalid(format!(
                "prefix is longer than {MAX_KEY_BYTES} bytes"
            )));
        }
        let result = match &self.backend {
            Backend::Memory(m) => Ok(m.delete_prefix(prefix)),
            Backend::Redis(r) => r.delete_prefix(prefix).await,
        };
        result.map_err(|e| self.fail("delete-prefix", e))
    }

    async fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> Result<i64, wit::Error> {
        Store::check_key(key)?;
        let ttl = ttl(ttl_ms)?;
        let result = match &self.backend {
            Backend::Memory(m) => m.increment(key, delta, ttl),
            Backend::Redis(r) => r.increment(key, delta, ttl).await,
        };
        result.map_err(|e| self.fail("increment", e))
    }

    async fn exists(&self, key: &str) -> Result<bool, wit::Error> {
        Store::check_key(key)?;
        let result = match &self.backend {
            Backend::Memory(m) => Ok(m.get(key).is_some()),
            Backend::Redis(r) => r.exists(key).await,
        };
        result.map_err(|e| self.fail("exists", e))
    }

    /// Turns a backend failure into the guest's error; unavailability is
    /// logged and counted, since it means degraded service.
    fn fail(&self, op: &'static str, error: BackendError) -> wit::Error {
        match error {
            BackendError::Unavailable(detail) => {
                tracing::warn!(store = %self.name, op, "key-value store unavailable: {detail}");
                metrics::counter!("lamina_kv_unavailable_total", "store" => self.name.clone(), "op" => op).increment(1);
                wit::Error::Unavailable(detail)
            }
            BackendError::Invalid(detail) => wit::Error::Invalid(detail),
        }
    }
}

fn ttl(ms: Option<u64>) -> Result<Option<Duration>, wit::Error> {
    match ms {
        Some(0) => Err(wit::Error::Invalid(
            "ttl-ms must be greater than zero".into(),
        )),
        other => Ok(other.map(Duration::from_millis)),
    }
}

impl wit::Host for CapabilityView<'_> {}

impl wit::HostStore for CapabilityView<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Store>, wit::Error>> {
        if !self.ctx.grants.key_value_stores.contains(&name) {
            return Ok(Err(wit::Error::AccessDenied(super::not_granted(
                "key-value store",
                "key_value_stores",
                &name,
            ))));
        }
        let Some(store) = self.ctx.shared.kv.by_name.get(&name) else {
            return Ok(Err(wit::Error::NoSuchStore(format!(
                "no key-value store `{name}` is configured"
            ))));
        };
        Ok(Ok(self.table.push(store.clone())?))
    }

    async fn get(
        &mut self,
        this: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::Error>> {
        let store = self.table.get(&this)?.clone();
        let found = store.get(&key).await;
        // What a component's reads find, per store: the hit rate of the
        // caches components keep (failures are counted as unavailable).
        if let Ok(value) = &found {
            let result = if value.is_some() { "hit" } else { "miss" };
            metrics::counter!("lamina_kv_gets_total", "store" => store.name.clone(), "result" => result)
                .increment(1);
        }
        Ok(found)
    }

    async fn set(
        &mut self,
        this: Resource<Store>,
        key: String,
        value: Vec<u8>,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let store = self.table.get(&this)?.clone();
        Ok(store.set(key, value, ttl_ms).await)
    }

    async fn delete(
        &mut self,
        this: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wit::Error>> {
        let store = self.table.get(&this)?.clone();
        Ok(store.delete(&key).await)
    }

    async fn delete_prefix(
        &mut self,
        this: Resource<Store>,
        prefix: String,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        let store = self.table.get(&this)?.clone();
        Ok(store.delete_prefix(&prefix).await)
    }

    async fn increment(
        &mut self,
        this: Resource<Store>,
        key: String,
        delta: i64,
        ttl_ms: Option<u64>,
    ) -> wasmtime::Result<Result<i64, wit::Error>> {
        let store = self.table.get(&this)?.clone();
        Ok(store.increment(&key, delta, ttl_ms).await)
    }

    async fn exists(
        &mut self,
        this: Resource<Store>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wit::Error>> {
        let store = self.table.get(&this)?.clone();
        Ok(store.exists(&key).await)
    }

    async fn drop(&mut self, this: Resource<Store>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
