//! The revocation list: token (and API key) ids refused until their expiry,
//! per-subject "not before" times (log out everywhere), and disabled
//! subjects (every credential of an account refused until it is enabled
//! again). In-process, or in Redis so a logout on one host is honoured by
//! every host sharing that Redis.
//!
//! The in-process list never drops an entry before it expires: when it is
//! full, a new revocation fails (the caller sees `unavailable`, the logout
//! is not reported done, and `lamina_revocations_full_total` counts it)
//! rather than silently un-revoking someone else's token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::breaker::BreakerConfig;
use crate::capabilities::bindings::lamina::platform::kv::Error as KvError;
use crate::capabilities::kv::{Store, StoreConfig};

use super::{AuthMethod, Identity, unix_now};

/// Longest token or subject id the list accepts (keys stay far below the
/// store's key limit).
pub const MAX_ID_BYTES: usize = 256;

/// The list, over its own store.
pub struct Revocations {
    list: List,
    /// How long a subject's "not before" is kept: the longest a token may
    /// live, after which every token issued before it has expired anyway.
    max_token_ttl: Duration,
    /// The clock skew tokens are accepted with past `exp`: entries outlive
    /// their credential by this much, or a revoked token would come back.
    leeway: u64,
}

/// Where the entries live.
enum List {
    /// This process only.
    Local(Mutex<Local>),
    /// A shared store (Redis).
    Shared(Store),
}

fn token_key(id: &str) -> String {
    format!("token:{id}")
}

fn subject_key(subject: &str) -> String {
    format!("subject:{subject}")
}

fn disabled_key(subject: &str) -> String {
    format!("disabled:{subject}")
}

