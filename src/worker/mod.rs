//! The thread that owns the device and the model. `Command`s in, `Event`s out; jobs run one at a
//! time; a failed job (OOM, bad input, I/O) is reported and the worker goes on. Owner: helper C.
//! Headless commands and the TUI drive the same worker: one engine, two faces.

use std::path::PathBuf;

use crate::model::loader::{LoadOptions, ModelSpec};
use crate::model::pipeline::ModelInfo;
use crate::model::{GenerationRequest, RgbImage, Stage, StageTimings};

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
    LoadModel { spec: ModelSpec, options: LoadOptions },
    Submit(Job),
    Cancel(JobId),
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

/// What a finished job produced.
#[derive(Debug, Clone)]
pub struct JobOutput {
    pub path: Option<PathBuf>,
    pub image: RgbImage,
    pub timings: StageTimings,
    /// Peak device memory during the job, where the device can tell.
    pub peak_vram_bytes: Option<u64>,
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum Event {
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
}
