//! Embeddings: one thread per loaded embedding model packs inputs into
//! batches (one sequence each, up to [`BATCH_TOKENS`] tokens), runs the
//! encoder, and returns mean-pooled, L2-normalized vectors.

use std::sync::Mutex;
use std::sync::mpsc::Receiver;

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::LlamaModel;
use tokio::sync::oneshot;

/// Most inputs in one encoder batch (sequences per context).
pub const MAX_BATCH_INPUTS: u32 = 16;
/// Tokens per encoder batch: attention over a batch is quadratic in it.
pub const BATCH_TOKENS: u32 = 1024;
/// Most inputs one call may embed.
pub const MAX_INPUTS: usize = 512;

/// Texts to embed and where the vectors go.
pub struct Job {
    pub inputs: Vec<String>,
    pub reply: oneshot::Sender<Result<Vec<Vec<f32>>, String>>,
}

/// Serves jobs until the sender is dropped. Each input is truncated to
/// `context` tokens (the model's trained length).
pub fn run(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    jobs: Receiver<Job>,
    context: u32,
    gate: &Mutex<()>,
) {
    let per_input = context.min(BATCH_TOKENS) as usize;
    while let Ok(job) = jobs.recv() {
        let result = embed_all(model, ctx, &job.inputs, per_input, gate);
        let _ = job.reply.send(result);
    }
}

fn embed_all(
    model: &LlamaModel,
    ctx: &mut LlamaContext<'_>,
    inputs: &[String],
    per_input: usize,
    gate: &Mutex<()>,
) -> Result<Vec<Vec<f32>>, String> {
    let mut tokenized = Vec::with_capacity(inputs.len());
    for input in inputs {
        let mut tokens = model.vocab().tokenize(input.as_bytes(), true, false);
        tokens.truncate(per_input);
        tokenized.push(tokens);
    }
    let mut vectors = Vec::with_capacity(inputs.len());
    let mut batch = LlamaBatch::new(BATCH_TOKENS as usize, 1);
    let mut start = 0;
    while start < tokenized.len() {
        // Greedily pack whole inputs into this batch.
        batch.clear();
        let mut end = start;
        let mut used = 0;
        while end < tokenized.len()
            && end - start < MAX_BATCH_INPUTS as usize
            && used + tokenized[end].len() <= BATCH_TOKENS as usize
        {
            let seq = (end - start) as i32;
            for (pos, token) in tokenized[end].iter().enumerate() {
                batch
                    .add(*token, pos as i32, &[seq], true)
                    .map_err(|e| e.to_string())?;
            }
            used += tokenized[end].len();
            end += 1;
        }
        ctx.clear_kv_cache();
        {
            let _turn = gate.lock().unwrap_or_else(|e| e.into_inner());
            ctx.decode(&mut batch)
                .map_err(|e| format!("encoding failed: {e}"))?;
        }
        for seq in 0..(end - start) {
            let pooled = ctx
                .embeddings_seq_ith(seq as i32)
                .map_err(|e| format!("no embedding: {e}"))?;
            vectors.push(normalize(pooled));
        }
        start = end;
    }
    Ok(vectors)
}

/// Scales `v` to unit length (a zero vector stays zero).
fn normalize(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm == 0.0 {
        v.to_vec()
    } else {
        v.iter().map(|x| x / norm).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn normalizes_to_unit_length() {
        let v = super::normalize(&[3.0, 4.0]);
        assert_eq!(v, vec![0.6, 0.8]);
        assert_eq!(super::normalize(&[0.0]), vec![0.0]);
    }
}
