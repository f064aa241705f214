//! The Ollama- and OpenAI-compatible API (`components/inference-api`) on
//! the wire: the application's own spin.toml, the real default models,
//! credentials from the auth service, exact shapes of NDJSON lines, SSE
//! chunks and error objects; then the stock `ollama` and `openai` Python
//! clients (`tests/clients/stock_clients.py`) against it. Generations are
//! short and greedy.

use lamina_tests::{
    FileServer, Host, HostOptions, admin_poll, admin_token, client, register, test_gguf,
    test_models_dir, test_python, workspace,
};
use serde_json::{Value, json};

const MODEL: &str = "gemma3:270m";
const EMBEDDER: &str = "all-minilm:l6-v2";
const SECRET: &str = "inference-api-tests-secret-32-bytes-or-more";

/// The application on the embedded defaults in `dir`, with the test
/// models and these rate-limit classes (`None`: generous ones).
fn app(dir: &std::path::Path, rate_limits: Option<&str>) -> Host {
    app_on(dir, rate_limits, &test_models_dir(), "")
}

/// [`app`] on the models directory `models`, with more `[inference]`
/// settings.
fn app_on(
    dir: &std::path::Path,
    rate_limits: Option<&str>,
    models: &std::path::Path,
    inference: &str,
) -> Host {
    let options = match rate_limits {
        Some(classes) => HostOptions::app_with_rate_limits(classes),
        None => HostOptions::app(),
    };
    Host::start(
        options
            .data_dir(dir)
            .runtime_config(&format!(
                "[inference]\nmodels_dir = \"{}\"\n{inference}",
                models.display()
            ))
            .env("LAMINA_JWT_SECRET", SECRET)
            .with_admin(),
    )
}

/// A fresh user's API key and user id.
async fn api_key(host: &Host) -> (String, String) {
    let (mut keys, user) = api_keys(host, 1).await;
    (keys.remove(0), user)
}

