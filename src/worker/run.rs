//! The worker loop: an ordered queue of loads and jobs, commands drained between steps.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::Tensor;
use tokio::sync::mpsc::UnboundedSender;

use super::{
    Command, Engine, EngineLoader, Event, FailureKind, Job, JobId, JobOutput, VramProbe, WorkerConfig,
};
use crate::bench::stress::{StressEvent, StressRequest};
use crate::model::loader::{LoadOptions, LoadProgress, ModelSpec};
use crate::model::preview::LatentProjection;
use crate::model::weights::ProgressFn;
use crate::model::{ModelError, Progress, Stage};
use crate::output::{self, ImageMetadata};

/// Longest side of a step preview, in pixels (one pixel per latent below that).
const PREVIEW_MAX_SIDE: usize = 128;
/// Loading events are sent at most this often per component (plus the first and last).
const LOADING_EVENT_INTERVAL: Duration = Duration::from_millis(50);

enum Work {
    Load { spec: ModelSpec, options: LoadOptions },
    Job(Job),
    Stress(Box<StressRequest>),
}

/// Everything commands can change; shared with the observer of the running job (and, during a
/// stress run, with the runner's observer).
pub(super) struct Inbox {
    commands: mpsc::Receiver<Command>,
    queue: VecDeque<Work>,
    running: Option<JobId>,
    cancel_running: bool,
    /// A stress run is in progress (its jobs are the running ones).
    pub(super) stress_active: bool,
    /// `CancelStress` arrived: the runner stops before its next job.
    pub(super) stop_stress: bool,
    pub(super) shutdown: bool,
}

pub(super) struct Worker {
    loader: Box<dyn EngineLoader>,
    vram: Option<Box<dyn VramProbe>>,
    pub(super) inbox: Rc<RefCell<Inbox>>,
    /// Where events go: the caller's channel, or a stress run's capture channel while it runs.
    pub(super) events: UnboundedSender<Event>,
    pub(super) engine: Option<Box<dyn Engine>>,
    /// How the loaded model was loaded and how long it took (a stress run's report header).
    pub(super) loaded_with: Option<(LoadOptions, f64)>,
    /// Why no model is loaded (the last load failure), for jobs that arrive anyway.
    pub(super) no_engine_reason: String,
    projection: LatentProjection,
}

impl Worker {
    pub(super) fn new(
        config: WorkerConfig,
        commands: mpsc::Receiver<Command>,
        events: UnboundedSender<Event>,
    ) -> Self {
        Self {
            loader: config.loader,
            vram: config.vram,
            inbox: Rc::new(RefCell::new(Inbox {
                commands,
                queue: VecDeque::new(),
                running: None,
                cancel_running: false,
                stress_active: false,
                stop_stress: false,
                shutdown: false,
            })),
            events,
            engine: None,
            loaded_with: None,
            no_engine_reason: "no model loaded yet".into(),
            projection: LatentProjection::default(),
        }
    }

    pub(super) fn run(mut self) {
        loop {
            let next = {
                let mut inbox = self.inbox.borrow_mut();
                if inbox.queue.is_empty() && !inbox.shutdown {
                    // Idle: block until something arrives.
                    match inbox.commands.recv() {
                        Ok(command) => apply(&mut inbox, command, &self.events),
                        Err(_) => inbox.shutdown = true,
                    }
                }
                drain(&mut inbox, &self.events);
                if inbox.shutdown {
                    break;
                }
                inbox.queue.pop_front()
            };
            match next {
                Some(Work::Load { spec, options }) => self.load(&spec, &options),
                Some(Work::Job(job)) => self.run_job(job),
                Some(Work::Stress(request)) => self.run_stress(*request),
                None => {}
            }
        }
    }

    pub(super) fn emit(&self, event: Event) {
        if self.events.send(event).is_err() {
            // Nobody listens any more: stop after the current work.
            let mut inbox = self.inbox.borrow_mut();
            inbox.shutdown = true;
            inbox.cancel_running = true;
        }
    }

