//! The auth service (`components/auth`) and the outbox, end to end: the
//! application's own spin.toml and migrations, a real host, PostgreSQL (a
//! fresh schema per test) and, for revocations shared by two hosts, Redis.

use std::time::{Duration, Instant};

use lamina_tests::{
    ADMIN_PASSWORD, Host, HostOptions, PgSchema, REDIS_URL, RedisPrefix, USER_PASSWORD, admin_poll,
    client, expect_problem, register, unique,
};
use serde_json::{Value, json};

const SECRET: &str = "auth-tests-secret-at-least-32-bytes-long";

/// The application on a fresh PostgreSQL schema, with an administrator and
/// extra runtime-config / environment.
fn app(schema: &PgSchema, config: &str, env: &[(&str, &str)]) -> Host {
    let mut options = HostOptions::app()
        .databases(&schema.databases())
        .runtime_config(config)
        .env("LAMINA_JWT_SECRET", SECRET)
        .env("LAMINA_VAR_DEV_MAILBOX", "true")
        .with_admin();
    for (key, value) in env {
        options = options.env(key, value);
    }
    Host::start(options)
}

/// The application on the embedded defaults (SQLite in `dir`, in-process
/// queue and revocations), with an administrator.
fn embedded(dir: &std::path::Path) -> Host {
    Host::start(
        HostOptions::app()
            .data_dir(dir)
            .env("LAMINA_JWT_SECRET", SECRET)
            .env("LAMINA_VAR_DEV_MAILBOX", "true")
            .with_admin(),
    )
}

async fn call(
    host: &Host,
    method: &str,
    path: &str,
    bearer: Option<&str>,
    body: Option<Value>,
) -> reqwest::Response {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client().request(method, host.at(path));
    if let Some(bearer) = bearer {
        request = request.bearer_auth(bearer);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.unwrap()
}

async fn ok(response: reqwest::Response, status: u16) -> Value {
    let got = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_eq!(got, status, "{text}");
    if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap()
    }
}

async fn login(host: &Host, login: &str, password: &str) -> reqwest::Response {
    call(
        host,
        "POST",
        "/api/auth/login",
        None,
        Some(json!({"login": login, "password": password})),
    )
    .await
}

/// `POST /password/forgot` for `email`: always 202; returns the answer.
async fn forgot(host: &Host, email: &str) -> Value {
    ok(
        call(
            host,
            "POST",
            "/api/auth/password/forgot",
            None,
            Some(json!({"email": email})),
        )
        .await,
        202,
    )
    .await
}

fn token(body: &Value, field: &str) -> String {
    body[field]
        .as_str()
        .unwrap_or_else(|| panic!("no {field} in {body}"))
        .to_owned()
}

#[tokio::test]
async fn register_login_refresh_and_logout_on_postgres() {
    let schema = PgSchema::new();
    sign_in_flow(&app(&schema, "", &[])).await;
}

#[tokio::test]
async fn register_login_refresh_and_logout_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    sign_in_flow(&embedded(dir.path())).await;
}

