//! The reducer: `update(state, action) -> effects`. All app logic lives here and is unit-tested;
//! it does no I/O and reads no clock (time comes in actions), so it is deterministic.

use std::time::Duration;

use crossterm::event::KeyEvent;

use super::action::{Action, Effect, Intent, LoadedSession};
use super::editor::{new_line_input, parse_seed, parse_size, parse_steps, DraftField};
use super::models;
use super::state::{
    AppState, FinishedRun, GpuReading, JobStatus, LineInputPurpose, LogLevel, Mode, ModelStatus, Pane,
    PreviewImage, QueueEntry, RunProgress, SeedChoice, GPU_HISTORY,
};
use crate::model::{GenerationRequest, Stage, MAX_STEPS};
use crate::worker::{Command, Event, FailureKind, Job};

/// Size presets cycled by `z` (all multiples of 16).
pub const SIZE_PRESETS: [(u32, u32); 8] = [
    (1024, 1024),
    (1280, 720),
    (720, 1280),
    (1024, 768),
    (768, 1024),
    (768, 768),
    (512, 512),
    (256, 256),
];

/// Applies one action; returns what the event loop must do. Starts the next queued job when the
/// worker is free.
pub fn update(state: &mut AppState, action: Action) -> Vec<Effect> {
    let mut effects = Vec::new();
    match action {
        Action::Intent(intent) => apply_intent(state, intent, &mut effects),
        Action::TextKey(key) => text_key(state, key),
        Action::Paste(text) => paste(state, &text),
        Action::Worker { event, at } => {
            state.now = state.now.max(at);
            let load = models::load_outcome(&event);
            worker_event(state, event, at);
            if let Some(outcome) = load {
                models::after_load(state, outcome, &mut effects);
            }
        }
        Action::Gpu(reading) => gpu_reading(state, reading),
        Action::GpuUnavailable {
            reason,
            process_rss_bytes,
            memory_total_bytes,
        } => {
            state.gpu.memory_total_bytes = memory_total_bytes;
            state.gpu.reading = None;
            state.gpu.unavailable = Some(reason);
            state.gpu.process_rss_bytes = process_rss_bytes;
            if let Some(rss) = process_rss_bytes {
                push_history(state, rss);
                if let Some(run) = &mut state.running {
                    run.peak_memory_bytes = Some(run.peak_memory_bytes.unwrap_or(0).max(rss));
                }
            }
        }
        Action::LogLine { level, text } => state.push_log(level, text),
        Action::Tick { at } => state.now = state.now.max(at),
        Action::SessionLoaded(result) => session_loaded(state, result),
        Action::SessionSaved(Ok(path)) => {
            state.notify(LogLevel::Info, format!("Session saved to {}", path.display()));
            state.session_path = Some(path);
        }
        Action::SessionSaved(Err(message)) => state.notify(LogLevel::Error, message),
        Action::Models(action) => models::update(state, action, &mut effects),
    }
    start_next_job(state, &mut effects);
    effects
}

