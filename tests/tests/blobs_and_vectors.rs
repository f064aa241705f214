//! The `blobs` and `vectors` capabilities through the capabilities fixture:
//! a directory bucket and a host-database bucket, vector search with its
//! owner filter, paging and limits, on SQLite and on PostgreSQL shared by
//! two hosts.

use lamina_tests::{Host, HostOptions, PgSchema, client, expect_problem};
use serde_json::{Value, json};

const MANIFEST: &str = r#"
spin_manifest_version = 2

[application]
name = "blobs-and-vectors"

[[trigger.http]]
route = "/caps/..."
component = "caps"

[[trigger.http]]
route = "/other/..."
component = "other"

[component.caps]
source = "{capabilities}"
blobs = ["default", "shared"]
vector_indexes = ["default", "small"]

[component.other]
source = "{capabilities}"
"#;

/// `shared` lives in the host database and takes at most 1 KiB; `small`
/// refuses searches that would scan more than 10 vectors.
const CONFIG: &str = "[blobs.shared]\ntype = \"sql\"\nmax_blob_size = \"1KiB\"\n\
                      [vector_indexes.small]\ntype = \"sql\"\nmax_scan = 10\n";

fn start(data: &std::path::Path, databases: &str) -> Host {
    Host::start(
        HostOptions::manifest(MANIFEST)
            .data_dir(data)
            .runtime_config(&format!("{databases}{CONFIG}")),
    )
}

async fn call(host: &Host, method: &str, path: &str, body: Option<Vec<u8>>) -> reqwest::Response {
    let request = client().request(method.parse().unwrap(), host.at(path));
    let request = match body {
        Some(body) => request.body(body),
        None => request,
    };
    request.send().await.unwrap()
}

async fn ok(response: reqwest::Response) -> Value {
    let status = response.status();
    let text = response.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    serde_json::from_str(&text).unwrap()
}

async fn vectors(host: &Host, op: &str, index: &str, body: Value) -> reqwest::Response {
    call(
        host,
        "POST",
        &format!("/caps/vectors/{op}?index={index}"),
        Some(body.to_string().into_bytes()),
    )
    .await
}

async fn vectors_ok(host: &Host, op: &str, index: &str, body: Value) -> Value {
    ok(vectors(host, op, index, body).await).await
}

async fn blobs_contract(host: &Host, bucket: &str) {
    let at = |op: &str, rest: &str| format!("/caps/blobs/{op}?bucket={bucket}&{rest}");
    for (key, body) in [
        ("u1/b", "bee"),
        ("u1/a", "ay"),
        ("u2/a", "other"),
        ("../../x", "dots"),
    ] {
        ok(call(
            host,
            "POST",
            &at("put", &format!("key={key}")),
            Some(body.into()),
        )
        .await)
        .await;
    }
    assert_eq!(
        ok(call(host, "GET", &at("get", "key=u1/a"), None).await).await,
        "ay"
    );
    assert_eq!(
        ok(call(host, "GET", &at("get", "key=../../x"), None).await).await,
        "dots"
    );
    // Replacing a blob keeps one copy.
    ok(call(host, "POST", &at("put", "key=u1/a"), Some("AY".into())).await).await;
    let listed = ok(call(host, "GET", &at("list", "prefix=u1/"), None).await).await;
    let keys: Vec<(&str, u64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|i| (i["key"].as_str().unwrap(), i["size"].as_u64().unwrap()))
        .collect();
    assert_eq!(keys, [("u1/a", 2), ("u1/b", 3)]);
    let page = ok(call(
        host,
        "GET",
        &at("list", "prefix=u1/&after=u1/a&limit=1"),
        None,
    )
    .await)
    .await;
    assert_eq!(page[0]["key"], "u1/b");
    assert_eq!(page.as_array().unwrap().len(), 1);
    assert_eq!(
        call(host, "GET", &at("get", "key=nope"), None)
            .await
            .status(),
        404
    );
    let deleted = ok(call(host, "POST", &at("delete-prefix", "prefix=u1/"), None).await).await;
    assert_eq!(deleted["deleted"], 2);
    assert_eq!(
        call(host, "GET", &at("get", "key=u1/b"), None)
            .await
            .status(),
        404
    );
    assert_eq!(
        ok(call(host, "GET", &at("get", "key=u2/a"), None).await).await,
        "other"
    );
    // An empty prefix would empty the bucket: refused.
    expect_problem(
        call(host, "POST", &at("delete-prefix", "prefix="), None).await,
        400,
    )
    .await;
    let deleted = ok(call(host, "POST", &at("delete", "key=u2/a"), None).await).await;
    assert_eq!(deleted["deleted"], true);
    // An empty key is refused.
    expect_problem(
        call(host, "POST", &at("put", "key="), Some("x".into())).await,
        400,
    )
    .await;
}

