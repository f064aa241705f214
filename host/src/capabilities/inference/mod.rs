//! The `inference` capability: llama.cpp in-process, exposed to components
//! through `lamina:platform/inference`.
//!
//! - [`store`]: installed models (`name:tag` → a verified GGUF file);
//! - [`pulls`]: installs running in the background, resumed after a restart;
//! - [`engine`]: which models are in memory (load on first use,
//!   `keep_alive`, LRU under a memory budget);
//! - [`batcher`]: continuous batching of a text model's sequences;
//! - [`embed`]: embedding models;
//! - [`sampling`] and [`output`]: a request's options and its text.
//!
//! [`Inference`] ties them together for the WIT host functions and the
//! `lamina models` CLI.

pub mod batcher;
pub mod egress;
pub mod embed;
pub mod engine;
pub mod gguf;
mod metrics;
pub mod output;
pub mod pulls;
pub mod sampling;
pub mod store;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use serde::Deserialize;
use tokio::sync::mpsc::UnboundedReceiver;
use wasmtime::component::Resource;

use self::batcher::{DoneReason, Event, Stats};
use self::egress::Egress;
use self::engine::{Engine, Lease, LoadedInfo};
use self::pulls::{PullState, PullStatus, Pulls};
use self::sampling::RawOptions;
use self::store::{ModelEntry, ModelStore};
use super::bindings::lamina::platform::inference as wit;
use super::limits::{Policy, Principal, Reservation};
use super::{CapabilityCtx, CapabilityView};
use crate::units::ByteSize;

/// Longest prompt (or sum of chat messages) in bytes.
pub const MAX_PROMPT_BYTES: usize = 4 << 20;
/// Most chat messages in one request.
pub const MAX_MESSAGES: usize = 1000;

/// `[inference]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InferenceConfig {
    /// Where installed models live (default `<data dir>/models`).
    pub models_dir: Option<PathBuf>,
    /// Threads llama.cpp decodes with (default: every core).
    pub threads: Option<usize>,
    /// Sequences of one model decoded together (continuous batching).
    pub parallel: u32,
    /// Context tokens each sequence may use (prompt + output): the
    /// largest `num_ctx` a request may ask for.
    pub context: u32,
    /// Tokens per decode step (prompt chunks share it with generating
    /// sequences).
    pub batch: u32,
    /// How long a model stays loaded after its last request, unless the
    /// request says otherwise.
    #[serde(with = "humantime_serde")]
    pub keep_alive: Duration,
    /// Memory budget for loaded model weights; the least recently used idle
    /// model is unloaded to make room.
    pub max_loaded_size: ByteSize,
    /// Hosts components may pull models from by URL: `*` (any), a host
    /// name, or `*.example.com` for its subdomains. None by default:
    /// components pull registered sources only. `lamina models pull` is
    /// not limited.
    pub pull_hosts: Vec<String>,
    /// Non-public addresses (loopback, private, link-local) the host's
    /// pulls may reach, such as an internal mirror: none by default, so a
    /// pull cannot probe the host's network (see `egress`).
    pub allowed_private_sources: Vec<std::net::IpAddr>,
    /// Models that can be pulled by name alone (`ollama pull NAME`, or a
    /// component's `pull-model` without a source): `name:tag` → where its
    /// GGUF is and its SHA-256. Chosen by the operator, so `pull_hosts`
    /// does not limit them.
    pub sources: BTreeMap<String, ModelSource>,
}

/// A registered model source (`[inference.sources."name:tag"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSource {
    /// The GGUF file's http(s) URL.
    pub url: String,
    /// Its SHA-256 (hex), which every pull of it is checked against.
    pub sha256: String,
}

impl Default for InferenceConfig {
    fn default() -> Self {
        InferenceConfig {
            models_dir: None,
            threads: None,
            parallel: 4,
            context: 2048,
            batch: 512,
            keep_alive: Duration::from_secs(300),
            max_loaded_size: ByteSize::mib(8 << 10),
            pull_hosts: Vec::new(),
            allowed_private_sources: Vec::new(),
            sources: BTreeMap::new(),
        }
    }
}

