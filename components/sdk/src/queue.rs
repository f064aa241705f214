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
