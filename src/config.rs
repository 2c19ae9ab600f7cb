//! Configuration: built-in defaults (the embedded `config.example.toml`) ← the user's
//! `config.toml` (XDG config dir) ← `--config FILE` ← command-line flags. Each layer only needs
//! the keys it changes; an unknown key or a value of the wrong type is an error naming the key
//! and the file it came from.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::loader::{LoadOptions, ModelSpec};
use crate::model::{MAX_SIDE, MAX_STEPS, SIZE_MULTIPLE};

/// The built-in defaults; also the documented example users copy.
pub const DEFAULT_CONFIG_TOML: &str = include_str!("../config.example.toml");

const APP_NAME: &str = "zimage-tui";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub model: ModelConfig,
    pub generation: GenerationConfig,
    pub ui: UiConfig,
    pub session: SessionConfig,
    /// Key map overrides: action name → keys ("q", "ctrl-c", "shift-tab", ...). The app validates
    /// the action names and key syntax.
    pub keys: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// "demo", "random:PRESET" or a checkpoint directory; see [`Config::model_spec`].
    pub source: String,
    /// "auto", "cpu", "cuda", "cuda:N"; see [`Config::device`].
    pub device: String,
    pub dtype: Dtype,
    pub low_vram: bool,
    /// 0 = no limit; see [`Config::max_vram_bytes`].
    pub max_vram_gib: f64,
    /// The hub the dashboard's model picker downloads from first ("huggingface", "modelscope").
    pub download_source: crate::fetch::Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dtype {
    Auto,
    F32,
    Bf16,
    F16,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GenerationConfig {
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub output_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UiConfig {
    pub theme: String,
    pub image_protocol: ImageProtocol,
    pub telemetry_hz: f64,
}

/// How the preview pane draws images; `Auto` asks the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageProtocol {
    Auto,
    Kitty,
    Sixel,
    Iterm2,
    Halfblocks,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionConfig {
    /// Empty = [`default_session_path`]; see [`Config::session_path`].
    pub path: PathBuf,
    pub autosave: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{origin} is not valid TOML: {message}")]
    Syntax { origin: String, message: String },
    #[error("unknown config key `{key}` in {origin} (known keys here: {known})")]
    UnknownKey {
        key: String,
        origin: String,
        known: String,
    },
    #[error("config key `{key}` in {origin}: {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
    #[error("invalid configuration: {0}")]
    Merged(String),
    #[error("bad --set `{0}`: expected KEY=VALUE, e.g. --set ui.theme=light")]
    BadOverride(String),
}

/// Where each layer comes from. Tests build this by hand; the binary uses [`Self::standard`].
#[derive(Debug, Clone, Default)]
pub struct ConfigSources {
    /// The user's config file; skipped when it does not exist.
    pub user_file: Option<PathBuf>,
    /// `--config FILE`; must exist.
    pub explicit_file: Option<PathBuf>,
    /// Command-line overrides, in order: (dotted key, value).
    pub overrides: Vec<(String, toml::Value)>,
}

impl ConfigSources {
    /// The XDG user file, `--config` and the flags in `args`.
    pub fn standard(args: &ConfigArgs) -> Result<Self, ConfigError> {
        Ok(Self {
            user_file: user_config_dir().map(|dir| dir.join("config.toml")),
            explicit_file: args.config.clone(),
            overrides: args.overrides()?,
        })
    }
}

/// Command-line flags that override config keys; flatten into a clap command with
/// `#[command(flatten)]`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ConfigArgs {
    /// Config file layered over ~/.config/zimage-tui/config.toml.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Model: "demo", "random:turbo" or a checkpoint directory [model.source].
    #[arg(long, value_name = "SOURCE")]
    pub model: Option<String>,
    /// "auto", "cpu", "cuda" or "cuda:N" [model.device].
    #[arg(long)]
    pub device: Option<String>,
    /// "auto", "f32", "bf16" or "f16" [model.dtype].
    #[arg(long)]
    pub dtype: Option<String>,
    /// Text encoder off the GPU after encoding, tiled decode [model.low_vram].
    #[arg(long)]
    pub low_vram: bool,
    /// Refuse jobs whose estimated peak exceeds this many GiB [model.max_vram_gib].
    #[arg(long, value_name = "GIB")]
    pub max_vram: Option<f64>,
    /// Where PNGs are written [generation.output_dir].
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Colour theme [ui.theme].
    #[arg(long)]
    pub theme: Option<String>,
    /// "auto", "kitty", "sixel", "iterm2" or "halfblocks" [ui.image_protocol].
    #[arg(long, value_name = "PROTOCOL")]
    pub image_protocol: Option<String>,
    /// Session file [session.path].
    #[arg(long, value_name = "FILE")]
    pub session: Option<PathBuf>,
    /// Do not save the session after each change [session.autosave = false].
    #[arg(long)]
    pub no_autosave: bool,
    /// Any config key, e.g. --set generation.steps=8 (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub set: Vec<String>,
}

impl ConfigArgs {
    /// The flags as (dotted key, value) overrides, `--set` last.
    pub fn overrides(&self) -> Result<Vec<(String, toml::Value)>, ConfigError> {
        use toml::Value;
        let path = |p: &Path| Value::String(p.to_string_lossy().into_owned());
        let mut out: Vec<(String, Value)> = Vec::new();
        let mut push = |key: &str, value: Option<Value>| {
            if let Some(value) = value {
                out.push((key.to_string(), value));
            }
        };
        push("model.source", self.model.clone().map(Value::String));
        push("model.device", self.device.clone().map(Value::String));
        push("model.dtype", self.dtype.clone().map(Value::String));
        push("model.low_vram", self.low_vram.then_some(Value::Boolean(true)));
        push("model.max_vram_gib", self.max_vram.map(Value::Float));
        push("generation.output_dir", self.output_dir.as_deref().map(path));
        push("ui.theme", self.theme.clone().map(Value::String));
        push(
            "ui.image_protocol",
            self.image_protocol.clone().map(Value::String),
        );
        push("session.path", self.session.as_deref().map(path));
        push(
            "session.autosave",
            self.no_autosave.then_some(Value::Boolean(false)),
        );
        for assignment in &self.set {
            let (key, raw) = assignment
                .split_once('=')
                .ok_or_else(|| ConfigError::BadOverride(assignment.clone()))?;
            let key = key.trim();
            if key.is_empty() {
                return Err(ConfigError::BadOverride(assignment.clone()));
            }
            out.push((key.to_string(), parse_override_value(raw.trim())));
        }
        Ok(out)
    }
}

/// A TOML value (`8`, `true`, `"x"`, `["q"]`), or else the text as a string (`light`).
fn parse_override_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut table| table.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_string()))
}

