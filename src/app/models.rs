//! The model picker and the model jobs (download, verify) that share the queue pane with image
//! jobs. State and reducer pieces only: no I/O. Discovery and the jobs' threads live in
//! `cli::model_tasks`, which sends their results back as `ModelsAction`s.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::action::{Effect, Intent};
use super::state::{AppState, LineInputPurpose, LogLevel, Mode, ModelStatus, Pane};
use crate::fetch::Source;
use crate::model::loader::{LoadOptions, ModelSource, ModelSpec};
use crate::worker::{Command, Event};

/// Where a picker entry came from.
#[derive(Debug, Clone, PartialEq)]
pub enum CandidateOrigin {
    /// The embedded demo model.
    BuiltIn,
    /// Found by the loader's discovery.
    Found(ModelSource),
    /// Named in the config but not found on disk (e.g. `random:turbo`).
    Configured,
    /// Downloaded into a folder of the user's choice during this session.
    Downloaded,
}

impl CandidateOrigin {
    pub fn label(&self) -> String {
        match self {
            CandidateOrigin::BuiltIn => "built in".into(),
            CandidateOrigin::Found(source) => match source {
                ModelSource::HuggingFaceCache => "HF cache".into(),
                ModelSource::ModelScopeCache => "ModelScope".into(),
                other => other.to_string(),
            },
            CandidateOrigin::Configured => "config".into(),
            CandidateOrigin::Downloaded => "downloaded".into(),
        }
    }
}

/// One entry of the picker: a checkpoint directory (what `models` reports about it) or a
/// model that needs no files.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCandidate {
    pub spec: ModelSpec,
    pub origin: CandidateOrigin,
    /// Bytes on disk (checkpoints only).
    pub bytes: Option<u64>,
    /// Every file present and whole (always true for the built-in models).
    pub complete: bool,
    /// The first thing wrong (a missing or truncated file) when not complete.
    pub problem: Option<String>,
    /// Per component with weights: its name and parameter count per dtype ("F32" → 6.15e9).
    pub dtypes: Vec<(String, BTreeMap<String, u64>)>,
    /// A converted bf16 cache is present.
    pub bf16_cache: bool,
    /// Unfinished downloads a new download resumes.
    pub partial_files: usize,
    /// The checkpoint the loader picks by default (what `gen` would use).
    pub default: bool,
}

impl ModelCandidate {
    /// An entry for a model that needs no checkpoint (the demo, random weights).
    pub fn built_in(spec: ModelSpec, origin: CandidateOrigin) -> Self {
        Self {
            spec,
            origin,
            bytes: None,
            complete: true,
            problem: None,
            dtypes: Vec::new(),
            bf16_cache: false,
            partial_files: 0,
            default: false,
        }
    }

    pub fn dir(&self) -> Option<&Path> {
        match &self.spec {
            ModelSpec::Dir(dir) => Some(dir),
            _ => None,
        }
    }

    /// The path, or what the model is.
    pub fn title(&self) -> String {
        spec_title(&self.spec)
    }

    /// The distinct dtypes of its weights, e.g. "BF16+F32".
    pub fn dtype_short(&self) -> String {
        let names: BTreeSet<&str> = self
            .dtypes
            .iter()
            .flat_map(|(_, counts)| counts.keys().map(String::as_str))
            .collect();
        names.into_iter().collect::<Vec<_>>().join("+")
    }
}

/// How a model spec reads in messages and the picker.
pub fn spec_title(spec: &ModelSpec) -> String {
    match spec {
        ModelSpec::Demo => "demo model (random weights)".into(),
        ModelSpec::Dir(dir) => dir.display().to_string(),
        ModelSpec::RandomWeights { preset } => format!("random weights ({preset})"),
    }
}

/// What discovery found, and where a download from each hub would go.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Discovery {
    pub candidates: Vec<ModelCandidate>,
    pub targets: Vec<(Source, PathBuf)>,
}

/// The picker overlay (`m`).
#[derive(Debug, Clone, PartialEq)]
pub struct Picker {
    pub candidates: Vec<ModelCandidate>,
    pub selected: usize,
    /// Discovery is running (it reads safetensors headers, so off the UI thread).
    pub scanning: bool,
    /// Where a download goes: the hub's cache, per source.
    pub targets: Vec<(Source, PathBuf)>,
    /// The hub a download uses (`s` toggles).
    pub source: Source,
    /// A finished download, offered for loading.
    pub offer: Option<PathBuf>,
}

