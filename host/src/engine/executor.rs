//! The executor: runs one request on a component instance.
//!
//! Built on `wasmtime_wasi_http::handler::ProxyHandler`, which drives both
//! WASI 0.2 (`incoming-handler`) and WASI 0.3 (`handler`) components. By
//! default every request gets a fresh instance from the pre-linked
//! `InstancePre` (serverless semantics: no state leaks between requests);
//! WASI 0.3 components may opt into instance reuse in the manifest.

use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::GuestTaskId;
use wasmtime::{PoolConcurrencyLimitError, Store, StoreContextMut, UpdateDeadline};
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wasi_http::WasiBody;
use wasmtime_wasi_http::handler::{
    ExpirationError, HandlerState, Instance, InstantiationError, ProxyHandler, ProxyPre,
    ShouldAccept, WorkerExpiration, WorkerState, WorkerStatus,
};

use super::instance::{InstanceOutcome, InstanceState, LiveInstance};
use super::outbound::{AllowedHosts, OutboundHooks};
use super::{EPOCH_TICK, pre_world};
use crate::capabilities::CapabilityCtx;
use crate::capabilities::bindings::QueueWorkerPre;
use crate::capabilities::bindings::exports::lamina::platform::queue_handler::Message as QueueMessage;
use crate::capabilities::limits::Principal;
use crate::manifest::InstanceReuse;
use crate::units::ByteSize;

/// How long an idle reusable instance is kept before it is dropped.
const IDLE_INSTANCE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything about a component that does not change between requests.
#[derive(Debug, Clone)]
pub struct ComponentSpec {
    /// Component id from the manifest.
    pub id: String,
    /// `wasi:cli/environment` variables.
    pub environment: Vec<(String, String)>,
    /// Linear-memory limit per instance.
    pub memory_limit: ByteSize,
    /// Outbound HTTP grants.
    pub allowed_hosts: Arc<AllowedHosts>,
    /// Instance reuse (WASI 0.3 only); `None` = a fresh instance per request.
    pub reuse: Option<InstanceReuse>,
    /// Longest one instance may stay busy, streaming included.
    pub max_request_duration: Duration,
    /// Backends and this component's grants.
    pub capabilities: CapabilityCtx,
    /// Which exports the manifest's triggers need.
    pub exports: RequiredExports,
}

/// Exports a component must have, given the triggers that use it.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequiredExports {
    /// Routed by `[[trigger.http]]`.
    pub http: bool,
    /// Consumes a `[[trigger.queue]]` topic.
    pub queue: bool,
}

/// Per-request limits, from the matched route.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Time allowed until the response headers are ready.
    pub timeout: Duration,
    /// Longest stretch of guest code without returning to the host.
    pub execution_deadline: Duration,
}

/// Why a request failed inside the executor.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// No response headers within the route's timeout.
    #[error("the component did not respond within {0:?}")]
    Timeout(Duration),
    /// Guest code ran past the execution deadline without yielding.
    #[error("the component ran for more than {0:?} without returning to the host and was stopped")]
    DeadlineExceeded(Duration),
    /// The instance tried to grow its memory past its limit.
    #[error("the component exceeded its memory limit of {0}")]
    MemoryLimit(ByteSize),
    /// All instance slots are busy.
    #[error("the host is at its instance limit; retry shortly")]
    Overloaded,
    /// The component trapped or failed before responding.
    #[error("the component failed before responding")]
    Failed(wasmtime::Error),
    /// This version has no handler for the trigger (e.g. no HTTP export).
    #[error("the component has no handler for this trigger")]
    NoHandler,
}

impl ExecError {
    /// The HTTP status the client gets.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ExecError::Timeout(_) | ExecError::DeadlineExceeded(_) => {
                http::StatusCode::GATEWAY_TIMEOUT
            }
            ExecError::Overloaded => http::StatusCode::SERVICE_UNAVAILABLE,
            ExecError::MemoryLimit(_) | ExecError::Failed(_) | ExecError::NoHandler => {
                http::StatusCode::INTERNAL_SERVER_ERROR
            }
        }
    }
}

