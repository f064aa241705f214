//! The `tokens` capability end to end: a component (the capabilities
//! fixture, granted `tokens = true`) signs tokens and manages API keys
//! through WIT; the gateway accepts them and honours revocations on every
//! host sharing the revocation list (Redis) and the key table (PostgreSQL).

use std::time::Duration;

use lamina_tests::{Host, HostOptions, PgSchema, REDIS_URL, RedisPrefix, client, expect_problem};
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "tokens"

[[trigger.http]]
route = "/issuer/..."
component = "issuer"

[[trigger.http]]
route = "/me/..."
component = "plain"
auth = "required"

[[trigger.http]]
route = "/ungranted/..."
component = "plain"

[component.issuer]
source = "{capabilities}"
tokens = true

[component.plain]
source = "{capabilities}"
"#;

/// Runtime config sharing the revocation list (Redis) and the API key
/// table (PostgreSQL) between hosts.
fn shared(prefix: &RedisPrefix, schema: &PgSchema) -> String {
    format!(
        "{}[auth]\napi_key_cache_ttl = \"1h\"\n[auth.revocations]\ntype = \"redis\"\nurl = \"{REDIS_URL}\"\nkey_prefix = \"{}\"\n",
        schema.databases(),
        prefix.prefix
    )
}

fn host(config: &str) -> Host {
    Host::start(
        HostOptions::manifest(MANIFEST)
            .env("LAMINA_JWT_SECRET", SECRET)
            .runtime_config(config),
    )
}

/// Calls `/issuer/tokens/<op>` with JSON arguments.
async fn call(host: &Host, op: &str, args: Value) -> reqwest::Response {
    client()
        .post(host.at(&format!("/issuer/tokens/{op}")))
        .json(&args)
        .send()
        .await
        .unwrap()
}

async fn ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{body}");
    body
}

async fn whoami(host: &Host, credential: &str) -> reqwest::Response {
    client()
        .get(host.at("/me/whoami"))
        .bearer_auth(credential)
        .send()
        .await
        .unwrap()
}

async fn expect_revoked(response: reqwest::Response) {
    let problem = expect_problem(response, 401).await;
    assert_eq!(problem["detail"], "the credential has been revoked");
}

fn subject(id: &str) -> Value {
    json!({ "id": id, "username": "ada", "roles": ["User"] })
}

#[tokio::test]
async fn a_revoked_token_is_refused_by_every_host_sharing_redis() {
    let (prefix, schema) = (RedisPrefix::new(), PgSchema::new());
    let config = shared(&prefix, &schema);
    let (a, b) = (host(&config), host(&config));

    let issued = ok(call(&a, "sign", json!({ "subject": subject("u1"), "ttl": 300 })).await).await;
    let token = issued["token"].as_str().unwrap();
    for host in [&a, &b] {
        let me = ok(whoami(host, token).await).await;
        assert_eq!(me["x-lamina-user-id"], "u1");
        assert_eq!(me["x-lamina-username"], "ada");
        assert_eq!(me["x-lamina-roles"], "User");
        assert_eq!(me["x-lamina-auth-method"], "jwt");
        assert_eq!(me["x-lamina-token-id"], issued["id"]);
        assert_eq!(
            me["x-lamina-token-expires"],
            issued["expires_at"].as_i64().unwrap().to_string()
        );
    }

    // Logout on host A; host B (which has the token's verification cached)
    // refuses it on the next request.
    ok(call(
        &a,
        "revoke",
        json!({ "id": issued["id"], "until": issued["expires_at"] }),
    )
    .await)
    .await;
    expect_revoked(whoami(&b, token).await).await;
    expect_revoked(whoami(&a, token).await).await;

    // Another token of the same user is unaffected.
    let other = ok(call(&b, "sign", json!({ "subject": subject("u1"), "ttl": 300 })).await).await;
    assert_eq!(
        whoami(&a, other["token"].as_str().unwrap()).await.status(),
        200
    );
}

