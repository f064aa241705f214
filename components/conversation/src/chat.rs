//! Chat: `POST /api/conversations/{id}/messages` stores the user's message
//! first (a child of `parentId`, by default the active leaf, so editing an
//! earlier message is a new branch), then answers it; `…/messages/{mid}/
//! regenerate` answers again as a new sibling; `…/stop` ends a running
//! generation from another request, on any host.
//!
//! The prompt is the system prompt and the path from the root to the
//! user's message, in order, rendered by the host's chat template; oldest
//! turns are left out when it would not fit the context. With `stream`
//! (the default) the answer comes as Server-Sent Events: `start`
//! {userMessageId, messageId}, `sources` {items} when the conversation's
//! documents gave the prompt sources (`rag: false` skips them; see
//! [`knowledge`]), `token` {delta} …, then `done` {messageId,
//! usage, doneReason} or `error` (problem+json); a `: heartbeat` comment
//! every 10 s while nothing comes (a model loading). The answer is stored
//! once, when generation ends, even if the client has gone: it is there
//! when they come back.

use std::time::Duration;

use lamina_sdk::api::{ApiError, Reply, new_id, now_ms, nullable, read_json};
use lamina_sdk::cache::Cache;
use lamina_sdk::inference::{self, Chunk, Generation, OllamaOptions, Stats, Waited};
use lamina_sdk::sse::EventStream;
use lamina_sdk::usage;
use lamina_sdk::validate::Checks;
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use crate::conversations::{self, Conversation, parse_options};
use crate::knowledge::{
    self,
    retrieve::{self, Source},
};
use crate::messages::{self, MAX_MESSAGES, MAX_SIZE, Message, Usage};
use crate::{Ctx, Streamer, cached, titles};

/// Longest message, in characters.
pub const MAX_CONTENT: usize = 100_000;
/// Largest chat request body.
const BODY_LIMIT: usize = 512 << 10;
/// A heartbeat after this long without an event.
const HEARTBEAT: Duration = Duration::from_secs(10);
/// How often a running generation looks for a stop request.
const STOP_POLL_MS: u32 = 250;
/// Context assumed when the options do not set `num_ctx` (the host's
/// default per-request context).
const DEFAULT_CONTEXT: i64 = 2048;
/// Tokens kept free for the answer when `num_predict` is not set.
const ANSWER_RESERVE: i64 = 512;
/// Tokens the chat template adds around each message (role markers).
const TEMPLATE_OVERHEAD: i64 = 8;
/// Characters kept free for an answer when checking a conversation's size.
const ANSWER_ROOM: i64 = 100_000;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Send {
    content: String,
    /// Absent: the active leaf; `null`: none (a new first message).
    #[serde(default, deserialize_with = "nullable")]
    parent_id: Option<Option<String>>,
    options: Option<Json>,
    stream: Option<bool>,
    /// `false`: answer without the conversation's documents.
    rag: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Regenerate {
    options: Option<Json>,
    stream: Option<bool>,
    rag: Option<bool>,
}

/// `POST /api/conversations/{id}/messages` {content, parentId?, options?,
/// stream?}: `parentId` left out continues the active path, `null` starts
/// a new first message (editing the first question).
pub fn send<'a>(ctx: &'a Ctx<'a>) -> Result<Streamer<'a>, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let body: Send = read_json(ctx.request, BODY_LIMIT)?;
    let mut checks = Checks::default();
    if body.content.trim().is_empty() {
        checks.fail("content", "required");
    }
    checks.long_text("content", &body.content, MAX_CONTENT);
    let options = merged_options(
        &mut checks,
        conversation.options.as_deref(),
        body.options.as_ref(),
    );
    checks.finish()?;
    let parent = match body.parent_id {
        Some(Some(id)) => Some(messages::owned(&ctx.db, &conversation.id, &id)?.id),
        Some(None) => None,
        None => conversation.current_message_id.clone(),
    };
    room_for(&conversation, 2, body.content.chars().count())?;
    let tokens =
        inference::count_tokens(&conversation.model, &body.content).map_err(model_error)?;
    let user_message = Message {
        id: new_id(),
        conversation_id: conversation.id.clone(),
        parent_id: parent,
        seq: 0,
        role: "user".into(),
        content: body.content,
        model: None,
        options: None,
        tokens: tokens.into(),
        prompt_tokens: None,
        completion_tokens: None,
        load_duration_ns: None,
        prompt_duration_ns: None,
        eval_duration_ns: None,
        total_duration_ns: None,
        done_reason: None,
        created_at: now_ms(),
        sources: None,
    };
    let mut path = match &user_message.parent_id {
        Some(parent) => messages::path_to(&ctx.db, parent)?,
        None => Vec::new(),
    };
    path.push(user_message);
    answer(
        ctx,
        conversation,
        path,
        options,
        body.stream.unwrap_or(true),
        body.rag.unwrap_or(true),
        true,
    )
}