impl InferenceConfig {
    /// Checks ranges; `Err` names the key.
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=64).contains(&self.parallel) {
            return Err("inference.parallel must be between 1 and 64".into());
        }
        if !(64..=1 << 20).contains(&self.context) {
            return Err("inference.context must be between 64 and 1048576".into());
        }
        if !(self.parallel..=8192).contains(&self.batch) {
            // Every running sequence puts one token in each step's batch.
            return Err("inference.batch must be between inference.parallel and 8192".into());
        }
        if self.threads == Some(0) {
            return Err("inference.threads must be at least 1".into());
        }
        if let Some(bad) = self.pull_hosts.iter().find(|h| {
            let name = h.strip_prefix("*.").unwrap_or(h);
            name.is_empty() || (h.as_str() != "*" && name.contains(['*', '/', ':', ' ']))
        }) {
            return Err(format!(
                "inference.pull_hosts: `{bad}` is not `*`, a host name or `*.domain`"
            ));
        }
        let mut registered = BTreeSet::new();
        for (name, source) in &self.sources {
            let key = format!("inference.sources.\"{name}\"");
            let canonical = store::canonical_name(name).map_err(|e| format!("{key}: {e}"))?;
            if !registered.insert(canonical.clone()) {
                return Err(format!("{key}: `{canonical}` is registered twice"));
            }
            store::check_sha256(&source.sha256).map_err(|e| format!("{key}.sha256: {e}"))?;
            if !reqwest::Url::parse(&source.url)
                .is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host_str().is_some())
            {
                return Err(format!("{key}.url must be an http(s) URL"));
            }
        }
        Ok(())
    }

    /// Where to pull `name` from: `source` (an http(s) URL `pull_hosts`
    /// allows, checked against `sha256` if given), or without it the
    /// source registered for `name`.
    pub fn pull_source(
        &self,
        name: &str,
        source: Option<String>,
        sha256: Option<String>,
    ) -> Result<(String, Option<String>), InferenceError> {
        if let Some(url) = source {
            // The URL as parsed (scheme and host lower-cased, `http:/x`
            // made `http://x/`), so later steps see what was checked.
            let url = self.may_pull_from(&url)?;
            return Ok((url, sha256));
        }
        let wanted = store::canonical_name(name)?;
        let registered = self
            .sources
            .iter()
            .find(|(key, _)| store::canonical_name(key).is_ok_and(|key| key == wanted))
            .map(|(_, source)| source)
            .ok_or_else(|| {
                InferenceError::NoSuchModel(format!(
                    "no source is registered for `{wanted}`: give the GGUF's http(s) URL as \
                     the source (runtime-config [inference.sources] registers names)"
                ))
            })?;
        let expected = store::check_sha256(&registered.sha256)?;
        if let Some(given) = sha256
            && store::check_sha256(&given)? != expected
        {
            return Err(InferenceError::Invalid(format!(
                "sha256 differs from the one registered for `{wanted}`"
            )));
        }
        Ok((registered.url.clone(), Some(expected)))
    }

    /// Whether a component may pull from `url` (an http(s) URL, any case);
    /// returns it normalized.
    pub fn may_pull_from(&self, url: &str) -> Result<String, InferenceError> {
        // The URL parser lower-cases the scheme.
        let parsed = reqwest::Url::parse(url)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https"));
        let Some(host) = parsed.as_ref().and_then(|u| u.host_str()) else {
            return Err(InferenceError::Invalid(
                "the source must be an http(s) URL".to_owned(),
            ));
        };
        let host = host.to_ascii_lowercase();
        let allowed = self.pull_hosts.iter().any(|pattern| {
            pattern == "*"
                || pattern.eq_ignore_ascii_case(&host)
                || pattern.strip_prefix("*.").is_some_and(|domain| {
                    host.strip_suffix(&domain.to_ascii_lowercase())
                        .is_some_and(|sub| sub.ends_with('.'))
                })
        });
        if allowed {
            Ok(parsed.map(|u| u.to_string()).unwrap_or_default())
        } else {
            Err(InferenceError::Invalid(format!(
                "this host does not pull models from {host} (runtime-config [inference] pull_hosts)"
            )))
        }
    }
}

/// Why an inference call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum InferenceError {
    #[error("{0}")]
    NoSuchModel(String),
    #[error("{0}")]
    Invalid(String),
    /// The model is running requests (removal refused).
    #[error("{0}")]
    InUse(String),
    #[error("{0}")]
    Unavailable(String),
}

/// What to generate from.
pub enum Prompt {
    /// Plain text, continued as is.
    Raw(String),
    /// `(role, content)` messages, through the model's chat template.
    Chat(Vec<(String, String)>),
}

/// The model store, its pulls and the engine.
pub struct Inference {
    store: ModelStore,
    pulls: Arc<Pulls>,
    engine: Engine,
    config: InferenceConfig,
}

impl Inference {
    /// Opens the store in `models_dir`, pulling under `egress`; nothing
    /// is loaded until used. Must run inside the Tokio runtime (it starts
    /// the unload task).
    pub fn open(config: &InferenceConfig, models_dir: PathBuf, egress: Egress) -> Inference {
        let store = ModelStore::new(models_dir.clone(), egress);
        Inference {
            pulls: Pulls::new(store.clone(), &models_dir),
            store,
            engine: Engine::new(config.clone()),
            config: config.clone(),
        }
    }

    /// The installed models.
    pub fn store(&self) -> &ModelStore {
        &self.store
    }

    /// Installs in progress.
    pub fn pulls(&self) -> &Arc<Pulls> {
        &self.pulls
    }

    /// The models in memory.
    pub fn loaded(&self) -> Vec<LoadedInfo> {
        self.engine.loaded()
    }

    /// Starts generating on `model`; read the result with
    /// [`Generation::next`].
    pub async fn generate(
        &self,
        model: &str,
        prompt: Prompt,
        options: RawOptions,
    ) -> Result<Generation, InferenceError> {
        self.prepare(model, prompt, options).await?.start()
    }

