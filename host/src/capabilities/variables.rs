//! The `variables` capability: application variables (`[variables]` in
//! spin.toml) resolved once at start-up from `LAMINA_VAR_<NAME>`, then
//! runtime-config `[variables]`, then the manifest default; each component
//! sees only the names in its own `[component.<id>.variables]`, rendered from
//! `{{ name }}` templates. Secret values never reach a log: their `Debug`
//! output is redacted.

use std::collections::BTreeMap;
use std::fmt;

use anyhow::bail;

use super::CapabilityView;
use super::bindings::lamina::platform::variables as wit;
use crate::manifest::{ComponentDef, Variable};

/// Environment variable prefix that overrides an application variable.
pub const ENV_PREFIX: &str = "LAMINA_VAR_";

/// A resolved value; redacted in `Debug` when it derives from a secret.
#[derive(Clone)]
pub struct Value {
    text: String,
    secret: bool,
}

impl fmt::Debug for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.secret {
            f.write_str("\"<secret>\"")
        } else {
            fmt::Debug::fmt(&self.text, f)
        }
    }
}

/// The application variables with their resolved values.
#[derive(Debug, Default)]
pub struct Resolved {
    values: BTreeMap<String, Value>,
}

impl Resolved {
    /// Resolves every application variable; `env` looks up environment
    /// variables (a parameter so tests need not touch the process env).
    pub fn resolve(
        declared: &BTreeMap<String, Variable>,
        runtime: &BTreeMap<String, String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Resolved> {
        for name in runtime.keys() {
            if !declared.contains_key(name) {
                bail!(
                    "runtime config: variables.{name}: not declared in the manifest's [variables]"
                );
            }
        }
        let mut values = BTreeMap::new();
        for (name, variable) in declared {
            let env_name = format!("{ENV_PREFIX}{}", name.to_ascii_uppercase());
            let text = env(&env_name)
                .or_else(|| runtime.get(name).cloned())
                .or_else(|| variable.default.clone());
            let Some(text) = text else {
                bail!(
                    "variable `{name}` is required: set {env_name} or `{name}` under [variables] in the runtime config"
                );
            };
            values.insert(
                name.clone(),
                Value {
                    text,
                    secret: variable.secret,
                },
            );
        }
        Ok(Resolved { values })
    }

    /// Renders a component's `[component.<id>.variables]` templates. A
    /// value is secret if any variable it uses is.
    pub fn for_component(&self, component: &ComponentDef) -> ComponentVariables {
        let mut values = BTreeMap::new();
        for (name, template) in &component.variables {
            let mut text = String::new();
            let mut secret = false;
            let mut rest = template.as_str();
            while let Some(start) = rest.find("{{") {
                text.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let Some(end) = after.find("}}") else { break };
                // The manifest validated that every reference is declared.
                if let Some(value) = self.values.get(after[..end].trim()) {
                    text.push_str(&value.text);
                    secret |= value.secret;
                }
                rest = &after[end + 2..];
            }
            text.push_str(rest);
            values.insert(name.clone(), Value { text, secret });
        }
        ComponentVariables { values }
    }
}

/// The variables one component may read.
#[derive(Debug, Default)]
pub struct ComponentVariables {
    values: BTreeMap<String, Value>,
}

impl wit::Host for CapabilityView<'_> {
    async fn get(&mut self, name: String) -> wasmtime::Result<Result<String, wit::Error>> {
        Ok(match self.ctx.grants.variables.values.get(&name) {
            Some(value) => Ok(value.text.clone()),
            None => Err(wit::Error::Undefined(format!(
                "variable `{name}` is not defined for this component (add it to its `variables` in spin.toml)"
            ))),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn declared(secret: bool, default: Option<&str>) -> Variable {
        toml::from_str(&format!(
            "secret = {secret}\n{}",
            default
                .map(|d| format!("default = {d:?}"))
                .unwrap_or("required = true".into())
        ))
        .unwrap()
    }

    #[test]
    fn env_beats_runtime_config_beats_default_and_secrets_are_redacted() {
        let declared = BTreeMap::from([
            ("greeting".to_string(), declared(false, Some("hi"))),
            ("api_key".to_string(), declared(true, None)),
        ]);
        let runtime = BTreeMap::from([("greeting".to_string(), "hello".to_string())]);
        let resolved = Resolved::resolve(&declared, &runtime, |name| {
            (name == "LAMINA_VAR_API_KEY").then(|| "s3cret".to_string())
        })
        .unwrap();
        let component: ComponentDef = toml::from_str(
            "source = \"x.wasm\"\nvariables = { auth = \"Bearer {{ api_key }}\", text = \"{{greeting}}!\" }",
        )
        .unwrap();
        let vars = resolved.for_component(&component);
        assert_eq!(vars.values["auth"].text, "Bearer s3cret");
        assert_eq!(vars.values["text"].text, "hello!");
        let shown = format!("{vars:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<secret>"),
            "{shown}"
        );
    }

    #[test]
    fn missing_required_variable_is_an_error_naming_it() {
        let declared = BTreeMap::from([("api_key".to_string(), declared(true, None))]);
        let err = Resolved::resolve(&declared, &BTreeMap::new(), |_| None).unwrap_err();
        assert!(err.to_string().contains("LAMINA_VAR_API_KEY"), "{err}");
    }
}
