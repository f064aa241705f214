//! The outbox: consumes what other services hand off through the queue
//! and keeps it where administrators can read it.
//!
//! - `email.send` {to, subject, body} → the host's SMTP server when
//!   runtime-config `[mail]` names one, else, with the `dev_mailbox`
//!   variable on, `outbox_mail` (the dev mailbox, for local use and tests);
//! - `user.registered` → a welcome mail, the same way;
//! - `audit` {action, actor, target, outcome, requestId, client, at,
//!   detail} → `outbox_audit`;
//! - `usage.recorded` {userId, credentialId, model, promptTokens,
//!   completionTokens, doneReason, at} → `outbox_usage`.
//!
//! Each row is keyed by the queue message id, so a redelivery has no second
//! effect. Administrators search the audit log ([`audit_log`],
//! `/api/admin/audit`) and sum usage ([`usage_stats`], `/api/admin/usage`;
//! every account its own at `/api/usage/me`). Raw listings (spin.toml
//! allows the `Admin` role only):
//! `GET /api/outbox/mail?to=ADDRESS&limit=N`,
//! `GET /api/outbox/audit?userId=ID&limit=N` and
//! `GET /api/outbox/usage?userId=ID&limit=N`, newest first.

mod audit_log;
mod report;
mod usage_stats;

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Reply, decode_query, finish, now, serialize_secs};
use lamina_sdk::router::{Miss, Params, Router};
use lamina_sdk::sql::{Database, Sql, Value};
use serde::{Deserialize, Serialize};
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

use lamina_sdk::worker::{Guest as QueueHandler, Message};

struct Outbox;

/// The outbox's own database (spin.toml grants it to this component only).
const DATABASE: &str = "outbox";

#[derive(Deserialize)]
struct Mail {
    to: String,
    subject: String,
    body: String,
}

#[derive(Deserialize)]
struct Registered {
    username: String,
    email: String,
}

/// An `audit` message (messages published before the log had its own
/// fields name the action `event` and the actor `userId`).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AuditEvent {
    #[serde(alias = "event")]
    action: String,
    #[serde(alias = "userId")]
    actor: Option<String>,
    #[serde(default)]
    target: Option<String>,
    #[serde(default)]
    outcome: Option<String>,
    #[serde(default)]
    request_id: Option<String>,
    #[serde(default)]
    client: Option<String>,
    at: i64,
    #[serde(default)]
    detail: serde_json::Value,
}

/// Read from `usage.recorded`, and sent back in camelCase.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Usage {
    user_id: Option<String>,
    credential_id: Option<String>,
    model: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    /// How a generation ended (`stop`, `length`, `cancelled`); none for
    /// embeddings.
    #[serde(default)]
    done_reason: Option<String>,
    /// `api-key` or `session`.
    #[serde(default, skip_serializing)]
    credential_type: Option<String>,
    at: i64,
}

/// A row of `outbox_usage`.
#[derive(Serialize, Deserialize)]
#[serde(rename_all(serialize = "camelCase"))]
struct UsageRow {
    id: String,
    user_id: Option<String>,
    credential_id: Option<String>,
    model: String,
    prompt_tokens: i64,
    completion_tokens: i64,
    done_reason: Option<String>,
    #[serde(serialize_with = "serialize_secs")]
    at: i64,
}

impl QueueHandler for Outbox {
    fn handle(message: Message) -> Result<(), String> {
        let db = Database::open(DATABASE).map_err(|e| format!("{e:?}"))?;
        let parse_error = |e: serde_json::Error| format!("{}: bad payload: {e}", message.topic);
        match message.topic.as_str() {
            "email.send" => {
                let mail: Mail = serde_json::from_slice(&message.payload).map_err(parse_error)?;
                deliver(&db, &message.id, &mail)
            }
            "user.registered" => {
                let user: Registered =
                    serde_json::from_slice(&message.payload).map_err(parse_error)?;
                let welcome = Mail {
                    to: user.email,
                    subject: "Welcome to Lamina".to_owned(),
                    body: format!(
                        "Hello {},\n\nyour Lamina account is ready.\n",
                        user.username
                    ),
                };
                deliver(&db, &message.id, &welcome)
            }
            "audit" => {
                let event: AuditEvent =
                    serde_json::from_slice(&message.payload).map_err(parse_error)?;
                let detail = match event.detail {
                    serde_json::Value::Null => "{}".to_owned(),
                    detail => detail.to_string(),
                };
                insert(
                    &db,
                    "INSERT INTO outbox_audit (id, event, user_id, detail, at, action, actor, target, \
                     outcome, request_id, client) VALUES ($1, $2, $3, $4, $5, $2, $3, $6, $7, $8, $9)",
                    vec![
                        message.id.as_str().into(),
                        event.action.into(),
                        event.actor.into(),
                        detail.into(),
                        event.at.into(),
                        event.target.into(),
                        event.outcome.unwrap_or_else(|| "success".to_owned()).into(),
                        event.request_id.into(),
                        event.client.into(),
                    ],
                )
            }
            "usage.recorded" => {
                let usage: Usage = serde_json::from_slice(&message.payload).map_err(parse_error)?;
                insert(
                    &db,
                    "INSERT INTO outbox_usage (id, user_id, credential_id, model, prompt_tokens, completion_tokens, done_reason, at, credential_type) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    vec![
                        message.id.as_str().into(),
                        usage.user_id.into(),
                        usage.credential_id.into(),
                        usage.model.into(),
                        usage.prompt_tokens.into(),
                        usage.completion_tokens.into(),
                        usage.done_reason.into(),
                        usage.at.into(),
                        usage.credential_type.into(),
                    ],
                )
            }
            other => Err(format!("the outbox does not handle topic {other}")),
        }
    }
}

