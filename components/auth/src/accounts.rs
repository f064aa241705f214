//! Accounts: register, log in, read and change one's own profile and
//! password.

use lamina_sdk::Request;
use lamina_sdk::api::{ApiError, Caller, Reply, new_id, now, read_json};
use lamina_sdk::sql::{Database, Sql};
use serde::Deserialize;
use serde_json::json;

use crate::config::{Admin, Config};
use crate::users::{self, ADMIN, USER, User};
use crate::validate::{AccountRules, Checks};
use crate::{BODY_LIMIT, confirmations, events, lockout, password, resets, sessions, sweep};

/// The same answer for every failed login: nothing about which part failed.
fn refused() -> ApiError {
    ApiError::new(401, "login failed", "the login or the password is wrong")
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct Registration {
    username: String,
    email: String,
    password: String,
}

/// `POST /register`: creates the account, then signs in (with `require_confirmed_email`, only once
/// the address is confirmed: the answer then carries no tokens).
pub fn register(request: &Request) -> Result<Reply, ApiError> {
    let body: Registration = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    checks.username("username", &body.username);
    let email = checks.email("email", &body.email);
    checks.password("password", &body.password);
    checks.finish()?;
    let config = Config::load()?;
    let db = Database::open(crate::DATABASE)?;
    ensure_admin(&db, &config)?;
    taken(&db, None, Some(&body.username), Some(&email))?;
    let user = User {
        id: new_id(),
        username: body.username.clone(),
        email: email.clone(),
        password_hash: password::hash(&body.password)?,
        roles: USER.to_owned(),
        active: true,
        locked_until: None,
        deleted_at: None,
        created_at: now(),
        email_confirmed_at: None,
    };
    create(&db, &user)?;
    if let Err(e) = confirmations::send(&db, &config, &user) {
        eprintln!("confirmation not sent: {e:?}");
    }
    let event = json!({"userId": user.id, "username": user.username, "email": user.email});
    if let Err(e) = lamina_sdk::queue::publish("user.registered", event.to_string().as_bytes()) {
        eprintln!("user.registered not published: {e:?}");
    }
    events::audit(request, "register", Some(&user.id), json!({}));
    if config.require_confirmed_email {
        return Ok(Reply::json(201, json!({"user": user.public()})));
    }
    let issued = sessions::start(&db, &config, &user)?;
    Ok(sessions::reply(201, &config, &user, issued))
}

/// A unique violation on the accounts table, as the client sees it.
fn conflict(e: lamina_sdk::sql::Error) -> ApiError {
    match e {
        lamina_sdk::sql::Error::UniqueViolation(_) => ApiError::new(
            409,
            "already taken",
            "the username or email is already taken",
        ),
        e => e.into(),
    }
}

/// Inserts `user`.
fn create(db: &impl Sql, user: &User) -> Result<(), ApiError> {
    db.execute(
        "INSERT INTO auth_users (id, username, username_key, email, password_hash, roles, \
         active, locked_until, deleted_at, created_at, updated_at, email_confirmed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, NULL, $8, $8, $9)",
        &[
            user.id.as_str().into(),
            user.username.as_str().into(),
            user.username.to_ascii_lowercase().into(),
            user.email.as_str().into(),
            user.password_hash.as_str().into(),
            user.roles.as_str().into(),
            true.into(),
            user.created_at.into(),
            user.email_confirmed_at.into(),
        ],
    )
    .map_err(conflict)?;
    Ok(())
}

/// 409 naming the fields another account already uses. (Registration and
/// profile changes necessarily reveal that an address is taken; both are
/// rate-limited.)
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

/// Creates the administrator from the `admin_*` variables while no account
/// has the Admin role (the first start); never again after, so renaming
/// the administrator does not resurrect one. No default password exists.
fn ensure_admin(db: &Database, config: &Config) -> Result<(), ApiError> {
    let Some(Admin {
        username,
        email,
        password: secret,
    }) = &config.admin
    else {
        return Ok(());
    };
    let any_admin: Option<serde_json::Value> = db.query_one(
        "SELECT id FROM auth_users WHERE roles LIKE $1 LIMIT 1",
        &[format!("%{ADMIN}%").into()],
    )?;
    if any_admin.is_some() {
        return Ok(());
    }
    let admin = User {
        id: new_id(),
        username: username.clone(),
        email: email.trim().to_ascii_lowercase(),
        password_hash: password::hash(secret)?,
        roles: format!("{USER},{ADMIN}"),
        active: true,
        locked_until: None,
        deleted_at: None,
        created_at: now(),
        // The operator chose the address.
        email_confirmed_at: Some(now()),
    };
    match db.transaction(|tx| create(tx, &admin)) {
        // Another request created it first, or a user took the name.
        Err(e) if e.status == 409 => {
            eprintln!("administrator `{username}` not created: the name or email is taken");
            Ok(())
        }
        other => other.map(drop),
    }
}

/// A login name (email or username) and password, as `/login` and
/// `/email/confirm/resend` take them.
#[derive(Deserialize, Default)]
#[serde(default)]
pub struct Credentials {
    /// Email or username.
    #[serde(alias = "email", alias = "username")]
    login: String,
    password: String,
}

impl Credentials {
    /// Reads and checks the request's body.
    pub fn read(request: &Request) -> Result<Credentials, ApiError> {
        let body: Credentials = read_json(request, BODY_LIMIT)?;
        let mut checks = Checks::default();
        checks.text("login", &body.login, 254);
        checks.text("password", &body.password, 128);
        checks.finish()?;
        Ok(body)
    }

    /// The account they name, if the password is its and it may sign in;
    /// else one 401 for every failure. Counted against the login lockout
    /// before the password is checked, and audited.
    pub fn authenticate(
        &self,
        request: &Request,
        db: &Database,
        config: &Config,
    ) -> Result<User, ApiError> {
        let name = lockout::Key::login(config, &self.login);
        let client = lockout::Key::client(config, request);
        let keys: Vec<&lockout::Key> = [Some(&name), client.as_ref()]
            .into_iter()
            .flatten()
            .collect();
        lockout::attempt(db, config, &keys)?;
        let user = users::by_login(db, &self.login)?;
        let who = user.as_ref().map(|u| u.id.clone());
        let matches = password::verify(
            &self.password,
            user.as_ref().map(|u| u.password_hash.as_str()),
        );
        let Some(user) = user.filter(|u| matches && u.may_sign_in(now())) else {
            events::audit(
                request,
                "login.failed",
                who.as_deref(),
                json!({"outcome": "failure"}),
            );
            if let Err(locked) = lockout::failed(db, config, &keys) {
                events::audit(
                    request,
                    "lockout",
                    who.as_deref(),
                    json!({"outcome": "failure"}),
                );
                return Err(locked);
            }
            return Err(refused());
        };
        lockout::succeeded(db, &keys)?;
        Ok(user)
    }
}

/// `POST /login`.
pub fn login(request: &Request) -> Result<Reply, ApiError> {
    let credentials = Credentials::read(request)?;
    let config = Config::load()?;
    let db = Database::open(crate::DATABASE)?;
    ensure_admin(&db, &config)?;
    let user = credentials.authenticate(request, &db, &config)?;
    confirmations::required(&config, &user)?;
    let issued = sessions::start(&db, &config, &user)?;
    sweep::sweep(&db, &config);
    events::audit(request, "login", Some(&user.id), json!({}));
    Ok(sessions::reply(200, &config, &user, issued))
}

/// `GET /me`.
pub fn me(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let db = Database::open(crate::DATABASE)?;
    let user = users::current(&db, &caller)?;
    Ok(Reply::json(200, user.public()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ProfileChange {
    username: Option<String>,
    email: Option<String>,
    /// Needed to change the email.
    current_password: Option<String>,
}

/// `PATCH /me` {username?, email?, currentPassword?}: both stay unique; a
/// new email needs the current password, tells the old address, and
/// voids pending reset links.
pub fn update_me(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let change: ProfileChange = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    if let Some(username) = &change.username {
        checks.username("username", username);
    }
    let email = change.email.as_ref().map(|e| checks.email("email", e));
    checks.finish()?;
    let config = Config::load()?;
    let db = Database::open(crate::DATABASE)?;
    let mut user = users::current(&db, &caller)?;
    let new_email = email.filter(|e| *e != user.email);
    if new_email.is_some() {
        let current = change.current_password.as_deref().unwrap_or_default();
        check_current_password(&db, &config, &user, current)?;
    }
    taken(
        &db,
        Some(&user.id),
        change.username.as_deref(),
        new_email.as_deref(),
    )?;
    let old_email = user.email.clone();
    if let Some(username) = change.username {
        user.username = username;
    }
    if let Some(email) = &new_email {
        user.email = email.clone();
        user.email_confirmed_at = None;
    }
    // A new address is unconfirmed; otherwise the confirmation is left
    // alone (a confirm running meanwhile is not undone).
    db.execute(
        "UPDATE auth_users SET username = $1, username_key = $2, email = $3, updated_at = $4, \
         email_confirmed_at = CASE WHEN email = $3 THEN email_confirmed_at ELSE NULL END \
         WHERE id = $5",
        &[
            user.username.as_str().into(),
            user.username.to_ascii_lowercase().into(),
            user.email.as_str().into(),
            now().into(),
            user.id.as_str().into(),
        ],
    )
    .map_err(conflict)?;
    // The account's API keys speak with its current name.
    lamina_sdk::tokens::update_subject(&users::subject(&user))?;
    if new_email.is_some() {
        resets::cancel(&db, &user.id)?;
        let text = format!(
            "Hello {},\n\nthe email address of your Lamina account was changed to {}. \
             If you did not do this, contact an administrator.\n",
            user.username, user.email
        );
        if let Err(e) = events::mail(&old_email, "Your Lamina email address changed", &text) {
            eprintln!("email-change notice not queued: {e:?}");
        }
        if let Err(e) = confirmations::send(&db, &config, &user) {
            eprintln!("confirmation not sent: {e:?}");
        }
    }
    events::audit(request, "profile.changed", Some(&user.id), json!({}));
    Ok(Reply::json(200, user.public()))
}

/// `Ok` if `password` is `user`'s; else a 400 on `currentPassword`
/// (counted against the user, so a stolen access token cannot guess on).
fn check_current_password(
    db: &Database,
    config: &Config,
    user: &User,
    password: &str,
) -> Result<(), ApiError> {
    let key = lockout::Key::password_check(config, &user.id);
    lockout::attempt(db, config, &[&key])?;
    if password.chars().count() > 128 || !password::verify(password, Some(&user.password_hash)) {
        lockout::failed(db, config, &[&key])?;
        let mut checks = Checks::default();
        checks.fail("currentPassword", "incorrect");
        return checks.finish();
    }
    lockout::succeeded(db, &[&key])
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct PasswordChange {
    current_password: String,
    new_password: String,
}

/// `POST /me/password`: every session ends (pending reset links too); the
/// caller gets a new pair.
pub fn change_password(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let body: PasswordChange = read_json(request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    checks.password("newPassword", &body.new_password);
    checks.finish()?;
    let config = Config::load()?;
    let db = Database::open(crate::DATABASE)?;
    let user = users::current(&db, &caller)?;
    check_current_password(&db, &config, &user, &body.current_password)?;
    if body.current_password == body.new_password {
        let mut checks = Checks::default();
        checks.fail("newPassword", "must differ from the current password");
        checks.finish()?;
    }
    // Revoking first: if it fails, nothing has changed yet.
    sessions::revoke_all(&db, &user.id)?;
    resets::cancel(&db, &user.id)?;
    set_password(&db, &user.id, &body.new_password)?;
    events::audit(request, "password.changed", Some(&user.id), json!({}));
    let issued = sessions::start(&db, &config, &user)?;
    Ok(sessions::reply(200, &config, &user, issued))
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase", deny_unknown_fields)]
struct Deletion {
    current_password: String,
}

/// `DELETE /me` `{currentPassword}`: the account goes for good, and every
/// service deletes what it holds of the user (`user.deleted`). The last
/// active administrator cannot (409).
pub fn delete_me(request: &Request) -> Result<Reply, ApiError> {
    let caller = Caller::required(request)?;
    let body: Deletion = read_json(request, BODY_LIMIT)?;
    let config = Config::load()?;
    let db = Database::open(crate::DATABASE)?;
    let user = users::current(&db, &caller)?;
    check_current_password(&db, &config, &user, &body.current_password)?;
    crate::admin::erase(&db, &user)?;
    events::audit(
        request,
        "account.deleted",
        Some(&user.id),
        json!({"target": user.id}),
    );
    Ok(Reply::no_content())
}

/// Stores a new password hash for `user_id`.
pub fn set_password(db: &impl Sql, user_id: &str, password: &str) -> Result<(), ApiError> {
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
