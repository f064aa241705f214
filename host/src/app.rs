//! The running application: the manifest's components, each a hot-swappable
//! slot holding its current version, and the route table that points at them.

use std::collections::BTreeMap;
use std::sync::Arc;

use anyhow::Context;
use arc_swap::ArcSwap;

use crate::breaker::{Breaker, Open};
use crate::capabilities::inference::ModelGrants;
use crate::capabilities::variables::Resolved;
use crate::capabilities::{Capabilities, CapabilityCtx, Grants};
use crate::engine::executor::{ComponentSpec, RequiredExports};
use crate::engine::{AllowedHosts, Engine, LoadedComponent, RequestLimits};
use crate::gateway::auth::Authenticator;
use crate::gateway::client_ip::ClientAddress;
use crate::gateway::concurrency::InFlight;
use crate::gateway::rate_limit::RateLimiter;
use crate::manifest::{AuthPolicy, Credentials, Manifest, QueueTrigger};
use crate::router::{RoutePattern, Routed, Router};
use crate::runtime_config::RuntimeConfig;

/// What a route points at.
#[derive(Debug, Clone)]
pub struct RouteTarget {
    /// Component id.
    pub component: String,
    /// Timeout and execution deadline for requests on this route.
    pub limits: RequestLimits,
    /// Who may call the route.
    pub auth: AuthPolicy,
    /// Which credentials it accepts.
    pub credentials: Credentials,
    /// Largest request body.
    pub max_body_size: u64,
    /// Roles of which the caller needs one (empty: any authenticated caller).
    pub roles: Vec<String>,
    /// Rate-limit class (the route's own, else `default` if configured).
    pub rate_limit: Option<String>,
}

/// One component id and its currently deployed version.
struct Slot {
    spec: ComponentSpec,
    current: ArcSwap<LoadedComponent>,
    /// Breakers of the remote databases it is granted.
    breakers: Vec<Breaker>,
}

/// Components, routes and the engine that runs them.
pub struct App {
    /// Application name from the manifest.
    pub name: String,
    engine: Engine,
    slots: BTreeMap<String, Slot>,
    router: Router<RouteTarget>,
    queue_triggers: Vec<QueueTrigger>,
    capabilities: Arc<Capabilities>,
    authenticator: Authenticator,
    limiter: RateLimiter,
    in_flight: InFlight,
    client_address: ClientAddress,
}

/// Why a hot deploy was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    /// The manifest has no such component.
    #[error("unknown component `{0}`")]
    UnknownComponent(String),
    /// The bytes did not compile or link; the old version keeps serving.
    #[error("{0:#}")]
    Rejected(anyhow::Error),
}

impl App {
    /// Compiles (or loads from cache) every component of the manifest and
    /// builds the route table.
    pub fn load(
        manifest: &Manifest,
        config: &RuntimeConfig,
        engine: Engine,
        capabilities: Arc<Capabilities>,
        variables: &Resolved,
    ) -> anyhow::Result<App> {
        manifest.check_sources()?;
        let authenticator = Authenticator::new(capabilities.tokens.clone());
        let limiter = RateLimiter::new(&config.rate_limit, config.circuit_breaker)?;
        let in_flight = InFlight::new(&config.rate_limit)?;
        for (index, route) in manifest.http_routes.iter().enumerate() {
            if let Some(class) = &route.rate_limit {
                anyhow::ensure!(
                    limiter.has_class(class),
                    "{}: trigger.http[{index}].rate_limit: no class `{class}` under [rate_limit.classes] in the runtime config",
                    manifest.path.display()
                );
            }
        }
        let mut slots = BTreeMap::new();
        for (id, def) in &manifest.components {
            let grants = grants(manifest, id, &capabilities, variables)?;
            let breakers = grants
                .databases
                .iter()
                .filter_map(|name| capabilities.sql.get(name)?.breaker().cloned())
                .collect();
            let allowed_hosts =
                AllowedHosts::parse(&def.allowed_outbound_hosts).map_err(|problem| {
                    anyhow::anyhow!(
                        "{}: component.{id}.allowed_outbound_hosts: {problem}",
                        manifest.path.display()
                    )
                })?;
            let spec = ComponentSpec {
                id: id.clone(),
                environment: def.environment.clone().into_iter().collect(),
                memory_limit: def.memory_limit.unwrap_or(config.components.memory_limit),
                allowed_hosts: Arc::new(allowed_hosts),
                reuse: def.instance_reuse,
                max_request_duration: config.http.max_request_duration,
                capabilities: CapabilityCtx::new(capabilities.clone(), Arc::new(grants)),
                exports: RequiredExports {
                    http: manifest.http_routes.iter().any(|r| &r.component == id),
                    queue: manifest.queue_triggers.iter().any(|t| &t.component == id),
                },
            };
            let source = manifest.source_path(def);
            let wasm = std::fs::read(&source)
                .with_context(|| format!("cannot read {}", source.display()))?;
            let loaded = engine
                .load(&wasm, spec.clone())
                .with_context(|| format!("component `{id}` ({})", source.display()))?;
            slots.insert(
                id.clone(),
                Slot {
                    spec,
                    current: ArcSwap::from_pointee(loaded),
                    breakers,
                },
            );
        }
        tracing::info!(
            application = %manifest.application.name,
            version = manifest.application.version.as_deref().unwrap_or("-"),
            components = slots.len(),
            "application loaded"
        );
        let router = Router::new(manifest.http_routes.iter().map(|route| {
            let target = RouteTarget {
                component: route.component.clone(),
                limits: RequestLimits {
                    timeout: route.timeout.unwrap_or(config.http.timeout),
                    execution_deadline: route
                        .execution_deadline
                        .unwrap_or(config.http.execution_deadline),
                },
                auth: route.auth,
                credentials: route.credentials,
                max_body_size: route
                    .max_body_size
                    .unwrap_or(config.http.max_body_size)
                    .bytes(),
                roles: route.roles.clone(),
                rate_limit: limiter
                    .class_for(route.rate_limit.as_deref())
                    .map(str::to_owned),
            };
            (route.route.clone(), route.methods.clone(), target)
        }));
        Ok(App {
            name: manifest.application.name.clone(),
            engine,
            slots,
            router,
            queue_triggers: manifest.queue_triggers.clone(),
            capabilities,
            authenticator,
            limiter,
            in_flight,
            client_address: ClientAddress::new(
                &config.http.trusted_proxies,
                config.http.forwarded_header,
            ),
        })
    }