/// Sends `mail` through the host's mail server if it has one (a failure
/// is retried by the queue; a message the server took is recorded, so a
/// redelivery is not sent twice). Without a server the mail is kept in the
/// dev mailbox when `dev_mailbox` is on (local use and tests; it holds
/// reset links, so it is off in production), else it cannot be delivered
/// and fails (retried, then dead-lettered for the operator).
fn deliver(db: &Database, id: &str, mail: &Mail) -> Result<(), String> {
    if lamina_sdk::mail::configured() {
        let sent: Option<serde_json::Value> = db
            .query_one("SELECT id FROM outbox_sent WHERE id = $1", &[id.into()])
            .map_err(|e| format!("{e:?}"))?;
        if sent.is_some() {
            return Ok(());
        }
        lamina_sdk::mail::send(&lamina_sdk::mail::Message {
            to: mail.to.clone(),
            subject: mail.subject.clone(),
            body: mail.body.clone(),
        })
        .map_err(|e| format!("{e:?}"))?;
        return insert(
            db,
            "INSERT INTO outbox_sent (id, sent_at) VALUES ($1, $2)",
            vec![id.into(), now().into()],
        );
    }
    if dev_mailbox() {
        eprintln!(
            "WARNING: DEV MAILBOX: mail to {} is kept in outbox_mail, readable by administrators \
             (reset links included); never turn dev_mailbox on in production",
            mail.to
        );
        return store_mail(db, id, mail);
    }
    Err("no mail server is configured (runtime-config [mail]) and dev_mailbox is off".to_owned())
}

/// Whether the `dev_mailbox` variable is on: a development mode, off by
/// default, in which mail is kept for administrators to read instead of sent.
fn dev_mailbox() -> bool {
    lamina_sdk::variables::get("dev_mailbox").is_ok_and(|v| v == "true")
}

fn store_mail(db: &Database, id: &str, mail: &Mail) -> Result<(), String> {
    insert(
        db,
        "INSERT INTO outbox_mail (id, recipient, subject, body, created_at) VALUES ($1, $2, $3, $4, $5)",
        vec![
            id.into(),
            mail.to.trim().to_ascii_lowercase().into(),
            mail.subject.as_str().into(),
            mail.body.as_str().into(),
            now().into(),
        ],
    )
}

/// Inserts a row keyed by message id; a redelivered message is already in.
fn insert(db: &Database, sql: &str, params: Vec<Value>) -> Result<(), String> {
    match db.execute(sql, &params) {
        Ok(_) | Err(lamina_sdk::sql::Error::UniqueViolation(_)) => Ok(()),
        Err(e) => Err(format!("{e:?}")),
    }
}

/// A report's handler.
type Report = fn(&Request, &Params) -> Result<Reply, ApiError>;

impl wasip2::exports::http::incoming_handler::Guest for Outbox {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let full = request.path_with_query();
        let path = full.split('?').next().unwrap_or_default();
        let method = request.method();
        let report: Router<Report> = Router::new([
            (
                "GET",
                "/api/admin/audit",
                (|r, _| audit_log::search(r)) as Report,
            ),
            ("GET", "/api/admin/usage", |r, _| usage_stats::report(r)),
            ("GET", "/api/admin/users/{id}/usage", |r, p| {
                usage_stats::of_user(r, p.get("id").unwrap_or_default())
            }),
            ("GET", "/api/usage/me", |r, _| usage_stats::mine(r)),
        ]);
        let result = match report.find(&method, path) {
            Ok((handler, params)) => handler(&request, &params),
            Err(Miss::NotFound) => route(&request),
            Err(miss) => Err(miss.to_api_error(&method, path)),
        };
        finish(out, result);
    }
}

