//! Model access and token budgets per role, user and API key: the host
//! side of the `limits` WIT interface, and what the `inference` capability
//! asks before it runs anything for a request's caller.
//!
//! Enforcement lives here, not in components, so every service that
//! generates text (the Ollama and OpenAI routes, conversations, whatever
//! comes next) applies the same rules without a line of its own: the
//! gateway's verified caller travels with the request into its instance
//! ([`Principal`]), and the inference calls that instance makes are
//! checked against that caller's [`Policy`].
//!
//! Rules live in the host database ([`rules`]); budget counters in the
//! host database or Redis ([`counters`]), one per scope and period
//! ([`period`]), reserved before a generation and settled when it ends.

pub mod counters;
pub mod period;
pub mod rules;

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use wasmtime::Result as WasmResult;

use self::counters::{Charge, Counters, CountersConfig};
use self::period::Period;
use self::rules::{Budget, ModelList, Rule, Rules, Scope};
use super::CapabilityView;
use super::bindings::lamina::platform::limits as wit;
use crate::breaker::BreakerConfig;
use crate::capabilities::sql::Database;
use crate::capabilities::tokens::{AuthMethod, Identity};

/// `[limits]` in runtime-config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// `[limits.counters]`: where budgets are counted.
    pub counters: CountersConfig,
}

/// Seconds a counter is kept past its period, for generations that began
/// in it and settle after it.
const SETTLE_GRACE: i64 = 24 * 3600;

/// Who a request's inference calls are made for.
#[derive(Debug, Clone, Default)]
pub enum Principal {
    /// No verified caller: queue handlers, anonymous routes. Unrestricted.
    #[default]
    Platform,
    /// The gateway's verified caller.
    Caller(Arc<Caller>),
    /// A reused instance (WASI 0.3 `instance_reuse`) may still be running
    /// one request's work while it serves the next, so it cannot tell whose
    /// call is whose; it may not run inference.
    Unattributable,
}

/// A verified caller, as the rules look them up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub user_id: String,
    pub roles: Vec<String>,
    /// The API key the request came with.
    pub api_key: Option<String>,
}

impl Caller {
    /// The caller a verified credential speaks for.
    pub fn of(identity: &Identity) -> Caller {
        Caller {
            user_id: identity.user_id.clone(),
            roles: identity.roles.clone(),
            api_key: identity
                .token_id
                .clone()
                .filter(|_| identity.method == AuthMethod::ApiKey),
        }
    }
}

/// Why a limits call failed.
#[derive(Debug)]
pub enum LimitError {
    Invalid(String),
    Unavailable(String),
}

impl std::fmt::Display for LimitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LimitError::Invalid(d) | LimitError::Unavailable(d) => f.write_str(d),
        }
    }
}

/// The model lists and budgets that bind one caller, read once per call.
pub struct Policy {
    /// `None`: every model.
    allowed: Option<ModelList>,
    /// The API key's own list, which narrows `allowed`.
    key: Option<ModelList>,
    /// `(scope, budget)` for the user's and the key's budgets.
    budgets: Vec<(Scope, Budget)>,
}

impl Policy {
    /// Combines `caller`'s rules: the union of their roles' lists (roles
    /// without one say nothing), replaced by their own list if set,
    /// narrowed by their key's.
    fn of(caller: &Caller, rules: Vec<Rule>) -> Policy {
        let (mut roles, mut user, mut key, mut budgets) = (None::<ModelList>, None, None, vec![]);
        for rule in rules {
            match &rule.scope {
                Scope::Role(_) => {
                    if let Some(list) = rule.models {
                        roles.get_or_insert_with(ModelList::empty).merge(list);
                    }
                }
                Scope::User(id) if *id == caller.user_id => user = rule.models,
                Scope::ApiKey { id, .. } if caller.api_key.as_ref() == Some(id) => {
                    key = rule.models
                }
                _ => continue,
            }
            if let Some(budget) = rule.budget
                && !matches!(rule.scope, Scope::Role(_))
            {
                budgets.push((rule.scope, budget));
            }
        }
        Policy {
            allowed: user.or(roles),
            key,
            budgets,
        }
    }

    /// Whether the caller may use `model` (canonical name).
    pub fn allows(&self, model: &str) -> bool {
        [&self.allowed, &self.key]
            .into_iter()
            .all(|list| list.as_ref().is_none_or(|l| l.allows(model)))
    }
}

