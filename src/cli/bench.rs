//! `zimage-tui bench`: timed runs, resolution sweep and soak, headless, with progress bars on
//! stderr; writes DIR/report.md and DIR/report.json, `--json` also prints the JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};

use crate::bench::estimate::GIB;
use crate::bench::{
    self, markdown, prompts, BenchPlan, JobRecord, Observer, PlanSettings, Report, Runner, Section,
    WorkerChannels,
};
use crate::model::loader::{LoadOptions, ModelSpec};
use crate::model::{GenerationRequest, Stage};

pub use crate::bench::Mode;

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which measurements to run.
    #[arg(long, value_enum, default_value = "all")]
    pub mode: Mode,
    /// Directory for report.md and report.json (created if missing).
    #[arg(long, default_value = "bench-report")]
    pub out: PathBuf,
    /// Also print the report JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Timed runs: how many measured generations.
    #[arg(long, default_value_t = bench::DEFAULT_RUNS)]
    pub runs: usize,
    /// Size of the timed runs and the soak, WIDTHxHEIGHT.
    #[arg(long, default_value = bench::DEFAULT_SIZE_TEXT)]
    pub size: String,
    /// Denoising steps of every job.
    #[arg(long, default_value_t = bench::DEFAULT_STEPS)]
    pub steps: usize,
    #[arg(long, default_value_t = bench::DEFAULT_SEED)]
    pub seed: u64,
    /// Prompt of the timed runs and the sweep.
    #[arg(long, default_value = bench::DEFAULT_PROMPT)]
    pub prompt: String,
    /// Sweep sizes, comma-separated WIDTHxHEIGHT (default 512², 1024², 1280×768, 768×1280, 1536², 2048²).
    #[arg(long, value_delimiter = ',')]
    pub sizes: Vec<String>,
    /// Soak: how many measured images.
    #[arg(long, default_value_t = bench::DEFAULT_SOAK_IMAGES)]
    pub soak: usize,
    /// Soak prompts, one per line (default: a built-in Chinese and English list).
    #[arg(long)]
    pub prompts: Option<PathBuf>,
    /// Soak: seconds to wait between images.
    #[arg(long, default_value_t = 0.0)]
    pub interval: f64,
    /// Warm-up generations before each measured series (per size in the sweep); excluded.
    #[arg(long, default_value_t = bench::DEFAULT_WARMUP)]
    pub warmup: usize,
    /// Refuse, before any compute, jobs whose estimated peak memory exceeds this many GiB.
    #[arg(long, value_name = "GiB")]
    pub max_vram: Option<f64>,
    /// A checkpoint directory (diffusers layout).
    #[arg(long, conflicts_with = "random_weights")]
    pub model: Option<PathBuf>,
    /// Random weights with the architecture of --preset: speed and memory without the checkpoint.
    #[arg(long)]
    pub random_weights: bool,
    /// Architecture preset for --random-weights: "turbo" (full size) or "demo" (tiny).
    #[arg(long, default_value = "turbo", requires = "random_weights")]
    pub preset: String,
    /// "cpu" or "cuda[:N]".
    #[arg(long)]
    pub device: Option<String>,
    /// bf16, f16 or f32 (default: f32 on CPU, bf16 on CUDA).
    #[arg(long)]
    pub dtype: Option<String>,
    /// Text encoder off the GPU after encoding, tiled VAE decode.
    #[arg(long)]
    pub low_vram: bool,
    /// Test hook: jobs of these sizes (WIDTHxHEIGHT, comma-separated) fail with an injected
    /// out-of-memory after their first step; the run goes on.
    #[arg(long, value_delimiter = ',', hide = true)]
    pub inject_oom_at: Vec<String>,
}

