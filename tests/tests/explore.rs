//! The explore service (`components/explore`) end to end: the
//! application's own spin.toml, its seeded catalogue, the real model
//! store (the test models) and the real MiniLM embeddings; PostgreSQL and
//! Redis with two hosts where said.

use std::time::Duration;

use lamina_tests::{
    FileServer, Host, HostOptions, PgSchema, RedisPrefix, TcpProxy, admin_token, audited, call,
    client, eventually, expect, sse_events, test_gguf, test_models_dir, user_session,
};
use serde_json::{Value, json};

const SECRET: &str = "explore-tests-secret-32-bytes-or-more";
const GEMMA_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

/// The application with the test models and its first administrator.
fn options(models: &std::path::Path) -> HostOptions {
    HostOptions::app()
        .runtime_config(&format!(
            "[inference]\nmodels_dir = \"{}\"\n",
            models.display()
        ))
        .env("LAMINA_JWT_SECRET", SECRET)
        .with_admin()
}

/// The names of a list's items, in order.
fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("not a list: {page}"))
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

async fn get(host: &Host, path: &str) -> Value {
    expect(call(host, None, "GET", path, None).await, 200)
}

#[tokio::test]
async fn the_seeded_catalogue_is_browsed_filtered_sorted_and_paged() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options(&test_models_dir()).data_dir(dir.path()));
    let all = get(&host, "/api/explore/models").await;
    assert_eq!(
        names(&all),
        ["all-minilm:l6-v2", "gemma3:270m", "smollm2:135m"]
    );
    assert_eq!(
        (
            all["page"].clone(),
            all["pageSize"].clone(),
            all["total"].clone()
        ),
        (json!(1), json!(20), json!(3))
    );
    let gemma = &all["items"][1];
    assert_eq!(gemma["installed"], true, "{gemma}");
    assert_eq!(gemma["family"], "gemma3");
    assert!(gemma["parameterCount"].as_u64().unwrap() > 200_000_000);
    assert_eq!(gemma["store"]["quantization"], "Q4_K_M");

    // Each filter, alone and together.
    let cases = [
        ("tag=chat", vec!["smollm2:135m"]),
        ("tag=small&tag=RAG", vec!["all-minilm:l6-v2"]),
        ("family=GEMMA3", vec!["gemma3:270m"]),
        ("capability=embedding", vec!["all-minilm:l6-v2"]),
        ("capability=chat", vec!["smollm2:135m"]),
        ("quantization=q4_k_m", vec!["gemma3:270m"]),
        (
            "minParameters=100M&maxParameters=200M",
            vec!["smollm2:135m"],
        ),
        ("maxParameters=50M", vec!["all-minilm:l6-v2"]),
        (
            "installed=true&tag=completion",
            vec!["gemma3:270m", "smollm2:135m"],
        ),
        ("installed=false", vec![]),
        ("loaded=true", vec![]),
    ];
    for (query, expected) in cases {
        let page = get(&host, &format!("/api/explore/models?{query}")).await;
        assert_eq!(names(&page), expected, "{query}");
        assert_eq!(page["total"], expected.len(), "{query}");
    }
    // Sorts.
    let by_size = get(&host, "/api/explore/models?sort=size").await;
    let sizes: Vec<u64> = by_size["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] <= w[1]), "{sizes:?}");
    assert_eq!(names(&by_size).last().unwrap(), "gemma3:270m");
    // Paging bounds.
    let second = get(&host, "/api/explore/models?page=2&pageSize=2").await;
    assert_eq!(names(&second), ["smollm2:135m"]);
    assert_eq!(second["total"], 3);
    assert_eq!(
        names(&get(&host, "/api/explore/models?page=3&pageSize=2").await),
        Vec::<String>::new()
    );
    for bad in [
        "pageSize=0",
        "pageSize=101",
        "page=0",
        "installed=maybe",
        "sort=stars",
        "capability=vision",
        "minParameters=lots",
        "family=",
    ] {
        let (status, body) = call(
            &host,
            None,
            "GET",
            &format!("/api/explore/models?{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["status"], 400, "{bad}: problem+json");
    }

    // One model's page: the catalogue's curation and the store's view.
    let smollm = get(&host, "/api/explore/models/smollm2:135m").await;
    assert_eq!(smollm["title"], "SmolLM2 135M Instruct");
    assert_eq!(smollm["license"], "Apache-2.0");
    assert_eq!(
        smollm["tags"],
        json!(["chat", "completion", "instruct", "small"])
    );
    assert_eq!(smollm["capabilities"], json!(["completion", "chat"]));
    assert_eq!(smollm["options"]["temperature"], 0.2);
    assert!(smollm["sha256"].as_str().unwrap().len() == 64);
    assert_eq!(smollm["installed"], true);
    assert_eq!(smollm["store"]["family"], "llama");
    assert!(smollm["store"]["contextLength"].as_u64().unwrap() >= 2048);
    assert!(
        smollm["store"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    for missing in [
        "/api/explore/models/nope:1",
        "/api/explore/models/Not%20A%20Name",
    ] {
        expect(call(&host, None, "GET", missing, None).await, 404);
    }

    // Tags with counts, and a tag's models.
    let tags = get(&host, "/api/explore/tags").await;
    let small = tags["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["name"] == "small")
        .unwrap()
        .clone();
    assert_eq!(small["models"], 3);
    assert_eq!(
        names(&get(&host, "/api/explore/tags/instruct/models").await),
        ["smollm2:135m"]
    );
    assert_eq!(
        names(&get(&host, "/api/explore/tags/small/models?capability=embedding").await),
        ["all-minilm:l6-v2"]
    );
    expect(
        call(&host, None, "GET", "/api/explore/tags/nope/models", None).await,
        404,
    );

    // Text search: ranked, words only.
    let found = get(&host, "/api/explore/search?q=sentence%20embed&mode=text").await;
    assert_eq!(names(&found), ["all-minilm:l6-v2"]);
    assert_eq!(found["modes"], json!(["text"]));
    let found = get(&host, "/api/explore/search?q=gemma&mode=text").await;
    assert_eq!(names(&found)[0], "gemma3:270m");
    for bad in [
        "q=",
        "q=%21%21",
        "q=x&mode=fuzzy",
        &format!("q={}", "a".repeat(201)),
    ] {
        let (status, _) = call(
            &host,
            None,
            "GET",
            &format!("/api/explore/search?{bad}"),
            None,
        )
        .await;
        assert_eq!(status, 400, "{bad}");
    }

    // A generation makes a model loaded and popular.
    let (token, _) = user_session(&host).await;
    let generated = call(
        &host,
        Some(&token),
        "POST",
        "/api/generate",
        Some(json!({"model": "smollm2:135m", "prompt": "Hi", "stream": false, "options": {"num_predict": 1}})),
    )
    .await;
    assert_eq!(generated.0, 200, "{}", generated.1);
    assert_eq!(
        names(&get(&host, "/api/explore/models?loaded=true").await),
        ["smollm2:135m"]
    );
    let loaded = get(&host, "/api/explore/models/smollm2:135m").await;
    assert_eq!(loaded["loaded"], true);
    assert!(loaded["loadedUntil"].is_string());
    // Uses count through usage.recorded; lists may lag by the cache's TTL,
    // a model's own page is read after the count.
    eventually("the use to be counted", || async {
        let detail = call(&host, None, "GET", "/api/explore/models/smollm2:135m", None).await;
        detail.1["uses"] == 1
    })
    .await;
}

/// Every admin route: anonymous → 401, a user → 403.
#[tokio::test]
async fn admin_routes_need_an_administrator() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options(&test_models_dir()).data_dir(dir.path()));
    let (user, _) = user_session(&host).await;
    let routes = [
        ("GET", "/api/admin/models"),
        ("POST", "/api/admin/models"),
        ("GET", "/api/admin/models/gemma3:270m"),
        ("PATCH", "/api/admin/models/gemma3:270m"),
        ("DELETE", "/api/admin/models/gemma3:270m"),
        ("POST", "/api/admin/models/gemma3:270m/tags"),
        ("DELETE", "/api/admin/models/gemma3:270m/tags/small"),
        ("POST", "/api/admin/models/gemma3:270m/install"),
        ("DELETE", "/api/admin/models/gemma3:270m/files"),
        ("GET", "/api/admin/pulls"),
        ("GET", "/api/admin/pulls/x"),
        ("GET", "/api/admin/pulls/x/events"),
        ("POST", "/api/admin/pulls/x/cancel"),
        ("GET", "/api/admin/tags"),
        ("POST", "/api/admin/tags"),
        ("GET", "/api/admin/tags/x"),
        ("PATCH", "/api/admin/tags/x"),
        ("DELETE", "/api/admin/tags/x"),
    ];
    for (method, path) in routes {
        let body = (method != "GET" && method != "DELETE").then(|| json!({"name": "x"}));
        let (status, problem) = call(&host, None, method, path, body.clone()).await;
        assert_eq!(status, 401, "{method} {path}: {problem}");
        let (status, problem) = call(&host, Some(&user), method, path, body).await;
        assert_eq!(status, 403, "{method} {path}: {problem}");
    }
    // An administrator's API key is not a login session: 403.
    let admin = admin_token(&host).await;
    let key = expect(
        call(
            &host,
            Some(&admin),
            "POST",
            "/api/auth/api-keys",
            Some(json!({"name": "script"})),
        )
        .await,
        201,
    );
    let key = key["key"].as_str().unwrap();
    for (method, path) in [("GET", "/api/admin/models"), ("POST", "/api/admin/tags")] {
        let (status, problem) =
            call(&host, Some(key), method, path, Some(json!({"name": "x"}))).await;
        assert_eq!(status, 403, "{method} {path}: {problem}");
    }
    // Nothing changed.
    assert_eq!(names(&get(&host, "/api/explore/models").await).len(), 3);
    assert_eq!(
        get(&host, "/api/explore/models/gemma3:270m").await["tags"],
        json!(["base", "completion", "small"])
    );
}

#[tokio::test]
async fn administrators_curate_entries_and_tags() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options(&test_models_dir()).data_dir(dir.path()));
    let admin = admin_token(&host).await;
    let a = Some(admin.as_str());

    // Validation: one 400 names every bad field.
    let (status, problem) = call(
        &host,
        a,
        "POST",
        "/api/admin/models",
        Some(json!({
            "name": "Bad Name",
            "description": "d".repeat(1001),
            "referenceLink": "not-a-url",
            "sha256": "abc",
            "parameterCount": 0,
            "capabilities": ["vision"],
            "languages": [""],
            "options": {"temperature": "hot"},
            "releasedAt": "yesterday",
            "tags": ["no-such-tag"],
        })),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    for field in [
        "name",
        "description",
        "referenceLink",
        "sha256",
        "parameterCount",
        "capabilities[0]",
        "languages[0]",
        "options",
        "releasedAt",
    ] {
        assert!(fields.contains(&field), "{field} in {fields:?}");
    }
    let (status, _) = call(
        &host,
        a,
        "POST",
        "/api/admin/models",
        Some(json!({"name": "x:1", "bogus": 1})),
    )
    .await;
    assert_eq!(status, 400, "unknown fields are refused");

    // Tags: unique whatever the case.
    let code = expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/tags",
            Some(json!({"name": "Code"})),
        )
        .await,
        201,
    );
    expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/tags",
            Some(json!({"name": "code "})),
        )
        .await,
        409,
    );
    expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/tags",
            Some(json!({"name": "a/b"})),
        )
        .await,
        400,
    );
    let code_id = code["id"].as_str().unwrap().to_owned();

    // An entry for a model not installed yet.
    let created = expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/models",
            Some(json!({
                "name": "coder:1b",
                "title": "Coder 1B",
                "description": "Completes source code.",
                "sourceUrl": "https://models.example.com/coder-1b.gguf",
                "sha256": GEMMA_SHA256,
                "parameterSize": "1B",
                "languages": ["en"],
                "options": {"temperature": 0.1},
                "releasedAt": "2026-01-15T00:00:00Z",
                "tags": ["code", "SMALL"],
            })),
        )
        .await,
        201,
    );
    assert_eq!(created["installed"], false);
    assert_eq!(created["tags"], json!(["Code", "small"]));
    assert_eq!(created["releasedAt"], "2026-01-15T00:00:00.000Z");
    expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/models",
            Some(json!({"name": "coder:1b"})),
        )
        .await,
        409,
    );
    // Visible at once, filters included.
    assert_eq!(
        names(&get(&host, "/api/explore/models?tag=code&installed=false").await),
        ["coder:1b"]
    );
    assert_eq!(
        names(&get(&host, "/api/explore/models?minParameters=900M").await),
        ["coder:1b"]
    );

    // Partial updates; null clears; the name and empty bodies are refused.
    let updated = expect(
        call(
            &host,
            a,
            "PATCH",
            "/api/admin/models/coder:1b",
            Some(json!({"author": "Lamina tests", "sourceUrl": null})),
        )
        .await,
        200,
    );
    assert_eq!(updated["author"], "Lamina tests");
    assert_eq!(updated["sourceUrl"], Value::Null);
    assert_eq!(updated["title"], "Coder 1B");
    expect(
        call(
            &host,
            a,
            "PATCH",
            "/api/admin/models/coder:1b",
            Some(json!({"name": "other:1"})),
        )
        .await,
        400,
    );
    expect(
        call(
            &host,
            a,
            "PATCH",
            "/api/admin/models/coder:1b",
            Some(json!({})),
        )
        .await,
        400,
    );
    expect(
        call(
            &host,
            a,
            "PATCH",
            "/api/admin/models/nope:1",
            Some(json!({"author": "x"})),
        )
        .await,
        404,
    );

    // Renaming a tag renames it everywhere (search included).
    expect(
        call(
            &host,
            a,
            "PATCH",
            &format!("/api/admin/tags/{code_id}"),
            Some(json!({"name": "programming"})),
        )
        .await,
        200,
    );
    assert_eq!(
        get(&host, "/api/explore/models/coder:1b").await["tags"],
        json!(["programming", "small"])
    );
    assert_eq!(
        names(&get(&host, "/api/explore/search?q=programming&mode=text").await),
        ["coder:1b"]
    );
    // Take one off, put it back, delete the tag.
    let tags = expect(
        call(
            &host,
            a,
            "DELETE",
            "/api/admin/models/coder:1b/tags/Small",
            None,
        )
        .await,
        200,
    );
    assert_eq!(tags["tags"], json!(["programming"]));
    expect(
        call(
            &host,
            a,
            "DELETE",
            "/api/admin/models/coder:1b/tags/small",
            None,
        )
        .await,
        404,
    );
    let tags = expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/models/coder:1b/tags",
            Some(json!({"tags": ["small"]})),
        )
        .await,
        200,
    );
    assert_eq!(tags["tags"], json!(["programming", "small"]));
    expect(
        call(
            &host,
            a,
            "DELETE",
            &format!("/api/admin/tags/{code_id}"),
            None,
        )
        .await,
        204,
    );
    assert_eq!(
        get(&host, "/api/explore/models/coder:1b").await["tags"],
        json!(["small"])
    );
    expect(
        call(
            &host,
            a,
            "DELETE",
            &format!("/api/admin/tags/{code_id}"),
            None,
        )
        .await,
        404,
    );
    assert!(names(&get(&host, "/api/explore/search?q=programming&mode=text").await).is_empty());

    // From an installed model: the GGUF header fills what is left out.
    expect(
        call(&host, a, "DELETE", "/api/admin/models/gemma3:270m", None).await,
        204,
    );
    expect(
        call(&host, None, "GET", "/api/explore/models/gemma3:270m", None).await,
        404,
    );
    let filled = expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/models",
            Some(json!({"name": "gemma3:270m", "fromInstalled": true, "description": "Again."})),
        )
        .await,
        201,
    );
    assert_eq!(filled["family"], "gemma3");
    assert_eq!(filled["quantizationLevel"], "Q4_K_M");
    assert_eq!(filled["contextLength"], 32768);
    assert_eq!(filled["capabilities"], json!(["completion"]));
    assert!(filled["digest"].as_str().unwrap().starts_with("sha256:"));
    let (status, problem) = call(
        &host,
        a,
        "POST",
        "/api/admin/models",
        Some(json!({"name": "absent:1", "fromInstalled": true})),
    )
    .await;
    assert_eq!(status, 400, "{problem}");
    // The store's models, catalogued or not.
    let store = expect(call(&host, a, "GET", "/api/admin/models", None).await, 200);
    assert!(
        store["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["catalogued"] == true)
    );

    // Every change is in the audit log.
    audited(
        &host,
        &[
            "catalog.model.created",
            "catalog.model.updated",
            "catalog.model.deleted",
            "catalog.tag.renamed",
            "catalog.tag.deleted",
            "catalog.model.untagged",
        ],
    )
    .await;
}

