//! The `auth_users` table.

use lamina_sdk::api::{ApiError, Caller, now, timestamp_secs};
use lamina_sdk::sql::{Database, Sql};
use serde::Deserialize;
use serde_json::json;

/// The role every account has.
pub const USER: &str = "User";
/// The administrator role.
pub const ADMIN: &str = "Admin";

/// One account.
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: String,
    pub username: String,
    pub email: String,
    pub password_hash: String,
    /// Comma-separated.
    pub roles: String,
    pub active: bool,
    pub locked_until: Option<i64>,
    pub deleted_at: Option<i64>,
    pub created_at: i64,
    /// When the current address was confirmed (`None`: not yet).
    pub email_confirmed_at: Option<i64>,
}

impl User {
    /// The roles as a list.
    pub fn roles(&self) -> Vec<String> {
        self.roles
            .split(',')
            .filter(|r| !r.is_empty())
            .map(str::to_owned)
            .collect()
    }

    /// Active, not deleted, not locked by an administrator.
    pub fn may_sign_in(&self, now: i64) -> bool {
        self.active && self.deleted_at.is_none() && self.locked_until.is_none_or(|t| t <= now)
    }

    /// What the account's owner sees.
    pub fn public(&self) -> serde_json::Value {
        json!({
            "id": self.id,
            "username": self.username,
            "email": self.email,
            "emailConfirmed": self.email_confirmed_at.is_some(),
            "roles": self.roles(),
            "createdAt": timestamp_secs(self.created_at),
        })
    }
}

pub const COLUMNS: &str = "id, username, email, password_hash, roles, active, locked_until, \
                       deleted_at, created_at, email_confirmed_at";

/// The account with this id.
pub fn by_id(db: &Database, id: &str) -> Result<Option<User>, ApiError> {
    let sql = format!("SELECT {COLUMNS} FROM auth_users WHERE id = $1");
    Ok(db.query_one(&sql, &[id.into()])?)
}

/// The caller's account; 401 once it is deleted, deactivated or locked.
/// A deleted or deactivated account is disabled at the gateway too (every
/// host refuses its tokens and API keys from then on), in case whoever
/// changed it did not; a lock, which ends by itself, is not.
pub fn current(db: &Database, caller: &Caller) -> Result<User, ApiError> {
    match by_id(db, &caller.user_id)? {
        Some(user) if user.may_sign_in(now()) => Ok(user),
        found => {
            let for_good = found.is_none_or(|u| !u.active || u.deleted_at.is_some());
            if for_good && let Err(e) = lamina_sdk::tokens::disable_subject(&caller.user_id) {
                eprintln!("cannot disable an inactive account's credentials: {e:?}");
            }
            Err(ApiError::new(
                401,
                "account not active",
                "the account is not active",
            ))
        }
    }
}

/// What the account's credentials carry: its id, name and roles now.
pub fn subject(user: &User) -> lamina_sdk::tokens::Subject {
    lamina_sdk::tokens::Subject {
        id: user.id.clone(),
        username: Some(user.username.clone()),
        roles: user.roles(),
    }
}

/// The account whose email or username (any case) is `login`.
pub fn by_login(db: &Database, login: &str) -> Result<Option<User>, ApiError> {
    let key = login.trim().to_ascii_lowercase();
    let sql = format!("SELECT {COLUMNS} FROM auth_users WHERE email = $1 OR username_key = $1");
    Ok(db.query_one(&sql, &[key.into()])?)
}