impl Default for Picker {
    fn default() -> Self {
        Self {
            candidates: Vec::new(),
            selected: 0,
            scanning: false,
            targets: Vec::new(),
            source: Source::HuggingFace,
            offer: None,
        }
    }
}

impl Picker {
    pub fn selected_candidate(&self) -> Option<&ModelCandidate> {
        self.candidates.get(self.selected)
    }

    pub fn target(&self, source: Source) -> Option<&Path> {
        self.targets
            .iter()
            .find(|(s, _)| *s == source)
            .map(|(_, dir)| dir.as_path())
    }
}

pub type ModelJobId = u64;

#[derive(Debug, Clone, PartialEq)]
pub enum ModelJobKind {
    /// Fetch the checkpoint from a hub into its cache, or into `dir` (resuming partial files).
    Download { source: Source, dir: Option<PathBuf> },
    /// Hash every file of a checkpoint against its recorded sizes and hashes.
    Verify { dir: PathBuf },
}

/// What the event loop starts for `Effect::Models(ModelsEffect::Start)`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelJobRequest {
    pub id: ModelJobId,
    pub kind: ModelJobKind,
}

/// Progress of a model job, adapted from the fetch module's events.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelJobEvent {
    /// The work is known: `files` (`bytes`) to transfer or hash; `dir` is the checkpoint.
    Planned {
        dir: Option<PathBuf>,
        files: usize,
        bytes: u64,
        /// Files already in place (downloads).
        present: usize,
    },
    FileStarted {
        path: String,
        size: u64,
    },
    /// Bytes of the current file so far (on disk including a resumed prefix, or hashed).
    FileProgress {
        done: u64,
    },
    FileDone,
    /// A retry or a discarded partial file (logged; the next progress is a new baseline).
    Note(String),
    Finished(ModelJobOutcome),
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelJobOutcome {
    Downloaded {
        dir: PathBuf,
        files: usize,
        fetched: usize,
        bytes: u64,
    },
    /// Every recorded file matched; `basis` says against what.
    Verified {
        checked: usize,
        bytes: u64,
        basis: String,
    },
    /// Verification found a file that is not what was recorded.
    BadFile(String),
    Failed(String),
    Cancelled,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ModelJobStatus {
    Running,
    Done,
    Failed { reason: String },
    Cancelled,
}

/// A download or verification shown in the queue pane.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelJob {
    pub id: ModelJobId,
    pub kind: ModelJobKind,
    pub status: ModelJobStatus,
    /// The checkpoint directory, once known.
    pub dir: Option<PathBuf>,
    pub files_total: usize,
    pub files_done: usize,
    pub bytes_total: u64,
    /// Bytes of finished files.
    pub bytes_finished: u64,
    pub current_file: Option<String>,
    pub current_size: u64,
    pub current_done: u64,
    /// The next progress report sets the baseline (a resumed prefix is not transferred now).
    baseline_pending: bool,
    /// Bytes moved by this job (downloaded or hashed), for the rate.
    pub moved: u64,
    /// (time, moved) samples of the last seconds, for the rate.
    samples: VecDeque<(Duration, u64)>,
    pub started_at: Duration,
    pub finished_at: Option<Duration>,
    pub cancel_requested: bool,
    /// The final word: where it went, what was checked, the first bad file.
    pub summary: Option<String>,
}

/// How far back the transfer rate looks.
const RATE_WINDOW: Duration = Duration::from_secs(5);

impl ModelJob {
    pub fn new(id: ModelJobId, kind: ModelJobKind, at: Duration) -> Self {
        let dir = match &kind {
            ModelJobKind::Verify { dir } => Some(dir.clone()),
            ModelJobKind::Download { .. } => None,
        };
        Self {
            id,
            kind,
            status: ModelJobStatus::Running,
            dir,
            files_total: 0,
            files_done: 0,
            bytes_total: 0,
            bytes_finished: 0,
            current_file: None,
            current_size: 0,
            current_done: 0,
            baseline_pending: true,
            moved: 0,
            samples: VecDeque::new(),
            started_at: at,
            finished_at: None,
            cancel_requested: false,
            summary: None,
        }
    }

