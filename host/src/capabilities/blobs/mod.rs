//! The `blobs` capability: files by key for components, which have no
//! filesystem. A bucket is a local directory (one host; the default) or
//! rows in the host database (every host sees every file, so a job queued
//! on one host can read an upload received by another).

mod directory;
mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use wasmtime::component::Resource;

use super::CapabilityView;
use super::bindings::lamina::platform::blobs as wit;
use super::sql::Database;
use crate::units::ByteSize;

/// Longest key a guest may use.
const MAX_KEY_BYTES: usize = 1024;
/// Most keys one `list-keys` returns.
const MAX_LIST: u32 = 1000;

/// `[blobs.<name>]` in runtime-config.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum BucketConfig {
    /// Files in a directory of this host.
    Directory(DirectoryConfig),
    /// Rows in the host database (PostgreSQL: shared by every host).
    Sql(SqlConfig),
}

/// `type = "directory"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DirectoryConfig {
    /// The directory, relative to the data dir (default `blobs/<name>`).
    pub path: Option<PathBuf>,
    /// Largest blob (default 32 MiB).
    #[serde(default = "default_max_blob_size")]
    pub max_blob_size: ByteSize,
}

/// `type = "sql"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlConfig {
    /// Largest blob (default 32 MiB).
    #[serde(default = "default_max_blob_size")]
    pub max_blob_size: ByteSize,
}

fn default_max_blob_size() -> ByteSize {
    ByteSize::mib(32)
}

/// One blob's listing entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    pub key: String,
    pub size: u64,
    pub updated_at_ms: i64,
}

/// A backend failure: the store could not be read or written.
#[derive(Debug)]
pub struct Unavailable(pub String);

#[derive(Clone)]
enum Backend {
    Directory(directory::Directory),
    Sql(table::Table),
}

/// A guest's handle on a granted bucket.
#[derive(Clone)]
pub struct Bucket {
    name: String,
    backend: Backend,
    max_blob_size: u64,
}

/// The configured buckets by name.
#[derive(Clone, Default)]
pub struct Buckets {
    by_name: BTreeMap<String, Bucket>,
}

impl Buckets {
    /// Builds every configured bucket; `default` always exists (a directory
    /// unless configured otherwise). SQL buckets keep their rows in `host`.
    pub async fn open(
        configs: &BTreeMap<String, BucketConfig>,
        host: &Database,
        data_dir: &Path,
    ) -> anyhow::Result<Buckets> {
        let implicit = (!configs.contains_key("default")).then(|| {
            (
                "default".to_owned(),
                BucketConfig::Directory(DirectoryConfig {
                    path: None,
                    max_blob_size: default_max_blob_size(),
                }),
            )
        });
        let mut by_name = BTreeMap::new();
        for (name, config) in configs.clone().into_iter().chain(implicit) {
            let (backend, max) = match &config {
                BucketConfig::Directory(c) => {
                    let dir = data_dir.join(
                        c.path
                            .clone()
                            .unwrap_or_else(|| Path::new("blobs").join(&name)),
                    );
                    (
                        Backend::Directory(directory::Directory::open(dir).await?),
                        c.max_blob_size,
                    )
                }
                BucketConfig::Sql(c) => (
                    Backend::Sql(table::Table::open(host.clone(), &name).await?),
                    c.max_blob_size,
                ),
            };
            tracing::info!(bucket = %name, backend = backend.kind(), "blob bucket ready");
            by_name.insert(
                name.clone(),
                Bucket {
                    name,
                    backend,
                    max_blob_size: max.bytes(),
                },
            );
        }
        Ok(Buckets { by_name })
    }

    /// Names of the configured buckets.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.by_name.keys().map(String::as_str)
    }
}

impl Backend {
    fn kind(&self) -> &'static str {
        match self {
            Backend::Directory(_) => "directory",
            Backend::Sql(_) => "sql",
        }
    }
}

