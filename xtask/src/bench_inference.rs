//! Inference speed through the whole path (HTTP → gateway → component →
//! WIT host function → llama.cpp), against llama.cpp's own `llama-bench`
//! on the same GGUF and thread count, in the same run:
//!
//! - generation and prompt tokens/s (goal ≥ 0.95× llama-bench tg128/pp512);
//! - aggregate tokens/s of 2 and 4 concurrent streams vs 1 (goal ≥ 1.6×);
//! - time to first token for a 20-token prompt on a loaded model (< 150 ms);
//! - embeddings, sentences/s batched and one at a time;
//! - the inference API's overhead: the same generations through the Ollama
//!   `/api/generate` route (bearer JWT verified, rate limit, usage
//!   published) against the fixture's bare route, alternated (goal ≥ 0.95×
//!   for tokens/s and time to first token).
//!
//! `llama-bench` is built once from the llama.cpp sources bundled in the
//! `llama-cpp-sys-2` crate (same version as the host's), with the same
//! options the host's build uses (native CPU, no OpenMP), outside the repo.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::bench::{
    JWT_SECRET, free_port, jwt, median, percentile, spawn_lamina, wait_until_listening,
};
use crate::http_client::post_ndjson;
use crate::{Result, models, run, target_dir};

/// The `llama-cpp-python` sdist whose vendored llama.cpp provides
/// `tools/llama-bench` (its benchmark code only; it links the crate's llama.cpp).
const LLAMA_CPP_PYTHON: &str = "0.3.36";

/// Extracts the files under a prefix (argv 3) of a tarball (argv 1) into a
/// directory (argv 2).
const EXTRACT_LLAMA_BENCH: &str = r#"
import sys, tarfile
tar, dest, prefix = tarfile.open(sys.argv[1]), sys.argv[2], sys.argv[3]
for member in tar.getmembers():
    if member.name.startswith(prefix) and member.isfile():
        member.name = member.name[len(prefix):]
        tar.extract(member, dest, filter="data")
"#;

/// Threads for both engines (this machine's cores).
fn threads() -> usize {
    std::thread::available_parallelism().map_or(2, |n| n.get())
}

pub fn bench() -> Result {
    let work = target_dir().join("bench/inference");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let store = work.join("models");
    models::install(Some(&store))?;
    let gguf = models::ensure_default()?;

    let llama_bench = ensure_llama_bench()?;
    eprintln!("bench: llama-bench pp512/tg128, {} threads", threads());
    let before = llama_bench_figures(&llama_bench, &gguf)?;

    let port = free_port()?;
    let mut host = Host {
        port,
        child: start_host(&work, &store, port)?,
    };
    wait_until_listening(port)?;
    let measured = measure(host.port);
    let _ = host.child.kill();
    let _ = host.child.wait();
    // The baseline again, after: this machine drifts by tens of percent
    // between minutes, and the mean of both brackets lamina's runs.
    let after = llama_bench_figures(&llama_bench, &gguf)?;
    report(&measured?, before, after);
    Ok(())
}

struct Host {
    port: u16,
    child: Child,
}

/// A host with the capabilities fixture on `/ai/...` (no auth, no limit)
/// and the inference API's `/api/generate` as the repo's spin.toml routes
/// it (credentials required, `inference` rate-limit class).
fn start_host(work: &Path, store: &Path, port: u16) -> Result<Child> {
    let wasm = target_dir().join("wasm32-wasip2/release");
    let manifest = work.join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"bench\"\n\
             [[trigger.http]]\nroute = \"/ai/...\"\ncomponent = \"ai\"\n\
             [[trigger.http]]\nroute = \"/api/generate\"\ncomponent = \"api\"\n\
             auth = \"required\"\nrate_limit = \"inference\"\n\
             [component.ai]\nsource = {:?}\nmodels = [\"*\"]\n\
             [component.api]\nsource = {:?}\nmodels = [\"*\"]\nqueues = [\"usage.recorded\"]\n",
            wasm.join("capabilities_fixture.wasm").display().to_string(),
            wasm.join("inference_api.wasm").display().to_string(),
        ),
    )
    .map_err(|e| e.to_string())?;
    let config = work.join("runtime-config.toml");
    std::fs::write(
        &config,
        format!(
            "[data]\ndir = {:?}\n[inference]\nmodels_dir = {:?}\nthreads = {}\n\
             # A rate no run reaches, so every request does the full check.\n\
             [rate_limit.classes.inference]\nrequests = 100000\nper = \"1m\"\nconcurrent = 4\n",
            work.join("data").display().to_string(),
            store.display().to_string(),
            threads()
        ),
    )
    .map_err(|e| e.to_string())?;
    spawn_lamina(
        &manifest,
        &config,
        port,
        &[("LAMINA_JWT_SECRET", JWT_SECRET)],
    )
}