#[tokio::test]
async fn blobs_in_a_directory_and_in_the_host_database() {
    let data = tempfile::tempdir().unwrap();
    let host = start(data.path(), "");
    blobs_contract(&host, "default").await;
    blobs_contract(&host, "shared").await;
    // Directory blobs are files named by their key's hash: nothing escaped.
    assert!(data.path().join("blobs/default").is_dir());
    assert!(!data.path().join("x").exists());
    // Past the bucket's limit: 413.
    let big = vec![b'x'; 2048];
    let problem = expect_problem(
        call(
            &host,
            "POST",
            "/caps/blobs/put?bucket=shared&key=big",
            Some(big),
        )
        .await,
        413,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("1024"),
        "{problem}"
    );
    // Not granted: the component gets access-denied (a deployment error).
    let denied = expect_problem(
        call(&host, "GET", "/other/blobs/get?key=a", None).await,
        500,
    )
    .await;
    assert!(
        denied["detail"].as_str().unwrap().contains("not granted"),
        "{denied}"
    );
}

/// Unit vector `i` of `dim`, nudged towards `j` by `w`.
fn axis(dim: usize, i: usize, j: usize, w: f32) -> Vec<f32> {
    let mut v = vec![0.0; dim];
    v[i] = 1.0;
    v[j] += w;
    v
}