    /// The `[[trigger.queue]]` entries.
    pub fn queue_triggers(&self) -> &[QueueTrigger] {
        &self.queue_triggers
    }

    /// An open breaker of a database `component` depends on, if any: the
    /// request is answered 503 at once instead of waiting on the backend.
    pub fn unavailable_backend(&self, component: &str) -> Option<(&str, Open)> {
        self.slots
            .get(component)?
            .breakers
            .iter()
            .find_map(|b| b.refusing().map(|open| (b.name(), open)))
    }

    /// Verifies bearer tokens for routes with an `auth` policy.
    pub fn authenticator(&self) -> &Authenticator {
        &self.authenticator
    }

    /// Per-caller concurrency limits.
    pub fn in_flight(&self) -> &InFlight {
        &self.in_flight
    }

    /// How a request's client address is found.
    pub fn client_address(&self) -> &ClientAddress {
        &self.client_address
    }

    /// The rate limiter.
    pub fn limiter(&self) -> &RateLimiter {
        &self.limiter
    }

    /// The shared capability backends.
    pub fn capabilities(&self) -> &Arc<Capabilities> {
        &self.capabilities
    }

    /// The most specific route for a request's method and path.
    pub fn route<'p>(&self, method: &http::Method, path: &'p str) -> Routed<'_, 'p, RouteTarget> {
        self.router.route(method, path)
    }

    /// The version of a component serving new requests right now.
    pub fn component(&self, id: &str) -> Option<Arc<LoadedComponent>> {
        self.slots.get(id).map(|slot| slot.current.load_full())
    }

    /// Every component with its current version.
    pub fn components(&self) -> impl Iterator<Item = Arc<LoadedComponent>> + '_ {
        self.slots.values().map(|slot| slot.current.load_full())
    }

    /// Routes as `(pattern, methods, component id)`, most specific first.
    pub fn routes(&self) -> impl Iterator<Item = (&RoutePattern, &[http::Method], &str)> {
        self.router
            .entries()
            .map(|(pattern, methods, target)| (pattern, methods, target.component.as_str()))
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.engine.pooling()
    }

    /// Compiles and links `wasm` as the new version of `id`, then swaps it in
    /// atomically: requests already running finish on the old version, new
    /// ones get the new one. CPU-heavy: call from a blocking thread.
    pub fn deploy(&self, id: &str, wasm: &[u8]) -> Result<Arc<LoadedComponent>, DeployError> {
        let slot = self
            .slots
            .get(id)
            .ok_or_else(|| DeployError::UnknownComponent(id.to_owned()))?;
        let loaded = Arc::new(
            self.engine
                .load(wasm, slot.spec.clone())
                .map_err(DeployError::Rejected)?,
        );
        let previous = slot.current.swap(loaded.clone());
        tracing::info!(
            component = id,
            from = &previous.digest()[..12],
            to = &loaded.digest()[..12],
            "deployed new version"
        );
        Ok(loaded)
    }
}

/// A component's grants, checked against what runtime-config provides: a
/// grant of a database or store that does not exist is a start-up error,
/// not a surprise at the first request.
fn grants(
    manifest: &Manifest,
    id: &str,
    capabilities: &Capabilities,
    variables: &Resolved,
) -> anyhow::Result<Grants> {
    let def = &manifest.components[id];
    let check = |key: &str, granted: &[String], known: Vec<&str>| -> anyhow::Result<()> {
        for name in granted {
            anyhow::ensure!(
                known.contains(&name.as_str()),
                "{}: component.{id}.{key}: `{name}` is not configured (runtime config has: {})",
                manifest.path.display(),
                known.join(", ")
            );
        }
        Ok(())
    };
    check(
        "databases",
        &def.databases,
        capabilities.sql.names().collect(),
    )?;
    check(
        "key_value_stores",
        &def.key_value_stores,
        capabilities.kv.names().collect(),
    )?;
    check("blobs", &def.blobs, capabilities.blobs.names().collect())?;
    check(
        "vector_indexes",
        &def.vector_indexes,
        capabilities.vectors.names().collect(),
    )?;
    Ok(Grants {
        databases: def.databases.iter().cloned().collect(),
        key_value_stores: def.key_value_stores.iter().cloned().collect(),
        queues: def.queues.iter().cloned().collect(),
        tokens: def.tokens,
        manage_models: def.manage_models,
        mail: def.mail,
        limits: def.limits,
        blobs: def.blobs.iter().cloned().collect(),
        vector_indexes: def.vector_indexes.iter().cloned().collect(),
        models: ModelGrants::new(&def.models).map_err(|e| {
            anyhow::anyhow!("{}: component.{id}.models: {e}", manifest.path.display())
        })?,
        variables: variables.for_component(def),
    })
}
