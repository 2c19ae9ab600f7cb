//! The Stress view's state and behaviour: a form over the bench's `PlanSettings` (the CLI's
//! defaults), a run started as `Command::Stress` on the worker (the same runner as
//! `zimage-tui bench`), and the run's records as its `StressEvent`s arrive. Pure like the rest
//! of the app: the reducer calls in here, `ui::stress` draws it.

use std::path::PathBuf;
use std::time::Duration;

use super::action::{Effect, Intent};
use super::editor::{new_line_input, parse_size, parse_steps};
use super::state::{AppState, LineInputPurpose, LogLevel, Mode};
use crate::bench::report::{MemorySource, Report};
use crate::bench::stress::{StressEvent, StressRequest, WrittenReport};
use crate::bench::{self, JobRecord, Mode as BenchMode, PlanSettings, Section, MAX_IMAGES, MAX_WARMUP};
use crate::worker::Command;

/// The form's rows, top to bottom.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StressField {
    Mode,
    Size,
    Steps,
    Runs,
    Sweep,
    Soak,
    Interval,
    Warmup,
}

impl StressField {
    pub const ALL: [StressField; 8] = [
        StressField::Mode,
        StressField::Size,
        StressField::Steps,
        StressField::Runs,
        StressField::Sweep,
        StressField::Soak,
        StressField::Interval,
        StressField::Warmup,
    ];

    pub fn label(self) -> &'static str {
        match self {
            StressField::Mode => "Mode",
            StressField::Size => "Size",
            StressField::Steps => "Steps",
            StressField::Runs => "Timed runs",
            StressField::Sweep => "Sweep sizes",
            StressField::Soak => "Soak images",
            StressField::Interval => "Interval",
            StressField::Warmup => "Warm-up",
        }
    }

    /// The one-line input's prompt when editing this row.
    pub fn input_label(self) -> &'static str {
        match self {
            StressField::Mode => "Mode (runs, sweep, soak or all)",
            StressField::Size => "Size of runs and soak (WIDTHxHEIGHT)",
            StressField::Steps => "Steps per image",
            StressField::Runs => "Timed runs (1-10000)",
            StressField::Sweep => "Sweep sizes (comma-separated WIDTHxHEIGHT)",
            StressField::Soak => "Soak images (1-10000)",
            StressField::Interval => "Seconds between soak images (0-3600)",
            StressField::Warmup => "Warm-up generations per series (0-100)",
        }
    }

    /// Does this row matter for `mode`? (Others are shown dimmed.)
    pub fn applies_to(self, mode: BenchMode) -> bool {
        match self {
            StressField::Runs => mode.includes(Section::Runs),
            StressField::Sweep => mode.includes(Section::Sweep),
            StressField::Soak | StressField::Interval => mode.includes(Section::Soak),
            StressField::Size => mode.includes(Section::Runs) || mode.includes(Section::Soak),
            StressField::Mode | StressField::Steps | StressField::Warmup => true,
        }
    }

    /// The row's value as the form shows it (and as the input starts with).
    pub fn value(self, settings: &PlanSettings) -> String {
        match self {
            StressField::Mode => settings.mode.label().into(),
            StressField::Size => size_text(settings.size),
            StressField::Steps => settings.steps.to_string(),
            StressField::Runs => settings.runs.to_string(),
            StressField::Sweep => settings
                .sweep_sizes
                .iter()
                .map(|&s| size_text(s))
                .collect::<Vec<_>>()
                .join(","),
            StressField::Soak => settings.soak_images.to_string(),
            StressField::Interval => format!("{}", settings.interval.as_secs_f64()),
            StressField::Warmup => settings.warmup.to_string(),
        }
    }
}

pub fn size_text((w, h): (u32, u32)) -> String {
    format!("{w}x{h}")
}

