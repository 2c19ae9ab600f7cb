//! What can happen to the app (`Action`), what the user can ask for by key (`Intent`), and what
//! the reducer asks the outside world to do (`Effect`).

use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::KeyEvent;

use super::models::{ModelsAction, ModelsEffect};
use super::state::{GpuReading, LogLevel, QueueEntry};
use crate::worker::{Command, Event};

/// A user command, bound to keys in `keymap`. Fieldless so the keymap can be a static table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    Quit,
    /// Ctrl-C: cancel the running job; with none running, quit.
    Interrupt,
    ToggleHelp,
    FocusNext,
    FocusPrev,
    Up,
    Down,
    Top,
    Bottom,
    /// Queue the draft as a new job (or update the queued job it edits).
    QueueDraft,
    /// Start typing into the prompt.
    EditPrompt,
    /// Edit the selected draft row (prompt, size, steps, seed).
    EditField,
    /// Load the selected job into the editor.
    EditJob,
    DuplicateJob,
    DeleteJob,
    MoveJobUp,
    MoveJobDown,
    /// Queue a copy of the selected job with a new random seed.
    RerunJob,
    CancelJob,
    TogglePause,
    SaveSession,
    LoadSession,
    StepsUp,
    StepsDown,
    NextSize,
    /// Random seed ↔ fixed seed (a fixed one is drawn when switching).
    ToggleSeed,
    /// Leave the prompt editor (text kept).
    FinishInsert,
    HistoryPrev,
    HistoryNext,
    SubmitLine,
    CancelLine,
    /// Empty the one-line input.
    ClearLine,
    ConfirmYes,
    ConfirmNo,
    /// Open or close the Stress view.
    ToggleStress,
    /// Stress view: cycle runs → sweep → soak → all.
    StressNextMode,
    StartStress,
    CancelStress,
    /// Open the model picker.
    OpenModels,
    CloseModels,
    /// Load the picker's selected model through the worker.
    LoadModel,
    VerifyModel,
    DownloadModel,
    /// Download into a directory typed in the one-line input.
    DownloadModelTo,
    /// Hugging Face ↔ ModelScope for downloads.
    ToggleFetchSource,
    RescanModels,
}

impl Intent {
    pub const ALL: [Intent; 46] = [
        Intent::Quit,
        Intent::Interrupt,
        Intent::ToggleHelp,
        Intent::FocusNext,
        Intent::FocusPrev,
        Intent::Up,
        Intent::Down,
        Intent::Top,
        Intent::Bottom,
        Intent::QueueDraft,
        Intent::EditPrompt,
        Intent::EditField,
        Intent::EditJob,
        Intent::DuplicateJob,
        Intent::DeleteJob,
        Intent::MoveJobUp,
        Intent::MoveJobDown,
        Intent::RerunJob,
        Intent::CancelJob,
        Intent::TogglePause,
        Intent::SaveSession,
        Intent::LoadSession,
        Intent::StepsUp,
        Intent::StepsDown,
        Intent::NextSize,
        Intent::ToggleSeed,
        Intent::FinishInsert,
        Intent::HistoryPrev,
        Intent::HistoryNext,
        Intent::SubmitLine,
        Intent::CancelLine,
        Intent::ClearLine,
        Intent::ConfirmYes,
        Intent::ConfirmNo,
        Intent::ToggleStress,
        Intent::StressNextMode,
        Intent::StartStress,
        Intent::CancelStress,
        Intent::OpenModels,
        Intent::CloseModels,
        Intent::LoadModel,
        Intent::VerifyModel,
        Intent::DownloadModel,
        Intent::DownloadModelTo,
        Intent::ToggleFetchSource,
        Intent::RescanModels,
    ];

