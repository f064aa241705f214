//! The model store: `lamina models pull|list|show|rm` from a local file and
//! from an http URL (a loopback server), verified by SHA-256, with nothing
//! left behind by a bad install; removal refused while a generation runs.

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use futures::StreamExt;
use lamina_tests::{
    FileServer, Host, HostOptions, Redirector, STALL_AFTER, client, expect_problem, run_lamina,
    test_gguf,
};
use serde_json::{Value, json};

const SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

fn models(dir: &Path, args: &[&str]) -> (bool, String, String) {
    let mut full = vec!["models", "--models-dir", dir.to_str().unwrap()];
    full.extend_from_slice(args);
    let (status, stdout, stderr) = run_lamina(&full, &[]);
    (status.success(), stdout, stderr)
}

/// Files left in the store's download area and blobs.
fn files(dir: &Path, sub: &str) -> usize {
    std::fs::read_dir(dir.join(sub)).map_or(0, |d| d.count())
}

// The CLI runs blocking while the file server answers: two worker threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn installs_from_a_file_and_a_url_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path();
    let gguf = test_gguf();
    let (ok, stdout, stderr) = models(
        store,
        &[
            "pull",
            "gemma3:local",
            gguf.to_str().unwrap(),
            "--sha256",
            SHA256,
        ],
    );
    assert!(ok, "{stderr}");
    assert!(stdout.contains("installed gemma3:local"), "{stdout}");

    let server = FileServer::start(&gguf).await;
    let url = server.url.clone();
    let (ok, _, stderr) = models(
        store,
        &[
            "pull",
            "gemma3:web",
            &format!("{url}/model.gguf"),
            "--sha256",
            SHA256,
        ],
    );
    assert!(ok, "{stderr}");
    let (_, list, _) = models(store, &["list"]);
    assert!(
        list.contains("gemma3:local") && list.contains("gemma3:web"),
        "{list}"
    );
    assert!(list.contains("Q4_K_M"), "{list}");
    // Same content, one file.
    assert_eq!(files(store, "blobs"), 1);
    let (ok, show, _) = models(store, &["show", "gemma3:web"]);
    assert!(ok);
    let show: Value = serde_json::from_str(&show).unwrap();
    assert_eq!(show["digest"], format!("sha256:{SHA256}"));
    assert_eq!(show["family"], "gemma3");
    assert_eq!(show["contextLength"], 32768);

    // A wrong digest, a missing URL and a file that is not a model are
    // refused, and leave nothing behind.
    let wrong = "0".repeat(64);
    let (ok, _, stderr) = models(
        store,
        &[
            "pull",
            "bad:sha",
            &format!("{url}/model.gguf"),
            "--sha256",
            &wrong,
        ],
    );
    assert!(!ok);
    assert!(stderr.contains("sha256 mismatch"), "{stderr}");
    let (ok, _, stderr) = models(store, &["pull", "bad:url", &format!("{url}/missing")]);
    assert!(!ok);
    assert!(stderr.contains("404"), "{stderr}");
    let junk = dir.path().join("junk.gguf");
    std::fs::write(&junk, b"GGUF\x03\x00\x00\x00 and then garbage").unwrap();
    let (ok, _, stderr) = models(store, &["pull", "bad:file", junk.to_str().unwrap()]);
    assert!(!ok);
    assert!(stderr.contains("not a usable model"), "{stderr}");
    assert_eq!(files(store, "tmp"), 0);
    assert_eq!(files(store, "blobs"), 1);
    let (_, list, _) = models(store, &["list"]);
    assert!(!list.contains("bad:"), "{list}");

    // Removing one name keeps the shared file; removing the last drops it.
    assert!(models(store, &["rm", "gemma3:local"]).0);
    assert_eq!(files(store, "blobs"), 1);
    assert!(models(store, &["rm", "gemma3:web"]).0);
    assert_eq!(files(store, "blobs"), 0);
    let (ok, _, stderr) = models(store, &["rm", "gemma3:web"]);
    assert!(!ok && stderr.contains("not installed"), "{stderr}");
}

