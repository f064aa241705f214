//! Project automation, so a fresh machine needs exactly two commands:
//!
//! - `cargo xtask up`: install what is missing, build, and serve on the
//!   embedded defaults;
//! - `cargo xtask test`: install what is missing, build, run every test.
//!
//! Also `cargo xtask build` (the web app, components + host only), `cargo xtask lint`,
//! `cargo xtask models` (the default model, see `models.rs`) and
//! `cargo xtask bench` (see `bench.rs`).

mod bench;
mod bench_capabilities;
mod bench_conversation;
mod bench_explore;
mod bench_gateway;
mod bench_inference;
mod bench_rag;
mod bench_vectors;
mod clients;
mod http_client;
mod models;
mod services;
mod web;

use std::path::PathBuf;
use std::process::{Command, ExitCode};

const WASM_TARGET: &str = "wasm32-wasip2";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (command, rest) = match args.split_first() {
        Some((command, rest)) => (command.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match command {
        "up" => build()
            .and_then(|()| models::install(None))
            .and_then(|()| up(rest)),
        "build" => build(),
        "test" => services::ensure()
            .and_then(|()| web::ensure_browser())
            .and_then(|()| build())
            .and_then(|()| models::install(Some(&test_models_dir())))
            .and_then(|()| test(rest)),
        "lint" => lint(),
        "models" => build_host().and_then(|()| models::install(None)),
        "bench" => services::ensure()
            .and_then(|()| build())
            .and_then(|()| bench::bench(rest)),
        _ => {
            eprintln!(
                "usage: cargo xtask <command>\n\n\
                 commands:\n  \
                 up [ARGS]    build everything, then `lamina up ARGS` (embedded defaults)\n  \
                 build        build the wasm components and the host (release)\n  \
                 test [ARGS]  start Postgres/Redis if needed, build, run every test (ARGS go to nextest)\n  \
                 lint         cargo fmt --check and clippy -D warnings on everything\n  \
                 models       fetch the default models (gemma3:270m, all-minilm:l6-v2, smollm2:135m) and install them\n  \
                 bench [http|capabilities|gateway|inference|conversation|explore|vectors]  build, then benchmark (docs/benchmarks.md)"
            );
            return if command == "help" || command == "--help" {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("xtask: {error}");
            ExitCode::FAILURE
        }
    }
}

type Result<T = ()> = std::result::Result<T, String>;

/// The workspace root. `cargo run` sets `CARGO_MANIFEST_DIR` for the
/// process; the compile-time value is only a fallback, because a binary
/// reused from a shared target dir may have been built in another clone.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().unwrap().to_owned()
}

fn cargo() -> Command {
    let mut command = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    command.current_dir(root());
    command
}

fn run(mut command: Command) -> Result {
    eprintln!("xtask: running {command:?}");
    let status = command
        .status()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{command:?} failed ({status})"))
    }
}

/// Installs the wasm target when rustup lacks it.
fn ensure_wasm_target() -> Result {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map_err(|e| format!("rustup is required to install {WASM_TARGET}: {e}"))?;
    if String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|t| t.trim() == WASM_TARGET)
    {
        return Ok(());
    }
    let mut add = Command::new("rustup");
    add.args(["target", "add", WASM_TARGET]);
    run(add)
}

/// Installs what the llama.cpp build needs (`cmake`, and libclang for
/// bindgen) with apt when missing.
fn ensure_native_build_tools() -> Result {
    let cmake = Command::new("cmake").arg("--version").output().is_ok();
    let libclang = std::env::var_os("LIBCLANG_PATH").is_some()
        || Command::new("ldconfig")
            .arg("-p")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libclang"));
    if cmake && libclang {
        return Ok(());
    }
    eprintln!("xtask: installing cmake and libclang-dev (needed to build llama.cpp)");
    apt_install(&["cmake", "libclang-dev"])
}

/// Installs Debian packages, refreshing the package lists first if the
/// install fails (a fresh machine's may be empty or stale).
fn apt_install(packages: &[&str]) -> Result {
    let install = || {
        let mut apt = Command::new("apt-get");
        apt.args(["install", "-y"]).args(packages);
        run(apt)
    };
    install().or_else(|_| {
        let mut update = Command::new("apt-get");
        update.arg("update");
        run(update).and_then(|()| install())
    })
}

