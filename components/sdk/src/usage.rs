//! Token usage accounting, one implementation for every service that
//! generates or embeds: each call publishes one `usage.recorded` message
//! (who — user and credential — used how many tokens of which model, and
//! how a generation ended), which the outbox keeps. A component using it
//! needs `queues = ["usage.recorded"]`; a queue failure is logged, never
//! the caller's.
//!
//! [`drain`] reads a generation to its end and charges it even when the
//! client hangs up part-way; [`embed`] charges the tokens it embeds.

use serde_json::json;

use crate::Request;
use crate::api::{AuthMethod, Caller, now};
use crate::inference::{self, Chunk, Error, Generation, Stats};

/// The topic usage is published to.
pub const TOPIC: &str = "usage.recorded";

/// Publishes one call's usage, charged to the request's verified caller.
pub fn record(
    request: &Request,
    model: &str,
    prompt_tokens: u32,
    completion_tokens: u32,
    done_reason: Option<&str>,
) {
    let caller = Caller::of(request);
    publish(
        caller.as_ref().map(|c| c.user_id.as_str()),
        caller.as_ref().map(|c| c.token_id.as_str()),
        caller.as_ref().map(|c| match c.method {
            AuthMethod::ApiKey => "api-key",
            AuthMethod::Jwt => "session",
        }),
        model,
        prompt_tokens,
        completion_tokens,
        done_reason,
    );
}

/// [`record`] for work done on someone's behalf outside a request (a
/// queue job): charged to `user_id`, with the credential if known.
pub fn record_for(
    user_id: Option<&str>,
    credential_id: Option<&str>,
    model: &str,
    prompt_tokens: u32,
    completion_tokens: u32,
    done_reason: Option<&str>,
) {
    publish(
        user_id,
        credential_id,
        None,
        model,
        prompt_tokens,
        completion_tokens,
        done_reason,
    );
}

/// Publishes `usage.recorded`.
fn publish(
    user_id: Option<&str>,
    credential_id: Option<&str>,
    credential_type: Option<&str>,
    model: &str,
    prompt_tokens: u32,
    completion_tokens: u32,
    done_reason: Option<&str>,
) {
    let payload = json!({
        "userId": user_id,
        "credentialId": credential_id,
        "credentialType": credential_type,
        "model": model,
        "promptTokens": prompt_tokens,
        "completionTokens": completion_tokens,
        "doneReason": done_reason,
        "at": now(),
    });
    if let Err(e) = crate::queue::publish(TOPIC, payload.to_string().as_bytes()) {
        eprintln!("usage not recorded: {e:?}");
    }
}

/// Publishes a generation's usage from its statistics.
pub fn record_generation(request: &Request, model: &str, stats: &Stats) {
    record(
        request,
        model,
        stats.prompt_tokens,
        stats.completion_tokens,
        Some(inference::done_reason(stats.done_reason)),
    );
}

/// Reads a generation to its end, handing each piece of text to `text`
/// (which returns `false` once the client is gone: the generation is then
/// cancelled). The tokens it used are recorded as the caller's usage
/// either way, so a client cannot avoid them by hanging up. The
/// statistics, or `None` if cancelled.
pub fn drain(
    request: &Request,
    model: &str,
    generation: Generation,
    mut text: impl FnMut(&str) -> bool,
) -> Result<Option<Stats>, Error> {
    loop {
        match generation.next()? {
            Some(Chunk::Text(piece)) => {
                if !text(&piece) {
                    if let Some(stats) = generation.cancel() {
                        record_generation(request, model, &stats);
                    }
                    return Ok(None);
                }
            }
            Some(Chunk::Done(stats)) => {
                record_generation(request, model, &stats);
                return Ok(Some(stats));
            }
            None => return Ok(None),
        }
    }
}

/// Embeds `inputs` with `model` and records their tokens as the caller's
/// usage; returns the vectors and the token count.
pub fn embed(
    request: &Request,
    model: &str,
    inputs: &[String],
) -> Result<(Vec<Vec<f32>>, u32), Error> {
    let mut tokens = 0;
    for input in inputs {
        tokens += inference::count_tokens(model, input)?;
    }
    let vectors = inference::embed(model, inputs)?;
    record(request, model, tokens, 0, None);
    Ok((vectors, tokens))
}
