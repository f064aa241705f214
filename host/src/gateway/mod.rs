//! The gateway: what a client request passes before it reaches a
//! component. Today: authentication and authorization ([`auth`]) with
//! identity forwarding; rate limiting, CORS and the rest of the pipeline come
//! with the remaining parts of the gateway issue.

pub mod auth;
