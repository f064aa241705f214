//! Test harness: start the real `lamina` binary on a generated manifest,
//! find the addresses it bound, talk to it over HTTP, stop it with a signal.
//!
//! The components are the real wasm files built by `cargo xtask test`
//! (`target/wasm32-wasip2/release/*.wasm`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

mod app;
pub mod documents;

pub use app::{
    ADMIN_LOGIN, ADMIN_PASSWORD, Event, USER_PASSWORD, admin_poll, admin_token, audited, call,
    create_api_key, eventually, expect, new_conversation, poll_as, register, sse_events,
    user_session,
};

/// The workspace root.
///
/// Read at run time (nextest and cargo set `CARGO_MANIFEST_DIR`): a test
/// binary reused from a shared target dir may have been built in another
/// clone, so the compile-time value is only a fallback.
pub fn workspace() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().unwrap().to_owned()
}

/// Cargo's target directory (honours `CARGO_TARGET_DIR`).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target"))
}

/// Path of a built component, e.g. `wasm("runtime_fixture")`.
pub fn wasm(name: &str) -> PathBuf {
    let path = target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `cargo xtask test` (it builds the components)",
        path.display()
    );
    path
}

/// The `lamina` binary next to the running test executable's profile dir.
pub fn lamina_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let bin = profile_dir.join("lamina");
    assert!(
        bin.is_file(),
        "{} is missing: run `cargo xtask test`",
        bin.display()
    );
    bin
}

/// A state directory shared by tests so each component is compiled once.
pub fn shared_data_dir() -> PathBuf {
    target_dir().join("lamina-test-data")
}

/// Options for starting a host.
pub struct HostOptions {
    /// Manifest text (`{fixture}`, `{about}`, `{spin_hello}` expand to wasm paths).
    pub manifest: String,
    /// Extra runtime-config TOML appended after `[data]`.
    pub runtime_config: String,
    /// The `[databases.*]` tables of the runtime config (the application's
    /// own declare its services' SQLite files; see [`HostOptions::databases`]).
    pub databases: String,
    /// Environment for the host process.
    pub env: Vec<(String, String)>,
    /// State dir; default: [`shared_data_dir`].
    pub data_dir: Option<PathBuf>,
    /// Files written next to the manifest: (relative path, source path).
    pub files: Vec<(String, PathBuf)>,
}

impl HostOptions {
    /// Options with a manifest and nothing else.
    pub fn manifest(manifest: &str) -> Self {
        HostOptions {
            manifest: manifest.to_owned(),
            runtime_config: String::new(),
            databases: String::new(),
            env: Vec::new(),
            data_dir: None,
            files: Vec::new(),
        }
    }

    /// Copies the capabilities fixture's migrations next to the manifest,
    /// where `lamina up` applies them.
    pub fn with_fixture_migrations(self) -> Self {
        self.with_migrations(&workspace().join("tests/fixtures/capabilities-fixture/migrations"))
    }

    /// The application itself: the workspace's `spin.toml` (components from
    /// the target dir), its migrations, and the rate-limit classes it names
    /// (generous: tests call from one address).
    pub fn app() -> Self {
        Self::app_with_rate_limits(
            "[rate_limit.classes.auth]\nrequests = 100000\nper = \"1m\"\n\
             [rate_limit.classes.login]\nrequests = 100000\nper = \"1m\"\n\
             [rate_limit.classes.api]\nrequests = 100000\nper = \"1m\"\n\
             [rate_limit.classes.inference]\nrequests = 100000\nper = \"1m\"\n",
        )
    }

    /// [`HostOptions::app`] with its own `[rate_limit.classes.*]` (`auth`,
    /// `login`, `api` and `inference` must be defined).
    pub fn app_with_rate_limits(classes: &str) -> Self {
        let text = std::fs::read_to_string(workspace().join("spin.toml")).unwrap();
        let wasm_dir = target_dir().join("wasm32-wasip2/release");
        let manifest = text.replace(
            "\"target/wasm32-wasip2/release/",
            &format!("\"{}/", wasm_dir.display()),
        );
        HostOptions::manifest(&manifest)
            .with_migrations(&workspace().join("migrations"))
            .databases(
                "[databases.auth]\ntype = \"sqlite\"\n[databases.outbox]\ntype = \"sqlite\"\n\
                 [databases.conversation]\ntype = \"sqlite\"\n\
                 [databases.explore]\ntype = \"sqlite\"\n",
            )
            .runtime_config(classes)
    }