/// llama-bench's (pp512, tg128) tokens/s.
#[derive(Clone, Copy)]
struct Reference {
    pp: f64,
    tg: f64,
}

/// What lamina measured.
struct Measured {
    tg: f64,
    tg_engine: f64,
    pp: f64,
    prompt_tokens: Value,
    /// (streams, aggregate tokens/s).
    aggregate: Vec<(usize, f64)>,
    ttft_ms: Vec<f64>,
    short_tokens: Value,
    embed_batched: f64,
    embed_single: f64,
    api: Overhead,
}

/// The same generations through the fixture and through the inference
/// API's `/api/generate`, as (fixture, API) medians.
struct Overhead {
    /// Client-side tokens/s, 128 tokens.
    tg: (f64, f64),
    /// Time to first token, ms.
    ttft_ms: (f64, f64),
}

fn measure(port: u16) -> Result<Measured> {
    // Load both models and warm up.
    generate(port, Via::Fixture, "Hello", 4)?;
    embed(port, &["warm up".to_owned()])?;

    eprintln!("bench: generation (tg128) and prompt (pp512) through the component");
    let mut tg = Vec::new();
    let mut tg_engine = Vec::new();
    for _ in 0..3 {
        let run = generate(
            port,
            Via::Fixture,
            "Write a long story about a lighthouse keeper.",
            128,
        )?;
        tg.push(run.client_tg());
        tg_engine.push(run.stat_rate("eval_count", "eval_duration"));
    }
    let long_prompt = "The quick brown fox jumps over the lazy dog. ".repeat(46);
    let mut pp = Vec::new();
    for _ in 0..3 {
        let run = generate(port, Via::Fixture, &long_prompt, 1)?;
        pp.push(run.stat_rate("prompt_eval_count", "prompt_eval_duration"));
    }
    let prompt_tokens =
        generate(port, Via::Fixture, &long_prompt, 1)?.done["prompt_eval_count"].clone();

    eprintln!("bench: concurrent streams");
    let prompts = [
        "Write a long story about a lighthouse keeper.",
        "Explain how a bicycle works, in detail.",
        "List the planets of the solar system and describe each.",
        "Describe a busy market in the morning.",
    ];
    let mut aggregate = Vec::new();
    for streams in [1usize, 2, 4] {
        let mut rates = Vec::new();
        for _ in 0..2 {
            let started = Instant::now();
            let handles: Vec<_> = prompts[..streams]
                .iter()
                .map(|p| {
                    let p = p.to_string();
                    std::thread::spawn(move || generate(port, Via::Fixture, &p, 96))
                })
                .collect();
            let mut tokens = 0.0;
            for handle in handles {
                let run = handle.join().map_err(|_| "a stream panicked")??;
                tokens += run.done["eval_count"].as_f64().unwrap_or(0.0);
            }
            rates.push(tokens / started.elapsed().as_secs_f64());
        }
        aggregate.push((streams, median(rates)));
    }

    eprintln!("bench: time to first token");
    let short = "Tell me a short fact about the sea, in one sentence please, thank you kindly.";
    let mut ttft = Vec::new();
    for _ in 0..10 {
        ttft.push(
            generate(port, Via::Fixture, short, 1)?
                .first_text
                .as_secs_f64()
                * 1e3,
        );
    }
    let short_tokens = generate(port, Via::Fixture, short, 1)?.done["prompt_eval_count"].clone();

    eprintln!("bench: embeddings");
    let sentences: Vec<String> = (0..256)
        .map(|i| format!("Sentence number {i} is about the weather on a sunny day."))
        .collect();
    let started = Instant::now();
    embed(port, &sentences)?;
    let batched = sentences.len() as f64 / started.elapsed().as_secs_f64();
    let started = Instant::now();
    for sentence in &sentences[..64] {
        embed(port, std::slice::from_ref(sentence))?;
    }
    let single = 64.0 / started.elapsed().as_secs_f64();

    eprintln!("bench: the inference API's overhead (/api/generate vs the fixture, alternated)");
    let token = jwt()?;
    let api = Via::Ollama(&token);
    generate(port, api, "Hello", 4)?;
    // Each pair runs in both orders, so neither route always follows the other.
    let pairs = |round: usize| {
        if round.is_multiple_of(2) {
            [(0, Via::Fixture), (1, api)]
        } else {
            [(1, api), (0, Via::Fixture)]
        }
    };
    let mut api_tg: [Vec<f64>; 2] = Default::default();
    for round in 0..6 {
        for (i, via) in pairs(round) {
            let run = generate(
                port,
                via,
                "Write a long story about a lighthouse keeper.",
                128,
            )?;
            api_tg[i].push(run.client_tg());
        }
    }
    let mut api_first: [Vec<f64>; 2] = Default::default();
    for round in 0..20 {
        for (i, via) in pairs(round) {
            api_first[i].push(generate(port, via, short, 1)?.first_text.as_secs_f64() * 1e3);
        }
    }
    let [tg_fixture, tg_api] = api_tg;
    let [first_fixture, first_api] = api_first;
    let overhead = Overhead {
        tg: (median(tg_fixture), median(tg_api)),
        ttft_ms: (median(first_fixture), median(first_api)),
    };

    Ok(Measured {
        tg: median(tg),
        tg_engine: median(tg_engine),
        pp: median(pp),
        prompt_tokens,
        aggregate,
        ttft_ms: ttft,
        short_tokens,
        embed_batched: batched,
        embed_single: single,
        api: overhead,
    })
}

