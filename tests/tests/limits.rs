//! Model access lists and token budgets (set through `/api/admin/...` in
//! `components/auth`, enforced by the host's inference capability) end to
//! end: the application's own spin.toml, the real models, the Ollama,
//! OpenAI and conversation routes; budgets on two hosts sharing
//! PostgreSQL and Redis.

use std::time::Duration;

use lamina_tests::{
    Host, HostOptions, PgSchema, REDIS_URL, RedisPrefix, TcpProxy, admin_token, audited, call,
    client, create_api_key, eventually, expect, register,
};
use serde_json::{Value, json};

const SECRET: &str = "limits-tests-secret-32-bytes-or-more";
const CHAT: &str = "smollm2:135m";
const BASE: &str = "gemma3:270m";

fn options() -> HostOptions {
    HostOptions::app_on_test_models(SECRET).with_admin()
}

/// A fresh user: (id, access token).
async fn user(host: &Host) -> (String, String) {
    let (_, _, body) = register(host).await;
    (
        body["user"]["id"].as_str().unwrap().to_owned(),
        body["accessToken"].as_str().unwrap().to_owned(),
    )
}

/// `/api/generate` without streaming, greedy, at most `num_predict` tokens.
async fn generate(host: &Host, credential: &str, model: &str, num_predict: i32) -> (u16, Value) {
    let body = json!({"model": model, "prompt": "Hello", "stream": false,
                      "options": {"num_predict": num_predict, "temperature": 0}});
    call(host, Some(credential), "POST", "/api/generate", Some(body)).await
}

/// The names `/api/tags` and `/v1/models` show the holder of `credential`.
async fn visible(host: &Host, credential: &str) -> (Vec<String>, Vec<String>) {
    let tags = expect(
        call(host, Some(credential), "GET", "/api/tags", None).await,
        200,
    );
    let models = expect(
        call(host, Some(credential), "GET", "/v1/models", None).await,
        200,
    );
    let names = |list: &Value, field: &str| {
        let mut names: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m[field].as_str().unwrap().to_owned())
            .collect();
        names.sort();
        names
    };
    (names(&tags["models"], "name"), names(&models["data"], "id"))
}

