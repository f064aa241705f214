//! Guest-side helpers shared by every Lamina component (wasm32-wasip2).
//!
//! - HTTP: wraps the raw `wasi:http` bindings of the `wasip2` crate into a
//!   small, blocking API: read a [`Request`], answer with [`respond`],
//!   [`json`] or [`problem`], or stream with a [`BodyWriter`]. A component
//!   exports its handler with `wasip2::http::proxy::export!`. [`api`] adds
//!   JSON handlers returning `Result<Reply, ApiError>` and the verified
//!   [`api::Caller`]; [`router`] picks a handler by method and path (405
//!   with `Allow`); [`service`] runs a route table's request loop.
//! - Host capabilities (`wit/platform.wit`): [`sql`] (typed rows into serde
//!   structs, transactions), [`cache`] (key-value stores and the cache-aside
//!   helper), [`queue`] (publish, audit events), [`variables`], [`tokens`] (issue and
//!   revoke credentials), [`inference`] (generation and embeddings on the
//!   host's llama.cpp engine), [`limits`] (model access and token budgets), [`usage`] (what a generation or embedding
//!   costs the caller, published to `usage.recorded`), [`mail`] (SMTP), [`blobs`] (files by key),
//!   [`vectors`] (similarity search) and [`page`] (pagination). [`sse`] streams Server-Sent Events;
//!   [`fulltext`] turns typed text into FTS5 / tsquery queries;
//!   [`worker`] consumes queue topics.
//!   [`platform`] holds the raw generated bindings.

pub mod api;
pub mod blobs;
pub mod cache;
pub mod fulltext;
pub mod inference;
pub mod limits;
pub mod mail;
pub mod page;
pub mod queue;
pub mod router;
pub mod service;
pub mod sql;
pub mod sse;
pub mod tokens;
pub mod usage;
pub mod validate;
pub mod variables;
pub mod vectors;
pub mod worker;

/// Raw bindings of the `lamina:platform` imports (world `service`).
pub mod platform {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "service",
        generate_all,
    });
    pub use lamina::platform::*;
}

use std::io::{Read, Write};

use wasip2::http::types::{
    Fields, IncomingRequest, Method, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::OutputStream;

/// Largest request body [`Request::read_body`] accepts by default.
pub const DEFAULT_BODY_LIMIT: usize = 1 << 20;

/// An incoming request with the routing information the host adds.
pub struct Request {
    inner: IncomingRequest,
}

impl Request {
    /// Wraps the raw request handed to `incoming-handler.handle`.
    pub fn new(inner: IncomingRequest) -> Self {
        Request { inner }
    }

    /// The method, upper-case (`GET`, `POST`, ...).
    pub fn method(&self) -> String {
        match self.inner.method() {
            Method::Get => "GET".into(),
            Method::Head => "HEAD".into(),
            Method::Post => "POST".into(),
            Method::Put => "PUT".into(),
            Method::Delete => "DELETE".into(),
            Method::Connect => "CONNECT".into(),
            Method::Options => "OPTIONS".into(),
            Method::Trace => "TRACE".into(),
            Method::Patch => "PATCH".into(),
            Method::Other(other) => other,
        }
    }

    /// Path and query as the client sent them.
    pub fn path_with_query(&self) -> String {
        self.inner.path_with_query().unwrap_or_else(|| "/".into())
    }

    /// The first value of a header, if it is valid UTF-8.
    pub fn header(&self, name: &str) -> Option<String> {
        self.inner
            .headers()
            .get(name)
            .into_iter()
            .next()
            .and_then(|value| String::from_utf8(value).ok())
    }

    /// All headers as (name, value) pairs.
    pub fn headers(&self) -> Vec<(String, Vec<u8>)> {
        self.inner.headers().entries()
    }

    /// The path below the matched route (`spin-path-info`).
    pub fn path_info(&self) -> String {
        self.header("spin-path-info").unwrap_or_default()
    }

    /// A query parameter's raw value.
    pub fn query(&self, key: &str) -> Option<String> {
        let path = self.path_with_query();
        let (_, query) = path.split_once('?')?;
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (k == key).then(|| v.to_owned())
        })
    }

    /// Every raw value of a repeated query parameter (`?tag=a&tag=b`).
    pub fn query_all(&self, key: &str) -> Vec<String> {
        let path = self.path_with_query();
        let Some((_, query)) = path.split_once('?') else {
            return Vec::new();
        };
        query
            .split('&')
            .filter_map(|pair| {
                let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                (k == key).then(|| v.to_owned())
            })
            .collect()
    }

    /// The body as a blocking reader.
    pub fn body_reader(&self) -> Result<impl Read, String> {
        let body = self
            .inner
            .consume()
            .map_err(|()| "request body already consumed")?;
        let stream = body
            .stream()
            .map_err(|()| "request body stream already taken")?;
        // The body resource must outlive its stream.
        Ok(BodyReader {
            stream,
            _body: body,
        })
    }

    /// Reads the whole body, refusing more than `limit` bytes.
    pub fn read_body(&self, limit: usize) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        self.body_reader()?
            .take(limit as u64 + 1)
            .read_to_end(&mut body)
            .map_err(|e| format!("cannot read request body: {e}"))?;
        if body.len() > limit {
            return Err(format!("request body larger than {limit} bytes"));
        }
        Ok(body)
    }
}