    /// Declares the databases (`[databases.*]` TOML), in place of any
    /// declared before: e.g. [`PgSchema::databases`] to run the
    /// application on PostgreSQL.
    pub fn databases(mut self, toml: &str) -> Self {
        self.databases = toml.to_owned();
        self
    }

    /// Rewrites the manifest (for a variant of the application's own).
    pub fn edit_manifest(mut self, edit: impl FnOnce(&str) -> String) -> Self {
        self.manifest = edit(&self.manifest);
        self
    }

    /// Copies a migrations tree (`<database>/<dialect>/<file>.sql`) next to
    /// the manifest.
    fn with_migrations(mut self, source: &Path) -> Self {
        for database in std::fs::read_dir(source).unwrap() {
            let database = database.unwrap().path();
            if !database.is_dir() {
                continue;
            }
            let db = database.file_name().unwrap().to_string_lossy().into_owned();
            for dialect in ["sqlite", "postgres"] {
                for entry in std::fs::read_dir(database.join(dialect)).unwrap() {
                    let path = entry.unwrap().path();
                    let name = path.file_name().unwrap().to_string_lossy().into_owned();
                    self.files
                        .push((format!("migrations/{db}/{dialect}/{name}"), path));
                }
            }
        }
        self
    }

    /// Uses `dir` as the state directory (for restarts on the same SQLite).
    pub fn data_dir(mut self, dir: &Path) -> Self {
        self.data_dir = Some(dir.to_owned());
        self
    }

    /// Adds an environment variable.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Appends runtime-config TOML.
    pub fn runtime_config(mut self, toml: &str) -> Self {
        self.runtime_config.push_str(toml);
        self
    }
}

/// Expands the `{fixture}`-style placeholders in a manifest.
pub fn expand(manifest: &str) -> String {
    let mut text = manifest.to_owned();
    for (placeholder, name) in [
        ("{fixture}", "runtime_fixture"),
        ("{about}", "about"),
        ("{spin_hello}", "spin_hello"),
        ("{capabilities}", "capabilities_fixture"),
    ] {
        if text.contains(placeholder) {
            text = text.replace(placeholder, &wasm(name).display().to_string());
        }
    }
    text
}

/// A running `lamina up` process.
pub struct Host {
    child: Child,
    /// Base URL of the public listener.
    pub url: String,
    /// Base URL of the admin listener.
    pub admin_url: String,
    stderr: Arc<Mutex<String>>,
    dir: tempfile::TempDir,
}

impl Host {
    /// Starts a host and waits until it listens.
    pub fn start(options: HostOptions) -> Host {
        match Self::try_start(options) {
            Ok(host) => host,
            Err(error) => panic!("lamina did not start: {error}"),
        }
    }

