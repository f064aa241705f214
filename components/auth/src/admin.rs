//! `/api/admin/users`: accounts as administrators see and manage them.
//!
//! - `GET /api/admin/users?q=&role=&status=&page=&pageSize=` and
//!   `GET /api/admin/users/{id}`;
//! - `POST`/`DELETE /api/admin/users/{id}/roles/{role}`;
//! - `POST /api/admin/users/{id}/lock` `{minutes}` (1–43 200) and
//!   `/unlock`, `/deactivate` and `/activate`, `DELETE` (soft) and
//!   `/restore`, `DELETE ?hard=true` (the account goes and `user.deleted`
//!   tells every service holding its data), `/sessions/revoke`.
//!
//! Locking, deactivating and deleting end the account's sessions and
//! disable its credentials on every host at once (JWTs, refresh tokens,
//! API keys: the host's disabled subjects); unlocking, activating and
//! restoring lift that. A lock lifts itself at its end (a delayed
//! `auth.lock-ended` message). No administrator may do any of this to
//! themselves, take their own Admin role, or leave no active
//! administrator (409). Every action is audited.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Caller, Reply, now, read_json, timestamp_secs};
use lamina_sdk::page::{Page, PageRequest};
use lamina_sdk::sql::{Database, Sql, Value, like_escape};
use lamina_sdk::{limits, queue, tokens};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::users::{self, ADMIN, USER, User};
use crate::{BODY_LIMIT, DATABASE, api_keys, events, roles, sessions};

/// Longest lock, in minutes (30 days).
const MAX_LOCK_MINUTES: i64 = 43_200;

/// The caller, if an administrator: 401/403 otherwise (the gateway's
/// `roles` refuses them first).
pub fn administrator(request: &Request) -> Result<Caller, ApiError> {
    Caller::with_role(request, ADMIN)
}

/// `active`, `locked`, `deactivated` or `deleted`.
fn status(user: &User, now: i64) -> &'static str {
    if user.deleted_at.is_some() {
        "deleted"
    } else if !user.active {
        "deactivated"
    } else if user.locked_until.is_some_and(|t| t > now) {
        "locked"
    } else {
        "active"
    }
}

/// What administrators see of an account.
fn view(user: &User) -> Json {
    let now = now();
    let mut json = user.public();
    json["status"] = status(user, now).into();
    json["lockedUntil"] = user
        .locked_until
        .filter(|t| *t > now)
        .map(timestamp_secs)
        .into();
    json["deletedAt"] = user.deleted_at.map(timestamp_secs).into();
    json
}

/// `GET /api/admin/users`.
pub fn list(request: &Request) -> Result<Reply, ApiError> {
    administrator(request)?;
    let query = |key: &str| {
        request
            .query(key)
            .map(|v| lamina_sdk::api::decode_query(&v))
    };
    let page = PageRequest::parse(query("page").as_deref(), query("pageSize").as_deref())
        .map_err(|e| ApiError::new(400, "invalid paging", e))?;
    let now = now();
    let mut conditions = Vec::new();
    let mut params: Vec<Value> = Vec::new();
    if let Some(q) = query("q").filter(|q| !q.trim().is_empty()) {
        if q.chars().count() > 100 {
            return Err(ApiError::new(
                400,
                "invalid filter",
                "q: at most 100 characters",
            ));
        }
        // A substring of the name or address, with LIKE's wildcards taken
        // literally.
        let escaped = like_escape(&q.trim().to_lowercase());
        let p = bind(&mut params, format!("%{escaped}%").into());
        conditions.push(format!(
            "(username_key LIKE {p} ESCAPE '\\' OR email LIKE {p} ESCAPE '\\')"
        ));
    }
    if let Some(role) = query("role") {
        let db = Database::open(DATABASE)?;
        let role = roles::find(&db, &role)?.ok_or_else(|| {
            ApiError::new(400, "invalid filter", format!("role: no role `{role}`"))
        })?;
        let p = bind(&mut params, roles::holding(&role).into());
        conditions.push(format!("(',' || roles || ',') LIKE {p} ESCAPE '\\'"));
    }
    match query("status").as_deref() {
        None => {}
        Some("active") => {
            let p = bind(&mut params, now.into());
            conditions.push(format!(
                "deleted_at IS NULL AND active AND (locked_until IS NULL OR locked_until <= {p})"
            ));
        }
        Some("locked") => {
            let p = bind(&mut params, now.into());
            conditions.push(format!(
                "deleted_at IS NULL AND active AND locked_until > {p}"
            ));
        }
        Some("deactivated") => conditions.push("deleted_at IS NULL AND NOT active".into()),
        Some("deleted") => conditions.push("deleted_at IS NOT NULL".into()),
        Some(_) => {
            return Err(ApiError::new(
                400,
                "invalid filter",
                "status: active, locked, deactivated or deleted",
            ));
        }
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", conditions.join(" AND "))
    };
    let db = Database::open(DATABASE)?;
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let total: Option<Count> = db.query_one(
        &format!("SELECT COUNT(*) AS n FROM auth_users {filter}"),
        &params,
    )?;
    let (limit, offset) = (
        bind(&mut params, page.limit().into()),
        bind(&mut params, page.offset().into()),
    );
    let rows: Vec<User> = db.query(
        &format!(
            "SELECT {} FROM auth_users {filter} ORDER BY username_key LIMIT {limit} OFFSET {offset}",
            users::COLUMNS
        ),
        &params,
    )?;
    let items: Vec<Json> = rows.iter().map(view).collect();
    Ok(Reply::json(
        200,
        Page::new(items, page, total.map_or(0, |c| c.n) as u64),
    ))
}