    /// Checks, loads and tokenizes a generation without starting it, so
    /// its cost is known first ([`Prepared::max_tokens`]).
    pub async fn prepare(
        &self,
        model: &str,
        prompt: Prompt,
        options: RawOptions,
    ) -> Result<Prepared, InferenceError> {
        let started = Instant::now();
        let options = options.validate()?;
        let size = match &prompt {
            Prompt::Raw(text) => text.len(),
            Prompt::Chat(messages) => {
                if messages.len() > MAX_MESSAGES {
                    return Err(InferenceError::Invalid(format!(
                        "at most {MAX_MESSAGES} messages (got {})",
                        messages.len()
                    )));
                }
                messages.iter().map(|(_, c)| c.len()).sum()
            }
        };
        if size > MAX_PROMPT_BYTES {
            return Err(InferenceError::Invalid(format!(
                "the prompt is {size} bytes; at most {MAX_PROMPT_BYTES}"
            )));
        }
        let context = options.num_ctx.unwrap_or(self.config.context);
        if context > self.config.context {
            return Err(InferenceError::Invalid(format!(
                "num_ctx {context} exceeds this host's per-request context of {} tokens \
                 (runtime-config [inference] context)",
                self.config.context
            )));
        }
        let (lease, load) = self.lease(model, options.keep_alive).await?;
        let llama = &lease.model.model;
        let text = match prompt {
            Prompt::Raw(text) => text,
            Prompt::Chat(messages) => {
                apply_template(llama, &lease.model.entry.metadata.family, &messages)?
            }
        };
        let tokens = tokenize(llama, &text);
        if tokens.is_empty() {
            return Err(InferenceError::Invalid("the prompt is empty".to_owned()));
        }
        if tokens.len() >= context as usize {
            return Err(InferenceError::Invalid(format!(
                "the prompt is {} tokens; it must be shorter than the context of {context} tokens",
                tokens.len()
            )));
        }
        Ok(Prepared {
            lease,
            prompt: tokens,
            sampling: options.sampling,
            num_predict: options.num_predict,
            stop: options.stop,
            context,
            started,
            load,
        })
    }

    /// One unit vector per input, from an embedding model.
    pub async fn embed(
        &self,
        model: &str,
        inputs: Vec<String>,
    ) -> Result<Vec<Vec<f32>>, InferenceError> {
        if inputs.len() > embed::MAX_INPUTS {
            return Err(InferenceError::Invalid(format!(
                "at most {} inputs (got {})",
                embed::MAX_INPUTS,
                inputs.len()
            )));
        }
        let size: usize = inputs.iter().map(String::len).sum();
        if size > MAX_PROMPT_BYTES {
            return Err(InferenceError::Invalid(format!(
                "the inputs are {size} bytes; at most {MAX_PROMPT_BYTES}"
            )));
        }
        let (lease, _) = self.lease(model, None).await?;
        if inputs.is_empty() {
            return Ok(Vec::new());
        }
        let (reply, vectors) = tokio::sync::oneshot::channel();
        lease.embed(embed::Job { inputs, reply })?;
        vectors
            .await
            .map_err(|_| InferenceError::Unavailable("the embedding worker stopped".to_owned()))?
            .map_err(InferenceError::Unavailable)
    }

    /// How many tokens `text` is, by `model`'s tokenizer (no special tokens).
    pub async fn count_tokens(&self, model: &str, text: &str) -> Result<u32, InferenceError> {
        if text.len() > MAX_PROMPT_BYTES {
            return Err(InferenceError::Invalid(format!(
                "the text is {} bytes; at most {MAX_PROMPT_BYTES}",
                text.len()
            )));
        }
        let (lease, _) = self.lease(model, None).await?;
        let tokens = lease
            .model
            .model
            .vocab()
            .tokenize(text.as_bytes(), false, false);
        Ok(tokens.len() as u32)
    }

    /// Uninstalls `name`; refused while requests run on it.
    pub fn remove(&self, name: &str) -> Result<ModelEntry, InferenceError> {
        let name = store::canonical_name(name)?;
        self.store.get(&name)?;
        self.engine.unload(&name)?;
        self.store.remove(&name)
    }

    async fn lease(
        &self,
        model: &str,
        keep_alive: Option<sampling::KeepAlive>,
    ) -> Result<(Lease, Duration), InferenceError> {
        let entry = self.store.get(model)?;
        let path = self.store.path(&entry);
        self.engine.acquire(&entry, &path, keep_alive).await
    }
}

/// The prompt as the model's chat template lays it out, ending with the
/// assistant's turn. A GGUF without a template (base models often have
/// none) gets llama.cpp's built-in template for its family when there is
/// one (`gemma3` → `gemma`), else ChatML.
fn apply_template(
    model: &LlamaModel,
    family: &str,
    messages: &[(String, String)],
) -> Result<String, InferenceError> {
    let mut chat = Vec::with_capacity(messages.len());
    for (role, content) in messages {
        if !["system", "user", "assistant", "tool"].contains(&role.as_str()) {
            return Err(InferenceError::Invalid(format!(
                "unknown role `{}`: use system, user, assistant or tool",
                role.escape_debug()
            )));
        }
        chat.push(
            LlamaChatMessage::new(role.clone(), content.clone()).map_err(|_| {
                InferenceError::Invalid("messages must not contain NUL characters".to_owned())
            })?,
        );
    }
    if let Ok(template) = model.chat_template(None) {
        return model
            .apply_chat_template(&template, &chat, true)
            .map_err(|e| {
                InferenceError::Unavailable(format!("cannot apply the chat template: {e}"))
            });
    }
    let base = family.trim_end_matches(|c: char| c.is_ascii_digit());
    for name in [family, base, "chatml"] {
        let Ok(template) = LlamaChatTemplate::new(name) else {
            continue;
        };
        if let Ok(prompt) = model.apply_chat_template(&template, &chat, true) {
            return Ok(prompt);
        }
    }
    Err(InferenceError::Unavailable(
        "no chat template applies to this model".to_owned(),
    ))
}

