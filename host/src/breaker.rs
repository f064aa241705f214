//! Circuit breakers around remote backends (Redis, PostgreSQL).
//!
//! A backend that keeps failing is not asked again for a while: after
//! `failures` consecutive failures the breaker opens and every call fails at
//! once (no connect or statement timeout to wait for) until `open_for` has
//! passed. Then one call is let through as a probe (half-open): success
//! closes the breaker, failure opens it again. The state is exported as the
//! `lamina_circuit_breaker_state` gauge (0 closed, 1 half-open, 2 open).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::Deserialize;

/// `[circuit_breaker]` in runtime-config; applies to every backend.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// How long an open breaker refuses calls before it lets a probe through.
    #[serde(with = "humantime_serde")]
    pub open_for: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            open_for: Duration::from_secs(5),
        }
    }
}

/// One backend's breaker; clones share state.
#[derive(Clone)]
pub struct Breaker {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    config: BreakerConfig,
    state: Mutex<State>,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// A probe has been let through at `since`; until it reports, other
    /// calls are refused. A probe that never reports (its caller was
    /// cancelled) is replaced after `open_for`.
    HalfOpen {
        since: Instant,
    },
}

impl State {
    fn gauge(self) -> f64 {
        match self {
            State::Closed { .. } => 0.0,
            State::HalfOpen { .. } => 1.0,
            State::Open { .. } => 2.0,
        }
    }
}

/// A call refused because the breaker is open; retry after the duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Open {
    /// How long until the next probe may go through (at least 1 s, as
    /// `Retry-After` is in whole seconds).
    pub retry_after: Duration,
}

impl std::fmt::Display for Open {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "circuit open after repeated failures; retry in {} s",
            self.retry_after.as_secs()
        )
    }
}

impl Breaker {
    /// A closed breaker for the backend `name` (e.g. `postgres:default`).
    pub fn new(name: impl Into<String>, config: BreakerConfig) -> Self {
        let breaker = Breaker {
            inner: Arc::new(Inner {
                name: name.into(),
                config,
                state: Mutex::new(State::Closed { failures: 0 }),
            }),
        };
        breaker.publish(State::Closed { failures: 0 });
        breaker
    }

    /// The backend's name.
    pub fn name(&self) -> &str {
        &self.inner.name
    }

    /// Asks to make a call: `Err` while open (or while another call probes).
    /// An admitted call must be followed by [`Breaker::record`].
    pub fn admit(&self) -> Result<(), Open> {
        let now = Instant::now();
        let mut state = self.inner.state.lock().expect("breaker lock");
        match *state {
            State::Closed { .. } => Ok(()),
            State::Open { until } if now < until => Err(open_until(until, now)),
            State::HalfOpen { since } if now < since + self.inner.config.open_for => {
                Err(open_until(since + self.inner.config.open_for, now))
            }
            State::Open { .. } | State::HalfOpen { .. } => {
                *state = State::HalfOpen { since: now };
                self.publish(*state);
                tracing::info!(backend = %self.inner.name, "circuit half-open: probing the backend");
                Ok(())
            }
        }
    }

    /// Reports how an admitted call went: `true` if the backend answered
    /// (even with an error of the caller's making), `false` if it was
    /// unreachable or timed out.
    pub fn record(&self, reachable: bool) {
        let mut state = self.inner.state.lock().expect("breaker lock");
        let next = match (*state, reachable) {
            (State::Closed { failures: 0 }, true) => return,
            // A slow success admitted before the breaker opened proves
            // nothing about now; only the probe may close it.
            (State::Open { .. }, true) => return,
            (_, true) => State::Closed { failures: 0 },
            (State::Closed { failures }, false) if failures + 1 < self.inner.config.failures => {
                State::Closed {
                    failures: failures + 1,
                }
            }
            // Failures that were admitted before the breaker opened change nothing.
            (State::Open { .. }, false) => return,
            (State::Closed { .. } | State::HalfOpen { .. }, false) => State::Open {
                until: Instant::now() + self.inner.config.open_for,
            },
        };
        let was_closed = matches!(*state, State::Closed { .. });
        *state = next;
        match next {
            State::Open { .. } => tracing::warn!(
                backend = %self.inner.name,
                open_for = ?self.inner.config.open_for,
                "circuit open: failing calls fast"
            ),
            State::Closed { failures: 0 } if !was_closed => {
                tracing::info!(backend = %self.inner.name, "circuit closed: backend recovered")
            }
            _ => {}
        }
        self.publish(next);
    }

    /// Whether calls are being refused right now, without changing state
    /// (the gateway's fail-fast check before running a component).
    pub fn refusing(&self) -> Option<Open> {
        let now = Instant::now();
        match *self.inner.state.lock().expect("breaker lock") {
            State::Open { until } if now < until => Some(open_until(until, now)),
            // A probe is deciding; everyone else waits for its verdict.
            State::HalfOpen { since } if now < since + self.inner.config.open_for => {
                Some(open_until(now, now))
            }
            _ => None,
        }
    }

    fn publish(&self, state: State) {
        metrics::gauge!("lamina_circuit_breaker_state", "backend" => self.inner.name.clone())
            .set(state.gauge());
    }
}

fn open_until(until: Instant, now: Instant) -> Open {
    Open {
        retry_after: until
            .saturating_duration_since(now)
            .max(Duration::from_secs(1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker(open_for_ms: u64) -> Breaker {
        Breaker::new(
            "test",
            BreakerConfig {
                failures: 3,
                open_for: Duration::from_millis(open_for_ms),
            },
        )
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let b = breaker(10_000);
        for _ in 0..2 {
            b.admit().unwrap();
            b.record(false);
        }
        b.admit().unwrap();
        b.record(true); // a success resets the count
        for _ in 0..2 {
            b.admit().unwrap();
            b.record(false);
        }
        assert!(b.admit().is_ok());
        b.record(false);
        let open = b.admit().unwrap_err();
        b.record(true); // a slow success from before it opened
        assert!(b.admit().is_err(), "only a probe closes an open breaker");
        assert!(open.retry_after >= Duration::from_secs(9));
        assert!(b.refusing().is_some());
    }

    #[test]
    fn half_open_lets_one_probe_through_and_closes_on_success() {
        let b = breaker(20);
        for _ in 0..3 {
            b.admit().unwrap();
            b.record(false);
        }
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(30));
        b.admit().expect("the probe");
        assert!(b.admit().is_err(), "one probe at a time");
        assert!(
            b.refusing().is_some(),
            "the gateway waits for the probe too"
        );
        b.record(true);
        assert!(b.admit().is_ok());
        assert!(b.refusing().is_none());
    }

    #[test]
    fn a_failed_probe_opens_again_and_a_lost_probe_is_replaced() {
        let b = breaker(20);
        for _ in 0..3 {
            b.admit().unwrap();
            b.record(false);
        }
        std::thread::sleep(Duration::from_millis(30));
        b.admit().unwrap();
        b.record(false);
        assert!(b.admit().is_err());
        std::thread::sleep(Duration::from_millis(30));
        b.admit().expect("second probe");
        // That probe never reports; after open_for another one may go.
        std::thread::sleep(Duration::from_millis(30));
        b.admit().expect("replacement probe");
    }
}
