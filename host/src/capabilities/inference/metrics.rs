//! Inference metrics (exported on the admin listener's `/metrics`).

use super::batcher::{DoneReason, Stats};

/// Records one finished sequence.
pub fn finished(stats: &Stats) {
    let reason = match stats.reason {
        DoneReason::Stop => "stop",
        DoneReason::Length => "length",
        DoneReason::Cancelled => "cancelled",
    };
    metrics::counter!("lamina_inference_generations_total", "done_reason" => reason).increment(1);
    metrics::counter!("lamina_inference_tokens_total", "kind" => "prompt")
        .increment(u64::from(stats.prompt_tokens));
    metrics::counter!("lamina_inference_tokens_total", "kind" => "completion")
        .increment(u64::from(stats.completion_tokens));
    metrics::histogram!("lamina_inference_time_to_first_token_seconds")
        .record((stats.total - stats.eval).as_secs_f64());
}

/// Records the number of models in memory.
pub fn loaded_models(count: usize) {
    metrics::gauge!("lamina_inference_loaded_models").set(count as f64);
}
