//! Tags: `GET /api/explore/tags` (with model counts, public) and their
//! administration under `/api/admin/tags`. A tag's name is unique whatever
//! its case (409); renaming or deleting one updates every entry it is on.

use lamina_sdk::api::{ApiError, Reply, new_id, now_ms, read_json, timestamp};
use lamina_sdk::sql::{Sql, Value};
use lamina_sdk::validate::Checks;
use serde::{Deserialize, Serialize};

use crate::{Ctx, cached, events, require_admin, search};

/// Longest tag name.
pub const MAX_NAME: usize = 50;
/// Most tags in the catalogue.
pub const MAX_TAGS: i64 = 1000;

/// A tag and how many entries carry it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Tag {
    pub id: String,
    pub name: String,
    pub models: i64,
    pub created_at: String,
}

#[derive(Deserialize)]
struct TagRow {
    id: String,
    name: String,
    models: i64,
    created_at: i64,
}

/// Every tag with its entry count, by name (cached).
pub fn counts(db: &impl Sql) -> Result<Vec<Tag>, ApiError> {
    cached::get_or_load(&cached::tags(), || {
        Ok(db
            .query::<TagRow>(
                "SELECT t.id, t.name, t.created_at, \
                 (SELECT COUNT(*) FROM explore_model_tags mt WHERE mt.tag_id = t.id) AS models \
                 FROM explore_tags t ORDER BY t.name_key",
                &[],
            )?
            .into_iter()
            .map(|r| Tag {
                id: r.id,
                name: r.name,
                models: r.models,
                created_at: timestamp(r.created_at),
            })
            .collect::<Vec<_>>())
    })
}

/// `GET /api/explore/tags` and `GET /api/admin/tags`.
pub fn list(ctx: &Ctx) -> Result<Reply, ApiError> {
    if ctx.request.path_with_query().starts_with("/api/admin/") {
        require_admin(ctx)?;
    }
    Ok(Reply::json(
        200,
        serde_json::json!({"items": counts(&ctx.db)?}),
    ))
}

/// `GET /api/admin/tags/{id}`.
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    require_admin(ctx)?;
    Ok(Reply::json(200, by_id(ctx)?))
}

