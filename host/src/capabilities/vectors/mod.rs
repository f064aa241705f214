//! The `vectors` capability: top-k similarity search over embeddings in
//! the host, where a component could not hold them (100 000 × 384 floats
//! is ~150 MB). Vectors live in the host database (`lamina_vectors`) and
//! are searched by a scan of the caller's own rows; every vector has an
//! owner and every query names one, so a search never crosses users.

mod similarity;
mod table;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use serde::Deserialize;
use wasmtime::component::Resource;

use super::CapabilityView;
use super::bindings::lamina::platform::vectors as wit;
use super::sql::Database;

/// Longest id, owner or collection name.
const MAX_NAME_BYTES: usize = 256;
/// Largest dimension.
const MAX_DIM: usize = 4096;
/// Most items per upsert, ids per delete.
const MAX_ITEMS: usize = 1000;
/// Most collections one query names (each is its own scan).
const MAX_COLLECTIONS: usize = 32;
/// Largest `top-k`.
const MAX_TOP_K: u32 = 100;

/// `[vector_indexes.<name>]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum IndexConfig {
    /// Rows in the host database, searched by a scan in the host.
    Sql(SqlIndexConfig),
}

/// `type = "sql"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlIndexConfig {
    /// Most vectors one query may scan (the caller's, in the collections it
    /// names); a query that reaches it is refused (after that many rows),
    /// so no query scans more.
    #[serde(default = "default_max_scan")]
    pub max_scan: usize,
}

fn default_max_scan() -> usize {
    200_000
}

/// A guest's handle on a granted index.
#[derive(Clone)]
pub struct Index {
    name: String,
    table: table::Table,
    max_scan: usize,
    /// The index's dimension once known: it never changes, so it is read
    /// from the database once.
    dimension: Arc<OnceLock<usize>>,
}

/// The configured indexes by name.
#[derive(Clone, Default)]
pub struct Indexes {
    by_name: BTreeMap<String, Index>,
}

impl Indexes {
    /// Builds every configured index; `default` always exists.
    pub async fn open(
        configs: &BTreeMap<String, IndexConfig>,
        host: &Database,
    ) -> anyhow::Result<Indexes> {
        let implicit = (!configs.contains_key("default")).then(|| {
            (
                "default".to_owned(),
                IndexConfig::Sql(SqlIndexConfig {
                    max_scan: default_max_scan(),
                }),
            )
        });
        let mut by_name = BTreeMap::new();
        for (name, config) in configs.clone().into_iter().chain(implicit) {
            let IndexConfig::Sql(c) = config;
            let table = table::Table::open(host.clone(), &name).await?;
            tracing::info!(index = %name, backend = "sql", "vector index ready");
            by_name.insert(
                name.clone(),
                Index {
                    name,
                    table,
                    max_scan: c.max_scan,
                    dimension: Arc::default(),
                },
            );
        }
        Ok(Indexes { by_name })
    }

