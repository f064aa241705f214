//! Helpers for tests of the application itself (the repo's spin.toml and
//! its auth service): the built-in administrator and fresh users.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::{Host, HostOptions, client, test_models_dir, unique};

/// The built-in administrator's username and password
/// (`LAMINA_VAR_ADMIN_*`, see [`HostOptions::with_admin`]).
pub const ADMIN_LOGIN: &str = "root";
/// See [`ADMIN_LOGIN`].
pub const ADMIN_PASSWORD: &str = "Admin-password-9";
/// The password every [`register`]ed user gets.
pub const USER_PASSWORD: &str = "Correct-horse-1";

impl HostOptions {
    /// The application on the test model store, signing with `secret` (so
    /// hosts of one test accept each other's tokens).
    pub fn app_on_test_models(secret: &str) -> Self {
        HostOptions::app()
            .runtime_config(&format!(
                "[inference]\nmodels_dir = \"{}\"\n",
                test_models_dir().display()
            ))
            .env("LAMINA_JWT_SECRET", secret)
    }

    /// Gives the application its first administrator ([`ADMIN_LOGIN`]).
    pub fn with_admin(self) -> Self {
        self.env("LAMINA_VAR_ADMIN_USERNAME", ADMIN_LOGIN)
            .env("LAMINA_VAR_ADMIN_EMAIL", "root@example.com")
            .env("LAMINA_VAR_ADMIN_PASSWORD", ADMIN_PASSWORD)
    }
}

/// Registers a fresh user with [`USER_PASSWORD`] (its email in mixed case,
/// as users type it); returns the username, the email as stored (lower
/// case) and the 201 body (tokens and user).
pub async fn register(host: &Host) -> (String, String, Value) {
    let username = unique("user").replace('-', "_");
    let email = format!("{username}@Example.com");
    let response = client()
        .post(host.at("/api/auth/register"))
        .json(&json!({"username": username, "email": email, "password": USER_PASSWORD}))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 201, "{text}");
    (
        username,
        email.to_ascii_lowercase(),
        serde_json::from_str(&text).unwrap(),
    )
}

/// A fresh user's access token and id.
pub async fn user_session(host: &Host) -> (String, String) {
    let (_, _, body) = register(host).await;
    (
        body["accessToken"].as_str().unwrap().to_owned(),
        body["user"]["id"].as_str().unwrap().to_owned(),
    )
}

/// Calls `method path` as the holder of `token` (if any) with a JSON body
/// (if any); returns the status and the body as JSON (`null` if empty, a
/// string if not JSON).
pub async fn call(
    host: &Host,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = client().request(method.parse().unwrap(), host.at(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    let value = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, value)
}

/// A new API key of the holder of `access`: its id and its secret.
pub async fn create_api_key(host: &Host, access: &str) -> (String, String) {
    let key = expect(
        call(
            host,
            Some(access),
            "POST",
            "/api/auth/api-keys",
            Some(json!({"name": "k"})),
        )
        .await,
        201,
    );
    (
        key["id"].as_str().unwrap().to_owned(),
        key["key"].as_str().unwrap().to_owned(),
    )
}

/// The administrator's access token.
pub async fn admin_token(host: &Host) -> String {
    let response = client()
        .post(host.at("/api/auth/login"))
        .json(&json!({"login": ADMIN_LOGIN, "password": ADMIN_PASSWORD}))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["accessToken"]
        .as_str()
        .unwrap_or_else(|| panic!("no access token: {body}"))
        .to_owned()
}

/// GETs `path` as the administrator until `until` holds (what the outbox
/// records arrives through the queue); panics after 20 s.
pub async fn admin_poll(host: &Host, path: &str, until: impl Fn(&Value) -> bool) -> Value {
    let admin = admin_token(host).await;
    poll_as(host, &admin, path, until).await
}

/// GETs `path` as the holder of `token` until `until` holds; panics after
/// 20 s.
pub async fn poll_as(
    host: &Host,
    token: &str,
    path: &str,
    until: impl Fn(&Value) -> bool,
) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = client()
            .get(host.at(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
        let value: Value = response.json().await.unwrap();
        if until(&value) {
            return value;
        }
        assert!(Instant::now() < deadline, "{path}: {value}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the audit log holds an entry for each of `events`.
pub async fn audited(host: &Host, events: &[&str]) {
    admin_poll(host, "/api/outbox/audit?limit=500", |log| {
        let seen: Vec<&str> = log
            .as_array()
            .map(|items| items.iter().filter_map(|e| e["event"].as_str()).collect())
            .unwrap_or_default();
        events.iter().all(|e| seen.contains(e))
    })
    .await;
}

/// Creates a conversation as the holder of `token` (201); returns it.
pub async fn new_conversation(host: &Host, token: &str, body: Value) -> Value {
    expect(
        call(host, Some(token), "POST", "/api/conversations", Some(body)).await,
        201,
    )
}

/// Asserts `status` and returns the body.
#[track_caller]
pub fn expect(result: (u16, Value), status: u16) -> Value {
    assert_eq!(result.0, status, "{}", result.1);
    result.1
}

/// One Server-Sent Event.
#[derive(Debug)]
pub struct Event {
    pub id: Option<u64>,
    pub name: String,
    pub data: Value,
}

/// Parses an event stream (comments are skipped).
pub fn sse_events(text: &str) -> Vec<Event> {
    text.split("\n\n")
        .filter(|frame| !frame.trim().is_empty() && !frame.starts_with(':'))
        .map(|frame| {
            let mut event = Event {
                id: None,
                name: String::new(),
                data: Value::Null,
            };
            for line in frame.lines() {
                if let Some(id) = line.strip_prefix("id: ") {
                    event.id = id.parse().ok();
                } else if let Some(name) = line.strip_prefix("event: ") {
                    event.name = name.to_owned();
                } else if let Some(data) = line.strip_prefix("data: ") {
                    event.data = serde_json::from_str(data).unwrap();
                }
            }
            event
        })
        .collect()
}

/// Polls `check` every 100 ms for up to 30 s.
pub async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
