//! The gateway: what a client request passes before it reaches a
//! component: authentication and authorization with identity forwarding
//! ([`auth`]), then per-caller rate limits ([`rate_limit`]) and concurrency
//! limits ([`concurrency`]). Request ids,
//! body limits and `/health`/`/ready` live in `trigger::http`; [`cors`]
//! wraps all of it. API keys, token revocation and circuit breakers come
//! with the rest of the gateway issue.

pub mod auth;
pub mod concurrency;
pub mod cors;
pub mod rate_limit;
