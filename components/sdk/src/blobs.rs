//! Files by key (`blobs = [...]` in spin.toml): components have no
//! filesystem, so uploads and other files go to a bucket the host keeps in
//! a directory or in its database.
//!
//! ```ignore
//! let bucket = lamina_sdk::blobs::Bucket::open("documents")?;
//! bucket.put("user-1/doc-1", &bytes)?;
//! ```

use crate::platform::blobs;

pub use blobs::{BlobInfo, Bucket, Error};

// A missing bucket is the deployment's fault (500); too large is the
// client's (413).
crate::api::capability_error!(Error, "blob store error", {
    NoSuchBucket => 500,
    AccessDenied => 500,
    Invalid => 400,
    TooLarge => 413,
    Unavailable => 503,
});