/// The job the worker is on.
#[derive(Debug, Clone, PartialEq)]
pub struct StressJob {
    pub section: Section,
    pub width: u32,
    pub height: u32,
    pub warmup: bool,
    pub step: usize,
    pub steps: usize,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum StressEnd {
    Finished {
        report: Box<Report>,
        written: Result<WrittenReport, String>,
        stopped: bool,
    },
    Failed {
        message: String,
    },
}

/// One stress run, live or over.
#[derive(Debug, Clone, PartialEq)]
pub struct StressRun {
    pub mode: BenchMode,
    pub out_dir: PathBuf,
    /// Every generation the plan may submit (warm-ups included) and the measured ones.
    pub planned_jobs: usize,
    pub planned_images: usize,
    /// Known once the worker started the run.
    pub memory: Option<MemorySource>,
    pub section: Option<Section>,
    pub current: Option<StressJob>,
    /// Between soak images: since when (app time) and for how long.
    pub waiting: Option<(Duration, Duration)>,
    /// Every finished job in order, warm-ups included.
    pub records: Vec<JobRecord>,
    pub cancel_requested: bool,
    pub started_at: Duration,
    pub end: Option<StressEnd>,
}

/// The figures of the stats line.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct LiveStats {
    /// Measured (non-warm-up) jobs finished, of `planned`.
    pub done: usize,
    pub planned: usize,
    pub warmups: usize,
    /// Mean and last generation time of the measured jobs that succeeded, seconds.
    pub mean_s: Option<f64>,
    pub last_s: Option<f64>,
    /// Failed for another reason than memory.
    pub failures: usize,
    /// Out of memory, or refused by the budget.
    pub oom: usize,
}

impl StressRun {
    pub fn active(&self) -> bool {
        self.end.is_none()
    }

    pub fn measured(&self) -> impl Iterator<Item = &JobRecord> {
        self.records.iter().filter(|r| !r.warmup)
    }

    pub fn stats(&self) -> LiveStats {
        let times: Vec<f64> = self
            .measured()
            .filter(|r| r.outcome.is_ok())
            .filter_map(|r| r.total_s)
            .collect();
        LiveStats {
            done: self.measured().count(),
            planned: self.planned_images,
            warmups: self.records.len() - self.measured().count(),
            mean_s: bench::stats::mean(&times),
            last_s: times.last().copied(),
            failures: self
                .measured()
                .filter(|r| !r.outcome.is_ok() && !r.outcome.is_memory_limit())
                .count(),
            oom: self.measured().filter(|r| r.outcome.is_memory_limit()).count(),
        }
    }

    /// "VRAM" or "RSS" (what the memory chart shows).
    pub fn memory_label(&self) -> &'static str {
        self.memory.as_ref().map_or("memory", MemorySource::short)
    }
}

/// The Stress view: open or not, the form, the current or last run.
#[derive(Debug, Clone, PartialEq)]
pub struct StressView {
    /// The view covers the dashboard.
    pub open: bool,
    pub settings: PlanSettings,
    pub field: StressField,
    pub run: Option<StressRun>,
    /// Runs started this session (numbers the report folders).
    pub started: u32,
}

impl Default for StressView {
    fn default() -> Self {
        Self {
            open: false,
            settings: PlanSettings::default(),
            field: StressField::Mode,
            run: None,
            started: 0,
        }
    }
}

impl StressView {
    /// A run is going (the worker is busy with it).
    pub fn active(&self) -> bool {
        self.run.as_ref().is_some_and(StressRun::active)
    }
}