/// Adds a statement parameter; returns its placeholder.
fn bind(params: &mut Vec<Value>, value: Value) -> String {
    params.push(value);
    format!("${}", params.len())
}

/// The account `id` (deleted ones too), or 404.
pub fn target(db: &Database, id: &str) -> Result<User, ApiError> {
    users::by_id(db, id)?.ok_or_else(|| ApiError::not_found(format!("no user {id}")))
}

/// `GET /api/admin/users/{id}`.
pub fn get(request: &Request, id: &str) -> Result<Reply, ApiError> {
    administrator(request)?;
    let db = Database::open(DATABASE)?;
    let user = target(&db, id)?;
    let mut json = view(&user);
    let scope = limits::Scope::User(user.id.clone());
    json["budget"] =
        limits::get_budget(&scope)?.map_or(Json::Null, |status| limits::status_json(&status));
    json["models"] = limits::get_models(&scope)?.map_or(Json::Null, Json::from);
    Ok(Reply::json(200, json))
}

/// 409 unless `caller` acts on someone else.
fn not_self(caller: &Caller, user: &User, what: &str) -> Result<(), ApiError> {
    if caller.user_id == user.id {
        Err(ApiError::new(
            409,
            "not on yourself",
            format!("administrators cannot {what} themselves"),
        ))
    } else {
        Ok(())
    }
}

/// 409 if `user` is the last active administrator (taking their role or
/// their access would leave none). Run it in the transaction that makes
/// the change, after [`serialize_admin_changes`].
pub fn not_last_admin(db: &impl Sql, user: &User) -> Result<(), ApiError> {
    if !user.roles().iter().any(|r| r == ADMIN) {
        return Ok(());
    }
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let others: Option<Count> = db.query_one(
        "SELECT COUNT(*) AS n FROM auth_users WHERE id <> $1 AND (',' || roles || ',') LIKE $2 \
         ESCAPE '\\' AND active AND deleted_at IS NULL AND (locked_until IS NULL OR locked_until <= $3)",
        &[
            user.id.as_str().into(),
            format!("%,{ADMIN},%").into(),
            now().into(),
        ],
    )?;
    if others.is_some_and(|c| c.n > 0) {
        Ok(())
    } else {
        Err(ApiError::new(
            409,
            "last administrator",
            "this would leave no active administrator",
        ))
    }
}

/// Makes concurrent changes that could remove an administrator wait for
/// each other (a write on the Admin role's row: a row lock on
/// PostgreSQL, the write lock on SQLite), so two administrators cutting
/// each other off at once cannot both pass [`not_last_admin`].
pub fn serialize_admin_changes(tx: &impl Sql) -> Result<(), ApiError> {
    tx.execute(
        "UPDATE auth_roles SET builtin = builtin WHERE name = $1",
        &[ADMIN.into()],
    )?;
    Ok(())
}

