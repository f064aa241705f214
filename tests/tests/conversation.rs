//! The conversation service (`components/conversation`) end to end: the
//! application's own spin.toml on the embedded defaults (PostgreSQL where
//! said), real accounts from the auth service, and the real instruction-
//! tuned model (`smollm2:135m`, greedy, a few tokens) for chat.

use std::time::Duration;

use lamina_tests::{
    Host, HostOptions, PgSchema, RedisPrefix, TcpProxy, admin_poll, call, client, eventually,
    expect, new_conversation, sse_events as events, user_session, workspace,
};
use serde_json::{Value, json};

const CHAT_MODEL: &str = "smollm2:135m";
const SECRET: &str = "conversation-tests-secret-32-bytes-or-more";

fn options() -> HostOptions {
    HostOptions::app_on_test_models(SECRET)
}

/// The application on SQLite in `dir`.
fn app(dir: &std::path::Path) -> Host {
    Host::start(options().data_dir(dir))
}

/// Greedy and short.
fn greedy(num_predict: i32) -> Value {
    json!({"temperature": 0, "num_predict": num_predict})
}

/// The active path's messages.
async fn path(host: &Host, token: &str, conversation: &str) -> Vec<Value> {
    let page = expect(
        call(
            host,
            Some(token),
            "GET",
            &format!("/api/conversations/{conversation}/messages?pageSize=100"),
            None,
        )
        .await,
        200,
    );
    page["items"].as_array().unwrap().clone()
}

/// Sends a message without streaming; returns the JSON answer.
async fn say(host: &Host, token: &str, conversation: &str, body: Value) -> Value {
    let mut body = body;
    body["stream"] = false.into();
    expect(
        call(
            host,
            Some(token),
            "POST",
            &format!("/api/conversations/{conversation}/messages"),
            Some(body),
        )
        .await,
        200,
    )
}