impl Config {
    /// The built-in defaults.
    pub fn defaults() -> Result<Config, ConfigError> {
        Config::load(&ConfigSources::default())
    }

    /// Layers the sources over the built-in defaults and validates the result.
    pub fn load(sources: &ConfigSources) -> Result<Config, ConfigError> {
        let mut merged = parse_layer(DEFAULT_CONFIG_TOML, "the built-in defaults")?;
        let defaults = merged.clone();
        let mut origins: BTreeMap<String, String> = BTreeMap::new();

        if let Some(path) = &sources.user_file {
            match std::fs::read_to_string(path) {
                Ok(text) => apply_layer(
                    &mut merged,
                    &defaults,
                    &mut origins,
                    &text,
                    &path.display().to_string(),
                )?,
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(source) => {
                    return Err(ConfigError::Read {
                        path: path.clone(),
                        source,
                    })
                }
            }
        }
        if let Some(path) = &sources.explicit_file {
            let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                path: path.clone(),
                source,
            })?;
            apply_layer(
                &mut merged,
                &defaults,
                &mut origins,
                &text,
                &path.display().to_string(),
            )?;
        }
        for (key, value) in &sources.overrides {
            let mut layer = toml::Table::new();
            insert_dotted(&mut layer, key, value.clone());
            let origin = format!("the command line (`{key}`)");
            check_layer(&layer, &defaults, "", &origin)?;
            merge(&mut merged, layer, "", &origin, &mut origins);
        }

        let config: Config = toml::Value::Table(merged)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Merged(e.message().to_string()))?;
        config.validate(&origins)?;
        Ok(config)
    }

    fn validate(&self, origins: &BTreeMap<String, String>) -> Result<(), ConfigError> {
        let invalid = |key: &str, message: String| ConfigError::Invalid {
            key: key.to_string(),
            origin: origins
                .get(key)
                .cloned()
                .unwrap_or_else(|| "the built-in defaults".into()),
            message,
        };
        for (key, side) in [
            ("generation.width", self.generation.width),
            ("generation.height", self.generation.height),
        ] {
            if side == 0 || side > MAX_SIDE || side % SIZE_MULTIPLE != 0 {
                return Err(invalid(
                    key,
                    format!("{side} must be a multiple of {SIZE_MULTIPLE} from 16 to {MAX_SIDE}"),
                ));
            }
        }
        if self.generation.steps == 0 || self.generation.steps > MAX_STEPS {
            return Err(invalid(
                "generation.steps",
                format!("{} must be from 1 to {MAX_STEPS}", self.generation.steps),
            ));
        }
        if !(self.ui.telemetry_hz.is_finite() && (0.1..=100.0).contains(&self.ui.telemetry_hz)) {
            return Err(invalid(
                "ui.telemetry_hz",
                format!("{} must be from 0.1 to 100", self.ui.telemetry_hz),
            ));
        }
        if !(self.model.max_vram_gib.is_finite() && self.model.max_vram_gib >= 0.0) {
            return Err(invalid(
                "model.max_vram_gib",
                format!("{} must be 0 (no limit) or more", self.model.max_vram_gib),
            ));
        }
        let device = self.model.device.trim().to_ascii_lowercase();
        let device_ok = matches!(device.as_str(), "auto" | "cpu" | "cuda")
            || device
                .strip_prefix("cuda:")
                .is_some_and(|n| n.parse::<u32>().is_ok());
        if !device_ok {
            return Err(invalid(
                "model.device",
                format!("\"{}\" is not auto, cpu, cuda or cuda:N", self.model.device),
            ));
        }
        if self.model.source.trim().is_empty() {
            return Err(invalid(
                "model.source",
                "is empty; use \"demo\" or a checkpoint directory".into(),
            ));
        }
        if self.ui.theme.trim().is_empty() {
            return Err(invalid("ui.theme", "is empty".into()));
        }
        Ok(())
    }

    /// `model.source` as a model spec: "demo", "random:PRESET", else a directory (`~/` expanded).
    pub fn model_spec(&self) -> ModelSpec {
        let source = self.model.source.trim();
        if source.eq_ignore_ascii_case("demo") {
            ModelSpec::Demo
        } else if let Some(preset) = source.strip_prefix("random:") {
            ModelSpec::RandomWeights {
                preset: preset.trim().to_string(),
            }
        } else {
            ModelSpec::Dir(expand_home(Path::new(source)))
        }
    }

    /// `model.device` with "auto" resolved: "cuda" in a CUDA build, else "cpu".
    pub fn device(&self) -> String {
        let device = self.model.device.trim().to_ascii_lowercase();
        match device.as_str() {
            "auto" if cfg!(feature = "cuda") => "cuda".into(),
            "auto" => "cpu".into(),
            _ => device,
        }
    }

    /// Loader options from the `[model]` keys.
    pub fn load_options(&self) -> LoadOptions {
        let dtype = match self.model.dtype {
            Dtype::Auto => None,
            Dtype::F32 => Some("f32".to_string()),
            Dtype::Bf16 => Some("bf16".to_string()),
            Dtype::F16 => Some("f16".to_string()),
        };
        LoadOptions {
            device: self.device(),
            dtype,
            low_vram: self.model.low_vram,
        }
    }

    /// Sampler rates for the dashboard: `ui.telemetry_hz`, ≥ 20 Hz during jobs.
    pub fn sampler_config(&self) -> crate::gpu::SamplerConfig {
        crate::gpu::SamplerConfig::with_rate(self.ui.telemetry_hz)
    }

    /// The memory budget in bytes; `None` = no limit.
    pub fn max_vram_bytes(&self) -> Option<u64> {
        (self.model.max_vram_gib > 0.0).then_some((self.model.max_vram_gib * (1u64 << 30) as f64) as u64)
    }

    pub fn output_dir(&self) -> PathBuf {
        expand_home(&self.generation.output_dir)
    }

    /// `session.path`, or the default under the XDG data dir; `None` only when no home
    /// directory can be found and no path is configured.
    pub fn session_path(&self) -> Option<PathBuf> {
        if self.session.path.as_os_str().is_empty() {
            default_session_path()
        } else {
            Some(expand_home(&self.session.path))
        }
    }
}