#[tokio::test]
async fn removal_waits_for_running_generations() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("models");
    let gguf = test_gguf();
    assert!(models(&store, &["pull", "gemma3:270m", gguf.to_str().unwrap()]).0);
    let host = Host::start(HostOptions::manifest(ADMIN).runtime_config(&store_config(&store)));
    let response = client()
        .post(host.at("/admin/inference/generate"))
        .json(&json!({"model": "gemma3:270m", "prompt": "Tell me a story.", "options": {"temperature": 0, "num_predict": 48}}))
        .send()
        .await
        .unwrap();
    let mut generation = response.bytes_stream();
    generation.next().await.unwrap().unwrap(); // running

    let remove = || async {
        client()
            .post(host.at("/admin/inference/remove"))
            .json(&json!({"model": "gemma3:270m"}))
            .send()
            .await
            .unwrap()
    };
    let problem = expect_problem(remove().await, 409).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("in use"),
        "{problem}"
    );
    // The generation is unharmed and finishes.
    let mut rest = Vec::new();
    while let Some(chunk) = generation.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(String::from_utf8_lossy(&rest).contains("\"done\""));
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert_eq!(remove().await.status(), 200);
    assert_eq!(files(&store, "blobs"), 0);

    // A component pulls by URL only, verified like the CLI.
    let server = FileServer::start(&gguf).await;
    let problem = expect_problem(pull(&host, &gguf.display().to_string(), SHA256).await, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("URL"));
    let wrong = pull(&host, &server.model_url(), &"1".repeat(64)).await;
    let failed = finished(&host, wrong).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["status"], 400, "{failed}");
    assert!(
        failed["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("sha256 mismatch")
    );
    assert_eq!(files(&store, "tmp") + files(&store, "pulls"), 0);
    let done = finished(&host, pull(&host, &server.model_url(), SHA256).await).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["model"]["name"], "gemma3:again");
    assert_eq!(done["completed"], done["total"]);
    // Unknown ids, and ids that are not ids, are simply not found.
    for id in ["0123456789abcdef0123456789abcdef", "../../etc/passwd"] {
        let response = client()
            .get(host.at(&format!("/admin/inference/pull?id={id}")))
            .send()
            .await
            .unwrap();
        expect_problem(response, 404).await;
    }
}

/// The runtime config of a host on the models dir `store` that lets
/// components pull from this test's loopback file server.
fn store_config(store: &Path) -> String {
    format!(
        "[inference]\nmodels_dir = \"{}\"\npull_hosts = [\"127.0.0.1\"]\n\
         allowed_private_sources = [\"127.0.0.1\"]\n",
        store.display()
    )
}

const ADMIN: &str = r#"
spin_manifest_version = 2
[application]
name = "models"
[[trigger.http]]
route = "/admin/..."
component = "admin"
[component.admin]
source = "{capabilities}"
models = ["*"]
manage_models = true
"#;

/// Starts pulling `source` as `gemma3:again` through the admin component;
/// returns the response (202 with the pull's id, or a problem).
async fn pull(host: &Host, source: &str, sha256: &str) -> reqwest::Response {
    client()
        .post(host.at(&format!("/admin/inference/pull?sha256={sha256}")))
        .json(&json!({"model": "gemma3:again", "text": source}))
        .send()
        .await
        .unwrap()
}

