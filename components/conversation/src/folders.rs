//! `/api/folders`: a tree of folders per user. The root (no parent) is
//! created when the account is registered (`user.registered`), or on first
//! use; a `parentId`/`folderId` left out means it. Names are unique per
//! parent, whatever their case. A folder may carry defaults for the
//! conversations created in it (model, system prompt, options).
//!
//! Deleting a folder that holds folders or conversations is refused (409)
//! unless `?recursive=true`: then the folder and every folder below it go,
//! and all their conversations move to the deleted folder's parent.

use std::collections::HashMap;

use lamina_sdk::api::{ApiError, Reply, new_id, now_ms, nullable, read_json, timestamp};
use lamina_sdk::page::{Page, PageRequest};
use lamina_sdk::sql::{Sql, Value};
use lamina_sdk::validate::Checks;
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::conversations::{self, Defaults};
use crate::{Ctx, cached};

/// The root's name.
const ROOT_NAME: &str = "Conversations";
/// Most folders one user may have.
const MAX_FOLDERS: i64 = 1000;
/// Deepest nesting below the root.
const MAX_DEPTH: usize = 20;
/// Longest folder name, in characters.
const MAX_NAME: usize = 100;
/// Largest folder request body.
const BODY_LIMIT: usize = 64 << 10;

/// A row of `conv_folders`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Folder {
    pub id: String,
    pub user_id: String,
    pub parent_id: Option<String>,
    pub name: String,
    pub model: Option<String>,
    pub system_prompt: Option<String>,
    pub options: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str =
    "id, user_id, parent_id, name, model, system_prompt, options, created_at, updated_at";

impl Folder {
    /// As the API shows it.
    pub fn view(&self) -> Json {
        json!({
            "id": self.id,
            "parentId": self.parent_id,
            "name": self.name,
            "defaults": self.defaults().view(),
            "createdAt": timestamp(self.created_at),
            "updatedAt": timestamp(self.updated_at),
        })
    }

    /// What new conversations in it start with.
    pub fn defaults(&self) -> Defaults {
        Defaults {
            model: self.model.clone(),
            system_prompt: self.system_prompt.clone(),
            options: self.options.clone(),
        }
    }
}

/// The user's root folder, created if missing.
pub fn root(db: &impl Sql, user: &str) -> Result<Folder, ApiError> {
    let select =
        format!("SELECT {COLUMNS} FROM conv_folders WHERE user_id = $1 AND parent_id IS NULL");
    if let Some(root) = db.query_one(&select, &[user.into()])? {
        return Ok(root);
    }
    let at = now_ms();
    // Two first requests may race: the unique root index keeps one.
    db.execute(
        "INSERT INTO conv_folders (id, user_id, parent_id, name, name_key, created_at, updated_at) \
         VALUES ($1, $2, NULL, $3, $4, $5, $5) ON CONFLICT DO NOTHING",
        &[
            new_id().into(),
            user.into(),
            ROOT_NAME.into(),
            ROOT_NAME.to_lowercase().into(),
            at.into(),
        ],
    )?;
    cached::invalidate(&[cached::folders(user)]);
    db.query_one(&select, &[user.into()])?.ok_or_else(|| {
        ApiError::new(
            500,
            "no root folder",
            "the root folder could not be created",
        )
    })
}

/// The user's folder `id` (`None`: the root); 404 for anyone else's.
pub fn owned(db: &impl Sql, user: &str, id: Option<&str>) -> Result<Folder, ApiError> {
    let Some(id) = id else {
        return root(db, user);
    };
    let select = format!("SELECT {COLUMNS} FROM conv_folders WHERE id = $1 AND user_id = $2");
    db.query_one(&select, &[id.into(), user.into()])?
        .ok_or_else(|| ApiError::not_found(format!("no folder {id}")))
}