fn project_dirs() -> Option<directories::ProjectDirs> {
    directories::ProjectDirs::from("", "", APP_NAME)
}

/// `$XDG_CONFIG_HOME/zimage-tui` (usually ~/.config/zimage-tui).
pub fn user_config_dir() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.config_dir().to_path_buf())
}

/// Where user themes live: `<config dir>/themes`.
pub fn user_themes_dir() -> Option<PathBuf> {
    user_config_dir().map(|dir| dir.join("themes"))
}

/// `$XDG_DATA_HOME/zimage-tui/session.toml`.
pub fn default_session_path() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.data_dir().join("session.toml"))
}

/// Where logs go: `$XDG_STATE_HOME/zimage-tui` (falls back to the cache dir off Linux).
pub fn log_dir() -> Option<PathBuf> {
    project_dirs().map(|dirs| dirs.state_dir().unwrap_or(dirs.cache_dir()).to_path_buf())
}

/// "~/x" → "$HOME/x"; other paths unchanged.
pub fn expand_home(path: &Path) -> PathBuf {
    match (path.strip_prefix("~"), directories::BaseDirs::new()) {
        (Ok(rest), Some(base)) => base.home_dir().join(rest),
        _ => path.to_path_buf(),
    }
}

fn parse_layer(text: &str, origin: &str) -> Result<toml::Table, ConfigError> {
    toml::from_str(text).map_err(|e: toml::de::Error| ConfigError::Syntax {
        origin: origin.to_string(),
        message: e.to_string(),
    })
}

