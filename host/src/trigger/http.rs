//! The HTTP trigger: give the request an id, answer `/health` and `/ready`,
//! route it to its component, enforce the body limit, apply the route's
//! gateway policy (auth with verified identity headers, then the caller's
//! rate limit: per user, else per client IP), tell the
//! component where it was routed (Spin's `spin-*` headers), run it, and turn
//! executor failures into problem+json.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use tracing::Instrument;

use crate::app::App;
use crate::body::{HostBody, json};
use crate::capabilities::limits::{Caller, Principal};
use crate::capabilities::tokens::{AuthMethod, Identity};
use crate::gateway::client_ip;
use crate::gateway::concurrency::Guarded;
use crate::problem::Problem;
use crate::router::{PathMatch, RoutePattern, Routed};

/// Headers through which a component learns how it was routed. Clients
/// cannot set them: any client-sent `spin-*` header is removed first.
mod spin_headers {
    use http::HeaderName;
    pub const FULL_URL: HeaderName = HeaderName::from_static("spin-full-url");
    pub const PATH_INFO: HeaderName = HeaderName::from_static("spin-path-info");
    pub const MATCHED_ROUTE: HeaderName = HeaderName::from_static("spin-matched-route");
    pub const RAW_COMPONENT_ROUTE: HeaderName = HeaderName::from_static("spin-raw-component-route");
    pub const COMPONENT_ROUTE: HeaderName = HeaderName::from_static("spin-component-route");
    pub const BASE_PATH: HeaderName = HeaderName::from_static("spin-base-path");
    pub const CLIENT_ADDR: HeaderName = HeaderName::from_static("spin-client-addr");
}

/// Request id header: accepted from the client when sane, else generated;
/// passed to the component, echoed in the response and in every log line.
const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Handles one request on the public listener: `/health` and `/ready`
/// (reserved paths), else the routed component. Every response carries
/// `x-request-id` and is counted in the request metrics.
pub async fn handle(
    app: Arc<App>,
    mut request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<HostBody> {
    let started = Instant::now();
    let request_id = request_id(request.headers());
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        request.headers_mut().insert(REQUEST_ID, value);
    }
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    // route, component and user_id are recorded once known; the access
    // line at the end carries them all (never a credential: no headers,
    // no query string).
    let span = tracing::info_span!(
        "request",
        request_id = %request_id,
        %method,
        %path,
        route = tracing::field::Empty,
        component = tracing::field::Empty,
        user_id = tracing::field::Empty,
    );
    let (mut response, route) = async {
        match path.as_str() {
            "/health" => (
                json(StatusCode::OK, &serde_json::json!({ "status": "up" })),
                "/health".to_owned(),
            ),
            "/ready" => (ready(&app).await, "/ready".to_owned()),
            _ => dispatch(&app, request, peer, &path).await,
        }
    }
    .instrument(span.clone())
    .await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    let status = response.status().as_u16().to_string();
    let elapsed = started.elapsed();
    metrics::counter!("lamina_http_requests_total", "route" => route.clone(), "status" => status.clone())
        .increment(1);
    metrics::histogram!("lamina_http_request_duration_seconds", "route" => route)
        .record(elapsed.as_secs_f64());
    span.in_scope(|| {
        tracing::info!(
            target: "lamina::access",
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
            "request"
        );
    });
    response
}

/// The client's `x-request-id` if it is short and plain, else a new UUID.
fn request_id(headers: &HeaderMap) -> String {
    headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|id| {
            !id.is_empty()
                && id.len() <= 128
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        })
        .map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned)
}

/// `/ready`: 200 when every backend answers, else 503. It names no
/// backend and no error (the public needs no map of the deployment); the
/// admin listener's `/ready` does ([`readiness`]).
async fn ready(app: &App) -> Response<HostBody> {
    let (ready, _) = readiness(app).await;
    if ready {
        json(StatusCode::OK, &serde_json::json!({ "status": "ready" }))
    } else {
        Problem::new(StatusCode::SERVICE_UNAVAILABLE, "not ready")
            .with_header(http::header::RETRY_AFTER, "5")
            .with_instance("/ready")
            .into_response()
    }
}

