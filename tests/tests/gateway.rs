//! Gateway authentication and authorization end to end: bearer JWTs
//! verified by the host, route policies from spin.toml, identity headers
//! forwarded to the component and never taken from the client.

use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use lamina_tests::{Host, HostOptions, client, expect_problem, header};
use serde_json::{Value, json};

const SECRET: &str = "a-test-secret-that-is-at-least-32-bytes-long";

const MANIFEST: &str = r#"
spin_manifest_version = 2
[application]
name = "gateway"

[[trigger.http]]
route = "/open/..."
component = "fixture"

[[trigger.http]]
route = "/maybe/..."
component = "fixture"
auth = "optional"

[[trigger.http]]
route = "/private/..."
component = "fixture"
auth = "required"

[[trigger.http]]
route = "/admin/..."
component = "fixture"
auth = "required"
roles = ["Admin"]

[component.fixture]
source = "{fixture}"
"#;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// Claims valid for an hour, for user `u1` with `roles`.
fn claims(roles: &[&str]) -> Value {
    json!({
        "sub": "u1",
        "name": "ada",
        "roles": roles,
        "jti": "token-1",
        "iss": "lamina",
        "aud": "lamina",
        "iat": now(),
        "exp": now() + 3600,
    })
}

fn hs256(claims: &Value, secret: &str) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap()
}

fn host() -> Host {
    Host::start(HostOptions::manifest(MANIFEST).env("LAMINA_JWT_SECRET", SECRET))
}

async fn get(host: &Host, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut request = client().get(host.at(path));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap()
}

async fn echoed_headers(response: reqwest::Response) -> Value {
    assert_eq!(response.status(), 200);
    response.json::<Value>().await.unwrap()["headers"].clone()
}

/// Asserts a 401 with a Bearer challenge.
async fn expect_unauthorized(response: reqwest::Response) -> Value {
    let challenge = response.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(
        challenge.starts_with("Bearer realm=\"lamina\""),
        "{challenge}"
    );
    expect_problem(response, 401).await
}

#[tokio::test]
async fn a_valid_token_reaches_the_component_as_verified_identity_headers() {
    let host = host();
    let token = hs256(&claims(&["User"]), SECRET);
    let response = client()
        .get(host.at("/private/echo"))
        .bearer_auth(&token)
        .header("x-lamina-user-id", "someone-else")
        .header("x-user-roles", "Admin")
        .send()
        .await
        .unwrap();
    let headers = echoed_headers(response).await;
    assert_eq!(headers["x-lamina-user-id"], "u1");
    assert_eq!(headers["x-lamina-username"], "ada");
    assert_eq!(headers["x-lamina-roles"], "User");
    assert_eq!(headers["x-lamina-token-id"], "token-1");
    assert_eq!(headers["x-lamina-auth-method"], "jwt");
    assert!(
        headers.get("x-user-roles").is_none(),
        "spoofed header passed: {headers}"
    );
}

#[tokio::test]
async fn spoofed_identity_headers_are_dropped_on_open_routes() {
    let host = host();
    let response = client()
        .get(host.at("/open/echo"))
        .header("x-lamina-user-id", "admin")
        .header("x-lamina-roles", "Admin")
        .header("x-user-id", "admin")
        .send()
        .await
        .unwrap();
    let headers = echoed_headers(response).await;
    for name in ["x-lamina-user-id", "x-lamina-roles", "x-user-id"] {
        assert!(headers.get(name).is_none(), "{name} passed: {headers}");
    }
}

