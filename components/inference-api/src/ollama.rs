//! Ollama's API (`/api/...`), field for field as Ollama documents it:
//! NDJSON streams by default (`"stream": false` for one object), errors as
//! `{"error": "..."}`, durations in nanoseconds.

use lamina_sdk::api::{ApiError, Caller, read_json};
use lamina_sdk::inference::PullState;
use lamina_sdk::inference::{
    self, Error, Generation, Message, ModelInfo, OllamaOptions, stats_json,
};
use lamina_sdk::router::Router;
use lamina_sdk::{BodyWriter, Request, respond, sleep, usage};
use serde::Deserialize;
use serde_json::{Value, json};
use wasip2::http::types::ResponseOutparam;

use crate::BODY_LIMIT;
use crate::wire::{self, Text, keep_alive, rfc3339, rfc3339_now};

/// A failure before the response started: status and message.
/// A failure before the response started: its status and message, and
/// for an inference error, the problem it makes (a budget refusal's
/// members and `Retry-After`).
struct Failure {
    status: u16,
    message: String,
    problem: Option<ApiError>,
}

impl From<(u16, String)> for Failure {
    fn from((status, message): (u16, String)) -> Self {
        Failure {
            status,
            message,
            problem: None,
        }
    }
}

fn failure(e: Error) -> Failure {
    Failure {
        status: e.status(),
        message: e.detail().to_owned(),
        problem: Some(e.into()),
    }
}

/// What a handler answers with.
enum Answer {
    Json(Value),
    /// A running generation, streamed as NDJSON or gathered into one object.
    Generation(Run),
    /// A model pull: its progress streamed, or its outcome.
    Pull {
        id: String,
        stream: bool,
    },
}

/// A generation and how to present it.
struct Run {
    generation: Generation,
    model: String,
    /// `/api/chat` (a `message`) rather than `/api/generate` (a `response`).
    chat: bool,
    stream: bool,
}

/// Answers one `/api/...` request.
pub fn handle(request: &Request, path: &str, out: ResponseOutparam) {
    type Handler = fn(&Request) -> Result<Answer, Failure>;
    let version: Handler = |_| {
        Ok(Answer::Json(
            json!({ "version": env!("CARGO_PKG_VERSION") }),
        ))
    };
    let router: Router<Handler> = Router::new([
        ("POST", "/api/generate", generate as Handler),
        ("POST", "/api/chat", chat),
        ("POST", "/api/embed", embed),
        ("POST", "/api/embeddings", embeddings),
        ("GET", "/api/tags", |_| tags()),
        ("POST", "/api/show", show),
        ("GET", "/api/ps", |_| ps()),
        ("POST", "/api/pull", |r| admin(r).and_then(|()| pull(r))),
        ("DELETE", "/api/delete", |r| {
            admin(r).and_then(|()| delete(r))
        }),
        ("POST", "/api/copy", |r| admin(r).and_then(|()| copy(r))),
        ("GET", "/api/version", version),
        ("HEAD", "/api/version", version),
    ]);
    let method = request.method();
    let answer = match router.find(&method, path) {
        Ok((handler, _)) => handler(request),
        Err(miss) => {
            return wire::unmatched(
                out,
                &miss,
                &method,
                path,
                |message| json!({ "error": message }),
            );
        }
    };
    match answer {
        Ok(Answer::Json(value)) => send(out, 200, &value),
        Ok(Answer::Generation(run)) => present(request, out, run),
        Ok(Answer::Pull { id, stream }) => present_pull(out, &id, stream),
        Err(f) => wire::send_error(
            out,
            f.status,
            json!({ "error": f.message }),
            f.problem.as_ref(),
        ),
    }
}

fn send(out: ResponseOutparam, status: u16, value: &Value) {
    respond(
        out,
        status,
        &[("content-type", "application/json; charset=utf-8")],
        value.to_string().as_bytes(),
    );
}

fn parse<T: serde::de::DeserializeOwned>(request: &Request) -> Result<T, Failure> {
    read_json(request, BODY_LIMIT).map_err(|e| (e.status, e.detail).into())
}

/// Fields Lamina does not serve yet: a clear 400 rather than silently
/// ignoring what the client relies on.
fn unsupported(field: &str, present: bool) -> Result<(), Failure> {
    if present {
        return Err((
            400,
            format!("`{field}` is not supported by this server yet"),
        )
            .into());
    }
    Ok(())
}

#[derive(Deserialize)]
struct GenerateRequest {
    model: String,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default = "yes")]
    stream: bool,
    #[serde(default)]
    options: OllamaOptions,
    keep_alive: Option<Value>,
    format: Option<Value>,
    #[serde(default)]
    images: Vec<Value>,
    suffix: Option<String>,
}

fn yes() -> bool {
    true
}