    /// "D1" for downloads, "V2" for verifications.
    pub fn tag(&self) -> String {
        match self.kind {
            ModelJobKind::Download { .. } => format!("D{}", self.id),
            ModelJobKind::Verify { .. } => format!("V{}", self.id),
        }
    }

    pub fn kind_label(&self) -> &'static str {
        match self.kind {
            ModelJobKind::Download { .. } => "download",
            ModelJobKind::Verify { .. } => "verify",
        }
    }

    /// What the job works on: "Hugging Face → DIR" or the checkpoint verified.
    pub fn target_label(&self) -> String {
        match (&self.kind, &self.dir) {
            (ModelJobKind::Download { source, .. }, Some(dir)) => {
                format!("{} → {}", source_name(*source), dir.display())
            }
            (ModelJobKind::Download { source, dir: None }, None) => {
                format!("{} checkpoint", source_name(*source))
            }
            (
                ModelJobKind::Download {
                    source,
                    dir: Some(dir),
                },
                None,
            ) => {
                format!("{} → {}", source_name(*source), dir.display())
            }
            (ModelJobKind::Verify { dir }, _) => dir.display().to_string(),
        }
    }

    pub fn is_running(&self) -> bool {
        self.status == ModelJobStatus::Running
    }

    pub fn bytes_done(&self) -> u64 {
        self.bytes_finished + self.current_done
    }

    /// Fraction of the bytes done, once the total is known.
    pub fn fraction(&self) -> Option<f64> {
        (self.bytes_total > 0).then(|| (self.bytes_done() as f64 / self.bytes_total as f64).min(1.0))
    }

    /// Bytes per second over the last few seconds (whole job when shorter).
    pub fn rate(&self) -> Option<f64> {
        let (first, last) = (self.samples.front()?, self.samples.back()?);
        let span = last.0.saturating_sub(first.0).as_secs_f64();
        (span >= 0.2).then(|| (last.1 - first.1) as f64 / span)
    }

    pub fn eta_secs(&self) -> Option<f64> {
        let rate = self.rate().filter(|r| *r > 0.0)?;
        Some(self.bytes_total.saturating_sub(self.bytes_done()) as f64 / rate)
    }

    pub fn elapsed_secs(&self, now: Duration) -> f64 {
        self.finished_at
            .unwrap_or(now)
            .saturating_sub(self.started_at)
            .as_secs_f64()
    }

    fn sample(&mut self, at: Duration) {
        if self.samples.back().is_some_and(|(t, _)| *t > at) {
            return;
        }
        self.samples.push_back((at, self.moved));
        while self
            .samples
            .front()
            .is_some_and(|(t, _)| at.saturating_sub(*t) > RATE_WINDOW)
            && self.samples.len() > 2
        {
            self.samples.pop_front();
        }
    }

    /// Applies one progress event (not `Finished`).
    fn progress(&mut self, event: ModelJobEvent, at: Duration) {
        match event {
            ModelJobEvent::Planned {
                dir,
                files,
                bytes,
                present,
            } => {
                if dir.is_some() {
                    self.dir = dir;
                }
                self.files_total = files;
                self.bytes_total = bytes;
                if present > 0 {
                    self.summary = Some(format!("{present} file(s) already in place"));
                }
                self.sample(at);
            }
            ModelJobEvent::FileStarted { path, size } => {
                self.current_file = Some(path);
                self.current_size = size;
                self.current_done = 0;
                self.baseline_pending = true;
            }
            ModelJobEvent::FileProgress { done } => {
                if !self.baseline_pending {
                    self.moved += done.saturating_sub(self.current_done);
                }
                // A download's first report of an attempt is what is already on disk.
                self.baseline_pending = false;
                self.current_done = done;
                self.sample(at);
            }
            ModelJobEvent::FileDone => {
                self.files_done += 1;
                self.bytes_finished += self.current_size;
                self.current_done = 0;
                self.current_file = None;
                self.baseline_pending = true;
            }
            ModelJobEvent::Note(_) => self.baseline_pending = true,
            ModelJobEvent::Finished(_) => {}
        }
    }
}

