//! The HTTP trigger: route a request to its component, apply the route's
//! gateway policy (auth with verified identity headers, then the caller's
//! rate limit: per user, else per client IP), tell the
//! component where it was routed (Spin's `spin-*` headers), run it, and turn
//! executor failures into problem+json.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::app::App;
use crate::body::HostBody;
use crate::problem::Problem;
use crate::router::RoutePattern;

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

/// Handles one request on the public listener.
pub async fn handle(
    app: Arc<App>,
    request: Request<Incoming>,
    peer: SocketAddr,
) -> Response<HostBody> {
    let started = Instant::now();
    let path = request.uri().path().to_owned();
    let Some(matched) = app.route(&path) else {
        return Problem::new(StatusCode::NOT_FOUND, format!("no route matches {path}"))
            .with_instance(path)
            .into_response();
    };
    let target = matched.target.clone();
    let Some(component) = app.component(&target.component) else {
        // The router only points at components the manifest defines.
        return Problem::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "route points at a missing component",
        )
        .with_instance(path)
        .into_response();
    };

    let (mut parts, body) = request.into_parts();
    let identity =
        match app
            .authenticator()
            .authorize(&mut parts.headers, target.auth, &target.roles)
        {
            Ok(identity) => identity,
            Err(problem) => return problem.with_instance(path).into_response(),
        };
    let rate = match &target.rate_limit {
        Some(class) => {
            let caller = match &identity {
                Some(identity) => format!("user:{}", identity.user_id),
                None => format!("ip:{}", peer.ip()),
            };
            app.limiter().check(class, &caller).await
        }
        None => None,
    };
    if let Some(decision) = rate.filter(|d| !d.allowed) {
        return decision.problem().with_instance(path).into_response();
    }
    set_routing_headers(
        &mut parts.headers,
        matched.pattern,
        matched.path_info,
        &parts.uri,
        peer,
    );
    let request = Request::from_parts(
        parts,
        body.map_err(wasmtime_wasi_http::Error::from).boxed_unsync(),
    );

    let result = component.handle(request, target.limits).await;
    let status = result.as_ref().map_or_else(|e| e.status(), |r| r.status());
    tracing::debug!(
        component = component.id(),
        %path,
        status = status.as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    match result {
        Ok(mut response) => {
            if let Some(decision) = rate {
                decision.write_headers(response.headers_mut());
            }
            response
        }
        Err(error) => {
            match &error {
                crate::engine::ExecError::Failed(cause) => {
                    tracing::error!(component = component.id(), %path, "component failed: {cause:?}")
                }
                other => tracing::warn!(component = component.id(), %path, "{other}"),
            }
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
    }
}

fn set_routing_headers(
    headers: &mut HeaderMap,
    pattern: &RoutePattern,
    path_info: &str,
    uri: &http::Uri,
    peer: SocketAddr,
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
    let component_route = match pattern {
        RoutePattern::Exact(route) => route.clone(),
        RoutePattern::Prefix(prefix) => prefix.clone(),
    };
    let values = [
        (
            spin_headers::FULL_URL,
            format!("http://{host}{path_and_query}"),
        ),
        (spin_headers::PATH_INFO, path_info.to_owned()),
        (spin_headers::MATCHED_ROUTE, pattern.to_string()),
        (spin_headers::RAW_COMPONENT_ROUTE, pattern.to_string()),
        (spin_headers::COMPONENT_ROUTE, component_route),
        (spin_headers::BASE_PATH, "/".to_owned()),
        (spin_headers::CLIENT_ADDR, peer.to_string()),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
}