fn options(
    options: OllamaOptions,
    keep: Option<&Value>,
    format: Option<Value>,
) -> Result<inference::Options, Failure> {
    let keep = keep_alive(keep).map_err(|e| (400, e))?;
    let mut options = options.into_options(keep);
    options.format = match format {
        // `""` is what clients send for "no format" (ollama-python's type allows it).
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.is_empty() => None,
        Some(Value::String(s)) if s == "json" => Some(s),
        Some(schema @ Value::Object(_)) => Some(schema.to_string()),
        Some(other) => {
            return Err((
                400,
                format!("format must be \"json\" or a JSON Schema object (got {other})"),
            )
                .into());
        }
    };
    Ok(options)
}

/// `POST /api/generate`: the prompt through the model's template (as one
/// user turn, after `system`), or as is with `raw`. An empty prompt only
/// loads the model.
fn generate(request: &Request) -> Result<Answer, Failure> {
    let body: GenerateRequest = parse(request)?;
    unsupported("images", !body.images.is_empty())?;
    unsupported("suffix", body.suffix.is_some())?;
    let opts = options(body.options, body.keep_alive.as_ref(), body.format)?;
    if body.prompt.is_empty() {
        inference::count_tokens(&body.model, "").map_err(failure)?;
        return Ok(Answer::Json(json!({
            "model": body.model,
            "created_at": rfc3339_now(),
            "response": "",
            "done": true,
            "done_reason": "load",
        })));
    }
    let generation = if body.raw {
        inference::generate(&body.model, &body.prompt, &opts)
    } else {
        let mut messages = Vec::new();
        if let Some(system) = body.system {
            messages.push(Message {
                role: "system".to_owned(),
                content: system,
            });
        }
        messages.push(Message {
            role: "user".to_owned(),
            content: body.prompt,
        });
        inference::chat(&body.model, &messages, &opts)
    }
    .map_err(failure)?;
    Ok(Answer::Generation(Run {
        generation,
        model: body.model,
        chat: false,
        stream: body.stream,
    }))
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    images: Vec<Value>,
}

#[derive(Deserialize)]
struct ChatRequest {
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default = "yes")]
    stream: bool,
    #[serde(default)]
    options: OllamaOptions,
    keep_alive: Option<Value>,
    format: Option<Value>,
    #[serde(default)]
    tools: Vec<Value>,
}

/// `POST /api/chat`.
fn chat(request: &Request) -> Result<Answer, Failure> {
    let body: ChatRequest = parse(request)?;
    unsupported("tools", !body.tools.is_empty())?;
    unsupported("images", body.messages.iter().any(|m| !m.images.is_empty()))?;
    let opts = options(body.options, body.keep_alive.as_ref(), body.format)?;
    if body.messages.is_empty() {
        inference::count_tokens(&body.model, "").map_err(failure)?;
        return Ok(Answer::Json(json!({
            "model": body.model,
            "created_at": rfc3339_now(),
            "message": {"role": "assistant", "content": ""},
            "done": true,
            "done_reason": "load",
        })));
    }
    let messages: Vec<Message> = body
        .messages
        .into_iter()
        .map(|m| Message {
            role: m.role,
            content: m.content,
        })
        .collect();
    let generation = inference::chat(&body.model, &messages, &opts).map_err(failure)?;
    Ok(Answer::Generation(Run {
        generation,
        model: body.model,
        chat: true,
        stream: body.stream,
    }))
}

/// One piece of a generation as Ollama shapes it.
fn piece(model: &str, chat: bool, text: &str, done: bool) -> Value {
    let mut line = json!({
        "model": model,
        "created_at": rfc3339_now(),
        "done": done,
    });
    if chat {
        line["message"] = json!({"role": "assistant", "content": text});
    } else {
        line["response"] = text.into();
    }
    line
}

/// Streams a run as NDJSON, or gathers it into one object. The last object
/// carries the statistics; an engine failure mid-stream is an `error` line.
fn present(request: &Request, out: ResponseOutparam, run: Run) {
    let Run {
        generation,
        model,
        chat,
        stream,
    } = run;
    let content_type = if stream {
        "application/x-ndjson"
    } else {
        "application/json; charset=utf-8"
    };
    let mut body = BodyWriter::start(out, 200, &[("content-type", content_type)]);
    let mut gathered = String::new();
    let result = usage::drain(request, &model, generation, |text| {
        if stream {
            let mut line = piece(&model, chat, text, false).to_string().into_bytes();
            line.push(b'\n');
            // A failed write: the client is gone, and the generation stops.
            body.send(&line).is_ok()
        } else {
            gathered.push_str(text);
            true
        }
    });
    let last = match result {
        Ok(Some(stats)) => {
            let mut last = piece(&model, chat, &gathered, true);
            if let (Value::Object(last), Value::Object(stats)) = (&mut last, stats_json(&stats)) {
                last.extend(stats);
            }
            last
        }
        Ok(None) => return,
        Err(e) => json!({ "error": e.detail() }),
    };
    let mut bytes = last.to_string().into_bytes();
    if stream {
        bytes.push(b'\n');
    }
    let _ = body.send(&bytes);
    body.finish();
}

