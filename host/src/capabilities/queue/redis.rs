//! Redis Streams queue. Each subscriber of a topic has a channel of its
//! own, all keys under `<key_prefix><topic>:@<subscriber>:` (a topic without
//! subscribers keeps its messages unclaimed under `<key_prefix><topic>:`):
//!
//! - `stream`: due messages, consumed by the consumer group `lamina`; every
//!   host is one consumer, so each entry goes to one host. A host that dies
//!   holding an entry loses it to `XAUTOCLAIM` after the visibility timeout.
//! - `delayed`: a sorted set of messages not yet due (delayed publishes and
//!   retries), moved into the stream by a Lua script when due.
//! - `dead`: a hash of dead letters by message id.
//!
//! A channel of its own per subscriber (rather than one stream read by a
//! group per subscriber) lets each retry, dead-letter and delete its
//! entries without touching the others'. Idempotency markers are per topic:
//! `<key_prefix><topic>:idem:<key>` (`SET NX`, expiring after the dedupe
//! window); a publish adds every subscriber's copy in one `MULTI`.

use std::time::Duration;

use redis::streams::StreamId;

use super::{DeadLetter, Delivery, Depth, QueueConfig, QueueError, now_micros};
use crate::breaker::BreakerConfig;
use crate::capabilities::redis_conn::{Failure, RedisConn};

/// Consumer group shared by every host.
const GROUP: &str = "lamina";

/// Moves due members of the delayed set (`KEYS[1]`) into the stream
/// (`KEYS[2]`), atomically. A member is `id\nattempt\npublished_at\nkey\npayload`.
const MOVE_DUE: &str = r"
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 100)
for _, m in ipairs(due) do
  local f = {}
  local pos = 1
  for i = 1, 4 do
    local nl = string.find(m, '\n', pos, true)
    f[i] = string.sub(m, pos, nl - 1)
    pos = nl + 1
  end
  redis.call('XADD', KEYS[2], '*', 'id', f[1], 'attempt', f[2], 'published_at', f[3], 'key', f[4], 'payload', string.sub(m, pos))
  redis.call('ZREM', KEYS[1], m)
end
return #due
";

/// Copies a topic's unclaimed messages (stream `KEYS[1]`, delayed set
/// `KEYS[2]`, dead letters `KEYS[3]` and their errors `KEYS[4]`) into each
/// subscriber channel whose key prefix is in `ARGV`, then deletes them, in
/// one atomic step (two hosts starting at once cannot both copy).
const ADOPT: &str = r"
for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do
  for i = 1, #ARGV do redis.call('XADD', ARGV[i] .. 'stream', '*', unpack(e[2])) end
end
local delayed = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for j = 1, #delayed, 2 do
  for i = 1, #ARGV do redis.call('ZADD', ARGV[i] .. 'delayed', delayed[j + 1], delayed[j]) end
end
for k = 3, 4 do
  local part = (k == 3) and 'dead' or 'dead-errors'
  local all = redis.call('HGETALL', KEYS[k])
  for j = 1, #all, 2 do
    for i = 1, #ARGV do redis.call('HSET', ARGV[i] .. part, all[j], all[j + 1]) end
  end
end
return redis.call('DEL', KEYS[1], KEYS[2], KEYS[3], KEYS[4])
";

/// A message at rest (in the delayed set or the dead-letter hash).
struct Record {
    id: String,
    attempt: u32,
    published_at: i64,
    key: Option<String>,
    payload: Vec<u8>,
}

impl Record {
    fn encode(&self) -> Vec<u8> {
        let mut out = format!(
            "{}\n{}\n{}\n{}\n",
            self.id,
            self.attempt,
            self.published_at,
            self.key.as_deref().unwrap_or("")
        )
        .into_bytes();
        out.extend_from_slice(&self.payload);
        out
    }