/// Tokens of `text`, special tokens parsed, with the model's BOS once.
fn tokenize(model: &LlamaModel, text: &str) -> Vec<llama_cpp_2::token::LlamaToken> {
    let vocab = model.vocab();
    let mut tokens = vocab.tokenize(text.as_bytes(), true, true);
    // A template that writes the BOS itself would otherwise get a second one.
    let bos = vocab.bos();
    if tokens.len() >= 2 && tokens[0] == bos && tokens[1] == bos {
        tokens.remove(0);
    }
    tokens
}

/// A generation ready to start on a loaded model.
pub struct Prepared {
    lease: Lease,
    prompt: Vec<llama_cpp_2::token::LlamaToken>,
    sampling: sampling::Sampling,
    num_predict: Option<u32>,
    stop: Vec<String>,
    context: u32,
    started: Instant,
    load: Duration,
}

impl Prepared {
    /// The most tokens it can count: its prompt plus `num_predict`, or
    /// its whole context (and the token sampled as the context fills).
    pub fn max_tokens(&self) -> u64 {
        let prompt = self.prompt.len() as u64;
        let most = u64::from(self.context) + 1;
        self.num_predict
            .map_or(most, |n| (prompt + u64::from(n)).min(most))
    }

    /// Hands it to the model's batcher.
    pub fn start(self) -> Result<Generation, InferenceError> {
        let (events_tx, events) = tokio::sync::mpsc::unbounded_channel();
        let cancel = Arc::new(AtomicBool::new(false));
        let admitted = Arc::new(AtomicBool::new(false));
        self.lease.generate(batcher::Job {
            prompt: self.prompt,
            sampling: self.sampling,
            num_predict: self.num_predict,
            stop: self.stop,
            context: self.context,
            events: events_tx,
            cancel: cancel.clone(),
            admitted: admitted.clone(),
            started: self.started,
            load: self.load,
        })?;
        Ok(Generation {
            events,
            cancel,
            admitted,
            started: self.started,
            load: self.load,
            lease: Some(self.lease),
            held: None,
            done: false,
            reservation: None,
        })
    }
}

/// A running generation: text chunks, then the statistics. Dropping it
/// cancels the sequence at its next decode step.
pub struct Generation {
    events: UnboundedReceiver<Event>,
    cancel: Arc<AtomicBool>,
    /// Set by the batcher once the sequence has a slot.
    admitted: Arc<AtomicBool>,
    /// When the request arrived, and how long it waited for the model
    /// (for the statistics of a generation cancelled before its turn).
    started: Instant,
    load: Duration,
    /// Keeps the model loaded until the generation is over.
    lease: Option<Lease>,
    held: Option<Event>,
    done: bool,
    /// Tokens held against the caller's budgets until it ends.
    reservation: Option<Reservation>,
}

/// A piece of a generation.
#[derive(Debug)]
pub enum Chunk {
    Text(String),
    Done(Stats),
}

impl Generation {
    /// Waits for the next piece: all the text produced since the last call,
    /// or the end; `None` once it has ended.
    pub async fn next(&mut self) -> Result<Option<Chunk>, InferenceError> {
        if self.done {
            return Ok(None);
        }
        let event = match self.held.take() {
            Some(event) => event,
            None => match self.events.recv().await {
                Some(event) => event,
                None => {
                    self.end();
                    return Err(InferenceError::Unavailable("the engine stopped".to_owned()));
                }
            },
        };
        match event {
            Event::Text(mut text) => {
                while let Ok(event) = self.events.try_recv() {
                    match event {
                        Event::Text(more) => text.push_str(&more),
                        other => {
                            self.held = Some(other);
                            break;
                        }
                    }
                }
                Ok(Some(Chunk::Text(text)))
            }
            Event::Done(stats) => {
                self.end();
                if let Some(reservation) = self.reservation.take() {
                    reservation.settle(stats.tokens());
                }
                Ok(Some(Chunk::Done(stats)))
            }
            Event::Failed(e) => {
                self.end();
                Err(InferenceError::Unavailable(e))
            }
        }
    }

    /// Stops the generation and returns its statistics (see the WIT
    /// `cancel`). A sequence still waiting for a slot ran nothing: it ends
    /// at once with zero counts, without waiting for a slot.
    pub async fn cancel(&mut self) -> Option<Stats> {
        self.cancel.store(true, Ordering::SeqCst);
        if !self.done && !self.admitted.load(Ordering::SeqCst) {
            // The batcher sets `admitted` before it looks at `cancel`, so it
            // will see the flag and drop the job before feeding any of it.
            self.end();
            return Some(Stats::unstarted(self.started, self.load));
        }
        loop {
            match self.next().await {
                Ok(Some(Chunk::Text(_))) => continue,
                Ok(Some(Chunk::Done(stats))) => return Some(stats),
                Ok(None) | Err(_) => return None,
            }
        }
    }