/// The hub `s` switches to.
pub fn other_source(source: Source) -> Source {
    match source {
        Source::HuggingFace => Source::ModelScope,
        Source::ModelScope => Source::HuggingFace,
    }
}

pub fn source_name(source: Source) -> &'static str {
    match source {
        Source::HuggingFace => "Hugging Face",
        Source::ModelScope => "ModelScope",
    }
}

/// The models part of the app state.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ModelsState {
    pub picker: Picker,
    /// The model asked of the worker last (loading or loaded).
    pub requested: Option<ModelSpec>,
    /// The last model that loaded: what a failed switch goes back to.
    pub loaded: Option<ModelSpec>,
    /// `requested` is the previous model being reloaded after a failed switch.
    pub falling_back: bool,
    /// Device, dtype and memory policy for every load (from the config).
    pub options: LoadOptions,
    pub jobs: Vec<ModelJob>,
    pub next_job: ModelJobId,
    /// Folders downloaded into this session: discovery lists them too.
    pub downloaded_dirs: Vec<PathBuf>,
}

/// What discovery and the model jobs report back (through the event loop).
#[derive(Debug, Clone)]
pub enum ModelsAction {
    /// Load this model through the worker (startup, and Enter in the picker).
    Load { spec: ModelSpec, options: LoadOptions },
    /// Discovery finished.
    Found(Discovery),
    /// A model job's progress; `at` is the time since app start.
    Job {
        id: ModelJobId,
        event: ModelJobEvent,
        at: Duration,
    },
}

/// Work for the event loop; all of it runs off the UI thread.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelsEffect {
    /// Find checkpoints (`loader::discover` + `inspect_dir`, plus the folders in `also`) and
    /// report `ModelsAction::Found`.
    Discover {
        also: Vec<PathBuf>,
    },
    Start(ModelJobRequest),
    Cancel(ModelJobId),
}

pub fn update(state: &mut AppState, action: ModelsAction, effects: &mut Vec<Effect>) {
    match action {
        ModelsAction::Load { spec, options } => {
            state.models.options = options;
            request_load(state, spec, effects);
        }
        ModelsAction::Found(discovery) => found(state, discovery),
        ModelsAction::Job { id, event, at } => {
            state.now = state.now.max(at);
            job_event(state, id, event, at, effects);
        }
    }
}

fn request_load(state: &mut AppState, spec: ModelSpec, effects: &mut Vec<Effect>) {
    let part = match state.running_job() {
        Some(job) => format!("after job #{job}"),
        // The worker finishes the stress run on the current model first.
        None if state.stress.active() => "after the stress run".into(),
        None => "starting".into(),
    };
    state.model = ModelStatus::Loading {
        part,
        done: 0,
        total: 0,
    };
    state.models.requested = Some(spec.clone());
    effects.push(Effect::Worker(Command::LoadModel {
        spec,
        options: state.models.options.clone(),
    }));
}

/// What a worker event says about loading, read before the reducer consumes it.
pub fn load_outcome(event: &Event) -> Option<Result<(), String>> {
    match event {
        Event::Loaded { .. } => Some(Ok(())),
        Event::LoadFailed { message } => Some(Err(message.clone())),
        _ => None,
    }
}

/// After a load finished: remember what is loaded; after a failed switch, go back to the
/// previous model (the worker frees the old model before loading the new one).
pub fn after_load(state: &mut AppState, outcome: Result<(), String>, effects: &mut Vec<Effect>) {
    let models = &mut state.models;
    match outcome {
        Ok(()) => {
            models.loaded = models.requested.clone();
            models.falling_back = false;
        }
        Err(message) => {
            let failed = models.requested.clone();
            let previous = models.loaded.clone().filter(|p| Some(p) != failed.as_ref());
            match previous {
                Some(previous) if !models.falling_back => {
                    models.falling_back = true;
                    let title = failed.as_ref().map(spec_title).unwrap_or_default();
                    state.notify(
                        LogLevel::Error,
                        format!(
                            "Could not load {title}: {message}. Going back to {}",
                            spec_title(&previous)
                        ),
                    );
                    request_load(state, previous, effects);
                }
                _ => {
                    models.falling_back = false;
                    models.loaded = None;
                    state.notify(
                        LogLevel::Error,
                        format!("No model is loaded: {message}. m opens the model picker"),
                    );
                }
            }
        }
    }
}

