//! A component reaches only what it is granted: the host's own state (API
//! keys, the SQL queue) lives in a database no component can be granted,
//! a SQLite connection cannot reach other files, and a statement past its
//! timeout is stopped where it runs (inside SQLite, on the PostgreSQL
//! server) without tripping the database's circuit breaker.

use std::time::{Duration, Instant};

use lamina_tests::{Host, HostOptions, POSTGRES_URL, PgSchema, client, expect_problem};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "isolation"

[[trigger.http]]
route = "/caps/..."
component = "caps"

[[trigger.http]]
route = "/me/..."
component = "caps"
auth = "required"

[component.caps]
source = "{capabilities}"
databases = ["default"]
queues = ["jobs"]
"#;

fn host(data: &std::path::Path, config: &str) -> Host {
    Host::start(
        HostOptions::manifest(MANIFEST)
            .with_fixture_migrations()
            .data_dir(data)
            .runtime_config(config),
    )
}

async fn sql(host: &Host, op: &str, statement: &str) -> reqwest::Response {
    client()
        .post(host.at(&format!("/caps/sql/{op}")))
        .json(&json!({ "sql": statement, "params": [] }))
        .send()
        .await
        .unwrap()
}

async fn rows(host: &Host, statement: &str) -> Value {
    let response = sql(host, "query", statement).await;
    assert_eq!(response.status(), 200, "{statement}");
    response.json::<Value>().await.unwrap()["rows"].clone()
}