#[tokio::test]
async fn semantic_and_hybrid_search_rank_by_meaning() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options(&test_models_dir()).data_dir(dir.path()));
    let admin = admin_token(&host).await;
    let a = Some(admin.as_str());
    let entries = [
        (
            "chatty:1b",
            "Chatty",
            "A friendly conversational assistant for everyday questions, small talk and writing emails.",
        ),
        (
            "coder:1b",
            "Coder",
            "Completes source code as you type: fills in functions and suggests fixes in Python, Rust and JavaScript.",
        ),
        (
            "painter:1b",
            "Painter",
            "Describes pictures and photographs in detail.",
        ),
    ];
    for (name, title, description) in entries {
        expect(
            call(
                &host,
                a,
                "POST",
                "/api/admin/models",
                Some(json!({"name": name, "title": title, "description": description})),
            )
            .await,
            201,
        );
    }
    let query = "/api/explore/search?q=a%20small%20model%20for%20code%20completion";
    let semantic = get(&host, &format!("{query}&mode=semantic")).await;
    // The code model above the chat model (the seeded models take part
    // too), in both modes that use meaning.
    let above = |page: &Value| {
        let ranked = names(page);
        let position = |name: &str| ranked.iter().position(|n| n == name);
        let coder = position("coder:1b").unwrap_or_else(|| panic!("coder missing: {page}"));
        assert!(
            position("chatty:1b").is_none_or(|chatty| chatty > coder),
            "{page}"
        );
        assert!(position("painter:1b").is_none_or(|p| p > coder), "{page}");
    };
    above(&semantic);
    let hybrid = get(&host, query).await;
    assert_eq!(hybrid["mode"], "hybrid");
    assert_eq!(hybrid["modes"], json!(["text", "semantic"]));
    above(&hybrid);

    // A new description is embedded again: now Chatty writes code.
    let score_of = |page: &Value, name: &str| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["name"] == name)
            .map_or(0.0, |i| i["score"].as_f64().unwrap())
    };
    let before = score_of(&semantic, "chatty:1b");
    expect(
        call(
            &host,
            a,
            "PATCH",
            "/api/admin/models/chatty:1b",
            Some(
                json!({"description": "Autocompletes program code in every programming language."}),
            ),
        )
        .await,
        200,
    );
    let after = get(&host, &format!("{query}&mode=semantic")).await;
    assert!(
        score_of(&after, "chatty:1b") > before + 0.1,
        "{before} → {after}"
    );
}

