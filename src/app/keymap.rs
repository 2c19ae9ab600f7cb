//! The one keymap: it resolves keys to `Intent`s, and the status-bar hints, the help overlay and
//! the README's key table are generated from it, so they cannot drift apart.

use std::borrow::Cow;
use std::collections::BTreeMap;

use crossterm::event::{KeyCode, KeyEvent, KeyEventKind, KeyModifiers};

use super::action::Intent;
use super::state::{AppState, Mode, Pane};

/// Where a binding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Context {
    /// Normal mode, any pane (after the focused pane's own bindings).
    Global,
    Queue,
    Editor,
    /// Typing into the prompt.
    Insert,
    /// Typing into the one-line input.
    LineInput,
    ConfirmQuit,
    Help,
    /// The Stress view (full screen, normal mode).
    Stress,
    /// The model picker overlay.
    Models,
}

impl Context {
    pub const ALL: [Context; 9] = [
        Context::Global,
        Context::Queue,
        Context::Editor,
        Context::Stress,
        Context::Insert,
        Context::LineInput,
        Context::ConfirmQuit,
        Context::Help,
        Context::Models,
    ];

    pub fn title(self) -> &'static str {
        match self {
            Context::Global => "Everywhere",
            Context::Queue => "Queue pane",
            Context::Editor => "Prompt pane",
            Context::Insert => "Typing a prompt",
            Context::LineInput => "One-line input",
            Context::ConfirmQuit => "Quit while a job runs",
            Context::Help => "Help",
            Context::Stress => "Stress view",
            Context::Models => "Model picker",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyChord {
    pub code: KeyCode,
    pub modifiers: KeyModifiers,
}

impl KeyChord {
    pub const fn plain(code: KeyCode) -> Self {
        Self {
            code,
            modifiers: KeyModifiers::NONE,
        }
    }
    pub const fn ch(c: char) -> Self {
        Self::plain(KeyCode::Char(c))
    }
    pub const fn ctrl(c: char) -> Self {
        Self {
            code: KeyCode::Char(c),
            modifiers: KeyModifiers::CONTROL,
        }
    }
    pub const fn alt(code: KeyCode) -> Self {
        Self {
            code,
            modifiers: KeyModifiers::ALT,
        }
    }
    pub const fn shift(code: KeyCode) -> Self {
        Self {
            code,
            modifiers: KeyModifiers::SHIFT,
        }
    }

    /// Does a key event from the terminal match? Shift is already in the character for
    /// letters ('K'), and terminals disagree on reporting it, so it is ignored for characters.
    pub fn matches(&self, key: &KeyEvent) -> bool {
        let relevant = KeyModifiers::CONTROL | KeyModifiers::ALT | KeyModifiers::SHIFT;
        let mut got = key.modifiers & relevant;
        let mut want = self.modifiers & relevant;
        if matches!(key.code, KeyCode::Char(_) | KeyCode::BackTab) {
            got.remove(KeyModifiers::SHIFT);
            want.remove(KeyModifiers::SHIFT);
        }
        let code = match key.code {
            // Ctrl+letter arrives lowercase on most terminals, uppercase on some.
            KeyCode::Char(c) if got.contains(KeyModifiers::CONTROL) => KeyCode::Char(c.to_ascii_lowercase()),
            other => other,
        };
        code == self.code && got == want
    }

    pub fn label(&self) -> String {
        let base = match self.code {
            KeyCode::Char(' ') => "Space".to_string(),
            KeyCode::Char(c) => c.to_string(),
            KeyCode::Up => "↑".into(),
            KeyCode::Down => "↓".into(),
            KeyCode::Left => "←".into(),
            KeyCode::Right => "→".into(),
            KeyCode::Tab => "Tab".into(),
            KeyCode::BackTab => "S-Tab".into(),
            KeyCode::Enter => "Enter".into(),
            KeyCode::Esc => "Esc".into(),
            KeyCode::Delete => "Del".into(),
            KeyCode::Home => "Home".into(),
            KeyCode::End => "End".into(),
            KeyCode::PageUp => "PgUp".into(),
            KeyCode::PageDown => "PgDn".into(),
            KeyCode::F(n) => format!("F{n}"),
            other => format!("{other:?}"),
        };
        let mut label = String::new();
        if self.modifiers.contains(KeyModifiers::CONTROL) {
            label.push_str("Ctrl-");
        }
        if self.modifiers.contains(KeyModifiers::ALT) {
            label.push_str("Alt-");
        }
        if self.modifiers.contains(KeyModifiers::SHIFT) {
            label.push_str("S-");
        }
        label.push_str(&base);
        label
    }
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub context: Context,
    pub keys: Cow<'static, [KeyChord]>,
    pub intent: Intent,
    pub description: &'static str,
    /// Shown in the status bar (everything is shown in the help overlay).
    pub hint: bool,
}

impl Binding {
    /// All keys, e.g. "k/↑".
    pub fn keys_label(&self) -> String {
        self.keys
            .iter()
            .map(KeyChord::label)
            .collect::<Vec<_>>()
            .join("/")
    }
}

const fn bind(
    context: Context,
    keys: &'static [KeyChord],
    intent: Intent,
    description: &'static str,
    hint: bool,
) -> Binding {
    Binding {
        context,
        keys: Cow::Borrowed(keys),
        intent,
        description,
        hint,
    }
}

use Context as C;
use KeyChord as K;

/// The default bindings. Order: pane bindings win over global ones; hints appear in this order.
pub static DEFAULT_BINDINGS: &[Binding] = &[
    // Queue pane
    bind(
        C::Queue,
        &[K::ch('e'), K::plain(KeyCode::Enter)],
        Intent::EditJob,
        "edit job",
        true,
    ),
    bind(C::Queue, &[K::ch('y')], Intent::DuplicateJob, "duplicate", true),
    bind(
        C::Queue,
        &[K::ch('d'), K::plain(KeyCode::Delete)],
        Intent::DeleteJob,
        "delete",
        true,
    ),
    bind(
        C::Queue,
        &[K::ch('K'), K::shift(KeyCode::Up)],
        Intent::MoveJobUp,
        "move up",
        true,
    ),
    bind(
        C::Queue,
        &[K::ch('J'), K::shift(KeyCode::Down)],
        Intent::MoveJobDown,
        "move down",
        true,
    ),
    bind(
        C::Queue,
        &[K::ch('r')],
        Intent::RerunJob,
        "re-run, new seed",
        true,
    ),
    bind(C::Queue, &[K::ch('c')], Intent::CancelJob, "cancel job", true),
    // Prompt pane
    bind(
        C::Editor,
        &[K::plain(KeyCode::Enter)],
        Intent::EditField,
        "edit field",
        true,
    ),
    bind(
        C::Editor,
        &[K::ch('+'), K::ch('=')],
        Intent::StepsUp,
        "more steps",
        false,
    ),
    bind(C::Editor, &[K::ch('-')], Intent::StepsDown, "fewer steps", false),
    bind(
        C::Editor,
        &[K::ch('z')],
        Intent::NextSize,
        "next size preset",
        true,
    ),
    bind(
        C::Editor,
        &[K::ch('s')],
        Intent::ToggleSeed,
        "seed random/fixed",
        true,
    ),
    // Everywhere in normal mode
    bind(C::Global, &[K::ch('a')], Intent::QueueDraft, "queue prompt", true),
    bind(C::Global, &[K::ch('i')], Intent::EditPrompt, "type prompt", true),
    bind(
        C::Global,
        &[K::ch('j'), K::plain(KeyCode::Down)],
        Intent::Down,
        "down / scroll",
        false,
    ),
    bind(
        C::Global,
        &[K::ch('k'), K::plain(KeyCode::Up)],
        Intent::Up,
        "up / scroll",
        false,
    ),
    bind(
        C::Global,
        &[K::ch('g'), K::plain(KeyCode::Home)],
        Intent::Top,
        "first",
        false,
    ),
    bind(
        C::Global,
        &[K::ch('G'), K::plain(KeyCode::End)],
        Intent::Bottom,
        "last",
        false,
    ),
    bind(
        C::Global,
        &[K::plain(KeyCode::Tab)],
        Intent::FocusNext,
        "next pane",
        true,
    ),
    bind(
        C::Global,
        &[K::plain(KeyCode::BackTab)],
        Intent::FocusPrev,
        "previous pane",
        false,
    ),
    bind(
        C::Global,
        &[K::ch('p')],
        Intent::TogglePause,
        "pause/resume queue",
        false,
    ),
    bind(
        C::Global,
        &[K::ch('S')],
        Intent::SaveSession,
        "save session",
        true,
    ),
    bind(
        C::Global,
        &[K::ch('L')],
        Intent::LoadSession,
        "load session",
        false,
    ),
    bind(
        C::Global,
        &[K::ch('b')],
        Intent::ToggleStress,
        "stress test (bench) view",
        false,
    ),
    bind(C::Global, &[K::ch('m')], Intent::OpenModels, "model picker", true),
    bind(C::Global, &[K::ch('?')], Intent::ToggleHelp, "help", true),
    bind(C::Global, &[K::ch('q')], Intent::Quit, "quit", true),
    bind(
        C::Global,
        &[K::ctrl('c')],
        Intent::Interrupt,
        "cancel running job, then quit",
        false,
    ),
    // Stress view
    bind(C::Stress, &[K::ch('s')], Intent::StartStress, "start run", true),
    bind(C::Stress, &[K::ch('c')], Intent::CancelStress, "cancel run", true),
    bind(
        C::Stress,
        &[K::ch('m')],
        Intent::StressNextMode,
        "next mode",
        true,
    ),
    bind(
        C::Stress,
        &[K::plain(KeyCode::Enter)],
        Intent::EditField,
        "edit field",
        true,
    ),
    bind(
        C::Stress,
        &[K::ch('j'), K::plain(KeyCode::Down)],
        Intent::Down,
        "next field",
        false,
    ),
    bind(
        C::Stress,
        &[K::ch('k'), K::plain(KeyCode::Up)],
        Intent::Up,
        "previous field",
        false,
    ),
    bind(
        C::Stress,
        &[K::ch('b'), K::plain(KeyCode::Esc)],
        Intent::ToggleStress,
        "back to the dashboard",
        true,
    ),
    bind(C::Stress, &[K::ch('?')], Intent::ToggleHelp, "help", true),
    bind(C::Stress, &[K::ch('q')], Intent::Quit, "quit", true),
    bind(
        C::Stress,
        &[K::ctrl('c')],
        Intent::Interrupt,
        "cancel run, then quit",
        false,
    ),
    // Typing a prompt
    bind(
        C::Insert,
        &[K::plain(KeyCode::Esc)],
        Intent::FinishInsert,
        "done typing",
        true,
    ),
    bind(
        C::Insert,
        &[K::ctrl('p'), K::alt(KeyCode::Up)],
        Intent::HistoryPrev,
        "older prompt",
        true,
    ),
    bind(
        C::Insert,
        &[K::ctrl('n'), K::alt(KeyCode::Down)],
        Intent::HistoryNext,
        "newer prompt",
        true,
    ),
    bind(
        C::Insert,
        &[K::ctrl('c')],
        Intent::Interrupt,
        "cancel running job, then quit",
        false,
    ),
    // One-line input
    bind(
        C::LineInput,
        &[K::plain(KeyCode::Enter)],
        Intent::SubmitLine,
        "accept",
        true,
    ),
    bind(
        C::LineInput,
        &[K::plain(KeyCode::Esc)],
        Intent::CancelLine,
        "cancel",
        true,
    ),
    bind(C::LineInput, &[K::ctrl('u')], Intent::ClearLine, "clear", true),
    bind(
        C::LineInput,
        &[K::ctrl('c')],
        Intent::Interrupt,
        "cancel running job, then quit",
        false,
    ),
    // Quit confirmation
    bind(
        C::ConfirmQuit,
        &[K::ch('y'), K::ch('q')],
        Intent::ConfirmYes,
        "cancel job and quit",
        true,
    ),
    bind(
        C::ConfirmQuit,
        &[K::ch('n'), K::plain(KeyCode::Esc)],
        Intent::ConfirmNo,
        "keep running",
        true,
    ),
    bind(
        C::ConfirmQuit,
        &[K::ctrl('c')],
        Intent::Interrupt,
        "cancel running job, then quit",
        false,
    ),
    // Help overlay
    bind(
        C::Help,
        &[K::ch('?'), K::plain(KeyCode::Esc), K::ch('q')],
        Intent::ToggleHelp,
        "close help",
        true,
    ),
    bind(
        C::Help,
        &[K::ctrl('c')],
        Intent::Interrupt,
        "cancel running job, then quit",
        false,
    ),
    // Model picker
    bind(
        C::Models,
        &[K::plain(KeyCode::Enter)],
        Intent::LoadModel,
        "load model",
        true,
    ),
    bind(C::Models, &[K::ch('v')], Intent::VerifyModel, "verify", true),
    bind(C::Models, &[K::ch('f')], Intent::DownloadModel, "download", true),
    bind(
        C::Models,
        &[K::ch('F')],
        Intent::DownloadModelTo,
        "download into a folder",
        false,
    ),
    bind(
        C::Models,
        &[K::ch('s')],
        Intent::ToggleFetchSource,
        "switch hub",
        true,
    ),
    bind(C::Models, &[K::ch('r')], Intent::RescanModels, "rescan", true),
    bind(
        C::Models,
        &[K::ch('j'), K::plain(KeyCode::Down)],
        Intent::Down,
        "down",
        false,
    ),
    bind(
        C::Models,
        &[K::ch('k'), K::plain(KeyCode::Up)],
        Intent::Up,
        "up",
        false,
    ),
    bind(
        C::Models,
        &[K::ch('g'), K::plain(KeyCode::Home)],
        Intent::Top,
        "first",
        false,
    ),
    bind(
        C::Models,
        &[K::ch('G'), K::plain(KeyCode::End)],
        Intent::Bottom,
        "last",
        false,
    ),
    bind(
        C::Models,
        &[K::plain(KeyCode::Esc), K::ch('m'), K::ch('q')],
        Intent::CloseModels,
        "close",
        true,
    ),
    bind(
        C::Models,
        &[K::ctrl('c')],
        Intent::Interrupt,
        "cancel running job, then quit",
        false,
    ),
];

/// The contexts consulted for the current state, most specific first.
pub fn active_contexts(state: &AppState) -> Vec<Context> {
    match state.mode {
        Mode::Help => vec![Context::Help],
        Mode::ConfirmQuit => vec![Context::ConfirmQuit],
        Mode::InsertPrompt => vec![Context::Insert],
        Mode::LineInput(_) => vec![Context::LineInput],
        Mode::Normal if state.stress.open => vec![Context::Stress],
        Mode::Models => vec![Context::Models],
        Mode::Normal => match state.focus {
            Pane::Queue => vec![Context::Queue, Context::Global],
            Pane::Editor => vec![Context::Editor, Context::Global],
            _ => vec![Context::Global],
        },
    }
}

/// The bindings in use: the defaults with the config's `[keys]` overrides applied.
#[derive(Debug, Clone)]
pub struct Keymap {
    bindings: Vec<Binding>,
}

impl Default for Keymap {
    fn default() -> Self {
        Self {
            bindings: DEFAULT_BINDINGS.to_vec(),
        }
    }
}

impl Keymap {
    /// Applies `[keys]` overrides: `action = ["key", ...]` replaces that action's keys in every
    /// context it is bound in. Unknown actions, bad key names and clashes are errors.
    pub fn with_overrides(overrides: &BTreeMap<String, Vec<String>>) -> Result<Self, String> {
        let mut keymap = Self::default();
        for (name, keys) in overrides {
            let Some(intent) = Intent::from_name(name) else {
                let known: Vec<&str> = Intent::ALL.iter().map(|i| i.name()).collect();
                return Err(format!(
                    "[keys] `{name}` is not an action (actions: {})",
                    known.join(", ")
                ));
            };
            if keys.is_empty() {
                return Err(format!("[keys] `{name}` has no keys"));
            }
            let chords = keys
                .iter()
                .map(|k| parse_key(k).map_err(|e| format!("[keys] `{name}`: {e}")))
                .collect::<Result<Vec<_>, _>>()?;
            for binding in keymap.bindings.iter_mut().filter(|b| b.intent == intent) {
                binding.keys = Cow::Owned(chords.clone());
            }
        }
        keymap.check_clashes()?;
        Ok(keymap)
    }

    /// Two actions on one key where both are looked up together would hide one of them.
    fn check_clashes(&self) -> Result<(), String> {
        let lookups: [&[Context]; 8] = [
            &[Context::Queue, Context::Global],
            &[Context::Editor, Context::Global],
            &[Context::Stress],
            &[Context::Insert],
            &[Context::LineInput],
            &[Context::ConfirmQuit],
            &[Context::Help],
            &[Context::Models],
        ];
        for contexts in lookups {
            let bindings: Vec<&Binding> = self
                .bindings
                .iter()
                .filter(|b| contexts.contains(&b.context))
                .collect();
            for (i, a) in bindings.iter().enumerate() {
                for b in &bindings[i + 1..] {
                    // A pane binding may deliberately shadow a global one (Enter in the queue).
                    if a.intent == b.intent || a.context != b.context {
                        continue;
                    }
                    if let Some(k) = a.keys.iter().find(|k| b.keys.contains(k)) {
                        return Err(format!(
                            "[keys] `{}` is bound to both `{}` and `{}` ({})",
                            k.label(),
                            a.intent.name(),
                            b.intent.name(),
                            a.context.title()
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn bindings(&self) -> &[Binding] {
        &self.bindings
    }

    /// The intent bound to `key` in the current state, if any.
    pub fn resolve(&self, state: &AppState, key: &KeyEvent) -> Option<Intent> {
        if key.kind == KeyEventKind::Release {
            return None;
        }
        active_contexts(state).iter().find_map(|ctx| {
            self.bindings
                .iter()
                .filter(|b| b.context == *ctx)
                .find(|b| b.keys.iter().any(|k| k.matches(key)))
                .map(|b| b.intent)
        })
    }

    /// Status-bar hints for the current state: (keys, description), in keymap order.
    pub fn hints(&self, state: &AppState) -> Vec<(String, &'static str)> {
        let mut out: Vec<(String, &'static str)> = Vec::new();
        for ctx in active_contexts(state) {
            for b in self.bindings.iter().filter(|b| b.context == ctx && b.hint) {
                // A pane binding hides a global one on the same key; show each intent once.
                if !out.iter().any(|(_, d)| *d == b.description) {
                    out.push((b.keys_label(), b.description));
                }
            }
        }
        out
    }

    /// Bindings grouped by context, for the help overlay and the README.
    pub fn sections(&self) -> Vec<(Context, Vec<&Binding>)> {
        Context::ALL
            .iter()
            .map(|ctx| {
                (
                    *ctx,
                    self.bindings
                        .iter()
                        .filter(|b| b.context == *ctx)
                        .collect::<Vec<_>>(),
                )
            })
            .filter(|(_, bindings)| !bindings.is_empty())
            .collect()
    }

    /// The key map as a Markdown table (the README embeds the default one; a test keeps them
    /// equal).
    pub fn markdown_table(&self) -> String {
        let mut out = String::from("| where | keys | action | config name |\n|---|---|---|---|\n");
        for (ctx, bindings) in self.sections() {
            for b in bindings {
                let keys = b
                    .keys
                    .iter()
                    .map(|k| format!("`{}`", k.label()))
                    .collect::<Vec<_>>()
                    .join(" ");
                out.push_str(&format!(
                    "| {} | {} | {} | `{}` |\n",
                    ctx.title(),
                    keys.replace('|', "\\|"),
                    b.description,
                    b.intent.name()
                ));
            }
        }
        out
    }
}

/// The intent bound to `key` in the current state (the state's keymap), if any.
pub fn resolve(state: &AppState, key: &KeyEvent) -> Option<Intent> {
    state.keymap.resolve(state, key)
}

/// Status-bar hints for the current state.
pub fn hints(state: &AppState) -> Vec<(String, &'static str)> {
    state.keymap.hints(state)
}

/// Parses a key name from the config: "q", "Q", "ctrl-c", "alt-up", "shift-tab", "enter",
/// "esc", "space", "f5", "pageup", ...
pub fn parse_key(text: &str) -> Result<KeyChord, String> {
    let mut modifiers = KeyModifiers::NONE;
    let mut rest = text.trim();
    loop {
        let lower = rest.to_ascii_lowercase();
        let (prefix, modifier) = if lower.starts_with("ctrl-") || lower.starts_with("ctrl+") {
            (5, KeyModifiers::CONTROL)
        } else if lower.starts_with("alt-") || lower.starts_with("alt+") {
            (4, KeyModifiers::ALT)
        } else if lower.starts_with("shift-") || lower.starts_with("shift+") {
            (6, KeyModifiers::SHIFT)
        } else {
            break;
        };
        if rest.len() == prefix {
            break;
        }
        modifiers |= modifier;
        rest = &rest[prefix..];
    }
    let mut chars = rest.chars();
    let code = match (chars.next(), chars.next()) {
        (Some(c), None) => {
            // Ctrl-letters match lowercase; shift is part of the character for letters.
            if modifiers.contains(KeyModifiers::CONTROL) {
                KeyCode::Char(c.to_ascii_lowercase())
            } else {
                KeyCode::Char(c)
            }
        }
        _ => match rest.to_ascii_lowercase().as_str() {
            "enter" | "return" => KeyCode::Enter,
            "esc" | "escape" => KeyCode::Esc,
            "tab" if modifiers.contains(KeyModifiers::SHIFT) => {
                modifiers.remove(KeyModifiers::SHIFT);
                KeyCode::BackTab
            }
            "tab" => KeyCode::Tab,
            "backtab" => KeyCode::BackTab,
            "space" => KeyCode::Char(' '),
            "backspace" => KeyCode::Backspace,
            "delete" | "del" => KeyCode::Delete,
            "insert" | "ins" => KeyCode::Insert,
            "home" => KeyCode::Home,
            "end" => KeyCode::End,
            "pageup" | "pgup" => KeyCode::PageUp,
            "pagedown" | "pgdn" => KeyCode::PageDown,
            "up" => KeyCode::Up,
            "down" => KeyCode::Down,
            "left" => KeyCode::Left,
            "right" => KeyCode::Right,
            other => match other.strip_prefix('f').and_then(|n| n.parse::<u8>().ok()) {
                Some(n) if (1..=24).contains(&n) => KeyCode::F(n),
                _ => {
                    return Err(format!(
                        "\"{text}\" is not a key (e.g. \"q\", \"ctrl-c\", \"shift-tab\", \"f5\")"
                    ))
                }
            },
        },
    };
    if matches!(code, KeyCode::Char(_)) {
        modifiers.remove(KeyModifiers::SHIFT);
    }
    Ok(KeyChord { code, modifiers })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::state::Settings;

    fn key(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn state() -> AppState {
        AppState::new(Settings::default(), 1)
    }

    #[test]
    fn vim_keys_and_arrows_resolve_the_same() {
        let s = state();
        assert_eq!(
            resolve(&s, &key(KeyCode::Char('j'), KeyModifiers::NONE)),
            Some(Intent::Down)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::Down, KeyModifiers::NONE)),
            Some(Intent::Down)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::Char('k'), KeyModifiers::NONE)),
            Some(Intent::Up)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::Up, KeyModifiers::NONE)),
            Some(Intent::Up)
        );
    }

    #[test]
    fn pane_bindings_win_and_depend_on_focus() {
        let mut s = state();
        s.focus = Pane::Queue;
        let enter = key(KeyCode::Enter, KeyModifiers::NONE);
        assert_eq!(resolve(&s, &enter), Some(Intent::EditJob));
        s.focus = Pane::Editor;
        assert_eq!(resolve(&s, &enter), Some(Intent::EditField));
        s.focus = Pane::Log;
        assert_eq!(resolve(&s, &enter), None);
        // 'd' deletes only in the queue
        assert_eq!(resolve(&s, &key(KeyCode::Char('d'), KeyModifiers::NONE)), None);
    }

    #[test]
    fn shifted_letters_and_ctrl_keys_match_however_the_terminal_reports_them() {
        let mut s = state();
        s.focus = Pane::Queue;
        assert_eq!(
            resolve(&s, &key(KeyCode::Char('K'), KeyModifiers::SHIFT)),
            Some(Intent::MoveJobUp)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::Char('K'), KeyModifiers::NONE)),
            Some(Intent::MoveJobUp)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::Up, KeyModifiers::SHIFT)),
            Some(Intent::MoveJobUp)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Intent::Interrupt)
        );
        assert_eq!(
            resolve(
                &s,
                &key(KeyCode::Char('C'), KeyModifiers::CONTROL | KeyModifiers::SHIFT)
            ),
            Some(Intent::Interrupt)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::BackTab, KeyModifiers::SHIFT)),
            Some(Intent::FocusPrev)
        );
    }

    #[test]
    fn typing_mode_leaves_letters_to_the_editor() {
        let mut s = state();
        s.mode = Mode::InsertPrompt;
        assert_eq!(resolve(&s, &key(KeyCode::Char('q'), KeyModifiers::NONE)), None);
        assert_eq!(resolve(&s, &key(KeyCode::Char('a'), KeyModifiers::NONE)), None);
        assert_eq!(
            resolve(&s, &key(KeyCode::Esc, KeyModifiers::NONE)),
            Some(Intent::FinishInsert)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::Char('p'), KeyModifiers::CONTROL)),
            Some(Intent::HistoryPrev)
        );
        assert_eq!(
            resolve(&s, &key(KeyCode::Char('c'), KeyModifiers::CONTROL)),
            Some(Intent::Interrupt)
        );
    }

    #[test]
    fn releases_are_ignored() {
        let s = state();
        let mut release = key(KeyCode::Char('q'), KeyModifiers::NONE);
        release.kind = KeyEventKind::Release;
        assert_eq!(resolve(&s, &release), None);
    }

    #[test]
    fn no_key_is_bound_twice_in_one_lookup_path() {
        // Within each lookup path, a key must resolve to the first binding only on purpose:
        // a duplicate inside one context would make a binding unreachable.
        for ctx in Context::ALL {
            let bindings: Vec<_> = DEFAULT_BINDINGS.iter().filter(|b| b.context == ctx).collect();
            for (i, a) in bindings.iter().enumerate() {
                for b in &bindings[i + 1..] {
                    for k in a.keys.iter() {
                        assert!(!b.keys.contains(k), "{:?} bound twice in {:?}", k, ctx);
                    }
                }
            }
        }
    }

    #[test]
    fn every_binding_is_reachable_from_its_context() {
        for b in DEFAULT_BINDINGS {
            let mut s = state();
            match b.context {
                Context::Global => s.focus = Pane::Log,
                Context::Queue => s.focus = Pane::Queue,
                Context::Editor => s.focus = Pane::Editor,
                Context::Insert => s.mode = Mode::InsertPrompt,
                Context::LineInput => s.mode = Mode::LineInput(super::super::state::LineInputPurpose::Steps),
                Context::ConfirmQuit => s.mode = Mode::ConfirmQuit,
                Context::Help => s.mode = Mode::Help,
                Context::Stress => s.stress.open = true,
                Context::Models => s.mode = Mode::Models,
            }
            for k in b.keys.iter() {
                let ev = KeyEvent::new(k.code, k.modifiers);
                assert_eq!(
                    resolve(&s, &ev),
                    Some(b.intent),
                    "{} in {:?}",
                    k.label(),
                    b.context
                );
            }
        }
    }

    #[test]
    fn hints_follow_the_focused_pane() {
        let mut s = state();
        s.focus = Pane::Queue;
        let queue_hints = hints(&s);
        assert_eq!(queue_hints[0], ("e/Enter".to_string(), "edit job"));
        assert!(queue_hints.iter().any(|(_, d)| *d == "quit"));
        s.mode = Mode::InsertPrompt;
        let insert_hints = hints(&s);
        assert_eq!(insert_hints[0], ("Esc".to_string(), "done typing"));
        assert!(!insert_hints.iter().any(|(_, d)| *d == "quit"));
    }

    #[test]
    fn markdown_table_lists_every_binding() {
        let table = Keymap::default().markdown_table();
        assert_eq!(table.lines().count(), 2 + DEFAULT_BINDINGS.len());
        assert!(table.contains("| Queue pane | `K` `S-↑` | move up | `move_job_up` |"));
    }
}