    fn load(&mut self, spec: &ModelSpec, options: &LoadOptions) {
        // Free the old model first: two full models rarely fit in memory together.
        self.engine = None;
        self.loaded_with = None;
        let started = Instant::now();
        let progress = loading_events(self.events.clone());
        let result = catch_unwind(AssertUnwindSafe(|| self.loader.load(spec, options, progress)));
        match result {
            Ok(Ok(engine)) => {
                let info = engine.info().clone();
                self.engine = Some(engine);
                let secs = started.elapsed().as_secs_f64();
                self.loaded_with = Some((options.clone(), secs));
                self.emit(Event::Loaded { info, secs });
            }
            Ok(Err(err)) => {
                self.no_engine_reason = format!("the model failed to load: {err}");
                self.emit(Event::LoadFailed {
                    message: err.to_string(),
                });
            }
            Err(panic) => {
                let message = format!("internal error while loading: {}", panic_text(&panic));
                self.no_engine_reason = message.clone();
                self.emit(Event::LoadFailed { message });
            }
        }
    }

    pub(super) fn run_job(&mut self, job: Job) {
        {
            let mut inbox = self.inbox.borrow_mut();
            inbox.running = Some(job.id);
            inbox.cancel_running = false;
        }
        self.emit(Event::Started { job: job.id });
        let result = self.generate_and_save(&job);
        {
            let mut inbox = self.inbox.borrow_mut();
            inbox.running = None;
            inbox.cancel_running = false;
        }
        match result {
            Ok(output) => self.emit(Event::Done {
                job: job.id,
                output: Box::new(output),
            }),
            Err((kind, message)) => self.emit(Event::Failed {
                job: job.id,
                kind,
                message,
            }),
        }
    }

    fn generate_and_save(&mut self, job: &Job) -> Result<JobOutput, (FailureKind, String)> {
        job.request.validate().map_err(failure)?;
        if let Some(path) = &job.output {
            // Before any compute: an unwritable path fails fast.
            output::check_writable(path).map_err(|err| (FailureKind::Io, err.to_string()))?;
        }
        let Some(engine) = self.engine.as_deref() else {
            return Err((FailureKind::Internal, self.no_engine_reason.clone()));
        };
        let mut observer = JobObserver {
            job,
            inbox: &self.inbox,
            events: &self.events,
            vram: self.vram.as_deref_mut(),
            peak: None,
            projection: &self.projection,
            steps_done: 0,
            injected_oom: Cell::new(false),
        };
        observer.sample_vram();
        let generated = catch_unwind(AssertUnwindSafe(|| engine.generate(&job.request, &mut observer)))
            .map_err(|panic| {
                (
                    FailureKind::Internal,
                    format!("internal error: {}", panic_text(&panic)),
                )
            })?;
        let generated = match generated {
            Err(ModelError::Cancelled) if observer.injected_oom.get() => {
                return Err((
                    FailureKind::OutOfMemory,
                    format!(
                        "out of memory (injected by the test hook after {} steps)",
                        observer.steps_done
                    ),
                ))
            }
            other => other.map_err(failure)?,
        };
        observer.sample_vram();
        let peak_vram_bytes = observer.peak;
        let info = engine.info();
        let save_started = Instant::now();
        if let Some(path) = &job.output {
            let metadata = ImageMetadata {
                prompt: job.request.prompt.clone(),
                seed: job.request.seed,
                steps: job.request.steps,
                width: job.request.width,
                height: job.request.height,
                model: info.label.clone(),
                version: crate::VERSION.to_string(),
                timings: generated.timings.clone(),
            };
            output::write_png(path, &generated.image, &metadata)
                .map_err(|err| (FailureKind::Io, err.to_string()))?;
        }
        Ok(JobOutput {
            path: job.output.clone(),
            image: generated.image,
            timings: generated.timings,
            save: if job.output.is_some() {
                save_started.elapsed()
            } else {
                Duration::ZERO
            },
            peak_vram_bytes,
            warnings: generated.warnings,
        })
    }
}

/// Applies one command to the queue state (also called between steps of a running job).
fn apply(inbox: &mut Inbox, command: Command, events: &UnboundedSender<Event>) {
    match command {
        Command::Submit(job) => inbox.queue.push_back(Work::Job(job)),
        Command::Stress(request) => inbox.queue.push_back(Work::Stress(request)),
        Command::CancelStress if inbox.stress_active => {
            inbox.stop_stress = true;
            inbox.cancel_running = inbox.running.is_some();
        }
        Command::CancelStress => {
            // Not started yet: drop it from the queue.
            let before = inbox.queue.len();
            inbox.queue.retain(|work| !matches!(work, Work::Stress(_)));
            if inbox.queue.len() < before {
                let _ = events.send(Event::Stress(StressEvent::Failed {
                    message: "cancelled before it started".into(),
                }));
            }
        }
        Command::LoadModel { spec, options } => inbox.queue.push_back(Work::Load { spec, options }),
        Command::Cancel(id) if inbox.running == Some(id) => inbox.cancel_running = true,
        Command::Cancel(id) => {
            let before = inbox.queue.len();
            inbox
                .queue
                .retain(|work| !matches!(work, Work::Job(job) if job.id == id));
            if inbox.queue.len() < before {
                let _ = events.send(Event::Failed {
                    job: id,
                    kind: FailureKind::Cancelled,
                    message: "cancelled before it started".into(),
                });
            }
        }
        Command::Shutdown => {
            inbox.shutdown = true;
            inbox.cancel_running = true;
        }
    }
}

