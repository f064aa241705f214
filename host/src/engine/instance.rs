//! Per-instance state (the `T` of `Store<T>`) and the two guards every
//! instance runs under: a memory limiter and an execution watchdog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use wasmtime::component::ResourceTable;
use wasmtime::{CallHook, ResourceLimiter};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::outbound::OutboundHooks;
use crate::capabilities::limits::Principal;
use crate::capabilities::{CapabilityCtx, CapabilityView};

/// What happened to an instance, read by the request that used it after a
/// failure to tell a deadline (504) from a memory limit or trap (500).
#[derive(Debug, Default)]
pub struct InstanceOutcome {
    deadline_exceeded: AtomicBool,
    memory_exceeded: AtomicBool,
}

impl InstanceOutcome {
    /// The watchdog stopped the instance.
    pub fn deadline_exceeded(&self) -> bool {
        self.deadline_exceeded.load(Ordering::Relaxed)
    }

    /// The instance tried to grow its memory past its limit.
    pub fn memory_exceeded(&self) -> bool {
        self.memory_exceeded.load(Ordering::Relaxed)
    }
}

/// Store data of one component instance.
pub struct InstanceState {
    wasi: WasiCtx,
    http: WasiHttpCtx,
    table: ResourceTable,
    hooks: OutboundHooks,
    capabilities: CapabilityCtx,
    pub(super) limiter: MemoryLimiter,
    pub(super) watchdog: Watchdog,
    pub(super) outcome: Arc<InstanceOutcome>,
    _live: LiveInstance,
}

/// Counts one live instance in the `lamina_instances` gauge of its
/// component, from store creation until the store is dropped.
pub(super) struct LiveInstance(metrics::Gauge);

impl LiveInstance {
    /// Counts an instance in `gauge` (a clone of the component's handle).
    pub(super) fn new(gauge: metrics::Gauge) -> Self {
        gauge.increment(1.0);
        LiveInstance(gauge)
    }
}

impl Drop for LiveInstance {
    fn drop(&mut self) {
        self.0.decrement(1.0);
    }
}

impl InstanceState {
    pub(super) fn new(
        wasi: WasiCtx,
        hooks: OutboundHooks,
        capabilities: CapabilityCtx,
        memory_limit: usize,
        clock: Arc<AtomicU64>,
        live: LiveInstance,
    ) -> Self {
        let outcome = Arc::new(InstanceOutcome::default());
        InstanceState {
            wasi,
            http: WasiHttpCtx::new(),
            table: ResourceTable::new(),
            hooks,
            capabilities,
            limiter: MemoryLimiter {
                max_bytes: memory_limit,
                outcome: outcome.clone(),
            },
            watchdog: Watchdog::new(clock),
            outcome,
            _live: live,
        }
    }
}

impl InstanceState {
    /// Makes this instance's inference calls for `principal`.
    pub(super) fn serve(&mut self, principal: Principal) {
        self.capabilities.serve(principal);
    }

    /// The `lamina:platform` capabilities as the generated host traits see them.
    pub fn capabilities(&mut self) -> CapabilityView<'_> {
        CapabilityView::new(&self.capabilities, &mut self.table)
    }
}

impl WasiView for InstanceState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for InstanceState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Caps an instance's linear memory. A refused `memory.grow` returns -1 to
/// the guest, whose allocator then aborts: the request fails with 500 and
/// the outcome records why.
pub(super) struct MemoryLimiter {
    max_bytes: usize,
    outcome: Arc<InstanceOutcome>,
}

/// Upper bound on table elements; generous, it only stops runaway growth.
const MAX_TABLE_ELEMENTS: usize = 1 << 20;

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.max_bytes {
            self.outcome.memory_exceeded.store(true, Ordering::Relaxed);
            return Ok(false);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

/// Measures how long the guest has run *without returning to the host*.
///
/// A deadline on wall-clock time would cut off streams that legitimately
/// spend minutes waiting in host calls (inference, timers); what must be
/// stopped is guest code that never yields. The call hook records the epoch
/// tick at which the guest last resumed from a host call; the epoch callback
/// (every [`super::EPOCH_TICK`] of guest execution) compares that stretch
/// with the deadline. The epoch check is itself a host call, so the return
/// from it must not count as progress.
pub(super) struct Watchdog {
    clock: Arc<AtomicU64>,
    resumed_at: u64,
    deadline_ticks: u64,
    in_epoch_check: bool,
}

impl Watchdog {
    fn new(clock: Arc<AtomicU64>) -> Self {
        Watchdog {
            clock,
            resumed_at: 0,
            deadline_ticks: u64::MAX,
            in_epoch_check: false,
        }
    }

    /// Sets the deadline for the request now starting on this instance.
    pub(super) fn set_deadline(&mut self, ticks: u64) {
        self.deadline_ticks = ticks.max(1);
    }

    /// Tracks transitions between host and guest code.
    pub(super) fn on_call_hook(&mut self, hook: CallHook) {
        match hook {
            CallHook::CallingWasm => self.resumed_at = self.clock.load(Ordering::Relaxed),
            CallHook::ReturningFromHost if self.in_epoch_check => self.in_epoch_check = false,
            CallHook::ReturningFromHost => self.resumed_at = self.clock.load(Ordering::Relaxed),
            CallHook::CallingHost | CallHook::ReturningFromWasm => {}
        }
    }

    /// Called from the epoch callback, i.e. while guest code is running.
    /// Returns whether it has run past the deadline, and marks the outcome so
    /// the request can answer 504.
    pub(super) fn on_epoch(&mut self, outcome: &InstanceOutcome) -> bool {
        self.in_epoch_check = true;
        let running = self
            .clock
            .load(Ordering::Relaxed)
            .saturating_sub(self.resumed_at);
        let expired = running > self.deadline_ticks;
        if expired {
            outcome.deadline_exceeded.store(true, Ordering::Relaxed);
        }
        expired
    }
}
