//! The dashboard's event loop: `zimage-tui` with no subcommand. A tokio task `select!`s over
//! terminal events, worker events, and a render tick (which also polls the GPU sampler); each
//! becomes an `Action` for the reducer, whose `Effect`s are carried out here. The terminal is
//! restored on quit, on error and on panic; logs go to a file.

use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use crossterm::event::{Event as TermEvent, EventStream, KeyEventKind};
use futures::StreamExt;
use ratatui::layout::Rect;
use ratatui_image::picker::cap_parser::QueryStdioOptions;
use ratatui_image::picker::{Picker, ProtocolType};
use ratatui_image::protocol::Protocol;
use ratatui_image::{Image, Resize};
use tokio::sync::mpsc::unbounded_channel;

use crate::app::models::ModelsAction;
use crate::app::state::{AppState, JobStatus, LogLevel, Mode, PreviewImage};
use crate::app::{keymap, update, Action, Effect};
use crate::config::ConfigArgs;
use crate::terminal::{TerminalOptions, TerminalSession, Tui};
use crate::ui::{self, Palette};
use crate::worker::{Command, JobId};

use super::tui_seams::{self as seams, Engine, Setup};

/// How often the screen may redraw at most, and the clock/GPU tick.
const FRAME: Duration = Duration::from_millis(33);
const TICK: Duration = Duration::from_millis(250);
/// How long to wait for the terminal to answer the graphics query.
const QUERY_TIMEOUT: Duration = Duration::from_millis(500);

/// Runs the dashboard until the user quits; errors are printed after the terminal is restored.
pub fn run(args: ConfigArgs) -> ExitCode {
    let result = (|| {
        if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
            bail!("the dashboard needs a terminal; for scripts use `zimage-tui gen`");
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting tokio")?;
        runtime.block_on(dashboard(args))
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("zimage-tui: {err:#}");
            ExitCode::FAILURE
        }
    }
}

/// Which inline-image protocol to use, from the flag or the config.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProtocolChoice {
    Auto,
    Fixed(ProtocolType),
}

pub fn parse_protocol(text: &str) -> anyhow::Result<ProtocolChoice> {
    Ok(match text.trim().to_ascii_lowercase().as_str() {
        "" | "auto" => ProtocolChoice::Auto,
        "halfblocks" | "halfblock" | "blocks" => ProtocolChoice::Fixed(ProtocolType::Halfblocks),
        "sixel" => ProtocolChoice::Fixed(ProtocolType::Sixel),
        "kitty" => ProtocolChoice::Fixed(ProtocolType::Kitty),
        "iterm2" | "iterm" => ProtocolChoice::Fixed(ProtocolType::Iterm2),
        other => {
            bail!("unknown image protocol \"{other}\" (expected auto, halfblocks, sixel, kitty or iterm2)")
        }
    })
}

/// Finished images drawn with a graphics protocol (kitty, sixel, iTerm2) over the half-block
/// preview. Encoded once per image and area.
struct ImageOverlay {
    picker: Picker,
    cached: Option<(JobId, Rect, Protocol)>,
}

impl ImageOverlay {
    /// `None` when half blocks are enough (the pane draws those itself).
    fn new(choice: ProtocolChoice) -> Option<Self> {
        // tmux swallows graphics queries unless passthrough is on, and a query that gets no
        // answer costs its whole timeout (and eats keys typed meanwhile): in tmux, "auto"
        // means half blocks; a protocol named in the config is still honoured.
        if choice == ProtocolChoice::Auto && std::env::var_os("TMUX").is_some() {
            tracing::info!("preview protocol: half blocks (inside tmux)");
            return None;
        }
        // Query after entering the alternate screen and before the event reader starts.
        let options = QueryStdioOptions {
            timeout: QUERY_TIMEOUT,
            ..QueryStdioOptions::default()
        };
        let mut picker = match Picker::from_query_stdio_with_options(options) {
            Ok(picker) => picker,
            Err(err) => {
                tracing::info!("terminal graphics query failed ({err}); using half blocks");
                Picker::halfblocks()
            }
        };
        if let ProtocolChoice::Fixed(protocol) = choice {
            picker.set_protocol_type(protocol);
        }
        tracing::info!(
            "preview protocol: {:?} (tmux: {})",
            picker.protocol_type(),
            picker.tmux_detected()
        );
        (picker.protocol_type() != ProtocolType::Halfblocks).then_some(Self { picker, cached: None })
    }

