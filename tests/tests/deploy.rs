//! Hot deploy: swap under load with zero failed requests, in-flight requests
//! finish on the old version, bad components are rejected, the token is
//! required.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use lamina_tests::{Host, HostOptions, client, expect_problem, get_text, run_lamina, wasm};

const TOKEN: &str = "test-deploy-token-5f2c";

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "deploy"

[[trigger.http]]
route = "/swap/..."
component = "swap"

[component.swap]
source = "{fixture}"
environment = { LAMINA_APP_NAME = "deploy-test" }
"#;

fn start() -> Host {
    Host::start(HostOptions::manifest(MANIFEST).env("LAMINA_DEPLOY_TOKEN", TOKEN))
}

async fn put(host: &Host, id: &str, token: Option<&str>, body: Vec<u8>) -> reqwest::Response {
    let mut request = client()
        .put(format!("{}/v1/components/{id}", host.admin_url))
        .body(body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn hot_deploy_under_load_drops_nothing() {
    let host = start();
    let url = host.at("/swap");
    assert_eq!(get_text(&url).await, "fixture");

    // A slow request that starts on the old version must finish on it.
    let in_flight = tokio::spawn({
        let url = host.at("/swap/sleep?ms=1500");
        async move { get_text(&url).await }
    });

    // Continuous load from 8 clients while the deploy happens.
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed, new_version) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicUsize::new(0)),
    );
    let mut workers = Vec::new();
    for _ in 0..8 {
        let (client, url, stop) = (client(), url.clone(), stop.clone());
        let (ok, failed, new_version) = (ok.clone(), failed.clone(), new_version.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match client.get(&url).send().await {
                    Ok(response) if response.status() == 200 => {
                        let body = response.text().await.unwrap_or_default();
                        if body.contains("\"service\":\"about\"") {
                            new_version.fetch_add(1, Ordering::Relaxed);
                        } else {
                            assert_eq!(body, "fixture");
                        }
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Deploy with the CLI, as a user would.
    let about = wasm("about").display().to_string();
    let (status, stdout, stderr) = tokio::task::spawn_blocking({
        let admin = host.admin_url.clone();
        move || {
            run_lamina(
                &["deploy", "swap", &about, "--admin-url", &admin],
                &[("LAMINA_DEPLOY_TOKEN", TOKEN)],
            )
        }
    })
    .await
    .unwrap();
    assert!(status.success(), "deploy failed: {stdout} {stderr}");
    assert!(stdout.contains("Deployed swap"), "{stdout}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.unwrap();
    }
    assert_eq!(
        in_flight.await.unwrap(),
        "slept",
        "in-flight request finished on the old version"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "requests failed during the deploy"
    );
    assert!(
        ok.load(Ordering::Relaxed) > 50,
        "load ran: {}",
        ok.load(Ordering::Relaxed)
    );
    assert!(
        new_version.load(Ordering::Relaxed) > 0,
        "the new version served requests"
    );

    let after: serde_json::Value = client()
        .get(&url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after["service"], "about");
    assert_eq!(
        after["application"], "deploy-test",
        "the manifest's settings carry over"
    );

    let listed: serde_json::Value = client()
        .get(format!("{}/v1/components", host.admin_url))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed["items"][0]["id"], "swap");
    assert_eq!(listed["items"][0]["world"], "wasi:http@0.2");
}

#[tokio::test]
async fn broken_components_are_rejected_and_the_old_version_keeps_serving() {
    let host = start();
    // Not wasm; a core module (not a component); a component without an HTTP export.
    let core_module = b"\0asm\x01\0\0\0".to_vec();
    for (body, expect) in [
        (
            b"definitely not wasm".to_vec(),
            "not a valid WebAssembly component",
        ),
        (core_module, "not a valid WebAssembly component"),
    ] {
        let problem = expect_problem(put(&host, "swap", Some(TOKEN), body).await, 422).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains("previous version keeps serving") && detail.contains(expect),
            "{detail}"
        );
    }
    let problem = expect_problem(put(&host, "nope", Some(TOKEN), b"x".to_vec()).await, 404).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("unknown component `nope`")
    );
    expect_problem(put(&host, "swap", Some(TOKEN), Vec::new()).await, 400).await;

    assert_eq!(get_text(&host.at("/swap")).await, "fixture");
}

#[tokio::test]
async fn deploy_requires_the_token() {
    let host = start();
    let wasm = std::fs::read(wasm("about")).unwrap();
    expect_problem(put(&host, "swap", None, wasm.clone()).await, 401).await;
    expect_problem(
        put(&host, "swap", Some("wrong-token"), wasm.clone()).await,
        401,
    )
    .await;
    let listed = client()
        .get(format!("{}/v1/components", host.admin_url))
        .send()
        .await
        .unwrap();
    expect_problem(listed, 401).await;
    assert_eq!(get_text(&host.at("/swap")).await, "fixture");

    // A host started without a token refuses every deploy.
    let locked = Host::start(HostOptions::manifest(MANIFEST));
    let problem = expect_problem(put(&locked, "swap", Some(TOKEN), wasm).await, 403).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("LAMINA_DEPLOY_TOKEN")
    );
}

#[tokio::test]
async fn oversized_uploads_are_refused() {
    let host = Host::start(
        HostOptions::manifest(MANIFEST)
            .env("LAMINA_DEPLOY_TOKEN", TOKEN)
            .runtime_config("[admin]\nmax_component_size = \"64KiB\"\n"),
    );
    let problem = expect_problem(
        put(&host, "swap", Some(TOKEN), vec![0u8; 200 * 1024]).await,
        413,
    )
    .await;
    assert!(problem["detail"].as_str().unwrap().contains("limit"));
}
