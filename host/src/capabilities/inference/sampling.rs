//! Sampling options as Ollama names them: validated once when a request
//! arrives (a bad value is the caller's error, never an engine failure),
//! then turned into a llama.cpp sampler chain for one sequence.

use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;

use super::InferenceError;

/// Most stop strings one request may give.
pub const MAX_STOP_STRINGS: usize = 16;
/// Longest stop string, in bytes.
pub const MAX_STOP_LEN: usize = 256;

/// Validated sampling options with Ollama's defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f32,
    /// 0 = off.
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    /// 1 = off.
    pub repeat_penalty: f32,
    /// Tokens the penalties look back on; -1 = the whole context.
    pub repeat_last_n: i32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// `None`: a fresh random seed per request.
    pub seed: Option<u32>,
    /// A GBNF grammar the output must follow (from `format`).
    pub grammar: Option<String>,
}

/// Largest JSON Schema `format` accepts.
pub const MAX_FORMAT_BYTES: usize = 64 << 10;

/// The GBNF grammar for a `format`: `"json"` is any JSON object, anything
/// else must be a JSON Schema (llama.cpp converts it).
fn grammar_for(format: &str) -> Result<String, String> {
    let schema = if format == "json" {
        r#"{"type": "object"}"#
    } else {
        format
    };
    if schema.len() > MAX_FORMAT_BYTES {
        return Err(format!("format may be at most {MAX_FORMAT_BYTES} bytes"));
    }
    match serde_json::from_str::<serde_json::Value>(schema) {
        Ok(serde_json::Value::Object(_)) => {}
        _ => return Err("format must be \"json\" or a JSON Schema object".to_owned()),
    }
    llama_cpp_2::json_schema_to_grammar(schema)
        .map_err(|e| format!("format is not a JSON Schema llama.cpp supports: {e}"))
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.9,
            min_p: 0.0,
            repeat_penalty: 1.1,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
            grammar: None,
        }
    }
}

/// Everything a request may set, before validation (the WIT `options`
/// record, or the CLI's flags).
#[derive(Debug, Clone, Default)]
pub struct RawOptions {
    pub temperature: Option<f32>,
    pub top_k: Option<i32>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<i32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<u32>,
    pub num_predict: Option<i32>,
    pub stop: Vec<String>,
    pub num_ctx: Option<u32>,
    pub keep_alive: Option<i64>,
    /// `"json"` (a JSON object) or a JSON Schema, as JSON text.
    pub format: Option<String>,
}

/// A request's validated options.
#[derive(Debug, Clone)]
pub struct Options {
    pub sampling: Sampling,
    /// Most tokens to generate; `None` = until the context is full.
    pub num_predict: Option<u32>,
    pub stop: Vec<String>,
    /// Context window for this request; `None` = the engine's.
    pub num_ctx: Option<u32>,
    /// `None` = the configured default.
    pub keep_alive: Option<KeepAlive>,
}

/// How long a model stays loaded after a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepAlive {
    /// Until the host stops (a negative `keep_alive`).
    Forever,
    /// This long once idle (0: unload as soon as idle).
    For(std::time::Duration),
}

impl RawOptions {
    /// Checks every value against its range; the error names each bad
    /// option so a service can answer 400 with all of them.
    pub fn validate(self) -> Result<Options, InferenceError> {
        let mut problems = Vec::new();
        let defaults = Sampling::default();
        let mut float =
            |name: &str, value: Option<f32>, min: f32, max: f32, default: f32| match value {
                None => default,
                Some(v) if v.is_finite() && (min..=max).contains(&v) => v,
                Some(v) => {
                    problems.push(format!("{name} must be between {min} and {max} (got {v})"));
                    default
                }
            };
        let temperature = float(
            "temperature",
            self.temperature,
            0.0,
            2.0,
            defaults.temperature,
        );
        let top_p = float("top_p", self.top_p, 0.0, 1.0, defaults.top_p);
        let min_p = float("min_p", self.min_p, 0.0, 1.0, defaults.min_p);
        let repeat_penalty = float(
            "repeat_penalty",
            self.repeat_penalty,
            0.0,
            2.0,
            defaults.repeat_penalty,
        );
        let presence_penalty = float(
            "presence_penalty",
            self.presence_penalty,
            -2.0,
            2.0,
            defaults.presence_penalty,
        );
        let frequency_penalty = float(
            "frequency_penalty",
            self.frequency_penalty,
            -2.0,
            2.0,
            defaults.frequency_penalty,
        );
        let top_k = match self.top_k {
            None => defaults.top_k,
            Some(k) if (0..=1000).contains(&k) => k,
            Some(k) => {
                problems.push(format!("top_k must be between 0 and 1000 (got {k})"));
                defaults.top_k
            }
        };
        let repeat_last_n = match self.repeat_last_n {
            None => defaults.repeat_last_n,
            Some(n) if n >= -1 => n,
            Some(n) => {
                problems.push(format!("repeat_last_n must be -1 or more (got {n})"));
                defaults.repeat_last_n
            }
        };
        let num_predict = match self.num_predict {
            None | Some(-1) | Some(-2) => None,
            Some(n) if n >= 0 => Some(n as u32),
            Some(n) => {
                problems.push(format!("num_predict must be -1 or more (got {n})"));
                None
            }
        };
        if self.stop.len() > MAX_STOP_STRINGS {
            problems.push(format!(
                "at most {MAX_STOP_STRINGS} stop strings (got {})",
                self.stop.len()
            ));
        }
        if self
            .stop
            .iter()
            .any(|s| s.is_empty() || s.len() > MAX_STOP_LEN)
        {
            problems.push(format!(
                "stop strings must be 1 to {MAX_STOP_LEN} bytes long"
            ));
        }
        if self.num_ctx == Some(0) {
            problems.push("num_ctx must be at least 1".to_owned());
        }
        let keep_alive = self.keep_alive.map(|seconds| match u64::try_from(seconds) {
            Ok(seconds) => KeepAlive::For(std::time::Duration::from_secs(seconds)),
            Err(_) => KeepAlive::Forever,
        });
        let grammar = match self.format.as_deref().map(grammar_for) {
            None => None,
            Some(Ok(grammar)) => Some(grammar),
            Some(Err(problem)) => {
                problems.push(problem);
                None
            }
        };
        if !problems.is_empty() {
            return Err(InferenceError::Invalid(problems.join("; ")));
        }
        Ok(Options {
            sampling: Sampling {
                temperature,
                top_k,
                top_p,
                min_p,
                repeat_penalty,
                repeat_last_n,
                presence_penalty,
                frequency_penalty,
                seed: self.seed,
                grammar,
            },
            num_predict,
            stop: self.stop,
            num_ctx: self.num_ctx,
            keep_alive,
        })
    }
}