/// Every wasm crate: the services under `components/` and the test fixtures.
fn wasm_packages() -> Result<Vec<String>> {
    let mut packages = Vec::new();
    for dir in ["components", "tests/fixtures"] {
        let entries = std::fs::read_dir(root().join(dir)).map_err(|e| format!("{dir}: {e}"))?;
        for entry in entries.flatten() {
            let manifest = entry.path().join("Cargo.toml");
            let Ok(text) = std::fs::read_to_string(&manifest) else {
                continue;
            };
            if !text.contains("crate-type = [\"cdylib\"]") {
                continue; // libraries such as the SDK are built as dependencies
            }
            let name = text
                .lines()
                .find_map(|l| l.strip_prefix("name = "))
                .map(|n| n.trim_matches('"').to_owned())
                .ok_or_else(|| format!("{} has no package name", manifest.display()))?;
            packages.push(name);
        }
    }
    packages.sort();
    Ok(packages)
}

/// Builds all wasm crates in one cargo invocation, then the host.
fn build() -> Result {
    ensure_wasm_target()?;
    web::build()?;
    let mut wasm = cargo();
    wasm.args(["build", "--release", "--target", WASM_TARGET]);
    for package in wasm_packages()? {
        wasm.args(["-p", &package]);
    }
    run(wasm)?;
    build_host()
}

/// Builds the `lamina` binary (release).
fn build_host() -> Result {
    ensure_native_build_tools()?;
    let mut host = cargo();
    host.args(["build", "--release", "-p", "lamina"]);
    run(host)
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join("target"))
}

fn lamina() -> Command {
    let mut command = Command::new(target_dir().join("release/lamina"));
    command.current_dir(root());
    command
}

/// The model store the tests share (default models installed by `test`).
fn test_models_dir() -> PathBuf {
    target_dir().join("test-models")
}

fn up(args: &[String]) -> Result {
    let mut command = lamina();
    command.arg("up").args(args);
    run(command)
}

fn test(args: &[String]) -> Result {
    let mut nextest = cargo();
    // The native crates, plus the guest SDK's pure helpers (its WIT imports
    // compile natively but are only ever called inside a component).
    nextest
        .args([
            "nextest",
            "run",
            "--release",
            "--no-fail-fast",
            "-p",
            "lamina",
            "-p",
            "lamina-tests",
            "-p",
            "lamina-sdk",
            // Components' own unit tests (validation rules, title
            // cleaning, search queries, rank fusion) run natively.
            "-p",
            "auth",
            "-p",
            "conversation",
            "-p",
            "explore",
            "-p",
            "web",
        ])
        .args(args)
        // Where the inference tests find the default models (installed
        // above) and the files they install from.
        .env("LAMINA_TEST_MODELS_DIR", test_models_dir())
        .env("LAMINA_TEST_GGUF", models::ensure_default()?)
        .env("LAMINA_TEST_EMBEDDING_GGUF", models::ensure_minilm()?)
        // The stock `ollama` and `openai` Python clients.
        .env("LAMINA_TEST_PYTHON", clients::python()?)
        // The browser the web app's tests drive.
        .env("LAMINA_TEST_CHROMIUM", web::CHROMIUM);
    run(nextest)
}

fn lint() -> Result {
    ensure_wasm_target()?;
    web::build()?; // the web component embeds the app's build
    let mut fmt = cargo();
    fmt.args(["fmt", "--all", "--check"]);
    run(fmt)?;
    let mut native = cargo();
    native.args(["clippy", "--release", "--all-targets"]);
    native.args(["-p", "lamina", "-p", "lamina-tests", "-p", "xtask"]);
    native.args(["--", "-D", "warnings"]);
    run(native)?;
    let mut wasm = cargo();
    wasm.args([
        "clippy",
        "--release",
        "--target",
        WASM_TARGET,
        "-p",
        "lamina-sdk",
    ]);
    for package in wasm_packages()? {
        wasm.args(["-p", &package]);
    }
    wasm.args(["--", "-D", "warnings"]);
    run(wasm)
}
