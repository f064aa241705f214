//! `lamina`: a serverless WebAssembly component host for multi-user LLM
//! services. See `docs/architecture.md` for the path of a request.

mod admin;
mod app;
mod body;
mod breaker;
mod capabilities;
mod commands;
mod engine;
mod gateway;
mod manifest;
mod problem;
mod router;
mod runtime_config;
mod server;
mod telemetry;
mod trigger;
mod units;

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

/// Run WebAssembly HTTP components from a Spin-style manifest.
#[derive(Debug, Parser)]
#[command(name = "lamina", version, about)]
struct Cli {
    /// Log line format on stderr: `text` for people, `json` (one object per
    /// line, span fields included) for log pipelines.
    #[arg(long, global = true, env = "LAMINA_LOG_FORMAT", default_value = "text")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// `--log-format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the application in spin.toml.
    Up(commands::up::UpArgs),
    /// Build the components (their `[component.<id>.build]` commands).
    Build(BuildArgs),
    /// Hot-deploy a new version of one component to a running host.
    Deploy(commands::deploy::DeployArgs),
    /// Apply the application's SQL migrations to its databases.
    Migrate(commands::migrate::MigrateArgs),
    /// Install, list, show, remove or try models (the inference store).
    Models(commands::models::ModelsArgs),
}

#[derive(Debug, clap::Args)]
struct BuildArgs {
    /// The application manifest.
    #[arg(long, short = 'f', default_value = "spin.toml")]
    manifest: std::path::PathBuf,
    /// Only these components (default: all).
    components: Vec<String>,
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let filter = EnvFilter::try_from_env("LAMINA_LOG").unwrap_or_else(|_| {
        EnvFilter::new("info,wasmtime=warn,cranelift=warn,llama-cpp-2=warn,llama_cpp_2=error")
    });
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        LogFormat::Json => logs
            .json()
            .with_current_span(false)
            .with_span_list(true)
            .init(),
    }
    let result = match cli.command {
        Command::Up(args) => commands::up::run(args),
        Command::Build(args) => manifest::Manifest::load(&args.manifest)
            .map_err(Into::into)
            .and_then(|m| commands::build::run(&m, &args.components)),
        Command::Deploy(args) => commands::deploy::run(args),
        Command::Migrate(args) => commands::migrate::run(args),
        Command::Models(args) => commands::models::run(args),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