/// Read by column name, sent in camelCase.
#[derive(Serialize, Deserialize)]
#[serde(rename_all(serialize = "camelCase"))]
struct MailRow {
    id: String,
    recipient: String,
    subject: String,
    body: String,
    #[serde(serialize_with = "serialize_secs")]
    created_at: i64,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all(serialize = "camelCase"))]
struct AuditRow {
    id: String,
    event: String,
    user_id: Option<String>,
    detail: String,
    #[serde(serialize_with = "serialize_secs")]
    at: i64,
}

/// The administrators' listings (`?limit=N`, a filter), newest first.
fn route(request: &Request) -> Result<Reply, ApiError> {
    type Handler = fn(&Database, &Listing) -> Result<Reply, ApiError>;
    let router: Router<Handler> = Router::new([
        ("GET", "/api/outbox/mail", mail as Handler),
        ("GET", "/api/outbox/audit", audit),
        ("GET", "/api/outbox/usage", usage),
    ]);
    let full = request.path_with_query();
    let path = full
        .split('?')
        .next()
        .unwrap_or_default()
        .trim_end_matches('/');
    let method = request.method();
    let (handler, _) = router
        .find(&method, path)
        .map_err(|miss| miss.to_api_error(&method, path))?;
    let limit: i64 = match request.query("limit") {
        Some(n) => n
            .parse()
            .ok()
            .filter(|n| (1..=500).contains(n))
            .ok_or_else(|| ApiError::new(400, "invalid limit", "limit must be 1–500"))?,
        None => 100,
    };
    handler(&Database::open(DATABASE)?, &Listing { request, limit })
}

/// What a listing asks for: a `limit`, and `?name=` filters.
struct Listing<'r> {
    request: &'r Request,
    limit: i64,
}

impl Listing<'_> {
    /// A filter's value, decoded; none if empty or over 254 bytes.
    fn filter(&self, name: &str) -> Option<String> {
        self.request
            .query(name)
            .map(|v| decode_query(&v))
            .filter(|v| !v.is_empty() && v.len() <= 254)
    }
}

/// `GET /api/outbox/mail?to=`: the dev mailbox, while the mode is on (mail
/// kept while it was on stays unreadable once it is off).
fn mail(db: &Database, listing: &Listing) -> Result<Reply, ApiError> {
    if !dev_mailbox() {
        return Err(ApiError::not_found(
            "the dev mailbox is off (it is a development mode: dev_mailbox)",
        ));
    }
    let to = listing.filter("to").map(|t| t.to_ascii_lowercase());
    let rows: Vec<MailRow> = filtered(
        db,
        "SELECT id, recipient, subject, body, created_at FROM outbox_mail",
        ("recipient", to),
        "created_at DESC, id",
        listing.limit,
    )?;
    Ok(Reply::json(200, rows))
}

/// `GET /api/outbox/audit?userId=`.
fn audit(db: &Database, listing: &Listing) -> Result<Reply, ApiError> {
    let rows: Vec<AuditRow> = filtered(
        db,
        "SELECT id, event, user_id, detail, at FROM outbox_audit",
        ("user_id", listing.filter("userId")),
        "at DESC, id",
        listing.limit,
    )?;
    Ok(Reply::json(200, rows))
}

/// `GET /api/outbox/usage?userId=`.
fn usage(db: &Database, listing: &Listing) -> Result<Reply, ApiError> {
    let rows: Vec<UsageRow> = filtered(
        db,
        "SELECT id, user_id, credential_id, model, prompt_tokens, completion_tokens, done_reason, at FROM outbox_usage",
        ("user_id", listing.filter("userId")),
        "at DESC, id",
        listing.limit,
    )?;
    Ok(Reply::json(200, rows))
}

/// `select`, with `WHERE column = value` when there is a value, ordered,
/// at most `limit` rows.
fn filtered<T: serde::de::DeserializeOwned>(
    db: &Database,
    select: &str,
    (column, value): (&str, Option<String>),
    order: &str,
    limit: i64,
) -> Result<Vec<T>, ApiError> {
    Ok(match value {
        Some(value) => db.query(
            &format!("{select} WHERE {column} = $1 ORDER BY {order} LIMIT $2"),
            &[value.into(), limit.into()],
        )?,
        None => db.query(
            &format!("{select} ORDER BY {order} LIMIT $1"),
            &[limit.into()],
        )?,
    })
}

wasip2::http::proxy::export!(Outbox);
lamina_sdk::worker::export_queue_handler!(Outbox);