#[tokio::test]
async fn model_lists_hide_and_refuse_models_on_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let admin = admin_token(&host).await;
    let a = Some(admin.as_str());
    let (id, access) = user(&host).await;
    let (key_id, key) = create_api_key(&host, &access).await;

    // Without lists, every installed model.
    let (all, _) = visible(&host, &access).await;
    assert!(
        all.contains(&BASE.to_owned()) && all.contains(&CHAT.to_owned()),
        "{all:?}"
    );
    let conversation = expect(
        call(
            &host,
            Some(&access),
            "POST",
            "/api/conversations",
            Some(json!({"model": BASE})),
        )
        .await,
        201,
    );

    // A role's list: everyone with the role sees and runs only that.
    let set = expect(
        call(
            &host,
            a,
            "PUT",
            "/api/admin/roles/User/models",
            Some(json!({"models": [CHAT]})),
        )
        .await,
        200,
    );
    assert_eq!(set, json!({"models": [CHAT], "restricted": true}));
    assert_eq!(
        visible(&host, &access).await,
        (vec![CHAT.to_owned()], vec![CHAT.to_owned()])
    );
    let (status, refused) = generate(&host, &access, BASE, 2).await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"].as_str().unwrap().contains(BASE),
        "{refused}"
    );
    expect(generate(&host, &access, CHAT, 2).await, 200);
    let openai = call(
        &host,
        Some(&key),
        "POST",
        "/v1/chat/completions",
        Some(json!({"model": BASE, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2})),
    )
    .await;
    assert_eq!(openai.0, 403, "{}", openai.1);
    assert_eq!(openai.1["error"]["type"], "permission_error");
    assert_eq!(openai.1["error"]["param"], "model");
    let (status, _) = call(
        &host,
        Some(&access),
        "POST",
        "/api/show",
        Some(json!({"model": BASE})),
    )
    .await;
    assert_eq!(status, 403);
    // The conversation made before on the base model cannot chat on it now.
    let chat = call(
        &host,
        Some(&access),
        "POST",
        &format!(
            "/api/conversations/{}/messages",
            conversation["id"].as_str().unwrap()
        ),
        Some(json!({"content": "Hi", "stream": false, "options": {"num_predict": 2}})),
    )
    .await;
    assert_eq!(chat.0, 403, "{}", chat.1);
    let (status, problem) = call(
        &host,
        Some(&access),
        "POST",
        "/api/conversations",
        Some(json!({"model": BASE})),
    )
    .await;
    assert_eq!(status, 403, "{problem}");

    // The user's own list replaces the role's; a key's narrows its owner's.
    let user_models = format!("/api/admin/users/{id}/models");
    expect(
        call(
            &host,
            a,
            "PUT",
            &user_models,
            Some(json!({"models": [BASE, CHAT]})),
        )
        .await,
        200,
    );
    expect(generate(&host, &access, BASE, 2).await, 200);
    let key_models = format!("/api/admin/users/{id}/api-keys/{key_id}/models");
    expect(
        call(
            &host,
            a,
            "PUT",
            &key_models,
            Some(json!({"models": [CHAT]})),
        )
        .await,
        200,
    );
    assert_eq!(visible(&host, &key).await.0, vec![CHAT.to_owned()]);
    assert_eq!(generate(&host, &key, BASE, 2).await.0, 403);
    expect(generate(&host, &access, BASE, 2).await, 200);
    assert_eq!(
        expect(call(&host, a, "GET", &key_models, None).await, 200),
        json!({"models": [CHAT], "restricted": true})
    );

    // Lists removed: everything again.
    for path in [
        &key_models,
        &user_models,
        &"/api/admin/roles/User/models".to_owned(),
    ] {
        let (status, _) = call(&host, a, "DELETE", path, None).await;
        assert_eq!(status, 204, "{path}");
    }
    assert_eq!(visible(&host, &key).await.0, all);
    assert_eq!(
        expect(call(&host, a, "GET", &user_models, None).await, 200),
        json!({"models": ["*"], "restricted": false})
    );

    // Bad input: 400 and 404, nothing stored.
    let bad = call(
        &host,
        a,
        "PUT",
        &user_models,
        Some(json!({"models": ["not a name!"]})),
    )
    .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    let bad = call(
        &host,
        a,
        "PUT",
        &user_models,
        Some(json!({"models": "all"})),
    )
    .await;
    assert_eq!(bad.0, 400, "{}", bad.1);
    for path in [
        "/api/admin/roles/Nobody/models".to_owned(),
        "/api/admin/users/no-such-user/models".to_owned(),
        format!("/api/admin/users/{id}/api-keys/no-such-key/models"),
    ] {
        let (status, problem) = call(&host, a, "PUT", &path, Some(json!({"models": [CHAT]}))).await;
        assert_eq!(status, 404, "{path}: {problem}");
    }
    assert_eq!(visible(&host, &access).await.0, all);
    audited(&host, &["admin.models.set", "admin.models.removed"]).await;

    // A budget on the embedded counters (the host's SQLite): charged what
    // ran; a generation that could never fit is refused without a
    // Retry-After (waiting would not help).
    let budget = format!("/api/admin/users/{id}/budget");
    expect(
        call(
            &host,
            a,
            "PUT",
            &budget,
            Some(json!({"tokens": 40, "period": "day"})),
        )
        .await,
        200,
    );
    let answer = expect(generate(&host, &access, CHAT, 2).await, 200);
    let spent =
        answer["prompt_eval_count"].as_i64().unwrap() + answer["eval_count"].as_i64().unwrap();
    eventually("the counter settles", || async {
        expect(call(&host, a, "GET", &budget, None).await, 200)["used"] == spent
    })
    .await;
    let refused = client()
        .post(host.at("/api/generate"))
        .bearer_auth(&access)
        .json(&json!({"model": CHAT, "prompt": "Hello", "stream": false, "options": {"num_predict": 100}}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().get("retry-after").is_none());
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["requested"].as_i64().unwrap() > 40, "{problem}");
    assert!(
        problem["detail"].as_str().unwrap().contains("never fit"),
        "{problem}"
    );
    let user = expect(
        call(&host, a, "GET", &format!("/api/admin/users/{id}"), None).await,
        200,
    );
    assert_eq!(user["budget"]["tokens"], 40);
}

