//! Host capabilities: the host side of the `lamina:platform` WIT imports
//! (`wit/platform.wit`).
//!
//! Each capability is one self-contained module with its runtime-config
//! section and two backends, an embedded default and a distributed one:
//!
//! | capability  | default                  | distributed          |
//! |-------------|--------------------------|----------------------|
//! | [`sql`]     | SQLite file (WAL)        | PostgreSQL           |
//! | [`kv`]      | in-process, bounded, TTL | Redis                |
//! | [`queue`]   | durable SQL table        | Redis Streams        |
//! | [`variables`] | spin.toml defaults     | env / runtime-config |
//! | [`tokens`]  | in-process revocations   | Redis revocations    |
//! | [`inference`] | llama.cpp in-process   | (same, per host)     |
//! | [`limits`]  | rules and counters in the host database | counters in Redis |
//! | [`mail`]    | none (not configured)    | SMTP server          |
//! | [`blobs`]   | files in a directory     | rows in the host database |
//! | [`vectors`] | host scan of rows in the host database | (same, on PostgreSQL) |
//!
//! Backends are built once at start-up ([`Capabilities`]); what a component
//! may reach is fixed by its manifest entry ([`Grants`]) and checked on every
//! `open`/`publish`/`get`, so an ungranted name is an error the guest sees.

pub mod blobs;
pub mod inference;
pub mod kv;
pub mod limits;
pub mod mail;
pub mod queue;
pub(crate) mod redis_conn;
pub mod sql;
pub mod tokens;
pub mod variables;
pub mod vectors;

use std::collections::BTreeSet;
use std::sync::Arc;

use wasmtime::component::{HasData, Linker, ResourceTable};

use crate::manifest::Manifest;
use crate::runtime_config::RuntimeConfig;

/// Generated bindings for the `lamina:platform` package.
pub mod bindings {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "queue-worker",
        imports: { default: async | trappable },
        exports: { default: async },
        with: {
            "lamina:platform/sql.connection": crate::capabilities::sql::Connection,
            "lamina:platform/sql.transaction": crate::capabilities::sql::Transaction,
            "lamina:platform/kv.store": crate::capabilities::kv::Store,
            "lamina:platform/inference.generation": crate::capabilities::inference::Generation,
            "lamina:platform/blobs.bucket": crate::capabilities::blobs::Bucket,
            "lamina:platform/vectors.index": crate::capabilities::vectors::Index,
        },
    });
}

/// Backends shared by every component, built from runtime-config at start-up.
pub struct Capabilities {
    /// Named SQL databases.
    pub sql: sql::Databases,
    /// Named key-value stores.
    pub kv: kv::Stores,
    /// The message queue.
    pub queue: queue::Queue,
    /// Token signing, API keys and the revocation list (shared with the
    /// gateway, which verifies credentials).
    pub tokens: Arc<tokens::Tokens>,
    /// Installed models and the llama.cpp engine.
    pub inference: Arc<inference::Inference>,
    /// The SMTP server, if configured.
    pub mail: mail::Mailer,
    /// Model access and token budgets.
    pub limits: Arc<limits::Limits>,
    /// Named blob buckets.
    pub blobs: blobs::Buckets,
    /// Named vector indexes.
    pub vectors: vectors::Indexes,
}

/// What one component may use: its manifest entry's grants and its resolved
/// variables.
#[derive(Debug, Default)]
pub struct Grants {
    /// `databases = [...]`.
    pub databases: BTreeSet<String>,
    /// `key_value_stores = [...]`.
    pub key_value_stores: BTreeSet<String>,
    /// `queues = [...]`: topics it may publish to.
    pub queues: BTreeSet<String>,
    /// `tokens = true`: may issue and revoke credentials.
    pub tokens: bool,
    /// `models = [...]`: models it may run.
    pub models: inference::ModelGrants,
    /// `manage_models = true`: may install and remove models.
    pub manage_models: bool,
    /// `mail = true`: may send mail.
    pub mail: bool,
    /// `limits = true`: may change model access and budgets.
    pub limits: bool,
    /// `blobs = [...]`: buckets it may open.
    pub blobs: BTreeSet<String>,
    /// `vector_indexes = [...]`: vector indexes it may open.
    pub vector_indexes: BTreeSet<String>,
    /// `[component.<id>.variables]`, resolved.
    pub variables: variables::ComponentVariables,
}