/// A generation refused for a budget.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub scope: &'static str,
    pub limit: u64,
    pub remaining: u64,
    pub requested: u64,
    pub resets_at: i64,
}

/// Tokens held for a running generation. [`Reservation::settle`] charges
/// what it used; dropped unsettled, it gives everything back.
pub struct Reservation {
    counters: Arc<Counters>,
    keys: Vec<String>,
    held: u64,
    settled: bool,
}

impl Reservation {
    /// Charges `used` tokens and releases the rest of what was held (in
    /// the background: the generation's end is not delayed by it).
    pub fn settle(mut self, used: u64) {
        self.settled = true;
        let delta = used as i64 - self.held as i64;
        let (counters, keys) = (self.counters.clone(), std::mem::take(&mut self.keys));
        spawn_settle(counters, keys, delta);
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.settled {
            let keys = std::mem::take(&mut self.keys);
            spawn_settle(self.counters.clone(), keys, -(self.held as i64));
        }
    }
}

/// Attempts at settling a reservation before what it holds stays charged.
const SETTLE_ATTEMPTS: u32 = 6;

fn spawn_settle(counters: Arc<Counters>, keys: Vec<String>, delta: i64) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    runtime.spawn(async move {
        let mut wait = Duration::from_millis(200);
        for attempt in 1..=SETTLE_ATTEMPTS {
            match counters.settle(&keys, delta).await {
                Ok(()) => return,
                Err(e) if attempt == SETTLE_ATTEMPTS => {
                    // What the generation held and could not give back
                    // stays charged until its period ends.
                    tracing::warn!(delta, "could not settle a budget reservation: {e}");
                }
                Err(_) => {
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
    });
}

/// The rules and the counters.
pub struct Limits {
    rules: Rules,
    counters: Arc<Counters>,
}

impl Limits {
    /// Opens the rule table in `host` and the configured counters.
    pub async fn open(
        config: &LimitsConfig,
        host: &Database,
        breaker: BreakerConfig,
    ) -> anyhow::Result<Limits> {
        Ok(Limits {
            rules: Rules::open(host.clone()).await?,
            counters: Arc::new(Counters::open(&config.counters, host, breaker).await?),
        })
    }

    /// What binds `caller` now.
    pub async fn policy(&self, caller: &Caller) -> Result<Policy, LimitError> {
        Ok(Policy::of(caller, self.rules.for_caller(caller).await?))
    }

    /// Holds `amount` tokens against every budget of `policy`, or refuses
    /// with the first that cannot take it. `Ok(None)`: no budget applies.
    /// It runs as a task of its own: if the caller goes away meanwhile
    /// (its instance torn down), the hold is given back, never leaked.
    pub async fn reserve(
        self: &Arc<Self>,
        policy: Policy,
        amount: u64,
    ) -> Result<Result<Option<Reservation>, Refusal>, LimitError> {
        if policy.budgets.is_empty() {
            return Ok(Ok(None));
        }
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let limits = self.clone();
        tokio::spawn(async move {
            // A refused send drops the reservation, which releases it.
            let _ = sender.send(limits.try_reserve(&policy, amount).await);
        });
        match receiver.await {
            Ok(reserved) => reserved.map(|r| r.map(Some)),
            Err(_) => Err(LimitError::Unavailable("the reservation failed".into())),
        }
    }

    async fn try_reserve(
        &self,
        policy: &Policy,
        amount: u64,
    ) -> Result<Result<Reservation, Refusal>, LimitError> {
        let now = chrono::Utc::now().timestamp();
        let charges: Vec<Charge> = policy
            .budgets
            .iter()
            .map(|(scope, budget)| {
                let (start, end) = budget.period.around(now);
                Charge {
                    key: scope.counter_key(budget.period, start),
                    limit: budget.tokens,
                    expires_at: end + SETTLE_GRACE,
                }
            })
            .collect();
        match self
            .counters
            .reserve(&charges, amount)
            .await
            .map_err(LimitError::Unavailable)?
        {
            Ok(()) => Ok(Ok(Reservation {
                counters: self.counters.clone(),
                keys: charges.into_iter().map(|c| c.key).collect(),
                held: amount,
                settled: false,
            })),
            Err(i) => {
                let (scope, budget) = &policy.budgets[i];
                let used = self
                    .counters
                    .used(&charges[i].key)
                    .await
                    .map_err(LimitError::Unavailable)?;
                Ok(Err(Refusal {
                    scope: scope.kind(),
                    limit: budget.tokens,
                    remaining: budget.tokens.saturating_sub(used),
                    requested: amount,
                    resets_at: budget.period.around(now).1,
                }))
            }
        }
    }

    /// A budget and its current period.
    async fn status(&self, scope: &Scope, budget: Budget) -> Result<wit::BudgetStatus, LimitError> {
        let (start, end) = budget.period.around(chrono::Utc::now().timestamp());
        let used = self
            .counters
            .used(&scope.counter_key(budget.period, start))
            .await
            .map_err(LimitError::Unavailable)?;
        Ok(wit::BudgetStatus {
            budget: wit_budget(budget),
            used,
            period_start: start,
            resets_at: end,
        })
    }
}

impl Refusal {
    /// The refusal in words.
    pub fn detail(&self) -> String {
        let whose = if self.scope == "api-key" {
            "this API key's"
        } else {
            "your"
        };
        let resets = chrono::DateTime::from_timestamp(self.resets_at, 0)
            .map_or_else(|| self.resets_at.to_string(), |t| t.to_rfc3339());
        let advice = if self.requested > self.limit {
            "it can never fit: lower num_predict".to_owned()
        } else {
            format!("lower num_predict, or wait until {resets}")
        };
        format!(
            "{whose} token budget of {} has {} left in this period; this generation may use up \
             to {} (its prompt plus num_predict, or its whole context): {advice}",
            self.limit, self.remaining, self.requested
        )
    }
}

// ---- WIT host implementation -------------------------------------------

impl From<LimitError> for wit::Error {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Invalid(d) => wit::Error::Invalid(d),
            LimitError::Unavailable(d) => wit::Error::Unavailable(d),
        }
    }
}