/// A compiled, linked component ready to serve: one deployed version.
pub struct LoadedComponent {
    stores: Arc<StoreFactory>,
    http: Option<ProxyHandler<Instantiator>>,
    queue: Option<QueueWorkerPre<InstanceState>>,
    digest: String,
    deployed_at: SystemTime,
}

impl LoadedComponent {
    pub(super) fn new(
        stores: StoreFactory,
        digest: String,
        http: Option<ProxyPre<InstanceState>>,
        queue: Option<QueueWorkerPre<InstanceState>>,
    ) -> Self {
        let stores = Arc::new(stores);
        LoadedComponent {
            http: http.map(|pre| {
                ProxyHandler::new(Instantiator {
                    stores: stores.clone(),
                    pre,
                })
            }),
            stores,
            queue,
            digest,
            deployed_at: SystemTime::now(),
        }
    }

    /// Component id.
    pub fn id(&self) -> &str {
        &self.stores.spec.id
    }

    /// SHA-256 of the wasm this version was built from.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// `wasi:http@0.2`, `wasi:http@0.3`, or `-` without an HTTP export.
    pub fn world(&self) -> &'static str {
        self.http
            .as_ref()
            .map_or("-", |h| pre_world(&h.state().pre))
    }

    /// When this version started serving.
    pub fn deployed_at(&self) -> SystemTime {
        self.deployed_at
    }

    /// Runs one queue message through a fresh instance's `queue-handler`.
    /// `Ok(Err(_))` is the handler's own error; `Err(_)` a trap, deadline or
    /// timeout. Both count as a failed attempt.
    pub async fn handle_message(
        &self,
        message: QueueMessage,
        limits: RequestLimits,
    ) -> Result<Result<(), String>, ExecError> {
        let Some(pre) = &self.queue else {
            return Err(ExecError::NoHandler);
        };
        let mut store = self.stores.new_store();
        let ticks = limits.execution_deadline.as_millis() / EPOCH_TICK.as_millis();
        store
            .data_mut()
            .watchdog
            .set_deadline(ticks.try_into().unwrap_or(u64::MAX));
        let outcome = store.data().outcome.clone();
        let run = async {
            let worker = pre.instantiate_async(&mut store).await?;
            worker
                .lamina_platform_queue_handler()
                .call_handle(&mut store, &message)
                .await
        };
        match tokio::time::timeout(limits.timeout, run).await {
            Ok(Ok(result)) => Ok(result),
            Ok(Err(_)) if outcome.deadline_exceeded() => {
                Err(ExecError::DeadlineExceeded(limits.execution_deadline))
            }
            Ok(Err(_)) if outcome.memory_exceeded() => {
                Err(ExecError::MemoryLimit(self.stores.spec.memory_limit))
            }
            Ok(Err(error)) => Err(ExecError::Failed(error)),
            Err(_) => Err(ExecError::Timeout(limits.timeout)),
        }
    }

    /// Runs `request` and returns the component's response once its headers
    /// are ready; the body keeps streaming from the instance after that.
    /// A [`Principal`] among the request's extensions is whom the
    /// instance's inference calls are made for.
    pub async fn handle(
        &self,
        mut request: http::Request<WasiBody>,
        limits: RequestLimits,
    ) -> Result<http::Response<WasiBody>, ExecError> {
        let Some(handler) = &self.http else {
            return Err(ExecError::NoHandler);
        };
        let ticket = Arc::new(Ticket {
            principal: request.extensions_mut().remove().unwrap_or_default(),
            limits,
            started: Instant::now(),
            responded: AtomicBool::new(false),
            outcome: OnceLock::new(),
        });
        let handled =
            tokio::time::timeout(limits.timeout, handler.handle(ticket.clone(), request)).await;
        // A ticket left unanswered makes `Expiration` tear the instance down.
        match handled {
            Ok(Ok(response)) => {
                ticket.responded.store(true, Ordering::Relaxed);
                Ok(response)
            }
            Ok(Err(error)) => {
                ticket.responded.store(true, Ordering::Relaxed);
                Err(self.classify(error, &ticket))
            }
            Err(_elapsed) => Err(ExecError::Timeout(limits.timeout)),
        }
    }

    fn classify(&self, error: wasmtime::Error, ticket: &Ticket) -> ExecError {
        if let Some(outcome) = ticket.outcome.get() {
            if outcome.deadline_exceeded() {
                return ExecError::DeadlineExceeded(ticket.limits.execution_deadline);
            }
            if outcome.memory_exceeded() {
                return ExecError::MemoryLimit(self.stores.spec.memory_limit);
            }
        }
        if error.is::<ExpirationError>() || ticket.started.elapsed() >= ticket.limits.timeout {
            return ExecError::Timeout(ticket.limits.timeout);
        }
        if let Some(failed) = error.downcast_ref::<InstantiationError<Arc<Ticket>>>()
            && failed
                .error
                .chain()
                .any(|cause| cause.is::<PoolConcurrencyLimitError>())
        {
            return ExecError::Overloaded;
        }
        ExecError::Failed(error)
    }
}

