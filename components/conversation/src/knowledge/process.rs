//! The processing job (`knowledge.process`, on whichever host takes it):
//! read the original from the blob store, extract its text, split it into
//! chunks counted with the embedding model's tokenizer, embed them in
//! batches, store the vectors, then swap the document's chunks in one
//! transaction. A job names the document's generation: reprocessing bumps
//! it, and a job for an older generation stops without writing, so chunks
//! are replaced, never added twice. Delivery is at-least-once; a repeat
//! writes the same ids again.

use std::collections::HashSet;

use lamina_sdk::api::{ApiError, now_ms};
use lamina_sdk::blobs::Bucket;
use lamina_sdk::inference;
use lamina_sdk::queue;
use lamina_sdk::sql::{Database, Sql, Value};
use lamina_sdk::vectors::{Index, Item};
use lamina_sdk::worker::Message;
use serde::{Deserialize, Serialize};

use super::chunk::{CharOffsets, Chunk, chunks};
use super::documents::{self, Document};
use super::extract::{Extracted, extract};
use super::sniff::Format;
use super::{BUCKET, INDEX, embedding_model};
use crate::DATABASE;

/// The job's topic.
pub const TOPIC: &str = "knowledge.process";
/// Tokens a chunk holds at most (MiniLM was trained on 256-token inputs).
pub const CHUNK_TOKENS: u32 = 200;
/// Tokens a chunk repeats from the one before.
pub const OVERLAP_TOKENS: u32 = 40;
/// Chunks embedded per call.
const EMBED_BATCH: usize = 64;
/// Values one chunk row binds.
const ROW_PARAMETERS: usize = 11;
/// Chunk rows per `INSERT`: within the host's 1 000 parameters a statement.
const INSERT_BATCH: usize = 1000 / ROW_PARAMETERS;
/// Most chunks one document may have: about 2 MB of text, which this
/// 2-core machine embeds in 8 minutes (21 chunks/s), inside the trigger's
/// 15-minute timeout.
pub const MAX_CHUNKS: usize = 10_000;
/// After this many attempts that ended without an answer (a trap, the
/// engine away), the document is marked failed instead of tried again.
const MAX_TRIES: u32 = 3;

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Job {
    document_id: String,
    user_id: String,
    generation: i64,
}

/// Queues processing of `document`'s `generation` (once per generation).
pub fn request(document: &str, user: &str, generation: i64) -> Result<(), ApiError> {
    let job = Job {
        document_id: document.to_owned(),
        user_id: user.to_owned(),
        generation,
    };
    let payload = serde_json::to_vec(&job).expect("jobs serialize");
    let key = format!("process:{document}:{generation}");
    queue::publish_with(TOPIC, &payload, Some(&key), None)
        .map(drop)
        .map_err(|e| ApiError::new(503, "cannot queue processing", format!("{e:?}")).retry_after(5))
}

/// Why a job stopped: for good (the document is marked failed) or for now
/// (the queue retries).
enum Stop {
    Failed(String),
    Retry(String),
}

impl From<lamina_sdk::sql::Error> for Stop {
    fn from(e: lamina_sdk::sql::Error) -> Stop {
        Stop::Retry(format!("database: {e:?}"))
    }
}

/// Runs one job.
pub fn handle(message: &Message) -> Result<(), String> {
    let job: Job = serde_json::from_slice(&message.payload).map_err(|e| format!("bad job: {e}"))?;
    let db = Database::open(DATABASE).map_err(|e| format!("{e:?}"))?;
    let current: Option<Document> = db
        .query_one(
            &format!(
                "SELECT {} FROM conv_documents WHERE id = $1 AND user_id = $2",
                documents::COLUMNS
            ),
            &[job.document_id.as_str().into(), job.user_id.as_str().into()],
        )
        .map_err(|e| format!("{e:?}"))?;
    let Some(document) = current.filter(|d| d.generation == job.generation && d.status != "ready")
    else {
        return Ok(()); // deleted, reprocessed since, or already done
    };
    if message.attempt > MAX_TRIES {
        // Attempts that were cut off may have stored vectors: their ids
        // are this generation's, whatever the count reached.
        let ids = (0..MAX_CHUNKS)
            .map(|i| format!("{}:{}:{i}", job.document_id, job.generation))
            .collect();
        super::purge::vectors(&job.user_id, ids);
        return fail(
            &db,
            &job,
            "processing stopped several times without finishing",
        );
    }
    set_status(&db, &job, "processing", None)?;
    let started = now_ms();
    match run(&db, &document, &job) {
        Ok(()) => {
            db.execute(
                "UPDATE conv_documents SET processing_ms = $1 WHERE id = $2 AND generation = $3",
                &[
                    (now_ms() - started).into(),
                    job.document_id.as_str().into(),
                    job.generation.into(),
                ],
            )
            .map_err(|e| format!("{e:?}"))?;
            Ok(())
        }
        Err(Stop::Failed(reason)) => fail(&db, &job, &reason),
        Err(Stop::Retry(reason)) if message.attempt >= MAX_TRIES => fail(&db, &job, &reason),
        Err(Stop::Retry(reason)) => Err(reason),
    }
}

