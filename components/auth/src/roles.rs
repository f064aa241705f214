//! `/api/admin/roles`: the roles administrators can give accounts.
//!
//! A role's name is 3–50 of `[A-Za-z0-9_-]` and unique whatever its case
//! (409); its description at most 200 characters. `User` and `Admin` are
//! built in; a role some account holds cannot be deleted (409).

use lamina_sdk::api::{ApiError, Reply, now, read_json, timestamp_secs};
use lamina_sdk::sql::{Database, Sql, like_escape};
use lamina_sdk::{Request, limits};
use serde::Deserialize;
use serde_json::json;

use crate::admin::administrator;
use crate::validate::Checks;
use crate::{BODY_LIMIT, DATABASE, events};

#[derive(Deserialize)]
struct Role {
    name: String,
    description: String,
    builtin: bool,
    created_at: i64,
}

impl Role {
    fn json(&self, holders: i64) -> serde_json::Value {
        json!({
            "name": self.name,
            "description": self.description,
            "builtin": self.builtin,
            "users": holders,
            "createdAt": timestamp_secs(self.created_at),
        })
    }
}

/// The role named `name` (any case), as stored.
pub fn find(db: &impl Sql, name: &str) -> Result<Option<String>, ApiError> {
    #[derive(Deserialize)]
    struct Name {
        name: String,
    }
    let found: Option<Name> = db.query_one(
        "SELECT name FROM auth_roles WHERE name_key = $1",
        &[name.to_ascii_lowercase().into()],
    )?;
    Ok(found.map(|r| r.name))
}

/// The `LIKE … ESCAPE '\'` pattern matching `role` in `',' || roles || ','`.
pub fn holding(role: &str) -> String {
    format!("%,{},%", like_escape(role))
}

/// Accounts (deleted ones included) holding `role`.
pub fn holders(db: &impl Sql, role: &str) -> Result<i64, ApiError> {
    #[derive(Deserialize)]
    struct Count {
        n: i64,
    }
    let count: Option<Count> = db.query_one(
        "SELECT COUNT(*) AS n FROM auth_users WHERE (',' || roles || ',') LIKE $1 ESCAPE '\\'",
        &[holding(role).into()],
    )?;
    Ok(count.map_or(0, |c| c.n))
}

/// `GET /api/admin/roles`: every role with how many accounts hold it.
pub fn list(request: &Request) -> Result<Reply, ApiError> {
    administrator(request)?;
    let db = Database::open(DATABASE)?;
    let roles: Vec<Role> = db.query(
        "SELECT name, description, builtin, created_at FROM auth_roles ORDER BY name_key",
        &[],
    )?;
    let mut items = Vec::with_capacity(roles.len());
    for role in &roles {
        items.push(role.json(holders(&db, &role.name)?));
    }
    Ok(Reply::json(200, json!({"items": items})))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRole {
    name: String,
    #[serde(default)]
    description: String,
}

/// `POST /api/admin/roles` `{name, description?}` → 201.
pub fn create(request: &Request) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let body: NewRole = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    let valid_name = (3..=50).contains(&body.name.len())
        && body
            .name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !valid_name {
        checks.fail("name", "3 to 50 letters, digits, '_' or '-'");
    }
    checks.long_text("description", &body.description, 200);
    checks.finish()?;
    let db = Database::open(DATABASE)?;
    let role = Role {
        name: body.name,
        description: body.description.trim().to_owned(),
        builtin: false,
        created_at: now(),
    };
    db.execute(
        "INSERT INTO auth_roles (name, name_key, description, builtin, created_at) \
         VALUES ($1, $2, $3, FALSE, $4)",
        &[
            role.name.as_str().into(),
            role.name.to_ascii_lowercase().into(),
            role.description.as_str().into(),
            role.created_at.into(),
        ],
    )
    .map_err(|e| match e {
        lamina_sdk::sql::Error::UniqueViolation(_) => ApiError::new(
            409,
            "role exists",
            format!("a role named `{}` exists", role.name),
        ),
        e => e.into(),
    })?;
    events::audit(
        request,
        "admin.role.created",
        Some(&caller.user_id),
        json!({"role": role.name, "target": format!("role:{}", role.name)}),
    );
    Ok(Reply::json(201, role.json(0)))
}

/// `DELETE /api/admin/roles/{name}` → 204; 409 for a built-in role or
/// one an account holds.
pub fn delete(request: &Request, name: &str) -> Result<Reply, ApiError> {
    let caller = administrator(request)?;
    let db = Database::open(DATABASE)?;
    let name = db.transaction(|tx| {
        let role: Option<Role> = tx.query_one(
            "SELECT name, description, builtin, created_at FROM auth_roles WHERE name_key = $1",
            &[name.to_ascii_lowercase().into()],
        )?;
        let role = role.ok_or_else(|| ApiError::not_found(format!("no role `{name}`")))?;
        if role.builtin {
            return Err(ApiError::new(
                409,
                "built-in role",
                format!("`{}` is built in", role.name),
            ));
        }
        let held = holders(tx, &role.name)?;
        if held > 0 {
            return Err(ApiError::new(
                409,
                "role in use",
                format!(
                    "{held} accounts hold `{}`: take it from them first",
                    role.name
                ),
            ));
        }
        // Its model list goes first: a role made again later must not
        // inherit it (and if this fails, the role stays).
        limits::set_models(&limits::Scope::Role(role.name.clone()), None)?;
        tx.execute(
            "DELETE FROM auth_roles WHERE name = $1",
            &[role.name.as_str().into()],
        )?;
        Ok(role.name)
    })?;
    events::audit(
        request,
        "admin.role.deleted",
        Some(&caller.user_id),
        json!({"role": name, "target": format!("role:{name}")}),
    );
    Ok(Reply::no_content())
}
