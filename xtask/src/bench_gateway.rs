//! Gateway overhead: the same trivial component route bare, then behind
//! `auth = "required"` (HS256 JWT verified, revocation list read) plus a
//! rate limit, with the in-process backends and with both the limiter and
//! the revocation list on Redis, in one run. Reported as ratios to the bare
//! route (goal: ≥ 0.9× in-process, ≥ 0.7× with Redis).

use std::path::Path;

use crate::bench::{
    JWT_SECRET, Measurement, free_port, jwt, spawn_lamina, wait_until_listening, wrk,
};
use crate::{Result, target_dir};

const WRK_ARGS: [&str; 6] = ["-t2", "-c50", "-d5s", "--latency", "--timeout", "5s"];
/// Each set-up is measured this many times, alternating.
const ROUNDS: usize = 5;

pub fn bench() -> Result {
    let work = target_dir().join("bench/gateway");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let fixture = target_dir().join("wasm32-wasip2/release/runtime_fixture.wasm");
    let manifest = work.join("spin.toml");
    std::fs::write(
        &manifest,
        format!(
            "spin_manifest_version = 2\n[application]\nname = \"bench\"\n\
             [[trigger.http]]\nroute = \"/bare/...\"\ncomponent = \"f\"\n\
             [[trigger.http]]\nroute = \"/guarded/...\"\ncomponent = \"f\"\nauth = \"required\"\nrate_limit = \"bench\"\n\
             [component.f]\nsource = {:?}\n",
            fixture.display().to_string()
        ),
    )
    .map_err(|e| e.to_string())?;
    // A limit no run reaches, so every request does the full check.
    let classes = "[rate_limit.classes.bench]\nrequests = 100000000\nper = \"1m\"\n";
    let prefix = format!("lamina-bench-gw-{}:", std::process::id());
    let memory = write_config(&work, "memory.toml", classes)?;
    let redis = write_config(
        &work,
        "redis.toml",
        &format!(
            "[rate_limit]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{prefix}\"\n{classes}\
             [auth.revocations]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:6379/0\"\nkey_prefix = \"{prefix}auth:\"\n"
        ),
    )?;
    let token = jwt()?;
    let bearer = format!("Authorization: Bearer {token}");
    // Both hosts run for the whole benchmark, so process start-up and
    // warm-up are not part of any run; wrk alternates between them.
    let mut hosts = Vec::new();
    for config in [&memory, &redis] {
        let port = free_port()?;
        let child = spawn_lamina(
            &manifest,
            config,
            port,
            &[("LAMINA_JWT_SECRET", JWT_SECRET)],
        )?;
        hosts.push(Host { port, child });
        wait_until_listening(port)?;
    }
    let runs = [
        ("bare route (no auth, no limit)", 0, "/bare/"),
        ("auth + rate limit, in-process", 0, "/guarded/"),
        (
            "auth + rate limit, Redis (limiter + revocations)",
            1,
            "/guarded/",
        ),
    ];
    // Every run sends the token, so requests differ only in what the host does.
    let mut args: Vec<&str> = WRK_ARGS.to_vec();
    args.extend(["-H", bearer.as_str()]);
    let mut results: Vec<Vec<Measurement>> = runs.iter().map(|_| Vec::new()).collect();
    for round in 1..=ROUNDS {
        for ((name, host, path), results) in runs.iter().zip(&mut results) {
            eprintln!("bench: gateway: round {round}/{ROUNDS}: {name}");
            let url = format!("http://127.0.0.1:{}{path}", hosts[*host].port);
            results.push(wrk(&url, &args, None)?);
        }
    }
    let summary: Vec<Measurement> = results.iter().map(|r| Measurement::median(r)).collect();
    let baseline = summary[0].requests_per_sec;
    println!("| gateway | req/s | p50 ms | p99 ms | vs bare |");
    println!("| --- | ---: | ---: | ---: | ---: |");
    for ((name, ..), m) in runs.iter().zip(&summary) {
        println!(
            "| {name} | {:.0} | {:.2} | {:.2} | {:.2}x |",
            m.requests_per_sec,
            m.p50_ms,
            m.p99_ms,
            m.requests_per_sec / baseline
        );
    }
    println!(
        "\nwrk {} on the runtime fixture, one host at a time, median of {ROUNDS} alternated runs.",
        WRK_ARGS.join(" ")
    );
    Ok(())
}

/// A benchmarked host, killed when dropped.
struct Host {
    port: u16,
    child: std::process::Child,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn write_config(dir: &Path, name: &str, text: &str) -> Result<std::path::PathBuf> {
    let path = dir.join(name);
    std::fs::write(&path, format!("[data]\ndir = \"data\"\n{text}")).map_err(|e| e.to_string())?;
    Ok(path)
}
