//! The evaluation a user would do by hand, built in: timed runs at one size, a resolution sweep
//! that survives out-of-memory, a soak that watches for memory growth and slow-down; written as
//! report.md (the review's tables) and report.json (every raw figure).
//!
//! The runner drives the worker through the same `Command`/`Event` channels as the dashboard and
//! `gen`, so what is measured is the engine users run.

pub mod channels;
pub mod estimate;
pub mod markdown;
pub mod meter;
pub mod prompts;
pub mod record;
pub mod report;
pub mod runner;
pub mod stats;
pub mod stress;

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::model::GenerationRequest;

pub use channels::WorkerChannels;
pub use record::{JobRecord, MemoryReading, Outcome};
pub use report::Report;
pub use runner::{MemoryMeter, Observer, Runner, Silent, WorkerPort};

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Input(String),
    #[error("the model failed to load: {0}")]
    Load(String),
    #[error("no model loaded")]
    NoModel,
    #[error("the worker stopped unexpectedly")]
    WorkerGone,
    #[error("cannot write the report to {}: {source}", path.display())]
    Write { path: PathBuf, source: std::io::Error },
}

/// The report's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Section {
    Runs,
    Sweep,
    Soak,
}

impl Section {
    pub fn title(self) -> &'static str {
        match self {
            Section::Runs => "timed runs",
            Section::Sweep => "resolution sweep",
            Section::Soak => "soak",
        }
    }
}

/// Which measurements to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Mode {
    Runs,
    Sweep,
    Soak,
    All,
}

impl Mode {
    pub const ALL: [Mode; 4] = [Mode::Runs, Mode::Sweep, Mode::Soak, Mode::All];

    pub fn label(self) -> &'static str {
        match self {
            Mode::Runs => "runs",
            Mode::Sweep => "sweep",
            Mode::Soak => "soak",
            Mode::All => "all",
        }
    }

    /// The next mode in `ALL`, wrapping (the Stress view cycles with one key).
    pub fn next(self) -> Mode {
        let i = Self::ALL.iter().position(|m| *m == self).unwrap_or(0);
        Self::ALL[(i + 1) % Self::ALL.len()]
    }

    /// Does this mode include `section`?
    pub fn includes(self, section: Section) -> bool {
        match self {
            Mode::All => true,
            Mode::Runs => section == Section::Runs,
            Mode::Sweep => section == Section::Sweep,
            Mode::Soak => section == Section::Soak,
        }
    }
}

pub const DEFAULT_PROMPT: &str =
    "A futuristic city at night, neon lights reflecting on wet streets, cyberpunk style";
pub const DEFAULT_SEED: u64 = 42;
pub const DEFAULT_STEPS: usize = 9;
pub const DEFAULT_RUNS: usize = 5;
/// Size of the timed runs and the soak (the CLI's `--size` default is the same text).
pub const DEFAULT_SIZE: (u32, u32) = (1024, 1024);
pub const DEFAULT_SIZE_TEXT: &str = "1024x1024";
pub const DEFAULT_SOAK_IMAGES: usize = 50;
pub const DEFAULT_WARMUP: usize = 1;
/// Upper bounds that keep a typo (an extra zero or three) from starting a run of days.
pub const MAX_IMAGES: usize = 10_000;
pub const MAX_WARMUP: usize = 100;
pub const MAX_INTERVAL_S: f64 = 3600.0;
/// The review's sweep, plus the largest size the issue asks about.
pub const DEFAULT_SWEEP: &[(u32, u32)] = &[
    (512, 512),
    (1024, 1024),
    (1280, 768),
    (768, 1280),
    (1536, 1536),
    (2048, 2048),
];

