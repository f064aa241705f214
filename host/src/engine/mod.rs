//! The execution engine: one wasmtime `Engine` and `Linker` for the whole
//! host, the epoch clock that enforces deadlines, and the compile → link
//! pipeline that turns `.wasm` bytes into a [`LoadedComponent`].
//!
//! Per-request execution lives in [`executor`], per-instance state in
//! [`instance`], the on-disk `.cwasm` cache in [`cache`].

mod cache;
pub mod executor;
mod instance;
mod outbound;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use wasmtime::component::{InstancePre, Linker};
use wasmtime::{Config, InstanceAllocationStrategy, PoolingAllocationConfig};
use wasmtime_wasi_http::handler::ProxyPre;

use crate::capabilities::bindings::QueueWorkerPre;

pub use executor::{ExecError, LoadedComponent, RequestLimits};
pub use instance::InstanceState;
pub use outbound::AllowedHosts;

use crate::units::ByteSize;

/// How often the epoch clock ticks. Deadlines are measured in these ticks,
/// and a busy guest yields to other requests at least this often.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);

/// Engine-wide settings, from runtime-config.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    /// Use the pooling allocator if the machine has the address space for it.
    pub pooling: bool,
    /// Pool size: most instances alive at once.
    pub max_instances: u32,
    /// Largest linear memory any component may grow to.
    pub max_memory: ByteSize,
    /// Where compiled components are cached.
    pub cache_dir: std::path::PathBuf,
}

/// The shared engine: wasmtime engine + linker + compile cache + epoch clock.
pub struct Engine {
    engine: wasmtime::Engine,
    linker: Linker<InstanceState>,
    cache: cache::ComponentCache,
    clock: Arc<AtomicU64>,
    ticker: Option<std::thread::JoinHandle<()>>,
    stop_ticker: Arc<AtomicBool>,
    pooling: bool,
}

impl Engine {
    /// Builds the engine, probing for the pooling allocator and falling back
    /// to on-demand allocation (with a warning) where it cannot reserve its
    /// address space.
    pub fn new(settings: &EngineSettings) -> anyhow::Result<Engine> {
        let mut config = Config::new();
        config
            .wasm_component_model(true)
            .wasm_component_model_async(true)
            .epoch_interruption(true);
        let mut pooling = false;
        if settings.pooling {
            if pooling_is_supported() {
                let mut pool = PoolingAllocationConfig::default();
                let n = settings.max_instances;
                pool.total_component_instances(n)
                    .total_core_instances(n.saturating_mul(4))
                    .total_memories(n)
                    .total_tables(n.saturating_mul(4))
                    .total_stacks(n)
                    .max_memory_size(settings.max_memory.bytes() as usize);
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
                pooling = true;
            } else {
                tracing::warn!(
                    "the pooling allocator cannot reserve its address space here; \
                     falling back to on-demand allocation (slower instantiation)"
                );
            }
        }
        let engine = wasmtime::Engine::new(&config)
            .map_err(anyhow::Error::from)
            .context("cannot create the wasmtime engine")?;

        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)?;
        wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)?;
        wasmtime_wasi::p3::add_to_linker(&mut linker)?;
        wasmtime_wasi_http::p3::add_to_linker(&mut linker)?;
        crate::capabilities::add_to_linker(&mut linker, InstanceState::capabilities)?;

        let cache = cache::ComponentCache::open(&settings.cache_dir, &engine)?;
        let clock = Arc::new(AtomicU64::new(0));
        let stop_ticker = Arc::new(AtomicBool::new(false));
        let ticker = {
            let (engine, clock, stop) = (engine.clone(), clock.clone(), stop_ticker.clone());
            std::thread::Builder::new()
                .name("lamina-epoch".into())
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        clock.fetch_add(1, Ordering::Relaxed);
                        engine.increment_epoch();
                    }
                })?
        };
        Ok(Engine {
            engine,
            linker,
            cache,
            clock,
            ticker: Some(ticker),
            stop_ticker,
            pooling,
        })
    }

    /// Whether the pooling allocator is in use.
    pub fn pooling(&self) -> bool {
        self.pooling
    }

    /// Compiles (or loads from the cache) and links a component, ready to
    /// serve. Fails with a readable error if the bytes are not a component,
    /// import something the host does not provide, or export no HTTP handler.
    pub fn load(
        &self,
        wasm: &[u8],
        spec: executor::ComponentSpec,
    ) -> anyhow::Result<LoadedComponent> {
        let started = Instant::now();
        let (component, digest, outcome) = self.cache.load_or_compile(&self.engine, wasm)?;
        let instance_pre = self
            .linker
            .instantiate_pre(&component)
            .map_err(anyhow::Error::from)
            .context("cannot link the component against the host's imports")?;
        let http = http_pre(&instance_pre);
        let queue = QueueWorkerPre::new(instance_pre).ok();
        if spec.exports.http && http.is_none() {
            bail!(
                "the component is routed by [[trigger.http]] but exports no HTTP handler \
                 (expected wasi:http/incoming-handler@0.2 or wasi:http/handler@0.3)"
            );
        }
        if spec.exports.queue && queue.is_none() {
            bail!(
                "the component consumes a [[trigger.queue]] topic but does not export \
                 lamina:platform/queue-handler@0.1.0"
            );
        }
        tracing::info!(
            component = %spec.id,
            digest = %&digest[..12],
            world = http.as_ref().map_or("-", pre_world),
            queue_handler = queue.is_some(),
            cache = ?outcome,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "component ready"
        );
        let stores = executor::StoreFactory::new(spec, self.engine.clone(), self.clock.clone());
        Ok(LoadedComponent::new(stores, digest, http, queue))
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop_ticker.store(true, Ordering::Relaxed);
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
    }
}

/// The component's HTTP handler export, if it has one.
fn http_pre(instance_pre: &InstancePre<InstanceState>) -> Option<ProxyPre<InstanceState>> {
    if let Ok(pre) = wasmtime_wasi_http::p3::bindings::ServicePre::new(instance_pre.clone()) {
        return Some(ProxyPre::P3(pre));
    }
    wasmtime_wasi_http::p2::bindings::ProxyPre::new(instance_pre.clone())
        .ok()
        .map(ProxyPre::P2)
}

/// The WASI HTTP world a linked component speaks.
pub fn pre_world<T>(pre: &ProxyPre<T>) -> &'static str {
    match pre {
        ProxyPre::P2(_) => "wasi:http@0.2",
        ProxyPre::P3(_) => "wasi:http@0.3",
    }
}

/// Whether this machine lets the pooling allocator reserve its address space
/// (the same probe `wasmtime serve` uses: a large 64-bit memory reservation).
fn pooling_is_supported() -> bool {
    const BITS: u32 = 42;
    let mut config = Config::new();
    config.wasm_memory64(true).memory_reservation(1 << BITS);
    let Ok(engine) = wasmtime::Engine::new(&config) else {
        return false;
    };
    let mut store = wasmtime::Store::new(&engine, ());
    let ty = wasmtime::MemoryType::new64(0, Some(1 << (BITS - 16)));
    wasmtime::Memory::new(&mut store, ty).is_ok()
}
