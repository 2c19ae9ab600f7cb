//! Everything the dashboard shows, in one plain value. The reducer changes it; `ui::draw` reads it.
//! No clocks and no randomness in here: time arrives in actions (`at`), seeds come from a
//! deterministic generator seeded by the caller, so tests and snapshots are reproducible.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::Duration;

use crate::model::pipeline::ModelInfo;
use crate::model::{RgbImage, Stage, StageTimings};
use crate::worker::{FailureKind, JobId};

use super::editor::Draft;
use super::keymap::Keymap;

/// The panes Tab cycles through, in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pane {
    Queue,
    Editor,
    Progress,
    Gpu,
    Preview,
    Log,
}

impl Pane {
    pub const ALL: [Pane; 6] = [
        Pane::Queue,
        Pane::Editor,
        Pane::Progress,
        Pane::Gpu,
        Pane::Preview,
        Pane::Log,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Pane::Queue => "Queue",
            Pane::Editor => "Prompt",
            Pane::Progress => "Progress",
            Pane::Gpu => "GPU",
            Pane::Preview => "Preview",
            Pane::Log => "Log",
        }
    }

    pub fn next(self) -> Pane {
        let i = Self::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    pub fn prev(self) -> Pane {
        let i = Self::ALL.iter().position(|p| *p == self).unwrap_or(0);
        Self::ALL[(i + Self::ALL.len() - 1) % Self::ALL.len()]
    }
}

/// What the keyboard is talking to right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Keys are commands (vim-like normal mode).
    Normal,
    /// Keys type into the multi-line prompt editor.
    InsertPrompt,
    /// Keys type into the one-line input at the bottom (a draft field or a session path).
    LineInput(LineInputPurpose),
    /// The help overlay is open.
    Help,
    /// `q` while a job runs: asks first.
    ConfirmQuit,
    /// The model picker overlay (`m`).
    Models,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineInputPurpose {
    Size,
    Steps,
    Seed,
    SaveSession,
    LoadSession,
    /// The model picker's "download into a folder".
    DownloadDir,
    /// A row of the Stress view's form.
    Stress(super::stress::StressField),
}

impl LineInputPurpose {
    pub fn label(self) -> &'static str {
        match self {
            LineInputPurpose::Size => "Size (WIDTHxHEIGHT)",
            LineInputPurpose::Steps => "Steps",
            LineInputPurpose::Seed => "Seed (number or \"random\")",
            LineInputPurpose::SaveSession => "Save session to",
            LineInputPurpose::LoadSession => "Load session from",
            LineInputPurpose::DownloadDir => "Download the checkpoint into",
            LineInputPurpose::Stress(field) => field.input_label(),
        }
    }
}

/// A job's seed as the user chose it: drawn when the job starts, or fixed (the session's type).
pub use crate::session::SeedChoice;

impl std::fmt::Display for SeedChoice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SeedChoice::Random => f.write_str("random"),
            SeedChoice::Fixed(seed) => write!(f, "{seed}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum JobStatus {
    Queued,
    /// Submitted to the worker; `step` of `total` denoising steps done.
    Running {
        step: usize,
        total: usize,
    },
    /// Finished; wall time from start to saved PNG.
    Done {
        secs: f64,
    },
    Failed {
        kind: FailureKind,
        reason: String,
    },
    Cancelled,
}

impl JobStatus {
    pub fn is_finished(&self) -> bool {
        matches!(
            self,
            JobStatus::Done { .. } | JobStatus::Failed { .. } | JobStatus::Cancelled
        )
    }
}

/// One row of the queue.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueEntry {
    pub id: JobId,
    pub prompt: String,
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub seed: SeedChoice,
    /// The seed actually used, once the job started.
    pub used_seed: Option<u64>,
    pub status: JobStatus,
    pub output: Option<PathBuf>,
    pub timings: Option<StageTimings>,
    pub peak_vram_bytes: Option<u64>,
}

