//! Building JSON APIs: a handler returns `Result<Reply, ApiError>`; errors
//! become RFC 9457 problem+json (with one `errors` entry per bad field), and
//! [`Caller`] says who the gateway verified.

use serde::Serialize;
use wasip2::http::types::ResponseOutparam;

use crate::{Request, respond};

/// A successful answer: status, extra headers and a body (JSON, other
/// bytes, or none for 204).
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

/// What a [`Reply`] carries.
pub enum Body {
    Json(serde_json::Value),
    /// Bytes of this content type (a CSV export, say).
    Bytes(&'static str, Vec<u8>),
    Empty,
}

impl Reply {
    /// `status` with `body` as JSON.
    pub fn json(status: u16, body: impl Serialize) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Json(serde_json::to_value(body).expect("replies serialize")),
        }
    }

    /// `status` with `body` of `content_type`.
    pub fn bytes(status: u16, content_type: &'static str, body: Vec<u8>) -> Reply {
        Reply {
            status,
            headers: Vec::new(),
            body: Body::Bytes(content_type, body),
        }
    }

    /// 204 No Content.
    pub fn no_content() -> Reply {
        Reply {
            status: 204,
            headers: Vec::new(),
            body: Body::Empty,
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Reply {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// Sends it.
    pub fn send(self, out: ResponseOutparam) {
        let mut headers: Vec<(&str, &str)> = self
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        let body = match self.body {
            Body::Json(body) => {
                headers.push(("content-type", "application/json"));
                body.to_string().into_bytes()
            }
            Body::Bytes(content_type, bytes) => {
                headers.push(("content-type", content_type));
                bytes
            }
            Body::Empty => Vec::new(),
        };
        respond(out, self.status, &headers, &body);
    }
}

/// One invalid field, as listed in a 400's `errors`.
#[derive(Debug, Clone, Serialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

/// A failed request, answered as problem+json.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: u16,
    pub title: String,
    pub detail: String,
    /// Per-field problems (400).
    pub errors: Vec<FieldError>,
    /// Extra response headers (`Retry-After`, `Allow`, ...).
    pub headers: Vec<(String, String)>,
    /// Members the problem document adds or overrides (a `type` URI and
    /// its extension members).
    pub members: serde_json::Map<String, serde_json::Value>,
}

impl ApiError {
    /// An error with a status, a short title and an explanation.
    pub fn new(status: u16, title: &str, detail: impl Into<String>) -> ApiError {
        ApiError {
            status,
            title: title.to_owned(),
            detail: detail.into(),
            errors: Vec::new(),
            headers: Vec::new(),
            members: serde_json::Map::new(),
        }
    }

    /// 400 listing every invalid field.
    pub fn invalid(errors: Vec<FieldError>) -> ApiError {
        let detail = errors
            .iter()
            .map(|e| format!("{}: {}", e.field, e.message))
            .collect::<Vec<_>>()
            .join("; ");
        ApiError {
            errors,
            ..ApiError::new(400, "invalid request", detail)
        }
    }

    /// 400 for a body that is not the expected JSON.
    pub fn bad_body(why: impl std::fmt::Display) -> ApiError {
        ApiError::new(400, "invalid request body", why.to_string())
    }

    /// 404.
    pub fn not_found(detail: impl Into<String>) -> ApiError {
        ApiError::new(404, "not found", detail)
    }

    /// Adds `Retry-After` (429, 503).
    pub fn retry_after(self, seconds: u64) -> ApiError {
        self.header("retry-after", seconds.to_string())
    }

    /// Adds a response header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> ApiError {
        self.headers.push((name.to_owned(), value.into()));
        self
    }

    /// The problem+json document.
    pub fn document(&self) -> serde_json::Value {
        let mut body = serde_json::json!({
            "type": "about:blank",
            "title": self.title,
            "status": self.status,
            "detail": self.detail,
        });
        if !self.errors.is_empty() {
            body["errors"] = serde_json::to_value(&self.errors).expect("errors serialize");
        }
        for (name, value) in &self.members {
            body[name] = value.clone();
        }
        body
    }

    /// Sends it as problem+json.
    pub fn send(self, out: ResponseOutparam) {
        let body = self.document();
        let mut headers = vec![("content-type", "application/problem+json")];
        headers.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        respond(out, self.status, &headers, body.to_string().as_bytes());
    }
}

