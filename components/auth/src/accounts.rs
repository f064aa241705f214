//! Accounts: register, log in, read and change one's own profile and
//! password.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, AuthMethod, Caller, Reply, new_id, now, read_json};
use lamina_sdk::sql::{Database, Transaction};
use serde::Deserialize;
use serde_json::json;

use crate::config::{Admin, Config};
use crate::users::{self, ADMIN, USER, User};
use crate::validate::Checks;
use crate::{BODY_LIMIT, events, lockout, password, sessions};

/// The same answer for every failed login: nothing about which part failed.
fn refused() -> ApiError {
    ApiError::new(401, "login failed", "the login or the password is wrong")
}

#[derive(Deserialize)]
#[serde(default)]
#[derive(Default)]
struct Registration {
    username: String,
    email: String,
    password: String,
}

/// `POST /register`: creates the account and its root folder in one
/// transaction, then signs in.
pub fn register(request: &Request) -> Result<Reply, ApiError> {
    let body: Registration = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    checks.username("username", &body.username);
    let email = checks.email("email", &body.email);
    checks.password("password", &body.password);
    checks.finish()?;
    let config = Config::load()?;
    let db = Database::open("default")?;
    ensure_admin(&db, &config)?;
    taken(&db, None, Some(&body.username), Some(&email))?;
    let hash = password::hash(&body.password)?;
    let now = now();
    let user = User {
        id: new_id(),
        username: body.username.clone(),
        email: email.clone(),
        password_hash: hash,
        roles: USER.to_owned(),
        active: true,
        locked_until: None,
        deleted_at: None,
        created_at: now,
    };
    let root = db.transaction(|tx| create(tx, &user))?;
    let issued = sessions::issue(&db, &config, &user, None)?;
    let event = json!({"userId": user.id, "username": user.username, "email": user.email});
    if let Err(e) = lamina_sdk::queue::publish("user.registered", event.to_string().as_bytes()) {
        eprintln!("user.registered not published: {e:?}");
    }
    events::audit(request, "register", Some(&user.id), json!({}));
    Ok(sessions::reply(201, &config, &user, issued, Some(root)))
}

/// Inserts `user` and its root folder; returns the folder's id.
fn create(tx: &Transaction, user: &User) -> Result<String, ApiError> {
    tx.execute(
        "INSERT INTO auth_users (id, username, username_key, email, password_hash, roles, \
         active, locked_until, deleted_at, created_at, updated_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $8)",
        &[
            user.id.as_str().into(),
            user.username.as_str().into(),
            user.username.to_ascii_lowercase().into(),
            user.email.as_str().into(),
            user.password_hash.as_str().into(),
            user.roles.as_str().into(),
            true.into(),
            user.created_at.into(),
        ],
    )
    .map_err(|e| match e {
        lamina_sdk::sql::Error::UniqueViolation(_) => ApiError::new(
            409,
            "already taken",
            "the username or email is already taken",
        ),
        e => e.into(),
    })?;
    let folder = new_id();
    tx.execute(
        "INSERT INTO folders (id, user_id, parent_id, name, created_at) VALUES ($1, $2, NULL, 'Root', $3)",
        &[folder.as_str().into(), user.id.as_str().into(), user.created_at.into()],
    )?;
    Ok(folder)
}

/// 409 naming the fields another account already uses.
fn taken(
    db: &Database,
    except: Option<&str>,
    username: Option<&str>,
    email: Option<&str>,
) -> Result<(), ApiError> {
    #[derive(Deserialize)]
    struct Row {
        username_key: String,
        email: String,
    }
    let key = username.map(str::to_ascii_lowercase).unwrap_or_default();
    let email = email.unwrap_or_default();
    let rows: Vec<Row> = db.query(
        "SELECT username_key, email FROM auth_users WHERE (username_key = $1 OR email = $2) AND id <> $3",
        &[key.as_str().into(), email.into(), except.unwrap_or("").into()],
    )?;
    let mut checks = Checks::default();
    if rows
        .iter()
        .any(|r| !key.is_empty() && r.username_key == key)
    {
        checks.fail("username", "already taken");
    }
    if rows.iter().any(|r| !email.is_empty() && r.email == email) {
        checks.fail("email", "already taken");
    }
    checks.finish().map_err(|mut e| {
        e.status = 409;
        e.title = "already taken".to_owned();
        e
    })
}

