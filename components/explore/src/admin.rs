//! `/api/admin/models[/{name}]`: catalogue entries created, read, changed
//! and deleted by administrators, and tags put on and taken off them.
//!
//! The body takes the predecessor's `CreateModelRequest` fields with its
//! limits ([`check`]: one 400 lists every bad field). `fromInstalled:
//! true` fills what the body leaves out from the installed model's GGUF
//! header. An entry may describe a model not installed yet: its
//! `sourceUrl` and `sha256` are what an install fetches. Deleting an entry
//! leaves the model's files alone (`DELETE …/files` removes those).

use lamina_sdk::api::{ApiError, Reply, now_ms, nullable, parse_timestamp, read_json};
use lamina_sdk::inference::{self, OllamaOptions};
use lamina_sdk::sql::{Dialect, Sql, Value};
use lamina_sdk::validate::{Checks, has_control};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::entry::{self, CAPABILITIES, count_label};
use crate::live::{Live, capabilities};
use crate::{Ctx, embeddings, events, require_admin, search, tags};

/// Largest body accepted.
const BODY_LIMIT: usize = 64 * 1024;
/// Most tags on one entry.
const MAX_TAGS: usize = 20;
/// Most entries in the catalogue: all their cards fit one cached value.
const MAX_ENTRIES: i64 = 2_000;

/// `name` or `name:tag` as the model store names it (`name:latest` when
/// no tag is given): lower-case letters, digits and `._-`, at most 64
/// characters each side, 100 in all.
pub fn canonical(name: &str) -> Option<String> {
    let (model, tag) = name.split_once(':').unwrap_or((name, "latest"));
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 64
            && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    };
    let full = format!("{model}:{tag}");
    (valid(model) && valid(tag) && full.len() <= 100).then_some(full)
}

/// The `{name}` of the path, canonical, or 404.
pub fn path_name(ctx: &Ctx) -> Result<String, ApiError> {
    let raw = ctx.param("name");
    canonical(&raw).ok_or_else(|| ApiError::not_found(format!("no model `{raw}` in the catalogue")))
}

/// A create or update body. Every field but `name`, `fromInstalled` and
/// `tags` may be `null` on update, to clear it.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Body {
    name: Option<String>,
    from_installed: Option<bool>,
    tags: Option<Vec<String>>,
    #[serde(deserialize_with = "nullable")]
    title: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    description: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    author: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    version: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    license: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    template: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    model_file: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    reference_link: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    image_url: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    source_url: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    sha256: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    digest: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    format: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    parameter_size: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    quantization_level: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    parent_model: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    family: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    families: Option<Option<Vec<String>>>,
    #[serde(deserialize_with = "nullable")]
    languages: Option<Option<Vec<String>>>,
    #[serde(deserialize_with = "nullable")]
    capabilities: Option<Option<Vec<String>>>,
    #[serde(deserialize_with = "nullable")]
    architecture: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    file_type: Option<Option<i64>>,
    #[serde(deserialize_with = "nullable")]
    parameter_count: Option<Option<i64>>,
    #[serde(deserialize_with = "nullable")]
    quantization_version: Option<Option<i64>>,
    #[serde(deserialize_with = "nullable")]
    size_label: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    model_type: Option<Option<String>>,
    #[serde(deserialize_with = "nullable")]
    size: Option<Option<i64>>,
    #[serde(deserialize_with = "nullable")]
    context_length: Option<Option<i64>>,
    #[serde(deserialize_with = "nullable")]
    options: Option<Option<Json>>,
    #[serde(deserialize_with = "nullable")]
    released_at: Option<Option<String>>,
}

/// Short text fields: (field, column, limit).
const TEXTS: [(&str, &str, usize); 18] = [
    ("title", "title", 200),
    ("description", "description", 1000),
    ("author", "author", 100),
    ("version", "version", 50),
    ("license", "license", 2000),
    ("template", "template", 2000),
    ("modelFile", "model_file", 2000),
    ("referenceLink", "reference_link", 500),
    ("imageUrl", "image_url", 500),
    ("sourceUrl", "source_url", 500),
    ("sha256", "sha256", 64),
    ("digest", "digest", 200),
    ("format", "format", 50),
    ("parameterSize", "parameter_size", 50),
    ("quantizationLevel", "quantization_level", 50),
    ("parentModel", "parent_model", 100),
    ("family", "family", 100),
    ("architecture", "architecture", 100),
];