/// `n` API keys of one fresh user, and the user's id.
async fn api_keys(host: &Host, n: usize) -> (Vec<String>, String) {
    let (_, _, registered) = register(host).await;
    let access = registered["accessToken"].as_str().unwrap();
    let mut keys = Vec::new();
    for i in 0..n {
        let key: Value = client()
            .post(host.at("/api/auth/api-keys"))
            .bearer_auth(access)
            .json(&json!({"name": format!("sdk {i}")}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        keys.push(key["key"].as_str().unwrap().to_owned());
    }
    (keys, registered["user"]["id"].as_str().unwrap().to_owned())
}

async fn post(host: &Host, key: &str, path: &str, body: Value) -> reqwest::Response {
    client()
        .post(host.at(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap()
}

async fn get(host: &Host, key: &str, path: &str) -> reqwest::Response {
    client()
        .get(host.at(path))
        .bearer_auth(key)
        .send()
        .await
        .unwrap()
}

/// The NDJSON lines of a response.
async fn lines(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const DURATIONS: [&str; 4] = [
    "total_duration",
    "load_duration",
    "prompt_eval_duration",
    "eval_duration",
];

fn greedy(num_predict: i32) -> Value {
    json!({"temperature": 0, "num_predict": num_predict})
}

#[tokio::test]
async fn ollama_endpoints_speak_ollamas_wire_format() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path(), None);
    let (key, _) = api_key(&host).await;

    // generate: NDJSON pieces, then the statistics; the same text as one
    // object with `stream: false`.
    let request = json!({"model": MODEL, "prompt": "Name three colors.", "options": greedy(12)});
    let streamed = lines(post(&host, &key, "/api/generate", request.clone()).await).await;
    let (last, pieces) = streamed.split_last().unwrap();
    assert!(
        pieces
            .iter()
            .all(|l| l["done"] == false && l["model"] == MODEL && l["response"].is_string())
    );
    assert!(pieces[0]["created_at"].as_str().unwrap().ends_with('Z'));
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    assert_eq!(last["eval_count"], 12);
    assert!(last["prompt_eval_count"].as_u64().unwrap() > 3);
    for field in DURATIONS {
        assert!(last[field].is_u64(), "{field}: {last}");
    }
    assert!(last["total_duration"].as_u64() >= last["eval_duration"].as_u64());
    let text: String = pieces
        .iter()
        .map(|l| l["response"].as_str().unwrap())
        .collect();
    let mut whole = request.clone();
    whole["stream"] = false.into();
    let response = post(&host, &key, "/api/generate", whole).await;
    assert_eq!(response.status(), 200);
    let one: Value = response.json().await.unwrap();
    assert_eq!(one["response"].as_str().unwrap(), text);
    assert_eq!(one["done"], true);

    // chat: `message` pieces.
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi!"}], "options": greedy(6), "stream": false});
    let answer: Value = post(&host, &key, "/api/chat", chat)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(answer["message"]["role"], "assistant");
    assert!(answer["message"]["content"].is_string());
    assert_eq!(answer["eval_count"], 6);
    let chat = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi!"}], "options": greedy(6)});
    let streamed = lines(post(&host, &key, "/api/chat", chat).await).await;
    let text: String = streamed
        .iter()
        .map(|l| l["message"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, answer["message"]["content"].as_str().unwrap());

    // embed, and the older embeddings.
    let embedded: Value = post(
        &host,
        &key,
        "/api/embed",
        json!({"model": EMBEDDER, "input": ["a cat", "a dog"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(embedded["embeddings"].as_array().unwrap().len(), 2);
    assert_eq!(embedded["embeddings"][0].as_array().unwrap().len(), 384);
    let legacy: Value = post(
        &host,
        &key,
        "/api/embeddings",
        json!({"model": EMBEDDER, "prompt": "a cat"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(legacy["embedding"].as_array().unwrap().len(), 384);

    // tags, show, ps, version.
    let tags: Value = get(&host, &key, "/api/tags").await.json().await.unwrap();
    let gemma = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == MODEL)
        .unwrap();
    assert_eq!(gemma["details"]["family"], "gemma3");
    assert_eq!(gemma["details"]["quantization_level"], "Q4_K_M");
    assert_eq!(gemma["details"]["format"], "gguf");
    assert!(gemma["modified_at"].as_str().unwrap().ends_with('Z'));
    let show: Value = post(&host, &key, "/api/show", json!({"model": MODEL}))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(show["model_info"]["gemma3.context_length"], 32768);
    assert_eq!(show["capabilities"], json!(["completion"]));
    let ps: Value = get(&host, &key, "/api/ps").await.json().await.unwrap();
    assert!(
        ps["models"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"] == MODEL),
        "{ps}"
    );
    let version: Value = get(&host, &key, "/api/version").await.json().await.unwrap();
    assert!(version["version"].is_string());

    // Errors are `{"error": "..."}` with the right status.
    let missing = post(
        &host,
        &key,
        "/api/generate",
        json!({"model": "nope:1", "prompt": "x"}),
    )
    .await;
    assert_eq!(missing.status(), 404);
    assert!(missing.json::<Value>().await.unwrap()["error"].is_string());
    let bad = post(
        &host,
        &key,
        "/api/generate",
        json!({"model": MODEL, "prompt": "x", "options": {"temperature": 9}}),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let format = post(
        &host,
        &key,
        "/api/chat",
        json!({"model": MODEL, "messages": [], "format": 7}),
    )
    .await;
    assert_eq!(format.status(), 400);
    // `"format": ""` is no format, as in Ollama.
    let no_format = post(
        &host,
        &key,
        "/api/chat",
        json!({"model": MODEL, "messages": [], "format": ""}),
    )
    .await;
    assert_eq!(no_format.status(), 200);

    // Structured output: the reply parses and matches the schema.
    let schema = json!({"type": "object", "properties": {"color": {"type": "string", "enum": ["red", "green", "blue"]}}, "required": ["color"]});
    let structured = json!({"model": MODEL, "messages": [{"role": "user", "content": "Pick a color."}], "format": schema, "stream": false, "options": {"temperature": 0, "num_predict": 40}});
    let answer: Value = post(&host, &key, "/api/chat", structured)
        .await
        .json()
        .await
        .unwrap();
    let content: Value =
        serde_json::from_str(answer["message"]["content"].as_str().unwrap()).unwrap();
    assert!(
        ["red", "green", "blue"].contains(&content["color"].as_str().unwrap()),
        "{content}"
    );
    let anonymous = client().get(host.at("/api/tags")).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
}

/// The `data:` payloads of a server-sent event stream.
async fn events(response: reqwest::Response) -> Vec<String> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = response.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    text.split("\n\n")
        .filter(|e| !e.is_empty())
        .map(|e| {
            e.strip_prefix("data: ")
                .unwrap_or_else(|| panic!("{e}"))
                .to_owned()
        })
        .collect()
}

#[tokio::test]
async fn openai_endpoints_speak_openais_wire_format() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path(), None);
    let (key, user_id) = api_key(&host).await;
    let messages = json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Say hello."}]);

    let whole: Value = post(
        &host,
        &key,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(whole["object"], "chat.completion");
    assert!(whole["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(whole["choices"][0]["message"]["role"], "assistant");
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert_eq!(whole["usage"]["completion_tokens"], 8);
    assert_eq!(
        whole["usage"]["total_tokens"].as_u64().unwrap(),
        whole["usage"]["prompt_tokens"].as_u64().unwrap() + 8
    );

    let stream = post(&host, &key, "/v1/chat/completions", json!({"model": MODEL, "messages": messages, "max_tokens": 8, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}})).await;
    let chunks = events(stream).await;
    let (done, chunks) = chunks.split_last().unwrap();
    assert_eq!(done, "[DONE]");
    let chunks: Vec<Value> = chunks
        .iter()
        .map(|c| serde_json::from_str(c).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"])
    );
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["completion_tokens"], 8);
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "length");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(
        text,
        whole["choices"][0]["message"]["content"].as_str().unwrap()
    );

    let completion: Value = post(
        &host,
        &key,
        "/v1/completions",
        json!({"model": MODEL, "prompt": "The sky is", "max_tokens": 4, "temperature": 0}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(completion["object"], "text_completion");
    assert!(completion["choices"][0]["text"].is_string());

    let embeddings: Value = post(
        &host,
        &key,
        "/v1/embeddings",
        json!({"model": EMBEDDER, "input": ["one", "two"]}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(embeddings["object"], "list");
    assert_eq!(embeddings["data"][1]["index"], 1);
    assert_eq!(
        embeddings["data"][0]["embedding"].as_array().unwrap().len(),
        384
    );

    let models: Value = get(&host, &key, "/v1/models").await.json().await.unwrap();
    assert!(
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["id"] == MODEL && m["object"] == "model")
    );
    let one: Value = get(&host, &key, "/v1/models/gemma3:270m")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(one["id"], MODEL);

    // Errors in OpenAI's shape.
    let missing = post(
        &host,
        &key,
        "/v1/chat/completions",
        json!({"model": "nope:1", "messages": messages}),
    )
    .await;
    assert_eq!(missing.status(), 404);
    let error: Value = missing.json().await.unwrap();
    assert_eq!(error["error"]["type"], "not_found_error");
    assert_eq!(error["error"]["param"], "model");
    // A path of the API with a method it does not take: 405 with `Allow`,
    // in OpenAI's shape.
    let wrong = get(&host, &key, "/v1/chat/completions").await;
    assert_eq!(wrong.status(), 405);
    assert_eq!(wrong.headers()["allow"], "POST");
    let wrong: Value = wrong.json().await.unwrap();
    assert!(wrong["error"]["message"].is_string(), "{wrong}");
    let json_object = post(&host, &key, "/v1/chat/completions", json!({"model": MODEL, "messages": messages, "max_tokens": 40, "temperature": 0, "response_format": {"type": "json_object"}})).await;
    let json_object: Value = json_object.json().await.unwrap();
    let content = json_object["choices"][0]["message"]["content"]
        .as_str()
        .unwrap();
    // A JSON object, or (cut short by max_tokens; the base model's JSON
    // may run long) the start of one: never anything else.
    assert!(content.starts_with('{'), "{content}");
    match serde_json::from_str::<Value>(content) {
        Ok(value) => assert!(value.is_object(), "{content}"),
        Err(e) => {
            assert!(e.is_eof(), "{e}: {content}");
            assert_eq!(json_object["choices"][0]["finish_reason"], "length");
        }
    }
    let bad_format = post(
        &host,
        &key,
        "/v1/chat/completions",
        json!({"model": MODEL, "messages": messages, "response_format": {"type": "xml"}}),
    )
    .await;
    assert_eq!(bad_format.status(), 400);
    assert_eq!(
        bad_format.json::<Value>().await.unwrap()["error"]["param"],
        "response_format"
    );

    // Every call's tokens are recorded for the caller.
    let rows = usage_rows(&host, &user_id, |rows| rows.len() >= 4).await;
    assert!(
        rows.iter().any(|r| r["model"] == MODEL
            && r["completionTokens"] == 8
            && r["doneReason"] == "length")
    );
    assert!(rows.iter().any(|r| r["model"] == EMBEDDER
        && r["completionTokens"] == 0
        && r["doneReason"].is_null()));
}

/// The usage rows recorded for `user_id`, once `ready` accepts them.
async fn usage_rows(host: &Host, user_id: &str, ready: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let path = format!("/api/outbox/usage?userId={user_id}");
    let rows = admin_poll(host, &path, |rows| ready(rows.as_array().unwrap())).await;
    rows.as_array().unwrap().clone()
}

/// A client that hangs up part-way still pays for what was generated: the
/// component cancels the generation and records the tokens it used.
#[tokio::test]
async fn a_generation_the_client_abandons_is_still_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path(), None);
    let (key, user_id) = api_key(&host).await;
    for path in ["/api/generate", "/v1/completions"] {
        let body = if path == "/api/generate" {
            json!({"model": MODEL, "prompt": "Write a long story about a lighthouse keeper.", "options": greedy(4000)})
        } else {
            json!({"model": MODEL, "prompt": "Write a long story about a lighthouse keeper.", "max_tokens": 4000, "temperature": 0, "stream": true})
        };
        let mut response = post(&host, &key, path, body).await;
        assert_eq!(response.status(), 200);
        let mut lines = 0;
        while lines < 4 {
            let chunk = response.chunk().await.unwrap().expect("more output");
            lines += chunk.iter().filter(|b| **b == b'\n').count();
        }
        drop(response);
    }
    let rows = usage_rows(&host, &user_id, |rows| rows.len() >= 2).await;
    for row in &rows {
        assert_eq!(row["doneReason"], "cancelled", "{row}");
        let completion = row["completionTokens"].as_u64().unwrap();
        assert!((2..4000).contains(&completion), "{row}");
        assert!(row["promptTokens"].as_u64().unwrap() > 0, "{row}");
    }
}

#[tokio::test]
async fn past_the_limit_calls_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(
        dir.path(),
        Some(
            "[rate_limit.classes.auth]\nrequests = 1000\nper = \"1m\"\n\
             [rate_limit.classes.api]\nrequests = 1000\nper = \"1m\"\n\
             [rate_limit.classes.login]\nrequests = 1000\nper = \"1m\"\n\
             [rate_limit.classes.inference]\nrequests = 3\nper = \"1m\"\nburst = 3\n",
        ),
    );
    let (keys, _) = api_keys(&host, 2).await;
    let key = &keys[0];
    for _ in 0..3 {
        assert_eq!(get(&host, key, "/api/tags").await.status(), 200);
    }
    let refused = get(&host, key, "/v1/models").await;
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // The same user's other key has its own budget.
    assert_eq!(get(&host, &keys[1], "/api/tags").await.status(), 200);
}

/// Runs one check of `tests/clients/stock_clients.py` against `host`.
fn stock_clients(host: &Host, key: &str, check: &str) {
    stock_clients_with(host, key, check, &[]);
}

/// [`stock_clients`] with more environment for the check.
fn stock_clients_with(host: &Host, key: &str, check: &str, env: &[(&str, &str)]) {
    let output = std::process::Command::new(test_python())
        .arg(workspace().join("tests/clients/stock_clients.py"))
        .arg(check)
        .envs(env.iter().copied())
        .env("LAMINA_URL", host.at(""))
        .env("LAMINA_KEY", key)
        .env("MODEL", MODEL)
        .env("EMBEDDER", EMBEDDER)
        .output()
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim() == "ok",
        "{check}: {stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn the_stock_ollama_and_openai_clients_work() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path(), None);
    let (key, _) = api_key(&host).await;
    stock_clients(&host, &key, "ollama");
    stock_clients(&host, &key, "openai");
}

#[tokio::test]
async fn langchain_works() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path(), None);
    let (key, _) = api_key(&host).await;
    stock_clients(&host, &key, "langchain");
}

/// For local single-user use the inference routes can be opened to
/// anonymous callers (spin.toml `auth = "none"`, as the comment there
/// says); model management still needs an administrator's credentials.
#[tokio::test]
async fn anonymous_access_is_a_manifest_switch() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(
        HostOptions::app()
            .edit_manifest(|manifest| {
                let (before, after) = manifest
                    .split_once("# ---- inference-api")
                    .expect("the inference-api section of spin.toml");
                let (routes, rest) = after.split_once("[component.").unwrap();
                // Every route but the Admin-only ones.
                let routes: Vec<String> = routes
                    .split("[[trigger.http]]")
                    .map(|route| {
                        if route.contains("roles") {
                            route.to_owned()
                        } else {
                            route.replace("auth = \"required\"", "auth = \"none\"")
                        }
                    })
                    .collect();
                format!(
                    "{before}# ---- inference-api{}[component.{rest}",
                    routes.join("[[trigger.http]]")
                )
            })
            .data_dir(dir.path())
            .runtime_config(&format!(
                "[inference]\nmodels_dir = \"{}\"\n",
                test_models_dir().display()
            ))
            .env("LAMINA_JWT_SECRET", SECRET),
    );
    stock_clients(&host, "", "anonymous");
    let pull = client()
        .post(host.at("/api/pull"))
        .json(&json!({"model": "gemma3:other", "source": "http://127.0.0.1:9/x.gguf"}))
        .send()
        .await
        .unwrap();
    assert_eq!(pull.status(), 401);
}

#[tokio::test]
async fn the_stock_client_sees_its_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(
        dir.path(),
        Some(
            "[rate_limit.classes.auth]\nrequests = 1000\nper = \"1m\"\n\
             [rate_limit.classes.api]\nrequests = 1000\nper = \"1m\"\n\
             [rate_limit.classes.login]\nrequests = 1000\nper = \"1m\"\n\
             [rate_limit.classes.inference]\nrequests = 3\nper = \"1m\"\nburst = 3\n",
        ),
    );
    let (key, _) = api_key(&host).await;
    stock_clients(&host, &key, "limit");
}

// Multi-threaded: the file server runs on this runtime while the stock
// client's process blocks the test's own thread.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn administrators_pull_copy_and_delete_models() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let server = FileServer::start(&test_gguf()).await;
    let sha256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
    // One name pullable without a source (`ollama pull gemma3:registered`).
    let registered = format!(
        "pull_hosts = [\"127.0.0.1\"]\nallowed_private_sources = [\"127.0.0.1\"]\n\
         [inference.sources.\"gemma3:registered\"]\nurl = \"{}\"\nsha256 = \"{sha256}\"\n",
        server.model_url()
    );
    let host = app_on(dir.path(), None, &models, &registered);
    let (user_key, _) = api_key(&host).await;
    let admin = admin_token(&host).await;
    let pull = json!({"model": "gemma3:pulled", "source": server.model_url(), "sha256": sha256});
    // Users may not; administrators get Ollama's progress lines.
    assert_eq!(
        post(&host, &user_key, "/api/pull", pull.clone())
            .await
            .status(),
        403
    );
    let progress = lines(post(&host, &admin, "/api/pull", pull).await).await;
    assert_eq!(
        progress.last().unwrap()["status"],
        "success",
        "{progress:?}"
    );
    assert!(progress.iter().any(|l| l["total"].is_u64()), "{progress:?}");
    // By name: the stock client, as Ollama users type it.
    stock_clients_with(
        &host,
        &admin,
        "pull",
        &[("PULL_MODEL", "gemma3:registered")],
    );
    let wrong_sha = post(
        &host,
        &admin,
        "/api/pull",
        json!({"model": "gemma3:registered", "sha256": "0".repeat(64)}),
    )
    .await;
    assert_eq!(wrong_sha.status(), 400);
    assert_eq!(delete_model(&host, &admin, "gemma3:registered").await, 200);

    let copy = post(
        &host,
        &admin,
        "/api/copy",
        json!({"source": "gemma3:pulled", "destination": "gemma3:alias"}),
    )
    .await;
    assert_eq!(copy.status(), 200);
    let tags: Value = get(&host, &admin, "/api/tags").await.json().await.unwrap();
    let names: Vec<&str> = tags["models"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gemma3:alias", "gemma3:pulled"]);
    assert_eq!(delete_model(&host, &admin, "gemma3:alias").await, 200);
    assert_eq!(delete_model(&host, &admin, "gemma3:alias").await, 404);
    assert_eq!(delete_model(&host, &admin, "gemma3:pulled").await, 200);
    assert_eq!(std::fs::read_dir(models.join("blobs")).unwrap().count(), 0);

    // A long pull that is not streamed (the Python client's default) is
    // not a 504 at the route's timeout: 200 comes once it is under way,
    // the outcome later in the body.
    server
        .stall
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let started = std::time::Instant::now();
    let slow = post(
        &host,
        &admin,
        "/api/pull",
        json!({"model": "gemma3:slow", "source": server.model_url(), "sha256": sha256, "stream": false}),
    )
    .await;
    assert_eq!(slow.status(), 200);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// `DELETE /api/delete` of `model`: the status.
async fn delete_model(host: &Host, key: &str, model: &str) -> u16 {
    client()
        .delete(host.at("/api/delete"))
        .bearer_auth(key)
        .json(&json!({"model": model}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}