fn by_id(ctx: &Ctx) -> Result<Tag, ApiError> {
    let id = ctx.param("id");
    counts(&ctx.db)?
        .into_iter()
        .find(|t| t.id == id)
        .ok_or_else(|| ApiError::not_found(format!("no tag {id}")))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Body {
    name: String,
}

/// A tag name: 1–[`MAX_NAME`] characters of letters, digits, spaces and
/// `-_.`, trimmed, with a letter or digit and not starting with `.` (URLs
/// and filters carry them: `.` and `..` would be path segments).
fn check_name(checks: &mut Checks, name: &str) {
    let ok = name.chars().any(char::is_alphanumeric)
        && !name.starts_with('.')
        && name.chars().count() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.'));
    if !ok {
        checks.fail(
            "name",
            format!("1 to {MAX_NAME} letters, digits, spaces, '-', '_' or '.'"),
        );
    }
}

fn read_name(ctx: &Ctx) -> Result<String, ApiError> {
    let body: Body = read_json(ctx.request, 4096)?;
    let name = body.name.trim().to_owned();
    let mut checks = Checks::default();
    check_name(&mut checks, &name);
    checks.finish()?;
    Ok(name)
}

fn taken(name: &str) -> ApiError {
    ApiError::new(409, "tag exists", format!("a tag named `{name}` exists"))
}

/// `POST /api/admin/tags` `{name}` → 201.
pub fn create(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let name = read_name(ctx)?;
    let id = new_id();
    let now = now_ms();
    ctx.db.transaction(|tx| {
        let count: Option<Count> = tx.query_one("SELECT COUNT(*) AS n FROM explore_tags", &[])?;
        if count.map_or(0, |c| c.n) >= MAX_TAGS {
            return Err(ApiError::new(
                409,
                "too many tags",
                format!("the catalogue has {MAX_TAGS} tags, the most it may"),
            ));
        }
        tx.execute(
            "INSERT INTO explore_tags (id, name, name_key, created_at) VALUES ($1, $2, $3, $4)",
            &[
                id.as_str().into(),
                name.as_str().into(),
                name.to_lowercase().into(),
                now.into(),
            ],
        )
        .map_err(|e| conflict(e, &name))?;
        Ok(())
    })?;
    events::changed(
        ctx.request,
        caller,
        "tag.created",
        serde_json::json!({"tag": name}),
    );
    let tag = Tag {
        id,
        name,
        models: 0,
        created_at: timestamp(now),
    };
    Ok(Reply::json(201, tag))
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

fn conflict(error: lamina_sdk::sql::Error, name: &str) -> ApiError {
    match error {
        lamina_sdk::sql::Error::UniqueViolation(_) => taken(name),
        other => other.into(),
    }
}

/// `PATCH /api/admin/tags/{id}` `{name}`.
pub fn rename(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let id = ctx.param("id");
    let name = read_name(ctx)?;
    let dialect = ctx.db.dialect();
    let old = ctx.db.transaction(|tx| {
        let old: Option<NameRow> = tx.query_one(
            "SELECT name FROM explore_tags WHERE id = $1",
            &[id.as_str().into()],
        )?;
        let old = old.ok_or_else(|| ApiError::not_found(format!("no tag {id}")))?;
        tx.execute(
            "UPDATE explore_tags SET name = $1, name_key = $2 WHERE id = $3",
            &[
                name.as_str().into(),
                name.to_lowercase().into(),
                id.as_str().into(),
            ],
        )
        .map_err(|e| conflict(e, &name))?;
        for model in tagged(tx, &id)? {
            search::reindex(tx, dialect, &model)?;
        }
        Ok::<_, ApiError>(old.name)
    })?;
    events::changed(
        ctx.request,
        caller,
        "tag.renamed",
        serde_json::json!({"tag": name, "from": old}),
    );
    Ok(Reply::json(200, by_id(ctx)?))
}

#[derive(Deserialize)]
struct NameRow {
    name: String,
}

/// `DELETE /api/admin/tags/{id}`: the tag leaves every entry → 204.
pub fn delete(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let id = ctx.param("id");
    let dialect = ctx.db.dialect();
    let name = ctx.db.transaction(|tx| {
        let row: Option<NameRow> = tx.query_one(
            "SELECT name FROM explore_tags WHERE id = $1",
            &[id.as_str().into()],
        )?;
        let row = row.ok_or_else(|| ApiError::not_found(format!("no tag {id}")))?;
        let tagged = tagged(tx, &id)?;
        tx.execute(
            "DELETE FROM explore_tags WHERE id = $1",
            &[id.as_str().into()],
        )?;
        for model in tagged {
            search::reindex(tx, dialect, &model)?;
        }
        Ok::<_, ApiError>(row.name)
    })?;
    events::changed(
        ctx.request,
        caller,
        "tag.deleted",
        serde_json::json!({"tag": name}),
    );
    Ok(Reply::no_content())
}

/// The entries carrying tag `id`.
fn tagged(tx: &impl Sql, id: &str) -> Result<Vec<String>, ApiError> {
    let rows: Vec<NameRow> = tx.query(
        "SELECT model AS name FROM explore_model_tags WHERE tag_id = $1",
        &[id.into()],
    )?;
    Ok(rows.into_iter().map(|r| r.name).collect())
}

/// The ids of tags named `names` (any case); a field error per unknown one.
pub fn ids(tx: &impl Sql, names: &[String], checks: &mut Checks) -> Result<Vec<String>, ApiError> {
    let mut ids = Vec::new();
    for (i, name) in names.iter().enumerate() {
        #[derive(Deserialize)]
        struct Id {
            id: String,
        }
        let found: Option<Id> = tx.query_one(
            "SELECT id FROM explore_tags WHERE name_key = $1",
            &[Value::from(name.trim().to_lowercase())],
        )?;
        match found {
            Some(found) => ids.push(found.id),
            None => checks.fail(&format!("tags[{i}]"), format!("no tag `{name}`")),
        }
    }
    Ok(ids)
}