fn set_status(db: &Database, job: &Job, status: &str, error: Option<&str>) -> Result<(), String> {
    db.execute(
        "UPDATE conv_documents SET status = $1, error = $2, updated_at = $3 \
         WHERE id = $4 AND generation = $5",
        &[
            status.into(),
            error.into(),
            now_ms().into(),
            job.document_id.as_str().into(),
            job.generation.into(),
        ],
    )
    .map(drop)
    .map_err(|e| format!("{e:?}"))
}

fn fail(db: &Database, job: &Job, reason: &str) -> Result<(), String> {
    eprintln!("document {} failed: {reason}", job.document_id);
    let reason: String = reason.chars().take(1000).collect();
    set_status(db, job, "failed", Some(&reason))
}

fn run(db: &Database, document: &Document, job: &Job) -> Result<(), Stop> {
    let bytes = Bucket::open(BUCKET)
        .and_then(|b| b.get(&document.blob_key()))
        .map_err(|e| Stop::Retry(format!("blob store: {e:?}")))?
        .ok_or_else(|| Stop::Failed("the uploaded file is gone".into()))?;
    let format = Format::parse(&document.format)
        .ok_or_else(|| Stop::Failed(format!("unknown format {}", document.format)))?;
    let extracted = extract(format, &bytes).map_err(Stop::Failed)?;
    drop(bytes);
    let model = embedding_model();
    let mut count = |text: &str| inference::count_tokens(&model, text).map_err(engine);
    let pieces = chunks(&extracted, CHUNK_TOKENS, OVERLAP_TOKENS, &mut count)?;
    if pieces.len() > MAX_CHUNKS {
        return Err(Stop::Failed(format!(
            "{} chunks; a document may have at most {MAX_CHUNKS}",
            pieces.len()
        )));
    }
    let ids: Vec<String> = (0..pieces.len())
        .map(|i| format!("{}:{}:{i}", document.id, job.generation))
        .collect();
    let index = Index::open(INDEX).map_err(|e| Stop::Retry(format!("vector index: {e:?}")))?;
    let old = documents::chunk_ids(db, &document.id).map_err(|e| Stop::Retry(e.detail))?;
    let stored = embed_and_store(db, document, job, &extracted, &pieces, &ids, &index, &model);
    let stale: Vec<String> = match stored {
        Ok(true) => {
            let current: HashSet<&String> = ids.iter().collect();
            old.into_iter().filter(|id| !current.contains(id)).collect()
        }
        // Reprocessed or deleted meanwhile, or failed: this run's vectors go.
        Ok(false) | Err(_) => ids,
    };
    if let Err(e) = delete_vectors(&index, &job.user_id, &stale) {
        eprintln!(
            "stale vectors of document {} left for a purge job: {e}",
            document.id
        );
        super::purge::vectors(&job.user_id, stale);
    }
    stored.map(drop)
}

fn delete_vectors(index: &Index, user: &str, ids: &[String]) -> Result<(), String> {
    for batch in ids.chunks(1000) {
        index.delete(user, batch).map_err(|e| format!("{e:?}"))?;
    }
    Ok(())
}

