//! Fetches and verifications on their own threads, for the dashboard: events arrive on a channel,
//! `cancel` stops the work at the next chunk (a download keeps its partial files, a new job
//! resumes them). The same `fetch` and `verify_dir_until` the CLI runs.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::inspect::{verify_dir_until, verify_plan, VerifyOutcome};
use super::{fetch, FetchError, FetchEvent, FetchOptions, FetchSummary, HttpClient, RetryPolicy};

/// The environment a job reads (HF_ENDPOINT, HF_TOKEN, caches); the process's by default.
pub type SharedEnv = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Work on its own thread: its events, a cancel flag it checks, and the thread to join.
pub struct BackgroundJob<E> {
    pub events: Receiver<E>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl<E: Send + 'static> BackgroundJob<E> {
    /// Runs `work` on a thread named `name`; `failed` turns a failure to start the thread into
    /// the job's last event.
    fn start(
        name: &str,
        cancel: Arc<AtomicBool>,
        work: impl FnOnce(Sender<E>) + Send + 'static,
        failed: impl FnOnce(FetchError) -> E,
    ) -> Self {
        let (sender, events) = channel();
        let failure = sender.clone();
        let thread = match std::thread::Builder::new()
            .name(name.into())
            .spawn(move || work(sender))
        {
            Ok(thread) => Some(thread),
            Err(err) => {
                let error = FetchError::Invalid(format!("cannot start the {name} thread: {err}"));
                let _ = failure.send(failed(error));
                None
            }
        };
        Self {
            events,
            cancel,
            thread,
        }
    }
}

impl<E> BackgroundJob<E> {
    /// Stops at the next chunk; a `Finished(Err(Cancelled))` follows.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The flag `cancel` sets, for a caller that hands `events` to another thread.
    pub fn cancel_flag(&self) -> Arc<AtomicBool> {
        self.cancel.clone()
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[derive(Debug)]
pub enum FetchJobEvent {
    Progress(FetchEvent),
    /// The last event of a job.
    Finished(Result<FetchSummary, FetchError>),
}

pub type FetchJob = BackgroundJob<FetchJobEvent>;

impl BackgroundJob<FetchJobEvent> {
    /// Starts fetching with the process environment.
    pub fn spawn(options: FetchOptions) -> Self {
        Self::spawn_with(options, Arc::new(super::env::process_env), RetryPolicy::default())
    }

    pub fn spawn_with(options: FetchOptions, env: SharedEnv, retry: RetryPolicy) -> Self {
        let client = HttpClient::new(options.token(&*env), retry);
        let cancel = client.cancel_flag();
        let work = move |sender: Sender<FetchJobEvent>| {
            let result = fetch(&options, &client, &*env, &mut |event| {
                // A dropped receiver means nobody watches; the download goes on regardless.
                let _ = sender.send(FetchJobEvent::Progress(event));
            });
            let _ = sender.send(FetchJobEvent::Finished(result));
        };
        Self::start("fetch", cancel, work, |e| FetchJobEvent::Finished(Err(e)))
    }
}

#[derive(Debug)]
pub enum VerifyJobEvent {
    /// What will be checked: the recorded files and their bytes (0 and 0 when nothing was
    /// recorded and only the structure is checked).
    Planned { files: usize, bytes: u64 },
    /// Hashing of a file began.
    FileStarted { path: String, size: u64 },
    /// Bytes of the current file hashed so far.
    Progress { done: u64 },
    /// The last event of a job.
    Finished(Result<VerifyOutcome, FetchError>),
}

pub type VerifyJob = BackgroundJob<VerifyJobEvent>;

impl BackgroundJob<VerifyJobEvent> {
    /// Checks every file of the checkpoint at `dir` against its recorded size and hash.
    pub fn spawn(dir: PathBuf) -> Self {
        let cancel = Arc::new(AtomicBool::new(false));
        let stop = cancel.clone();
        let work = move |sender: Sender<VerifyJobEvent>| {
            // An unreadable manifest is reported by `verify_dir_until` below.
            let (files, bytes) = match verify_plan(&dir) {
                Ok((_, files)) if !files.is_empty() => (files.len(), files.iter().map(|f| f.size).sum()),
                _ => (0, 0),
            };
            let _ = sender.send(VerifyJobEvent::Planned { files, bytes });
            let mut current = String::new();
            let result = verify_dir_until(
                &dir,
                &mut |path, done, size| {
                    if path != current {
                        current = path.to_string();
                        let _ = sender.send(VerifyJobEvent::FileStarted {
                            path: current.clone(),
                            size,
                        });
                    }
                    let _ = sender.send(VerifyJobEvent::Progress { done });
                },
                &|| stop.load(Ordering::Relaxed),
            );
            let _ = sender.send(VerifyJobEvent::Finished(result));
        };
        Self::start("verify", cancel, work, |e| VerifyJobEvent::Finished(Err(e)))
    }
}
