//! Token usage, summed from `usage.recorded`:
//!
//! - `GET /api/admin/usage?groupBy=user|key|model|day&from=&to=&userId=&limit=&format=`
//!   (administrators): requests, prompt and completion tokens per group,
//!   the most tokens first (days in order); `key` groups what API keys
//!   spent (sessions' tokens are not keys);
//! - `GET /api/admin/users/{id}/usage?from=&to=` (administrators): one
//!   account's totals per day and model, and overall;
//! - `GET /api/usage/me?from=&to=` (any account, a key too): the caller's
//!   own totals per day and model, and overall, and the budgets that bind
//!   the request (the account's, and the key's when it comes with one):
//!   used, left, and when each resets.
//!
//! Without `from`, the last 30 days.

use lamina_sdk::api::{ApiError, Caller, Reply, timestamp_secs};
use lamina_sdk::sql::{Database, Sql, Value};
use lamina_sdk::{Request, limits};
use serde::Deserialize;
use serde_json::json;

use crate::DATABASE;
use crate::report::{administrator, csv, param, range, wants_csv};

/// Days summed when the request does not say.
const DEFAULT_DAYS: i64 = 30;

/// One group's sums.
#[derive(Deserialize)]
struct Sums {
    key: Option<String>,
    day: Option<i64>,
    model: Option<String>,
    requests: i64,
    prompt_tokens: i64,
    completion_tokens: i64,
}

impl Sums {
    /// The group's name: a day as `YYYY-MM-DD`.
    fn name(&self) -> String {
        match (self.day, &self.key) {
            (Some(day), _) => timestamp_secs(day)[..10].to_owned(),
            (None, key) => key.clone().unwrap_or_default(),
        }
    }

    fn json(&self) -> serde_json::Value {
        json!({
            "key": self.name(),
            "model": self.model,
            "requests": self.requests,
            "promptTokens": self.prompt_tokens,
            "completionTokens": self.completion_tokens,
            "totalTokens": self.prompt_tokens + self.completion_tokens,
        })
    }
}

/// The sums' columns.
const SUMS: &str = "COUNT(*) AS requests, CAST(SUM(prompt_tokens) AS BIGINT) AS prompt_tokens, \
                    CAST(SUM(completion_tokens) AS BIGINT) AS completion_tokens";
/// A row's UTC day, as seconds since the epoch.
const DAY: &str = "(at / 86400) * 86400";

/// `GET /api/admin/usage`.
pub fn report(request: &Request) -> Result<Reply, ApiError> {
    administrator(request)?;
    let group = param(request, "groupBy", 10)?.unwrap_or_else(|| "day".to_owned());
    let (key, day, extra, order) = match group.as_str() {
        "user" => ("user_id", "NULL", "", "total DESC, 1"),
        "key" => (
            "credential_id",
            "NULL",
            " AND credential_type = 'api-key'",
            "total DESC, 1",
        ),
        "model" => ("model", "NULL", "", "total DESC, 1"),
        "day" => ("NULL", DAY, "", "2"),
        _ => {
            return Err(ApiError::new(
                400,
                "invalid parameter",
                "groupBy: user, key, model or day",
            ));
        }
    };
    let limit: i64 = match param(request, "limit", 5)? {
        None => 100,
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::new(400, "invalid parameter", "limit: 1 to 1000"))?,
    };
    let (from, to) = range(request, Some(DEFAULT_DAYS))?;
    let mut params: Vec<Value> = vec![from.into(), to.into()];
    let mut filter = format!("at >= $1 AND at < $2{extra}");
    if let Some(user) = param(request, "userId", 64)? {
        params.push(user.into());
        filter.push_str(&format!(" AND user_id = ${}", params.len()));
    }
    params.push(limit.into());
    let db = Database::open(DATABASE)?;
    // Grouped by position: the same expression in both dialects.
    let rows: Vec<Sums> = db.query(
        &format!(
            "SELECT {key} AS key, {day} AS day, {SUMS}, NULL AS model, \
             CAST(SUM(prompt_tokens + completion_tokens) AS BIGINT) AS total \
             FROM outbox_usage WHERE {filter} GROUP BY 1, 2 ORDER BY {order} LIMIT ${}",
            params.len()
        ),
        &params,
    )?;
    if wants_csv(request)? {
        return csv(
            "usage",
            &[
                group.as_str(),
                "requests",
                "prompt_tokens",
                "completion_tokens",
                "total_tokens",
            ],
            rows.iter()
                .map(|r| {
                    vec![
                        r.name(),
                        r.requests.to_string(),
                        r.prompt_tokens.to_string(),
                        r.completion_tokens.to_string(),
                        (r.prompt_tokens + r.completion_tokens).to_string(),
                    ]
                })
                .collect(),
        );
    }
    Ok(Reply::json(
        200,
        json!({
            "groupBy": group,
            "from": timestamp_secs(from),
            "to": (to != i64::MAX).then(|| timestamp_secs(to)),
            "items": rows.iter().map(Sums::json).collect::<Vec<_>>(),
        }),
    ))
}

/// `GET /api/usage/me`.
pub fn mine(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let mut body = summary(request, &caller.user_id)?;
    let mut budgets = serde_json::Map::new();
    for (scope, status) in limits::caller_budgets()? {
        let name = if scope == "api-key" { "apiKey" } else { "user" };
        budgets.insert(name.to_owned(), limits::status_json(&status));
    }
    body["budgets"] = budgets.into();
    Ok(Reply::json(200, body))
}

/// `GET /api/admin/users/{id}/usage`: an account's sums, as it sees them
/// at `/api/usage/me` (its budget is in the auth service's view of it).
pub fn of_user(request: &Request, id: &str) -> Result<Reply, ApiError> {
    administrator(request)?;
    Ok(Reply::json(200, summary(request, id)?))
}

/// `user_id`'s sums per day and model, and in all, over the request's
/// `from`/`to` (the last 30 days by default).
fn summary(request: &Request, user_id: &str) -> Result<serde_json::Value, ApiError> {
    let (from, to) = range(request, Some(DEFAULT_DAYS))?;
    let db = Database::open(DATABASE)?;
    let rows: Vec<Sums> = db.query(
        &format!(
            "SELECT NULL AS key, {DAY} AS day, model, {SUMS} FROM outbox_usage \
             WHERE user_id = $1 AND at >= $2 AND at < $3 GROUP BY 2, 3 ORDER BY 2, 3"
        ),
        &[user_id.into(), from.into(), to.into()],
    )?;
    let total = |f: fn(&Sums) -> i64| rows.iter().map(f).sum::<i64>();
    Ok(json!({
        "userId": user_id,
        "from": timestamp_secs(from),
        "to": (to != i64::MAX).then(|| timestamp_secs(to)),
        "items": rows.iter().map(|r| {
            let mut item = r.json();
            item["day"] = item["key"].take();
            item.as_object_mut().map(|o| o.remove("key"));
            item
        }).collect::<Vec<_>>(),
        "totals": {
            "requests": total(|r| r.requests),
            "promptTokens": total(|r| r.prompt_tokens),
            "completionTokens": total(|r| r.completion_tokens),
            "totalTokens": total(|r| r.prompt_tokens + r.completion_tokens),
        },
    }))
}
