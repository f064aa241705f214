//! Pulls: model installs that run in the background and survive a restart.
//!
//! A pull is a job file, `<models dir>/pulls/<id>.json` (what to fetch),
//! and its download, `tmp/<id>.partial`. The process running a pull holds
//! an exclusive lock on the job file, so when a host starts it resumes
//! exactly the jobs nobody runs (a host or `lamina models pull` that was
//! killed), continuing each download where it stopped, and deletes the
//! downloads whose job is gone. Network errors are retried with backoff,
//! keeping the bytes; a pull that fails for good (wrong digest, not a
//! model, the server says no) deletes both files, as does a finished one.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{Notify, Semaphore, watch};

use super::InferenceError;
use super::store::{self, ModelEntry, ModelStore, Progress};

/// Pulls queued or running in one process at once.
pub const MAX_PULLS: usize = 32;
/// Pulls downloading at once; the others wait their turn.
const RUNNING_AT_ONCE: usize = 2;
/// Attempts after a network error before a pull fails.
const RETRIES: u32 = 5;
/// How long a finished pull's outcome stays visible.
const FINISHED_KEPT: Duration = Duration::from_secs(600);

/// What a pull fetches: the job file's contents.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Job {
    id: String,
    name: String,
    source: String,
    sha256: Option<String>,
}

/// Where a pull stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullState {
    /// Waiting for a download slot.
    Queued,
    Downloading,
    /// Downloaded; checking the digest and that llama.cpp loads it.
    Verifying,
    Done,
    Failed,
    /// Stopped by [`Pulls::cancel`].
    Cancelled,
}

/// A pull's progress and outcome.
#[derive(Debug, Clone)]
pub struct PullStatus {
    pub id: String,
    /// `name:tag` being installed.
    pub name: String,
    pub state: PullState,
    /// Bytes fetched (including those of an interrupted earlier attempt).
    pub completed: u64,
    /// The file's size, when the source says.
    pub total: Option<u64>,
    /// Why it failed.
    pub error: Option<InferenceError>,
    /// The installed model, once done.
    pub model: Option<ModelEntry>,
    finished: Option<Instant>,
}

impl PullStatus {
    fn new(job: &Job) -> Self {
        PullStatus {
            id: job.id.clone(),
            name: job.name.clone(),
            state: PullState::Queued,
            completed: 0,
            total: None,
            error: None,
            model: None,
            finished: None,
        }
    }
}

/// A pull of this process: what it fetches, where it stands, and how to
/// stop it.
struct Running {
    job: Job,
    status: watch::Sender<PullStatus>,
    cancel: Arc<Notify>,
}

/// The pulls of one process.
pub struct Pulls {
    store: ModelStore,
    dir: PathBuf,
    pulls: Mutex<HashMap<String, Running>>,
    slots: Arc<Semaphore>,
}

impl Pulls {
    /// Pulls into `store`, whose directory is `models_dir`.
    pub fn new(store: ModelStore, models_dir: &Path) -> Arc<Pulls> {
        Arc::new(Pulls {
            store,
            dir: models_dir.join("pulls"),
            pulls: Mutex::new(HashMap::new()),
            slots: Arc::new(Semaphore::new(RUNNING_AT_ONCE)),
        })
    }

    /// Starts installing `source` as `name` (see [`ModelStore::install`])
    /// and returns the pull's id at once. Pulling a name that is already
    /// being pulled from the same source joins that pull; a pull a killed
    /// process left for this name is continued.
    pub fn start(
        self: &Arc<Self>,
        name: &str,
        source: &str,
        sha256: Option<&str>,
    ) -> Result<String, InferenceError> {
        let name = store::canonical_name(name)?;
        let sha256 = sha256.map(store::check_sha256).transpose()?;
        if source.is_empty() || source.len() > 4096 {
            return Err(InferenceError::Invalid(
                "the source must be a path or URL of at most 4096 bytes".to_owned(),
            ));
        }
        self.store.check_source(source)?;
        let mut pulls = self.pulls.lock().expect("pulls lock");
        pulls.retain(|_, pull| {
            pull.status
                .borrow()
                .finished
                .is_none_or(|at| at.elapsed() < FINISHED_KEPT)
        });
        let running = pulls
            .values()
            .filter(|pull| pull.status.borrow().finished.is_none());
        if let Some(Running { job, .. }) = running.clone().find(|pull| pull.job.name == name) {
            return if job.source == source && job.sha256 == sha256 {
                Ok(job.id.clone())
            } else {
                Err(InferenceError::InUse(format!(
                    "`{name}` is already being pulled from {}",
                    job.source
                )))
            };
        }
        if running.count() >= MAX_PULLS {
            return Err(InferenceError::Unavailable(format!(
                "{MAX_PULLS} pulls are already queued; try again later"
            )));
        }
        let (job, lock) = match self.orphan_named(&name)? {
            Some((job, lock)) if job.source == source && job.sha256 == sha256 => (job, lock),
            orphan => {
                if let Some((old, _lock)) = orphan {
                    self.discard(&old.id);
                }
                let job = Job {
                    id: uuid::Uuid::new_v4().simple().to_string(),
                    name,
                    source: source.to_owned(),
                    sha256,
                };
                let lock = self.write_job(&job)?;
                (job, lock)
            }
        };
        Ok(self.spawn(&mut pulls, job, lock))
    }