/// Every endpoint of a session's life, success and failure.
async fn sign_in_flow(host: &Host) {
    let (username, email, registered) = register(host).await;
    assert_eq!(registered["user"]["username"], username);
    assert_eq!(registered["user"]["email"], email);
    assert_eq!(registered["user"]["roles"], json!(["User"]));
    // Folders belong to the conversation service: no folder here.
    assert!(registered.get("rootFolderId").is_none(), "{registered}");
    assert_eq!(registered["tokenType"], "Bearer");

    // Every bad field is named; names and addresses are taken once.
    let problem = expect_problem(
        call(
            host,
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"username": "x", "email": "nope", "password": "short"})),
        )
        .await,
        400,
    )
    .await;
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["username", "email", "password"], "{problem}");
    let problem = expect_problem(
        call(
            host,
            "POST",
            "/api/auth/register",
            None,
            Some(
                json!({"username": username.to_uppercase(), "email": email, "password": USER_PASSWORD}),
            ),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2, "{problem}");
    expect_problem(
        call(host, "POST", "/api/auth/register", None, Some(json!([1]))).await,
        400,
    )
    .await;

    // Log in by email or username; a wrong password and an unknown user get
    // the very same answer.
    let by_email = ok(login(host, &email.to_uppercase(), USER_PASSWORD).await, 200).await;
    assert_eq!(by_email["user"]["id"], registered["user"]["id"]);
    ok(login(host, &username, USER_PASSWORD).await, 200).await;
    let wrong = expect_problem(login(host, &username, "Wrong-password-1").await, 401).await;
    let unknown = expect_problem(login(host, "nobody-at-all", "Wrong-password-1").await, 401).await;
    assert_eq!(wrong, unknown);

    let access = token(&by_email, "accessToken");
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.set_audience(&["lamina"]);
    validation.set_issuer(&["lamina"]);
    let claims = jsonwebtoken::decode::<Value>(
        &access,
        &jsonwebtoken::DecodingKey::from_secret(SECRET.as_bytes()),
        &validation,
    )
    .unwrap()
    .claims;
    assert_eq!(claims["sub"], registered["user"]["id"]);
    assert_eq!(claims["username"], username.as_str());
    assert_eq!(claims["roles"], json!(["User"]));
    let lifetime = claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap();
    assert_eq!(lifetime, 900, "{claims}");
    assert!(claims["jti"].is_string());
    let me = ok(
        call(host, "GET", "/api/auth/me", Some(&access), None).await,
        200,
    )
    .await;
    assert_eq!(me["username"], username);
    expect_problem(call(host, "GET", "/api/auth/me", None, None).await, 401).await;

    // Refresh rotates; presenting the old token again revokes the family,
    // including the access token issued with the newest pair.
    let first = token(&by_email, "refreshToken");
    let rotated = call(
        host,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refreshToken": first})),
    )
    .await;
    assert!(
        rotated.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("HttpOnly")
    );
    let rotated = ok(rotated, 200).await;
    let second = token(&rotated, "refreshToken");
    assert_ne!(first, second);
    let newest_access = token(&rotated, "accessToken");
    ok(
        call(host, "GET", "/api/auth/me", Some(&newest_access), None).await,
        200,
    )
    .await;
    expect_problem(
        call(
            host,
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refreshToken": first})),
        )
        .await,
        401,
    )
    .await;
    expect_problem(
        call(
            host,
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refreshToken": second})),
        )
        .await,
        401,
    )
    .await;
    expect_problem(
        call(host, "GET", "/api/auth/me", Some(&newest_access), None).await,
        401,
    )
    .await;
    // The refresh cookie works without a body or an access token.
    let session = ok(login(host, &username, USER_PASSWORD).await, 200).await;
    let cookie = format!("lamina_refresh={}", token(&session, "refreshToken"));
    let by_cookie = client()
        .post(host.at("/api/auth/refresh"))
        .header("cookie", cookie)
        .send()
        .await
        .unwrap();
    let by_cookie = ok(by_cookie, 200).await;

    // Logout: the access token fails at once, the session's refresh token too.
    let access = token(&by_cookie, "accessToken");
    let out = call(host, "POST", "/api/auth/logout", Some(&access), None).await;
    assert!(
        out.headers()["set-cookie"]
            .to_str()
            .unwrap()
            .contains("Max-Age=0")
    );
    ok(out, 204).await;
    expect_problem(
        call(host, "GET", "/api/auth/me", Some(&access), None).await,
        401,
    )
    .await;
    expect_problem(
        call(
            host,
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refreshToken": token(&by_cookie, "refreshToken")})),
        )
        .await,
        401,
    )
    .await;

    // Every one of those is in the audit log.
    let user_id = registered["user"]["id"].as_str().unwrap().to_owned();
    let audit = admin_poll(
        host,
        &format!("/api/outbox/audit?userId={user_id}"),
        |events| {
            let names: Vec<&str> = events
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["event"].as_str().unwrap())
                .collect();
            [
                "register",
                "login",
                "login.failed",
                "refresh.reuse",
                "logout",
            ]
            .iter()
            .all(|n| names.contains(n))
        },
    )
    .await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["userId"] == user_id.as_str())
    );
    assert!(!audit.to_string().contains(USER_PASSWORD));
}

/// The tokens of the confirmation links mailed to `email`, once there
/// are `n` of them.
async fn confirmation_tokens(host: &Host, email: &str, n: usize) -> Vec<String> {
    let is_confirmation = |m: &Value| m["subject"].as_str().unwrap().contains("Confirm");
    let mail = admin_poll(host, &format!("/api/outbox/mail?to={email}"), |m| {
        m.as_array()
            .unwrap()
            .iter()
            .filter(|m| is_confirmation(m))
            .count()
            >= n
    })
    .await;
    mail.as_array()
        .unwrap()
        .iter()
        .filter(|m| is_confirmation(m))
        .map(|m| {
            let body = m["body"].as_str().unwrap();
            let token = link_token(body);
            assert_eq!(token.len(), 64, "{body}");
            token
        })
        .collect()
}

async fn confirm(host: &Host, token: &str) -> reqwest::Response {
    call(
        host,
        "POST",
        "/api/auth/email/confirm",
        None,
        Some(json!({ "token": token })),
    )
    .await
}

/// The token of the link in a mail's text (`…?token=<64 hex>`).
fn link_token(text: &str) -> String {
    text.split("token=")
        .nth(1)
        .unwrap_or_else(|| panic!("no link in {text}"))
        .chars()
        .take_while(char::is_ascii_hexdigit)
        .collect()
}

/// `PATCH /me` to a new address, with the current password.
async fn change_email(host: &Host, access: &str, email: &str) -> reqwest::Response {
    call(
        host,
        "PATCH",
        "/api/auth/me",
        Some(access),
        Some(json!({"email": email, "currentPassword": USER_PASSWORD})),
    )
    .await
}