    /// The action's name in the config's `[keys]` table.
    pub fn name(self) -> &'static str {
        match self {
            Intent::Quit => "quit",
            Intent::Interrupt => "interrupt",
            Intent::ToggleHelp => "help",
            Intent::FocusNext => "next_pane",
            Intent::FocusPrev => "prev_pane",
            Intent::Up => "up",
            Intent::Down => "down",
            Intent::Top => "top",
            Intent::Bottom => "bottom",
            Intent::QueueDraft => "add_job",
            Intent::EditPrompt => "type_prompt",
            Intent::EditField => "edit_field",
            Intent::EditJob => "edit_job",
            Intent::DuplicateJob => "duplicate_job",
            Intent::DeleteJob => "delete_job",
            Intent::MoveJobUp => "move_job_up",
            Intent::MoveJobDown => "move_job_down",
            Intent::RerunJob => "rerun_job",
            Intent::CancelJob => "cancel_job",
            Intent::TogglePause => "pause",
            Intent::SaveSession => "save_session",
            Intent::LoadSession => "load_session",
            Intent::StepsUp => "steps_up",
            Intent::StepsDown => "steps_down",
            Intent::NextSize => "next_size",
            Intent::ToggleSeed => "toggle_seed",
            Intent::FinishInsert => "done_typing",
            Intent::HistoryPrev => "older_prompt",
            Intent::HistoryNext => "newer_prompt",
            Intent::SubmitLine => "accept",
            Intent::CancelLine => "cancel_input",
            Intent::ClearLine => "clear_input",
            Intent::ConfirmYes => "confirm_quit",
            Intent::ConfirmNo => "keep_running",
            Intent::ToggleStress => "stress_view",
            Intent::StressNextMode => "stress_mode",
            Intent::StartStress => "start_stress",
            Intent::CancelStress => "cancel_stress",
            Intent::OpenModels => "models",
            Intent::CloseModels => "close_models",
            Intent::LoadModel => "load_model",
            Intent::VerifyModel => "verify_model",
            Intent::DownloadModel => "download_model",
            Intent::DownloadModelTo => "download_model_to",
            Intent::ToggleFetchSource => "switch_hub",
            Intent::RescanModels => "rescan_models",
        }
    }

    pub fn from_name(name: &str) -> Option<Intent> {
        Intent::ALL.into_iter().find(|i| i.name() == name.trim())
    }
}

/// A session read from disk, already adapted to the app's types.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSession {
    pub path: PathBuf,
    pub jobs: Vec<QueueEntry>,
    pub prompt_history: Vec<String>,
    /// Size, steps and seed for new jobs, as saved.
    pub settings: Option<crate::session::SessionSettings>,
}

#[derive(Debug, Clone)]
pub enum Action {
    Intent(Intent),
    /// A key the keymap does not bind, while typing (goes to the focused text input).
    TextKey(KeyEvent),
    /// Bracketed paste.
    Paste(String),
    /// From the worker thread; `at` is the time since app start when it arrived.
    Worker {
        event: Event,
        at: Duration,
    },
    Gpu(GpuReading),
    /// No GPU telemetry: why, and this process's resident memory.
    GpuUnavailable {
        reason: String,
        process_rss_bytes: Option<u64>,
        /// The machine's memory, the scale for the process-memory sparkline.
        memory_total_bytes: Option<u64>,
    },
    /// A warning or error logged anywhere in the app (tracing), for the log pane.
    LogLine {
        level: LogLevel,
        text: String,
    },
    /// Render tick: advances the clock used for elapsed times.
    Tick {
        at: Duration,
    },
    SessionLoaded(Result<LoadedSession, String>),
    SessionSaved(Result<PathBuf, String>),
    /// Model loads, discovery results and download/verify progress (`app::models`).
    Models(ModelsAction),
}

impl From<Intent> for Action {
    fn from(intent: Intent) -> Self {
        Action::Intent(intent)
    }
}

/// Work the reducer asks the event loop to do (the reducer itself does no I/O).
#[derive(Debug)]
pub enum Effect {
    Worker(Command),
    SaveSession(PathBuf),
    LoadSession(PathBuf),
    /// Discovery and download/verify jobs, run off the UI thread.
    Models(ModelsEffect),
}
