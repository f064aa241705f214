//! Routing: exact routes, trailing wildcards, precedence, 404, the routing
//! headers a component sees, and streaming in both directions.

use std::time::{Duration, Instant};

use futures::StreamExt;
use lamina_tests::{Host, HostOptions, client, expect_problem};
use serde_json::Value;

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "routing"

[[trigger.http]]
route = "/api/about"
component = "about"

[[trigger.http]]
route = "/api/..."
component = "fixture"

[[trigger.http]]
route = "/api/special/..."
component = "special"

[component.about]
source = "{about}"
environment = { LAMINA_APP_NAME = "routing-test" }

[component.fixture]
source = "{fixture}"
environment = { FIXTURE_GREETING = "hello" }

[component.special]
source = "{about}"
"#;

async fn get_json(url: &str) -> Value {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    response.json().await.unwrap()
}

#[tokio::test]
async fn routes_exact_wildcard_and_most_specific() {
    let host = Host::start(HostOptions::manifest(MANIFEST));

    let about = get_json(&host.at("/api/about")).await;
    assert_eq!(about["service"], "about");
    assert_eq!(about["application"], "routing-test");
    assert_eq!(about["route"], "/api/about");

    let echo = get_json(&host.at("/api/echo/deep/path?x=1")).await;
    assert_eq!(echo["matchedRoute"], "/api/...");
    assert_eq!(echo["componentRoute"], "/api");
    assert_eq!(echo["pathInfo"], "/echo/deep/path");
    assert_eq!(echo["pathWithQuery"], "/api/echo/deep/path?x=1");
    assert_eq!(echo["env"], "hello");

    let special = get_json(&host.at("/api/special/echo")).await;
    assert_eq!(special["service"], "about");
    assert_eq!(special["route"], "/api/special/...");
    assert_eq!(special["pathInfo"], "/echo");
    assert_eq!(
        special["application"],
        Value::Null,
        "environment is per component"
    );

    // `/api/specialty` is not below `/api/special`: the `/api/...` fixture answers.
    let sibling = client()
        .get(host.at("/api/specialty"))
        .send()
        .await
        .unwrap();
    assert_eq!(sibling.text().await.unwrap(), "fixture");
}

#[tokio::test]
async fn unrouted_paths_get_problem_json_404() {
    let host = Host::start(HostOptions::manifest(MANIFEST));
    for path in ["/", "/nope", "/apix"] {
        let response = client().get(host.at(path)).send().await.unwrap();
        let problem = expect_problem(response, 404).await;
        assert_eq!(problem["instance"], path);
    }
}

#[tokio::test]
async fn clients_cannot_forge_routing_headers() {
    let host = Host::start(HostOptions::manifest(MANIFEST));
    let echo: Value = client()
        .get(host.at("/api/echo"))
        .header("spin-path-info", "/admin")
        .header("spin-client-addr", "10.0.0.1:1")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(echo["pathInfo"], "/echo");
    assert!(
        echo["clientAddr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:"),
        "{echo}"
    );
}

#[tokio::test]
async fn response_streams_incrementally() {
    let host = Host::start(HostOptions::manifest(MANIFEST));
    let started = Instant::now();
    let response = client()
        .get(host.at("/api/stream?n=4&delay_ms=400"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let mut chunks = response.bytes_stream();
    let mut received = String::new();
    let mut first_event_at = None;
    while let Some(chunk) = chunks.next().await {
        received.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
        if first_event_at.is_none() && received.contains("data: token-0") {
            first_event_at = Some(started.elapsed());
        }
    }
    let total = started.elapsed();
    let first = first_event_at.expect("first event arrived");
    // Four events 400 ms apart: the first must arrive long before the last.
    assert!(
        total >= Duration::from_millis(1200),
        "stream ended too early: {total:?}"
    );
    assert!(
        total - first >= Duration::from_millis(1000),
        "first event was not streamed: first {first:?}, total {total:?}"
    );
    for i in 0..4 {
        assert!(
            received.contains(&format!("id: {i}\nevent: token\ndata: token-{i}\n\n")),
            "{received}"
        );
    }
    assert!(received.ends_with("event: done\ndata: {}\n\n"));
}

#[tokio::test]
async fn request_body_streams_through_the_component() {
    let host = Host::start(HostOptions::manifest(MANIFEST));
    let body: Vec<u8> = (0..8 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    let response = client()
        .post(host.at("/api/echo"))
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let echoed = response.bytes().await.unwrap();
    assert_eq!(echoed.len(), body.len());
    assert!(echoed == body, "echoed body differs");
}
