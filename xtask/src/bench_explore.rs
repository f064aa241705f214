//! `cargo xtask bench explore`: the explore service on the application's
//! own spin.toml (gateway, rate limits, the real component, MiniLM), two
//! hosts side by side, each with the same 1 000-entry catalogue:
//!
//! - one as shipped (the catalogue cached in the in-process key-value
//!   store), one with the cache off (the component granted no store, so
//!   every read goes to SQLite): requests per second of a list page and
//!   of a text search, wrk against each in turn, alternated, the median of
//!   [`ROUNDS`] runs;
//! - the latency (p50/p99) of semantic and hybrid searches none of which
//!   is cached (each query new), on the cached host.

use std::time::Instant;

use serde_json::json;

use crate::bench::{
    Measurement, free_port, jwt_as, percentile, start_app, wait_until_listening, wrk,
};
use crate::http_client::call_json;
use crate::{Result, models, target_dir};

/// Catalogue entries seeded on each host.
const ENTRIES: usize = 1000;
/// wrk runs per host and route (odd: the median is one run).
const ROUNDS: usize = 5;
/// Uncached searches per mode.
const SEARCHES: usize = 51;
/// Words the seeded descriptions are made of.
const TOPICS: [&str; 12] = [
    "code completion in Python and Rust",
    "friendly conversation and small talk",
    "translation between European languages",
    "summaries of long reports",
    "answers about medicine and health",
    "legal documents and contracts",
    "mathematics and step-by-step reasoning",
    "creative writing of stories and poems",
    "sentence embeddings for retrieval",
    "customer support replies",
    "SQL queries from plain questions",
    "image captions and descriptions",
];

pub fn bench() -> Result {
    let work = target_dir().join("bench/explore");
    let _ = std::fs::remove_dir_all(&work);
    let store = target_dir().join("bench/inference/models");
    models::install(Some(&store))?;
    let (cached_port, uncached_port) = (free_port()?, free_port()?);
    let cached_dir = work.join("cached");
    let uncached_dir = work.join("uncached");
    for dir in [&cached_dir, &uncached_dir] {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
    }
    let mut cached = start_app(&cached_dir, &store, cached_port, |m| m)?;
    let mut uncached = start_app(&uncached_dir, &store, uncached_port, without_cache)?;
    let outcome = wait_until_listening(cached_port)
        .and_then(|()| wait_until_listening(uncached_port))
        .and_then(|()| measure(cached_port, uncached_port));
    for child in [&mut cached, &mut uncached] {
        let _ = child.kill();
        let _ = child.wait();
    }
    outcome
}

/// The manifest with the explore component granted no key-value store.
fn without_cache(manifest: String) -> String {
    let section = manifest
        .find("[component.explore]")
        .expect("spin.toml has the explore component");
    let (head, tail) = manifest.split_at(section);
    format!(
        "{head}{}",
        tail.replacen("key_value_stores = [\"default\"]\n", "", 1)
    )
}

fn seed(port: u16, admin: &str) -> Result {
    for i in 0..ENTRIES {
        let topic = TOPICS[i % TOPICS.len()];
        let body = json!({
            "name": format!("bench-{i}:1b"),
            "title": format!("Bench model {i}"),
            "description": format!("A model number {i} tuned for {topic}."),
            "parameterSize": format!("{}M", 100 + i % 900),
        })
        .to_string();
        call_json(
            port,
            "POST",
            "/api/admin/models",
            Some(admin),
            Some(("application/json", body.as_bytes())),
        )?;
    }
    let listed = call_json(port, "GET", "/api/explore/models?pageSize=1", None, None)?;
    if listed["total"].as_u64() < Some(ENTRIES as u64) {
        return Err(format!("seeding failed: {listed}"));
    }
    Ok(())
}

fn measure(cached: u16, uncached: u16) -> Result {
    let admin = jwt_as("bench-admin", &["Admin"])?;
    eprintln!("bench: seeding {ENTRIES} catalogue entries on each host");
    seed(cached, &admin)?;
    seed(uncached, &admin)?;

    let routes = [
        (
            "GET /api/explore/models (page of 20, sort=popularity, 1 000 entries)",
            "/api/explore/models?pageSize=20&sort=popularity",
        ),
        (
            "GET /api/explore/models?minParameters=500M&capability=completion",
            "/api/explore/models?minParameters=500M&capability=completion",
        ),
        (
            "GET /api/explore/search?q=translation&mode=text",
            "/api/explore/search?q=translation&mode=text",
        ),
    ];
    let wrk_args = ["-t1", "-c4", "-d4s", "--latency"];
    let mut table = Vec::new();
    for (name, path) in routes {
        eprintln!("bench: {name}, cached vs uncached, {ROUNDS} rounds alternated");
        let url = |port: u16| format!("http://127.0.0.1:{port}{path}");
        let (mut on, mut off) = (Vec::new(), Vec::new());
        for round in 0..ROUNDS {
            if round % 2 == 0 {
                on.push(wrk(&url(cached), &wrk_args, None)?);
                off.push(wrk(&url(uncached), &wrk_args, None)?);
            } else {
                off.push(wrk(&url(uncached), &wrk_args, None)?);
                on.push(wrk(&url(cached), &wrk_args, None)?);
            }
        }
        table.push((name, Measurement::median(&on), Measurement::median(&off)));
    }

    eprintln!("bench: {SEARCHES} uncached semantic and hybrid searches");
    let mut latencies = Vec::new();
    for mode in ["semantic", "hybrid"] {
        let mut samples = Vec::new();
        for i in 0..SEARCHES {
            let topic = TOPICS[i % TOPICS.len()].replace(' ', "+");
            let path = format!("/api/explore/search?mode={mode}&q={topic}+variant+{i}");
            let started = Instant::now();
            let found = call_json(cached, "GET", &path, None, None)?;
            samples.push(started.elapsed().as_secs_f64() * 1e3);
            if found["items"].as_array().is_none_or(Vec::is_empty) {
                return Err(format!("{path}: nothing found: {found}"));
            }
        }
        latencies.push((mode, samples));
    }

    println!("\n| explore read ({ENTRIES} entries) | cached req/s | uncached req/s | ratio |");
    println!("| --- | ---: | ---: | ---: |");
    for (name, on, off) in &table {
        println!(
            "| {name} | {:.0} | {:.0} | {:.2}x |",
            on.requests_per_sec,
            off.requests_per_sec,
            on.requests_per_sec / off.requests_per_sec
        );
    }
    println!("\n| uncached search, {ENTRIES} entries (a new query each time) | p50 ms | p99 ms |");
    println!("| --- | ---: | ---: |");
    for (mode, samples) in latencies {
        println!(
            "| `mode={mode}` | {:.1} | {:.1} |",
            percentile(samples.clone(), 0.5),
            percentile(samples, 0.99)
        );
    }
    Ok(())
}
