//! `cargo xtask bench rag`: documents and retrieval on the application's
//! own spin.toml (gateway, auth, the conversation component, the real
//! MiniLM):
//!
//! - **processing throughput**: a text document of [`SECTIONS`] sections
//!   processed by the `knowledge.process` job (reprocessed: the client's
//!   202 to `ready`, so extraction, token counting, embedding, vector and
//!   row writes all count), in chunks per second, against the raw
//!   `/api/embed` call over the same chunk texts in batches of 64,
//!   alternated, the median of [`THROUGHPUT_ROUNDS`] each;
//! - **retrieval latency**: `POST /api/knowledge/search` (hybrid: the query
//!   embedded, the vector scan, full text, fusion, the chunk rows) over
//!   10 000 and 100 000 chunks of one user, on SQLite and on PostgreSQL,
//!   next to the bare `/api/about` route. The chunk rows are seeded by SQL
//!   (`sqlite3`, `psql`) and their vectors through the capabilities
//!   fixture: random vectors, which cost the scan what real ones do, and
//!   100 000 real embeddings would take this machine over an hour.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::{
    SQLITE_DATABASES, drop_schema, free_port, jwt, median, percentile, start_app_on,
    wait_until_listening,
};
use crate::bench_vectors::load;
use crate::http_client::call_json;
use crate::{Result, models, target_dir};

/// Sections of the throughput document (one chunk each).
const SECTIONS: usize = 300;
/// Processing and raw-embedding runs each (odd: the median is one run).
const THROUGHPUT_ROUNDS: usize = 3;
/// Timed searches per size.
const SEARCHES: usize = 51;
/// The user the bench's token names (`bench::jwt`).
const USER: &str = "bench-user";
const POSTGRES: &str = "postgres://postgres@127.0.0.1:5432/test";
/// Words the seeded chunks are made of.
const WORDS: [&str; 16] = [
    "harbor", "alpine", "lantern", "quartz", "meadow", "cobalt", "ember", "willow", "granite",
    "orchid", "tundra", "saffron", "canyon", "velvet", "glacier", "juniper",
];

pub fn bench() -> Result {
    let work = target_dir().join("bench/rag");
    let _ = std::fs::remove_dir_all(&work);
    let store = target_dir().join("bench/inference/models");
    models::install(Some(&store))?;
    if Command::new("sqlite3").arg("-version").output().is_err() {
        crate::apt_install(&["sqlite3"])?;
    }
    let schema = format!("lamina_bench_rag_{}", std::process::id());
    let postgres = ["host", "conversation"]
        .iter()
        .map(|db| {
            format!("[databases.{db}]\ntype = \"postgres\"\nurl = \"{POSTGRES}\"\nschema = \"{schema}_{db}\"\n")
        })
        .collect::<String>()
        + &SQLITE_DATABASES.replace("[databases.conversation]\ntype = \"sqlite\"\n", "");
    let mut outcome = Ok(());
    for (i, (name, databases)) in [
        ("SQLite (embedded)", SQLITE_DATABASES.to_owned()),
        ("PostgreSQL", postgres),
    ]
    .iter()
    .enumerate()
    {
        let dir = work.join(i.to_string());
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let port = free_port()?;
        let mut child = start_app_on(&dir, &store, port, with_fixture, databases)?;
        outcome = wait_until_listening(port).and_then(|()| {
            if i == 0 {
                throughput(port)?;
            }
            let seed: Box<dyn Fn(&str) -> Result> = if i == 0 {
                let file = dir.join("data/conversation.db");
                Box::new(move |sql: &str| run_sql(Command::new("sqlite3").arg(&file), sql))
            } else {
                let schema = format!("{schema}_conversation");
                Box::new(move |sql: &str| {
                    run_sql(
                        Command::new("psql").args([POSTGRES, "-q", "-v", "ON_ERROR_STOP=1"]),
                        &format!("SET search_path TO \"{schema}\";\n{sql}"),
                    )
                })
            };
            retrieval(port, name, i == 0, &*seed)
        });
        let _ = child.kill();
        let _ = child.wait();
        if outcome.is_err() {
            break;
        }
    }
    drop_schema(&format!("{schema}_host"));
    drop_schema(&format!("{schema}_conversation"));
    outcome
}

