//! The gateway: what a client request passes before it reaches a
//! component: authentication and authorization with identity forwarding
//! ([`auth`]), then per-caller rate limits ([`rate_limit`]). CORS, body
//! limits, request ids, API keys and token revocation come with the rest of
//! the gateway issue.

pub mod auth;
pub mod rate_limit;