    /// Names of the configured indexes.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

fn invalid(detail: impl Into<String>) -> wit::Error {
    wit::Error::Invalid(detail.into())
}

fn check_name(what: &str, name: &str) -> Result<(), wit::Error> {
    if name.is_empty() || name.len() > MAX_NAME_BYTES || name.contains('\0') {
        return Err(invalid(format!(
            "{what} must be 1 to {MAX_NAME_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

impl Index {
    fn fail(&self, op: &'static str, error: table::TableError) -> wit::Error {
        match error {
            table::TableError::Unavailable(detail) => {
                tracing::warn!(index = %self.name, op, "vector index unavailable: {detail}");
                metrics::counter!("lamina_vectors_unavailable_total", "index" => self.name.clone(), "op" => op)
                    .increment(1);
                wit::Error::Unavailable(detail)
            }
            table::TableError::Invalid(detail) => wit::Error::Invalid(detail),
        }
    }

    /// A vector's dimension must be the index's. Storing fixes it (the
    /// first writer wins); a query of an index with none finds nothing.
    async fn check_dimension(&self, dim: usize, storing: bool) -> Result<bool, wit::Error> {
        let fixed = match self.dimension.get() {
            Some(&known) => Ok(Some(known)),
            None if storing => self.table.claim_dimension(dim).await.map(Some),
            None => self.table.dimension().await,
        };
        if let Ok(Some(known)) = fixed {
            let _ = self.dimension.set(known);
        }
        match fixed.map_err(|e| self.fail("dimension", e))? {
            Some(stored) if stored != dim => Err(invalid(format!(
                "vectors in index `{}` have {stored} dimensions, not {dim}",
                self.name
            ))),
            fixed => Ok(fixed.is_some()),
        }
    }

    async fn upsert(
        &self,
        owner: &str,
        collection: &str,
        items: Vec<wit::Item>,
    ) -> Result<(), wit::Error> {
        check_name("owner", owner)?;
        check_name("collection", collection)?;
        if items.is_empty() || items.len() > MAX_ITEMS {
            return Err(invalid(format!("an upsert holds 1 to {MAX_ITEMS} items")));
        }
        let dim = items[0].vector.len();
        if dim == 0 || dim > MAX_DIM {
            return Err(invalid(format!("a vector has 1 to {MAX_DIM} dimensions")));
        }
        let mut rows: Vec<table::Row> = Vec::with_capacity(items.len());
        let mut positions: HashMap<String, usize> = HashMap::new();
        for (i, item) in items.into_iter().enumerate() {
            check_name("id", &item.id)?;
            if item.metadata.as_deref().is_some_and(|m| m.contains('\0')) {
                return Err(invalid(format!("item {i}: metadata must not hold NUL")));
            }
            if item.vector.len() != dim {
                return Err(invalid(format!(
                    "item {i} has {} dimensions, item 0 has {dim}",
                    item.vector.len()
                )));
            }
            let Some(vector) = similarity::normalized(&item.vector) else {
                return Err(invalid(format!(
                    "item {i}: a vector must be finite and not zero"
                )));
            };
            let row = table::Row {
                id: item.id,
                vector,
                metadata: item.metadata,
            };
            // One id twice in an upsert: the last one wins (on every database).
            match positions.get(&row.id) {
                Some(&at) => rows[at] = row,
                None => {
                    positions.insert(row.id.clone(), rows.len());
                    rows.push(row);
                }
            }
        }
        self.check_dimension(dim, true).await?;
        let count = rows.len() as u64;
        self.table
            .upsert(owner, collection, rows)
            .await
            .map_err(|e| self.fail("upsert", e))?;
        metrics::counter!("lamina_vectors_upserted_total", "index" => self.name.clone())
            .increment(count);
        Ok(())
    }

    async fn query(
        &self,
        owner: &str,
        collections: &[String],
        vector: &[f32],
        top_k: u32,
        min_score: Option<f32>,
    ) -> Result<Vec<wit::Hit>, wit::Error> {
        check_name("owner", owner)?;
        if collections.is_empty() || collections.len() > MAX_COLLECTIONS {
            return Err(invalid(format!(
                "a query names 1 to {MAX_COLLECTIONS} collections"
            )));
        }
        if min_score.is_some_and(|m| !(-1.0..=1.0).contains(&m)) {
            return Err(invalid("min-score is -1 to 1"));
        }
        for collection in collections {
            check_name("collection", collection)?;
        }
        if !(1..=MAX_TOP_K).contains(&top_k) {
            return Err(invalid(format!("top-k is 1 to {MAX_TOP_K}")));
        }
        let Some(query) = similarity::normalized(vector).filter(|v| v.len() <= MAX_DIM) else {
            return Err(invalid(
                "the query vector must be finite, not zero, and not too long",
            ));
        };
        if !self.check_dimension(query.len(), false).await? {
            return Ok(Vec::new()); // nothing was ever stored
        }
        let started = Instant::now();
        let (found, scanned) = self
            .table
            .search(
                owner,
                collections,
                &query,
                top_k as usize,
                min_score.unwrap_or(-1.0),
                self.max_scan,
            )
            .await
            .map_err(|e| self.fail("query", e))?;
        metrics::histogram!("lamina_vectors_query_duration_seconds", "index" => self.name.clone())
            .record(started.elapsed().as_secs_f64());
        metrics::counter!("lamina_vectors_scanned_total", "index" => self.name.clone())
            .increment(scanned as u64);
        Ok(found
            .into_iter()
            .map(|f| wit::Hit {
                id: f.id,
                collection: f.collection,
                score: f.score,
                metadata: f.metadata,
            })
            .collect())
    }
}

impl wit::Host for CapabilityView<'_> {}

impl wit::HostIndex for CapabilityView<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Index>, wit::Error>> {
        if !self.ctx.grants.vector_indexes.contains(&name) {
            return Ok(Err(wit::Error::AccessDenied(super::not_granted(
                "vector index",
                "vector_indexes",
                &name,
            ))));
        }
        let Some(index) = self.ctx.shared.vectors.by_name.get(&name) else {
            return Ok(Err(wit::Error::NoSuchIndex(format!(
                "no vector index `{name}` is configured"
            ))));
        };
        Ok(Ok(self.table.push(index.clone())?))
    }

    async fn upsert(
        &mut self,
        this: Resource<Index>,
        owner: String,
        collection: String,
        items: Vec<wit::Item>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let index = self.table.get(&this)?.clone();
        Ok(index.upsert(&owner, &collection, items).await)
    }

    async fn delete(
        &mut self,
        this: Resource<Index>,
        owner: String,
        ids: Vec<String>,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        let index = self.table.get(&this)?.clone();
        if ids.len() > MAX_ITEMS {
            return Ok(Err(invalid(format!(
                "a delete names at most {MAX_ITEMS} ids"
            ))));
        }
        if let Err(e) = check_name("owner", &owner) {
            return Ok(Err(e));
        }
        Ok(index
            .table
            .delete(&owner, &ids)
            .await
            .map_err(|e| index.fail("delete", e)))
    }

    async fn delete_owner(
        &mut self,
        this: Resource<Index>,
        owner: String,
        collection: Option<String>,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        let index = self.table.get(&this)?.clone();
        if let Err(e) = check_name("owner", &owner) {
            return Ok(Err(e));
        }
        Ok(index
            .table
            .delete_owner(&owner, collection.as_deref())
            .await
            .map_err(|e| index.fail("delete-owner", e)))
    }

    async fn query(
        &mut self,
        this: Resource<Index>,
        owner: String,
        collections: Vec<String>,
        vector: Vec<f32>,
        top_k: u32,
        min_score: Option<f32>,
    ) -> wasmtime::Result<Result<Vec<wit::Hit>, wit::Error>> {
        let index = self.table.get(&this)?.clone();
        Ok(index
            .query(&owner, &collections, &vector, top_k, min_score)
            .await)
    }

    async fn count(
        &mut self,
        this: Resource<Index>,
        owner: String,
        collection: String,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        let index = self.table.get(&this)?.clone();
        Ok(index
            .table
            .count(&owner, &collection)
            .await
            .map_err(|e| index.fail("count", e)))
    }

    async fn drop(&mut self, this: Resource<Index>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
