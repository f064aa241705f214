//! Similarity search over embeddings, in the host (`vector_indexes = [...]`
//! in spin.toml): upsert a user's vectors into a collection, query the
//! top k of one owner's collections.
//!
//! ```ignore
//! let index = lamina_sdk::vectors::Index::open("documents")?;
//! index.upsert(user, "collection-1", &[Item { id, vector, metadata: None }])?;
//! let hits = index.query(user, &["collection-1".into()], &query, 3, Some(0.2))?;
//! ```

use crate::platform::vectors;

pub use vectors::{Error, Hit, Index, Item};

crate::api::capability_error!(Error, "vector index error", {
    NoSuchIndex => 500,
    AccessDenied => 500,
    Invalid => 400,
    Unavailable => 503,
});
