//! The gateway: what a client request passes before it reaches a
//! component: authentication and authorization with identity forwarding
//! ([`auth`]), then per-caller rate limits ([`rate_limit`], callers known
//! by credential or by address: [`client_ip`]) and concurrency limits
//! ([`concurrency`]). Request ids, body limits and `/health`/`/ready` live
//! in `trigger::http`; [`cors`] wraps all of it.

pub mod auth;
pub mod client_ip;
pub mod concurrency;
pub mod cors;
pub mod rate_limit;
