//! Host capabilities end to end: the capabilities fixture component, the
//! real host process, and the real backends (SQLite and the machine's
//! PostgreSQL; in-process and the machine's Redis; the SQL-table and
//! Redis-Streams queues).

use std::time::{Duration, Instant};

use lamina_tests::{Host, HostOptions, PgSchema, REDIS_URL, RedisPrefix, client, expect_problem};
use serde_json::{Value, json};

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "caps"

[variables]
greeting = { default = "hello" }
api_key = { required = true, secret = true }
unused = { default = "not granted to anyone" }

[[trigger.http]]
route = "/caps/..."
component = "caps"

[[trigger.http]]
route = "/other/..."
component = "other"

[[trigger.queue]]
topic = "jobs"
component = "caps"
concurrency = 2

[component.caps]
source = "{capabilities}"
databases = ["default"]
key_value_stores = ["default", "cache"]
queues = ["jobs"]
variables = { greeting = "{{ greeting }}", auth = "Bearer {{ api_key }}" }

[component.other]
source = "{capabilities}"
"#;

/// The secret every host gets through the environment.
const API_KEY: &str = "s3cret-api-key-value";

/// Fast retries so queue tests finish in seconds.
const QUEUE_TUNING: &str = "poll_interval = \"50ms\"\nbackoff = \"100ms\"\nmax_backoff = \"400ms\"\nvisibility_timeout = \"2s\"\nmax_attempts = 3\n";

/// Which backends a host uses.
#[derive(Clone, Copy, PartialEq)]
enum Sql {
    Sqlite,
    Postgres,
}
#[derive(Clone, Copy, PartialEq)]
enum Kv {
    Memory,
    Redis,
}
#[derive(Clone, Copy, PartialEq)]
enum Queue {
    Sql,
    Redis,
}

/// Shared state of one test: its data dir, Postgres schema and Redis prefix
/// (so hosts started twice, or side by side, share them).
struct World {
    data: tempfile::TempDir,
    schema: PgSchema,
    redis: RedisPrefix,
}

impl World {
    fn new() -> World {
        World {
            data: tempfile::tempdir().unwrap(),
            schema: PgSchema::new(),
            redis: RedisPrefix::new(),
        }
    }

    fn config(&self, sql: Sql, kv: Kv, queue: Queue) -> String {
        let mut config = String::new();
        if sql == Sql::Postgres {
            config.push_str(&self.schema.databases());
        }
        for store in ["default", "cache"] {
            match kv {
                Kv::Memory => config.push_str(&format!("[key_value_stores.{store}]\ntype = \"memory\"\n")),
                Kv::Redis => config.push_str(&format!(
                    "[key_value_stores.{store}]\ntype = \"redis\"\nurl = \"{REDIS_URL}\"\nkey_prefix = \"{}kv:\"\n",
                    self.redis.prefix
                )),
            }
        }
        config.push_str("[queue]\n");
        config.push_str(QUEUE_TUNING);
        if queue == Queue::Redis {
            config.push_str(&format!(
                "type = \"redis\"\nurl = \"{REDIS_URL}\"\nkey_prefix = \"{}queue:\"\n",
                self.redis.prefix
            ));
        }
        config
    }

    fn start(&self, sql: Sql, kv: Kv, queue: Queue) -> Host {
        self.start_with(&self.config(sql, kv, queue))
    }

    fn start_with(&self, config: &str) -> Host {
        Host::start(
            HostOptions::manifest(MANIFEST)
                .with_fixture_migrations()
                .data_dir(self.data.path())
                .runtime_config(config)
                .env("LAMINA_VAR_API_KEY", API_KEY),
        )
    }
}