    fn render(&mut self, frame: &mut ratatui::Frame, area: Option<Rect>, preview: Option<&PreviewImage>) {
        let (Some(area), Some(preview)) = (area, preview) else {
            return;
        };
        if preview.step.is_some() || area.width == 0 || area.height == 0 {
            return;
        }
        let fresh = !matches!(&self.cached, Some((job, rect, _)) if *job == preview.job && *rect == area);
        if fresh {
            let Some(image) = to_dynamic(&preview.image) else {
                return;
            };
            match self.picker.new_protocol(image, area.as_size(), Resize::Fit(None)) {
                Ok(protocol) => self.cached = Some((preview.job, area, protocol)),
                Err(err) => {
                    tracing::warn!("cannot encode the preview: {err}");
                    self.cached = None;
                    return;
                }
            }
        }
        if let Some((_, _, protocol)) = &self.cached {
            frame.render_widget(Image::new(protocol), area);
        }
    }
}

fn to_dynamic(image: &crate::model::RgbImage) -> Option<image::DynamicImage> {
    image::RgbImage::from_raw(image.width, image.height, image.pixels.clone())
        .map(image::DynamicImage::ImageRgb8)
}

/// Turns a terminal event into an action: bound keys via the keymap, other keys go to the text
/// input while typing.
pub fn input_action(state: &AppState, event: TermEvent) -> Option<Action> {
    match event {
        TermEvent::Key(key) if key.kind != KeyEventKind::Release => match keymap::resolve(state, &key) {
            Some(intent) => Some(Action::Intent(intent)),
            None if matches!(state.mode, Mode::InsertPrompt | Mode::LineInput(_)) => {
                Some(Action::TextKey(key))
            }
            None => None,
        },
        TermEvent::Paste(text) => Some(Action::Paste(text)),
        _ => None,
    }
}

async fn dashboard(args: ConfigArgs) -> anyhow::Result<()> {
    // Everything that can fail on bad configuration fails here, before the terminal changes.
    let setup = Setup::from_args(&args)?;
    let start = Instant::now();
    let (actions, mut inbox) = unbounded_channel::<Action>();
    let _log_guard = seams::init_logging(actions.clone());
    let mut engine = Engine::start(&setup, actions, start)?;

    let mut state = AppState::new(setup.settings.clone(), seams::rng_seed());
    state.keymap = setup.keymap.clone();
    for warning in &setup.warnings {
        state.notify(LogLevel::Warn, warning.clone());
    }
    load_initial_session(&mut state, setup.session_path.as_deref());
    state.models.picker.source = setup.config.model.download_source;
    let load = Action::Models(ModelsAction::Load {
        spec: setup.config.model_spec(),
        options: setup.config.load_options(),
    });
    let effects = update(&mut state, load);
    run_effects(&mut state, effects, &engine);

    let mut session =
        TerminalSession::enter(TerminalOptions::default()).context("setting up the terminal")?;
    let mut overlay = match setup.protocol {
        ProtocolChoice::Fixed(ProtocolType::Halfblocks) => None,
        choice => ImageOverlay::new(choice),
    };
    // The event reader starts only now, after the terminal query.
    let mut events = EventStream::new();
    let result = event_loop(
        &mut session.terminal,
        &mut state,
        &setup.palette,
        &mut overlay,
        &mut events,
        &mut inbox,
        &engine,
        start,
    )
    .await;
    drop(events);
    let restored = session.leave().context("restoring the terminal");
    engine.shutdown();
    result?;
    restored?;
    let done = state
        .queue
        .iter()
        .filter(|j| matches!(j.status, JobStatus::Done { .. }))
        .count();
    println!("zimage-tui: {done} image(s) done this session");
    for job in state.models.jobs.iter().filter(|j| j.is_running()) {
        println!(
            "{} {} stopped at quit{}",
            job.tag(),
            job.kind_label(),
            match job.kind {
                crate::app::models::ModelJobKind::Download { .. } =>
                    "; partial files are kept: `zimage-tui fetch` (or f in the model picker) resumes",
                crate::app::models::ModelJobKind::Verify { .. } => "",
            }
        );
    }
    if let Some(path) = state
        .queue
        .iter()
        .rev()
        .find_map(|j| j.output.as_ref())
        .filter(|p| p.exists())
    {
        println!("last image: {}", path.display());
    }
    Ok(())
}

