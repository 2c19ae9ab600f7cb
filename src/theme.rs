//! Colour themes. `themes/{dark,light,high-contrast}.toml` are embedded in the binary; a file
//! `<config dir>/themes/NAME.toml` overrides the built-in theme of that name key by key (it only
//! needs the colours it changes) or defines a new theme on top of `base` (default "dark").

use std::path::{Path, PathBuf};

use ratatui::style::{Color, Modifier, Style};

/// The embedded themes, (name, TOML).
pub const BUILTIN_THEMES: &[(&str, &str)] = &[
    ("dark", include_str!("../themes/dark.toml")),
    ("light", include_str!("../themes/light.toml")),
    ("high-contrast", include_str!("../themes/high-contrast.toml")),
];

/// The theme used when none is configured.
pub const DEFAULT_THEME: &str = "dark";

#[derive(Debug, thiserror::Error)]
pub enum ThemeError {
    #[error("unknown theme \"{name}\" (built-in: dark, light, high-contrast; user themes go in {dir})")]
    Unknown { name: String, dir: String },
    #[error("theme name \"{0}\" may only contain letters, digits, '-' and '_'")]
    BadName(String),
    #[error("cannot read theme file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("theme {origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("theme {origin}: `{key}` = {value} is not a colour (use a name like \"lightblue\", an index \"0\"..\"255\" or \"#rrggbb\")")]
    BadColour {
        origin: String,
        key: String,
        value: String,
    },
    #[error("theme {origin}: unknown key `{key}` (known: {known})")]
    UnknownKey {
        origin: String,
        key: String,
        known: String,
    },
    #[error("theme {origin}: missing colour `{key}`")]
    Missing { origin: String, key: String },
}