fn apply_intent(state: &mut AppState, intent: Intent, effects: &mut Vec<Effect>) {
    if state.mode == Mode::Models && models::picker_intent(state, intent, effects) {
        return;
    }
    if super::stress::intent(state, intent, effects) {
        return;
    }
    match intent {
        Intent::Quit => {
            if state.running.is_some()
                || state.stress.active()
                || models::running_jobs(state).next().is_some()
            {
                state.mode = Mode::ConfirmQuit;
            } else {
                state.quitting = true;
            }
        }
        Intent::Interrupt => interrupt(state, effects),
        Intent::ToggleHelp => {
            state.mode = if state.mode == Mode::Help {
                Mode::Normal
            } else {
                Mode::Help
            };
        }
        Intent::FocusNext => state.focus = state.focus.next(),
        Intent::FocusPrev => state.focus = state.focus.prev(),
        Intent::Up => move_cursor(state, -1),
        Intent::Down => move_cursor(state, 1),
        Intent::Top => move_cursor(state, isize::MIN),
        Intent::Bottom => move_cursor(state, isize::MAX),
        Intent::QueueDraft => queue_draft(state),
        Intent::EditPrompt => {
            state.focus = Pane::Editor;
            state.draft.field = DraftField::Prompt;
            state.mode = Mode::InsertPrompt;
        }
        Intent::EditField => edit_field(state),
        Intent::EditJob => edit_job(state),
        Intent::DuplicateJob => duplicate_job(state),
        Intent::DeleteJob => delete_job(state),
        Intent::MoveJobUp => move_job(state, -1),
        Intent::MoveJobDown => move_job(state, 1),
        Intent::RerunJob => rerun_job(state),
        Intent::CancelJob => cancel_selected(state, effects),
        Intent::TogglePause => {
            state.paused = !state.paused;
            let text = if state.paused {
                "Queue paused (p resumes)"
            } else {
                "Queue resumed"
            };
            state.notify(LogLevel::Info, text);
        }
        Intent::SaveSession => open_line(state, LineInputPurpose::SaveSession, session_path_text(state)),
        Intent::LoadSession => {
            if let Some(job) = state.running_job() {
                state.notify(
                    LogLevel::Warn,
                    format!("Job #{job} is running; cancel it (c) before loading a session"),
                );
            } else {
                open_line(state, LineInputPurpose::LoadSession, session_path_text(state));
            }
        }
        Intent::StepsUp => state.draft.steps = (state.draft.steps + 1).min(MAX_STEPS),
        Intent::StepsDown => state.draft.steps = state.draft.steps.saturating_sub(1).max(1),
        Intent::NextSize => {
            let current = (state.draft.width, state.draft.height);
            let next = SIZE_PRESETS
                .iter()
                .position(|p| *p == current)
                .map_or(0, |i| (i + 1) % SIZE_PRESETS.len());
            (state.draft.width, state.draft.height) = SIZE_PRESETS[next];
        }
        Intent::ToggleSeed => {
            state.draft.seed = match state.draft.seed {
                SeedChoice::Random => SeedChoice::Fixed(state.next_random_seed()),
                SeedChoice::Fixed(_) => SeedChoice::Random,
            };
        }
        Intent::FinishInsert => state.mode = Mode::Normal,
        Intent::HistoryPrev => {
            if !state.draft.history_prev() {
                state.notify(LogLevel::Info, "No older prompt in the history");
            }
        }
        Intent::HistoryNext => {
            state.draft.history_next();
        }
        Intent::SubmitLine => submit_line(state, effects),
        Intent::CancelLine => state.mode = Mode::Normal,
        Intent::ClearLine => state.draft.line = new_line_input(""),
        Intent::ConfirmYes => {
            if let Some(run) = &mut state.running {
                run_cancel(run, effects);
            }
            if state.stress.active() {
                super::stress::cancel(state, effects);
            }
            state.quitting = true;
        }
        Intent::ConfirmNo => state.mode = Mode::Normal,
        // Handled by the Stress view (or meaningless outside it).
        Intent::ToggleStress | Intent::StressNextMode | Intent::StartStress | Intent::CancelStress => {}
        Intent::OpenModels => models::open_picker(state, effects),
        // Only bound in the picker, which handles them above.
        Intent::CloseModels
        | Intent::LoadModel
        | Intent::VerifyModel
        | Intent::DownloadModel
        | Intent::DownloadModelTo
        | Intent::ToggleFetchSource
        | Intent::RescanModels => {}
    }
}

/// Ctrl-C: first cancel the running job (and pause the queue so the next does not start), then
/// quit on the next press.
fn interrupt(state: &mut AppState, effects: &mut Vec<Effect>) {
    if state
        .stress
        .run
        .as_ref()
        .is_some_and(|r| r.active() && !r.cancel_requested)
    {
        super::stress::cancel(state, effects);
        state.mode = Mode::Normal;
        state.push_log(LogLevel::Warn, "Ctrl-C again quits");
        return;
    }
    match &mut state.running {
        Some(run) if !run.cancel_requested => {
            let job = run.job;
            run_cancel(run, effects);
            state.paused = true;
            state.mode = Mode::Normal;
            state.notify(
                LogLevel::Warn,
                format!("Cancelling job #{job}; queue paused (p resumes). Ctrl-C again quits"),
            );
        }
        _ => state.quitting = true,
    }
}

fn run_cancel(run: &mut RunProgress, effects: &mut Vec<Effect>) {
    if !run.cancel_requested {
        run.cancel_requested = true;
        effects.push(Effect::Worker(Command::Cancel(run.job)));
    }
}

