//! `lamina deploy <id> <file.wasm>`: send a new version of one component to
//! a running host's admin API, which compiles it and swaps it in.

use std::path::PathBuf;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::admin::DEPLOY_TOKEN_ENV;

/// Options of `lamina deploy`.
#[derive(Debug, clap::Args)]
pub struct DeployArgs {
    /// Component id from spin.toml.
    pub component: String,
    /// The new `.wasm`.
    pub file: PathBuf,
    /// The running host's admin API.
    #[arg(long, default_value = "http://127.0.0.1:3001")]
    pub admin_url: String,
    /// Deploy token (the host's LAMINA_DEPLOY_TOKEN).
    #[arg(long, env = DEPLOY_TOKEN_ENV, hide_env_values = true)]
    pub token: String,
}

/// Uploads the component and reports the outcome.
pub fn run(args: DeployArgs) -> anyhow::Result<()> {
    let wasm = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let url = format!(
        "{}/v1/components/{}",
        args.admin_url.trim_end_matches('/'),
        args.component
    );
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (status, body) = runtime.block_on(async {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let request = http::Request::put(&url)
            .header(
                http::header::AUTHORIZATION,
                format!("Bearer {}", args.token),
            )
            .header(http::header::CONTENT_TYPE, "application/wasm")
            .body(Full::new(Bytes::from(wasm)))?;
        let response = client
            .request(request)
            .await
            .with_context(|| format!("cannot reach {url}"))?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    })?;
    let body: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    if !status.is_success() {
        let detail = body["detail"].as_str().unwrap_or("no detail");
        bail!("deploy failed ({status}): {detail}");
    }
    println!(
        "Deployed {} ({}, sha256 {})",
        args.component,
        body["world"].as_str().unwrap_or("?"),
        body["digest"].as_str().unwrap_or("?")
    );
    Ok(())
}