pub(super) fn drain(inbox: &mut Inbox, events: &UnboundedSender<Event>) {
    loop {
        match inbox.commands.try_recv() {
            Ok(command) => apply(inbox, command, events),
            Err(mpsc::TryRecvError::Empty) => break,
            Err(mpsc::TryRecvError::Disconnected) => {
                // The handle is gone: finish nothing more.
                inbox.shutdown = true;
                inbox.cancel_running = true;
                break;
            }
        }
    }
}

/// Watches one running job: forwards progress as events, drains commands, answers cancel polls.
struct JobObserver<'a> {
    job: &'a Job,
    inbox: &'a RefCell<Inbox>,
    events: &'a UnboundedSender<Event>,
    vram: Option<&'a mut (dyn VramProbe + 'static)>,
    peak: Option<u64>,
    projection: &'a LatentProjection,
    /// Denoising steps finished so far.
    steps_done: usize,
    /// The `inject_oom_after_step` test hook stopped the job.
    injected_oom: Cell<bool>,
}

impl JobObserver<'_> {
    fn sample_vram(&mut self) {
        if let Some(used) = self.vram.as_mut().and_then(|probe| probe.used_bytes()) {
            self.peak = Some(self.peak.map_or(used, |peak| peak.max(used)));
        }
    }

    fn send(&self, event: Event) {
        let _ = self.events.send(event);
    }
}

impl Progress for JobObserver<'_> {
    fn stage(&mut self, stage: Stage) {
        self.sample_vram();
        self.send(Event::Stage {
            job: self.job.id,
            stage,
        });
    }

    fn step(&mut self, step: usize, total: usize, elapsed: Duration, latents: &Tensor) {
        self.steps_done = step;
        self.sample_vram();
        self.send(Event::Step {
            job: self.job.id,
            step,
            total,
            secs: elapsed.as_secs_f64(),
        });
        if self.job.previews {
            match self.projection.project(latents, PREVIEW_MAX_SIDE) {
                Ok(image) => self.send(Event::Preview {
                    job: self.job.id,
                    step,
                    image,
                }),
                Err(err) => self.send(Event::Log {
                    message: format!("job {}: no preview: {err}", self.job.id),
                }),
            }
        }
    }

    fn cancelled(&self) -> bool {
        if self
            .job
            .inject_oom_after_step
            .is_some_and(|after| self.steps_done >= after)
        {
            self.injected_oom.set(true);
            return true;
        }
        let mut inbox = self.inbox.borrow_mut();
        drain(&mut inbox, self.events);
        inbox.cancel_running
    }
}

/// Maps a model error to the failure reported for the job.
fn failure(err: ModelError) -> (FailureKind, String) {
    let kind = match &err {
        ModelError::BadInput(_) => FailureKind::BadInput,
        ModelError::OutOfMemory(_) => FailureKind::OutOfMemory,
        ModelError::Cancelled => FailureKind::Cancelled,
        ModelError::Io(_) => FailureKind::Io,
        ModelError::Load { .. } | ModelError::Compute(_) => FailureKind::Internal,
    };
    (kind, err.to_string())
}

/// Forwards loading progress as `Event::Loading`, at most every 50 ms per component.
fn loading_events(events: UnboundedSender<Event>) -> ProgressFn {
    let last: Mutex<Option<(String, Instant)>> = Mutex::new(None);
    Arc::new(move |progress: LoadProgress| {
        let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = match &*last {
            Some((part, at)) => {
                *part != progress.part
                    || now - *at >= LOADING_EVENT_INTERVAL
                    || progress.done == progress.total
            }
            None => true,
        };
        if due {
            *last = Some((progress.part.clone(), now));
            let _ = events.send(Event::Loading {
                part: progress.part,
                done: progress.done,
                total: progress.total,
            });
        }
    })
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "panic".into())
}
