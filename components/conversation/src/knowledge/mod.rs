//! Knowledge: documents a user uploads, and the answers that draw on them
//! with citations (retrieval-augmented chat).
//!
//! | routes | module |
//! | --- | --- |
//! | `/api/knowledge[/{id}]` | [`collections`] |
//! | `POST /api/knowledge/{id}/documents`, `/api/conversations/{id}/documents` | [`upload`] |
//! | `/api/knowledge/{id}/documents[/{docId}[/content\|/reprocess\|/chunks[/{index}]]]` | [`documents`] |
//! | `POST /api/knowledge/search` | [`retrieve`] |
//! | `/api/conversations/{id}/knowledge` | [`attach`] |
//!
//! An upload is stored in the `default` blob bucket and processed by a
//! `knowledge.process` job ([`process`]: [`extract`], [`chunk`], embed);
//! chunk rows live in this service's database (with full-text search),
//! their vectors in the host's `default` vector index under the user as
//! owner and the collection as collection. Chat ([`crate::chat`]) asks
//! [`attach::sources_for`] for the question's sources.

pub mod attach;
pub mod chunk;
pub mod collections;
pub mod documents;
pub mod extract;
pub mod process;
pub mod purge;
pub mod retrieve;
pub mod sniff;
pub mod upload;

use lamina_sdk::variables;

/// The blob bucket originals are kept in (granted in spin.toml).
pub const BUCKET: &str = "default";
/// The vector index chunks are searched in (granted in spin.toml).
pub const INDEX: &str = "default";
/// Largest upload when the `knowledge_max_file_size` variable is unset.
const DEFAULT_MAX_FILE_SIZE: usize = 10 << 20;

/// The model chunks and questions are embedded with (`embedding_model`).
pub fn embedding_model() -> String {
    variables::get("embedding_model").unwrap_or_else(|_| "all-minilm:l6-v2".into())
}

/// Largest document, in bytes (`knowledge_max_file_size`).
pub fn max_file_size() -> usize {
    variables::get("knowledge_max_file_size")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_MAX_FILE_SIZE)
}