#[tokio::test]
async fn required_routes_refuse_missing_and_bad_tokens() {
    let host = host();
    let missing = expect_unauthorized(get(&host, "/private/echo", None).await).await;
    assert!(
        missing["detail"]
            .as_str()
            .unwrap()
            .contains("needs a bearer token")
    );

    let mut expired = claims(&[]);
    expired["exp"] = json!(now() - 3600);
    let mut not_yet = claims(&[]);
    not_yet["nbf"] = json!(now() + 3600);
    let mut wrong_issuer = claims(&[]);
    wrong_issuer["iss"] = json!("someone-else");
    let mut wrong_audience = claims(&[]);
    wrong_audience["aud"] = json!("another-service");
    let mut no_subject = claims(&[]);
    no_subject.as_object_mut().unwrap().remove("sub");

    let valid = hs256(&claims(&[]), SECRET);
    let (head, rest) = valid.split_once('.').unwrap();
    let (_, signature) = rest.split_once('.').unwrap();
    let forged_payload = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(&["Admin"]),
        &EncodingKey::from_secret(b"x"),
    )
    .unwrap();
    let forged_body = forged_payload.split('.').nth(1).unwrap();
    let tampered = format!("{head}.{forged_body}.{signature}");
    // `alg: none`, unsigned.
    let none_header = "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0";
    let unsigned = format!("{none_header}.{forged_body}.");

    let cases = [
        ("expired", hs256(&expired, SECRET), "expired"),
        ("not yet valid", hs256(&not_yet, SECRET), "not valid yet"),
        (
            "wrong issuer",
            hs256(&wrong_issuer, SECRET),
            "another issuer or audience",
        ),
        (
            "wrong audience",
            hs256(&wrong_audience, SECRET),
            "another issuer or audience",
        ),
        (
            "no subject",
            hs256(&no_subject, SECRET),
            "lacks required claims",
        ),
        (
            "wrong key",
            hs256(&claims(&[]), "another-secret-of-at-least-32-bytes!!"),
            "signature",
        ),
        ("tampered", tampered, "signature"),
        ("alg none", unsigned, ""),
        ("garbage", "not.a.jwt".to_owned(), ""),
    ];
    for (case, token, detail) in cases {
        let problem = expect_unauthorized(get(&host, "/private/echo", Some(&token)).await).await;
        assert!(
            problem["detail"].as_str().unwrap().contains(detail),
            "{case}: {problem}"
        );
    }
    let basic = client()
        .get(host.at("/private/echo"))
        .basic_auth("u", Some("p"))
        .send()
        .await
        .unwrap();
    expect_unauthorized(basic).await;
}

#[tokio::test]
async fn optional_routes_accept_anonymous_callers_but_not_bad_tokens() {
    let host = host();
    let anonymous = echoed_headers(get(&host, "/maybe/echo", None).await).await;
    assert!(anonymous.get("x-lamina-user-id").is_none());
    let token = hs256(&claims(&[]), SECRET);
    let known = echoed_headers(get(&host, "/maybe/echo", Some(&token)).await).await;
    assert_eq!(known["x-lamina-user-id"], "u1");
    let mut expired = claims(&[]);
    expired["exp"] = json!(now() - 3600);
    expect_unauthorized(get(&host, "/maybe/echo", Some(&hs256(&expired, SECRET))).await).await;
}

#[tokio::test]
async fn roles_are_enforced() {
    let host = host();
    let user = hs256(&claims(&["User"]), SECRET);
    let problem = expect_problem(get(&host, "/admin/echo", Some(&user)).await, 403).await;
    assert!(
        problem["detail"].as_str().unwrap().contains("Admin"),
        "{problem}"
    );
    let admin = hs256(&claims(&["User", "Admin"]), SECRET);
    let headers = echoed_headers(get(&host, "/admin/echo", Some(&admin)).await).await;
    assert_eq!(headers["x-lamina-roles"], "User,Admin");
}

/// EdDSA keys from `openssl genpkey`; an HS256 token "signed" with the
/// public key (algorithm confusion) is refused.
#[tokio::test]
async fn eddsa_keys_work_and_algorithm_confusion_fails() {
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("jwt.pem");
    let public = dir.path().join("jwt.pub.pem");
    let ok = std::process::Command::new("openssl")
        .args(["genpkey", "-algorithm", "ed25519", "-out"])
        .arg(&private)
        .status()
        .unwrap()
        .success()
        && std::process::Command::new("openssl")
            .args(["pkey", "-pubout", "-in"])
            .arg(&private)
            .arg("-out")
            .arg(&public)
            .status()
            .unwrap()
            .success();
    assert!(ok, "openssl could not make a key pair");
    let host = Host::start(HostOptions::manifest(MANIFEST).runtime_config(&format!(
        "[auth]\nalgorithm = \"EdDSA\"\npublic_key = {:?}\n",
        public.display().to_string()
    )));
    let key = EncodingKey::from_ed_pem(&std::fs::read(&private).unwrap()).unwrap();
    let token = encode(&Header::new(Algorithm::EdDSA), &claims(&[]), &key).unwrap();
    let headers = echoed_headers(get(&host, "/private/echo", Some(&token)).await).await;
    assert_eq!(headers["x-lamina-user-id"], "u1");

    let public_pem = std::fs::read(&public).unwrap();
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &claims(&[]),
        &EncodingKey::from_secret(&public_pem),
    )
    .unwrap();
    expect_unauthorized(get(&host, "/private/echo", Some(&confused)).await).await;
}

