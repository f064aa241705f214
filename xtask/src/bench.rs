//! `cargo xtask bench`: requests/s and latency of a trivial component route
//! through `lamina`, against `wasmtime serve` (same wasmtime version) on the
//! same component, in the same run, alternating, with `wrk` on loopback.
//!
//! Results are ratios against the baseline measured minutes apart on the
//! same machine, so they survive a noisy or slower machine; the absolute
//! figures are only context.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, root, run, target_dir};

/// wasmtime-cli version matching the host's wasmtime.
const WASMTIME_VERSION: &str = "48.0.8";
/// Load: 2 wrk threads, 50 connections, 10 s per run.
const WRK_ARGS: [&str; 6] = ["-t2", "-c50", "-d10s", "--latency", "--timeout", "5s"];
/// Runs per server, alternated.
const ROUNDS: usize = 2;

/// One wrk run's figures.
pub struct Measurement {
    pub requests_per_sec: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

impl Measurement {
    /// Each figure's median over several runs of one set-up (runs on a
    /// shared 2-core machine vary by ±15%, so one run proves little).
    pub fn median(runs: &[Measurement]) -> Measurement {
        let median = |figure: fn(&Measurement) -> f64| {
            let mut values: Vec<f64> = runs.iter().map(figure).collect();
            values.sort_by(f64::total_cmp);
            values[values.len() / 2]
        };
        Measurement {
            requests_per_sec: median(|m| m.requests_per_sec),
            p50_ms: median(|m| m.p50_ms),
            p99_ms: median(|m| m.p99_ms),
        }
    }
}

/// One server set-up to measure.
struct Server {
    name: &'static str,
    start: Box<dyn Fn(u16) -> Result<Child>>,
}

/// `which`: `http`, `capabilities`, `gateway`, `inference`, `conversation`, `explore`, `vectors`,
/// or all when empty.
pub fn bench(which: &[String]) -> Result {
    let only = which.first().map(String::as_str);
    if !matches!(
        only,
        None | Some(
            "http"
                | "capabilities"
                | "gateway"
                | "inference"
                | "conversation"
                | "explore"
                | "vectors"
                | "rag"
        )
    ) {
        return Err(
            "usage: cargo xtask bench [http|capabilities|gateway|inference|conversation|explore|vectors|rag]"
                .into(),
        );
    }
    if matches!(only, None | Some("vectors")) {
        super::bench_vectors::bench()?;
    }
    if only == Some("vectors") {
        return Ok(());
    }
    if matches!(only, None | Some("rag")) {
        super::bench_rag::bench()?;
    }
    if only == Some("rag") {
        return Ok(());
    }
    if matches!(only, None | Some("inference")) {
        super::bench_inference::bench()?;
    }
    if matches!(only, None | Some("conversation")) {
        super::bench_conversation::bench()?;
    }
    if matches!(only, Some("inference" | "conversation")) {
        return Ok(());
    }
    ensure_wrk()?;
    if matches!(only, None | Some("explore")) {
        super::bench_explore::bench()?;
    }
    if matches!(only, None | Some("gateway")) {
        super::bench_gateway::bench()?;
    }
    if matches!(only, None | Some("capabilities")) {
        super::bench_capabilities::bench()?;
    }
    if only.is_some_and(|o| o != "http") {
        return Ok(());
    }
    ensure_wasmtime()?;
    let wasm = target_dir().join("wasm32-wasip2/release");
    let fixture = wasm.join("runtime_fixture.wasm");
    let spin_hello = wasm.join("spin_hello.wasm");
    let work = target_dir().join("bench");
    std::fs::create_dir_all(&work).map_err(|e| format!("{}: {e}", work.display()))?;

    let servers = [
        Server {
            name: "wasmtime serve, WASI 0.2, fresh instance",
            start: wasmtime_serve(&fixture),
        },
        Server {
            name: "lamina, WASI 0.2, fresh instance",
            start: lamina(&work, "p2", &fixture, "")?,
        },
        Server {
            name: "wasmtime serve, WASI 0.3 (spin-sdk), default reuse",
            start: wasmtime_serve(&spin_hello),
        },
        Server {
            name: "lamina, WASI 0.3 (spin-sdk), instance reuse",
            start: lamina(
                &work,
                "p3",
                &spin_hello,
                "instance_reuse = { max_requests = 128, max_concurrent = 16 }",
            )?,
        },
    ];
    let mut results: Vec<Vec<Measurement>> = servers.iter().map(|_| Vec::new()).collect();
    for round in 1..=ROUNDS {
        for (server, results) in servers.iter().zip(&mut results) {
            eprintln!("bench: round {round}/{ROUNDS}: {}", server.name);
            results.push(measure(server)?);
        }
    }

    let summary: Vec<Measurement> = results
        .iter()
        .map(|runs| Measurement::median(runs))
        .collect();
    let baseline = summary[0].requests_per_sec;
    println!("| server | req/s | p50 ms | p99 ms | vs wasmtime serve (WASI 0.2) |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for (server, m) in servers.iter().zip(&summary) {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.2}x |",
            server.name,
            m.requests_per_sec,
            m.p50_ms,
            m.p99_ms,
            m.requests_per_sec / baseline
        );
    }
    println!(
        "\nwrk {} against a trivial route, median of {ROUNDS} alternated runs, {} cores.",
        WRK_ARGS.join(" "),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}

/// Installs wrk (Debian) when missing.
fn ensure_wrk() -> Result {
    if Command::new("wrk").arg("--version").output().is_err() {
        crate::apt_install(&["wrk"])?;
    }
    Ok(())
}

/// Installs wasmtime-cli (crates.io) when missing.
fn ensure_wasmtime() -> Result {
    let version = Command::new("wasmtime").arg("--version").output();
    let installed =
        version.is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(WASMTIME_VERSION));
    if !installed {
        eprintln!(
            "bench: installing wasmtime-cli {WASMTIME_VERSION} (about 11 minutes on 2 cores)"
        );
        let mut install = Command::new("cargo");
        install.args([
            "install",
            &format!("wasmtime-cli@{WASMTIME_VERSION}"),
            "--locked",
            "--no-default-features",
            "--features",
            "run,serve,wasi-http,component-model,component-model-async,cranelift,pooling-allocator,cache",
        ]);
        run(install)?;
    }
    Ok(())
}

