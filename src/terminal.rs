//! Entering and leaving the dashboard's terminal mode so that the terminal is restored on quit,
//! on error and on panic.
//!
//! Usage (in the app):
//! ```text
//! let mut session = zimage_tui::terminal::TerminalSession::enter(Default::default())?;
//! // ... query the image protocol (ratatui-image) here, before starting the event reader ...
//! session.terminal.draw(|frame| { let _ = frame; })?;
//! drop(session); // or session.leave()?; a panic in between restores the terminal too
//! ```

use std::io::{self, Stdout};
use std::sync::Once;

use crossterm::event::{
    DisableBracketedPaste, DisableMouseCapture, EnableBracketedPaste, EnableMouseCapture,
};
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use ratatui::backend::CrosstermBackend;
use ratatui::Terminal;

pub type Tui = Terminal<CrosstermBackend<Stdout>>;

/// What to turn on besides raw mode and the alternate screen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalOptions {
    /// Pasted text arrives as one `Event::Paste` (the prompt editor wants this).
    pub bracketed_paste: bool,
    /// Mouse events; off by default because it disables the terminal's own text selection.
    pub mouse_capture: bool,
}

impl Default for TerminalOptions {
    fn default() -> Self {
        Self {
            bracketed_paste: true,
            mouse_capture: false,
        }
    }
}

/// The terminal in dashboard mode; restored when dropped.
pub struct TerminalSession {
    pub terminal: Tui,
    restored: bool,
}

impl TerminalSession {
    /// Installs the restoring panic hook (once per process), then switches to raw mode and the
    /// alternate screen. If a step fails, what was switched on is switched off again.
    pub fn enter(options: TerminalOptions) -> io::Result<Self> {
        install_panic_hook();
        let entered = (|| {
            enable_raw_mode()?;
            let mut stdout = io::stdout();
            execute!(stdout, EnterAlternateScreen)?;
            if options.bracketed_paste {
                execute!(stdout, EnableBracketedPaste)?;
            }
            if options.mouse_capture {
                execute!(stdout, EnableMouseCapture)?;
            }
            let mut terminal = Terminal::new(CrosstermBackend::new(stdout))?;
            terminal.clear()?;
            Ok(terminal)
        })();
        match entered {
            Ok(terminal) => Ok(Self {
                terminal,
                restored: false,
            }),
            Err(err) => {
                let _ = restore();
                Err(err)
            }
        }
    }

    /// Restores the terminal now, reporting errors (dropping does the same, silently).
    pub fn leave(mut self) -> io::Result<()> {
        self.restored = true;
        restore()
    }
}

impl Drop for TerminalSession {
    fn drop(&mut self) {
        if !self.restored {
            if let Err(err) = restore() {
                tracing::error!("restoring the terminal failed: {err}");
            }
        }
    }
}

/// Leaves dashboard mode: mouse and paste modes off, main screen, cursor shown, raw mode off.
/// Safe to call more than once and when dashboard mode was never entered.
pub fn restore() -> io::Result<()> {
    let mut stdout = io::stdout();
    // Every step runs even if an earlier one fails; the first error is returned.
    let steps = [
        execute!(stdout, DisableMouseCapture),
        execute!(stdout, DisableBracketedPaste),
        execute!(stdout, LeaveAlternateScreen),
        execute!(stdout, cursor::Show),
        disable_raw_mode(),
    ];
    steps.into_iter().collect()
}

/// Installs, once per process, a panic hook that restores the terminal, logs the panic to the
/// log file, then runs the previous hook (which prints the message on the restored screen).
pub fn install_panic_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        chain_panic_hook(|| {
            let _ = restore();
        })
    });
}

/// Installs a panic hook that runs `restore`, logs the panic with `tracing`, then calls the
/// hook that was installed before. Prefer [`install_panic_hook`]; this is the testable core.
pub fn chain_panic_hook(restore: impl Fn() + Send + Sync + 'static) {
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        restore();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let payload = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(non-text panic payload)".into());
        tracing::error!("panic at {location}: {payload}");
        previous(info);
    }));
}