    /// Starts a host; `Err` carries its stderr if it exited instead.
    pub fn try_start(options: HostOptions) -> Result<Host, String> {
        let dir = tempfile::tempdir().unwrap();
        let manifest = dir.path().join("spin.toml");
        std::fs::write(&manifest, expand(&options.manifest)).unwrap();
        for (relative, source) in &options.files {
            let target = dir.path().join(relative);
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(source, target).unwrap();
        }
        let data_dir = options.data_dir.unwrap_or_else(shared_data_dir);
        let config = dir.path().join("runtime-config.toml");
        std::fs::write(
            &config,
            format!(
                "[data]\ndir = {:?}\n{}{}",
                data_dir.display().to_string(),
                options.databases,
                options.runtime_config
            ),
        )
        .unwrap();
        let mut child = Command::new(lamina_bin())
            .args([
                "up",
                "--listen",
                "127.0.0.1:0",
                "--admin-listen",
                "127.0.0.1:0",
                "--manifest",
            ])
            .arg(&manifest)
            .arg("--runtime-config")
            .arg(&config)
            .env_remove("LAMINA_DEPLOY_TOKEN")
            .envs(options.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("cannot start lamina");

        let stderr = Arc::new(Mutex::new(String::new()));
        {
            let stderr = stderr.clone();
            let pipe = child.stderr.take().unwrap();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    let mut all = stderr.lock().unwrap();
                    all.push_str(&line);
                    all.push('\n');
                }
            });
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let (mut url, mut admin_url) = (None, None);
        let deadline = Instant::now() + Duration::from_secs(120);
        while url.is_none() || admin_url.is_none() {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) => {
                    if let Some(addr) = line
                        .strip_prefix("Serving ")
                        .and_then(|l| l.split(" on ").nth(1))
                    {
                        url = Some(addr.trim().to_owned());
                    } else if let Some(addr) = line.strip_prefix("Admin API on ") {
                        admin_url = Some(addr.trim().to_owned());
                    }
                }
                Err(_) => {
                    if let Ok(Some(status)) = child.try_wait() {
                        std::thread::sleep(Duration::from_millis(100));
                        return Err(format!("exited with {status}: {}", stderr.lock().unwrap()));
                    }
                    if Instant::now() > deadline {
                        let _ = child.kill();
                        return Err(format!(
                            "no listen line within 120s: {}",
                            stderr.lock().unwrap()
                        ));
                    }
                }
            }
        }
        Ok(Host {
            child,
            url: url.unwrap(),
            admin_url: admin_url.unwrap(),
            stderr,
            dir,
        })
    }

    /// `url` + `path`.
    pub fn at(&self, path: &str) -> String {
        format!("{}{path}", self.url)
    }

    /// Everything the host logged so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Waits (up to 10 s) until the host's log contains `needle`: stderr is
    /// read on its own thread, so a line may land a moment after the event.
    pub fn log_contains(&self, needle: &str) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if self.stderr().contains(needle) {
                return true;
            }
            if Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Temp dir holding this host's manifest.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM.
    pub fn terminate(&self) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
    }

    /// Sends SIGKILL: no drain, no cleanup, as in a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Host {
    /// Stops the host; a failing test also prints the end of its log, so
    /// a failure in CI shows what the host saw.
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.stderr();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "---- the host's log ({}), last lines:\n{}",
                self.url,
                tail.join("\n")
            );
        }
    }
}