fn report(m: &Measured, before: Reference, after: Reference) {
    let reference = Reference {
        pp: (before.pp + after.pp) / 2.0,
        tg: (before.tg + after.tg) / 2.0,
    };
    let one = m.aggregate[0].1;
    println!(
        "\nInference, gemma3:270m Q4_K_M, {} threads, median of runs:\n",
        threads()
    );
    println!("| measure | lamina (through a component) | llama-bench (before / after) | ratio |");
    println!("|---|---|---|---|");
    println!(
        "| generation tok/s, 128 tokens (client-side; engine-side {:.1}) | {:.1} | {:.1} / {:.1} (tg128) | {:.2}× |",
        m.tg_engine,
        m.tg,
        before.tg,
        after.tg,
        m.tg / reference.tg
    );
    println!(
        "| prompt tok/s, {} tokens | {:.0} | {:.0} / {:.0} (pp512) | {:.2}× |",
        m.prompt_tokens,
        m.pp,
        before.pp,
        after.pp,
        m.pp / reference.pp
    );
    println!("\n| concurrent streams (96 tokens each) | aggregate tok/s | vs 1 stream |");
    println!("|---|---|---|");
    for (streams, rate) in &m.aggregate {
        println!("| {streams} | {rate:.1} | {:.2}× |", rate / one);
    }
    println!(
        "\ntime to first token, {}-token prompt, loaded model, full HTTP path: median {:.1} ms (p90 {:.1} ms)",
        m.short_tokens,
        median(m.ttft_ms.clone()),
        percentile(m.ttft_ms.clone(), 0.9)
    );
    println!(
        "embeddings (all-minilm:l6-v2): {:.0} sentences/s in one call of 256, {:.0} sentences/s one per call",
        m.embed_batched, m.embed_single
    );
    let api = &m.api;
    println!("\nThe inference API's overhead (same raw prompt, greedy; alternated, medians):\n");
    println!(
        "| measure | fixture route | `/api/generate` (JWT, rate limit, usage) | API vs fixture (higher is better) |"
    );
    println!("|---|---|---|---|");
    println!(
        "| generation tok/s, 128 tokens | {:.1} | {:.1} | {:.2}× |",
        api.tg.0,
        api.tg.1,
        api.tg.1 / api.tg.0
    );
    println!(
        "| time to first token, {}-token prompt | {:.1} ms | {:.1} ms | {:.2}× |",
        m.short_tokens,
        api.ttft_ms.0,
        api.ttft_ms.1,
        api.ttft_ms.0 / api.ttft_ms.1
    );
}