/// Registration mails a confirmation link (never in a response) that
/// confirms the address once; a new address needs a new confirmation; with
/// `require_confirmed_email` an unconfirmed account gets no session (no
/// tokens at registration, 403 on login and refresh), and a new link needs
/// the password, at most one per resend interval.
#[tokio::test]
async fn email_addresses_are_confirmed_by_mail() {
    let schema = PgSchema::new();
    let host = app(
        &schema,
        "",
        &[
            ("LAMINA_VAR_REQUIRE_CONFIRMED_EMAIL", "true"),
            ("LAMINA_VAR_EMAIL_CONFIRMATION_RESEND_INTERVAL", "2"),
        ],
    );
    let (username, email, registered) = register(&host).await;
    assert_eq!(registered["user"]["emailConfirmed"], false);
    assert!(registered.get("accessToken").is_none(), "{registered}");
    assert!(registered.get("refreshToken").is_none(), "{registered}");
    expect_problem(login(&host, &username, USER_PASSWORD).await, 403).await;
    let tokens = confirmation_tokens(&host, &email, 1).await;
    assert!(!registered.to_string().contains(&tokens[0]));
    expect_problem(confirm(&host, "00").await, 400).await;
    expect_problem(confirm(&host, &"0".repeat(64)).await, 400).await;
    assert_eq!(
        ok(confirm(&host, &tokens[0]).await, 200).await,
        json!({"emailConfirmed": true})
    );
    expect_problem(confirm(&host, &tokens[0]).await, 400).await; // used up
    let session = ok(login(&host, &username, USER_PASSWORD).await, 200).await;
    assert_eq!(session["user"]["emailConfirmed"], true);

    // A new address is unconfirmed until its own link is used; meanwhile
    // the session cannot be refreshed, nor a new one started.
    let access = token(&session, "accessToken");
    let new_email = format!("new-{email}");
    let moved = ok(change_email(&host, &access, &new_email).await, 200).await;
    assert_eq!(moved["emailConfirmed"], false);
    let refresh = json!({"refreshToken": token(&session, "refreshToken")});
    let refreshed = call(&host, "POST", "/api/auth/refresh", None, Some(refresh)).await;
    expect_problem(refreshed, 403).await;
    expect_problem(login(&host, &username, USER_PASSWORD).await, 403).await;
    let resend = |password: &'static str| {
        call(
            &host,
            "POST",
            "/api/auth/email/confirm/resend",
            None,
            Some(json!({"login": username, "password": password})),
        )
    };
    expect_problem(resend("Wrong-password-1").await, 401).await;
    // Right after the change's link: the same answer, no second mail.
    ok(resend(USER_PASSWORD).await, 202).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    ok(resend(USER_PASSWORD).await, 202).await;
    // The change's link and the one resent later: only the newest works.
    let tokens = confirmation_tokens(&host, &new_email, 2).await;
    assert_eq!(tokens.len(), 2);
    let mut statuses = Vec::new();
    for t in &tokens {
        statuses.push(confirm(&host, t).await.status().as_u16());
    }
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400]);
    ok(login(&host, &username, USER_PASSWORD).await, 200).await;
    ok(resend(USER_PASSWORD).await, 200).await; // already confirmed
}

/// Logins and refreshes delete dead rows (expired refresh tokens,
/// long-idle sessions with none left, expired reset tokens, spent
/// login-failure counters) and leave live ones alone.
#[tokio::test]
async fn dead_rows_are_swept_by_logins_and_refreshes() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    let (username, _, registered) = register(&host).await;
    let user = registered["user"]["id"].as_str().unwrap().to_owned();
    let dead_session = |name: &str| {
        format!(
            "INSERT INTO auth_sessions (id, user_id, created_at, last_used_at, revoked_at) \
             VALUES ('{name}', '{user}', 1, 1, NULL); \
             INSERT INTO auth_refresh_tokens (token_hash, user_id, session_id, access_token_id, \
             access_expires_at, created_at, expires_at, revoked_at) \
             VALUES ('{name}-token', '{user}', '{name}', '{name}-jti', 2, 1, 2, NULL);"
        )
    };
    schema.psql(
        "auth",
        &format!(
            "{} \
         INSERT INTO auth_password_resets (token_hash, user_id, expires_at, used_at) \
         VALUES ('old-reset', '{user}', 2, NULL); \
         INSERT INTO auth_login_failures (login_key, failures, window_ends, locked_until) \
         VALUES ('old-name', 3, 2, NULL), ('locked-name', 5, 2, 9999999999);",
            dead_session("old")
        ),
    );
    let count = |table: &str, condition: &str| {
        schema.psql_value(
            "auth",
            &format!("SELECT count(*) FROM {table} WHERE {condition}"),
        )
    };
    let session = ok(login(&host, &username, USER_PASSWORD).await, 200).await;
    assert_eq!(count("auth_refresh_tokens", "session_id = 'old'"), "0");
    assert_eq!(count("auth_sessions", "id = 'old'"), "0");
    assert_eq!(
        count("auth_password_resets", "token_hash = 'old-reset'"),
        "0"
    );
    assert_eq!(count("auth_login_failures", "login_key = 'old-name'"), "0");
    // Still locked: kept.
    assert_eq!(
        count("auth_login_failures", "login_key = 'locked-name'"),
        "1"
    );
    // The registration's and the login's sessions, each with its token.
    assert_eq!(count("auth_sessions", &format!("user_id = '{user}'")), "2");
    assert_eq!(
        count("auth_refresh_tokens", &format!("user_id = '{user}'")),
        "2"
    );

    schema.psql("auth", &dead_session("older"));
    let refreshed = call(
        &host,
        "POST",
        "/api/auth/refresh",
        None,
        Some(json!({"refreshToken": token(&session, "refreshToken")})),
    )
    .await;
    ok(refreshed, 200).await;
    assert_eq!(count("auth_sessions", "id = 'older'"), "0");
    // The rotated-out token stays until it expires (reuse is detected).
    assert_eq!(
        count("auth_refresh_tokens", &format!("user_id = '{user}'")),
        "3"
    );
}