#[tokio::test]
async fn without_a_configured_secret_a_dev_secret_is_generated_and_kept() {
    let data = tempfile::tempdir().unwrap();
    let options = || HostOptions::manifest(MANIFEST).data_dir(data.path());
    let first = Host::start(options());
    let secret_file = data.path().join("auth/jwt-secret");
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert_eq!(secret.len(), 64);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    let token = hs256(&claims(&[]), &secret);
    assert_eq!(
        get(&first, "/private/echo", Some(&token)).await.status(),
        200
    );
    drop(first);
    // The same secret after a restart: tokens stay valid.
    let second = Host::start(options());
    assert_eq!(
        get(&second, "/private/echo", Some(&token)).await.status(),
        200
    );
}

const LIMITED: &str = r#"
spin_manifest_version = 2
[application]
name = "limited"

[[trigger.http]]
route = "/tight/..."
component = "fixture"
auth = "optional"
rate_limit = "tight"

[[trigger.http]]
route = "/other/..."
component = "fixture"

[component.fixture]
source = "{fixture}"
"#;

/// 3 requests a minute (and 100 a minute as everyone's default).
const CLASSES: &str = "[rate_limit.classes.tight]\nrequests = 3\nper = \"1m\"\n\
                       [rate_limit.classes.default]\nrequests = 100\nper = \"1m\"\n";

fn limited_host(extra: &str) -> Host {
    Host::start(
        HostOptions::manifest(LIMITED)
            .env("LAMINA_JWT_SECRET", SECRET)
            .runtime_config(&format!("{extra}{CLASSES}")),
    )
}

#[tokio::test]
async fn rate_limits_allow_the_burst_then_answer_429_with_headers() {
    let host = limited_host("");
    for remaining in ["2", "1", "0"] {
        let response = get(&host, "/tight/echo", None).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "ratelimit-limit"), "3");
        assert_eq!(header(&response, "ratelimit-remaining"), remaining);
        assert!(header(&response, "ratelimit-reset").parse::<u64>().unwrap() <= 60);
    }
    let refused = get(&host, "/tight/echo", None).await;
    let retry_after: u64 = header(&refused, "retry-after").parse().unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(header(&refused, "ratelimit-remaining"), "0");
    expect_problem(refused, 429).await;

    // Authenticated callers are limited per user, not per address.
    for user in ["u1", "u2"] {
        let mut claims = claims(&[]);
        claims["sub"] = json!(user);
        let token = hs256(&claims, SECRET);
        for _ in 0..3 {
            assert_eq!(
                get(&host, "/tight/echo", Some(&token)).await.status(),
                200,
                "{user}"
            );
        }
        assert_eq!(
            get(&host, "/tight/echo", Some(&token)).await.status(),
            429,
            "{user}"
        );
    }

    // Routes without a class get `default`.
    let other = get(&host, "/other/echo", None).await;
    assert_eq!(header(&other, "ratelimit-limit"), "100");
}

