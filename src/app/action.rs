//! What can happen to the app (`Action`), what the user can ask for by key (`Intent`), and what
//! the reducer asks the outside world to do (`Effect`).

use std::path::PathBuf;
use std::time::Duration;

use crossterm::event::KeyEvent;

use super::state::{GpuReading, QueueEntry};
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
}

/// A session read from disk, already adapted to the app's types.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadedSession {
    pub path: PathBuf,
    pub jobs: Vec<QueueEntry>,
    pub prompt_history: Vec<String>,
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
    },
    /// Render tick: advances the clock used for elapsed times.
    Tick {
        at: Duration,
    },
    SessionLoaded(Result<LoadedSession, String>),
    SessionSaved(Result<PathBuf, String>),
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
}