/// One finished generation as the client saw it.
struct Run {
    done: Value,
    /// From sending the request to the first text line.
    first_text: Duration,
    /// From the first text line to the `done` line.
    streaming: Duration,
}

impl Run {
    /// Tokens/s the client received after the first (which the prompt
    /// evaluation produced).
    fn client_tg(&self) -> f64 {
        let tokens = self.done["eval_count"].as_f64().unwrap_or(0.0) - 1.0;
        tokens / self.streaming.as_secs_f64()
    }

    /// `count / duration` from the engine's statistics.
    fn stat_rate(&self, count: &str, nanos: &str) -> f64 {
        let count = self.done[count].as_f64().unwrap_or(0.0);
        count / (self.done[nanos].as_f64().unwrap_or(1.0) / 1e9)
    }
}

/// The route a generation goes through.
#[derive(Clone, Copy)]
enum Via<'a> {
    /// The capabilities fixture: HTTP, one component, the WIT call.
    Fixture,
    /// The inference API's Ollama `/api/generate` (raw prompt, so the same
    /// tokens), with this bearer token.
    Ollama(&'a str),
}

fn generate(port: u16, via: Via, prompt: &str, tokens: i32) -> Result<Run> {
    let options = json!({"temperature": 0, "num_predict": tokens});
    let (path, body, bearer) = match via {
        Via::Fixture => (
            "/ai/inference/generate",
            json!({"model": models::GEMMA_NAME, "prompt": prompt, "options": options}),
            None,
        ),
        Via::Ollama(token) => (
            "/api/generate",
            json!({"model": models::GEMMA_NAME, "prompt": prompt, "raw": true, "options": options}),
            Some(token),
        ),
    };
    let started = Instant::now();
    let mut first = None;
    let mut done = None;
    post_ndjson(port, path, bearer, &body, |line| {
        // The fixture: `{"text"}` lines, then `{"done": stats}`; Ollama:
        // `{"response", "done": false}` lines, then the statistics with
        // `"done": true`.
        let (text, stats) = match via {
            Via::Fixture => (line.get("text"), line.get("done")),
            Via::Ollama(_) if line["done"] == true => (None, Some(line)),
            Via::Ollama(_) => (line.get("response"), None),
        };
        if text.is_some() {
            first.get_or_insert_with(Instant::now);
        } else if let Some(stats) = stats {
            done = Some((stats.clone(), Instant::now()));
        } else {
            return Err(format!("generation failed: {line}"));
        }
        Ok(())
    })?;
    let (done, ended) = done.ok_or("no done line")?;
    let first = first.unwrap_or(ended);
    Ok(Run {
        done,
        first_text: first - started,
        streaming: ended - first,
    })
}

fn embed(port: u16, inputs: &[String]) -> Result {
    let body = json!({"model": models::MINILM_NAME, "inputs": inputs});
    post_ndjson(port, "/ai/inference/embed", None, &body, |line| {
        if line["embeddings"].as_array().map(Vec::len) == Some(inputs.len()) {
            Ok(())
        } else {
            Err(format!("unexpected embedding answer: {line}"))
        }
    })
}