/// Behind a trusted proxy the client is the address it forwards, and an
/// IPv6 client is limited by its /64: 100 addresses of one /64 share one
/// budget. The same header from a peer that is not a trusted proxy changes
/// nothing.
#[tokio::test]
async fn forwarded_clients_are_limited_by_address_and_ipv6_by_their_64() {
    async fn status(host: &Host, forwarded: &str) -> u16 {
        client()
            .get(host.at("/tight/echo"))
            .header("x-forwarded-for", forwarded)
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }
    let behind_proxy = limited_host("[http]\ntrusted_proxies = [\"127.0.0.0/8\"]\n");
    let mut allowed = 0;
    for n in 0..100 {
        if status(&behind_proxy, &format!("2001:db8:1:2:{n:x}::1")).await == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "one /64, one budget");
    assert_eq!(
        status(&behind_proxy, "2001:db8:1:3::1").await,
        200,
        "another /64"
    );
    assert_eq!(
        status(&behind_proxy, "198.51.100.7").await,
        200,
        "another client"
    );
    // A client's own forged entry left of the proxy's is not believed.
    assert_eq!(
        status(&behind_proxy, "198.51.100.99, 2001:db8:1:2::5").await,
        429
    );

    let direct = limited_host("");
    let mut allowed = 0;
    for n in 0..5 {
        if status(&direct, &format!("198.51.100.{n}")).await == 200 {
            allowed += 1;
        }
    }
    assert_eq!(allowed, 3, "an untrusted peer's header is ignored");
}

/// `GET` and `POST` of one path on routes of their own (different
/// rate-limit classes), a `:name` segment passed on, 405 with `Allow` for
/// a method no route takes, and a route's own body limit.
const ROUTED: &str = r#"
spin_manifest_version = 2
[application]
name = "routes"

[[trigger.http]]
route = "/items/:id/..."
methods = ["GET"]
component = "fixture"
rate_limit = "tight"

[[trigger.http]]
route = "/items/:id/..."
methods = ["POST"]
component = "fixture"
rate_limit = "default"

[[trigger.http]]
route = "/upload/..."
component = "fixture"
max_body_size = "1KiB"

[component.fixture]
source = "{fixture}"
"#;

#[tokio::test]
async fn methods_parameters_and_body_limits_per_route() {
    let host = Host::start(HostOptions::manifest(ROUTED).runtime_config(CLASSES));
    let read = get(&host, "/items/42/echo", None).await;
    assert_eq!(header(&read, "ratelimit-limit"), "3");
    let echoed = echoed_headers(read).await;
    assert_eq!(echoed["spin-path-match-id"], "42");
    let post = |body: Vec<u8>, path: &'static str| {
        let url = host.at(path);
        async move { client().post(url).body(body).send().await.unwrap() }
    };
    let written = post(b"hi".to_vec(), "/items/42/echo").await;
    assert_eq!(header(&written, "ratelimit-limit"), "100");
    assert_eq!(written.bytes().await.unwrap().as_ref(), b"hi");
    // The GET class runs out; POST, on its own class, does not.
    for _ in 0..2 {
        assert_eq!(get(&host, "/items/42/echo", None).await.status(), 200);
    }
    expect_problem(get(&host, "/items/42/echo", None).await, 429).await;
    assert_eq!(
        post(b"again".to_vec(), "/items/42/echo").await.status(),
        200
    );
    let deleted = client()
        .delete(host.at("/items/42/echo"))
        .send()
        .await
        .unwrap();
    assert_eq!(header(&deleted, "allow"), "GET, POST");
    expect_problem(deleted, 405).await;
    // An empty segment is no `:id`, nor a way around a route: 400.
    expect_problem(get(&host, "/items//echo", None).await, 400).await;
    // HTTP clients resolve `..` themselves; a raw request does not.
    let raw = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let address = host.url.trim_start_matches("http://");
        let mut socket = tokio::net::TcpStream::connect(address).await.unwrap();
        socket
            .write_all(
                b"GET /other/../items/1/echo HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        let mut answer = String::new();
        socket.read_to_string(&mut answer).await.unwrap();
        answer
    };
    assert!(raw.starts_with("HTTP/1.1 400"), "{raw}");
    assert_eq!(post(vec![b'x'; 512], "/upload/echo").await.status(), 200);
    expect_problem(post(vec![b'x'; 2048], "/upload/echo").await, 413).await;
}

