//! Publishing to queue topics granted to this component.

use std::time::Duration;

use crate::platform::queue;

pub use queue::Error;

/// Publishes `payload` to `topic` now; returns the message id.
pub fn publish(topic: &str, payload: &[u8]) -> Result<String, Error> {
    publish_with(topic, payload, None, None)
}

/// Publishes with an idempotency key (a repeat within the dedupe window
/// returns the first message's id) and/or a delivery delay.
pub fn publish_with(
    topic: &str,
    payload: &[u8],
    idempotency_key: Option<&str>,
    delay: Option<Duration>,
) -> Result<String, Error> {
    queue::publish(
        topic,
        payload,
        &queue::PublishOptions {
            idempotency_key: idempotency_key.map(str::to_owned),
            delay_ms: delay.map(|d| d.as_millis() as u64),
        },
    )
}

/// Publishes a security or administration event to `audit` (the outbox
/// keeps the log): who did it (`actor`, the caller's user id), what
/// (`action`, e.g. `login.failed`, `admin.user.locked`), to what (`target`:
/// `detail`'s `target` key, e.g. a user id or `model:gemma3:270m`), how it
/// ended (`outcome`: `detail`'s `outcome` key, default `success`), from
/// where (the client address the gateway saw) and in which request
/// (`x-request-id`). A queue failure is logged, not returned: what the
/// event reports has already happened.
pub fn audit(
    request: &crate::Request,
    action: &str,
    actor: Option<&str>,
    detail: serde_json::Value,
) {
    let lifted = |key: &str| detail.get(key).and_then(|v| v.as_str()).map(str::to_owned);
    let payload = serde_json::json!({
        "action": action,
        "actor": actor,
        "target": lifted("target"),
        "outcome": lifted("outcome").unwrap_or_else(|| "success".to_owned()),
        "requestId": request.header("x-request-id"),
        "client": request.header("spin-client-addr"),
        "at": crate::api::now(),
        "detail": detail,
    });
    if let Err(e) = publish("audit", payload.to_string().as_bytes()) {
        eprintln!("audit event {action} not published: {e:?}");
    }
}
