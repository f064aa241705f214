//! Which models are in memory: loaded on first use, kept for their
//! `keep_alive`, unloaded least-recently-used first when a new one would
//! exceed the memory budget. Each loaded model has one thread that owns its
//! llama.cpp context ([`batcher`](super::batcher) for text models,
//! [`embed`](super::embed) for embedding models).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::{LlamaContextParams, LlamaPoolingType};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::model::params::LlamaModelParams;
use tokio::sync::Notify;

use super::batcher::{self, Shape};
use super::embed;
use super::sampling::KeepAlive;
use super::store::ModelEntry;
use super::{InferenceConfig, InferenceError};

/// The process-wide llama.cpp backend (it may be initialized only once).
pub fn backend() -> &'static LlamaBackend {
    static BACKEND: OnceLock<LlamaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
        LlamaBackend::init().expect("llama.cpp backend initializes once")
    })
}

/// llama.cpp context creation is not safe to run concurrently.
static CONTEXT_CREATION: Mutex<()> = Mutex::new(());

/// What a loaded model's thread works on.
enum Worker {
    Text(Sender<batcher::Job>),
    Embedding(Sender<embed::Job>),
}

/// A model in memory.
pub struct Loaded {
    pub entry: ModelEntry,
    pub model: Arc<LlamaModel>,
    worker: Worker,
    active: AtomicU32,
    residency: Mutex<Residency>,
}

#[derive(Debug, Clone, Copy)]
struct Residency {
    /// `None`: never unloads on its own.
    expires: Option<Instant>,
    last_used: Instant,
}

/// A model held for one request: it cannot be unloaded until dropped, and
/// dropping it starts the model's `keep_alive`.
pub struct Lease {
    pub model: Arc<Loaded>,
    keep_alive: KeepAlive,
    engine: Arc<EngineInner>,
}

/// Loaded models and the policy that keeps them.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineInner>,
}

struct EngineInner {
    config: InferenceConfig,
    threads: i32,
    loaded: Mutex<HashMap<String, Arc<Loaded>>>,
    /// One load at a time (loads are I/O- and memory-heavy).
    loading: Arc<tokio::sync::Mutex<()>>,
    /// Held for each decode step, across models.
    gate: Arc<Mutex<()>>,
    /// Wakes the reaper when a lease ends.
    released: Arc<Notify>,
}