/// Starts a streamed message; returns the open response.
async fn stream(host: &Host, token: &str, conversation: &str, body: Value) -> reqwest::Response {
    let response = client()
        .post(host.at(&format!("/api/conversations/{conversation}/messages")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    response
}

/// Reads a stream until its text holds `needle`; returns the text so far.
async fn read_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut text = String::new();
    while !text.contains(needle) {
        let chunk = tokio::time::timeout(Duration::from_secs(30), response.chunk())
            .await
            .expect("the stream stalled")
            .unwrap()
            .expect("the stream ended early");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    text
}

#[tokio::test]
async fn folders_form_a_tree_without_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path());
    let (token, _) = user_session(&host).await;
    let t = Some(token.as_str());

    let tree = expect(call(&host, t, "GET", "/api/folders", None).await, 200);
    assert_eq!(tree["parentId"], Value::Null);
    assert_eq!(tree["children"], json!([]));
    let root = tree["id"].as_str().unwrap().to_owned();

    let folder = |name: &str, parent: Option<&str>| json!({"name": name, "parentId": parent});
    let a = expect(
        call(&host, t, "POST", "/api/folders", Some(folder("Work", None))).await,
        201,
    );
    assert_eq!(a["parentId"], root.as_str());
    let a = a["id"].as_str().unwrap().to_owned();
    let b = expect(
        call(
            &host,
            t,
            "POST",
            "/api/folders",
            Some(folder("Plans", Some(&a))),
        )
        .await,
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = expect(
        call(
            &host,
            t,
            "POST",
            "/api/folders",
            Some(folder("2027", Some(&b))),
        )
        .await,
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Names are unique per parent, whatever their case.
    expect(
        call(&host, t, "POST", "/api/folders", Some(folder("work", None))).await,
        409,
    );
    expect(
        call(
            &host,
            t,
            "POST",
            "/api/folders",
            Some(folder("work", Some(&b))),
        )
        .await,
        201,
    );
    // No cycles: not into itself, not below itself.
    for target in [&a, &c] {
        let problem = expect(
            call(
                &host,
                t,
                "PATCH",
                &format!("/api/folders/{a}"),
                Some(json!({"parentId": target})),
            )
            .await,
            400,
        );
        assert_eq!(problem["errors"][0]["field"], "parentId", "{problem}");
    }
    // The root stays.
    expect(
        call(&host, t, "DELETE", &format!("/api/folders/{root}"), None).await,
        409,
    );
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/folders/{root}"),
            Some(json!({"name": "x"})),
        )
        .await,
        400,
    );

    // Defaults: a conversation created in the folder takes them.
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/folders/{c}"),
            Some(json!({"systemPrompt": "Answer in French.", "options": {"temperature": 0.2}})),
        )
        .await,
        200,
    );
    let conversation = new_conversation(&host, &token, json!({"folderId": c})).await;
    assert_eq!(conversation["model"], CHAT_MODEL, "the default model");
    assert_eq!(conversation["systemPrompt"], "Answer in French.");
    assert_eq!(conversation["options"]["temperature"], 0.2);

    // Move c next to a; the tree shows it with its conversation.
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/folders/{c}"),
            Some(json!({"parentId": root})),
        )
        .await,
        200,
    );
    let tree = expect(call(&host, t, "GET", "/api/folders", None).await, 200);
    let names: Vec<&str> = tree["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["2027", "Work"]);
    assert_eq!(tree["children"][0]["conversationCount"], 1);

    // Contents, paged: folders first, then conversations.
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/folders/{b}"),
            Some(json!({"parentId": c})),
        )
        .await,
        200,
    );
    let contents = expect(
        call(
            &host,
            t,
            "GET",
            &format!("/api/folders/{c}/contents?pageSize=1"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(contents["total"], 2);
    assert_eq!(contents["items"][0]["type"], "folder");
    let contents = expect(
        call(
            &host,
            t,
            "GET",
            &format!("/api/folders/{c}/contents?pageSize=1&page=2"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(contents["items"][0]["type"], "conversation");

    // Not empty: refused, unless recursive, which moves its conversations up.
    expect(
        call(&host, t, "DELETE", &format!("/api/folders/{c}"), None).await,
        409,
    );
    expect(
        call(
            &host,
            t,
            "DELETE",
            &format!("/api/folders/{c}?recursive=true"),
            None,
        )
        .await,
        204,
    );
    let moved = expect(
        call(
            &host,
            t,
            "GET",
            &format!(
                "/api/conversations/{}",
                conversation["id"].as_str().unwrap()
            ),
            None,
        )
        .await,
        200,
    );
    assert_eq!(moved["folderId"], root.as_str());
    expect(
        call(&host, t, "GET", &format!("/api/folders/{b}"), None).await,
        404,
    );
    // Unknown fields and bad names are 400s with the field named.
    let problem = expect(
        call(&host, t, "POST", "/api/folders", Some(json!({"name": ""}))).await,
        400,
    );
    assert_eq!(problem["errors"][0]["field"], "name");
    expect(
        call(
            &host,
            t,
            "POST",
            "/api/folders",
            Some(json!({"name": "x", "colour": 1})),
        )
        .await,
        400,
    );
}

#[tokio::test]
async fn conversations_are_listed_filtered_tagged_trashed_and_cloned() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path());
    let (token, _) = user_session(&host).await;
    let t = Some(token.as_str());

    let problem = expect(
        call(
            &host,
            t,
            "POST",
            "/api/conversations",
            Some(json!({"model": "nope:1b"})),
        )
        .await,
        400,
    );
    assert!(
        problem["detail"].as_str().unwrap().contains("nope:1b"),
        "{problem}"
    );
    expect(
        call(
            &host,
            t,
            "POST",
            "/api/conversations",
            Some(json!({"model": "all-minilm:l6-v2"})),
        )
        .await,
        400,
    );
    expect(
        call(
            &host,
            t,
            "POST",
            "/api/conversations",
            Some(json!({"title": "x".repeat(201)})),
        )
        .await,
        400,
    );

    let first = new_conversation(
        &host,
        &token,
        json!({"title": "Alpha", "tags": ["Work", "work", " ideas "]}),
    )
    .await;
    assert_eq!(first["tags"], json!(["ideas", "work"]));
    assert!(first["createdAt"].as_str().unwrap().ends_with('Z'));
    let second = new_conversation(&host, &token, json!({"title": "beta"})).await;
    let third = new_conversation(&host, &token, json!({})).await;
    assert_eq!(third["title"], "New conversation");
    let [first, second, third] =
        [&first, &second, &third].map(|c| c["id"].as_str().unwrap().to_owned());

    let list = |query: &str| {
        let host = &host;
        let query = query.to_owned();
        let token = token.clone();
        async move {
            let page = expect(
                call(
                    host,
                    Some(&token),
                    "GET",
                    &format!("/api/conversations?{query}"),
                    None,
                )
                .await,
                200,
            );
            page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|c| c["id"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list("").await,
        [third.clone(), second.clone(), first.clone()],
        "newest first"
    );
    assert_eq!(
        list("sort=title").await,
        [first.clone(), second.clone(), third.clone()]
    );
    assert_eq!(list("pageSize=1&page=2").await, [second.as_str()]);
    assert_eq!(list("tag=WORK").await, [first.as_str()]);
    expect(
        call(&host, t, "GET", "/api/conversations?sort=size", None).await,
        400,
    );
    expect(
        call(&host, t, "GET", "/api/conversations?pageSize=101", None).await,
        400,
    );

    // Pin, archive, retag.
    let patched = expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/conversations/{second}"),
            Some(json!({"pinned": true, "tags": ["later"]})),
        )
        .await,
        200,
    );
    assert_eq!(patched["pinned"], true);
    assert_eq!(list("pinned=true").await, [second.as_str()]);
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/conversations/{third}"),
            Some(json!({"archived": true})),
        )
        .await,
        200,
    );
    assert!(
        !list("").await.contains(&third),
        "archived conversations leave the list"
    );
    assert_eq!(list("archived=true").await, [third.as_str()]);
    // Tags no conversation carries are gone.
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/conversations/{first}"),
            Some(json!({"tags": ["later"]})),
        )
        .await,
        200,
    );
    let tags = expect(
        call(&host, t, "GET", "/api/conversations/tags", None).await,
        200,
    );
    assert_eq!(tags["items"], json!([{"tag": "later", "count": 2}]));

    // Trash, restore, delete for good.
    expect(
        call(
            &host,
            t,
            "DELETE",
            &format!("/api/conversations/{first}"),
            None,
        )
        .await,
        204,
    );
    assert!(!list("").await.contains(&first));
    assert_eq!(list("deleted=true").await, [first.as_str()]);
    expect(
        call(
            &host,
            t,
            "GET",
            &format!("/api/conversations/{first}/messages"),
            None,
        )
        .await,
        200,
    );
    let restored = expect(
        call(
            &host,
            t,
            "POST",
            &format!("/api/conversations/{first}/restore"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(restored["deletedAt"], Value::Null);
    expect(
        call(
            &host,
            t,
            "DELETE",
            &format!("/api/conversations/{first}?permanent=true"),
            None,
        )
        .await,
        204,
    );
    expect(
        call(
            &host,
            t,
            "GET",
            &format!("/api/conversations/{first}"),
            None,
        )
        .await,
        404,
    );

    // Clone from a message: the path up to it, in a new conversation.
    let imported = import(
        &host,
        &token,
        &lamina_line(
            "Clone me",
            &[("user", "one"), ("assistant", "two"), ("user", "three")],
        ),
    )
    .await;
    let source = imported[0].as_str().unwrap();
    let messages = path(&host, &token, source).await;
    let clone = expect(
        call(
            &host,
            t,
            "POST",
            &format!("/api/conversations/{source}/clone"),
            Some(json!({"messageId": messages[1]["id"], "title": "Cloned"})),
        )
        .await,
        201,
    );
    assert_eq!(clone["title"], "Cloned");
    let copied = path(&host, &token, clone["id"].as_str().unwrap()).await;
    let texts: Vec<&str> = copied
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two"]);
    assert_ne!(
        copied[0]["id"], messages[0]["id"],
        "copies get ids of their own"
    );
}

/// An export line of a conversation whose messages form one path.
fn lamina_line(title: &str, messages: &[(&str, &str)]) -> String {
    let messages: Vec<Value> = messages
        .iter()
        .enumerate()
        .map(|(i, (role, content))| {
            json!({"id": format!("m{i}"), "parentId": (i > 0).then(|| format!("m{}", i - 1)), "role": role, "content": content})
        })
        .collect();
    json!({"format": "lamina.conversation.v1", "title": title, "model": CHAT_MODEL, "messages": messages}).to_string()
}

/// Imports `body`; returns the new conversations' ids.
async fn import(host: &Host, token: &str, body: &str) -> Vec<Value> {
    let response = client()
        .post(host.at("/api/conversations/import"))
        .bearer_auth(token)
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = response.status();
    let value: Value = response.json().await.unwrap();
    assert_eq!(status, 200, "{value}");
    assert_eq!(value["failed"], json!([]), "{value}");
    value["imported"].as_array().unwrap().clone()
}

#[tokio::test]
async fn chat_streams_and_stores_each_answer_once() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()).with_admin());
    let (token, user) = user_session(&host).await;
    let conversation = new_conversation(
        &host,
        &token,
        json!({"systemPrompt": "You are a helpful assistant."}),
    )
    .await;
    let id = conversation["id"].as_str().unwrap();

    // Not streamed: both messages back, as stored.
    let answer = say(
        &host,
        &token,
        id,
        json!({"content": "What is the capital of France?", "options": greedy(8)}),
    )
    .await;
    assert_eq!(answer["doneReason"], "length");
    assert_eq!(answer["usage"]["completionTokens"], 8);
    let first_answer = answer["message"]["content"].as_str().unwrap().to_owned();
    assert!(first_answer.contains("Paris"), "{first_answer}");
    assert_eq!(answer["message"]["parentId"], answer["userMessage"]["id"]);

    // Streamed: start, tokens whose deltas make the stored text, done.
    let response = stream(
        &host,
        &token,
        id,
        json!({"content": "And of Italy?", "options": greedy(6)}),
    )
    .await;
    let text = response.text().await.unwrap();
    let events = events(&text);
    assert_eq!(events[0].name, "start");
    let ids: Vec<u64> = events
        .iter()
        .map(|e| e.id.expect("every event has an id"))
        .collect();
    assert!(ids.windows(2).all(|w| w[1] > w[0]), "{ids:?}");
    let (done, middle) = events[1..].split_last().unwrap();
    assert_eq!(done.name, "done", "{text}");
    assert!(middle.iter().all(|e| e.name == "token"));
    let streamed: String = middle
        .iter()
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    let messages = path(&host, &token, id).await;
    assert_eq!(messages.len(), 4);
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user", "assistant"]);
    assert_eq!(messages[3]["content"], streamed.as_str());
    assert_eq!(messages[3]["id"], done.data["messageId"]);
    assert_eq!(messages[3]["id"], events[0].data["messageId"]);
    assert_eq!(messages[3]["model"], CHAT_MODEL);
    assert_eq!(messages[3]["options"]["num_predict"], 6);
    assert_eq!(
        messages[3]["completionTokens"],
        done.data["usage"]["completionTokens"]
    );
    let whole = expect(
        call(
            &host,
            Some(&token),
            "GET",
            &format!("/api/conversations/{id}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(whole["messageCount"], 4);
    assert_eq!(whole["currentMessageId"], messages[3]["id"]);

    // The model saw the system prompt and the whole history, in order and
    // with the right roles: the inference API, given the same messages,
    // evaluates exactly as many prompt tokens and answers the same.
    let history = json!([
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the capital of France?"},
        {"role": "assistant", "content": first_answer},
        {"role": "user", "content": "And of Italy?"},
    ]);
    let direct = expect(
        call(&host, Some(&token), "POST", "/api/chat", Some(json!({"model": CHAT_MODEL, "messages": history, "stream": false, "options": greedy(6)}))).await,
        200,
    );
    assert_eq!(
        direct["prompt_eval_count"],
        done.data["usage"]["promptTokens"]
    );
    assert_eq!(direct["message"]["content"], streamed.as_str());

    // Usage is recorded per generation, for the caller; the title comes
    // from the model (charged to them too, without a credential).
    let usage = admin_poll(&host, &format!("/api/outbox/usage?userId={user}"), |v| {
        v.as_array().is_some_and(|items| items.len() >= 3)
    })
    .await;
    let completions: Vec<u64> = usage
        .as_array()
        .unwrap()
        .iter()
        .filter(|u| u["model"] == CHAT_MODEL && u["credentialId"].is_string())
        .map(|u| u["completionTokens"].as_u64().unwrap())
        .collect();
    assert!(
        completions.contains(&8) && completions.contains(&6),
        "{usage}"
    );
    eventually("a generated title", || async {
        let c = expect(
            call(
                &host,
                Some(&token),
                "GET",
                &format!("/api/conversations/{id}"),
                None,
            )
            .await,
            200,
        );
        c["title"] != "New conversation"
    })
    .await;
    // Bad input: 400s naming the field, nothing stored.
    for body in [
        json!({"content": ""}),
        json!({"content": "x", "options": {"temperature": "hot"}}),
        json!({"content": "x", "extra": 1}),
        // Refused by the engine: the question is not stored either.
        json!({"content": "x", "options": {"temperature": 5}}),
    ] {
        expect(
            call(
                &host,
                Some(&token),
                "POST",
                &format!("/api/conversations/{id}/messages"),
                Some(body),
            )
            .await,
            400,
        );
    }
    let big = "x".repeat(600 << 10);
    expect(
        call(
            &host,
            Some(&token),
            "POST",
            &format!("/api/conversations/{id}/messages"),
            Some(json!({"content": big})),
        )
        .await,
        413,
    );
    assert_eq!(path(&host, &token, id).await.len(), 4);
}

#[tokio::test]
async fn a_title_the_user_set_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path());
    let (token, _) = user_session(&host).await;
    let c = new_conversation(&host, &token, json!({"title": "Mine"})).await;
    let id = c["id"].as_str().unwrap();
    say(
        &host,
        &token,
        id,
        json!({"content": "Hello!", "options": greedy(4)}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let c = expect(
        call(
            &host,
            Some(&token),
            "GET",
            &format!("/api/conversations/{id}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(c["title"], "Mine");
}

#[tokio::test]
async fn an_answer_outlives_its_client_and_stop_keeps_the_partial_answer() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path());
    let (token, _) = user_session(&host).await;

    // The client hangs up after the first token: the answer still ends
    // and is stored, once.
    let c = new_conversation(&host, &token, json!({})).await;
    let id = c["id"].as_str().unwrap().to_owned();
    let mut response = stream(
        &host,
        &token,
        &id,
        json!({"content": "Tell me about the sea.", "options": greedy(48)}),
    )
    .await;
    read_until(&mut response, "event: token").await;
    drop(response);
    eventually("the answer of a client gone", || async {
        path(&host, &token, &id).await.len() == 2
    })
    .await;
    let messages = path(&host, &token, &id).await;
    assert_ne!(messages[1]["doneReason"], "cancelled", "{}", messages[1]);
    assert!(!messages[1]["content"].as_str().unwrap().is_empty());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let c = expect(
        call(
            &host,
            Some(&token),
            "GET",
            &format!("/api/conversations/{id}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(c["messageCount"], 2, "stored once");

    // Stop from a second request ends it; the partial answer is stored
    // once, as cancelled.
    let c = new_conversation(&host, &token, json!({})).await;
    let id = c["id"].as_str().unwrap().to_owned();
    expect(
        call(
            &host,
            Some(&token),
            "POST",
            &format!("/api/conversations/{id}/stop"),
            None,
        )
        .await,
        409,
    );
    let mut response = stream(
        &host,
        &token,
        &id,
        json!({"content": "Count from 1 to 1000, separated by commas.", "options": greedy(1000)}),
    )
    .await;
    let mut text = read_until(&mut response, "event: token").await;
    let stopped = expect(
        call(
            &host,
            Some(&token),
            "POST",
            &format!("/api/conversations/{id}/stop"),
            None,
        )
        .await,
        202,
    );
    while let Some(chunk) = tokio::time::timeout(Duration::from_secs(30), response.chunk())
        .await
        .unwrap()
        .unwrap()
    {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let events = events(&text);
    let done = events.last().unwrap();
    assert_eq!(done.name, "done", "{text}");
    assert_eq!(done.data["doneReason"], "cancelled");
    assert_eq!(done.data["messageId"], stopped["messageId"]);
    let streamed: String = events
        .iter()
        .filter(|e| e.name == "token")
        .map(|e| e.data["delta"].as_str().unwrap())
        .collect();
    let messages = path(&host, &token, &id).await;
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[1]["doneReason"], "cancelled");
    assert_eq!(messages[1]["content"], streamed.as_str());
    assert!(messages[1]["completionTokens"].as_u64().unwrap() < 1000);
}

#[tokio::test]
async fn edits_and_regenerations_are_branches() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path());
    let (token, _) = user_session(&host).await;
    let t = Some(token.as_str());
    let c = new_conversation(&host, &token, json!({})).await;
    let id = c["id"].as_str().unwrap();

    let first = say(
        &host,
        &token,
        id,
        json!({"content": "Name a fruit.", "options": greedy(4)}),
    )
    .await;
    let question = first["userMessage"]["id"].as_str().unwrap().to_owned();
    let answer = first["message"]["id"].as_str().unwrap().to_owned();

    // Regenerate: a sibling answer, now the active one.
    let again = expect(
        call(&host, t, "POST", &format!("/api/conversations/{id}/messages/{answer}/regenerate"), Some(json!({"stream": false, "options": {"temperature": 1.5, "seed": 7, "num_predict": 4}}))).await,
        200,
    );
    let second = again["message"]["id"].as_str().unwrap().to_owned();
    assert_eq!(again["message"]["parentId"], question.as_str());
    assert_eq!(again["message"]["siblings"], json!([answer, second]));
    let messages = path(&host, &token, id).await;
    assert_eq!(messages[1]["id"], second.as_str());
    assert_eq!(messages[1]["siblings"], json!([answer, second]));

    // Edit the question: a new root branch; nothing is lost.
    let edited = say(
        &host,
        &token,
        id,
        json!({"content": "Name a vegetable.", "parentId": null, "options": greedy(4)}),
    )
    .await;
    assert_eq!(edited["userMessage"]["parentId"], Value::Null);
    let messages = path(&host, &token, id).await;
    assert_eq!(messages[0]["content"], "Name a vegetable.");
    assert_eq!(messages[0]["siblings"].as_array().unwrap().len(), 2);

    // Switch back to the first branch: the path ends at its newest leaf.
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/conversations/{id}"),
            Some(json!({"currentMessageId": question})),
        )
        .await,
        200,
    );
    let messages = path(&host, &token, id).await;
    let ids: Vec<&str> = messages.iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [question.as_str(), second.as_str()]);
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/conversations/{id}"),
            Some(json!({"currentMessageId": answer})),
        )
        .await,
        200,
    );
    assert_eq!(path(&host, &token, id).await[1]["id"], answer.as_str());
    let c = expect(
        call(&host, t, "GET", &format!("/api/conversations/{id}"), None).await,
        200,
    );
    assert_eq!(c["messageCount"], 5);
}

