//! Model access lists and token budgets. The host enforces them on every
//! inference call a request makes (see [`crate::inference`]); a component
//! granted `limits = true` (the auth service) sets them, and any component
//! may show a caller their own budgets ([`caller_budgets`]).

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{ApiError, timestamp_secs};
use crate::platform::limits;
use crate::validate::Checks;

pub use limits::{
    ApiKeyScope, Budget, BudgetStatus, Error, Period, Scope, caller_budgets, forget_user,
    get_budget, get_models, set_budget, set_models,
};

// 403 without the grant, 400 for a bad rule, 503 when the rules or the
// counters cannot be reached.
crate::api::capability_error!(Error, "limits error", {
    AccessDenied => 403,
    Invalid => 400,
    Unavailable => 503,
});

/// Largest budget a body may set.
const MAX_TOKENS: u64 = 1 << 53;
/// Longest custom period: 366 days.
const MAX_CUSTOM_SECONDS: u64 = 366 * 86_400;

/// A budget as the API reads it: `{"tokens": 100000, "period": "day"}`;
/// `period` is `day`, `week`, `month` or `custom` with `seconds`.
#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetBody {
    pub tokens: u64,
    pub period: String,
    #[serde(default)]
    pub seconds: Option<u64>,
}

impl BudgetBody {
    /// The budget, or 400 naming every bad field.
    pub fn into_budget(self) -> Result<Budget, ApiError> {
        let mut checks = Checks::default();
        if !(1..=MAX_TOKENS).contains(&self.tokens) {
            checks.fail("tokens", format!("1 to {MAX_TOKENS}"));
        }
        let period = match self.period.as_str() {
            "day" => Period::Day,
            "week" => Period::Week,
            "month" => Period::Month,
            "custom" => Period::Custom,
            _ => {
                checks.fail("period", "day, week, month or custom");
                Period::Custom
            }
        };
        match (period, self.seconds) {
            (Period::Custom, None) => {
                checks.fail("seconds", "a custom period needs its length in seconds")
            }
            (Period::Custom, Some(s)) if !(1..=MAX_CUSTOM_SECONDS).contains(&s) => {
                checks.fail("seconds", format!("1 to {MAX_CUSTOM_SECONDS} (366 days)"))
            }
            (Period::Day | Period::Week | Period::Month, Some(_)) => {
                checks.fail("seconds", "only a custom period has a length")
            }
            _ => {}
        }
        checks.finish()?;
        Ok(Budget {
            tokens: self.tokens,
            period,
            seconds: self.seconds,
        })
    }
}

/// A budget's current period as JSON: the budget, what is used and left,
/// and when the period started and resets.
pub fn status_json(status: &BudgetStatus) -> Value {
    let period = match status.budget.period {
        Period::Day => "day",
        Period::Week => "week",
        Period::Month => "month",
        Period::Custom => "custom",
    };
    let mut body = json!({
        "tokens": status.budget.tokens,
        "period": period,
        "used": status.used,
        "remaining": status.budget.tokens.saturating_sub(status.used),
        "periodStart": timestamp_secs(status.period_start),
        "resetsAt": timestamp_secs(status.resets_at),
    });
    if let Some(seconds) = status.budget.seconds {
        body["seconds"] = json!(seconds);
    }
    body
}
