//! The `web` component: serves the single-page app at `/` and every client
//! route below it (`/c/{id}`, `/reset-password?token=`, ...). Files come from
//! the Vite build embedded by `build.rs`; hashed files under `/assets/` are
//! cached forever, the rest revalidate by ETag. Paths under the API's
//! prefixes never get the app: they answer the gateway's own 404.

mod assets;

use lamina_sdk::api::ApiError;
use lamina_sdk::{Request, respond};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

/// Paths that belong to the API: an unknown one is a 404 problem, as the
/// gateway answers when no route matches, never the app's HTML. (`/v1` is
/// the OpenAI routes' today, so this only matters if they are removed.)
const API_PREFIXES: [&str; 2] = ["/api", "/v1"];

/// What the browser may load: only this origin's files, no inline script,
/// no framing.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; \
     object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

struct Web;

impl wasip2::exports::http::incoming_handler::Guest for Web {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let method = request.method();
        let target = request.path_with_query();
        let path = target.split(['?', '#']).next().unwrap_or("/");
        if is_api(path) {
            return problem(404, "Not Found", format!("no route matches {path}"), path).send(out);
        }
        if method != "GET" && method != "HEAD" {
            let detail = format!("{method} is not allowed on {path}");
            return problem(405, "Method Not Allowed", detail, path)
                .header("allow", "GET, HEAD")
                .send(out);
        }
        let Some(asset) = assets::find(path) else {
            return problem(404, "Not Found", format!("no route matches {path}"), path).send(out);
        };
        let encoding = asset.encoding_for(request.header("accept-encoding").as_deref());
        let etag = asset.etag_header(encoding);
        let cache_control = if asset.is_hashed() {
            "public, max-age=31536000, immutable"
        } else {
            "no-cache"
        };
        let mut headers = vec![
            ("content-type", asset.content_type),
            ("etag", etag.as_str()),
            ("cache-control", cache_control),
            ("vary", "accept-encoding"),
            ("content-security-policy", CONTENT_SECURITY_POLICY),
            ("x-content-type-options", "nosniff"),
            ("referrer-policy", "same-origin"),
        ];
        if let Some(name) = encoding.header() {
            headers.push(("content-encoding", name));
        }
        if request
            .header("if-none-match")
            .is_some_and(|tags| assets::etag_matches(&tags, &etag))
        {
            return respond(out, 304, &headers, b"");
        }
        if method == "HEAD" {
            // No Content-Length: the host checks it against the bytes written.
            return respond(out, 200, &headers, b"");
        }
        let body = asset.body(encoding);
        let length = body.len().to_string();
        headers.push(("content-length", length.as_str()));
        respond(out, 200, &headers, body);
    }
}

fn is_api(path: &str) -> bool {
    API_PREFIXES.iter().any(|prefix| {
        path.strip_prefix(prefix)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    })
}

/// A problem document naming the path, as the gateway's own (RFC 9457).
fn problem(status: u16, title: &str, detail: String, path: &str) -> ApiError {
    let mut error = ApiError::new(status, title, detail);
    error.members.insert("instance".to_owned(), path.into());
    error
}

wasip2::http::proxy::export!(Web);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_prefixes_are_whole_segments() {
        assert!(is_api("/api"));
        assert!(is_api("/api/nope"));
        assert!(is_api("/v1/models"));
        assert!(!is_api("/apiary"));
        assert!(!is_api("/v1beta"));
        assert!(!is_api("/c/123"));
    }
}
