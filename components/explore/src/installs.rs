//! Installing and removing model files, for administrators.
//!
//! - `GET /api/admin/models`: what the store holds, each marked
//!   catalogued or not.
//! - `POST /api/admin/models/{name}/install` `{source?, sha256?}` → 202
//!   with the install record: the host's pull (resumable, verified), from
//!   the body's source, else the entry's `sourceUrl`/`sha256`, else the
//!   source runtime-config registers for the name.
//! - `GET /api/admin/pulls[/{id}]`, `GET /api/admin/pulls/{id}/events`
//!   (SSE: `progress` while it runs, then `done`, `failed` or
//!   `cancelled`), `POST /api/admin/pulls/{id}/cancel`.
//! - `DELETE /api/admin/models/{name}/files`: 409 while generations run
//!   on it.
//!
//! The service keeps its own record of each install and follows it to its
//! end with delayed `explore.install` messages, so the outcome outlives
//! the host's ten-minute memory of finished pulls.

use std::collections::HashSet;
use std::time::Duration;

use lamina_sdk::api::{ApiError, Reply, now_ms, read_body, timestamp};
use lamina_sdk::inference::{self, PullProgress, PullState};
use lamina_sdk::page::Page;
use lamina_sdk::queue;
use lamina_sdk::sql::{Database, Sql, Value};
use lamina_sdk::sse::EventStream;
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::admin::path_name;
use crate::catalog::{cards, page_request};
use crate::live::{Installed, Live};
use crate::{Ctx, DATABASE, Streamer, entry, events, require_admin};

/// How often a progress stream looks at the pull.
const POLL: Duration = Duration::from_millis(250);
/// A comment line after this much quiet keeps proxies from closing it.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often the background follower looks at a running install.
const FOLLOW_EVERY: Duration = Duration::from_secs(2);
/// An unfinished install no host has known for this long is lost (its
/// host is gone for good).
const LOST_AFTER_MS: i64 = 15 * 60 * 1000;

/// An install, as the service records it.
#[derive(Debug, Clone, Deserialize)]
struct Row {
    id: String,
    name: String,
    source: Option<String>,
    state: String,
    completed: i64,
    total: Option<i64>,
    error: Option<String>,
    requested_by: String,
    started_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

const COLUMNS: &str = "id, name, source, state, completed, total, error, requested_by, \
                       started_at, updated_at, finished_at";

/// An install as the API shows it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct Install {
    id: String,
    name: String,
    source: Option<String>,
    /// queued, downloading, verifying, done, failed or cancelled.
    state: String,
    completed: i64,
    total: Option<i64>,
    error: Option<String>,
    requested_by: String,
    started_at: String,
    updated_at: String,
    finished_at: Option<String>,
}

impl From<&Row> for Install {
    fn from(r: &Row) -> Install {
        Install {
            id: r.id.clone(),
            name: r.name.clone(),
            source: r.source.clone(),
            state: r.state.clone(),
            completed: r.completed,
            total: r.total,
            error: r.error.clone(),
            requested_by: r.requested_by.clone(),
            started_at: timestamp(r.started_at),
            updated_at: timestamp(r.updated_at),
            finished_at: r.finished_at.map(timestamp),
        }
    }
}

fn state_name(state: PullState) -> &'static str {
    match state {
        PullState::Queued => "queued",
        PullState::Downloading => "downloading",
        PullState::Verifying => "verifying",
        PullState::Done => "done",
        PullState::Failed => "failed",
        PullState::Cancelled => "cancelled",
    }
}

fn engine_error(e: inference::Error) -> ApiError {
    ApiError::new(e.status(), "model store", e.detail())
}

/// `GET /api/admin/models`: the store's models, catalogued or not.
pub fn installed(ctx: &Ctx) -> Result<Reply, ApiError> {
    require_admin(ctx)?;
    let catalogued: HashSet<String> = cards(&ctx.db)?.into_iter().map(|c| c.name).collect();
    let live = Live::read()?;
    let mut items: Vec<_> = live
        .installed
        .values()
        .map(|m| {
            json!({
                "name": m.name,
                "catalogued": catalogued.contains(&m.name),
                "loaded": live.loaded.contains_key(&m.name),
                "store": Installed::from(m),
            })
        })
        .collect();
    items.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(Reply::json(200, json!({"items": items})))
}

#[derive(Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct InstallBody {
    source: Option<String>,
    sha256: Option<String>,
}