/// Embeds the chunks into the index and swaps them in; whether this job's
/// generation was still the document's.
#[allow(clippy::too_many_arguments)]
fn embed_and_store(
    db: &Database,
    document: &Document,
    job: &Job,
    extracted: &Extracted,
    pieces: &[Chunk],
    ids: &[String],
    index: &Index,
    model: &str,
) -> Result<bool, Stop> {
    for (batch, batch_ids) in pieces.chunks(EMBED_BATCH).zip(ids.chunks(EMBED_BATCH)) {
        let texts: Vec<String> = batch
            .iter()
            .map(|c| extracted.text[c.start..c.end].to_owned())
            .collect();
        let vectors = inference::embed(model, &texts).map_err(engine)?;
        let items: Vec<Item> = batch_ids
            .iter()
            .zip(vectors)
            .map(|(id, vector)| Item {
                id: id.clone(),
                vector,
                metadata: None,
            })
            .collect();
        index
            .upsert(&job.user_id, &document.collection_id, &items)
            .map_err(|e| Stop::Retry(format!("vector index: {e:?}")))?;
    }
    Ok(db.transaction(|tx| {
        store(
            tx,
            document,
            job,
            &extracted.text,
            pieces,
            ids,
            extracted.pages,
        )
    })?)
}

/// Replaces the document's chunks and marks it ready, if `job` is still
/// its generation; returns whether it was.
fn store(
    tx: &impl Sql,
    document: &Document,
    job: &Job,
    text: &str,
    pieces: &[Chunk],
    ids: &[String],
    pages: Option<u32>,
) -> Result<bool, lamina_sdk::sql::Error> {
    let updated = tx.execute(
        "UPDATE conv_documents SET status = 'ready', error = NULL, pages = $1, characters = $2, \
         chunk_count = $3, updated_at = $4 WHERE id = $5 AND generation = $6",
        &[
            pages.map(i64::from).into(),
            (text.chars().count() as i64).into(),
            (pieces.len() as i64).into(),
            now_ms().into(),
            document.id.as_str().into(),
            job.generation.into(),
        ],
    )?;
    if updated == 0 {
        return Ok(false);
    }
    tx.execute(
        "DELETE FROM conv_chunks WHERE document_id = $1",
        &[document.id.as_str().into()],
    )?;
    let mut starts = CharOffsets::new(text);
    let mut ends = CharOffsets::new(text);
    let rows: Vec<(usize, &Chunk)> = pieces.iter().enumerate().collect();
    for batch in rows.chunks(INSERT_BATCH) {
        let mut params: Vec<Value> = Vec::with_capacity(batch.len() * ROW_PARAMETERS);
        let mut tuples = Vec::with_capacity(batch.len());
        for (i, chunk) in batch {
            let n = params.len();
            tuples.push(format!(
                "(${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${})",
                n + 1,
                n + 2,
                n + 3,
                n + 4,
                n + 5,
                n + 6,
                n + 7,
                n + 8,
                n + 9,
                n + 10,
                n + 11
            ));
            params.extend([
                ids[*i].as_str().into(),
                document.id.as_str().into(),
                document.collection_id.as_str().into(),
                job.user_id.as_str().into(),
                (*i as i64).into(),
                text[chunk.start..chunk.end].into(),
                (starts.at(chunk.start) as i64).into(),
                (ends.at(chunk.end) as i64).into(),
                chunk.page.map(i64::from).into(),
                chunk.heading.as_deref().into(),
                i64::from(chunk.tokens).into(),
            ]);
        }
        tx.execute(
            &format!(
                "INSERT INTO conv_chunks (id, document_id, collection_id, user_id, idx, content, \
                 start_offset, end_offset, page, heading, tokens) VALUES {}",
                tuples.join(", ")
            ),
            &params,
        )?;
    }
    Ok(true)
}

/// An engine error: a missing embedding model or a text it refuses is
/// for good, the rest is worth retrying.
fn engine(e: inference::Error) -> Stop {
    match e {
        inference::Error::NoSuchModel(detail) | inference::Error::AccessDenied(detail) => {
            Stop::Failed(format!("the embedding model cannot be used: {detail}"))
        }
        inference::Error::Invalid(detail) => {
            Stop::Failed(format!("the text was refused: {detail}"))
        }
        other => Stop::Retry(format!("inference: {}", other.detail())),
    }
}