/// Search on a fresh host with `options`.
async fn search_finds_words_in_messages_and_titles(options: HostOptions) {
    let host = Host::start(options);
    let (token, _) = user_session(&host).await;
    let (other, _) = user_session(&host).await;
    let body = [
        lamina_line(
            "Holiday plans",
            &[
                ("user", "Where should we go?"),
                (
                    "assistant",
                    "Consider the Dolomites: <great> hiking & views.",
                ),
            ],
        ),
        lamina_line("Dolomites packing list", &[("user", "What to pack?")]),
        lamina_line("Unrelated", &[("user", "Nothing to see here.")]),
    ]
    .join("\n");
    let ids = import(&host, &token, &body).await;
    import(
        &host,
        &other,
        &lamina_line("Other's", &[("user", "Dolomites too")]),
    )
    .await;

    let found = expect(
        call(
            &host,
            Some(&token),
            "GET",
            "/api/conversations/search?q=dolomites",
            None,
        )
        .await,
        200,
    );
    assert_eq!(found["total"], 2, "{found}");
    // The title match ranks first; the message match names its message.
    assert_eq!(found["items"][0]["conversationId"], ids[1]);
    assert_eq!(found["items"][0]["messageId"], Value::Null);
    assert_eq!(found["items"][1]["conversationId"], ids[0]);
    let messages = path(&host, &token, ids[0].as_str().unwrap()).await;
    assert_eq!(found["items"][1]["messageId"], messages[1]["id"]);
    let snippet = found["items"][1]["snippet"].as_str().unwrap();
    assert!(snippet.contains("<mark>Dolomites</mark>"), "{snippet}");
    assert!(
        snippet.contains("&lt;great&gt;") && snippet.contains("&amp;"),
        "escaped: {snippet}"
    );
    // Prefixes of the last word match; every word must.
    let found = expect(
        call(
            &host,
            Some(&token),
            "GET",
            "/api/conversations/search?q=consider%20dolo",
            None,
        )
        .await,
        200,
    );
    assert_eq!(found["total"], 1);
    let found = expect(
        call(
            &host,
            Some(&token),
            "GET",
            "/api/conversations/search?q=dolomites%20nothing",
            None,
        )
        .await,
        200,
    );
    assert_eq!(found["total"], 0);
    // Filters apply; only the caller's conversations are searched.
    let found = expect(
        call(
            &host,
            Some(&token),
            "GET",
            "/api/conversations/search?q=dolomites&archived=true",
            None,
        )
        .await,
        200,
    );
    assert_eq!(found["total"], 0);
    let found = expect(
        call(
            &host,
            Some(&other),
            "GET",
            "/api/conversations/search?q=hiking",
            None,
        )
        .await,
        200,
    );
    assert_eq!(found["total"], 0);
    // Query syntax is not passed through.
    let found = expect(
        call(
            &host,
            Some(&token),
            "GET",
            "/api/conversations/search?q=%22dolomites%22%20OR%20*",
            None,
        )
        .await,
        200,
    );
    assert!(found["total"].as_u64().unwrap() <= 2);
    expect(
        call(
            &host,
            Some(&token),
            "GET",
            "/api/conversations/search?q=%20%2B%20",
            None,
        )
        .await,
        400,
    );
}

