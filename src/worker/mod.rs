//! The thread that owns the device and the model. `Command`s in, `Event`s out; jobs run one at a
//! time; a failed job (OOM, bad input, I/O) is reported and the worker goes on.
//! Headless commands and the TUI drive the same worker: one engine, two faces.
//!
//! ```text
//! let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
//! let worker = worker::spawn(tx)?;
//! worker.load_model(ModelSpec::Demo, LoadOptions::default());
//! worker.submit(job);
//! while let Some(event) = rx.blocking_recv() { ... }   // or `rx.recv().await` in select!
//! ```

mod engine;
mod run;
mod stress;

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::mpsc::UnboundedSender;

use crate::bench::stress::{StressEvent, StressRequest};
use crate::model::loader::{LoadOptions, ModelSpec};
use crate::model::pipeline::ModelInfo;
use crate::model::{GenerationRequest, RgbImage, Stage, StageTimings};

pub use engine::{Engine, EngineLoader, PipelineLoader, VramProbe};

pub type JobId = u64;

/// One generation job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: JobId,
    pub request: GenerationRequest,
    /// PNG destination; `None` = keep the image in memory only (bench runs).
    pub output: Option<PathBuf>,
    /// Send cheap latent previews after each step.
    pub previews: bool,
    /// Test hook (bench OOM containment): fail this job as if the device ran out of memory after
    /// this many denoising steps (0 = before the first). The worker stops the pipeline through
    /// its cancel check, so intermediate tensors are dropped exactly as on a real error, and
    /// reports `FailureKind::OutOfMemory`; the model stays loaded. `None` in normal use.
    pub inject_oom_after_step: Option<usize>,
}

impl Job {
    /// A job with no file output, no previews and no injected failure.
    pub fn new(id: JobId, request: GenerationRequest) -> Self {
        Self {
            id,
            request,
            output: None,
            previews: false,
            inject_oom_after_step: None,
        }
    }
}

#[derive(Debug)]
pub enum Command {
    LoadModel {
        spec: ModelSpec,
        options: LoadOptions,
    },
    Submit(Job),
    Cancel(JobId),
    /// Run a bench plan (the Stress view) on the loaded model: the same runner as
    /// `zimage-tui bench`; progress comes back as `Event::Stress`. Work sent meanwhile waits.
    Stress(Box<StressRequest>),
    /// Stop the stress run: the running job is cancelled, the report keeps what was measured.
    CancelStress,
    Shutdown,
}

/// Why a job failed; the worker goes on after each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum FailureKind {
    OutOfMemory,
    BadInput,
    Io,
    Cancelled,
    Internal,
}

impl FailureKind {
    /// Short lower-case label for UIs and JSON ("out of memory", "cancelled", ...).
    pub fn label(self) -> &'static str {
        match self {
            Self::OutOfMemory => "out of memory",
            Self::BadInput => "bad input",
            Self::Io => "I/O error",
            Self::Cancelled => "cancelled",
            Self::Internal => "internal error",
        }
    }
}

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub path: Option<PathBuf>,
    pub image: RgbImage,
    pub timings: StageTimings,
    /// Time to encode and write the PNG (zero without an output path).
    pub save: Duration,
    /// Peak device memory during the job, where the device can tell.
    pub peak_vram_bytes: Option<u64>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Event {
    /// Model loading progress of one component; `total` 0 = unknown (random weights).
    Loading {
        part: String,
        done: u64,
        total: u64,
    },
    Loaded {
        info: ModelInfo,
        secs: f64,
    },
    LoadFailed {
        message: String,
    },
    Started {
        job: JobId,
    },
    Stage {
        job: JobId,
        stage: Stage,
    },
    Step {
        job: JobId,
        step: usize,
        total: usize,
        secs: f64,
    },
    Preview {
        job: JobId,
        step: usize,
        image: RgbImage,
    },
    Done {
        job: JobId,
        output: Box<JobOutput>,
    },
    Failed {
        job: JobId,
        kind: FailureKind,
        message: String,
    },
    /// A line for the log pane.
    Log {
        message: String,
    },
    /// Progress of a stress run (`Command::Stress`).
    Stress(StressEvent),
}

/// How to build a worker: what loads models, and where peak VRAM comes from.
pub struct WorkerConfig {
    pub loader: Box<dyn EngineLoader>,
    /// Device memory sampler for per-job peak VRAM (`None`: peaks are not reported).
    pub vram: Option<Box<dyn VramProbe>>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            loader: Box::new(PipelineLoader),
            vram: None,
        }
    }
}

/// The caller's side of a worker: send commands; events arrive on the channel given to `spawn`.
/// Dropping it shuts the worker down (the running job is cancelled) and waits for the thread.
pub struct WorkerHandle {
    commands: mpsc::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

/// Starts a worker with the real model loader.
pub fn spawn(events: UnboundedSender<Event>) -> std::io::Result<WorkerHandle> {
    spawn_with(WorkerConfig::default(), events)
}

/// Starts a worker with a given loader and VRAM probe.
pub fn spawn_with(config: WorkerConfig, events: UnboundedSender<Event>) -> std::io::Result<WorkerHandle> {
    let (commands, inbox) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("zimage-worker".into())
        .spawn(move || run::Worker::new(config, inbox, events).run())?;
    Ok(WorkerHandle {
        commands,
        thread: Some(thread),
    })
}

impl WorkerHandle {
    /// Sends a command; `false` when the worker has stopped.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok()
    }

    pub fn load_model(&self, spec: ModelSpec, options: LoadOptions) -> bool {
        self.send(Command::LoadModel { spec, options })
    }

    pub fn submit(&self, job: Job) -> bool {
        self.send(Command::Submit(job))
    }

    /// Removes a queued job, or stops the running one at its next step (or before decode).
    pub fn cancel(&self, job: JobId) -> bool {
        self.send(Command::Cancel(job))
    }

    /// Starts a bench run on the loaded model (after the work queued before it).
    pub fn stress(&self, request: StressRequest) -> bool {
        self.send(Command::Stress(Box::new(request)))
    }

    /// Stops the worker after cancelling the running job, and waits for it.
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests;
