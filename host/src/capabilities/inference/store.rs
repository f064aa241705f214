//! The model store: GGUF files under `<models dir>/blobs/sha256-<hex>` and a
//! manifest (`manifest.json`) naming them `name:tag`, with the metadata read
//! from each file when it was installed.
//!
//! Installs stream into `tmp/`, hash as they go, verify, and only then
//! rename into `blobs/` and record the name, so a failed or corrupt install
//! never shows up as a model; an interrupted one continues from the bytes
//! it had ([`pulls`](super::pulls) runs them and cleans up). The manifest
//! is rewritten atomically under a file lock, so the CLI and a running host
//! can both change it.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::InferenceError;
use super::egress::{self, Egress};
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
    /// Bytes fetched, including those of an earlier, interrupted attempt.
    pub completed: u64,
    /// Unknown for a server that sends no length.
    pub total: Option<u64>,
}

/// The models directory.
#[derive(Debug, Clone)]
pub struct ModelStore {
    dir: PathBuf,
    /// Where its downloads may connect.
    egress: Egress,
}

type Manifest = BTreeMap<String, ModelEntry>;

impl ModelStore {
    /// The store in `dir` (created on first install), downloading where
    /// `egress` allows.
    pub fn new(dir: PathBuf, egress: Egress) -> Self {
        ModelStore { dir, egress }
    }

    /// Checks a source before a pull of it is accepted: a URL must be one
    /// the store may download from (paths are the operator's CLI's).
    pub fn check_source(&self, source: &str) -> Result<(), InferenceError> {
        if source.contains("://") {
            self.egress.check(source)?;
        }
        Ok(())
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

    /// Where the download of pull `id` is kept until it is installed.
    pub fn partial_path(&self, id: &str) -> PathBuf {
        self.dir.join("tmp").join(format!("{id}.partial"))
    }

    /// Fetches `source` (a local path, `file://` or http(s) URL) into
    /// `partial`, continuing after the bytes already there (an HTTP range
    /// request; a source that cannot resume starts over), checks `sha256`
    /// when given and that llama.cpp loads the file, then moves it in as
    /// `name`. `progress` hears of every chunk, `verifying` of the end of
    /// the download. On error `partial` is left for a retry; the caller
    /// deletes it when giving up.
    pub async fn install(
        &self,
        name: &str,
        source: &str,
        sha256: Option<&str>,
        partial: &Path,
        progress: impl FnMut(Progress) + Send,
        verifying: impl FnOnce() + Send,
    ) -> Result<ModelEntry, InferenceError> {
        let name = canonical_name(name)?;
        let expected = sha256.map(check_sha256).transpose()?;
        let mut sink = Sink::open(partial.to_owned(), progress).await?;
        let scheme = source.split_once("://").map(|(scheme, _)| scheme);
        if scheme.is_some_and(|s| s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https"))
        {
            download(source, &self.egress, &mut sink).await?;
        } else {
            copy_local(source, &mut sink).await?;
        }
        let (completed, actual) = sink.finish()?;
        verifying();
        if let Some(expected) = expected
            && expected != actual
        {
            return Err(InferenceError::Invalid(format!(
                "sha256 mismatch: expected {expected}, the file has {actual}"
            )));
        }
        let path = partial.to_owned();
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
            std::fs::rename(partial, &blob).map_err(io("cannot store the model"))?;
            let replaced = manifest.insert(name, entry.clone());
            Ok(replaced.into_iter().map(|old| old.sha256).collect())
        })?;
        Ok(entry)
    }