#[cfg(test)]
mod override_tests {
    use super::*;
    use crate::app::state::Settings;

    fn overrides(pairs: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.iter().map(|s| s.to_string()).collect()))
            .collect()
    }

    #[test]
    fn key_names_parse() {
        assert_eq!(parse_key("q"), Ok(KeyChord::ch('q')));
        assert_eq!(parse_key("Q"), Ok(KeyChord::ch('Q')));
        assert_eq!(parse_key("ctrl-Q"), Ok(KeyChord::ctrl('q')));
        assert_eq!(parse_key("alt-up"), Ok(KeyChord::alt(KeyCode::Up)));
        assert_eq!(parse_key("shift-tab"), Ok(KeyChord::plain(KeyCode::BackTab)));
        assert_eq!(parse_key("f5"), Ok(KeyChord::plain(KeyCode::F(5))));
        assert_eq!(parse_key("-"), Ok(KeyChord::ch('-')));
        assert_eq!(
            parse_key("ctrl--"),
            Ok(KeyChord {
                code: KeyCode::Char('-'),
                modifiers: KeyModifiers::CONTROL
            })
        );
        assert!(parse_key("ctrl-").is_err());
        assert!(parse_key("hyper-x").is_err());
        assert!(parse_key("f99").is_err());
    }

    #[test]
    fn an_override_replaces_the_keys_and_the_hints_follow() {
        let keymap = Keymap::with_overrides(&overrides(&[("quit", &["ctrl-q", "x"])])).unwrap();
        let mut state = AppState::new(Settings::default(), 1);
        state.keymap = keymap;
        state.focus = Pane::Log;
        let q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::NONE);
        let ctrl_q = KeyEvent::new(KeyCode::Char('q'), KeyModifiers::CONTROL);
        assert_eq!(resolve(&state, &q), None);
        assert_eq!(resolve(&state, &ctrl_q), Some(Intent::Quit));
        assert!(hints(&state).contains(&("Ctrl-q/x".to_string(), "quit")));
    }

    #[test]
    fn bad_overrides_are_refused_with_the_reason() {
        let unknown = Keymap::with_overrides(&overrides(&[("explode", &["x"])])).unwrap_err();
        assert!(
            unknown.contains("not an action") && unknown.contains("add_job"),
            "{unknown}"
        );
        let bad_key = Keymap::with_overrides(&overrides(&[("quit", &["hyper-x"])])).unwrap_err();
        assert!(bad_key.contains("not a key"), "{bad_key}");
        let no_keys = Keymap::with_overrides(&overrides(&[("quit", &[])])).unwrap_err();
        assert!(no_keys.contains("no keys"));
        let clash = Keymap::with_overrides(&overrides(&[("quit", &["a"])])).unwrap_err();
        assert!(clash.contains("`a`") && clash.contains("add_job"), "{clash}");
    }

    #[test]
    fn every_intent_name_round_trips() {
        for intent in Intent::ALL {
            assert_eq!(Intent::from_name(intent.name()), Some(intent));
        }
        // Every bound intent has a name users can override.
        for b in DEFAULT_BINDINGS {
            assert!(Intent::ALL.contains(&b.intent));
        }
    }
}

#[cfg(test)]
mod readme {
    use super::Keymap;

    const START: &str = "<!-- keymap:start (generated from src/app/keymap.rs; a test checks it) -->\n";
    const END: &str = "<!-- keymap:end -->";

    /// The README's key table is the keymap's; `UPDATE_README=1 cargo test readme` rewrites it.
    #[test]
    fn readme_key_table_matches_the_keymap() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/README.md");
        let readme = std::fs::read_to_string(path).expect("README.md");
        let (Some(start), Some(end)) = (readme.find(START), readme.find(END)) else {
            panic!("README.md lacks the keymap markers");
        };
        let current = &readme[start + START.len()..end];
        let expected = Keymap::default().markdown_table();
        if current != expected {
            if std::env::var_os("UPDATE_README").is_some() {
                let updated = format!("{}{expected}{}", &readme[..start + START.len()], &readme[end..]);
                std::fs::write(path, updated).expect("writing README.md");
            } else {
                panic!(
                    "README key table is stale; run UPDATE_README=1 cargo test readme\nexpected:\n{expected}"
                );
            }
        }
    }
}
