//! `lamina up`: load the app, bind the listeners, serve until SIGINT/SIGTERM,
//! then drain in-flight requests and exit cleanly.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin::{Admin, DEPLOY_TOKEN_ENV};
use crate::app::App;
use crate::capabilities::Capabilities;
use crate::capabilities::tokens::keys::SECRET_ENV;
use crate::capabilities::variables::Resolved;
use crate::engine::{Engine, EngineSettings};
use crate::manifest::Manifest;
use crate::runtime_config::RuntimeConfig;
use crate::server::{self, ServerLimits};

/// Options of `lamina up`.
#[derive(Debug, clap::Args)]
pub struct UpArgs {
    /// The application manifest.
    #[arg(long, short = 'f', default_value = "spin.toml")]
    pub manifest: PathBuf,
    /// Backends and limits; a missing file means embedded defaults.
    #[arg(long, default_value = "runtime-config.toml")]
    pub runtime_config: PathBuf,
    /// Public listener address (overrides runtime-config `http.listen`).
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin (deploy) listener address (overrides runtime-config `admin.listen`).
    #[arg(long)]
    pub admin_listen: Option<SocketAddr>,
    /// Run `lamina build` first.
    #[arg(long)]
    pub build: bool,
}

/// Runs the host until a shutdown signal.
pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let manifest = Manifest::load(&args.manifest)?;
    if args.build {
        super::build::run(&manifest, &[])?;
    }
    let mut config = RuntimeConfig::load(&args.runtime_config)?;
    if let Some(listen) = args.listen {
        config.http.listen = listen;
    }
    if let Some(listen) = args.admin_listen {
        config.admin.listen = listen;
    }

    let largest_memory = manifest
        .components
        .values()
        .filter_map(|c| c.memory_limit)
        .chain([config.components.memory_limit])
        .max()
        .unwrap_or(config.components.memory_limit);
    let variables = Resolved::resolve(&manifest.variables, &config.variables, |name| {
        std::env::var(name).ok()
    })?;
    let engine = Engine::new(&EngineSettings {
        pooling: config.components.pooling,
        max_instances: config.components.max_instances,
        max_memory: largest_memory,
        cache_dir: config.data.dir.join("cache").join("components"),
    })?;

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let metrics = crate::telemetry::install()?;
        let capabilities =
            Arc::new(Capabilities::open(&config, &manifest, std::env::var(SECRET_ENV).ok()).await?);
        let app = Arc::new(App::load(
            &manifest,
            &config,
            engine,
            capabilities,
            &variables,
        )?);
        serve(app, config, metrics).await
    })
}

async fn serve(
    app: Arc<App>,
    config: RuntimeConfig,
    metrics: metrics_exporter_prometheus::PrometheusHandle,
) -> anyhow::Result<()> {
    let cors = crate::gateway::cors::layer(&config.cors)?;
    let public = TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.http.listen))?;
    let admin_listener = TcpListener::bind(config.admin.listen)
        .await
        .with_context(|| format!("cannot listen on {} (admin)", config.admin.listen))?;

    let token = std::env::var(DEPLOY_TOKEN_ENV).ok();
    if token.as_deref().is_none_or(str::is_empty) {
        tracing::info!("{DEPLOY_TOKEN_ENV} is not set: hot deploy is disabled");
    }
    let admin = Arc::new(Admin::new(
        app.clone(),
        token,
        config.admin.max_component_size.bytes() as usize,
        metrics,
    ));

    println!("Serving {} on http://{}", app.name, public.local_addr()?);
    for (pattern, methods, component) in app.routes() {
        if methods.is_empty() {
            println!("  {pattern} -> {component}");
        } else {
            let methods: Vec<&str> = methods.iter().map(http::Method::as_str).collect();
            println!("  {pattern} [{}] -> {component}", methods.join(", "));
        }
    }
    println!("Admin API on http://{}", admin_listener.local_addr()?);
    if !app.pooling() {
        println!("  (pooling allocator unavailable: on-demand instance allocation)");
    }

    let (stop, stopped) = watch::channel(false);
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        let _ = stop.send(true);
    });
    let consumers = crate::trigger::queue::start(app.clone(), stopped.clone()).await?;

    let limits = ServerLimits {
        max_connections: config.http.max_connections,
        drain_timeout: config.http.drain_timeout,
    };
    // The public service: CORS (when configured) around the HTTP trigger.
    // The client address travels in the request's extensions.
    let public_service = tower::ServiceBuilder::new().option_layer(cors).service_fn(
        move |request: http::Request<hyper::body::Incoming>| {
            let peer = request
                .extensions()
                .get::<SocketAddr>()
                .copied()
                .unwrap_or_else(|| SocketAddr::from(([0, 0, 0, 0], 0)));
            let response = crate::trigger::http::handle(app.clone(), request, peer);
            async move { Ok::<_, std::convert::Infallible>(response.await) }
        },
    );
    let public = server::serve(
        "public",
        public,
        limits,
        stopped.clone(),
        move |mut request, peer| {
            request.extensions_mut().insert(peer);
            let service = public_service.clone();
            async move {
                match tower::ServiceExt::oneshot(service, request).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                }
            }
        },
    );
    let admin = server::serve(
        "admin",
        admin_listener,
        limits,
        stopped,
        move |request, peer| admin.clone().handle(request, peer),
    );
    let (public, admin) = tokio::join!(public, admin);
    consumers.stop().await;
    public.and(admin)?;
    tracing::info!("shut down cleanly");
    Ok(())
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) {
        (Ok(mut interrupt), Ok(mut terminate)) => {
            tokio::select! {
                _ = interrupt.recv() => {}
                _ = terminate.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