/// The multi-host configuration: two hosts on one PostgreSQL and one
/// Redis. An administrator's change on one is seen on the next read on the
/// other; with Redis cut, reads come from the database.
#[tokio::test]
async fn two_hosts_see_changes_at_once_and_redis_is_optional() {
    let schema = PgSchema::new();
    let prefix = RedisPrefix::new();
    let proxy = TcpProxy::start("127.0.0.1:6379");
    let config = |addr: &str| {
        options(&test_models_dir())
            .databases(&schema.databases())
            .runtime_config(&format!(
                "[key_value_stores.default]\ntype = \"redis\"\nurl = \"redis://{addr}/0\"\nkey_prefix = \"{}\"\ntimeout = \"200ms\"\n",
                prefix.prefix
            ))
    };
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let reader = Host::start(config(&proxy.addr()).data_dir(dir_a.path()));
    let writer = Host::start(config("127.0.0.1:6379").data_dir(dir_b.path()));
    let admin = admin_token(&writer).await;
    let a = Some(admin.as_str());

    // Read twice on the reader (the second from Redis), change on the
    // writer, read on the reader: never stale.
    for _ in 0..2 {
        assert_eq!(get(&reader, "/api/explore/models").await["total"], 3);
        get(&reader, "/api/explore/tags").await;
        get(&reader, "/api/explore/models/gemma3:270m").await;
        get(&reader, "/api/explore/search?q=gemma&mode=text").await;
    }
    let metrics = lamina_tests::get_text(&format!("{}/metrics", reader.admin_url)).await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("lamina_kv_gets_total{") && l.contains("result=\"hit\"")),
        "{metrics}"
    );
    expect(
        call(
            &writer,
            a,
            "POST",
            "/api/admin/tags",
            Some(json!({"name": "edge"})),
        )
        .await,
        201,
    );
    expect(
        call(
            &writer,
            a,
            "POST",
            "/api/admin/models",
            Some(json!({"name": "tiny:1", "title": "Tiny", "description": "Runs at the edge.", "tags": ["edge"]})),
        )
        .await,
        201,
    );
    assert_eq!(get(&reader, "/api/explore/models").await["total"], 4);
    assert_eq!(
        names(&get(&reader, "/api/explore/tags/edge/models").await),
        ["tiny:1"]
    );
    assert_eq!(
        names(&get(&reader, "/api/explore/search?q=gemma&mode=text").await),
        ["gemma3:270m"]
    );
    expect(
        call(
            &writer,
            a,
            "PATCH",
            "/api/admin/models/gemma3:270m",
            Some(json!({"title": "Gemma Three"})),
        )
        .await,
        200,
    );
    assert_eq!(
        get(&reader, "/api/explore/models/gemma3:270m").await["title"],
        "Gemma Three"
    );
    let tags = get(&reader, "/api/explore/tags").await;
    assert!(
        tags["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "edge" && t["models"] == 1)
    );

    // Redis gone from the reader: it still answers, from PostgreSQL.
    proxy.cut();
    assert_eq!(get(&reader, "/api/explore/models").await["total"], 4);
    assert_eq!(
        get(&reader, "/api/explore/models/tiny:1").await["title"],
        "Tiny"
    );
    get(&reader, "/api/explore/tags").await;
    assert_eq!(
        names(&get(&reader, "/api/explore/search?q=edge&mode=text").await),
        ["tiny:1"]
    );
    proxy.restore();
}