/// `POST /api/admin/models/{name}/install` → 202.
pub fn install(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let name = path_name(ctx)?;
    let raw = read_body(ctx.request, 4096)?;
    let body: InstallBody = if raw.iter().all(u8::is_ascii_whitespace) {
        InstallBody::default()
    } else {
        serde_json::from_slice(&raw).map_err(ApiError::bad_body)?
    };
    if body.source.as_ref().is_some_and(|s| s.len() > 500) {
        return Err(ApiError::new(
            400,
            "invalid source",
            "source: at most 500 characters",
        ));
    }
    let catalogued = match entry::load(&ctx.db, &name) {
        Ok(entry) => Some(entry),
        Err(e) if e.status == 404 => None,
        Err(e) => return Err(e),
    };
    let source = body
        .source
        .or_else(|| catalogued.as_ref().and_then(|e| e.source_url.clone()));
    // The entry's digest is for the entry's source only.
    let sha256 = match (
        &body.sha256,
        source == catalogued.as_ref().and_then(|e| e.source_url.clone()),
    ) {
        (Some(sha), _) => Some(sha.clone()),
        (None, true) => catalogued.as_ref().and_then(|e| e.sha256.clone()),
        (None, false) => None,
    };
    let id =
        inference::pull_model(&name, source.as_deref(), sha256.as_deref()).map_err(engine_error)?;
    let now = now_ms();
    // Pulling what is already being pulled joins that pull: one record.
    let recorded = ctx.db.execute(
        "INSERT INTO explore_installs (id, name, source, state, completed, requested_by, started_at, updated_at) \
         VALUES ($1, $2, $3, 'queued', 0, $4, $5, $5) ON CONFLICT (id) DO NOTHING",
        &[
            id.as_str().into(),
            name.as_str().into(),
            entry::text(&source),
            caller.user_id.as_str().into(),
            now.into(),
        ],
    )?;
    // One follower per install, however many requests joined it.
    if recorded == 1 {
        follow_later(&id);
    }
    events::changed(
        ctx.request,
        caller,
        "install.started",
        json!({"model": name, "pull": id, "source": source}),
    );
    let row = refresh(&ctx.db, load(&ctx.db, &id)?)?;
    Ok(Reply::json(202, Install::from(&row)).header("location", format!("/api/admin/pulls/{id}")))
}

fn load(db: &impl Sql, id: &str) -> Result<Row, ApiError> {
    db.query_one(
        &format!("SELECT {COLUMNS} FROM explore_installs WHERE id = $1"),
        &[id.into()],
    )?
    .ok_or_else(|| ApiError::not_found(format!("no install {id}")))
}

/// Brings `row` up to date with the host's pull, and records the change.
/// An install that has just finished well announces `model.installed`.
fn refresh(db: &Database, row: Row) -> Result<Row, ApiError> {
    if row.finished_at.is_some() {
        return Ok(row);
    }
    let now = now_ms();
    let progress = match inference::pull_status(&row.id) {
        Ok(progress) => progress,
        Err(error) => {
            // Another host runs it, or this one restarts it: as last
            // recorded (by whichever host last saw it).
            let row = load(db, &row.id)?;
            match error {
                inference::Error::NoSuchModel(_)
                    if row.finished_at.is_none() && now - row.updated_at > LOST_AFTER_MS =>
                {
                    lost(&row)
                }
                _ => return Ok(row),
            }
        }
    };
    let state = state_name(progress.state);
    let finished = matches!(
        progress.state,
        PullState::Done | PullState::Failed | PullState::Cancelled
    );
    let error = progress.error.as_ref().map(|e| e.detail().to_owned());
    let same = row.state == state
        && row.completed == progress.completed as i64
        && row.total == progress.total.map(|t| t as i64);
    // `updated_at` says when a host last saw the pull: rewritten when
    // anything changed, else at most every few seconds.
    if same && !finished && now - row.updated_at < 5_000 {
        return Ok(row);
    }
    let changed = db.execute(
        "UPDATE explore_installs SET state = $1, completed = $2, total = $3, error = $4, \
         updated_at = $5, finished_at = $6 WHERE id = $7 AND finished_at IS NULL",
        &[
            state.into(),
            (progress.completed as i64).into(),
            entry::int(progress.total.map(|t| t as i64)),
            entry::text(&error),
            now.into(),
            entry::int(finished.then_some(now)),
            row.id.as_str().into(),
        ],
    )?;
    if changed == 1 && progress.state == PullState::Done {
        if let Err(e) = crate::cached::invalidate() {
            eprintln!("{e}");
        }
        events::publish_change(
            "model.installed",
            &row.requested_by,
            json!({"model": row.name, "pull": row.id}),
        );
    }
    load(db, &row.id)
}

/// What a pull no host knows any more is taken to be: failed.
fn lost(row: &Row) -> PullProgress {
    PullProgress {
        id: row.id.clone(),
        name: row.name.clone(),
        state: PullState::Failed,
        completed: row.completed as u64,
        total: row.total.map(|t| t as u64),
        error: Some(inference::Error::Unavailable(
            "no host knows this pull any more: the host running it stopped for good".into(),
        )),
        model: None,
    }
}

