//! The model store: GGUF files under `<models dir>/blobs/sha256-<hex>` and a
//! manifest (`manifest.json`) naming them `name:tag`, with the metadata read
//! from each file when it was installed.
//!
//! Installs stream into `tmp/`, hash as they go, verify, and only then
//! rename into `blobs/` and record the name, so a failed, interrupted or
//! corrupt install leaves nothing behind (a restart begins afresh). The
//! manifest is rewritten atomically under a file lock, so the CLI and a
//! running host can both change it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::InferenceError;
use super::gguf;

/// Largest model file the store accepts.
pub const MAX_MODEL_SIZE: u64 = 256 << 30;

/// One installed model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelEntry {
    /// `name:tag`.
    pub name: String,
    /// Hex SHA-256 of the file (also its blob name).
    pub sha256: String,
    /// Bytes.
    pub size: u64,
    /// Seconds since the Unix epoch.
    pub installed_at: i64,
    /// What the GGUF header says.
    #[serde(flatten)]
    pub metadata: gguf::Metadata,
}

impl ModelEntry {
    /// `sha256:<hex>`, as Ollama shows digests.
    pub fn digest(&self) -> String {
        format!("sha256:{}", self.sha256)
    }
}

/// Install progress.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    pub completed: u64,
    /// Unknown for a server that sends no length.
    pub total: Option<u64>,
}

/// The models directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
}

type Manifest = BTreeMap<String, ModelEntry>;

impl ModelStore {
    /// The store in `dir` (created on first install).
    pub fn new(dir: PathBuf) -> Self {
        ModelStore { dir }
    }

    /// The file of an installed model.
    pub fn path(&self, entry: &ModelEntry) -> PathBuf {
        self.dir
            .join("blobs")
            .join(format!("sha256-{}", entry.sha256))
    }

    /// Every installed model, by name.
    pub fn list(&self) -> Result<Vec<ModelEntry>, InferenceError> {
        Ok(self.read()?.into_values().collect())
    }

    /// One model (`gemma3` means `gemma3:latest`).
    pub fn get(&self, name: &str) -> Result<ModelEntry, InferenceError> {
        let name = canonical_name(name)?;
        self.read()?
            .remove(&name)
            .ok_or_else(|| InferenceError::NoSuchModel(format!("model `{name}` is not installed")))
    }