async fn vectors_contract(host: &Host) {
    // Owner ann: three vectors in two collections; bob: one, identical to ann's best.
    let upsert = |owner: &str, collection: &str, items: Value| json!({"owner": owner, "collection": collection, "items": items});
    vectors_ok(
        host,
        "upsert",
        "default",
        upsert(
            "ann",
            "notes",
            json!([
                ["a1", axis(8, 0, 1, 0.0), "{\"chunk\":1}"],
                ["a2", axis(8, 0, 1, 1.0), null],
                ["a3", axis(8, 1, 2, 0.0), null],
            ]),
        ),
    )
    .await;
    vectors_ok(
        host,
        "upsert",
        "default",
        upsert("ann", "other", json!([["a4", axis(8, 0, 1, 0.1), null]])),
    )
    .await;
    vectors_ok(
        host,
        "upsert",
        "default",
        upsert("bob", "notes", json!([["b1", axis(8, 0, 1, 0.0), null]])),
    )
    .await;

    let query = |owner: &str, collections: Value, k: u32, min: Option<f32>| json!({"owner": owner, "collections": collections, "vector": axis(8, 0, 1, 0.0), "top_k": k, "min_score": min});
    let hits = vectors_ok(
        host,
        "query",
        "default",
        query("ann", json!(["notes"]), 3, None),
    )
    .await;
    let ids: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a1", "a2", "a3"], "{hits}");
    assert!((hits[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5);
    assert!((hits[1]["score"].as_f64().unwrap() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-4);
    assert_eq!(hits[0]["metadata"], "{\"chunk\":1}");
    // Only the collections named, only the owner's, above the floor.
    let hits = vectors_ok(
        host,
        "query",
        "default",
        query("ann", json!(["notes", "other"]), 2, Some(0.5)),
    )
    .await;
    let ids: Vec<&str> = hits
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a1", "a4"], "{hits}");
    let hits = vectors_ok(
        host,
        "query",
        "default",
        query("bob", json!(["notes", "other"]), 10, None),
    )
    .await;
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits[0]["id"], "b1");
    // Ids are each owner's: bob's `a1` is another vector, ann's is unchanged.
    vectors_ok(
        host,
        "upsert",
        "default",
        upsert("bob", "notes", json!([["a1", axis(8, 5, 6, 0.0), null]])),
    )
    .await;
    let hits = vectors_ok(
        host,
        "query",
        "default",
        query("ann", json!(["notes"]), 1, None),
    )
    .await;
    assert_eq!(hits[0]["id"], "a1");
    assert!(
        (hits[0]["score"].as_f64().unwrap() - 1.0).abs() < 1e-5,
        "{hits}"
    );

    // One id twice in an upsert: the last one wins.
    let twice = json!([
        ["t", axis(8, 6, 7, 0.0), null],
        ["t", axis(8, 0, 1, 0.0), "last"]
    ]);
    vectors_ok(host, "upsert", "default", upsert("ann", "twice", twice)).await;
    let hits = vectors_ok(
        host,
        "query",
        "default",
        query("ann", json!(["twice"]), 5, None),
    )
    .await;
    assert_eq!(hits.as_array().unwrap().len(), 1, "{hits}");
    assert_eq!(hits[0]["metadata"], "last");

    // Bad input: another dimension, a zero vector, top-k 0, min-score 2.
    let wrong = vectors(
        host,
        "upsert",
        "default",
        upsert("ann", "notes", json!([["w", [1.0, 2.0], null]])),
    )
    .await;
    let problem = expect_problem(wrong, 400).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("8 dimensions"),
        "{problem}"
    );
    expect_problem(
        vectors(
            host,
            "upsert",
            "default",
            upsert("ann", "notes", json!([["z", vec![0.0; 8], null]])),
        )
        .await,
        400,
    )
    .await;
    expect_problem(
        vectors(
            host,
            "query",
            "default",
            query("ann", json!(["notes"]), 0, None),
        )
        .await,
        400,
    )
    .await;
    let too_high = query("ann", json!(["notes"]), 3, Some(2.0));
    expect_problem(vectors(host, "query", "default", too_high).await, 400).await;

    // Many vectors: the scan pages through them all (2 500 rows, pages of 1 000).
    for batch in 0..3 {
        let items: Vec<Value> = (0..1000)
            .filter(|i| batch * 1000 + i < 2500)
            .map(|i| {
                let n = batch * 1000 + i;
                json!([format!("m{n:05}"), axis(8, 3, 4, n as f32 / 2500.0), null])
            })
            .collect();
        vectors_ok(
            host,
            "upsert",
            "default",
            upsert("many", "bulk", json!(items)),
        )
        .await;
    }
    let count = vectors_ok(
        host,
        "count",
        "default",
        json!({"owner": "many", "collection": "bulk"}),
    )
    .await;
    assert_eq!(count["count"], 2500);
    let nearest =
        json!({"owner": "many", "collections": ["bulk"], "vector": axis(8, 3, 4, 1.0), "top_k": 2});
    let hits = vectors_ok(host, "query", "default", nearest).await;
    assert_eq!(hits[0]["id"], "m02499", "{hits}");
    assert_eq!(hits[1]["id"], "m02498", "{hits}");

    // Deletes: by id, then an owner's collection.
    let deleted = vectors_ok(
        host,
        "delete",
        "default",
        json!({"owner": "ann", "ids": ["a2", "a3", "nope", "b1"]}),
    )
    .await;
    assert_eq!(deleted["deleted"], 2);
    let deleted = vectors_ok(
        host,
        "delete-owner",
        "default",
        json!({"owner": "many", "collection": "bulk"}),
    )
    .await;
    assert_eq!(deleted["deleted"], 2500);
    let count = vectors_ok(
        host,
        "count",
        "default",
        json!({"owner": "ann", "collection": "notes"}),
    )
    .await;
    assert_eq!(count["count"], 1);

    // An index nothing was stored in finds nothing; one with a small
    // `max_scan` refuses a search past it.
    let none = vectors_ok(host, "query", "small", query("ann", json!(["c"]), 3, None)).await;
    assert_eq!(none, json!([]));
    let items: Vec<Value> = (0..11)
        .map(|i| json!([format!("s{i}"), axis(8, 0, 1, i as f32), null]))
        .collect();
    vectors_ok(host, "upsert", "small", upsert("ann", "c", json!(items))).await;
    let problem = expect_problem(
        vectors(host, "query", "small", query("ann", json!(["c"]), 3, None)).await,
        400,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("max_scan"),
        "{problem}"
    );
    // Not granted.
    expect_problem(
        call(host, "POST", "/other/vectors/count", Some(b"{}".to_vec())).await,
        500,
    )
    .await;
}

#[tokio::test]
async fn vectors_on_sqlite() {
    let data = tempfile::tempdir().unwrap();
    vectors_contract(&start(data.path(), "")).await;
}

#[tokio::test]
async fn vectors_and_blobs_on_postgresql_are_shared_by_two_hosts() {
    let schema = PgSchema::new();
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let a = start(a_dir.path(), &schema.databases());
    let b = start(b_dir.path(), &schema.databases());
    vectors_contract(&a).await;
    blobs_contract(&a, "shared").await;
    // What one host stored, the other finds.
    ok(call(
        &a,
        "POST",
        "/caps/blobs/put?bucket=shared&key=upload",
        Some("from a".into()),
    )
    .await)
    .await;
    assert_eq!(
        ok(call(&b, "GET", "/caps/blobs/get?bucket=shared&key=upload", None).await).await,
        "from a"
    );
    let hits = vectors_ok(
        &b,
        "query",
        "default",
        json!({"owner": "ann", "collections": ["notes"], "vector": axis(8, 0, 1, 0.0), "top_k": 1}),
    )
    .await;
    assert_eq!(hits[0]["id"], "a1", "{hits}");
    // Directory buckets are each host's own.
    ok(call(
        &a,
        "POST",
        "/caps/blobs/put?bucket=default&key=local",
        Some("a".into()),
    )
    .await)
    .await;
    assert_eq!(
        call(&b, "GET", "/caps/blobs/get?bucket=default&key=local", None)
            .await
            .status(),
        404
    );
}
