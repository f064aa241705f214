//! Durable SQL-table queue. One row per message and subscriber (a topic
//! nobody subscribes to yet keeps one row for subscriber `''`, adopted by
//! the subscribers later); a claim is an `UPDATE` that moves `visible_at`
//! past the visibility timeout and stamps a lease, so a crashed consumer's
//! message becomes due again by itself. Handled messages stay (without
//! payload) for the dedupe window so their idempotency keys keep
//! deduplicating.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use super::{DeadLetter, Delivery, Depth, QueueConfig, QueueError, now_micros};
use crate::capabilities::bindings::lamina::platform::sql::{Error as SqlError, Value};
use crate::capabilities::sql::{Database, text};

/// Host-internal schema, created at start-up (not an application migration).
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS lamina_queue_messages (
        id TEXT NOT NULL,
        subscriber TEXT NOT NULL DEFAULT '',
        topic TEXT NOT NULL,
        payload {blob} NOT NULL,
        idempotency_key TEXT,
        state TEXT NOT NULL,
        attempts BIGINT NOT NULL,
        visible_at BIGINT NOT NULL,
        published_at BIGINT NOT NULL,
        lease TEXT,
        last_error TEXT,
        PRIMARY KEY (id, subscriber)
    )",
    "CREATE UNIQUE INDEX IF NOT EXISTS lamina_queue_messages_idempotency
        ON lamina_queue_messages (topic, subscriber, idempotency_key)",
    "CREATE INDEX IF NOT EXISTS lamina_queue_messages_due
        ON lamina_queue_messages (topic, subscriber, state, visible_at)",
    "CREATE INDEX IF NOT EXISTS lamina_queue_messages_state
        ON lamina_queue_messages (state, visible_at)",
];

/// How often publishing also forgets handled messages past the dedupe window.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// The queue on one database.
pub struct SqlQueue {
    db: Database,
    visibility: Duration,
    dedupe_window: Duration,
    /// `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite serializes writers.
    lock_clause: &'static str,
    /// When handled messages were last purged (microseconds since the epoch).
    purged_at: AtomicI64,
}

fn unavailable(error: SqlError) -> QueueError {
    QueueError::Unavailable(format!("{error:?}"))
}

impl SqlQueue {
    pub async fn open(db: Database, config: &QueueConfig) -> anyhow::Result<SqlQueue> {
        let (blob, lock_clause) = match db.dialect_name() {
            "postgres" => ("BYTEA", "FOR UPDATE SKIP LOCKED"),
            _ => ("BLOB", ""),
        };
        for statement in SCHEMA {
            db.execute(&statement.replace("{blob}", blob), vec![])
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the queue table: {e:?}"))?;
        }
        Ok(SqlQueue {
            db,
            visibility: config.visibility_timeout,
            dedupe_window: config.dedupe_window,
            lock_clause,
            purged_at: AtomicI64::new(0),
        })
    }

    pub async fn depth(&self, topic: &str) -> Result<Depth, QueueError> {
        let rows = self
            .db
            .query(
                "SELECT state, count(*) FROM lamina_queue_messages
                  WHERE topic = $1 AND state IN ('ready', 'dead') GROUP BY state",
                vec![text(topic)],
            )
            .await
            .map_err(unavailable)?;
        let mut depth = Depth::default();
        for row in rows.rows {
            if let [Value::Text(state), Value::Int(n)] = row.as_slice() {
                match state.as_str() {
                    "ready" => depth.waiting = *n as u64,
                    _ => depth.dead = *n as u64,
                }
            }
        }
        Ok(depth)
    }

    pub async fn probe(&self) -> Result<(), QueueError> {
        self.db
            .query("SELECT 1", vec![])
            .await
            .map(drop)
            .map_err(unavailable)
    }