/// Tells the host the account's roles are now `roles` (its API keys carry
/// them); a removal also ends the sessions whose tokens still carry it.
/// Done after the account's row changed; a retry of the same change
/// announces again.
fn announce_roles(
    db: &Database,
    user: &User,
    roles: &[String],
    removed: bool,
) -> Result<(), ApiError> {
    if removed {
        sessions::revoke_all(db, &user.id)?;
    }
    let mut updated = user.clone();
    updated.roles = roles.join(",");
    tokens::update_subject(&users::subject(&updated))?;
    Ok(())
}

/// Writes the account's roles.
fn store_roles(db: &impl Sql, user: &User, roles: &[String]) -> Result<(), ApiError> {
    db.execute(
        "UPDATE auth_users SET roles = $1, updated_at = $2 WHERE id = $3",
        &[
            roles.join(",").into(),
            now().into(),
            user.id.as_str().into(),
        ],
    )?;
    Ok(())
}

/// `POST /api/admin/users/{id}/roles/{role}`: the account gains `role`.
pub fn add_role(request: &Request, id: &str, role: &str) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let db = Database::open(DATABASE)?;
    let user = target(&db, id)?;
    let role =
        roles::find(&db, role)?.ok_or_else(|| ApiError::not_found(format!("no role `{role}`")))?;
    let mut held = user.roles();
    let new = !held.contains(&role);
    if new {
        held.push(role.clone());
        store_roles(&db, &user, &held)?;
    }
    // Also when it was held already: a retry after a failed announcement.
    announce_roles(&db, &user, &held, false)?;
    if new {
        events::audit(
            request,
            "admin.user.role_added",
            Some(&caller.user_id),
            json!({"target": user.id, "role": role}),
        );
    }
    Ok(Reply::json(200, view(&target(&db, id)?)))
}

/// `DELETE /api/admin/users/{id}/roles/{role}`: the account loses `role`
/// (not `User`, which every account has).
pub fn remove_role(request: &Request, id: &str, role: &str) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let db = Database::open(DATABASE)?;
    let user = target(&db, id)?;
    let mut held = user.roles();
    let Some(position) = held.iter().position(|r| r.eq_ignore_ascii_case(role)) else {
        // Perhaps a retry after a failed announcement: the host learns
        // the account's roles as they are.
        announce_roles(&db, &user, &held, false)?;
        return Err(ApiError::not_found(format!(
            "the user has no role `{role}`"
        )));
    };
    let role = held.remove(position);
    if role == USER {
        return Err(ApiError::new(
            409,
            "built-in role",
            "every account has the User role",
        ));
    }
    if role == ADMIN {
        not_self(&caller, &user, "take the Admin role from")?;
    }
    db.transaction(|tx| {
        if role == ADMIN {
            serialize_admin_changes(tx)?;
            not_last_admin(tx, &user)?;
        }
        store_roles(tx, &user, &held)
    })?;
    announce_roles(&db, &user, &held, true)?;
    events::audit(
        request,
        "admin.user.role_removed",
        Some(&caller.user_id),
        json!({"target": user.id, "role": role}),
    );
    Ok(Reply::json(200, view(&target(&db, id)?)))
}

/// Ends every session and disables every credential of `user` on every
/// host. Called once the account's row says why, so a concurrent
/// [`lift`] that read it before sees the new state when it checks again.
fn cut_off(db: &Database, user: &User) -> Result<(), ApiError> {
    tokens::disable_subject(&user.id)?;
    sessions::revoke_all(db, &user.id)
}

