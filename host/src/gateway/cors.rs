//! CORS (tower-http's `CorsLayer`) from an explicit origin list: browsers
//! on those origins may call the API, with credentials if configured;
//! preflights are answered here and never reach a component. With no
//! origins configured no CORS headers are sent (same-origin only).

use std::time::Duration;

use http::{HeaderName, HeaderValue, Method, header};
use serde::Deserialize;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// `[cors]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CorsConfig {
    /// Exact origins, e.g. `https://chat.example.com` (no wildcards).
    pub allowed_origins: Vec<String>,
    /// Let browsers send cookies and `Authorization` cross-origin.
    pub allow_credentials: bool,
    /// How long browsers may cache a preflight answer.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for CorsConfig {
    fn default() -> Self {
        CorsConfig {
            allowed_origins: Vec::new(),
            allow_credentials: false,
            max_age: Duration::from_secs(600),
        }
    }
}

/// The layer for `config`, or `None` when no origin is allowed.
pub fn layer(config: &CorsConfig) -> anyhow::Result<Option<CorsLayer>> {
    if config.allowed_origins.is_empty() {
        return Ok(None);
    }
    let mut origins = Vec::with_capacity(config.allowed_origins.len());
    for origin in &config.allowed_origins {
        anyhow::ensure!(
            (origin.starts_with("https://") || origin.starts_with("http://"))
                && !origin.contains('*')
                && !origin.ends_with('/'),
            "cors.allowed_origins: {origin:?} must be a scheme://host[:port] origin without wildcards or a trailing slash"
        );
        origins.push(HeaderValue::from_str(origin)?);
    }
    let request_id = HeaderName::from_static("x-request-id");
    Ok(Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(origins))
            .allow_credentials(config.allow_credentials)
            .allow_methods([
                Method::GET,
                Method::POST,
                Method::PUT,
                Method::PATCH,
                Method::DELETE,
                Method::OPTIONS,
            ])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::ACCEPT,
                request_id.clone(),
            ])
            .expose_headers([
                request_id,
                header::RETRY_AFTER,
                HeaderName::from_static("ratelimit-limit"),
                HeaderName::from_static("ratelimit-remaining"),
                HeaderName::from_static("ratelimit-reset"),
            ])
            .max_age(config.max_age),
    ))
}