/// Failed logins delay the name (known or not) after each round of
/// `lockout_threshold`, twice as long each time in a row, never for good:
/// the owner's right password works once the delay is over, and clears
/// the escalation.
#[tokio::test]
async fn failed_logins_delay_the_name_longer_each_time() {
    let schema = PgSchema::new();
    let host = app(
        &schema,
        "",
        &[
            ("LAMINA_VAR_LOCKOUT_THRESHOLD", "3"),
            ("LAMINA_VAR_LOCKOUT_DELAY", "2"),
            ("LAMINA_VAR_LOCKOUT_WINDOW", "60"),
        ],
    );
    let (username, _, _) = register(&host).await;
    let round = |name: String| {
        let host = &host;
        async move {
            for _ in 0..2 {
                expect_problem(login(host, &name, "Wrong-password-1").await, 401).await;
            }
            let delayed = login(host, &name, "Wrong-password-1").await;
            assert_eq!(delayed.status(), 429);
            delayed.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse::<u64>()
                .unwrap()
        }
    };
    // Times are whole seconds: a delay of N s says N or N - 1.
    let first = round(username.clone()).await;
    assert!((1..=2).contains(&first), "{first}");
    // Even the right password waits.
    assert_eq!(login(&host, &username, USER_PASSWORD).await.status(), 429);
    tokio::time::sleep(Duration::from_secs(first + 1)).await;
    // The next round's delay is twice as long.
    let second = round(username.clone()).await;
    assert!((3..=4).contains(&second), "{second}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(login(&host, &username, USER_PASSWORD).await.status(), 429);
    tokio::time::sleep(Duration::from_secs(second - 1)).await;
    ok(login(&host, &username, USER_PASSWORD).await, 200).await;
    // The success forgot the escalation: back to the first delay.
    assert!((1..=2).contains(&round(username.clone()).await));
    // An unknown name is delayed the very same way.
    assert!((1..=2).contains(&round("ghost-user".to_owned()).await));
}

/// One client address cannot spread its guesses over many names: past
/// `client_lockout_threshold` failures it is delayed whatever name it
/// tries, while the names themselves are far from their own limit.
#[tokio::test]
async fn one_client_cannot_spread_guesses_over_many_names() {
    let schema = PgSchema::new();
    let host = app(
        &schema,
        "",
        &[
            ("LAMINA_VAR_LOCKOUT_THRESHOLD", "100"),
            ("LAMINA_VAR_CLIENT_LOCKOUT_THRESHOLD", "4"),
        ],
    );
    for n in 0..3 {
        let name = format!("name-{n}");
        expect_problem(login(&host, &name, "Wrong-password-1").await, 401).await;
    }
    // The fourth failure starts the client's delay...
    expect_problem(login(&host, "name-3", "Wrong-password-1").await, 429).await;
    // ...which holds for a name it never tried.
    let delayed = login(&host, "name-new", "Wrong-password-1").await;
    assert_eq!(delayed.status(), 429);
    assert!(delayed.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn password_reset_goes_through_the_mailbox_only() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    let (username, email, registered) = register(&host).await;
    let old_access = token(&registered, "accessToken");
    let known = forgot(&host, &email).await;
    let unknown = forgot(&host, "nobody@example.com").await;
    assert_eq!(known, unknown);

    // A user may not read the mailbox; the administrator may.
    expect_problem(
        call(&host, "GET", "/api/outbox/mail", Some(&old_access), None).await,
        403,
    )
    .await;
    let mail = admin_poll(&host, &format!("/api/outbox/mail?to={email}"), |m| {
        m.as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"].as_str().unwrap().contains("Reset"))
    })
    .await;
    let body = mail
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["subject"].as_str().unwrap().contains("Reset"))
        .unwrap()["body"]
        .as_str()
        .unwrap()
        .to_owned();
    let reset_token = link_token(&body);
    assert_eq!(reset_token.len(), 64);
    assert!(!known.to_string().contains(&reset_token));
    // Asked again at once: the same answer, and no second mail.
    forgot(&host, &email).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mail = admin_poll(&host, &format!("/api/outbox/mail?to={email}"), |_| true).await;
    let resets = mail
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["subject"].as_str().unwrap().contains("Reset"))
        .count();
    assert_eq!(resets, 1, "{mail}");

    let new_password = "Brand-new-pass-2";
    let reset = |password: &'static str| {
        call(
            &host,
            "POST",
            "/api/auth/password/reset",
            None,
            Some(json!({"token": reset_token, "newPassword": password})),
        )
    };
    let weak = expect_problem(reset("weak").await, 400).await;
    assert_eq!(weak["errors"][0]["field"], "newPassword");
    ok(reset(new_password).await, 200).await;
    expect_problem(reset(new_password).await, 400).await; // single use
    expect_problem(
        call(&host, "GET", "/api/auth/me", Some(&old_access), None).await,
        401,
    )
    .await;
    expect_problem(login(&host, &username, USER_PASSWORD).await, 401).await;
    ok(login(&host, &username, new_password).await, 200).await;
}

#[tokio::test]
async fn reset_tokens_expire() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[("LAMINA_VAR_PASSWORD_RESET_TTL", "1")]);
    let (_, email, _) = register(&host).await;
    forgot(&host, &email).await;
    let mail = admin_poll(&host, &format!("/api/outbox/mail?to={email}"), |m| {
        m.as_array()
            .unwrap()
            .iter()
            .any(|m| m["subject"].as_str().unwrap().contains("Reset"))
    })
    .await;
    let body = mail.to_string();
    let reset_token = link_token(&body);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let expired = call(
        &host,
        "POST",
        "/api/auth/password/reset",
        None,
        Some(json!({"token": reset_token, "newPassword": "Brand-new-pass-2"})),
    )
    .await;
    expect_problem(expired, 400).await;
}