/// Enables the account's credentials again if nothing holds it back
/// (locked, deactivated, deleted); reads the account again afterwards and
/// disables them once more if a change made meanwhile says so.
fn lift(db: &Database, id: &str) -> Result<User, ApiError> {
    let user = target(db, id)?;
    if !user.may_sign_in(now()) {
        return Ok(user);
    }
    tokens::enable_subject(&user.id)?;
    let again = target(db, id)?;
    if !again.may_sign_in(now()) {
        tokens::disable_subject(&again.id)?;
    }
    Ok(again)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Lock {
    minutes: i64,
}

/// An account change applied by [`change`].
enum Action {
    Lock(i64),
    Unlock,
    Deactivate,
    Activate,
    Delete,
    Restore,
}

/// `POST /api/admin/users/{id}/lock` `{minutes}`.
pub fn lock(request: &Request, id: &str) -> Result<Reply, ApiError> {
    administrator(request)?;
    let body: Lock = read_json(request, BODY_LIMIT)?;
    if !(1..=MAX_LOCK_MINUTES).contains(&body.minutes) {
        let mut checks = crate::validate::Checks::default();
        checks.fail("minutes", format!("1 to {MAX_LOCK_MINUTES}"));
        checks.finish()?;
    }
    change(request, id, Action::Lock(body.minutes))
}

/// `POST /api/admin/users/{id}/unlock`.
pub fn unlock(request: &Request, id: &str) -> Result<Reply, ApiError> {
    change(request, id, Action::Unlock)
}

/// `POST /api/admin/users/{id}/deactivate`.
pub fn deactivate(request: &Request, id: &str) -> Result<Reply, ApiError> {
    change(request, id, Action::Deactivate)
}

/// `POST /api/admin/users/{id}/activate`.
pub fn activate(request: &Request, id: &str) -> Result<Reply, ApiError> {
    change(request, id, Action::Activate)
}

/// `POST /api/admin/users/{id}/restore`.
pub fn restore(request: &Request, id: &str) -> Result<Reply, ApiError> {
    change(request, id, Action::Restore)
}

/// `DELETE /api/admin/users/{id}[?hard=true]`.
pub fn delete(request: &Request, id: &str) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    match request.query("hard").as_deref() {
        None | Some("false") => change(request, id, Action::Delete),
        Some("true") => {
            let db = Database::open(DATABASE)?;
            let user = target(&db, id)?;
            not_self(&caller, &user, "delete")?;
            erase(&db, &user)?;
            events::audit(
                request,
                "admin.user.erased",
                Some(&caller.user_id),
                json!({"target": user.id}),
            );
            Ok(Reply::no_content())
        }
        Some(_) => Err(ApiError::new(
            400,
            "invalid parameter",
            "hard: true or false",
        )),
    }
}

fn change(request: &Request, id: &str, action: Action) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let db = Database::open(DATABASE)?;
    let user = target(&db, id)?;
    let now = now();
    let (event, sql, params): (&str, &str, Vec<Value>) = match action {
        Action::Lock(minutes) => {
            not_self(&caller, &user, "lock")?;
            // Scheduled first: a lock that could not lift itself is not set.
            lock_ends_at(&user.id, minutes * 60)?;
            (
                "locked",
                "locked_until = $1",
                vec![(now + minutes * 60).into()],
            )
        }
        Action::Unlock => ("unlocked", "locked_until = NULL", vec![]),
        Action::Deactivate => {
            not_self(&caller, &user, "deactivate")?;
            ("deactivated", "active = FALSE", vec![])
        }
        Action::Activate => ("activated", "active = TRUE", vec![]),
        Action::Delete => {
            not_self(&caller, &user, "delete")?;
            ("deleted", "deleted_at = $1", vec![now.into()])
        }
        Action::Restore => ("restored", "deleted_at = NULL", vec![]),
    };
    let cuts = matches!(event, "locked" | "deactivated" | "deleted");
    let mut params = params;
    params.push(now.into());
    params.push(user.id.as_str().into());
    let n = params.len();
    db.transaction(|tx| {
        if cuts {
            serialize_admin_changes(tx)?;
            not_last_admin(tx, &user)?;
        }
        tx.execute(
            &format!(
                "UPDATE auth_users SET {sql}, updated_at = ${} WHERE id = ${n}",
                n - 1
            ),
            &params,
        )?;
        Ok::<_, ApiError>(())
    })?;
    let user = if cuts {
        cut_off(&db, &user)?;
        // A lock ends by itself; deactivation and deletion revoke the API
        // keys too, so no restart of an in-process revocation store can
        // bring them back.
        if event != "locked" {
            api_keys::revoke_all(&user.id)?;
        }
        target(&db, id)?
    } else {
        lift(&db, id)?
    };
    events::audit(
        request,
        &format!("admin.user.{event}"),
        Some(&caller.user_id),
        json!({"target": user.id}),
    );
    Ok(Reply::json(200, view(&user)))
}

