//! Rate limiting: GCRA (the generic cell rate algorithm, equivalent to a
//! token bucket) per (caller, route class), in-process or in Redis so a
//! limit holds across every host sharing it.
//!
//! A class allows `requests` per `per` with bursts of `burst`: each request
//! moves the key's *theoretical arrival time* (TAT) one emission interval
//! `T = per / requests` into the future; a request is refused when that
//! would put the TAT more than `burst × T` ahead of now. One number per key,
//! updated atomically (under a shard lock in process, or by one Lua script
//! in Redis using the server's clock).
//!
//! If Redis fails, the check falls back to the in-process limiter (logged
//! and counted), never to "no limit" and never to refusing everyone.

use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, StatusCode, header::HeaderName};
use serde::Deserialize;

use crate::breaker::BreakerConfig;
use crate::capabilities::redis_conn::{Failure, RedisConn};
use crate::problem::Problem;

/// `[rate_limit]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitConfig {
    /// `memory` (default) or `redis`.
    #[serde(rename = "type")]
    pub kind: LimiterKind,
    /// Redis: `redis://host:port/db`.
    pub url: Option<String>,
    /// Redis: prefix of every key.
    pub key_prefix: String,
    /// Redis: per-check timeout before falling back to in-process.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Classes by name; routes pick one with `rate_limit = "name"`, and
    /// `default` (if defined) applies to routes that pick none.
    pub classes: BTreeMap<String, ClassConfig>,
}

/// Where the limiter keeps its state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LimiterKind {
    /// This process only.
    #[default]
    Memory,
    /// Shared by every host using the same Redis and prefix.
    Redis,
}

impl Default for RateLimitConfig {
    fn default() -> Self {
        RateLimitConfig {
            kind: LimiterKind::Memory,
            url: None,
            key_prefix: "lamina:ratelimit:".into(),
            timeout: Duration::from_millis(100),
            classes: BTreeMap::new(),
        }
    }
}

/// `[rate_limit.classes.<name>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassConfig {
    /// Sustained requests per `per`.
    pub requests: u32,
    /// The window `requests` refers to.
    #[serde(with = "humantime_serde")]
    pub per: Duration,
    /// Burst size: requests that may arrive back to back (default: `requests`).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Requests of one caller in flight at once on this host (default: no limit).
    #[serde(default)]
    pub concurrent: Option<u32>,
    /// `[rate_limit.classes.<name>.all_callers]`: limits every caller of the
    /// class shares, on top of each one's own (e.g. anonymous logins, each
    /// an argon2 hash, cannot occupy every core however many addresses
    /// they come from).
    #[serde(default)]
    pub all_callers: Option<Box<ClassConfig>>,
}

/// A class in the units the algorithm uses.
#[derive(Debug, Clone, Copy)]
struct Class {
    /// Emission interval, µs.
    interval: u64,
    /// Burst capacity.
    burst: u32,
}

impl Class {
    fn new(config: &ClassConfig) -> anyhow::Result<Class> {
        anyhow::ensure!(config.requests > 0, "requests must be at least 1");
        let burst = config.burst.unwrap_or(config.requests);
        anyhow::ensure!(burst > 0, "burst must be at least 1");
        let interval = (config.per.as_micros() as u64 / u64::from(config.requests)).max(1);
        Ok(Class { interval, burst })
    }

    /// How far ahead of now the TAT may run.
    fn tolerance(&self) -> u64 {
        self.interval * u64::from(self.burst)
    }

    /// The decision for a request that leaves the key `backlog` µs ahead of
    /// now (after the request if allowed, before it if refused).
    fn decision(&self, allowed: bool, backlog: u64) -> Decision {
        let tolerance = self.tolerance();
        Decision {
            allowed,
            limit: self.burst,
            remaining: (tolerance.saturating_sub(backlog) / self.interval) as u32,
            reset: Duration::from_micros(backlog),
            retry_after: Duration::from_micros((backlog + self.interval).saturating_sub(tolerance)),
        }
    }
}

