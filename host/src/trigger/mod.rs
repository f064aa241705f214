//! Triggers: what makes a component run: HTTP requests and queue messages.

pub mod http;
pub mod queue;