impl Body {
    /// The text fields, in [`TEXTS`] order (then `sizeLabel`, `modelType`).
    fn texts(&self) -> [&Option<Option<String>>; 20] {
        [
            &self.title,
            &self.description,
            &self.author,
            &self.version,
            &self.license,
            &self.template,
            &self.model_file,
            &self.reference_link,
            &self.image_url,
            &self.source_url,
            &self.sha256,
            &self.digest,
            &self.format,
            &self.parameter_size,
            &self.quantization_level,
            &self.parent_model,
            &self.family,
            &self.architecture,
            &self.size_label,
            &self.model_type,
        ]
    }

    /// Whether any catalogue field is set.
    fn changes_anything(&self) -> bool {
        self.tags.is_some()
            || self.texts().iter().any(|f| f.is_some())
            || self.families.is_some()
            || self.languages.is_some()
            || self.capabilities.is_some()
            || self.file_type.is_some()
            || self.parameter_count.is_some()
            || self.quantization_version.is_some()
            || self.size.is_some()
            || self.context_length.is_some()
            || self.options.is_some()
            || self.released_at.is_some()
    }

    /// The columns to write and their values, for the fields set.
    fn columns(&self) -> Vec<(&'static str, Value)> {
        let mut out: Vec<(&'static str, Value)> = Vec::new();
        let names = TEXTS
            .iter()
            .map(|(_, column, _)| *column)
            .chain(["size_label", "model_type"]);
        for (column, field) in names.zip(self.texts()) {
            if let Some(value) = field {
                let value = value.as_ref().map(|v| v.trim().to_owned());
                // The description is NOT NULL: clearing empties it (a
                // title cannot be cleared: `check`).
                let value = match (column, value) {
                    ("description", None) => Value::from(""),
                    (_, v) => entry::text(&v),
                };
                out.push((column, value));
            }
        }
        let list = |v: &Option<Vec<String>>| {
            serde_json::to_string(&v.clone().unwrap_or_default()).unwrap_or_else(|_| "[]".into())
        };
        for (column, field) in [
            ("families", &self.families),
            ("languages", &self.languages),
            ("capabilities", &self.capabilities),
        ] {
            if let Some(value) = field {
                out.push((column, list(value).into()));
            }
        }
        for (column, field) in [
            ("file_type", self.file_type),
            ("parameter_count", self.parameter_count),
            ("quantization_version", self.quantization_version),
            ("size", self.size),
            ("context_length", self.context_length),
        ] {
            if let Some(value) = field {
                out.push((column, entry::int(value)));
            }
        }
        if let Some(options) = &self.options {
            let text = options
                .as_ref()
                .map_or_else(|| "{}".to_owned(), Json::to_string);
            out.push(("options", text.into()));
        }
        if let Some(at) = &self.released_at {
            let ms = at.as_deref().and_then(parse_timestamp);
            out.push(("released_at", entry::int(ms)));
        }
        out
    }
}

/// Every rule on a body; one 400 lists every failure.
fn check(body: &Body, creating: bool) -> Result<(), ApiError> {
    let mut checks = Checks::default();
    if creating {
        match &body.name {
            Some(name) if canonical(name.trim()).is_some() => {}
            _ => checks.fail(
                "name",
                "required: name or name:tag, lower-case letters, digits and ._- (at most 100 characters)",
            ),
        }
    } else {
        if body.name.is_some() {
            checks.fail("name", "an entry's name cannot change (create a new entry)");
        }
        if body.from_installed.is_some() {
            checks.fail("fromInstalled", "only when creating");
        }
        if !body.changes_anything() {
            checks.fail("body", "at least one field to change");
        }
    }
    let limits = TEXTS
        .iter()
        .map(|(field, _, max)| (*field, *max))
        .chain([("sizeLabel", 50), ("modelType", 50)]);
    for ((field, max), value) in limits.zip(body.texts()) {
        let Some(Some(value)) = value else { continue };
        let multiline = matches!(field, "description" | "license" | "template" | "modelFile");
        if multiline {
            checks.long_text(field, value, max);
        } else if value.chars().count() > max || has_control(value) {
            checks.fail(
                field,
                format!("at most {max} characters, no control characters"),
            );
        }
    }
    match &body.title {
        Some(Some(title)) if title.trim().is_empty() => checks.fail("title", "not empty"),
        Some(None) => checks.fail("title", "required: it cannot be cleared"),
        _ => {}
    }
    for (field, value) in [
        ("referenceLink", &body.reference_link),
        ("imageUrl", &body.image_url),
        ("sourceUrl", &body.source_url),
    ] {
        if let Some(Some(url)) = value
            && !(url.starts_with("https://") || url.starts_with("http://"))
        {
            checks.fail(field, "an absolute http(s) URL");
        }
    }
    if let Some(Some(sha)) = &body.sha256
        && (sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_hexdigit()))
    {
        checks.fail("sha256", "64 hexadecimal digits");
    }
    for (field, value, each, most) in [
        ("families", &body.families, 100, 20),
        ("languages", &body.languages, 50, 50),
    ] {
        if let Some(Some(list)) = value {
            if list.len() > most {
                checks.fail(field, format!("at most {most} items"));
            }
            for (i, item) in list.iter().enumerate() {
                if item.trim().is_empty() || item.chars().count() > each || has_control(item) {
                    checks.fail(&format!("{field}[{i}]"), format!("1 to {each} characters"));
                }
            }
        }
    }
    if let Some(Some(list)) = &body.capabilities {
        for (i, c) in list.iter().enumerate() {
            if !CAPABILITIES.contains(&c.as_str()) {
                checks.fail(
                    &format!("capabilities[{i}]"),
                    "chat, completion or embedding",
                );
            }
        }
    }
    for (field, value, min) in [
        ("fileType", body.file_type, 0),
        ("parameterCount", body.parameter_count, 1),
        ("quantizationVersion", body.quantization_version, 0),
        ("size", body.size, 1),
        ("contextLength", body.context_length, 1),
    ] {
        if let Some(Some(n)) = value
            && n < min
        {
            checks.fail(field, format!("at least {min}"));
        }
    }
    if let Some(Some(options)) = &body.options {
        let valid = options.is_object()
            && options.to_string().len() <= 4096
            && serde_json::from_value::<OllamaOptions>(options.clone()).is_ok();
        if !valid {
            checks.fail(
                "options",
                "an object of Ollama options (temperature, top_k, …) of at most 4 KiB",
            );
        }
    }
    if let Some(Some(at)) = &body.released_at
        && parse_timestamp(at).is_none()
    {
        checks.fail("releasedAt", "an RFC 3339 timestamp");
    }
    if let Some(tags) = &body.tags
        && tags.len() > MAX_TAGS
    {
        checks.fail("tags", format!("at most {MAX_TAGS}"));
    }
    checks.finish()
}

