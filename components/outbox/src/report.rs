//! What the administrators' reports share: the caller check, the time
//! range, and the answer as JSON or CSV.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Caller, Reply, decode_query, now, parse_timestamp};

/// The caller, if an administrator (the gateway's `roles` refuses the
/// others first).
pub fn administrator(request: &Request) -> Result<Caller, ApiError> {
    Caller::with_role(request, "Admin")
}

/// A query parameter, decoded; 400 past `max` characters.
pub fn param(request: &Request, name: &str, max: usize) -> Result<Option<String>, ApiError> {
    match request.query(name).map(|v| decode_query(&v)) {
        Some(v) if v.is_empty() => Ok(None),
        Some(v) if v.chars().count() > max => Err(ApiError::new(
            400,
            "invalid parameter",
            format!("{name}: at most {max} characters"),
        )),
        other => Ok(other),
    }
}

/// `?from=&to=` (RFC 3339) as seconds since the epoch, `[from, to)`;
/// `default_days` back from now when `from` is absent.
pub fn range(request: &Request, default_days: Option<i64>) -> Result<(i64, i64), ApiError> {
    let at = |name: &str| -> Result<Option<i64>, ApiError> {
        match param(request, name, 64)? {
            None => Ok(None),
            Some(text) => parse_timestamp(&text)
                .map(|ms| Some(ms / 1000))
                .ok_or_else(|| {
                    ApiError::new(
                        400,
                        "invalid parameter",
                        format!("{name}: an RFC 3339 timestamp"),
                    )
                }),
        }
    };
    let to = at("to")?.unwrap_or(i64::MAX);
    let from = at("from")?.unwrap_or_else(|| default_days.map_or(0, |d| now() - d * 86_400));
    if from > to {
        return Err(ApiError::new(400, "invalid parameter", "from: after to"));
    }
    Ok((from, to))
}

/// Whether `?format=csv` asks for CSV (else JSON; anything else is 400).
pub fn wants_csv(request: &Request) -> Result<bool, ApiError> {
    match param(request, "format", 10)?.as_deref() {
        None | Some("json") => Ok(false),
        Some("csv") => Ok(true),
        Some(_) => Err(ApiError::new(
            400,
            "invalid parameter",
            "format: json or csv",
        )),
    }
}

/// `rows` under `header` as a CSV attachment named `name`.
pub fn csv(name: &str, header: &[&str], rows: Vec<Vec<String>>) -> Result<Reply, ApiError> {
    let mut writer = csv::Writer::from_writer(Vec::new());
    let failed = |e: csv::Error| ApiError::new(500, "internal error", e.to_string());
    writer.write_record(header).map_err(failed)?;
    for row in rows {
        writer.write_record(&row).map_err(failed)?;
    }
    let body = writer
        .into_inner()
        .map_err(|e| ApiError::new(500, "internal error", e.to_string()))?;
    Ok(Reply::bytes(200, "text/csv; charset=utf-8", body).header(
        "content-disposition",
        format!("attachment; filename=\"{name}.csv\""),
    ))
}