/// Handles the intents the Stress view owns; `false` leaves the intent to the dashboard.
pub(super) fn intent(state: &mut AppState, intent: Intent, effects: &mut Vec<Effect>) -> bool {
    match intent {
        Intent::ToggleStress => {
            state.stress.open = !state.stress.open;
            true
        }
        Intent::StartStress => {
            start(state, effects);
            true
        }
        Intent::CancelStress => {
            cancel(state, effects);
            true
        }
        _ if !state.stress.open => false,
        Intent::StressNextMode => {
            state.stress.settings.mode = state.stress.settings.mode.next();
            true
        }
        Intent::Up | Intent::Down | Intent::Top | Intent::Bottom => {
            let fields = StressField::ALL;
            let i = fields.iter().position(|f| *f == state.stress.field).unwrap_or(0);
            let last = fields.len() - 1;
            let next = match intent {
                Intent::Up => i.saturating_sub(1),
                Intent::Down => (i + 1).min(last),
                Intent::Top => 0,
                _ => last,
            };
            state.stress.field = fields[next];
            true
        }
        Intent::EditField => {
            let field = state.stress.field;
            state.draft.line = new_line_input(&field.value(&state.stress.settings));
            state.mode = Mode::LineInput(LineInputPurpose::Stress(field));
            true
        }
        _ => false,
    }
}