    /// Installs `source` (a local path, `file://` URL or http(s) URL) as
    /// `name`, checking `sha256` when given. Reports progress as it copies.
    pub async fn install(
        &self,
        name: &str,
        source: &str,
        sha256: Option<&str>,
        mut progress: impl FnMut(Progress) + Send,
    ) -> Result<ModelEntry, InferenceError> {
        let name = canonical_name(name)?;
        let expected = sha256.map(check_sha256).transpose()?;
        let tmp_dir = self.dir.join("tmp");
        std::fs::create_dir_all(&tmp_dir).map_err(io("cannot create the models directory"))?;
        let partial = Partial::new(&tmp_dir)?;
        let mut file = File::create(&partial.path).map_err(io("cannot write the download"))?;
        let mut hasher = Sha256::new();
        let mut completed = 0u64;
        let mut write = |chunk: &[u8], total: Option<u64>| -> Result<(), InferenceError> {
            completed += chunk.len() as u64;
            if completed > MAX_MODEL_SIZE {
                return Err(InferenceError::Invalid(format!(
                    "the model is larger than {MAX_MODEL_SIZE} bytes"
                )));
            }
            hasher.update(chunk);
            file.write_all(chunk)
                .map_err(io("cannot write the download"))?;
            progress(Progress { completed, total });
            Ok(())
        };
        if source.starts_with("http://") || source.starts_with("https://") {
            download(source, &mut write).await?;
        } else {
            copy_local(source, &mut write).await?;
        }
        file.sync_all().map_err(io("cannot write the download"))?;
        drop(file);
        let actual = hex::encode(hasher.finalize());
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(InferenceError::Invalid(format!(
                "sha256 mismatch: expected {expected}, the file has {actual}"
            )));
        }
        let path = partial.path.clone();
        let metadata = tokio::task::spawn_blocking(move || gguf::read(&path))
            .await
            .map_err(|e| InferenceError::Unavailable(e.to_string()))?
            .map_err(|e| InferenceError::Invalid(format!("{source} is not a usable model: {e}")))?;
        let entry = ModelEntry {
            name: name.clone(),
            sha256: actual,
            size: completed,
            installed_at: chrono::Utc::now().timestamp(),
            metadata,
        };
        let blobs = self.dir.join("blobs");
        std::fs::create_dir_all(&blobs).map_err(io("cannot create the models directory"))?;
        let blob = self.path(&entry);
        // The file moves in and the name is recorded under one lock, so a
        // concurrent removal never sees the file unreferenced.
        self.update(|manifest| {
            partial.persist(&blob)?;
            let replaced = manifest.insert(name, entry.clone());
            Ok(replaced.into_iter().map(|old| old.sha256).collect())
        })?;
        Ok(entry)
    }

    /// Removes `name`; its file goes too unless another name shares it.
    pub fn remove(&self, name: &str) -> Result<ModelEntry, InferenceError> {
        let name = canonical_name(name)?;
        let mut removed = None;
        self.update(|manifest| {
            let entry = manifest.remove(&name).ok_or_else(|| {
                InferenceError::NoSuchModel(format!("model `{name}` is not installed"))
            })?;
            let sha256 = entry.sha256.clone();
            removed = Some(entry);
            Ok(vec![sha256])
        })?;
        Ok(removed.expect("set by update"))
    }

    fn read(&self) -> Result<Manifest, InferenceError> {
        match std::fs::read(self.dir.join("manifest.json")) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                InferenceError::Unavailable(format!(
                    "{}: {e}",
                    self.dir.join("manifest.json").display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Manifest::new()),
            Err(e) => Err(io("cannot read the model manifest")(e)),
        }
    }

    /// Read-modify-write of the manifest under an exclusive file lock.
    /// `change` returns the digests whose names it dropped; once the new
    /// manifest is durable, their files are deleted unless still named
    /// (a running host may still map one: Unix keeps the data until it is
    /// unmapped).
    fn update(
        &self,
        change: impl FnOnce(&mut Manifest) -> Result<Vec<String>, InferenceError>,
    ) -> Result<(), InferenceError> {
        std::fs::create_dir_all(&self.dir).map_err(io("cannot create the models directory"))?;
        let lock = File::create(self.dir.join(".lock")).map_err(io("cannot lock the store"))?;
        lock.lock().map_err(io("cannot lock the store"))?;
        let mut manifest = self.read()?;
        let dropped = change(&mut manifest)?;
        let tmp = self
            .dir
            .join(format!("manifest.json.{}", std::process::id()));
        let text = serde_json::to_vec_pretty(&manifest).expect("the manifest serializes");
        let write = || -> std::io::Result<()> {
            let mut file = File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            std::fs::rename(&tmp, self.dir.join("manifest.json"))?;
            File::open(&self.dir)?.sync_all()
        };
        write().map_err(io("cannot write the model manifest"))?;
        for sha256 in dropped {
            if !manifest.values().any(|e| e.sha256 == sha256) {
                let _ =
                    std::fs::remove_file(self.dir.join("blobs").join(format!("sha256-{sha256}")));
            }
        }
        Ok(())
    }
}

/// `name` or `name:tag` → `name:tag` (tag `latest` by default); lower-case
/// letters, digits and `._-`, at most 64 characters each.
pub fn canonical_name(name: &str) -> Result<String, InferenceError> {
    let (model, tag) = name.split_once(':').unwrap_or((name, "latest"));
    let valid = |part: &str| {
        !part.is_empty()
            && part.len() <= 64
            && part.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c))
    };
    if valid(model) && valid(tag) {
        Ok(format!("{model}:{tag}"))
    } else {
        Err(InferenceError::Invalid(format!(
            "invalid model name `{}`: use name:tag with lower-case letters, digits and ._- (at most 64 each)",
            name.escape_debug()
        )))
    }
}