    /// Stores one copy for each of `subscribers` (none: one unclaimed
    /// copy), in one statement.
    pub async fn publish(
        &self,
        topic: &str,
        subscribers: &[String],
        payload: Vec<u8>,
        key: Option<String>,
        visible_at: i64,
    ) -> Result<String, QueueError> {
        self.purge_expired_keys().await?;
        let id = uuid::Uuid::new_v4().to_string();
        let unclaimed = [String::new()];
        let copies = if subscribers.is_empty() {
            &unclaimed[..]
        } else {
            subscribers
        };
        let rows: Vec<String> = (0..copies.len())
            .map(|n| format!("($1, ${}, $2, $3, $4, 'ready', 0, $5, $6)", n + 7))
            .collect();
        let mut params = vec![
            text(&id),
            text(topic),
            Value::Blob(payload),
            key.as_deref().map_or(Value::Null, text),
            Value::Int(visible_at),
            Value::Int(now_micros()),
        ];
        params.extend(copies.iter().map(|s| text(s)));
        let inserted = self
            .db
            .execute(
                &format!(
                    "INSERT INTO lamina_queue_messages
                        (id, subscriber, topic, payload, idempotency_key, state, attempts, visible_at, published_at)
                     VALUES {}
                     ON CONFLICT (topic, subscriber, idempotency_key) DO NOTHING",
                    rows.join(", ")
                ),
                params,
            )
            .await
            .map_err(unavailable)?;
        if inserted > 0 {
            return Ok(id);
        }
        // Same idempotency key within the window: the first message stands.
        let rows = self
            .db
            .query(
                "SELECT id FROM lamina_queue_messages WHERE topic = $1 AND idempotency_key = $2 LIMIT 1",
                vec![text(topic), key.as_deref().map_or(Value::Null, text)],
            )
            .await
            .map_err(unavailable)?;
        match rows.rows.first().and_then(|r| r.first()) {
            Some(Value::Text(existing)) => Ok(existing.clone()),
            _ => Err(QueueError::Unavailable("published message vanished".into())),
        }
    }

