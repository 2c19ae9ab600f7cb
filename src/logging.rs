//! Logging. While the dashboard runs, stdout/stderr belong to the terminal UI, so `tracing`
//! goes to a file (`<XDG state dir>/zimage-tui/zimage-tui.log`, see [`crate::config::log_dir`])
//! and, optionally, selected lines to the log pane over a channel. Headless commands log to
//! stderr instead.
//!
//! The filter comes from `ZIMAGE_LOG` (then `RUST_LOG`), e.g. `ZIMAGE_LOG=debug`; default `info`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use tokio::sync::mpsc::UnboundedSender;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_appender::non_blocking::WorkerGuard;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// The log file's name inside the log directory.
pub const LOG_FILE_NAME: &str = "zimage-tui.log";
/// At start-up a log bigger than this is moved to `zimage-tui.log.old` (one generation kept).
const ROTATE_BYTES: u64 = 16 << 20;

/// Keeps the background log writer alive; drop it last (at exit) so buffered lines are flushed.
pub struct LogGuard {
    _writer: WorkerGuard,
    /// The log file.
    pub path: PathBuf,
}

/// One line for the dashboard's log pane.
#[derive(Debug, Clone, PartialEq)]
pub struct LogLine {
    pub level: Level,
    /// The module that logged it, e.g. "zimage_tui::gpu::sampler".
    pub target: String,
    /// The message followed by any other fields as `key=value`.
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum LoggingError {
    #[error("cannot create the log directory {}: {source}", dir.display())]
    CreateDir { dir: PathBuf, source: std::io::Error },
    #[error("cannot open the log file in {}: {message}", dir.display())]
    Open { dir: PathBuf, message: String },
    #[error("a logger is already installed: {0}")]
    AlreadySet(String),
}

fn env_filter() -> EnvFilter {
    let directives = std::env::var("ZIMAGE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    EnvFilter::builder()
        .with_default_directive(LevelFilter::INFO.into())
        .parse_lossy(directives)
}

/// Sends everything logged to `dir/zimage-tui.log` (created if needed); never writes to
/// stdout/stderr. With `pane`, events at `pane_level` or more severe are also sent as
/// [`LogLine`]s (e.g. to the dashboard's log pane). Installs the global subscriber, so call
/// once, before the terminal UI starts; keep the guard until exit.
pub fn init_file_logging(
    dir: &Path,
    pane: Option<(UnboundedSender<LogLine>, Level)>,
) -> Result<LogGuard, LoggingError> {
    std::fs::create_dir_all(dir).map_err(|source| LoggingError::CreateDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join(LOG_FILE_NAME);
    if std::fs::metadata(&path).is_ok_and(|meta| meta.len() > ROTATE_BYTES) {
        let _ = std::fs::rename(&path, dir.join(format!("{LOG_FILE_NAME}.old")));
    }
    let appender = tracing_appender::rolling::RollingFileAppender::builder()
        .rotation(tracing_appender::rolling::Rotation::NEVER)
        .filename_prefix(LOG_FILE_NAME)
        .build(dir)
        .map_err(|e| LoggingError::Open {
            dir: dir.to_path_buf(),
            message: e.to_string(),
        })?;
    let (writer, guard) = tracing_appender::non_blocking(appender);
    let file_layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(false);
    let pane_layer =
        pane.map(|(sender, level)| PaneLayer { sender }.with_filter(LevelFilter::from_level(level)));
    tracing_subscriber::registry()
        .with(env_filter())
        .with(file_layer)
        .with(pane_layer)
        .try_init()
        .map_err(|e| LoggingError::AlreadySet(e.to_string()))?;
    tracing::info!(
        version = crate::VERSION,
        "zimage-tui started; logging to {}",
        path.display()
    );
    Ok(LogGuard { _writer: guard, path })
}

/// For headless commands: log to stderr (warnings and up unless `ZIMAGE_LOG`/`RUST_LOG` say
/// otherwise), keeping stdout for results.
pub fn init_stderr_logging() -> Result<(), LoggingError> {
    let directives = std::env::var("ZIMAGE_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_default();
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .parse_lossy(directives);
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init()
        .map_err(|e| LoggingError::AlreadySet(e.to_string()))
}

/// Forwards events to a channel as [`LogLine`]s.
struct PaneLayer {
    sender: UnboundedSender<LogLine>,
}

impl<S: Subscriber> Layer<S> for PaneLayer {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let mut visitor = MessageVisitor::default();
        event.record(&mut visitor);
        let metadata = event.metadata();
        let line = LogLine {
            level: *metadata.level(),
            target: metadata.target().to_string(),
            message: visitor.text,
        };
        // A closed pane (the UI has exited) just stops receiving lines.
        let _ = self.sender.send(line);
    }
}

#[derive(Default)]
struct MessageVisitor {
    text: String,
}

impl Visit for MessageVisitor {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.text.insert_str(0, value);
        } else {
            let _ = write!(self.text, " {}={value}", field.name());
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.text.insert_str(0, &format!("{value:?}"));
        } else {
            let _ = write!(self.text, " {}={value:?}", field.name());
        }
    }
}