    fn decode(bytes: &[u8]) -> Option<Record> {
        let mut parts = bytes.splitn(5, |b| *b == b'\n');
        let mut field = || {
            parts
                .next()
                .map(|p| String::from_utf8_lossy(p).into_owned())
        };
        let (id, attempt, published_at, key) = (field()?, field()?, field()?, field()?);
        let payload = parts.next()?.to_vec();
        Some(Record {
            id,
            attempt: attempt.parse().ok()?,
            published_at: published_at.parse().ok()?,
            key: (!key.is_empty()).then_some(key),
            payload,
        })
    }

    fn from_entry(entry: &StreamId) -> Option<Record> {
        let text = |name: &str| -> Option<String> { entry.get(name) };
        Some(Record {
            id: text("id")?,
            attempt: text("attempt")?.parse().ok()?,
            published_at: text("published_at")?.parse().ok()?,
            key: text("key").filter(|k| !k.is_empty()),
            payload: entry.get("payload")?,
        })
    }
}

/// The queue on one Redis server.
pub struct RedisQueue {
    connection: RedisConn,
    prefix: String,
    consumer: String,
    visibility: Duration,
    dedupe_window: Duration,
    move_due: redis::Script,
    adopt: redis::Script,
}

impl RedisQueue {
    pub fn open(
        url: &str,
        config: &QueueConfig,
        breaker: BreakerConfig,
    ) -> anyhow::Result<RedisQueue> {
        Ok(RedisQueue {
            connection: RedisConn::connect_lazy("redis:queue", url, config.timeout, breaker)?,
            prefix: config.key_prefix.clone(),
            consumer: format!("host-{}", uuid::Uuid::new_v4()),
            visibility: config.visibility_timeout,
            dedupe_window: config.dedupe_window,
            move_due: redis::Script::new(MOVE_DUE),
            adopt: redis::Script::new(ADOPT),
        })
    }

    /// Where the keys of `subscriber`'s channel of `topic` start (`""`: the
    /// topic's unclaimed messages). Topics have no `:` and component ids
    /// no `@`, so no two channels share a key.
    fn channel(&self, topic: &str, subscriber: &str) -> String {
        if subscriber.is_empty() {
            format!("{}{topic}:", self.prefix)
        } else {
            format!("{}{topic}:@{subscriber}:", self.prefix)
        }
    }

    fn key(&self, topic: &str, subscriber: &str, part: &str) -> String {
        format!("{}{part}", self.channel(topic, subscriber))
    }