/// 400 unless `conversation` has room for `messages` more messages, the
/// first of `characters` characters, the answer within [`ANSWER_ROOM`]:
/// checked before generating, so an answer is never refused once made.
fn room_for(conversation: &Conversation, messages: i64, characters: usize) -> Result<(), ApiError> {
    let full = |what: String| {
        Err(ApiError::new(
            400,
            "conversation full",
            format!("a conversation holds at most {what}; start a new one or clone a part of it"),
        ))
    };
    if conversation.message_count + messages > MAX_MESSAGES {
        return full(format!("{MAX_MESSAGES} messages"));
    }
    if conversation.content_size + characters as i64 + ANSWER_ROOM > MAX_SIZE {
        return full(format!("{MAX_SIZE} characters of messages"));
    }
    Ok(())
}

/// `POST /api/conversations/{id}/messages/{mid}/regenerate` {options?,
/// stream?}: a new answer to user message `mid`, or to the message
/// assistant message `mid` answered (a sibling of it).
pub fn regenerate<'a>(ctx: &'a Ctx<'a>) -> Result<Streamer<'a>, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let target = messages::owned(&ctx.db, &conversation.id, &ctx.param("mid"))?;
    let body: Regenerate = if ctx.request.header("content-length").as_deref() == Some("0") {
        Regenerate::default()
    } else {
        read_json(ctx.request, BODY_LIMIT)?
    };
    let mut checks = Checks::default();
    let options = merged_options(
        &mut checks,
        conversation.options.as_deref(),
        body.options.as_ref(),
    );
    checks.finish()?;
    let question = match target.role.as_str() {
        "user" => target.id,
        _ => target.parent_id.ok_or_else(|| {
            ApiError::new(
                400,
                "nothing to regenerate",
                "this answer has no question before it",
            )
        })?,
    };
    room_for(&conversation, 1, 0)?;
    let path = messages::path_to(&ctx.db, &question)?;
    answer(
        ctx,
        conversation,
        path,
        options,
        body.stream.unwrap_or(true),
        body.rag.unwrap_or(true),
        false,
    )
}

/// The conversation's options with the request's on top, checked.
fn merged_options(
    checks: &mut Checks,
    stored: Option<&str>,
    request: Option<&Json>,
) -> Option<String> {
    let mut merged: Map<String, Json> = stored
        .and_then(|s| serde_json::from_str(s).ok())
        .unwrap_or_default();
    if let Some(request) = request {
        match request.as_object() {
            Some(object) => merged.extend(object.clone()),
            None => {
                checks.fail("options", "an object of Ollama options");
                return None;
            }
        }
    }
    match parse_options(&Json::Object(merged)) {
        Ok(options) => options,
        Err(message) => {
            checks.fail("options", message);
            None
        }
    }
}

/// An inference failure as the API answers it: the conversation's model
/// gone is the client's to fix (400); a model the caller may not use is
/// 403, past their budget 429, the engine's trouble 503.
fn model_error(e: inference::Error) -> ApiError {
    match e {
        inference::Error::NoSuchModel(detail) | inference::Error::AccessDenied(detail) => {
            ApiError::new(400, "model not installed", detail)
        }
        other => other.into(),
    }
}