/// Schedules a look at `user_id`'s lock in `seconds`; 503 if it cannot.
fn lock_ends_at(user_id: &str, seconds: i64) -> Result<(), ApiError> {
    let payload = json!({"userId": user_id}).to_string();
    let delay = std::time::Duration::from_secs(seconds.max(1) as u64);
    queue::publish_with("auth.lock-ended", payload.as_bytes(), None, Some(delay))
        .map(drop)
        .map_err(|e| {
            ApiError::new(
                503,
                "queue unavailable",
                format!("the lock could not be scheduled to end: {e:?}"),
            )
        })
}

/// `auth.lock-ended` `{userId}`: once the account's lock is over, its
/// credentials work again (unless something else holds it back); a lock
/// still running (made longer since, or a clock a second behind) is
/// looked at again at its end.
pub fn lock_ended(payload: &[u8]) -> Result<(), String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Ended {
        user_id: String,
    }
    let Ok(ended) = serde_json::from_slice::<Ended>(payload) else {
        return Ok(());
    };
    let db = Database::open(DATABASE).map_err(|e| format!("{e:?}"))?;
    let Some(user) = users::by_id(&db, &ended.user_id).map_err(|e| e.detail)? else {
        return Ok(());
    };
    match user.locked_until {
        Some(until) if until > now() => lock_ends_at(&user.id, until - now()).map_err(|e| e.detail),
        Some(_) => lift(&db, &user.id).map(drop).map_err(|e| e.detail),
        None => Ok(()),
    }
}

/// `POST /api/admin/users/{id}/sessions/revoke`: every login session and
/// access token of the account ends (API keys stay).
pub fn revoke_sessions(request: &Request, id: &str) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let db = Database::open(DATABASE)?;
    let user = target(&db, id)?;
    sessions::revoke_all(&db, &user.id)?;
    events::audit(
        request,
        "admin.user.sessions_revoked",
        Some(&caller.user_id),
        json!({"target": user.id}),
    );
    Ok(Reply::no_content())
}

/// Removes the account for good: 409 if it is the last active
/// administrator; else it is marked deleted (with that check, atomically),
/// its sessions, tokens and API keys are revoked, `user.deleted` is
/// published so every service deletes what it holds of the user, and its
/// rows go. A failure part-way leaves a deleted account to erase again.
pub fn erase(db: &Database, user: &User) -> Result<(), ApiError> {
    db.transaction(|tx| {
        serialize_admin_changes(tx)?;
        not_last_admin(tx, user)?;
        tx.execute(
            "UPDATE auth_users SET deleted_at = coalesce(deleted_at, $1) WHERE id = $2",
            &[now().into(), user.id.as_str().into()],
        )?;
        Ok::<_, ApiError>(())
    })?;
    sessions::revoke_all(db, &user.id)?;
    api_keys::revoke_all(&user.id)?;
    // The key makes a repeat one message.
    let event = json!({"userId": user.id});
    queue::publish_with(
        "user.deleted",
        event.to_string().as_bytes(),
        Some(&format!("user.deleted:{}", user.id)),
        None,
    )
    .map_err(|e| {
        ApiError::new(
            503,
            "queue unavailable",
            format!("user.deleted not published: {e:?}"),
        )
    })?;
    // Before the rows go, so a failure leaves an account to erase again.
    limits::forget_user(&user.id)?;
    db.transaction(|tx| {
        for table in [
            "auth_refresh_tokens",
            "auth_sessions",
            "auth_password_resets",
            "auth_email_confirmations",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE user_id = $1"),
                &[user.id.as_str().into()],
            )?;
        }
        tx.execute(
            "DELETE FROM auth_users WHERE id = $1",
            &[user.id.as_str().into()],
        )?;
        Ok::<_, ApiError>(())
    })?;
    // Every credential is revoked one by one: an earlier cut-off's flag
    // need not outlive the account.
    tokens::enable_subject(&user.id)?;
    Ok(())
}
