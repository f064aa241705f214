//! Triggers: what makes a component run. Today: HTTP requests.

pub mod http;
