//! What the service hands on through the queue: security events to `audit`
//! and mail to `email.send` (both consumed by the outbox component).

use lamina_sdk::Request;
use lamina_sdk::api::now;
use lamina_sdk::queue;
use serde_json::json;

/// Publishes a security event. A queue failure is logged, not fatal: the
/// user's request already happened.
pub fn audit(request: &Request, event: &str, user_id: Option<&str>, detail: serde_json::Value) {
    let payload = json!({
        "event": event,
        "userId": user_id,
        "at": now(),
        "client": request.header("spin-client-addr"),
        "detail": detail,
    });
    if let Err(e) = queue::publish("audit", payload.to_string().as_bytes()) {
        eprintln!("audit event {event} not published: {e:?}");
    }
}

/// Queues a mail for delivery.
pub fn mail(to: &str, subject: &str, body: &str) -> Result<(), queue::Error> {
    let payload = json!({ "to": to, "subject": subject, "body": body });
    queue::publish("email.send", payload.to_string().as_bytes()).map(drop)
}
