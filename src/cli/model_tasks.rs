//! The dashboard's model work, all off the UI thread: discovery (`loader::discover` plus
//! `inspect_dir`, which reads every safetensors header) and download/verify jobs on their own
//! threads (`fetch::job`). Their events are adapted to `app::models` types and handed to a sink
//! (the event loop's action channel), a progress report at most every `PROGRESS_EVERY`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::app::models::{
    CandidateOrigin, Discovery, ModelCandidate, ModelJobEvent, ModelJobKind, ModelJobOutcome, ModelJobRequest,
};
use crate::fetch::env::EnvLookup;
use crate::fetch::inspect::{inspect_dir, VerifyBasis};
use crate::fetch::job::{BackgroundJob, FetchJob, FetchJobEvent, SharedEnv, VerifyJob, VerifyJobEvent};
use crate::fetch::{FetchError, FetchEvent, FetchOptions, Layout, RetryPolicy, Source, TransferEvent};
use crate::model::loader::{self, FoundModel, ModelSpec, SearchPaths};

/// How often progress reaches the app at most (hashing runs at GB/s: 1 MiB chunks would flood
/// the event loop).
pub const PROGRESS_EVERY: Duration = Duration::from_millis(100);

/// Every checkpoint the loader finds, described as `zimage-tui models` does, then the folders in
/// `also` (downloads into a chosen folder) it did not find, and where a download from each hub
/// goes. Reads headers: call it off the UI thread.
pub fn discover(paths: &SearchPaths, env: EnvLookup, also: &[PathBuf]) -> Discovery {
    let found = loader::discover(paths);
    let extra: Vec<FoundModel> = also
        .iter()
        .filter(|dir| !found.iter().any(|f| &f.path == *dir))
        .map(|dir| {
            let problem = loader::validate_dir(dir).err().map(|e| e.to_string());
            FoundModel {
                path: dir.clone(),
                // Only the origin shown differs; see below.
                source: loader::ModelSource::Flag,
                valid: problem.is_none(),
                problem,
                default: false,
            }
        })
        .collect();
    let mut candidates: Vec<ModelCandidate> = found.into_iter().map(describe).collect();
    candidates.extend(extra.into_iter().map(|f| ModelCandidate {
        origin: CandidateOrigin::Downloaded,
        ..describe(f)
    }));
    let targets = [Source::HuggingFace, Source::ModelScope]
        .into_iter()
        .map(|source| (source, download_target(source, env)))
        .collect();
    Discovery { candidates, targets }
}

/// Where `zimage-tui fetch --source S` (no `--dir`) puts the checkpoint.
pub fn download_target(source: Source, env: EnvLookup) -> PathBuf {
    match FetchOptions::new(source).layout(env) {
        Layout::HfCache { repo_root } => repo_root,
        Layout::Plain { dir } => dir,
    }
}

fn describe(found: FoundModel) -> ModelCandidate {
    let report = inspect_dir(&found.path);
    let problem = report.problems.first().cloned().or(found.problem);
    ModelCandidate {
        spec: ModelSpec::Dir(found.path),
        origin: CandidateOrigin::Found(found.source),
        bytes: Some(report.bytes),
        complete: found.valid && report.complete(),
        problem,
        dtypes: report
            .components
            .iter()
            .filter(|c| !c.dtypes.is_empty())
            .map(|c| (c.name.clone(), c.dtypes.clone()))
            .collect(),
        bf16_cache: report.components.iter().any(|c| c.converted.is_some()),
        partial_files: report.partial_files.len(),
        default: found.default,
    }
}

/// A running download or verification: its cancel flag and the thread forwarding its events.
pub struct ModelTask {
    cancel: Arc<AtomicBool>,
    pump: JoinHandle<()>,
}

impl ModelTask {
    /// Stops at the next chunk; a `Finished(Cancelled)` follows.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    /// The last event was handed to the sink.
    pub fn is_finished(&self) -> bool {
        self.pump.is_finished()
    }

    pub fn join(self) {
        let _ = self.pump.join();
    }
}

/// Starts a model job: a download reads the hub and caches from `env` (like `zimage-tui fetch`),
/// a verification hashes the checkpoint's files. Every event goes to `sink`, the last one
/// `ModelJobEvent::Finished`.
pub fn start(
    request: &ModelJobRequest,
    env: SharedEnv,
    retry: RetryPolicy,
    sink: impl FnMut(ModelJobEvent) + Send + 'static,
) -> std::io::Result<ModelTask> {
    match &request.kind {
        ModelJobKind::Download { source, dir } => {
            let options = FetchOptions {
                dir: dir.as_deref().map(crate::config::expand_home),
                ..FetchOptions::new(*source)
            };
            let job = FetchJob::spawn_with(options, env, retry);
            pump_thread(job, download_events, sink)
        }
        ModelJobKind::Verify { dir } => {
            let job = VerifyJob::spawn(dir.clone());
            let mut adapter = VerifyAdapter::default();
            pump_thread(job, move |event| adapter.map(event), sink)
        }
    }
}

/// Forwards a job's events through `map` to `sink` on a thread of its own, holding back
/// progress reports that come faster than `PROGRESS_EVERY` (the latest one wins).
fn pump_thread<E: Send + 'static>(
    job: BackgroundJob<E>,
    mut map: impl FnMut(E) -> Vec<ModelJobEvent> + Send + 'static,
    mut sink: impl FnMut(ModelJobEvent) + Send + 'static,
) -> std::io::Result<ModelTask> {
    let cancel = job.cancel_flag();
    let pump = std::thread::Builder::new()
        .name("model-job-events".into())
        .spawn(move || {
            forward(&job.events, &mut map, &mut sink);
            job.join();
        });
    match pump {
        Ok(pump) => Ok(ModelTask { cancel, pump }),
        Err(err) => {
            // Nobody would forward the job's events: stop it.
            cancel.store(true, Ordering::Relaxed);
            Err(err)
        }
    }
}