    /// Names `source`'s file `destination` too (replacing what that name
    /// was); the file is shared, not duplicated.
    pub fn copy(&self, source: &str, destination: &str) -> Result<ModelEntry, InferenceError> {
        let source = canonical_name(source)?;
        let destination = canonical_name(destination)?;
        let mut copied = None;
        self.update(|manifest| {
            let mut entry = manifest.get(&source).cloned().ok_or_else(|| {
                InferenceError::NoSuchModel(format!("model `{source}` is not installed"))
            })?;
            entry.name = destination.clone();
            copied = Some(entry.clone());
            let replaced = manifest.insert(destination, entry);
            Ok(replaced.into_iter().map(|old| old.sha256).collect())
        })?;
        Ok(copied.expect("set by update"))
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

pub(super) fn check_sha256(hex: &str) -> Result<String, InferenceError> {
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

/// The download file being written: hashes and counts what goes in.
struct Sink<P> {
    path: PathBuf,
    file: File,
    hasher: Sha256,
    completed: u64,
    progress: P,
}

impl<P: FnMut(Progress)> Sink<P> {
    /// Opens `path`, hashing the bytes an earlier attempt left there.
    async fn open(path: PathBuf, progress: P) -> Result<Self, InferenceError> {
        let dir = path.parent().expect("a partial file is in tmp/").to_owned();
        let at = path.clone();
        let (file, hasher, completed) = tokio::task::spawn_blocking(move || {
            std::fs::create_dir_all(&dir)?;
            let mut file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&at)?;
            let mut hasher = Sha256::new();
            let completed = std::io::copy(&mut file, &mut hasher)?;
            Ok::<_, std::io::Error>((file, hasher, completed))
        })
        .await
        .map_err(|e| InferenceError::Unavailable(e.to_string()))?
        .map_err(io("cannot open the download"))?;
        Ok(Sink {
            path,
            file,
            hasher,
            completed,
            progress,
        })
    }

    /// Appends `chunk` of a file `total` bytes long.
    fn write(&mut self, chunk: &[u8], total: Option<u64>) -> Result<(), InferenceError> {
        self.completed += chunk.len() as u64;
        if self.completed > MAX_MODEL_SIZE {
            return Err(too_large());
        }
        self.hasher.update(chunk);
        self.file
            .write_all(chunk)
            .map_err(io("cannot write the download"))?;
        (self.progress)(Progress {
            completed: self.completed,
            total,
        });
        Ok(())
    }

    /// Drops what an earlier attempt fetched (the source cannot resume).
    fn restart(&mut self) -> Result<(), InferenceError> {
        use std::io::Seek;
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .map_err(io("cannot write the download"))?;
        self.hasher = Sha256::new();
        self.completed = 0;
        Ok(())
    }

    /// Makes the file durable; returns its size and hex SHA-256.
    fn finish(self) -> Result<(u64, String), InferenceError> {
        self.file
            .sync_all()
            .map_err(io("cannot write the download"))?;
        tracing::debug!(path = %self.path.display(), bytes = self.completed, "download complete");
        Ok((self.completed, hex::encode(self.hasher.finalize())))
    }
}

fn too_large() -> InferenceError {
    InferenceError::Invalid(format!("the model is larger than {MAX_MODEL_SIZE} bytes"))
}

/// Fetches `url` into `sink` where `egress` allows. Why a connection
/// failed (refused, timed out, a name that does not resolve) is logged,
/// not returned: the caller may be a user probing what the host can reach.
async fn download<P: FnMut(Progress)>(
    url: &str,
    egress: &Egress,
    sink: &mut Sink<P>,
) -> Result<(), InferenceError> {
    use futures::StreamExt;
    use reqwest::StatusCode;
    use reqwest::header::{CONTENT_RANGE, RANGE};
    let unreachable = |e: reqwest::Error| {
        if egress::is_refusal(&e) {
            return InferenceError::Invalid(egress::Refused.to_string());
        }
        tracing::warn!("downloading {url} failed: {e:?}");
        InferenceError::Unavailable(format!("could not download {url}"))
    };
    egress.check(url)?;
    let client = egress.client()?;
    let mut request = client.get(url);
    if sink.completed > 0 {
        request = request.header(RANGE, format!("bytes={}-", sink.completed));
    }
    let mut response = request.send().await.map_err(unreachable)?;
    let mut total = response.content_length();
    match response.status() {
        StatusCode::PARTIAL_CONTENT => {
            // `bytes <first>-<last>/<size>`: it must continue where we stopped.
            let range = response
                .headers()
                .get(CONTENT_RANGE)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("bytes "))
                .and_then(|v| v.split_once('-'))
                .and_then(|(first, rest)| {
                    Some((
                        first.parse::<u64>().ok()?,
                        rest.split_once('/')?.1.parse().ok(),
                    ))
                });
            match range {
                Some((first, size)) if first == sink.completed => total = size,
                _ => {
                    // The next attempt starts over.
                    sink.restart()?;
                    return Err(InferenceError::Unavailable(format!(
                        "{url} resumed at the wrong offset"
                    )));
                }
            }
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            // The file changed or shrank since: fetch it whole.
            sink.restart()?;
            response = client.get(url).send().await.map_err(unreachable)?;
            total = response.content_length();
        }
        status if status.is_success() => sink.restart()?,
        _ => {}
    }
    if !response.status().is_success() {
        return Err(InferenceError::Invalid(format!(
            "{url} answered {}",
            response.status()
        )));
    }
    if total.is_some_and(|t| t > MAX_MODEL_SIZE) {
        return Err(too_large());
    }
    let mut body = response.bytes_stream();
    while let Some(chunk) = body.next().await {
        sink.write(&chunk.map_err(unreachable)?, total)?;
    }
    Ok(())
}

async fn copy_local<P: FnMut(Progress)>(
    source: &str,
    sink: &mut Sink<P>,
) -> Result<(), InferenceError> {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let path = source.strip_prefix("file://").unwrap_or(source);
    let missing = |e: std::io::Error| InferenceError::Invalid(format!("cannot read {path}: {e}"));
    let mut file = tokio::fs::File::open(path).await.map_err(missing)?;
    let total = file.metadata().await.map_err(missing)?.len();
    if total > MAX_MODEL_SIZE {
        return Err(too_large());
    }
    if sink.completed > total {
        sink.restart()?;
    }
    file.seek(std::io::SeekFrom::Start(sink.completed))
        .await
        .map_err(missing)?;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buffer).await.map_err(missing)?;
        if n == 0 {
            return Ok(());
        }
        sink.write(&buffer[..n], Some(total))?;
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
}
