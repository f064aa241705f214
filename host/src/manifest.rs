//! The application manifest (`spin.toml`, Spin manifest v2 shape) and its
//! validation.
//!
//! Parsing is strict (unknown keys are errors) so a typo in a grant or a route
//! policy fails at start-up instead of silently doing nothing. Every error
//! names the file, the key and the problem.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::router::RoutePattern;
use crate::units::ByteSize;

/// A manifest that parsed and passed validation.
#[derive(Debug, Clone)]
pub struct Manifest {
    /// The file it was read from.
    pub path: PathBuf,
    /// The directory relative paths (sources, build workdirs) resolve against.
    pub dir: PathBuf,
    /// `[application]`.
    pub application: Application,
    /// `[[trigger.http]]` entries, in file order.
    pub http_routes: Vec<HttpRoute>,
    /// `[[trigger.queue]]` entries, in file order.
    pub queue_triggers: Vec<QueueTrigger>,
    /// `[variables]`: application variables by name.
    pub variables: BTreeMap<String, Variable>,
    /// `[component.<id>]` entries by id.
    pub components: BTreeMap<String, ComponentDef>,
}

/// A manifest error: which file, which key, what is wrong.
#[derive(Debug)]
pub struct ManifestError {
    file: PathBuf,
    key: String,
    problem: String,
}

impl ManifestError {
    fn new(file: &Path, key: impl Into<String>, problem: impl Into<String>) -> Self {
        ManifestError {
            file: file.to_owned(),
            key: key.into(),
            problem: problem.into(),
        }
    }
}

impl fmt::Display for ManifestError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.key.is_empty() {
            write!(f, "{}: {}", self.file.display(), self.problem)
        } else {
            write!(f, "{}: {}: {}", self.file.display(), self.key, self.problem)
        }
    }
}

impl std::error::Error for ManifestError {}

/// `[application]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Application {
    /// Application name, shown in logs.
    pub name: String,
    /// Application version.
    #[serde(default)]
    pub version: Option<String>,
    /// Informational (Spin's `description`); accepted and ignored.
    #[serde(default, rename = "description")]
    _description: IgnoredAny,
    /// Informational (Spin's `authors`); accepted and ignored.
    #[serde(default, rename = "authors")]
    _authors: IgnoredAny,
    /// `[application.trigger.http]` (Spin's `base`; only `/` is supported).
    #[serde(default)]
    pub trigger: Option<ApplicationTriggers>,
}

/// `[application.trigger]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationTriggers {
    /// `[application.trigger.http]`.
    pub http: Option<ApplicationHttp>,
}

/// `[application.trigger.http]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApplicationHttp {
    /// Base path for all routes.
    #[serde(default)]
    pub base: Option<String>,
}

/// An application variable (`[variables]`), resolved by the variables capability.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Value used when neither the environment nor the runtime config sets one.
    #[serde(default)]
    pub default: Option<String>,
    /// The variable must be provided (no default).
    #[serde(default)]
    pub required: bool,
    /// Never logged or shown.
    #[serde(default)]
    pub secret: bool,
}

/// Who may call a route (enforced by the gateway).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AuthPolicy {
    /// Anonymous callers allowed; no identity forwarded.
    #[default]
    None,
    /// A valid credential is used when present; anonymous callers allowed.
    Optional,
    /// A valid credential is required.
    Required,
}

/// Which credentials a route accepts (when it looks at one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Credentials {
    /// A JWT access token or an API key.
    #[default]
    Any,
    /// A JWT from a login session only: API keys get 403. For routes that
    /// manage an account, its keys or its mail, so a leaked key cannot
    /// take the account over.
    Session,
}

