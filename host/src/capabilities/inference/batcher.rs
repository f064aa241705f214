//! Continuous batching: one thread per loaded text model owns its llama.cpp
//! context and decodes every running sequence together, one step at a time.
//!
//! Each step puts one token of every generating sequence, plus as much of
//! waiting prompts as fits, into a single batch, so concurrent requests
//! share the weight reads that dominate CPU decoding instead of competing
//! for cores with contexts of their own (docs/inference.md has the numbers).
//! A sequence joins at the next step after it arrives and leaves as soon as
//! it finishes or its reader goes away, freeing its slot and KV cells.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use tokio::sync::mpsc::UnboundedSender;

use super::output::Output;
use super::sampling::Sampling;

/// One sequence to generate.
pub struct Job {
    /// The prompt, tokenized (never empty, shorter than `context`).
    pub prompt: Vec<LlamaToken>,
    pub sampling: Sampling,
    /// Most tokens to generate.
    pub num_predict: Option<u32>,
    pub stop: Vec<String>,
    /// Positions this sequence may use (prompt + output).
    pub context: u32,
    /// Where text and the final statistics go.
    pub events: UnboundedSender<Event>,
    /// Set when the reader is gone or cancels.
    pub cancel: Arc<AtomicBool>,
    /// Set (before `cancel` is next read) once the job has a slot: a job
    /// cancelled before then ran nothing.
    pub admitted: Arc<AtomicBool>,
    /// When the request arrived (for `total`).
    pub started: Instant,
    /// Time this request spent loading the model.
    pub load: Duration,
}

/// What a sequence reports to its reader.
#[derive(Debug)]
pub enum Event {
    /// Generated text.
    Text(String),
    /// The end.
    Done(Stats),
    /// The engine failed; nothing follows.
    Failed(String),
}

/// Why a sequence ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DoneReason {
    Stop,
    Length,
    Cancelled,
}

/// A finished sequence's counts and timings.
#[derive(Debug, Clone)]
pub struct Stats {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
    pub load: Duration,
    pub prompt: Duration,
    pub eval: Duration,
    pub total: Duration,
    pub reason: DoneReason,
}

impl Stats {
    /// Tokens it counts against a budget: prompt and completion.
    pub fn tokens(&self) -> u64 {
        u64::from(self.prompt_tokens) + u64::from(self.completion_tokens)
    }

    /// A generation cancelled before it had a slot: nothing ran.
    pub fn unstarted(started: Instant, load: Duration) -> Stats {
        Stats {
            prompt_tokens: 0,
            completion_tokens: 0,
            load,
            prompt: Duration::ZERO,
            eval: Duration::ZERO,
            total: started.elapsed(),
            reason: DoneReason::Cancelled,
        }
    }
}

/// Fixed shape of a worker's context.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Sequences decoded together.
    pub parallel: u32,
    /// Tokens per decode step.
    pub batch: u32,
}

/// A sequence in a slot.
struct Slot {
    id: i32,
    job: Job,
    sampler: LlamaSampler,
    /// Constrains tokens to the request's `format`; fed only what is
    /// generated (never the prompt).
    grammar: Option<LlamaSampler>,
    output: Output,
    /// Prompt tokens already in the KV cache.
    fed: usize,
    /// The token to feed next, once the prompt is in.
    next: Option<LlamaToken>,
    /// Next position.
    pos: i32,
    generated: u32,
    /// This step's logits row, if the sequence is in the batch with one.
    row: Option<i32>,
    admitted: Instant,
    first_token: Option<Instant>,
}

