//! The `queue` capability: durable topics with at-least-once delivery,
//! retries with exponential backoff and a dead-letter list, on a SQL table
//! (default; in the host's own database) or Redis Streams.
//!
//! Components publish through WIT; the queue trigger
//! (`crate::trigger::queue`) claims messages and calls the consuming
//! component's `queue-handler` export.
//!
//! A topic may have several subscribers (components with a
//! `[[trigger.queue]]` for it): a publish stores one copy per subscriber,
//! so each handles every message once, with retries and dead letters of
//! its own. A message published while a topic has no subscriber waits
//! unclaimed, and the subscribers a host starts with adopt it
//! ([`Queue::subscribe`]).

mod redis;
mod sql;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use super::CapabilityView;
use super::bindings::lamina::platform::queue as wit;
use crate::units::ByteSize;

/// Longest idempotency key.
const MAX_KEY_BYTES: usize = 256;
/// Longest topic name.
const MAX_TOPIC_BYTES: usize = 128;

/// Topic → its subscribing components, in manifest order.
pub type Subscriptions = std::collections::BTreeMap<String, Vec<String>>;

/// Whether `topic` is a well-formed topic name: 1 to 128 letters, digits,
/// `.`, `_` or `-` (so backends may use `:` and `@` as separators).
pub fn valid_topic(topic: &str) -> bool {
    !topic.is_empty()
        && topic.len() <= MAX_TOPIC_BYTES
        && topic
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// `[queue]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueConfig {
    /// `sql` (default) or `redis`.
    #[serde(rename = "type")]
    pub kind: QueueKind,
    /// SQL backend: the database holding the queue table (host-only, never
    /// granted to a component).
    pub database: String,
    /// Redis backend: `redis://host:port/db`.
    pub url: Option<String>,
    /// Redis backend: prefix of every key.
    pub key_prefix: String,
    /// A claimed message not acknowledged within this time is delivered
    /// again (its consumer is presumed dead).
    #[serde(with = "humantime_serde")]
    pub visibility_timeout: Duration,
    /// Deliveries before a message is dead-lettered.
    pub max_attempts: u32,
    /// Delay before the first retry; doubles per attempt.
    #[serde(with = "humantime_serde")]
    pub backoff: Duration,
    /// Longest retry delay.
    #[serde(with = "humantime_serde")]
    pub max_backoff: Duration,
    /// How often idle consumers look for new messages (publishes on the same
    /// host wake them at once).
    #[serde(with = "humantime_serde")]
    pub poll_interval: Duration,
    /// How long an idempotency key keeps deduplicating publishes.
    #[serde(with = "humantime_serde")]
    pub dedupe_window: Duration,
    /// Largest payload.
    pub max_payload: ByteSize,
    /// Per-command timeout for the backend.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
}

/// Which queue backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum QueueKind {
    /// A table in a SQL database.
    #[default]
    Sql,
    /// Redis Streams with consumer groups.
    Redis,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            kind: QueueKind::Sql,
            database: crate::capabilities::sql::HOST_DATABASE.into(),
            url: None,
            key_prefix: "lamina:queue:".into(),
            visibility_timeout: Duration::from_secs(30),
            max_attempts: 5,
            backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
            poll_interval: Duration::from_secs(1),
            dedupe_window: Duration::from_secs(24 * 3600),
            max_payload: ByteSize::mib(1),
            timeout: Duration::from_secs(5),
        }
    }
}

impl QueueConfig {
    /// The delay before delivery `attempt + 1`, after `attempt` failed.
    pub fn backoff_after(&self, attempt: u32) -> Duration {
        let factor = 2u32.saturating_pow(attempt.saturating_sub(1).min(30));
        self.backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// One claimed delivery of a message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Message id (stable across deliveries, and the same for every
    /// subscriber).
    pub id: String,
    /// Topic.
    pub topic: String,
    /// The subscribing component this copy is for.
    pub subscriber: String,
    /// Payload bytes.
    pub payload: Vec<u8>,
    /// 1 on the first delivery.
    pub attempt: u32,
    /// Publisher's idempotency key.
    pub idempotency_key: Option<String>,
    /// Microseconds since the Unix epoch.
    pub published_at: i64,
    /// Backend-specific proof of the claim (lease token / stream entry id).
    receipt: String,
}

/// A dead-lettered message, as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DeadLetter {
    /// Message id (use it to replay).
    pub id: String,
    /// Topic.
    pub topic: String,
    /// The subscriber whose copy failed (empty: not yet adopted by one).
    pub subscriber: String,
    /// Deliveries made.
    pub attempts: u32,
    /// The handler's last error.
    pub last_error: String,
    /// Publisher's idempotency key.
    pub idempotency_key: Option<String>,
    /// Payload, as UTF-8 where it is (lossy otherwise).
    pub payload: String,
    /// Microseconds since the Unix epoch.
    pub published_at: i64,
}

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// Bad input (too large, empty topic, ...).
    #[error("{0}")]
    Invalid(String),
    /// The backend could not be reached.
    #[error("queue backend unavailable: {0}")]
    Unavailable(String),
}

