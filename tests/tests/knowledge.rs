//! Knowledge (documents and retrieval-augmented chat, `components/
//! conversation/src/knowledge`) end to end: the application's spin.toml,
//! real uploads of every format (the PDF and DOCX made by the harness),
//! processing jobs through the queue, MiniLM embeddings in the host's
//! vector index, FTS5 / tsvector, and the real chat model citing sources.

use std::time::{Duration, Instant};

use lamina_tests::documents::{docx, pdf};
use lamina_tests::{
    Host, HostOptions, PgSchema, USER_PASSWORD, call, client, expect, new_conversation, sse_events,
    user_session,
};
use serde_json::{Value, json};

const SECRET: &str = "knowledge-tests-secret-32-bytes-or-more";

fn options() -> HostOptions {
    HostOptions::app_on_test_models(SECRET)
}

/// Uploads `bytes` as `name` to `path` (multipart, field `file`).
async fn upload(host: &Host, token: &str, path: &str, name: &str, bytes: Vec<u8>) -> (u16, Value) {
    let part = reqwest::multipart::Part::bytes(bytes)
        .file_name(name.to_owned())
        .mime_str("application/octet-stream")
        .unwrap();
    let response = client()
        .post(host.at(path))
        .bearer_auth(token)
        .multipart(reqwest::multipart::Form::new().part("file", part))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

async fn new_collection(host: &Host, token: &str, name: &str) -> String {
    let c = expect(
        call(
            host,
            Some(token),
            "POST",
            "/api/knowledge",
            Some(json!({"name": name})),
        )
        .await,
        201,
    );
    c["id"].as_str().unwrap().to_owned()
}

/// Uploads into `collection`; returns the document's id (202, pending).
async fn add(host: &Host, token: &str, collection: &str, name: &str, bytes: Vec<u8>) -> String {
    let path = format!("/api/knowledge/{collection}/documents");
    let doc = expect(upload(host, token, &path, name, bytes).await, 202);
    assert_eq!(doc["status"], "pending", "{doc}");
    doc["id"].as_str().unwrap().to_owned()
}

/// Polls the document until it is processed; panics if it failed.
async fn ready(host: &Host, token: &str, collection: &str, doc: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let d = expect(
            call(
                host,
                Some(token),
                "GET",
                &format!("/api/knowledge/{collection}/documents/{doc}"),
                None,
            )
            .await,
            200,
        );
        match d["status"].as_str().unwrap() {
            "ready" => return d,
            "failed" => panic!("processing failed: {d}"),
            _ => {}
        }
        assert!(Instant::now() < deadline, "not processed in time: {d}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sources `POST /api/knowledge/search` finds.
async fn search(
    host: &Host,
    token: &str,
    collections: &[&str],
    query: &str,
    mode: &str,
) -> Vec<Value> {
    let found = expect(
        call(
            host,
            Some(token),
            "POST",
            "/api/knowledge/search",
            Some(json!({"query": query, "collectionIds": collections, "mode": mode, "topK": 5})),
        )
        .await,
        200,
    );
    found["items"].as_array().unwrap().clone()
}

async fn chunks(host: &Host, token: &str, collection: &str, doc: &str) -> Vec<Value> {
    let page = expect(
        call(
            host,
            Some(token),
            "GET",
            &format!("/api/knowledge/{collection}/documents/{doc}/chunks?pageSize=100"),
            None,
        )
        .await,
        200,
    );
    page["items"].as_array().unwrap().clone()
}

/// Streams a chat message; returns the events.
async fn chat(
    host: &Host,
    token: &str,
    conversation: &str,
    body: Value,
) -> Vec<lamina_tests::Event> {
    let response = client()
        .post(host.at(&format!("/api/conversations/{conversation}/messages")))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    sse_events(&response.text().await.unwrap())
}

#[tokio::test]
async fn every_format_is_read_and_answers_cite_their_source() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let (token, _) = user_session(&host).await;
    let fleet = new_collection(&host, &token, "Fleet").await;

    let files: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "harbour.pdf",
            pdf(&["General notes about the harbour and its opening hours.", "The lighthouse keeper is named Oswin Tarrant."]),
            "pdf",
        ),
        (
            "engines.docx",
            docx(&[("Heading1", "Engines"), ("", "The Kestrel engine runs on compressed peat briquettes.")]),
            "docx",
        ),
        ("gardens.md", b"# Gardens\n\nThe moon orchid blooms only in November.\n".to_vec(), "markdown"),
        ("vault.txt", b"The vault combination is 4471.\n".to_vec(), "text"),
        (
            "bakery.html",
            b"<!DOCTYPE html><html><body><h1>Bakery</h1><p>The bakery sells saffron buns on Tuesdays.</p></body></html>".to_vec(),
            "html",
        ),
        ("crew.csv", b"ship,captain\nAlbatross,Mirela Quint\n".to_vec(), "csv"),
    ];
    let mut ids = Vec::new();
    for (name, bytes, format) in &files {
        let path = format!("/api/knowledge/{fleet}/documents");
        let doc = expect(upload(&host, &token, &path, name, bytes.clone()).await, 202);
        assert_eq!(doc["format"], *format, "{doc}");
        assert_eq!(doc["name"], *name);
        assert_eq!(doc["size"], bytes.len());
        ids.push(doc["id"].as_str().unwrap().to_owned());
    }
    let mut docs = Vec::new();
    for id in &ids {
        docs.push(ready(&host, &token, &fleet, id).await);
    }
    assert_eq!(docs[0]["pages"], 2, "{}", docs[0]);
    let pdf_chunks = chunks(&host, &token, &fleet, &ids[0]).await;
    let keeper = pdf_chunks
        .iter()
        .find(|c| c["content"].as_str().unwrap().contains("Oswin Tarrant"))
        .unwrap_or_else(|| panic!("{pdf_chunks:?}"));
    assert_eq!(keeper["page"], 2);
    for (i, heading) in [(1, "Engines"), (2, "Gardens"), (4, "Bakery")] {
        let c = chunks(&host, &token, &fleet, &ids[i]).await;
        assert!(c.iter().any(|c| c["heading"] == heading), "{c:?}");
    }

    // Each question finds the one document that holds its fact, first.
    let questions = [
        "Who is the lighthouse keeper?",
        "What does the Kestrel engine run on?",
        "When does the moon orchid bloom?",
        "What is the vault combination?",
        "When does the bakery sell saffron buns?",
        "Who is the captain of the Albatross?",
    ];
    for (question, id) in questions.iter().zip(&ids) {
        let found = search(&host, &token, &[&fleet], question, "hybrid").await;
        assert_eq!(found[0]["documentId"], id.as_str(), "{question}: {found:?}");
        assert_eq!(found[0]["n"], 1);
    }

    // The original comes back as it went in, as an attachment.
    let response = client()
        .get(host.at(&format!(
            "/api/knowledge/{fleet}/documents/{}/content",
            ids[3]
        )))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        lamina_tests::header(&response, "content-disposition")
            .starts_with("attachment; filename=\"vault.txt\"")
    );
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        b"The vault combination is 4471.\n"
    );

    // A conversation answering from the collection: the sources come
    // before the first token, numbered as the prompt cites them, and stay
    // with the stored answer.
    let conversation = new_conversation(&host, &token, json!({"model": "smollm2:135m"})).await;
    let conversation = conversation["id"].as_str().unwrap();
    let knowledge = format!("/api/conversations/{conversation}/knowledge");
    let settings = expect(
        call(
            &host,
            Some(&token),
            "PUT",
            &knowledge,
            Some(json!({"collectionIds": [fleet], "topK": 3})),
        )
        .await,
        200,
    );
    assert_eq!(settings["collectionIds"], json!([fleet]));
    assert_eq!(settings["topK"], 3);
    let options = json!({"temperature": 0, "num_predict": 8});
    let events = chat(
        &host,
        &token,
        conversation,
        json!({"content": "Who is the lighthouse keeper?", "options": options}),
    )
    .await;
    let names: Vec<&str> = events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(&names[..3], ["start", "sources", "token"], "{names:?}");
    let sources = events[1].data["items"].as_array().unwrap();
    assert!(sources.len() <= 3);
    assert_eq!(sources[0]["n"], 1);
    assert_eq!(sources[0]["documentId"], ids[0].as_str());
    assert_eq!(sources[0]["documentName"], "harbour.pdf");
    assert_eq!(sources[0]["page"], 2);
    assert!(
        sources[0]["snippet"]
            .as_str()
            .unwrap()
            .contains("Oswin Tarrant")
    );
    let messages = expect(
        call(
            &host,
            Some(&token),
            "GET",
            &format!("/api/conversations/{conversation}/messages"),
            None,
        )
        .await,
        200,
    );
    let answer = &messages["items"][1];
    assert_eq!(answer["role"], "assistant");
    assert_eq!(answer["sources"][0]["chunkId"], sources[0]["chunkId"]);
    assert!(messages["items"][0]["sources"].is_null());

    // `rag: false`: no retrieval, no sources.
    let events = chat(
        &host,
        &token,
        conversation,
        json!({"content": "Who is the lighthouse keeper?", "options": options, "rag": false}),
    )
    .await;
    assert!(events.iter().all(|e| e.name != "sources"));

    // Uploading straight into a conversation: its own collection, used
    // without attaching anything; non-streaming answers carry sources too.
    let other = new_conversation(&host, &token, json!({"model": "smollm2:135m"})).await;
    let other = other["id"].as_str().unwrap();
    let doc = expect(
        upload(
            &host,
            &token,
            &format!("/api/conversations/{other}/documents"),
            "river.txt",
            b"The hidden river is called Vessa.".to_vec(),
        )
        .await,
        202,
    );
    let own = doc["collectionId"].as_str().unwrap().to_owned();
    ready(&host, &token, &own, doc["id"].as_str().unwrap()).await;
    let listed = expect(
        call(
            &host,
            Some(&token),
            "GET",
            &format!("/api/conversations/{other}/documents"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(listed["total"], 1);
    let whole = expect(
        call(
            &host,
            Some(&token),
            "POST",
            &format!("/api/conversations/{other}/messages"),
            Some(json!({"content": "What is the hidden river called?", "options": options, "stream": false})),
        )
        .await,
        200,
    );
    assert_eq!(whole["message"]["sources"][0]["documentId"], doc["id"]);
    let settings = expect(
        call(
            &host,
            Some(&token),
            "GET",
            &format!("/api/conversations/{other}/knowledge"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(settings["ownCollectionId"], own.as_str());
}

#[tokio::test]
async fn hybrid_retrieval_finds_codes_that_vectors_miss() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let (token, _) = user_session(&host).await;
    let parts = new_collection(&host, &token, "Parts").await;
    // The question asks where a valve is kept. The notes on where things
    // are kept say it in other words and name other parts; the one note
    // that names the part says nothing of where.
    let notes = [
        "Where is it stored? Tap QX-4411-A sits on rack one in building one.",
        "Where is it stored? Tap QX-5520-C sits on rack two in building two.",
        "Where is it stored? Tap QX-6631-D sits on rack three in building three.",
        "Where is it stored? Tap QX-7742-E sits on rack four in building four.",
        "Order form: ZR-7734-B, quantity twelve, approved by finance on Monday.",
    ];
    let mut ids = Vec::new();
    for (i, note) in notes.iter().enumerate() {
        ids.push(
            add(
                &host,
                &token,
                &parts,
                &format!("note-{i}.txt"),
                note.as_bytes().to_vec(),
            )
            .await,
        );
    }
    for id in &ids {
        ready(&host, &token, &parts, id).await;
    }
    let query = "Where do we keep valve ZR-7734-B?";
    let target = ids[4].as_str();
    let hybrid = search(&host, &token, &[&parts], query, "hybrid").await;
    assert_eq!(hybrid[0]["documentId"], target, "{hybrid:?}");
    let keyword = search(&host, &token, &[&parts], query, "keyword").await;
    assert_eq!(keyword[0]["documentId"], target, "{keyword:?}");
    let vector = search(&host, &token, &[&parts], query, "vector").await;
    // The embedding matches the meaning (where things are kept), not the code.
    let rank = vector.iter().position(|s| s["documentId"] == target);
    assert!(
        rank.is_none_or(|r| r >= 2),
        "vector search alone ranked it {rank:?}: {vector:?}"
    );
}

#[tokio::test]
async fn uploads_are_checked_and_never_cross_users() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let (token, _) = user_session(&host).await;
    let (intruder, _) = user_session(&host).await;
    let mine = new_collection(&host, &token, "Mine").await;
    let path = format!("/api/knowledge/{mine}/documents");

    // 10 MiB is the limit; one byte more is the component's 413.
    let limit = 10 << 20;
    let (status, _) = upload(&host, &token, &path, "big.txt", vec![b'a'; limit]).await;
    assert_eq!(status, 202);
    let (status, problem) = upload(&host, &token, &path, "big.txt", vec![b'a'; limit + 1]).await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["title"], "file too large");

    // The bytes decide, not the name.
    let exe = [
        b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff".as_slice(),
        &[0u8; 64],
    ]
    .concat();
    let (status, problem) = upload(&host, &token, &path, "notes.txt", exe).await;
    assert_eq!(status, 400, "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not a supported"),
        "{problem}"
    );
    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    zip.start_file("notes.xml", zip::write::SimpleFileOptions::default())
        .unwrap();
    std::io::Write::write_all(&mut zip, b"<notes/>").unwrap();
    let not_docx = zip.finish().unwrap().into_inner();
    let (status, _) = upload(&host, &token, &path, "a.docx", not_docx).await;
    assert_eq!(status, 400);
    let (status, _) = upload(&host, &token, &path, "empty.txt", Vec::new()).await;
    assert_eq!(status, 400);
    let (status, problem) = call(
        &host,
        Some(&token),
        "POST",
        &path,
        Some(json!({"file": "x"})),
    )
    .await;
    assert_eq!(status, 415, "{problem}");

    // A path in the name is dropped.
    let (status, doc) = upload(
        &host,
        &token,
        &path,
        "../../etc/passwd",
        b"root:x:0:0".to_vec(),
    )
    .await;
    assert_eq!(status, 202, "{doc}");
    assert_eq!(doc["name"], "passwd");

    // Another user's collection, document and conversation are not found.
    let doc_path = format!("{path}/{}", doc["id"].as_str().unwrap());
    for (method, p) in [
        ("GET", format!("/api/knowledge/{mine}")),
        ("DELETE", format!("/api/knowledge/{mine}")),
        ("GET", path.clone()),
        ("GET", doc_path.clone()),
        ("GET", format!("{doc_path}/content")),
        ("POST", format!("{doc_path}/reprocess")),
        ("DELETE", doc_path.clone()),
    ] {
        let (status, _) = call(&host, Some(&intruder), method, &p, None).await;
        assert_eq!(status, 404, "{method} {p}");
    }
    let (status, _) = upload(&host, &intruder, &path, "x.txt", b"x".to_vec()).await;
    assert_eq!(status, 404);
    let (status, _) = call(
        &host,
        Some(&intruder),
        "POST",
        "/api/knowledge/search",
        Some(json!({"query": "root", "collectionIds": [mine]})),
    )
    .await;
    assert_eq!(status, 404);
    let theirs = new_conversation(&host, &intruder, json!({"model": "smollm2:135m"})).await;
    let theirs = theirs["id"].as_str().unwrap();
    let (status, _) = call(
        &host,
        Some(&intruder),
        "PUT",
        &format!("/api/conversations/{theirs}/knowledge"),
        Some(json!({"collectionIds": [mine]})),
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = upload(
        &host,
        &token,
        &format!("/api/conversations/{theirs}/documents"),
        "x.txt",
        b"x".to_vec(),
    )
    .await;
    assert_eq!(status, 404);

    // Bad settings are named.
    let (status, problem) = call(
        &host,
        Some(&intruder),
        "PUT",
        &format!("/api/conversations/{theirs}/knowledge"),
        Some(json!({"collectionIds": [], "topK": 0, "minScore": 2})),
    )
    .await;
    assert_eq!(status, 400);
    let fields: Vec<&str> = problem["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["topK", "minScore"], "{problem}");
}

#[tokio::test]
async fn reprocessing_replaces_and_deleting_removes_everything_on_postgres() {
    let pg = PgSchema::new();
    let host = Host::start(
        options()
            .databases(&pg.databases())
            .runtime_config("[blobs.default]\ntype = \"sql\"\nmax_blob_size = \"32MiB\"\n"),
    );
    let (token, user) = user_session(&host).await;
    let vectors = || {
        pg.psql_value(
            "host",
            &format!("SELECT COUNT(*) FROM lamina_vectors WHERE owner = '{user}'"),
        )
    };
    let blobs = || {
        pg.psql_value(
            "host",
            &format!("SELECT COUNT(*) FROM lamina_blobs WHERE key LIKE 'knowledge/{user}/%'"),
        )
    };
    let manual = new_collection(&host, &token, "Manual").await;
    // More chunks than one INSERT takes (the host's 1 000 parameters).
    let text = (1..=120)
        .map(|i| format!("## Step {i}\n\nTurn dial {i} until the lamp labelled L{i} glows amber."))
        .collect::<Vec<_>>()
        .join("\n\n");
    let doc = add(&host, &token, &manual, "manual.md", text.into_bytes()).await;
    let first = ready(&host, &token, &manual, &doc).await;
    let count = first["chunkCount"].as_i64().unwrap();
    assert!(count >= 120, "{first}");
    assert_eq!(vectors(), count.to_string());
    assert_eq!(blobs(), "1");
    let found = search(&host, &token, &[&manual], "lamp L17", "hybrid").await;
    assert!(
        found[0]["snippet"].as_str().unwrap().contains("L17"),
        "{found:?}"
    );

    // Reprocessing replaces the chunks and vectors, never adds to them.
    let again = expect(
        call(
            &host,
            Some(&token),
            "POST",
            &format!("/api/knowledge/{manual}/documents/{doc}/reprocess"),
            None,
        )
        .await,
        202,
    );
    assert_eq!(again["status"], "pending");
    let second = ready(&host, &token, &manual, &doc).await;
    assert_eq!(second["chunkCount"], count);
    // The old generation's vectors go just after the swap commits.
    let deadline = Instant::now() + Duration::from_secs(10);
    while vectors() != count.to_string() {
        assert!(
            Instant::now() < deadline,
            "vectors: {} for {count} chunks",
            vectors()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = chunks(&host, &token, &manual, &doc).await;
    assert!(
        listed
            .iter()
            .all(|c| c["id"].as_str().unwrap().starts_with(&format!("{doc}:2:")))
    );

    // Deleting the document takes its chunks, vectors and file.
    let (status, _) = call(
        &host,
        Some(&token),
        "DELETE",
        &format!("/api/knowledge/{manual}/documents/{doc}"),
        None,
    )
    .await;
    assert_eq!(status, 204);
    assert_eq!(vectors(), "0");
    assert_eq!(blobs(), "0");
    assert!(
        search(&host, &token, &[&manual], "lamp L17", "hybrid")
            .await
            .is_empty()
    );

    // A deleted account takes every collection, file and vector with it.
    let doc = add(
        &host,
        &token,
        &manual,
        "again.md",
        b"# Again\n\nThe lamp glows.".to_vec(),
    )
    .await;
    ready(&host, &token, &manual, &doc).await;
    assert_ne!(vectors(), "0");
    let (status, body) = call(
        &host,
        Some(&token),
        "DELETE",
        "/api/auth/me",
        Some(json!({"currentPassword": USER_PASSWORD})),
    )
    .await;
    assert_eq!(status, 204, "{body}");
    let deadline = Instant::now() + Duration::from_secs(30);
    while vectors() != "0" || blobs() != "0" {
        assert!(
            Instant::now() < deadline,
            "the account's vectors and files stayed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows = pg.psql_value(
        "conversation",
        &format!("SELECT COUNT(*) FROM conv_collections WHERE user_id = '{user}'"),
    );
    assert_eq!(rows, "0");
}
