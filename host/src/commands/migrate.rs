//! `lamina migrate`: apply the application's SQL migrations without serving.

use std::path::PathBuf;

use anyhow::Context;

use crate::capabilities::open_databases;
use crate::manifest::Manifest;
use crate::runtime_config::RuntimeConfig;

/// Options of `lamina migrate`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// The application manifest (migrations are in `migrations/<database>/`
    /// next to it).
    #[arg(long, short = 'f', default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// Which databases to use.
    #[arg(long, default_value = "runtime-config.toml")]
    pub runtime_config: PathBuf,
}

/// Applies pending migrations to every application database
/// (`migrations/<database>/<dialect>/`).
pub fn run(args: MigrateArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    let config = RuntimeConfig::load(&args.runtime_config)?;
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(async {
            let databases = open_databases(&config, &manifest).await?;
            let dir = manifest.dir.join("migrations");
            let applied = databases.migrate(&dir).await?;
            println!("{applied} migration(s) applied from {}", dir.display());
            Ok(())
        })
}
