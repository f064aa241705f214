//! Removing what lives outside the database: a deleted document's vectors
//! and file, a collection's, a user's. Tried at once; if the vector index
//! or the blob store cannot be reached, a `knowledge.purge` job retries it
//! (retrieval only ever shows chunks that still have a row, so a vector
//! waiting to be purged is never seen).

use lamina_sdk::blobs::Bucket;
use lamina_sdk::queue;
use lamina_sdk::vectors::Index;
use serde::{Deserialize, Serialize};

use super::documents::{collection_prefix, user_prefix};
use super::{BUCKET, INDEX};

/// The job's topic.
pub const TOPIC: &str = "knowledge.purge";

/// Vector ids one job names at most (a queue message stays far below
/// the queue's payload limit).
const IDS_PER_JOB: usize = 5000;

/// What to remove.
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase", tag = "scope")]
enum Job {
    Vectors {
        user_id: String,
        ids: Vec<String>,
    },
    Blob {
        key: String,
    },
    Collection {
        user_id: String,
        collection_id: String,
    },
    User {
        user_id: String,
    },
}

/// A document's file and vectors.
pub fn document(user: &str, blob_key: &str, chunk_ids: Vec<String>) {
    now_or_later(Job::Blob {
        key: blob_key.to_owned(),
    });
    for ids in chunk_ids.chunks(IDS_PER_JOB) {
        now_or_later(Job::Vectors {
            user_id: user.to_owned(),
            ids: ids.to_vec(),
        });
    }
}

/// Vectors whose removal just failed: left to jobs.
pub fn vectors(user: &str, ids: Vec<String>) {
    for ids in ids.chunks(IDS_PER_JOB) {
        later(&Job::Vectors {
            user_id: user.to_owned(),
            ids: ids.to_vec(),
        });
    }
}

/// A collection's files and vectors.
pub fn collection(user: &str, collection: &str) {
    now_or_later(Job::Collection {
        user_id: user.to_owned(),
        collection_id: collection.to_owned(),
    });
}

/// All of a user's files and vectors.
pub fn user(user: &str) -> Result<(), String> {
    run(&Job::User {
        user_id: user.to_owned(),
    })
}

fn now_or_later(job: Job) {
    if let Err(e) = run(&job) {
        eprintln!("purge deferred: {e}");
        later(&job);
    }
}

fn later(job: &Job) {
    let payload = serde_json::to_vec(job).expect("jobs serialize");
    if let Err(e) = queue::publish(TOPIC, &payload) {
        eprintln!("purge job not queued: {e:?}");
    }
}

/// Runs a `knowledge.purge` job.
pub fn handle(payload: &[u8]) -> Result<(), String> {
    let job: Job = serde_json::from_slice(payload).map_err(|e| format!("bad purge job: {e}"))?;
    run(&job)
}

fn run(job: &Job) -> Result<(), String> {
    let index = || Index::open(INDEX).map_err(|e| format!("vector index: {e:?}"));
    let bucket = || Bucket::open(BUCKET).map_err(|e| format!("blob bucket: {e:?}"));
    let vectors = |e| format!("vector index: {e:?}");
    let blobs = |e| format!("blob bucket: {e:?}");
    match job {
        Job::Vectors { user_id, ids } => {
            let index = index()?;
            for ids in ids.chunks(1000) {
                index.delete(user_id, ids).map_err(vectors)?;
            }
        }
        Job::Blob { key } => {
            bucket()?.delete(key).map_err(blobs)?;
        }
        Job::Collection {
            user_id,
            collection_id,
        } => {
            index()?
                .delete_owner(user_id, Some(collection_id))
                .map_err(vectors)?;
            bucket()?
                .delete_prefix(&collection_prefix(user_id, collection_id))
                .map_err(blobs)?;
        }
        Job::User { user_id } => {
            index()?.delete_owner(user_id, None).map_err(vectors)?;
            bucket()?
                .delete_prefix(&user_prefix(user_id))
                .map_err(blobs)?;
        }
    }
    Ok(())
}
