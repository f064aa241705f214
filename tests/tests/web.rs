//! The web app (`components/web`): how the component serves the built
//! files over real HTTP, then the app itself in headless Chromium
//! (`components/web/app/e2e/`, playwright-core) against a real `lamina`
//! with the real chat model.

use std::process::Command;

use lamina_tests::{
    ADMIN_LOGIN, ADMIN_PASSWORD, Host, HostOptions, client, create_api_key, expect_problem, header,
    register, target_dir, workspace,
};

const SECRET: &str = "web-tests-secret-32-bytes-or-more!!";

fn options() -> HostOptions {
    HostOptions::app_on_test_models(SECRET).with_admin()
}

async fn get(host: &Host, path: &str, headers: &[(&str, &str)]) -> reqwest::Response {
    let mut request = client().get(host.at(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

#[tokio::test]
async fn the_app_is_served_with_caching_compression_and_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));

    // `/` and client routes (the mailed links included) are the app.
    let index = get(&host, "/", &[]).await;
    assert_eq!(index.status(), 200);
    assert_eq!(header(&index, "content-type"), "text/html; charset=utf-8");
    assert_eq!(header(&index, "cache-control"), "no-cache");
    let csp = header(&index, "content-security-policy");
    assert!(
        csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
        "{csp}"
    );
    assert_eq!(header(&index, "x-content-type-options"), "nosniff");
    let etag = header(&index, "etag");
    let html = index.text().await.unwrap();
    assert!(html.contains("<div id=\"app\">"), "{html}");
    assert!(!html.contains("<script>"), "no inline script: {html}");
    for route in [
        "/c/123",
        "/reset-password?token=abc",
        "/confirm-email?token=abc",
        "/admin/users",
    ] {
        let page = get(&host, route, &[]).await;
        assert_eq!(page.status(), 200, "{route}");
        assert_eq!(page.text().await.unwrap(), html, "{route}");
    }

    // Revalidation: the same ETag is 304 with no body.
    let again = get(&host, "/", &[("if-none-match", &etag)]).await;
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());

    // The hashed script: immutable, brotli or gzip as the client accepts.
    let script = html
        .split("src=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("index.html names its script");
    assert!(script.starts_with("/assets/index-"), "{script}");
    let plain = get(&host, script, &[]).await;
    assert_eq!(plain.status(), 200);
    assert_eq!(
        header(&plain, "content-type"),
        "text/javascript; charset=utf-8"
    );
    assert_eq!(
        header(&plain, "cache-control"),
        "public, max-age=31536000, immutable"
    );
    assert_eq!(header(&plain, "content-encoding"), "");
    let plain_len = plain.bytes().await.unwrap().len();
    for (accept, coding) in [
        ("gzip, deflate, br", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip", "gzip"),
    ] {
        let compressed = get(&host, script, &[("accept-encoding", accept)]).await;
        assert_eq!(header(&compressed, "content-encoding"), coding, "{accept}");
        assert_eq!(header(&compressed, "vary"), "accept-encoding");
        assert!(header(&compressed, "etag").ends_with(&format!("-{coding}\"")));
        let len = compressed.bytes().await.unwrap().len();
        assert!(len * 2 < plain_len, "{coding}: {len} of {plain_len}");
    }
    let head = client().head(host.at(script)).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert!(head.bytes().await.unwrap().is_empty());

    // Missing files are 404, never the app's HTML.
    for missing in ["/assets/index-gone.js", "/robots.txt"] {
        assert_eq!(get(&host, missing, &[]).await.status(), 404, "{missing}");
    }
    // Unknown API paths keep the API's problem+json 404, never the app.
    for path in ["/api/nope", "/api", "/api/conversations-typo/1"] {
        let problem = expect_problem(get(&host, path, &[]).await, 404).await;
        assert_eq!(
            problem["detail"],
            format!("no route matches {path}"),
            "{path}"
        );
        assert_eq!(problem["instance"], path);
    }
    // `/v1/...` belongs to the OpenAI routes: a credential first, then
    // their own 404 in OpenAI's error shape.
    expect_problem(get(&host, "/v1/nope", &[]).await, 401).await;
    let (_, _, account) = register(&host).await;
    let (_, key) = create_api_key(&host, account["accessToken"].as_str().unwrap()).await;
    let openai = get(
        &host,
        "/v1/nope",
        &[("authorization", &format!("Bearer {key}"))],
    )
    .await;
    assert_eq!(openai.status(), 404);
    assert!(header(&openai, "content-type").starts_with("application/json"));
    let error: serde_json::Value = openai.json().await.unwrap();
    assert_eq!(error["error"]["type"], "not_found_error", "{error}");
    // The app's files are read-only.
    let post = client().post(host.at("/")).body("x").send().await.unwrap();
    assert_eq!(post.status(), 405);
    assert_eq!(header(&post, "allow"), "GET, HEAD");
}

/// Register → chat (streamed, stopped, regenerated, branches) → search →
/// rate → API keys; admin pages for the admin only; keyboard-only chat on a
/// phone-sized screen; the mailed confirmation and reset links, logout;
/// explore. Screenshots in `target/web-screenshots`.
#[tokio::test]
async fn the_app_works_in_a_real_browser() {
    let dir = tempfile::tempdir().unwrap();
    // The dev mailbox holds the confirmation and reset links the test follows.
    let host = Host::start(
        options()
            .env("LAMINA_VAR_DEV_MAILBOX", "true")
            .data_dir(dir.path()),
    );
    let screenshots = target_dir().join("web-screenshots");
    let url = host.at("");
    let app = workspace().join("components/web/app");
    // The node test runner in its own thread, so the host keeps serving. It
    // inherits LAMINA_TEST_CHROMIUM (the browser `cargo xtask test` installed).
    let output = tokio::task::spawn_blocking(move || {
        Command::new("node")
            .args([
                "--test",
                "--test-concurrency=1",
                "--test-timeout=240000",
                "e2e/",
            ])
            .current_dir(app)
            .env("LAMINA_URL", url.trim_end_matches('/'))
            .env("LAMINA_SCREENSHOTS", &screenshots)
            .env("LAMINA_ADMIN_LOGIN", ADMIN_LOGIN)
            .env("LAMINA_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .output()
            .expect("node runs the browser tests")
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "browser tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    // Every journey ran (a runner that found no test would also succeed).
    let count = |label: &str| {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(label))
            .and_then(|n| n.trim().parse::<u32>().ok())
    };
    assert_eq!(count("ℹ pass").or(count("# pass")), Some(6), "{stdout}");
}
