//! Capability benchmarks, for the embedded and the distributed backends:
//! key-value get/set, a cache-aside hit against the database read it saves,
//! and queue publish→handle latency. Everything goes through the
//! capabilities test fixture over HTTP, so the figures include the
//! component instance each request gets; the baseline is a route of the same
//! component that touches no backend, measured in the same run.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::bench::{Measurement, free_port, spawn_lamina, wait_until_listening, wrk};
use crate::{Result, root, target_dir};

/// Shorter runs than the HTTP bench: five routes per backend.
const WRK_ARGS: [&str; 6] = ["-t2", "-c16", "-d5s", "--latency", "--timeout", "5s"];
/// Messages published for the queue latency.
const MESSAGES: usize = 100;

const MANIFEST: &str = r#"spin_manifest_version = 2
[application]
name = "bench"
[variables]
greeting = { default = "hello" }
[[trigger.http]]
route = "/caps/..."
component = "caps"
[[trigger.queue]]
topic = "jobs"
component = "caps"
[component.caps]
source = "{source}"
databases = ["default"]
key_value_stores = ["default", "cache"]
queues = ["jobs"]
variables = { greeting = "{{ greeting }}" }
"#;

struct Backends {
    name: &'static str,
    config: String,
}

pub fn bench() -> Result {
    let work = target_dir().join("bench/capabilities");
    let _ = std::fs::remove_dir_all(&work);
    let schema = format!("lamina_bench_{}", std::process::id());
    let prefix = format!("lamina-bench-{}:", std::process::id());
    let backends = [
        Backends {
            name: "embedded (SQLite, in-process kv, SQL-table queue)",
            config: "[key_value_stores.cache]\ntype = \"memory\"\n".into(),
        },
        Backends {
            name: "distributed (PostgreSQL, Redis kv, Redis Streams queue)",
            config: format!(
                "[databases.default]\ntype = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\nschema = \"{schema}\"\n\
                 [key_value_stores.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{prefix}kv:\"\n\
                 [key_value_stores.cache]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{prefix}kv:\"\n\
                 [queue]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{prefix}queue:\"\n"
            ),
        },
    ];
    let mut tables = Vec::new();
    for (index, backends) in backends.iter().enumerate() {
        let dir = work.join(index.to_string());
        let result = run_backends(&dir, backends);
        if index == 1 {
            cleanup(&schema, &prefix);
        }
        tables.push((backends.name, result?));
    }
    println!("| backends | operation | req/s | p50 ms | p99 ms | vs baseline (req/s) |");
    println!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (name, rows) in &tables {
        let baseline = rows[0].1.requests_per_sec;
        for (operation, m) in rows {
            let (rps, ratio) = if m.requests_per_sec.is_nan() {
                ("-".to_owned(), "-".to_owned())
            } else {
                (
                    format!("{:.0}", m.requests_per_sec),
                    format!("{:.2}x", m.requests_per_sec / baseline),
                )
            };
            println!(
                "| {name} | {operation} | {rps} | {:.2} | {:.2} | {ratio} |",
                m.p50_ms, m.p99_ms
            );
        }
        let hit = rows
            .iter()
            .find(|(o, _)| o.starts_with("cache hit"))
            .map(|r| &r.1);
        let read = rows
            .iter()
            .find(|(o, _)| o.starts_with("database read"))
            .map(|r| &r.1);
        if let (Some(hit), Some(read)) = (hit, read) {
            println!(
                "| {name} | cache hit vs database read | | | | {:.2}x |",
                hit.requests_per_sec / read.requests_per_sec
            );
        }
    }
    println!(
        "\nwrk {} through the capabilities fixture; queue: {MESSAGES} messages published \
         one at a time, latency from publish to the handler's write.",
        WRK_ARGS.join(" ")
    );
    Ok(())
}