/// Request data threaded through the handler into the instance that serves
/// it, so the request can learn what happened to that instance.
pub struct Ticket {
    /// Whom the request is served for.
    principal: Principal,
    limits: RequestLimits,
    started: Instant,
    /// Set once the client has its response headers (or an error).
    responded: AtomicBool,
    outcome: OnceLock<Arc<InstanceOutcome>>,
}

impl Ticket {
    /// When this request must have its response headers, if it still waits.
    fn pending_deadline(&self) -> Option<Instant> {
        (!self.responded.load(Ordering::Relaxed)).then(|| self.started + self.limits.timeout)
    }
}

/// The requests an instance has accepted, shared by its `Worker` (which adds
/// them) and its `Expiration` (which enforces their timeouts).
type Tickets = Arc<Mutex<Vec<Arc<Ticket>>>>;

/// Creates the stores of one component version, each with its limits,
/// watchdog and capabilities.
pub struct StoreFactory {
    spec: ComponentSpec,
    engine: wasmtime::Engine,
    clock: Arc<AtomicU64>,
    /// `lamina_instances{component}`, resolved once.
    instances: metrics::Gauge,
}

impl StoreFactory {
    pub(super) fn new(
        spec: ComponentSpec,
        engine: wasmtime::Engine,
        clock: Arc<AtomicU64>,
    ) -> Self {
        let instances = metrics::gauge!("lamina_instances", "component" => spec.id.clone());
        StoreFactory {
            spec,
            engine,
            clock,
            instances,
        }
    }

    fn new_store(&self) -> Store<InstanceState> {
        let mut wasi = WasiCtxBuilder::new();
        wasi.inherit_stdout().inherit_stderr();
        for (key, value) in &self.spec.environment {
            wasi.env(key, value);
        }
        let state = InstanceState::new(
            wasi.build(),
            OutboundHooks::new(self.spec.allowed_hosts.clone()),
            self.spec.capabilities.clone(),
            self.spec.memory_limit.bytes() as usize,
            self.clock.clone(),
            LiveInstance::new(self.instances.clone()),
        );
        let mut store = Store::new(&self.engine, state);
        store.limiter(|state| &mut state.limiter);
        store.call_hook(|mut store, hook| {
            store.data_mut().watchdog.on_call_hook(hook);
            Ok(())
        });
        store.epoch_deadline_callback(|mut store| {
            let state = store.data_mut();
            if state.watchdog.on_epoch(&state.outcome) {
                Ok(UpdateDeadline::Interrupt)
            } else {
                // Yield so a busy guest cannot starve other requests.
                Ok(UpdateDeadline::Yield(1))
            }
        });
        store.set_epoch_deadline(1);
        store
    }
}

/// Creates instances for one component version's HTTP handler (`HandlerState`).
struct Instantiator {
    stores: Arc<StoreFactory>,
    pre: ProxyPre<InstanceState>,
}

impl HandlerState for Instantiator {
    type StoreData = InstanceState;
    type WorkerExpiration = Expiration;
    type WorkerState = Worker;