#[tokio::test]
async fn a_redis_limit_holds_across_two_hosts() {
    let prefix = lamina_tests::RedisPrefix::new();
    let config = format!(
        "[rate_limit]\ntype = \"redis\"\nurl = \"{}\"\nkey_prefix = \"{}\"\n",
        lamina_tests::REDIS_URL,
        prefix.prefix
    );
    let hosts = [limited_host(&config), limited_host(&config)];
    let mut allowed = 0;
    for n in 0..8 {
        let response = get(&hosts[n % 2], "/tight/echo", None).await;
        match response.status().as_u16() {
            200 => allowed += 1,
            429 => {}
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(allowed, 3, "the limit is shared, not per host");
}

#[tokio::test]
async fn with_redis_down_limits_fall_back_to_in_process() {
    // Nothing listens on port 1.
    let host = limited_host("[rate_limit]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1/0\"\n");
    for _ in 0..3 {
        assert_eq!(get(&host, "/tight/echo", None).await.status(), 200);
    }
    assert_eq!(get(&host, "/tight/echo", None).await.status(), 429);
    assert!(
        host.log_contains("falls back to in-process limits"),
        "{}",
        host.stderr()
    );
}

#[tokio::test]
async fn an_unknown_rate_limit_class_stops_start_up() {
    let error = Host::try_start(HostOptions::manifest(LIMITED).env("LAMINA_JWT_SECRET", SECRET))
        .err()
        .expect("start-up must fail");
    assert!(
        error.contains("trigger.http[0].rate_limit: no class `tight`"),
        "{error}"
    );
}

#[tokio::test]
async fn request_ids_are_accepted_when_sane_generated_otherwise_and_echoed() {
    let host = host();
    let response = client()
        .get(host.at("/open/echo"))
        .header("x-request-id", "client-id-42")
        .send()
        .await
        .unwrap();
    assert_eq!(header(&response, "x-request-id"), "client-id-42");
    let headers = echoed_headers(response).await;
    assert_eq!(
        headers["x-request-id"], "client-id-42",
        "the component sees it"
    );

    for bad in ["has spaces", &"x".repeat(200)] {
        let response = client()
            .get(host.at("/open/echo"))
            .header("x-request-id", bad)
            .send()
            .await
            .unwrap();
        let id = header(&response, "x-request-id");
        assert_ne!(id, bad);
        assert_eq!(id.len(), 36, "a UUID: {id}");
    }
    let missing = get(&host, "/nowhere", None).await;
    assert_eq!(
        header(&missing, "x-request-id").len(),
        36,
        "404s carry one too"
    );
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let host = Host::start(
        HostOptions::manifest(MANIFEST).runtime_config("[http]\nmax_body_size = \"1KiB\"\n"),
    );
    let small = client()
        .post(host.at("/open/echo"))
        .body(vec![b'a'; 1000])
        .send()
        .await
        .unwrap();
    assert_eq!(small.status(), 200);
    let large = client()
        .post(host.at("/open/echo"))
        .body(vec![b'a'; 2048])
        .send()
        .await
        .unwrap();
    expect_problem(large, 413).await;
}

#[tokio::test]
async fn health_ready_and_metrics() {
    let host = host();
    let health = get(&host, "/health", None).await;
    assert_eq!(health.status(), 200);
    let ready: Value = get(&host, "/ready", None).await.json().await.unwrap();
    assert_eq!(
        ready,
        json!({"status": "ready"}),
        "the public sees no backend"
    );
    let report = |host: &Host| {
        let url = format!("{}/ready", host.admin_url);
        async move { client().get(url).send().await.unwrap() }
    };
    let detailed: Value = report(&host).await.json().await.unwrap();
    assert_eq!(detailed["checks"]["sql:default"], "ok", "{detailed}");
    assert_eq!(detailed["checks"]["sql:host"], "ok", "{detailed}");

    get(&host, "/open/echo", None).await;
    get(&host, "/private/echo", None).await;
    let token = hs256(&claims(&[]), SECRET);
    for _ in 0..2 {
        assert_eq!(
            get(&host, "/private/echo", Some(&token)).await.status(),
            200
        );
    }
    let metrics = client()
        .get(format!("{}/metrics", host.admin_url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), 200);
    let text = metrics.text().await.unwrap();
    assert!(
        text.contains(r#"lamina_http_requests_total{route="/open/...",status="200"} 1"#),
        "{text}"
    );
    assert!(
        text.contains(r#"lamina_auth_failures_total{reason="missing"} 1"#),
        "{text}"
    );
    assert!(
        text.contains("lamina_http_request_duration_seconds_bucket"),
        "{text}"
    );
    for expected in [
        r#"lamina_cache_requests_total{cache="tokens",result="miss"} 1"#,
        r#"lamina_cache_requests_total{cache="tokens",result="hit"} 1"#,
        // Every instance was dropped after its request.
        r#"lamina_instances{component="fixture"} 0"#,
    ] {
        assert!(text.contains(expected), "{expected} in {text}");
    }

    // A backend that does not answer makes the host not ready.
    let degraded = Host::start(HostOptions::manifest(MANIFEST).runtime_config(
        "[key_value_stores.default]\ntype = \"redis\"\nurl = \"redis://127.0.0.1:1/0\"\n",
    ));
    let problem = expect_problem(get(&degraded, "/ready", None).await, 503).await;
    assert_eq!(problem["detail"], "not ready");
    let detailed = report(&degraded).await;
    assert_eq!(detailed.status(), 503);
    let detailed: Value = detailed.json().await.unwrap();
    assert!(
        detailed["checks"]["kv:default"]["error"].is_string(),
        "{detailed}"
    );
}

#[tokio::test]
async fn cors_allows_only_the_configured_origins() {
    let host = Host::start(HostOptions::manifest(MANIFEST).runtime_config(
        "[cors]\nallowed_origins = [\"https://app.example\"]\nallow_credentials = true\n",
    ));
    let preflight = client()
        .request(reqwest::Method::OPTIONS, host.at("/private/echo"))
        .header("origin", "https://app.example")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization,content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success(), "{}", preflight.status());
    assert_eq!(
        header(&preflight, "access-control-allow-origin"),
        "https://app.example"
    );
    assert_eq!(
        header(&preflight, "access-control-allow-credentials"),
        "true"
    );
    assert!(header(&preflight, "access-control-allow-methods").contains("POST"));
    assert!(header(&preflight, "access-control-allow-headers").contains("authorization"));
    assert_eq!(header(&preflight, "access-control-max-age"), "600");

    let simple = client()
        .get(host.at("/open/echo"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap();
    assert_eq!(
        header(&simple, "access-control-allow-origin"),
        "https://app.example"
    );
    assert!(header(&simple, "access-control-expose-headers").contains("x-request-id"));

    let foreign = client()
        .get(host.at("/open/echo"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert!(
        foreign
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );

    // Without [cors], no CORS headers at all.
    let plain = host_without_cors().await;
    assert!(plain.headers().get("access-control-allow-origin").is_none());
}

async fn host_without_cors() -> reqwest::Response {
    let host = host();
    client()
        .get(host.at("/open/echo"))
        .header("origin", "https://app.example")
        .send()
        .await
        .unwrap()
}

#[test]
fn wildcard_cors_origins_stop_start_up() {
    let error = Host::try_start(
        HostOptions::manifest(MANIFEST).runtime_config("[cors]\nallowed_origins = [\"*\"]\n"),
    )
    .err()
    .expect("start-up must fail");
    assert!(error.contains("without wildcards"), "{error}");
}

#[tokio::test]
async fn a_caller_gets_at_most_n_concurrent_streams() {
    let manifest = r#"
spin_manifest_version = 2
[application]
name = "streams"
[[trigger.http]]
route = "/s/..."
component = "fixture"
rate_limit = "streams"
[component.fixture]
source = "{fixture}"
"#;
    let host = Host::start(HostOptions::manifest(manifest).runtime_config(
        "[rate_limit.classes.streams]\nrequests = 1000\nper = \"1m\"\nconcurrent = 1\n",
    ));
    // Headers arrive at once; the body streams for about a second.
    let first = get(&host, "/s/stream?n=4&delay_ms=300", None).await;
    assert_eq!(first.status(), 200);
    let second = get(&host, "/s/stream?n=1&delay_ms=0", None).await;
    let problem = expect_problem(second, 429).await;
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("at most 1 concurrent"),
        "{problem}"
    );
    // Once the first stream has ended, the slot is free again.
    first.text().await.unwrap();
    let third = get(&host, "/s/stream?n=1&delay_ms=0", None).await;
    assert_eq!(third.status(), 200);
}