#[tokio::test]
async fn revoke_subject_logs_out_every_earlier_token_but_not_later_ones() {
    let host = host("");
    let before: Vec<String> = futures::future::join_all((0..2).map(|_| async {
        ok(call(
            &host,
            "sign",
            json!({ "subject": subject("u2"), "ttl": 300 }),
        )
        .await)
        .await["token"]
            .as_str()
            .unwrap()
            .to_owned()
    }))
    .await;
    let key = ok(call(
        &host,
        "create-api-key",
        json!({ "subject": subject("u2"), "name": "ci" }),
    )
    .await)
    .await["key"]
        .as_str()
        .unwrap()
        .to_owned();
    ok(call(
        &host,
        "revoke-subject",
        json!({ "subject": { "id": "u2" } }),
    )
    .await)
    .await;
    for token in &before {
        expect_revoked(whoami(&host, token).await).await;
    }
    // API keys are revoked one by one, not by "log out everywhere".
    assert_eq!(whoami(&host, &key).await.status(), 200);
    // Signed in the same second as the revocation, and still accepted.
    let after = ok(call(
        &host,
        "sign",
        json!({ "subject": subject("u2"), "ttl": 300 }),
    )
    .await)
    .await;
    assert_eq!(
        whoami(&host, after["token"].as_str().unwrap())
            .await
            .status(),
        200
    );
}

#[tokio::test]
async fn api_keys_authenticate_and_a_revocation_reaches_every_host() {
    let (prefix, schema) = (RedisPrefix::new(), PgSchema::new());
    let config = shared(&prefix, &schema);
    let (a, b) = (host(&config), host(&config));

    let created = ok(call(
        &a,
        "create-api-key",
        json!({ "subject": subject("u3"), "name": "laptop", "ttl": 3600 }),
    )
    .await)
    .await;
    let key = created["key"].as_str().unwrap();
    assert!(key.starts_with("lam_") && key.len() == 68, "{key}");
    assert_eq!(created["listing"]["prefix"], &key[..12]);

    // Host B looks the key up (and caches it for an hour).
    let me = ok(whoami(&b, key).await).await;
    assert_eq!(me["x-lamina-user-id"], "u3");
    assert_eq!(me["x-lamina-auth-method"], "api-key");
    assert_eq!(me["x-lamina-token-id"], created["listing"]["id"]);

    let listed = ok(call(&b, "list-api-keys", json!({ "subject": { "id": "u3" } })).await).await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "laptop");
    assert!(
        !listed.to_string().contains(key),
        "a listing never shows the secret"
    );

    // Only the owner's subject revokes it.
    let id = created["listing"]["id"].clone();
    let foreign = ok(call(
        &a,
        "revoke-api-key",
        json!({ "subject": { "id": "u4" }, "id": id }),
    )
    .await)
    .await;
    assert_eq!(foreign["revoked"], false);
    assert_eq!(whoami(&b, key).await.status(), 200);
    let own = ok(call(
        &a,
        "revoke-api-key",
        json!({ "subject": { "id": "u3" }, "id": id }),
    )
    .await)
    .await;
    assert_eq!(own["revoked"], true);
    expect_revoked(whoami(&b, key).await).await;
    expect_revoked(whoami(&a, key).await).await;

    // Unknown and malformed keys.
    let unknown = format!("lam_{}", "0".repeat(64));
    expect_problem(whoami(&a, &unknown).await, 401).await;
    let malformed = expect_problem(whoami(&a, "lam_short").await, 401).await;
    assert!(
        malformed["detail"]
            .as_str()
            .unwrap()
            .contains("well-formed"),
        "{malformed}"
    );
}

#[tokio::test]
async fn the_capability_needs_its_grant_and_checks_its_inputs() {
    let host = host("[auth]\nleeway = \"0s\"\n");
    let denied = client()
        .post(host.at("/ungranted/tokens/sign"))
        .json(&json!({ "subject": subject("u5"), "ttl": 60 }))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(denied, 403).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("tokens = true"),
        "{problem}"
    );

    let bad = [
        ("sign", json!({ "subject": subject("u5"), "ttl": 0 })),
        (
            "sign",
            json!({ "subject": subject("u5"), "ttl": 400 * 24 * 3600 }),
        ),
        ("sign", json!({ "subject": { "id": "" }, "ttl": 60 })),
        (
            "sign",
            json!({ "subject": { "id": "u5", "roles": ["a,b"] }, "ttl": 60 }),
        ),
        ("revoke", json!({ "id": "", "until": 0 })),
        (
            "create-api-key",
            json!({ "subject": subject("u5"), "name": " " }),
        ),
        (
            "create-api-key",
            json!({ "subject": subject("u5"), "name": "x".repeat(200) }),
        ),
    ];
    for (op, args) in bad {
        let problem = expect_problem(call(&host, op, args.clone()).await, 400).await;
        assert_eq!(problem["title"], "tokens", "{op} {args}: {problem}");
    }

    // API keys on the embedded backends (SQLite table, in-process list).
    let created = ok(call(
        &host,
        "create-api-key",
        json!({ "subject": subject("u5"), "name": "local" }),
    )
    .await)
    .await;
    let key = created["key"].as_str().unwrap();
    assert_eq!(whoami(&host, key).await.status(), 200);
    let revoked = ok(call(
        &host,
        "revoke-api-key",
        json!({ "subject": { "id": "u5" }, "id": created["listing"]["id"] }),
    )
    .await)
    .await;
    assert_eq!(revoked["revoked"], true);
    expect_revoked(whoami(&host, key).await).await;

    // A token is good for its ttl only (no leeway configured here), even
    // though its verification was cached.
    let issued = ok(call(&host, "sign", json!({ "subject": subject("u5"), "ttl": 1 })).await).await;
    let token = issued["token"].as_str().unwrap().to_owned();
    assert_eq!(whoami(&host, &token).await.status(), 200);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let problem = expect_problem(whoami(&host, &token).await, 401).await;
    assert_eq!(problem["detail"], "the credential has expired");
}