impl Capabilities {
    /// Opens every backend runtime-config names (and the `default` and
    /// host databases), and applies the application's migrations
    /// (`<manifest dir>/migrations/<database>/<dialect>/`). `jwt_secret` is
    /// the HS256 secret from the environment, if set.
    pub async fn open(
        config: &RuntimeConfig,
        manifest: &Manifest,
        jwt_secret: Option<String>,
    ) -> anyhow::Result<Capabilities> {
        let breaker = config.circuit_breaker;
        let sql = open_databases(config, manifest).await?;
        sql.migrate(&manifest.dir.join("migrations")).await?;
        let kv = kv::Stores::open(&config.key_value_stores, breaker)?;
        let mut subscriptions = queue::Subscriptions::new();
        for trigger in &manifest.queue_triggers {
            subscriptions
                .entry(trigger.topic.clone())
                .or_default()
                .push(trigger.component.clone());
        }
        let queue = queue::Queue::open(&config.queue, &sql, breaker, subscriptions).await?;
        let tokens =
            tokens::Tokens::open(&config.auth, &config.data.dir, jwt_secret, &sql, breaker).await?;
        adopt_legacy_host_tables(&sql, config).await?;
        let models_dir = config
            .inference
            .models_dir
            .clone()
            .expect("resolved by RuntimeConfig::load");
        let inference = inference::Inference::open(
            &config.inference,
            models_dir,
            inference::egress::Egress::new(&config.inference.allowed_private_sources),
        );
        inference.pulls().resume();
        let mail = mail::Mailer::open(&config.mail, std::env::var(mail::PASSWORD_ENV).ok())?;
        let host = sql
            .get(&config.auth.api_key_database)
            .expect("the host database is always open");
        let limits = limits::Limits::open(&config.limits, host, breaker).await?;
        let blobs = blobs::Buckets::open(&config.blobs, host, &config.data.dir).await?;
        let vectors = vectors::Indexes::open(&config.vector_indexes, host).await?;
        Ok(Capabilities {
            sql,
            kv,
            queue,
            tokens: Arc::new(tokens),
            inference: Arc::new(inference),
            mail,
            limits: Arc::new(limits),
            blobs,
            vectors,
        })
    }
}

impl Capabilities {
    /// Probes every backend (`/ready`): `(name, Ok | Err(why))` each.
    pub async fn readiness(&self) -> Vec<(String, Result<(), String>)> {
        let mut checks = Vec::new();
        for name in self.sql.names() {
            if let Some(db) = self.sql.get(name) {
                let probe = db.query("SELECT 1", vec![]).await.map(drop);
                checks.push((format!("sql:{name}"), probe.map_err(|e| format!("{e:?}"))));
            }
        }
        for (name, probe) in self.kv.probe().await {
            checks.push((format!("kv:{name}"), probe));
        }
        checks.push(("queue".to_owned(), self.queue.probe().await));
        checks.extend(self.tokens.readiness().await);
        checks
    }
}

/// Opens the databases: those runtime-config configures, `default`, and
/// the host's own (where API keys and the SQL queue live: `host` unless
/// `[auth] api_key_database` or `[queue] database` name another), which no
/// component may be granted.
pub async fn open_databases(
    config: &RuntimeConfig,
    manifest: &Manifest,
) -> anyhow::Result<sql::Databases> {
    let mut host_only = BTreeSet::from([config.auth.api_key_database.clone()]);
    if config.queue.kind == queue::QueueKind::Sql {
        host_only.insert(config.queue.database.clone());
    }
    for (id, component) in &manifest.components {
        if let Some(name) = component.databases.iter().find(|d| host_only.contains(*d)) {
            anyhow::bail!(
                "{}: component.{id}.databases: `{name}` holds the host's own state (API keys, the queue) and cannot be granted to a component",
                manifest.path.display()
            );
        }
    }
    sql::Databases::open(
        &config.databases,
        &host_only,
        &config.data.dir,
        config.circuit_breaker,
    )
    .await
}