fn apply_layer(
    merged: &mut toml::Table,
    defaults: &toml::Table,
    origins: &mut BTreeMap<String, String>,
    text: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    let layer = parse_layer(text, origin)?;
    check_layer(&layer, defaults, "", origin)?;
    merge(merged, layer, "", origin, origins);
    Ok(())
}

/// Every key of `layer` must exist in the defaults with a value of the same kind. `[keys]` is
/// free-form (its entries are checked when the config is deserialized and by the app).
fn check_layer(
    layer: &toml::Table,
    defaults: &toml::Table,
    prefix: &str,
    origin: &str,
) -> Result<(), ConfigError> {
    for (key, value) in layer {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        let Some(default) = defaults.get(key) else {
            let known = defaults.keys().map(String::as_str).collect::<Vec<_>>().join(", ");
            return Err(ConfigError::UnknownKey {
                key: dotted,
                origin: origin.to_string(),
                known,
            });
        };
        let invalid = |message: String| ConfigError::Invalid {
            key: dotted.clone(),
            origin: origin.to_string(),
            message,
        };
        match (default, value) {
            (toml::Value::Table(_), toml::Value::Table(_)) if dotted == "keys" => {
                for (action, keys) in value.as_table().into_iter().flatten() {
                    let ok = keys
                        .as_array()
                        .is_some_and(|list| list.iter().all(toml::Value::is_str));
                    if !ok {
                        return Err(ConfigError::Invalid {
                            key: format!("keys.{action}"),
                            origin: origin.to_string(),
                            message: "expected a list of keys, e.g. [\"q\", \"ctrl-q\"]".into(),
                        });
                    }
                }
            }
            (toml::Value::Table(d), toml::Value::Table(v)) => check_layer(v, d, &dotted, origin)?,
            (toml::Value::Table(_), other) => {
                return Err(invalid(format!(
                    "expected a section ([{dotted}]), found {}",
                    other.type_str()
                )));
            }
            (_, toml::Value::String(text))
                if choices(&dotted).is_some_and(|c| !c.contains(&text.as_str())) =>
            {
                let allowed = choices(&dotted).unwrap_or_default().join(", ");
                return Err(invalid(format!("\"{text}\" is not one of {allowed}")));
            }
            (d, v) if same_kind(d, v) => {}
            (d, v) => {
                return Err(invalid(format!(
                    "expected {}, found {} ({v})",
                    kind_name(d),
                    kind_name(v)
                )))
            }
        }
    }
    Ok(())
}