struct BodyReader {
    stream: wasip2::io::streams::InputStream,
    _body: wasip2::http::types::IncomingBody,
}

impl Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        Read::read(&mut self.stream, buf)
    }
}

/// A response body being streamed to the client.
pub struct BodyWriter {
    stream: Option<OutputStream>,
    body: Option<OutgoingBody>,
}

impl BodyWriter {
    /// Sends the status and headers now and returns a writer for the body.
    pub fn start(out: ResponseOutparam, status: u16, headers: &[(&str, &str)]) -> BodyWriter {
        let entries: Vec<(String, Vec<u8>)> = headers
            .iter()
            .map(|(name, value)| (name.to_string(), value.as_bytes().to_vec()))
            .collect();
        let fields = Fields::from_list(&entries).unwrap_or_else(|_| Fields::new());
        let response = OutgoingResponse::new(fields);
        let _ = response.set_status_code(status);
        let body = response.body().expect("a new response has a body");
        ResponseOutparam::set(out, Ok(response));
        let stream = body.write().expect("a new body has a stream");
        BodyWriter {
            stream: Some(stream),
            body: Some(body),
        }
    }

    /// Writes and flushes one chunk, so it reaches the client now.
    pub fn send(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        let stream = self.stream.as_mut().expect("stream open until finish");
        stream.write_all(chunk)?;
        stream.flush()
    }

    /// Ends the body.
    pub fn finish(mut self) {
        self.close();
    }

    fn close(&mut self) {
        drop(self.stream.take());
        if let Some(body) = self.body.take() {
            let _ = OutgoingBody::finish(body, None);
        }
    }
}

impl Drop for BodyWriter {
    fn drop(&mut self) {
        self.close();
    }
}

/// Sends a complete response.
pub fn respond(out: ResponseOutparam, status: u16, headers: &[(&str, &str)], body: &[u8]) {
    let mut writer = BodyWriter::start(out, status, headers);
    let _ = writer.send(body);
    writer.finish();
}

/// Sends a JSON response.
pub fn json(out: ResponseOutparam, status: u16, value: &serde_json::Value) {
    respond(
        out,
        status,
        &[("content-type", "application/json")],
        value.to_string().as_bytes(),
    );
}

/// Sends an RFC 9457 problem+json response.
pub fn problem(out: ResponseOutparam, status: u16, title: &str, detail: &str) {
    let body = serde_json::json!({
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
    });
    respond(
        out,
        status,
        &[("content-type", "application/problem+json")],
        body.to_string().as_bytes(),
    );
}

/// Blocks the instance for `duration` without burning CPU.
pub fn sleep(duration: std::time::Duration) {
    let nanos = u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX);
    wasip2::clocks::monotonic_clock::subscribe_duration(nanos).block();
}