fn scope(scope: wit::Scope) -> Scope {
    match scope {
        wit::Scope::Role(name) => Scope::Role(name),
        wit::Scope::User(id) => Scope::User(id),
        wit::Scope::ApiKey(key) => Scope::ApiKey {
            id: key.id,
            owner: key.owner,
        },
    }
}

fn budget(budget: wit::Budget) -> Result<Budget, LimitError> {
    let (name, seconds) = match budget.period {
        wit::Period::Day => ("day", None),
        wit::Period::Week => ("week", None),
        wit::Period::Month => ("month", None),
        wit::Period::Custom => ("custom", budget.seconds),
    };
    let period = Period::from_parts(name, seconds).ok_or_else(|| {
        LimitError::Invalid(format!(
            "a custom period needs `seconds` from 1 to {}",
            period::MAX_CUSTOM_SECONDS
        ))
    })?;
    Ok(Budget {
        tokens: budget.tokens,
        period,
    })
}

fn wit_budget(budget: Budget) -> wit::Budget {
    let (period, seconds) = match budget.period {
        Period::Day => (wit::Period::Day, None),
        Period::Week => (wit::Period::Week, None),
        Period::Month => (wit::Period::Month, None),
        Period::Custom(s) => (wit::Period::Custom, Some(s)),
    };
    wit::Budget {
        tokens: budget.tokens,
        period,
        seconds,
    }
}

impl CapabilityView<'_> {
    /// The limits, if this component may change them.
    fn managed_limits(&self) -> Result<Arc<Limits>, wit::Error> {
        if !self.ctx.grants.limits {
            return Err(wit::Error::AccessDenied(
                "model access and budgets need `limits = true` in spin.toml".into(),
            ));
        }
        Ok(self.ctx.shared.limits.clone())
    }
}