/// The chat messages for `path` (root first, ending with the question)
/// with the system prompt, leaving out the oldest turns that do not fit
/// the context. Retrieved `sources` go before the question, as many as
/// fit in half the context (the rest are dropped from `sources`).
fn prompt(
    conversation: &Conversation,
    path: &[Message],
    options: &OllamaOptions,
    sources: &mut Vec<Source>,
) -> Result<Vec<inference::Message>, ApiError> {
    let context = options.num_ctx.map_or(DEFAULT_CONTEXT, i64::from);
    let reserve = match options.num_predict {
        Some(n) if n > 0 => i64::from(n).min(context / 2),
        _ => ANSWER_RESERVE.min(context / 2),
    };
    let mut budget = context - reserve;
    let system = conversation
        .system_prompt
        .as_deref()
        .filter(|s| !s.trim().is_empty());
    if let Some(system) = system {
        budget -=
            i64::from(inference::count_tokens(&conversation.model, system).map_err(model_error)?)
                + TEMPLATE_OVERHEAD;
    }
    let mut grounding = String::new();
    while !sources.is_empty() {
        grounding = retrieve::context(sources);
        let tokens = i64::from(
            inference::count_tokens(&conversation.model, &grounding).map_err(model_error)?,
        );
        if tokens <= budget / 2 {
            budget -= tokens;
            break;
        }
        sources.pop();
        grounding.clear();
    }
    let mut kept = 0;
    for (i, message) in path.iter().rev().enumerate() {
        // Imported messages were never counted: about 3 characters a token.
        let tokens = if message.tokens > 0 {
            message.tokens
        } else {
            message.content.len() as i64 / 3 + 1
        };
        budget -= tokens + TEMPLATE_OVERHEAD;
        if budget < 0 && i > 0 {
            break;
        }
        kept += 1;
    }
    let mut messages: Vec<inference::Message> = Vec::with_capacity(kept + 1);
    if let Some(system) = system {
        messages.push(inference::Message {
            role: "system".into(),
            content: system.to_owned(),
        });
    }
    messages.extend(
        path[path.len() - kept..]
            .iter()
            .map(|m| inference::Message {
                role: m.role.clone(),
                content: m.content.clone(),
            }),
    );
    if !grounding.is_empty()
        && let Some(question) = messages.last_mut()
    {
        question.content = format!("{grounding}\nQuestion: {}", question.content);
    }
    Ok(messages)
}

/// Starts generating the answer to the last message of `path` and returns
/// what streams (or returns) it. With `store_question`, that message is new
/// and is stored once the generation has started, so a request the engine
/// refuses leaves nothing behind.
fn answer<'a>(
    ctx: &'a Ctx<'a>,
    conversation: Conversation,
    path: Vec<Message>,
    options: Option<String>,
    stream: bool,
    rag: bool,
    store_question: bool,
) -> Result<Streamer<'a>, ApiError> {
    let question = path.last().expect("a path ends with the question").clone();
    let parsed: OllamaOptions = options
        .as_deref()
        .and_then(|o| serde_json::from_str(o).ok())
        .unwrap_or_default();
    let mut sources = if rag {
        knowledge::attach::sources_for(ctx, &conversation, &question.content)?
    } else {
        Vec::new()
    };
    let messages = prompt(&conversation, &path, &parsed, &mut sources)?;
    let generation = inference::chat(
        &conversation.model,
        &messages,
        &parsed.clone().into_options(None),
    )
    .map_err(model_error)?;
    if store_question {
        ctx.db
            .transaction(|tx| messages::insert(tx, &question, Usage::Charged))?;
        cached::conversation(&conversation.id);
        cached::invalidate(&[cached::folders(ctx.user())]);
    }
    let turn = Turn {
        ctx,
        conversation,
        question,
        answer_id: new_id(),
        options,
        generation,
        sources,
    };
    Ok(if stream {
        Box::new(move |out| turn.stream(EventStream::start(out)))
    } else {
        Box::new(move |out| lamina_sdk::api::finish(out, turn.whole()))
    })
}

/// One answer being generated.
struct Turn<'a> {
    ctx: &'a Ctx<'a>,
    conversation: Conversation,
    question: Message,
    answer_id: String,
    options: Option<String>,
    generation: Generation,
    /// What retrieval gave the prompt, numbered as cited.
    sources: Vec<Source>,
}