/// The outcome of one check, with what the `RateLimit-*` headers say.
#[derive(Debug, Clone, Copy)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// `RateLimit-Limit`.
    pub limit: u32,
    /// `RateLimit-Remaining`.
    pub remaining: u32,
    /// `RateLimit-Reset`: until the bucket is full again.
    pub reset: Duration,
    /// `Retry-After` for a refused request.
    pub retry_after: Duration,
}

impl Decision {
    /// Adds the `RateLimit-*` headers (and `Retry-After` when refused).
    pub fn write_headers(&self, headers: &mut HeaderMap) {
        let seconds = |d: Duration| d.as_secs() + u64::from(d.subsec_nanos() > 0);
        let mut set = |name: &'static str, value: u64| {
            headers.insert(HeaderName::from_static(name), HeaderValue::from(value));
        };
        set("ratelimit-limit", self.limit.into());
        set("ratelimit-remaining", self.remaining.into());
        set("ratelimit-reset", seconds(self.reset));
        if !self.allowed {
            set("retry-after", seconds(self.retry_after).max(1));
        }
    }

    /// The 429 for a refused request.
    pub fn problem(&self) -> Problem {
        let mut headers = HeaderMap::new();
        self.write_headers(&mut headers);
        let mut problem = Problem::new(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "rate limit exceeded; retry in {} s",
                self.retry_after.as_secs().max(1)
            ),
        );
        for (name, value) in &headers {
            if let Ok(value) = value.to_str() {
                problem = problem.with_header(name.clone(), value);
            }
        }
        problem
    }
}

/// Adds `T` to the TAT in `KEYS[1]` unless that passes `ARGV[2]` µs ahead
/// of the server's clock; returns `{allowed, backlog_us}`.
const GCRA: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local next = tat + interval
if next - now > tolerance then
  return {0, tat - now}
end
redis.call('SET', KEYS[1], next, 'PX', math.ceil((next - now) / 1000) + 1)
return {1, next - now}
";

/// The limiter shared by every request of this host.
pub struct RateLimiter {
    classes: BTreeMap<String, Class>,
    /// The `all_callers` budgets, by class.
    shared: BTreeMap<String, Class>,
    memory: Buckets,
    redis: Option<RedisLimiter>,
}

struct RedisLimiter {
    connection: RedisConn,
    prefix: String,
    script: Arc<redis::Script>,
}

impl RateLimiter {
    /// Builds the limiter; Redis connects lazily (the host starts without it).
    pub fn new(config: &RateLimitConfig, breaker: BreakerConfig) -> anyhow::Result<RateLimiter> {
        let mut classes = BTreeMap::new();
        let mut shared = BTreeMap::new();
        for (name, class) in &config.classes {
            let parsed =
                Class::new(class).map_err(|e| anyhow::anyhow!("rate_limit.classes.{name}: {e}"))?;
            classes.insert(name.clone(), parsed);
            if let Some(all) = &class.all_callers {
                let key = format!("rate_limit.classes.{name}.all_callers");
                anyhow::ensure!(all.all_callers.is_none(), "{key} cannot have all_callers");
                shared.insert(
                    name.clone(),
                    Class::new(all).map_err(|e| anyhow::anyhow!("{key}: {e}"))?,
                );
            }
        }
        let redis = match config.kind {
            LimiterKind::Memory => None,
            LimiterKind::Redis => {
                let url = config.url.as_deref().ok_or_else(|| {
                    anyhow::anyhow!("rate_limit.url is required when rate_limit.type = \"redis\"")
                })?;
                Some(RedisLimiter {
                    connection: RedisConn::connect_lazy(
                        "redis:rate_limit",
                        url,
                        config.timeout,
                        breaker,
                    )?,
                    prefix: config.key_prefix.clone(),
                    script: Arc::new(redis::Script::new(GCRA)),
                })
            }
        };
        Ok(RateLimiter {
            classes,
            shared,
            memory: Buckets::new(),
            redis,
        })
    }

    /// Whether a class of that name is configured.
    pub fn has_class(&self, name: &str) -> bool {
        self.classes.contains_key(name)
    }