/// Builds llama.cpp's `llama-bench` once, into
/// `~/.cache/lamina/llama-bench-<llama-cpp-sys-2 version>/`: the crate's
/// bundled llama.cpp (the very sources the host links) plus
/// `tools/llama-bench`, which the crate does not ship, taken from the
/// llama.cpp vendored in the `llama-cpp-python` sdist on PyPI.
fn ensure_llama_bench() -> Result<PathBuf> {
    let source = llama_cpp_sources()?;
    let version = source
        .parent()
        .and_then(|p| p.file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let home = models::cache_dir()
        .parent()
        .unwrap_or(Path::new("/tmp"))
        .join(format!("llama-bench-{version}"));
    let binary = home.join("build/bin/llama-bench");
    if binary.is_file() {
        return Ok(binary);
    }
    eprintln!(
        "bench: building llama-bench from {} (once)",
        source.display()
    );
    let tree = home.join("src");
    let _ = std::fs::remove_dir_all(&home);
    std::fs::create_dir_all(&home).map_err(|e| e.to_string())?;
    let mut copy = Command::new("cp");
    copy.arg("-r").arg(&source).arg(&tree);
    run(copy)?;
    let mut sdist = Command::new("python3");
    sdist
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--no-binary",
            ":all:",
            "--quiet",
        ])
        .arg("--dest")
        .arg(&home)
        .arg(format!("llama-cpp-python=={LLAMA_CPP_PYTHON}"));
    run(sdist)?;
    let mut extract = Command::new("python3");
    extract.arg("-c").arg(EXTRACT_LLAMA_BENCH);
    extract
        .arg(home.join(format!("llama_cpp_python-{LLAMA_CPP_PYTHON}.tar.gz")))
        .arg(tree.join("tools/llama-bench"))
        .arg(format!(
            "llama_cpp_python-{LLAMA_CPP_PYTHON}/vendor/llama.cpp/tools/llama-bench/"
        ));
    run(extract)?;
    std::fs::write(
        tree.join("tools/CMakeLists.txt"),
        "add_subdirectory(llama-bench)\n",
    )
    .map_err(|e| e.to_string())?;
    let build = home.join("build");
    let mut configure = Command::new("cmake");
    configure.arg("-S").arg(&tree).arg("-B").arg(&build).args([
        "-DCMAKE_BUILD_TYPE=Release",
        "-DGGML_NATIVE=ON",
        "-DGGML_OPENMP=OFF",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        "-DLLAMA_BUILD_EXAMPLES=OFF",
        "-DLLAMA_BUILD_SERVER=OFF",
        "-DLLAMA_BUILD_TOOLS=ON",
        "-DLLAMA_BUILD_APP=OFF",
        "-DBUILD_SHARED_LIBS=OFF",
    ]);
    // The C flags the host's llama.cpp gets (.cargo/config.toml `[env]`:
    // no AMX), so the baseline is built like what it is compared with.
    for (language, variable) in [
        ("C", "CFLAGS_x86_64_unknown_linux_gnu"),
        ("CXX", "CXXFLAGS_x86_64_unknown_linux_gnu"),
    ] {
        if let Ok(flags) = std::env::var(variable) {
            configure.arg(format!("-DCMAKE_{language}_FLAGS={flags}"));
        }
    }
    run(configure)?;
    let mut compile = Command::new("cmake");
    compile.arg("--build").arg(&build).args([
        "--target",
        "llama-bench",
        "-j",
        &threads().to_string(),
    ]);
    run(compile)?;
    Ok(binary)
}

/// `llama.cpp/` inside the `llama-cpp-sys-2` package the host builds with.
fn llama_cpp_sources() -> Result<PathBuf> {
    let output = crate::cargo()
        .args(["metadata", "--format-version", "1"])
        .output()
        .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
    let metadata: Value = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    metadata["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "llama-cpp-sys-2")
        .and_then(|p| p["manifest_path"].as_str())
        .map(|m| Path::new(m).parent().unwrap().join("llama.cpp"))
        .ok_or_else(|| "llama-cpp-sys-2 is not in the dependency graph".to_owned())
}

fn llama_bench_figures(binary: &Path, gguf: &Path) -> Result<Reference> {
    let output = Command::new(binary)
        .arg("-m")
        .arg(gguf)
        .args([
            "-t",
            &threads().to_string(),
            "-p",
            "512",
            "-n",
            "128",
            "-r",
            "3",
            "-o",
            "json",
        ])
        .output()
        .map_err(|e| format!("cannot run llama-bench: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "llama-bench failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let rows: Vec<Value> = serde_json::from_slice(&output.stdout).map_err(|e| e.to_string())?;
    let rate = |prompt: u64, generated: u64| {
        rows.iter()
            .find(|r| r["n_prompt"] == prompt && r["n_gen"] == generated)
            .and_then(|r| r["avg_ts"].as_f64())
            .ok_or_else(|| format!("llama-bench printed no pp{prompt}/tg{generated} row"))
    };
    Ok(Reference {
        pp: rate(512, 0)?,
        tg: rate(0, 128)?,
    })
}