/// Disabling a subject (a locked or deleted account) refuses its JWTs and
/// its API keys on every host at once, cache or not; enabling lifts it.
#[tokio::test]
async fn a_disabled_subject_is_refused_by_every_host_at_once() {
    let (prefix, schema) = (RedisPrefix::new(), PgSchema::new());
    let config = shared(&prefix, &schema);
    let (a, b) = (host(&config), host(&config));
    let token = ok(call(&a, "sign", json!({ "subject": subject("u7"), "ttl": 300 })).await).await;
    let token = token["token"].as_str().unwrap().to_owned();
    let key = ok(call(
        &a,
        "create-api-key",
        json!({ "subject": subject("u7"), "name": "ci" }),
    )
    .await)
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    // Both verified (and cached) on host B first.
    for credential in [&token, &key] {
        assert_eq!(whoami(&b, credential).await.status(), 200);
    }
    ok(call(&a, "disable-subject", json!({ "subject": { "id": "u7" } })).await).await;
    for credential in [&token, &key] {
        expect_revoked(whoami(&b, credential).await).await;
        expect_revoked(whoami(&a, credential).await).await;
    }
    // Another subject is untouched.
    let other = ok(call(&a, "sign", json!({ "subject": subject("u8"), "ttl": 300 })).await).await;
    assert_eq!(
        whoami(&b, other["token"].as_str().unwrap()).await.status(),
        200
    );
    ok(call(&b, "enable-subject", json!({ "subject": { "id": "u7" } })).await).await;
    for credential in [&token, &key] {
        assert_eq!(whoami(&a, credential).await.status(), 200);
    }
}

/// API keys speak with their account's current roles: after a demotion
/// the key no longer carries `Admin`.
#[tokio::test]
async fn api_keys_carry_the_subjects_current_roles() {
    let host = host("");
    let admin = json!({ "id": "u9", "username": "root", "roles": ["Admin", "User"] });
    let key = ok(call(
        &host,
        "create-api-key",
        json!({ "subject": admin, "name": "ops" }),
    )
    .await)
    .await;
    let key = key["key"].as_str().unwrap().to_owned();
    let me = ok(whoami(&host, &key).await).await;
    assert_eq!(me["x-lamina-roles"], "Admin,User");
    ok(call(&host, "update-subject", json!({ "subject": subject("u9") })).await).await;
    let me = ok(whoami(&host, &key).await).await;
    assert_eq!(me["x-lamina-roles"], "User");
    assert_eq!(me["x-lamina-username"], "ada");
}

/// The in-process revocation list never forgets a live revocation to make
/// room: flooded past its capacity, it refuses new entries (503 to the
/// caller, who can retry) and the first revoked token stays refused.
#[tokio::test]
async fn revocations_survive_a_flood_of_other_revocations() {
    let host = host("[auth.revocations]\ntype = \"memory\"\ncapacity = \"4KiB\"\n");
    let issued = ok(call(
        &host,
        "sign",
        json!({ "subject": subject("u10"), "ttl": 300 }),
    )
    .await)
    .await;
    ok(call(
        &host,
        "revoke",
        json!({ "id": issued["id"], "until": issued["expires_at"] }),
    )
    .await)
    .await;
    let until = issued["expires_at"].as_i64().unwrap();
    let mut refused = 0;
    for n in 0..400 {
        let response = call(
            &host,
            "revoke",
            json!({ "id": format!("flood-{n}-{}", "x".repeat(32)), "until": until }),
        )
        .await;
        match response.status().as_u16() {
            200 => {}
            503 => refused += 1,
            other => panic!("unexpected {other}"),
        }
    }
    assert!(refused > 0, "the flood should have filled 4 KiB");
    expect_revoked(whoami(&host, issued["token"].as_str().unwrap()).await).await;
}