fn check_sha256(hex: &str) -> Result<String, InferenceError> {
    let hex = hex
        .strip_prefix("sha256:")
        .unwrap_or(hex)
        .to_ascii_lowercase();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        Ok(hex)
    } else {
        Err(InferenceError::Invalid(
            "sha256 must be 64 hex digits".to_owned(),
        ))
    }
}

fn io(what: &'static str) -> impl Fn(std::io::Error) -> InferenceError {
    move |e| InferenceError::Unavailable(format!("{what}: {e}"))
}

/// A download in `tmp/`, deleted unless persisted.
struct Partial {
    path: PathBuf,
    kept: bool,
}

impl Partial {
    fn new(dir: &Path) -> Result<Partial, InferenceError> {
        Ok(Partial {
            path: dir.join(format!("{}.partial", uuid::Uuid::new_v4())),
            kept: false,
        })
    }

    fn persist(mut self, to: &Path) -> Result<(), InferenceError> {
        std::fs::rename(&self.path, to).map_err(io("cannot store the model"))?;
        self.kept = true;
        Ok(())
    }
}

impl Drop for Partial {
    fn drop(&mut self) {
        if !self.kept {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

async fn download(
    url: &str,
    write: &mut impl FnMut(&[u8], Option<u64>) -> Result<(), InferenceError>,
) -> Result<(), InferenceError> {
    use futures::StreamExt;
    let unreachable = |e: reqwest::Error| InferenceError::Unavailable(format!("{url}: {e}"));
    let client = reqwest::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(unreachable)?;
    let response = client.get(url).send().await.map_err(unreachable)?;
    if !response.status().is_success() {
        return Err(InferenceError::Invalid(format!(
            "{url} answered {}",
            response.status()
        )));
    }
    let total = response.content_length();
    if total.is_some_and(|t| t > MAX_MODEL_SIZE) {
        return Err(InferenceError::Invalid(format!(
            "the model is larger than {MAX_MODEL_SIZE} bytes"
        )));
    }
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        write(&chunk.map_err(unreachable)?, total)?;
    }
    Ok(())
}

async fn copy_local(
    source: &str,
    write: &mut impl FnMut(&[u8], Option<u64>) -> Result<(), InferenceError>,
) -> Result<(), InferenceError> {
    use tokio::io::AsyncReadExt;
    let path = source.strip_prefix("file://").unwrap_or(source);
    let missing = |e: std::io::Error| InferenceError::Invalid(format!("cannot read {path}: {e}"));
    let mut file = tokio::fs::File::open(path).await.map_err(missing)?;
    let total = file.metadata().await.map_err(missing)?.len();
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).await.map_err(missing)?;
        if n == 0 {
            return Ok(());
        }
        write(&buffer[..n], Some(total))?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_get_a_tag_and_bad_ones_are_refused() {
        assert_eq!(canonical_name("gemma3").unwrap(), "gemma3:latest");
        assert_eq!(canonical_name("gemma3:270m").unwrap(), "gemma3:270m");
        for bad in ["", "Gemma", "a:b:c", "../x", "a:", ":b", "a b"] {
            assert!(canonical_name(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn a_bad_install_leaves_nothing_behind() {
        let dir = std::env::temp_dir().join(format!("lamina-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let source = dir.join("not-a-model.gguf");
        std::fs::write(&source, b"GGUF but not really").unwrap();
        let store = ModelStore::new(dir.join("models"));
        let err = store
            .install("x:1", source.to_str().unwrap(), None, |_| {})
            .await
            .unwrap_err();
        assert!(matches!(err, InferenceError::Invalid(_)), "{err:?}");
        let wrong = "0".repeat(64);
        let err = store
            .install("x:1", source.to_str().unwrap(), Some(&wrong), |_| {})
            .await
            .unwrap_err();
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.join("models/tmp")).unwrap().count(),
            0
        );
        assert!(store.list().unwrap().is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