    fn end(&mut self) {
        self.done = true;
        self.lease = None;
    }
}

impl Generation {
    /// Holds `reservation` until the generation ends, then charges what it
    /// used.
    pub fn charge_to(&mut self, reservation: Reservation) {
        self.reservation = Some(reservation);
    }
}

impl Drop for Generation {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Relaxed);
        // Dropped before its end: the sequence stops within a step and
        // reports what it ran, which is what the caller is charged.
        if let Some(reservation) = self.reservation.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let (_, closed) = tokio::sync::mpsc::unbounded_channel();
            let mut events = std::mem::replace(&mut self.events, closed);
            let held = self.held.take();
            runtime.spawn(async move {
                let mut next = held;
                loop {
                    match next.take() {
                        Some(Event::Done(stats)) => return reservation.settle(stats.tokens()),
                        Some(Event::Failed(_)) => return,
                        Some(Event::Text(_)) | None => {}
                    }
                    match events.recv().await {
                        Some(event) => next = Some(event),
                        // Never admitted, or the engine stopped: nothing ran
                        // that can be counted; the reservation is released.
                        None => return,
                    }
                }
            });
        }
    }
}

/// Which models a component may use: `models = [...]` from its manifest
/// entry, names made canonical (`*` = all).
#[derive(Debug, Default, Clone)]
pub struct ModelGrants(BTreeSet<String>);

impl ModelGrants {
    /// From the manifest's list; an invalid name is a manifest error.
    pub fn new(names: &[String]) -> Result<ModelGrants, String> {
        names
            .iter()
            .map(|n| {
                if n == "*" {
                    Ok(n.clone())
                } else {
                    store::canonical_name(n).map_err(|e| e.to_string())
                }
            })
            .collect::<Result<_, _>>()
            .map(ModelGrants)
    }

    /// Whether `name` (any spelling) is granted.
    pub fn allows(&self, name: &str) -> bool {
        self.0.contains("*") || store::canonical_name(name).is_ok_and(|n| self.0.contains(&n))
    }
}

// ---- WIT host implementation -------------------------------------------

impl CapabilityView<'_> {
    /// Whether this component may install or remove `model`: it needs
    /// `manage_models = true` and the model among its `models`.
    fn may_manage(&self, model: &str) -> Result<(), wit::Error> {
        if !self.ctx.grants.manage_models {
            return Err(wit::Error::AccessDenied(MANAGE_DENIED.to_owned()));
        }
        if !self.ctx.grants.models.allows(model) {
            return Err(wit::Error::AccessDenied(super::not_granted(
                "model", "models", model,
            )));
        }
        Ok(())
    }

    /// The engine, if `model` is granted to this component.
    fn inference_for(&self, model: &str) -> Result<Arc<Inference>, wit::Error> {
        if !self.ctx.grants.models.allows(model) {
            return Err(wit::Error::AccessDenied(super::not_granted(
                "model", "models", model,
            )));
        }
        Ok(self.ctx.shared.inference.clone())
    }
}

impl CapabilityCtx {
    /// What binds the caller this instance serves; `None` when it runs for
    /// the platform (a queue handler, an anonymous request).
    async fn policy(&self) -> Result<Option<Policy>, wit::Error> {
        match &self.principal {
            Principal::Platform => Ok(None),
            Principal::Unattributable => Err(wit::Error::NotPermitted(
                "this component reuses instances (instance_reuse), so the host cannot tell \
                 whose budget and model access a call falls under; inference needs a fresh \
                 instance per request"
                    .into(),
            )),
            Principal::Caller(caller) => self
                .shared
                .limits
                .policy(caller)
                .await
                .map(Some)
                .map_err(|e| wit::Error::Unavailable(e.to_string())),
        }
    }

    /// The engine, if `model` is granted to this component and allowed to
    /// the caller; with the caller's policy.
    async fn inference_for_caller(
        &self,
        model: &str,
    ) -> Result<(Arc<Inference>, Option<Policy>), wit::Error> {
        if !self.grants.models.allows(model) {
            return Err(wit::Error::AccessDenied(super::not_granted(
                "model", "models", model,
            )));
        }
        let policy = self.policy().await?;
        if let (Some(policy), Ok(name)) = (&policy, store::canonical_name(model))
            && !policy.allows(&name)
        {
            return Err(wit::Error::NotPermitted(format!(
                "you may not use the model `{name}`; an administrator can grant it"
            )));
        }
        Ok((self.shared.inference.clone(), policy))
    }
}

/// Whether the caller may see `model` in listings.
fn visible(policy: &Option<Policy>, model: &str) -> bool {
    policy.as_ref().is_none_or(|p| p.allows(model))
}

impl From<InferenceError> for wit::Error {
    fn from(e: InferenceError) -> Self {
        match e {
            InferenceError::NoSuchModel(d) => wit::Error::NoSuchModel(d),
            InferenceError::Invalid(d) => wit::Error::Invalid(d),
            InferenceError::InUse(d) => wit::Error::InUse(d),
            InferenceError::Unavailable(d) => wit::Error::Unavailable(d),
        }
    }
}