/// How deep `id` is (the root is 0) and its ancestors' ids.
fn ancestors(db: &impl Sql, id: &str) -> Result<Vec<String>, ApiError> {
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let rows: Vec<Id> = db.query(
        "WITH RECURSIVE up (id, parent_id) AS ( \
             SELECT id, parent_id FROM conv_folders WHERE id = $1 \
             UNION ALL SELECT f.id, f.parent_id FROM conv_folders f JOIN up u ON f.id = u.parent_id) \
         SELECT id FROM up",
        &[id.into()],
    )?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// One node of `GET /api/folders`.
#[derive(Serialize, Deserialize)]
struct Node {
    #[serde(flatten)]
    folder: Json,
    #[serde(rename = "conversationCount")]
    conversation_count: i64,
    children: Vec<Node>,
}

/// `GET /api/folders`: the whole tree from the root, each folder with its
/// conversation count.
pub fn tree(ctx: &Ctx) -> Result<Reply, ApiError> {
    let user = ctx.user();
    let tree: Node = cached::get_or_load(&cached::folders(user), || {
        let root = root(&ctx.db, user)?;
        let select =
            format!("SELECT {COLUMNS} FROM conv_folders WHERE user_id = $1 ORDER BY name_key");
        let folders: Vec<Folder> = ctx.db.query(&select, &[user.into()])?;
        #[derive(Deserialize)]
        struct Count {
            folder_id: String,
            n: i64,
        }
        let counts: HashMap<String, i64> = ctx
            .db
            .query::<Count>(
                "SELECT folder_id, COUNT(*) AS n FROM conv_conversations \
                 WHERE user_id = $1 AND deleted_at IS NULL GROUP BY folder_id",
                &[user.into()],
            )?
            .into_iter()
            .map(|c| (c.folder_id, c.n))
            .collect();
        let mut children: HashMap<Option<String>, Vec<&Folder>> = HashMap::new();
        for folder in &folders {
            children
                .entry(folder.parent_id.clone())
                .or_default()
                .push(folder);
        }
        fn build(
            folder: &Folder,
            children: &HashMap<Option<String>, Vec<&Folder>>,
            counts: &HashMap<String, i64>,
        ) -> Node {
            Node {
                folder: folder.view(),
                conversation_count: counts.get(&folder.id).copied().unwrap_or(0),
                children: children
                    .get(&Some(folder.id.clone()))
                    .map(|kids| kids.iter().map(|k| build(k, children, counts)).collect())
                    .unwrap_or_default(),
            }
        }
        Ok::<_, ApiError>(build(&root, &children, &counts))
    })?;
    Ok(Reply::json(200, tree))
}

/// `GET /api/folders/{id}`.
pub fn get(ctx: &Ctx) -> Result<Reply, ApiError> {
    let folder = owned(&ctx.db, ctx.user(), Some(&ctx.param("id")))?;
    Ok(Reply::json(200, folder.view()))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Create {
    name: String,
    parent_id: Option<String>,
    model: Option<String>,
    system_prompt: Option<String>,
    options: Option<Json>,
}

/// `POST /api/folders` {name, parentId?, model?, systemPrompt?, options?}.
pub fn create(ctx: &Ctx) -> Result<Reply, ApiError> {
    let body: Create = read_json(ctx.request, BODY_LIMIT)?;
    let user = ctx.user();
    let mut checks = Checks::default();
    checks.text("name", &body.name, MAX_NAME);
    let defaults = Defaults {
        model: body.model,
        system_prompt: body.system_prompt,
        options: None,
    }
    .checked(&mut checks, body.options.as_ref());
    checks.finish()?;
    let parent = owned(&ctx.db, user, body.parent_id.as_deref())?;
    if ancestors(&ctx.db, &parent.id)?.len() > MAX_DEPTH {
        return Err(ApiError::new(
            400,
            "too deep",
            format!("folders nest at most {MAX_DEPTH} levels"),
        ));
    }
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let count: Option<Count> = ctx.db.query_one(
        "SELECT COUNT(*) AS n FROM conv_folders WHERE user_id = $1",
        &[user.into()],
    )?;
    if count.map_or(0, |c| c.n) >= MAX_FOLDERS {
        return Err(ApiError::new(
            400,
            "too many folders",
            format!("at most {MAX_FOLDERS} folders per user"),
        ));
    }
    let name = body.name.trim().to_owned();
    let at = now_ms();
    let folder = Folder {
        id: new_id(),
        user_id: user.to_owned(),
        parent_id: Some(parent.id),
        name,
        model: defaults.model,
        system_prompt: defaults.system_prompt,
        options: defaults.options,
        created_at: at,
        updated_at: at,
    };
    ctx.db
        .execute(
            "INSERT INTO conv_folders (id, user_id, parent_id, name, name_key, model, system_prompt, options, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9)",
            &[
                folder.id.as_str().into(),
                user.into(),
                folder.parent_id.clone().into(),
                folder.name.as_str().into(),
                folder.name.to_lowercase().into(),
                folder.model.clone().into(),
                folder.system_prompt.clone().into(),
                folder.options.clone().into(),
                at.into(),
            ],
        )
        .map_err(|e| name_taken(e, &folder.name))?;
    cached::invalidate(&[cached::folders(user)]);
    Ok(Reply::json(201, folder.view()))
}

fn name_taken(e: lamina_sdk::sql::Error, name: &str) -> ApiError {
    if e.status() == 409 {
        ApiError::new(
            409,
            "name taken",
            format!("a folder named {name:?} is already there"),
        )
    } else {
        e.into()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Update {
    name: Option<String>,
    parent_id: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    model: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    system_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    options: Option<Option<Json>>,
}

/// `PATCH /api/folders/{id}`: rename, move (`parentId`; never below
/// itself), change or clear (`null`) its defaults. The root stays where it
/// is and keeps its name.
pub fn update(ctx: &Ctx) -> Result<Reply, ApiError> {
    let user = ctx.user();
    let mut folder = owned(&ctx.db, user, Some(&ctx.param("id")))?;
    let body: Update = read_json(ctx.request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    if let Some(name) = &body.name {
        checks.text("name", name, MAX_NAME);
    }
    let is_root = folder.parent_id.is_none();
    if is_root && (body.name.is_some() || body.parent_id.is_some()) {
        checks.fail("parentId", "the root folder cannot be renamed or moved");
    }
    let mut defaults = folder.defaults();
    if let Some(model) = body.model {
        defaults.model = model;
    }
    if let Some(prompt) = body.system_prompt {
        defaults.system_prompt = prompt;
    }
    let new_options = match body.options {
        Some(None) => {
            defaults.options = None;
            None
        }
        Some(Some(options)) => Some(options),
        None => None,
    };
    let defaults = defaults.checked(&mut checks, new_options.as_ref());
    checks.finish()?;
    if let Some(parent_id) = &body.parent_id {
        let parent = owned(&ctx.db, user, Some(parent_id))?;
        let above = ancestors(&ctx.db, &parent.id)?;
        if above.contains(&folder.id) {
            return Err(ApiError::invalid(vec![lamina_sdk::api::FieldError {
                field: "parentId".into(),
                message: "a folder cannot move into itself or a folder below it".into(),
            }]));
        }
        let depth_below = subtree_depth(&ctx.db, user, &folder.id)?;
        if above.len() + depth_below > MAX_DEPTH {
            return Err(ApiError::new(
                400,
                "too deep",
                format!("folders nest at most {MAX_DEPTH} levels"),
            ));
        }
        folder.parent_id = Some(parent.id);
    }
    if let Some(name) = body.name {
        folder.name = name.trim().to_owned();
    }
    folder.model = defaults.model;
    folder.system_prompt = defaults.system_prompt;
    folder.options = defaults.options;
    folder.updated_at = now_ms();
    ctx.db
        .execute(
            "UPDATE conv_folders SET parent_id = $1, name = $2, name_key = $3, model = $4, \
             system_prompt = $5, options = $6, updated_at = $7 WHERE id = $8 AND user_id = $9",
            &[
                folder.parent_id.clone().into(),
                folder.name.as_str().into(),
                folder.name.to_lowercase().into(),
                folder.model.clone().into(),
                folder.system_prompt.clone().into(),
                folder.options.clone().into(),
                folder.updated_at.into(),
                folder.id.as_str().into(),
                user.into(),
            ],
        )
        .map_err(|e| name_taken(e, &folder.name))?;
    cached::invalidate(&[cached::folders(user)]);
    Ok(Reply::json(200, folder.view()))
}

/// Levels of folders below `id` (0 for a leaf).
fn subtree_depth(db: &impl Sql, user: &str, id: &str) -> Result<usize, ApiError> {
    #[derive(Deserialize)]
    struct Depth {
        depth: Option<i64>,
    }
    let row: Option<Depth> = db.query_one(
        "WITH RECURSIVE below (id, depth) AS ( \
             SELECT id, 0 FROM conv_folders WHERE id = $1 AND user_id = $2 \
             UNION ALL SELECT f.id, b.depth + 1 FROM conv_folders f JOIN below b ON f.parent_id = b.id) \
         SELECT MAX(depth) AS depth FROM below",
        &[id.into(), user.into()],
    )?;
    Ok(row.and_then(|r| r.depth).unwrap_or(0) as usize)
}

/// `DELETE /api/folders/{id}[?recursive=true]`.
pub fn delete(ctx: &Ctx) -> Result<Reply, ApiError> {
    let user = ctx.user();
    let folder = owned(&ctx.db, user, Some(&ctx.param("id")))?;
    let Some(parent) = folder.parent_id.clone() else {
        return Err(ApiError::new(
            409,
            "root folder",
            "the root folder cannot be deleted",
        ));
    };
    let recursive = ctx.query("recursive").as_deref() == Some("true");
    // The folder and every folder below it ($1 the folder, $2 the user).
    const BELOW: &str = "WITH RECURSIVE below (id) AS ( \
         SELECT id FROM conv_folders WHERE id = $1 AND user_id = $2 \
         UNION ALL SELECT f.id FROM conv_folders f JOIN below b ON f.parent_id = b.id)";
    let at: [Value; 2] = [folder.id.as_str().into(), user.into()];
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    #[derive(Deserialize)]
    struct Id {
        id: String,
    }
    let moved = ctx.db.transaction(|tx| {
        if !recursive {
            let held: Option<Count> = tx.query_one(
                "SELECT (SELECT COUNT(*) FROM conv_folders WHERE parent_id = $1 AND user_id = $2) \
                      + (SELECT COUNT(*) FROM conv_conversations WHERE folder_id = $1 AND user_id = $2 \
                         AND deleted_at IS NULL) AS n",
                &at,
            )?;
            if held.is_some_and(|c| c.n > 0) {
                return Err(ApiError::new(
                    409,
                    "folder not empty",
                    "the folder holds folders or conversations; delete with ?recursive=true to move its conversations to its parent",
                ));
            }
        }
        let moved: Vec<Id> = tx.query(
            &format!(
                "{BELOW} SELECT id FROM conv_conversations WHERE user_id = $2 AND folder_id IN (SELECT id FROM below)"
            ),
            &at,
        )?;
        // Trashed conversations move too, so restoring them finds a folder.
        tx.execute(
            &format!(
                "{BELOW} UPDATE conv_conversations SET folder_id = $3 \
                 WHERE user_id = $2 AND folder_id IN (SELECT id FROM below)"
            ),
            &[at[0].clone(), at[1].clone(), parent.as_str().into()],
        )?;
        tx.execute(
            &format!("{BELOW} DELETE FROM conv_folders WHERE user_id = $2 AND id IN (SELECT id FROM below)"),
            &at,
        )?;
        Ok::<_, ApiError>(moved)
    })?;
    for conversation in moved {
        cached::conversation(&conversation.id);
    }
    cached::invalidate(&[cached::folders(user)]);
    Ok(Reply::no_content())
}

/// `$first, $first+1, ...` for `n` values.
pub fn placeholders(after: usize, n: usize) -> String {
    (1..=n)
        .map(|i| format!("${}", after + i))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `GET /api/folders/{id}/contents?page=&pageSize=`: its folders (by
/// name), then its conversations (newest first), as one paged list of
/// items with a `type`.
pub fn contents(ctx: &Ctx) -> Result<Reply, ApiError> {
    let user = ctx.user();
    let folder = owned(&ctx.db, user, Some(&ctx.param("id")))?;
    let page = PageRequest::parse(
        ctx.query("page").as_deref(),
        ctx.query("pageSize").as_deref(),
    )
    .map_err(|e| ApiError::new(400, "invalid paging", e))?;
    let select = format!(
        "SELECT {COLUMNS} FROM conv_folders WHERE user_id = $1 AND parent_id = $2 ORDER BY name_key"
    );
    let children: Vec<Folder> = ctx
        .db
        .query(&select, &[user.into(), folder.id.as_str().into()])?;
    let offset = page.offset() as usize;
    let mut items: Vec<Json> = children
        .iter()
        .skip(offset)
        .take(page.page_size as usize)
        .map(|f| {
            let mut view = f.view();
            view["type"] = "folder".into();
            view
        })
        .collect();
    let filter = conversations::Filter::folder(&folder.id);
    let wanted = page.page_size as usize - items.len();
    let conversation_offset = offset.saturating_sub(children.len());
    let (conversations, total) = conversations::query(
        &ctx.db,
        user,
        &filter,
        wanted as i64,
        conversation_offset as i64,
    )?;
    items.extend(conversations.into_iter().map(|mut c| {
        c["type"] = "conversation".into();
        c
    }));
    Ok(Reply::json(
        200,
        Page::new(items, page, children.len() as u64 + total),
    ))
}
