//! Key-value stores and the cache-aside pattern.
//!
//! A store is a cache, never the source of truth: [`Cache::lookup`] reads
//! through it, and when the backend is down or slow it goes straight to the
//! source (logging to stderr; the host counts the failure), so a request
//! never fails because the cache did. Writes invalidate.
//!
//! Keys follow the design's convention: [`key`] (`service:resource:id`) and
//! [`list_key`] (`service:resource:list:page:P:size:S`).

use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::platform::kv::{self, Store};

pub use kv::Error;

/// `service:resource:id`.
pub fn key(service: &str, resource: &str, id: &str) -> String {
    format!("{service}:{resource}:{id}")
}

/// `service:resource:list:page:P:size:S`.
pub fn list_key(service: &str, resource: &str, page: u32, size: u32) -> String {
    format!("{service}:{resource}:list:page:{page}:size:{size}")
}

/// Where a [`Cache::lookup`] value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Found in the cache.
    Hit,
    /// Loaded from the source and stored in the cache.
    Miss,
    /// Loaded from the source because the cache was unavailable.
    Bypass,
}

impl Source {
    /// `hit`, `miss` or `bypass`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Hit => "hit",
            Source::Miss => "miss",
            Source::Bypass => "bypass",
        }
    }
}

/// A granted store used as a cache.
pub struct Cache {
    store: Store,
    name: String,
}

impl Cache {
    /// Opens a store granted by `key_value_stores = [...]`. Fails only for
    /// a store that is not granted or configured (a deployment error).
    pub fn open(name: &str) -> Result<Cache, Error> {
        Ok(Cache {
            store: Store::open(name)?,
            name: name.to_owned(),
        })
    }

    /// The raw store, for counters and other non-cache uses.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Cache-aside read: the cached value under `key`, or `load()` stored
    /// for `ttl`. Cache failures fall back to `load()`.
    pub fn get_or_load<T, E>(
        &self,
        key: &str,
        ttl: Duration,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<T, E>
    where
        T: Serialize + DeserializeOwned,
    {
        self.lookup(key, ttl, load).map(|(value, _)| value)
    }

    /// [`Cache::get_or_load`], also saying where the value came from.
    pub fn lookup<T, E>(
        &self,
        key: &str,
        ttl: Duration,
        load: impl FnOnce() -> Result<T, E>,
    ) -> Result<(T, Source), E>
    where
        T: Serialize + DeserializeOwned,
    {
        match self.store.get(key) {
            Ok(Some(bytes)) => match serde_json::from_slice(&bytes) {
                Ok(value) => return Ok((value, Source::Hit)),
                // A stale shape (e.g. after a deploy): reload and overwrite.
                Err(_) => self.forget(key),
            },
            Ok(None) => {}
            Err(error) => {
                self.report("get", &error);
                return load().map(|value| (value, Source::Bypass));
            }
        }
        let value = load()?;
        let source = match serde_json::to_vec(&value) {
            Ok(bytes) => match self
                .store
                .set(key, &bytes, Some(ttl.as_millis().max(1) as u64))
            {
                Ok(()) => Source::Miss,
                Err(error) => {
                    self.report("set", &error);
                    Source::Bypass
                }
            },
            Err(_) => Source::Bypass,
        };
        Ok((value, source))
    }

    /// Drops `key` after a write. Failures are logged, not returned: the
    /// entry's TTL bounds how stale it can get.
    pub fn invalidate(&self, key: &str) {
        self.forget(key);
    }

    /// Drops every key starting with `prefix` (e.g. all list pages).
    pub fn invalidate_prefix(&self, prefix: &str) {
        if let Err(error) = self.store.delete_prefix(prefix) {
            self.report("delete-prefix", &error);
        }
    }

    fn forget(&self, key: &str) {
        if let Err(error) = self.store.delete(key) {
            self.report("delete", &error);
        }
    }

    fn report(&self, op: &str, error: &Error) {
        eprintln!(
            "cache `{}` {op} failed, using the source: {error}",
            self.name
        );
    }
}
