//! What the service publishes and consumes.
//!
//! Every change to the catalogue publishes `catalog.changed` `{action,
//! model?, tag?, ..., by, at}` and an `audit` event (`catalog.<action>`),
//! after dropping the cached reads. The service consumes:
//!
//! - `catalog.changed`, its own: drops the cached reads again, so a change
//!   made while the key-value store was unreachable still reaches every
//!   reader (a failure is retried by the queue);
//! - `usage.recorded` (every generation and embedding, from any service):
//!   one more use of the model, for `sort=popularity` (its cached reads
//!   dropped, so counts are current);
//! - `explore.install`: follows an install to its end ([`crate::installs`]).

use lamina_sdk::Request;
use lamina_sdk::api::{Caller, now};
use lamina_sdk::queue;
use lamina_sdk::sql::{Database, Sql};
use lamina_sdk::worker::{Guest, Message};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{DATABASE, cached, installs};

/// Drops the cached reads and announces a change by `caller`: `detail`
/// names what changed.
pub fn changed(request: &Request, caller: &Caller, action: &str, detail: Value) {
    if let Err(e) = cached::invalidate() {
        eprintln!("{e}; catalog.changed will retry");
    }
    publish_change(action, &caller.user_id, detail.clone());
    queue::audit(
        request,
        &format!("catalog.{action}"),
        Some(&caller.user_id),
        detail,
    );
}

/// Publishes `catalog.changed` (also for changes no request made: an
/// install that finished).
pub fn publish_change(action: &str, by: &str, detail: Value) {
    let mut payload = json!({"action": action, "by": by, "at": now()});
    if let (Some(payload), Value::Object(detail)) = (payload.as_object_mut(), detail) {
        payload.extend(detail);
    }
    if let Err(e) = queue::publish("catalog.changed", payload.to_string().as_bytes()) {
        eprintln!("catalog.changed {action} not published: {e:?}");
    }
}

/// The fields of `usage.recorded` this service reads.
#[derive(Deserialize)]
struct Usage {
    model: String,
}

/// The queue handler.
pub struct Events;

impl Guest for Events {
    fn handle(message: Message) -> Result<(), String> {
        match message.topic.as_str() {
            "catalog.changed" => cached::invalidate(),
            "usage.recorded" => {
                let Ok(usage) = serde_json::from_slice::<Usage>(&message.payload) else {
                    return Ok(()); // not ours to fix: nothing to count
                };
                let db = Database::open(DATABASE).map_err(|e| format!("{e:?}"))?;
                let counted = db
                    .execute(
                        "UPDATE explore_models SET uses = uses + 1 WHERE name = $1",
                        &[usage.model.as_str().into()],
                    )
                    .map_err(|e| format!("{e:?}"))?;
                // At most one rebuild of the cards per generation, which
                // costs far more than the rebuild.
                if counted == 1 {
                    cached::forget(&[cached::cards(), cached::entry(&usage.model)]);
                }
                Ok(())
            }
            "explore.install" => installs::follow(&message.payload),
            other => Err(format!("unexpected topic {other}")),
        }
    }
}
