//! Thin adapters between the dashboard loop and the modules it drives: config, theme, logging,
//! the worker thread, the GPU sampler and session files. Each turns the other module's types
//! into the app's `Action`s and back, so the loop itself stays small.

use std::cell::RefCell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};

use super::model_tasks::{self, ModelTask};
use super::tui::{parse_protocol, ProtocolChoice};
use crate::app::keymap::Keymap;
use crate::app::models::{ModelJobEvent, ModelJobId, ModelJobOutcome, ModelsAction, ModelsEffect};
use crate::app::persist;
use crate::app::state::{GpuReading, LogLevel, Settings};
use crate::app::{Action, AppState, LoadedSession};
use crate::config::{Config, ConfigArgs, ConfigSources, ImageProtocol};
use crate::fetch::job::SharedEnv;
use crate::fetch::RetryPolicy;
use crate::gpu::{GpuSample, MemorySource, Sampler};
use crate::model::loader::{ModelSpec, SearchPaths};
use crate::session::Session;
use crate::theme::Theme;
use crate::ui::Palette;
use crate::worker::{Command, WorkerHandle};

/// Everything decided before the terminal is touched.
pub struct Setup {
    pub config: Config,
    pub keymap: Keymap,
    pub settings: Settings,
    pub session_path: Option<PathBuf>,
    pub protocol: ProtocolChoice,
    pub palette: Palette,
    /// Problems worth telling the user once the dashboard is up (e.g. an unknown theme).
    pub warnings: Vec<String>,
}

impl Setup {
    pub fn from_args(args: &ConfigArgs) -> anyhow::Result<Self> {
        let sources = ConfigSources::standard(args)?;
        let config = Config::load(&sources)?;
        let keymap = Keymap::with_overrides(&config.keys).map_err(|e| anyhow::anyhow!("config: {e}"))?;
        let mut warnings = Vec::new();
        let protocol = parse_protocol(match config.ui.image_protocol {
            ImageProtocol::Auto => "auto",
            ImageProtocol::Kitty => "kitty",
            ImageProtocol::Sixel => "sixel",
            ImageProtocol::Iterm2 => "iterm2",
            ImageProtocol::Halfblocks => "halfblocks",
        })?;
        let palette = match Theme::load(&config.ui.theme, crate::config::user_themes_dir().as_deref()) {
            Ok(theme) => palette_from_theme(&theme),
            Err(err) => {
                warnings.push(format!("{err}; using the built-in dark theme"));
                Theme::builtin(crate::theme::DEFAULT_THEME)
                    .map(|t| palette_from_theme(&t))
                    .unwrap_or_default()
            }
        };
        let stamp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let settings = Settings {
            width: config.generation.width,
            height: config.generation.height,
            steps: config.generation.steps,
            output_dir: config.output_dir(),
            output_prefix: format!("zimage-{stamp}"),
            previews: true,
        };
        let session_path = if config.session.autosave || args.session.is_some() {
            config.session_path()
        } else {
            None
        };
        Ok(Self {
            config,
            keymap,
            settings,
            session_path,
            protocol,
            palette,
            warnings,
        })
    }
}

pub fn palette_from_theme(theme: &Theme) -> Palette {
    Palette {
        text: theme.fg,
        dim: theme.muted,
        accent: theme.accent,
        border: theme.border,
        selection_fg: theme.selected_fg,
        selection_bg: theme.selected_bg,
        ok: theme.ok,
        warn: theme.warn,
        error: theme.error,
        gauge: theme.gauge_filled,
        sparkline: theme.sparkline,
    }
}

/// Logs to the file under the XDG state dir; warnings and errors also go to the log pane.
pub fn init_logging(actions: UnboundedSender<Action>) -> Option<crate::logging::LogGuard> {
    let dir = crate::config::log_dir()?;
    let (lines, mut inbox) = unbounded_channel::<crate::logging::LogLine>();
    let guard = crate::logging::init_file_logging(&dir, Some((lines, tracing::Level::WARN))).ok()?;
    tokio::spawn(async move {
        while let Some(line) = inbox.recv().await {
            let level = if line.level == tracing::Level::ERROR {
                LogLevel::Error
            } else {
                LogLevel::Warn
            };
            if actions
                .send(Action::LogLine {
                    level,
                    text: line.message,
                })
                .is_err()
            {
                break;
            }
        }
    });
    Some(guard)
}

/// The worker thread, the GPU sampler, and the model picker's background work.
pub struct Engine {
    worker: Option<WorkerHandle>,
    sampler: Option<Sampler>,
    models: ModelWork,
}

impl Engine {
    /// Starts the worker (its events become `Action::Worker`, stamped with `at`) and the sampler.
    pub fn start(
        setup: &Setup,
        actions: UnboundedSender<Action>,
        start: std::time::Instant,
    ) -> anyhow::Result<Self> {
        let (events, mut inbox) = unbounded_channel();
        let worker = crate::worker::spawn(events).context("starting the worker thread")?;
        let models = ModelWork::new(&setup.config, actions.clone(), start);
        tokio::spawn(async move {
            while let Some(event) = inbox.recv().await {
                if actions
                    .send(Action::Worker {
                        event,
                        at: start.elapsed(),
                    })
                    .is_err()
                {
                    break;
                }
            }
        });
        let telemetry = crate::gpu::open(&setup.config.device());
        let sampler = Sampler::spawn(telemetry, setup.config.sampler_config(), None)
            .map_err(|err| tracing::warn!("GPU sampler not started: {err}"))
            .ok();
        Ok(Self {
            worker: Some(worker),
            sampler,
            models,
        })
    }

    /// Discovery and download/verify jobs: each on a thread of its own, never the worker's.
    pub fn models(&self, effect: ModelsEffect) {
        self.models.run(effect);
    }