impl Revocations {
    /// Builds the list on `config` (`[auth.revocations]`).
    pub fn open(
        config: &StoreConfig,
        max_token_ttl: Duration,
        leeway: Duration,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Self> {
        let list = match config {
            StoreConfig::Memory(memory) => {
                List::Local(Mutex::new(Local::new(memory.capacity.bytes() as usize)))
            }
            StoreConfig::Redis(_) => List::Shared(Store::open("revocations", config, breaker)?),
        };
        Ok(Revocations {
            list,
            max_token_ttl,
            leeway: leeway.as_secs(),
        })
    }

    async fn set(&self, key: String, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), KvError> {
        match &self.list {
            List::Local(local) => local.lock().expect("revocations").set(key, value, ttl),
            List::Shared(store) => {
                store
                    .set(key, value, ttl.map(|t| t.as_millis() as u64))
                    .await
            }
        }
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Vec<u8>>>, KvError> {
        match &self.list {
            List::Local(local) => {
                let local = local.lock().expect("revocations");
                Ok(keys.iter().map(|k| local.get(k)).collect())
            }
            List::Shared(store) => store.get_many(keys).await,
        }
    }

    /// Refuses the credential `id` until `until` (seconds since the epoch)
    /// plus the leeway. A time further in the past is a no-op: the
    /// credential is refused as expired anyway.
    pub async fn revoke(&self, id: &str, until: u64) -> Result<(), KvError> {
        let ttl = (until + self.leeway).saturating_sub(unix_now());
        if ttl == 0 {
            return Ok(());
        }
        self.set(token_key(id), b"1".to_vec(), Some(Duration::from_secs(ttl)))
            .await
    }

    /// Refuses every token of `subject` issued up to now. `iat` has whole
    /// seconds, so the stored "not before" is the next second, and tokens
    /// signed later in this second get that `iat` ([`Revocations::not_before`]).
    pub async fn revoke_subject(&self, subject: &str) -> Result<(), KvError> {
        let ttl = self.max_token_ttl.as_secs() + self.leeway + 1;
        self.set(
            subject_key(subject),
            (unix_now() + 1).to_string().into_bytes(),
            Some(Duration::from_secs(ttl)),
        )
        .await
    }

    /// Refuses every credential of `subject`, JWTs and API keys alike,
    /// until [`Revocations::enable_subject`].
    pub async fn disable_subject(&self, subject: &str) -> Result<(), KvError> {
        self.set(disabled_key(subject), b"1".to_vec(), None).await
    }

    /// Lifts [`Revocations::disable_subject`].
    pub async fn enable_subject(&self, subject: &str) -> Result<(), KvError> {
        match &self.list {
            List::Local(local) => {
                local
                    .lock()
                    .expect("revocations")
                    .delete(&disabled_key(subject));
                Ok(())
            }
            List::Shared(store) => store.delete(&disabled_key(subject)).await.map(drop),
        }
    }

    /// The earliest `iat` a token of `subject` may carry to be accepted.
    pub async fn not_before(&self, subject: &str) -> Result<Option<u64>, KvError> {
        Ok(self.get_many(&[subject_key(subject)]).await?[0]
            .as_deref()
            .and_then(parse_seconds))
    }

    /// Whether `identity`'s credential has been revoked: its subject is
    /// disabled, its id is listed, or (for a JWT) it was issued before its
    /// subject's "not before". API keys are long-lived credentials of their
    /// own, revoked one by one, and not logged out by `revoke-subject`.
    /// One round trip.
    pub async fn is_revoked(&self, identity: &Identity) -> Result<bool, KvError> {
        let by_subject = identity.method == AuthMethod::Jwt;
        let mut keys = vec![disabled_key(&identity.user_id)];
        if by_subject {
            keys.push(subject_key(&identity.user_id));
        }
        if let Some(id) = &identity.token_id {
            keys.push(token_key(id));
        }
        let found = self.get_many(&keys).await?;
        let disabled = found[0].is_some();
        let issued_before = by_subject
            && found[1]
                .as_deref()
                .and_then(parse_seconds)
                .is_some_and(|not_before| identity.issued_at.unwrap_or(0) < not_before);
        let listed = identity.token_id.is_some() && found.last().is_some_and(Option::is_some);
        Ok(disabled || issued_before || listed)
    }

    /// Whether the list's backend answers (`/ready`).
    pub async fn probe(&self) -> Result<(), String> {
        match &self.list {
            List::Local(_) => Ok(()),
            List::Shared(store) => store.probe().await,
        }
    }
}

/// The in-process entries, bounded by the bytes of their keys and values.
struct Local {
    entries: HashMap<String, (Vec<u8>, Option<Instant>)>,
    bytes: usize,
    capacity: usize,
}

impl Local {
    fn new(capacity: usize) -> Self {
        Local {
            entries: HashMap::new(),
            bytes: 0,
            capacity,
        }
    }

    fn get(&self, key: &str) -> Option<Vec<u8>> {
        let (value, expires) = self.entries.get(key)?;
        expires
            .is_none_or(|at| at > Instant::now())
            .then(|| value.clone())
    }

    /// Stores an entry; when that would pass the capacity even after the
    /// expired entries are dropped, refuses (nothing live is ever evicted).
    fn set(&mut self, key: String, value: Vec<u8>, ttl: Option<Duration>) -> Result<(), KvError> {
        let size = key.len() + value.len();
        let replaced = self
            .entries
            .get(&key)
            .map_or(0, |(v, _)| key.len() + v.len());
        if self.bytes - replaced + size > self.capacity {
            let now = Instant::now();
            self.entries
                .retain(|_, (_, expires)| expires.is_none_or(|at| at > now));
            self.bytes = self
                .entries
                .iter()
                .map(|(k, (v, _))| k.len() + v.len())
                .sum();
        }
        let replaced = self
            .entries
            .get(&key)
            .map_or(0, |(v, _)| key.len() + v.len());
        if self.bytes - replaced + size > self.capacity {
            metrics::counter!("lamina_revocations_full_total").increment(1);
            tracing::error!(
                capacity = self.capacity,
                "the in-process revocation list is full: revocation refused (raise [auth.revocations] capacity or use Redis)"
            );
            return Err(KvError::Unavailable(
                "the revocation list is full".to_owned(),
            ));
        }
        self.bytes = self.bytes - replaced + size;
        self.entries
            .insert(key, (value, ttl.map(|ttl| Instant::now() + ttl)));
        Ok(())
    }

    fn delete(&mut self, key: &str) {
        if let Some((value, _)) = self.entries.remove(key) {
            self.bytes -= key.len() + value.len();
        }
    }
}

fn parse_seconds(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_list_refuses_new_entries_and_keeps_live_ones() {
        let mut local = Local::new(100);
        let hour = Some(Duration::from_secs(3600));
        local.set("token:a".into(), b"1".to_vec(), hour).unwrap();
        let mut refused = 0;
        for n in 0..100 {
            if local
                .set(format!("token:flood{n}"), b"1".to_vec(), hour)
                .is_err()
            {
                refused += 1;
            }
        }
        assert!(refused > 80, "{refused}");
        assert!(
            local.get("token:a").is_some(),
            "a live revocation was dropped"
        );
        // Expired entries make room.
        let mut expiring = Local::new(15);
        expiring
            .set("token:old".into(), b"1".to_vec(), Some(Duration::ZERO))
            .unwrap();
        expiring
            .set("token:new".into(), b"1".to_vec(), hour)
            .unwrap();
        assert!(expiring.get("token:new").is_some());
        // Replacing an entry does not count it twice.
        expiring
            .set("token:new".into(), b"2".to_vec(), hour)
            .unwrap();
        assert_eq!(expiring.bytes, "token:new".len() + 1);
    }
}