fn move_cursor(state: &mut AppState, delta: isize) {
    fn step(current: usize, len: usize, delta: isize) -> usize {
        if len == 0 {
            return 0;
        }
        (current as isize)
            .saturating_add(delta)
            .clamp(0, len as isize - 1) as usize
    }
    if state.mode == Mode::Models {
        return models::move_selection(state, delta);
    }
    match state.focus {
        Pane::Queue => state.selected = step(state.selected, models::queue_rows(state), delta),
        Pane::Editor => {
            let i = DraftField::ALL
                .iter()
                .position(|f| *f == state.draft.field)
                .unwrap_or(0);
            state.draft.field = DraftField::ALL[step(i, DraftField::ALL.len(), delta)];
        }
        // The log scrolls up (older) with k/↑: the offset counts lines from the bottom.
        Pane::Log => {
            state.log_scroll = step(state.log_scroll, state.log.len().max(1), delta.saturating_neg())
        }
        Pane::Progress | Pane::Gpu | Pane::Preview => {}
    }
}

fn queue_draft(state: &mut AppState) {
    let prompt = state.draft.prompt_text().trim().to_string();
    if prompt.is_empty() {
        state.notify(LogLevel::Warn, "The prompt is empty: press i and type one first");
        return;
    }
    let (width, height, steps, seed) = (
        state.draft.width,
        state.draft.height,
        state.draft.steps,
        state.draft.seed,
    );
    let editing = state.draft.editing.take();
    let updated = editing
        .and_then(|id| state.entry_mut(id))
        .filter(|e| e.status == JobStatus::Queued);
    let message = if let Some(entry) = updated {
        entry.prompt = prompt.clone();
        (entry.width, entry.height, entry.steps, entry.seed) = (width, height, steps, seed);
        format!("Updated job #{}", entry.id)
    } else {
        let entry = new_queued(state, prompt.clone(), width, height, steps, seed);
        let id = entry.id;
        state.queue.push(entry);
        state.selected = state.queue.len() - 1;
        format!("Queued job #{id}")
    };
    state.draft.remember(&prompt);
    state.draft.set_prompt("");
    state.mode = Mode::Normal;
    state.revision += 1;
    state.notify(LogLevel::Info, message);
}

fn edit_field(state: &mut AppState) {
    let draft = &state.draft;
    match draft.field {
        DraftField::Prompt => state.mode = Mode::InsertPrompt,
        DraftField::Size => open_line(
            state,
            LineInputPurpose::Size,
            format!("{}x{}", draft.width, draft.height),
        ),
        DraftField::Steps => open_line(state, LineInputPurpose::Steps, draft.steps.to_string()),
        DraftField::Seed => open_line(state, LineInputPurpose::Seed, draft.seed.to_string()),
    }
}

fn open_line(state: &mut AppState, purpose: LineInputPurpose, text: String) {
    state.draft.line = new_line_input(&text);
    state.mode = Mode::LineInput(purpose);
}

fn session_path_text(state: &AppState) -> String {
    state
        .session_path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "session.toml".into())
}

fn submit_line(state: &mut AppState, effects: &mut Vec<Effect>) {
    let Mode::LineInput(purpose) = state.mode else {
        return;
    };
    let text = state.draft.line_text();
    let result: Result<(), String> = match purpose {
        LineInputPurpose::Size => {
            parse_size(&text).map(|(w, h)| (state.draft.width, state.draft.height) = (w, h))
        }
        LineInputPurpose::Steps => parse_steps(&text).map(|s| state.draft.steps = s),
        LineInputPurpose::Seed => parse_seed(&text).map(|s| state.draft.seed = s),
        LineInputPurpose::Stress(field) => super::stress::submit_field(state, field, &text),
        LineInputPurpose::DownloadDir => models::download_into(state, &text, effects),
        LineInputPurpose::SaveSession | LineInputPurpose::LoadSession => {
            let path = text.trim();
            if path.is_empty() {
                Err("Enter a file path".into())
            } else {
                let path = std::path::PathBuf::from(path);
                effects.push(if purpose == LineInputPurpose::SaveSession {
                    Effect::SaveSession(path)
                } else {
                    Effect::LoadSession(path)
                });
                Ok(())
            }
        }
    };
    match result {
        Ok(()) => state.mode = Mode::Normal,
        // Stay in the input so the user can fix it.
        Err(message) => state.notify(LogLevel::Error, message),
    }
}