/// The status of pull `id`.
async fn pull_status(host: &Host, id: &str) -> Value {
    let response = client()
        .get(host.at(&format!("/admin/inference/pull?id={id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

/// The id of the pull `started` (a 202 `{"id"}`).
async fn pull_id(started: reqwest::Response) -> String {
    assert_eq!(started.status(), 202);
    let body: Value = started.json().await.unwrap();
    body["id"].as_str().unwrap().to_owned()
}

/// Polls the pull `started` answered for until it is done or failed.
async fn finished(host: &Host, started: reqwest::Response) -> Value {
    let id = pull_id(started).await;
    poll(host, &id, |s| {
        s["state"] == "done" || s["state"] == "failed"
    })
    .await
}

/// The models the admin component sees installed.
async fn installed(host: &Host) -> Value {
    client()
        .get(host.at("/admin/inference/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Polls pull `id` until `until` holds (at most two minutes).
async fn poll(host: &Host, id: &str, until: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let status = pull_status(host, id).await;
        if until(&status) {
            return status;
        }
        assert!(Instant::now() < deadline, "pull {id} stuck: {status}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A pull survives its host: killed mid-download, the next host on the same
/// store continues from the bytes it had (a range request) and installs the
/// model; a download no pull owns is deleted when the host starts.
#[tokio::test]
async fn a_pull_survives_a_host_restart() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("models");
    let gguf = test_gguf();
    let size = std::fs::metadata(&gguf).unwrap().len();
    let server = FileServer::start(&gguf).await;
    server.stall.store(true, Ordering::SeqCst);
    let options = || HostOptions::manifest(ADMIN).runtime_config(&store_config(&store));
    let mut host = Host::start(options());
    let id = pull_id(pull(&host, &server.model_url(), SHA256).await).await;
    let half = poll(&host, &id, |s| s["completed"].as_u64() >= Some(STALL_AFTER)).await;
    assert_eq!(half["state"], "downloading", "{half}");
    assert_eq!(half["total"], size);
    host.kill();

    let stale = store
        .join("tmp")
        .join(format!("{}.partial", "f".repeat(32)));
    std::fs::write(&stale, b"left by a crash").unwrap();
    server.stall.store(false, Ordering::SeqCst);
    let host = Host::start(options());
    let done = poll(&host, &id, |s| {
        s["state"] == "done" || s["state"] == "failed"
    })
    .await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["completed"], size);
    assert_eq!(*server.starts.lock().unwrap(), [0, STALL_AFTER]);
    assert!(host.log_contains("resuming an interrupted pull"));
    let models = installed(&host).await;
    assert_eq!(models[0]["name"], "gemma3:again", "{models}");
    assert_eq!(files(&store, "tmp") + files(&store, "pulls"), 0);
}

/// `pull_hosts` limits where components pull from.
#[tokio::test]
async fn pull_hosts_limit_component_pulls() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!(
        "[inference]\nmodels_dir = \"{}\"\npull_hosts = [\"*.example.com\"]\n",
        dir.path().join("models").display()
    );
    let host = Host::start(HostOptions::manifest(ADMIN).runtime_config(&config));
    let problem = expect_problem(
        pull(&host, "http://127.0.0.1:9/model.gguf", SHA256).await,
        400,
    )
    .await;
    assert!(
        problem["detail"].as_str().unwrap().contains("pull_hosts"),
        "{problem}"
    );
}

/// A component's pull reaches public addresses only, unless runtime-config
/// lists one: a loopback URL is refused before anything is fetched, and a
/// redirect from a listed server to an unlisted loopback address is
/// refused at the hop, with nothing asked of that address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pulls_reach_no_private_address_unless_listed() {
    let dir = tempfile::tempdir().unwrap();
    let private = FileServer::start_on("127.0.0.2", &test_gguf()).await;
    let redirector = Redirector::start(&private.model_url()).await;
    let config = format!(
        "[inference]\nmodels_dir = \"{}\"\npull_hosts = [\"*\"]\n\
         allowed_private_sources = [\"127.0.0.1\"]\n",
        dir.path().join("models").display()
    );
    let host = Host::start(HostOptions::manifest(ADMIN).runtime_config(&config));
    let problem = expect_problem(pull(&host, &private.model_url(), SHA256).await, 400).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{problem}"
    );
    let upper = private.model_url().replace("http://", "HTTP://");
    expect_problem(pull(&host, &upper, SHA256).await, 400).await;
    let redirected = format!("{}/model.gguf", redirector.url);
    let failed = finished(&host, pull(&host, &redirected, SHA256).await).await;
    assert_eq!(failed["state"], "failed", "{failed}");
    assert_eq!(failed["error"]["status"], 400, "{failed}");
    assert!(
        failed["error"]["detail"]
            .as_str()
            .unwrap()
            .contains("not a public address"),
        "{failed}"
    );
    assert!(
        private.starts.lock().unwrap().is_empty(),
        "the unlisted address was asked"
    );
    assert_eq!(files(dir.path().join("models").as_path(), "tmp"), 0);
}

/// A component pulling by URL must say what the file's SHA-256 is.
#[tokio::test]
async fn component_pulls_by_url_need_a_sha256() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(
        HostOptions::manifest(ADMIN).runtime_config(&store_config(&dir.path().join("models"))),
    );
    let unverified = client()
        .post(host.at("/admin/inference/pull"))
        .json(&json!({"model": "gemma3:again", "text": "http://127.0.0.1:9/model.gguf"}))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(unverified, 400).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("needs the file's sha256"),
        "{problem}"
    );
}

/// An administrator stops a pull: its download ends and is deleted, nothing
/// is installed, and it says `cancelled`; stopping it again is a no-op.
#[tokio::test]
async fn a_pull_can_be_cancelled() {
    let dir = tempfile::tempdir().unwrap();
    let store = dir.path().join("models");
    let server = FileServer::start(&test_gguf()).await;
    server.stall.store(true, Ordering::SeqCst);
    let host = Host::start(HostOptions::manifest(ADMIN).runtime_config(&store_config(&store)));
    let id = pull_id(pull(&host, &server.model_url(), SHA256).await).await;
    poll(&host, &id, |s| s["completed"].as_u64() >= Some(STALL_AFTER)).await;
    assert!(
        files(&store, "tmp") + files(&store, "pulls") >= 2,
        "a partial file and a job"
    );

    let cancel = || async {
        client()
            .delete(host.at(&format!("/admin/inference/pull?id={id}")))
            .send()
            .await
            .unwrap()
    };
    let response = cancel().await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["cancelled"], true);
    let ended = poll(&host, &id, |s| s["state"] != "downloading").await;
    assert_eq!(ended["state"], "cancelled", "{ended}");
    assert_eq!(
        files(&store, "tmp") + files(&store, "pulls"),
        0,
        "nothing kept"
    );
    let models = installed(&host).await;
    assert_eq!(models, json!([]), "nothing installed");
    let again = cancel().await;
    assert_eq!(again.json::<Value>().await.unwrap()["cancelled"], false);
    let unknown = client()
        .delete(host.at(&format!("/admin/inference/pull?id={}", "0".repeat(32))))
        .send()
        .await
        .unwrap();
    expect_problem(unknown, 404).await;
}
