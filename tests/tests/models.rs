//! The model store: `lamina models pull|list|show|rm` from a local file and
//! from an http URL (a loopback server), verified by SHA-256, with nothing
//! left behind by a bad install; removal refused while a generation runs.

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use lamina_tests::{Host, HostOptions, client, expect_problem, run_lamina, test_gguf};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

/// Serves `file` at `/model.gguf` (404 elsewhere) on a loopback port.
async fn serve(file: &Path) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let file = file.to_owned();
    tokio::spawn(async move {
        loop {
            let (mut socket, _) = listener.accept().await.unwrap();
            let file = file.clone();
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = socket.read(&mut buf).await.unwrap();
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                }
                if !request.starts_with(b"GET /model.gguf ") {
                    let _ = socket
                        .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    return;
                }
                let mut source = tokio::fs::File::open(&file).await.unwrap();
                let len = source.metadata().await.unwrap().len();
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n"
                );
                socket.write_all(head.as_bytes()).await.unwrap();
                let _ = tokio::io::copy(&mut source, &mut socket).await;
            });
        }
    });
    format!("http://{addr}")
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

    let url = serve(&gguf).await;
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
    let host = Host::start(
        HostOptions::manifest(
            r#"
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
"#,
        )
        .runtime_config(&format!(
            "[inference]\nmodels_dir = \"{}\"\n",
            store.display()
        )),
    );
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

    // A component installs by URL only, verified like the CLI.
    let url = serve(&gguf).await;
    let install = |source: String, sha: &str| {
        let url = host.at(&format!("/admin/inference/install?sha256={sha}"));
        async move {
            client()
                .post(url)
                .json(&json!({"model": "gemma3:again", "text": source}))
                .send()
                .await
                .unwrap()
        }
    };
    let problem = expect_problem(install(gguf.display().to_string(), SHA256).await, 400).await;
    assert!(problem["detail"].as_str().unwrap().contains("URL"));
    expect_problem(
        install(format!("{url}/model.gguf"), &"1".repeat(64)).await,
        400,
    )
    .await;
    assert_eq!(files(&store, "tmp"), 0);
    let installed = install(format!("{url}/model.gguf"), SHA256).await;
    assert_eq!(installed.status(), 200);
    let info: Value = installed.json().await.unwrap();
    assert_eq!(info["name"], "gemma3:again");
}