fn load_initial_session(state: &mut AppState, path: Option<&Path>) {
    let Some(path) = path else { return };
    let result = seams::load_session(path, true)
        // Autosave stays off (no session path) so a refused file is never overwritten.
        .map_err(|err| format!("{err:#}; autosave is off (S saves elsewhere)"));
    update(state, Action::SessionLoaded(result));
}

#[allow(clippy::too_many_arguments)]
async fn event_loop(
    terminal: &mut Tui,
    state: &mut AppState,
    palette: &Palette,
    overlay: &mut Option<ImageOverlay>,
    events: &mut EventStream,
    inbox: &mut tokio::sync::mpsc::UnboundedReceiver<Action>,
    engine: &Engine,
    start: Instant,
) -> anyhow::Result<()> {
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut saved_revision = state.revision;
    let mut dirty = true;
    let mut last_draw = Instant::now() - FRAME;
    loop {
        if dirty && last_draw.elapsed() >= FRAME {
            terminal
                .draw(|frame| {
                    let drawn = ui::draw(frame, state, palette);
                    if let Some(overlay) = overlay.as_mut() {
                        overlay.render(frame, drawn.preview_image, state.preview.as_ref());
                    }
                })
                .context("drawing")?;
            dirty = false;
            last_draw = Instant::now();
        }
        let action = tokio::select! {
            event = events.next() => match event {
                Some(Ok(TermEvent::Resize(..))) => { dirty = true; None }
                Some(Ok(event)) => input_action(state, event),
                Some(Err(err)) => return Err(err).context("reading terminal events"),
                None => break,
            },
            Some(action) = inbox.recv() => Some(action),
            _ = tick.tick() => {
                if let Some(gpu) = engine.gpu_action() {
                    let effects = update(state, gpu);
                    run_effects(state, effects, engine);
                }
                dirty = true;
                Some(Action::Tick { at: start.elapsed() })
            }
        };
        if let Some(action) = action {
            let effects = update(state, action);
            run_effects(state, effects, engine);
            dirty = true;
        }
        if state.revision != saved_revision {
            saved_revision = state.revision;
            autosave(state);
        }
        if state.quitting {
            break;
        }
    }
    // Last words on screen before leaving: nothing; the summary is printed after restore.
    let _ = std::io::stdout().flush();
    Ok(())
}

fn run_effects(state: &mut AppState, effects: Vec<Effect>, engine: &Engine) {
    for effect in effects {
        match effect {
            Effect::Worker(command) => {
                if let Command::Submit(job) = &command {
                    if let Some(dir) = job
                        .output
                        .as_ref()
                        .and_then(|p| p.parent())
                        .filter(|d| !d.as_os_str().is_empty())
                    {
                        if let Err(err) = std::fs::create_dir_all(dir) {
                            tracing::warn!("creating {}: {err}", dir.display());
                        }
                    }
                }
                engine.send(command);
            }
            Effect::SaveSession(path) => {
                let result = seams::save_session(state, &path)
                    .map(|()| path)
                    .map_err(|e| format!("{e:#}"));
                update(state, Action::SessionSaved(result));
            }
            Effect::LoadSession(path) => {
                let result = seams::load_session(&path, false).map_err(|e| format!("{e:#}"));
                update(state, Action::SessionLoaded(result));
            }
            Effect::Models(effect) => engine.models(effect),
        }
    }
}

/// Saves to the session path after each change; on failure turns autosave off and says so.
fn autosave(state: &mut AppState) {
    let Some(path) = state.session_path.clone() else {
        return;
    };
    if let Err(err) = seams::save_session(state, &path) {
        state.session_path = None;
        state.notify(
            crate::app::state::LogLevel::Error,
            format!("Autosave failed, now off: {err:#}"),
        );
    }
}
