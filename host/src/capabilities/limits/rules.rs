//! The rule table (`lamina_limits` in the host database): per role, user
//! or API key, a model list and a token budget. Read on every inference
//! call a request makes, in one indexed query, so a change holds on every
//! host at once.

use std::collections::BTreeSet;

use super::period::Period;
use super::{Caller, LimitError};
use crate::capabilities::bindings::lamina::platform::sql::Value;
use crate::capabilities::inference::store::canonical_name;
use crate::capabilities::sql::{Database, text};

/// Host-internal schema, created at start-up.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS lamina_limits (
        scope_kind TEXT NOT NULL,
        scope_id TEXT NOT NULL,
        owner TEXT,
        models TEXT,
        budget_tokens BIGINT,
        budget_period TEXT,
        budget_seconds BIGINT,
        updated_at BIGINT NOT NULL,
        PRIMARY KEY (scope_kind, scope_id)
    )",
    "CREATE INDEX IF NOT EXISTS lamina_limits_owner ON lamina_limits (owner)",
];

/// Most models one list names.
pub const MAX_MODELS: usize = 200;
/// Longest role, user or key id.
const MAX_ID_BYTES: usize = 256;

/// Whom a rule is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Role(String),
    User(String),
    ApiKey { id: String, owner: String },
}

impl Scope {
    /// `(scope_kind, scope_id, owner)` as stored.
    fn columns(&self) -> (&'static str, &str, Option<&str>) {
        match self {
            Scope::Role(name) => ("role", name, None),
            Scope::User(id) => ("user", id, Some(id)),
            Scope::ApiKey { id, owner } => ("api-key", id, Some(owner)),
        }
    }

    /// `user` or `api-key`: the name a budget refusal gives.
    pub fn kind(&self) -> &'static str {
        self.columns().0
    }

    /// The key its budget counts under in the period of shape `period`
    /// starting at `start` (a changed period counts afresh). The owner in
    /// braces keeps a user's and their keys' counters in one Redis Cluster
    /// slot, so one script may update both.
    pub fn counter_key(&self, period: Period, start: i64) -> String {
        let (kind, id, owner) = self.columns();
        let shape = match period {
            Period::Custom(seconds) => format!("custom{seconds}"),
            other => other.name().to_owned(),
        };
        format!("{{{}}}:{kind}:{id}:{shape}:{start}", owner.unwrap_or(id))
    }

    fn validate(&self) -> Result<(), LimitError> {
        let ids = match self {
            Scope::Role(name) => vec![name.as_str()],
            Scope::User(id) => vec![id.as_str()],
            Scope::ApiKey { id, owner } => vec![id.as_str(), owner.as_str()],
        };
        if ids
            .iter()
            .any(|id| id.is_empty() || id.len() > MAX_ID_BYTES)
        {
            return Err(LimitError::Invalid(format!(
                "a scope's ids must be 1 to {MAX_ID_BYTES} bytes"
            )));
        }
        Ok(())
    }
}

/// A token budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    pub tokens: u64,
    pub period: Period,
}

/// Which models a list allows: `*` or canonical names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelList(BTreeSet<String>);

impl ModelList {
    /// From names as given (any spelling; `*` for all).
    pub fn new(names: Vec<String>) -> Result<ModelList, LimitError> {
        if names.len() > MAX_MODELS {
            return Err(LimitError::Invalid(format!(
                "a model list names at most {MAX_MODELS} models"
            )));
        }
        names
            .into_iter()
            .map(|n| {
                if n == "*" {
                    Ok(n)
                } else {
                    canonical_name(&n).map_err(|e| LimitError::Invalid(e.to_string()))
                }
            })
            .collect::<Result<_, _>>()
            .map(ModelList)
    }

    /// Adds what `other` allows (a caller's roles' lists are unioned).
    pub fn merge(&mut self, other: ModelList) {
        self.0.extend(other.0);
    }

    /// Allows nothing, until merged with.
    pub fn empty() -> ModelList {
        ModelList(BTreeSet::new())
    }

    /// Whether it allows `name` (canonical).
    pub fn allows(&self, name: &str) -> bool {
        self.0.contains("*") || self.0.contains(name)
    }

    /// The names, sorted.
    pub fn names(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

/// One stored rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub scope: Scope,
    pub models: Option<ModelList>,
    pub budget: Option<Budget>,
}

/// The table.
pub struct Rules {
    db: Database,
}

fn unavailable(e: impl std::fmt::Debug) -> LimitError {
    LimitError::Unavailable(format!("the limits table cannot be reached: {e:?}"))
}

impl Rules {
    /// Creates the table if needed.
    pub async fn open(db: Database) -> anyhow::Result<Rules> {
        for statement in SCHEMA {
            db.execute(statement, vec![])
                .await
                .map_err(|e| anyhow::anyhow!("cannot create the limits table: {e:?}"))?;
        }
        Ok(Rules { db })
    }

    /// Sets or clears the model list of `scope`.
    pub async fn set_models(
        &self,
        scope: &Scope,
        models: Option<ModelList>,
    ) -> Result<(), LimitError> {
        scope.validate()?;
        let models = models.map(|m| serde_json::to_string(&m.names()).expect("names serialize"));
        self.upsert(scope, "models = excluded.models", |values| {
            values[3] = models.as_deref().map_or(Value::Null, text);
        })
        .await
    }