/// Keys whose string value must be one of a few words (the enums of [`Config`]).
fn choices(dotted: &str) -> Option<&'static [&'static str]> {
    match dotted {
        "model.dtype" => Some(&["auto", "f32", "bf16", "f16"]),
        "ui.image_protocol" => Some(&["auto", "kitty", "sixel", "iterm2", "halfblocks"]),
        "model.download_source" => Some(&["huggingface", "modelscope"]),
        _ => None,
    }
}

fn same_kind(default: &toml::Value, value: &toml::Value) -> bool {
    use toml::Value::*;
    matches!(
        (default, value),
        (String(_), String(_))
            | (Integer(_), Integer(_))
            | (Float(_), Float(_) | Integer(_))
            | (Boolean(_), Boolean(_))
    )
}

fn kind_name(value: &toml::Value) -> &'static str {
    match value {
        toml::Value::String(_) => "a string",
        toml::Value::Integer(_) => "an integer",
        toml::Value::Float(_) => "a number",
        toml::Value::Boolean(_) => "true or false",
        toml::Value::Datetime(_) => "a date",
        toml::Value::Array(_) => "a list",
        toml::Value::Table(_) => "a section",
    }
}

/// Deep-merges `layer` into `merged`, noting where each leaf came from. Integers given for float
/// keys become floats.
fn merge(
    merged: &mut toml::Table,
    layer: toml::Table,
    prefix: &str,
    origin: &str,
    origins: &mut BTreeMap<String, String>,
) {
    for (key, value) in layer {
        let dotted = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match (merged.get_mut(&key), value) {
            (Some(toml::Value::Table(target)), toml::Value::Table(sub)) if dotted != "keys" => {
                merge(target, sub, &dotted, origin, origins);
            }
            (Some(toml::Value::Table(target)), toml::Value::Table(sub)) => {
                for (action, keys) in sub {
                    origins.insert(format!("keys.{action}"), origin.to_string());
                    target.insert(action, keys);
                }
            }
            (Some(toml::Value::Float(_)), toml::Value::Integer(i)) => {
                origins.insert(dotted, origin.to_string());
                merged.insert(key, toml::Value::Float(i as f64));
            }
            (_, value) => {
                origins.insert(dotted, origin.to_string());
                merged.insert(key, value);
            }
        }
    }
}