/// What the installed model's GGUF header says, for the fields the body
/// leaves unset.
fn fill_from_store(body: &mut Body, name: &str) -> Result<(), ApiError> {
    let model = inference::show_model(name).map_err(|e| match e {
        inference::Error::NoSuchModel(_) => ApiError::invalid(vec![lamina_sdk::api::FieldError {
            field: "fromInstalled".into(),
            message: format!("`{name}` is not installed"),
        }]),
        e => ApiError::new(e.status(), "model store", e.detail()),
    })?;
    body.family.get_or_insert(Some(model.family.clone()));
    body.architecture.get_or_insert(Some(model.family.clone()));
    body.parameter_count
        .get_or_insert(Some(model.parameter_count as i64));
    body.parameter_size
        .get_or_insert(Some(count_label(model.parameter_count)));
    body.quantization_level
        .get_or_insert(Some(model.quantization.clone()));
    body.context_length
        .get_or_insert(Some(model.context_length.into()));
    body.size.get_or_insert(Some(model.size as i64));
    body.digest.get_or_insert(Some(model.digest.clone()));
    body.format.get_or_insert(Some("gguf".into()));
    body.capabilities.get_or_insert(Some(capabilities(&model)));
    Ok(())
}

fn entry_taken(name: &str) -> ApiError {
    ApiError::new(
        409,
        "entry exists",
        format!("the catalogue has an entry `{name}`"),
    )
}