    /// Every channel of `topic`: its subscribers' and the unclaimed one.
    fn channels<'s>(&self, subscribers: &'s [String]) -> impl Iterator<Item = &'s str> {
        subscribers
            .iter()
            .map(String::as_str)
            .chain(std::iter::once(""))
    }

    async fn run<T: redis::FromRedisValue>(&self, command: &redis::Cmd) -> Result<T, QueueError> {
        self.connection.query(command).await.map_err(error)
    }

    async fn run_pipeline(&self, pipeline: &redis::Pipeline) -> Result<(), QueueError> {
        self.connection.pipeline(pipeline).await.map_err(error)
    }

    pub async fn probe(&self) -> Result<(), QueueError> {
        self.run::<String>(&redis::cmd("PING")).await.map(drop)
    }

    /// Creates each subscriber's consumer group (from the start of its
    /// stream), then moves what was published while the topic had no
    /// subscriber into every subscriber's channel.
    pub async fn subscribe(&self, topic: &str, subscribers: &[String]) -> Result<(), QueueError> {
        for subscriber in subscribers {
            let created = self
                .connection
                .query::<()>(
                    redis::cmd("XGROUP")
                        .arg("CREATE")
                        .arg(self.key(topic, subscriber, "stream"))
                        .arg(GROUP)
                        .arg("0")
                        .arg("MKSTREAM"),
                )
                .await;
            match created {
                Ok(()) => {}
                Err(Failure::Refused(e)) if e.to_string().contains("BUSYGROUP") => {}
                Err(e) => return Err(error(e)),
            }
        }
        if subscribers.is_empty() {
            return Ok(());
        }
        let mut invocation = self.adopt.prepare_invoke();
        for part in ["stream", "delayed", "dead", "dead-errors"] {
            invocation.key(self.key(topic, "", part));
        }
        for subscriber in subscribers {
            invocation.arg(self.channel(topic, subscriber));
        }
        self.connection
            .invoke::<u64>(&invocation)
            .await
            .map(drop)
            .map_err(error)
    }

    /// Adds a copy for each of `subscribers` (none: an unclaimed one) in
    /// one `MULTI`.
    pub async fn publish(
        &self,
        topic: &str,
        subscribers: &[String],
        payload: Vec<u8>,
        key: Option<String>,
        visible_at: i64,
    ) -> Result<String, QueueError> {
        let id = uuid::Uuid::new_v4().to_string();
        if let Some(key) = &key {
            let marker = self.key(topic, "", &format!("idem:{key}"));
            let (claimed, existing): (Option<String>, Option<String>) = self
                .connection
                .pipeline(
                    redis::pipe()
                        .cmd("SET")
                        .arg(&marker)
                        .arg(&id)
                        .arg("NX")
                        .arg("PX")
                        .arg(self.dedupe_window.as_millis() as u64)
                        .cmd("GET")
                        .arg(&marker),
                )
                .await
                .map_err(error)?;
            if claimed.is_none() {
                return existing
                    .ok_or_else(|| QueueError::Unavailable("idempotency marker vanished".into()));
            }
        }
        let record = Record {
            id: id.clone(),
            attempt: 0,
            published_at: now_micros(),
            key,
            payload,
        };
        let unclaimed = [String::new()];
        let copies = if subscribers.is_empty() {
            &unclaimed[..]
        } else {
            subscribers
        };
        let mut pipeline = redis::pipe();
        pipeline.atomic();
        for subscriber in copies {
            if visible_at > now_micros() {
                pipeline
                    .cmd("ZADD")
                    .arg(self.key(topic, subscriber, "delayed"))
                    .arg(visible_at / 1000)
                    .arg(record.encode())
                    .ignore();
            } else {
                pipeline
                    .add_command(xadd(&self.key(topic, subscriber, "stream"), &record))
                    .ignore();
            }
        }
        self.run_pipeline(&pipeline).await?;
        Ok(id)
    }

    pub async fn claim(
        &self,
        topic: &str,
        subscriber: &str,
    ) -> Result<Option<Delivery>, QueueError> {
        let stream = self.key(topic, subscriber, "stream");
        // Due delayed messages and retries join the stream first.
        {
            let mut invocation = self.move_due.key(self.key(topic, subscriber, "delayed"));
            invocation.key(&stream).arg(now_micros() / 1000);
            self.connection
                .invoke::<u64>(&invocation)
                .await
                .map_err(error)?;
        }
        // Entries another consumer claimed and never acknowledged.
        let reclaimed: redis::streams::StreamAutoClaimReply = self
            .run(
                redis::cmd("XAUTOCLAIM")
                    .arg(&stream)
                    .arg(GROUP)
                    .arg(&self.consumer)
                    .arg(self.visibility.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(1),
            )
            .await?;
        let entry = match reclaimed.claimed.into_iter().next() {
            Some(entry) => Some(entry),
            None => {
                let reply: Option<redis::streams::StreamReadReply> = self
                    .run(
                        redis::cmd("XREADGROUP")
                            .arg("GROUP")
                            .arg(GROUP)
                            .arg(&self.consumer)
                            .arg("COUNT")
                            .arg(1)
                            .arg("STREAMS")
                            .arg(&stream)
                            .arg(">"),
                    )
                    .await?;
                reply
                    .and_then(|r| r.keys.into_iter().next())
                    .and_then(|k| k.ids.into_iter().next())
            }
        };
        let Some(entry) = entry else { return Ok(None) };
        let Some(record) = Record::from_entry(&entry) else {
            tracing::warn!(topic, entry = %entry.id, "dropping a malformed queue entry");
            self.remove(&stream, &entry.id).await?;
            return Ok(None);
        };
        Ok(Some(Delivery {
            id: record.id,
            topic: topic.to_owned(),
            subscriber: subscriber.to_owned(),
            payload: record.payload,
            attempt: record.attempt + 1,
            idempotency_key: record.key,
            published_at: record.published_at,
            receipt: entry.id,
        }))
    }

    /// A MULTI that acknowledges and deletes a stream entry; callers add
    /// what else must happen atomically with it.
    fn settle(stream: &str, entry: &str) -> redis::Pipeline {
        let mut pipeline = redis::pipe();
        pipeline
            .atomic()
            .cmd("XACK")
            .arg(stream)
            .arg(GROUP)
            .arg(entry)
            .ignore()
            .cmd("XDEL")
            .arg(stream)
            .arg(entry)
            .ignore();
        pipeline
    }

    async fn remove(&self, stream: &str, entry: &str) -> Result<(), QueueError> {
        self.run_pipeline(&Self::settle(stream, entry)).await
    }

    /// The key of `part` in the channel `delivery` came from.
    fn delivery_key(&self, delivery: &Delivery, part: &str) -> String {
        self.key(&delivery.topic, &delivery.subscriber, part)
    }

    /// `XCLAIM` to ourselves resets the entry's idle time.
    pub async fn extend(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.run::<redis::Value>(
            redis::cmd("XCLAIM")
                .arg(self.delivery_key(delivery, "stream"))
                .arg(GROUP)
                .arg(&self.consumer)
                .arg(0)
                .arg(&delivery.receipt)
                .arg("JUSTID"),
        )
        .await
        .map(drop)
    }

    pub async fn ack(&self, delivery: &Delivery) -> Result<(), QueueError> {
        self.remove(&self.delivery_key(delivery, "stream"), &delivery.receipt)
            .await
    }

    /// Acknowledges the entry and re-adds the message to the delayed set,
    /// in one MULTI so it is neither lost nor duplicated.
    pub async fn retry(
        &self,
        delivery: &Delivery,
        _error: &str,
        at: i64,
    ) -> Result<(), QueueError> {
        let mut pipeline = Self::settle(&self.delivery_key(delivery, "stream"), &delivery.receipt);
        pipeline
            .cmd("ZADD")
            .arg(self.delivery_key(delivery, "delayed"))
            .arg(at / 1000)
            .arg(record_of(delivery).encode())
            .ignore();
        self.run_pipeline(&pipeline).await
    }

    /// Acknowledges the entry and files the message under the channel's
    /// dead letters, in one MULTI.
    pub async fn dead_letter(&self, delivery: &Delivery, error: &str) -> Result<(), QueueError> {
        let mut pipeline = Self::settle(&self.delivery_key(delivery, "stream"), &delivery.receipt);
        pipeline
            .cmd("HSET")
            .arg(self.delivery_key(delivery, "dead"))
            .arg(&delivery.id)
            .arg(record_of(delivery).encode())
            .ignore()
            .cmd("HSET")
            .arg(self.delivery_key(delivery, "dead-errors"))
            .arg(&delivery.id)
            .arg(error)
            .ignore();
        self.run_pipeline(&pipeline).await
    }

    /// Unacknowledged stream entries plus delayed ones; dead letters; over
    /// every channel of the topic.
    pub async fn depth(&self, topic: &str, subscribers: &[String]) -> Result<Depth, QueueError> {
        let mut depth = Depth::default();
        for subscriber in self.channels(subscribers) {
            let (stream, delayed, dead): (u64, u64, u64) = self
                .connection
                .pipeline(
                    redis::pipe()
                        .cmd("XLEN")
                        .arg(self.key(topic, subscriber, "stream"))
                        .cmd("ZCARD")
                        .arg(self.key(topic, subscriber, "delayed"))
                        .cmd("HLEN")
                        .arg(self.key(topic, subscriber, "dead")),
                )
                .await
                .map_err(error)?;
            depth.waiting += stream + delayed;
            depth.dead += dead;
        }
        Ok(depth)
    }

    pub async fn dead_letters(
        &self,
        topic: &str,
        subscribers: &[String],
        limit: usize,
    ) -> Result<Vec<DeadLetter>, QueueError> {
        let mut letters = Vec::new();
        for subscriber in self.channels(subscribers) {
            let all: Vec<(String, Vec<u8>)> = self
                .run(redis::cmd("HGETALL").arg(self.key(topic, subscriber, "dead")))
                .await?;
            let errors: std::collections::HashMap<String, String> = self
                .run(redis::cmd("HGETALL").arg(self.key(topic, subscriber, "dead-errors")))
                .await?;
            letters.extend(
                all.into_iter()
                    .filter_map(|(_, bytes)| Record::decode(&bytes))
                    .map(|r| DeadLetter {
                        last_error: errors.get(&r.id).cloned().unwrap_or_default(),
                        id: r.id,
                        topic: topic.to_owned(),
                        subscriber: subscriber.to_owned(),
                        attempts: r.attempt,
                        idempotency_key: r.key,
                        payload: String::from_utf8_lossy(&r.payload).into_owned(),
                        published_at: r.published_at,
                    }),
            );
        }
        letters.sort_by_key(|l| l.published_at);
        letters.truncate(limit);
        Ok(letters)
    }

    /// Puts the dead copies of message `id` back on their channels.
    pub async fn replay(
        &self,
        topic: &str,
        subscribers: &[String],
        id: &str,
    ) -> Result<bool, QueueError> {
        let mut replayed = false;
        for subscriber in self.channels(subscribers) {
            let bytes: Option<Vec<u8>> = self
                .run(
                    redis::cmd("HGET")
                        .arg(self.key(topic, subscriber, "dead"))
                        .arg(id),
                )
                .await?;
            let Some(mut record) = bytes.as_deref().and_then(Record::decode) else {
                continue;
            };
            record.attempt = 0;
            let mut pipeline = redis::pipe();
            pipeline.atomic();
            pipeline
                .add_command(xadd(&self.key(topic, subscriber, "stream"), &record))
                .ignore();
            pipeline
                .cmd("HDEL")
                .arg(self.key(topic, subscriber, "dead"))
                .arg(id)
                .ignore();
            pipeline
                .cmd("HDEL")
                .arg(self.key(topic, subscriber, "dead-errors"))
                .arg(id)
                .ignore();
            self.run_pipeline(&pipeline).await?;
            replayed = true;
        }
        Ok(replayed)
    }
}