/// `m`: open the picker and rescan.
pub fn open_picker(state: &mut AppState, effects: &mut Vec<Effect>) {
    state.mode = Mode::Models;
    rescan(state, effects);
}

fn rescan(state: &mut AppState, effects: &mut Vec<Effect>) {
    if !state.models.picker.scanning {
        state.models.picker.scanning = true;
        let also = state.models.downloaded_dirs.clone();
        effects.push(Effect::Models(ModelsEffect::Discover { also }));
    }
}

fn found(state: &mut AppState, discovery: Discovery) {
    let picker = &mut state.models.picker;
    let keep = picker.selected_candidate().map(|c| c.spec.clone());
    let mut candidates = discovery.candidates;
    if !candidates.iter().any(|c| c.spec == ModelSpec::Demo) {
        candidates.push(ModelCandidate::built_in(
            ModelSpec::Demo,
            CandidateOrigin::BuiltIn,
        ));
    }
    if let Some(current) = &state.models.requested {
        if !candidates.iter().any(|c| &c.spec == current) {
            candidates.push(ModelCandidate::built_in(
                current.clone(),
                CandidateOrigin::Configured,
            ));
        }
    }
    let offered = picker.offer.clone().map(ModelSpec::Dir);
    let wanted = offered.or(keep).or_else(|| state.models.requested.clone());
    picker.selected = wanted
        .and_then(|spec| candidates.iter().position(|c| c.spec == spec))
        .unwrap_or(0);
    picker.candidates = candidates;
    picker.targets = discovery.targets;
    picker.scanning = false;
}

/// Intents while the picker is open; `false` when the intent is not the picker's.
pub fn picker_intent(state: &mut AppState, intent: Intent, effects: &mut Vec<Effect>) -> bool {
    match intent {
        Intent::CloseModels => state.mode = Mode::Normal,
        Intent::RescanModels => rescan(state, effects),
        Intent::ToggleFetchSource => {
            let picker = &mut state.models.picker;
            picker.source = other_source(picker.source);
        }
        Intent::LoadModel => load_selected(state, effects),
        Intent::VerifyModel => verify_selected(state, effects),
        Intent::DownloadModel => {
            let source = state.models.picker.source;
            download(state, ModelJobKind::Download { source, dir: None }, effects);
        }
        Intent::DownloadModelTo => {
            let picker = &state.models.picker;
            let suggestion = picker
                .target(picker.source)
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            state.draft.line = super::editor::new_line_input(&suggestion);
            state.mode = Mode::LineInput(LineInputPurpose::DownloadDir);
        }
        _ => return false,
    }
    true
}

/// j/k/g/G in the picker.
pub fn move_selection(state: &mut AppState, delta: isize) {
    let picker = &mut state.models.picker;
    let len = picker.candidates.len();
    if len > 0 {
        picker.selected = (picker.selected as isize)
            .saturating_add(delta)
            .clamp(0, len as isize - 1) as usize;
    }
}

fn load_selected(state: &mut AppState, effects: &mut Vec<Effect>) {
    let Some(candidate) = state.models.picker.selected_candidate().cloned() else {
        state.notify(LogLevel::Info, "Nothing to load yet (r rescans)");
        return;
    };
    let title = candidate.title();
    if !candidate.complete {
        let problem = candidate.problem.unwrap_or_else(|| "incomplete".into());
        // Only the hubs' caches are where `f` downloads to.
        let hint = match candidate.origin {
            CandidateOrigin::Found(ModelSource::HuggingFaceCache | ModelSource::ModelScopeCache) => {
                "f resumes its download"
            }
            _ => "fix the directory or pick another",
        };
        state.notify(
            LogLevel::Error,
            format!("Not loading {title}: {problem}. {hint}; the current model stays"),
        );
        return;
    }
    if matches!(state.model, ModelStatus::Loading { .. }) {
        state.notify(LogLevel::Info, "A model is loading; pick again when it is ready");
        return;
    }
    let current = state.models.requested.as_ref() == Some(&candidate.spec);
    if current && !matches!(state.model, ModelStatus::Failed { .. }) {
        state.notify(LogLevel::Info, format!("{title} is already the current model"));
        return;
    }
    state.models.picker.offer = None;
    state.models.falling_back = false;
    state.mode = Mode::Normal;
    let note = match state.running_job() {
        Some(job) => format!("Loading {title} after job #{job}"),
        None => format!("Loading {title}"),
    };
    state.notify(LogLevel::Info, note);
    request_load(state, candidate.spec, effects);
}