#[tokio::test]
async fn host_tables_are_out_of_reach_of_a_component_granted_default() {
    let data = tempfile::tempdir().unwrap();
    let host = host(data.path(), "");
    // The host has queue and key tables; they are not in `default`.
    let published = client()
        .post(host.at("/caps/queue/publish?topic=jobs"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    let listed = rows(
        &host,
        "SELECT name FROM sqlite_master WHERE name LIKE 'lamina%'",
    )
    .await;
    assert_eq!(listed, json!([]));
    expect_problem(
        sql(
            &host,
            "execute",
            "INSERT INTO lamina_api_keys (id, key_hash, prefix, name, subject, roles, created_at) \
             VALUES ('k', 'h', 'p', 'n', 's', 'Admin', 0)",
        )
        .await,
        400,
    )
    .await;
    // And no component may be granted the host's database.
    let granted = MANIFEST.replace(
        "databases = [\"default\"]",
        "databases = [\"default\", \"host\"]",
    );
    let error = Host::try_start(HostOptions::manifest(&granted).data_dir(data.path()))
        .err()
        .expect("start-up must fail");
    assert!(
        error.contains("component.caps.databases: `host` holds the host's own state"),
        "{error}"
    );
}

#[tokio::test]
async fn sqlite_connections_reach_no_other_file() {
    let data = tempfile::tempdir().unwrap();
    let host = host(data.path(), "");
    let host_db = data.path().join("host.db");
    let copy = data.path().join("stolen.db");
    for statement in [
        format!("ATTACH DATABASE '{}' AS h", host_db.display()),
        format!("VACUUM INTO '{}'", copy.display()),
        "PRAGMA writable_schema = ON".to_owned(),
        "PRAGMA foreign_keys = OFF".to_owned(),
    ] {
        let refused = expect_problem(sql(&host, "execute", &statement).await, 400).await;
        let detail = refused["detail"].as_str().unwrap();
        assert!(
            [
                "not authorized",
                "authorization denied",
                "attached databases"
            ]
            .iter()
            .any(|why| detail.contains(why)),
            "{statement}: {refused}"
        );
    }
    assert!(!copy.exists(), "VACUUM INTO wrote a file");
    // Introspection still works, and foreign keys are still enforced.
    assert_eq!(
        rows(&host, "PRAGMA table_info(items)").await[0][1],
        json!({"text": "id"})
    );
    expect_problem(
        sql(
            &host,
            "execute",
            "INSERT INTO children (id, parent_id, qty) VALUES ('c', 'nope', 1)",
        )
        .await,
        400,
    )
    .await;
}

/// A host upgraded from when API keys and the queue lived in `default`
/// moves them to its own database on start: the keys keep working and
/// `default` no longer has them.
#[tokio::test]
async fn host_tables_left_in_default_are_moved_out_on_start() {
    let data = tempfile::tempdir().unwrap();
    let key = format!("lam_{}", "ab".repeat(32));
    let digest = hex::encode(Sha256::digest(key.as_bytes()));
    let legacy = format!(
        "CREATE TABLE lamina_api_keys (id TEXT PRIMARY KEY, key_hash TEXT NOT NULL UNIQUE, \
         prefix TEXT NOT NULL, name TEXT NOT NULL, subject TEXT NOT NULL, username TEXT, \
         roles TEXT NOT NULL, created_at BIGINT NOT NULL, expires_at BIGINT, revoked_at BIGINT); \
         INSERT INTO lamina_api_keys VALUES ('k1', '{digest}', 'lam_abababab', 'old', 'u1', 'ada', \
         'User', 1, NULL, NULL);"
    );
    let status = std::process::Command::new("sqlite3")
        .arg(data.path().join("default.db"))
        .arg(&legacy)
        .status()
        .expect("sqlite3 runs");
    assert!(status.success());
    let host = host(data.path(), "");
    let me: Value = client()
        .get(host.at("/me/whoami"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["x-lamina-user-id"], "u1", "{me}");
    assert_eq!(
        rows(
            &host,
            "SELECT name FROM sqlite_master WHERE name = 'lamina_api_keys'"
        )
        .await,
        json!([])
    );
}

/// SQLite: a runaway statement is interrupted inside SQLite at the
/// timeout, so the connection (the only one) serves the next at once.
#[tokio::test]
async fn a_runaway_sqlite_statement_is_interrupted() {
    let data = tempfile::tempdir().unwrap();
    let host = host(
        data.path(),
        "[databases.default]\ntype = \"sqlite\"\nmax_connections = 1\nstatement_timeout = \"1s\"\n",
    );
    let started = Instant::now();
    let runaway = sql(
        &host,
        "query",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n",
    )
    .await;
    let problem = expect_problem(runaway, 503).await;
    assert_eq!(problem["title"], "timeout", "{problem}");
    let next = Instant::now();
    assert_eq!(rows(&host, "SELECT 1").await, json!([[{"int": 1}]]));
    assert!(
        next.elapsed() < Duration::from_secs(1),
        "{:?}",
        next.elapsed()
    );
    assert!(started.elapsed() < Duration::from_secs(10));
}

/// PostgreSQL: the server stops the statement at `statement_timeout` (it
/// is gone from `pg_stat_activity`), and timeouts, unlike an unreachable
/// server, do not open the circuit breaker.
#[tokio::test]
async fn a_slow_postgres_statement_is_cancelled_on_the_server() {
    let data = tempfile::tempdir().unwrap();
    let schema = PgSchema::new();
    let config = format!(
        "[databases.default]\ntype = \"postgres\"\nurl = \"{POSTGRES_URL}\"\nschema = \"{}\"\n\
         statement_timeout = \"1s\"\n[circuit_breaker]\nfailures = 2\nopen_for = \"30s\"\n",
        schema.schema("default")
    );
    let host = host(data.path(), &config);
    let marker = lamina_tests::unique("slow");
    for _ in 0..3 {
        let slow = sql(&host, "query", &format!("SELECT pg_sleep(30) AS {marker}")).await;
        let problem = expect_problem(slow, 503).await;
        assert_eq!(problem["title"], "timeout", "{problem}");
    }
    let running = schema.psql_value(
        "default",
        &format!(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%{marker}%' \
             AND state = 'active' AND pid <> pg_backend_pid()"
        ),
    );
    assert_eq!(running, "0", "the statements still run on the server");
    // Three timeouts, a breaker that opens after two failures: still closed.
    assert_eq!(rows(&host, "SELECT 1::bigint").await, json!([[{"int": 1}]]));
}