fn wasmtime_serve(component: &Path) -> Box<dyn Fn(u16) -> Result<Child>> {
    let component = component.to_owned();
    Box::new(move |port| {
        Command::new("wasmtime")
            .args(["serve", "-Scli", "--addr", &format!("127.0.0.1:{port}")])
            .arg(&component)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start wasmtime serve: {e}"))
    })
}

fn lamina(
    work: &Path,
    name: &str,
    component: &Path,
    extra: &str,
) -> Result<Box<dyn Fn(u16) -> Result<Child>>> {
    let manifest = work.join(format!("{name}.toml"));
    let config = work.join("runtime-config.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"bench\"\n\
             [[trigger.http]]\nroute = \"/...\"\ncomponent = \"bench\"\n\
             [component.bench]\nsource = {:?}\n{extra}\n",
            component.display().to_string()
        ),
    )
    .and_then(|()| std::fs::write(&config, "[data]\ndir = \"data\"\n"))
    .map_err(|e| format!("cannot write bench config: {e}"))?;
    Ok(Box::new(move |port| {
        spawn_lamina(&manifest, &config, port, &[])
    }))
}

/// Starts `lamina up` on `port` (admin API on a free port), quiet, with
/// `env` added to its environment.
pub fn spawn_lamina(
    manifest: &Path,
    config: &Path,
    port: u16,
    env: &[(&str, &str)],
) -> Result<Child> {
    Command::new(target_dir().join("release/lamina"))
        .args([
            "up",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--admin-listen",
            "127.0.0.1:0",
        ])
        .arg("--manifest")
        .arg(manifest)
        .arg("--runtime-config")
        .arg(config)
        .env("LAMINA_LOG", "warn")
        .envs(env.iter().copied())
        .current_dir(root())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start lamina: {e}"))
}

/// The services' databases on SQLite (runtime-config TOML).
pub const SQLITE_DATABASES: &str = "[databases.auth]\ntype = \"sqlite\"\n[databases.outbox]\ntype = \"sqlite\"\n\
     [databases.conversation]\ntype = \"sqlite\"\n[databases.explore]\ntype = \"sqlite\"\n";

/// The repo's spin.toml (components from the target dir, its migrations)
/// on SQLite, with rate limits no run reaches, the models of `store`, and
/// its manifest passed through `edit` (a variant to compare against).
pub fn start_app(
    work: &Path,
    store: &Path,
    port: u16,
    edit: impl FnOnce(String) -> String,
) -> Result<Child> {
    start_app_on(work, store, port, edit, SQLITE_DATABASES)
}