/// Installs from a loopback URL report progress over SSE; the model
/// becomes usable; its files cannot go while a generation runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_stream_progress_and_files_are_removed_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    let server = FileServer::start(&test_gguf()).await;
    let host = Host::start(options(&models).data_dir(dir.path()).runtime_config(
        "pull_hosts = [\"127.0.0.1\"]\nallowed_private_sources = [\"127.0.0.1\"]\n",
    ));
    let admin = admin_token(&host).await;
    let a = Some(admin.as_str());
    expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/models",
            Some(json!({"name": "tiny:1", "title": "Tiny", "sourceUrl": server.model_url(), "sha256": GEMMA_SHA256})),
        )
        .await,
        201,
    );
    let started = expect(
        call(&host, a, "POST", "/api/admin/models/tiny:1/install", None).await,
        202,
    );
    let id = started["id"].as_str().unwrap().to_owned();
    // The progress stream, to its end.
    let response = client()
        .get(host.at(&format!("/api/admin/pulls/{id}/events")))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let text = tokio::time::timeout(Duration::from_secs(120), response.text())
        .await
        .expect("the install ended")
        .unwrap();
    let events = sse_events(&text);
    let last = events.last().unwrap();
    assert_eq!(last.name, "done", "{text}");
    assert!(
        events
            .iter()
            .all(|e| e.name == "progress" || e.name == "done"),
        "{text}"
    );
    assert_eq!(last.data["completed"], last.data["total"]);
    let record = expect(
        call(&host, a, "GET", &format!("/api/admin/pulls/{id}"), None).await,
        200,
    );
    assert_eq!(record["state"], "done");
    let installs = expect(call(&host, a, "GET", "/api/admin/pulls", None).await, 200);
    assert_eq!(installs["items"][0]["id"], id.as_str());
    expect(
        call(
            &host,
            a,
            "POST",
            &format!("/api/admin/pulls/{id}/cancel"),
            None,
        )
        .await,
        409,
    );
    assert_eq!(
        get(&host, "/api/explore/models/tiny:1").await["installed"],
        true
    );

    // Usable at once; its files stay while a generation runs.
    let (user, _) = user_session(&host).await;
    let mut running = client()
        .post(host.at("/api/generate"))
        .bearer_auth(&user)
        .json(&json!({"model": "tiny:1", "prompt": "Once upon a time", "options": {"num_predict": 4000}}))
        .send()
        .await
        .unwrap();
    assert_eq!(running.status(), 200);
    running.chunk().await.unwrap().expect("a first token");
    let (status, problem) = call(&host, a, "DELETE", "/api/admin/models/tiny:1/files", None).await;
    assert_eq!(status, 409, "{problem}");
    drop(running);
    eventually("the generation to end", || async {
        call(&host, a, "DELETE", "/api/admin/models/tiny:1/files", None)
            .await
            .0
            == 204
    })
    .await;
    let page = get(&host, "/api/explore/models/tiny:1").await;
    assert_eq!(page["installed"], false, "the entry stays, not installed");
    expect(
        call(&host, a, "DELETE", "/api/admin/models/tiny:1/files", None).await,
        404,
    );
    // An unknown install.
    expect(
        call(&host, a, "GET", "/api/admin/pulls/nope", None).await,
        404,
    );
}