/// Applies an edited form row; an error keeps the input open.
pub(super) fn submit_field(state: &mut AppState, field: StressField, text: &str) -> Result<(), String> {
    let settings = &mut state.stress.settings;
    let text = text.trim();
    match field {
        StressField::Mode => {
            settings.mode = BenchMode::ALL
                .into_iter()
                .find(|m| m.label().eq_ignore_ascii_case(text))
                .ok_or_else(|| format!("\"{text}\" is not a mode (runs, sweep, soak or all)"))?;
        }
        StressField::Size => settings.size = parse_size(text)?,
        StressField::Steps => settings.steps = parse_steps(text)?,
        StressField::Runs => settings.runs = parse_count(text, 1, MAX_IMAGES)?,
        StressField::Soak => settings.soak_images = parse_count(text, 1, MAX_IMAGES)?,
        StressField::Warmup => settings.warmup = parse_count(text, 0, MAX_WARMUP)?,
        StressField::Sweep => {
            let sizes = text
                .split(',')
                .filter(|s| !s.trim().is_empty())
                .map(|s| parse_size(s).map_err(|e| format!("{}: {e}", s.trim())))
                .collect::<Result<Vec<_>, _>>()?;
            if sizes.is_empty() {
                return Err("Enter at least one size, e.g. 512x512,1024x1024".into());
            }
            settings.sweep_sizes = sizes;
        }
        StressField::Interval => {
            let seconds: f64 = text
                .parse()
                .map_err(|_| format!("\"{text}\" is not a number of seconds"))?;
            settings.interval = bench::interval(seconds).map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

fn parse_count(text: &str, min: usize, max: usize) -> Result<usize, String> {
    let n: usize = text
        .parse()
        .map_err(|_| format!("\"{text}\" is not a whole number"))?;
    if !(min..=max).contains(&n) {
        return Err(format!("{n} is out of range ({min}..={max})"));
    }
    Ok(n)
}

fn start(state: &mut AppState, effects: &mut Vec<Effect>) {
    if state.stress.active() {
        state.notify(LogLevel::Warn, "A stress run is already going (c cancels it)");
        return;
    }
    if let Some(job) = state.running_job() {
        state.notify(
            LogLevel::Warn,
            format!("Job #{job} is running: wait for it (or cancel it) before a stress run"),
        );
        return;
    }
    if !state.model_ready() {
        state.notify(LogLevel::Warn, "The model is not loaded: a stress run needs it");
        return;
    }
    let plan = match state.stress.settings.plan() {
        Ok(plan) => plan,
        Err(err) => {
            state.notify(LogLevel::Error, format!("Stress run not started: {err}"));
            return;
        }
    };
    state.stress.started += 1;
    let out_dir = state.settings.output_dir.join(format!(
        "{}-stress-{}",
        state.settings.output_prefix, state.stress.started
    ));
    let planned_images = plan.runs.as_ref().map_or(0, |r| r.count)
        + plan.sweep.as_ref().map_or(0, |s| s.sizes.len())
        + plan.soak.as_ref().map_or(0, |s| s.count);
    let mode = state.stress.settings.mode;
    state.stress.run = Some(StressRun {
        mode,
        out_dir: out_dir.clone(),
        planned_jobs: plan.job_count(),
        planned_images,
        memory: None,
        section: None,
        current: None,
        waiting: None,
        records: Vec::new(),
        cancel_requested: false,
        started_at: state.now,
        end: None,
    });
    state.stress.open = true;
    let waiting = state
        .queue
        .iter()
        .filter(|e| e.status == super::state::JobStatus::Queued)
        .count();
    let wait_note = if waiting > 0 {
        format!("; {waiting} queued job(s) wait until it ends")
    } else {
        String::new()
    };
    state.notify(
        LogLevel::Info,
        format!(
            "Stress run started: {} ({} generations){wait_note}",
            mode.label(),
            plan.job_count()
        ),
    );
    effects.push(Effect::Worker(Command::Stress(Box::new(StressRequest {
        plan,
        out_dir,
    }))));
}

/// Stops the run: the worker cancels the job in progress and writes what was measured.
pub(super) fn cancel(state: &mut AppState, effects: &mut Vec<Effect>) -> bool {
    match state.stress.run.as_mut() {
        Some(run) if run.active() && !run.cancel_requested => {
            run.cancel_requested = true;
            effects.push(Effect::Worker(Command::CancelStress));
            state.notify(
                LogLevel::Warn,
                "Cancelling the stress run; the report keeps what was measured",
            );
            true
        }
        Some(run) if run.active() => false,
        _ => {
            state.notify(LogLevel::Info, "No stress run is going");
            false
        }
    }
}

/// Applies one event from the worker's stress run.
pub(super) fn event(state: &mut AppState, event: StressEvent, at: Duration) {
    let Some(run) = state.stress.run.as_mut().filter(|r| r.active()) else {
        return;
    };
    run.waiting = None;
    match event {
        StressEvent::Waiting { interval } => run.waiting = Some((at, interval)),
        StressEvent::Started { jobs, memory } => {
            run.planned_jobs = jobs;
            run.memory = Some(memory);
        }
        StressEvent::Section { section, .. } => run.section = Some(section),
        StressEvent::JobStarted {
            section,
            request,
            warmup,
        } => {
            run.section = Some(section);
            run.current = Some(StressJob {
                section,
                width: request.width,
                height: request.height,
                warmup,
                step: 0,
                steps: request.steps,
            });
        }
        StressEvent::Step { step, total } => {
            if let Some(job) = &mut run.current {
                job.step = step;
                job.steps = total;
            }
        }
        StressEvent::JobFinished { record, .. } => {
            run.current = None;
            let failed = (!record.outcome.is_ok()).then(|| {
                format!(
                    "Stress {} {}: {}{}",
                    record.size_label(),
                    if record.warmup { "warm-up" } else { "image" },
                    record.outcome.label(),
                    record
                        .message
                        .as_ref()
                        .map_or(String::new(), |m| format!(" ({m})"))
                )
            });
            run.records.push(*record);
            if let Some(text) = failed {
                state.push_log(LogLevel::Warn, text);
            }
        }
        StressEvent::Finished {
            report,
            written,
            stopped,
        } => {
            run.current = None;
            let done = run.measured().count();
            let how = if stopped {
                format!("stopped after {done} of {} images", run.planned_images)
            } else {
                format!("{done} images")
            };
            let (level, text) = match &written {
                Ok(w) => (
                    LogLevel::Info,
                    format!(
                        "Stress run finished ({how}); report: {} and {}",
                        w.markdown.display(),
                        w.json.display()
                    ),
                ),
                Err(err) => (
                    LogLevel::Error,
                    format!("Stress run finished ({how}) but the report was not written: {err}"),
                ),
            };
            run.end = Some(StressEnd::Finished {
                report,
                written,
                stopped,
            });
            state.notify(level, text);
        }
        StressEvent::Failed { message } => {
            run.current = None;
            run.end = Some(StressEnd::Failed {
                message: message.clone(),
            });
            state.notify(LogLevel::Error, format!("Stress run failed: {message}"));
        }
    }
}

#[cfg(test)]
#[path = "stress_tests.rs"]
mod tests;