    /// The class a route uses: its own, else `default` if configured.
    pub fn class_for<'a>(&self, route_class: Option<&'a str>) -> Option<&'a str> {
        match route_class {
            Some(name) => Some(name),
            None if self.classes.contains_key("default") => Some("default"),
            None => None,
        }
    }

    /// Checks one request of `caller` (e.g. `user:u1`, `ip:1.2.3.4`) in
    /// `class`: against the caller's own budget, then the one all callers
    /// of the class share (if any). `None` if the class is not configured.
    pub async fn check(&self, class: &str, caller: &str) -> Option<Decision> {
        let limits = *self.classes.get(class)?;
        let mut decision = self
            .decide(class, format!("{class}:{caller}"), limits)
            .await;
        if decision.allowed
            && let Some(shared) = self.shared.get(class)
        {
            let all = self.decide(class, format!("{class}:*"), *shared).await;
            if !all.allowed {
                decision = all;
            }
        }
        if !decision.allowed {
            metrics::counter!("lamina_rate_limited_total", "class" => class.to_owned())
                .increment(1);
        }
        Some(decision)
    }

    /// One bucket's decision, in Redis when configured (else, or when it
    /// fails, in process).
    async fn decide(&self, class: &str, key: String, limits: Class) -> Decision {
        match &self.redis {
            Some(redis) => match redis.check(&key, limits).await {
                Ok(decision) => decision,
                Err(failure) => {
                    // While the breaker is open this is the normal path: no log line per request.
                    if !matches!(failure, Failure::Open(_)) {
                        tracing::warn!(
                            class,
                            "rate limiter falls back to in-process limits: {failure}"
                        );
                    }
                    metrics::counter!("lamina_rate_limit_fallback_total").increment(1);
                    self.memory.check(class, key, limits, now_micros())
                }
            },
            None => self.memory.check(class, key, limits, now_micros()),
        }
    }
}

/// The in-process TATs, in shards so concurrent checks rarely wait on each
/// other. A key whose TAT has passed means the same as no key (a full
/// bucket), so each shard drops such keys now and then: memory follows the
/// callers active within one burst window, not every caller ever seen.
/// A shard full of live keys never forgets one (that would hand its
/// caller a fresh burst): new callers then share one overflow bucket per
/// class until room frees up.
struct Buckets {
    hasher: RandomState,
    shards: Box<[Mutex<Shard>]>,
}

#[derive(Default)]
struct Shard {
    tats: HashMap<String, u64>,
    checks: u32,
    /// When it last dropped its expired keys (µs since the epoch).
    swept_at: u64,
}

/// Shards of [`Buckets`] (a power of two).
const SHARDS: usize = 64;
/// Most keys one shard holds (a million in all).
const SHARD_CAPACITY: usize = 1 << 14;
/// Checks on a shard between two sweeps of its expired keys.
const SWEEP_EVERY: u32 = 1024;
/// Least time between two sweeps of a full shard (a sweep walks every
/// key; under a flood it would otherwise run on every check).
const FULL_SWEEP_INTERVAL: u64 = 1_000_000;