/// [`start_app`] with `databases` (runtime-config TOML) instead of SQLite.
pub fn start_app_on(
    work: &Path,
    store: &Path,
    port: u16,
    edit: impl FnOnce(String) -> String,
    databases: &str,
) -> Result<Child> {
    let wasm = target_dir().join("wasm32-wasip2/release");
    let manifest = std::fs::read_to_string(root().join("spin.toml"))
        .map_err(|e| e.to_string())?
        .replace(
            "\"target/wasm32-wasip2/release/",
            &format!("\"{}/", wasm.display()),
        );
    std::fs::write(work.join("spin.toml"), edit(manifest)).map_err(|e| e.to_string())?;
    std::os::unix::fs::symlink(root().join("migrations"), work.join("migrations"))
        .map_err(|e| e.to_string())?;
    let classes: String = ["auth", "login", "api", "inference"]
        .iter()
        .map(|c| format!("[rate_limit.classes.{c}]\nrequests = 1000000\nper = \"1m\"\n"))
        .collect();
    std::fs::write(
        work.join("runtime-config.toml"),
        format!(
            "[data]\ndir = \"data\"\n{databases}[inference]\nmodels_dir = {:?}\n{classes}",
            store.display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    spawn_lamina(
        &work.join("spin.toml"),
        &work.join("runtime-config.toml"),
        port,
        &[("LAMINA_JWT_SECRET", JWT_SECRET)],
    )
}

fn measure(server: &Server) -> Result<Measurement> {
    let port = free_port()?;
    let mut child = (server.start)(port)?;
    let url = format!("http://127.0.0.1:{port}/");
    let outcome = wait_until_listening(port).and_then(|()| wrk(&url, &WRK_ARGS, None));
    let _ = child.kill();
    let _ = child.wait();
    outcome
}

/// The median of some figures (the middle one of an odd number).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// Drops a benchmark's PostgreSQL schema and everything in it, quietly.
pub fn drop_schema(schema: &str) {
    let _ = Command::new("psql")
        .args(["postgres://postgres@127.0.0.1:5432/test", "-q", "-c"])
        .arg(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// The `p` quantile (0–1) of some figures, nearest rank.
pub fn percentile(mut values: Vec<f64>, p: f64) -> f64 {
    values.sort_by(f64::total_cmp);
    values[((values.len() - 1) as f64 * p).round() as usize]
}

/// A free loopback port.
pub fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

/// Waits (up to 60 s) until something accepts connections on `port`.
pub fn wait_until_listening(port: u16) -> Result {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Err(format!("nothing listening on {addr} after 60 s"))
}

/// Runs wrk against `url` (with a Lua `script` for POSTs).
pub fn wrk(url: &str, args: &[&str], script: Option<&Path>) -> Result<Measurement> {
    let mut command = Command::new("wrk");
    command.args(args);
    if let Some(script) = script {
        command.arg("-s").arg(script);
    }
    let output = command
        .arg(url)
        .output()
        .map_err(|e| format!("cannot run wrk: {e}"))?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        return Err(format!("the benchmark saw failed requests:\n{text}"));
    }
    let field = |prefix: &str| {
        text.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(prefix))
            .map(|v| v.trim().to_owned())
            .ok_or_else(|| format!("no {prefix:?} in wrk output:\n{text}"))
    };
    Ok(Measurement {
        requests_per_sec: field("Requests/sec:")?
            .parse()
            .map_err(|e| format!("requests/sec: {e}"))?,
        p50_ms: millis(&field("50%")?)?,
        p99_ms: millis(&field("99%")?)?,
    })
}

/// Parses wrk's latency figures (`812.00us`, `4.10ms`, `1.02s`) as ms.
fn millis(value: &str) -> Result<f64> {
    let split = value
        .find(|c: char| c.is_ascii_alphabetic())
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number
        .parse()
        .map_err(|e| format!("latency {value:?}: {e}"))?;
    Ok(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        other => return Err(format!("latency unit {other:?} in {value:?}")),
    })
}

/// The HS256 secret benchmarked hosts verify tokens with
/// (`LAMINA_JWT_SECRET`).
pub const JWT_SECRET: &str = "bench-secret-bench-secret-bench-secret-0123";

/// A user's bearer token for [`JWT_SECRET`], valid for an hour.
pub fn jwt() -> Result<String> {
    jwt_as("bench-user", &["User"])
}

/// A bearer token for `sub` with `roles`, valid for an hour.
pub fn jwt_as(sub: &str, roles: &[&str]) -> Result<String> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_err(|e| e.to_string())?
        .as_secs();
    let claims = serde_json::json!({
        "sub": sub, "roles": roles, "iss": "lamina", "aud": "lamina",
        "iat": now, "exp": now + 3600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .map_err(|e| e.to_string())
}
