//! Concurrency limits: at most `concurrent` requests of one caller in one
//! class in flight at once on this host (long generations hold a component
//! instance and a model for minutes), and at most `all_callers.concurrent`
//! of all its callers together. A request holds its permit until its
//! response body has been fully sent or dropped.

use std::collections::{BTreeMap, HashMap};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http::StatusCode;
use hyper::body::{Body, Frame, SizeHint};

use super::rate_limit::RateLimitConfig;
use crate::body::HostBody;
use crate::problem::Problem;

type Counts = Arc<Mutex<HashMap<String, u32>>>;

/// The in-flight counters of every class with a `concurrent` limit.
pub struct InFlight {
    limits: BTreeMap<String, u32>,
    counts: Counts,
}

/// One admitted request; releases its slots when dropped.
pub struct Permit {
    keys: Vec<String>,
    counts: Counts,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        for key in &self.keys {
            if let Some(count) = counts.get_mut(key) {
                *count -= 1;
                if *count == 0 {
                    counts.remove(key);
                }
            }
        }
    }
}

/// The key of the slots all callers of `class` share.
fn shared_key(class: &str) -> String {
    format!("{class}:*")
}

impl InFlight {
    /// The limits of `[rate_limit.classes.*].concurrent`.
    pub fn new(config: &RateLimitConfig) -> anyhow::Result<InFlight> {
        let mut limits = BTreeMap::new();
        for (name, class) in &config.classes {
            let all = class.all_callers.as_ref().and_then(|all| all.concurrent);
            for (key, limit) in [(name.clone(), class.concurrent), (shared_key(name), all)] {
                if let Some(limit) = limit {
                    anyhow::ensure!(
                        limit > 0,
                        "rate_limit.classes.{name}: concurrent must be at least 1"
                    );
                    limits.insert(key, limit);
                }
            }
        }
        Ok(InFlight {
            limits,
            counts: Counts::default(),
        })
    }

    /// Admits one request of `caller` in `class`: `Ok(None)` when the class
    /// has no concurrency limit, `Err` (429) when the caller, or all
    /// callers of the class together, are at theirs.
    pub fn acquire(&self, class: &str, caller: &str) -> Result<Option<Permit>, Problem> {
        let wanted: Vec<(String, u32)> = [
            (class.to_owned(), format!("{class}:{caller}")),
            (shared_key(class), shared_key(class)),
        ]
        .into_iter()
        .filter_map(|(limit_key, key)| Some((key, *self.limits.get(&limit_key)?)))
        .collect();
        if wanted.is_empty() {
            return Ok(None);
        }
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, limit)) = wanted
            .iter()
            .find(|(key, limit)| counts.get(key).copied().unwrap_or(0) >= *limit)
        {
            metrics::counter!("lamina_concurrency_limited_total", "class" => class.to_owned())
                .increment(1);
            return Err(Problem::new(
                StatusCode::TOO_MANY_REQUESTS,
                format!("at most {limit} concurrent requests of this kind; wait for one to finish"),
            )
            .with_header(http::header::RETRY_AFTER, "1"));
        }
        for (key, _) in &wanted {
            *counts.entry(key.clone()).or_insert(0) += 1;
        }
        Ok(Some(Permit {
            keys: wanted.into_iter().map(|(key, _)| key).collect(),
            counts: self.counts.clone(),
        }))
    }
}

/// A response body that keeps its request's permit until it ends.
pub struct Guarded {
    inner: HostBody,
    _permit: Permit,
}

impl Guarded {
    /// Ties `permit` to the lifetime of `body`.
    pub fn new(body: HostBody, permit: Permit) -> Guarded {
        Guarded {
            inner: body,
            _permit: permit,
        }
    }
}

impl Body for Guarded {
    type Data = <HostBody as Body>::Data;
    type Error = <HostBody as Body>::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
