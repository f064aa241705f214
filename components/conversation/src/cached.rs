//! What the service keeps in the key-value store (cache-aside, the
//! design's key names): a conversation's row, its active path and a user's
//! folder tree. Every write drops what it changed, each chat turn
//! included, so the history sent to the model is never stale; with the
//! store down every read goes to the database.

use std::time::Duration;

use lamina_sdk::cache::{Cache, key};

/// The granted store.
const STORE: &str = "default";
/// How long an entry may live even if nothing invalidates it.
pub const TTL: Duration = Duration::from_secs(300);

/// The store, or `None` when it is not configured (then nothing is cached).
pub fn store() -> Option<Cache> {
    Cache::open(STORE)
        .inspect_err(|e| eprintln!("cache `{STORE}` unavailable: {e}"))
        .ok()
}

/// `conversation:info:{id}`: the conversation's row.
pub fn info(id: &str) -> String {
    key("conversation", "info", id)
}

/// `conversation:path:{id}`: the active path's messages, root first.
pub fn path(id: &str) -> String {
    key("conversation", "path", id)
}

/// `conversation:folders:{user}`: the user's folder tree.
pub fn folders(user: &str) -> String {
    key("conversation", "folders", user)
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

/// Drops `keys` after a write.
pub fn invalidate(keys: &[String]) {
    if let Some(cache) = store() {
        for key in keys {
            cache.invalidate(key);
        }
    }
}

/// Drops a conversation's row and path.
pub fn conversation(id: &str) {
    invalidate(&[info(id), path(id)]);
}