impl Engine {
    /// An engine with nothing loaded; starts the task that unloads idle
    /// models when their `keep_alive` ends.
    pub fn new(config: InferenceConfig) -> Engine {
        let threads = config
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            as i32;
        let inner = Arc::new(EngineInner {
            config,
            threads,
            loaded: Mutex::new(HashMap::new()),
            loading: Arc::new(tokio::sync::Mutex::new(())),
            gate: Arc::new(Mutex::new(())),
            released: Arc::new(Notify::new()),
        });
        let weak = Arc::downgrade(&inner);
        let released = inner.released.clone();
        tokio::spawn(async move {
            loop {
                let Some(inner) = weak.upgrade() else { return };
                inner.unload_expired();
                drop(inner);
                tokio::select! {
                    () = released.notified() => {}
                    () = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        });
        Engine { inner }
    }

    /// Holds `entry`'s model, loading it first if needed; returns the time
    /// spent loading.
    pub async fn acquire(
        &self,
        entry: &ModelEntry,
        path: &std::path::Path,
        keep_alive: Option<KeepAlive>,
    ) -> Result<(Lease, Duration), InferenceError> {
        let keep_alive = keep_alive.unwrap_or(KeepAlive::For(self.inner.config.keep_alive));
        if let Some(lease) = self.lease(entry, keep_alive) {
            return Ok((lease, Duration::ZERO));
        }
        let loading = self.inner.loading.clone().lock_owned().await;
        if let Some(lease) = self.lease(entry, keep_alive) {
            return Ok((lease, Duration::ZERO));
        }
        self.make_room(entry)?;
        let started = Instant::now();
        let (entry2, path) = (entry.clone(), path.to_owned());
        let (config, threads, gate) = (
            self.inner.config.clone(),
            self.inner.threads,
            self.inner.gate.clone(),
        );
        // The load owns the guard and hands it back, so a caller that gives
        // up mid-load does not let a second load start while this one runs.
        let (loaded, _loading) = tokio::task::spawn_blocking(move || {
            (load(entry2, &path, &config, threads, gate), loading)
        })
        .await
        .map_err(|e| InferenceError::Unavailable(e.to_string()))?;
        let loaded = loaded?;
        let loaded = Arc::new(loaded);
        let mut map = self.inner.loaded.lock().unwrap();
        map.insert(entry.name.clone(), loaded.clone());
        super::metrics::loaded_models(map.len());
        tracing::info!(model = %entry.name, load_ms = started.elapsed().as_millis() as u64, "model loaded");
        Ok((
            Lease::new(loaded, keep_alive, &self.inner),
            started.elapsed(),
        ))
    }

    /// The models in memory.
    pub fn loaded(&self) -> Vec<LoadedInfo> {
        let map = self.inner.loaded.lock().unwrap();
        let now = Instant::now();
        let mut list: Vec<LoadedInfo> = map
            .values()
            .map(|m| {
                let residency = *m.residency.lock().unwrap();
                LoadedInfo {
                    entry: m.entry.clone(),
                    active: m.active.load(Ordering::Relaxed),
                    expires_in: residency
                        .expires
                        .map(|at| at.saturating_duration_since(now)),
                }
            })
            .collect();
        list.sort_by(|a, b| a.entry.name.cmp(&b.entry.name));
        list
    }

    /// Unloads `name` if it is loaded and idle; an error if it is in use.
    pub fn unload(&self, name: &str) -> Result<(), InferenceError> {
        let mut map = self.inner.loaded.lock().unwrap();
        if let Some(model) = map.get(name) {
            let active = model.active.load(Ordering::Relaxed);
            if active > 0 {
                return Err(InferenceError::InUse(format!(
                    "model `{name}` is in use by {active} request(s); try again when they finish"
                )));
            }
            map.remove(name);
            super::metrics::loaded_models(map.len());
        }
        Ok(())
    }

    /// Unloads idle models, least recently used first, until `entry` fits
    /// the memory budget.
    fn make_room(&self, entry: &ModelEntry) -> Result<(), InferenceError> {
        let budget = self.inner.config.max_loaded_size.bytes();
        let mut map = self.inner.loaded.lock().unwrap();
        loop {
            let used: u64 = map.values().map(|m| m.entry.size).sum();
            if used + entry.size <= budget || map.is_empty() {
                return Ok(());
            }
            let idle = map
                .values()
                .filter(|m| m.active.load(Ordering::Relaxed) == 0)
                .min_by_key(|m| m.residency.lock().unwrap().last_used)
                .map(|m| m.entry.name.clone());
            match idle {
                Some(name) => {
                    tracing::info!(model = %name, "unloading to make room");
                    map.remove(&name);
                }
                None => {
                    return Err(InferenceError::Unavailable(format!(
                        "cannot load `{}`: the loaded models are all busy and the memory budget \
                         ([inference] max_loaded_size = {budget} bytes) is full",
                        entry.name
                    )));
                }
            }
        }
    }

    fn lease(&self, entry: &ModelEntry, keep_alive: KeepAlive) -> Option<Lease> {
        let map = self.inner.loaded.lock().unwrap();
        let model = map
            .get(&entry.name)
            .filter(|m| m.entry.sha256 == entry.sha256)?;
        Some(Lease::new(model.clone(), keep_alive, &self.inner))
    }
}

impl EngineInner {
    fn unload_expired(&self) {
        let now = Instant::now();
        let mut map = self.loaded.lock().unwrap();
        let before = map.len();
        map.retain(|name, m| {
            let expired = m.active.load(Ordering::Relaxed) == 0
                && m.residency
                    .lock()
                    .unwrap()
                    .expires
                    .is_some_and(|at| at <= now);
            if expired {
                tracing::info!(model = %name, "keep_alive ended; model unloaded");
            }
            !expired
        });
        if map.len() != before {
            super::metrics::loaded_models(map.len());
        }
    }
}

/// A loaded model as listed.
#[derive(Debug, Clone)]
pub struct LoadedInfo {
    pub entry: ModelEntry,
    pub active: u32,
    /// `None`: stays until the host stops.
    pub expires_in: Option<Duration>,
}

impl Lease {
    /// Counted under the map lock, so the reaper cannot unload it meanwhile.
    fn new(model: Arc<Loaded>, keep_alive: KeepAlive, engine: &Arc<EngineInner>) -> Lease {
        model.active.fetch_add(1, Ordering::Relaxed);
        model.residency.lock().unwrap().last_used = Instant::now();
        Lease {
            model,
            keep_alive,
            engine: engine.clone(),
        }
    }

    /// Queues a sequence on the model's batcher.
    pub fn generate(&self, job: batcher::Job) -> Result<(), InferenceError> {
        match &self.model.worker {
            Worker::Text(jobs) => jobs.send(job).map_err(|_| self.worker_stopped()),
            Worker::Embedding(_) => Err(InferenceError::Invalid(format!(
                "`{}` is an embedding model; it cannot generate text",
                self.model.entry.name
            ))),
        }
    }

    /// A worker thread that ended on its own is broken: forget the model so
    /// the next request loads it afresh.
    fn worker_stopped(&self) -> InferenceError {
        let mut map = self.engine.loaded.lock().unwrap();
        if map
            .get(&self.model.entry.name)
            .is_some_and(|m| Arc::ptr_eq(m, &self.model))
        {
            map.remove(&self.model.entry.name);
            super::metrics::loaded_models(map.len());
        }
        tracing::error!(model = %self.model.entry.name, "the model's worker stopped; unloaded");
        InferenceError::Unavailable("the model's worker stopped; try again".to_owned())
    }

    /// Queues inputs on the model's embedding worker.
    pub fn embed(&self, job: embed::Job) -> Result<(), InferenceError> {
        match &self.model.worker {
            Worker::Embedding(jobs) => jobs.send(job).map_err(|_| self.worker_stopped()),
            Worker::Text(_) => Err(InferenceError::Invalid(format!(
                "`{}` is not an embedding model",
                self.model.entry.name
            ))),
        }
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        let now = Instant::now();
        // A keep_alive too long to represent is forever.
        let expires = match self.keep_alive {
            KeepAlive::Forever => None,
            KeepAlive::For(d) => now.checked_add(d),
        };
        {
            let mut residency = self.model.residency.lock().unwrap();
            residency.last_used = now;
            residency.expires = expires;
        }
        self.model.active.fetch_sub(1, Ordering::Relaxed);
        self.engine.released.notify_one();
    }
}

/// Loads the model and starts its worker thread (blocking).
fn load(
    entry: ModelEntry,
    path: &std::path::Path,
    config: &InferenceConfig,
    threads: i32,
    gate: Arc<Mutex<()>>,
) -> Result<Loaded, InferenceError> {
    let unavailable = |what: &str, e: &dyn std::fmt::Display| {
        InferenceError::Unavailable(format!("cannot {what} `{}`: {e}", entry.name))
    };
    let model = LlamaModel::load_from_file(backend(), path, &LlamaModelParams::default())
        .map_err(|e| unavailable("load", &e))?;
    let model = Arc::new(model);
    let worker = if entry.metadata.embedding {
        let (tx, rx) = std::sync::mpsc::channel();
        let context = entry.metadata.context_length.clamp(1, config.context);
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(context * embed::MAX_BATCH_INPUTS))
            // Batches never exceed BATCH_TOKENS, and llama.cpp sizes the
            // attention buffers of an encoder by the micro-batch squared.
            .with_n_batch(embed::BATCH_TOKENS)
            .with_n_ubatch(embed::BATCH_TOKENS)
            .with_n_seq_max(embed::MAX_BATCH_INPUTS)
            .with_embeddings(true)
            .with_pooling_type(LlamaPoolingType::Mean);
        start_worker(&entry.name, &model, params, threads, move |model, ctx| {
            embed::run(model, ctx, rx, context, &gate)
        })?;
        Worker::Embedding(tx)
    } else {
        let (tx, rx) = std::sync::mpsc::channel();
        let shape = Shape {
            parallel: config.parallel,
            batch: config.batch,
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(config.context * config.parallel))
            .with_n_batch(config.batch)
            .with_n_seq_max(config.parallel);
        start_worker(&entry.name, &model, params, threads, move |model, ctx| {
            batcher::run(model, ctx, rx, shape, &gate)
        })?;
        Worker::Text(tx)
    };
    let now = Instant::now();
    Ok(Loaded {
        entry,
        model,
        worker,
        active: AtomicU32::new(0),
        residency: Mutex::new(Residency {
            expires: Some(now),
            last_used: now,
        }),
    })
}

/// Starts `model`'s worker thread: it creates the context (one creation at
/// a time, process-wide), then runs `work` on it until its jobs end.
/// Returns once the context exists, or why it could not be created.
fn start_worker(
    name: &str,
    model: &Arc<LlamaModel>,
    params: LlamaContextParams,
    threads: i32,
    work: impl FnOnce(&LlamaModel, &mut LlamaContext<'_>) + Send + 'static,
) -> Result<(), InferenceError> {
    let params = params.with_n_threads(threads).with_n_threads_batch(threads);
    let model = model.clone();
    let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel::<Result<(), String>>(1);
    std::thread::Builder::new()
        .name(format!("llama {name}"))
        .spawn(move || {
            let created = {
                let _one = CONTEXT_CREATION.lock().unwrap_or_else(|e| e.into_inner());
                model.new_context(backend(), params)
            };
            match created {
                Ok(mut ctx) => {
                    let _ = ready_tx.send(Ok(()));
                    work(&model, &mut ctx);
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e.to_string()));
                }
            }
        })
        .map_err(|e| InferenceError::Unavailable(format!("cannot start a worker thread: {e}")))?;
    ready_rx
        .recv()
        .unwrap_or_else(|e| Err(e.to_string()))
        .map_err(|e| {
            InferenceError::Unavailable(format!("cannot create a context for `{name}`: {e}"))
        })
}