// Each call takes what it needs from `self` before its first await: the
// view holds the instance's resource table, which may not be shared
// across threads, so the future must not hold the view.
impl wit::Host for CapabilityView<'_> {
    async fn set_models(
        &mut self,
        target: wit::Scope,
        models: Option<Vec<String>>,
    ) -> WasmResult<Result<(), wit::Error>> {
        let limits = match self.managed_limits() {
            Ok(limits) => limits,
            Err(e) => return Ok(Err(e)),
        };
        let models = match models.map(ModelList::new).transpose() {
            Ok(models) => models,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(limits
            .rules
            .set_models(&scope(target), models)
            .await
            .map_err(Into::into))
    }

    async fn get_models(
        &mut self,
        target: wit::Scope,
    ) -> WasmResult<Result<Option<Vec<String>>, wit::Error>> {
        let limits = match self.managed_limits() {
            Ok(limits) => limits,
            Err(e) => return Ok(Err(e)),
        };
        Ok(limits
            .rules
            .get(&scope(target))
            .await
            .map(|rule| rule.and_then(|r| r.models).map(|m| m.names()))
            .map_err(Into::into))
    }

    async fn set_budget(
        &mut self,
        target: wit::Scope,
        value: Option<wit::Budget>,
    ) -> WasmResult<Result<(), wit::Error>> {
        let limits = match self.managed_limits() {
            Ok(limits) => limits,
            Err(e) => return Ok(Err(e)),
        };
        let value = match value.map(budget).transpose() {
            Ok(value) => value,
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(limits
            .rules
            .set_budget(&scope(target), value)
            .await
            .map_err(Into::into))
    }

    async fn get_budget(
        &mut self,
        target: wit::Scope,
    ) -> WasmResult<Result<Option<wit::BudgetStatus>, wit::Error>> {
        let limits = match self.managed_limits() {
            Ok(limits) => limits,
            Err(e) => return Ok(Err(e)),
        };
        let target = scope(target);
        let found = match limits.rules.get(&target).await {
            Ok(rule) => rule.and_then(|r| r.budget),
            Err(e) => return Ok(Err(e.into())),
        };
        Ok(match found {
            Some(budget) => limits
                .status(&target, budget)
                .await
                .map(Some)
                .map_err(Into::into),
            None => Ok(None),
        })
    }

    async fn forget_user(&mut self, user: String) -> WasmResult<Result<(), wit::Error>> {
        let limits = match self.managed_limits() {
            Ok(limits) => limits,
            Err(e) => return Ok(Err(e)),
        };
        Ok(limits.rules.forget_user(&user).await.map_err(Into::into))
    }

    async fn caller_budgets(
        &mut self,
    ) -> WasmResult<Result<Vec<(String, wit::BudgetStatus)>, wit::Error>> {
        let Principal::Caller(caller) = self.ctx.principal.clone() else {
            return Ok(Ok(Vec::new()));
        };
        let limits = self.ctx.shared.limits.clone();
        let policy = match limits.policy(&caller).await {
            Ok(policy) => policy,
            Err(e) => return Ok(Err(e.into())),
        };
        let mut statuses = Vec::new();
        for (target, budget) in &policy.budgets {
            match limits.status(target, *budget).await {
                Ok(status) => statuses.push((target.kind().to_owned(), status)),
                Err(e) => return Ok(Err(e.into())),
            }
        }
        Ok(Ok(statuses))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(roles: &[&str], key: Option<&str>) -> Caller {
        Caller {
            user_id: "u1".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            api_key: key.map(str::to_owned),
        }
    }

    fn models(scope: Scope, names: &[&str]) -> Rule {
        Rule {
            scope,
            models: Some(ModelList::new(names.iter().map(|n| n.to_string()).collect()).unwrap()),
            budget: None,
        }
    }

    #[test]
    fn roles_allow_the_union_a_user_list_replaces_them_a_key_narrows() {
        let role = |r: &str, names: &[&str]| models(Scope::Role(r.into()), names);
        let none = Policy::of(&caller(&["User"], None), vec![]);
        assert!(none.allows("anything:latest"));

        let policy = Policy::of(
            &caller(&["User", "Research"], None),
            vec![role("User", &["a:1"]), role("Research", &["b:1"])],
        );
        assert!(policy.allows("a:1") && policy.allows("b:1") && !policy.allows("c:1"));

        let own = models(Scope::User("u1".into()), &["c:1"]);
        let policy = Policy::of(&caller(&["User"], None), vec![role("User", &["a:1"]), own]);
        assert!(policy.allows("c:1") && !policy.allows("a:1"));

        let key = models(
            Scope::ApiKey {
                id: "k1".into(),
                owner: "u1".into(),
            },
            &["a:1", "z:1"],
        );
        let policy = Policy::of(
            &caller(&["User"], Some("k1")),
            vec![role("User", &["a:1", "b:1"]), key],
        );
        assert!(policy.allows("a:1") && !policy.allows("b:1") && !policy.allows("z:1"));

        let all = Policy::of(&caller(&["Admin"], None), vec![role("Admin", &["*"])]);
        assert!(all.allows("x:1"));
    }
}