/// Runs `lamina` with arguments to completion: (exit status, stdout, stderr).
pub fn run_lamina(args: &[&str], env: &[(&str, &str)]) -> (ExitStatus, String, String) {
    let output = Command::new(lamina_bin())
        .args(args)
        .env_remove("LAMINA_DEPLOY_TOKEN")
        .envs(env.iter().copied())
        .output()
        .expect("cannot run lamina");
    (
        output.status,
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// An HTTP client with a sane timeout.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

/// A response header's value, empty when the response has none.
pub fn header(response: &reqwest::Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// Asserts a response is problem+json with `status`; returns the document.
pub async fn expect_problem(response: reqwest::Response, status: u16) -> serde_json::Value {
    assert_eq!(response.status().as_u16(), status, "unexpected status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert!(
        body["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{body}"
    );
    body
}

/// GETs `url` and returns the body text, asserting a 200.
pub async fn get_text(url: &str) -> String {
    let response = client().get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "GET {url}");
    response.text().await.unwrap()
}

/// The PostgreSQL every session and CI machine runs (trust auth).
pub const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
/// The Redis every session and CI machine runs.
pub const REDIS_URL: &str = "redis://127.0.0.1:6379/0";

/// A unique name for this test's slice of a shared backend.
pub fn unique(prefix: &str) -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}_{}_{n}_{nanos}", std::process::id())
}

/// A PostgreSQL schema of its own for one test; dropped at the end.
pub struct PgSchema {
    /// Schema name.
    pub name: String,
}

impl PgSchema {
    /// A fresh schema name (lamina creates the schema on start).
    pub fn new() -> PgSchema {
        PgSchema {
            name: unique("lamina_test"),
        }
    }

    /// The schema holding database `db`: the test's name for `default`,
    /// `<name>_<db>` for the others.
    pub fn schema(&self, db: &str) -> String {
        if db == "default" {
            self.name.clone()
        } else {
            format!("{}_{db}", self.name)
        }
    }

    /// runtime-config TOML putting the application's databases
    /// (`default`, the services' `auth`, `outbox`, `conversation` and `explore`, and the host's own
    /// `host`) on PostgreSQL, each in a schema of its own.
    pub fn databases(&self) -> String {
        ["default", "host", "auth", "outbox", "conversation", "explore"]
            .iter()
            .map(|db| {
                format!(
                    "[databases.{db}]\ntype = \"postgres\"\nurl = \"{POSTGRES_URL}\"\nschema = \"{}\"\n",
                    self.schema(db)
                )
            })
            .collect()
    }
}

impl PgSchema {
    /// Runs SQL in the schema of database `db` with `psql` (what an
    /// operator would do); panics if it fails.
    pub fn psql(&self, db: &str, sql: &str) {
        self.psql_value(db, sql);
    }

    /// The single value a query selects in the schema of database `db`,
    /// as psql prints it (empty for statements); panics if it fails.
    pub fn psql_value(&self, db: &str, sql: &str) -> String {
        let output = Command::new("psql")
            .arg(POSTGRES_URL)
            .args([
                "-q",
                "-t",
                "-A",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                &format!("SET search_path TO \"{}\"; {sql}", self.schema(db)),
            ])
            .output()
            .expect("psql runs");
        assert!(
            output.status.success(),
            "psql failed: {sql}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).trim().to_owned()
    }
}

impl Default for PgSchema {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .arg(POSTGRES_URL)
            .args([
                "-q",
                "-c",
                &format!(
                    "DO $$ DECLARE s text; BEGIN FOR s IN SELECT nspname FROM pg_namespace \
                     WHERE nspname = '{0}' OR nspname LIKE '{0}\\_%' LOOP \
                     EXECUTE format('DROP SCHEMA %I CASCADE', s); END LOOP; END $$",
                    self.name
                ),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A Redis key prefix of its own for one test; its keys are deleted at the end.
pub struct RedisPrefix {
    /// The prefix, ending in `:`.
    pub prefix: String,
}

impl RedisPrefix {
    /// A fresh prefix.
    pub fn new() -> RedisPrefix {
        RedisPrefix {
            prefix: format!("{}:", unique("lamina-test")),
        }
    }
}

impl Default for RedisPrefix {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let script =
            "for _, k in ipairs(redis.call('KEYS', ARGV[1])) do redis.call('DEL', k) end return 0";
        let _ = Command::new("redis-cli")
            .args([
                "-u",
                REDIS_URL,
                "EVAL",
                script,
                "0",
                &format!("{}*", self.prefix),
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// A TCP proxy in front of a backend (Redis, PostgreSQL) that a test can
/// cut and restore, to take the backend "down" without touching the real
/// server other tests share.
pub struct TcpProxy {
    port: u16,
    state: Arc<ProxyState>,
}

#[derive(Default)]
struct ProxyState {
    up: std::sync::atomic::AtomicBool,
    /// Both ends of every proxied connection, to sever them on `cut`.
    open: Mutex<Vec<std::net::TcpStream>>,
}

impl TcpProxy {
    /// Listens on a free loopback port and forwards to `target` (`host:port`).
    pub fn start(target: &str) -> TcpProxy {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(ProxyState::default());
        state.up.store(true, Ordering::SeqCst);
        let target = target.to_owned();
        let shared = state.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                if !shared.up.load(Ordering::SeqCst) {
                    continue; // dropped: the connection closes at once
                }
                let Ok(server) = std::net::TcpStream::connect(&target) else {
                    continue;
                };
                let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone())
                else {
                    continue;
                };
                {
                    let mut open = shared.open.lock().unwrap();
                    open.push(client.try_clone().unwrap());
                    open.push(server.try_clone().unwrap());
                }
                pipe(client, server_copy);
                pipe(server, client_copy);
            }
        });
        TcpProxy { port, state }
    }

    /// `127.0.0.1:<port>`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Severs every open connection and refuses new ones.
    pub fn cut(&self) {
        self.state
            .up
            .store(false, std::sync::atomic::Ordering::SeqCst);
        for stream in self.state.open.lock().unwrap().drain(..) {
            let _ = stream.shutdown(std::net::Shutdown::Both);
        }
    }

    /// Accepts and forwards connections again.
    pub fn restore(&self) {
        self.state
            .up
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Copies `from` to `to` on a thread until either side closes.
fn pipe(mut from: std::net::TcpStream, mut to: std::net::TcpStream) {
    std::thread::spawn(move || {
        let _ = std::io::copy(&mut from, &mut to);
        let _ = to.shutdown(std::net::Shutdown::Both);
        let _ = from.shutdown(std::net::Shutdown::Both);
    });
}

/// The model store `cargo xtask test` prepared, with `gemma3:270m` and
/// `all-minilm:l6-v2` installed.
pub fn test_models_dir() -> PathBuf {
    test_env_path("LAMINA_TEST_MODELS_DIR")
}

/// The default model's GGUF file (for install tests).
pub fn test_gguf() -> PathBuf {
    test_env_path("LAMINA_TEST_GGUF")
}

/// The Python with the stock `ollama` and `openai` clients installed.
pub fn test_python() -> PathBuf {
    test_env_path("LAMINA_TEST_PYTHON")
}

fn test_env_path(key: &str) -> PathBuf {
    std::env::var_os(key).map(PathBuf::from).unwrap_or_else(|| {
        panic!("{key} is not set: run the tests with `cargo xtask test`, which installs the default models")
    })
}

/// A loopback server for `file` at `/model.gguf` (404 elsewhere) that
/// honours `Range: bytes=N-` with a 206 and records each request's start.
/// While `stall` is set it sends only the first [`STALL_AFTER`] bytes of a
/// response and then hangs, as a dying connection does.
pub struct FileServer {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
    /// Where each request started (0, or its `Range` start).
    pub starts: Arc<Mutex<Vec<u64>>>,
    /// While set, responses stop after [`STALL_AFTER`] bytes and hang.
    pub stall: Arc<AtomicBool>,
}

/// Bytes a stalled response sends before it hangs.
pub const STALL_AFTER: u64 = 64 << 20;

impl FileServer {
    /// Serves `file` on a loopback port.
    pub async fn start(file: &Path) -> FileServer {
        Self::start_on("127.0.0.1", file).await
    }

    /// Serves `file` on a free port of `ip` (e.g. another loopback address,
    /// `127.0.0.2`).
    pub async fn start_on(ip: &str, file: &Path) -> FileServer {
        let listener = tokio::net::TcpListener::bind((ip, 0)).await.unwrap();
        let server = FileServer {
            url: format!("http://{}", listener.local_addr().unwrap()),
            starts: Arc::default(),
            stall: Arc::default(),
        };
        let (file, starts, stall) = (file.to_owned(), server.starts.clone(), server.stall.clone());
        tokio::spawn(async move {
            loop {
                let (socket, _) = listener.accept().await.unwrap();
                let (file, starts, stall) = (file.clone(), starts.clone(), stall.clone());
                tokio::spawn(async move {
                    let _ = serve_one(socket, &file, &starts, &stall).await;
                });
            }
        });
        server
    }

    /// The file's URL.
    pub fn model_url(&self) -> String {
        format!("{}/model.gguf", self.url)
    }
}

async fn serve_one(
    mut socket: tokio::net::TcpStream,
    file: &Path,
    starts: &Mutex<Vec<u64>>,
    stall: &AtomicBool,
) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = socket.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    if !request.starts_with(b"GET /model.gguf ") {
        return socket
            .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            .await;
    }
    let head = String::from_utf8_lossy(&request).to_ascii_lowercase();
    let start: u64 = head
        .lines()
        .find_map(|l| l.strip_prefix("range: bytes="))
        .and_then(|r| r.trim().strip_suffix('-')?.parse().ok())
        .unwrap_or(0);
    starts.lock().unwrap().push(start);
    let mut source = tokio::fs::File::open(file).await?;
    let len = source.metadata().await?.len();
    source.seek(std::io::SeekFrom::Start(start)).await?;
    let head = if start == 0 {
        format!("HTTP/1.1 200 OK\r\ncontent-length: {len}\r\nconnection: close\r\n\r\n")
    } else {
        format!(
            "HTTP/1.1 206 Partial Content\r\ncontent-length: {}\r\ncontent-range: bytes {start}-{}/{len}\r\nconnection: close\r\n\r\n",
            len - start,
            len - 1
        )
    };
    socket.write_all(head.as_bytes()).await?;
    if stall.load(Ordering::SeqCst) {
        tokio::io::copy(&mut (&mut source).take(STALL_AFTER), &mut socket).await?;
        socket.flush().await?;
        std::future::pending::<()>().await;
    }
    tokio::io::copy(&mut source, &mut socket).await.map(drop)
}

/// A loopback server that answers every request with a `302` to `target`.
pub struct Redirector {
    /// `http://127.0.0.1:PORT`.
    pub url: String,
}

impl Redirector {
    /// Redirects to `target` from a loopback port.
    pub async fn start(target: &str) -> Redirector {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let answer = format!(
            "HTTP/1.1 302 Found\r\nlocation: {target}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
        );
        tokio::spawn(async move {
            loop {
                let (mut socket, _) = listener.accept().await.unwrap();
                let answer = answer.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = socket.read(&mut buf).await;
                    let _ = socket.write_all(answer.as_bytes()).await;
                });
            }
        });
        Redirector { url }
    }
}