/// One `[[trigger.http]]` entry.
#[derive(Debug, Clone)]
pub struct HttpRoute {
    /// The route pattern as written (`/api/about`, `/api/explore/...`,
    /// `/api/items/:id`).
    pub route: RoutePattern,
    /// The methods the route takes (empty: all).
    pub methods: Vec<http::Method>,
    /// Component id.
    pub component: String,
    /// Gateway authentication policy.
    pub auth: AuthPolicy,
    /// Which credentials are accepted.
    pub credentials: Credentials,
    /// Largest request body on this route (default: `[http] max_body_size`).
    pub max_body_size: Option<ByteSize>,
    /// Roles of which the caller must hold at least one.
    pub roles: Vec<String>,
    /// Rate-limit class (runtime-config names the classes).
    pub rate_limit: Option<String>,
    /// Wall-clock limit for the component to produce response headers.
    pub timeout: Option<Duration>,
    /// Longest the component may run guest code without returning to the host.
    pub execution_deadline: Option<Duration>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpRoute {
    route: String,
    #[serde(default)]
    methods: Vec<String>,
    component: String,
    #[serde(default)]
    auth: AuthPolicy,
    #[serde(default)]
    credentials: Credentials,
    #[serde(default)]
    max_body_size: Option<ByteSize>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    rate_limit: Option<String>,
    #[serde(default, with = "humantime_serde")]
    timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    execution_deadline: Option<Duration>,
}

/// One `[[trigger.queue]]` entry: a component consuming a topic.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueTrigger {
    /// The topic subscribed to (other components may subscribe too: each
    /// gets every message).
    pub topic: String,
    /// Component id; it must export `lamina:platform/queue-handler`.
    pub component: String,
    /// Messages handled at the same time on this host.
    #[serde(default = "one")]
    pub concurrency: usize,
    /// Longest one `handle` call may take before it counts as failed.
    #[serde(default = "default_handler_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// Longest the handler may run guest code without a host call
    /// (default 5 s, at most `timeout`): parsing a large document needs more.
    #[serde(default = "default_handler_deadline", with = "humantime_serde")]
    pub execution_deadline: Duration,
    /// The topic's payloads hold secrets (mail with password-reset links):
    /// dead letters are listed without them.
    #[serde(default)]
    pub sensitive: bool,
}

fn default_handler_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_handler_deadline() -> Duration {
    Duration::from_secs(5)
}

/// `[component.<id>]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentDef {
    /// Path of the `.wasm` file, relative to the manifest.
    pub source: PathBuf,
    /// Informational; accepted and ignored.
    #[serde(default, rename = "description")]
    _description: IgnoredAny,
    /// Environment variables the component sees through `wasi:cli/environment`.
    #[serde(default)]
    pub environment: BTreeMap<String, String>,
    /// Component variables (templates over application variables).
    #[serde(default)]
    pub variables: BTreeMap<String, String>,
    /// Key-value stores the component may open.
    #[serde(default)]
    pub key_value_stores: Vec<String>,
    /// SQL databases the component may use.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Queue topics the component may publish to.
    #[serde(default)]
    pub queues: Vec<String>,
    /// Whether the component may issue and revoke tokens and API keys
    /// (the `tokens` capability; grant it to the auth service only).
    #[serde(default)]
    pub tokens: bool,
    /// Models the component may run inference on (`"*"`: all).
    #[serde(default)]
    pub models: Vec<String>,
    /// Whether the component may install and remove models (the admin
    /// service only).
    #[serde(default)]
    pub manage_models: bool,
    /// Whether the component may send mail (the `mail` capability).
    #[serde(default)]
    pub mail: bool,
    /// Whether the component may change model access lists and token
    /// budgets (the `limits` capability; the auth service only).
    #[serde(default)]
    pub limits: bool,
    /// Blob buckets the component may open (the `blobs` capability).
    #[serde(default)]
    pub blobs: Vec<String>,
    /// Vector indexes the component may open (the `vectors` capability).
    #[serde(default)]
    pub vector_indexes: Vec<String>,
    /// Outbound HTTP destinations (`https://api.example.com`, `http://127.0.0.1:*`).
    #[serde(default)]
    pub allowed_outbound_hosts: Vec<String>,
    /// Linear-memory limit per instance (default from runtime-config).
    #[serde(default)]
    pub memory_limit: Option<ByteSize>,
    /// Instance reuse for WASI 0.3 components (off: a fresh instance per request).
    #[serde(default)]
    pub instance_reuse: Option<InstanceReuse>,
    /// How `lamina build` builds this component.
    #[serde(default)]
    pub build: Option<BuildDef>,
}