#[tokio::test]
async fn profile_and_password_changes() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    let (_, _, first) = register(&host).await;
    let (other, other_email, _) = register(&host).await;
    let access = token(&first, "accessToken");
    let problem = expect_problem(
        call(
            &host,
            "PATCH",
            "/api/auth/me",
            Some(&access),
            Some(
                json!({"username": other, "email": other_email, "currentPassword": USER_PASSWORD}),
            ),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
    let renamed = unique("renamed").replace('-', "_");
    let me = ok(
        call(
            &host,
            "PATCH",
            "/api/auth/me",
            Some(&access),
            Some(json!({"username": renamed})),
        )
        .await,
        200,
    )
    .await;
    assert_eq!(me["username"], renamed);

    let change = |current: &str, new: &str| {
        call(
            &host,
            "POST",
            "/api/auth/me/password",
            Some(&access),
            Some(json!({"currentPassword": current, "newPassword": new})),
        )
    };
    let wrong = expect_problem(change("Not-the-password-1", "Another-pass-3").await, 400).await;
    assert_eq!(wrong["errors"][0]["field"], "currentPassword");
    let changed = ok(change(USER_PASSWORD, "Another-pass-3").await, 200).await;
    // The old token is revoked; the new pair works.
    expect_problem(
        call(&host, "GET", "/api/auth/me", Some(&access), None).await,
        401,
    )
    .await;
    ok(
        call(
            &host,
            "GET",
            "/api/auth/me",
            Some(&token(&changed, "accessToken")),
            None,
        )
        .await,
        200,
    )
    .await;
    ok(login(&host, &renamed, "Another-pass-3").await, 200).await;
}

#[tokio::test]
async fn api_keys_work_as_bearers_until_revoked() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    let (username, _, registered) = register(&host).await;
    let access = token(&registered, "accessToken");
    let created = ok(
        call(
            &host,
            "POST",
            "/api/auth/api-keys",
            Some(&access),
            Some(json!({"name": "ollama client"})),
        )
        .await,
        201,
    )
    .await;
    let key = token(&created, "key");
    assert!(key.starts_with("lam_"));
    let me = ok(
        call(&host, "GET", "/api/auth/me", Some(&key), None).await,
        200,
    )
    .await;
    assert_eq!(me["username"], username);
    // A key cannot mint keys or change the password.
    expect_problem(
        call(
            &host,
            "POST",
            "/api/auth/api-keys",
            Some(&key),
            Some(json!({"name": "more"})),
        )
        .await,
        403,
    )
    .await;
    // Nor see or revoke the account's other keys: the gateway refuses keys
    // on those routes (`credentials = "session"`), whatever the component
    // would do.
    for (method, path) in [
        ("GET", "/api/auth/api-keys"),
        ("DELETE", "/api/auth/api-keys/anything"),
    ] {
        let refused = expect_problem(call(&host, method, path, Some(&key), None).await, 403).await;
        assert!(
            refused["detail"]
                .as_str()
                .unwrap()
                .contains("login session"),
            "{method} {path}: {refused}"
        );
    }
    // The listing shows when the key was last used (recorded in the
    // background).
    let deadline = Instant::now() + Duration::from_secs(10);
    let listed = loop {
        let listed = ok(
            call(&host, "GET", "/api/auth/api-keys", Some(&access), None).await,
            200,
        )
        .await;
        if listed[0]["lastUsedAt"].is_string() || Instant::now() > deadline {
            break listed;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(listed[0]["lastUsedAt"].is_string(), "{listed}");
    assert_eq!(listed[0]["prefix"], created["prefix"]);
    assert!(!listed.to_string().contains(&key));
    let bad = expect_problem(
        call(
            &host,
            "POST",
            "/api/auth/api-keys",
            Some(&access),
            Some(json!({"name": "", "expiresAt": 1})),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(bad["errors"].as_array().unwrap().len(), 2);

    let id = token(&created, "id");
    // Another user cannot revoke it.
    let (_, _, other) = register(&host).await;
    expect_problem(
        call(
            &host,
            "DELETE",
            &format!("/api/auth/api-keys/{id}"),
            Some(&token(&other, "accessToken")),
            None,
        )
        .await,
        404,
    )
    .await;
    ok(
        call(
            &host,
            "DELETE",
            &format!("/api/auth/api-keys/{id}"),
            Some(&access),
            None,
        )
        .await,
        204,
    )
    .await;
    expect_problem(
        call(&host, "GET", "/api/auth/me", Some(&key), None).await,
        401,
    )
    .await;
}

#[tokio::test]
async fn logout_reaches_a_second_host() {
    let (schema, prefix) = (PgSchema::new(), RedisPrefix::new());
    let shared = format!(
        "[auth.revocations]\ntype = \"redis\"\nurl = \"{REDIS_URL}\"\nkey_prefix = \"{}\"\n",
        prefix.prefix
    );
    let first = app(&schema, &shared, &[]);
    let second = app(&schema, &shared, &[]);
    let (_, _, registered) = register(&first).await;
    let access = token(&registered, "accessToken");
    ok(
        call(&second, "GET", "/api/auth/me", Some(&access), None).await,
        200,
    )
    .await;
    ok(
        call(&first, "POST", "/api/auth/logout", Some(&access), None).await,
        204,
    )
    .await;
    expect_problem(
        call(&second, "GET", "/api/auth/me", Some(&access), None).await,
        401,
    )
    .await;
}

#[tokio::test]
async fn the_admin_role_gates_admin_routes() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    // The administrator exists from the environment, never from a default.
    let admin = ok(login(&host, "root@example.com", ADMIN_PASSWORD).await, 200).await;
    assert_eq!(admin["user"]["roles"], json!(["User", "Admin"]));
    let problem = expect_problem(
        call(
            &host,
            "POST",
            "/api/auth/register",
            None,
            Some(json!({"username": "root", "email": "x@example.com", "password": USER_PASSWORD})),
        )
        .await,
        409,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "username");
    let (_, _, user) = register(&host).await;
    expect_problem(
        call(
            &host,
            "GET",
            "/api/outbox/audit",
            Some(&token(&user, "accessToken")),
            None,
        )
        .await,
        403,
    )
    .await;
    ok(
        call(
            &host,
            "GET",
            "/api/outbox/audit?limit=5",
            Some(&token(&admin, "accessToken")),
            None,
        )
        .await,
        200,
    )
    .await;
    expect_problem(
        call(
            &host,
            "GET",
            "/api/outbox/audit?limit=0",
            Some(&token(&admin, "accessToken")),
            None,
        )
        .await,
        400,
    )
    .await;
}

/// The embedded defaults (SQLite, in-process queue) run the same service.
#[tokio::test]
async fn works_on_the_embedded_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(
        HostOptions::app()
            .data_dir(dir.path())
            .env("LAMINA_JWT_SECRET", SECRET),
    );
    let (username, _, registered) = register(&host).await;
    let refreshed = ok(
        call(
            &host,
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refreshToken": token(&registered, "refreshToken")})),
        )
        .await,
        200,
    )
    .await;
    let me = ok(
        call(
            &host,
            "GET",
            "/api/auth/me",
            Some(&token(&refreshed, "accessToken")),
            None,
        )
        .await,
        200,
    )
    .await;
    assert_eq!(me["username"], username);
    assert_eq!(me["id"], registered["user"]["id"]);
    expect_problem(
        call(&host, "POST", "/api/auth/nowhere", None, None).await,
        404,
    )
    .await;
    let wrong_method = call(&host, "GET", "/api/auth/login", None, None).await;
    assert_eq!(wrong_method.headers()["allow"], "POST");
    expect_problem(wrong_method, 405).await;
}

/// A loopback SMTP server that accepts every message and passes on each
/// message's DATA.
async fn smtp_sink() -> (u16, tokio::sync::mpsc::UnboundedReceiver<String>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let (socket, _) = listener.accept().await.unwrap();
            let tx = tx.clone();
            tokio::spawn(async move {
                let (read, mut write) = socket.into_split();
                let mut lines = BufReader::new(read).lines();
                write.write_all(b"220 sink ESMTP\r\n").await?;
                while let Some(line) = lines.next_line().await? {
                    let verb = line
                        .split(' ')
                        .next()
                        .unwrap_or_default()
                        .to_ascii_uppercase();
                    let reply: &[u8] = match verb.as_str() {
                        "DATA" => {
                            write.write_all(b"354 end with .\r\n").await?;
                            let mut data = String::new();
                            while let Some(line) = lines.next_line().await? {
                                if line == "." {
                                    break;
                                }
                                data.push_str(&line);
                                data.push('\n');
                            }
                            let _ = tx.send(data);
                            b"250 queued\r\n"
                        }
                        "QUIT" => {
                            write.write_all(b"221 bye\r\n").await?;
                            return Ok::<_, std::io::Error>(());
                        }
                        _ => b"250 ok\r\n",
                    };
                    write.write_all(reply).await?;
                }
                Ok(())
            });
        }
    });
    (port, rx)
}

