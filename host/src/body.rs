//! The one body type every host response uses: the component's streaming
//! body passes through untouched, and host-made responses use the same type.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};

/// A boxed, streaming HTTP body (what `wasmtime-wasi-http` produces).
pub type HostBody = wasmtime_wasi_http::WasiBody;

/// A complete in-memory body.
pub fn full(bytes: impl Into<Bytes>) -> HostBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A JSON response with the given status.
pub fn json(status: http::StatusCode, value: &serde_json::Value) -> http::Response<HostBody> {
    let mut response = http::Response::new(full(value.to_string()));
    *response.status_mut() = status;
    response.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    response
}