impl From<wit::Options> for RawOptions {
    fn from(o: wit::Options) -> Self {
        RawOptions {
            temperature: o.temperature,
            top_k: o.top_k,
            top_p: o.top_p,
            min_p: o.min_p,
            repeat_penalty: o.repeat_penalty,
            repeat_last_n: o.repeat_last_n,
            presence_penalty: o.presence_penalty,
            frequency_penalty: o.frequency_penalty,
            seed: o.seed,
            num_predict: o.num_predict,
            stop: o.stop,
            num_ctx: o.num_ctx,
            keep_alive: o.keep_alive,
            format: o.format,
        }
    }
}

fn wit_stats(stats: Stats) -> wit::Stats {
    let ns = |d: Duration| d.as_nanos().min(u128::from(u64::MAX)) as u64;
    wit::Stats {
        prompt_tokens: stats.prompt_tokens,
        completion_tokens: stats.completion_tokens,
        load_duration_ns: ns(stats.load),
        prompt_duration_ns: ns(stats.prompt),
        eval_duration_ns: ns(stats.eval),
        total_duration_ns: ns(stats.total),
        done_reason: match stats.reason {
            DoneReason::Stop => wit::DoneReason::Stop,
            DoneReason::Length => wit::DoneReason::Length,
            DoneReason::Cancelled => wit::DoneReason::Cancelled,
        },
    }
}

fn wit_pull(status: PullStatus) -> wit::PullProgress {
    wit::PullProgress {
        id: status.id,
        name: status.name,
        state: match status.state {
            PullState::Queued => wit::PullState::Queued,
            PullState::Downloading => wit::PullState::Downloading,
            PullState::Verifying => wit::PullState::Verifying,
            PullState::Done => wit::PullState::Done,
            PullState::Failed => wit::PullState::Failed,
            PullState::Cancelled => wit::PullState::Cancelled,
        },
        completed: status.completed,
        total: status.total,
        error: status.error.map(Into::into),
        model: status.model.as_ref().map(wit_info),
    }
}

fn wit_info(entry: &ModelEntry) -> wit::ModelInfo {
    wit::ModelInfo {
        name: entry.name.clone(),
        family: entry.metadata.family.clone(),
        parameter_count: entry.metadata.parameter_count,
        quantization: entry.metadata.quantization.clone(),
        context_length: entry.metadata.context_length,
        size: entry.size,
        digest: entry.digest(),
        embedding: entry.metadata.embedding,
        installed_at: entry.installed_at,
    }
}

impl CapabilityView<'_> {
    async fn start(
        &mut self,
        model: String,
        prompt: Prompt,
        options: wit::Options,
    ) -> wasmtime::Result<Result<Resource<Generation>, wit::Error>> {
        let (inference, policy) = match self.ctx.inference_for_caller(&model).await {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        let prepared = match inference.prepare(&model, prompt, options.into()).await {
            Ok(prepared) => prepared,
            Err(e) => return Ok(Err(e.into())),
        };
        let reservation = match policy {
            None => None,
            Some(policy) => {
                let limits = self.ctx.shared.limits.clone();
                match limits.reserve(policy, prepared.max_tokens()).await {
                    Ok(Ok(reservation)) => reservation,
                    Ok(Err(refusal)) => {
                        ::metrics::counter!("lamina_budget_refusals_total").increment(1);
                        return Ok(Err(wit::Error::BudgetExceeded(wit::BudgetRefusal {
                            detail: refusal.detail(),
                            scope: refusal.scope.to_owned(),
                            limit: refusal.limit,
                            remaining: refusal.remaining,
                            requested: refusal.requested,
                            resets_at: refusal.resets_at,
                        })));
                    }
                    Err(e) => return Ok(Err(wit::Error::Unavailable(e.to_string()))),
                }
            }
        };
        match prepared.start() {
            Ok(mut generation) => {
                if let Some(reservation) = reservation {
                    generation.charge_to(reservation);
                }
                Ok(Ok(self.table.push(generation)?))
            }
            Err(e) => Ok(Err(e.into())),
        }
    }
}

