//! The OpenAI-compatible API (`/v1/...`): chat completions and completions
//! (SSE `data:` chunks ending with `data: [DONE]` when streaming),
//! embeddings and models; errors in OpenAI's `{"error": {...}}` shape.

use lamina_sdk::api::{ApiError, new_id, now, read_json};
use lamina_sdk::inference::{self, DoneReason, Error, Generation, Message, Options, Stats};
use lamina_sdk::router::{Miss, Params, Router};
use lamina_sdk::{BodyWriter, Request, usage};
use serde::Deserialize;
use serde_json::{Value, json};
use wasip2::http::types::ResponseOutparam;

use crate::BODY_LIMIT;
use crate::wire::{self, Text};

/// A failure before the response started.
struct Failure {
    status: u16,
    message: String,
    /// The offending request field, if one.
    param: Option<&'static str>,
    /// For an inference error, the problem it makes (a budget refusal's
    /// members and `Retry-After`).
    problem: Option<ApiError>,
}

fn invalid(message: impl Into<String>, param: Option<&'static str>) -> Failure {
    Failure {
        status: 400,
        message: message.into(),
        param,
        problem: None,
    }
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure {
            status: e.status(),
            message: e.detail().to_owned(),
            param: matches!(
                e,
                Error::NoSuchModel(_) | Error::AccessDenied(_) | Error::NotPermitted(_)
            )
            .then_some("model"),
            problem: Some(e.into()),
        }
    }
}

/// OpenAI's error `type` for a status.
fn error_type(status: u16) -> &'static str {
    match status {
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        429 => "rate_limit_error",
        400..=499 => "invalid_request_error",
        _ => "server_error",
    }
}

/// Answers one `/v1/...` request.
pub fn handle(request: &Request, path: &str, out: ResponseOutparam) {
    type Handler = fn(&Request, &Params) -> Result<Answer, Failure>;
    let router: Router<Handler> = Router::new([
        (
            "POST",
            "/v1/chat/completions",
            (|r, _| completion(r, true)) as Handler,
        ),
        ("POST", "/v1/completions", |r, _| completion(r, false)),
        ("POST", "/v1/embeddings", |r, _| embeddings(r)),
        ("GET", "/v1/models", |_, _| models()),
        ("GET", "/v1/models/{id}", |_, p| {
            model(p.get("id").unwrap_or_default())
        }),
    ]);
    let method = request.method();
    let result = match router.find(&method, path) {
        Ok((handler, params)) => handler(request, &params),
        Err(miss) => {
            return wire::unmatched(out, &miss, &method, path, |message| {
                error_body(miss_status(&miss), message, None)
            });
        }
    };
    match result {
        Ok(Answer::Json(value)) => lamina_sdk::json(out, 200, &value),
        Ok(Answer::Completion(run)) => present(request, out, run),
        Err(f) => wire::send_error(
            out,
            f.status,
            error_body(f.status, &f.message, f.param),
            f.problem.as_ref(),
        ),
    }
}

/// OpenAI's error object.
fn error_body(status: u16, message: &str, param: Option<&'static str>) -> Value {
    json!({"error": {
        "message": message,
        "type": error_type(status),
        "param": param,
        "code": Value::Null,
    }})
}

fn miss_status(miss: &Miss) -> u16 {
    match miss {
        Miss::NotFound => 404,
        Miss::MethodNotAllowed(_) => 405,
    }
}

fn parse<T: serde::de::DeserializeOwned>(request: &Request) -> Result<T, Failure> {
    read_json(request, BODY_LIMIT).map_err(|e| Failure {
        status: e.status,
        message: e.detail,
        param: None,
        problem: None,
    })
}

enum Answer {
    Json(Value),
    Completion(Run),
}

/// A running completion and how to present it.
struct Run {
    generation: Generation,
    model: String,
    /// `chat.completion` (a `message`/`delta`) rather than `text_completion`.
    chat: bool,
    stream: bool,
    include_usage: bool,
}

