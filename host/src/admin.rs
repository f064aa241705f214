//! The local admin API (its own listener, loopback by default):
//!
//! - `PUT /v1/components/{id}` with the `.wasm` as body: hot deploy.
//! - `GET /v1/components`: what is deployed (id, digest, world, since).
//! - `GET /v1/queues/{topic}/dead-letters[?limit=N]`: messages that failed
//!   every attempt, oldest first.
//! - `POST /v1/queues/{topic}/dead-letters/{id}/replay`: put one back on
//!   its topic with a fresh attempt count.
//!
//! - `GET /metrics`: Prometheus metrics (no token: for scrapers; keep the
//!   admin listener private).
//!
//! Every other call needs `Authorization: Bearer <LAMINA_DEPLOY_TOKEN>`;
//! without that variable set at start-up the API refuses them all.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use serde_json::json;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::app::{App, DeployError};
use crate::body::{HostBody, json};
use crate::engine::LoadedComponent;
use crate::problem::Problem;

/// Environment variable holding the deploy token.
pub const DEPLOY_TOKEN_ENV: &str = "LAMINA_DEPLOY_TOKEN";

/// State of the admin API.
pub struct Admin {
    app: Arc<App>,
    /// SHA-256 of the token; comparing digests keeps the check constant-time
    /// regardless of length.
    token_digest: Option<[u8; 32]>,
    max_component_size: usize,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
}

impl Admin {
    /// Admin API over `app`; `token` of `None` disables it.
    pub fn new(
        app: Arc<App>,
        token: Option<String>,
        max_component_size: usize,
        metrics: metrics_exporter_prometheus::PrometheusHandle,
    ) -> Admin {
        Admin {
            app,
            token_digest: token
                .filter(|t| !t.is_empty())
                .map(|t| Sha256::digest(t.as_bytes()).into()),
            max_component_size,
            metrics,
        }
    }

