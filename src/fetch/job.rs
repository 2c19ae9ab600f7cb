//! A fetch on its own thread, for the dashboard: events arrive on a channel, `cancel` stops it at
//! the next chunk (partial files are kept, a new job resumes them). The same `fetch` the CLI runs.

use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use super::{fetch, FetchError, FetchEvent, FetchOptions, FetchSummary, HttpClient, RetryPolicy};

/// The environment a job reads (HF_ENDPOINT, HF_TOKEN, caches); the process's by default.
pub type SharedEnv = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

#[derive(Debug)]
pub enum FetchJobEvent {
    Progress(FetchEvent),
    /// The last event of a job.
    Finished(Result<FetchSummary, FetchError>),
}

pub struct FetchJob {
    pub events: Receiver<FetchJobEvent>,
    cancel: Arc<std::sync::atomic::AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FetchJob {
    /// Starts fetching with the process environment.
    pub fn spawn(options: FetchOptions) -> Self {
        Self::spawn_with(options, Arc::new(super::env::process_env), RetryPolicy::default())
    }

    pub fn spawn_with(options: FetchOptions, env: SharedEnv, retry: RetryPolicy) -> Self {
        let client = HttpClient::new(options.token(&*env), retry);
        let cancel = client.cancel_flag();
        let (sender, events) = channel();
        let failure = sender.clone();
        let thread = std::thread::Builder::new()
            .name("fetch".into())
            .spawn(move || {
                let progress = sender.clone();
                let result = fetch(&options, &client, &*env, &mut |event| {
                    // A dropped receiver means nobody watches; the download goes on regardless.
                    let _ = progress.send(FetchJobEvent::Progress(event));
                });
                let _ = sender.send(FetchJobEvent::Finished(result));
            })
            .map_err(|err| {
                let error = FetchError::Invalid(format!("cannot start the download thread: {err}"));
                let _ = failure.send(FetchJobEvent::Finished(Err(error)));
            })
            .ok();
        Self {
            events,
            cancel,
            thread,
        }
    }

    /// Stops at the next chunk; a `Finished(Err(Cancelled))` follows.
    pub fn cancel(&self) {
        self.cancel.store(true, std::sync::atomic::Ordering::Relaxed);
    }

    /// Waits for the thread to end.
    pub fn join(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