fn edit_job(state: &mut AppState) {
    let Some(entry) = state.selected_entry().cloned() else {
        state.notify(LogLevel::Info, "The queue is empty: a queues the prompt");
        return;
    };
    state.draft.load_entry(&entry);
    if entry.status == JobStatus::Queued {
        state.draft.editing = Some(entry.id);
        state.notify(
            LogLevel::Info,
            format!("Editing job #{}: a saves the changes", entry.id),
        );
    } else {
        state.draft.editing = None;
        state.notify(
            LogLevel::Info,
            format!(
                "Copied job #{} into the editor: a queues it as a new job",
                entry.id
            ),
        );
    }
    state.focus = Pane::Editor;
    state.draft.field = DraftField::Prompt;
    state.mode = Mode::InsertPrompt;
}

/// A fresh queued copy of an entry with a new id.
fn fresh_copy(state: &mut AppState, entry: &QueueEntry, seed: SeedChoice) -> QueueEntry {
    let prompt = entry.prompt.clone();
    new_queued(state, prompt, entry.width, entry.height, entry.steps, seed)
}

/// A queued entry with the next id; nothing run yet.
fn new_queued(
    state: &mut AppState,
    prompt: String,
    width: u32,
    height: u32,
    steps: usize,
    seed: SeedChoice,
) -> QueueEntry {
    let id = state.next_id;
    state.next_id += 1;
    QueueEntry {
        id,
        prompt,
        width,
        height,
        steps,
        seed,
        used_seed: None,
        status: JobStatus::Queued,
        output: None,
        timings: None,
        peak_vram_bytes: None,
    }
}

fn duplicate_job(state: &mut AppState) {
    let Some(entry) = state.selected_entry().cloned() else {
        return;
    };
    let copy = fresh_copy(state, &entry, entry.seed);
    let id = copy.id;
    state.queue.insert(state.selected + 1, copy);
    state.selected += 1;
    state.revision += 1;
    state.notify(LogLevel::Info, format!("Duplicated job #{} as #{id}", entry.id));
}

fn rerun_job(state: &mut AppState) {
    let Some(entry) = state.selected_entry().cloned() else {
        return;
    };
    let seed = SeedChoice::Fixed(state.next_random_seed());
    let copy = fresh_copy(state, &entry, seed);
    let id = copy.id;
    state.queue.push(copy);
    state.selected = state.queue.len() - 1;
    state.revision += 1;
    state.notify(
        LogLevel::Info,
        format!("Re-queued job #{} as #{id} with seed {seed}", entry.id),
    );
}

fn delete_job(state: &mut AppState) {
    if models::delete_selected(state) {
        return;
    }
    let Some(entry) = state.selected_entry() else {
        return;
    };
    let id = entry.id;
    if state.running_job() == Some(id) {
        state.notify(
            LogLevel::Warn,
            format!("Job #{id} is running: c cancels it first"),
        );
        return;
    }
    state.queue.remove(state.selected);
    if state.draft.editing == Some(id) {
        state.draft.editing = None;
    }
    state.selected = state.selected.min(state.queue.len().saturating_sub(1));
    state.revision += 1;
    state.notify(LogLevel::Info, format!("Deleted job #{id}"));
}

fn move_job(state: &mut AppState, delta: isize) {
    let from = state.selected;
    let to = from as isize + delta;
    if from >= state.queue.len() || to < 0 || to as usize >= state.queue.len() {
        return;
    }
    state.queue.swap(from, to as usize);
    state.selected = to as usize;
    state.revision += 1;
}

fn cancel_selected(state: &mut AppState, effects: &mut Vec<Effect>) {
    if models::cancel_selected(state, effects) {
        return;
    }
    let Some(entry) = state.selected_entry() else {
        return;
    };
    let id = entry.id;
    match entry.status {
        JobStatus::Queued => {
            if let Some(entry) = state.entry_mut(id) {
                entry.status = JobStatus::Cancelled;
            }
            state.revision += 1;
            state.notify(LogLevel::Info, format!("Cancelled job #{id}"));
        }
        JobStatus::Running { .. } => {
            if let Some(run) = &mut state.running {
                run_cancel(run, effects);
            }
            state.notify(LogLevel::Info, format!("Cancelling job #{id}…"));
        }
        _ => state.notify(LogLevel::Info, format!("Job #{id} is not queued or running")),
    }
}

fn text_key(state: &mut AppState, key: KeyEvent) {
    match state.mode {
        Mode::InsertPrompt => {
            if state.draft.prompt.input(key) {
                state.draft.history_pos = None;
                state.draft.stash = None;
            }
        }
        Mode::LineInput(_) => {
            state.draft.line.input(key);
        }
        Mode::Normal | Mode::Help | Mode::ConfirmQuit | Mode::Models => {}
    }
}

