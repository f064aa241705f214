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
/// keeps the log): who (`user_id`), from where (the client address the
/// gateway saw), what (`event`, `detail`). A queue failure is logged, not
/// returned: the change it reports has already happened.
pub fn audit(
    request: &crate::Request,
    event: &str,
    user_id: Option<&str>,
    detail: serde_json::Value,
) {
    let payload = serde_json::json!({
        "event": event,
        "userId": user_id,
        "at": crate::api::now(),
        "client": request.header("spin-client-addr"),
        "detail": detail,
    });
    if let Err(e) = publish("audit", payload.to_string().as_bytes()) {
        eprintln!("audit event {event} not published: {e:?}");
    }
}