    /// A pull's progress: this process's pulls (kept for a while after they
    /// finish), else one another process is running in this store.
    pub fn status(&self, id: &str) -> Option<PullStatus> {
        if let Some(pull) = self.pulls.lock().expect("pulls lock").get(id) {
            return Some(pull.status.borrow().clone());
        }
        if !is_id(id) {
            return None;
        }
        let job: Job = serde_json::from_slice(&std::fs::read(self.job_path(id)).ok()?).ok()?;
        let mut status = PullStatus::new(&job);
        status.state = PullState::Downloading;
        status.completed = std::fs::metadata(self.store.partial_path(id)).map_or(0, |m| m.len());
        Some(status)
    }

    /// Waits for pull `id` to end, calling `progress` as bytes arrive.
    pub async fn wait(
        &self,
        id: &str,
        mut progress: impl FnMut(&PullStatus),
    ) -> Result<ModelEntry, InferenceError> {
        let mut updates = match self.pulls.lock().expect("pulls lock").get(id) {
            Some(pull) => pull.status.subscribe(),
            None => return Err(InferenceError::NoSuchModel(format!("no pull `{id}`"))),
        };
        loop {
            let status = updates.borrow_and_update().clone();
            progress(&status);
            match status.state {
                PullState::Done => return Ok(status.model.expect("set when done")),
                PullState::Failed => return Err(status.error.expect("set when failed")),
                PullState::Cancelled => {
                    return Err(InferenceError::Unavailable(
                        "the pull was cancelled".to_owned(),
                    ));
                }
                _ => {}
            }
            if updates.changed().await.is_err() {
                return Err(InferenceError::Unavailable("the pull stopped".to_owned()));
            }
        }
    }

