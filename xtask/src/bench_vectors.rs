//! Vector search latency (`cargo xtask bench vectors`): the `vectors`
//! capability's top-k query over 10 000 and 100 000 of one owner's
//! 384-dimension vectors (all-MiniLM's size), on the embedded backend
//! (SQLite host database) and on PostgreSQL, through the capabilities
//! fixture over HTTP. The baseline is the fixture's bare route, timed in
//! the same rounds, so the figures show what the search itself costs.

use std::path::Path;
use std::time::Instant;

use serde_json::{Value, json};

use crate::bench::{drop_schema, free_port, percentile, spawn_lamina, wait_until_listening};
use crate::http_client::call_json;
use crate::{Result, target_dir};

const DIM: usize = 384;
/// Vectors per upsert request.
const BATCH: usize = 500;
/// Timed queries per size (odd: the median is one of them).
const ROUNDS: usize = 51;

const MANIFEST: &str = r#"spin_manifest_version = 2
[application]
name = "bench-vectors"
[[trigger.http]]
route = "/caps/..."
component = "caps"
[component.caps]
source = "{source}"
vector_indexes = ["default"]
memory_limit = "256MiB"
"#;

pub fn bench() -> Result {
    let work = target_dir().join("bench/vectors");
    let _ = std::fs::remove_dir_all(&work);
    let schema = format!("lamina_bench_vectors_{}", std::process::id());
    let backends = [
        ("SQLite (embedded)", String::new()),
        (
            "PostgreSQL",
            format!(
                "[databases.host]\ntype = \"postgres\"\nurl = \"postgres://postgres@127.0.0.1:5432/test\"\nschema = \"{schema}\"\n"
            ),
        ),
    ];
    println!(
        "| backend | vectors scanned | query p50 ms | query p99 ms | bare route p50 ms | search cost p50 ms |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    for (index, (name, config)) in backends.iter().enumerate() {
        let result = run(&work.join(index.to_string()), config, name);
        if index == 1 {
            drop_schema(&schema);
        }
        result?;
    }
    println!(
        "\n{ROUNDS} top-10 queries per size, each round alternating the bare route and a query \
         with a new random vector; {DIM} dimensions; one owner's vectors (10 000 in one collection, \
         90 000 in another: the 100 000 query names both)."
    );
    Ok(())
}

fn run(dir: &Path, config: &str, name: &str) -> Result {
    std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    let fixture = target_dir().join("wasm32-wasip2/release/capabilities_fixture.wasm");
    let manifest = dir.join("spin.toml");
    let runtime_config = dir.join("runtime-config.toml");
    std::fs::write(
        &manifest,
        MANIFEST.replace("{source}", &fixture.display().to_string()),
    )
    .and_then(|()| std::fs::write(&runtime_config, format!("[data]\ndir = \"data\"\n{config}")))
    .map_err(|e| e.to_string())?;
    let port = free_port()?;
    let mut child = spawn_lamina(&manifest, &runtime_config, port, &[])?;
    let result = wait_until_listening(port).and_then(|()| measure(port, name));
    let _ = child.kill();
    let _ = child.wait();
    result
}

/// A deterministic pseudo-random vector (xorshift), components in [-1, 1).
pub fn vector(seed: &mut u64) -> Vec<f32> {
    (0..DIM)
        .map(|_| {
            *seed ^= *seed << 13;
            *seed ^= *seed >> 7;
            *seed ^= *seed << 17;
            (*seed >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

/// Calls the capabilities fixture's `/caps/vectors/{op}` on index `default`.
pub fn post(port: u16, op: &str, body: &Value) -> Result<Value> {
    let body = body.to_string();
    call_json(
        port,
        "POST",
        &format!("/caps/vectors/{op}?index=default"),
        None,
        Some(("application/json", body.as_bytes())),
    )
}

/// Stores `count` random vectors of `owner` in `collection`, the `i`th
/// with id `id(i)`.
pub fn load(
    port: u16,
    owner: &str,
    collection: &str,
    count: usize,
    id: impl Fn(usize) -> String,
    seed: &mut u64,
) -> Result {
    for start in (0..count).step_by(BATCH) {
        let items: Vec<Value> = (start..(start + BATCH).min(count))
            .map(|i| json!([id(i), vector(seed), null]))
            .collect();
        post(
            port,
            "upsert",
            &json!({"owner": owner, "collection": collection, "items": items}),
        )?;
    }
    Ok(())
}

fn measure(port: u16, name: &str) -> Result {
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    let started = Instant::now();
    load(
        port,
        "bench",
        "a",
        10_000,
        |i| format!("a-{i:06}"),
        &mut seed,
    )?;
    load(
        port,
        "bench",
        "b",
        90_000,
        |i| format!("b-{i:06}"),
        &mut seed,
    )?;
    eprintln!(
        "xtask: {name}: 100 000 vectors stored in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for (scanned, collections) in [(10_000, json!(["a"])), (100_000, json!(["a", "b"]))] {
        let (mut query_ms, mut bare_ms) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            let t = Instant::now();
            call_json(port, "GET", "/caps/whoami", None, None)?;
            bare_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let body = json!({"owner": "bench", "collections": collections, "vector": vector(&mut seed), "top_k": 10});
            let t = Instant::now();
            let hits = post(port, "query", &body)?;
            query_ms.push(t.elapsed().as_secs_f64() * 1e3);
            if hits.as_array().map_or(0, Vec::len) != 10 {
                return Err(format!("{name}: a query found {hits}"));
            }
        }
        let (p50, p99, bare) = (
            percentile(query_ms.clone(), 0.5),
            percentile(query_ms, 0.99),
            percentile(bare_ms, 0.5),
        );
        println!(
            "| {name} | {scanned} | {p50:.1} | {p99:.1} | {bare:.2} | {:.1} |",
            p50 - bare
        );
    }
    Ok(())
}