fn verify_selected(state: &mut AppState, effects: &mut Vec<Effect>) {
    let Some(candidate) = state.models.picker.selected_candidate() else {
        return;
    };
    let Some(dir) = candidate.dir().map(Path::to_path_buf) else {
        state.notify(LogLevel::Info, "Only checkpoint directories can be verified");
        return;
    };
    let busy = state
        .models
        .jobs
        .iter()
        .find(|j| j.is_running() && matches!(&j.kind, ModelJobKind::Verify { dir: d } if *d == dir));
    if let Some(job) = busy {
        let tag = job.tag();
        state.notify(LogLevel::Info, format!("{tag} is already verifying it"));
        return;
    }
    start_job(state, ModelJobKind::Verify { dir }, effects);
}

/// The "download into a folder" input was submitted.
pub fn download_into(state: &mut AppState, text: &str, effects: &mut Vec<Effect>) -> Result<(), String> {
    let dir = text.trim();
    if dir.is_empty() {
        return Err("Enter a directory to download into".into());
    }
    let source = state.models.picker.source;
    let kind = ModelJobKind::Download {
        source,
        dir: Some(PathBuf::from(dir)),
    };
    download(state, kind, effects);
    Ok(())
}

fn download(state: &mut AppState, kind: ModelJobKind, effects: &mut Vec<Effect>) {
    if let Some(job) = state
        .models
        .jobs
        .iter()
        .find(|j| j.is_running() && matches!(j.kind, ModelJobKind::Download { .. }))
    {
        let tag = job.tag();
        state.notify(
            LogLevel::Info,
            format!("{tag} is already downloading (c in the queue cancels it)"),
        );
        return;
    }
    start_job(state, kind, effects);
}

fn start_job(state: &mut AppState, kind: ModelJobKind, effects: &mut Vec<Effect>) {
    state.models.next_job += 1;
    let id = state.models.next_job;
    let job = ModelJob::new(id, kind.clone(), state.now);
    let note = format!(
        "{} {} started: see the queue (c cancels)",
        job.tag(),
        job.kind_label()
    );
    state.models.jobs.push(job);
    // Show it: the queue pane, the new row selected.
    state.selected = state.queue.len() + state.models.jobs.len() - 1;
    state.focus = Pane::Queue;
    state.mode = Mode::Normal;
    state.notify(LogLevel::Info, note);
    effects.push(Effect::Models(ModelsEffect::Start(ModelJobRequest { id, kind })));
}