/// Host tables that lived in the `default` database before the host had
/// one of its own: moved (once) to where they live now, so an upgraded
/// host keeps its API keys and queued messages and no component granted
/// `default` can reach them any more.
async fn adopt_legacy_host_tables(
    sql: &sql::Databases,
    config: &RuntimeConfig,
) -> anyhow::Result<()> {
    let Some(legacy) = sql.get("default") else {
        return Ok(());
    };
    let mut tables = vec![
        ("lamina_api_keys", &config.auth.api_key_database),
        ("lamina_api_key_use", &config.auth.api_key_database),
    ];
    if config.queue.kind == queue::QueueKind::Sql {
        tables.push(("lamina_queue_messages", &config.queue.database));
    }
    for (table, home) in tables {
        let Some(home_db) = sql.get(home).filter(|_| home != "default") else {
            continue;
        };
        if let Some(moved) = legacy.move_table_to(home_db, table).await? {
            tracing::warn!(table, rows = moved, to = %home, "moved a host table out of the `default` database");
        }
    }
    Ok(())
}

/// Per-instance capability state: the shared backends, this component's
/// grants and whom the instance serves. Cheap to create (two `Arc` clones)
/// for every instance.
#[derive(Clone)]
pub struct CapabilityCtx {
    shared: Arc<Capabilities>,
    grants: Arc<Grants>,
    principal: limits::Principal,
}

impl std::fmt::Debug for CapabilityCtx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CapabilityCtx")
            .field("grants", &self.grants)
            .finish_non_exhaustive()
    }
}

impl CapabilityCtx {
    /// The context for instances of a component with `grants`.
    pub fn new(shared: Arc<Capabilities>, grants: Arc<Grants>) -> Self {
        CapabilityCtx {
            shared,
            grants,
            principal: limits::Principal::Platform,
        }
    }

    /// Makes the instance's inference calls for `principal` (set as each
    /// request starts on it).
    pub fn serve(&mut self, principal: limits::Principal) {
        self.principal = principal;
    }
}

/// What the generated host traits are implemented on: the capability context
/// and the instance's resource table (where connections, transactions and
/// store handles live).
pub struct CapabilityView<'a> {
    ctx: &'a CapabilityCtx,
    table: &'a mut ResourceTable,
}

impl<'a> CapabilityView<'a> {
    /// Borrows an instance's capability context and resource table.
    pub fn new(ctx: &'a CapabilityCtx, table: &'a mut ResourceTable) -> Self {
        CapabilityView { ctx, table }
    }
}

struct HasCapabilities;

impl HasData for HasCapabilities {
    type Data<'a> = CapabilityView<'a>;
}

/// Adds every `lamina:platform` import to `linker`.
pub fn add_to_linker<T: Send + 'static>(
    linker: &mut Linker<T>,
    view: fn(&mut T) -> CapabilityView<'_>,
) -> anyhow::Result<()> {
    use bindings::lamina::platform;
    platform::sql::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::kv::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::queue::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::variables::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::tokens::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::inference::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::mail::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::limits::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::blobs::add_to_linker::<T, HasCapabilities>(linker, view)?;
    platform::vectors::add_to_linker::<T, HasCapabilities>(linker, view)?;
    Ok(())
}

/// The error text for a name the component's manifest entry does not grant;
/// it tells the author what to add.
fn not_granted(kind: &str, key: &str, name: &str) -> String {
    format!("{kind} `{name}` is not granted to this component (add it to `{key}` in spin.toml)")
}