/// Creates the administrator from `admin_*` variables if no account has
/// its username or email yet (the first start). There is no default
/// password anywhere.
fn ensure_admin(db: &Database, config: &Config) -> Result<(), ApiError> {
    let Some(Admin {
        username,
        email,
        password: secret,
    }) = &config.admin
    else {
        return Ok(());
    };
    let email = email.trim().to_ascii_lowercase();
    let existing: Option<serde_json::Value> = db.query_one(
        "SELECT id FROM auth_users WHERE username_key = $1 OR email = $2",
        &[username.to_ascii_lowercase().into(), email.as_str().into()],
    )?;
    if existing.is_some() {
        return Ok(());
    }
    let admin = User {
        id: new_id(),
        username: username.clone(),
        email,
        password_hash: password::hash(secret)?,
        roles: format!("{USER},{ADMIN}"),
        active: true,
        locked_until: None,
        deleted_at: None,
        created_at: now(),
    };
    match db.transaction(|tx| create(tx, &admin)) {
        // Another request created it first.
        Err(e) if e.status == 409 => Ok(()),
        other => other.map(drop),
    }
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Login {
    /// Email or username.
    #[serde(alias = "email", alias = "username")]
    login: String,
    password: String,
}

/// `POST /login`.
pub fn login(request: &Request) -> Result<Reply, ApiError> {
    let body: Login = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    checks.text("login", &body.login, 254);
    checks.text("password", &body.password, 128);
    checks.finish()?;
    let config = Config::load()?;
    let db = Database::open("default")?;
    ensure_admin(&db, &config)?;
    lockout::check(&db, &body.login)?;
    let user = users::by_login(&db, &body.login)?;
    let matches = password::verify(
        &body.password,
        user.as_ref().map(|u| u.password_hash.as_str()),
    );
    let who = user.as_ref().map(|u| u.id.clone());
    let user = user.filter(|u| matches && u.may_sign_in(now()));
    let Some(user) = user else {
        let locked = lockout::fail(&db, &config, &body.login)?;
        events::audit(
            request,
            "login.failed",
            who.as_deref(),
            json!({"locked": locked}),
        );
        if locked {
            events::audit(request, "lockout", who.as_deref(), json!({}));
            return Err(lockout::locked(now() + config.lockout_window));
        }
        return Err(refused());
    };
    lockout::clear(&db, &body.login)?;
    let issued = sessions::issue(&db, &config, &user, None)?;
    let root = users::root_folder(&db, &user.id)?;
    events::audit(request, "login", Some(&user.id), json!({}));
    Ok(sessions::reply(200, &config, &user, issued, root))
}

/// The caller's account (404 once it is deleted).
fn current(db: &Database, caller: &Caller) -> Result<User, ApiError> {
    users::by_id(db, &caller.user_id)?
        .filter(|u| u.deleted_at.is_none())
        .ok_or_else(|| ApiError::not_found("the account no longer exists"))
}

/// `GET /me`.
pub fn me(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let db = Database::open("default")?;
    let user = current(&db, &caller)?;
    let mut body = user.public();
    body["rootFolderId"] = users::root_folder(&db, &user.id)?.into();
    Ok(Reply::json(200, body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileChange {
    username: Option<String>,
    email: Option<String>,
}

/// `PATCH /me` {username?, email?}: both stay unique.
pub fn update_me(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let change: ProfileChange = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    if let Some(username) = &change.username {
        checks.username("username", username);
    }
    let email = change.email.as_ref().map(|e| checks.email("email", e));
    checks.finish()?;
    let db = Database::open("default")?;
    let mut user = current(&db, &caller)?;
    taken(
        &db,
        Some(&user.id),
        change.username.as_deref(),
        email.as_deref(),
    )?;
    if let Some(username) = change.username {
        user.username = username;
    }
    if let Some(email) = email {
        user.email = email;
    }
    db.execute(
        "UPDATE auth_users SET username = $1, username_key = $2, email = $3, updated_at = $4 WHERE id = $5",
        &[
            user.username.as_str().into(),
            user.username.to_ascii_lowercase().into(),
            user.email.as_str().into(),
            now().into(),
            user.id.as_str().into(),
        ],
    )
    .map_err(|e| match e {
        lamina_sdk::sql::Error::UniqueViolation(_) => {
            ApiError::new(409, "already taken", "the username or email is already taken")
        }
        e => e.into(),
    })?;
    events::audit(request, "profile.changed", Some(&user.id), json!({}));
    Ok(Reply::json(200, user.public()))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /me/password`: every other session ends; the caller gets a new
/// pair.
pub fn change_password(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    if caller.method == AuthMethod::ApiKey {
        return Err(ApiError::new(
            403,
            "session required",
            "changing the password needs a login session, not an API key",
        ));
    }
    let body: PasswordChange = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    checks.password("newPassword", &body.new_password);
    checks.finish()?;
    let config = Config::load()?;
    let db = Database::open("default")?;
    let user = current(&db, &caller)?;
    let mut checks = Checks::default();
    if body.current_password.len() > 128
        || !password::verify(&body.current_password, Some(&user.password_hash))
    {
        checks.fail("currentPassword", "incorrect");
    } else if body.current_password == body.new_password {
        checks.fail("newPassword", "must differ from the current password");
    }
    checks.finish()?;
    set_password(&db, &user.id, &body.new_password)?;
    sessions::revoke_all(&db, &user.id)?;
    events::audit(request, "password.changed", Some(&user.id), json!({}));
    let issued = sessions::issue(&db, &config, &user, None)?;
    let root = users::root_folder(&db, &user.id)?;
    Ok(sessions::reply(200, &config, &user, issued, root))
}

/// Stores a new password hash for `user_id`.
pub fn set_password(db: &Database, user_id: &str, password: &str) -> Result<(), ApiError> {
    db.execute(
        "UPDATE auth_users SET password_hash = $1, updated_at = $2 WHERE id = $3",
        &[
            password::hash(password)?.into(),
            now().into(),
            user_id.into(),
        ],
    )?;
    Ok(())
}
