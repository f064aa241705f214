//! The inference API: Lamina as a drop-in Ollama server (`/api/...`) and
//! OpenAI-compatible endpoint (`/v1/...`), over the host's llama.cpp engine
//! (`lamina:platform/inference`). Every call is authenticated by the
//! gateway (spin.toml `auth = "required"`), rate-limited, and its token
//! usage published to `usage.recorded`.
//!
//! - [`ollama`]: generate, chat, embed(dings), tags, show, ps, version;
//! - [`openai`]: chat completions, completions, embeddings, models;
//! - [`wire`]: what both share (streaming loop, keep-alive, timestamps,
//!   usage records).

mod ollama;
mod openai;
mod wire;

use lamina_sdk::Request;
use wasip2::http::types::{IncomingRequest, ResponseOutparam};

/// Largest request body (prompts and message lists).
const BODY_LIMIT: usize = 8 << 20;

struct InferenceApi;

impl wasip2::exports::http::incoming_handler::Guest for InferenceApi {
    fn handle(request: IncomingRequest, out: ResponseOutparam) {
        let request = Request::new(request);
        let full = request.path_with_query();
        let path = full.split('?').next().unwrap_or_default().to_owned();
        if path.starts_with("/v1/") {
            openai::handle(&request, &path, out);
        } else {
            ollama::handle(&request, &path, out);
        }
    }
}

wasip2::http::proxy::export!(InferenceApi);