    /// Handles one admin request.
    pub async fn handle(
        self: Arc<Self>,
        request: Request<Incoming>,
        _peer: SocketAddr,
    ) -> Response<HostBody> {
        let path = request.uri().path().to_owned();
        if request.method() == Method::GET && path == "/metrics" {
            let mut response = Response::new(crate::body::full(self.metrics.render()));
            response.headers_mut().insert(
                header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4"),
            );
            return response;
        }
        if request.method() == Method::GET && path == "/ready" {
            // Which backend fails and why: for the operator, not the public.
            let (ready, report) = crate::trigger::http::readiness(&self.app).await;
            let status = if ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            return json(status, &report);
        }
        if let Err(problem) = self.authorize(&request) {
            return problem.with_instance(path).into_response();
        }
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method(), segments.as_slice()) {
            (&Method::GET, ["v1", "components"]) => self.list(),
            (&Method::PUT, ["v1", "components", id]) if !id.is_empty() => {
                let id = id.to_string();
                self.deploy(id, request).await
            }
            (&Method::GET, ["v1", "queues", topic, "dead-letters"]) => {
                let limit = request
                    .uri()
                    .query()
                    .and_then(|q| q.split('&').find_map(|kv| kv.strip_prefix("limit=")))
                    .map(str::parse::<usize>);
                match limit {
                    Some(Err(_)) | Some(Ok(0)) => {
                        Problem::new(StatusCode::BAD_REQUEST, "limit must be a positive integer")
                            .with_instance(path.clone())
                            .into_response()
                    }
                    limit => {
                        let limit = limit.and_then(Result::ok).unwrap_or(100).min(1000);
                        self.dead_letters(topic, limit, &path).await
                    }
                }
            }
            (&Method::POST, ["v1", "queues", topic, "dead-letters", id, "replay"]) => {
                self.replay(topic, id, &path).await
            }
            (_, ["v1", "components", ..] | ["v1", "queues", ..]) => Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed here", request.method()),
            )
            .with_instance(path)
            .into_response(),
            _ => Problem::new(
                StatusCode::NOT_FOUND,
                format!("no admin endpoint at {path}"),
            )
            .with_instance(path)
            .into_response(),
        }
    }

    fn authorize<B>(&self, request: &Request<B>) -> Result<(), Problem> {
        let Some(expected) = &self.token_digest else {
            return Err(Problem::new(
                StatusCode::FORBIDDEN,
                format!("hot deploy is disabled: start lamina with {DEPLOY_TOKEN_ENV} set"),
            ));
        };
        let presented = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|token| Sha256::digest(token.trim().as_bytes()));
        match presented {
            Some(digest) if bool::from(digest.as_slice().ct_eq(expected)) => Ok(()),
            Some(_) => Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "invalid deploy token",
            )),
            None => Err(Problem::new(
                StatusCode::UNAUTHORIZED,
                "missing bearer deploy token",
            )),
        }
    }

    /// Dead letters of `topic`, oldest first; payloads of a topic marked
    /// `sensitive` are not shown (replay still delivers them whole).
    async fn dead_letters(&self, topic: &str, limit: usize, path: &str) -> Response<HostBody> {
        match self
            .app
            .capabilities()
            .queue
            .dead_letters(topic, limit)
            .await
        {
            Ok(mut items) => {
                let sensitive = self
                    .app
                    .queue_triggers()
                    .iter()
                    .any(|t| t.topic == topic && t.sensitive);
                if sensitive {
                    for item in &mut items {
                        item.payload = REDACTED.to_owned();
                    }
                }
                json(StatusCode::OK, &json!({ "items": items }))
            }
            Err(error) => queue_unavailable(error, path),
        }
    }

    async fn replay(&self, topic: &str, id: &str, path: &str) -> Response<HostBody> {
        match self.app.capabilities().queue.replay(topic, id).await {
            Ok(true) => json(
                StatusCode::OK,
                &json!({ "id": id, "topic": topic, "replayed": true }),
            ),
            Ok(false) => Problem::new(
                StatusCode::NOT_FOUND,
                format!("no dead letter `{id}` on topic `{topic}`"),
            )
            .with_instance(path.to_owned())
            .into_response(),
            Err(error) => queue_unavailable(error, path),
        }
    }

    fn list(&self) -> Response<HostBody> {
        let items: Vec<_> = self.app.components().map(|c| describe(&c)).collect();
        json(StatusCode::OK, &json!({ "items": items }))
    }

    async fn deploy(&self, id: String, request: Request<Incoming>) -> Response<HostBody> {
        let instance = request.uri().path().to_owned();
        let wasm: Bytes = match Limited::new(request.into_body(), self.max_component_size)
            .collect()
            .await
        {
            Ok(collected) => collected.to_bytes(),
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                return Problem::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!(
                        "component larger than the {} byte limit",
                        self.max_component_size
                    ),
                )
                .with_instance(instance)
                .into_response();
            }
            Err(e) => {
                return Problem::new(
                    StatusCode::BAD_REQUEST,
                    format!("cannot read request body: {e}"),
                )
                .with_instance(instance)
                .into_response();
            }
        };
        if wasm.is_empty() {
            return Problem::new(
                StatusCode::BAD_REQUEST,
                "empty body: send the component's .wasm bytes",
            )
            .with_instance(instance)
            .into_response();
        }
        let app = self.app.clone();
        let outcome = tokio::task::spawn_blocking(move || app.deploy(&id, &wasm)).await;
        match outcome {
            Ok(Ok(loaded)) => json(StatusCode::OK, &describe(&loaded)),
            Ok(Err(error @ DeployError::UnknownComponent(_))) => {
                Problem::new(StatusCode::NOT_FOUND, error.to_string())
                    .with_instance(instance)
                    .into_response()
            }
            Ok(Err(error @ DeployError::Rejected(_))) => Problem::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                format!("deploy rejected, the previous version keeps serving: {error}"),
            )
            .with_instance(instance)
            .into_response(),
            Err(join) => Problem::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("deploy task failed: {join}"),
            )
            .with_instance(instance)
            .into_response(),
        }
    }
}

/// What a sensitive topic's dead letters show instead of their payload.
const REDACTED: &str = "(redacted: the topic is marked sensitive)";

fn queue_unavailable(
    error: crate::capabilities::queue::QueueError,
    path: &str,
) -> Response<HostBody> {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, error.to_string())
        .with_instance(path.to_owned())
        .into_response()
}

fn describe(component: &LoadedComponent) -> serde_json::Value {
    json!({
        "id": component.id(),
        "digest": component.digest(),
        "world": component.world(),
        "deployedAt": humantime::format_rfc3339_seconds(component.deployed_at()).to_string(),
    })
}