/// A message's content: a string, or parts of which only `text` is served.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    text: String,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    prompt: Option<Text>,
    #[serde(default)]
    stream: bool,
    stream_options: Option<StreamOptions>,
    max_tokens: Option<i32>,
    max_completion_tokens: Option<i32>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    stop: Option<Text>,
    seed: Option<u32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    n: Option<u32>,
    response_format: Option<Value>,
    #[serde(default)]
    tools: Vec<Value>,
}

/// `POST /v1/chat/completions` (`chat`) and `POST /v1/completions`.
fn completion(request: &Request, chat: bool) -> Result<Answer, Failure> {
    let body: CompletionRequest = parse(request)?;
    if body.n.is_some_and(|n| n != 1) {
        return Err(invalid("only n = 1 is supported", Some("n")));
    }
    let format = match body.response_format {
        None => None,
        Some(f) => match f["type"].as_str() {
            Some("text") => None,
            Some("json_object") => Some("json".to_owned()),
            Some("json_schema") if f["json_schema"]["schema"].is_object() => {
                Some(f["json_schema"]["schema"].to_string())
            }
            _ => {
                return Err(invalid(
                    "response_format must be text, json_object, or json_schema with a schema",
                    Some("response_format"),
                ));
            }
        },
    };
    if !body.tools.is_empty() {
        return Err(invalid(
            "tools are not supported by this server yet",
            Some("tools"),
        ));
    }
    let options = Options {
        // OpenAI's defaults, which differ from Ollama's.
        temperature: body.temperature.or(Some(1.0)),
        top_p: body.top_p.or(Some(1.0)),
        presence_penalty: body.presence_penalty,
        frequency_penalty: body.frequency_penalty,
        seed: body.seed,
        num_predict: body.max_completion_tokens.or(body.max_tokens),
        stop: body.stop.map(Text::into_vec).unwrap_or_default(),
        // OpenAI's sampling knobs only: no extra penalty or top-k.
        repeat_penalty: Some(1.0),
        top_k: Some(0),
        format,
        ..Options::default()
    };
    let generation = if chat {
        if body.messages.is_empty() {
            return Err(invalid("messages must not be empty", Some("messages")));
        }
        let mut messages = Vec::with_capacity(body.messages.len());
        for m in body.messages {
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(text)) => text,
                Some(Content::Parts(parts)) => {
                    if parts.iter().any(|p| p.kind != "text") {
                        return Err(invalid(
                            "only text content parts are supported",
                            Some("messages"),
                        ));
                    }
                    parts
                        .into_iter()
                        .map(|p| p.text)
                        .collect::<Vec<_>>()
                        .join("")
                }
            };
            // OpenAI's `developer` role is the system prompt.
            let role = if m.role == "developer" {
                "system".to_owned()
            } else {
                m.role
            };
            messages.push(Message { role, content });
        }
        inference::chat(&body.model, &messages, &options)?
    } else {
        let prompt = match body.prompt {
            Some(Text::One(prompt)) => prompt,
            Some(Text::Many(mut prompts)) if prompts.len() == 1 => prompts.remove(0),
            _ => return Err(invalid("prompt must be one string", Some("prompt"))),
        };
        inference::generate(&body.model, &prompt, &options)?
    };
    Ok(Answer::Completion(Run {
        generation,
        model: body.model,
        chat,
        stream: body.stream,
        include_usage: body.stream_options.unwrap_or_default().include_usage,
    }))
}

fn finish_reason(stats: &Stats) -> &'static str {
    match stats.done_reason {
        DoneReason::Length => "length",
        DoneReason::Stop | DoneReason::Cancelled => "stop",
    }
}

fn usage(stats: &Stats) -> Value {
    json!({
        "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens,
        "total_tokens": stats.prompt_tokens + stats.completion_tokens,
    })
}

