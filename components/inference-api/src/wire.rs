//! What the Ollama and OpenAI surfaces share.

use lamina_sdk::api::ApiError;
use lamina_sdk::respond;
use lamina_sdk::router::Miss;
use serde::Deserialize;
use serde_json::Value;
use wasip2::http::types::ResponseOutparam;

/// Sends a protocol's error `body` (Ollama's `{"error": ...}` or
/// OpenAI's), merged with the problem+json document and headers of an
/// inference error that carries them (a budget refusal: its `type`,
/// `resetsAt` and `Retry-After`), so the protocol's clients and
/// problem-aware ones both read it.
pub fn send_error(out: ResponseOutparam, status: u16, mut body: Value, problem: Option<&ApiError>) {
    let mut content_type = "application/json; charset=utf-8";
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(problem) = problem {
        if !problem.members.is_empty()
            && let (Value::Object(body), Value::Object(document)) = (&mut body, problem.document())
        {
            for (name, value) in document {
                body.entry(name).or_insert(value);
            }
            content_type = "application/problem+json";
        }
        headers.extend(
            problem
                .headers
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str())),
        );
    }
    headers.push(("content-type", content_type));
    respond(out, status, &headers, body.to_string().as_bytes());
}

/// One string or a list of them, as both APIs accept for inputs and
/// stop strings.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Text {
    One(String),
    Many(Vec<String>),
}

impl Text {
    /// The strings, one or many.
    pub fn into_vec(self) -> Vec<String> {
        match self {
            Text::One(s) => vec![s],
            Text::Many(v) => v,
        }
    }
}

/// Ollama's `keep_alive`: seconds as a number, or a duration string
/// (`"5m"`, `"30s"`, `"1h"`, `"-1"`); negative keeps the model loaded.
pub fn keep_alive(value: Option<&serde_json::Value>) -> Result<Option<i64>, String> {
    let bad = || "keep_alive must be seconds or a duration such as \"5m\"".to_owned();
    match value {
        None | Some(serde_json::Value::Null) => Ok(None),
        Some(serde_json::Value::Number(n)) => n
            .as_i64()
            .or_else(|| n.as_f64().map(|f| f as i64))
            .map(Some)
            .ok_or_else(bad),
        Some(serde_json::Value::String(s)) => {
            let s = s.trim();
            if let Ok(seconds) = s.parse::<i64>() {
                return Ok(Some(seconds));
            }
            let (number, unit) = s
                .find(|c: char| c.is_ascii_alphabetic())
                .map(|i| s.split_at(i))
                .ok_or_else(bad)?;
            let number: f64 = number.parse().map_err(|_| bad())?;
            let scale = match unit {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return Err(bad()),
            };
            Ok(Some((number * scale) as i64))
        }
        Some(_) => Err(bad()),
    }
}

/// Now as RFC 3339 (UTC, nanoseconds), as Ollama's `created_at`.
pub fn rfc3339_now() -> String {
    let now = wasip2::clocks::wall_clock::now();
    rfc3339(now.seconds as i64, now.nanoseconds)
}

/// Seconds since the epoch (and nanoseconds) as RFC 3339, UTC.
pub fn rfc3339(seconds: i64, nanoseconds: u32) -> String {
    let days = seconds.div_euclid(86_400);
    let secs = seconds.rem_euclid(86_400);
    // Days since 1970-01-01 → civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60,
        nanoseconds
    )
}

/// Answers a request no route takes, in the API's own error shape
/// (`body` of the message): 404, or 405 with `Allow`.
pub fn unmatched(
    out: ResponseOutparam,
    miss: &Miss,
    method: &str,
    path: &str,
    body: impl Fn(&str) -> serde_json::Value,
) {
    let (status, message, allow) = match miss {
        Miss::NotFound => (
            404,
            format!("{method} {path} is not an endpoint of this server"),
            None,
        ),
        Miss::MethodNotAllowed(allow) => (
            405,
            format!("{method} is not supported on {path}"),
            Some(allow.join(", ")),
        ),
    };
    let mut headers = vec![("content-type", "application/json; charset=utf-8")];
    if let Some(allow) = &allow {
        headers.push(("allow", allow));
    }
    respond(out, status, &headers, body(&message).to_string().as_bytes());
}