impl From<crate::sql::Error> for ApiError {
    /// Constraint violations keep their explanation; anything else is
    /// logged (stderr) and answered without the database's own words.
    fn from(e: crate::sql::Error) -> Self {
        let status = e.status();
        match status {
            400 | 409 => ApiError::new(status, "conflict with stored data", format!("{e:?}")),
            503 => {
                eprintln!("database unavailable: {e:?}");
                ApiError::new(
                    503,
                    "database unavailable",
                    "the database cannot be reached; try again",
                )
                .retry_after(5)
            }
            _ => {
                eprintln!("database error: {e:?}");
                ApiError::new(
                    status,
                    "database error",
                    "the request could not be completed",
                )
            }
        }
    }
}

impl From<crate::tokens::Error> for ApiError {
    fn from(e: crate::tokens::Error) -> Self {
        ApiError::new(e.status(), "credential error", e.detail())
    }
}

/// For `#[serde(default, deserialize_with = "nullable")]` on an
/// `Option<Option<T>>` field of a PATCH body: absent → `None` (keep),
/// `null` → `Some(None)` (clear), a value → `Some(Some(v))` (set).
pub fn nullable<'de, D, T>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: serde::Deserialize<'de>,
{
    serde::Deserialize::deserialize(deserializer).map(Some)
}

/// Reads the whole body: 413 past `limit` bytes.
pub fn read_body(request: &Request, limit: usize) -> Result<Vec<u8>, ApiError> {
    request.read_body(limit).map_err(|e| {
        if e.starts_with("request body larger than") {
            ApiError::new(413, "request body too large", e)
        } else {
            ApiError::bad_body(e)
        }
    })
}

/// Reads the body as JSON of type `T` (at most `limit` bytes).
pub fn read_json<T: serde::de::DeserializeOwned>(
    request: &Request,
    limit: usize,
) -> Result<T, ApiError> {
    serde_json::from_slice(&read_body(request, limit)?).map_err(ApiError::bad_body)
}

/// Sends `result`, whichever it is.
pub fn finish(out: ResponseOutparam, result: Result<Reply, ApiError>) {
    match result {
        Ok(reply) => reply.send(out),
        Err(error) => error.send(out),
    }
}

/// Percent-decodes a query value (`%40` → `@`, `+` → space); a malformed
/// escape stays as it is.
pub fn decode_query(value: &str) -> String {
    let bytes = value.as_bytes();
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// How the caller proved who they are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    Jwt,
    ApiKey,
}

/// The caller the gateway verified (from its `x-lamina-*` headers, which
/// clients cannot set).
#[derive(Debug, Clone)]
pub struct Caller {
    pub user_id: String,
    pub username: Option<String>,
    pub roles: Vec<String>,
    /// The JWT's `jti` or the API key's id.
    pub token_id: String,
    /// When the credential expires (seconds since the epoch), if it does.
    pub token_expires: Option<i64>,
    pub method: AuthMethod,
}

impl Caller {
    /// The verified caller; `None` on a route without authentication.
    pub fn of(request: &Request) -> Option<Caller> {
        Some(Caller {
            user_id: request.header("x-lamina-user-id")?,
            username: request.header("x-lamina-username"),
            roles: request
                .header("x-lamina-roles")
                .unwrap_or_default()
                .split(',')
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            token_id: request.header("x-lamina-token-id").unwrap_or_default(),
            token_expires: request
                .header("x-lamina-token-expires")
                .and_then(|v| v.parse().ok()),
            method: match request.header("x-lamina-auth-method").as_deref() {
                Some("api-key") => AuthMethod::ApiKey,
                _ => AuthMethod::Jwt,
            },
        })
    }