impl Sampling {
    /// The llama.cpp sampler chain: penalties, then greedy when the
    /// temperature is 0, else top-k → top-p → min-p → temperature → a
    /// seeded draw (Ollama's order). `context` resolves `repeat_last_n = -1`.
    /// The grammar sampler, if `format` asked for one. It is kept apart
    /// from [`Sampling::sampler`]: the prompt must not be fed to it.
    pub fn grammar_sampler(&self, model: &LlamaModel) -> Result<Option<LlamaSampler>, String> {
        self.grammar
            .as_deref()
            .map(|gbnf| {
                LlamaSampler::grammar(model, gbnf, "root")
                    .map_err(|e| format!("the output format cannot be used: {e}"))
            })
            .transpose()
    }

    pub fn sampler(&self, n_vocab: i32, context: u32) -> LlamaSampler {
        let mut chain = Vec::new();
        let penalties = self.repeat_penalty != 1.0
            || self.presence_penalty != 0.0
            || self.frequency_penalty != 0.0;
        if penalties && self.repeat_last_n != 0 {
            // llama.cpp allocates a window of this many tokens: never
            // more than the context.
            let context = i32::try_from(context).unwrap_or(i32::MAX);
            let last_n = if self.repeat_last_n < 0 {
                context
            } else {
                self.repeat_last_n.min(context)
            };
            chain.push(LlamaSampler::penalties(
                n_vocab,
                last_n,
                self.repeat_penalty,
                self.frequency_penalty,
                self.presence_penalty,
            ));
        }
        if self.temperature <= 0.0 {
            chain.push(LlamaSampler::greedy());
        } else {
            if self.top_k > 0 {
                chain.push(LlamaSampler::top_k(self.top_k));
            }
            if self.top_p < 1.0 {
                chain.push(LlamaSampler::top_p(self.top_p, 1));
            }
            if self.min_p > 0.0 {
                chain.push(LlamaSampler::min_p(self.min_p, 1));
            }
            chain.push(LlamaSampler::temp(self.temperature));
            chain.push(LlamaSampler::dist(self.seed.unwrap_or_else(rand_seed)));
        }
        LlamaSampler::chain_simple(chain)
    }
}

/// A seed for requests that did not fix one.
fn rand_seed() -> u32 {
    let mut bytes = [0u8; 4];
    getrandom::fill(&mut bytes).expect("the OS random source is available");
    u32::from_le_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_follow_ollama() {
        let options = RawOptions::default().validate().unwrap();
        assert_eq!(options.sampling, Sampling::default());
        assert_eq!(options.num_predict, None);
        assert_eq!(options.keep_alive, None);
    }

    #[test]
    fn every_bad_value_is_named() {
        let err = RawOptions {
            temperature: Some(5.0),
            top_p: Some(f32::NAN),
            top_k: Some(-3),
            num_predict: Some(-7),
            stop: vec![String::new()],
            num_ctx: Some(0),
            ..RawOptions::default()
        }
        .validate()
        .unwrap_err()
        .to_string();
        for name in [
            "temperature",
            "top_p",
            "top_k",
            "num_predict",
            "stop",
            "num_ctx",
        ] {
            assert!(err.contains(name), "{name} missing from {err}");
        }
    }

    #[test]
    fn keep_alive_negative_means_forever() {
        let options = RawOptions {
            keep_alive: Some(-1),
            ..RawOptions::default()
        };
        assert_eq!(
            options.validate().unwrap().keep_alive,
            Some(KeepAlive::Forever)
        );
    }
}
