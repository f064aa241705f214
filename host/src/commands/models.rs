//! `lamina models`: install, list, inspect, remove and try models in the
//! store named by runtime-config (`[inference] models_dir`).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;

use crate::capabilities::inference::egress::Egress;
use crate::capabilities::inference::pulls::PullStatus;
use crate::capabilities::inference::sampling::RawOptions;
use crate::capabilities::inference::store::ModelEntry;
use crate::capabilities::inference::{Chunk, Inference, Prompt};
use crate::runtime_config::RuntimeConfig;

/// Options of `lamina models`.
#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Where the models directory is configured.
    #[arg(long, global = true, default_value = "runtime-config.toml")]
    pub runtime_config: PathBuf,
    /// Use this models directory instead of runtime-config's.
    #[arg(long, global = true, env = "LAMINA_MODELS_DIR")]
    pub models_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ModelsCommand,
}

/// `lamina models <command>`.
#[derive(Debug, clap::Subcommand)]
pub enum ModelsCommand {
    /// List the installed models.
    List,
    /// Show one model's metadata (JSON).
    Show {
        /// `name:tag`.
        name: String,
    },
    /// Install a GGUF file from a local path or an http(s) URL (an
    /// interrupted pull continues where it stopped when run again, or when
    /// a host starts on this store).
    Pull {
        /// `name:tag` to install it as.
        name: String,
        /// A path, `file://` or `http(s)://` URL; without it, the source
        /// runtime-config registers for `name` (`[inference.sources]`).
        source: Option<String>,
        /// Expected SHA-256 (hex); the install fails if the file differs.
        #[arg(long)]
        sha256: Option<String>,
    },
    /// Remove a model.
    Rm {
        /// `name:tag`.
        name: String,
    },
    /// Generate from a prompt, printing tokens as they come (a quick check).
    Run {
        /// `name:tag`.
        name: String,
        /// The prompt; with `--chat` it is one user message.
        prompt: String,
        /// Apply the model's chat template.
        #[arg(long)]
        chat: bool,
        /// Most tokens to generate.
        #[arg(long, default_value_t = 128)]
        num_predict: i32,
        /// 0 = greedy.
        #[arg(long)]
        temperature: Option<f32>,
        /// Print the statistics as JSON on stderr at the end.
        #[arg(long)]
        stats: bool,
    },
}

/// Runs one `lamina models` command.
pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    let config = RuntimeConfig::load(&args.runtime_config)?;
    let models_dir = args
        .models_dir
        .or_else(|| config.inference.models_dir.clone())
        .expect("resolved by load");
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let inference = Inference::open(&config.inference, models_dir, Egress::unrestricted());
            let store = inference.store();
            match args.command {
                ModelsCommand::List => {
                    println!(
                        "{:<28} {:<14} {:>10}  {:<8} {:>12}",
                        "NAME", "ID", "SIZE", "QUANT", "PARAMS"
                    );
                    for m in store.list()? {
                        println!(
                            "{:<28} {:<14} {:>10}  {:<8} {:>12}",
                            m.name,
                            &m.sha256[..12],
                            human_size(m.size),
                            m.metadata.quantization,
                            m.metadata.parameter_count
                        );
                    }
                }
                ModelsCommand::Show { name } => {
                    let entry = store.get(&name)?;
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&describe(&entry, store.path(&entry)))?
                    );
                }
                ModelsCommand::Pull {
                    name,
                    source,
                    sha256,
                } => {
                    let (source, sha256) = match source {
                        // A path is made absolute: a host may resume the pull.
                        Some(path) if !path.contains("://") => {
                            (std::path::absolute(&path)?.display().to_string(), sha256)
                        }
                        Some(url) => (url, sha256),
                        None => config.inference.pull_source(&name, None, sha256)?,
                    };
                    if let Some(expected) = &sha256
                        && let Ok(existing) = store.get(&name)
                        && expected
                            .trim_start_matches("sha256:")
                            .eq_ignore_ascii_case(&existing.sha256)
                    {
                        println!("{} is up to date ({})", existing.name, existing.digest());
                        return Ok(());
                    }
                    let pulls = inference.pulls();
                    let id = pulls.start(&name, &source, sha256.as_deref())?;
                    let mut last = None;
                    let entry = pulls
                        .wait(&id, |p: &PullStatus| {
                            if last.is_none_or(|last| p.completed.saturating_sub(last) >= 16 << 20)
                                || Some(p.completed) == p.total
                            {
                                last = Some(p.completed);
                                report(p);
                            }
                        })
                        .await?;
                    eprintln!();
                    println!("installed {} ({})", entry.name, entry.digest());
                }
                ModelsCommand::Rm { name } => {
                    let entry = inference.remove(&name)?;
                    println!("removed {}", entry.name);
                }
                ModelsCommand::Run {
                    name,
                    prompt,
                    chat,
                    num_predict,
                    temperature,
                    stats,
                } => {
                    let prompt = if chat {
                        Prompt::Chat(vec![("user".to_owned(), prompt)])
                    } else {
                        Prompt::Raw(prompt)
                    };
                    let options = RawOptions {
                        num_predict: Some(num_predict),
                        temperature,
                        keep_alive: Some(0),
                        ..RawOptions::default()
                    };
                    let mut generation = inference.generate(&name, prompt, options).await?;
                    let mut stdout = std::io::stdout();
                    while let Some(chunk) = generation.next().await? {
                        match chunk {
                            Chunk::Text(text) => {
                                stdout.write_all(text.as_bytes())?;
                                stdout.flush()?;
                            }
                            Chunk::Done(s) if stats => {
                                println!();
                                eprintln!(
                                    "{}",
                                    serde_json::json!({
                                        "promptTokens": s.prompt_tokens,
                                        "completionTokens": s.completion_tokens,
                                        "loadMs": s.load.as_secs_f64() * 1e3,
                                        "promptMs": s.prompt.as_secs_f64() * 1e3,
                                        "evalMs": s.eval.as_secs_f64() * 1e3,
                                        "totalMs": s.total.as_secs_f64() * 1e3,
                                        "doneReason": format!("{:?}", s.reason).to_lowercase(),
                                    })
                                );
                            }
                            Chunk::Done(_) => println!(),
                        }
                    }
                }
            }
            Ok(())
        })
}

fn describe(entry: &ModelEntry, path: PathBuf) -> serde_json::Value {
    let mut value = serde_json::to_value(entry).expect("entries serialize");
    value["digest"] = entry.digest().into();
    value["path"] = path.display().to_string().into();
    value
}

fn report(p: &PullStatus) {
    match p.total {
        Some(total) if total > 0 => eprint!(
            "\r{} / {} ({:.0}%)",
            human_size(p.completed),
            human_size(total),
            p.completed as f64 * 100.0 / total as f64
        ),
        _ => eprint!("\r{}", human_size(p.completed)),
    }
}

fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