#[tokio::test]
async fn search_finds_words_in_messages_and_titles_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    search_finds_words_in_messages_and_titles(options().data_dir(dir.path())).await;
}

#[tokio::test]
async fn search_finds_words_in_messages_and_titles_on_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let schema = PgSchema::new();
    search_finds_words_in_messages_and_titles(
        options()
            .data_dir(dir.path())
            .databases(&schema.databases()),
    )
    .await;
}

#[tokio::test]
async fn notes_feedback_and_shares() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path());
    let (token, _) = user_session(&host).await;
    let t = Some(token.as_str());
    // "héllo 👋 world": the emoji is two UTF-16 code units; 14 in all.
    let ids = import(
        &host,
        &token,
        &lamina_line("Notes", &[("user", "hi"), ("assistant", "héllo 👋 world")]),
    )
    .await;
    let id = ids[0].as_str().unwrap();
    let messages = path(&host, &token, id).await;
    let (question, answer) = (
        messages[0]["id"].as_str().unwrap(),
        messages[1]["id"].as_str().unwrap(),
    );

    let notes = format!("/api/conversations/{id}/messages/{answer}/notes");
    let note = expect(
        call(
            &host,
            t,
            "POST",
            &notes,
            Some(json!({"fromIndex": 6, "toIndex": 14, "content": "emoji and world"})),
        )
        .await,
        201,
    );
    for (from, to) in [(0, 15), (5, 5), (-1, 2)] {
        let problem = expect(
            call(
                &host,
                t,
                "POST",
                &notes,
                Some(json!({"fromIndex": from, "toIndex": to, "content": "x"})),
            )
            .await,
            400,
        );
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .unwrap()
                .contains("14"),
            "{problem}"
        );
    }
    expect(
        call(
            &host,
            t,
            "POST",
            &format!("/api/conversations/{id}/messages/{question}/notes"),
            Some(json!({"fromIndex": 0, "toIndex": 2, "content": "on the question"})),
        )
        .await,
        201,
    );
    let all = expect(
        call(
            &host,
            t,
            "GET",
            &format!("/api/conversations/{id}/notes"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(all["items"].as_array().unwrap().len(), 2);
    let one = expect(call(&host, t, "GET", &notes, None).await, 200);
    assert_eq!(one["items"][0]["id"], note["id"]);
    let note_path = format!(
        "/api/conversations/{id}/notes/{}",
        note["id"].as_str().unwrap()
    );
    let updated = expect(
        call(
            &host,
            t,
            "PATCH",
            &note_path,
            Some(json!({"content": "changed"})),
        )
        .await,
        200,
    );
    assert_eq!(updated["content"], "changed");
    expect(
        call(&host, t, "PATCH", &note_path, Some(json!({"toIndex": 99}))).await,
        400,
    );
    expect(call(&host, t, "DELETE", &note_path, None).await, 204);
    expect(call(&host, t, "DELETE", &note_path, None).await, 404);

    // Feedback: one per user per answer; a second replaces the first.
    let feedback = format!("/api/conversations/{id}/messages/{answer}/feedback");
    expect(call(&host, t, "GET", &feedback, None).await, 404);
    expect(
        call(&host, t, "PUT", &feedback, Some(json!({"rating": "up"}))).await,
        201,
    );
    let replaced = expect(
        call(
            &host,
            t,
            "PUT",
            &feedback,
            Some(json!({"rating": "down", "comment": "too short", "tags": ["Brief"]})),
        )
        .await,
        200,
    );
    assert_eq!(replaced["tags"], json!(["brief"]));
    assert_eq!(
        expect(call(&host, t, "GET", &feedback, None).await, 200)["rating"],
        "down"
    );
    expect(
        call(&host, t, "PUT", &feedback, Some(json!({"rating": "meh"}))).await,
        400,
    );
    expect(
        call(
            &host,
            t,
            "PUT",
            &format!("/api/conversations/{id}/messages/{question}/feedback"),
            Some(json!({"rating": "up"})),
        )
        .await,
        400,
    );

    // Share: readable without an account, refreshed on re-share, gone
    // once revoked.
    let share = expect(
        call(
            &host,
            t,
            "POST",
            &format!("/api/conversations/{id}/share"),
            None,
        )
        .await,
        201,
    );
    let share_id = share["shareId"].as_str().unwrap().to_owned();
    assert!(share_id.len() >= 32, "at least 128 bits");
    let shared = expect(
        call(&host, None, "GET", &format!("/api/shared/{share_id}"), None).await,
        200,
    );
    assert_eq!(shared["title"], "Notes");
    assert_eq!(shared["messages"][1]["content"], "héllo 👋 world");
    expect(
        call(
            &host,
            t,
            "PATCH",
            &format!("/api/conversations/{id}"),
            Some(json!({"title": "Renamed"})),
        )
        .await,
        200,
    );
    let again = expect(
        call(
            &host,
            t,
            "POST",
            &format!("/api/conversations/{id}/share"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(again["shareId"], share_id.as_str());
    let shared = expect(
        call(&host, None, "GET", &format!("/api/shared/{share_id}"), None).await,
        200,
    );
    assert_eq!(shared["title"], "Renamed");
    expect(
        call(
            &host,
            None,
            "POST",
            &format!("/api/shared/{share_id}"),
            None,
        )
        .await,
        405,
    );
    expect(
        call(
            &host,
            t,
            "DELETE",
            &format!("/api/conversations/{id}/share"),
            None,
        )
        .await,
        204,
    );
    expect(
        call(&host, None, "GET", &format!("/api/shared/{share_id}"), None).await,
        404,
    );
    expect(
        call(&host, None, "GET", "/api/shared/not-an-id", None).await,
        404,
    );
}

#[tokio::test]
async fn export_and_import_round_trip_and_open_webui_chats_import() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path());
    let (token, _) = user_session(&host).await;
    let t = Some(token.as_str());

    // Open WebUI's export: branches, the active branch, tags, pinned, archived.
    let fixture =
        std::fs::read_to_string(workspace().join("tests/data/open-webui/chat-export.json"))
            .unwrap();
    let ids = import(&host, &token, &fixture).await;
    assert_eq!(ids.len(), 2);
    let sourdough = ids[0].as_str().unwrap();
    let c = expect(
        call(
            &host,
            t,
            "GET",
            &format!("/api/conversations/{sourdough}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(c["title"], "Sourdough starter troubleshooting");
    assert_eq!(c["model"], "llama3.1:8b");
    assert_eq!(c["pinned"], true);
    assert_eq!(c["tags"], json!(["baking", "sourdough"]));
    assert_eq!(c["messageCount"], 4);
    assert_eq!(c["createdAt"], "2024-06-10T06:13:20.000Z");
    let messages = path(&host, &token, sourdough).await;
    let texts: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts[1],
        "It is alive: the smell comes from hungry yeast. Discard half and feed it twice a day."
    );
    assert_eq!(texts[2], "Thanks! How warm should the kitchen be?");
    assert_eq!(messages[1]["siblings"].as_array().unwrap().len(), 2);
    let haiku = expect(
        call(
            &host,
            t,
            "GET",
            &format!("/api/conversations/{}", ids[1].as_str().unwrap()),
            None,
        )
        .await,
        200,
    );
    assert_eq!(haiku["archived"], true);
    assert_eq!(haiku["systemPrompt"], "You are a poet.");

    // Add a note and feedback, export, import into a new account: the same
    // conversations, trees, notes and feedback.
    let answer = messages[1]["id"].as_str().unwrap();
    expect(
        call(
            &host,
            t,
            "POST",
            &format!("/api/conversations/{sourdough}/messages/{answer}/notes"),
            Some(json!({"fromIndex": 0, "toIndex": 5, "content": "good"})),
        )
        .await,
        201,
    );
    expect(
        call(
            &host,
            t,
            "PUT",
            &format!("/api/conversations/{sourdough}/messages/{answer}/feedback"),
            Some(json!({"rating": "up"})),
        )
        .await,
        201,
    );
    let response = client()
        .get(host.at("/api/conversations/export"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let exported = response.text().await.unwrap();
    assert_eq!(exported.lines().count(), 2);

    let (second, _) = user_session(&host).await;
    let copies = import(&host, &second, &exported).await;
    let reexported = client()
        .get(host.at("/api/conversations/export"))
        .bearer_auth(&second)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let strip = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                // Ids are new; everything else must match.
                let map: std::collections::HashMap<String, usize> = v["messages"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .enumerate()
                    .map(|(i, m)| (m["id"].as_str().unwrap().to_owned(), i))
                    .collect();
                let index = |id: &Value| id.as_str().map(|id| map[id]);
                v["id"] = Value::Null;
                v["currentMessageId"] = index(&v["currentMessageId"]).into();
                for m in v["messages"].as_array_mut().unwrap() {
                    m["parentId"] = index(&m["parentId"]).into();
                    m["id"] = Value::Null;
                }
                for list in ["notes", "feedback"] {
                    for n in v[list].as_array_mut().unwrap() {
                        n["messageId"] = Value::Null;
                        n["createdAt"] = Value::Null;
                    }
                }
                v
            })
            .collect()
    };
    assert_eq!(strip(&reexported), strip(&exported));
    assert_eq!(copies.len(), 2);

    // Bad imports: 400 with the reason, nothing stored.
    let (third, _) = user_session(&host).await;
    for body in [
        "not json".to_owned(),
        json!({"format": "lamina.conversation.v1", "title": "x", "model": "m", "messages": [{"id": "a", "parentId": "ghost", "role": "user", "content": "x"}]}).to_string(),
        json!({"format": "lamina.conversation.v1", "title": "x", "model": "m", "messages": [{"id": "a", "role": "system", "content": "x"}]}).to_string(),
        json!({"format": "lamina.conversation.v1", "title": "x", "model": "m", "messages": [{"id": "a", "role": "user", "content": "x", "createdAt": "+275760-09-13T00:00:00Z"}]}).to_string(),
        json!({"title": "x", "chat": {"history": {"messages": {"a": {"id": "a", "parentId": null, "role": "user", "content": "x", "timestamp": 1_718_000_000_000_000i64}}}}}).to_string(),
        json!({"format": "lamina.conversation.v1", "title": "x", "model": "m", "messages": [{"id": "a", "role": "user", "content": "x"}], "feedback": [{"messageId": "a", "rating": "up"}]}).to_string(),
        json!({"format": "lamina.conversation.v1", "title": "x", "model": "m", "messages": [{"id": "a", "role": "user", "content": "x"}], "notes": [{"messageId": "a", "fromIndex": 0, "toIndex": 9, "content": "n"}]}).to_string(),
    ] {
        let response = client().post(host.at("/api/conversations/import")).bearer_auth(&third).body(body).send().await.unwrap();
        assert_eq!(response.status(), 400);
    }
    let listed = expect(
        call(&host, Some(&third), "GET", "/api/conversations", None).await,
        200,
    );
    assert_eq!(listed["total"], 0);
}

#[tokio::test]
async fn another_users_ids_are_not_found_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let host = app(dir.path());
    let (alice, _) = user_session(&host).await;
    let (bob, _) = user_session(&host).await;
    let a = Some(alice.as_str());

    let folder = expect(
        call(
            &host,
            a,
            "POST",
            "/api/folders",
            Some(json!({"name": "Private"})),
        )
        .await,
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ids = import(
        &host,
        &alice,
        &lamina_line(
            "Secret plans",
            &[("user", "classified"), ("assistant", "understood")],
        ),
    )
    .await;
    let conversation = ids[0].as_str().unwrap().to_owned();
    let messages = path(&host, &alice, &conversation).await;
    let (question, answer) = (
        messages[0]["id"].as_str().unwrap().to_owned(),
        messages[1]["id"].as_str().unwrap().to_owned(),
    );
    let note = expect(
        call(
            &host,
            a,
            "POST",
            &format!("/api/conversations/{conversation}/messages/{answer}/notes"),
            Some(json!({"fromIndex": 0, "toIndex": 3, "content": "n"})),
        )
        .await,
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    expect(
        call(
            &host,
            a,
            "PUT",
            &format!("/api/conversations/{conversation}/messages/{answer}/feedback"),
            Some(json!({"rating": "up"})),
        )
        .await,
        201,
    );
    expect(
        call(
            &host,
            a,
            "POST",
            &format!("/api/conversations/{conversation}/share"),
            None,
        )
        .await,
        201,
    );

    // Bob's own things, to put Alice's ids into bodies.
    let bobs_folder = expect(
        call(
            &host,
            Some(&bob),
            "POST",
            "/api/folders",
            Some(json!({"name": "Mine"})),
        )
        .await,
        201,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let bobs = import(&host, &bob, &lamina_line("Bob's", &[("user", "hello")])).await[0]
        .as_str()
        .unwrap()
        .to_owned();

    let c = format!("/api/conversations/{conversation}");
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", format!("/api/folders/{folder}"), None),
        (
            "PATCH",
            format!("/api/folders/{folder}"),
            Some(json!({"name": "x"})),
        ),
        (
            "DELETE",
            format!("/api/folders/{folder}?recursive=true"),
            None,
        ),
        ("GET", format!("/api/folders/{folder}/contents"), None),
        ("GET", c.clone(), None),
        ("PATCH", c.clone(), Some(json!({"title": "mine now"}))),
        ("DELETE", c.clone(), None),
        ("DELETE", format!("{c}?permanent=true"), None),
        ("POST", format!("{c}/restore"), None),
        ("POST", format!("{c}/clone"), Some(json!({}))),
        ("GET", format!("{c}/messages"), None),
        (
            "POST",
            format!("{c}/messages"),
            Some(json!({"content": "hi", "stream": false})),
        ),
        (
            "POST",
            format!("{c}/messages/{answer}/regenerate"),
            Some(json!({"stream": false})),
        ),
        ("POST", format!("{c}/stop"), None),
        ("GET", format!("{c}/notes"), None),
        ("GET", format!("{c}/messages/{answer}/notes"), None),
        (
            "POST",
            format!("{c}/messages/{answer}/notes"),
            Some(json!({"fromIndex": 0, "toIndex": 1, "content": "n"})),
        ),
        (
            "PATCH",
            format!("{c}/notes/{note}"),
            Some(json!({"content": "x"})),
        ),
        ("DELETE", format!("{c}/notes/{note}"), None),
        ("GET", format!("{c}/messages/{answer}/feedback"), None),
        (
            "PUT",
            format!("{c}/messages/{answer}/feedback"),
            Some(json!({"rating": "down"})),
        ),
        ("DELETE", format!("{c}/messages/{answer}/feedback"), None),
        ("GET", format!("{c}/share"), None),
        ("POST", format!("{c}/share"), None),
        ("DELETE", format!("{c}/share"), None),
        // Alice's ids inside Bob's requests.
        (
            "POST",
            "/api/folders".into(),
            Some(json!({"name": "x", "parentId": folder})),
        ),
        (
            "PATCH",
            format!("/api/folders/{bobs_folder}"),
            Some(json!({"parentId": folder})),
        ),
        (
            "POST",
            "/api/conversations".into(),
            Some(json!({"folderId": folder})),
        ),
        (
            "PATCH",
            format!("/api/conversations/{bobs}"),
            Some(json!({"folderId": folder})),
        ),
        (
            "PATCH",
            format!("/api/conversations/{bobs}"),
            Some(json!({"currentMessageId": answer})),
        ),
        (
            "POST",
            format!("/api/conversations/{bobs}/messages"),
            Some(json!({"content": "x", "parentId": question})),
        ),
        (
            "POST",
            format!("/api/conversations/{bobs}/clone"),
            Some(json!({"messageId": answer})),
        ),
        (
            "POST",
            format!("/api/conversations/{bobs}/messages/{answer}/regenerate"),
            None,
        ),
        (
            "POST",
            format!("/api/conversations/{bobs}/messages/{answer}/notes"),
            Some(json!({"fromIndex": 0, "toIndex": 1, "content": "n"})),
        ),
        (
            "POST",
            format!("/api/conversations/import?folderId={folder}"),
            Some(json!([])),
        ),
    ];
    for (method, path, body) in routes {
        let (status, problem) = call(&host, Some(&bob), method, &path, body).await;
        assert_eq!(status, 404, "{method} {path}: {problem}");
        assert!(
            !problem.to_string().contains("classified"),
            "{method} {path} leaked: {problem}"
        );
    }
    // Nothing of Alice's changed or showed up for Bob.
    let listed = expect(
        call(&host, Some(&bob), "GET", "/api/conversations", None).await,
        200,
    );
    assert_eq!(listed["total"], 1);
    let found = expect(
        call(
            &host,
            Some(&bob),
            "GET",
            "/api/conversations/search?q=classified",
            None,
        )
        .await,
        200,
    );
    assert_eq!(found["total"], 0);
    let mine = expect(call(&host, a, "GET", &c, None).await, 200);
    assert_eq!(
        (mine["title"].as_str(), mine["deletedAt"].is_null()),
        (Some("Secret plans"), true)
    );
    assert_eq!(path(&host, &alice, &conversation).await.len(), 2);
    expect(
        call(
            &host,
            a,
            "GET",
            &format!("{c}/messages/{answer}/feedback"),
            None,
        )
        .await,
        200,
    );
    expect(
        call(&host, a, "GET", &format!("{c}/share"), None).await,
        200,
    );
    assert_eq!(
        expect(
            call(&host, a, "GET", &format!("{c}/notes"), None).await,
            200
        )["items"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    // No credential, no access.
    expect(
        call(&host, None, "GET", "/api/conversations", None).await,
        401,
    );
}

#[tokio::test]
async fn a_deleted_user_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    // A stand-in for the admin service, which will publish `user.deleted`.
    let host = Host::start(options().data_dir(dir.path()).edit_manifest(|m| {
        format!(
            "{m}\n[[trigger.http]]\nroute = \"/publisher/...\"\ncomponent = \"publisher\"\n\n\
             [component.publisher]\nsource = \"{{capabilities}}\"\nqueues = [\"user.deleted\"]\n"
        )
    }));
    let (token, user) = user_session(&host).await;
    let (other, _) = user_session(&host).await;
    expect(
        call(
            &host,
            Some(&token),
            "POST",
            "/api/folders",
            Some(json!({"name": "F"})),
        )
        .await,
        201,
    );
    import(
        &host,
        &token,
        &lamina_line("Gone soon", &[("user", "a"), ("assistant", "b")]),
    )
    .await;
    import(&host, &other, &lamina_line("Stays", &[("user", "a")])).await;

    let response = client()
        .post(host.at("/publisher/queue/publish?topic=user.deleted"))
        .body(json!({"userId": user}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
    eventually("the user's conversations to go", || async {
        expect(
            call(&host, Some(&token), "GET", "/api/conversations", None).await,
            200,
        )["total"]
            == 0
    })
    .await;
    let tree = expect(
        call(&host, Some(&token), "GET", "/api/folders", None).await,
        200,
    );
    assert_eq!(
        tree["children"],
        json!([]),
        "folders went too (a fresh root is made on use)"
    );
    assert_eq!(
        expect(
            call(&host, Some(&other), "GET", "/api/conversations", None).await,
            200
        )["total"],
        1
    );
}

#[tokio::test]
async fn the_cache_is_never_in_the_way() {
    let dir = tempfile::tempdir().unwrap();
    let prefix = RedisPrefix::new();
    let proxy = TcpProxy::start("127.0.0.1:6379");
    let host = Host::start(options().data_dir(dir.path()).runtime_config(&format!(
        "[key_value_stores.default]\ntype = \"redis\"\nurl = \"redis://{}/0\"\nkey_prefix = \"{}\"\ntimeout = \"200ms\"\n",
        proxy.addr(),
        prefix.prefix
    )));
    let (token, _) = user_session(&host).await;
    let t = Some(token.as_str());
    let id = import(
        &host,
        &token,
        &lamina_line("Cached", &[("user", "a"), ("assistant", "b")]),
    )
    .await[0]
        .as_str()
        .unwrap()
        .to_owned();
    let c = format!("/api/conversations/{id}");
    // Read twice (the second from Redis), write, read: never stale.
    for title in ["One", "Two"] {
        expect(call(&host, t, "GET", &c, None).await, 200);
        expect(
            call(&host, t, "GET", &format!("{c}/messages"), None).await,
            200,
        );
        expect(
            call(&host, t, "PATCH", &c, Some(json!({"title": title}))).await,
            200,
        );
        assert_eq!(
            expect(call(&host, t, "GET", &c, None).await, 200)["title"],
            title
        );
    }
    let messages = path(&host, &token, &id).await;
    expect(
        call(
            &host,
            t,
            "PATCH",
            &c,
            Some(json!({"currentMessageId": messages[0]["id"]})),
        )
        .await,
        200,
    );
    assert_eq!(
        path(&host, &token, &id).await.len(),
        2,
        "the newest leaf below"
    );

    // Redis gone: every route still answers from the database; stopping,
    // which needs the store, says so.
    proxy.cut();
    expect(
        call(&host, t, "PATCH", &c, Some(json!({"title": "Three"}))).await,
        200,
    );
    assert_eq!(
        expect(call(&host, t, "GET", &c, None).await, 200)["title"],
        "Three"
    );
    assert_eq!(path(&host, &token, &id).await.len(), 2);
    expect(call(&host, t, "GET", "/api/folders", None).await, 200);
    expect(call(&host, t, "GET", "/api/conversations", None).await, 200);
    expect(
        call(&host, t, "POST", &format!("{c}/stop"), None).await,
        503,
    );
    let answer = say(
        &host,
        &token,
        &id,
        json!({"content": "Hello!", "options": greedy(2)}),
    )
    .await;
    assert_eq!(answer["usage"]["completionTokens"], 2);
    assert_eq!(path(&host, &token, &id).await.len(), 4);
    proxy.restore();
}

#[tokio::test]
async fn a_new_account_gets_its_root_folder_from_user_registered() {
    let dir = tempfile::tempdir().unwrap();
    let schema = PgSchema::new();
    let host = Host::start(
        options()
            .data_dir(dir.path())
            .databases(&schema.databases()),
    );
    let (token, user) = user_session(&host).await;
    // Nothing has called the conversation service yet: the root comes
    // from the queue message.
    eventually("the root folder", || async {
        schema.psql_value(
            "conversation",
            &format!(
                "SELECT COUNT(*) FROM conv_folders WHERE user_id = '{user}' AND parent_id IS NULL"
            ),
        ) == "1"
    })
    .await;
    let tree = expect(
        call(&host, Some(&token), "GET", "/api/folders", None).await,
        200,
    );
    let root = schema.psql_value(
        "conversation",
        &format!("SELECT id FROM conv_folders WHERE user_id = '{user}'"),
    );
    assert_eq!(tree["id"], root.as_str(), "one root, not a second one");
}