/// `instance_reuse = { max_requests, max_concurrent }`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InstanceReuse {
    /// Requests one instance serves before it is dropped.
    pub max_requests: usize,
    /// Requests one instance serves at the same time.
    #[serde(default = "one")]
    pub max_concurrent: usize,
}

fn one() -> usize {
    1
}

/// `[component.<id>.build]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BuildDef {
    /// Shell command that produces `source`.
    pub command: String,
    /// Directory to run it in, relative to the manifest.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Spin's file-watch globs; accepted and ignored.
    #[serde(default, rename = "watch")]
    _watch: IgnoredAny,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    spin_manifest_version: u32,
    application: Application,
    #[serde(default)]
    variables: BTreeMap<String, Variable>,
    #[serde(default)]
    trigger: RawTriggers,
    #[serde(default)]
    component: BTreeMap<String, ComponentDef>,
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTriggers {
    #[serde(default)]
    http: Vec<RawHttpRoute>,
    #[serde(default)]
    queue: Vec<QueueTrigger>,
}

impl Manifest {
    /// Reads, parses and validates a manifest file. Component sources are
    /// checked separately ([`Manifest::check_sources`]) so `lamina build` can
    /// load a manifest whose components are not built yet.
    pub fn load(path: &Path) -> Result<Manifest, ManifestError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ManifestError::new(path, "", format!("cannot read manifest: {e}")))?;
        Self::parse(path, &text)
    }

    /// Parses and validates manifest text read from `path`.
    pub fn parse(path: &Path, text: &str) -> Result<Manifest, ManifestError> {
        let raw: RawManifest = toml::from_str(text).map_err(|e| {
            let key = e
                .span()
                .map(|span| locate(text, span.start))
                .unwrap_or_default();
            ManifestError::new(path, key, e.message().to_string())
        })?;
        if raw.spin_manifest_version != 2 {
            return Err(ManifestError::new(
                path,
                "spin_manifest_version",
                format!(
                    "unsupported version {} (expected 2)",
                    raw.spin_manifest_version
                ),
            ));
        }
        if let Some(base) = raw
            .application
            .trigger
            .as_ref()
            .and_then(|t| t.http.as_ref())
            .and_then(|h| h.base.as_deref())
            && base != "/"
        {
            return Err(ManifestError::new(
                path,
                "application.trigger.http.base",
                format!("only \"/\" is supported, found {base:?}"),
            ));
        }

        for (id, component) in &raw.component {
            let key = |field: &str| format!("component.{id}.{field}");
            if !valid_id(id) {
                return Err(ManifestError::new(
                    path,
                    format!("component.{id}"),
                    "component ids use lowercase letters, digits and '-' (starting with a letter)",
                ));
            }
            for (name, template) in &component.variables {
                for reference in template_references(template) {
                    if !raw.variables.contains_key(reference) {
                        return Err(ManifestError::new(
                            path,
                            key(&format!("variables.{name}")),
                            format!("refers to undefined application variable `{reference}`"),
                        ));
                    }
                }
            }
            if let Some(reuse) = component.instance_reuse
                && (reuse.max_requests == 0 || reuse.max_concurrent == 0)
            {
                return Err(ManifestError::new(
                    path,
                    key("instance_reuse"),
                    "max_requests and max_concurrent must be at least 1",
                ));
            }
            if let Some(topic) = component
                .queues
                .iter()
                .find(|t| !crate::capabilities::queue::valid_topic(t))
            {
                return Err(ManifestError::new(
                    path,
                    key("queues"),
                    format!("`{topic}`: topics are 1 to 128 letters, digits, '.', '_' or '-'"),
                ));
            }
            if component.memory_limit.is_some_and(|m| m.bytes() < 1 << 20) {
                return Err(ManifestError::new(
                    path,
                    key("memory_limit"),
                    "must be at least 1MiB",
                ));
            }
        }
        for (name, variable) in &raw.variables {
            let problem = if !valid_variable_name(name) {
                Some(
                    "variable names use lowercase letters, digits and '_' (starting with a letter)",
                )
            } else if variable.required && variable.default.is_some() {
                Some("a required variable cannot have a default")
            } else if !variable.required && variable.default.is_none() {
                Some("a variable needs a default or `required = true`")
            } else {
                None
            };
            if let Some(problem) = problem {
                return Err(ManifestError::new(
                    path,
                    format!("variables.{name}"),
                    problem,
                ));
            }
        }
        for (index, trigger) in raw.trigger.queue.iter().enumerate() {
            let key = |field: &str| format!("trigger.queue[{index}].{field}");
            if !crate::capabilities::queue::valid_topic(&trigger.topic) {
                return Err(ManifestError::new(
                    path,
                    key("topic"),
                    "topics are 1 to 128 letters, digits, '.', '_' or '-'",
                ));
            }
            if !raw.component.contains_key(&trigger.component) {
                return Err(ManifestError::new(
                    path,
                    key("component"),
                    format!("unknown component `{}`", trigger.component),
                ));
            }
            if trigger.concurrency == 0 || trigger.concurrency > 256 {
                return Err(ManifestError::new(
                    path,
                    key("concurrency"),
                    "must be 1 to 256",
                ));
            }
            if trigger.timeout.is_zero() {
                return Err(ManifestError::new(
                    path,
                    key("timeout"),
                    "must be greater than zero",
                ));
            }
            if trigger.execution_deadline.is_zero() {
                return Err(ManifestError::new(
                    path,
                    key("execution_deadline"),
                    "must be greater than zero",
                ));
            }
            // Several components may subscribe to one topic (each gets
            // every message), each once.
            if let Some(earlier) = raw.trigger.queue[..index]
                .iter()
                .position(|t| t.topic == trigger.topic && t.component == trigger.component)
            {
                return Err(ManifestError::new(
                    path,
                    key("topic"),
                    format!(
                        "component `{}` already subscribes to `{}` (trigger.queue[{earlier}])",
                        trigger.component, trigger.topic
                    ),
                ));
            }
        }

        let mut http_routes: Vec<HttpRoute> = Vec::with_capacity(raw.trigger.http.len());
        for (index, route) in raw.trigger.http.into_iter().enumerate() {
            let key = |field: &str| format!("trigger.http[{index}].{field}");
            let pattern = RoutePattern::parse(&route.route)
                .map_err(|problem| ManifestError::new(path, key("route"), problem))?;
            let mut methods: Vec<http::Method> = Vec::new();
            for name in &route.methods {
                let method = http::Method::from_bytes(name.to_ascii_uppercase().as_bytes())
                    .map_err(|_| {
                        ManifestError::new(
                            path,
                            key("methods"),
                            format!("{name:?} is no HTTP method"),
                        )
                    })?;
                if !methods.contains(&method) {
                    methods.push(method);
                }
            }
            // Two routes on one path must not both take a method.
            let overlap = |other: &[http::Method]| {
                methods.is_empty() || other.is_empty() || methods.iter().any(|m| other.contains(m))
            };
            if let Some(earlier) = http_routes
                .iter()
                .position(|r| r.route == pattern && overlap(&r.methods))
            {
                return Err(ManifestError::new(
                    path,
                    key("route"),
                    format!(
                        "duplicate route {:?} (also trigger.http[{earlier}], for the same methods)",
                        route.route
                    ),
                ));
            }
            if route.max_body_size.is_some_and(|size| size.bytes() == 0) {
                return Err(ManifestError::new(
                    path,
                    key("max_body_size"),
                    "must be greater than zero",
                ));
            }
            if route.credentials == Credentials::Session && route.auth == AuthPolicy::None {
                return Err(ManifestError::new(
                    path,
                    key("credentials"),
                    "credentials need auth = \"required\" or \"optional\"",
                ));
            }
            if !raw.component.contains_key(&route.component) {
                let known: Vec<&str> = raw.component.keys().map(String::as_str).collect();
                return Err(ManifestError::new(
                    path,
                    key("component"),
                    format!(
                        "unknown component `{}` (defined: {})",
                        route.component,
                        if known.is_empty() {
                            "none".into()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            }
            for (field, value) in [
                ("timeout", route.timeout),
                ("execution_deadline", route.execution_deadline),
            ] {
                if value.is_some_and(|d| d.is_zero()) {
                    return Err(ManifestError::new(
                        path,
                        key(field),
                        "must be greater than zero",
                    ));
                }
            }
            if !route.roles.is_empty() && route.auth != AuthPolicy::Required {
                return Err(ManifestError::new(
                    path,
                    key("roles"),
                    "roles need auth = \"required\"",
                ));
            }
            http_routes.push(HttpRoute {
                route: pattern,
                methods,
                component: route.component,
                auth: route.auth,
                credentials: route.credentials,
                max_body_size: route.max_body_size,
                roles: route.roles,
                rate_limit: route.rate_limit,
                timeout: route.timeout,
                execution_deadline: route.execution_deadline,
            });
        }

        let dir = path
            .parent()
            .map(Path::to_owned)
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("."));
        Ok(Manifest {
            path: path.to_owned(),
            dir,
            application: raw.application,
            http_routes,
            queue_triggers: raw.trigger.queue,
            variables: raw.variables,
            components: raw.component,
        })
    }

    /// The absolute-or-manifest-relative path of a component's source.
    pub fn source_path(&self, component: &ComponentDef) -> PathBuf {
        self.dir.join(&component.source)
    }

    /// Fails with a clear error if any routed component's `.wasm` is missing.
    pub fn check_sources(&self) -> Result<(), ManifestError> {
        for (id, component) in &self.components {
            let source = self.source_path(component);
            if !source.is_file() {
                return Err(ManifestError::new(
                    &self.path,
                    format!("component.{id}.source"),
                    format!("file not found: {} (run `lamina build`?)", source.display()),
                ));
            }
        }
        Ok(())
    }
}

/// Component ids follow Spin: kebab-case, starting with a letter.
fn valid_id(id: &str) -> bool {
    id.starts_with(|c: char| c.is_ascii_lowercase())
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// Variable names follow Spin: snake_case, starting with a letter.
fn valid_variable_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The application variables a `{{ name }}` template refers to.
fn template_references(template: &str) -> impl Iterator<Item = &str> {
    template
        .split("{{")
        .skip(1)
        .filter_map(|rest| rest.split_once("}}").map(|(name, _)| name.trim()))
}

/// Turns a byte offset into a `line N, column M` location for TOML errors.
fn locate(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!("line {line}, column {column}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Manifest, String> {
        Manifest::parse(Path::new("spin.toml"), text).map_err(|e| e.to_string())
    }

    const HEADER: &str = "spin_manifest_version = 2\n[application]\nname = \"t\"\n";

    #[test]
    fn parses_routes_and_components() {
        let m = parse(&format!(
            "{HEADER}[[trigger.http]]\nroute = \"/api/...\"\ncomponent = \"a\"\ntimeout = \"2s\"\n\
             [component.a]\nsource = \"a.wasm\"\nmemory_limit = \"16MiB\"\n"
        ))
        .unwrap();
        assert_eq!(m.http_routes[0].component, "a");
        assert_eq!(m.http_routes[0].timeout, Some(Duration::from_secs(2)));
        assert_eq!(m.components["a"].memory_limit.unwrap().bytes(), 16 << 20);
    }

    #[test]
    fn unknown_component_names_the_key() {
        let err = parse(&format!(
            "{HEADER}[[trigger.http]]\nroute = \"/\"\ncomponent = \"nope\"\n[component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap_err();
        assert_eq!(
            err,
            "spin.toml: trigger.http[0].component: unknown component `nope` (defined: a)"
        );
    }

    #[test]
    fn duplicate_routes_are_rejected() {
        let err = parse(&format!(
            "{HEADER}[[trigger.http]]\nroute = \"/x/...\"\ncomponent = \"a\"\n\
             [[trigger.http]]\nroute = \"/x/...\"\ncomponent = \"a\"\n[component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("trigger.http[1].route: duplicate route"),
            "{err}"
        );
    }

    #[test]
    fn bad_toml_and_unknown_keys_give_a_location() {
        let err = parse("spin_manifest_version = 2\n[application\n").unwrap_err();
        assert!(err.starts_with("spin.toml: line 2"), "{err}");
        let err = parse(&format!(
            "{HEADER}[component.a]\nsource = \"a.wasm\"\nsorce = 1\n"
        ))
        .unwrap_err();
        assert!(err.contains("unknown field `sorce`"), "{err}");
    }

    #[test]
    fn undefined_variable_references_are_rejected() {
        let err = parse(&format!(
            "{HEADER}[component.a]\nsource = \"a.wasm\"\nvariables = {{ k = \"{{{{ missing }}}}\" }}\n"
        ))
        .unwrap_err();
        assert!(err.contains("component.a.variables.k"), "{err}");
    }

    #[test]
    fn queue_triggers_are_validated() {
        let ok = parse(&format!(
            "{HEADER}[[trigger.queue]]\ntopic = \"jobs\"\ncomponent = \"a\"\n[component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap();
        assert_eq!(ok.queue_triggers[0].topic, "jobs");
        let err = parse(&format!(
            "{HEADER}[[trigger.queue]]\ntopic = \"jobs\"\ncomponent = \"b\"\n[component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("trigger.queue[0].component: unknown component `b`"),
            "{err}"
        );
        let trigger = |component: &str| {
            format!("[[trigger.queue]]\ntopic = \"jobs\"\ncomponent = \"{component}\"\n")
        };
        let components = "[component.a]\nsource = \"a.wasm\"\n[component.b]\nsource = \"b.wasm\"\n";
        let fan_out = parse(&format!(
            "{HEADER}{}{}{components}",
            trigger("a"),
            trigger("b")
        ))
        .unwrap();
        assert_eq!(
            fan_out.queue_triggers.len(),
            2,
            "two subscribers of one topic"
        );
        let err = parse(&format!(
            "{HEADER}{}{}{components}",
            trigger("a"),
            trigger("a")
        ))
        .unwrap_err();
        assert!(err.contains("already subscribes to `jobs`"), "{err}");
        let err = parse(&format!(
            "{HEADER}[component.a]\nsource = \"a.wasm\"\nqueues = [\"a:b\"]\n"
        ))
        .unwrap_err();
        assert!(err.contains("component.a.queues"), "{err}");
    }

    #[test]
    fn variables_need_a_default_or_required() {
        let err = parse(&format!("{HEADER}[variables]\nkey = {{ secret = true }}\n")).unwrap_err();
        assert!(
            err.contains("variables.key: a variable needs a default"),
            "{err}"
        );
    }

    #[test]
    fn methods_split_a_path_and_overlaps_are_refused() {
        let route = |methods: &str| {
            format!(
                "[[trigger.http]]\nroute = \"/x/:id\"\ncomponent = \"a\"\nmethods = {methods}\n"
            )
        };
        let m = parse(&format!(
            "{HEADER}{}{}[component.a]\nsource = \"a.wasm\"\n",
            route("[\"get\"]"),
            route("[\"POST\", \"PATCH\"]")
        ))
        .unwrap();
        assert_eq!(m.http_routes[0].methods, [http::Method::GET]);
        assert_eq!(
            m.http_routes[1].methods,
            [http::Method::POST, http::Method::PATCH]
        );
        let err = parse(&format!(
            "{HEADER}{}{}[component.a]\nsource = \"a.wasm\"\n",
            route("[\"GET\"]"),
            route("[]")
        ))
        .unwrap_err();
        assert!(
            err.contains("trigger.http[1].route: duplicate route"),
            "{err}"
        );
        let err = parse(&format!(
            "{HEADER}{}[component.a]\nsource = \"a.wasm\"\n",
            route("[\"G T\"]")
        ))
        .unwrap_err();
        assert!(err.contains("trigger.http[0].methods"), "{err}");
    }

    #[test]
    fn session_credentials_need_auth() {
        let err = parse(&format!(
            "{HEADER}[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\ncredentials = \"session\"\n\
             [component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("credentials need auth"), "{err}");
    }

    #[test]
    fn roles_require_auth() {
        let err = parse(&format!(
            "{HEADER}[[trigger.http]]\nroute = \"/\"\ncomponent = \"a\"\nroles = [\"Admin\"]\n\
             [component.a]\nsource = \"a.wasm\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("roles need auth"), "{err}");
    }
}