fn forward<E>(
    events: &Receiver<E>,
    map: &mut dyn FnMut(E) -> Vec<ModelJobEvent>,
    sink: &mut dyn FnMut(ModelJobEvent),
) {
    let mut held: Option<ModelJobEvent> = None;
    let mut last_sent = Instant::now() - PROGRESS_EVERY;
    loop {
        let event = match events.recv_timeout(PROGRESS_EVERY) {
            Ok(event) => event,
            Err(RecvTimeoutError::Timeout) => {
                if let Some(progress) = held.take() {
                    sink(progress);
                    last_sent = Instant::now();
                }
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => {
                held.take().into_iter().for_each(&mut *sink);
                sink(ModelJobEvent::Finished(ModelJobOutcome::Failed(
                    "the job's thread ended without a result".into(),
                )));
                return;
            }
        };
        for mapped in map(event) {
            if matches!(mapped, ModelJobEvent::FileProgress { .. }) {
                if last_sent.elapsed() >= PROGRESS_EVERY {
                    held = None;
                    sink(mapped);
                    last_sent = Instant::now();
                } else {
                    held = Some(mapped);
                }
                continue;
            }
            held.take().into_iter().for_each(&mut *sink);
            let last = matches!(mapped, ModelJobEvent::Finished(_));
            sink(mapped);
            if last {
                return;
            }
        }
    }
}

fn download_events(event: FetchJobEvent) -> Vec<ModelJobEvent> {
    let note = |path: &str, event: TransferEvent| match event {
        TransferEvent::Progress { done, .. } => ModelJobEvent::FileProgress { done },
        TransferEvent::Retrying {
            attempt,
            reason,
            delay,
        } => ModelJobEvent::Note(format!(
            "{path}: {reason}; retry {attempt} in {:.1} s",
            delay.as_secs_f64()
        )),
        TransferEvent::Discarded { reason } => ModelJobEvent::Note(format!("{path}: {reason}")),
    };
    vec![match event {
        FetchJobEvent::Progress(FetchEvent::Planned {
            model_dir,
            files,
            missing,
            missing_bytes,
            ..
        }) => ModelJobEvent::Planned {
            dir: Some(model_dir),
            files: missing,
            bytes: missing_bytes,
            present: files - missing,
        },
        FetchJobEvent::Progress(FetchEvent::FileStarted { path, size }) => {
            ModelJobEvent::FileStarted { path, size }
        }
        FetchJobEvent::Progress(FetchEvent::Transfer { path, event }) => note(&path, event),
        FetchJobEvent::Progress(FetchEvent::FileDone { .. }) => ModelJobEvent::FileDone,
        FetchJobEvent::Progress(FetchEvent::ListingRetry { event }) => note("file list", event),
        FetchJobEvent::Finished(Ok(summary)) => ModelJobEvent::Finished(ModelJobOutcome::Downloaded {
            dir: summary.model_dir,
            files: summary.files,
            fetched: summary.fetched,
            bytes: summary.bytes,
        }),
        FetchJobEvent::Finished(Err(err)) => ModelJobEvent::Finished(failure(err)),
    }]
}

fn failure(err: FetchError) -> ModelJobOutcome {
    match err {
        FetchError::Cancelled => ModelJobOutcome::Cancelled,
        err => ModelJobOutcome::Failed(err.to_string()),
    }
}

/// Verification reports bytes per file; the app also wants to know when each file is done.
#[derive(Default)]
struct VerifyAdapter {
    file_open: bool,
}

impl VerifyAdapter {
    fn close_file(&mut self, out: &mut Vec<ModelJobEvent>) {
        if std::mem::take(&mut self.file_open) {
            out.push(ModelJobEvent::FileDone);
        }
    }

    fn map(&mut self, event: VerifyJobEvent) -> Vec<ModelJobEvent> {
        let mut out = Vec::new();
        match event {
            VerifyJobEvent::Planned { files, bytes } => out.push(ModelJobEvent::Planned {
                dir: None,
                files,
                bytes,
                present: 0,
            }),
            VerifyJobEvent::FileStarted { path, size } => {
                self.close_file(&mut out);
                self.file_open = true;
                out.push(ModelJobEvent::FileStarted { path, size });
            }
            VerifyJobEvent::Progress { done } => out.push(ModelJobEvent::FileProgress { done }),
            VerifyJobEvent::Finished(Ok(outcome)) => match outcome.first_bad {
                Some(bad) => out.push(ModelJobEvent::Finished(ModelJobOutcome::BadFile(bad))),
                None => {
                    self.close_file(&mut out);
                    let basis = match outcome.basis {
                        VerifyBasis::Manifest => "against the hub's file list",
                        VerifyBasis::HfBlobNames => "against the HF cache's blob hashes",
                        VerifyBasis::StructureOnly => "for presence and size only (no hashes recorded here)",
                    };
                    out.push(ModelJobEvent::Finished(ModelJobOutcome::Verified {
                        checked: outcome.checked,
                        bytes: outcome.bytes,
                        basis: basis.into(),
                    }));
                }
            },
            VerifyJobEvent::Finished(Err(err)) => out.push(ModelJobEvent::Finished(failure(err))),
        }
        out
    }
}