    /// Forgets handled messages older than the dedupe window, so their keys
    /// can be used again; at most once per [`PURGE_EVERY`] per host.
    async fn purge_expired_keys(&self) -> Result<(), QueueError> {
        let now = now_micros();
        let last = self.purged_at.load(Ordering::Relaxed);
        if now - last < PURGE_EVERY.as_micros() as i64
            || self
                .purged_at
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return Ok(());
        }
        let cutoff = now_micros() - self.dedupe_window.as_micros() as i64;
        self.db
            .execute(
                "DELETE FROM lamina_queue_messages WHERE state = 'done' AND visible_at < $1",
                vec![Value::Int(cutoff)],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Copies what was published while `topic` had no subscriber to each
    /// of `subscribers`, then drops the unclaimed rows. Idempotent, so a
    /// host that stops half-way finishes on its next start.
    pub async fn subscribe(&self, topic: &str, subscribers: &[String]) -> Result<(), QueueError> {
        if subscribers.is_empty() {
            return Ok(());
        }
        for subscriber in subscribers {
            self.db
                .execute(
                    "INSERT INTO lamina_queue_messages
                        (id, subscriber, topic, payload, idempotency_key, state, attempts,
                         visible_at, published_at, lease, last_error)
                     SELECT id, $2, topic, payload, idempotency_key, state, attempts,
                            visible_at, published_at, NULL, last_error
                       FROM lamina_queue_messages WHERE topic = $1 AND subscriber = ''
                     ON CONFLICT DO NOTHING",
                    vec![text(topic), text(subscriber)],
                )
                .await
                .map_err(unavailable)?;
        }
        // Only what every subscriber now has a copy of: a message another
        // host published meanwhile waits for the next start.
        self.db
            .execute(
                "DELETE FROM lamina_queue_messages AS u WHERE u.topic = $1 AND u.subscriber = ''
                   AND (SELECT count(*) FROM lamina_queue_messages c
                         WHERE c.topic = u.topic AND c.id = u.id AND c.subscriber <> '') = $2",
                vec![text(topic), Value::Int(subscribers.len() as i64)],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    pub async fn claim(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Option<Delivery>, QueueError> {
        let now = now_micros();
        let lease = uuid::Uuid::new_v4().to_string();
        let statement = format!(
            "UPDATE lamina_queue_messages
                SET visible_at = $1, attempts = attempts + 1, lease = $2
              WHERE subscriber = $5 AND id = (SELECT id FROM lamina_queue_messages
                           WHERE topic = $3 AND subscriber = $5 AND state = 'ready'
                             AND visible_at <= $4
                           ORDER BY visible_at LIMIT 1 {})
             RETURNING id, payload, attempts, idempotency_key, published_at",
            self.lock_clause
        );
        let rows = self
            .db
            .query(
                &statement,
                vec![
                    Value::Int(now + self.visibility.as_micros() as i64),
                    text(&lease),
                    text(topic),
                    Value::Int(now),
                    text(subscriber),
                ],
            )
            .await
            .map_err(unavailable)?;
        let Some(row) = rows.rows.into_iter().next() else {
            return Ok(None);
        };
        let mut values = row.into_iter();
        let (
            Some(Value::Text(id)),
            Some(Value::Blob(payload)),
            Some(Value::Int(attempts)),
            Some(key),
            Some(Value::Int(published_at)),
        ) = (
            values.next(),
            values.next(),
            values.next(),
            values.next(),
            values.next(),
        )
        else {
            return Err(QueueError::Unavailable(
                "unexpected row shape in the queue table".into(),
            ));
        };
        Ok(Some(Delivery {
            id,
            topic: topic.to_owned(),
            subscriber: subscriber.to_owned(),
            payload,
            attempt: attempts.try_into().unwrap_or(u32::MAX),
            idempotency_key: match key {
                Value::Text(k) => Some(k),
                _ => None,
            },
            published_at,
            receipt: lease,
        }))
    }

    async fn settle(
        &self,
        statement: &str,
        delivery: &Delivery,
        mut params: Vec<Value>,
    ) -> Result<(), QueueError> {
        params.push(text(&delivery.id));
        params.push(text(&delivery.receipt));
        let changed = self
            .db
            .execute(statement, params)
            .await
            .map_err(unavailable)?;
        if changed == 0 {
            // The lease expired and another consumer claimed the message;
            // that consumer settles it.
            tracing::warn!(id = %delivery.id, "queue message lease lost before it was settled");
        }
        Ok(())
    }

    pub async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let until = now_micros() + self.visibility.as_micros() as i64;
        self.settle(
            "UPDATE lamina_queue_messages SET visible_at = $1 WHERE id = $2 AND lease = $3",
            delivery,
            vec![Value::Int(until)],
        )
        .await
    }

    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        let n = Value::Int(now_micros());
        self.settle(
            "UPDATE lamina_queue_messages SET state = 'done', payload = $1, lease = NULL, visible_at = $2
              WHERE id = $3 AND lease = $4",
            delivery,
            vec![Value::Blob(Vec::new()), n],
        )
        .await
    }

    pub async fn retry(&self, delivery: &Delivery, error: &str, at: i64) -> Result<(), QueueError> {
        self.settle(
            "UPDATE lamina_queue_messages SET visible_at = $1, last_error = $2, lease = NULL
              WHERE id = $3 AND lease = $4",
            delivery,
            vec![Value::Int(at), text(error)],
        )
        .await
    }

    pub async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), QueueError> {
        self.settle(
            "UPDATE lamina_queue_messages SET state = 'dead', last_error = $1, lease = NULL
              WHERE id = $2 AND lease = $3",
            delivery,
            vec![text(error)],
        )
        .await
    }

    pub async fn dead_letters(
        &self,
        topic: &str,
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let rows = self
            .db
            .query(
                "SELECT id, subscriber, attempts, last_error, idempotency_key, payload, published_at
                   FROM lamina_queue_messages WHERE topic = $1 AND state = 'dead'
                  ORDER BY visible_at LIMIT $2",
                vec![text(topic), Value::Int(limit as i64)],
            )
            .await
            .map_err(unavailable)?;
        Ok(rows
            .rows
            .into_iter()
            .filter_map(|row| {
                let mut v = row.into_iter();
                match (
                    v.next()?,
                    v.next()?,
                    v.next()?,
                    v.next()?,
                    v.next()?,
                    v.next()?,
                    v.next()?,
                ) {
                    (
                        Value::Text(id),
                        Value::Text(subscriber),
                        Value::Int(attempts),
                        error,
                        key,
                        Value::Blob(payload),
                        Value::Int(published_at),
                    ) => Some(DeadLetter {
                        id,
                        topic: topic.to_owned(),
                        subscriber,
                        attempts: attempts.try_into().unwrap_or(u32::MAX),
                        last_error: match error {
                            Value::Text(e) => e,
                            _ => String::new(),
                        },
                        idempotency_key: match key {
                            Value::Text(k) => Some(k),
                            _ => None,
                        },
                        payload: String::from_utf8_lossy(&payload).into_owned(),
                        published_at,
                    }),
                    _ => None,
                }
            })
            .collect())
    }

    pub async fn replay(&self, topic: &str, id: &str) -> Result<bool, QueueError> {
        let changed = self
            .db
            .execute(
                "UPDATE lamina_queue_messages SET state = 'ready', attempts = 0, visible_at = $1, lease = NULL
                  WHERE id = $2 AND topic = $3 AND state = 'dead'",
                vec![Value::Int(now_micros()), text(id), text(topic)],
            )
            .await
            .map_err(unavailable)?;
        Ok(changed > 0)
    }
}
