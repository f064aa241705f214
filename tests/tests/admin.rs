//! Account administration (`/api/admin/users`, `/api/admin/roles`, in
//! `components/auth`) end to end: the application's own spin.toml, real
//! accounts, and for "on every host at once" two hosts on one PostgreSQL
//! with their revocations on Redis.

use lamina_tests::{
    ADMIN_PASSWORD, Host, HostOptions, PgSchema, REDIS_URL, RedisPrefix, USER_PASSWORD,
    admin_token, audited, call, create_api_key, eventually, expect, poll_as, register,
};
use serde_json::json;

const SECRET: &str = "admin-tests-secret-32-bytes-or-more";

fn options() -> HostOptions {
    HostOptions::app_on_test_models(SECRET).with_admin()
}

/// A fresh user: (id, username, access token, refresh token).
async fn user(host: &Host) -> (String, String, String, String) {
    let (username, _, body) = register(host).await;
    (
        body["user"]["id"].as_str().unwrap().to_owned(),
        username,
        body["accessToken"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
    )
}

async fn admin_id(host: &Host, admin: &str) -> String {
    expect(
        call(host, Some(admin), "GET", "/api/auth/me", None).await,
        200,
    )["id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn refresh(host: &Host, refresh: &str) -> u16 {
    call(
        host,
        None,
        "POST",
        "/api/auth/refresh",
        Some(json!({"refreshToken": refresh})),
    )
    .await
    .0
}

#[tokio::test]
async fn every_admin_route_needs_an_administrator_with_a_session() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let (id, _, access, _) = user(&host).await;
    let admin = admin_token(&host).await;
    let admin_key = create_api_key(&host, &admin).await.1;
    let routes = [
        ("GET", "/api/admin/users".to_owned()),
        ("GET", format!("/api/admin/users/{id}")),
        ("DELETE", format!("/api/admin/users/{id}")),
        ("POST", format!("/api/admin/users/{id}/roles/Admin")),
        ("DELETE", format!("/api/admin/users/{id}/roles/Admin")),
        ("POST", format!("/api/admin/users/{id}/lock")),
        ("POST", format!("/api/admin/users/{id}/unlock")),
        ("POST", format!("/api/admin/users/{id}/deactivate")),
        ("POST", format!("/api/admin/users/{id}/activate")),
        ("POST", format!("/api/admin/users/{id}/restore")),
        ("POST", format!("/api/admin/users/{id}/sessions/revoke")),
        ("GET", "/api/admin/roles".to_owned()),
        ("POST", "/api/admin/roles".to_owned()),
        ("DELETE", "/api/admin/roles/Auditor".to_owned()),
        ("GET", "/api/admin/audit".to_owned()),
        ("GET", "/api/admin/usage".to_owned()),
        ("GET", format!("/api/admin/users/{id}/api-keys")),
        ("GET", format!("/api/admin/users/{id}/usage")),
        ("GET", "/api/admin/roles/User/models".to_owned()),
        ("PUT", "/api/admin/roles/User/models".to_owned()),
        ("DELETE", "/api/admin/roles/User/models".to_owned()),
    ];
    let mut routes = routes.to_vec();
    for scope in [
        format!("/api/admin/users/{id}"),
        format!("/api/admin/users/{id}/api-keys/k1"),
    ] {
        for what in ["budget", "models"] {
            for method in ["GET", "PUT", "DELETE"] {
                routes.push((method, format!("{scope}/{what}")));
            }
        }
    }
    for (method, path) in &routes {
        let body = Some(json!({"minutes": 5, "name": "Auditor"}));
        for (credential, status) in [
            (None, 401),
            (Some(access.as_str()), 403),
            (Some(admin_key.as_str()), 403),
        ] {
            let (got, problem) = call(&host, credential, method, path, body.clone()).await;
            assert_eq!(got, status, "{method} {path}: {problem}");
        }
    }
    // Nothing happened to the user.
    let seen = expect(
        call(
            &host,
            Some(&admin),
            "GET",
            &format!("/api/admin/users/{id}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(seen["status"], "active");
    assert_eq!(seen["roles"], json!(["User"]));
}

#[tokio::test]
async fn users_are_listed_searched_and_given_roles() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let admin = admin_token(&host).await;
    let a = Some(admin.as_str());
    let (id, username, access, _) = user(&host).await;
    let (other, _, _, _) = user(&host).await;

    let found = expect(
        call(
            &host,
            a,
            "GET",
            &format!("/api/admin/users?q={}", username.to_uppercase()),
            None,
        )
        .await,
        200,
    );
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["items"][0]["id"], id.as_str());
    // LIKE's wildcards are literal.
    let none = expect(
        call(&host, a, "GET", "/api/admin/users?q=%25", None).await,
        200,
    );
    assert_eq!(none["total"], 0, "{none}");
    let admins = expect(
        call(&host, a, "GET", "/api/admin/users?role=admin", None).await,
        200,
    );
    assert_eq!(admins["total"], 1);
    let page = expect(
        call(
            &host,
            a,
            "GET",
            "/api/admin/users?pageSize=2&status=active",
            None,
        )
        .await,
        200,
    );
    assert_eq!(page["total"], 3);
    assert_eq!(page["items"].as_array().unwrap().len(), 2);
    for bad in [
        "status=gone",
        "role=nobody",
        "pageSize=101",
        &format!("q={}", "x".repeat(101)),
    ] {
        let (status, _) = call(&host, a, "GET", &format!("/api/admin/users?{bad}"), None).await;
        assert_eq!(status, 400, "{bad}");
    }
    expect(
        call(&host, a, "GET", "/api/admin/users/nobody", None).await,
        404,
    );

    // Roles: validated, unique any case, given and taken.
    for bad in [
        json!({"name": "ab"}),
        json!({"name": "has space"}),
        json!({"name": "Ok-name", "description": "d".repeat(201)}),
    ] {
        expect(
            call(&host, a, "POST", "/api/admin/roles", Some(bad)).await,
            400,
        );
    }
    let role = expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/roles",
            Some(json!({"name": "Auditor", "description": "Reads the logs"})),
        )
        .await,
        201,
    );
    assert_eq!(role["users"], 0);
    expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/roles",
            Some(json!({"name": "auditor"})),
        )
        .await,
        409,
    );
    let given = expect(
        call(
            &host,
            a,
            "POST",
            &format!("/api/admin/users/{id}/roles/auditor"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(given["roles"], json!(["User", "Auditor"]));
    // The user's next token carries it.
    let me = expect(
        call(&host, Some(&access), "GET", "/api/auth/me", None).await,
        200,
    );
    assert_eq!(me["roles"], json!(["User", "Auditor"]));
    expect(
        call(&host, a, "DELETE", "/api/admin/roles/Auditor", None).await,
        409,
    );
    expect(
        call(&host, a, "DELETE", "/api/admin/roles/Admin", None).await,
        409,
    );
    expect(
        call(
            &host,
            a,
            "DELETE",
            &format!("/api/admin/users/{id}/roles/User"),
            None,
        )
        .await,
        409,
    );
    expect(
        call(
            &host,
            a,
            "POST",
            &format!("/api/admin/users/{id}/roles/Nobody"),
            None,
        )
        .await,
        404,
    );
    let taken = expect(
        call(
            &host,
            a,
            "DELETE",
            &format!("/api/admin/users/{id}/roles/Auditor"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(taken["roles"], json!(["User"]));
    expect(
        call(
            &host,
            a,
            "DELETE",
            &format!("/api/admin/users/{id}/roles/Auditor"),
            None,
        )
        .await,
        404,
    );
    expect(
        call(&host, a, "DELETE", "/api/admin/roles/Auditor", None).await,
        204,
    );
    let roles = expect(call(&host, a, "GET", "/api/admin/roles", None).await, 200);
    let names: Vec<&str> = roles["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Admin", "User"]);

    // A second administrator, then the Admin role taken back: their
    // tokens carrying it stop working.
    let promoted = expect(
        call(
            &host,
            a,
            "POST",
            &format!("/api/admin/users/{other}/roles/Admin"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(promoted["roles"], json!(["User", "Admin"]));
    expect(
        call(
            &host,
            a,
            "DELETE",
            &format!("/api/admin/users/{other}/roles/Admin"),
            None,
        )
        .await,
        200,
    );

    // Every action is audited.
    audited(
        &host,
        &[
            "admin.role.created",
            "admin.user.role_added",
            "admin.user.role_removed",
            "admin.role.deleted",
        ],
    )
    .await;
}

#[tokio::test]
async fn no_administrator_can_cut_themselves_off_or_leave_none() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let admin = admin_token(&host).await;
    let a = Some(admin.as_str());
    let me = admin_id(&host, &admin).await;
    for (method, path, body) in [
        ("DELETE", format!("/api/admin/users/{me}/roles/Admin"), None),
        (
            "POST",
            format!("/api/admin/users/{me}/lock"),
            Some(json!({"minutes": 5})),
        ),
        ("POST", format!("/api/admin/users/{me}/deactivate"), None),
        ("DELETE", format!("/api/admin/users/{me}"), None),
        ("DELETE", format!("/api/admin/users/{me}?hard=true"), None),
    ] {
        let (status, problem) = call(&host, a, method, &path, body).await;
        assert_eq!(status, 409, "{method} {path}: {problem}");
    }
    // The only administrator cannot delete their own account either.
    let (status, _) = call(
        &host,
        a,
        "DELETE",
        "/api/auth/me",
        Some(json!({"currentPassword": ADMIN_PASSWORD})),
    )
    .await;
    assert_eq!(status, 409);
    expect(call(&host, a, "GET", "/api/auth/me", None).await, 200);
}

/// Lock, deactivate and delete reach a second host at once: the user's
/// access token, refresh token and API key all fail there; lifting them
/// lets the user back in.
#[tokio::test]
async fn cutting_an_account_off_reaches_every_host() {
    let (schema, prefix) = (PgSchema::new(), RedisPrefix::new());
    let shared = format!(
        "[auth.revocations]\ntype = \"redis\"\nurl = \"{REDIS_URL}\"\nkey_prefix = \"{}\"\n",
        prefix.prefix
    );
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = || {
        options()
            .databases(&schema.databases())
            .runtime_config(&shared)
    };
    let first = Host::start(config().data_dir(dir_a.path()));
    let second = Host::start(config().data_dir(dir_b.path()));
    let admin = admin_token(&first).await;
    let a = Some(admin.as_str());
    let (id, username, access, refresh_token) = user(&second).await;
    let key = create_api_key(&second, &access).await.1;
    let works = |credential: String| {
        let second = &second;
        async move {
            call(second, Some(&credential), "GET", "/api/tags", None)
                .await
                .0
        }
    };
    assert_eq!(works(access.clone()).await, 200);
    assert_eq!(works(key.clone()).await, 200);

    // Validation first.
    for minutes in [0, 43_201] {
        expect(
            call(
                &first,
                a,
                "POST",
                &format!("/api/admin/users/{id}/lock"),
                Some(json!({"minutes": minutes})),
            )
            .await,
            400,
        );
    }
    let locked = expect(
        call(
            &first,
            a,
            "POST",
            &format!("/api/admin/users/{id}/lock"),
            Some(json!({"minutes": 60})),
        )
        .await,
        200,
    );
    assert_eq!(locked["status"], "locked");
    assert!(locked["lockedUntil"].is_string());
    assert_eq!(works(access.clone()).await, 401);
    assert_eq!(works(key.clone()).await, 401);
    assert_eq!(refresh(&second, &refresh_token).await, 401);
    let login = json!({"login": username, "password": USER_PASSWORD});
    // After lifting a cut-off: log in again and make a new key.
    let fresh_key = || {
        let (second, login) = (&second, login.clone());
        async move {
            let session = expect(
                call(second, None, "POST", "/api/auth/login", Some(login)).await,
                200,
            );
            create_api_key(second, session["accessToken"].as_str().unwrap())
                .await
                .1
        }
    };
    let (status, _) = call(
        &second,
        None,
        "POST",
        "/api/auth/login",
        Some(login.clone()),
    )
    .await;
    assert_eq!(status, 401, "a locked account cannot log in");
    let listed = expect(
        call(&first, a, "GET", "/api/admin/users?status=locked", None).await,
        200,
    );
    assert_eq!(listed["items"][0]["id"], id.as_str());

    // Unlocked: the API key works again; sessions were ended for good.
    expect(
        call(
            &first,
            a,
            "POST",
            &format!("/api/admin/users/{id}/unlock"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(works(key.clone()).await, 200);
    let session = expect(
        call(
            &second,
            None,
            "POST",
            "/api/auth/login",
            Some(login.clone()),
        )
        .await,
        200,
    );
    let access = session["accessToken"].as_str().unwrap().to_owned();
    assert_eq!(works(access.clone()).await, 200);

    // Deactivated, then activated: its API keys were revoked for good
    // (a suspension that a restart of the in-process revocation store
    // could forget would not do), its password still works.
    let off = expect(
        call(
            &first,
            a,
            "POST",
            &format!("/api/admin/users/{id}/deactivate"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(off["status"], "deactivated");
    assert_eq!(works(key.clone()).await, 401);
    assert_eq!(works(access.clone()).await, 401);
    expect(
        call(
            &first,
            a,
            "POST",
            &format!("/api/admin/users/{id}/activate"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(works(key.clone()).await, 401, "revoked, not suspended");
    let key = fresh_key().await;
    assert_eq!(works(key.clone()).await, 200);

    // Soft-deleted, then restored: the same.
    let gone = expect(
        call(&first, a, "DELETE", &format!("/api/admin/users/{id}"), None).await,
        200,
    );
    assert_eq!(gone["status"], "deleted");
    assert_eq!(works(key.clone()).await, 401);
    let deleted = expect(
        call(&first, a, "GET", "/api/admin/users?status=deleted", None).await,
        200,
    );
    assert_eq!(deleted["total"], 1);
    expect(
        call(
            &first,
            a,
            "POST",
            &format!("/api/admin/users/{id}/restore"),
            None,
        )
        .await,
        200,
    );
    let key = fresh_key().await;

    // Sessions revoked: tokens fail, the key does not.
    let session = expect(
        call(&second, None, "POST", "/api/auth/login", Some(login)).await,
        200,
    );
    let access = session["accessToken"].as_str().unwrap().to_owned();
    let refresh_token = session["refreshToken"].as_str().unwrap().to_owned();
    expect(
        call(
            &first,
            a,
            "POST",
            &format!("/api/admin/users/{id}/sessions/revoke"),
            None,
        )
        .await,
        204,
    );
    assert_eq!(works(access).await, 401);
    assert_eq!(refresh(&second, &refresh_token).await, 401);
    assert_eq!(works(key).await, 200);
}

/// A hard delete, by an administrator or by the user: the account and its
/// keys go, and the conversation service deletes the user's data.
#[tokio::test]
async fn erased_accounts_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let admin = admin_token(&host).await;
    let a = Some(admin.as_str());
    let db = dir.path().join("conversation.db");
    let conversations_of = |user: &str| {
        let out = std::process::Command::new("sqlite3")
            .arg(&db)
            .arg(format!(
                "SELECT COUNT(*) FROM conv_conversations WHERE user_id = '{user}'"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    for by_admin in [true, false] {
        let (id, username, access, _) = user(&host).await;
        let key = create_api_key(&host, &access).await.1;
        expect(
            call(
                &host,
                Some(&access),
                "POST",
                "/api/conversations",
                Some(json!({"title": "Mine"})),
            )
            .await,
            201,
        );
        assert_eq!(conversations_of(&id), "1");
        if by_admin {
            expect(
                call(
                    &host,
                    a,
                    "DELETE",
                    &format!("/api/admin/users/{id}?hard=true"),
                    None,
                )
                .await,
                204,
            );
        } else {
            let (status, _) = call(
                &host,
                Some(&access),
                "DELETE",
                "/api/auth/me",
                Some(json!({"currentPassword": "wrong"})),
            )
            .await;
            assert_eq!(status, 400, "the password is checked");
            expect(
                call(
                    &host,
                    Some(&access),
                    "DELETE",
                    "/api/auth/me",
                    Some(json!({"currentPassword": USER_PASSWORD})),
                )
                .await,
                204,
            );
        }
        expect(
            call(&host, a, "GET", &format!("/api/admin/users/{id}"), None).await,
            404,
        );
        assert_eq!(
            call(&host, Some(&key), "GET", "/api/tags", None).await.0,
            401
        );
        let login = json!({"login": username, "password": USER_PASSWORD});
        assert_eq!(
            call(&host, None, "POST", "/api/auth/login", Some(login))
                .await
                .0,
            401
        );
        eventually("the user's conversations to go", || async {
            conversations_of(&id) == "0"
        })
        .await;
    }
    audited(&host, &["admin.user.erased", "account.deleted"]).await;
}

#[tokio::test]
async fn the_audit_log_is_searched_and_exported_but_never_changed() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let admin = admin_token(&host).await;
    let a = Some(admin.as_str());
    let me = admin_id(&host, &admin).await;
    let (id, username, _, _) = user(&host).await;
    expect(
        call(
            &host,
            a,
            "POST",
            "/api/admin/roles",
            Some(json!({"name": "Auditor"})),
        )
        .await,
        201,
    );
    expect(
        call(
            &host,
            a,
            "POST",
            &format!("/api/admin/users/{id}/roles/Auditor"),
            None,
        )
        .await,
        200,
    );
    let failed = json!({"login": username, "password": "Not-the-password-1"});
    assert_eq!(
        call(&host, None, "POST", "/api/auth/login", Some(failed))
            .await
            .0,
        401
    );

    let roles = poll_as(&host, &admin, "/api/admin/audit?action=admin.*", |log| {
        log["total"] == 2
    })
    .await;
    // Both in one second: found by action, not by position.
    let entry = |action: &str| {
        roles["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == action)
            .unwrap()
            .clone()
    };
    let added = entry("admin.user.role_added");
    assert_eq!(added["actor"], me.as_str());
    assert_eq!(added["target"], id.as_str());
    assert_eq!(added["outcome"], "success");
    assert!(
        added["requestId"].as_str().is_some_and(|r| !r.is_empty()),
        "{added}"
    );
    assert_eq!(added["detail"]["role"], "Auditor");
    assert_eq!(entry("admin.role.created")["target"], "role:Auditor");
    let failures = poll_as(
        &host,
        &admin,
        "/api/admin/audit?outcome=failure&action=login.failed",
        |log| log["total"] == 1,
    )
    .await;
    assert_eq!(failures["items"][0]["actor"], id.as_str());
    let by_target = expect(
        call(
            &host,
            a,
            "GET",
            &format!("/api/admin/audit?target={id}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(by_target["total"], 1);
    let by_actor = expect(
        call(
            &host,
            a,
            "GET",
            &format!("/api/admin/audit?actor={me}&pageSize=1"),
            None,
        )
        .await,
        200,
    );
    assert!(by_actor["total"].as_u64().unwrap() >= 3, "{by_actor}");
    assert_eq!(by_actor["items"].as_array().unwrap().len(), 1);
    let future = expect(
        call(
            &host,
            a,
            "GET",
            "/api/admin/audit?from=2999-01-01T00:00:00Z",
            None,
        )
        .await,
        200,
    );
    assert_eq!(future["total"], 0);
    for bad in [
        "from=yesterday",
        "pageSize=0",
        "format=xml",
        "from=2026-02-01T00:00:00Z&to=2026-01-01T00:00:00Z",
    ] {
        assert_eq!(
            call(&host, a, "GET", &format!("/api/admin/audit?{bad}"), None)
                .await
                .0,
            400,
            "{bad}"
        );
    }
    // CSV: the filtered set.
    let response = lamina_tests::client()
        .get(host.at("/api/admin/audit?action=admin.*&format=csv"))
        .bearer_auth(&admin)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let text = response.text().await.unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "id,at,action,actor,target,outcome,request_id,client,detail"
    );
    assert_eq!(lines.len(), 3, "{text}");
    assert!(text.contains(",admin.user.role_added,"), "{text}");
    // Append-only.
    for method in ["POST", "PUT", "PATCH", "DELETE"] {
        let (status, _) = call(&host, a, method, "/api/admin/audit", Some(json!({}))).await;
        assert_eq!(status, 405, "{method}");
    }
}

#[tokio::test]
async fn usage_is_summed_per_user_key_model_and_day() {
    let dir = tempfile::tempdir().unwrap();
    let host = Host::start(options().data_dir(dir.path()));
    let admin = admin_token(&host).await;
    let (id, _, access, _) = user(&host).await;
    let key = create_api_key(&host, &access).await.1;
    let generate = |credential: String| {
        let host = &host;
        async move {
            let body = json!({"model": "smollm2:135m", "prompt": "Hello", "stream": false,
                              "options": {"num_predict": 3, "temperature": 0}});
            let answer = expect(
                call(host, Some(&credential), "POST", "/api/generate", Some(body)).await,
                200,
            );
            (
                answer["prompt_eval_count"].as_i64().unwrap(),
                answer["eval_count"].as_i64().unwrap(),
            )
        }
    };
    let mut prompt = 0;
    let mut completion = 0;
    for credential in [key.clone(), key.clone(), access.clone()] {
        let (p, c) = generate(credential).await;
        prompt += p;
        completion += c;
    }
    let mine = poll_as(&host, &access, "/api/usage/me", |u| {
        u["totals"]["requests"] == 3
    })
    .await;
    assert_eq!(mine["totals"]["promptTokens"], prompt);
    assert_eq!(mine["totals"]["completionTokens"], completion);
    assert_eq!(mine["items"][0]["model"], "smollm2:135m");
    assert!(mine["items"][0]["day"].as_str().unwrap().len() == 10);
    // What an administrator sees of the account: the same sums.
    let theirs = expect(
        call(
            &host,
            Some(&admin),
            "GET",
            &format!("/api/admin/users/{id}/usage"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(theirs["totals"], mine["totals"]);
    assert_eq!(theirs["items"], mine["items"]);

    let by_user = poll_as(&host, &admin, "/api/admin/usage?groupBy=user", |u| {
        u["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["key"] == id.as_str() && i["requests"] == 3)
    })
    .await;
    let row = by_user["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["key"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(row["totalTokens"], prompt + completion);
    // Only what the API key spent, under its id.
    let by_key = expect(
        call(
            &host,
            Some(&admin),
            "GET",
            &format!("/api/admin/usage?groupBy=key&userId={id}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(by_key["items"].as_array().unwrap().len(), 1, "{by_key}");
    assert_eq!(by_key["items"][0]["requests"], 2);
    let by_model = expect(
        call(
            &host,
            Some(&admin),
            "GET",
            &format!("/api/admin/usage?groupBy=model&userId={id}"),
            None,
        )
        .await,
        200,
    );
    assert_eq!(by_model["items"][0]["key"], "smollm2:135m");
    let by_day = expect(
        call(
            &host,
            Some(&admin),
            "GET",
            &format!("/api/admin/usage?groupBy=day&userId={id}&format=csv"),
            None,
        )
        .await,
        200,
    );
    let csv = by_day.as_str().unwrap();
    assert!(
        csv.starts_with("day,requests,prompt_tokens,completion_tokens,total_tokens\n"),
        "{csv}"
    );
    // Summed over the rows (a run across midnight has two days).
    let sums = csv.lines().skip(1).fold([0i64; 3], |mut sums, line| {
        let fields: Vec<i64> = line
            .split(',')
            .skip(1)
            .map(|f| f.parse().unwrap())
            .collect();
        for (sum, field) in sums.iter_mut().zip(fields) {
            *sum += field;
        }
        sums
    });
    assert_eq!(sums, [3, prompt, completion], "{csv}");
    for bad in ["groupBy=week", "limit=0", "to=soon"] {
        assert_eq!(
            call(
                &host,
                Some(&admin),
                "GET",
                &format!("/api/admin/usage?{bad}"),
                None
            )
            .await
            .0,
            400,
            "{bad}"
        );
    }
    // A user sees their own usage only, and no one else's report.
    assert_eq!(
        call(&host, Some(&key), "GET", "/api/usage/me", None)
            .await
            .0,
        200
    );
    assert_eq!(
        call(&host, Some(&access), "GET", "/api/admin/usage", None)
            .await
            .0,
        403
    );
}