/// The message of a delivery, with the attempts made so far.
fn record_of(delivery: &Delivery) -> Record {
    Record {
        id: delivery.id.clone(),
        attempt: delivery.attempt,
        published_at: delivery.published_at,
        key: delivery.idempotency_key.clone(),
        payload: delivery.payload.clone(),
    }
}

fn xadd(stream: &str, record: &Record) -> redis::Cmd {
    let mut command = redis::cmd("XADD");
    command
        .arg(stream)
        .arg("*")
        .arg("id")
        .arg(&record.id)
        .arg("attempt")
        .arg(record.attempt)
        .arg("published_at")
        .arg(record.published_at)
        .arg("key")
        .arg(record.key.as_deref().unwrap_or(""))
        .arg("payload")
        .arg(&record.payload);
    command
}

fn error(failure: Failure) -> QueueError {
    QueueError::Unavailable(failure.to_string())
}

#[cfg(test)]
mod tests {
    use super::Record;

    #[test]
    fn records_round_trip_with_binary_payloads() {
        let record = Record {
            id: "m1".into(),
            attempt: 3,
            published_at: 42,
            key: Some("k".into()),
            payload: b"line1\nline2\0".to_vec(),
        };
        let back = Record::decode(&record.encode()).unwrap();
        assert_eq!(
            (back.id.as_str(), back.attempt, back.published_at),
            ("m1", 3, 42)
        );
        assert_eq!(back.key.as_deref(), Some("k"));
        assert_eq!(back.payload, record.payload);
    }
}
