//! The revocation list: token (and API key) ids refused until their expiry,
//! and per-subject "not before" times (log out everywhere). It lives in a
//! key-value store of its own, in-process or Redis, so a logout on one host
//! is honoured by every host sharing that Redis.

use std::time::Duration;

use crate::breaker::BreakerConfig;
use crate::capabilities::bindings::lamina::platform::kv::Error as KvError;
use crate::capabilities::kv::{Store, StoreConfig};

use super::{AuthMethod, Identity, unix_now};

/// Longest token or subject id the list accepts (keys stay far below the
/// store's key limit).
pub const MAX_ID_BYTES: usize = 256;

/// The list, over its own store.
pub struct Revocations {
    store: Store,
    /// How long a subject's "not before" is kept: the longest a token may
    /// live, after which every token issued before it has expired anyway.
    max_token_ttl: Duration,
    /// The clock skew tokens are accepted with past `exp`: entries outlive
    /// their credential by this much, or a revoked token would come back.
    leeway: u64,
}

fn token_key(id: &str) -> String {
    format!("token:{id}")
}

fn subject_key(subject: &str) -> String {
    format!("subject:{subject}")
}

impl Revocations {
    /// Builds the list on `config` (`[auth.revocations]`).
    pub fn open(
        config: &StoreConfig,
        max_token_ttl: Duration,
        leeway: Duration,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Self> {
        Ok(Revocations {
            store: Store::open("revocations", config, breaker)?,
            max_token_ttl,
            leeway: leeway.as_secs(),
        })
    }

    /// Refuses the credential `id` until `until` (seconds since the epoch)
    /// plus the leeway. A time further in the past is a no-op: the
    /// credential is refused as expired anyway.
    pub async fn revoke(&self, id: &str, until: u64) -> Result<(), KvError> {
        let ttl = (until + self.leeway).saturating_sub(unix_now());
        if ttl == 0 {
            return Ok(());
        }
        self.store
            .set(token_key(id), b"1".to_vec(), Some(ttl * 1000))
            .await
    }

    /// Refuses every token of `subject` issued up to now. `iat` has whole
    /// seconds, so the stored "not before" is the next second, and tokens
    /// signed later in this second get that `iat` ([`Revocations::not_before`]).
    pub async fn revoke_subject(&self, subject: &str) -> Result<(), KvError> {
        let ttl_ms = (self.max_token_ttl.as_secs() + self.leeway + 1) * 1000;
        self.store
            .set(
                subject_key(subject),
                (unix_now() + 1).to_string().into_bytes(),
                Some(ttl_ms.max(1)),
            )
            .await
    }

    /// The earliest `iat` a token of `subject` may carry to be accepted.
    pub async fn not_before(&self, subject: &str) -> Result<Option<u64>, KvError> {
        Ok(self
            .store
            .get(&subject_key(subject))
            .await?
            .as_deref()
            .and_then(parse_seconds))
    }

    /// Whether `identity`'s credential has been revoked: its id is listed,
    /// or (for a JWT) it was issued before its subject's "not before". API
    /// keys are long-lived credentials of their own, revoked one by one,
    /// and not logged out by `revoke-subject`. One round trip.
    pub async fn is_revoked(&self, identity: &Identity) -> Result<bool, KvError> {
        let by_subject = identity.method == AuthMethod::Jwt;
        let mut keys = Vec::with_capacity(2);
        if by_subject {
            keys.push(subject_key(&identity.user_id));
        }
        if let Some(id) = &identity.token_id {
            keys.push(token_key(id));
        }
        if keys.is_empty() {
            return Ok(false);
        }
        let found = self.store.get_many(&keys).await?;
        let issued_before = by_subject
            && found[0]
                .as_deref()
                .and_then(parse_seconds)
                .is_some_and(|not_before| identity.issued_at.unwrap_or(0) < not_before);
        let listed = identity.token_id.is_some() && found.last().is_some_and(Option::is_some);
        Ok(issued_before || listed)
    }

    /// Whether the list's backend answers (`/ready`).
    pub async fn probe(&self) -> Result<(), String> {
        self.store.probe().await
    }
}

fn parse_seconds(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.parse().ok()
}