/// Streams a run as server-sent events, or answers with one object.
fn present(request: &Request, out: ResponseOutparam, run: Run) {
    let Run {
        generation,
        model,
        chat,
        stream,
        include_usage,
    } = run;
    let id = format!(
        "{}-{}",
        if chat { "chatcmpl" } else { "cmpl" },
        new_id().replace('-', "")
    );
    let created = now();
    let object = match (chat, stream) {
        (true, true) => "chat.completion.chunk",
        (true, false) => "chat.completion",
        (false, _) => "text_completion",
    };
    let envelope = |choices: Value| json!({"id": id, "object": object, "created": created, "model": model, "choices": choices});
    let choice = |text: &str, finish: Option<&str>, first: bool| {
        if chat {
            let mut delta = json!({"content": text});
            if first {
                delta["role"] = "assistant".into();
            }
            json!([{"index": 0, "delta": delta, "finish_reason": finish}])
        } else {
            json!([{"index": 0, "text": text, "finish_reason": finish, "logprobs": Value::Null}])
        }
    };
    let content_type = if stream {
        "text/event-stream"
    } else {
        "application/json"
    };
    let mut body = BodyWriter::start(
        out,
        200,
        &[
            ("content-type", content_type),
            ("cache-control", "no-cache"),
        ],
    );
    let event = |body: &mut BodyWriter, value: &Value| {
        body.send(format!("data: {value}\n\n").as_bytes()).is_ok()
    };
    let mut gathered = String::new();
    let mut first = true;
    let result = usage::drain(request, &model, generation, |text| {
        if stream {
            let chunk = envelope(choice(text, None, first));
            first = false;
            event(&mut body, &chunk)
        } else {
            gathered.push_str(text);
            true
        }
    });
    let stats = match result {
        Ok(Some(stats)) => stats,
        Ok(None) => return,
        Err(e) => {
            let error = json!({"error": {"message": e.detail(), "type": error_type(e.status()), "param": Value::Null, "code": Value::Null}});
            let _ = if stream {
                event(&mut body, &error)
            } else {
                body.send(error.to_string().as_bytes()).is_ok()
            };
            return body.finish();
        }
    };
    let finish = finish_reason(&stats);
    if stream {
        let mut last = envelope(choice("", Some(finish), first));
        if chat {
            last["choices"][0]["delta"] = json!({});
        }
        event(&mut body, &last);
        if include_usage {
            let mut tail = envelope(json!([]));
            tail["usage"] = usage(&stats);
            event(&mut body, &tail);
        }
        let _ = body.send(b"data: [DONE]\n\n");
    } else {
        let choices = if chat {
            json!([{"index": 0, "message": {"role": "assistant", "content": gathered}, "finish_reason": finish, "logprobs": Value::Null}])
        } else {
            json!([{"index": 0, "text": gathered, "finish_reason": finish, "logprobs": Value::Null}])
        };
        let mut whole = envelope(choices);
        whole["usage"] = usage(&stats);
        let _ = body.send(whole.to_string().as_bytes());
    }
    body.finish();
}

#[derive(Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Text,
    encoding_format: Option<String>,
}

/// `POST /v1/embeddings`.
fn embeddings(request: &Request) -> Result<Answer, Failure> {
    let body: EmbeddingsRequest = parse(request)?;
    // `base64` (the openai client's default): little-endian f32 bytes.
    let packed = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(_) => {
            return Err(invalid(
                "encoding_format must be \"float\" or \"base64\"",
                Some("encoding_format"),
            ));
        }
    };
    let (vectors, tokens) = usage::embed(request, &body.model, &body.input.into_vec())?;
    let data: Vec<Value> = vectors
        .into_iter()
        .enumerate()
        .map(|(index, embedding)| {
            let embedding = if packed {
                use base64::Engine;
                let bytes: Vec<u8> = embedding.iter().flat_map(|x| x.to_le_bytes()).collect();
                json!(base64::engine::general_purpose::STANDARD.encode(bytes))
            } else {
                json!(embedding)
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Answer::Json(json!({
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
    })))
}

fn listed(m: &inference::ModelInfo) -> Value {
    json!({"id": m.name, "object": "model", "created": m.installed_at, "owned_by": "lamina"})
}

/// `GET /v1/models`: the models this caller may use.
fn models() -> Result<Answer, Failure> {
    let models = inference::list_models()?;
    Ok(Answer::Json(json!({
        "object": "list",
        "data": models.iter().map(listed).collect::<Vec<_>>(),
    })))
}

/// `GET /v1/models/{id}`.
fn model(id: &str) -> Result<Answer, Failure> {
    let id = lamina_sdk::api::decode_query(id);
    Ok(Answer::Json(listed(&inference::show_model(&id)?)))
}