/// The capabilities fixture at `/caps/...`, granted the `default` vector
/// index the conversation service uses (to seed vectors).
fn with_fixture(manifest: String) -> String {
    let fixture = target_dir().join("wasm32-wasip2/release/capabilities_fixture.wasm");
    format!(
        "{manifest}\n[[trigger.http]]\nroute = \"/caps/...\"\ncomponent = \"caps\"\nauth = \"none\"\n\
         [component.caps]\nsource = \"{}\"\nvector_indexes = [\"default\"]\nmemory_limit = \"256MiB\"\n",
        fixture.display()
    )
}

fn run_sql(command: &mut Command, sql: &str) -> Result {
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot run SQL: {e}"))?;
    child
        .stdin
        .take()
        .expect("piped")
        .write_all(sql.as_bytes())
        .map_err(|e| e.to_string())?;
    let status = child.wait().map_err(|e| e.to_string())?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("seeding failed: {status}"))
    }
}

fn post(port: u16, path: &str, token: &str, body: &Value) -> Result<Value> {
    let body = body.to_string();
    call_json(
        port,
        "POST",
        path,
        Some(token),
        Some(("application/json", body.as_bytes())),
    )
}

/// Waits until the document is `ready`; the seconds since `started`.
fn until_ready(port: u16, token: &str, path: &str, started: Instant) -> Result<f64> {
    let deadline = started + Duration::from_secs(600);
    loop {
        let doc = call_json(port, "GET", path, Some(token), None)?;
        match doc["status"].as_str() {
            Some("ready") => return Ok(started.elapsed().as_secs_f64()),
            Some("failed") => return Err(format!("processing failed: {doc}")),
            _ if Instant::now() > deadline => return Err(format!("not processed: {doc}")),
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

fn throughput(port: u16) -> Result {
    let token = jwt()?;
    let collection = post(port, "/api/knowledge", &token, &json!({"name": "bench"}))?;
    let collection = collection["id"].as_str().ok_or("no collection")?.to_owned();
    let text: String = (0..SECTIONS)
        .map(|s| {
            let words: Vec<&str> = (0..60)
                .map(|w| WORDS[(s * 7 + w * 5 + w / 3) % WORDS.len()])
                .collect();
            format!("## Section {s}\n\n{}.\n\n", words.join(" "))
        })
        .collect();
    let boundary = "lamina-bench-boundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"bench.md\"\r\n\
         Content-Type: text/markdown\r\n\r\n{text}\r\n--{boundary}--\r\n"
    );
    let content_type = format!("multipart/form-data; boundary={boundary}");
    let started = Instant::now();
    let doc = call_json(
        port,
        "POST",
        &format!("/api/knowledge/{collection}/documents"),
        Some(&token),
        Some((content_type.as_str(), body.as_bytes())),
    )?;
    let path = format!(
        "/api/knowledge/{collection}/documents/{}",
        doc["id"].as_str().ok_or("upload failed")?
    );
    until_ready(port, &token, &path, started)?; // warm: the model is loaded
    let (mut texts, mut tokens) = (Vec::new(), 0);
    for page in 1.. {
        let chunks = call_json(
            port,
            "GET",
            &format!("{path}/chunks?pageSize=100&page={page}"),
            Some(&token),
            None,
        )?;
        let items = chunks["items"].as_array().ok_or("no chunks")?;
        if items.is_empty() {
            break;
        }
        texts.extend(
            items
                .iter()
                .filter_map(|c| c["content"].as_str().map(str::to_owned)),
        );
        tokens += items
            .iter()
            .filter_map(|c| c["tokens"].as_u64())
            .sum::<u64>();
    }
    let n = texts.len() as f64;
    let pipeline = || -> Result<f64> {
        let started = Instant::now();
        post(port, &format!("{path}/reprocess"), &token, &json!({}))?;
        Ok(n / until_ready(port, &token, &path, started)?)
    };
    let raw = || -> Result<f64> {
        let started = Instant::now();
        for batch in texts.chunks(64) {
            post(
                port,
                "/api/embed",
                &token,
                &json!({"model": models::MINILM_NAME, "input": batch}),
            )?;
        }
        Ok(n / started.elapsed().as_secs_f64())
    };
    eprintln!(
        "bench: processing {n} chunks vs /api/embed ({THROUGHPUT_ROUNDS} rounds, alternated)"
    );
    let (mut processed, mut embedded) = (Vec::new(), Vec::new());
    for round in 0..THROUGHPUT_ROUNDS {
        if round % 2 == 0 {
            processed.push(pipeline()?);
            embedded.push(raw()?);
        } else {
            embedded.push(raw()?);
            processed.push(pipeline()?);
        }
    }
    let (processed, embedded) = (median(processed), median(embedded));
    println!("| path | chunks/s (median of {THROUGHPUT_ROUNDS}) |");
    println!("| --- | ---: |");
    println!("| `/api/embed`, batches of 64 (baseline) | {embedded:.0} |");
    println!(
        "| processing job (reprocess → ready) | {processed:.0} ({:.2}×) |\n",
        processed / embedded
    );
    println!(
        "{n} chunks of {:.0} tokens on average; SQLite; the job also extracts, counts tokens, \
         writes vectors and rows.\n",
        tokens as f64 / n
    );
    Ok(())
}

/// The chunk rows of `count` chunks in collection `collection`, by SQL
/// that SQLite and PostgreSQL both run.
fn seed_rows(collection: &str, count: usize) -> String {
    let document = format!("{collection}-doc");
    let words: String = WORDS.iter().map(|w| format!("{w:<8}")).collect();
    format!(
        "INSERT INTO conv_collections (id, user_id, name, created_at, updated_at) \
         VALUES ('{collection}', '{USER}', '{collection}', 0, 0);\n\
         INSERT INTO conv_documents (id, collection_id, user_id, name, format, content_type, size, \
         sha256, status, generation, characters, chunk_count, created_at, updated_at) \
         VALUES ('{document}', '{collection}', '{USER}', 'seeded.txt', 'text', 'text/plain', 0, '', \
         'ready', 1, 0, {count}, 0, 0);\n\
         WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < {last}) \
         INSERT INTO conv_chunks (id, document_id, collection_id, user_id, idx, content, \
         start_offset, end_offset, tokens) \
         SELECT '{document}:1:' || i, '{document}', '{collection}', '{USER}', i, \
         'Section ' || i || ' covers the ' || trim(substr('{words}', (i % 16) * 8 + 1, 8)) || ' ' || \
         trim(substr('{words}', ((i / 16) % 16) * 8 + 1, 8)) || ' and the ' || \
         trim(substr('{words}', ((i / 256) % 16) * 8 + 1, 8)) || ' of part ' || (i * 7919 % 100003) || '.', \
         0, 0, 20 FROM n;\n",
        last = count - 1,
    )
}

fn retrieval(port: u16, name: &str, header: bool, seed: &dyn Fn(&str) -> Result) -> Result {
    let token = jwt()?;
    let started = Instant::now();
    let mut random = 0x9E37_79B9_7F4A_7C15u64;
    for (collection, count) in [("bench-a", 10_000), ("bench-b", 90_000)] {
        seed(&seed_rows(collection, count))?;
        let document = format!("{collection}-doc");
        load(
            port,
            USER,
            collection,
            count,
            |i| format!("{document}:1:{i}"),
            &mut random,
        )?;
    }
    eprintln!(
        "bench: {name}: 100 000 chunks seeded in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    if header {
        println!(
            "| backend | chunks | hybrid search p50 ms | hybrid p99 ms | its keyword half alone p50 ms | bare route p50 ms |"
        );
        println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    }
    for (count, collections) in [
        (10_000, json!(["bench-a"])),
        (100_000, json!(["bench-a", "bench-b"])),
    ] {
        let (mut search_ms, mut keyword_ms, mut bare_ms) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..SEARCHES {
            let t = Instant::now();
            call_json(port, "GET", "/api/about", None, None)?;
            bare_ms.push(t.elapsed().as_secs_f64() * 1e3);
            let query = format!(
                "Which section covers the {} lantern?",
                WORDS[round % WORDS.len()]
            );
            for (mode, times) in [("hybrid", &mut search_ms), ("keyword", &mut keyword_ms)] {
                let body = json!({
                    "query": query, "collectionIds": collections, "topK": 4, "mode": mode,
                });
                let t = Instant::now();
                let found = post(port, "/api/knowledge/search", &token, &body)?;
                times.push(t.elapsed().as_secs_f64() * 1e3);
                if found["items"].as_array().map_or(0, Vec::len) != 4 {
                    return Err(format!("{name}: a {mode} search found {found}"));
                }
            }
        }
        println!(
            "| {name} | {count} | {:.1} | {:.1} | {:.1} | {:.2} |",
            percentile(search_ms.clone(), 0.5),
            percentile(search_ms, 0.99),
            percentile(keyword_ms, 0.5),
            percentile(bare_ms, 0.5),
        );
    }
    Ok(())
}
