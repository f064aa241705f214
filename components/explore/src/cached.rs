//! What the service keeps in the key-value store (cache-aside, the
//! design's key names), all under `explore:`:
//!
//! - `explore:models:list:all`: every entry's card (lists filter, sort and
//!   page it after merging the store's live view, which is never cached);
//! - `explore:model:{name}`: one entry;
//! - `explore:tags:list`: the tags with their model counts;
//! - `explore:search:{mode}:{query}`: a search's ranked names.
//!
//! Any change to the catalogue drops every `explore:` key at once, on
//! whichever host made it (with Redis the store is shared, so the next
//! read anywhere sees the change); the `catalog.changed` event drops them
//! again, for a change made while the store was unreachable. A counted
//! use drops the cards and that model's entry. With the store down, reads
//! go to the database.

use std::time::Duration;

use lamina_sdk::cache::{Cache, key};

/// The granted store.
const STORE: &str = "default";
/// How long an entry lives even if nothing invalidates it.
pub const TTL: Duration = Duration::from_secs(60);
/// Every key of this service starts with it.
pub const PREFIX: &str = "explore:";

/// The store, or `None` when none is granted (then nothing is cached).
pub fn store() -> Option<Cache> {
    Cache::open(STORE).ok()
}

/// `explore:models:list:all`.
pub fn cards() -> String {
    key("explore", "models", "list:all")
}

/// `explore:model:{name}` (not under `models:`, where a model named
/// `list:all` would meet the cards).
pub fn entry(name: &str) -> String {
    key("explore", "model", name)
}

/// `explore:tags:list`.
pub fn tags() -> String {
    key("explore", "tags", "list")
}

/// Longest query cached (bytes), so every key stays well within the
/// store's key limit; longer ones are ranked each time.
const MAX_QUERY_KEY: usize = 256;

/// `explore:search:{mode}:{query}`, or `None` for a query too long to key.
pub fn search(mode: &str, query: &str) -> Option<String> {
    (query.len() <= MAX_QUERY_KEY).then(|| format!("{}:{query}", key("explore", "search", mode)))
}

/// Reads through the store (straight to `load` without one).
pub fn get_or_load<T, E>(key: &str, load: impl FnOnce() -> Result<T, E>) -> Result<T, E>
where
    T: serde::Serialize + serde::de::DeserializeOwned,
{
    match store() {
        Some(cache) => cache.get_or_load(key, TTL, load),
        None => load(),
    }
}

/// Drops `keys` (a failure is logged: their TTL bounds the staleness).
pub fn forget(keys: &[String]) {
    if let Some(cache) = store() {
        for key in keys {
            cache.invalidate(key);
        }
    }
}

/// Drops every cached read after a change; `Err` if the store could not
/// be reached (the caller may retry later).
pub fn invalidate() -> Result<(), String> {
    match store() {
        Some(cache) => cache
            .store()
            .delete_prefix(PREFIX)
            .map(drop)
            .map_err(|e| format!("cannot drop the cached catalogue: {e}")),
        None => Ok(()),
    }
}