#[derive(Deserialize)]
struct EmbedRequest {
    model: String,
    input: Text,
}

/// `POST /api/embed` {model, input: string | [string]}.
fn embed(request: &Request) -> Result<Answer, Failure> {
    let body: EmbedRequest = parse(request)?;
    let (vectors, tokens) =
        usage::embed(request, &body.model, &body.input.into_vec()).map_err(failure)?;
    Ok(Answer::Json(json!({
        "model": body.model,
        "embeddings": vectors,
        "prompt_eval_count": tokens,
    })))
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    prompt: String,
}

/// `POST /api/embeddings` (the older form): {model, prompt} → {embedding}.
fn embeddings(request: &Request) -> Result<Answer, Failure> {
    let body: EmbeddingsRequest = parse(request)?;
    let (mut vectors, _) = usage::embed(request, &body.model, &[body.prompt]).map_err(failure)?;
    Ok(Answer::Json(
        json!({ "embedding": vectors.pop().unwrap_or_default() }),
    ))
}

/// `details` as Ollama describes a model.
fn details(m: &ModelInfo) -> Value {
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": m.family,
        "families": [m.family],
        "parameter_size": parameter_size(m.parameter_count),
        "quantization_level": m.quantization,
    })
}

/// `268.1M`, `7.2B`, as Ollama abbreviates parameter counts.
fn parameter_size(count: u64) -> String {
    match count {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.1}M", n as f64 / 1e6),
        n => n.to_string(),
    }
}

/// When the model was installed, as RFC 3339.
fn modified(m: &ModelInfo) -> String {
    rfc3339(m.installed_at, 0)
}

/// `GET /api/tags`: the models this caller may use.
fn tags() -> Result<Answer, Failure> {
    let models = inference::list_models().map_err(failure)?;
    let models: Vec<Value> = models
        .iter()
        .map(|m| {
            json!({
                "name": m.name,
                "model": m.name,
                "modified_at": modified(m),
                "size": m.size,
                "digest": m.digest.trim_start_matches("sha256:"),
                "details": details(m),
            })
        })
        .collect();
    Ok(Answer::Json(json!({ "models": models })))
}

#[derive(Deserialize)]
struct ShowRequest {
    #[serde(alias = "name")]
    model: String,
}

/// `POST /api/show`.
fn show(request: &Request) -> Result<Answer, Failure> {
    let body: ShowRequest = parse(request)?;
    let m = inference::show_model(&body.model).map_err(failure)?;
    let mut info = serde_json::Map::new();
    info.insert("general.architecture".into(), m.family.clone().into());
    info.insert("general.parameter_count".into(), m.parameter_count.into());
    info.insert(
        format!("{}.context_length", m.family),
        m.context_length.into(),
    );
    Ok(Answer::Json(json!({
        "modelfile": "",
        "parameters": "",
        "template": "",
        "details": details(&m),
        "model_info": info,
        "capabilities": [if m.embedding { "embedding" } else { "completion" }],
        "modified_at": modified(&m),
    })))
}

/// `GET /api/ps`: the models in memory.
fn ps() -> Result<Answer, Failure> {
    let loaded = inference::loaded_models().map_err(failure)?;
    let installed = inference::list_models().map_err(failure)?;
    let models: Vec<Value> = loaded
        .iter()
        .map(|l| {
            let info = installed.iter().find(|m| m.name == l.name);
            json!({
                "name": l.name,
                "model": l.name,
                "size": l.size,
                "digest": l.digest.trim_start_matches("sha256:"),
                "details": info.map(details),
                "expires_at": l.expires_at.map(|at| rfc3339(at, 0)),
                "size_vram": 0,
            })
        })
        .collect();
    Ok(Answer::Json(json!({ "models": models })))
}

/// Model management is for administrators (spin.toml routes it with
/// `roles = ["Admin"]`; checked here too, as the component holds
/// `manage_models`).
fn admin(request: &Request) -> Result<(), Failure> {
    match Caller::of(request) {
        Some(caller) if caller.has_role("Admin") => Ok(()),
        _ => Err((403, "managing models needs the Admin role".to_owned()).into()),
    }
}

#[derive(Deserialize)]
struct PullRequest {
    #[serde(alias = "name")]
    model: String,
    /// The GGUF file's http(s) URL; without it, the source the operator
    /// registered for `model` (runtime-config `[inference.sources]`).
    source: Option<String>,
    sha256: Option<String>,
    #[serde(default = "yes")]
    stream: bool,
}