    /// Continues every pull no running process holds and deletes
    /// downloads that belong to no pull. A host calls this when it starts.
    pub fn resume(self: &Arc<Self>) {
        let mut pulls = self.pulls.lock().expect("pulls lock");
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            let path = entry.path();
            let Some(id) = job_id(&path, "json") else {
                continue;
            };
            if pulls.contains_key(&id) {
                continue;
            }
            match self.take_over(&id) {
                Ok(Some((job, lock))) => {
                    tracing::info!(pull = %job.id, model = %job.name, source = %job.source, "resuming an interrupted pull");
                    self.spawn(&mut pulls, job, lock);
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(path = %path.display(), "cannot resume a pull: {e}"),
            }
        }
        let tmp = self.store.partial_path("x");
        let tmp = tmp.parent().expect("partials are in tmp/");
        for entry in std::fs::read_dir(tmp).into_iter().flatten().flatten() {
            if let Some(id) = job_id(&entry.path(), "partial")
                && !self.job_path(&id).exists()
            {
                tracing::info!(path = %entry.path().display(), "deleting a download no pull owns");
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }

    /// Stops pull `id` of this process: true if it was running (it then
    /// ends as [`PullState::Cancelled`], its files deleted), false if it had
    /// ended. One checking its download (`Verifying`) finishes; a pull
    /// another process runs cannot be stopped from here.
    pub fn cancel(&self, id: &str) -> Result<bool, InferenceError> {
        if let Some(pull) = self.pulls.lock().expect("pulls lock").get(id) {
            let (running, verifying) = {
                let status = pull.status.borrow();
                (
                    status.finished.is_none(),
                    status.state == PullState::Verifying,
                )
            };
            if verifying {
                return Err(InferenceError::InUse(format!(
                    "pull `{id}` is checking its download and will finish"
                )));
            }
            if running {
                // A stored permit: a pull not yet waiting sees it too.
                pull.cancel.notify_one();
            }
            return Ok(running);
        }
        match self.status(id) {
            Some(_) => Err(InferenceError::Unavailable(format!(
                "pull `{id}` is run by another process on this model store; cancel it there"
            ))),
            None => Err(InferenceError::NoSuchModel(format!("no pull `{id}`"))),
        }
    }

    fn spawn(
        self: &Arc<Self>,
        pulls: &mut HashMap<String, Running>,
        job: Job,
        lock: File,
    ) -> String {
        let (status, _) = watch::channel(PullStatus::new(&job));
        let cancel = Arc::new(Notify::new());
        pulls.insert(
            job.id.clone(),
            Running {
                job: job.clone(),
                status: status.clone(),
                cancel: cancel.clone(),
            },
        );
        let id = job.id.clone();
        tokio::spawn(self.clone().run(job, lock, status, cancel));
        id
    }

    async fn run(
        self: Arc<Self>,
        job: Job,
        lock: File,
        status: watch::Sender<PullStatus>,
        cancel: Arc<Notify>,
    ) {
        let mut attempts = Box::pin(self.clone().attempts(&job, lock, &status));
        loop {
            tokio::select! {
                biased;
                () = attempts.as_mut() => return,
                () = cancel.notified() => {
                    // Too late once the file is checked and installed.
                    if status.borrow().state != PullState::Verifying {
                        break;
                    }
                }
            }
        }
        // Dropping the attempts stops the download where it is and closes
        // (unlocks) the job file.
        drop(attempts);
        tracing::info!(pull = %job.id, model = %job.name, "pull cancelled");
        self.discard(&job.id);
        status.send_modify(|s| {
            s.finished = Some(Instant::now());
            s.state = PullState::Cancelled;
        });
    }

    /// Downloads and installs, retrying what may pass, and reports the
    /// outcome.
    async fn attempts(self: Arc<Self>, job: &Job, lock: File, status: &watch::Sender<PullStatus>) {
        let _slot = self.slots.clone().acquire_owned().await;
        let partial = self.store.partial_path(&job.id);
        let mut attempt = 0;
        let outcome = loop {
            status.send_modify(|s| s.state = PullState::Downloading);
            let progress = |p: Progress| {
                status.send_modify(|s| {
                    s.completed = p.completed;
                    s.total = p.total;
                })
            };
            let verifying = || status.send_modify(|s| s.state = PullState::Verifying);
            let result = self
                .store
                .install(
                    &job.name,
                    &job.source,
                    job.sha256.as_deref(),
                    &partial,
                    progress,
                    verifying,
                )
                .await;
            match result {
                Err(InferenceError::Unavailable(e)) if attempt < RETRIES => {
                    attempt += 1;
                    let wait = Duration::from_secs(1 << attempt);
                    tracing::warn!(pull = %job.id, model = %job.name, "pull attempt {attempt} failed, retrying in {wait:?}: {e}");
                    tokio::time::sleep(wait).await;
                }
                other => break other,
            }
        };
        match &outcome {
            Ok(entry) => {
                tracing::info!(pull = %job.id, model = %entry.name, digest = %entry.digest(), "model installed")
            }
            Err(e) => tracing::warn!(pull = %job.id, model = %job.name, "pull failed: {e}"),
        }
        self.discard(&job.id);
        drop(lock);
        status.send_modify(|s| {
            s.finished = Some(Instant::now());
            match outcome {
                Ok(entry) => {
                    s.state = PullState::Done;
                    s.model = Some(entry);
                }
                Err(e) => {
                    s.state = PullState::Failed;
                    s.error = Some(e);
                }
            }
        });
    }

    fn job_path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Records `job` durably and locks it. The file is written under
    /// another name and renamed, so it appears whole and already locked.
    fn write_job(&self, job: &Job) -> Result<File, InferenceError> {
        let failed =
            |e: std::io::Error| InferenceError::Unavailable(format!("cannot record the pull: {e}"));
        std::fs::create_dir_all(&self.dir).map_err(failed)?;
        let writing = self.dir.join(format!("{}.writing", job.id));
        let mut file = File::create_new(&writing).map_err(failed)?;
        file.lock()
            .and_then(|()| file.write_all(&serde_json::to_vec(job).expect("jobs serialize")))
            .and_then(|()| file.sync_all())
            .and_then(|()| std::fs::rename(&writing, self.job_path(&job.id)))
            .and_then(|()| File::open(&self.dir)?.sync_all())
            .map_err(failed)?;
        Ok(file)
    }

    /// Locks job `id` if no process runs it; `None` if one does, or if the
    /// job ended meanwhile.
    fn take_over(&self, id: &str) -> Result<Option<(Job, File)>, InferenceError> {
        let path = self.job_path(id);
        let failed = |e: std::io::Error| {
            InferenceError::Unavailable(format!("cannot read {}: {e}", path.display()))
        };
        let file = match File::options().read(true).write(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(failed(e)),
        };
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => return Ok(None),
            Err(std::fs::TryLockError::Error(e)) => return Err(failed(e)),
        }
        // A pull that finished between open and lock has deleted its file.
        if !path.exists() {
            return Ok(None);
        }
        let job: Job = match std::fs::read(&path).map(|b| serde_json::from_slice(&b)) {
            Ok(Ok(job)) => job,
            // A job file cut short by a crash: nothing to resume.
            _ => {
                self.discard(id);
                return Ok(None);
            }
        };
        Ok(Some((job, file)))
    }

    /// A job for `name` that no process runs.
    fn orphan_named(&self, name: &str) -> Result<Option<(Job, File)>, InferenceError> {
        for entry in std::fs::read_dir(&self.dir).into_iter().flatten().flatten() {
            if let Some(id) = job_id(&entry.path(), "json")
                && let Some((job, lock)) = self.take_over(&id)?
                && job.name == name
            {
                return Ok(Some((job, lock)));
            }
        }
        Ok(None)
    }

    /// Deletes pull `id`'s job file and download.
    fn discard(&self, id: &str) {
        let _ = std::fs::remove_file(self.store.partial_path(id));
        let _ = std::fs::remove_file(self.job_path(id));
    }
}

/// Pull ids are 32 lower-case hex digits (a UUID).
fn is_id(id: &str) -> bool {
    id.len() == 32
        && id
            .chars()
            .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
}

/// The pull id of `<id>.<extension>`.
fn job_id(path: &Path, extension: &str) -> Option<String> {
    let id = path
        .file_name()?
        .to_str()?
        .strip_suffix(extension)?
        .strip_suffix('.')?;
    is_id(id).then(|| id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capabilities::inference::egress::Egress;

    fn pulls(dir: &Path) -> Arc<Pulls> {
        Pulls::new(ModelStore::new(dir.to_owned(), Egress::unrestricted()), dir)
    }

    /// A fresh directory, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new() -> TempDir {
            let dir = std::env::temp_dir().join(format!("lamina-pulls-{}", uuid::Uuid::new_v4()));
            std::fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[tokio::test]
    async fn a_bad_pull_leaves_nothing_behind() {
        let dir = TempDir::new();
        let source = dir.path().join("not-a-model.gguf");
        std::fs::write(&source, b"GGUF but not really").unwrap();
        let models = dir.path().join("models");
        let pulls = pulls(&models);
        let source = source.to_str().unwrap();
        let id = pulls.start("x:1", source, None).unwrap();
        let err = pulls.wait(&id, |_| {}).await.unwrap_err();
        assert!(matches!(err, InferenceError::Invalid(_)), "{err:?}");
        let wrong = "0".repeat(64);
        let id = pulls.start("x:1", source, Some(&wrong)).unwrap();
        let err = pulls.wait(&id, |_| {}).await.unwrap_err();
        assert!(err.to_string().contains("sha256 mismatch"), "{err}");
        assert_eq!(pulls.status(&id).unwrap().state, PullState::Failed);
        for sub in ["tmp", "pulls"] {
            assert_eq!(std::fs::read_dir(models.join(sub)).unwrap().count(), 0);
        }
        assert!(pulls.store.list().unwrap().is_empty());
    }

    #[tokio::test]
    async fn resume_sweeps_downloads_without_a_pull() {
        let dir = TempDir::new();
        let pulls = pulls(dir.path());
        let stale = pulls.store.partial_path(&"a".repeat(32));
        std::fs::create_dir_all(stale.parent().unwrap()).unwrap();
        std::fs::write(&stale, b"half a model").unwrap();
        let unrelated = stale.with_file_name("notes.txt");
        std::fs::write(&unrelated, b"").unwrap();
        pulls.resume();
        assert!(!stale.exists());
        assert!(unrelated.exists());
    }

    #[test]
    fn ids_are_checked_before_they_become_paths() {
        assert!(is_id(&uuid::Uuid::new_v4().simple().to_string()));
        for bad in ["", "../x", &"A".repeat(32), &"a".repeat(33)] {
            assert!(!is_id(bad), "{bad}");
        }
        assert_eq!(
            job_id(
                Path::new(&format!("/m/pulls/{}.json", "b".repeat(32))),
                "json"
            ),
            Some("b".repeat(32))
        );
        assert_eq!(job_id(Path::new("/m/pulls/x.json"), "json"), None);
    }
}
