//! What the service keeps in the key-value store (cache-aside, the
//! design's key names): a conversation's row, the path to a message and a
//! user's folder tree. Every write drops what it changed; with the store
//! down every read goes to the database.
//!
//! Writes never read through the cache: they read the database, so a
//! change is never made on a stale row, and chat reads the history from
//! the database too. A path is keyed by the message it ends at, and
//! messages never change, so a cached path is never stale. Only a row or a
//! tree that a write could not invalidate (the store was down at the time)
//! may be served stale to a read, for at most [`TTL`].

use std::time::Duration;

use lamina_sdk::cache::{Cache, key};

/// The granted store.
const STORE: &str = "default";
/// How long an entry may live even if nothing invalidates it.
pub const TTL: Duration = Duration::from_secs(60);

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

/// `conversation:path:{id}:{leaf}`: the messages from the root to `leaf`.
pub fn path(id: &str, leaf: &str) -> String {
    format!("{}:{leaf}", key("conversation", "path", id))
}

/// `conversation:folders:{user}`: the user's folder tree.
pub fn folders(user: &str) -> String {
    key("conversation", "folders", user)
}

/// `conversation:running:{id}`: the answer being generated there.
pub fn running(id: &str) -> String {
    key("conversation", "running", id)
}

/// `conversation:stop:{answer}`: a request to stop that generation.
pub fn stop(answer: &str) -> String {
    key("conversation", "stop", answer)
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

/// Drops a conversation's row and paths.
pub fn conversation(id: &str) {
    if let Some(cache) = store() {
        cache.invalidate(&info(id));
        cache.invalidate_prefix(&format!("{}:", key("conversation", "path", id)));
    }
}
