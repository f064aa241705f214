//! A bucket in a directory of this host. Each blob is one file named by
//! the SHA-256 of its key (so no key can name a path outside the
//! directory), holding the key (a 4-byte length, then the bytes) before the
//! blob, so listing reads keys back and a write or delete is one rename or
//! one unlink: a reader never sees half a blob or a blob without its key.
//! Listing walks the directory: fine for one host's files; the SQL backend
//! pages along an index.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

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

/// A blob file's name: 64 lower-case hex digits.
fn is_blob_name(name: &str) -> bool {
    name.len() == 64 && name.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
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

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(hex::encode(Sha256::digest(key.as_bytes())))
    }

    pub async fn put(&self, key: &str, data: Vec<u8>) -> Result<(), Unavailable> {
        let path = self.path(key);
        let mut file = Vec::with_capacity(4 + key.len() + data.len());
        file.extend_from_slice(&(key.len() as u32).to_le_bytes());
        file.extend_from_slice(key.as_bytes());
        file.extend_from_slice(&data);
        let temp = path.with_extension(format!(
            "{}-{}.tmp",
            std::process::id(),
            TEMP.fetch_add(1, Ordering::Relaxed)
        ));
        tokio::fs::write(&temp, &file)
            .await
            .map_err(|e| unavailable("writing a blob", e))?;
        tokio::fs::rename(&temp, &path).await.map_err(|e| {
            let _ = std::fs::remove_file(&temp);
            unavailable("storing a blob", e)
        })
    }

    pub async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let bytes = match tokio::fs::read(self.path(key)).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(unavailable("reading a blob", e)),
        };
        let header = 4 + key.len();
        if bytes.len() < header || &bytes[4..header] != key.as_bytes() {
            return Err(Unavailable(format!("blob file for `{key}` is damaged")));
        }
        Ok(Some(bytes[header..].to_vec()))
    }

    pub async fn delete(&self, key: &str) -> Result<bool, Unavailable> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(unavailable("deleting a blob", e)),
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

    /// A blob file's key (its header) and size, if it is still there.
    async fn read_info(path: &Path) -> Option<Info> {
        let mut file = tokio::fs::File::open(path).await.ok()?;
        let meta = file.metadata().await.ok()?;
        let mut length = [0u8; 4];
        file.read_exact(&mut length).await.ok()?;
        let length = u32::from_le_bytes(length) as usize;
        if length > super::MAX_KEY_BYTES {
            return None; // not a blob file of ours
        }
        let mut key = vec![0u8; length];
        file.read_exact(&mut key).await.ok()?;
        let updated_at_ms = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        Some(Info {
            key: String::from_utf8(key).ok()?,
            size: meta.len().saturating_sub(4 + length as u64),
            updated_at_ms,
        })
    }

    /// Every blob whose key starts with `prefix` (and sorts after `after`),
    /// in key order.
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
            if !entry.file_name().to_str().is_some_and(is_blob_name) {
                continue; // temporary files, anything else in the directory
            }
            let Some(info) = Self::read_info(&entry.path()).await else {
                continue; // deleted meanwhile
            };
            if info.key.starts_with(prefix) && after.is_none_or(|a| info.key.as_str() > a) {
                infos.push(info);
            }
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
        std::fs::write(dir.path().join("b/server.key"), "not a blob").unwrap();
        assert!(!dir.path().join("etc").exists());
        assert_eq!(bucket.get("../../etc/passwd").await.unwrap().unwrap(), b"x");
        let listed = bucket.list("u1/", None, 10).await.unwrap();
        let keys: Vec<_> = listed.iter().map(|i| (i.key.as_str(), i.size)).collect();
        assert_eq!(keys, [("u1/a", 2), ("u1/b", 3)]);
        assert_eq!(bucket.list("", None, 10).await.unwrap().len(), 3);
        assert_eq!(bucket.list("u1/", Some("u1/a"), 10).await.unwrap().len(), 1);
        assert_eq!(bucket.delete_prefix("u1/").await.unwrap(), 2);
        assert!(bucket.get("u1/a").await.unwrap().is_none());
        assert!(!bucket.delete("u1/a").await.unwrap());
    }
}