impl wit::Host for CapabilityView<'_> {
    async fn generate(
        &mut self,
        model: String,
        prompt: String,
        options: wit::Options,
    ) -> wasmtime::Result<Result<Resource<Generation>, wit::Error>> {
        self.start(model, Prompt::Raw(prompt), options).await
    }

    async fn chat(
        &mut self,
        model: String,
        messages: Vec<wit::Message>,
        options: wit::Options,
    ) -> wasmtime::Result<Result<Resource<Generation>, wit::Error>> {
        let messages = messages.into_iter().map(|m| (m.role, m.content)).collect();
        self.start(model, Prompt::Chat(messages), options).await
    }

    async fn embed(
        &mut self,
        model: String,
        inputs: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<Vec<f32>>, wit::Error>> {
        let inference = match self.ctx.inference_for_caller(&model).await {
            Ok((inference, _)) => inference,
            Err(e) => return Ok(Err(e)),
        };
        Ok(inference.embed(&model, inputs).await.map_err(Into::into))
    }

    async fn count_tokens(
        &mut self,
        model: String,
        text: String,
    ) -> wasmtime::Result<Result<u32, wit::Error>> {
        let inference = match self.ctx.inference_for_caller(&model).await {
            Ok((inference, _)) => inference,
            Err(e) => return Ok(Err(e)),
        };
        Ok(inference
            .count_tokens(&model, &text)
            .await
            .map_err(Into::into))
    }

    async fn list_models(&mut self) -> wasmtime::Result<Result<Vec<wit::ModelInfo>, wit::Error>> {
        let policy = match self.ctx.policy().await {
            Ok(policy) => policy,
            Err(e) => return Ok(Err(e)),
        };
        let grants = &self.ctx.grants.models;
        Ok(self
            .ctx
            .shared
            .inference
            .store()
            .list()
            .map(|models| {
                models
                    .iter()
                    .filter(|m| grants.allows(&m.name) && visible(&policy, &m.name))
                    .map(wit_info)
                    .collect()
            })
            .map_err(Into::into))
    }

    async fn show_model(
        &mut self,
        model: String,
    ) -> wasmtime::Result<Result<wit::ModelInfo, wit::Error>> {
        let inference = match self.ctx.inference_for_caller(&model).await {
            Ok((inference, _)) => inference,
            Err(e) => return Ok(Err(e)),
        };
        Ok(inference
            .store()
            .get(&model)
            .map(|e| wit_info(&e))
            .map_err(Into::into))
    }

    async fn loaded_models(
        &mut self,
    ) -> wasmtime::Result<Result<Vec<wit::LoadedModel>, wit::Error>> {
        let policy = match self.ctx.policy().await {
            Ok(policy) => policy,
            Err(e) => return Ok(Err(e)),
        };
        let grants = &self.ctx.grants.models;
        let now = chrono::Utc::now().timestamp();
        Ok(Ok(self
            .ctx
            .shared
            .inference
            .loaded()
            .into_iter()
            .filter(|m| grants.allows(&m.entry.name) && visible(&policy, &m.entry.name))
            .map(|m| wit::LoadedModel {
                digest: m.entry.digest(),
                size: m.entry.size,
                active: m.active,
                expires_at: m.expires_in.map(|d| now + d.as_secs() as i64),
                name: m.entry.name,
            })
            .collect()))
    }

    async fn pull_model(
        &mut self,
        name: String,
        source: Option<String>,
        sha256: Option<String>,
    ) -> wasmtime::Result<Result<String, wit::Error>> {
        if let Err(e) = self.may_manage(&name) {
            return Ok(Err(e));
        }
        // Host paths are for the operator's CLI; a component names a URL,
        // or a name the operator registered a source for.
        let inference = &self.ctx.shared.inference;
        if source.is_some() && sha256.is_none() {
            return Ok(Err(wit::Error::Invalid(
                "a pull from a URL needs the file's sha256".to_owned(),
            )));
        }
        let (source, sha256) = match inference.config.pull_source(&name, source, sha256) {
            Ok(found) => found,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(inference
            .pulls()
            .start(&name, &source, sha256.as_deref())
            .map_err(Into::into))
    }

    async fn pull_status(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<wit::PullProgress, wit::Error>> {
        if !self.ctx.grants.manage_models {
            return Ok(Err(wit::Error::AccessDenied(MANAGE_DENIED.to_owned())));
        }
        // A pull of a model this component may not manage is as invisible
        // as one that never was.
        let status = self.ctx.shared.inference.pulls().status(&id);
        let Some(status) = status.filter(|s| self.ctx.grants.models.allows(&s.name)) else {
            return Ok(Err(wit::Error::NoSuchModel(format!(
                "no pull `{}`",
                id.escape_debug()
            ))));
        };
        Ok(Ok(wit_pull(status)))
    }

    async fn cancel_pull(&mut self, id: String) -> wasmtime::Result<Result<bool, wit::Error>> {
        if !self.ctx.grants.manage_models {
            return Ok(Err(wit::Error::AccessDenied(MANAGE_DENIED.to_owned())));
        }
        let pulls = self.ctx.shared.inference.pulls();
        // As in `pull_status`: a pull of a model this component may not
        // manage is as good as unknown.
        if !pulls
            .status(&id)
            .is_some_and(|s| self.ctx.grants.models.allows(&s.name))
        {
            return Ok(Err(wit::Error::NoSuchModel(format!(
                "no pull `{}`",
                id.escape_debug()
            ))));
        }
        Ok(pulls.cancel(&id).map_err(Into::into))
    }

    async fn copy_model(
        &mut self,
        source: String,
        destination: String,
    ) -> wasmtime::Result<Result<wit::ModelInfo, wit::Error>> {
        Ok(self.copy_model_checked(&source, &destination))
    }

    async fn remove_model(&mut self, name: String) -> wasmtime::Result<Result<(), wit::Error>> {
        if let Err(e) = self.may_manage(&name) {
            return Ok(Err(e));
        }
        Ok(self
            .ctx
            .shared
            .inference
            .remove(&name)
            .map(drop)
            .map_err(Into::into))
    }
}

impl CapabilityView<'_> {
    /// `copy-model`: `source` must be granted, `destination` manageable.
    fn copy_model_checked(
        &self,
        source: &str,
        destination: &str,
    ) -> Result<wit::ModelInfo, wit::Error> {
        self.may_manage(destination)?;
        let inference = self.inference_for(source)?;
        Ok(wit_info(&inference.store().copy(source, destination)?))
    }
}

/// Longest `next-within` waits.
const MAX_WAIT_MS: u32 = 60_000;

const MANAGE_DENIED: &str = "installing and removing models is not granted to this component (set `manage_models = true` in spin.toml)";

impl wit::HostGeneration for CapabilityView<'_> {
    async fn next(
        &mut self,
        this: Resource<Generation>,
    ) -> wasmtime::Result<Result<Option<wit::Chunk>, wit::Error>> {
        let generation = self.table.get_mut(&this)?;
        Ok(match generation.next().await {
            Ok(Some(Chunk::Text(text))) => Ok(Some(wit::Chunk::Text(text))),
            Ok(Some(Chunk::Done(stats))) => Ok(Some(wit::Chunk::Done(wit_stats(stats)))),
            Ok(None) => Ok(None),
            Err(e) => Err(e.into()),
        })
    }

    async fn next_within(
        &mut self,
        this: Resource<Generation>,
        timeout_ms: u32,
    ) -> wasmtime::Result<Result<wit::Waited, wit::Error>> {
        let generation = self.table.get_mut(&this)?;
        let timeout = Duration::from_millis(timeout_ms.min(MAX_WAIT_MS).into());
        // `next` may be abandoned at its only await (a channel receive,
        // which loses nothing), so a timeout never drops text.
        Ok(
            match tokio::time::timeout(timeout, generation.next()).await {
                Err(_) => Ok(wit::Waited::Pending),
                Ok(Ok(Some(Chunk::Text(text)))) => Ok(wit::Waited::Chunk(wit::Chunk::Text(text))),
                Ok(Ok(Some(Chunk::Done(stats)))) => {
                    Ok(wit::Waited::Chunk(wit::Chunk::Done(wit_stats(stats))))
                }
                Ok(Ok(None)) => Ok(wit::Waited::Finished),
                Ok(Err(e)) => Err(e.into()),
            },
        )
    }

    async fn cancel(&mut self, this: Resource<Generation>) -> wasmtime::Result<Option<wit::Stats>> {
        let generation = self.table.get_mut(&this)?;
        Ok(generation.cancel().await.map(wit_stats))
    }

    async fn drop(&mut self, this: Resource<Generation>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

    fn config(toml: &str) -> InferenceConfig {
        toml::from_str(toml).unwrap()
    }

    #[test]
    fn registered_sources_are_validated() {
        let bad = [
            r#"sources."Bad Name" = { url = "https://x.example/m.gguf", sha256 = "#,
            r#"sources."m:1" = { url = "ftp://x.example/m.gguf", sha256 = "#,
            r#"sources."m:1" = { url = "/etc/passwd", sha256 = "#,
        ];
        for toml in bad {
            assert!(
                config(&format!("{toml}\"{SHA}\" }}")).validate().is_err(),
                "{toml}"
            );
        }
        let short_sha =
            config(r#"sources."m:1" = { url = "https://x.example/m.gguf", sha256 = "abc" }"#);
        assert!(short_sha.validate().unwrap_err().contains("sha256"));
        let twice = config(&format!(
            r#"sources.m = {{ url = "https://x.example/a.gguf", sha256 = "{SHA}" }}
               sources."m:latest" = {{ url = "https://x.example/b.gguf", sha256 = "{SHA}" }}"#
        ));
        assert!(twice.validate().unwrap_err().contains("twice"));
        let good = config(&format!(
            r#"sources.m = {{ url = "https://x.example/m.gguf", sha256 = "{SHA}" }}"#
        ));
        good.validate().unwrap();
    }

    #[test]
    fn a_pull_without_a_source_uses_the_registered_one() {
        let config = config(&format!(
            "pull_hosts = [\"models.example\"]\n\
             sources.m = {{ url = \"https://elsewhere.example/m.gguf\", sha256 = \"{SHA}\" }}"
        ));
        // By canonical name, whatever the key's spelling, and outside pull_hosts.
        let (url, sha) = config.pull_source("m:latest", None, None).unwrap();
        assert_eq!(url, "https://elsewhere.example/m.gguf");
        assert_eq!(sha.as_deref(), Some(SHA));
        let upper = SHA.to_ascii_uppercase();
        assert!(config.pull_source("m", None, Some(upper)).is_ok());
        assert!(matches!(
            config.pull_source("m", None, Some("0".repeat(64))),
            Err(InferenceError::Invalid(_))
        ));
        assert!(matches!(
            config.pull_source("other:1", None, None),
            Err(InferenceError::NoSuchModel(_))
        ));
        // A given URL is still limited by pull_hosts.
        assert!(
            config
                .pull_source("m", Some("https://elsewhere.example/x.gguf".into()), None)
                .is_err()
        );
        assert!(
            config
                .pull_source("m", Some("https://models.example/x.gguf".into()), None)
                .is_ok()
        );
    }
}
