//! Start-up and shutdown: manifest errors, the compile cache, graceful
//! drain on SIGTERM, WASI 0.3 (spin-sdk) components, the CLI's help.

use std::time::{Duration, Instant};

use lamina_tests::{Host, HostOptions, client, get_text, run_lamina};

const FIXTURE: &str = r#"
spin_manifest_version = 2
[application]
name = "lifecycle"

[[trigger.http]]
route = "/f/..."
component = "fixture"

[component.fixture]
source = "{fixture}"
"#;

fn start_error(manifest: &str) -> String {
    match Host::try_start(HostOptions::manifest(manifest)) {
        Ok(_) => panic!("lamina started with a bad manifest:\n{manifest}"),
        Err(error) => error,
    }
}

#[test]
fn bad_manifests_fail_with_file_key_and_problem() {
    let head = "spin_manifest_version = 2\n[application]\nname = \"bad\"\n";
    let cases = [
        (
            format!(
                "{head}[[trigger.http]]\nroute = \"/\"\ncomponent = \"ghost\"\n[component.a]\nsource = \"{{fixture}}\"\n"
            ),
            "spin.toml: trigger.http[0].component: unknown component `ghost` (defined: a)",
        ),
        (
            format!(
                "{head}[[trigger.http]]\nroute = \"/x\"\ncomponent = \"a\"\n[[trigger.http]]\nroute = \"/x\"\ncomponent = \"a\"\n\
                 [component.a]\nsource = \"{{fixture}}\"\n"
            ),
            "spin.toml: trigger.http[1].route: duplicate route \"/x\"",
        ),
        (
            format!("{head}[component.a]\nsource = \"missing.wasm\"\n"),
            "spin.toml: component.a.source: file not found",
        ),
        (
            format!("{head}[component.a\nsource = 1\n"),
            "spin.toml: line 4",
        ),
        (
            format!("{head}[component.a]\nsource = \"{{fixture}}\"\nmemory_limit = \"lots\"\n"),
            "invalid size \"lots\"",
        ),
    ];
    for (manifest, expected) in cases {
        let error = start_error(&manifest);
        assert!(
            error.contains(expected),
            "expected {expected:?} in:\n{error}"
        );
        assert!(!error.contains("panicked"), "{error}");
    }
}

#[test]
fn second_start_loads_components_from_the_compile_cache() {
    let data = tempfile::tempdir().unwrap();
    let options = || HostOptions {
        data_dir: Some(data.path().to_owned()),
        ..HostOptions::manifest(FIXTURE)
    };
    let first = Host::start(options());
    assert!(first.log_contains("cache=Compiled"), "{}", first.stderr());
    drop(first);
    let second = Host::start(options());
    assert!(second.log_contains("cache=Hit"), "{}", second.stderr());
}

#[tokio::test]
async fn sigterm_drains_in_flight_requests_and_exits_zero() {
    let mut host = Host::start(HostOptions::manifest(FIXTURE));
    let slow = tokio::spawn({
        let url = host.at("/f/sleep?ms=1500");
        async move {
            let response = client().get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let signalled = Instant::now();
    host.terminate();
    let (status, body) = slow.await.unwrap();
    assert_eq!(
        (status, body.as_str()),
        (200, "slept"),
        "in-flight request completed"
    );
    let exit = tokio::task::spawn_blocking(move || {
        let exit = host.wait(Duration::from_secs(20));
        (exit, host)
    })
    .await
    .unwrap();
    assert!(
        exit.0.expect("lamina exited").success(),
        "exit status {:?}",
        exit.0
    );
    assert!(signalled.elapsed() < Duration::from_secs(15));
    assert!(
        client().get(exit.1.at("/f/echo")).send().await.is_err(),
        "no longer accepting"
    );
}

#[tokio::test]
async fn spin_sdk_wasi_p3_components_run_unchanged() {
    let manifest = r#"
spin_manifest_version = 2
[application]
name = "p3"

[[trigger.http]]
route = "/spin/..."
component = "hello"

[[trigger.http]]
route = "/reused/..."
component = "reused"

[component.hello]
source = "{spin_hello}"

[component.reused]
source = "{spin_hello}"
instance_reuse = { max_requests = 64, max_concurrent = 8 }
"#;
    let host = Host::start(HostOptions::manifest(manifest));
    let mut most_served = Vec::new();
    for base in ["/spin", "/reused"] {
        let mut tasks = Vec::new();
        for i in 0..40 {
            let url = host.at(&format!("{base}/item/{i}"));
            tasks.push(tokio::spawn(async move { get_text(&url).await }));
        }
        let mut most = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            let body = task.await.unwrap();
            let (greeting, served) = body.rsplit_once(", served=").expect(&body);
            assert_eq!(
                greeting,
                format!("hello from spin-sdk, path-info=/item/{i}")
            );
            most = most.max(served.parse::<u64>().unwrap());
        }
        most_served.push(most);
    }
    assert_eq!(
        most_served[0], 1,
        "without instance_reuse every request gets a fresh instance"
    );
    assert!(
        most_served[1] > 1,
        "instance_reuse serves several requests per instance"
    );
}

#[test]
fn every_command_has_help() {
    for args in [
        &["--help"][..],
        &["up", "--help"],
        &["build", "--help"],
        &["deploy", "--help"],
    ] {
        let (status, stdout, _) = run_lamina(args, &[]);
        assert!(status.success(), "{args:?}");
        assert!(stdout.contains("Usage: lamina"), "{args:?}: {stdout}");
    }
}