    /// The caller, or 401 (a route the manifest forgot to protect).
    pub fn required(request: &Request) -> Result<Caller, ApiError> {
        Caller::of(request)
            .ok_or_else(|| ApiError::new(401, "unauthorized", "this route needs a credential"))
    }

    /// Whether the caller has `role`.
    pub fn has_role(&self, role: &str) -> bool {
        self.roles.iter().any(|r| r == role)
    }

    /// 403 unless the caller has `role`: a component's own check behind
    /// the gateway's `roles`, should a route lose them.
    pub fn ensure_role(&self, role: &str) -> Result<(), ApiError> {
        if self.has_role(role) {
            Ok(())
        } else {
            Err(ApiError::new(
                403,
                "forbidden",
                format!("this route needs the {role} role"),
            ))
        }
    }

    /// The caller if it has `role`: 401 without a caller, 403 without
    /// the role.
    pub fn with_role(request: &Request, role: &str) -> Result<Caller, ApiError> {
        let caller = Caller::required(request)?;
        caller.ensure_role(role)?;
        Ok(caller)
    }
}

/// `n` random bytes from the host's CSPRNG (`wasi:random`).
pub fn random_bytes(n: u64) -> Vec<u8> {
    wasip2::random::random::get_random_bytes(n)
}

/// A random UUID (v4), hyphenated.
pub fn new_id() -> String {
    let mut b = random_bytes(16);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Seconds since the Unix epoch (`wasi:clocks/wall-clock`).
pub fn now() -> i64 {
    wasip2::clocks::wall_clock::now().seconds as i64
}

/// Milliseconds since the Unix epoch, for ordering within a second.
pub fn now_ms() -> i64 {
    let now = wasip2::clocks::wall_clock::now();
    now.seconds as i64 * 1000 + i64::from(now.nanoseconds / 1_000_000)
}

/// Milliseconds since the epoch as RFC 3339 UTC with milliseconds
/// (`2026-11-30T12:00:00.000Z`), the API's timestamp format.
pub fn timestamp(ms: i64) -> String {
    // humantime writes years 1970–9999 only (and fails past them).
    const LAST: i64 = 253_402_300_799_999;
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(ms.clamp(0, LAST) as u64);
    humantime::format_rfc3339_millis(at).to_string()
}

/// Seconds since the epoch as an API timestamp (see [`timestamp`]).
pub fn timestamp_secs(seconds: i64) -> String {
    timestamp(seconds.saturating_mul(1000))
}

/// For `#[serde(serialize_with = "…")]` on an `i64` of seconds since the
/// epoch read from a table: written as an API timestamp.
pub fn serialize_secs<S: serde::Serializer>(seconds: &i64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&timestamp_secs(*seconds))
}

/// Parses an RFC 3339 timestamp into milliseconds since the epoch.
pub fn parse_timestamp(text: &str) -> Option<i64> {
    let at = humantime::parse_rfc3339_weak(text).ok()?;
    let since = at.duration_since(std::time::UNIX_EPOCH).ok()?;
    i64::try_from(since.as_millis()).ok()
}

/// Gives a capability's generated error type `status()` (the HTTP status a
/// handler answers with), `detail()` (the host's explanation) and
/// `From<Error> for ApiError` (503s ask the client to retry in 5 s), from
/// one table of variants and statuses.
macro_rules! capability_error {
    ($error:ty, $title:literal, { $($variant:ident => $status:literal),+ $(,)? }) => {
        impl $error {
            /// The HTTP status this error answers with.
            pub fn status(&self) -> u16 {
                match self {
                    $(Self::$variant(_) => $status,)+
                }
            }

            /// The host's explanation.
            pub fn detail(&self) -> &str {
                match self {
                    $(Self::$variant(detail) => detail,)+
                }
            }
        }

        impl From<$error> for $crate::api::ApiError {
            fn from(e: $error) -> Self {
                let error = $crate::api::ApiError::new(e.status(), $title, e.detail());
                if e.status() == 503 { error.retry_after(5) } else { error }
            }
        }
    };
}
pub(crate) use capability_error;