/// Runs until `jobs` is closed and every running sequence has finished.
/// `gate` is held for each decode step only, so models loaded side by side
/// take turns instead of oversubscribing the cores.
pub fn run(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    jobs: Receiver<Job>,
    shape: Shape,
    gate: &Mutex<()>,
) {
    let vocab = model.vocab();
    let n_vocab = model.n_vocab();
    let mut slots: Vec<Option<Slot>> = (0..shape.parallel).map(|_| None).collect();
    let mut batch = LlamaBatch::new(shape.batch as usize, 1);
    let mut open = true;
    loop {
        // Admit: block when idle, otherwise take what is waiting.
        if slots.iter().all(Option::is_none) {
            if !open {
                return;
            }
            match jobs.recv() {
                Ok(job) => admit(&mut slots, job, model, n_vocab),
                Err(_) => return,
            }
        }
        while open && slots.iter().any(Option::is_none) {
            match jobs.try_recv() {
                Ok(job) => admit(&mut slots, job, model, n_vocab),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => open = false,
            }
        }
        for slot in &mut slots {
            if slot
                .as_ref()
                .is_some_and(|s| s.job.cancel.load(Ordering::SeqCst) || s.job.events.is_closed())
            {
                let s = slot.take().unwrap();
                finish(ctx, s, DoneReason::Cancelled);
            }
        }

        // One step: a token for every generating sequence, then prompts.
        batch.clear();
        let mut room = shape.batch as usize;
        for s in slots.iter_mut().flatten() {
            s.row = None;
            if let Some(token) = s.next {
                batch
                    .add(token, s.pos, &[s.id], true)
                    .expect("room for one token per slot");
                s.row = Some(batch.n_tokens() - 1);
                s.pos += 1;
                room -= 1;
            }
        }
        for s in slots.iter_mut().flatten() {
            if s.next.is_some() || room == 0 {
                continue;
            }
            let take = (s.job.prompt.len() - s.fed).min(room);
            for i in 0..take {
                let last = s.fed + i + 1 == s.job.prompt.len();
                batch
                    .add(s.job.prompt[s.fed + i], s.pos, &[s.id], last)
                    .expect("room checked");
                s.pos += 1;
                if last {
                    s.row = Some(batch.n_tokens() - 1);
                }
            }
            s.fed += take;
            room -= take;
        }
        if batch.n_tokens() == 0 {
            continue;
        }
        let decoded = {
            let _turn = gate.lock().unwrap_or_else(|e| e.into_inner());
            ctx.decode(&mut batch)
        };
        if let Err(e) = decoded {
            tracing::error!(error = %e, "llama.cpp decode failed");
            for slot in &mut slots {
                if let Some(s) = slot.take_if(|s| s.row.is_some() || s.fed > 0) {
                    let _ = s
                        .job
                        .events
                        .send(Event::Failed(format!("decoding failed: {e}")));
                    release(ctx, s.id);
                }
            }
            continue;
        }

        // Sample every sequence that has a logits row this step.
        for slot in &mut slots {
            let Some(s) = slot.as_mut() else { continue };
            let Some(row) = s.row else { continue };
            let token = match s.grammar.as_mut() {
                None => s.sampler.sample(ctx, row),
                Some(grammar) => {
                    let mut candidates = ctx.token_data_array_ith(row);
                    candidates.apply_sampler(grammar);
                    candidates.apply_sampler(&mut s.sampler);
                    let token = candidates
                        .selected_token()
                        .expect("the chain ends in a selecting sampler");
                    grammar.accept(token);
                    s.sampler.accept(token);
                    token
                }
            };
            let now = Instant::now();
            s.first_token.get_or_insert(now);
            if vocab.is_eog(token) {
                let s = slot.take().unwrap();
                finish(ctx, s, DoneReason::Stop);
                continue;
            }
            s.generated += 1;
            let step = s.output.push(&vocab.token_to_piece(token, false, None));
            if !step.text.is_empty() {
                let _ = s.job.events.send(Event::Text(step.text));
            }
            let full = s.pos as u32 >= s.job.context;
            let enough = s.job.num_predict.is_some_and(|n| s.generated >= n);
            if step.stopped {
                let s = slot.take().unwrap();
                finish(ctx, s, DoneReason::Stop);
            } else if full || enough {
                let s = slot.take().unwrap();
                finish(ctx, s, DoneReason::Length);
            } else {
                s.next = Some(token);
            }
        }
    }
}

/// Puts `job` into a free slot (the caller checked there is one), or
/// finishes it at once when it asks for no tokens.
fn admit(slots: &mut [Option<Slot>], job: Job, model: &LlamaModel, n_vocab: i32) {
    job.admitted.store(true, Ordering::SeqCst);
    // Cancelled while it waited (its reader already has zero counts):
    // nothing to build or evaluate.
    if job.cancel.load(Ordering::SeqCst) || job.events.is_closed() {
        let stats = Stats::unstarted(job.started, job.load);
        super::metrics::finished(&stats);
        let _ = job.events.send(Event::Done(stats));
        return;
    }
    let (id, free) = slots
        .iter_mut()
        .enumerate()
        .find(|(_, s)| s.is_none())
        .expect("a free slot");
    let grammar = match job.sampling.grammar_sampler(model) {
        Ok(grammar) => grammar,
        Err(e) => {
            let _ = job.events.send(Event::Failed(e));
            return;
        }
    };
    let mut sampler = job.sampling.sampler(n_vocab, job.context);
    sampler.accept_many(&job.prompt);
    let output = Output::new(job.stop.clone());
    let now = Instant::now();
    if job.num_predict == Some(0) {
        let stats = Stats {
            // Nothing was evaluated.
            prompt_tokens: 0,
            completion_tokens: 0,
            load: job.load,
            prompt: Duration::ZERO,
            eval: Duration::ZERO,
            total: job.started.elapsed(),
            reason: DoneReason::Length,
        };
        let _ = job.events.send(Event::Done(stats));
        return;
    }
    *free = Some(Slot {
        id: id as i32,
        job,
        sampler,
        grammar,
        output,
        fed: 0,
        next: None,
        pos: 0,
        generated: 0,
        row: None,
        admitted: now,
        first_token: None,
    });
}

/// Sends what is left and the statistics, and frees the slot's KV cells.
fn finish(ctx: &mut LlamaContext<'_>, mut s: Slot, reason: DoneReason) {
    let now = Instant::now();
    // Text held back in case it began a stop string is the model's output
    // after all (after a matched stop string nothing is held).
    if reason != DoneReason::Cancelled {
        let rest = s.output.flush();
        if !rest.is_empty() {
            let _ = s.job.events.send(Event::Text(rest));
        }
    }
    let first = s.first_token.unwrap_or(now);
    let stats = Stats {
        // What was evaluated: all of it, unless cancelled part-way.
        prompt_tokens: s.fed as u32,
        completion_tokens: s.generated,
        load: s.job.load,
        prompt: first - s.admitted,
        eval: now - first,
        total: s.job.started.elapsed(),
        reason,
    };
    super::metrics::finished(&stats);
    let _ = s.job.events.send(Event::Done(stats));
    release(ctx, s.id);
}

/// Forgets sequence `id`'s KV cells so the slot starts clean.
fn release(ctx: &mut LlamaContext<'_>, id: i32) {
    if let Err(e) = ctx.clear_kv_cache_seq(Some(id as u32), None, None) {
        tracing::error!(error = %e, "cannot clear a finished sequence");
    }
}