    /// Sets or clears the budget of `scope` (users and API keys only).
    pub async fn set_budget(
        &self,
        scope: &Scope,
        budget: Option<Budget>,
    ) -> Result<(), LimitError> {
        scope.validate()?;
        if matches!(scope, Scope::Role(_)) {
            return Err(LimitError::Invalid(
                "budgets are set per user or per API key, not per role".into(),
            ));
        }
        if budget.is_some_and(|b| b.tokens > i64::MAX as u64) {
            return Err(LimitError::Invalid(
                "a budget is at most 2^63-1 tokens".into(),
            ));
        }
        self.upsert(
            scope,
            "budget_tokens = excluded.budget_tokens, budget_period = excluded.budget_period, \
             budget_seconds = excluded.budget_seconds",
            |values| {
                if let Some(b) = budget {
                    values[4] = Value::Int(b.tokens as i64);
                    values[5] = text(b.period.name());
                    if let Period::Custom(s) = b.period {
                        values[6] = Value::Int(s as i64);
                    }
                }
            },
        )
        .await
    }

    /// Writes one rule's columns (`fill` sets them in the row of eight
    /// values), then drops the row if it no longer says anything.
    async fn upsert(
        &self,
        scope: &Scope,
        update: &str,
        fill: impl FnOnce(&mut Vec<Value>),
    ) -> Result<(), LimitError> {
        let (kind, id, owner) = scope.columns();
        let mut values = vec![
            text(kind),
            text(id),
            owner.map_or(Value::Null, text),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Int(chrono::Utc::now().timestamp()),
        ];
        fill(&mut values);
        let statement = format!(
            "INSERT INTO lamina_limits (scope_kind, scope_id, owner, models, budget_tokens, \
             budget_period, budget_seconds, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (scope_kind, scope_id) DO UPDATE SET {update}, \
             owner = excluded.owner, updated_at = excluded.updated_at"
        );
        self.db
            .execute(&statement, values)
            .await
            .map_err(unavailable)?;
        self.db
            .execute(
                "DELETE FROM lamina_limits WHERE scope_kind = $1 AND scope_id = $2 \
                 AND models IS NULL AND budget_tokens IS NULL",
                vec![text(kind), text(id)],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// The rule of `scope`, if any.
    pub async fn get(&self, scope: &Scope) -> Result<Option<Rule>, LimitError> {
        scope.validate()?;
        let (kind, id, _) = scope.columns();
        Ok(self
            .select(
                "scope_kind = $1 AND scope_id = $2",
                vec![text(kind), text(id)],
            )
            .await?
            .into_iter()
            .next())
    }

    /// The rules that bind `caller`: their roles', their own and their API
    /// key's.
    pub async fn for_caller(&self, caller: &Caller) -> Result<Vec<Rule>, LimitError> {
        let mut params = vec![text(&caller.user_id)];
        let mut filter = "(scope_kind = 'user' AND scope_id = $1)".to_owned();
        if let Some(key) = &caller.api_key {
            params.push(text(key));
            filter.push_str(&format!(
                " OR (scope_kind = 'api-key' AND scope_id = ${})",
                params.len()
            ));
        }
        let roles = &caller.roles;
        if !roles.is_empty() {
            let first = params.len() + 1;
            let placeholders: Vec<String> = (first..first + roles.len())
                .map(|i| format!("${i}"))
                .collect();
            filter.push_str(&format!(
                " OR (scope_kind = 'role' AND scope_id IN ({}))",
                placeholders.join(", ")
            ));
            params.extend(roles.iter().map(|r| text(r)));
        }
        self.select(&filter, params).await
    }

    /// Removes a user's rules and their API keys'.
    pub async fn forget_user(&self, user: &str) -> Result<(), LimitError> {
        self.db
            .execute(
                "DELETE FROM lamina_limits WHERE (scope_kind = 'user' AND scope_id = $1) \
                 OR owner = $1",
                vec![text(user)],
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn select(&self, filter: &str, params: Vec<Value>) -> Result<Vec<Rule>, LimitError> {
        let rows = self
            .db
            .query(
                &format!(
                    "SELECT scope_kind, scope_id, owner, models, budget_tokens, budget_period, \
                     budget_seconds FROM lamina_limits WHERE {filter}"
                ),
                params,
            )
            .await
            .map_err(unavailable)?;
        Ok(rows.rows.into_iter().filter_map(rule).collect())
    }
}

/// A row as a rule; rows this host cannot read (written by a newer
/// version) are skipped.
fn rule(row: Vec<Value>) -> Option<Rule> {
    let text_at = |i: usize| match row.get(i) {
        Some(Value::Text(t)) => Some(t.clone()),
        _ => None,
    };
    let int_at = |i: usize| match row.get(i) {
        Some(Value::Int(n)) => Some(*n),
        _ => None,
    };
    let id = text_at(1)?;
    let scope = match text_at(0)?.as_str() {
        "role" => Scope::Role(id),
        "user" => Scope::User(id),
        "api-key" => Scope::ApiKey {
            id,
            owner: text_at(2)?,
        },
        _ => return None,
    };
    let models = match text_at(3) {
        Some(json) => Some(ModelList(serde_json::from_str(&json).ok()?)),
        None => None,
    };
    let budget = match (int_at(4), text_at(5)) {
        (Some(tokens), Some(period)) => Some(Budget {
            tokens: tokens.max(0) as u64,
            period: Period::from_parts(&period, int_at(6).map(|s| s.max(0) as u64))?,
        }),
        _ => None,
    };
    Some(Rule {
        scope,
        models,
        budget,
    })
}