impl Bucket {
    async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), wit::Error> {
        check_key(key)?;
        if data.len() as u64 > self.max_blob_size {
            return Err(wit::Error::TooLarge(format!(
                "{} bytes is over bucket `{}`'s limit of {} bytes",
                data.len(),
                self.name,
                self.max_blob_size
            )));
        }
        let size = data.len() as u64;
        let result = match &self.backend {
            Backend::Directory(d) => d.put(key, data).await,
            Backend::Sql(t) => t.put(key, data).await,
        };
        if result.is_ok() {
            metrics::counter!("lamina_blobs_written_bytes_total", "bucket" => self.name.clone())
                .increment(size);
        }
        result.map_err(|e| self.fail("put", e))
    }

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, wit::Error> {
        check_key(key)?;
        let result = match &self.backend {
            Backend::Directory(d) => d.get(key).await,
            Backend::Sql(t) => t.get(key).await,
        };
        result.map_err(|e| self.fail("get", e))
    }

    async fn delete(&self, key: &str) -> Result<bool, wit::Error> {
        check_key(key)?;
        let result = match &self.backend {
            Backend::Directory(d) => d.delete(key).await,
            Backend::Sql(t) => t.delete(key).await,
        };
        result.map_err(|e| self.fail("delete", e))
    }

    async fn delete_prefix(&self, prefix: &str) -> Result<u64, wit::Error> {
        if prefix.is_empty() {
            return Err(wit::Error::Invalid(
                "delete-prefix needs a prefix (an empty one would empty the bucket)".into(),
            ));
        }
        check_text("prefix", prefix)?;
        let result = match &self.backend {
            Backend::Directory(d) => d.delete_prefix(prefix).await,
            Backend::Sql(t) => t.delete_prefix(prefix).await,
        };
        result.map_err(|e| self.fail("delete-prefix", e))
    }

    async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Info>, wit::Error> {
        if !(1..=MAX_LIST).contains(&limit) {
            return Err(wit::Error::Invalid(format!(
                "limit must be 1 to {MAX_LIST}"
            )));
        }
        check_text("prefix", prefix)?;
        check_text("after", after.unwrap_or(""))?;
        let result = match &self.backend {
            Backend::Directory(d) => d.list(prefix, after, limit as usize).await,
            Backend::Sql(t) => t.list(prefix, after, limit as usize).await,
        };
        result.map_err(|e| self.fail("list-keys", e))
    }

    fn fail(&self, op: &'static str, Unavailable(detail): Unavailable) -> wit::Error {
        tracing::warn!(bucket = %self.name, op, "blob bucket unavailable: {detail}");
        metrics::counter!("lamina_blobs_unavailable_total", "bucket" => self.name.clone(), "op" => op)
            .increment(1);
        wit::Error::Unavailable(detail)
    }
}

fn check_text(what: &str, text: &str) -> Result<(), wit::Error> {
    if text.len() > MAX_KEY_BYTES || text.contains('\0') {
        return Err(wit::Error::Invalid(format!(
            "{what} is at most {MAX_KEY_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

fn check_key(key: &str) -> Result<(), wit::Error> {
    if key.is_empty() || key.len() > MAX_KEY_BYTES || key.contains('\0') {
        return Err(wit::Error::Invalid(format!(
            "a key is 1 to {MAX_KEY_BYTES} bytes without NUL"
        )));
    }
    Ok(())
}

impl wit::Host for CapabilityView<'_> {}

impl wit::HostBucket for CapabilityView<'_> {
    async fn open(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Bucket>, wit::Error>> {
        if !self.ctx.grants.blobs.contains(&name) {
            return Ok(Err(wit::Error::AccessDenied(super::not_granted(
                "blob bucket",
                "blobs",
                &name,
            ))));
        }
        let Some(bucket) = self.ctx.shared.blobs.by_name.get(&name) else {
            return Ok(Err(wit::Error::NoSuchBucket(format!(
                "no blob bucket `{name}` is configured"
            ))));
        };
        Ok(Ok(self.table.push(bucket.clone())?))
    }

    async fn put(
        &mut self,
        this: Resource<Bucket>,
        key: String,
        data: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wit::Error>> {
        let bucket = self.table.get(&this)?.clone();
        Ok(bucket.put(&key, data).await)
    }

    async fn get(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wit::Error>> {
        let bucket = self.table.get(&this)?.clone();
        Ok(bucket.get(&key).await)
    }

    async fn delete(
        &mut self,
        this: Resource<Bucket>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wit::Error>> {
        let bucket = self.table.get(&this)?.clone();
        Ok(bucket.delete(&key).await)
    }

    async fn delete_prefix(
        &mut self,
        this: Resource<Bucket>,
        prefix: String,
    ) -> wasmtime::Result<Result<u64, wit::Error>> {
        let bucket = self.table.get(&this)?.clone();
        Ok(bucket.delete_prefix(&prefix).await)
    }

    async fn list_keys(
        &mut self,
        this: Resource<Bucket>,
        prefix: String,
        after: Option<String>,
        limit: u32,
    ) -> wasmtime::Result<Result<Vec<wit::BlobInfo>, wit::Error>> {
        let bucket = self.table.get(&this)?.clone();
        Ok(bucket
            .list(&prefix, after.as_deref(), limit)
            .await
            .map(|infos| {
                infos
                    .into_iter()
                    .map(|i| wit::BlobInfo {
                        key: i.key,
                        size: i.size,
                        updated_at_ms: i.updated_at_ms,
                    })
                    .collect()
            }))
    }

    async fn drop(&mut self, this: Resource<Bucket>) -> wasmtime::Result<()> {
        self.table.delete(this)?;
        Ok(())
    }
}
