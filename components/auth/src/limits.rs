//! Model access and token budgets, as administrators set them; the host
//! enforces them on every inference call (`lamina_sdk::limits`).
//!
//! - `GET/PUT/DELETE /api/admin/users/{id}/budget` and
//!   `/api/admin/users/{id}/api-keys/{keyId}/budget`: `{"tokens", "period":
//!   "day"|"week"|"month"|"custom", "seconds"}`; `GET` adds what is used
//!   and left in the current period and when it resets.
//! - `GET/PUT/DELETE /api/admin/users/{id}/models`,
//!   `/api/admin/users/{id}/api-keys/{keyId}/models` and
//!   `/api/admin/roles/{name}/models`: `{"models": ["name:tag", "*"]}`. A
//!   role's list allows its models to everyone with the role, a user's own
//!   list replaces their roles', a key's narrows its owner's; without any,
//!   every installed model.
//! - `GET /api/admin/users/{id}/api-keys`: the account's keys (their ids
//!   are what key rules name).
//!
//! The account (and the key, among the account's) must exist: 404
//! otherwise. Every change is audited.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Reply, read_json};
use lamina_sdk::limits::{self, ApiKeyScope, BudgetBody, Scope};
use lamina_sdk::sql::Database;
use lamina_sdk::tokens;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::admin::{administrator, target};
use crate::{BODY_LIMIT, DATABASE, api_keys, events, roles};

/// The account `id`'s scope, or 404.
pub fn user_scope(id: &str) -> Result<Scope, ApiError> {
    let db = Database::open(DATABASE)?;
    Ok(Scope::User(target(&db, id)?.id))
}

/// Key `key` of account `id`, or 404.
pub fn key_scope(id: &str, key: &str) -> Result<Scope, ApiError> {
    let Scope::User(owner) = user_scope(id)? else {
        unreachable!("a user scope")
    };
    if !tokens::list_api_keys(&owner)?.iter().any(|k| k.id == key) {
        return Err(ApiError::not_found(format!(
            "user {owner} has no API key {key}"
        )));
    }
    Ok(Scope::ApiKey(ApiKeyScope {
        id: key.to_owned(),
        owner,
    }))
}

/// Role `name`'s scope (as stored), or 404.
pub fn role_scope(name: &str) -> Result<Scope, ApiError> {
    let db = Database::open(DATABASE)?;
    roles::find(&db, name)?
        .map(Scope::Role)
        .ok_or_else(|| ApiError::not_found(format!("no role {name}")))
}

/// What an audit entry names as the target.
fn describe(scope: &Scope) -> Json {
    match scope {
        Scope::Role(name) => json!({"target": format!("role:{name}")}),
        Scope::User(id) => json!({"target": id}),
        Scope::ApiKey(key) => json!({"target": key.owner, "apiKey": key.id}),
    }
}

/// `GET …/budget`: the budget and its current period, 404 without one.
pub fn get_budget(
    request: &Request,
    scope: impl FnOnce() -> Result<Scope, ApiError>,
) -> Result<Reply, ApiError> {
    administrator(request)?;
    let status =
        limits::get_budget(&scope()?)?.ok_or_else(|| ApiError::not_found("no budget is set"))?;
    Ok(Reply::json(200, limits::status_json(&status)))
}

/// `PUT …/budget`.
pub fn put_budget(
    request: &Request,
    scope: impl FnOnce() -> Result<Scope, ApiError>,
) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let body: BudgetBody = read_json(request, BODY_LIMIT)?;
    let budget = body.into_budget()?;
    let scope = scope()?;
    limits::set_budget(&scope, Some(budget))?;
    let mut detail = describe(&scope);
    detail["tokens"] = budget.tokens.into();
    events::audit(request, "admin.budget.set", Some(&caller.user_id), detail);
    let status = limits::get_budget(&scope)?
        .ok_or_else(|| ApiError::new(409, "budget changed", "the budget was removed meanwhile"))?;
    Ok(Reply::json(200, limits::status_json(&status)))
}

/// `DELETE …/budget`: 204, also when there was none.
pub fn delete_budget(
    request: &Request,
    scope: impl FnOnce() -> Result<Scope, ApiError>,
) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let scope = scope()?;
    limits::set_budget(&scope, None)?;
    events::audit(
        request,
        "admin.budget.removed",
        Some(&caller.user_id),
        describe(&scope),
    );
    Ok(Reply::no_content())
}

/// `{"models": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelsBody {
    models: Vec<String>,
}

fn models_json(models: Option<Vec<String>>) -> Json {
    let restricted = models.is_some();
    json!({ "models": models.unwrap_or_else(|| vec!["*".to_owned()]), "restricted": restricted })
}

/// `GET …/models`: the list (`["*"]`, unrestricted, without one).
pub fn get_models(
    request: &Request,
    scope: impl FnOnce() -> Result<Scope, ApiError>,
) -> Result<Reply, ApiError> {
    administrator(request)?;
    Ok(Reply::json(
        200,
        models_json(limits::get_models(&scope()?)?),
    ))
}

/// `PUT …/models`.
pub fn put_models(
    request: &Request,
    scope: impl FnOnce() -> Result<Scope, ApiError>,
) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let body: ModelsBody = read_json(request, BODY_LIMIT)?;
    let scope = scope()?;
    limits::set_models(&scope, Some(body.models.as_slice()))?;
    let mut detail = describe(&scope);
    detail["models"] = body.models.clone().into();
    events::audit(request, "admin.models.set", Some(&caller.user_id), detail);
    Ok(Reply::json(200, models_json(limits::get_models(&scope)?)))
}

/// `DELETE …/models`: back to every model.
pub fn delete_models(
    request: &Request,
    scope: impl FnOnce() -> Result<Scope, ApiError>,
) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let scope = scope()?;
    limits::set_models(&scope, None)?;
    events::audit(
        request,
        "admin.models.removed",
        Some(&caller.user_id),
        describe(&scope),
    );
    Ok(Reply::no_content())
}

/// `GET /api/admin/users/{id}/api-keys`.
pub fn api_keys(request: &Request, id: &str) -> Result<Reply, ApiError> {
    administrator(request)?;
    let Scope::User(owner) = user_scope(id)? else {
        unreachable!("a user scope")
    };
    let keys: Vec<Json> = tokens::list_api_keys(&owner)?
        .iter()
        .map(api_keys::listed)
        .collect();
    Ok(Reply::json(200, json!({ "items": keys })))
}