/// Schedules a look at install `id` in [`FOLLOW_EVERY`].
fn follow_later(id: &str) {
    let payload = json!({"id": id}).to_string();
    if let Err(e) = queue::publish_with(
        "explore.install",
        payload.as_bytes(),
        None,
        Some(FOLLOW_EVERY),
    ) {
        eprintln!("install {id} is not followed in the background: {e:?}");
    }
}

/// `explore.install` `{id}`: refreshes the record; while the install runs,
/// looks again later.
pub fn follow(payload: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    struct Follow {
        id: String,
    }
    let Ok(follow) = serde_json::from_slice::<Follow>(payload) else {
        return Ok(());
    };
    let db = Database::open(DATABASE).map_err(|e| format!("{e:?}"))?;
    let row = match load(&db, &follow.id) {
        Ok(row) => row,
        Err(_) => return Ok(()),
    };
    let row = refresh(&db, row).map_err(|e| e.detail)?;
    if row.finished_at.is_none() {
        follow_later(&row.id);
    }
    Ok(())
}

/// `GET /api/admin/pulls/{id}`.
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    require_admin(ctx)?;
    let row = refresh(&ctx.db, load(&ctx.db, &ctx.param("id"))?)?;
    Ok(Reply::json(200, Install::from(&row)))
}

/// `GET /api/admin/pulls?page=&pageSize=`: newest first.
pub fn list(ctx: &Ctx) -> Result<Reply, ApiError> {
    require_admin(ctx)?;
    let request = page_request(ctx)?;
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let total: Option<Count> = ctx
        .db
        .query_one("SELECT COUNT(*) AS n FROM explore_installs", &[])?;
    let rows: Vec<Row> = ctx.db.query(
        &format!(
            "SELECT {COLUMNS} FROM explore_installs ORDER BY started_at DESC, id LIMIT $1 OFFSET $2"
        ),
        &[Value::from(request.limit()), Value::from(request.offset())],
    )?;
    let items = rows
        .into_iter()
        .map(|row| refresh(&ctx.db, row).map(|r| Install::from(&r)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Reply::json(
        200,
        Page::new(items, request, total.map_or(0, |c| c.n) as u64),
    ))
}

/// `GET /api/admin/pulls/{id}/events`: the install's progress as Server-
/// Sent Events, to its end.
pub fn events<'a>(ctx: &'a Ctx<'a>) -> Result<Streamer<'a>, ApiError> {
    require_admin(ctx)?;
    let first = refresh(&ctx.db, load(&ctx.db, &ctx.param("id"))?)?;
    Ok(Box::new(move |out| {
        let mut stream = EventStream::start(out);
        let mut row = first;
        let mut sent: Option<(String, i64)> = None;
        let mut quiet = Duration::ZERO;
        loop {
            let now = (row.state.clone(), row.completed);
            if sent.as_ref() != Some(&now) {
                let name = if row.finished_at.is_some() {
                    row.state.as_str()
                } else {
                    "progress"
                };
                if !stream.event(name, &json!(Install::from(&row))) {
                    return;
                }
                sent = Some(now);
                quiet = Duration::ZERO;
            } else if quiet >= HEARTBEAT {
                if !stream.heartbeat() {
                    return;
                }
                quiet = Duration::ZERO;
            }
            if row.finished_at.is_some() {
                break;
            }
            lamina_sdk::sleep(POLL);
            quiet += POLL;
            row = match refresh(&ctx.db, row.clone()) {
                Ok(row) => row,
                Err(e) => {
                    stream.event("error", &json!({"detail": e.detail}));
                    break;
                }
            };
        }
        stream.finish();
    }))
}

/// `POST /api/admin/pulls/{id}/cancel`: 200 with the cancelled install,
/// 409 if it already ended (or is verifying, and will finish).
pub fn cancel(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let row = refresh(&ctx.db, load(&ctx.db, &ctx.param("id"))?)?;
    if row.finished_at.is_some() {
        return Err(ended(&row));
    }
    let running = inference::cancel_pull(&row.id).map_err(engine_error)?;
    let row = refresh(&ctx.db, row)?;
    if !running {
        return Err(ended(&row));
    }
    events::changed(
        ctx.request,
        caller,
        "install.cancelled",
        json!({"model": row.name, "pull": row.id}),
    );
    Ok(Reply::json(200, Install::from(&row)))
}

fn ended(row: &Row) -> ApiError {
    ApiError::new(
        409,
        "install ended",
        format!("install {} already ended: {}", row.id, row.state),
    )
}

/// `DELETE /api/admin/models/{name}/files` → 204; 404 if not installed,
/// 409 while in use.
pub fn remove_files(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let name = path_name(ctx)?;
    inference::remove_model(&name).map_err(engine_error)?;
    events::changed(ctx.request, caller, "model.removed", json!({"model": name}));
    Ok(Reply::no_content())
}
