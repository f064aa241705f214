//! The execution model: deadlines, timeouts, memory limits and trap
//! isolation, each followed by proof that the host keeps serving.

use lamina_tests::{Host, HostOptions, client, expect_problem};

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "execution"

[[trigger.http]]
route = "/f/..."
component = "fixture"
execution_deadline = "300ms"
timeout = "1500ms"

[component.fixture]
source = "{fixture}"
memory_limit = "16MiB"
"#;

async fn assert_still_serving(host: &Host) {
    let response = client().get(host.at("/f/echo")).send().await.unwrap();
    assert_eq!(response.status(), 200, "host stopped serving");
}

#[tokio::test]
async fn endless_loop_is_stopped_with_504() {
    let host = Host::start(HostOptions::manifest(MANIFEST));
    let response = client().get(host.at("/f/loop")).send().await.unwrap();
    let problem = expect_problem(response, 504).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("without returning to the host"),
        "{problem}"
    );
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn slow_response_times_out_with_504_but_waiting_is_not_a_deadline() {
    let host = Host::start(HostOptions::manifest(MANIFEST));
    // 1 s of waiting in a host call: over the 300 ms execution deadline in
    // wall-clock time, but the guest is idle, so it succeeds.
    let response = client()
        .get(host.at("/f/sleep?ms=1000"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.text().await.unwrap(), "slept");
    // 3 s exceeds the route's 1.5 s timeout.
    let response = client()
        .get(host.at("/f/sleep?ms=3000"))
        .send()
        .await
        .unwrap();
    let problem = expect_problem(response, 504).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("did not respond within"),
        "{problem}"
    );
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn memory_hog_hits_its_limit_with_500() {
    let host = Host::start(HostOptions::manifest(MANIFEST));
    let response = client().get(host.at("/f/hog")).send().await.unwrap();
    let problem = expect_problem(response, 500).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("memory limit of 16MiB"),
        "{problem}"
    );
    assert_still_serving(&host).await;
}

#[tokio::test]
async fn traps_are_isolated_under_concurrent_load() {
    let host = Host::start(HostOptions::manifest(MANIFEST));
    let client = client();
    let mut tasks = Vec::new();
    for i in 0..240 {
        let client = client.clone();
        let url = if i % 8 == 0 {
            host.at("/f/trap")
        } else {
            host.at(&format!("/f/echo/{i}"))
        };
        tasks.push(tokio::spawn(async move {
            let response = client.get(&url).send().await.unwrap();
            (
                url,
                response.status().as_u16(),
                response.text().await.unwrap(),
            )
        }));
    }
    let (mut traps, mut ok) = (0, 0);
    for task in tasks {
        let (url, status, body) = task.await.unwrap();
        if url.ends_with("/trap") {
            assert_eq!(status, 500, "{body}");
            assert!(body.contains("failed before responding"), "{body}");
            traps += 1;
        } else {
            assert_eq!(status, 200, "{url}: {body}");
            let echo: serde_json::Value = serde_json::from_str(&body).unwrap();
            assert_eq!(
                format!("{}{}", host.url, echo["pathWithQuery"].as_str().unwrap()),
                url
            );
            ok += 1;
        }
    }
    assert_eq!((traps, ok), (30, 210));
    assert!(
        host.log_contains("fixture trap requested"),
        "the guest panic reaches the host log"
    );
}

#[tokio::test]
async fn every_request_gets_a_fresh_instance() {
    // The fixture counts requests in a global; a reused instance would count up.
    let host = Host::start(HostOptions::manifest(MANIFEST));
    for _ in 0..5 {
        let response = client().get(host.at("/f/counter")).send().await.unwrap();
        assert_eq!(response.text().await.unwrap(), "1");
    }
}