fn paste(state: &mut AppState, text: &str) {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    match state.mode {
        Mode::InsertPrompt => {
            state.draft.prompt.insert_str(&text);
        }
        Mode::LineInput(_) => {
            state.draft.line.insert_str(text.lines().next().unwrap_or(""));
        }
        Mode::Normal => {
            state.focus = Pane::Editor;
            state.draft.field = DraftField::Prompt;
            state.mode = Mode::InsertPrompt;
            state.draft.prompt.insert_str(&text);
        }
        Mode::Help | Mode::ConfirmQuit | Mode::Models => {}
    }
}

fn secs_between(from: Duration, to: Duration) -> f64 {
    to.saturating_sub(from).as_secs_f64()
}

fn worker_event(state: &mut AppState, event: Event, at: Duration) {
    match event {
        Event::Loading { part, done, total } => state.model = ModelStatus::Loading { part, done, total },
        Event::Loaded { info, secs } => {
            state.notify(
                LogLevel::Info,
                format!(
                    "Loaded {} on {} ({}) in {secs:.1} s",
                    info.label, info.device, info.dtype
                ),
            );
            if info.random_weights {
                state.push_log(
                    LogLevel::Warn,
                    "Random weights: images are noise, for testing the app only",
                );
            }
            state.model = ModelStatus::Ready {
                info,
                load_secs: secs,
            };
        }
        Event::LoadFailed { message } => {
            state.notify(LogLevel::Error, format!("Model failed to load: {message}"));
            state.model = ModelStatus::Failed { message };
        }
        Event::Started { job } => {
            if let Some(run) = state.running.as_mut().filter(|r| r.job == job) {
                run.started_at = at;
                run.stage_started_at = at;
            }
        }
        Event::Stage { job, stage } => {
            if let Some(run) = state.running.as_mut().filter(|r| r.job == job) {
                if stage == Stage::Denoise && run.stage == Some(Stage::Encode) {
                    run.encode_secs = Some(secs_between(run.stage_started_at, at));
                }
                run.stage = Some(stage);
                run.stage_started_at = at;
            }
        }
        Event::Step {
            job,
            step,
            total,
            secs,
        } => {
            if let Some(run) = state.running.as_mut().filter(|r| r.job == job) {
                run.step = step;
                run.total = total;
                run.step_secs.push(secs);
            }
            if let Some(entry) = state.entry_mut(job) {
                entry.status = JobStatus::Running { step, total };
            }
        }
        Event::Preview { job, step, image } => {
            state.preview = Some(PreviewImage {
                job,
                step: Some(step),
                image,
            })
        }
        Event::Done { job, output } => {
            let run = state.running.take_if(|r| r.job == job);
            let total_secs = run.as_ref().map_or(output.timings.total().as_secs_f64(), |r| {
                secs_between(r.started_at, at)
            });
            let save_secs = Some(output.save.as_secs_f64());
            for warning in &output.warnings {
                state.push_log(LogLevel::Warn, format!("Job #{job}: {warning}"));
            }
            let saved = output
                .path
                .as_ref()
                .map(|p| format!(" → {}", p.display()))
                .unwrap_or_default();
            state.notify(
                LogLevel::Info,
                format!("Job #{job} done in {total_secs:.1} s{saved}"),
            );
            if let Some(entry) = state.entry_mut(job) {
                entry.status = JobStatus::Done { secs: total_secs };
                entry.output = output.path.clone().or(entry.output.take());
                entry.timings = Some(output.timings.clone());
                entry.peak_vram_bytes = output.peak_vram_bytes;
            }
            state.last_run = Some(FinishedRun {
                job,
                timings: output.timings.clone(),
                save_secs,
                total_secs,
                peak_vram_bytes: output.peak_vram_bytes,
                peak_memory_sampled: run.as_ref().and_then(|r| r.peak_memory_bytes),
            });
            state.preview = Some(PreviewImage {
                job,
                step: None,
                image: output.image,
            });
            state.revision += 1;
        }
        Event::Failed { job, kind, message } => {
            state.running.take_if(|r| r.job == job);
            let status = if kind == FailureKind::Cancelled {
                state.notify(LogLevel::Warn, format!("Job #{job} cancelled"));
                JobStatus::Cancelled
            } else {
                state.notify(LogLevel::Error, format!("Job #{job} failed: {message}"));
                JobStatus::Failed {
                    kind,
                    reason: message,
                }
            };
            if let Some(entry) = state.entry_mut(job) {
                entry.status = status;
            }
            state.revision += 1;
        }
        Event::Log { message } => state.push_log(LogLevel::Info, message),
        Event::Stress(event) => super::stress::event(state, event, at),
    }
}