/// `POST /api/admin/models` → 201 with the entry.
pub fn create(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let mut body: Body = read_json(ctx.request, BODY_LIMIT)?;
    check(&body, true)?;
    let name = canonical(body.name.as_deref().unwrap_or_default().trim()).expect("checked");
    if body.from_installed == Some(true) {
        fill_from_store(&mut body, &name)?;
    }
    if !matches!(&body.title, Some(Some(t)) if !t.trim().is_empty()) {
        body.title = Some(Some(name.clone()));
    }
    let now = now_ms();
    let dialect = ctx.db.dialect();
    ctx.db.transaction(|tx| {
        let count: Option<Count> = tx.query_one("SELECT COUNT(*) AS n FROM explore_models", &[])?;
        if count.map_or(0, |c| c.n) >= MAX_ENTRIES {
            return Err(ApiError::new(
                409,
                "catalogue full",
                format!("the catalogue has {MAX_ENTRIES} entries, the most it may"),
            ));
        }
        let mut columns = body.columns();
        columns.extend([
            ("name", Value::from(name.as_str())),
            ("created_by", Value::from(caller.user_id.as_str())),
            ("created_at", now.into()),
            ("updated_at", now.into()),
        ]);
        let names: Vec<&str> = columns.iter().map(|(c, _)| *c).collect();
        let placeholders: Vec<String> = (1..=columns.len()).map(|i| format!("${i}")).collect();
        let values: Vec<Value> = columns.into_iter().map(|(_, v)| v).collect();
        tx.execute(
            &format!(
                "INSERT INTO explore_models ({}) VALUES ({})",
                names.join(", "),
                placeholders.join(", ")
            ),
            &values,
        )
        .map_err(|e| match e {
            lamina_sdk::sql::Error::UniqueViolation(_) => entry_taken(&name),
            e => e.into(),
        })?;
        set_tags(tx, dialect, &name, body.tags.as_deref().unwrap_or_default())
    })?;
    events::changed(ctx.request, caller, "model.created", json!({"model": name}));
    let entry = entry::load(&ctx.db, &name)?;
    embeddings::refresh(&ctx.db, &name, &entry.title, &entry.description);
    Ok(Reply::json(201, Live::read()?.entry(entry))
        .header("location", format!("/api/explore/models/{name}")))
}

#[derive(Deserialize)]
struct Count {
    n: i64,
}

/// Replaces `name`'s tags with `names` (each must exist) and reindexes it.
fn set_tags(tx: &impl Sql, dialect: Dialect, name: &str, names: &[String]) -> Result<(), ApiError> {
    let mut checks = Checks::default();
    let ids = tags::ids(tx, names, &mut checks)?;
    checks.finish()?;
    tx.execute(
        "DELETE FROM explore_model_tags WHERE model = $1",
        &[name.into()],
    )?;
    for id in ids {
        add_tag(tx, name, &id)?;
    }
    search::reindex(tx, dialect, name)
}

fn add_tag(tx: &impl Sql, name: &str, tag_id: &str) -> Result<(), ApiError> {
    let sql =
        "INSERT INTO explore_model_tags (model, tag_id) VALUES ($1, $2) ON CONFLICT DO NOTHING";
    tx.execute(sql, &[name.into(), tag_id.into()])?;
    Ok(())
}

/// `GET /api/admin/models/{name}`: the entry with the store's view.
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    require_admin(ctx)?;
    let entry = entry::load(&ctx.db, &path_name(ctx)?)?;
    Ok(Reply::json(200, Live::read()?.entry(entry)))
}

/// `PATCH /api/admin/models/{name}`: the fields given change (`null`
/// clears one); `tags` replaces the entry's tags.
pub fn update(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let name = path_name(ctx)?;
    let body: Body = read_json(ctx.request, BODY_LIMIT)?;
    check(&body, false)?;
    let dialect = ctx.db.dialect();
    let before = ctx.db.transaction(|tx| {
        let before = entry::load(tx, &name)?;
        let mut columns = body.columns();
        columns.push(("updated_at", now_ms().into()));
        if body.title.is_some() || body.description.is_some() {
            columns.push(("embedding", Value::Null));
            columns.push(("embedding_model", Value::Null));
        }
        let sets: Vec<String> = columns
            .iter()
            .enumerate()
            .map(|(i, (c, _))| format!("{c} = ${}", i + 1))
            .collect();
        let mut values: Vec<Value> = columns.into_iter().map(|(_, v)| v).collect();
        values.push(name.as_str().into());
        tx.execute(
            &format!(
                "UPDATE explore_models SET {} WHERE name = ${}",
                sets.join(", "),
                values.len()
            ),
            &values,
        )?;
        match &body.tags {
            Some(tags) => set_tags(tx, dialect, &name, tags)?,
            None => search::reindex(tx, dialect, &name)?,
        }
        Ok::<_, ApiError>(before)
    })?;
    events::changed(ctx.request, caller, "model.updated", json!({"model": name}));
    let entry = entry::load(&ctx.db, &name)?;
    if entry.title != before.title || entry.description != before.description {
        embeddings::refresh(&ctx.db, &name, &entry.title, &entry.description);
    }
    Ok(Reply::json(200, Live::read()?.entry(entry)))
}