#[tokio::test]
async fn with_smtp_configured_mail_is_sent_not_kept() {
    let (port, mut mails) = smtp_sink().await;
    let schema = PgSchema::new();
    let config = format!(
        "[mail]\ntype = \"smtp\"\nhost = \"127.0.0.1\"\nport = {port}\nsecurity = \"none\"\nfrom = \"Lamina <no-reply@example.com>\"\n"
    );
    let host = app(&schema, &config, &[]);
    let (username, email, _) = register(&host).await;
    forgot(&host, &email).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let (mut welcome, mut reset) = (None, None);
    while welcome.is_none() || reset.is_none() {
        let mail = tokio::time::timeout_at(deadline.into(), mails.recv())
            .await
            .expect("mail arrives")
            .unwrap();
        assert!(mail.contains(&format!("To: {email}")), "{mail}");
        assert!(
            mail.contains("From: Lamina <no-reply@example.com>"),
            "{mail}"
        );
        if mail.contains("Welcome") {
            welcome = Some(mail);
        } else if mail.contains("Reset") {
            reset = Some(mail);
        }
    }
    assert!(welcome.unwrap().contains(&username));
    // Quoted-printable: soft line breaks and `=` escaped.
    let reset = reset.unwrap().replace("=\n", "").replace("=3D", "=");
    let reset_token = link_token(&reset);
    assert_eq!(reset_token.len(), 64, "{reset}");
    ok(
        call(
            &host,
            "POST",
            "/api/auth/password/reset",
            None,
            Some(json!({"token": reset_token, "newPassword": "Brand-new-pass-2"})),
        )
        .await,
        200,
    )
    .await;
    // Nothing was kept in the dev mailbox.
    let kept = admin_poll(&host, &format!("/api/outbox/mail?to={email}"), |_| true).await;
    assert_eq!(kept, json!([]));
}