impl BenchArgs {
    /// The plan these arguments describe; every user mistake becomes a clear error here.
    pub fn plan(&self) -> anyhow::Result<BenchPlan> {
        let defaults = PlanSettings::default();
        let sweep_sizes = if self.sizes.is_empty() {
            defaults.sweep_sizes
        } else {
            self.sizes
                .iter()
                .map(|s| bench::parse_size(s))
                .collect::<Result<Vec<_>, _>>()?
        };
        let (soak_prompts, prompt_source) = match &self.prompts {
            Some(path) => (prompts::load_file(path)?, path.display().to_string()),
            None => (defaults.soak_prompts, defaults.prompt_source),
        };
        let interval = bench::interval(self.interval).context("--interval")?;
        let max_vram_bytes = match self.max_vram {
            Some(gib) if !(gib.is_finite() && gib > 0.0) => {
                bail!("--max-vram must be a positive number of GiB")
            }
            Some(gib) => Some((gib * GIB as f64) as u64),
            None => None,
        };
        let settings = PlanSettings {
            mode: self.mode,
            runs: self.runs,
            size: bench::parse_size(&self.size)?,
            steps: self.steps,
            seed: self.seed,
            prompt: self.prompt.clone(),
            sweep_sizes,
            soak_images: self.soak,
            soak_prompts,
            prompt_source,
            interval,
            warmup: self.warmup,
            max_vram_bytes,
            inject_oom_sizes: self
                .inject_oom_at
                .iter()
                .map(|s| bench::parse_size(s))
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(settings.plan()?)
    }

    pub fn model_spec(&self) -> ModelSpec {
        match (&self.model, self.random_weights) {
            (Some(dir), _) => ModelSpec::Dir(dir.clone()),
            (None, true) => ModelSpec::RandomWeights {
                preset: self.preset.clone(),
            },
            (None, false) => ModelSpec::Demo,
        }
    }

    pub fn load_options(&self) -> LoadOptions {
        let defaults = LoadOptions::default();
        LoadOptions {
            device: self.device.clone().unwrap_or(defaults.device),
            dtype: self.dtype.clone(),
            low_vram: self.low_vram,
        }
    }
}

pub fn run(args: BenchArgs) -> ExitCode {
    let plan = match args.plan() {
        Ok(plan) => plan,
        Err(err) => {
            eprintln!("error: {err:#}");
            return ExitCode::from(super::EXIT_USAGE);
        }
    };
    match run_plan(&args, &plan) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(super::EXIT_FAILURE)
        }
    }
}

fn run_plan(args: &BenchArgs, plan: &BenchPlan) -> anyhow::Result<()> {
    let options = args.load_options();
    let mut worker = WorkerChannels::spawn()?;
    let mut meter = crate::bench::meter::open(&options.device).context("starting the memory sampler")?;
    let mut bars = Bars::new();
    let report = {
        let mut runner = Runner::new(&mut worker, &mut meter, &mut bars);
        runner
            .load(args.model_spec(), options)
            .context("loading the model")?;
        runner.run(plan)?
    };
    bars.finish();
    let (md, json) = bench::write_report(&args.out, &report)?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        print_summary(&report);
        println!("\nwrote {} and {}", md.display(), json.display());
    }
    Ok(())
}

fn print_summary(report: &Report) {
    let md = markdown::render(report);
    if let Some(at) = md.find("## Summary") {
        println!("{}", md[at..].trim_end());
    }
}

/// Progress bars on stderr: one for the current section, one for the current job's steps.
struct Bars {
    multi: MultiProgress,
    section: ProgressBar,
    steps: ProgressBar,
    /// "1024×1024 (warm-up)" for the running job.
    current: String,
}

impl Bars {
    fn new() -> Self {
        let multi = MultiProgress::new();
        let section = multi.add(ProgressBar::new(0));
        section.set_style(
            ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let steps = multi.add(ProgressBar::new(0));
        steps.set_style(
            ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        steps.set_prefix("job");
        Self {
            multi,
            section,
            steps,
            current: String::new(),
        }
    }

    fn finish(&self) {
        self.steps.finish_and_clear();
        self.section.finish_and_clear();
        let _ = self.multi.clear();
    }
}

impl Observer for Bars {
    fn loading(&mut self, part: &str, done: u64, total: u64) {
        self.section.set_prefix("loading");
        self.section.set_length(total);
        self.section.set_position(done);
        self.section.set_message(part.to_owned());
    }

    fn section(&mut self, section: Section, jobs: usize) {
        self.section.set_prefix(section.title());
        self.section.set_length(jobs as u64);
        self.section.set_position(0);
        self.section.set_message("");
    }

    fn job_started(&mut self, _section: Section, request: &GenerationRequest, warmup: bool) {
        self.steps.set_length(request.steps as u64);
        self.steps.set_position(0);
        let tag = if warmup { " (warm-up)" } else { "" };
        self.current = format!("{}×{}{tag}", request.width, request.height);
        self.steps.set_message(self.current.clone());
    }

    fn stage(&mut self, stage: Stage) {
        let name = match stage {
            Stage::Encode => "encode",
            Stage::Denoise => "denoise",
            Stage::Decode => "decode",
        };
        self.steps.set_message(format!("{} {name}", self.current));
    }

    fn step(&mut self, step: usize, total: usize) {
        self.steps.set_length(total as u64);
        self.steps.set_position(step as u64);
    }

    fn job_finished(&mut self, _section: Section, record: &JobRecord) {
        self.section.inc(1);
        let what = match (record.outcome.is_ok(), record.total_s) {
            (true, Some(t)) => format!("{} {t:.2} s", record.size_label()),
            _ => format!("{} {}", record.size_label(), record.outcome.label()),
        };
        self.section.set_message(what);
    }

    fn log(&mut self, message: &str) {
        self.multi.suspend(|| eprintln!("{message}"));
    }
}