fn push_history(state: &mut AppState, bytes: u64) {
    if state.gpu.history.len() >= GPU_HISTORY {
        state.gpu.history.pop_front();
    }
    state.gpu.history.push_back(bytes);
}

fn gpu_reading(state: &mut AppState, reading: GpuReading) {
    push_history(state, reading.used_bytes);
    if let Some(run) = &mut state.running {
        run.peak_memory_bytes = Some(run.peak_memory_bytes.unwrap_or(0).max(reading.used_bytes));
    }
    state.gpu.unavailable = None;
    state.gpu.reading = Some(reading);
}

fn session_loaded(state: &mut AppState, result: Result<LoadedSession, String>) {
    match result {
        Ok(session) => {
            if state.running.is_some() {
                state.notify(LogLevel::Warn, "A job is running; the session was not loaded");
                return;
            }
            state.queue = session
                .jobs
                .into_iter()
                .map(|mut job| {
                    // A job that was running when the app stopped never finished: run it again.
                    if matches!(job.status, JobStatus::Running { .. }) {
                        job.status = JobStatus::Queued;
                    }
                    job
                })
                .collect();
            state.next_id = state.queue.iter().map(|j| j.id).max().unwrap_or(0) + 1;
            if let Some(settings) = session.settings {
                let draft = &mut state.draft;
                (draft.width, draft.height, draft.steps, draft.seed) =
                    (settings.width, settings.height, settings.steps, settings.seed);
            }
            state.selected = 0;
            state.draft.editing = None;
            for prompt in session
                .prompt_history
                .iter()
                .chain(state.queue.iter().map(|j| &j.prompt))
                .cloned()
                .collect::<Vec<_>>()
            {
                state.draft.remember(&prompt);
            }
            let count = state.queue.len();
            state.notify(
                LogLevel::Info,
                format!("Loaded session {} ({count} jobs)", session.path.display()),
            );
            state.session_path = Some(session.path);
        }
        Err(message) => state.notify(LogLevel::Error, message),
    }
}

/// Submits the first queued job when the model is ready and nothing runs.
fn start_next_job(state: &mut AppState, effects: &mut Vec<Effect>) {
    // A stress run has the worker: queued jobs wait for its end.
    if state.quitting
        || state.paused
        || state.running.is_some()
        || state.stress.active()
        || !state.model_ready()
    {
        return;
    }
    let Some(index) = state.queue.iter().position(|e| e.status == JobStatus::Queued) else {
        return;
    };
    let seed = match state.queue[index].seed {
        SeedChoice::Fixed(seed) => seed,
        SeedChoice::Random => state.next_random_seed(),
    };
    let settings = &state.settings;
    let entry = &mut state.queue[index];
    let output = settings
        .output_dir
        .join(format!("{}-{:03}-{seed}.png", settings.output_prefix, entry.id));
    let request = GenerationRequest {
        prompt: entry.prompt.clone(),
        width: entry.width,
        height: entry.height,
        steps: entry.steps,
        seed,
    };
    if let Err(err) = request.validate() {
        entry.status = JobStatus::Failed {
            kind: FailureKind::BadInput,
            reason: err.to_string(),
        };
        let message = format!("Job #{} refused: {err}", entry.id);
        state.notify(LogLevel::Error, message);
        state.revision += 1;
        // Try the next one.
        return start_next_job(state, effects);
    }
    entry.used_seed = Some(seed);
    entry.output = Some(output.clone());
    entry.status = JobStatus::Running {
        step: 0,
        total: entry.steps,
    };
    let job = Job {
        output: Some(output),
        previews: settings.previews,
        ..Job::new(entry.id, request)
    };
    state.running = Some(RunProgress {
        job: job.id,
        started_at: state.now,
        stage_started_at: state.now,
        total: job.request.steps,
        ..RunProgress::default()
    });
    state.revision += 1;
    effects.push(Effect::Worker(Command::Submit(job)));
}

#[cfg(test)]
#[path = "reducer_tests.rs"]
mod tests;