/// What the generation loop reports.
enum Event<'t> {
    Token(&'t str),
    Waiting,
}

impl Turn<'_> {
    /// Streams the answer as Server-Sent Events.
    fn stream(self, mut events: EventStream) {
        events.event(
            "start",
            &json!({"userMessageId": self.question.id, "messageId": self.answer_id}),
        );
        if !self.sources.is_empty() {
            events.event("sources", &json!({ "items": self.sources }));
        }
        let result = self.run(|event| match event {
            Event::Token(delta) => events.event("token", &json!({ "delta": delta })),
            Event::Waiting => events.heartbeat(),
        });
        match result {
            Ok((message, _)) => {
                events.event("done", &done(&message));
            }
            Err(error) => {
                events.event(
                    "error",
                    &json!({"type": "about:blank", "title": error.title, "status": error.status, "detail": error.detail}),
                );
            }
        }
        events.finish();
    }

    /// Generates the whole answer, then replies with both messages.
    fn whole(self) -> Result<Reply, ApiError> {
        let question = self.question.clone();
        let db = &self.ctx.db;
        let conversation = self.conversation.id.clone();
        let (message, siblings) = self.run(|_| true)?;
        let asked = messages::siblings(db, &conversation, std::slice::from_ref(&question))?;
        let mut body = done(&message);
        body["userMessage"] = question.view(
            asked
                .get(&question.id)
                .map(Vec::as_slice)
                .unwrap_or_default(),
        );
        body["message"] = message.view(&siblings);
        Ok(Reply::json(200, body))
    }

    /// Reads the generation to its end (or a stop request), handing events
    /// to `sink` (whose `false`, a client gone, changes nothing: the answer
    /// is still stored); stores the answer and records the usage.
    fn run(self, mut sink: impl FnMut(Event) -> bool) -> Result<(Message, Vec<String>), ApiError> {
        let stop = StopFlag::register(&self.conversation.id, &self.answer_id);
        let mut text = String::new();
        let mut quiet_since = std::time::Instant::now();
        let stats: Stats = loop {
            let waited = self
                .generation
                .next_within(STOP_POLL_MS)
                .map_err(model_error);
            match waited {
                Ok(Waited::Chunk(Chunk::Text(piece))) => {
                    text.push_str(&piece);
                    sink(Event::Token(&piece));
                    quiet_since = std::time::Instant::now();
                }
                Ok(Waited::Chunk(Chunk::Done(stats))) => break stats,
                Ok(Waited::Pending) => {
                    if quiet_since.elapsed() >= HEARTBEAT {
                        sink(Event::Waiting);
                        quiet_since = std::time::Instant::now();
                    }
                }
                Ok(Waited::Finished) => {
                    stop.clear();
                    return Err(ApiError::new(
                        500,
                        "generation lost",
                        "the generation ended without statistics",
                    ));
                }
                Err(error) => {
                    stop.clear();
                    return Err(error);
                }
            }
            if stop.requested() {
                match self.generation.cancel() {
                    Some(stats) => break stats,
                    None => {
                        stop.clear();
                        return Err(ApiError::new(
                            500,
                            "generation lost",
                            "the stopped generation reported nothing",
                        ));
                    }
                }
            }
        };
        stop.clear();
        usage::record_generation(self.ctx.request, &self.conversation.model, &stats);
        let message = Message {
            id: self.answer_id.clone(),
            conversation_id: self.conversation.id.clone(),
            parent_id: Some(self.question.id.clone()),
            seq: 0,
            role: "assistant".into(),
            content: text,
            model: Some(self.conversation.model.clone()),
            options: self.options.clone(),
            tokens: stats.completion_tokens.into(),
            prompt_tokens: Some(stats.prompt_tokens.into()),
            completion_tokens: Some(stats.completion_tokens.into()),
            load_duration_ns: Some(stats.load_duration_ns as i64),
            prompt_duration_ns: Some(stats.prompt_duration_ns as i64),
            eval_duration_ns: Some(stats.eval_duration_ns as i64),
            total_duration_ns: Some(stats.total_duration_ns as i64),
            done_reason: Some(inference::done_reason(stats.done_reason).to_owned()),
            created_at: now_ms(),
            sources: (!self.sources.is_empty())
                .then(|| serde_json::to_string(&self.sources).expect("sources serialize")),
        };
        let db = &self.ctx.db;
        db.transaction(|tx| messages::insert(tx, &message, Usage::Charged))?;
        cached::conversation(&self.conversation.id);
        if titles::wanted(&self.conversation) {
            titles::request(&self.conversation.id, self.ctx.user());
        }
        let siblings =
            messages::siblings(db, &self.conversation.id, std::slice::from_ref(&message))?
                .remove(&message.id)
                .unwrap_or_default();
        Ok((message, siblings))
    }
}

