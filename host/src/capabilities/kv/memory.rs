//! In-process store: a bounded moka cache with a per-entry TTL.

use std::sync::Arc;
use std::time::{Duration, Instant};

use moka::ops::compute::Op;
use moka::sync::Cache;
use serde::Deserialize;

use super::{BackendError, default_max_value_size};
use crate::units::ByteSize;

/// `type = "memory"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryConfig {
    /// Total size of keys and values kept; least-recently-used entries are
    /// evicted beyond it.
    #[serde(default = "default_capacity")]
    pub capacity: ByteSize,
    /// Largest value one `set` may store.
    #[serde(default = "default_max_value_size")]
    pub max_value_size: ByteSize,
}

fn default_capacity() -> ByteSize {
    ByteSize::mib(64)
}

impl Default for MemoryConfig {
    fn default() -> Self {
        MemoryConfig {
            capacity: default_capacity(),
            max_value_size: default_max_value_size(),
        }
    }
}

#[derive(Clone)]
struct Entry {
    value: Arc<[u8]>,
    expires_at: Option<Instant>,
}

impl Entry {
    fn live(&self, now: Instant) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }
}

/// Tells moka when each entry expires: at the deadline it carries.
struct EntryExpiry;

impl moka::Expiry<String, Entry> for EntryExpiry {
    fn expire_after_create(&self, _: &String, value: &Entry, now: Instant) -> Option<Duration> {
        value.expires_at.map(|at| at.saturating_duration_since(now))
    }

    fn expire_after_update(
        &self,
        _: &String,
        value: &Entry,
        now: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        value.expires_at.map(|at| at.saturating_duration_since(now))
    }
}

/// One in-process store.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Cache<String, Entry>,
}

impl MemoryStore {
    /// An empty store bounded by `config.capacity`.
    pub fn new(config: &MemoryConfig) -> Self {
        let cache = Cache::builder()
            .max_capacity(config.capacity.bytes())
            .weigher(|key: &String, entry: &Entry| {
                u32::try_from(key.len() + entry.value.len()).unwrap_or(u32::MAX)
            })
            .expire_after(EntryExpiry)
            .build();
        MemoryStore { cache }
    }

    /// The live value at `key`. Expiry is re-checked here because moka
    /// evicts expired entries lazily.
    pub fn get(&self, key: &str) -> Option<Vec<u8>> {
        self.cache
            .get(key)
            .filter(|e| e.live(Instant::now()))
            .map(|e| e.value.to_vec())
    }

    pub fn set(&self, key: String, value: Vec<u8>, ttl: Option<Duration>) {
        let expires_at = ttl.map(|ttl| Instant::now() + ttl);
        self.cache.insert(
            key,
            Entry {
                value: value.into(),
                expires_at,
            },
        );
    }

    pub fn delete(&self, key: &str) -> bool {
        self.cache
            .remove(key)
            .is_some_and(|e| e.live(Instant::now()))
    }

    /// Removes every live key starting with `prefix` (a scan: fine for an
    /// embedded cache).
    pub fn delete_prefix(&self, prefix: &str) -> u64 {
        let now = Instant::now();
        let keys: Vec<Arc<String>> = self
            .cache
            .iter()
            .filter(|(key, entry)| key.starts_with(prefix) && entry.live(now))
            .map(|(key, _)| key)
            .collect();
        for key in &keys {
            self.cache.invalidate(key.as_str());
        }
        keys.len() as u64
    }

    /// Atomically adds `delta` to the decimal integer at `key`; a missing or
    /// expired key counts as 0 and gets `ttl`.
    pub fn increment(
        &self,
        key: &str,
        delta: i64,
        ttl: Option<Duration>,
    ) -> Result<i64, BackendError> {
        let now = Instant::now();
        let mut outcome = Err(BackendError::Invalid("increment did not run".into()));
        self.cache
            .entry(key.to_owned())
            .and_compute_with(|current| {
                let current = current.map(|e| e.into_value()).filter(|e| e.live(now));
                let (base, expires_at) = match &current {
                    Some(entry) => match std::str::from_utf8(&entry.value)
                        .ok()
                        .and_then(|s| s.parse::<i64>().ok())
                    {
                        Some(n) => (n, entry.expires_at),
                        None => {
                            outcome = Err(BackendError::Invalid(format!(
                                "the value at `{key}` is not an integer"
                            )));
                            return Op::Nop;
                        }
                    },
                    None => (0, ttl.map(|ttl| now + ttl)),
                };
                let Some(next) = base.checked_add(delta) else {
                    outcome = Err(BackendError::Invalid(format!(
                        "increment of `{key}` overflows"
                    )));
                    return Op::Nop;
                };
                outcome = Ok(next);
                Op::Put(Entry {
                    value: next.to_string().into_bytes().into(),
                    expires_at,
                })
            });
        outcome
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ttl_prefix_delete_and_increment() {
        let store = MemoryStore::new(&MemoryConfig::default());
        store.set("a:1".into(), b"x".to_vec(), Some(Duration::from_millis(30)));
        store.set("a:2".into(), b"y".to_vec(), None);
        store.set("b:1".into(), b"z".to_vec(), None);
        assert_eq!(store.get("a:1").as_deref(), Some(&b"x"[..]));
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(store.get("a:1"), None, "expired");
        assert_eq!(store.delete_prefix("a:"), 1);
        assert_eq!(store.get("b:1").as_deref(), Some(&b"z"[..]));
        assert_eq!(store.increment("n", 5, None).unwrap(), 5);
        assert_eq!(store.increment("n", -2, None).unwrap(), 3);
        assert!(matches!(
            store.increment("b:1", 1, None),
            Err(BackendError::Invalid(_))
        ));
    }
}