    async fn instantiate(&self) -> wasmtime::Result<Instance<InstanceState, Expiration, Worker>> {
        let mut store = self.stores.new_store();
        let proxy = self.pre.instantiate_async(&mut store).await?;
        let spec = &self.stores.spec;
        let (max_requests, max_concurrent) = match (&self.pre, spec.reuse) {
            (ProxyPre::P3(_), Some(reuse)) => (reuse.max_requests, reuse.max_concurrent),
            _ => (1, 1),
        };
        let tickets = Tickets::default();
        Ok(Instance {
            store,
            proxy,
            view: wasmtime_wasi_http::WasiHttpView::http,
            expiration: Expiration {
                max_duration: spec.max_request_duration,
                tickets: tickets.clone(),
                sleep: Box::pin(tokio::time::sleep(IDLE_INSTANCE_TIMEOUT)),
            },
            state: Worker {
                max_requests,
                max_concurrent,
                tickets,
            },
        })
    }
}

/// Per-instance acceptance policy (`WorkerState`).
struct Worker {
    max_requests: usize,
    max_concurrent: usize,
    tickets: Tickets,
}

impl WorkerState for Worker {
    type StoreData = InstanceState;
    type RequestData = Arc<Ticket>;

    fn should_accept_request(&self, concurrent: usize, total: usize) -> ShouldAccept {
        if total >= self.max_requests {
            ShouldAccept::Never
        } else if concurrent >= self.max_concurrent {
            ShouldAccept::No
        } else {
            ShouldAccept::Yes
        }
    }

    fn on_request_start(
        &self,
        mut store: StoreContextMut<'_, InstanceState>,
        ticket: Arc<Ticket>,
        _task: GuestTaskId,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + Sync>> {
        let ticks = ticket.limits.execution_deadline.as_millis() / EPOCH_TICK.as_millis();
        let state = store.data_mut();
        state
            .watchdog
            .set_deadline(ticks.try_into().unwrap_or(u64::MAX));
        let _ = ticket.outcome.set(state.outcome.clone());
        // A reused instance may still run an earlier request's work (a
        // WASI 0.3 guest keeps going after its response starts).
        state.serve(if self.max_requests > 1 {
            Principal::Unattributable
        } else {
            ticket.principal.clone()
        });
        let timeout = ticket.limits.timeout;
        let mut tickets = self.tickets.lock().unwrap_or_else(|e| e.into_inner());
        tickets.retain(|t| !t.responded.load(Ordering::Relaxed));
        tickets.push(ticket);
        Box::pin(tokio::time::sleep(timeout))
    }

    fn drop(&self, store: Store<InstanceState>, result: wasmtime::Result<()>) {
        if let Err(error) = result {
            tracing::debug!("instance ended with an error: {error:?}");
        }
        drop(store);
    }
}

/// When an instance must be torn down (`WorkerExpiration`): after
/// [`IDLE_INSTANCE_TIMEOUT`] idle, `max_request_duration` busy, or as soon as
/// a request it accepted passes its timeout without response headers. The
/// last one is what stops a guest stuck in a host call: the callback
/// `on_request_start` returns is polled inside the instance's event loop,
/// which may not run while the guest blocks, but this is polled outside it.
struct Expiration {
    max_duration: Duration,
    tickets: Tickets,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl WorkerExpiration for Expiration {
    fn poll(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        status: WorkerStatus,
        since: Instant,
    ) -> Poll<()> {
        let this = self.get_mut();
        let limit = match status {
            WorkerStatus::Idle => IDLE_INSTANCE_TIMEOUT,
            WorkerStatus::Requests | WorkerStatus::PostReturn => this.max_duration,
        };
        let unanswered = match status {
            WorkerStatus::Idle => None,
            WorkerStatus::Requests | WorkerStatus::PostReturn => {
                let tickets = this.tickets.lock().unwrap_or_else(|e| e.into_inner());
                tickets.iter().filter_map(|t| t.pending_deadline()).min()
            }
        };
        let Some(deadline) = since.checked_add(limit).into_iter().chain(unanswered).min() else {
            return Poll::Pending;
        };
        let deadline = tokio::time::Instant::from_std(deadline);
        if this.sleep.deadline() != deadline {
            this.sleep.as_mut().reset(deadline);
        }
        this.sleep.as_mut().poll(cx)
    }
}