fn insert_dotted(table: &mut toml::Table, dotted: &str, value: toml::Value) {
    match dotted.split_once('.') {
        Some((head, rest)) => {
            let entry = table
                .entry(head.to_string())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            if let toml::Value::Table(sub) = entry {
                insert_dotted(sub, rest, value);
            }
        }
        None => {
            table.insert(dotted.to_string(), value);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, text).expect("write");
        path
    }

    #[test]
    fn defaults_parse() {
        let config = Config::defaults().expect("defaults");
        assert_eq!(config.model.source, "demo");
        assert_eq!(config.model_spec(), ModelSpec::Demo);
        assert_eq!(
            (
                config.generation.width,
                config.generation.height,
                config.generation.steps
            ),
            (1024, 1024, 9)
        );
        assert_eq!(config.ui.image_protocol, ImageProtocol::Auto);
        assert_eq!(config.ui.telemetry_hz, 4.0);
        assert!(config.session.autosave);
        assert!(config.keys.is_empty());
        assert_eq!(config.max_vram_bytes(), None);
        assert_eq!(
            config.sampler_config().interval,
            std::time::Duration::from_millis(250)
        );
    }

    /// The example is the embedded default: the struct has no serde defaults, so parsing it
    /// proves it sets every field; each key also needs a comment right above it.
    #[test]
    fn example_documents_every_key() {
        let example = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.example.toml"))
            .expect("read config.example.toml");
        assert_eq!(example, DEFAULT_CONFIG_TOML);
        let parsed: Config = toml::from_str(&example).expect("config.example.toml is a complete config");
        let table: toml::Table = toml::from_str(&example).expect("toml");
        let round_trip: toml::Table = toml::Value::try_from(&parsed)
            .expect("serialize")
            .try_into()
            .expect("table");
        assert_eq!(
            table, round_trip,
            "every field appears in the example, nothing else"
        );
        let lines: Vec<&str> = example.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            let is_key = !line.starts_with('#') && !line.starts_with('[') && line.contains(" = ");
            if is_key {
                assert!(
                    i > 0 && lines[i - 1].starts_with('#'),
                    "key without a comment above it: {line}"
                );
            }
        }
    }

    #[test]
    fn layers_apply_in_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let user = write(
            dir.path(),
            "user.toml",
            "[generation]\nsteps = 8\nwidth = 512\n[ui]\ntheme = \"light\"\ntelemetry_hz = 10\n",
        );
        let explicit = write(
            dir.path(),
            "explicit.toml",
            "[generation]\nsteps = 6\n[keys]\nquit = [\"q\", \"ctrl-q\"]\n",
        );
        let args = ConfigArgs {
            theme: Some("high-contrast".into()),
            no_autosave: true,
            max_vram: Some(1.5),
            set: vec!["generation.height=768".into(), "model.source=random:turbo".into()],
            ..Default::default()
        };
        let sources = ConfigSources {
            user_file: Some(user),
            explicit_file: Some(explicit),
            overrides: args.overrides().expect("overrides"),
        };
        let config = Config::load(&sources).expect("load");
        assert_eq!(config.generation.steps, 6); // --config over the user file
        assert_eq!(config.generation.width, 512); // user file over the defaults
        assert_eq!(config.generation.height, 768); // --set
        assert_eq!(config.ui.theme, "high-contrast"); // flag over the user file
        assert_eq!(config.ui.telemetry_hz, 10.0); // integer accepted for a float key
        assert!(!config.session.autosave);
        assert_eq!(config.max_vram_bytes(), Some(3 << 29));
        assert_eq!(
            config.model_spec(),
            ModelSpec::RandomWeights {
                preset: "turbo".into()
            }
        );
        assert_eq!(
            config.keys.get("quit"),
            Some(&vec!["q".to_string(), "ctrl-q".to_string()])
        );
    }

    #[test]
    fn missing_user_file_is_fine_but_missing_explicit_file_is_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.toml");
        let sources = ConfigSources {
            user_file: Some(missing.clone()),
            ..Default::default()
        };
        assert!(Config::load(&sources).is_ok());
        let sources = ConfigSources {
            explicit_file: Some(missing),
            ..Default::default()
        };
        let err = Config::load(&sources).expect_err("missing --config");
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
        assert!(err.to_string().contains("nope.toml"), "{err}");
    }

    fn load_text(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "c.toml", text);
        Config::load(&ConfigSources {
            explicit_file: Some(path),
            ..Default::default()
        })
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = load_text("[ui]\ntheem = \"dark\"\n").expect_err("unknown key");
        let message = err.to_string();
        assert!(message.contains("unknown config key `ui.theem`"), "{message}");
        assert!(message.contains("c.toml"), "{message}");
        assert!(message.contains("theme"), "{message}");
        let err = load_text("colour = 1\n").expect_err("unknown section");
        assert!(err.to_string().contains("`colour`"), "{err}");
        let err = Config::load(&ConfigSources {
            overrides: ConfigArgs {
                set: vec!["ui.nope=1".into()],
                ..Default::default()
            }
            .overrides()
            .expect("args"),
            ..Default::default()
        })
        .expect_err("unknown --set key");
        assert!(err.to_string().contains("`ui.nope` in the command line"), "{err}");
    }

    #[test]
    fn bad_values_are_named() {
        let cases = [
            ("[generation]\nsteps = \"nine\"\n", "generation.steps"),
            ("[generation]\nwidth = 1000\n", "multiple of 16"),
            ("[generation]\nsteps = 0\n", "generation.steps"),
            ("[ui]\ntelemetry_hz = 0.0\n", "ui.telemetry_hz"),
            ("[model]\ndevice = \"tpu\"\n", "model.device"),
            ("[model]\nmax_vram_gib = -1\n", "model.max_vram_gib"),
            ("ui = 3\n", "expected a section"),
            ("[keys]\nquit = \"q\"\n", "keys.quit"),
            ("[ui]\nimage_protocol = \"kity\"\n", "ui.image_protocol` in"),
            ("[model]\ndtype = \"f8\"\n", "\"f8\" is not one of auto, f32"),
            (
                "[model]\ndownload_source = \"github\"\n",
                "\"github\" is not one of huggingface, modelscope",
            ),
            ("[generation\n", "not valid TOML"),
        ];
        for (text, expected) in cases {
            let message = load_text(text).expect_err(text).to_string();
            assert!(message.contains(expected), "{text:?} → {message}");
        }
    }

    #[test]
    fn override_values_parse_as_toml_or_text() {
        assert_eq!(parse_override_value("8"), toml::Value::Integer(8));
        assert_eq!(parse_override_value("true"), toml::Value::Boolean(true));
        assert_eq!(parse_override_value("light"), toml::Value::String("light".into()));
        assert_eq!(parse_override_value("\"a b\""), toml::Value::String("a b".into()));
        let bad = ConfigArgs {
            set: vec!["novalue".into()],
            ..Default::default()
        };
        assert!(matches!(bad.overrides(), Err(ConfigError::BadOverride(_))));
    }

    #[test]
    fn accessors() {
        let mut config = Config::defaults().expect("defaults");
        config.model.device = "cuda:1".into();
        config.model.dtype = Dtype::Bf16;
        config.model.low_vram = true;
        assert_eq!(
            config.load_options(),
            LoadOptions {
                device: "cuda:1".into(),
                dtype: Some("bf16".into()),
                low_vram: true
            }
        );
        config.session.path = "/tmp/s.toml".into();
        assert_eq!(config.session_path(), Some(PathBuf::from("/tmp/s.toml")));
        config.model.source = "/models/z".into();
        assert_eq!(config.model_spec(), ModelSpec::Dir("/models/z".into()));
        if let Some(base) = directories::BaseDirs::new() {
            assert_eq!(expand_home(Path::new("~/x")), base.home_dir().join("x"));
        }
        assert_eq!(expand_home(Path::new("a/~")), PathBuf::from("a/~"));
    }
}