/// The running job's live numbers. Times are offsets from the app start (`Action` `at`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RunProgress {
    pub job: JobId,
    pub started_at: Duration,
    pub stage: Option<Stage>,
    pub stage_started_at: Duration,
    pub step: usize,
    pub total: usize,
    /// Seconds per finished denoising step.
    pub step_secs: Vec<f64>,
    /// Encode wall time, known once denoising starts.
    pub encode_secs: Option<f64>,
    /// Cancel was sent; the worker stops at the next check.
    pub cancel_requested: bool,
    /// Highest memory the sampler saw while this job ran (device, or process RSS without GPU).
    pub peak_memory_bytes: Option<u64>,
}

impl RunProgress {
    pub fn mean_step_secs(&self) -> Option<f64> {
        if self.step_secs.is_empty() {
            None
        } else {
            Some(self.step_secs.iter().sum::<f64>() / self.step_secs.len() as f64)
        }
    }

    pub fn iterations_per_sec(&self) -> Option<f64> {
        self.mean_step_secs().filter(|s| *s > 0.0).map(|s| 1.0 / s)
    }

    /// Remaining denoising time plus the last known decode+save time.
    pub fn eta_secs(&self, decode_estimate: Option<f64>) -> Option<f64> {
        let mean = self.mean_step_secs()?;
        let remaining = self.total.saturating_sub(self.step) as f64 * mean;
        Some(remaining + decode_estimate.unwrap_or(0.0))
    }
}

/// Timings of the last finished job, for the progress pane.
#[derive(Debug, Clone, PartialEq)]
pub struct FinishedRun {
    pub job: JobId,
    pub timings: StageTimings,
    /// Wall time after decode until the PNG was written (save), if measurable.
    pub save_secs: Option<f64>,
    pub total_secs: f64,
    pub peak_vram_bytes: Option<u64>,
    /// Highest memory the sampler saw during the job (device, or process RSS without GPU).
    pub peak_memory_sampled: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelStatus {
    /// `part` of the model being read, `done` of `total` units.
    Loading {
        part: String,
        done: u64,
        total: u64,
    },
    Ready {
        info: ModelInfo,
        load_secs: f64,
    },
    Failed {
        message: String,
    },
}

/// One GPU telemetry reading, as the GPU pane needs it (adapted from `crate::gpu`).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuReading {
    pub name: String,
    pub used_bytes: u64,
    pub total_bytes: u64,
    pub utilization_percent: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_watts: Option<f64>,
    pub power_limit_watts: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct GpuView {
    /// Latest reading; `None` while there is no telemetry.
    pub reading: Option<GpuReading>,
    /// Why there is no telemetry (e.g. "NVML not found"), shown instead of the gauges.
    pub unavailable: Option<String>,
    /// This process's resident memory, shown when there is no GPU telemetry.
    pub process_rss_bytes: Option<u64>,
    /// The machine's memory, when there is no GPU telemetry.
    pub memory_total_bytes: Option<u64>,
    /// Memory used (bytes), oldest first, one entry per sample.
    pub history: VecDeque<u64>,
}

/// How many GPU samples the sparkline keeps (4 per second × 5 minutes).
pub const GPU_HISTORY: usize = 1200;
pub const LOG_LINES: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    Info,
    Warn,
    Error,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: LogLevel,
    pub text: String,
}

/// The image in the preview pane.
#[derive(Debug, Clone, PartialEq)]
pub struct PreviewImage {
    pub job: JobId,
    /// `Some(step)` for a latent preview, `None` for the finished image.
    pub step: Option<usize>,
    pub image: RgbImage,
}

/// Defaults for new jobs and where things go; filled from the config by the caller.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub output_dir: PathBuf,
    /// Prefix of output file names, unique per run of the app (e.g. a start timestamp).
    pub output_prefix: String,
    pub previews: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            width: 1024,
            height: 1024,
            steps: 8,
            output_dir: PathBuf::from("."),
            output_prefix: "zimage".into(),
            previews: true,
        }
    }
}