/// Probes every backend: whether all answer, and a JSON report naming each
/// check and, for a failing one, why.
pub async fn readiness(app: &App) -> (bool, serde_json::Value) {
    let checks = app.capabilities().readiness().await;
    let ready = checks.iter().all(|(_, probe)| probe.is_ok());
    let report: serde_json::Map<String, serde_json::Value> = checks
        .into_iter()
        .map(|(name, probe)| {
            let state = match probe {
                Ok(()) => serde_json::json!("ok"),
                Err(why) => serde_json::json!({ "error": why }),
            };
            (name, state)
        })
        .collect();
    (
        ready,
        serde_json::json!({ "status": if ready { "ready" } else { "not ready" }, "checks": report }),
    )
}

/// Routes, applies the gateway, runs the component. Returns the response
/// and the route pattern it matched (for metrics; `-` if none).
async fn dispatch(
    app: &App,
    request: Request<Incoming>,
    peer: SocketAddr,
    path: &str,
) -> (Response<HostBody>, String) {
    if !plain_path(path) {
        let response = Problem::new(
            StatusCode::BAD_REQUEST,
            "the path has an empty, `.` or `..` segment",
        )
        .with_instance(path)
        .into_response();
        return (response, "-".to_owned());
    }
    let matched = match app.route(request.method(), path) {
        Routed::Found(matched) => matched,
        Routed::MethodNotAllowed(allow) => {
            let allow: Vec<&str> = allow.iter().map(http::Method::as_str).collect();
            let response = Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {path}", request.method()),
            )
            .with_header(http::header::ALLOW, allow.join(", "))
            .with_instance(path)
            .into_response();
            return (response, "-".to_owned());
        }
        Routed::NotFound => {
            let response = Problem::new(StatusCode::NOT_FOUND, format!("no route matches {path}"))
                .with_instance(path)
                .into_response();
            return (response, "-".to_owned());
        }
    };
    let route = matched.pattern.to_string();
    let target = matched.target.clone();
    let span = tracing::Span::current();
    span.record("route", route.as_str());
    span.record("component", target.component.as_str());
    let Some(component) = app.component(&target.component) else {
        // The router only points at components the manifest defines.
        let response = Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "route points at a missing component",
        )
        .with_instance(path)
        .into_response();
        return (response, route);
    };

    let (mut parts, body) = request.into_parts();
    let limit = target.max_body_size;
    let declared = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|length| length > limit) {
        let response = Problem::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("request body larger than the {limit} byte limit"),
        )
        .with_instance(path)
        .into_response();
        return (response, route);
    }
    let identity = match app
        .authenticator()
        .authorize(
            &mut parts.headers,
            target.auth,
            target.credentials,
            &target.roles,
        )
        .await
    {
        Ok(identity) => identity,
        Err(problem) => return (problem.with_instance(path).into_response(), route),
    };
    if let Some(identity) = &identity {
        span.record("user_id", identity.user_id.as_str());
    }
    // The caller's limits. Request rates: per API key (each key its own
    // budget), else per verified user, else per client address. Requests
    // in flight: per user, whichever credential they come with.
    let client = app.client_address().of(&parts.headers, peer.ip());
    let (mut rate, mut permit) = (None, None);
    if let Some(class) = &target.rate_limit {
        let caller = match &identity {
            Some(identity) => format!("user:{}", identity.user_id),
            None => client_ip::rate_key(client),
        };
        let rate_key = match &identity {
            Some(Identity {
                method: AuthMethod::ApiKey,
                token_id: Some(key),
                ..
            }) => format!("key:{key}"),
            _ => caller.clone(),
        };
        rate = app.limiter().check(class, &rate_key).await;
        if let Some(decision) = rate.filter(|d| !d.allowed) {
            return (
                decision.problem().with_instance(path).into_response(),
                route,
            );
        }
        permit = match app.in_flight().acquire(class, &caller) {
            Ok(permit) => permit,
            Err(problem) => return (problem.with_instance(path).into_response(), route),
        };
    }
    // A database the component needs is failing: answer now, not after
    // the component waited on it.
    if let Some((backend, open)) = app.unavailable_backend(&target.component) {
        let response = Problem::new(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("`{backend}` is unavailable: {open}"),
        )
        .with_header(
            http::header::RETRY_AFTER,
            open.retry_after.as_secs().to_string(),
        )
        .with_instance(path)
        .into_response();
        return (response, route);
    }
    // The peer's port only if the client is the peer (a dual-stack
    // listener's IPv4 peer compared as IPv4, as `client` is).
    let port = if client == peer.ip().to_canonical() {
        peer.port()
    } else {
        0
    };
    let client = SocketAddr::new(client, port);
    set_routing_headers(
        &mut parts.headers,
        matched.pattern,
        &matched.path,
        &parts.uri,
        client,
    );
    // A body streamed past the limit (no or a false Content-Length) ends
    // with a body-size error inside the component.
    let body = Limited::new(body, limit as usize).map_err(move |error| {
        match error.downcast::<hyper::Error>() {
            Ok(error) => wasmtime_wasi_http::Error::Hyper(*error),
            Err(_) => wasmtime_wasi_http::Error::HttpRequestBodySize(Some(limit)),
        }
    });
    // Whom the component's inference calls are made for (model access,
    // budgets).
    if let Some(identity) = &identity {
        parts
            .extensions
            .insert(Principal::Caller(Arc::new(Caller::of(identity))));
    }
    let request = Request::from_parts(parts, body.boxed_unsync());

    let result = component.handle(request, target.limits).await;
    let response = match result {
        Ok(mut response) => {
            if let Some(decision) = rate {
                decision.write_headers(response.headers_mut());
            }
            match permit {
                Some(permit) => response.map(|body| Guarded::new(body, permit).boxed_unsync()),
                None => response,
            }
        }
        Err(error) => {
            match &error {
                crate::engine::ExecError::Failed(cause) => {
                    tracing::error!(component = component.id(), "component failed: {cause:?}")
                }
                other => tracing::warn!(component = component.id(), "{other}"),
            }
            let status = error.status();
            let mut response =
                Problem::new(status, format!("component `{}`: {error}", component.id()))
                    .with_instance(path)
                    .into_response();
            if status == StatusCode::SERVICE_UNAVAILABLE {
                response
                    .headers_mut()
                    .insert(http::header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            response
        }
    };
    (response, route)
}

/// Whether `path` is plain: no empty (`//`), `.` or `..` segments (also
/// percent-encoded), which would let one path reach the policy of a route
/// meant for another. A trailing `/` is fine.
fn plain_path(path: &str) -> bool {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    let last = segments.len() - 1;
    segments.iter().enumerate().all(|(index, segment)| {
        let decoded = segment.to_ascii_lowercase().replace("%2e", ".");
        (index == last || !segment.is_empty()) && decoded != "." && decoded != ".."
    })
}

/// Spin's routing headers; `client` is the client's address (behind a
/// trusted proxy, the one it forwarded).
fn set_routing_headers(
    headers: &mut HeaderMap,
    pattern: &RoutePattern,
    matched: &PathMatch<'_>,
    uri: &http::Uri,
    client: SocketAddr,
) {
    let forged: Vec<HeaderName> = headers
        .keys()
        .filter(|name| name.as_str().starts_with("spin-"))
        .cloned()
        .collect();
    for name in forged {
        headers.remove(name);
    }
    let host = headers
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let path_and_query = uri.path_and_query().map_or("/", |pq| pq.as_str());
    let values = [
        (
            spin_headers::FULL_URL,
            format!("http://{host}{path_and_query}"),
        ),
        (spin_headers::PATH_INFO, matched.path_info.to_owned()),
        (spin_headers::MATCHED_ROUTE, pattern.to_string()),
        (spin_headers::RAW_COMPONENT_ROUTE, pattern.to_string()),
        (spin_headers::COMPONENT_ROUTE, pattern.base()),
        (spin_headers::BASE_PATH, "/".to_owned()),
        (spin_headers::CLIENT_ADDR, client.to_string()),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    // Spin's `spin-path-match-<name>` for each `:name` segment.
    for (name, value) in &matched.params {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(
                format!("spin-path-match-{}", name.to_ascii_lowercase()).as_bytes(),
            ),
            HeaderValue::from_str(value),
        ) {
            headers.insert(name, value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::plain_path;

    #[test]
    fn paths_with_empty_or_dot_segments_are_not_plain() {
        for plain in ["/", "/a", "/a/", "/a/b.c", "/a/.hidden", "/a/..b"] {
            assert!(plain_path(plain), "{plain}");
        }
        for odd in [
            "//a",
            "/a//b",
            "/a/./b",
            "/a/../b",
            "/a/%2e%2E/b",
            "/a/.",
            "/a/..",
        ] {
            assert!(!plain_path(odd), "{odd}");
        }
    }
}