/// The `done` event's (and the JSON answer's) summary.
fn done(message: &Message) -> Json {
    json!({
        "messageId": message.id,
        "doneReason": message.done_reason,
        "usage": {
            "promptTokens": message.prompt_tokens,
            "completionTokens": message.completion_tokens,
            "totalDurationNs": message.total_duration_ns,
        },
    })
}

/// `conversation:running:{conversation}` names the answer being generated;
/// `conversation:stop:{answer}` asks it to stop. In the key-value store,
/// so a stop reaches the generation on whichever host runs it.
struct StopFlag {
    cache: Option<Cache>,
    answer: String,
    running: String,
    stop: String,
    checked: std::cell::Cell<std::time::Instant>,
}

/// How long the running marker outlives a host that died mid-generation.
const RUNNING_TTL_MS: u64 = 30 * 60 * 1000;

impl StopFlag {
    fn register(conversation: &str, answer: &str) -> StopFlag {
        let cache = cached::store();
        let running = cached::running(conversation);
        if let Some(cache) = &cache
            && let Err(e) = cache
                .store()
                .set(&running, answer.as_bytes(), Some(RUNNING_TTL_MS))
        {
            eprintln!("stop flag not registered: {e}");
        }
        let now = std::time::Instant::now();
        StopFlag {
            cache,
            answer: answer.to_owned(),
            running,
            stop: cached::stop(answer),
            checked: std::cell::Cell::new(now),
        }
    }

    /// Whether a stop was asked for (looked up at most every 250 ms).
    fn requested(&self) -> bool {
        let Some(cache) = &self.cache else {
            return false;
        };
        if self.checked.get().elapsed() < Duration::from_millis(STOP_POLL_MS.into()) {
            return false;
        }
        self.checked.set(std::time::Instant::now());
        cache.store().exists(&self.stop).unwrap_or(false)
    }

    /// Removes this generation's keys; the running marker only if it is
    /// still this generation's (another may have started since).
    fn clear(&self) {
        if let Some(cache) = &self.cache {
            if let Ok(Some(running)) = cache.store().get(&self.running)
                && running == self.answer.as_bytes()
            {
                let _ = cache.store().delete(&self.running);
            }
            let _ = cache.store().delete(&self.stop);
        }
    }
}

/// `POST /api/conversations/{id}/stop`: asks the conversation's running
/// generation to stop; its partial answer is stored with doneReason
/// `cancelled`. 202 with the answer's id, 409 if nothing is running.
pub fn stop(ctx: &Ctx) -> Result<Reply, ApiError> {
    let conversation = conversations::owned(ctx, &ctx.param("id"))?;
    let unavailable = |e: lamina_sdk::cache::Error| {
        ApiError::new(
            503,
            "cannot stop now",
            format!("the key-value store is unavailable: {e}"),
        )
        .retry_after(5)
    };
    let cache = cached::store()
        .ok_or_else(|| ApiError::new(503, "cannot stop", "no key-value store is configured"))?;
    let running = cached::running(&conversation.id);
    let Some(answer) = cache.store().get(&running).map_err(unavailable)? else {
        return Err(ApiError::new(
            409,
            "nothing to stop",
            "no answer is being generated in this conversation",
        ));
    };
    let answer = String::from_utf8_lossy(&answer).into_owned();
    cache
        .store()
        .set(&cached::stop(&answer), b"1", Some(10 * 60 * 1000))
        .map_err(unavailable)?;
    Ok(Reply::json(202, json!({ "messageId": answer })))
}