#[tokio::test]
async fn accounts_that_are_not_active_are_shut_out() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    let (username, _, registered) = register(&host).await;
    let id = registered["user"]["id"].as_str().unwrap().to_owned();
    let key = ok(
        call(
            &host,
            "POST",
            "/api/auth/api-keys",
            Some(&token(&registered, "accessToken")),
            Some(json!({"name": "client"})),
        )
        .await,
        201,
    )
    .await;
    let key = token(&key, "key");
    let wrong = expect_problem(login(&host, &username, "Wrong-password-1").await, 401).await;
    // Deactivated (as the admin service will do), then deleted: the right
    // password gets the very answer a wrong one does, the session cannot
    // be refreshed, and what the old token asks for is refused.
    for change in ["active = FALSE", "active = TRUE, deleted_at = 1"] {
        schema.psql(
            "auth",
            &format!("UPDATE auth_users SET {change} WHERE id = '{id}'"),
        );
        assert_eq!(
            expect_problem(login(&host, &username, USER_PASSWORD).await, 401).await,
            wrong
        );
    }
    expect_problem(
        call(
            &host,
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refreshToken": token(&registered, "refreshToken")})),
        )
        .await,
        401,
    )
    .await;
    let access = token(&registered, "accessToken");
    expect_problem(
        call(&host, "GET", "/api/auth/me", Some(&access), None).await,
        401,
    )
    .await;
    // The API key still reaches the service, which notices and disables
    // the account at the gateway: from then on its tokens and keys are
    // refused before any component (the inference API included) sees them.
    let noticed = expect_problem(
        call(&host, "GET", "/api/auth/me", Some(&key), None).await,
        401,
    )
    .await;
    assert_eq!(noticed["detail"], "the account is not active");
    for credential in [&access, &key] {
        let refused = expect_problem(
            call(&host, "GET", "/api/auth/me", Some(credential), None).await,
            401,
        )
        .await;
        assert_eq!(refused["detail"], "the credential has been revoked");
    }
    expect_problem(
        call(
            &host,
            "POST",
            "/api/auth/api-keys",
            Some(&access),
            Some(json!({"name": "k"})),
        )
        .await,
        401,
    )
    .await;
}

#[tokio::test]
async fn one_refresh_token_used_twice_at_once_ends_the_session() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    let (_, _, registered) = register(&host).await;
    let refresh = token(&registered, "refreshToken");
    let attempt = || {
        call(
            &host,
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refreshToken": refresh})),
        )
    };
    let (a, b) = tokio::join!(attempt(), attempt());
    let mut statuses = [a.status().as_u16(), b.status().as_u16()];
    statuses.sort();
    assert_eq!(statuses, [200, 401]);
    let winner = if a.status() == 200 { a } else { b };
    let winner = ok(winner, 200).await;
    // The reuse revoked the session, including what the winner got.
    expect_problem(
        call(
            &host,
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refreshToken": token(&winner, "refreshToken")})),
        )
        .await,
        401,
    )
    .await;
    expect_problem(
        call(
            &host,
            "GET",
            "/api/auth/me",
            Some(&token(&winner, "accessToken")),
            None,
        )
        .await,
        401,
    )
    .await;
}

#[tokio::test]
async fn what_only_a_session_may_do_and_bad_input() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    let (_, email, registered) = register(&host).await;
    let access = token(&registered, "accessToken");
    let key = token(
        &ok(
            call(
                &host,
                "POST",
                "/api/auth/api-keys",
                Some(&access),
                Some(json!({"name": "cli"})),
            )
            .await,
            201,
        )
        .await,
        "key",
    );
    // A leaked key leads nowhere near the account.
    expect_problem(
        call(
            &host,
            "PATCH",
            "/api/auth/me",
            Some(&key),
            Some(json!({"email": "thief@example.com"})),
        )
        .await,
        403,
    )
    .await;
    expect_problem(
        call(
            &host,
            "POST",
            "/api/auth/me/password",
            Some(&key),
            Some(json!({"currentPassword": USER_PASSWORD, "newPassword": "Another-pass-3"})),
        )
        .await,
        403,
    )
    .await;
    expect_problem(
        call(&host, "POST", "/api/auth/logout", Some(&key), None).await,
        403,
    )
    .await;

    // A new email needs the current password, and the old address hears of it.
    let new_email = format!("moved-{email}");
    let problem = expect_problem(
        call(
            &host,
            "PATCH",
            "/api/auth/me",
            Some(&access),
            Some(json!({"email": new_email})),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "currentPassword");
    let moved = ok(change_email(&host, &access, &new_email).await, 200).await;
    assert_eq!(moved["email"], new_email);
    admin_poll(&host, &format!("/api/outbox/mail?to={email}"), |m| {
        m.to_string().contains("email address changed")
    })
    .await;

    // Bad input is a 4xx problem, never a 500.
    expect_problem(login(&host, "nul\u{0}byte", USER_PASSWORD).await, 400).await;
    expect_problem(
        call(
            &host,
            "PATCH",
            "/api/auth/me",
            Some(&access),
            Some(json!({"role": "Admin"})),
        )
        .await,
        400,
    )
    .await;
    let huge = "x".repeat(64 << 10);
    expect_problem(login(&host, "someone", &huge).await, 413).await;
    let non_ascii = "Pässwörd-密码-1";
    let (_, _, _) = register(&host).await;
    let name = unique("intl");
    ok(call(&host, "POST", "/api/auth/register", None, Some(json!({"username": name, "email": format!("{name}@example.com"), "password": non_ascii}))).await, 201).await;
    ok(login(&host, &name, non_ascii).await, 200).await;
}