/// `DELETE /api/admin/models/{name}` → 204 (the files stay).
pub fn delete(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let name = path_name(ctx)?;
    let dialect = ctx.db.dialect();
    ctx.db.transaction(|tx| {
        let deleted = tx.execute(
            "DELETE FROM explore_models WHERE name = $1",
            &[name.as_str().into()],
        )?;
        if deleted == 0 {
            return Err(ApiError::not_found(format!(
                "no model `{name}` in the catalogue"
            )));
        }
        search::unindex(tx, dialect, &name)
    })?;
    events::changed(ctx.request, caller, "model.deleted", json!({"model": name}));
    Ok(Reply::no_content())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TagList {
    tags: Vec<String>,
}

/// `POST /api/admin/models/{name}/tags` `{tags: [names]}`: adds them.
pub fn add_tags(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let name = path_name(ctx)?;
    let body: TagList = read_json(ctx.request, BODY_LIMIT)?;
    if body.tags.is_empty() || body.tags.len() > MAX_TAGS {
        return Err(ApiError::invalid(vec![lamina_sdk::api::FieldError {
            field: "tags".into(),
            message: format!("1 to {MAX_TAGS} tag names"),
        }]));
    }
    let dialect = ctx.db.dialect();
    ctx.db.transaction(|tx| {
        let entry = entry::load(tx, &name)?;
        let mut checks = Checks::default();
        let ids = tags::ids(tx, &body.tags, &mut checks)?;
        checks.finish()?;
        if entry.tags.len() + ids.len() > MAX_TAGS {
            let mut all: Vec<String> = entry.tags.iter().map(|t| t.to_lowercase()).collect();
            all.extend(body.tags.iter().map(|t| t.trim().to_lowercase()));
            all.sort();
            all.dedup();
            if all.len() > MAX_TAGS {
                return Err(ApiError::new(
                    409,
                    "too many tags",
                    format!("an entry has at most {MAX_TAGS} tags"),
                ));
            }
        }
        for id in ids {
            add_tag(tx, &name, &id)?;
        }
        search::reindex(tx, dialect, &name)
    })?;
    events::changed(
        ctx.request,
        caller,
        "model.tagged",
        json!({"model": name, "tags": body.tags}),
    );
    tags_reply(ctx, &name)
}

/// `DELETE /api/admin/models/{name}/tags/{tag}`: takes one off (404 if
/// it was not on).
pub fn remove_tag(ctx: &Ctx) -> Result<Reply, ApiError> {
    let caller = require_admin(ctx)?;
    let name = path_name(ctx)?;
    let tag = ctx.param("tag");
    let dialect = ctx.db.dialect();
    ctx.db.transaction(|tx| {
        entry::load(tx, &name)?;
        let removed = tx.execute(
            "DELETE FROM explore_model_tags WHERE model = $1 AND tag_id = \
             (SELECT id FROM explore_tags WHERE name_key = $2)",
            &[name.as_str().into(), tag.trim().to_lowercase().into()],
        )?;
        if removed == 0 {
            return Err(ApiError::not_found(format!("`{name}` has no tag `{tag}`")));
        }
        search::reindex(tx, dialect, &name)
    })?;
    events::changed(
        ctx.request,
        caller,
        "model.untagged",
        json!({"model": name, "tag": tag}),
    );
    tags_reply(ctx, &name)
}

fn tags_reply(ctx: &Ctx, name: &str) -> Result<Reply, ApiError> {
    let entry = entry::load(&ctx.db, name)?;
    Ok(Reply::json(200, json!({"model": name, "tags": entry.tags})))
}