#[derive(Debug, Clone, PartialEq)]
pub struct RunsPlan {
    pub count: usize,
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    pub seed: u64,
    pub prompt: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SweepPlan {
    /// (width, height) pairs, in order.
    pub sizes: Vec<(u32, u32)>,
    pub steps: usize,
    pub seed: u64,
    pub prompt: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SoakPlan {
    pub count: usize,
    pub width: u32,
    pub height: u32,
    pub steps: usize,
    /// Image i uses `seed + i` and prompt `i mod len`.
    pub seed: u64,
    pub prompts: Vec<String>,
    pub prompt_source: String,
    pub interval: Duration,
}

/// What to run. A `None` section is skipped.
#[derive(Debug, Clone, PartialEq)]
pub struct BenchPlan {
    pub runs: Option<RunsPlan>,
    pub sweep: Option<SweepPlan>,
    pub soak: Option<SoakPlan>,
    /// Warm-up generations before each measured series (per size in the sweep).
    pub warmup: usize,
    /// Refuse jobs whose estimated peak exceeds this many bytes.
    pub max_vram_bytes: Option<u64>,
    /// Test hook: jobs of these sizes fail with an injected out-of-memory after their first step
    /// (see `Job::inject_oom_after_step`), to show that a failure costs only that job.
    pub inject_oom_sizes: Vec<(u32, u32)>,
}

impl BenchPlan {
    /// Checks every request up front, so a typo fails before the model loads.
    pub fn validate(&self) -> Result<(), BenchError> {
        let check = |what: &str, width: u32, height: u32, steps: usize| {
            GenerationRequest {
                prompt: "x".into(),
                width,
                height,
                steps,
                seed: 0,
            }
            .validate()
            .map_err(|e| BenchError::Input(format!("{what}: {e}")))
        };
        if let Some(r) = &self.runs {
            check("timed runs", r.width, r.height, r.steps)?;
            check_count("timed runs", "--runs", r.count)?;
        }
        if let Some(s) = &self.sweep {
            if s.sizes.is_empty() {
                return Err(BenchError::Input("sweep: no sizes given".into()));
            }
            for &(w, h) in &s.sizes {
                check("sweep", w, h, s.steps)?;
            }
        }
        if let Some(s) = &self.soak {
            check("soak", s.width, s.height, s.steps)?;
            check_count("soak", "--soak", s.count)?;
            if s.prompts.iter().all(|p| p.trim().is_empty()) {
                return Err(BenchError::Input("soak: the prompt list is empty".into()));
            }
        }
        if self.warmup > MAX_WARMUP {
            return Err(BenchError::Input(format!(
                "--warmup {} is more than {MAX_WARMUP} warm-up generations per series",
                self.warmup
            )));
        }
        if self.runs.is_none() && self.sweep.is_none() && self.soak.is_none() {
            return Err(BenchError::Input("nothing to run".into()));
        }
        Ok(())
    }

    /// Every generation the plan submits, warm-ups included (an upper bound: a sweep size whose
    /// warm-up fails is not measured again).
    pub fn job_count(&self) -> usize {
        let runs = self.runs.as_ref().map_or(0, |r| self.warmup + r.count);
        let sweep = self
            .sweep
            .as_ref()
            .map_or(0, |s| s.sizes.len() * (self.warmup + 1));
        let soak = self.soak.as_ref().map_or(0, |s| self.warmup + s.count);
        runs + sweep + soak
    }
}

fn check_count(what: &str, flag: &str, count: usize) -> Result<(), BenchError> {
    if count == 0 {
        return Err(BenchError::Input(format!("{what}: {flag} must be at least 1")));
    }
    if count > MAX_IMAGES {
        return Err(BenchError::Input(format!(
            "{what}: {flag} {count} is more than {MAX_IMAGES} images"
        )));
    }
    Ok(())
}

/// Seconds between soak images: a finite number from 0 to an hour.
pub fn interval(seconds: f64) -> Result<Duration, BenchError> {
    if !(seconds.is_finite() && (0.0..=MAX_INTERVAL_S).contains(&seconds)) {
        return Err(BenchError::Input(format!(
            "the interval must be a number of seconds from 0 to {MAX_INTERVAL_S:.0}, not {seconds}"
        )));
    }
    Ok(Duration::from_secs_f64(seconds))
}

/// The knobs both faces expose (the CLI's flags, the Stress view's form), with the same
/// defaults; `plan()` turns them into a checked `BenchPlan`.
#[derive(Debug, Clone, PartialEq)]
pub struct PlanSettings {
    pub mode: Mode,
    /// Timed runs: measured generations.
    pub runs: usize,
    /// Size of the timed runs and the soak.
    pub size: (u32, u32),
    pub steps: usize,
    pub seed: u64,
    /// Prompt of the timed runs and the sweep.
    pub prompt: String,
    pub sweep_sizes: Vec<(u32, u32)>,
    pub soak_images: usize,
    pub soak_prompts: Vec<String>,
    /// Where the soak prompts came from, for the report.
    pub prompt_source: String,
    pub interval: Duration,
    pub warmup: usize,
    pub max_vram_bytes: Option<u64>,
    pub inject_oom_sizes: Vec<(u32, u32)>,
}

impl Default for PlanSettings {
    fn default() -> Self {
        let soak_prompts = prompts::built_in();
        let prompt_source = prompts::built_in_source(soak_prompts.len());
        Self {
            mode: Mode::All,
            runs: DEFAULT_RUNS,
            size: DEFAULT_SIZE,
            steps: DEFAULT_STEPS,
            seed: DEFAULT_SEED,
            prompt: DEFAULT_PROMPT.into(),
            sweep_sizes: DEFAULT_SWEEP.to_vec(),
            soak_images: DEFAULT_SOAK_IMAGES,
            soak_prompts,
            prompt_source,
            interval: Duration::ZERO,
            warmup: DEFAULT_WARMUP,
            max_vram_bytes: None,
            inject_oom_sizes: Vec::new(),
        }
    }
}

impl PlanSettings {
    /// The plan for `mode`; every mistake becomes a clear error here.
    pub fn plan(&self) -> Result<BenchPlan, BenchError> {
        let want = |section| self.mode.includes(section);
        let (width, height) = self.size;
        let plan = BenchPlan {
            runs: want(Section::Runs).then(|| RunsPlan {
                count: self.runs,
                width,
                height,
                steps: self.steps,
                seed: self.seed,
                prompt: self.prompt.clone(),
            }),
            sweep: want(Section::Sweep).then(|| SweepPlan {
                sizes: self.sweep_sizes.clone(),
                steps: self.steps,
                seed: self.seed,
                prompt: self.prompt.clone(),
            }),
            soak: want(Section::Soak).then(|| SoakPlan {
                count: self.soak_images,
                width,
                height,
                steps: self.steps,
                seed: self.seed,
                prompts: self.soak_prompts.clone(),
                prompt_source: self.prompt_source.clone(),
                interval: self.interval,
            }),
            warmup: self.warmup,
            max_vram_bytes: self.max_vram_bytes,
            inject_oom_sizes: self.inject_oom_sizes.clone(),
        };
        plan.validate()?;
        Ok(plan)
    }
}

/// Parses "1024x768" (or "1024×768", or "1024" for a square) into (width, height).
pub fn parse_size(text: &str) -> Result<(u32, u32), BenchError> {
    let bad = || BenchError::Input(format!("size {text:?} is not WIDTHxHEIGHT, e.g. 1024x1024"));
    let t = text.trim();
    let (w, h) = match t.split_once(['x', 'X', '×']) {
        Some((w, h)) => (w.trim(), h.trim()),
        None => (t, t),
    };
    let w: u32 = w.parse().map_err(|_| bad())?;
    let h: u32 = h.parse().map_err(|_| bad())?;
    Ok((w, h))
}

/// Writes report.md and report.json into `dir` (created if missing); returns both paths.
pub fn write_report(dir: &Path, report: &Report) -> Result<(PathBuf, PathBuf), BenchError> {
    let write = |path: PathBuf, text: String| -> Result<PathBuf, BenchError> {
        std::fs::write(&path, text).map_err(|source| BenchError::Write {
            path: path.clone(),
            source,
        })?;
        Ok(path)
    };
    std::fs::create_dir_all(dir).map_err(|source| BenchError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let md = write(dir.join("report.md"), markdown::render(report))?;
    let json = write(dir.join("report.json"), report.to_json())?;
    Ok((md, json))
}

/// The source tree's commit when the binary runs from (or beside) its checkout, with "-dirty"
/// when there are uncommitted changes; `None` otherwise.
pub fn git_commit() -> Option<String> {
    let dir = env!("CARGO_MANIFEST_DIR");
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "--short=12", "HEAD"]).filter(|c| !c.is_empty())?;
    let dirty = git(&["status", "--porcelain", "--untracked-files=no"]).is_some_and(|s| !s.is_empty());
    Some(if dirty { format!("{commit}-dirty") } else { commit })
}

/// Now, RFC 3339 in UTC.
pub fn now_utc() -> String {
    let now = time::OffsetDateTime::now_utc();
    let now = now.replace_nanosecond(0).unwrap_or(now);
    now.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| now.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse() {
        assert_eq!(parse_size("1024x768").unwrap(), (1024, 768));
        assert_eq!(parse_size("1280×768").unwrap(), (1280, 768));
        assert_eq!(parse_size("512").unwrap(), (512, 512));
        assert!(parse_size("big").is_err());
        assert!(parse_size("10x").is_err());
    }

    #[test]
    fn settings_default_to_the_cli_defaults_and_refuse_zero_or_huge_counts() {
        let defaults = PlanSettings::default();
        let plan = defaults.plan().unwrap();
        assert_eq!(plan.runs.as_ref().unwrap().count, DEFAULT_RUNS);
        assert_eq!(plan.soak.as_ref().unwrap().count, DEFAULT_SOAK_IMAGES);
        assert_eq!(plan.sweep.as_ref().unwrap().sizes, DEFAULT_SWEEP);
        assert_eq!(plan.job_count(), (1 + 5) + 6 * 2 + (1 + 50));
        let soak_only = PlanSettings {
            mode: Mode::Soak,
            ..PlanSettings::default()
        };
        let plan = soak_only.plan().unwrap();
        assert!(plan.runs.is_none() && plan.sweep.is_none() && plan.soak.is_some());
        for (settings, needle) in [
            (
                PlanSettings {
                    soak_images: 0,
                    ..PlanSettings::default()
                },
                "at least 1",
            ),
            (
                PlanSettings {
                    runs: MAX_IMAGES + 1,
                    ..PlanSettings::default()
                },
                "more than 10000",
            ),
            (
                PlanSettings {
                    warmup: 1_000_000,
                    ..PlanSettings::default()
                },
                "warm-up",
            ),
        ] {
            let err = settings.plan().unwrap_err().to_string();
            assert!(err.contains(needle), "{err}");
        }
        assert!(interval(-1.0).is_err() && interval(f64::NAN).is_err() && interval(1e9).is_err());
        assert_eq!(interval(0.5).unwrap(), Duration::from_millis(500));
    }

    #[test]
    fn plan_validation_names_the_problem() {
        let plan = BenchPlan {
            runs: None,
            sweep: Some(SweepPlan {
                sizes: vec![(1000, 512)],
                steps: 9,
                seed: 1,
                prompt: "p".into(),
            }),
            soak: None,
            warmup: 1,
            max_vram_bytes: None,
            inject_oom_sizes: Vec::new(),
        };
        let err = plan.validate().unwrap_err().to_string();
        assert!(err.contains("sweep") && err.contains("1000"), "{err}");
    }
}