/// An administrator's API key is an Admin credential, but not one that
/// reaches mail: with it, a thief cannot read a reset link from the dev
/// mailbox and take an account over.
#[tokio::test]
async fn a_leaked_admin_api_key_cannot_read_mail() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[]);
    let admin = lamina_tests::admin_token(&host).await;
    let created = ok(
        call(
            &host,
            "POST",
            "/api/auth/api-keys",
            Some(&admin),
            Some(json!({"name": "ci"})),
        )
        .await,
        201,
    )
    .await;
    let key = token(&created, "key");
    let (_, email, _) = register(&host).await;
    forgot(&host, &email).await;
    // The session reads the mailbox (development mode is on here)...
    let mail = admin_poll(&host, &format!("/api/outbox/mail?to={email}"), |m| {
        m.to_string().contains("reset-password")
    })
    .await;
    assert!(mail.to_string().contains("token="), "{mail}");
    // ...the key reads nothing there, nor anything else of the outbox.
    for path in [
        format!("/api/outbox/mail?to={email}"),
        "/api/outbox/audit".to_owned(),
    ] {
        expect_problem(call(&host, "GET", &path, Some(&key), None).await, 403).await;
    }
}

/// With the dev mailbox off (the default), no API shows a live reset
/// link: the mailbox answers 404, and mail that cannot be delivered is
/// dead-lettered without its payload in the operator's listing.
#[tokio::test]
async fn without_the_dev_mailbox_no_api_shows_a_reset_link() {
    let schema = PgSchema::new();
    let deploy_token = "dead-letter-reader-token";
    let host = app(
        &schema,
        "[queue]\nmax_attempts = 1\n",
        &[
            ("LAMINA_VAR_DEV_MAILBOX", "false"),
            ("LAMINA_DEPLOY_TOKEN", deploy_token),
        ],
    );
    let (_, email, _) = register(&host).await;
    forgot(&host, &email).await;
    let admin = lamina_tests::admin_token(&host).await;
    expect_problem(
        call(&host, "GET", "/api/outbox/mail", Some(&admin), None).await,
        404,
    )
    .await;
    // No SMTP server and no mailbox: the mail fails once and is
    // dead-lettered; the operator sees that it is there, not what it says.
    let deadline = Instant::now() + Duration::from_secs(20);
    let letters = loop {
        let listed: Value = client()
            .get(format!(
                "{}/v1/queues/email.send/dead-letters",
                host.admin_url
            ))
            .bearer_auth(deploy_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let items = listed["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= 2 || Instant::now() > deadline {
            // the welcome mail and the reset mail
            break items;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(letters.len() >= 2, "{letters:?}");
    for letter in &letters {
        assert!(
            letter["payload"].as_str().unwrap().starts_with("(redacted"),
            "{letter}"
        );
        assert!(!letter.to_string().contains("token="), "{letter}");
    }
}

/// Anonymous logins from many addresses (through a trusted proxy) cannot
/// take every core: the `login` class admits one at a time for all callers
/// together, the rest get 429 at once, and other requests stay served.
#[tokio::test]
async fn a_flood_of_anonymous_logins_leaves_other_requests_served() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(
        HostOptions::app_with_rate_limits(
            "[rate_limit.classes.auth]\nrequests = 100000\nper = \"1m\"\n\
             [rate_limit.classes.api]\nrequests = 100000\nper = \"1m\"\n\
             [rate_limit.classes.inference]\nrequests = 100000\nper = \"1m\"\n\
             [rate_limit.classes.login]\nrequests = 100\nper = \"1m\"\n\
             [rate_limit.classes.login.all_callers]\nrequests = 100000\nper = \"1m\"\nconcurrent = 1\n\
             [http]\ntrusted_proxies = [\"127.0.0.0/8\"]\n",
        )
        .data_dir(dir.path())
        .env("LAMINA_JWT_SECRET", SECRET),
    );
    let flood: Vec<_> = (0..40)
        .map(|n| {
            let url = host.at("/api/auth/login");
            tokio::spawn(async move {
                client()
                    .post(url)
                    .header("x-forwarded-for", format!("198.51.100.{n}"))
                    .json(&json!({"login": format!("nobody{n}"), "password": "Wrong-password-1"}))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16()
            })
        })
        .collect();
    // Meanwhile other routes answer as usual.
    for _ in 0..10 {
        let started = Instant::now();
        let response = client().get(host.at("/api/about")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
    }
    let mut statuses = Vec::new();
    for login in flood {
        statuses.push(login.await.unwrap());
    }
    assert!(
        statuses.iter().all(|s| [401, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(statuses.contains(&401), "{statuses:?}");
}

/// A login session ends at its absolute lifetime, however often it is
/// refreshed: a stolen refresh token cannot be kept alive forever.
#[tokio::test]
async fn a_session_ends_at_its_absolute_lifetime() {
    let schema = PgSchema::new();
    let host = app(&schema, "", &[("LAMINA_VAR_SESSION_LIFETIME", "2")]);
    let (_, _, registered) = register(&host).await;
    let refresh = |token: String| {
        call(
            &host,
            "POST",
            "/api/auth/refresh",
            None,
            Some(json!({"refreshToken": token})),
        )
    };
    let refreshed = ok(refresh(token(&registered, "refreshToken")).await, 200).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let ended = expect_problem(refresh(token(&refreshed, "refreshToken")).await, 401).await;
    assert!(
        ended["detail"]
            .as_str()
            .unwrap()
            .contains("maximum lifetime"),
        "{ended}"
    );
}