/// Declares the theme's colours once: the struct fields, the key list and the parser.
macro_rules! theme_colours {
    ($($(#[doc = $doc:literal])* $field:ident,)*) => {
        /// Colours for each kind of element the dashboard draws.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct Theme {
            pub name: String,
            $($(#[doc = $doc])* pub $field: Color,)*
        }

        /// Every colour key a theme file sets.
        pub const COLOUR_KEYS: &[&str] = &[$(stringify!($field)),*];

        impl Theme {
            fn from_table(name: &str, table: &toml::Table, origin: &str) -> Result<Theme, ThemeError> {
                Ok(Theme { name: name.to_string(), $($field: colour(table, stringify!($field), origin)?,)* })
            }
        }
    };
}

theme_colours! {
    /// Normal text.
    fg,
    /// Pane background ("reset" = the terminal's).
    bg,
    /// Secondary text: hints, timestamps, queued jobs, empty states.
    muted,
    /// Emphasis: headings, highlighted figures.
    accent,
    /// Pane titles.
    title,
    /// Borders of panes without focus.
    border,
    /// Border of the focused pane.
    border_focused,
    /// Text of the selected row in lists.
    selected_fg,
    /// Background of the selected row in lists.
    selected_bg,
    /// Success: finished jobs, "ok" states.
    ok,
    /// Warnings, cancelled jobs, memory close to full.
    warn,
    /// Errors, failed jobs, out of memory.
    error,
    /// Informational log lines.
    info,
    /// The running job, live step counters.
    running,
    /// Filled part of gauges (progress, memory).
    gauge_filled,
    /// Empty part of gauges.
    gauge_empty,
    /// Sparklines (memory history).
    sparkline,
    /// Status bar text.
    status_fg,
    /// Status bar background.
    status_bg,
    /// Key names in the status bar and the help overlay.
    key_hint,
    /// Text in popups (help, confirmations).
    popup_fg,
    /// Popup background.
    popup_bg,
}

fn colour(table: &toml::Table, key: &str, origin: &str) -> Result<Color, ThemeError> {
    let value = table.get(key).ok_or_else(|| ThemeError::Missing {
        origin: origin.into(),
        key: key.into(),
    })?;
    let bad = || ThemeError::BadColour {
        origin: origin.into(),
        key: key.into(),
        value: value.to_string(),
    };
    let text = value.as_str().ok_or_else(bad)?;
    parse_colour(text).ok_or_else(bad)
}

/// ratatui's colour names, "0".."255" and "#rrggbb"; anything else is refused.
pub fn parse_colour(text: &str) -> Option<Color> {
    let text = text.trim();
    if let Some(hex) = text.strip_prefix('#') {
        let valid = hex.len() == 6 && hex.chars().all(|c| c.is_ascii_hexdigit());
        return valid.then(|| text.parse().ok()).flatten();
    }
    text.parse().ok()
}

impl Default for Theme {
    fn default() -> Self {
        // The embedded default theme is checked by the tests; it cannot fail at run time.
        Theme::builtin(DEFAULT_THEME).expect("the embedded dark theme parses")
    }
}

impl Theme {
    /// A built-in theme, ignoring user files.
    pub fn builtin(name: &str) -> Result<Theme, ThemeError> {
        let text = builtin_text(name).ok_or_else(|| ThemeError::Unknown {
            name: name.into(),
            dir: "(built-in only)".into(),
        })?;
        let table = parse(text, &format!("\"{name}\" (built-in)"))?;
        Theme::from_table(name, &table, &format!("\"{name}\" (built-in)"))
    }

    /// Theme `name`: `user_dir/NAME.toml` layered over the built-in of that name (or over its
    /// `base`, default "dark", for a new name). `user_dir` is usually
    /// [`crate::config::user_themes_dir`].
    pub fn load(name: &str, user_dir: Option<&Path>) -> Result<Theme, ThemeError> {
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(ThemeError::BadName(name.into()));
        }
        let user_file = user_dir.map(|dir| dir.join(format!("{name}.toml")));
        let user = match &user_file {
            Some(path) => match std::fs::read_to_string(path) {
                Ok(text) => Some((
                    parse(&text, &path.display().to_string())?,
                    path.display().to_string(),
                )),
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
                Err(source) => {
                    return Err(ThemeError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            },
            None => None,
        };
        let Some((mut overrides, origin)) = user else {
            let dir = user_dir.map_or_else(|| "the config dir's themes/".into(), |d| d.display().to_string());
            return match builtin_text(name) {
                Some(_) => Theme::builtin(name),
                None => Err(ThemeError::Unknown {
                    name: name.into(),
                    dir,
                }),
            };
        };
        let base_name = match overrides.remove("base") {
            Some(toml::Value::String(base)) => base,
            Some(other) => {
                return Err(ThemeError::BadColour {
                    origin,
                    key: "base".into(),
                    value: other.to_string(),
                });
            }
            None if builtin_text(name).is_some() => name.to_string(),
            None => DEFAULT_THEME.to_string(),
        };
        let base_text = builtin_text(&base_name).ok_or_else(|| ThemeError::Unknown {
            name: base_name.clone(),
            dir: "(base themes must be built-in)".into(),
        })?;
        let mut table = parse(base_text, &base_name)?;
        for (key, value) in overrides {
            if !COLOUR_KEYS.contains(&key.as_str()) {
                return Err(ThemeError::UnknownKey {
                    origin,
                    key,
                    known: format!("base, {}", COLOUR_KEYS.join(", ")),
                });
            }
            table.insert(key, value);
        }
        Theme::from_table(name, &table, &origin)
    }

    /// Built-in theme names, then user themes found in `user_dir`, sorted, without duplicates.
    pub fn names(user_dir: Option<&Path>) -> Vec<String> {
        let mut names: Vec<String> = BUILTIN_THEMES.iter().map(|(name, _)| name.to_string()).collect();
        let entries = user_dir
            .and_then(|dir| std::fs::read_dir(dir).ok())
            .into_iter()
            .flatten()
            .flatten();
        let mut user: Vec<String> = entries
            .filter_map(|entry| {
                let path = entry.path();
                let is_toml = path.extension().is_some_and(|ext| ext == "toml");
                is_toml
                    .then(|| path.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .flatten()
            })
            .filter(|name| !names.contains(name))
            .collect();
        user.sort();
        names.extend(user);
        names
    }

    /// Normal text on the pane background.
    pub fn base(&self) -> Style {
        Style::new().fg(self.fg).bg(self.bg)
    }

    pub fn muted(&self) -> Style {
        Style::new().fg(self.muted)
    }

    pub fn border(&self, focused: bool) -> Style {
        Style::new().fg(if focused { self.border_focused } else { self.border })
    }

    pub fn title(&self, focused: bool) -> Style {
        let style = Style::new().fg(self.title);
        if focused {
            style.add_modifier(Modifier::BOLD)
        } else {
            style
        }
    }

    pub fn selected(&self) -> Style {
        Style::new().fg(self.selected_fg).bg(self.selected_bg)
    }

    pub fn gauge(&self) -> Style {
        Style::new().fg(self.gauge_filled).bg(self.gauge_empty)
    }

    pub fn status_bar(&self) -> Style {
        Style::new().fg(self.status_fg).bg(self.status_bg)
    }

    pub fn key_hint(&self) -> Style {
        Style::new().fg(self.key_hint).add_modifier(Modifier::BOLD)
    }

    pub fn popup(&self) -> Style {
        Style::new().fg(self.popup_fg).bg(self.popup_bg)
    }
}

fn builtin_text(name: &str) -> Option<&'static str> {
    BUILTIN_THEMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, text)| *text)
}

fn parse(text: &str, origin: &str) -> Result<toml::Table, ThemeError> {
    let table: toml::Table = toml::from_str(text).map_err(|e: toml::de::Error| ThemeError::Syntax {
        origin: origin.into(),
        message: e.message().into(),
    })?;
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_theme_parses_and_sets_exactly_the_known_keys() {
        for (name, text) in BUILTIN_THEMES {
            let theme = Theme::builtin(name).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(theme.name, *name);
            let table: toml::Table = toml::from_str(text).expect("toml");
            let mut keys: Vec<&str> = table.keys().map(String::as_str).collect();
            let mut expected = COLOUR_KEYS.to_vec();
            keys.sort();
            expected.sort();
            assert_eq!(keys, expected, "theme {name}");
        }
        assert_eq!(Theme::default().name, "dark");
        assert_eq!(Theme::load("light", None).expect("light").fg, Color::Black);
    }

    #[test]
    fn user_theme_overrides_builtin_of_the_same_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("dark.toml"),
            "accent = \"#ff0000\"\nerror = \"9\"\n",
        )
        .expect("write");
        let theme = Theme::load("dark", Some(dir.path())).expect("override");
        assert_eq!(theme.accent, Color::Rgb(255, 0, 0));
        assert_eq!(theme.error, Color::Indexed(9));
        let builtin = Theme::builtin("dark").expect("dark");
        assert_eq!(theme.ok, builtin.ok, "keys not overridden stay as built in");
        assert_ne!(theme, builtin);
        // Other built-ins are untouched by the dark override.
        assert_eq!(
            Theme::load("light", Some(dir.path())).expect("light"),
            Theme::builtin("light").expect("light")
        );
    }

    #[test]
    fn user_theme_with_a_new_name_builds_on_a_base() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("solar.toml"),
            "base = \"light\"\nfg = \"yellow\"\n",
        )
        .expect("write");
        std::fs::write(dir.path().join("plain.toml"), "bg = \"black\"\n").expect("write");
        let solar = Theme::load("solar", Some(dir.path())).expect("solar");
        assert_eq!((solar.name.as_str(), solar.fg), ("solar", Color::Yellow));
        assert_eq!(solar.bg, Theme::builtin("light").expect("light").bg);
        let plain = Theme::load("plain", Some(dir.path())).expect("plain");
        assert_eq!(plain.accent, Theme::builtin("dark").expect("dark").accent);
        assert_eq!(
            Theme::names(Some(dir.path())),
            vec!["dark", "light", "high-contrast", "plain", "solar"]
        );
    }

    #[test]
    fn bad_themes_are_clear_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases = [
            ("accent = \"blurple\"\n", "`accent` = \"blurple\" is not a colour"),
            ("accent = \"#12345\"\n", "is not a colour"),
            ("accent = 7\n", "`accent` = 7 is not a colour"),
            ("acent = \"red\"\n", "unknown key `acent`"),
            ("accent = \n", "not valid TOML"),
            ("base = \"nope\"\n", "unknown theme \"nope\""),
        ];
        for (text, expected) in cases {
            std::fs::write(dir.path().join("dark.toml"), text).expect("write");
            let message = Theme::load("dark", Some(dir.path())).expect_err(text).to_string();
            assert!(message.contains(expected), "{text:?} → {message}");
        }
        let message = Theme::load("missing", Some(dir.path()))
            .expect_err("unknown")
            .to_string();
        assert!(message.contains("unknown theme \"missing\""), "{message}");
        assert!(matches!(
            Theme::load("../etc/passwd", None),
            Err(ThemeError::BadName(_))
        ));
    }

    #[test]
    fn colour_syntax() {
        assert_eq!(parse_colour("lightblue"), Some(Color::LightBlue));
        assert_eq!(parse_colour("reset"), Some(Color::Reset));
        assert_eq!(parse_colour("236"), Some(Color::Indexed(236)));
        assert_eq!(parse_colour("#0a0B0c"), Some(Color::Rgb(10, 11, 12)));
        assert_eq!(parse_colour("256"), None);
        assert_eq!(parse_colour("#abc"), None);
    }
}
