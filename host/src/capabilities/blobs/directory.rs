//! A bucket in a directory of this host. Each blob is a file named by the
//! SHA-256 of its key, so no key can name a path outside the directory,
//! beside a `.key` file holding the key (for listing). Writes go to a
//! temporary file renamed into place: a reader never sees half a blob.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use super::{Info, Unavailable};

#[derive(Clone)]
pub struct Directory {
    root: Arc<PathBuf>,
}

/// Makes temporary file names unique within the process.
static TEMP: AtomicU64 = AtomicU64::new(0);

fn unavailable(what: &str, error: std::io::Error) -> Unavailable {
    Unavailable(format!("{what}: {error}"))
}

impl Directory {
    pub async fn open(root: PathBuf) -> anyhow::Result<Directory> {
        tokio::fs::create_dir_all(&root).await.map_err(|e| {
            anyhow::anyhow!("cannot create the blob directory {}: {e}", root.display())
        })?;
        Ok(Directory {
            root: Arc::new(root),
        })
    }

    /// The blob's file and its key file.
    fn paths(&self, key: &str) -> (PathBuf, PathBuf) {
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        (self.root.join(&name), self.root.join(format!("{name}.key")))
    }

    async fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), Unavailable> {
        let temp = path.with_extension(format!(
            "{}-{}.tmp",
            std::process::id(),
            TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        tokio::fs::write(&temp, bytes)
            .await
            .map_err(|e| unavailable("writing a blob", e))?;
        tokio::fs::rename(&temp, path).await.map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            unavailable("storing a blob", e)
        })
    }

    pub async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), Unavailable> {
        let (file, key_file) = self.paths(key);
        // The key first: a listed key whose blob is still being written
        // lists with the size of what is there, never a blob without a key.
        self.write(&key_file, key.as_bytes()).await?;
        self.write(&file, &data).await
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        match tokio::fs::read(self.paths(key).0).await {
            Ok(bytes) => Ok(Some(bytes)),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(unavailable("reading a blob", e)),
        }
    }

    pub async fn delete(&self, key: &str) -> Result<bool, Unavailable> {
        let (file, key_file) = self.paths(key);
        let existed = match tokio::fs::remove_file(&file).await {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(unavailable("deleting a blob", e)),
        };
        match tokio::fs::remove_file(&key_file).await {
            Ok(()) => Ok(existed),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(existed),
            Err(e) => Err(unavailable("deleting a blob's key", e)),
        }
    }

    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, Unavailable> {
        let mut deleted = 0;
        for info in self.scan(prefix, None).await? {
            deleted += u64::from(self.delete(&info.key).await?);
        }
        Ok(deleted)
    }

    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Info>, Unavailable> {
        let mut infos = self.scan(prefix, after).await?;
        infos.truncate(limit);
        Ok(infos)
    }

    /// Every blob whose key starts with `prefix` (and sorts after `after`),
    /// in key order: a walk of the directory, fine for one host's files.
    async fn scan(&self, prefix: &str, after: Option<&str>) -> Result<Vec<Info>, Unavailable> {
        let mut entries = tokio::fs::read_dir(&*self.root)
            .await
            .map_err(|e| unavailable("listing blobs", e))?;
        let mut infos = Vec::new();
        while let Some(entry) = entries
            .next_entry()
            .await
            .map_err(|e| unavailable("listing blobs", e))?
        {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "key") {
                continue;
            }
            let Ok(key) = tokio::fs::read_to_string(&path).await else {
                continue; // deleted meanwhile
            };
            if !key.starts_with(prefix) || after.is_some_and(|a| key.as_str() <= a) {
                continue;
            }
            let Ok(meta) = tokio::fs::metadata(path.with_extension("")).await else {
                continue; // its blob is not written yet, or was deleted
            };
            let updated_at_ms = meta
                .modified()
                .ok()
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_millis() as i64);
            infos.push(Info {
                key,
                size: meta.len(),
                updated_at_ms,
            });
        }
        infos.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(infos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_never_leave_the_directory_and_list_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let bucket = Directory::open(dir.path().join("b")).await.unwrap();
        bucket.put("../../etc/passwd", b"x".to_vec()).await.unwrap();
        bucket.put("u1/a", b"aa".to_vec()).await.unwrap();
        bucket.put("u1/b", b"bbb".to_vec()).await.unwrap();
        assert!(!dir.path().join("etc").exists());
        assert_eq!(bucket.get("../../etc/passwd").await.unwrap().unwrap(), b"x");
        let listed = bucket.list("u1/", None, 10).await.unwrap();
        let keys: Vec<_> = listed.iter().map(|i| (i.key.as_str(), i.size)).collect();
        assert_eq!(keys, [("u1/a", 2), ("u1/b", 3)]);
        assert_eq!(bucket.list("u1/", Some("u1/a"), 10).await.unwrap().len(), 1);
        assert_eq!(bucket.delete_prefix("u1/").await.unwrap(), 2);
        assert!(bucket.get("u1/a").await.unwrap().is_none());
        assert!(!bucket.delete("u1/a").await.unwrap());
    }
}