impl Buckets {
    fn new() -> Self {
        Buckets {
            hasher: RandomState::new(),
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }

    fn check(&self, class_name: &str, key: String, class: Class, now: u64) -> Decision {
        let index = self.hasher.hash_one(&key) as usize & (SHARDS - 1);
        let mut shard = self.shards[index].lock().expect("rate limit shard");
        shard.checks = shard.checks.wrapping_add(1);
        let full = shard.tats.len() >= SHARD_CAPACITY;
        if shard.checks.is_multiple_of(SWEEP_EVERY)
            || (full && now.saturating_sub(shard.swept_at) >= FULL_SWEEP_INTERVAL)
        {
            shard.tats.retain(|_, tat| *tat > now);
            shard.swept_at = now;
        }
        let key = if shard.tats.len() >= SHARD_CAPACITY && !shard.tats.contains_key(&key) {
            metrics::counter!("lamina_rate_limit_overflow_total").increment(1);
            format!("{class_name}:~overflow")
        } else {
            key
        };
        let tat = shard.tats.get(&key).copied().unwrap_or(now).max(now);
        let next = tat + class.interval;
        if next - now > class.tolerance() {
            return class.decision(false, tat - now);
        }
        shard.tats.insert(key, next);
        class.decision(true, next - now)
    }
}

impl RedisLimiter {
    async fn check(&self, key: &str, class: Class) -> Result<Decision, Failure> {
        let mut invocation = self.script.key(format!("{}{key}", self.prefix));
        invocation.arg(class.interval).arg(class.tolerance());
        let (allowed, backlog): (i64, i64) = self.connection.invoke(&invocation).await?;
        Ok(class.decision(allowed == 1, backlog.max(0) as u64))
    }
}

fn now_micros() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(requests: u32, per: Duration, burst: Option<u32>) -> RateLimiter {
        let config = RateLimitConfig {
            classes: BTreeMap::from([(
                "c".to_string(),
                ClassConfig {
                    requests,
                    per,
                    burst,
                    concurrent: None,
                    all_callers: None,
                },
            )]),
            ..RateLimitConfig::default()
        };
        RateLimiter::new(&config, BreakerConfig::default()).unwrap()
    }

    #[tokio::test]
    async fn allows_the_burst_then_refuses_with_retry_after() {
        let limiter = limiter(3, Duration::from_secs(60), None);
        for remaining in [2, 1, 0] {
            let d = limiter.check("c", "ip:1").await.unwrap();
            assert!(d.allowed);
            assert_eq!((d.limit, d.remaining), (3, remaining));
        }
        let refused = limiter.check("c", "ip:1").await.unwrap();
        assert!(!refused.allowed);
        assert!(
            refused.retry_after > Duration::from_secs(19)
                && refused.retry_after <= Duration::from_secs(20)
        );
        assert!(
            limiter.check("c", "ip:2").await.unwrap().allowed,
            "keys are independent"
        );
        assert!(limiter.check("missing", "ip:1").await.is_none());
    }

    #[test]
    fn a_full_shard_never_forgets_a_live_caller() {
        let buckets = Buckets::new();
        let class = Class::new(&ClassConfig {
            requests: 1,
            per: Duration::from_secs(3600),
            burst: None,
            concurrent: None,
            all_callers: None,
        })
        .unwrap();
        let now = now_micros();
        assert!(buckets.check("c", "c:victim".into(), class, now).allowed);
        // A flood of new callers fills every shard and beyond.
        for n in 0..(2 * SHARDS * SHARD_CAPACITY) {
            buckets.check("c", format!("c:flood{n}"), class, now);
        }
        assert!(
            !buckets.check("c", "c:victim".into(), class, now).allowed,
            "the victim's spent bucket was forgotten"
        );
        // Newcomers share the overflow bucket, already spent by the flood.
        assert!(!buckets.check("c", "c:newcomer".into(), class, now).allowed);
    }

    #[tokio::test]
    async fn all_callers_share_the_class_budget() {
        let mut config = RateLimitConfig::default();
        config.classes.insert(
            "login".into(),
            toml::from_str(
                "requests = 100\nper = \"1m\"\n[all_callers]\nrequests = 3\nper = \"1m\"\n",
            )
            .unwrap(),
        );
        let limiter = RateLimiter::new(&config, BreakerConfig::default()).unwrap();
        for n in 0..3 {
            assert!(
                limiter
                    .check("login", &format!("ip:{n}"))
                    .await
                    .unwrap()
                    .allowed
            );
        }
        let refused = limiter.check("login", "ip:new").await.unwrap();
        assert!(!refused.allowed && refused.retry_after > Duration::ZERO);
    }

    #[tokio::test]
    async fn the_bucket_refills_at_the_sustained_rate() {
        let limiter = limiter(20, Duration::from_secs(1), Some(1));
        assert!(limiter.check("c", "k").await.unwrap().allowed);
        assert!(!limiter.check("c", "k").await.unwrap().allowed);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert!(limiter.check("c", "k").await.unwrap().allowed);
    }
}