    pub fn send(&self, command: Command) {
        if let Some(worker) = &self.worker {
            if !worker.send(command) {
                tracing::error!("the worker thread has stopped");
            }
        }
    }

    /// The latest GPU reading as an action (one per tick keeps the sparkline's time scale even).
    pub fn gpu_action(&self) -> Option<Action> {
        let sampler = self.sampler.as_ref()?;
        let sample = sampler.latest()?;
        Some(gpu_action(sampler.info(), &sample))
    }

    /// Cancels the running job and waits for the worker thread.
    pub fn shutdown(&mut self) {
        self.models.shutdown();
        if let Some(worker) = self.worker.take() {
            worker.shutdown();
        }
        self.sampler = None;
    }
}

/// Runs the picker's discovery and the model jobs off the UI thread; results come back as
/// `Action::Models`, stamped with the time since start like worker events.
struct ModelWork {
    actions: UnboundedSender<Action>,
    start: std::time::Instant,
    /// `--model DIR` / `model.source` when it is a directory: listed first by discovery.
    flag: Option<PathBuf>,
    tasks: RefCell<HashMap<ModelJobId, ModelTask>>,
}

/// How long quitting waits for cancelled downloads to stop writing.
const TASK_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

impl ModelWork {
    fn new(config: &Config, actions: UnboundedSender<Action>, start: std::time::Instant) -> Self {
        let flag = match config.model_spec() {
            ModelSpec::Dir(dir) => Some(dir),
            _ => None,
        };
        Self {
            actions,
            start,
            flag,
            tasks: RefCell::new(HashMap::new()),
        }
    }

    fn run(&self, effect: ModelsEffect) {
        match effect {
            ModelsEffect::Discover { also } => {
                let paths = SearchPaths::from_env(self.flag.clone());
                let actions = self.actions.clone();
                let spawned = std::thread::Builder::new()
                    .name("model-discovery".into())
                    .spawn(move || {
                        let env = &crate::fetch::env::process_env;
                        let found = model_tasks::discover(&paths, env, &also);
                        let _ = actions.send(Action::Models(ModelsAction::Found(found)));
                    });
                if let Err(err) = spawned {
                    tracing::error!("cannot start model discovery: {err}");
                    let _ = self
                        .actions
                        .send(Action::Models(ModelsAction::Found(Default::default())));
                }
            }
            ModelsEffect::Start(request) => {
                let (actions, start, id) = (self.actions.clone(), self.start, request.id);
                let sink = move |event: ModelJobEvent| {
                    if let ModelJobEvent::Finished(outcome) = &event {
                        tracing::info!("model job {id} finished: {outcome:?}");
                    }
                    let _ = actions.send(Action::Models(ModelsAction::Job {
                        id,
                        event,
                        at: start.elapsed(),
                    }));
                };
                tracing::info!("model job {id} started: {:?}", request.kind);
                let env: SharedEnv = Arc::new(crate::fetch::env::process_env);
                match model_tasks::start(&request, env, RetryPolicy::default(), sink) {
                    Ok(task) => {
                        let mut tasks = self.tasks.borrow_mut();
                        tasks.retain(|_, t| !t.is_finished());
                        tasks.insert(id, task);
                    }
                    Err(err) => {
                        let _ = self.actions.send(Action::Models(ModelsAction::Job {
                            id,
                            event: ModelJobEvent::Finished(ModelJobOutcome::Failed(format!(
                                "cannot start a thread: {err}"
                            ))),
                            at: self.start.elapsed(),
                        }));
                    }
                }
            }
            ModelsEffect::Cancel(id) => {
                tracing::info!("model job {id}: cancel asked");
                if let Some(task) = self.tasks.borrow().get(&id) {
                    task.cancel();
                }
            }
        }
    }

    /// Cancels running jobs (partial downloads are kept for the next run) and waits a little
    /// for them to stop.
    fn shutdown(&self) {
        let tasks: Vec<ModelTask> = self.tasks.borrow_mut().drain().map(|(_, t)| t).collect();
        tasks.iter().for_each(ModelTask::cancel);
        let deadline = std::time::Instant::now() + TASK_STOP_WAIT;
        for task in tasks {
            while !task.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if task.is_finished() {
                task.join();
            }
        }
    }
}

pub fn gpu_action(info: &crate::gpu::DeviceInfo, sample: &GpuSample) -> Action {
    match info.source {
        MemorySource::DeviceVram => Action::Gpu(GpuReading {
            name: info.name.clone(),
            used_bytes: sample.memory_used,
            total_bytes: sample.memory_total.unwrap_or(0),
            utilization_percent: sample.utilization_percent,
            temperature_c: sample.temperature_c,
            power_watts: sample.power_watts,
            power_limit_watts: sample.power_limit_watts,
        }),
        MemorySource::ProcessRss => Action::GpuUnavailable {
            reason: info
                .unavailable_reason
                .clone()
                .unwrap_or_else(|| info.name.clone()),
            process_rss_bytes: Some(sample.process_memory.unwrap_or(sample.memory_used)),
            memory_total_bytes: sample.memory_total,
        },
    }
}

/// Reads a session file; at startup a missing file is a new, empty session.
pub fn load_session(path: &Path, startup: bool) -> anyhow::Result<LoadedSession> {
    let session = if startup {
        Session::load_or_new(path)
    } else {
        Session::load(path)
    }?;
    Ok(persist::from_session(session, path.to_path_buf()))
}

pub fn save_session(state: &AppState, path: &Path) -> anyhow::Result<()> {
    persist::to_session(state).save(path)?;
    Ok(())
}

/// Seed for the app's seed generator: different each run.
pub fn rng_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    nanos ^ (u64::from(std::process::id()) << 32)
}