async fn post(host: &Host, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(host.at(path))
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn execute(host: &Host, sql: &str, params: Value) -> reqwest::Response {
    post(
        host,
        "/caps/sql/execute",
        json!({ "sql": sql, "params": params }),
    )
    .await
}

async fn query(host: &Host, sql: &str, params: Value) -> Value {
    let response = post(
        host,
        "/caps/sql/query",
        json!({ "sql": sql, "params": params }),
    )
    .await;
    assert_eq!(response.status(), 200, "{sql}");
    response.json().await.unwrap()
}

/// `SELECT count(*) ...` through the component.
async fn count(host: &Host, sql: &str, params: Value) -> i64 {
    let rows = query(host, sql, params).await;
    rows["rows"][0][0]["int"].as_i64().unwrap()
}

/// Polls `sql` (a count) until it reaches `expected`; panics after `limit`.
async fn wait_for_count(host: &Host, sql: &str, params: Value, expected: i64, limit: Duration) {
    let deadline = Instant::now() + limit;
    loop {
        let n = count(host, sql, params.clone()).await;
        if n == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{sql}: {n}, expected {expected}\n{}",
            host.stderr()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn sql_contract(host: &Host) {
    // Typed values round-trip.
    let response = execute(
        host,
        "INSERT INTO typed (id, f, t, b, flag, at) VALUES ($1, $2, $3, $4, $5, $6)",
        json!([1, 2.5, "text é", {"blob": [0, 1, 255]}, true, {"timestamp": 1_700_000_000_123_456i64}]),
    )
    .await;
    assert_eq!(response.status(), 200);
    execute(
        host,
        "INSERT INTO typed (id, f, t, b, flag, at) VALUES ($1, $2, $3, $4, $5, $6)",
        json!([2, null, null, null, null, null]),
    )
    .await;
    let rows = query(
        host,
        "SELECT id, f, t, b, flag, at FROM typed ORDER BY id",
        json!([]),
    )
    .await;
    assert_eq!(rows["columns"], json!(["id", "f", "t", "b", "flag", "at"]));
    assert_eq!(
        rows["rows"][0],
        json!([{"int": 1}, {"float": 2.5}, {"text": "text é"}, {"blob": [0, 1, 255]}, {"bool": true}, {"timestamp": 1_700_000_000_123_456i64}])
    );
    assert_eq!(
        rows["rows"][1],
        json!([{"int": 2}, null, null, null, null, null])
    );

    // Constraint violations are classified.
    execute(host, "INSERT INTO parents (id) VALUES ($1)", json!(["p1"])).await;
    let dup = expect_problem(
        execute(host, "INSERT INTO parents (id) VALUES ($1)", json!(["p1"])).await,
        409,
    )
    .await;
    assert_eq!(dup["title"], "unique-violation");
    let fk = expect_problem(
        execute(
            host,
            "INSERT INTO children (id, parent_id, qty) VALUES ($1, $2, $3)",
            json!(["c1", "nope", 1]),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(fk["title"], "foreign-key-violation");
    let check = expect_problem(
        execute(
            host,
            "INSERT INTO children (id, parent_id, qty) VALUES ($1, $2, $3)",
            json!(["c1", "p1", 0]),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(check["title"], "check-violation");
    let not_null = expect_problem(
        execute(
            host,
            "INSERT INTO children (id, parent_id, qty) VALUES ($1, $2, $3)",
            json!(["c1", "p1", null]),
        )
        .await,
        400,
    )
    .await;
    assert_eq!(not_null["title"], "not-null-violation");
    let bad = expect_problem(
        execute(host, "INSERT INTO nowhere VALUES ($1)", json!([1])).await,
        400,
    )
    .await;
    assert_eq!(bad["title"], "invalid");

    // A transaction that fails half-way leaves nothing behind.
    let failed = post(
        host,
        "/caps/sql/transaction",
        json!({"statements": [
            {"sql": "INSERT INTO parents (id) VALUES ($1)", "params": ["p2"]},
            {"sql": "INSERT INTO parents (id) VALUES ($1)", "params": ["p1"]},
        ]}),
    )
    .await;
    assert_eq!(
        expect_problem(failed, 409).await["title"],
        "unique-violation"
    );
    assert_eq!(
        count(
            host,
            "SELECT count(*) FROM parents WHERE id = $1",
            json!(["p2"])
        )
        .await,
        0
    );
    let committed = post(
        host,
        "/caps/sql/transaction",
        json!({"statements": [
            {"sql": "INSERT INTO parents (id) VALUES ($1)", "params": ["p3"]},
            {"sql": "INSERT INTO children (id, parent_id, qty) VALUES ($1, $2, $3)", "params": ["c3", "p3", 2]},
        ]}),
    )
    .await;
    assert_eq!(committed.status(), 200);
    assert_eq!(
        count(
            host,
            "SELECT count(*) FROM children WHERE parent_id = $1",
            json!(["p3"])
        )
        .await,
        1
    );
}

#[tokio::test]
async fn sql_on_sqlite() {
    let world = World::new();
    let host = world.start(Sql::Sqlite, Kv::Memory, Queue::Sql);
    sql_contract(&host).await;
    let file = world.data.path().join("default.db");
    assert!(file.is_file());

    // Another process holds the write lock past the busy timeout (5 s):
    // the database is unavailable for now (503), not the statement bad.
    let mut holder = std::process::Command::new("python3")
        .arg("-c")
        .arg(
            "import sqlite3, sys, time\n\
             c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
             c.execute('BEGIN EXCLUSIVE')\n\
             print('locked', flush=True)\n\
             time.sleep(8)",
        )
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let busy = execute(
        &host,
        "INSERT INTO parents (id) VALUES ($1)",
        json!(["busy"]),
    )
    .await;
    assert_eq!(busy.status(), 503);
    let problem: Value = busy.json().await.unwrap();
    assert_eq!(problem["title"], "unavailable", "{problem}");
    let _ = holder.kill();
    let _ = holder.wait();
    let after = execute(
        &host,
        "INSERT INTO parents (id) VALUES ($1)",
        json!(["after"]),
    )
    .await;
    assert_eq!(after.status(), 200);
}

#[tokio::test]
async fn sql_on_postgres() {
    let world = World::new();
    let host = world.start(Sql::Postgres, Kv::Memory, Queue::Sql);
    sql_contract(&host).await;
}

async fn kv(host: &Host, op: &str, query: &str, body: &str) -> Value {
    let response = client()
        .post(host.at(&format!("/caps/kv/{op}?store=default&{query}")))
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{op}?{query}");
    response.json().await.unwrap()
}

async fn kv_contract(host: &Host) {
    kv(host, "set", "key=svc:item:1", "one").await;
    assert_eq!(kv(host, "get", "key=svc:item:1", "").await["value"], "one");
    assert_eq!(
        kv(host, "exists", "key=svc:item:1", "").await["exists"],
        true
    );
    assert_eq!(
        kv(host, "get", "key=svc:item:missing", "").await["value"],
        Value::Null
    );

    // TTL expiry.
    kv(host, "set", "key=svc:short&ttl_ms=150", "soon gone").await;
    assert_eq!(
        kv(host, "get", "key=svc:short", "").await["value"],
        "soon gone"
    );
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(
        kv(host, "get", "key=svc:short", "").await["value"],
        Value::Null
    );

    // Prefix delete touches only the prefix.
    for id in 1..=3 {
        kv(host, "set", &format!("key=svc:list:page:{id}"), "page").await;
    }
    assert_eq!(
        kv(host, "delete-prefix", "prefix=svc:list:", "").await["deleted"],
        3
    );
    assert_eq!(kv(host, "get", "key=svc:item:1", "").await["value"], "one");

    // Atomic increments, concurrent.
    let bumps = (0..20).map(|_| kv(host, "increment", "key=svc:counter&delta=2", ""));
    futures::future::join_all(bumps).await;
    assert_eq!(
        kv(host, "increment", "key=svc:counter&delta=0", "").await["value"],
        40
    );

    assert_eq!(
        kv(host, "delete", "key=svc:item:1", "").await["deleted"],
        true
    );
    assert_eq!(
        kv(host, "exists", "key=svc:item:1", "").await["exists"],
        false
    );

    // The host counts what components' reads found: 3 hits and 2 misses
    // above.
    let metrics = lamina_tests::get_text(&format!("{}/metrics", host.admin_url)).await;
    for (result, count) in [("hit", 3), ("miss", 2)] {
        let counted = metrics.lines().any(|line| {
            line.starts_with("lamina_kv_gets_total{")
                && line.contains("store=\"default\"")
                && line.contains(&format!("result=\"{result}\""))
                && line.ends_with(&format!(" {count}"))
        });
        assert!(counted, "{result}: {metrics}");
    }

    // Limits.
    let too_big = client()
        .post(host.at("/caps/kv/set?store=default&key=big"))
        .body(vec![b'x'; 2 << 20])
        .send()
        .await
        .unwrap();
    expect_problem(too_big, 400).await;
    let long_key = "k".repeat(600);
    let response = client()
        .get(host.at(&format!("/caps/kv/get?store=default&key={long_key}")))
        .send()
        .await
        .unwrap();
    expect_problem(response, 400).await;
}

#[tokio::test]
async fn kv_in_memory() {
    let world = World::new();
    kv_contract(&world.start(Sql::Sqlite, Kv::Memory, Queue::Sql)).await;
}

#[tokio::test]
async fn kv_on_redis() {
    let world = World::new();
    kv_contract(&world.start(Sql::Sqlite, Kv::Redis, Queue::Sql)).await;
}

async fn cached_item(host: &Host, id: &str) -> (String, String) {
    let response = client()
        .get(host.at(&format!("/caps/cache/item?id={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let source = response.headers()["x-cache"].to_str().unwrap().to_owned();
    let body: Value = response.json().await.unwrap();
    (body["name"].as_str().unwrap().to_owned(), source)
}

#[tokio::test]
async fn cache_aside_hits_and_invalidates_on_write() {
    let world = World::new();
    let host = world.start(Sql::Sqlite, Kv::Redis, Queue::Sql);
    client()
        .post(host.at("/caps/cache/item?id=a"))
        .body("first")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cached_item(&host, "a").await,
        ("first".into(), "miss".into())
    );
    assert_eq!(
        cached_item(&host, "a").await,
        ("first".into(), "hit".into())
    );
    client()
        .post(host.at("/caps/cache/item?id=a"))
        .body("second")
        .send()
        .await
        .unwrap();
    assert_eq!(
        cached_item(&host, "a").await,
        ("second".into(), "miss".into())
    );
}

#[tokio::test]
async fn cache_falls_back_to_the_database_when_redis_is_down() {
    let world = World::new();
    // Nothing listens on port 1: every cache operation fails fast.
    let config = "[key_value_stores.cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1/0\"\ntimeout = \"200ms\"\n";
    let host = world.start_with(config);
    let write = client()
        .post(host.at("/caps/cache/item?id=b"))
        .body("still works")
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 200, "writes succeed without the cache");
    for _ in 0..3 {
        assert_eq!(
            cached_item(&host, "b").await,
            ("still works".into(), "bypass".into())
        );
    }
    assert!(
        host.log_contains("key-value store unavailable"),
        "{}",
        host.stderr()
    );
}

async fn publish(host: &Host, query: &str, payload: Value) -> String {
    let response = client()
        .post(host.at(&format!("/caps/queue/publish?topic=jobs&{query}")))
        .body(payload.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn dead_letters(host: &Host, token: &str) -> Value {
    let response = client()
        .get(format!("{}/v1/queues/jobs/dead-letters", host.admin_url))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

const EFFECTS: &str = "SELECT count(*) FROM effects WHERE message_id = $1";
const DELIVERIES: &str = "SELECT count(*) FROM deliveries WHERE message_id = $1";

async fn queue_contract(world: &World, sql: Sql, kv: Kv, queue: Queue) {
    let token = "queue-admin-token";
    let host = Host::start(
        HostOptions::manifest(MANIFEST)
            .with_fixture_migrations()
            .data_dir(world.data.path())
            .runtime_config(&world.config(sql, kv, queue))
            .env("LAMINA_VAR_API_KEY", API_KEY)
            .env("LAMINA_DEPLOY_TOKEN", token),
    );
    let wait = Duration::from_secs(20);

    // Delivered and handled.
    let ok = publish(&host, "", json!({"action": "ok"})).await;
    wait_for_count(&host, EFFECTS, json!([ok]), 1, wait).await;

    // Delayed delivery waits.
    let started = Instant::now();
    let delayed = publish(&host, "delay_ms=700", json!({"action": "ok"})).await;
    wait_for_count(&host, EFFECTS, json!([delayed]), 1, wait).await;
    assert!(
        started.elapsed() >= Duration::from_millis(700),
        "{:?}",
        started.elapsed()
    );

    // Idempotency key: one message however often it is published.
    let first = publish(&host, "key=order-42", json!({"action": "ok"})).await;
    let second = publish(&host, "key=order-42", json!({"action": "ok"})).await;
    assert_eq!(first, second);
    wait_for_count(&host, EFFECTS, json!([first]), 1, wait).await;

    // Fails twice, succeeds on the third attempt.
    let flaky = publish(&host, "", json!({"action": "fail", "until": 3})).await;
    wait_for_count(&host, EFFECTS, json!([flaky]), 1, wait).await;
    assert_eq!(count(&host, DELIVERIES, json!([flaky])).await, 3);

    // Always fails (and a trap counts as a failure): dead-lettered after 3 attempts.
    let doomed = publish(&host, "", json!({"action": "fail"})).await;
    let trapped = publish(&host, "", json!({"action": "trap"})).await;
    wait_for_count(&host, DELIVERIES, json!([doomed]), 3, wait).await;
    let deadline = Instant::now() + wait;
    let letters = loop {
        let letters = dead_letters(&host, token).await;
        if letters["items"].as_array().unwrap().len() == 2 {
            break letters;
        }
        assert!(Instant::now() < deadline, "{letters}\n{}", host.stderr());
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let doomed_letter = letters["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == doomed.as_str())
        .unwrap();
    assert_eq!(doomed_letter["attempts"], 3);
    assert!(
        doomed_letter["lastError"]
            .as_str()
            .unwrap()
            .contains("asked to fail"),
        "{doomed_letter}"
    );
    assert!(
        letters["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["id"] == trapped.as_str())
    );
    assert_eq!(count(&host, EFFECTS, json!([doomed])).await, 0);

    // Replay puts it back with fresh attempts (it fails again: 3 more deliveries).
    let replay = client()
        .post(format!(
            "{}/v1/queues/jobs/dead-letters/{doomed}/replay",
            host.admin_url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(replay.status(), 200);
    wait_for_count(&host, DELIVERIES, json!([doomed]), 6, wait).await;
    let missing = client()
        .post(format!(
            "{}/v1/queues/jobs/dead-letters/no-such-id/replay",
            host.admin_url
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    expect_problem(missing, 404).await;
}

/// A second subscriber of `jobs`: the fixture again, its rows prefixed.
const SECOND_SUBSCRIBER: &str = r#"
[[trigger.queue]]
topic = "jobs"
component = "second"

[component.second]
source = "{capabilities}"
databases = ["default"]
environment = { SUBSCRIBER = "second:" }
"#;

/// Two components subscribed to one topic each handle every message
/// once, with retries of their own; what was published while the topic
/// had no subscriber reaches both once they start.
async fn fan_out_contract(world: &World, sql: Sql, queue: Queue) {
    let config = world.config(sql, Kv::Memory, queue);
    let unsubscribed = MANIFEST.replace(
        "[[trigger.queue]]\ntopic = \"jobs\"\ncomponent = \"caps\"\nconcurrency = 2\n",
        "",
    );
    assert_ne!(unsubscribed, MANIFEST);
    let early = {
        let host = Host::start(
            HostOptions::manifest(&unsubscribed)
                .with_fixture_migrations()
                .data_dir(world.data.path())
                .runtime_config(&config)
                .env("LAMINA_VAR_API_KEY", API_KEY),
        );
        publish(&host, "", json!({"action": "ok"})).await
    };
    let host = Host::start(
        HostOptions::manifest(&format!("{MANIFEST}{SECOND_SUBSCRIBER}"))
            .with_fixture_migrations()
            .data_dir(world.data.path())
            .runtime_config(&config)
            .env("LAMINA_VAR_API_KEY", API_KEY),
    );
    let wait = Duration::from_secs(20);
    let mut ids = vec![early];
    for _ in 0..5 {
        ids.push(publish(&host, "", json!({"action": "ok"})).await);
    }
    let once = publish(&host, "key=fan-out-once", json!({"action": "ok"})).await;
    assert_eq!(
        once,
        publish(&host, "key=fan-out-once", json!({"action": "ok"})).await
    );
    ids.push(once);
    let flaky = publish(&host, "", json!({"action": "fail", "until": 2})).await;
    ids.push(flaky.clone());
    for id in &ids {
        for key in [id.clone(), format!("second:{id}")] {
            wait_for_count(&host, EFFECTS, json!([key]), 1, wait).await;
        }
    }
    // Each subscriber retried the flaky message on its own: two each.
    for key in [flaky.clone(), format!("second:{flaky}")] {
        assert_eq!(count(&host, DELIVERIES, json!([key])).await, 2);
    }
    // Nothing handled twice, nothing left over.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        count(&host, "SELECT count(*) FROM effects", json!([])).await,
        2 * ids.len() as i64
    );
}

#[tokio::test]
async fn fan_out_on_a_sql_table() {
    let world = World::new();
    fan_out_contract(&world, Sql::Sqlite, Queue::Sql).await;
}

#[tokio::test]
async fn fan_out_on_redis_streams() {
    let world = World::new();
    fan_out_contract(&world, Sql::Postgres, Queue::Redis).await;
}

#[tokio::test]
async fn queue_on_a_sqlite_table() {
    let world = World::new();
    queue_contract(&world, Sql::Sqlite, Kv::Memory, Queue::Sql).await;
}

#[tokio::test]
async fn queue_on_a_postgres_table() {
    let world = World::new();
    queue_contract(&world, Sql::Postgres, Kv::Memory, Queue::Sql).await;
}

#[tokio::test]
async fn queue_on_redis_streams() {
    let world = World::new();
    queue_contract(&world, Sql::Postgres, Kv::Redis, Queue::Redis).await;
}

#[tokio::test]
async fn sql_queue_message_survives_sigkill() {
    let world = World::new();
    let mut host = world.start(Sql::Sqlite, Kv::Memory, Queue::Sql);
    // Not yet due when the host dies.
    let pending = publish(&host, "delay_ms=1000", json!({"action": "ok"})).await;
    // Being handled when the host dies.
    let in_flight = publish(&host, "", json!({"action": "sleep", "ms": 5000})).await;
    wait_for_count(
        &host,
        DELIVERIES,
        json!([in_flight]),
        1,
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(count(&host, EFFECTS, json!([pending])).await, 0);
    host.kill();

    let host = world.start(Sql::Sqlite, Kv::Memory, Queue::Sql);
    let wait = Duration::from_secs(20);
    wait_for_count(&host, EFFECTS, json!([pending]), 1, wait).await;
    // Redelivered once its claim expired (visibility timeout 2 s).
    wait_for_count(&host, EFFECTS, json!([in_flight]), 1, wait).await;
    assert_eq!(
        count(&host, DELIVERIES, json!([in_flight])).await,
        2,
        "{}",
        host.stderr()
    );
    assert_eq!(count(&host, DELIVERIES, json!([pending])).await, 1);
}

#[tokio::test]
async fn redis_queue_message_of_a_dead_host_is_handled_by_another() {
    let world = World::new();
    let mut first = world.start(Sql::Postgres, Kv::Redis, Queue::Redis);
    let in_flight = publish(&first, "", json!({"action": "sleep", "ms": 5000})).await;
    wait_for_count(
        &first,
        DELIVERIES,
        json!([in_flight]),
        1,
        Duration::from_secs(10),
    )
    .await;
    first.kill();

    let second = world.start(Sql::Postgres, Kv::Redis, Queue::Redis);
    wait_for_count(
        &second,
        EFFECTS,
        json!([in_flight]),
        1,
        Duration::from_secs(20),
    )
    .await;
    assert_eq!(count(&second, DELIVERIES, json!([in_flight])).await, 2);
}

#[tokio::test]
async fn redis_queue_hosts_share_one_group() {
    let world = World::new();
    let a = world.start(Sql::Postgres, Kv::Redis, Queue::Redis);
    let b = world.start(Sql::Postgres, Kv::Redis, Queue::Redis);
    let mut ids = Vec::new();
    for n in 0..30 {
        let host = if n % 2 == 0 { &a } else { &b };
        ids.push(publish(host, "", json!({"action": "sleep", "ms": 20})).await);
    }
    wait_for_count(
        &a,
        "SELECT count(*) FROM effects",
        json!([]),
        30,
        Duration::from_secs(30),
    )
    .await;
    // Each message delivered exactly once: no host stole another's claim.
    assert_eq!(
        count(&a, "SELECT count(*) FROM deliveries", json!([])).await,
        30
    );
}

#[tokio::test]
async fn grants_are_enforced() {
    let world = World::new();
    let host = world.start(Sql::Sqlite, Kv::Memory, Queue::Sql);
    let denied = post(
        &host,
        "/other/sql/query",
        json!({"sql": "SELECT 1", "params": []}),
    )
    .await;
    assert_eq!(expect_problem(denied, 403).await["title"], "access-denied");
    let denied = client()
        .get(host.at("/other/kv/get?store=default&key=x"))
        .send()
        .await
        .unwrap();
    expect_problem(denied, 403).await;
    let denied = client()
        .post(host.at("/other/queue/publish?topic=jobs"))
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_problem(denied, 403).await;
    // Granted component, ungranted names.
    let denied = client()
        .post(host.at("/caps/queue/publish?topic=other"))
        .body("{}")
        .send()
        .await
        .unwrap();
    expect_problem(denied, 403).await;
    let unknown = post(
        &host,
        "/caps/sql/query?db=analytics",
        json!({"sql": "SELECT 1", "params": []}),
    )
    .await;
    expect_problem(unknown, 403).await;
    let denied = client()
        .get(host.at("/other/var?name=greeting"))
        .send()
        .await
        .unwrap();
    expect_problem(denied, 404).await;
    let denied = client()
        .get(host.at("/caps/var?name=unused"))
        .send()
        .await
        .unwrap();
    expect_problem(denied, 404).await;
}

#[tokio::test]
async fn variables_resolve_and_secrets_stay_out_of_logs() {
    let world = World::new();
    let host = Host::start(
        HostOptions::manifest(MANIFEST)
            .with_fixture_migrations()
            .data_dir(world.data.path())
            .runtime_config(&format!(
                "{}[variables]\ngreeting = \"from runtime config\"\n",
                world.config(Sql::Sqlite, Kv::Memory, Queue::Sql)
            ))
            .env("LAMINA_VAR_API_KEY", API_KEY)
            .env("LAMINA_LOG", "debug,wasmtime=warn,cranelift=warn"),
    );
    let value = |name: &'static str| {
        let url = host.at(&format!("/caps/var?name={name}"));
        async move {
            client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()["value"]
                .clone()
        }
    };
    assert_eq!(value("greeting").await, "from runtime config");
    assert_eq!(value("auth").await, format!("Bearer {API_KEY}"));
    assert!(
        !host.stderr().contains(API_KEY),
        "secret leaked into the log"
    );

    // The environment wins over the runtime config.
    let env_host = Host::start(
        HostOptions::manifest(MANIFEST)
            .with_fixture_migrations()
            .data_dir(world.data.path())
            .runtime_config(&format!(
                "{}[variables]\ngreeting = \"from runtime config\"\n",
                world.config(Sql::Sqlite, Kv::Memory, Queue::Sql)
            ))
            .env("LAMINA_VAR_API_KEY", API_KEY)
            .env("LAMINA_VAR_GREETING", "from env"),
    );
    let response: Value = client()
        .get(env_host.at("/caps/var?name=greeting"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(response["value"], "from env");

    // A required variable nobody set stops start-up with its name, not a value.
    let missing = Host::try_start(
        HostOptions::manifest(MANIFEST)
            .data_dir(world.data.path())
            .runtime_config(&world.config(Sql::Sqlite, Kv::Memory, Queue::Sql)),
    );
    let error = missing.err().expect("start-up must fail");
    assert!(error.contains("LAMINA_VAR_API_KEY"), "{error}");
}

#[tokio::test]
async fn ungranted_backends_fail_start_up_clearly() {
    let world = World::new();
    let manifest = MANIFEST.replace(
        "databases = [\"default\"]",
        "databases = [\"default\", \"analytics\"]",
    );
    let error = Host::try_start(
        HostOptions::manifest(&manifest)
            .data_dir(world.data.path())
            .runtime_config(&world.config(Sql::Sqlite, Kv::Memory, Queue::Sql))
            .env("LAMINA_VAR_API_KEY", API_KEY),
    )
    .err()
    .expect("start-up must fail");
    assert!(
        error.contains("component.caps.databases: `analytics` is not configured"),
        "{error}"
    );
}

#[test]
fn migrate_command_applies_pending_migrations_once() {
    let world = World::new();
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("spin.toml");
    std::fs::write(&manifest, lamina_tests::expand(MANIFEST)).unwrap();
    let migrations = dir.path().join("migrations/default/sqlite");
    std::fs::create_dir_all(&migrations).unwrap();
    std::fs::copy(
        lamina_tests::workspace()
            .join("tests/fixtures/capabilities-fixture/migrations/default/sqlite/0001_fixture.sql"),
        migrations.join("0001_fixture.sql"),
    )
    .unwrap();
    let config = dir.path().join("runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\ndir = {:?}\n",
            world.data.path().display().to_string()
        ),
    )
    .unwrap();
    let args = [
        "migrate",
        "--manifest",
        manifest.to_str().unwrap(),
        "--runtime-config",
        config.to_str().unwrap(),
    ];
    let (status, stdout, stderr) = lamina_tests::run_lamina(&args, &[]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.starts_with("1 migration(s) applied"), "{stdout}");
    let (status, stdout, _) = lamina_tests::run_lamina(&args, &[]);
    assert!(status.success());
    assert!(stdout.starts_with("0 migration(s) applied"), "{stdout}");
}
