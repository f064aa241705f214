//! Failing backends: circuit breakers that fail fast and recover, the rate
//! limiter surviving Redis going away mid-run, and the structured logs an
//! operator reads meanwhile. Backends are "taken down" by cutting a TCP
//! proxy in front of the machine's real PostgreSQL and Redis.

use std::time::{Duration, Instant};

use lamina_tests::{Host, HostOptions, PgSchema, RedisPrefix, TcpProxy, client, expect_problem};
use serde_json::{Value, json};

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "resilience"

[[trigger.http]]
route = "/db/..."
component = "caps"

[[trigger.http]]
route = "/limited/..."
component = "caps"
rate_limit = "tight"

[component.caps]
source = "{capabilities}"
databases = ["default"]
"#;

/// The `tight` class every host here needs for `/limited/...`.
const TIGHT: &str = "[rate_limit.classes.tight]\nrequests = 3\nper = \"1m\"\n";

async fn select_one(host: &Host) -> reqwest::Response {
    client()
        .post(host.at("/db/sql/query"))
        .json(&json!({ "sql": "SELECT 1 AS one" }))
        .send()
        .await
        .unwrap()
}

async fn metrics(host: &Host) -> String {
    client()
        .get(format!("{}/metrics", host.admin_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failing_database_opens_the_breaker_which_fails_fast_and_recovers() {
    let schema = PgSchema::new();
    let proxy = TcpProxy::start("127.0.0.1:5432");
    let config = format!(
        "[databases.default]\ntype = \"postgres\"\nurl = \"postgres://postgres@{}/test\"\nschema = \"{}\"\nacquire_timeout = \"300ms\"\n\
         [circuit_breaker]\nfailures = 2\nopen_for = \"2s\"\n{TIGHT}",
        proxy.addr(),
        schema.name
    );
    let host = Host::start(HostOptions::manifest(MANIFEST).runtime_config(&config));
    assert_eq!(select_one(&host).await.status(), 200);

    proxy.cut();
    // The component sees the database fail (503 from its SQL error) until
    // the breaker opens...
    for _ in 0..2 {
        let problem = expect_problem(select_one(&host).await, 503).await;
        assert!(problem["detail"].as_str().is_some(), "{problem}");
    }
    // ...then the gateway answers at once, with Retry-After, without
    // running the component or waiting on the database.
    let started = Instant::now();
    let response = select_one(&host).await;
    let elapsed = started.elapsed();
    let retry_after: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let problem = expect_problem(response, 503).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("`postgres:default` is unavailable"),
        "{problem}"
    );
    assert!(elapsed < Duration::from_millis(250), "{elapsed:?}");
    assert!(
        metrics(&host)
            .await
            .contains(r#"lamina_circuit_breaker_state{backend="postgres:default"} 2"#)
    );

    // Back up: after open_for one probe goes through, succeeds, and closes it.
    proxy.restore();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = select_one(&host).await.status();
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never recovered: {status}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        metrics(&host)
            .await
            .contains(r#"lamina_circuit_breaker_state{backend="postgres:default"} 0"#)
    );
    assert!(host.log_contains("circuit closed: backend recovered"));
}

#[tokio::test]
async fn redis_going_down_mid_run_leaves_in_process_limits_in_force() {
    let prefix = RedisPrefix::new();
    let proxy = TcpProxy::start("127.0.0.1:6379");
    let config = format!(
        "[rate_limit]\ntype = \"redis\"\nurl = \"redis://{}/0\"\nkey_prefix = \"{}\"\n{TIGHT}",
        proxy.addr(),
        prefix.prefix
    );
    let host = Host::start(HostOptions::manifest(MANIFEST).runtime_config(&config));
    let get = || async {
        client()
            .get(host.at("/limited/var?name=x"))
            .send()
            .await
            .unwrap()
    };

    // Two of the three allowed requests counted in Redis.
    for _ in 0..2 {
        let response = get().await;
        assert_eq!(response.headers()["ratelimit-limit"], "3");
        assert_ne!(response.status(), 429);
    }
    proxy.cut();
    // Redis is gone: requests are still served and still limited, now by
    // the host's own bucket (which starts full: three more, then 429).
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(get().await.status().as_u16());
    }
    assert_eq!(statuses[3], 429, "{statuses:?}");
    assert!(
        statuses[..3].iter().all(|s| *s != 429 && *s < 500),
        "{statuses:?}"
    );
    assert!(host.log_contains("falls back to in-process limits"));
}

#[tokio::test]
async fn json_logs_carry_the_request_fields_and_never_the_credential() {
    const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";
    let manifest = MANIFEST.replace(
        "route = \"/db/...\"\ncomponent = \"caps\"",
        "route = \"/db/...\"\ncomponent = \"caps\"\nauth = \"optional\"",
    );
    let host = Host::start(
        HostOptions::manifest(&manifest)
            .env("LAMINA_JWT_SECRET", SECRET)
            .env("LAMINA_LOG_FORMAT", "json")
            .runtime_config(TIGHT),
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({ "sub": "user-7", "iss": "lamina", "aud": "lamina", "exp": now + 60 }),
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();
    let response = client()
        .post(host.at("/db/sql/query"))
        .bearer_auth(&token)
        .header("x-request-id", "trace-me-42")
        .json(&json!({ "sql": "SELECT 1 AS one" }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(host.log_contains("trace-me-42"));

    let stderr = host.stderr();
    let access: Value = stderr
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|line| line["target"] == "lamina::access")
        .unwrap_or_else(|| panic!("no access line in {stderr}"));
    let request = &access["spans"][0];
    assert_eq!(request["request_id"], "trace-me-42", "{access}");
    assert_eq!(request["route"], "/db/...", "{access}");
    assert_eq!(request["component"], "caps", "{access}");
    assert_eq!(request["user_id"], "user-7", "{access}");
    assert_eq!(access["fields"]["status"], "200", "{access}");
    assert!(
        access["fields"]["latency_ms"].as_f64().is_some(),
        "{access}"
    );
    assert!(!stderr.contains(&token), "the token must never be logged");
}