/// Two hosts on one PostgreSQL, their budget counters on Redis (host
/// `second` reaching it through `proxy`).
fn cluster(schema: &PgSchema, prefix: &RedisPrefix, redis: &str, dir: &std::path::Path) -> Host {
    let shared = format!(
        "[auth.revocations]\ntype = \"redis\"\nurl = \"{REDIS_URL}\"\nkey_prefix = \"{p}\"\n\
         [limits.counters]\ntype = \"redis\"\nurl = \"{redis}\"\nkey_prefix = \"{p}\"\n",
        p = prefix.prefix
    );
    Host::start(
        options()
            .databases(&schema.databases())
            .runtime_config(&shared)
            .data_dir(dir),
    )
}

async fn budget(host: &Host, admin: &str, path: &str) -> Value {
    expect(call(host, Some(admin), "GET", path, None).await, 200)
}

#[tokio::test]
async fn budgets_hold_across_hosts_and_roll_over() {
    let (schema, prefix) = (PgSchema::new(), RedisPrefix::new());
    let proxy = TcpProxy::start(
        REDIS_URL
            .trim_start_matches("redis://")
            .trim_end_matches("/0"),
    );
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let first = cluster(&schema, &prefix, REDIS_URL, dir_a.path());
    let second = cluster(
        &schema,
        &prefix,
        &format!("redis://{}", proxy.addr()),
        dir_b.path(),
    );
    let admin = admin_token(&first).await;
    let a = Some(admin.as_str());
    let (id, access) = user(&second).await;
    let path = format!("/api/admin/users/{id}/budget");

    // Bad budgets are refused, field by field.
    for bad in [
        json!({"tokens": 0, "period": "day"}),
        json!({"tokens": 10, "period": "fortnight"}),
        json!({"tokens": 10, "period": "custom"}),
        json!({"tokens": 10, "period": "day", "seconds": 5}),
        json!({"tokens": -1, "period": "day"}),
    ] {
        let (status, problem) = call(&first, a, "PUT", &path, Some(bad.clone())).await;
        assert_eq!(status, 400, "{bad}: {problem}");
    }
    assert_eq!(call(&first, a, "GET", &path, None).await.0, 404);

    // Concurrent generations on both hosts never charge past the budget;
    // each holds its prompt plus num_predict, then is charged what it used.
    const LIMIT: i64 = 150;
    let set = expect(
        call(
            &first,
            a,
            "PUT",
            &path,
            Some(json!({"tokens": LIMIT, "period": "day"})),
        )
        .await,
        200,
    );
    assert_eq!(set["used"], 0);
    assert_eq!(set["remaining"], LIMIT);
    let runs = (0..8).map(|i| {
        let host = if i % 2 == 0 { &first } else { &second };
        let access = access.clone();
        async move { generate(host, &access, CHAT, 24).await }
    });
    let results = futures::future::join_all(runs).await;
    let mut spent = 0;
    let mut refusals = 0;
    for (status, body) in &results {
        match status {
            200 => {
                spent += body["prompt_eval_count"].as_i64().unwrap()
                    + body["eval_count"].as_i64().unwrap()
            }
            429 => {
                refusals += 1;
                assert_eq!(
                    body["type"], "https://lamina.dev/problems/budget-exceeded",
                    "{body}"
                );
                assert_eq!(body["scope"], "user");
                assert_eq!(body["limit"], LIMIT);
                assert!(body["error"].as_str().unwrap().contains("budget"), "{body}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert!(spent > 0 && spent <= LIMIT, "spent {spent} of {LIMIT}");
    assert!(
        refusals > 0,
        "8 generations of up to ~30 tokens fit 150: {results:?}"
    );
    // What is left settles at exactly what was not used.
    eventually("the counter settles", || async {
        budget(&first, &admin, &path).await["used"] == spent
    })
    .await;
    let mine = expect(
        call(&second, Some(&access), "GET", "/api/usage/me", None).await,
        200,
    );
    assert_eq!(mine["budgets"]["user"]["used"], spent);
    assert_eq!(mine["budgets"]["user"]["remaining"], LIMIT - spent);

    // A short custom period: refused with when to retry, allowed again
    // once it rolls over (no job: the next period counts on its own).
    expect(
        call(
            &first,
            a,
            "PUT",
            &path,
            Some(json!({"tokens": 100, "period": "custom", "seconds": 5})),
        )
        .await,
        200,
    );
    let refused = loop {
        let response = client()
            .post(second.at("/api/generate"))
            .bearer_auth(&access)
            .json(&json!({"model": CHAT, "prompt": "Hello", "stream": false,
                          "options": {"num_predict": 20, "temperature": 0}}))
            .send()
            .await
            .unwrap();
        if response.status() == 429 {
            break response;
        }
        assert_eq!(response.status(), 200);
    };
    assert_eq!(
        refused.headers()["content-type"],
        "application/problem+json"
    );
    let wait: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=5).contains(&wait), "{wait}");
    let problem: Value = refused.json().await.unwrap();
    assert!(problem["resetsAt"].as_str().is_some(), "{problem}");
    tokio::time::sleep(Duration::from_secs(wait)).await;
    eventually("the next period allows again", || async {
        generate(&second, &access, CHAT, 20).await.0 == 200
    })
    .await;

    // A key's budget binds the key, not its owner's session.
    let (key_id, key) = create_api_key(&second, &access).await;
    expect(call(&first, a, "DELETE", &path, None).await, 204);
    let key_path = format!("/api/admin/users/{id}/api-keys/{key_id}/budget");
    expect(
        call(
            &first,
            a,
            "PUT",
            &key_path,
            Some(json!({"tokens": 5, "period": "week"})),
        )
        .await,
        200,
    );
    let (status, problem) = generate(&first, &key, CHAT, 20).await;
    assert_eq!(
        (status, problem["scope"].as_str()),
        (429, Some("api-key")),
        "{problem}"
    );
    expect(generate(&first, &access, CHAT, 2).await, 200);

    // A generation dropped part-way is charged what it ran.
    expect(
        call(
            &first,
            a,
            "PUT",
            &path,
            Some(json!({"tokens": 100000, "period": "month"})),
        )
        .await,
        200,
    );
    let mut stream = client()
        .post(first.at("/api/generate"))
        .bearer_auth(&access)
        .json(&json!({"model": CHAT, "prompt": "Count to one hundred:", "options": {"num_predict": 1000, "temperature": 0}}))
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    stream.chunk().await.unwrap().expect("a first token");
    drop(stream);
    eventually("the dropped generation is charged what it ran", || async {
        let used = budget(&first, &admin, &path).await["used"]
            .as_i64()
            .unwrap();
        used > 0 && used < 1000
    })
    .await;

    // Budgets are money: counters out of reach refuse generations (503),
    // they do not run them unmetered.
    proxy.cut();
    let (status, problem) = generate(&second, &access, CHAT, 2).await;
    assert_eq!(status, 503, "{problem}");
    proxy.restore();
    audited(&first, &["admin.budget.set", "admin.budget.removed"]).await;
}