fn run_backends(dir: &Path, backends: &Backends) -> Result<Vec<(String, Measurement)>> {
    let fixture = target_dir().join("wasm32-wasip2/release/capabilities_fixture.wasm");
    let migrations = root().join("tests/fixtures/capabilities-fixture/migrations/default");
    for dialect in ["sqlite", "postgres"] {
        let to = dir.join("migrations/default").join(dialect);
        std::fs::create_dir_all(&to).map_err(|e| e.to_string())?;
        std::fs::copy(
            migrations.join(dialect).join("0001_fixture.sql"),
            to.join("0001_fixture.sql"),
        )
        .map_err(|e| e.to_string())?;
    }
    let manifest = dir.join("spin.toml");
    let config = dir.join("runtime-config.toml");
    std::fs::write(
        &manifest,
        MANIFEST.replace("{source}", &fixture.display().to_string()),
    )
    .and_then(|()| {
        std::fs::write(
            &config,
            format!("[data]\ndir = \"data\"\n{}", backends.config),
        )
    })
    .map_err(|e| e.to_string())?;
    let port = free_port()?;
    let mut child = spawn_lamina(&manifest, &config, port, &[])?;
    let result = measure(dir, port, backends.name);
    stop(&mut child);
    result
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

fn measure(dir: &Path, port: u16, name: &str) -> Result<Vec<(String, Measurement)>> {
    wait_until_listening(port)?;
    let base = format!("http://127.0.0.1:{port}/caps");
    http(
        port,
        "POST",
        "/caps/kv/set?store=default&key=bench:item:1",
        "a cached value",
    )?;
    http(
        port,
        "POST",
        "/caps/cache/item?id=bench",
        "a row in the database",
    )?;
    http(port, "GET", "/caps/cache/item?id=bench", "")?;
    let post = |file: &str, body: &str| -> Result<std::path::PathBuf> {
        let script = dir.join(file);
        let body = body.replace('\\', "\\\\").replace('"', "\\\"");
        std::fs::write(
            &script,
            format!("wrk.method = \"POST\"\nwrk.body = \"{body}\"\n"),
        )
        .map_err(|e| e.to_string())?;
        Ok(script)
    };
    let set = post("set.lua", "a value of some thirty bytes..")?;
    let read = post(
        "read.lua",
        r#"{"sql": "SELECT id, name FROM items WHERE id = $1", "params": ["bench"]}"#,
    )?;
    let runs: [(&str, String, Option<&Path>); 5] = [
        (
            "baseline: variable, no backend",
            format!("{base}/var?name=greeting"),
            None,
        ),
        (
            "kv get",
            format!("{base}/kv/get?store=default&key=bench:item:1"),
            None,
        ),
        (
            "kv set",
            format!("{base}/kv/set?store=default&key=bench:item:2"),
            Some(&set),
        ),
        (
            "cache hit (cache-aside)",
            format!("{base}/cache/item?id=bench"),
            None,
        ),
        (
            "database read (same row)",
            format!("{base}/sql/query"),
            Some(&read),
        ),
    ];
    let mut rows = Vec::new();
    for (operation, url, script) in runs {
        eprintln!("bench: {name}: {operation}");
        rows.push((operation.to_owned(), wrk(&url, &WRK_ARGS, script)?));
    }
    eprintln!("bench: {name}: queue publish → handle");
    rows.push((
        "queue publish → handle (latency only)".to_owned(),
        queue_latency(port)?,
    ));
    Ok(rows)
}

/// Publishes messages one at a time, waits for all to be handled, and reads
/// each one's publish→handle latency back from the fixture's table.
fn queue_latency(port: u16) -> Result<Measurement> {
    for _ in 0..MESSAGES {
        http(
            port,
            "POST",
            "/caps/queue/publish?topic=jobs",
            r#"{"action":"ok"}"#,
        )?;
        std::thread::sleep(Duration::from_millis(20));
    }
    let query = r#"{"sql": "SELECT latency_us FROM effects", "params": []}"#;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let body = http(port, "POST", "/caps/sql/query", query)?;
        let rows: serde_json::Value =
            serde_json::from_str(&body).map_err(|e| format!("{e}: {body}"))?;
        let mut latencies: Vec<f64> = rows["rows"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r[0]["int"].as_i64())
            .map(|us| us as f64 / 1000.0)
            .collect();
        if latencies.len() >= MESSAGES {
            latencies.sort_by(f64::total_cmp);
            let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize];
            return Ok(Measurement {
                requests_per_sec: f64::NAN,
                p50_ms: at(0.5),
                p99_ms: at(0.99),
            });
        }
        if Instant::now() > deadline {
            return Err(format!(
                "only {} of {MESSAGES} messages handled after 60 s",
                latencies.len()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A minimal HTTP/1.1 request (std only); returns the body of a 2xx answer.
fn http(port: u16, method: &str, path: &str, body: &str) -> Result<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| e.to_string())?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&response);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("malformed response")?;
    if !head.starts_with("HTTP/1.1 2") {
        return Err(format!("{method} {path}: {head}\n{rest}"));
    }
    let chunked = head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked");
    Ok(if chunked {
        dechunk(rest)
    } else {
        rest.to_owned()
    })
}

fn dechunk(mut rest: &str) -> String {
    let mut body = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 || after.len() < size {
            break;
        }
        body.push_str(&after[..size]);
        rest = after[size..].trim_start_matches("\r\n");
    }
    body
}

/// Drops the benchmark's Postgres schema and Redis keys.
fn cleanup(schema: &str, prefix: &str) {
    crate::bench::drop_schema(schema);
    let script =
        "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0";
    let _ = Command::new("redis-cli")
        .args(["EVAL", script, "0", &format!("{prefix}*")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
}
