//! RFC 9457 `application/problem+json` responses: the one error shape every
//! route of the host answers with (404 no route, 504 deadline, 500 trap, ...).

use http::{HeaderValue, Response, StatusCode, header};
use serde::Serialize;

use crate::body::{HostBody, full};

/// One problem document. `type` is left at its default (`about:blank`), so
/// `title` is the status phrase as RFC 9457 asks.
#[derive(Debug, Serialize)]
pub struct Problem {
    #[serde(rename = "type")]
    kind: &'static str,
    title: &'static str,
    status: u16,
    detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    instance: Option<String>,
    /// Extra response headers (`WWW-Authenticate`, `Retry-After`, ...).
    #[serde(skip)]
    headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Problem {
    /// A problem with the status's canonical title and a human-readable detail.
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("Error"),
            status: status.as_u16(),
            detail: detail.into(),
            instance: None,
            headers: Vec::new(),
        }
    }

    /// Names the request path the problem is about.
    pub fn with_instance(mut self, path: impl Into<String>) -> Self {
        self.instance = Some(path.into());
        self
    }

    /// Adds a response header; a value that is not a valid header is dropped.
    pub fn with_header(mut self, name: header::HeaderName, value: impl AsRef<str>) -> Self {
        if let Ok(value) = HeaderValue::from_str(value.as_ref()) {
            self.headers.push((name, value));
        }
        self
    }

    /// The HTTP status of this problem.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Renders the problem as a complete HTTP response.
    pub fn into_response(self) -> Response<HostBody> {
        let body = serde_json::to_vec(&self).expect("a problem always serializes");
        let mut response = Response::new(full(body));
        *response.status_mut() = self.status();
        for (name, value) in self.headers {
            response.headers_mut().insert(name, value);
        }
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response
    }
}
