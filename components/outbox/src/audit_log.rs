//! `GET /api/admin/audit?actor=&action=&target=&outcome=&from=&to=&page=&pageSize=&format=`:
//! the audit log, newest first. `action` matches exactly, or by prefix
//! with a trailing `*` (`admin.user.*`). `format=csv` exports the whole
//! filtered set (at most [`MAX_EXPORT`] rows: narrow `from`/`to` past
//! that). The log is append-only: no route changes or deletes an entry.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Reply, timestamp_secs};
use lamina_sdk::page::{Page, PageRequest};
use lamina_sdk::sql::{Database, Sql, Value, like_escape};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::DATABASE;
use crate::report::{administrator, csv, param, range, wants_csv};

/// Most rows one CSV export holds (built in the component's memory).
const MAX_EXPORT: i64 = 10_000;

#[derive(Deserialize)]
struct Entry {
    id: String,
    action: String,
    actor: Option<String>,
    target: Option<String>,
    outcome: String,
    request_id: Option<String>,
    client: Option<String>,
    detail: String,
    at: i64,
}

impl Entry {
    fn json(self) -> Json {
        json!({
            "id": self.id,
            "at": timestamp_secs(self.at),
            "action": self.action,
            "actor": self.actor,
            "target": self.target,
            "outcome": self.outcome,
            "requestId": self.request_id,
            "client": self.client,
            "detail": serde_json::from_str::<Json>(&self.detail).unwrap_or(Json::Null),
        })
    }

    fn csv(self) -> Vec<String> {
        vec![
            self.id,
            timestamp_secs(self.at),
            self.action,
            self.actor.unwrap_or_default(),
            self.target.unwrap_or_default(),
            self.outcome,
            self.request_id.unwrap_or_default(),
            self.client.unwrap_or_default(),
            self.detail,
        ]
    }
}

/// `GET /api/admin/audit`.
pub fn search(request: &Request) -> Result<Reply, ApiError> {
    administrator(request)?;
    let (from, to) = range(request, None)?;
    let mut conditions = vec!["at >= $1".to_owned(), "at < $2".to_owned()];
    let mut params: Vec<Value> = vec![from.into(), to.into()];
    for (name, column) in [
        ("actor", "actor"),
        ("target", "target"),
        ("outcome", "outcome"),
    ] {
        if let Some(value) = param(request, name, 254)? {
            params.push(value.into());
            conditions.push(format!("{column} = ${}", params.len()));
        }
    }
    if let Some(action) = param(request, "action", 254)? {
        match action.strip_suffix('*') {
            Some(prefix) => {
                params.push(format!("{}%", like_escape(prefix)).into());
                conditions.push(format!("action LIKE ${} ESCAPE '\\'", params.len()));
            }
            None => {
                params.push(action.into());
                conditions.push(format!("action = ${}", params.len()));
            }
        }
    }
    let filter = conditions.join(" AND ");
    let db = Database::open(DATABASE)?;
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let total = db
        .query_one::<Count>(
            &format!("SELECT COUNT(*) AS n FROM outbox_audit WHERE {filter}"),
            &params,
        )?
        .map_or(0, |c| c.n);
    let select = format!(
        "SELECT id, action, actor, target, outcome, request_id, client, detail, at \
         FROM outbox_audit WHERE {filter} ORDER BY at DESC, id"
    );
    if wants_csv(request)? {
        if total > MAX_EXPORT {
            return Err(ApiError::new(
                400,
                "export too large",
                format!(
                    "{total} entries match; at most {MAX_EXPORT} export at once: narrow from/to"
                ),
            ));
        }
        let rows: Vec<Entry> = db.query(&select, &params)?;
        return csv(
            "audit",
            &[
                "id",
                "at",
                "action",
                "actor",
                "target",
                "outcome",
                "request_id",
                "client",
                "detail",
            ],
            rows.into_iter().map(Entry::csv).collect(),
        );
    }
    let page = PageRequest::parse(
        request.query("page").as_deref(),
        request.query("pageSize").as_deref(),
    )
    .map_err(|e| ApiError::new(400, "invalid paging", e))?;
    params.push(page.limit().into());
    params.push(page.offset().into());
    let n = params.len();
    let rows: Vec<Entry> = db.query(&format!("{select} LIMIT ${} OFFSET ${n}", n - 1), &params)?;
    let items: Vec<Json> = rows.into_iter().map(Entry::json).collect();
    Ok(Reply::json(200, Page::new(items, page, total as u64)))
}
