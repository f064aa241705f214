//! What the service hands on through the queue: security events to `audit`
//! and mail to `email.send` (both consumed by the outbox component).

use lamina_sdk::queue;
use serde_json::json;

pub use lamina_sdk::queue::audit;

/// Queues a mail for delivery.
pub fn mail(to: &str, subject: &str, body: &str) -> Result<(), queue::Error> {
    let payload = json!({ "to": to, "subject": subject, "body": body });
    queue::publish("email.send", payload.to_string().as_bytes()).map(drop)
}