fn job_event(
    state: &mut AppState,
    id: ModelJobId,
    event: ModelJobEvent,
    at: Duration,
    effects: &mut Vec<Effect>,
) {
    let Some(job) = state.models.jobs.iter_mut().find(|j| j.id == id) else {
        return;
    };
    if !job.is_running() {
        return;
    }
    let outcome = match event {
        ModelJobEvent::Finished(outcome) => outcome,
        ModelJobEvent::Note(text) => {
            let line = format!("{}: {text}", job.tag());
            job.progress(ModelJobEvent::Note(text), at);
            state.push_log(LogLevel::Warn, line);
            return;
        }
        other => {
            job.progress(other, at);
            return;
        }
    };
    job.finished_at = Some(at);
    job.current_file = None;
    let tag = job.tag();
    let (level, message) = match outcome {
        ModelJobOutcome::Downloaded {
            dir,
            files,
            fetched,
            bytes,
        } => {
            job.status = ModelJobStatus::Done;
            job.bytes_finished = job.bytes_total.max(bytes);
            job.current_done = 0;
            job.files_done = fetched;
            job.summary = Some(format!("{files} files in place ({fetched} fetched)"));
            job.dir = Some(dir.clone());
            let chosen_folder = matches!(job.kind, ModelJobKind::Download { dir: Some(_), .. });
            if chosen_folder && !state.models.downloaded_dirs.contains(&dir) {
                state.models.downloaded_dirs.push(dir.clone());
            }
            state.models.picker.offer = Some(dir.clone());
            rescan(state, effects);
            let how = if state.mode == Mode::Models {
                "Enter loads it"
            } else {
                "m, then Enter loads it"
            };
            (
                LogLevel::Info,
                format!("{tag} done: checkpoint in {} ({how})", dir.display()),
            )
        }
        ModelJobOutcome::Verified {
            checked,
            bytes,
            basis,
        } => {
            job.status = ModelJobStatus::Done;
            job.files_done = checked;
            job.bytes_finished = bytes;
            job.current_done = 0;
            job.summary = Some(format!("all good: {checked} files {basis}"));
            (
                LogLevel::Info,
                format!("{tag} verified {checked} files {basis}: all good"),
            )
        }
        ModelJobOutcome::BadFile(bad) => {
            job.status = ModelJobStatus::Failed { reason: bad.clone() };
            job.summary = Some(format!("first bad file: {bad}"));
            (LogLevel::Error, format!("{tag} verify failed: {bad}"))
        }
        ModelJobOutcome::Failed(reason) => {
            job.status = ModelJobStatus::Failed {
                reason: reason.clone(),
            };
            job.summary = Some(reason.clone());
            (LogLevel::Error, format!("{tag} failed: {reason}"))
        }
        ModelJobOutcome::Cancelled => {
            job.status = ModelJobStatus::Cancelled;
            let note = match job.kind {
                ModelJobKind::Download { .. } => "partial files kept; f resumes",
                ModelJobKind::Verify { .. } => "not all files checked",
            };
            job.summary = Some(note.into());
            (LogLevel::Warn, format!("{tag} cancelled: {note}"))
        }
    };
    // Verification results change what the picker shows as complete.
    if state.mode == Mode::Models && level == LogLevel::Error {
        rescan(state, effects);
    }
    state.notify(level, message);
}

/// Downloads and verifications still running.
pub fn running_jobs(state: &AppState) -> impl Iterator<Item = &ModelJob> {
    state.models.jobs.iter().filter(|j| j.is_running())
}

/// The model job in the selected queue row (rows after the image jobs).
pub fn selected_job(state: &AppState) -> Option<&ModelJob> {
    state
        .selected
        .checked_sub(state.queue.len())
        .and_then(|i| state.models.jobs.get(i))
}

/// Rows in the queue pane: image jobs, then model jobs.
pub fn queue_rows(state: &AppState) -> usize {
    state.queue.len() + state.models.jobs.len()
}

/// The queue's cancel key on a model job row. `false` when the selected row is not one.
pub fn cancel_selected(state: &mut AppState, effects: &mut Vec<Effect>) -> bool {
    let Some(index) = state.selected.checked_sub(state.queue.len()) else {
        return false;
    };
    let Some(job) = state.models.jobs.get_mut(index) else {
        return false;
    };
    let tag = job.tag();
    if !job.is_running() {
        state.notify(LogLevel::Info, format!("{tag} is not running"));
    } else if !job.cancel_requested {
        job.cancel_requested = true;
        effects.push(Effect::Models(ModelsEffect::Cancel(job.id)));
        state.notify(LogLevel::Info, format!("Cancelling {tag}…"));
    }
    true
}

/// The queue's delete key on a model job row: finished ones go. `false` when not such a row.
pub fn delete_selected(state: &mut AppState) -> bool {
    let Some(index) = state.selected.checked_sub(state.queue.len()) else {
        return false;
    };
    let Some(job) = state.models.jobs.get(index) else {
        return false;
    };
    let tag = job.tag();
    if job.is_running() {
        state.notify(LogLevel::Warn, format!("{tag} is running: c cancels it first"));
    } else {
        state.models.jobs.remove(index);
        state.selected = state.selected.min(queue_rows(state).saturating_sub(1));
        state.notify(LogLevel::Info, format!("Removed {tag}"));
    }
    true
}