enum Backend {
    Sql(sql::SqlQueue),
    Redis(redis::RedisQueue),
}

/// Messages of one topic by state (the `lamina_queue_depth` and
/// `lamina_queue_dead_letters` gauges).
#[derive(Debug, Clone, Copy, Default)]
pub struct Depth {
    /// Not yet handled: due, delayed, awaiting a retry, or in flight.
    pub waiting: u64,
    /// Dead-lettered, awaiting replay.
    pub dead: u64,
}

/// The queue shared by publishers and the trigger.
pub struct Queue {
    backend: Backend,
    config: QueueConfig,
    subscriptions: Subscriptions,
    /// Wakes this host's consumers when it publishes.
    published: Arc<Notify>,
}

/// Now, in microseconds since the Unix epoch.
fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

impl Queue {
    /// Opens the configured backend (creating the SQL table if needed);
    /// publishes copy each message to the `subscriptions` of its topic.
    pub async fn open(
        config: &QueueConfig,
        databases: &super::sql::Databases,
        breaker: crate::breaker::BreakerConfig,
        subscriptions: Subscriptions,
    ) -> anyhow::Result<Queue> {
        let backend = match config.kind {
            QueueKind::Sql => {
                let db = databases.get(&config.database).ok_or_else(|| {
                    anyhow::anyhow!(
                        "queue.database: no database `{}` is configured",
                        config.database
                    )
                })?;
                Backend::Sql(sql::SqlQueue::open(db.clone(), config).await?)
            }
            QueueKind::Redis => {
                let url = config.url.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("queue.url is required when queue.type = \"redis\"")
                })?;
                Backend::Redis(redis::RedisQueue::open(url, config, breaker)?)
            }
        };
        tracing::info!(backend = ?config.kind, "queue ready");
        Ok(Queue {
            backend,
            config: config.clone(),
            subscriptions,
            published: Arc::new(Notify::new()),
        })
    }

    /// The queue's settings.
    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Resolves when this host publishes something (or spuriously).
    pub async fn published(&self) {
        self.published.notified().await;
    }

    /// Publishes a message; with an idempotency key seen within the dedupe
    /// window, returns the earlier message's id instead.
    pub async fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        idempotency_key: Option<String>,
        delay: Option<Duration>,
    ) -> Result<String, QueueError> {
        if !valid_topic(topic) {
            return Err(QueueError::Invalid(format!(
                "topics are 1 to {MAX_TOPIC_BYTES} letters, digits, '.', '_' or '-'"
            )));
        }
        if payload.len() as u64 > self.config.max_payload.bytes() {
            return Err(QueueError::Invalid(format!(
                "payload is {} bytes; the limit is {}",
                payload.len(),
                self.config.max_payload
            )));
        }
        if let Some(key) = &idempotency_key
            && (key.is_empty() || key.len() > MAX_KEY_BYTES || key.chars().any(char::is_control))
        {
            return Err(QueueError::Invalid(format!(
                "idempotency keys are 1 to {MAX_KEY_BYTES} bytes without control characters"
            )));
        }
        let visible_at = now_micros() + delay.map_or(0, |d| d.as_micros() as i64);
        let subscribers = self.subscribers(topic);
        let id = match &self.backend {
            Backend::Sql(q) => {
                q.publish(topic, subscribers, payload, idempotency_key, visible_at)
                    .await?
            }
            Backend::Redis(q) => {
                q.publish(topic, subscribers, payload, idempotency_key, visible_at)
                    .await?
            }
        };
        metrics::counter!("lamina_queue_published_total", "topic" => topic.to_owned()).increment(1);
        self.published.notify_waiters();
        Ok(id)
    }

    /// The subscribers of `topic` (none: a copy waits unclaimed).
    fn subscribers(&self, topic: &str) -> &[String] {
        self.subscriptions.get(topic).map_or(&[], Vec::as_slice)
    }

    /// Claims the next due message of `topic` for `subscriber`, if any; it
    /// stays invisible to that subscriber's other consumers for the
    /// visibility timeout.
    pub async fn claim(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Option<Delivery>, QueueError> {
        match &self.backend {
            Backend::Sql(q) => q.claim(topic, subscriber).await,
            Backend::Redis(q) => q.claim(topic, subscriber).await,
        }
    }

    /// The message was handled: never deliver it again.
    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Sql(q) => q.ack(delivery).await,
            Backend::Redis(q) => q.ack(delivery).await,
        }
    }

    /// Keeps a claim alive while its handler runs, so a slow handler is
    /// not mistaken for a dead consumer.
    pub async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError> {
        match &self.backend {
            Backend::Sql(q) => q.extend(delivery).await,
            Backend::Redis(q) => q.extend(delivery).await,
        }
    }

    /// The handler failed: deliver again after the backoff, or dead-letter
    /// the message after its last attempt. Returns whether it was dead-lettered.
    pub async fn fail(&self, delivery: &Delivery, error: &str) -> Result<bool, QueueError> {
        let dead = delivery.attempt >= self.config.max_attempts;
        let error: String = error.chars().take(2000).collect();
        match &self.backend {
            Backend::Sql(q) if dead => q.dead_letter(delivery, &error).await?,
            Backend::Redis(q) if dead => q.dead_letter(delivery, &error).await?,
            Backend::Sql(q) => q.retry(delivery, &error, self.retry_at(delivery)).await?,
            Backend::Redis(q) => q.retry(delivery, &error, self.retry_at(delivery)).await?,
        }
        Ok(dead)
    }

    fn retry_at(&self, delivery: &Delivery) -> i64 {
        now_micros() + self.config.backoff_after(delivery.attempt).as_micros() as i64
    }

    /// Up to `limit` dead letters of `topic` (every subscriber's), oldest
    /// first.
    pub async fn dead_letters(
        &self,
        topic: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        match &self.backend {
            Backend::Sql(q) => q.dead_letters(topic, limit).await,
            Backend::Redis(q) => q.dead_letters(topic, self.subscribers(topic), limit).await,
        }
    }

    /// Puts a dead letter back on its topic with a fresh attempt count, for
    /// each subscriber whose copy is dead. Returns false if there is no
    /// such dead letter.
    pub async fn replay(&self, topic: &str, id: &str) -> Result<bool, QueueError> {
        let replayed = match &self.backend {
            Backend::Sql(q) => q.replay(topic, id).await?,
            Backend::Redis(q) => q.replay(topic, self.subscribers(topic), id).await?,
        };
        if replayed {
            self.published.notify_waiters();
        }
        Ok(replayed)
    }

    /// How many messages of `topic` wait (due, delayed or in flight) and
    /// how many are dead-lettered.
    pub async fn depth(&self, topic: &str) -> Result<Depth, QueueError> {
        match &self.backend {
            Backend::Sql(q) => q.depth(topic).await,
            Backend::Redis(q) => q.depth(topic, self.subscribers(topic)).await,
        }
    }

    /// Whether the backend answers.
    pub async fn probe(&self) -> Result<(), String> {
        match &self.backend {
            Backend::Sql(q) => q.probe().await,
            Backend::Redis(q) => q.probe().await,
        }
        .map_err(|e| e.to_string())
    }

    /// Prepares consumption of `topic` by its subscribers (Redis: creates
    /// their consumer groups), and hands each of them a copy of what was
    /// published while the topic had none.
    pub async fn subscribe(&self, topic: &str) -> Result<(), QueueError> {
        let subscribers = self.subscribers(topic);
        match &self.backend {
            Backend::Sql(q) => q.subscribe(topic, subscribers).await,
            Backend::Redis(q) => q.subscribe(topic, subscribers).await,
        }
    }
}

impl wit::Host for CapabilityView<'_> {
    async fn publish(
        &mut self,
        topic: String,
        payload: Vec<u8>,
        options: wit::PublishOptions,
    ) -> wasmtime::Result<Result<String, wit::Error>> {
        if !self.ctx.grants.queues.contains(&topic) {
            return Ok(Err(wit::Error::AccessDenied(super::not_granted(
                "queue topic",
                "queues",
                &topic,
            ))));
        }
        let delay = options.delay_ms.map(Duration::from_millis);
        let queue = &self.ctx.shared.queue;
        Ok(
            match queue
                .publish(&topic, payload, options.idempotency_key, delay)
                .await
            {
                Ok(id) => Ok(id),
                Err(QueueError::Invalid(detail)) => Err(wit::Error::Invalid(detail)),
                Err(QueueError::Unavailable(detail)) => {
                    tracing::warn!(%topic, "queue unavailable: {detail}");
                    Err(wit::Error::Unavailable(detail))
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_is_capped() {
        let config = QueueConfig {
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(350),
            ..QueueConfig::default()
        };
        let delays: Vec<_> = (1..=4)
            .map(|a| config.backoff_after(a).as_millis())
            .collect();
        assert_eq!(delays, [100, 200, 350, 350]);
    }
}