/// `POST /api/pull` {model, source?, sha256?}: starts a pull (it runs in
/// the host, and survives a restart) and reports its progress.
fn pull(request: &Request) -> Result<Answer, Failure> {
    let body: PullRequest = parse(request)?;
    let id = inference::pull_model(&body.model, body.source.as_deref(), body.sha256.as_deref())
        .map_err(failure)?;
    Ok(Answer::Pull {
        id,
        stream: body.stream,
    })
}

/// One progress object as Ollama's pull reports them.
fn progress(p: &inference::PullProgress) -> Value {
    match p.state {
        PullState::Queued => json!({"status": "pulling manifest"}),
        PullState::Downloading => json!({
            "status": format!("pulling {}", p.name),
            "digest": p.id,
            "total": p.total,
            "completed": p.completed,
        }),
        PullState::Verifying => json!({"status": "verifying sha256 digest"}),
        PullState::Done => json!({"status": "success"}),
        PullState::Failed => json!({
            "error": p.error.as_ref().map_or("the pull failed", |e| e.detail()),
        }),
        PullState::Cancelled => json!({"error": "the pull was cancelled"}),
    }
}

/// How long a pull that is not streamed waits for its outcome before
/// committing to a 200 (well inside the route's `timeout`, so a long
/// download is not a 504); a failure after that arrives as the body's
/// `{"error"}`, as it would in a stream. Unknown names, malformed hashes
/// and sources that answer 404 fail before it.
const PULL_DECIDES_WITHIN: std::time::Duration = std::time::Duration::from_secs(3);

/// While a committed, unstreamed pull runs, a space (JSON allows leading
/// whitespace) is sent this often: idle proxies keep the connection, and
/// a client that left is noticed.
const PULL_KEEPALIVE: std::time::Duration = std::time::Duration::from_secs(10);

/// Polls pull `id` until it ends: each change as an NDJSON line, or only
/// the outcome. A client that leaves does not stop the pull.
fn present_pull(out: ResponseOutparam, id: &str, stream: bool) {
    let started = std::time::Instant::now();
    let mut sent = started;
    let mut body = None;
    let mut last = Value::Null;
    let mut out = Some(out);
    loop {
        let (line, finished, status) = match inference::pull_status(id) {
            Ok(p) => {
                let finished = matches!(
                    p.state,
                    PullState::Done | PullState::Failed | PullState::Cancelled
                );
                let status = match p.state {
                    PullState::Cancelled => 409,
                    _ => p.error.as_ref().map_or(200, Error::status),
                };
                (progress(&p), finished, status)
            }
            Err(e) => (json!({"error": e.detail()}), true, e.status()),
        };
        if stream {
            let body = body.get_or_insert_with(|| {
                let out = out.take().expect("the response starts once");
                BodyWriter::start(out, 200, &[("content-type", "application/x-ndjson")])
            });
            if line != last {
                let mut bytes = line.to_string().into_bytes();
                bytes.push(b'\n');
                if body.send(&bytes).is_err() {
                    return;
                }
            }
        } else if finished {
            if let Some(out) = out.take() {
                return send(out, status, &line);
            }
            if let Some(body) = body.as_mut() {
                let _ = body.send(line.to_string().as_bytes());
            }
        } else if let Some(body) = body.as_mut() {
            if sent.elapsed() >= PULL_KEEPALIVE {
                if body.send(b" ").is_err() {
                    return;
                }
                sent = std::time::Instant::now();
            }
        } else if started.elapsed() >= PULL_DECIDES_WITHIN {
            let out = out.take().expect("the response starts once");
            body = Some(BodyWriter::start(
                out,
                200,
                &[("content-type", "application/json; charset=utf-8")],
            ));
            sent = std::time::Instant::now();
        }
        if finished {
            break;
        }
        last = line;
        sleep(std::time::Duration::from_millis(250));
    }
    if let Some(body) = body {
        body.finish();
    }
}

#[derive(Deserialize)]
struct DeleteRequest {
    #[serde(alias = "name")]
    model: String,
}

/// `DELETE /api/delete` {model}: 409 while generations run on it.
fn delete(request: &Request) -> Result<Answer, Failure> {
    let body: DeleteRequest = parse(request)?;
    inference::remove_model(&body.model).map_err(failure)?;
    Ok(Answer::Json(json!({})))
}

#[derive(Deserialize)]
struct CopyRequest {
    source: String,
    destination: String,
}

/// `POST /api/copy` {source, destination}: one file, two names.
fn copy(request: &Request) -> Result<Answer, Failure> {
    let body: CopyRequest = parse(request)?;
    inference::copy_model(&body.source, &body.destination).map_err(failure)?;
    Ok(Answer::Json(json!({})))
}