pub struct AppState {
    pub focus: Pane,
    pub mode: Mode,
    pub queue: Vec<QueueEntry>,
    /// Index into `queue` of the highlighted row.
    pub selected: usize,
    pub next_id: JobId,
    pub draft: Draft,
    pub running: Option<RunProgress>,
    pub last_run: Option<FinishedRun>,
    pub model: ModelStatus,
    pub gpu: GpuView,
    pub preview: Option<PreviewImage>,
    pub log: VecDeque<LogLine>,
    /// Lines scrolled up from the bottom of the log.
    pub log_scroll: usize,
    /// One-line message in the status bar (last action's result).
    pub message: Option<LogLine>,
    pub settings: Settings,
    /// Where the session is autosaved and explicit saves go.
    pub session_path: Option<PathBuf>,
    /// When true, no new job starts (after Ctrl-C cancelled one, or `p`).
    pub paused: bool,
    /// Time since app start, from the last action that carried it.
    pub now: Duration,
    /// Bumped on every change worth saving; the event loop autosaves when it moves.
    pub revision: u64,
    /// Set when the app should exit; the loop stops after this.
    pub quitting: bool,
    /// State of the seed generator (splitmix64), seeded by the caller.
    pub rng_state: u64,
    /// The key bindings (defaults + config overrides): resolves keys, generates hints and help.
    pub keymap: Keymap,
    /// The Stress view (bench runs on the worker) and its current or last run.
    pub stress: super::stress::StressView,
    /// The model picker, the model asked for, and download/verify jobs (`app::models`).
    pub models: super::models::ModelsState,
}

impl AppState {
    pub fn new(settings: Settings, rng_seed: u64) -> Self {
        let draft = Draft::new(&settings);
        Self {
            focus: Pane::Editor,
            mode: Mode::Normal,
            queue: Vec::new(),
            selected: 0,
            next_id: 1,
            draft,
            running: None,
            last_run: None,
            model: ModelStatus::Loading {
                part: "starting".into(),
                done: 0,
                total: 0,
            },
            gpu: GpuView::default(),
            preview: None,
            log: VecDeque::new(),
            log_scroll: 0,
            message: None,
            settings,
            session_path: None,
            paused: false,
            now: Duration::ZERO,
            revision: 0,
            quitting: false,
            rng_state: rng_seed,
            keymap: Keymap::default(),
            stress: Default::default(),
            models: Default::default(),
        }
    }

    pub fn selected_entry(&self) -> Option<&QueueEntry> {
        self.queue.get(self.selected)
    }

    pub fn entry(&self, id: JobId) -> Option<&QueueEntry> {
        self.queue.iter().find(|e| e.id == id)
    }

    pub fn entry_mut(&mut self, id: JobId) -> Option<&mut QueueEntry> {
        self.queue.iter_mut().find(|e| e.id == id)
    }

    pub fn running_job(&self) -> Option<JobId> {
        self.running.as_ref().map(|r| r.job)
    }

    pub fn model_ready(&self) -> bool {
        matches!(self.model, ModelStatus::Ready { .. })
    }

    pub fn push_log(&mut self, level: LogLevel, text: impl Into<String>) {
        if self.log.len() >= LOG_LINES {
            self.log.pop_front();
        }
        self.log.push_back(LogLine {
            level,
            text: text.into(),
        });
    }

    /// Status-bar message, also kept in the log.
    pub fn notify(&mut self, level: LogLevel, text: impl Into<String>) {
        let text = text.into();
        self.push_log(level, text.clone());
        self.message = Some(LogLine { level, text });
    }

    /// Next pseudo-random seed (splitmix64): reproducible from `rng_state`.
    pub fn next_random_seed(&mut self) -> u64 {
        self.rng_state = self.rng_state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng_state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        // Keep seeds within i64 so every tool (and TOML) can hold them.
        (z ^ (z >> 31)) >> 1
    }
}
